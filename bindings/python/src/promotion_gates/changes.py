"""A gate's state changes: :class:`Change` (one numbered change, as ``pgate_changes_json``
describes it) and :class:`ChangeWatcher`, the thread behind :meth:`Gate.on_change
<promotion_gates.Gate.on_change>`.

The library never calls Python for a change: a host reads the change counter
(``pgate_change_count``, one atomic load) where it likes and, when it moved, the changes. The
watcher does that on a daemon thread of its own and calls the callback there, never on a
thread of the library and never while the gate is held, so the callback may call the gate,
:meth:`~promotion_gates.Gate.close` included.
"""

from __future__ import annotations

import enum
import queue
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ._arguments import finite_float, refused
from .decision import Environment
from .errors import GateClosedError
from .judge import RollbackEvent, environment_from_json

if TYPE_CHECKING:
    from .gate import Gate

__all__ = ["Change", "ChangeKind", "ChangeOrigin", "ChangeWatcher"]


class ChangeKind(str, enum.Enum):
    """What kind of change a :class:`Change` is, by what matters most in it."""

    #: The release was rolled back (manually, or by the judge with its evidence).
    ROLLBACK = "rollback"
    #: The environment moved otherwise: a promotion, a new rollout, a ramp.
    PROMOTION = "promotion"
    #: Flags were turned on or off, the environment unchanged.
    FLAGS = "flags"
    #: Anything else: a config swap of the policy, salt or bounds, an SLO swap.
    CONFIG = "config"


class ChangeOrigin(str, enum.Enum):
    """Where a change was made."""

    #: A call on this gate, or its judge.
    THIS_GATE = "this_gate"
    #: Another process sharing the gate's state store.
    STORE = "store"


@dataclass(frozen=True, slots=True)
class Change:
    """One state change of a gate."""

    #: 1 for the gate's first change, one more for each: a gap shows changes missed.
    sequence: int
    #: What kind of change it is.
    kind: ChangeKind
    #: Where it was made.
    origin: ChangeOrigin
    #: The release stage after the change.
    stage: int
    #: The environment before, and its canary share.
    from_environment: Environment
    from_percent: float
    #: The environment after, and its canary share.
    to_environment: Environment
    to_percent: float
    #: When, in milliseconds since the Unix epoch (the gate's clock).
    at_ms: int
    #: Flags now on for the requests of a version that were off for them, and now off that
    #: were on (at most 32 names together): a flag moved to ``graduated_flags`` is on for the
    #: stable version's requests, one moved back to ``feature_flags`` off for theirs.
    flags_enabled: tuple[str, ...]
    flags_disabled: tuple[str, ...]
    #: Changed flags beyond the listed ones.
    flags_unlisted: int
    #: For a rollback, its event (for an automatic one with :attr:`RollbackEvent.rules`).
    rollback: RollbackEvent | None

    @property
    def at(self) -> datetime:
        """:attr:`at_ms` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.at_ms / 1000, tz=timezone.utc)

    @classmethod
    def _from_json(cls, change: dict[str, Any]) -> Change:
        before, before_percent = environment_from_json(change["from"])
        after, after_percent = environment_from_json(change["to"])
        rollback = change.get("rollback")
        return cls(
            sequence=int(change["sequence"]),
            kind=ChangeKind(change["kind"]),
            origin=ChangeOrigin(change["origin"]),
            stage=int(change["stage"]),
            from_environment=before,
            from_percent=before_percent,
            to_environment=after,
            to_percent=after_percent,
            at_ms=int(change["at_ms"]),
            flags_enabled=tuple(str(f) for f in change["flags_enabled"]),
            flags_disabled=tuple(str(f) for f in change["flags_disabled"]),
            flags_unlisted=int(change["flags_unlisted"]),
            rollback=None if rollback is None else RollbackEvent._from_json(rollback),
        )


class _Stop:
    """A watcher's stop signal, which wakes its thread at once from the wait between two looks.

    Set by :meth:`ChangeWatcher.stop`, by the gate's ``close()`` and by the collection of the
    gate (a weakref callback): it holds neither the watcher nor the gate. The wake-up goes
    through a :class:`queue.SimpleQueue`, whose ``put`` is reentrant (made for weakref
    callbacks), where a :class:`threading.Event`'s ``set`` takes a lock that the thread a
    collection runs on may hold already (inside the event's own ``wait``)."""

    __slots__ = ("_stopped", "_wake")

    def __init__(self) -> None:
        self._stopped = False
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()

    def set(self) -> None:
        self._stopped = True
        self._wake.put(None)

    def is_set(self) -> bool:
        return self._stopped

    def wait(self, timeout: float) -> bool:
        """Waits ``timeout`` seconds at most, less once set; returns whether it is set."""
        if not self._stopped:
            try:
                self._wake.get(timeout=timeout)
            except queue.Empty:
                pass
        return self._stopped


class _Subscription:
    """A watcher's callback and its stop signal, kept by its gate (which sets the signal when it
    is closed): the watcher and its thread hold it weakly, so a callback that uses the gate
    keeps the gate alive no longer than the gate's other holders."""

    __slots__ = ("callback", "stop", "__weakref__")

    def __init__(self, callback: Callable[[Change], object], stop: _Stop) -> None:
        self.callback = callback
        self.stop = stop


class ChangeWatcher:
    """Calls a callback with each change of a gate, on a daemon thread of its own (made by
    :meth:`Gate.on_change <promotion_gates.Gate.on_change>`; see there).

    Stop it with :meth:`stop`, or use it as a context manager. It stops by itself when the
    gate is closed or garbage-collected (at once: its thread does not sleep out the interval),
    when the callback raises, and when reading the gate
    fails otherwise (the exception is reported through :func:`threading.excepthook` and kept
    in :attr:`error`). The watcher holds the gate weakly, and the gate (not the watcher or its
    thread) holds the callback, so a callback that uses the gate does not keep it alive: the
    gate and the callback are collected together, and the watcher stops.
    """

    __slots__ = ("_gate", "_subscription", "_interval", "_stop", "_thread", "_seen", "error")

    def __init__(self, gate: Gate, callback: Callable[[Change], object], interval: float) -> None:
        seconds = finite_float("interval", interval)
        # threading's waits take at most TIMEOUT_MAX (a longer one raises OverflowError).
        if not 0 < seconds <= threading.TIMEOUT_MAX:
            raise refused(
                "interval", interval, f"seconds above 0, at most {threading.TIMEOUT_MAX:g}"
            )
        if not callable(callback):
            raise refused("callback", callback, "not callable")
        stop = _Stop()
        # The gate's collection stops the watcher at once, not after the wait under way (up to
        # `interval`); the callback holds the signal alone, never the watcher or the gate.
        self._gate = weakref.ref(gate, lambda _: stop.set())
        self._interval = seconds
        self._stop = stop
        #: The exception that ended the watcher: the callback's, or one reading the gate; kept
        #: without its traceback (reported with it through threading.excepthook), whose frames
        #: would keep the gate alive.
        self.error: BaseException | None = None
        # The changes made from now on; read before the thread starts, so none is lost. A closed
        # gate is refused naming the call made, on_change, not the count it reads.
        try:
            self._seen = gate.change_count()
        except GateClosedError:
            raise GateClosedError("on_change") from None
        subscription = _Subscription(callback, stop)
        # The gate keeps the callback (the thread does not) and stops the watcher when closed.
        gate._watchers.append(subscription)
        if gate.closed:
            # A close() since the count was read: it cleared the handle before it signalled the
            # gate's watchers, and may have signalled them before this one was added, so it was
            # not woken. Refused as a closed gate refuses on_change (the append and close's
            # steps are each atomic under the GIL: a close that missed it is seen here).
            gate._watchers.remove(subscription)
            raise GateClosedError("on_change")
        self._subscription = weakref.ref(subscription)
        self._thread = threading.Thread(target=self._run, name="promotion-gates-changes", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the watcher's thread still runs."""
        return self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> None:
        """Stops the watcher and waits (at most ``timeout`` seconds, ``None`` for as long as it
        takes) for its thread to end; a callback under way finishes first. From the callback
        itself it only asks the thread to end after the callback returns. A ``timeout`` that is
        not a number of seconds from 0 to ``threading.TIMEOUT_MAX`` is
        :class:`InvalidArgumentError`, and stops nothing."""
        if timeout is not None:
            seconds = finite_float("timeout", timeout)
            if not 0 <= seconds <= threading.TIMEOUT_MAX:
                raise refused(
                    "timeout", timeout, f"seconds from 0, at most {threading.TIMEOUT_MAX:g}"
                )
            timeout = seconds
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def __enter__(self) -> ChangeWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            self._watch()
        except BaseException as error:
            # Reported with its traceback, as an uncaught exception of the thread would be,
            # then kept without it: the traceback's frames hold the gate (a local of _watch,
            # the callback's closure), which would live, natively too, as long as the watcher.
            threading.excepthook(
                threading.ExceptHookArgs(
                    (type(error), error, error.__traceback__, threading.current_thread())
                )
            )
            _drop_tracebacks(error)
            self.error = error
        finally:
            self._unsubscribe()

    def _unsubscribe(self) -> None:
        """Lets the gate drop the callback of a watcher that ended."""
        gate, subscription = self._gate(), self._subscription()
        if gate is not None and subscription is not None:
            gate._watchers.remove(subscription)

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            gate = self._gate()
            if gate is None:
                return  # collected
            try:
                moved = gate.change_count() != self._seen
                changes = gate.changes_since(self._seen) if moved else []
            except GateClosedError:
                return
            # Never held across the wait or while the callback runs: the watcher must not keep
            # a gate alive, and the callback may close the last reference.
            del gate
            for change in changes:
                subscription = self._subscription()
                if self._stop.is_set() or subscription is None:
                    return  # stopped, or the gate and the callback it kept were collected
                self._seen = change.sequence
                subscription.callback(change)
                del subscription


def _drop_tracebacks(error: BaseException) -> None:
    """Drops the tracebacks (their frames) of ``error`` and of every exception it chains to:
    its cause, its context and, for an exception group, its members."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        members = getattr(current, "exceptions", None)  # an exception group's (3.11)
        if isinstance(members, tuple):
            pending.extend(m for m in members if isinstance(m, BaseException))
