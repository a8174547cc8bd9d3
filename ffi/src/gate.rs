//! Gate handles: create from JSON, free, read and swap the config, the library version.

use std::collections::{BTreeSet, VecDeque};
use std::ffi::c_char;
use std::mem::ManuallyDrop;
use std::sync::{Mutex, PoisonError};

use crate::boundary::{
    Failure, Param, copy_out, guard, guard_err, null_output, optional_text, text, too_long, write,
};
use crate::error::pgate_error;
use crate::log::refused_inside_callback;
use crate::status::pgate_status;
use promotion_gates::{
    PromotionConfig, PromotionGateManager, SloAdmissionController, SloConfig, StoreConfig,
};

/// An opaque gate: one [`PromotionGateManager`]. Made by `pgate_gate_new`, freed by
/// `pgate_gate_free`. One handle may be used from many threads at once.
#[allow(non_camel_case_types)]
pub struct pgate_gate {
    /// Dropped by `pgate_gate_free`; the allocation itself outlives it in [`QUARANTINE`].
    pub(crate) manager: ManuallyDrop<PromotionGateManager>,
}

/// Addresses of the live gates, so cold-path calls can refuse a freed or foreign handle.
static LIVE: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());

fn live_set() -> std::sync::MutexGuard<'static, BTreeSet<usize>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How many freed gates keep their allocation, so that no new gate is given their address: a
/// stale handle is refused by `pgate_gate_free` and the calls that check their handle until
/// this many later gates were freed. Each holds a gate's handle allocation, at most 2 KiB (a
/// unit test holds it), so at most 512 KiB in all.
///
/// # Example
/// ```
/// assert_eq!(promotion_gates_ffi::PGATE_QUARANTINED_GATES, 256);
/// ```
pub const PGATE_QUARANTINED_GATES: usize = 256;

/// A freed gate's allocation, its manager already dropped.
struct Freed(*mut pgate_gate);

// SAFETY: a Freed is only an allocation waiting to be released; no thread reads through it
// (its manager was dropped, and its address is not in the live set), and the one that pops it
// from the quarantine releases it.
unsafe impl Send for Freed {}

/// The freed gates whose addresses are held back, oldest first.
static QUARANTINE: Mutex<VecDeque<Freed>> = Mutex::new(VecDeque::new());

/// How many gates [`QUARANTINE`] holds: `PGATE_QUARANTINED_GATES`, or 4 under Miri, so that a
/// test there frees past it in a few gates and Miri checks the release of the oldest (257
/// gates made and freed take far too long under Miri).
const QUARANTINE_LENGTH: usize = if cfg!(miri) {
    4
} else {
    PGATE_QUARANTINED_GATES
};

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

/// [`cold`] for calls that explain a failure: the message names the parameter `gate` and its
/// value (NULL, or the address that is not a live gate).
///
/// # Safety
/// As [`cold`].
pub(crate) unsafe fn cold_explained<'a>(
    gate: *const pgate_gate,
) -> Result<&'a pgate_gate, Failure> {
    // SAFETY: forwarded contract.
    unsafe { cold(gate) }.map_err(|status| match status {
        pgate_status::NullPointer => Failure::new(
            status,
            "invalid gate = NULL: a gate made by pgate_gate_new is needed",
        ),
        _ => Failure::new(
            status,
            format!(
                "invalid gate = {gate:p}: not a live gate (freed, or not made by pgate_gate_new)"
            ),
        ),
    })
}

/// Runs `op` on a live gate with a UTF-8 text argument (`param` names it in errors): the shape
/// of every cold call that takes one string.
///
/// # Safety
/// `gate` must be a live gate; `ptr` NULL (with `len` 0) or `len` readable bytes; `err` NULL or
/// valid for a write.
pub(crate) unsafe fn with_text(
    function: &str,
    gate: *const pgate_gate,
    ptr: *const u8,
    len: usize,
    param: Param,
    err: *mut *mut pgate_error,
    op: impl FnOnce(&PromotionGateManager, &str) -> Result<(), promotion_gates::Error>,
) -> pgate_status {
    guard_err(err, || {
        if let Some(refused) = refused_inside_callback(function) {
            return Err(refused);
        }
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { cold_explained(gate) }?;
        // SAFETY: the caller guarantees len readable bytes at ptr.
        let text = unsafe { text(ptr, len, param) }?;
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
        // An output that could not be written is the library's failure, not the caller's
        // document (`PGATE_STATUS_INVALID_JSON` is a JSON input that could not be read).
        let json = serde_json::to_string(&value(&gate.manager)).map_err(|_| pgate_status::Panic)?;
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
        Some(doc) => from_json(doc).map_err(|e| {
            if let promotion_gates::Error::Json(detail) = &e {
                Failure::new(
                    pgate_status::InvalidJson,
                    format!("invalid JSON {what}: {detail}"),
                )
            } else {
                Failure::from(e)
            }
        }),
    }
}

/// `error`, a refusal of configs read from `documents` (each JSON, or `None` for a default),
/// with a refused number shown as the document that holds it at the refused field writes it
/// ([`ConfigError::as_written`](promotion_gates::ConfigError::as_written)), not as read: the
/// library's `from_json` does so itself, and these documents are read without validation
/// and validated by the call they are passed to.
fn as_written(error: promotion_gates::Error, documents: &[Option<&str>]) -> promotion_gates::Error {
    let promotion_gates::Error::Config(refused) = error else {
        return error;
    };
    let holder = documents
        .iter()
        .flatten()
        .find(|doc| promotion_gates::written_json_number(doc, refused.field()).is_some());
    promotion_gates::Error::Config(match holder {
        Some(doc) => refused.as_written_in_json(doc),
        None => refused,
    })
}

/// The config document of `pgate_gate_new` and of the calls that read one alone
/// (`pgate_store_location`, `pgate_document_gate_name`, `pgate_document_fleet_judging`).
const CONFIG_JSON: Param = Param {
    pointer: "config_json",
    length: "config_len",
    what: "config",
    document: Some("PromotionConfig"),
};

/// The config document of `pgate_swap_config` and `pgate_swap_config_from`.
const SWAPPED_JSON: Param = Param {
    pointer: "json",
    length: "len",
    what: "config",
    document: Some("PromotionConfig"),
};

/// The SLO document of `pgate_gate_new` and `pgate_document_check_slo`.
const SLO_JSON: Param = Param {
    pointer: "slo_json",
    length: "slo_len",
    what: "SLO config",
    document: Some("SloConfig"),
};

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
            return Err(null_output("gate_out"));
        }
        // Read without validating: `PromotionGateManager::new` validates, once.
        // SAFETY: the caller guarantees config_len readable bytes at config_json.
        let document = unsafe { optional_text(config_json, config_len, CONFIG_JSON) }?;
        let config: PromotionConfig = parse(document, PromotionConfig::parse_json, "config")?;
        // SAFETY: the caller guarantees slo_len readable bytes at slo_json.
        let slo_document = unsafe { optional_text(slo_json, slo_len, SLO_JSON) }?;
        let slo: SloConfig = parse(slo_document, SloConfig::from_json, "SLO config")?;
        let slo = SloAdmissionController::new(slo).map_err(promotion_gates::Error::from)?;
        let manager = PromotionGateManager::new(config, slo)
            .map_err(|e| as_written(e, &[document, slo_document]))?;
        let gate = Box::into_raw(Box::new(pgate_gate {
            manager: ManuallyDrop::new(manager),
        }));
        live_set().insert(gate as usize);
        // SAFETY: gate_out is non-NULL and valid for a write (caller's contract).
        unsafe { gate_out.write(gate) };
        Ok(())
    })
}

/// Frees a gate. NULL is accepted. A handle that is not a live gate is refused with
/// `PGATE_STATUS_INVALID_HANDLE` and nothing is freed. Liveness is tracked by address, and a
/// freed gate's address is held back from new gates until `PGATE_QUARANTINED_GATES` (256)
/// later gates were freed: until then a stale handle is refused by every call that checks its
/// handle (a double free, or a cold-path call after the free); after that it could name a
/// newer gate. The check is a debugging aid, not a guarantee.
///
/// No other call may be in flight on the gate, and decisions and flag names read from it
/// become invalid. A gate with a store stops its store thread and waits for it: for a store
/// write under way (up to the store's timeout) and for a log callback that thread is running,
/// so the host must not call this while holding a lock its log callback takes (the callback,
/// on that thread, would wait for the lock, and this call for the callback).
///
/// # Safety
/// `gate` must be NULL or a pointer returned by `pgate_gate_new`, with no other call in flight
/// on it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_gate_free(gate: *mut pgate_gate) -> pgate_status {
    guard(|| {
        if gate.is_null() {
            return Ok(());
        }
        if refused_inside_callback("pgate_gate_free").is_some() {
            return Err(pgate_status::InvalidArgument);
        }
        if !live_set().remove(&(gate as usize)) {
            return Err(pgate_status::InvalidHandle);
        }
        // SAFETY: the address was live, so it came from Box::into_raw and its manager has not
        // been dropped; it has just left the live set, so this runs once for it. No other call
        // uses the manager meanwhile, so the `&mut` is exclusive: the caller's contract (`#
        // Safety`: no other call in flight on the gate; the header's "free it only when no
        // call is in flight") gives this call the gate alone.
        unsafe { ManuallyDrop::drop(&mut (*gate).manager) };
        let released = {
            let mut quarantine = QUARANTINE.lock().unwrap_or_else(PoisonError::into_inner);
            quarantine.push_back(Freed(gate));
            if quarantine.len() > QUARANTINE_LENGTH {
                quarantine.pop_front()
            } else {
                None
            }
        };
        if let Some(Freed(oldest)) = released {
            // SAFETY: the allocation came from Box::into_raw in pgate_gate_new, its manager was
            // dropped when it was freed (ManuallyDrop: not again here), and it left the
            // quarantine just now, once.
            drop(unsafe { Box::from_raw(oldest) });
        }
        Ok(())
    })
}

/// Writes the gate's current `PromotionConfig` as JSON (NUL-terminated) into `buf` of `cap`
/// bytes and its length (without the NUL) into `*len_out`. If `buf` is NULL or `cap` is not
/// above the length, only `*len_out` is written and `PGATE_STATUS_BUFFER_TOO_SMALL` is
/// returned: call again with `*len_out + 1` bytes, until `PGATE_STATUS_OK` (the text may have
/// grown meanwhile, see `PGATE_STATUS_BUFFER_TOO_SMALL`).
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
/// unchanged and `*err` (if not NULL) says why. Unlike `pgate_gate_new`'s, the document may
/// not be empty (length 0 is `PGATE_STATUS_INVALID_JSON`, as for `pgate_swap_config`): a swap
/// replaces a running gate's policy, so an empty buffer is taken as a host's mistake, not as
/// a request for the defaults, which `{}` asks for.
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
    guard_err(err, || {
        if let Some(refused) = refused_inside_callback("pgate_swap_slo") {
            return Err(refused);
        }
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { cold_explained(gate) }?;
        // SAFETY: the caller guarantees len readable bytes at json.
        let doc = unsafe {
            text(
                json,
                len,
                Param {
                    pointer: "json",
                    length: "len",
                    what: "SLO config",
                    document: Some("SloConfig"),
                },
            )
        }?;
        // Read as `pgate_gate_new` reads its SLO document: a malformed one is an
        // `invalid JSON SLO config`, not a config's.
        let slo = parse(Some(doc), SloConfig::from_json, "SLO config")?;
        gate.manager
            .swap_slo(slo)
            .map_err(|e| as_written(e, &[Some(doc)]))?;
        Ok(())
    })
}

/// Replaces the gate's config atomically with a JSON `PromotionConfig` (hot reload: not
/// gated). The gate keeps its name and its store: a document that changes either is refused
/// (`PGATE_STATUS_INVALID_CONFIG` naming `gate` or `store`). An empty document (length 0) is
/// `PGATE_STATUS_INVALID_JSON`, as for `pgate_swap_slo`. A swap that starts a stage (a new
/// split, environment or salt, or in Canary and Staging a flag newly on: the stage it ends is
/// judged first) is
/// `PGATE_STATUS_SLO_NOT_MET` when a rule fired in the current stage or the record path's judge
/// called for a rollback of it while the swap was being made: the rollback is made instead. On failure the swap is not made and `*err` (if not NULL) says
/// why.
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
        with_text(
            "pgate_swap_config",
            gate,
            json,
            len,
            SWAPPED_JSON,
            err,
            |manager, doc| {
                manager
                    // Read without validating: `swap_config` validates, once.
                    .swap_config(PromotionConfig::parse_json(doc)?)
                    .map(drop)
                    .map_err(|e| as_written(e, &[Some(doc)]))
            },
        )
    }
}

/// `pgate_swap_config`, made only if the gate has not changed since the caller read
/// `change_count` (`pgate_change_count`) before it read the config it edited
/// (`pgate_config_json`). Otherwise `PGATE_STATUS_GATE_CHANGED`, and nothing changed: a
/// rollback, a promotion, a flag turned on or off (`pgate_disable_feature`, a kill switch), a
/// config swap came first, made here or by another process (with a state store, one this gate
/// has not synced yet too), or an SLO swap made here (`pgate_swap_slo`; another process's SLO
/// swap changes that process's gate only: the SLO is never stored), and `pgate_swap_config` of
/// that config would undo it. Read the count first: a change between the two reads then
/// refuses the swap, never lets it through.
///
/// # Safety
/// `gate` must be a live gate; `json` NULL or `len` readable bytes; `err` NULL or valid for a
/// write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_swap_config_from(
    gate: *const pgate_gate,
    change_count: u64,
    json: *const u8,
    len: usize,
    err: *mut *mut pgate_error,
) -> pgate_status {
    // SAFETY: forwarded contract.
    unsafe {
        with_text(
            "pgate_swap_config_from",
            gate,
            json,
            len,
            SWAPPED_JSON,
            err,
            |manager, doc| {
                manager
                    // Read without validating: `swap_config_from` validates, once.
                    .swap_config_from(change_count, PromotionConfig::parse_json(doc)?)
                    .map(drop)
                    .map_err(|e| as_written(e, &[Some(doc)]))
            },
        )
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
        // One snapshot: the environment and the stage of the same state.
        let (env, current) = gate.manager.environment_and_stage();
        let percent = env.traffic_percent();
        // SAFETY: all three are non-NULL and valid for writes (caller's contract).
        unsafe {
            environment.write(env.into());
            traffic_percent.write(percent);
            stage.write(current.get());
        }
        Ok(())
    })
}

/// A buffer of this many bytes always holds a name `pgate_gate_name` or
/// `pgate_override_names` writes, with its NUL: the library refuses gate names and override
/// header and cookie names over `MAX_NAME_BYTES` (128).
pub const PGATE_NAME_CAPACITY: usize = 129;

/// Writes the gate's name (its config's `gate`: its key in the state store, the `gate` label
/// of its metrics, the `gate` field of its log lines) into `name` of `capacity` bytes,
/// NUL-terminated, and its length (without the NUL) into `*len`. A host declaring several
/// gates refuses two of one name: they would share one state in a store, and their metrics'
/// series would repeat.
///
/// If `name` is NULL or `capacity` is not above the length, only `*len` is written and
/// `PGATE_STATUS_BUFFER_TOO_SMALL` is returned: call again with `*len + 1` bytes (see
/// `PGATE_STATUS_BUFFER_TOO_SMALL`); a buffer of `PGATE_NAME_CAPACITY` bytes always suffices. A NULL `len` is
/// `PGATE_STATUS_NULL_POINTER`, a capacity above `PTRDIFF_MAX` `PGATE_STATUS_INVALID_ARGUMENT`,
/// and then nothing is written.
///
/// # Safety
/// `gate` must be a live gate; `name` NULL or valid for `capacity` bytes; `len` valid for a
/// write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_gate_name(
    gate: *const pgate_gate,
    name: *mut c_char,
    capacity: usize,
    len: *mut usize,
) -> pgate_status {
    guard(|| {
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { cold(gate) }?;
        let gate_name = gate.manager.gate_name();
        // SAFETY: forwarded buffer contract (copy_out checks NULL, the capacity and the fit).
        unsafe { copy_out(&gate_name, name.cast(), capacity, len) }
    })
}

/// Writes where the gate's config says a host reads a forcing value: the `overrides.header`
/// name into `header` of `header_cap` bytes and the `overrides.cookie` name into `cookie` of
/// `cookie_cap` bytes, each NUL-terminated, and their lengths (without the NUL) into
/// `*header_len` and `*cookie_len`. A name the config does not give has length 0 (and is
/// written as the empty string). Both names are read from one config, so they belong
/// together. A config swap (this process's, or another's applied from the state store) moves
/// `pgate_change_count`: a host that keeps the names reads them again when the count moved.
///
/// If a buffer is NULL or its capacity is not above its name's length, both lengths are
/// written, neither name is, and `PGATE_STATUS_BUFFER_TOO_SMALL` is returned: call again with
/// each length + 1 bytes (see `PGATE_STATUS_BUFFER_TOO_SMALL`); buffers of
/// `PGATE_NAME_CAPACITY` bytes always suffice. A NULL `header_len` or `cookie_len` is `PGATE_STATUS_NULL_POINTER`, a
/// capacity above `PTRDIFF_MAX` `PGATE_STATUS_INVALID_ARGUMENT`, and then nothing is
/// written.
///
/// # Safety
/// `gate` must be a live gate; `header` NULL or valid for `header_cap` bytes, `cookie` NULL
/// or valid for `cookie_cap` bytes; `header_len` and `cookie_len` valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_override_names(
    gate: *const pgate_gate,
    header: *mut c_char,
    header_cap: usize,
    header_len: *mut usize,
    cookie: *mut c_char,
    cookie_cap: usize,
    cookie_len: *mut usize,
) -> pgate_status {
    guard(|| {
        if header_len.is_null() || cookie_len.is_null() {
            return Err(pgate_status::NullPointer);
        }
        if header_cap > isize::MAX as usize || cookie_cap > isize::MAX as usize {
            return Err(pgate_status::InvalidArgument);
        }
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { cold(gate) }?;
        let overrides = gate.manager.config().overrides.unwrap_or_default();
        let header_name = overrides.header.unwrap_or_default();
        let cookie_name = overrides.cookie.unwrap_or_default();
        let fits = |buf: *mut c_char, cap: usize, name: &str| !buf.is_null() && cap > name.len();
        if !fits(header, header_cap, &header_name) || !fits(cookie, cookie_cap, &cookie_name) {
            // SAFETY: both are non-NULL and valid for writes (caller's contract).
            unsafe {
                header_len.write(header_name.len());
                cookie_len.write(cookie_name.len());
            }
            return Err(pgate_status::BufferTooSmall);
        }
        // SAFETY: both buffers are non-NULL with room for their names and a NUL (checked
        // above) and valid for their capacities, the lengths valid for writes (caller's
        // contract).
        unsafe {
            copy_out(&header_name, header.cast(), header_cap, header_len)?;
            copy_out(&cookie_name, cookie.cast(), cookie_cap, cookie_len)
        }
    })
}

/// Writes whether the gate's state store sums the outcomes every process records for the
/// judge (`fleet_judging` of the config's `store` section, on unless the document turns it
/// off) to `*fleet_judging`; false for a gate without a store. A running gate keeps the store
/// it was opened with, so the answer never changes for a gate. A host that already pools its
/// processes' outcomes itself (the nginx module's workers) refuses a gate that answers true:
/// every outcome would be counted once per process.
///
/// # Safety
/// `gate` must be a live gate; `fleet_judging` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_fleet_judging(
    gate: *const pgate_gate,
    fleet_judging: *mut bool,
) -> pgate_status {
    guard(|| {
        if fleet_judging.is_null() {
            return Err(pgate_status::NullPointer);
        }
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { cold(gate) }?;
        let sums = gate
            .manager
            .config()
            .store
            .is_some_and(|store| store.fleet_judging());
        // SAFETY: fleet_judging is non-NULL and valid for a write (caller's contract).
        unsafe { write(fleet_judging, sums) }
    })
}

/// Reads a config document (NULL with length 0: the default one) and validates it as
/// `pgate_gate_new` does, opening and creating nothing: all but the window against the SLO's
/// `evaluation_interval_ms`, which depends on the SLO (`pgate_document_check_slo` checks it).
///
/// # Safety
/// `config_json` must be NULL or point to `config_len` readable bytes.
unsafe fn read_document(
    config_json: *const u8,
    config_len: usize,
) -> Result<PromotionConfig, Failure> {
    // SAFETY: forwarded to the caller.
    let document = unsafe { optional_text(config_json, config_len, CONFIG_JSON) }?;
    parse(document, PromotionConfig::from_json, "config")
}

/// Writes `read` of a config document (see [`read_document`]) into the caller's buffer `buf`
/// of `cap` bytes, NUL-terminated, and its length into `*len_out`; `what` is the C name of
/// the buffer parameter and of what it receives (`location`, `name`), for the messages. The
/// outputs are checked before the document is read; a buffer too small (or NULL) gets the
/// length only.
///
/// # Safety
/// `config_json` must be NULL or point to `config_len` readable bytes; `buf` NULL or valid
/// for `cap` bytes; `len_out` NULL or valid for a write; `err` NULL or valid for a write.
#[allow(clippy::too_many_arguments)] // the C call's arguments, and the names of two of them
unsafe fn text_of_document(
    config_json: *const u8,
    config_len: usize,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
    err: *mut *mut pgate_error,
    what: &str,
    read: impl FnOnce(PromotionConfig) -> String,
) -> pgate_status {
    // A buffer too small is a size probe's answer, not a failure to explain: only the length
    // is written, no error object (a host probing with NULL, 0 would leak one per probe).
    let mut too_small = false;
    let status = guard_err(err, || {
        if len_out.is_null() {
            return Err(null_output("len_out"));
        }
        if cap > isize::MAX as usize {
            return Err(too_long("cap", cap));
        }
        // SAFETY: the caller guarantees config_len readable bytes at config_json.
        let text = read(unsafe { read_document(config_json, config_len) }?);
        // SAFETY: forwarded buffer contract; len_out is not NULL and cap fits (checked above),
        // so the one failure left is a buffer too small for the text and its NUL.
        match unsafe { copy_out(&text, buf.cast(), cap, len_out) } {
            Err(pgate_status::BufferTooSmall) => too_small = true,
            Err(status) => return Err(Failure::new(status, format!("invalid {what} buffer"))),
            Ok(()) => {}
        }
        Ok(())
    });
    if too_small {
        pgate_status::BufferTooSmall
    } else {
        status
    }
}

/// Writes where a config document's state store keeps the gate's state, read from the document
/// alone (nothing is opened or created): `sqlite:` and the file path as the document writes it
/// (a relative path is opened against the working directory of the process that opens the
/// gate), `etcd:` and the key prefix, or the empty string for a document without a `store`
/// (its gate's state lives and dies with the gate). NUL-terminated into `location` of `cap`
/// bytes, its length (without the NUL) into `*len_out`. A host that resolves paths itself, or
/// refuses a relative one, asks before `pgate_gate_new` would create the file; a host that
/// shares memory between the processes of one gate keys it by this and the gate's name.
///
/// The document is read and validated as `pgate_gate_new` reads it, all but one check this
/// call cannot make, as it takes no SLO: `rollback_window_seconds` against the SLO's
/// `evaluation_interval_ms` (the interval at most a tenth of the window), which
/// `pgate_document_check_slo` checks for the SLO the gate will be opened with. So
/// `{"rollback_window_seconds": 5}` is read here, and `pgate_gate_new` refuses it with the
/// default SLO (its interval is 1 s), accepts it with an interval of 500 ms or less. On failure
/// nothing is written and, if `err` is not NULL, `*err` receives an error object naming the
/// field and value. If `location` is NULL or `cap` is not above the length, only `*len_out` is
/// written (no error object: a size probe leaves nothing to free) and
/// `PGATE_STATUS_BUFFER_TOO_SMALL` is returned: call again with `*len_out + 1` bytes (see
/// `PGATE_STATUS_BUFFER_TOO_SMALL`).
///
/// # Safety
/// `config_json` must be NULL or point to `config_len` readable bytes (length 0 for the
/// default document); `location` NULL or valid for `cap` bytes; `len_out` valid for a write;
/// `err` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_store_location(
    config_json: *const u8,
    config_len: usize,
    location: *mut c_char,
    cap: usize,
    len_out: *mut usize,
    err: *mut *mut pgate_error,
) -> pgate_status {
    let place = |config: PromotionConfig| match config.store {
        None => String::new(),
        Some(StoreConfig::Sqlite(sqlite)) => format!("sqlite:{}", sqlite.path),
        Some(StoreConfig::Etcd(etcd)) => format!("etcd:{}", etcd.prefix),
    };
    // SAFETY: forwarded contract.
    unsafe {
        text_of_document(
            config_json,
            config_len,
            location,
            cap,
            len_out,
            err,
            "location",
            place,
        )
    }
}

/// Writes the gate name of a config document (its `gate` field, or `default` when it has
/// none), read from the document alone: nothing is opened or created. This is what
/// `pgate_gate_name` answers for a gate opened from the document, so a host that refuses two
/// declarations of one name can refuse the second before `pgate_gate_new` would write its
/// state into a store.
///
/// The document is read and validated as `pgate_gate_new` reads it (length 0: the default
/// document), all but the window against the SLO's `evaluation_interval_ms`, which depends on
/// the SLO this call does not take (`pgate_document_check_slo` checks the pair: see
/// `pgate_store_location`). On failure nothing is written and, if `err` is not NULL, `*err`
/// receives an error object naming the field and value. The name goes NUL-terminated into
/// `name` of `cap` bytes, its length (without the NUL) into `*len_out`. If `name` is NULL or
/// `cap` is not above the length, only `*len_out` is written (no error object) and
/// `PGATE_STATUS_BUFFER_TOO_SMALL` is returned: call again with `*len_out + 1` bytes (see
/// `PGATE_STATUS_BUFFER_TOO_SMALL`); a buffer of `PGATE_NAME_CAPACITY` bytes always suffices. A NULL `len_out` is
/// `PGATE_STATUS_NULL_POINTER`, a `cap` above `PTRDIFF_MAX` `PGATE_STATUS_INVALID_ARGUMENT`,
/// and then nothing is written.
///
/// # Safety
/// `config_json` must be NULL or point to `config_len` readable bytes; `name` NULL or valid
/// for `cap` bytes; `len_out` NULL or valid for a write; `err` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_document_gate_name(
    config_json: *const u8,
    config_len: usize,
    name: *mut c_char,
    cap: usize,
    len_out: *mut usize,
    err: *mut *mut pgate_error,
) -> pgate_status {
    // SAFETY: forwarded contract.
    unsafe {
        text_of_document(
            config_json,
            config_len,
            name,
            cap,
            len_out,
            err,
            "name",
            |c| c.gate,
        )
    }
}

/// Writes whether a config document's state store sums the outcomes every process records
/// for the judge (`fleet_judging` of its `store` section, on unless the document turns it
/// off) to `*fleet_judging`; false for a document without a store. Read from the document
/// alone: nothing is opened or created. This is what `pgate_fleet_judging` answers for a gate
/// opened from the document, so a host that pools its processes' outcomes itself can refuse
/// the document before `pgate_gate_new` would write its state into the store.
///
/// The document is read and validated as `pgate_gate_new` reads it (length 0: the default
/// document), all but the window against the SLO's `evaluation_interval_ms`, which depends on
/// the SLO this call does not take (`pgate_document_check_slo` checks the pair: see
/// `pgate_store_location`). On failure nothing is written and, if `err` is not NULL, `*err`
/// receives an error object naming the field and value. A NULL `fleet_judging` is
/// `PGATE_STATUS_NULL_POINTER`.
///
/// # Safety
/// `config_json` must be NULL or point to `config_len` readable bytes; `fleet_judging` NULL
/// or valid for a write; `err` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_document_fleet_judging(
    config_json: *const u8,
    config_len: usize,
    fleet_judging: *mut bool,
    err: *mut *mut pgate_error,
) -> pgate_status {
    guard_err(err, || {
        if fleet_judging.is_null() {
            return Err(null_output("fleet_judging"));
        }
        // SAFETY: the caller guarantees config_len readable bytes at config_json.
        let config = unsafe { read_document(config_json, config_len) }?;
        let sums = config.store.is_some_and(|store| store.fleet_judging());
        // SAFETY: fleet_judging is non-NULL (checked above) and valid for a write (caller's
        // contract).
        unsafe { fleet_judging.write(sums) };
        Ok(())
    })
}

/// Checks an SLO document against a config document as `pgate_gate_new` checks the pair (the
/// SLO's own fields, and its `evaluation_interval_ms` against the config's
/// `rollback_window_seconds`), read from the documents alone: nothing is opened or created.
/// Either document may be empty (length 0, any pointer) for the defaults. A host that opens a
/// gate's store later (after the rest of its configuration was read) asks this first, so a
/// pair the gate would refuse fails before the store is written.
///
/// On failure, if `err` is not NULL, `*err` receives an error object naming the field and
/// value.
///
/// # Safety
/// `config_json` must be NULL or point to `config_len` readable bytes, `slo_json` NULL or
/// point to `slo_len` readable bytes; `err` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_document_check_slo(
    config_json: *const u8,
    config_len: usize,
    slo_json: *const u8,
    slo_len: usize,
    err: *mut *mut pgate_error,
) -> pgate_status {
    guard_err(err, || {
        // SAFETY: the caller guarantees config_len readable bytes at config_json.
        let config = unsafe { read_document(config_json, config_len) }?;
        // SAFETY: the caller guarantees slo_len readable bytes at slo_json.
        let slo_document = unsafe { optional_text(slo_json, slo_len, SLO_JSON) }?;
        let slo: SloConfig = parse(slo_document, SloConfig::from_json, "SLO config")?;
        slo.validate_for(&config)
            .map_err(|e| as_written(e.into(), &[slo_document]))?;
        Ok(())
    })
}

/// The words before the version in [`VERSION_RECORD`].
const VERSION_WORDS: &str = "promotion_gates_ffi version ";

/// The library's version after [`VERSION_WORDS`], one string in the library's read-only data,
/// which `pgate_version` returns the end of: `packaging/install.sh --no-build` finds the
/// version of a build by these words (`grep -a`) without loading it (it may be built for
/// another target), and refuses one of another version than the checkout's, as a patch
/// release's, whose SONAME is the same.
const VERSION_RECORD: &str = concat!(
    "promotion_gates_ffi version ",
    env!("CARGO_PKG_VERSION"),
    "\0"
);

/// The library's version, e.g. `"0.1.0"`: a static string the caller must not free.
#[unsafe(no_mangle)]
pub extern "C" fn pgate_version() -> *const c_char {
    const VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
        VERSION_RECORD.as_bytes().split_at(VERSION_WORDS.len()).1,
    ) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };
    VERSION.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarantined_gate_holds_at_most_2_kib() {
        assert!(std::mem::size_of::<pgate_gate>() <= 2048);
    }

    #[test]
    fn the_version_is_the_packages_after_the_words_install_sh_reads() {
        assert!(
            VERSION_RECORD.starts_with(VERSION_WORDS),
            "{VERSION_RECORD}"
        );
        // SAFETY: pgate_version returns a static NUL-terminated string.
        let version = unsafe { std::ffi::CStr::from_ptr(pgate_version()) };
        assert_eq!(version.to_str(), Ok(env!("CARGO_PKG_VERSION")));
        assert_eq!(
            VERSION_RECORD,
            format!("{VERSION_WORDS}{}\0", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn the_name_capacity_holds_the_longest_name_and_its_nul() {
        assert_eq!(PGATE_NAME_CAPACITY, promotion_gates::MAX_NAME_BYTES + 1);
    }
}
