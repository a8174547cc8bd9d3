//! Every write a gate refuses leaves all it shows as it was: the config and stage, the change
//! count, the rollback history and counts, the judge's window and every routing decision (with
//! its flag set number). Each refusal is checked against a fresh reading of all of them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a broken expectation is a failed test"
)]

mod common;

use common::{canary, gate_for_moves};
use promotion_gates::{
    Environment, Error, FlagError, PromotionConfig, PromotionError, PromotionGateManager,
    RollbackError, RollbackEvent, SloConfig, StageId, telemetry::RollbackCount,
};
use std::time::Duration;

/// All a gate shows that a write could change.
#[derive(Debug, PartialEq)]
struct Shown {
    changes: u64,
    config: PromotionConfig,
    stage: StageId,
    slo: SloConfig,
    history: Vec<RollbackEvent>,
    counts: Vec<RollbackCount>,
    /// The judge's window: canary and stable requests, and canary errors.
    window: (u64, u64, f64),
    /// Cohort and flag set number of 200 request ids.
    routes: Vec<(bool, u32)>,
}

fn shown(gate: &PromotionGateManager) -> Shown {
    let health = gate.health();
    Shown {
        changes: gate.change_count(),
        config: gate.config(),
        stage: gate.stage(),
        slo: gate.slo_controller().config().clone(),
        history: gate.rollback_history(),
        counts: gate.rollback_counts(),
        window: (
            health.canary_requests,
            health.production_requests,
            health.canary_error_rate,
        ),
        routes: (0..200)
            .map(|i| {
                let decision = gate.route_request(&format!("user-{i}"));
                (decision.is_canary, decision.enabled_features.set_id())
            })
            .collect(),
    }
}

/// Checks that `write` is refused as `expected` says and that the gate shows what it showed.
fn refused<T: std::fmt::Debug>(
    gate: &PromotionGateManager,
    what: &str,
    write: impl FnOnce() -> Result<T, Error>,
    expected: impl FnOnce(&Error) -> bool,
) {
    let before = shown(gate);
    let error = write().expect_err(what);
    assert!(expected(&error), "{what}: refused as {error:?}");
    assert_eq!(shown(gate), before, "{what} changed the gate");
}

/// A canary at 10 % with a flag on, a history event and judged traffic in its window: 40
/// requests a cohort, 20 % of each slower than the latency target (so the canary's compliance,
/// 80 %, is below `slo_threshold`, and no rule blames it: stable is alike).
fn a_judged_canary() -> PromotionGateManager {
    let (gate, _clock) = gate_for_moves(PromotionConfig {
        environment: canary(10.0),
        feature_flags: vec!["dark_mode".into(), "old".into()],
        gate: "checkout".into(),
        ..Default::default()
    });
    gate.disable_feature("old").unwrap();
    for i in 0..40 {
        let latency = Duration::from_millis(if i % 5 == 0 { 600 } else { 20 });
        for is_canary in [false, true] {
            gate.record_for(gate.stage(), is_canary, true, latency);
        }
    }
    gate
}

#[test]
fn every_refused_promotion_changes_nothing() {
    let gate = a_judged_canary();
    refused(
        &gate,
        "the same environment",
        || gate.promote(canary(10.0)),
        |e| matches!(e, Error::Promotion(PromotionError::AlreadyThere(_))),
    );
    refused(
        &gate,
        "a share of the same buckets",
        || gate.promote(canary(10.000_000_01)),
        |e| matches!(e, Error::Promotion(PromotionError::AlreadyThere(_))),
    );
    refused(
        &gate,
        "a share that is no number",
        || gate.promote(canary(f64::NAN)),
        |e| matches!(e, Error::Config(_)),
    );
    refused(
        &gate,
        "a ramp on too few samples",
        || gate.promote(canary(50.0)),
        |e| matches!(e, Error::Promotion(PromotionError::InsufficientData { .. })),
    );
    for _ in 0..40 {
        for (is_canary, latency) in [(false, 600), (true, 600), (false, 20), (true, 20)] {
            for _ in 0..(if latency == 600 { 1 } else { 4 }) {
                gate.record_for(
                    gate.stage(),
                    is_canary,
                    true,
                    Duration::from_millis(latency),
                );
            }
        }
    }
    refused(
        &gate,
        "a ramp below the SLO threshold",
        || gate.promote(Environment::Staging),
        |e| matches!(e, Error::Promotion(PromotionError::SloNotMet { .. })),
    );
}

#[test]
fn every_refused_flag_rollback_or_swap_changes_nothing() {
    let gate = a_judged_canary();
    refused(
        &gate,
        "a flag name that is not one",
        || gate.enable_feature("no spaces"),
        |e| matches!(e, Error::Flag(FlagError::InvalidName { .. })),
    );
    refused(
        &gate,
        "a flag that is not on",
        || gate.disable_feature("never_on"),
        |e| matches!(e, Error::Flag(FlagError::NotEnabled(_))),
    );
    refused(
        &gate,
        "a rollback without a reason",
        || gate.rollback(""),
        |e| matches!(e, Error::Rollback(RollbackError::BlankReason { .. })),
    );
    refused(
        &gate,
        "a rollback reason over the limit",
        || gate.rollback("x".repeat(promotion_gates::MAX_REASON_BYTES + 1)),
        |e| matches!(e, Error::Rollback(RollbackError::ReasonTooLong { .. })),
    );
    let mut bad = gate.config();
    bad.environment = canary(150.0);
    refused(
        &gate,
        "a config out of range",
        || gate.swap_config(bad),
        |e| matches!(e, Error::Config(_)),
    );
    let mut renamed = gate.config();
    renamed.gate = "payments".into();
    refused(
        &gate,
        "a config renaming the gate",
        || gate.swap_config(renamed),
        |e| matches!(e, Error::Config(_)),
    );
    let mut stored = gate.config();
    stored.store = Some(promotion_gates::StoreConfig::Sqlite(
        promotion_gates::SqliteStoreConfig {
            path: "/tmp/never-opened.db".into(),
            sync_interval_ms: 250,
            busy_timeout_ms: 1000,
            fleet_judging: true,
        },
    ));
    refused(
        &gate,
        "a config adding a store",
        || gate.swap_config(stored),
        |e| matches!(e, Error::Config(_)),
    );
    refused(
        &gate,
        "an SLO out of range",
        || {
            gate.swap_slo(SloConfig {
                min_samples: 0,
                ..SloConfig::default()
            })
        },
        |e| matches!(e, Error::Config(_)),
    );
}

#[test]
fn a_rollback_in_production_changes_nothing() {
    let (gate, _clock) = gate_for_moves(PromotionConfig::default());
    refused(
        &gate,
        "a rollback in Production",
        || gate.rollback("nothing to roll back"),
        |e| matches!(e, Error::Rollback(RollbackError::NothingToRollBack)),
    );
}
