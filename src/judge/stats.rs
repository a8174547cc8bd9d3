//! Pure statistics for the rules and the score: binomial tails, the standard normal's tail and
//! quantile, the two-proportion test, and the order-statistics bound of a p99. Numbers in,
//! numbers out: nothing here knows about cohorts or rules.

/// A count of events out of a number of trials, such as errors out of requests. The count is
/// at most the trials (the judge's cohort statistics clamp it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Proportion {
    pub(crate) events: u64,
    pub(crate) trials: u64,
}

impl Proportion {
    /// `events` out of `trials`, for the tests.
    #[cfg(test)]
    pub(crate) const fn of(events: u64, trials: u64) -> Self {
        Self { events, trials }
    }

    /// `events / trials`, 0 with no trials.
    pub(crate) fn rate(self) -> f64 {
        if self.trials == 0 {
            0.0
        } else {
            self.events.min(self.trials) as f64 / self.trials as f64
        }
    }
}

/// Upper bound on `P(X >= k)` for `X ~ Binomial(n, p)`: 1 when `k/n <= p`, else
/// `exp(-n * KL(k/n || p))` (Chernoff–Hoeffding). Exact at `k = n`: `p^n`.
///
/// # Example
/// ```
/// use promotion_gates::judge::binomial_tail;
/// assert_eq!(binomial_tail(1, 100, 0.05), 1.0); // 1 % observed is not above 5 %
/// assert!((binomial_tail(7, 7, 0.05) - 0.05f64.powi(7)).abs() < 1e-20); // exact at k = n
/// assert!(binomial_tail(5, 100, 0.01) < 0.02);
/// ```
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

/// `P(Z > z)` for a standard normal `Z`.
///
/// # Example
/// ```
/// use promotion_gates::judge::normal_upper_tail;
/// assert!((normal_upper_tail(0.0) - 0.5).abs() < 1e-7);
/// assert!((normal_upper_tail(3.090_232) - 0.001).abs() < 1e-7);
/// ```
pub fn normal_upper_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The `z` with `P(Z > z) = alpha` for a standard normal `Z` (bisection on the tail).
///
/// # Example
/// ```
/// use promotion_gates::judge::normal_quantile_upper;
/// assert!((normal_quantile_upper(0.001) - 3.090_232).abs() < 1e-5);
/// ```
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

/// The proportion with half a count added to the events and one to the trials, so that zero
/// counts keep a variance.
fn smoothed(events: f64, trials: f64) -> f64 {
    (events + 0.5) / (trials + 1.0)
}

/// One-sided p-value of `rate(a) > margin * rate(b)` (unpooled z-test, half-count smoothing
/// so that zero counts keep a variance, `b`'s rate in the variance at least the boundary's:
/// see [`Rates::Own`]). 1 when either has no trials.
pub(crate) fn two_proportion_p(a: Proportion, b: Proportion, margin: f64) -> f64 {
    difference_p(a, b, margin, 0.0)
}

/// One-sided p-value of `rate(a) > rate(b) + offset` (the same test, with an offset).
pub(crate) fn excess_p(a: Proportion, b: Proportion, offset: f64) -> f64 {
    difference_p(a, b, 1.0, offset)
}

/// One-sided p-value of `rate(a) > margin * rate(b) + offset`.
fn difference_p(a: Proportion, b: Proportion, margin: f64, offset: f64) -> f64 {
    let rates = Rates::Own {
        floor_a: 0.0,
        b_at_least_boundary: true,
    };
    difference(a, b, margin, offset, rates).map_or(1.0, |(estimate, variance)| {
        normal_upper_tail(estimate / variance.sqrt())
    })
}

/// The rates the variance of a difference takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Rates {
    /// Each its own (smoothed), `a`'s varying at least as a rate of `floor_a` would (its
    /// variance term `p(1 − p)` the larger of its own and the floor's, so a floor never lowers
    /// the variance, as a floor near 1 would): a Wald test's. With
    /// `b_at_least_boundary`, `b`'s at least its rate on the boundary ([`on_boundary`]): a
    /// test that `a` is beyond, where `b`'s own rate would make the variance smallest exactly
    /// when `b` erred least by chance. With few of `b`'s trials (a canary at 90 %: 5 000
    /// canary requests beside 556 stable ones, both failing 1 %), a clean `b` made an
    /// identical `a` look beyond 1.5 × `b` at p = 1e-5, which one stable window in 270 is.
    Own {
        floor_a: f64,
        b_at_least_boundary: bool,
    },
    /// Both estimated on the boundary, as a score test takes them: the rates `a` and `b` most
    /// likely have, given both counts, if `rate(a) = margin * rate(b) + offset` held
    /// ([`on_boundary`]).
    OnBoundary,
}

/// The most likely rates `(a, b)` given both counts under `rate(a) = margin * rate(b) +
/// offset` (`margin` ≥ 1, `offset` ≥ 0), by the Poisson likelihood of the smoothed counts,
/// which puts `b`'s rate at the positive root of `N·m·λ² − (m·K − N·δ)·λ − k_b·δ = 0` with
/// `N = m·n_a + n_b` and `K = k_a + k_b`. Both sides' counts inform it: taking `b`'s own rate
/// instead would make the variance smallest exactly when `b` errs least by chance, which is
/// when `a` looks worst, and an identical `a` would be blamed far more often than the level.
fn on_boundary(a: Proportion, b: Proportion, margin: f64, offset: f64) -> (f64, f64) {
    let count = |p: Proportion| (p.events.min(p.trials) as f64 + 0.5, p.trials as f64 + 1.0);
    let ((ka, na), (kb, nb)) = (count(a), count(b));
    let (m, d) = (margin.max(1.0), offset.max(0.0));
    let n = m * na + nb;
    let linear = m * (ka + kb) - n * d;
    let lambda = (linear + (linear * linear + 4.0 * n * m * kb * d).sqrt()) / (2.0 * n * m);
    let rb = lambda.clamp(0.0, 1.0);
    ((m * rb + d).min(1.0), rb)
}

/// `rate(a) − margin·rate(b) − offset` and its variance (unpooled, half-count smoothing so
/// that zero counts keep a variance), the rates in the variance as `rates` says; `None` when
/// either has no trials.
pub(crate) fn difference(
    a: Proportion,
    b: Proportion,
    margin: f64,
    offset: f64,
    rates: Rates,
) -> Option<(f64, f64)> {
    if a.trials == 0 || b.trials == 0 {
        return None;
    }
    let smoothed = |p: Proportion| smoothed(p.events.min(p.trials) as f64, p.trials as f64);
    let (pa, pb) = match rates {
        Rates::Own {
            floor_a,
            b_at_least_boundary,
        } => {
            let b_rate = if b_at_least_boundary {
                smoothed(b).max(on_boundary(a, b, margin, offset).1)
            } else {
                smoothed(b)
            };
            // A floor never lowers the variance: near 1 a higher rate varies less, and a
            // floor of 1 would charge none.
            let own = smoothed(a);
            let spread = |p: f64| p * (1.0 - p);
            let a_rate = if spread(floor_a.min(1.0)) > spread(own) {
                floor_a.min(1.0)
            } else {
                own
            };
            (a_rate, b_rate)
        }
        Rates::OnBoundary => on_boundary(a, b, margin, offset),
    };
    let variance =
        pa * (1.0 - pa) / a.trials as f64 + margin * margin * pb * (1.0 - pb) / b.trials as f64;
    Some((a.rate() - margin * b.rate() - offset, variance))
}

/// One-sided p-value of Fisher's exact test of `rate(a) > rate(b)`: the chance that, of
/// all the events of both, at least `a`'s fell among `a`'s trials if each outcome were as
/// likely to be either's (the hypergeometric upper tail, given both totals). Exact for any
/// counts; 1 when `a` has no trials or no more events than its share of them.
///
/// The tail's first term is taken from log-factorials, each next one from the one before by
/// their ratio; the sum stops where a term no longer changes it, at most `b`'s events
/// further (beyond them `a` would hold every event). The judge calls it only where `b`'s
/// trials are too few to bound their rate below 1 %: fewer than `ln(1/α) / 0.01`, about 700
/// at the default `significance` and 71 000 at the smallest accepted, whatever `a`'s counts.
pub(crate) fn fisher_exact_p(a: Proportion, b: Proportion) -> f64 {
    let (ka, kb) = (a.events.min(a.trials), b.events.min(b.trials));
    let (na, nb) = (a.trials as f64, b.trials as f64);
    let all_events = ka.saturating_add(kb);
    let events = all_events as f64;
    if a.trials == 0 || ka as f64 * (na + nb) <= events * na {
        return 1.0;
    }
    // P(X = x) for X the events among `a`'s trials: C(K, x) C(N − K, n_a − x) / C(N, n_a).
    let first = ln_choose(events, ka as f64) + ln_choose(na + nb - events, na - ka as f64)
        - ln_choose(na + nb, na);
    let (mut term, mut sum) = (1.0f64, 1.0f64);
    let last = all_events.min(a.trials);
    for x in ka..last {
        let x = x as f64;
        // P(x + 1) / P(x): one more of `a`'s trials an event, one more of `b`'s not.
        term *= (events - x) * (na - x) / ((x + 1.0) * (nb - events + x + 1.0));
        sum += term;
        if term <= sum * f64::EPSILON {
            break;
        }
    }
    (first + sum.ln()).exp().min(1.0)
}

/// `P(X >= k)` for `X ~ Binomial(n, p)`, exactly: the first term from log-factorials, each
/// next one from the one before by their ratio, summed until a term no longer changes the
/// sum. 1 at `k = 0` and when `k` is not above the mean `n·p` (the judge asks only about
/// counts above it, where the terms fall from the first); 0 when `k > n` or `p <= 0`.
pub(crate) fn binomial_tail_exact(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 || p >= 1.0 || (k as f64) <= n as f64 * p {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    let (nf, kf) = (n as f64, k as f64);
    let first = ln_choose(nf, kf) + kf * p.ln() + (nf - kf) * (-p).ln_1p();
    let odds = p / (1.0 - p);
    let (mut term, mut sum) = (1.0f64, 1.0f64);
    for x in k..n {
        let x = x as f64;
        term *= (nf - x) / (x + 1.0) * odds;
        sum += term;
        if term <= sum * f64::EPSILON {
            break;
        }
    }
    (first + sum.ln()).exp().min(1.0)
}

/// `ln C(n, k)`, `0 ≤ k ≤ n` whole numbers.
fn ln_choose(n: f64, k: f64) -> f64 {
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

/// `ln n!` of a whole `n ≥ 0`: summed below 16, else Stirling's series to its `n⁻⁵` term
/// (error below 1e-12 there).
fn ln_factorial(n: f64) -> f64 {
    if n < 16.0 {
        return (2..=n as u64).map(|i| (i as f64).ln()).sum();
    }
    let inverse = 1.0 / n;
    let squared = inverse * inverse;
    n * n.ln() - n
        + 0.5 * (std::f64::consts::TAU * n).ln()
        + inverse * (1.0 / 12.0 - squared * (1.0 / 360.0 - squared / 1260.0))
}

/// Up to this many samples the p99's confidence bounds take their order statistic from the
/// exact binomial distribution (at most about 1 100 terms); beyond, from its normal
/// approximation, whose skew there is below 0.04.
const EXACT_P99_BOUND_UP_TO: u64 = 100_000;

/// The rank (from 1) of the order statistic, of `n` samples, that is an upper confidence bound
/// of their p99 at level `alpha`: the least `r` below the true p99 with probability at most
/// `alpha` (`P(Binomial(n, 0.99) ≥ r) ≤ alpha`). `None` when no rank is: even the largest of
/// `n` samples is below the p99 with probability `0.99ⁿ`, above `alpha` for fewer than about
/// 690 samples at the default `significance`. (A normal approximation clamped to the largest
/// sample read the largest of 100 as a bound that missed the p99 in 37 % of draws.) Beyond
/// [`EXACT_P99_BOUND_UP_TO`] samples, the normal approximation's rank, rounded up.
pub(crate) fn p99_upper(n: u64, alpha: f64) -> Option<u64> {
    if n == 0 {
        return None;
    }
    if n > EXACT_P99_BOUND_UP_TO {
        let z = normal_quantile_upper(alpha);
        let rank = (0.99 + z * (0.99 * 0.01 / n as f64).sqrt()) * n as f64;
        return Some((rank.ceil() as u64).min(n));
    }
    // The samples above the rank, m = n − r: the most with P(Binomial(n, 0.01) ≤ m) ≤ alpha.
    let at_most_alpha = OnePercentTail::new(n)
        .take_while(|&cdf| cdf <= alpha)
        .count();
    let above = u64::try_from(at_most_alpha).ok()?.checked_sub(1)?;
    Some(n - above)
}

/// The rank (from 1) of the order statistic, of `n` samples, that is a lower confidence bound
/// of their p99 at level `alpha`: the greatest `r` above the true p99 with probability at
/// most `alpha` (`P(Binomial(n, 0.99) ≤ r − 1) ≤ alpha`). `None` when no rank is (too few
/// samples for so small an `alpha`). Beyond [`EXACT_P99_BOUND_UP_TO`] samples, the normal
/// approximation's rank, rounded down.
pub(crate) fn p99_lower(n: u64, alpha: f64) -> Option<u64> {
    if n == 0 {
        return None;
    }
    if n > EXACT_P99_BOUND_UP_TO {
        let z = normal_quantile_upper(alpha);
        let rank = (0.99 - z * (0.99 * 0.01 / n as f64).sqrt()) * n as f64;
        return Some(rank.floor() as u64).filter(|&r| r >= 1);
    }
    // The samples above the rank, m = n − r: the fewest with P(Binomial(n, 0.01) ≤ m) ≥ 1 − alpha.
    let below = OnePercentTail::new(n)
        .take_while(|&cdf| cdf < 1.0 - alpha)
        .count() as u64;
    (below < n).then(|| n - below)
}

/// `P(Binomial(n, 0.01) ≤ m)` for `m = 0, 1, ..., n`, each term from the one before (in logs,
/// so that `0.99ⁿ` may underflow).
struct OnePercentTail {
    n: f64,
    m: f64,
    ln_term: f64,
    cdf: f64,
}

impl OnePercentTail {
    fn new(n: u64) -> Self {
        let n = n as f64;
        Self {
            n,
            m: 0.0,
            ln_term: n * 0.99f64.ln(),
            cdf: 0.0,
        }
    }
}

impl Iterator for OnePercentTail {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        if self.m > self.n {
            return None;
        }
        self.cdf = (self.cdf + self.ln_term.exp()).min(1.0);
        self.ln_term += ((self.n - self.m) / (self.m + 1.0)).ln() + (0.01f64 / 0.99).ln();
        self.m += 1.0;
        Some(self.cdf)
    }
}

/// [`binomial_upper`] with no event, in closed form: `1 − α^(1/n)`, 1 with no trials. The
/// least a rate from `n` trials can be bounded by.
pub(crate) fn clean_upper(n: u64, alpha: f64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    1.0 - alpha.powf(1.0 / n as f64)
}

/// Upper confidence bound of a rate from `k` events in `n` trials at level `alpha`: the
/// largest `p` whose Chernoff–Hoeffding lower tail still allows `k` (`n·KL(k/n ‖ p) ≤
/// ln(1/α)`), found by bisection. 1 with no trials, or when every trial was an event.
pub(crate) fn binomial_upper(k: u64, n: u64, alpha: f64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let q = k.min(n) as f64 / n as f64;
    if q >= 1.0 {
        return 1.0; // every trial an event: no rate below 1 allows it
    }
    // −ln α, not ln(1/α): 1/α is infinite for a subnormal α.
    let budget = -alpha.ln() / n as f64;
    let kl = |p: f64| {
        let a = if q > 0.0 { q * (q / p).ln() } else { 0.0 };
        let b = if q < 1.0 {
            (1.0 - q) * ((1.0 - q) / (1.0 - p)).ln()
        } else {
            0.0
        };
        a + b
    };
    let (mut low, mut high) = (q, 1.0f64);
    for _ in 0..60 {
        let mid = 0.5 * (low + high);
        if mid >= 1.0 || kl(mid) > budget {
            high = mid;
        } else {
            low = mid;
        }
    }
    high
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subnormal_level_gives_an_upper_bound_below_one() {
        // ln(1/α) overflowed to infinity below about 5.6e-309: the bound was 1 at any count.
        for alpha in [1e-309, 1e-310, 5e-324] {
            let upper = binomial_upper(10, 1_000_000, alpha);
            assert!(upper < 0.01, "{alpha}: {upper}");
            assert!(upper >= binomial_upper(10, 1_000_000, f64::MIN_POSITIVE));
        }
    }

    #[test]
    fn the_rates_on_the_boundary_lie_on_it_and_maximise_the_likelihood() {
        let (a, b) = (Proportion::of(24, 800), Proportion::of(114, 11_400));
        for (margin, offset) in [(1.5, 0.0), (1.0, 0.002), (1.1, 0.001), (1.0, 0.0)] {
            let (ra, rb) = on_boundary(a, b, margin, offset);
            assert!(
                (ra - (margin * rb + offset)).abs() < 1e-12,
                "{margin} {offset}"
            );
            // The Poisson log-likelihood of the smoothed counts along the boundary is
            // stationary at `rb`.
            let log_likelihood = |r: f64| {
                let ra = margin * r + offset;
                24.5 * ra.ln() - 801.0 * ra + 114.5 * r.ln() - 11_401.0 * r
            };
            let h = 1e-7;
            let slope = (log_likelihood(rb + h) - log_likelihood(rb - h)) / (2.0 * h);
            assert!(slope.abs() < 1e-2, "{margin} {offset}: slope {slope}");
            assert!(rb > b.rate() && rb < a.rate(), "{margin} {offset}: {rb}");
        }
        // With no offset, the rates pooled as the ratio says.
        let (_, rb) = on_boundary(a, b, 1.5, 0.0);
        assert!((rb - 139.0 / (1.5 * 801.0 + 11_401.0)).abs() < 1e-12);
    }

    /// `C(n, k)` as a float, by the product formula (exact enough for the small tables here).
    fn choose(n: u64, k: u64) -> f64 {
        (0..k).map(|i| (n - i) as f64 / (i + 1) as f64).product()
    }

    /// Fisher's one-sided p-value summed term by term from binomial coefficients.
    fn naive_fisher(a: Proportion, b: Proportion) -> f64 {
        let (total, events) = (a.trials + b.trials, a.events + b.events);
        let tail: f64 = (a.events..=events.min(a.trials))
            .map(|x| choose(events, x) * choose(total - events, a.trials - x))
            .sum();
        tail / choose(total, a.trials)
    }

    #[test]
    fn fisher_s_test_is_the_hypergeometric_tail_summed_by_hand() {
        // Hand-worked: 5 of 5 against 0 of 5, 1 / C(10, 5); 7 of 7 against 0 of 7, 1 / 3 432.
        let p = fisher_exact_p(Proportion::of(5, 5), Proportion::of(0, 5));
        assert!((p - 1.0 / 252.0).abs() < 1e-12, "{p}");
        let p = fisher_exact_p(Proportion::of(7, 7), Proportion::of(0, 7));
        assert!((p - 1.0 / 3432.0).abs() < 1e-12, "{p}");
        // Every table of up to 20 trials a side against the naive sum, to 1e-9 relative.
        for (na, nb) in [(1, 1), (3, 17), (20, 20), (12, 5), (20, 1)] {
            for ka in 0..=na {
                for kb in 0..=nb {
                    let (a, b) = (Proportion::of(ka, na), Proportion::of(kb, nb));
                    let (exact, naive) = (fisher_exact_p(a, b), naive_fisher(a, b).min(1.0));
                    let above_share = ka * (na + nb) > (ka + kb) * na;
                    if above_share {
                        assert!(
                            (exact - naive).abs() <= 1e-9 * naive,
                            "{ka}/{na} vs {kb}/{nb}: {exact} {naive}"
                        );
                    } else {
                        assert_eq!(exact, 1.0, "{ka}/{na} vs {kb}/{nb}");
                    }
                }
            }
        }
    }

    #[test]
    fn fisher_s_test_is_finite_for_counts_in_the_millions() {
        // Counts in the millions: the first term from log-factorials, the sum short.
        let p = fisher_exact_p(
            Proportion::of(12_000, 1_000_000),
            Proportion::of(10_000, 1_000_000),
        );
        assert!(p > 0.0 && p < 1e-30, "{p}");
        let p = fisher_exact_p(
            Proportion::of(10_050, 1_000_000),
            Proportion::of(10_000, 1_000_000),
        );
        assert!(p > 0.3 && p < 0.4, "{p}");
        assert_eq!(
            fisher_exact_p(Proportion::of(0, 0), Proportion::of(5, 10)),
            1.0
        );
        assert_eq!(
            fisher_exact_p(Proportion::of(5, 5), Proportion::of(0, 0)),
            1.0
        );
    }

    #[test]
    fn the_p99_bounds_are_the_exact_order_statistics() {
        // Ranks from scipy.stats.binom (n, 0.01) at alpha = 0.001: the upper bound's the least
        // r with P(Binomial(n, 0.99) >= r) <= alpha, the lower bound's the greatest r with
        // P(Binomial(n, 0.99) <= r - 1) <= alpha.
        for (n, upper, lower) in [
            (688, 688, 672),
            (1_000, 999, 979),
            (5_000, 4_971, 4_927),
            (100_000, 99_097, 98_901),
        ] {
            assert_eq!(p99_upper(n, 0.001), Some(upper), "{n}");
            assert_eq!(p99_lower(n, 0.001), Some(lower), "{n}");
        }
        // The largest of 687 or fewer is below the p99 too often (0.99^687 > 0.001): no
        // bound, where the normal approximation read the largest of 100 as one.
        assert_eq!(p99_upper(687, 0.001), None);
        assert_eq!(p99_upper(100, 0.001), None);
        assert_eq!(p99_upper(0, 0.001), None);
        assert_eq!(p99_lower(0, 0.001), None);
        assert_eq!(
            p99_lower(1, 0.001),
            None,
            "one sample bounds nothing from below"
        );
        assert_eq!(p99_lower(5, 1e-12), None);
        // Beyond the exact range, the normal approximation, within a rank of the exact one.
        assert!(p99_upper(100_001, 0.001).is_some_and(|r| r.abs_diff(99_098) <= 1));
        assert!(p99_lower(100_001, 0.001).is_some_and(|r| r.abs_diff(98_902) <= 1));
    }

    #[test]
    fn a_clean_stable_window_beside_many_canary_requests_is_not_taken_as_exact() {
        // Both fail 1 %; a 90 % canary share, and the stable window happened to be clean
        // (one in 270 such windows): the stable rate's variance at the boundary, not at 0.
        let p = two_proportion_p(Proportion::of(50, 5_000), Proportion::of(0, 556), 1.5);
        assert!(p > 0.01, "{p}");
        // A canary far beyond is still seen: 10 % errors.
        let p = two_proportion_p(Proportion::of(500, 5_000), Proportion::of(0, 556), 1.5);
        assert!(p < 1e-9, "{p}");
    }
}
