#!/usr/bin/env python3
"""Per-call cost of routing and recording from Python, beside pure-Python hashlib baselines.

    python3 bindings/python/bench_route.py [--calls 200000]

Each line is the mean over `--calls` calls (time.perf_counter_ns around the whole loop,
loop overhead included), best of `--repeat` runs; beside it, the process's CPU time per call
(time.process_time_ns), steadier when other work shares the machine. The library is found as the package finds
it ($PROMOTION_GATES_LIBRARY, else the repository's target/release).
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from promotion_gates import Gate, _ffi, formula  # noqa: E402

SALT = b"checkout"


def measure(name: str, calls: int, repeat: int, loop: Callable[[int], object]) -> float:
    runs = [_once(loop, calls) for _ in range(repeat)]
    wall = min(w for w, _ in runs)
    cpu = min(c for _, c in runs)
    print(f"{name:<58} {wall:8.0f} ns/call  (cpu {cpu:6.0f})")
    return wall


def _once(loop: Callable[[int], object], calls: int) -> tuple[float, float]:
    """Wall-clock (perf_counter_ns) and this process's CPU time per call: on a shared
    machine the CPU time is the steadier of the two."""
    cpu = time.process_time_ns()
    start = time.perf_counter_ns()
    loop(calls)
    wall = time.perf_counter_ns() - start
    return wall / calls, (time.process_time_ns() - cpu) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    calls, repeat = args.calls, args.repeat

    ids = [f"user-{i}-session".encode() for i in range(1024)]
    str_ids = [i.decode() for i in ids]
    mask = len(ids) - 1
    print(f"promotion-gates {Gate.version()} from {_ffi.library_path()}")
    print(f"Python {sys.version.split()[0]}, {calls} calls per line, best of {repeat}\n")

    with Gate({"environment": {"canary": {"traffic_percent": 10.0}}, "gate": "checkout"}) as gate:
        handle = gate._handle
        route_c = _ffi.lib().pgate_route
        out = _ffi.pgate_decision()
        by_ref = ctypes.byref(out)

        def raw_route(n: int) -> None:
            for k in range(n):
                rid = ids[k & mask]
                route_c(handle, rid, len(rid), by_ref)

        def route_bytes(n: int) -> None:
            route = gate.route
            for k in range(n):
                route(ids[k & mask])

        def route_str(n: int) -> None:
            route = gate.route
            for k in range(n):
                route(str_ids[k & mask])

        decisions = [gate.route(i) for i in ids]

        def record(n: int) -> None:
            rec = gate.record
            for k in range(n):
                rec(decisions[k & mask], True, latency_ns=1_500_000)

        def route_and_record(n: int) -> None:
            route, rec = gate.route, gate.record
            for k in range(n):
                rec(route(ids[k & mask]), True, latency_ns=1_500_000)

        sub = measure("ctypes pgate_route alone (prototypes, byref, no wrapper)", calls, repeat, raw_route)
        rb = measure("Gate.route(bytes) -> Decision", calls, repeat, route_bytes)
        measure("Gate.route(str) -> Decision", calls, repeat, route_str)
        rec = measure("Gate.record(decision, True, latency_ns=...)", calls, repeat, record)
        measure("Gate.route + Gate.record", calls, repeat, route_and_record)

    def formula_full(n: int) -> None:
        bucket = formula.bucket
        for k in range(n):
            bucket(SALT, ids[k & mask])

    salted = hashlib.sha256(formula.salt_block(SALT))

    def formula_midstate(n: int) -> None:
        # The library's trick in Python: the salt block hashed once, the state copied per id.
        for k in range(n):
            h = salted.copy()
            h.update(ids[k & mask])
            int.from_bytes(h.digest()[:8], "big") * 10_000_000 >> 64

    threshold = formula.threshold_for_percent(10.0)

    def formula_decision(n: int) -> None:
        for k in range(n):
            h = salted.copy()
            h.update(ids[k & mask])
            (int.from_bytes(h.digest()[:8], "big") * 10_000_000 >> 64) < threshold

    print()
    full = measure("pure Python formula.bucket (salt hashed per call)", calls, repeat, formula_full)
    mid = measure("pure Python, salt midstate copied per call", calls, repeat, formula_midstate)
    measure("pure Python decision (midstate, bucket < threshold)", calls, repeat, formula_decision)
    print()
    print(f"binding overhead over the bare ctypes call: {rb - sub:.0f} ns/route")
    print(f"Gate.route vs pure formula.bucket: {full / rb:.2f}x; vs midstate: {mid / rb:.2f}x")
    print(f"Gate.record: {rec:.0f} ns/call")


if __name__ == "__main__":
    main()
