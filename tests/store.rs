//! Gates on a SQLite state store, through the public API: restart, several gates and several
//! real processes on one file, lost races, and the store's faults (locked, killed mid-write,
//! corrupt). Waits for another process's write are bounded polls (a correctness bound, many
//! times the sync interval); how fast a change travels is measured by `benches/store.rs`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a broken expectation is a failed test"
)]

mod common;

use common::scratch::{Scratch, backup, move_over, remove_store};
use common::stored::{
    a_release_deleted_alone_is_written_again_without_its_history,
    a_release_put_back_alone_to_an_older_version_is_followed, eventually, fail_the_canary,
    race_a_rollback_against_a_ramp, roll_back_while_the_store_is_unavailable, routes_to_canary,
};
use promotion_gates::{
    ChangeKind, ChangeOrigin, Environment, Error, FlagError, Overrides, PromotionConfig,
    PromotionError, PromotionGateManager, RollbackError, RollbackTrigger, SloAdmissionController,
    SloConfig, StoreProblem, SwapError,
};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SYNC_MS: u64 = 20;

/// The config document every process of a test opens the gate with.
fn document(path: &str, percent: f64, busy_timeout_ms: u64) -> String {
    format!(
        r#"{{"gate": "checkout", "environment": {{"canary": {{"traffic_percent": {percent}}}}},
            "feature_flags": ["checkout_v2"],
            "store": {{"sqlite": {{"path": {path:?}, "sync_interval_ms": {SYNC_MS}, "busy_timeout_ms": {busy_timeout_ms}}}}}}}"#
    )
}

fn open_with(
    path: &str,
    percent: f64,
    busy_timeout_ms: u64,
) -> Result<PromotionGateManager, Error> {
    let config = PromotionConfig::from_json(&document(path, percent, busy_timeout_ms))?;
    PromotionGateManager::new(config, SloAdmissionController::new(SloConfig::default())?)
}

fn open(path: &str) -> PromotionGateManager {
    open_with(path, 10.0, 5000).unwrap()
}

#[test]
fn a_rolled_back_canary_stays_rolled_back_after_a_restart() {
    let dir = Scratch::new("restart");
    let path = dir.file("gate.db");
    let gate = open(&path);
    assert_eq!(gate.stored_state_difference(), None);
    gate.promote(Environment::Canary {
        traffic_percent: 5.0,
    })
    .unwrap(); // ramping down: ungated
    gate.rollback("bad deploy").unwrap();
    let history = gate.rollback_history();
    let stage = gate.stage();
    let config = gate.config();
    drop(gate);

    let reopened = open(&path);
    assert_eq!(reopened.environment(), Environment::Production);
    assert!(!reopened.is_feature_enabled("checkout_v2"));
    assert_eq!(reopened.rollback_history(), history);
    assert_eq!(reopened.stage(), stage);
    assert_eq!(reopened.config(), config);
    assert!(!routes_to_canary(&reopened));
    // The static document still says Canary{10} with a flag: reported, not applied.
    let difference = reopened.stored_state_difference().unwrap();
    assert!(difference.contains("environment: static"), "{difference}");
    assert!(difference.contains("feature_flags"), "{difference}");
}

/// The stored release's version and its `rollout` and `rollout_split_from` columns, as
/// `sqlite3` shows them.
fn stored_rollout(path: &str) -> (i64, Option<String>, Option<String>) {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT version, rollout, rollout_split_from FROM release",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap()
}

#[test]
fn the_stored_rollout_changes_when_a_rollout_starts_whichever_gate_writes() {
    let dir = Scratch::new("rollout-number");
    let path = dir.file("gate.db");
    // The version of the write that stored it, of the one that started it, and the rollout's
    // first stage at its split and salt.
    let rollout = |version: i64, started: i64, split_from: i64| {
        (
            version,
            Some(format!(r#"{{"version":{version},"started":{started}}}"#)),
            Some(format!(
                r#"{{"version":{version},"split_from":{split_from}}}"#
            )),
        )
    };
    let a = open(&path);
    assert_eq!(
        stored_rollout(&path),
        rollout(1, 1, 1),
        "the first write starts one"
    );
    a.rollback("bad deploy").unwrap();
    assert_eq!(stored_rollout(&path), rollout(2, 1, 2));
    let b = open(&path);
    b.enable_feature("next").unwrap(); // in Production: no stage
    assert_eq!(stored_rollout(&path), rollout(3, 1, 2));
    b.promote(Environment::Canary {
        traffic_percent: 1.0,
    })
    .unwrap();
    assert_eq!(stored_rollout(&path), rollout(4, 4, 3), "a new rollout");
    // The other gate goes on from the rollout it follows.
    eventually("the first gate follows the new rollout", || {
        a.environment()
            == Environment::Canary {
                traffic_percent: 1.0,
            }
    });
    a.enable_feature("more").unwrap(); // a stage a flag turned on started: the same split
    assert_eq!(stored_rollout(&path), rollout(5, 4, 3));
    a.rollback("bad again").unwrap();
    assert_eq!(stored_rollout(&path), rollout(6, 4, 5));
}

#[test]
fn a_new_rollout_is_explicit_and_reaches_every_gate() {
    let dir = Scratch::new("new-rollout");
    let path = dir.file("gate.db");
    let first = open(&path);
    first.rollback("bad deploy").unwrap();
    let second = open(&path);
    assert_eq!(second.environment(), Environment::Production);
    // A new rollout from Production (ungated), or an operator's swap_config.
    second
        .promote(Environment::Canary {
            traffic_percent: 1.0,
        })
        .unwrap();
    eventually("the first gate follows the new rollout", || {
        first.environment()
            == Environment::Canary {
                traffic_percent: 1.0,
            }
    });
    let mut next = second.config();
    next.environment = Environment::Canary {
        traffic_percent: 20.0,
    };
    next.feature_flags = vec!["checkout_v3".into()];
    second.swap_config(next).unwrap();
    eventually("the first gate follows swap_config", || {
        first.is_feature_enabled("checkout_v3")
    });
    assert_eq!(first.config(), second.config());
}

#[test]
fn another_gates_rollback_reaches_a_subscriber_as_a_change_from_the_store() {
    let dir = Scratch::new("changes");
    let path = dir.file("gate.db");
    let (writer, watcher) = (open(&path), open(&path));
    let changes = watcher.subscribe();
    writer.rollback("bad deploy").unwrap();
    let change = changes
        .recv_timeout(Duration::from_secs(5))
        .expect("the other gate's rollback, within the sync interval");
    assert_eq!(change.origin, ChangeOrigin::Store);
    assert_eq!(change.kind(), ChangeKind::Rollback);
    assert_eq!(change.to, Environment::Production);
    assert_eq!(change.flags.disabled, ["checkout_v2"]);
    let event = change.rollback.as_ref().expect("the stored event");
    assert_eq!(
        (event.trigger, event.reason.as_str()),
        (RollbackTrigger::Manual, "bad deploy")
    );
    assert_eq!(watcher.change_count(), 1);
    let own = writer.changes_since(0);
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].origin, ChangeOrigin::ThisGate);
}

#[test]
fn another_gates_swap_that_graduates_a_flag_reaches_a_subscriber_as_a_flag_change() {
    let dir = Scratch::new("graduated-by-swap");
    let path = dir.file("gate.db");
    let (writer, watcher) = (open(&path), open(&path));
    let changes = watcher.subscribe();
    let stage = watcher.stage();
    let mut next = writer.config();
    next.feature_flags.clear();
    next.graduated_flags = vec!["checkout_v2".into()];
    writer.swap_config(next).unwrap();
    let change = changes
        .recv_timeout(Duration::from_secs(5))
        .expect("the other gate's swap, within the sync interval");
    assert_eq!(change.origin, ChangeOrigin::Store);
    assert_eq!(change.kind(), ChangeKind::Flags, "{change:?}");
    assert_eq!(change.flags.enabled, ["checkout_v2"]);
    assert!(
        change.stage > stage,
        "the stable version's requests got a flag mid-stage"
    );
}

#[test]
fn two_gates_rolling_back_at_once_end_on_the_stored_stage_with_one_change_each() {
    let dir = Scratch::new("double-rollback");
    let path = dir.file("gate.db");
    let gates = [
        open_with(&path, 10.0, 20).unwrap(),
        open_with(&path, 10.0, 20).unwrap(),
    ];
    // Both roll back before either can write: each publishes its own rollback's stage.
    let lock = WriteLock::take(&path);
    for gate in &gates {
        fail_the_canary(gate);
    }
    drop(lock);
    eventually("one rollback is written", || {
        stored_environment(&path) == "Production"
    });
    let stored_stage = || -> u64 {
        let check = rusqlite::Connection::open(&path).unwrap();
        let stage: i64 = check
            .query_row("SELECT stage FROM release", [], |row| row.get(0))
            .unwrap();
        u64::try_from(stage).unwrap()
    };
    // The writer settles its rollback; the other follows the stored state, where its stage
    // already is: no stage of its own, no second change.
    std::thread::sleep(Duration::from_millis(10 * SYNC_MS));
    for gate in &gates {
        assert_eq!(gate.stage().get(), stored_stage());
        let kinds: Vec<_> = gate.changes_since(0).iter().map(|c| c.kind()).collect();
        assert_eq!(kinds, [ChangeKind::Rollback]);
    }
}

/// Runs `during` while a host's write (a flag edit) waits for the store, locked by another
/// connection, holding the gate's writer lock (up to busy_timeout_ms), and checks that the
/// write was still waiting when `during` returned: what `during` did never waited for it.
fn while_a_hosts_write_waits(path: &str, gate: &PromotionGateManager, during: impl FnOnce()) {
    the_hosts_write_while_it_waits(path, gate, during).unwrap();
}

/// [`while_a_hosts_write_waits`], returning what the host's write (a flag turned on) returned.
fn the_hosts_write_while_it_waits(
    path: &str,
    gate: &PromotionGateManager,
    during: impl FnOnce(),
) -> Result<(), Error> {
    let lock = WriteLock::take(path);
    let written = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let host = scope.spawn(|| {
            let result = gate.enable_feature("during_the_wait");
            written.store(true, std::sync::atomic::Ordering::SeqCst);
            result
        });
        std::thread::sleep(Duration::from_millis(200)); // set-up: let the host's write start
        during();
        assert!(
            !written.load(std::sync::atomic::Ordering::SeqCst),
            "the host's write ended first: what ran meanwhile may have waited for it"
        );
        drop(lock);
        host.join().unwrap()
    })
}

#[test]
fn recording_never_waits_for_a_hosts_write_being_stored() {
    let dir = Scratch::new("handoff");
    let path = dir.file("gate.db");
    let gate = open_with(&path, 50.0, 10_000).unwrap();
    let write = the_hosts_write_while_it_waits(&path, &gate, || {
        // Recording a failing canary decides a rollback; it must not wait for that write.
        let mut failed = 0;
        for i in 0..400 {
            let decision = gate.route_request(&format!("user-{i}"));
            if decision.is_canary {
                gate.record_outcome(&decision, false, Duration::from_millis(5));
                failed += 1;
            }
        }
        assert!(failed > 50, "{failed} canary requests");
        // The rollback was handed to the sync thread, not made under the held lock.
        assert_ne!(gate.environment(), Environment::Production);
    });
    // The host's write, a flag turned on, would have ended the stage the rollback was called
    // for in: the rollback was made instead.
    assert!(
        matches!(
            &write,
            Err(Error::Promotion(PromotionError::SloNotMet { .. }))
        ),
        "{write:?}"
    );
    eventually("the sync thread makes the handed-off rollback", || {
        gate.environment() == Environment::Production
    });
    let history = gate.rollback_history();
    assert_eq!(
        history.last().map(|e| e.trigger),
        Some(RollbackTrigger::Automatic)
    );
}

#[test]
fn the_history_and_the_metrics_never_wait_for_a_hosts_write_being_stored() {
    let dir = Scratch::new("reads");
    let path = dir.file("gate.db");
    let gate = open_with(&path, 50.0, 10_000).unwrap();
    gate.rollback("bad deploy").unwrap();
    while_a_hosts_write_waits(&path, &gate, || {
        // What a scrape and an operator read: answered now, not after the write (10 s).
        assert_eq!(gate.rollback_history().len(), 1);
        assert_eq!(gate.rollback_counts()[0].count, 1);
        assert_eq!(gate.rollback_events_dropped(), 0);
        let text = promotion_gates::telemetry::prometheus::exposition(&gate);
        assert!(
            text.contains(
                r#"promotion_rollbacks_total{gate="checkout",trigger="manual",rule="none"} 1"#
            ),
            "{text}"
        );
    });
}

#[test]
fn swap_config_cannot_move_the_state_or_rename_the_gate() {
    let dir = Scratch::new("swap-store");
    let gate = open(&dir.file("gate.db"));
    let mut elsewhere = gate.config();
    elsewhere.store = None;
    let Err(Error::Config(err)) = gate.swap_config(elsewhere) else {
        panic!("a swap without the store was accepted");
    };
    assert_eq!(err.field(), "store");
    let mut renamed = gate.config();
    renamed.gate = "search".into();
    let Err(Error::Config(err)) = gate.swap_config(renamed) else {
        panic!("a rename was accepted");
    };
    assert_eq!(err.field(), "gate");
    // Nor without a store: the name keys a gate's metrics and a host's shared memory too.
    let storeless = common::gate(PromotionConfig::default());
    let mut renamed = storeless.config();
    renamed.gate = "search".into();
    let Err(Error::Config(err)) = storeless.swap_config(renamed) else {
        panic!("a rename was accepted");
    };
    assert_eq!(err.field(), "gate");
    assert!(err.to_string().contains("keeps its name"), "{err}");
    assert_eq!(storeless.config().gate, PromotionConfig::default().gate);
    // Nor take a store it was not opened with: it would report a store it never opened.
    let mut stored = storeless.config();
    stored.store = gate.config().store;
    let Err(Error::Config(err)) = storeless.swap_config(stored) else {
        panic!("a gate without a store took one");
    };
    assert_eq!(err.field(), "store");
    assert!(err.to_string().contains("opened without a store"), "{err}");
    assert_eq!(storeless.config().store, None);
}

#[test]
fn a_rollback_decided_again_after_another_gates_write_is_logged_once() {
    let dir = Scratch::new("rollback-logged-once");
    let path = dir.file("gate.db");
    let slow = open_slow(&path);
    // Another gate ramps the canary down; the slow gate has not read it when it rolls back,
    // so its first attempt loses the race and is decided again on the ramped canary.
    let other = open(&path);
    let mut ramped = other.config();
    ramped.environment = Environment::Canary {
        traffic_percent: 5.0,
    };
    other.swap_config(ramped).unwrap();
    let lines = common::log_lines::LogLines::default();
    lines.during(|| slow.rollback("bad deploy").unwrap());
    let rollbacks: Vec<String> = lines
        .lines()
        .into_iter()
        .filter(|line| line.contains("promotion.rollback"))
        .collect();
    assert_eq!(rollbacks.len(), 1, "{rollbacks:#?}");
    assert!(
        rollbacks[0].contains("previous_env=Canary{5}"),
        "{rollbacks:#?}"
    );
    assert!(
        rollbacks[0].contains(r#"reason="bad deploy""#),
        "{rollbacks:#?}"
    );
    assert_eq!(slow.rollback_history().len(), 1);
}

#[test]
fn a_rollback_another_process_stored_first_is_not_logged_as_dropped() {
    // Two processes roll the same release back (every worker of a host judges the pooled
    // evidence): the one whose rollback waits to be written finds the other's stored. That is
    // the same decision made first, not a store outage nor a dropped verdict.
    //
    // What is logged is seen on this thread only, when a's next write settles the waiting
    // rollback here. a's sync thread tries to write it once when it is made (then not for a
    // minute): if that try comes only after the lock is let go (a loaded machine can hold that
    // thread back), it writes the rollback before b's, or settles it on that thread, and the
    // run tells nothing. Such a run is made again (how long the lock is held grows each time),
    // never taken for a pass.
    for held_ms in [200, 1_000, 3_000, 10_000] {
        let dir = Scratch::new("same-rollback-first");
        let path = dir.file("gate.db");
        let a = open_slow_with(&path, 20);
        let b = open(&path);
        let lock = WriteLock::take(&path);
        a.rollback("seen while the store was locked").unwrap();
        std::thread::sleep(Duration::from_millis(held_ms)); // for a's sync thread to try
        drop(lock);
        match b.rollback("the same verdict, elsewhere") {
            Ok(()) => {}
            // a's sync thread wrote a's rollback first.
            Err(Error::Rollback(RollbackError::NothingToRollBack)) => continue,
            Err(other) => panic!("{other}"),
        }
        let lines = common::log_lines::LogLines::default();
        // a's next write first settles its waiting rollback, on this thread.
        lines.during(|| a.enable_feature("dark_mode").unwrap());
        let about = |level| {
            lines
                .lines_at(level)
                .into_iter()
                .filter(|line| line.contains("rollback is not written") || line.contains("dropped"))
                .collect::<Vec<_>>()
        };
        let (warn, info) = (about(tracing::Level::WARN), about(tracing::Level::INFO));
        if warn.is_empty() && info.is_empty() {
            continue; // settled on a's sync thread
        }
        assert_eq!(warn, Vec::<String>::new());
        assert_eq!(info.len(), 1, "{info:#?}");
        assert!(
            info[0].contains("another process rolled the release back first"),
            "{info:#?}"
        );
        assert_eq!(stored_environment(&path), "Production");
        assert!(a.is_feature_enabled("dark_mode"));
        return;
    }
    panic!("a's sync thread never tried to write its rollback while the store was locked");
}

#[test]
fn a_rollback_after_another_process_moved_on_is_still_a_warning() {
    // Another process ramped the canary, then rolled that stage back: the waiting rollback
    // was decided on a stage that had left, not the same decision made first.
    let dir = Scratch::new("rollback-after-a-ramp");
    let path = dir.file("gate.db");
    let (a, b) = a_waiting_rollback_and_another_gates_ramp(&path);
    b.rollback("the ramped stage, rolled back").unwrap();
    let lines = common::log_lines::LogLines::default();
    lines.during(|| {
        let _ = a.enable_feature("dark_mode");
    });
    let dropped = |level| {
        lines
            .lines_at(level)
            .into_iter()
            .filter(|line| line.contains("rollback not yet written is dropped"))
            .count()
    };
    assert_eq!(dropped(tracing::Level::WARN), 1, "{:#?}", lines.lines());
    assert!(
        !lines
            .lines()
            .iter()
            .any(|line| line.contains("rolled the release back first")),
        "{:#?}",
        lines.lines()
    );
    assert_eq!(stored_environment(&path), "Production");
}

#[test]
fn two_gates_on_one_file_follow_each_other() {
    let dir = Scratch::new("two-gates");
    let path = dir.file("gate.db");
    let (a, b) = (open(&path), open(&path));
    a.enable_feature("dark_mode").unwrap();
    eventually("b sees a's flag", || b.is_feature_enabled("dark_mode"));
    fail_the_canary(&b);
    eventually("a follows b's automatic rollback", || {
        a.environment() == Environment::Production
    });
    assert!(!routes_to_canary(&a));
    let history = a.rollback_history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].trigger, RollbackTrigger::Automatic);
    assert_eq!(b.rollback_history().len(), 1);
}

#[test]
fn a_window_followed_from_the_store_is_not_refused_when_the_config_is_sent_again() {
    let dir = Scratch::new("followed-window");
    let path = dir.file("gate.db");
    let config = PromotionConfig::from_json(&document(&path, 10.0, 5000)).unwrap();
    let fast = SloConfig {
        evaluation_interval: Duration::from_millis(100),
        ..SloConfig::default()
    };
    let a = PromotionGateManager::new(config, SloAdmissionController::new(fast).unwrap()).unwrap();
    // b: the default SLO, whose 1 s interval a 5 s window does not fit.
    let b = open(&path);
    let mut short = a.config();
    short.rollback_window_seconds = 5;
    a.swap_config(short).unwrap();
    eventually("b follows a's window", || {
        b.config().rollback_window_seconds == 5
    });
    // b's hot reload: the config in force again, one flag added. The window it did not change
    // is not refused.
    let mut next = b.config();
    next.feature_flags.push("wide_layout".into());
    b.swap_config(next).unwrap();
    assert!(b.is_feature_enabled("wide_layout"));
    // A window b changes is checked against b's interval.
    let mut shorter = b.config();
    shorter.rollback_window_seconds = 6;
    let err = b.swap_config(shorter).unwrap_err().to_string();
    assert!(err.contains("invalid rollback_window_seconds = 6"), "{err}");
    assert_eq!(b.config().rollback_window_seconds, 5);
    // Nor is b's policy re-sent with the interval it has, one limit changed.
    let stricter = SloConfig {
        latency_target: Duration::from_millis(200),
        ..b.slo_controller().config().clone()
    };
    b.swap_slo(stricter).unwrap();
    assert_eq!(
        b.slo_controller().config().latency_target,
        Duration::from_millis(200)
    );
    // An interval b changes is checked against the window: 600 ms is longer than a tenth of 5 s.
    let slower = SloConfig {
        evaluation_interval: Duration::from_millis(600),
        ..b.slo_controller().config().clone()
    };
    let err = b.swap_slo(slower).unwrap_err().to_string();
    assert!(
        err.contains(
            "invalid evaluation_interval_ms = 600: at most a tenth of rollback_window_seconds = 5"
        ),
        "{err}"
    );
    assert_eq!(
        b.slo_controller().config().evaluation_interval,
        Duration::from_secs(1)
    );
}

/// A gate on `path` that reads the store only once a minute: within a test it learns of other
/// gates' writes only when it writes itself or is asked to sync.
fn open_slow(path: &str) -> PromotionGateManager {
    open_slow_with(path, 5000)
}

/// [`document`] with a sync interval of a minute.
fn slow_document(path: &str, busy_timeout_ms: u64) -> String {
    document(path, 10.0, busy_timeout_ms).replace(
        &format!(r#""sync_interval_ms": {SYNC_MS}"#),
        r#""sync_interval_ms": 60000"#,
    )
}

fn open_slow_with(path: &str, busy_timeout_ms: u64) -> PromotionGateManager {
    PromotionGateManager::new(
        PromotionConfig::from_json(&slow_document(path, busy_timeout_ms)).unwrap(),
        SloAdmissionController::new(SloConfig::default()).unwrap(),
    )
    .unwrap()
}

/// A slow gate (see [`open_slow`]) on a new file, and another gate there that rolled back.
fn a_slow_gate_and_another_gates_rollback(name: &str) -> (Scratch, PromotionGateManager) {
    let dir = Scratch::new(name);
    let path = dir.file("gate.db");
    let slow = open_slow(&path);
    open(&path).rollback("bad deploy").unwrap();
    (dir, slow)
}

#[test]
fn a_gate_asked_to_sync_reads_another_gates_rollback_at_once() {
    // A slow gate's first tick of its own comes a minute after it opens (the longest sync
    // interval there is): whatever it reads before that, however loaded the machine, it read
    // because it was asked.
    let opened = Instant::now();
    let (dir, slow) = a_slow_gate_and_another_gates_rollback("sync-now");
    let seen = slow.change_count();
    // A window for a read nobody asked for to show (none comes: the assertion holds however
    // long this thread is kept from running).
    std::thread::sleep(Duration::from_millis(100));
    assert!(routes_to_canary(&slow), "not read before it is asked");
    assert_eq!(slow.change_count(), seen);
    // Asked many times in a row: every ask is taken (asks are merged into one wake-up, which
    // this does not observe), and the rollback is applied once.
    for _ in 0..10_000 {
        assert!(slow.sync_now());
    }
    // The change count moves once the rollback is published (after the snapshot: waiting for
    // the environment instead could read the count in between).
    eventually("the slow gate reads the rollback", || {
        slow.change_count() > seen
    });
    assert_eq!(slow.environment(), Environment::Production);
    assert!(!routes_to_canary(&slow));
    // Another write, then one more ask: the tick that reads it begins after every tick those
    // asks woke has ended (ticks run one at a time), so the changes up to it are all the asks
    // made. The rollback is among them once.
    open(&dir.file("gate.db")).enable_feature("marker").unwrap();
    assert!(slow.sync_now());
    let kinds = || -> Vec<_> { slow.changes_since(seen).iter().map(|c| c.kind()).collect() };
    eventually("the slow gate reads the write after the rollback", || {
        kinds().contains(&ChangeKind::Flags)
    });
    assert_eq!(kinds(), [ChangeKind::Rollback, ChangeKind::Flags]);
    assert!(
        opened.elapsed() < Duration::from_secs(60),
        "read by a tick of its own, not by the asks: this run was too slow to tell"
    );
    let storeless = PromotionGateManager::new(
        PromotionConfig::default(),
        SloAdmissionController::new(SloConfig::default()).unwrap(),
    )
    .unwrap();
    assert!(!storeless.sync_now());
}

/// A flag edit or a rollback by hand that the gate's own, older state says is made already
/// (another process wrote since, and the gate has not synced) is decided again on the stored
/// state, never ended as a no-op or refused on the local one alone.
#[test]
fn an_enable_the_local_state_shows_made_is_made_on_the_stored_state() {
    let dir = Scratch::new("stale-enable");
    let path = dir.file("gate.db");
    let slow = open_slow(&path); // checkout_v2 on
    open(&path).disable_feature("checkout_v2").unwrap();
    assert!(slow.is_feature_enabled("checkout_v2"), "not synced yet");
    slow.enable_feature("checkout_v2").unwrap();
    assert!(slow.is_feature_enabled("checkout_v2"));
    assert!(open(&path).is_feature_enabled("checkout_v2"), "stored on");
    // Asked again, it is on in the store too: nothing is written.
    let seen = slow.change_count();
    slow.enable_feature("checkout_v2").unwrap();
    assert_eq!(slow.change_count(), seen);
}

#[test]
fn a_disable_of_a_flag_the_local_state_shows_off_is_made_on_the_stored_state() {
    let dir = Scratch::new("stale-disable");
    let path = dir.file("gate.db");
    let slow = open_slow(&path);
    open(&path).enable_feature("dark_mode").unwrap();
    assert!(!slow.is_feature_enabled("dark_mode"), "not synced yet");
    slow.disable_feature("dark_mode").unwrap();
    assert!(!slow.is_feature_enabled("dark_mode"));
    let reopened = open(&path);
    assert!(!reopened.is_feature_enabled("dark_mode"), "stored off");
    assert_eq!(
        reopened.rollback_history().last().unwrap().feature,
        "dark_mode"
    );
    // A flag that is off in the store too is refused, as without a store.
    let err = slow.disable_feature("dark_mode").unwrap_err();
    assert!(
        matches!(err, Error::Flag(FlagError::NotEnabled(_))),
        "{err}"
    );
}

#[test]
fn a_rollback_by_hand_on_a_gate_that_shows_production_rolls_back_the_stored_canary() {
    let (dir, slow) = a_slow_gate_and_another_gates_rollback("stale-rollback-by-hand");
    let path = dir.file("gate.db");
    slow.sync_now();
    eventually("the slow gate reads the rollback", || {
        slow.environment() == Environment::Production
    });
    // Another process starts a new rollout, which the slow gate has not read.
    let other = open(&path);
    let rollout = Environment::Canary {
        traffic_percent: 5.0,
    };
    other.promote(rollout).unwrap();
    assert_eq!(
        slow.environment(),
        Environment::Production,
        "not synced yet"
    );
    // An operator rolls it back through the slow gate.
    slow.rollback("the new canary is bad").unwrap();
    assert_eq!(stored_environment(&path), "Production");
    assert_eq!(slow.environment(), Environment::Production);
    let last = slow.rollback_history().last().cloned().unwrap();
    assert_eq!(
        (last.reason.as_str(), last.environment),
        ("the new canary is bad", rollout)
    );
    eventually("the other gate follows", || {
        other.environment() == Environment::Production
    });
    // In Production in the store too: refused, as without a store.
    let err = slow.rollback("again").unwrap_err();
    assert!(
        matches!(err, Error::Rollback(RollbackError::NothingToRollBack)),
        "{err}"
    );
}

/// A hot reload that edits a config it read from the gate swaps it with the change count it
/// read first: another process's rollback since refuses it, whether this process has applied
/// the rollback or not, and the rolled-back canary stays rolled back. A plain `swap_config` of
/// the same config is the override it says it is.
#[test]
fn a_config_read_before_another_gates_rollback_cannot_undo_it_when_swapped_from_its_count() {
    let dir = Scratch::new("swap-from-rollback");
    let path = dir.file("gate.db");
    let (synced, slow, other) = (open(&path), open_slow(&path), open(&path));
    let (read_synced, read_slow) = (read_to_edit(&synced), read_to_edit(&slow));
    other.rollback("bad canary").unwrap();
    eventually("the synced gate applies the rollback", || {
        synced.environment() == Environment::Production
    });
    assert_ne!(
        slow.environment(),
        Environment::Production,
        "not synced yet"
    );
    for (gate, (seen, config)) in [(&synced, read_synced.clone()), (&slow, read_slow)] {
        let err = gate.swap_config_from(seen, config).unwrap_err();
        assert!(
            matches!(err, Error::Swap(SwapError::GateChanged { seen: s, now }) if s == seen && now > seen),
            "{err}"
        );
        assert_eq!(
            stored_environment(&path),
            "Production",
            "the rollback stays"
        );
        assert_eq!(gate.environment(), Environment::Production);
    }
    // Read again, the swap is made.
    let (seen, config) = read_to_edit(&synced);
    synced.swap_config_from(seen, config).unwrap();
    assert!(open(&path).is_feature_enabled("dark_mode"));
    assert_eq!(stored_environment(&path), "Production");
    // The plain swap of the config read before the rollback puts the canary back.
    synced.swap_config(read_synced.1).unwrap();
    assert_eq!(stored_environment(&path), "Canary{10}");
}

/// What a hot reload reads from `gate`, in this order: the change count, then the config,
/// edited (`dark_mode` turned on).
fn read_to_edit(gate: &PromotionGateManager) -> (u64, PromotionConfig) {
    let seen = gate.change_count();
    let mut config = gate.config();
    config.feature_flags.push("dark_mode".into());
    (seen, config)
}

/// A kill switch (`disable_feature`) leaves the stage alone, and is not undone either: another
/// process turns a flag off after this gate's hot reload read its change count and config, and
/// this gate has not synced; its `swap_config_from` loses the compare-and-swap, catches up
/// (the count moves) and is refused, and the flag stays off in the store and here.
#[test]
fn a_config_read_before_another_gates_kill_switch_cannot_turn_the_flag_on_again() {
    let dir = Scratch::new("swap-from-kill-switch");
    let path = dir.file("gate.db");
    let (slow, other) = (open_slow(&path), open(&path)); // checkout_v2 on
    let (seen, config) = read_to_edit(&slow);
    assert!(config.feature_flags.contains(&"checkout_v2".to_string()));
    other.disable_feature("checkout_v2").unwrap();
    let stage = slow.stage();
    assert!(slow.is_feature_enabled("checkout_v2"), "not synced yet");
    let err = slow.swap_config_from(seen, config).unwrap_err();
    assert!(
        matches!(err, Error::Swap(SwapError::GateChanged { seen: s, now }) if s == seen && now == seen + 1),
        "{err}"
    );
    assert!(err.to_string().contains("read its config again"), "{err}");
    assert_eq!(slow.stage(), stage, "a kill switch is no new stage");
    let reopened = open(&path);
    assert!(!reopened.is_feature_enabled("checkout_v2"), "stored off");
    assert!(!reopened.is_feature_enabled("dark_mode"), "nothing swapped");
    assert!(!slow.is_feature_enabled("checkout_v2"), "caught up");
    // Read again, the swap is made over the disable.
    let (seen, config) = read_to_edit(&slow);
    slow.swap_config_from(seen, config).unwrap();
    let reopened = open(&path);
    assert!(reopened.is_feature_enabled("dark_mode"));
    assert!(!reopened.is_feature_enabled("checkout_v2"));
}

/// Two operators' hot reloads in two processes read the same state: the first swap is made,
/// the second, decided on a state the first replaced, is refused instead of overwriting it.
#[test]
fn two_hot_reloads_from_one_read_do_not_overwrite_each_other() {
    let dir = Scratch::new("swap-from-two-reloads");
    let path = dir.file("gate.db");
    let (first, second) = (open_slow(&path), open_slow(&path));
    let (seen_first, mut edited_first) = read_to_edit(&first);
    let (seen_second, mut edited_second) = read_to_edit(&second);
    edited_first.feature_flags.push("first".into());
    edited_second.feature_flags.push("second".into());
    first.swap_config_from(seen_first, edited_first).unwrap();
    let err = second
        .swap_config_from(seen_second, edited_second)
        .unwrap_err();
    assert!(
        matches!(err, Error::Swap(SwapError::GateChanged { .. })),
        "{err}"
    );
    let reopened = open(&path);
    assert!(reopened.is_feature_enabled("first"));
    assert!(!reopened.is_feature_enabled("second"));
    assert!(second.is_feature_enabled("first"), "caught up");
}

/// The `promotion_rollbacks_total` lines of `gate`'s exposition.
fn rollbacks_total(gate: &PromotionGateManager) -> Vec<String> {
    let text = promotion_gates::telemetry::prometheus::exposition(gate);
    let lines = text
        .lines()
        .filter(|l| l.starts_with("promotion_rollbacks_total{"));
    lines.map(str::to_string).collect()
}

/// `gate`'s `promotion_rollbacks_total` of `trigger` and `rule`.
fn rollbacks_of(gate: &PromotionGateManager, trigger: &str, rule: &str) -> f64 {
    let series = format!(
        "promotion_rollbacks_total{{gate=\"checkout\",trigger=\"{trigger}\",rule=\"{rule}\"}} "
    );
    let lines = rollbacks_total(gate);
    let line = lines.iter().find_map(|l| l.strip_prefix(&series));
    line.unwrap_or_else(|| panic!("no {series} in {lines:?}"))
        .parse()
        .unwrap()
}

#[test]
fn every_gate_on_a_store_counts_each_stored_rollback_once() {
    let dir = Scratch::new("rollback-counts");
    let path = dir.file("gate.db");
    let (a, b) = (open_slow(&path), open(&path));
    b.rollback("bad deploy").unwrap();
    assert_eq!(rollbacks_of(&b, "manual", "none"), 1.0);
    assert_eq!(rollbacks_of(&a, "manual", "none"), 0.0, "a has not synced");
    assert!(a.sync_now());
    eventually("a follows b's rollback", || {
        a.environment() == Environment::Production
    });
    assert_eq!(rollbacks_of(&a, "manual", "none"), 1.0);
    assert_eq!(rollbacks_total(&a), rollbacks_total(&b));

    // An automatic rollback counts under its first fired rule in both: b's from its evidence,
    // a's from the stored event's reason.
    b.promote(Environment::Canary {
        traffic_percent: 50.0,
    })
    .unwrap();
    fail_the_canary(&b);
    let event = b.rollback_history().pop().unwrap();
    let rule = event.evidence.unwrap().fired().next().unwrap().rule;
    assert_eq!(rollbacks_of(&b, "automatic", rule.name()), 1.0);
    eventually("a follows b's automatic rollback", || {
        a.sync_now();
        a.rollback_history().len() == 2
    });
    assert_eq!(rollbacks_of(&a, "automatic", rule.name()), 1.0);
    assert_eq!(rollbacks_total(&a), rollbacks_total(&b));
    // Syncing again, and b's sync thread writing its own rollback, count nothing twice.
    a.sync_now();
    std::thread::sleep(Duration::from_millis(10 * SYNC_MS));
    assert_eq!(rollbacks_of(&a, "automatic", rule.name()), 1.0);
    assert_eq!(rollbacks_total(&a), rollbacks_total(&b));

    // A process that opens the store later counts the history it opens on.
    let c = open(&path);
    assert_eq!(rollbacks_total(&c), rollbacks_total(&a));
    assert_eq!(c.rollback_counts(), a.rollback_counts());
    assert_eq!(b.rollback_counts(), a.rollback_counts());
}

#[test]
fn a_sync_tick_whose_clock_panics_while_it_applies_a_rollback_applies_it_at_the_next() {
    let dir = Scratch::new("clock-panics-applying");
    let path = dir.file("gate.db");
    let clock = std::sync::Arc::new(PanicsOnTheSyncThread {
        real: promotion_gates::SystemClock::new(),
        panics: std::sync::atomic::AtomicU32::new(0),
        monotonic: true,
    });
    let a = PromotionGateManager::with_clock(
        PromotionConfig::from_json(&slow_document(&path, 5000)).unwrap(),
        SloAdmissionController::new(SloConfig::default()).unwrap(),
        clock.clone(),
    )
    .unwrap();
    let b = open(&path);
    clock.panics.store(1, std::sync::atomic::Ordering::SeqCst);
    b.rollback("bad deploy").unwrap();
    assert!(a.sync_now());
    eventually("the sync tick panicked", || {
        clock.panics.load(std::sync::atomic::Ordering::SeqCst) == 0
    });
    // The tick that panicked changed nothing; the next applies b's rollback.
    eventually("a follows b's rollback", || {
        a.sync_now();
        a.environment() == Environment::Production
    });
    assert_eq!(a.rollback_history(), b.rollback_history());
    assert_eq!(a.rollback_counts(), b.rollback_counts());
    // a's next write is decided on the rolled-back state, not on the canary it showed.
    a.enable_feature("dark_mode").unwrap();
    assert_eq!(stored_environment(&path), "Production");
}

/// A gate on the store at `path` whose history keeps 2 events.
fn open_keeping_two(path: &str) -> PromotionGateManager {
    let mut config = PromotionConfig::from_json(&document(path, 10.0, 5000)).unwrap();
    config.max_rollback_history = 2;
    let slo = SloAdmissionController::new(SloConfig::default()).unwrap();
    PromotionGateManager::new(config, slo).unwrap()
}

#[test]
fn rollback_counts_outlive_the_history_the_store_trims() {
    let dir = Scratch::new("rollback-counts-trimmed");
    let path = dir.file("gate.db");
    let (a, b) = (open_keeping_two(&path), open_keeping_two(&path));
    roll_back_a_flag(&a, 5);
    a.rollback("bad deploy").unwrap();
    assert_eq!(a.rollback_history().len(), 2, "the history keeps 2 events");
    assert_eq!(rollbacks_of(&a, "flag_disabled", "none"), 5.0);
    assert_eq!(rollbacks_of(&a, "manual", "none"), 1.0);
    // Another process follows the stored counts, not the 2 events it reads.
    eventually("b follows a's rollback", || {
        b.sync_now();
        b.environment() == Environment::Production
    });
    assert_eq!(b.rollback_counts(), a.rollback_counts());
    // A restart (a reloaded nginx) goes on from the same counts: no counter reset.
    drop(a);
    let c = open_keeping_two(&path);
    assert_eq!(c.rollback_history().len(), 2);
    assert_eq!(c.rollback_counts(), b.rollback_counts());
    assert_eq!(rollbacks_total(&c), rollbacks_total(&b));
    // And on from there: b's next rollback is counted once in both.
    c.enable_feature("dark_mode").unwrap();
    c.disable_feature("dark_mode").unwrap();
    eventually("b follows c's flag", || {
        b.sync_now();
        b.rollback_counts() == c.rollback_counts()
    });
    assert_eq!(rollbacks_of(&b, "flag_disabled", "none"), 6.0);
}

#[test]
fn a_rollback_another_process_stored_first_is_counted_once_in_both() {
    // Two processes judging the same evidence (the workers of one nginx) both roll back; the
    // one whose rollback the other's overtook counts the stored one, not its own as well.
    let dir = Scratch::new("rollback-counts-overtaken");
    let path = dir.file("gate.db");
    let (a, b) = (open_slow(&path), open_slow(&path));
    let total = |gate: &PromotionGateManager| -> u64 {
        gate.rollback_counts().iter().map(|c| c.count).sum()
    };
    fail_the_canary(&a);
    eventually("a's rollback is stored", || {
        stored_environment(&path) == "Production"
    });
    fail_the_canary(&b);
    assert_eq!(total(&b), 1, "counted when made");
    // Settled: b follows the stored history, a's event (its own is not written).
    let stored: Vec<_> = a
        .rollback_history()
        .into_iter()
        .map(|mut event| {
            event.evidence = None;
            event
        })
        .collect();
    eventually("b's rollback is settled", || {
        b.sync_now();
        b.rollback_history() == stored
    });
    assert_eq!(total(&b), 1, "{:?}", b.rollback_counts());
    assert_eq!(b.rollback_counts(), a.rollback_counts());

    // Under another cause (a manual rollback stored first, an automatic one here) the
    // overtaken rollback stays counted here, as a dropped one does: no count goes down.
    let dir = Scratch::new("rollback-counts-overtaken-cause");
    let path = dir.file("gate.db");
    let (a, b) = (open(&path), open_slow(&path));
    a.rollback("bad canary").unwrap();
    fail_the_canary(&b);
    let made_here = b.rollback_counts();
    eventually("b's rollback is settled", || {
        b.rollback_history()
            .iter()
            .all(|e| e.reason == "bad canary")
    });
    assert_eq!((total(&a), total(&b)), (1, 2), "{:?}", b.rollback_counts());
    for counted in made_here {
        assert!(
            b.rollback_counts().contains(&counted),
            "{counted:?} went down"
        );
    }
}

/// Turns the flag `dark_mode` on and off (a flag's rollback) `times` times on `gate`.
fn roll_back_a_flag(gate: &PromotionGateManager, times: usize) {
    for _ in 0..times {
        gate.enable_feature("dark_mode").unwrap();
        gate.disable_feature("dark_mode").unwrap();
    }
}

/// Asserts that no series of `before`, lines of `promotion_rollbacks_total` scraped earlier
/// from one process, is lower in `after`, scraped later from the same process.
fn assert_no_count_went_down(before: &[String], after: &[String], when: &str) {
    let value = |line: &String| -> (String, f64) {
        let (series, count) = line.rsplit_once(' ').unwrap();
        (series.to_string(), count.parse().unwrap())
    };
    let after: HashMap<String, f64> = after.iter().map(value).collect();
    for (series, earlier) in before.iter().map(value) {
        let later = after.get(&series).copied().unwrap_or(0.0);
        assert!(
            later >= earlier,
            "{when}: {series} went from {earlier} down to {later}"
        );
    }
}

#[test]
fn no_rollback_count_goes_down_when_a_write_stores_lower_counts() {
    // A rolling upgrade: a build before the counts writes (no counts stored) and the history
    // holds 2 events; a process opened then counts the 2 events it reads, and its next write
    // stores those lower counts, which the process that counted all 3 follows.
    let dir = Scratch::new("rollback-counts-never-down");
    let path = dir.file("gate.db");
    let a = open_keeping_two(&path);
    roll_back_a_flag(&a, 3);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE release SET version = version + 1, rollbacks = NULL",
            [],
        )
        .unwrap();
    let b = open_keeping_two(&path);
    let before = rollbacks_total(&a);
    assert_eq!(rollbacks_of(&a, "flag_disabled", "none"), 3.0);
    b.enable_feature("wide_layout").unwrap();
    eventually("a follows b's write", || {
        a.sync_now();
        a.is_feature_enabled("wide_layout")
    });
    assert_no_count_went_down(&before, &rollbacks_total(&a), "an older build's write");
    // It goes on from there once the stored counts pass it.
    roll_back_a_flag(&b, 2);
    eventually("a follows b's flag rollbacks", || {
        a.sync_now();
        rollbacks_of(&a, "flag_disabled", "none") == 4.0
    });
}

#[test]
fn no_rollback_count_goes_down_when_the_store_is_made_afresh() {
    // The store file removed, and made afresh by a process started then: a gate that counted
    // a rollback follows the new state, whose counts start from 0.
    let dir = Scratch::new("rollback-counts-never-down-removed");
    let path = dir.file("gate.db");
    // Slow: the process started after the removal makes the store afresh, not this one.
    let a = open_slow(&path);
    a.rollback("bad deploy").unwrap();
    let before = rollbacks_total(&a);
    assert_eq!(rollbacks_of(&a, "manual", "none"), 1.0);
    remove_store(&path);
    let started_after = open(&path);
    assert!(routes_to_canary(&started_after));
    eventually("a follows the store made afresh", || {
        a.sync_now();
        a.environment() != Environment::Production
    });
    assert_no_count_went_down(&before, &rollbacks_total(&a), "a store made afresh");
}

#[test]
fn a_store_written_before_counts_were_stored_counts_its_history() {
    let dir = Scratch::new("rollback-counts-legacy");
    let path = dir.file("gate.db");
    let a = open(&path);
    roll_back_a_flag(&a, 3);
    drop(a);
    // What a build before the counts wrote: no counts in the release.
    let check = rusqlite::Connection::open(&path).unwrap();
    check
        .execute("UPDATE release SET rollbacks = NULL", [])
        .unwrap();
    let b = open(&path);
    assert_eq!(rollbacks_of(&b, "flag_disabled", "none"), 3.0);
    // Its next write stores them, counted on from the history.
    b.rollback("bad deploy").unwrap();
    let stored: String = check
        .query_row("SELECT rollbacks FROM release", [], |row| row.get(0))
        .unwrap();
    assert_eq!(
        stored,
        r#"{"version":8,"counts":[{"trigger":"flag_disabled","count":3},{"trigger":"manual","count":1}]}"#
    );
}

/// What a build before the rollback counts wrote for a manual rollback: its upsert of the
/// release (which leaves the `rollbacks` column as it was, or `NULL` when `clear_counts`, as
/// in a file whose counts were never stored) and its history row.
fn write_as_a_build_before_counts(path: &str, production_config: &str, clear_counts: bool) {
    let mut connection = rusqlite::Connection::open(path).unwrap();
    let tx = connection.transaction().unwrap();
    let (version, stage): (i64, i64) = tx
        .query_row("SELECT version, stage FROM release", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    tx.execute(
        "INSERT INTO release (gate, version, stage, environment, config)
         VALUES ('checkout', ?1, ?2, 'Production', ?3)
         ON CONFLICT (gate) DO UPDATE SET
             version = excluded.version, stage = excluded.stage,
             environment = excluded.environment, config = excluded.config",
        rusqlite::params![version + 1, stage + 1, production_config],
    )
    .unwrap();
    if clear_counts {
        tx.execute("UPDATE release SET rollbacks = NULL", [])
            .unwrap();
    }
    tx.execute(
        "INSERT INTO history SELECT gate, ?1, rolled_back, feature, 'older build',
             rollback_trigger, environment, timestamp_ns + 1
         FROM history WHERE version = (SELECT min(version) FROM history)",
        [version + 1],
    )
    .unwrap();
    tx.commit().unwrap();
}

fn stored_config(path: &str) -> String {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT config FROM release", [], |row| row.get(0))
        .unwrap()
}

#[test]
fn a_rollback_a_build_before_the_counts_stored_is_counted() {
    // A rolling upgrade: an older process writes after the counts were stored, leaving them
    // as of an older version; its rollback is counted from the history on top of them.
    let dir = Scratch::new("rollback-counts-older-build");
    let path = dir.file("gate.db");
    let a = open(&path);
    a.rollback("first").unwrap();
    let production = stored_config(&path);
    a.promote(Environment::Canary {
        traffic_percent: 5.0,
    })
    .unwrap();
    write_as_a_build_before_counts(&path, &production, false);
    let b = open(&path);
    assert_eq!(b.rollback_history().len(), 2);
    eventually("a follows the older build's rollback", || {
        a.sync_now();
        a.environment() == Environment::Production
    });
    assert_eq!(rollbacks_of(&a, "manual", "none"), 2.0);
    assert_eq!(rollbacks_of(&b, "manual", "none"), 2.0);
    // The next write stores them whole.
    b.enable_feature("dark_mode").unwrap();
    assert_eq!(rollbacks_of(&open(&path), "manual", "none"), 2.0);
}

#[test]
fn a_release_without_counts_followed_step_by_step_keeps_the_counts_known() {
    // A release written without counts (an older build) read after a known state holds only
    // the events since: they are counted on top of the known counts, not alone.
    let dir = Scratch::new("rollback-counts-followed-without");
    let path = dir.file("gate.db");
    let a = open(&path);
    a.rollback("first").unwrap();
    let production = stored_config(&path);
    let canary = Environment::Canary {
        traffic_percent: 5.0,
    };
    a.promote(canary).unwrap();
    a.rollback("second").unwrap();
    a.promote(canary).unwrap();
    assert_eq!(rollbacks_of(&a, "manual", "none"), 2.0);
    write_as_a_build_before_counts(&path, &production, true);
    eventually("a follows the older build's rollback", || {
        a.sync_now();
        a.environment() == Environment::Production
    });
    let b = open(&path);
    assert_eq!(b.rollback_history().len(), 3);
    assert_eq!(rollbacks_of(&b, "manual", "none"), 3.0);
    assert_eq!(
        rollbacks_of(&a, "manual", "none"),
        3.0,
        "no counter reset in a"
    );
}

#[test]
fn a_swap_decided_before_another_gates_rollback_does_not_undo_it() {
    let (dir, stale) = a_slow_gate_and_another_gates_rollback("swap-after-rollback");
    let path = dir.file("gate.db");
    let mut next = stale.config();
    assert!(matches!(next.environment, Environment::Canary { .. }));
    next.feature_flags.push("dark_mode".into());
    let err = stale.swap_config(next).unwrap_err();
    assert!(
        matches!(&err, Error::Store(e) if e.problem() == StoreProblem::Conflict),
        "{err}"
    );
    assert!(err.to_string().contains("was not swapped"), "{err}");
    assert_eq!(stored_environment(&path), "Production");
    assert_eq!(stale.environment(), Environment::Production);
    assert!(!stale.is_feature_enabled("dark_mode"));
    // Read again, the same swap is made.
    let mut again = stale.config();
    again.feature_flags.push("dark_mode".into());
    stale.swap_config(again).unwrap();
    assert_eq!(stored_environment(&path), "Production");
    assert!(stale.is_feature_enabled("dark_mode"));
}

const RAMP: Environment = Environment::Canary {
    traffic_percent: 25.0,
};

/// A slow gate `a` (see [`open_slow`]) rolls back while the store is locked, so its rollback
/// waits to be written; then gate `b` ramps the canary to 25 % (a config swap: a new stage,
/// stored as stage 2, the number `a` gave its own rolled-back stage). Returns `(a, b)`.
fn a_waiting_rollback_and_another_gates_ramp(
    path: &str,
) -> (PromotionGateManager, PromotionGateManager) {
    let a = open_slow_with(path, 20);
    let b = open(path);
    let lock = WriteLock::take(path);
    a.rollback("seen while the store was locked").unwrap();
    assert_eq!(a.environment(), Environment::Production);
    std::thread::sleep(Duration::from_millis(200)); // a's sync thread tried once, and failed
    drop(lock);
    let mut ramp = b.config();
    ramp.environment = RAMP;
    b.swap_config(ramp).unwrap();
    assert_eq!(stored_environment(path), "Canary{25}");
    assert_eq!((a.stage().get(), b.stage().get()), (2, 2));
    (a, b)
}

#[test]
fn a_swap_behind_a_dropped_rollback_does_not_undo_another_gates_ramp() {
    let dir = Scratch::new("swap-behind-dropped");
    let path = dir.file("gate.db");
    let (a, _b) = a_waiting_rollback_and_another_gates_ramp(&path);
    // a's host, which has not seen b's ramp, swaps a config read from a's rolled-back state:
    // a's rollback is dropped (b's ramp left its stage), a follows the ramp, and the swap is
    // refused, not written over it.
    let mut mine = a.config();
    mine.feature_flags.push("dark_mode".into());
    let err = a.swap_config(mine).unwrap_err();
    assert!(
        matches!(&err, Error::Store(e) if e.problem() == StoreProblem::Conflict),
        "{err}"
    );
    assert!(err.to_string().contains("was not swapped"), "{err}");
    assert_eq!(stored_environment(&path), "Canary{25}");
    assert_eq!(a.environment(), RAMP);
    assert!(!a.is_feature_enabled("dark_mode"));
    // A promotion decided on the rolled-back state (a new rollout) is refused the same way.
    let (c, _d) = a_waiting_rollback_and_another_gates_ramp(&dir.file("promote.db"));
    let err = c
        .promote(Environment::Canary {
            traffic_percent: 1.0,
        })
        .unwrap_err();
    assert!(err.to_string().contains("was not made"), "{err}");
    assert_eq!(stored_environment(&dir.file("promote.db")), "Canary{25}");
}

#[test]
fn a_waiting_rollback_is_written_over_a_flag_another_gate_swapped_off_and_turned_on_again() {
    let dir = Scratch::new("pending-swapped-off-on");
    let path = dir.file("gate.db");
    let a = open_slow_with(&path, 20);
    let b = open(&path);
    a.enable_feature("x").unwrap();
    eventually("b follows a's flag", || {
        b.sync_now();
        b.is_feature_enabled("x")
    });
    // b turns "x" off with a swap (no stage, no event) and on again (a stage): the same
    // release, in the same rollout, "x" as it was. a, slow, has not read that.
    let mut off = b.config();
    off.feature_flags.retain(|flag| flag != "x");
    b.swap_config(off).unwrap();
    b.enable_feature("x").unwrap();
    assert_eq!(stored_environment(&path), "Canary{10}");
    // a rolls back the release with "x" on, as it last read it, while the store is locked: it
    // waits to be written, decided on the state before b's edits. Whenever a's sync thread
    // tries to write it (while the lock is held, or after), b's edits are stored already: what
    // it finds does not depend on when that thread runs.
    let lock = WriteLock::take(&path);
    a.rollback("seen while the store was locked").unwrap();
    assert_eq!(a.environment(), Environment::Production);
    drop(lock);
    assert!(a.sync_now());
    eventually("a settles its waiting rollback", || {
        stored_environment(&path) == "Production" || a.environment() != Environment::Production
    });
    assert_eq!(
        stored_environment(&path),
        "Production",
        "written, not dropped"
    );
    let reopened = open(&path);
    assert!(!reopened.is_feature_enabled("x"));
    let history = reopened.rollback_history();
    assert_eq!(
        history.last().map(|event| event.reason.as_str()),
        Some("seen while the store was locked"),
        "{history:?}"
    );
}

#[test]
fn a_promotion_from_a_stage_another_process_left_is_refused() {
    let dir = Scratch::new("promote-from");
    let path = dir.file("gate.db");
    let (a, b) = (open_slow(&path), open(&path));
    let stage = a.stage();
    b.rollback("bad deploy").unwrap();
    // a has not followed b yet (a minute's sync): its write loses to b's and is decided again
    // on the stored state, from which the stage a's host looked at is gone.
    assert_eq!(a.stage(), stage);
    let err = a
        .promote_from(
            stage,
            Environment::Canary {
                traffic_percent: 5.0,
            },
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::Promotion(PromotionError::StageChanged { expected, .. }) if *expected == stage.get()),
        "{err}"
    );
    assert_eq!(a.environment(), Environment::Production);
    assert_eq!(stored_environment(&path), "Production");
}

#[test]
fn following_a_ramp_after_a_dropped_rollback_starts_a_new_stage() {
    let dir = Scratch::new("ramp-after-dropped");
    let path = dir.file("gate.db");
    let (a, b) = a_waiting_rollback_and_another_gates_ramp(&path);
    // While rolled back, a serves everyone the stable version; they all fail.
    for i in 0..400 {
        let decision = a.route_request(&format!("user-{i}"));
        assert!(!decision.is_canary);
        a.record_outcome(&decision, false, Duration::from_millis(5));
    }
    let rolled_back = a.stage();
    assert!(a.sync_now());
    eventually("a follows b's ramp", || a.environment() == RAMP);
    assert!(
        a.stage() > rolled_back,
        "the ramp judged as a's rolled-back stage"
    );
    let stable = a.health().evidence.stable;
    assert_eq!(
        (stable.requests, stable.errors),
        (0, 0),
        "the rolled-back stage's outcomes in the ramp's window"
    );
    eventually("b reads a's contribution to the ramp", || {
        b.health().evidence.instances == 2
    });
    assert_eq!(b.health().evidence.stable.errors, 0);
    // a's dropped rollback stays counted where it was made (a's routing did roll back), and
    // only there: the store never held it.
    let total = |gate: &PromotionGateManager| -> u64 {
        gate.rollback_counts().iter().map(|c| c.count).sum()
    };
    assert_eq!((total(&a), total(&b)), (1, 0));
    assert!(
        a.rollback_history().is_empty(),
        "the history is the store's"
    );
}

#[test]
fn a_race_between_a_rollback_and_a_ramp_has_one_winner_and_both_converge() {
    for round in 0..10 {
        let dir = Scratch::new(&format!("race-{round}"));
        let path = dir.file("gate.db");
        race_a_rollback_against_a_ramp(&[open(&path), open(&path)]);
    }
}

/// The child side of the multi-process tests, set to `<role>|<path>`.
const CHILD: &str = "PGATE_STORE_TEST_ROLE";

fn child(test: &str, role: &str, path: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--test-threads=1", "--nocapture"])
        .env(CHILD, format!("{role}|{path}"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn child_role() -> Option<(String, String)> {
    let spec = std::env::var(CHILD).ok()?;
    let (role, path) = spec.split_once('|').unwrap();
    Some((role.to_string(), path.to_string()))
}

#[test]
fn four_processes_stop_routing_to_a_canary_one_of_them_saw_fail() {
    const TEST: &str = "four_processes_stop_routing_to_a_canary_one_of_them_saw_fail";
    if let Some((role, path)) = child_role() {
        let gate = open(&path);
        std::fs::write(format!("{path}.ready-{}", std::process::id()), b"").unwrap();
        if role == "recorder" {
            // Wait for every process to be up, then fail the canary.
            eventually("all four processes opened the gate", || {
                std::fs::read_dir(std::path::Path::new(&path).parent().unwrap())
                    .unwrap()
                    .filter(|e| {
                        e.as_ref()
                            .unwrap()
                            .file_name()
                            .to_string_lossy()
                            .contains(".ready-")
                    })
                    .count()
                    == 4
            });
            fail_the_canary(&gate);
        }
        // Every process, the recorder included: routing reaches Production by itself.
        eventually("this process stops routing to the canary", || {
            !routes_to_canary(&gate)
        });
        println!("converged");
        return;
    }
    let dir = Scratch::new("processes");
    let path = dir.file("gate.db");
    let children: Vec<_> = ["recorder", "router", "router", "router"]
        .iter()
        .map(|role| child(TEST, role, &path))
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        assert!(String::from_utf8_lossy(&output.stdout).contains("converged"));
    }
    // After a restart, no process routes to the canary either.
    let restarted = open(&path);
    assert_eq!(restarted.environment(), Environment::Production);
    assert!(!routes_to_canary(&restarted));
    assert_eq!(restarted.rollback_history().len(), 1);
}

/// A gate opened on a relative path keeps to its file when the host changes its working
/// directory afterwards (a daemon's `chdir("/")`, Python's `os.chdir`): the path was looked up
/// again at every store call, so the gate took its file for removed, created `gate.db` in the
/// new directory and wrote its rollback there, unseen by every other process. In a child
/// process: the working directory is the whole process's.
#[test]
fn a_relative_path_names_the_file_it_named_at_open_after_the_host_changes_directory() {
    const TEST: &str =
        "a_relative_path_names_the_file_it_named_at_open_after_the_host_changes_directory";
    let here = |dir: &str, name: &str| std::path::Path::new(dir).join(name);
    if let Some((role, dir)) = child_role() {
        assert_eq!(role, "chdir");
        std::env::set_current_dir(here(&dir, "a")).unwrap();
        let gate = open("gate.db");
        std::env::set_current_dir(here(&dir, "b")).unwrap();
        gate.rollback("bad deploy").unwrap();
        assert!(gate.sync_now());
        std::thread::sleep(Duration::from_millis(SYNC_MS * 10));
        assert_eq!(gate.environment(), Environment::Production);
        drop(gate);
        println!("rolled back");
        return;
    }
    let dir = Scratch::new("chdir");
    let root = dir.file("");
    for sub in ["a", "b"] {
        std::fs::create_dir(here(&root, sub)).unwrap();
    }
    let output = child(TEST, "chdir", &root).wait_with_output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("rolled back"));
    assert!(
        !here(&root, "b").join("gate.db").exists(),
        "the gate created gate.db in the directory it changed to"
    );
    let a = open(here(&root, "a").join("gate.db").to_str().unwrap());
    assert_eq!(a.environment(), Environment::Production);
    assert_eq!(a.rollback_history().len(), 1);
}

/// How many flags the writer child toggles in turn.
const WRITER_FLAGS: i64 = 5;

/// The writer child's fixed sequence of writes: write `j` (stored as version `j + 2`, the first
/// state being version 1) toggles `flag_{j % WRITER_FLAGS}`. Returns the flags on and the history
/// `(version, flag)` of the flags turned off (the newest `bound`) after the writes up to
/// stored `version`.
fn after_the_writer(version: i64, bound: usize) -> (Vec<String>, Vec<(i64, String)>) {
    let mut flags = vec!["checkout_v2".to_string()];
    let mut history = Vec::new();
    for j in 0..version - 1 {
        let flag = format!("flag_{}", j % WRITER_FLAGS);
        if let Some(at) = flags.iter().position(|f| *f == flag) {
            flags.remove(at);
            history.push((j + 2, flag));
        } else {
            flags.push(flag);
        }
    }
    let kept = history.len().saturating_sub(bound);
    (flags, history.split_off(kept))
}

fn stored_version(check: &rusqlite::Connection) -> i64 {
    check
        .query_row("SELECT version FROM release", [], |row| row.get(0))
        .unwrap()
}

#[test]
fn a_process_killed_in_the_middle_of_writes_leaves_the_store_consistent() {
    const TEST: &str = "a_process_killed_in_the_middle_of_writes_leaves_the_store_consistent";
    if let Some((_, path)) = child_role() {
        let gate = open(&path);
        // Go on with the fixed sequence from the write the stored version says is next.
        let start = stored_version(&rusqlite::Connection::open(&path).unwrap()) - 1;
        std::fs::write(format!("{path}.ready"), b"").unwrap();
        for j in start.. {
            let flag = format!("flag_{}", j % WRITER_FLAGS);
            if gate.is_feature_enabled(&flag) {
                gate.disable_feature(&flag).unwrap();
            } else {
                gate.enable_feature(&flag).unwrap();
            }
        }
        return;
    }
    let dir = Scratch::new("kill");
    let path = dir.file("gate.db");
    let mut last_version = 0;
    for _ in 0..3 {
        let _ = std::fs::remove_file(format!("{path}.ready"));
        let mut writer = child(TEST, "writer", &path);
        eventually("the writer started", || {
            std::path::Path::new(&format!("{path}.ready")).exists()
        });
        std::thread::sleep(Duration::from_millis(30));
        writer.kill().unwrap(); // SIGKILL
        writer.wait().unwrap();
        // The store opens, and holds exactly the state the sequence's writes up to its stored
        // version leave: each write all or nothing, none lost, none half done.
        let gate = open(&path);
        let check = rusqlite::Connection::open(&path).unwrap();
        let integrity: String = check
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(integrity, "ok");
        let (version, config): (i64, String) = check
            .query_row("SELECT version, config FROM release", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap();
        assert!(version >= last_version, "the store went back: {version}");
        last_version = version;
        let stored = PromotionConfig::from_json(&config).unwrap();
        let (flags, history) = after_the_writer(version, stored.max_rollback_history);
        assert_eq!(stored.feature_flags, flags, "at version {version}");
        let stored_history: Vec<(i64, String)> = check
            .prepare(
                "SELECT version, feature FROM history WHERE rolled_back = 'flag' ORDER BY version",
            )
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(stored_history, history, "at version {version}");
        let all_events: i64 = check
            .query_row("SELECT count(*) FROM history", [], |row| row.get(0))
            .unwrap();
        assert_eq!(all_events as usize, history.len());
        // The gate opened on it agrees.
        assert_eq!(gate.config().feature_flags, flags);
        let opened: Vec<String> = gate
            .rollback_history()
            .into_iter()
            .map(|e| e.feature)
            .collect();
        let expected: Vec<String> = history.into_iter().map(|(_, flag)| flag).collect();
        assert_eq!(opened, expected);
        drop(gate);
    }
}

/// Holds SQLite's write lock on `path` from another connection until dropped.
struct WriteLock(#[allow(dead_code, reason = "held for its lock")] rusqlite::Connection);

impl WriteLock {
    fn take(path: &str) -> Self {
        let connection = rusqlite::Connection::open(path).unwrap();
        connection.execute_batch("BEGIN IMMEDIATE").unwrap();
        Self(connection)
    }
}

fn stored_environment(path: &str) -> String {
    let check = rusqlite::Connection::open(path).unwrap();
    check
        .query_row("SELECT environment FROM release", [], |row| row.get(0))
        .unwrap()
}

/// The stored release's version, or `None` when the store holds none.
fn stored_version_if_any(path: &str) -> Option<i64> {
    let check = rusqlite::Connection::open(path).unwrap();
    check
        .query_row("SELECT version FROM release", [], |row| row.get(0))
        .ok()
}

#[test]
fn a_store_emptied_under_running_gates_is_given_their_state_again_and_they_go_on() {
    let dir = Scratch::new("emptied");
    let path = dir.file("gate.db");
    let (a, b) = (open(&path), open(&path));
    a.rollback("bad deploy").unwrap();
    eventually("b follows the rollback", || {
        b.environment() == Environment::Production
    });
    // The gate's state is deleted by hand (a reset): the running gates write theirs again.
    let wipe = rusqlite::Connection::open(&path).unwrap();
    wipe.execute_batch("DELETE FROM history; DELETE FROM release;")
        .unwrap();
    eventually("the state is written again", || {
        stored_version_if_any(&path).is_some()
    });
    assert_eq!(stored_environment(&path), "Production", "still rolled back");
    assert_eq!(a.stage(), b.stage());
    // Both write again, and follow each other.
    a.promote(Environment::Canary {
        traffic_percent: 5.0,
    })
    .unwrap();
    eventually("b follows the new rollout", || {
        b.environment()
            == Environment::Canary {
                traffic_percent: 5.0,
            }
    });
    b.rollback("again").unwrap();
    eventually("a follows b's rollback", || {
        a.environment() == Environment::Production
    });
    assert_eq!(a.stage(), b.stage());
}

#[test]
fn a_release_deleted_alone_is_written_again_and_its_history_goes() {
    let dir = Scratch::new("release-deleted");
    let path = dir.file("gate.db");
    a_release_deleted_alone_is_written_again_without_its_history(&|| open(&path), &|| {
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute("DELETE FROM release", [])
            .unwrap();
    });
}

#[test]
fn a_release_put_back_alone_to_an_older_version_is_followed_and_written_over() {
    let dir = Scratch::new("release-put-back");
    let path = dir.file("gate.db");
    a_release_put_back_alone_to_an_older_version_is_followed(&|| open(&path), &|| {
        let connection = rusqlite::Connection::open(&path).unwrap();
        // The whole row: its rollback counts and rollout (and the rollout's first stage at
        // its split) are as of its own version.
        let row: [rusqlite::types::Value; 7] = connection
            .query_row(
                "SELECT version, stage, environment, config, rollbacks, rollout,
                     rollout_split_from
                 FROM release",
                [],
                |row| {
                    Ok([
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                        row.get(6)?,
                    ])
                },
            )
            .unwrap();
        Box::new(move || {
            connection
                .execute(
                    "UPDATE release SET version = ?1, stage = ?2, environment = ?3, config = ?4,
                         rollbacks = ?5, rollout = ?6, rollout_split_from = ?7",
                    rusqlite::params_from_iter(row),
                )
                .unwrap();
        })
    });
}

#[test]
fn a_rollback_waiting_to_be_written_when_the_store_is_emptied_is_its_first_state() {
    let dir = Scratch::new("emptied-pending");
    let path = dir.file("gate.db");
    let gate = open_with(&path, 10.0, 20).unwrap();
    // Another connection holds the write lock, then empties the store and lets go.
    let mut wiper = rusqlite::Connection::open(&path).unwrap();
    let wipe = wiper
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    roll_back_while_the_store_is_unavailable(&gate, &path);
    wipe.execute_batch("DELETE FROM history; DELETE FROM release;")
        .unwrap();
    wipe.commit().unwrap();
    eventually("the rollback is written as the first state", || {
        stored_version_if_any(&path).is_some()
    });
    assert_eq!(stored_environment(&path), "Production");
    let other = open(&path);
    assert_eq!(other.environment(), Environment::Production);
    assert_eq!(other.rollback_history(), gate.rollback_history());
    assert_eq!(other.stage(), gate.stage());
}

#[test]
fn a_store_put_back_to_an_older_state_is_followed_with_stages_numbered_above() {
    let dir = Scratch::new("older");
    let path = dir.file("gate.db");
    let a = open(&path);
    let old_release: (i64, i64, String, String) = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT version, stage, environment, config FROM release",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .unwrap();
    a.promote(Environment::Canary {
        traffic_percent: 5.0,
    })
    .unwrap();
    a.rollback("bad deploy").unwrap();
    let stage = a.stage();
    // The store is put back to the canary at 10 % of its first state (a restored backup), in
    // one transaction: the gate's sync thread, finding the store emptied between two, would
    // write its own state back first.
    let mut restore = rusqlite::Connection::open(&path).unwrap();
    restore.busy_timeout(Duration::from_secs(5)).unwrap();
    let put_back = restore
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    put_back
        .execute_batch("DELETE FROM history; DELETE FROM release;")
        .unwrap();
    put_back
        .execute(
            "INSERT INTO release (gate, version, stage, environment, config)
             VALUES ('checkout', ?1, ?2, ?3, ?4)",
            rusqlite::params![old_release.0, old_release.1, old_release.2, old_release.3],
        )
        .unwrap();
    put_back.commit().unwrap();
    eventually("a follows the restored state", || {
        a.environment()
            == Environment::Canary {
                traffic_percent: 10.0,
            }
    });
    assert!(a.stage() > stage, "a gate's stage never goes back");
    let stored_stage: i64 = restore
        .query_row("SELECT stage FROM release", [], |row| row.get(0))
        .unwrap();
    assert_eq!(
        u64::try_from(stored_stage).unwrap(),
        a.stage().get(),
        "numbered above the local stage"
    );
    let b = open(&path);
    assert_eq!(b.stage(), a.stage());
}

#[test]
fn while_the_store_is_locked_routing_goes_on_a_rollback_happens_and_promotion_is_refused() {
    let dir = Scratch::new("locked");
    let path = dir.file("gate.db");
    let gate = open_with(&path, 10.0, 20).unwrap();
    let lock = WriteLock::take(&path);

    // SQLite's error names the lock; a flag edit is refused like a promotion.
    let err = gate.enable_feature("x").unwrap_err();
    assert!(err.to_string().contains("locked"), "{err}");
    assert!(!gate.is_feature_enabled("x"));
    roll_back_while_the_store_is_unavailable(&gate, &path);
    assert_eq!(stored_environment(&path), "Canary{10}");

    // The store returns: the sync thread writes the rollback.
    drop(lock);
    eventually("the rollback is written", || {
        stored_environment(&path) == "Production"
    });
    let other = open(&path);
    assert_eq!(other.environment(), Environment::Production);
    assert_eq!(other.rollback_history(), gate.rollback_history());
    gate.promote(Environment::Canary {
        traffic_percent: 1.0,
    })
    .unwrap();
}

#[test]
fn an_automatic_rollback_while_the_store_is_locked_is_immediate_and_written_later() {
    let dir = Scratch::new("locked-auto");
    let path = dir.file("gate.db");
    let gate = open_with(&path, 50.0, 20).unwrap();
    let watcher = open_with(&path, 50.0, 20).unwrap();
    let lock = WriteLock::take(&path);
    fail_the_canary(&gate);
    assert!(!routes_to_canary(&gate));
    assert!(
        routes_to_canary(&watcher),
        "the store was written while locked"
    );
    drop(lock);
    eventually("the other gate follows once the store is back", || {
        !routes_to_canary(&watcher)
    });
    let history = watcher.rollback_history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].trigger, RollbackTrigger::Automatic);
    assert_eq!(history[0].reason, gate.rollback_history()[0].reason);
}

#[test]
fn a_write_right_after_an_automatic_rollback_is_made_on_top_of_it() {
    // The automatic rollback is published at once and left to the sync thread: the host's
    // next write, at once (say, on the rollback's change), writes it first, then itself.
    for round in 0..5 {
        let dir = Scratch::new("after-auto");
        let path = dir.file("gate.db");
        let gate = open_with(&path, 50.0, 5000).unwrap();
        fail_the_canary(&gate);
        let next = Environment::Canary {
            traffic_percent: 1.0,
        };
        if let Err(err) = gate.promote(next) {
            panic!("round {round}: {err}");
        }
        assert_eq!(stored_environment(&path), "Canary{1}");
        let reopened = open(&path);
        assert_eq!(reopened.environment(), next);
        let history = reopened.rollback_history();
        assert_eq!(history.len(), 1, "round {round}");
        assert_eq!(history[0].trigger, RollbackTrigger::Automatic);
    }
}

fn automatic_rollbacks(gate: &PromotionGateManager) -> u64 {
    gate.rollback_counts()
        .iter()
        .filter(|c| c.trigger == RollbackTrigger::Automatic)
        .map(|c| c.count)
        .sum()
}

#[test]
fn a_promotion_right_after_an_automatic_rollback_counts_it_once() {
    // The host's write comes 0 to 2 ms after the rollback, racing the sync thread's write of
    // it: whichever stores it, the gate counts it once, as a gate opened on the store does.
    for round in 0..40 {
        let dir = Scratch::new(&format!("count-once-{round}"));
        let path = dir.file("gate.db");
        let gate = open_with(&path, 50.0, 5000).unwrap();
        fail_the_canary(&gate);
        std::thread::sleep(Duration::from_micros(50 * round));
        gate.promote(Environment::Canary {
            traffic_percent: 1.0,
        })
        .unwrap();
        assert_eq!(automatic_rollbacks(&open(&path)), 1, "round {round}");
        assert_eq!(automatic_rollbacks(&gate), 1, "round {round}");
    }
}

#[test]
fn the_count_of_dropped_rollback_events_never_goes_back_when_the_store_catches_up() {
    let dir = Scratch::new("dropped-count");
    let path = dir.file("gate.db");
    let mut config = PromotionConfig::from_json(&document(&path, 10.0, 20)).unwrap();
    config.max_rollback_history = 2;
    config.feature_flags = vec!["a".into(), "b".into(), "c".into()];
    let gate = PromotionGateManager::new(
        config,
        SloAdmissionController::new(SloConfig::default()).unwrap(),
    )
    .unwrap();
    for flag in ["a", "b", "c"] {
        gate.disable_feature(flag).unwrap();
    }
    assert_eq!(gate.rollback_events_dropped(), 1);
    let lock = WriteLock::take(&path);
    gate.rollback("written later").unwrap();
    assert_eq!(gate.rollback_events_dropped(), 2);
    drop(lock);
    // The written rollback settles the pending one: the stored history replaces the local
    // one, and the count carries on from where it was.
    eventually("the rollback is written", || {
        stored_environment(&path) == "Production"
    });
    eventually("the gate has caught up", || {
        gate.promote(Environment::Canary {
            traffic_percent: 1.0,
        })
        .is_ok()
    });
    assert_eq!(gate.rollback_history().len(), 2);
    let dropped = gate.rollback_events_dropped();
    assert!(dropped >= 2, "the count went back from 2 to {dropped}");
}

#[test]
fn a_rollback_made_offline_yields_to_one_already_stored() {
    let dir = Scratch::new("offline-overtaken");
    let path = dir.file("gate.db");
    let offline = open_with(&path, 10.0, 20).unwrap();
    let online = open(&path);
    let lock = WriteLock::take(&path);
    offline.rollback("seen offline").unwrap();
    drop(lock);
    // Before the offline gate's sync thread writes its rollback, another rolls back too; at
    // most one release rollback is stored for the stage.
    let _ = online.rollback("seen online");
    eventually("both gates agree", || {
        // (Their configs differ in the store key's busy timeout only.)
        offline.rollback_history() == online.rollback_history()
            && offline.environment() == online.environment()
    });
    assert_eq!(offline.rollback_history().len(), 1);
    assert_eq!(stored_environment(&path), "Production");
}

#[test]
fn a_bad_event_written_by_hand_leaves_the_gate_as_it_was_until_it_is_mended() {
    let dir = Scratch::new("bad-event");
    let path = dir.file("gate.db");
    let gate = open(&path);
    let mut hand = rusqlite::Connection::open(&path).unwrap();
    gate.rollback("first").unwrap();
    let before = gate.rollback_history();
    // The next version, written by hand with an event whose reason is too long, in one
    // transaction as every write is: a sync tick between two commits would read the new
    // version without its event, and know it, so an event added to it later is never read.
    let edit = hand.transaction().unwrap();
    edit.execute("UPDATE release SET version = version + 1", [])
        .unwrap();
    edit.execute(
        r#"INSERT INTO history SELECT gate, version, 'release', 'Canary{10}', ?1, 'manual',
               '{"canary":{"traffic_percent":10.0}}', 0 FROM release"#,
        ["r".repeat(promotion_gates::MAX_REASON_BYTES + 1)],
    )
    .unwrap();
    edit.commit().unwrap();
    // Many sync intervals: every read of it is refused, and the gate keeps its history.
    std::thread::sleep(Duration::from_millis(SYNC_MS * 20));
    assert_eq!(gate.rollback_history(), before);
    assert_eq!(gate.environment(), Environment::Production);
    // A write finds the row (guarded by the version the gate still knows) and is refused
    // with the reads' error, changing nothing.
    let Err(Error::Store(err)) = gate.enable_feature("dark_mode") else {
        panic!("a write went through while the stored event is bad");
    };
    assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
    assert!(err.to_string().contains("history.reason"), "{err}");
    assert!(!gate.is_feature_enabled("dark_mode"));
    hand.execute(
        "UPDATE history SET reason = 'mended' WHERE reason <> 'first'",
        [],
    )
    .unwrap();
    eventually("the mended event is read", || {
        gate.rollback_history().len() == 2
    });
    assert_eq!(gate.rollback_history()[1].reason, "mended");
}

#[test]
fn a_stored_state_of_another_gate_is_refused_naming_both_gates() {
    let dir = Scratch::new("other-gate");
    let path = dir.file("gate.db");
    drop(open(&path));
    // The row of `checkout` holds the config of `payments` (edited by hand): the gate would
    // run under that name.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE release SET config = json_set(config, '$.gate', 'payments')",
            [],
        )
        .unwrap();
    let Err(Error::Store(err)) = open_with(&path, 10.0, 5000) else {
        panic!("a gate opened on another gate's state");
    };
    assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
    assert!(
        err.to_string().contains(
            r#"release.config.gate = "payments": the state of another gate, this one is "checkout""#
        ),
        "{err}"
    );
}

#[test]
fn a_corrupt_store_file_is_an_error_naming_the_path() {
    let dir = Scratch::new("corrupt");
    let path = dir.file("gate.db");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let Err(Error::Store(err)) = open_with(&path, 10.0, 20) else {
        panic!("a corrupt file was opened");
    };
    assert_eq!(err.problem(), StoreProblem::NotOurs);
    assert_eq!(err.location(), path);
    assert!(err.to_string().contains(&path));
}

#[test]
fn another_programs_database_is_refused_and_left_as_it_was() {
    let dir = Scratch::new("theirs-left");
    let path = dir.file("x.db");
    let theirs = rusqlite::Connection::open(&path).unwrap();
    theirs
        .execute_batch("PRAGMA journal_mode = DELETE; CREATE TABLE t(a); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(theirs);
    let before = std::fs::read(&path).unwrap();
    let Err(Error::Store(err)) = open_with(&path, 10.0, 20) else {
        panic!("another program's database was opened");
    };
    assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
    assert!(
        err.to_string().contains("another program's database"),
        "{err}"
    );
    assert!(std::fs::read(&path).unwrap() == before, "its bytes changed");
    for beside in ["-wal", "-shm", "-journal"] {
        let file = format!("{path}{beside}");
        assert!(!std::path::Path::new(&file).exists(), "{file} was left");
    }
    let theirs = rusqlite::Connection::open(&path).unwrap();
    let journal: String = theirs
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap();
    assert_eq!(journal, "delete");
}

#[test]
fn a_store_file_whose_history_table_was_dropped_is_not_ours_naming_the_table() {
    let dir = Scratch::new("dropped-table");
    let path = dir.file("gate.db");
    drop(open(&path));
    let check = rusqlite::Connection::open(&path).unwrap();
    check.execute_batch("DROP TABLE history").unwrap();
    drop(check);
    let Err(Error::Store(err)) = open_with(&path, 10.0, 20) else {
        panic!("a damaged file was opened");
    };
    assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
    assert!(err.to_string().contains("no table history"), "{err}");
}

#[test]
fn an_automatic_rollback_is_stored_even_when_the_gate_is_dropped_at_once() {
    // Dropping the gate right after an automatic rollback (a reload, `pgate_gate_free`) races the
    // sync thread that writes it: run it many times.
    for round in 0..20 {
        let dir = Scratch::new(&format!("drop-at-once-{round}"));
        let path = dir.file("gate.db");
        let gate = open_with(&path, 50.0, 5000).unwrap();
        fail_the_canary(&gate);
        drop(gate);
        assert_eq!(stored_environment(&path), "Production", "round {round}");
        let reopened = open(&path);
        assert_eq!(
            reopened.environment(),
            Environment::Production,
            "round {round}"
        );
        let history = reopened.rollback_history();
        assert_eq!(history.len(), 1, "round {round}");
        assert_eq!(
            history[0].trigger,
            RollbackTrigger::Automatic,
            "round {round}"
        );
    }
}

#[test]
fn failed_store_writes_leave_the_live_flags_readable() {
    let dir = Scratch::new("failed-writes");
    let path = dir.file("gate.db");
    let gate = open_with(&path, 100.0, 0).unwrap();
    let lock = WriteLock::take(&path);
    // Many more failed writes than the gate has flag set numbers.
    let attempts = 2 * promotion_gates::FLAG_SET_SLOTS;
    for i in 0..attempts {
        let err = gate.enable_feature(format!("f{i}")).unwrap_err();
        assert!(err.to_string().contains("locked"), "{err}");
    }
    drop(lock);
    assert_eq!(gate.config().feature_flags, ["checkout_v2"]);
    // A thread that never read the gate before: no recent set to fall back on.
    std::thread::scope(|s| {
        s.spawn(|| {
            let decision = gate.route_request("user-1");
            assert!(decision.is_canary);
            assert!(!decision.enabled_features.is_stale());
            assert!(decision.enabled_features.contains("checkout_v2"));
            assert_eq!(decision.enabled_features.len(), 1);
        });
    });
    // And the gate still writes.
    gate.enable_feature("f0").unwrap();
    assert!(gate.route_request("user-1").enabled_features.contains("f0"));
}

#[test]
fn a_swapped_slo_is_this_process_own_and_the_stored_state_stays() {
    let dir = Scratch::new("swap-slo");
    let path = dir.file("gate.db");
    let first = open(&path);
    let second = open(&path);
    let stage = first.stage();
    let stricter = SloConfig {
        min_samples: 500,
        ..Default::default()
    };
    let seen = second.change_count();
    first.swap_slo(stricter).unwrap();
    assert_eq!(first.slo_controller().config().min_samples, 500);
    assert_eq!(first.stage(), stage);
    // The swap wrote nothing to the store: the other process's next write is not refused as
    // a lost race, it sees no change from the store, and it keeps its own SLO.
    second.enable_feature("after_swap").unwrap();
    let origins: Vec<_> = second.changes_since(0).iter().map(|c| c.origin).collect();
    assert_eq!(origins, [ChangeOrigin::ThisGate]);
    assert_eq!(
        second.change_count(),
        seen + 1,
        "its own write alone moved its count"
    );
    assert_eq!(second.slo_controller().config().min_samples, 100);
    eventually("the other process's flag reaches the swapped gate", || {
        first.is_feature_enabled("after_swap")
    });
    assert_eq!(first.slo_controller().config().min_samples, 500);
    drop((first, second));
    let reopened = open(&path);
    assert_eq!(reopened.slo_controller().config().min_samples, 100);
    assert_eq!(
        reopened.stage().get(),
        stage.get() + 1,
        "the flag turned on began a stage, the swap none"
    );
    assert!(reopened.is_feature_enabled("after_swap"));
}

#[test]
fn overrides_survive_a_reopen() {
    let scratch = Scratch::new("overrides");
    let path = scratch.file("gate.db");
    {
        let first = open(&path);
        let mut config = first.config();
        config.overrides = Some(Overrides {
            canary_ids: vec!["tester-1".into()],
            ..Default::default()
        });
        first.swap_config(config).unwrap();
        assert!(first.route_request("tester-1").forced.is_some());
    }
    // The static config has no overrides; the stored state, which wins, has them.
    let reopened = open(&path);
    let overrides = reopened.config().overrides.unwrap();
    assert_eq!(overrides.canary_ids, ["tester-1"]);
    let tester = reopened.route_request("tester-1");
    assert!(tester.is_canary && tester.forced.is_some());
}

#[test]
fn a_rollback_made_after_the_store_file_was_removed_reaches_every_gate_old_and_new() {
    let dir = Scratch::new("file-removed");
    let path = dir.file("gate.db");
    let (a, b) = (open(&path), open(&path));
    remove_store(&path);
    // A process started now (a reload's new worker) creates the file afresh, from its document.
    let started_after = open(&path);
    assert!(routes_to_canary(&started_after));
    a.rollback("bad deploy").unwrap();
    for (name, gate) in [("b", &b), ("the gate started after", &started_after)] {
        eventually(&format!("{name} follows a's rollback"), || {
            gate.sync_now();
            gate.environment() == Environment::Production
        });
        assert!(!routes_to_canary(gate), "{name}");
        assert_eq!(gate.rollback_history(), a.rollback_history(), "{name}");
        assert_eq!(gate.stage(), a.stage(), "{name}");
    }
    // And every process (re)started later.
    drop((a, b, started_after));
    let restarted = open(&path);
    assert_eq!(restarted.environment(), Environment::Production);
    let history = restarted.rollback_history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].reason, "bad deploy");
}

#[test]
fn a_backup_moved_over_the_store_file_is_followed_as_a_store_that_went_back() {
    let dir = Scratch::new("file-restored");
    let path = dir.file("gate.db");
    let (a, b) = (open(&path), open(&path));
    let saved = dir.file("backup.db");
    backup(&path, &saved); // Canary{10}, the first state
    a.promote(Environment::Canary {
        traffic_percent: 5.0,
    })
    .unwrap();
    a.rollback("bad deploy").unwrap();
    eventually("b follows the rollback", || {
        b.environment() == Environment::Production
    });
    let stage = a.stage();
    move_over(&saved, &path);
    // Both notice the new file at their next sync and follow its state, as they follow a
    // store put back to an older state by hand: stages numbered above their own, the history
    // the restored one.
    for (name, gate) in [("a", &a), ("b", &b)] {
        eventually(&format!("{name} follows the restored state"), || {
            gate.environment()
                == Environment::Canary {
                    traffic_percent: 10.0,
                }
        });
        assert!(routes_to_canary(gate), "{name}");
    }
    eventually("both gates agree", || a.stage() == b.stage());
    assert!(a.stage() > stage, "a gate's stage never goes back");
    assert!(a.rollback_history().is_empty());
    assert_eq!(stored_environment(&path), "Canary{10}");
    let started_after = open(&path);
    assert_eq!(started_after.stage(), a.stage());
    assert!(started_after.rollback_history().is_empty());
    // Writes go on in the restored file, and reach every gate.
    b.rollback("bad deploy, again").unwrap();
    for gate in [&a, &started_after] {
        eventually("the rollback reaches every gate", || {
            gate.environment() == Environment::Production
        });
    }
}

#[test]
fn a_new_file_at_the_version_and_stage_a_gate_knows_is_followed_and_not_written_over() {
    // Another file moved over the path, holding another state at the very version and stage
    // the running gates know (its first, Canary{20} where theirs is Canary{10}): the numbers
    // tell nothing across files, so each gate reads it whole and follows it, and a write
    // decided on the old file's state is refused and decided again on the new one's.
    let dir = Scratch::new("file-replaced-same-numbers");
    let path = dir.file("gate.db");
    let (follower, slow) = (open(&path), open_slow(&path));
    let made = dir.file("made.db");
    drop(open_with(&made, 20.0, 5000).unwrap()); // version 1, stage 1, Canary{20}
    let replacement = dir.file("replacement.db");
    backup(&made, &replacement);
    move_over(&replacement, &path);
    let twenty = Environment::Canary {
        traffic_percent: 20.0,
    };
    eventually("the gate follows the new file", || {
        follower.environment() == twenty
    });
    // The slow gate has not read it: its rollback, decided on Canary{10}, is refused, the new
    // state read, and the rollback made of Canary{20}.
    slow.rollback("bad deploy").unwrap();
    let history = slow.rollback_history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].feature, "Canary{20}");
    assert_eq!(stored_environment(&path), "Production");
    eventually("the rollback reaches the other gate", || {
        follower.environment() == Environment::Production
    });
}

#[test]
fn a_write_decided_on_the_restored_version_at_another_stage_does_not_undo_a_rollback() {
    // The restored file holds the version a running gate knows, at another stage (a process
    // opened the restored file and rolled back): the running gate's write was decided on a
    // state the store no longer holds, and is refused, not written over the rollback.
    let dir = Scratch::new("file-restored-same-version");
    let path = dir.file("gate.db");
    let a = open_slow(&path);
    a.enable_feature("dark_mode").unwrap(); // version 2, stage 2 (a flag turned on)
    let saved = dir.file("backup.db");
    backup(&path, &saved); // version 2, stage 2
    a.disable_feature("dark_mode").unwrap(); // a knows version 3, stage 2
    move_over(&saved, &path);
    let c = open(&path);
    c.rollback("bad canary").unwrap(); // version 3, stage 3
    assert_eq!(stored_environment(&path), "Production");
    let ramp = a.promote(Environment::Canary {
        traffic_percent: 5.0,
    });
    assert!(
        matches!(&ramp, Err(Error::Store(e)) if e.problem() == StoreProblem::Conflict),
        "{ramp:?}"
    );
    assert_eq!(
        stored_environment(&path),
        "Production",
        "the rollback stays"
    );
    // Refused, a has followed the stored state.
    assert_eq!(a.environment(), Environment::Production);
}

#[test]
fn another_programs_file_moved_over_the_store_is_refused_and_the_gate_recovers_when_ours_is_back() {
    let dir = Scratch::new("file-foreign");
    let path = dir.file("gate.db");
    let gate = open(&path);
    gate.rollback("bad deploy").unwrap();
    let (history, stage) = (gate.rollback_history(), gate.stage());
    let kept = dir.file("kept.db");
    backup(&path, &kept);
    let foreign = dir.file("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);")
        .unwrap();
    move_over(&foreign, &path);
    let new_rollout = Environment::Canary {
        traffic_percent: 1.0,
    };
    let err = gate.promote(new_rollout).unwrap_err();
    let Error::Store(store_err) = &err else {
        panic!("{err}")
    };
    assert_eq!(store_err.problem(), StoreProblem::NotOurs, "{err}");
    assert_eq!(store_err.location(), path);
    assert!(
        err.to_string().contains("another program's database"),
        "{err}"
    );
    // Many sync intervals: the gate routes on its last state, which nothing changed.
    std::thread::sleep(Duration::from_millis(10 * SYNC_MS));
    assert_eq!(gate.environment(), Environment::Production);
    assert!(!routes_to_canary(&gate));
    assert_eq!((gate.rollback_history(), gate.stage()), (history, stage));
    // The operator puts the gate's file back: it is read again, and written.
    move_over(&kept, &path);
    eventually("the gate writes to its file again", || {
        gate.promote(new_rollout).is_ok()
    });
    assert_eq!(stored_environment(&path), "Canary{1}");
}

#[test]
fn a_store_file_removed_alone_is_followed_once_every_process_closed_it() {
    const TEST: &str = "a_store_file_removed_alone_is_followed_once_every_process_closed_it";
    if let Some((_, path)) = child_role() {
        // Another process that has the file open, and reads the store when told to.
        let gate = open_slow(&path);
        std::fs::write(format!("{path}.ready"), b"").unwrap();
        eventually("told to read the store", || {
            std::path::Path::new(&format!("{path}.go")).exists()
        });
        eventually("this process follows the rollback", || {
            gate.sync_now();
            gate.environment() == Environment::Production
        });
        println!("followed");
        return;
    }
    let dir = Scratch::new("file-removed-alone");
    let path = dir.file("gate.db");
    let gate = open_slow(&path);
    let other = child(TEST, "holder", &path);
    eventually("the other process opened the gate", || {
        std::path::Path::new(&format!("{path}.ready")).exists()
    });
    // Only the file: its -wal and -shm stay, the other process's still.
    std::fs::remove_file(&path).unwrap();
    gate.rollback("after the file was removed").unwrap();
    assert_eq!(gate.environment(), Environment::Production);
    std::fs::write(format!("{path}.go"), b"").unwrap();
    eventually("this gate's rollback is stored", || {
        gate.sync_now();
        stored_version_if_any(&path).is_some() && stored_environment(&path) == "Production"
    });
    let output = other.wait_with_output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("followed"));
    let started_after = open(&path);
    assert_eq!(started_after.environment(), Environment::Production);
    assert_eq!(started_after.rollback_history(), gate.rollback_history());
    let integrity: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

/// A clock that panics when read on the gate's sync thread, `panics` times: for wall time, or
/// for monotonic time when `monotonic`.
#[derive(Debug)]
struct PanicsOnTheSyncThread {
    real: promotion_gates::SystemClock,
    panics: std::sync::atomic::AtomicU32,
    monotonic: bool,
}

impl PanicsOnTheSyncThread {
    fn read(&self, monotonic: bool) {
        use std::sync::atomic::Ordering;
        let on_sync_thread = std::thread::current().name() == Some("pgate-sync");
        if on_sync_thread
            && monotonic == self.monotonic
            && self
                .panics
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            // Unwinds as a panic does, without the panic hook: with RUST_BACKTRACE=1 the hook
            // resolves a backtrace of this debug binary, which on a loaded machine holds the
            // sync thread for longer than the tests wait for its next tick.
            std::panic::resume_unwind(Box::new("a host's clock failed on the sync thread"));
        }
    }
}

impl promotion_gates::Clock for PanicsOnTheSyncThread {
    fn monotonic(&self) -> Duration {
        self.read(true);
        self.real.monotonic()
    }

    fn wall(&self) -> std::time::SystemTime {
        self.read(false);
        self.real.wall()
    }
}

#[test]
fn the_sync_thread_goes_on_after_a_tick_panics() {
    let dir = Scratch::new("tick-panics");
    let path = dir.file("gate.db");
    let clock = std::sync::Arc::new(PanicsOnTheSyncThread {
        real: promotion_gates::SystemClock::new(),
        panics: std::sync::atomic::AtomicU32::new(3),
        monotonic: false,
    });
    let config = PromotionConfig::from_json(&document(&path, 10.0, 5000)).unwrap();
    let slo = SloAdmissionController::new(SloConfig::default()).unwrap();
    let gate = PromotionGateManager::with_clock(config, slo, clock.clone()).unwrap();
    // Each tick reads the clock once it has read the other instances' counts.
    eventually("three ticks panicked", || {
        clock.panics.load(std::sync::atomic::Ordering::SeqCst) == 0
    });
    let other = open(&path);
    other.rollback("bad deploy").unwrap();
    eventually(
        "the gate's sync thread applies the other's rollback",
        || gate.environment() == Environment::Production,
    );
}

/// A clock whose wall time stands at `wall`.
#[derive(Debug)]
struct WallAt {
    real: promotion_gates::SystemClock,
    wall: std::time::SystemTime,
}

impl promotion_gates::Clock for WallAt {
    fn monotonic(&self) -> Duration {
        self.real.monotonic()
    }

    fn wall(&self) -> std::time::SystemTime {
        self.wall
    }
}

#[test]
fn events_at_wall_times_beyond_what_a_store_holds_read_back_as_their_gate_holds_them() {
    let year = Duration::from_secs(31_556_952);
    let epoch = std::time::SystemTime::UNIX_EPOCH;
    for (name, wall) in [
        ("3000", epoch + 1_030 * year),
        ("970", epoch - 1_000 * year),
    ] {
        let dir = Scratch::new(&format!("wall-{name}"));
        let path = dir.file("gate.db");
        let clock = std::sync::Arc::new(WallAt {
            real: promotion_gates::SystemClock::new(),
            wall,
        });
        let config = PromotionConfig::from_json(&document(&path, 10.0, 5000)).unwrap();
        let slo = SloAdmissionController::new(SloConfig::default()).unwrap();
        let gate = PromotionGateManager::with_clock(config, slo, clock).unwrap();
        gate.rollback("bad deploy").unwrap();
        let history = gate.rollback_history();
        // Stored as nanoseconds since the epoch in an i64: the nearer end of 1677 to 2262.
        let end = Duration::from_nanos(i64::MAX.unsigned_abs());
        let expected = if wall > epoch {
            epoch + end
        } else {
            epoch - end
        };
        assert_eq!(history[0].timestamp, expected, "{name}");
        assert_eq!(open(&path).rollback_history(), history, "{name}");
    }
}

/// A clock that drops the gate it was given when read for wall time on that gate's sync
/// thread: the gate's last owner lets go in a host's code that thread runs.
#[derive(Debug, Default)]
struct DropsItsGate {
    real: promotion_gates::SystemClock,
    gate: std::sync::Mutex<Option<PromotionGateManager>>,
    dropped: std::sync::atomic::AtomicBool,
}

impl promotion_gates::Clock for DropsItsGate {
    fn monotonic(&self) -> Duration {
        self.real.monotonic()
    }

    fn wall(&self) -> std::time::SystemTime {
        if std::thread::current().name() == Some("pgate-sync") {
            let gate = self.gate.lock().unwrap().take();
            if let Some(gate) = gate {
                drop(gate);
                self.dropped
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        self.real.wall()
    }
}

#[test]
fn a_gate_dropped_on_its_own_sync_thread_is_dropped_whole() {
    // The drop joined the thread it ran on: "Resource deadlock avoided", a panic mid-drop.
    let dir = Scratch::new("dropped-on-sync");
    let path = dir.file("gate.db");
    let clock = std::sync::Arc::new(DropsItsGate::default());
    let config = PromotionConfig::from_json(&document(&path, 10.0, 5000)).unwrap();
    let slo = SloAdmissionController::new(SloConfig::default()).unwrap();
    let gate = PromotionGateManager::with_clock(config, slo, clock.clone()).unwrap();
    gate.rollback("bad deploy").unwrap();
    *clock.gate.lock().unwrap() = Some(gate);
    eventually("the sync thread dropped the gate", || {
        clock.dropped.load(std::sync::atomic::Ordering::SeqCst)
    });
    assert_eq!(open(&path).environment(), Environment::Production);
}

#[test]
fn a_gate_dropped_inside_its_own_sync_threads_write_is_dropped_whole() {
    // The sync thread applies another process's flag change under the writer lock, reading
    // the clock as it publishes: the clock drops the gate there, and the drop waited for that
    // lock, which its own thread held.
    let dir = Scratch::new("dropped-inside-sync-write");
    let path = dir.file("gate.db");
    let clock = std::sync::Arc::new(DropsItsGate::default());
    let slow_sync = document(&path, 10.0, 5000).replace(
        &format!(r#""sync_interval_ms": {SYNC_MS}"#),
        r#""sync_interval_ms": 60000"#,
    );
    let config = PromotionConfig::from_json(&slow_sync).unwrap();
    let slo = SloAdmissionController::new(SloConfig::default()).unwrap();
    let gate = PromotionGateManager::with_clock(config, slo, clock.clone()).unwrap();
    open(&path).enable_feature("dark_mode").unwrap();
    let mut slot = clock.gate.lock().unwrap();
    let gate = slot.insert(gate);
    assert!(gate.sync_now(), "the sync thread runs");
    drop(slot);
    eventually("the sync thread dropped the gate", || {
        clock.dropped.load(std::sync::atomic::Ordering::SeqCst)
    });
}

#[test]
fn writes_the_store_refuses_change_nothing_and_log_no_change() {
    let dir = Scratch::new("refused-writes");
    let path = dir.file("gate.db");
    let config = PromotionConfig::from_json(&document(&path, 10.0, 50)).unwrap();
    // Promotable on little data, so that a gated move reaches the store.
    let slo = SloConfig {
        min_samples: 20,
        warm_up: Duration::ZERO,
        promotion_evidence: false,
        ..SloConfig::default()
    };
    let gate =
        PromotionGateManager::new(config, SloAdmissionController::new(slo).unwrap()).unwrap();
    for _ in 0..50 {
        for canary in [false, true] {
            gate.record_for(gate.stage(), canary, true, Duration::from_millis(5));
        }
    }
    let (changes, before) = (gate.change_count(), gate.config());
    let (history, counts, stage) = (
        gate.rollback_history(),
        gate.rollback_counts(),
        gate.stage(),
    );
    let lock = WriteLock::take(&path);
    let lines = common::log_lines::LogLines::default();
    let mut renamed = before.clone();
    renamed.environment = Environment::Staging;
    renamed.salt = Some("another".into());
    lines.during(|| {
        let refused = gate.promote(Environment::Production).unwrap_err();
        assert!(matches!(refused, Error::Store(_)), "{refused}");
        let refused = gate.swap_config(renamed).unwrap_err();
        assert!(matches!(refused, Error::Store(_)), "{refused}");
    });
    drop(lock);
    assert_eq!(gate.change_count(), changes);
    assert_eq!(gate.config(), before);
    assert_eq!(
        (
            gate.rollback_history(),
            gate.rollback_counts(),
            gate.stage()
        ),
        (history, counts, stage)
    );
    assert!(
        stored_environment(&path).starts_with("Canary"),
        "{}",
        stored_environment(&path)
    );
    let lines = lines.lines();
    for claim in [
        "skips staging",
        "changes the environment",
        "changes the routing salt",
    ] {
        assert!(
            !lines.iter().any(|l| l.contains(claim)),
            "{claim}: {lines:#?}"
        );
    }
    // Made, each is told.
    let lines = common::log_lines::LogLines::default();
    lines.during(|| gate.promote(Environment::Production).unwrap());
    assert!(
        lines.lines().iter().any(|l| l.contains("skips staging")),
        "{:#?}",
        lines.lines()
    );
}

#[test]
fn writes_the_store_refuses_keep_retired_flag_sets_readable() {
    let dir = Scratch::new("refused-sets");
    let path = dir.file("gate.db");
    let gate = open_with(&path, 10.0, 1).unwrap();
    let canary = (0..)
        .map(|i| gate.route_request(&format!("user-{i}")))
        .find(|decision| decision.is_canary)
        .unwrap();
    let retired = canary.enabled_features.set_id();
    gate.enable_feature("second").unwrap(); // retires the set {checkout_v2}
    let lock = WriteLock::take(&path);
    for i in 0..3 * promotion_gates::FLAG_SET_SLOTS {
        let refused = gate.enable_feature(format!("n{i}")).unwrap_err();
        assert!(matches!(refused, Error::Store(_)), "{refused}");
    }
    drop(lock);
    // Read from a thread that never read it (no thread's cache holds it).
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let set = gate.flag_set(retired).unwrap();
            assert_eq!(set.iter().collect::<Vec<_>>(), ["checkout_v2"]);
        });
    });
}
