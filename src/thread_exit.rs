//! Whether the calling thread is exiting: its thread-locals are being destroyed.
//!
//! The gate's per-thread state (recorders, route tables, recent flag sets) lives in
//! `thread_local::ThreadLocal`s, which find a thread's slot through a thread-local id that is
//! freed when the thread exits, and panic when asked for it after that. A host's own
//! thread-local whose destructor routes or records (a per-thread pool flushing its in-flight
//! outcomes as the thread ends) would then panic inside a thread-local destructor, which aborts
//! the process. So the first time a thread gets a slot, a watch is set up after the id's guard:
//! thread-local destructors run in the reverse order of their registration, so the watch is
//! dropped first and marks the thread exiting, and every later call takes a path that needs no
//! slot (see [`exiting`]).

use std::cell::Cell;

thread_local! {
    /// Set when the watch is dropped; needs no destructor, so it can be read at any time.
    static EXITING: Cell<bool> = const { Cell::new(false) };
    static WATCH: Watch = const { Watch };
}

/// Marks the thread exiting when its thread-locals are destroyed.
struct Watch;

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = EXITING.try_with(|exiting| exiting.set(true));
    }
}

/// Sets up the watch of the calling thread (once; later calls do nothing). Called right after
/// a `ThreadLocal` made the thread's slot, so that the watch is destroyed before the id the
/// slot is found by.
pub(crate) fn watch() {
    let _ = WATCH.try_with(|_| ());
}

/// Whether the calling thread's thread-locals are being destroyed (after the watch was): its
/// `ThreadLocal` slots can no longer be found. One thread-local load.
#[inline(always)]
pub(crate) fn exiting() -> bool {
    EXITING.try_with(Cell::get).unwrap_or(true)
}
