//! The panic boundary and the conversions every exported function goes through.
//!
//! Every exported body runs inside [`guard`] (or [`guard_err`]), which catches a panic and
//! turns it into [`pgate_status::Panic`]. Every pointer is checked for NULL and every length
//! against `isize::MAX` before it is used; outputs are written only on success.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::{pgate_error, set_error};
use crate::status::pgate_status;

/// Runs `body`, turning a panic into [`pgate_status::Panic`].
#[inline]
pub(crate) fn guard(body: impl FnOnce() -> Result<(), pgate_status>) -> pgate_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => pgate_status::Ok,
        Ok(Err(status)) => status,
        Err(_) => pgate_status::Panic,
    }
}

/// A failure with a message for the caller's error object.
pub(crate) struct Failure {
    pub(crate) status: pgate_status,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: pgate_status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<promotion_gates::Error> for Failure {
    fn from(err: promotion_gates::Error) -> Self {
        Failure::new(pgate_status::from(&err), err.to_string())
    }
}

impl From<pgate_status> for Failure {
    fn from(status: pgate_status) -> Self {
        let message = status.as_cstr().to_string_lossy().into_owned();
        Failure::new(status, message)
    }
}

/// Like [`guard`], for cold-path calls that can explain a failure: on failure, if `err_out`
/// is not NULL, `*err_out` receives a new error object the caller frees with
/// `pgate_error_free`.
pub(crate) fn guard_err(
    err_out: *mut *mut pgate_error,
    body: impl FnOnce() -> Result<(), Failure>,
) -> pgate_status {
    let failure = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return pgate_status::Ok,
        Ok(Err(failure)) => failure,
        Err(_) => Failure::new(
            pgate_status::Panic,
            "promotion-gates panicked: this is a bug, please report it",
        ),
    };
    let status = failure.status;
    // Writing the error object must not itself unwind across the boundary.
    let _ = catch_unwind(AssertUnwindSafe(|| set_error(err_out, failure)));
    status
}

/// Reads a status number coming from C without trusting it to be a valid enum value.
pub(crate) fn status_from_u32(status: u32) -> Option<pgate_status> {
    use pgate_status as S;
    const ALL: [pgate_status; 19] = [
        S::Ok,
        S::NullPointer,
        S::InvalidArgument,
        S::InvalidConfig,
        S::InvalidJson,
        S::InvalidPromotion,
        S::SloNotMet,
        S::InsufficientData,
        S::AlreadyThere,
        S::InvalidFlag,
        S::FlagNotEnabled,
        S::RollbackRefused,
        S::BufferTooSmall,
        S::InvalidHandle,
        S::Panic,
        S::IndexOutOfRange,
        S::UnknownFlagSet,
        S::FlagSetsExhausted,
        S::Store,
    ];
    ALL.into_iter().find(|s| *s as u32 == status)
}

/// Borrows `len` values of `T` at `ptr`. NULL is accepted only with `len == 0`; a length whose
/// size in bytes passes `isize::MAX` is refused.
///
/// # Safety
/// If `len` is not 0, `ptr` must be aligned for `T` and point to `len` readable values that stay
/// valid and unchanged for `'a`.
pub(crate) unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> Result<&'a [T], pgate_status> {
    if len > isize::MAX as usize / size_of::<T>().max(1) {
        return Err(pgate_status::InvalidArgument);
    }
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(pgate_status::NullPointer);
    }
    // SAFETY: `ptr` is non-NULL, the slice's size is at most `isize::MAX` bytes, and the
    // caller guarantees `len` aligned readable values that live for 'a.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrows `len` bytes at `ptr`: [`slice`] of bytes.
///
/// # Safety
/// As [`slice`].
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], pgate_status> {
    // SAFETY: forwarded to the caller.
    unsafe { slice(ptr, len) }
}

/// Borrows `len` bytes at `ptr` as UTF-8.
///
/// # Safety
/// As [`bytes`].
pub(crate) unsafe fn text<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a str, Failure> {
    // SAFETY: forwarded to the caller.
    let raw = unsafe { bytes(ptr, len) }?;
    std::str::from_utf8(raw).map_err(|e| {
        Failure::new(
            pgate_status::InvalidArgument,
            format!(
                "{what} is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })
}

/// Writes `value` to `out`.
///
/// # Safety
/// `out` must be NULL or valid for a write of `T`.
pub(crate) unsafe fn write<T>(out: *mut T, value: T) -> Result<(), pgate_status> {
    if out.is_null() {
        return Err(pgate_status::NullPointer);
    }
    // SAFETY: non-NULL, and the caller guarantees it is valid for writes of T.
    unsafe { out.write(value) };
    Ok(())
}

/// Copies `text` plus a NUL into the caller's buffer `buf` of `cap` bytes and stores the text's
/// length (without NUL) in `*len_out`. If the buffer is too small (or NULL), only the length
/// is stored and [`pgate_status::BufferTooSmall`] is returned.
///
/// # Safety
/// `buf` must be NULL or valid for `cap` writable bytes; `len_out` NULL or valid for a write.
pub(crate) unsafe fn copy_out(
    text: &str,
    buf: *mut u8,
    cap: usize,
    len_out: *mut usize,
) -> Result<(), pgate_status> {
    if len_out.is_null() {
        return Err(pgate_status::NullPointer);
    }
    if cap > isize::MAX as usize {
        return Err(pgate_status::InvalidArgument);
    }
    // SAFETY: len_out is non-NULL and, per the caller, valid for a write.
    unsafe { len_out.write(text.len()) };
    if buf.is_null() || cap <= text.len() {
        return Err(pgate_status::BufferTooSmall);
    }
    // SAFETY: buf is non-NULL with `cap > text.len()` writable bytes (caller's guarantee);
    // the source is a distinct Rust string, so the ranges do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf, text.len());
        buf.add(text.len()).write(0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_a_status() {
        assert_eq!(guard(|| panic!("boom")), pgate_status::Panic);
        assert_eq!(
            guard(|| Err(pgate_status::NullPointer)),
            pgate_status::NullPointer
        );
        assert_eq!(guard(|| Ok(())), pgate_status::Ok);
    }

    #[test]
    fn every_status_round_trips_through_its_number() {
        // Store is the last status: a status missing from the list fails here.
        let past = pgate_status::Store as u32 + 1;
        for n in 0..past {
            assert_eq!(status_from_u32(n).map(|s| s as u32), Some(n));
        }
        assert_eq!(status_from_u32(past), None);
    }

    #[test]
    fn slices_refuse_null_and_overflowing_lengths() {
        // SAFETY: NULL with length 0 is the empty slice; the others are refused before use.
        unsafe {
            assert_eq!(bytes(std::ptr::null(), 0), Ok(&[][..]));
            assert_eq!(bytes(std::ptr::null(), 1), Err(pgate_status::NullPointer));
            assert_eq!(
                bytes([1u8].as_ptr(), usize::MAX),
                Err(pgate_status::InvalidArgument)
            );
        }
    }
}
