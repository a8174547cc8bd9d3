"""The Prometheus exposition, the latency histograms and the log callback through the binding."""

from __future__ import annotations

import base64
import struct
import zlib
from ctypes import byref, c_size_t, c_void_p

import pytest
from conftest import canary

from promotion_gates import (
    Gate,
    InvalidArgumentError,
    LogLevel,
    Status,
    _ffi,
    latency_histograms,
    metrics_prometheus,
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
