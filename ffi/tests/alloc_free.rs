//! The hot calls (routes, records, the flag-set reads and the change count) allocate nothing
//! and free nothing after a thread's first call, with or without a log callback, except at
//! `PGATE_LOG_LEVEL_DEBUG` (and `TRACE`), where every route, forced or not, formats its line
//! for the callback (the documented exception; `pgate_record_by_id_forced` sends no route
//! line, so it is no exception); after a write too (the snapshot a write replaced is freed by
//! the writer side, never by a route or a record).
//!
//! The counting global allocator (the core's `tests/common/alloc.rs`) counts the measuring
//! thread's allocations and frees only. The log callback is process-wide, so this binary holds
//! one test.
#![allow(unsafe_code)]

#[path = "../../tests/common/alloc.rs"]
#[allow(dead_code)]
mod alloc;
mod common;

use std::ffi::{c_char, c_void};
use std::ptr::null_mut;

use alloc::{Allocated, allocations_during};
use common::{new_gate, record, route};
use promotion_gates_ffi::*;

/// Requests routed and recorded per measurement.
const REQUESTS: u32 = 1_000;

/// A callback that ignores its line.
unsafe extern "C" fn ignore(
    _: *mut c_void,
    _: pgate_log_level,
    _: *const c_char,
    _: *const c_char,
    _: usize,
) {
}

/// Sets the log callback (`None` for none) at `level`.
fn set_callback(callback: pgate_log_callback, level: pgate_log_level) {
    // SAFETY: `ignore` may be called from any thread; err may be NULL.
    let status = unsafe { pgate_set_log_callback(callback, null_mut(), level as u32, null_mut()) };
    assert_eq!(status, pgate_status::Ok);
}

/// Neither an allocation nor a free.
const NOTHING: Allocated = Allocated {
    count: 0,
    bytes: 0,
    frees: 0,
};

/// [`NOTHING`] for each of the four measures of [`allocations`].
const NONE: (Allocated, Allocated, Allocated, Allocated) = (NOTHING, NOTHING, NOTHING, NOTHING);

/// The forcing values `pgate_record_by_id_forced` is passed in turn: one that forces (the
/// gates' configs name a header), one that forces nothing, and none (NULL with length 0).
const VALUES: [Option<&[u8]>; 3] = [Some(b"canary"), Some(b"bogus"), None];

/// The allocations and frees of `REQUESTS` routes, then of as many records, then of as many
/// records by id (each routes its id again), then of as many records by id with each of
/// [`VALUES`] in turn, on this thread.
fn allocations(gate: *const pgate_gate) -> (Allocated, Allocated, Allocated, Allocated) {
    let ids: Vec<String> = (0..REQUESTS).map(|i| format!("user-{i}")).collect();
    let mut decisions: Vec<pgate_decision> = ids
        .iter()
        // SAFETY: a zeroed decision is a valid value of the plain C struct.
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    let ((), routed) = allocations_during(|| {
        for (id, d) in ids.iter().zip(&mut decisions) {
            // SAFETY: a live gate (the caller's).
            *d = unsafe { route(gate, id.as_bytes()) };
        }
    });
    let ((), recorded) = allocations_during(|| {
        for d in &decisions {
            // SAFETY: a live gate, a decision it made.
            unsafe { record(gate, d, true, 1_000_000) };
        }
    });
    let ((), by_id) = allocations_during(|| {
        for id in &ids {
            // SAFETY: a live gate, a live id; the status pointer may be NULL.
            let status = unsafe {
                pgate_record_by_id(gate, id.as_ptr(), id.len(), true, 1_000_000, null_mut())
            };
            assert_eq!(status, pgate_status::Ok);
        }
    });
    let ((), forced) = allocations_during(|| {
        for (id, value) in ids.iter().zip(VALUES.iter().cycle()) {
            let (value_ptr, value_len) =
                value.map_or((std::ptr::null(), 0), |v| (v.as_ptr(), v.len()));
            let mut outcome = pgate_recorded::Counted;
            // SAFETY: a live gate, a live id, a live value or NULL with 0, a live outcome.
            let status = unsafe {
                pgate_record_by_id_forced(
                    gate,
                    id.as_ptr(),
                    id.len(),
                    value_ptr,
                    value_len,
                    true,
                    1_000_000,
                    &mut outcome,
                )
            };
            assert_eq!(status, pgate_status::Ok);
            // Only `canary` forces: the measure covers a forced record and two routed ones.
            let canary = *value == Some(b"canary".as_slice());
            assert_eq!(outcome == pgate_recorded::Forced, canary, "{value:?}");
        }
    });
    (routed, recorded, by_id, forced)
}

/// The allocations and frees of `REQUESTS` forced routes (each value of [`VALUES`] in turn),
/// then of the flag-set reads of as many decisions (`pgate_flag_set_len`, then
/// `pgate_flag_set_name` of each name), then of as many `pgate_change_count`s, on this thread.
fn read_allocations(gate: *const pgate_gate) -> [Allocated; 4] {
    let ids: Vec<String> = (0..REQUESTS).map(|i| format!("user-{i}")).collect();
    // SAFETY: a zeroed decision is a valid value of the plain C struct.
    let mut decisions: Vec<pgate_decision> = vec![unsafe { std::mem::zeroed() }; ids.len()];
    let ((), forced) = allocations_during(|| {
        for ((id, d), value) in ids.iter().zip(&mut decisions).zip(VALUES.iter().cycle()) {
            let (value_ptr, value_len) =
                value.map_or((std::ptr::null(), 0), |v| (v.as_ptr(), v.len()));
            // SAFETY: a live gate, a live id, a live value or NULL with 0, a live decision.
            let status =
                unsafe { pgate_route_forced(gate, id.as_ptr(), id.len(), value_ptr, value_len, d) };
            assert_eq!(status, pgate_status::Ok);
        }
    });
    let mut lens = vec![0usize; decisions.len()];
    let ((), len) = allocations_during(|| {
        for (d, len) in decisions.iter().zip(&mut lens) {
            // SAFETY: a live gate, one of its decisions' sets, a live length.
            let status = unsafe { pgate_flag_set_len(gate, d.flag_set, len) };
            assert_eq!(status, pgate_status::Ok);
        }
    });
    let mut names = 0;
    let ((), name) = allocations_during(|| {
        for (d, &len) in decisions.iter().zip(&lens) {
            for index in 0..len {
                let (mut ptr, mut name_len) = (std::ptr::null(), 0);
                // SAFETY: a live gate, one of its decisions' sets, live outputs.
                let status = unsafe {
                    pgate_flag_set_name(gate, d.flag_set, index, &mut ptr, &mut name_len)
                };
                assert_eq!(status, pgate_status::Ok);
                names += name_len;
            }
        }
    });
    assert!(
        names > 0,
        "the decisions carried no flag: nothing was measured"
    );
    let ((), count) = allocations_during(|| {
        for _ in 0..REQUESTS {
            let mut count = 0;
            // SAFETY: a live gate, a live output.
            let status = unsafe { pgate_change_count(gate, &mut count) };
            assert_eq!(status, pgate_status::Ok);
        }
    });
    [forced, len, name, count]
}

/// [`NOTHING`] for each of the four measures of [`read_allocations`].
const NO_READ: [Allocated; 4] = [NOTHING; 4];

#[test]
fn hot_calls_allocate_nothing_unless_a_callback_takes_debug_lines() {
    use pgate_log_level::{Debug, Info, Trace};
    let gate = new_gate(
        r#"{"environment": {"canary": {"traffic_percent": 50}},
            "overrides": {"header": "X-Canary"}, "feature_flags": ["new_api", "wide"]}"#,
    );
    // The thread's first calls make its recorder.
    allocations(gate);
    read_allocations(gate);
    assert_eq!(allocations(gate), NONE, "without a log callback");
    assert_eq!(
        read_allocations(gate),
        NO_READ,
        "reads without a log callback"
    );
    set_callback(Some(ignore), Info);
    assert_eq!(allocations(gate), NONE, "with a callback at INFO");
    assert_eq!(
        read_allocations(gate),
        NO_READ,
        "reads with a callback at INFO"
    );
    // The documented exception (the header's conventions, `PGATE_LOG_LEVEL_DEBUG`): each
    // route (and record by id, which routes) formats its line for the callback; a record of
    // a decision still allocates nothing, nor does a record by id with a forcing value
    // (docs/overrides.md: it sends no route line).
    for level in [Debug, Trace] {
        set_callback(Some(ignore), level);
        let (routed, recorded, by_id, forced) = allocations(gate);
        let least = u64::from(REQUESTS);
        assert!(
            routed.count >= least && by_id.count >= least,
            "{level:?}: {routed:?}, {by_id:?}"
        );
        assert_eq!(recorded, NOTHING, "records with a callback at {level:?}");
        assert_eq!(
            forced, NOTHING,
            "forced records by id with a callback at {level:?}"
        );
        // A forced route sends its line too; the flag-set reads and the change count never.
        let [forced_routes, reads @ ..] = read_allocations(gate);
        assert!(forced_routes.count >= least, "{level:?}: {forced_routes:?}");
        assert_eq!(reads, [NOTHING; 3], "reads with a callback at {level:?}");
    }
    set_callback(None, Info);
    assert_eq!(allocations(gate), NONE, "after the callback is removed");
    assert_eq!(
        read_allocations(gate),
        NO_READ,
        "reads after the callback is removed"
    );
    // SAFETY: made by pgate_gate_new, freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
    after_a_write_nothing_is_freed_on_the_hot_path();
}

/// A gate whose snapshot owns much heap (listed ids, flags): after a write replaces it, this
/// thread's routes and records let go of the old snapshot, and free nothing.
fn after_a_write_nothing_is_freed_on_the_hot_path() {
    let config = |percent: u32| {
        let listed = |from: u32| -> Vec<String> {
            (from..from + 500)
                .map(|i| format!("\"tester-{i}\""))
                .collect()
        };
        let flags: Vec<String> = (0..100).map(|i| format!("\"flag_{i}\"")).collect();
        format!(
            r#"{{"environment": {{"canary": {{"traffic_percent": {percent}}}}},
                "feature_flags": [{}],
                "overrides": {{"header": "X-Canary", "canary_ids": [{}], "stable_ids": [{}]}}}}"#,
            flags.join(","),
            listed(0).join(","),
            listed(500).join(","),
        )
    };
    let gate = new_gate(&config(50));
    allocations(gate); // the thread's first calls on this gate
    read_allocations(gate);
    assert_eq!(allocations(gate), NONE, "before a write");
    assert_eq!(read_allocations(gate), NO_READ, "reads before a write");
    let swapped = config(20);
    // SAFETY: a live gate, a live document; err may be NULL.
    let status = unsafe { pgate_swap_config(gate, swapped.as_ptr(), swapped.len(), null_mut()) };
    assert_eq!(status, pgate_status::Ok);
    assert_eq!(allocations(gate), NONE, "after pgate_swap_config");
    assert_eq!(
        read_allocations(gate),
        NO_READ,
        "reads after pgate_swap_config"
    );
    // SAFETY: made by pgate_gate_new, freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
}
