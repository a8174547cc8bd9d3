//! Fleet-wide judging on a SQLite state store, with real processes: four processes that each
//! see a quarter of a canary's traffic judge it as one process seeing all of it would
//! (`common::fleet`; the same on etcd in `tests/store_etcd.rs`); an instance that stops
//! publishing keeps its counts in the others' windows until they age out, and its errors do not
//! come back when it publishes again; and recording with the others' counts allocates (or
//! frees) nothing.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a broken expectation is a failed test"
)]

mod common;

use common::alloc::allocations_during;
use common::fleet::{
    SYNC_MS, a_bad_canary_is_rolled_back_by_four_as_by_one, child,
    no_a_a_canary_is_rolled_back_by_four, open,
};
use common::scratch::Scratch;
use common::stored::eventually;
use promotion_gates::{Environment, ManualClock, PromotionConfig, PromotionGateManager};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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

/// Two gates on one SQLite store, as in two processes (two instances): `watcher`, on a manual
/// clock, records nothing; `failing` has recorded canary traffic that all failed, and the
/// watcher has merged it (and judged once, leaving a reading at 0 s).
struct DropOut {
    watcher: PromotionGateManager,
    clock: Arc<ManualClock>,
    failing: Option<PromotionGateManager>,
    /// The failing gate's canary errors, all of them.
    errors: u64,
    /// A connection of the test's own to the store's file, and each gate's instance id there.
    check: rusqlite::Connection,
    watcher_id: String,
    failing_id: String,
}

impl DropOut {
    fn new(dir: &Scratch) -> Self {
        let path = dir.file("gate.db");
        // Time to live: max(5 x 10 ms, 200 ms + 2 x 10 ms, 1 s) = 1 s.
        let document = format!(
            r#"{{"gate": "checkout", "environment": {{"canary": {{"traffic_percent": 50.0}}}},
                "auto_rollback_enabled": false,
                "store": {{"sqlite": {{"path": {path:?}, "sync_interval_ms": {SYNC_MS}, "busy_timeout_ms": 200}}}}}}"#
        );
        let config = PromotionConfig::from_json(&document).unwrap();
        let (watcher, clock) = common::gate_with_clock(config.clone());
        let check = rusqlite::Connection::open(&path).unwrap();
        let ids = |check: &rusqlite::Connection| -> Vec<String> {
            let mut statement = check
                .prepare("SELECT instance FROM contribution ORDER BY instance")
                .unwrap();
            let rows = statement.query_map([], |row| row.get(0)).unwrap();
            rows.map(Result::unwrap).collect()
        };
        eventually("the watcher publishes", || ids(&check).len() == 1);
        let watcher_id = ids(&check).remove(0);
        let (failing, _) = common::gate_with_clock(config);
        let mut errors = 0;
        for i in 0..400 {
            let decision = failing.route_request(&format!("user-{i}"));
            errors += u64::from(decision.is_canary);
            failing.record_outcome(&decision, !decision.is_canary, Duration::from_millis(5));
        }
        assert!(errors > 100, "{errors}");
        eventually("the watcher merges the failing gate's errors", || {
            let health = watcher.health();
            health.evidence.instances == 2 && health.evidence.canary.errors == errors
        });
        let failing_id = ids(&check)
            .into_iter()
            .find(|id| *id != watcher_id)
            .unwrap();
        watcher.monitor_canary_health(); // a reading at 0 s
        Self {
            watcher,
            clock,
            failing: Some(failing),
            errors,
            check,
            watcher_id,
            failing_id,
        }
    }

    /// When `instance` last published (ms since the epoch), if its row is there.
    fn published_at(&self, instance: &str) -> Option<i64> {
        self.check
            .query_row(
                "SELECT updated_at_ms FROM contribution WHERE instance = ?1",
                [instance],
                |row| row.get(0),
            )
            .ok()
    }

    /// Waits until the watcher's sync thread has read the store, start to end, after this
    /// call began (two of its publications), doing `meanwhile` at each look.
    fn watcher_reads_again(&self, mut meanwhile: impl FnMut()) {
        let mut seen = Vec::new();
        eventually("two publications of the watcher", || {
            meanwhile();
            let at = self.published_at(&self.watcher_id);
            if seen.last() != Some(&at) {
                seen.push(at);
            }
            seen.len() > 2
        });
    }

    /// Drops the failing gate, then waits until its row expired (its time to live passed and
    /// the watcher's next publication deleted it) and the watcher read the store without it.
    fn drop_the_failing_gate(&mut self) {
        drop(self.failing.take());
        eventually("the failing gate's row expires", || {
            self.published_at(&self.failing_id).is_none()
        });
        self.watcher_reads_again(|| {});
    }
}

/// Milliseconds since the epoch, as the store stamps a publication.
fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
    i64::try_from(since.unwrap().as_millis()).unwrap()
}

#[test]
fn an_instance_that_drops_out_stays_in_the_others_window_until_its_errors_age_out() {
    let dir = Scratch::new("fleet-drop-out");
    let mut fleet = DropOut::new(&dir);
    fleet.drop_the_failing_gate();
    let health = fleet.watcher.health();
    assert_eq!(
        health.evidence.canary.errors, fleet.errors,
        "the dropped gate's errors are still in the window"
    );
    assert_eq!(health.evidence.instances, 2);
    // They leave the window as time passes, as the watcher's own would.
    fleet.clock.advance(Duration::from_secs(301));
    let canary = fleet.watcher.health().evidence.canary;
    assert_eq!((canary.requests, canary.errors), (0, 0));
}

#[test]
fn errors_that_left_the_window_do_not_come_back_with_their_instance() {
    let dir = Scratch::new("fleet-come-back");
    let mut fleet = DropOut::new(&dir);
    fleet
        .check
        .execute(
            "CREATE TEMP TABLE kept AS SELECT * FROM contribution WHERE instance = ?1",
            [&fleet.failing_id],
        )
        .unwrap();
    fleet.drop_the_failing_gate();
    // Two windows pass, judged after each (readings at 301 s and 602 s): the errors left.
    for _ in 0..2 {
        fleet.clock.advance(Duration::from_secs(301));
        let canary = fleet.watcher.monitor_canary_health().evidence.canary;
        assert_eq!(canary.errors, 0);
    }
    // The instance publishes again, the same counts: nothing happened since.
    fleet
        .check
        .execute("INSERT INTO contribution SELECT * FROM kept", [])
        .unwrap();
    let refresh = || {
        fleet
            .check
            .execute(
                "UPDATE contribution SET updated_at_ms = ?1 WHERE instance = ?2",
                (now_ms(), &fleet.failing_id),
            )
            .unwrap();
    };
    fleet.watcher_reads_again(refresh);
    let health = fleet.watcher.monitor_canary_health();
    assert_eq!(health.evidence.instances, 2);
    assert_eq!(
        (
            health.evidence.canary.requests,
            health.evidence.canary.errors
        ),
        (0, 0),
        "no old error comes back into the window (nor its burst span)"
    );
}

/// A gate at Canary{50} on the store at `path`, judging only (no automatic rollback), on a
/// manual clock that starts `ahead` past the real time.
fn watching_gate(path: &str, ahead: Duration) -> (PromotionGateManager, Arc<ManualClock>) {
    let document = format!(
        r#"{{"gate": "checkout", "environment": {{"canary": {{"traffic_percent": 50.0}}}},
            "auto_rollback_enabled": false,
            "store": {{"sqlite": {{"path": {path:?}, "sync_interval_ms": {SYNC_MS}}}}}}}"#
    );
    let config = PromotionConfig::from_json(&document).unwrap();
    let clock = Arc::new(ManualClock::new());
    clock.advance(ahead);
    let slo = promotion_gates::SloAdmissionController::new(promotion_gates::SloConfig::default())
        .unwrap();
    let gate = PromotionGateManager::with_clock(config, slo, clock.clone()).unwrap();
    (gate, clock)
}

/// Records `seconds` of 20 requests a second on `gate`, advancing its clock, the canary
/// failing at `canary_rate` (stable at 1 %); returns the canary's `[requests, errors]`.
fn traffic(
    gate: &PromotionGateManager,
    clock: &ManualClock,
    seconds: u64,
    canary_rate: f64,
    from: u64,
) -> [u64; 2] {
    let mut canary = [0, 0];
    for i in from..from + seconds * 20 {
        let decision = gate.route_request(&format!("user-{i}"));
        // Every 1/rate-th request of a cohort fails, by the request's number.
        let rate = if decision.is_canary {
            canary_rate
        } else {
            0.01
        };
        let fails = (i as f64 * rate).floor() != ((i + 1) as f64 * rate).floor();
        gate.record_outcome(&decision, !fails, Duration::from_millis(5));
        if decision.is_canary {
            canary[0] += 1;
            canary[1] += u64::from(fails);
        }
        if i % 20 == 19 {
            clock.advance(Duration::from_secs(1));
        }
    }
    canary
}

/// Gate A (its clock `a_ahead` past the real time) records a long clean stage, 25 minutes by
/// its clock; then gate B (its clock `b_ahead` past the real time) opens on the store and reads
/// A. Returns A, its clock, B, and A's canary `[requests, errors]`.
fn a_long_stage_then_another_gate_joins(
    path: &str,
    a_ahead: Duration,
    b_ahead: Duration,
) -> (
    PromotionGateManager,
    Arc<ManualClock>,
    PromotionGateManager,
    [u64; 2],
) {
    let (a, a_clock) = watching_gate(path, a_ahead);
    let old = traffic(&a, &a_clock, 25 * 60, 0.01, 0);
    let check = rusqlite::Connection::open(path).unwrap();
    eventually("A publishes all of it", || {
        check
            .query_row("SELECT canary_requests FROM contribution", [], |row| {
                row.get::<_, i64>(0)
            })
            .is_ok_and(|published| published as u64 == old[0])
    });
    let (b, _) = watching_gate(path, b_ahead);
    eventually("B reads A", || b.health().evidence.instances == 2);
    (a, a_clock, b, old)
}

#[test]
fn a_process_joining_mid_stage_judges_the_others_traffic_from_its_joining_on() {
    let dir = Scratch::new("fleet-join");
    let path = dir.file("gate.db");
    // B joins 30 minutes after A opened (A's instance id dates its opening by A's clock, the
    // real time then; B's clock is 30 minutes past it).
    let (a, a_clock, b, old) =
        a_long_stage_then_another_gate_joins(&path, Duration::ZERO, Duration::from_secs(30 * 60));
    assert_eq!(
        b.health().evidence.canary.requests,
        0,
        "A's {} canary requests of the stage so far are not B's window",
        old[0]
    );
    // Then A's canary fails more often: B's window holds what A records from now on.
    let recent = traffic(&a, &a_clock, 60, 0.2, 30_000);
    eventually("B reads what A recorded since", || {
        b.health().evidence.canary.requests == recent[0]
    });
    let canary = b.health().evidence.canary;
    assert_eq!([canary.requests, canary.errors], recent);
    assert!(canary.error_rate > 0.15, "{}", canary.error_rate);
}

#[test]
fn a_host_clock_ahead_does_not_put_an_instances_whole_stage_in_the_window() {
    let dir = Scratch::new("fleet-skew");
    let path = dir.file("gate.db");
    // A's host clock runs an hour ahead of B's: A's instance id says it opens 35 minutes after
    // B's now, so when A's gate opened is not known to B, which judges A's traffic from its
    // first read on.
    let (a, a_clock, b, old) =
        a_long_stage_then_another_gate_joins(&path, Duration::from_secs(3600), Duration::ZERO);
    assert_eq!(
        b.health().evidence.canary.requests,
        0,
        "A's {} canary requests of the stage so far are not B's window",
        old[0]
    );
    // What A records from then on is B's to judge.
    let recent = traffic(&a, &a_clock, 60, 0.2, 30_000);
    eventually("B reads what A recorded since", || {
        b.health().evidence.canary.requests == recent[0]
    });
    let canary = b.health().evidence.canary;
    assert_eq!([canary.requests, canary.errors], recent);
}

#[test]
fn with_fleet_judging_off_each_gate_judges_its_own_outcomes() {
    let dir = Scratch::new("fleet-off");
    let path = dir.file("gate.db");
    let store = format!(
        r#"{{"sqlite": {{"path": {path:?}, "sync_interval_ms": {SYNC_MS}, "fleet_judging": false}}}}"#
    );
    let (watcher, recorder) = (open(Some(&store)), open(Some(&store)));
    // A flag write travels between them (they share the release state) ...
    recorder.enable_feature("shared").unwrap();
    eventually("the watcher follows the recorder's write", || {
        watcher.is_feature_enabled("shared")
    });
    // ... and the outcomes recorded in the stage it started (recorded before it, they were
    // the previous stage's, which no gate counts: the check could not fail) ...
    for i in 0..400 {
        let decision = recorder.route_request(&format!("user-{i}"));
        recorder.record_outcome(&decision, true, Duration::from_millis(5));
    }
    let recorded = recorder.health();
    assert_eq!(recorded.canary_requests + recorded.production_requests, 400);
    assert_eq!(recorded.evidence.instances, 1);
    // ... are, for many sync ticks, judged by the recorder alone.
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(SYNC_MS));
        let health = watcher.health();
        assert_eq!(health.canary_requests + health.production_requests, 0);
        assert_eq!(health.evidence.instances, 1);
    }
    assert_eq!(recorder.health().evidence.instances, 1);
}

/// With another instance's counts merged, the record path still allocates (or frees) nothing: its
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
        // so that the screen runs on the canary's errors, too few to act on. Between two
        // evaluations the sync thread ticks (it runs on real time), replacing the fleet the
        // last one added: the next must not free it (nor anything else) on this thread.
        let (mut allocations, mut frees, mut canary_failures) = (0, 0, 0);
        for i in 0..20_000u64 {
            if i % 1000 == 500 {
                std::thread::sleep(Duration::from_millis(3 * SYNC_MS));
            }
            clock.advance(Duration::from_millis(1));
            let decision = &decisions[(i % 64) as usize];
            let success = i % 50 != 0;
            canary_failures += u64::from(decision.is_canary && !success);
            let (_, allocated) = allocations_during(|| {
                gate.record_outcome(decision, success, Duration::from_millis(5))
            });
            allocations += allocated.count;
            frees += allocated.frees;
        }
        assert!(canary_failures > 0);
        assert_eq!(gate.health().evidence.instances, 2, "merged while measured");
        assert!(
            matches!(gate.environment(), Environment::Canary { .. }),
            "nothing acted"
        );
        assert_eq!((allocations, frees), (0, 0));
    })
    .join()
    .unwrap();
}
