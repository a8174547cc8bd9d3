//! The positive evidence a promotion needs: over the whole stage, the canary shown not worse
//! than the stable version beyond the tolerated limits, by confidence bounds at
//! `promotion_significance` that hold at every look (so looking often does not make a bad
//! canary promotable by chance).

use super::NonInferiority;
use super::latency::shift_upper;
use super::rules::Case;
use super::sequential::{Difference, TAU_FLOOR};

/// What the stage shows. Errors: the upper bound of `canary − ratio × stable`, or of
/// `canary − stable − error_rate_tolerance`, below zero (either limit suffices, as either
/// tolerates). Latency: the upper bound of the Mann-Whitney statistic with the tolerated
/// shift below ½.
pub(super) fn non_inferiority(case: &Case<'_>) -> NonInferiority {
    if !case.stage_comparable() {
        return NonInferiority::default();
    }
    let (c, s) = (case.stage.canary, case.stage.stable);
    let alpha = case.slo.promotion_significance;
    // Each bound's mixing scale is the excess it tolerates: the sequence is tightest where
    // the decision is made.
    let below = |margin: f64, offset: f64, tau: f64| {
        let tau = tau.max(TAU_FLOOR);
        Difference::of(c, s, margin, offset).is_some_and(|d| d.upper(tau, alpha) < 0.0)
    };
    let ratio = case.slo.error_rate_ratio_limit;
    let tolerance = case.slo.error_rate_tolerance;
    let errors = below(ratio, 0.0, (ratio - 1.0) * s.rate()) || below(1.0, tolerance, tolerance);
    let latency = shift_upper(case, alpha).is_some_and(|upper| upper < 0.5);
    NonInferiority {
        required: case.slo.promotion_evidence,
        compared: true,
        errors,
        latency,
    }
}
