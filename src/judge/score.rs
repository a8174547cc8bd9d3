//! The health score: `1 - error penalty - latency penalty`, as a point estimate and as an
//! upper confidence bound. Both come from the same inputs in one pass: each penalty is
//! computed once at its point value and once at the least value the data make sure of.

use super::cohort::CohortStats;
use super::sequential::Difference;
use super::stats::binomial_upper;
use super::{ERROR_RATE_FLOOR, ERROR_RATE_MARGIN};
use crate::decision::PerCohort;
use crate::slo::SloConfig;

/// A score below this is ROLLBACK once the data make sure of it (the `health_score` rule).
pub(crate) const ROLLBACK_BELOW: f64 = 0.8;
/// A score from this up, with enough data and no rule fired, is HEALTHY; below, MONITOR.
pub(crate) const HEALTHY_FROM: f64 = 0.9;

/// The health score of one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct HealthScore {
    /// The point estimate, reported as the health score.
    pub(crate) point: f64,
    /// The score's one-sided upper confidence bound: the `health_score` rule acts on it. It is
    /// made of four bounds at α each (the excess error rate's, the stable error rate's, the
    /// canary p99's and the stable p99's), so it holds at 4α. Never below `point`: each
    /// penalty's least value waits for the test its point value waits for, and is at most it.
    pub(crate) upper_bound: f64,
}

/// A penalty at its point value and at the least value the data make sure of, never above the
/// point value: the score's bound is never below the score ([`Penalty::new`]).
#[derive(Debug, Clone, Copy)]
struct Penalty {
    point: f64,
    least: f64,
}

impl Penalty {
    const NONE: Penalty = Penalty {
        point: 0.0,
        least: 0.0,
    };

    /// The penalty of `point` whose bound gave `least`, taken at most at `point`: a bound read
    /// from other statistics than the point (the p99's order statistics beside its own bucket)
    /// may land a little above it, and the bound is a guarantee the score has, not a second
    /// estimate.
    fn new(point: f64, least: f64) -> Self {
        Self {
            point,
            least: least.min(point),
        }
    }
}

/// The canary's health score against the stable cohort: errors from the window, latencies
/// from the window after warm-up. A penalty needs `min_samples` in the cohorts it compares;
/// the latency penalty also needs both histograms. `z` is the normal quantile at
/// `slo.significance` ([`super::Policy::z`]).
pub(crate) fn health_score(
    window: &PerCohort<CohortStats<'_>>,
    latency: &PerCohort<CohortStats<'_>>,
    slo: &SloConfig,
    z: f64,
) -> HealthScore {
    let error = error_penalty(&window.canary, &window.stable, slo, z);
    let latency = latency_penalty(&latency.canary, &latency.stable, slo);
    HealthScore {
        point: score(error.point, latency.point),
        upper_bound: score(error.least, latency.least),
    }
}

fn score(error_penalty: f64, latency_penalty: f64) -> f64 {
    (1.0 - error_penalty - latency_penalty).clamp(0.0, 1.0)
}

/// `0.25 × excess / max(stable rate, 0.1 %)`, at most 0.5 (the excess beyond the tolerated
/// limit, see [`error_penalty`]).
fn error_share(excess: f64, stable_rate: f64) -> f64 {
    (0.25 * excess / stable_rate.max(ERROR_RATE_FLOOR)).clamp(0.0, 0.5)
}

/// `0.2 × (p99 ratio − 1)`, at most 0.3.
fn latency_share(p99_ratio: f64) -> f64 {
    ((p99_ratio - 1.0) * 0.2).clamp(0.0, 0.3)
}

fn ratio(canary_micros: u64, stable_micros: u64) -> f64 {
    canary_micros as f64 / stable_micros.max(1) as f64
}

/// The penalty counts the canary's excess error rate beyond the tolerated limit:
/// [`ERROR_RATE_MARGIN`] × the stable one's or the stable one's + `error_rate_tolerance`,
/// whichever is higher (the limit of `errors_over_stage`). The least penalty takes that
/// excess at its one-sided lower confidence bound (`z`; the canary's own rate in the
/// variance, at least the limit's: a single look, [`Difference::at_one_look`]) over the stable
/// rate at its upper confidence bound (at `slo.significance`, as the rules' ceilings take it):
/// over the point rate, a stable window that erred low by chance made the least penalty
/// larger than the true one (75 stable errors in 10 000 beside 1 900 canary ones in 100 000,
/// true rates 1 % and 1.9 %, a score of exactly 0.8, had its bound at 0.793). Both apply
/// once the excess's bound is above zero.
fn error_penalty(
    canary: &CohortStats<'_>,
    stable: &CohortStats<'_>,
    slo: &SloConfig,
    z: f64,
) -> Penalty {
    if !canary.has(slo.min_samples) || !stable.has(slo.min_samples) {
        return Penalty::NONE;
    }
    let (c, s) = (canary.errors(), stable.errors());
    let beyond = |margin: f64, offset: f64| {
        Difference::at_one_look(c, s, margin, offset)
            .map(|d| (d.estimate, d.estimate - z * d.variance.sqrt()))
    };
    let (Some(by_ratio), Some(by_tolerance)) = (
        beyond(ERROR_RATE_MARGIN, 0.0),
        beyond(1.0, slo.error_rate_tolerance),
    ) else {
        return Penalty::NONE;
    };
    // Beyond the higher of the two limits: the lesser excess, and the lesser bound.
    let (excess, least) = (
        by_ratio.0.min(by_tolerance.0),
        by_ratio.1.min(by_tolerance.1),
    );
    if least <= 0.0 {
        return Penalty::NONE;
    }
    Penalty::new(
        error_share(excess, stable.error_rate),
        error_share(least, binomial_upper(s.events, s.trials, slo.significance)),
    )
}

/// The penalty applies once significantly more than 1 % of canary requests are slower than
/// the stable p99 (a Chernoff bound, conservative), at its point value and at its least: the
/// canary's p99 at its lower confidence bound over the stable one's at its upper bound
/// (distribution-free bounds by order statistics). Both wait for that test, as both error
/// penalties wait for theirs: the bounds alone could be sure of a slower p99 the point's test
/// is not yet sure of (they are exact, it is not), and the `health_score` rule rolled back a
/// canary whose reported score was 1.0.
fn latency_penalty(canary: &CohortStats<'_>, stable: &CohortStats<'_>, slo: &SloConfig) -> Penalty {
    let (Some(canary_p99), Some(stable_p99)) = (canary.p99_micros, stable.p99_micros) else {
        return Penalty::NONE;
    };
    if !canary.has(slo.min_samples) || !stable.has(slo.min_samples) {
        return Penalty::NONE;
    }
    let alpha = slo.significance;
    if canary_p99 <= stable_p99 || canary.p_slower_than(stable_p99) >= alpha {
        return Penalty::NONE;
    }
    // Without both bounds (too few samples), the least ratio is no worse than even.
    let bounds = canary
        .p99_lower_micros(alpha)
        .zip(stable.p99_upper_micros(alpha));
    Penalty::new(
        latency_share(ratio(canary_p99, stable_p99)),
        bounds.map_or(0.0, |(low, high)| latency_share(ratio(low, high))),
    )
}
