//! The judge, pure: one window of merged metrics plus the policy gives the canary's health, a
//! recommendation and the evidence behind it. No state, no clock, no atomics.
//!
//! # Rules
//! The *subject* is the new version's cohort (canary requests, or all requests in Staging); the
//! *baseline* is the stable version's cohort in the same window. Each rule is a one-sided test
//! at [`significance`](crate::SloConfig::significance) (α, default 0.001) and fires only with
//! at least [`min_samples`](crate::SloConfig::min_samples) subject samples (and as many
//! baseline samples for the rules that compare with it):
//!
//! | rule | fires when |
//! |---|---|
//! | `slo_compliance` | the share of requests that failed or missed the latency target is significantly above `1 - slo_threshold` |
//! | `error_rate_max` | the error rate is significantly above `max_error_rate` (5 %) |
//! | `error_rate_vs_production` | the error rate is significantly above `error_rate_ratio_limit` (1.5) × the baseline's |
//! | `p99_vs_production` | significantly more than 1 % of requests are slower than `p99_ratio_limit` (1.5) × the baseline's p99, and the p99 itself is |
//! | `p99_budget` | the same against the absolute `p99_budget`, when set |
//! | `health_score` | the data make sure the health score is below 0.8: its upper confidence bound (the score computed from the excess error rate's lower bound and the p99 ratio's lower bound) is below 0.8 |
//! | `error_burst` | at any sample count: the same test as `overwhelming_errors`, on the requests since the previous evaluation (about `evaluation_interval`), so a sudden outage is not diluted by a window of healthy traffic |
//! | `overwhelming_errors` | at any sample count: the errors would have probability below `overwhelming_significance` (1e-9) even at an error rate of max(`error_rate_ratio_limit` × baseline, `max_error_rate`, 1 %) |
//!
//! Binomial tails use the Chernoff–Hoeffding bound `P(X ≥ k) ≤ exp(-n·KL(k/n ‖ p))`, which
//! over-states the p-value, so each test errs towards not rolling back. The comparison with the
//! baseline is a two-proportion z-test (unpooled, with half-count smoothing).
//!
//! # Health score
//! `1 - error_penalty - latency_penalty`, after the specification:
//! - `error_penalty = min(0.5, 0.25 × (p_canary - p_prod) / max(p_prod, 0.1 %))`, applied once
//!   the canary's error rate is significantly above 1.1 × production's (the same
//!   two-proportion test with margin 1.1 has a p-value below α), else 0;
//! - `latency_penalty = min(0.3, 0.2 × (p99_canary / p99_prod - 1))`, applied once
//!   significantly more than 1 % of canary requests are slower than production's p99, else 0.
//!
//! Worked examples (production at 1 % errors, enough samples for significance):
//!
//! | canary | error penalty | latency penalty | score | recommendation |
//! |---|---|---|---|---|
//! | 1 % errors, same p99 | 0 | 0 | 1.00 | HEALTHY |
//! | 1.2 % errors | 0.05 | 0 | 0.95 | HEALTHY |
//! | 1.5 % errors | 0.125 | 0 | 0.875 | MONITOR |
//! | 2 % errors (2×) | 0.25 | 0 | 0.75 | ROLLBACK |
//! | 3 % errors (3×) | 0.5 | 0 | 0.50 | ROLLBACK |
//! | 1 % errors, p99 1.4× | 0 | 0.08 | 0.92 | HEALTHY |
//! | 1.5 % errors, p99 2× | 0.125 | 0.2 | 0.675 | ROLLBACK |
//!
//! The `health_score` rule does not act on this point estimate, which is noisy at small
//! samples (a p99 of 100 requests is nearly their maximum): it acts on the score's upper
//! confidence bound at α, computed with the excess error rate at its lower bound
//! (`(p_canary - p_prod) - z·σ`) and the p99 ratio at its lower bound (the canary's p99 read
//! at quantile `0.99 - z·√(0.99·0.01/n)` over production's read at `0.99 + z·√(…/n)`).
//!
//! # Recommendation
//! ROLLBACK when a rule fired (so ROLLBACK always means the gate rolls back, or would with
//! auto rollback on); otherwise MONITOR while the subject has fewer than `min_samples` samples
//! (never HEALTHY without enough data) or while the score is below 0.9; otherwise HEALTHY. A
//! score below 0.8 that the data are not yet sure of is MONITOR.

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

/// Relative margin over the baseline's error rate that is still acceptable (spec: 1.1×).
pub const ERROR_RATE_MARGIN: f64 = 1.1;
/// Error rate below which the baseline is treated as this, when scaling the error penalty.
pub const ERROR_RATE_FLOOR: f64 = 0.001;
/// Least error rate the overwhelming-evidence rule compares with.
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
    /// Enough data, no rule fired, score ≥ 0.9: ready to promote.
    Healthy,
    /// Not enough data yet, or score 0.8–0.9: watch before promoting.
    Monitor,
    /// A rule fired or the score is below 0.8.
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
/// assert_eq!(promotion_gates::Rule::P99VsProduction.name(), "p99_vs_production");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Compliance (success within the latency target) below `slo_threshold`.
    SloCompliance,
    /// Error rate above `max_error_rate`.
    ErrorRateMax,
    /// Error rate above `error_rate_ratio_limit` × production's.
    ErrorRateVsProduction,
    /// Errors improbable at any acceptable rate, before `min_samples`.
    OverwhelmingErrors,
    /// p99 above production's p99 × `p99_ratio_limit`.
    P99VsProduction,
    /// p99 above the absolute `p99_budget`.
    P99Budget,
    /// Health score below 0.8.
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
            Rule::ErrorRateVsProduction => "error_rate_vs_production",
            Rule::OverwhelmingErrors => "overwhelming_errors",
            Rule::P99VsProduction => "p99_vs_production",
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
            Rule::P99VsProduction | Rule::P99Budget => (
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
    pub production: CohortEvidence,
    /// Samples the subject needs before ordinary rules may fire.
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

    /// Whether the subject has at least `min_samples` samples.
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
        cohort(f, "production", &self.production)?;
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
        production: stable.evidence(),
        min_samples: policy.slo.min_samples,
        findings,
        health_score,
    };
    let recommendation = recommend(&evidence);
    CanaryHealth {
        traffic_percent: environment.traffic_percent(),
        canary_requests: evidence.canary.requests,
        production_requests: evidence.production.requests,
        canary_error_rate: evidence.canary.error_rate,
        production_error_rate: evidence.production.error_rate,
        canary_p99_latency: evidence.canary.p99,
        production_p99_latency: evidence.production.p99,
        health_score,
        recommendation,
        evidence,
    }
}

/// Whether any rule fires, without allocating: the record path's check after a canary error.
/// It runs the same rules as [`judge`]; a rule it reports is confirmed by [`judge`].
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
