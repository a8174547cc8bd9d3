//! [`Monitor`]: when to evaluate, and on what window. It owns the metrics, the SLO policy (which
//! the gate may swap: each evaluation judges with the policy current when it starts) and the
//! clock; it decides when the record path evaluates (a quick screen after canary errors,
//! a paced look at the clock, one evaluating thread elected by `try_lock`) and returns a
//! [`Verdict`]. It never acts: the gate applies verdicts.
//!
//! The monitor reads no snapshot by itself (only the gate touches the `ArcSwap`): each
//! evaluation is handed the snapshot it judges.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use std::time::{Duration, SystemTime};

use crate::clock::{Clock, recordable};
use crate::config::PromotionConfig;
use crate::decision::{Cohort, PerCohort, StageId};
use crate::judge::{CanaryHealth, Policy, Sample, judge, judge_if_fired, screen};
use crate::metrics::{
    Counts, Fleet, Measured, Metrics, Recorded, Silence, Spans, Window, to_histogram,
};
use crate::slo::{SloAdmissionController, SloConfig};
use crate::snapshot::Snapshot;
use crate::sync::MutexGuard;
use crate::telemetry::WindowExport;
use crate::verdict::Verdict;

mod ask;
use ask::Ask;

/// A thread screens after each of its first this many canary errors of a stage, then after
/// every 16th.
const SCREEN_EVERY_ERROR_UP_TO: u64 = 32;

/// ... and after every canary error that ends a run of this many in a row on the thread (a
/// sudden outage; at a 1 % error rate a run of 4 happens once in 10^8 requests). A longer run
/// is an outage the judge holds (the stable version fails too, or its evidence is not yet
/// enough, as at a 99 % share), and is screened at every 16th error only: a held outage of any
/// length costs the record path about a 16th of a screen per error (a screen reads every
/// thread's counters: about 1 us), not a screen each.
const SCREEN_ON_STREAK: std::ops::RangeInclusive<u64> = 4..=32;

/// Whether a canary error screens: the thread's `errors`-th canary error of the stage, ending
/// a run of `streak` failures in a row.
fn screens_after(errors: u64, streak: u64) -> bool {
    errors <= SCREEN_EVERY_ERROR_UP_TO
        || errors.is_multiple_of(16)
        || SCREEN_ON_STREAK.contains(&streak)
}

/// The gate's clocks, read once ([`Monitor::now`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub(crate) monotonic: Duration,
    pub(crate) wall: SystemTime,
}

/// The judge's side of one gate: metrics, policy, clock, and when to evaluate.
#[derive(Debug)]
pub(crate) struct Monitor {
    metrics: Metrics,
    /// The policy, swapped whole by [`swap_slo`](Self::swap_slo); evaluations load it once.
    slo: ArcSwap<SloAdmissionController>,
    /// The policy's `latency_target` in nanoseconds, for the record path: one relaxed load
    /// instead of an arc-swap guard on every record.
    latency_target_nanos: AtomicU64,
    clock: Arc<dyn Clock>,
    /// An evaluation the record path found due (or a screened error called for) while a read
    /// or another evaluation held the window: its holder makes it as it lets go (see
    /// [`wanted_evaluation`](Self::wanted_evaluation)), so a read never delays a rollback.
    evaluation_wanted: Ask,
}

/// What recording one outcome did, and what it calls for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recording {
    pub(crate) recorded: Recorded,
    /// A canary error that calls for the quick screen ([`Monitor::screen`]).
    pub(crate) screen: bool,
    /// This thread's paced look at the clock is due ([`Monitor::due_evaluation`]).
    pub(crate) look_at_the_clock: bool,
}

impl Monitor {
    /// The monitor of a gate whose first stage is `stage`.
    pub(crate) fn new(slo: SloAdmissionController, clock: Arc<dyn Clock>, stage: StageId) -> Self {
        let metrics = Metrics::new(stage);
        metrics.stage_started(stage, clock.monotonic());
        Self {
            metrics,
            latency_target_nanos: AtomicU64::new(nanos(slo.config().latency_target)),
            slo: ArcSwap::from_pointee(slo),
            clock,
            evaluation_wanted: Ask::new(),
        }
    }

    /// The SLO policy judged with.
    pub(crate) fn slo(&self) -> Arc<SloAdmissionController> {
        self.slo.load_full()
    }

    /// Judges with `slo` from the next evaluation on (one under way finishes with the old
    /// policy) and returns the old one. Outcomes recorded from now on are compliant within the
    /// new `latency_target`; those already recorded keep what they were counted as. The
    /// caller serializes swaps (the gate's writer lock), so the two stores stay paired.
    pub(crate) fn swap_slo(&self, slo: SloAdmissionController) -> Arc<SloAdmissionController> {
        let target = nanos(slo.config().latency_target);
        let old = self.slo.swap(Arc::new(slo));
        self.latency_target_nanos.store(target, Ordering::Relaxed);
        old
    }

    /// Wall-clock time, for the events the gate records ([`recordable`]).
    pub(crate) fn wall(&self) -> SystemTime {
        recordable(self.clock.wall())
    }

    /// The gate's monotonic time, which its windows are measured on.
    pub(crate) fn monotonic(&self) -> Duration {
        self.clock.monotonic()
    }

    /// Both of the gate's clocks, read together before a write changes anything: a host's
    /// clock that panics then leaves the gate as it was.
    pub(crate) fn now(&self) -> Now {
        Now {
            monotonic: self.clock.monotonic(),
            wall: self.wall(),
        }
    }

    /// Tells the recorders that `stage` is the gate's newest, started at `at` (monotonic): the
    /// writer calls it, under its lock, before it publishes a snapshot of that stage.
    pub(crate) fn stage_started(&self, stage: StageId, at: Duration) {
        self.metrics.stage_started(stage, at);
    }

    /// This process's cumulative counts of `stage`, for the store's sync thread to publish.
    pub(crate) fn stage_counts(&self, stage: StageId) -> Counts {
        self.metrics.stage_counts(stage)
    }

    /// Replaces the other gate instances' counts every evaluation adds to this process's
    /// (`None`: judge this process's data alone). The store's sync thread calls it, and keeps
    /// the fleet returned, the one replaced, until no other thread holds it (an evaluation
    /// may, until the next one): no request's thread frees it.
    #[must_use = "kept until no other thread holds it, so that no request's thread frees it"]
    pub(crate) fn set_fleet(&self, fleet: Option<Fleet>) -> Option<Arc<Fleet>> {
        self.metrics.set_fleet(fleet)
    }

    /// Outcomes dropped as late, over all threads.
    pub(crate) fn late_outcomes(&self) -> u64 {
        self.metrics.late()
    }

    /// Outcomes dropped as foreign, over all threads.
    pub(crate) fn foreign_outcomes(&self) -> u64 {
        self.metrics.foreign()
    }

    /// Counts the outcome of a forced request routed in `stage` (in neither cohort), or drops
    /// it as foreign when `stage` is newer than the gate's.
    pub(crate) fn forced_outcome(&self, stage: StageId) -> Recorded {
        self.metrics.forced_outcome(stage)
    }

    /// Outcomes of forced requests, over all threads.
    pub(crate) fn forced_outcomes(&self) -> u64 {
        self.metrics.forced()
    }

    /// Counts a forcing value routing ignored.
    pub(crate) fn ignored_override_value(&self) {
        self.metrics.ignored_override_value();
    }

    /// Makes the calling thread's recorder now if it has none, so that counting on this
    /// thread later allocates nothing.
    pub(crate) fn prepare_thread(&self) {
        self.metrics.prepare_thread();
    }

    /// Forcing values ignored, over all threads.
    pub(crate) fn ignored_override_values(&self) -> u64 {
        self.metrics.ignored_overrides()
    }

    /// Records one outcome and says what it calls for: the screen after a canary error (each of
    /// a thread's first 32 in a stage, then every 16th, and every error of a run of 4 to 32 in
    /// a row), and the paced look at the clock. Lock-free; no allocation after the thread's
    /// first record.
    #[inline]
    pub(crate) fn record(
        &self,
        stage: StageId,
        is_canary: bool,
        success: bool,
        latency: Duration,
    ) -> Recording {
        let target = self.latency_target_nanos.load(Ordering::Relaxed);
        let cohort = Cohort::of(is_canary);
        let tally = self.metrics.record(stage, cohort, success, latency, target);
        let screen = tally.recorded == Recorded::Counted
            && is_canary
            && !success
            && screens_after(tally.cohort_errors, tally.cohort_streak);
        Recording {
            recorded: tally.recorded,
            screen,
            look_at_the_clock: tally.check_clock,
        }
    }

    /// The quick check after a canary error of `stage`: counters only, no lock, no allocation
    /// unless a rule fires; then the window is screened in full, and judged (its verdict
    /// returned) only if a rule fires there too. Nothing
    /// when `snapshot` is of another stage or does not roll back automatically, or when the
    /// window is busy (an evaluation or a reader holds it): recording never waits for it, and
    /// the evaluation is [wanted](Self::wanted_evaluation) from whoever holds the window. A
    /// window base found being written at each look (its evaluation preempted mid-write) is
    /// not guessed at: the window's own screen runs instead, as when the screen fires.
    pub(crate) fn screen(&self, stage: StageId, snapshot: &Snapshot) -> Option<Verdict> {
        let config = &snapshot.config;
        if snapshot.route.stage != stage || !config.auto_rollback_enabled {
            return None;
        }
        let Some(counts) = self.metrics.read_screen_counters(stage) else {
            // An evaluation was writing the screen's base at each try (preempted mid-write):
            // the window's own screen decides, here or right after that evaluation.
            return self.try_evaluating()?.screen_then_judge(snapshot);
        };
        let empty = Counts::default();
        let sample = Sample {
            window: &counts.windowed,
            stage: &counts.stage,
            latency: &empty,
            stage_latency: &empty,
            bursts: counts.bursts,
            stage_age: self.stage_age(),
            // The screen looks for a rule that fires; no_data never does.
            silence: Silence::default(),
            instances: counts.instances,
        };
        let slo = self.slo.load();
        if !screen(config.environment, &sample, policy(&slo, config)) {
            return None;
        }
        // The window's own screen, then the judge only if a rule fires there: the screen's
        // window starts where the last evaluation's did, up to a slot before the judge's now,
        // so it may fire where the judge finds nothing (then nothing is built or logged).
        self.try_evaluating()?.screen_then_judge(snapshot)
    }

    /// The record path's look at the clock: paces this thread's next look to its rate and,
    /// when [`evaluation_interval`](crate::SloConfig::evaluation_interval) has passed, or an
    /// evaluation is [wanted](Self::wanted_evaluation), elects this thread to evaluate (one per
    /// interval, and never one that would wait for the window: when the window is held, its
    /// holder is asked to evaluate instead). `None` when there is nothing to do.
    pub(crate) fn due_evaluation(&self) -> Option<Evaluation<'_>> {
        let now = self.clock.monotonic();
        let interval = self.slo.load().config().evaluation_interval;
        self.metrics.paced(now, interval / 4);
        if !self.evaluation_wanted.take() && !self.metrics.claim_evaluation(now, interval) {
            return None;
        }
        self.try_evaluating()
    }

    /// The evaluation the record path asked for while the window was held (by a read, another
    /// evaluation, a write that judged, or a thread's first record or route), for the holder
    /// to make as soon as it let the window go: every holder calls it then (through
    /// `Shared::evaluate_wanted`). `None` when none is wanted, or when the window is held again
    /// (then its new holder is asked). With it, a read that holds the window when an evaluation
    /// falls due never delays a rollback, however often it runs.
    pub(crate) fn wanted_evaluation(&self) -> Option<Evaluation<'_>> {
        self.evaluation_wanted
            .wanted(|| self.metrics.try_lock_window())
            .map(|window| self.evaluating(window))
    }

    /// An evaluation over the window if it is free; if it is held, its holder is asked to
    /// evaluate ([`wanted_evaluation`](Self::wanted_evaluation)) and the window tried again
    /// (see [`Ask::try_or_ask`]; the ask stays if this second try takes it, so this thread
    /// makes one more when it lets go): the record path never waits for the window.
    fn try_evaluating(&self) -> Option<Evaluation<'_>> {
        self.evaluation_wanted
            .try_or_ask(|| self.metrics.try_lock_window())
            .map(|window| self.evaluating(window))
    }

    /// Whether an evaluation is asked for, without taking the ask: one relaxed load, for a
    /// caller that may have held the window and fenced since (see `Metrics::first_recorder`).
    pub(crate) fn evaluation_asked(&self) -> bool {
        self.evaluation_wanted.asked()
    }

    /// An evaluation now, waiting for the window if another is under way.
    pub(crate) fn evaluation(&self) -> Evaluation<'_> {
        self.evaluating(self.metrics.lock_window())
    }

    /// An evaluation over `window`, held.
    fn evaluating<'a>(&'a self, window: MutexGuard<'a, Window>) -> Evaluation<'a> {
        Evaluation {
            monitor: self,
            slo: self.slo.load_full(),
            window,
            instances: 1,
        }
    }

    /// When the newest stage started, on the gate's monotonic clock.
    #[cfg(test)]
    pub(crate) fn stage_start(&self) -> Duration {
        self.metrics.stage_start()
    }

    /// Time since the newest stage started.
    fn stage_age(&self) -> Duration {
        self.clock
            .monotonic()
            .saturating_sub(self.metrics.stage_start())
    }

    /// The spans an evaluation of `config`'s stage at `at` measures under `slo`; the stage's
    /// start taken as `start` says.
    fn spans(
        &self,
        slo: &SloConfig,
        config: &PromotionConfig,
        at: Duration,
        start: StageStart,
    ) -> Spans {
        let stage_start = match start {
            StageStart::Restart => self.metrics.stage_start_by(at),
            StageStart::Keep => self.metrics.stage_start_seen_by(at),
        };
        Spans {
            at,
            length: Duration::from_secs(config.rollback_window_seconds),
            stage_start,
            settled_from: stage_start.saturating_add(slo.warm_up),
            burst: slo.evaluation_interval,
        }
    }
}

/// How a read of the window takes the stage's start when the clock went back well before it
/// (a host's clock, against `Clock`'s contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StageStart {
    /// Restart the stage at the clock's time (the judging path, which leaves a reading).
    Restart,
    /// Take the clock's time as the start for this read only, moving nothing: a read without
    /// side effects (`health`, the latency histograms, the exports) leaves the stage's
    /// warm-up and no-data time as they were.
    Keep,
}

/// What the judge applies: `slo` with `config`'s threshold.
fn policy<'a>(slo: &'a SloAdmissionController, config: &PromotionConfig) -> Policy<'a> {
    Policy {
        slo: slo.config(),
        slo_threshold: config.slo_threshold,
        z: slo.z(),
    }
}

/// A latency target in nanoseconds for the record path (a validated target is far below the
/// bound; saturating keeps the conversion total).
fn nanos(latency: Duration) -> u64 {
    u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX)
}

/// One evaluation, holding the window: judge it, screen it, or read it. Each consumes the
/// evaluation, so the window is released before the gate acts on what it returns.
pub(crate) struct Evaluation<'a> {
    monitor: &'a Monitor,
    /// The policy as it was when the evaluation started.
    slo: Arc<SloAdmissionController>,
    window: MutexGuard<'a, Window>,
    /// How many gate instances the last reading is of (see [`Monitor::set_fleet`]).
    instances: u32,
}

impl Evaluation<'_> {
    /// Judges `snapshot`'s stage over the current window. Leaves a reading (at most one per
    /// slot; a new burst span starts at most once per `evaluation_interval`).
    ///
    /// A snapshot of a stage older than the one the window measures (loaded by a thread before
    /// a stage change that another evaluation saw first) is judged as [`health`](Self::health)
    /// judges, leaving nothing: measuring it would start the newer stage's window, spans and
    /// the screen's base afresh. Its verdict, of an ended stage, is dropped when applied.
    pub(crate) fn judge(mut self, snapshot: &Snapshot) -> Verdict {
        if self.window.is_past(snapshot.route.stage) {
            return Verdict::new(self.health(snapshot));
        }
        let measured = self.refresh(snapshot);
        self.verdict(snapshot, measured)
    }

    /// Screens the current window (leaving a reading) and judges it only if a rule fires; the
    /// rules run once. Nothing for a stage older than the window's (see [`judge`](Self::judge)).
    pub(crate) fn screen_then_judge(mut self, snapshot: &Snapshot) -> Option<Verdict> {
        if self.window.is_past(snapshot.route.stage) {
            return None;
        }
        let measured = self.refresh(snapshot);
        judge_if_fired(
            snapshot.route.stage,
            snapshot.config.environment,
            &self.sample(measured),
            policy(&self.slo, &snapshot.config),
        )
        .map(Verdict::new)
    }

    /// Judges `snapshot`'s stage over the current window without leaving a reading: the
    /// window, the screen's base, the warm-up's end and the burst spans stay as they were.
    pub(crate) fn health(mut self, snapshot: &Snapshot) -> CanaryHealth {
        let (stage, spans) = self.read(snapshot, StageStart::Keep);
        let measured = self.window.peek(stage, spans);
        self.verdict(snapshot, measured).into_health()
    }

    /// The latency histogram of `cohort` in the current window, without leaving a reading (as
    /// [`health`](Self::health)): exporting it never changes what the judge sees.
    pub(crate) fn latency_histogram(
        mut self,
        snapshot: &Snapshot,
        cohort: Cohort,
    ) -> Option<hdrhistogram::Histogram<u64>> {
        let (stage, spans) = self.read(snapshot, StageStart::Keep);
        let _ = self.window.peek(stage, spans);
        to_histogram(&self.window.windowed[cohort].histogram)
    }

    /// The health and both cohorts' latency histograms from one read of the window, without
    /// leaving a reading (as [`health`](Self::health)): what the exporters show agrees with
    /// itself.
    pub(crate) fn export(mut self, snapshot: &Snapshot) -> WindowExport {
        let (stage, spans) = self.read(snapshot, StageStart::Keep);
        let measured = self.window.peek(stage, spans);
        let health = self.verdict(snapshot, measured).into_health();
        let latency = PerCohort::from_fn(|c| to_histogram(&self.window.windowed[c].histogram));
        WindowExport::new(health, latency, snapshot)
    }

    /// Reads `snapshot`'s stage into the window (leaving a reading, and the screen's base) and
    /// returns what it measured. The window's buffers are reused: nothing is allocated.
    fn refresh(&mut self, snapshot: &Snapshot) -> Measured {
        let (stage, spans) = self.read(snapshot, StageStart::Restart);
        let window = &mut *self.window;
        let measured = window.observe(stage, spans);
        // The screen's bursts are measured from where the judge's next ones are.
        let bases = window.burst_bases();
        self.monitor
            .metrics
            .set_window_base(stage, measured.0, bases);
        measured
    }

    /// Reads every recorder's outcomes of `snapshot`'s stage into the window's `now`, adds the
    /// other gate instances' (on a state store), and returns that stage and the spans to
    /// measure, from the stage's start taken as `start` says.
    fn read(&mut self, snapshot: &Snapshot, start: StageStart) -> (StageId, Spans) {
        let stage = snapshot.route.stage;
        let window = &mut *self.window;
        window.prepare();
        let Window { now, scratch, .. } = window;
        self.monitor.metrics.read_into(stage, now, scratch, true);
        self.instances = self.monitor.metrics.add_fleet(stage, now, true);
        let at = self.monitor.clock.monotonic();
        (
            stage,
            self.monitor
                .spans(self.slo.config(), &snapshot.config, at, start),
        )
    }

    fn sample(&self, (_, bursts): Measured) -> Sample<'_> {
        let window = &*self.window;
        Sample {
            window: &window.windowed,
            stage: &window.now,
            latency: &window.latency,
            stage_latency: &window.stage_latency,
            bursts,
            stage_age: self.monitor.stage_age(),
            silence: window.silence,
            instances: self.instances,
        }
    }

    /// Runs the judge over the window as last read.
    fn verdict(&self, snapshot: &Snapshot, measured: Measured) -> Verdict {
        Verdict::new(judge(
            snapshot.route.stage,
            snapshot.config.environment,
            &self.sample(measured),
            policy(&self.slo, &snapshot.config),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::screens_after;

    #[test]
    fn a_run_of_errors_screens_each_error_up_to_32_then_every_16th() {
        // A canary failing every request from the stage's start: each of its first 32 errors.
        assert!((1..=32).all(|n| screens_after(n, n)));
        // An outage the judge holds (the stable version fails too): every 16th error after
        // that, however long it lasts, not every error (each screen reads every thread's
        // counters).
        let held: Vec<u64> = (33..=1000).filter(|&n| screens_after(n, n)).collect();
        assert_eq!(
            held,
            (33..=1000).filter(|n| n % 16 == 0).collect::<Vec<_>>()
        );
        // A sudden outage late in a stage (the thread's 1 001st error, not a 16th): each error
        // of a run of 4 to 32, neither a shorter nor a longer one's.
        let screened: Vec<u64> = (1..=40).filter(|&run| screens_after(1001, run)).collect();
        assert_eq!(screened, (4..=32).collect::<Vec<_>>());
    }
}
