//! The gate's writer lock, which also knows which thread holds it: a thread that already holds
//! it (its own write is logging, and the host's log subscriber or C log callback records or
//! reads health from there) must not wait for it, which would be forever.

use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use super::WriterState;

/// Serializes the gate's writes; see the module's note.
#[derive(Debug)]
pub(super) struct WriterLock {
    state: Mutex<WriterState>,
    /// The holding thread's [`this_thread`] number, 0 while no thread holds the lock.
    holder: AtomicUsize,
}

/// The writer lock, held: the [`WriterState`] it guards.
pub(super) struct WriterGuard<'a> {
    state: MutexGuard<'a, WriterState>,
    holder: &'a AtomicUsize,
}

impl WriterLock {
    pub(super) fn new(state: WriterState) -> Self {
        Self {
            state: Mutex::new(state),
            holder: AtomicUsize::new(0),
        }
    }

    /// Waits for the lock. A writer that panicked mid-way published nothing (publication is
    /// the last step), so the state behind a poisoned lock is still consistent.
    pub(super) fn lock(&self) -> WriterGuard<'_> {
        self.held(self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The lock if no thread holds it.
    pub(super) fn try_lock(&self) -> Option<WriterGuard<'_>> {
        match self.state.try_lock() {
            Ok(state) => Some(self.held(state)),
            Err(TryLockError::Poisoned(poisoned)) => Some(self.held(poisoned.into_inner())),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Whether the calling thread holds the lock, lower in its own stack: then
    /// [`lock`](Self::lock) would wait forever.
    pub(super) fn held_here(&self) -> bool {
        // Only the holder stores its own number, and it clears it before it lets go: a thread
        // reads its own number here only while it holds the lock (numbers are never reused).
        this_thread().is_some_and(|here| self.holder.load(Ordering::Relaxed) == here)
    }

    fn held<'a>(&'a self, state: MutexGuard<'a, WriterState>) -> WriterGuard<'a> {
        // A thread whose thread-locals are gone (it is exiting) holds the lock unnamed.
        self.holder
            .store(this_thread().unwrap_or(0), Ordering::Relaxed);
        WriterGuard {
            state,
            holder: &self.holder,
        }
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        // Before the mutex is let go (fields drop after this).
        self.holder.store(0, Ordering::Relaxed);
    }
}

impl Deref for WriterGuard<'_> {
    type Target = WriterState;

    fn deref(&self) -> &WriterState {
        &self.state
    }
}

impl DerefMut for WriterGuard<'_> {
    fn deref_mut(&mut self) -> &mut WriterState {
        &mut self.state
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
        let lock = WriterLock::new(WriterState::default());
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
