//! A gate's memory follows what is live, not its history: enabling 4,000 flags one by one and
//! disabling them again leaves a small live heap (it once kept every set ever published, 813 MB).
//!
//! Alone in its test crate: the live heap is the whole process's, so no other test may run
//! meanwhile.

mod common;

use promotion_gates::{Environment, PromotionConfig};

use common::alloc::live_bytes;
use common::gate;

/// Flags enabled, then disabled, one by one.
const FLAGS: usize = 4_000;

/// The bound the live heap must stay under, in bytes.
const BOUND: usize = 16 * 1024 * 1024;

#[test]
fn enabling_then_disabling_4000_flags_one_by_one_keeps_the_live_heap_small() {
    let before = live_bytes();
    let manager = gate(PromotionConfig {
        // Staging: the new version's set is every flag, so each write makes a new set.
        environment: Environment::Staging,
        ..Default::default()
    });
    let new_gate = live_bytes().saturating_sub(before);
    let names: Vec<String> = (0..FLAGS).map(|i| format!("feature_flag_{i:05}")).collect();
    let mut peak = 0;
    for name in &names {
        manager.enable_feature(name).expect("a valid flag");
        peak = peak.max(live_bytes().saturating_sub(before));
    }
    assert_eq!(manager.route_request("u").enabled_features.len(), FLAGS);
    for name in &names {
        manager.disable_feature(name).expect("an enabled flag");
        peak = peak.max(live_bytes().saturating_sub(before));
    }
    let after = live_bytes().saturating_sub(before);
    // The counter moved at all: a global allocator that was not this file's would leave every
    // figure at 0, under any bound.
    assert!(
        new_gate > 0 && peak > new_gate,
        "live heap: new gate {new_gate} bytes, peak {peak} bytes"
    );
    assert!(manager.route_request("u").enabled_features.is_empty());
    assert!(
        peak < BOUND && after < BOUND,
        "live heap: peak {peak} bytes, after {after} bytes; bound {BOUND}"
    );
    // What is left is the names (kept once each), the history and the few held sets: far below
    // even a single copy of every set's names per write.
    println!("live heap: new gate {new_gate} bytes, peak {peak} bytes, after {after} bytes");
}
