//! The judge's unit tests: hand-worked tails, the score's worked examples, the rules' edges.

use super::*;
use crate::config::canary;
use crate::decision::PerCohort;
use crate::metrics::CohortCounts;
use crate::metrics::tests_support::cohort;

/// Judges hand-made cohorts: the same counts serve as the window, the stage and the
/// latencies after warm-up; `burst` is each cohort's `[requests, errors]` in both burst spans.
pub(crate) fn judge_cohorts(
    stage: StageId,
    environment: Environment,
    canary: &CohortCounts,
    stable: &CohortCounts,
    burst: PerCohort<[u64; 2]>,
    policy: Policy<'_>,
) -> CanaryHealth {
    judge_aged(
        stage,
        environment,
        [canary, stable],
        both_spans(burst),
        Duration::from_secs(3600),
        policy,
    )
}

/// The same counts in both burst spans.
fn both_spans(burst: PerCohort<[u64; 2]>) -> Bursts {
    Bursts {
        current: burst,
        with_previous: burst,
    }
}

/// [`judge_cohorts`] on a stage `stage_age` old; `[canary, stable]` counts.
fn judge_aged(
    stage: StageId,
    environment: Environment,
    cohorts: [&CohortCounts; 2],
    bursts: Bursts,
    stage_age: Duration,
    policy: Policy<'_>,
) -> CanaryHealth {
    let aged = (stage_age, Silence::default());
    judge_silent(stage, environment, cohorts, bursts, aged, policy)
}

/// [`judge_aged`], the canary silent for `silence.span` since a reading first showed its
/// latest outcome, while the stable version recorded `silence.stable`.
fn judge_silent(
    stage: StageId,
    environment: Environment,
    [canary, stable]: [&CohortCounts; 2],
    bursts: Bursts,
    (stage_age, silence): (Duration, Silence),
    policy: Policy<'_>,
) -> CanaryHealth {
    let counts = PerCohort {
        canary: canary.clone(),
        stable: stable.clone(),
    };
    let sample = Sample {
        window: &counts,
        stage: &counts,
        latency: &counts,
        stage_latency: &counts,
        bursts,
        stage_age,
        silence,
        instances: 1,
    };
    judge(stage, environment, &sample, policy)
}

/// The finding of `rule` in `h`'s evidence, if the rule applied.
fn finding(h: &CanaryHealth, rule: Rule) -> Option<&Finding> {
    h.evidence.findings.iter().find(|f| f.rule == rule)
}

/// The compliance of `have` samples of `subject` where the default `min_samples`, 100, are
/// needed.
fn too_few_of_100(subject: crate::Cohort, have: u64) -> crate::verdict::Compliance {
    crate::verdict::Compliance::TooFewSamples {
        subject,
        have,
        need: 100,
    }
}

fn policy(slo: &SloConfig) -> Policy<'_> {
    Policy::new(slo, 0.95)
}

/// The default policy's verdict on a canary at `percent` with nothing new since the
/// previous evaluation.
fn verdict(percent: f64, subject: &CohortCounts, baseline: &CohortCounts) -> CanaryHealth {
    verdict_with(percent, subject, baseline, PerCohort::default())
}

fn verdict_with(
    percent: f64,
    subject: &CohortCounts,
    baseline: &CohortCounts,
    burst: PerCohort<[u64; 2]>,
) -> CanaryHealth {
    verdict_in_spans(percent, subject, baseline, both_spans(burst))
}

/// [`verdict_with`], each burst span's counts given.
fn verdict_in_spans(
    percent: f64,
    subject: &CohortCounts,
    baseline: &CohortCounts,
    bursts: Bursts,
) -> CanaryHealth {
    let slo = SloConfig::default();
    judge_aged(
        StageId(2),
        canary(percent),
        [subject, baseline],
        bursts,
        Duration::from_secs(3600),
        policy(&slo),
    )
}

#[test]
fn tails_against_hand_worked_values() {
    assert_eq!(binomial_tail(0, 10, 0.1), 1.0);
    assert_eq!(binomial_tail(1, 10, 0.2), 1.0); // observed rate below p
    assert!((binomial_tail(20, 20, 0.01) - 1e-40).abs() < 1e-45); // exact at k = n
    // 5 of 100 at p = 1%: the bound (0.0167) is above the exact tail (0.00343).
    let b = binomial_tail(5, 100, 0.01);
    assert!(b > 0.00343 && b < 0.02, "{b}");
    assert!((normal_upper_tail(0.0) - 0.5).abs() < 1e-7);
    assert!((normal_upper_tail(3.090_232) - 0.001).abs() < 1e-7);
    assert!((normal_upper_tail(-1.644_854) - 0.95).abs() < 1e-7);
}

#[test]
fn worked_examples_of_the_score() {
    let prod = cohort(1_000_000, 10_000, 5_000, 100_000);
    // The tolerated limit is 1.1 % (1.1 × 1 %, above 1 % + `error_rate_tolerance`): the
    // penalty is 0.25 × the excess beyond it / 1 %.
    let cases = [
        (0.010, 1.00, Recommendation::Healthy),
        (0.011, 1.00, Recommendation::Healthy),
        // Beyond the limit over the stage, surely: `errors_over_stage` fires.
        (0.012, 0.975, Recommendation::Rollback),
        (0.015, 0.90, Recommendation::Rollback),
        (0.020, 0.775, Recommendation::Rollback),
        (0.030, 0.525, Recommendation::Rollback),
    ];
    for (rate, score, rec) in cases {
        let errors = (rate * 1_000_000.0) as u64;
        let subject = cohort(1_000_000, errors, 5_000, 100_000);
        let h = verdict(50.0, &subject, &prod);
        assert!(
            (h.health_score - score).abs() < 1e-9,
            "rate {rate}: score {}",
            h.health_score
        );
        assert_eq!(h.recommendation, rec, "rate {rate}: {}", h.evidence);
    }
}

/// A stable window that erred low by chance does not make the score's bound fire: its rate
/// is taken at its upper bound under the excess's lower one.
#[test]
fn the_score_s_bound_holds_beside_a_stable_window_that_erred_low() {
    // True rates 1 % and 1.9 %: the excess beyond 1.1x is 0.8 points, the score exactly 0.8.
    // The stable window drew 0.75 %; over its point rate the bound was 0.793.
    let prod = cohort(10_000, 75, 10_000, 20_000);
    let subject = cohort(100_000, 1_900, 10_000, 20_000);
    let h = verdict(50.0, &subject, &prod);
    assert!(
        !h.evidence.fired().any(|f| f.rule == Rule::HealthScore),
        "{}",
        h.evidence
    );
}

#[test]
fn latency_worked_examples() {
    let prod = cohort(1_000_000, 10_000, 10_000, 20_000);
    // Every latency 1.4x: penalty 0.08, but the whole distribution is surely slower than
    // the tolerated 1.1x, so latency_shift rolls it back; and p99_vs_stable too: the canary's
    // 28 ms bucket, 2 % of its requests, is beyond the stable p99's upper bound (20 095 us)
    // + latency_tolerance_ms.
    let subject = cohort(1_000_000, 10_000, 14_000, 28_000);
    let h = verdict(50.0, &subject, &prod);
    assert!((h.health_score - 0.92).abs() < 0.01, "{}", h.health_score);
    let fired: Vec<Rule> = h.evidence.fired().map(|f| f.rule).collect();
    assert_eq!(
        fired,
        [Rule::P99VsStable, Rule::LatencyShift],
        "{}",
        h.evidence
    );
    // Every latency 1.05x: within the tolerated shift, and shown to be.
    let subject = cohort(1_000_000, 10_000, 10_500, 21_000);
    let h = verdict(50.0, &subject, &prod);
    assert_eq!(h.evidence.fired().count(), 0, "{}", h.evidence);
    assert_eq!(h.recommendation, Recommendation::Healthy, "{}", h.evidence);
    // p99 2x: penalty 0.2, score 0.8 (MONITOR by score), but the p99 rule fires.
    let subject = cohort(1_000_000, 10_000, 20_000, 40_000);
    let h = verdict(50.0, &subject, &prod);
    assert!((h.health_score - 0.8).abs() < 0.01, "{}", h.health_score);
    assert!(
        h.evidence.fired().any(|f| f.rule == Rule::P99VsStable),
        "{}",
        h.evidence
    );
    assert!(h.evidence.fired().all(|f| matches!(
        f.rule,
        Rule::P99VsStable | Rule::HealthScore | Rule::LatencyShift
    )));
    assert_eq!(h.recommendation, Recommendation::Rollback);
}

#[test]
fn too_few_samples_never_fire_ordinary_rules() {
    let prod = cohort(100_000, 500, 5_000, 10_000);
    // 8 % errors over 50 requests: bad, but below min_samples and not overwhelming against the
    // 5 % reference.
    let subject = cohort(50, 4, 5_000, 10_000);
    let h = verdict(1.0, &subject, &prod);
    assert_eq!(h.evidence.fired().count(), 0, "{}", h.evidence);
    assert_eq!(h.recommendation, Recommendation::Monitor);
}

#[test]
fn a_failing_canary_is_overwhelming_early() {
    let prod = cohort(100_000, 500, 5_000, 10_000);
    let first_firing = (1..=20)
        .find(|&n| {
            let h = verdict(1.0, &cohort(n, n, 5_000, 10_000), &prod);
            h.recommendation == Recommendation::Rollback
        })
        .unwrap();
    // The ceiling: the stable rate's upper bound at 0.001 (500 of 100 000), times 1.5 or plus
    // `error_rate_tolerance`, and at least 1 %.
    let upper = stats::binomial_upper(500, 100_000, 0.001);
    let tolerance = SloConfig::default().error_rate_tolerance;
    let ceiling = (upper * 1.5).max(upper + tolerance).max(0.01);
    assert!((0.01..0.011).contains(&ceiling), "{ceiling}");
    let expected = (1..=20).find(|&k| ceiling.powi(k) < 1e-9).unwrap();
    assert_eq!(first_firing, expected as u64);
    assert!(first_firing <= 7);
}

/// The loosest `significance` validation accepts with `min_samples` samples, absolute
/// limits of 0 (floored at 0.1 %) and the loosest `overwhelming_significance` beside it.
fn loosest_valid(min_samples: u64) -> SloConfig {
    let at = |significance: f64| SloConfig {
        significance,
        overwhelming_significance: significance.min(OVERWHELMING_RATE_FLOOR),
        max_error_rate: 0.0,
        min_samples,
        ..Default::default()
    };
    let [mut accepted, mut refused] = [1e-9, 0.5];
    for _ in 0..60 {
        let mid = (accepted + refused) / 2.0;
        if at(mid).validate().is_ok() {
            accepted = mid;
        } else {
            refused = mid;
        }
    }
    at(accepted)
}

#[test]
fn one_failed_request_fires_no_rule_at_the_loosest_valid_levels() {
    // The loosest levels validation accepts, with `slo_threshold` 1 and `max_error_rate` 0:
    // one failure among the first `min_samples` requests must not roll back where the
    // absolute rules act alone (Staging, a 100 % canary), nor beside a stable version whose
    // own rate shows one failure in a few requests to be no excess. Validation accepted
    // `significance` up to 0.5: one miss in 10 gave p = 0.026 at 0.1 % and rolled back.
    for min_samples in [crate::MIN_SAMPLES_FLOOR, 10, 20, 100] {
        let slo = loosest_valid(min_samples);
        assert!(
            slo.significance > 0.005,
            "{min_samples}: {}",
            slo.significance
        );
        let policy = Policy::new(&slo, 1.0);
        let one = cohort(min_samples, 1, 5_000, 10_000);
        for (environment, stable) in [
            (Environment::Staging, CohortCounts::default()),
            (canary(100.0), CohortCounts::default()),
            (canary(5.0), cohort(100_000, 2_000, 5_000, 10_000)),
        ] {
            let burst = PerCohort {
                canary: [min_samples, 1],
                stable: [stable.requests, stable.errors],
            };
            let h = judge_cohorts(StageId(2), environment, &one, &stable, burst, policy);
            assert_eq!(
                h.evidence.fired().count(),
                0,
                "{min_samples} at {}, {environment}: {}",
                slo.significance,
                h.evidence
            );
        }
    }
    // One request that failed, beside a stable version without errors: only the
    // overwhelming-evidence rules act below `min_samples`, and one failure is at least 1 %
    // probable at their least ceiling.
    let slo = loosest_valid(100);
    let one = cohort(1, 1, 5_000, 10_000);
    for (environment, stable) in [
        (canary(5.0), cohort(20, 0, 5_000, 10_000)),
        (canary(5.0), cohort(100_000, 0, 5_000, 10_000)),
        (Environment::Staging, CohortCounts::default()),
    ] {
        let burst = PerCohort {
            canary: [1, 1],
            stable: [stable.requests, 0],
        };
        let h = judge_cohorts(StageId(2), environment, &one, &stable, burst, policy(&slo));
        assert_eq!(
            h.evidence.fired().count(),
            0,
            "{environment}: {}",
            h.evidence
        );
    }
}

#[test]
fn a_canary_stage_with_too_few_stable_outcomes_is_not_promotable() {
    // At a 99 % share the stable version reaches `min_samples` last: until it does, nothing
    // shows the canary not worse (here 4x its error rate), and a promotion waits.
    let slo = SloConfig::default();
    let h = judge_cohorts(
        StageId(2),
        canary(99.0),
        &cohort(9_000, 360, 5_000, 10_000),
        &cohort(99, 1, 5_000, 10_000),
        PerCohort::default(),
        policy(&slo),
    );
    assert_ne!(h.recommendation, Recommendation::Healthy, "{}", h.evidence);
    assert!(!h.evidence.non_inferiority.sufficient(), "{}", h.evidence);
    // Without stable traffic at all (Staging) the absolute rules act alone, as before.
    let h = judge_cohorts(
        StageId(2),
        Environment::Staging,
        &cohort(9_000, 36, 5_000, 10_000),
        &CohortCounts::default(),
        PerCohort::default(),
        policy(&slo),
    );
    assert!(h.evidence.non_inferiority.sufficient(), "{}", h.evidence);
}

/// A cohort of `(latency µs, requests)` lumps, none failed, every latency compliant.
fn lumps(of: &[(u64, u64)]) -> CohortCounts {
    let buckets: Vec<_> = of
        .iter()
        .map(|&(micros, n)| (crate::metrics::layout::index_of(micros), n))
        .collect();
    CohortCounts::compliant_in_buckets(&buckets)
}

#[test]
fn a_fired_p99_vs_stable_shows_its_tail_share_above_its_limit() {
    // The canary's p99 is the stable version's, but 0.5 % of its requests are 3 times slower
    // than the stable tail: the rule tests the share slower than the stable p99's bound, and
    // its finding shows that share, not the canary's p99 (which sits below the bound).
    let slo = SloConfig::default();
    let stable = lumps(&[(5_000, 97_000), (100_000, 3_000)]);
    let tail = lumps(&[(5_000, 19_300), (100_000, 600), (300_000, 100)]);
    let h = judge_cohorts(
        StageId(2),
        canary(20.0),
        &tail,
        &stable,
        PerCohort::default(),
        policy(&slo),
    );
    let f = finding(&h, Rule::P99VsStable).unwrap();
    assert!(f.fired, "{f}");
    assert!(f.observed > f.limit, "{f}");
    assert!((f.observed - 0.005).abs() < 0.001, "{f}");
    assert!(
        f.to_string().contains("observed 0.500% vs limit 0.000%"),
        "{f}"
    );
}

#[test]
fn the_score_rule_needs_the_data_to_be_sure() {
    assert!((normal_quantile_upper(0.001) - 3.090_232).abs() < 1e-5);
    let prod = cohort(100_000, 1_000, 10_000, 20_000);
    // 100 canary requests whose slowest 2 took 40 ms: a point p99 ratio of 2 (score 0.8 or
    // below by the point estimate), but 100 samples cannot make that sure.
    let noisy = cohort(100, 1, 10_000, 40_000);
    let h = verdict(10.0, &noisy, &prod);
    assert!(
        !h.evidence.fired().any(|f| f.rule == Rule::HealthScore),
        "{}",
        h.evidence
    );
    assert_ne!(h.recommendation, Recommendation::Rollback);
    // With a million samples a score of 0.65 is sure: 2.5 % errors against 1 %, 1.4 points
    // beyond the tolerated 1.1 %.
    let sure = cohort(1_000_000, 25_000, 10_000, 20_000);
    let h = verdict(50.0, &sure, &cohort(1_000_000, 10_000, 10_000, 20_000));
    assert!(
        h.evidence.fired().any(|f| f.rule == Rule::HealthScore),
        "{}",
        h.evidence
    );
}

/// The score's bound is never below the score, and it sees no latency penalty the score does
/// not: a canary whose tail is past the stable p99 by the p99's bounds (exact order
/// statistics) but not yet by the score's own test (more than 1 % slower, a Chernoff bound)
/// was rolled back by `health_score` while its reported score was 1.0 ("observed 0.7000 vs
/// limit 0.8000").
#[test]
fn the_score_s_bound_never_sees_a_penalty_the_score_does_not() {
    let slo = SloConfig::default();
    let mut stable = vec![(10_000, 980_000)];
    stable.extend((0..80).map(|j| (32_768 + 256 * j, 250)));
    let h = judge_cohorts(
        StageId(2),
        canary(5.0),
        &lumps(&[(5_000, 978), (150_000, 22)]),
        &lumps(&stable),
        PerCohort::default(),
        policy(&slo),
    );
    let f = finding(&h, Rule::HealthScore).unwrap();
    assert!(
        f.observed >= h.health_score,
        "{f}; score {}",
        h.health_score
    );
    assert!(!f.fired, "{}", h.evidence);
    assert_eq!(h.health_score, 1.0, "{}", h.evidence);
}

/// A cohort for the score's property tests: `leading × 10^magnitude` requests (`magnitudes`)
/// at a body latency, a tail of up to 6 % of them spread over up to `spread` buckets from a
/// tail latency, and up to 20 % of them failed.
fn arbitrary_cohort(
    magnitudes: std::ops::Range<u32>,
    spread: std::ops::Range<u64>,
) -> impl proptest::strategy::Strategy<Value = CohortCounts> {
    use proptest::prelude::*;
    (
        magnitudes,
        1u64..10,
        1_000u64..50_000,
        1_000u64..300_000,
        0u64..60,
        spread,
        prop_oneof![Just(0u64), 0u64..200],
    )
        .prop_map(
            |(magnitude, leading, body, tail, permille, spread, errors)| {
                let requests = leading * 10u64.pow(magnitude);
                let slow = requests * permille / 1_000;
                let each = slow / spread;
                let mut of = vec![(body, requests - each * spread)];
                of.extend(
                    (0..spread)
                        .filter(|_| each > 0)
                        .map(|j| (tail + 256 * j, each)),
                );
                let mut counts = lumps(&of);
                counts.errors = counts.requests * errors / 1_000;
                counts.compliant = counts.requests - counts.errors;
                counts
            },
        )
}

/// Production, Staging, or a canary stage at 1 % to 100 %.
fn arbitrary_environment() -> impl proptest::strategy::Strategy<Value = Environment> {
    use proptest::prelude::*;
    prop_oneof![
        Just(Environment::Production),
        Just(Environment::Staging),
        (1.0f64..=100.0).prop_map(canary),
    ]
}

/// How long the canary has been silent: `(silent from the stage's start, the stage's age, the
/// silence since its latest outcome)`. Mostly not at all; else from the stage's start or since
/// an outcome, for 1 to 4 minutes, on either side of the default `no_data_ms` (2 minutes).
fn arbitrary_silence() -> impl proptest::strategy::Strategy<Value = (bool, Duration, Silence)> {
    use proptest::prelude::*;
    let hour = Duration::from_secs(3600);
    prop_oneof![
        2 => Just((false, hour, Silence::default())),
        1 => (60u64..240).prop_map(|age| (true, Duration::from_secs(age), Silence::default())),
        1 => (60u64..240, 0u64..100_000).prop_map(move |(span, stable)| {
            let span = Duration::from_secs(span);
            (false, hour, Silence { span, stable })
        }),
    ]
}

proptest::proptest! {
    /// In every environment the judge's HEALTHY is the compliance check's Compliant, and its
    /// NO_DATA the check's NoData: one decision, said twice. (In Production the stable version
    /// failing nine requests in ten was HEALTHY and not compliant.) The canary is sometimes
    /// silent, from the stage's start or since its latest outcome, for less or more than
    /// `no_data_ms`, so that NO_DATA is met.
    #[test]
    fn healthy_is_compliant_in_every_environment(
        canary_counts in arbitrary_cohort(1..5, 1..4),
        stable_counts in arbitrary_cohort(1..5, 1..80),
        environment in arbitrary_environment(),
        (from_start, stage_age, silence) in arbitrary_silence(),
    ) {
        // Production routes nothing to a canary; Staging nothing to the stable version.
        let none = CohortCounts::default();
        let canary_counts = if from_start { &none } else { &canary_counts };
        let (canary_counts, stable_counts) = match environment {
            Environment::Production => (&none, &stable_counts),
            Environment::Staging => (canary_counts, &none),
            _ => (canary_counts, &stable_counts),
        };
        let slo = SloConfig::default();
        let h = judge_silent(
            StageId(2),
            environment,
            [canary_counts, stable_counts],
            both_spans(PerCohort::default()),
            (stage_age, silence),
            policy(&slo),
        );
        let compliance = crate::verdict::compliance(&h.evidence);
        proptest::prop_assert_eq!(
            h.recommendation == Recommendation::Healthy,
            compliance == crate::verdict::Compliance::Compliant,
            "{} is {:?}: {}", h.recommendation, compliance, h.evidence
        );
        proptest::prop_assert_eq!(
            h.recommendation == Recommendation::NoData,
            compliance == crate::verdict::Compliance::NoData,
            "{} is {:?}: {}", h.recommendation, compliance, h.evidence
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]
    /// Whatever the cohorts (a canary of 100 to 90 000 requests, its tail in one bucket or a
    /// few, beside a stable version of 10 000 to 9 million, its tail spread), the score's
    /// upper bound (the `health_score` finding's observed value) is at least the score, so
    /// the rule never rolls back a score of 0.8 or above.
    #[test]
    fn the_score_s_upper_bound_is_never_below_the_score(
        canary_counts in arbitrary_cohort(2..5, 1..4),
        stable_counts in arbitrary_cohort(4..7, 1..80),
        percent in 1.0f64..99.0,
    ) {
        let slo = SloConfig::default();
        let h = judge_cohorts(
            StageId(2),
            canary(percent),
            &canary_counts,
            &stable_counts,
            PerCohort::default(),
            policy(&slo),
        );
        let f = finding(&h, Rule::HealthScore);
        proptest::prop_assert!(f.is_some());
        if let Some(f) = f {
            proptest::prop_assert!(f.observed >= h.health_score, "{}; score {}", f, h.health_score);
            proptest::prop_assert!(!f.fired || h.health_score < f.limit, "{}", h.evidence);
        }
    }
}

fn burst(canary: [u64; 2], stable: [u64; 2]) -> PerCohort<[u64; 2]> {
    PerCohort { canary, stable }
}

#[test]
fn a_burst_of_errors_is_not_diluted_by_a_healthy_window() {
    let prod = cohort(1_000_000, 5_000, 5_000, 10_000);
    // A long healthy window: 30 000 canary requests at 0.5 %, then failures in a row while the
    // stable version serves 1 900 requests at 0.5 % in the same span.
    let window = cohort(30_008, 158, 5_000, 10_000);
    let stable = [1_900, 10];
    let quiet = verdict_with(10.0, &window, &prod, burst([40, 0], stable));
    assert_eq!(quiet.evidence.fired().count(), 0, "{}", quiet.evidence);
    let h = verdict_with(10.0, &window, &prod, burst([8, 8], stable));
    let fired: Vec<_> = h.evidence.fired().map(|f| f.rule).collect();
    assert_eq!(fired, [Rule::ErrorBurst], "{}", h.evidence);
    // The ceiling is the stable rate's upper bound at 0.001, about 1.4 %: 1.4 %^5 < 1e-9,
    // 1.4 %^4 is not.
    let five = verdict_with(10.0, &window, &prod, burst([5, 5], stable));
    assert_eq!(five.evidence.fired().count(), 1, "{}", five.evidence);
    let four = verdict_with(10.0, &window, &prod, burst([4, 4], stable));
    assert_eq!(four.evidence.fired().count(), 0, "{}", four.evidence);
}

#[test]
fn an_outage_the_stable_version_shares_is_not_blamed_on_the_canary() {
    // Both fail 30 % in the burst spans (a shared database is down), and in the window.
    let prod = cohort(100_000, 30_000, 5_000, 10_000);
    let window = cohort(5_000, 1_500, 5_000, 10_000);
    let h = verdict_with(5.0, &window, &prod, burst([100, 30], [1_900, 570]));
    assert_eq!(h.evidence.fired().count(), 0, "{}", h.evidence);
    // The absolute limits hold the promotion instead: the whole service breaches its SLO.
    assert!(
        h.evidence
            .findings
            .iter()
            .any(|f| f.holds && f.rule == Rule::ErrorRateMax),
        "{}",
        h.evidence
    );
    assert_eq!(h.recommendation, Recommendation::Monitor);
    // A canary failing everything in the same span is still blamed.
    let h = verdict_with(5.0, &window, &prod, burst([100, 100], [1_900, 570]));
    assert!(
        h.evidence.fired().any(|f| f.rule == Rule::ErrorBurst),
        "{}",
        h.evidence
    );
}

/// In Production no rule judges (there is no canary), but the recommendation, like the
/// compliance check, judges the stable version's samples and compliance: HEALTHY only where
/// the check is compliant. (A stable version failing 900 of 1 000 requests was HEALTHY beside
/// "compliance 10.000% < slo_threshold 95.000%" and a compliance check that said no.)
#[test]
fn production_has_nothing_to_judge() {
    let slo = SloConfig::default();
    let in_production = |stable: &CohortCounts| {
        judge_cohorts(
            StageId(1),
            Environment::Production,
            &CohortCounts::default(),
            stable,
            PerCohort::default(),
            policy(&slo),
        )
    };
    use crate::verdict::{Compliance, compliance};
    let failing = in_production(&cohort(1000, 900, 5_000, 10_000));
    assert!(failing.evidence.findings.is_empty());
    assert_eq!(failing.health_score, 1.0);
    assert_eq!(failing.traffic_percent, 0.0);
    let below = Compliance::BelowThreshold {
        compliance: 0.1,
        threshold: 0.95,
        service_wide: false,
    };
    // Failing, too few requests, enough and compliant: HEALTHY only in the last.
    for (h, expected, recommendation) in [
        (failing, below, Recommendation::Monitor),
        (
            in_production(&cohort(99, 0, 5_000, 10_000)),
            too_few_of_100(crate::Cohort::Stable, 99),
            Recommendation::Monitor,
        ),
        (
            in_production(&cohort(1000, 10, 5_000, 10_000)),
            Compliance::Compliant,
            Recommendation::Healthy,
        ),
    ] {
        assert_eq!(compliance(&h.evidence), expected, "{}", h.evidence);
        assert_eq!(h.recommendation, recommendation, "{}", h.evidence);
    }
}

#[test]
fn score_is_bounded() {
    let prod = cohort(1_000_000, 1, 1_000, 2_000);
    let subject = cohort(1_000_000, 900_000, 59_000_000, 60_000_000);
    let h = verdict(50.0, &subject, &prod);
    assert!((0.0..=1.0).contains(&h.health_score));
    assert!((h.health_score - 0.2).abs() < 1e-9);
}

#[test]
fn a_silent_canary_is_no_data_once_outcomes_were_due() {
    let slo = SloConfig::default();
    let silent = CohortCounts::default();
    // At 5 %, 1 000 stable requests mean about 53 canary outcomes were due (at least 20).
    let stable = cohort(1_000, 10, 5_000, 10_000);
    let at = |age: Duration, stable: &CohortCounts| {
        judge_aged(
            StageId(2),
            canary(5.0),
            [&silent, stable],
            Bursts::default(),
            age,
            policy(&slo),
        )
    };
    let h = at(slo.no_data_after, &stable);
    assert_eq!(h.recommendation, Recommendation::NoData, "{}", h.evidence);
    let finding = finding(&h, Rule::NoData);
    assert!(
        finding.is_some_and(|f| f.holds && !f.fired),
        "{}",
        h.evidence
    );
    assert_eq!(h.evidence.fired().count(), 0, "{}", h.evidence);
    // Younger than `no_data_after`: not yet.
    let young = at(slo.no_data_after - Duration::from_secs(1), &stable);
    assert_ne!(young.recommendation, Recommendation::NoData);
    // 100 stable requests: about 5 canary outcomes due, too few to call the silence.
    let quiet = at(slo.no_data_after, &cohort(100, 1, 5_000, 10_000));
    assert_ne!(quiet.recommendation, Recommendation::NoData);
}

#[test]
fn a_no_data_finding_shows_its_limit_in_milliseconds_exactly() {
    // `no_data_ms` 1500 was shown "limit 2s", rounded to whole seconds.
    let stable = cohort(1_000, 10, 5_000, 10_000);
    for (nanos, shown) in [
        (1_500_000_000, "limit 1500ms"),
        (120_000_000_000, "limit 120000ms"),
        (1_234_567_891, "limit 1234.567891ms"),
        (86_399_999_999_999, "limit 86399999.999999ms"),
    ] {
        let slo = SloConfig {
            no_data_after: Duration::from_nanos(nanos),
            ..Default::default()
        };
        let h = judge_aged(
            StageId(2),
            canary(5.0),
            [&CohortCounts::default(), &stable],
            Bursts::default(),
            slo.no_data_after,
            policy(&slo),
        );
        let text = finding(&h, Rule::NoData).unwrap().to_string();
        assert!(text.contains(shown), "{nanos}: {text}");
    }
}

/// Silent in Staging or at 100 %, no stable traffic counts the outcomes due: the finding
/// holds and shows no p-value (it showed the cap, "p=9.86e-305"); beside stable traffic it
/// shows the chance of the silence.
#[test]
fn a_no_data_finding_without_stable_traffic_shows_no_p_value() {
    let slo = SloConfig::default();
    let silent = CohortCounts::default();
    let at = |environment, stable: &CohortCounts| {
        let h = judge_aged(
            StageId(2),
            environment,
            [&silent, stable],
            Bursts::default(),
            slo.no_data_after,
            policy(&slo),
        );
        finding(&h, Rule::NoData).cloned().unwrap()
    };
    for environment in [Environment::Staging, canary(100.0)] {
        let f = at(environment, &silent);
        assert!(f.holds && f.p_value == 0.0, "{environment}: {f:?}");
        let text = f.to_string();
        assert!(!text.contains("p="), "{text}");
        assert!(
            text.ends_with("(no stable traffic to count the outcomes due)"),
            "{text}"
        );
    }
    // About 53 due beside 1 000 stable requests at 5 %: e^-52.63.
    let f = at(canary(5.0), &cohort(1_000, 10, 5_000, 10_000));
    assert!(f.holds, "{f}");
    assert!(f.to_string().ends_with("(p=1.39e-23)"), "{f}");
}

/// A `p99_budget` of a fraction of a microsecond, the histograms' unit, is shown as
/// configured (0.0015 ms was shown as "limit 0.001ms" beside an observed 0.001 ms that had not
/// breached it), and judged as configured: a request recorded at 2 µs took at least 2 µs.
#[test]
fn a_fractional_p99_budget_is_judged_and_shown_as_configured() {
    let slo = SloConfig {
        p99_budget: Some(Duration::from_nanos(1_500)),
        ..SloConfig::default()
    };
    let budget = |micros| {
        let h = judge_cohorts(
            StageId(2),
            Environment::Staging,
            &lumps(&[(micros, 1_000)]),
            &CohortCounts::default(),
            PerCohort::default(),
            policy(&slo),
        );
        finding(&h, Rule::P99Budget).cloned().unwrap()
    };
    let within = budget(1);
    assert!(!within.fired && !within.holds, "{within}");
    assert_eq!(within.limit, 0.0015);
    assert!(
        within
            .to_string()
            .contains("observed 0.001ms vs limit 0.0015ms"),
        "{within}"
    );
    let over = budget(2);
    assert!(over.fired, "{over}");
    assert!(
        over.to_string()
            .contains("observed 0.002ms vs limit 0.0015ms"),
        "{over}"
    );
}

/// `p99_budget`'s blame counts the canary's requests slower than the budget plus
/// `latency_tolerance_ms` as configured, their sum truncated once: with 0.0005 ms each
/// (1 µs in all) a request recorded at 1 µs is not slower (each truncated alone, to 0 + 0,
/// it was, and the canary was rolled back beside a stable version at 0 µs).
#[test]
fn p99_budget_s_blame_judges_budget_plus_tolerance_as_configured() {
    let half = Duration::from_nanos(500);
    let slo = SloConfig {
        p99_budget: Some(half),
        latency_tolerance: half,
        ..SloConfig::default()
    };
    let h = judge_cohorts(
        StageId(2),
        canary(50.0),
        &lumps(&[(1, 1_000)]),
        &lumps(&[(0, 1_000)]),
        PerCohort::default(),
        policy(&slo),
    );
    let f = finding(&h, Rule::P99Budget).cloned().unwrap();
    // Above the budget (1 µs > 0.5 µs) but no request slower than 1 µs: not the canary's.
    assert!(!f.fired && f.holds, "{f}");
}

#[test]
fn absolute_limits_of_zero_are_floored_at_a_tenth_of_a_percent() {
    // One error in 5 requests against limits of 0 (every request must succeed): with a limit
    // of exactly 0 that one error would be certain proof of a breach; floored at 0.1 % it
    // is not significant.
    let slo = SloConfig {
        max_error_rate: 0.0,
        min_samples: 5,
        ..SloConfig::default()
    };
    let policy = Policy::new(&slo, 1.0);
    let subject = cohort(5, 1, 5_000, 10_000);
    let h = judge_cohorts(
        StageId(2),
        Environment::Staging,
        &subject,
        &CohortCounts::default(),
        PerCohort::default(),
        policy,
    );
    for rule in [Rule::ErrorRateMax, Rule::SloCompliance] {
        let finding = finding(&h, rule);
        assert!(
            finding.is_some_and(|f| f.limit == ERROR_RATE_FLOOR && !f.fired && !f.holds),
            "{rule:?}: {}",
            h.evidence
        );
        // The floor acted, not the setting below it.
        assert_eq!(finding.unwrap().acting, "ERROR_RATE_FLOOR", "{rule:?}");
    }
    assert_eq!(h.evidence.fired().count(), 0, "{}", h.evidence);
}

#[test]
fn overwhelming_findings_name_what_set_their_ceiling() {
    // A dead canary: each finding names the limit that acted, not the level
    // (`overwhelming_significance`) its test is read at.
    let dead = cohort(20, 20, 5_000, 10_000);
    let cases = [
        (
            Environment::Staging,
            0.05,
            1.5,
            CohortCounts::default(),
            "max_error_rate",
        ),
        (
            Environment::Staging,
            0.0,
            1.5,
            CohortCounts::default(),
            "OVERWHELMING_RATE_FLOOR",
        ),
        (
            canary(5.0),
            0.05,
            1.5,
            cohort(100_000, 5_000, 5_000, 10_000),
            "error_rate_ratio_limit",
        ),
        (
            canary(5.0),
            0.05,
            1.5,
            cohort(100_000, 0, 5_000, 10_000),
            "OVERWHELMING_RATE_FLOOR",
        ),
        (
            canary(5.0),
            0.05,
            1.0,
            cohort(100_000, 1_000, 5_000, 10_000),
            "significance",
        ),
    ];
    for (environment, max_error_rate, error_rate_ratio_limit, stable, acting) in cases {
        let slo = SloConfig {
            max_error_rate,
            error_rate_ratio_limit,
            ..Default::default()
        };
        let burst = PerCohort {
            canary: [dead.requests, dead.errors],
            stable: [stable.requests, stable.errors],
        };
        let h = judge_cohorts(StageId(2), environment, &dead, &stable, burst, policy(&slo));
        for rule in [Rule::OverwhelmingErrors, Rule::ErrorBurst] {
            let f = finding(&h, rule).unwrap();
            assert_eq!(f.acting, acting, "{environment} {rule:?}: {f:?}");
            assert!(f.fired, "{environment} {rule:?}: {f:?}");
        }
    }
}

/// `requests` requests at 1 % errors, latencies spread evenly over 10–30 ms, and `tail` of
/// every 100 requests at 150 ms instead.
fn spread_cohort(requests: u64, tail: u64) -> CohortCounts {
    let values: Vec<u64> = (0..requests)
        .map(|i| {
            if i % 100 < tail {
                150_000
            } else {
                10_000 + (i * 7_919) % 20_000
            }
        })
        .collect();
    CohortCounts {
        requests,
        errors: requests / 100,
        compliant: requests - requests / 100,
        histogram: crate::metrics::tests_support::histogram_of(&values),
    }
}

#[test]
fn a_slow_tail_vetoes_the_promotion_the_whole_distribution_would_allow() {
    let stable = spread_cohort(400_000, 0);
    let shown = |canary: &CohortCounts| verdict(5.0, canary, &stable).evidence.non_inferiority;
    let same = shown(&spread_cohort(20_000, 0));
    assert!(same.errors && same.latency, "{same:?}");
    // 2 % of requests 5x slower: the Mann-Whitney statistic is still shown within the
    // tolerated shift, but 2 % of requests beyond the stable p99 is above 1.5 × its 1 %.
    let tail = shown(&spread_cohort(20_000, 2));
    assert!(tail.errors && !tail.latency, "{tail:?}");
}

/// Judges a `window` (also the stage) whose latencies after warm-up are `latency` (also the
/// stage's after warm-up), as just after the warm-up ended; `[canary, stable]` counts.
fn judge_settled(
    environment: Environment,
    window: [&CohortCounts; 2],
    latency: [&CohortCounts; 2],
    slo: &SloConfig,
) -> CanaryHealth {
    let pair = |[canary, stable]: [&CohortCounts; 2]| PerCohort {
        canary: canary.clone(),
        stable: stable.clone(),
    };
    let (window, latency) = (pair(window), pair(latency));
    let sample = Sample {
        window: &window,
        stage: &window,
        latency: &latency,
        stage_latency: &latency,
        bursts: Bursts::default(),
        stage_age: Duration::from_secs(31),
        silence: Silence::default(),
        instances: 1,
    };
    judge(StageId(2), environment, &sample, policy(slo))
}

/// `requests` successful requests after warm-up, each taking `micros`.
fn settled_cohort(requests: u64, micros: u64) -> CohortCounts {
    let values = vec![micros; usize::try_from(requests).unwrap_or(0)];
    CohortCounts {
        requests,
        errors: 0,
        compliant: requests,
        histogram: crate::metrics::tests_support::histogram_of(&values),
    }
}

#[test]
fn the_p99_budget_needs_min_samples_after_warm_up() {
    let slo = SloConfig {
        p99_budget: Some(Duration::from_millis(100)),
        ..SloConfig::default()
    };
    // The budget's finding on the window and the latencies after warm-up: (fired, holds); no
    // other rule fires.
    let budget = |environment, window: [&CohortCounts; 2], latency: [&CohortCounts; 2]| {
        let h = judge_settled(environment, window, latency, &slo);
        assert_eq!(
            h.evidence
                .fired()
                .filter(|f| f.rule != Rule::P99Budget)
                .count(),
            0,
            "{}",
            h.evidence
        );
        finding(&h, Rule::P99Budget).map(|f| (f.fired, f.holds))
    };
    let empty = CohortCounts::default();
    // Staging: 1 000 requests in the window, but only 2 after warm-up, both over budget.
    let window = cohort(1_000, 0, 5_000, 10_000);
    let two_slow = settled_cohort(2, 300_000);
    assert_eq!(
        budget(Environment::Staging, [&window, &empty], [&two_slow, &empty]),
        Some((false, false))
    );
    // A canary stage: 2 slow canary requests against 38 stable ones after warm-up.
    let stable_window = cohort(19_000, 0, 5_000, 10_000);
    let stable_38 = settled_cohort(38, 5_000);
    let stage = [&window, &stable_window];
    assert_eq!(
        budget(canary(5.0), stage, [&two_slow, &stable_38]),
        Some((false, false))
    );
    // 200 slow canary requests: the budget is surely breached, but 38 stable requests cannot
    // blame the canary for it: it holds.
    let slow = settled_cohort(200, 300_000);
    assert_eq!(
        budget(canary(5.0), stage, [&slow, &stable_38]),
        Some((false, true))
    );
}

/// `requests` successful requests after warm-up, `slow` of them taking `slow_micros` and the
/// rest 20 ms.
fn settled_mix(requests: u64, slow: u64, slow_micros: u64) -> CohortCounts {
    let mut counts = settled_cohort(requests - slow, 20_000);
    counts.requests = requests;
    counts.compliant = requests;
    counts.histogram[crate::metrics::layout::index_of(slow_micros)] += slow;
    counts
}

#[test]
fn the_p99_budget_blames_the_canary_by_the_tail_ratio_not_the_error_ratio() {
    // A lenient error ratio must not excuse a latency tail: the canary's share above the
    // budget is held against `p99_ratio_limit` (1.5) × the stable share.
    let slo = SloConfig {
        p99_budget: Some(Duration::from_millis(100)),
        error_rate_ratio_limit: 5.0,
        ..SloConfig::default()
    };
    let stable = settled_mix(200_000, 4_000, 300_000); // 2 % above the budget
    let budget = |subject: &CohortCounts| {
        let h = judge_settled(canary(5.0), [subject, &stable], [subject, &stable], &slo);
        let f = finding(&h, Rule::P99Budget).cloned();
        f.map(|f| (f.fired, f.holds, f.acting))
    };
    // 4 × the stable share above the budget: the canary's own breach, rolled back.
    assert_eq!(
        budget(&settled_mix(10_000, 800, 300_000)),
        Some((true, false, "p99_budget_ms"))
    );
    // 1.25 × the stable share, within 1.5 ×: the whole service breaches the budget; it holds.
    assert_eq!(
        budget(&settled_mix(10_000, 250, 300_000)),
        Some((false, true, "p99_budget_ms"))
    );
}

#[test]
fn a_canary_slow_only_in_its_warm_up_is_not_below_the_slo_threshold() {
    // 600 ms against the 500 ms target for the 30 s warm-up, 20 ms after: 600 of the window's
    // 3 000 canary requests missed the target, all in the warm-up. `slo_compliance` does not
    // count them, and neither does the threshold (MONITOR, `check_slo_compliance`, a
    // promotion's refusal, the error line): the same span.
    let mut window = cohort(3_000, 0, 20_000, 20_000);
    window.compliant = 2_400;
    window.histogram = settled_mix(3_000, 600, 600_000).histogram;
    let stable_window = settled_cohort(57_000, 20_000);
    let (settled, stable_settled) = (
        settled_cohort(2_400, 20_000),
        settled_cohort(45_600, 20_000),
    );
    let h = judge_settled(
        canary(5.0),
        [&window, &stable_window],
        [&settled, &stable_settled],
        &SloConfig::default(),
    );
    assert!(
        h.evidence.findings.iter().all(|f| !f.fired && !f.holds),
        "{}",
        h.evidence
    );
    assert_eq!(h.evidence.canary.compliance, 0.8, "{}", h.evidence);
    assert_eq!(h.evidence.canary.judged_compliance, 1.0, "{}", h.evidence);
    assert!(!h.evidence.below_slo_threshold(), "{}", h.evidence);
    assert!(
        !matches!(
            crate::verdict::compliance(&h.evidence),
            crate::verdict::Compliance::BelowThreshold { .. }
        ),
        "{}",
        h.evidence
    );
    // Its errors keep full power: 200 failed requests of the warm-up count.
    window.errors = 200;
    window.compliant = 2_200;
    let h = judge_settled(
        canary(5.0),
        [&window, &stable_window],
        [&settled, &stable_settled],
        &SloConfig::default(),
    );
    let judged = h.evidence.canary.judged_compliance;
    assert!((judged - 2_800.0 / 3_000.0).abs() < 1e-12, "{}", h.evidence);
    assert!(h.evidence.below_slo_threshold(), "{}", h.evidence);
    assert!(
        h.evidence
            .to_string()
            .contains("compliance (latency misses after warm-up) 93.333% < slo_threshold 95.000%"),
        "{}",
        h.evidence
    );
}

#[test]
fn the_score_tolerates_what_the_error_rules_tolerate() {
    // Stable at 0.05 % errors, the canary at 0.09 % (1.8×): within stable +
    // `error_rate_tolerance` (0.1 %), so no error rule rolls it back, and the score must not
    // either.
    let stable = cohort(100_000, 50, 5_000, 10_000);
    let h = verdict(50.0, &cohort(100_000, 90, 5_000, 10_000), &stable);
    assert_eq!(h.evidence.fired().count(), 0, "{}", h.evidence);
    assert_eq!(h.health_score, 1.0, "{}", h.evidence);
    // With 4 million requests each the stage shows the canary within the tolerance: HEALTHY.
    let stable = cohort(4_000_000, 2_000, 5_000, 10_000);
    let h = verdict(50.0, &cohort(4_000_000, 3_600, 5_000, 10_000), &stable);
    assert!(h.evidence.non_inferiority.errors, "{}", h.evidence);
    assert_eq!(h.recommendation, Recommendation::Healthy, "{}", h.evidence);
}

#[test]
fn a_compliance_below_the_threshold_is_never_healthy() {
    let stable = cohort(1_000_000, 10_000, 5_000, 10_000);
    // 9 450 of 10 000 canary requests compliant at `slo_threshold` 0.95: too few misses for
    // `slo_compliance` to be sure (p = 0.08), but the gate refuses the promotion.
    let mut canary = cohort(10_000, 100, 5_000, 10_000);
    canary.compliant = 9_450;
    let h = verdict(5.0, &canary, &stable);
    assert_eq!(h.evidence.fired().count(), 0, "{}", h.evidence);
    assert_eq!(h.recommendation, Recommendation::Monitor, "{}", h.evidence);
    let text = h.evidence.to_string();
    assert!(
        text.contains("compliance 94.500% < slo_threshold 95.000%"),
        "{text}"
    );
    // At the threshold: HEALTHY.
    canary.compliant = 9_500;
    let h = verdict(5.0, &canary, &stable);
    assert_eq!(h.recommendation, Recommendation::Healthy, "{}", h.evidence);
}

#[test]
fn the_error_penalty_needs_min_samples_of_the_canary() {
    let stable = cohort(10_000, 100, 5_000, 10_000);
    // 3 errors in 3 requests: nothing to score yet (the rules wait for 100, or overwhelming
    // evidence).
    let h = verdict(5.0, &cohort(3, 3, 5_000, 10_000), &stable);
    assert_eq!(h.health_score, 1.0, "{}", h.evidence);
    assert_eq!(h.recommendation, Recommendation::Monitor, "{}", h.evidence);
}

#[test]
fn an_empty_histogram_has_no_p99() {
    // Just after the settled reading the latencies after warm-up are all zeros: the p99s
    // reported are then the window's, not 0.
    let window = cohort(1_000, 10, 5_000, 10_000);
    let stable = cohort(19_000, 190, 5_000, 20_000);
    let settled = settled_cohort(0, 0);
    assert!(settled.histogram.iter().all(|&c| c == 0) && !settled.histogram.is_empty());
    let h = judge_settled(
        canary(5.0),
        [&window, &stable],
        [&settled, &settled],
        &SloConfig::default(),
    );
    let p99 = |counts: &CohortCounts| {
        Duration::from_micros(crate::metrics::quantile_micros(&counts.histogram, 0.99))
    };
    assert_eq!(h.canary_p99_latency, p99(&window), "{}", h.evidence);
    assert_eq!(h.production_p99_latency, p99(&stable), "{}", h.evidence);
    assert!(h.canary_p99_latency > Duration::ZERO);
}

#[test]
fn a_burst_span_with_too_few_stable_outcomes_takes_the_window_s_ceiling_and_fisher_s_test() {
    let prod = cohort(1_000_000, 5_000, 5_000, 10_000);
    let window = cohort(30_008, 158, 5_000, 10_000);
    let burst_span = |canary: u64, stable: [u64; 2]| {
        let h = verdict_with(10.0, &window, &prod, burst([canary, canary], stable));
        h.evidence.fired().any(|f| f.rule == Rule::ErrorBurst)
    };
    // Fewer than 687 stable outcomes cannot bound their rate at the window's ceiling (1 %,
    // from its 0.5 %), which stands in for their bound: 5 failures in a row, 1 %^5 = 1e-10.
    // Beside the stable outcomes in the same span, Fisher's test must agree: 6 failures beside
    // 100 clean stable outcomes, 1 / C(106, 6) = 6e-10; 5 beside 100, 1 / C(105, 5) = 1e-8.
    assert!(burst_span(6, [100, 0]));
    assert!(!burst_span(5, [100, 0]));
    assert!(!burst_span(4, [1_000, 0]), "1 %^4 > 1e-9");
    // A span just begun, during an outage both versions share: the canary's few requests
    // happened to fail, the stable version's few did not (1 / C(14, 7) = 3e-4). And a span
    // with no stable outcome shows nothing against the stable version.
    assert!(!burst_span(7, [7, 0]));
    assert!(!burst_span(20, [0, 0]));
    // A few stable outcomes that all fail say the outage is shared.
    assert!(!burst_span(5, [20, 20]));
    assert!(!burst_span(50, [20, 10]));
    // Without stable traffic (a 100 % canary), the ceiling stands alone: `max_error_rate`,
    // 5 %^7 < 1e-9 < 5 %^6.
    let alone = |canary: u64| {
        let h = verdict_with(
            100.0,
            &window,
            &CohortCounts::default(),
            burst([canary, canary], [0, 0]),
        );
        h.evidence.fired().any(|f| f.rule == Rule::ErrorBurst)
    };
    assert!(alone(7));
    assert!(!alone(6));
}

#[test]
fn a_burst_is_tested_in_the_current_span_and_since_the_one_before() {
    let prod = cohort(1_000_000, 5_000, 5_000, 10_000);
    let window = cohort(30_008, 158, 5_000, 10_000);
    let burst_rule = |bursts: Bursts| {
        let h = verdict_in_spans(10.0, &window, &prod, bursts);
        finding(&h, Rule::ErrorBurst).map(|f| (f.fired, f.observed))
    };
    // 8 failures in a row in the current span, beside 1 900 stable outcomes at 0.5 %: the
    // span before held 200 healthy canary requests, which dilute it below the level.
    let (current, with_previous) = (burst([8, 8], [1_900, 10]), burst([208, 8], [3_800, 20]));
    assert_eq!(
        burst_rule(Bursts {
            current,
            with_previous
        }),
        Some((true, 1.0)),
        "the current span's finding"
    );
    // A new span just began: the failures are in the span before it alone.
    let quiet = burst([0, 0], [0, 0]);
    let fired = burst_rule(Bursts {
        current: quiet,
        with_previous: current,
    });
    assert_eq!(fired, Some((true, 1.0)), "the longer span's finding");
    // Diluted in both: nothing.
    let fired = burst_rule(Bursts {
        current: with_previous,
        with_previous,
    });
    assert_eq!(fired.map(|(fired, _)| fired), Some(false));
}

#[test]
fn too_few_stable_outcomes_in_the_window_leave_the_absolute_limit_and_fisher_s_test() {
    // The stage's first milliseconds at a 5 % share: 133 clean stable requests could not show
    // a rate below max_error_rate (5 %) even without an error, so 5 % is the ceiling: 7
    // failures in a row, 5 %^7 < 1e-9; and Fisher's test against them agrees,
    // 1 / C(140, 7) = 6e-12.
    let fires = |n: u64, stable: u64| {
        verdict_with(
            5.0,
            &cohort(n, n, 5_000, 10_000),
            &cohort(stable, 0, 5_000, 10_000),
            burst([n, n], [stable, 0]),
        )
        .evidence
        .fired()
        .any(|f| f.rule == Rule::OverwhelmingErrors)
    };
    assert!(fires(7, 133));
    assert!(!fires(6, 133));
    // Beside 50 clean stable outcomes Fisher's test needs 8: 1 / C(57, 7) = 4e-9, 1 / C(58, 8)
    // = 5e-10.
    assert!(!fires(7, 50));
    assert!(fires(8, 50));
    // Beside none, at a 50 % share, nothing shows the outage is the canary's alone (a stage
    // whose first requests all went to the canary during a shared outage); but none beside
    // 20 canary outcomes is a host that does not record the stable version's (e^-20), and
    // the ceiling acts alone.
    let at_half = |n: u64| {
        let h = verdict_with(
            50.0,
            &cohort(n, n, 5_000, 10_000),
            &CohortCounts::default(),
            burst([n, n], [0, 0]),
        );
        h.evidence
            .fired()
            .any(|f| f.rule == Rule::OverwhelmingErrors)
    };
    assert!(!at_half(19));
    assert!(at_half(20));
    // All failing in both versions: shared, never blamed on the canary.
    let failing = cohort(50, 50, 5_000, 10_000);
    let h = verdict_with(
        5.0,
        &cohort(20, 20, 5_000, 10_000),
        &failing,
        burst([20, 20], [50, 50]),
    );
    assert_eq!(h.evidence.fired().count(), 0, "{}", h.evidence);
}

#[test]
fn an_absolute_breach_waits_for_the_stable_outcomes_to_blame_the_canary() {
    // A shared outage from the stage's first request, 50 % canary: the canary reaches
    // min_samples (100) first, both failing 30 %. Its breach of max_error_rate holds the
    // promotion; nothing is blamed before 100 stable outcomes can say whether it is worse.
    let canary_counts = cohort(100, 30, 5_000, 10_000);
    let h = verdict_with(
        50.0,
        &canary_counts,
        &cohort(90, 27, 5_000, 10_000),
        burst([100, 30], [90, 27]),
    );
    assert_eq!(h.evidence.fired().count(), 0, "{}", h.evidence);
    let held = finding(&h, Rule::ErrorRateMax);
    assert!(held.is_some_and(|f| f.holds && !f.fired), "{}", h.evidence);
    assert_eq!(h.recommendation, Recommendation::Monitor);
    // A promotion is refused for too few stable samples, not for a service-wide breach.
    assert_eq!(
        crate::verdict::compliance(&h.evidence),
        too_few_of_100(crate::Cohort::Stable, 90)
    );
    // With min_samples of them, as bad as the canary: the whole service breaches its SLO.
    let shared = verdict(50.0, &canary_counts, &cohort(100, 30, 5_000, 10_000));
    assert_eq!(shared.evidence.fired().count(), 0, "{}", shared.evidence);
    assert_eq!(
        crate::verdict::compliance(&shared.evidence),
        crate::verdict::Compliance::ServiceBreach {
            rule: Rule::SloCompliance
        }
    );
    // Once they can, a canary worse than them is blamed...
    let clean = cohort(100, 1, 5_000, 10_000);
    let h = verdict(50.0, &canary_counts, &clean);
    assert!(
        h.evidence.fired().any(|f| f.rule == Rule::ErrorRateMax),
        "{}",
        h.evidence
    );
    // ...and without stable traffic (a 100 % canary, Staging) the limit acts alone.
    let none = CohortCounts::default();
    for environment in [canary(100.0), Environment::Staging] {
        let slo = SloConfig::default();
        let h = judge_cohorts(
            StageId(2),
            environment,
            &canary_counts,
            &none,
            PerCohort::default(),
            policy(&slo),
        );
        assert!(
            h.evidence.fired().any(|f| f.rule == Rule::ErrorRateMax),
            "{environment}: {}",
            h.evidence
        );
    }
}

#[test]
fn a_clean_upper_bound_is_the_bisection_s() {
    for n in [1, 7, 50, 135, 1_000, 100_000] {
        for alpha in [0.001, 0.05] {
            let exact = stats::clean_upper(n, alpha);
            let bisected = stats::binomial_upper(0, n, alpha);
            assert!(
                (exact - bisected).abs() < 1e-12,
                "{n} {alpha}: {exact} {bisected}"
            );
        }
    }
    assert_eq!(stats::clean_upper(0, 0.001), 1.0);
}

#[test]
fn errors_over_stage_names_the_constant_that_acted() {
    // Stable at 5 %: 1.1 × 5 % is above 5 % + `error_rate_tolerance`, so the margin acts.
    let stable = cohort(100_000, 5_000, 5_000, 10_000);
    let h = verdict(50.0, &cohort(100_000, 7_000, 5_000, 10_000), &stable);
    let finding = finding(&h, Rule::ErrorsOverStage);
    assert!(
        finding.is_some_and(|f| f.fired && f.acting == "ERROR_RATE_MARGIN"),
        "{}",
        h.evidence
    );
}

#[test]
fn a_canary_whose_latencies_are_mostly_in_the_warm_up_is_not_promotable_without_evidence() {
    // promotion_evidence off: min_samples in the window used to suffice, though 2 400 of a
    // canary twice as slow had only 50 latencies after warm-up, too few for any latency rule.
    let slo = SloConfig {
        promotion_evidence: false,
        min_samples: 100,
        ..SloConfig::default()
    };
    let window = [
        &settled_cohort(2_400, 40_000),
        &settled_cohort(200_000, 20_000),
    ];
    let few = [&settled_cohort(50, 40_000), &settled_cohort(4_000, 20_000)];
    let h = judge_settled(canary(1.0), window, few, &slo);
    assert_eq!(h.evidence.canary.latency_requests, 50);
    assert!(!h.evidence.sufficient_data(), "{}", h.evidence);
    assert_eq!(h.recommendation, Recommendation::Monitor);
    assert_eq!(
        crate::verdict::compliance(&h.evidence),
        too_few_of_100(crate::Cohort::Canary, 50)
    );
    // With min_samples of latencies after warm-up the latency rules judge it: rolled back.
    let enough = [&settled_cohort(400, 40_000), &settled_cohort(4_000, 20_000)];
    let h = judge_settled(canary(1.0), window, enough, &slo);
    assert!(h.evidence.sufficient_data(), "{}", h.evidence);
    assert_eq!(h.recommendation, Recommendation::Rollback, "{}", h.evidence);
}

#[test]
fn every_rule_is_in_all_once_in_the_order_of_the_enum() {
    // A new rule fails this match until it is added here, and to `Rule::ALL`.
    let position = |rule: Rule| match rule {
        Rule::SloCompliance => 0,
        Rule::ErrorRateMax => 1,
        Rule::ErrorRateVsStable => 2,
        Rule::OverwhelmingErrors => 3,
        Rule::P99VsStable => 4,
        Rule::P99Budget => 5,
        Rule::HealthScore => 6,
        Rule::ErrorBurst => 7,
        Rule::ErrorsOverStage => 8,
        Rule::LatencyShift => 9,
        Rule::NoData => 10,
    };
    let positions: Vec<usize> = Rule::ALL.iter().map(|&rule| position(rule)).collect();
    assert_eq!(positions, (0..11).collect::<Vec<_>>());
}

/// A stage's cohort of `requests` at 20 ms, `errors` of them failed.
fn at_20ms(requests: u64, errors: u64) -> CohortCounts {
    let mut histogram = vec![0u64; crate::metrics::layout::LEN];
    histogram[crate::metrics::layout::index_of(20_000)] += requests;
    CohortCounts {
        requests,
        errors,
        compliant: requests - errors,
        histogram,
    }
}

#[test]
fn errors_over_stage_asks_the_exact_tail_when_few_errors_are_expected() {
    // Stable at 0.0097 %: the limit is 0.0597 % (+ error_rate_tolerance), and 112 canary
    // requests expect 0.07 errors there. Two of them read as many standard deviations to the
    // sequence, but their exact chance at the limit is 0.0021, above significance (asked at
    // the limit of the stable rate with one error more than seen, 12 in 113 541: 0.0022).
    let slo = SloConfig::default();
    let (c, s) = (at_20ms(112, 2), at_20ms(113_540, 11));
    let h = judge_cohorts(
        StageId(2),
        canary(0.1),
        &c,
        &s,
        PerCohort::default(),
        policy(&slo),
    );
    let f = finding(&h, Rule::ErrorsOverStage).unwrap();
    assert!(!f.fired, "{f}");
    let one_more = 12.0 / 113_541.0 + slo.error_rate_tolerance;
    let at_one_more = stats::binomial_tail_exact(2, 112, one_more);
    assert!((f.p_value - at_one_more).abs() < 1e-12, "{f:?}");
    assert!((f.p_value - 0.0022).abs() < 0.0001, "{f:?}");
    assert!(
        f.to_string()
            .contains("(bound beyond the limit, but the exact binomial tail p=2.18e-3"),
        "{f}"
    );
    assert_ne!(h.recommendation, Recommendation::Rollback, "{}", h.evidence);
    // One error of min_samples (10) against none of 100 000 stable: 0.5 % at the limit.
    let slo = SloConfig {
        min_samples: 10,
        ..Default::default()
    };
    let (c, s) = (at_20ms(10, 1), at_20ms(100_000, 0));
    let h = judge_cohorts(
        StageId(2),
        canary(0.01),
        &c,
        &s,
        PerCohort::default(),
        policy(&slo),
    );
    assert_eq!(h.evidence.fired().count(), 0, "{}", h.evidence);
    // A dead canary against the same stable version still fires at its min_samples (the
    // exact tail of 10 of 10 at 0.06 % is 6e-33).
    let slo = SloConfig::default();
    let stable = at_20ms(113_540, 11);
    let h = judge_cohorts(
        StageId(2),
        canary(0.1),
        &at_20ms(100, 100),
        &stable,
        PerCohort::default(),
        policy(&slo),
    );
    let f = finding(&h, Rule::ErrorsOverStage).unwrap();
    assert!(f.fired && f.p_value == slo.significance, "{f:?}");
    // The reported p-value is the sequence's level, and is written as one.
    let text = f.to_string();
    assert!(
        text.ends_with("(bound beyond the limit at α = 1e-3)"),
        "{text}"
    );
    assert!(!text.contains("p="), "{text}");
    // Many errors expected at the limit: the sequence alone decides, as before.
    let h = judge_cohorts(
        StageId(2),
        canary(50.0),
        &at_20ms(1_000_000, 12_000),
        &at_20ms(1_000_000, 10_000),
        PerCohort::default(),
        policy(&slo),
    );
    assert!(
        finding(&h, Rule::ErrorsOverStage).unwrap().fired,
        "{}",
        h.evidence
    );
}

#[test]
fn the_exact_binomial_tail_against_hand_worked_values() {
    use stats::binomial_tail_exact as exact;
    // P(X >= 2), X ~ Bin(112, 0.000597): 1 − P(0) − P(1).
    let p = 0.000_597f64;
    let want = 1.0 - (1.0 - p).powi(112) - 112.0 * p * (1.0 - p).powi(111);
    let got = exact(2, 112, p);
    assert!((got / want - 1.0).abs() < 1e-9, "{got} {want}");
    assert!((exact(1, 10, 0.0005) - (1.0 - 0.9995f64.powi(10))).abs() < 1e-12);
    assert!((exact(20, 20, 0.01) - 1e-40).abs() < 1e-50);
    // 5 of 100 at 1 %: 0.00343.
    assert!(
        (exact(5, 100, 0.01) - 0.003_435).abs() < 1e-5,
        "{}",
        exact(5, 100, 0.01)
    );
    assert_eq!(exact(0, 10, 0.1), 1.0);
    assert_eq!(exact(1, 10, 0.2), 1.0); // not above the mean
    assert_eq!(exact(11, 10, 0.2), 0.0);
    assert_eq!(exact(1, 10, 0.0), 0.0);
}

#[test]
fn a_canary_the_judge_would_monitor_is_not_compliant() {
    // 1 % errors in both; the canary's p99 80 ms against the stable version's 50 ms (both
    // slowest 0.9 to 1.1 % at 80 to 100 ms): score 0.8796, MONITOR, no rule fired.
    let slo = SloConfig::default();
    let stable = lumps(&[(10_000, 985_000), (50_000, 6_000), (100_000, 9_000)]);
    let canary_counts = lumps(&[(10_000, 985_000), (50_000, 4_000), (80_000, 11_000)]);
    let with_errors = |mut c: CohortCounts| {
        c.errors = 10_000;
        c.compliant -= 10_000;
        c
    };
    let h = judge_cohorts(
        StageId(2),
        canary(5.0),
        &with_errors(canary_counts),
        &with_errors(stable),
        PerCohort::default(),
        policy(&slo),
    );
    assert_eq!(h.evidence.fired().count(), 0, "{}", h.evidence);
    assert!((0.8..0.9).contains(&h.health_score), "{}", h.health_score);
    assert_eq!(h.recommendation, Recommendation::Monitor, "{}", h.evidence);
    // The `health_score` finding shows what its rule tests: the score's upper bound.
    let f = finding(&h, Rule::HealthScore).unwrap();
    assert!(f.observed > h.health_score && f.observed < 0.9, "{f:?}");
    assert_eq!(
        crate::verdict::compliance(&h.evidence),
        crate::verdict::Compliance::LowScore {
            score: h.health_score,
            threshold: 0.9
        }
    );
}

#[test]
fn a_finding_beyond_its_limit_never_reads_equal_to_it() {
    let shown = |rule, observed, limit| {
        Finding {
            rule,
            observed,
            limit,
            p_value: 1e-3,
            fired: true,
            holds: false,
            acting: "max_error_rate",
        }
        .to_string()
    };
    let text = shown(Rule::OverwhelmingErrors, 0.0100001, 0.01);
    assert!(
        text.contains("observed 1.00001% vs limit 1.00000%"),
        "{text}"
    );
    let text = shown(Rule::P99Budget, 500.0001, 500.0);
    assert!(
        text.contains("observed 500.0001ms vs limit 500.0000ms"),
        "{text}"
    );
    // Told apart in the short form, or equal: as before.
    let text = shown(Rule::OverwhelmingErrors, 0.02, 0.01);
    assert!(text.contains("observed 2.000% vs limit 1.000%"), "{text}");
    let text = shown(Rule::HealthScore, 0.8, 0.8);
    assert!(text.contains("observed 0.8000 vs limit 0.8000"), "{text}");
}

#[test]
fn a_rule_on_a_bound_writes_its_level_not_a_p_value() {
    let at = |rule, p_value, fired| {
        Finding {
            rule,
            observed: 0.6,
            limit: 0.5,
            p_value,
            fired,
            holds: false,
            acting: "latency_shift_limit",
        }
        .to_string()
    };
    assert!(at(Rule::LatencyShift, 1e-3, true).ends_with("(bound beyond the limit at α = 1e-3)"));
    assert!(at(Rule::LatencyShift, 1.0, false).ends_with("(bound within the limit)"));
    assert!(at(Rule::HealthScore, 1e-3, false).ends_with("four bounds at α = 1e-3 each)"));
    assert!(at(Rule::ErrorsOverStage, 1.0, false).ends_with("(bound within the limit)"));
    // A test with a p-value keeps it.
    assert!(at(Rule::ErrorBurst, 2.16e-11, true).ends_with("(p=2.16e-11)"));
}

#[test]
fn one_error_beside_a_clean_stable_version_is_not_a_stage_long_excess() {
    // One canary error in 100 beside none in 10 000 stable: Fisher's exact test gives 0.0099.
    // The exact tail at the tolerated limit took the stable rate as exactly 0: at a tolerance
    // of 0 the limit was 0 and one error impossible (p = 0, the finding's α: rolled back); at
    // α = 0.05 (valid with min_samples 20) the default tolerance gave 1 − 0.9995¹⁰⁰ = 0.049.
    // Taken at 1 in 10 001, one error more than seen: 0.011 and 0.058.
    for (error_rate_tolerance, significance) in [(0.0, 0.001), (0.0005, 0.05)] {
        let slo = SloConfig {
            error_rate_tolerance,
            significance,
            min_samples: 20,
            ..Default::default()
        };
        let h = judge_cohorts(
            StageId(2),
            canary(1.0),
            &cohort(100, 1, 5_000, 10_000),
            &cohort(10_000, 0, 5_000, 10_000),
            PerCohort::default(),
            policy(&slo),
        );
        let f = finding(&h, Rule::ErrorsOverStage).unwrap();
        assert!(!f.fired && f.p_value > significance, "{f:?}");
        assert_eq!(h.evidence.fired().count(), 0, "{}", h.evidence);
    }
}
