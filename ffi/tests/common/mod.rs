//! Set-up shared by the C ABI's tests.
#![allow(unsafe_code, dead_code)]

use promotion_gates_ffi::*;
use std::ffi::c_char;
use std::ptr::{null, null_mut};

/// A new gate from a JSON config (the default SLO); the caller frees it.
pub fn new_gate(config: &str) -> *mut pgate_gate {
    let mut gate = null_mut();
    // SAFETY: config is a live slice; gate is a valid out-pointer; err may be NULL.
    let status = unsafe {
        pgate_gate_new(
            config.as_ptr(),
            config.len(),
            null(),
            0,
            &mut gate,
            null_mut(),
        )
    };
    assert_eq!(status, pgate_status::Ok);
    gate
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
        let id = format!("u{i}");
        // SAFETY: live gate (caller's contract), live id, valid out-pointer.
        let status = unsafe { pgate_route(gate, id.as_ptr(), id.len(), &mut d) };
        assert_eq!(status, pgate_status::Ok);
        if d.environment != pgate_environment::Canary {
            break;
        }
        // SAFETY: live gate, a decision it returned; the status pointer may be NULL.
        let status = unsafe { pgate_record(gate, &d, false, 1_000, null_mut()) };
        assert_eq!(status, pgate_status::Ok);
    }
    d
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
