"""Telemetry: the Prometheus exposition, each cohort's latency histogram, and log lines.

No read here judges the gate (as after ``Gate.read_health``, an evaluation the record path asked
for meanwhile is made after the read, and may roll back), so a ``/metrics`` handler may call
:func:`metrics_prometheus` on every scrape (not from inside the log callback, which the library
refuses)::

    from promotion_gates import Gate, metrics_prometheus

    with Gate({"gate": "checkout"}) as gate:
        body = metrics_prometheus(gate)  # serve as "text/plain; version=0.0.4"

A host of several processes (gunicorn's workers) serves the outcome counters it counts for all
of them with :func:`metrics_prometheus_counted` instead.
"""

from __future__ import annotations

import _thread
import atexit
import enum
import functools
import json
import os
import sys
import threading
from collections.abc import Callable, Sequence
from ctypes import byref, c_size_t, c_void_p, create_string_buffer
from dataclasses import dataclass, fields
from typing import Any

from . import _ffi
from ._arguments import member, refused, unsigned
from .errors import (
    BufferTooSmallError,
    InvalidArgumentError,
    _check,
    interrupted,
    raise_interrupted,
)
from .gate import Gate, _refused_inside_log_callback, held_together, log_callback_thread

__all__ = [
    "LogLevel",
    "OutcomeCounts",
    "latency_histograms",
    "metrics_prometheus",
    "metrics_prometheus_counted",
    "set_log_callback",
]

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
    return _exposition(gates, None, "metrics_prometheus")


@dataclass(frozen=True, slots=True)
class OutcomeCounts:
    """``struct pgate_outcome_counts``: the four outcome counters of a gate's exposition as a
    host of several processes counts them, once for all its processes (see
    :func:`metrics_prometheus_counted`). Each is an integer from 0 to 2**64 - 1."""

    #: ``promotion_late_outcomes_total``: outcomes dropped because their stage had ended
    #: (:attr:`Recorded.LATE <promotion_gates.Recorded.LATE>`).
    late_outcomes: int = 0
    #: ``promotion_foreign_outcomes_total``: outcomes dropped because their decision names a
    #: stage the gate never published (:attr:`Recorded.FOREIGN <promotion_gates.Recorded.FOREIGN>`).
    foreign_outcomes: int = 0
    #: ``promotion_forced_outcomes_total``: outcomes of requests an override forced, counted
    #: in neither cohort (:attr:`Recorded.FORCED <promotion_gates.Recorded.FORCED>`).
    forced_outcomes: int = 0
    #: ``promotion_ignored_override_values_total``: forcing values routing ignored (a value
    #: passed to :meth:`Gate.route_forced <promotion_gates.Gate.route_forced>` whose decision
    #: has ``forced`` :attr:`Forced.NONE <promotion_gates.Forced.NONE>`).
    ignored_override_values: int = 0


def metrics_prometheus_counted(*gates: Gate, counts: Sequence[OutcomeCounts]) -> str:
    """:func:`metrics_prometheus` with the host's counts ``counts[i]`` in place of the four
    outcome counters of ``gates[i]`` (``pgate_metrics_prometheus_counted``); every other series
    is the gate's own.

    Each process of a pre-forking server (gunicorn's workers) has its gates, and so counters of
    its own: a scrape reaching another worker would read a lower count, a counter reset to
    Prometheus. Count each :class:`Recorded <promotion_gates.Recorded>` ``LATE``, ``FOREIGN``
    and ``FORCED`` outcome (that :meth:`Gate.record <promotion_gates.Gate.record>` or
    :meth:`Gate.record_abandoned_as <promotion_gates.Gate.record_abandoned_as>` returns), and
    each forcing value ignored, once, in memory the workers share,
    and serve those counts: every worker then answers the same counters::

        from multiprocessing import Array
        shared = Array("Q", 4)  # before the fork: late, foreign, forced, ignored
        ...  # a worker adds 1 to shared[2] (under shared.get_lock()) when record() or
        ...  # record_abandoned_as() says FORCED
        counts = OutcomeCounts(*shared[:])  # all four replace the gate's own: 0 is served as 0
        body = metrics_prometheus_counted(gate, counts=[counts])
        # 'promotion_forced_outcomes_total{gate="checkout"} 7' when shared[2] is 7

    Raises:
        InvalidArgumentError: as :func:`metrics_prometheus`, and before the library is called
            for ``counts`` that is not a sequence of one :class:`OutcomeCounts` per gate
            (``invalid len(counts) = 1: one OutcomeCounts per gate (gates: 2)``, ``invalid
            counts[1] = None: an OutcomeCounts, not NoneType``) or a count that is not an
            integer from 0 to 2**64 - 1 (``invalid counts[0].late_outcomes = -1: …``).
    """
    for i, gate in enumerate(gates):
        _gate(f"gates[{i}]", gate)
    if not isinstance(counts, Sequence) or isinstance(counts, (str, bytes, bytearray)):
        raise refused(
            "counts", counts, f"a sequence of OutcomeCounts, not {type(counts).__name__}"
        )
    if len(counts) != len(gates):
        raise refused(
            "len(counts)", len(counts), f"one OutcomeCounts per gate (gates: {len(gates)})"
        )
    packed = (_ffi.pgate_outcome_counts * len(gates))()
    for i in range(len(gates)):
        entry = counts[i]
        if not isinstance(entry, OutcomeCounts):
            raise refused(f"counts[{i}]", entry, f"an OutcomeCounts, not {type(entry).__name__}")
        for name in _COUNT_FIELDS:
            setattr(packed[i], name, unsigned(f"counts[{i}].{name}", getattr(entry, name), 64))
    return _exposition(gates, packed, "metrics_prometheus_counted")


#: The fields of OutcomeCounts, those of ``struct pgate_outcome_counts`` in its order.
_COUNT_FIELDS = tuple(f.name for f in fields(OutcomeCounts))


def _exposition(gates: tuple[Gate, ...], counts: Any, operation: str) -> str:
    """The exposition of ``gates`` (checked), with ``counts`` (``pgate_outcome_counts[n]``) in
    place of their own outcome counters, or their own (``None``)."""

    def exposition(live: list[c_void_p]) -> str:
        handles = (c_void_p * len(live))(*live)
        cap = 16384
        length = c_size_t()
        for _ in range(_ATTEMPTS):
            buf = create_string_buffer(cap)
            if counts is None:
                status = _ffi.lib().pgate_metrics_prometheus_gates(
                    handles, len(live), buf, cap, byref(length)
                )
            else:
                status = _ffi.lib().pgate_metrics_prometheus_counted(
                    handles, counts, len(live), buf, cap, byref(length)
                )
            _refused_inside_log_callback(
                status,
                "pgate_metrics_prometheus_gates"
                if counts is None
                else "pgate_metrics_prometheus_counted",
            )
            if status == _ffi.Status.INVALID_ARGUMENT:
                _same_names(gates)
            if status != _ffi.Status.BUFFER_TOO_SMALL:
                _check(status)
                return buf.raw[: length.value].decode("utf-8")
            cap = length.value + 4096  # the text may grow between two calls
        raise BufferTooSmallError(_ffi.Status.BUFFER_TOO_SMALL, f"{operation} kept growing")

    # Every gate is held (close() waits) for the call.
    return held_together(gates, operation, exposition)


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
    def read(c: Any, *args: Any) -> int:
        status: int = c.pgate_latency_histograms_json(*args)
        _refused_inside_log_callback(status, "pgate_latency_histograms_json")
        return status

    document: dict[str, Any] = json.loads(
        _gate("gate", gate)._json_with("latency_histograms", read)
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


#: Serializes the setting of callbacks, so that ``_current`` is the library's.
_setting = threading.Lock()


def _after_fork_in_child() -> None:
    """In a process forked while a callback was set, or being set by another thread (which
    held ``_setting``, and may have been inside the callback, or setting it, in the library:
    that thread does not exist here, and a call it made is never over), :func:`set_log_callback` refuses, rather than wait for ever. ``_setting`` is
    replaced by a fresh lock, so the refusal (and the atexit hook) do not wait for it."""
    global _forked_with_callback, _setting
    _forked_with_callback = _forked_with_callback or _current is not None or _setting.locked()
    _setting = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
#: Whether the atexit hook that detaches the callback is registered, and whether it ran.
_hooked = False
_exiting = False
#: The ``sys.unraisablehook`` that :func:`_unraisable` replaced and passes on to, once set.
_passed_on: Callable[[Any], object] | None = None


def _trampoline(
    callback: Callable[[LogLevel, str, str], None],
    _: Any,
    level: int,
    target: bytes,
    message: bytes,
    length: int,
) -> None:
    """What the library calls for a log line (bound to ``callback`` by a ``partial``)."""
    # First, before the allocations below: a garbage collection they run may free a gate
    # (see gate._free), which must then know it runs inside the callback.
    log_callback_thread.inside = True
    try:
        text = message[:length].decode("utf-8", "replace")
        callback(LogLevel(level), target.decode("utf-8", "replace"), text)
    except (KeyboardInterrupt, SystemExit) as error:
        if not _kept(error):
            raise
    finally:
        log_callback_thread.inside = False


def _kept(error: BaseException) -> bool:
    """Whether ``error``, raised inside the log callback, is one a signal handler raised (a
    ``KeyboardInterrupt`` or ``SystemExit`` in the main thread, the only one that runs them):
    then it is kept for the call that ran the library to raise once the library returned (see
    ``errors.interrupted``), instead of being printed and dropped by ctypes."""
    if not isinstance(error, (KeyboardInterrupt, SystemExit)):
        return False
    if _thread.get_ident() != threading.main_thread().ident:
        return False
    if not interrupted:  # one is enough: a second Ctrl-C before the call returned is dropped
        interrupted.append(error)
    return True


def _unraisable(unraisable: Any) -> None:
    """``sys.unraisablehook`` from the first :func:`set_log_callback` on: keeps a signal
    handler's exception that ctypes was about to drop from :func:`_trampoline` (see
    :func:`_kept`), and passes everything else on to the hook it replaced.

    A signal that arrives while the library runs (Ctrl-C during a call on the gate) is handled
    by CPython at the trampoline's first instruction, before its ``try``: most of them land
    there, as the library's call is where the time goes."""
    # Told by where it was raised: 3.13 no longer passes the callable as the hook's object.
    tb = unraisable.exc_traceback
    if tb is not None and tb.tb_frame.f_code is _trampoline.__code__:
        if _kept(unraisable.exc_value):
            return
    if _passed_on is not None:
        _passed_on(unraisable)


def set_log_callback(
    callback: Callable[[LogLevel, str, str], None] | None,
    max_level: LogLevel = LogLevel.INFO,
) -> None:
    """Sends the library's log lines up to ``max_level`` to ``callback(level, target,
    message)``; ``None`` stops them. The callback runs on the thread that logged (any thread
    using a gate, or a state store's own thread) and must not raise: an exception is printed
    by ctypes and dropped. A signal handler's ``KeyboardInterrupt`` or ``SystemExit`` (Ctrl-C,
    or a SIGTERM handler, while the library or the callback runs in the main thread) is the
    exception to that: the call that ran the library (a gate's method, ``Gate(...)``,
    ``close``, a module-level function, this one) raises it once the library returned.

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
            not callable, this is called from inside the callback, or in a process forked
            while a callback was set or being set by another thread (set it after the fork,
            in each process).
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
            "set_log_callback in a process forked while a log callback was set (or being "
            "set by another thread): a thread of the parent may have been inside the callback, "
            "whose call the library would wait for for ever here; set the callback after the fork, "
            "in each process",
        )

    global _current, _alive, _hooked, _passed_on
    with _setting:
        if _exiting:
            callback = None
        if callback is not None and _passed_on is None:  # once: never wraps a hook of ours
            _passed_on, sys.unraisablehook = sys.unraisablehook, _unraisable
        c_callback = (
            None
            if callback is None
            else _ffi.pgate_log_callback(functools.partial(_trampoline, callback))
        )
        # Both kept alive across the swap: an exception (a signal handler's) raised anywhere
        # in it leaves alive whichever one the library holds.
        _alive = [_current, c_callback]
        _current = _install(c_callback, number)
        _alive = [_current]
        if callback is not None and not _hooked:
            atexit.register(_detach)
            _hooked = True
    raise_interrupted()  # kept while the library swapped the callbacks, raised once all is told


def _install(c_callback: Any, max_level: int) -> Any:
    """Hands ``c_callback`` (a ctypes callback, or None) to the library; returns it once the
    library returned (no thread runs the one it replaced any more). A signal handler's
    exception kept meanwhile stays kept: :func:`set_log_callback` raises it once it recorded
    the callback the library holds now."""
    err = c_void_p()
    native = c_callback if c_callback is not None else _ffi.pgate_log_callback()
    status = _ffi.lib().pgate_set_log_callback(native, None, max_level, byref(err))
    _check(status, err, raise_kept=False)
    return c_callback


def _detach() -> None:
    """The atexit hook: detaches the callback, waiting for the threads inside it to return
    (not in a process forked while one was set: see set_log_callback)."""
    global _current, _exiting
    with _setting:
        _exiting = True
        if _current is not None and not _forked_with_callback:
            _current = _install(None, LogLevel.INFO)
