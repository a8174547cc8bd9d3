//! Fleet-wide judging on a SQLite state store, with real processes: four processes that each
//! see a quarter of a canary's traffic judge it as one process seeing all of it would
//! (`common::fleet`; the same on etcd in `tests/store_etcd.rs`).

mod common;

use common::fleet::{
    SYNC_MS, a_bad_canary_is_rolled_back_by_four_as_by_one, child,
    no_a_a_canary_is_rolled_back_by_four,
};
use common::scratch::Scratch;

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
