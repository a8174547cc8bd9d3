//! What a config with the most flags a config takes ([`MAX_FLAGS`], 10,000) costs: validating
//! it, reading it from JSON, creating a gate from it and swapping it into a gate. Validation
//! once took 9 s for a 40,000-flag config (a quadratic duplicate check) and `swap_config` 17 s
//! (it validated twice); the budget is under a second.
//!
//! Each subject sits beside its baseline: validation beside hashing every flag name once into a
//! `HashSet` (the least a duplicate check can do), and JSON reading beside serde_json reading
//! the same document into an untyped `Value`.

#![allow(clippy::expect_used, reason = "a failed set-up is a failed bench")]

mod common;

use std::collections::HashSet;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use promotion_gates::{
    Environment, MAX_FLAGS, PromotionConfig, PromotionGateManager, SloAdmissionController,
    SloConfig,
};

use common::timed_group;

/// Flags in the config, the most a config takes: 7,500 release flags and 2,500 graduated ones.
const FLAGS: usize = MAX_FLAGS;

/// A valid config with [`FLAGS`] distinct flags of 20 to 24 bytes.
fn big_config() -> PromotionConfig {
    let name = |i: usize| format!("feature_flag_{i:06}_{}", i % 977);
    PromotionConfig {
        environment: Environment::Canary {
            traffic_percent: 10.0,
        },
        feature_flags: (0..FLAGS * 3 / 4).map(name).collect(),
        graduated_flags: (FLAGS * 3 / 4..FLAGS).map(name).collect(),
        gate: "checkout".into(),
        ..Default::default()
    }
}

fn slo() -> SloAdmissionController {
    SloAdmissionController::new(SloConfig::default()).expect("the default SLO is valid")
}

fn config_10k(c: &mut Criterion) {
    let config = big_config();
    let json = serde_json::to_string(&config).expect("a config serializes");
    let mut group = timed_group(c, "config_10k", Duration::from_secs(5));
    group.sample_size(10);
    group.bench_function("validate", |b| {
        b.iter(|| black_box(&config).validate().expect("valid"));
    });
    group.bench_function("baseline: hash every name once", |b| {
        b.iter(|| {
            let names = black_box(&config).feature_flags.iter();
            let set: HashSet<&str> = names
                .chain(&config.graduated_flags)
                .map(String::as_str)
                .collect();
            black_box(set.len())
        });
    });
    group.bench_function("from_json (read and validate)", |b| {
        b.iter(|| PromotionConfig::from_json(black_box(&json)).expect("valid"));
    });
    group.bench_function("baseline: serde_json to Value", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(&json)).expect("JSON"));
    });
    group.bench_function("create a gate", |b| {
        b.iter_with_large_drop(|| {
            PromotionGateManager::new(black_box(&config).clone(), slo()).expect("valid")
        });
    });
    // The gate of the swapped configs' name: a running gate keeps its name.
    let named = PromotionConfig {
        gate: config.gate.clone(),
        ..PromotionConfig::default()
    };
    let gate = PromotionGateManager::new(named, slo()).expect("valid");
    let mut other = config.clone();
    other.feature_flags.pop();
    let mut turn = false;
    group.bench_function("swap_config", |b| {
        b.iter_with_large_drop(|| {
            // Alternate two configs, so that every swap publishes a different flag set.
            turn = !turn;
            let next = if turn { &config } else { &other };
            gate.swap_config(black_box(next).clone()).expect("valid")
        });
    });
    group.finish();
}

criterion_group!(benches, config_10k);
criterion_main!(benches);
