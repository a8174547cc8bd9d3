//! The gate's sync thread: every sync interval (or when woken) it applies other processes'
//! writes, exchanges this process's evidence with the fleet's, and writes a rollback the
//! record path handed off; the [`Handoff`] is how the record path and the host's asks reach
//! it without waiting for store I/O. Stopped and joined when the gate is dropped.
//!
//! The loom model (`sync_thread/loom_model.rs`, run by `.ci/loom`) checks the hand-off, the
//! wake-ups and the tick's order ([`run_ticks`]) on loom's atomics, its channel and the
//! stand-in for std's mutex (`crate::sync`), the gate a stand-in that takes the handed-off
//! rollback as [`Shared::sync_once`] does.

use std::any::Any;
use std::ops::Deref;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, OnceLock, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Shared;
use super::stored::{Exchange, StoreLink};
use crate::error::Error;
use crate::store::{StoreError, StoreProblem};
use crate::sync::{AtomicBool, AtomicU8, Mutex, MutexGuard, Ordering, mpsc};
use crate::verdict::Verdict;

#[cfg(all(test, promotion_gates_loom))]
mod loom_model;

/// What the gate tells its sync thread.
#[derive(Debug)]
pub(super) enum Signal {
    /// A rollback waits to be written: try now.
    Wake,
    /// The gate is dropped.
    Stop,
}

/// Wakes the sync thread for a tick now. A wake-up sent while an earlier one has not begun
/// its tick is merged into it (a tick reads everything: the store, a handed-off rollback, a
/// pending one), so any number of asks, hand-offs, deferred rollbacks and watch events queue
/// at most two: a burst of canary errors while a host's write waits for the store, or a
/// busy watch, cannot pile up ticks to run afterwards.
#[derive(Debug, Clone)]
pub(super) struct Wake {
    signals: mpsc::Sender<Signal>,
    /// [`IDLE`], [`QUEUED`] (a wake-up is queued, or received and its tick not begun) or
    /// [`ENDED`] (the thread has returned: no tick will come).
    state: Arc<AtomicU8>,
}

const IDLE: u8 = 0;
const QUEUED: u8 = 1;
const ENDED: u8 = 2;

impl Wake {
    fn new(signals: &mpsc::Sender<Signal>) -> Self {
        Self {
            signals: signals.clone(),
            state: Arc::new(AtomicU8::new(IDLE)),
        }
    }

    /// Wakes the thread, unless a wake-up waits already; false when the thread has ended
    /// (a wake-up merged into one the thread received just as it returned is true: the gate
    /// is being dropped then, and its drop makes a handed-off rollback).
    pub(super) fn wake(&self) -> bool {
        match self
            .state
            .compare_exchange(IDLE, QUEUED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                let sent = self.signals.send(Signal::Wake).is_ok();
                if !sent {
                    self.state.store(ENDED, Ordering::Release);
                }
                sent
            }
            Err(state) => state == QUEUED,
        }
    }

    /// The thread begins a tick: a wake-up from now on gets a tick after this one.
    fn begin_tick(&self) {
        let _ = self
            .state
            .compare_exchange(QUEUED, IDLE, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// The sync thread's hold on its [`Wake`]: when the thread returns (or unwinds), later
/// wake-ups say it has ended rather than merge into one it left queued.
struct Ticks(Wake);

impl Drop for Ticks {
    fn drop(&mut self) {
        self.0.state.store(ENDED, Ordering::Release);
    }
}

/// An automatic rollback the record path could not make because a host's write held the writer
/// lock (storing its write can take up to the store's timeout): the verdict is left here and
/// the sync thread, woken, applies it under the lock, so recording never waits for store I/O.
#[derive(Debug, Default)]
pub(super) struct Handoff {
    verdict: Mutex<Option<Verdict>>,
    /// Wakes the sync thread; set when it starts (a gate without a store has none).
    wake: OnceLock<Wake>,
}

/// What became of a rollback [offered](Handoff::offer) to the sync thread. Returned once
/// per hand-off, on a cold path, and matched at once: the verdict is not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Offered {
    /// Left for the thread, woken for a tick that makes it.
    Handed,
    /// The gate has no sync thread: the caller makes the rollback it offered.
    NoThread,
    /// The thread has ended: the rollback the hand-off held, for the caller to make (none
    /// when another took it first: a tick, the gate's stop, a write's `take_left`, or another
    /// offer's take-back, which makes it).
    TakenBack(Option<Verdict>),
}

impl Handoff {
    /// Wakes the sync thread to read the store now, unless an earlier wake-up is still
    /// waiting; false when the gate has no sync thread (no store) or it has ended.
    pub(super) fn ask_sync(&self) -> bool {
        self.wake.get().is_some_and(Wake::wake)
    }

    /// Leaves `verdict` for the sync thread (replacing one of the same stage or an older one,
    /// never one of a newer stage, as [`WriterLock`](super::writer_lock::WriterLock) keeps an
    /// owed one) and wakes it. [`Offered::NoThread`] when the gate has no sync thread: the
    /// caller makes `verdict` itself. When the thread has ended, what the hand-off holds is
    /// taken back ([`Offered::TakenBack`]) for the caller to make: `verdict`, or a newer one
    /// another offer left, or none when another took it first (a tick, the gate's stop, a
    /// write, another offer: then it is made by that one, and must not be made again).
    pub(super) fn offer(&self, verdict: &Verdict) -> Offered {
        let Some(wake) = self.wake.get() else {
            return Offered::NoThread;
        };
        {
            let mut held = self.lock();
            if held
                .as_ref()
                .is_none_or(|held| held.stage() <= verdict.stage())
            {
                *held = Some(verdict.clone());
            }
        }
        if wake.wake() {
            return Offered::Handed;
        }
        Offered::TakenBack(self.take())
    }

    pub(super) fn take(&self) -> Option<Verdict> {
        self.lock().take()
    }

    /// Takes the verdict left here if it was called for in `stage`.
    pub(super) fn take_of(&self, stage: crate::decision::StageId) -> Option<Verdict> {
        self.lock().take_if(|verdict| verdict.stage() == stage)
    }

    fn lock(&self) -> MutexGuard<'_, Option<Verdict>> {
        // Each update is one assignment: consistent after any panic.
        self.verdict.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The thread that applies other processes' writes every sync interval (and writes a pending
/// rollback as soon as it can), and the store's watch thread if it has one. Both stopped and
/// joined when the gate is dropped.
#[derive(Debug)]
pub(super) struct SyncThread {
    signals: mpsc::Sender<Signal>,
    /// Set when the gate is dropped: the thread ends before its next tick, however many
    /// wake-ups are queued before the `Stop`.
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Tells the store's watch thread, if it has one, to end (std's atomic in the loom model
    /// too: no model runs the watch).
    stop_watch: Arc<std::sync::atomic::AtomicBool>,
    watch: Option<JoinHandle<()>>,
}

impl SyncThread {
    pub(super) fn start(shared: &Arc<Shared>, interval: Duration) -> Result<Self, Error> {
        let (signals, inbox) = mpsc::channel();
        let wake = Wake::new(&signals);
        let ticks = Ticks(wake.clone());
        let weak: Weak<Shared> = Arc::downgrade(shared);
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        // Started first: if it cannot start, no watch thread is left running.
        let thread = std::thread::Builder::new()
            .name("pgate-sync".into())
            .spawn(move || {
                let receive = || match inbox.recv_timeout(interval) {
                    Ok(signal) => signal,
                    Err(RecvTimeoutError::Timeout) => Signal::Wake,
                    Err(RecvTimeoutError::Disconnected) => Signal::Stop,
                };
                run_ticks(ticks, &stop, receive, || weak.upgrade());
            })
            .map_err(|e| {
                StoreError::new(
                    "sync thread",
                    StoreProblem::Unavailable,
                    format!("cannot start: {e}"),
                )
            })?;
        let _ = shared.handoff.wake.set(wake.clone());
        let stop_watch = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut watch = None;
        if let Some(link) = shared.lock_writer().store.as_mut() {
            watch = link.follow(&wake, Arc::clone(&stop_watch));
        }
        Ok(Self {
            signals,
            stopping,
            thread: Some(thread),
            stop_watch,
            watch,
        })
    }

    /// Stops and joins the thread, then writes a rollback still pending, once, on the calling
    /// thread (the gate is being dropped: nothing else will write it). A store that still
    /// cannot be written keeps its state, and that is logged.
    ///
    /// Dropped inside a write of its own (a `Clock` that write read let go of the gate's last
    /// owner, on the sync thread), it cannot wait for the writer lock: a rollback handed to
    /// the thread is left to that write, which makes it as it lets the lock go, and one still
    /// to be stored cannot be looked for (that is logged).
    pub(super) fn stop(self, shared: &Shared) {
        drop(self);
        if shared.writer.held_here() {
            if let Some(verdict) = shared.handoff.take() {
                shared.apply_verdict_or_owe(&verdict);
            }
            tracing::warn!(
                "promotion.store the gate is dropped inside its own write (its clock let go of it): a rollback not stored yet, if any, is not written"
            );
            return;
        }
        if let Some(verdict) = shared.handoff.take() {
            shared.apply_verdict(&mut shared.lock_writer(), &verdict);
        }
        let pending = |shared: &Shared| {
            shared
                .lock_writer()
                .store
                .as_ref()
                .is_some_and(StoreLink::has_pending)
        };
        if pending(shared) {
            shared.sync_once();
            if pending(shared) {
                tracing::error!(
                    "promotion.store the gate is dropped with a rollback not written: the store still holds the rolled-back stage"
                );
            }
        }
    }
}

impl Drop for SyncThread {
    /// Waits for the sync thread's current tick, if any (its store calls), and the watch's
    /// current request; wake-ups queued behind the tick are not run. Dropped on one of those
    /// threads (the gate's last owner let go in a host's code that thread ran, a `Clock`), it
    /// does not wait for itself: that thread ends when its current tick or request returns.
    fn drop(&mut self) {
        stop_ticks(&self.stopping, &self.signals);
        self.stop_watch.store(true, Ordering::Relaxed);
        // The watch ends within one watch span (it looks at the flag between requests).
        for handle in [self.thread.take(), self.watch.take()]
            .into_iter()
            .flatten()
        {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

/// The gate as the sync thread's ticks see it: [`Shared`], and the loom model's stand-in.
trait Synced {
    /// What the exchange of contributions keeps from one tick to the next.
    type Exchange: Default;

    /// A tick's first step: applies other processes' writes, and a rollback handed off
    /// ([`Shared::sync_once`]).
    fn sync_once(&self);

    /// A tick's second step: exchanges this process's evidence with the fleet's.
    fn exchange_contributions(&self, exchange: &mut Self::Exchange);
}

impl Synced for Shared {
    type Exchange = Exchange;

    fn sync_once(&self) {
        Shared::sync_once(self);
    }

    fn exchange_contributions(&self, exchange: &mut Exchange) {
        Shared::exchange_contributions(self, exchange);
    }
}

/// The sync thread's loop: a tick for each wake-up that `receive` returns (the sync interval's
/// timeout is one), until it returns the gate's `Stop`, or the gate is gone (`gate` returns
/// none) or `stopping`. Each tick begins before the store is read (a wake-up from now on gets
/// a read after it, and takes a rollback handed off meanwhile). `ticks` goes as it returns.
fn run_ticks<G, S>(
    ticks: Ticks,
    stopping: &AtomicBool,
    mut receive: impl FnMut() -> Signal,
    gate: impl Fn() -> Option<G>,
) where
    G: Deref<Target = S>,
    S: Synced + ?Sized,
{
    let mut exchange = S::Exchange::default();
    while let Signal::Wake = receive() {
        if stopping.load(Ordering::Acquire) {
            return;
        }
        let Some(gate) = gate() else {
            return;
        };
        // A panic (from a host's `Clock`, say) ends the tick, not the thread: the next tick
        // reads the store again. Each step leaves the gate consistent.
        let tick = catch_unwind(AssertUnwindSafe(|| {
            ticks.0.begin_tick();
            gate.sync_once();
            if stopping.load(Ordering::Acquire) {
                return Tick::Stopped;
            }
            gate.exchange_contributions(&mut exchange);
            Tick::Done
        }));
        match tick {
            Ok(Tick::Done) => {}
            Ok(Tick::Stopped) => return,
            Err(payload) => tracing::error!(
                panic = panic_message(payload.as_ref()),
                "promotion.store a sync tick panicked; the next tick reads the store again"
            ),
        }
    }
}

/// Tells the sync thread to end before its next tick, however many wake-ups wait before the
/// `Stop` (or as its current tick has read the store).
fn stop_ticks(stopping: &AtomicBool, signals: &mpsc::Sender<Signal>) {
    stopping.store(true, Ordering::Release);
    let _ = signals.send(Signal::Stop);
}

/// How a sync tick ended, when it did not panic.
enum Tick {
    Done,
    /// The gate is being dropped: the thread ends.
    Stopped,
}

/// The text a panic was raised with, when it has one.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    match (
        payload.downcast_ref::<&str>(),
        payload.downcast_ref::<String>(),
    ) {
        (Some(text), _) => text,
        (_, Some(text)) => text,
        _ => "(no message)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Environment, PromotionConfig};
    use crate::store::StoreConfig;

    #[test]
    fn asking_a_sync_thread_that_ended_says_so_every_time() {
        let handoff = Handoff::default();
        assert!(!handoff.ask_sync(), "no sync thread");
        let (signals, inbox) = mpsc::channel();
        let wake = Wake::new(&signals);
        handoff.wake.set(wake.clone()).unwrap();
        assert!(handoff.ask_sync());
        assert!(handoff.ask_sync(), "merged into the waiting ask");
        // The thread returns with that ask still queued (a tick ends, the gate goes).
        drop((Ticks(wake), inbox));
        assert!(!handoff.ask_sync(), "the thread has ended");
        assert!(
            !handoff.ask_sync(),
            "and a later ask is not taken for a waiting one"
        );
        // Or it returns between two wake-ups: the next one cannot be sent.
        let handoff = Handoff::default();
        let (signals, inbox) = mpsc::channel();
        handoff.wake.set(Wake::new(&signals)).unwrap();
        drop(inbox);
        assert!(!handoff.ask_sync(), "the thread has ended");
        assert!(!handoff.ask_sync());
    }

    #[test]
    fn wake_ups_before_a_tick_begins_queue_one_tick() {
        use crate::judge::tests::judge_cohorts;
        use crate::metrics::tests_support::cohort;
        let slo = crate::SloConfig::default();
        let failing = Verdict::new(judge_cohorts(
            crate::StageId::new(1),
            crate::config::canary(5.0),
            &cohort(1000, 1000, 900, 900),
            &cohort(1000, 0, 900, 900),
            Default::default(),
            crate::judge::Policy::new(&slo, 0.95),
        ));
        let handoff = Handoff::default();
        let (signals, inbox) = mpsc::channel();
        let wake = Wake::new(&signals);
        handoff.wake.set(wake.clone()).unwrap();
        // A burst of canary errors while a host's write waits for the store: a hand-off each,
        // beside asks, a deferred rollback's wake-up and a busy watch's.
        for _ in 0..1_000 {
            assert!(matches!(handoff.offer(&failing), Offered::Handed));
            assert!(handoff.ask_sync());
            assert!(wake.wake());
        }
        assert_eq!(inbox.try_iter().count(), 1, "one tick reads it all");
        assert!(handoff.take().is_some(), "the last verdict waits for it");
        wake.begin_tick();
        assert!(matches!(handoff.offer(&failing), Offered::Handed));
        assert_eq!(inbox.try_iter().count(), 1, "a tick after the one begun");
    }

    #[test]
    fn a_dropped_gate_waits_for_the_current_tick_not_for_the_wake_ups_queued_behind_it() {
        let dir = crate::store::scratch::Scratch::new("prompt-drop");
        let path = dir.file("gate.db");
        let mut config = crate::store::testing::config(crate::config::canary(10.0));
        config.store = Some(StoreConfig::Sqlite(crate::store::SqliteStoreConfig {
            path: path.clone(),
            sync_interval_ms: 60_000,
            busy_timeout_ms: 300,
            fleet_judging: true,
        }));
        let gate = crate::PromotionGateManager::new(
            config,
            crate::SloAdmissionController::new(crate::SloConfig::default()).unwrap(),
        )
        .unwrap();
        // Another connection holds the write lock: each tick's publication waits 300 ms.
        let lock = rusqlite::Connection::open(&path).unwrap();
        lock.execute_batch("BEGIN IMMEDIATE").unwrap();
        let wake = &gate.shared.handoff.wake.get().unwrap().signals;
        for _ in 0..10 {
            wake.send(Signal::Wake).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50)); // within the first tick
        let start = std::time::Instant::now();
        drop(gate);
        let took = start.elapsed();
        assert!(
            took < Duration::from_millis(1_500),
            "the drop took {took:?}"
        );
    }

    #[test]
    fn a_rollback_an_ended_sync_thread_cannot_take_is_made_by_the_recording_thread() {
        use crate::judge::Policy;
        use crate::judge::tests::judge_cohorts;
        use crate::metrics::tests_support::cohort;
        use crate::slo::SloConfig;
        use crate::{PromotionGateManager, config::canary};
        let slo = SloConfig::default();
        let gate = PromotionGateManager::new(
            PromotionConfig {
                environment: canary(5.0),
                ..Default::default()
            },
            crate::SloAdmissionController::new(slo.clone()).unwrap(),
        )
        .unwrap();
        let (subject, baseline) = (cohort(1000, 1000, 900, 900), cohort(1000, 0, 900, 900));
        let failing = Verdict::new(judge_cohorts(
            gate.stage(),
            canary(5.0),
            &subject,
            &baseline,
            Default::default(),
            Policy::new(&slo, 0.95),
        ));
        assert!(failing.calls_for_rollback());
        assert!(
            matches!(gate.shared.handoff.offer(&failing), Offered::NoThread),
            "no sync thread"
        );
        // A sync thread that has ended with a wake-up queued: the receiving end of its
        // channel is gone.
        let (signals, ended) = mpsc::channel();
        let wake = Wake::new(&signals);
        assert!(wake.wake());
        drop((Ticks(wake.clone()), ended));
        gate.shared.handoff.wake.set(wake).unwrap();
        assert!(
            matches!(
                gate.shared.handoff.offer(&failing),
                Offered::TakenBack(Some(_))
            ),
            "the sync thread ended"
        );
        assert!(
            gate.shared.handoff.take().is_none(),
            "offered back, not left"
        );
        // A host's write holds the writer lock while the record path acts: the hand-off fails,
        // so the recording thread leaves the rollback to the write, made as it lets go.
        let (locked, holding) = mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let writer = gate.shared.lock_writer();
                locked.send(()).unwrap();
                // Long enough that the recording thread finds the lock held (its try_lock).
                std::thread::sleep(Duration::from_millis(200));
                drop(writer);
            });
            holding.recv().unwrap();
            gate.act_on_recording(&failing);
        });
        assert_eq!(gate.environment(), Environment::Production);
        assert_eq!(gate.rollback_history().len(), 1);
    }
}
