//! The judge, pure: one window of both cohorts' counts plus the policy gives the canary's
//! health, a recommendation and the evidence behind it. No state, no clock, no atomics.
//!
//! Inside, each rule is one small function returning its finding, the health score is computed
//! once as a point estimate and an upper bound, and each cohort's statistics are computed once
//! per evaluation; the full judge and the record path's allocation-free screen run the same
//! rules. The rest of this page is `docs/judge.md`, included here so that it is written once.
//!
#![doc = include_str!("../../docs/judge.md")]

use std::fmt;
use std::time::Duration;

mod apart;
#[cfg(test)]
mod calibration;
mod cohort;
mod evidence;
mod latency;
mod promotion;
mod rules;
mod score;
mod sequential;
mod shift;
mod stats;

use crate::config::Environment;
use crate::decision::StageId;
use crate::metrics::{Bursts, Counts, Silence};
use crate::slo::SloConfig;
pub(crate) use apart::{Digits, apart};
pub use evidence::{CanaryHealth, CohortEvidence, Evidence, Finding, NonInferiority};
use rules::{Case, RULES};
pub(crate) use score::HEALTHY_FROM;
pub use stats::{binomial_tail, normal_quantile_upper, normal_upper_tail};

/// Relative margin over the stable error rate that is still acceptable (spec: 1.1×), beside
/// `error_rate_tolerance`: the tolerated limit is this × the stable error rate or the stable
/// rate + `error_rate_tolerance`, whichever is higher. The score's error penalty counts the
/// excess beyond that limit, and `errors_over_stage` fires when the canary is surely beyond
/// it (its finding names this constant as `acting` when the ratio is the higher limit).
///
/// # Example
/// ```
/// assert_eq!(promotion_gates::judge::ERROR_RATE_MARGIN, 1.1);
/// ```
pub const ERROR_RATE_MARGIN: f64 = 1.1;
/// Stable error rate below which the stable cohort is treated as having this one, when scaling
/// the error penalty.
///
/// # Example
/// ```
/// assert_eq!(promotion_gates::judge::ERROR_RATE_FLOOR, 0.001); // 0.1 %
/// ```
pub const ERROR_RATE_FLOOR: f64 = 0.001;
/// Least error rate the `overwhelming_errors` and `error_burst` rules compare with.
///
/// # Example
/// ```
/// assert_eq!(promotion_gates::judge::OVERWHELMING_RATE_FLOOR, 0.01); // 1 %
/// ```
pub const OVERWHELMING_RATE_FLOOR: f64 = 0.01;

/// What the judge advises.
///
/// # Example
/// ```
/// use promotion_gates::Recommendation;
/// assert_eq!(Recommendation::Rollback.to_string(), "ROLLBACK");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recommendation {
    /// No rule fired and none holds, the canary has `min_samples` samples in the window (or
    /// the stage shows it not worse than stable), its compliance is
    /// at least `slo_threshold`, the score is at least 0.9, and the stage shows it not worse
    /// than stable (when required): ready to promote. In Production, where nothing is judged
    /// against a canary, the stable version has `min_samples` requests in the window and its
    /// compliance is at least `slo_threshold`. The gate's compliance check agrees.
    Healthy,
    /// No rule fired, but a finding holds, the canary has fewer than `min_samples` samples in
    /// the window and the stage does not show it not worse than stable, its compliance in the
    /// window is below `slo_threshold`, the score is below 0.9 (a score below 0.8 that the
    /// data are not yet sure of included), or the stage does not yet show it not worse than
    /// stable: watch before promoting. In Production: the stable version has fewer than
    /// `min_samples` requests in the window, or its compliance is below `slo_threshold`.
    Monitor,
    /// A rule fired: the gate rolls back, or would with auto rollback on. A low score alone is
    /// not enough: the `health_score` rule acts on the score's upper confidence bound.
    Rollback,
    /// The canary is routed (or the stage old enough) but has reported no outcome for
    /// `no_data_ms`: nothing can be judged, and it is never promotable. Check that the host
    /// records outcomes for canary requests.
    NoData,
}

impl fmt::Display for Recommendation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Recommendation::Healthy => "HEALTHY",
            Recommendation::Monitor => "MONITOR",
            Recommendation::Rollback => "ROLLBACK",
            Recommendation::NoData => "NO_DATA",
        })
    }
}

/// A rule of the judge (see the [module docs](crate::judge)).
///
/// # Example
/// ```
/// assert_eq!(promotion_gates::Rule::P99VsStable.name(), "p99_vs_stable");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rule {
    /// Compliance (success within the latency target, a slow success counted only after the
    /// stage's warm-up) below `slo_threshold`.
    SloCompliance,
    /// Error rate above `max_error_rate`.
    ErrorRateMax,
    /// Over the window, the error rate significantly above both `error_rate_ratio_limit` ×
    /// the stable cohort's and the stable cohort's + `error_rate_tolerance` (two two-sample
    /// tests, the larger p-value).
    ErrorRateVsStable,
    /// Errors improbable at any acceptable rate, at any sample count.
    OverwhelmingErrors,
    /// Over the window after warm-up, the share of canary requests slower than the stable
    /// p99's upper confidence bound (+ `latency_tolerance_ms`) significantly above
    /// `p99_ratio_limit` × the stable cohort's share (a two-sample test): a tail, not only a
    /// shifted p99.
    P99VsStable,
    /// p99 above the absolute `p99_budget`.
    P99Budget,
    /// Health score surely below 0.8: its upper confidence bound is (four one-sided bounds
    /// at `significance` each, so the level is 4 × `significance`).
    HealthScore,
    /// Errors in a burst span (the current one, or since the one before it) improbable at
    /// any acceptable rate given the stable version's in the same span.
    ErrorBurst,
    /// Over the whole stage, the error rate surely above the stable version's beyond both
    /// [`ERROR_RATE_MARGIN`] × it and it + `error_rate_tolerance` (a confidence sequence, valid
    /// at every look).
    ErrorsOverStage,
    /// Over the stage after warm-up, the whole latency distribution surely slower than the
    /// stable version's beyond `latency_shift_limit` (Mann-Whitney, confidence sequence).
    LatencyShift,
    /// No canary outcome for `no_data_ms` while at least 20 were due (stable requests × share
    /// / (1 − share)): holds, never rolls back.
    NoData,
}

impl Rule {
    /// Every rule, in the order of the enum. A slice, not an array: a rule added in a later
    /// release changes its length, not its type.
    ///
    /// # Example
    /// ```
    /// use promotion_gates::Rule;
    /// let names: Vec<&str> = Rule::ALL.iter().map(|rule| rule.name()).collect();
    /// assert_eq!(names.first(), Some(&"slo_compliance"));
    /// assert!(Rule::ALL.contains(&Rule::NoData));
    /// ```
    pub const ALL: &[Rule] = &[
        Rule::SloCompliance,
        Rule::ErrorRateMax,
        Rule::ErrorRateVsStable,
        Rule::OverwhelmingErrors,
        Rule::P99VsStable,
        Rule::P99Budget,
        Rule::HealthScore,
        Rule::ErrorBurst,
        Rule::ErrorsOverStage,
        Rule::LatencyShift,
        Rule::NoData,
    ];

    /// The rule's name in snake case.
    ///
    /// # Example
    /// ```
    /// assert_eq!(promotion_gates::Rule::SloCompliance.name(), "slo_compliance");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Rule::SloCompliance => "slo_compliance",
            Rule::ErrorRateMax => "error_rate_max",
            Rule::ErrorRateVsStable => "error_rate_vs_stable",
            Rule::OverwhelmingErrors => "overwhelming_errors",
            Rule::P99VsStable => "p99_vs_stable",
            Rule::P99Budget => "p99_budget",
            Rule::HealthScore => "health_score",
            Rule::ErrorBurst => "error_burst",
            Rule::ErrorsOverStage => "errors_over_stage",
            Rule::LatencyShift => "latency_shift",
            Rule::NoData => "no_data",
        }
    }
}

/// What the judge reads of one stage: the window, the stage as a whole, the latencies after
/// warm-up, the burst spans, and the stage's age. Histograms may be empty (counters only, or
/// still warming up): the latency rules are then skipped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample<'a> {
    /// Both cohorts in the window.
    pub(crate) window: &'a Counts,
    /// Both cohorts over the whole stage (counters are read).
    pub(crate) stage: &'a Counts,
    /// Both cohorts in the window after the stage's warm-up.
    pub(crate) latency: &'a Counts,
    /// Both cohorts over the stage after its warm-up.
    pub(crate) stage_latency: &'a Counts,
    /// Both cohorts' `[requests, errors]` in the two burst spans.
    pub(crate) bursts: Bursts,
    /// Time since the stage started.
    pub(crate) stage_age: Duration,
    /// How long the canary, having reported in this stage, has reported nothing since.
    pub(crate) silence: Silence,
    /// How many gate instances the counts are of (more than 1 on a shared state store).
    pub(crate) instances: u32,
}

/// What the judge needs besides the counts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy<'a> {
    pub(crate) slo: &'a SloConfig,
    pub(crate) slo_threshold: f64,
    /// The standard normal's upper quantile at `slo.significance` (a bisection): computed
    /// once per SLO config ([`Policy::z_of`]), never on the record path.
    pub(crate) z: f64,
}

impl<'a> Policy<'a> {
    /// The policy of `slo` at `slo_threshold`, with its quantile computed (the tests' way;
    /// the monitor keeps its quantile).
    #[cfg(test)]
    pub(crate) fn new(slo: &'a SloConfig, slo_threshold: f64) -> Self {
        Self {
            slo,
            slo_threshold,
            z: Self::z_of(slo),
        }
    }

    /// The quantile [`Policy::z`] of `slo`: whoever keeps an SLO config computes it once.
    pub(crate) fn z_of(slo: &SloConfig) -> f64 {
        normal_quantile_upper(slo.significance)
    }
}

/// Judges one stage of `environment`: the canary cohort is the new version's (canary
/// requests, or all requests in Staging), the stable cohort the stable version's.
pub(crate) fn judge(
    stage: StageId,
    environment: Environment,
    sample: &Sample<'_>,
    policy: Policy<'_>,
) -> CanaryHealth {
    let case = Case::new(sample, environment, policy);
    let findings = findings(&case);
    health(stage, &case, findings, sample.instances)
}

/// Whether any rule fires, without allocating: the record path's check after a canary error
/// (counters only). It runs the same rules as [`judge`], which confirms a rule it reports.
pub(crate) fn screen(environment: Environment, sample: &Sample<'_>, policy: Policy<'_>) -> bool {
    let case = Case::new(sample, environment, policy);
    findings(&case).iter().flatten().any(|f| f.fired)
}

/// [`judge`] only if a rule fires, else `None`, without allocating: the periodic evaluation
/// on the record path. The rules run once, and their findings become the evidence.
pub(crate) fn judge_if_fired(
    stage: StageId,
    environment: Environment,
    sample: &Sample<'_>,
    policy: Policy<'_>,
) -> Option<CanaryHealth> {
    let case = Case::new(sample, environment, policy);
    let findings = findings(&case);
    findings
        .iter()
        .flatten()
        .any(|f| f.fired)
        .then(|| health(stage, &case, findings, sample.instances))
}

/// Every rule's finding on `case`, in order, without allocating. Production has no canary:
/// no findings.
fn findings(case: &Case<'_>) -> [Option<Finding>; RULES.len()] {
    if matches!(case.environment, Environment::Production) {
        return [const { None }; RULES.len()];
    }
    RULES.map(|rule| rule(case))
}

/// The health of `case` given its `findings`: the evidence (the case's cohort statistics, the
/// positive evidence computed here only) and the recommendation. Production scores 1.
fn health(
    stage: StageId,
    case: &Case<'_>,
    findings: [Option<Finding>; RULES.len()],
    instances: u32,
) -> CanaryHealth {
    let environment = case.environment;
    let (health_score, non_inferiority) = if matches!(environment, Environment::Production) {
        (1.0, NonInferiority::default())
    } else {
        (case.score.point, promotion::non_inferiority(case))
    };
    let (canary, stable) = (&case.canary, &case.stable);
    let evidence = Evidence {
        stage,
        environment,
        canary: canary.evidence(
            case.latency.canary.p99_micros.or(canary.p99_micros),
            case.latency.canary.requests,
            case.misses.canary,
        ),
        stable: stable.evidence(
            case.latency.stable.p99_micros.or(stable.p99_micros),
            case.latency.stable.requests,
            case.misses.stable,
        ),
        min_samples: case.slo.min_samples,
        slo_threshold: case.slo_threshold,
        findings: findings.into_iter().flatten().collect(),
        health_score,
        non_inferiority,
        instances,
    };
    let recommendation = recommend(&evidence);
    CanaryHealth {
        traffic_percent: environment.traffic_percent(),
        canary_requests: evidence.canary.requests,
        production_requests: evidence.stable.requests,
        canary_error_rate: evidence.canary.error_rate,
        production_error_rate: evidence.stable.error_rate,
        canary_p99_latency: evidence.canary.p99,
        production_p99_latency: evidence.stable.p99,
        health_score,
        recommendation,
        evidence,
    }
}

/// ROLLBACK when a rule fired (the gate rolls back, or would with auto rollback on); NO_DATA
/// when the canary reports nothing; otherwise MONITOR while a finding holds, the version under
/// judgement (the canary, or in Production the stable version) has too few samples
/// ([`Evidence::too_few_samples`]), its compliance is below `slo_threshold`, the score is below
/// 0.9 (so a low score the data are not yet sure of is MONITOR) or non-inferiority is not yet
/// shown; otherwise HEALTHY, which the gate's compliance check then agrees with, in every
/// environment.
fn recommend(evidence: &Evidence) -> Recommendation {
    if evidence.fired().next().is_some() {
        Recommendation::Rollback
    } else if evidence.holds(Rule::NoData) {
        Recommendation::NoData
    } else if evidence.held().next().is_some()
        || evidence.too_few_samples()
        || evidence.below_slo_threshold()
        || evidence.health_score < HEALTHY_FROM
        || !evidence.non_inferiority.sufficient()
    {
        Recommendation::Monitor
    } else {
        Recommendation::Healthy
    }
}

#[cfg(test)]
pub(crate) mod tests;
