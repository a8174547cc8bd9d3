//! The screen's base: the counters at the start of the window the judge last evaluated, from
//! which the record path's screen measures its window and bursts without taking the window.
//!
//! **One writer, a seqlock.** Only an evaluation writes the base, holding the window, so one
//! at a time; the screen reads it on the record path, without a lock. The writer makes the
//! sequence odd, fences (`Release`), stores the stage and the counters, then publishes the
//! next even sequence with `Release`. A reader takes the sequence with `Acquire`, reads, fences
//! (`Acquire`) and re-reads the sequence: if it was odd, or moved, what it read may mix two
//! writes and is dropped. The stage alone cannot tell: every evaluation of a stage writes the
//! same stage again, so a reader that found it before and after a write could still pair one
//! write's requests with the next one's errors.
//!
//! A reader tries [`READ_TRIES`] times, then gives up: the record path never spins without
//! bound. A write is a few stores, so a reader meets one at every try only when its writer
//! was preempted in the middle; the screen then leaves the decision to the window itself (see
//! `Monitor::screen`).

use crate::decision::{PerCohort, StageId};
use crate::sync::{AtomicU64, Ordering, fence};

/// How many times a reader reads before it gives up on a base being written.
const READ_TRIES: usize = 3;

/// What the base holds: `[requests, errors, compliant]` per cohort at the window's start, and
/// each cohort's `[requests, errors]` where the bursts are measured from (`[earlier,
/// latest]`, see `Window::burst_bases`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Base {
    pub(crate) counts: PerCohort<[u64; 3]>,
    pub(crate) bursts: [PerCohort<[u64; 2]>; 2],
}

/// The base's cells, written by one evaluation at a time and read by the screen (see the
/// module's docs).
#[derive(Debug)]
pub(crate) struct WindowBase {
    /// Even at rest, odd while a write is under way.
    sequence: AtomicU64,
    /// The stage the base is of (0: none yet).
    stage: AtomicU64,
    counts: PerCohort<[AtomicU64; 3]>,
    bursts: [PerCohort<[AtomicU64; 2]>; 2],
}

impl WindowBase {
    pub(crate) fn new() -> Self {
        Self {
            sequence: AtomicU64::new(0),
            stage: AtomicU64::new(0),
            counts: PerCohort::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            bursts: std::array::from_fn(|_| {
                PerCohort::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0)))
            }),
        }
    }

    /// Replaces the base with `base`, of `stage`. Only the window's holder calls it, so
    /// writes never overlap.
    pub(crate) fn write(&self, stage: StageId, base: &Base) {
        let sequence = self.sequence.load(Ordering::Relaxed);
        self.sequence
            .store(sequence.wrapping_add(1), Ordering::Relaxed);
        // Orders the odd sequence before the stores below: a reader that reads any of them
        // and then fences finds the sequence moved.
        fence(Ordering::Release);
        self.stage.store(stage.0, Ordering::Relaxed);
        for (cells, values) in self.cells().zip(base.values()) {
            cells.store(values, Ordering::Relaxed);
        }
        self.sequence
            .store(sequence.wrapping_add(2), Ordering::Release);
    }

    /// The base of `stage`, read whole: zeros when the base is of another stage (none was
    /// written for `stage` yet); `None` when a write was under way at each of [`READ_TRIES`]
    /// tries. Lock-free, no allocation.
    pub(crate) fn read(&self, stage: StageId) -> Option<Base> {
        for _ in 0..READ_TRIES {
            let sequence = self.sequence.load(Ordering::Acquire);
            if sequence.is_multiple_of(2) {
                let of = self.stage.load(Ordering::Relaxed);
                let load = |cell: &AtomicU64| cell.load(Ordering::Relaxed);
                let base = Base {
                    counts: PerCohort::from_fn(|c| self.counts[c].each_ref().map(load)),
                    bursts: self
                        .bursts
                        .each_ref()
                        .map(|span| PerCohort::from_fn(|c| span[c].each_ref().map(load))),
                };
                // Orders the loads above before the sequence's re-read: one of them that
                // read a write under way finds the sequence moved.
                fence(Ordering::Acquire);
                if self.sequence.load(Ordering::Relaxed) == sequence {
                    return Some(if of == stage.0 { base } else { Base::default() });
                }
            }
            std::hint::spin_loop();
        }
        None
    }

    /// Every cell but the stage, in the order of [`Base::values`].
    fn cells(&self) -> impl Iterator<Item = &AtomicU64> {
        let bursts = self.bursts.iter().flat_map(|span| span.iter().flatten());
        self.counts.iter().flatten().chain(bursts)
    }
}

impl Base {
    /// Every value, in the order of `WindowBase::cells` (for the writer; the reader loads
    /// each cell in place: a loop over these chained iterators cost the screen about 0.1 µs).
    fn values(&self) -> impl Iterator<Item = u64> + '_ {
        let bursts = self.bursts.iter().flat_map(|span| span.iter().flatten());
        self.counts.iter().flatten().chain(bursts).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A base whose every value differs from the others: `seed`, `seed + 1`, ...
    fn base(seed: u64) -> Base {
        let mut base = Base::default();
        let Base { counts, bursts } = &mut base;
        let bursts = bursts.iter_mut().flat_map(|span| span.iter_mut().flatten());
        for (n, value) in counts.iter_mut().flatten().chain(bursts).enumerate() {
            *value = seed + n as u64;
        }
        base
    }

    #[test]
    fn a_base_reads_back_for_its_stage_and_as_zeros_for_another() {
        let cells = WindowBase::new();
        assert_eq!(cells.read(StageId(1)), Some(Base::default()));
        cells.write(StageId(1), &base(100));
        assert_eq!(cells.read(StageId(1)), Some(base(100)));
        assert_eq!(cells.read(StageId(2)), Some(Base::default()));
        cells.write(StageId(1), &base(200));
        assert_eq!(cells.read(StageId(1)), Some(base(200)));
        // Each value has a cell of its own, and every cell is read back.
        assert_eq!(base(0).values().count(), cells.cells().count());
        assert_eq!(cells.cells().count(), 14);
    }

    #[test]
    fn a_write_under_way_at_every_try_is_no_base() {
        let cells = WindowBase::new();
        cells.write(StageId(1), &base(100));
        // A writer stopped between its odd and its even sequence.
        cells.sequence.store(5, Ordering::Relaxed);
        assert_eq!(cells.read(StageId(1)), None);
        cells.sequence.store(6, Ordering::Relaxed);
        assert_eq!(cells.read(StageId(1)), Some(base(100)));
    }
}
