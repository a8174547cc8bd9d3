"""The :class:`Gate`: one promotion gate of the library, owned by a Python object.

Thread safety
-------------
A ``Gate`` may be shared by any number of threads: every method may run concurrently with
every other, :meth:`Gate.close` included. ``ctypes`` releases the GIL for the duration of each
foreign call, so routing and recording on several threads run in parallel inside the library
(lock-free; only the Python work around each call is serialized by the GIL). Outcomes are
tallied per OS thread and merged when the gate judges; any thread may record any decision (an
outcome recorded after a promotion or rollback is reported as ``Recorded.LATE``).

:meth:`Gate.close` may run while other threads are inside calls on the gate: every call holds
the gate for the duration of its foreign calls, and ``close`` first makes later calls raise
:class:`GateClosedError`, then waits for the calls in flight to return before it frees the
gate (Go's read/write guard, done with the GIL: see :meth:`Gate._held`). A call racing with
``close`` either completes or raises ``GateClosedError``; it never touches a freed gate.

The guard holds when a signal handler raises (``KeyboardInterrupt``, or ``SystemExit`` from a
SIGTERM handler) in the middle of a call: CPython runs a handler only where a call returns, at
a backward jump or where a Python function starts, so never between a call's entry in the list
(the first call inside its ``try``) and the ``try`` itself, nor between its ``finally`` and the
removal (the first call there). A call never stays counted after it ended, and ``close`` never
waits for one that is gone. That is the rule of CPython 3.11 and later, and why the package
requires 3.11: 3.10 also runs a handler at other places, among them the first instruction of a
``finally`` entered by an exception, so a second signal there skipped the removal and ``close``
waited 10 s for a call that had ended, then left the gate unfreed.
"""

from __future__ import annotations

import _thread
import json
import os
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import repeat
from ctypes import (
    byref,
    c_bool,
    c_double,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
    create_string_buffer,
    string_at,
)
from types import TracebackType
from typing import Any, TypeVar

from . import _ffi
from ._arguments import (
    document,
    finite_float,
    flag,
    latency_ns as _latency_ns,
    refused,
    shown,
    unsigned,
    utf8,
)
from .changes import Change, ChangeWatcher, _Subscription
from .decision import (
    Decision,
    Environment,
    Recorded,
    State,
    _environment,
    flag_set_of,
    not_a_decision,
    packed,
    recorded,
)
from .errors import (
    BufferTooSmallError,
    GateClosedError,
    InvalidArgumentError,
    InvalidFlagError,
    PromotionGatesError,
    UnknownFlagSetError,
    _check,
    _message,
    interrupted,
    raise_interrupted,
)
from .judge import Health, RollbackEvent

__all__ = [
    "Gate",
    "document_fleet_judging",
    "document_gate_name",
    "store_location",
    "version",
]

#: First guess for JSON and evidence buffers; grown to the needed length when too small.
_BUFFER = 4096
#: Flag sets a Gate remembers at most, and names they hold in all (a set may hold up to
#: 10,000): past either the cache starts afresh, so a gate whose flags change often does not
#: keep every set it ever answered for, and a gate with many flags keeps a few megabytes of
#: names at most.
_FLAG_CACHE = 256
_FLAG_CACHE_NAMES = 1 << 16

#: How long :meth:`Gate.close` waits for the calls in flight, in seconds, before it leaves the
#: freeing to the garbage collector (a store's write may wait out a busy database).
_CLOSE_WAIT = 10.0
#: Runs an iterator to its end in C: no Python code, so no signal handler, runs in between.
_drain: Callable[[Iterable[object]], None] = deque[object](maxlen=0).extend
_T = TypeVar("_T")

#: Why a Gate is never copied: one native gate, one owner.
_NOT_COPIED = "a Gate cannot be copied or pickled: share the one Gate (it is thread-safe)"

Config = Mapping[str, Any] | str | bytes
#: A request id: any bytes (not necessarily UTF-8), or a str routed as its UTF-8 bytes.
RequestId = bytes | bytearray | memoryview | str


def version() -> str:
    """The library's version, e.g. ``"0.1.0"`` (``pgate_version``)."""
    return bytes(_ffi.lib().pgate_version() or b"").decode("ascii")


def store_location(config: Config | None = None) -> str:
    """Where a config document's state store keeps its gate's state, read from the document
    alone: nothing is opened or created (``pgate_store_location``).

    ``"sqlite:"`` and the file's path as the document writes it (a relative path is opened
    against the working directory of the process that opens the gate), ``"etcd:"`` and the key
    prefix, or ``""`` for a document without a ``store`` (its gate's state lives and dies with
    the gate). A host that resolves paths itself, or refuses a relative one, asks before
    :class:`Gate` would create the file. ``config`` is given as to :class:`Gate` (``None`` for
    the defaults) and validated the same way::

        >>> store_location({"store": {"sqlite": {"path": "/var/lib/pg/checkout.db"}}})
        'sqlite:/var/lib/pg/checkout.db'

    Raises:
        InvalidJsonError, InvalidConfigError, InvalidArgumentError: as the constructor of
            :class:`Gate` for ``config``, all but one check that depends on the SLO, which
            this function does not take: ``rollback_window_seconds`` against the SLO's
            ``evaluation_interval_ms`` (at most a tenth of the window), which :class:`Gate`
            checks for the SLO it is given. So ``{"rollback_window_seconds": 5}`` is read
            here, and ``Gate(config)`` refuses it with the default SLO (a 1 s interval),
            accepts it with an interval of 500 ms or less.
    """
    doc = b"" if config is None else document(config, "config")
    c = _ffi.lib()
    length = c_size_t()
    cap = _BUFFER
    for _ in range(2):  # the document does not change: the second buffer fits
        buf = create_string_buffer(cap)
        err = c_void_p()
        status = c.pgate_store_location(doc, len(doc), buf, cap, byref(length), byref(err))
        if status != _ffi.Status.BUFFER_TOO_SMALL:
            _check_document(status, err, config_json="config")
            return buf.raw[: length.value].decode("utf-8")
        _message(err)  # frees the error object of the buffer too small
        cap = length.value + 1
    raise BufferTooSmallError(_ffi.Status.BUFFER_TOO_SMALL, "store_location kept growing")


def document_gate_name(config: Config | None = None) -> str:
    """The gate name of a config document, read from the document alone: nothing is opened or
    created (``pgate_document_gate_name``).

    The document's ``gate``, or ``"default"`` without one: what :meth:`Gate.name` answers for a
    gate made from it. A host that refuses two gates of one name (they would share one state in
    a store) asks before :class:`Gate` would write the second one's state there. ``config`` is
    given as to :class:`Gate` (``None`` for the defaults) and validated the same way::

        >>> document_gate_name({"gate": "checkout"})
        'checkout'
        >>> document_gate_name()
        'default'

    Raises:
        InvalidJsonError, InvalidConfigError, InvalidArgumentError: as the constructor of
            :class:`Gate` for ``config``, all but the window against the SLO's
            ``evaluation_interval_ms``, which depends on the SLO :class:`Gate` is given and
            :class:`Gate` checks (see :func:`store_location`).
    """
    doc = b"" if config is None else document(config, "config")
    cap = _ffi.NAME_CAPACITY  # PGATE_NAME_CAPACITY always suffices: no retry
    buf, length, err = create_string_buffer(cap), c_size_t(), c_void_p()
    status = _ffi.lib().pgate_document_gate_name(
        doc, len(doc), buf, cap, byref(length), byref(err)
    )
    _check_document(status, err, config_json="config")
    return buf.raw[: length.value].decode("utf-8")


def document_fleet_judging(config: Config | None = None) -> bool:
    """Whether a config document's state store sums every process's outcomes for the judge
    (its store's ``fleet_judging``, on unless the document turns it off; False without a
    store), read from the document alone: nothing is opened or created
    (``pgate_document_fleet_judging``).

    What :meth:`Gate.fleet_judging` answers for a gate made from it. A host that pools its
    processes' outcomes itself refuses such a document before :class:`Gate` would write its
    state into the store. ``config`` is given as to :class:`Gate` (``None`` for the defaults)
    and validated the same way::

        >>> document_fleet_judging({"store": {"sqlite": {"path": "/var/lib/pg/checkout.db"}}})
        True
        >>> document_fleet_judging({"gate": "checkout"})
        False

    Raises:
        InvalidJsonError, InvalidConfigError, InvalidArgumentError: as the constructor of
            :class:`Gate` for ``config``, all but the window against the SLO's
            ``evaluation_interval_ms``, which depends on the SLO :class:`Gate` is given and
            :class:`Gate` checks (see :func:`store_location`).
    """
    doc = b"" if config is None else document(config, "config")
    sums, err = c_bool(), c_void_p()
    status = _ffi.lib().pgate_document_fleet_judging(doc, len(doc), byref(sums), byref(err))
    _check_document(status, err, config_json="config")
    return sums.value


def _id_bytes(request_id: RequestId, what: str = "request_id") -> bytes:
    if type(request_id) is bytes:
        return request_id
    if isinstance(request_id, bytes):
        # A subclass's own len() could lie about the buffer the library reads: a plain copy.
        return bytes(memoryview(request_id))
    if isinstance(request_id, str):
        return utf8(what, request_id)
    if isinstance(request_id, (bytearray, memoryview)):
        try:
            return bytes(request_id)
        except ValueError as error:  # a released memoryview
            raise refused(what, request_id, str(error)) from None
    raise refused(what, request_id, f"bytes or a str, not {type(request_id).__name__}")


def held_together(
    gates: Sequence[Gate], operation: str, call: Callable[[list[c_void_p]], _T]
) -> _T:
    """``call(handles)`` with every gate held, as :meth:`Gate._held` holds one. The gates are
    entered together, then left together, each time in one call that runs no Python code, so a
    signal handler's exception finds every gate held or none."""
    calls = [gate._calls for gate in gates]
    enter_all = map(list.append, calls, repeat(None))
    leave_all = map(list.pop, calls)
    try:
        _drain(enter_all)
        handles = [gate._handle for gate in gates]
        live = [handle for handle in handles if handle is not None]
        if len(live) != len(handles):
            raise GateClosedError(operation)
        return call(live)
    finally:
        _drain(leave_all)
        if interrupted:
            raise_interrupted()


def _promotion(environment: Environment, percent: float | None) -> tuple[int, float]:
    """The environment's number and the share :meth:`Gate.promote` and
    :meth:`Gate.promote_from` pass, or raises (a canary needs its percentage)."""
    env = _environment(environment)
    if percent is None and env == Environment.CANARY:
        raise refused("percent", percent, "a canary takes a percentage from 0 to 100")
    return env, 0.0 if percent is None else finite_float("percent", percent)


def _check_flag_set(status: int, set_id: int) -> None:
    """As ``_check``, with :class:`UnknownFlagSetError` naming the set and why it is unknown
    (the library's hot call writes no error object)."""
    if status == _ffi.Status.UNKNOWN_FLAG_SET:
        raise UnknownFlagSetError(
            _ffi.Status.UNKNOWN_FLAG_SET,
            f"invalid flag_set = {set_id}: not a flag set of this gate (another gate's "
            f"decision, or one replaced more than {_ffi.FLAG_SET_GRACE_WRITES} writes ago)",
        )
    _check(status)


def _check_document(status: int, err: c_void_p, **names: str) -> None:
    """As ``_check``, with the C parameter a refused document was passed in
    (``config_json``, ``slo_json``, ``json``) named in the message as the Python one that took
    it (``names``: C name to Python name), so ``Gate(b"\\xff")`` says ``invalid config = ...``,
    never a parameter the caller did not see."""
    try:
        _check(status, err)
    except PromotionGatesError as error:
        for c_name, name in names.items():
            prefix = f"invalid {c_name} = "
            if error.message.startswith(prefix):
                raise type(error)(
                    error.status, f"invalid {name} = {error.message[len(prefix):]}"
                ) from None
        raise


#: ``log_callback_thread.inside`` is True while this thread runs the log callback (set by
#: :func:`~promotion_gates.telemetry.set_log_callback`'s trampoline).
log_callback_thread = threading.local()


def _check_outside_log_callback(status: int, function: str) -> None:
    """As ``_check`` for a call that writes no error object (``pgate_monitor_health``,
    ``pgate_check_slo``), with the library's words for its refusal of ``function`` from inside
    the log callback (:func:`_refused_inside_log_callback`)."""
    _refused_inside_log_callback(status, function)
    _check(status)


def _refused_inside_log_callback(status: int, function: str) -> None:
    """Raises the library's words for its refusal of ``function`` from inside the log callback
    (as its calls with an error object give them, ``ffi/src/log.rs``) when that is why
    ``status`` is INVALID_ARGUMENT, for a call that writes no error object (a judgement, or a
    read of the window: ``pgate_read_health``, the Prometheus expositions,
    ``pgate_latency_histograms_json``): the status's name alone said nothing."""
    if status == _ffi.Status.INVALID_ARGUMENT and getattr(log_callback_thread, "inside", False):
        raise InvalidArgumentError(
            _ffi.Status.INVALID_ARGUMENT,
            f"{function} was called from inside the log callback, which must call no pgate_ "
            "function (the library may hold a lock while it logs: the call would wait for its "
            "own thread)",
        )


def _free(handle: c_void_p, own_thread: bool = False) -> None:
    """Frees a gate handle (the finalizer of a Gate: runs at most once). A gate whose last
    reference went inside the log callback (a garbage collection that ran there, say) is freed
    on a thread of its own: the thread that logged may be the gate's own state store thread,
    which the free waits for, or hold the gate's writer lock, which the free takes.

    A signal handler's exception the log callback kept during the free is raised here: by
    ``close()``, which ran the free; from a garbage collection, Python hands it to
    ``sys.unraisablehook`` at once, as it does any exception a finalizer raises (it cannot
    be raised there). It was kept for the next call, which could come much later, from
    unrelated code, or never. One kept before the free (by a call the collection ran in
    before that call could raise it) is left to that call; ``close()`` raises it itself."""
    if not own_thread and getattr(log_callback_thread, "inside", False):
        _free_on_own_thread(handle)
        return
    kept_before = bool(interrupted)
    # The Gate holds this very object: a Gate brought back to life after the garbage collector
    # ran this (a __del__ that kept it) passes NULL from now on, which the library refuses,
    # never the freed gate. Cleared before the free, in two statements between which no signal
    # handler runs (no call): a Ctrl-C raised where the free returns cannot skip it.
    pointer = handle.value
    handle.value = None
    if not pointer:  # a gate never opened (Gate() refused, or interrupted before the call)
        return
    status = _ffi.lib().pgate_gate_free(pointer)
    handed_on = status == _ffi.Status.INVALID_ARGUMENT and not own_thread
    if handed_on:
        # Refused because this thread runs the log callback after all (the library changed
        # nothing): a collection that ran before the trampoline marked the thread, in that very
        # statement, which allocates the thread's local storage on a library thread (ctypes
        # gives such a thread a new thread state for each call).
        _free_on_own_thread(c_void_p(pointer))
    if interrupted and not kept_before:
        raise_interrupted()
    if not handed_on:
        _check(status, raise_kept=False)


def _free_on_own_thread(handle: c_void_p) -> None:
    """Runs :func:`_free` on a thread of its own, outside the log callback."""
    threading.Thread(
        target=_free, args=(handle, True), name="promotion-gates-free", daemon=True
    ).start()


#: The gates of this process not yet freed, for the fork handler below.
_open_gates: weakref.WeakSet[Gate] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A process forked from one with gates inherits them without their threads (a state
    store's sync thread: no sync, no automatic rollback ever stored) and with their locks as
    the parent's threads held them: each is closed in the child (every call raises
    GateClosedError) and never freed there (the free would wait for threads that do not
    exist). Create gates in each process after the fork."""
    for gate in list(_open_gates):
        gate._handle = None
        gate._finalizer.detach()
        gate._calls.clear()  # calls the parent's threads had in flight: none here
    interrupted.clear()  # the parent's main thread's


os.register_at_fork(after_in_child=_after_fork_in_child)


class Gate:
    """A promotion gate: routes requests to the canary or stable version and judges the canary.

    Args:
        config: the ``PromotionConfig`` as a dict or JSON (field names as in the Rust API,
            e.g. ``{"environment": {"canary": {"traffic_percent": 10}}, "gate": "checkout"}``);
            ``None`` for the defaults (Production, gate ``"default"``).
        slo: the ``SloConfig`` as a dict or JSON (durations in milliseconds, e.g.
            ``{"latency_target_ms": 250}``); ``None`` for the defaults.

    Raises:
        InvalidJsonError: a document could not be parsed, or has an unknown field.
        InvalidConfigError: a value was refused; the message names the field and value.
        InvalidArgumentError: a document is not a dict, str or bytes, a dict holds a value
            JSON has no form for (a NaN or an infinity is named by its field, as the library
            names it, e.g. ``invalid environment.canary.traffic_percent = nan``), or a str is not
            UTF-8 (a lone surrogate).

    Use it as a context manager, or call :meth:`close`. See the module docs for the
    thread-safety rules.
    """

    __slots__ = (
        "_c", "_handle", "_finalizer", "_flag_names", "_enter", "_leave", "_calls", "_watchers",
        "__weakref__",
    )

    def __init__(self, config: Config | None = None, slo: Config | None = None) -> None:
        c = _ffi.lib()
        config_doc = None if config is None else document(config, "config")
        slo_doc = None if slo is None else document(slo, "slo")
        handle = c_void_p()
        err = c_void_p()
        # Registered before the library opens the gate, so that no Ctrl-C can come between a
        # gate opened and a finalizer that frees it (a signal handler runs where a call
        # returns, pgate_gate_new's included): an interrupted __init__ runs it at once below,
        # or the collection of this object does. It frees nothing while the handle is NULL.
        self._finalizer = weakref.finalize(self, _free, handle)
        # At interpreter exit other threads may still be inside a call: leave the gate be.
        self._finalizer.atexit = False
        try:
            status = c.pgate_gate_new(
                config_doc,
                len(config_doc) if config_doc is not None else 0,
                slo_doc,
                len(slo_doc) if slo_doc is not None else 0,
                byref(handle),
                byref(err),
            )
            # A Ctrl-C kept while the library opened the gate too.
            _check_document(status, err, config_json="config", slo_json="slo")
        except BaseException:
            self._finalizer()  # opened, then interrupted: nothing else would free it soon
            raise
        self._c = c
        self._handle: c_void_p | None = handle
        # The calls in flight, one entry each (see _held); the bound methods are kept so the
        # hot path pays one C-level call to enter and one to leave.
        self._calls: list[None] = []
        self._enter = self._calls.append
        self._leave = self._calls.pop
        self._flag_names: dict[int, tuple[str, ...]] = {0: ()}
        # The callbacks of the gate's change watchers, kept here rather than by the watchers'
        # threads, so a callback that uses the gate does not keep it alive (see ChangeWatcher),
        # with the stop signals that close() sets.
        self._watchers: list[_Subscription] = []
        _open_gates.add(self)

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Frees the gate. Idempotent; later calls on it raise :class:`GateClosedError`.

        Safe while other threads are inside calls on the gate: calls that start from now on
        raise ``GateClosedError``, and ``close`` waits for those already in flight to return
        before it frees the gate.

        It waits 10 seconds at most. If calls are still in flight then, it warns
        (:class:`RuntimeWarning`) and returns without freeing: the gate refuses every call from
        now on, and its memory is freed when the ``Gate`` is garbage-collected (each call holds
        a reference to it, so none can be inside then), or by a later ``close`` that finds no
        call in flight. That happens when a call outlasts the wait (a state store's write
        waiting out a busy database), or when ``close`` runs inside a call on the same thread,
        which cannot return before it: from a signal handler that interrupted the call, or
        from a log callback (see :func:`~promotion_gates.telemetry.set_log_callback`) that
        runs inside a call on this gate, such as ``record``. Avoid those two.

        Like every call, it raises a signal handler's exception (a Ctrl-C) that the log callback
        kept and no call has raised yet, whether kept while the library freed the gate or
        before ``close`` started, once it has freed the gate (or given up waiting).
        """
        try:
            self._handle = None  # from here on, a call that enters sees None and leaves
            for watcher in list(self._watchers):  # copied: an ending watcher leaves the list
                watcher.stop.set()  # woken now, not after its interval
            calls = self._calls
            pause = 1e-6
            give_up = time.monotonic() + _CLOSE_WAIT
            while calls:  # calls in flight, or entering and about to leave
                if time.monotonic() > give_up:
                    warnings.warn(
                        f"Gate.close() waited {_CLOSE_WAIT:g} s for {len(calls)} call(s) in "
                        "flight and left the gate unfreed: it refuses new calls, and is freed "
                        "when it is garbage-collected or closed again with no call in flight",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    return
                time.sleep(pause)
                pause = min(pause * 2, 1e-3)
            # Runs `_free` once, however often and from however many threads; it raises a
            # Ctrl-C kept while the library freed the gate.
            self._finalizer()
        finally:
            # One kept before (which `_free` leaves alone: from a garbage collection, it is the
            # interrupted call's to raise) is close's to raise, as any call's.
            if interrupted:
                raise_interrupted()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._handle is None

    def __enter__(self) -> Gate:
        if self._handle is None:
            raise GateClosedError("with")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __reduce_ex__(self, protocol: object) -> Any:
        """Refuses ``copy.copy``, ``copy.deepcopy`` and ``pickle``, which all come here (a Gate
        has no ``__copy__`` or ``__deepcopy__``): a copy would share the native gate and its
        calls in flight, and closing either would free the gate under the other."""
        raise TypeError(_NOT_COPIED)

    def __repr__(self) -> str:
        handle = self._handle  # read once: close() may clear it meanwhile
        state = "closed" if handle is None else f"at {handle.value or 0:#x}"
        return f"<promotion_gates.Gate {state}>"

    def _held(self, operation: str, call: Callable[[c_void_p], _T]) -> _T:
        """``call(handle)`` with the gate held: :meth:`close` waits for it to return before it
        frees the gate; :class:`GateClosedError` (``operation`` on a closed Gate) once closed.

        The read side of Go's read/write guard, ``close`` being the write side. The entry
        appends to the gate's list of calls in flight, then reads the handle; the exit pops an
        entry. ``close`` sets the handle to ``None``, then waits until the list is empty.
        ``list.append``, ``list.pop`` and attribute reads are atomic under the GIL, so a call
        that found the handle set had appended before ``close`` cleared it, and its entry stays
        until it leaves; ``close`` sees an empty list only once no call that found the handle is
        still inside, and every later call finds ``None``. The append is the first call inside
        the ``try`` and the pop the first in its ``finally``, so an exception of a signal
        handler (raised only where a call returns) never leaves an entry behind nor pops one
        that was not added (see the module docs). The hot calls inline the same steps.
        """
        try:
            self._enter(None)
            handle = self._handle
            if handle is None:
                raise GateClosedError(operation)
            return call(handle)
        finally:
            self._leave()
            if interrupted:
                raise_interrupted()

    def _status(self, operation: str, function: str, *args: Any) -> int:
        """The status of the library's ``function(handle, *args)``, called with the gate held
        (see :meth:`_held`)."""
        status: int = self._held(operation, lambda h: getattr(self._c, function)(h, *args))
        return status

    def _explained(self, operation: str, function: str, *args: Any) -> tuple[int, c_void_p]:
        """The status of the library's ``function(handle, *args, &err)``, a cold call that
        explains a failure in an error object, called with the gate held (see :meth:`_held`),
        and that object (``NULL`` unless it failed), which the caller's ``_check`` frees. A
        signal handler's exception that the log callback kept during the call (a Ctrl-C) is
        raised by ``_held`` before that check: the error object is freed first."""
        err = c_void_p()
        try:
            status = self._status(operation, function, *args, byref(err))
        except BaseException:
            _message(err)  # frees the object the interrupted call wrote, if any
            raise
        return status, err

    # -- the hot path --------------------------------------------------------------------
    # route, record and record_by_id hold the gate inline (as _held, without a callable): the
    # guard costs one list append and one pop, each atomic under the GIL.

    def route(self, request_id: RequestId) -> Decision:
        """Routes a request id (any bytes; a str is encoded as UTF-8). Deterministic.

        Lock-free and allocation-free in the library (unless a log callback takes
        ``LogLevel.DEBUG`` lines: then each route formats one and calls the callback); the GIL
        is released during the call.
        """
        rid = request_id if type(request_id) is bytes else _id_bytes(request_id)
        out = _ffi.pgate_decision()
        try:
            self._enter(None)  # inside the try: see _held
            handle = self._handle
            if handle is None:
                raise GateClosedError("route")
            status = self._c.pgate_route(handle, rid, len(rid), byref(out))
        finally:
            self._leave()
            if interrupted:
                raise_interrupted()
        if status:
            _check(status)
        return Decision._from_c(out)

    def route_forced(self, request_id: RequestId, forcing_value: RequestId | None) -> Decision:
        """Routes a request id with the forcing value the host read from the request (the
        value of the header or cookie the config's ``overrides`` names), ``None`` for none.

        ``"canary"`` or ``"stable"`` (ASCII case ignored) force the request; any other value is
        ignored and counted, never an error. The config's id lists win over the value. A forced
        decision has :attr:`Decision.forced` set, and :meth:`record` counts its outcome in
        neither cohort (:attr:`Recorded.FORCED`).
        """
        rid = request_id if type(request_id) is bytes else _id_bytes(request_id)
        value = None if forcing_value is None else _id_bytes(forcing_value, "forcing_value")
        out = _ffi.pgate_decision()
        try:
            self._enter(None)  # inside the try: see _held
            handle = self._handle
            if handle is None:
                raise GateClosedError("route_forced")
            status = self._c.pgate_route_forced(
                handle, rid, len(rid), value, 0 if value is None else len(value), byref(out)
            )
        finally:
            self._leave()
            if interrupted:
                raise_interrupted()
        if status:
            _check(status)
        return Decision._from_c(out)

    def features(self, decision: Decision) -> tuple[str, ...]:
        """The feature flags on for a decision of this gate, in byte order.

        Raises :class:`UnknownFlagSetError` for a decision of another gate, or one whose flags
        were replaced more than 60 writes ago (``FLAG_SET_GRACE_WRITES``): ``invalid flag_set
        = N: not a flag set of this gate (…)``. Each gate numbers its own sets.
        """
        set_id = flag_set_of(decision)
        return self._held("features", lambda handle: self._flag_set(handle, set_id))

    def _flag_set(self, handle: c_void_p, set_id: int) -> tuple[str, ...]:
        """The names of flag set ``set_id``, the gate held: remembered, or read and kept. The
        library is asked first whether it still holds the set (a lock-free call), so a set
        replaced more than ``FLAG_SET_GRACE_WRITES`` writes ago is refused, remembered or not,
        as in the C ABI and C++."""
        c = self._c
        count = c_size_t()
        _check_flag_set(c.pgate_flag_set_len(handle, set_id, byref(count)), set_id)
        names = self._flag_names.get(set_id)
        if names is not None:
            return names
        name_ptr = c_void_p()
        length = c_size_t()
        found = []
        for index in range(count.value):
            status = c.pgate_flag_set_name(handle, set_id, index, byref(name_ptr), byref(length))
            _check_flag_set(status, set_id)
            # Copied while the gate, which owns the name, is held.
            found.append(string_at(name_ptr.value or 0, length.value).decode("utf-8"))
        names = tuple(found)
        # The library refused an unknown number above (UnknownFlagSetError, never kept), and a
        # set's number never names another set while the gate lives: keep at most _FLAG_CACHE
        # sets and _FLAG_CACHE_NAMES names.
        cache = self._flag_names
        held = len(names) + sum(map(len, cache.values()))
        if len(cache) >= _FLAG_CACHE or held > _FLAG_CACHE_NAMES:
            cache = self._flag_names = {0: ()}
        cache[set_id] = names
        return names

    def record(
        self,
        decision: Decision,
        success: bool,
        latency_s: float | None = None,
        *,
        latency_ns: int | float | None = None,
    ) -> Recorded:
        """Records the outcome of a request routed by ``decision``: whether it succeeded and
        its latency (``latency_s`` seconds, or ``latency_ns`` nanoseconds).

        May run the judge and roll a failing canary back (when ``auto_rollback_enabled``).

        Raises:
            InvalidArgumentError: the latency is negative, NaN, infinite or 2**64 ns or more
                (``invalid latency = …``) or not a number (a bool is not), ``success`` is not
                a bool, ``decision`` is not a :class:`Decision`, or a field of a decision built
                by hand is out of range (the message names the field and value).
        """
        ns = _latency_ns(latency_s, latency_ns)
        if success is not True and success is not False:  # checked inline on the hot path
            flag("success", success)  # raises
        try:  # packed(decision), inlined for the hot path
            raw = decision._to_c()
        except AttributeError:
            raise not_a_decision(decision) from None
        what = c_uint32()
        try:
            self._enter(None)  # inside the try: see _held
            handle = self._handle
            if handle is None:
                raise GateClosedError("record")
            status = self._c.pgate_record(handle, byref(raw), success, ns, byref(what))
        finally:
            self._leave()
            if interrupted:
                raise_interrupted()
        if status:
            _check(status)
        return recorded(what.value)

    def record_abandoned(
        self,
        decision: Decision,
        waited_s: float | None = None,
        *,
        waited_ns: int | float | None = None,
    ) -> bool:
        """Records a request routed by ``decision`` whose client went away before the version
        answered, ``waited_s`` seconds (or ``waited_ns`` nanoseconds) after it was sent there.

        A wait longer than the SLO's ``latency_target_ms`` counts as a success that missed its
        target, timed to the wait (a lower bound), so a canary that hangs is rolled back even
        when every client gives up before the proxy's upstream timeout; a wait up to the target says
        nothing of the version and records nothing. A client leaving is never a failure.
        Returns whether the request was recorded; :meth:`record_abandoned_as` also says what
        happened to it. For the cold path.

        Raises:
            InvalidArgumentError: the wait is not a valid latency (``invalid waited = …``,
                ``invalid waited_s = …``), or ``decision`` is not a :class:`Decision`.
        """
        return self._abandoned("record_abandoned", decision, waited_s, waited_ns) is not None

    def record_abandoned_as(
        self,
        decision: Decision,
        waited_s: float | None = None,
        *,
        waited_ns: int | float | None = None,
    ) -> Recorded | None:
        """:meth:`record_abandoned`, returning what happened to the request as :meth:`record`
        does (``COUNTED``, ``LATE``, ``FOREIGN`` or ``FORCED``) when it was recorded, and
        ``None`` for a wait up to the SLO's ``latency_target_ms`` (nothing recorded). For a
        host that counts late, foreign and forced outcomes itself (see
        :func:`~promotion_gates.telemetry.metrics_prometheus_counted`): a forced request whose
        client gave up after the target is ``FORCED``. Raises as :meth:`record_abandoned`.
        """
        return self._abandoned("record_abandoned_as", decision, waited_s, waited_ns)

    def _abandoned(
        self,
        operation: str,
        decision: Decision,
        waited_s: float | None,
        waited_ns: int | float | None,
    ) -> Recorded | None:
        """The body of :meth:`record_abandoned` and :meth:`record_abandoned_as`."""
        ns = _latency_ns(waited_s, waited_ns, "waited")
        raw = packed(decision)
        done = c_bool()
        what = c_uint32()
        status = self._status(
            operation, "pgate_record_abandoned_as", byref(raw), ns, byref(done), byref(what)
        )
        _check(status)
        return recorded(what.value) if done.value else None

    def record_by_id(
        self,
        request_id: RequestId,
        success: bool,
        latency_s: float | None = None,
        *,
        latency_ns: int | float | None = None,
    ) -> Recorded:
        """Records an outcome by request id: the id is routed again under the current config.

        Prefer :meth:`record` with the decision the request was routed by. Raises as
        :meth:`record` for a bad latency or ``success``. The id is routed without a forcing
        value: this call cannot see that a header or cookie forced the request (only that an
        id list does), so such a request's outcome would count in the cohort of its bucket; a
        host that routes with :meth:`route_forced` records by id with
        :meth:`record_by_id_forced`.
        """
        ns = _latency_ns(latency_s, latency_ns)
        succeeded = flag("success", success)
        rid = _id_bytes(request_id)
        what = c_uint32()
        try:
            self._enter(None)  # inside the try: see _held
            handle = self._handle
            if handle is None:
                raise GateClosedError("record_by_id")
            status = self._c.pgate_record_by_id(handle, rid, len(rid), succeeded, ns, byref(what))
        finally:
            self._leave()
            if interrupted:
                raise_interrupted()
        if status:
            _check(status)
        return recorded(what.value)

    def record_by_id_forced(
        self,
        request_id: RequestId,
        forcing_value: RequestId | None,
        success: bool,
        latency_s: float | None = None,
        *,
        latency_ns: int | float | None = None,
    ) -> Recorded:
        """:meth:`record_by_id` for a request routed with :meth:`route_forced`: the id is
        routed again with the same forcing value (``None`` for none), so an outcome the value
        forced counts in neither cohort (:attr:`Recorded.FORCED`), as :meth:`record` counts it
        with the decision. A value that forces nothing is not counted again as ignored. Raises
        as :meth:`record_by_id`, and as :meth:`route_forced` for a bad ``forcing_value``.
        """
        ns = _latency_ns(latency_s, latency_ns)
        succeeded = flag("success", success)
        rid = _id_bytes(request_id)
        value = None if forcing_value is None else _id_bytes(forcing_value, "forcing_value")
        what = c_uint32()
        status = self._status(
            "record_by_id_forced",
            "pgate_record_by_id_forced",
            rid,
            len(rid),
            value,
            0 if value is None else len(value),
            succeeded,
            ns,
            byref(what),
        )
        _check(status)
        return recorded(what.value)

    def state(self) -> State:
        """Where the gate stands: environment, canary share and stage. No judging."""
        env = c_uint32()
        percent = c_double()
        stage = c_uint64()
        status = self._status("state", "pgate_state", byref(env), byref(percent), byref(stage))
        _check(status)
        return State(Environment(env.value), percent.value, stage.value)

    def override_names(self) -> tuple[str | None, str | None]:
        """Where the host reads a forcing value: the ``overrides.header`` and
        ``overrides.cookie`` names of the gate's current config, ``None`` for a name it does
        not give (``pgate_override_names``). A config swap may rename them; the change count
        (:meth:`change_count`) moves then."""
        cap = _ffi.NAME_CAPACITY  # PGATE_NAME_CAPACITY always suffices: no retry
        header, cookie = create_string_buffer(cap), create_string_buffer(cap)
        header_len, cookie_len = c_size_t(), c_size_t()
        status = self._status(
            "override_names", "pgate_override_names",
            header, cap, byref(header_len), cookie, cap, byref(cookie_len),
        )
        _check(status)

        def name(buf: Any, length: c_size_t) -> str | None:
            return buf.raw[: length.value].decode("utf-8") if length.value else None

        return name(header, header_len), name(cookie, cookie_len)

    def name(self) -> str:
        """The gate's name: its config's ``gate``, its key in a state store and the ``gate``
        label of its metrics (``pgate_gate_name``)."""
        cap = _ffi.NAME_CAPACITY  # PGATE_NAME_CAPACITY always suffices: no retry
        buf, length = create_string_buffer(cap), c_size_t()
        status = self._status("name", "pgate_gate_name", buf, cap, byref(length))
        _check(status)
        return buf.raw[: length.value].decode("utf-8")

    def fleet_judging(self) -> bool:
        """Whether the gate's state store sums every process's outcomes for the judge (the
        store's ``fleet_judging``; False without a store) (``pgate_fleet_judging``)."""
        sums = c_bool()
        status = self._status("fleet_judging", "pgate_fleet_judging", byref(sums))
        _check(status)
        return sums.value

    # -- the judge -----------------------------------------------------------------------

    def read_health(self) -> Health:
        """The canary's health over the current window, as :meth:`monitor_health` judges it,
        read without side effects of its own (``pgate_read_health``): its judgement never rolls
        back and leaves the window as it was, so a status page or a metrics scrape may call it
        as often as it likes. A rule may show as fired here; the gate acts on it at its next
        judgement (the record path judges by itself). An evaluation the record path asked for
        while the read held the window is made right after it, and may roll the canary back
        there, as the record path would have."""
        return self._health("pgate_read_health", "read_health")

    def monitor_health(self) -> Health:
        """Judges the canary now; rolls it back if a rule fired and ``auto_rollback_enabled``
        (``pgate_monitor_health``).

        The health returned is the one judged (after an automatic rollback it still shows the
        canary's numbers and ``Recommendation.ROLLBACK``). :meth:`read_health` reads the same
        without judging.
        """
        return self._health("pgate_monitor_health", "monitor_health")

    def health(self) -> Health:
        """The former name of :meth:`monitor_health`, kept with its meaning: it judges and may
        roll back. Deprecated: call :meth:`monitor_health`, or :meth:`read_health` to read."""
        return self._health("pgate_monitor_health", "health")

    def _health(self, function: str, operation: str) -> Health:
        out = _ffi.pgate_health()
        length = c_size_t()
        # PGATE_EVIDENCE_CAPACITY always suffices; judging twice would change the window, so
        # there is no retry (a BUFFER_TOO_SMALL here would be a library bug, raised as such).
        cap = _ffi.EVIDENCE_CAPACITY
        buf = create_string_buffer(cap)
        status = self._status(operation, function, byref(out), buf, cap, byref(length))
        _check_outside_log_callback(status, function)
        return Health._from_c(out, buf.raw[: length.value].decode("utf-8", "replace"))

    def check_slo(self) -> bool:
        """Whether the version under judgement meets its SLO (False with too little data).

        May roll a failing canary back.
        """
        compliant = c_bool()
        status = self._status("check_slo", "pgate_check_slo", byref(compliant))
        _check_outside_log_callback(status, "pgate_check_slo")
        return compliant.value

    # -- the release ---------------------------------------------------------------------

    def promote(self, environment: Environment, percent: float | None = None) -> None:
        """Moves the gate to ``environment``; a canary takes its ``percent`` (0 to 100), which
        Staging and Production do not read.

        Raises:
            InsufficientDataError, SloNotMetError: a gated move was refused by the judge
                (:class:`SloNotMetError` for a ramp down too, not gated, when a rule fired in
                the stage it ends: the canary was rolled back).
            InvalidPromotionError: the state machine has no such move
                (:class:`AlreadyThereError` for the current environment).
            InvalidConfigError: ``percent`` outside 0..=100 or NaN.
            InvalidArgumentError: ``environment`` is not an :class:`Environment` value, or
                ``percent`` is not a number a float holds (a bool or a str is not a number),
                or is missing for a canary.
        """
        env, share = _promotion(environment, percent)
        status, err = self._explained("promote", "pgate_promote", env, share)
        _check(status, err)

    def promote_from(
        self, stage: int, environment: Environment, percent: float | None = None
    ) -> None:
        """:meth:`promote`, made only if the gate is still in release stage ``stage``: the
        stage read before deciding (:meth:`state`'s ``stage``, a :class:`Decision`'s, or
        :attr:`Health.stage`, the stage judged). A ramp loop calls this one: if the judge
        rolled the canary back after the look, or another process moved the gate, a plain
        ``promote(Environment.CANARY, 25)`` from Production would start a new, ungated rollout
        of the build just rolled back.

        Raises:
            StageChangedError: the gate left ``stage`` (the message names the stage it is in
                now); nothing changed.
            InsufficientDataError, SloNotMetError: a gated move was refused by the judge.
            InvalidPromotionError: the state machine has no such move
                (:class:`AlreadyThereError` for the current environment).
            InvalidConfigError: ``percent`` outside 0..=100 or NaN.
            InvalidArgumentError: ``stage`` is not an integer from 0 to 2**64 - 1,
                ``environment`` is not an :class:`Environment` value, or ``percent`` is not a
                number a float holds (a bool or a str is not a number), or is missing for a
                canary.
        """
        expected = unsigned("stage", stage, 64)
        env, share = _promotion(environment, percent)
        status, err = self._explained("promote_from", "pgate_promote_from", expected, env, share)
        _check(status, err)

    def rollback(self, reason: str) -> None:
        """Rolls the release back to Production with a reason: at least one visible character,
        at most 4096 bytes (``MAX_REASON_BYTES``) of UTF-8.

        Raises:
            RollbackRefusedError: the gate is in Production, or the reason is blank (empty, or
                only whitespace, control, format or invisible characters) or too long.
            InvalidArgumentError: the reason is not a str, or not UTF-8 (a lone surrogate).
        """
        self._text_call("pgate_rollback", "rollback", "reason", reason)

    def enable_feature(self, name: str) -> None:
        """Turns a release flag on (idempotent). Raises :class:`InvalidFlagError` for a bad name,
        :class:`InvalidArgumentError` for one that is not a str or not UTF-8. In Canary and
        Staging a flag newly on starts a new stage, and the current one is judged first;
        :class:`SloNotMetError` when a rule fired in it, or the judge called for its rollback
        while the write was being made (the rollback is made instead)."""
        self._text_call("pgate_enable_feature", "enable_feature", "name", name)

    def disable_feature(self, name: str) -> None:
        """Turns a flag off and records it in the rollback history.

        Raises:
            FlagNotEnabledError: the flag is not on.
            InvalidArgumentError: the name is not a str, or not UTF-8.
        """
        self._text_call("pgate_disable_feature", "disable_feature", "name", name)

    def is_feature_enabled(self, name: str) -> bool:
        """Whether a flag is on for the gate.

        Raises:
            InvalidArgumentError: the name is not a str, or not UTF-8.
            InvalidFlagError: no flag can have the name (empty, over 128 bytes, with
                whitespace, control, format or invisible characters), as ``enable_feature``
                refuses it.
        """
        raw = utf8("name", name)
        on = c_bool()
        status = self._status(
            "is_feature_enabled", "pgate_is_feature_enabled", raw, len(raw), byref(on)
        )
        if status == _ffi.Status.INVALID_FLAG:  # the library's call writes no message
            raise InvalidFlagError(
                _ffi.Status.INVALID_FLAG,
                f"invalid name = {shown(name)}: not a flag name (1 to 128 bytes of UTF-8, no "
                "whitespace, control, format or invisible characters)",
            )
        _check(status)
        return on.value

    def _text_call(self, function: str, operation: str, field: str, text: str) -> None:
        raw = utf8(field, text)
        status, err = self._explained(operation, function, raw, len(raw))
        _check(status, err)

    # -- config and history --------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """The current ``PromotionConfig`` as a dict (the JSON form of the Rust API)."""
        loaded: dict[str, Any] = json.loads(self._json("pgate_config_json", "config"))
        return loaded

    @property
    def slo(self) -> dict[str, Any]:
        """The gate's ``SloConfig`` as a dict (durations in milliseconds)."""
        loaded: dict[str, Any] = json.loads(self._json("pgate_slo_json", "slo"))
        return loaded

    def swap_config(self, config: Config) -> None:
        """Replaces the config atomically (hot reload: not gated). On failure nothing changes,
        but for :class:`SloNotMetError`.

        Raises:
            InvalidJsonError, InvalidConfigError, InvalidArgumentError: as the constructor
                (``None`` is refused: pass ``{}`` for the defaults).
            SloNotMetError: the swap would start a stage (a new split, environment or salt, or
                in Canary and Staging a flag newly on), and a rule fired in the stage it ends,
                judged first: the canary was rolled back instead.
        """
        doc = document(config, "config")
        status, err = self._explained("swap_config", "pgate_swap_config", doc, len(doc))
        _check_document(status, err, json="config")

    def swap_config_from(self, change_count: int, config: Config) -> None:
        """:meth:`swap_config`, made only if the gate has not changed since the caller read
        ``change_count`` (:meth:`change_count`) *before* the config it edited (:attr:`config`)
        (``pgate_swap_config_from``). A hot reload that edits the gate's config calls this
        one: a plain :meth:`swap_config` of a config read before a rollback puts the
        rolled-back canary back, one read before :meth:`disable_feature` (a kill switch) turns
        the flag on again, and two reloads overwrite each other. Every change moves the count:
        a rollback, a promotion, a flag turned on or off, a config swap, an SLO swap
        (:meth:`swap_slo`: no config changes, yet it counts), and another process's write once
        read from the state store (after a lost compare-and-swap too, so one this gate has not
        synced yet refuses the swap). Read the count first: a change between the two reads then
        refuses the swap, never lets it through::

            >>> import promotion_gates as pg
            >>> with pg.Gate({"feature_flags": ["dark_mode"]}) as gate:
            ...     seen = gate.change_count()  # first
            ...     config = gate.config
            ...     config["feature_flags"].append("wide_layout")
            ...     gate.disable_feature("dark_mode")  # meanwhile: a kill switch, another process
            ...     try:
            ...         gate.swap_config_from(seen, config)
            ...     except pg.GateChangedError:
            ...         print("refused; the kill switch stays:", gate.is_feature_enabled("dark_mode"))
            ...     seen = gate.change_count()  # read again: the swap is made
            ...     config = gate.config
            ...     config["feature_flags"].append("wide_layout")
            ...     gate.swap_config_from(seen, config)
            ...     print(gate.is_feature_enabled("wide_layout"), gate.is_feature_enabled("dark_mode"))
            refused; the kill switch stays: False
            True False

        Raises:
            GateChangedError: the change count is no longer ``change_count`` (the message
                names both); nothing changed.
            InvalidJsonError, InvalidConfigError: as :meth:`swap_config`.
            InvalidArgumentError: ``change_count`` is not an integer from 0 to 2**64 - 1, or
                ``config`` is refused as :meth:`swap_config` refuses it (``None`` is refused:
                pass ``{}`` for the defaults).
        """
        seen = unsigned("change_count", change_count, 64)
        doc = document(config, "config")
        status, err = self._explained(
            "swap_config_from", "pgate_swap_config_from", seen, doc, len(doc)
        )
        _check_document(status, err, json="config")

    def swap_slo(self, slo: Config) -> None:
        """Replaces the SLO policy (a dict or JSON, as the constructor's ``slo``; missing
        fields take the defaults) and keeps the gate's state: its stage, environment, flags,
        the outcomes in the window and the rollback history (``pgate_swap_slo``). The judge
        uses the new policy from its next evaluation; outcomes already recorded keep the
        compliance they were counted with. A change of kind :attr:`ChangeKind.CONFIG`. With a
        state store the SLO stays this process's own (the store does not keep it).

        Raises:
            InvalidJsonError, InvalidConfigError, InvalidArgumentError: as the constructor
                (``None`` is refused: pass ``{}`` for the defaults); nothing changes then.
        """
        doc = document(slo, "slo")
        status, err = self._explained("swap_slo", "pgate_swap_slo", doc, len(doc))
        _check_document(status, err, json="slo")

    def rollback_history(self) -> list[RollbackEvent]:
        """The rollback history, oldest first."""
        events = json.loads(self._json("pgate_rollback_history_json", "rollback_history"))
        return [RollbackEvent._from_json(event) for event in events]

    def _json(self, function: str, operation: str) -> str:
        """Reads a JSON document the library copies out (grows the buffer when too small)."""
        return self._json_with(operation, lambda c, *args: getattr(c, function)(*args))

    def _json_with(self, operation: str, call: Callable[..., int]) -> str:
        """As :meth:`_json`, with ``call(library, handle, buf, cap, length)`` making the call."""
        c = self._c
        length = c_size_t()
        cap = _BUFFER
        for _ in range(8):
            buf = create_string_buffer(cap)
            status = self._held(operation, lambda h: call(c, h, buf, cap, byref(length)))
            if status != _ffi.Status.BUFFER_TOO_SMALL:
                _check(status)
                return buf.raw[: length.value].decode("utf-8")
            # With room to grow: another thread's writes may lengthen the text again before
            # the next call (changes naming more flags, a longer history).
            cap = 2 * (length.value + 1)
        raise BufferTooSmallError(_ffi.Status.BUFFER_TOO_SMALL, f"{operation} kept growing")

    # -- change notifications ------------------------------------------------------------

    def change_count(self) -> int:
        """The number of the gate's newest state change (0 before the first):
        ``pgate_change_count``, one atomic load in the library. When it moves,
        :meth:`changes_since` says what changed."""
        count = c_uint64()
        status = self._status("change_count", "pgate_change_count", byref(count))
        _check(status)
        return count.value

    def sync_now(self) -> bool:
        """With a state store: the gate's sync thread reads the store at once rather than at
        its next ``sync_interval_ms`` (``pgate_sync_now``), for a host told by its own means
        that another process wrote. Returns at once, having done no I/O; asks made before that
        read begins are merged into one, and :meth:`change_count` moves when it found a change.
        False when the gate has no store."""
        asked = c_bool()
        status = self._status("sync_now", "pgate_sync_now", byref(asked))
        _check(status)
        return asked.value

    def changes_since(self, after: int) -> list[Change]:
        """The gate's kept changes numbered above ``after``, oldest first: the last 64 at most
        (a gap in their :attr:`Change.sequence` shows changes no longer kept)."""
        number = c_uint64(unsigned("after", after, 64))
        loaded = json.loads(
            self._json_with("changes_since", lambda c, h, *out: c.pgate_changes_json(h, number, *out))
        )
        return [Change._from_json(change) for change in loaded]

    def on_change(self, callback: Callable[[Change], object], interval: float = 0.1) -> ChangeWatcher:
        """Calls ``callback(change)`` for each state change made from now on (rollbacks with
        their evidence, promotions, flag changes, config and SLO swaps, writes of other
        processes from the state store), in order.

        A daemon thread of the returned :class:`ChangeWatcher` reads :meth:`change_count`
        every ``interval`` seconds and, when it moved, :meth:`changes_since`; the callback runs
        on that thread, never on the library's and never while the gate is held (it may call
        the gate, :meth:`close` included). The watcher ends with :meth:`ChangeWatcher.stop`,
        when the gate is closed or garbage-collected (at once, not after the interval under
        way), or when the callback raises. The gate,
        not the thread, keeps the callback, so a callback that uses the gate does not keep it
        alive: dropped, the gate is collected with its callback. A callback slower
        than the gate's changes falls behind; past 64 changes behind it misses the oldest, and
        the jump in :attr:`Change.sequence` is the number missed.

        Raises:
            InvalidArgumentError: ``interval`` is not a number of seconds above 0 and at most
                :data:`threading.TIMEOUT_MAX`, or ``callback`` is not callable.
            GateClosedError: the gate is closed, or was closed by another thread while this
                call started the watcher (no watcher is left running then).
        """
        return ChangeWatcher(self, callback, interval)

    @staticmethod
    def version() -> str:
        """The library's version (``pgate_version``)."""
        return version()
