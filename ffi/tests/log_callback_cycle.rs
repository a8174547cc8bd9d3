//! A log callback that waits for a host lock deadlocks nothing when another thread holding
//! that lock logs while a third sets the callback; setters that race take turns. Its own
//! binary: the log callback is process-wide (its tests take turns too, [`ONE_AT_A_TIME`]).
#![allow(unsafe_code)]

use promotion_gates_ffi::*;

mod common;
use std::ffi::{CStr, c_char, c_void};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::Duration;

/// The tests take it: each sets the process's one callback.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
/// The host's mutex: the first thread's callback waits for it while the second holds it.
static HOST_LOCK: Mutex<()> = Mutex::new(());
/// Set once the first thread is inside the callback.
static ENTERED: AtomicBool = AtomicBool::new(false);
/// The flag whose line makes the callback wait for [`HOST_LOCK`].
const WAITING_FLAG: &str = "waits_for_the_host_lock";

/// For the line of [`WAITING_FLAG`]: says it entered, then waits for the host's mutex. Other
/// lines return at once.
unsafe extern "C" fn waits_for_host_lock(
    _: *mut c_void,
    _: pgate_log_level,
    _: *const c_char,
    message: *const c_char,
    _: usize,
) {
    // SAFETY: the message is NUL-terminated and live during the call.
    let message = unsafe { CStr::from_ptr(message) }.to_string_lossy();
    if message.contains(WAITING_FLAG) {
        ENTERED.store(true, SeqCst);
        drop(HOST_LOCK.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// A gate handle, sent to the thread that uses it.
struct Gate(*mut pgate_gate);
// SAFETY: a gate may be used from any thread; each test thread uses its own.
unsafe impl Send for Gate {}

fn enable(gate: &Gate, flag: &str) -> pgate_status {
    // SAFETY: a live gate and a live name; err may be NULL.
    unsafe { pgate_enable_feature(gate.0, flag.as_ptr(), flag.len(), null_mut()) }
}

fn set(callback: pgate_log_callback) -> pgate_status {
    // SAFETY: the callback may be called from any thread and ignores user_data; err may be
    // NULL.
    unsafe { pgate_set_log_callback(callback, null_mut(), 3, null_mut()) }
}

/// The three-thread cycle: the first thread's callback waits for the host's mutex, a third
/// thread sets the callback (and waits for the first), and the second, which holds the
/// mutex, logs a flag change (INFO). Were the callback run under the sink's read lock, the
/// second's line would queue behind the third's waiting write lock: all three would wait.
#[test]
fn a_callback_waiting_for_a_host_lock_does_not_stop_its_holder_from_logging() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    ENTERED.store(false, SeqCst);
    let config = r#"{"environment": "staging", "gate": "checkout"}"#;
    let (first, second) = (
        Gate(common::new_gate(config)),
        Gate(common::new_gate(config)),
    );
    assert_eq!(set(Some(waits_for_host_lock)), pgate_status::Ok);
    let (done, finished) = mpsc::channel();

    let held = HOST_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let done_first = done.clone();
    let logger = thread::spawn(move || {
        assert_eq!(enable(&first, WAITING_FLAG), pgate_status::Ok);
        done_first.send("first").unwrap();
        first
    });
    while !ENTERED.load(SeqCst) {
        thread::sleep(Duration::from_millis(1));
    }
    let done_setter = done.clone();
    let setter = thread::spawn(move || {
        let status = set(None);
        done_setter.send("setter").unwrap();
        status
    });
    // Time for the setter to wait for the first thread's callback.
    thread::sleep(Duration::from_millis(200));
    let (tx, logged) = mpsc::channel();
    let holder = thread::spawn(move || {
        let status = enable(&second, "logged_while_holding_the_host_lock");
        tx.send(status).unwrap();
        second
    });
    let status = logged.recv_timeout(Duration::from_secs(10)).expect(
        "a thread holding the host lock could not log while the callback waited for the lock \
         and another thread set the callback",
    );
    assert_eq!(status, pgate_status::Ok);
    drop(held);
    let mut ended: Vec<_> = (0..2)
        .map(|_| finished.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    ended.sort_unstable();
    assert_eq!(ended, ["first", "setter"]);
    assert_eq!(setter.join().unwrap(), pgate_status::Ok);
    for gate in [logger.join().unwrap(), holder.join().unwrap()] {
        // SAFETY: no call is in flight on the gate.
        assert_eq!(unsafe { pgate_gate_free(gate.0) }, pgate_status::Ok);
    }
}

/// How many lines [`returns_at_once`] received.
static RETURNED_AT_ONCE: AtomicUsize = AtomicUsize::new(0);

/// A callback that counts its lines and returns at once, set by the first setter.
unsafe extern "C" fn returns_at_once(
    _: *mut c_void,
    _: pgate_log_level,
    _: *const c_char,
    _: *const c_char,
    _: usize,
) {
    RETURNED_AT_ONCE.fetch_add(1, SeqCst);
}

/// Two setters race while a thread runs the first callback: the second setter (NULL) returns
/// only once that callback has returned, not as soon as the one it replaced (set by the first
/// setter, never called) has none under way. A host frees the `user_data` both callbacks may
/// share once NULL is set.
#[test]
fn a_setter_returns_only_once_the_callbacks_replaced_before_it_have_returned() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    ENTERED.store(false, SeqCst);
    let gate = Gate(common::new_gate(
        r#"{"environment": "staging", "gate": "checkout"}"#,
    ));
    assert_eq!(set(Some(waits_for_host_lock)), pgate_status::Ok);
    let held = HOST_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let logger = thread::spawn(move || {
        assert_eq!(enable(&gate, WAITING_FLAG), pgate_status::Ok);
        gate
    });
    while !ENTERED.load(SeqCst) {
        thread::sleep(Duration::from_millis(1));
    }
    // The first setter replaces the waiting callback and waits for it: once a line reaches
    // the callback it set, it has.
    RETURNED_AT_ONCE.store(0, SeqCst);
    let first = thread::spawn(|| set(Some(returns_at_once)));
    let probe = Gate(common::new_gate(
        r#"{"environment": "staging", "gate": "probe"}"#,
    ));
    for line in 0.. {
        assert!(line < 10_000, "the first setter never set its callback");
        assert_eq!(enable(&probe, &format!("probe_{line}")), pgate_status::Ok);
        if RETURNED_AT_ONCE.load(SeqCst) > 0 {
            break;
        }
        thread::sleep(Duration::from_millis(1));
    }
    let (tx, detached) = mpsc::channel();
    let second = thread::spawn(move || {
        let status = set(None);
        tx.send(()).unwrap();
        status
    });
    assert!(
        detached.recv_timeout(Duration::from_millis(300)).is_err(),
        "set NULL returned while a thread still ran a callback set before it"
    );
    drop(held);
    detached
        .recv_timeout(Duration::from_secs(10))
        .expect("set NULL returned once the callback did");
    assert_eq!(first.join().unwrap(), pgate_status::Ok);
    assert_eq!(second.join().unwrap(), pgate_status::Ok);
    for gate in [logger.join().unwrap(), probe] {
        // SAFETY: no call is in flight on the gate.
        assert_eq!(unsafe { pgate_gate_free(gate.0) }, pgate_status::Ok);
    }
}
