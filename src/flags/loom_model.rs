//! A loom model of flag-set retirement (`flags.rs`, `manager/retired.rs`): a reading thread
//! holds the set it read among its two recent sets while a write takes that set out of its
//! slot and keeps it, and a later write or tick sweeps. The hold and its release are the
//! thread's [`Recent`] sets, and the keeping and freeing are the writer's [`Retired`] list
//! (`keep_if_held`, `sweep`), the code `FlagSetIndex::reclaim` and `sweep_reclaimed` run, on
//! loom's `Arc`: its reference count is the handshake, and loom's carries std's orderings (a
//! clone's increment, a drop's release decrement, and the last drop's acquire), which the
//! model cannot weaken: the gate has no ordering of its own here. The slot is a stand-in for
//! its `ArcSwapOption`: a load under the stand-in for std's mutex (`crate::sync`) that takes a
//! reference, as an `arc-swap` guard holds one once a swap has paid its debt (the guarantee
//! `retired.rs` rests on). A set's memory is a loom cell, read through a hold and written when
//! the set is freed, so that a read not ordered before the free is a race loom reports. Built
//! only with `--cfg promotion_gates_loom` (`.ci/loom`).

use std::cell::Cell;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

use super::{FlagSetId, Recent};
use crate::manager::retired::{Counted, Retired};
use crate::sync::{Mutex, explore};

impl<T> Counted for Arc<T> {
    fn holders(&self) -> usize {
        Arc::strong_count(self)
    }
}

loom::thread_local! {
    /// Whether this thread is the reading one, which must never free a set.
    static READING: Cell<bool> = Cell::new(false);
}

/// A stored set: its number, and whether it was freed.
struct Set {
    id: FlagSetId,
    /// Stands for the set's memory: touched by each read and by the free, which loom orders.
    memory: UnsafeCell<()>,
    freed: Arc<AtomicBool>,
}

impl Set {
    fn new(id: u32, freed: &Arc<AtomicBool>) -> Arc<Self> {
        Arc::new(Self {
            id: FlagSetId(id),
            memory: UnsafeCell::new(()),
            freed: Arc::clone(freed),
        })
    }

    /// Its number, read through a reference the reading thread holds.
    fn read(&self) -> FlagSetId {
        self.memory.with(|_| self.id)
    }
}

impl Drop for Set {
    fn drop(&mut self) {
        assert!(
            !READING.with(Cell::get),
            "the reading thread freed a set (reading frees nothing)"
        );
        self.memory.with_mut(|_| ());
        self.freed.store(true, Ordering::Relaxed);
    }
}

/// A write displaces the set a thread is reading (loading it from its slot, holding it among
/// its recent sets, reading through the hold, then letting go of it by reading two other
/// sets), and sweeps; once the thread let go, a sweep frees it. The set is never freed on
/// the reading thread, nor before a read through a hold, and it is freed by the first sweep
/// after the thread let go. Keeping a set only while three hold it, in `keep_if_held` or in
/// `sweep` (`> 2` for `> 1`), fails it (the reading thread frees the set), and so does a sweep
/// that frees nothing (`> 0`). No ordering of the gate's is weakened: there is none (the
/// counts are `Arc`'s, whose orderings loom fixes), and the memory cell can only fail should
/// `Arc`'s drop not order the reads before the free.
#[test]
fn a_displaced_flag_set_is_freed_by_the_writer_once_no_thread_holds_it() {
    explore(10_000, || {
        let displaced_freed = Arc::new(AtomicBool::new(false));
        let unfreed = Arc::new(AtomicBool::new(false));
        let slot = Arc::new(Mutex::new(Some(Set::new(1, &displaced_freed))));
        // Two other sets of the gate that the thread reads next, held by their slots.
        let others = [Set::new(2, &unfreed), Set::new(3, &unfreed)];
        let reader = {
            let slot = Arc::clone(&slot);
            let others = others.clone();
            thread::spawn(move || {
                READING.with(|reading| reading.set(true));
                let mut recent = Recent::default();
                // `with_set`: the slot's set, remembered if it is still the one asked for.
                let loaded = slot
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clone();
                let asked = FlagSetId(1);
                if let Some(set) = loaded.filter(|set| set.read() == asked) {
                    recent.insert(asked, set);
                }
                if let Some(held) = recent.find(asked) {
                    assert_eq!(held.read(), asked);
                }
                for other in others {
                    recent.insert(other.read(), other);
                }
                assert!(recent.find(asked).is_none(), "let go of");
                // Kept past the thread's exit, as `thread_local` keeps it.
                recent
            })
        };
        let mut reclaimed = Retired::default();
        // A write stores a new set in the slot (`FlagSets::store`), displacing the set.
        let displaced = slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .replace(Set::new(4, &unfreed));
        reclaimed.keep_if_held(displaced);
        // A later write that publishes, or a tick (`sweep_reclaimed`).
        reclaimed.sweep();
        let recent = reader.join().expect("the reading thread");
        reclaimed.sweep();
        assert!(
            displaced_freed.load(Ordering::Relaxed),
            "the sweep after the thread let go freed the set"
        );
        assert_eq!(reclaimed.len(), 0);
        drop((recent, others, slot));
    });
}
