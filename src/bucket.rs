//! The portable bucketing formula: `(salt, request id) -> bucket`, pure and integer-exact.
//!
//! ```text
//! salt_block = SHA-256(salt) || 32 zero bytes                 (exactly one 64-byte block)
//! digest     = SHA-256(salt_block || request_id)
//! x          = first 8 bytes of digest, read as a big-endian u64
//! bucket     = floor(x * 10_000_000 / 2^64)                    (0 ..= 9_999_999)
//! threshold  = round_half_away_from_zero(traffic_percent * 100_000)   (0 ..= 10_000_000)
//! canary     = bucket < threshold
//! ```
//!
//! The threshold's product is one IEEE-754 double multiplication, rounded once to the nearest
//! integer with ties away from zero (Rust's `f64::round`): so `0.000035 * 100_000` is
//! `3.4999999999999996` and gives 3, not 4. `tests/vectors/routing.json` pins such cases for
//! every language.
//!
//! One bucket is 0.00001 % of traffic. Raising the percentage only raises the threshold, so a
//! request in the canary stays in it (monotone ramp); 0 % routes nobody and 100 % everybody.
//! Because the salt fills exactly one block, its compression is done once per snapshot
//! ([`SaltedHasher::new`]) and a request id of up to 55 bytes costs one more compression.

use sha2::block_api::compress256;
use sha2::{Digest, Sha256};

/// Number of buckets: the routing resolution is one in ten million (0.00001 %).
pub const BUCKETS: u32 = 10_000_000;

/// Buckets per percent of traffic.
pub const BUCKETS_PER_PERCENT: f64 = 100_000.0;

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// A request's bucket, `0..BUCKETS`.
///
/// # Example
/// ```
/// use promotion_gates::{Bucket, SaltedHasher};
/// let bucket: Bucket = SaltedHasher::new(b"checkout").bucket(b"user-42");
/// assert!(bucket.get() < promotion_gates::BUCKETS);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bucket(u32);

impl Bucket {
    /// The bucket number, `0..10_000_000`.
    ///
    /// # Example
    /// ```
    /// let b = promotion_gates::SaltedHasher::new(b"s").bucket(b"id");
    /// assert!(b.get() < 10_000_000);
    /// ```
    pub fn get(self) -> u32 {
        self.0
    }

    /// The bucket as a percentage of traffic, e.g. `12.34567`.
    ///
    /// # Example
    /// ```
    /// let b = promotion_gates::SaltedHasher::new(b"s").bucket(b"id");
    /// assert!((0.0..100.0).contains(&b.percent()));
    /// ```
    pub fn percent(self) -> f64 {
        f64::from(self.0) / BUCKETS_PER_PERCENT
    }

    /// Maps the first 8 digest bytes (big-endian) onto `0..BUCKETS` by multiply-shift.
    fn from_prefix(x: u64) -> Self {
        // (x * BUCKETS) >> 64 < BUCKETS, so the narrowing cannot lose bits.
        Self(((u128::from(x) * u128::from(BUCKETS)) >> 64) as u32)
    }
}

/// Converts a validated canary percentage (`0..=100`) to its threshold in buckets.
///
/// Percentages finer than 0.00001 % are rounded to the nearest bucket, ties away from zero.
///
/// # Example
/// ```
/// use promotion_gates::threshold_for_percent;
/// assert_eq!(threshold_for_percent(0.0), 0);
/// assert_eq!(threshold_for_percent(0.001), 100);
/// assert_eq!(threshold_for_percent(25.0), 2_500_000);
/// assert_eq!(threshold_for_percent(100.0), 10_000_000);
/// ```
pub fn threshold_for_percent(traffic_percent: f64) -> u32 {
    let scaled = (traffic_percent * BUCKETS_PER_PERCENT).round();
    if scaled.is_nan() || scaled <= 0.0 {
        0
    } else if scaled >= f64::from(BUCKETS) {
        BUCKETS
    } else {
        scaled as u32
    }
}

/// SHA-256 with the salt's block already compressed: the per-snapshot half of the formula.
///
/// # Example
/// ```
/// use promotion_gates::SaltedHasher;
/// let hasher = SaltedHasher::new(b"checkout");
/// assert_eq!(hasher.bucket(b"user-42"), hasher.bucket(b"user-42"));
/// assert_ne!(hasher.bucket(b"user-42"), SaltedHasher::new(b"search").bucket(b"user-42"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaltedHasher {
    midstate: [u32; 8],
}

impl SaltedHasher {
    /// Compresses `SHA-256(salt) || 32 zero bytes` once.
    ///
    /// # Example
    /// ```
    /// let _ = promotion_gates::SaltedHasher::new(b"any bytes, any length");
    /// ```
    pub fn new(salt: &[u8]) -> Self {
        let mut midstate = H0;
        compress256(&mut midstate, &[salt_block(salt)]);
        Self { midstate }
    }

    /// The bucket of `request_id` (any bytes, any length, UTF-8 or not).
    ///
    /// # Example
    /// ```
    /// let hasher = promotion_gates::SaltedHasher::new(b"gate");
    /// let b = hasher.bucket(&[0xff, 0xfe, 0x00]);
    /// assert!(b.get() < promotion_gates::BUCKETS);
    /// ```
    #[inline]
    pub fn bucket(&self, request_id: &[u8]) -> Bucket {
        let mut state = self.midstate;
        let (full, tail) = request_id.as_chunks::<64>();
        if !full.is_empty() {
            compress256(&mut state, full);
        }
        // FIPS 180-4 padding: 0x80, zeros, then the message length in bits (salt block + id).
        let bits = ((64 + request_id.len()) as u64).wrapping_mul(8);
        let length = u64::from_le_bytes(bits.to_be_bytes());
        if tail.len() < 56 {
            let last = block_of_lanes(|k| if k == 7 { length } else { padded_lane(tail, k) });
            compress256(&mut state, &[last]);
        } else {
            let last = [
                block_of_lanes(|k| padded_lane(tail, k)),
                block_of_lanes(|k| if k == 7 { length } else { 0 }),
            ];
            compress256(&mut state, &last);
        }
        Bucket::from_prefix((u64::from(state[0]) << 32) | u64::from(state[1]))
    }
}

/// A 64-byte block from its eight 8-byte lanes (`lane(k)`, bytes in little-endian order).
///
/// The block is assembled in registers, from loads of the caller's id, and written out in
/// 16-byte SIMD registers: the width at which SHA-NI code reads it back. Written
/// byte by byte (a `memcpy` of the id's tail, the `0x80`, the length), the block could not be
/// forwarded from the store buffer to those 16-byte loads, which would then wait for the
/// stores to retire, that is, for the previous request's compression to finish: consecutive
/// routes would no longer overlap (about 20 ns more each on Zen 3; see BENCHMARKS.md).
#[inline(always)]
fn block_of_lanes(lane: impl Fn(usize) -> u64) -> [u8; 64] {
    let quarters: [Quarter; 4] = std::array::from_fn(|i| {
        // `to_le`: a lane's bytes are in little-endian order, whatever the target's.
        bytemuck::cast::<[u64; 2], Quarter>([lane(2 * i).to_le(), lane(2 * i + 1).to_le()])
    });
    bytemuck::cast(quarters)
}

/// Bytes `8k .. 8k + 8` of `message || 0x80 || zeros` as a little-endian `u64`, for a message
/// of at most 63 bytes, read with at most three loads of the message and no copy.
#[inline(always)]
fn padded_lane(message: &[u8], k: usize) -> u64 {
    let (start, len) = (8 * k, message.len());
    if let Some(lane) = message.get(start..start + 8) {
        u64::from_le_bytes(lane.try_into().unwrap_or_default())
    } else if start < len {
        partial_lane(message, start) | (0x80 << (8 * (len - start)))
    } else if start == len {
        0x80
    } else {
        0
    }
}

/// `message[start..]`, 1 to 7 bytes, in the low bytes of a little-endian `u64`.
#[inline(always)]
fn partial_lane(message: &[u8], start: usize) -> u64 {
    let len = message.len();
    let kept = len - start;
    let le8 = |at: usize| u64::from_le_bytes(message[at..at + 8].try_into().unwrap_or_default());
    let le4 = |at: usize| {
        u64::from(u32::from_le_bytes(
            message[at..at + 4].try_into().unwrap_or_default(),
        ))
    };
    if len >= 8 {
        // The last 8 bytes, shifted so that the earlier lane's bytes fall off.
        le8(len - 8) >> (8 * (8 - kept))
    } else if len >= 4 {
        // start is 0: two overlapping 4-byte reads; the shared bytes are equal, so `|` is exact.
        le4(0) | (le4(len - 4) << (8 * (len - 4)))
    } else {
        // 1 to 3 bytes: the first, the middle and the last (overlapping when fewer than 3).
        let byte = |at: usize| u64::from(message[at]) << (8 * at);
        byte(0) | byte(len / 2) | byte(len - 1)
    }
}

/// A quarter of a SHA-256 block: a 16-byte SIMD register where there is one (see
/// [`block_of_lanes`]).
#[cfg(target_arch = "x86_64")]
type Quarter = std::arch::x86_64::__m128i;
#[cfg(not(target_arch = "x86_64"))]
type Quarter = [u64; 2];

/// `SHA-256(salt) || [0; 32]`: the one block that stands for the salt.
pub fn salt_block(salt: &[u8]) -> [u8; 64] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(&Sha256::digest(salt));
    block
}

/// The formula written the slow, obvious way: a reference for tests and for readers.
///
/// # Example
/// ```
/// use promotion_gates::{reference_bucket, SaltedHasher};
/// assert_eq!(reference_bucket(b"gate", b"user-1"), SaltedHasher::new(b"gate").bucket(b"user-1").get());
/// ```
pub fn reference_bucket(salt: &[u8], request_id: &[u8]) -> u32 {
    let mut message = salt_block(salt).to_vec();
    message.extend_from_slice(request_id);
    let digest = Sha256::digest(&message);
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&digest[..8]);
    let x = u128::from(u64::from_be_bytes(prefix));
    (x * 10_000_000 / (1u128 << 64)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_id_length_around_block_edges_matches_the_reference() {
        let hasher = SaltedHasher::new(b"edge");
        for len in 0..300 {
            let id: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            assert_eq!(
                hasher.bucket(&id).get(),
                reference_bucket(b"edge", &id),
                "len {len}"
            );
        }
    }

    #[test]
    fn blocks_built_from_lanes_equal_the_byte_by_byte_padding() {
        for len in 0..64usize {
            let tail: Vec<u8> = (0..len)
                .map(|i| (i as u8).wrapping_mul(37) ^ 0xa5)
                .collect();
            let mut expected = [0u8; 64];
            expected[..len].copy_from_slice(&tail);
            expected[len] = 0x80;
            assert_eq!(
                block_of_lanes(|k| padded_lane(&tail, k)),
                expected,
                "tail of {len} bytes"
            );
        }
        let length = u64::from_le_bytes(1234u64.to_be_bytes());
        let mut expected = [0u8; 64];
        expected[56..].copy_from_slice(&1234u64.to_be_bytes());
        assert_eq!(
            block_of_lanes(|k| if k == 7 { length } else { 0 }),
            expected
        );
    }

    #[test]
    fn known_answer() {
        // Computed independently with Python's hashlib (see tests/vectors/routing.json).
        let salt_digest: String = Sha256::digest(b"default")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            salt_digest,
            "37a8eec1ce19687d132fe29051dca629d164e2c4958ba141d5f4133a33f0688f"
        );
    }

    #[test]
    fn thresholds_are_exact_and_clamped() {
        assert_eq!(threshold_for_percent(0.00001), 1);
        assert_eq!(threshold_for_percent(0.000004), 0);
        assert_eq!(threshold_for_percent(0.000005), 1);
        assert_eq!(threshold_for_percent(12.345678), 1_234_568);
        assert_eq!(threshold_for_percent(100.0), BUCKETS);
        assert_eq!(threshold_for_percent(f64::NAN), 0);
        assert_eq!(threshold_for_percent(1e300), BUCKETS);
    }

    #[test]
    fn prefix_mapping_covers_the_range() {
        assert_eq!(Bucket::from_prefix(0).get(), 0);
        assert_eq!(Bucket::from_prefix(u64::MAX).get(), BUCKETS - 1);
        assert_eq!(Bucket::from_prefix(1u64 << 63).get(), BUCKETS / 2);
    }

    proptest! {
        #[test]
        fn fast_path_equals_reference(salt in proptest::collection::vec(any::<u8>(), 0..200),
                                      id in proptest::collection::vec(any::<u8>(), 0..400)) {
            prop_assert_eq!(SaltedHasher::new(&salt).bucket(&id).get(), reference_bucket(&salt, &id));
        }
    }
}
