//! Routing cost, each subject beside its baselines in one group.
//!
//! - `route`: `route_request` beside a bare `Sha256::digest` of the same salted message (salt
//!   block + id, what the formula hashes), beside `SaltedHasher::bucket` alone (the hash
//!   without the snapshot read) and beside bare `compress256` calls on as many blocks as the
//!   route compresses after the salt's midstate (the physical floor).
//! - `ffi_route`: the C ABI's `pgate_route`, called from Rust, beside `route_request_bytes`
//!   inlined into the loop (as a Rust host calls it) and behind a call that is never inlined
//!   (as a C host calls `pgate_route`).
//!
//! - `route_latency`: the same subjects (36-byte ids) with each call's input chosen by the
//!   previous call's result, so that calls cannot overlap: the latency of one decision.
//!
//! Every iteration takes another of 1024 precomputed ids, so nothing is constant-folded, and
//! hands its result to `black_box` by reference: the result is built in memory, as a caller
//! would have it, but not copied out with the 16-byte loads of a by-value `black_box`, which
//! the CPU cannot forward from the narrower stores that wrote the result; those loads would
//! wait for the stores to retire and so serialize consecutive calls, a cost of the harness.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use promotion_gates::bucket::salt_block;
use promotion_gates::{PromotionGateManager, RoutingDecision, SaltedHasher};
use promotion_gates_ffi::pgate_route;
use sha2::block_api::compress256;
use sha2::{Digest, Sha256};

use common::{
    CGate, Cycle, ID_LENGTHS, INPUTS, canary_config, gate, ids, route_blocks, salt_midstate,
    timed_group,
};

/// What the `route` groups measure, for one gate.
struct Subjects {
    manager: PromotionGateManager,
    hasher: SaltedHasher,
    /// The salt's block, which the bare digest hashes before each id.
    block: [u8; 64],
    /// The SHA-256 state after the salt's block: what the floor's compressions start from.
    midstate: [u32; 8],
}

impl Subjects {
    fn new() -> Self {
        let salt = canary_config().effective_salt().as_bytes().to_vec();
        let block = salt_block(&salt);
        let midstate = salt_midstate(&salt);
        Self {
            manager: gate(canary_config()),
            hasher: SaltedHasher::new(&salt),
            block,
            midstate,
        }
    }
}

/// The inputs of one id length, each as its subject takes it.
struct Inputs {
    ids: Vec<String>,
    /// Salt block + id: the message the formula hashes.
    messages: Vec<Vec<u8>>,
    /// The blocks routing compresses after the midstate.
    blocks: Vec<Vec<[u8; 64]>>,
}

impl Inputs {
    fn new(len: usize, block: &[u8; 64]) -> Self {
        let ids = ids(len);
        let messages = ids
            .iter()
            .map(|id| [&block[..], id.as_bytes()].concat())
            .collect();
        let blocks = ids.iter().map(|id| route_blocks(id.as_bytes())).collect();
        Self {
            ids,
            messages,
            blocks,
        }
    }

    /// `compress256_xN`: the floor's name, N the blocks per id.
    fn floor_name(&self) -> String {
        format!("compress256_x{}", self.blocks[0].len())
    }
}

/// Back to back, each call independent of the last: the cost per call of a busy thread,
/// where the CPU may overlap one call's tail with the next call's start.
fn route(c: &mut Criterion) {
    let mut group = timed_group(c, "route", Duration::from_secs(2));
    let s = Subjects::new();
    for len in ID_LENGTHS {
        let inputs = Inputs::new(len, &s.block);
        group.bench_function(BenchmarkId::new("route_request", len), |b| {
            let mut ids = Cycle::new(&inputs.ids);
            b.iter(|| {
                black_box(&s.manager.route_request(black_box(ids.next())));
            });
        });
        group.bench_function(BenchmarkId::new("salted_hasher_bucket", len), |b| {
            let mut ids = Cycle::new(&inputs.ids);
            b.iter(|| black_box(s.hasher.bucket(black_box(ids.next().as_bytes()))));
        });
        group.bench_function(BenchmarkId::new("sha256_digest_salted", len), |b| {
            let mut messages = Cycle::new(&inputs.messages);
            b.iter(|| {
                black_box(&Sha256::digest(black_box(messages.next())));
            });
        });
        group.bench_function(BenchmarkId::new(inputs.floor_name(), len), |b| {
            let mut blocks = Cycle::new(&inputs.blocks);
            b.iter(|| {
                let mut state = black_box(s.midstate);
                compress256(&mut state, black_box(blocks.next()));
                black_box([state[0], state[1]])
            });
        });
    }
    group.finish();
}

/// Latency: each call's input is chosen by the previous call's result, so calls cannot
/// overlap. The cost of one routing decision in the middle of other work, as a proxy routes.
fn route_latency(c: &mut Criterion) {
    let mut group = timed_group(c, "route_latency", Duration::from_secs(2));
    let s = Subjects::new();
    let len = 36;
    let inputs = Inputs::new(len, &s.block);
    group.bench_function(BenchmarkId::new("route_request", len), |b| {
        let mut next = 0;
        b.iter(|| {
            let decision = s.manager.route_request(&inputs.ids[next]);
            next = decision.reason.bucket().get() as usize % INPUTS;
            black_box(&decision);
        });
    });
    group.bench_function(BenchmarkId::new("salted_hasher_bucket", len), |b| {
        let mut next = 0;
        b.iter(|| {
            next = s.hasher.bucket(inputs.ids[next].as_bytes()).get() as usize % INPUTS;
            next
        });
    });
    group.bench_function(BenchmarkId::new("sha256_digest_salted", len), |b| {
        let mut next = 0;
        b.iter(|| {
            let digest = Sha256::digest(&inputs.messages[next]);
            next = usize::from(u16::from_be_bytes([digest[0], digest[1]])) % INPUTS;
            next
        });
    });
    group.bench_function(BenchmarkId::new(inputs.floor_name(), len), |b| {
        let mut next = 0;
        b.iter(|| {
            let mut state = s.midstate;
            compress256(&mut state, &inputs.blocks[next]);
            next = state[0] as usize % INPUTS;
            next
        });
    });
    group.finish();
}

fn ffi_route(c: &mut Criterion) {
    let mut group = timed_group(c, "ffi_route", Duration::from_secs(2));
    let config = canary_config();
    let c_gate = CGate::new(&config);
    let manager = gate(config);
    for len in ID_LENGTHS {
        let ids = ids(len);
        // The same gate, the same decision, through either door.
        let mut out = c_gate.route(ids[0].as_bytes());
        let rust = manager.route_request(&ids[0]);
        assert_eq!(
            (out.bucket, out.is_canary),
            (rust.reason.bucket().get(), rust.is_canary),
            "the C ABI and Rust route alike"
        );

        group.bench_function(BenchmarkId::new("pgate_route", len), |b| {
            let mut ids = Cycle::new(&ids);
            b.iter(|| {
                let id = black_box(ids.next());
                // SAFETY: the gate is live for the whole bench; `id` is `id.len()` readable
                // bytes; `out` is valid for a write.
                let status = unsafe { pgate_route(c_gate.0, id.as_ptr(), id.len(), &mut out) };
                black_box((status, &out));
            });
        });
        // The same Rust route behind a call the compiler may not inline, as a C host's call is.
        group.bench_function(BenchmarkId::new("route_request_bytes_call", len), |b| {
            let mut ids = Cycle::new(&ids);
            b.iter(|| {
                black_box(&routed_by_call(&manager, black_box(ids.next().as_bytes())));
            });
        });
        group.bench_function(BenchmarkId::new("route_request_bytes", len), |b| {
            let mut ids = Cycle::new(&ids);
            b.iter(|| {
                black_box(&manager.route_request_bytes(black_box(ids.next().as_bytes())));
            });
        });
    }
    group.finish();
}

/// `route_request_bytes` behind a call that is never inlined: what the C ABI's `pgate_route`
/// adds to is a call, not code the compiler can interleave with the caller's loop.
#[inline(never)]
fn routed_by_call<'a>(gate: &'a PromotionGateManager, id: &[u8]) -> RoutingDecision<'a> {
    gate.route_request_bytes(id)
}

criterion_group!(benches, route, route_latency, ffi_route);
criterion_main!(benches);
