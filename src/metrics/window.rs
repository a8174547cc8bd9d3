//! The sliding window: the judge looks at the last `rollback_window_seconds`, not at all time.
//!
//! Recorders only ever count up within a stage, so the window is a difference of two
//! cumulative readings: the reading now, minus the latest reading taken at least one window
//! ago. Each evaluation leaves its reading in a ring of at most [`SLOTS`] + 2 entries, at most
//! one per slot (a window / 10), so the window's start is exact to one slot (30 s at the
//! default 300 s window) as long as the gate is evaluated at least once a slot. Evaluation
//! runs from the record path about every `evaluation_interval` (each thread paces its looks
//! at the clock to its own rate), so a gate that sees traffic is evaluated often enough.
//!
//! On a state store the reading also holds the other instances' counts
//! ([`Fleet`](super::Fleet)). What an instance showed when this process first read it is of the
//! stage, but of no known time: the window's readings leave it out (so it is older than every
//! window, and the window's start, for that instance's counts, is the first read), while the
//! stage-long figures (`now`, `stage_latency`) count it. Without that, a process joining
//! mid-stage took another's whole stage as one window.
//!
//! All buffers (the ring's readings and the scratch space of an evaluation) are made once, by
//! [`Window::prepare`], and reused: evaluating allocates nothing. Memory: 20 sets of
//! 2 × 20 KiB (readings, the settled readings, scratch), about 800 KiB per gate that records.

use std::collections::VecDeque;
use std::time::Duration;

use std::sync::Arc;

use super::fleet::FleetCache;
use super::layout::LEN;
use super::recorder::CohortCounts;
use crate::decision::{Cohort, PerCohort, StageId};

/// Slots per window.
pub(crate) const SLOTS: u32 = 10;

/// Readings the ring holds at most.
const RING: usize = SLOTS as usize + 2;

/// Per-cohort counts.
pub(crate) type Counts = PerCohort<CohortCounts>;

/// The window's readings of one stage, oldest first, and an evaluation's scratch space.
#[derive(Debug, Default)]
pub(crate) struct Window {
    stage: Option<StageId>,
    /// Readings (each `reading` as it was), oldest first.
    readings: VecDeque<(Duration, Counts)>,
    spare: Vec<Counts>,
    /// The other instances' counts, of which the window leaves out those first read.
    fleet: Arc<FleetCache>,
    /// The cumulative reading of the current evaluation.
    pub(crate) now: Counts,
    /// `now` without what the other instances showed when first read: what the window
    /// measures and keeps.
    reading: Counts,
    /// What happened within the window: `reading` minus the base reading.
    pub(crate) windowed: Counts,
    /// Where each recorder is read before it is added.
    pub(crate) scratch: Counts,
    /// The window's latencies after the stage's warm-up (empty while it lasts).
    pub(crate) latency: Counts,
    /// The stage's latencies after its warm-up: `now` minus the settled reading.
    pub(crate) stage_latency: Counts,
    /// When the stage's warm-up ended for the latency rules, and `now` and `reading` then.
    settled: Option<Duration>,
    settled_counts: Counts,
    settled_reading: Counts,
    /// The starts of the last two burst spans, the earlier first, and the counters then,
    /// `[requests, errors]` per cohort (`None`: none yet in this stage). [`Bursts`] are
    /// measured from both.
    burst_starts: [Option<(Duration, PerCohort<[u64; 2]>)>; 2],
    /// When a reading first showed the canary's latest outcome, and both cohorts' requests
    /// then (`None` until the stage's first canary outcome): where [`Silence`] is measured from.
    canary_heard: Option<(Duration, PerCohort<u64>)>,
    /// How long the canary has been silent, as of the current evaluation.
    pub(crate) silence: Silence,
}

/// How long a canary that reported outcomes in this stage has reported none since: the time
/// since a reading first showed its latest outcome, and the stable outcomes meanwhile (zero
/// while its count grows, and before its first outcome, when the stage's age says it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Silence {
    /// Time since a reading first showed the canary's latest outcome.
    pub(crate) span: Duration,
    /// Stable outcomes recorded meanwhile.
    pub(crate) stable: u64,
}

/// Each cohort's `[requests, errors]` in the two spans the `error_burst` rule tests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Bursts {
    /// Since the current burst span began (at most about one `evaluation_interval` ago): an
    /// outage that began in it, diluted by as little healthy traffic as possible.
    pub(crate) current: PerCohort<[u64; 2]>,
    /// Since the span before it began: at least one interval of both versions' outcomes, and
    /// what the start of a new span would otherwise forget.
    pub(crate) with_previous: PerCohort<[u64; 2]>,
}

impl Bursts {
    /// The counts since each span began: `now` less the counters at the spans' starts,
    /// `[earlier, latest]` (those of [`Window::burst_bases`]).
    pub(crate) fn since(
        now: PerCohort<[u64; 2]>,
        [earlier, latest]: [PerCohort<[u64; 2]>; 2],
    ) -> Self {
        let less = |base: PerCohort<[u64; 2]>| {
            PerCohort::from_fn(|cohort| {
                let ([requests, errors], [from_requests, from_errors]) =
                    (now[cohort], base[cohort]);
                [
                    requests.saturating_sub(from_requests),
                    errors.saturating_sub(from_errors),
                ]
            })
        };
        Self {
            current: less(latest),
            with_previous: less(earlier),
        }
    }
}

/// The spans one evaluation measures, all on the gate's monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spans {
    /// The time of the reading.
    pub(crate) at: Duration,
    /// The window's length (`rollback_window_seconds`).
    pub(crate) length: Duration,
    /// When the stage started.
    pub(crate) stage_start: Duration,
    /// When the latency rules' warm-up ends (`stage_start + warm_up`).
    pub(crate) settled_from: Duration,
    /// The burst span: a new one starts at most this often, however often anyone evaluates.
    pub(crate) burst: Duration,
}

/// What a measurement returns besides the window: the base reading's counters per cohort
/// (`[requests, errors, compliant]`, the screen's base) and the bursts.
pub(crate) type Measured = (PerCohort<[u64; 3]>, Bursts);

/// Counts of both cohorts with their histograms sized to the layout, zero.
pub(crate) fn sized() -> Counts {
    PerCohort::from_fn(|_| {
        let mut counts = CohortCounts::default();
        counts.reset(true, LEN);
        counts
    })
}

impl Window {
    /// A window that leaves out the part of `fleet`'s counts first read.
    pub(crate) fn of_fleet(fleet: Arc<FleetCache>) -> Self {
        Self {
            fleet,
            ..Self::default()
        }
    }

    /// Makes every buffer an evaluation needs, once; later calls do nothing.
    pub(crate) fn prepare(&mut self) {
        if !self.spare.is_empty() || !self.readings.is_empty() {
            return;
        }
        self.readings.reserve(RING);
        self.spare = (0..RING).map(|_| sized()).collect();
        self.now = sized();
        self.reading = sized();
        self.windowed = sized();
        self.scratch = sized();
        self.latency = sized();
        self.stage_latency = sized();
        self.settled_counts = sized();
        self.settled_reading = sized();
    }

    /// Keeps the last reading of each `slot` (but the first reading, the window's base),
    /// dropping the others: readings taken at a shorter window's finer slots (the window was
    /// lengthened within the stage) would otherwise outnumber the ring's buffers.
    fn thin(&mut self, slot: u128) {
        let mut at = 1;
        while at + 1 < self.readings.len() {
            let slot_of = |i: usize| self.readings.get(i).map(|(t, _)| t.as_nanos() / slot);
            if slot_of(at) == slot_of(at + 1) {
                if let Some((_, counts)) = self.readings.remove(at) {
                    self.spare.push(counts);
                }
            } else {
                at += 1;
            }
        }
    }

    /// Whether the window measures a stage newer than `stage`.
    pub(crate) fn is_past(&self, stage: StageId) -> bool {
        self.stage.is_some_and(|measured| measured > stage)
    }

    /// Takes `self.now` as the cumulative reading of `stage` at `spans.at` (with the other
    /// instances' counts the last evaluation added), computes the window (`self.windowed`, and
    /// the latencies after warm-up), and keeps the reading.
    /// Returns the base reading's counters and the bursts. A new stage starts the window, the
    /// warm-up and the burst spans afresh.
    pub(crate) fn observe(&mut self, stage: StageId, spans: Spans) -> Measured {
        if self.stage != Some(stage) {
            self.stage = Some(stage);
            self.settled = None;
            self.burst_starts = [None, None];
            self.canary_heard = None;
            while let Some((_, counts)) = self.readings.pop_front() {
                self.spare.push(counts);
            }
        }
        self.fleet.joined_into(stage, &self.now, &mut self.reading);
        self.settle(spans);
        let measured = self.measure(stage, spans);
        let canary = self.now.canary.requests;
        let known = self
            .canary_heard
            .is_some_and(|(_, then)| then.canary == canary);
        if !known && canary > 0 {
            let requests = PerCohort::from_fn(|cohort| self.now[cohort].requests);
            self.canary_heard = Some((spans.at, requests));
        }
        self.keep(spans.at, spans.length);
        let [_, latest] = self.burst_starts;
        // Due too when the clock went back before the span's start.
        let burst_due = latest.is_none_or(|(t, _)| t > spans.at || spans.at - t >= spans.burst);
        if burst_due {
            let counters = |c: &CohortCounts| [c.requests, c.errors];
            let base = PerCohort::from_fn(|cohort| counters(&self.reading[cohort]));
            self.burst_starts = [latest, Some((spans.at, base))];
        }
        measured
    }

    /// Like [`observe`](Self::observe), but keeps nothing: the readings (so the window's start,
    /// the warm-up's end and the burst spans) are left as they were.
    pub(crate) fn peek(&mut self, stage: StageId, spans: Spans) -> Measured {
        self.fleet.joined_into(stage, &self.now, &mut self.reading);
        self.measure(stage, spans)
    }

    /// Each cohort's `[requests, errors]` where the [`Bursts`] are measured from, `[earlier,
    /// latest]`: the starts of the span before the current one and of the current one (zeros,
    /// the stage's start, for a span the stage has not had).
    pub(crate) fn burst_bases(&self) -> [PerCohort<[u64; 2]>; 2] {
        self.burst_starts
            .map(|start| start.map_or_else(Default::default, |(_, base)| base))
    }

    /// Takes the settled reading at the first observation after the warm-up (the stage's
    /// start, when the warm-up is zero).
    fn settle(&mut self, spans: Spans) {
        if self.settled.is_some() || spans.at < spans.settled_from {
            return;
        }
        let from_start = spans.settled_from <= spans.stage_start;
        let settled = [
            (&mut self.settled_counts, &self.now),
            (&mut self.settled_reading, &self.reading),
        ];
        for (settled, taken) in settled {
            for (dst, src) in settled.iter_mut().zip(taken.iter()) {
                if from_start {
                    dst.reset(true, LEN);
                } else {
                    dst.copy_from(src);
                }
            }
        }
        self.settled = Some(spans.at);
    }

    /// Computes `self.windowed` and the latencies from `self.reading` (`self.now` for the
    /// stage's latencies) and the readings of `stage` (none if the ring holds another stage's);
    /// returns what [`observe`](Self::observe) returns.
    fn measure(&mut self, stage: StageId, spans: Spans) -> Measured {
        let ours = self.stage == Some(stage);
        let readings = if ours {
            self.readings.range(..)
        } else {
            self.readings.range(0..0)
        };
        let start = spans.at.checked_sub(spans.length);
        let base = start.and_then(|start| readings.clone().rev().find(|(t, _)| *t <= start));
        let settled = self.settled.filter(|_| ours);
        let zero = CohortCounts::default();
        let mut base_counters = PerCohort::<[u64; 3]>::default();
        for cohort in Cohort::ALL {
            let b = base.map_or(&zero, |(_, counts)| &counts[cohort]);
            let reading = &self.reading[cohort];
            reading.since_into(b, &mut self.windowed[cohort]);
            base_counters[cohort] = [b.requests, b.errors, b.compliant];
            let latency_base = match (settled, base) {
                (Some(s), Some((t, _))) if *t > s => b,
                _ => &self.settled_reading[cohort],
            };
            if settled.is_some() {
                reading.since_into(latency_base, &mut self.latency[cohort]);
                let stage_base = &self.settled_counts[cohort];
                self.now[cohort].since_into(stage_base, &mut self.stage_latency[cohort]);
            } else {
                self.latency[cohort].reset(false, 0);
                self.stage_latency[cohort].reset(false, 0);
            }
        }
        let bases = if ours {
            self.burst_bases()
        } else {
            Default::default()
        };
        let now = PerCohort::from_fn(|c| [self.reading[c].requests, self.reading[c].errors]);
        self.silence = self.silence_at(ours, spans.at);
        (base_counters, Bursts::since(now, bases))
    }

    /// The canary's [`Silence`] at `at` (none for a stage the window does not measure
    /// (`ours` false), nor while `now` shows outcomes the last reading had not).
    fn silence_at(&self, ours: bool, at: Duration) -> Silence {
        match self.canary_heard.filter(|_| ours) {
            Some((heard, requests)) if requests.canary == self.now.canary.requests => Silence {
                span: at.saturating_sub(heard),
                stable: self.now.stable.requests.saturating_sub(requests.stable),
            },
            _ => Silence::default(),
        }
    }

    /// Keeps `self.reading` as the reading at `at` (at most one per slot), and drops the
    /// readings older than the window needs: first, so that the ring never holds more than
    /// [`RING`] readings, the buffers [`prepare`](Self::prepare) made (one at or before the
    /// window's start and one in each of the `SLOTS + 1` slots the window touches).
    fn keep(&mut self, at: Duration, length: Duration) {
        // A host's clock that went back (against `Clock`'s contract): the readings after `at`
        // go, so the ring stays ordered, and as small, as with a clock that never does.
        while self.readings.back().is_some_and(|(t, _)| *t > at) {
            if let Some((_, counts)) = self.readings.pop_back() {
                self.spare.push(counts);
            }
        }
        // Keep one reading at or before the window's start, none older (the new one, at
        // `at`, is after it).
        let start = at.saturating_sub(length);
        while self.readings.len() > 1 && self.readings.get(1).is_some_and(|(t, _)| *t <= start) {
            if let Some((_, counts)) = self.readings.pop_front() {
                self.spare.push(counts);
            }
        }
        let slot = (length / SLOTS).max(Duration::from_millis(1)).as_nanos();
        if self.readings.len() >= RING {
            self.thin(slot);
        }
        let same_slot = self
            .readings
            .back()
            .is_some_and(|(t, _)| t.as_nanos() / slot == at.as_nanos() / slot);
        let mut entry = if same_slot {
            self.readings.pop_back().map(|(_, counts)| counts)
        } else {
            None
        }
        .or_else(|| self.spare.pop())
        .unwrap_or_default();
        for (dst, src) in entry.iter_mut().zip(self.reading.iter()) {
            dst.copy_from(src);
        }
        self.readings.push_back((at, entry));
        // With a window of 0 (or a reading at its start), the newest alone.
        while self.readings.len() > 1 && self.readings.get(1).is_some_and(|(t, _)| *t <= start) {
            if let Some((_, counts)) = self.readings.pop_front() {
                self.spare.push(counts);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spans at `at` for a window of `length`, the stage started at zero with no warm-up, and
    /// a burst span of one second.
    fn spans(at: Duration, length: Duration) -> Spans {
        Spans {
            at,
            length,
            stage_start: Duration::ZERO,
            settled_from: Duration::ZERO,
            burst: Duration::from_secs(1),
        }
    }

    fn set(w: &mut Window, canary_requests: u64, canary_errors: u64) {
        w.now.canary = CohortCounts {
            requests: canary_requests,
            errors: canary_errors,
            compliant: 0,
            histogram: vec![canary_requests],
        };
        w.now.stable = CohortCounts::default();
    }

    #[test]
    fn a_window_lengthened_within_the_stage_keeps_the_ring_within_its_buffers() {
        // Readings every second in a 10 s window, then a 600 s one: the fine readings must not
        // outnumber the ring's buffers as the new window's slots fill.
        let mut w = Window::default();
        w.prepare();
        let (s, mut total) = (StageId(1), 0);
        for t in 0..400u64 {
            let length = Duration::from_secs(if t < 20 { 10 } else { 600 });
            total += 10;
            set(&mut w, total, 0);
            w.observe(s, spans(Duration::from_millis(t * 1000 + 500), length));
            assert!(
                w.readings.len() <= RING,
                "{} readings at {t}",
                w.readings.len()
            );
            assert!(
                w.spare.len() + w.readings.len() == RING,
                "a buffer was made at {t}"
            );
        }
        // The window still measures all it holds: 400 s, within 600 s.
        assert_eq!(w.windowed.canary.requests, total);
    }

    #[test]
    fn the_canary_s_silence_counts_from_the_reading_that_first_showed_its_latest_outcome() {
        let mut w = Window::default();
        w.prepare();
        let (s, len) = (StageId(1), Duration::from_secs(300));
        let at = |w: &mut Window, secs: u64, canary: u64, stable: u64| {
            set(w, canary, 0);
            w.now.stable.requests = stable;
            w.observe(s, spans(Duration::from_secs(secs), len));
            w.silence
        };
        // No canary outcome yet: the stage's age says it, not the silence.
        assert_eq!(at(&mut w, 5, 0, 100), Silence::default());
        assert_eq!(at(&mut w, 10, 7, 200), Silence::default());
        let quiet = |span, stable| Silence {
            span: Duration::from_secs(span),
            stable,
        };
        assert_eq!(at(&mut w, 40, 7, 800), quiet(30, 600));
        // A read without a reading sees the same, and moves nothing.
        w.now.stable.requests = 900;
        w.peek(s, spans(Duration::from_secs(50), len));
        assert_eq!(w.silence, quiet(40, 700));
        assert_eq!(at(&mut w, 60, 7, 1_000), quiet(50, 800));
        // A new outcome ends it; the silence counts afresh from that reading.
        assert_eq!(at(&mut w, 70, 8, 1_100), Silence::default());
        assert_eq!(at(&mut w, 75, 8, 1_150), quiet(5, 50));
        // A new stage forgets it.
        w.observe(StageId(2), spans(Duration::from_secs(80), len));
        assert_eq!(w.silence, Silence::default());
    }

    #[test]
    fn old_data_leaves_the_window() {
        let mut w = Window::default();
        w.prepare();
        let s = StageId(1);
        let len = Duration::from_secs(300);
        let secs = Duration::from_secs;
        set(&mut w, 0, 0);
        w.observe(s, spans(secs(0), len));
        assert_eq!(w.windowed.canary.requests, 0);
        // 100 errors in the first 10 s.
        set(&mut w, 100, 100);
        w.observe(s, spans(secs(10), len));
        assert_eq!(w.windowed.canary.errors, 100);
        // Then clean traffic; evaluated every 30 s.
        let mut t = 40;
        let mut total = 100;
        while t <= 400 {
            total += 30;
            set(&mut w, total, 100);
            let (base, recent) = w.observe(s, spans(secs(t), len));
            // The bursts: since the previous reading, and since the one before it (at 40 s,
            // the stage's start).
            assert_eq!(recent.current.canary, [30, 0], "at {t}s");
            let burst = if t == 40 { [130, 100] } else { [60, 0] };
            assert_eq!(recent.with_previous.canary, burst, "at {t}s");
            if t >= 310 {
                assert_eq!(
                    w.windowed.canary.errors, 0,
                    "at {t}s the errors of 0..10s are outside the window"
                );
                assert_eq!(base.canary[1], 100);
            } else {
                assert_eq!(w.windowed.canary.errors, 100, "at {t}s");
            }
            t += 30;
        }
        assert!(w.readings.len() <= RING);
    }

    #[test]
    fn what_other_instances_showed_when_first_read_counts_in_the_stage_not_in_the_window() {
        use crate::metrics::Fleet;
        use crate::metrics::tests_support::cohort;
        let fleet = Arc::new(FleetCache::default());
        let mut w = Window::of_fleet(Arc::clone(&fleet));
        w.prepare();
        let s = StageId(1);
        let len = Duration::from_secs(60);
        // Another instance, first read with its whole stage: 10 000 requests, 100 errors.
        let other = |requests: u64, errors: u64| Fleet {
            stage: s,
            others: 1,
            counts: PerCohort {
                canary: cohort(requests, errors, 2_000, 90_000),
                stable: CohortCounts::default(),
            },
            joined: PerCohort {
                canary: cohort(10_000, 100, 2_000, 90_000),
                stable: CohortCounts::default(),
            },
        };
        // An evaluation at `t` s: this process recorded nothing; the others' counts added.
        let evaluate = |w: &mut Window, t: u64| {
            for cohort in w.now.iter_mut() {
                cohort.reset(true, LEN);
            }
            fleet.add_to(s, &mut w.now, true);
            w.observe(s, spans(Duration::from_secs(t), len))
        };
        let _ = fleet.set(Some(other(10_000, 100)));
        let (_, burst) = evaluate(&mut w, 1);
        assert_eq!(w.now.canary.requests, 10_000, "in the stage");
        assert_eq!(w.windowed.canary.requests, 0, "not in the window");
        assert_eq!(burst.current.canary, [0, 0], "nor in the burst spans");
        assert_eq!(burst.with_previous.canary, [0, 0]);
        // It gains 500 requests, 50 of them failed: the window holds them alone.
        let _ = fleet.set(Some(other(10_500, 150)));
        let (_, burst) = evaluate(&mut w, 2);
        assert_eq!(
            (w.windowed.canary.requests, w.windowed.canary.errors),
            (500, 50)
        );
        assert_eq!(burst.current.canary, [500, 50]);
        assert_eq!(burst.with_previous.canary, [500, 50]);
        assert_eq!(w.latency.canary.histogram.iter().sum::<u64>(), 500);
        assert_eq!(w.stage_latency.canary.histogram.iter().sum::<u64>(), 10_500);
        // A window later, only what it gained since then.
        let _ = fleet.set(Some(other(10_800, 160)));
        evaluate(&mut w, 70);
        assert_eq!(
            (w.windowed.canary.requests, w.windowed.canary.errors),
            (300, 10)
        );
        assert_eq!(w.now.canary.requests, 10_800);
    }

    #[test]
    fn a_new_stage_starts_from_zero() {
        let mut w = Window::default();
        w.prepare();
        let len = Duration::from_secs(60);
        set(&mut w, 50, 5);
        w.observe(StageId(1), spans(Duration::from_secs(1), len));
        set(&mut w, 3, 1);
        w.observe(StageId(2), spans(Duration::from_secs(2), len));
        assert_eq!(
            (w.windowed.canary.requests, w.windowed.canary.errors),
            (3, 1)
        );
    }

    #[test]
    fn buffers_are_reused() {
        let mut w = Window::default();
        w.prepare();
        let len = Duration::from_secs(10);
        for t in 0..1000u64 {
            set(&mut w, t, 0);
            w.observe(
                StageId(1 + t / 300),
                spans(Duration::from_millis(t * 100), len),
            );
        }
        assert!(w.readings.len() + w.spare.len() <= RING + 1);
    }

    #[test]
    fn a_clock_that_goes_back_keeps_the_ring_bounded_and_the_bursts_going() {
        let mut w = Window::default();
        w.prepare();
        let len = Duration::from_secs(1);
        let s = StageId(1);
        let mut total = 0;
        let mut observe_at = |w: &mut Window, ms: u64| {
            total += 10;
            set(w, total, 0);
            w.observe(s, spans(Duration::from_millis(ms), len))
        };
        for ms in (1_000..2_000).step_by(100) {
            observe_at(&mut w, ms);
        }
        // Back by a whole window, then on, a slot at a time: the readings kept before the
        // step were kept for ever, each new one beside them (40 KiB each).
        for ms in (500..1_500).step_by(100) {
            observe_at(&mut w, ms);
            assert!(w.readings.len() <= RING, "{} readings", w.readings.len());
            assert!(w.readings.len() + w.spare.len() <= RING + 1);
            let times: Vec<_> = w.readings.iter().map(|(t, _)| *t).collect();
            assert!(times.is_sorted(), "{times:?}");
        }
        // The burst spans start again at the step (500 ms): at 1.6 s the current span holds
        // the requests of the 10 readings since then, not of the 20 since the span begun at
        // 1 s before the step.
        let (_, recent) = observe_at(&mut w, 1_600);
        assert_eq!(recent.current.canary[0], 100);
    }

    #[test]
    fn a_peek_keeps_nothing() {
        let mut w = Window::default();
        w.prepare();
        let len = Duration::from_secs(60);
        set(&mut w, 10, 2);
        w.observe(StageId(1), spans(Duration::from_secs(1), len));
        set(&mut w, 15, 5);
        for t in 2..5 {
            let (_, recent) = w.peek(StageId(1), spans(Duration::from_secs(t), len));
            assert_eq!(
                recent.with_previous.canary,
                [15, 5],
                "the burst since the stage's start (one span kept)"
            );
            assert_eq!(recent.current.canary, [5, 3], "since the span began");
        }
        assert_eq!(w.readings.len(), 1);
        // Another stage's readings are not its base.
        let (base, recent) = w.peek(StageId(2), spans(Duration::from_secs(90), len));
        assert_eq!((base.canary, recent.current.canary), ([0, 0, 0], [15, 5]));
        assert_eq!(recent.with_previous.canary, [15, 5]);
        assert_eq!(w.stage, Some(StageId(1)));
        let (_, recent) = w.observe(StageId(1), spans(Duration::from_secs(5), len));
        assert_eq!(recent.with_previous.canary, [15, 5]);
        // It started the stage's second span: the longer burst is measured from the first's
        // start, the current one from the second's.
        let (_, recent) = w.peek(StageId(1), spans(Duration::from_secs(5), len));
        assert_eq!(recent.with_previous.canary, [5, 3]);
        assert_eq!(recent.current.canary, [0, 0]);
    }

    #[test]
    fn latencies_wait_for_the_warm_up_and_bursts_for_their_interval() {
        let mut w = Window::default();
        w.prepare();
        let s = StageId(1);
        let at = |ms: u64| Spans {
            at: Duration::from_millis(ms),
            length: Duration::from_secs(300),
            stage_start: Duration::ZERO,
            settled_from: Duration::from_secs(30),
            burst: Duration::from_secs(1),
        };
        set(&mut w, 100, 0);
        w.observe(s, at(10_000));
        assert!(w.latency.canary.histogram.is_empty(), "warming up");
        assert!(w.stage_latency.canary.histogram.is_empty());
        set(&mut w, 300, 0);
        w.observe(s, at(31_000)); // the settled reading
        set(&mut w, 500, 0);
        w.observe(s, at(40_000));
        assert_eq!(w.stage_latency.canary.histogram, [200]);
        assert_eq!(w.latency.canary.histogram, [200]);
        // A burst span started at 31 s and another at 40 s; judging again within a second does
        // not start a third: the bursts are since 40 s (500 requests) and since 31 s (300).
        for (ms, total) in [(40_300, 510), (40_600, 520), (40_900, 530)] {
            set(&mut w, total, 0);
            let (_, burst) = w.observe(s, at(ms));
            assert_eq!(burst.current.canary, [total - 500, 0], "at {ms} ms");
            assert_eq!(burst.with_previous.canary, [total - 300, 0], "at {ms} ms");
        }
        set(&mut w, 540, 0);
        let (_, burst) = w.observe(s, at(41_000));
        assert_eq!(
            (burst.current.canary, burst.with_previous.canary),
            ([40, 0], [240, 0]),
            "a second later: the last of both spans"
        );
        let (_, burst) = w.observe(s, at(41_100));
        assert_eq!(
            (burst.current.canary, burst.with_previous.canary),
            ([0, 0], [40, 0]),
            "a new span (from 41 s), and still the one before it (from 40 s)"
        );
        let [earlier, latest] = w.burst_bases();
        assert_eq!((earlier.canary, latest.canary), ([500, 0], [540, 0]));
    }
}
