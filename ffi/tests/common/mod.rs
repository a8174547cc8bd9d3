//! Set-up shared by the C ABI's tests.
#![allow(unsafe_code, dead_code)]

use promotion_gates_ffi::*;
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
