"""Telemetry: the Prometheus exposition, each cohort's latency histogram, and log lines.

Every read here is side-effect free on the gate (it never judges), so a ``/metrics`` handler
may call :func:`metrics_prometheus` on every scrape::

    from promotion_gates import Gate, metrics_prometheus

    with Gate({"gate": "checkout"}) as gate:
        body = metrics_prometheus(gate)  # serve as "text/plain; version=0.0.4"
"""

from __future__ import annotations

import enum
import json
import threading
from collections.abc import Callable
from contextlib import ExitStack
from ctypes import byref, c_size_t, c_void_p, create_string_buffer
from typing import Any

from . import _ffi
from .errors import BufferTooSmallError, InvalidArgumentError, _check
from .gate import Gate

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
    each other's series: :class:`InvalidArgumentError`, naming both positions."""
    with ExitStack() as held:  # every gate is held (close() waits) for the call
        live = [held.enter_context(g._call("metrics_prometheus")) for g in gates]
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
    an HdrHistogram port, e.g. ``hdrh.histogram.HdrHistogram.decode``)."""
    document: dict[str, Any] = json.loads(
        gate._json("pgate_latency_histograms_json", "latency_histograms")
    )
    return document


#: Every ctypes callback ever installed, kept alive for the life of the process: the library
#: calls a callback after releasing its lock, so another thread may still be inside the old one
#: after ``set_log_callback`` has replaced it, and freeing its trampoline would let that thread
#: run freed memory. Setting a callback is rare, so the list stays short.
_installed: list[Any] = []
_installed_lock = threading.Lock()


def set_log_callback(
    callback: Callable[[LogLevel, str, str], None] | None,
    max_level: LogLevel = LogLevel.INFO,
) -> None:
    """Sends the library's log lines up to ``max_level`` to ``callback(level, target,
    message)``; ``None`` stops them. The callback runs on the thread that logged (any thread
    using a gate) and must not raise: an exception is printed by ctypes and dropped.

    Each callback passed here stays referenced until the process exits (a thread may still be
    running the previous one after this returns), so set callbacks rarely, not per request.
    The callback must not call any method of a gate: some lines are logged while the gate
    holds its writer lock, which is not reentrant, and :meth:`Gate.close` waits for the logging
    thread's own call to return, so either would wait forever. Keep it quick (the logging thread
    may be recording): append the line somewhere and return."""

    def trampoline(_: Any, level: int, target: bytes, message: bytes, length: int) -> None:
        assert callback is not None
        text = message[:length].decode("utf-8", "replace")
        callback(LogLevel(level), target.decode("utf-8", "replace"), text)

    with _installed_lock:
        c_callback = _ffi.pgate_log_callback(trampoline) if callback else _ffi.pgate_log_callback()
        _installed.append(c_callback)  # before the library can call it, never removed
        err = c_void_p()
        _check(_ffi.lib().pgate_set_log_callback(c_callback, None, int(max_level), byref(err)), err)
