"""Every failure becomes the exception of its concern, with the library's message."""

from __future__ import annotations

import dataclasses
import json
import numbers
import operator
import os
import random
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from ctypes import c_void_p
from typing import Any

import pytest
from conftest import PYTHON_DIR, REPO, canary, latency_vectors, run_child

import promotion_gates as pg
from promotion_gates import Environment, Gate, Recorded, Status, _ffi, telemetry
from promotion_gates._arguments import (
    INVISIBLE,
    MAX_DOCUMENT_BYTES,
    MAX_SHOWN_VALUE_BYTES,
    _as_dumped,
    document,
    latency_ns,
    member,
    shown,
)
from promotion_gates.errors import _check, error_class, interrupted

#: 10**400 as a refused value is shown: its first 160 digits, then its length.
HUGE_SHOWN = "1" + "0" * 159 + "...(401 bytes)"


@pytest.mark.parametrize(
    "config, slo, field",
    [
        (canary(120.0), None, "environment.canary.traffic_percent"),
        (canary(-1), None, "environment.canary.traffic_percent"),
        ({"slo_threshold": 7}, None, "slo_threshold"),
        ({"rollback_window_seconds": 0}, None, "rollback_window_seconds"),
        ({"gate": ""}, None, "gate"),
        ({"salt": "a b"}, None, "salt"),
        ({"max_rollback_history": 0}, None, "max_rollback_history"),
        ({"feature_flags": ["a", "a"]}, None, "feature_flags[1]"),
        ({"feature_flags": ["x"], "graduated_flags": ["x"]}, None, "graduated_flags[0]"),
        (None, {"max_error_rate": 1.5}, "max_error_rate"),
        (None, {"latency_target_ms": 0}, "latency_target_ms"),
        (None, {"min_samples": 0}, "min_samples"),
        (None, {"significance": 0.7}, "significance"),
    ],
)
def test_invalid_config_names_the_field(config: Any, slo: Any, field: str) -> None:
    with pytest.raises(pg.InvalidConfigError) as caught:
        Gate(config, slo)
    e = caught.value
    assert e.status is Status.INVALID_CONFIG
    assert field in e.message and field in str(e)
    assert isinstance(e, ValueError) and isinstance(e, pg.PromotionGatesError)


@pytest.mark.parametrize(
    "config, slo, needle",
    [
        ("{not json", None, "line 1"),
        ({"slo_treshold": 0.9}, None, "slo_treshold"),
        ({"environment": "nowhere"}, None, "nowhere"),
        (None, '{"latency_target": 5}', "latency_target"),
        (b'{"gate": 5}', None, "gate: invalid type: integer `5`, expected a string"),
        ({"environment": {"canary": {"traffic_percent": "x"}}}, None, "environment.canary."),
        (None, {"min_samples": -1}, "min_samples: invalid value"),
        ("[]", None, "must be a JSON object"),
    ],
)
def test_invalid_json_says_where(config: Any, slo: Any, needle: str) -> None:
    with pytest.raises(pg.InvalidJsonError) as caught:
        Gate(config, slo)
    assert caught.value.status is Status.INVALID_JSON
    assert needle in caught.value.message


def test_a_json_error_says_what_is_wrong_once() -> None:
    for config, slo in ((b'{"gate": 5}', None), (None, b'{"min_samples": -1}')):
        with pytest.raises(pg.InvalidJsonError) as caught:
            Gate(config, slo)
        assert caught.value.message.count("invalid JSON") == 1, caught.value.message


def test_an_empty_document_means_the_defaults() -> None:
    with Gate("", b"") as gate:
        assert gate.config["gate"] == "default"


@pytest.mark.parametrize(
    "config, slo, message",
    [
        (42, None, "invalid config = 42: a dict or a JSON string, not int"),
        (None, [], "invalid slo = []: a dict or a JSON string, not list"),
        ('{"gate": "\ud800"}', None, "invalid config = '{\"gate\": \"\\ud800\"}': not UTF-8: a lone surrogate at index 10"),
        ({"gate": {1, 2}}, None, "invalid config = {'gate': {1, 2}}: not JSON: Object of type set is not JSON serializable"),
    ],
)
def test_a_document_of_the_wrong_kind_names_its_field(config: Any, slo: Any, message: str) -> None:
    with pytest.raises(pg.InvalidArgumentError) as caught:
        Gate(config, slo)
    assert caught.value.message == message


NOT_UTF8 = "invalid {} = \"\\xff\": {} is not valid UTF-8 (invalid byte at offset 0)"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: Gate(b"\xff"), NOT_UTF8.format("config", "config")),
        (lambda: Gate(None, b"\xff"), NOT_UTF8.format("slo", "SLO config")),
        (lambda: pg.store_location(b"\xff"), NOT_UTF8.format("config", "config")),
        (lambda: pg.document_gate_name(b"\xff"), NOT_UTF8.format("config", "config")),
        (lambda: pg.document_fleet_judging(b"\xff"), NOT_UTF8.format("config", "config")),
        (lambda: Gate().swap_config(b"\xff"), NOT_UTF8.format("config", "config")),
        (lambda: Gate().swap_config_from(0, b"\xff"), NOT_UTF8.format("config", "config")),
        (lambda: Gate().swap_slo(b"\xff"), NOT_UTF8.format("slo", "SLO config")),
    ],
)
def test_a_document_the_library_refuses_names_the_python_parameter(
    call: Callable[[], object], message: str
) -> None:
    """The library's message named its C parameter (config_json, slo_json, json), which a
    Python caller never saw."""
    with pytest.raises(pg.InvalidArgumentError, match=re.escape(message)) as caught:
        call()
    assert caught.value.message == message


def test_promotions_refused_by_the_state_machine() -> None:
    with Gate() as gate:  # Production
        with pytest.raises(pg.InvalidPromotionError, match="Production -> Staging"):
            gate.promote(Environment.STAGING)
        with pytest.raises(pg.AlreadyThereError, match="already in Production") as caught:
            gate.promote(Environment.PRODUCTION)
        assert isinstance(caught.value, pg.InvalidPromotionError)
        with pytest.raises(pg.InvalidConfigError, match="environment.canary.traffic_percent"):
            gate.promote(Environment.CANARY, float("nan"))
        with pytest.raises(pg.InvalidConfigError, match="environment.canary.traffic_percent"):
            gate.promote(Environment.CANARY, 100.5)
        with pytest.raises(ValueError):
            gate.promote(7)  # type: ignore[arg-type]  # not an Environment
        with pytest.raises(pg.InvalidArgumentError, match="invalid percent = None: a canary takes"):
            gate.promote(Environment.CANARY)  # no percentage: never Canary 0 %
        assert gate.config["environment"] == "production", "a refused promotion changes nothing"


def test_gated_promotion_without_data_is_refused() -> None:
    with Gate(canary(1.0)) as gate:
        with pytest.raises(pg.InsufficientDataError, match="not enough data") as caught:
            gate.promote(Environment.CANARY, 5.0)  # ramping up is gated
        assert isinstance(caught.value, pg.PromotionRefusedError)
        assert caught.value.status is Status.INSUFFICIENT_DATA
        assert "0 of 100 canary samples" in caught.value.message
        gate.promote(Environment.CANARY, 0.5)  # ramping down is not
        assert gate.config["environment"] == {"canary": {"traffic_percent": 0.5}}


def test_gated_promotion_of_a_slow_canary_is_refused() -> None:
    slo = {"latency_target_ms": 10, "min_samples": 20, "warm_up_ms": 0, "promotion_evidence": False}
    with Gate(canary(100.0, auto_rollback_enabled=False), slo) as gate:
        for i in range(200):
            d = gate.route(f"user-{i}")
            assert gate.record(d, True, latency_s=0.5) is pg.Recorded.COUNTED  # all too slow
        with pytest.raises(pg.SloNotMetError, match="SLO compliance below threshold") as caught:
            gate.promote(Environment.STAGING)
        assert isinstance(caught.value, pg.PromotionRefusedError)
        assert caught.value.status is Status.SLO_NOT_MET
        assert gate.config["environment"] == {"canary": {"traffic_percent": 100.0}}
        assert gate.check_slo() is False


def test_promote_from_a_stage_the_gate_left_is_refused() -> None:
    """A ramp loop's look, then a rollback before its promotion: promote_from refuses it
    rather than start a new rollout of the build rolled back."""
    with Gate(canary(10.0)) as gate:
        looked = gate.state().stage
        gate.rollback("the judge, another thread or another process")
        with pytest.raises(pg.StageChangedError) as caught:
            gate.promote_from(looked, Environment.CANARY, 25)
        e = caught.value
        assert isinstance(e, pg.PromotionRefusedError)
        assert e.status is Status.STAGE_CHANGED
        assert f"the gate left stage {looked}" in e.message, e.message
        assert "nothing was promoted" in e.message
        now = gate.state()
        assert now.environment is Environment.PRODUCTION and now.stage != looked
        assert gate.config["environment"] == "production", "a refused promotion changes nothing"

        # From the stage it is in, promote_from is promote; a decision's stage serves as well.
        gate.promote_from(now.stage, Environment.CANARY, 25)
        decision = gate.route("u")
        assert gate.config["environment"] == {"canary": {"traffic_percent": 25.0}}
        assert decision.stage != now.stage
        gate.promote_from(decision.stage, Environment.CANARY, 5.0)  # ramping down is not gated
        with pytest.raises(pg.StageChangedError):
            gate.promote_from(decision.stage, Environment.CANARY, 1.0)
        # From the stage it is in, its other refusals are promote's (a bad argument is
        # refused first, whatever the stage).
        stage = gate.state().stage
        with pytest.raises(pg.InsufficientDataError):
            gate.promote_from(stage, Environment.CANARY, 50.0)
        with pytest.raises(pg.InvalidConfigError, match="environment.canary.traffic_percent"):
            gate.promote_from(stage, Environment.CANARY, 100.5)
        assert gate.state().stage == stage


def _read_to_edit(gate: Gate) -> tuple[int, dict[str, Any]]:
    """A hot reload's read: the change count first, then the config, edited."""
    seen = gate.change_count()
    config = gate.config
    config["feature_flags"] = [*config["feature_flags"], "wide_layout"]
    return seen, config


def _refused_as_changed(gate: Gate, seen: int, config: dict[str, Any]) -> None:
    before = gate.config
    with pytest.raises(pg.GateChangedError) as caught:
        gate.swap_config_from(seen, config)
    e = caught.value
    assert not isinstance(e, pg.PromotionRefusedError)
    assert e.status is Status.GATE_CHANGED
    now = gate.change_count()
    assert now > seen
    assert f"the gate changed since change {seen} (now {now}: " in e.message, e.message
    assert e.message.endswith("read its config again"), e.message
    assert gate.config == before, "a refused swap changes nothing"
    assert not gate.is_feature_enabled("wide_layout")


def test_swap_config_from_a_count_before_a_rollback_is_refused() -> None:
    """A hot reload reads the change count, then the config, and edits it; a rollback comes
    before its swap: swap_config_from refuses it rather than put the rolled-back canary back."""
    with Gate(canary(10.0)) as gate:
        seen, config = _read_to_edit(gate)
        gate.rollback("the judge, another thread or another process")
        _refused_as_changed(gate, seen, config)
        assert gate.state().environment is Environment.PRODUCTION

        # From the count it is at, swap_config_from is swap_config.
        seen, config = _read_to_edit(gate)
        gate.swap_config_from(seen, config)
        assert gate.is_feature_enabled("wide_layout")
        assert gate.state().environment is Environment.PRODUCTION
        assert gate.change_count() == seen + 1
        # From the count it is at, its other refusals are swap_config's.
        seen = gate.change_count()
        with pytest.raises(pg.InvalidConfigError, match="slo_threshold"):
            gate.swap_config_from(seen, {**config, "slo_threshold": 2})
        with pytest.raises(pg.InvalidJsonError):
            gate.swap_config_from(seen, "[")
        assert gate.change_count() == seen and gate.is_feature_enabled("wide_layout")


def test_swap_config_from_a_count_before_a_kill_switch_is_refused() -> None:
    """A flag turned off after the read (a kill switch: no new stage) stays off.

    In Canary, where turning a flag on begins a stage.
    """
    with Gate({"environment": {"canary": {"traffic_percent": 10}}}) as gate:
        initial = gate.state().stage
        gate.enable_feature("dark_mode")
        assert gate.state().stage != initial, "in Canary a flag turned on begins a stage"
        seen, config = _read_to_edit(gate)
        stage = gate.state().stage
        gate.disable_feature("dark_mode")
        assert gate.state().stage == stage
        _refused_as_changed(gate, seen, config)
        assert not gate.is_feature_enabled("dark_mode"), "the flag stays off"


def test_swap_config_from_a_count_before_an_slo_swap_is_refused() -> None:
    """An SLO swap changes no config, yet it counts."""
    with Gate() as gate:
        seen, config = _read_to_edit(gate)
        gate.swap_slo({})
        _refused_as_changed(gate, seen, config)


@pytest.mark.parametrize("name", ["a b", "", "n" * 129, "tab\there"])
def test_a_name_no_flag_can_have_is_refused_as_enable_feature_refuses_it(name: str) -> None:
    """is_feature_enabled refused it as INVALID_ARGUMENT, and enable_feature as INVALID_FLAG."""
    with Gate({"feature_flags": ["on"]}) as gate:
        with pytest.raises(pg.InvalidFlagError) as enabled:
            gate.enable_feature(name)
        with pytest.raises(pg.InvalidFlagError) as caught:
            gate.is_feature_enabled(name)
        assert caught.value.status is enabled.value.status is Status.INVALID_FLAG
        assert caught.value.message == f"invalid name = {shown(name)}: {NOT_A_FLAG_NAME}"
        assert gate.is_feature_enabled("on"), "the gate is unchanged"


def test_flag_errors() -> None:
    with Gate() as gate:
        with pytest.raises(pg.InvalidFlagError, match="has space") as bad:
            gate.enable_feature("has space")
        with pytest.raises(pg.InvalidFlagError, match="must not be empty"):
            gate.enable_feature("")
        with pytest.raises(pg.FlagNotEnabledError, match="nope") as off:
            gate.disable_feature("nope")
        for e in (bad.value, off.value):
            assert isinstance(e, pg.FlagError)
        assert bad.value.status is Status.INVALID_FLAG
        assert off.value.status is Status.FLAG_NOT_ENABLED


def test_rollback_refusals() -> None:
    with Gate() as gate:
        with pytest.raises(pg.RollbackRefusedError, match="nothing to roll back"):
            gate.rollback("drill")
    with Gate(canary(10)) as gate:
        for reason, quoted in [("", '""'), ("   ", '"   "'), ("\u200b", '"\\u{200b}"')]:
            with pytest.raises(pg.RollbackRefusedError) as caught:
                gate.rollback(reason)
            assert caught.value.message.startswith(f"invalid reason = {quoted}: a rollback must say why")
        assert gate.rollback_history() == []
        gate.rollback("drill")


#: The one text every binding gives a bad latency, from the shared vectors (C++, Go and Lua
#: read the same file).
LATENCY_RULE = next(e for _, e in latency_vectors() if not e.isdigit()).split(": ", 1)[1]


@pytest.mark.parametrize(
    "kwargs, shown",
    [
        ({"latency_s": -1.0}, "-1.0 s"),
        ({"latency_s": -1e-12}, "-1e-12 s"),
        ({"latency_s": float("nan")}, "nan s"),
        ({"latency_s": float("inf")}, "inf s"),
        ({"latency_s": float("-inf")}, "-inf s"),
        ({"latency_s": 1e300}, "1e+300 s"),
        ({"latency_s": 18446744074.0}, "18446744074.0 s"),
        ({"latency_s": 10**400}, f"{HUGE_SHOWN} s"),
        ({"latency_ns": -1}, "-1 ns"),
        ({"latency_ns": 1 << 64}, "18446744073709551616 ns"),
        ({"latency_ns": float("nan")}, "nan ns"),
        ({"latency_ns": -0.5}, "-0.5 ns"),
    ],
)
def test_a_bad_latency_is_one_error(kwargs: dict[str, Any], shown: str) -> None:
    with Gate(canary(50)) as gate:
        d = gate.route("u")
        before = gate.health().canary_requests + gate.health().production_requests
        calls: list[Callable[[], object]] = [
            lambda: gate.record(d, True, **kwargs),
            lambda: gate.record_by_id("u", True, **kwargs),
        ]
        for call in calls:
            with pytest.raises(pg.InvalidArgumentError) as caught:
                call()
            assert caught.value.status is Status.INVALID_ARGUMENT
            assert caught.value.message == f"invalid latency = {shown}: {LATENCY_RULE}"
        assert gate.health().canary_requests + gate.health().production_requests == before


@pytest.mark.parametrize(
    "ns, rounded", [(0.5, 1), (1.5, 2), (2.5, 3), (2.4999, 2), (3.5, 4), (1e6 + 0.5, 1_000_001)]
)
def test_a_latency_rounds_half_a_nanosecond_up_as_cpp_and_lua_do(ns: float, rounded: int) -> None:
    assert latency_ns(None, ns) == rounded


@pytest.mark.parametrize("ns, expect", latency_vectors())
def test_the_shared_latency_vectors(ns: int | float, expect: str) -> None:
    with Gate(canary(50)) as gate:
        d = gate.route("u")
        if expect.isdigit():
            assert latency_ns(None, ns) == int(expect)
            assert gate.record(d, True, latency_ns=ns) is Recorded.COUNTED
            return
        with pytest.raises(pg.InvalidArgumentError) as caught:
            gate.record(d, True, latency_ns=ns)
        assert caught.value.status is Status.INVALID_ARGUMENT
        assert caught.value.message == expect
        assert gate.health().canary_requests + gate.health().production_requests == 0


class Int64:
    """An integer that is no int, as numpy's ``int64`` and ``uint64`` are: a
    ``numbers.Integral`` with ``__index__``."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"Int64({self.value})"


numbers.Integral.register(Int64)


class BigInt(int):
    """An int subclass (``int(…)`` of it is exact; ``float(…)`` is not past 2**53)."""


def test_an_integer_of_any_kind_is_taken_exactly() -> None:
    # Through float, 2**53 + 1 was 2**53, and 2**64 - 1 was 2**64, refused.
    exact: list[BigInt | Int64] = [BigInt(2**53 + 1), Int64(2**53 + 1), Int64(2**64 - 1)]
    for value in exact:
        assert latency_ns(None, value) == operator.index(value)
    refused: list[BigInt | Int64] = [BigInt(2**64), Int64(-1)]
    for value in refused:
        with pytest.raises(pg.InvalidArgumentError, match="a latency must be finite"):
            latency_ns(None, value)
    # An environment's number given as numpy's int64(0) is the member 0, not refused as
    # "one of [0, 1, 2]".
    assert member(Environment, "environment", Int64(0)) == Environment.CANARY
    with Gate() as gate:  # in Production: a new canary is not gated
        gate.promote(Int64(0), 5)  # type: ignore[arg-type]
        assert gate.state().environment is Environment.CANARY
        with pytest.raises(pg.InvalidArgumentError) as caught:
            gate.promote(Int64(7), None)  # type: ignore[arg-type]
        assert caught.value.message == "invalid environment = Int64(7): one of [0, 1, 2]"


class NumpyBool:
    """What numpy's ``True_`` is to a message: an object of type ``numpy.bool``."""

    def __repr__(self) -> str:
        return "np.True_"


NumpyBool.__module__ = "numpy"
NumpyBool.__name__ = NumpyBool.__qualname__ = "bool"


def test_a_bool_that_is_not_pythons_is_refused_saying_what_is_expected() -> None:
    with Gate(canary(50)) as gate:
        with pytest.raises(pg.InvalidArgumentError) as caught:
            gate.record(gate.route("u"), NumpyBool(), 0.1)  # type: ignore[arg-type]
    # It said "a bool, not bool".
    assert caught.value.message == (
        "invalid success = np.True_: True or False (a Python bool), not numpy.bool"
    )


def test_latency_edges_and_argument_errors() -> None:
    with Gate(canary(50)) as gate:
        d = gate.route("u")
        assert gate.record(d, True, latency_ns=(1 << 64) - 1) is Recorded.COUNTED
        assert gate.record(d, True, latency_s=0.0) is Recorded.COUNTED
        assert gate.record(d, True, latency_s=18446744073.0) is Recorded.COUNTED
        assert gate.record(d, True, latency_ns=1.5e6) is Recorded.COUNTED
        with pytest.raises(pg.InvalidArgumentError, match="invalid latency_s = None with latency_ns = None: give exactly one"):
            gate.record(d, True)
        with pytest.raises(pg.InvalidArgumentError, match="invalid latency_s = 0.1 with latency_ns = 5: give exactly one"):
            gate.record(d, True, 0.1, latency_ns=5)
        with pytest.raises(pg.InvalidArgumentError, match="invalid latency_s = '0.1': a number, not str"):
            gate.record(d, True, "0.1")  # type: ignore[arg-type]
        with pytest.raises(pg.InvalidArgumentError, match="invalid request_id = 5: bytes or a str, not int"):
            gate.route(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("stage", (1 << 64) + 1, "invalid stage = 18446744073709551617: an integer from 0 to 2**64 - 1"),
        ("stage", -1, "invalid stage = -1: an integer from 0 to 2**64 - 1"),
        ("stage", 1.0, "invalid stage = 1.0: not an integer"),
        ("stage", True, "invalid stage = True: an integer, not bool"),
        ("bucket", 1 << 32, "invalid bucket = 4294967296: an integer from 0 to 2**32 - 1"),
        ("threshold", -5, "invalid threshold = -5: an integer from 0 to 2**32 - 1"),
        ("flag_set", (1 << 32) + 1, "invalid flag_set = 4294967297: an integer from 0 to 2**32 - 1"),
        ("traffic_percent", 10**400, f"invalid traffic_percent = {HUGE_SHOWN}: not a number a float holds"),
        ("environment", 7, "invalid environment = 7: one of [0, 1, 2]"),
        ("environment", True, "invalid environment = True: one of [0, 1, 2], an integer or a member of Environment, not bool"),
        # equal to the member 1, but no member's number (kind(1.0) is the member)
        ("environment", 1.0, "invalid environment = 1.0: one of [0, 1, 2], an integer or a member of Environment, not float"),
        ("forced", 0.0, "invalid forced = 0.0: one of [0, 1, 2], an integer or a member of Forced, not float"),
        # bool() would read these as True: a stable decision counted as the canary's
        ("is_canary", "no", "invalid is_canary = 'no': True or False (a Python bool), not str"),
        ("is_canary", 2, "invalid is_canary = 2: True or False (a Python bool), not int"),
        ("is_canary", None, "invalid is_canary = None: True or False (a Python bool), not NoneType"),
    ],
)
def test_a_decision_built_by_hand_is_range_checked(field: str, value: Any, message: str) -> None:
    with Gate(canary(50)) as gate:
        d = gate.route("u")
        forged = dataclasses.replace(d, **{field: value})
        calls: list[Callable[[], object]] = [lambda: gate.record(forged, True, latency_ns=1)]
        if field == "flag_set":
            calls.append(lambda: gate.features(forged))
        for call in calls:
            with pytest.raises(pg.InvalidArgumentError) as caught:
                call()
            assert caught.value.status is Status.INVALID_ARGUMENT
            assert caught.value.message == message
        # Nothing was counted: ctypes never saw the wrapped value.
        h = gate.health()
        assert h.canary_requests + h.production_requests == 0


def test_promote_arguments_are_checked() -> None:
    with Gate() as gate:
        with pytest.raises(pg.InvalidArgumentError, match=r"invalid environment = 3: one of \[0, 1, 2\]"):
            gate.promote(3)  # type: ignore[arg-type]
        with pytest.raises(pg.InvalidArgumentError, match=r"invalid percent = 10{159}\.\.\.\(401 bytes\): "):
            gate.promote(Environment.CANARY, 10**400)
        assert gate.state().environment is Environment.PRODUCTION


def test_promote_from_arguments_are_checked() -> None:
    """ctypes would take stage 2**64 + s as s, and True as 1: each is refused first."""
    with Gate() as gate:
        stage = gate.state().stage
        cases: list[tuple[Any, str]] = [
            (-1, "invalid stage = -1: an integer from 0 to 2**64 - 1"),
            ((1 << 64) + stage, f"invalid stage = {(1 << 64) + stage}: an integer from 0 to 2**64 - 1"),
            (True, "invalid stage = True: an integer, not bool"),
            ("1", "invalid stage = '1': not an integer"),
            (float(stage), f"invalid stage = {float(stage)}: not an integer"),
        ]
        for bad, why in cases:
            with pytest.raises(pg.InvalidArgumentError) as caught:
                gate.promote_from(bad, Environment.CANARY, 10)
            assert caught.value.message == why
        with pytest.raises(pg.InvalidArgumentError, match=r"invalid environment = 3: one of \[0, 1, 2\]"):
            gate.promote_from(stage, 3)  # type: ignore[arg-type]
        with pytest.raises(pg.InvalidArgumentError, match="invalid percent = None: a canary takes"):
            gate.promote_from(stage, Environment.CANARY)
        assert gate.state().environment is Environment.PRODUCTION


def test_swap_config_from_arguments_are_checked() -> None:
    """The change count as an unsigned 64-bit integer, the config as swap_config's: each
    refused first."""
    with Gate() as gate:
        seen = gate.change_count()
        before = gate.config
        cases: list[tuple[Any, Any, str]] = [
            (-1, {}, "invalid change_count = -1: an integer from 0 to 2**64 - 1"),
            ((1 << 64) + seen, {}, f"invalid change_count = {(1 << 64) + seen}: an integer from 0 to 2**64 - 1"),
            (True, {}, "invalid change_count = True: an integer, not bool"),
            ("1", {}, "invalid change_count = '1': not an integer"),
            (float(seen), {}, f"invalid change_count = {float(seen)}: not an integer"),
            (seen, None, "invalid config = None: a dict or a JSON string, not NoneType"),
            (seen, 5, "invalid config = 5: a dict or a JSON string, not int"),
            (seen, {"overrides": {"canary_ids": ["a", -INF]}}, f"invalid overrides.canary_ids[1] = -inf: {NOT_FINITE}"),
        ]
        for bad_count, config, why in cases:
            with pytest.raises(pg.InvalidArgumentError) as caught:
                gate.swap_config_from(bad_count, config)
            assert caught.value.message == why
        assert gate.change_count() == seen and gate.config == before


@pytest.mark.parametrize("status", [s for s in Status if s is not Status.OK])
def test_every_status_has_its_exception(status: Status) -> None:
    """Statuses the API cannot provoke from Python (NULL pointer, panic, ...) included."""
    with pytest.raises(pg.PromotionGatesError) as caught:
        _check(status)
    e = caught.value
    assert type(e) is error_class(status)
    assert e.status is status
    assert e.message == f"PGATE_STATUS_{status.name}"  # no error object: the status's name


def test_exception_classes() -> None:
    assert error_class(Status.NULL_POINTER) is pg.NullPointerError
    assert error_class(Status.INVALID_ARGUMENT) is pg.InvalidArgumentError
    assert error_class(Status.INVALID_HANDLE) is pg.InvalidHandleError
    assert error_class(Status.PANIC) is pg.PanicError
    assert error_class(Status.STAGE_CHANGED) is pg.StageChangedError
    assert issubclass(pg.StageChangedError, pg.PromotionRefusedError)
    assert error_class(Status.GATE_CHANGED) is pg.GateChangedError
    assert not issubclass(pg.GateChangedError, pg.PromotionRefusedError)
    assert issubclass(pg.IndexOutOfRangeError, IndexError)
    assert issubclass(pg.GateClosedError, pg.InvalidHandleError)
    with pytest.raises(pg.PromotionGatesError, match="unknown status 99"):
        _check(99)
    _check(Status.OK)  # no exception


def test_the_error_object_is_always_freed(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = _ffi.lib()
    real_free = loaded.pgate_error_free
    freed: list[int] = []

    def counting_free(err: c_void_p) -> None:
        freed.append(err.value or 0)
        real_free(err)

    monkeypatch.setattr(loaded, "pgate_error_free", counting_free)
    with Gate() as gate:
        for _ in range(3):
            with pytest.raises(pg.InvalidFlagError):
                gate.enable_feature("a b")
        gate.enable_feature("ok")  # success: no error object
    assert len(freed) == 3 and all(freed)


def test_the_error_object_of_an_interrupted_call_is_freed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C the log callback kept while a cold call ran was raised as the call left the
    gate, before its check read and freed the error object the library wrote for a refusal:
    each such call (promote, rollback, a flag turned on or off, a config or SLO swap) leaked
    one. A rollback in Production is refused with one; the Ctrl-C comes during it."""
    loaded = _ffi.lib()
    real_free, real_rollback = loaded.pgate_error_free, loaded.pgate_rollback
    freed: list[int] = []

    def counting_free(err: c_void_p) -> None:
        freed.append(err.value or 0)
        real_free(err)

    def interrupted_rollback(*args: Any) -> int:
        status: int = real_rollback(*args)
        assert telemetry._kept(KeyboardInterrupt("during rollback"))  # as the log callback does
        return status

    monkeypatch.setattr(loaded, "pgate_error_free", counting_free)
    try:
        with Gate() as gate:
            assert gate.state().environment == Environment.PRODUCTION
            monkeypatch.setattr(loaded, "pgate_rollback", interrupted_rollback)
            with pytest.raises(KeyboardInterrupt, match="during rollback"):
                gate.rollback("x")
            assert interrupted == [] and len(freed) == 1 and all(freed), freed
            monkeypatch.setattr(loaded, "pgate_rollback", real_rollback)
            with pytest.raises(pg.RollbackRefusedError):  # the refusal the Ctrl-C came before
                gate.rollback("x")
            assert len(freed) == 2
    finally:
        interrupted.clear()


NAN, INF = float("nan"), float("inf")
NOT_FINITE = "not finite: JSON has no NaN or infinity"


def circular() -> dict[str, Any]:
    """A dict that holds itself, which JSON cannot write."""
    document: dict[str, Any] = {}
    document["gate"] = document
    return document


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Gate(canary(NAN)), f"invalid environment.canary.traffic_percent = nan: {NOT_FINITE}"),
        (lambda: Gate(slo={"latency_target_ms": INF}), f"invalid latency_target_ms = inf: {NOT_FINITE}"),
        (lambda: pg.store_location({"store": {"sqlite": {"path": "g.db", "sync_interval_ms": NAN}}}),
         f"invalid store.sqlite.sync_interval_ms = nan: {NOT_FINITE}"),
    ],
)
def test_a_document_with_nan_or_infinity_names_its_key_path(
    make: Callable[[], object], message: str
) -> None:
    with pytest.raises(pg.InvalidArgumentError) as caught:
        make()
    assert caught.value.message == message


def test_a_nan_share_is_named_as_the_library_names_150() -> None:
    """The binding's own NaN check names the canary's share as the library does: its key path,
    environment.canary.traffic_percent (the library named it environment.traffic_percent, and
    the binding translated)."""
    with pytest.raises(pg.InvalidConfigError) as library:
        Gate(canary(150.0))
    with pytest.raises(pg.InvalidArgumentError) as binding:
        Gate(canary(NAN))
    assert library.value.message.startswith("invalid environment.canary.traffic_percent = 150")
    assert binding.value.message.split(" = ")[0] == library.value.message.split(" = ")[0]


class _Unreadable(Mapping):  # type: ignore[type-arg]
    """A mapping whose [] raises: its keys say it has "a", reading "a" fails."""

    def __getitem__(self, key: object) -> object:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(["a"])

    def __len__(self) -> int:
        return 1

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


def _nested(depth: int) -> dict[str, Any]:
    outer: dict[str, Any] = {}
    inner = outer
    for _ in range(depth):
        inner["a"] = {}
        inner = inner["a"]
    return outer


@pytest.mark.parametrize(
    "config, message",
    [
        (_Unreadable(), "invalid config = <a _Unreadable>: a mapping that cannot be read: KeyError: 'a'"),
        ({"environment": _Unreadable()}, "invalid config = <a dict>: not JSON: Object of type _Unreadable is not JSON serializable"),
        (_nested(100_000), "invalid config = <a dict>: not JSON: nested deeper than Python's recursion limit"),
    ],
)
def test_a_mapping_that_cannot_be_dumped_is_refused_naming_why(config: Any, message: str) -> None:
    # Each escaped raw before (the mapping's KeyError, the repr's RuntimeError, json's
    # RecursionError), not as an InvalidArgumentError naming the argument.
    with pytest.raises(pg.InvalidArgumentError) as caught:
        Gate(config)
    assert caught.value.message == message


def test_the_shown_value_is_capped_as_the_library_caps_it() -> None:
    source = (REPO / "src" / "error.rs").read_text(encoding="utf-8")
    assert f"pub const MAX_SHOWN_VALUE_BYTES: usize = {MAX_SHOWN_VALUE_BYTES};" in source
    cap = MAX_SHOWN_VALUE_BYTES
    assert shown("x" * cap) == repr("x" * cap)
    assert shown("x" * (cap + 1)) == f"{'x' * cap!r}...({cap + 1} bytes)"
    # Cut on a character boundary: 53 three-byte characters fill 159 bytes.
    assert shown("€" * 100) == f"{'€' * 53!r}...(300 bytes)"
    assert shown(b"y" * 10_000_000) == f"{b'y' * cap!r}...(10000000 bytes)"
    assert shown(10**400) == "1" + "0" * (cap - 1) + "...(401 bytes)" == HUGE_SHOWN
    assert shown(10**40_000) == "<an integer of 132878 bits>"

    assert "pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;" in (
        REPO / "src" / "limits.rs"
    ).read_text(encoding="utf-8")
    assert MAX_DOCUMENT_BYTES == 8 * 1024 * 1024


#: A child that refuses arguments holding one inner list many times over (``repr`` and
#: ``json.dumps`` write it at each place: 2**60 times for ``shared(60)``), printing each message.
SHARED_LISTS = """
import promotion_gates as pg

def shared(depth):
    x = "a"
    for _ in range(depth):
        x = [x, x]
    return x

x = shared(60)
calls = [
    lambda g: g.route(x),
    lambda g: g.enable_feature(x),
    lambda g: g.route_forced("id", x),
    lambda g: pg.Gate(x),
    lambda g: pg.Gate({"feature_flags": x}),
    # json.dumps stops at the set; the search for a NaN then meets each inner list 2**21 times.
    lambda g: pg.Gate({"a": {1}, "feature_flags": shared(21)}),
]
with pg.Gate() as gate:
    for call in calls:
        try:
            call(gate)
        except pg.InvalidArgumentError as error:
            print(error.message)
"""


def test_a_value_holding_one_list_many_times_is_refused_at_once() -> None:
    # Each refusal showed the value's whole repr, cut only then (2**60 times "'a'"), and the
    # search for a NaN walked each place: the child never ended. Now each list is read once.
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR / "src")}
    run = subprocess.run(
        [sys.executable, "-c", SHARED_LISTS], env=env, capture_output=True, text=True, timeout=10
    )
    assert run.returncode == 0, run.stderr[-4000:]
    head = ("[" * 50 + repr(shared_lists(10)))[:MAX_SHOWN_VALUE_BYTES]
    value = f"{head}...({7 * 2**60 - 4} bytes)"  # len(repr(shared_lists(n))) is 7 * 2**n - 4
    config = f"{{'feature_flags': {value}}}"[:MAX_SHOWN_VALUE_BYTES]
    small = f"{{'a': {{1}}, 'feature_flags': {'[' * 11 + repr(shared_lists(10))}"
    assert run.stdout.splitlines() == [
        f"invalid request_id = {value}: bytes or a str, not list",
        f"invalid name = {value}: a str, not list",
        f"invalid forcing_value = {value}: bytes or a str, not list",
        f"invalid config = {value}: a dict or a JSON string, not list",
        f"invalid config = {config}...({7 * 2**60 + 15} bytes): above {MAX_DOCUMENT_BYTES} "
        f"bytes (MAX_DOCUMENT_BYTES) as JSON: at least {7 * 2**21 + 93} bytes, a list or "
        "mapping held in many places written at each",
        f"invalid config = {small[:MAX_SHOWN_VALUE_BYTES]}...({7 * 2**21 + 25} bytes): not JSON: "
        "Object of type set is not JSON serializable",
    ]


#: A child, its address space capped at 1 GiB, that gives Gate a dict dumping to about 1 TB:
#: a million places of a string of a MiB.
MIB_STRINGS = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
import promotion_gates as pg

s = "x" * 2**20
try:
    pg.Gate({"gate": "g", "x": [[s] * 1000] * 1000})
except pg.InvalidArgumentError as error:
    print(error.message)
"""


def test_a_dict_of_long_strings_past_the_limit_is_refused_before_it_is_dumped() -> None:
    # Each string counted as one byte: the million of them passed, and json.dumps ran out of
    # memory writing a terabyte ("not JSON: MemoryError"), or the process was killed.
    message = run_child(MIB_STRINGS).strip()
    assert message.startswith("invalid config = {'gate': 'g', 'x': [['xxxx"), message
    assert message.endswith(
        f": above {MAX_DOCUMENT_BYTES} bytes (MAX_DOCUMENT_BYTES) as JSON: at least "
        f"{8 * 2**20 + 54} bytes, a list or mapping held in many places written at each"
    ), message


def test_a_dict_is_refused_by_the_bytes_json_writes_for_it() -> None:
    # Escapes counted as written: a "\u00e9" is six bytes, a "\n" two, a non-BMP one twelve.
    def config(extra: int) -> dict[str, object]:
        fill = MAX_DOCUMENT_BYTES - len('{"x": "", "y": [1.5, null, "\\n"]}') - 6 * 10**6 - 12
        return {"x": "\u00e9" * 10**6 + "\U0001F600" + "a" * (fill + extra), "y": (1.5, None, "\n")}

    at_the_limit = config(0)
    dumped = document(at_the_limit, "config")
    assert dumped == json.dumps(at_the_limit).encode() and len(dumped) == MAX_DOCUMENT_BYTES
    with pytest.raises(pg.InvalidArgumentError) as caught:
        document(config(1), "config")
    assert caught.value.message.endswith(
        f": above {MAX_DOCUMENT_BYTES} bytes (MAX_DOCUMENT_BYTES) as JSON: at least "
        f"{MAX_DOCUMENT_BYTES + 1} bytes, a list or mapping held in many places written at each"
    )
    # Counted as written, byte for byte: lists and dicts held in many places, in tuples,
    # escapes, keys of every kind json takes, numbers as their repr.
    rng = random.Random(7)
    leaves: list[object] = [None, True, False, 0, -17, 2**70, 1.5, -0.0, 5e-324, "", "\x7f\"é"]
    for _ in range(3000):
        nodes: list[Any] = []
        for _ in range(rng.randint(1, 8)):
            parts = [rng.choice(leaves + nodes) for _ in range(rng.randint(0, 4))]
            keys = rng.sample(["k", "\t", 7, 2.5, True, None], len(parts) % 6)
            nodes.append(
                rng.choice([list(parts), tuple(parts), dict(zip(keys, parts, strict=False))])
            )
        doc = {"a": nodes[-1], "b": nodes}
        written, size = _as_dumped(doc)
        assert size == len(json.dumps(doc)) and json.dumps(written) == json.dumps(doc)


class FirstEmpty(list):  # type: ignore[type-arg]
    """A list that is empty when first read, and holds ``later`` after."""

    def __init__(self, later: Sequence[object]) -> None:
        super().__init__()
        self.later, self.reads = later, 0

    def __iter__(self) -> Iterator[object]:
        self.reads += 1
        return iter(self.later if self.reads > 1 else [])


class FirstNothing(dict):  # type: ignore[type-arg]
    """A dict whose items() are none when first read, and ``later`` after."""

    def __init__(self, later: dict[object, object]) -> None:
        super().__init__()
        self.later, self.reads = later, 0

    def items(self) -> Any:
        self.reads += 1
        return self.later.items() if self.reads > 1 else {}.items()


def test_a_list_or_dict_is_dumped_as_it_was_counted() -> None:
    # The size was counted from one read of each subclass and json.dumps read it again: a
    # list or dict giving more the second time passed the count whatever it then held.
    big = ["x" * 2**20] * 16
    lying_list, lying_dict = FirstEmpty(big), FirstNothing({"k": big})
    assert document({"a": lying_list, "b": lying_dict}, "config") == b'{"a": [], "b": {}}'
    assert lying_list.reads == lying_dict.reads == 1


def shared_lists(depth: int) -> object:
    """``"a"`` in a list with itself, ``depth`` times over."""
    value: object = "a"
    for _ in range(depth):
        value = [value, value]
    return value


def test_the_shown_value_of_a_list_in_itself_is_as_repr_writes_it() -> None:
    inner: list[object] = [1]
    inner.append(inner)
    outer = [inner, (inner,), {"k": inner}, set(), frozenset({(1,)}), shared_lists(3)]
    outer.append(outer)
    assert shown(outer) == repr(outer)
    assert len(repr(outer)) <= MAX_SHOWN_VALUE_BYTES
    long = [outer] * 40
    assert shown(long) == f"{repr(long)[:MAX_SHOWN_VALUE_BYTES]}...({len(repr(long))} bytes)"
    # A list in itself, holding it and the same lists many times over: counted up to a bound.
    tangle: list[object] = []
    knot: object = [tangle]
    for _ in range(40):
        knot = [knot, knot, tangle]
    tangle.append(knot)
    assert shown(tangle).endswith("...(too long to count)")
    # Lists and dicts holding one another at random, in themselves too: as repr writes them.
    rng = random.Random(1)
    for _ in range(2000):
        lists: list[Any] = [[] for _ in range(rng.randint(1, 6))]
        nodes = lists + [{} for _ in range(rng.randint(0, 2))]
        for node in nodes:
            for key in range(rng.randint(0, 4)):
                part = rng.choice(nodes + ["ab", 7, ("t",)])
                if isinstance(node, dict):
                    node[key] = part
                else:
                    node.append(part)
        value = rng.choice(nodes)
        text = repr(value)
        cut = f"{text[:MAX_SHOWN_VALUE_BYTES]}...({len(text)} bytes)"
        assert shown(value) == (text if len(text) <= MAX_SHOWN_VALUE_BYTES else cut)


def quoted_rows() -> list[tuple[str, str, str]]:
    """The rows of ``tests/vectors/quoted.tsv`` that are UTF-8, as (the section's first comment
    line, the value, what the bindings show, in Rust's form: ``"beta\\u{fe0f}"``)."""
    rows: list[tuple[str, str, str]] = []
    section = ""
    lines = (REPO / "tests" / "vectors" / "quoted.tsv").read_text(encoding="utf-8").splitlines()
    for before, line in zip([""] + lines, lines):
        if line.startswith("#"):
            section = line if not before.startswith("#") else section
            continue
        value_hex, quoted = line.split("\t")[:2]
        try:
            rows.append((section, bytes.fromhex(value_hex).decode("utf-8"), quoted))
        except UnicodeDecodeError:
            continue
    return rows


def as_python_shows(quoted: str) -> str:
    """A SHOWN of ``quoted.tsv`` holding only ``\\u{N}`` escapes, as ``repr`` quotes and
    escapes: ``"beta\\u{fe0f}"`` is ``'beta\\ufe0f'``."""
    assert quoted[0] == quoted[-1] == '"', quoted
    return "'" + re.sub(
        r"\\u\{([0-9a-f]+)\}",
        lambda found: chr(int(found.group(1), 16)).encode("unicode_escape").decode("ascii"),
        quoted[1:-1],
    ) + "'"


def test_invisible_is_the_librarys_table() -> None:
    source = (REPO / "src" / "config" / "unseen.rs").read_text(encoding="utf-8")
    table = source.split("const DEFAULT_IGNORABLE")[1].split("];")[0]
    ranges = [
        (int(first, 16), int(last, 16))
        for first, last in re.findall(r"\('\\u\{(\w+)\}', '\\u\{(\w+)\}'\)", table)
    ]
    assert "c == '\\u{2800}'" in source
    assert sorted(ranges + [(0x2800, 0x2800)]) == list(INVISIBLE)


def test_a_character_drawn_as_nothing_is_shown_escaped_as_the_library_shows_it() -> None:
    rows = quoted_rows()
    drawn_as_nothing = [row for row in rows if row[0].startswith("# Characters drawn as nothing")]
    assert len(drawn_as_nothing) >= 20
    for _, value, quoted in drawn_as_nothing:
        assert shown(value) == as_python_shows(quoted), quoted
    # Every character the bindings show as one escape (controls, format characters, those
    # drawn as nothing) is escaped, each range's first and last of INVISIBLE among them.
    escaped = [(v, q) for _, v, q in rows if re.fullmatch(r'"\\u\{[0-9a-f]+\}"', q)]
    for value, quoted in escaped:
        assert shown(value) == as_python_shows(quoted), quoted
    for first, last in INVISIBLE:
        assert {chr(first), chr(last)} <= {value for value, _ in escaped}, hex(first)
    # Beside a range, as repr writes it; in a cut value, escaped all the same.
    assert shown("\u2801\u3165") == "'\u2801\u3165'"
    assert shown("\u2800" * 100) == "'" + "\\u2800" * 53 + "'...(300 bytes)"
    assert shown(["a\U000e0100"]) == "['a\\U000e0100']"


@pytest.mark.parametrize("name", ["beta\u2800", "beta\u3164", "beta\ufe0f", "\u115fbeta"])
def test_a_flag_name_with_a_character_drawn_as_nothing_is_refused_showing_it(name: str) -> None:
    with Gate() as gate, pytest.raises(pg.InvalidFlagError) as caught:
        gate.is_feature_enabled(name)
    escaped = name.encode("unicode_escape").decode("ascii")
    assert caught.value.message == f"invalid name = '{escaped}': {NOT_A_FLAG_NAME}"
    assert escaped != name


@pytest.mark.parametrize(
    "call, shown_value",
    [
        (lambda g: g.enable_feature(b"x" * 10_000_000), f"{b'x' * 160!r}...(10000000 bytes)"),
        (lambda g: g.promote(Environment.CANARY, 10**400), HUGE_SHOWN),
        (lambda g: g.rollback(["r"] * 100_000), repr(["r"] * 100_000)[:160] + "...(500000 bytes)"),
        (lambda g: g.record(g.route("u"), True, latency_ns=10**400), HUGE_SHOWN),
    ],
)
def test_a_huge_refused_value_is_shown_cut_as_the_library_cuts_it(
    call: Callable[[Gate], object], shown_value: str
) -> None:
    with Gate() as gate, pytest.raises(pg.InvalidArgumentError) as caught:
        call(gate)
    message = caught.value.message
    assert f" = {shown_value}" in message, message[:400]
    assert len(message) < 400


#: Why ``is_feature_enabled`` refuses a name no flag can have.
NOT_A_FLAG_NAME = "not a flag name (1 to 128 bytes of UTF-8, no whitespace, control, format or invisible characters)"

#: A text with a lone surrogate, which has no UTF-8 form.
SURROGATE = "ab\udc80"
SURROGATE_SHOWN = "'ab\\udc80': not UTF-8: a lone surrogate at index 2"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda g, d: g.rollback(None), "invalid reason = None: a str, not NoneType"),
        (lambda g, d: g.rollback(b"drill"), "invalid reason = b'drill': a str, not bytes"),
        (lambda g, d: g.rollback(SURROGATE), f"invalid reason = {SURROGATE_SHOWN}"),
        (lambda g, d: g.enable_feature(5), "invalid name = 5: a str, not int"),
        (lambda g, d: g.enable_feature(SURROGATE), f"invalid name = {SURROGATE_SHOWN}"),
        (lambda g, d: g.disable_feature(None), "invalid name = None: a str, not NoneType"),
        (lambda g, d: g.is_feature_enabled(SURROGATE), f"invalid name = {SURROGATE_SHOWN}"),
        (lambda g, d: g.record(None, True, 0.1), "invalid decision = None: a Decision, not NoneType"),
        (lambda g, d: g.record("u", True, 0.1), "invalid decision = 'u': a Decision, not str"),
        (lambda g, d: g.record_abandoned(None, 9.0), "invalid decision = None: a Decision, not NoneType"),
        (lambda g, d: g.features(None), "invalid decision = None: a Decision, not NoneType"),
        (lambda g, d: g.swap_config(None), "invalid config = None: a dict or a JSON string, not NoneType"),
        (lambda g, d: g.swap_config(SURROGATE), f"invalid config = {SURROGATE_SHOWN}"),
        (lambda g, d: g.swap_config_from(g.change_count(), None), "invalid config = None: a dict or a JSON string, not NoneType"),
        (lambda g, d: g.swap_config_from(g.change_count(), SURROGATE), f"invalid config = {SURROGATE_SHOWN}"),
        (lambda g, d: g.swap_config_from(-1, {}), "invalid change_count = -1: an integer from 0 to 2**64 - 1"),
        (lambda g, d: g.swap_slo(None), "invalid slo = None: a dict or a JSON string, not NoneType"),
        (lambda g, d: g.swap_slo({"min_samples": object}), "invalid slo = {'min_samples': <class 'object'>}: not JSON: Object of type type is not JSON serializable"),
        (lambda g, d: g.route(SURROGATE), f"invalid request_id = {SURROGATE_SHOWN}"),
        (lambda g, d: g.route(None), "invalid request_id = None: bytes or a str, not NoneType"),
        (lambda g, d: g.record_by_id(SURROGATE, True, 0.1), f"invalid request_id = {SURROGATE_SHOWN}"),
        (lambda g, d: g.route_forced("u", SURROGATE), f"invalid forcing_value = {SURROGATE_SHOWN}"),
        (lambda g, d: g.route_forced("u", 3), "invalid forcing_value = 3: bytes or a str, not int"),
        (lambda g, d: g.changes_since("0"), "invalid after = '0': not an integer"),
        (lambda g, d: g.changes_since(-1), "invalid after = -1: an integer from 0 to 2**64 - 1"),
        (lambda g, d: g.changes_since(True), "invalid after = True: an integer, not bool"),
        # A bool or a str is not a number, though float() takes both: True moved a 10 % canary
        # to 1 %, and "25" was taken as 25.
        (lambda g, d: g.promote(Environment.CANARY, True), "invalid percent = True: a number, not bool"),
        (lambda g, d: g.promote(Environment.CANARY, "25"), "invalid percent = '25': a number, not str"),
        (lambda g, d: g.promote_from(d.stage, Environment.CANARY, True), "invalid percent = True: a number, not bool"),
        (lambda g, d: g.on_change(print, "0.5"), "invalid interval = '0.5': a number, not str"),
        (lambda g, d: g.on_change(print, True), "invalid interval = True: a number, not bool"),
        # success through bool() counted 'no' as a success.
        (lambda g, d: g.record(d, "no", 0.1), "invalid success = 'no': True or False (a Python bool), not str"),
        (lambda g, d: g.record(d, 0, 0.1), "invalid success = 0: True or False (a Python bool), not int"),
        (lambda g, d: g.record(d, None, 0.1), "invalid success = None: True or False (a Python bool), not NoneType"),
        (lambda g, d: g.record_by_id("u", "no", 0.1), "invalid success = 'no': True or False (a Python bool), not str"),
        (lambda g, d: g.record(d, True, latency_ns=True), "invalid latency_ns = True: a number, not bool"),
        (lambda g, d: g.record(d, True, False), "invalid latency_s = False: a number, not bool"),
        (lambda g, d: g.record_by_id("u", True, latency_ns=False), "invalid latency_ns = False: a number, not bool"),
        # record_abandoned names its own parameters.
        (lambda g, d: g.record_abandoned(d), "invalid waited_s = None with waited_ns = None: give exactly one of them"),
        (lambda g, d: g.record_abandoned(d, 1.0, waited_ns=5), "invalid waited_s = 1.0 with waited_ns = 5: give exactly one of them"),
        (lambda g, d: g.record_abandoned(d, "x"), "invalid waited_s = 'x': a number, not str"),
        (lambda g, d: g.record_abandoned(d, waited_ns=True), "invalid waited_ns = True: a number, not bool"),
        (lambda g, d: g.record_abandoned(d, -1.0), f"invalid waited = -1.0 s: {LATENCY_RULE}"),
        (lambda g, d: g.record_abandoned(d, waited_ns=1 << 64), f"invalid waited = {1 << 64} ns: {LATENCY_RULE}"),
        # A NaN or an infinity in a dict: json.dumps wrote NaN, which is not JSON, and the
        # library's parse error could not show the value.
        (lambda g, d: g.swap_config(canary(NAN)), f"invalid environment.canary.traffic_percent = nan: {NOT_FINITE}"),
        (lambda g, d: g.swap_config({"overrides": {"canary_ids": ["a", -INF]}}), f"invalid overrides.canary_ids[1] = -inf: {NOT_FINITE}"),
        (lambda g, d: g.swap_slo({"slo_threshold": INF}), f"invalid slo_threshold = inf: {NOT_FINITE}"),
        (lambda g, d: g.swap_config(circular()), "invalid config = {'gate': {...}}: not JSON: Circular reference detected"),
        # The telemetry reads name the gate that is not one (they raised AttributeError).
        (lambda g, d: pg.metrics_prometheus("x"), "invalid gates[0] = 'x': a Gate, not str"),  # type: ignore[arg-type]
        (lambda g, d: pg.metrics_prometheus(g, None), "invalid gates[1] = None: a Gate, not NoneType"),  # type: ignore[arg-type]
        (lambda g, d: pg.latency_histograms(None), "invalid gate = None: a Gate, not NoneType"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_argument_names_its_field_and_value_and_changes_nothing(
    call: Callable[[Gate, pg.Decision], object], message: str
) -> None:
    with Gate(canary(100, feature_flags=["on"]), slo={"min_samples": 5}) as gate:
        decision = gate.route("u")
        gate.record(decision, True, 0.1)

        def seen() -> tuple[object, ...]:
            health = gate.read_health()
            return (gate.config, gate.slo, gate.state(), gate.change_count(),
                    health.canary_requests + health.production_requests)

        before = seen()
        with pytest.raises(pg.InvalidArgumentError) as caught:
            call(gate, decision)
        assert caught.value.status is Status.INVALID_ARGUMENT
        assert caught.value.message == message
        assert seen() == before


def test_an_enum_argument_is_refused_as_a_float() -> None:
    """promote(1.0) was taken as promote(Environment.STAGING)."""
    with Gate(canary(10)) as gate:
        with pytest.raises(pg.InvalidArgumentError, match=r"invalid environment = 1\.0: one of"):
            gate.promote(1.0)  # type: ignore[arg-type]
        assert gate.state().environment is Environment.CANARY


def test_a_member_of_another_enum_is_refused() -> None:
    """promote(Recorded.LATE) was taken as promote(Environment.STAGING), and
    set_log_callback(cb, Environment.STAGING) as the level WARN: both are 1."""
    with Gate(canary(10)) as gate:
        with pytest.raises(pg.InvalidArgumentError, match="invalid environment = <Recorded.LATE: 1>"):
            gate.promote(Recorded.LATE)  # type: ignore[arg-type]
        assert gate.state().environment is Environment.CANARY
    with pytest.raises(pg.InvalidArgumentError, match="max_level"):
        pg.set_log_callback(None, Environment.STAGING)  # type: ignore[arg-type]


def test_a_released_memoryview_is_refused_naming_the_id() -> None:
    """It raised a bare ValueError."""
    view = memoryview(b"abc")
    view.release()
    with Gate() as gate:
        with pytest.raises(pg.InvalidArgumentError, match=r"invalid request_id = .*released"):
            gate.route(view)


def test_the_formula_refuses_an_int_as_an_id() -> None:
    """bytes(5) is five zero bytes: the id 5 was hashed as b"\\0" * 5."""
    from promotion_gates import formula

    with pytest.raises(TypeError, match="expected bytes or a str, not int"):
        formula.bucket("s", 5)  # type: ignore[arg-type]
    assert formula.bucket("s", b"abc") == formula.bucket("s", "abc")
