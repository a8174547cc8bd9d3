//! Change notifications through the C ABI: the counter moves once per change, and the JSON
//! says what changed, including the judge's rollback with the rules that fired and a promotion
//! with its environments and stage.
#![allow(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    reason = "test code: a broken expectation is a failed test"
)]

mod common;

use common::{QUIET_SLO, QUIET_WINDOW, fail_the_canary, new_gate, new_gate_with_slo};
use promotion_gates_ffi::*;
use std::ptr::null_mut;

/// The changes above `after` as JSON, through a first call that asks for the length.
///
/// # Safety
/// `gate` must be a live gate.
unsafe fn changes(gate: *const pgate_gate, after: u64) -> serde_json::Value {
    let mut len = 0;
    // SAFETY: live gate; a NULL buffer asks for the length only.
    let status = unsafe { pgate_changes_json(gate, after, null_mut(), 0, &mut len) };
    assert_eq!(status, pgate_status::BufferTooSmall);
    let mut buf = vec![0u8; len + 1];
    // SAFETY: live gate; buf holds len + 1 bytes.
    let status =
        unsafe { pgate_changes_json(gate, after, buf.as_mut_ptr().cast(), buf.len(), &mut len) };
    assert_eq!(status, pgate_status::Ok);
    serde_json::from_slice(&buf[..len]).unwrap()
}

/// The gate's change counter.
///
/// # Safety
/// `gate` must be a live gate.
unsafe fn count(gate: *const pgate_gate) -> u64 {
    let mut n = u64::MAX;
    // SAFETY: live gate, valid out-pointer.
    let status = unsafe { pgate_change_count(gate, &mut n) };
    assert_eq!(status, pgate_status::Ok);
    n
}

#[test]
fn the_counter_and_the_changes_say_what_changed() {
    // (the quiet SLO: the canary's errors roll it back, no evaluation by the clock)
    let gate = new_gate_with_slo(
        &format!(
            r#"{{"environment": {{"canary": {{"traffic_percent": 100}}}}, "feature_flags": ["new_api"], {QUIET_WINDOW}}}"#
        ),
        Some(QUIET_SLO),
    );
    // SAFETY: live gate and buffers throughout.
    unsafe {
        assert_eq!(count(gate), 0);
        assert_eq!(changes(gate, 0), serde_json::json!([]));
        assert_eq!(
            pgate_enable_feature(gate, b"dark".as_ptr(), 4, null_mut()),
            pgate_status::Ok
        );
        assert_eq!(count(gate), 1);
        let d = fail_the_canary(gate);
        assert_eq!(
            d.environment,
            pgate_environment::Production,
            "rolled back by the judge"
        );
        assert_eq!(count(gate), 2);
        let all = changes(gate, 0);
        assert_eq!(all[0]["kind"], "flags");
        assert_eq!(all[0]["flags_enabled"], serde_json::json!(["dark"]));
        assert_eq!(all[0]["rollback"], serde_json::Value::Null);
        let rollback = &all[1];
        assert_eq!(rollback["sequence"], 2);
        assert_eq!(rollback["kind"], "rollback");
        assert_eq!(rollback["origin"], "this_gate");
        assert_eq!(rollback["to"], "production");
        assert_eq!(
            rollback["flags_disabled"],
            serde_json::json!(["dark", "new_api"])
        );
        assert_eq!(rollback["rollback"]["trigger"], "automatic");
        let rules = rollback["rollback"]["rules"].as_array().unwrap();
        assert!(!rules.is_empty(), "{rollback}");
        assert_eq!(changes(gate, 1).as_array().map(Vec::len), Some(1));
        assert_eq!(changes(gate, 2), serde_json::json!([]));

        // A new rollout from Production: a promotion, in the next stage.
        assert_eq!(
            pgate_promote(gate, pgate_environment::Canary as u32, 25.0, null_mut()),
            pgate_status::Ok
        );
        assert_eq!(count(gate), 3);
        let (mut env, mut percent, mut stage) = (pgate_environment::Production, -1.0, 0);
        assert_eq!(
            pgate_state(gate, &mut env, &mut percent, &mut stage),
            pgate_status::Ok
        );
        let promoted = changes(gate, 2);
        assert_eq!(promoted.as_array().map(Vec::len), Some(1), "{promoted}");
        let promotion = &promoted[0];
        assert_eq!(promotion["sequence"], 3);
        assert_eq!(promotion["kind"], "promotion");
        assert_eq!(promotion["origin"], "this_gate");
        assert_eq!(promotion["from"], "production");
        assert_eq!(
            promotion["to"],
            serde_json::json!({"canary": {"traffic_percent": 25.0}})
        );
        assert_eq!(promotion["stage"], rollback["stage"].as_u64().unwrap() + 1);
        assert_eq!(promotion["stage"], stage);
        assert_eq!(promotion["rollback"], serde_json::Value::Null);

        assert_eq!(
            pgate_change_count(gate, null_mut()),
            pgate_status::NullPointer
        );
        let mut n = 0;
        assert_eq!(
            pgate_change_count(std::ptr::null(), &mut n),
            pgate_status::NullPointer
        );
        assert_eq!(pgate_gate_free(gate), pgate_status::Ok);
        let mut len = 0;
        assert_eq!(
            pgate_changes_json(gate, 0, null_mut(), 0, &mut len),
            pgate_status::InvalidHandle
        );
    }
}

/// The gate's change count.
fn change_count(gate: *const pgate_gate) -> u64 {
    let mut n = 0;
    // SAFETY: a live gate; n is a valid out-pointer.
    let status = unsafe { pgate_change_count(gate, &mut n) };
    assert_eq!(status, pgate_status::Ok);
    n
}

#[test]
#[cfg_attr(miri, ignore = "SQLite is C code, which Miri cannot run")]
fn a_gate_asked_to_sync_reads_another_gates_rollback_at_once() {
    let dir = std::env::temp_dir().join(format!("pg-ffi-sync-now-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gate.db").to_str().unwrap().to_string();
    let document = |sync_ms: u64| {
        format!(
            r#"{{"environment": {{"canary": {{"traffic_percent": 10}}}},
                "store": {{"sqlite": {{"path": {path:?}, "sync_interval_ms": {sync_ms}}}}}}}"#
        )
    };
    // Reads the store once a minute (the longest sync interval): a read within a minute of
    // opening it, however loaded the machine, is one it was asked for.
    let opened = std::time::Instant::now();
    let slow = new_gate(&document(60_000));
    let other = new_gate(&document(20));
    let seen = change_count(slow);
    let reason = "bad deploy";
    // SAFETY: live gate; the reason is a live slice; err may be NULL.
    let status = unsafe { pgate_rollback(other, reason.as_ptr(), reason.len(), null_mut()) };
    assert_eq!(status, pgate_status::Ok);
    let mut asked = false;
    // SAFETY: a live gate; asked is a valid out-pointer, or NULL.
    unsafe {
        assert_eq!(pgate_sync_now(slow, &mut asked), pgate_status::Ok);
        assert_eq!(pgate_sync_now(slow, null_mut()), pgate_status::Ok);
    }
    assert!(asked);
    // A bound for correctness, generous for a loaded machine, below the sync interval.
    let start = std::time::Instant::now();
    while change_count(slow) == seen {
        assert!(start.elapsed().as_secs() < 30, "the rollback was not read");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(
        opened.elapsed().as_secs() < 60,
        "read by a tick of its own, not by the ask: this run was too slow to tell"
    );
    let storeless = new_gate("{}");
    // SAFETY: live gates, a NULL one (refused), each freed once, then a freed one (refused
    // before use).
    unsafe {
        assert_eq!(pgate_sync_now(storeless, &mut asked), pgate_status::Ok);
        assert!(!asked, "no store: nothing to read");
        assert_eq!(
            pgate_sync_now(std::ptr::null(), &mut asked),
            pgate_status::NullPointer
        );
        for gate in [slow, other, storeless] {
            assert_eq!(pgate_gate_free(gate), pgate_status::Ok);
        }
        assert_eq!(
            pgate_sync_now(storeless, &mut asked),
            pgate_status::InvalidHandle
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
