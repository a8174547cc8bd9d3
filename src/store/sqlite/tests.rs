use super::*;
use crate::MAX_REASON_BYTES;
use crate::config::{Environment, canary};
use crate::store::Guard;
use crate::store::scratch::{Scratch, backup, move_over, remove_store};
use crate::store::testing::{
    commit_on_top, config, contribution, rollback_event, sorted_lines, write_on,
};
use crate::telemetry::log_lines::LogLines;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// A state of a store's first file (its [`Guard::epoch`] 0): contributions to a stage of it
/// are of that file, until the path names another file.
const FIRST_FILE: Guard = Guard {
    version: 1,
    stage: 1,
    epoch: 0,
};

/// A state of the file a store opened second, in place of its first ([`FIRST_FILE`]).
const SECOND_FILE: Guard = Guard {
    epoch: 1,
    ..FIRST_FILE
};

impl SqliteStore {
    /// The store's connection as it is, without looking at the path (rows written or counted
    /// by hand).
    fn connection(&self) -> OwnConnection<'_> {
        OwnConnection(self.lock())
    }
}

struct OwnConnection<'a>(std::sync::MutexGuard<'a, Files>);

impl std::ops::Deref for OwnConnection<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.0.current.as_ref().unwrap().connection
    }
}

fn settings(path: &str) -> SqliteStoreConfig {
    SqliteStoreConfig {
        path: path.to_string(),
        sync_interval_ms: 250,
        busy_timeout_ms: 5000,
        fleet_judging: true,
    }
}

fn open(path: &str, gate: &str) -> SqliteStore {
    SqliteStore::open(&settings(path), gate).unwrap()
}

/// Writes the first state (canary 10 %) in the file `store` has open; returns its epoch.
fn first_write(store: &SqliteStore) -> u64 {
    let guard = Guard::EMPTY;
    let write = StoredWrite::new(
        guard,
        crate::store::RolloutOn::UNKNOWN,
        &Default::default(),
        1,
        &config(canary(10.0)),
        None,
    );
    let made = store.commit(&write).unwrap();
    let Commit::Written { epoch } = made else {
        panic!("the first write is not made: {made:?}")
    };
    epoch
}

#[test]
fn a_state_survives_closing_and_reopening_the_file() {
    let dir = Scratch::new("reopen");
    let path = dir.file("gate.db");
    let store = open(&path, "checkout");
    assert_eq!(store.load().unwrap(), None);
    first_write(&store);
    let guard = Guard {
        version: 1,
        stage: 1,
        epoch: 0,
    };
    let event = rollback_event("bad deploy");
    let rollback = StoredWrite::new(
        guard,
        crate::store::RolloutOn::UNKNOWN,
        &Default::default(),
        2,
        &config(Environment::Production),
        Some(&event),
    );
    assert_eq!(
        store.commit(&rollback).unwrap(),
        Commit::Written { epoch: 0 }
    );
    let before = store.load().unwrap().unwrap();
    drop(store);

    let reopened = open(&path, "checkout");
    let after = reopened.load().unwrap().unwrap();
    assert_eq!(after, before);
    assert_eq!(after.release.version, 2);
    assert_eq!(after.release.stage, 2);
    assert_eq!(after.release.config.environment, Environment::Production);
    assert_eq!(after.history.len(), 1);
    assert_eq!(after.history[0].to_event().unwrap(), event);
    // Nothing newer than what was read.
    assert_eq!(reopened.changes_since(known(2)).unwrap(), Since::Same);
}

/// A file this process cannot write: SQLite would open it read-only, and every write fail.
#[test]
fn a_file_this_process_cannot_write_is_refused_at_opening() {
    let dir = Scratch::new("read-only");
    let path = dir.file("gate.db");
    first_write(&open(&path, "checkout"));
    let _read_only = ReadOnly::make(&path);
    let Err(error) = SqliteStore::open(&settings(&path), "checkout") else {
        panic!("a read-only file opened");
    };
    assert_eq!(error.problem(), StoreProblem::Unavailable);
    assert!(
        error.to_string().contains(&path) && error.to_string().contains("cannot be written"),
        "{error}"
    );
}

/// A file made read-only for this process while it lives: immutable (`chattr +i`) when the
/// process runs as root, whom permissions do not stop, else mode 0444.
struct ReadOnly(String);

impl ReadOnly {
    fn make(path: &str) -> Self {
        let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        let made = if root {
            Command::new("chattr").args(["+i", path]).status().unwrap()
        } else {
            Command::new("chmod").args(["0444", path]).status().unwrap()
        };
        assert!(
            made.success(),
            "cannot make {path} read-only (root: {root})"
        );
        Self(path.to_string())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("chattr").args(["-i", &self.0]).status();
        let _ = Command::new("chmod").args(["0644", &self.0]).status();
    }
}

#[test]
fn a_stale_guard_writes_nothing_and_names_what_is_stored() {
    let dir = Scratch::new("guard");
    let store = open(&dir.file("gate.db"), "checkout");
    first_write(&store);
    // A second "first write" (another process created the state meanwhile).
    let again = StoredWrite::new(
        Guard::EMPTY,
        crate::store::RolloutOn::UNKNOWN,
        &Default::default(),
        1,
        &config(canary(50.0)),
        None,
    );
    assert_eq!(
        store.commit(&again).unwrap(),
        Commit::Conflict {
            stored_version: 1,
            another_file: false,
        }
    );
    let state = store.load().unwrap().unwrap();
    assert_eq!(state.release.config.environment, canary(10.0));
    assert!(state.history.is_empty());
}

/// A file replaced by a copy may hold the version a process knows at another stage: a write
/// decided on that version is refused (etcd does the same).
#[test]
fn a_guard_of_the_stored_version_at_another_stage_writes_nothing() {
    let dir = Scratch::new("guard-stage");
    let store = open(&dir.file("gate.db"), "checkout");
    // Version 1 at stage 5.
    let first = StoredWrite::new(
        Guard::EMPTY,
        crate::store::RolloutOn::UNKNOWN,
        &Default::default(),
        5,
        &config(Environment::Production),
        None,
    );
    assert_eq!(store.commit(&first).unwrap(), Commit::Written { epoch: 0 });
    // Decided on version 1 at stage 1.
    assert_eq!(
        store.commit(&write_on(1, canary(50.0), None)).unwrap(),
        Commit::Conflict {
            stored_version: 1,
            another_file: false,
        }
    );
    let stored = store.load().unwrap().unwrap().release;
    assert_eq!((stored.version, stored.stage), (1, 5));
    assert_eq!(stored.config.environment, Environment::Production);
}

#[test]
fn changes_since_gives_only_newer_events_and_the_history_keeps_its_bound() {
    let dir = Scratch::new("since");
    let store = open(&dir.file("gate.db"), "checkout");
    first_write(&store);
    let mut bounded = config(Environment::Production);
    bounded.max_rollback_history = 3;
    for v in 1..=5 {
        let guard = Guard {
            version: v,
            stage: v,
            epoch: 0,
        };
        let event = rollback_event(&format!("r{v}"));
        let write = StoredWrite::new(
            guard,
            crate::store::RolloutOn::UNKNOWN,
            &Default::default(),
            v + 1,
            &bounded,
            Some(&event),
        );
        assert_eq!(store.commit(&write).unwrap(), Commit::Written { epoch: 0 });
    }
    let all = store.load().unwrap().unwrap();
    let reasons: Vec<_> = all.history.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["r3", "r4", "r5"]);
    let Since::Newer(newer) = store.changes_since(known(5)).unwrap() else {
        panic!("nothing newer")
    };
    assert_eq!(newer.release.version, 6);
    let reasons: Vec<_> = newer.history.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["r5"]);
    assert_eq!(store.changes_since(known(6)).unwrap(), Since::Same);
    // A process that knows a later version than the store's: the store went back, and its
    // whole state is read.
    let Since::Reset(Some(whole)) = store.changes_since(known(9)).unwrap() else {
        panic!("not a reset")
    };
    assert_eq!(whole, all);
}

#[test]
fn two_gates_share_one_file_and_two_handles_of_one_gate_see_each_other() {
    let dir = Scratch::new("two-gates");
    let path = dir.file("gates.db");
    let checkout = open(&path, "checkout");
    let checkout_too = open(&path, "checkout");
    let search = open(&path, "search");
    first_write(&checkout);
    assert_eq!(search.load().unwrap(), None);
    assert_eq!(search.changes_since(known(0)).unwrap(), Since::Same);
    assert_eq!(search.changes_since(known(3)).unwrap(), Since::Reset(None));
    let Since::Newer(seen) = checkout_too.changes_since(known(0)).unwrap() else {
        panic!("nothing newer")
    };
    assert_eq!(seen.release.config.environment, canary(10.0));

    let mut own = config(canary(5.0));
    own.gate = "search".into();
    for version in 0..2 {
        let guard = Guard {
            version,
            stage: version,
            epoch: 0,
        };
        let event = rollback_event("search's own");
        let write = StoredWrite::new(
            guard,
            crate::store::RolloutOn::UNKNOWN,
            &Default::default(),
            version + 1,
            &own,
            Some(&event),
        );
        assert_eq!(search.commit(&write).unwrap(), Commit::Written { epoch: 0 });
    }
    assert_eq!(checkout.load().unwrap().unwrap().release.version, 1);
    assert_eq!(search.load().unwrap().unwrap().release.version, 2);
    assert!(checkout.load().unwrap().unwrap().history.is_empty());
}

#[test]
fn many_connections_opening_one_new_file_at_once_all_open_it() {
    // The workers of a proxy start together: every one of them must open the new file (SQLite
    // answers the switch to WAL mode with SQLITE_BUSY at once, without the busy handler).
    const OPENERS: usize = 8;
    let dir = Scratch::new("open-race");
    for round in 0..20 {
        let path = dir.file(&format!("gate-{round}.db"));
        let start = std::sync::Barrier::new(OPENERS);
        std::thread::scope(|scope| {
            for _ in 0..OPENERS {
                scope.spawn(|| {
                    start.wait();
                    if let Err(e) = SqliteStore::open(&settings(&path), "checkout") {
                        panic!("round {round}: {e}");
                    }
                });
            }
        });
    }
}

#[test]
fn concurrent_writers_one_wins_each_round_and_nothing_is_lost() {
    const WRITERS: usize = 4;
    const WRITES: usize = 20;
    let dir = Scratch::new("cas");
    let path = Arc::new(dir.file("gate.db"));
    let conflicts: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let path = Arc::clone(&path);
                scope.spawn(move || {
                    let store = open(&path, "checkout");
                    (0..WRITES)
                        .map(|i| commit_on_top(&store, &format!("w{w}-{i}"), 100))
                        .sum::<u64>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_every_write_is_there(&open(&path, "checkout"), WRITERS, WRITES);
    // Not asserted: how often writers collided (scheduling decides); printed for the curious.
    println!("{conflicts} conflicts retried");
}

fn assert_every_write_is_there(store: &SqliteStore, writers: usize, writes: usize) {
    let state = store.load().unwrap().unwrap();
    let total = (writers * writes) as u64;
    assert_eq!(state.release.version, total);
    assert_eq!(state.release.stage, total);
    let mut reasons: Vec<_> = state.history.iter().map(|e| e.reason.clone()).collect();
    let versions: Vec<_> = state.history.iter().map(|e| e.version).collect();
    assert_eq!(versions, (1..=total).collect::<Vec<_>>());
    reasons.sort();
    let mut expected: Vec<_> = (0..writers)
        .flat_map(|w| (0..writes).map(move |i| format!("w{w}-{i}")))
        .collect();
    expected.sort();
    assert_eq!(reasons, expected);
}

/// The child side of the multi-process test: set, this test writes into the file named.
const CHILD_ENV: &str = "PGATE_STORE_TEST_CHILD";

#[test]
fn real_processes_share_one_file_without_losing_a_write() {
    const PROCESSES: usize = 4;
    const WRITES: usize = 15;
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        // Child: "<path>|<writer number>".
        let (path, writer) = spec.split_once('|').unwrap();
        let store = open(path, "checkout");
        for i in 0..WRITES {
            commit_on_top(&store, &format!("w{writer}-{i}"), 100);
        }
        return;
    }
    let dir = Scratch::new("processes");
    let path = dir.file("gate.db");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|w| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "store::sqlite::tests::real_processes_share_one_file_without_losing_a_write",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, format!("{path}|{w}"))
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    assert_every_write_is_there(&open(&path, "checkout"), PROCESSES, WRITES);
}

/// Asserts that a read of `store` is refused as not ours, with a message holding each of `words`.
fn refused_as_not_ours(store: &SqliteStore, words: &[&str]) {
    let err = store.load().unwrap_err();
    assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
    for word in words {
        assert!(err.to_string().contains(word), "{word:?} not in {err}");
    }
}

#[test]
fn a_read_takes_the_newest_events_the_release_keeps_and_refuses_a_bad_one_naming_it() {
    let dir = Scratch::new("history-read");
    let store = open(&dir.file("gate.db"), "checkout");
    for i in 1..=4 {
        commit_on_top(&store, &format!("r{i}"), 100);
    }
    let hand = |sql: &str, value: &dyn rusqlite::ToSql| {
        store.connection().execute(sql, [value]).unwrap();
    };
    // A release that keeps 2 events beside 4 stored rows (a file edited by hand): the read
    // takes the newest 2, never every row.
    hand(
        "UPDATE release SET config = json_set(config, '$.max_rollback_history', ?1)",
        &2,
    );
    let state = store.load().unwrap().unwrap();
    let reasons: Vec<_> = state.history.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["r3", "r4"]);
    let refused = |words: &[&str]| refused_as_not_ours(&store, words);
    hand(
        "UPDATE history SET reason = ?1 WHERE version = 4",
        &"r".repeat(MAX_REASON_BYTES + 1),
    );
    refused(&["history.reason = \"rrr", "4097 bytes", "event 4"]);
    hand("UPDATE history SET reason = 'r4' WHERE version = ?1", &4);
    hand(
        "UPDATE history SET rolled_back = 'flag', feature = ?1, rollback_trigger = 'flag_disabled' WHERE version = 4",
        &"dark mode",
    );
    refused(&["history.feature = \"dark mode\"", "whitespace"]);
    hand(
        "UPDATE history SET feature = ?1 WHERE version = 4",
        &"dark-mode",
    );
    // Above the release's version: a later state's (the release put back alone), not read.
    hand("UPDATE history SET version = ?1 WHERE version = 4", &9);
    let state = store.load().unwrap().unwrap();
    let reasons: Vec<_> = state.history.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["r2", "r3"]);
    // Versions no write makes, within the events the release keeps: refused, never skipped.
    hand(
        "UPDATE release SET config = json_set(config, '$.max_rollback_history', ?1)",
        &100,
    );
    hand("UPDATE history SET version = ?1 WHERE version = 9", &-3);
    refused(&["history.version = -3", "negative"]);
    hand("UPDATE history SET version = ?1 WHERE version = -3", &0);
    refused(&["history.version = 0", "from 1 to the release's version 4"]);
    hand("UPDATE history SET version = ?1 WHERE version = 0", &"x");
    refused(&["history.version = \"x\" (text)"]);
    hand("UPDATE history SET version = ?1 WHERE version = 'x'", &4);
    let state = store.load().unwrap().unwrap();
    assert_eq!(state.history.len(), 4);
}

/// serde_json reads a number too small for an `f64` as 0: a stored config or event edited to
/// hold one is refused naming the field and the number, not read as a zero.
#[test]
fn a_stored_number_too_small_for_a_double_is_refused_naming_it() {
    let dir = Scratch::new("tiny-number");
    let store = open(&dir.file("gate.db"), "checkout");
    commit_on_top(&store, "r1", 100);
    let hand = |sql: &str| {
        store.connection().execute(sql, []).unwrap();
    };
    let refused = |words: &[&str]| refused_as_not_ours(&store, words);
    hand(
        r#"UPDATE release SET config = replace(json_set(config, '$.slo_threshold', 'TINY'),
               '"TINY"', '1e-400')"#,
    );
    refused(&[
        "release.config",
        "slo_threshold = 1e-400: below the smallest positive",
    ]);
    hand(r#"UPDATE release SET config = replace(config, '1e-400', '0.9')"#);
    assert!(store.load().is_ok());
    hand(r#"UPDATE history SET environment = '{"canary": {"traffic_percent": 1e-400}}'"#);
    refused(&[
        "history.environment",
        "canary.traffic_percent = 1e-400: below the smallest positive",
    ]);
}

/// A release row put back alone to an older version (a backup of the row, one written by
/// hand) leaves the history of the writes since: a read takes the history up to the release's
/// version, and the next write deletes the rows from its own version on.
#[test]
fn history_above_the_release_is_not_read_and_the_next_write_deletes_it() {
    let dir = Scratch::new("history-above");
    let store = open(&dir.file("gate.db"), "checkout");
    let release = "SELECT version, stage, environment, config, rollbacks FROM release";
    commit_on_top(&store, "r1", 100);
    commit_on_top(&store, "r2", 100);
    let kept: [rusqlite::types::Value; 5] = store
        .connection()
        .query_row(release, [], |row| {
            Ok([
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ])
        })
        .unwrap();
    commit_on_top(&store, "r3", 100);
    commit_on_top(&store, "r4", 100);
    let put_back = || {
        store
            .connection()
            .execute(
                "UPDATE release SET version = ?1, stage = ?2, environment = ?3, config = ?4,
                     rollbacks = ?5",
                rusqlite::params_from_iter(kept.clone()),
            )
            .unwrap();
    };
    put_back();
    let reasons = |state: StoredState| -> Vec<String> {
        state.history.into_iter().map(|e| e.reason).collect()
    };
    assert_eq!(reasons(store.load().unwrap().unwrap()), ["r1", "r2"]);
    let Since::Reset(Some(state)) = store.changes_since(known(4)).unwrap() else {
        panic!("the store went back to version 2")
    };
    assert_eq!(reasons(state), ["r1", "r2"]);
    let rows = || -> i64 {
        store
            .connection()
            .query_row("SELECT count(*) FROM history", [], |row| row.get(0))
            .unwrap()
    };
    assert_eq!(rows(), 4);
    // A write without an event deletes the rows from its version on; one with an event
    // stores its own in the place of the leftover of its version.
    let production = write_on(2, Environment::Production, None);
    assert_eq!(
        store.commit(&production).unwrap(),
        Commit::Written { epoch: 0 }
    );
    assert_eq!(rows(), 2);
    commit_on_top(&store, "r4 again", 100);
    put_back(); // back to version 2 once more
    commit_on_top(&store, "r3 again", 100);
    assert_eq!(rows(), 3);
    assert_eq!(
        reasons(store.load().unwrap().unwrap()),
        ["r1", "r2", "r3 again"]
    );
}

#[test]
fn the_history_reads_search_ranges_of_the_key_and_scan_nothing() {
    let dir = Scratch::new("history-plan");
    let store = open(&dir.file("gate.db"), "checkout");
    let connection = store.connection();
    let mut plan = connection
        .prepare(&format!("EXPLAIN QUERY PLAN {HISTORY_READ}"))
        .unwrap();
    let steps: Vec<String> = plan
        .query_map(params!["checkout", 5, 10, 10, 10, 8], |row| row.get(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let searches = |range: &str| {
        steps
            .iter()
            .filter(|s| s.starts_with("SEARCH history USING INDEX") && s.contains(range))
            .count()
    };
    assert!(steps.iter().any(|s| s.starts_with("MERGE")), "{steps:?}");
    // The release's events, and those of no number (text, blobs).
    for range in [
        "(gate=? AND version>? AND version<?)",
        "(gate=? AND version>?)",
    ] {
        assert_eq!(searches(range), 1, "{range}: {steps:?}");
    }
    assert!(!steps.iter().any(|s| s.contains("SCAN")), "{steps:?}");
    // Those at or below 0, read apart: the lowest one.
    let mut plan = connection
        .prepare(&format!("EXPLAIN QUERY PLAN {HISTORY_UNNUMBERED}"))
        .unwrap();
    let steps: Vec<String> = plan
        .query_map(params!["checkout"], |row| row.get(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert!(
        steps[0].starts_with("SEARCH history USING") && steps[0].contains("(gate=? AND version<?)"),
        "{steps:?}"
    );
}

/// A history row numbered at or below 0 (a hand edit) is refused naming it, not skipped, even
/// when the history holds as many rows as the release keeps: the read takes the newest
/// `max_rollback_history` rows, and such a row would come after them.
#[test]
fn a_history_row_numbered_below_one_is_refused_beyond_the_history_bound() {
    let dir = Scratch::new("history-below-one");
    let store = open(&dir.file("gate.db"), "checkout");
    for i in 1..=2 {
        commit_on_top(&store, &format!("r{i}"), 2);
    }
    assert_eq!(store.load().unwrap().unwrap().history.len(), 2);
    store
        .connection()
        .execute(
            "INSERT INTO history SELECT gate, -1, rolled_back, feature, reason, rollback_trigger, \
                 environment, timestamp_ns FROM history WHERE version = 2",
            [],
        )
        .unwrap();
    refused_as_not_ours(&store, &["history.version = -1", "negative"]);
    store
        .connection()
        .execute("UPDATE history SET version = 0 WHERE version = -1", [])
        .unwrap();
    refused_as_not_ours(
        &store,
        &["history.version = 0", "from 1 to the release's version 2"],
    );
}

#[test]
fn a_history_of_bad_events_is_refused_at_the_newest_not_read_whole() {
    let dir = Scratch::new("junk-history");
    let path = dir.file("gate.db");
    let store = open(&path, "checkout");
    commit_on_top(&store, "r1", 100);
    // 2 000 events a release keeping 100 000 would read, each with texts the history's byte
    // count leaves out: the read stops at the newest, naming it.
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "UPDATE release SET version = 10000,
                 config = json_set(config, '$.max_rollback_history', 100000);
             WITH RECURSIVE n(v) AS (SELECT 8001 UNION ALL SELECT v + 1 FROM n WHERE v < 10000)
             INSERT INTO history SELECT 'checkout', v, 'junk', 'f', 'r', 'junk',
                 '\"production\"', 0 FROM n;",
        )
        .unwrap();
    let err = store.load().unwrap_err();
    assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
    assert!(
        err.to_string()
            .contains(r#"invalid history.rolled_back = "junk""#)
            && err.to_string().contains("(event 10000)"),
        "{err}"
    );
}

#[test]
fn a_value_of_the_wrong_type_is_not_ours_naming_the_column_and_the_value() {
    let dir = Scratch::new("column-types");
    let path = dir.file("gate.db");
    let store = open(&path, "checkout");
    commit_on_top(&store, "r1", 100);
    commit_on_top(&store, "r2", 100);
    let good = store.load().unwrap().unwrap();
    let hand = Connection::open(&path).unwrap();
    let refused_by = |sql: &str, words: &[&str], commit_too: bool| {
        hand.execute_batch(sql).unwrap();
        let mut errors = vec![store.load().unwrap_err()];
        if commit_too {
            // A commit reads the release's version only.
            errors.push(store.commit(&write_on(2, canary(5.0), None)).unwrap_err());
        }
        for err in errors {
            assert_eq!(err.problem(), StoreProblem::NotOurs, "{sql}: {err}");
            for word in words {
                assert!(err.to_string().contains(word), "{word:?} not in {err}");
            }
        }
    };
    refused_by(
        "UPDATE release SET version = 'x'",
        &["release.version = \"x\" (text): expected an integer"],
        true,
    );
    refused_by(
        "UPDATE release SET version = 1.5",
        &["release.version = 1.5 (real): expected an integer"],
        true,
    );
    refused_by(
        "UPDATE release SET version = -2",
        &["release.version = -2: negative, where a count is expected"],
        true,
    );
    // Version 0 would read as no state at all, and the next write would replace the release
    // and delete its history.
    refused_by(
        "UPDATE release SET version = 0",
        &["release.version = 0: a stored release's version is at least 1"],
        true,
    );
    refused_by(
        "UPDATE release SET version = 0, stage = 0",
        &["release.version = 0: a stored release's version is at least 1"],
        true,
    );
    let refused = |sql: &str, words: &[&str]| refused_by(sql, words, false);
    // Stages are numbered from 1: the first write stores 1, and no write stores 0.
    refused(
        "UPDATE release SET version = 2, stage = 0",
        &["release.stage = 0: a stored release's stage is at least 1"],
    );
    refused(
        "UPDATE release SET version = 2, stage = x'00ff'",
        &["release.stage = x'00ff'(2 bytes) (blob): expected an integer"],
    );
    refused(
        "UPDATE release SET stage = 2; UPDATE history SET reason = x'00ff' WHERE version = 2",
        &["history.reason = x'00ff'(2 bytes) (blob): expected text"],
    );
    refused(
        "UPDATE history SET reason = CAST(x'72ff' AS TEXT) WHERE version = 2",
        &["history.reason = \"r\u{fffd}\" (text): expected UTF-8"],
    );
    refused(
        "UPDATE history SET reason = 'r2', timestamp_ns = 'noon' WHERE version = 2",
        &["history.timestamp_ns = \"noon\" (text): expected an integer"],
    );
    refused(
        r#"UPDATE history SET timestamp_ns = 0, environment = '{"canary": 5}' WHERE version = 2"#,
        &[r#"history.environment = "{\"canary\": 5}""#],
    );
    hand.execute(
        r#"UPDATE history SET environment = '{"canary":{"traffic_percent":5.0}}' WHERE version = 2"#,
        [],
    )
    .unwrap();
    let mended = store.load().unwrap().unwrap();
    assert_eq!(mended.release, good.release);
    // A schema version of another type is refused when the file is opened.
    hand.execute("UPDATE schema_version SET version = 'one'", [])
        .unwrap();
    expect_refused(
        &path,
        StoreProblem::NotOurs,
        "schema_version.version = \"one\" (text)",
    );
    hand.execute(
        "UPDATE schema_version SET version = CAST(zeroblob(1048576) AS TEXT)",
        [],
    )
    .unwrap();
    expect_refused(
        &path,
        StoreProblem::NotOurs,
        "schema_version.version = (1048576 bytes): more than a read takes",
    );
}

#[test]
fn stored_rollback_counts_are_read_checked_naming_the_field_and_the_value() {
    let dir = Scratch::new("rollback-counts");
    let path = dir.file("gate.db");
    let store = open(&path, "checkout");
    commit_on_top(&store, "r1", 100);
    let good = store.load().unwrap().unwrap();
    assert_eq!(
        good.release.rollbacks,
        Some(super::super::state::StoredTally {
            version: 1,
            counts: vec![super::super::state::StoredCount {
                trigger: "manual".into(),
                rule: None,
                count: 1
            }]
        })
    );
    let hand = Connection::open(&path).unwrap();
    let tally = |counts: &str| format!(r#"{{"version":1,"counts":{counts}}}"#);
    let long = tally(&format!(
        r#"[{{"trigger":"manual","count":1}}{}]"#,
        " ".repeat(5000)
    ));
    for (counts, words) in [
        (
            tally(r#"[{"trigger":"cosmic","count":1}]"#),
            r#"release.rollbacks.counts[0].trigger = "cosmic": manual, automatic or flag_disabled"#,
        ),
        (
            tally(r#"[{"trigger":"manual","rule":"error_rate_max","count":1}]"#),
            r#"release.rollbacks.counts[0].rule = "error_rate_max": none: only an automatic rollback has a rule"#,
        ),
        (
            tally(
                r#"[{"trigger":"automatic","rule":"error_rate_max","count":1},{"trigger":"automatic","rule":"nope","count":1}]"#,
            ),
            r#"release.rollbacks.counts[1].rule = "nope": the name of one of the judge's rules"#,
        ),
        (
            tally(r#"[{"trigger":"manual","count":1},{"trigger":"manual","count":2}]"#),
            "release.rollbacks.counts[1]: a second count of manual",
        ),
        (
            r#"{"version":2,"counts":[]}"#.to_string(),
            "release.rollbacks.version = 2: at most the release's version 1",
        ),
        (
            tally(r#"[{"trigger":"manual","count":-1}]"#),
            r#"release.rollbacks = "{\"version\":1,\"counts\":[{\"trigger\":\"manual\",\"count\":-1}]}": not rollback counts"#,
        ),
        (
            "x".to_string(),
            r#"release.rollbacks = "x": not rollback counts"#,
        ),
        (
            long,
            "release.rollbacks = (5055 bytes): more than a read takes, 4096 bytes (MAX_STORED_COUNTS_BYTES)",
        ),
    ] {
        hand.execute("UPDATE release SET rollbacks = ?1", [&counts])
            .unwrap();
        let err = store.load().unwrap_err();
        assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
        assert!(err.to_string().contains(words), "{words:?} not in {err}");
    }
    hand.execute("UPDATE release SET rollbacks = x'00'", [])
        .unwrap();
    let err = store.load().unwrap_err();
    assert!(
        err.to_string().contains("release.rollbacks = x'00'"),
        "{err}"
    );
    // Mended by hand, it is read again.
    hand.execute(
        r#"UPDATE release SET rollbacks = '{"version":1,"counts":[{"trigger":"manual","count":1}]}'"#,
        [],
    )
    .unwrap();
    assert_eq!(store.load().unwrap().unwrap(), good);
}

/// serde's derived reader took a struct's fields in order, an array: a release whose config
/// or rollback counts were written so (by hand, or by another program) was read.
#[test]
fn a_stored_struct_written_as_an_array_is_not_ours_naming_its_field() {
    let dir = Scratch::new("positional");
    let path = dir.file("gate.db");
    let store = open(&path, "checkout");
    commit_on_top(&store, "r1", 100);
    let good = store.load().unwrap().unwrap();
    let hand = Connection::open(&path).unwrap();
    let refusal = "must be a JSON object with named fields, not an array at line 1 column";
    let config = serde_json::to_string(&good.release.config).unwrap();
    let counts = r#"{"version":1,"counts":[{"trigger":"manual","count":1}]}"#;
    for (config, rollbacks, words) in [
        (
            config.replacen('{', r#"{"overrides":["X-Canary","c",["a"],[]],"#, 1),
            counts.to_string(),
            format!("release.config: invalid JSON config: overrides: {refusal}"),
        ),
        (
            config.clone(),
            r#"[1,[{"trigger":"manual","count":1}]]"#.to_string(),
            format!(r#"not rollback counts ({refusal} 1)"#),
        ),
        (
            config.clone(),
            r#"{"version":1,"counts":[["manual",null,1]]}"#.to_string(),
            format!(r#"not rollback counts (counts[0]: {refusal} 24)"#),
        ),
    ] {
        hand.execute(
            "UPDATE release SET config = ?1, rollbacks = ?2",
            [&config, &rollbacks],
        )
        .unwrap();
        let err = store.load().unwrap_err();
        assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
        assert!(err.to_string().contains(&words), "{words:?} not in {err}");
    }
    // Mended, it is read again.
    hand.execute(
        "UPDATE release SET config = ?1, rollbacks = ?2",
        [&config, counts],
    )
    .unwrap();
    assert_eq!(store.load().unwrap().unwrap(), good);
}

/// A file in `dir` with one write (a manual rollback), its `release` table then made as
/// before `column` was stored, opened again (which adds it); and its path.
fn reopened_without(dir: &Scratch, column: &str) -> (SqliteStore, String) {
    let path = dir.file("gate.db");
    let store = open(&path, "checkout");
    commit_on_top(&store, "r1", 100);
    drop(store);
    Connection::open(&path)
        .unwrap()
        .execute_batch(&format!("ALTER TABLE release DROP COLUMN {column}"))
        .unwrap();
    (open(&path, "checkout"), path)
}

#[test]
fn a_file_made_before_rollback_counts_gets_their_column_and_keeps_its_state() {
    let dir = Scratch::new("before-counts");
    let (store, _) = reopened_without(&dir, "rollbacks");
    let state = store.load().unwrap().unwrap();
    assert_eq!(state.release.rollbacks, None);
    assert_eq!(state.history.len(), 1);
    let counted = state.rollback_counts(None).unwrap();
    assert_eq!(counted.counts()[0].count, 1, "the history is counted");
    commit_on_top(&store, "r2", 100);
    assert!(store.load().unwrap().unwrap().release.rollbacks.is_some());
}

#[test]
fn a_stored_rollout_is_read_checked_naming_the_field_and_the_value() {
    let dir = Scratch::new("rollout");
    let path = dir.file("gate.db");
    let store = open(&path, "checkout");
    commit_on_top(&store, "r1", 100);
    let good = store.load().unwrap().unwrap();
    assert_eq!(
        good.release.rollout(),
        Some(1),
        "the first write starts one"
    );
    let hand = Connection::open(&path).unwrap();
    // Each value in `column` is refused as not ours, naming what `words` say.
    let refused = |column: &str, cases: &[(String, &str)]| {
        for (value, words) in cases {
            hand.execute(&format!("UPDATE release SET {column} = ?1"), [value])
                .unwrap();
            let err = store.load().unwrap_err();
            assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
            assert!(err.to_string().contains(words), "{words:?} not in {err}");
        }
    };
    let long = format!(r#"{{"version":1,"started":1{}}}"#, " ".repeat(200));
    refused(
        "rollout",
        &[
            (
                r#"{"version":2,"started":1}"#.to_string(),
                "release.rollout.version = 2: at most the release's version 1",
            ),
            (
                r#"{"version":1,"started":0}"#.to_string(),
                "release.rollout.started = 0: from 1 to the rollout's version 1",
            ),
            (
                r#"{"version":1,"started":-1}"#.to_string(),
                r#"release.rollout = "{\"version\":1,\"started\":-1}": not a rollout (started: invalid value: integer `-1`"#,
            ),
            (
                r#"{"version":1,"started":1.5}"#.to_string(),
                r#"release.rollout = "{\"version\":1,\"started\":1.5}": not a rollout (started: invalid type: floating point `1.5`"#,
            ),
            (
                r#"{"version":1,"started":"1"}"#.to_string(),
                r#"not a rollout (started: invalid type: string "1""#,
            ),
            (
                r#"{"version":1,"started":99999999999999999999}"#.to_string(),
                r#"release.rollout = "{\"version\":1,\"started\":99999999999999999999}": not a rollout"#,
            ),
            (
                r#"{"version":1}"#.to_string(),
                "not a rollout (missing field `started`",
            ),
            // `split_from` has its own column (a build before it refuses the field in this one).
            (
                r#"{"version":1,"started":1,"split_from":1}"#.to_string(),
                "not a rollout (split_from: unknown field `split_from`",
            ),
            ("x".to_string(), r#"release.rollout = "x": not a rollout"#),
            (
                long,
                "release.rollout = (225 bytes): more than a read takes, 160 bytes (MAX_STORED_ROLLOUT_BYTES)",
            ),
        ],
    );
    hand.execute("UPDATE release SET rollout = x'00'", [])
        .unwrap();
    let err = store.load().unwrap_err();
    assert!(err.to_string().contains("release.rollout = x'00'"), "{err}");
    hand.execute(
        r#"UPDATE release SET rollout = '{"version":1,"started":1}'"#,
        [],
    )
    .unwrap();
    assert_eq!(store.load().unwrap().unwrap(), good);
    let long = format!(r#"{{"version":1,"split_from":1{}}}"#, " ".repeat(200));
    refused(
        "rollout_split_from",
        &[
            (
                r#"{"version":1,"split_from":0}"#.to_string(),
                "release.rollout_split_from.split_from = 0: from 1 to the release's stage 1",
            ),
            (
                r#"{"version":1,"split_from":2}"#.to_string(),
                "release.rollout_split_from.split_from = 2: from 1 to the release's stage 1",
            ),
            (
                r#"{"version":2,"split_from":1}"#.to_string(),
                "release.rollout_split_from.version = 2: at most the release's version 1",
            ),
            (
                r#"{"version":1,"split_from":null}"#.to_string(),
                r#"release.rollout_split_from = "{\"version\":1,\"split_from\":null}": not a rollout's first stage at its split (split_from: invalid type: null"#,
            ),
            (
                r#"{"version":1,"split_from":1,"started":1}"#.to_string(),
                "not a rollout's first stage at its split (started: unknown field `started`",
            ),
            (
                "x".to_string(),
                r#"release.rollout_split_from = "x": not a rollout's first stage"#,
            ),
            (
                long,
                "release.rollout_split_from = (228 bytes): more than a read takes, 160 bytes (MAX_STORED_ROLLOUT_BYTES)",
            ),
        ],
    );
    // Mended by hand, it is read again.
    hand.execute(
        r#"UPDATE release SET rollout_split_from = '{"version":1,"split_from":1}'"#,
        [],
    )
    .unwrap();
    assert_eq!(store.load().unwrap().unwrap(), good);
}

/// The rollout as a build before `split_from` (c7c1aed) reads it: its struct, which refuses a
/// field it does not know.
#[derive(Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutBeforeSplit {
    version: u64,
    started: u64,
}

/// The release's `rollout` and `rollout_split_from` columns, as `sqlite3` shows them.
fn rollout_columns(path: &str) -> (Option<String>, Option<String>) {
    Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT rollout, rollout_split_from FROM release",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap()
}

/// Writes the next stage over the stored release (a ramp: a stage flags did not start), of its
/// rollout.
fn ramp(store: &SqliteStore, percent: f64) {
    let state = store.load().unwrap().unwrap();
    let guard = Guard {
        version: state.release.version,
        stage: state.release.stage,
        epoch: 0,
    };
    let write = StoredWrite::new(
        guard,
        crate::store::RolloutOn::of(&state.release),
        &Default::default(),
        guard.stage + 1,
        &config(canary(percent)),
        None,
    );
    assert_eq!(store.commit(&write).unwrap(), Commit::Written { epoch: 0 });
}

/// The stored release's rollout and the rollout's first stage at its split, as read.
fn rollout_read(store: &SqliteStore) -> (Option<u64>, Option<u64>) {
    let release = store.load().unwrap().unwrap().release;
    (release.rollout(), release.split_from())
}

/// The `rollout` column read as a build before `split_from` reads it, and the
/// `rollout_split_from` column.
fn rollout_before_split(path: &str) -> (RolloutBeforeSplit, Option<String>) {
    let (rollout, split) = rollout_columns(path);
    (serde_json::from_str(&rollout.unwrap()).unwrap(), split)
}

#[test]
fn the_rollout_column_holds_what_a_build_before_split_from_reads_and_split_from_its_own() {
    let dir = Scratch::new("rollout-split");
    let path = dir.file("gate.db");
    let store = open(&path, "checkout");
    commit_on_top(&store, "r1", 100);
    let older = |version, started| RolloutBeforeSplit { version, started };
    assert_eq!(
        rollout_before_split(&path),
        (
            older(1, 1),
            Some(r#"{"version":1,"split_from":1}"#.to_string())
        )
    );
    assert_eq!(rollout_read(&store), (Some(1), Some(1)));
    // A ramp moves it, and it is read back from its column.
    ramp(&store, 20.0);
    assert_eq!(
        rollout_before_split(&path),
        (
            older(2, 1),
            Some(r#"{"version":2,"split_from":2}"#.to_string())
        )
    );
    assert_eq!(rollout_read(&store), (Some(1), Some(2)));
    // A build before `split_from` writes the row (a ramp: the rollout as of its version) and
    // leaves the column as it was: as of an older version, it tells nothing.
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            r#"UPDATE release SET version = 3, stage = 3, rollout = '{"version":3,"started":1}'"#,
        )
        .unwrap();
    assert_eq!(rollout_read(&store), (Some(1), None));
    // Unread, it is still checked as any value is, naming its column.
    let hand = Connection::open(&path).unwrap();
    hand.execute(
        r#"UPDATE release SET rollout_split_from = '{"version":2,"split_from":4}'"#,
        [],
    )
    .unwrap();
    let err = store.load().unwrap_err();
    assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
    assert!(
        err.to_string()
            .contains("release.rollout_split_from.split_from = 4: from 1 to the release's stage 3"),
        "{err}"
    );
    hand.execute(
        r#"UPDATE release SET rollout_split_from = '{"version":2,"split_from":2}'"#,
        [],
    )
    .unwrap();
    assert_eq!(rollout_read(&store), (Some(1), None));
    // This build's next write stores it again.
    ramp(&store, 30.0);
    assert_eq!(rollout_read(&store), (Some(1), Some(4)));
    // A build before the rollout writes the row (version 5: both columns left as they were),
    // then a build before `split_from`, which knows no rollout as of an older version, writes
    // NULL there and leaves the column: beside no rollout, it tells nothing either.
    hand.execute_batch("UPDATE release SET version = 6, stage = 6, rollout = NULL")
        .unwrap();
    assert_eq!(
        rollout_columns(&path).1.unwrap(),
        r#"{"version":4,"split_from":4}"#
    );
    assert_eq!(rollout_read(&store), (None, None));
    // Still checked, naming its column.
    hand.execute(
        r#"UPDATE release SET rollout_split_from = '{"version":4,"split_from":7}'"#,
        [],
    )
    .unwrap();
    let err = store.load().unwrap_err();
    assert!(
        err.to_string()
            .contains("release.rollout_split_from.split_from = 7: from 1 to the release's stage 6"),
        "{err}"
    );
}

#[test]
fn a_file_made_before_split_from_gets_its_column_and_keeps_its_rollout() {
    let dir = Scratch::new("before-split");
    let (store, path) = reopened_without(&dir, "rollout_split_from");
    assert_eq!(rollout_read(&store), (Some(1), None));
    assert_eq!(rollout_columns(&path).1, None, "the column is back, NULL");
    ramp(&store, 20.0);
    assert_eq!(rollout_read(&store), (Some(1), Some(2)));
}

#[test]
fn a_file_made_before_the_rollout_gets_its_column_and_an_older_builds_write_tells_none() {
    let dir = Scratch::new("before-rollout");
    let (store, path) = reopened_without(&dir, "rollout");
    let state = store.load().unwrap().unwrap();
    assert_eq!(
        (state.release.rollout, state.release.rollout()),
        (None, None)
    );
    // A write of this build that starts no rollout knows none either; one out of Production
    // starts one, numbered by its version.
    fn on(state: &StoredState) -> (Guard, crate::store::RolloutOn<'_>) {
        (
            Guard {
                version: state.release.version,
                stage: state.release.stage,
                epoch: 0,
            },
            crate::store::RolloutOn::of(&state.release),
        )
    }
    let (guard, rollout) = on(&state);
    let rolled_back = config(Environment::Production);
    let write = StoredWrite::new(guard, rollout, &Default::default(), 2, &rolled_back, None);
    assert_eq!(store.commit(&write).unwrap(), Commit::Written { epoch: 0 });
    let state = store.load().unwrap().unwrap();
    assert_eq!(state.release.rollout(), None);
    let (guard, rollout) = on(&state);
    let next = StoredWrite::new(
        guard,
        rollout,
        &Default::default(),
        3,
        &config(canary(5.0)),
        None,
    );
    assert_eq!(store.commit(&next).unwrap(), Commit::Written { epoch: 0 });
    let state = store.load().unwrap().unwrap();
    assert_eq!(state.release.rollout(), Some(3));
    // A build before the rollout writes the row and leaves the column as it was: as of an
    // older version, it tells nothing (that write may have started a rollout).
    Connection::open(&path)
        .unwrap()
        .execute_batch("UPDATE release SET version = 4, stage = 4")
        .unwrap();
    let state = store.load().unwrap().unwrap();
    assert_eq!(state.release.rollout.map(|r| r.version), Some(3));
    assert_eq!(state.release.rollout(), None);
}

#[test]
fn a_value_above_its_limit_is_refused_by_its_length_never_read_whole() {
    let dir = Scratch::new("huge-values");
    let path = dir.file("gate.db");
    let store = open(&path, "checkout");
    commit_on_top(&store, "r1", 100);
    let good = store.load().unwrap().unwrap();
    let hand = Connection::open(&path).unwrap();
    let refused = |sql: &str, words: &[&str]| {
        hand.execute_batch(sql).unwrap();
        let err = store.load().unwrap_err();
        assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
        for word in words {
            assert!(err.to_string().contains(word), "{word:?} not in {err}");
        }
        // Only the length is shown: the value itself was not read.
        assert!(
            err.to_string().len() < 400,
            "{} bytes",
            err.to_string().len()
        );
    };
    // 10 MiB of text where a config takes at most 8 MiB, in a new release (a process
    // that knew the old one reads it).
    refused(
        "UPDATE release SET config = CAST(zeroblob(10485760) AS TEXT), version = 2",
        &[
            "release.config = (10485760 bytes): more than a read takes, 8388608 bytes (MAX_DOCUMENT_BYTES)",
        ],
    );
    // The same release read again, by a process that knows it: its config is not read at
    // all (a release whose version and stage are known has nothing new).
    let known = Guard {
        version: 2,
        stage: good.release.stage,
        epoch: 0,
    };
    assert!(matches!(store.changes_since(known).unwrap(), Since::Same));
    hand.execute(
        "UPDATE release SET config = ?1, version = 1",
        [serde_json::to_string(&good.release.config).unwrap()],
    )
    .unwrap();
    assert_eq!(store.load().unwrap().unwrap().release, good.release);
    // Numbers: a version, a stage or a timestamp of 1 MiB of text is refused by its length,
    // by a commit too (which reads the version), never read at every sync tick.
    for (sql, column) in [
        (
            "UPDATE release SET version = CAST(zeroblob(1048576) AS TEXT)",
            "release.version",
        ),
        (
            "UPDATE release SET stage = CAST(zeroblob(1048576) AS TEXT)",
            "release.stage",
        ),
        (
            "UPDATE history SET timestamp_ns = CAST(zeroblob(1048576) AS TEXT) WHERE version = 1",
            "history.timestamp_ns",
        ),
    ] {
        let words =
            format!("{column} = (1048576 bytes): more than a read takes, 160 bytes (an integer's)");
        refused(sql, &[&words]);
        if column == "release.version" {
            let err = store.commit(&write_on(1, canary(5.0), None)).unwrap_err();
            assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
            assert!(err.to_string().contains(&words), "{err}");
        }
        hand.execute_batch(&format!(
            "UPDATE release SET version = 1, stage = {}; \
             UPDATE history SET timestamp_ns = {} WHERE version = 1",
            good.release.stage, good.history[0].timestamp_ns
        ))
        .unwrap();
        assert_eq!(store.load().unwrap().unwrap(), good);
    }
    for column in [
        "reason",
        "feature",
        "rolled_back",
        "rollback_trigger",
        "environment",
    ] {
        refused(
            &format!(
                "UPDATE history SET {column} = CAST(zeroblob(1048576) AS TEXT) WHERE version = 1"
            ),
            &[&format!(
                "history.{column} = (1048576 bytes): more than a read takes, 4097 bytes (MAX_REASON_BYTES + 1)"
            )],
        );
        let event = &good.history[0];
        hand.execute(
            "UPDATE history SET rolled_back = ?1, feature = ?2, reason = ?3, rollback_trigger = ?4,
                 environment = ?5 WHERE version = 1",
            rusqlite::params![
                event.rolled_back,
                event.feature,
                event.reason,
                event.trigger,
                serde_json::to_string(&event.environment).unwrap()
            ],
        )
        .unwrap();
        assert_eq!(store.load().unwrap().unwrap().history, good.history);
    }
}

#[test]
fn a_store_numbered_at_the_end_is_read_and_a_write_past_it_refused() {
    let dir = Scratch::new("numbering-end");
    let path = dir.file("gate.db");
    let store = open(&path, "checkout");
    first_write(&store);
    let hand = Connection::open(&path).unwrap();
    let last = crate::store::state::MAX_STORED_NUMBER;
    assert_eq!(last, i64::MAX as u64);
    // One below SQLite's largest integer: read, and the one write that follows it is read
    // again (it used to make a store no process would open).
    hand.execute(
        "UPDATE release SET version = ?1, stage = ?1",
        [last as i64 - 1],
    )
    .unwrap();
    let stored = store.load().unwrap().unwrap();
    assert_eq!(stored.release.version, last - 1);
    assert_eq!(
        store
            .commit(&write_on(last - 1, canary(5.0), None))
            .unwrap(),
        Commit::Written { epoch: 0 }
    );
    let stored = store.load().unwrap().unwrap();
    assert_eq!(stored.release.version, last);
    // At the largest: no write can follow. Each is refused naming the field, and leaves the
    // store as it was.
    for (column, field) in [("version", "version"), ("stage", "stage")] {
        hand.execute(
            &format!("UPDATE release SET version = ?1, stage = 1, {column} = ?2, rollbacks = NULL"),
            [last as i64 - 1, i64::MAX],
        )
        .unwrap();
        let before = store.load().unwrap().unwrap();
        let guard = before.release.version;
        let mut write = write_on(guard, canary(5.0), None);
        write.release.stage = before.release.stage + 1;
        let err = store.commit(&write).unwrap_err();
        assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
        let named = format!("release.{field} = {}: past {last}", last + 1);
        assert!(err.to_string().contains(&named), "{named:?} not in {err}");
        assert_eq!(store.load().unwrap().unwrap().release, before.release);
    }
}

fn expect_refused(path: &str, problem: StoreProblem, words: &str) {
    let err = SqliteStore::open(&settings(path), "checkout").unwrap_err();
    assert_eq!(err.problem(), problem, "{err}");
    assert_eq!(err.location(), path);
    let message = err.to_string();
    assert!(message.contains(path), "{message}");
    assert!(message.contains(words), "{message}");
}

#[test]
fn a_corrupt_file_is_refused_naming_its_path() {
    let dir = Scratch::new("corrupt");
    let garbage = dir.file("garbage.db");
    std::fs::write(&garbage, b"this is not a database, only text. ".repeat(200)).unwrap();
    expect_refused(&garbage, StoreProblem::NotOurs, "not a database");

    // A real store whose pages were overwritten after the header.
    let damaged = dir.file("damaged.db");
    let store = open(&damaged, "checkout");
    first_write(&store);
    drop(store);
    let mut bytes = std::fs::read(&damaged).unwrap();
    for b in bytes.iter_mut().skip(100) {
        *b = 0xA5;
    }
    std::fs::write(&damaged, bytes).unwrap();
    let _ = std::fs::remove_file(format!("{damaged}-wal"));
    let _ = std::fs::remove_file(format!("{damaged}-shm"));
    let err = SqliteStore::open(&settings(&damaged), "checkout")
        .and_then(|store| store.load().map(|_| ()))
        .unwrap_err();
    assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
    assert!(err.to_string().contains(&damaged), "{err}");
}

#[test]
fn a_path_starting_with_file_or_a_colon_is_given_to_sqlite_as_a_file_name() {
    assert_eq!(file_name("file:g.db"), "./file:g.db");
    assert_eq!(file_name("file:g.db?mode=ro"), "./file:g.db?mode=ro");
    assert_eq!(file_name("file:/var/g.db"), "./file:/var/g.db");
    assert_eq!(file_name(":memory:"), "./:memory:");
    assert_eq!(file_name(":g.db"), "./:g.db");
    for as_written in [
        "g.db",
        "./file:g.db",
        "/var/file:g.db",
        "FILE:g.db",
        "dir/file:g.db",
        "./:memory:",
        "g:memory:",
    ] {
        assert_eq!(file_name(as_written), as_written);
    }
}

/// The child side of the test below: set, this test opens `file:g.db` and `:memory:` in its
/// working directory.
const FILE_PATH_CHILD_ENV: &str = "PGATE_STORE_TEST_FILE_PATH_CHILD";

/// A relative path that SQLite would read as a URI (`file:`) or as a special name (`:memory:`,
/// a database in memory that was refused at open as `Unavailable`, cannot be put in WAL mode)
/// is the file of that name in the working directory, as docs/store.md says every path is.
#[test]
fn a_relative_path_starting_with_file_or_a_colon_is_the_file_of_that_name() {
    if std::env::var_os(FILE_PATH_CHILD_ENV).is_some() {
        first_write(&open("file:g.db", "checkout"));
        first_write(&open(":memory:", "checkout"));
        return;
    }
    // Another process, so that this one's working directory is not changed under its threads.
    let dir = Scratch::new("file-path");
    let named = dir.file("file:g.db");
    let cwd = Path::new(&named).parent().unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::sqlite::tests::a_relative_path_starting_with_file_or_a_colon_is_the_file_of_that_name",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(FILE_PATH_CHILD_ENV, "1")
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        child.status.success(),
        "{}",
        String::from_utf8_lossy(&child.stderr)
    );
    assert!(!Path::new(&dir.file("g.db")).exists(), "g.db was made");
    for named in [named, dir.file(":memory:")] {
        assert_eq!(
            open(&named, "checkout")
                .load()
                .unwrap()
                .unwrap()
                .release
                .version,
            1,
            "{named}"
        );
    }
}

#[test]
fn a_foreign_or_newer_database_is_refused_naming_its_path() {
    let dir = Scratch::new("foreign");
    let foreign = dir.file("foreign.db");
    let other = Connection::open(&foreign).unwrap();
    other
        .execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);")
        .unwrap();
    drop(other);
    expect_refused(
        &foreign,
        StoreProblem::NotOurs,
        "another program's database",
    );

    let tagged = dir.file("tagged.db");
    let other = Connection::open(&tagged).unwrap();
    other.pragma_update(None, "application_id", 42).unwrap();
    drop(other);
    expect_refused(&tagged, StoreProblem::NotOurs, "application_id 0x2a");

    let newer = dir.file("newer.db");
    drop(open(&newer, "checkout"));
    let other = Connection::open(&newer).unwrap();
    other
        .execute("UPDATE schema_version SET version = 2", [])
        .unwrap();
    drop(other);
    expect_refused(&newer, StoreProblem::NotOurs, "schema version 2");
}

#[test]
fn a_file_of_ours_missing_a_table_or_a_column_is_not_ours_naming_it() {
    let dir = Scratch::new("damaged");
    for (n, (damage, named)) in [
        ("DROP TABLE history", "no table history"),
        ("DROP TABLE release", "no table release"),
        (
            "ALTER TABLE history DROP COLUMN reason",
            "table history has no column reason",
        ),
        (
            "ALTER TABLE contribution DROP COLUMN stable_latency",
            "table contribution has no column stable_latency",
        ),
        // The same columns without the primary key the writes' `ON CONFLICT` needs: every
        // write would fail, as if the store were unavailable.
        (
            "CREATE TABLE copy AS SELECT * FROM release; DROP TABLE release; \
             ALTER TABLE copy RENAME TO release",
            "table release, column gate: declared \"TEXT\" (not in the primary key, NULL allowed), where ours is \"TEXT\" (primary key column 1, NOT NULL)",
        ),
        (
            "ALTER TABLE release RENAME COLUMN version TO old_version; \
             ALTER TABLE release ADD COLUMN version TEXT NOT NULL DEFAULT '1'",
            "table release, column version: declared \"TEXT\" (not in the primary key, NOT NULL), where ours is \"INTEGER\" (not in the primary key, NOT NULL)",
        ),
        // The same table without a NOT NULL: a row with a NULL version would be skipped by
        // every read, unseen.
        (
            "CREATE TABLE copy (gate TEXT NOT NULL, version INTEGER, \
                 rolled_back TEXT NOT NULL, feature TEXT NOT NULL, reason TEXT NOT NULL, \
                 rollback_trigger TEXT NOT NULL, environment TEXT NOT NULL, \
                 timestamp_ns INTEGER NOT NULL, PRIMARY KEY (gate, version)); \
             INSERT INTO copy SELECT * FROM history; DROP TABLE history; \
             ALTER TABLE copy RENAME TO history",
            "table history, column version: declared \"INTEGER\" (primary key column 2, NULL allowed), where ours is \"INTEGER\" (primary key column 2, NOT NULL)",
        ),
        // A view in its place reads alike but cannot be written: refused at open, not at the
        // first write as unavailable.
        (
            "ALTER TABLE history RENAME TO old_history; \
             CREATE VIEW history AS SELECT * FROM old_history",
            "no table history",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.file(&format!("damaged-{n}.db"));
        drop(open(&path, "checkout"));
        Connection::open(&path)
            .unwrap()
            .execute_batch(damage)
            .unwrap();
        expect_refused(&path, StoreProblem::NotOurs, named);
    }
    // Dropped under a store that is open: its reads are not ours either, naming the table.
    let path = dir.file("open.db");
    let store = open(&path, "checkout");
    first_write(&store);
    Connection::open(&path)
        .unwrap()
        .execute_batch("DROP TABLE history")
        .unwrap();
    let err = store.load().unwrap_err();
    assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
    assert!(err.to_string().contains("no such table: history"), "{err}");
}

#[test]
fn a_missing_directory_is_unavailable_naming_the_path() {
    let dir = Scratch::new("missing");
    let path = Path::new(&dir.file("no-such-dir")).join("gate.db");
    let path = path.to_str().unwrap();
    expect_refused(path, StoreProblem::Unavailable, "unable to open");
}

#[test]
fn a_write_locked_out_too_long_is_unavailable_and_changes_nothing() {
    let dir = Scratch::new("locked");
    let path = dir.file("gate.db");
    let store = SqliteStore::open(
        &SqliteStoreConfig {
            busy_timeout_ms: 50,
            ..settings(&path)
        },
        "checkout",
    )
    .unwrap();
    first_write(&store);
    let holder = Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let write = StoredWrite::new(
        Guard {
            version: 1,
            stage: 1,
            epoch: 0,
        },
        crate::store::RolloutOn::UNKNOWN,
        &Default::default(),
        2,
        &config(Environment::Production),
        Some(&rollback_event("while locked")),
    );
    let err = store.commit(&write).unwrap_err();
    assert_eq!(err.problem(), StoreProblem::Unavailable, "{err}");
    assert!(err.to_string().contains("locked"), "{err}");
    // Readers are not blocked by a writer in WAL mode.
    assert_eq!(store.load().unwrap().unwrap().release.version, 1);
    holder.execute_batch("ROLLBACK").unwrap();
    assert_eq!(store.commit(&write).unwrap(), Commit::Written { epoch: 0 });
}

/// A write queued behind this process's other store call (the sync thread's publish, waiting
/// for another process's lock) waits one busy timeout in all, not that call's wait and then
/// one of its own: the docs promise `busy_timeout_ms`, and a host's write took about twice it.
#[test]
fn a_write_behind_another_call_waiting_for_the_lock_waits_one_busy_timeout_in_all() {
    const BUSY: Duration = Duration::from_millis(600);
    let dir = Scratch::new("locked-twice");
    let path = dir.file("gate.db");
    let store = Arc::new(
        SqliteStore::open(
            &SqliteStoreConfig {
                busy_timeout_ms: u64::try_from(BUSY.as_millis()).unwrap(),
                ..settings(&path)
            },
            "checkout",
        )
        .unwrap(),
    );
    first_write(&store);
    let holder = Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let publisher = Arc::clone(&store);
    let publishing = std::thread::spawn(move || {
        publisher.publish(
            &contribution("a", 1, 100),
            FIRST_FILE,
            Duration::from_secs(60),
        )
    });
    // The publish holds the connection, waiting for the lock, when the write asks for it.
    std::thread::sleep(BUSY / 6);
    let asked = std::time::Instant::now();
    let err = store
        .commit(&write_on(1, Environment::Production, Some("x")))
        .unwrap_err();
    let waited = asked.elapsed();
    assert_eq!(err.problem(), StoreProblem::Unavailable, "{err}");
    assert!(waited < BUSY * 3 / 2, "the write waited {waited:?}");
    assert!(publishing.join().unwrap().is_err());
    holder.execute_batch("ROLLBACK").unwrap();
    // The next call has its whole timeout again.
    assert_eq!(
        store
            .commit(&write_on(1, Environment::Production, Some("x")))
            .unwrap(),
        Commit::Written { epoch: 0 }
    );
}

#[test]
fn the_file_is_in_wal_mode() {
    let dir = Scratch::new("wal");
    let path = dir.file("gate.db");
    drop(open(&path, "checkout"));
    let other = Connection::open(&path).unwrap();
    let mode: String = other
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn contributions_are_read_per_stage_without_the_readers_own() {
    let dir = Scratch::new("contributions");
    let path = dir.file("gate.db");
    let (a, b) = (open(&path, "checkout"), open(&path, "checkout"));
    let other_gate = open(&path, "search");
    let ttl = Duration::from_secs(60);
    a.publish(&contribution("a", 2, 100), FIRST_FILE, ttl)
        .unwrap();
    b.publish(&contribution("b", 2, 200), FIRST_FILE, ttl)
        .unwrap();
    b.publish(&contribution("b", 3, 300), FIRST_FILE, ttl)
        .unwrap();
    other_gate
        .publish(&contribution("c", 2, 400), FIRST_FILE, ttl)
        .unwrap();
    // Publishing again replaces the instance's row of that stage.
    a.publish(&contribution("a", 2, 150), FIRST_FILE, ttl)
        .unwrap();
    let seen = |store: &SqliteStore, stage, except| {
        let mut found: Vec<(String, u64)> = store
            .contributions(
                Guard {
                    stage,
                    ..FIRST_FILE
                },
                except,
                ttl,
            )
            .unwrap()
            .into_iter()
            .map(|c| c.unwrap())
            .map(|c| (c.instance, c.cohorts.canary.requests))
            .collect();
        found.sort();
        found
    };
    assert_eq!(seen(&a, 2, "a"), [("b".to_string(), 200)]);
    assert_eq!(
        seen(&b, 2, "nobody"),
        [("a".to_string(), 150), ("b".to_string(), 200)]
    );
    assert_eq!(seen(&a, 3, "a"), [("b".to_string(), 300)]);
    assert_eq!(seen(&other_gate, 2, "x"), [("c".to_string(), 400)]);
    assert_eq!(
        a.contributions(
            Guard {
                stage: 2,
                ..FIRST_FILE
            },
            "a",
            ttl
        )
        .unwrap()[0]
            .as_ref()
            .unwrap(),
        &contribution("b", 2, 200),
        "read back as published"
    );
}

#[test]
fn contributions_older_than_their_time_to_live_are_ignored_then_pruned() {
    let dir = Scratch::new("contributions-ttl");
    let path = dir.file("gate.db");
    let (a, b) = (open(&path, "checkout"), open(&path, "checkout"));
    let ttl = Duration::from_millis(300);
    b.publish(&contribution("b", 1, 200), FIRST_FILE, ttl)
        .unwrap();
    assert_eq!(a.contributions(FIRST_FILE, "a", ttl).unwrap().len(), 1);
    // b stops publishing (a dead instance); once the time to live has passed, a ignores it...
    let start = std::time::Instant::now();
    while a.contributions(FIRST_FILE, "a", ttl).unwrap().len() == 1 {
        assert!(start.elapsed() < Duration::from_secs(5), "never expired");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(start.elapsed() >= ttl - Duration::from_millis(50));
    let rows = |store: &SqliteStore| -> i64 {
        store
            .connection()
            .query_row("SELECT count(*) FROM contribution", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(rows(&a), 1, "ignored, still there");
    // ... and a's next publication prunes it.
    a.publish(&contribution("a", 1, 100), FIRST_FILE, ttl)
        .unwrap();
    assert_eq!(rows(&a), 1, "only a's own row is left");
    assert!(a.contributions(FIRST_FILE, "a", ttl).unwrap().is_empty());
    // A row dated far ahead (by hand, or before the clock was set back) would never expire
    // and, read first, would push live instances out of the read: ignored, then pruned.
    b.publish(&contribution("b", 1, 200), FIRST_FILE, ttl)
        .unwrap();
    a.connection()
        .execute(
            "UPDATE contribution SET updated_at_ms = ?1 WHERE instance = 'b'",
            [i64::MAX],
        )
        .unwrap();
    assert!(a.contributions(FIRST_FILE, "a", ttl).unwrap().is_empty());
    a.publish(&contribution("a", 1, 100), FIRST_FILE, ttl)
        .unwrap();
    assert_eq!(rows(&a), 1, "the row dated ahead is pruned");
}

#[test]
fn bad_contribution_rows_are_refused_one_by_one_naming_the_instance_and_the_column() {
    let dir = Scratch::new("contributions-bad");
    let path = dir.file("gate.db");
    let store = open(&path, "checkout");
    let ttl = Duration::from_secs(60);
    for instance in [
        "good", "negative", "text", "huge", "corrupt", "long", "megabyte",
    ] {
        store
            .publish(&contribution(instance, 1, 100), FIRST_FILE, ttl)
            .unwrap();
    }
    {
        let c = store.connection();
        let set = |sql: &str, instance: &str| {
            c.execute(sql, [instance]).unwrap();
        };
        set(
            "UPDATE contribution SET canary_errors = -3 WHERE instance = ?1",
            "negative",
        );
        set(
            "UPDATE contribution SET stable_requests = 'many' WHERE instance = ?1",
            "text",
        );
        set(
            "UPDATE contribution SET stable_latency = zeroblob(70000) WHERE instance = ?1",
            "huge",
        );
        // A count of 1 MiB of text: refused by its length, never read whole.
        set(
            "UPDATE contribution SET canary_requests = CAST(zeroblob(1048576) AS TEXT) \
             WHERE instance = ?1",
            "megabyte",
        );
        set(
            "UPDATE contribution SET canary_latency = x'1c849313deadbeef' WHERE instance = ?1",
            "corrupt",
        );
        // An id of 8 MB: only its length and first characters are read.
        set(
            "UPDATE contribution SET instance = ?1 || '-' || hex(zeroblob(4000000)) WHERE instance = ?1",
            "long",
        );
    }
    let rows = store.contributions(FIRST_FILE, "me", ttl).unwrap();
    let long = rows
        .iter()
        .find_map(|row| row.as_ref().err().filter(|bad| bad.field == "instance"))
        .unwrap();
    assert_eq!(
        long.to_string(),
        r#"contribution of instance "long-000000000000000000000000000"...(8000005 bytes): instance: 8000005 bytes is above 256"#
    );
    // Each refusal names the column and shows the value, as a release's or an event's does.
    let refusal = |instance: &str| {
        rows.iter()
            .find_map(|row| row.as_ref().err().filter(|bad| bad.instance == instance))
            .unwrap()
            .to_string()
    };
    assert_eq!(
        refusal("text"),
        r#"contribution of instance "text": stable_requests: "many" (text): expected an integer"#
    );
    assert_eq!(
        refusal("megabyte"),
        r#"contribution of instance "megabyte": canary_requests: (1048576 bytes): more than a read takes, 160 bytes (an integer's)"#
    );
    assert_eq!(
        refusal("negative"),
        r#"contribution of instance "negative": canary_errors: -3: negative, where a count is expected"#
    );
    let mut found: Vec<String> = rows
        .into_iter()
        .map(
            |row| match row.and_then(|c| crate::store::decode(&c, 1).map(|_| c)) {
                Ok(c) => format!("{} ok", c.instance),
                Err(bad) => format!("{} {}", bad.instance, bad.field),
            },
        )
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            "corrupt canary.latency",
            "good ok",
            "huge stable_latency",
            "long-000000000000000000000000000 instance",
            "megabyte canary_requests",
            "negative canary_errors",
            "text stable_requests"
        ]
    );
}

/// An instance id that is not text (a row written by hand) is shown with its type, as every
/// column's value is, and two such rows are two refusals: the sync thread logs each once.
#[test]
fn contribution_rows_whose_instance_is_a_blob_are_refused_each_showing_its_value() {
    let dir = Scratch::new("contributions-blob-instance");
    let store = open(&dir.file("gate.db"), "checkout");
    let ttl = Duration::from_secs(60);
    for instance in ["one", "two"] {
        store
            .publish(&contribution(instance, 1, 100), FIRST_FILE, ttl)
            .unwrap();
    }
    {
        let c = store.connection();
        c.execute(
            "UPDATE contribution SET instance = x'01' WHERE instance = 'one'",
            [],
        )
        .unwrap();
        c.execute(
            "UPDATE contribution SET instance = x'02' WHERE instance = 'two'",
            [],
        )
        .unwrap();
    }
    let mut lines: Vec<String> = store
        .contributions(FIRST_FILE, "me", ttl)
        .unwrap()
        .into_iter()
        .map(|row| row.unwrap_err().to_string())
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            r#"contribution of instance "?": instance: x'01'(1 bytes) (blob): expected text"#,
            r#"contribution of instance "?": instance: x'02'(1 bytes) (blob): expected text"#,
        ]
    );
}

/// An instance id that is not UTF-8 (a row written by hand) is refused showing its bytes:
/// read as text, `x\xff` and `x\xfe` would be one instance, counted once.
#[test]
fn contribution_rows_whose_instance_is_not_utf8_are_refused_each_showing_its_bytes() {
    let dir = Scratch::new("contributions-not-utf8");
    let store = open(&dir.file("gate.db"), "checkout");
    let ttl = Duration::from_secs(60);
    for instance in ["one", "two", "ok"] {
        store
            .publish(&contribution(instance, 1, 100), FIRST_FILE, ttl)
            .unwrap();
    }
    {
        let c = store.connection();
        for (hex, instance) in [("78ff", "one"), ("78fe", "two")] {
            c.execute(
                &format!(
                    "UPDATE contribution SET instance = CAST(x'{hex}' AS TEXT) WHERE instance = ?1"
                ),
                [instance],
            )
            .unwrap();
        }
    }
    let lines = sorted_lines(store.contributions(FIRST_FILE, "me", ttl).unwrap());
    assert_eq!(
        lines,
        [
            r#"contribution of instance "?": instance: "x\xfe": expected UTF-8 text"#,
            r#"contribution of instance "?": instance: "x\xff": expected UTF-8 text"#,
            "ok ok",
        ]
    );
}

#[test]
fn at_most_max_instances_contributions_are_read() {
    let dir = Scratch::new("contributions-many");
    let path = dir.file("gate.db");
    let store = open(&path, "checkout");
    let ttl = Duration::from_secs(60);
    let one = contribution("x", 1, 10);
    {
        let c = store.connection();
        for i in 0..MAX_INSTANCES + 10 {
            let PerCohort { canary, stable } = &one.cohorts;
            c.execute(
                "INSERT INTO contribution VALUES ('checkout', ?1, 1, ?2, 10, 1, 9, ?3, 900, 9, 891, ?4)",
                params![format!("i{i}"), now_ms(), canary.latency, stable.latency],
            )
            .unwrap();
        }
    }
    assert_eq!(
        store.contributions(FIRST_FILE, "me", ttl).unwrap().len(),
        MAX_INSTANCES
    );
}

/// The stored release's version, read by a connection of its own (as a process started now).
fn version_read_afresh(path: &str) -> Option<i64> {
    Connection::open(path)
        .unwrap()
        .query_row("SELECT version FROM release", [], |row| row.get(0))
        .optional()
        .unwrap()
}

/// Two stores of one gate on the file `gate.db` of a new directory named after `name`, both
/// knowing its first state (written by the first, read by the second).
fn two_stores_knowing_a_first_write(name: &str) -> (Scratch, String, SqliteStore, SqliteStore) {
    let dir = Scratch::new(name);
    let path = dir.file("gate.db");
    let (a, b) = (open(&path, "checkout"), open(&path, "checkout"));
    first_write(&a);
    assert!(b.load().unwrap().is_some());
    (dir, path, a, b)
}

#[test]
fn a_store_whose_file_was_removed_writes_to_the_file_created_at_its_path() {
    let (_dir, path, a, b) = two_stores_knowing_a_first_write("removed");
    remove_store(&path);
    // The next call opens the path again: a new, empty store, where the write goes (in the
    // store's second file).
    assert_eq!(a.changes_since(known(1)).unwrap(), Since::Reset(None));
    let rollback = write_on(0, Environment::Production, Some("after the reset"));
    assert_eq!(a.commit(&rollback).unwrap(), Commit::Written { epoch: 1 });
    assert_eq!(version_read_afresh(&path), Some(1));
    // The other store follows the path too (its old file held Canary{10} at version 1), and
    // so does one opened now.
    let seen = b.load().unwrap().unwrap();
    assert_eq!(seen.release.config.environment, Environment::Production);
    assert_eq!(seen.history.len(), 1);
    let c = open(&path, "checkout");
    assert_eq!(c.load().unwrap(), Some(seen.clone()));
    // Publishing and reading contributions follow it as well (to a stage of a state of the
    // file: `b`'s second, `c`'s first).
    let ttl = Duration::from_secs(60);
    b.publish(&contribution("b", 1, 100), SECOND_FILE, ttl)
        .unwrap();
    assert_eq!(c.contributions(FIRST_FILE, "c", ttl).unwrap().len(), 1);
}

#[test]
fn closing_the_removed_file_leaves_the_new_files_wal_alone() {
    let (_dir, path, a, b) = two_stores_knowing_a_first_write("removed-wal");
    remove_store(&path);
    // `a` opens the new file and writes there: the write is in its write-ahead log.
    assert_eq!(first_write(&a), 1);
    let wal = format!("{path}-wal");
    assert!(Path::new(&wal).exists());
    // `b`, the last connection to the removed file, closes it when it follows the path,
    // without the checkpoint on close, which deletes `gate.db-wal` and `gate.db-shm` by name:
    // the new file's, with `a`'s write. (SQLite skips it too when it sees the file moved.)
    assert!(b.load().unwrap().is_some());
    assert!(Path::new(&wal).exists(), "b deleted the new file's WAL");
    assert_eq!(version_read_afresh(&path), Some(1));
    // The same when a store is dropped before it noticed.
    let c = open(&path, "checkout");
    remove_store(&path);
    first_write(&a);
    drop(c);
    assert!(Path::new(&wal).exists(), "c deleted the new file's WAL");
    assert_eq!(version_read_afresh(&path), Some(1));
}

#[test]
fn a_store_follows_a_backup_moved_over_its_file_as_a_store_that_went_back() {
    let dir = Scratch::new("restored");
    let path = dir.file("gate.db");
    let store = open(&path, "checkout");
    first_write(&store);
    let saved = dir.file("backup.db");
    backup(&path, &saved);
    let rollback = write_on(1, Environment::Production, Some("bad deploy"));
    assert_eq!(
        store.commit(&rollback).unwrap(),
        Commit::Written { epoch: 0 }
    );
    move_over(&saved, &path);
    let lines = LogLines::default();
    let read = lines.during(|| store.changes_since(known(2)).unwrap());
    let Since::Reset(Some(restored)) = read else {
        panic!("the restored state is not read: {read:?}")
    };
    assert_eq!(restored.release.version, 1);
    assert_eq!(restored.release.config.environment, canary(10.0));
    assert_eq!(
        restored.release.epoch, 1,
        "read from the store's second file"
    );
    // Logged once, naming the path and both files.
    let warned: Vec<String> = lines
        .lines()
        .into_iter()
        .filter(|line| line.contains("was replaced on disk"))
        .collect();
    assert_eq!(warned.len(), 1, "{:#?}", lines.lines());
    assert!(warned[0].contains(&path), "{warned:?}");
    assert!(warned[0].contains("old_inode=") && warned[0].contains("new_inode="));
    // Writes decided on the restored state go to the restored file, and nothing more is
    // logged.
    lines.during(|| {
        let write = decided_in(write_on(1, canary(5.0), None), 1);
        assert_eq!(store.commit(&write).unwrap(), Commit::Written { epoch: 1 });
        assert_eq!(store.changes_since(known_in(2, 1)).unwrap(), Since::Same);
    });
    assert_eq!(version_read_afresh(&path), Some(2));
    assert_eq!(lines.lines().len(), 1, "one replacement, one warning");
}

/// A file holding `environment`'s release at version and stage 1 (another state than
/// `first_write`'s at the same numbers), made at `made` and copied to `to`, ready to be moved
/// over a store's file.
fn another_state_at_version_1(made: &str, to: &str, environment: Environment) {
    let other = open(made, "checkout");
    assert_eq!(
        other.commit(&write_on(0, environment, None)).unwrap(),
        Commit::Written { epoch: 0 }
    );
    drop(other);
    backup(made, to);
}

/// [`two_stores_knowing_a_first_write`], then another file moved over the path, holding
/// another state (Production) at the very version and stage they know.
fn two_stores_then_a_new_file_at_their_numbers(
    name: &str,
) -> (Scratch, String, SqliteStore, SqliteStore) {
    let (dir, path, a, b) = two_stores_knowing_a_first_write(name);
    let replacement = dir.file("replacement.db");
    another_state_at_version_1(&dir.file("made.db"), &replacement, Environment::Production);
    move_over(&replacement, &path);
    (dir, path, a, b)
}

/// A file moved over the path holding another state at exactly the version and stage a
/// process knows: the process reads it whole (a store that went back: the numbers tell
/// nothing across files), and a write decided on the old file's state is refused as a
/// conflict, not written over the new file's (a lost update).
#[test]
fn a_file_replaced_by_another_state_at_the_known_numbers_is_read_and_not_written_over() {
    let (_dir, path, reader, writer) =
        two_stores_then_a_new_file_at_their_numbers("replaced-same-numbers");
    // The reader knows version and stage 1 (canary 10 %): the new file's state is read.
    let read = reader.changes_since(known(1)).unwrap();
    let Since::Reset(Some(state)) = read else {
        panic!("the new file's state is not read: {read:?}")
    };
    assert_eq!(state.release.config.environment, Environment::Production);
    assert_eq!(state.release.epoch, 1);
    assert_eq!(reader.changes_since(known_in(1, 1)).unwrap(), Since::Same);
    // The writer decided on the old file's state, at the same numbers: refused, not written.
    let decided_on_old = write_on(1, canary(5.0), Some("decided on the old file"));
    assert_eq!(
        writer.commit(&decided_on_old).unwrap(),
        Commit::Conflict {
            stored_version: 1,
            another_file: true,
        }
    );
    kept_then_written_once_read(&writer, &path, &decided_on_old);
}

/// Contributions to a stage of a state of the old file (the epoch the caller knows) are
/// neither published in the new file, where the stage of that number is another state's, nor
/// read from it: refused as a conflict, saying so, the new file's rows left as they were. Once
/// the caller knows a state of the new file, they are.
#[test]
fn contributions_to_a_stage_of_the_old_file_are_not_published_or_read_in_the_new_one() {
    let (_dir, _path, store, other) =
        two_stores_then_a_new_file_at_their_numbers("replaced-contributions");
    let ttl = Duration::from_secs(60);
    other
        .publish(&contribution("other", 1, 200), SECOND_FILE, ttl)
        .unwrap();
    let refused = store
        .publish(&contribution("me", 1, 100), FIRST_FILE, ttl)
        .unwrap_err();
    // Naming the epoch the caller passed (the state it knows) and the open file's.
    let naming = |done: &str| {
        format!(
            "the file was replaced on disk: contributions to a stage of the file before (epoch {}, of the state the gate knows) are not {done} in the one the path names now (epoch 1), whose stage of that number is another state's",
            FIRST_FILE.epoch
        )
    };
    assert_eq!(refused.problem(), StoreProblem::Conflict);
    assert!(
        refused.to_string().contains(&naming("published")),
        "{refused}"
    );
    let refused = store.contributions(FIRST_FILE, "me", ttl).unwrap_err();
    assert_eq!(refused.problem(), StoreProblem::Conflict);
    assert!(refused.to_string().contains(&naming("read")), "{refused}");
    let rows = || {
        store
            .contributions(SECOND_FILE, "nobody", ttl)
            .unwrap()
            .len()
    };
    assert_eq!(rows(), 1, "the other's row alone");
    store
        .publish(&contribution("me", 1, 100), SECOND_FILE, ttl)
        .unwrap();
    assert_eq!(rows(), 2);
    assert_eq!(
        store.contributions(SECOND_FILE, "me", ttl).unwrap().len(),
        1
    );
}

/// A guard of no state (version 0: an empty store's, before the gate's first write) is of no
/// file ([`Guard::of_another_file`]): contributions to its stage are published and read in
/// whichever file the path names, whatever the guard's epoch, while those of a state of the
/// old file are refused there.
#[test]
fn contributions_of_no_state_known_are_of_any_file() {
    let (_dir, _path, store, other) =
        two_stores_then_a_new_file_at_their_numbers("no-state-contributions");
    let ttl = Duration::from_secs(60);
    let nothing_known = |epoch| Guard {
        version: 0,
        stage: 0,
        epoch,
    };
    for (epoch, requests) in [(0, 100), (1, 200), (7, 300)] {
        store
            .publish(&contribution("me", 0, requests), nothing_known(epoch), ttl)
            .unwrap_or_else(|e| panic!("refused at epoch {epoch}: {e}"));
        let read = other
            .contributions(nothing_known(epoch), "other", ttl)
            .unwrap_or_else(|e| panic!("refused at epoch {epoch}: {e}"));
        assert_eq!(read.len(), 1, "epoch {epoch}");
        assert_eq!(read[0].as_ref().unwrap(), &contribution("me", 0, requests));
    }
    let refused = other.contributions(FIRST_FILE, "other", ttl).unwrap_err();
    assert_eq!(refused.problem(), StoreProblem::Conflict, "{refused}");
}

/// The sync thread reads the new file's state without the writer lock, and a host's write,
/// decided on the old file's state, may reach the store (the same store) before the gate
/// takes that state: the read hands the new state to the reader, not the old one's writes
/// the right to write over it. The write is refused as a conflict, not written over the new
/// file's state (a lost update, at the very numbers), and a read against the old state reads
/// the new file whole again, until the caller knows a state read from it.
#[test]
fn a_read_of_the_new_file_lets_no_write_decided_on_the_old_one_through() {
    let (_dir, path, store, _) =
        two_stores_then_a_new_file_at_their_numbers("replaced-read-then-write");
    let read = store.changes_since(known(1)).unwrap();
    assert!(
        matches!(&read, Since::Reset(Some(state)) if state.release.epoch == 1),
        "{read:?}"
    );
    let decided_on_old = write_on(1, canary(5.0), Some("decided on the old file"));
    assert_eq!(
        store.commit(&decided_on_old).unwrap(),
        Commit::Conflict {
            stored_version: 1,
            another_file: true,
        }
    );
    kept_then_written_once_read(&store, &path, &decided_on_old);
}

/// The new file at `path` still holds its own state (Production at version 1, no history),
/// and `write`, refused on it, is made once `store` has read that state and it is decided
/// again on it (in the store's second file).
fn kept_then_written_once_read(store: &SqliteStore, path: &str, write: &StoredWrite) {
    let kept = open(path, "checkout").load().unwrap().unwrap();
    assert_eq!(kept.release.version, 1);
    assert_eq!(kept.release.config.environment, Environment::Production);
    assert!(kept.history.is_empty());
    let read = store.changes_since(known(1)).unwrap();
    assert!(
        matches!(&read, Since::Reset(Some(state)) if state.release.epoch == 1),
        "{read:?}"
    );
    let decided_again = decided_in(write.clone(), 1);
    assert_eq!(
        store.commit(&decided_again).unwrap(),
        Commit::Written { epoch: 1 }
    );
    assert_eq!(version_read_afresh(path), Some(2));
}

/// A write waiting for another process's lock on the file while the file is replaced: it
/// would land in the old file, which no process reads, and be reported made. Once it holds the
/// lock it finds the path naming another file, and rolls back, nothing written in the old file
/// either; it is refused as a conflict on the new file (it was decided on the old file's
/// state), and the new file keeps its state.
#[test]
fn a_write_waiting_for_the_lock_while_the_file_is_replaced_is_not_reported_made() {
    let dir = Scratch::new("replaced-while-waiting");
    let path = dir.file("gate.db");
    let store = Arc::new(open(&path, "checkout"));
    first_write(&store);
    let replacement = dir.file("replacement.db");
    another_state_at_version_1(&dir.file("made.db"), &replacement, Environment::Production);
    let holder = Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (at_begin, begins) = std::sync::mpsc::channel();
    *store.write_hooks.before_begin.lock().unwrap() = Some(Box::new(move || {
        at_begin.send(()).unwrap();
    }));
    let write = write_on(1, canary(5.0), Some("waited for the lock"));
    let (writer, waiting) = (Arc::clone(&store), write.clone());
    let writing = std::thread::spawn(move || writer.commit(&waiting));
    // The write looked at the path and asks for the lock, which the holder keeps until the
    // file is replaced.
    begins.recv_timeout(Duration::from_secs(5)).unwrap();
    move_over(&replacement, &path);
    holder.execute_batch("ROLLBACK").unwrap();
    let made = writing.join().unwrap().unwrap();
    assert_eq!(
        made,
        Commit::Conflict {
            stored_version: 1,
            another_file: true,
        }
    );
    // The holder still has the old file open: the write was not made there either.
    assert_eq!(version_in(&holder), 1);
    kept_then_written_once_read(&store, &path, &write);
}

/// A write whose file is replaced between its look at the path, the lock held, and its commit:
/// committed in the old file, which no process reads, it is not reported made, and is refused
/// as a conflict on the new file, which keeps its state.
#[test]
fn a_write_whose_file_is_replaced_before_it_commits_is_not_reported_made() {
    let dir = Scratch::new("replaced-before-commit");
    let path = dir.file("gate.db");
    let store = open(&path, "checkout");
    first_write(&store);
    let replacement = dir.file("replacement.db");
    another_state_at_version_1(&dir.file("made.db"), &replacement, Environment::Production);
    // Read once: its log (`-wal`) open, as the writer's is, when the file is moved over.
    let old = Connection::open(&path).unwrap();
    assert_eq!(version_in(&old), 1);
    let (moved, to) = (replacement.clone(), path.clone());
    *store.write_hooks.before_commit.lock().unwrap() =
        Some(Box::new(move || move_over(&moved, &to)));
    let write = write_on(1, canary(5.0), Some("committed in the old file"));
    assert_eq!(
        store.commit(&write).unwrap(),
        Commit::Conflict {
            stored_version: 1,
            another_file: true,
        }
    );
    assert_eq!(version_in(&old), 2, "committed in the old file");
    kept_then_written_once_read(&store, &path, &write);
}

/// The version of the release in the file `connection` has open.
fn version_in(connection: &Connection) -> i64 {
    connection
        .query_row("SELECT version FROM release", [], |row| row.get(0))
        .unwrap()
}

/// A write committed, then the look at the path failed: it is reported made (it committed in
/// the file the path named when it took the lock; nothing says that file was replaced), not
/// unavailable (a host's promotion tried again would find its own write and promote again).
#[test]
fn a_committed_write_whose_path_cannot_be_checked_is_reported_made() {
    let dir = Scratch::new("committed-unchecked");
    let store = open(&dir.file("gate.db"), "checkout");
    let lines = LogLines::default();
    let unchecked = store.error(
        StoreProblem::Unavailable,
        "cannot tell which file the path names: Permission denied",
    );
    let made = lines.during(|| store.committed(Err(unchecked), 3));
    assert_eq!(made, Some(Commit::Written { epoch: 3 }));
    let warned = lines.lines_at(tracing::Level::WARN);
    assert!(
        warned.iter().any(
            |line| line.contains("the path could not be checked: reported made")
                && line.contains("Permission denied")
        ),
        "{warned:#?}"
    );
    assert_eq!(
        store.committed(Ok(true), 3),
        Some(Commit::Written { epoch: 3 })
    );
    assert_eq!(store.committed(Ok(false), 3), None);
}

#[test]
fn another_programs_file_moved_over_the_path_is_refused_at_every_call_until_ours_is_back() {
    let dir = Scratch::new("replaced-foreign");
    let path = dir.file("gate.db");
    let store = open(&path, "checkout");
    first_write(&store);
    let kept = dir.file("kept.db");
    backup(&path, &kept);
    let foreign = dir.file("foreign.db");
    Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);")
        .unwrap();
    move_over(&foreign, &path);
    for _ in 0..3 {
        let err = store.load().unwrap_err();
        assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
        assert_eq!(err.location(), path);
        assert!(
            err.to_string().contains("another program's database"),
            "{err}"
        );
        let err = store
            .commit(&write_on(1, Environment::Production, None))
            .unwrap_err();
        assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
    }
    move_over(&kept, &path);
    // Read whole, though it holds the numbers known: another file's numbers tell nothing.
    let read = store.changes_since(known(1)).unwrap();
    assert!(
        matches!(&read, Since::Reset(Some(state)) if state.release.version == 1),
        "{read:?}"
    );
    // The store opened none of the foreign files: ours, back, is its second.
    let rollback = decided_in(write_on(1, Environment::Production, Some("back")), 1);
    assert_eq!(
        store.commit(&rollback).unwrap(),
        Commit::Written { epoch: 1 }
    );
    assert_eq!(version_read_afresh(&path), Some(2));
}

/// A known state of version and stage `n` (the tests' writes keep the two equal), read from
/// the store's first file.
fn known(n: u64) -> Guard {
    known_in(n, 0)
}

/// A known state of version and stage `n`, read from the store's file of `epoch`.
fn known_in(n: u64, epoch: u64) -> Guard {
    Guard {
        version: n,
        stage: n,
        epoch,
    }
}

/// `write`, decided on its state as read from the store's file of `epoch`.
fn decided_in(mut write: StoredWrite, epoch: u64) -> StoredWrite {
    write.guard.epoch = epoch;
    write.release.epoch = epoch;
    write
}

/// A release this build refuses (a newer build's, with a field this one does not know) stays
/// in the file until every process is upgraded: each sync tick refuses it again without
/// parsing it again (a config may be megabytes of JSON); one mended in place, to the same
/// length too, is read.
#[test]
fn a_refused_release_is_parsed_once_while_it_stays() {
    let dir = Scratch::new("refused-once");
    let store = open(&dir.file("gate.db"), "checkout");
    commit_on_top(&store, "r1", 100);
    let known = store.load().unwrap().unwrap().release;
    let known = Guard {
        version: known.version,
        stage: known.stage,
        epoch: 0,
    };
    commit_on_top(&store, "r2", 100);
    let hand = |sql: &str, value: &str| {
        store.connection().execute(sql, [value]).unwrap();
    };
    let field = "1".repeat(1_000_000);
    hand(
        "UPDATE release SET config = json_set(config, '$.newer_field', ?1)",
        &field,
    );
    let parsed = || store.parsed.load(std::sync::atomic::Ordering::Relaxed);
    let before = parsed();
    for _ in 0..20 {
        let err = store.changes_since(known).unwrap_err();
        assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
        assert!(err.to_string().contains("newer_field"), "{err}");
    }
    assert_eq!(parsed() - before, 1);
    // Another unknown field of the same length: parsed, and refused naming it.
    hand(
        "UPDATE release SET config = replace(config, '\"newer_field\"', ?1)",
        "\"other_field\"",
    );
    let err = store.changes_since(known).unwrap_err();
    assert!(err.to_string().contains("other_field"), "{err}");
    assert_eq!(parsed() - before, 2);
    // Mended: read.
    hand(
        "UPDATE release SET config = json_remove(config, ?1)",
        "$.other_field",
    );
    assert!(matches!(store.changes_since(known), Ok(Since::Newer(_))));
}
