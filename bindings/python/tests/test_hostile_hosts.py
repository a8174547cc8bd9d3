"""What a Python host may do that the library cannot see: bring a collected gate back to life,
pass a bytes subclass whose len() lies, interrupt set_log_callback with an exception, fork,
run on a free-threaded Python. Each round runs in a child process, so that a crash fails a
test rather than killing pytest."""

from __future__ import annotations

import textwrap
from pathlib import Path

from conftest import run_child

#: The cyclic garbage collector runs a gate's finalizer (the free) before a __del__ that keeps
#: the gate: the gate came back to life with its freed handle, and routing on it crashed.
RESURRECTED = textwrap.dedent(
    """
    import gc
    import promotion_gates as pg
    saved = []
    class Holder:
        def __del__(self):
            saved.append(self.gate)
    holder = Holder()
    holder.gate = pg.Gate({"environment": {"canary": {"traffic_percent": 10}}})
    holder.me = holder
    del holder
    gc.collect()
    gate = saved[0]
    for i in range(300):
        pg.Gate({"gate": f"x{i}"}).route("a")  # the freed memory is reused
    failures = 0
    for i in range(2000):
        try:
            gate.route(f"id{i}")
        except pg.PromotionGatesError:
            failures += 1
    print(failures)
    """
)


def test_a_gate_brought_back_to_life_after_its_free_refuses_calls() -> None:
    assert run_child(RESURRECTED) == "2000\n"


#: A bytes subclass whose len() lies: the library read that many bytes past the buffer.
LYING_LENGTH = textwrap.dedent(
    """
    import promotion_gates as pg
    class Long(bytes):
        def __len__(self):
            return 1 << 30
    class Text(str):
        def encode(self, *args, **kwargs):
            return Long(str.encode(self, *args, **kwargs))
    gate = pg.Gate({"environment": {"canary": {"traffic_percent": 50}}})
    same = [gate.route(Long(b"user-1")).bucket == gate.route(b"user-1").bucket,
            gate.route(Text("user-1")).bucket == gate.route(b"user-1").bucket,
            pg.Gate(Long(b'{"gate": "g"}')).name() == "g"]
    print(same)
    """
)


def test_a_bytes_subclass_is_read_for_its_bytes_not_its_len() -> None:
    assert run_child(LYING_LENGTH) == "[True, True, True]\n"


#: An exception raised in set_log_callback after the library took the new callback (a signal
#: handler's, at the worst moment) dropped that callback while the library kept calling it.
INTERRUPTED_SWAP = textwrap.dedent(
    """
    import gc
    import promotion_gates as pg
    from promotion_gates import telemetry
    lines = []
    real = telemetry._install
    def interrupted(*args):
        real(*args)
        raise KeyboardInterrupt
    telemetry._install = interrupted
    try:
        telemetry.set_log_callback(lambda level, target, message: lines.append(message),
                                   telemetry.LogLevel.DEBUG)
    except KeyboardInterrupt:
        pass
    telemetry._install = real
    gc.collect()
    gate = pg.Gate({"environment": {"canary": {"traffic_percent": 50}}})
    for i in range(100):
        gate.route(f"user-{i}")
    telemetry.set_log_callback(None)
    print(len(lines) > 0)
    """
)


def test_an_exception_inside_set_log_callback_keeps_the_callback_the_library_holds() -> None:
    assert run_child(INTERRUPTED_SWAP) == "True\n"


#: A gate made before a fork is inherited without its threads (a store's sync thread): the
#: child never synced, its automatic rollbacks were never stored, and close() panicked joining
#: a thread of the parent. In the child it is closed; the parent's goes on.
FORKED = textwrap.dedent(
    """
    import os, sys, time
    import promotion_gates as pg
    config = {"gate": "g", "environment": {"canary": {"traffic_percent": 50}},
              "store": {"sqlite": {"path": sys.argv[1], "sync_interval_ms": 20}}}
    gate = pg.Gate(config)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            gate.route("user-1")
        except pg.GateClosedError:
            start = time.monotonic()
            gate.close()
            mine = pg.Gate(config)  # made after the fork: a gate of the child's own
            mine.route("user-1")
            mine.close()
            code = 0 if time.monotonic() - start < 5 else 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    gate.route("user-1")
    gate.close()
    print(os.waitstatus_to_exitcode(status))
    """
)


def test_a_gate_made_before_a_fork_is_closed_in_the_child(tmp_path: Path) -> None:
    assert run_child(FORKED, str(tmp_path / "store.db")) == "0\n"


#: A fork while another thread holds one of the package's locks: the loader's (held through
#: the first library load) or set_log_callback's. The child has no such thread, and its first
#: call waited for it for ever. The child reports by its exit code: 0 when the call returned
#: (the library loaded again, or set_log_callback refused, saying why) within 10 s.
FORKED_WITH_A_LOCK_HELD = textwrap.dedent(
    """
    import os, sys, threading
    import promotion_gates as pg
    from promotion_gates import _ffi, telemetry
    which = sys.argv[1]
    lock = _ffi._lock if which == "load" else telemetry._setting
    assert _ffi._loaded is None, "loaded before the test"
    held, release = threading.Event(), threading.Event()
    def hold():
        with lock:
            held.set()
            release.wait()
    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        outcome = []
        def call():
            if which == "load":
                outcome.append(pg.version())
            else:
                try:
                    pg.set_log_callback(lambda level, target, message: None)
                except pg.InvalidArgumentError as error:
                    outcome.append(error.message)
        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        caller.join(10)
        if not outcome:
            os._exit(3)  # still waiting for the parent's thread
        ok = outcome[0] == _ffi.VERSION if which == "load" else "being set" in outcome[0]
        os._exit(0 if ok else 4)
    release.set()
    holder.join()
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status))
    """
)


def test_a_fork_while_another_thread_loads_the_library_does_not_hang_the_child() -> None:
    assert run_child(FORKED_WITH_A_LOCK_HELD, "load") == "0\n"


def test_a_fork_while_another_thread_sets_the_log_callback_does_not_hang_the_child() -> None:
    assert run_child(FORKED_WITH_A_LOCK_HELD, "callback") == "0\n"


#: A free-threaded CPython with the GIL off (3.13t, 3.14t): the guards of Gate.close() and the
#: flag-name cache rely on the GIL, so the import says so, once. Told apart by
#: sys._is_gil_enabled, which is made to answer False here (the tests run on a GIL build).
WITHOUT_THE_GIL = textwrap.dedent(
    """
    import sys, warnings
    sys._is_gil_enabled = lambda: False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import promotion_gates
        import promotion_gates.gate
    print(len(caught), caught[0].category.__name__ if caught else "")
    print(caught[0].message if caught else "")
    """
)


def test_the_import_warns_once_on_a_free_threaded_python_without_the_gil() -> None:
    count, message = run_child(WITHOUT_THE_GIL).splitlines()
    assert count == "1 RuntimeWarning"
    assert "free-threaded" in message and "PYTHON_GIL=1" in message


def test_the_import_does_not_warn_with_the_gil() -> None:
    quiet = "import warnings\nwarnings.simplefilter('error')\nimport promotion_gates\nprint('ok')"
    assert run_child(quiet) == "ok\n"
