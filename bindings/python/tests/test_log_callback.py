"""Replacing the log callback while other threads log: the library may call the old callback
after ``set_log_callback`` returns, so the binding keeps every installed callback alive (it used
to drop the old ctypes trampoline, and a logging thread could run freed memory). The rounds run
in a child process, so that a crash fails this test rather than killing pytest."""

from __future__ import annotations

import textwrap

from conftest import run_child

ROUNDS = 300

CHILD = textwrap.dedent(
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
    stdout = run_child(CHILD, str(ROUNDS))
    assert stdout.startswith(f"{ROUNDS} callbacks"), stdout
