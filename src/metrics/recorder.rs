//! One recording thread's counters and latency histograms, per cohort, for one stage.
//!
//! **Single writer.** A recorder is only ever written by the thread that owns it (the
//! `thread_local::ThreadLocal` slot it lives in; a slot passes to a new thread only after its
//! previous owner has exited). So an increment is a relaxed load and a relaxed store of the
//! same atomic: plain `mov`s on x86-64, no `lock` prefix, no read-modify-write, and no cache
//! line that another recording thread writes. Readers load the same atomics concurrently and
//! see each counter as it was at some recent moment: never torn, never ahead of the writer.
//!
//! **Stage tag.** The recorder holds one stage's data. A record for a newer stage first clears
//! the recorder; a record for an older stage is counted as late and dropped. A clear follows
//! the seqlock pattern: the tag is set to [`CLEARING`], the counters are zeroed, then the new
//! tag is published with `Release`. A reader takes the tag with `Acquire`, reads, fences
//! (`Acquire`) and re-reads the tag; if it moved, what it read is discarded.

use crate::sync::{AtomicU64, Ordering, fence};

use super::layout::{LEN, index_of};
use crate::decision::{Cohort, PerCohort, StageId};

/// The tag a recorder shows while it is being cleared.
const CLEARING: u64 = u64::MAX;

/// Adds one to a counter that only the calling thread writes, and returns the new count.
#[inline]
fn increment(counter: &AtomicU64) -> u64 {
    let count = counter.load(Ordering::Relaxed).wrapping_add(1);
    counter.store(count, Ordering::Relaxed);
    count
}

/// One cohort's counters within a recorder.
#[derive(Debug)]
struct CohortCells {
    requests: AtomicU64,
    errors: AtomicU64,
    /// Requests that succeeded within the SLO latency target.
    compliant: AtomicU64,
    /// Failures in a row on this thread (not reset by a stage change: a streak is a streak).
    streak: AtomicU64,
    histogram: Box<[AtomicU64]>,
}

impl CohortCells {
    fn new() -> Self {
        Self {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            compliant: AtomicU64::new(0),
            streak: AtomicU64::new(0),
            histogram: (0..LEN).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn clear(&self) {
        for cell in [&self.requests, &self.errors, &self.compliant]
            .into_iter()
            .chain(self.histogram.iter())
        {
            cell.store(0, Ordering::Relaxed);
        }
    }
}

/// What happened to a recorded outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recorded {
    /// Counted for its stage and cohort.
    Counted,
    /// Its stage had ended (a promotion or rollback came between): dropped, so it cannot
    /// pollute the next stage.
    Late,
    /// Its stage is newer than the gate's: the decision was not made by this gate. Dropped.
    Foreign,
    /// Its request was forced by an override: counted apart, in neither cohort, so that it
    /// never distorts the judge's comparison.
    Forced,
}

/// What one record did, for the caller's evaluation trigger.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tally {
    pub(crate) recorded: Recorded,
    /// For a failure: errors of the outcome's cohort on this thread in this stage (after this
    /// record); 0 for a success.
    pub(crate) cohort_errors: u64,
    /// For a failure: failures in a row of the outcome's cohort on this thread (after this
    /// record); 0 for a success.
    pub(crate) cohort_streak: u64,
    /// Whether this thread should look at the clock now (see [`ThreadRecorder::paced`]).
    pub(crate) check_clock: bool,
}

/// The gate's newest stage, as its writers last published it. A record for a stage newer than
/// its recorder's is checked against it (a decision of another gate is refused). Writers set
/// it before they publish a snapshot of the stage, so a decision of that snapshot never finds
/// it older. The record path reads it at each record of its recorder's stage (one load of a
/// cell written only when a stage starts, so it stays in every core's cache): an outcome of a
/// stage the gate has left is late even on a thread whose recorder has not moved on yet.
#[derive(Debug)]
pub(crate) struct NewestStage(AtomicU64);

impl NewestStage {
    pub(crate) fn new(stage: StageId) -> Self {
        Self(AtomicU64::new(stage.0))
    }

    /// Called by the writer (under its lock) before publishing a snapshot of `stage`.
    pub(crate) fn set(&self, stage: StageId) {
        self.0.store(stage.0, Ordering::Release);
    }

    pub(crate) fn get(&self) -> StageId {
        StageId(self.0.load(Ordering::Acquire))
    }
}

/// One thread's recorder. About 40 KiB: two cohorts of 2560 eight-byte buckets.
#[derive(Debug)]
pub(crate) struct ThreadRecorder {
    stage: AtomicU64,
    late: AtomicU64,
    foreign: AtomicU64,
    /// Outcomes of forced requests (in neither cohort).
    forced: AtomicU64,
    /// Forcing values routing ignored on this thread.
    ignored_overrides: AtomicU64,
    /// Records left before this thread next looks at the clock (a look is due at 1 or 0).
    clock_countdown: AtomicU64,
    /// Records between the last two looks at the clock (1 ..= 64), paced to the thread's rate.
    clock_check_every: AtomicU64,
    /// The clock (monotonic ns) at the last look; 0 before the first.
    last_clock_check: AtomicU64,
    cohorts: PerCohort<CohortCells>,
}

/// Counts read from recorders: the sum of one stage's data.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct CohortCounts {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) compliant: u64,
    /// Empty when only counters were read.
    pub(crate) histogram: Vec<u64>,
}

impl ThreadRecorder {
    pub(crate) fn new() -> Self {
        Self {
            stage: AtomicU64::new(0),
            late: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            forced: AtomicU64::new(0),
            ignored_overrides: AtomicU64::new(0),
            clock_countdown: AtomicU64::new(1),
            clock_check_every: AtomicU64::new(1),
            last_clock_check: AtomicU64::new(0),
            cohorts: PerCohort::from_fn(|_| CohortCells::new()),
        }
    }

    /// Records one outcome. `newest` is the gate's current stage: an outcome of an older stage
    /// is late even when this thread's recorder still holds that stage (it recorded nothing
    /// since the stage changed), and one of a newer stage is another gate's.
    #[inline]
    pub(crate) fn record(
        &self,
        stage: StageId,
        cohort: Cohort,
        success: bool,
        micros: u64,
        compliant: bool,
        newest: &NewestStage,
    ) -> Tally {
        // One counter paces the looks at the clock: it stays at 0 until `paced` resets it.
        let countdown = self.clock_countdown.load(Ordering::Relaxed);
        let check_clock = countdown <= 1;
        self.clock_countdown
            .store(countdown.saturating_sub(1), Ordering::Relaxed);
        if (self.stage.load(Ordering::Relaxed) != stage.0 || newest.get() != stage)
            && let Some(recorded) = self.change_stage(stage, newest)
        {
            return Tally {
                recorded,
                cohort_errors: 0,
                cohort_streak: 0,
                check_clock,
            };
        }
        let cells = &self.cohorts[cohort];
        increment(&cells.histogram[index_of(micros)]);
        increment(&cells.requests);
        if success {
            if compliant {
                increment(&cells.compliant);
            }
            if cells.streak.load(Ordering::Relaxed) != 0 {
                cells.streak.store(0, Ordering::Relaxed);
            }
            Tally {
                recorded: Recorded::Counted,
                cohort_errors: 0,
                cohort_streak: 0,
                check_clock,
            }
        } else {
            Tally {
                recorded: Recorded::Counted,
                cohort_errors: increment(&cells.errors),
                cohort_streak: increment(&cells.streak),
                check_clock,
            }
        }
    }

    /// Paces this thread's looks at the clock: called at a look, with the time, it sets the
    /// next look so that a thread looks about every `target` of its own time (every record
    /// when it is slow, every 64 records when it is fast). Only the owning thread calls it.
    #[cold]
    pub(crate) fn paced(&self, now_ns: u64, target_ns: u64) {
        // The countdown ran out, so the records since the last look are the last pacing.
        let since = self.clock_check_every.load(Ordering::Relaxed);
        let last = self.last_clock_check.load(Ordering::Relaxed);
        let elapsed = now_ns.saturating_sub(last);
        let every = if last == 0 {
            1 // first look: learn the rate at the next record
        } else if elapsed == 0 {
            MAX_CLOCK_CHECK_EVERY
        } else {
            let fit = u128::from(since) * u128::from(target_ns) / u128::from(elapsed);
            u64::try_from(fit)
                .unwrap_or(u64::MAX)
                .clamp(1, MAX_CLOCK_CHECK_EVERY)
        };
        self.clock_check_every.store(every, Ordering::Relaxed);
        self.clock_countdown.store(every, Ordering::Relaxed);
        self.last_clock_check
            .store(now_ns.max(1), Ordering::Relaxed);
    }

    /// The outcome's stage is not both the recorder's and the gate's newest: drops a late or
    /// foreign outcome (returning why), or clears the recorder for the gate's newest stage
    /// (returning `None`). Out of line, so that the common path keeps a small frame.
    #[cold]
    #[inline(never)]
    fn change_stage(&self, stage: StageId, newest: &NewestStage) -> Option<Recorded> {
        let newest = newest.get();
        if stage < newest || stage.0 < self.stage.load(Ordering::Relaxed) {
            increment(&self.late);
            Some(Recorded::Late)
        } else if stage > newest {
            increment(&self.foreign);
            Some(Recorded::Foreign)
        } else {
            self.clear_for(stage);
            None
        }
    }

    fn clear_for(&self, stage: StageId) {
        self.stage.store(CLEARING, Ordering::Relaxed);
        fence(Ordering::Release);
        for cells in self.cohorts.iter() {
            cells.clear();
        }
        self.stage.store(stage.0, Ordering::Release);
    }

    /// Adds this recorder's data for `stage` into `into` (per cohort), reading through
    /// `scratch` (whose buffers are reused: no allocation once they have their size). With
    /// `histograms` false only the counters are read. Returns false (adding nothing) if the
    /// recorder holds another stage or was cleared while being read.
    ///
    /// With `histograms`, the requests read are the histogram's samples, not the `requests`
    /// counter: [`record`](Self::record) counts every request it counts in exactly one
    /// histogram bucket (its latency's) and in `requests`, so at rest the two are equal, but
    /// a thread recording during the read adds to both between the loads, and the counter
    /// loaded before the 2560 buckets lags them by every record made meanwhile. Counting the
    /// samples read makes a reading's requests and its latency histogram one count (what the
    /// exporters promise: `promotion_window_requests` equal to the histogram's `_count`),
    /// with nothing added to the record path. Its errors and compliant requests are still
    /// read apart, before the buckets.
    pub(crate) fn add_to(
        &self,
        stage: StageId,
        into: &mut PerCohort<CohortCounts>,
        scratch: &mut PerCohort<CohortCounts>,
        histograms: bool,
    ) -> bool {
        if self.stage.load(Ordering::Acquire) != stage.0 {
            return false;
        }
        for (cells, out) in self.cohorts.iter().zip(scratch.iter_mut()) {
            out.errors = cells.errors.load(Ordering::Relaxed);
            out.compliant = cells.compliant.load(Ordering::Relaxed);
            out.histogram.clear();
            out.requests = if histograms {
                let mut samples = 0u64;
                out.histogram.extend(cells.histogram.iter().map(|c| {
                    let n = c.load(Ordering::Relaxed);
                    samples = samples.wrapping_add(n);
                    n
                }));
                samples
            } else {
                cells.requests.load(Ordering::Relaxed)
            };
        }
        fence(Ordering::Acquire);
        if self.stage.load(Ordering::Relaxed) != stage.0 {
            return false;
        }
        for (out, add) in into.iter_mut().zip(scratch.iter()) {
            out.add(add);
        }
        true
    }

    /// Outcomes this thread dropped as late.
    pub(crate) fn late(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }

    /// Outcomes this thread dropped as foreign.
    pub(crate) fn foreign(&self) -> u64 {
        self.foreign.load(Ordering::Relaxed)
    }

    /// Counts a forced request's outcome. Only the owning thread calls it.
    pub(crate) fn count_forced(&self) {
        increment(&self.forced);
    }

    /// Counts an outcome dropped as foreign (its stage newer than the gate's).
    pub(crate) fn count_foreign(&self) {
        increment(&self.foreign);
    }

    /// Outcomes of forced requests this thread counted.
    pub(crate) fn forced(&self) -> u64 {
        self.forced.load(Ordering::Relaxed)
    }

    /// Counts an ignored forcing value. Only the owning thread calls it.
    pub(crate) fn count_ignored_override(&self) {
        increment(&self.ignored_overrides);
    }

    /// Forcing values this thread's routing ignored.
    pub(crate) fn ignored_overrides(&self) -> u64 {
        self.ignored_overrides.load(Ordering::Relaxed)
    }
}

impl CohortCounts {
    /// Test counts: `requests` samples in each histogram bucket `index` of `buckets` (a bucket
    /// named twice counts both), none failed, every one compliant.
    #[cfg(test)]
    pub(crate) fn compliant_in_buckets(buckets: &[(usize, u64)]) -> CohortCounts {
        let mut histogram = vec![0; LEN];
        for &(index, requests) in buckets {
            histogram[index] += requests;
        }
        let requests = buckets.iter().map(|&(_, requests)| requests).sum();
        CohortCounts {
            requests,
            errors: 0,
            compliant: requests,
            histogram,
        }
    }

    /// Adds `other` to `self`, histogram included: `self`'s histogram first grows to
    /// `other`'s length if it is shorter (the one case that allocates).
    pub(crate) fn add(&mut self, other: &CohortCounts) {
        self.add_counters(other);
        if self.histogram.len() < other.histogram.len() {
            self.histogram.resize(other.histogram.len(), 0);
        }
        self.add_histogram(other);
    }

    /// Adds `other`'s requests, errors and compliant requests, not its histogram.
    pub(crate) fn add_counters(&mut self, other: &CohortCounts) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.compliant += other.compliant;
    }

    /// Adds `other`'s histogram to `self`'s, bucket by bucket, over the buckets both have:
    /// never allocates (the caller gives `self` the length it needs first).
    pub(crate) fn add_histogram(&mut self, other: &CohortCounts) {
        for (a, b) in self.histogram.iter_mut().zip(&other.histogram) {
            *a += b;
        }
    }

    /// Writes `self - base` into `out`, element-wise, never below zero; `out`'s buffer is
    /// reused. With an empty `base` histogram, `out` gets `self`'s histogram.
    pub(crate) fn since_into(&self, base: &CohortCounts, out: &mut CohortCounts) {
        out.requests = self.requests.saturating_sub(base.requests);
        out.errors = self.errors.saturating_sub(base.errors);
        out.compliant = self.compliant.saturating_sub(base.compliant);
        out.histogram.clear();
        out.histogram.extend(
            self.histogram
                .iter()
                .enumerate()
                .map(|(i, v)| v.saturating_sub(base.histogram.get(i).copied().unwrap_or(0))),
        );
    }

    /// Zeroes the counters and, with `histograms`, sizes the histogram to `len` zeros (keeping
    /// its buffer); without, empties it.
    pub(crate) fn reset(&mut self, histograms: bool, len: usize) {
        self.requests = 0;
        self.errors = 0;
        self.compliant = 0;
        self.histogram.clear();
        if histograms {
            self.histogram.resize(len, 0);
        }
    }

    /// Copies `other` into `self`, reusing `self`'s buffer.
    pub(crate) fn copy_from(&mut self, other: &CohortCounts) {
        self.requests = other.requests;
        self.errors = other.errors;
        self.compliant = other.compliant;
        self.histogram.clear();
        self.histogram.extend_from_slice(&other.histogram);
    }
}

/// Most records between two looks at the clock.
pub(crate) const MAX_CLOCK_CHECK_EVERY: u64 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_cohort_and_drops_late_outcomes() {
        let rec = ThreadRecorder::new();
        let s1 = StageId(1);
        let newest = NewestStage::new(s1);
        assert_eq!(
            rec.record(s1, Cohort::Canary, true, 100, true, &newest)
                .recorded,
            Recorded::Counted
        );
        rec.record(s1, Cohort::Canary, false, 200, false, &newest);
        rec.record(s1, Cohort::Stable, true, 300, true, &newest);
        let mut sum: PerCohort<CohortCounts> = Default::default();
        let mut scratch: PerCohort<CohortCounts> = Default::default();
        assert!(rec.add_to(s1, &mut sum, &mut scratch, true));
        assert_eq!(
            (sum.canary.requests, sum.canary.errors, sum.canary.compliant),
            (2, 1, 1)
        );
        assert_eq!(sum.canary.histogram.iter().sum::<u64>(), 2);
        assert_eq!(sum.stable.requests, 1);

        // A newer stage of the gate clears; an older one is late.
        newest.set(StageId(2));
        rec.record(StageId(2), Cohort::Canary, true, 5, true, &newest);
        let late = rec.record(s1, Cohort::Canary, true, 5, true, &newest);
        assert_eq!(late.recorded, Recorded::Late);
        // A stage newer than the gate's is refused and clears nothing.
        let foreign = rec.record(StageId(10), Cohort::Canary, true, 5, true, &newest);
        assert_eq!(foreign.recorded, Recorded::Foreign);
        assert_eq!((rec.late(), rec.foreign()), (1, 1));
        assert_eq!(rec.late(), 1);
        let mut sum: PerCohort<CohortCounts> = Default::default();
        assert!(!rec.add_to(s1, &mut sum, &mut scratch, false));
        assert!(rec.add_to(StageId(2), &mut sum, &mut scratch, false));
        assert_eq!(sum.canary.requests, 1);
        assert!(sum.canary.histogram.is_empty());
    }

    #[test]
    fn a_recorder_is_two_histograms_and_a_few_counters() {
        // What BENCHMARKS.md states per recording thread: the recorder's 160 B (eight counters
        // of its own; per cohort four and its histogram's boxed slice, a pointer and a length),
        // within two cache lines of its thread-local slot, and 2 × 2560 × 8 B of histograms on
        // the heap.
        let size = std::mem::size_of::<ThreadRecorder>();
        let boxed = 2 * std::mem::size_of::<usize>();
        assert_eq!(size, 8 * 8 + 2 * (4 * 8 + boxed), "{size} B");
        #[cfg(target_pointer_width = "64")]
        assert_eq!(size, 160);
        let padded = std::mem::size_of::<crossbeam_utils::CachePadded<ThreadRecorder>>();
        assert!(padded <= 256, "{padded} B");
        let rec = ThreadRecorder::new();
        let heap: usize = rec
            .cohorts
            .iter()
            .map(|c| std::mem::size_of_val(&*c.histogram))
            .sum();
        assert_eq!(heap, 2 * LEN * 8);
    }

    #[test]
    fn since_subtracts_without_underflow() {
        let a = CohortCounts {
            requests: 10,
            errors: 2,
            compliant: 7,
            histogram: vec![3, 7],
        };
        let b = CohortCounts {
            requests: 4,
            errors: 3,
            compliant: 1,
            histogram: vec![1],
        };
        let mut d = CohortCounts::default();
        a.since_into(&b, &mut d);
        assert_eq!((d.requests, d.errors, d.compliant), (6, 0, 6));
        assert_eq!(d.histogram, vec![2, 7]);
    }

    #[test]
    fn counters_and_histograms_add_apart() {
        let other = CohortCounts {
            requests: 10,
            errors: 2,
            compliant: 7,
            histogram: vec![3, 7, 1],
        };
        let base = || CohortCounts {
            requests: 1,
            errors: 1,
            compliant: 0,
            histogram: vec![5, 5],
        };
        let mut counters = base();
        counters.add_counters(&other);
        assert_eq!(
            (counters.requests, counters.errors, counters.compliant),
            (11, 3, 7)
        );
        assert_eq!(
            counters.histogram,
            vec![5, 5],
            "the histogram is left alone"
        );

        // Over the buckets both have, in the same buffer: a shorter one is not grown.
        let mut histogram = base();
        let buffer = (histogram.histogram.as_ptr(), histogram.histogram.capacity());
        histogram.add_histogram(&other);
        assert_eq!(histogram.histogram, vec![8, 12]);
        assert_eq!(
            buffer,
            (histogram.histogram.as_ptr(), histogram.histogram.capacity())
        );
        assert_eq!((histogram.requests, histogram.errors), (1, 1));

        // Both, the histogram grown to the longer length.
        let mut both = base();
        both.add(&other);
        assert_eq!(
            both,
            CohortCounts {
                requests: 11,
                errors: 3,
                compliant: 7,
                histogram: vec![8, 12, 1],
            }
        );
        let mut empty = CohortCounts::default();
        empty.add(&other);
        assert_eq!(empty, other);
    }

    /// A recorder that still holds the stage that ended (its thread recorded nothing since)
    /// drops that stage's outcomes as late: they would be counted where no reader looks.
    #[test]
    fn an_outcome_of_an_ended_stage_is_late_on_a_recorder_that_still_holds_it() {
        let rec = ThreadRecorder::new();
        let newest = NewestStage::new(StageId(1));
        let record = |stage| {
            rec.record(stage, Cohort::Canary, true, 5, true, &newest)
                .recorded
        };
        assert_eq!(record(StageId(1)), Recorded::Counted);
        newest.set(StageId(2));
        assert_eq!(record(StageId(1)), Recorded::Late);
        assert_eq!(rec.late(), 1);
        let mut sum: PerCohort<CohortCounts> = Default::default();
        let mut scratch: PerCohort<CohortCounts> = Default::default();
        assert!(rec.add_to(StageId(1), &mut sum, &mut scratch, false));
        assert_eq!(sum.canary.requests, 1, "the late outcome was counted");
        assert_eq!(record(StageId(2)), Recorded::Counted);
    }

    #[test]
    fn clock_looks_are_paced_to_the_thread_rate() {
        let ms = 1_000_000u64;
        let one = NewestStage::new(StageId(1));
        let record =
            |rec: &ThreadRecorder| rec.record(StageId(1), Cohort::Stable, true, 1, true, &one);
        // A slow thread (one record a second, target 250 ms) looks at every record.
        let slow = ThreadRecorder::new();
        for i in 1..=5u64 {
            let tally = record(&slow);
            assert!(tally.check_clock, "record {i}");
            slow.paced(i * 1000 * ms, 250 * ms);
        }
        // A fast thread (a record a microsecond) looks every 64 records.
        let fast = ThreadRecorder::new();
        let mut looks = 0;
        for i in 1..=1000u64 {
            if record(&fast).check_clock {
                looks += 1;
                fast.paced(i * 1000, 250 * ms);
            }
        }
        assert!(
            looks <= 2 + 1000 / MAX_CLOCK_CHECK_EVERY as usize,
            "{looks} looks"
        );
    }
}
