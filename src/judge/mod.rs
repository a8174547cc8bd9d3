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

mod cohort;
mod latency;
mod promotion;
mod rules;
mod score;
mod sequential;
mod shift;
mod stats;

use crate::config::Environment;
use crate::decision::{PerCohort, StageId};
use crate::metrics::Counts;
use crate::slo::SloConfig;
use rules::{Case, RULES};
use score::HEALTHY_FROM;
pub use stats::{binomial_tail, normal_quantile_upper, normal_upper_tail};

/// Relative margin over the stable error rate that is still acceptable (spec: 1.1×): the
/// score's error penalty applies once the canary's error rate is significantly above it.
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
pub enum Recommendation {
    /// No rule fired, the canary has `min_samples` samples, and the score is at least 0.9:
    /// ready to promote.
    Healthy,
    /// No rule fired, but the canary has fewer than `min_samples` samples or the score is
    /// below 0.9 (a score below 0.8 that the data are not yet sure of included): watch before
    /// promoting.
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
pub enum Rule {
    /// Compliance (success within the latency target) below `slo_threshold`.
    SloCompliance,
    /// Error rate above `max_error_rate`.
    ErrorRateMax,
    /// Error rate above `error_rate_ratio_limit` × the stable cohort's.
    ErrorRateVsStable,
    /// Errors improbable at any acceptable rate, at any sample count.
    OverwhelmingErrors,
    /// p99 above the stable cohort's p99 × `p99_ratio_limit`.
    P99VsStable,
    /// p99 above the absolute `p99_budget`.
    P99Budget,
    /// Health score surely below 0.8: its upper confidence bound is.
    HealthScore,
    /// Errors in the burst span improbable at any acceptable rate given the stable version's
    /// in the same span.
    ErrorBurst,
    /// Over the whole stage, the error rate surely above the stable version's beyond the
    /// margin and `error_rate_tolerance` (a confidence sequence, valid at every look).
    ErrorsOverStage,
    /// Over the stage after warm-up, the whole latency distribution surely slower than the
    /// stable version's beyond `latency_shift_limit` (Mann-Whitney, confidence sequence).
    LatencyShift,
    /// No canary outcome for `no_data_ms` while some were due: holds, never rolls back.
    NoData,
}

impl Rule {
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

/// One rule's evaluation: what was seen, against what limit, how surely.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
/// for finding in gate.monitor_canary_health().evidence.findings {
///     println!("{finding}");
/// }
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The rule.
    pub rule: Rule,
    /// The observed value (a rate, or a latency in milliseconds, or the score).
    pub observed: f64,
    /// The limit it was held against, in the same unit.
    pub limit: f64,
    /// The test's p-value (an upper bound); 0 or 1 for rules without a test.
    pub p_value: f64,
    /// Whether the rule fired: the canary is to blame and is rolled back.
    pub fired: bool,
    /// Whether the finding holds the promotion without rolling back: an absolute limit
    /// breached by the whole service (the canary not significantly worse than the stable
    /// version), or no data.
    pub holds: bool,
    /// The setting whose limit acted, e.g. `error_rate_ratio_limit` or
    /// `error_rate_tolerance` (whichever is more lenient for the data at hand).
    pub acting: &'static str,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match (self.fired, self.holds) {
            (true, _) => "FIRED",
            (false, true) => "HOLDS",
            (false, false) => "ok",
        };
        let (observed, limit) = match self.rule {
            Rule::P99VsStable | Rule::P99Budget => (
                format!("{:.3}ms", self.observed),
                format!("{:.3}ms", self.limit),
            ),
            Rule::HealthScore | Rule::LatencyShift => (
                format!("{:.4}", self.observed),
                format!("{:.4}", self.limit),
            ),
            Rule::NoData => ("no outcome".to_owned(), format!("{:.0}s", self.limit)),
            _ => (
                format!("{:.3}%", self.observed * 100.0),
                format!("{:.3}%", self.limit * 100.0),
            ),
        };
        write!(
            f,
            "{} {verdict}: observed {observed} vs limit {limit} by {} (p={:.2e})",
            self.rule.name(),
            self.acting,
            self.p_value
        )
    }
}

/// One cohort's numbers in the judged window.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
/// let health = gate.monitor_canary_health();
/// assert_eq!(health.evidence.canary.requests, 0);
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CohortEvidence {
    /// Requests in the window.
    pub requests: u64,
    /// Failed requests in the window.
    pub errors: u64,
    /// Requests that succeeded within the SLO latency target.
    pub compliant: u64,
    /// `errors / requests` (0 with no requests).
    pub error_rate: f64,
    /// `compliant / requests` (1 with no requests).
    pub compliance: f64,
    /// 99th percentile latency (zero with no requests or when only counters were read).
    pub p99: Duration,
}

/// Everything a verdict rests on: the numbers and each rule's finding.
///
/// Its `Display` is one line, written into automatic rollback events.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
/// let evidence = gate.monitor_canary_health().evidence;
/// assert!(evidence.to_string().contains("canary 0 req"));
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// The stage judged.
    pub stage: StageId,
    /// The environment of that stage.
    pub environment: Environment,
    /// The new version's numbers.
    pub canary: CohortEvidence,
    /// The stable version's numbers.
    pub stable: CohortEvidence,
    /// Samples the canary needs before ordinary rules may fire.
    pub min_samples: u64,
    /// Every rule evaluated, fired or not.
    pub findings: Vec<Finding>,
    /// The health score (point estimate) of this window.
    pub health_score: f64,
    /// The positive evidence a promotion needs (see [`NonInferiority`]).
    pub non_inferiority: NonInferiority,
}

/// Whether the data show the canary not worse than the stable version beyond the tolerated
/// limits, over the whole stage: confidence bounds at `promotion_significance` that hold at
/// every look. A promotion from a canary stage with stable traffic needs both.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
/// let shown = gate.monitor_canary_health().evidence.non_inferiority;
/// assert!(!shown.errors && !shown.latency); // nothing recorded, nothing shown
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct NonInferiority {
    /// Whether promotions need it (`promotion_evidence`).
    pub required: bool,
    /// Whether a comparison was possible: a canary stage with `min_samples` of both cohorts.
    pub compared: bool,
    /// The canary's error rate is shown below `error_rate_ratio_limit` × the stable one's, or
    /// below the stable one's + `error_rate_tolerance`.
    pub errors: bool,
    /// The canary's latencies after warm-up are shown no slower than `latency_shift_limit` ×
    /// (or `latency_tolerance_ms` +) the stable version's.
    pub latency: bool,
}

impl NonInferiority {
    /// Whether a promotion may rely on it: not required, no comparison possible (Staging,
    /// Production), or both shown.
    ///
    /// # Example
    /// ```
    /// use promotion_gates::NonInferiority;
    /// assert!(NonInferiority::default().sufficient());
    /// let half = NonInferiority { required: true, compared: true, errors: true, latency: false };
    /// assert!(!half.sufficient());
    /// assert!(NonInferiority { required: false, ..half }.sufficient());
    /// ```
    pub fn sufficient(&self) -> bool {
        !self.required || !self.compared || self.shown()
    }

    /// Whether the stage shows both: the canary not worse on errors nor on latency.
    ///
    /// # Example
    /// ```
    /// use promotion_gates::NonInferiority;
    /// let both = NonInferiority { required: true, compared: true, errors: true, latency: true };
    /// assert!(both.shown());
    /// assert!(!NonInferiority::default().shown());
    /// ```
    pub fn shown(&self) -> bool {
        self.compared && self.errors && self.latency
    }
}

impl Evidence {
    /// The findings that fired.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert_eq!(gate.monitor_canary_health().evidence.fired().count(), 0);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn fired(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.fired)
    }

    /// Whether the canary has at least `min_samples` samples in the window, or the stage as a
    /// whole shows it not worse than the stable version (a low-traffic canary whose window
    /// never holds `min_samples`).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert!(!gate.monitor_canary_health().evidence.sufficient_data());
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn sufficient_data(&self) -> bool {
        self.canary.requests >= self.min_samples || self.non_inferiority.shown()
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cohort = |f: &mut fmt::Formatter<'_>, name: &str, c: &CohortEvidence| {
            write!(
                f,
                "{name} {} req, {:.3}% errors, compliance {:.3}%, p99 {:.3}ms",
                c.requests,
                c.error_rate * 100.0,
                c.compliance * 100.0,
                c.p99.as_secs_f64() * 1e3
            )
        };
        write!(f, "stage {} {}: ", self.stage.get(), self.environment)?;
        cohort(f, "canary", &self.canary)?;
        f.write_str("; ")?;
        cohort(f, "stable", &self.stable)?;
        let mut acted = self
            .findings
            .iter()
            .filter(|x| x.fired || x.holds)
            .peekable();
        if acted.peek().is_none() {
            write!(f, "; no rule fired (min_samples {})", self.min_samples)?;
        }
        for finding in acted {
            write!(f, "; {finding}")?;
        }
        let shown = self.non_inferiority;
        if shown.compared {
            let yes = |b: bool| if b { "shown" } else { "not shown" };
            write!(
                f,
                "; not worse than stable: errors {}, latency {}",
                yes(shown.errors),
                yes(shown.latency)
            )?;
        }
        Ok(())
    }
}

/// The canary's health in the current window (the specification's fields, plus evidence).
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
/// let health = gate.monitor_canary_health();
/// println!("Canary error rate: {}", health.canary_error_rate);
/// println!("Health score: {}", health.health_score);
/// println!("Recommendation: {}", health.recommendation);
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryHealth {
    /// The canary's traffic share (100 in Staging, 0 in Production).
    pub traffic_percent: f64,
    /// Requests to the new version in the window.
    pub canary_requests: u64,
    /// Requests to the stable version in the window.
    pub production_requests: u64,
    /// The new version's error rate.
    pub canary_error_rate: f64,
    /// The stable version's error rate.
    pub production_error_rate: f64,
    /// The new version's p99 latency.
    pub canary_p99_latency: Duration,
    /// The stable version's p99 latency.
    pub production_p99_latency: Duration,
    /// 1.0 minus the error and latency penalties, in `0.0..=1.0`.
    pub health_score: f64,
    /// HEALTHY, MONITOR or ROLLBACK.
    pub recommendation: Recommendation,
    /// Numbers and findings behind the recommendation.
    pub evidence: Evidence,
}

/// What the judge reads of one stage: the window, the stage as a whole, the latencies after
/// warm-up, the burst span, and the stage's age. Histograms may be empty (counters only, or
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
    /// Both cohorts' `[requests, errors]` in the burst span.
    pub(crate) burst: PerCohort<[u64; 2]>,
    /// Time since the stage started.
    pub(crate) stage_age: Duration,
}

/// What the judge needs besides the counts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy<'a> {
    pub(crate) slo: &'a SloConfig,
    pub(crate) slo_threshold: f64,
}

/// Judges one stage of `environment`: the canary cohort is the new version's (canary
/// requests, or all requests in Staging), the stable cohort the stable version's.
pub(crate) fn judge(
    stage: StageId,
    environment: Environment,
    sample: &Sample<'_>,
    policy: Policy<'_>,
) -> CanaryHealth {
    let mut findings = Vec::new();
    let (health_score, non_inferiority) =
        assess(environment, sample, policy, &mut |f| findings.push(f));
    let window = PerCohort::from_fn(|c| cohort::CohortStats::of(&sample.window[c]));
    let latency = PerCohort::from_fn(|c| cohort::CohortStats::of(&sample.latency[c]));
    let evidence = Evidence {
        stage,
        environment,
        canary: window
            .canary
            .evidence(latency.canary.p99_micros.or(window.canary.p99_micros)),
        stable: window
            .stable
            .evidence(latency.stable.p99_micros.or(window.stable.p99_micros)),
        min_samples: policy.slo.min_samples,
        findings,
        health_score,
        non_inferiority,
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

/// Whether any rule fires, without allocating: the record path's check after a canary error
/// (counters only) and before a periodic evaluation builds its evidence. It runs the same
/// rules as [`judge`], which confirms a rule it reports.
pub(crate) fn screen(environment: Environment, sample: &Sample<'_>, policy: Policy<'_>) -> bool {
    let mut fired = false;
    assess(environment, sample, policy, &mut |f| fired |= f.fired);
    fired
}

/// Runs every rule in order, handing each finding to `sink`; returns the health score (its
/// point estimate) and the non-inferiority shown. Production has no canary: no findings,
/// score 1.
fn assess(
    environment: Environment,
    sample: &Sample<'_>,
    policy: Policy<'_>,
    sink: &mut impl FnMut(Finding),
) -> (f64, NonInferiority) {
    if matches!(environment, Environment::Production) {
        return (1.0, NonInferiority::default());
    }
    let case = Case::new(sample, environment, policy);
    for rule in RULES {
        if let Some(finding) = rule(&case) {
            sink(finding);
        }
    }
    (case.score.point, promotion::non_inferiority(&case))
}

/// ROLLBACK when a rule fired (the gate rolls back, or would with auto rollback on); NO_DATA
/// when the canary reports nothing; otherwise MONITOR while a finding holds, the canary has
/// too few samples, the score is below 0.9 (so a low score the data are not yet sure of is
/// MONITOR) or non-inferiority is not yet shown; otherwise HEALTHY.
fn recommend(evidence: &Evidence) -> Recommendation {
    let judging = !matches!(evidence.environment, Environment::Production);
    let holds = |rule| evidence.findings.iter().any(|f| f.holds && f.rule == rule);
    if evidence.fired().next().is_some() {
        Recommendation::Rollback
    } else if holds(Rule::NoData) {
        Recommendation::NoData
    } else if evidence.findings.iter().any(|f| f.holds)
        || (judging && !evidence.sufficient_data())
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
