//! Outcome recording, by decision, beside a bare `hdrhistogram::Histogram::record`.
//!
//! The gate is a 50 % canary with automatic rollback off, so the judge never acts; but its
//! triggers are part of what is measured, as in production: a thread reads the clock every 1
//! to 64 records (paced to its rate, so about every quarter of the evaluation interval: every
//! 64 records at these rates) to see whether a full evaluation is due (one per second per gate,
//! run by the thread that claims it, so roughly one record per second pays for a whole
//! evaluation), and canary errors run the lock-free error screen after each of a thread's first
//! 32 canary errors of the stage, then every 16th, and after each error ending a run of 4 to 32
//! in a row (`screens_after` in `src/monitor.rs`).
//!
//! Latencies cycle through 1024 values from 200 µs to 2 s, so the histogram bucket varies. They
//! are read from one 4 KiB table by every subject, each converting them to its own unit, so
//! that input loads weigh the same on the subject and on its baseline.

#![allow(clippy::expect_used, reason = "a failed set-up is a failed bench")]

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use promotion_gates::Recorded;
use promotion_gates_ffi::{pgate_record, pgate_recorded};

use common::{CGate, Cycle, decisions, gate, latency_micros, recording_config, timed_group};

fn record(c: &mut Criterion) {
    let mut group = timed_group(c, "record", Duration::from_secs(2));
    let manager = gate(recording_config());
    let [canary, stable] = decisions(&manager);
    let micros = latency_micros();

    let cases = [
        ("stable_success", stable, true),
        ("stable_failure", stable, false),
        ("canary_success", canary, true),
        ("canary_failure", canary, false),
    ];
    for (name, decision, success) in cases {
        group.bench_function(BenchmarkId::new("record_outcome", name), |b| {
            let mut micros = Cycle::new(&micros);
            b.iter(|| {
                let latency = Duration::from_micros(u64::from(black_box(*micros.next())));
                let recorded =
                    manager.record_outcome(black_box(&decision), black_box(success), latency);
                debug_assert_eq!(recorded, Recorded::Counted);
                black_box(recorded)
            });
        });
    }

    // The C ABI's record, on a C gate of the same config, with a canary decision it routed.
    let c_gate = CGate::new(&recording_config());
    let c_canary = (0..)
        .map(|i| c_gate.route(format!("decision-{i}").as_bytes()))
        .find(|d| d.is_canary)
        .expect("a 50 % canary routes some ids to the canary");
    group.bench_function(BenchmarkId::new("pgate_record", "canary_success"), |b| {
        let mut micros = Cycle::new(&micros);
        let mut recorded = pgate_recorded::Late;
        b.iter(|| {
            let latency_ns = u64::from(black_box(*micros.next())) * 1_000;
            // SAFETY: the gate is live for the whole bench; the decision and `recorded` are
            // valid locals.
            let status =
                unsafe { pgate_record(c_gate.0, &c_canary, true, latency_ns, &mut recorded) };
            black_box((status, recorded))
        });
    });

    group.bench_function("hdrhistogram_record", |b| {
        let mut histogram =
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).expect("valid bounds");
        let mut micros = Cycle::new(&micros);
        b.iter(|| black_box(histogram.record(u64::from(black_box(*micros.next())))));
    });
    group.finish();
}

criterion_group!(benches, record);
criterion_main!(benches);
