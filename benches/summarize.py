#!/usr/bin/env python3
"""Prints the medians of the last `cargo bench` run, and each subject's ratio to its baseline.

Reads criterion's `target/criterion/<group>/<function>/<parameter>/new/estimates.json` (or
`$CARGO_TARGET_DIR/criterion`), so every figure comes from the same run. Standard library only.

    python3 benches/summarize.py            # markdown tables, as in BENCHMARKS.md
"""

from __future__ import annotations  # `float | None` on Python 3.7 to 3.9 too

import json
import os
import sys
from pathlib import Path

ROOT = Path(os.environ.get("CARGO_TARGET_DIR", Path(__file__).resolve().parent.parent / "target"))
CRITERION = ROOT / "criterion"
ID_LENGTHS = (16, 36, 128)


def median_ns(*path: str) -> float | None:
    """The median time per iteration of one benchmark, in nanoseconds, or None if absent."""
    estimates = CRITERION.joinpath(*path, "new", "estimates.json")
    if not estimates.exists():
        return None
    return json.loads(estimates.read_text())["median"]["point_estimate"]


def ns(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 10_000:
        return f"{value / 1000:,.1f} µs"
    return f"{value:,.1f} ns"


def ratio(subject: float | None, baseline: float | None) -> str:
    if subject is None or baseline is None:
        return "–"
    return f"{subject / baseline:.2f}x"


def per_core_second(value: float | None) -> str:
    """Operations one core does per second at this cost, in millions."""
    return "–" if value is None else f"{1e3 / value:.1f} M/s"


def table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def route() -> None:
    print("### route (one thread; 1024 ids cycled)\n")
    rows = []
    for n in ID_LENGTHS:
        r = median_ns("route", "route_request", str(n))
        b = median_ns("route", "salted_hasher_bucket", str(n))
        d = median_ns("route", "sha256_digest_salted", str(n))
        blocks = 1 if n < 56 else (n // 64) + (1 if n % 64 < 56 else 2)
        c = median_ns("route", f"compress256_x{blocks}", str(n))
        rows.append([f"{n} B", ns(r), ns(b), ns(d), f"{ns(c)} (x{blocks})", ratio(r, d),
                     ratio(r, b), ratio(r, c), per_core_second(r)])
    table(["id", "route_request", "SaltedHasher::bucket", "Sha256::digest (salt block + id)",
           "compress256 floor", "route / digest", "route / bucket", "route / floor",
           "routes per core-second"], rows)


def route_latency() -> None:
    print("### route_latency (36-byte ids; each input chosen by the previous result)\n")
    r = median_ns("route_latency", "route_request", "36")
    b = median_ns("route_latency", "salted_hasher_bucket", "36")
    d = median_ns("route_latency", "sha256_digest_salted", "36")
    c = median_ns("route_latency", "compress256_x1", "36")
    table(["route_request", "SaltedHasher::bucket", "Sha256::digest (salt block + id)",
           "compress256 floor", "route / digest", "route / bucket", "route / floor"],
          [[ns(r), ns(b), ns(d), f"{ns(c)} (x1)", ratio(r, d), ratio(r, b), ratio(r, c)]])


def ffi_route() -> None:
    print("### ffi_route (pgate_route called from Rust)\n")
    rows = []
    for n in ID_LENGTHS:
        c = median_ns("ffi_route", "pgate_route", str(n))
        call = median_ns("ffi_route", "route_request_bytes_call", str(n))
        inlined = median_ns("ffi_route", "route_request_bytes", str(n))
        diff = lambda a, b: "–" if a is None or b is None else f"{a - b:+.1f} ns"
        rows.append([f"{n} B", ns(c), ns(call), ns(inlined), diff(c, call), diff(c, inlined)])
    table(["id", "pgate_route", "Rust, behind a call", "Rust, inlined", "C ABI - call",
           "C ABI - inlined"], rows)


def record() -> None:
    print("### record (one thread; 1024 latencies cycled, 200 µs ..= 2 s)\n")
    base = median_ns("record", "hdrhistogram_record")
    rows = []
    for function, case in [("record_outcome", "stable_success"), ("record_outcome", "stable_failure"),
                           ("record_outcome", "canary_success"), ("record_outcome", "canary_failure"),
                           ("pgate_record", "canary_success")]:
        m = median_ns("record", function, case)
        rows.append([f"{function} {case}", ns(m), ratio(m, base), per_core_second(m)])
    rows.append(["hdrhistogram::Histogram::record (baseline)", ns(base), "1.00x", per_core_second(base)])
    table(["subject", "median", "/ hdrhistogram", "records per core-second"], rows)


def health() -> None:
    print("### health (monitor_canary_health, full 300 s window)\n")
    rows = []
    for threads in (1, 4, 16):
        m = median_ns("health", "monitor_canary_health", f"{threads}_threads")
        rows.append([f"{threads}", ns(m)])
    table(["recording threads", "median"], rows)


def writes() -> None:
    print("### writes (route_request, 36-byte ids, one reader thread)\n")
    base = median_ns("writes", "route_request_36", "no_writer")
    rows = []
    for case in ("no_writer", "flag_toggle_every_1ms", "config_swap_every_1ms",
                 "rollback_or_promote_every_1ms"):
        m = median_ns("writes", "route_request_36", case)
        rows.append([case, ns(m), ratio(m, base)])
    table(["writer", "median per route", "/ no writer"], rows)


def scaling() -> None:
    print("### scaling (each thread does the same number of operations; wall time)\n")
    rows = []
    speedups = {}
    for function in ("route_request_36", "compress256_x1", "record_outcome", "hdrhistogram_record"):
        one = median_ns("scaling", function, "1")
        two = median_ns("scaling", function, "2")
        t1 = None if one is None else 1e3 / one
        t2 = None if two is None else 2e3 / two
        speedups[function] = None if t1 is None or t2 is None else t2 / t1
        speedup = "–" if speedups[function] is None else f"{speedups[function]:.2f}x"
        rows.append([function, "–" if t1 is None else f"{t1:.1f} M/s",
                     "–" if t2 is None else f"{t2:.1f} M/s", speedup])
    table(["operation", "1 thread", "2 threads", "speed-up"], rows)
    for subject, baseline in (("route_request_36", "compress256_x1"),
                              ("record_outcome", "hdrhistogram_record")):
        s, b = speedups[subject], speedups[baseline]
        if s is not None and b is not None:
            print(f"{subject}: speed-up {s:.2f}x, {s / b:.2f} of its baseline's {b:.2f}x")
    print()


def main() -> int:
    if not CRITERION.exists():
        print(f"no criterion results under {CRITERION}: run `cargo bench` first", file=sys.stderr)
        return 1
    for section in (route, route_latency, ffi_route, record, health, writes, scaling):
        section()
    return 0


if __name__ == "__main__":
    sys.exit(main())
