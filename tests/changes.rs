//! Change notifications through the public API: every kind of write becomes one numbered
//! change, a refused write none; a subscriber on another thread receives the judge's automatic
//! rollback with its evidence.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a broken expectation is a failed test"
)]

mod common;

use common::stored::fail_the_canary;
use common::{canary, gate, gate_for_moves};
use promotion_gates::{
    ChangeKind, ChangeOrigin, Environment, PromotionConfig, RollbackTrigger, Rule,
};
use std::time::Duration;

#[test]
fn every_kind_of_write_is_one_change_and_a_refused_write_none() {
    let (gate, _clock) = gate_for_moves(PromotionConfig::default());
    assert_eq!(gate.change_count(), 0);
    gate.promote(canary(5.0)).unwrap();
    gate.enable_feature("dark_mode").unwrap();
    gate.enable_feature("dark_mode").unwrap(); // already on: no change
    gate.disable_feature("dark_mode").unwrap();
    assert!(gate.disable_feature("dark_mode").is_err()); // refused: no change
    let mut next = gate.config();
    next.slo_threshold = 0.9;
    gate.swap_config(next).unwrap();
    gate.rollback("drill").unwrap();
    assert!(gate.rollback("again").is_err()); // nothing to roll back: no change

    let changes = gate.changes_since(0);
    let kinds: Vec<_> = changes.iter().map(|c| c.kind()).collect();
    assert_eq!(
        kinds,
        [
            ChangeKind::Promotion,
            ChangeKind::Flags,
            ChangeKind::Flags,
            ChangeKind::Config,
            ChangeKind::Rollback
        ]
    );
    let sequences: Vec<_> = changes.iter().map(|c| c.sequence).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5]);
    assert_eq!(gate.change_count(), 5);
    assert_eq!(
        (changes[0].from, changes[0].to),
        (Environment::Production, canary(5.0))
    );
    assert_eq!(changes[1].flags.enabled, ["dark_mode"]);
    assert_eq!(changes[2].flags.disabled, ["dark_mode"]);
    let rollback = changes[4].rollback.as_ref().expect("the rollback's event");
    assert_eq!(
        (rollback.trigger, rollback.reason.as_str()),
        (RollbackTrigger::Manual, "drill")
    );
    assert_eq!(changes[4].to, Environment::Production);
    assert!(changes[4].stage > changes[3].stage);
    assert!(changes.iter().all(|c| c.origin == ChangeOrigin::ThisGate));
}

#[test]
fn a_subscriber_receives_the_judges_rollback_with_its_evidence() {
    let gate = gate(PromotionConfig {
        environment: canary(50.0),
        feature_flags: vec!["checkout_v2".into()],
        ..Default::default()
    });
    let subscription = gate.subscribe();
    let watcher = std::thread::spawn(move || {
        let change = subscription.recv_timeout(Duration::from_secs(60));
        (change, subscription.missed())
    });
    fail_the_canary(&gate);
    let (change, missed) = watcher.join().unwrap();
    let change = change.expect("the rollback reached the subscriber");
    assert_eq!(missed, 0);
    assert_eq!(change.kind(), ChangeKind::Rollback);
    assert_eq!(change.from, canary(50.0));
    assert_eq!(change.flags.disabled, ["checkout_v2"]);
    let event = change.rollback.as_ref().unwrap();
    assert_eq!(event.trigger, RollbackTrigger::Automatic);
    let evidence = event
        .evidence
        .as_ref()
        .expect("an automatic rollback's evidence");
    assert!(evidence.fired().any(|f| f.rule != Rule::NoData));
    assert_eq!(gate.changes_since(0).len(), 1);
}
