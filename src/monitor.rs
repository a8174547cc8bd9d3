//! [`Monitor`]: when to evaluate, and on what window. It owns the metrics, the SLO policy and
//! the clock; it decides when the record path evaluates (a quick screen after canary errors,
//! a paced look at the clock, one evaluating thread elected by `try_lock`) and returns a
//! [`Verdict`]. It never acts: the gate applies verdicts.
//!
//! The monitor reads no snapshot by itself (only the gate touches the `ArcSwap`): each
//! evaluation is handed the snapshot it judges.

use std::sync::{Arc, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::clock::Clock;
use crate::config::PromotionConfig;
use crate::decision::{Cohort, StageId};
use crate::judge::{CanaryHealth, Policy, Recent, judge, screen};
use crate::metrics::{Metrics, Recorded, Window, to_histogram};
use crate::slo::SloAdmissionController;
use crate::snapshot::Snapshot;
use crate::verdict::Verdict;

/// A thread screens after each of its first this many canary errors of a stage, then after
/// every 16th.
const SCREEN_EVERY_ERROR_UP_TO: u64 = 32;

/// ... and after every canary error that ends a run of at least this many in a row on the
/// thread (a sudden outage; at a 1 % error rate a run of 4 happens once in 10^8 requests).
const SCREEN_ON_STREAK: u64 = 4;

/// The judge's side of one gate: metrics, policy, clock, and when to evaluate.
#[derive(Debug)]
pub(crate) struct Monitor {
    metrics: Metrics,
    slo: SloAdmissionController,
    clock: Arc<dyn Clock>,
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
        Self {
            metrics: Metrics::new(stage),
            slo,
            clock,
        }
    }

    /// The SLO policy judged with.
    pub(crate) fn slo(&self) -> &SloAdmissionController {
        &self.slo
    }

    /// Wall-clock time, for the events the gate records.
    pub(crate) fn wall(&self) -> SystemTime {
        self.clock.wall()
    }

    /// Tells the recorders that `stage` is the gate's newest: the writer calls it, under its
    /// lock, before it publishes a snapshot of that stage.
    pub(crate) fn stage_started(&self, stage: StageId) {
        self.metrics.stage_started(stage);
    }

    /// Outcomes dropped as late, over all threads.
    pub(crate) fn late_outcomes(&self) -> u64 {
        self.metrics.late()
    }

    /// Records one outcome and says what it calls for: the screen after a canary error (each of
    /// a thread's first 32 in a stage, then every 16th, and every error of a run of 4 or more
    /// in a row), and the paced look at the clock. Lock-free; no allocation after the thread's
    /// first record.
    #[inline]
    pub(crate) fn record(
        &self,
        stage: StageId,
        is_canary: bool,
        success: bool,
        latency: Duration,
    ) -> Recording {
        let target = self.slo.config().latency_target;
        let cohort = Cohort::of(is_canary);
        let tally = self.metrics.record(stage, cohort, success, latency, target);
        let e = tally.cohort_errors;
        let screen = tally.recorded == Recorded::Counted
            && is_canary
            && !success
            && (e <= SCREEN_EVERY_ERROR_UP_TO
                || e.is_multiple_of(16)
                || tally.cohort_streak >= SCREEN_ON_STREAK);
        Recording {
            recorded: tally.recorded,
            screen,
            look_at_the_clock: tally.check_clock,
        }
    }

    /// The quick check after a canary error of `stage`: counters only, no lock, no allocation
    /// unless a rule fires; then the full judge confirms, and its verdict is returned. Nothing
    /// when `snapshot` is of another stage or does not roll back automatically.
    pub(crate) fn screen(&self, stage: StageId, snapshot: &Snapshot) -> Option<Verdict> {
        let config = &snapshot.config;
        if snapshot.route.stage != stage || !config.auto_rollback_enabled {
            return None;
        }
        let (counts, [requests, errors]) = self.metrics.read_windowed_counters(stage);
        let recent = Recent { requests, errors };
        let policy = self.policy(config);
        if !screen(
            config.environment,
            &counts.canary,
            &counts.stable,
            recent,
            policy,
        ) {
            return None;
        }
        Some(self.evaluation().judge(snapshot))
    }

    /// The record path's look at the clock: paces this thread's next look to its rate and,
    /// when [`evaluation_interval`](crate::SloConfig::evaluation_interval) has passed, elects
    /// this thread to evaluate (one per interval, and never one that would wait for the
    /// window). `None` when there is nothing to do.
    pub(crate) fn due_evaluation(&self) -> Option<Evaluation<'_>> {
        let now = self.clock.monotonic();
        let interval = self.slo.config().evaluation_interval;
        self.metrics.paced(now, interval / 4);
        if !self.metrics.claim_evaluation(now, interval) {
            return None;
        }
        let window = self.metrics.try_lock_window()?; // someone else is evaluating right now
        Some(Evaluation {
            monitor: self,
            window,
        })
    }

    /// An evaluation now, waiting for the window if another is under way.
    pub(crate) fn evaluation(&self) -> Evaluation<'_> {
        Evaluation {
            monitor: self,
            window: self.metrics.lock_window(),
        }
    }

    fn policy<'a>(&'a self, config: &PromotionConfig) -> Policy<'a> {
        Policy {
            slo: self.slo.config(),
            slo_threshold: config.slo_threshold,
        }
    }
}

/// One evaluation, holding the window: judge it, screen it, or read it. Each consumes the
/// evaluation, so the window is released before the gate acts on what it returns.
pub(crate) struct Evaluation<'a> {
    monitor: &'a Monitor,
    window: MutexGuard<'a, Window>,
}

impl Evaluation<'_> {
    /// Judges `snapshot`'s stage over the current window. Leaves a reading: the next judging
    /// call's `error_burst` span starts here.
    pub(crate) fn judge(mut self, snapshot: &Snapshot) -> Verdict {
        let recent = self.refresh(snapshot);
        self.verdict(snapshot, recent)
    }

    /// Screens the current window (leaving a reading) and judges it only if a rule fires.
    pub(crate) fn screen_then_judge(mut self, snapshot: &Snapshot) -> Option<Verdict> {
        let recent = self.refresh(snapshot);
        let windowed = &self.window.windowed;
        let policy = self.monitor.policy(&snapshot.config);
        let environment = snapshot.config.environment;
        if !screen(
            environment,
            &windowed.canary,
            &windowed.stable,
            recent,
            policy,
        ) {
            return None;
        }
        Some(self.verdict(snapshot, recent))
    }

    /// Judges `snapshot`'s stage over the current window without leaving a reading: the
    /// window, the screen's base and the `error_burst` span stay as they were.
    pub(crate) fn health(mut self, snapshot: &Snapshot) -> CanaryHealth {
        let (stage, at, length) = self.read(snapshot);
        let (_, [requests, errors]) = self.window.peek(stage, at, length);
        self.verdict(snapshot, Recent { requests, errors })
            .into_health()
    }

    /// The latency histogram of `cohort` in the current window, without leaving a reading (as
    /// [`health`](Self::health)): exporting it never changes what the judge sees.
    pub(crate) fn latency_histogram(
        mut self,
        snapshot: &Snapshot,
        cohort: Cohort,
    ) -> Option<hdrhistogram::Histogram<u64>> {
        let (stage, at, length) = self.read(snapshot);
        let _ = self.window.peek(stage, at, length);
        to_histogram(&self.window.windowed[cohort].histogram)
    }

    /// Reads `snapshot`'s stage into the window (leaving a reading, and the screen's base) and
    /// returns the canary's outcomes since the previous reading. The window's buffers are
    /// reused: nothing is allocated.
    fn refresh(&mut self, snapshot: &Snapshot) -> Recent {
        let (stage, at, length) = self.read(snapshot);
        let window = &mut *self.window;
        let (base, [requests, errors]) = window.observe(stage, at, length);
        let last = [window.now.canary.requests, window.now.canary.errors];
        self.monitor.metrics.set_window_base(stage, base, last);
        Recent { requests, errors }
    }

    /// Reads every recorder's outcomes of `snapshot`'s stage into the window's `now`, and
    /// returns that stage, the time of the reading and the window's length.
    fn read(&mut self, snapshot: &Snapshot) -> (StageId, Duration, Duration) {
        let stage = snapshot.route.stage;
        let length = Duration::from_secs(snapshot.config.rollback_window_seconds);
        let window = &mut *self.window;
        window.prepare();
        let Window { now, scratch, .. } = window;
        self.monitor.metrics.read_into(stage, now, scratch, true);
        (stage, self.monitor.clock.monotonic(), length)
    }

    /// Runs the judge over the window as last read.
    fn verdict(&self, snapshot: &Snapshot, recent: Recent) -> Verdict {
        let windowed = &self.window.windowed;
        Verdict::new(judge(
            snapshot.route.stage,
            snapshot.config.environment,
            &windowed.canary,
            &windowed.stable,
            recent,
            self.monitor.policy(&snapshot.config),
        ))
    }
}
