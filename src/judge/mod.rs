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

use crate::config::Environment;
use crate::decision::StageId;
use crate::metrics::{CohortCounts, count_above, quantile_micros};
use crate::slo::SloConfig;

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

/// The new version's requests and errors since the previous evaluation: what the
/// `error_burst` rule looks at, so that a sudden outage is not diluted by a window of healthy
/// traffic.
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

/// Judges one window. `subject` is the new version's cohort, `baseline` the stable one's.
/// Histograms may be empty (counters only): the latency rules are then skipped.
pub(crate) fn judge(
    stage: StageId,
    environment: Environment,
    subject: &CohortCounts,
    baseline: &CohortCounts,
    recent: Recent,
    policy: Policy<'_>,
) -> CanaryHealth {
    let mut findings = Vec::new();
    let health_score = assess(environment, subject, baseline, recent, policy, &mut |f| {
        findings.push(f)
    });
    let judging = !matches!(environment, Environment::Production);
    let evidence = Evidence {
        stage,
        environment,
        canary: evidence_of(subject),
        production: evidence_of(baseline),
        min_samples: policy.slo.min_samples,
        findings,
        health_score,
    };
    // ROLLBACK means a rule fired (the gate rolls back, or would with auto rollback on); a low
    // score the data are not yet sure of is MONITOR.
    let recommendation = if evidence.fired().next().is_some() {
        Recommendation::Rollback
    } else if (judging && !evidence.sufficient_data()) || health_score < 0.9 {
        Recommendation::Monitor
    } else {
        Recommendation::Healthy
    };
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
/// Give it counters only (empty histograms); a rule it reports is confirmed by [`judge`].
pub(crate) fn screen(
    environment: Environment,
    subject: &CohortCounts,
    baseline: &CohortCounts,
    recent: Recent,
    policy: Policy<'_>,
) -> bool {
    let mut fired = false;
    assess(environment, subject, baseline, recent, policy, &mut |f| {
        fired |= f.fired
    });
    fired
}

/// Runs every rule, handing each finding to `sink`; returns the health score.
fn assess(
    environment: Environment,
    subject: &CohortCounts,
    baseline: &CohortCounts,
    recent: Recent,
    policy: Policy<'_>,
    sink: &mut impl FnMut(Finding),
) -> f64 {
    if matches!(environment, Environment::Production) {
        return 1.0;
    }
    let slo = policy.slo;
    let alpha = slo.significance;
    let min = slo.min_samples;
    let enough = subject.requests >= min;
    let baseline_enough = baseline.requests >= min;
    let with_latency = !subject.histogram.is_empty() && !baseline.histogram.is_empty();
    let rate = |c: &CohortCounts| {
        if c.requests == 0 {
            0.0
        } else {
            c.errors.min(c.requests) as f64 / c.requests as f64
        }
    };
    let (subject_rate, baseline_rate) = (rate(subject), rate(baseline));
    let errors = subject.errors.min(subject.requests);

    // SLO compliance.
    let misses = subject.requests.saturating_sub(subject.compliant);
    let allowed = 1.0 - policy.slo_threshold;
    let p = binomial_tail(misses, subject.requests, allowed);
    let observed = if subject.requests == 0 {
        0.0
    } else {
        misses as f64 / subject.requests as f64
    };
    sink(Finding {
        rule: Rule::SloCompliance,
        observed,
        limit: allowed,
        p_value: p,
        fired: enough && p < alpha,
    });

    // Absolute error rate.
    let p = binomial_tail(errors, subject.requests, slo.max_error_rate);
    sink(Finding {
        rule: Rule::ErrorRateMax,
        observed: subject_rate,
        limit: slo.max_error_rate,
        p_value: p,
        fired: enough && p < alpha,
    });

    // Error rate against the baseline: the score's penalty from 1.1x, the rule at the limit.
    let relative_limit = slo.error_rate_ratio_limit * baseline_rate;
    let z = normal_quantile_upper(alpha);
    let mut error_penalty = 0.0;
    let mut sure_error_penalty = 0.0;
    if baseline_enough {
        let margin_rate = ERROR_RATE_MARGIN * baseline_rate;
        let scale = baseline_rate.max(ERROR_RATE_FLOOR);
        if subject_rate > margin_rate
            && two_proportion_p(subject, baseline, ERROR_RATE_MARGIN) < alpha
        {
            let excess = (subject_rate - baseline_rate) / scale;
            error_penalty = (0.25 * excess).clamp(0.0, 0.5);
        }
        // The excess the data make sure of: its one-sided lower confidence bound at α.
        let sure_excess = (subject_rate - baseline_rate) - z * difference_se(subject, baseline);
        sure_error_penalty = (0.25 * sure_excess / scale).clamp(0.0, 0.5);
        let p = two_proportion_p(subject, baseline, slo.error_rate_ratio_limit);
        sink(Finding {
            rule: Rule::ErrorRateVsProduction,
            observed: subject_rate,
            limit: relative_limit,
            p_value: p,
            fired: enough && subject_rate > relative_limit && p < alpha,
        });
    }

    // Overwhelming evidence, at any sample count: improbable even at the worst acceptable rate.
    let reference = relative_limit
        .max(slo.max_error_rate)
        .max(OVERWHELMING_RATE_FLOOR);
    let p = binomial_tail(errors, subject.requests, reference);
    sink(Finding {
        rule: Rule::OverwhelmingErrors,
        observed: subject_rate,
        limit: reference,
        p_value: p,
        fired: p < slo.overwhelming_significance,
    });

    // The same test on what happened since the previous evaluation: a sudden outage.
    let burst_errors = recent.errors.min(recent.requests);
    let p = binomial_tail(burst_errors, recent.requests, reference);
    sink(Finding {
        rule: Rule::ErrorBurst,
        observed: if recent.requests == 0 {
            0.0
        } else {
            burst_errors as f64 / recent.requests as f64
        },
        limit: reference,
        p_value: p,
        fired: p < slo.overwhelming_significance,
    });

    let mut latency_penalty = 0.0;
    let mut sure_latency_penalty = 0.0;
    if with_latency && baseline_enough && enough {
        let prod_p99 = quantile_micros(&baseline.histogram, 0.99);
        let canary_p99 = quantile_micros(&subject.histogram, 0.99);
        let slower = count_above(&subject.histogram, prod_p99);
        if canary_p99 > prod_p99 && binomial_tail(slower, subject.requests, 0.01) < alpha {
            let ratio = canary_p99 as f64 / prod_p99.max(1) as f64;
            latency_penalty = ((ratio - 1.0) * 0.2).clamp(0.0, 0.3);
        }
        // The ratio the data make sure of: the canary's p99 at its lower confidence bound
        // over production's at its upper one (distribution-free bounds by order statistics).
        let canary_low = quantile_micros(&subject.histogram, p99_bound(subject.requests, -z));
        let prod_high = quantile_micros(&baseline.histogram, p99_bound(baseline.requests, z));
        let sure_ratio = canary_low as f64 / prod_high.max(1) as f64;
        sure_latency_penalty = ((sure_ratio - 1.0) * 0.2).clamp(0.0, 0.3);
        let limit = (prod_p99 as f64 * slo.p99_ratio_limit) as u64;
        sink(tail_finding(
            Rule::P99VsProduction,
            subject,
            canary_p99,
            limit,
            alpha,
        ));
    }
    if let (true, true, Some(budget)) = (with_latency, enough, slo.p99_budget) {
        let canary_p99 = quantile_micros(&subject.histogram, 0.99);
        let limit = u64::try_from(budget.as_micros()).unwrap_or(u64::MAX);
        sink(tail_finding(
            Rule::P99Budget,
            subject,
            canary_p99,
            limit,
            alpha,
        ));
    }

    let score = (1.0 - error_penalty - latency_penalty).clamp(0.0, 1.0);
    // The rule tests the score's upper confidence bound, not its point estimate: it fires
    // only when the data make sure the score is below 0.8.
    let sure_score = (1.0 - sure_error_penalty - sure_latency_penalty).clamp(0.0, 1.0);
    sink(Finding {
        rule: Rule::HealthScore,
        observed: sure_score,
        limit: 0.8,
        p_value: if sure_score < 0.8 { alpha } else { 1.0 },
        fired: enough && sure_score < 0.8,
    });
    score
}

/// Standard error of the difference of two error rates (unpooled, half-count smoothing).
fn difference_se(subject: &CohortCounts, baseline: &CohortCounts) -> f64 {
    let part = |c: &CohortCounts| {
        let n = c.requests as f64;
        if n == 0.0 {
            return 0.25;
        }
        let p = (c.errors.min(c.requests) as f64 + 0.5) / (n + 1.0);
        p * (1.0 - p) / n
    };
    (part(subject) + part(baseline)).sqrt()
}

/// The quantile to read for a confidence bound of the p99 from `n` samples: `0.99 + z·σ`,
/// with `σ` the standard deviation of the share of samples below the true p99.
fn p99_bound(n: u64, z: f64) -> f64 {
    let sigma = (0.99 * 0.01 / n.max(1) as f64).sqrt();
    (0.99 + z * sigma).clamp(0.5, 1.0)
}

/// The `z` with `P(Z > z) = alpha` for a standard normal `Z` (bisection on the tail).
pub fn normal_quantile_upper(alpha: f64) -> f64 {
    let (mut low, mut high) = (-40.0f64, 40.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (low + high);
        if normal_upper_tail(mid) > alpha {
            low = mid;
        } else {
            high = mid;
        }
    }
    0.5 * (low + high)
}

fn tail_finding(
    rule: Rule,
    subject: &CohortCounts,
    p99_micros: u64,
    limit_micros: u64,
    alpha: f64,
) -> Finding {
    let slower = count_above(&subject.histogram, limit_micros);
    let p = binomial_tail(slower, subject.requests, 0.01);
    Finding {
        rule,
        observed: p99_micros as f64 / 1e3,
        limit: limit_micros as f64 / 1e3,
        p_value: p,
        fired: p99_micros > limit_micros && p < alpha,
    }
}

fn evidence_of(c: &CohortCounts) -> CohortEvidence {
    let requests = c.requests;
    let errors = c.errors.min(requests);
    let compliant = c.compliant.min(requests);
    let (error_rate, compliance) = if requests == 0 {
        (0.0, 1.0)
    } else {
        (
            errors as f64 / requests as f64,
            compliant as f64 / requests as f64,
        )
    };
    let p99 = if c.histogram.is_empty() {
        Duration::ZERO
    } else {
        Duration::from_micros(quantile_micros(&c.histogram, 0.99))
    };
    CohortEvidence {
        requests,
        errors,
        compliant,
        error_rate,
        compliance,
        p99,
    }
}

/// Upper bound on `P(X >= k)` for `X ~ Binomial(n, p)`: 1 when `k/n <= p`, else
/// `exp(-n * KL(k/n || p))` (Chernoff–Hoeffding). Exact at `k = n`: `p^n`.
pub fn binomial_tail(k: u64, n: u64, p: f64) -> f64 {
    if n == 0 || k == 0 {
        return 1.0;
    }
    let q = (k.min(n)) as f64 / n as f64;
    if q <= p {
        return 1.0;
    }
    if p <= 0.0 {
        return 0.0;
    }
    let kl = if q >= 1.0 {
        -p.ln()
    } else {
        q * (q / p).ln() + (1.0 - q) * ((1.0 - q) / (1.0 - p)).ln()
    };
    (-(n as f64) * kl).exp()
}

/// One-sided p-value of `p_subject > margin * p_baseline` (unpooled z-test, half-count
/// smoothing so that zero counts keep a variance).
fn two_proportion_p(subject: &CohortCounts, baseline: &CohortCounts, margin: f64) -> f64 {
    let rate = |c: &CohortCounts| (c.errors.min(c.requests) as f64, c.requests as f64);
    let (xs, ns) = rate(subject);
    let (xb, nb) = rate(baseline);
    if ns == 0.0 || nb == 0.0 {
        return 1.0;
    }
    let smooth = |x: f64, n: f64| (x + 0.5) / (n + 1.0);
    let (ps, pb) = (smooth(xs, ns), smooth(xb, nb));
    let variance = ps * (1.0 - ps) / ns + margin * margin * pb * (1.0 - pb) / nb;
    let z = (xs / ns - margin * xb / nb) / variance.sqrt();
    normal_upper_tail(z)
}

/// `P(Z > z)` for a standard normal `Z`.
pub fn normal_upper_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function, relative error below 1.2e-7 everywhere (Chebyshev fit,
/// Numerical Recipes §6.2).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests;
