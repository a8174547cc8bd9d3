//! A SQLite state store whose release another process rewrote with content this build cannot
//! read (a newer build in a rolling upgrade, a row edited by hand), through the public API: a
//! manual rollback is made at once and written once the store can be read again, as an
//! automatic one is; the other writes stay refused, naming what is wrong.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a broken expectation is a failed test"
)]

mod common;

use common::log_lines::LogLines;
use common::scratch::Scratch;
use common::stored::{eventually, routes_to_canary};
use promotion_gates::{
    Environment, Error, PromotionConfig, PromotionGateManager, RollbackTrigger,
    SloAdmissionController, SloConfig, StoreProblem,
};
use std::time::Duration;

const SYNC_MS: u64 = 20;

fn open(path: &str) -> PromotionGateManager {
    let document = format!(
        r#"{{"gate": "checkout", "environment": {{"canary": {{"traffic_percent": 50}}}},
            "feature_flags": ["checkout_v2"],
            "store": {{"sqlite": {{"path": {path:?}, "sync_interval_ms": {SYNC_MS}, "busy_timeout_ms": 5000}}}}}}"#
    );
    let config = PromotionConfig::from_json(&document).unwrap();
    PromotionGateManager::new(
        config,
        SloAdmissionController::new(SloConfig::default()).unwrap(),
    )
    .unwrap()
}

/// The stored release's version and environment, and the stored history's triggers and reasons.
fn stored(path: &str) -> (i64, String, Vec<(String, String)>) {
    let check = rusqlite::Connection::open(path).unwrap();
    let (version, environment) = check
        .query_row("SELECT version, environment FROM release", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .unwrap();
    let mut events = check
        .prepare("SELECT rollback_trigger, reason FROM history ORDER BY version")
        .unwrap();
    let history = events
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    (version, environment, history)
}

/// Rewrites the stored release as `unreadable` (SQL run on the file), with a higher version, as
/// another process's write; returns the SQL that mends it.
fn rewrite(path: &str, unreadable: &str) -> String {
    let file = rusqlite::Connection::open(path).unwrap();
    let config: String = file
        .query_row("SELECT config FROM release", [], |row| row.get(0))
        .unwrap();
    file.execute_batch(&format!(
        "BEGIN IMMEDIATE; UPDATE release SET version = version + 1; {unreadable} COMMIT;"
    ))
    .unwrap();
    format!(
        "DELETE FROM history WHERE reason = 'hand-made'; UPDATE release SET config = '{}';",
        config.replace('\'', "''")
    )
}

#[test]
fn a_manual_rollback_on_a_release_this_build_cannot_read_is_made_at_once_and_written_later() {
    let cases = [
        (
            "a newer build's field",
            "UPDATE release SET config = json_set(config, '$.new_field', 1);",
            "new_field",
        ),
        (
            "a truncated config",
            "UPDATE release SET config = substr(config, 1, 40);",
            "release.config",
        ),
        (
            "another gate's name",
            "UPDATE release SET config = json_set(config, '$.gate', 'payments');",
            "payments",
        ),
        (
            "a bad history row",
            "INSERT INTO history SELECT gate, version, 'release', 'Canary{50}', 'hand-made', \
             'flag_disabled', '{\"canary\":{\"traffic_percent\":50.0}}', 1 FROM release;",
            "flag_disabled",
        ),
    ];
    for (case, unreadable, named) in cases {
        let dir = Scratch::new("upgrade-rollback");
        let path = dir.file("gate.db");
        let gate = open(&path);
        let stage = gate.stage();
        let mend = rewrite(&path, unreadable);
        // Other writes are refused, naming what cannot be read, and change nothing.
        let ramp_down = Environment::Canary {
            traffic_percent: 5.0,
        };
        let err = gate.promote(ramp_down).unwrap_err();
        let Error::Store(store_err) = &err else {
            panic!("{case}: {err}")
        };
        assert_eq!(store_err.problem(), StoreProblem::NotOurs, "{case}: {err}");
        assert!(err.to_string().contains(named), "{case}: {err}");
        let err = gate.swap_config(gate.config()).unwrap_err();
        assert!(err.to_string().contains(named), "{case}: {err}");
        assert_eq!(gate.stage(), stage, "{case}");

        // The rollback by hand is made at once, and logged as any rollback.
        let lines = LogLines::default();
        lines.during(|| gate.rollback("ops says")).unwrap();
        assert_eq!(gate.environment(), Environment::Production, "{case}");
        assert!(!gate.is_feature_enabled("checkout_v2"), "{case}");
        assert!(!routes_to_canary(&gate), "{case}");
        let history = gate.rollback_history();
        assert_eq!(history.len(), 1, "{case}: {history:?}");
        assert_eq!(history[0].trigger, RollbackTrigger::Manual, "{case}");
        assert_eq!(history[0].reason, "ops says", "{case}");
        let logged: Vec<String> = lines
            .lines()
            .into_iter()
            .filter(|line| line.contains("promotion.rollback"))
            .collect();
        assert_eq!(logged.len(), 1, "{case}: {logged:#?}");
        assert!(logged[0].contains("manual"), "{case}: {logged:#?}");

        // It waits to be written: the store is not written over while it cannot be read, and
        // the gate's writes wait for the rollback.
        std::thread::sleep(Duration::from_millis(5 * SYNC_MS));
        assert_eq!(stored(&path).1, "Canary{50}", "{case}");
        let err = gate
            .promote(Environment::Canary {
                traffic_percent: 1.0,
            })
            .unwrap_err();
        assert!(err.to_string().contains("not written yet"), "{case}: {err}");
        assert!(err.to_string().contains(named), "{case}: {err}");
        assert_eq!(gate.environment(), Environment::Production, "{case}");

        // Once the store can be read again, the sync thread writes it on top.
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(&mend)
            .unwrap();
        eventually(&format!("{case}: the rollback is stored"), || {
            stored(&path).1 == "Production"
        });
        let (version, _, events) = stored(&path);
        assert_eq!(version, 3, "{case}");
        assert_eq!(
            events,
            vec![("manual".to_string(), "ops says".to_string())],
            "{case}"
        );
        let started_after = open(&path);
        assert_eq!(started_after.environment(), Environment::Production);
        assert_eq!(started_after.rollback_history(), gate.rollback_history());
    }
}
