//! Set-up shared by the integration tests: gates built with the default SLO policy, and the
//! counting allocator ([`alloc`]) that the allocation tests measure with.

#![allow(dead_code, reason = "each test crate uses its own part of this module")]
#![allow(clippy::expect_used, reason = "a failed set-up is a failed test")]

pub mod alloc;
pub mod fleet;
pub mod log_lines;
pub mod scratch;
pub mod stored;

use std::sync::Arc;

use promotion_gates::{
    Environment, ManualClock, PromotionConfig, PromotionGateManager, SloAdmissionController,
    SloConfig,
};

/// A gate with `config` and the default SLO policy; panics on an invalid config.
pub fn gate(config: PromotionConfig) -> PromotionGateManager {
    let slo = SloAdmissionController::new(SloConfig::default()).expect("the default SLO is valid");
    PromotionGateManager::new(config, slo).expect("the test's config is valid")
}

/// A gate with `config` and the default SLO policy that reads a manual clock, at zero; panics
/// on an invalid config.
pub fn gate_with_clock(config: PromotionConfig) -> (PromotionGateManager, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let slo = SloAdmissionController::new(SloConfig::default()).expect("the default SLO is valid");
    let gate = PromotionGateManager::with_clock(config, slo, clock.clone())
        .expect("the test's config is valid");
    (gate, clock)
}

/// A gate on a manual clock, at zero, whose promotions need no positive evidence
/// (`promotion_evidence` off) and no warm-up: for tests of the release state machine, not of
/// the judge.
pub fn gate_for_moves(config: PromotionConfig) -> (PromotionGateManager, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let slo = SloConfig {
        promotion_evidence: false,
        // Judged from the first request: a gated move needs min_samples latencies after the
        // warm-up, and these tests move the release within seconds.
        warm_up: std::time::Duration::ZERO,
        ..Default::default()
    };
    let slo = SloAdmissionController::new(slo).expect("the SLO is valid");
    let gate = PromotionGateManager::with_clock(config, slo, clock.clone())
        .expect("the test's config is valid");
    (gate, clock)
}

/// `Environment::Canary` at `traffic_percent`.
pub fn canary(traffic_percent: f64) -> Environment {
    Environment::Canary { traffic_percent }
}

/// A canary gate at `traffic_percent` that routes with `salt`.
pub fn canary_gate(salt: &str, traffic_percent: f64) -> PromotionGateManager {
    gate(PromotionConfig {
        environment: canary(traffic_percent),
        salt: Some(salt.to_string()),
        ..Default::default()
    })
}
