"""The Prometheus exposition, the latency histograms and the log callback through the binding."""

from __future__ import annotations

import base64
import dataclasses
import math
import struct
import zlib
from ctypes import byref, c_size_t, c_void_p

import pytest
from conftest import canary

from promotion_gates import (
    Forced,
    Gate,
    InvalidArgumentError,
    LogLevel,
    OutcomeCounts,
    Recorded,
    Status,
    _ffi,
    latency_histograms,
    metrics_prometheus,
    metrics_prometheus_counted,
    set_log_callback,
)

# HdrHistogram's V2 cookies: the compressed envelope and the encoding inside it.
V2_COMPRESSED = 0x1C849314
V2_ENCODING = 0x1C849313


def _v2_total_count(encoded: str) -> int:
    """The number of samples in a compressed V2 histogram, decoded by hand: zlib, then the
    40-byte header, then ZigZag LEB128 counts (a negative one is a run of empty buckets)."""
    raw = base64.b64decode(encoded)
    cookie, length = struct.unpack(">iI", raw[:8])
    assert cookie == V2_COMPRESSED
    inner = zlib.decompress(raw[8 : 8 + length])
    cookie, payload_len = struct.unpack(">iI", inner[:8])
    assert cookie == V2_ENCODING
    payload = inner[40 : 40 + payload_len]
    total, value, shift = 0, 0, 0
    for byte in payload:
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte & 0x80:
            continue
        count = (value >> 1) ^ -(value & 1)
        total += max(count, 0)
        value, shift = 0, 0
    return total


def test_the_exposition_names_each_gate_and_counts_a_rollback() -> None:
    with Gate(canary(50, gate="web")) as web, Gate({"gate": "api"}) as api:
        before = metrics_prometheus(web, api)
        assert before.count("# TYPE promotion_health_score gauge") == 1
        assert 'promotion_health_score{gate="web"}' in before
        assert 'promotion_health_score{gate="api"}' in before
        manual = 'promotion_rollbacks_total{gate="web",trigger="manual",rule="none"}'
        assert f"{manual} 0\n" in before
        web.rollback("bad deploy")
        assert f"{manual} 1\n" in metrics_prometheus(web)
        assert metrics_prometheus() == ""


def test_two_gates_of_one_name_are_refused_by_the_binding_and_the_library() -> None:
    with Gate(canary(5, gate="web")) as web, Gate(canary(50, gate="web")) as twin:
        assert (web.name(), twin.name()) == ("web", "web")
        with pytest.raises(InvalidArgumentError, match=r"gates\[1\] is named 'web', as gates\[0\]"):
            metrics_prometheus(web, twin)
        with pytest.raises(InvalidArgumentError, match=r"gates\[0\] and gates\[1\] are the same gate"):
            metrics_prometheus(web, web)
        # The library refuses them too, whoever calls it.
        handles = (c_void_p * 2)(web._handle, twin._handle)
        length = c_size_t()
        status = _ffi.lib().pgate_metrics_prometheus_gates(handles, 2, None, 0, byref(length))
        assert status == Status.INVALID_ARGUMENT


def _parsed(text: str) -> tuple[list[str], list[tuple[str, str, float]]]:
    """An exposition's ``#`` lines, and its samples as (family, series, value)."""
    families, samples = [], []
    for line in text.splitlines():
        if line.startswith("#"):
            families.append(line)
        elif line:
            series, value = line.rsplit(" ", 1)
            samples.append((series.split("{", 1)[0], series, float(value)))
    return families, samples


def test_a_hosts_counts_replace_the_four_outcome_counters_and_nothing_else() -> None:
    overrides = {"header": "X-Canary", "canary_ids": ["tester"]}
    with Gate(canary(50, gate="web", overrides=overrides)) as web, Gate(
        {"gate": "api", "environment": "staging"}
    ) as api:
        # The gate's own counts: one forced outcome, one foreign, one forcing value ignored.
        assert web.record(web.route("tester"), success=True, latency_ns=1000) == Recorded.FORCED
        routed = web.route("u")
        foreign = dataclasses.replace(routed, stage=routed.stage + 1)
        assert web.record(foreign, success=True, latency_ns=1000) == Recorded.FOREIGN
        assert web.route_forced("u", "nope").forced == Forced.NONE
        four = {  # family: (the host's count, the gate's own)
            "promotion_late_outcomes_total": (11.0, 0.0),
            "promotion_foreign_outcomes_total": (12.0, 1.0),
            "promotion_forced_outcomes_total": (13.0, 1.0),
            "promotion_ignored_override_values_total": (14.0, 1.0),
        }
        host = OutcomeCounts(
            late_outcomes=11, foreign_outcomes=12, forced_outcomes=13, ignored_override_values=14
        )
        families, samples = _parsed(
            metrics_prometheus_counted(web, api, counts=[host, OutcomeCounts()])
        )
        own_families, own_samples = _parsed(metrics_prometheus(web, api))
        assert families == own_families
        assert [s[:2] for s in samples] == [s[:2] for s in own_samples]
        for (family, series, value), (_, _, own) in zip(samples, own_samples):
            if family in four and 'gate="web"' in series:
                assert (value, own) == four[family], series
            elif family in four:
                assert (value, own) == (0.0, 0.0), series
            else:  # no series here reads the clock: the rest is the gates' own, unchanged
                assert value == own or (math.isnan(value) and math.isnan(own)), series
        # The largest count is taken, and served as a float, as Prometheus reads it.
        most = OutcomeCounts(late_outcomes=2**64 - 1)
        _, served = _parsed(metrics_prometheus_counted(web, counts=(most,)))
        late = 'promotion_late_outcomes_total{gate="web"}'
        assert [v for _, series, v in served if series == late] == [float(2**64 - 1)]
        same = r"gates\[0\] and gates\[1\] are the same gate"
        with pytest.raises(InvalidArgumentError, match=same):
            metrics_prometheus_counted(web, web, counts=[host, host])
        assert metrics_prometheus_counted(counts=[]) == ""


def test_a_host_counts_a_forced_abandoned_request_as_the_gate_does() -> None:
    """A host counting outcomes itself (gunicorn's workers) could not tell what
    ``record_abandoned`` did with a request (a bool): the gate counted a forced request whose
    client left after the latency target FORCED, and the host's shared counter stayed 0."""
    shared = [0, 0, 0, 0]  # late, foreign, forced, ignored: the workers' shared memory
    slot = {Recorded.LATE: 0, Recorded.FOREIGN: 1, Recorded.FORCED: 2}
    overrides = {"header": "X-Canary"}
    with Gate(canary(10, overrides=overrides), {"latency_target_ms": 250}) as gate:
        d = gate.route_forced("u", "canary")
        assert d.forced is Forced.VALUE
        assert gate.record_abandoned_as(d, waited_ns=100_000_000) is None  # within the target
        as_recorded = gate.record_abandoned_as(d, waited_s=10)
        assert as_recorded is Recorded.FORCED
        shared[slot[as_recorded]] += 1
        counted = metrics_prometheus_counted(gate, counts=[OutcomeCounts(*shared)])
        own = metrics_prometheus(gate)
        forced = 'promotion_forced_outcomes_total{gate="default"} 1\n'
        assert forced in own and forced in counted
        # Counted, late and foreign too, as record() says them.
        assert gate.record_abandoned_as(gate.route_forced("u", None), 10) is Recorded.COUNTED
        late = dataclasses.replace(d, forced=Forced.NONE)
        gate.enable_feature("next")  # a new stage: the decision's has ended
        assert gate.record_abandoned_as(late, waited_s=10) is Recorded.LATE
        foreign = dataclasses.replace(late, stage=late.stage + 10)
        assert gate.record_abandoned_as(foreign, waited_s=10) is Recorded.FOREIGN
        assert gate.record_abandoned(foreign, waited_s=10) is True


def test_a_hosts_counts_are_checked_before_the_library_is_called() -> None:
    def not_called() -> None:
        raise AssertionError("the library was called")

    one = OutcomeCounts()
    cases: list[tuple[object, str]] = [
        ([one], "invalid len(counts) = 1: one OutcomeCounts per gate (gates: 2)"),
        ([one, one, one], "invalid len(counts) = 3: one OutcomeCounts per gate (gates: 2)"),
        ([one, None], "invalid counts[1] = None: an OutcomeCounts, not NoneType"),
        (
            [one, {"late_outcomes": 1}],
            "invalid counts[1] = {'late_outcomes': 1}: an OutcomeCounts, not dict",
        ),
        (
            [OutcomeCounts(late_outcomes=-1), one],
            "invalid counts[0].late_outcomes = -1: an integer from 0 to 2**64 - 1",
        ),
        (
            [one, OutcomeCounts(ignored_override_values=2**64)],
            "invalid counts[1].ignored_override_values = 18446744073709551616: "
            "an integer from 0 to 2**64 - 1",
        ),
        (
            [OutcomeCounts(forced_outcomes=1.0), one],  # type: ignore[arg-type]
            "invalid counts[0].forced_outcomes = 1.0: not an integer",
        ),
        (
            [OutcomeCounts(foreign_outcomes=True), one],
            "invalid counts[0].foreign_outcomes = True: an integer, not bool",
        ),
        (
            one,
            "invalid counts = OutcomeCounts(late_outcomes=0, foreign_outcomes=0, "
            "forced_outcomes=0, ignored_override_values=0): a sequence of OutcomeCounts, "
            "not OutcomeCounts",
        ),
        (None, "invalid counts = None: a sequence of OutcomeCounts, not NoneType"),
    ]
    with Gate({"gate": "web"}) as web, Gate({"gate": "api"}) as api:
        patch = pytest.MonkeyPatch()
        patch.setattr(_ffi, "lib", not_called)
        try:
            for counts, message in cases:
                with pytest.raises(InvalidArgumentError) as refused:
                    metrics_prometheus_counted(web, api, counts=counts)  # type: ignore[arg-type]
                assert refused.value.message == message
            with pytest.raises(InvalidArgumentError, match=r"^invalid gates\[1\] = None: a Gate"):
                metrics_prometheus_counted(web, None, counts=[one, one])  # type: ignore[arg-type]
        finally:
            patch.undo()  # before the gates are closed, which the library does


def test_each_cohorts_histogram_holds_what_was_recorded() -> None:
    with Gate(canary(50)) as gate:
        n = 250
        for i in range(n):
            gate.record_by_id(f"user-{i}", success=True, latency_s=0.001 * (1 + i % 20))
        document = latency_histograms(gate)
        assert document["encoding"] == "hdrhistogram-v2-deflate-base64"
        assert document["unit"] == "microseconds"
        canary_n = _v2_total_count(document["canary"])
        stable_n = _v2_total_count(document["stable"])
        assert canary_n + stable_n == n
        assert canary_n > 0 and stable_n > 0


def test_log_lines_reach_the_callback_up_to_its_level() -> None:
    lines: list[tuple[LogLevel, str, str]] = []
    def collect(level: LogLevel, target: str, message: str) -> None:
        lines.append((level, target, message))

    try:
        set_log_callback(collect)
        with Gate({"environment": "staging", "gate": "checkout"}) as gate:
            gate.enable_feature("dark_mode")
            assert (LogLevel.INFO, "Feature flag enabled: dark_mode") in [
                (level, message.split(" feature=")[0]) for level, _, message in lines
            ]
            set_log_callback(collect, LogLevel.WARN)
            lines.clear()
            gate.enable_feature("other")
            assert lines == []
            gate.rollback("bad deploy")
            assert any(level == LogLevel.ERROR and "bad deploy" in m for level, _, m in lines)
    finally:
        set_log_callback(None)
