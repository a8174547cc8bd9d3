//! Whole-distribution latency: the Mann-Whitney statistic of two latency histograms, with the
//! canary's latencies divided by a tolerated ratio first.
//!
//! `θ(m) = P(canary / m > stable) + ½ P(canary / m = stable)` for a canary and a stable request
//! drawn at random. An absolute tolerance `t` beside the ratio counts a canary latency `v` as
//! `min(v / m, v − t)`: worse by less than either limit is tolerated. With identical versions `θ(1) = ½`; a canary uniformly 50 % slower has
//! `θ(1.1)` well above ½, one within 10 % of the stable version `θ(1.1) ≤ ½`. The estimate is
//! computed from the two histograms' buckets in one merge (each bucket counts as its midpoint).
//! Its variance is DeLong's, from the data (each latency's placement among the other
//! cohort's), or Hanley and McNeil's formula for the area under a ROC curve (the same
//! quantity), whichever is larger. Hanley and McNeil's assumes the two distributions have one
//! shape: a canary whose latencies are tighter than the stable version's at the same median
//! has a variance up to twice and more theirs, and a limit from theirs alone was crossed by
//! 25 in 1 000 such canaries at the limit where 1 was due.

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
    let stable_values = || {
        stable
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, &c)| (bucket_midpoint(i), c))
    };
    // Each canary latency's placement among the stable ones: P(stable < v) + ½ P(stable = v).
    let mut among_stable = Below::new(stable_values());
    let mut placements = Placements::default();
    for (value, count) in tolerated(canary, ratio, tolerance_us) {
        placements.add(count, among_stable.half_equal(value) / n_s as f64);
    }
    // Each stable latency's among the canary ones: P(canary > v) + ½ P(canary = v).
    let mut among_canary = Below::new(tolerated(canary, ratio, tolerance_us));
    let mut stable_placements = Placements::default();
    for (value, count) in stable_values() {
        stable_placements.add(count, 1.0 - among_canary.half_equal(value) / n_c as f64);
    }
    let (n_c, n_s) = (n_c as f64, n_s as f64);
    let theta = (placements.sum / n_c).clamp(0.0, 1.0);
    let delong = placements.variance() / n_c + stable_placements.variance() / n_s;
    Some(Shift {
        theta,
        variance: hanley_mcneil(theta, n_c, n_s).max(delong),
    })
}

/// The canary's buckets as `(latency counted, count)`, ascending: `min(v / ratio, v −
/// tolerance)` grows with `v`.
fn tolerated(
    canary: &[u64],
    ratio: f64,
    tolerance_us: f64,
) -> impl Iterator<Item = (f64, u64)> + '_ {
    canary
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(move |(i, &count)| {
            let mid = bucket_midpoint(i);
            ((mid / ratio).min(mid - tolerance_us), count)
        })
}

/// A walk up one cohort's `(latency, count)` buckets, ascending, for ascending values.
struct Below<I: Iterator<Item = (f64, u64)>> {
    buckets: std::iter::Peekable<I>,
    below: u64,
}

impl<I: Iterator<Item = (f64, u64)>> Below<I> {
    fn new(buckets: I) -> Self {
        Self {
            buckets: buckets.peekable(),
            below: 0,
        }
    }

    /// How many latencies are below `value`, plus half of those equal to it (`value` at
    /// least the one asked before).
    fn half_equal(&mut self, value: f64) -> f64 {
        while let Some(&(v, c)) = self.buckets.peek() {
            if v >= value {
                break;
            }
            self.below += c;
            self.buckets.next();
        }
        let equal = match self.buckets.peek() {
            Some(&(v, c)) if v == value => c,
            _ => 0,
        };
        self.below as f64 + 0.5 * equal as f64
    }
}

/// Weighted placements: their count, sum and sum of squares.
#[derive(Debug, Default)]
struct Placements {
    n: f64,
    sum: f64,
    squares: f64,
}

impl Placements {
    fn add(&mut self, count: u64, placement: f64) {
        let count = count as f64;
        self.n += count;
        self.sum += count * placement;
        self.squares += count * placement * placement;
    }

    /// Their sample variance (0 for fewer than two).
    fn variance(&self) -> f64 {
        if self.n < 2.0 {
            return 0.0;
        }
        ((self.squares - self.sum * self.sum / self.n) / (self.n - 1.0)).max(0.0)
    }
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
    fn a_tighter_canary_at_the_same_median_has_the_variance_of_its_data() {
        // Stable latencies spread from 1 to 100 ms, the canary's all at their median, nine
        // canary requests to one stable (a 90 % share): θ(1) is ½, and each stable latency's
        // placement among the canary's is 0 or 1, so θ's variance is about ¼ / n_s. Hanley
        // and McNeil's formula, for two distributions of one shape, says about a third of it.
        let stable: Vec<u64> = (0..1000)
            .map(|i| (1000.0 * 100f64.powf(f64::from(i) / 999.0)) as u64)
            .collect();
        let median = stable[500];
        let (s, c) = (histogram_of(&stable), histogram_of(&vec![median; 9000]));
        let tight = shift(&c, &s, 1.0, 0.0).unwrap();
        assert!((tight.theta - 0.5).abs() < 0.01, "{tight:?}");
        let (n_c, n_s) = (9000.0, 1000.0);
        let formula = hanley_mcneil(tight.theta, n_c, n_s);
        assert!(formula < 0.1 / n_s, "{formula}");
        assert!(
            (tight.variance * n_s - 0.25).abs() < 0.01,
            "{} against 0.25",
            tight.variance * n_s
        );
        // For one shape the two agree, and the larger is taken.
        let same = shift(&s, &s, 1.0, 0.0).unwrap();
        let formula = hanley_mcneil(same.theta, n_s, n_s);
        assert!(same.variance >= formula && same.variance < 1.1 * formula);
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
