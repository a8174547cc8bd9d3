//! A loom model of the record path's ask for an evaluation (`ask.rs`): a thread finds an
//! evaluation due while another holds the window, and asks it. The ask, the handshake's fences
//! and the taking are the monitor's own code, on loom's atomics; the window is the stand-in for
//! std's mutex (`crate::sync`) around the evaluations' count of what they saw, and the outcome
//! that made the evaluation due a relaxed store, so that an evaluation sees it only through the
//! ask's own orderings. Built only with `--cfg promotion_gates_loom` (`.ci/loom`).

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;

use super::Ask;
use crate::sync::{Mutex, MutexGuard, explore, let_go_then_fence};

/// What the evaluations saw: how many ran, and the newest outcome any of them read.
#[derive(Debug, Default)]
struct Evaluated {
    runs: u64,
    newest_seen: u64,
}

struct Gate {
    ask: Ask,
    window: Mutex<Evaluated>,
    /// The outcome recorded before the evaluation fell due (1 once recorded).
    recorded: AtomicU64,
}

impl Gate {
    fn try_lock_window(&self) -> Option<MutexGuard<'_, Evaluated>> {
        self.window.try_lock().ok()
    }

    /// One evaluation over the window, held.
    fn evaluate(&self, mut window: MutexGuard<'_, Evaluated>) {
        window.runs += 1;
        let seen = self.recorded.load(Ordering::Relaxed);
        window.newest_seen = window.newest_seen.max(seen);
    }

    /// What a holder does once it has let the window go, as `evaluate_as_recording` does: the
    /// evaluations asked for meanwhile, in turn (two turns: enough for two threads).
    fn evaluate_wanted(&self) {
        for _ in 0..2 {
            let Some(window) = self.ask.wanted(|| self.try_lock_window()) else {
                return;
            };
            self.evaluate(window);
        }
    }
}

/// Every interleaving of a record whose evaluation falls due (it takes the window or asks its
/// holder) with `hold`, another thread's use of the window and its look for an ask: some
/// evaluation sees that record.
fn a_record_falls_due_while(hold: impl Fn(&Gate) + Sync + Send + 'static) {
    explore(10_000, move || {
        let gate = Arc::new(Gate {
            ask: Ask::new(),
            window: Mutex::new(Evaluated::default()),
            recorded: AtomicU64::new(0),
        });
        let record = {
            let gate = Arc::clone(&gate);
            thread::spawn(move || {
                gate.recorded.store(1, Ordering::Relaxed);
                // The evaluation falls due (`due_evaluation`'s claim): `try_evaluating`.
                if let Some(window) = gate.ask.try_or_ask(|| gate.try_lock_window()) {
                    gate.evaluate(window);
                }
                gate.evaluate_wanted();
            })
        };
        hold(&gate);
        record.join().ok();

        let window = gate
            .window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        assert_eq!(
            window.newest_seen, 1,
            "the record's evaluation lost: {:?}",
            *window
        );
    });
}

/// A read holds the window (and lets it go, making what was asked for meanwhile) while a
/// record's evaluation falls due: some evaluation sees that record, whether the record path
/// took the window itself or asked the reader. Taking either fence out of the handshake fails
/// it; taking the ask `Relaxed` does not (loom's `SeqCst` fence orders more than C++'s).
#[test]
fn an_evaluation_asked_for_while_the_window_is_held_is_never_lost() {
    a_record_falls_due_while(|gate| {
        // A read of the window (`Monitor::measured`, say), then its holder's look for an ask.
        let read = gate
            .window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        drop(read);
        gate.evaluate_wanted();
    });
}

/// A thread's first record makes the window's buffers if the window is free
/// (`Metrics::first_recorder`: it takes the window, lets it go and fences) while another
/// record's evaluation falls due and asks; the first record's thread looks for the ask later
/// with one relaxed load, as `record_forced` does (`Monitor::evaluation_asked`), and makes
/// the evaluation asked for: some evaluation sees the other record. Taking the fence out of
/// `let_go_then_fence` (`crate::sync`) fails it. The steps are re-enacted here as those two
/// compose them, not run through them: a `first_recorder` that let the window go without
/// `let_go_then_fence`, or a `record_forced` that no longer looks for the ask, would pass.
#[test]
fn an_evaluation_asked_for_while_a_first_record_makes_the_buffers_is_never_lost() {
    a_record_falls_due_while(|gate| {
        if let Some(window) = gate.try_lock_window() {
            let_go_then_fence(window);
        }
        if gate.ask.asked() {
            gate.evaluate_wanted();
        }
    });
}
