//! Fleet-wide judging on a SQLite state store, with real processes: four processes that each
//! see a quarter of a canary's traffic judge it as one process seeing all of it would
//! (`common::fleet`; the same on etcd in `tests/store_etcd.rs`), and an instance that stops
//! publishing stops counting, and recording with the others' counts allocates nothing.

mod common;

use common::alloc::allocations_during;
use common::fleet::{
    SYNC_MS, a_bad_canary_is_rolled_back_by_four_as_by_one, child,
    no_a_a_canary_is_rolled_back_by_four, open,
};
use common::scratch::Scratch;
use common::stored::eventually;
use promotion_gates::{Environment, PromotionConfig};
use std::time::Duration;

/// A new SQLite store in `dir`: the `store` key's JSON.
fn sqlite(dir: &Scratch) -> String {
    let path = dir.file("gate.db");
    format!(
        r#"{{"sqlite": {{"path": {path:?}, "sync_interval_ms": {SYNC_MS}, "busy_timeout_ms": 5000}}}}"#
    )
}

#[test]
fn four_processes_with_a_quarter_of_a_bad_canarys_traffic_each_roll_it_back_as_one_would() {
    if child() {
        return;
    }
    let dir = Scratch::new("fleet-bad");
    a_bad_canary_is_rolled_back_by_four_as_by_one(
        "four_processes_with_a_quarter_of_a_bad_canarys_traffic_each_roll_it_back_as_one_would",
        &sqlite(&dir),
        &dir.file(""),
    );
}

#[test]
fn four_processes_on_a_a_traffic_roll_back_no_canary_one_process_keeps() {
    if child() {
        return;
    }
    let dir = Scratch::new("fleet-a-a");
    no_a_a_canary_is_rolled_back_by_four(
        "four_processes_on_a_a_traffic_roll_back_no_canary_one_process_keeps",
        &sqlite(&dir),
        &dir.file(""),
    );
}

#[test]
fn a_gate_that_stops_publishing_stops_counting_after_its_time_to_live() {
    let dir = Scratch::new("fleet-ttl");
    let path = dir.file("gate.db");
    // Time to live: max(5 x 10 ms, 200 ms + 2 x 10 ms, 1 s) = 1 s.
    let store = format!(
        r#"{{"sqlite": {{"path": {path:?}, "sync_interval_ms": {SYNC_MS}, "busy_timeout_ms": 200}}}}"#
    );
    let (watcher, recorder) = (open(Some(&store)), open(Some(&store)));
    for i in 0..400 {
        let decision = recorder.route_request(&format!("user-{i}"));
        recorder.record_outcome(&decision, true, Duration::from_millis(5));
    }
    // The watcher records nothing: whatever it merged, the recorder's numbers are its own.
    let recorded = recorder.health();
    let total = recorded.canary_requests + recorded.production_requests;
    assert_eq!(total, 400);
    // Two gates of one process are two instances: each counts the other's.
    eventually("the watcher merges the recorder's counts", || {
        let health = watcher.health();
        health.evidence.instances == 2
            && health.canary_requests + health.production_requests == total
    });
    drop(recorder);
    // The dropped gate's row outlives it, until its time to live (1 s here) has passed.
    eventually("the dropped gate's counts expire", || {
        watcher.health().evidence.instances == 1
    });
    assert_eq!(watcher.health().canary_requests, 0);
}

#[test]
fn with_fleet_judging_off_each_gate_judges_its_own_outcomes() {
    let dir = Scratch::new("fleet-off");
    let path = dir.file("gate.db");
    let store = format!(
        r#"{{"sqlite": {{"path": {path:?}, "sync_interval_ms": {SYNC_MS}, "fleet_judging": false}}}}"#
    );
    let (watcher, recorder) = (open(Some(&store)), open(Some(&store)));
    for i in 0..400 {
        let decision = recorder.route_request(&format!("user-{i}"));
        recorder.record_outcome(&decision, true, Duration::from_millis(5));
    }
    // A flag write travels between them (they share the release state) ...
    recorder.enable_feature("shared").unwrap();
    eventually("the watcher follows the recorder's write", || {
        watcher.is_feature_enabled("shared")
    });
    // ... and many sync ticks later, the watcher still judges only what it recorded.
    std::thread::sleep(Duration::from_millis(10 * SYNC_MS));
    let health = watcher.health();
    assert_eq!(health.evidence.instances, 1);
    assert_eq!(health.canary_requests + health.production_requests, 0);
    assert_eq!(recorder.health().evidence.instances, 1);
}

/// With another instance's counts merged, the record path still allocates nothing: its
/// screen adds their counters, its periodic evaluations their histograms, in place.
#[test]
fn recording_with_the_other_instances_counts_allocates_nothing() {
    let dir = Scratch::new("fleet-alloc");
    let store = sqlite(&dir);
    let other = open(Some(&store));
    for i in 0..400 {
        let decision = other.route_request(&format!("other-{i}"));
        other.record_outcome(&decision, true, Duration::from_millis(5));
    }
    // On a new thread, so that its first record is the thread's first.
    std::thread::spawn(move || {
        let (gate, clock) = common::gate_with_clock(
            PromotionConfig::from_json(&format!(
                r#"{{"gate": "checkout", "environment": {{"canary": {{"traffic_percent": 50.0}}}},
                    "auto_rollback_enabled": true, "store": {store}}}"#
            ))
            .unwrap(),
        );
        let decisions: Vec<_> = (0..64)
            .map(|i| gate.route_request(&format!("user-{i}")))
            .collect();
        assert!(decisions.iter().any(|d| d.is_canary) && decisions.iter().any(|d| !d.is_canary));
        gate.record_outcome(&decisions[0], true, Duration::from_millis(5)); // the thread's first
        eventually("the gate merges the other's counts", || {
            gate.health().evidence.instances == 2
        });
        // 1 ms per record: about 20 periodic evaluations (one a second); one failure in 50,
        // so that the screen runs on the canary's errors, too few to act on.
        let (mut allocations, mut canary_failures) = (0, 0);
        for i in 0..20_000u64 {
            clock.advance(Duration::from_millis(1));
            let decision = &decisions[(i % 64) as usize];
            let success = i % 50 != 0;
            canary_failures += u64::from(decision.is_canary && !success);
            let (_, allocated) = allocations_during(|| {
                gate.record_outcome(decision, success, Duration::from_millis(5))
            });
            allocations += allocated.count;
        }
        assert!(canary_failures > 0);
        assert_eq!(gate.health().evidence.instances, 2, "merged while measured");
        assert!(
            matches!(gate.environment(), Environment::Canary { .. }),
            "nothing acted"
        );
        assert_eq!(allocations, 0);
    })
    .join()
    .unwrap();
}
