//! One read of a gate's window ([`window_export`](PromotionGateManager::window_export)) shared
//! by its window gauges, so that a collection's gauges agree with each other and the window is
//! read once per collection, not once per gauge.
//!
//! A collection calls each gauge once, in order, on one thread (the SDK runs a pipeline's
//! callbacks one after the other on the thread that collects: a periodic reader's own thread,
//! or the caller of a manual reader's `collect`), so a gauge takes its thread's read unless it
//! took it already, in which case a new collection has begun on that thread and it reads the
//! window again. The reads are kept per collecting thread: several readers (an OTLP push and a
//! Prometheus pull) collect at once, each on its own thread, and their callbacks interleave; a
//! read shared by all made each reader's gauges find their bits taken by the other's and start
//! a read of their own, so that one collection mixed reads. A read every gauge took is let go
//! of at once (the bits stay): that thread's next gauge begins a new collection, which reads
//! anew, so keeping it would only hold two latency histograms (tens of KB) per thread.

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, ThreadId};

use crate::manager::PromotionGateManager;
use crate::telemetry::WindowExport;

/// Threads whose reads are kept at most: more readers than hosts run at once. A new thread
/// beyond them takes the place of the one that took a read longest ago.
const MAX_COLLECTING: usize = 16;

/// A thread's read is let go of once this many reads were made since it last took it: it no
/// longer collects (a reader shut down, a pull exporter's server thread gone), or collects
/// rarely and reads anew at its next collection anyway. A collection under way takes its read
/// at every gauge, and sees about one read per other reader's collection meanwhile.
const STALE_AFTER_READS: u64 = 64;

/// Which following of a gate by the instruments a read is of: the instruments' first gate
/// is followed at the default one, and each `follow` (and the instruments' drop) takes the
/// next, under the lock that publishes the gate, so that a gauge finds the gate and its
/// generation together.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Generation(u64);

impl Generation {
    /// The generation after this one.
    pub(super) fn next(self) -> Self {
        Self(self.0.wrapping_add(1))
    }
}

#[derive(Debug, Default)]
pub(super) struct SharedWindow {
    state: Mutex<SharedState>,
}

#[derive(Debug, Default)]
struct SharedState {
    /// How many gauges share the reads.
    gauges: u32,
    /// Reads of the window made so far.
    reads: u64,
    /// The collecting threads' reads, at most [`MAX_COLLECTING`].
    collections: Vec<Collection>,
}

/// One collecting thread's read.
#[derive(Debug)]
struct Collection {
    thread: ThreadId,
    /// The following of the gate `window` was read from: a gauge of another reads anew (the
    /// instruments followed another gate while a gauge held the gate before, whose read came
    /// after the [`SharedWindow::forget`] of the `follow`). Not the gate's address: a gate made
    /// at the address of one gone is published by its `follow` before that `forget` runs, so a
    /// gauge may take it in between, and would take the read of the gate gone.
    generation: Generation,
    /// Its last read, until every gauge took it (or it was let go of).
    window: Option<Arc<WindowExport>>,
    /// The gauges (by bit) that took `window`.
    taken: u64,
    /// `reads` when the thread last took a read.
    used: u64,
}

impl SharedWindow {
    fn state(&self) -> std::sync::MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The bit of one more gauge sharing the reads.
    pub(super) fn next_bit(&self) -> u64 {
        let mut state = self.state();
        state.gauges += 1;
        1u64 << (state.gauges - 1)
    }

    /// Lets go of the last reads: the gate they were read from is no longer observed. The
    /// gauges that took them keep their bits: one that has not yet, in a collection under way,
    /// reads the window anew for the rest of it, and the next collection's first gauge, finding
    /// its bit taken, starts a read for the whole of it (clearing the bits here would leave the
    /// gauges before the first reader taking the previous collection's read in every
    /// collection after).
    pub(super) fn forget(&self) {
        for collection in &mut self.state().collections {
            collection.window = None;
        }
    }

    /// The read the gauge `bit` is to show of `gate`, followed at `generation`, in the calling
    /// thread's collection: its current one unless the gauge took it already (a new
    /// collection: read anew), or a new one when the last was let go of or is of another
    /// generation (the instruments followed `gate` meanwhile: the rest of the collection shares
    /// a read of `gate`, as after a `forget`). The last gauge to take a read lets go of it.
    pub(super) fn take(
        &self,
        gate: &PromotionGateManager,
        generation: Generation,
        bit: u64,
    ) -> Arc<WindowExport> {
        let thread = thread::current().id();
        let mut state = self.state();
        let state = &mut *state;
        let every_gauge = match state.gauges {
            64.. => u64::MAX,
            gauges => (1u64 << gauges) - 1,
        };
        let at = match state.collections.iter().position(|c| c.thread == thread) {
            Some(at) => at,
            None => {
                if state.collections.len() >= MAX_COLLECTING
                    && let Some(oldest) =
                        (0..state.collections.len()).min_by_key(|&i| state.collections[i].used)
                {
                    state.collections.swap_remove(oldest);
                }
                state.collections.push(Collection {
                    thread,
                    generation,
                    window: None,
                    taken: 0,
                    used: state.reads,
                });
                state.collections.len() - 1
            }
        };
        let collection = &mut state.collections[at];
        collection.used = state.reads;
        let new_collection = collection.taken & bit != 0;
        if let Some(window) = &collection.window
            && !new_collection
            && collection.generation == generation
        {
            let window = Arc::clone(window);
            collection.taken |= bit;
            if collection.taken == every_gauge {
                collection.window = None;
            }
            return window;
        }
        let window = Arc::new(gate.window_export());
        collection.generation = generation;
        collection.taken = if new_collection {
            bit
        } else {
            collection.taken | bit
        };
        collection.window = (collection.taken != every_gauge).then(|| Arc::clone(&window));
        state.reads += 1;
        collection.used = state.reads;
        let reads = state.reads;
        state
            .collections
            .retain(|c| reads - c.used <= STALE_AFTER_READS);
        window
    }

    /// How many threads' reads are kept.
    #[cfg(test)]
    fn collections(&self) -> usize {
        self.state().collections.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::decision::Cohort;
    use crate::{PromotionConfig, SloAdmissionController, SloConfig};

    fn gate() -> PromotionGateManager {
        let slo = SloAdmissionController::new(SloConfig::default()).unwrap();
        PromotionGateManager::new(PromotionConfig::default(), slo).unwrap()
    }

    /// The generations of a gate followed first and of one followed after it.
    const FIRST: Generation = Generation(0);
    const SECOND: Generation = Generation(1);

    /// The reads of three gauges, of the bits 1, 2 and 4.
    fn shared_by_three() -> SharedWindow {
        let shared = SharedWindow::default();
        for bit in [1, 2, 4] {
            assert_eq!(shared.next_bit(), bit);
        }
        shared
    }

    /// A whole collection by the three gauges of [`shared_by_three`], on this thread: the
    /// read they all took.
    fn collect(
        shared: &SharedWindow,
        gate: &PromotionGateManager,
        generation: Generation,
    ) -> Arc<WindowExport> {
        let first = shared.take(gate, generation, 1);
        assert!(Arc::ptr_eq(&first, &shared.take(gate, generation, 2)));
        assert!(Arc::ptr_eq(&first, &shared.take(gate, generation, 4)));
        first
    }

    /// The read the first two gauges of [`shared_by_three`] took, at the first generation, of a
    /// `gate` that recorded a request since.
    fn two_gauges_then_a_request(
        shared: &SharedWindow,
        gate: &PromotionGateManager,
    ) -> Arc<WindowExport> {
        let read = shared.take(gate, FIRST, 1);
        assert!(Arc::ptr_eq(&read, &shared.take(gate, FIRST, 2)));
        gate.record_request_outcome("u", true, Duration::from_millis(1));
        read
    }

    /// Each collection's read was kept until the thread's next collection, which reads anew:
    /// two latency histograms held for nothing, per collecting thread.
    #[test]
    fn a_read_every_gauge_took_is_let_go_of() {
        let gate = gate();
        let shared = shared_by_three();
        for _ in 0..2 {
            let read = Arc::downgrade(&shared.take(&gate, FIRST, 1));
            shared.take(&gate, FIRST, 2);
            assert!(read.upgrade().is_some(), "kept for the third gauge");
            shared.take(&gate, FIRST, 4);
            assert!(read.upgrade().is_none(), "every gauge took it");
        }
        // A read made for the last gauge to take one (the one before was let go of, as the
        // gate was followed) is not kept either.
        shared.take(&gate, FIRST, 1);
        shared.take(&gate, FIRST, 2);
        shared.forget();
        let read = Arc::downgrade(&shared.take(&gate, FIRST, 4));
        assert!(read.upgrade().is_none());
        // The bits are kept: the next collection shares one read again.
        collect(&shared, &gate, FIRST);
    }

    #[test]
    fn the_window_gauges_of_a_collection_share_one_read_and_the_next_collection_reads_again() {
        let gate = gate();
        let shared = shared_by_three();
        let first = two_gauges_then_a_request(&shared, &gate);
        // Still the same collection: the same read, not the request since.
        let third = shared.take(&gate, FIRST, 4);
        assert!(Arc::ptr_eq(&first, &third));
        assert_eq!(third.evidence(Cohort::Stable).requests, 0);
        // The first gauge again: a new collection, a new read.
        let next = shared.take(&gate, FIRST, 1);
        assert!(!Arc::ptr_eq(&first, &next));
        assert_eq!(next.evidence(Cohort::Stable).requests, 1);
        assert!(Arc::ptr_eq(&next, &shared.take(&gate, FIRST, 4)));
    }

    #[test]
    fn a_read_let_go_of_during_a_collection_leaves_the_next_collections_sharing_one_read() {
        let gate = gate();
        let shared = shared_by_three();
        for bit in [1, 2, 4] {
            shared.take(&gate, FIRST, bit);
        }
        // A collection under way when the gate is followed (or the instruments dropped).
        shared.take(&gate, FIRST, 1);
        shared.take(&gate, FIRST, 2);
        shared.forget();
        shared.take(&gate, FIRST, 4);
        for _ in 0..3 {
            collect(&shared, &gate, FIRST);
        }
    }

    /// A gauge that held the gate followed before (its callback read the followed gate before
    /// a `follow`, and took its read after the `forget`) left that gate's read to the gauges
    /// after it, which show the gate followed now.
    #[test]
    fn a_read_of_another_gate_is_not_taken() {
        let (a, b) = (gate(), gate());
        b.record_request_outcome("u", true, Duration::from_millis(1));
        let shared = shared_by_three();
        shared.forget();
        let of_a = shared.take(&a, FIRST, 1);
        let of_b = shared.take(&b, SECOND, 2);
        assert!(!Arc::ptr_eq(&of_a, &of_b));
        assert_eq!(of_b.evidence(Cohort::Stable).requests, 1);
        // The rest of the collection shares b's read, and the next ones share one read each.
        assert!(Arc::ptr_eq(&of_b, &shared.take(&b, SECOND, 4)));
        for _ in 0..2 {
            assert!(!Arc::ptr_eq(&collect(&shared, &b, SECOND), &of_b));
        }
    }

    /// A gate made at the address of one gone and followed: a gauge may take a read between
    /// the `follow` that published the gate and its `forget`, and it took the gate gone's read
    /// when reads were told apart by the gate's address. Here the same gate stands for both.
    #[test]
    fn a_read_of_another_generation_is_not_taken_even_of_a_gate_at_the_same_address() {
        let gate = gate();
        let shared = shared_by_three();
        let before = two_gauges_then_a_request(&shared, &gate);
        // Followed again (no `forget` yet): the third gauge reads anew.
        let after = shared.take(&gate, SECOND, 4);
        assert!(!Arc::ptr_eq(&before, &after));
        assert_eq!(after.evidence(Cohort::Stable).requests, 1);
        // The next collection shares one read of the new generation.
        let next = collect(&shared, &gate, SECOND);
        assert_eq!(next.evidence(Cohort::Stable).requests, 1);
    }

    #[test]
    fn another_readers_collection_on_another_thread_leaves_this_ones_read_alone() {
        let gate = gate();
        let shared = shared_by_three();
        let first = shared.take(&gate, FIRST, 1);
        // Another reader collects in full meanwhile, on its thread, and again.
        for _ in 0..2 {
            thread::scope(|s| {
                s.spawn(|| {
                    collect(&shared, &gate, FIRST);
                });
            });
        }
        assert!(Arc::ptr_eq(&first, &shared.take(&gate, FIRST, 2)));
        assert!(Arc::ptr_eq(&first, &shared.take(&gate, FIRST, 4)));
        assert!(
            !Arc::ptr_eq(&first, &shared.take(&gate, FIRST, 1)),
            "a new collection"
        );
    }

    #[test]
    fn the_reads_kept_are_of_a_few_recent_threads() {
        let gate = gate();
        let shared = shared_by_three();
        for _ in 0..3 * MAX_COLLECTING {
            thread::scope(|s| {
                s.spawn(|| shared.take(&gate, FIRST, 1));
            });
            assert!(shared.collections() <= MAX_COLLECTING);
        }
        assert_eq!(shared.collections(), MAX_COLLECTING);
        // This thread alone collects: the others' reads go once stale.
        for _ in 0..=STALE_AFTER_READS {
            shared.take(&gate, FIRST, 1);
        }
        assert_eq!(shared.collections(), 1);
    }
}
