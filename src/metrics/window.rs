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
//! All buffers (the ring's readings and the scratch space of an evaluation) are made once, by
//! [`Window::prepare`], and reused: evaluating allocates nothing. Memory: 15 readings of
//! 2 × 20 KiB, about 600 KiB per gate that records.

use std::collections::VecDeque;
use std::time::Duration;

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
    readings: VecDeque<(Duration, Counts)>,
    spare: Vec<Counts>,
    /// The cumulative reading of the current evaluation.
    pub(crate) now: Counts,
    /// What happened within the window: `now` minus the base reading.
    pub(crate) windowed: Counts,
    /// Where each recorder is read before it is added.
    pub(crate) scratch: Counts,
}

fn sized() -> Counts {
    PerCohort::from_fn(|_| {
        let mut counts = CohortCounts::default();
        counts.reset(true, LEN);
        counts
    })
}

impl Window {
    /// Makes every buffer an evaluation needs, once; later calls do nothing.
    pub(crate) fn prepare(&mut self) {
        if !self.spare.is_empty() || !self.readings.is_empty() {
            return;
        }
        self.readings.reserve(RING);
        self.spare = (0..RING).map(|_| sized()).collect();
        self.now = sized();
        self.windowed = sized();
        self.scratch = sized();
    }

    /// Takes `self.now` as the cumulative reading of `stage` at `at`, computes
    /// `self.windowed` over the window `length` before it, and keeps the reading. Returns the
    /// base reading's counters per cohort (`[requests, errors, compliant]`) and the canary
    /// cohort's `[requests, errors]` since the previous reading. A new stage starts the window
    /// afresh.
    pub(crate) fn observe(
        &mut self,
        stage: StageId,
        at: Duration,
        length: Duration,
    ) -> (PerCohort<[u64; 3]>, [u64; 2]) {
        if self.stage != Some(stage) {
            self.stage = Some(stage);
            while let Some((_, counts)) = self.readings.pop_front() {
                self.spare.push(counts);
            }
        }
        let measured = self.measure(stage, at, length);
        self.keep(at, length);
        measured
    }

    /// Like [`observe`](Self::observe), but keeps nothing: the readings (so the window's start
    /// and the span "since the previous reading") are left as they were.
    pub(crate) fn peek(
        &mut self,
        stage: StageId,
        at: Duration,
        length: Duration,
    ) -> (PerCohort<[u64; 3]>, [u64; 2]) {
        self.measure(stage, at, length)
    }

    /// Computes `self.windowed` from `self.now` and the readings of `stage` (none if the ring
    /// holds another stage's); returns what [`observe`](Self::observe) returns.
    fn measure(
        &mut self,
        stage: StageId,
        at: Duration,
        length: Duration,
    ) -> (PerCohort<[u64; 3]>, [u64; 2]) {
        let readings = if self.stage == Some(stage) {
            self.readings.range(..)
        } else {
            self.readings.range(0..0)
        };
        let start = at.checked_sub(length);
        let base = start.and_then(|start| readings.clone().rev().find(|(t, _)| *t <= start));
        let zero = CohortCounts::default();
        let mut base_counters = PerCohort::<[u64; 3]>::default();
        for cohort in Cohort::ALL {
            let b = base.map_or(&zero, |(_, counts)| &counts[cohort]);
            self.now[cohort].since_into(b, &mut self.windowed[cohort]);
            base_counters[cohort] = [b.requests, b.errors, b.compliant];
        }

        let previous = readings.last().map_or([0, 0], |(_, counts)| {
            [counts.canary.requests, counts.canary.errors]
        });
        let recent = [
            self.now.canary.requests.saturating_sub(previous[0]),
            self.now.canary.errors.saturating_sub(previous[1]),
        ];
        (base_counters, recent)
    }

    /// Keeps `self.now` as the reading at `at` (at most one per slot), and drops the readings
    /// older than the window needs.
    fn keep(&mut self, at: Duration, length: Duration) {
        let slot = (length / SLOTS).max(Duration::from_millis(1)).as_nanos();
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
        for (dst, src) in entry.iter_mut().zip(self.now.iter()) {
            dst.copy_from(src);
        }
        self.readings.push_back((at, entry));
        // Keep one reading at or before the window's start, none older.
        let start = at.saturating_sub(length);
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
    fn old_data_leaves_the_window() {
        let mut w = Window::default();
        w.prepare();
        let s = StageId(1);
        let len = Duration::from_secs(300);
        let secs = Duration::from_secs;
        set(&mut w, 0, 0);
        w.observe(s, secs(0), len);
        assert_eq!(w.windowed.canary.requests, 0);
        // 100 errors in the first 10 s.
        set(&mut w, 100, 100);
        w.observe(s, secs(10), len);
        assert_eq!(w.windowed.canary.errors, 100);
        // Then clean traffic; evaluated every 30 s.
        let mut t = 40;
        let mut total = 100;
        while t <= 400 {
            total += 30;
            set(&mut w, total, 100);
            let (base, recent) = w.observe(s, secs(t), len);
            assert_eq!(recent, [30, 0], "since the previous reading");
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
    fn a_new_stage_starts_from_zero() {
        let mut w = Window::default();
        w.prepare();
        let len = Duration::from_secs(60);
        set(&mut w, 50, 5);
        w.observe(StageId(1), Duration::from_secs(1), len);
        set(&mut w, 3, 1);
        w.observe(StageId(2), Duration::from_secs(2), len);
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
            w.observe(StageId(1 + t / 300), Duration::from_millis(t * 100), len);
        }
        assert!(w.readings.len() + w.spare.len() <= RING + 1);
    }

    #[test]
    fn a_peek_keeps_nothing() {
        let mut w = Window::default();
        w.prepare();
        let len = Duration::from_secs(60);
        set(&mut w, 10, 2);
        w.observe(StageId(1), Duration::from_secs(1), len);
        set(&mut w, 15, 5);
        for t in 2..5 {
            let (_, recent) = w.peek(StageId(1), Duration::from_secs(t), len);
            assert_eq!(recent, [5, 3], "the span since the last kept reading");
        }
        assert_eq!(w.readings.len(), 1);
        // Another stage's readings are not its base.
        let (base, recent) = w.peek(StageId(2), Duration::from_secs(90), len);
        assert_eq!((base.canary, recent), ([0, 0, 0], [15, 5]));
        assert_eq!(w.stage, Some(StageId(1)));
        let (_, recent) = w.observe(StageId(1), Duration::from_secs(5), len);
        assert_eq!(recent, [5, 3]);
    }
}
