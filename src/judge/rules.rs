//! The error rules and the no-data hold: each one small function from the [`Case`] to its
//! [`Finding`], `None` when the rule does not apply. The latency rules are in `latency`.
//!
//! **Relative blame.** With stable traffic to compare with, a rule rolls back only on a
//! two-sample test against the stable version over the same span; an absolute limit that the
//! canary breaches without being significantly worse than the stable version *holds* the
//! promotion instead (as it does until the stable version has `min_samples` in the window).
//! Without stable traffic (Staging, a 100 % canary, or none reported though 20 were due) the
//! absolute limits act alone.

use std::time::Duration;

use super::cohort::CohortStats;
use super::latency::{health_score_rule, latency_shift, p99_budget, p99_vs_stable};
use super::score::{HealthScore, health_score};
use super::sequential::{Difference, TAU_FLOOR};
use super::shift::{Shift, shift};
use super::stats::{
    Proportion, binomial_tail, binomial_tail_exact, binomial_upper, clean_upper, excess_p,
    fisher_exact_p, two_proportion_p,
};
use super::{
    ERROR_RATE_FLOOR, ERROR_RATE_MARGIN, Finding, OVERWHELMING_RATE_FLOOR, Policy, Rule, Sample,
};
use crate::config::Environment;
use crate::decision::PerCohort;
use crate::metrics::Silence;
use crate::slo::SloConfig;

/// Expected canary outcomes (from the stable traffic and the share) above which none at all is
/// no longer chance: `e^-20 ≈ 2·10⁻⁹`.
const NO_DATA_EXPECTED: f64 = 20.0;

/// What the rules read, computed once per evaluation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Case<'a> {
    /// Both cohorts in the window (counters).
    pub(super) canary: CohortStats<'a>,
    pub(super) stable: CohortStats<'a>,
    /// Both cohorts in the window after the stage's warm-up (latencies).
    pub(super) latency: PerCohort<CohortStats<'a>>,
    /// Both cohorts' requests in the window that failed, or succeeded slower than
    /// `latency_target` after the stage's warm-up ([`misses_after_warm_up`]): what
    /// `slo_compliance` tests and the evidence's `judged_compliance` reports.
    pub(super) misses: PerCohort<Proportion>,
    /// Both cohorts over the stage after warm-up (latencies): what the positive evidence
    /// reads of the tail.
    pub(super) stage_latency: PerCohort<CohortStats<'a>>,
    /// The stage-long latency statistic after warm-up (computed once: the `latency_shift`
    /// rule and the positive evidence both read it); `None` without `min_samples` of both
    /// cohorts.
    pub(super) shift: Option<Shift>,
    /// Both cohorts' errors over the stage.
    pub(super) stage: PerCohort<Proportion>,
    /// Both cohorts' errors in the two burst spans: the current one, and since the one
    /// before it.
    pub(super) bursts: [PerCohort<Proportion>; 2],
    pub(super) stage_age: Duration,
    pub(super) silence: Silence,
    pub(super) environment: Environment,
    pub(super) slo: &'a SloConfig,
    pub(super) slo_threshold: f64,
    pub(crate) score: HealthScore,
}

impl<'a> Case<'a> {
    pub(crate) fn new(sample: &Sample<'a>, environment: Environment, policy: Policy<'a>) -> Self {
        let stats = |counts: &'a crate::metrics::Counts| {
            PerCohort::from_fn(|cohort| CohortStats::of(&counts[cohort]))
        };
        let (window, latency) = (stats(sample.window), stats(sample.latency));
        let errors = |c: &crate::metrics::CohortCounts| Proportion {
            events: c.errors.min(c.requests),
            trials: c.requests,
        };
        let burst = |span: PerCohort<[u64; 2]>| {
            PerCohort::from_fn(|c| {
                let [requests, errors] = span[c];
                Proportion {
                    events: errors.min(requests),
                    trials: requests,
                }
            })
        };
        Self {
            canary: window.canary,
            stable: window.stable,
            latency,
            misses: PerCohort::from_fn(|c| misses_after_warm_up(&window[c], &latency[c])),
            stage_latency: stats(sample.stage_latency),
            shift: stage_shift(sample.stage_latency, policy.slo),
            stage: PerCohort::from_fn(|c| errors(&sample.stage[c])),
            bursts: [
                burst(sample.bursts.current),
                burst(sample.bursts.with_previous),
            ],
            stage_age: sample.stage_age,
            silence: sample.silence,
            environment,
            slo: policy.slo,
            slo_threshold: policy.slo_threshold,
            score: health_score(&window, &latency, policy.slo, policy.z),
        }
    }

    /// Whether an ordinary rule whose test gave `p` fires: the canary has at least
    /// `min_samples` requests and `p` is below α.
    pub(super) fn convinced(&self, p: f64) -> bool {
        self.canary.has(self.slo.min_samples) && p < self.slo.significance
    }

    /// Whether the window has stable outcomes to compare the canary's with: `min_samples` of
    /// them.
    pub(super) fn comparable(&self) -> bool {
        self.stable.has(self.slo.min_samples)
    }

    /// The p-value of "`canary`'s rate is above both `error_rate_ratio_limit` × `stable`'s
    /// and `stable`'s + `error_rate_tolerance`" (two-sample tests; the larger p-value): what
    /// blames an absolute breach on the canary. The margin keeps repeated looks at an
    /// identical canary from blaming it by chance.
    fn worse_than_tolerated(&self, canary: Proportion, stable: Proportion) -> f64 {
        let by_ratio = two_proportion_p(canary, stable, self.slo.error_rate_ratio_limit);
        by_ratio.max(excess_p(canary, stable, self.slo.error_rate_tolerance))
    }

    /// Whether the canary is judged beside stable outcomes: the stage routes requests to the
    /// stable version (a canary share below 100 %) and their outcomes are reported. An
    /// absolute limit the canary breaches then rolls back only once the stable version's
    /// outcomes, `min_samples` of them, show the canary worse, and holds the promotion until
    /// they do, so an outage both versions suffer from a stage's first request is not blamed
    /// on the canary that happened to reach `min_samples` first. Without stable traffic
    /// (Staging, a 100 % canary) the absolute limits act alone, and so they do when the stage
    /// has no stable outcome though the canary's imply at least 20 (a host that records the
    /// canary's outcomes only: none of 20 due happens by chance with probability e⁻²⁰).
    pub(super) fn stable_reported(&self) -> bool {
        let Environment::Canary { traffic_percent } = self.environment else {
            return false;
        };
        let share = traffic_percent / 100.0;
        if share >= 1.0 {
            return false;
        }
        let due = self.stage.canary.trials as f64 * (1.0 - share) / share;
        self.stage.stable.trials > 0 || due < NO_DATA_EXPECTED
    }

    /// Whether the stage has both cohorts' samples for its stage-long tests.
    pub(super) fn stage_comparable(&self) -> bool {
        let n = self.slo.min_samples;
        self.stage.canary.trials >= n && self.stage.stable.trials >= n
    }

    /// The worst acceptable error rate over the window, given the stable version's errors in
    /// it ([`Case::ceiling_given`], falling back on the absolute limit), and what set it. In
    /// Staging, the absolute limit: max(`max_error_rate`, 1 %).
    fn window_ceiling(&self) -> Ceiling {
        let absolute = self.absolute_ceiling();
        if matches!(self.environment, Environment::Staging) {
            return absolute;
        }
        self.ceiling_given(self.stable.errors(), absolute)
    }

    /// The absolute limit the window's ceiling falls back on: max(`max_error_rate`, 1 %).
    fn absolute_ceiling(&self) -> Ceiling {
        if self.slo.max_error_rate >= OVERWHELMING_RATE_FLOOR {
            (self.slo.max_error_rate, "max_error_rate")
        } else {
            (OVERWHELMING_RATE_FLOOR, "OVERWHELMING_RATE_FLOOR")
        }
    }

    /// An overwhelming-evidence `finding` on `canary`'s errors, whose ceiling took `fallback`
    /// for want of `stable` outcomes, kept only if Fisher's exact test against those agrees:
    /// when the canary is judged beside stable outcomes ([`Case::stable_reported`]) and
    /// `stable`'s outcomes are too few to bound their rate ([`Case::too_few`]), the canary is
    /// blamed only if its errors are also improbable beside the stable version's in the same
    /// span, at `overwhelming_significance` (the larger p-value counts). A few clean stable
    /// outcomes beside a few failed canary ones, or none at all, are no evidence against an
    /// outage both versions share (7 failures beside 7 clean stable outcomes: p = 3·10⁻⁴),
    /// while 7 failures in a row beside 63 clean stable outcomes are (p = 8·10⁻¹⁰). Otherwise
    /// the ceiling acts alone.
    fn unless_shared(
        &self,
        mut finding: Finding,
        [canary, stable]: [Proportion; 2],
        fallback: f64,
    ) -> Finding {
        if self.stable_reported() && self.too_few(stable, fallback) {
            finding.p_value = finding.p_value.max(fisher_exact_p(canary, stable));
            finding.fired = finding.p_value < self.slo.overwhelming_significance;
        }
        finding
    }

    /// The worst acceptable error rate given `stable`'s errors in the same span: the highest
    /// of its upper confidence bound at `significance`, its rate times
    /// `error_rate_ratio_limit` or plus `error_rate_tolerance`, and 1 %. Stable outcomes too
    /// few to show a rate at or below `fallback` even without an error say nothing that
    /// bound could use (1 success bounds the rate by 99.9 %): `fallback` then replaces the
    /// bound, and their own rate, with its tolerance, still counts, so an outage the stable
    /// version shares is not blamed on the canary. What set it: `significance` for the
    /// bound, the tolerance's setting, `fallback`'s, or `OVERWHELMING_RATE_FLOOR`.
    fn ceiling_given(&self, stable: Proportion, fallback: Ceiling) -> Ceiling {
        let alpha = self.slo.significance;
        let tolerated = self.error_limit(
            stable.rate(),
            self.slo.error_rate_ratio_limit,
            "error_rate_ratio_limit",
        );
        let bound = if self.too_few(stable, fallback.0) {
            fallback
        } else {
            (
                binomial_upper(stable.events, stable.trials, alpha).min(1.0),
                "significance",
            )
        };
        let floor = (OVERWHELMING_RATE_FLOOR, "OVERWHELMING_RATE_FLOOR");
        let (rate, acting) =
            [tolerated, floor].into_iter().fold(
                bound,
                |highest, c| if c.0 > highest.0 { c } else { highest },
            );
        (rate.min(1.0), acting)
    }

    /// Whether `stable`'s outcomes are too few to show a rate at or below `fallback` even
    /// without an error: [`Case::ceiling_given`] then takes `fallback` for their bound.
    fn too_few(&self, stable: Proportion, fallback: f64) -> bool {
        clean_upper(stable.trials, self.slo.significance) > fallback
    }

    /// The tolerated error rate over the stable one: (`ratio` × stable) or (stable +
    /// `error_rate_tolerance`), whichever is higher, and which of the two that is.
    fn error_limit(
        &self,
        stable_rate: f64,
        ratio: f64,
        ratio_name: &'static str,
    ) -> (f64, &'static str) {
        error_limit(self.slo, stable_rate, ratio, ratio_name)
    }
}

/// [`Case::error_limit`] under `slo`.
fn error_limit(
    slo: &SloConfig,
    stable_rate: f64,
    ratio: f64,
    ratio_name: &'static str,
) -> (f64, &'static str) {
    let by_ratio = ratio * stable_rate;
    let by_tolerance = stable_rate + slo.error_rate_tolerance;
    if by_ratio >= by_tolerance {
        (by_ratio, ratio_name)
    } else {
        (by_tolerance, "error_rate_tolerance")
    }
}

/// A worst acceptable error rate and the setting (or constant) that set it.
type Ceiling = (f64, &'static str);

/// The Mann-Whitney statistic of the canary's latencies over the stage after warm-up, divided
/// by `latency_shift_limit` (or less `latency_tolerance_ms`), against the stable version's;
/// `None` without `min_samples` of both cohorts.
fn stage_shift(stage_latency: &crate::metrics::Counts, slo: &SloConfig) -> Option<Shift> {
    let (canary, stable) = (
        stage_latency.canary.histogram.as_slice(),
        stage_latency.stable.histogram.as_slice(),
    );
    let n = slo.min_samples;
    if canary.iter().sum::<u64>() < n || stable.iter().sum::<u64>() < n {
        return None;
    }
    let tolerance = slo.latency_tolerance.as_secs_f64() * 1e6;
    shift(canary, stable, slo.latency_shift_limit, tolerance)
}

/// A rule: its finding on a case, if it applies.
pub(crate) type RuleFn = fn(&Case<'_>) -> Option<Finding>;

/// Every rule, in the order of their findings.
pub(crate) const RULES: [RuleFn; 11] = [
    slo_compliance,
    error_rate_max,
    error_rate_vs_stable,
    errors_over_stage,
    overwhelming_errors,
    error_burst,
    p99_vs_stable,
    p99_budget,
    latency_shift,
    health_score_rule,
    no_data,
];

/// An absolute limit's finding: the limit is `setting`'s, tested (`p`) on `tested`'s canary
/// cohort, which needs `min_samples`. When the canary is judged beside stable outcomes
/// ([`Case::stable_reported`]) it rolls back only when the canary is also significantly worse
/// than the stable version on the same measure (`blame` is that test's p-value, which needs
/// `min_samples` of `tested`'s stable cohort), and otherwise holds the promotion; without,
/// it acts alone.
pub(super) fn absolute(
    case: &Case<'_>,
    (rule, setting): (Rule, &'static str),
    tested: [&CohortStats<'_>; 2],
    observed: f64,
    limit: f64,
    p: f64,
    blame: f64,
) -> Finding {
    let [canary, stable] = tested;
    let n = case.slo.min_samples;
    let breached = canary.has(n) && p < case.slo.significance;
    let (fired, holds) = if case.stable_reported() {
        let blamed = stable.has(n) && blame < case.slo.significance;
        (breached && blamed, breached && !blamed)
    } else {
        (breached, false)
    };
    Finding {
        rule,
        observed,
        limit,
        p_value: p,
        fired,
        holds,
        acting: setting,
    }
}

/// The absolute limit `setting` gives, at least [`ERROR_RATE_FLOOR`] (a limit of 0 would
/// make one failure certain proof of a breach), and the name of the one that acts.
fn floored(limit: f64, setting: &'static str) -> (f64, &'static str) {
    if limit >= ERROR_RATE_FLOOR {
        (limit, setting)
    } else {
        (ERROR_RATE_FLOOR, "ERROR_RATE_FLOOR")
    }
}

/// [`Rule::SloCompliance`]: the share of canary requests that failed or missed the latency
/// target against `1 - slo_threshold` (at least 0.1 %; validation keeps `significance` where
/// one miss among `min_samples` cannot breach that). Errors count over the whole window;
/// latency misses only after the stage's warm-up ([`misses_after_warm_up`]), as the latency
/// rules read them.
fn slo_compliance(case: &Case<'_>) -> Option<Finding> {
    let (allowed, acting) = floored(1.0 - case.slo_threshold, "slo_threshold");
    let (canary, stable) = (&case.canary, &case.stable);
    let missed = case.misses.canary;
    let p = binomial_tail(missed.events, missed.trials, allowed);
    let blame = case.worse_than_tolerated(missed, case.misses.stable);
    Some(absolute(
        case,
        (Rule::SloCompliance, acting),
        [canary, stable],
        missed.rate(),
        allowed,
        p,
        blame,
    ))
}

/// The window's requests that failed, or succeeded slower than `latency_target` after the
/// stage's warm-up (`settled`: the window after it, empty while it lasts or when only counters
/// were read), out of the window's requests: a canary slow while its caches fill is not
/// blamed for it, while its errors keep full power.
fn misses_after_warm_up(window: &CohortStats<'_>, settled: &CohortStats<'_>) -> Proportion {
    let slow = settled.misses.saturating_sub(settled.errors);
    Proportion {
        events: window.errors.saturating_add(slow).min(window.requests),
        trials: window.requests,
    }
}

/// [`Rule::ErrorRateMax`]: the canary's error rate against `max_error_rate` (at least 0.1 %,
/// as `slo_compliance`).
fn error_rate_max(case: &Case<'_>) -> Option<Finding> {
    let (limit, acting) = floored(case.slo.max_error_rate, "max_error_rate");
    let (canary, stable) = (&case.canary, &case.stable);
    let p = binomial_tail(canary.errors, canary.requests, limit);
    let blame = case.worse_than_tolerated(canary.errors(), stable.errors());
    Some(absolute(
        case,
        (Rule::ErrorRateMax, acting),
        [canary, stable],
        canary.error_rate,
        limit,
        p,
        blame,
    ))
}

/// [`Rule::ErrorRateVsStable`]: over the window, the canary's error rate against both
/// `error_rate_ratio_limit` × the stable one's and the stable one's + `error_rate_tolerance`
/// (two-sample tests); fires when it is significantly above both.
fn error_rate_vs_stable(case: &Case<'_>) -> Option<Finding> {
    if !case.comparable() {
        return None;
    }
    let p = case.worse_than_tolerated(case.canary.errors(), case.stable.errors());
    let (limit, acting) = case.error_limit(
        case.stable.error_rate,
        case.slo.error_rate_ratio_limit,
        "error_rate_ratio_limit",
    );
    Some(Finding {
        rule: Rule::ErrorRateVsStable,
        observed: case.canary.error_rate,
        limit,
        p_value: p,
        fired: case.convinced(p),
        holds: false,
        acting,
    })
}

/// Below this many canary errors expected at the tolerated limit, [`Rule::ErrorsOverStage`]
/// also asks the exact binomial tail.
const FEW_EXPECTED_ERRORS: f64 = 10.0;

/// [`Rule::ErrorsOverStage`]: over the whole stage, a confidence sequence (valid at every
/// look) on the canary's error rate against both [`ERROR_RATE_MARGIN`] × the stable one's and
/// the stable one's + `error_rate_tolerance`; fires when its lower bound is above both and,
/// when the canary expects fewer than [`FEW_EXPECTED_ERRORS`] errors at the tolerated limit,
/// the exact chance of its errors at the limit of the stable rate with one error more than
/// seen is at most `significance` too (the larger of the two p-values is the finding's).
fn errors_over_stage(case: &Case<'_>) -> Option<Finding> {
    if !case.stage_comparable() {
        return None;
    }
    over_stage(case.stage.canary, case.stage.stable, case.slo)
}

/// [`errors_over_stage`] on the stage's counts `c` (canary) and `s` (stable), given that both
/// have `min_samples`: the rule alone, for its calibration.
pub(super) fn over_stage(c: Proportion, s: Proportion, slo: &SloConfig) -> Option<Finding> {
    let alpha = slo.significance;
    let tau = s.rate().max(TAU_FLOOR);
    let by_ratio = Difference::of(c, s, ERROR_RATE_MARGIN, 0.0)?.lower(tau, alpha);
    let by_tolerance = Difference::of(c, s, 1.0, slo.error_rate_tolerance)?.lower(tau, alpha);
    let (limit, acting) = error_limit(slo, s.rate(), ERROR_RATE_MARGIN, "ERROR_RATE_MARGIN");
    let mut p_value = if by_ratio > 0.0 && by_tolerance > 0.0 {
        alpha
    } else {
        1.0
    };
    // The sequence's normal approximation fails when the canary expects few errors at the
    // limit (a low stable rate, a small share): one or two errors then read as many standard
    // deviations. There the exact tail of its errors at the limit must agree, the limit taken
    // at the stable rate with one error more than seen: its estimate is not exact, and none in
    // 10 000 is not a rate of 0, at which one canary error would be impossible.
    if p_value < 1.0 && (c.trials as f64) * limit < FEW_EXPECTED_ERRORS {
        let one_more = s.events.saturating_add(1) as f64 / s.trials.saturating_add(1) as f64;
        let (at_one_more, _) = error_limit(slo, one_more, ERROR_RATE_MARGIN, "");
        p_value = p_value.max(binomial_tail_exact(c.events, c.trials, at_one_more));
    }
    let fired = p_value <= alpha;
    Some(Finding {
        rule: Rule::ErrorsOverStage,
        observed: c.rate(),
        limit,
        p_value,
        fired,
        holds: false,
        acting,
    })
}

/// [`Rule::OverwhelmingErrors`], at any sample count: the canary's errors in the window
/// against the worst acceptable rate given the stable version's errors in the same window
/// (with too few of them, the absolute limit, and Fisher's exact test must agree:
/// [`Case::unless_shared`]).
fn overwhelming_errors(case: &Case<'_>) -> Option<Finding> {
    let errors = [case.canary.errors(), case.stable.errors()];
    let finding = overwhelming(
        case,
        Rule::OverwhelmingErrors,
        errors[0],
        case.window_ceiling(),
    );
    Some(case.unless_shared(finding, errors, case.absolute_ceiling().0))
}

/// [`Rule::ErrorBurst`], at any sample count: the same test on both cohorts' outcomes in two
/// burst spans, the current one and since the one before it (a new span starts at most once
/// per `evaluation_interval`, however often anyone evaluates), so a sudden outage is not
/// diluted by a window of healthy traffic, and an outage the stable version shares is not
/// blamed on the canary. The finding is the span's with the smaller p-value.
fn error_burst(case: &Case<'_>) -> Option<Finding> {
    let window = case.window_ceiling();
    case.bursts
        .iter()
        .map(|&span| burst_span(case, span, window))
        .min_by(|a, b| a.p_value.total_cmp(&b.p_value))
}

/// The `error_burst` test over one span: the canary's errors in it against the worst
/// acceptable rate given the stable version's in the same span ([`Case::ceiling_given`]; in
/// Staging, the absolute limit). With stable outcomes in it too few to bound their rate, the
/// window's ceiling (`window`) stands in for their bound, and Fisher's exact test against
/// them must agree ([`Case::unless_shared`]).
fn burst_span(case: &Case<'_>, span: PerCohort<Proportion>, window: Ceiling) -> Finding {
    if matches!(case.environment, Environment::Staging) {
        return overwhelming(case, Rule::ErrorBurst, span.canary, window);
    }
    let ceiling = case.ceiling_given(span.stable, window);
    let finding = overwhelming(case, Rule::ErrorBurst, span.canary, ceiling);
    case.unless_shared(finding, [span.canary, span.stable], window.0)
}

/// The overwhelming-evidence test of `canary`'s errors at `ceiling`, whose setting acts.
fn overwhelming(
    case: &Case<'_>,
    rule: Rule,
    canary: Proportion,
    (ceiling, acting): Ceiling,
) -> Finding {
    let p = binomial_tail(canary.events, canary.trials, ceiling);
    Finding {
        rule,
        observed: canary.rate(),
        limit: ceiling,
        p_value: p,
        fired: p < case.slo.overwhelming_significance,
        holds: false,
        acting,
    }
}

/// [`Rule::NoData`]: the canary has reported no outcome for `no_data_ms`, though the stable
/// traffic and the canary's share say at least 20 were due meanwhile (in Staging, any): from
/// the stage's start, or, once it has reported, since its latest outcome while stable outcomes
/// keep arriving (a canary that crashed, whose failed connections are never recorded). Holds
/// the promotion; rolls nothing back.
fn no_data(case: &Case<'_>) -> Option<Finding> {
    let share = case.environment.traffic_percent() / 100.0;
    let routed_beside_stable =
        matches!(case.environment, Environment::Canary { .. }) && share < 1.0;
    let (silent_for, stable_meanwhile) = if case.stage.canary.trials == 0 {
        (case.stage_age, case.stage.stable.trials)
    } else if routed_beside_stable {
        (case.silence.span, case.silence.stable)
    } else {
        (Duration::ZERO, 0)
    };
    let expected = match case.environment {
        Environment::Production => return None,
        Environment::Canary { .. } if routed_beside_stable => {
            stable_meanwhile as f64 * share / (1.0 - share)
        }
        Environment::Staging | Environment::Canary { .. } => f64::INFINITY,
    };
    let silent = silent_for >= case.slo.no_data_after;
    // The chance of no outcome among those due, at least e⁻⁷⁰⁰, which an f64 still holds (a
    // smaller chance is reported as that bound, an upper bound as a p-value may be); 0 when no
    // stable traffic counts them (Staging, a 100 % canary), where the finding shows no p-value.
    let p_value = match (silent, expected.is_finite()) {
        (false, _) => 1.0,
        (true, true) => (-expected.min(700.0)).exp(),
        (true, false) => 0.0,
    };
    Some(Finding {
        rule: Rule::NoData,
        observed: 0.0,
        limit: case.slo.no_data_after.as_secs_f64(),
        p_value,
        fired: false,
        holds: silent && expected >= NO_DATA_EXPECTED,
        acting: "no_data_ms",
    })
}
