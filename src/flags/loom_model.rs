//! A loom model of flag-set retirement (`flags.rs`, `manager/retired.rs`): a reading thread
//! holds the set it read among its two recent sets while a write takes that set out of its
//! slot and keeps it, and a later write or tick sweeps. The hold and its release are the
//! thread's [`Recent`] sets, and the keeping and freeing are the writer's [`Retired`] list
//! (`keep_if_held`, `sweep`), the code `FlagSetIndex::reclaim` and `sweep_reclaimed` run, on
//! loom's `Arc`: its reference count is the handshake, and loom's carries std's orderings (a
//! clone's increment, a drop's release decrement, and the last drop's acquire); the gate sets
//! no ordering of its own here. What the model takes as given, rather than checks: the slot is
//! a stand-in for its `ArcSwapOption`, a load under the stand-in for std's mutex
//! (`crate::sync`) that takes a reference, as an `arc-swap` guard holds one once a swap has
//! paid its debt (the guarantee `retired.rs` rests on); and loom's `strong_count` reads the
//! newest count, where std's is a relaxed load that may read an older one (which can only be
//! too high once the list alone holds the set, since nobody can take it again: a later sweep
//! frees it). A set's memory is a loom cell, read through a hold and written when the set is
//! freed, so that a read not ordered before the free is a race loom reports. Built only with
//! `--cfg promotion_gates_loom` (`.ci/loom`).

use std::cell::Cell;
use std::sync::atomic::AtomicUsize;

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
/// the reading thread, nor before a read through a hold; a set no thread holds when it is
/// displaced is freed at once; and the sweep after the thread's end frees it (the sweep that
/// races the thread's let-go is not asserted on). Both ways of a displacement are reached:
/// the set held (kept) and not (freed at once), counted over the interleavings and required
/// when loom may preempt twice or more (`LOOM_MAX_PREEMPTIONS`, 2 in `.ci/run`; unset, no
/// bound): keeping the set takes two preemptions, the reader's load between the writer's
/// start and its displacement, then the writer's displacement before the reader lets go. Keeping a set only while three hold it, in `keep_if_held` or in
/// `sweep` (`> 2` for `> 1`), fails it (the reading thread frees the set), and so do a sweep
/// that frees nothing and a `keep_if_held` that always keeps (`> 0`). No ordering of the
/// gate's is weakened: there is none (the counts are `Arc`'s, whose orderings loom fixes),
/// and the memory cell can only fail should `Arc`'s drop not order the reads before the free.
#[test]
fn a_displaced_flag_set_is_freed_by_the_writer_once_no_thread_holds_it() {
    // Interleavings in which the displaced set was kept, and freed at once (std's atomics:
    // outside the model, across its runs).
    static KEPT: AtomicUsize = AtomicUsize::new(0);
    static FREED_AT_ONCE: AtomicUsize = AtomicUsize::new(0);
    explore(10_000, || {
        let displaced_freed = Arc::new(AtomicBool::new(false));
        // The other sets' flag, unread: they are freed as the model ends.
        let others_freed = Arc::new(AtomicBool::new(false));
        let slot = Arc::new(Mutex::new(Some(Set::new(1, &displaced_freed))));
        // Two other sets of the gate that the thread reads next, held by their slots.
        let others = [Set::new(2, &others_freed), Set::new(3, &others_freed)];
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
            .replace(Set::new(4, &others_freed));
        reclaimed.keep_if_held(displaced);
        if reclaimed.len() == 0 {
            assert!(
                displaced_freed.load(Ordering::Relaxed),
                "a set no thread held when displaced was freed at once"
            );
            FREED_AT_ONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else {
            KEPT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
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
    let (kept, freed) = (
        KEPT.load(std::sync::atomic::Ordering::Relaxed),
        FREED_AT_ONCE.load(std::sync::atomic::Ordering::Relaxed),
    );
    let preemptions = std::env::var("LOOM_MAX_PREEMPTIONS")
        .ok()
        .and_then(|bound| bound.parse::<usize>().ok());
    if preemptions.is_none_or(|bound| bound >= 2) {
        assert!(
            kept > 0 && freed > 0,
            "both ways of a displacement reached: kept in {kept} interleavings, freed at once in {freed}"
        );
    }
}
