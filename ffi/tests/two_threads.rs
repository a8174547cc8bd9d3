//! One gate used from two threads through the C ABI, in few enough calls for Miri, which checks
//! the reads racing the writes for undefined behaviour. One test: it sets the process-wide log
//! callback.
#![allow(unsafe_code)]

mod common;

use common::{error_text, new_gate_with_slo, record, route, text_of};
use promotion_gates::{FLAG_SET_GRACE_WRITES, FLAG_SET_SLOTS};
use promotion_gates_ffi::*;
use std::ffi::{c_char, c_void};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel, sync_channel};
use std::sync::{Mutex, PoisonError};

/// A gate handle sent to another thread.
#[derive(Clone, Copy)]
struct Gate(*mut pgate_gate);
// SAFETY: the C ABI's gates may be used from any thread; the test frees it after both ended.
unsafe impl Send for Gate {}

/// A flag name's pointer and length, as the gate handed them out, sent to another thread.
struct Name(*const u8, usize);
// SAFETY: the name is the gate's, valid on any thread until the gate is freed.
unsafe impl Send for Name {}

/// The length of flag set `set`, or the status that refused it.
///
/// # Safety
/// `gate` must be a live gate.
unsafe fn set_len(gate: Gate, set: u32) -> Result<usize, pgate_status> {
    let mut len = 0;
    // SAFETY: live gate (caller's contract); `len` valid for a write.
    match unsafe { pgate_flag_set_len(gate.0, set, &mut len) } {
        pgate_status::Ok => Ok(len),
        refused => Err(refused),
    }
}

/// The pointer to the name of flag `index` of set `set` and its length, as the gate hands it
/// out.
///
/// # Safety
/// `gate` must be a live gate.
unsafe fn name_of(gate: Gate, set: u32, index: usize) -> (*const u8, usize) {
    let (mut name, mut len) = (null(), 0);
    // SAFETY: live gate (caller's contract); valid out-pointers.
    let status = unsafe { pgate_flag_set_name(gate.0, set, index, &mut name, &mut len) };
    assert_eq!(status, pgate_status::Ok);
    (name, len)
}

/// The gate's SLO: a dead canary is rolled back by its errors after 5 outcomes, with no
/// evaluation by the clock (as `common::QUIET_SLO`).
const SLO: &str = r#"{"min_samples": 5, "evaluation_interval_ms": 3600000}"#;

/// What the log callback coordinates: the write it runs in (on the writing thread, with the
/// gate's writer lock held) lets the routing thread record, and returns once it has.
struct Inside {
    armed: AtomicBool,
    record_now: Mutex<Option<Sender<()>>>,
    recorded: Mutex<Receiver<()>>,
}

/// The log callback: the first line logged once armed (the flag change of the write under
/// way, its writer lock held) has the routing thread record and waits for it.
unsafe extern "C" fn hold_the_write(
    user_data: *mut c_void,
    _: pgate_log_level,
    _: *const c_char,
    _: *const c_char,
    _: usize,
) {
    // SAFETY: user_data is the test's &Inside, alive while this callback is set.
    let inside = unsafe { &*(user_data as *const Inside) };
    if !inside.armed.swap(false, Ordering::SeqCst) {
        return;
    }
    let record_now = inside
        .record_now
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(record_now) = record_now.as_ref()
        && record_now.send(()).is_ok()
    {
        // (an error: the routing thread ended without recording, and the test fails there)
        let _ = inside
            .recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv();
    }
}

/// A thread routes and reads the flag sets and their names while the other turns flags on and
/// off: the sets the writes retire are kept while the reading thread remembers one, freed once
/// it does not, and a name read before stays readable. Then a record on the routing thread
/// calls for a rollback while the other thread's write holds the writer lock (it is logging),
/// and the write makes it as it lets go. Then an error object's status and the latency
/// histograms' export.
#[test]
fn a_gate_routed_and_read_on_one_thread_while_another_writes() {
    // Every request to the canary; auto-rollback off while the flags change (so that turning
    // one on judges nothing: under Miri a judgement reads thousands of atomics).
    let gate = Gate(new_gate_with_slo(
        r#"{"gate": "g", "environment": {"canary": {"traffic_percent": 100}},
            "feature_flags": ["first"], "auto_rollback_enabled": false,
            "rollback_window_seconds": 36000}"#,
        Some(SLO),
    ));
    // The writer stays at most five writes ahead of the routing thread's rounds (the queue's
    // length and the write blocked on it), never more than FLAG_SET_GRACE_WRITES (4 under
    // Miri): a routing thread held off the core for a while never finds the set it just routed
    // with retired, nor lets the writer run out of writes before it saw the first set
    // forgotten.
    let (wrote, written) = sync_channel::<()>(FLAG_SET_GRACE_WRITES.min(5) - 1);
    let (first_read, first) = channel::<(u32, Name)>();
    let (read_all, all_read) = channel::<()>();
    let (record_now, told_to_record) = channel::<()>();
    let (recorded, records_made) = channel::<()>();
    let x_gone = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let x_gone = &x_gone;
        let router = scope.spawn(move || {
            // SAFETY: a live gate (freed after the scope); every out-pointer is valid.
            unsafe {
                let x = route(gate.0, b"u").flag_set;
                assert_eq!(set_len(gate, x), Ok(1));
                let (name, len) = name_of(gate, x, 0);
                assert_eq!(std::slice::from_raw_parts(name, len), b"first");
                first_read.send((x, Name(name, len))).unwrap();
                // One round per write, racing the next one: the current set and its names, then
                // the first set, remembered (or read again from its slot) until a write reuses
                // its slot and this thread forgets it; from then on it is unknown.
                while written.recv().is_ok() {
                    let now = route(gate.0, b"u").flag_set;
                    let len = set_len(gate, now).unwrap();
                    for index in 0..len {
                        let (name, len) = name_of(gate, now, index);
                        let name = std::str::from_utf8(std::slice::from_raw_parts(name, len));
                        assert!(name.is_ok_and(|name| name.starts_with('f')), "{name:?}");
                    }
                    if !x_gone.load(Ordering::SeqCst) {
                        match set_len(gate, x) {
                            Ok(1) => {}
                            Err(pgate_status::UnknownFlagSet) => {
                                x_gone.store(true, Ordering::SeqCst)
                            }
                            other => panic!("the first set read as {other:?}"),
                        }
                    } else {
                        assert_eq!(set_len(gate, x), Err(pgate_status::UnknownFlagSet));
                    }
                }
                read_all.send(()).unwrap();
                // A dead canary's outcomes, recorded while the other thread's write logs.
                told_to_record.recv().unwrap();
                for i in 0..8 {
                    let d = route(gate.0, format!("user-{i}").as_bytes());
                    assert!(d.is_canary);
                    record(gate.0, &d, false, 1_000);
                }
                recorded.send(()).unwrap();
            }
        });

        let (x, name) = first.recv().unwrap();
        // Each write makes a set the gate never held ({first, f1}, {first, f1, f2},
        // {first, f2}, ...) in the oldest free slot: after about FLAG_SET_SLOTS of them, the
        // first set's slot is reused. Then on until the routing thread has forgotten it, and
        // one write more, which frees it.
        let mut writes = 0;
        let mut round = 0;
        loop {
            let forgotten = x_gone.load(Ordering::SeqCst);
            assert!(
                writes < 2 * FLAG_SET_SLOTS,
                "the routing thread never forgot the first set"
            );
            let (call, flag) = if writes == 0 || writes % 2 == 1 {
                round += 1;
                (pgate_enable_feature as WriteCall, format!("f{round}"))
            } else {
                (
                    pgate_disable_feature as WriteCall,
                    format!("f{}", round - 1),
                )
            };
            // SAFETY: a live gate and flag slice; err may be NULL.
            let status = unsafe { call(gate.0, flag.as_ptr(), flag.len(), null_mut()) };
            assert_eq!(status, pgate_status::Ok, "{flag}");
            writes += 1;
            wrote.send(()).unwrap();
            if forgotten {
                break;
            }
        }
        assert!(writes > FLAG_SET_GRACE_WRITES, "{writes} writes");
        drop(wrote);
        all_read.recv().unwrap();
        // SAFETY: a live gate; the name, handed out before its set was freed, lives as long.
        unsafe {
            assert_eq!(set_len(gate, x), Err(pgate_status::UnknownFlagSet));
            assert_eq!(std::slice::from_raw_parts(name.0, name.1), b"first");
        }

        // The write that holds the writer lock while the routing thread records, with
        // auto-rollback on.
        let config = r#"{"gate": "g", "environment": {"canary": {"traffic_percent": 100}},
            "rollback_window_seconds": 36000}"#;
        // SAFETY: a live gate and config slice; err may be NULL.
        let status =
            unsafe { pgate_swap_config(gate.0, config.as_ptr(), config.len(), null_mut()) };
        assert_eq!(status, pgate_status::Ok);
        let inside = Inside {
            armed: AtomicBool::new(false),
            record_now: Mutex::new(Some(record_now)),
            recorded: Mutex::new(records_made),
        };
        let user_data = std::ptr::from_ref(&inside).cast_mut().cast();
        // SAFETY: hold_the_write is thread-safe and `inside` outlives the callback (unset
        // below); err may be NULL.
        let status =
            unsafe { pgate_set_log_callback(Some(hold_the_write), user_data, 3, null_mut()) };
        assert_eq!(status, pgate_status::Ok);
        inside.armed.store(true, Ordering::SeqCst);
        let flag = "held";
        // SAFETY: a live gate and flag slice; err may be NULL.
        let status = unsafe { pgate_enable_feature(gate.0, flag.as_ptr(), flag.len(), null_mut()) };
        assert_eq!(status, pgate_status::Ok);
        // (ends the routing thread should the callback not have run)
        drop(inside.record_now.lock().unwrap().take());
        router.join().unwrap();
        // SAFETY: no callback set; err may be NULL.
        let status = unsafe { pgate_set_log_callback(None, null_mut(), 0, null_mut()) };
        assert_eq!(status, pgate_status::Ok);
        assert!(!inside.armed.load(Ordering::SeqCst), "the callback ran");
    });

    // SAFETY: a live gate (every pointer below is live or NULL on purpose).
    unsafe {
        let after = route(gate.0, b"after");
        assert_eq!(
            after.environment,
            pgate_environment::Production,
            "the rollback owed to the write was made as it let go"
        );
        let history = text_of(&|b, c, l| pgate_rollback_history_json(gate.0, b, c, l));
        assert!(history.contains("automatic"), "{history}");

        // An error object's status.
        let mut err = null_mut();
        let reason = "again";
        let status = pgate_rollback(gate.0, reason.as_ptr(), reason.len(), &mut err);
        assert_eq!(status, pgate_status::RollbackRefused);
        assert_eq!(pgate_error_status(err), pgate_status::RollbackRefused);
        assert!(!error_text(err).is_empty());
        assert_eq!(pgate_error_status(null()), pgate_status::NullPointer);

        // The latency histograms' export, with outcomes in the stable version's.
        for i in 0..5 {
            let d = route(gate.0, format!("stable-{i}").as_bytes());
            record(gate.0, &d, true, 2_000_000);
        }
        // One call into a buffer large enough (each call compresses both histograms, which
        // Miri runs slowly; `text_of`'s sizing call would double it).
        let mut buf = vec![0u8; 64 * 1024];
        let mut written = 0;
        assert_eq!(
            pgate_latency_histograms_json(gate.0, buf.as_mut_ptr().cast(), buf.len(), &mut written),
            pgate_status::Ok
        );
        assert_eq!(buf.get(written), Some(&0), "NUL-terminated");
        let json = std::str::from_utf8(&buf[..written]).unwrap();
        let doc: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(doc["encoding"], "hdrhistogram-v2-deflate-base64");
        for cohort in ["canary", "stable"] {
            let histogram = doc[cohort].as_str().unwrap_or_default();
            assert!(histogram.starts_with("HISTF"), "{cohort}: {json}");
        }
        assert_eq!(pgate_gate_free(gate.0), pgate_status::Ok);
    }
}

/// `pgate_enable_feature` and `pgate_disable_feature`.
type WriteCall = unsafe extern "C" fn(
    *const pgate_gate,
    *const u8,
    usize,
    *mut *mut pgate_error,
) -> pgate_status;
