//! Whole-distribution latency: the Mann-Whitney statistic of two latency histograms, with the
//! canary's latencies divided by a tolerated ratio first.
//!
//! `θ(m) = P(canary / m > stable) + ½ P(canary / m = stable)` for a canary and a stable request
//! drawn at random. An absolute tolerance `t` beside the ratio counts a canary latency `v` as
//! `min(v / m, v − t)`: worse by less than either limit is tolerated. With identical versions `θ(1) = ½`; a canary uniformly 50 % slower has
//! `θ(1.1)` well above ½, one within 10 % of the stable version `θ(1.1) ≤ ½`. The estimate is
//! computed from the two histograms' buckets in one merge (each bucket counts as its midpoint),
//! and its variance by Hanley and McNeil's formula for the area under a ROC curve, which is
//! the same quantity.

use crate::metrics::bucket_midpoint;

/// The statistic `θ(m)` of two histograms, with its variance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Shift {
    pub(crate) theta: f64,
    pub(crate) variance: f64,
}

/// `θ(ratio)` of `canary` against `stable` (histograms of the same layout), each canary
/// latency `v` counted as `min(v / ratio, v − tolerance_us)`; `None` when either is empty.
pub(crate) fn shift(
    canary: &[u64],
    stable: &[u64],
    ratio: f64,
    tolerance_us: f64,
) -> Option<Shift> {
    let (n_c, n_s) = (total(canary), total(stable));
    if n_c == 0 || n_s == 0 {
        return None;
    }
    let mut stable_buckets = stable
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(i, c)| (bucket_midpoint(i), *c))
        .peekable();
    let (mut below, mut wins) = (0u64, 0.0f64);
    for (i, &count) in canary.iter().enumerate().filter(|(_, c)| **c > 0) {
        let mid = bucket_midpoint(i);
        let value = (mid / ratio).min(mid - tolerance_us);
        while let Some(&(v, c)) = stable_buckets.peek() {
            if v >= value {
                break;
            }
            below += c;
            stable_buckets.next();
        }
        let equal = match stable_buckets.peek() {
            Some(&(v, c)) if v == value => c,
            _ => 0,
        };
        wins += count as f64 * (below as f64 + 0.5 * equal as f64);
    }
    let (n_c, n_s) = (n_c as f64, n_s as f64);
    let theta = (wins / (n_c * n_s)).clamp(0.0, 1.0);
    Some(Shift {
        theta,
        variance: hanley_mcneil(theta, n_c, n_s),
    })
}

fn total(histogram: &[u64]) -> u64 {
    histogram.iter().sum()
}

/// The variance of an estimated `θ` from `n_c` and `n_s` samples, kept away from zero at the
/// extremes (one of `n_c` or `n_s` samples on the other side).
fn hanley_mcneil(theta: f64, n_c: f64, n_s: f64) -> f64 {
    let floor = 0.5 / n_c.min(n_s);
    let t = theta.clamp(floor.min(0.5), 1.0 - floor.min(0.5));
    let q1 = t / (2.0 - t);
    let q2 = 2.0 * t * t / (1.0 + t);
    (t * (1.0 - t) + (n_c - 1.0) * (q1 - t * t) + (n_s - 1.0) * (q2 - t * t)) / (n_c * n_s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests_support::histogram_of;

    #[test]
    fn identical_distributions_are_even() {
        let values: Vec<u64> = (1..=2000).map(|i| 1000 + i * 7).collect();
        let h = histogram_of(&values);
        let s = shift(&h, &h, 1.0, 0.0).unwrap();
        assert!((s.theta - 0.5).abs() < 1e-9, "{s:?}");
        assert!(s.variance > 0.0);
    }

    #[test]
    fn a_uniform_slowdown_shows_and_the_tolerated_ratio_absorbs_it() {
        let stable: Vec<u64> = (1..=2000).map(|i| 1000 + i * 7).collect();
        let slower: Vec<u64> = stable.iter().map(|v| v * 3 / 2).collect();
        let (s, c) = (histogram_of(&stable), histogram_of(&slower));
        let at_one = shift(&c, &s, 1.0, 0.0).unwrap().theta;
        assert!(at_one > 0.65, "{at_one}");
        assert!(shift(&c, &s, 1.6, 0.0).unwrap().theta < 0.5);
        // Against a naive count over every pair.
        let naive = slower
            .iter()
            .map(|a| stable.iter().filter(|b| **b < *a).count() as f64)
            .sum::<f64>()
            / (2000.0 * 2000.0);
        assert!((at_one - naive).abs() < 0.02, "{at_one} vs {naive}");
    }
}
