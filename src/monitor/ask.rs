//! The record path's ask for an evaluation: how a thread that finds an evaluation due while the
//! window is held leaves it to the window's holder without waiting for it.
//!
//! The asker raises the ask, fences and tries the window again; every holder lets the window
//! go, fences and takes the ask (a thread's first record, which makes the window's buffers,
//! fences as it lets go, `crate::sync::let_go_then_fence`, and looks on the record path, by
//! `asked` or `take`). A store-buffering handshake: with both fences, either the
//! holder sees the ask or the asker's second `try_lock` finds the window free (or held by a
//! later holder, which looks when it lets go), so an ask is never lost. It is not made exactly
//! once: an asker that finds the window free on its second try leaves its ask standing (another
//! thread may have made it too), and takes it after its own evaluation, which makes one more.
//! The loom models (`ask/loom_model.rs`, run by `.ci/loom`) check this code, a read's hold and
//! a first record's, on loom's atomics, with the window's mutex the stand-in for std's
//! (`crate::sync`).

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicBool, Ordering, fence};

#[cfg(all(test, promotion_gates_loom))]
mod loom_model;

/// Whether an evaluation is asked for. Written only when asking or taking; on its own cache
/// line, away from the record path's loads.
#[derive(Debug)]
pub(super) struct Ask(CachePadded<AtomicBool>);

impl Ask {
    /// None asked for.
    pub(super) fn new() -> Self {
        Self(CachePadded::new(AtomicBool::new(false)))
    }

    /// The window, if `try_lock` takes it; if it is held, its holder is asked to evaluate and
    /// the window tried again (the holder may have let go, and looked for an ask, between the
    /// first try and the ask). The ask stays when the second try takes the window.
    pub(super) fn try_or_ask<W>(&self, try_lock: impl Fn() -> Option<W>) -> Option<W> {
        match try_lock() {
            Some(window) => Some(window),
            None => self.ask_then(try_lock),
        }
    }

    #[cold]
    fn ask_then<W>(&self, try_lock: impl FnOnce() -> Option<W>) -> Option<W> {
        self.0.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        try_lock()
    }

    /// For a holder that has let the window go: the window to make the evaluation asked for
    /// meanwhile, if one was and `try_lock` takes it (if it is held again, its new holder is
    /// asked). The fence pairs with the asker's (see [`try_or_ask`](Self::try_or_ask)).
    pub(super) fn wanted<W>(&self, try_lock: impl Fn() -> Option<W>) -> Option<W> {
        fence(Ordering::SeqCst);
        if !self.take() {
            return None;
        }
        self.try_or_ask(try_lock)
    }

    /// Whether an evaluation is asked for, without taking the ask: one relaxed load, for a
    /// caller that may have held the window and fenced since (see `Metrics::first_recorder`).
    pub(super) fn asked(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Whether an evaluation was asked for, clearing the ask. A load first: the flag is
    /// written only when asking or taking. `Acquire`: the evaluation sees what the asker did
    /// before it asked.
    pub(super) fn take(&self) -> bool {
        self.0.load(Ordering::Relaxed) && self.0.swap(false, Ordering::Acquire)
    }
}
