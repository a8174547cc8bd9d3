//! Routing and recording next to other threads.
//!
//! - `writes`: route cost on one thread while another publishes a write every millisecond (a
//!   flag toggle, a whole config swap, or a rollback and a new rollout by turns), beside the
//!   same loop without the writer. The writer
//!   runs for the whole benchmark, warm-up included. Each write moves the generation, so the
//!   reader refreshes its cached route table once per write.
//! - `scaling`: route and record throughput on 1 and on 2 threads. Each thread does `iters`
//!   operations; the time is the wall time from the first thread's start to the last one's
//!   finish (threads are spawned and warmed before, joined after), and the throughput counts
//!   every thread's operations, so the ratio of the two rates is the speed-up. Beside them,
//!   the same for what each operation is bound by, sharing nothing at all: bare `compress256`
//!   (one block per operation, as routing a 36-byte id) and a bare `hdrhistogram` record on a
//!   histogram per thread. Their speed-up is what the two cores give; the subjects' is judged
//!   against it.

#![allow(clippy::expect_used, reason = "a failed set-up is a failed bench")]

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use promotion_gates::{Environment, PromotionConfig, PromotionGateManager};

use common::{
    Cycle, canary_config, compress_blocks, decisions, gate, ids, latency_micros, on_threads,
    promote_or_roll_back, record_bare, recording_config, route_blocks, salt_midstate, timed_group,
    toggle_flag,
};

/// A write the writer thread publishes; `n` counts the writes so far.
type Write = fn(&PromotionGateManager, &[PromotionConfig; 2], u64);

fn swap_config(gate: &PromotionGateManager, configs: &[PromotionConfig; 2], n: u64) {
    let result = gate.swap_config(configs[(n % 2) as usize].clone());
    assert!(result.is_ok(), "{result:?}");
}

/// Runs `measure` while another thread publishes `write` every millisecond (from before the
/// warm-up to after the last sample, as a control plane would), or with no other thread.
fn beside_writer(gate: &PromotionGateManager, write: Option<Write>, measure: impl FnOnce()) {
    let stop = AtomicBool::new(false);
    let mut ramped = canary_config();
    ramped.environment = Environment::Canary {
        traffic_percent: 20.0,
    };
    let configs = [canary_config(), ramped];
    std::thread::scope(|scope| {
        if let Some(write) = write {
            let (stop, configs) = (&stop, &configs);
            scope.spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    write(gate, configs, n);
                    n += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
        }
        measure();
        stop.store(true, Ordering::Relaxed);
    });
}

fn writes(c: &mut Criterion) {
    let mut group = timed_group(c, "writes", Duration::from_secs(3));
    let gate = gate(canary_config());
    let ids = ids(36);
    let cases: [(&str, Option<Write>); 4] = [
        ("no_writer", None),
        ("flag_toggle_every_1ms", Some(|g, _, n| toggle_flag(g, n))),
        ("config_swap_every_1ms", Some(swap_config)),
        (
            "rollback_or_promote_every_1ms",
            Some(|g, _, n| promote_or_roll_back(g, n)),
        ),
    ];
    for (name, write) in cases {
        beside_writer(&gate, write, || {
            group.bench_function(BenchmarkId::new("route_request_36", name), |b| {
                let mut ids = Cycle::new(&ids);
                b.iter(|| {
                    black_box(&gate.route_request(black_box(ids.next())));
                });
            });
        });
    }
    group.finish();
}

fn scaling(c: &mut Criterion) {
    let mut group = timed_group(c, "scaling", Duration::from_secs(3));
    let router = gate(canary_config());
    let ids = ids(36);
    let recorder = gate(recording_config());
    let [canary, _] = decisions(&recorder);
    let micros = latency_micros();
    // The baselines' own scaling: what the two cores give to the work each operation is bound
    // by, with nothing shared at all (SHA-256 for routing, a histogram bump for recording).
    let midstate = salt_midstate(canary_config().effective_salt().as_bytes());
    let blocks: Vec<[u8; 64]> = ids
        .iter()
        .map(|id| route_blocks(id.as_bytes())[0])
        .collect();
    for threads in [1, 2] {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(BenchmarkId::new("route_request_36", threads), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, |n| {
                    let mut ids = Cycle::new(&ids);
                    for _ in 0..n {
                        black_box(&router.route_request(black_box(ids.next())));
                    }
                })
            });
        });
        group.bench_function(BenchmarkId::new("record_outcome", threads), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, |n| {
                    let mut micros = Cycle::new(&micros);
                    for _ in 0..n {
                        black_box(recorder.record_outcome(
                            black_box(&canary),
                            true,
                            Duration::from_micros(u64::from(black_box(*micros.next()))),
                        ));
                    }
                })
            });
        });
        group.bench_function(BenchmarkId::new("compress256_x1", threads), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, |n| compress_blocks(midstate, &blocks, n))
            });
        });
        group.bench_function(BenchmarkId::new("hdrhistogram_record", threads), |b| {
            b.iter_custom(|iters| on_threads(threads, iters, |n| record_bare(&micros, n)));
        });
    }
    group.finish();
}

criterion_group!(benches, writes, scaling);
criterion_main!(benches);
