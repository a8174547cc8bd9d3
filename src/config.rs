//! The release configuration: where the gate is ([`Environment`]) and how it behaves
//! ([`PromotionConfig`]), with validation that names the field and the value it refuses.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;

use crate::error::{ConfigError, FlagError, quoted, shortened_refusal, shown_part};

mod as_written;
mod environment_wire;
mod named_fields;
mod tiny_numbers;
mod unseen;
use crate::limits::{
    MAX_DOCUMENT_BYTES, MAX_NAME_BYTES, MAX_ROLLBACK_HISTORY, MAX_WINDOW_SECONDS,
    TRAFFIC_PERCENT_RESOLUTION,
};
pub use as_written::{reads_as, written_json_number};
pub use named_fields::NamedFields;
pub use tiny_numbers::{TINY_NUMBER_REFUSAL, is_tiny_number};
pub(crate) use unseen::is_unseen;
pub use unseen::{is_format_char, is_invisible};

/// Where a release stands.
///
/// Serialized in JSON as `{"canary": {"traffic_percent": 10.0}}`, `"staging"` or `"production"`.
///
/// # Example
/// ```
/// use promotion_gates::Environment;
///
/// let env = Environment::Canary { traffic_percent: 12.5 };
/// assert_eq!(env.name(), "canary");
/// assert_eq!(env.to_string(), "Canary{12.5}");
/// let json = serde_json::to_string(&env).unwrap();
/// assert_eq!(json, r#"{"canary":{"traffic_percent":12.5}}"#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    /// `traffic_percent` % of requests (by bucket) go to the new version, the rest to stable.
    Canary {
        /// Share of requests routed to the new version, `0.0..=100.0`, resolved to 0.00001 %.
        /// −0 (which validation takes, as it equals 0) is written as 0.
        #[serde(serialize_with = "unsigned_zero")]
        traffic_percent: f64,
    },
    /// All traffic goes to the new version with every flag on (internal validation).
    Staging,
    /// All traffic goes to the stable version; only graduated flags are on.
    Production,
}

/// Writes `value`, −0 as 0: a document never holds a share of −0.
fn unsigned_zero<S: serde::Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(value + 0.0)
}

/// The canary's share as every refusal names it: its path in a JSON or TOML document
/// (`{"environment": {"canary": {"traffic_percent": P}}}`), whether the value is out of range
/// or of the wrong type.
const TRAFFIC_PERCENT_FIELD: &str = "environment.canary.traffic_percent";

impl Environment {
    /// The environment with a share of −0 (which validation takes, as it equals 0) made 0: what
    /// the gate holds, so that its decisions, reads and documents never carry −0.
    pub(crate) fn unsigned(self) -> Self {
        match self {
            Environment::Canary { traffic_percent } => Environment::Canary {
                traffic_percent: traffic_percent + 0.0,
            },
            other => other,
        }
    }

    /// The environment's name in lower case: `canary`, `staging` or `production`.
    ///
    /// # Example
    /// ```
    /// assert_eq!(promotion_gates::Environment::Staging.name(), "staging");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Environment::Canary { .. } => "canary",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }

    /// The share of requests that go to the new version: the canary's percentage, 100 in
    /// Staging, 0 in Production.
    ///
    /// # Example
    /// ```
    /// use promotion_gates::Environment;
    /// assert_eq!(Environment::Canary { traffic_percent: 5.0 }.traffic_percent(), 5.0);
    /// assert_eq!(Environment::Staging.traffic_percent(), 100.0);
    /// assert_eq!(Environment::Production.traffic_percent(), 0.0);
    /// ```
    pub fn traffic_percent(&self) -> f64 {
        match *self {
            Environment::Canary { traffic_percent } => traffic_percent,
            Environment::Staging => 100.0,
            Environment::Production => 0.0,
        }
    }

    /// Checks the traffic percentage of a canary: finite, within `0..=100`, either 0 or
    /// large enough to route someone, and either 100 or small enough to leave someone to the
    /// stable version (the formula's resolution is
    /// [`TRAFFIC_PERCENT_RESOLUTION`](crate::TRAFFIC_PERCENT_RESOLUTION), 0.00001 %: a share
    /// that rounds to every bucket would route everybody while its reason says less than 100 %).
    ///
    /// # Errors
    /// [`ConfigError`] naming `environment.canary.traffic_percent` (the share's path in a JSON
    /// or TOML document, as a share of the wrong type is named) and the refused value.
    ///
    /// # Example
    /// ```
    /// use promotion_gates::Environment;
    /// assert!(Environment::Canary { traffic_percent: f64::NAN }.validate().is_err());
    /// assert!(Environment::Canary { traffic_percent: 0.01 }.validate().is_ok());
    /// assert!(Environment::Canary { traffic_percent: 0.0 }.validate().is_ok());
    /// let err = Environment::Canary { traffic_percent: 1e-9 }.validate().unwrap_err();
    /// assert!(err.to_string().contains("0.00001"));
    /// let err = Environment::Canary { traffic_percent: 99.9999951 }.validate().unwrap_err();
    /// assert!(err.to_string().contains("at least one bucket to the stable version"));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let Environment::Canary { traffic_percent } = *self else {
            return Ok(());
        };
        if !traffic_percent.is_finite() || !(0.0..=100.0).contains(&traffic_percent) {
            return Err(ConfigError::new(
                TRAFFIC_PERCENT_FIELD,
                traffic_percent,
                "a finite percentage from 0 to 100",
            ));
        }
        let threshold = crate::bucket::threshold_for_percent(traffic_percent);
        if traffic_percent < 100.0 && threshold == crate::bucket::BUCKETS {
            return Err(ConfigError::new(
                TRAFFIC_PERCENT_FIELD,
                traffic_percent,
                format!(
                    "100, or a percentage that leaves at least one bucket to the stable version: the routing resolution is {TRAFFIC_PERCENT_RESOLUTION} % (1 bucket in {}), so at least half of it below 100",
                    crate::bucket::BUCKETS
                ),
            ));
        }
        if traffic_percent > 0.0 && threshold == 0 {
            return Err(ConfigError::new(
                TRAFFIC_PERCENT_FIELD,
                traffic_percent,
                format!(
                    "0, or a percentage that routes at least one bucket: the routing resolution is {TRAFFIC_PERCENT_RESOLUTION} % (1 bucket in {}), so at least half of it",
                    crate::bucket::BUCKETS
                ),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Environment {
    /// `Canary{12.5}`, `Staging`, `Production`: the form used in rollback events. A share of
    /// −0 (which validation takes, as it equals 0) is shown as 0.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Environment::Canary { traffic_percent } => {
                write!(f, "Canary{{{}}}", traffic_percent + 0.0)
            }
            Environment::Staging => f.write_str("Staging"),
            Environment::Production => f.write_str("Production"),
        }
    }
}

/// `Environment::Canary` at `traffic_percent`: the unit tests' one shorthand.
#[cfg(test)]
pub(crate) fn canary(traffic_percent: f64) -> Environment {
    Environment::Canary { traffic_percent }
}

/// How a gate is set up: where the release stands, its flags and its rollback policy.
///
/// Fields beyond the specification's five have defaults, so `..Default::default()` works.
/// The JSON form (serde) uses the same field names and refuses unknown fields. Every field has
/// its default there too, so a document may leave any out: `{}` is a Production gate named
/// `default`, which routes no request to a canary, and gates left unnamed share the salt
/// `default` (so they pick the same users). Name `environment` and `gate` in every document.
///
/// # Example
/// ```
/// use promotion_gates::{Environment, PromotionConfig};
///
/// let config = PromotionConfig {
///     environment: Environment::Canary { traffic_percent: 10.0 },
///     feature_flags: vec!["new_api".to_string()],
///     gate: "checkout".to_string(),
///     ..Default::default()
/// };
/// config.validate()?;
/// let json = serde_json::to_string(&config).unwrap();
/// let back: PromotionConfig = serde_json::from_str(&json).unwrap();
/// assert_eq!(back, config);
/// # Ok::<(), promotion_gates::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PromotionConfig {
    /// Where the release stands.
    pub environment: Environment,
    /// The release's feature flags: on for the new version's requests, off for stable ones.
    pub feature_flags: Vec<String>,
    /// Roll back by itself when the canary breaks its SLO (default `true`).
    pub auto_rollback_enabled: bool,
    /// Share of requests that must meet the SLO, `0.0..=1.0` (default `0.95`).
    pub slo_threshold: f64,
    /// Length of the sliding window the verdict looks at, in seconds (default 300).
    pub rollback_window_seconds: u64,
    /// The gate's name (a service or route); the default salt, so that two gates pick
    /// different users. Default `"default"`.
    pub gate: String,
    /// The routing salt; `None` uses [`gate`](Self::gate). Changing it reshuffles users.
    pub salt: Option<String>,
    /// Flags that belong to the stable version: on for every request (set by promotion to
    /// Production, which graduates the release's flags).
    pub graduated_flags: Vec<String>,
    /// How many rollback events the history keeps, oldest dropped first (default 100).
    pub max_rollback_history: usize,
    /// Where the release state and history are kept and shared (see [`StoreConfig`](crate::StoreConfig));
    /// `None` (no `store` key) keeps them in this process only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<crate::store::StoreConfig>,
    /// Requests forced to the canary or the stable version, past their bucket (see
    /// [`Overrides`](crate::Overrides)); `None` (no `overrides` key) forces nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overrides: Option<crate::overrides::Overrides>,
}

impl Default for PromotionConfig {
    fn default() -> Self {
        Self {
            environment: Environment::Production,
            feature_flags: Vec::new(),
            auto_rollback_enabled: true,
            slo_threshold: 0.95,
            rollback_window_seconds: 300,
            gate: "default".to_string(),
            salt: None,
            graduated_flags: Vec::new(),
            max_rollback_history: 100,
            store: None,
            overrides: None,
        }
    }
}

impl PromotionConfig {
    /// Checks every field; the first bad one is reported with its name and value (a value
    /// longer than [`MAX_SHOWN_VALUE_BYTES`](crate::MAX_SHOWN_VALUE_BYTES) is cut, with its
    /// length). Takes `O(n log n)` for `n` flags.
    ///
    /// # Errors
    /// [`ConfigError`] for: a canary percentage outside `0..=100`, not finite, or non-zero but
    /// below the routing resolution; an `slo_threshold` outside `0..=1`; a zero or over-long
    /// window; an empty, over-long or duplicate flag name; an empty or over-long gate name or
    /// salt; a history bound of 0 or above 100 000 (see [`limits`](crate::limits)); a `store`
    /// refused by [`StoreConfig::validate`](crate::StoreConfig::validate); `overrides` refused by
    /// [`Overrides::validate`](crate::Overrides::validate).
    ///
    /// # Example
    /// ```
    /// use promotion_gates::PromotionConfig;
    ///
    /// let config = PromotionConfig {
    ///     feature_flags: vec!["a".into(), "a".into()],
    ///     ..Default::default()
    /// };
    /// let err = config.validate().unwrap_err();
    /// assert_eq!(err.field(), "feature_flags[1]");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.environment.validate()?;
        if !self.slo_threshold.is_finite() || !(0.0..=1.0).contains(&self.slo_threshold) {
            return Err(ConfigError::new(
                "slo_threshold",
                self.slo_threshold,
                "a fraction from 0.0 to 1.0, e.g. 0.95",
            ));
        }
        if self.rollback_window_seconds == 0 || self.rollback_window_seconds > MAX_WINDOW_SECONDS {
            return Err(ConfigError::new(
                "rollback_window_seconds",
                self.rollback_window_seconds,
                format!("a window from 1 to {MAX_WINDOW_SECONDS} seconds"),
            ));
        }
        check_name("gate", &self.gate)?;
        if let Some(salt) = &self.salt {
            check_name("salt", salt)?;
        }
        if self.max_rollback_history == 0 || self.max_rollback_history > MAX_ROLLBACK_HISTORY {
            return Err(ConfigError::new(
                "max_rollback_history",
                self.max_rollback_history,
                format!("a bound from 1 to {MAX_ROLLBACK_HISTORY} events"),
            ));
        }
        if let Some(store) = &self.store {
            store.validate()?;
        }
        if let Some(overrides) = &self.overrides {
            overrides.validate()?;
        }
        self.check_flag_count()?;
        // One pass with a hash set: O(n) expected (O(n^2) at worst, were every name to collide).
        let mut seen: HashSet<&str> =
            HashSet::with_capacity(self.feature_flags.len() + self.graduated_flags.len());
        for (list, names) in [
            ("feature_flags", &self.feature_flags),
            ("graduated_flags", &self.graduated_flags),
        ] {
            for (i, name) in names.iter().enumerate() {
                let field = || format!("{list}[{i}]");
                if let Some(why) = name_problem(name) {
                    return Err(ConfigError::new(field(), quoted(name), why));
                }
                if !seen.insert(name) {
                    return Err(ConfigError::new(
                        field(),
                        quoted(name),
                        "a flag name listed once across feature_flags and graduated_flags",
                    ));
                }
            }
        }
        Ok(())
    }

    /// At most [`MAX_FLAGS`](crate::MAX_FLAGS) flags in `feature_flags` and `graduated_flags`
    /// together, else the [`ConfigError`] of [`too_many_flags`].
    pub(crate) fn check_flag_count(&self) -> Result<(), ConfigError> {
        let (features, graduated) = (self.feature_flags.len(), self.graduated_flags.len());
        if features + graduated > crate::MAX_FLAGS {
            return Err(too_many_flags(features, graduated));
        }
        Ok(())
    }

    /// The salt routing uses: [`salt`](Self::salt) if set, else [`gate`](Self::gate).
    ///
    /// # Example
    /// ```
    /// let config = promotion_gates::PromotionConfig { gate: "search".into(), ..Default::default() };
    /// assert_eq!(config.effective_salt(), "search");
    /// ```
    pub fn effective_salt(&self) -> &str {
        self.salt.as_deref().unwrap_or(&self.gate)
    }

    /// Reads a config from JSON and validates it.
    ///
    /// # Errors
    /// [`Error::Json`](crate::Error::Json) for malformed JSON, an unknown field, a field given
    /// twice or a value of the wrong type, out of range or too small for an `f64` (`1e-400`,
    /// which serde_json alone reads as 0; see [`is_tiny_number`](crate::is_tiny_number)) (the
    /// message names the field, line and column), [`Error::Config`](crate::Error::Config) for a value
    /// refused by [`validate`](Self::validate) or a document over
    /// [`MAX_DOCUMENT_BYTES`](crate::MAX_DOCUMENT_BYTES) (field `document`).
    ///
    /// # Example
    /// ```
    /// use promotion_gates::{Environment, PromotionConfig};
    ///
    /// let config = PromotionConfig::from_json(r#"{"environment": {"canary": {"traffic_percent": 5}}}"#)?;
    /// assert_eq!(config.environment, Environment::Canary { traffic_percent: 5.0 });
    /// assert!(PromotionConfig::from_json(r#"{"slo_treshold": 0.9}"#).is_err());
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn from_json(json: &str) -> Result<Self, crate::Error> {
        let config = Self::parse_json(json)?;
        // A refused number is shown as the document wrote it, not as read.
        config.validate().map_err(|e| e.as_written_in_json(json))?;
        Ok(config)
    }

    /// Reads a config from JSON *without* validating it, for a caller that hands it straight
    /// to a call that validates ([`PromotionGateManager::new`](crate::PromotionGateManager::new),
    /// [`swap_config`](crate::PromotionGateManager::swap_config)), so that it is validated once.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) on field `document` for a document over
    /// [`MAX_DOCUMENT_BYTES`](crate::MAX_DOCUMENT_BYTES); [`Error::Json`](crate::Error::Json)
    /// as for [`from_json`](Self::from_json).
    ///
    /// # Example
    /// ```
    /// use promotion_gates::PromotionConfig;
    ///
    /// let config = PromotionConfig::parse_json(r#"{"slo_threshold": 2.0}"#)?;
    /// assert!(config.validate().is_err());
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn parse_json(json: &str) -> Result<Self, crate::Error> {
        parse_json_object(json, "PromotionConfig")
    }
}

/// Checks that `json` is a document the library reads as a config: at most
/// [`MAX_DOCUMENT_BYTES`](crate::MAX_DOCUMENT_BYTES) bytes (else a
/// [`ConfigError`](crate::ConfigError) on field `document`) and one JSON object with named
/// fields (else [`Error::Json`](crate::Error::Json) naming what it holds; `what` names the
/// document in that message). The values are not checked: that is the parse's job.
///
/// # Example
/// ```
/// use promotion_gates::check_json_document;
///
/// assert!(check_json_document(r#"{"gate": "checkout"}"#, "config").is_ok());
/// let e = check_json_document("[1, 2]", "config").unwrap_err();
/// assert!(e.to_string().ends_with("with named fields, not an array"), "{e}");
/// ```
pub fn check_json_document(json: &str, what: &str) -> Result<(), crate::Error> {
    parse_json_object::<serde::de::IgnoredAny>(json, what).map(|_| ())
}

/// Checks the length of a JSON document before a byte of it is read: at most
/// [`MAX_DOCUMENT_BYTES`](crate::MAX_DOCUMENT_BYTES) bytes, else the refusal every reader of
/// the library makes (a [`ConfigError`](crate::ConfigError) on field `document` naming `what`,
/// the length and the limit). For a host that holds a document's bytes before it can read
/// them as text (the C ABI checks the length before the UTF-8).
///
/// # Example
/// ```
/// use promotion_gates::{MAX_DOCUMENT_BYTES, check_document_length};
///
/// assert!(check_document_length(MAX_DOCUMENT_BYTES, "PromotionConfig").is_ok());
/// let e = check_document_length(MAX_DOCUMENT_BYTES + 1, "PromotionConfig").unwrap_err();
/// assert_eq!(e.field(), "document");
/// assert!(e.to_string().contains("a PromotionConfig of 8388609 bytes"), "{e}");
/// ```
pub fn check_document_length(len: usize, what: &str) -> Result<(), ConfigError> {
    if len > MAX_DOCUMENT_BYTES {
        return Err(ConfigError::new(
            "document",
            format!("a {what} of {len} bytes"),
            format!("at most {MAX_DOCUMENT_BYTES} bytes (MAX_DOCUMENT_BYTES)"),
        ));
    }
    Ok(())
}

/// Reads a JSON object into `T`. Serde would also accept an array of the fields in order; a
/// config must name its fields, so anything but an object is refused, and so is an array
/// given for any struct within it ([`NamedFields`]).
///
/// The object is read straight into `T` (not through a `serde_json::Value` first), so that
/// every error met inside a field, a number out of range as much as a wrong type, is reported
/// under the field's path; a field given twice is refused (`duplicate field`), where a
/// `Value` kept the last one. A number too small for an `f64`, which serde_json reads as 0
/// (`1e-400`), is refused first ([`is_tiny_number`]), naming its field and the number.
pub(crate) fn parse_json_object<T: serde::de::DeserializeOwned>(
    json: &str,
    what: &str,
) -> Result<T, crate::Error> {
    check_document_length(json.len(), what)?;
    // JSON has no byte order mark (RFC 8259 section 8.1), and serde's refusal of one ("expected
    // value at line 1 column 1") names nothing a reader can see: an editor writes it unseen.
    if json.starts_with('\u{FEFF}') {
        return Err(crate::Error::Json(
            "starts with a UTF-8 byte order mark (EF BB BF): save it without one".into(),
        ));
    }
    // JSON's whitespace; what follows is the first byte of the document's one value.
    let first = json
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .bytes()
        .next();
    if first != Some(b'{') {
        // A syntax error (an empty document too) is reported as such, with its line and column.
        serde_json::from_str::<serde::de::IgnoredAny>(json)?;
        return Err(crate::Error::Json(format!(
            "a {what} must be a JSON object with named fields, not {}",
            match first {
                Some(b'[') => "an array",
                Some(b'"') => "a string",
                Some(b'n') => "null",
                Some(b't' | b'f') => "a boolean",
                _ => "a number",
            }
        )));
    }
    // serde_json reads a number too small for an f64 (`1e-400`) as 0, without an error.
    if let Some(tiny) = tiny_numbers::first_tiny_number(json.as_bytes()) {
        return Err(crate::Error::Json(tiny.refusal("")));
    }
    let mut reader = serde_json::Deserializer::from_str(json);
    // serde_path_to_error names the field of an error ("slo_threshold: invalid type").
    let value = serde_path_to_error::deserialize(NamedFields::new(&mut reader, "a JSON object"))
        .map_err(|e| crate::Error::Json(named_json_error(&e, "")))?;
    // Whatever follows the object (`{} {}`) is refused, as serde_json::from_str does.
    reader.end()?;
    Ok(value)
}

/// A stored JSON value (a store's release, history event or rollback counts) read into `T`,
/// every struct in it from an object with named fields ([`NamedFields`]), as a config is: an
/// error names the field under `within` (`release.config.slo_threshold`) and shows at most a
/// short part of what was found (a value edited by hand may be megabytes long). A number too
/// small for an `f64` (`1e-400`) is refused as in a config ([`is_tiny_number`]).
#[cfg(any(feature = "sqlite", feature = "etcd"))]
pub(crate) fn stored_json<T: serde::de::DeserializeOwned>(
    value: &[u8],
    within: &str,
) -> Result<T, String> {
    // serde_json reads a number too small for an f64 (`1e-400`) as 0, without an error.
    if let Some(tiny) = tiny_numbers::first_tiny_number(value) {
        return Err(tiny.refusal(within));
    }
    let mut reader = serde_json::Deserializer::from_slice(value);
    let read = serde_path_to_error::deserialize(NamedFields::new(&mut reader, "a JSON object"))
        .map_err(|e| named_json_error(&e, within))?;
    reader.end().map_err(|e| match within {
        "" => crate::error::shortened(&e.to_string()),
        _ => crate::error::shortened(&format!("{within}: {e}")),
    })?;
    Ok(read)
}

/// A [`serde_path_to_error`] error of a JSON read as this library's messages write it: the
/// field it was met in, under `within` (`slo_threshold`, `release.config.slo_threshold`),
/// then serde's words, shortened where they show the input (a refused value or key may be
/// megabytes long; see [`shortened_refusal`]), then the position.
pub(crate) fn named_json_error(
    e: &serde_path_to_error::Error<serde_json::Error>,
    within: &str,
) -> String {
    let (field, inner) = (field_path(e.path()), e.inner());
    let field = match (within.is_empty(), field.is_empty()) {
        (_, true) => within.to_string(),
        (true, false) => field,
        (false, false) => format!("{within}.{field}"),
    };
    let full = inner.to_string();
    let position = format!(" at line {} column {}", inner.line(), inner.column());
    let message = full.strip_suffix(&position).unwrap_or(&full);
    let message = if field.is_empty() {
        shortened_refusal(message)
    } else {
        shortened_refusal(&format!("{field}: {message}"))
    };
    let at = if inner.line() > 0 {
        position.as_str()
    } else {
        ""
    };
    format!("{message}{at}")
}

/// The field a [`serde_path_to_error`] error was met in, as this library's messages name it
/// (`slo.max_error_rate`, `stages[0].environment`): the empty string at the top of the
/// document, and the path stops before its first unknown segment, which serde_path_to_error
/// writes `?` (an error in an object's key, such as the end of a truncated document).
///
/// For a program that reads documents of its own, or in another format, with
/// serde_path_to_error and wants its errors to name fields as [`PromotionConfig::from_json`]
/// does (the CLI reads TOML this way).
///
/// # Example
/// ```
/// use promotion_gates::{PromotionConfig, field_path};
///
/// let mut json = serde_json::Deserializer::from_str(r#"{"environment": {"canary": {"traffic_percent": "5"}}}"#);
/// let e = serde_path_to_error::deserialize::<_, PromotionConfig>(&mut json).unwrap_err();
/// assert_eq!(field_path(e.path()), "environment.canary.traffic_percent");
///
/// let mut truncated = serde_json::Deserializer::from_str(r#"{"gate": "a", "#);
/// let e = serde_path_to_error::deserialize::<_, PromotionConfig>(&mut truncated).unwrap_err();
/// assert_eq!(e.path().to_string(), "?");
/// assert_eq!(field_path(e.path()), "");
/// ```
pub fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut field = String::new();
    for segment in path.iter().take_while(|s| !matches!(s, Segment::Unknown)) {
        if !field.is_empty() && !matches!(segment, Segment::Seq { .. }) {
            field.push('.');
        }
        field.push_str(&segment.to_string());
    }
    field
}

/// The refusal of `features` + `graduated` flags, over [`MAX_FLAGS`](crate::MAX_FLAGS), on
/// the list that holds them: `feature_flags` or `graduated_flags` when the other is empty,
/// else `feature_flags + graduated_flags` (value `10001 flags (1 + 10000)`).
fn too_many_flags(features: usize, graduated: usize) -> ConfigError {
    let count = features + graduated;
    let (field, value) = match (features, graduated) {
        (_, 0) => ("feature_flags", format!("{count} flags")),
        (0, _) => ("graduated_flags", format!("{count} flags")),
        _ => (
            "feature_flags + graduated_flags",
            format!("{count} flags ({features} + {graduated})"),
        ),
    };
    ConfigError::new(
        field,
        value,
        format!(
            "at most {} flags across feature_flags and graduated_flags (MAX_FLAGS)",
            crate::MAX_FLAGS
        ),
    )
}

pub(crate) fn check_name(field: &str, value: &str) -> Result<(), ConfigError> {
    name_problem(value).map_or(Ok(()), |why| {
        Err(ConfigError::new(field, quoted(value), why))
    })
}

fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("a name must not be empty")
    } else if name.len() > MAX_NAME_BYTES {
        Some("a name must be at most 128 bytes (MAX_NAME_BYTES)")
    } else if name.chars().any(is_unseen) {
        Some("a name must not hold whitespace, control, format or invisible characters")
    } else {
        None
    }
}

/// Checks a feature flag name: 1 to 128 bytes, no whitespace, control, format or invisible
/// characters ([`is_format_char`], Unicode's default-ignorable code points, U+2800).
///
/// # Errors
/// [`FlagError::InvalidName`] saying what is wrong.
///
/// # Example
/// ```
/// use promotion_gates::validate_flag_name;
/// assert!(validate_flag_name("checkout.v2").is_ok());
/// assert!(validate_flag_name("").is_err());
/// ```
pub fn validate_flag_name(name: &str) -> Result<(), FlagError> {
    name_problem(name).map_or(Ok(()), |why| {
        Err(FlagError::InvalidName {
            name: shown_part(name).to_owned(),
            len: name.len(),
            why,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_below_100_that_routes_every_bucket_is_refused() {
        use crate::bucket::{BUCKETS, threshold_for_percent};
        // The largest share below 100 whose threshold leaves a bucket, and the next one up.
        let last = 100.0 - 1.5 * TRAFFIC_PERCENT_RESOLUTION;
        assert!(threshold_for_percent(last) < BUCKETS);
        canary(last).validate().unwrap();
        canary(100.0).validate().unwrap();
        for percent in [
            99.9999951,
            100.0 - TRAFFIC_PERCENT_RESOLUTION / 4.0,
            100f64.next_down(),
        ] {
            assert_eq!(threshold_for_percent(percent), BUCKETS, "{percent}");
            let err = canary(percent).validate().unwrap_err();
            assert_eq!(err.field(), "environment.canary.traffic_percent");
            assert_eq!(err.value(), crate::error::shown_number(percent));
            assert!(
                err.expected().contains("one bucket to the stable version"),
                "{err}"
            );
            let json =
                format!(r#"{{"environment": {{"canary": {{"traffic_percent": {percent}}}}}}}"#);
            let err = PromotionConfig::from_json(&json).unwrap_err().to_string();
            assert!(
                err.starts_with("invalid environment.canary.traffic_percent = "),
                "{err}"
            );
        }
    }

    #[test]
    fn a_document_starting_with_a_byte_order_mark_is_refused_naming_it() {
        // serde refused it as "expected value at line 1 column 1", naming nothing.
        let refusal = "invalid JSON config: starts with a UTF-8 byte order mark (EF BB BF): \
                       save it without one";
        let bom = "\u{FEFF}{\"gate\": \"a\"}";
        for err in [
            PromotionConfig::from_json(bom).unwrap_err(),
            PromotionConfig::parse_json(bom).unwrap_err(),
            crate::SloConfig::from_json("\u{FEFF}{}").unwrap_err(),
            check_json_document("\u{FEFF}[1]", "config").unwrap_err(),
        ] {
            assert_eq!(err.to_string(), refusal);
        }
        // Whitespace then one is a syntax error at its place, as before.
        let err = PromotionConfig::from_json(" \u{FEFF}{}").unwrap_err();
        assert!(err.to_string().contains("line 1 column 2"), "{err}");
    }

    #[test]
    fn a_name_or_id_with_a_character_drawn_as_nothing_is_refused() {
        for c in [
            '\u{034F}',
            '\u{FE00}',
            '\u{FE0F}',
            '\u{E0100}',
            '\u{E01EF}',
            '\u{3164}',
            '\u{115F}',
            '\u{1160}',
            '\u{FFA0}',
            '\u{180B}',
            '\u{180F}',
            '\u{17B4}',
            '\u{17B5}',
            '\u{2800}',
        ] {
            let name = format!("beta{c}");
            // Escaped, where `{:?}` shows some as they are (U+2800, the Hangul fillers).
            let shown = format!("\"beta\\u{{{:x}}}\"", u32::from(c));
            assert_eq!(quoted(&name), shown);
            for (doc, field, why) in [
                (
                    serde_json::json!({ "gate": name }),
                    "gate",
                    "whitespace, control, format or invisible characters",
                ),
                (
                    serde_json::json!({ "feature_flags": ["beta", name] }),
                    "feature_flags[1]",
                    "whitespace, control, format or invisible characters",
                ),
                (
                    serde_json::json!({ "overrides": { "canary_ids": [name] } }),
                    "overrides.canary_ids[0]",
                    "control, format or invisible characters",
                ),
            ] {
                let err = PromotionConfig::from_json(&doc.to_string())
                    .unwrap_err()
                    .to_string();
                assert!(
                    err.starts_with(&format!("invalid {field} = {shown}: ")) && err.contains(why),
                    "{c:?}: {err}"
                );
            }
            let err = validate_flag_name(&name).unwrap_err().to_string();
            assert!(err.contains(&shown) && err.contains("invisible"), "{err}");
        }
    }

    #[test]
    fn a_name_with_a_character_its_reader_cannot_see_is_refused() {
        for name in [
            "admin\u{200B}",
            "a\u{202E}b",
            "\u{FEFF}gate",
            "x\u{2066}y",
            "soft\u{AD}",
        ] {
            let err = validate_flag_name(name).unwrap_err().to_string();
            assert!(
                err.contains("whitespace, control, format or invisible characters"),
                "{err}"
            );
            // The message shows the character escaped, never as itself.
            assert!(!err.chars().any(is_format_char), "{err:?}");
            let json = serde_json::json!({ "gate": name }).to_string();
            let err = PromotionConfig::from_json(&json).unwrap_err().to_string();
            assert!(err.starts_with("invalid gate = "), "{err}");
        }
        for name in ["café", "checkout.v2", "☕", "日本語"] {
            assert!(validate_flag_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn a_long_flag_name_is_cut_outside_its_quotes_as_every_value_shown() {
        // `"kk...k...(300 bytes)"`: the mark of the cut read as part of the name.
        let name = "k".repeat(300);
        let shown = crate::error::quoted(&name);
        assert!(shown.ends_with("k\"...(300 bytes)"), "{shown}");
        let err = validate_flag_name(&name).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("invalid feature flag name {shown}: ")),
            "{err}"
        );
        // As the config's check shows the same name.
        let config = PromotionConfig {
            feature_flags: vec![name],
            ..Default::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("invalid feature_flags[0] = {shown}: ")),
            "{err}"
        );
    }

    #[test]
    fn a_long_refused_key_or_value_is_shortened_and_keeps_its_position() {
        let long = "k".repeat(1_000_000);
        for json in [
            format!(r#"{{"{long}": 1}}"#),
            format!(r#"{{"environment": "{long}"}}"#),
        ] {
            let err = PromotionConfig::from_json(&json).unwrap_err().to_string();
            assert!(err.len() < 600, "{} bytes", err.len());
            assert!(
                err.contains("...(") && err.contains("at line 1 column"),
                "{err}"
            );
        }
        let err = crate::SloConfig::from_json(r#"{"p99_budget_ms":1e-7}"#).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("it would be read as 0 at line 1 column 22"),
            "{err}"
        );
    }

    #[test]
    fn a_misspelled_field_is_refused_listing_every_field_it_may_have_meant() {
        let err = crate::SloConfig::from_json(r#"{"promotion_evidense": false}"#).unwrap_err();
        assert!(err.to_string().contains("`promotion_evidence`"), "{err}");
        let err = PromotionConfig::from_json(r#"{"overides": {}}"#).unwrap_err();
        assert!(err.to_string().contains("`overrides`"), "{err}");
    }

    #[test]
    fn default_is_valid_production() {
        let config = PromotionConfig::default();
        assert!(config.validate().is_ok());
        assert_eq!(config.environment, Environment::Production);
        assert_eq!(config.slo_threshold, 0.95);
        assert_eq!(config.rollback_window_seconds, 300);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(PromotionConfig, &str, &str)> = vec![
            (
                PromotionConfig {
                    environment: Environment::Canary {
                        traffic_percent: -1.0,
                    },
                    ..Default::default()
                },
                "environment.canary.traffic_percent",
                "-1",
            ),
            (
                PromotionConfig {
                    environment: Environment::Canary {
                        traffic_percent: f64::INFINITY,
                    },
                    ..Default::default()
                },
                "environment.canary.traffic_percent",
                "inf",
            ),
            (
                PromotionConfig {
                    slo_threshold: -0.1,
                    ..Default::default()
                },
                "slo_threshold",
                "-0.1",
            ),
            (
                PromotionConfig {
                    slo_threshold: f64::NAN,
                    ..Default::default()
                },
                "slo_threshold",
                "NaN",
            ),
            (
                PromotionConfig {
                    rollback_window_seconds: 0,
                    ..Default::default()
                },
                "rollback_window_seconds",
                "0",
            ),
            (
                PromotionConfig {
                    gate: String::new(),
                    ..Default::default()
                },
                "gate",
                "\"\"",
            ),
            (
                PromotionConfig {
                    salt: Some("a b".into()),
                    ..Default::default()
                },
                "salt",
                "\"a b\"",
            ),
            (
                PromotionConfig {
                    max_rollback_history: 0,
                    ..Default::default()
                },
                "max_rollback_history",
                "0",
            ),
            (
                PromotionConfig {
                    feature_flags: vec![String::new()],
                    ..Default::default()
                },
                "feature_flags[0]",
                "\"\"",
            ),
            (
                PromotionConfig {
                    feature_flags: vec!["x".into()],
                    graduated_flags: vec!["x".into()],
                    ..Default::default()
                },
                "graduated_flags[0]",
                "\"x\"",
            ),
        ];
        for (config, field, value) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
            assert_eq!(err.value(), value, "{err}");
            assert!(err.to_string().contains(field));
        }
    }

    #[test]
    fn too_many_flags_are_blamed_on_the_list_that_holds_them() {
        let names = |prefix: &str, n: usize| (0..n).map(|i| format!("{prefix}{i}")).collect();
        let over = crate::MAX_FLAGS + 1;
        for (feature_flags, graduated_flags, field, value) in [
            (names("f", over), vec![], "feature_flags", "10001 flags"),
            (vec![], names("g", over), "graduated_flags", "10001 flags"),
            (
                names("f", 1),
                names("g", crate::MAX_FLAGS),
                "feature_flags + graduated_flags",
                "10001 flags (1 + 10000)",
            ),
        ] {
            let config = PromotionConfig {
                feature_flags,
                graduated_flags,
                ..Default::default()
            };
            let err = config.validate().unwrap_err();
            assert_eq!((err.field(), err.value()), (field, value), "{err}");
            assert!(err.expected().contains("at most 10000 flags"), "{err}");
            let json = serde_json::to_string(&config).unwrap();
            let message = PromotionConfig::from_json(&json).unwrap_err().to_string();
            assert!(
                message.starts_with(&format!("invalid {field} = {value}: at most 10000")),
                "{message}"
            );
        }
    }

    #[test]
    fn boundaries_are_accepted() {
        for p in [0.0, 0.00001, 50.0, 100.0] {
            assert!(
                Environment::Canary { traffic_percent: p }
                    .validate()
                    .is_ok(),
                "{p}"
            );
        }
        for t in [0.0, 1.0] {
            assert!(
                PromotionConfig {
                    slo_threshold: t,
                    ..Default::default()
                }
                .validate()
                .is_ok()
            );
        }
    }

    #[test]
    fn json_round_trips_and_refuses_unknown_fields() {
        let config = PromotionConfig {
            environment: Environment::Canary {
                traffic_percent: 0.1,
            },
            feature_flags: vec!["a".into(), "b".into()],
            graduated_flags: vec!["c".into()],
            salt: Some("s".into()),
            ..Default::default()
        };
        let json = serde_json::to_string_pretty(&config).unwrap();
        assert_eq!(PromotionConfig::from_json(&json).unwrap(), config);
        let err = PromotionConfig::from_json(r#"{"feature_flag": []}"#).unwrap_err();
        assert!(err.to_string().contains("feature_flag"), "{err}");
        let err =
            PromotionConfig::from_json(r#"{"environment": {"canary": {"traffic_percent": 101}}}"#)
                .unwrap_err();
        assert!(err.to_string().contains("101"), "{err}");
        let err =
            PromotionConfig::from_json(r#"{"environment": {"canary": {"traffic_percent": "x"}}}"#)
                .unwrap_err();
        assert!(
            err.to_string()
                .contains("environment.canary.traffic_percent"),
            "{err}"
        );
        let err = PromotionConfig::from_json("[]").unwrap_err();
        assert!(err.to_string().contains("not an array"), "{err}");
    }

    #[test]
    fn a_number_refused_after_it_was_read_is_shown_as_written() {
        // Read as an f64, u64::MAX was refused as 18446744073709552000.
        for (json, expected) in [
            (
                r#"{"slo_threshold": 18446744073709551615}"#,
                "invalid slo_threshold = 18446744073709551615: ",
            ),
            (
                r#"{"environment": {"canary": {"traffic_percent": 1.000e3}}}"#,
                "invalid environment.canary.traffic_percent = 1.000e3: ",
            ),
            (
                r#"{"rollback_window_seconds": 0, "slo_threshold": 0.5}"#,
                "invalid rollback_window_seconds = 0: ",
            ),
        ] {
            let e = PromotionConfig::from_json(json).unwrap_err().to_string();
            assert!(e.starts_with(expected), "{e}");
        }
        // The Rust API's values were written by no document: shown as they are.
        let e = PromotionConfig {
            slo_threshold: u64::MAX as f64,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.value(), "18446744073709552000");
    }

    #[test]
    fn the_canary_share_is_named_by_its_path_in_the_document_whatever_is_wrong_with_it() {
        // A share out of range named `environment.traffic_percent` while a share of the
        // wrong type named `environment.canary.traffic_percent`: one field, two names.
        let field = "environment.canary.traffic_percent";
        let message = |written: &str| {
            let json =
                format!(r#"{{"environment": {{"canary": {{"traffic_percent": {written}}}}}}}"#);
            PromotionConfig::from_json(&json).unwrap_err().to_string()
        };
        assert_eq!(
            message("150"),
            format!("invalid {field} = 150: a finite percentage from 0 to 100")
        );
        assert!(message(r#""x""#).contains(&format!("{field}: invalid type")));
        // As the document writes it, not as read (`0.000000001`).
        assert!(message("1e-9").starts_with(&format!("invalid {field} = 1e-9: 0, or")));
        let err = Environment::Canary {
            traffic_percent: 150.0,
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.field(), field);
    }

    #[test]
    fn a_struct_within_a_config_given_as_an_array_is_refused_naming_its_field() {
        // serde's derived reader took a struct's fields in order: each of these was read
        // (and opened a gate, creating `a.db`).
        let refusal = "must be a JSON object with named fields, not an array at line 1 column";
        for (json, field) in [
            (
                r#"{"overrides": ["X-Canary", "c", ["a"], []]}"#,
                "overrides",
            ),
            (r#"{"store": {"sqlite": ["a.db"]}}"#, "store.sqlite"),
            (
                r#"{"store": {"sqlite": ["a.db", 250, 2000, true]}}"#,
                "store.sqlite",
            ),
            (
                r#"{"store": {"etcd": [["http://127.0.0.1:2379"], "/pg/a"]}}"#,
                "store.etcd",
            ),
        ] {
            for read in [PromotionConfig::from_json, PromotionConfig::parse_json] {
                let e = read(json).unwrap_err().to_string();
                assert!(
                    e.starts_with(&format!("invalid JSON config: {field}: {refusal}")),
                    "{json}: {e}"
                );
            }
        }
        // The canary's own reader refused it already, in its words.
        let e = PromotionConfig::from_json(r#"{"environment": {"canary": [5]}}"#).unwrap_err();
        assert!(
            e.to_string().starts_with(
                r#"invalid JSON config: environment.canary: invalid type: sequence, expected {"traffic_percent": P}"#
            ),
            "{e}"
        );
        // Every struct the library writes reads back.
        let config = PromotionConfig {
            environment: canary(5.0),
            store: Some(crate::StoreConfig::Sqlite(crate::SqliteStoreConfig {
                path: "a.db".into(),
                sync_interval_ms: 250,
                busy_timeout_ms: 2000,
                fleet_judging: false,
            })),
            overrides: Some(crate::Overrides {
                header: Some("X-Canary".into()),
                canary_ids: vec!["a".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(PromotionConfig::from_json(&json).unwrap(), config);
    }

    /// serde_json reads a number too small for an `f64` as 0 without an error: a canary at 0 %,
    /// no latency tolerance, a zero error limit, and a latency target refused as `= 0`.
    #[test]
    fn a_number_too_small_for_a_double_is_refused_naming_the_field_and_the_number() {
        let zeros = format!("0.{}1", "0".repeat(400));
        let config = |json: &str| PromotionConfig::from_json(json).map_err(|e| e.to_string());
        let slo = |json: &str| crate::SloConfig::from_json(json).map_err(|e| e.to_string());
        // serde_json's column: that of the number's last byte.
        let refused = |json: &str, field: &str, written: &str| {
            let column = json.find(written).map_or(0, |at| at + written.len());
            format!(
                "invalid JSON config: {field} = {written}: below the smallest positive number \
                 a double holds (5e-324); it would read as 0 at line 1 column {column}"
            )
        };
        let canary = r#"{"environment": {"canary": {"traffic_percent": 1e-400}}}"#;
        let field = "environment.canary.traffic_percent";
        assert_eq!(config(canary), Err(refused(canary, field, "1e-400")));
        // An integer field said `invalid type: floating point `0.0``, not the number written.
        let window = r#"{"rollback_window_seconds": -1E-999}"#;
        let field = "rollback_window_seconds";
        assert_eq!(config(window), Err(refused(window, field, "-1E-999")));
        let store = r#"{"store": {"sqlite": {"path": "a.db", "sync_interval_ms": 1e-400}}}"#;
        let field = "store.sqlite.sync_interval_ms";
        assert_eq!(config(store), Err(refused(store, field, "1e-400")));
        for field in [
            "latency_tolerance_ms",
            "max_error_rate",
            "latency_target_ms",
        ] {
            let json = format!(r#"{{"{field}": 1e-400}}"#);
            assert_eq!(slo(&json), Err(refused(&json, field, "1e-400")), "{json}");
            let long = slo(&format!(r#"{{"{field}": {zeros}}}"#)).unwrap_err();
            let shown = format!("{field} = {}...(403 bytes): below", &zeros[..160]);
            assert!(long.contains(&shown), "{long}");
        }
        // check_json_document (the CLI's and the C ABI's document reads) refuses it too.
        let e = check_json_document(canary, "config")
            .unwrap_err()
            .to_string();
        assert!(e.contains("traffic_percent = 1e-400: below"), "{e}");

        // A zero as written, a subnormal, and the text "1e-400" are read as they are.
        for zero in ["0e-400", "-0.0", "0", "0.0e5"] {
            let json = format!(r#"{{"environment": {{"canary": {{"traffic_percent": {zero}}}}}}}"#);
            assert_eq!(
                config(&json).map(|c| c.environment),
                Ok(Environment::Canary {
                    traffic_percent: 0.0
                })
            );
        }
        let read = crate::SloConfig::from_json(r#"{"max_error_rate": 1e-300}"#).unwrap();
        assert_eq!(read.max_error_rate, 1e-300);
        let read = crate::SloConfig::from_json(r#"{"max_error_rate": 1e-310}"#).unwrap();
        assert_eq!(read.max_error_rate, 1e-310);
        assert_eq!(
            config(r#"{"salt": "1e-400"}"#).unwrap().salt.as_deref(),
            Some("1e-400")
        );
    }

    #[test]
    fn every_json_error_inside_a_field_names_the_field() {
        let message = |json: &str| PromotionConfig::from_json(json).unwrap_err().to_string();
        // A number out of range (the parse to a Value lost the field).
        assert_eq!(
            message(r#"{"rollback_window_seconds": 1e400}"#),
            "invalid JSON config: rollback_window_seconds: number out of range at line 1 column 33"
        );
        let e = message(r#"{"environment": {"canary": {"traffic_percent": -1e999}}}"#);
        assert!(
            e.contains("environment.canary.traffic_percent: number out of range"),
            "{e}"
        );
        let e = crate::SloConfig::from_json(r#"{"max_error_rate": 1e400}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_error_rate: number out of range"), "{e}");
        // No `?` (an unknown path segment) and no `.` (the empty path) when there is no field.
        for (json, expected) in [
            (
                r#"{"gate": "a", "#,
                "invalid JSON config: EOF while parsing a value at line 1 column 14",
            ),
            (
                "{",
                "invalid JSON config: EOF while parsing an object at line 1 column 1",
            ),
            (
                "",
                "invalid JSON config: EOF while parsing a value at line 1 column 0",
            ),
        ] {
            assert_eq!(message(json), expected);
        }
        // What the Value step checked is still checked: one object, then nothing.
        assert!(message("[1,").contains("EOF while parsing a value at line 1 column 3"));
        assert!(message(" true").ends_with("with named fields, not a boolean"));
        assert!(message("{} {}").contains("trailing characters"));
        // A field given twice is refused (a Value kept the last one).
        assert!(
            message(r#"{"gate": "a", "gate": "b"}"#).contains("duplicate field `gate`"),
            "{}",
            message(r#"{"gate": "a", "gate": "b"}"#)
        );
    }

    #[test]
    fn environment_display_matches_the_rollback_event_form() {
        assert_eq!(
            Environment::Canary {
                traffic_percent: 50.0
            }
            .to_string(),
            "Canary{50}"
        );
        let negative_zero = Environment::Canary {
            traffic_percent: -0.0,
        };
        assert!(negative_zero.validate().is_ok());
        assert_eq!(negative_zero.to_string(), "Canary{0}");
        assert_eq!(Environment::Production.to_string(), "Production");
    }
}
