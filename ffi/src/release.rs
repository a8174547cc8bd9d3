//! Writes through the C ABI: promote, roll back, flags, the rollback history.

use std::ffi::c_char;
use std::time::UNIX_EPOCH;

use crate::boundary::{Failure, copy_out, guard, guard_err, text, write};
use crate::error::pgate_error;
use crate::gate::{cold, pgate_gate, with_text};
use crate::status::pgate_status;
use promotion_gates::Environment;

/// Promotes the gate to `environment` (0 Canary, 1 Staging, 2 Production; `traffic_percent`
/// is read only for Canary). Gated moves may be refused with `PGATE_STATUS_SLO_NOT_MET` or
/// `PGATE_STATUS_INSUFFICIENT_DATA`; invalid ones with `PGATE_STATUS_INVALID_PROMOTION`,
/// `PGATE_STATUS_ALREADY_THERE` or `PGATE_STATUS_INVALID_CONFIG` (percentage outside 0..=100
/// or NaN). On failure `*err` (if not NULL) holds the evidence and nothing changed, with one
/// exception: a `PGATE_STATUS_SLO_NOT_MET` whose judge fired a rule has rolled the canary back
/// if `auto_rollback_enabled` (as the Rust `promote` does).
///
/// # Safety
/// `gate` must be a live gate; `err` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_promote(
    gate: *const pgate_gate,
    environment: u32,
    traffic_percent: f64,
    err: *mut *mut pgate_error,
) -> pgate_status {
    guard_err(err, || {
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { cold(gate) }?;
        let target = match environment {
            0 => Environment::Canary { traffic_percent },
            1 => Environment::Staging,
            2 => Environment::Production,
            other => {
                return Err(Failure::new(
                    pgate_status::InvalidArgument,
                    format!(
                        "invalid environment = {other}: 0 (canary), 1 (staging) or 2 (production)"
                    ),
                ));
            }
        };
        gate.manager.promote(target)?;
        Ok(())
    })
}

/// Rolls the release back to Production with a reason (UTF-8, `len` bytes, not empty).
///
/// # Safety
/// `gate` must be a live gate; `reason` `len` readable bytes; `err` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_rollback(
    gate: *const pgate_gate,
    reason: *const u8,
    len: usize,
    err: *mut *mut pgate_error,
) -> pgate_status {
    // SAFETY: forwarded contract.
    unsafe {
        with_text(gate, reason, len, "reason", err, |manager, reason| {
            manager.rollback(reason)
        })
    }
}

/// Turns a release flag on (idempotent). The name is UTF-8, `len` bytes.
///
/// # Safety
/// `gate` must be a live gate; `name` `len` readable bytes; `err` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_enable_feature(
    gate: *const pgate_gate,
    name: *const u8,
    len: usize,
    err: *mut *mut pgate_error,
) -> pgate_status {
    // SAFETY: forwarded contract.
    unsafe {
        with_text(gate, name, len, "flag name", err, |manager, name| {
            manager.enable_feature(name)
        })
    }
}

/// Turns a flag off and records it in the rollback history.
///
/// # Safety
/// `gate` must be a live gate; `name` `len` readable bytes; `err` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_disable_feature(
    gate: *const pgate_gate,
    name: *const u8,
    len: usize,
    err: *mut *mut pgate_error,
) -> pgate_status {
    // SAFETY: forwarded contract.
    unsafe {
        with_text(gate, name, len, "flag name", err, |manager, name| {
            manager.disable_feature(name)
        })
    }
}

/// Writes whether a flag is on for the gate to `*enabled`.
///
/// # Safety
/// `gate` must be a live gate; `name` `len` readable bytes; `enabled` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_is_feature_enabled(
    gate: *const pgate_gate,
    name: *const u8,
    len: usize,
    enabled: *mut bool,
) -> pgate_status {
    guard(|| {
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { cold(gate) }?;
        // SAFETY: the caller guarantees len readable bytes at name.
        let name = unsafe { text(name, len, "flag name") }.map_err(|f| f.status)?;
        let on = gate.manager.is_feature_enabled(name);
        // SAFETY: caller's contract.
        unsafe { write(enabled, on) }
    })
}

/// Writes the rollback history as a JSON array, oldest first (NUL-terminated), into `buf` of
/// `cap` bytes and its length into `*len_out`. Each event has `rolled_back` (`release` or
/// `flag`), `feature` (the environment rolled back from, or the flag's name), `reason`,
/// `timestamp_ms` (milliseconds since the Unix epoch), `environment` and `trigger`. If `buf` is
/// NULL or too small, only `*len_out` is written and `PGATE_STATUS_BUFFER_TOO_SMALL` is
/// returned.
///
/// # Safety
/// `gate` must be a live gate; `buf` NULL or valid for `cap` bytes; `len_out` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_rollback_history_json(
    gate: *const pgate_gate,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> pgate_status {
    guard(|| {
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { cold(gate) }?;
        let events: Vec<serde_json::Value> = gate
            .manager
            .rollback_history()
            .into_iter()
            .map(|e| {
                let ms = e
                    .timestamp
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                serde_json::json!({
                    "rolled_back": e.rolled_back.kind(),
                    "feature": e.feature,
                    "reason": e.reason,
                    "timestamp_ms": u64::try_from(ms).unwrap_or(u64::MAX),
                    "environment": e.environment,
                    "trigger": e.trigger.name(),
                })
            })
            .collect();
        let json = serde_json::Value::Array(events).to_string();
        // SAFETY: forwarded buffer contract.
        unsafe { copy_out(&json, buf.cast(), cap, len_out) }
    })
}
