//! The two reference judges, computed on the same outcomes as the engine:
//!
//! - **Kayenta-style** (issue 15's definition, not Kayenta's own `NetflixACAJudge`): every
//!   60 s, on the stage's outcomes so far (canary against stable), a one-sided Mann-Whitney
//!   test on the per-request latencies and a one-sided Fisher exact test of errors, each at
//!   0.01, with no tolerance and no warm-up; a failed analysis rolls back, a passed one is
//!   promotable. Kayenta's classifier tests per-step metric series with a tolerance (0.25)
//!   after `beginCanaryAnalysisAfterMins`: slower to detect, fewer false rollbacks.
//! - **Flagger-style:** every 60 s, on the canary's last 60 s: error rate at most the engine's
//!   SLO `max_error_rate` (5 % by default; Flagger's docs' example is a 99 % success rate) and
//!   p99 at most its `latency_target` (500 ms); an interval without canary outcomes is a
//!   failed check too (Flagger halts on "no values found" and counts it). As Flagger's
//!   scheduler does, the first iteration, at the stage's start (t = 0), starts the analysis
//!   and checks nothing (in Flagger it raises the canary's weight from 0: its traffic begins
//!   there), so the first check, at 60 s, covers the canary's first minute; each iteration
//!   rolls back when the failed checks so far reach the threshold (issue 15's 5), before
//!   checking: one interval after the fifth failed check, 360 s at the earliest. A passed
//!   check is promotable.

use promotion_gates::SloConfig;
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

/// The Flagger-style judge's limits, read from the engine's own SLO so that a service erring
/// at 1 % is not failed by construction: each interval's error rate against the SLO's
/// `max_error_rate`, and its p99 against the SLO's `latency_target`. That is not the engine's
/// latency requirement: the engine counts a request compliant when it succeeds within
/// `latency_target` and asks a share `slo_threshold` of them (`PromotionConfig`, 0.95 by
/// default); this judge asks 99 % of an interval's requests within it (its p99).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlaggerLimits {
    /// The most errors a passed interval holds, as a share of its requests: the SLO's
    /// `max_error_rate` (Flagger's request-success-rate `thresholdRange.min`, in percent, is
    /// 100 × (1 − `max_error_rate`): 95 at the default 0.05).
    pub max_error_rate: f64,
    /// The highest p99 of a passed interval, in ms: the SLO's `latency_target` (Flagger's
    /// request-duration `thresholdRange.max`, a p99 in ms).
    pub max_p99_ms: f64,
}

impl FlaggerLimits {
    /// The limits of the engine's SLO `slo`.
    pub fn of(slo: &SloConfig) -> Self {
        FlaggerLimits {
            max_error_rate: slo.max_error_rate,
            max_p99_ms: slo.latency_target.as_secs_f64() * 1e3,
        }
    }
}

/// Flagger-style check of the canary's last interval. An interval without canary outcomes
/// fails: Flagger's analysis halts on a metric query that finds no values and counts it as a
/// failed check, so a canary that gets no traffic is rolled back at the threshold.
pub fn flagger(last_interval: &Tally, limits: FlaggerLimits) -> Call {
    if last_interval.requests == 0 {
        return Call::Fail;
    }
    let error_rate = last_interval.errors as f64 / last_interval.requests as f64;
    if error_rate > limits.max_error_rate || last_interval.quantile_ms(0.99) > limits.max_p99_ms {
        Call::Fail
    } else {
        Call::Pass
    }
}

/// Failed Flagger checks that roll back: issue 15's 5 (Flagger's `analysis.threshold`, set
/// per canary; its documentation's examples show 5 in some places and 10 in others).
pub const FLAGGER_THRESHOLD: u32 = 5;

/// What the Flagger-style judge did at one of its iterations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The first iteration, at the stage's start: the analysis starts (the canary's traffic
    /// begins) and nothing is checked.
    Started,
    /// The last interval's check passed: promotable.
    Passed,
    /// The last interval's check failed and was counted.
    Failed,
    /// The failed checks had reached the threshold: rolled back, before any check.
    RolledBack,
}

/// The Flagger-style judge across its iterations, in the order of Flagger's scheduler
/// (`pkg/controller/scheduler.go`): each iteration first rolls back if the failed checks
/// counted so far reach [`FLAGGER_THRESHOLD`], and only then checks the last interval; the
/// first iteration, which starts the analysis and the canary's traffic (the trial runs it at
/// t = 0), checks nothing. So the rollback comes one interval after the threshold-th failed
/// check.
#[derive(Debug, Clone, Copy)]
pub struct Flagger {
    limits: FlaggerLimits,
    started: bool,
    failed_checks: u32,
}

impl Flagger {
    /// A judge with `limits` that has not started.
    pub fn new(limits: FlaggerLimits) -> Self {
        Flagger {
            limits,
            started: false,
            failed_checks: 0,
        }
    }

    /// One iteration, on the canary's outcomes of the interval before it.
    pub fn iterate(&mut self, last_interval: &Tally) -> Step {
        if self.failed_checks >= FLAGGER_THRESHOLD {
            return Step::RolledBack;
        }
        if !self.started {
            self.started = true;
            return Step::Started;
        }
        match flagger(last_interval, self.limits) {
            Call::Fail => {
                self.failed_checks += 1;
                Step::Failed
            }
            Call::Pass => Step::Passed,
        }
    }
}

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

    fn limits() -> FlaggerLimits {
        FlaggerLimits::of(&SloConfig::default())
    }

    #[test]
    fn flagger_fails_an_interval_without_canary_outcomes() {
        let mut interval = Tally::default();
        assert_eq!(flagger(&interval, limits()), Call::Fail);
        interval.record(true, 20.0);
        assert_eq!(flagger(&interval, limits()), Call::Pass);
        interval.clear();
        assert_eq!(flagger(&interval, limits()), Call::Fail);
    }

    #[test]
    fn flaggers_limits_are_the_engines_slo() {
        let slo = SloConfig::default();
        let max_p99_ms = slo.latency_target.as_secs_f64() * 1e3;
        // 1 000 requests at 20 ms with errors just within and just above `max_error_rate`.
        let with_errors = |errors: u64| {
            let mut interval = Tally::default();
            for i in 0..1000 {
                interval.record(i >= errors, 20.0);
            }
            interval
        };
        let within = (slo.max_error_rate * 1000.0).floor() as u64;
        assert_eq!(flagger(&with_errors(within), limits()), Call::Pass);
        assert_eq!(flagger(&with_errors(within + 1), limits()), Call::Fail);
        // A 1 % error rate, which a fixed 99 % success rate failed, passes at the default.
        assert_eq!(flagger(&with_errors(10), limits()), Call::Pass);
        // The p99 just within the latency target (a bucket is 1 % wide), and above it.
        let with_p99 = |ms: f64| {
            let mut interval = Tally::default();
            for i in 0..1000 {
                interval.record(true, if i < 980 { 20.0 } else { ms });
            }
            interval
        };
        assert_eq!(flagger(&with_p99(max_p99_ms * 0.98), limits()), Call::Pass);
        assert_eq!(flagger(&with_p99(max_p99_ms * 1.02), limits()), Call::Fail);
    }

    #[test]
    fn flagger_starts_without_a_check_and_rolls_back_an_interval_after_the_threshold() {
        let mut judge = Flagger::new(limits());
        let empty = Tally::default();
        // A canary failing every check: the start, five failed checks, then the rollback at
        // the seventh iteration, not the sixth.
        assert_eq!(judge.iterate(&empty), Step::Started);
        for _ in 0..FLAGGER_THRESHOLD {
            assert_eq!(judge.iterate(&empty), Step::Failed);
        }
        assert_eq!(judge.iterate(&empty), Step::RolledBack);
        // A passed check between failed ones does not reset the count.
        let mut judge = Flagger::new(limits());
        let mut good = Tally::default();
        good.record(true, 20.0);
        assert_eq!(judge.iterate(&good), Step::Started);
        for _ in 0..FLAGGER_THRESHOLD - 1 {
            assert_eq!(judge.iterate(&empty), Step::Failed);
        }
        assert_eq!(judge.iterate(&good), Step::Passed);
        assert_eq!(judge.iterate(&empty), Step::Failed);
        assert_eq!(judge.iterate(&good), Step::RolledBack);
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
