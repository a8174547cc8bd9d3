"""close() while other threads are inside calls on the gate: every call either completes or
raises GateClosedError, and the process never crashes (it used to: `malloc(): invalid size`,
then SIGSEGV). The rounds run in a child process, so that a crash fails this test rather than
killing pytest."""

from __future__ import annotations

import textwrap

from conftest import run_child

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
