"""State changes (change_count, changes_since, on_change) and the parity reads: the
read-only health, the state, the SLO and its swap."""

from __future__ import annotations

import gc
import queue
import threading
import time
import weakref
from typing import Any

import pytest
from conftest import canary

from promotion_gates import (
    Change,
    ChangeKind,
    ChangeWatcher,
    ChangeOrigin,
    Environment,
    Gate,
    GateClosedError,
    InvalidArgumentError,
    InvalidConfigError,
    InvalidJsonError,
    PanicError,
    Recommendation,
    RollbackTrigger,
    Rule,
    Status,
)


def fail_canary(gate: Gate) -> None:
    """Records a failure for each canary request until the gate stops routing there."""
    for i in range(1000):
        decision = gate.route(f"user-{i}")
        if not decision.is_canary:
            return
        gate.record(decision, False, 0.001)
    raise AssertionError("a canary failing every request was not rolled back")


def take(changes: queue.Queue[Change]) -> Change:
    return changes.get(timeout=30)


def test_changes_since_says_what_changed() -> None:
    with Gate(canary(100, feature_flags=["new_api"])) as gate:
        assert gate.change_count() == 0
        assert gate.changes_since(0) == []
        gate.enable_feature("dark_mode")
        gate.rollback("drill")
        assert gate.change_count() == 2
        flags, rollback = gate.changes_since(0)
        assert (flags.sequence, flags.kind, flags.origin) == (1, ChangeKind.FLAGS, ChangeOrigin.THIS_GATE)
        assert flags.flags_enabled == ("dark_mode",) and flags.flags_disabled == ()
        assert flags.rollback is None and abs(time.time() - flags.at.timestamp()) < 60
        assert rollback.kind == ChangeKind.ROLLBACK
        assert (rollback.from_environment, rollback.from_percent) == (Environment.CANARY, 100.0)
        assert rollback.to_environment == Environment.PRODUCTION
        assert rollback.rollback is not None and rollback.rollback.reason == "drill"
        assert rollback.rollback.trigger == RollbackTrigger.MANUAL
        assert rollback.rollback.rules == Rule.NONE
        assert [c.sequence for c in gate.changes_since(1)] == [2]
        with pytest.raises(ValueError):
            gate.changes_since(-1)


def test_on_change_calls_back_for_flags_and_both_rollbacks_off_the_library_threads() -> None:
    got: queue.Queue[Change] = queue.Queue()
    threads: set[str] = set()

    def seen(change: Change) -> None:
        threads.add(threading.current_thread().name)
        got.put(change)

    with Gate(canary(100)) as gate:
        gate.enable_feature("before")  # before the watcher: not delivered
        with gate.on_change(seen, interval=0.001) as watcher:
            gate.enable_feature("dark_mode")
            change = take(got)
            assert (change.sequence, change.kind) == (2, ChangeKind.FLAGS)
            assert change.flags_enabled == ("dark_mode",)
            gate.rollback("drill")
            change = take(got)
            assert change.kind == ChangeKind.ROLLBACK and change.rollback is not None
            assert change.rollback.trigger == RollbackTrigger.MANUAL
            gate.promote(Environment.CANARY, 100)
            assert take(got).kind == ChangeKind.PROMOTION
            fail_canary(gate)
            change = take(got)
            assert change.kind == ChangeKind.ROLLBACK and change.sequence == 5
            assert change.rollback is not None
            assert change.rollback.trigger == RollbackTrigger.AUTOMATIC
            assert Rule.OVERWHELMING_ERRORS in change.rollback.rules
            assert gate.rollback_history()[-1].rules == change.rollback.rules
            assert watcher.running
        assert not watcher.running
        assert threads == {"promotion-gates-changes"}


@pytest.mark.parametrize("from_callback", [False, True])
def test_no_change_is_delivered_after_stop_while_a_callback_still_runs(from_callback: bool) -> None:
    """stop() from another thread returns while the callback of change 1 still runs, and changes
    2..4 come after it; from the callback of change 2, it drops 3 and 4, read with 2."""
    got: list[int] = []
    running, release = threading.Event(), threading.Event()

    def held(change: Change) -> None:
        got.append(change.sequence)
        running.set()
        release.wait(30)
        if from_callback and change.sequence == 2:
            watcher.stop()

    with Gate() as gate:
        watcher = gate.on_change(held, interval=0.001)
        gate.enable_feature("f1")
        assert running.wait(30)  # the callback of change 1 runs: 2..4 are read together next
        if not from_callback:
            watcher.stop(timeout=0.01)
            assert watcher.running
        for i in (2, 3, 4):
            gate.enable_feature(f"f{i}")
        release.set()
        watcher._thread.join(30)
        assert not watcher.running and watcher.error is None
    assert got == ([1, 2] if from_callback else [1])


def test_the_watcher_stops_when_the_gate_is_closed_even_from_the_callback() -> None:
    gate = Gate(canary(100))
    closed = threading.Event()

    def close_it(change: Change) -> None:
        gate.close()  # the gate is not held while the callback runs
        closed.set()

    watcher = gate.on_change(close_it, interval=0.001)
    gate.enable_feature("x")
    assert closed.wait(30)
    watcher._thread.join(30)
    assert not watcher.running and watcher.error is None
    with pytest.raises(GateClosedError):
        gate.change_count()
    with pytest.raises(GateClosedError, match="^on_change on a closed Gate"):
        gate.on_change(close_it)


def test_the_watcher_holds_the_gate_weakly_and_stops_when_it_is_collected() -> None:
    gate = Gate(canary(100))
    watcher = gate.on_change(lambda change: None, interval=0.001)
    # Let the watcher look at the unchanged gate many times first: it must not keep it alive
    # between two looks.
    time.sleep(0.05)
    assert watcher.running
    del gate
    gc.collect()
    watcher._thread.join(30)
    assert not watcher.running


def test_a_raising_callback_stops_the_watcher_and_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    reported: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", reported.append)
    with Gate(canary(100)) as gate:
        watcher = gate.on_change(lambda change: 1 / 0, interval=0.001)
        gate.enable_feature("x")
        watcher._thread.join(30)
        assert isinstance(watcher.error, ZeroDivisionError)
        assert len(reported) == 1


def test_a_watcher_whose_callback_raised_does_not_keep_its_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The error it keeps held its traceback, whose frames held the gate (the callback's
    closure), natively too, for as long as the host kept the watcher; so did the exceptions it
    chains to (its context here, besides its cause)."""
    reported: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: reported.append(args.exc_value))

    def watched() -> tuple[weakref.ref[Gate], Any]:
        gate = Gate(canary(10))

        def callback(change: Any) -> None:
            try:
                gate.name()
                raise KeyError("first")
            except KeyError:
                raise RuntimeError("callback failed") from ValueError("cause")

        watcher = gate.on_change(callback, interval=0.01)
        gate.rollback("bad")
        watcher._thread.join(30)
        return weakref.ref(gate), watcher

    gate, watcher = watched()
    gc.collect()
    assert isinstance(watcher.error, RuntimeError)
    assert reported == [watcher.error]
    assert gate() is None, "the watcher kept its gate alive through the callback's traceback"


@pytest.mark.parametrize(
    "interval, shown",
    [
        (0, "0"),
        (-1.5, "-1.5"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (threading.TIMEOUT_MAX * 2, repr(threading.TIMEOUT_MAX * 2)),
        (10**400, "1" + "0" * 159 + "...(401 bytes)"),  # cut at 160 bytes
        (None, "None"),
    ],
)
def test_an_interval_a_wait_cannot_take_is_refused(interval: Any, shown: str) -> None:
    with Gate() as gate:
        with pytest.raises(InvalidArgumentError) as caught:
            gate.on_change(lambda change: None, interval=interval)
        assert caught.value.message.startswith(f"invalid interval = {shown}: ")
        with pytest.raises(InvalidArgumentError, match="invalid callback = 5: not callable"):
            gate.on_change(5, interval=0.01)  # type: ignore[arg-type]
        assert not [t for t in threading.enumerate() if t.name == "promotion-gates-changes"]


@pytest.mark.parametrize(
    "timeout, shown",
    [
        ("x", "'x'"),
        (float("nan"), "nan"),
        (-1, "-1"),
        (threading.TIMEOUT_MAX * 2, repr(threading.TIMEOUT_MAX * 2)),
    ],
)
def test_a_stop_timeout_a_wait_cannot_take_is_refused(timeout: Any, shown: str) -> None:
    with Gate() as gate:
        watcher = gate.on_change(lambda change: None, interval=0.01)
        with pytest.raises(InvalidArgumentError) as caught:
            watcher.stop(timeout)
        assert caught.value.message.startswith(f"invalid timeout = {shown}: ")
        assert watcher.running  # a refused stop stops nothing
        watcher.stop(timeout=1)
        assert not watcher.running


def test_a_watcher_ended_by_a_failing_read_keeps_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    reported: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", reported.append)
    failure = PanicError(Status.PANIC, "the read failed")

    def failing_read(self: Gate, after: int) -> list[Change]:
        raise failure

    with Gate() as gate:
        watcher = gate.on_change(lambda change: None, interval=0.001)
        monkeypatch.setattr(Gate, "changes_since", failing_read)
        gate.enable_feature("x")
        watcher._thread.join(30)
        assert not watcher.running
        assert watcher.error is failure
        assert [r.exc_value for r in reported] == [failure]


def test_a_slow_callback_sees_the_gap_in_sequence() -> None:
    got: list[int] = []
    release = threading.Event()

    def slow(change: Change) -> None:
        got.append(change.sequence)
        release.wait(30)

    with Gate() as gate:
        watcher = gate.on_change(slow, interval=0.001)
        gate.enable_feature("f")
        while not got:
            time.sleep(0.001)
        for i in range(50):  # 100 more changes while the callback waits
            gate.enable_feature(f"g{i}")
            gate.disable_feature(f"g{i}")
        release.set()
        deadline = time.monotonic() + 30
        while got[-1] != 101 and time.monotonic() < deadline:
            time.sleep(0.001)
        watcher.stop()
    # The first change, then the last 64 kept (38..101): changes 2..37 were missed.
    assert got[0] == 1 and got[1] == 38 and got[-1] == 101 and len(got) == 65


def test_read_health_never_rolls_back_and_monitor_health_does() -> None:
    with Gate(canary(100, auto_rollback_enabled=False)) as gate:
        for i in range(50):
            gate.record_by_id(f"user-{i}", False, 0.001)
        gate.swap_config(canary(100, auto_rollback_enabled=True))  # same stage, same data
        for _ in range(3):
            health = gate.read_health()
            assert health.recommendation == Recommendation.ROLLBACK
            assert health.canary_requests == 50 and "FIRED" in health.evidence
        assert gate.state().environment == Environment.CANARY
        assert gate.monitor_health().recommendation == Recommendation.ROLLBACK
        assert gate.state().environment == Environment.PRODUCTION


def test_a_swapped_slo_keeps_the_stage_and_the_recorded_counts() -> None:
    with Gate(canary(50), slo={"min_samples": 40, "warm_up_ms": 0}) as gate:
        assert gate.slo["min_samples"] == 40
        for i in range(300):
            gate.record_by_id(f"user-{i}", True, 0.02)
        before, state, seen = gate.read_health(), gate.state(), gate.change_count()
        gate.swap_slo({"min_samples": 1000, "latency_target_ms": 250})
        after = gate.read_health()
        assert (after.canary_requests, after.production_requests, after.stage) == (
            before.canary_requests,
            before.production_requests,
            before.stage,
        )
        assert before.sufficient_data and not after.sufficient_data
        assert gate.state() == state
        assert gate.slo["min_samples"] == 1000 and gate.slo["latency_target_ms"] == 250
        [change] = gate.changes_since(seen)
        assert change.kind == ChangeKind.CONFIG and change.stage == state.stage
        with pytest.raises(InvalidConfigError, match=r"max_error_rate.*2\.5"):
            gate.swap_slo({"max_error_rate": 2.5})
        with pytest.raises(InvalidJsonError, match="max_eror_rate"):
            gate.swap_slo('{"max_eror_rate": 0.1}')
        assert gate.slo["min_samples"] == 1000


def test_sync_now_reads_another_gates_rollback_at_once(tmp_path: Any) -> None:
    def config(sync_ms: int) -> dict[str, Any]:
        store = {"sqlite": {"path": str(tmp_path / "gate.db"), "sync_interval_ms": sync_ms}}
        return {"environment": {"canary": {"traffic_percent": 10}}, "store": store}

    slow = Gate(config(60000))  # reads the store once a minute: here only when asked
    other = Gate(config(20))
    seen = slow.change_count()
    other.rollback("bad deploy")
    assert slow.sync_now() is True
    deadline = time.monotonic() + 5
    while slow.change_count() == seen:
        assert time.monotonic() < deadline, "the rollback was not read within 5 s"
        time.sleep(0.001)
    storeless = Gate()
    assert storeless.sync_now() is False
    for gate in (slow, other, storeless):
        gate.close()
    with pytest.raises(GateClosedError):
        storeless.sync_now()


def test_watchers_whose_callbacks_use_their_gates_let_the_gates_be_collected() -> None:
    """The thread held the watcher, the watcher the callback, the callback the gate: a gate
    dropped with such a watcher running was never collected, nor its thread ended."""
    seen: list[int] = []

    def watch(gate: Gate) -> ChangeWatcher:
        # The common usage: a closure over the gate that reads it on each change.
        return gate.on_change(lambda change: seen.append(gate.change_count()), interval=0.001)

    gates = [Gate(canary(100, gate=f"g{i}")) for i in range(50)]
    watchers = [watch(gate) for gate in gates]
    collected = [weakref.ref(gate) for gate in gates]
    for gate in gates:
        gate.enable_feature("f")
    deadline = time.monotonic() + 30
    while len(seen) < 50 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert seen == [1] * 50, "a watcher did not call back"
    del gates, gate
    # A watcher's thread holds its gate for the moment of each look (every millisecond): a
    # gate is collected once its thread is between looks, within a few of them.
    deadline = time.monotonic() + 30
    while any(ref() is not None for ref in collected) and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert [ref() for ref in collected] == [None] * 50
    for watcher in watchers:
        watcher._thread.join(30)
    assert not any(watcher.running for watcher in watchers)
    assert not [t for t in threading.enumerate() if t.name == "promotion-gates-changes"]


def test_a_watcher_that_ended_lets_its_gate_drop_the_callback() -> None:
    with Gate() as gate:
        watcher = gate.on_change(lambda change: None, interval=0.001)
        assert len(gate._watchers) == 1
        watcher.stop()
        assert gate._watchers == []


def watcher_threads() -> int:
    return sum(t.name == "promotion-gates-changes" for t in threading.enumerate())


def test_close_stops_a_watcher_at_once_not_after_its_interval() -> None:
    """Its thread slept out the wait under way (up to its interval, an hour if asked) after the
    gate was closed."""
    gate = Gate()
    watcher = gate.on_change(lambda change: None, interval=60)
    gate.close()
    watcher._thread.join(2)
    assert not watcher.running
    assert gate._watchers == []


def test_a_collected_gate_stops_its_watcher_at_once() -> None:
    gate = Gate()
    watcher = gate.on_change(lambda change: gate.name(), interval=60)  # a cycle through the gate
    collected = weakref.ref(gate)
    del gate
    gc.collect()
    assert collected() is None
    watcher._thread.join(2)
    assert not watcher.running


def test_a_host_reloading_gates_keeps_no_watcher_threads() -> None:
    before = watcher_threads()
    for _ in range(20):
        gates = [Gate() for _ in range(5)]
        for gate in gates:
            gate.on_change(lambda change: None, interval=3600)
        for gate in gates:
            gate.close()
    deadline = time.monotonic() + 2
    while watcher_threads() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert watcher_threads() == before


def test_a_close_while_on_change_subscribes_refuses_the_watcher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A close() between the watcher's read of the count and its subscription signalled the
    gate's watchers without the new one, and on_change returned a watcher running on a closed
    gate, asleep for its whole interval."""
    from promotion_gates import changes

    gate = Gate()
    subscribe = changes._Subscription.__init__

    def close_then_subscribe(self: Any, *args: Any) -> None:
        gate.close()  # after change_count() read the open gate, before the subscription
        subscribe(self, *args)

    monkeypatch.setattr(changes._Subscription, "__init__", close_then_subscribe)
    before = watcher_threads()
    with pytest.raises(GateClosedError, match="^on_change on a closed Gate"):
        gate.on_change(lambda change: None, interval=60)
    assert gate._watchers == []
    assert watcher_threads() == before
