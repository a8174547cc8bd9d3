//! Gate handles: create from JSON, free, read and swap the config, the library version.

use std::collections::BTreeSet;
use std::ffi::c_char;
use std::sync::{Mutex, PoisonError};

use crate::boundary::{Failure, copy_out, guard, guard_err, text};
use crate::error::pgate_error;
use crate::status::pgate_status;
use promotion_gates::{PromotionConfig, PromotionGateManager, SloAdmissionController, SloConfig};

/// An opaque gate: one [`PromotionGateManager`]. Made by `pgate_gate_new`, freed by
/// `pgate_gate_free`. One handle may be used from many threads at once.
#[allow(non_camel_case_types)]
pub struct pgate_gate {
    pub(crate) manager: PromotionGateManager,
}

/// Addresses of the live gates, so cold-path calls can refuse a freed or foreign handle.
static LIVE: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());

fn live_set() -> std::sync::MutexGuard<'static, BTreeSet<usize>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Borrows a gate on the hot path: NULL is refused; liveness is the caller's contract.
///
/// # Safety
/// `gate` must be NULL or a live gate, not freed while the borrow lasts.
pub(crate) unsafe fn hot<'a>(gate: *const pgate_gate) -> Result<&'a pgate_gate, pgate_status> {
    // SAFETY: per the contract, gate is NULL or a live gate.
    unsafe { gate.as_ref() }.ok_or(pgate_status::NullPointer)
}

/// Borrows a gate on a cold path: NULL and handles that are not live gates are refused.
///
/// # Safety
/// `gate` must not be freed while the borrow lasts.
pub(crate) unsafe fn cold<'a>(gate: *const pgate_gate) -> Result<&'a pgate_gate, pgate_status> {
    if gate.is_null() {
        return Err(pgate_status::NullPointer);
    }
    if !live_set().contains(&(gate as usize)) {
        return Err(pgate_status::InvalidHandle);
    }
    // SAFETY: the address is in the live set, so it came from Box::into_raw in pgate_gate_new
    // and has not been freed; the caller does not free it during the borrow.
    Ok(unsafe { &*gate })
}

/// Runs `op` on a live gate with a UTF-8 text argument (`what` names it in errors): the shape
/// of every cold call that takes one string.
///
/// # Safety
/// `gate` must be a live gate; `ptr` NULL (with `len` 0) or `len` readable bytes; `err` NULL or
/// valid for a write.
pub(crate) unsafe fn with_text(
    gate: *const pgate_gate,
    ptr: *const u8,
    len: usize,
    what: &str,
    err: *mut *mut pgate_error,
    op: impl FnOnce(&PromotionGateManager, &str) -> Result<(), promotion_gates::Error>,
) -> pgate_status {
    guard_err(err, || {
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { cold(gate) }?;
        // SAFETY: the caller guarantees len readable bytes at ptr.
        let text = unsafe { text(ptr, len, what) }?;
        Ok(op(&gate.manager, text)?)
    })
}

/// Writes `value`, read from a live gate, as JSON into the caller's buffer (see
/// `pgate_config_json` for the buffer contract).
///
/// # Safety
/// `gate` must be a live gate; `buf` NULL or valid for `cap` bytes; `len_out` valid for a write.
pub(crate) unsafe fn json_out<T: serde::Serialize>(
    gate: *const pgate_gate,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
    value: impl FnOnce(&PromotionGateManager) -> T,
) -> pgate_status {
    guard(|| {
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { cold(gate) }?;
        let json =
            serde_json::to_string(&value(&gate.manager)).map_err(|_| pgate_status::InvalidJson)?;
        // SAFETY: forwarded buffer contract.
        unsafe { copy_out(&json, buf.cast(), cap, len_out) }
    })
}

/// Reads an optional JSON document (NULL with length 0 means the default) with `from_json`
/// (which may also validate it).
fn parse<T: Default>(
    json: Option<&str>,
    from_json: fn(&str) -> Result<T, promotion_gates::Error>,
    what: &str,
) -> Result<T, Failure> {
    match json {
        None => Ok(T::default()),
        Some(doc) => from_json(doc).map_err(|e| match e {
            promotion_gates::Error::Json(detail) => Failure::new(
                pgate_status::InvalidJson,
                format!("invalid JSON {what}: {detail}"),
            ),
            other => Failure::from(other),
        }),
    }
}

/// Creates a gate from a JSON `PromotionConfig` and a JSON `SloConfig` (field names as in
/// the Rust API; durations in milliseconds). Either document may be empty (length 0, any
/// pointer) for the defaults. On success `*gate_out` receives a new gate, which the caller frees with
/// `pgate_gate_free`; on failure nothing is written to it and, if `err` is not NULL, `*err`
/// receives an error object naming the field and value.
///
/// # Safety
/// The JSON pointers must be NULL or point to their lengths of readable bytes; `gate_out` must
/// be valid for a write; `err` must be NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_gate_new(
    config_json: *const u8,
    config_len: usize,
    slo_json: *const u8,
    slo_len: usize,
    gate_out: *mut *mut pgate_gate,
    err: *mut *mut pgate_error,
) -> pgate_status {
    guard_err(err, || {
        if gate_out.is_null() {
            return Err(pgate_status::NullPointer.into());
        }
        let optional = |ptr: *const u8, len: usize, what: &str| -> Result<Option<&str>, Failure> {
            if len == 0 {
                return Ok(None);
            }
            // SAFETY: the caller guarantees len readable bytes at ptr.
            unsafe { text(ptr, len, what) }.map(Some)
        };
        // Read without validating: `PromotionGateManager::new` validates, once.
        let config: PromotionConfig = parse(
            optional(config_json, config_len, "config")?,
            PromotionConfig::parse_json,
            "config",
        )?;
        let slo: SloConfig = parse(
            optional(slo_json, slo_len, "SLO config")?,
            SloConfig::from_json,
            "SLO config",
        )?;
        let slo = SloAdmissionController::new(slo).map_err(promotion_gates::Error::from)?;
        let manager = PromotionGateManager::new(config, slo)?;
        let gate = Box::into_raw(Box::new(pgate_gate { manager }));
        live_set().insert(gate as usize);
        // SAFETY: gate_out is non-NULL and valid for a write (caller's contract).
        unsafe { gate_out.write(gate) };
        Ok(())
    })
}

/// Frees a gate. NULL is accepted. A handle that is not a live gate is refused with
/// `PGATE_STATUS_INVALID_HANDLE` and nothing is freed. Liveness is tracked by address, so a
/// stale handle whose address a newer gate now has cannot be told apart: the check is a
/// debugging aid, not a guarantee.
///
/// No other call may be in flight on the gate, and decisions and flag names read from it
/// become invalid.
///
/// # Safety
/// `gate` must be NULL or a pointer returned by `pgate_gate_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_gate_free(gate: *mut pgate_gate) -> pgate_status {
    guard(|| {
        if gate.is_null() {
            return Ok(());
        }
        if !live_set().remove(&(gate as usize)) {
            return Err(pgate_status::InvalidHandle);
        }
        // SAFETY: the address was live, so it came from Box::into_raw and is reclaimed once
        // (it has just left the live set).
        drop(unsafe { Box::from_raw(gate) });
        Ok(())
    })
}

/// Writes the gate's current `PromotionConfig` as JSON (NUL-terminated) into `buf` of `cap`
/// bytes and its length (without the NUL) into `*len_out`. If `buf` is NULL or too small,
/// only `*len_out` is written and `PGATE_STATUS_BUFFER_TOO_SMALL` is returned: call again
/// with `*len_out + 1` bytes.
///
/// # Safety
/// `gate` must be a live gate; `buf` NULL or valid for `cap` bytes; `len_out` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_config_json(
    gate: *const pgate_gate,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> pgate_status {
    // SAFETY: forwarded contract.
    unsafe { json_out(gate, buf, cap, len_out, PromotionGateManager::config) }
}

/// Writes the gate's `SloConfig` as JSON, like `pgate_config_json`.
///
/// # Safety
/// As `pgate_config_json`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_slo_json(
    gate: *const pgate_gate,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> pgate_status {
    // SAFETY: forwarded contract.
    unsafe {
        json_out(gate, buf, cap, len_out, |m| {
            m.slo_controller().config().clone()
        })
    }
}

/// Replaces the gate's SLO policy with a JSON `SloConfig` (the document `pgate_slo_json`
/// writes; missing fields take their defaults), keeping the gate's state: its stage,
/// environment, flags, the outcomes in the window and the rollback history. The judge uses
/// the new policy from its next evaluation; outcomes already recorded keep the compliance
/// they were counted with. Published as a change of kind `config`. With a state store the SLO
/// stays this process's own (the store does not keep it). On failure (malformed JSON, an
/// unknown field, an invalid value: the message names the field and the value) the gate is
/// unchanged and `*err` (if not NULL) says why.
///
/// # Safety
/// `gate` must be a live gate; `json` NULL or `len` readable bytes; `err` NULL or valid for a
/// write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_swap_slo(
    gate: *const pgate_gate,
    json: *const u8,
    len: usize,
    err: *mut *mut pgate_error,
) -> pgate_status {
    // SAFETY: forwarded contract.
    unsafe {
        with_text(gate, json, len, "slo", err, |manager, doc| {
            manager.swap_slo(SloConfig::from_json(doc)?).map(drop)
        })
    }
}

/// Replaces the gate's config atomically with a JSON `PromotionConfig` (hot reload: not
/// gated). On failure the gate is unchanged and `*err` (if not NULL) says why.
///
/// # Safety
/// `gate` must be a live gate; `json` NULL or `len` readable bytes; `err` NULL or valid for a
/// write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_swap_config(
    gate: *const pgate_gate,
    json: *const u8,
    len: usize,
    err: *mut *mut pgate_error,
) -> pgate_status {
    // SAFETY: forwarded contract.
    unsafe {
        with_text(gate, json, len, "config", err, |manager, doc| {
            manager
                // Read without validating: `swap_config` validates, once.
                .swap_config(PromotionConfig::parse_json(doc)?)
                .map(drop)
        })
    }
}

/// Writes where the gate stands: its environment, canary share (100 in Staging, 0 in
/// Production) and stage. Reads the current snapshot only: no judging, no side effect.
///
/// # Safety
/// `gate` must be a live gate; the three outputs valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_state(
    gate: *const pgate_gate,
    environment: *mut crate::route::pgate_environment,
    traffic_percent: *mut f64,
    stage: *mut u64,
) -> pgate_status {
    guard(|| {
        if environment.is_null() || traffic_percent.is_null() || stage.is_null() {
            return Err(pgate_status::NullPointer);
        }
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { cold(gate) }?;
        let env = gate.manager.environment();
        let percent = env.traffic_percent();
        // SAFETY: all three are non-NULL and valid for writes (caller's contract).
        unsafe {
            environment.write(env.into());
            traffic_percent.write(percent);
            stage.write(gate.manager.stage().get());
        }
        Ok(())
    })
}

/// The library's version, e.g. `"0.1.0"`: a static string the caller must not free.
#[unsafe(no_mangle)]
pub extern "C" fn pgate_version() -> *const c_char {
    const VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
    ) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };
    VERSION.as_ptr()
}
