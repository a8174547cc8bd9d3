//! A gate's memory follows what is live, not its history: enabling 1,500 flags one by one and
//! disabling them again leaves a small live heap (it once kept every set ever published: 813 MB
//! for 4,000 flags, about 114 MB for 1,500, since it grew as their square);
//! and a gate that records holds its window's buffers, about 800 KiB, once.
//!
//! Alone in its test crate: the live heap is the whole process's, so no other test may run
//! meanwhile (the tests here take turns, `ALONE`).

mod common;

use promotion_gates::{Environment, PromotionConfig};

use common::alloc::live_bytes;
use common::gate;
use std::sync::{Mutex, PoisonError};

/// Flags enabled, then disabled, one by one.
const FLAGS: usize = 1_500;

/// The bound the live heap must stay under, in bytes: the peak is about 5.1 MB (the 127 slots'
/// sets of up to 1,500 flags at 20 B a flag, 3.8 MB, then the names and the history), so that
/// one more copy of every set's names with their text would exceed it (one more 16 B reference
/// a flag, 2.9 MB, would not).
const BOUND: usize = 8 * 1024 * 1024;

/// Held by each test while it measures: the live heap is the whole process's.
static ALONE: Mutex<()> = Mutex::new(());

/// A cohort's latency histogram, in bytes: 2560 buckets of 8 B.
const HISTOGRAM: usize = 2560 * 8;

#[test]
fn enabling_then_disabling_1500_flags_one_by_one_keeps_the_live_heap_small() {
    let _alone = ALONE.lock().unwrap_or_else(PoisonError::into_inner);
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

/// The window a gate judges over, made at its first evaluation and kept: 20 sets of both
/// cohorts' histograms (the ring's 12 readings, 8 more for the evaluation's scratch and the
/// settled reading), 800 KiB, and a few hundred bytes of counters (BENCHMARKS.md's figure).
#[test]
fn a_gates_window_is_twenty_sets_of_both_cohorts_histograms() {
    let _alone = ALONE.lock().unwrap_or_else(PoisonError::into_inner);
    let manager = gate(PromotionConfig {
        environment: Environment::Canary {
            traffic_percent: 10.0,
        },
        ..Default::default()
    });
    let before = live_bytes();
    drop(manager.health()); // an evaluation: it makes the window's buffers
    let window = live_bytes().saturating_sub(before);
    let histograms = 20 * 2 * HISTOGRAM;
    assert!(
        (histograms..histograms + 8 * 1024).contains(&window),
        "the window holds {window} bytes; its histograms {histograms}"
    );
    println!("live heap: a gate's window {window} bytes");
}
