"""Exceptions, one class per concern, and ``_check``: the one place status codes become them.

Every exception carries ``.status`` (a :class:`Status`) and ``.message`` (the library's
message, which names the field or operation and the refused value). The hierarchy::

    PromotionGatesError
    ├── InvalidArgumentError (ValueError)    INVALID_ARGUMENT, e.g. a name that is not UTF-8
    ├── NullPointerError                     NULL_POINTER: a Gate revived after it was freed
    ├── InvalidConfigError (ValueError)      INVALID_CONFIG: a config value was refused
    ├── InvalidJsonError (ValueError)        INVALID_JSON: a document could not be parsed
    ├── InvalidPromotionError                INVALID_PROMOTION: no such path
    │   └── AlreadyThereError                ALREADY_THERE
    ├── PromotionRefusedError                promotion refused; nothing changed
    │   ├── SloNotMetError                   SLO_NOT_MET
    │   ├── InsufficientDataError            INSUFFICIENT_DATA
    │   └── StageChangedError                STAGE_CHANGED: the gate left the stage promote_from read
    ├── GateChangedError                     GATE_CHANGED: the gate changed since the change count
    │                                        swap_config_from read; nothing changed
    ├── FlagError
    │   ├── InvalidFlagError (ValueError)    INVALID_FLAG
    │   ├── FlagNotEnabledError              FLAG_NOT_ENABLED
    │   ├── UnknownFlagSetError              UNKNOWN_FLAG_SET: a stale or foreign decision
    │   └── FlagSetsExhaustedError           FLAG_SETS_EXHAUSTED
    ├── RollbackRefusedError                 ROLLBACK_REFUSED
    ├── InvalidHandleError                   INVALID_HANDLE
    │   └── GateClosedError                  the Gate was closed (raised by this binding)
    ├── BufferTooSmallError                  BUFFER_TOO_SMALL: a text outgrew every buffer given
    ├── IndexOutOfRangeError (IndexError)    INDEX_OUT_OF_RANGE
    ├── StoreError                           STORE: the state store failed, or another process wrote first
    └── PanicError                           PANIC: a bug of the library, please report it
"""

from __future__ import annotations

import _thread
import threading
from ctypes import c_void_p

from ._ffi import Status, lib

__all__ = [
    "AlreadyThereError",
    "BufferTooSmallError",
    "FlagError",
    "FlagNotEnabledError",
    "FlagSetsExhaustedError",
    "GateChangedError",
    "GateClosedError",
    "IndexOutOfRangeError",
    "InsufficientDataError",
    "InvalidArgumentError",
    "InvalidConfigError",
    "InvalidFlagError",
    "InvalidHandleError",
    "InvalidJsonError",
    "InvalidPromotionError",
    "NullPointerError",
    "PanicError",
    "PromotionGatesError",
    "PromotionRefusedError",
    "RollbackRefusedError",
    "SloNotMetError",
    "StageChangedError",
    "StoreError",
    "UnknownFlagSetError",
]


class PromotionGatesError(Exception):
    """A call into promotion-gates failed: ``.status`` says how, ``.message`` says why."""

    #: The status the library returned (a :class:`Status` unless the library is newer).
    status: Status | int
    #: The library's message (or the status's name when it gave none).
    message: str

    def __init__(self, status: Status | int, message: str) -> None:
        name = status.name if isinstance(status, Status) else f"status {status}"
        super().__init__(f"{message} ({name})")
        self.status = status
        self.message = message


class InvalidArgumentError(PromotionGatesError, ValueError):
    """An argument is out of range: an unknown enum value, a name that is not UTF-8."""


class NullPointerError(PromotionGatesError):
    """The library was handed a NULL pointer: a call on a :class:`Gate` brought back to life
    after the garbage collector freed it (a ``__del__`` that kept it), whose handle is NULL
    from then on. Otherwise a bug of this binding, please report it."""


class InvalidConfigError(PromotionGatesError, ValueError):
    """A config value was refused by validation; the message names the field and value."""


class InvalidJsonError(PromotionGatesError, ValueError):
    """A JSON document could not be parsed (or has an unknown field); the message says where."""


class InvalidPromotionError(PromotionGatesError):
    """The promotion path does not exist in the release state machine."""


class AlreadyThereError(InvalidPromotionError):
    """The gate is already in the requested environment."""


class PromotionRefusedError(PromotionGatesError):
    """A promotion was refused: by the judge, for a gated move (the message has the
    evidence), or because the gate left the stage :meth:`~promotion_gates.Gate.promote_from`
    read. Nothing was promoted."""


class SloNotMetError(PromotionRefusedError):
    """The gated promotion was refused: the new version is not compliant."""


class InsufficientDataError(PromotionRefusedError):
    """The gated promotion was refused: not enough data to judge yet."""


class StageChangedError(PromotionRefusedError):
    """:meth:`~promotion_gates.Gate.promote_from` was refused: the gate is no longer in the
    release stage the caller read (a rollback, the judge's or another process's, or another
    write came first). Nothing was promoted. The message names the stage it is in now."""


class GateChangedError(PromotionGatesError):
    """:meth:`~promotion_gates.Gate.swap_config_from` was refused: the gate changed after the
    caller read its :meth:`~promotion_gates.Gate.change_count` (a rollback, a promotion, a flag
    turned on or off, a config or SLO swap, made here or by another process sharing the state
    store). Nothing changed: the config was not swapped (read the change count, then the config,
    again). The message names the count read and the count now."""


class FlagError(PromotionGatesError):
    """A feature flag operation was refused."""


class InvalidFlagError(FlagError, ValueError):
    """A feature flag name is invalid (empty, too long, whitespace, control, format or invisible characters)."""


class FlagNotEnabledError(FlagError):
    """The flag to disable is not enabled."""


class RollbackRefusedError(PromotionGatesError):
    """A rollback was asked for in Production, or without a reason."""


class InvalidHandleError(PromotionGatesError):
    """The handle is not a live gate."""


class UnknownFlagSetError(FlagError):
    """A decision's flag set is no longer (or never was) one of this gate's: a decision of
    another gate, or one kept while its flags were replaced more than ``FLAG_SET_GRACE_WRITES``
    (60) writes ago. ``Gate.features`` names the set: ``invalid flag_set = N: …``."""


class FlagSetsExhaustedError(FlagError):
    """The gate has given out every flag-set number it can (after about 4.2 billion distinct
    sets), or has held ``MAX_FLAG_NAMES`` (100,000) distinct flag names and the write enables a
    new one; the write is refused and nothing changed."""


class GateClosedError(InvalidHandleError):
    """The :class:`~promotion_gates.Gate` was closed; it cannot be used any more."""

    def __init__(self, operation: str) -> None:
        super().__init__(Status.INVALID_HANDLE, f"{operation} on a closed Gate")


class BufferTooSmallError(PromotionGatesError):
    """An output buffer was too small (the binding retries; seen only if it keeps growing)."""


class IndexOutOfRangeError(PromotionGatesError, IndexError):
    """An index is beyond the end of a list."""


class StoreError(PromotionGatesError):
    """The state store could not be opened, read or written, or another process wrote first.

    The message names the store's path or endpoints; routing goes on from the last state.
    """


class PanicError(PromotionGatesError):
    """The library panicked, or an internal invariant failed; the call had no effect that can
    be relied on. A bug: report it."""


_BY_STATUS: dict[Status, type[PromotionGatesError]] = {
    Status.NULL_POINTER: NullPointerError,
    Status.INVALID_ARGUMENT: InvalidArgumentError,
    Status.INVALID_CONFIG: InvalidConfigError,
    Status.INVALID_JSON: InvalidJsonError,
    Status.INVALID_PROMOTION: InvalidPromotionError,
    Status.SLO_NOT_MET: SloNotMetError,
    Status.INSUFFICIENT_DATA: InsufficientDataError,
    Status.ALREADY_THERE: AlreadyThereError,
    Status.INVALID_FLAG: InvalidFlagError,
    Status.FLAG_NOT_ENABLED: FlagNotEnabledError,
    Status.ROLLBACK_REFUSED: RollbackRefusedError,
    Status.BUFFER_TOO_SMALL: BufferTooSmallError,
    Status.INVALID_HANDLE: InvalidHandleError,
    Status.PANIC: PanicError,
    Status.INDEX_OUT_OF_RANGE: IndexOutOfRangeError,
    Status.UNKNOWN_FLAG_SET: UnknownFlagSetError,
    Status.FLAG_SETS_EXHAUSTED: FlagSetsExhaustedError,
    Status.STORE: StoreError,
    Status.STAGE_CHANGED: StageChangedError,
    Status.GATE_CHANGED: GateChangedError,
}


def error_class(status: Status) -> type[PromotionGatesError]:
    """The exception class raised for a (non-OK) status."""
    return _BY_STATUS.get(status, PromotionGatesError)


def _message(err: c_void_p) -> str:
    """The message of the ``pgate_error *`` a call wrote (``""`` for none), copied; the error
    object is freed, and ``err`` cleared."""
    if not err.value:
        return ""
    c = lib()
    try:
        return (c.pgate_error_message(err) or b"").decode("utf-8", "replace")
    finally:
        c.pgate_error_free(err)
        err.value = None


#: A ``KeyboardInterrupt`` or ``SystemExit`` that a signal handler raised in the main thread
#: inside the log callback, which ctypes would print and drop: the trampoline (or, when it was
#: raised at the trampoline's first instruction, its ``sys.unraisablehook``) puts it here, and
#: the library call that logged raises it once the library returned (:func:`raise_interrupted`,
#: from ``_check`` after every cold-path call and from the hot calls themselves). One kept
#: while a garbage collection frees a gate is raised by the gate's finalizer, which Python
#: reports at once through ``sys.unraisablehook`` (a finalizer cannot raise).
interrupted: list[BaseException] = []


def raise_interrupted() -> None:
    """Raises the exception in ``interrupted`` in the main thread, where it was raised (a call
    on another thread leaves it there)."""
    if interrupted and _thread.get_ident() == threading.main_thread().ident:
        raise interrupted.pop()


def _check(status: int, err: c_void_p | None = None, *, raise_kept: bool = True) -> None:
    """Raises the exception of ``status`` unless it is OK; always frees the error object.

    ``err`` is the ``pgate_error *`` a cold-path call wrote (or ``None`` for calls without
    one). Its message is copied before it is freed; without one, the status's name is the
    message. First, unless ``raise_kept`` is False, it raises a signal handler's exception the
    log callback kept during the call (:data:`interrupted`): a Ctrl-C while the library ran
    (``Gate(...)`` waiting for an unreachable etcd store, say) is raised by that call, whatever
    its status, not by a later, unrelated one.
    """
    c = lib()
    message = "" if err is None else _message(err)
    if raise_kept and interrupted:
        raise_interrupted()
    if status == Status.OK:
        return
    try:
        known = Status(status)
    except ValueError:
        raise PromotionGatesError(
            status, message or f"unknown status {status} from the library (a newer ABI?)"
        ) from None
    if not message:
        message = (c.pgate_status_str(status) or b"").decode("ascii", "replace")
    raise error_class(known)(known, message)
