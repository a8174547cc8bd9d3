//! Error types, one per concern, gathered under [`Error`].
//!
//! Every message names the field or operation and the value that was refused, so that the
//! person reading a log line knows what to change. No error leaves the engine half-changed: a
//! call that returns an error has not published anything.

use thiserror::Error as ThisError;

/// A configuration value was refused by validation.
///
/// Returned by [`PromotionConfig::validate`](crate::PromotionConfig::validate),
/// [`SloConfig::validate`](crate::SloConfig::validate) and every call that takes a config.
///
/// # Example
/// ```
/// use promotion_gates::{Environment, PromotionConfig};
///
/// let config = PromotionConfig {
///     environment: Environment::Canary { traffic_percent: 120.0 },
///     ..Default::default()
/// };
/// let err = config.validate().unwrap_err();
/// assert_eq!(err.field(), "environment.canary.traffic_percent");
/// assert!(err.to_string().contains("120"));
/// ```
#[derive(Debug, Clone, PartialEq, ThisError)]
#[error("invalid {field} = {value}: {expected}")]
pub struct ConfigError {
    field: String,
    value: String,
    expected: String,
}

impl ConfigError {
    /// Builds an error for `field`, which held `value`, with what a valid value looks like. A
    /// value that may be huge (a name, a text) is passed through [`quoted`] or [`shortened`]
    /// first; an `f64` whose decimal form is long (`1e300` has 301 digits) is written in
    /// scientific notation (see [`Shown`]).
    pub(crate) fn new(
        field: impl Into<String>,
        value: impl Shown,
        expected: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            value: value.shown(),
            expected: expected.into(),
        }
    }

    /// The dotted path of the refused field, e.g. `environment.canary.traffic_percent`.
    ///
    /// # Example
    /// ```
    /// let config = promotion_gates::PromotionConfig { slo_threshold: 2.0, ..Default::default() };
    /// assert_eq!(config.validate().unwrap_err().field(), "slo_threshold");
    /// ```
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What a valid value looks like, as written in the message.
    ///
    /// # Example
    /// ```
    /// let config = promotion_gates::PromotionConfig { slo_threshold: 2.0, ..Default::default() };
    /// assert!(config.validate().unwrap_err().expected().contains("0.0 to 1.0"));
    /// ```
    pub fn expected(&self) -> &str {
        &self.expected
    }

    /// The refused value, as written in the message.
    ///
    /// # Example
    /// ```
    /// let config = promotion_gates::PromotionConfig { slo_threshold: 2.0, ..Default::default() };
    /// assert_eq!(config.validate().unwrap_err().value(), "2");
    /// ```
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The same refusal, showing the value as a document wrote it, `written` (the number
    /// written at [`field`](Self::field), cut like every long value a message shows),
    /// when `written` [`reads_as`](crate::reads_as) the value refused: validation sees the
    /// value as read, and an integer given to an `f64` field (`18446744073709551615`) or a
    /// duration in milliseconds was shown as converted (`18446744073709552000`). Otherwise
    /// (the value did not come from the document) the refusal is kept as it is.
    ///
    /// # Example
    /// ```
    /// use promotion_gates::{PromotionConfig, written_json_number};
    ///
    /// let json = r#"{"slo_threshold": 18446744073709551615}"#;
    /// let e = PromotionConfig::parse_json(json)?.validate().unwrap_err();
    /// assert_eq!(e.value(), "18446744073709552000");
    /// let written = written_json_number(json, e.field()).unwrap();
    /// assert_eq!(e.clone().as_written(written).value(), "18446744073709551615");
    /// assert_eq!(e.clone().as_written("0.5").value(), "18446744073709552000");
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn as_written(self, written: &str) -> Self {
        if crate::reads_as(written, &self.value) {
            Self {
                value: shortened(written.trim()),
                ..self
            }
        } else {
            self
        }
    }

    /// [`as_written`](Self::as_written) with the number written at the refused field in the
    /// JSON document `json` ([`written_json_number`](crate::written_json_number)), if it
    /// holds one there: for a refusal of a config read from `json` without validation
    /// ([`PromotionConfig::parse_json`](crate::PromotionConfig::parse_json)) and validated
    /// later. [`PromotionConfig::from_json`](crate::PromotionConfig::from_json) and
    /// [`SloConfig::from_json`](crate::SloConfig::from_json) do this themselves.
    ///
    /// # Example
    /// ```
    /// use promotion_gates::SloConfig;
    ///
    /// let json = r#"{"latency_target_ms": 6e4, "max_error_rate": 1.50}"#;
    /// let e = serde_json::from_str::<SloConfig>(json).unwrap().validate().unwrap_err();
    /// assert_eq!(e.to_string(), "invalid max_error_rate = 1.5: a fraction from 0.0 to 1.0, e.g. 0.05");
    /// assert_eq!(e.as_written_in_json(json).value(), "1.50");
    /// ```
    pub fn as_written_in_json(self, json: &str) -> Self {
        match crate::written_json_number(json, &self.field) {
            Some(written) => self.as_written(written),
            None => self,
        }
    }
}

/// A promotion was refused; the gate stays where it was.
///
/// # Example
/// ```
/// use promotion_gates::{Environment, PromotionConfig, PromotionGateManager, SloAdmissionController, SloConfig};
///
/// let slo = SloAdmissionController::new(SloConfig::default())?;
/// let gate = PromotionGateManager::new(PromotionConfig::default(), slo)?;
/// // The default gate is in Production: Staging is only reachable from a canary.
/// let err = gate.promote(Environment::Staging).unwrap_err();
/// assert!(err.to_string().contains("Production -> Staging"));
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, ThisError)]
#[non_exhaustive]
pub enum PromotionError {
    /// The state machine has no edge from `from` to `to`.
    #[error("invalid promotion path {from} -> {to}: {hint}")]
    InvalidPath {
        /// The environment the gate is in, as it is displayed (`Canary{12.5}`, `Staging`).
        from: String,
        /// The environment that was asked for, as it is displayed.
        to: String,
        /// What the valid moves from `from` are.
        hint: &'static str,
    },
    /// The target is the environment the gate is already in, or a canary share that rounds to
    /// the same buckets as the current one (the same split).
    #[error("the gate is already in {0}; nothing to promote")]
    AlreadyThere(String),
    /// The gated move was refused because the new version is not compliant.
    #[error("SLO compliance below threshold: {evidence}")]
    SloNotMet {
        /// The verdict's evidence: samples, rates, p99s, the rule and its thresholds.
        evidence: String,
    },
    /// The gated move was refused because there is not enough data yet to judge.
    #[error("not enough data to judge the canary: {evidence}")]
    InsufficientData {
        /// How many samples there are and how many are needed.
        evidence: String,
    },
    /// [`promote_from`](crate::PromotionGateManager::promote_from) was refused: the gate is
    /// no longer in the release stage the caller read (a rollback, the judge's or another
    /// process's, or another write came first). Nothing changed.
    #[error("the gate left stage {expected}: it is now in {now}; nothing was promoted")]
    StageChanged {
        /// The stage the caller expected.
        expected: u64,
        /// The environment and stage the gate is in now.
        now: String,
    },
}

/// A feature flag operation was refused.
///
/// # Example
/// ```
/// use promotion_gates::{PromotionConfig, PromotionGateManager, SloAdmissionController, SloConfig};
///
/// let gate = PromotionGateManager::new(
///     PromotionConfig::default(),
///     SloAdmissionController::new(SloConfig::default())?,
/// )?;
/// let err = gate.enable_feature("has space").unwrap_err();
/// assert!(err.to_string().contains("has space"));
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, ThisError)]
#[non_exhaustive]
pub enum FlagError {
    /// The flag name is empty, too long, or holds whitespace, control, format or invisible characters.
    #[error("invalid feature flag name {}: {why}", quoted_part(name, *len))]
    InvalidName {
        /// The refused name, or as much of it as the message shows: a name longer than
        /// [`MAX_SHOWN_VALUE_BYTES`] is cut there (before a character, not inside), and the
        /// message shows it quoted, then `...(N bytes)` with its whole length `len`, as every
        /// long value a message shows.
        name: String,
        /// The whole refused name's length in bytes: more than `name.len()` when it was cut.
        len: usize,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The flag to disable is not enabled.
    #[error("feature flag {0:?} is not enabled, so it cannot be disabled")]
    NotEnabled(String),
    /// A flag set number this gate does not hold: its set was replaced more than
    /// [`FLAG_SET_GRACE_WRITES`](crate::FLAG_SET_GRACE_WRITES) writes ago, or the number was
    /// never given out by this gate (usually, a decision of another gate: gates number their
    /// sets from random starts, but a host should key what it caches by gate too). A gate never
    /// gives a number to a different set.
    #[error(
        "flag set {0} is not held by this gate: it was replaced more than {grace} writes ago, or this gate never gave it out",
        grace = crate::FLAG_SET_GRACE_WRITES
    )]
    UnknownSet(u32),
    /// The write needs a new flag set number and the gate has none left (after about 4.2
    /// billion distinct sets): numbers are never reused, so the write is refused.
    #[error(
        "this gate has used up its flag set numbers (about 4.2 billion distinct sets); create a new gate"
    )]
    SetNumbersExhausted,
    /// The write enables a flag name this gate has never held, and it has held
    /// [`MAX_FLAG_NAMES`](crate::MAX_FLAG_NAMES) distinct names: each is kept for the gate's
    /// life, so the write is refused (names it holds can still be enabled).
    #[error(
        "this gate has held {max} distinct flag names, the most it keeps (MAX_FLAG_NAMES); enable one it held, or create a new gate",
        max = crate::MAX_FLAG_NAMES
    )]
    NamesExhausted,
}

/// A rollback was refused.
///
/// # Example
/// ```
/// use promotion_gates::{PromotionConfig, PromotionGateManager, SloAdmissionController, SloConfig};
///
/// let gate = PromotionGateManager::new(
///     PromotionConfig::default(),
///     SloAdmissionController::new(SloConfig::default())?,
/// )?;
/// assert!(gate.rollback("drill").is_err()); // Production has nothing to roll back
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, ThisError)]
#[non_exhaustive]
pub enum RollbackError {
    /// The gate is in Production: the stable version is all there is.
    #[error("nothing to roll back: the gate is in production and serves only the stable version")]
    NothingToRollBack,
    /// The reason is blank: empty, or only whitespace, control, format and invisible
    /// characters (as names refuse them: `" "`, `"\u{200B}"`, `"\u{3164}"`); a rollback
    /// must say why.
    #[error(
        "invalid reason = {shown}: a rollback must say why, in at least one visible character (not only whitespace, control, format or invisible characters)"
    )]
    BlankReason {
        /// The refused reason, quoted and escaped as messages show a value.
        shown: String,
    },
    /// The reason is longer than [`MAX_REASON_BYTES`](crate::MAX_REASON_BYTES).
    #[error("invalid reason = {shown}: at most {max} bytes (MAX_REASON_BYTES)")]
    ReasonTooLong {
        /// The refused reason's first [`MAX_SHOWN_VALUE_BYTES`] bytes, quoted and escaped,
        /// and its length: `"rrrr"...(5000 bytes)`.
        shown: String,
        /// The refused reason's length in bytes.
        bytes: usize,
        /// The limit.
        max: usize,
    },
}

/// A config swap was refused.
///
/// # Example
/// ```
/// use promotion_gates::{
///     Error, PromotionConfig, PromotionGateManager, SloAdmissionController, SloConfig,
///     SwapError,
/// };
///
/// let gate = PromotionGateManager::new(
///     PromotionConfig::default(),
///     SloAdmissionController::new(SloConfig::default())?,
/// )?;
/// gate.enable_feature("dark_mode")?;
/// let (seen, read) = (gate.change_count(), gate.config());
/// gate.disable_feature("dark_mode")?; // a kill switch, meanwhile
/// let err = gate.swap_config_from(seen, read).unwrap_err();
/// assert_eq!(err, Error::Swap(SwapError::GateChanged { seen, now: seen + 1 }));
/// assert!(err.to_string().contains("read its config again"));
/// assert!(!gate.is_feature_enabled("dark_mode"));
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, ThisError)]
#[non_exhaustive]
pub enum SwapError {
    /// [`swap_config_from`](crate::PromotionGateManager::swap_config_from) was refused: the
    /// gate changed after the caller read its change count (and then its config): a rollback,
    /// a promotion, a flag turned on or off (a kill switch among them), another config or SLO
    /// swap, made by this process or read from the state store. Nothing changed.
    #[error(
        "the gate changed since change {seen} (now {now}: a rollback, promotion, flag or config change came first); the config was not swapped: read its config again"
    )]
    GateChanged {
        /// The change count the caller read before its config.
        seen: u64,
        /// The gate's change count when the swap was decided.
        now: u64,
    },
}

/// Any error of this crate: one variant per concern.
///
/// # Example
/// ```
/// use promotion_gates::{Error, PromotionConfig};
///
/// let bad = PromotionConfig { rollback_window_seconds: 0, ..Default::default() };
/// let err: Error = bad.validate().unwrap_err().into();
/// assert!(matches!(err, Error::Config(_)));
/// ```
#[derive(Debug, Clone, PartialEq, ThisError)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A promotion was refused.
    #[error(transparent)]
    Promotion(#[from] PromotionError),
    /// A feature flag operation was refused.
    #[error(transparent)]
    Flag(#[from] FlagError),
    /// A rollback was refused.
    #[error(transparent)]
    Rollback(#[from] RollbackError),
    /// A config swap was refused.
    #[error(transparent)]
    Swap(#[from] SwapError),
    /// A JSON document could not be read as a config.
    #[error("invalid JSON config: {0}")]
    Json(String),
    /// The state store could not be opened, read or written (see [`StoreError`](crate::StoreError)).
    #[error(transparent)]
    Store(#[from] crate::StoreError),
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::Json(shortened_refusal(&err.to_string()))
    }
}

/// Longest value an error message shows, in bytes; a longer one is cut and its length given.
pub const MAX_SHOWN_VALUE_BYTES: usize = 160;

/// What an error message shows of `value`: at most [`MAX_SHOWN_VALUE_BYTES`], cut on a
/// character boundary.
pub(crate) fn shown_part(value: &str) -> &str {
    shown_part_within(value, MAX_SHOWN_VALUE_BYTES)
}

/// At most `max` bytes of `value`, cut on a character boundary.
fn shown_part_within(value: &str, max: usize) -> &str {
    let mut cut = value.len().min(max);
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    &value[..cut]
}

/// `value`, or its [`shown_part`] followed by `...(N bytes)`, so that a huge input never makes
/// a huge message. Copies only what it shows.
pub(crate) fn shortened(value: &str) -> String {
    let shown = shown_part(value);
    if shown.len() == value.len() {
        value.to_string()
    } else {
        format!("{shown}...({} bytes)", value.len())
    }
}

/// The most of serde's account of what a field takes (its words after `, expected `) a
/// message keeps: the longest is a config's list of its field names, about 400 bytes.
const MAX_EXPECTED_BYTES: usize = 1024;

/// serde's message of a refused input, [`shortened`] where it shows the input (a refused value
/// or key may be megabytes long): its words up to the last `, expected `, while what follows,
/// serde's account of what the field takes (this library's names, never the input's), is kept
/// whole (up to [`MAX_EXPECTED_BYTES`]), so that a misspelled field's message still lists the
/// spelling it meant. Cutting the whole message had cut that list: `unknown field
/// `promotion_evidense`, expected one of ..., `p99...(404 bytes)`.
pub(crate) fn shortened_refusal(message: &str) -> String {
    let Some(at) = message.rfind(", expected ") else {
        return shortened(message);
    };
    let (refused, expected) = message.split_at(at);
    let kept = shown_part_within(expected, MAX_EXPECTED_BYTES);
    if kept.len() == expected.len() {
        format!("{}{expected}", shortened(refused))
    } else {
        format!("{}{kept}...({} bytes)", shortened(refused), expected.len())
    }
}

/// Longest decimal form of a number an error message writes as it is; a longer one (a tiny
/// or huge float) is written in scientific notation.
const MAX_DECIMAL_NUMBER_BYTES: usize = 24;

/// A refused value as a [`ConfigError`] shows it: a text as it is, an integer in decimal, an
/// `f64` as [`shown_number`] writes it (`6.793767e-317`, not 317 digits).
pub(crate) trait Shown {
    /// The value's text in the error.
    fn shown(self) -> String;
}

impl Shown for f64 {
    fn shown(self) -> String {
        shown_number(self)
    }
}

/// A number as an error message writes it: in decimal, unless that is longer than 24 bytes (a
/// tiny or huge float), then in scientific notation, so that `1e300` is not written as 301
/// digits. Either form reads back as the same `f64`, and neither is longer than 24 bytes, well
/// within [`MAX_SHOWN_VALUE_BYTES`].
///
/// Every number the library's errors show is written this way; a program that writes its own
/// messages beside them (the CLI's scenario checks) calls it to write its numbers alike.
///
/// # Example
/// ```
/// use promotion_gates::shown_number;
///
/// assert_eq!(shown_number(2.5), "2.5");
/// assert_eq!(shown_number(0.000001), "0.000001");
/// assert_eq!(shown_number(-1e300), "-1e300");
/// assert_eq!(shown_number(6.793767e-317), "6.793767e-317");
/// ```
pub fn shown_number(value: f64) -> String {
    let decimal = value.to_string();
    if decimal.len() <= MAX_DECIMAL_NUMBER_BYTES {
        decimal
    } else {
        format!("{value:e}")
    }
}

/// A duration in milliseconds as an error message writes it: exactly, from its whole
/// nanoseconds (at most six decimals, none when it is whole milliseconds), whatever its
/// length: through an `f64` a duration of `2^53 + 1` ms read `9007199254740992`, and one
/// nanosecond `0.0000010000000000000002`. At most 30 bytes (`Duration::MAX`).
///
/// Every duration the library's errors show in milliseconds (the `SloConfig`'s `..._ms`
/// fields) is written this way; a program that writes its own messages beside them calls it
/// to write its durations alike.
///
/// # Example
/// ```
/// use promotion_gates::shown_millis;
/// use std::time::Duration;
///
/// assert_eq!(shown_millis(Duration::from_millis((1 << 53) + 1)), "9007199254740993");
/// assert_eq!(shown_millis(Duration::from_micros(1500)), "1.5");
/// assert_eq!(shown_millis(Duration::from_nanos(1)), "0.000001");
/// assert_eq!(shown_millis(Duration::MAX), "18446744073709551615999.999999");
/// ```
pub fn shown_millis(duration: std::time::Duration) -> String {
    let nanos = duration.as_nanos();
    let (whole, fraction) = (nanos / 1_000_000, nanos % 1_000_000);
    if fraction == 0 {
        whole.to_string()
    } else {
        let decimals = format!("{fraction:06}");
        format!("{whole}.{}", decimals.trim_end_matches('0'))
    }
}

/// A value of any bytes (a request id, a C caller's text that is not UTF-8) as the library's
/// messages and log lines show it: quoted, control characters and other characters Rust's
/// `{:?}` escapes written as escapes, and the characters the library calls invisible (U+2800,
/// the Hangul fillers, which names refuse) as `\u{N}` too, each byte that is not UTF-8 as
/// `\xNN`, and at most
/// [`MAX_SHOWN_VALUE_BYTES`] of it, followed by `...(N bytes)` when cut. Written without
/// allocating.
///
/// # Example
/// ```
/// use promotion_gates::shown_bytes;
///
/// assert_eq!(shown_bytes(b"a\xff\n").to_string(), r#""a\xff\n""#);
/// assert!(shown_bytes(&[b'x'; 500]).to_string().ends_with("...(500 bytes)"));
/// ```
pub fn shown_bytes(bytes: &[u8]) -> impl std::fmt::Display + '_ {
    crate::telemetry::LoggedBytes(bytes)
}

impl Shown for String {
    fn shown(self) -> String {
        self
    }
}

impl Shown for &str {
    fn shown(self) -> String {
        self.to_owned()
    }
}

impl Shown for &String {
    fn shown(self) -> String {
        self.clone()
    }
}

impl Shown for u64 {
    fn shown(self) -> String {
        self.to_string()
    }
}

impl Shown for usize {
    fn shown(self) -> String {
        self.to_string()
    }
}

/// `value` quoted and escaped as `{value:?}` shows it (and its invisible characters as
/// escapes, see [`Quoted`]), shortened like [`shortened`].
pub(crate) fn quoted(value: &str) -> String {
    quoted_within(value, MAX_SHOWN_VALUE_BYTES)
}

/// `value` quoted as [`quoted`] shows it, but at most `max` bytes of it before
/// `...(N bytes)`: for a value shown in a message that must keep room for what follows it.
pub(crate) fn quoted_within(value: &str, max: usize) -> String {
    quoted_part(shown_part_within(value, max), value.len())
}

/// `shown`, the start of a value `len` bytes long (or all of it), as [`quoted`] shows it:
/// quoted, then `...(N bytes)` outside the quotes when it is not the whole value.
pub(crate) fn quoted_part(shown: &str, len: usize) -> String {
    let quoted = Quoted(shown);
    if shown.len() == len {
        quoted.to_string()
    } else {
        format!("{quoted}...({len} bytes)")
    }
}

/// A text as messages show it: in double quotes, escaped as Rust's `{:?}` escapes it, and
/// every character the library calls invisible ([`is_invisible`](crate::config::is_invisible):
/// the Hangul fillers, U+2800 BRAILLE PATTERN BLANK, which `{:?}` shows as they are) as
/// `\u{N}` too, so that a name refused for holding one shows it.
struct Quoted<'a>(&'a str);

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"")?;
        for c in self.0.chars() {
            write_escaped(f, c)?;
        }
        f.write_str("\"")
    }
}

/// `value` quoted and escaped as [`quoted`] shows it, but whole, written without allocating:
/// for a log line's field, which the library bounds before it logs it (a reason: at most
/// [`MAX_REASON_BYTES`](crate::MAX_REASON_BYTES)).
pub(crate) fn quoted_whole(value: &str) -> impl std::fmt::Display + '_ {
    Quoted(value)
}

/// Writes `c` as [`Quoted`] shows it inside its double quotes.
pub(crate) fn write_escaped(f: &mut std::fmt::Formatter<'_>, c: char) -> std::fmt::Result {
    match c {
        // `{:?}` of a text leaves `'` as it is inside double quotes.
        '\'' => f.write_str("'"),
        c if crate::config::is_invisible(c) => write!(f, "\\u{{{:x}}}", u32::from(c)),
        c => write!(f, "{}", c.escape_debug()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_floats_are_written_in_scientific_notation_and_text_stays_text() {
        let tiny = ConfigError::new("f", 6.793767e-317_f64, "x");
        assert_eq!(tiny.value(), "6.793767e-317");
        assert_eq!(ConfigError::new("f", 1e300_f64, "x").value(), "1e300");
        assert_eq!(ConfigError::new("f", 2.0_f64, "x").value(), "2");
        assert_eq!(ConfigError::new("f", 0.000001_f64, "x").value(), "0.000001");
        // A text that parses as a number is still text: shown as it was given.
        let digits = "1".repeat(40);
        assert_eq!(ConfigError::new("f", &digits, "x").value(), digits);
        assert_eq!(ConfigError::new("f", digits.as_str(), "x").value(), digits);
        let text = "not a number, but long enough to pass the limit";
        assert_eq!(ConfigError::new("f", text, "x").value(), text);
        assert_eq!(
            ConfigError::new("f", u64::MAX, "x").value(),
            u64::MAX.to_string()
        );
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary_with_their_length() {
        assert_eq!(shortened("short"), "short");
        let long = "é".repeat(1000);
        let shown = shortened(&long);
        assert!(
            shown.starts_with('é') && shown.ends_with("...(2000 bytes)"),
            "{shown}"
        );
        assert!(shown.len() < MAX_SHOWN_VALUE_BYTES + 20);
        assert_eq!(quoted("a b"), "\"a b\"");
        let q = quoted(&long);
        assert!(
            q.starts_with("\"é") && q.ends_with("\"...(2000 bytes)"),
            "{q}"
        );
    }

    #[test]
    fn a_refusal_is_cut_where_it_shows_the_input_and_keeps_what_was_expected() {
        let expected = ", expected one of `latency_target_ms`, `promotion_evidence`";
        let key = "k".repeat(100_000);
        let message = shortened_refusal(&format!("unknown field `{key}`{expected}"));
        assert!(
            message.starts_with("unknown field `kkk") && message.ends_with(expected),
            "{message}"
        );
        assert!(message.contains("...(100016 bytes)"), "{message}");
        assert!(message.len() < MAX_SHOWN_VALUE_BYTES + expected.len() + 20);
        // No account of what was expected: cut as a whole.
        assert_eq!(shortened_refusal(&key), shortened(&key));
        // An account longer than any this library writes is cut too.
        let endless = format!("invalid value, expected {}", "x".repeat(10_000));
        assert!(shortened_refusal(&endless).len() < MAX_EXPECTED_BYTES + 40);
    }
}
