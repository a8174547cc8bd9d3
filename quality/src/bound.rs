//! What any judge could do at best: the power of the most powerful test (Neyman–Pearson) on
//! the canary's outcomes up to a time, at a given false-rollback rate. The benchmark prints it
//! beside a regression the engine catches later than the Kayenta-style judge: when it is below
//! one half at the Kayenta-style median, no judge whose false rollbacks stay within that rate
//! catches half the trials by then, whatever its rules.

/// The probability that the most powerful level-`alpha` test tells a canary failing at `p1`
/// from one failing at `p0`, on its outcomes over a span in which `mean_requests` canary
/// requests arrive (a Poisson count, as in the benchmark's model).
///
/// It is an upper bound on what any judge catches by the end of the span while rolling back at
/// most `alpha` of identical canaries: the test knows `p0` exactly (a judge only estimates it
/// from the stable requests), looks once (a judge that looks often must spend `alpha` over its
/// looks), and is randomized at its boundary, so its level is exactly `alpha`. Its statistic is
/// the likelihood ratio of the canary's requests and errors `(n, x)`, which are sufficient:
/// `(p1 / p0)^x ((1 - p1) / (1 - p0))^(n - x)`.
pub fn best_power(mean_requests: f64, p0: f64, p1: f64, alpha: f64) -> f64 {
    if p1 >= 1.0 || p0 <= 0.0 {
        return 1.0; // a single error, or a single success, tells the two apart
    }
    let spread = 10.0 * mean_requests.sqrt() + 20.0;
    let low = (mean_requests - spread).max(0.0) as usize;
    let high = (mean_requests + spread) as usize;
    let ln_factorial = ln_factorials(high);
    let ln_poisson = |n: usize| n as f64 * mean_requests.ln() - mean_requests - ln_factorial[n];
    let ln_binomial = |n: usize, x: usize, p: f64| {
        ln_factorial[n] - ln_factorial[x] - ln_factorial[n - x]
            + x as f64 * p.ln()
            + (n - x) as f64 * (1.0 - p).ln()
    };
    // Every outcome (n, x) with its likelihood ratio and its probability under each rate,
    // within ten standard deviations (the rest weighs nothing at f64 precision).
    let mut cells = Vec::new();
    for n in low..=high {
        let p = p1.max(p0);
        let mean = n as f64 * p;
        let x_high = n.min((mean + 10.0 * (mean * (1.0 - p)).sqrt() + 20.0) as usize);
        for x in 0..=x_high {
            let ln_ratio =
                x as f64 * (p1 / p0).ln() + (n - x) as f64 * ((1.0 - p1) / (1.0 - p0)).ln();
            let null = (ln_poisson(n) + ln_binomial(n, x, p0)).exp();
            let alternative = (ln_poisson(n) + ln_binomial(n, x, p1)).exp();
            cells.push((ln_ratio, null, alternative));
        }
    }
    most_powerful(cells, alpha)
}

/// The power of the level-`alpha` test that rejects the outcomes of highest likelihood ratio
/// first, randomized on the last one: `cells` are each outcome's (likelihood ratio, or its
/// logarithm: only the order counts), probability under the null and under the alternative.
fn most_powerful(mut cells: Vec<(f64, f64, f64)>, alpha: f64) -> f64 {
    cells.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut spent, mut power) = (0.0, 0.0);
    for (_, null, alternative) in cells {
        if spent + null >= alpha {
            return power + alternative * (alpha - spent) / null;
        }
        spent += null;
        power += alternative;
    }
    power
}

/// `ln k!` for k in 0..=n.
fn ln_factorials(n: usize) -> Vec<f64> {
    let mut table = Vec::with_capacity(n + 1);
    let mut sum = 0.0;
    table.push(sum);
    for k in 1..=n {
        sum += (k as f64).ln();
        table.push(sum);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identical_canary_is_caught_exactly_at_the_false_rollback_rate() {
        for alpha in [0.01, 0.05] {
            let power = best_power(600.0, 0.01, 0.01, alpha);
            assert!((power - alpha).abs() < 1e-9, "{power}");
        }
    }

    #[test]
    fn twice_the_errors_at_600_canary_requests_is_caught_less_than_half_the_time() {
        // 2x errors at 100 rps and 5 %: Kayenta-style's median is 120 s, 600 canary requests.
        let power = best_power(600.0, 0.01, 0.02, 0.01);
        assert!((0.40..0.47).contains(&power), "{power}");
        // Three times the errors, the same span: most of the time.
        let power = best_power(600.0, 0.01, 0.03, 0.01);
        assert!((0.88..0.95).contains(&power), "{power}");
    }

    /// The same power from another parameterization: a Poisson number of requests, each an
    /// error with probability p, is a Poisson number of errors and an independent Poisson
    /// number of successes, so the outcomes (x errors, y successes) are a grid of products.
    fn power_on_the_grid(mean: f64, p0: f64, p1: f64, alpha: f64) -> f64 {
        let pmf = |k: usize, m: f64| {
            let ln = k as f64 * m.ln() - m - (1..=k).map(|i| (i as f64).ln()).sum::<f64>();
            ln.exp()
        };
        let mut cells = Vec::new();
        for x in 0..120 {
            for y in 0..160 {
                let ratio = (p1 / p0).powi(x as i32) * ((1.0 - p1) / (1.0 - p0)).powi(y as i32);
                let null = pmf(x, mean * p0) * pmf(y, mean * (1.0 - p0));
                let alternative = pmf(x, mean * p1) * pmf(y, mean * (1.0 - p1));
                cells.push((ratio, null, alternative));
            }
        }
        most_powerful(cells, alpha)
    }

    #[test]
    fn the_power_agrees_with_the_errors_and_successes_grid() {
        for (p0, p1, alpha) in [(0.1, 0.2, 0.05), (0.05, 0.15, 0.01), (0.2, 0.3, 0.1)] {
            let (ours, grid) = (
                best_power(60.0, p0, p1, alpha),
                power_on_the_grid(60.0, p0, p1, alpha),
            );
            assert!(
                (ours - grid).abs() < 1e-6,
                "{p0} vs {p1}: {ours} against {grid}"
            );
            assert!(ours > alpha + 0.05, "{ours}");
        }
        assert_eq!(best_power(600.0, 0.01, 1.0, 0.01), 1.0);
    }

    #[test]
    fn more_requests_or_a_larger_alpha_catch_more() {
        let base = best_power(600.0, 0.01, 0.02, 0.01);
        assert!(best_power(1200.0, 0.01, 0.02, 0.01) > base);
        assert!(best_power(600.0, 0.01, 0.02, 0.05) > base);
    }
}
