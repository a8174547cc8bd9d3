//! `monitor_canary_health` over a full window, with the data of 1, 4 and 16 recording threads.
//!
//! Set-up, on a manual clock: for each of the window's 12 slots (a 300 s window in 30 s slots,
//! plus the two readings at its edges), `threads` threads record 2,000 outcomes each (both
//! cohorts, 1 % errors, latencies over 200 µs ..= 2 s), the clock moves one slot and the judge
//! runs. The threads are alive together when they first record, so each has its own
//! recorder; they then exit and their recorders persist with the gate. Measured: one health
//! check with the clock standing still (the newest reading is replaced, the window stays
//! full): every recorder read and merged, the window's difference taken, the judge run.

mod common;

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use promotion_gates::{ManualClock, PromotionGateManager};

use common::{Cycle, decisions, gate_with_clock, latencies, recording_config, timed_group};

/// Outcomes each thread records per slot.
const PER_SLOT: usize = 2_000;

/// Slots recorded and judged before measuring: the window's 10 and one on either side.
const SLOTS: usize = 12;

/// A gate whose window is full of the data of `threads` recorders.
fn full_window(threads: usize) -> PromotionGateManager {
    let clock = Arc::new(ManualClock::new());
    let gate = gate_with_clock(recording_config(), clock.clone());
    let slot = Duration::from_secs(gate.config().rollback_window_seconds) / 10;
    let latencies = latencies();
    let [canary, stable] = decisions(&gate);
    for _ in 0..SLOTS {
        let barrier = Barrier::new(threads);
        std::thread::scope(|scope| {
            for thread in 0..threads {
                let (gate, barrier, latencies) = (&gate, &barrier, &latencies);
                scope.spawn(move || {
                    let mut latencies = Cycle::new(latencies);
                    for i in 0..PER_SLOT {
                        let decision = if (i + thread) % 2 == 0 {
                            &canary
                        } else {
                            &stable
                        };
                        gate.record_outcome(decision, i % 100 != 7, *latencies.next());
                        if i == 0 {
                            // Every thread holds its recorder before any exits.
                            barrier.wait();
                        }
                    }
                });
            }
        });
        clock.advance(slot);
        black_box(gate.monitor_canary_health());
    }
    gate
}

fn health(c: &mut Criterion) {
    let mut group = timed_group(c, "health", Duration::from_secs(3));
    group.sample_size(50);
    for threads in [1, 4, 16] {
        let gate = full_window(threads);
        let health = gate.monitor_canary_health();
        let recorded = (SLOTS * PER_SLOT * threads) as u64;
        let windowed = health.evidence.canary.requests + health.evidence.stable.requests;
        assert!(
            windowed > 0 && windowed < recorded,
            "the window holds part of what was recorded: {windowed} of {recorded}"
        );
        group.bench_function(
            BenchmarkId::new("monitor_canary_health", format!("{threads}_threads")),
            |b| b.iter(|| black_box(gate.monitor_canary_health())),
        );
    }
    group.finish();
}

criterion_group!(benches, health);
criterion_main!(benches);
