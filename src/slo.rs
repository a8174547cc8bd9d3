//! The SLO policy a gate judges its canary with: [`SloConfig`] and the validated
//! [`SloAdmissionController`] that holds it.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::config::PromotionConfig;
use crate::error::{ConfigError, shown_millis};

/// The judging policy: what a compliant request is, and when a canary is rolled back.
///
/// In JSON, durations are milliseconds (`latency_target_ms`, `p99_budget_ms`,
/// `evaluation_interval_ms`, `latency_tolerance_ms`, `warm_up_ms`, `no_data_ms`; fractions
/// allowed).
///
/// # Example
/// ```
/// use promotion_gates::SloConfig;
/// use std::time::Duration;
///
/// let slo = SloConfig { latency_target: Duration::from_millis(250), ..Default::default() };
/// slo.validate()?;
/// let json = serde_json::to_string(&slo).unwrap();
/// assert!(json.contains(r#""latency_target_ms":250.0"#));
/// # Ok::<(), promotion_gates::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SloConfig {
    /// A request is compliant when it succeeds within this latency (default 500 ms; above 0,
    /// at most 60 s, [`MAX_TRACKED_LATENCY`]: each request's own latency is compared with it
    /// as it is recorded, not the histogram's bucket).
    #[serde(rename = "latency_target_ms", with = "millis")]
    pub latency_target: Duration,
    /// Roll back when the canary's error rate is significantly above this (default 0.05).
    pub max_error_rate: f64,
    /// Roll back when the canary's error rate is significantly above production's times this
    /// (default 1.5).
    pub error_rate_ratio_limit: f64,
    /// Roll back when the canary's share of requests slower than the stable version's p99 is
    /// significantly above this times the stable version's share (default 1.5): the p99 rule
    /// of docs/judge.md.
    pub p99_ratio_limit: f64,
    /// Roll back when the canary's p99 is significantly above this absolute budget (default
    /// none). The specification's p99 threshold "configurable per runtime class" is this
    /// budget in each class's own gate: a gate judges one service, with one `SloConfig`.
    ///
    /// Above 0 and below 59 768.832 ms, the lower edge of the histogram's last bucket, which
    /// holds every latency from there on (60 s or more too): the rule counts the requests
    /// slower than the budget by whole buckets above it, so a budget within that bucket could
    /// never fire.
    ///
    /// ```
    /// use promotion_gates::SloConfig;
    /// use std::time::Duration;
    /// let budget = |micros| SloConfig { p99_budget: Some(Duration::from_micros(micros)), ..Default::default() };
    /// assert!(budget(59_768_831).validate().is_ok());
    /// assert_eq!(budget(59_768_832).validate().unwrap_err().field(), "p99_budget_ms");
    /// ```
    #[serde(rename = "p99_budget_ms", with = "millis_opt")]
    pub p99_budget: Option<Duration>,
    /// Canary samples in the window before an ordinary rule may fire (default 100; from
    /// [`MIN_SAMPLES_FLOOR`] to [`MAX_MIN_SAMPLES`]).
    pub min_samples: u64,
    /// One-sided significance level of each rule's test (default 0.001; at least
    /// `f64::MIN_POSITIVE`, the least normal double, about 2.225e-308 (2.2e-308 is refused);
    /// below 0.5, and at most the p-value the absolute rules give one failed request among
    /// `min_samples` at their least limit, 0.1 %: 0.0122 at 5 samples, 0.052 at 20, 0.245 at
    /// 100, so that they never roll back on one failure. That p-value is the Chernoff bound on
    /// its chance ([`binomial_tail`](crate::judge::binomial_tail)), above the chance itself,
    /// `1 − 0.999ⁿ`: 0.0050, 0.0198 and 0.0952.)
    ///
    /// ```
    /// use promotion_gates::SloConfig;
    /// let slo = SloConfig { significance: 0.05, min_samples: 10, ..Default::default() };
    /// assert_eq!(slo.validate().unwrap_err().field(), "significance");
    /// assert!(SloConfig { min_samples: 20, ..slo }.validate().is_ok());
    /// ```
    pub significance: f64,
    /// Significance below which evidence is overwhelming and may act before `min_samples`
    /// (default 1e-9; at least `f64::MIN_POSITIVE`, as `significance`).
    pub overwhelming_significance: f64,
    /// Least time between two automatic full evaluations on the record path (default 1 s;
    /// from 1 ms, [`MIN_EVALUATION_INTERVAL`], to 1 hour, and for a gate at most a tenth of
    /// its `rollback_window_seconds`: see [`validate_for`](Self::validate_for)).
    ///
    /// The window gets a reading only at an evaluation, and its start is the latest reading
    /// at least one window old: with evaluations an interval apart, that start is up to an
    /// interval older than the window (with a 1 h interval and a 300 s window, an hour-old
    /// reading). At most a tenth of the window, one of its slots, keeps the start exact to
    /// one slot, as docs/judge.md says. The latency rules' warm-up ends at the first reading
    /// after `warm_up_ms`, up to an interval later; that is not bounded beyond the window's
    /// bound: a warm-up shorter than the interval (0 included) means "until the first
    /// evaluation after it", and no rule could act before that evaluation anyway.
    #[serde(rename = "evaluation_interval_ms", with = "millis")]
    pub evaluation_interval: Duration,
    /// Absolute tolerance beside `error_rate_ratio_limit`: an excess over the stable error rate
    /// up to this is tolerated whatever the ratio, so a stable version without errors does not
    /// make the limit zero (default 0.0005, 0.05 percentage points; from
    /// [`MIN_ERROR_RATE_TOLERANCE`], 0.01 points, to 1).
    pub error_rate_tolerance: f64,
    /// Whole-distribution latency: the canary is worse when its latencies, divided by this,
    /// are still surely slower than the stable version's (Mann-Whitney), and shown not worse
    /// when they are surely not (default 1.1).
    pub latency_shift_limit: f64,
    /// Absolute tolerance beside `p99_ratio_limit` and `latency_shift_limit`, in milliseconds
    /// (default 1 ms; from 0 to below 59 768.832 ms, as `p99_budget`: `p99_vs_stable` counts
    /// the canary requests slower than the stable p99's bound + this by whole buckets above
    /// it. When the bound + this reaches that last bucket, the rule sees no canary request
    /// slower in that evaluation).
    #[serde(rename = "latency_tolerance_ms", with = "millis")]
    pub latency_tolerance: Duration,
    /// The latency rules skip this first part of each stage (cold caches, JIT); the error rules
    /// keep full power (default 30 s).
    #[serde(rename = "warm_up_ms", with = "millis")]
    pub warm_up: Duration,
    /// A canary that has reported no outcome for this long, from the stage's start or (beside
    /// stable traffic) since its latest outcome, while outcomes were expected, is flagged
    /// NO_DATA and never promotable (default 120 s).
    #[serde(rename = "no_data_ms", with = "millis")]
    pub no_data_after: Duration,
    /// Level of the confidence bounds a promotion needs: the canary's error rate and latency
    /// not worse than the stable version's beyond the tolerated limits (default 0.05; at
    /// least `f64::MIN_POSITIVE`, below 0.5).
    pub promotion_significance: f64,
    /// Whether a gated promotion from a canary stage with stable traffic needs that positive
    /// evidence (default true). Off, the gate asks only for samples, compliance and no fired
    /// rule, as before the evidence existed: for tests of the release state machine, or when
    /// another system judges the canary. The evidence is reported either way.
    pub promotion_evidence: bool,
}

impl Default for SloConfig {
    fn default() -> Self {
        Self {
            latency_target: Duration::from_millis(500),
            max_error_rate: 0.05,
            error_rate_ratio_limit: 1.5,
            p99_ratio_limit: 1.5,
            p99_budget: None,
            min_samples: 100,
            significance: 0.001,
            overwhelming_significance: 1e-9,
            evaluation_interval: Duration::from_secs(1),
            error_rate_tolerance: 0.0005,
            latency_shift_limit: 1.1,
            latency_tolerance: Duration::from_millis(1),
            warm_up: Duration::from_secs(30),
            no_data_after: Duration::from_secs(120),
            promotion_significance: 0.05,
            promotion_evidence: true,
        }
    }
}

/// The longest latency a histogram records exactly; longer ones count as this (60 s).
pub const MAX_TRACKED_LATENCY: Duration = Duration::from_secs(60);

/// The least latency threshold the latency rules cannot count past: the lower edge of the
/// histogram's last bucket (59 768.832 ms), which holds every latency from it to
/// [`MAX_TRACKED_LATENCY`] and every longer one. `p99_budget` and `p99_vs_stable` count the
/// requests slower than their threshold by whole buckets above it, so from this edge on they
/// count none and could never fire: `p99_budget_ms` and `latency_tolerance_ms` must be below
/// it. (`latency_target_ms` is compared with each request's own latency, not the histogram,
/// and may be up to [`MAX_TRACKED_LATENCY`].)
fn latency_threshold_ceiling() -> Duration {
    Duration::from_micros(crate::metrics::layout::last_bucket_floor())
}

/// The longest `evaluation_interval` and `warm_up` accepted.
const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// The shortest `evaluation_interval` accepted: below it a busy gate would run a full
/// evaluation (every recorder read, every rule) every few records, on the record path.
///
/// # Example
/// ```
/// use promotion_gates::{MIN_EVALUATION_INTERVAL, SloConfig};
/// let slo = SloConfig { evaluation_interval: MIN_EVALUATION_INTERVAL / 2, ..Default::default() };
/// assert_eq!(slo.validate().unwrap_err().field(), "evaluation_interval_ms");
/// ```
pub const MIN_EVALUATION_INTERVAL: Duration = Duration::from_millis(1);

/// The most `min_samples` accepted: 10 000 000 canary samples, what the longest window
/// ([`MAX_WINDOW_SECONDS`](crate::MAX_WINDOW_SECONDS), a week) holds at 16.5 canary requests a
/// second, or an hour at 2 800. No test needs more: at 10 million samples and an error rate
/// up to 1 %, the error rules' one-look bound at the default `significance` is within 0.01
/// percentage points, [`MIN_ERROR_RATE_TOLERANCE`]. A larger count only makes the gate wait
/// for more samples than its window holds at its traffic: then no ordinary rule could fire
/// and the gate could never be promoted, with nothing saying why (`u64::MAX` was accepted).
///
/// # Example
/// ```
/// use promotion_gates::{MAX_MIN_SAMPLES, SloConfig};
/// assert!(SloConfig { min_samples: MAX_MIN_SAMPLES, ..Default::default() }.validate().is_ok());
/// let slo = SloConfig { min_samples: MAX_MIN_SAMPLES + 1, ..Default::default() };
/// assert_eq!(slo.validate().unwrap_err().field(), "min_samples");
/// ```
pub const MAX_MIN_SAMPLES: u64 = 10_000_000;

/// The least `error_rate_tolerance` accepted: 0.0001, 0.01 percentage points. A tolerance of
/// 0 is refused because a stable version without errors then makes the tolerated limit 0;
/// one just above 0 acts the same. With `error_rate_ratio_limit` 1.0 it takes away the
/// window's margin, which is what keeps an A/A canary's comparison drifting away from
/// significance (docs/judge.md, *Why false rollbacks are rare*), and a promotion's bound must
/// then show the canary better than the stable version: beside a stable version without
/// errors, a canary without errors is shown within the limit only once `1 − α^(1/n)`, about
/// `3/n` at `promotion_significance` 0.05, is below it. At 0.0001 that is about 30 000 canary
/// samples; at 1e-12, 3 × 10¹² (the tolerance 1e-12 was accepted).
///
/// # Example
/// ```
/// use promotion_gates::{MIN_ERROR_RATE_TOLERANCE, SloConfig};
/// let slo = SloConfig { error_rate_tolerance: MIN_ERROR_RATE_TOLERANCE / 2.0, ..Default::default() };
/// assert_eq!(slo.validate().unwrap_err().field(), "error_rate_tolerance");
/// ```
pub const MIN_ERROR_RATE_TOLERANCE: f64 = 0.0001;

/// The least significance level accepted (`significance`, `overwhelming_significance`,
/// `promotion_significance`): `f64::MIN_POSITIVE`, the least normal double (about
/// 2.225e-308). A subnormal level (1e-310) read as one above 0, yet `1/α` is infinite there:
/// every bound at it was infinite, no rule could fire and no promotion be shown. The judge
/// now takes `ln(1/α)` as `−ln α`, finite for any level above 0, and validation refuses the
/// subnormals too: a level where a double loses precision is no level a test should be run
/// at.
const MIN_LEVEL: f64 = f64::MIN_POSITIVE;

/// The range of a significance level, as a refusal writes it after "a probability".
const LEVEL_RANGE: &str = "of at least 2.2250738585072014e-308 (f64::MIN_POSITIVE, the least \
                           normal double) and below 0.5";

/// Whether `x` is a significance level validation accepts: from [`MIN_LEVEL`] to below 0.5.
fn level(x: f64) -> bool {
    x.is_finite() && (MIN_LEVEL..0.5).contains(&x)
}

/// The shortest and the longest `no_data_ms` accepted.
const NO_DATA_BOUNDS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(86_400)];

impl SloConfig {
    /// Reads and validates an SLO config from a JSON object (durations in milliseconds, as
    /// `latency_target_ms`, `p99_budget_ms`, `evaluation_interval_ms`, `latency_tolerance_ms`,
    /// `warm_up_ms` and `no_data_ms`; missing fields take their defaults).
    ///
    /// # Errors
    /// [`Error::Json`](crate::Error::Json) for malformed JSON, a wrong type, a number out of
    /// range, a duration that is negative or shorter than a nanosecond, an unknown field or one
    /// given twice (the message names the field), [`Error::Config`](crate::Error::Config) for a value
    /// refused by [`validate`](Self::validate).
    ///
    /// # Example
    /// ```
    /// use promotion_gates::SloConfig;
    ///
    /// let slo = SloConfig::from_json(r#"{"max_error_rate": 0.02, "latency_target_ms": 250}"#)?;
    /// assert_eq!(slo.max_error_rate, 0.02);
    /// assert!(SloConfig::from_json(r#"{"max_error_rate": 2}"#).is_err());
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn from_json(json: &str) -> Result<Self, crate::Error> {
        let config: Self = crate::config::parse_json_object(json, "SloConfig")?;
        // A refused number is shown as the document wrote it, not as read.
        config.validate().map_err(|e| e.as_written_in_json(json))?;
        Ok(config)
    }

    /// Checks every field; the first bad one is reported with its name and value.
    ///
    /// # Errors
    /// [`ConfigError`] for a latency target of zero or above 60 s, an error rate outside
    /// `0..=1`, an error-rate or p99 ratio below 1, a p99 budget of zero or from 59 768.832 ms
    /// on (the histogram's last bucket), `min_samples` below 5 or above [`MAX_MIN_SAMPLES`],
    /// significance levels below `f64::MIN_POSITIVE` (subnormal, or 0) or from 0.5, an
    /// overwhelming level above the ordinary one or above 1 %, a `significance` at which one
    /// failure among `min_samples` would roll back, an `error_rate_tolerance` below
    /// [`MIN_ERROR_RATE_TOLERANCE`], or an evaluation interval below 1 ms
    /// ([`MIN_EVALUATION_INTERVAL`]) or above one hour; or a bad tolerance, warm-up, no-data
    /// time or promotion level (each named; `latency_tolerance_ms` below 59 768.832 ms, as the
    /// budget). The interval against a gate's window is [`validate_for`](Self::validate_for)'s.
    ///
    /// # Example
    /// ```
    /// let slo = promotion_gates::SloConfig { max_error_rate: 1.5, ..Default::default() };
    /// assert_eq!(slo.validate().unwrap_err().field(), "max_error_rate");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.latency_target.is_zero() || self.latency_target > MAX_TRACKED_LATENCY {
            return Err(ConfigError::new(
                "latency_target_ms",
                shown_millis(self.latency_target),
                format!(
                    "a latency above 0 and at most {} ms",
                    MAX_TRACKED_LATENCY.as_millis()
                ),
            ));
        }
        let fraction = |x: f64| x.is_finite() && (0.0..=1.0).contains(&x);
        if !fraction(self.max_error_rate) {
            return Err(ConfigError::new(
                "max_error_rate",
                self.max_error_rate,
                "a fraction from 0.0 to 1.0, e.g. 0.05",
            ));
        }
        if !self.error_rate_ratio_limit.is_finite() || self.error_rate_ratio_limit < 1.0 {
            return Err(ConfigError::new(
                "error_rate_ratio_limit",
                self.error_rate_ratio_limit,
                "a finite ratio of at least 1.0, e.g. 1.5",
            ));
        }
        if !self.p99_ratio_limit.is_finite() || self.p99_ratio_limit < 1.0 {
            return Err(ConfigError::new(
                "p99_ratio_limit",
                self.p99_ratio_limit,
                "a finite ratio of at least 1.0, e.g. 1.5",
            ));
        }
        let ceiling = latency_threshold_ceiling();
        if let Some(budget) = self.p99_budget
            && (budget.is_zero() || budget >= ceiling)
        {
            return Err(ConfigError::new(
                "p99_budget_ms",
                shown_millis(budget),
                format!(
                    "a latency above 0 and below {} ms, or null for none (the histogram \
                     counts every latency from there on, 60 s or more, in its last bucket, so a \
                     budget there could never fire)",
                    shown_millis(ceiling)
                ),
            ));
        }
        if self.min_samples < MIN_SAMPLES_FLOOR || self.min_samples > MAX_MIN_SAMPLES {
            return Err(ConfigError::new(
                "min_samples",
                self.min_samples,
                format!(
                    "from {MIN_SAMPLES_FLOOR} samples, so no rule waits for fewer (100 is usual), \
                     to {MAX_MIN_SAMPLES} (MAX_MIN_SAMPLES: a week-long window's canary requests \
                     at 16.5 a second; a gate waiting for more than its window holds could \
                     never be promoted)"
                ),
            ));
        }
        if !level(self.significance) {
            return Err(ConfigError::new(
                "significance",
                self.significance,
                format!("a probability {LEVEL_RANGE}, e.g. 0.001"),
            ));
        }
        // One failed request is at least 1 % probable at any acceptable rate (the
        // overwhelming-evidence rules' floor): a level above it would roll back on it.
        let floor = crate::judge::OVERWHELMING_RATE_FLOOR;
        if !level(self.overwhelming_significance)
            || self.overwhelming_significance > self.significance
            || self.overwhelming_significance > floor
        {
            return Err(ConfigError::new(
                "overwhelming_significance",
                self.overwhelming_significance,
                format!(
                    "a probability of at least {MIN_LEVEL:e} (f64::MIN_POSITIVE), at most \
                     `significance` and at most {floor} (one \
                     failed request is that probable at the lowest acceptable error rate: a \
                     higher level would roll back on it), e.g. 1e-9"
                ),
            ));
        }
        self.validate_single_miss()?;
        self.validate_tolerances()?;
        if self.evaluation_interval < MIN_EVALUATION_INTERVAL
            || self.evaluation_interval > MAX_INTERVAL
        {
            return Err(ConfigError::new(
                "evaluation_interval_ms",
                shown_millis(self.evaluation_interval),
                format!(
                    "from {} to {} ms (MIN_EVALUATION_INTERVAL: a shorter one would judge every \
                     few records, on the record path)",
                    MIN_EVALUATION_INTERVAL.as_millis(),
                    MAX_INTERVAL.as_millis()
                ),
            ));
        }
        Ok(())
    }
}

/// The least `min_samples` accepted: an ordinary rule waits for at least this many samples.
/// (That one failure among them cannot roll back is `significance`'s check, against
/// `min_samples`: see [`SloConfig::significance`].)
///
/// # Example
/// ```
/// let slo = promotion_gates::SloConfig { min_samples: promotion_gates::MIN_SAMPLES_FLOOR - 1, ..Default::default() };
/// assert_eq!(slo.validate().unwrap_err().field(), "min_samples");
/// ```
pub const MIN_SAMPLES_FLOOR: u64 = 5;

impl SloConfig {
    /// Checks this policy for a gate with `config`: [`validate`](Self::validate), then
    /// `evaluation_interval_ms` against `config`'s window. The window gets a reading only at
    /// an evaluation, and starts at the latest reading at least one window old, so the
    /// interval may be at most a tenth of `rollback_window_seconds` (one of the window's
    /// slots): then the window's start is exact to one slot. A gate refuses a pair beyond it
    /// where this process sets either: [`PromotionGateManager::new`](crate::PromotionGateManager::new),
    /// [`swap_config`](crate::PromotionGateManager::swap_config) when it changes the window,
    /// [`swap_slo`](crate::PromotionGateManager::swap_slo) when it changes the interval. A
    /// window followed from a state store is taken as it is, and a swap that leaves its half
    /// of the pair as it is (the config or the policy in force re-sent with one change) is not
    /// refused for it.
    ///
    /// # Errors
    /// [`ConfigError`] from [`validate`](Self::validate), or on `evaluation_interval_ms` for an
    /// interval longer than a tenth of the window.
    ///
    /// # Example
    /// ```
    /// use promotion_gates::{PromotionConfig, SloConfig};
    /// use std::time::Duration;
    ///
    /// let hourly = SloConfig { evaluation_interval: Duration::from_secs(3600), ..Default::default() };
    /// let config = PromotionConfig { rollback_window_seconds: 300, ..Default::default() };
    /// let e = hourly.validate_for(&config).unwrap_err();
    /// assert_eq!((e.field(), e.value()), ("evaluation_interval_ms", "3600000"));
    /// let ten_hours = PromotionConfig { rollback_window_seconds: 36_000, ..Default::default() };
    /// assert!(hourly.validate_for(&ten_hours).is_ok());
    /// ```
    pub fn validate_for(&self, config: &PromotionConfig) -> Result<(), ConfigError> {
        self.validate()?;
        self.check_window(config.rollback_window_seconds)
    }

    /// The longest `evaluation_interval` a gate with a window of `window_seconds` accepts
    /// (see [`validate_for`](Self::validate_for)): one slot of the window, a tenth of it.
    ///
    /// # Example
    /// ```
    /// use promotion_gates::SloConfig;
    /// use std::time::Duration;
    ///
    /// assert_eq!(SloConfig::longest_interval_for(300), Duration::from_secs(30));
    /// assert_eq!(SloConfig::longest_interval_for(5), Duration::from_millis(500));
    /// ```
    pub fn longest_interval_for(window_seconds: u64) -> Duration {
        Duration::from_secs(window_seconds) / crate::metrics::SLOTS
    }

    /// `evaluation_interval` against a window of `window_seconds`: at most one slot of it.
    pub(crate) fn check_window(&self, window_seconds: u64) -> Result<(), ConfigError> {
        let slot = Self::longest_interval_for(window_seconds);
        if self.evaluation_interval > slot {
            return Err(ConfigError::new(
                "evaluation_interval_ms",
                shown_millis(self.evaluation_interval),
                format!(
                    "at most a tenth of rollback_window_seconds = {window_seconds}, {} ms: the \
                     window gets a reading only at an evaluation, so a longer interval would \
                     start it up to an interval before its length (lengthen the window or \
                     shorten the interval)",
                    shown_millis(slot)
                ),
            ));
        }
        Ok(())
    }

    /// `significance` against `min_samples`: one failed request among the first
    /// `min_samples` must not be significant at the least limit the absolute rules act on,
    /// [`ERROR_RATE_FLOOR`](crate::judge::ERROR_RATE_FLOOR) (where `max_error_rate` 0 or an
    /// `slo_threshold` from 0.999 put it, in Staging, where they act alone). One miss among
    /// more requests, or at a higher limit, is less improbable.
    fn validate_single_miss(&self) -> Result<(), ConfigError> {
        let floor = crate::judge::ERROR_RATE_FLOOR;
        let one_miss = crate::judge::binomial_tail(1, self.min_samples, floor);
        if one_miss < self.significance {
            return Err(ConfigError::new(
                "significance",
                self.significance,
                format!(
                    "at most {one_miss:.4} with min_samples = {n}: one failed request among the \
                     first {n} has p = {one_miss:.4} at the least absolute limit, {floor} \
                     (ERROR_RATE_FLOOR: max_error_rate 0 or slo_threshold 0.999 and above), and \
                     would roll back below this level; lower significance or raise min_samples",
                    n = self.min_samples
                ),
            ));
        }
        Ok(())
    }

    /// The tolerances, the warm-up, the no-data time and the promotion level.
    fn validate_tolerances(&self) -> Result<(), ConfigError> {
        if !(self.error_rate_tolerance.is_finite()
            && self.error_rate_tolerance >= MIN_ERROR_RATE_TOLERANCE
            && self.error_rate_tolerance <= 1.0)
        {
            return Err(ConfigError::new(
                "error_rate_tolerance",
                self.error_rate_tolerance,
                format!(
                    "a fraction from {MIN_ERROR_RATE_TOLERANCE} (MIN_ERROR_RATE_TOLERANCE, 0.01 \
                     points) to 1.0, e.g. 0.0005 (at 0, a stable version without errors would \
                     make the tolerated limit 0: one canary error would be beyond it, and no \
                     canary could be shown not worse; just above 0 it is as good as 0: a clean \
                     canary beside a clean stable version needs about 3 / tolerance samples to \
                     be shown within it)"
                ),
            ));
        }
        if !self.latency_shift_limit.is_finite() || self.latency_shift_limit < 1.0 {
            return Err(ConfigError::new(
                "latency_shift_limit",
                self.latency_shift_limit,
                "a finite ratio of at least 1.0, e.g. 1.1",
            ));
        }
        let ceiling = latency_threshold_ceiling();
        if self.latency_tolerance >= ceiling {
            return Err(ConfigError::new(
                "latency_tolerance_ms",
                shown_millis(self.latency_tolerance),
                format!(
                    "a latency from 0 to below {} ms (the histogram counts every latency from \
                     there on, 60 s or more, in its last bucket, so p99_vs_stable could never \
                     fire)",
                    shown_millis(ceiling)
                ),
            ));
        }
        if self.warm_up > MAX_INTERVAL {
            return Err(ConfigError::new(
                "warm_up_ms",
                shown_millis(self.warm_up),
                format!("from 0 to {} ms", MAX_INTERVAL.as_millis()),
            ));
        }
        let [least, most] = NO_DATA_BOUNDS;
        if self.no_data_after < least || self.no_data_after > most {
            return Err(ConfigError::new(
                "no_data_ms",
                shown_millis(self.no_data_after),
                format!("from {} to {} ms", least.as_millis(), most.as_millis()),
            ));
        }
        if !level(self.promotion_significance) {
            return Err(ConfigError::new(
                "promotion_significance",
                self.promotion_significance,
                format!("a probability {LEVEL_RANGE}, e.g. 0.05"),
            ));
        }
        Ok(())
    }
}

/// A validated [`SloConfig`], held by a [`PromotionGateManager`](crate::PromotionGateManager)
/// to judge its canary.
///
/// # Example
/// ```
/// use promotion_gates::{SloAdmissionController, SloConfig};
///
/// let controller = SloAdmissionController::new(SloConfig::default())?;
/// assert_eq!(controller.config().min_samples, 100);
/// assert!(SloAdmissionController::new(SloConfig { min_samples: 0, ..Default::default() }).is_err());
/// # Ok::<(), promotion_gates::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SloAdmissionController {
    config: SloConfig,
    /// The standard normal's upper quantile at `config.significance`, for the judge: a
    /// bisection, so computed once here, never on the record path.
    z: f64,
}

impl SloAdmissionController {
    /// Validates `config` and holds it.
    ///
    /// # Errors
    /// [`ConfigError`] from [`SloConfig::validate`].
    ///
    /// # Example
    /// ```
    /// let c = promotion_gates::SloAdmissionController::new(Default::default())?;
    /// # Ok::<(), promotion_gates::ConfigError>(())
    /// ```
    pub fn new(config: SloConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let z = crate::judge::Policy::z_of(&config);
        Ok(Self { config, z })
    }

    /// The policy this controller judges with.
    ///
    /// # Example
    /// ```
    /// let c = promotion_gates::SloAdmissionController::new(Default::default())?;
    /// assert_eq!(c.config().max_error_rate, 0.05);
    /// # Ok::<(), promotion_gates::ConfigError>(())
    /// ```
    pub fn config(&self) -> &SloConfig {
        &self.config
    }

    /// The judge's normal quantile at `significance` (see `judge::Policy::z`).
    pub(crate) fn z(&self) -> f64 {
        self.z
    }
}

mod millis;
mod millis_opt;
pub(crate) use millis::duration_of_millis;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert!(SloConfig::default().validate().is_ok());
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (
                SloConfig {
                    latency_target: Duration::ZERO,
                    ..Default::default()
                },
                "latency_target_ms",
            ),
            (
                SloConfig {
                    max_error_rate: f64::NAN,
                    ..Default::default()
                },
                "max_error_rate",
            ),
            (
                SloConfig {
                    p99_ratio_limit: 0.5,
                    ..Default::default()
                },
                "p99_ratio_limit",
            ),
            (
                SloConfig {
                    p99_budget: Some(Duration::ZERO),
                    ..Default::default()
                },
                "p99_budget_ms",
            ),
            (
                SloConfig {
                    min_samples: 0,
                    ..Default::default()
                },
                "min_samples",
            ),
            (
                SloConfig {
                    min_samples: 1,
                    ..Default::default()
                },
                "min_samples",
            ),
            (
                SloConfig {
                    error_rate_tolerance: -0.1,
                    ..Default::default()
                },
                "error_rate_tolerance",
            ),
            (
                SloConfig {
                    latency_shift_limit: 0.9,
                    ..Default::default()
                },
                "latency_shift_limit",
            ),
            (
                SloConfig {
                    latency_tolerance: Duration::from_secs(61),
                    ..Default::default()
                },
                "latency_tolerance_ms",
            ),
            (
                SloConfig {
                    warm_up: Duration::from_secs(3601),
                    ..Default::default()
                },
                "warm_up_ms",
            ),
            (
                SloConfig {
                    no_data_after: Duration::ZERO,
                    ..Default::default()
                },
                "no_data_ms",
            ),
            (
                SloConfig {
                    promotion_significance: 0.5,
                    ..Default::default()
                },
                "promotion_significance",
            ),
            (
                SloConfig {
                    significance: 0.0,
                    ..Default::default()
                },
                "significance",
            ),
            (
                SloConfig {
                    overwhelming_significance: 0.01,
                    ..Default::default()
                },
                "overwhelming_significance",
            ),
            (
                // At most `significance`, but above the 1 % one failed request reaches.
                SloConfig {
                    significance: 0.05,
                    overwhelming_significance: 0.02,
                    ..Default::default()
                },
                "overwhelming_significance",
            ),
            (
                SloConfig {
                    evaluation_interval: Duration::ZERO,
                    ..Default::default()
                },
                "evaluation_interval_ms",
            ),
            (
                SloConfig {
                    evaluation_interval: Duration::from_micros(999),
                    ..Default::default()
                },
                "evaluation_interval_ms",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
        }
    }

    #[test]
    fn a_tolerance_of_zero_is_refused_with_the_reason() {
        // At 0, a stable version without errors made every tolerated limit 0: one canary
        // error in 100 beside none in 10 000 rolled back (`errors_over_stage`).
        let e = SloConfig {
            error_rate_tolerance: 0.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!((e.field(), e.value()), ("error_rate_tolerance", "0"), "{e}");
        assert!(e.to_string().contains("one canary error"), "{e}");
    }

    #[test]
    fn a_subnormal_significance_level_is_refused_naming_it() {
        // Each read as a level above 0, yet ln(1/α) was infinite at it: no rule could fire,
        // and every upper bound was 1.
        type Set = fn(&mut SloConfig, f64);
        let fields: [(Set, &str, f64); 3] = [
            (|s, x| s.significance = x, "significance", 1e-309),
            (
                |s, x| s.overwhelming_significance = x,
                "overwhelming_significance",
                1e-310,
            ),
            (
                |s, x| s.promotion_significance = x,
                "promotion_significance",
                1e-309,
            ),
        ];
        for (set, field, value) in fields {
            let mut slo = SloConfig::default();
            set(&mut slo, value);
            let e = slo.validate().unwrap_err();
            assert_eq!(
                (e.field(), e.value()),
                (field, format!("{value:?}").as_str())
            );
            assert!(e.to_string().contains("2.2250738585072014e-308"), "{e}");
            // The least normal double is accepted.
            set(&mut slo, f64::MIN_POSITIVE);
            if field == "significance" {
                slo.overwhelming_significance = f64::MIN_POSITIVE;
            }
            assert!(slo.validate().is_ok(), "{field}");
        }
        assert_eq!(format!("{MIN_LEVEL:e}"), "2.2250738585072014e-308");
    }

    #[test]
    fn the_least_level_is_the_least_normal_double_not_its_rounding() {
        // The docs gave the bound as 2.2e-308, which is below it and refused.
        let at = |level: f64| SloConfig {
            significance: level,
            overwhelming_significance: level,
            promotion_significance: level,
            ..Default::default()
        };
        assert!(at(f64::MIN_POSITIVE).validate().is_ok());
        let e = at(2.2e-308).validate().unwrap_err();
        assert_eq!((e.field(), e.value()), ("significance", "2.2e-308"), "{e}");
        assert!(
            e.to_string().contains("invalid significance = 2.2e-308"),
            "{e}"
        );
    }

    #[test]
    fn min_samples_beyond_the_most_a_gate_could_need_is_refused() {
        // u64::MAX was accepted: no ordinary rule could fire, no promotion be made.
        for n in [MAX_MIN_SAMPLES + 1, u64::MAX] {
            let e = SloConfig {
                min_samples: n,
                ..Default::default()
            }
            .validate()
            .unwrap_err();
            assert_eq!(
                (e.field(), e.value()),
                ("min_samples", n.to_string().as_str())
            );
            assert!(e.to_string().contains("to 10000000"), "{e}");
        }
        let most = SloConfig {
            min_samples: MAX_MIN_SAMPLES,
            ..Default::default()
        };
        assert!(most.validate().is_ok());
    }

    #[test]
    fn a_tolerance_below_the_meaningful_floor_is_refused() {
        // With the ratio at 1.0, 1e-12 took away the window's margin as 0 would, and a
        // promotion needed 3 × 10^12 clean canary samples beside a clean stable version.
        for tolerance in [1e-12, 5e-324, MIN_ERROR_RATE_TOLERANCE * 0.999] {
            let e = SloConfig {
                error_rate_ratio_limit: 1.0,
                error_rate_tolerance: tolerance,
                ..Default::default()
            }
            .validate()
            .unwrap_err();
            assert_eq!(e.field(), "error_rate_tolerance", "{e}");
            assert_eq!(e.value().parse::<f64>(), Ok(tolerance), "{e}");
            assert!(e.to_string().contains("from 0.0001"), "{e}");
        }
        let least = SloConfig {
            error_rate_ratio_limit: 1.0,
            error_rate_tolerance: MIN_ERROR_RATE_TOLERANCE,
            ..Default::default()
        };
        assert!(least.validate().is_ok());
        // About 3 / tolerance clean samples show a clean canary within it, as documented.
        let alpha = SloConfig::default().promotion_significance;
        let needed = |tolerance: f64| (-alpha.ln() / tolerance).ceil() as u64;
        let n = needed(MIN_ERROR_RATE_TOLERANCE);
        assert!((29_000..31_000).contains(&n), "{n}");
        // The upper bound of a rate from n clean trials (stats::clean_upper): 1 − α^(1/n).
        let clean_upper = 1.0 - alpha.powf(1.0 / n as f64);
        assert!(clean_upper <= MIN_ERROR_RATE_TOLERANCE, "{clean_upper}");
    }

    #[test]
    fn an_interval_longer_than_a_slot_of_the_window_is_refused() {
        // With a 1 h interval and a 300 s window the window's start was an hour-old reading.
        let at = |ms| SloConfig {
            evaluation_interval: Duration::from_millis(ms),
            ..Default::default()
        };
        let window = |seconds| PromotionConfig {
            rollback_window_seconds: seconds,
            ..Default::default()
        };
        let e = at(3_600_000).validate_for(&window(300)).unwrap_err();
        assert_eq!(
            (e.field(), e.value()),
            ("evaluation_interval_ms", "3600000")
        );
        assert!(
            e.to_string()
                .contains("at most a tenth of rollback_window_seconds = 300, 30000 ms"),
            "{e}"
        );
        // One slot is accepted, a millisecond more refused; the defaults pass.
        assert!(at(30_000).validate_for(&window(300)).is_ok());
        assert!(at(30_001).validate_for(&window(300)).is_err());
        assert!(at(3_600_000).validate_for(&window(36_000)).is_ok());
        assert!(at(100).validate_for(&window(1)).is_ok());
        assert!(at(101).validate_for(&window(1)).is_err());
        let defaults = SloConfig::default().validate_for(&PromotionConfig::default());
        assert!(defaults.is_ok());
        // validate_for validates the policy itself first.
        let bad = SloConfig {
            max_error_rate: 2.0,
            ..Default::default()
        };
        assert_eq!(
            bad.validate_for(&window(300)).unwrap_err().field(),
            "max_error_rate"
        );
    }

    #[test]
    fn a_level_at_which_one_failure_among_min_samples_rolls_back_is_refused() {
        use crate::judge::{ERROR_RATE_FLOOR, binomial_tail};
        // 0.1 % (slo_threshold 0.999, max_error_rate 0), 10 samples, α = 0.05: one miss in
        // the first 10 requests gave p = 0.026 and rolled back in Staging.
        let slo = SloConfig {
            significance: 0.05,
            min_samples: 10,
            ..Default::default()
        };
        let e = slo.validate().unwrap_err();
        assert_eq!((e.field(), e.value()), ("significance", "0.05"), "{e}");
        assert!(e.to_string().contains("min_samples = 10"), "{e}");
        assert!(e.to_string().contains("p = 0.0256"), "{e}");
        // The documented most at 5, 20 and 100 samples is accepted, a little more refused.
        for (n, most) in [(5, 0.0122), (20, 0.052), (100, 0.245)] {
            let bound = binomial_tail(1, n, ERROR_RATE_FLOOR);
            assert!((bound - most).abs() < 0.0005, "{n}: {bound}");
            let at = |significance| SloConfig {
                significance,
                min_samples: n,
                ..Default::default()
            };
            assert!(at(bound).validate().is_ok(), "{n}");
            assert_eq!(
                at(bound * 1.01).validate().unwrap_err().field(),
                "significance"
            );
        }
    }

    /// The largest value of a latency setting that validation accepts, to the nanosecond:
    /// `setting` makes a config of a value, between `accepted` and `refused`.
    fn largest_accepted(
        setting: impl Fn(Duration) -> SloConfig,
        [mut accepted, mut refused]: [Duration; 2],
    ) -> Duration {
        assert!(setting(accepted).validate().is_ok());
        assert!(setting(refused).validate().is_err());
        while refused - accepted > Duration::from_nanos(1) {
            let mid = accepted + (refused - accepted) / 2;
            if setting(mid).validate().is_ok() {
                accepted = mid;
            } else {
                refused = mid;
            }
        }
        accepted
    }

    #[test]
    fn every_accepted_latency_threshold_counts_the_longest_latencies_above_it() {
        // The rules count the requests slower than `p99_budget_ms` (`p99_budget`) and than
        // the stable p99 + `latency_tolerance_ms` (`p99_vs_stable`) by whole buckets above it,
        // and the last bucket holds every latency of 60 s or more: a setting within it, which
        // validation accepted up to 60 s, could never fire.
        let beyond = crate::metrics::layout::index_of(u64::MAX);
        let mut longest = vec![0; crate::metrics::layout::LEN];
        longest[beyond] = 1;
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap();
        let budget = largest_accepted(
            |budget| SloConfig {
                p99_budget: Some(budget),
                ..Default::default()
            },
            [Duration::from_millis(1), Duration::from_secs(61)],
        );
        let tolerance = largest_accepted(
            |tolerance| SloConfig {
                latency_tolerance: tolerance,
                ..Default::default()
            },
            [Duration::ZERO, Duration::from_secs(61)],
        );
        for (setting, largest) in [
            ("p99_budget_ms", budget),
            ("latency_tolerance_ms", tolerance),
        ] {
            assert_eq!(
                crate::metrics::count_above(&longest, micros(largest)),
                1,
                "{setting} {largest:?}: a latency beyond 60 s is not counted above it"
            );
        }
    }

    #[test]
    fn a_latency_threshold_in_the_last_bucket_is_refused_with_the_most_it_may_be() {
        for (config, field) in [
            (
                SloConfig {
                    p99_budget: Some(MAX_TRACKED_LATENCY),
                    ..Default::default()
                },
                "p99_budget_ms",
            ),
            (
                SloConfig {
                    latency_tolerance: MAX_TRACKED_LATENCY,
                    ..Default::default()
                },
                "latency_tolerance_ms",
            ),
        ] {
            let err = config.validate().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
            assert_eq!(err.value(), "60000", "{err}");
            assert!(err.to_string().contains("below 59768.832 ms"), "{err}");
        }
        // The target is compared with each latency as recorded, not by buckets: 60 s is valid.
        let target = SloConfig {
            latency_target: MAX_TRACKED_LATENCY,
            ..Default::default()
        };
        assert!(target.validate().is_ok());
    }

    #[test]
    fn a_refused_duration_is_shown_exactly_however_long() {
        // Shown through an f64, 2^53 + 1 ms was 9007199254740994 ms, and Duration::MAX
        // 1.8446744073709552e22 ms.
        let ms = (1u64 << 53) + 1;
        let long = Duration::from_millis(ms);
        type Set = fn(&mut SloConfig, Duration);
        let fields: [(Set, &str); 6] = [
            (|s, d| s.latency_target = d, "latency_target_ms"),
            (|s, d| s.p99_budget = Some(d), "p99_budget_ms"),
            (|s, d| s.evaluation_interval = d, "evaluation_interval_ms"),
            (|s, d| s.latency_tolerance = d, "latency_tolerance_ms"),
            (|s, d| s.warm_up = d, "warm_up_ms"),
            (|s, d| s.no_data_after = d, "no_data_ms"),
        ];
        for (set, field) in fields {
            let mut slo = SloConfig::default();
            set(&mut slo, long);
            let e = slo.validate().unwrap_err();
            assert_eq!((e.field(), e.value()), (field, ms.to_string().as_str()));
        }
        let e = SloConfig {
            warm_up: Duration::MAX,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.value(), "18446744073709551615999.999999");
        // A fraction of a millisecond, to the nanosecond.
        let e = SloConfig {
            latency_tolerance: Duration::new(59, 768_832_001),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.value(), "59768.832001");
    }

    #[test]
    fn json_writes_each_duration_as_its_exact_milliseconds() {
        // `as_secs_f64() * 1e3` rounded twice: 1 ns was written 0.0000010000000000000002.
        for nanos in [1, 7, 999_999, 1_000_001, 123_456_789, 3_599_999_999_999] {
            let d = Duration::from_nanos(nanos);
            let slo = SloConfig {
                warm_up: d,
                p99_budget: Some(d),
                ..Default::default()
            };
            let json = serde_json::to_value(&slo).unwrap();
            let exact: f64 = shown_millis(d).parse().unwrap();
            for field in ["warm_up_ms", "p99_budget_ms"] {
                assert_eq!(json[field].as_f64(), Some(exact), "{field}: {nanos} ns");
            }
            let back: SloConfig = serde_json::from_value(json).unwrap();
            assert_eq!((back.warm_up, back.p99_budget), (d, Some(d)));
        }
    }

    #[test]
    fn json_uses_milliseconds() {
        let slo = SloConfig {
            p99_budget: Some(Duration::from_micros(1500)),
            ..Default::default()
        };
        let json = serde_json::to_string(&slo).unwrap();
        assert!(json.contains(r#""p99_budget_ms":1.5"#), "{json}");
        let back: SloConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, slo);
        assert!(serde_json::from_str::<SloConfig>(r#"{"latency_target_ms": -1}"#).is_err());
    }
}
