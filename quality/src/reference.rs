//! The two reference judges, computed on the same outcomes as the engine:
//!
//! - **Kayenta-style** (issue 15's definition, not Kayenta's own `NetflixACAJudge`): every
//!   60 s, on the stage's outcomes so far (canary against stable), a one-sided Mann-Whitney
//!   test on the per-request latencies and a one-sided Fisher exact test of errors, each at
//!   0.01, with no tolerance and no warm-up; a failed analysis rolls back, a passed one is
//!   promotable. Kayenta's classifier tests per-step metric series with a tolerance (0.25)
//!   after `beginCanaryAnalysisAfterMins`: slower to detect, fewer false rollbacks.
//! - **Flagger-style:** every 60 s, on the canary's last 60 s: success rate at least 99 % (the
//!   example threshold of Flagger's docs) and p99 at most 500 ms; an interval without canary
//!   outcomes is a failed check too (Flagger halts on "no values found" and counts it); the
//!   fifth failed check rolls back, a passed one is promotable.

use promotion_gates::judge::normal_upper_tail;

/// Latency histogram with buckets 1 % wide from 1 µs, for the reference judges.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub requests: u64,
    pub errors: u64,
    buckets: Vec<u64>,
}

const BUCKETS: usize = 2400;

fn bucket_of(ms: f64) -> usize {
    let us = (ms * 1e3).max(1.0);
    ((us.ln() / 1.01f64.ln()) as usize).min(BUCKETS - 1)
}

impl Tally {
    pub fn record(&mut self, ok: bool, ms: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; BUCKETS];
        }
        self.requests += 1;
        self.errors += u64::from(!ok);
        self.buckets[bucket_of(ms)] += 1;
    }

    pub fn clear(&mut self) {
        self.requests = 0;
        self.errors = 0;
        self.buckets.iter_mut().for_each(|b| *b = 0);
    }

    /// The latency at quantile `q`, in ms (bucket's upper edge).
    fn quantile_ms(&self, q: f64) -> f64 {
        let rank = (q * self.requests as f64).ceil() as u64;
        let mut seen = 0;
        for (i, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank.max(1) {
                return 1.01f64.powi(i as i32 + 1) / 1e3;
            }
        }
        f64::INFINITY
    }
}

/// One-sided Mann-Whitney p-value of "canary slower than stable" (normal approximation,
/// ties as halves).
pub fn mann_whitney_p(canary: &Tally, stable: &Tally) -> f64 {
    let (n1, n2) = (canary.requests as f64, stable.requests as f64);
    if n1 < 1.0 || n2 < 1.0 || canary.buckets.is_empty() || stable.buckets.is_empty() {
        return 1.0;
    }
    let (mut below, mut u) = (0.0, 0.0);
    for (c, s) in canary.buckets.iter().zip(&stable.buckets) {
        u += *c as f64 * (below + 0.5 * *s as f64);
        below += *s as f64;
    }
    let z = (u - n1 * n2 / 2.0) / (n1 * n2 * (n1 + n2 + 1.0) / 12.0).sqrt();
    normal_upper_tail(z)
}

/// One-sided Fisher exact p-value of "canary error rate above stable's".
pub fn fisher_p(canary: &Tally, stable: &Tally) -> f64 {
    let (n, m) = (canary.requests, stable.requests);
    let (a, k) = (canary.errors, canary.errors + stable.errors);
    if n == 0 || m == 0 || (a as f64) <= k as f64 * n as f64 / (n + m) as f64 {
        return 1.0;
    }
    let total = n + m;
    let log_p = |x: u64| ln_choose(k, x) + ln_choose(total - k, n - x) - ln_choose(total, n);
    let mut sum = 0.0;
    for x in a..=k.min(n) {
        let term = log_p(x).exp();
        sum += term;
        if term < sum * 1e-12 {
            break;
        }
    }
    sum.min(1.0)
}

fn ln_choose(n: u64, k: u64) -> f64 {
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

/// `ln(n!)` by Stirling's series (exact enough above 10), by product below.
fn ln_factorial(n: u64) -> f64 {
    if n < 11 {
        return (2..=n).map(|i| (i as f64).ln()).sum();
    }
    let x = n as f64;
    x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + 1.0 / (12.0 * x)
        - 1.0 / (360.0 * x * x * x)
}

/// What a reference judge says at one analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Pass,
    Fail,
}

/// Kayenta-style analysis of the stage so far.
pub fn kayenta(canary: &Tally, stable: &Tally) -> Call {
    let bad = mann_whitney_p(canary, stable) < 0.01 || fisher_p(canary, stable) < 0.01;
    if bad { Call::Fail } else { Call::Pass }
}

/// Flagger-style check of the canary's last interval. An interval without canary outcomes
/// fails: Flagger's analysis halts on a metric query that finds no values and counts it as a
/// failed check, so a canary that gets no traffic is rolled back at the threshold.
pub fn flagger(last_interval: &Tally) -> Call {
    if last_interval.requests == 0 {
        return Call::Fail;
    }
    let success = 1.0 - last_interval.errors as f64 / last_interval.requests as f64;
    if success < 0.99 || last_interval.quantile_ms(0.99) > 500.0 {
        Call::Fail
    } else {
        Call::Pass
    }
}

/// Failed Flagger checks that roll back.
pub const FLAGGER_THRESHOLD: u32 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fisher_against_a_hand_worked_table() {
        // Canary 3 of 3 failed, stable 0 of 3: p = 1/20.
        let mut c = Tally::default();
        let mut s = Tally::default();
        for _ in 0..3 {
            c.record(false, 1.0);
            s.record(true, 1.0);
        }
        assert!((fisher_p(&c, &s) - 0.05).abs() < 1e-9);
        assert_eq!(fisher_p(&s, &c), 1.0);
    }

    #[test]
    fn flagger_fails_an_interval_without_canary_outcomes() {
        let mut interval = Tally::default();
        assert_eq!(flagger(&interval), Call::Fail);
        interval.record(true, 20.0);
        assert_eq!(flagger(&interval), Call::Pass);
        interval.clear();
        assert_eq!(flagger(&interval), Call::Fail);
    }

    #[test]
    fn mann_whitney_sees_a_shift() {
        let (mut c, mut s) = (Tally::default(), Tally::default());
        for i in 0..500 {
            s.record(true, 10.0 + i as f64 * 0.1);
            c.record(true, 15.0 + i as f64 * 0.1);
        }
        assert!(mann_whitney_p(&c, &s) < 1e-6);
        assert!(mann_whitney_p(&s, &c) > 0.99);
        assert!((ln_factorial(20) - (2_432_902_008_176_640_000f64).ln()).abs() < 1e-6);
    }
}
