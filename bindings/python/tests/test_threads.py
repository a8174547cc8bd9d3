"""One Gate shared by threads: routing and recording while another thread promotes, rolls back
and flips flags. ctypes releases the GIL during each call, so the library runs them in
parallel."""

from __future__ import annotations

import threading

from conftest import canary

from promotion_gates import Environment, Gate, Recorded, formula

IDS = [f"user-{i}".encode() for i in range(2_000)]
BUCKETS = {rid: formula.bucket("default", rid) for rid in IDS}
WORKERS = 4
ROUNDS = 3


def test_threads_route_and_record_while_another_promotes() -> None:
    failures: list[str] = []
    outcomes: dict[Recorded, int] = {r: 0 for r in Recorded}
    environments: set[Environment] = set()
    lock = threading.Lock()
    start = threading.Barrier(WORKERS + 1)
    done = threading.Event()

    with Gate(canary(30, feature_flags=["new_api"])) as gate:

        def worker(seed: int) -> None:
            local: dict[Recorded, int] = {r: 0 for r in Recorded}
            envs = set()
            try:
                start.wait()
                for n in range(ROUNDS * len(IDS)):
                    rid = IDS[(n * 7 + seed) % len(IDS)]
                    d = gate.route(rid)
                    envs.add(d.environment)
                    want_threshold = formula.threshold_for_percent(d.traffic_percent)
                    if (
                        d.bucket != BUCKETS[rid]
                        or d.threshold != want_threshold
                        or d.is_canary != (d.bucket < d.threshold)
                        or (d.environment is Environment.PRODUCTION and d.threshold != 0)
                    ):
                        failures.append(f"{rid!r}: {d}")
                    if d.is_canary and n % 97 == 0:
                        names = gate.features(d)
                        if names not in ((), ("new_api",)):
                            failures.append(f"features {names}")
                    local[gate.record(d, True, latency_ns=1_000_000 + n)] += 1
            except BaseException as e:  # noqa: BLE001 - reported below
                failures.append(f"worker {seed}: {e!r}")
            with lock:
                for r, count in local.items():
                    outcomes[r] += count
                environments.update(envs)

        def promoter() -> None:
            cycles = 0
            try:
                start.wait()
                while not done.is_set() or cycles < 5:
                    gate.promote(Environment.CANARY, 20.0)  # ramp down: not gated
                    gate.enable_feature("new_api")  # a rollback cleared the release's flags
                    gate.disable_feature("new_api")
                    gate.enable_feature("new_api")
                    gate.rollback("cycle")
                    gate.promote(Environment.CANARY, 30.0)  # a new rollout: not gated
                    cycles += 1
            except BaseException as e:  # noqa: BLE001 - reported below
                failures.append(f"promoter: {e!r}")

        workers = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
        writer = threading.Thread(target=promoter)
        for t in [*workers, writer]:
            t.start()
        for t in workers:
            t.join(timeout=120)
        done.set()
        writer.join(timeout=120)
        assert not any(t.is_alive() for t in [*workers, writer]), "a thread hung"
        history = gate.rollback_history()

    assert not failures, "\n".join(failures[:20])
    total = WORKERS * ROUNDS * len(IDS)
    assert sum(outcomes.values()) == total
    assert outcomes[Recorded.FOREIGN] == 0
    assert outcomes[Recorded.COUNTED] > 0
    assert Environment.CANARY in environments
    assert sum(e.reason == "cycle" for e in history) >= 5
