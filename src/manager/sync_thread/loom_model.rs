//! A loom model of the sync thread's hand-off (`sync_thread.rs`): the record path leaves a
//! rollback in the [`Handoff`] and wakes the thread while the thread runs ticks, asks and other
//! wake-ups race them, and the gate stops the thread. The [`Wake`] and its states, the
//! [`Handoff`], the thread's loop ([`run_ticks`], its tick begun before the store is read) and
//! the stop's signal ([`stop_ticks`]) are the gate's own code, on loom's atomics, loom's
//! channel (std's behaviour kept: a send fails once the receiver is gone) and the stand-in for
//! std's mutex (`crate::sync`). The gate is a stand-in whose catch-up takes the handed-off
//! rollback, as [`Shared::sync_once`] does first (under the writer lock, which is not
//! modelled), and writes down its stage. What the model does not run: the `OnceLock` that
//! holds the wake (std's, set before the model's threads start: loom has none); the sync
//! interval (loom has no clock: the thread's `receive` is the channel's `recv`, and where a
//! model times a tick out, a non-blocking receive once a flag is raised, which gives the
//! interval's tick when no signal waits); `SyncThread`'s join and its `stop`'s take of a
//! rollback left, which the model re-enacts in that order on loom's thread (`Running::stop`).
//! Built only with `--cfg promotion_gates_loom` (`.ci/loom`).

use std::sync::Arc;

use loom::thread;

use super::{Handoff, Offered, Signal, Synced, Ticks, Wake, mpsc, run_ticks, stop_ticks};
use crate::decision::StageId;
use crate::sync::{AtomicBool, Ordering, explore};
use crate::verdict::Verdict;

/// The stand-in for the gate: its hand-off, and the stages of the rollbacks its ticks took
/// (the model's record, in std's mutex: loom runs one thread at a time, and none is switched
/// out while it holds it).
#[derive(Debug, Default)]
struct Gate {
    handoff: Handoff,
    taken: std::sync::Mutex<Vec<StageId>>,
}

impl Synced for Gate {
    type Exchange = ();

    fn sync_once(&self) {
        if let Some(verdict) = self.handoff.take() {
            self.taken
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(verdict.stage());
        }
    }

    fn exchange_contributions(&self, _exchange: &mut ()) {}
}

impl Gate {
    fn taken(&self) -> Vec<StageId> {
        self.taken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A rollback verdict judged in `stage`.
fn failing(stage: u64) -> Verdict {
    use crate::judge::tests::judge_cohorts;
    use crate::metrics::tests_support::cohort;
    let slo = crate::SloConfig::default();
    let verdict = Verdict::new(judge_cohorts(
        StageId::new(stage),
        crate::config::canary(5.0),
        &cohort(1000, 1000, 900, 900),
        &cohort(1000, 0, 900, 900),
        Default::default(),
        crate::judge::Policy::new(&slo, 0.95),
    ));
    assert!(verdict.calls_for_rollback());
    verdict
}

/// A gate with a sync thread running its ticks: the gate, the thread's wake (the one the
/// hand-off holds), the gate's sender (`SyncThread`'s) and its stopping flag.
struct Running {
    gate: Arc<Gate>,
    wake: Wake,
    signals: mpsc::Sender<Signal>,
    stopping: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

/// Starts the sync thread as `SyncThread::start` does; `elapsed`, when given, is the sync
/// interval: raised, the thread's next receive is a timeout if no signal waits.
fn start(elapsed: Option<Arc<AtomicBool>>) -> Running {
    let (signals, inbox) = mpsc::channel();
    let wake = Wake::new(&signals);
    let gate = Arc::new(Gate::default());
    let set = gate.handoff.wake.set(wake.clone());
    assert!(set.is_ok(), "set once, before the threads");
    let stopping = Arc::new(AtomicBool::new(false));
    let thread = {
        let (ticks, gate, stopping) = (
            Ticks(wake.clone()),
            Arc::clone(&gate),
            Arc::clone(&stopping),
        );
        thread::spawn(move || {
            let receive = || {
                if elapsed
                    .as_ref()
                    .is_some_and(|elapsed| elapsed.swap(false, Ordering::Relaxed))
                {
                    return inbox.try_iter().next().unwrap_or(Signal::Wake);
                }
                inbox.recv().unwrap_or(Signal::Stop)
            };
            run_ticks(ticks, &stopping, receive, || Some(Arc::clone(&gate)));
        })
    };
    Running {
        gate,
        wake,
        signals,
        stopping,
        thread,
    }
}

/// A gate whose sync thread has a tick to run: an ask woke it.
fn ticking() -> Running {
    let running = start(None);
    assert!(running.gate.handoff.ask_sync());
    running
}

impl Running {
    /// The record path hands `verdict` off on a thread of its own: the stage of the rollback
    /// it then makes itself (`act_on_recording`'s), if any.
    fn hand_off_elsewhere(&self, verdict: &Verdict) -> thread::JoinHandle<Option<StageId>> {
        let (gate, verdict) = (Arc::clone(&self.gate), verdict.clone());
        thread::spawn(move || match gate.handoff.offer(&verdict) {
            Offered::Handed => None,
            Offered::NoThread => Some(verdict.stage()),
            Offered::TakenBack(taken) => taken.map(|taken| taken.stage()),
        })
    }

    /// Stops the thread as the gate's drop does, joins it, and takes a rollback left, as
    /// `SyncThread::stop` does: the stage of that rollback.
    fn stop(self) -> (Arc<Gate>, Wake, Option<StageId>) {
        stop_ticks(&self.stopping, &self.signals);
        assert!(self.thread.join().is_ok(), "the sync thread panicked");
        let left = self.gate.handoff.take().map(|verdict| verdict.stage());
        (self.gate, self.wake, left)
    }
}

/// A rollback handed off while the thread runs a tick (one an ask woke it for), racing another
/// ask, is taken by a tick that begins after it, once, and none is left: its wake-up, merged
/// into one whose tick has not begun (the first ask's, or the second's), still gets a tick
/// that takes it. The gate's `Stop` is queued here after every wake-up, without the stopping
/// flag: each wake-up gets its tick. Beginning the tick after the catch-up takes the hand-off,
/// rather than before, fails it: a wake-up merged into the tick's own is forgotten as the tick
/// begins, and the rollback waits.
#[test]
fn a_rollback_handed_off_while_the_thread_ticks_is_taken_by_a_later_tick_once() {
    let verdict = failing(1);
    explore(100_000, move || {
        let running = ticking();
        let record = running.hand_off_elsewhere(&verdict);
        assert!(running.gate.handoff.ask_sync());
        assert_eq!(
            record.join().expect("the record path"),
            None,
            "handed to the running thread"
        );
        running.signals.send(Signal::Stop).expect("the thread runs");
        running.thread.join().expect("the sync thread");
        assert_eq!(running.gate.taken(), vec![StageId::new(1)]);
        assert!(running.gate.handoff.take().is_none(), "a rollback left");
    });
}

/// A rollback handed off as the gate stops the thread is made once: by a tick, by the stop
/// once it joined the thread, or by the record path itself when its wake-up finds the thread
/// ended and takes the hand-off back (`Offered::TakenBack`), never by two of them, and never
/// by none. Returning "not handed" whenever the wake-up finds the thread ended, as `offer` did
/// first, fails it: a tick or the stop may have taken the rollback before the thread ended,
/// and the record path made it again.
#[test]
fn a_rollback_handed_off_as_the_gate_stops_is_made_once() {
    let verdict = failing(1);
    explore(100_000, move || {
        let running = ticking();
        let record = running.hand_off_elsewhere(&verdict);
        let (gate, _, left) = running.stop();
        let by_record = record.join().expect("the record path");
        let by_ticks = gate.taken();
        let made = by_ticks.len() + usize::from(left.is_some()) + usize::from(by_record.is_some());
        assert_eq!(
            made, 1,
            "made by ticks {by_ticks:?}, by the stop {left:?}, by the record path {by_record:?}"
        );
        assert!(gate.handoff.take().is_none(), "a rollback left");
    });
}

/// Whether a model reached two wake-ups waiting at once.
static TWO_WAITED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks and hand-offs on two threads race the thread's ticks and its interval's timeouts: at
/// most two wake-ups ever wait in the channel (and two do, in some interleaving: a tick the
/// interval began before the wake-up it merged into was received). Once the thread has
/// ended, a wake-up says so, and a hand-off is taken back. Sending every wake-up, rather than
/// merging one into a wake-up waiting, fails the first; a thread that ends without saying so
/// (`Ticks` not dropped into `ENDED`) fails the second.
#[test]
fn at_most_two_wake_ups_wait_and_an_ended_thread_says_so() {
    TWO_WAITED.store(false, std::sync::atomic::Ordering::Relaxed);
    let verdict = failing(1);
    explore(100_000, move || {
        let elapsed = Arc::new(AtomicBool::new(false));
        let running = start(Some(Arc::clone(&elapsed)));
        let other = {
            let (gate, verdict) = (Arc::clone(&running.gate), verdict.clone());
            thread::spawn(move || {
                assert!(matches!(gate.handoff.offer(&verdict), Offered::Handed));
                assert!(gate.handoff.ask_sync());
            })
        };
        elapsed.store(true, Ordering::Relaxed);
        assert!(running.wake.wake());
        assert!(running.gate.handoff.ask_sync());
        other.join().expect("the other thread");
        let most = running.signals.most_queued();
        assert!(most <= 2, "{most} wake-ups waited at once");
        if most == 2 {
            TWO_WAITED.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let (gate, wake, _) = running.stop();
        assert!(!wake.wake(), "a wake-up after the thread ended");
        assert!(
            matches!(gate.handoff.offer(&verdict), Offered::TakenBack(Some(_))),
            "a hand-off after it ended is taken back"
        );
        assert!(gate.handoff.take().is_none(), "taken back");
    });
    assert!(
        TWO_WAITED.load(std::sync::atomic::Ordering::Relaxed),
        "no interleaving had two wake-ups waiting"
    );
}
