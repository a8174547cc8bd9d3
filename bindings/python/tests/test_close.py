"""close() while other threads are inside calls on the gate: every call either completes or
raises GateClosedError, and the process never crashes (it used to: `malloc(): invalid size`,
then SIGSEGV). The rounds run in a child process, so that a crash fails this test rather than
killing pytest."""

from __future__ import annotations

import gc
import signal
import textwrap
import tomllib
import warnings
from collections.abc import Callable
from ctypes import c_void_p
from typing import Any

import pytest
from conftest import PYTHON_DIR, canary, run_child

from promotion_gates import Decision, Environment, Gate, GateClosedError, NullPointerError, _ffi

ROUNDS = 100

CHILD = textwrap.dedent(
    """
    import random, sys, threading, time
    import promotion_gates as pg

    ROUNDS, WORKERS = int(sys.argv[1]), 3
    config = {"environment": {"canary": {"traffic_percent": 50}}, "feature_flags": ["f"]}
    inside = 0  # calls that completed after close() had started
    for round_ in range(ROUNDS):
        gate = pg.Gate(config)
        started = threading.Barrier(WORKERS + 1)
        closing = threading.Event()
        endings, late = [], []

        def work(seed):
            n = 0
            started.wait()
            try:
                while True:
                    d = gate.route(b"user-%d" % (n * 31 + seed))
                    gate.record(d, n % 7 != 0, latency_ns=1_000 + n)
                    gate.features(d)
                    if n % 16 == seed:
                        gate.state()
                        gate.is_feature_enabled("f")
                    if n % 64 == seed:
                        gate.config
                    if closing.is_set():
                        late.append(n)
                    n += 1
            except pg.GateClosedError as e:
                endings.append(("closed", e.status))
            except BaseException as e:
                endings.append(("other", repr(e)))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(WORKERS)]
        for t in threads:
            t.start()
        started.wait()
        time.sleep(random.uniform(0, 0.003))
        closing.set()
        gate.close()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), f"round {round_}: a worker hung"
        assert endings == [("closed", pg.Status.INVALID_HANDLE)] * WORKERS, (round_, endings)
        assert gate.closed
        inside += bool(late)
    print(f"{ROUNDS} rounds, {inside} with calls completing while close() waited")
    """
)


def test_close_during_calls_from_other_threads_never_crashes() -> None:
    stdout = run_child(CHILD, str(ROUNDS))
    assert stdout.startswith(f"{ROUNDS} rounds"), stdout


#: Every kind of entry into the gate: the inlined hot calls and the held cold calls.
CALLS: dict[str, Callable[[Gate, Decision], object]] = {
    "route": lambda g, d: g.route("u"),
    "route_forced": lambda g, d: g.route_forced("u", "canary"),
    "record": lambda g, d: g.record(d, True, 0.001),
    "record_by_id": lambda g, d: g.record_by_id("u", True, 0.001),
    "record_by_id_forced": lambda g, d: g.record_by_id_forced("u", "canary", True, 0.001),
    "features": lambda g, d: g.features(d),
    "state": lambda g, d: g.state(),
    "config": lambda g, d: g.config,
    "promote": lambda g, d: g.promote(Environment.CANARY, 5),
}


@pytest.mark.parametrize("operation", sorted(CALLS))
def test_an_exception_as_a_call_enters_leaves_nothing_in_flight(
    operation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal handler's exception (KeyboardInterrupt; SystemExit from SIGTERM) raised as the
    entry's append returns: the entry was left behind, and close() waited for it forever."""
    monkeypatch.setattr("promotion_gates.gate._CLOSE_WAIT", 5.0, raising=False)
    gate = Gate(canary(10))
    decision = gate.route("u")
    entered = gate._enter

    def interrupted(entry: None) -> None:
        entered(entry)
        raise KeyboardInterrupt  # where CPython would run a signal handler

    gate._enter = interrupted
    with pytest.raises(KeyboardInterrupt):
        CALLS[operation](gate, decision)
    assert gate._calls == []
    gate._enter = entered
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # close() must not give up
        gate.close()
    assert not gate._finalizer.alive


SIGNALS = textwrap.dedent(
    """
    import signal, sys, threading, time
    import promotion_gates as pg

    class Tick(Exception):
        pass

    def tick(signum, frame):  # only inside the package, so this loop is never interrupted
        if frame is not None and "promotion_gates" in frame.f_code.co_filename:
            raise Tick()

    gate = pg.Gate({"environment": {"canary": {"traffic_percent": 10}}, "feature_flags": ["f"]})
    d = gate.route("u")
    calls = [lambda: gate.route(b"u"), gate.state, lambda: gate.record(d, True, 0.001),
             lambda: gate.features(d), lambda: pg.metrics_prometheus(gate), gate.change_count]
    signal.signal(signal.SIGALRM, tick)
    signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.00003)
    ticks, deadline = 0, time.monotonic() + float(sys.argv[1])
    while time.monotonic() < deadline and not gate._calls:
        for call in calls:
            try:
                call()
            except Tick:
                ticks += 1
    signal.setitimer(signal.ITIMER_REAL, 0)
    closing = threading.Thread(target=gate.close, daemon=True)
    closing.start()
    closing.join(30)
    print(ticks, len(gate._calls), closing.is_alive())
    """
)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="no interval timer")
def test_signal_handlers_raising_inside_calls_leave_nothing_in_flight() -> None:
    ticks, left, hung = run_child(SIGNALS, "3").split()
    assert int(ticks) > 100, "too few interrupts to say anything"
    assert (left, hung) == ("0", "False")


def test_python_3_10_is_refused_as_the_signal_test_fails_there() -> None:
    """3.10 runs a signal handler where the guard cannot take it (the test above fails there):
    the package requires 3.11, in its metadata and for mypy, and refuses an import on 3.10."""
    project = tomllib.loads((PYTHON_DIR / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["requires-python"] == ">=3.11"
    assert project["tool"]["mypy"]["python_version"] == "3.11"
    source = "import sys\nsys.version_info = (3, 10, 13, 'final', 0)\nimport promotion_gates"
    with pytest.raises(AssertionError, match="ImportError: promotion_gates requires Python 3.11"):
        run_child(source)


def test_close_gives_up_on_a_call_that_never_returns_and_frees_nothing_in_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("promotion_gates.gate._CLOSE_WAIT", 0.05)
    gate = Gate(canary(10))
    gate._enter(None)  # a call in flight, as when close() runs inside it on the same thread
    with pytest.warns(RuntimeWarning, match=r"waited 0\.05 s for 1 call\(s\) in flight"):
        gate.close()
    assert gate.closed and gate._finalizer.alive  # refused from now on, not freed
    with pytest.raises(GateClosedError):
        gate.route("u")
    gate._leave()  # the call returned
    gate.close()  # a later close() frees it
    assert not gate._finalizer.alive
    # Given up on and never closed again: freed when collected (no call holds it then).
    other = Gate()
    other._enter(None)
    with pytest.warns(RuntimeWarning):
        other.close()
    finalizer = other._finalizer
    del other
    gc.collect()
    assert not finalizer.alive



class _InterruptedOnReturn:
    """The library, with a Ctrl-C raised where ``function`` returns (a signal handler that ran
    there) after the real call; keeps each gate ``pgate_gate_new`` opened and each one
    ``pgate_gate_free`` was given."""

    def __init__(self, real: Any, function: str) -> None:
        self._real = real
        self._function = function
        self.opened: list[int | None] = []
        self.freed: list[int | None] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def pgate_gate_new(self, *args: Any) -> int:
        status: int = self._real.pgate_gate_new(*args)
        self.opened.append(args[4]._obj.value)  # byref(handle)
        self._interrupt("pgate_gate_new")
        return status

    def pgate_gate_free(self, handle: Any) -> int:
        status: int = self._real.pgate_gate_free(handle)
        self.freed.append(handle.value if isinstance(handle, c_void_p) else handle)
        self._interrupt("pgate_gate_free")
        return status

    def _interrupt(self, function: str) -> None:
        if function == self._function:
            raise KeyboardInterrupt(f"where {function} returned")


def test_a_gate_opened_then_interrupted_is_freed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C where ``pgate_gate_new`` returned (during a slow store open, say) came before
    the ``try`` that frees an opened gate and before its finalizer: the gate, and its store
    thread, lived on with nothing to free them."""
    library = _InterruptedOnReturn(_ffi.lib(), "pgate_gate_new")
    monkeypatch.setattr(_ffi, "lib", lambda: library)
    with pytest.raises(KeyboardInterrupt, match="where pgate_gate_new returned"):
        Gate(canary(10))
    assert len(library.opened) == 1 and library.opened[0]
    assert library.freed == library.opened


def test_a_gate_freed_then_interrupted_passes_null_from_then_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Ctrl-C where ``pgate_gate_free`` returned skipped the clearing of the handle: a Gate
    brought back to life after its finalizer ran would pass the freed gate to the library."""
    gate = Gate(canary(10))
    handle = gate._handle
    assert handle is not None and handle.value
    pointer = handle.value
    library = _InterruptedOnReturn(_ffi.lib(), "pgate_gate_free")
    monkeypatch.setattr(_ffi, "lib", lambda: library)
    with pytest.raises(KeyboardInterrupt, match="where pgate_gate_free returned"):
        gate._finalizer()  # as the garbage collector runs it
    assert library.freed == [pointer]
    assert handle.value is None, "the freed gate would be passed on"
    monkeypatch.undo()
    with pytest.raises(NullPointerError):
        gate.route("u")  # NULL, refused: never the freed gate
