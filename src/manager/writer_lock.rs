//! The gate's writer lock, and the automatic rollback it is owed. The record path and the
//! judging reads never wait for the lock: a rollback they call for while a write holds it is
//! left with the lock, and the writer makes it as it lets go. Waiting could be forever: the
//! write may be logging, and the host's log subscriber (or C log callback) records from there,
//! on the same thread, or on a thread whose own write another gate's subscriber waits for.
//! The lock also knows which thread holds it, for the one caller that must not wait for
//! itself (a gate dropped inside its own write).
//!
//! Owing is a store-buffering handshake: the caller that finds the lock held leaves its
//! rollback, raises `owing`, fences and tries the lock again; a holder lets the lock go, fences
//! and reads `owing`. With both fences, one of them sees the other's write, so a rollback owed
//! while the lock is held is made (once: it is taken out under `owed`'s mutex). The loom model
//! (`writer_lock/loom_model.rs`, run by `.ci/loom`) checks this code on loom's atomics and a
//! stand-in for std's mutex (`crate::sync`), the gate's state a list of the rollbacks made.

use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicUsize;
use std::sync::{PoisonError, TryLockError};

use super::{Shared, WriterState};
use crate::decision::StageId;
use crate::sync::{AtomicBool, Mutex, MutexGuard, Ordering, fence};
use crate::verdict::Verdict;

#[cfg(all(test, promotion_gates_loom))]
mod loom_model;

/// What the lock may be owed: a rollback of a stage ([`Verdict`], and the loom model's
/// stand-in).
pub(super) trait Staged: Clone {
    /// The stage it was called for in.
    fn stage(&self) -> StageId;
}

impl Staged for Verdict {
    fn stage(&self) -> StageId {
        Verdict::stage(self)
    }
}

/// Serializes the gate's writes; see the module's note. `S` is the state it guards, `V` the
/// rollback it may be owed (other than [`WriterState`] and [`Verdict`] in the loom model only).
#[derive(Debug)]
pub(super) struct WriterLock<S = WriterState, V = Verdict> {
    state: Mutex<S>,
    /// The holding thread's [`this_thread`] number, 0 while no thread holds the lock. Not part
    /// of the handshake (std's atomic in the loom model too).
    holder: AtomicUsize,
    /// A rollback left for whoever holds the lock next to let it go (the newest one).
    owed: Mutex<Option<V>>,
    /// Whether `owed` holds one: read without its lock by every writer that lets go.
    owing: AtomicBool,
    /// How many times the lock was taken, for the tests of who takes it (only they count).
    #[cfg(test)]
    taken: AtomicUsize,
}

/// The writer lock, held: the [`WriterState`] it guards. Letting it go makes the rollback the
/// lock is owed, if any.
pub(super) struct Writing<'a> {
    held: Held<'a>,
    /// Dropped after `held` (fields drop in order): settles once the mutex is let go.
    _settle: Settle<'a>,
}

/// Makes the owed rollback, if any, when dropped.
struct Settle<'a>(&'a Shared);

/// The mutex itself, held, with its holder named.
struct Held<'a, S = WriterState> {
    state: MutexGuard<'a, S>,
    holder: &'a AtomicUsize,
}

impl<S, V: Staged> WriterLock<S, V> {
    pub(super) fn new(state: S) -> Self {
        Self {
            state: Mutex::new(state),
            holder: AtomicUsize::new(0),
            owed: Mutex::new(None),
            owing: AtomicBool::new(false),
            #[cfg(test)]
            taken: AtomicUsize::new(0),
        }
    }

    /// How many times the lock was taken so far (waited for, or tried and found free).
    #[cfg(test)]
    pub(super) fn times_taken(&self) -> usize {
        self.taken.load(Ordering::SeqCst)
    }

    /// Whether the calling thread holds the lock, lower in its own stack: then
    /// [`Shared::lock_writer`] would wait forever.
    pub(super) fn held_here(&self) -> bool {
        // Only the holder stores its own number, and it clears it before it lets go: a thread
        // reads its own number here only while it holds the lock (numbers are never reused).
        this_thread().is_some_and(|here| self.holder.load(Ordering::Relaxed) == here)
    }

    /// Waits for the lock. A writer that panicked mid-way published nothing (publication is
    /// the last step), so the state behind a poisoned lock is still consistent.
    fn lock(&self) -> Held<'_, S> {
        self.held(self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn try_lock(&self) -> Option<Held<'_, S>> {
        match self.state.try_lock() {
            Ok(state) => Some(self.held(state)),
            Err(TryLockError::Poisoned(poisoned)) => Some(self.held(poisoned.into_inner())),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    fn held<'a>(&'a self, state: MutexGuard<'a, S>) -> Held<'a, S> {
        #[cfg(test)]
        self.taken.fetch_add(1, Ordering::SeqCst);
        // A thread whose thread-locals are gone (it is exiting) holds the lock unnamed.
        self.holder
            .store(this_thread().unwrap_or(0), Ordering::Relaxed);
        Held {
            state,
            holder: &self.holder,
        }
    }

    /// Leaves `verdict` for the next writer to let the lock go, replacing one owed of the same
    /// stage or an older one, never one of a newer stage (a thread that judged an older stage
    /// may owe its verdict after one that judged the current stage: applied, it would be
    /// dropped as another stage's, and the current stage's rollback lost with it).
    fn owe(&self, verdict: &V) {
        let mut owed = self.owed.lock().unwrap_or_else(PoisonError::into_inner);
        if owed
            .as_ref()
            .is_none_or(|held| held.stage() <= verdict.stage())
        {
            *owed = Some(verdict.clone());
        }
        drop(owed);
        self.owing.store(true, Ordering::SeqCst);
    }

    /// Takes the owed rollback if it was called for in `stage`. Called by its holder, which
    /// makes it itself (a promotion it wins over).
    fn take_owed_of(&self, stage: StageId) -> Option<V> {
        let mut owed = self.owed.lock().unwrap_or_else(PoisonError::into_inner);
        owed.take_if(|verdict| verdict.stage() == stage)
    }

    /// The owed rollback and the lock to make it under, if one is owed and the lock is free.
    /// `owing` may be up with nothing owed (its holder took the rollback out to make it, or
    /// another settler made it): then this lets the lock go, fences and looks again, as every
    /// holder does, since a rollback owed while it held the lock found it held.
    fn take_owed(&self) -> Option<(Held<'_, S>, V)> {
        loop {
            if !self.owing.load(Ordering::SeqCst) {
                return None;
            }
            let held = self.try_lock()?;
            self.owing.store(false, Ordering::SeqCst);
            let owed = self
                .owed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            match owed {
                Some(verdict) => return Some((held, verdict)),
                None => {
                    drop(held);
                    fence(Ordering::SeqCst);
                }
            }
        }
    }

    /// Leaves `verdict` to the lock, found held, then settles what is owed in case the holder
    /// let go before it looked: with both fences, either it saw `owing` or this `try_lock`
    /// sees the lock free (or a later holder's, who will look when it lets go). Whether this
    /// call took the lock (see [`settle`](Self::settle)).
    fn owe_then_settle(&self, verdict: &V, apply: impl FnMut(&mut S, &V)) -> bool {
        self.owe(verdict);
        fence(Ordering::SeqCst);
        self.settle(apply)
    }

    /// What a holder does once it has let the lock go: fences (pairing with the one in
    /// [`owe_then_settle`](Self::owe_then_settle)), then settles what is owed.
    fn settle_after_letting_go(&self, apply: impl FnMut(&mut S, &V)) -> bool {
        fence(Ordering::SeqCst);
        self.settle(apply)
    }

    /// Applies the owed rollback while the lock is free, until none is owed. Whether it took
    /// the lock (and let it go): then this thread holds it nowhere in its stack, and may wake
    /// the async subscribers that changes were queued for. Waking is left to the caller: a
    /// change is published only under the lock, and every holder wakes once it has let go
    /// (in `apply_verdict_or_owe`, or as its [`Writing`] drops), so a caller that never held
    /// it loses no wake.
    fn settle(&self, mut apply: impl FnMut(&mut S, &V)) -> bool {
        let mut held_here = false;
        while let Some((mut held, verdict)) = self.take_owed() {
            held_here = true;
            apply(&mut held.state, &verdict);
            drop(held);
            fence(Ordering::SeqCst);
        }
        held_here
    }
}

impl Shared {
    /// Waits for the writer lock.
    pub(super) fn lock_writer(&self) -> Writing<'_> {
        self.writing(self.writer.lock())
    }

    /// The writer lock if no thread holds it.
    pub(super) fn try_lock_writer(&self) -> Option<Writing<'_>> {
        self.writer.try_lock().map(|held| self.writing(held))
    }

    fn writing<'a>(&'a self, held: Held<'a>) -> Writing<'a> {
        Writing {
            held,
            _settle: Settle(self),
        }
    }

    /// Makes the rollback `verdict` calls for now if the writer lock is free, else leaves it
    /// to the writer that holds it, which makes it as it lets go. Never waits.
    pub(super) fn apply_verdict_or_owe(&self, verdict: &Verdict) {
        if let Some(mut writer) = self.try_lock_writer() {
            self.apply_verdict(&mut writer, verdict);
            return;
        }
        // The holder may have let go between the `try_lock` and the `owe`, before it looked
        // at `owing`: this looks again.
        let held_here = self
            .writer
            .owe_then_settle(verdict, |state, verdict| self.apply_verdict(state, verdict));
        // Wakes only if this call held the lock and let it go: else the lock may be held
        // lower in this thread's own stack (a write logging, its log handler judging), and a
        // waker that used the gate would wait for it forever. The holder wakes as it lets go.
        if held_here {
            self.changes.wake();
        }
    }

    /// The rollback the record path called for in `stage` and left for later, while a write
    /// held the writer lock (owed to the lock, or handed to the sync thread), taken out to be
    /// made by the caller, which holds the lock. `None` when none is left, or when
    /// `auto_rollback_enabled` is off or the gate is in Production (then none would be made).
    /// The record path leaves none it judged with it off (see [`Shared::act_on_recording`]).
    pub(super) fn take_left_rollback(&self, stage: StageId) -> Option<Verdict> {
        let current = self.current.load();
        if !current.config.auto_rollback_enabled
            || current.config.environment == crate::Environment::Production
        {
            return None;
        }
        self.take_left(stage)
    }

    /// The rollback the record path called for in `stage` and left for later (owed to the
    /// lock, or handed to the sync thread), taken out whatever the gate shows now. Called
    /// with the lock held.
    pub(super) fn take_left(&self, stage: StageId) -> Option<Verdict> {
        let owed = self.writer.take_owed_of(stage);
        let handed = self.handoff.take_of(stage);
        owed.or(handed)
    }
}

impl<S> Drop for Held<'_, S> {
    fn drop(&mut self) {
        // Before the mutex is let go (fields drop after this).
        self.holder.store(0, Ordering::Relaxed);
    }
}

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        // A panicking write makes no rollback on its way out; the next writer to let go does.
        if !std::thread::panicking() {
            // Whether it took the lock again does not matter: this writer wakes below.
            let shared = self.0;
            shared
                .writer
                .settle_after_letting_go(|state, verdict| shared.apply_verdict(state, verdict));
            // A write that judged held the window: an evaluation the record path asked for
            // meanwhile is made now, as the window's other holders make it.
            self.0.evaluate_wanted();
            // This writer let go of the writer lock, which a thread holds once at most: it
            // holds it nowhere lower in its stack.
            self.0.changes.wake();
        }
    }
}

impl Deref for Writing<'_> {
    type Target = WriterState;

    fn deref(&self) -> &WriterState {
        &self.held.state
    }
}

impl DerefMut for Writing<'_> {
    fn deref_mut(&mut self) -> &mut WriterState {
        &mut self.held.state
    }
}

/// The calling thread's number: 1 for the first thread that asks, then 2, and so on, never
/// reused (a thread-local's address could be); none once the thread's thread-locals are gone.
/// Taken only by writes and rollbacks, never by the route or record path.
fn this_thread() -> Option<usize> {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    thread_local! {
        static NUMBER: Cell<usize> = const { Cell::new(0) };
    }
    NUMBER
        .try_with(|number| {
            if number.get() == 0 {
                number.set(NEXT.fetch_add(1, Ordering::Relaxed));
            }
            number.get()
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_holding_thread_holds_it_here() {
        let lock: WriterLock = WriterLock::new(WriterState::default());
        assert!(!lock.held_here(), "not held");
        let guard = lock.lock();
        assert!(lock.held_here());
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    assert!(!lock.held_here(), "held by another thread");
                    assert!(lock.try_lock().is_none());
                })
                .join()
                .unwrap();
        });
        drop(guard);
        assert!(!lock.held_here(), "let go");
        let again = lock.try_lock().expect("free");
        assert!(lock.held_here());
        drop(again);
        assert!(!lock.held_here());
    }

    #[test]
    fn threads_have_numbers_of_their_own() {
        let here = this_thread();
        assert_eq!(this_thread(), here, "the same thread, the same number");
        let there = std::thread::spawn(this_thread).join().unwrap();
        assert_ne!(there, here);
        assert!(here.is_some_and(|n| n > 0));
    }
}
