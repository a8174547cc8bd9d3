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
mod rules;
mod score;
mod stats;

use crate::config::Environment;
use crate::decision::StageId;
use crate::metrics::CohortCounts;
use crate::slo::SloConfig;
use cohort::CohortStats;
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
}

impl fmt::Display for Recommendation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Recommendation::Healthy => "HEALTHY",
            Recommendation::Monitor => "MONITOR",
            Recommendation::Rollback => "ROLLBACK",
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
    /// Errors since the previous evaluation improbable at any acceptable rate.
    ErrorBurst,
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
    /// Whether the rule fired.
    pub fired: bool,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.fired { "FIRED" } else { "ok" };
        let (observed, limit) = match self.rule {
            Rule::P99VsStable | Rule::P99Budget => (
                format!("{:.3}ms", self.observed),
                format!("{:.3}ms", self.limit),
            ),
            Rule::HealthScore => (
                format!("{:.4}", self.observed),
                format!("{:.4}", self.limit),
            ),
            _ => (
                format!("{:.3}%", self.observed * 100.0),
                format!("{:.3}%", self.limit * 100.0),
            ),
        };
        write!(
            f,
            "{} {verdict}: observed {observed} vs limit {limit} (p={:.2e})",
            self.rule.name(),
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

    /// Whether the canary has at least `min_samples` samples.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert!(!gate.monitor_canary_health().evidence.sufficient_data());
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn sufficient_data(&self) -> bool {
        self.canary.requests >= self.min_samples
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
        let mut fired = self.fired().peekable();
        if fired.peek().is_none() {
            write!(f, "; no rule fired (min_samples {})", self.min_samples)
        } else {
            for finding in fired {
                write!(f, "; {finding}")?;
            }
            Ok(())
        }
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

/// The canary's requests and errors since the previous evaluation: what the `error_burst`
/// rule looks at, so that a sudden outage is not diluted by a window of healthy traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Recent {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
}

/// What the judge needs besides the counts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy<'a> {
    pub(crate) slo: &'a SloConfig,
    pub(crate) slo_threshold: f64,
}

/// Judges one window. `canary` is the new version's cohort (canary requests, or all requests
/// in Staging), `stable` the stable version's. Histograms may be empty (counters only): the
/// latency rules are then skipped.
pub(crate) fn judge(
    stage: StageId,
    environment: Environment,
    canary: &CohortCounts,
    stable: &CohortCounts,
    recent: Recent,
    policy: Policy<'_>,
) -> CanaryHealth {
    let (canary, stable) = (CohortStats::of(canary), CohortStats::of(stable));
    let mut findings = Vec::new();
    let health_score = assess(environment, canary, stable, recent, policy, &mut |f| {
        findings.push(f)
    });
    let evidence = Evidence {
        stage,
        environment,
        canary: canary.evidence(),
        stable: stable.evidence(),
        min_samples: policy.slo.min_samples,
        findings,
        health_score,
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
pub(crate) fn screen(
    environment: Environment,
    canary: &CohortCounts,
    stable: &CohortCounts,
    recent: Recent,
    policy: Policy<'_>,
) -> bool {
    let (canary, stable) = (CohortStats::of(canary), CohortStats::of(stable));
    let mut fired = false;
    assess(environment, canary, stable, recent, policy, &mut |f| {
        fired |= f.fired
    });
    fired
}

/// Runs every rule in order, handing each finding to `sink`; returns the health score (its
/// point estimate). Production has no canary: no findings, score 1.
fn assess(
    environment: Environment,
    canary: CohortStats<'_>,
    stable: CohortStats<'_>,
    recent: Recent,
    policy: Policy<'_>,
    sink: &mut impl FnMut(Finding),
) -> f64 {
    if matches!(environment, Environment::Production) {
        return 1.0;
    }
    let case = Case::new(canary, stable, recent, policy);
    for rule in RULES {
        if let Some(finding) = rule(&case) {
            sink(finding);
        }
    }
    case.score.point
}

/// ROLLBACK when a rule fired (the gate rolls back, or would with auto rollback on);
/// otherwise MONITOR while the canary has too few samples or the score is below 0.9 (so a low
/// score the data are not yet sure of is MONITOR); otherwise HEALTHY.
fn recommend(evidence: &Evidence) -> Recommendation {
    let judging = !matches!(evidence.environment, Environment::Production);
    if evidence.fired().next().is_some() {
        Recommendation::Rollback
    } else if (judging && !evidence.sufficient_data()) || evidence.health_score < HEALTHY_FROM {
        Recommendation::Monitor
    } else {
        Recommendation::Healthy
    }
}

#[cfg(test)]
mod tests;
