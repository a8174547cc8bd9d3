//! Fleet-wide judging's data: what each gate instance on a store publishes of its current
//! stage at every sync tick, and the checks a contribution read back must pass before the
//! judge adds it to its own counts.
//!
//! A contribution is the instance's cumulative counts of the stage (since the stage started),
//! per cohort: requests, errors, requests within the latency target, and the latency
//! histogram in HdrHistogram's V2 encoding, not deflated (cookie `0x1c849313`; Java's
//! `decodeFromByteBuffer` and the Rust crate's `Deserializer` read it, and its header can be
//! checked before anything is allocated). Cumulative counts, not a window: each process's
//! judge adds the others' to its own cumulative reading and takes its window of the sum, so
//! the merged judgement is the one a single process seeing all the traffic makes, with the
//! others' data at most two sync intervals old, except where an instance is first read: what
//! it shows then is of no known time unless its gate opened within the window (its id says
//! when), and the window leaves it out (see `FleetLedger::update`): a process that joins
//! mid-stage judges the others' traffic from its joining on, the stage-long evidence all of it.

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::StoreConfig;
use crate::decision::{Cohort, PerCohort};
use crate::metrics::{CohortCounts, Counts, from_histogram, histogram_bounds, to_histogram};

/// Other instances' contributions read per sync tick, at most (the newest first).
pub(crate) const MAX_INSTANCES: usize = 256;

/// The longest instance id read back, in bytes; [`instance_id`] writes at most about 130.
pub(crate) const MAX_INSTANCE_BYTES: usize = 256;

/// The largest latency histogram read back, in bytes. The densest histogram of the gate's
/// layout (2560 buckets, each a nine-byte count) needs about 23 KiB.
pub(crate) const MAX_LATENCY_BYTES: usize = 64 * 1024;

/// The largest count a contribution may hold (2^48): above it, the row is absurd, and 256 of
/// them still sum within a `u64`.
pub(crate) const MAX_COUNT: u64 = 1 << 48;

/// The V2 encoding's cookie and header length.
const V2_COOKIE: u32 = 0x1c84_9313;
const V2_HEADER: usize = 40;

/// One cohort as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublishedCohort {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) compliant: u64,
    /// The latency histogram (microseconds), V2-encoded.
    pub(crate) latency: Vec<u8>,
}

/// One instance's contribution to a stage, as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Contribution {
    /// The instance that published it (see [`instance_id`]).
    pub(crate) instance: String,
    /// The stored stage it counts.
    pub(crate) stage: u64,
    pub(crate) cohorts: PerCohort<PublishedCohort>,
}

/// A contribution refused: which instance published it, which field is wrong, and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct BadContribution {
    /// The instance id, or its first characters when it is too long to be read whole.
    pub(crate) instance: String,
    /// The instance id's length in bytes: `instance.len()` when `instance` is all of it.
    pub(crate) instance_bytes: usize,
    pub(crate) field: String,
    pub(crate) problem: String,
}

impl fmt::Display for BadContribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "contribution of instance {}: {}: {}",
            crate::error::quoted_part(
                crate::error::shown_part(&self.instance),
                self.instance_bytes
            ),
            self.field,
            self.problem
        )
    }
}

impl BadContribution {
    pub(crate) fn new(
        instance: &str,
        field: impl Into<String>,
        problem: impl fmt::Display,
    ) -> Self {
        Self {
            instance: instance.to_string(),
            instance_bytes: instance.len(),
            field: field.into(),
            problem: problem.to_string(),
        }
    }
}

/// Refuses an instance id of `bytes` bytes above [`MAX_INSTANCE_BYTES`], naming it by its first
/// 32 characters (of `shown`: the id, or as much of it as was read).
fn check_instance(shown: &str, bytes: usize) -> Result<(), BadContribution> {
    if bytes <= MAX_INSTANCE_BYTES {
        return Ok(());
    }
    let start: String = shown.chars().take(32).collect();
    Err(BadContribution {
        instance_bytes: bytes,
        ..BadContribution::new(
            &start,
            "instance",
            format!("{bytes} bytes is above {MAX_INSTANCE_BYTES}"),
        )
    })
}

/// The instance id `read` (of `bytes` bytes: when that is above [`MAX_INSTANCE_BYTES`],
/// `read` may be its first characters alone), or its refusal: above the bound
/// ([`check_instance`]), or not UTF-8, as instance `?` (as an id that is no text at all),
/// showing its bytes escaped (`"x\xff"`): two ids that differ only in bytes that are not
/// UTF-8 would read as the same text, and be counted as one instance. A gate writes its id as
/// UTF-8 ([`instance_id`]).
pub(crate) fn instance_of(read: &[u8], bytes: usize) -> Result<String, BadContribution> {
    let shown = String::from_utf8_lossy(read);
    check_instance(&shown, bytes)?;
    match std::str::from_utf8(read) {
        Ok(instance) => Ok(instance.to_string()),
        Err(_) => Err(BadContribution::new(
            "?",
            "instance",
            format!("{}: expected UTF-8 text", crate::error::shown_bytes(read)),
        )),
    }
}

/// This gate's instance id, unique per process and gate: the host name, the process id, the
/// gate's number among those this process opened, and the nanoseconds since the epoch of
/// `opened`, the gate's opening by its own clock's wall time (so that a restarted process
/// reusing a pid is another instance), as `host:pid:gate:nanos-in-hex`. The gate's clock, the
/// one it reads the others' openings against ([`opened_at`]).
pub(crate) fn instance_id(opened: SystemTime) -> String {
    static GATES: AtomicU64 = AtomicU64::new(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .take(64)
        .collect::<String>();
    let host = if host.is_empty() { "host".into() } else { host };
    // At most what `opened_at` reads back: a u64 (the gate's wall times end in 2262).
    let nanos = opened
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let gate = GATES.fetch_add(1, Ordering::Relaxed);
    format!("{host}:{}:{gate}:{nanos:x}", std::process::id())
}

/// When the gate of instance id `instance` opened, by the wall clock of its host, as its id
/// says ([`instance_id`]); `None` for an id not of that form (a build before it, a row written
/// by hand). Its counts of any stage are all of later outcomes.
pub(crate) fn opened_at(instance: &str) -> Option<SystemTime> {
    let (_, nanos) = instance.rsplit_once(':')?;
    let nanos = u64::from_str_radix(nanos, 16).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_nanos(nanos))
}

/// How long a contribution counts after its instance last published it: five sync intervals,
/// at least one second (an instance whose sync thread is late a few ticks is not dropped), and
/// at least the store's allowance for a slow tick plus two sync intervals, so that one slow
/// tick does not expire a live instance. With SQLite that is `busy_timeout_ms`: a publication
/// stamped when it starts may wait that long for the write lock (the default 250 ms and 2 s
/// give 2.5 s). With etcd it is the etcd store's `SLOWEST_TICK`, 20 s: the requests between
/// two keep-alives of the instance's lease and those of a host's write it waits for, each up
/// to its 2 s timeout (the default 1 s gives 22 s; a read of the contributions longer than
/// that keeps the lease alive itself; a tick slower still, behind several host writes, can
/// outlast it: docs/store.md).
pub(crate) fn time_to_live(store: &StoreConfig) -> Duration {
    let interval = store.sync_interval();
    let slowest_tick = match store {
        StoreConfig::Sqlite(sqlite) => Duration::from_millis(sqlite.busy_timeout_ms) + interval * 2,
        #[cfg(feature = "etcd")]
        StoreConfig::Etcd(_) => super::etcd::SLOWEST_TICK + interval * 2,
        // Never opened without its feature (`store::open`), so never published to.
        #[cfg(not(feature = "etcd"))]
        StoreConfig::Etcd(_) => Duration::ZERO,
    };
    (interval * 5).max(slowest_tick).max(Duration::from_secs(1))
}

/// `counts` (with histograms) as `instance`'s contribution to the stored `stage`.
///
/// The requests published are at least the errors plus the compliant requests, and at least
/// the histogram's samples, so that every row this build publishes passes [`decode`]'s checks.
/// A reading of the recorders can fall short of that: each recorder is read while its thread
/// records, errors and compliant requests first, then the histogram, whose samples are the
/// requests read (`ThreadRecorder::add_to`), and a thread counts a request's latency before
/// its error or compliance, but relaxed loads of different cells need not see them in that
/// order (see `metrics/recorder.rs`). The records a reading catches that way are real (the next tick
/// counts them in full), but how many there are depends on how long the reading took, not on
/// any fixed number: a reader descheduled between two loads sees every record made meanwhile.
/// So the row is made consistent here, where the reading is known, rather than tolerated by a
/// slack on the reader's side, which no fixed number could size.
pub(crate) fn encode(instance: &str, stage: u64, counts: &Counts) -> Result<Contribution, String> {
    let mut serializer = V2Serializer::new();
    let mut cohort = |c: &CohortCounts| -> Result<PublishedCohort, String> {
        let histogram = to_histogram(&c.histogram).ok_or("the latency histogram's bounds")?;
        let mut latency = Vec::new();
        serializer
            .serialize(&histogram, &mut latency)
            .map_err(|e| format!("the latency histogram: {e:?}"))?;
        let requests = c
            .requests
            .max(c.errors.saturating_add(c.compliant))
            .max(histogram.len());
        Ok(PublishedCohort {
            requests,
            errors: c.errors,
            compliant: c.compliant,
            latency,
        })
    };
    Ok(Contribution {
        instance: instance.to_string(),
        stage,
        cohorts: PerCohort {
            canary: cohort(&counts.canary)?,
            stable: cohort(&counts.stable)?,
        },
    })
}

/// The counts of `contribution`, if it is one of `stage` and sane: counts at most
/// [`MAX_COUNT`], errors plus compliant requests (successes within the latency target, so
/// never an error) at most the requests, a latency histogram of at most [`MAX_LATENCY_BYTES`]
/// in the gate's layout (1 µs to 60 s, two significant figures) with at most one sample per
/// request (the recorder takes one per request; [`encode`] publishes no fewer requests than
/// samples).
pub(crate) fn decode(contribution: &Contribution, stage: u64) -> Result<Counts, BadContribution> {
    let instance = contribution.instance.as_str();
    if contribution.stage != stage {
        return Err(BadContribution::new(
            instance,
            "stage",
            format!("{} (the current stage is {stage})", contribution.stage),
        ));
    }
    let mut counts = Counts::default();
    for cohort in Cohort::ALL {
        counts[cohort] = decode_cohort(instance, cohort, &contribution.cohorts[cohort])?;
    }
    Ok(counts)
}

fn decode_cohort(
    instance: &str,
    cohort: Cohort,
    published: &PublishedCohort,
) -> Result<CohortCounts, BadContribution> {
    let bad = |field: &str, problem: String| {
        BadContribution::new(instance, format!("{}.{field}", cohort.name()), problem)
    };
    let requests = published.requests;
    if requests > MAX_COUNT {
        return Err(bad("requests", format!("{requests} is above {MAX_COUNT}")));
    }
    let (errors, compliant) = (published.errors, published.compliant);
    for (field, value) in [("errors", errors), ("compliant", compliant)] {
        if value > requests {
            return Err(bad(
                field,
                format!("{value} is above the {requests} requests"),
            ));
        }
    }
    // Each at most `requests` <= 2^48: the sum cannot overflow.
    if errors + compliant > requests {
        return Err(bad(
            "compliant",
            format!("{compliant} plus {errors} errors is above the {requests} requests"),
        ));
    }
    let latency = &published.latency;
    check_header(latency)
        .and_then(|payload| check_payload(&latency[V2_HEADER..V2_HEADER + payload]))
        .map_err(|problem| bad("latency", problem))?;
    let histogram: hdrhistogram::Histogram<u64> = Deserializer::new()
        .deserialize(&mut latency.as_slice())
        .map_err(|e| bad("latency", format!("not a V2 histogram: {e:?}")))?;
    if histogram.len() > requests {
        return Err(bad(
            "latency",
            format!(
                "{} samples is above the {requests} requests",
                histogram.len()
            ),
        ));
    }
    let mut buckets = Vec::new();
    from_histogram(&histogram, &mut buckets);
    Ok(CohortCounts {
        requests,
        errors,
        compliant,
        histogram: buckets,
    })
}

/// Checks a V2 histogram's size and header (cookie, payload length, the gate's bounds and
/// precision) before it is decoded, so that decoding allocates only the gate's layout. Returns
/// the payload's length.
fn check_header(bytes: &[u8]) -> Result<usize, String> {
    if bytes.len() > MAX_LATENCY_BYTES {
        return Err(format!(
            "{} bytes is above {MAX_LATENCY_BYTES}",
            bytes.len()
        ));
    }
    if bytes.len() < V2_HEADER {
        return Err(format!("{} bytes is shorter than a V2 header", bytes.len()));
    }
    let word = |at: usize, len: usize| {
        bytes[at..at + len]
            .iter()
            .fold(0u64, |v, b| v << 8 | u64::from(*b))
    };
    if word(0, 4) != u64::from(V2_COOKIE) {
        return Err(format!(
            "cookie {:#x} is not V2's uncompressed {V2_COOKIE:#x}",
            word(0, 4)
        ));
    }
    let payload = word(4, 4);
    if payload > (bytes.len() - V2_HEADER) as u64 {
        return Err(format!(
            "payload length {payload} is beyond the {} bytes",
            bytes.len()
        ));
    }
    let (lowest, highest, digits) = histogram_bounds();
    let found = (word(16, 8), word(24, 8), word(12, 4));
    if found != (lowest, highest, u64::from(digits)) {
        return Err(format!(
            "bounds {}..={} with {} significant figures (the gate's are {lowest}..={highest} with {digits})",
            found.0, found.1, found.2
        ));
    }
    Ok(payload as usize)
}

/// Checks what of a V2 payload the decoder cannot refuse by itself: a number of nine `0xff`
/// bytes, the zigzag encoding of -2^63, a run of empty buckets whose length the decoder
/// negates, which overflows (a panic wherever overflow is checked). Every other number the
/// decoder refuses or takes itself: a run or a count past the layout's end, a payload cut short
/// inside a number.
fn check_payload(payload: &[u8]) -> Result<(), String> {
    let mut at = 0;
    while at < payload.len() {
        if payload[at..].starts_with(&[0xff; 9]) {
            return Err(format!(
                "the number at payload byte {at} is -2^63, a run of 2^63 empty buckets"
            ));
        }
        // LEB128 as V2 writes it: up to eight bytes with the high bit set, then one more.
        at += 1 + payload[at..]
            .iter()
            .take(8)
            .take_while(|b| **b & 0x80 != 0)
            .count();
    }
    Ok(())
}

/// Whether `a` and `b` are the same counts (a decoded contribution and what was encoded).
#[cfg(test)]
fn same(a: &CohortCounts, b: &CohortCounts) -> bool {
    a.requests == b.requests
        && a.errors == b.errors
        && a.compliant == b.compliant
        && a.histogram == b.histogram
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests_support::{cohort, histogram_of};

    fn counts() -> Counts {
        PerCohort {
            canary: cohort(1000, 100, 2_000, 90_000),
            stable: cohort(9000, 90, 1_500, 40_000),
        }
    }

    #[test]
    fn a_contribution_round_trips_exactly() {
        let original = counts();
        let published = encode("a:1:0:ff", 7, &original).unwrap();
        assert_eq!(published.stage, 7);
        let back = decode(&published, 7).unwrap();
        for c in Cohort::ALL {
            assert!(same(&back[c], &original[c]), "{c:?}");
        }
        // Every latency the layout holds, at both ends.
        let mut edges = Counts::default();
        edges.canary.histogram = histogram_of(&[1, 2, 255, 256, 59_999_999, 60_000_000]);
        edges.canary.requests = 6;
        edges.stable.histogram = histogram_of(&[]);
        let back = decode(&encode("a", 1, &edges).unwrap(), 1).unwrap();
        assert_eq!(back.canary.histogram, edges.canary.histogram);
    }

    #[test]
    fn the_latency_is_hdrhistograms_v2_encoding() {
        let published = encode("a", 1, &counts()).unwrap();
        let bytes = &published.cohorts.canary.latency;
        assert_eq!(&bytes[..4], &[0x1c, 0x84, 0x93, 0x13]);
        let h: hdrhistogram::Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .unwrap();
        assert_eq!(h.len(), 1000);
        assert!(h.equivalent(h.max(), 90_000));
    }

    #[test]
    fn bad_contributions_are_refused_naming_the_instance_and_the_field() {
        let good = encode("host:42:0:1", 3, &counts()).unwrap();
        let refused = |change: &dyn Fn(&mut Contribution), stage: u64| {
            let mut c = good.clone();
            change(&mut c);
            let err = decode(&c, stage).unwrap_err();
            assert_eq!(err.instance, "host:42:0:1");
            (err.field.clone(), err.to_string())
        };
        let (field, text) = refused(&|_| {}, 4);
        assert_eq!(field, "stage");
        assert!(text.contains("host:42:0:1") && text.contains("3 (the current stage is 4)"));
        let (field, _) = refused(&|c| c.cohorts.canary.errors = 1001, 3);
        assert_eq!(field, "canary.errors");
        let (field, _) = refused(&|c| c.cohorts.stable.compliant = 9001, 3);
        assert_eq!(field, "stable.compliant");
        let (field, text) = refused(&|c| c.cohorts.stable.requests = u64::MAX, 3);
        assert_eq!(field, "stable.requests", "{text}");
        let (field, text) = refused(&|c| c.cohorts.canary.latency.truncate(20), 3);
        assert_eq!(field, "canary.latency");
        assert!(text.contains("shorter than a V2 header"), "{text}");
        let (_, text) = refused(&|c| c.cohorts.canary.latency[3] = 0x14, 3);
        assert!(text.contains("cookie"), "{text}");
        let (_, text) = refused(
            &|c| c.cohorts.canary.latency = vec![0; MAX_LATENCY_BYTES + 1],
            3,
        );
        assert!(text.contains("bytes is above"), "{text}");
        // Another histogram's bounds (a foreign writer) are refused before decoding.
        let mut foreign = Vec::new();
        let h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, u64::MAX / 2, 5).unwrap();
        V2Serializer::new().serialize(&h, &mut foreign).unwrap();
        let (_, text) = refused(&|c| c.cohorts.stable.latency = foreign.clone(), 3);
        assert!(text.contains("significant figures"), "{text}");
        // A payload cut short, or garbage after a good header.
        let (_, text) = refused(
            &|c| {
                let l = &mut c.cohorts.canary.latency;
                l.truncate(l.len() - 1);
            },
            3,
        );
        assert!(text.contains("payload length"), "{text}");
        let (_, text) = refused(
            &|c| {
                let l = &mut c.cohorts.canary.latency;
                for b in &mut l[V2_HEADER..] {
                    *b = 0xff;
                }
            },
            3,
        );
        assert!(text.contains("not a V2 histogram"), "{text}");
        // A number the decoder would negate with overflow (-2^63, nine 0xff bytes) after a
        // good one: refused before decoding, where a build with overflow checks panicked.
        let (field, text) = refused(
            &|c| {
                let l = &mut c.cohorts.canary.latency;
                l.truncate(V2_HEADER);
                l.extend_from_slice(&[0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
                l[4..8].copy_from_slice(&10u32.to_be_bytes());
            },
            3,
        );
        assert_eq!(field, "canary.latency");
        assert!(text.contains("payload byte 1 is -2^63"), "{text}");
    }

    /// A V2 histogram of the gate's layout with `payload` as its payload.
    fn with_payload(payload: &[u8]) -> Vec<u8> {
        let mut bytes = encode("a", 1, &counts()).unwrap().cohorts.canary.latency;
        bytes.truncate(V2_HEADER);
        bytes[4..8].copy_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    proptest::proptest! {
        /// Whatever a store row's payload holds, decoding it takes it or refuses it naming
        /// the field, never panics, and takes no more samples than the row's requests.
        #[test]
        fn any_latency_payload_is_taken_or_refused(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    // -2^63, the largest count, a long run of empty buckets, small numbers
                    proptest::strategy::Just(vec![0xffu8; 9]),
                    proptest::strategy::Just(vec![0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
                    proptest::strategy::Just(vec![0xff, 0xff, 0xff, 0x0f]),
                    proptest::collection::vec(proptest::prelude::any::<u8>(), 1..4),
                ],
                0..16,
            ),
            requests in 0u64..=MAX_COUNT,
        ) {
            let payload = pieces.concat();
            let mut c = encode("a", 1, &counts()).unwrap();
            c.cohorts.canary = PublishedCohort {
                requests,
                errors: 0,
                compliant: 0,
                latency: with_payload(&payload),
            };
            match decode(&c, 1) {
                Ok(back) => {
                    let samples: u64 = back.canary.histogram.iter().sum();
                    proptest::prop_assert!(samples <= requests);
                }
                Err(bad) => proptest::prop_assert_eq!(bad.field, "canary.latency"),
            }
        }
    }

    #[test]
    fn errors_and_compliant_requests_together_and_latency_samples_are_at_most_the_requests() {
        // canary: 1000 requests, 100 errors, 900 compliant, 1000 latency samples.
        let good = encode("host:42:0:1", 3, &counts()).unwrap();
        let refused = |change: &dyn Fn(&mut PublishedCohort)| {
            let mut c = good.clone();
            change(&mut c.cohorts.canary);
            let err = decode(&c, 3).unwrap_err();
            (err.field.clone(), err.to_string())
        };
        // Each at most the requests, but not both together.
        let (field, text) = refused(&|c| c.errors = 101);
        assert_eq!(field, "canary.compliant", "{text}");
        assert!(
            text.contains("900 plus 101 errors is above the 1000 requests"),
            "{text}"
        );
        // More latency samples than requests.
        let (field, text) = refused(&|c| {
            c.requests = 999;
            c.errors = 0;
            c.compliant = 0;
        });
        assert_eq!(field, "canary.latency", "{text}");
        assert!(
            text.contains("1000 samples is above the 999 requests"),
            "{text}"
        );
        // A histogram of 2^48 + 1 samples is refused however many requests are claimed
        // (at most 2^48).
        let mut many = Counts::default();
        many.canary.histogram = histogram_of(&[100]);
        for n in many.canary.histogram.iter_mut().filter(|n| **n == 1) {
            *n = MAX_COUNT + 1;
        }
        many.stable.histogram = histogram_of(&[]);
        let mut c = encode("a", 1, &many).unwrap();
        c.cohorts.canary.requests = MAX_COUNT;
        let err = decode(&c, 1).unwrap_err();
        assert_eq!(err.field, "canary.latency", "{err}");
    }

    #[test]
    fn a_reading_taken_while_threads_record_is_published_consistent() {
        // A reading that caught threads between their increments: latencies counted before
        // their requests, errors and compliant requests counted after the requests were read.
        let mut caught = counts();
        caught.canary.requests = 997; // 1000 latency samples
        caught.stable.requests = 9000;
        caught.stable.errors = 95; // 8910 compliant: 9005 together
        let published = encode("a", 5, &caught).unwrap();
        assert_eq!(published.cohorts.canary.requests, 1000);
        assert_eq!(published.cohorts.stable.requests, 9005);
        let back = decode(&published, 5).unwrap();
        assert_eq!(back.canary.histogram, caught.canary.histogram);
        assert_eq!((back.stable.errors, back.stable.compliant), (95, 8910));
    }

    #[test]
    fn an_instance_id_above_its_bound_is_refused_by_its_first_characters() {
        let id = instance_id(SystemTime::now());
        assert!(id.len() <= MAX_INSTANCE_BYTES, "{id}");
        assert_eq!(check_instance(&id, id.len()), Ok(()));
        let long = "é".repeat(MAX_INSTANCE_BYTES);
        let bad = check_instance(&long, long.len()).unwrap_err();
        assert_eq!(bad.field, "instance");
        assert_eq!(bad.instance, "é".repeat(32));
        assert_eq!(bad.problem, "512 bytes is above 256");
        // The part shown in quotes, its whole length outside them.
        assert_eq!(
            bad.to_string(),
            format!(
                "contribution of instance \"{}\"...(512 bytes): instance: 512 bytes is above 256",
                "é".repeat(32)
            )
        );
    }

    #[test]
    fn a_refused_contribution_shows_at_most_a_shown_value_of_its_instance_id() {
        let id = "h".repeat(200);
        let bad = BadContribution::new(&id, "stage", "not a number");
        assert_eq!(
            bad.to_string(),
            format!(
                "contribution of instance \"{}\"...(200 bytes): stage: not a number",
                "h".repeat(crate::error::MAX_SHOWN_VALUE_BYTES)
            )
        );
    }

    #[test]
    fn a_refused_contribution_shows_its_instance_id_escaped() {
        // A character drawn as nothing, which `{:?}` shows as it is, is escaped.
        let bad = BadContribution::new("host\u{3164}\n", "stage", "not a number");
        assert_eq!(
            bad.to_string(),
            r#"contribution of instance "host\u{3164}\n": stage: not a number"#
        );
    }

    #[test]
    fn instance_ids_differ_per_gate_and_name_the_process() {
        let (a, b) = (
            instance_id(SystemTime::now()),
            instance_id(SystemTime::now()),
        );
        assert_ne!(a, b);
        let pid = std::process::id().to_string();
        assert_eq!(a.split(':').nth(1), Some(pid.as_str()), "{a}");
    }

    #[test]
    fn an_instance_id_says_when_its_gate_opened() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_800_000_000_123_456_789);
        assert_eq!(opened_at(&instance_id(at)), Some(at));
        // A wall clock in the year 3000 (17 hex digits in a u128) was read as no time.
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(32_503_680_000);
        assert!(opened_at(&instance_id(later)).is_some_and(|t| t > at));
        for foreign in ["", "a", "host:1:0:not-hex", "host:1:0:"] {
            assert_eq!(opened_at(foreign), None, "{foreign:?}");
        }
    }

    #[test]
    fn a_contribution_outlives_a_tick_that_waits_the_whole_busy_timeout() {
        let sqlite = |sync_interval_ms, busy_timeout_ms| {
            time_to_live(&StoreConfig::Sqlite(crate::SqliteStoreConfig {
                path: "g.db".into(),
                sync_interval_ms,
                busy_timeout_ms,
                fleet_judging: true,
            }))
        };
        let ms = Duration::from_millis;
        assert_eq!(sqlite(250, 2000), ms(2500), "the defaults");
        assert_eq!(sqlite(20, 0), ms(1000), "at least a second");
        assert_eq!(sqlite(1000, 2000), ms(5000), "at least five intervals");
        assert_eq!(sqlite(10, 60_000), ms(60_020));
    }

    /// An etcd tick can wait out the request timeout at each of its requests, and at each of a
    /// host's write it waits for: the lease of five sync intervals alone (1 s at 10 to 200 ms)
    /// expired in one such tick, and the others lost the live instance's counts until its
    /// next publication.
    #[cfg(feature = "etcd")]
    #[test]
    fn a_contribution_outlives_an_etcd_tick_whose_every_request_takes_its_timeout() {
        use crate::store::etcd::{REQUEST_TIMEOUT, SLOWEST_TICK, TICK_REQUESTS, WRITE_REQUESTS};
        let etcd = |sync_interval_ms| {
            time_to_live(&StoreConfig::Etcd(crate::EtcdStoreConfig {
                endpoints: vec!["http://127.0.0.1:2379".into()],
                prefix: "/pg".into(),
                sync_interval_ms,
                fleet_judging: true,
            }))
        };
        let ms = Duration::from_millis;
        assert_eq!(
            SLOWEST_TICK,
            REQUEST_TIMEOUT * (TICK_REQUESTS + WRITE_REQUESTS)
        );
        assert_eq!(SLOWEST_TICK, ms(20_000), "as the docs say");
        assert_eq!(etcd(1000), ms(22_000), "the default");
        assert_eq!(etcd(10), ms(20_020), "the shortest interval");
        assert_eq!(etcd(200), ms(20_400));
        assert_eq!(etcd(60_000), ms(300_000), "at least five intervals");
    }
}
