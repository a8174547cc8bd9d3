//! Routing cost, each subject beside its baselines in one group.
//!
//! - `route`: `route_request` beside a bare `Sha256::digest` of the same salted message (salt
//!   block + id, what the formula hashes), beside `SaltedHasher::bucket` alone (the hash
//!   without the snapshot read) and beside bare `compress256` calls on as many blocks as the
//!   route compresses after the salt's midstate (the physical floor).
//! - `ffi_route`: the C ABI's `pgate_route`, called from Rust, beside `route_request_bytes`.
//!
//! Every iteration takes the next of 1024 precomputed ids, so nothing is constant-folded.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use promotion_gates::SaltedHasher;
use promotion_gates::bucket::salt_block;
use promotion_gates::ffi::pgate_route;
use sha2::block_api::compress256;
use sha2::{Digest, Sha256};

use common::{CGate, Cycle, ID_LENGTHS, canary_config, gate, ids, timed_group};

/// The blocks routing compresses for each id, after the salt's midstate: the id's full
/// 64-byte chunks, then the padded tail (one block, or two when 56 bytes or more are left).
fn route_blocks(id: &[u8]) -> Vec<[u8; 64]> {
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

fn route(c: &mut Criterion) {
    let mut group = timed_group(c, "route", Duration::from_secs(2));
    let manager = gate(canary_config());
    let salt = canary_config().effective_salt().as_bytes().to_vec();
    let hasher = SaltedHasher::new(&salt);
    let block = salt_block(&salt);
    // The midstate after the salt block: what the floor's compressions start from.
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
    compress256(&mut midstate, &[block]);
    for len in ID_LENGTHS {
        let ids = ids(len);
        let messages: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| [&block[..], id.as_bytes()].concat())
            .collect();
        let blocks: Vec<Vec<[u8; 64]>> = ids.iter().map(|id| route_blocks(id.as_bytes())).collect();
        let blocks_per_id = blocks[0].len();

        group.bench_function(BenchmarkId::new("route_request", len), |b| {
            let mut ids = Cycle::new(&ids);
            b.iter(|| black_box(manager.route_request(black_box(ids.next()))));
        });
        group.bench_function(BenchmarkId::new("salted_hasher_bucket", len), |b| {
            let mut ids = Cycle::new(&ids);
            b.iter(|| black_box(hasher.bucket(black_box(ids.next().as_bytes()))));
        });
        group.bench_function(BenchmarkId::new("sha256_digest_salted", len), |b| {
            let mut messages = Cycle::new(&messages);
            b.iter(|| black_box(Sha256::digest(black_box(messages.next()))));
        });
        group.bench_function(
            BenchmarkId::new(format!("compress256_x{blocks_per_id}"), len),
            |b| {
                let mut blocks = Cycle::new(&blocks);
                b.iter(|| {
                    let mut state = black_box(midstate);
                    compress256(&mut state, black_box(blocks.next()));
                    black_box([state[0], state[1]])
                });
            },
        );
    }
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
        group.bench_function(BenchmarkId::new("route_request_bytes", len), |b| {
            let mut ids = Cycle::new(&ids);
            b.iter(|| black_box(manager.route_request_bytes(black_box(ids.next().as_bytes()))));
        });
    }
    group.finish();
}

criterion_group!(benches, route, ffi_route);
criterion_main!(benches);
