//! The histogram layout: HdrHistogram's log-linear buckets for 1 µs ..= 60 s at two significant
//! figures, computed by hand so that recording can bump a plain atomic counter.
//!
//! The layout is exactly the one `hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2)`
//! uses (256 sub-buckets, of which the upper 128 per power of two are kept; a value's bucket
//! is at most 1/128 = 0.78 % wide relative to the value), so a merged window converts into an
//! `hdrhistogram::Histogram` without losing anything. The unit test checks the equivalence.

/// Latencies are recorded in microseconds; this is the largest one tracked (60 s).
pub(crate) const MAX_MICROS: u64 = 60_000_000;

/// log2 of half the sub-bucket count (2 significant figures -> 256 sub-buckets -> 128 half).
const HALF_MAGNITUDE: u32 = 7;
const HALF_COUNT: u64 = 1 << HALF_MAGNITUDE;
const SUB_BUCKET_MASK: u64 = (HALF_COUNT << 1) - 1;
/// 64 - unit magnitude (0) - half magnitude - 1.
const LEADING_ZERO_BASE: u32 = 64 - HALF_MAGNITUDE - 1;

/// Buckets per histogram: (19 powers of two + 1) * 128.
pub(crate) const LEN: usize = 2560;

/// The bucket index of a latency in microseconds (values above 60 s count as 60 s).
#[inline]
pub(crate) fn index_of(micros: u64) -> usize {
    let v = micros.min(MAX_MICROS);
    let bucket = LEADING_ZERO_BASE - (v | SUB_BUCKET_MASK).leading_zeros();
    let sub = v >> bucket;
    (((u64::from(bucket) + 1) << HALF_MAGNITUDE) + sub - HALF_COUNT) as usize
}

/// The lowest latency (µs) that falls in bucket `index`.
pub(crate) fn lowest_of(index: usize) -> u64 {
    let index = index as u64;
    let mut bucket = (index >> HALF_MAGNITUDE) as i64 - 1;
    let mut sub = (index & (HALF_COUNT - 1)) + HALF_COUNT;
    if bucket < 0 {
        sub -= HALF_COUNT;
        bucket = 0;
    }
    sub << bucket
}

/// The lowest latency (µs) of the last bucket, 59 768 832: the bucket holds every latency from
/// it to [`MAX_MICROS`] and every longer one (counted as [`MAX_MICROS`]), so no whole bucket
/// is above a threshold at or beyond it, and [`count_above`](super::count_above) never counts
/// a request slower than that threshold.
pub(crate) fn last_bucket_floor() -> u64 {
    lowest_of(index_of(MAX_MICROS))
}

/// The highest latency (µs) that falls in bucket `index`.
pub(crate) fn highest_of(index: usize) -> u64 {
    lowest_of(index + 1).saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::Histogram;

    #[test]
    fn matches_hdrhistogram_exactly() {
        let h = Histogram::<u64>::new_with_bounds(1, MAX_MICROS, 2).unwrap();
        assert_eq!(h.distinct_values(), LEN);
        let mut probes: Vec<u64> = (0..5000).collect();
        let mut v = 5000u64;
        while v <= MAX_MICROS {
            probes.extend([v - 1, v, v + 1]);
            v = v * 21 / 20;
        }
        probes.push(MAX_MICROS);
        for v in probes {
            let i = index_of(v);
            assert!(i < LEN, "{v}");
            assert_eq!(lowest_of(i), h.lowest_equivalent(v), "lowest of {v}");
            assert_eq!(highest_of(i), h.highest_equivalent(v), "highest of {v}");
        }
        assert_eq!(index_of(u64::MAX), index_of(MAX_MICROS));
    }

    #[test]
    fn the_last_bucket_holds_every_latency_from_its_floor_on() {
        let floor = last_bucket_floor();
        assert_eq!(floor, 59_768_832);
        assert_eq!(index_of(floor), index_of(u64::MAX));
        assert_eq!(index_of(floor - 1) + 1, index_of(floor));
        let mut longest = vec![0; LEN];
        longest[index_of(u64::MAX)] = 1;
        assert_eq!(super::super::count_above(&longest, floor - 1), 1);
        assert_eq!(super::super::count_above(&longest, floor), 0);
    }

    #[test]
    fn relative_width_is_under_one_percent() {
        for i in HALF_COUNT as usize..=index_of(MAX_MICROS) {
            let (lo, hi) = (lowest_of(i), highest_of(i));
            assert!(
                ((hi - lo) as f64) / (lo as f64) < 0.0079,
                "bucket {i}: {lo}..={hi}"
            );
        }
    }
}
