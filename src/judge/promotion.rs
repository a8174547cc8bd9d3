//! The positive evidence a promotion needs: over the whole stage, the canary shown not worse
//! than the stable version beyond the tolerated limits, by confidence bounds at
//! `promotion_significance` that hold at every look (so looking often does not make a bad
//! canary promotable by chance).

use std::time::Duration;

use super::NonInferiority;
use super::latency::{shift_upper, tail_shares};
use super::rules::Case;
use super::sequential::{Difference, TAU_FLOOR};
use super::stats::two_proportion_p;

/// What the stage shows. Errors: the upper bound of `canary − ratio × stable`, or of
/// `canary − stable − error_rate_tolerance`, below zero (either limit suffices, as either
/// tolerates). Latency: the upper bound of the Mann-Whitney statistic with the tolerated
/// shift below ½, and the tail not significantly worse than tolerated (`tail_not_worse`).
pub(super) fn non_inferiority(case: &Case<'_>) -> NonInferiority {
    if !case.stage_comparable() {
        // A canary stage beside stable outcomes, too few of either yet: nothing is shown,
        // and a promotion waits (at a 99 % share the stable version reaches `min_samples`
        // last). Without stable outcomes (Staging, or none reported) there is nothing to
        // compare with: the absolute rules act alone.
        if case.stable_reported() {
            return NonInferiority {
                required: case.slo.promotion_evidence,
                compared: true,
                errors: false,
                latency: false,
            };
        }
        return NonInferiority::default();
    }
    let (c, s) = (case.stage.canary, case.stage.stable);
    let alpha = case.slo.promotion_significance;
    // Each bound's mixing scale is the excess it tolerates: the sequence is tightest where
    // the decision is made.
    let below = |margin: f64, offset: f64, tau: f64| {
        let tau = tau.max(TAU_FLOOR);
        Difference::within(c, s, margin, offset).is_some_and(|d| d.upper(tau, alpha) < 0.0)
    };
    let ratio = case.slo.error_rate_ratio_limit;
    let tolerance = case.slo.error_rate_tolerance;
    let errors = below(ratio, 0.0, (ratio - 1.0) * s.rate()) || below(1.0, tolerance, tolerance);
    let latency =
        shift_upper(case, alpha).is_some_and(|upper| upper < 0.5) && tail_not_worse(case, alpha);
    NonInferiority {
        required: case.slo.promotion_evidence,
        compared: true,
        errors,
        latency,
    }
}

/// The tail over the stage after warm-up: the canary's share of requests slower than the
/// stable p99 (+ `latency_tolerance_ms`) not significantly above `p99_ratio_limit` × the
/// stable share at `promotion_significance` (`p99_vs_stable`'s test over the stage). The
/// Mann-Whitney statistic hardly moves when only 2 % of requests are slow; this share does.
/// A veto, not positive evidence: showing the share within the limit would take about 4 000
/// canary requests after warm-up, far more than the errors and the whole distribution need.
/// The stable p99 is read at its estimate: both shares are counted at the same threshold.
fn tail_not_worse(case: &Case<'_>, alpha: f64) -> bool {
    let (canary, stable) = (&case.stage_latency.canary, &case.stage_latency.stable);
    let Some(p99) = stable.p99_micros else {
        return false;
    };
    let (c, s) = tail_shares(case, canary, stable, Duration::from_micros(p99));
    two_proportion_p(c, s, case.slo.p99_ratio_limit) >= alpha
}
