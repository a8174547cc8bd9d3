//! The library's log lines reach a C host's callback. One test: the subscriber is
//! process-wide.
#![allow(unsafe_code)]

use promotion_gates_ffi::*;

mod common;
use common::{record, route};
use std::ffi::{CStr, c_char, c_void};
use std::ptr::null_mut;
use std::sync::{Mutex, PoisonError};

use tracing::Level;

/// The lines received: (level, target, message).
type Lines = Mutex<Vec<(pgate_log_level, String, String)>>;

unsafe extern "C" fn collect(
    user_data: *mut c_void,
    level: pgate_log_level,
    target: *const c_char,
    message: *const c_char,
    message_len: usize,
) {
    // SAFETY: user_data is the &Lines the test passed; the strings are live NUL-terminated C
    // strings during the call.
    let (lines, target, message) = unsafe {
        (
            &*(user_data as *const Lines),
            CStr::from_ptr(target).to_string_lossy().into_owned(),
            CStr::from_ptr(message).to_string_lossy().into_owned(),
        )
    };
    assert_eq!(message.len(), message_len);
    let mut lines = lines.lock().unwrap_or_else(PoisonError::into_inner);
    lines.push((level, target, message));
}

fn set(callback: pgate_log_callback, lines: &Lines, max_level: u32) -> pgate_status {
    let user_data = std::ptr::from_ref(lines).cast_mut().cast();
    // SAFETY: collect is thread-safe and `lines` outlives the test's calls; err may be NULL.
    unsafe { pgate_set_log_callback(callback, user_data, max_level, null_mut()) }
}

fn call(
    gate: *mut pgate_gate,
    op: unsafe extern "C" fn(
        *const pgate_gate,
        *const u8,
        usize,
        *mut *mut pgate_error,
    ) -> pgate_status,
    text: &str,
) {
    // SAFETY: live gate and text slice; err may be NULL.
    let status = unsafe { op(gate, text.as_ptr(), text.len(), null_mut()) };
    assert_eq!(status, pgate_status::Ok);
}

#[test]
fn log_lines_reach_the_callback_up_to_its_level() {
    static LINES: Lines = Mutex::new(Vec::new());
    let lines = &LINES;
    let config = r#"{"environment": "staging", "gate": "checkout"}"#;
    let gate = common::new_gate(config);

    assert_eq!(set(Some(collect), lines, 3), pgate_status::Ok);
    call(gate, pgate_enable_feature, "dark_mode");
    call(gate, pgate_rollback, "bad deploy");
    let got = std::mem::take(&mut *lines.lock().unwrap());
    let info = got
        .iter()
        .find(|(level, _, _)| *level == pgate_log_level::Info)
        .expect("an info line");
    assert!(
        info.2.starts_with("Feature flag enabled: dark_mode"),
        "{info:?}"
    );
    assert!(info.1.starts_with("promotion_gates"), "{info:?}");
    let error = got
        .iter()
        .find(|(level, _, _)| *level == pgate_log_level::Error)
        .expect("an error line");
    assert!(
        error.2.contains("promotion.rollback")
            && error.2.contains(r#"reason="bad deploy""#)
            && error.2.contains(r#"previous_env="Staging""#)
            && error.2.contains(r#"trigger="manual""#),
        "{error:?}"
    );

    // Up to warnings only: the flag's info line is not sent, and the route path's debug check
    // is false (no lock taken, no line built per route).
    assert_eq!(set(Some(collect), lines, 2), pgate_status::Ok);
    call(gate, pgate_enable_feature, "other");
    assert!(lines.lock().unwrap().is_empty());
    assert!(tracing::level_enabled!(Level::WARN));
    assert!(!tracing::level_enabled!(Level::INFO));
    assert!(!tracing::level_enabled!(Level::DEBUG));
    // SAFETY: the gate is live until it is freed at the end.
    unsafe { route(gate, b"request-1") };
    assert!(lines.lock().unwrap().is_empty());

    // A level out of range is refused and changes nothing: level 2 and the callback stay.
    assert_eq!(set(Some(collect), lines, 6), pgate_status::InvalidArgument);
    assert_eq!(set(Some(collect), lines, 0), pgate_status::InvalidArgument);
    assert!(tracing::level_enabled!(Level::WARN));
    assert!(!tracing::level_enabled!(Level::INFO));
    call(gate, pgate_enable_feature, "third");
    // A new salt reshuffles users: a warning.
    call(
        gate,
        pgate_swap_config,
        r#"{"environment": "staging", "gate": "checkout", "salt": "s2"}"#,
    );
    let got = std::mem::take(&mut *lines.lock().unwrap());
    assert!(!got.is_empty(), "the callback was dropped");
    assert!(
        got.iter()
            .all(|(level, _, _)| *level <= pgate_log_level::Warn),
        "{got:?}"
    );

    // At debug level every route sends one line, not only observed ones (the header's
    // PGATE_LOG_LEVEL_DEBUG says so).
    assert_eq!(set(Some(collect), lines, 4), pgate_status::Ok);
    assert!(tracing::level_enabled!(Level::DEBUG));
    for _ in 0..3 {
        // SAFETY: the gate is live until it is freed at the end.
        unsafe { route(gate, b"request-2") };
    }
    let got = std::mem::take(&mut *lines.lock().unwrap());
    let debug: Vec<_> = got
        .iter()
        .filter(|(level, _, _)| *level == pgate_log_level::Debug)
        .collect();
    assert_eq!(debug.len(), 3, "{got:?}");
    assert!(
        debug[0].2.starts_with("promotion.route_request")
            && debug[0].2.contains(r#"request_id="request-2""#)
            && debug[0].2.contains(r#"forced="none""#),
        "{got:?}"
    );
    // A forced decision's line says by what it was forced.
    let forcing = common::new_gate(
        r#"{"gate": "forcing", "overrides": {"header": "X-Canary", "canary_ids": ["tester"]}}"#,
    );
    let mut d = std::mem::MaybeUninit::<pgate_decision>::uninit();
    let (id, value) = (b"someone", b"canary");
    // SAFETY: a live gate, the id's and value's bytes, and room for the decision.
    let status = unsafe {
        pgate_route_forced(
            forcing,
            id.as_ptr(),
            id.len(),
            value.as_ptr(),
            value.len(),
            d.as_mut_ptr(),
        )
    };
    assert_eq!(status, pgate_status::Ok);
    // SAFETY: the gate is live until it is freed below.
    unsafe { route(forcing, b"tester") };
    let got = std::mem::take(&mut *lines.lock().unwrap());
    let routes: Vec<_> = got
        .iter()
        .filter(|(_, _, m)| m.starts_with("promotion.route_request"))
        .map(|(_, _, m)| m)
        .collect();
    assert!(
        routes.len() == 2
            && routes[0].contains(r#"request_id="someone""#)
            && routes[0].contains(r#"forced="value""#)
            && routes[1].contains(r#"forced="id_list""#),
        "{got:?}"
    );
    // A record by id with a forcing value routes its id again but sends no route line
    // (docs/overrides.md), whether the value forces, forces nothing, or is absent.
    for id in [b"someone".as_slice(), b"tester"] {
        for value in [Some(b"canary".as_slice()), Some(b"bogus"), None] {
            let (value_ptr, value_len) =
                value.map_or((std::ptr::null(), 0), |v| (v.as_ptr(), v.len()));
            // SAFETY: a live gate, live id and value (or NULL with 0); `recorded` may be NULL.
            let status = unsafe {
                pgate_record_by_id_forced(
                    forcing,
                    id.as_ptr(),
                    id.len(),
                    value_ptr,
                    value_len,
                    true,
                    1_000,
                    null_mut(),
                )
            };
            assert_eq!(status, pgate_status::Ok);
        }
    }
    // SAFETY: `forcing` is live until here.
    assert_eq!(unsafe { pgate_gate_free(forcing) }, pgate_status::Ok);
    let got = std::mem::take(&mut *lines.lock().unwrap());
    assert!(
        !got.iter()
            .any(|(_, _, m)| m.starts_with("promotion.route_request")),
        "{got:?}"
    );

    // What a client sends is escaped: a line feed starts no new line, a NUL cuts no line short
    // (`collect` checks that message_len is the C string's length).
    // SAFETY: the gate is live until it is freed at the end.
    unsafe { route(gate, b"ab\ncd\0x\"y") };
    let other = common::new_gate(config);
    call(other, pgate_rollback, "bad\0deploy\nnow\u{2800}");
    // SAFETY: `other` is live until here.
    assert_eq!(unsafe { pgate_gate_free(other) }, pgate_status::Ok);
    let got = std::mem::take(&mut *lines.lock().unwrap());
    assert!(
        got.iter()
            .all(|(_, _, m)| !m.contains(['\n', '\0']) && !m.chars().any(char::is_control)),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|(_, _, m)| m.contains(r#"request_id="ab\ncd\0x\"y""#)),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|(level, _, m)| *level == pgate_log_level::Error
                && m.contains(r#"reason="bad\0deploy\nnow\u{2800}""#)),
        "{got:?}"
    );

    // A callback that calls back into the gate that is logging (with its writer lock held):
    // each write, judgement, read of the window (which makes the evaluation asked for
    // meanwhile, and may roll back) and free is refused, not waited for or done to a gate in
    // use.
    struct Reentry {
        gate: *mut pgate_gate,
        statuses: Mutex<Vec<(&'static str, pgate_status)>>,
    }
    unsafe extern "C" fn reenter(
        user_data: *mut c_void,
        _: pgate_log_level,
        _: *const c_char,
        _: *const c_char,
        _: usize,
    ) {
        // SAFETY: user_data is the test's &Reentry, alive while this callback is set.
        let reentry = unsafe { &*(user_data as *const Reentry) };
        let mut statuses = reentry
            .statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !statuses.is_empty() {
            return;
        }
        let gate = reentry.gate;
        let (flag, slo, reason) = ("zz", "{}", "from the callback");
        let mut compliant = false;
        let mut health = std::mem::MaybeUninit::<pgate_health>::uninit();
        let gates = [gate.cast_const()];
        let counts = [pgate_outcome_counts::default()];
        // A NULL buffer: outside the callback, each read below is BUFFER_TOO_SMALL.
        let mut len = 0;
        // SAFETY: a live gate, live slices, valid out pointers; err may be NULL.
        unsafe {
            statuses.extend([
                (
                    "pgate_enable_feature",
                    pgate_enable_feature(gate, flag.as_ptr(), flag.len(), null_mut()),
                ),
                (
                    "pgate_swap_slo",
                    pgate_swap_slo(gate, slo.as_ptr(), slo.len(), null_mut()),
                ),
                (
                    "pgate_rollback",
                    pgate_rollback(gate, reason.as_ptr(), reason.len(), null_mut()),
                ),
                ("pgate_promote", pgate_promote(gate, 2, 0.0, null_mut())),
                (
                    "pgate_promote_from",
                    pgate_promote_from(gate, 1, 2, 0.0, null_mut()),
                ),
                (
                    "pgate_disable_feature",
                    pgate_disable_feature(gate, flag.as_ptr(), flag.len(), null_mut()),
                ),
                (
                    "pgate_swap_config",
                    pgate_swap_config(gate, slo.as_ptr(), slo.len(), null_mut()),
                ),
                ("pgate_check_slo", pgate_check_slo(gate, &mut compliant)),
                (
                    "pgate_monitor_health",
                    pgate_monitor_health(gate, health.as_mut_ptr(), null_mut(), 0, null_mut()),
                ),
                (
                    "pgate_read_health",
                    pgate_read_health(gate, health.as_mut_ptr(), null_mut(), 0, null_mut()),
                ),
                (
                    "pgate_metrics_prometheus",
                    pgate_metrics_prometheus(gate, null_mut(), 0, &mut len),
                ),
                (
                    "pgate_metrics_prometheus_gates",
                    pgate_metrics_prometheus_gates(gates.as_ptr(), 1, null_mut(), 0, &mut len),
                ),
                (
                    "pgate_metrics_prometheus_counted",
                    pgate_metrics_prometheus_counted(
                        gates.as_ptr(),
                        counts.as_ptr(),
                        1,
                        null_mut(),
                        0,
                        &mut len,
                    ),
                ),
                (
                    "pgate_latency_histograms_json",
                    pgate_latency_histograms_json(gate, null_mut(), 0, &mut len),
                ),
                ("pgate_gate_free", pgate_gate_free(gate)),
            ]);
        }
    }
    let reentry = Reentry {
        gate,
        statuses: Mutex::new(Vec::new()),
    };
    let user_data = std::ptr::from_ref(&reentry).cast_mut().cast();
    // SAFETY: reenter is thread-safe and `reentry` outlives the callback (unset below).
    let status = unsafe { pgate_set_log_callback(Some(reenter), user_data, 3, null_mut()) };
    assert_eq!(status, pgate_status::Ok);
    call(gate, pgate_enable_feature, "logged"); // logs at info, with the writer lock held
    assert_eq!(set(Some(collect), lines, 3), pgate_status::Ok);
    let statuses = std::mem::take(&mut *reentry.statuses.lock().unwrap());
    assert_eq!(statuses.len(), 15, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|(_, status)| *status == pgate_status::InvalidArgument),
        "{statuses:?}"
    );
    // The gate is live and unchanged: the flag the callback tried is off.
    let mut enabled = true;
    // SAFETY: live gate, live slice, valid out pointer.
    let status = unsafe { pgate_is_feature_enabled(gate, b"zz".as_ptr(), 2, &mut enabled) };
    assert_eq!((status, enabled), (pgate_status::Ok, false));
    lines.lock().unwrap().clear();

    // Not under Miri: there each record takes seconds of the host's time, so every few
    // records run a full evaluation, and the section takes longer than CI has. Its calls are
    // the routes and records the rest of this test makes.
    if !cfg!(miri) {
        a_record_from_inside_a_write_never_waits_for_it(lines);
    }

    // NULL stops the lines, and with them every level, whatever level it is given: a host
    // detaching with 0 before it frees its user_data must not be refused and keep its callback.
    assert_eq!(set(None, lines, 0), pgate_status::Ok);
    assert!(!tracing::level_enabled!(Level::ERROR));
    assert_eq!(set(Some(collect), lines, 3), pgate_status::Ok);
    assert_eq!(set(None, lines, 5), pgate_status::Ok);
    assert!(!tracing::level_enabled!(Level::ERROR));
    call(gate, pgate_enable_feature, "other"); // the swap dropped it
    call(
        gate,
        pgate_swap_config,
        r#"{"environment": "staging", "gate": "checkout", "salt": "s3"}"#,
    );
    // SAFETY: the gate is live until it is freed at the end.
    unsafe { route(gate, b"request-3") };
    assert!(lines.lock().unwrap().is_empty());
    // SAFETY: the gate is live until here.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
}

/// A callback that records on a gate whose write is logging, on that thread, with its writer
/// lock held (recording is not refused there): a dead canary's outcomes fire a rule, and the
/// rollback it calls for is left to the write, made as it lets the lock go, not waited for.
/// Ends with `collect` set at level 3 again, as the test had it.
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a broken expectation is a failed test"
)]
fn a_record_from_inside_a_write_never_waits_for_it(lines: &Lines) {
    struct Recorder {
        gate: *mut pgate_gate,
        armed: std::sync::atomic::AtomicBool,
    }
    unsafe extern "C" fn record_dead_canary(
        user_data: *mut c_void,
        _: pgate_log_level,
        _: *const c_char,
        _: *const c_char,
        _: usize,
    ) {
        // SAFETY: user_data is the test's &Recorder, alive while this callback is set.
        let recorder = unsafe { &*(user_data as *const Recorder) };
        if !recorder
            .armed
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        for i in 0..400 {
            // SAFETY: a live gate.
            unsafe {
                let d = route(recorder.gate, format!("user-{i}").as_bytes());
                record(recorder.gate, &d, !d.is_canary, 1_000);
            }
        }
    }
    let canary = common::new_gate(r#"{"environment": {"canary": {"traffic_percent": 10}}}"#);
    let recorder = Recorder {
        gate: canary,
        armed: std::sync::atomic::AtomicBool::new(true),
    };
    let user_data = std::ptr::from_ref(&recorder).cast_mut().cast();
    // SAFETY: record_dead_canary is thread-safe and `recorder` outlives the callback (unset
    // below, after the thread that logs has ended).
    let status =
        unsafe { pgate_set_log_callback(Some(record_dead_canary), user_data, 3, null_mut()) };
    assert_eq!(status, pgate_status::Ok);
    let (done, finished) = std::sync::mpsc::channel();
    /// The gate, for the thread that writes to it.
    struct Shared(*mut pgate_gate);
    // SAFETY: the C ABI's gates may be used from any thread; this one outlives the thread.
    unsafe impl Send for Shared {}
    let shared = Shared(canary);
    let writer = std::thread::spawn(move || {
        let shared = shared; // the whole wrapper, not its pointer field alone
        call(shared.0, pgate_enable_feature, "logged"); // logs at info
        let _ = done.send(());
    });
    finished
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the write returned: the callback's record did not wait for its own lock");
    writer.join().unwrap();
    assert!(
        !recorder.armed.load(std::sync::atomic::Ordering::SeqCst),
        "the callback ran"
    );
    assert_eq!(set(Some(collect), lines, 3), pgate_status::Ok);
    // SAFETY: a live gate.
    let after = unsafe { route(canary, b"after") };
    assert_eq!(
        after.environment,
        pgate_environment::Production,
        "rolled back"
    );
    // SAFETY: a live gate, freed once.
    assert_eq!(unsafe { pgate_gate_free(canary) }, pgate_status::Ok);
    lines.lock().unwrap().clear();
}
