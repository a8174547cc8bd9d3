//! Writes through the C ABI: promote, roll back, flags, the rollback history.

use std::ffi::c_char;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::boundary::{Failure, Param, guard, guard_err, text, write};
use crate::error::pgate_error;
use crate::gate::{cold, cold_explained, json_out, pgate_gate, with_text};
use crate::log::refused_inside_callback;
use crate::route::pgate_environment;
use crate::status::pgate_status;
use promotion_gates::{Environment, RollbackEvent, StageId};

/// Promotes the gate to `environment` (0 Canary, 1 Staging, 2 Production; `traffic_percent`
/// is read only for Canary). Gated moves may be refused with `PGATE_STATUS_SLO_NOT_MET` or
/// `PGATE_STATUS_INSUFFICIENT_DATA`; invalid ones with `PGATE_STATUS_INVALID_PROMOTION`,
/// `PGATE_STATUS_ALREADY_THERE` or `PGATE_STATUS_INVALID_CONFIG` (percentage outside 0..=100
/// or NaN). On failure `*err` (if not NULL) holds the evidence and nothing changed, with one
/// exception: a `PGATE_STATUS_SLO_NOT_MET` whose judge fired a rule has rolled the canary back
/// if `auto_rollback_enabled` (as the Rust `promote` does; its message says so). A ramp down
/// is not gated, but the stage it ends is judged first: a fired rule rolls the canary back
/// so, and the ramp is refused with `PGATE_STATUS_SLO_NOT_MET`. A ramp loop
/// uses `pgate_promote_from` instead, so that a rollback made after its look is not followed
/// by a new rollout of the same build.
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
    // SAFETY: forwarded contract.
    unsafe {
        promote(
            "pgate_promote",
            gate,
            None,
            environment,
            traffic_percent,
            err,
        )
    }
}

/// `pgate_promote`, made only if the gate is still in release stage `stage` (read before the
/// caller decided: `pgate_state`'s stage, or a decision's). Otherwise
/// `PGATE_STATUS_STAGE_CHANGED`, and nothing changed: the judge or another process rolled
/// back or moved the gate after the caller's look, and a promotion to a canary share from
/// Production would start a new, ungated rollout of the build just rolled back.
///
/// # Safety
/// `gate` must be a live gate; `err` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_promote_from(
    gate: *const pgate_gate,
    stage: u64,
    environment: u32,
    traffic_percent: f64,
    err: *mut *mut pgate_error,
) -> pgate_status {
    let stage = Some(stage);
    // SAFETY: forwarded contract.
    unsafe {
        promote(
            "pgate_promote_from",
            gate,
            stage,
            environment,
            traffic_percent,
            err,
        )
    }
}

/// The body of `pgate_promote` and `pgate_promote_from` (`stage`: the release stage the latter
/// was given).
///
/// # Safety
/// As theirs.
unsafe fn promote(
    call: &'static str,
    gate: *const pgate_gate,
    stage: Option<u64>,
    environment: u32,
    traffic_percent: f64,
    err: *mut *mut pgate_error,
) -> pgate_status {
    guard_err(err, || {
        if let Some(refused) = refused_inside_callback(call) {
            return Err(refused);
        }
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { cold_explained(gate) }?;
        let target = match pgate_environment::from_u32(environment) {
            Some(pgate_environment::Canary) => Environment::Canary { traffic_percent },
            Some(pgate_environment::Staging) => Environment::Staging,
            Some(pgate_environment::Production) => Environment::Production,
            None => {
                return Err(Failure::new(
                    pgate_status::InvalidArgument,
                    format!(
                        "invalid environment = {environment}: {}",
                        pgate_environment::choices()
                    ),
                ));
            }
        };
        match stage {
            Some(stage) => gate.manager.promote_from(StageId::new(stage), target)?,
            None => gate.manager.promote(target)?,
        }
        Ok(())
    })
}

/// Rolls the release back to Production with a reason (UTF-8, `len` bytes, not blank).
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
        let param = Param {
            pointer: "reason",
            length: "len",
            what: "reason",
            document: None,
        };
        with_text(
            "pgate_rollback",
            gate,
            reason,
            len,
            param,
            err,
            |manager, reason| manager.rollback(reason),
        )
    }
}

/// The flag name of `pgate_enable_feature`, `pgate_disable_feature` and
/// `pgate_is_feature_enabled`.
const FLAG_NAME: Param = Param {
    pointer: "name",
    length: "len",
    what: "flag name",
    document: None,
};

/// Turns a release flag on (idempotent). The name is UTF-8, `len` bytes. In Canary and
/// Staging a flag newly on starts a new stage (promotion needs evidence gathered with it on);
/// the current stage is judged first, and `PGATE_STATUS_SLO_NOT_MET` when a rule fired in it
/// (with `auto_rollback_enabled`) or the record path's judge called for a rollback of it while
/// the write was being made: the rollback is made instead, the flag stays off.
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
        with_text(
            "pgate_enable_feature",
            gate,
            name,
            len,
            FLAG_NAME,
            err,
            |manager, name| manager.enable_feature(name),
        )
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
        with_text(
            "pgate_disable_feature",
            gate,
            name,
            len,
            FLAG_NAME,
            err,
            |manager, name| manager.disable_feature(name),
        )
    }
}

/// Writes whether a flag is on for the gate to `*enabled`. A name no flag can have is refused
/// as `pgate_enable_feature` refuses it, and nothing is written: `PGATE_STATUS_INVALID_FLAG`
/// (empty, over 128 bytes, with whitespace, control, format or invisible characters), or
/// `PGATE_STATUS_INVALID_ARGUMENT` for bytes that are not UTF-8.
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
        let name = unsafe { text(name, len, FLAG_NAME) }.map_err(|f| f.status)?;
        promotion_gates::validate_flag_name(name).map_err(|_| pgate_status::InvalidFlag)?;
        let on = gate.manager.is_feature_enabled(name);
        // SAFETY: caller's contract.
        unsafe { write(enabled, on) }
    })
}

/// Writes the rollback history as a JSON array, oldest first (NUL-terminated), into `buf` of
/// `cap` bytes and its length (without the NUL) into `*len_out`. Each event has `rolled_back` (`release` or
/// `flag`), `feature` (the environment rolled back from, or the flag's name), `reason`,
/// `timestamp_ms` (milliseconds since the Unix epoch), `environment`, `trigger` and `rules`
/// (the rules that fired, for an automatic rollback). If `buf` is NULL or `cap` is not above
/// the length, only `*len_out` is written and `PGATE_STATUS_BUFFER_TOO_SMALL` is returned: call
/// again with `*len_out + 1` bytes (see `PGATE_STATUS_BUFFER_TOO_SMALL`).
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
    // SAFETY: forwarded contract (live gate, buffer, len_out).
    unsafe {
        json_out(gate, buf, cap, len_out, |manager| {
            manager
                .rollback_history()
                .iter()
                .map(event_json)
                .collect::<Vec<_>>()
        })
    }
}

/// One rollback event as the C ABI writes it (the rollback history, a change's `rollback`):
/// `rolled_back`, `feature`, `reason`, `timestamp_ms`, `environment`, `trigger` and `rules`
/// (the rules that fired, for an automatic rollback; empty otherwise).
pub(crate) fn event_json(event: &RollbackEvent) -> serde_json::Value {
    let rules: Vec<&str> = event
        .evidence
        .iter()
        .flat_map(|evidence| evidence.fired())
        .map(|finding| finding.rule.name())
        .collect();
    serde_json::json!({
        "rolled_back": event.rolled_back.kind(),
        "feature": event.feature,
        "reason": event.reason,
        "timestamp_ms": unix_ms(event.timestamp),
        "environment": event.environment,
        "trigger": event.trigger.name(),
        "rules": rules,
    })
}

/// Milliseconds since the Unix epoch (0 before it, `u64::MAX` past its range).
pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    let ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    u64::try_from(ms).unwrap_or(u64::MAX)
}
