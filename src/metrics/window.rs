//! The sliding window: the judge looks at the last `rollback_window_seconds`, not at all time.
//!
//! Recorders only ever count up within a stage, so the window is a difference of two
//! cumulative readings: the reading now, minus the latest reading taken at least one window
//! ago. Each evaluation leaves its reading in a ring of [`SLOTS`] + 2 entries, at most one per
//! slot (a window / 10), so the window's start is exact to one slot (30 s at the default 300 s
//! window) as long as the gate is evaluated at least once a slot; evaluation runs on the record
//! path, so a gate that sees traffic is. Memory: 12 readings of 2 x 20 KiB, about 480 KiB per
//! gate, whatever the number of threads.

use std::collections::VecDeque;
use std::time::Duration;

use super::recorder::CohortCounts;
use crate::decision::StageId;

/// Slots per window.
pub(crate) const SLOTS: u32 = 10;

/// Cumulative readings of one stage, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Window {
    stage: Option<StageId>,
    readings: VecDeque<(Duration, [CohortCounts; 2])>,
}

impl Window {
    /// Records a cumulative reading of `stage` taken at `now` and returns what happened within
    /// the window `length` before it, and the base reading it was measured from (counters
    /// only). A new stage starts the window afresh.
    pub(crate) fn observe(
        &mut self,
        stage: StageId,
        now: Duration,
        length: Duration,
        reading: [CohortCounts; 2],
    ) -> ([CohortCounts; 2], [CohortCounts; 2]) {
        if self.stage != Some(stage) {
            self.stage = Some(stage);
            self.readings.clear();
        }
        let base = self.base(now, length);
        let windowed = [reading[0].since(&base[0]), reading[1].since(&base[1])];
        let slot = (length / SLOTS).max(Duration::from_millis(1));
        let same_slot = self.readings.back().is_some_and(|(at, _)| {
            at.as_nanos() / slot.as_nanos() == now.as_nanos() / slot.as_nanos()
        });
        if same_slot {
            self.readings.pop_back();
        }
        self.readings.push_back((now, reading));
        // Keep one reading at or before the window's start, none older.
        let start = now.saturating_sub(length);
        while self.readings.len() > 1 && self.readings.get(1).is_some_and(|(at, _)| *at <= start) {
            self.readings.pop_front();
        }
        (
            windowed,
            base.map(|c| CohortCounts {
                histogram: Vec::new(),
                ..c
            }),
        )
    }

    /// The latest reading at or before `now - length`, or zero if there is none.
    fn base(&self, now: Duration, length: Duration) -> [CohortCounts; 2] {
        let start = now.checked_sub(length);
        start
            .and_then(|start| self.readings.iter().rev().find(|(at, _)| *at <= start))
            .map(|(_, counts)| counts.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(canary_requests: u64, canary_errors: u64) -> [CohortCounts; 2] {
        [
            CohortCounts {
                requests: canary_requests,
                errors: canary_errors,
                compliant: 0,
                histogram: vec![canary_requests],
            },
            CohortCounts::default(),
        ]
    }

    #[test]
    fn old_data_leaves_the_window() {
        let mut w = Window::default();
        let s = StageId(1);
        let len = Duration::from_secs(300);
        let secs = Duration::from_secs;
        assert_eq!(w.observe(s, secs(0), len, reading(0, 0)).0[0].requests, 0);
        // 100 errors in the first 10 s.
        assert_eq!(
            w.observe(s, secs(10), len, reading(100, 100)).0[0].errors,
            100
        );
        // Then clean traffic; evaluated every 30 s.
        let mut t = 40;
        let mut total = 100;
        while t <= 400 {
            total += 30;
            let (win, _) = w.observe(s, secs(t), len, reading(total, 100));
            if t >= 310 {
                assert_eq!(
                    win[0].errors, 0,
                    "at {t}s the errors of 0..10s are outside the window"
                );
            } else {
                assert_eq!(win[0].errors, 100, "at {t}s");
            }
            t += 30;
        }
        assert!(w.readings.len() <= SLOTS as usize + 2);
    }

    #[test]
    fn a_new_stage_starts_from_zero() {
        let mut w = Window::default();
        let len = Duration::from_secs(60);
        w.observe(StageId(1), Duration::from_secs(1), len, reading(50, 5));
        let (win, _) = w.observe(StageId(2), Duration::from_secs(2), len, reading(3, 1));
        assert_eq!((win[0].requests, win[0].errors), (3, 1));
    }
}
