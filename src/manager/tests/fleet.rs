//! Two processes judging one fleet: two gates on one SQLite file, fleet judging on. A rollback
//! the pooled evidence calls for in a stage is made whichever process judged it, also over the
//! other process's promotion that ended that stage.

use super::*;

/// A SQLite store in `dir`, fleet judging on, slow to sync (the tests sync by hand).
fn fleet_store(dir: &crate::store::scratch::Scratch) -> Option<crate::store::StoreConfig> {
    let mut store = sqlite_store(dir);
    if let Some(crate::store::StoreConfig::Sqlite(sqlite)) = &mut store {
        sqlite.fleet_judging = true;
    }
    store
}

/// Process A, a healthy 50 % canary with release flag "new" ready for promotion, and process
/// B, opened on its stored state; and B's stage of that canary, which B's judge then judges.
fn two_processes(
    store: Option<crate::store::StoreConfig>,
) -> (Arc<PromotionGateManager>, PromotionGateManager, StageId) {
    let (a, _) = ready_gate(store.clone(), &[]);
    let b = gate_on(store);
    assert_eq!(b.environment(), canary(50.0));
    let judged = b.stage();
    (a, b, judged)
}

/// Checks that `gate` shows the canary rolled back over its promotion: Production, "new"
/// neither graduated nor on, one automatic rollback of the 50 % canary.
fn rolled_back(gate: &PromotionGateManager, who: &str) {
    assert_eq!(gate.environment(), Environment::Production, "{who}");
    assert!(!gate.is_feature_enabled("new"), "{who}");
    let config = gate.config();
    assert!(config.graduated_flags.is_empty(), "{who}: {config:?}");
    assert!(config.feature_flags.is_empty(), "{who}: {config:?}");
    let history = gate.rollback_history();
    assert_eq!(history.len(), 1, "{who}: {history:?}");
    assert_eq!(history[0].trigger, RollbackTrigger::Automatic, "{who}");
    assert_eq!(history[0].environment, canary(50.0), "{who}");
}

/// A promotes the canary; B's judge, on the same pooled evidence a moment later, condemns it,
/// after B followed the promotion (`followed`) or before; then B syncs, and A. Checks that the
/// store and both gates hold the one rollback, made over the promotion.
fn promoted_by_a_condemned_by_b(scratch: &str, followed: bool) {
    let dir = crate::store::scratch::Scratch::new(scratch);
    let store = || fleet_store(&dir);
    let (a, b, judged) = two_processes(store());
    a.promote(Environment::Production).unwrap();
    if followed {
        b.shared.sync_once();
        assert_eq!(
            b.config().graduated_flags,
            ["new"],
            "B followed the promotion"
        );
    }
    b.act_on_recording(&failing_in(judged, canary(50.0)));
    // Made at once in B (over the promotion it followed, or in the stage it still showed);
    // the rollback waits for B's sync thread.
    assert_eq!(b.environment(), Environment::Production);
    b.shared.sync_once();
    let changes = a.subscribe();
    a.shared.sync_once();
    // A follows B's rollback over its promotion, Production to Production: a rollback.
    announced_over_the_promotion(&changes, "A");
    rolled_back(&b, "B");
    rolled_back(&a, "A");
    rolled_back(&gate_on(store()), "the store");
    assert_eq!(a.stage(), b.stage());
}

#[test]
fn a_rollback_judged_before_following_another_process_promotion_is_written_over_it() {
    promoted_by_a_condemned_by_b("fleet-verdict-before-sync", false);
}

#[test]
fn a_rollback_judged_after_following_another_process_promotion_is_made_over_it() {
    promoted_by_a_condemned_by_b("fleet-verdict-after-sync", true);
}

#[test]
fn a_verdict_of_the_stage_before_a_promotion_is_dropped_once_the_next_rollout_started() {
    // The next rollout runs on, or was promoted too; B syncs after each of A's writes, after
    // them all, or only once its verdict is made.
    for promoted in [false, true] {
        for syncs in ["each", "all", "none"] {
            let case = format!("promoted: {promoted}, syncs: {syncs}");
            let dir = crate::store::scratch::Scratch::new("fleet-verdict-next-rollout");
            let store = || fleet_store(&dir);
            let (a, b, judged) = two_processes(store());
            a.promote(Environment::Production).unwrap();
            if syncs == "each" {
                b.shared.sync_once();
            }
            a.promote(canary(50.0)).unwrap();
            if promoted {
                if syncs == "each" {
                    b.shared.sync_once();
                }
                feed_healthy(&a, PROMOTABLE);
                a.promote(Environment::Production).unwrap();
            }
            let next = if promoted {
                Environment::Production
            } else {
                canary(50.0)
            };
            if syncs != "none" {
                b.shared.sync_once();
                assert_eq!(b.environment(), next, "{case}");
            }
            b.act_on_recording(&failing_in(judged, canary(50.0)));
            b.shared.sync_once();
            a.shared.sync_once();
            // The next rollout is not the release judged: it is left as A made it, everywhere.
            for (who, gate) in [("A", &*a), ("B", &b), ("the store", &gate_on(store()))] {
                assert_eq!(gate.environment(), next, "{case}: {who}");
                assert_eq!(gate.config().graduated_flags, ["new"], "{case}: {who}");
                // B's own rollback ("none": made at once, then dropped) is not the store's.
                let history = gate.rollback_history();
                assert!(history.is_empty(), "{case}: {who}: {history:?}");
            }
        }
    }
}

#[test]
fn a_verdict_of_the_stage_before_another_process_ramp_is_dropped_whenever_it_followed() {
    // A ramps the canary to 75 % (a stage with a judge of its own); B's verdict of the 50 %
    // stage comes after B followed the ramp, or before: it ends the same way both times.
    for followed in [false, true] {
        let dir = crate::store::scratch::Scratch::new("fleet-verdict-before-ramp");
        let store = || fleet_store(&dir);
        let (a, b, judged) = two_processes(store());
        a.promote(canary(75.0)).unwrap();
        if followed {
            b.shared.sync_once();
            assert_eq!(b.environment(), canary(75.0), "B followed the ramp");
        }
        b.act_on_recording(&failing_in(judged, canary(50.0)));
        b.shared.sync_once();
        a.shared.sync_once();
        for (who, gate) in [("A", &*a), ("B", &b), ("the store", &gate_on(store()))] {
            let case = format!("followed: {followed}: {who}");
            assert_eq!(gate.environment(), canary(75.0), "{case}");
            assert_eq!(gate.config().feature_flags, ["new"], "{case}");
            // B's own rollback (not followed: made at once, then dropped) is not the store's.
            let history = gate.rollback_history();
            assert!(history.is_empty(), "{case}: {history:?}");
        }
    }
}

#[test]
fn a_write_that_follows_another_process_promotion_does_not_undo_it() {
    // A promotes the canary, then turns graduated "old" off (a kill switch). B, still showing
    // the canary, turns graduated "other" off: its write loses the race, B follows A's writes
    // and makes it on top; a failing verdict of the canary is left meanwhile (handed to B's
    // sync thread while B's write holds the writer lock).
    let dir = crate::store::scratch::Scratch::new("fleet-write-follows-promotion");
    let store = || fleet_store(&dir);
    let (a, _) = ready_gate(store(), &["old", "other"]);
    let b = Arc::new(gate_on(store()));
    assert_eq!(b.environment(), canary(50.0));
    a.promote(Environment::Production).unwrap();
    a.disable_feature("old").unwrap();
    // Not "the write is undone": A's promotion is not B's write, and B's write is made.
    write_as_a_verdict_is_left(&b, |b| b.disable_feature("other")).unwrap();
    b.shared.sync_once();
    a.shared.sync_once();
    for (who, gate) in [("A", &*a), ("B", &*b), ("the store", &gate_on(store()))] {
        let config = gate.config();
        assert!(!gate.is_feature_enabled("old"), "{who}: {config:?}");
        assert!(!gate.is_feature_enabled("other"), "{who}: {config:?}");
    }
}

#[test]
fn a_gated_ramp_up_decided_again_over_another_process_ramp_to_0_percent_is_not_made() {
    // B ramps the canary down to 0 % (ungated); A, which has not followed it, ramps up from
    // its 50 %: judged and allowed on its own view, it loses the store's compare-and-swap and
    // is decided again from 0 %, where a ramp up is a new rollout, not gated: not made.
    let dir = crate::store::scratch::Scratch::new("fleet-ramp-up-over-zero");
    let store = || fleet_store(&dir);
    let (a, b, _) = two_processes(store());
    b.promote(canary(0.0)).unwrap();
    let err = a.promote(canary(75.0)).unwrap_err();
    assert!(err.to_string().contains("was not made"), "{err}");
    for (who, gate) in [("A", &*a), ("B", &b), ("the store", &gate_on(store()))] {
        assert_eq!(gate.environment(), canary(0.0), "{who}");
    }
}
