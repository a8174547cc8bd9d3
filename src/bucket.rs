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
        let bits = ((64 + request_id.len()) as u64)
            .wrapping_mul(8)
            .to_be_bytes();
        let mut last = [[0u8; 64]; 2];
        let flat = last.as_flattened_mut();
        flat[..tail.len()].copy_from_slice(tail);
        flat[tail.len()] = 0x80;
        let blocks = if tail.len() < 56 { 1 } else { 2 };
        flat[blocks * 64 - 8..blocks * 64].copy_from_slice(&bits);
        compress256(&mut state, &last[..blocks]);
        Bucket::from_prefix((u64::from(state[0]) << 32) | u64::from(state[1]))
    }
}

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
