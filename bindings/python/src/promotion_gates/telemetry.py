"""Telemetry: the Prometheus exposition, each cohort's latency histogram, and log lines.

Every read here is side-effect free on the gate (it never judges), so a ``/metrics`` handler
may call :func:`metrics_prometheus` on every scrape::

    from promotion_gates import Gate, metrics_prometheus

    with Gate({"gate": "checkout"}) as gate:
        body = metrics_prometheus(gate)  # serve as "text/plain; version=0.0.4"
"""

from __future__ import annotations

import atexit
import enum
import json
import os
import threading
from collections.abc import Callable
from ctypes import byref, c_size_t, c_void_p, create_string_buffer
from typing import Any

from . import _ffi
from ._arguments import member, refused
from .errors import BufferTooSmallError, InvalidArgumentError, _check
from .gate import Gate, held_together, log_callback_thread

__all__ = ["LogLevel", "latency_histograms", "metrics_prometheus", "set_log_callback"]

_ATTEMPTS = 8


class LogLevel(enum.IntEnum):
    """``enum pgate_log_level``: a log line's level, most severe first (fixed numbers)."""

    ERROR = 1
    WARN = 2
    INFO = 3
    DEBUG = 4
    TRACE = 5


def metrics_prometheus(*gates: Gate) -> str:
    """The Prometheus text exposition (format 0.0.4) of one or more gates: each metric family
    once, one series per gate, labelled ``gate="<name>"``. Two gates of one name would repeat
    each other's series: :class:`InvalidArgumentError`, naming both positions (and for a
    value that is not a :class:`Gate`, its position: ``invalid gates[1] = None: …``)."""
    for i, gate in enumerate(gates):
        _gate(f"gates[{i}]", gate)

    def exposition(live: list[c_void_p]) -> str:
        handles = (c_void_p * len(live))(*live)
        cap = 16384
        length = c_size_t()
        for _ in range(_ATTEMPTS):
            buf = create_string_buffer(cap)
            status = _ffi.lib().pgate_metrics_prometheus_gates(
                handles, len(live), buf, cap, byref(length)
            )
            if status == _ffi.Status.INVALID_ARGUMENT:
                _same_names(gates)
            if status != _ffi.Status.BUFFER_TOO_SMALL:
                _check(status)
                return buf.raw[: length.value].decode("utf-8")
            cap = length.value + 4096  # the text may grow between two calls
        raise BufferTooSmallError(_ffi.Status.BUFFER_TOO_SMALL, "metrics_prometheus kept growing")

    # Every gate is held (close() waits) for the call.
    return held_together(gates, "metrics_prometheus", exposition)


def _gate(field: str, value: object) -> Gate:
    """``value`` if it is a :class:`Gate`, else raises naming ``field`` and the value."""
    if not isinstance(value, Gate):
        raise refused(field, value, f"a Gate, not {type(value).__name__}")
    return value


def _same_names(gates: tuple[Gate, ...]) -> None:
    """Explains the library's refusal of gates of one name (or one gate passed twice) by
    their positions."""
    first: dict[str, int] = {}
    position: dict[int, int] = {}
    for i, gate in enumerate(gates):
        j = position.setdefault(id(gate), i)
        if j != i:
            raise InvalidArgumentError(
                _ffi.Status.INVALID_ARGUMENT, f"gates[{j}] and gates[{i}] are the same gate"
            )
        name = gate.name()
        if name in first:
            raise InvalidArgumentError(
                _ffi.Status.INVALID_ARGUMENT,
                f"gates[{i}] is named {name!r}, as gates[{first[name]}] is: "
                "their series would repeat",
            )
        first[name] = i


def latency_histograms(gate: Gate) -> dict[str, Any]:
    """Each cohort's latency histogram of the judged window: ``{"encoding":
    "hdrhistogram-v2-deflate-base64", "unit": "microseconds", "canary": "...", "stable":
    "..."}``, the histograms in HdrHistogram's compressed V2 form, base64 (decode them with
    an HdrHistogram port, e.g. ``hdrh.histogram.HdrHistogram.decode``).

    Raises:
        InvalidArgumentError: ``gate`` is not a :class:`Gate`.
    """
    document: dict[str, Any] = json.loads(
        _gate("gate", gate)._json("pgate_latency_histograms_json", "latency_histograms")
    )
    return document


#: The ctypes callback the library holds (the library keeps only its address): kept alive
#: until it is replaced, since the library returns from a replacement only once no thread is
#: still inside the old callback.
_current: Any = None
#: The callbacks kept alive while one replaces another (see set_log_callback).
_alive: list[Any] = []
#: Whether this process was forked while a log callback was set (see set_log_callback).
_forked_with_callback = False


def _after_fork_in_child() -> None:
    global _forked_with_callback
    _forked_with_callback = _forked_with_callback or _current is not None


os.register_at_fork(after_in_child=_after_fork_in_child)
#: Serializes the setting of callbacks, so that ``_current`` is the library's.
_setting = threading.Lock()
#: Whether the atexit hook that detaches the callback is registered, and whether it ran.
_hooked = False
_exiting = False


def set_log_callback(
    callback: Callable[[LogLevel, str, str], None] | None,
    max_level: LogLevel = LogLevel.INFO,
) -> None:
    """Sends the library's log lines up to ``max_level`` to ``callback(level, target,
    message)``; ``None`` stops them. The callback runs on the thread that logged (any thread
    using a gate, or a state store's own thread) and must not raise: an exception is printed
    by ctypes and dropped.

    Returns once no thread is still running the callback it replaces: so the callback must
    return quickly, and must never wait for a thread that is setting a callback. The callback
    must not call any method of a gate: some lines are logged while the gate holds its writer
    lock, which is not reentrant (the call would wait forever), and :meth:`Gate.close` would
    wait for the logging thread's own call to return (it gives up after 10 s, leaving the gate
    unfreed). Nor may it call this function, which would wait for
    itself (it raises :class:`InvalidArgumentError`). Append the line somewhere and return.

    At interpreter exit the callback is detached (an :mod:`atexit` hook): a thread still
    logging then, such as a daemon thread inside ``route`` or a state store's thread, would
    otherwise enter Python while it finalizes, which aborts the process. From then on this
    function installs no callback.

    Raises:
        InvalidArgumentError: ``max_level`` is not a :class:`LogLevel` value, ``callback`` is
            not callable, or this is called from inside the callback.
    """
    number = member(LogLevel, "max_level", max_level)
    if callback is not None and not callable(callback):
        raise refused("callback", callback, "not callable or None")
    if getattr(log_callback_thread, "inside", False):
        raise InvalidArgumentError(
            _ffi.Status.INVALID_ARGUMENT,
            "set_log_callback was called from inside the log callback (it would wait for itself)",
        )
    if _forked_with_callback:
        raise InvalidArgumentError(
            _ffi.Status.INVALID_ARGUMENT,
            "set_log_callback in a process forked while a log callback was set: a thread of "
            "the parent may have held the library's callback lock, which would wait for ever "
            "here; set the callback after the fork, in each process",
        )

    def trampoline(_: Any, level: int, target: bytes, message: bytes, length: int) -> None:
        # First, before the allocations below: a garbage collection they run may free a gate
        # (see gate._free), which must then know it runs inside the callback.
        log_callback_thread.inside = True
        try:
            assert callback is not None
            text = message[:length].decode("utf-8", "replace")
            callback(LogLevel(level), target.decode("utf-8", "replace"), text)
        finally:
            log_callback_thread.inside = False

    global _current, _alive, _hooked
    with _setting:
        if _exiting:
            callback = None
        c_callback = None if callback is None else _ffi.pgate_log_callback(trampoline)
        # Both kept alive across the swap: an exception (a signal handler's) raised anywhere
        # in it leaves alive whichever one the library holds.
        _alive = [_current, c_callback]
        _current = _install(c_callback, number)
        _alive = [_current]
        if callback is not None and not _hooked:
            atexit.register(_detach)
            _hooked = True


def _install(c_callback: Any, max_level: int) -> Any:
    """Hands ``c_callback`` (a ctypes callback, or None) to the library; returns it once the
    library returned (no thread runs the one it replaced any more)."""
    err = c_void_p()
    native = c_callback if c_callback is not None else _ffi.pgate_log_callback()
    _check(_ffi.lib().pgate_set_log_callback(native, None, max_level, byref(err)), err)
    return c_callback


def _detach() -> None:
    """The atexit hook: detaches the callback, waiting for the threads inside it to return
    (not in a process forked while one was set: see set_log_callback)."""
    global _current, _exiting
    with _setting:
        _exiting = True
        if _current is not None and not _forked_with_callback:
            _current = _install(None, LogLevel.INFO)
