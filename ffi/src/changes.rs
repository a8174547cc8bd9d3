//! Change notifications through the C ABI: a counter a host may read on every request, and
//! the recent changes as JSON (see the Rust `promotion_gates::changes`). The library never
//! calls host code for a change: a host that wants to act on one reads the counter where it
//! likes (a timer, each request) and, when it moved, the changes.

use std::ffi::c_char;

use crate::boundary::{guard, write};
use crate::gate::{cold, hot, json_out, pgate_gate};
use crate::release::{event_json, unix_ms};
use crate::status::pgate_status;

/// Writes the number of the gate's newest state change (0 before the first) to `*count`. A
/// hot call: one atomic load, no lock, no allocation, cheap enough for every request. Each
/// promotion, rollback (with its evidence), flag change, config swap and SLO swap
/// (`pgate_swap_slo` on this gate), and each write of another process applied from the state
/// store, adds one; `pgate_changes_json` says what changed. Another process's SLO swap adds
/// none: the SLO is each process's own and never stored, so this gate's does not change.
///
/// # Safety
/// `gate` must be a live gate (checked for NULL only, as on the route path); `count` valid for
/// a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_change_count(
    gate: *const pgate_gate,
    count: *mut u64,
) -> pgate_status {
    guard(|| {
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { hot(gate) }?;
        // SAFETY: caller's contract.
        unsafe { write(count, gate.manager.change_count()) }
    })
}

/// Asks the gate's state store sync thread to read the store now rather than at its next
/// `sync_interval_ms`, for a host that learned by its own means that another process wrote (the
/// nginx module's workers share a generation counter in shared memory for this). Returns at
/// once, having done no I/O; the sync thread reads the store and publishes what changed, and
/// `pgate_change_count` then moves. Asks made before the thread begins that read are merged
/// into one, so asking often queues nothing. `*asked` (if not NULL) is false when the gate has
/// no store. A cold call: the handle is checked.
///
/// # Safety
/// `gate` must be a live gate; `asked` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_sync_now(gate: *const pgate_gate, asked: *mut bool) -> pgate_status {
    guard(|| {
        // SAFETY: the caller keeps the gate alive during the call (checked against the
        // registry of live gates).
        let gate = unsafe { cold(gate) }?;
        let has_store = gate.manager.sync_now();
        if asked.is_null() {
            return Ok(());
        }
        // SAFETY: asked is non-NULL and valid for a write (caller's contract).
        unsafe { write(asked, has_store) }
    })
}

/// Writes the gate's kept changes numbered above `after` (the last 64 at most), oldest first,
/// as a JSON array (NUL-terminated) into `buf` of `cap` bytes and its length (without the NUL)
/// into `*len_out`.
/// Each change has `sequence`, `kind` (`rollback`, `promotion`, `flags` or `config`),
/// `origin` (`this_gate`, or `store` for another process's write), `stage`, `from` and `to`
/// (environments, as in the config document), `at_ms` (milliseconds since the Unix epoch),
/// `flags_enabled`, `flags_disabled` (at most 32 names together), `flags_unlisted` (how many
/// more) and `rollback` (the event, as in `pgate_rollback_history_json`, or null). A gap in
/// the `sequence` numbers shows changes no longer kept. If `buf` is NULL or `cap` is not above
/// the length, only `*len_out` is written and `PGATE_STATUS_BUFFER_TOO_SMALL` is returned: call
/// again with `*len_out + 1` bytes (see `PGATE_STATUS_BUFFER_TOO_SMALL`).
///
/// # Safety
/// `gate` must be a live gate; `buf` NULL or valid for `cap` bytes; `len_out` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_changes_json(
    gate: *const pgate_gate,
    after: u64,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> pgate_status {
    // SAFETY: forwarded contract (live gate, buffer, len_out).
    unsafe {
        json_out(gate, buf, cap, len_out, |manager| {
            manager
                .changes_since(after)
                .iter()
                .map(|change| {
                    serde_json::json!({
                        "sequence": change.sequence,
                        "kind": change.kind().name(),
                        "origin": change.origin.name(),
                        "stage": change.stage.get(),
                        "from": change.from,
                        "to": change.to,
                        "at_ms": unix_ms(change.at),
                        "flags_enabled": change.flags.enabled,
                        "flags_disabled": change.flags.disabled,
                        "flags_unlisted": change.flags.unlisted,
                        "rollback": change.rollback.as_ref().map(event_json),
                    })
                })
                .collect::<Vec<_>>()
        })
    }
}
