"""The Gate: routing, recording, judging, releasing, flags, config, history, lifetime."""

from __future__ import annotations

import copy
import dataclasses
import doctest
import gc
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from ctypes import byref, c_size_t, c_void_p
from pathlib import Path
from typing import Any

import pytest
from conftest import PYTHON_DIR, REPO, canary

import promotion_gates as pg
from promotion_gates import (
    Environment,
    Gate,
    InvalidArgumentError,
    Recommendation,
    Recorded,
    RollbackTrigger,
    RolledBack,
    Rule,
)
from promotion_gates import _ffi, formula
from promotion_gates.errors import _check


def test_version() -> None:
    cargo = (REPO / "Cargo.toml").read_text(encoding="utf-8")
    assert f'version = "{pg.version()}"' in cargo
    assert Gate.version() == pg.version() == pg.__version__
    pyproject = (REPO / "bindings" / "python" / "pyproject.toml").read_text(encoding="utf-8")
    assert f'version = "{pg.__version__}"' in pyproject


class _Function:
    """A library's function as ctypes gives it: declared, then called."""

    def __init__(self, result: bytes) -> None:
        self.result, self.restype, self.argtypes = result, None, None

    def __call__(self) -> bytes:
        return self.result


class _Library:
    """A loaded library as _check_version sees it, of a given version."""

    def __init__(self, version: bytes) -> None:
        self.pgate_version = _Function(version)


def test_a_library_of_another_minor_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A leftover $PROMOTION_GATES_LIBRARY or an older system library has the functions' names,
    not necessarily their layouts: it was loaded without a word. The version is checked before
    any other function is looked up (this one has no other), so the error names it."""
    major, minor, _ = pg.__version__.split(".")
    _ffi._check_version(_Library(f"{major}.{minor}.99".encode()), "same minor")  # type: ignore[arg-type]
    other = f"{major}.{int(minor) + 1}.0"
    monkeypatch.setattr(_ffi, "_loaded", None)
    monkeypatch.setattr(_ffi, "_load", lambda: (_Library(other.encode()), "old.so"))
    with pytest.raises(pg.LibraryNotFoundError, match=f"old.so is promotion-gates {other}, and this package"):
        _ffi.lib()


def test_routing_is_deterministic_and_follows_the_formula() -> None:
    with Gate(canary(30, gate="checkout")) as gate:
        for i in range(500):
            rid = f"user-{i}"
            d = gate.route(rid)
            assert d == gate.route(rid.encode()) == gate.route(bytearray(rid.encode()))
            assert d.bucket == formula.bucket("checkout", rid)
            assert d.threshold == 3_000_000 and d.traffic_percent == 30.0
            assert d.is_canary == (d.bucket < d.threshold)
            assert d.environment is Environment.CANARY and d.stage >= 1
        with pytest.raises(dataclasses.FrozenInstanceError):
            d.bucket = 1  # type: ignore[misc]
        # Built by Gate.route without __init__ (a fast path), yet the same value as with it.
        fields = [getattr(d, f.name) for f in dataclasses.fields(d) if f.init]
        assert d == pg.Decision(*fields) and repr(d) == repr(pg.Decision(*fields))
        assert hash(d) == hash(pg.Decision(*fields))
        assert d._raw is not None and dataclasses.replace(d)._raw is None
        assert dataclasses.replace(d)._to_c().bucket == d.bucket


def test_environments_route_everyone_one_way() -> None:
    with Gate() as gate:
        d = gate.route("u")
        assert (d.is_canary, d.environment, d.traffic_percent, d.threshold) == (
            False,
            Environment.PRODUCTION,
            0.0,
            0,
        )
    with Gate(canary(100.0)) as gate:
        assert all(gate.route(str(i)).is_canary for i in range(100))


def test_features_of_a_decision() -> None:
    config = canary(50, feature_flags=["new_api", "beta_ui"], graduated_flags=["stable_thing"])
    with Gate(config) as gate:
        seen = {}
        for i in range(200):
            d = gate.route(f"u{i}")
            seen[d.is_canary] = gate.features(d)
        assert seen[True] == ("beta_ui", "new_api", "stable_thing")  # byte order
        assert seen[False] == ("stable_thing",)
        gate.enable_feature("later")
        assert gate.is_feature_enabled("later") and not gate.is_feature_enabled("nope")
        d = next(d for d in map(gate.route, map(str, range(100))) if d.is_canary)
        assert "later" in gate.features(d)
        gate.disable_feature("later")
        assert not gate.is_feature_enabled("later")
        assert "later" not in gate.features(gate.route(b"whoever"))
        assert gate.rollback_history()[-1].trigger is RollbackTrigger.FLAG_DISABLED
        assert gate.rollback_history()[-1].rolled_back is RolledBack.FLAG


def test_state_reads_where_the_gate_stands() -> None:
    with Gate(canary(12.5)) as gate:
        first = gate.state()
        assert first == pg.State(Environment.CANARY, 12.5, first.stage)
        assert gate.route("u").stage == first.stage
        assert gate.state() == first, "reading the state changes nothing"
        gate.promote(Environment.CANARY, 2.5)
        second = gate.state()
        assert (second.traffic_percent, second.stage > first.stage) == (2.5, True)
        gate.rollback("drill")
        assert gate.state().environment is Environment.PRODUCTION
        assert gate.state().traffic_percent == 0.0


def test_record_counted_late_and_foreign() -> None:
    with Gate(canary(50)) as gate:
        old = gate.route("a")
        assert gate.record(old, True, 0.010) is Recorded.COUNTED
        assert gate.record_by_id("b", False, latency_ns=2_000_000) is Recorded.COUNTED
        gate.promote(Environment.CANARY, 25.0)  # ramp down: a new stage
        new = gate.route("a")
        assert new.stage > old.stage
        assert gate.record(new, True, 0.010) is Recorded.COUNTED
        assert gate.record(old, True, 0.010) is Recorded.LATE  # its stage ended
        forged = dataclasses.replace(new, stage=new.stage + 1000)
        assert gate.record(forged, True, latency_ns=1) is Recorded.FOREIGN
        with pytest.raises(ValueError):  # never handed to the library
            bad = dataclasses.replace(new, environment=7)  # type: ignore[arg-type]
            gate.record(bad, True, latency_ns=1)


def test_a_client_that_gave_up_is_a_slow_success_after_the_target_else_nothing() -> None:
    with Gate(canary(100), {"latency_target_ms": 200}) as gate:
        d = gate.route("a")
        assert gate.record_abandoned(d, 0.050) is False
        assert gate.health().canary_requests == 0
        assert gate.record_abandoned(d, waited_ns=3_000_000_000) is True
        h = gate.health()
        assert (h.canary_requests, h.canary_error_rate) == (1, 0.0)
        with pytest.raises(InvalidArgumentError, match="invalid waited = -1.0 s: a latency must"):
            gate.record_abandoned(d, -1.0)


def test_health_of_a_good_canary_and_gated_promotions() -> None:
    slo = {"min_samples": 20, "latency_target_ms": 100, "warm_up_ms": 0, "promotion_evidence": False}
    with Gate(canary(50), slo) as gate:
        h = gate.health()
        assert (h.canary_requests, h.sufficient_data) == (0, False)
        assert h.recommendation is Recommendation.MONITOR
        for i in range(400):
            d = gate.route(f"user-{i}")
            gate.record(d, True, latency_s=0.002)
        h = gate.health()
        assert h.canary_requests + h.production_requests == 400
        assert h.canary_requests >= 20 and h.sufficient_data
        assert h.environment is Environment.CANARY and h.traffic_percent == 50.0
        assert h.recommendation is Recommendation.HEALTHY and h.rules_fired == Rule.NONE
        assert h.canary_error_rate == 0.0 and h.canary_compliance == 1.0
        assert h.health_score == 1.0
        assert 1_000_000 <= h.canary_p99_ns <= 3_000_000
        assert h.evidence.startswith(f"stage {h.stage} Canary{{50}}")
        assert gate.check_slo() is True
        gate.promote(Environment.CANARY, 80.0)  # gated ramp up: allowed
        with pytest.raises(pg.InsufficientDataError):  # a new stage: its data starts at 0
            gate.promote(Environment.STAGING)


def test_a_canary_failing_every_request_rolls_itself_back() -> None:
    with Gate(canary(100.0)) as gate:
        for i in range(1000):
            d = gate.route(f"u{i}")
            if d.environment is not Environment.CANARY:
                break
            gate.record(d, False, latency_s=0.001)
        else:
            pytest.fail("a canary failing 1000 requests in a row was not rolled back")
        assert i < 100, f"rolled back only after {i} failures"
        assert gate.config["environment"] == "production"
        assert gate.state().environment is Environment.PRODUCTION
        h = gate.health()
        assert h.environment is Environment.PRODUCTION
        (event,) = gate.rollback_history()
        assert event.trigger is RollbackTrigger.AUTOMATIC
        assert event.rolled_back is RolledBack.RELEASE
        assert event.feature == "Canary{100}"
        assert (event.environment, event.traffic_percent) == (Environment.CANARY, 100.0)
        assert "overwhelming_errors" in event.reason
        assert abs(event.timestamp.timestamp() - time.time()) < 3600


def test_history_keeps_every_kind_of_event_oldest_first() -> None:
    with Gate(canary(10, feature_flags=["f"], max_rollback_history=3)) as gate:
        gate.disable_feature("f")
        gate.rollback("manual one")
        gate.promote(Environment.CANARY, 5)
        gate.rollback("manual two")
        gate.promote(Environment.CANARY, 5)
        gate.rollback("manual three")
        history = gate.rollback_history()
        assert [e.reason for e in history] == ["manual one", "manual two", "manual three"]
        assert [e.trigger for e in history] == [RollbackTrigger.MANUAL] * 3
        assert [e.rolled_back for e in history] == [RolledBack.RELEASE] * 3
        assert history[0].feature == "Canary{10}" and history[1].traffic_percent == 5.0
        assert history[0].timestamp_ms <= history[2].timestamp_ms


def test_a_full_release() -> None:
    slo = {"min_samples": 10, "warm_up_ms": 0, "promotion_evidence": False}
    with Gate(canary(100.0, feature_flags=["new_api"]), slo) as gate:
        for i in range(50):
            gate.record(gate.route(f"u{i}"), True, 0.001)
        gate.promote(Environment.STAGING)
        d = gate.route("x")
        assert (d.environment, d.is_canary, d.traffic_percent) == (Environment.STAGING, True, 100.0)
        for i in range(50):
            gate.record(gate.route(f"u{i}"), True, 0.001)
        gate.promote(Environment.PRODUCTION)
        config = gate.config
        assert config["environment"] == "production"
        assert config["graduated_flags"] == ["new_api"] and config["feature_flags"] == []
        assert gate.features(gate.route("x")) == ("new_api",)


def test_slo_reads_back() -> None:
    with Gate(None, {"latency_target_ms": 250, "p99_budget_ms": 800}) as gate:
        slo = gate.slo
        assert slo["latency_target_ms"] == 250.0 and slo["p99_budget_ms"] == 800.0
        assert slo["min_samples"] == 100  # a default


def test_config_and_swap_config() -> None:
    with Gate('{"gate": "search"}') as gate:
        config = gate.config
        assert config["gate"] == "search" and config["environment"] == "production"
        before = gate.route("u")
        gate.swap_config({**config, "environment": {"canary": {"traffic_percent": 100}}})
        after = gate.route("u")
        assert after.is_canary and after.stage > before.stage
        with pytest.raises(pg.InvalidConfigError, match="slo_threshold"):
            gate.swap_config({**config, "slo_threshold": 2})
        with pytest.raises(pg.InvalidJsonError):
            gate.swap_config("[")
        assert gate.route("u") == after, "a refused swap changes nothing"


def test_buffers_grow_when_too_small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("promotion_gates.gate._BUFFER", 4)
    with Gate(canary(10), {"min_samples": 7}) as gate:
        assert gate.config["gate"] == "default"
        assert gate.slo["min_samples"] == 7
        gate.rollback("a reason longer than four bytes")
        assert gate.rollback_history()[0].reason == "a reason longer than four bytes"


CLOSED_CALLS: dict[str, Any] = {
    "route": lambda g, d: g.route("u"),
    "features": lambda g, d: g.features(d),
    "record": lambda g, d: g.record(d, True, 0.1),
    "record_by_id": lambda g, d: g.record_by_id("u", True, 0.1),
    "record_by_id_forced": lambda g, d: g.record_by_id_forced("u", None, True, 0.1),
    "health": lambda g, d: g.health(),
    "check_slo": lambda g, d: g.check_slo(),
    "promote": lambda g, d: g.promote(Environment.CANARY, 1),
    "promote_from": lambda g, d: g.promote_from(d.stage, Environment.CANARY, 1),
    "rollback": lambda g, d: g.rollback("r"),
    "enable_feature": lambda g, d: g.enable_feature("f"),
    "disable_feature": lambda g, d: g.disable_feature("f"),
    "is_feature_enabled": lambda g, d: g.is_feature_enabled("f"),
    "state": lambda g, d: g.state(),
    "config": lambda g, d: g.config,
    "slo": lambda g, d: g.slo,
    "swap_config": lambda g, d: g.swap_config({}),
    "swap_config_from": lambda g, d: g.swap_config_from(0, {}),
    "rollback_history": lambda g, d: g.rollback_history(),
}


@pytest.mark.parametrize("operation", sorted(CLOSED_CALLS))
def test_use_after_close_raises(operation: str) -> None:
    with Gate(canary(50)) as gate:
        decision = gate.route("u")
    assert gate.closed
    with pytest.raises(pg.GateClosedError, match=f"{operation} on a closed Gate") as caught:
        CLOSED_CALLS[operation](gate, decision)
    assert isinstance(caught.value, pg.InvalidHandleError)
    assert caught.value.status is pg.Status.INVALID_HANDLE


def test_close_is_idempotent_and_the_library_refuses_a_stale_handle() -> None:
    gate = Gate()
    assert gate._handle is not None
    handle = c_void_p(gate._handle.value)  # the address (the Gate's own object is NULL after)
    assert not gate.closed and "Gate at 0x" in repr(gate)
    gate.close()
    gate.close()
    assert gate.closed and "closed" in repr(gate)
    with pytest.raises(pg.GateClosedError):
        with gate:
            pass
    # The library keeps a set of live gates: freeing twice is refused, not a double free.
    with pytest.raises(pg.InvalidHandleError):
        _check(_ffi.lib().pgate_gate_free(handle))


def test_a_dropped_gate_is_freed() -> None:
    gate = Gate()
    finalizer = gate._finalizer
    assert finalizer.alive
    del gate
    gc.collect()
    assert not finalizer.alive


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != _ffi.ENV_VAR}
    environ["PYTHONPATH"] = str(PYTHON_DIR / "src")
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60
    )


def test_library_discovery(tmp_path: Path) -> None:
    show = "import promotion_gates as pg; pg.version(); print(pg.library_path())"
    # A source tree whose target/release holds the library, as cargo builds it without
    # CARGO_TARGET_DIR: the package finds it there (this checkout's target/release may not
    # exist, as in CI, whose target directory is elsewhere).
    tree = tmp_path / "checkout"
    (tree / "include").mkdir(parents=True)
    (tree / "Cargo.toml").touch()
    (tree / "include" / "promotion_gates.h").touch()
    source = tree / "bindings" / "python" / "src"
    shutil.copytree(
        PYTHON_DIR / "src" / "promotion_gates",
        source / "promotion_gates",
        ignore=shutil.ignore_patterns("__pycache__", _ffi._file_name()),
    )
    in_repo = tree / "target" / "release" / _ffi._file_name()
    in_repo.parent.mkdir(parents=True)
    in_repo.symlink_to(_ffi.library_path())
    found = _python(show, PYTHONPATH=str(source))
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()) == in_repo
    explicit = _python(show, **{_ffi.ENV_VAR: _ffi.library_path()})
    assert explicit.returncode == 0 and explicit.stdout.strip() == _ffi.library_path()
    missing = _python(show, **{_ffi.ENV_VAR: "/nonexistent/libpromotion_gates_ffi.so"})
    assert missing.returncode != 0
    assert "LibraryNotFoundError" in missing.stderr and _ffi.ENV_VAR in missing.stderr


def test_the_system_loader_is_asked_for_the_soname_first() -> None:
    # The name the loaded library's SONAME gives (ffi/build.rs), then the development link.
    if not _ffi._file_name().endswith(".so") or shutil.which("readelf") is None:
        pytest.skip("an ELF SONAME, read by readelf")
    dynamic = subprocess.run(
        ["readelf", "-d", _ffi.library_path()], capture_output=True, text=True, check=True
    ).stdout
    soname = re.search(r"\(SONAME\).*\[(.*)\]", dynamic)
    assert soname is not None, dynamic
    assert _ffi._system_names() == (soname.group(1), "libpromotion_gates_ffi.so")


def test_the_readme_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (PYTHON_DIR / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "README.md has no Python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "stay at 10 %: not enough data" in out
    assert "rolled back: bad deploy" in out  # the change notifications example


def test_features_of_another_gates_decision_do_not_stick(monkeypatch: pytest.MonkeyPatch) -> None:
    # A set number this gate does not know is refused (each gate numbers its sets from its own
    # random start), and nothing is remembered of it: the gate's own decisions read their names.
    monkeypatch.setattr("promotion_gates.gate._FLAG_CACHE", 2)  # and the cache starts afresh
    with Gate({"environment": "staging", "feature_flags": ["a"]}) as first, Gate(
        {"environment": "staging"}
    ) as second:
        theirs = first.route("u")
        assert theirs.flag_set != 0 and first.features(theirs) == ("a",)
        with pytest.raises(pg.UnknownFlagSetError) as caught:
            second.features(theirs)
        assert caught.value.status is pg.Status.UNKNOWN_FLAG_SET
        assert caught.value.message == (
            f"invalid flag_set = {theirs.flag_set}: not a flag set of this gate (another gate's "
            "decision, or one replaced more than 60 writes ago)"
        )
        on: list[str] = []
        for flag in ("b", "c", "d"):
            second.enable_feature(flag)
            on.append(flag)
            ours = second.route("u")
            assert second.features(ours) == tuple(on)


def test_features_of_a_set_replaced_long_ago_are_refused_though_remembered() -> None:
    """The docs (and C++, and the C ABI) refuse a set replaced more than 60 writes ago; the
    binding answered it from the names it had remembered."""
    with Gate({"environment": "staging", "feature_flags": ["first"]}) as gate:
        old = gate.route("u")
        assert gate.features(old) == ("first",)  # remembered from here on
        c, count = _ffi.lib(), c_size_t()
        rounds, writes, previous = 0, 0, old.flag_set
        # Each round turns a new flag on and the one before off (sets the gate never held),
        # then reads two other sets, as a host routing requests does, until the library lets
        # the first set go (as ffi/tests/ffi.rs does).
        while c.pgate_flag_set_len(gate._handle, old.flag_set, byref(count)) == pg.Status.OK:
            assert writes < 10_000, "the library never let the set go"
            rounds += 1
            gate.enable_feature(f"f{rounds}")
            writes += 1
            if rounds > 1:
                gate.disable_feature(f"f{rounds - 1}")
                writes += 1
            now = gate.route("u")
            gate.features(now)
            c.pgate_flag_set_len(gate._handle, previous, byref(count))
            previous = now.flag_set
        assert writes > _ffi.FLAG_SET_GRACE_WRITES
        with pytest.raises(pg.UnknownFlagSetError, match=f"invalid flag_set = {old.flag_set}:"):
            gate.features(old)
        assert gate.features(gate.route("u")) == ("f" + str(rounds), "first")


def test_the_flag_cache_holds_a_bounded_number_of_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("promotion_gates.gate._FLAG_CACHE_NAMES", 50)
    with Gate({"environment": "staging"}) as gate:
        on: list[str] = []
        restarts = 0
        for i in range(30):  # set i holds i + 1 names: 465 in all
            on.append(f"f{i:02d}")
            gate.enable_feature(on[-1])
            before = len(gate._flag_names)
            assert gate.features(gate.route("u")) == tuple(on)
            assert sum(map(len, gate._flag_names.values())) <= 50
            restarts += len(gate._flag_names) <= before
        assert restarts > 0


@pytest.mark.parametrize(
    "duplicate", [copy.copy, copy.deepcopy, pickle.dumps], ids=["copy", "deepcopy", "pickle"]
)
def test_a_gate_is_never_copied_or_pickled(duplicate: Any) -> None:
    """A copy shared the native gate: closing it freed the gate under the original, whose
    next call crashed the process."""
    with Gate(canary(10)) as gate:
        with pytest.raises(TypeError, match="a Gate cannot be copied or pickled: share the one Gate"):
            duplicate(gate)
        assert not gate.closed and gate._calls == []
        assert gate.route("u").traffic_percent == 10.0


def test_store_location_reads_the_document_and_opens_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = {"gate": "g", "store": {"sqlite": {"path": "no-such-dir/rel.db"}}}
    assert pg.store_location(relative) == "sqlite:no-such-dir/rel.db"
    assert list(tmp_path.iterdir()) == [], "nothing is opened or created"
    absolute = str(tmp_path / "gate.db")
    assert pg.store_location(json.dumps({"store": {"sqlite": {"path": absolute}}})) == f"sqlite:{absolute}"
    etcd = {"store": {"etcd": {"endpoints": ["http://127.0.0.1:2379"], "prefix": "/pg/checkout"}}}
    assert pg.store_location(json.dumps(etcd).encode()) == "etcd:/pg/checkout"
    assert pg.store_location({"gate": "g"}) == "" and pg.store_location() == ""
    long = "/" + "d" * 4087 + "/gate.db"  # 4096 bytes, the longest path: grown once
    assert pg.store_location({"store": {"sqlite": {"path": long}}}) == f"sqlite:{long}"
    with pytest.raises(pg.InvalidConfigError, match='invalid store.sqlite.path = ""'):
        pg.store_location({"store": {"sqlite": {"path": ""}}})
    with pytest.raises(pg.InvalidJsonError):
        pg.store_location('{"store": ')
    with pytest.raises(InvalidArgumentError, match="invalid config = 5: a dict or a JSON string"):
        pg.store_location(5)  # type: ignore[arg-type]
    failures = doctest.testmod(pg.gate, verbose=False).failed
    assert failures == 0, "the docstring examples of promotion_gates.gate"


def test_the_document_reads_answer_as_a_gate_made_from_it_and_open_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    stored = {"gate": "g", "store": {"sqlite": {"path": "no-such-dir/rel.db"}}}
    assert pg.document_gate_name(stored) == "g" and pg.document_fleet_judging(stored) is True
    assert list(tmp_path.iterdir()) == [], "nothing is opened or created"
    assert pg.document_gate_name() == "default" and pg.document_fleet_judging() is False
    longest = "n" * (_ffi.NAME_CAPACITY - 1)  # PGATE_NAME_CAPACITY holds it with its NUL
    assert pg.document_gate_name(json.dumps({"gate": longest}).encode()) == longest
    documents: list[dict[str, Any]] = [
        {},
        {"gate": "checkout"},
        {"gate": "search", "store": {"sqlite": {"path": str(tmp_path / "on.db")}}},
        {
            "gate": "cart",
            "store": {"sqlite": {"path": str(tmp_path / "off.db"), "fleet_judging": False}},
        },
    ]
    for config in documents:
        name, sums = pg.document_gate_name(config), pg.document_fleet_judging(json.dumps(config))
        with Gate(config) as gate:
            assert (name, sums) == (gate.name(), gate.fleet_judging()), config


def test_the_document_reads_refuse_what_a_gate_refuses() -> None:
    for read in (pg.document_gate_name, pg.document_fleet_judging):
        with pytest.raises(pg.InvalidConfigError, match='invalid gate = ""'):
            read({"gate": ""})
        with pytest.raises(pg.InvalidConfigError, match='invalid store.sqlite.path = ""'):
            read({"store": {"sqlite": {"path": "", "fleet_judging": False}}})
        with pytest.raises(pg.InvalidJsonError, match="invalid JSON config"):
            read('{"gate": ')
        with pytest.raises(InvalidArgumentError, match="invalid config = 5: a dict or a JSON string"):
            read(5)  # type: ignore[arg-type]
