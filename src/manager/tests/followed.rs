//! The changes a process announces when it follows another process's writes from the store:
//! a rollback there is announced with its event whatever the environments before and after,
//! and only an event the process did not know before is announced (a ramp followed with the
//! store's whole history is no rollback).

use super::*;

/// A gate at the 50 % canary on `store`, the `graduated` flags on.
fn canary_on(store: Option<crate::store::StoreConfig>, graduated: &[&str]) -> PromotionGateManager {
    gate(PromotionConfig {
        environment: canary(50.0),
        graduated_flags: graduated.iter().map(|flag| flag.to_string()).collect(),
        store,
        ..Default::default()
    })
}

/// A gate at the 50 % canary on `store`, whose history already holds a manual rollback (of
/// an earlier rollout, now rolled out again at the same share).
fn rolled_out_again(store: Option<crate::store::StoreConfig>) -> PromotionGateManager {
    let gate = canary_on(store, &[]);
    gate.rollback("last week").unwrap();
    gate.promote(canary(50.0)).unwrap();
    gate
}

/// Every change `changes` holds, oldest first, checked to be of the `kinds` expected.
fn received_as(
    changes: &crate::Subscription,
    kinds: &[crate::ChangeKind],
) -> Vec<Arc<crate::StateChange>> {
    let changes: Vec<_> = std::iter::from_fn(|| changes.try_recv()).collect();
    let received: Vec<_> = changes.iter().map(|change| change.kind()).collect();
    assert_eq!(received, kinds, "{changes:#?}");
    changes
}

#[test]
fn another_process_rollback_and_new_rollout_at_the_same_share_are_announced_as_a_rollback() {
    let dir = crate::store::scratch::Scratch::new("followed-rollback-same-share");
    let store = || sqlite_store(&dir);
    let a = canary_on(store(), &[]);
    let b = gate_on(store());
    assert_eq!(b.environment(), canary(50.0));
    let changes = b.subscribe();
    // A rolls back and rolls out again at the same share before B syncs.
    a.rollback("bad deploy").unwrap();
    a.promote(canary(50.0)).unwrap();
    b.shared.sync_once();
    let changes = received_as(&changes, &[crate::ChangeKind::Rollback]);
    let change = &changes[0];
    assert_eq!((change.from, change.to), (canary(50.0), canary(50.0)));
    assert_eq!(change.origin, crate::ChangeOrigin::Store);
    let reason = change.rollback.as_ref().map(|event| event.reason.as_str());
    assert_eq!(reason, Some("bad deploy"));
}

#[test]
fn a_ramp_followed_as_a_pending_rollback_yields_is_no_rollback() {
    // The store holds an earlier rollback. B ramps the canary down; A's judge, before A
    // followed the ramp, rolls the canary back, and the rollback waits for A's sync thread.
    // It yields (a stage that already left is not rolled back again) and A follows the
    // store's whole history: the change is the ramp, not a rollback with the earlier event.
    let dir = crate::store::scratch::Scratch::new("followed-ramp-whole-history");
    let store = || sqlite_store(&dir);
    let a = rolled_out_again(store());
    let b = gate_on(store());
    assert_eq!(b.environment(), canary(50.0));
    b.promote(canary(25.0)).unwrap();
    let changes = a.subscribe();
    // Made at once; A's sync thread, woken by it, may follow the ramp before this one does.
    a.act_on_recording(&failing_in(a.stage(), canary(50.0)));
    a.shared.sync_once();
    assert_eq!(a.environment(), canary(25.0));
    let reasons: Vec<String> = a
        .rollback_history()
        .iter()
        .map(|event| event.reason.clone())
        .collect();
    assert_eq!(reasons, ["last week"], "the store's history, whole");
    let kinds = [crate::ChangeKind::Rollback, crate::ChangeKind::Promotion];
    let changes = received_as(&changes, &kinds);
    let followed = &changes[1];
    assert_eq!(
        (followed.from, followed.to),
        (Environment::Production, canary(25.0))
    );
    assert_eq!(followed.origin, crate::ChangeOrigin::Store);
    assert_eq!(followed.rollback, None, "{followed:?}");
}

/// B rolls the canary back and turns graduated "old" off (`kill_switch_first`: in the other
/// order, the rollback not the very next write); A's judge, before A followed either, rolls
/// the canary back too: announced as A made it. Its rollback is not written (the same
/// decision, made first by B), and A follows B's writes: a
/// flag turned off, the rollback announced already.
fn same_rollback_made_first(scratch: &str, kill_switch_first: bool) {
    let dir = crate::store::scratch::Scratch::new(scratch);
    let store = || sqlite_store(&dir);
    let a = canary_on(store(), &["old"]);
    let b = gate_on(store());
    if kill_switch_first {
        b.disable_feature("old").unwrap();
    }
    b.rollback("bad deploy").unwrap();
    if !kill_switch_first {
        b.disable_feature("old").unwrap();
    }
    let changes = a.subscribe();
    a.act_on_recording(&failing_in(a.stage(), canary(50.0)));
    // A's sync thread, woken by the rollback, may settle it first, alike.
    a.shared.sync_once();
    assert!(!a.is_feature_enabled("old"));
    assert_eq!(a.environment(), Environment::Production);
    let kinds = [crate::ChangeKind::Rollback, crate::ChangeKind::Flags];
    let changes = received_as(&changes, &kinds);
    assert_eq!(changes[0].origin, crate::ChangeOrigin::ThisGate);
    assert_eq!(changes[1].flags.disabled, ["old"]);
}

#[test]
fn the_same_rollback_made_first_by_another_process_is_not_announced_twice() {
    same_rollback_made_first("followed-same-rollback", false);
}

#[test]
fn another_process_rollback_in_a_store_that_went_back_is_announced_as_a_rollback() {
    // A knows a later version than the store will hold: the file is deleted, B writes its
    // state as the new store's first (version 1), then rolls back (version 2). A follows the
    // store that went back, its history read whole: B's rollback is new, announced with it.
    let dir = crate::store::scratch::Scratch::new("followed-rollback-went-back");
    let store = || sqlite_store(&dir);
    let a = canary_on(store(), &[]);
    for _ in 0..3 {
        a.enable_feature("dark_mode").unwrap();
        a.disable_feature("dark_mode").unwrap();
    }
    let b = gate_on(store());
    assert_eq!(b.environment(), canary(50.0));
    crate::store::scratch::remove_store(&dir.file("gate.db"));
    b.shared.sync_once();
    b.rollback("bad deploy").unwrap();
    let changes = a.subscribe();
    a.shared.sync_once();
    assert_eq!(a.environment(), Environment::Production);
    let changes = received_as(&changes, &[crate::ChangeKind::Rollback]);
    assert_eq!(changes[0].origin, crate::ChangeOrigin::Store);
    let reason = changes[0]
        .rollback
        .as_ref()
        .map(|event| event.reason.as_str());
    assert_eq!(reason, Some("bad deploy"));
}

/// A backup of the store, holding the earlier rollback A knew, put back after A ramped on
/// (and, when `reseeded`, after the store was emptied and A wrote its state there again, its
/// history then holding nothing): followed, it is a ramp back to the 50 % canary, and the
/// backup's old rollback, which no process made now, is not announced.
fn a_backup_put_back_is_no_rollback(name: &str, reseeded: bool) {
    let dir = crate::store::scratch::Scratch::new(name);
    let (path, saved) = (dir.file("gate.db"), dir.file("backup.db"));
    let a = rolled_out_again(sqlite_store(&dir));
    crate::store::scratch::backup(&path, &saved);
    a.promote(canary(25.0)).unwrap();
    if reseeded {
        crate::store::scratch::remove_store(&path);
        a.shared.sync_once();
    }
    crate::store::scratch::move_over(&saved, &path);
    let changes = a.subscribe();
    a.shared.sync_once();
    assert_eq!(a.environment(), canary(50.0));
    let changes = received_as(&changes, &[crate::ChangeKind::Promotion]);
    assert_eq!(changes[0].rollback, None, "{:?}", changes[0]);
}

#[test]
fn a_backup_put_back_with_a_rollback_the_gate_knew_is_no_rollback() {
    a_backup_put_back_is_no_rollback("followed-backup-known-rollback", false);
}

#[test]
fn a_backup_put_back_after_the_gate_reseeded_its_store_is_no_rollback() {
    a_backup_put_back_is_no_rollback("followed-backup-after-reseed", true);
}

#[test]
fn the_same_rollback_made_first_after_a_kill_switch_is_not_announced_twice() {
    same_rollback_made_first("followed-same-rollback-later", true);
}
