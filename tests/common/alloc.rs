//! A counting global allocator: the system allocator, counting the allocations (and
//! reallocations) of the threads that ask, with their bytes, and their frees, and the live
//! heap of the whole process ([`live_bytes`]). A free counts as much as an allocation on a hot
//! path: freeing a large block may unmap it, and a block another thread allocated goes back
//! under its arena's lock.
//!
//! Declared here as the `#[global_allocator]` of every test crate that has `mod common;`.
//! Threads that do not count pay one read of a const thread-local and one relaxed atomic add
//! per allocation, so test crates that never measure are not disturbed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes allocated and not yet freed, by every thread of the process.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// The process's live heap in bytes: allocated through this allocator and not yet freed, by
/// every thread (measure in a test crate whose other tests do not run meanwhile).
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// The system allocator, counting the allocations of threads that ask (see
/// [`allocations_during`]).
pub struct CountingAllocator;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

thread_local! {
    /// Whether this thread's allocations are being counted.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// This thread's allocations since counting started, their bytes, and its frees.
    static ALLOCATED: Cell<Allocated> = const {
        Cell::new(Allocated { count: 0, bytes: 0, frees: 0 })
    };
}

/// Allocations (and reallocations), and frees, counted on one thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allocated {
    /// How many allocations.
    pub count: u64,
    /// Their bytes (a reallocation counts its new size).
    pub bytes: u64,
    /// How many blocks were freed (a reallocation counts as an allocation only).
    pub frees: u64,
}

/// Applies `note` to this thread's counts if it is counting. Const-initialized thread-locals
/// without destructors neither allocate nor register anything, so this cannot recurse.
fn note(note: impl FnOnce(&mut Allocated)) {
    // `try_with`: the thread may be tearing its locals down.
    let _ = COUNTING.try_with(|counting| {
        if counting.get() {
            let _ = ALLOCATED.try_with(|a| {
                let mut counted = a.get();
                note(&mut counted);
                a.set(counted);
            });
        }
    });
}

/// Counts one allocation of `bytes` if this thread is counting.
fn note_allocation(bytes: usize) {
    note(|a| {
        a.count += 1;
        a.bytes += bytes as u64;
    });
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; counting touches only this thread's `Cell`s and never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract (non-zero size), as `System` needs.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by this allocator, i.e. by `System`, with `layout`; the
        // caller upholds `realloc`'s contract for `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(|a| a.frees += 1);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by this allocator, i.e. by `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// What `f` returns, and the allocations (and reallocations) and frees it made on this thread.
/// The result passes through [`black_box`], so work whose result is unused is still done (and
/// is dropped after counting stops).
pub fn allocations_during<R>(f: impl FnOnce() -> R) -> (R, Allocated) {
    ALLOCATED.with(|a| a.set(Allocated::default()));
    COUNTING.with(|c| c.set(true));
    let result = black_box(f());
    COUNTING.with(|c| c.set(false));
    (result, ALLOCATED.with(Cell::get))
}
