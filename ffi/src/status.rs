//! Status codes of the C ABI: fixed numbers, never reused, `PGATE_STATUS_OK = 0`.

use std::ffi::c_char;

use promotion_gates::{Error, FlagError, PromotionError, RollbackError, SwapError};

/// The result of every fallible C call.
///
/// Numbers are part of the ABI: they never change and are never reused.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pgate_status {
    /// Success.
    Ok = 0,
    /// A required pointer was NULL.
    NullPointer = 1,
    /// An argument is out of range: a length above `PTRDIFF_MAX`, an unknown enum value, a
    /// name that is not UTF-8; two gates of one name in one exposition
    /// (`pgate_metrics_prometheus_gates`, `_counted`); or a call that writes to a gate, judges
    /// it, reads its window, frees it or sets the log callback, called inside the log callback
    /// (the library may hold a lock while it logs); nothing changed.
    InvalidArgument = 2,
    /// A config value was refused by validation (the error names the field and value). Also
    /// any JSON document a call takes (a config, an SLO) longer than `MAX_DOCUMENT_BYTES` (8
    /// MiB): refused before a byte of it is read, the error naming `document` and both sizes.
    InvalidConfig = 3,
    /// A JSON document could not be read: not JSON, or a value its field's type cannot hold (a
    /// string for a number, a negative count or duration, an unknown field); the error names the
    /// position and field. A value of the right type that validation refuses (a duration of 0
    /// where one is needed) is `PGATE_STATUS_INVALID_CONFIG`.
    InvalidJson = 4,
    /// The promotion path does not exist in the release state machine.
    InvalidPromotion = 5,
    /// The gated promotion was refused: the new version is not compliant.
    SloNotMet = 6,
    /// The gated promotion was refused: not enough data to judge yet.
    InsufficientData = 7,
    /// The gate is already in the requested environment (or at a canary share of the same
    /// buckets).
    AlreadyThere = 8,
    /// A feature flag name is invalid.
    InvalidFlag = 9,
    /// The flag to disable is not enabled.
    FlagNotEnabled = 10,
    /// A rollback was asked for in Production, or with a blank reason (no visible character),
    /// or with a reason over `MAX_REASON_BYTES` (4096).
    RollbackRefused = 11,
    /// An output buffer is too small; the text's length was written, and no text (never a part
    /// of one). Every text output is written with a NUL after it, and the length written
    /// leaves the NUL out: the buffer needs the length + 1 bytes, so a buffer of exactly the
    /// length is refused again, with the same length. Call again with `*len_out + 1` bytes (or
    /// more). A text read in two calls (a size probe, then the copy) can grow in between:
    /// another thread of this process rolls back, promotes, swaps a config or changes a flag,
    /// or, with a state store, another process writes. The second call then returns this
    /// again with the new length: call until `PGATE_STATUS_OK`, growing the buffer each time.
    BufferTooSmall = 12,
    /// The handle is not a live gate (already freed, or never made by `pgate_gate_new`).
    InvalidHandle = 13,
    /// The library panicked, or an internal invariant failed (a cohort's histogram missing from
    /// a window, a histogram, exposition or JSON output that could not be written into
    /// memory); the call had
    /// no effect that can be relied on. A bug: report it.
    Panic = 14,
    /// An index is beyond the end of a list.
    IndexOutOfRange = 15,
    /// A flag set number the gate does not hold: its set was replaced more than
    /// `FLAG_SET_GRACE_WRITES` (60) writes ago, or the gate never gave it out (usually another
    /// gate's number; gates number sets from random starts). A gate never gives a number to a
    /// different set, so a host's cache keyed by gate and number stays right.
    UnknownFlagSet = 16,
    /// The write needs a new flag set number and the gate has used them all (after about 4.2
    /// billion distinct sets), or enables a flag name the gate never held when it has held
    /// `MAX_FLAG_NAMES` (100,000) distinct names; nothing changed. Create a new gate (or, for
    /// names, enable one it held).
    FlagSetsExhausted = 17,
    /// The state store could not be opened, read or written, or another process wrote first
    /// (the error names the store's path or endpoints). Routing goes on from the last state.
    Store = 18,
    /// `pgate_promote_from` was refused: the gate is no longer in the stage the caller read (a
    /// rollback or another write came first). Nothing changed.
    StageChanged = 19,
    /// `pgate_swap_config_from` was refused: the gate changed after the caller read its change
    /// count (a rollback, a promotion, a flag turned on or off, a config or SLO swap, here or
    /// read from the state store). Nothing changed: read the count and the config again.
    GateChanged = 20,
}

crate::boundary::numbered!(pgate_status {
    Ok,
    NullPointer,
    InvalidArgument,
    InvalidConfig,
    InvalidJson,
    InvalidPromotion,
    SloNotMet,
    InsufficientData,
    AlreadyThere,
    InvalidFlag,
    FlagNotEnabled,
    RollbackRefused,
    BufferTooSmall,
    InvalidHandle,
    Panic,
    IndexOutOfRange,
    UnknownFlagSet,
    FlagSetsExhausted,
    Store,
    StageChanged,
    GateChanged,
});

impl pgate_status {
    /// The status's name as a static C string.
    pub(crate) fn as_cstr(self) -> &'static std::ffi::CStr {
        match self {
            pgate_status::Ok => c"PGATE_STATUS_OK",
            pgate_status::NullPointer => c"PGATE_STATUS_NULL_POINTER",
            pgate_status::InvalidArgument => c"PGATE_STATUS_INVALID_ARGUMENT",
            pgate_status::InvalidConfig => c"PGATE_STATUS_INVALID_CONFIG",
            pgate_status::InvalidJson => c"PGATE_STATUS_INVALID_JSON",
            pgate_status::InvalidPromotion => c"PGATE_STATUS_INVALID_PROMOTION",
            pgate_status::SloNotMet => c"PGATE_STATUS_SLO_NOT_MET",
            pgate_status::InsufficientData => c"PGATE_STATUS_INSUFFICIENT_DATA",
            pgate_status::AlreadyThere => c"PGATE_STATUS_ALREADY_THERE",
            pgate_status::InvalidFlag => c"PGATE_STATUS_INVALID_FLAG",
            pgate_status::FlagNotEnabled => c"PGATE_STATUS_FLAG_NOT_ENABLED",
            pgate_status::RollbackRefused => c"PGATE_STATUS_ROLLBACK_REFUSED",
            pgate_status::BufferTooSmall => c"PGATE_STATUS_BUFFER_TOO_SMALL",
            pgate_status::InvalidHandle => c"PGATE_STATUS_INVALID_HANDLE",
            pgate_status::Panic => c"PGATE_STATUS_PANIC",
            pgate_status::IndexOutOfRange => c"PGATE_STATUS_INDEX_OUT_OF_RANGE",
            pgate_status::UnknownFlagSet => c"PGATE_STATUS_UNKNOWN_FLAG_SET",
            pgate_status::FlagSetsExhausted => c"PGATE_STATUS_FLAG_SETS_EXHAUSTED",
            pgate_status::Store => c"PGATE_STATUS_STORE",
            pgate_status::StageChanged => c"PGATE_STATUS_STAGE_CHANGED",
            pgate_status::GateChanged => c"PGATE_STATUS_GATE_CHANGED",
        }
    }
}

impl From<&Error> for pgate_status {
    fn from(err: &Error) -> Self {
        match err {
            Error::Config(_) => pgate_status::InvalidConfig,
            Error::Json(_) => pgate_status::InvalidJson,
            Error::Store(_) => pgate_status::Store,
            Error::Promotion(PromotionError::InvalidPath { .. }) => pgate_status::InvalidPromotion,
            Error::Promotion(PromotionError::AlreadyThere(_)) => pgate_status::AlreadyThere,
            Error::Promotion(PromotionError::SloNotMet { .. }) => pgate_status::SloNotMet,
            Error::Promotion(PromotionError::InsufficientData { .. }) => {
                pgate_status::InsufficientData
            }
            Error::Promotion(PromotionError::StageChanged { .. }) => pgate_status::StageChanged,
            Error::Swap(SwapError::GateChanged { .. }) => pgate_status::GateChanged,
            Error::Flag(FlagError::InvalidName { .. }) => pgate_status::InvalidFlag,
            Error::Flag(FlagError::NotEnabled(_)) => pgate_status::FlagNotEnabled,
            Error::Flag(FlagError::UnknownSet(_)) => pgate_status::UnknownFlagSet,
            Error::Flag(FlagError::SetNumbersExhausted | FlagError::NamesExhausted) => {
                pgate_status::FlagSetsExhausted
            }
            Error::Rollback(
                RollbackError::NothingToRollBack
                | RollbackError::BlankReason { .. }
                | RollbackError::ReasonTooLong { .. },
            ) => pgate_status::RollbackRefused,
            // A cause the C ABI has no constant for (a later core): the kind's general status.
            Error::Promotion(_) => pgate_status::InvalidPromotion,
            Error::Flag(_) => pgate_status::InvalidFlag,
            Error::Rollback(_) => pgate_status::RollbackRefused,
            _ => pgate_status::InvalidArgument,
        }
    }
}

/// The name of a status code, e.g. `"PGATE_STATUS_SLO_NOT_MET"`: a static, NUL-terminated
/// string that the caller must not free. Unknown numbers give `"PGATE_STATUS_UNKNOWN"`.
///
/// Thread-safe; never fails.
#[unsafe(no_mangle)]
pub extern "C" fn pgate_status_str(status: u32) -> *const c_char {
    pgate_status::from_u32(status)
        .map_or(c"PGATE_STATUS_UNKNOWN", pgate_status::as_cstr)
        .as_ptr()
}
