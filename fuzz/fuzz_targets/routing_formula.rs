//! The routing formula against an independent recomputation.
//!
//! The library hashes with a precomputed midstate of the salt's block and maps the digest with
//! a 128-bit multiply-shift; this target computes the README's formula the plain way (one
//! streaming SHA-256 over `SHA-256(salt) || 32 zero bytes || id`, the bucket with 64-bit
//! arithmetic only, the threshold by an explicit floor and half test) and requires the same
//! bucket, threshold and cohort from `SaltedHasher`, `threshold_for_percent` and a gate routing
//! through the C ABI, for any salt, id (any bytes, any length) and percentage.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use promotion_gates::{SaltedHasher, threshold_for_percent};
use promotion_gates_fuzz::Gate;
use sha2::{Digest, Sha256};

const BUCKETS: u64 = 10_000_000;

#[derive(Debug, Arbitrary)]
struct Input {
    /// The routing salt; empty means none, so the gate's name (`"default"`) salts.
    salt: String,
    /// The canary percentage: a multiple of the resolution, or any double in `0..=100`.
    percent: Percent,
    ids: Vec<Vec<u8>>,
}

#[derive(Debug, Arbitrary)]
enum Percent {
    /// `n` buckets (0.00001 % each), `n` taken modulo 10 000 001.
    Buckets(u32),
    /// The double with these bits, folded into `0..=100` if it is outside.
    Bits(u64),
}

impl Percent {
    fn value(&self) -> f64 {
        match *self {
            Percent::Buckets(n) => f64::from(n % 10_000_001) / 100_000.0,
            Percent::Bits(bits) => {
                let p = f64::from_bits(bits).abs();
                if p.is_finite() { p % 100.0 } else { 0.0 }
            }
        }
    }
}

/// `floor(x * 10^7 / 2^64)` with 64-bit arithmetic: x = hi·2^32 + lo, so
/// x·K / 2^64 = (hi·K + lo·K / 2^32) / 2^32, and flooring the inner quotient first is exact.
fn bucket_of(x: u64) -> u64 {
    let (hi, lo) = (x >> 32, x & 0xFFFF_FFFF);
    (hi * BUCKETS + ((lo * BUCKETS) >> 32)) >> 32
}

fn naive_bucket(salt: &[u8], id: &[u8]) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(Sha256::digest(salt));
    hasher.update([0u8; 32]);
    hasher.update(id);
    let digest = hasher.finalize();
    let prefix = digest
        .iter()
        .take(8)
        .fold(0u64, |x, &b| (x << 8) | u64::from(b));
    bucket_of(prefix)
}

/// `round_half_away_from_zero(percent * 100_000)` for `percent` in `0..=100`.
fn naive_threshold(percent: f64) -> u64 {
    let scaled = percent * 100_000.0;
    let floor = scaled.floor();
    let rounded = if scaled - floor >= 0.5 {
        floor + 1.0
    } else {
        floor
    };
    (rounded as u64).min(BUCKETS)
}

fuzz_target!(|input: Input| {
    let percent = input.percent.value();
    let salt = if input.salt.is_empty() {
        "default"
    } else {
        input.salt.as_str()
    };
    let mut config = serde_json::json!({
        "environment": {"canary": {"traffic_percent": percent}},
    });
    if !input.salt.is_empty() {
        config["salt"] = serde_json::Value::from(input.salt.as_str());
    }
    // A salt with whitespace, control, format or invisible characters is refused as a config (the pure formula
    // still applies to it).
    let gate = match Gate::new(config.to_string().as_bytes(), b"") {
        Ok(gate) => Some(gate),
        Err(refusal) if refusal.message.starts_with("invalid salt") => None,
        // A share above 0 that routes no bucket, or below 100 that routes every bucket, is refused
        // (within the formula's resolution of its end).
        Err(refusal)
            if ((percent > 0.0 && naive_threshold(percent) == 0)
                || (percent < 100.0 && naive_threshold(percent) == BUCKETS))
                && refusal
                    .message
                    .starts_with("invalid environment.canary.traffic_percent") =>
        {
            None
        }
        Err(refusal) => panic!("{config} refused: {refusal:?}"),
    };

    let threshold = naive_threshold(percent);
    assert_eq!(
        u64::from(threshold_for_percent(percent)),
        threshold,
        "{percent}"
    );
    let hasher = SaltedHasher::new(salt.as_bytes());
    for id in input.ids.iter().take(16) {
        let bucket = naive_bucket(salt.as_bytes(), id);
        assert!(bucket < BUCKETS);
        assert_eq!(
            u64::from(hasher.bucket(id).get()),
            bucket,
            "salt {salt:?} id {id:?}"
        );
        if let Some(gate) = &gate {
            let decision = gate.route(id);
            assert_eq!(
                u64::from(decision.bucket),
                bucket,
                "salt {salt:?} id {id:?}"
            );
            assert_eq!(u64::from(decision.threshold), threshold, "{percent}");
            assert_eq!(decision.is_canary, bucket < threshold);
            assert_eq!(decision.traffic_percent.to_bits(), percent.to_bits());
        }
    }
});
