//! The atomics and locks of the protocols the loom models check: std's, or loom's (and a
//! stand-in for std's mutex) when the unit tests are built with `--cfg promotion_gates_loom` (a
//! name of its own: some dependencies read a plain `loom` cfg).
//!
//! The recorder's protocol (`metrics/recorder.rs`), the window base's
//! (`metrics/window_base.rs`), the evaluation's claim (`metrics/mod.rs`), the route path's
//! generation (`manager/generation.rs`) and the change count a write moves after it
//! (`changes.rs`), the writer lock's owed rollback (`manager/writer_lock.rs`, its mutexes
//! included), the sync thread's hand-off and wake-ups (`manager/sync_thread.rs`, its channel
//! included) and the record path's ask for an evaluation (`monitor/ask.rs`, with the window's
//! mutex in `metrics/mod.rs` and the fence a thread's first record runs as it lets the window
//! go, `let_go_then_fence`) go through this module, so that the loom models (`.ci/loom` lists
//! them) explore exactly the loads, stores, fences and lock operations they run. Nothing else
//! is modelled:
//! the record path's other atomic (the monitor's latency target) is std's; the snapshot in
//! place is an `ArcSwap`, which two models replace by a stand-in (the order in which a stage is
//! published, `a_published_stage_is_never_foreign`; the snapshot a route loads,
//! `a_route_never_uses_a_table_older_than_the_generation_it_read`). The fleet's cache
//! (`metrics/fleet.rs`, two `ArcSwapOption`s) is in no model, nor is the sync thread's
//! retirement of the fleets it replaces (`manager/stored/fleet.rs`, `manager/retired.rs`): loom cannot
//! run arc-swap, and the retirement rests on one property of it, not on an order of ours:
//! `swap` pays every guard that borrowed the old value a reference of its own before it
//! returns (arc-swap 1.x: `wait_for_readers`, `Debt::pay_all`), so a replaced fleet whose
//! strong count is 1 (the retired list's) is unreachable: no guard, no `evaluated` slot and no
//! clone holds it, none can take it anew, and the list alone frees it. Flag-set retirement's
//! model (`flags/loom_model.rs`) takes loom's `Arc` itself: the writer's `Retired` list and a
//! thread's recent sets are generic over the reference they hold. In an ordinary build these
//! are std's types, re-exported: nothing is wrapped, so the record and route paths compile to
//! the same instructions.

#[cfg(all(test, promotion_gates_loom))]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering, fence};
#[cfg(all(test, promotion_gates_loom))]
pub(crate) use model_mpsc as mpsc;
#[cfg(all(test, promotion_gates_loom))]
pub(crate) use model_mutex::{Mutex, MutexGuard};
#[cfg(not(all(test, promotion_gates_loom)))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering, fence};
#[cfg(not(all(test, promotion_gates_loom)))]
pub(crate) use std::sync::{Mutex, MutexGuard, mpsc};

/// Lets `held` (a lock's guard) go, then fences (`SeqCst`): for a holder that looks for an ask
/// later, with a relaxed load, rather than at once (`Metrics::first_recorder`, whose caller
/// looks on the record path). The holder's half of the ask's store-buffering handshake
/// (`monitor/ask.rs`): either that load sees an ask made while the lock was held, or the
/// asker's second try finds the lock free. Here so that the ask's loom model
/// (`monitor/ask/loom_model.rs`) runs this fence.
pub(crate) fn let_go_then_fence<G>(held: G) {
    drop(held);
    fence(Ordering::SeqCst);
}

/// Runs `model` under loom, through every interleaving within `LOOM_MAX_PREEMPTIONS`
/// (`.ci/loom`), allowing paths of at least `max_branches` branches (loom's default is
/// smaller than a model's longest path). The models' one set-up.
#[cfg(all(test, promotion_gates_loom))]
pub(crate) fn explore(max_branches: usize, model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = builder.max_branches.max(max_branches);
    builder.check(model);
}

/// std's mutex as it runs on Linux (a futex word), on loom's atomics: taken by an `Acquire`
/// compare-exchange (a `try_lock` that fails is a `Relaxed` read), let go by a `Release` swap.
/// Loom's own `Mutex` makes each lock and unlock a `SeqCst` fence and every `try_lock` read the
/// newest state, which would hide a fence missing next to one. The data is kept in a std mutex
/// that the flag makes uncontended.
///
/// Two `cfg`s, not `all(test, ...)`: clippy takes only a plain `cfg(test)` for test code, where
/// `expect` is allowed (the loom build's clippy, `.ci/loom`'s header).
#[cfg(test)]
#[cfg(promotion_gates_loom)]
mod model_mutex {
    use std::ops::{Deref, DerefMut};
    use std::sync::{LockResult, TryLockError, TryLockResult};

    use loom::sync::atomic::{AtomicBool, Ordering};

    #[derive(Debug)]
    pub(crate) struct Mutex<T> {
        locked: AtomicBool,
        data: std::sync::Mutex<T>,
    }

    pub(crate) struct MutexGuard<'a, T> {
        locked: &'a AtomicBool,
        data: Option<std::sync::MutexGuard<'a, T>>,
    }

    impl<T> Mutex<T> {
        pub(crate) fn new(data: T) -> Self {
            Self {
                locked: AtomicBool::new(false),
                data: std::sync::Mutex::new(data),
            }
        }

        pub(crate) fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
            loop {
                if let Some(guard) = self.take() {
                    return Ok(guard);
                }
                loom::thread::yield_now();
            }
        }

        pub(crate) fn try_lock(&self) -> TryLockResult<MutexGuard<'_, T>> {
            self.take().ok_or(TryLockError::WouldBlock)
        }

        fn take(&self) -> Option<MutexGuard<'_, T>> {
            self.locked
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .ok()?;
            let data = self
                .data
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            Some(MutexGuard {
                locked: &self.locked,
                data: Some(data),
            })
        }
    }

    impl<T: Default> Default for Mutex<T> {
        fn default() -> Self {
            Self::new(T::default())
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;

        fn deref(&self) -> &T {
            self.data.as_ref().expect("held until dropped")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.data.as_mut().expect("held until dropped")
        }
    }

    impl<T> Drop for MutexGuard<'_, T> {
        fn drop(&mut self) {
            // The data first: the next holder may take it at once.
            self.data = None;
            self.locked.swap(false, Ordering::Release);
        }
    }
}

/// std's channel, on loom's: a send fails once the receiver is gone, as std's does (loom's
/// counts the message sent all the same, then reports it leaked); sends and the receiver's
/// drop are ordered by loom's mutex, as std's channel orders them by its own read-modify-writes
/// (loom's, not the stand-in above: a sender waits for the drop without spinning). Loom has no
/// clock: `recv_timeout` waits as `recv` does (the sync interval never ends in a model).
#[cfg(test)]
#[cfg(promotion_gates_loom)]
pub(crate) mod model_mpsc {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::{RecvError, RecvTimeoutError, SendError};
    use std::sync::{Arc, PoisonError};
    use std::time::Duration;

    use loom::sync::Mutex;

    #[derive(Debug)]
    pub(crate) struct Sender<T> {
        inner: loom::sync::mpsc::Sender<T>,
        /// Whether the receiver is still there.
        open: Arc<Mutex<bool>>,
        queue: Arc<Queue>,
    }

    #[derive(Debug)]
    pub(crate) struct Receiver<T> {
        inner: Option<loom::sync::mpsc::Receiver<T>>,
        open: Arc<Mutex<bool>>,
        queue: Arc<Queue>,
    }

    /// How many messages wait, and the most that ever did: the models' observation, not part
    /// of the channel's synchronization (std's atomics: loom runs a model's threads one at a
    /// time, and each count moves before the thread can be switched out).
    #[derive(Debug, Default)]
    struct Queue {
        waiting: AtomicUsize,
        most: AtomicUsize,
    }

    pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
        let (sender, receiver) = loom::sync::mpsc::channel();
        let open = Arc::new(Mutex::new(true));
        let queue = Arc::new(Queue::default());
        (
            Sender {
                inner: sender,
                open: Arc::clone(&open),
                queue: Arc::clone(&queue),
            },
            Receiver {
                inner: Some(receiver),
                open,
                queue,
            },
        )
    }

    impl<T> Clone for Sender<T> {
        fn clone(&self) -> Self {
            Self {
                inner: self.inner.clone(),
                open: Arc::clone(&self.open),
                queue: Arc::clone(&self.queue),
            }
        }
    }

    impl<T> Sender<T> {
        pub(crate) fn send(&self, message: T) -> Result<(), SendError<T>> {
            let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            if !*open {
                return Err(SendError(message));
            }
            self.inner.send(message)?;
            let waiting = self.queue.waiting.fetch_add(1, Ordering::Relaxed) + 1;
            self.queue.most.fetch_max(waiting, Ordering::Relaxed);
            Ok(())
        }

        /// The most messages that ever waited at once.
        pub(crate) fn most_queued(&self) -> usize {
            self.queue.most.load(Ordering::Relaxed)
        }
    }

    impl<T> Receiver<T> {
        fn inner(&self) -> &loom::sync::mpsc::Receiver<T> {
            self.inner.as_ref().expect("there until dropped")
        }

        pub(crate) fn recv(&self) -> Result<T, RecvError> {
            let message = self.inner().recv()?;
            self.queue.waiting.fetch_sub(1, Ordering::Relaxed);
            Ok(message)
        }

        pub(crate) fn recv_timeout(&self, _timeout: Duration) -> Result<T, RecvTimeoutError> {
            self.recv()
                .map_err(|RecvError| RecvTimeoutError::Disconnected)
        }

        pub(crate) fn try_iter(&self) -> impl Iterator<Item = T> + '_ {
            std::iter::from_fn(|| {
                let message = self.inner().try_recv().ok()?;
                self.queue.waiting.fetch_sub(1, Ordering::Relaxed);
                Some(message)
            })
        }
    }

    impl<T> Drop for Receiver<T> {
        fn drop(&mut self) {
            let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            *open = false;
            // Loom's receiver takes what is left as it goes.
            self.inner = None;
        }
    }
}
