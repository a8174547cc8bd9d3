//! The panic boundary and the conversions every exported function goes through.
//!
//! Every exported body runs inside [`guard`] (or [`guard_err`]), which catches a panic and
//! turns it into [`pgate_status::Panic`]. Every pointer is checked for NULL and every length
//! against `isize::MAX` before it is used; outputs are written only on success.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::{pgate_error, set_error};
use crate::status::pgate_status;
use promotion_gates::check_document_length;

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

/// The C names of a byte-string argument (a pointer and its length) and what the text is, for
/// the messages that refuse it: `invalid config_json = NULL with config_len = 5: ...`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Param {
    /// The pointer's C parameter name (`config_json`).
    pub(crate) pointer: &'static str,
    /// The length's C parameter name (`config_len`).
    pub(crate) length: &'static str,
    /// What the text is, for a text that is not UTF-8 (`config`).
    pub(crate) what: &'static str,
    /// For a JSON document, the library's name of what it holds (`PromotionConfig`,
    /// `SloConfig`): then a length over
    /// [`MAX_DOCUMENT_BYTES`](promotion_gates::MAX_DOCUMENT_BYTES) is refused before a byte is
    /// read, in the library's words ([`check_document_length`], see [`text`]).
    pub(crate) document: Option<&'static str>,
}

impl Param {
    /// The failure for `status` from [`slice`] given this argument with length `len`.
    fn refused(self, status: pgate_status, len: usize) -> Failure {
        let Param {
            pointer, length, ..
        } = self;
        match status {
            pgate_status::NullPointer => Failure::new(
                status,
                format!(
                    "invalid {pointer} = NULL with {length} = {len}: a NULL pointer needs length 0"
                ),
            ),
            _ => too_long(length, len),
        }
    }
}

/// The failure for a length or capacity `name = value` above `PTRDIFF_MAX`.
pub(crate) fn too_long(name: &str, value: usize) -> Failure {
    Failure::new(
        pgate_status::InvalidArgument,
        format!(
            "invalid {name} = {value}: above PTRDIFF_MAX ({})",
            isize::MAX
        ),
    )
}

/// The failure for a NULL output pointer `name`.
pub(crate) fn null_output(name: &str) -> Failure {
    Failure::new(
        pgate_status::NullPointer,
        format!("invalid {name} = NULL: the result is written there"),
    )
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

/// Gives a fieldless `#[repr(u32)]` enum of the C ABI `ALL`, its variants in the enum's order,
/// and `from_u32`, which reads a number coming from C without trusting it to be a variant's.
/// The variants are named once, in the call; one missing from it is a compile error (an
/// exhaustive `match` over the names), so a new variant cannot be left out.
macro_rules! numbered {
    ($enum:ident { $($variant:ident),+ $(,)? }) => {
        impl $enum {
            /// Every variant, in the order of the enum.
            pub(crate) const ALL: &'static [$enum] = &[$($enum::$variant),+];

            /// The variant numbered `number`, if any.
            pub(crate) fn from_u32(number: u32) -> Option<$enum> {
                Self::ALL.iter().copied().find(|v| *v as u32 == number)
            }

            /// What a refusal of another number lists: each variant's number and lower-case
            /// name, "0 (canary), 1 (staging) or 2 (production)".
            #[allow(dead_code)] // not every enum read from C is named in an error
            pub(crate) fn choices() -> String {
                let names = [$(stringify!($variant)),+];
                $crate::boundary::choices(Self::ALL.iter().map(|v| *v as u32).zip(names))
            }
        }

        // Fails to compile when a variant of the enum is missing from the call.
        const _: fn($enum) = |v| match v {
            $($enum::$variant)|+ => {}
        };
    };
}
pub(crate) use numbered;

/// "0 (canary), 1 (staging) or 2 (production)" from numbered names (lower-cased).
pub(crate) fn choices(numbered: impl ExactSizeIterator<Item = (u32, &'static str)>) -> String {
    let last = numbered.len().saturating_sub(1);
    let mut text = String::new();
    for (i, (number, name)) in numbered.enumerate() {
        let separator = match i {
            0 => "",
            _ if i == last => " or ",
            _ => ", ",
        };
        text.push_str(&format!(
            "{separator}{number} ({})",
            name.to_ascii_lowercase()
        ));
    }
    text
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

/// Borrows `len` bytes at `ptr` as UTF-8. A document ([`Param::document`]) over
/// [`MAX_DOCUMENT_BYTES`](promotion_gates::MAX_DOCUMENT_BYTES) bytes is `INVALID_CONFIG` on
/// field `document`, checked before the UTF-8 is.
///
/// # Safety
/// As [`bytes`].
pub(crate) unsafe fn text<'a>(
    ptr: *const u8,
    len: usize,
    param: Param,
) -> Result<&'a str, Failure> {
    // SAFETY: forwarded to the caller.
    let raw = unsafe { bytes(ptr, len) }.map_err(|status| param.refused(status, len))?;
    if let Some(what) = param.document {
        // The library's refusal (`PromotionConfig::parse_json`), made before the UTF-8 check:
        // a long text is not read through, and its size is what is wrong with it.
        check_document_length(len, what)
            .map_err(|e| Failure::new(pgate_status::InvalidConfig, e.to_string()))?;
    }
    std::str::from_utf8(raw).map_err(|e| {
        Failure::new(
            pgate_status::InvalidArgument,
            format!(
                "invalid {} = {}: {} is not valid UTF-8 (invalid byte at offset {})",
                param.pointer,
                promotion_gates::shown_bytes(raw),
                param.what,
                e.valid_up_to()
            ),
        )
    })
}

/// Borrows `len` bytes at `ptr` as UTF-8 when `len` is not 0; `None` for an absent text
/// (length 0, whatever `ptr` is).
///
/// # Safety
/// As [`bytes`] when `len` is not 0.
pub(crate) unsafe fn optional_text<'a>(
    ptr: *const u8,
    len: usize,
    param: Param,
) -> Result<Option<&'a str>, Failure> {
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: forwarded to the caller.
    unsafe { text(ptr, len, param) }.map(Some)
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

/// Checks a text output as [`copy_out`] will: `len_out` not NULL, `cap` at most `isize::MAX`.
/// A call that reads a gate's window (which may make an evaluation, and roll back) checks it
/// before the read, so that a refused call changes nothing.
pub(crate) fn text_out(cap: usize, len_out: *const usize) -> Result<(), pgate_status> {
    if len_out.is_null() {
        return Err(pgate_status::NullPointer);
    }
    if cap > isize::MAX as usize {
        return Err(pgate_status::InvalidArgument);
    }
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
    text_out(cap, len_out)?;
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

    /// `all` are numbered `first ..= last` without a gap, each round-trips through its
    /// number, and the numbers around that range are refused.
    fn numbered_without_gaps<T: Copy + PartialEq + std::fmt::Debug>(
        all: &[T],
        number: fn(T) -> u32,
        from_u32: fn(u32) -> Option<T>,
    ) {
        let first = number(all[0]);
        for (n, variant) in (first..).zip(all) {
            assert_eq!(number(*variant), n, "{variant:?}");
            assert_eq!(from_u32(n), Some(*variant));
        }
        let past = first + all.len() as u32;
        assert_eq!(from_u32(past), None);
        assert_eq!(from_u32(u32::MAX), None);
        if let Some(before) = first.checked_sub(1) {
            assert_eq!(from_u32(before), None);
        }
    }

    #[test]
    fn every_enum_read_from_c_round_trips_through_its_numbers() {
        use crate::log::pgate_log_level;
        use crate::route::pgate_environment;
        numbered_without_gaps(pgate_status::ALL, |s| s as u32, pgate_status::from_u32);
        numbered_without_gaps(
            pgate_log_level::ALL,
            |l| l as u32,
            pgate_log_level::from_u32,
        );
        numbered_without_gaps(
            pgate_environment::ALL,
            |e| e as u32,
            pgate_environment::from_u32,
        );
    }

    #[test]
    fn refusals_list_every_variant_by_number_and_name() {
        use crate::log::pgate_log_level;
        use crate::route::pgate_environment;
        assert_eq!(
            pgate_environment::choices(),
            "0 (canary), 1 (staging) or 2 (production)"
        );
        assert_eq!(
            pgate_log_level::choices(),
            "1 (error), 2 (warn), 3 (info), 4 (debug) or 5 (trace)"
        );
        assert_eq!(choices([(7, "One")].into_iter()), "7 (one)");
        assert_eq!(choices(std::iter::empty()), "");
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
