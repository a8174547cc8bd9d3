//! The latency rules and the score's rule. They read the latencies after the stage's warm-up
//! only (`warm_up_ms`), so a canary slow while its caches fill is not blamed for it; they are
//! skipped while it lasts, and by the record path's screen, which reads counters only.

use std::time::Duration;

use super::cohort::CohortStats;
use super::rules::{Case, absolute};
use super::score::ROLLBACK_BELOW;
use super::sequential::radius;
use super::stats::{Proportion, two_proportion_p};
use super::{Finding, Rule};

/// Mixing scale of the stage-long latency test, on the Mann-Whitney statistic: tuned to find a
/// shift of about 0.05 in the probability that a canary request is the slower one fastest.
const SHIFT_TAU: f64 = 0.05;

/// `d` in whole microseconds, truncated: the histograms' unit. A latency is recorded as its
/// whole microseconds, and the rules ask whether one is *slower* than a setting
/// (`p99_budget_ms`, `latency_tolerance_ms`): for whole microseconds `v`, `v > d` exactly when
/// `v > ⌊d⌋`, so the truncated setting judges as the configured one does, never stricter (a
/// request of 1 µs is slower than a budget of 0.5 µs: it took at least 1 µs). Rounded up, it
/// would let the bucket from `⌈d⌉` pass, whose requests are all slower.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// [`Rule::P99VsStable`]: over the window after warm-up, the tail against the stable
/// version's. The threshold is the stable p99 at its upper confidence bound; the rule fires
/// when the share of canary requests slower than it (plus `latency_tolerance_ms`) is
/// significantly above `p99_ratio_limit` × the stable version's share (about 1 %): a
/// two-sample test, so both sides' noise count, and a tail that only 2 % of requests hit is
/// seen as well as a shift of the whole distribution.
///
/// The finding reports what it tests: the canary's share of requests slower than the threshold
/// (+ the tolerance) against `p99_ratio_limit` × the stable version's share slower than it
/// (a canary whose own p99 is below the threshold can fire, by a tail past its p99).
pub(super) fn p99_vs_stable(case: &Case<'_>) -> Option<Finding> {
    let (canary, stable) = (&case.latency.canary, &case.latency.stable);
    canary.p99_micros?;
    stable.p99_micros?;
    let n = case.slo.min_samples;
    if !canary.has(n) || !stable.has(n) {
        return None;
    }
    // Too few stable samples to bound their p99 say nothing of the canary's tail.
    let threshold = stable.p99_upper_micros(case.slo.significance)?;
    let (slower, stable_slower) =
        tail_shares(case, canary, stable, Duration::from_micros(threshold));
    let ratio = case.slo.p99_ratio_limit;
    let p = two_proportion_p(slower, stable_slower, ratio);
    Some(Finding {
        rule: Rule::P99VsStable,
        observed: slower.rate(),
        limit: (ratio * stable_slower.rate()).min(1.0),
        p_value: p,
        fired: p < case.slo.significance,
        holds: false,
        acting: "p99_ratio_limit",
    })
}

/// The canary's share of requests slower than `threshold` + `latency_tolerance_ms`, and the
/// stable version's share slower than `threshold`: the tail each side has beyond one stable
/// latency (or the budget). The sum is taken before it is truncated to whole microseconds
/// ([`micros`]), so it judges as the configured sum does: a budget and a tolerance of
/// 0.0005 ms each, truncated apart, made a request of 1 µs slower than their 1 µs.
pub(super) fn tail_shares(
    case: &Case<'_>,
    canary: &CohortStats<'_>,
    stable: &CohortStats<'_>,
    threshold: Duration,
) -> (Proportion, Proportion) {
    let tolerated = threshold.saturating_add(case.slo.latency_tolerance);
    (
        canary.slower_than(micros(tolerated)),
        stable.slower_than(micros(threshold)),
    )
}

/// [`Rule::P99Budget`]: the canary's p99 against the absolute `p99_budget`; applies when it is
/// set. It reads the window after warm-up, whose canary needs `min_samples` (the window's
/// requests are not the latencies tested). With stable traffic it rolls back only if the
/// canary's share of requests slower than the budget (+ `latency_tolerance_ms`) is
/// significantly above `p99_ratio_limit` × the stable version's share slower than the budget
/// (`p99_vs_stable`'s test and margins, at the budget), `min_samples` of them after warm-up
/// too; otherwise it holds. The error rules' margins (`error_rate_ratio_limit`,
/// `error_rate_tolerance`) say nothing of latency. The budget, and the budget + tolerance,
/// are judged in whole microseconds ([`micros`], exactly as configured), and the finding's
/// limit is the budget as configured.
pub(super) fn p99_budget(case: &Case<'_>) -> Option<Finding> {
    let (canary, stable) = (&case.latency.canary, &case.latency.stable);
    let canary_p99 = canary.p99_micros?;
    let configured = case.slo.p99_budget?;
    let budget = micros(configured);
    let p = canary.p_slower_than(budget);
    let (slower, stable_slower) = tail_shares(case, canary, stable, configured);
    let blame = two_proportion_p(slower, stable_slower, case.slo.p99_ratio_limit);
    let p = if canary_p99 > budget { p } else { 1.0 };
    Some(absolute(
        case,
        (Rule::P99Budget, "p99_budget_ms"),
        [canary, stable],
        canary_p99 as f64 / 1e3,
        configured.as_secs_f64() * 1e3,
        p,
        blame,
    ))
}

/// [`Rule::LatencyShift`]: over the stage after warm-up, the Mann-Whitney statistic of the
/// canary's latencies divided by `latency_shift_limit` (or less `latency_tolerance_ms`, if
/// that is more lenient) against the stable version's; fires when its always-valid lower bound
/// is above ½: the canary's whole distribution is surely slower than tolerated.
pub(super) fn latency_shift(case: &Case<'_>) -> Option<Finding> {
    let (lower, theta) = shift_bounds(case, case.slo.significance)?;
    let fired = lower > 0.5;
    Some(Finding {
        rule: Rule::LatencyShift,
        observed: theta,
        limit: 0.5,
        p_value: if fired { case.slo.significance } else { 1.0 },
        fired,
        holds: false,
        acting: if case.slo.latency_tolerance.is_zero() {
            "latency_shift_limit"
        } else {
            "latency_shift_limit or latency_tolerance_ms"
        },
    })
}

/// The stage-long latency statistic's always-valid lower bound at `alpha` and its estimate;
/// `None` without `min_samples` of both cohorts after warm-up.
pub(super) fn shift_bounds(case: &Case<'_>, alpha: f64) -> Option<(f64, f64)> {
    let s = case.shift?;
    Some((s.theta - radius(s.variance, SHIFT_TAU, alpha), s.theta))
}

/// The stage-long latency statistic's always-valid upper bound at `alpha`: below ½, the
/// canary is shown no slower than tolerated.
pub(super) fn shift_upper(case: &Case<'_>, alpha: f64) -> Option<f64> {
    let (lower, theta) = shift_bounds(case, alpha)?;
    Some(theta + (theta - lower))
}

/// [`Rule::HealthScore`]: fires when the score's upper confidence bound is below 0.8, so the
/// data make sure the score is.
pub(super) fn health_score_rule(case: &Case<'_>) -> Option<Finding> {
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
        holds: false,
        acting: "health_score",
    })
}
