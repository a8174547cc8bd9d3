//! The C ABI (prefix `pgate_`): the only module with `unsafe` code.
//!
//! Conventions, after rustls-ffi:
//! - Opaque handles with `_new` / `_free` pairs; one gate handle may be shared by threads.
//! - Every fallible call returns a `pgate_status` (fixed numbers, `PGATE_STATUS_OK = 0`).
//! - Inputs first, outputs last; outputs are written only on success. Byte strings are a
//!   pointer and a length (request ids need not be UTF-8 or NUL-terminated); NULL with length
//!   0 is the empty string.
//! - Cold-path calls take an optional `pgate_error **err`: on failure it receives an error
//!   object with the status and a message naming the field and value, freed with
//!   `pgate_error_free`. There is no thread-local "last error".
//! - Every body runs inside one boundary helper that catches panics (`PGATE_STATUS_PANIC`).
//!   Pointers are checked for NULL and lengths against `PTRDIFF_MAX` before use; cold-path
//!   calls also refuse a handle that is not a live gate (`PGATE_STATUS_INVALID_HANDLE`).
//! - Hot calls (`pgate_route`, `pgate_route_forced`, `pgate_record`, `pgate_flag_set_*`,
//!   `pgate_change_count`) never allocate (after a thread's first call), free nothing (the
//!   core's writer side frees a snapshot or a flag set a write replaced, never a route or a
//!   read of a decision's flags), never wait for a
//!   lock and write only caller memory and the thread's own recorder. The one exception is a
//!   `pgate_record` whose outcome makes a rule fire: it builds the evidence (allocating) and,
//!   when the gate's writer lock is free, takes it and makes the rollback on the calling
//!   thread (in-memory work; the store is written by the store's thread), its ERROR lines sent
//!   to the log callback under the lock; when a write holds the lock, that write makes the
//!   rollback as it lets go, or, with a store, the store's thread does. They check the handle
//!   for NULL only: using a freed gate there is undefined.
//! - The other exception is a log callback set at `PGATE_LOG_LEVEL_DEBUG` or `TRACE`: then
//!   every `pgate_route`, `pgate_route_forced` and `pgate_record_by_id` formats its line
//!   (allocating), takes the callback's read lock for as long as it takes to copy the callback out
//!   (shared by the routing threads; `pgate_set_log_callback` holds the write side only to swap the
//!   callback, never while one runs) and calls the callback. At INFO and above, or without a
//!   callback, nothing changes (`tests/alloc_free.rs`).
//!
//! The header `include/promotion_gates.h` is generated from this module by cbindgen
//! (`cbindgen.toml`); `tests/header.rs` fails when the checked-in header is stale.
//!
//! The core's enums are `#[non_exhaustive]`, so each match that maps one to a C constant ends
//! in a wildcard arm (a later core's variant gets a safe general value). `.ci/run` builds this
//! crate on nightly with `--cfg promotion_gates_variants`, which denies such a match leaving
//! any variant of today to its wildcard: a new variant fails CI until it is mapped here.
#![cfg_attr(
    promotion_gates_variants,
    feature(non_exhaustive_omitted_patterns_lint),
    deny(non_exhaustive_omitted_patterns)
)]

mod boundary;
mod changes;
mod error;
mod gate;
mod judge;
mod log;
mod release;
mod route;
mod status;
mod telemetry;

pub use changes::{pgate_change_count, pgate_changes_json, pgate_sync_now};
pub use error::{pgate_error, pgate_error_free, pgate_error_message, pgate_error_status};
pub use gate::{
    PGATE_NAME_CAPACITY, PGATE_QUARANTINED_GATES, pgate_config_json, pgate_document_check_slo,
    pgate_document_fleet_judging, pgate_document_gate_name, pgate_fleet_judging, pgate_gate,
    pgate_gate_free, pgate_gate_name, pgate_gate_new, pgate_override_names, pgate_slo_json,
    pgate_state, pgate_store_location, pgate_swap_config, pgate_swap_config_from, pgate_swap_slo,
    pgate_version,
};
pub use judge::{
    PGATE_EVIDENCE_CAPACITY, pgate_check_slo, pgate_health, pgate_monitor_health,
    pgate_read_health, pgate_recommendation, pgate_rule,
};
pub use log::{pgate_log_callback, pgate_log_level, pgate_set_log_callback};
pub use release::{
    pgate_disable_feature, pgate_enable_feature, pgate_is_feature_enabled, pgate_promote,
    pgate_promote_from, pgate_rollback, pgate_rollback_history_json,
};
pub use route::{
    pgate_decision, pgate_environment, pgate_flag_set_len, pgate_flag_set_name, pgate_forced,
    pgate_record, pgate_record_abandoned, pgate_record_abandoned_as, pgate_record_by_id,
    pgate_record_by_id_forced, pgate_recorded, pgate_route, pgate_route_forced,
};
pub use status::{pgate_status, pgate_status_str};
pub use telemetry::{
    pgate_latency_histograms_json, pgate_metrics_prometheus, pgate_metrics_prometheus_counted,
    pgate_metrics_prometheus_gates, pgate_outcome_counts,
};
