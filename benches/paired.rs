//! Paired ratios: each subject and its baseline run in alternating short rounds, and the
//! figure reported is the median over rounds of the per-round difference or ratio.
//!
//! Criterion measures one function after another, seconds apart. On a shared host whose speed
//! moves in phases of seconds (see BENCHMARKS.md, "Variation"), two such medians can differ by
//! ±10 ns for reasons that have nothing to do with the code. Here a subject and its baseline
//! are timed within the same few milliseconds, round after round (their order alternating), so
//! a phase slows both alike and cancels out of the pair. Use it for the small differences the
//! budgets are about: the C ABI's cost over a Rust call, record over a bare histogram record,
//! routing with and without a writer, routing with and without overrides, and the speed-up
//! of 2 threads over 1 (each beside the speed-up of what the operation is bound by: bare
//! SHA-256 compressions, bare histogram records).
//!
//! The cold record pairs time one record at a time, each after a walk of a buffer larger than
//! the L2 cache has evicted the record's lines, as the other work of a busy proxy does between
//! two of its requests: what a record costs when its cache lines must come from L3.
//!
//! ```sh
//! cargo bench --bench paired            # ~30 s; prints markdown tables
//! cargo bench --bench paired -- --quick # fewer rounds
//! ```
//!
//! Under `cargo test --all-targets` (criterion's `--bench` flag absent) it runs one tiny round
//! of each pair, to keep the code working.

#![allow(clippy::expect_used, reason = "a failed set-up is a failed bench")]

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use promotion_gates::{
    Overrides, PromotionConfig, PromotionGateManager, RoutingDecision, SqliteStoreConfig,
    StoreConfig,
};
use promotion_gates_ffi::{
    pgate_decision, pgate_log_level, pgate_record, pgate_recorded, pgate_route,
    pgate_set_log_callback, pgate_status,
};
use sha2::{Digest, Sha256};

use common::{
    CGate, Cycle, Subject, alternate, canary_config, compress_blocks, decisions, gate, ids,
    latency_micros, median, on_threads, paired, per_op, promote_or_roll_back, record_bare,
    recording_config, salt_midstate, toggle_flag,
};

/// Records `n` pairs of outcomes on `gate`, a stable one then a canary one, each `success`,
/// at the latencies of `micros` in turn.
fn record_both<'a>(
    gate: &'a PromotionGateManager,
    success: bool,
    micros: &'a [u32],
) -> impl Fn(u64) + 'a {
    let [canary, stable] = decisions(gate);
    move |n: u64| {
        let mut micros = Cycle::new(micros);
        for _ in 0..n {
            let latency = Duration::from_micros(u64::from(black_box(*micros.next())));
            black_box(gate.record_outcome(black_box(&stable), success, latency));
            black_box(gate.record_outcome(black_box(&canary), success, latency));
        }
    }
}

/// Bytes walked between two cold records: four times the 2 MiB L2 of this host's cores (and 16
/// times the 512 KiB of the host before it), so that no line of the record's survives in L1 or
/// L2.
const EVICTION_BYTES: usize = 8 << 20;

/// A buffer whose walk evicts the caches' lines: its pages written (not the shared zero page
/// of a fresh allocation), read one byte per 64-byte line.
struct Eviction(Vec<u8>);

impl Eviction {
    fn new() -> Self {
        Self(vec![1; EVICTION_BYTES])
    }

    /// Reads one byte of each line of the buffer.
    fn walk(&self) {
        let sum = self
            .0
            .iter()
            .step_by(64)
            .fold(0u8, |sum, byte| sum.wrapping_add(*byte));
        black_box(sum);
    }
}

/// Mean nanoseconds of `op` over `ops` calls, each timed alone right after a walk of
/// `eviction` (the time of the walk left out; that of one clock read is in).
fn cold_per_op(eviction: &Eviction, ops: u64, op: &mut dyn FnMut()) -> f64 {
    let mut timed = Duration::ZERO;
    for _ in 0..ops {
        eviction.walk();
        let start = Instant::now();
        op();
        timed += start.elapsed();
    }
    timed.as_nanos() as f64 / ops as f64
}

/// [`paired`] for cold operations: `a` and `b` timed by [`cold_per_op`] in `rounds` alternating
/// rounds of `ops` calls each, after one untimed round of each; the same four medians.
fn paired_cold(
    rounds: usize,
    ops: u64,
    eviction: &Eviction,
    a: &mut dyn FnMut(),
    b: &mut dyn FnMut(),
) -> [f64; 4] {
    cold_per_op(eviction, ops, a);
    cold_per_op(eviction, ops, b);
    let mut subjects = (a, b);
    let samples = alternate(
        rounds,
        &mut subjects,
        |(a, _)| cold_per_op(eviction, ops, *a),
        |(_, b)| cold_per_op(eviction, ops, *b),
    );
    [
        median(samples.iter().map(|p| p.0).collect()),
        median(samples.iter().map(|p| p.1).collect()),
        median(samples.iter().map(|p| p.0 - p.1).collect()),
        median(samples.iter().map(|p| p.0 / p.1).collect()),
    ]
}

/// `route_request_bytes` behind a call that is never inlined, as a C host's call is.
#[inline(never)]
fn routed_by_call<'a>(gate: &'a PromotionGateManager, id: &[u8]) -> RoutingDecision<'a> {
    gate.route_request_bytes(id)
}

/// A C host's log callback that drops every line.
unsafe extern "C" fn drop_line(
    _: *mut std::ffi::c_void,
    _: pgate_log_level,
    _: *const std::ffi::c_char,
    _: *const std::ffi::c_char,
    _: usize,
) {
}

/// Sets [`drop_line`] as the log callback up to `max_level`, or none.
fn set_log_callback(max_level: Option<u32>) {
    let callback = max_level.map(|_| drop_line as _);
    // SAFETY: drop_line is callable from any thread with any user_data; err may be NULL.
    let status = unsafe {
        pgate_set_log_callback(
            callback,
            std::ptr::null_mut(),
            max_level.unwrap_or(1),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(status, pgate_status::Ok, "set the log callback");
}

/// Routes `ids` in turn with `route_request_bytes`, inlined into the loop as a Rust host has it.
fn routes_inlined<'a>(
    manager: &'a PromotionGateManager,
    ids: &'a [String],
) -> impl Fn(u64) + Sync + 'a {
    move |n| {
        let mut ids = Cycle::new(ids);
        for _ in 0..n {
            black_box(&manager.route_request_bytes(black_box(ids.next().as_bytes())));
        }
    }
}

/// The speed-up of 2 threads over 1 for `op(n)` (which runs `n` operations on the calling
/// thread): in each round, the same `ops` per thread on 1 thread, then on 2; the median over
/// rounds of `2 * t1 / t2`.
fn speedup(rounds: usize, ops: u64, op: &(dyn Fn(u64) + Sync)) -> f64 {
    median(
        (0..rounds)
            .map(|_| {
                let one = on_threads(1, ops, op).as_secs_f64();
                let two = on_threads(2, ops, op).as_secs_f64();
                2.0 * one / two
            })
            .collect(),
    )
}

/// A write the writer thread publishes; `n` counts the writes so far.
type Write = fn(&PromotionGateManager, u64);

/// Routing beside a writer: in alternate rounds a writer thread publishes `write` every
/// millisecond or sleeps. Returns the median per-round ratio of the time per route with the
/// writer to the time without, and the medians of both.
fn beside_writer(
    rounds: usize,
    ops: u64,
    manager: &PromotionGateManager,
    ids: &[String],
    write: Write,
) -> [f64; 3] {
    let writing = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let route = routes_inlined(manager, ids);
    let mut time = |on: bool| {
        writing.store(on, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(2)); // the writer has seen the switch
        per_op(&mut &route, ops)
    };
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut n = 0u64;
            while !done.load(Ordering::Relaxed) {
                if writing.load(Ordering::Relaxed) {
                    write(manager, n);
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        time(false);
        let pairs = alternate(rounds, &mut time, |time| time(true), |time| time(false));
        done.store(true, Ordering::Relaxed);
        [
            median(pairs.iter().map(|p| p.0).collect()),
            median(pairs.iter().map(|p| p.1).collect()),
            median(pairs.iter().map(|p| p.0 / p.1).collect()),
        ]
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench");
    let (rounds, ops, cold_ops) = match (benching, args.iter().any(|a| a == "--quick")) {
        (false, _) => (1, 100u64, 2u64),
        (true, true) => (11, 50_000, 100),
        (true, false) => (41, 100_000, 400),
    };

    let manager = gate(canary_config());
    let c_gate = CGate::new(&canary_config());
    let midstate = salt_midstate(canary_config().effective_salt().as_bytes());
    let salt_block =
        promotion_gates::bucket::salt_block(canary_config().effective_salt().as_bytes());
    let mut rows: Vec<(String, [f64; 4])> = Vec::new();

    for len in [16, 36, 128] {
        let ids = ids(len);
        let messages: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| [&salt_block[..], id.as_bytes()].concat())
            .collect();
        let mut out: pgate_decision = c_gate.route(ids[0].as_bytes());
        let route = routes_inlined(&manager, &ids);
        let mut inlined: Subject<'_> = Box::new(&route);
        let mut called: Subject<'_> = Box::new(|n| {
            let mut ids = Cycle::new(&ids);
            for _ in 0..n {
                black_box(&routed_by_call(&manager, black_box(ids.next().as_bytes())));
            }
        });
        let mut digest: Subject<'_> = Box::new(|n| {
            let mut messages = Cycle::new(&messages);
            for _ in 0..n {
                black_box(&Sha256::digest(black_box(messages.next())));
            }
        });
        let mut c_abi: Subject<'_> = Box::new(|n| {
            let mut ids = Cycle::new(&ids);
            for _ in 0..n {
                let id = black_box(ids.next());
                // SAFETY: the gate is live for the whole bench; `id` is `id.len()` readable
                // bytes; `out` is valid for a write.
                let status = unsafe { pgate_route(c_gate.0, id.as_ptr(), id.len(), &mut out) };
                black_box((status, &out));
            }
        });
        rows.push((
            format!("route_request_bytes (inlined) vs Sha256::digest, {len} B"),
            paired(rounds, ops, &mut inlined, &mut digest),
        ));
        rows.push((
            format!("pgate_route vs route_request_bytes behind a call, {len} B"),
            paired(rounds, ops, &mut c_abi, &mut called),
        ));
        rows.push((
            format!("pgate_route vs route_request_bytes inlined, {len} B"),
            paired(rounds, ops, &mut c_abi, &mut inlined),
        ));
    }

    // A host that asked for error lines only must not pay for the debug line it does not want:
    // `pgate_route` beside a digest (which no log setting touches), with no callback ever set,
    // then with one at level 1 (set before each timed loop, removed after it).
    let ids36 = ids(36);
    let messages36: Vec<Vec<u8>> = ids36
        .iter()
        .map(|id| [&salt_block[..], id.as_bytes()].concat())
        .collect();
    let digest36 = |n: u64| {
        let mut messages = Cycle::new(&messages36);
        for _ in 0..n {
            black_box(&Sha256::digest(black_box(messages.next())));
        }
    };
    let first = c_gate.route(ids36[0].as_bytes());
    let c_route = |n: u64| {
        let (mut ids, mut out) = (Cycle::new(&ids36), first);
        for _ in 0..n {
            let id = black_box(ids.next());
            // SAFETY: the gate is live for the whole bench; `id` is `id.len()` readable bytes;
            // `out` is valid for a write.
            let status = unsafe { pgate_route(c_gate.0, id.as_ptr(), id.len(), &mut out) };
            black_box((status, &out));
        }
    };
    let (mut unlogged, mut digest): (Subject<'_>, Subject<'_>) =
        (Box::new(&c_route), Box::new(&digest36));
    rows.push((
        "pgate_route, no log callback ever set, vs Sha256::digest, 36 B".to_string(),
        paired(rounds, ops, &mut unlogged, &mut digest),
    ));
    let mut logged: Subject<'_> = Box::new(|n| {
        set_log_callback(Some(pgate_log_level::Error as u32));
        c_route(n);
        set_log_callback(None);
    });
    rows.push((
        "pgate_route with a log callback at level 1 (error) vs Sha256::digest, 36 B".to_string(),
        paired(rounds, ops, &mut logged, &mut digest),
    ));

    let blocks: Vec<[u8; 64]> = ids(36)
        .iter()
        .map(|id| common::route_blocks(id.as_bytes())[0])
        .collect();
    // The 36-byte route and the bare compression, for the floor pair and the speed-ups.
    let route_op = routes_inlined(&manager, &ids36);
    let floor_op = |n: u64| compress_blocks(midstate, &blocks, n);
    let (mut inlined, mut floor): (Subject<'_>, Subject<'_>) =
        (Box::new(&route_op), Box::new(&floor_op));
    rows.push((
        "route_request_bytes (inlined) vs compress256 floor, 36 B".to_string(),
        paired(rounds, ops, &mut inlined, &mut floor),
    ));

    let recorder = gate(recording_config());
    let [canary, _] = decisions(&recorder);
    let c_recorder = CGate::new(&recording_config());
    let c_canary = c_recorder.route(b"decision-0");
    let micros = latency_micros();
    let record_op = |n: u64| {
        let mut micros = Cycle::new(&micros);
        for _ in 0..n {
            let latency = Duration::from_micros(u64::from(black_box(*micros.next())));
            black_box(recorder.record_outcome(black_box(&canary), black_box(true), latency));
        }
    };
    let histogram_op = |n: u64| record_bare(&micros, n);
    let (mut record, mut bare): (Subject<'_>, Subject<'_>) =
        (Box::new(&record_op), Box::new(&histogram_op));
    let mut c_record: Subject<'_> = Box::new(|n| {
        let mut micros = Cycle::new(&micros);
        let mut recorded = pgate_recorded::Late;
        for _ in 0..n {
            let latency_ns = u64::from(black_box(*micros.next())) * 1_000;
            // SAFETY: the gate is live for the whole bench; the decision and `recorded` are
            // valid locals.
            let status =
                unsafe { pgate_record(c_recorder.0, &c_canary, true, latency_ns, &mut recorded) };
            black_box((status, recorded));
        }
    });
    rows.push((
        "record_outcome (canary success) vs hdrhistogram record".to_string(),
        paired(rounds, ops, &mut record, &mut bare),
    ));
    rows.push((
        "pgate_record vs record_outcome (canary success)".to_string(),
        paired(rounds, ops, &mut c_record, &mut record),
    ));

    // The same records with their lines cold (see `cold_per_op`): the gate's, the canary's and
    // the stable version's, each beside a record into an hdrhistogram of the engine's layout
    // (made once, so that its lines are as cold), and the canary's beside nothing timed (the
    // clock read alone).
    let eviction = Eviction::new();
    let [_, stable] = decisions(&recorder);
    let cold_record = |decision| {
        let mut micros = Cycle::new(&micros);
        let recorder = &recorder;
        move || {
            let latency = Duration::from_micros(u64::from(black_box(*micros.next())));
            black_box(recorder.record_outcome(black_box(decision), black_box(true), latency));
        }
    };
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).expect("valid bounds");
    let mut histogram_micros = Cycle::new(&micros);
    let mut cold_bare = || {
        let micros = u64::from(black_box(*histogram_micros.next()));
        black_box(histogram.record(micros).is_ok());
    };
    let mut cold = |name: &str, subject: &mut dyn FnMut(), baseline: &mut dyn FnMut()| {
        let pair = paired_cold(rounds, cold_ops, &eviction, subject, baseline);
        rows.push((format!("{name}, each after an eviction"), pair));
    };
    cold(
        "record_outcome (canary success) vs hdrhistogram record",
        &mut cold_record(&canary),
        &mut cold_bare,
    );
    cold(
        "record_outcome (stable success) vs hdrhistogram record",
        &mut cold_record(&stable),
        &mut cold_bare,
    );
    cold(
        "record_outcome (canary success) vs nothing (the clock read alone)",
        &mut cold_record(&canary),
        &mut || {},
    );

    // The screen after a canary error (the record path's quick judgement) through a held
    // outage: both versions failing every request, an outage they share, so that no rule
    // ever fires (the gate rolls back automatically, but stays in its stage) and the canary's
    // run of errors grows: each of its first 32 screens, then every 16th. Beside the same
    // records all succeeding, on a gate of their own.
    let judged = PromotionConfig {
        auto_rollback_enabled: true,
        ..recording_config()
    };
    let (outage, healthy) = (gate(judged.clone()), gate(judged));
    let (failing_op, succeeding_op) = (
        record_both(&outage, false, &micros),
        record_both(&healthy, true, &micros),
    );
    let (mut failing, mut succeeding): (Subject<'_>, Subject<'_>) =
        (Box::new(&failing_op), Box::new(&succeeding_op));
    rows.push((
        "record_outcome, stable then canary, both failing (a run of canary errors: each of the first 32 screened, then every 16th) vs both succeeding"
            .to_string(),
        paired(rounds, ops, &mut failing, &mut succeeding),
    ));
    assert_eq!(
        outage.environment(),
        recording_config().environment,
        "an outage both versions share rolls nothing back"
    );

    // The same gate with a SQLite state store (its sync thread polling every 250 ms): route
    // and record read and write only memory, so the pair should differ by noise alone.
    let store_dir = std::env::temp_dir().join(format!("pg-paired-store-{}", std::process::id()));
    std::fs::create_dir_all(&store_dir).expect("a temporary directory");
    let store_path = store_dir.join("gate.db");
    let with_store = |config: PromotionConfig| PromotionConfig {
        store: Some(StoreConfig::Sqlite(SqliteStoreConfig {
            path: store_path
                .to_str()
                .expect("a UTF-8 temporary path")
                .to_string(),
            sync_interval_ms: 250,
            busy_timeout_ms: 2000,
            fleet_judging: true,
        })),
        gate: config.gate.clone() + "-" + config.environment.name(),
        ..config
    };
    let stored = gate(with_store(canary_config()));
    let stored_route_op = routes_inlined(&stored, &ids36);
    let (mut stored_route, mut plain_route): (Subject<'_>, Subject<'_>) =
        (Box::new(&stored_route_op), Box::new(&route_op));
    rows.push((
        "route_request_bytes with a SQLite store vs without, 36 B".to_string(),
        paired(rounds, ops, &mut stored_route, &mut plain_route),
    ));
    let stored_recorder = gate(with_store(recording_config()));
    let [stored_canary, _] = decisions(&stored_recorder);
    let stored_record_op = |n: u64| {
        let mut micros = Cycle::new(&micros);
        for _ in 0..n {
            let latency = Duration::from_micros(u64::from(black_box(*micros.next())));
            black_box(stored_recorder.record_outcome(
                black_box(&stored_canary),
                black_box(true),
                latency,
            ));
        }
    };
    let (mut stored_record, mut plain_record): (Subject<'_>, Subject<'_>) =
        (Box::new(&stored_record_op), Box::new(&record_op));
    rows.push((
        "record_outcome with a SQLite store vs without (canary success)".to_string(),
        paired(rounds, ops, &mut stored_record, &mut plain_record),
    ));

    // A gate with overrides (100 listed ids and a header): the ids routed are on no list, so
    // each route reads the snapshot and searches the ids, then routes by bucket; and the same
    // gate forcing each request by value.
    let overridden = gate(PromotionConfig {
        overrides: Some(Overrides {
            header: Some("X-Canary".to_string()),
            cookie: None,
            canary_ids: (0..50).map(|i| format!("tester-{i}")).collect(),
            stable_ids: (0..50).map(|i| format!("vip-{i}")).collect(),
        }),
        ..canary_config()
    });
    let overridden_op = routes_inlined(&overridden, &ids36);
    let forced_op = |n: u64| {
        let mut ids = Cycle::new(&ids36);
        for _ in 0..n {
            let id = black_box(ids.next().as_bytes());
            black_box(&overridden.route_request_forced(id, black_box(Some(&b"canary"[..]))));
        }
    };
    let (mut with_overrides, mut forced, mut plain_route): (Subject<'_>, Subject<'_>, Subject<'_>) = (
        Box::new(&overridden_op),
        Box::new(&forced_op),
        Box::new(&route_op),
    );
    rows.push((
        "route_request_bytes with 100 override ids (none matching) vs without, 36 B".to_string(),
        paired(rounds, ops, &mut with_overrides, &mut plain_route),
    ));
    rows.push((
        "route_request_forced by value vs route_request_bytes without overrides, 36 B".to_string(),
        paired(rounds, ops, &mut forced, &mut plain_route),
    ));

    // Writes and scaling: ratios of the same subject under two conditions, paired by round.
    let writes = [
        (
            "a flag toggle",
            beside_writer(rounds, ops, &manager, &ids36, toggle_flag),
        ),
        (
            "a rollback or a new rollout, by turns",
            beside_writer(rounds, ops, &manager, &ids36, promote_or_roll_back),
        ),
    ];
    // Enough operations that each thread runs for tens of milliseconds: a thread that the
    // barrier wakes a little late must not show as lost throughput.
    let (hash_ops, record_ops) = (ops * 4, ops * 30);
    let speedups = [
        (
            "route_request_bytes, 36 B",
            speedup(rounds, hash_ops, &route_op),
        ),
        (
            "bare compress256 (its baseline)",
            speedup(rounds, hash_ops, &floor_op),
        ),
        ("record_outcome", speedup(rounds, record_ops, &record_op)),
        (
            "bare hdrhistogram record (its baseline)",
            speedup(rounds, record_ops, &histogram_op),
        ),
    ];

    // The gates keep their (unlinked) file open until the end of the process.
    let _ = std::fs::remove_dir_all(&store_dir);
    if !benching {
        return;
    }
    println!("{rounds} rounds of {ops} operations per subject, alternating\n");
    println!("| subject vs baseline | subject | baseline | difference | ratio |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, [a, b, diff, ratio]) in rows {
        println!("| {name} | {a:.1} ns | {b:.1} ns | {diff:+.1} ns | {ratio:.2}x |");
    }
    println!("\n| routing, 36 B, beside a writer publishing every 1 ms | with | without | ratio |");
    println!("| --- | --- | --- | --- |");
    for (write, [with, without, ratio]) in writes {
        println!("| {write} | {with:.1} ns | {without:.1} ns | {ratio:.3}x |");
    }
    println!("\n| 2 threads over 1 | speed-up |");
    println!("| --- | --- |");
    for (name, x) in speedups {
        println!("| {name} | {x:.2}x |");
    }
}
