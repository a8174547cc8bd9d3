//! What a count of trials says about a rate: the one-sided Clopper-Pearson upper bound. The
//! table prints it beside each healthy cell's false rollbacks, so that "0 of 30" is read as
//! what it shows (a rate below 9.6 % at 95 % confidence: the bound, 9.503 %, rounded up),
//! not as "at most 1 %".

/// The confidence of the bounds the table prints.
pub const CONFIDENCE: f64 = 0.95;

/// The one-sided Clopper-Pearson upper bound, at `confidence`, on the rate of an event seen
/// in `events` of `trials` independent trials: the rate `p` at which seeing `events` or fewer
/// has probability `1 - confidence`. 1 when every trial had the event (or none was run).
pub fn upper_bound(events: usize, trials: usize, confidence: f64) -> f64 {
    if events >= trials {
        return 1.0;
    }
    let alpha = 1.0 - confidence;
    if events == 0 {
        // (1 - p)^n = alpha, in closed form.
        return 1.0 - alpha.powf(1.0 / trials as f64);
    }
    // The binomial CDF falls as p rises: bisect for the p where it equals alpha.
    let (mut low, mut high) = (0.0f64, 1.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (low + high);
        if at_most(events, trials, mid) > alpha {
            low = mid;
        } else {
            high = mid;
        }
    }
    0.5 * (low + high)
}

/// P(X <= x) for X binomial with `n` trials and rate `p` (0 < p < 1), summed in logarithms
/// so that large `n` does not underflow a term.
fn at_most(x: usize, n: usize, p: f64) -> f64 {
    let (ln_p, ln_q) = (p.ln(), (1.0 - p).ln());
    // ln C(n, k), built up from ln C(n, 0) = 0.
    let mut ln_choose = 0.0;
    let mut sum = 0.0;
    for k in 0..=x.min(n) {
        if k > 0 {
            ln_choose += ((n - k + 1) as f64).ln() - (k as f64).ln();
        }
        sum += (ln_choose + k as f64 * ln_p + (n - k) as f64 * ln_q).exp();
    }
    sum.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_bounds_match_known_values() {
        // Computed independently (exact binomial sums in Python's integers, bisected).
        for (events, trials, expected) in [
            (0, 30, 0.095_033_852_855),
            (0, 150, 0.019_773_438_165),
            (1, 150, 0.031_233_816_921),
            (2, 30, 0.195_326_043_655),
            (7, 30, 0.393_947_422_522),
            (0, 300, 0.009_936_081_944),
            (0, 600, 0.004_980_443_380),
            (3, 300, 0.025_641_393_083),
        ] {
            let bound = upper_bound(events, trials, 0.95);
            assert!(
                (bound - expected).abs() < 1e-9,
                "{events}/{trials}: {bound} against {expected}"
            );
        }
        assert_eq!(upper_bound(30, 30, 0.95), 1.0);
        assert_eq!(upper_bound(0, 0, 0.95), 1.0);
    }

    #[test]
    fn the_bisection_agrees_with_the_closed_form_at_no_event() {
        // The closed form for 0 events against the general path's defining property.
        for trials in [1, 30, 150, 600, 10_000] {
            let p = upper_bound(0, trials, 0.95);
            assert!((at_most(0, trials, p) - 0.05).abs() < 1e-12, "{trials}");
        }
        for (events, trials) in [(1, 150), (5, 10_000)] {
            let p = upper_bound(events, trials, 0.95);
            assert!((at_most(events, trials, p) - 0.05).abs() < 1e-12);
        }
    }
}
