//! # Limits
//!
//! Every bound the engine puts on its inputs and on what it keeps, in one place, so that memory
//! and CPU follow what is live, never what a caller sent or what happened before, with two
//! exceptions: flag names (every distinct name ever enabled is kept until the gate is dropped,
//! at most [`MAX_FLAG_NAMES`] of them) and the snapshots routing threads last read (each
//! thread that routed with overrides keeps the snapshot it last read, however old, until it
//! routes again: at most one per such thread; see below; and a replaced snapshot lives on
//! until the writer side next looks, at a write or a sync tick: see "Replaced snapshots"). Each
//! limit is a constant here (re-exported at the crate root) or, for a significance level, the
//! judge's (`judge::ERROR_RATE_FLOOR`, `judge::OVERWHELMING_RATE_FLOOR`); a value beyond one is
//! refused with an error that names the field and the limit, and the refused call changes
//! nothing. The README's Limits section links here: this table is the one list.
//!
//! | What | Limit | Refused with |
//! |---|---|---|
//! | gate name, salt, each flag name | [`MAX_NAME_BYTES`] bytes, not empty, no whitespace, control, format or invisible characters (Unicode Cf, Default_Ignorable_Code_Point such as U+FE0F or U+3164, and U+2800) | [`ConfigError`](crate::ConfigError) (`gate`, `salt`, `feature_flags[i]`...) or [`FlagError::InvalidName`](crate::FlagError::InvalidName) |
//! | `overrides`: header and cookie names, each listed request id | [`MAX_NAME_BYTES`] bytes, not empty (names: HTTP tokens; ids: no control, format or invisible characters) | [`ConfigError`](crate::ConfigError) (`overrides.header`, `overrides.canary_ids[i]`...) |
//! | `overrides`: ids in `canary_ids` and `stable_ids` together | [`MAX_OVERRIDE_IDS`] | [`ConfigError`](crate::ConfigError) on `overrides.canary_ids` when it alone holds more, else on `overrides.stable_ids` |
//! | flags enabled, in `feature_flags` and `graduated_flags` together | [`MAX_FLAGS`] | [`ConfigError`](crate::ConfigError) on the list holding them: `feature_flags`, `graduated_flags` or, both holding some, `feature_flags + graduated_flags` (a config, or `enable_feature`) |
//! | distinct flag names a gate takes in its life | [`MAX_FLAG_NAMES`] | [`FlagError::NamesExhausted`](crate::FlagError::NamesExhausted) |
//! | a manual rollback's reason | [`MAX_REASON_BYTES`] bytes, not blank (a visible character) | [`RollbackError::ReasonTooLong`](crate::RollbackError::ReasonTooLong), [`RollbackError::BlankReason`](crate::RollbackError::BlankReason) |
//! | a JSON config document (`from_json`, `parse_json`, the C ABI) | [`MAX_DOCUMENT_BYTES`] bytes | [`ConfigError`](crate::ConfigError) on field `document` |
//! | `max_rollback_history` | 1 to [`MAX_ROLLBACK_HISTORY`] events | [`ConfigError`](crate::ConfigError) |
//! | `rollback_window_seconds` | 1 to [`MAX_WINDOW_SECONDS`]; for a gate, at least ten of its `evaluation_interval_ms` ([`SloConfig::validate_for`](crate::SloConfig::validate_for): checked where this process sets the window, `new` and a `swap_config` that changes it; a window followed from a store is taken as it is) | [`ConfigError`](crate::ConfigError) |
//! | `evaluation_interval_ms` | [`MIN_EVALUATION_INTERVAL`] to one hour; for a gate, at most a tenth of its `rollback_window_seconds` (checked by `new` and by a `swap_slo` that changes the interval) | [`ConfigError`](crate::ConfigError) |
//! | `min_samples` | [`MIN_SAMPLES_FLOOR`] to [`MAX_MIN_SAMPLES`] | [`ConfigError`](crate::ConfigError) |
//! | `error_rate_tolerance` | [`MIN_ERROR_RATE_TOLERANCE`] to 1 | [`ConfigError`](crate::ConfigError) |
//! | `significance` | `f64::MIN_POSITIVE` (the least normal double) to below 0.5, and at most the p-value one failed request among the first `min_samples` has at the least absolute limit, [`ERROR_RATE_FLOOR`](crate::judge::ERROR_RATE_FLOOR) ([`binomial_tail`](crate::judge::binomial_tail)`(1, min_samples, 0.001)`: 0.0122 at 5 samples, 0.245 at the default 100; see [One failure](crate::judge#the-rules) in the judge's docs) | [`ConfigError`](crate::ConfigError) |
//! | `overwhelming_significance` | `f64::MIN_POSITIVE` to at most `significance` and at most [`OVERWHELMING_RATE_FLOOR`](crate::judge::OVERWHELMING_RATE_FLOOR) (0.01) | [`ConfigError`](crate::ConfigError) |
//! | `promotion_significance` | `f64::MIN_POSITIVE` to below 0.5 | [`ConfigError`](crate::ConfigError) |
//! | `store`: the SQLite path, each etcd endpoint, the etcd prefix | [`MAX_STORE_ADDRESS_BYTES`] bytes | [`ConfigError`](crate::ConfigError) (`store.sqlite.path`, `store.etcd.endpoints[i]`, `store.etcd.prefix`) |
//! | `store.etcd.endpoints` | 1 to [`MAX_ETCD_ENDPOINTS`] | [`ConfigError`](crate::ConfigError) on `store.etcd.endpoints` |
//! | snapshots kept by threads that routed with overrides (ids listed, or a forcing value passed) | one per such thread and gate: the config (ids and flags, up to [`MAX_DOCUMENT_BYTES`] as read) and its id table, kept until the thread routes a newer one (a thread's cache outlives it, for the next thread given its slot); Go's cgo threads and a host's idle pool threads count | not refused: a thread that routes again lets it go, and the writer side frees it at its next write or sync tick |
//! | a canary's `traffic_percent` | 0, or enough to route one bucket: at least half of [`TRAFFIC_PERCENT_RESOLUTION`]; 100, or far enough below it to leave one bucket to the stable version | [`ConfigError`](crate::ConfigError) |
//!
//! What the engine keeps, and how much:
//! - **Rollback history:** at most `max_rollback_history` events *and* at most
//!   [`MAX_ROLLBACK_HISTORY_BYTES`] (the events' texts and evidence findings plus a fixed
//!   size each); the oldest events are dropped first, the newest is always kept. Every dropped
//!   event is counted
//!   ([`PromotionGateManager::rollback_events_dropped`](crate::PromotionGateManager::rollback_events_dropped))
//!   and logged. Lowering `max_rollback_history` (by `swap_config`) drops the oldest events at
//!   once, counted the same way; raising it again cannot bring them back.
//! - **Flag sets:** at most [`FLAG_SET_SLOTS`] sets at once, current and recently replaced,
//!   plus at most two per reading thread (the two it read last); a replaced set stays readable
//!   for at least [`FLAG_SET_GRACE_WRITES`] later writes, and its number is never given to
//!   another set (see [`EnabledFeatures`](crate::EnabledFeatures)).
//!   Each distinct flag name is kept once for the gate's life (so names handed to a C host stay
//!   valid until the gate is freed): [`MAX_NAME_BYTES`] each at most, [`MAX_FLAG_NAMES`] in
//!   all.
//! - **Changes:** the last [`MAX_RECENT_CHANGES`](crate::MAX_RECENT_CHANGES), at most
//!   [`MAX_QUEUED_CHANGES`](crate::MAX_QUEUED_CHANGES) queued per subscription (a slow
//!   subscriber misses the oldest, counted), at most
//!   [`MAX_LISTED_FLAG_CHANGES`](crate::MAX_LISTED_FLAG_CHANGES) flag names listed per change
//!   (see [`changes`](crate::changes)).
//! - **Overrides:** the `overrides` section's ids (at most [`MAX_OVERRIDE_IDS`]) in a table of
//!   twice their number of slots; each thread that routed with overrides (a gate listing
//!   ids, or a forcing value passed) keeps a reference to the whole snapshot it last read (the
//!   config with its ids and flags, the id table, the route table) until it routes under a
//!   newer one, however long it stays idle: at most one per such thread and gate, the thread
//!   count including a Go host's cgo threads and every pooled worker thread that ever routed
//!   (a thread that exits leaves its cache to the next thread given its slot).
//! - **Replaced snapshots:** the writer side keeps each snapshot a write replaced (and each
//!   SLO policy `swap_slo` replaced) until no thread holds it, so that a route or a record never
//!   frees one (but for a record whose rule fires: the rollback it makes is a write, which
//!   frees what no thread holds); the next write, the store's sync thread (each tick) or the
//!   gate's drop frees it. So a replaced one may outlive its last reader until then: at most one per thread that
//!   held one at the last write, plus the one that write replaced.
//! - **Error messages** show at most [`MAX_SHOWN_VALUE_BYTES`] of a refused value, then its
//!   length: `"xxxx"...(10485760 bytes)`; so does
//!   [`stored_state_difference`](crate::PromotionGateManager::stored_state_difference) (and
//!   its warning) of each value it shows, a text kept for the gate's life.
//!
//! CPU: validating a config is `O(n log n)` in its number of flags (a 10,000-flag config
//! validates and builds a gate in milliseconds; `benches/config.rs`), and a config is validated
//! once per call that takes it.
//!
//! # Example
//! The significance levels' rows:
//! ```
//! use promotion_gates::SloConfig;
//! use promotion_gates::judge::{ERROR_RATE_FLOOR, OVERWHELMING_RATE_FLOOR, binomial_tail};
//! let refused = |slo: SloConfig| slo.validate().err().map(|e| e.field().to_string());
//! let default = SloConfig::default();
//! assert_eq!(default.min_samples, 100);
//! for (field, set) in [
//!     ("significance", (|s, x| s.significance = x) as fn(&mut SloConfig, f64)),
//!     ("overwhelming_significance", |s, x| s.overwhelming_significance = x),
//!     ("promotion_significance", |s, x| s.promotion_significance = x),
//! ] {
//!     let with = |x| {
//!         let least = f64::MIN_POSITIVE;
//!         let mut slo = SloConfig { significance: 0.2, overwhelming_significance: least, ..default.clone() };
//!         set(&mut slo, x);
//!         slo
//!     };
//!     assert_eq!(refused(with(f64::MIN_POSITIVE)), None, "{field}");
//!     assert_eq!(refused(with(2.2e-308)).as_deref(), Some(field));
//! }
//! // significance: at most one failure's p-value among the first min_samples, 0.245 at 100.
//! let one_miss = binomial_tail(1, 100, ERROR_RATE_FLOOR);
//! assert!((one_miss - 0.245).abs() < 0.0005);
//! let with = |significance| SloConfig { significance, ..default.clone() };
//! assert_eq!(refused(with(one_miss)), None);
//! assert_eq!(refused(with(0.25)).as_deref(), Some("significance"));
//! let with = |min_samples| SloConfig { significance: 0.2, min_samples, ..default.clone() };
//! assert_eq!(refused(with(5)).as_deref(), Some("significance"));
//! // promotion_significance: below 0.5.
//! let with = |promotion_significance| SloConfig { promotion_significance, ..default.clone() };
//! assert_eq!(refused(with(0.499)), None);
//! assert_eq!(refused(with(0.5)).as_deref(), Some("promotion_significance"));
//! // overwhelming_significance: at most significance and at most 0.01.
//! let with = |significance, overwhelming_significance| {
//!     SloConfig { significance, overwhelming_significance, ..default.clone() }
//! };
//! assert_eq!(refused(with(0.2, OVERWHELMING_RATE_FLOOR)), None);
//! assert_eq!(refused(with(0.2, 0.011)).as_deref(), Some("overwhelming_significance"));
//! assert_eq!(refused(with(0.001, 0.002)).as_deref(), Some("overwhelming_significance"));
//! ```

pub use crate::error::MAX_SHOWN_VALUE_BYTES;
pub use crate::flags::{FLAG_SET_GRACE_WRITES, FLAG_SET_SLOTS};
pub use crate::slo::{
    MAX_MIN_SAMPLES, MIN_ERROR_RATE_TOLERANCE, MIN_EVALUATION_INTERVAL, MIN_SAMPLES_FLOOR,
};

/// Longest accepted gate name, salt or flag name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// Most request ids the `overrides` section lists, in `canary_ids` and `stable_ids` together
/// (each id at most [`MAX_NAME_BYTES`]): about 1.3 MiB of ids at most. A route looks an id up in
/// an open-addressing hash table indexed by the low bits of the request's bucket (the route's
/// own hash): constant time on average, comparing bytes only with listed ids sharing the
/// bucket; linear in the number of ids at worst, if whoever writes the config chooses ids whose
/// buckets share their low bits.
pub const MAX_OVERRIDE_IDS: usize = 10_000;

/// Most flags a config enables, in `feature_flags` and `graduated_flags` together (each name at
/// most [`MAX_NAME_BYTES`]): about 1.3 MiB of names at most, so that a gate's state stays a
/// document a store can hold and every process can read ([`MAX_DOCUMENT_BYTES`]), and a write
/// (which copies the flag lists) stays cheap.
///
/// # Example
/// ```
/// use promotion_gates::{MAX_FLAGS, PromotionConfig};
/// let config = PromotionConfig {
///     feature_flags: (0..=MAX_FLAGS).map(|i| format!("flag_{i}")).collect(),
///     ..Default::default()
/// };
/// assert_eq!(config.validate().unwrap_err().field(), "feature_flags");
/// ```
pub const MAX_FLAGS: usize = 10_000;

/// Most distinct flag names a gate takes in its life: each is kept until the gate is dropped
/// (a name read from a decision, or a C pointer to it, stays valid that long), so beyond it a
/// write that enables a name never seen before is refused
/// ([`FlagError::NamesExhausted`](crate::FlagError::NamesExhausted)): about 20 MiB of names at
/// most. A write refused by the gate adds no name; one the state store refused (after the gate
/// accepted it) keeps the names it brought, as a later write naming them would.
pub const MAX_FLAG_NAMES: usize = 100_000;

/// Most endpoints a `store.etcd` section lists (`store.etcd.endpoints`). A store call tries
/// them in turn, up to 2 s each, so one call takes at most 32 s.
///
/// # Example
/// ```
/// use promotion_gates::{MAX_ETCD_ENDPOINTS, PromotionConfig};
/// let endpoints: Vec<String> = (0..=MAX_ETCD_ENDPOINTS).map(|i| format!("\"http://10.0.0.{i}:2379\"")).collect();
/// let json = format!(r#"{{"store": {{"etcd": {{"endpoints": [{}], "prefix": "/pg"}}}}}}"#, endpoints.join(","));
/// let err = PromotionConfig::from_json(&json).unwrap_err();
/// assert!(err.to_string().contains("store.etcd.endpoints"), "{err}");
/// ```
pub const MAX_ETCD_ENDPOINTS: usize = 16;

/// Longest `store.sqlite.path`, each of `store.etcd.endpoints` and `store.etcd.prefix`, in
/// bytes (Linux's `PATH_MAX`).
pub const MAX_STORE_ADDRESS_BYTES: usize = 4096;

/// Longest accepted reason for a manual rollback, in bytes.
pub const MAX_REASON_BYTES: usize = 4096;

/// Largest accepted JSON config document (a `PromotionConfig` or an `SloConfig`), in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;

/// Largest accepted [`PromotionConfig::max_rollback_history`](crate::PromotionConfig::max_rollback_history).
pub const MAX_ROLLBACK_HISTORY: usize = 100_000;

/// Most bytes the rollback history keeps: its events' texts (reason, feature, flag name) and
/// evidence findings, plus a fixed size per event. Beyond it the oldest events are dropped, the newest always kept.
pub const MAX_ROLLBACK_HISTORY_BYTES: usize = 4 * 1024 * 1024;

/// Largest accepted [`PromotionConfig::rollback_window_seconds`](crate::PromotionConfig::rollback_window_seconds) (one week).
pub const MAX_WINDOW_SECONDS: u64 = 7 * 24 * 3600;

/// The routing formula's resolution, in percent: one bucket in
/// [`BUCKETS`](crate::BUCKETS) = 10,000,000. A canary percentage is rounded to the nearest
/// bucket, so a non-zero percentage below half of this would route nobody and is refused.
pub const TRAFFIC_PERCENT_RESOLUTION: f64 = 100.0 / crate::bucket::BUCKETS as f64;
