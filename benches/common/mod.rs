//! What every bench shares: request ids, latencies, the gates under test and a cursor that
//! walks a precomputed array so that no input is a constant the compiler could fold.

#![allow(
    dead_code,
    reason = "each bench crate uses its own part of this module"
)]
#![allow(clippy::expect_used, reason = "a failed set-up is a failed bench")]

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use hdrhistogram::Histogram;
use sha2::block_api::compress256;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use promotion_gates::bucket::salt_block;
use promotion_gates::{
    Clock, Environment, PromotionConfig, PromotionGateManager, RoutingDecision,
    SloAdmissionController, SloConfig, SystemClock,
};
use promotion_gates_ffi::{
    pgate_decision, pgate_environment, pgate_forced, pgate_gate, pgate_gate_free, pgate_gate_new,
    pgate_route, pgate_status,
};

/// Inputs per array: a power of two, so the cursor wraps with a mask.
pub const INPUTS: usize = 1024;

/// The request id lengths measured: a short key, a UUID, and a long session token (the
/// salted message is then 80, 100 and 192 bytes: 2, 2 and 4 SHA-256 blocks with padding, of
/// which routing compresses 1, 1 and 3 after the salt's precomputed midstate).
pub const ID_LENGTHS: [usize; 3] = [16, 36, 128];

/// The gate's name, which is also its routing salt.
pub const GATE: &str = "checkout";

/// A group that warms up for half a second and measures for `measurement`: short enough
/// that `cargo bench` finishes in the few minutes BENCHMARKS.md's "How to run" gives.
pub fn timed_group<'a>(
    c: &'a mut Criterion,
    name: &str,
    measurement: Duration,
) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(measurement);
    group
}

/// Walks `items` round and round, one item per call.
pub struct Cycle<'a, T> {
    items: &'a [T],
    next: usize,
}

impl<'a, T> Cycle<'a, T> {
    /// A cursor at the first of `items` (whose length must be a power of two).
    pub fn new(items: &'a [T]) -> Self {
        assert!(items.len().is_power_of_two(), "a power of two");
        Self { items, next: 0 }
    }

    /// The next item.
    #[inline(always)]
    pub fn next(&mut self) -> &'a T {
        let item = &self.items[self.next];
        self.next = (self.next + 1) & (self.items.len() - 1);
        item
    }
}

/// A splitmix64 step: deterministic, well-mixed inputs without a dependency.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// [`INPUTS`] distinct ASCII request ids of exactly `len` bytes (`len` 16, 36 or 128): a
/// user key, a UUID, or a session token.
pub fn ids(len: usize) -> Vec<String> {
    (0..INPUTS as u64)
        .map(|i| {
            let (a, b) = (mix(i), mix(i ^ 0xdead_beef));
            let id = match len {
                16 => format!("u-{:014x}", a >> 8),
                36 => format!(
                    "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                    a >> 32,
                    (a >> 16) & 0xffff,
                    a & 0xffff,
                    b >> 48,
                    b & 0xffff_ffff_ffff
                ),
                _ => {
                    let mut token = String::from("session-");
                    let mut state = a;
                    while token.len() < len {
                        state = mix(state);
                        token.push_str(&format!("{state:016x}"));
                    }
                    token.truncate(len);
                    token
                }
            };
            assert_eq!(id.len(), len);
            id
        })
        .collect()
}

/// The blocks routing compresses for each id, after the salt's midstate: the id's full
/// 64-byte chunks, then the padded tail (one block, or two when 56 bytes or more are left).
pub fn route_blocks(id: &[u8]) -> Vec<[u8; 64]> {
    let (full, tail) = id.as_chunks::<64>();
    let mut blocks = full.to_vec();
    let mut last = [[0u8; 64]; 2];
    let flat = last.as_flattened_mut();
    flat[..tail.len()].copy_from_slice(tail);
    flat[tail.len()] = 0x80;
    let n = if tail.len() < 56 { 1 } else { 2 };
    let bits = ((64 + id.len()) as u64 * 8).to_be_bytes();
    flat[n * 64 - 8..n * 64].copy_from_slice(&bits);
    blocks.extend_from_slice(&last[..n]);
    blocks
}

/// A flag write for a writer thread: turns `bench_toggle` on at even `n`, off at odd.
pub fn toggle_flag(gate: &PromotionGateManager, n: u64) {
    let result = if n.is_multiple_of(2) {
        gate.enable_feature("bench_toggle")
    } else {
        gate.disable_feature("bench_toggle")
    };
    assert!(result.is_ok(), "{result:?}");
}

/// A release write for a writer thread: rolls the canary back at even `n` and starts it again
/// (a new rollout, not gated) at odd: each a stage change and a whole new snapshot.
pub fn promote_or_roll_back(gate: &PromotionGateManager, n: u64) {
    let result = if n.is_multiple_of(2) {
        gate.rollback("bench: roll back to start again")
    } else {
        gate.promote(Environment::Canary {
            traffic_percent: 10.0,
        })
    };
    assert!(result.is_ok(), "{result:?}");
}

/// The SHA-256 state after the salt's block (FIPS 180-4's initial state, then the block): what
/// routing's compressions start from.
pub fn salt_midstate(salt: &[u8]) -> [u32; 8] {
    let mut midstate = [
        0x6a09e667u32,
        0xbb67ae85,
        0x3c6ef372,
        0xa54ff53a,
        0x510e527f,
        0x9b05688c,
        0x1f83d9ab,
        0x5be0cd19,
    ];
    compress256(&mut midstate, &[salt_block(salt)]);
    midstate
}

/// [`INPUTS`] latencies, log-uniform from 200 µs to 2 s: many histogram buckets, as real
/// traffic has.
pub fn latencies() -> Vec<Duration> {
    (0..INPUTS as u64)
        .map(|i| {
            let unit = (mix(i ^ 0x1a7e) >> 11) as f64 / (1u64 << 53) as f64;
            Duration::from_micros((200.0 * 10f64.powf(4.0 * unit)) as u64)
        })
        .collect()
}

/// The bare floor of routing: `n` single-block compressions from `midstate`, one block of
/// `blocks` after another, each result kept.
pub fn compress_blocks(midstate: [u32; 8], blocks: &[[u8; 64]], n: u64) {
    let mut blocks = Cycle::new(blocks);
    for _ in 0..n {
        let mut state = std::hint::black_box(midstate);
        compress256(&mut state, std::slice::from_ref(blocks.next()));
        std::hint::black_box(&state);
    }
}

/// The bare baseline of recording: `n` latencies of `micros` into a new hdrhistogram of the
/// engine's layout. The histogram is made before the loop (microseconds against the records
/// timed), so that each calling thread has its own.
pub fn record_bare(micros: &[u32], n: u64) {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).expect("valid bounds");
    let mut micros = Cycle::new(micros);
    for _ in 0..n {
        let micros = u64::from(std::hint::black_box(*micros.next()));
        std::hint::black_box(histogram.record(micros).is_ok());
    }
}

/// The same latencies in microseconds, as one 4 KiB table: what record subjects and their
/// baselines read alike, each converting to its own unit (a `Duration` for the gate,
/// nanoseconds for the C ABI, `u64` µs for hdrhistogram), so that input loads weigh the same.
pub fn latency_micros() -> Vec<u32> {
    latencies()
        .iter()
        .map(|l| u32::try_from(l.as_micros()).expect("bench latencies are under 2 s"))
        .collect()
}

/// The routing config measured: a 10 % canary with one release flag and one graduated flag.
pub fn canary_config() -> PromotionConfig {
    PromotionConfig {
        environment: Environment::Canary {
            traffic_percent: 10.0,
        },
        feature_flags: vec!["new_checkout".to_string()],
        graduated_flags: vec!["stable_ui".to_string()],
        gate: GATE.to_string(),
        ..Default::default()
    }
}

/// A 50 % canary whose judge never rolls back, so recording measures recording only.
pub fn recording_config() -> PromotionConfig {
    PromotionConfig {
        environment: Environment::Canary {
            traffic_percent: 50.0,
        },
        auto_rollback_enabled: false,
        ..canary_config()
    }
}

/// A gate with `config`, the default SLO policy and the system clock.
pub fn gate(config: PromotionConfig) -> PromotionGateManager {
    gate_with_clock(config, Arc::new(SystemClock::new()))
}

/// A gate with `config`, the default SLO policy and `clock`.
pub fn gate_with_clock(config: PromotionConfig, clock: Arc<dyn Clock>) -> PromotionGateManager {
    let slo = SloAdmissionController::new(SloConfig::default()).expect("the default SLO is valid");
    PromotionGateManager::with_clock(config, slo, clock).expect("the bench's config is valid")
}

/// A decision of `gate` for the canary and one for the stable version.
pub fn decisions(gate: &PromotionGateManager) -> [RoutingDecision<'_>; 2] {
    let mut found = [None, None];
    for i in 0.. {
        let decision = gate.route_request(&format!("decision-{i}"));
        found[usize::from(!decision.is_canary)].get_or_insert(decision);
        if let [Some(canary), Some(stable)] = found {
            return [canary, stable];
        }
    }
    unreachable!("a 0 < p < 100 canary routes some ids each way")
}

/// Runs `op(iters)` on `threads` new threads at once and returns the wall time from
/// the first start to the last finish (spawning and joining are outside it).
pub fn on_threads(threads: usize, iters: u64, op: impl Fn(u64) + Sync) -> Duration {
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (barrier, op) = (&barrier, &op);
                scope.spawn(move || {
                    // Warm the thread's route cache and recorder before the clock starts.
                    op(1);
                    barrier.wait();
                    let start = Instant::now();
                    op(iters);
                    (start, Instant::now())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a bench thread panicked"))
            .collect()
    });
    let start = spans
        .iter()
        .map(|s| s.0)
        .min()
        .expect("at least one thread");
    let end = spans
        .iter()
        .map(|s| s.1)
        .max()
        .expect("at least one thread");
    end - start
}

/// A gate made through the C ABI (from `config` as JSON, default SLO), freed on drop.
pub struct CGate(pub *mut pgate_gate);

impl CGate {
    /// A new gate, as a C host makes one.
    pub fn new(config: &PromotionConfig) -> Self {
        let json = serde_json::to_string(config).expect("a config serializes");
        let mut gate = std::ptr::null_mut();
        // SAFETY: the JSON is `json.len()` readable bytes; the SLO document is NULL with
        // length 0 (the defaults); `gate` is valid for a write; `err` is NULL (not wanted).
        let status = unsafe {
            pgate_gate_new(
                json.as_ptr(),
                json.len(),
                std::ptr::null(),
                0,
                &mut gate,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(status, pgate_status::Ok, "pgate_gate_new");
        Self(gate)
    }

    /// Routes `id` through `pgate_route`.
    pub fn route(&self, id: &[u8]) -> pgate_decision {
        let mut out = pgate_decision {
            stage: 0,
            traffic_percent: 0.0,
            bucket: 0,
            threshold: 0,
            flag_set: 0,
            environment: pgate_environment::Production,
            is_canary: false,
            forced: pgate_forced::None,
        };
        // SAFETY: the gate is live; `id` is `id.len()` readable bytes; `out` is valid for a
        // write.
        let status = unsafe { pgate_route(self.0, id.as_ptr(), id.len(), &mut out) };
        assert_eq!(status, pgate_status::Ok, "pgate_route");
        out
    }
}

impl Drop for CGate {
    fn drop(&mut self) {
        // SAFETY: the pointer came from pgate_gate_new and no call is in flight on it.
        unsafe { pgate_gate_free(self.0) };
    }
}

/// One timed subject of a paired bench: runs `n` operations.
pub type Subject<'a> = Box<dyn FnMut(u64) + 'a>;

/// The median of `values`.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `rounds` pairs `(a(state), b(state))`, run in alternating order (a first in even rounds, b
/// first in odd ones) so that neither always runs right after the other.
pub fn alternate<S: ?Sized>(
    rounds: usize,
    state: &mut S,
    mut a: impl FnMut(&mut S) -> f64,
    mut b: impl FnMut(&mut S) -> f64,
) -> Vec<(f64, f64)> {
    (0..rounds)
        .map(|round| {
            if round % 2 == 0 {
                let x = a(state);
                (x, b(state))
            } else {
                let y = b(state);
                (a(state), y)
            }
        })
        .collect()
}

/// Nanoseconds per operation of `subject(ops)`, timed once.
pub fn per_op(subject: &mut dyn FnMut(u64), ops: u64) -> f64 {
    let start = Instant::now();
    subject(ops);
    start.elapsed().as_nanos() as f64 / ops as f64
}

/// Times `a` and `b` in `rounds` alternating rounds of `ops` operations each, after one
/// untimed warm-up round of each; returns the median ns per operation of each, the median of
/// the per-round differences `a - b` and the median of the per-round ratios `a / b` (each
/// taken over the rounds: the median difference over the median baseline is no paired
/// figure, as a baseline's slow phase would move it).
pub fn paired(rounds: usize, ops: u64, a: &mut Subject<'_>, b: &mut Subject<'_>) -> [f64; 4] {
    // Warm both (caches, the route cache, recorders) before anything counts.
    a(ops);
    b(ops);
    let mut subjects = (a, b);
    let samples = alternate(
        rounds,
        &mut subjects,
        |(a, _)| per_op(a, ops),
        |(_, b)| per_op(b, ops),
    );
    [
        median(samples.iter().map(|p| p.0).collect()),
        median(samples.iter().map(|p| p.1).collect()),
        median(samples.iter().map(|p| p.0 - p.1).collect()),
        median(samples.iter().map(|p| p.0 / p.1).collect()),
    ]
}
