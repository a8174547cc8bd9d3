//! The owned error object of cold-path calls: a status and a message, freed by the caller.
//!
//! No thread-local "last error": a goroutine may move between OS threads between two calls.

use std::ffi::{CString, c_char};

use crate::boundary::{Failure, guard};
use crate::status::pgate_status;

/// An error returned by a cold-path call through its `pgate_error **err` parameter.
///
/// Owned by the caller: read it with `pgate_error_status` and `pgate_error_message`, then
/// free it with `pgate_error_free`. Not shared between threads by the library.
#[allow(non_camel_case_types)]
pub struct pgate_error {
    status: pgate_status,
    message: CString,
}

/// Stores a new error object in `*err_out`, if `err_out` is not NULL.
pub(crate) fn set_error(err_out: *mut *mut pgate_error, failure: Failure) {
    if err_out.is_null() {
        return;
    }
    // Interior NULs cannot be represented in a C string; show them as U+FFFD.
    let message = CString::new(failure.message.replace('\0', "\u{fffd}")).unwrap_or_default();
    let error = Box::new(pgate_error {
        status: failure.status,
        message,
    });
    // SAFETY: err_out is non-NULL and, per every exported function's contract, valid for a
    // write of a pointer.
    unsafe { err_out.write(Box::into_raw(error)) };
}

/// The status code of an error object; `PGATE_STATUS_NULL_POINTER` for NULL.
///
/// # Safety
/// `err` must be NULL or an error object not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_error_status(err: *const pgate_error) -> pgate_status {
    // SAFETY: per the contract, err is NULL or a live error object.
    match unsafe { err.as_ref() } {
        Some(err) => err.status,
        None => pgate_status::NullPointer,
    }
}

/// The message of an error object: a NUL-terminated UTF-8 string owned by the error object,
/// valid until `pgate_error_free`. Returns an empty string for NULL.
///
/// # Safety
/// `err` must be NULL or an error object not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_error_message(err: *const pgate_error) -> *const c_char {
    // SAFETY: per the contract, err is NULL or a live error object.
    match unsafe { err.as_ref() } {
        Some(err) => err.message.as_ptr(),
        None => c"".as_ptr(),
    }
}

/// Frees an error object. NULL is accepted and ignored.
///
/// # Safety
/// `err` must be NULL or an error object not yet freed; it must not be used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_error_free(err: *mut pgate_error) {
    let _ = guard(|| {
        if !err.is_null() {
            // SAFETY: err came from Box::into_raw in set_error and has not been freed
            // (caller's contract), so it is reclaimed exactly once.
            drop(unsafe { Box::from_raw(err) });
        }
        Ok(())
    });
}
