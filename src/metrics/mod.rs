//! Outcome recording: per-thread recorders written without locks, merged on read into one
//! stage's totals, windowed in time. This module owns every atomic and histogram of the judge.
//!
//! Memory: about 40 KiB per recording thread (two cohorts of 2560 eight-byte buckets plus a few
//! counters), whatever the traffic or window; about 800 KiB per gate that records, for the
//! window's readings and an evaluation's scratch space (made at the first record, reused).
//! Recorders live as long as their gate; a thread that exits leaves its recorder (and what it
//! counted) to the next thread that starts, so their number is bounded by the most threads
//! that ever recorded at once.

mod fleet;
pub(crate) mod layout;
mod ledger;
#[cfg(all(test, promotion_gates_loom))]
mod loom_model;
mod recorder;
mod window;
mod window_base;

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use thread_local::ThreadLocal;

use crate::decision::{Cohort, PerCohort, StageId};
use crate::sync::{AtomicU64, MutexGuard, Ordering, let_go_then_fence};
use crate::thread_exit;
pub(crate) use fleet::Fleet;
use fleet::FleetCache;
pub(crate) use ledger::{FleetLedger, FleetReading, MAX_REMEMBERED};
pub(crate) use recorder::CohortCounts;
pub use recorder::Recorded;
pub(crate) use recorder::Tally;
use recorder::{NewestStage, ThreadRecorder};
pub(crate) use window::{Bursts, Counts, Measured, SLOTS, Silence, Spans, Window};
use window_base::{Base, WindowBase};

/// How far behind another thread's claim of an evaluation a thread's reading of the clock may
/// be (read just before it, then preempted) before the clock counts as gone back.
const CLOCK_LAG: Duration = Duration::from_secs(1);

/// Whether a clock reading `now_ns` went back well before `start_ns` (by more than
/// [`CLOCK_LAG`]).
fn went_back_before(now_ns: u64, start_ns: u64) -> bool {
    let lag = u64::try_from(CLOCK_LAG.as_nanos()).unwrap_or(u64::MAX);
    now_ns.saturating_add(lag) < start_ns
}

/// The recorders of one gate and the judge's window.
#[derive(Debug)]
pub(crate) struct Metrics {
    recorders: ThreadLocal<CachePadded<ThreadRecorder>>,
    /// From `crate::sync`: the evaluation's ask is a handshake with its holders
    /// (`monitor/ask.rs`), which the loom model runs on a stand-in for std's mutex.
    window: crate::sync::Mutex<Window>,
    /// Monotonic nanoseconds after which the record path runs a full evaluation. From
    /// `crate::sync`, for the claim's loom model (`loom_model.rs`).
    next_evaluation: CachePadded<AtomicU64>,
    /// The counters at the start of the last evaluated window, for the lock-free screen.
    window_base: CachePadded<WindowBase>,
    /// The gate's newest stage (read at each record of the recorder's own stage, which an
    /// older one has ended; written only when a stage starts).
    newest_stage: NewestStage,
    /// When the newest stage started (monotonic ns). Every reader takes the stage from a
    /// snapshot, which `install` publishes after `stage_started` (an `ArcSwap`: its swap
    /// releases and its load acquires), so a reader of the new stage reads its start; a judge of
    /// an older snapshot may read a newer stage's start. Not modelled: the order rests on the
    /// snapshot's `ArcSwap`, which loom cannot run, and loom 0.7.3 fails a model of
    /// `stage_start_by`'s compare-exchange racing this store on unchanged code (as it fails a
    /// four-line model of a relaxed compare-exchange racing a store: loom's, not ours).
    stage_start: AtomicU64,
    /// Other instances' counts of the stage, when the gate is on a state store (shared with
    /// the window, which measures against the part of them first read).
    fleet: Arc<FleetCache>,
    /// The recorder of threads that record while their thread-locals are being destroyed
    /// (see [`thread_exit`]), which find no recorder of their own: made at the first such
    /// record, written by one of them at a time (`exiting_turn`).
    exiting: OnceLock<CachePadded<ThreadRecorder>>,
    exiting_turn: Mutex<()>,
}

/// What the lock-free screen reads: the stage's counters, the window's, and the bursts
/// (histograms empty). The window and the bursts leave out what other instances showed when
/// first read, as the judge's window does.
#[derive(Debug, Default)]
pub(crate) struct ScreenCounts {
    pub(crate) stage: Counts,
    pub(crate) windowed: Counts,
    pub(crate) bursts: Bursts,
    /// How many instances the counts are of: this one and those in the fleet's data.
    pub(crate) instances: u32,
}

impl Metrics {
    /// Metrics of a gate whose first stage is `stage`.
    pub(crate) fn new(stage: StageId) -> Self {
        let fleet = Arc::new(FleetCache::default());
        Self {
            recorders: ThreadLocal::new(),
            window: crate::sync::Mutex::new(Window::of_fleet(Arc::clone(&fleet))),
            next_evaluation: CachePadded::new(AtomicU64::new(0)),
            window_base: CachePadded::new(WindowBase::new()),
            newest_stage: NewestStage::new(stage),
            stage_start: AtomicU64::new(0),
            fleet,
            exiting: OnceLock::new(),
            exiting_turn: Mutex::new(()),
        }
    }

    /// Tells the recorders that `stage` is the gate's newest, started at `now` (monotonic).
    /// The writer calls it, under its lock, before it publishes a snapshot of that stage.
    pub(crate) fn stage_started(&self, stage: StageId, now: Duration) {
        let ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        self.stage_start.store(ns, Ordering::Relaxed);
        self.newest_stage.set(stage);
    }

    /// When the newest stage started (monotonic).
    pub(crate) fn stage_start(&self) -> Duration {
        Duration::from_nanos(self.stage_start.load(Ordering::Relaxed))
    }

    /// When the newest stage started, for an evaluation at `now`: a clock that went back well
    /// before the start (a host's, against `Clock`'s contract; by more than [`CLOCK_LAG`])
    /// starts the stage again at `now`, so its warm-up and no-data time count from there, not
    /// from a start the clock may take hours to reach again. Only the judging path calls it;
    /// a read calls [`stage_start_seen_by`](Self::stage_start_seen_by).
    pub(crate) fn stage_start_by(&self, now: Duration) -> Duration {
        let now_ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        let start = self.stage_start.load(Ordering::Relaxed);
        if !went_back_before(now_ns, start) {
            return Duration::from_nanos(start);
        }
        // A stage started meanwhile (by the writer, at a later time) keeps its start.
        let kept =
            self.stage_start
                .compare_exchange(start, now_ns, Ordering::Relaxed, Ordering::Relaxed);
        Duration::from_nanos(kept.map_or_else(|newer| newer, |_| now_ns))
    }

    /// When the newest stage started, as [`stage_start_by`](Self::stage_start_by) would take
    /// it at `now`, without moving it: for reads (`health`, the latency histograms, the
    /// exports), which must leave the stage's warm-up and no-data time as they were. A clock
    /// that went back well before the start reads the stage as started at `now`, as the next
    /// evaluation will restart it.
    pub(crate) fn stage_start_seen_by(&self, now: Duration) -> Duration {
        let now_ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        let start = self.stage_start.load(Ordering::Relaxed);
        Duration::from_nanos(if went_back_before(now_ns, start) {
            now_ns
        } else {
            start
        })
    }

    /// Records one outcome on the calling thread's recorder. Lock-free; allocates only on a
    /// thread's first record.
    ///
    /// `inline(always)`: with a plain `#[inline]`, LLVM duplicated the call per cohort in
    /// `record_for` and then kept this function out of line, passing half its arguments and
    /// the `Tally` through the stack; record went from 6.1 to 9.5 ns (paired bench).
    #[inline(always)]
    pub(crate) fn record(
        &self,
        stage: StageId,
        cohort: Cohort,
        success: bool,
        latency: Duration,
        latency_target_ns: u64,
    ) -> Tally {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let compliant = success && latency.as_nanos() <= u128::from(latency_target_ns);
        let recorder = match self.recorders.get() {
            Some(recorder) => recorder,
            None => match self.first_recorder() {
                Some(recorder) => recorder,
                None => return self.record_exiting(stage, cohort, success, micros, compliant),
            },
        };
        recorder.record(
            stage,
            cohort,
            success,
            micros,
            compliant,
            &self.newest_stage,
        )
    }

    /// [`record`](Self::record) on a thread whose thread-locals are being destroyed: on the
    /// recorder that exiting threads share, in turn.
    #[cold]
    #[inline(never)]
    fn record_exiting(
        &self,
        stage: StageId,
        cohort: Cohort,
        success: bool,
        micros: u64,
        compliant: bool,
    ) -> Tally {
        self.with_exiting_recorder(|recorder| {
            recorder.record(
                stage,
                cohort,
                success,
                micros,
                compliant,
                &self.newest_stage,
            )
        })
    }

    /// Runs `count` on the recorder that threads share once their thread-locals are being
    /// destroyed (made at the first such thread's record), one thread at a time.
    #[cold]
    fn with_exiting_recorder<T>(&self, count: impl FnOnce(&ThreadRecorder) -> T) -> T {
        let _turn = self
            .exiting_turn
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        count(
            self.exiting
                .get_or_init(|| CachePadded::new(ThreadRecorder::new())),
        )
    }

    /// Every recorder: the threads' and the one exiting threads share.
    fn all_recorders(&self) -> impl Iterator<Item = &ThreadRecorder> {
        let exiting = self.exiting.get().map(|recorder| &**recorder);
        self.recorders
            .iter()
            .map(|recorder| &**recorder)
            .chain(exiting)
    }

    /// The calling thread's recorder, made at its first record (`None`: the thread is exiting,
    /// see [`thread_exit`]). Out of line, so that the common path inlines `ThreadLocal::get`
    /// alone.
    #[cold]
    #[inline(never)]
    fn first_recorder(&self) -> Option<&ThreadRecorder> {
        let recorder = thread_exit::slot(|| {
            self.recorders.get_or(|| {
                // A thread's first record also makes the gate's evaluation buffers (once per
                // gate), so that evaluating from the record path never allocates; never waiting
                // for them: while the window is held, its holder's evaluation makes them.
                if let Some(mut window) = self.try_lock_window() {
                    window.prepare();
                    // An evaluation asked for meanwhile is the caller's to make (the record
                    // path's first look at the clock takes the ask): the fence orders the
                    // window let go before the caller's load of the ask (see
                    // `Monitor::wanted_evaluation`).
                    let_go_then_fence(window);
                }
                CachePadded::new(ThreadRecorder::new())
            })
        });
        recorder.map(|recorder| &**recorder)
    }

    /// Sums every recorder's data for `stage` into `out`, reading through `scratch`. With
    /// `histograms` false only the counters are read. Reuses the buffers: no allocation once
    /// they have their size.
    pub(crate) fn read_into(
        &self,
        stage: StageId,
        out: &mut Counts,
        scratch: &mut Counts,
        histograms: bool,
    ) {
        for cohort in out.iter_mut() {
            cohort.reset(histograms, layout::LEN);
        }
        for recorder in self.all_recorders() {
            // A recorder cleared mid-read is re-read once; after that it has moved to a newer
            // stage and holds nothing of `stage`.
            if !recorder.add_to(stage, out, scratch, histograms) {
                recorder.add_to(stage, out, scratch, histograms);
            }
        }
    }

    /// Adds the other instances' counts of `stage` (as the store's sync thread last read them)
    /// to `into`, a reading of this process's recorders; returns how many instances the sum is
    /// of (1: this one alone). Lock-free, no allocation. With `histograms` (an evaluation,
    /// which holds the window) the window then measures against the same read.
    pub(crate) fn add_fleet(&self, stage: StageId, into: &mut Counts, histograms: bool) -> u32 {
        1 + self.fleet.add_to(stage, into, histograms).0
    }

    /// Replaces the other instances' counts that evaluations add (`None`: none); returns the
    /// ones replaced, for the caller to keep until no other thread holds them
    /// ([`FleetCache::set`]).
    #[must_use = "kept until no other thread holds it, so that no request's thread frees it"]
    pub(crate) fn set_fleet(&self, fleet: Option<Fleet>) -> Option<Arc<Fleet>> {
        self.fleet.set(fleet)
    }

    /// This process's cumulative counts of `stage`, with histograms, in new buffers (for the
    /// store's sync thread, which publishes them).
    pub(crate) fn stage_counts(&self, stage: StageId) -> Counts {
        let (mut out, mut scratch) = (window::sized(), window::sized());
        self.read_into(stage, &mut out, &mut scratch, true);
        out
    }

    /// Paces the calling thread's looks at the clock (see `ThreadRecorder::paced`).
    pub(crate) fn paced(&self, now: Duration, target: Duration) {
        if let Some(recorder) = self.recorders.get() {
            let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            recorder.paced(ns(now), ns(target));
        }
    }

    /// Remembers the counters at the start of the window just evaluated (the screen's base).
    /// Only the window's holder calls it.
    pub(crate) fn set_window_base(
        &self,
        stage: StageId,
        counts: PerCohort<[u64; 3]>,
        bursts: [PerCohort<[u64; 2]>; 2],
    ) {
        self.window_base.write(stage, &Base { counts, bursts });
    }

    /// The stage's counters, those within the last evaluated window and the bursts, read
    /// without a lock and without allocating (histograms empty). `None` when the window's
    /// base was being written at each try (see [`WindowBase::read`]).
    pub(crate) fn read_screen_counters(&self, stage: StageId) -> Option<ScreenCounts> {
        // The base first: it was read from the recorders before, so the counters read after
        // it are never behind it (read after them, a newer base could be).
        let base = self.window_base.read(stage)?;
        let mut counts = ScreenCounts::default();
        let mut scratch = Counts::default();
        self.read_into(stage, &mut counts.stage, &mut scratch, false);
        let (others, joined) = self.fleet.add_to(stage, &mut counts.stage, false);
        counts.instances = 1 + others;
        let mut screened = PerCohort::<[u64; 2]>::default();
        for cohort in Cohort::ALL {
            // As the window measures: without what the others showed when first read.
            let (stage, joined) = (&counts.stage[cohort], joined[cohort]);
            let now = [
                stage.requests.saturating_sub(joined[0]),
                stage.errors.saturating_sub(joined[1]),
                stage.compliant.saturating_sub(joined[2]),
            ];
            let base = &base.counts[cohort];
            let windowed = &mut counts.windowed[cohort];
            windowed.requests = now[0].saturating_sub(base[0]);
            windowed.errors = now[1].saturating_sub(base[1]);
            windowed.compliant = now[2].saturating_sub(base[2]);
            screened[cohort] = [now[0], now[1]];
        }
        counts.bursts = Bursts::since(screened, base.bursts);
        Some(counts)
    }

    /// Outcomes dropped as late, over all threads.
    pub(crate) fn late(&self) -> u64 {
        self.all_recorders().map(ThreadRecorder::late).sum()
    }

    /// Outcomes dropped as foreign, over all threads.
    pub(crate) fn foreign(&self) -> u64 {
        self.all_recorders().map(ThreadRecorder::foreign).sum()
    }

    /// Counts a forced request's outcome on the calling thread's recorder.
    pub(crate) fn forced_outcome(&self, stage: StageId) -> Recorded {
        self.with_recorder(|recorder| {
            // A stage newer than the gate's is no decision of this gate's (another gate's, or
            // one from before a restart): dropped as foreign, as an unforced one is.
            if stage > self.newest_stage.get() {
                recorder.count_foreign();
                return Recorded::Foreign;
            }
            recorder.count_forced();
            Recorded::Forced
        })
    }

    /// Outcomes of forced requests, over all threads.
    pub(crate) fn forced(&self) -> u64 {
        self.all_recorders().map(ThreadRecorder::forced).sum()
    }

    /// Counts an ignored forcing value on the calling thread's recorder.
    pub(crate) fn ignored_override_value(&self) {
        self.with_recorder(ThreadRecorder::count_ignored_override);
    }

    /// Makes the calling thread's recorder if it has none (not on a thread that is exiting).
    pub(crate) fn prepare_thread(&self) {
        self.recorder();
    }

    /// Forcing values ignored, over all threads.
    pub(crate) fn ignored_overrides(&self) -> u64 {
        self.all_recorders()
            .map(ThreadRecorder::ignored_overrides)
            .sum()
    }

    /// Runs `count` on the calling thread's recorder, or on the shared one of exiting threads.
    fn with_recorder<T>(&self, count: impl FnOnce(&ThreadRecorder) -> T) -> T {
        match self.recorder() {
            Some(recorder) => count(recorder),
            None => self.with_exiting_recorder(count),
        }
    }

    /// The calling thread's recorder, made at its first use; `None` on a thread that is
    /// exiting (see [`with_recorder`](Self::with_recorder)).
    fn recorder(&self) -> Option<&ThreadRecorder> {
        match self.recorders.get() {
            Some(recorder) => Some(recorder),
            None => self.first_recorder(),
        }
    }

    /// Claims the full evaluation due at `now`, if one is: true for exactly one caller per
    /// `interval`, which must then evaluate. A clock that went back well before the last claim
    /// (a host's, against `Clock`'s contract) makes one due at once, so the evaluations pause
    /// for about an interval, not for as long as the clock went back; "well before": by more
    /// than the interval or [`CLOCK_LAG`]. A clock at the end of the range (past 584 years)
    /// makes none due.
    pub(crate) fn claim_evaluation(&self, now: Duration, interval: Duration) -> bool {
        let now_ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        let interval_ns = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
        let due = self.next_evaluation.load(Ordering::Relaxed);
        let claimed = due.saturating_sub(interval_ns);
        let lag = u64::try_from(interval.max(CLOCK_LAG).as_nanos()).unwrap_or(u64::MAX);
        let went_back = now_ns.saturating_add(lag) < claimed;
        let due_now = now_ns >= due && due < u64::MAX;
        if !due_now && !went_back {
            return false;
        }
        let next = now_ns.saturating_add(interval_ns);
        self.next_evaluation
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// The window, if no one else is evaluating (the record path never waits).
    pub(crate) fn try_lock_window(&self) -> Option<MutexGuard<'_, Window>> {
        match self.window.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// The window, blocking.
    pub(crate) fn lock_window(&self) -> MutexGuard<'_, Window> {
        // The window is rebuilt from readings; a panic mid-update leaves it usable.
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A latency histogram of one cohort, as an `hdrhistogram::Histogram` in microseconds
/// (1 µs ..= 60 s, two significant figures): the same layout, so the conversion is exact.
pub(crate) fn to_histogram(buckets: &[u64]) -> Option<Histogram<u64>> {
    let (lowest, highest, digits) = histogram_bounds();
    let mut h = Histogram::new_with_bounds(lowest, highest, digits).ok()?;
    for (i, &count) in buckets.iter().enumerate() {
        if count > 0 {
            h.record_n(layout::lowest_of(i), count).ok()?;
        }
    }
    Some(h)
}

/// The bounds and precision of the gate's latency histograms: lowest and highest trackable
/// microseconds, significant figures.
pub(crate) fn histogram_bounds() -> (u64, u64, u8) {
    (1, layout::MAX_MICROS, 2)
}

/// Writes `histogram`'s counts into `buckets` in the gate's layout (sized to it); exact for a
/// histogram of [`histogram_bounds`].
pub(crate) fn from_histogram(histogram: &Histogram<u64>, buckets: &mut Vec<u64>) {
    buckets.clear();
    buckets.resize(layout::LEN, 0);
    for value in histogram.iter_recorded() {
        buckets[layout::index_of(value.value_iterated_to())] += value.count_at_value();
    }
}

/// The middle of bucket `index`, in microseconds: the value a bucket's samples count as when
/// two histograms are compared.
pub(crate) fn bucket_midpoint(index: usize) -> f64 {
    (layout::lowest_of(index) + layout::highest_of(index)) as f64 / 2.0
}

/// Count of samples strictly above `micros`, counting only buckets entirely above it.
pub(crate) fn count_above(buckets: &[u64], micros: u64) -> u64 {
    buckets
        .iter()
        .enumerate()
        .filter(|(i, _)| layout::lowest_of(*i) > micros)
        .map(|(_, c)| c)
        .sum()
}

/// The value at `quantile` (0..=1), as the highest latency of its bucket, in microseconds.
pub(crate) fn quantile_micros(buckets: &[u64], quantile: f64) -> u64 {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return 0;
    }
    let rank = ((quantile.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    rank_micros(buckets, rank, Edge::Highest)
}

/// Which end of a bucket a read takes: a bucket's samples lie anywhere within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edge {
    /// Its lowest latency: at or below every sample in it (for a lower bound).
    Lowest,
    /// Its highest latency: at or above every sample in it (for an upper bound).
    Highest,
}

/// The `rank`-th smallest sample (from 1), as the `edge` of its bucket, in microseconds: 0 with
/// no sample, the highest latency held when `rank` is beyond the samples.
pub(crate) fn rank_micros(buckets: &[u64], rank: u64, edge: Edge) -> u64 {
    let mut seen = 0u64;
    for (i, &count) in buckets.iter().enumerate() {
        seen = seen.saturating_add(count);
        if seen >= rank.max(1) {
            return match edge {
                Edge::Lowest => layout::lowest_of(i),
                Edge::Highest => layout::highest_of(i),
            };
        }
    }
    if seen == 0 { 0 } else { layout::MAX_MICROS }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_agree_with_hdrhistogram() {
        let mut buckets = vec![0u64; layout::LEN];
        for v in 1..=10_000u64 {
            buckets[layout::index_of(v * 37 % 250_000 + 1)] += 1;
        }
        let h = to_histogram(&buckets).unwrap();
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                quantile_micros(&buckets, q),
                h.value_at_quantile(q),
                "q {q}"
            );
        }
        assert_eq!(h.len(), 10_000);
    }

    #[test]
    fn one_evaluation_is_due_per_interval_and_at_once_after_the_clock_went_back() {
        let metrics = Metrics::new(StageId(1));
        let (s, ms) = (Duration::from_secs, Duration::from_millis);
        let interval = s(1);
        assert!(metrics.claim_evaluation(s(3_600), interval));
        assert!(
            !metrics.claim_evaluation(s(3_600), interval),
            "claimed once"
        );
        // A reading taken just before the claim, by a thread then preempted: not due.
        assert!(!metrics.claim_evaluation(s(3_600) - ms(900), interval));
        assert!(metrics.claim_evaluation(s(3_601), interval));
        // Back by an hour: due at once (it was not for an hour), then once per interval.
        assert!(metrics.claim_evaluation(s(1), interval));
        assert!(!metrics.claim_evaluation(s(1) + ms(500), interval));
        assert!(metrics.claim_evaluation(s(2), interval));
        // At the end of the clock's range, none is due on every look.
        assert!(metrics.claim_evaluation(Duration::MAX, interval));
        assert!(!metrics.claim_evaluation(Duration::MAX, interval));
    }

    #[test]
    fn only_the_judging_path_moves_the_stage_start() {
        let s = Duration::from_secs;
        let metrics = Metrics::new(StageId(1));
        metrics.stage_started(StageId(1), s(10_000));
        // Within CLOCK_LAG of the start, or after it: the start as it is, either way.
        for now in [s(9_999) + Duration::from_millis(500), s(10_000), s(20_000)] {
            assert_eq!(metrics.stage_start_seen_by(now), s(10_000));
            assert_eq!(metrics.stage_start_by(now), s(10_000));
        }
        // Back by more: a read sees the stage as started now, and moves nothing...
        assert_eq!(metrics.stage_start_seen_by(s(100)), s(100));
        assert_eq!(metrics.stage_start(), s(10_000));
        assert_eq!(metrics.stage_start_seen_by(s(225)), s(225));
        // ...while an evaluation restarts it there.
        assert_eq!(metrics.stage_start_by(s(100)), s(100));
        assert_eq!(metrics.stage_start(), s(100));
        assert_eq!(metrics.stage_start_seen_by(s(225)), s(100));
    }

    #[test]
    fn threads_that_exit_keep_what_they_recorded() {
        let s = StageId(1);
        let metrics = Metrics::new(s);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for i in 0..1000 {
                        metrics.record(
                            s,
                            Cohort::Canary,
                            i % 10 != 0,
                            Duration::from_millis(1),
                            1_000_000_000, // a 1 s latency target
                        );
                    }
                });
            }
        });
        let (mut sum, mut scratch): (Counts, Counts) = Default::default();
        metrics.read_into(s, &mut sum, &mut scratch, true);
        assert_eq!(sum.canary.requests, 4000);
        assert_eq!(sum.canary.errors, 400);
        assert_eq!(sum.canary.compliant, 3600);
        assert_eq!(sum.canary.histogram.iter().sum::<u64>(), 4000);
    }
}

/// Builders of hand-made cohorts for the judge's unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A histogram of `values` (microseconds).
    pub(crate) fn histogram_of(values: &[u64]) -> Vec<u64> {
        let mut histogram = vec![0u64; layout::LEN];
        for &v in values {
            histogram[layout::index_of(v)] += 1;
        }
        histogram
    }

    /// `requests` requests, `errors` of them failed; 98 % take `typical_us`, 2 % `slow_us`.
    /// Successes within 500 ms (the default target) are compliant.
    pub(crate) fn cohort(
        requests: u64,
        errors: u64,
        typical_us: u64,
        slow_us: u64,
    ) -> CohortCounts {
        let mut histogram = vec![0u64; layout::LEN];
        let slow = requests / 50;
        histogram[layout::index_of(typical_us)] += requests - slow;
        histogram[layout::index_of(slow_us)] += slow;
        let within = |us: u64, n: u64| if us <= 500_000 { n } else { 0 };
        let successes = requests - errors;
        let fast_share = within(typical_us, requests - slow) + within(slow_us, slow);
        let compliant = (successes as u128 * fast_share as u128 / requests.max(1) as u128) as u64;
        CohortCounts {
            requests,
            errors,
            compliant,
            histogram,
        }
    }
}
