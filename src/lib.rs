//! # promotion-gates
//!
//! Canary routing and promotion gates for load balancers: decide, per request, whether it goes
//! to the stable or the new version of a service; move the release through
//! Canary → Staging → Production behind gates; roll a bad canary back by itself.
//!
//! ## Why
//! A canary is only safe when three things hold. The same user must always land on the same
//! version (or sessions break and metrics mix), so routing is a pure function of a salted
//! SHA-256 of the request id. Raising the canary share must never move a user back to stable,
//! so the threshold only grows with the percentage. And the decision must cost nothing next to
//! the request itself, so the route path reads one per-thread copy of an immutable snapshot,
//! takes no lock, writes no shared memory and allocates nothing (after a thread's first route
//! on a gate, which makes its copy).
//!
//! ## How
//! ```
//! use promotion_gates::{Environment, PromotionConfig, PromotionGateManager, SloAdmissionController, SloConfig};
//!
//! let gate = PromotionGateManager::new(
//!     PromotionConfig {
//!         environment: Environment::Canary { traffic_percent: 5.0 },
//!         feature_flags: vec!["new_checkout".into()],
//!         gate: "checkout".into(),
//!         ..Default::default()
//!     },
//!     SloAdmissionController::new(SloConfig::default())?,
//! )?;
//!
//! let decision = gate.route_request("user-12345-session");
//! let upstream = if decision.is_canary { "checkout-v2" } else { "checkout-v1" };
//! println!("{upstream}: {}", decision.reason);
//! # Ok::<(), promotion_gates::Error>(())
//! ```
//!
//! ## Vocabulary
//! One word for one thing, in the code, the docs, the CLI's output, JSON and every binding:
//! - **canary** and **stable** are the two versions and their [`Cohort`]s: a request goes to the
//!   canary (the new version: canary requests, or every request in Staging) or to the stable
//!   version. The judge compares the canary cohort with the stable cohort.
//! - **Canary, Staging, Production** are the [`Environment`]s a release moves through. Production
//!   is where every request goes to the stable version. The word "production" names that
//!   environment only, and the specification's field names (`production_requests`,
//!   `production_error_rate`, `production_p99_latency` in [`CanaryHealth`]), which mean the
//!   stable cohort and are kept so that hosts written against the specification still work.
//! - A **stage** ([`StageId`]) is the stretch between two writes that start one (a promotion,
//!   a rollback, a flag turned on...: [`StageId`] lists them); a **snapshot** is the
//!   immutable state routing reads; a **verdict** is the judge's finding that the manager
//!   applies; **evidence** is what a verdict rests on.
//! - Environments print one way (`Canary{10}`, `Staging`, `Production`, their `Display`);
//!   [`Environment::name`] gives the lower-case kind for labels, and config documents hold the
//!   serde form (`{"canary": {"traffic_percent": 10}}`, `"production"`).
//!
//! ## The data path
//! route → record → merge → judge → publish, one module a step:
//! 1. **route** (`manager/route.rs` over [`bucket`] and `snapshot`): a per-thread copy of the
//!    current snapshot's route table decides the cohort; lock-free, allocation-free.
//! 2. **record** (`manager/record.rs` over `metrics/recorder.rs`): the outcome goes into the
//!    calling thread's own recorder, under the stage and cohort of its decision.
//! 3. **merge** (`metrics/window.rs`, `metrics/mod.rs`): a read merges every thread's recorder of
//!    the current stage and keeps the last `rollback_window_seconds`.
//! 4. **judge** ([`judge`], pure, driven by `monitor.rs`): the rules, the score and the
//!    recommendation; the monitor decides when to judge and returns a verdict.
//! 5. **publish** (`manager.rs`, `manager/writes.rs`, over the pure [`release`] model): the
//!    manager serializes writers, applies verdicts and promotions, and publishes the next
//!    snapshot. With a [`StoreConfig`] in the config, a write is first committed to the state
//!    store (`store/`, the only module that does I/O, never on the route or record path), and a
//!    sync thread (`manager/sync_thread.rs`) applies other processes' writes
//!    (`manager/stored.rs` and `manager/stored/`).
//!
//! The routing formula is written out in [`bucket`] so that any language can
//! recompute a decision; the release model is in [`release`]; what a host may rely on is in
//! [`guarantees`]; every bound on inputs and on what a gate keeps is in [`limits`]; the judge's
//! rules and score are in [`judge`]; what a gate exports to monitoring (the Prometheus
//! exposition, OpenTelemetry with the `otel` feature, rollback counts) is in [`telemetry`]. The
//! C ABI is the
//! `promotion-gates-ffi` crate (`ffi/` in the repository), written on this crate's public API.

#![forbid(unsafe_code)]

pub mod bucket;
pub mod changes;
mod clock;
mod config;
mod decision;
mod error;
mod flags;
pub mod guarantees;
mod history;
pub mod judge;
pub mod limits;
mod manager;
mod metrics;
mod monitor;
mod overrides;
pub mod release;
mod slo;
mod snapshot;
mod store;
mod sync;
pub mod telemetry;
mod thread_exit;
mod verdict;

pub use bucket::{BUCKETS, Bucket, SaltedHasher, reference_bucket, threshold_for_percent};
pub use changes::{
    ChangeKind, ChangeOrigin, FlagChanges, MAX_LISTED_FLAG_CHANGES, MAX_QUEUED_CHANGES,
    MAX_RECENT_CHANGES, Recv, StateChange, Subscription,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    Environment, NamedFields, PromotionConfig, TINY_NUMBER_REFUSAL, check_document_length,
    check_json_document, field_path, is_format_char, is_invisible, is_tiny_number, reads_as,
    validate_flag_name, written_json_number,
};
pub use decision::{Cohort, RouteReason, RoutingDecision, StageId};
pub use error::{
    ConfigError, Error, FlagError, PromotionError, RollbackError, SwapError, shown_bytes,
    shown_millis, shown_number,
};
pub use flags::EnabledFeatures;
pub use history::{RollbackEvent, RollbackTrigger, RolledBack};
pub use judge::{
    CanaryHealth, CohortEvidence, Evidence, Finding, NonInferiority, Recommendation, Rule,
};
pub use limits::{
    FLAG_SET_GRACE_WRITES, FLAG_SET_SLOTS, MAX_DOCUMENT_BYTES, MAX_ETCD_ENDPOINTS, MAX_FLAG_NAMES,
    MAX_FLAGS, MAX_NAME_BYTES, MAX_OVERRIDE_IDS, MAX_REASON_BYTES, MAX_ROLLBACK_HISTORY,
    MAX_ROLLBACK_HISTORY_BYTES, MAX_SHOWN_VALUE_BYTES, MAX_STORE_ADDRESS_BYTES, MAX_WINDOW_SECONDS,
    TRAFFIC_PERCENT_RESOLUTION,
};
pub use manager::PromotionGateManager;
pub use metrics::Recorded;
pub use overrides::{Forced, ForcedBy, Overrides, forcing_value};
pub use release::{Promotion, PromotionKind, plan_promotion};
pub use slo::{
    MAX_MIN_SAMPLES, MAX_TRACKED_LATENCY, MIN_ERROR_RATE_TOLERANCE, MIN_EVALUATION_INTERVAL,
    MIN_SAMPLES_FLOOR, SloAdmissionController, SloConfig,
};
pub use store::{EtcdStoreConfig, SqliteStoreConfig, StoreConfig, StoreError, StoreProblem};

/// The README's Rust examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
