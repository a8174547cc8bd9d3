//! Routing allocates nothing: `route_request` and `route_request_bytes`, and reading the
//! decision's flags, after the first call on a thread.
//!
//! A counting global allocator counts the allocations made by the measuring thread only (the
//! test harness runs other tests on other threads). No tracing subscriber is installed, so the
//! route path's `debug!` must cost no allocation either.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use promotion_gates::{Environment, PromotionConfig, PromotionGateManager, RoutingDecision};

use common::{canary, gate};

/// Ids routed per measurement.
const IDS: usize = 10_000;

/// The system allocator, counting what the threads that asked for it allocate.
struct CountingAllocator;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // `const` and without a destructor, so reading it never allocates.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note_allocation() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract holds as it does for `System`; counting touches no allocated memory.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged; `ptr` came from this allocator, that is from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from this allocator, that is from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// How many allocations (including reallocations) this thread makes while `f` runs.
fn allocations_during<T>(f: impl FnOnce() -> T) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|counting| counting.set(true));
    black_box(f());
    COUNTING.with(|counting| counting.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

/// Reads everything a host reads from a decision, without formatting it.
fn read(decision: RoutingDecision<'_>) -> usize {
    let features = decision.enabled_features;
    let mut sum = features.len()
        + usize::from(features.contains("new_api"))
        + usize::from(features.is_empty())
        + usize::from(decision.is_canary)
        + decision.cohort() as usize
        + decision.reason.bucket().get() as usize
        + decision.reason.threshold() as usize
        + decision.stage.get() as usize;
    for name in features.iter() {
        sum += name.len();
    }
    sum
}

fn route_texts(manager: &PromotionGateManager, ids: &[String]) -> usize {
    ids.iter().map(|id| read(manager.route_request(id))).sum()
}

fn route_bytes(manager: &PromotionGateManager, ids: &[Vec<u8>]) -> usize {
    ids.iter()
        .map(|id| read(manager.route_request_bytes(id)))
        .sum()
}

#[test]
fn the_counter_sees_an_allocation() {
    assert!(allocations_during(|| Vec::<u8>::with_capacity(16)) >= 1);
    assert_eq!(allocations_during(|| 40 + 2), 0);
}

#[test]
fn routing_allocates_nothing_after_warm_up() {
    let manager = gate(PromotionConfig {
        environment: canary(50.0),
        feature_flags: vec!["new_api".to_string(), "fast_path".to_string()],
        graduated_flags: vec!["stable_ui".to_string()],
        ..Default::default()
    });
    let texts: Vec<String> = (0..IDS).map(|i| format!("user-{i}-session")).collect();
    // Not UTF-8 (0xff), of every length from 1 to 200 bytes: one to four SHA-256 blocks.
    let bytes: Vec<Vec<u8>> = (0..IDS)
        .map(|i| {
            let mut id = vec![0xff; i % 200];
            id.extend_from_slice(&(i as u32).to_le_bytes()[..1]);
            id
        })
        .collect();
    route_texts(&manager, &texts[..10]);
    route_bytes(&manager, &bytes[..10]);

    // Each write publishes a new snapshot, which the next route picks up: measured too.
    for environment in [
        canary(50.0),
        canary(0.5),
        Environment::Staging,
        Environment::Production,
    ] {
        if manager.environment() != environment {
            let mut config = manager.config();
            config.environment = environment;
            manager.swap_config(config).expect("a valid config");
        }
        let by_text = allocations_during(|| route_texts(&manager, &texts));
        let by_bytes = allocations_during(|| route_bytes(&manager, &bytes));
        assert_eq!(
            (by_text, by_bytes),
            (0, 0),
            "allocations for {IDS} route_request and {IDS} route_request_bytes in {environment}"
        );
    }
}
