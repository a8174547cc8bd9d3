//! Whether the calling thread is exiting: its thread-locals are being destroyed.
//!
//! The gate's per-thread state (recorders, route tables, recent flag sets) lives in
//! `thread_local::ThreadLocal`s, which find a thread's slot through a thread-local id that is
//! freed when the thread exits, and panic when asked for it after that. A host's own
//! thread-local whose destructor routes or records (a per-thread pool flushing its in-flight
//! outcomes as the thread ends) would then panic inside a thread-local destructor, which aborts
//! the process. The lookup of an existing slot never panics (a thread whose id is gone finds
//! none); making a slot does. So the first time a thread makes a slot, a watch is set up after
//! the id's guard: thread-local destructors run in the reverse order of their registration, so
//! the watch is dropped first and marks the thread exiting, and a call that finds no slot then
//! takes a path that needs none ([`slot`] returns `None`). A thread whose id another user of `thread_local` made (after the
//! host's thread-local), or that took over an exited thread's slots with its id, has no watch
//! yet: its first call after the id is gone panics inside [`slot`], which catches it (the
//! panic hook prints it, once per such thread), marks the thread exiting and takes the same
//! path. (Built with `panic = "abort"`, that one case still aborts.)

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
fn watch() {
    let _ = WATCH.try_with(|_| ());
}

/// Makes the calling thread's slot with `make` (a `ThreadLocal::get_or`), then sets up its
/// watch; `None` when the thread is exiting, or when its `thread_local` id is already gone
/// (`make` panicked): the thread is then marked exiting. Only on the cold path that makes a
/// thread's slot, after `ThreadLocal::get` found none: that lookup never panics (a thread
/// whose id is gone finds no slot), so the hot paths need no check.
pub(crate) fn slot<T>(make: impl FnOnce() -> T) -> Option<T> {
    if exiting() {
        return None;
    }
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(make)) {
        Ok(slot) => {
            watch();
            Some(slot)
        }
        Err(_) => {
            let _ = EXITING.try_with(|exiting| exiting.set(true));
            None
        }
    }
}

/// Whether the calling thread's thread-locals are being destroyed (after the watch was): its
/// `ThreadLocal` slots can no longer be made. One thread-local load.
fn exiting() -> bool {
    EXITING.try_with(Cell::get).unwrap_or(true)
}
