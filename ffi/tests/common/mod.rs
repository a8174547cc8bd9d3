//! Set-up shared by the C ABI's tests.
#![allow(unsafe_code, dead_code)]

use promotion_gates_ffi::*;
use std::ffi::c_char;
use std::ptr::{null, null_mut};

/// An SLO whose record path never evaluates by the clock: the longest
/// `evaluation_interval_ms`, so that every judgement is one a read or `pgate_monitor_health`
/// makes, or the one a canary error's screen calls for when a rule fires (a failing canary is
/// rolled back all the same). It keeps the tests within Miri's time: there each evaluation on
/// the record path reads every recorder, thousands of atomics, and with the default 1 s
/// interval one fell due on nearly every record. A gate needs a window of ten such intervals
/// ([`QUIET_WINDOW`]).
pub const QUIET_SLO: &str = r#"{"evaluation_interval_ms": 3600000}"#;

/// The window of the gates judged with [`QUIET_SLO`]: ten hours, as a gate refuses an
/// interval longer than a tenth of its window.
pub const QUIET_WINDOW: &str = r#""rollback_window_seconds": 36000"#;

/// A new gate from a JSON config (the default SLO); the caller frees it.
pub fn new_gate(config: &str) -> *mut pgate_gate {
    new_gate_with_slo(config, None)
}

/// A new gate from a JSON config and, when given, a JSON SLO (else the default); the caller
/// frees it.
pub fn new_gate_with_slo(config: &str, slo: Option<&str>) -> *mut pgate_gate {
    let mut gate = null_mut();
    let (slo_ptr, slo_len) = slo.map_or((null(), 0), |s| (s.as_ptr(), s.len()));
    // SAFETY: config and slo are live slices (or NULL, 0); gate is a valid out-pointer; err
    // may be NULL.
    let status = unsafe {
        pgate_gate_new(
            config.as_ptr(),
            config.len(),
            slo_ptr,
            slo_len,
            &mut gate,
            null_mut(),
        )
    };
    assert_eq!(status, pgate_status::Ok);
    gate
}

/// What `pgate_gate_new` answers for a JSON config it refuses (the default SLO): its status
/// and the error object's message; asserts that no gate was made.
pub fn refused_gate(config: &str) -> (pgate_status, String) {
    let (mut gate, mut err) = (null_mut(), null_mut());
    // SAFETY: config is a live slice; gate and err are valid out-pointers.
    let status = unsafe {
        pgate_gate_new(
            config.as_ptr(),
            config.len(),
            null(),
            0,
            &mut gate,
            &mut err,
        )
    };
    assert!(gate.is_null(), "a refused config made a gate");
    // SAFETY: the error object the failed call returned, read and freed once.
    (status, unsafe { error_text(err) })
}

/// Routes `id` and returns the decision.
///
/// # Safety
/// `gate` must be a live gate.
pub unsafe fn route(gate: *const pgate_gate, id: &[u8]) -> pgate_decision {
    let mut d = std::mem::MaybeUninit::<pgate_decision>::uninit();
    // SAFETY: live gate (caller's contract), live id, `d` valid for a write.
    let status = unsafe { pgate_route(gate, id.as_ptr(), id.len(), d.as_mut_ptr()) };
    assert_eq!(status, pgate_status::Ok);
    // SAFETY: `pgate_route` returned OK, so it wrote the decision.
    unsafe { d.assume_init() }
}

/// Records the outcome of the request `d` decided (the status pointer left NULL).
///
/// # Safety
/// `gate` must be a live gate.
pub unsafe fn record(gate: *const pgate_gate, d: &pgate_decision, success: bool, latency_ns: u64) {
    // SAFETY: live gate (caller's contract), a live decision; the status pointer may be NULL.
    let status = unsafe { pgate_record(gate, d, success, latency_ns, null_mut()) };
    assert_eq!(status, pgate_status::Ok);
}

/// Routes ids `user-0` .. `user-{n - 1}` and records each outcome as `success`, taking
/// `latency_ns`.
///
/// # Safety
/// `gate` must be a live gate.
pub unsafe fn route_and_record(gate: *const pgate_gate, n: u32, success: bool, latency_ns: u64) {
    for i in 0..n {
        let id = format!("user-{i}");
        // SAFETY: live gate (caller's contract).
        unsafe {
            let d = route(gate, id.as_bytes());
            record(gate, &d, success, latency_ns);
        }
    }
}

/// Routes ids `u0`, `u1`... and records every canary request as failed until the gate routes
/// outside the canary (the judge rolled it back) or 100 ids passed; returns the last decision.
///
/// # Safety
/// `gate` must be a live gate.
pub unsafe fn fail_the_canary(gate: *const pgate_gate) -> pgate_decision {
    // SAFETY: a zeroed decision is a valid value of the plain C struct.
    let mut d = unsafe { std::mem::zeroed::<pgate_decision>() };
    for i in 0..100u32 {
        // SAFETY: live gate (caller's contract).
        d = unsafe { route(gate, format!("u{i}").as_bytes()) };
        if d.environment != pgate_environment::Canary {
            break;
        }
        // SAFETY: live gate, a decision it returned.
        unsafe { record(gate, &d, false, 1_000) };
    }
    d
}

/// The message of the error object `err`, which it frees.
///
/// # Safety
/// `err` must be an error object the library returned, not yet freed.
pub unsafe fn error_text(err: *mut pgate_error) -> String {
    // SAFETY: a live error object (caller's contract), freed only after its message is copied.
    unsafe {
        let text = std::ffi::CStr::from_ptr(pgate_error_message(err))
            .to_string_lossy()
            .into_owned();
        pgate_error_free(err);
        text
    }
}

/// A call that writes text into a caller-owned buffer: `(buf, cap, len_out)`.
pub type TextCall<'a> = dyn Fn(*mut c_char, usize, *mut usize) -> pgate_status + 'a;

/// Runs a caller-owned-buffer call as a C host does: ask the length, then fill a buffer of it.
pub fn text_of(call: &TextCall<'_>) -> String {
    let mut len = 0;
    assert_eq!(call(null_mut(), 0, &mut len), pgate_status::BufferTooSmall);
    let mut buf = vec![0xAAu8; len + 1];
    let mut written = 0;
    assert_eq!(
        call(buf.as_mut_ptr().cast(), buf.len(), &mut written),
        pgate_status::Ok
    );
    assert_eq!((written, buf[len]), (len, 0));
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// Runs a caller-owned-buffer call as a C host that sizes its buffer by the length it was
/// told: a buffer of exactly that length is refused (`BufferTooSmall`, the same length
/// written again, not a byte of the buffer: the length leaves out the NUL), and one of the
/// length + 1 gets the text and its NUL. Three calls: the text must not change between them.
pub fn text_sized_by_its_length(call: &TextCall<'_>) -> String {
    let mut len = 0;
    assert_eq!(call(null_mut(), 0, &mut len), pgate_status::BufferTooSmall);
    let mut exact = vec![0xAAu8; len];
    let mut told = usize::MAX;
    assert_eq!(
        call(exact.as_mut_ptr().cast(), exact.len(), &mut told),
        pgate_status::BufferTooSmall,
        "a buffer of the length ({len}) has no room for the NUL"
    );
    assert_eq!(told, len, "the length, without the NUL, again");
    assert!(exact.iter().all(|&b| b == 0xAA), "nothing written");
    let mut buf = vec![0xAAu8; len + 1];
    let mut written = usize::MAX;
    assert_eq!(
        call(buf.as_mut_ptr().cast(), buf.len(), &mut written),
        pgate_status::Ok,
        "the length + 1 ({}) fits",
        len + 1
    );
    assert_eq!((written, buf[len]), (len, 0));
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// Runs a caller-owned-buffer call once, with a buffer of `capacity` bytes the text must fit
/// in (with its NUL): one rendering where [`text_of`] makes two, which counts under Miri for
/// the Prometheus exposition (about 20 s a rendering of two gates there). The size query stays
/// tested where [`text_of`] is used.
pub fn text_within(call: &TextCall<'_>, capacity: usize) -> String {
    let mut buf = vec![0xAAu8; capacity];
    let mut written = 0;
    let status = call(buf.as_mut_ptr().cast(), buf.len(), &mut written);
    assert_eq!(
        status,
        pgate_status::Ok,
        "the text ({written} bytes) must fit in {capacity}"
    );
    assert_eq!(buf[written], 0);
    String::from_utf8_lossy(&buf[..written]).into_owned()
}
