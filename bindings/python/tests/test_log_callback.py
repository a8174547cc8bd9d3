"""The log callback against the threads that log: replacing it while they log, exiting while
they log, and its arguments. The rounds run in child processes, so that a crash fails a test
rather than killing pytest."""

from __future__ import annotations

import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import canary, run_child

import promotion_gates as pg
from promotion_gates import Gate, LogLevel, _ffi, set_log_callback, telemetry
from promotion_gates.errors import interrupted

ROUNDS = 300

#: Replaces the callback ROUNDS times while three threads route and record at debug level
#: (one line per route). The library may call the old callback until set_log_callback
#: returns; the binding used to drop the old ctypes trampoline, and a logging thread could run
#: freed memory.
REPLACING = textwrap.dedent(
    """
    import sys, threading
    import promotion_gates as pg
    from promotion_gates.telemetry import LogLevel, set_log_callback

    ROUNDS, WORKERS = int(sys.argv[1]), 3
    config = {"environment": {"canary": {"traffic_percent": 50}}}
    calls = [0] * ROUNDS
    used = [threading.Event() for _ in range(ROUNDS)]
    stop = threading.Event()

    def callback_for(round_):
        def collect(level, target, message):
            calls[round_] += 1
            used[round_].set()
        return collect

    def work(gate, seed):
        n = 0
        while not stop.is_set():
            d = gate.route(b"user-%d" % (n * 31 + seed))
            gate.record(d, n % 5 != 0, latency_ns=1_000 + n)
            n += 1

    with pg.Gate(config) as gate:
        set_log_callback(callback_for(0), LogLevel.DEBUG)
        threads = [threading.Thread(target=work, args=(gate, i)) for i in range(WORKERS)]
        for t in threads:
            t.start()
        for round_ in range(1, ROUNDS):
            set_log_callback(callback_for(round_), LogLevel.DEBUG)
            # The new callback is in use before the next swap (waiting without the GIL).
            assert used[round_].wait(60), f"round {round_}: the callback was never called"
        set_log_callback(None)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "a worker hung"
    print(f"{ROUNDS} callbacks, {sum(calls)} log lines")
    """
)


def test_replacing_the_log_callback_while_threads_log_never_crashes() -> None:
    stdout = run_child(REPLACING, str(ROUNDS))
    assert stdout.startswith(f"{ROUNDS} callbacks"), stdout


#: Exits while library threads log to a Python callback: three daemon threads routing at
#: trace level, and the threads of two gates sharing one SQLite store (gates are left open at
#: exit). A thread entering the callback while the interpreter finalizes is ended by
#: pthread_exit, whose unwinding through the library's frames aborted the process ("FATAL:
#: exception not rethrown"); the binding detaches the callback at exit, and the library's
#: detaching waits for the calls under way.
EXITING = textwrap.dedent(
    """
    import sys, threading, time
    import promotion_gates as pg
    from promotion_gates.telemetry import LogLevel, set_log_callback

    lines = [0]
    def count(level, target, message):
        lines[0] += 1
    set_log_callback(count, LogLevel.TRACE)
    gate = pg.Gate({"environment": {"canary": {"traffic_percent": 50}}})
    store = {"sqlite": {"path": sys.argv[1], "sync_interval_ms": 10}}
    a = pg.Gate({"gate": "exiting", "store": store})
    b = pg.Gate({"gate": "exiting", "store": store})

    def work(seed):
        n = 0
        while True:
            d = gate.route(b"user-%d" % (n * 7 + seed))
            gate.record(d, True, latency_ns=1_000)
            n += 1

    for seed in range(3):
        threading.Thread(target=work, args=(seed,), daemon=True).start()
    for i in range(20):
        a.enable_feature(f"f{i}")  # b's thread reads each from the store, and logs it
    time.sleep(0.05)
    print("logged" if lines[0] else "nothing logged")
    """
)


#: A gate whose last reference goes inside the log callback, on the gate's own state store
#: thread while it applies another gate's write (its writer lock held): the finalizer freed it
#: there, and the free joined the thread it ran on (a panic, the gate half freed) or would wait
#: for the lock that thread holds. A hang exits 3 (faulthandler).
FREED_IN_THE_CALLBACK = textwrap.dedent(
    """
    import faulthandler, sys, threading
    import promotion_gates as pg
    from promotion_gates.telemetry import LogLevel, set_log_callback

    faulthandler.dump_traceback_later(60, exit=True)
    unraisable = []
    sys.unraisablehook = unraisable.append
    threading.excepthook = unraisable.append
    config = {"gate": "g", "environment": {"canary": {"traffic_percent": 10}},
              "store": {"sqlite": {"path": sys.argv[1], "sync_interval_ms": 20}}}
    writer = pg.Gate(config)
    victims = [pg.Gate(config)]
    dropped = threading.Event()

    def callback(level, target, message):
        if "applied a write from the store" in message and victims:
            victims.clear()
            dropped.set()

    set_log_callback(callback, LogLevel.INFO)
    writer.enable_feature("x")
    assert dropped.wait(30), "the victim's sync thread never applied the write"
    for thread in threading.enumerate():
        if thread.name == "promotion-gates-free":
            thread.join(30)
    set_log_callback(None)
    writer.close()
    assert not unraisable, [str(u.exc_value) for u in unraisable]
    print("freed")
    """
)


#: Gates collected by a garbage collection that runs on a state store's thread in the log
#: callback's trampoline, before it marks the thread as inside the callback (its first
#: statement allocates the thread's local storage: ctypes gives a library thread a new thread
#: state at each call). The library refused the free there; the finalizer had dropped the
#: handle and raised (an InvalidArgumentError in the unraisable hook): the gate leaked.
COLLECTED_ON_A_LIBRARY_THREAD = textwrap.dedent(
    """
    import faulthandler, gc, sys, threading, time
    import promotion_gates as pg
    from promotion_gates.telemetry import LogLevel, set_log_callback

    faulthandler.dump_traceback_later(60, exit=True)
    unraisable = []
    sys.unraisablehook = unraisable.append
    config = {"gate": "g", "store": {"sqlite": {"path": sys.argv[1], "sync_interval_ms": 10}}}
    writer, reader = pg.Gate(config), pg.Gate(config)
    done = threading.Event()

    def write():  # each write is applied, and logged, by the reader's store thread
        i = 0
        while not done.is_set():
            (writer.enable_feature if i % 2 == 0 else writer.disable_feature)("f")
            i += 1
            time.sleep(0.02)

    set_log_callback(lambda level, target, message: None, LogLevel.TRACE)
    thread = threading.Thread(target=write)
    thread.start()
    gc.set_threshold(1, 1, 1)
    for _ in range(30):
        cycle = [pg.Gate({"gate": "cyclic"})]
        cycle.append(cycle)
        del cycle
        time.sleep(0.1)
    gc.set_threshold(700, 10, 10)
    done.set()
    thread.join()
    set_log_callback(None)
    gc.collect()
    for free in threading.enumerate():
        if free.name == "promotion-gates-free":
            free.join(30)
    writer.close()
    reader.close()
    assert not unraisable, [repr(u.exc_value) for u in unraisable]
    print("freed")
    """
)


#: The race that COLLECTED_ON_A_LIBRARY_THREAD provokes by chance, made at will: a gate's last
#: reference goes inside the log callback while the thread is not yet marked as inside it (as
#: in the trampoline's first statement). The library refuses the free there; the finalizer then
#: frees it on a thread of its own. It used to drop the handle and raise (the gate leaked).
REFUSED_IN_THE_CALLBACK = textwrap.dedent(
    """
    import faulthandler, sys, threading, time
    import promotion_gates as pg
    from promotion_gates.gate import log_callback_thread
    from promotion_gates.telemetry import LogLevel, set_log_callback

    faulthandler.dump_traceback_later(60, exit=True)
    unraisable = []
    sys.unraisablehook = unraisable.append
    threading.excepthook = unraisable.append
    victims = [pg.Gate({"gate": "victim"})]
    handle = victims[0]._handle

    def callback(level, target, message):
        if victims:
            log_callback_thread.inside = False  # not marked yet, as in the race
            try:
                victims.clear()  # the victim's finalizer runs here
            finally:
                log_callback_thread.inside = True

    with pg.Gate({"environment": {"canary": {"traffic_percent": 50}}}) as gate:
        set_log_callback(callback, LogLevel.TRACE)
        gate.route(b"user-1")  # logs a line inside the library's call: the callback runs
        set_log_callback(None)
    assert not victims, "the callback never ran"
    # The free thread clears the handle once its free succeeded (it may be over already).
    deadline = time.monotonic() + 30
    while handle.value is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not unraisable, [repr(u.exc_value) for u in unraisable]
    assert handle.value is None, "the refused free was never done"
    print("freed")
    """
)


def test_a_gate_whose_last_reference_goes_inside_the_log_callback_is_freed(tmp_path: Path) -> None:
    assert run_child(FREED_IN_THE_CALLBACK, str(tmp_path / "store.db")) == "freed\n"


def test_a_gate_collected_on_a_library_thread_before_the_callback_runs_is_freed(tmp_path: Path) -> None:
    assert run_child(COLLECTED_ON_A_LIBRARY_THREAD, str(tmp_path / "store.db")) == "freed\n"


def test_a_free_refused_inside_the_log_callback_is_done_on_a_thread_of_its_own() -> None:
    assert run_child(REFUSED_IN_THE_CALLBACK) == "freed\n"


@pytest.mark.parametrize("run", range(5))
def test_exiting_while_threads_log_to_the_callback_exits_cleanly(tmp_path: Path, run: int) -> None:
    assert run_child(EXITING, str(tmp_path / "store.db")) == "logged\n"


#: A signal handler raises inside the log callback on the main thread, once per kind: in the
#: callback's body, and (the Ctrl-C timer) while the library runs, which CPython raises at the
#: trampoline's first instruction. ctypes printed both and dropped them: the host ran on.
SIGNALLED = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    import promotion_gates as pg

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(3))
    kill = {"signum": None}
    def callback(level, target, message):
        signum, kill["signum"] = kill["signum"], None
        if signum is not None:
            os.kill(os.getpid(), signum)  # the handler runs as it returns, in the callback
    pg.set_log_callback(callback, pg.LogLevel.DEBUG)  # a line per route
    gate = pg.Gate({"environment": {"canary": {"traffic_percent": 10}}})
    for signum, kind in [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, SystemExit)]:
        kill["signum"] = signum
        try:
            for _ in range(5):
                gate.route(b"u")
            print("lost", kind.__name__)
        except kind:
            print("raised", kind.__name__)
    caught = 0
    for trial in range(int(sys.argv[1])):
        timer = threading.Timer(0.001 + trial % 7 * 0.0003, os.kill, (os.getpid(), signal.SIGINT))
        try:
            timer.start()
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                gate.route(b"u")
        except KeyboardInterrupt:
            caught += 1
        timer.join()
    print("caught", caught)
    """
)


def test_a_signal_handlers_exception_inside_the_log_callback_is_raised_by_the_call() -> None:
    trials = 50
    assert run_child(SIGNALLED, str(trials)).split("\n") == [
        "raised KeyboardInterrupt", "raised SystemExit", f"caught {trials}", ""
    ]


KEPT_DURING_CONSTRUCTION = textwrap.dedent(
    """
    import os, signal, sys, threading
    import promotion_gates as pg

    path = os.path.join(sys.argv[1], "kept.db")
    def config(percent):
        return {"environment": {"canary": {"traffic_percent": percent}},
                "store": {"sqlite": {"path": path}}}
    armed = [False]
    def callback(level, target, message):
        if armed[0] and threading.current_thread() is threading.main_thread():
            armed[0] = False
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs as it returns
    pg.Gate(config(10)).close()
    pg.set_log_callback(callback)
    armed[0] = True
    try:
        gate = pg.Gate(config(20))  # the stored state wins over the document's: a warn line
    except KeyboardInterrupt:
        print("raised by Gate")
    else:
        print("not raised by Gate:", "no line logged" if armed[0] else "kept")
        try:
            gate.route(b"u")
        except KeyboardInterrupt:
            print("raised by route")
    pg.set_log_callback(None)
    with pg.Gate(config(30)) as gate:  # the interrupted one was freed, its file closed
        print("reopened", gate.route(b"u").environment.name)
    """
)


def test_an_interrupt_kept_while_a_gate_opens_is_raised_by_its_constructor(
    tmp_path: Path,
) -> None:
    """A Ctrl-C during Gate(...) (waiting for an unreachable etcd store, say) was kept by the
    log callback's trampoline and raised by some later, unrelated call."""
    assert run_child(KEPT_DURING_CONSTRUCTION, str(tmp_path)).split("\n") == [
        "raised by Gate", "reopened CANARY", ""
    ]


class _InterruptedWhileFreed:
    """The library, a Ctrl-C coming while its free logs a line: kept by the trampoline's own
    function, as in the log callback of a free on the main thread."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def pgate_gate_free(self, handle: Any) -> int:
        status: int = self._real.pgate_gate_free(handle)
        assert telemetry._kept(KeyboardInterrupt("while freed"))
        return status


def test_an_interrupt_kept_while_a_finalizer_frees_a_gate_is_reported_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Ctrl-C kept while a garbage collection freed a gate (a finalizer, which cannot raise)
    waited in ``interrupted`` and was raised by the next call, however much later and however
    unrelated, or never. It is reported at once through ``sys.unraisablehook``, as Python
    reports any exception a finalizer raises."""
    reported: list[Any] = []
    # The binding's hook, as the first set_log_callback installs it, over the host's.
    monkeypatch.setattr(telemetry, "_passed_on", reported.append)
    monkeypatch.setattr(sys, "unraisablehook", telemetry._unraisable)
    gate = Gate(canary(10))
    closed = Gate(canary(10))
    real = _ffi.lib()
    monkeypatch.setattr(_ffi, "lib", lambda: _InterruptedWhileFreed(real))
    del gate  # its finalizer frees it here
    assert [type(r.exc_value) for r in reported] == [KeyboardInterrupt], reported
    assert str(reported[0].exc_value) == "while freed"
    assert repr(reported[0].object).startswith("<finalize object"), reported[0]
    assert interrupted == []
    # close() raises it, as the call that ran the library.
    with pytest.raises(KeyboardInterrupt, match="while freed"):
        closed.close()
    assert interrupted == [] and closed.closed and len(reported) == 1
    # One kept before the free, by a call not yet returned that the collection interrupted,
    # is left to that call (and the one kept during the free is dropped, as a second Ctrl-C
    # before a call returns is).
    monkeypatch.setattr(_ffi, "lib", lambda: real)
    collected = Gate(canary(10))
    monkeypatch.setattr(_ffi, "lib", lambda: _InterruptedWhileFreed(real))
    earlier = KeyboardInterrupt("the call's")
    interrupted.append(earlier)
    try:
        del collected
        assert interrupted == [earlier] and len(reported) == 1
    finally:
        interrupted.clear()
    monkeypatch.setattr(_ffi, "lib", lambda: real)
    with Gate(canary(10)) as after:
        after.route("u")  # nothing left to raise


def test_an_interrupt_kept_before_close_is_raised_by_close() -> None:
    """A Ctrl-C the log callback kept and no call had raised yet when ``close()`` started was
    left kept by ``close()``, which raised only one kept while it freed the gate: a program
    that closes its gate (with ``with``) and ends never saw it. ``close()`` raises it, as every
    call does, and has freed the gate; so does ``with``, and a second ``close()``."""
    try:
        gate = Gate(canary(10))
        interrupted.append(KeyboardInterrupt("kept before close"))
        with pytest.raises(KeyboardInterrupt, match="kept before close"):
            gate.close()
        assert interrupted == [] and gate.closed and not gate._finalizer.alive
        with pytest.raises(KeyboardInterrupt, match="kept before with's end"):
            with Gate(canary(10)) as other:
                interrupted.append(KeyboardInterrupt("kept before with's end"))
        assert interrupted == [] and other.closed and not other._finalizer.alive
        interrupted.append(KeyboardInterrupt("kept before a second close"))
        with pytest.raises(KeyboardInterrupt, match="kept before a second close"):
            gate.close()
        assert interrupted == []
        gate.close()  # nothing left to raise
    finally:
        interrupted.clear()


def test_a_kept_interrupt_is_raised_in_the_main_thread_only() -> None:
    # Signal handlers run in the main thread: a worker's call does not take its interrupt.
    with Gate(canary(10)) as gate:
        interrupted.append(KeyboardInterrupt())
        worker = threading.Thread(target=gate.route, args=("u",))
        worker.start()
        worker.join()
        assert len(interrupted) == 1
        with pytest.raises(KeyboardInterrupt):
            gate.route("u")
        assert interrupted == []
        gate.route("u")


def test_every_call_refused_inside_the_log_callback_says_why() -> None:
    """pgate_monitor_health, pgate_check_slo and the reads of the window (the Prometheus
    expositions, pgate_latency_histograms_json) write no error object: their refusal showed
    only the status's name, where the others give the library's reason."""
    refusals: dict[str, str] = {}
    with Gate(canary(10)) as gate:
        calls: dict[str, Callable[[], object]] = {
            "pgate_monitor_health": gate.monitor_health,
            "pgate_check_slo": gate.check_slo,
            "pgate_rollback": lambda: gate.rollback("inside"),
            "pgate_swap_slo": lambda: gate.swap_slo({}),
            "pgate_metrics_prometheus_gates": lambda: pg.metrics_prometheus(gate),
            "pgate_metrics_prometheus_counted": lambda: pg.metrics_prometheus_counted(
                gate, counts=[pg.OutcomeCounts()]
            ),
            "pgate_latency_histograms_json": lambda: pg.latency_histograms(gate),
        }

        def call_the_gate(level: LogLevel, target: str, message: str) -> None:
            for function, call in calls.items():
                if function not in refusals:
                    with pytest.raises(pg.InvalidArgumentError) as refused:
                        call()
                    refusals[function] = str(refused.value)

        try:
            set_log_callback(call_the_gate)
            gate.enable_feature("logged")  # an info line
        finally:
            set_log_callback(None)
    assert refusals == {
        function: f"{function} was called from inside the log callback, which must call no "
        "pgate_ function (the library may hold a lock while it logs: the call would wait for "
        "its own thread) (INVALID_ARGUMENT)"
        for function in calls
    }


def test_the_arguments_are_checked_and_a_refusal_changes_nothing() -> None:
    lines: list[str] = []

    def collect(level: LogLevel, target: str, message: str) -> None:
        lines.append(message)

    try:
        set_log_callback(collect, LogLevel.WARN)
        members = "one of [1, 2, 3, 4, 5]"
        for level, why in [
            (2**32 + 3, f"4294967299: {members}"),
            (-1, f"-1: {members}"),
            (0, f"0: {members}"),
            ("3", f"'3': {members}, an integer or a member of LogLevel, not str"),
        ]:
            with pytest.raises(pg.InvalidArgumentError) as caught:
                set_log_callback(collect, level)  # type: ignore[arg-type]
            assert caught.value.message == f"invalid max_level = {why}"
        with pytest.raises(pg.InvalidArgumentError, match="invalid callback = 'print': not callable"):
            set_log_callback("print")  # type: ignore[arg-type]
        with Gate({"environment": "staging"}) as gate:
            gate.enable_feature("quiet")  # an info line: still up to warnings only
            assert lines == []
            gate.rollback("drill")
            assert any("drill" in line for line in lines)
    finally:
        set_log_callback(None)


def test_setting_the_callback_from_inside_it_is_refused() -> None:
    refusals: list[BaseException] = []

    def reset(level: LogLevel, target: str, message: str) -> None:
        try:
            set_log_callback(None)
        except pg.InvalidArgumentError as error:
            refusals.append(error)

    try:
        set_log_callback(reset)
        with Gate({"environment": "staging"}) as gate:
            gate.enable_feature("once")
            gate.enable_feature("twice")  # still set: the first refusal changed nothing
        assert len(refusals) == 2
        assert "from inside the log callback" in str(refusals[0])
    finally:
        set_log_callback(None)
