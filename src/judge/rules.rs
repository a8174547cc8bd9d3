//! The rules: each one small function from the [`Case`] to its [`Finding`], `None` when the
//! rule does not apply (too few stable samples to compare with, or no histograms).

use super::cohort::CohortStats;
use super::score::{HealthScore, ROLLBACK_BELOW, health_score};
use super::stats::{binomial_tail, two_proportion_p};
use super::{Finding, OVERWHELMING_RATE_FLOOR, Policy, Recent, Rule};
use crate::slo::SloConfig;

/// What the rules read, computed once per evaluation: both cohorts' statistics, the canary's
/// outcomes since the previous evaluation, the policy, and the health score.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Case<'a> {
    canary: CohortStats<'a>,
    stable: CohortStats<'a>,
    recent: Recent,
    slo: &'a SloConfig,
    slo_threshold: f64,
    pub(crate) score: HealthScore,
}

impl<'a> Case<'a> {
    pub(crate) fn new(
        canary: CohortStats<'a>,
        stable: CohortStats<'a>,
        recent: Recent,
        policy: Policy<'a>,
    ) -> Self {
        Self {
            canary,
            stable,
            recent,
            slo: policy.slo,
            slo_threshold: policy.slo_threshold,
            score: health_score(&canary, &stable, policy.slo),
        }
    }

    /// Whether an ordinary rule whose test gave `p` fires: the canary has at least
    /// `min_samples` requests and `p` is below α.
    fn convinced(&self, p: f64) -> bool {
        self.canary.has(self.slo.min_samples) && p < self.slo.significance
    }

    /// Both p99s in microseconds, when both histograms were read and the canary has
    /// `min_samples`.
    fn p99s(&self) -> Option<(u64, u64)> {
        let both = (self.canary.p99_micros?, self.stable.p99_micros?);
        self.canary.has(self.slo.min_samples).then_some(both)
    }

    /// `error_rate_ratio_limit` × the stable error rate.
    fn relative_error_limit(&self) -> f64 {
        self.slo.error_rate_ratio_limit * self.stable.error_rate
    }

    /// The worst acceptable error rate: max(relative limit, `max_error_rate`, 1 %).
    fn error_rate_ceiling(&self) -> f64 {
        self.relative_error_limit()
            .max(self.slo.max_error_rate)
            .max(OVERWHELMING_RATE_FLOOR)
    }
}

/// A rule: its finding on a case, if it applies.
pub(crate) type RuleFn = fn(&Case<'_>) -> Option<Finding>;

/// Every rule, in the order of their findings.
pub(crate) const RULES: [RuleFn; 8] = [
    slo_compliance,
    error_rate_max,
    error_rate_vs_stable,
    overwhelming_errors,
    error_burst,
    p99_vs_stable,
    p99_budget,
    health_score_rule,
];

/// [`Rule::SloCompliance`]: the share of canary requests that failed or missed the latency
/// target against `1 - slo_threshold`.
fn slo_compliance(case: &Case<'_>) -> Option<Finding> {
    let allowed = 1.0 - case.slo_threshold;
    let p = binomial_tail(case.canary.misses, case.canary.requests, allowed);
    Some(Finding {
        rule: Rule::SloCompliance,
        observed: case.canary.miss_rate,
        limit: allowed,
        p_value: p,
        fired: case.convinced(p),
    })
}

/// [`Rule::ErrorRateMax`]: the canary's error rate against `max_error_rate`.
fn error_rate_max(case: &Case<'_>) -> Option<Finding> {
    let limit = case.slo.max_error_rate;
    let p = binomial_tail(case.canary.errors, case.canary.requests, limit);
    Some(Finding {
        rule: Rule::ErrorRateMax,
        observed: case.canary.error_rate,
        limit,
        p_value: p,
        fired: case.convinced(p),
    })
}

/// [`Rule::ErrorRateVsStable`]: the canary's error rate against `error_rate_ratio_limit` ×
/// the stable one's; applies once the stable cohort has `min_samples`.
fn error_rate_vs_stable(case: &Case<'_>) -> Option<Finding> {
    if !case.stable.has(case.slo.min_samples) {
        return None;
    }
    let limit = case.relative_error_limit();
    let margin = case.slo.error_rate_ratio_limit;
    let p = two_proportion_p(case.canary.errors(), case.stable.errors(), margin);
    Some(Finding {
        rule: Rule::ErrorRateVsStable,
        observed: case.canary.error_rate,
        limit,
        p_value: p,
        fired: case.canary.error_rate > limit && case.convinced(p),
    })
}

/// [`Rule::OverwhelmingErrors`], at any sample count: the canary's errors against the worst
/// acceptable error rate, at `overwhelming_significance`.
fn overwhelming_errors(case: &Case<'_>) -> Option<Finding> {
    let ceiling = case.error_rate_ceiling();
    let p = binomial_tail(case.canary.errors, case.canary.requests, ceiling);
    Some(Finding {
        rule: Rule::OverwhelmingErrors,
        observed: case.canary.error_rate,
        limit: ceiling,
        p_value: p,
        fired: p < case.slo.overwhelming_significance,
    })
}

/// [`Rule::ErrorBurst`], at any sample count: the overwhelming-errors test on the canary's
/// outcomes since the previous evaluation, so a sudden outage is not diluted by the window.
fn error_burst(case: &Case<'_>) -> Option<Finding> {
    let Recent { requests, errors } = case.recent;
    let errors = errors.min(requests);
    let ceiling = case.error_rate_ceiling();
    let p = binomial_tail(errors, requests, ceiling);
    Some(Finding {
        rule: Rule::ErrorBurst,
        observed: if requests == 0 {
            0.0
        } else {
            errors as f64 / requests as f64
        },
        limit: ceiling,
        p_value: p,
        fired: p < case.slo.overwhelming_significance,
    })
}

/// [`Rule::P99VsStable`]: the canary's p99 against `p99_ratio_limit` × the stable p99;
/// applies with both histograms and `min_samples` in both cohorts.
fn p99_vs_stable(case: &Case<'_>) -> Option<Finding> {
    let (canary_p99, stable_p99) = case.p99s()?;
    if !case.stable.has(case.slo.min_samples) {
        return None;
    }
    let limit = (stable_p99 as f64 * case.slo.p99_ratio_limit) as u64;
    Some(p99_finding(case, Rule::P99VsStable, canary_p99, limit))
}

/// [`Rule::P99Budget`]: the canary's p99 against the absolute `p99_budget`; applies when it is
/// set, with both histograms and `min_samples` canary requests.
fn p99_budget(case: &Case<'_>) -> Option<Finding> {
    let (canary_p99, _) = case.p99s()?;
    let budget = case.slo.p99_budget?;
    let limit = u64::try_from(budget.as_micros()).unwrap_or(u64::MAX);
    Some(p99_finding(case, Rule::P99Budget, canary_p99, limit))
}

/// A p99 rule fires when the p99 is above `limit_micros` and significantly more than 1 % of
/// canary requests are slower than it.
fn p99_finding(case: &Case<'_>, rule: Rule, p99_micros: u64, limit_micros: u64) -> Finding {
    let p = case.canary.p_slower_than(limit_micros);
    Finding {
        rule,
        observed: p99_micros as f64 / 1e3,
        limit: limit_micros as f64 / 1e3,
        p_value: p,
        fired: p99_micros > limit_micros && case.convinced(p),
    }
}

/// [`Rule::HealthScore`]: fires when the score's upper confidence bound is below 0.8, so the
/// data make sure the score is.
fn health_score_rule(case: &Case<'_>) -> Option<Finding> {
    let sure = case.score.upper_bound;
    Some(Finding {
        rule: Rule::HealthScore,
        observed: sure,
        limit: ROLLBACK_BELOW,
        p_value: if sure < ROLLBACK_BELOW {
            case.slo.significance
        } else {
            1.0
        },
        fired: case.canary.has(case.slo.min_samples) && sure < ROLLBACK_BELOW,
    })
}
