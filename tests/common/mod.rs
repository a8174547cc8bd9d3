//! Set-up shared by the integration tests: gates built with the default SLO policy.

#![allow(dead_code, reason = "each test crate uses its own part of this module")]
#![allow(clippy::expect_used, reason = "a failed set-up is a failed test")]

use promotion_gates::{
    Environment, PromotionConfig, PromotionGateManager, SloAdmissionController, SloConfig,
};

/// A gate with `config` and the default SLO policy; panics on an invalid config.
pub fn gate(config: PromotionConfig) -> PromotionGateManager {
    let slo = SloAdmissionController::new(SloConfig::default()).expect("the default SLO is valid");
    PromotionGateManager::new(config, slo).expect("the test's config is valid")
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
