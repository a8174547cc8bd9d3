//! The hot calls: route, record, and the flag names of a decision. After a thread's first call
//! on a gate, a route or a flag-name read neither allocates, nor takes a lock, nor writes
//! anything but the caller's memory and the calling thread's own cache; a record writes the
//! calling thread's own recorder, and allocates or locks only to make an evaluation that fell
//! due or that another thread asked for (never waiting for a lock), which may roll back.
//! `pgate_record_abandoned` and `pgate_record_abandoned_as` are cold calls: they check the
//! handle under the live gates' lock and read the SLO.

use std::ptr::null_mut;
use std::time::Duration;

use crate::boundary::{bytes, guard, write};
use crate::gate::{cold, hot, pgate_gate};
use crate::status::pgate_status;
use promotion_gates::StageId;
use promotion_gates::{Environment, Forced, ForcedBy, Recorded, RoutingDecision};

/// Where a gate stands.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pgate_environment {
    /// `traffic_percent` % of requests go to the new version.
    Canary = 0,
    /// All requests go to the new version, every flag on.
    Staging = 1,
    /// All requests go to the stable version.
    Production = 2,
}

crate::boundary::numbered!(pgate_environment {
    Canary,
    Staging,
    Production,
});

impl From<Environment> for pgate_environment {
    fn from(env: Environment) -> Self {
        match env {
            Environment::Canary { .. } => pgate_environment::Canary,
            Environment::Staging => pgate_environment::Staging,
            Environment::Production => pgate_environment::Production,
        }
    }
}

/// Whether an override forced a decision, and by what (`forced` in `pgate_decision`).
#[allow(non_camel_case_types)]
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pgate_forced {
    /// Routed by its bucket.
    None = 0,
    /// Forced by the forcing value passed to `pgate_route_forced` (from the header or cookie
    /// the config's `overrides` names).
    Value = 1,
    /// Forced by the config's `overrides.canary_ids` or `overrides.stable_ids`.
    IdList = 2,
}

impl From<Option<Forced>> for pgate_forced {
    fn from(forced: Option<Forced>) -> Self {
        match forced.map(|f| f.by) {
            None => pgate_forced::None,
            Some(ForcedBy::Value) => pgate_forced::Value,
            Some(ForcedBy::IdList) => pgate_forced::IdList,
            // Forced otherwise (a later core): forced all the same.
            Some(_) => pgate_forced::Value,
        }
    }
}

/// One routing decision, written by `pgate_route` into caller memory. Pass it back unchanged
/// to `pgate_record` so that the outcome counts for the stage and cohort it was routed in.
///
/// 40 bytes on every supported target: `forced` took one byte of the padding after
/// `is_canary`, so the size and every other field's offset are those of the release before it.
/// A caller that builds a decision by hand must zero it first (`forced` 0).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct pgate_decision {
    /// The release stage the request was routed in.
    pub stage: u64,
    /// The canary share at routing time (100 in Staging, 0 in Production).
    pub traffic_percent: f64,
    /// The request's bucket, `0 ..= 9999999`.
    pub bucket: u32,
    /// Requests with a bucket below this go to the new version.
    pub threshold: u32,
    /// The flag set on for this request: read it with `pgate_flag_set_len` and
    /// `pgate_flag_set_name` (0 is the empty set).
    pub flag_set: u32,
    /// The environment at routing time.
    pub environment: pgate_environment,
    /// Whether the request goes to the new version.
    pub is_canary: bool,
    /// Whether an override forced the request (then `is_canary` is the version forced to, and
    /// `pgate_record` counts the outcome in neither cohort), and by what.
    pub forced: pgate_forced,
}

/// What happened to a recorded outcome.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pgate_recorded {
    /// Counted for its stage and cohort.
    Counted = 0,
    /// Its stage had ended (a promotion or rollback came between): dropped.
    Late = 1,
    /// Its stage is newer than the gate's (not a decision of this gate): dropped.
    Foreign = 2,
    /// Its request was forced by an override: counted apart, in neither cohort.
    Forced = 3,
}

/// Routes a request id (any bytes; NULL with length 0 is the empty id) and writes the decision
/// to `*out`. Lock-free, allocation-free and frees nothing, after a write too (unless a log
/// callback takes DEBUG lines: see `PGATE_LOG_LEVEL_DEBUG`), deterministic. Thread-safe.
///
/// # Safety
/// `gate` must be a live gate; `id` NULL (with `id_len` 0) or `id_len` readable bytes; `out`
/// valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_route(
    gate: *const pgate_gate,
    id: *const u8,
    id_len: usize,
    out: *mut pgate_decision,
) -> pgate_status {
    // SAFETY: the caller's contract is `route_into`'s.
    unsafe { route_into(gate, id, id_len, out, || Ok(None)) }
}

/// Routes a request id like `pgate_route`, with the forcing value the host read from the
/// request (the value of the header or cookie named by the config's `overrides`): `value` NULL
/// (with `value_len` 0) when the request carried none, else `value_len` bytes (any bytes; an
/// empty value needs a non-NULL pointer, and NULL with a length is refused as
/// `PGATE_STATUS_NULL_POINTER`, as for the id; `canary` or `stable`,
/// ASCII case ignored, force the request; any other value is ignored and counted, never an
/// error). The config's id lists win over the value. A forced decision has `forced` set; a
/// value passed (`value` not NULL) whose decision has `forced` `PGATE_FORCED_NONE` is exactly
/// one the gate counted as ignored (`promotion_ignored_override_values_total`), so a host
/// counting those itself (see `pgate_outcome_counts`) needs nothing more.
/// Lock-free, allocation-free (as `pgate_route`), thread-safe.
///
/// # Safety
/// As `pgate_route`; `value` NULL (with `value_len` 0) or `value_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_route_forced(
    gate: *const pgate_gate,
    id: *const u8,
    id_len: usize,
    value: *const u8,
    value_len: usize,
    out: *mut pgate_decision,
) -> pgate_status {
    // SAFETY: forwarded: value NULL (with value_len 0) or value_len readable bytes.
    let value = || unsafe { forcing_value(value, value_len) };
    // SAFETY: the caller's contract is `route_into`'s.
    unsafe { route_into(gate, id, id_len, out, value) }
}

/// The forcing value at `value`: `None` for NULL with length 0, the bytes otherwise
/// (`NullPointer` for NULL with a length, as an id's).
///
/// # Safety
/// `value` must be NULL or `value_len` readable bytes.
#[inline(always)]
unsafe fn forcing_value<'v>(
    value: *const u8,
    value_len: usize,
) -> Result<Option<&'v [u8]>, pgate_status> {
    if value.is_null() && value_len == 0 {
        return Ok(None);
    }
    // SAFETY: value is NULL (refused by `bytes` for a non-zero length) or value_len readable
    // bytes (caller's contract).
    unsafe { bytes(value, value_len) }.map(Some)
}

/// The body of `pgate_route` and `pgate_route_forced`: routes `id` with the forcing value
/// `value` reads (after the id). Inlined, and generic over `value`, so that each entry point
/// has its own copy and `pgate_route` pays nothing for forcing values.
///
/// # Safety
/// `gate` must be a live gate; `id` NULL (with `id_len` 0) or `id_len` readable bytes; `out`
/// valid for a write.
#[inline(always)]
unsafe fn route_into<'v>(
    gate: *const pgate_gate,
    id: *const u8,
    id_len: usize,
    out: *mut pgate_decision,
    value: impl FnOnce() -> Result<Option<&'v [u8]>, pgate_status>,
) -> pgate_status {
    guard(|| {
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { hot(gate) }?;
        if out.is_null() {
            return Err(pgate_status::NullPointer);
        }
        // SAFETY: the caller guarantees id_len readable bytes at id.
        let id = unsafe { bytes(id, id_len) }?;
        let d = gate.manager.route_request_forced(id, value()?);
        // SAFETY: out is non-NULL and valid for a write (caller's contract).
        unsafe { write(out, to_c_decision(&d)) }
    })
}

/// The stage, canary byte and forced byte of a decision the caller may have copied or built:
/// its `bool` and enum fields are not trusted to hold valid values, so they are read as plain
/// integers.
///
/// # Safety
/// `decision` must be NULL or valid for a read of a `pgate_decision`.
#[inline(always)]
unsafe fn decision_fields(decision: *const pgate_decision) -> Result<(u64, u8, u8), pgate_status> {
    if decision.is_null() {
        return Err(pgate_status::NullPointer);
    }
    // SAFETY: decision is non-NULL and valid for a read of a pgate_decision (caller's
    // contract); addr_of! takes the fields' addresses without making a reference, and u64 and
    // u8 accept every bit pattern.
    Ok(unsafe {
        (
            std::ptr::addr_of!((*decision).stage).read_unaligned(),
            std::ptr::addr_of!((*decision).is_canary)
                .cast::<u8>()
                .read(),
            std::ptr::addr_of!((*decision).forced).cast::<u8>().read(),
        )
    })
}

fn to_c_decision(d: &RoutingDecision<'_>) -> pgate_decision {
    pgate_decision {
        stage: d.stage.get(),
        traffic_percent: d.target_environment.traffic_percent(),
        bucket: d.reason.bucket().get(),
        threshold: d.reason.threshold(),
        flag_set: d.enabled_features.set_id(),
        environment: d.target_environment.into(),
        is_canary: d.is_canary,
        forced: d.forced.into(),
    }
}

/// Records the outcome of a request routed by `*decision`: whether it succeeded and its
/// latency in nanoseconds. Only `stage`, `is_canary` and `forced` (any non-zero byte is true)
/// are read, so a decision copied or built by the caller is safe; one whose stage is newer than
/// the gate's is refused as `PGATE_RECORDED_FOREIGN`; a forced one is counted in neither
/// cohort, as `PGATE_RECORDED_FORCED`. If `recorded` is not NULL it receives what happened to the
/// outcome. Allocation-free after the calling thread's first record, and never waits for a
/// lock (see the Rust docs of `record_outcome`). May run the judge and roll back (a forced
/// outcome too: it may make an evaluation another thread asked for while it held the judge's
/// window): an evaluation in which a rule fires builds the evidence (allocating) and, if no
/// write holds the gate,
/// makes the rollback on this thread, which then sends its ERROR lines to the log callback
/// while it holds the gate's writer lock.
///
/// # Safety
/// `gate` must be a live gate; `decision` valid for a read; `recorded` NULL or valid for a
/// write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_record(
    gate: *const pgate_gate,
    decision: *const pgate_decision,
    success: bool,
    latency_ns: u64,
    recorded: *mut pgate_recorded,
) -> pgate_status {
    guard(|| {
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { hot(gate) }?;
        // SAFETY: forwarded: decision NULL or valid for a read (caller's contract).
        let (stage, canary_byte, forced_byte) = unsafe { decision_fields(decision) }?;
        let outcome = if forced_byte != 0 {
            gate.manager.record_forced(StageId::new(stage))
        } else {
            gate.manager.record_for(
                StageId::new(stage),
                canary_byte != 0,
                success,
                Duration::from_nanos(latency_ns),
            )
        };
        if recorded.is_null() {
            return Ok(());
        }
        // SAFETY: recorded is non-NULL and valid for a write (caller's contract).
        unsafe { write(recorded, to_c(outcome)) }
    })
}

/// Records a request routed by `*decision` whose client went away before the version
/// answered, `waited_ns` nanoseconds after the request was sent to it (a proxy's 499). A wait
/// longer than the SLO's `latency_target` counts as a success that missed its target, with
/// latency `waited_ns` (a lower bound): a canary that hangs is rolled back even when every
/// client gives up before the host's upstream timeout. A wait up to the target says nothing
/// of the version and records nothing. A client leaving is never a failure. `*recorded` (if
/// not NULL) is true when the wait was long enough and the request was passed on as such a
/// success (then counted, counted apart if forced, or dropped if late or foreign, as
/// `pgate_record` would), false for a wait up to the target. The decision is read as by `pgate_record`. A
/// cold-path call: the handle is checked (`PGATE_STATUS_INVALID_HANDLE` for a freed or
/// foreign one); it reads the SLO, and may run the judge and roll back.
///
/// # Safety
/// `gate` must be a live gate; `decision` valid for a read; `recorded` NULL or valid for a
/// write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_record_abandoned(
    gate: *const pgate_gate,
    decision: *const pgate_decision,
    waited_ns: u64,
    recorded: *mut bool,
) -> pgate_status {
    // SAFETY: forwarded contract; NULL recorded_as is not written.
    unsafe { pgate_record_abandoned_as(gate, decision, waited_ns, recorded, null_mut()) }
}

/// `pgate_record_abandoned`, that also writes what happened to the outcome passed on to
/// `*recorded_as` (if not NULL), as `pgate_record` does: `PGATE_RECORDED_COUNTED`, `_LATE`,
/// `_FOREIGN` or `_FORCED`. `*recorded_as` is written only when `*recorded` is true (a wait
/// longer than the SLO's `latency_target`). For a host that counts late, foreign and forced
/// outcomes itself (see `pgate_outcome_counts`).
///
/// ```c
/// bool recorded = false;
/// pgate_recorded as = PGATE_RECORDED_COUNTED;
/// if (pgate_record_abandoned_as(gate, &decision, waited_ns, &recorded, &as) == PGATE_STATUS_OK
///     && recorded && as == PGATE_RECORDED_FORCED) {
///     __atomic_fetch_add(&shared->forced, 1, __ATOMIC_RELAXED); // memory the processes share
/// }
/// ```
///
/// # Safety
/// As `pgate_record_abandoned`; `recorded_as` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_record_abandoned_as(
    gate: *const pgate_gate,
    decision: *const pgate_decision,
    waited_ns: u64,
    recorded: *mut bool,
    recorded_as: *mut pgate_recorded,
) -> pgate_status {
    guard(|| {
        // SAFETY: the caller keeps the gate alive during the call (checked against the
        // registry of live gates).
        let gate = unsafe { cold(gate) }?;
        // SAFETY: forwarded: decision NULL or valid for a read (caller's contract).
        let (stage, canary_byte, forced_byte) = unsafe { decision_fields(decision) }?;
        let outcome = gate.manager.record_abandoned_for(
            StageId::new(stage),
            canary_byte != 0,
            forced_byte != 0,
            Duration::from_nanos(waited_ns),
        );
        if !recorded.is_null() {
            // SAFETY: recorded is non-NULL and valid for a write (caller's contract).
            unsafe { write(recorded, outcome.is_some()) }?;
        }
        match outcome {
            // SAFETY: recorded_as is non-NULL and valid for a write (caller's contract).
            Some(outcome) if !recorded_as.is_null() => unsafe { write(recorded_as, to_c(outcome)) },
            _ => Ok(()),
        }
    })
}

/// Records an outcome by request id: the id is routed again under the current snapshot (one
/// more hash). Prefer `pgate_record` with the decision the request was routed by. As the id
/// is routed, a log callback at DEBUG receives its route line (see `PGATE_LOG_LEVEL_DEBUG`).
/// The id is routed without a forcing value: this call cannot see that a header or cookie
/// forced the request (only that an id list does), so such a request's outcome would count in
/// the cohort of its bucket. A host that routes with `pgate_route_forced` records by id with
/// `pgate_record_by_id_forced`, passing the same value.
///
/// # Safety
/// As `pgate_route` for `gate` and `id`; `recorded` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_record_by_id(
    gate: *const pgate_gate,
    id: *const u8,
    id_len: usize,
    success: bool,
    latency_ns: u64,
    recorded: *mut pgate_recorded,
) -> pgate_status {
    guard(|| {
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { hot(gate) }?;
        // SAFETY: the caller guarantees id_len readable bytes at id.
        let id = unsafe { bytes(id, id_len) }?;
        let d = gate.manager.route_request_bytes(id);
        let outcome = gate
            .manager
            .record_outcome(&d, success, Duration::from_nanos(latency_ns));
        if recorded.is_null() {
            return Ok(());
        }
        // SAFETY: recorded is non-NULL and valid for a write (caller's contract).
        unsafe { write(recorded, to_c(outcome)) }
    })
}

/// `pgate_record_by_id` for a request routed with `pgate_route_forced`: the id is routed again
/// under the current snapshot with the same forcing value (`value` NULL with `value_len` 0 when
/// the request carried none, as in `pgate_route_forced`; NULL with a length is
/// `PGATE_STATUS_NULL_POINTER`), so an outcome the value forced counts in neither cohort
/// (`PGATE_RECORDED_FORCED`), as `pgate_record` counts it with the decision. A value that forces
/// nothing is not counted again as ignored (`promotion_ignored_override_values_total` counts
/// routes), and no route line is sent to a log callback. Allocation-free after the calling
/// thread's first record (as `pgate_record`, which may also run the judge).
///
/// # Safety
/// As `pgate_route_forced` for `gate`, `id` and `value`; `recorded` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_record_by_id_forced(
    gate: *const pgate_gate,
    id: *const u8,
    id_len: usize,
    value: *const u8,
    value_len: usize,
    success: bool,
    latency_ns: u64,
    recorded: *mut pgate_recorded,
) -> pgate_status {
    guard(|| {
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { hot(gate) }?;
        // SAFETY: the caller guarantees id_len readable bytes at id.
        let id = unsafe { bytes(id, id_len) }?;
        // SAFETY: the caller guarantees value NULL (with value_len 0) or value_len readable
        // bytes.
        let value = unsafe { forcing_value(value, value_len) }?;
        let outcome = gate.manager.record_request_outcome_forced(
            id,
            value,
            success,
            Duration::from_nanos(latency_ns),
        );
        if recorded.is_null() {
            return Ok(());
        }
        // SAFETY: recorded is non-NULL and valid for a write (caller's contract).
        unsafe { write(recorded, to_c(outcome)) }
    })
}

fn to_c(outcome: Recorded) -> pgate_recorded {
    match outcome {
        Recorded::Counted => pgate_recorded::Counted,
        Recorded::Late => pgate_recorded::Late,
        Recorded::Foreign => pgate_recorded::Foreign,
        Recorded::Forced => pgate_recorded::Forced,
        // An outcome the C ABI has no constant for (a later core): not counted, as a late one.
        _ => pgate_recorded::Late,
    }
}

/// Writes the number of flags in flag set `set` (from a decision) to `*len_out`. Lock-free,
/// allocation-free.
///
/// A set number always names the same set (the gate never gives it to another). The set stays
/// readable while the gate uses it and for at least 60 writes after (`FLAG_SET_GRACE_WRITES`);
/// after that (unless this thread read it among its last two sets), or for a number the gate
/// never gave out, the call returns `PGATE_STATUS_UNKNOWN_FLAG_SET` and writes nothing.
///
/// # Safety
/// `gate` must be a live gate; `len_out` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_flag_set_len(
    gate: *const pgate_gate,
    set: u32,
    len_out: *mut usize,
) -> pgate_status {
    guard(|| {
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { hot(gate) }?;
        let flags = gate
            .manager
            .flag_set(set)
            .map_err(|_| pgate_status::UnknownFlagSet)?;
        let len = flags.len();
        // A set replaced between the two reads reads as empty: stale, not empty.
        if len == 0 && flags.is_stale() {
            return Err(pgate_status::UnknownFlagSet);
        }
        // SAFETY: caller's contract.
        unsafe { write(len_out, len) }
    })
}

/// Writes a pointer to the name of flag `index` of flag set `set` to `*name_out` and its
/// length in bytes to `*len_out`. The name is UTF-8, NOT NUL-terminated, owned by the gate and
/// valid until the gate is freed (even after the set is replaced). Names are in byte order.
/// Lock-free, allocation-free. `PGATE_STATUS_UNKNOWN_FLAG_SET` for a set number the gate no
/// longer holds (see `pgate_flag_set_len`), `PGATE_STATUS_INDEX_OUT_OF_RANGE` past the end.
///
/// # Safety
/// `gate` must be a live gate; `name_out` and `len_out` valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_flag_set_name(
    gate: *const pgate_gate,
    set: u32,
    index: usize,
    name_out: *mut *const u8,
    len_out: *mut usize,
) -> pgate_status {
    guard(|| {
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { hot(gate) }?;
        if name_out.is_null() || len_out.is_null() {
            return Err(pgate_status::NullPointer);
        }
        let flags = gate
            .manager
            .flag_set(set)
            .map_err(|_| pgate_status::UnknownFlagSet)?;
        let name = match flags.get(index) {
            Some(name) => name,
            // A set replaced between the two reads is stale, not short.
            None if flags.is_stale() => return Err(pgate_status::UnknownFlagSet),
            None => return Err(pgate_status::IndexOutOfRange),
        };
        // SAFETY: both are non-NULL and valid for writes (caller's contract).
        unsafe {
            write(name_out, name.as_ptr())?;
            write(len_out, name.len())
        }
    })
}
