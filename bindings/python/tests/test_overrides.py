"""Overrides: the shared vectors (tests/vectors/overrides.tsv), and forced requests counted in
neither cohort."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import canary, override_vectors

import promotion_gates as pg
from promotion_gates import Environment, Forced, Gate, Recorded


def test_the_shared_vectors_hold() -> None:
    configs, cases = override_vectors()
    gates = {name: Gate(doc) for name, doc in configs.items()}
    try:
        for config, rid, value, is_canary, forced in cases:
            d = gates[config].route_forced(rid, value)
            where = f"{config} {rid!r} {value!r}"
            assert (d.is_canary, d.forced) == (is_canary, Forced[forced.upper()]), where
            expected = Recorded.COUNTED if forced == "none" else Recorded.FORCED
            assert gates[config].record(d, True, latency_ns=1000) is expected, where
            by_id = gates[config].record_by_id_forced(rid, value, True, latency_ns=1000)
            assert by_id is expected, where
            alone = Recorded.FORCED if forced == "id_list" else Recorded.COUNTED
            assert gates[config].record_by_id(rid, True, latency_ns=1000) is alone, where
    finally:
        for gate in gates.values():
            gate.close()


def test_forced_requests_reach_their_version_and_stay_out_of_the_cohorts() -> None:
    config = canary(0, overrides={"cookie": "canary", "canary_ids": ["tester-1"]})
    with Gate(config, {"min_samples": 20}) as gate:
        for i in range(200):
            d = gate.route_forced(f"user-{i}".encode(), b"canary")
            assert d.is_canary and d.forced is Forced.VALUE
            assert gate.record(d, False, latency_s=5.0) is Recorded.FORCED
        tester = gate.route("tester-1")  # route checks the id lists too
        assert tester.is_canary and tester.forced is Forced.ID_LIST
        assert gate.record_by_id("tester-1", False, latency_ns=1) is Recorded.FORCED
        h = gate.health()
        assert (h.canary_requests, h.production_requests) == (0, 0)
        assert gate.state().environment is Environment.CANARY  # 201 failures judged by no one
        assert "promotion_forced_outcomes_total{gate=\"default\"} 201" in pg.metrics_prometheus(gate)
        plain = gate.route_forced("user-1", None)
        assert (plain.is_canary, plain.forced) == (False, Forced.NONE)
        assert gate.record(plain, True, latency_ns=1000) is Recorded.COUNTED
        # A decision built by hand keeps its forced field, checked.
        rebuilt = dataclasses.replace(plain, forced=Forced.VALUE)
        assert gate.record(rebuilt, True, latency_ns=1000) is Recorded.FORCED
        with pytest.raises(pg.InvalidArgumentError, match="invalid forced = 9"):
            gate.record(dataclasses.replace(plain, forced=9), True, latency_ns=1)  # type: ignore[arg-type]
        with pytest.raises(pg.InvalidArgumentError, match="invalid forcing_value = 3"):
            gate.route_forced("u", 3)  # type: ignore[arg-type]


def test_a_record_by_id_with_the_forcing_value_counts_in_neither_cohort() -> None:
    """record_by_id cannot see a forcing value; record_by_id_forced, given it, counts the
    request apart, and counts no ignored value again."""
    with Gate(canary(0, overrides={"header": "X-Canary"})) as gate:
        assert gate.route_forced("tester", "canary").is_canary
        assert gate.record_by_id_forced("tester", "canary", False, 0.001) is Recorded.FORCED
        assert gate.record_by_id_forced(b"tester", b"", False, 0.001) is Recorded.COUNTED
        assert gate.record_by_id("tester", False, 0.001) is Recorded.COUNTED
        h = gate.read_health()
        assert (h.canary_requests, h.production_requests) == (0, 2)
        text = pg.metrics_prometheus(gate)
        assert 'promotion_ignored_override_values_total{gate="default"} 0' in text
        with pytest.raises(pg.InvalidArgumentError, match="invalid forcing_value = 3"):
            gate.record_by_id_forced("u", 3, True, 0.001)  # type: ignore[arg-type]


def test_the_override_names_are_read_from_the_config_and_follow_a_swap() -> None:
    with Gate(canary(5, overrides={"header": "X-Canary", "cookie": "pg_canary"})) as gate:
        assert gate.override_names() == ("X-Canary", "pg_canary")
        before = gate.change_count()
        gate.swap_config(canary(5, overrides={"cookie": "say-'canary'"}))
        assert gate.change_count() > before
        assert gate.override_names() == (None, "say-'canary'")
    with Gate(canary(5)) as gate:
        assert gate.override_names() == (None, None)


def test_fleet_judging_is_the_stores_and_off_without_one(tmp_path: Path) -> None:
    with Gate(canary(5)) as gate:
        assert gate.fleet_judging() is False
    for i, (store, expected) in enumerate([({}, True), ({"fleet_judging": False}, False)]):
        sqlite = {"path": str(tmp_path / f"g{i}.db"), **store}
        with Gate(canary(5, store={"sqlite": sqlite})) as gate:
            assert gate.fleet_judging() is expected
