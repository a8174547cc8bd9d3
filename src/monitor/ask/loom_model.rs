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
use crate::sync::{Mutex, MutexGuard, explore};

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

/// A read holds the window (and lets it go, making what was asked for meanwhile) while a
/// record's evaluation falls due: some evaluation sees that record, whether the record path
/// took the window itself or asked the reader. Taking either fence out of the handshake fails
/// it; taking the ask `Relaxed` does not (loom's `SeqCst` fence orders more than C++'s).
#[test]
fn an_evaluation_asked_for_while_the_window_is_held_is_never_lost() {
    explore(10_000, || {
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
        // A read of the window (`Monitor::measured`, say), then its holder's look for an ask.
        let read = gate
            .window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        drop(read);
        gate.evaluate_wanted();
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
