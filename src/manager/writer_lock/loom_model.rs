//! A loom model of the writer lock's owed rollback (`writer_lock.rs`): a write holds the lock
//! and lets it go while the record path calls for rollbacks, making each at once if the lock is
//! free, else owing it to the lock. The owing, the settling and both fences are the lock's own
//! code, on loom's atomics and the stand-in for std's mutex (`crate::sync`); the gate's state
//! is a list of the rollbacks made, and a rollback its stage. Built only with `--cfg
//! promotion_gates_loom` (`.ci/loom`).

use loom::sync::Arc;
use loom::thread;

use super::{Staged, WriterLock};
use crate::decision::StageId;
use crate::sync::explore;

/// The stand-in for a rollback the record path calls for: its stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rollback(StageId);

impl Staged for Rollback {
    fn stage(&self) -> StageId {
        self.0
    }
}

/// The stand-in for the gate's state: the rollbacks made, in order.
type Made = Vec<StageId>;

type Lock = WriterLock<Made, Rollback>;

/// Makes `rollback`, as `Shared::apply_verdict` does, under the lock.
fn apply(made: &mut Made, rollback: &Rollback) {
    made.push(rollback.0);
}

/// One write, as a `Writing` runs: the lock taken and let go, then what it is owed settled.
fn write(lock: &Lock) {
    let held = lock.lock();
    drop(held);
    lock.settle_after_letting_go(apply);
}

/// The record path's rollback, as `Shared::apply_verdict_or_owe` makes it: at once if the lock
/// is free (then settled as a write's), else owed to it.
fn apply_or_owe(lock: &Lock, rollback: Rollback) {
    if let Some(mut held) = lock.try_lock() {
        apply(&mut held.state, &rollback);
        drop(held);
        lock.settle_after_letting_go(apply);
        return;
    }
    lock.owe_then_settle(&rollback, apply);
}

/// What the lock holds once every thread is done: the rollbacks made, and whether one is
/// still owed.
fn settled(lock: &Lock) -> (Made, bool) {
    let held = lock.lock();
    let made = held.state.clone();
    drop(held);
    let owed = lock
        .owed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .is_some();
    (made, owed)
}

/// Checks that once every thread is done, none is left owed and `stage`'s rollback was made
/// exactly once; the rollbacks made.
fn made_once_none_owed(lock: &Lock, stage: StageId) -> Made {
    let (made, owed) = settled(lock);
    assert!(!owed, "a rollback left owed: {made:?}");
    assert_eq!(
        made.iter().filter(|&&made| made == stage).count(),
        1,
        "stage {stage:?}'s rollback made other than once: {made:?}"
    );
    made
}

/// A write races the record path's rollback: the rollback is made exactly once, whether the
/// record path found the lock free or owed it to the write (never lost between the owing and
/// the write's letting go, never made by both). Taking either fence out of the handshake
/// (`owe_then_settle`'s or `settle_after_letting_go`'s) fails it, and the next model too.
#[test]
fn a_rollback_owed_while_a_write_holds_the_lock_is_made_once() {
    explore(10_000, || {
        let lock = Arc::new(Lock::new(Vec::new()));
        let record = {
            let lock = Arc::clone(&lock);
            thread::spawn(move || apply_or_owe(&lock, Rollback(StageId(1))))
        };
        write(&lock);
        record.join().ok();
        assert_eq!(settled(&lock), (vec![StageId(1)], false));
    });
}

/// Two record paths call for rollbacks of two stages while a write holds the lock: the newer
/// stage's is made exactly once, the older one's at most once (an older owed rollback is
/// replaced by a newer one, never the newer by the older), and none is left owed.
#[test]
fn the_newest_rollback_owed_is_made_once() {
    explore(10_000, || {
        let lock = Arc::new(Lock::new(Vec::new()));
        let records: Vec<_> = [StageId(1), StageId(2)]
            .into_iter()
            .map(|stage| {
                let lock = Arc::clone(&lock);
                thread::spawn(move || apply_or_owe(&lock, Rollback(stage)))
            })
            .collect();
        write(&lock);
        for record in records {
            record.join().ok();
        }
        let made = made_once_none_owed(&lock, StageId(2));
        assert!(made.len() <= 2, "made twice: {made:?}");
    });
}

/// A holder takes out the rollback owed to it to make it itself (as a write that wins over a
/// promotion does, `take_owed_of`), leaving `owing` up with nothing owed, while the record path
/// owes another stage's: the settler that finds nothing owed lets the lock go, fences and looks
/// again, so the record path's rollback is not left owed (it was, before the settler looked
/// again: the record path had found the lock held by that settler).
#[test]
fn a_rollback_owed_while_a_settler_finds_nothing_owed_is_made() {
    explore(10_000, || {
        let lock = Arc::new(Lock::new(Vec::new()));
        let record = {
            let lock = Arc::clone(&lock);
            thread::spawn(move || apply_or_owe(&lock, Rollback(StageId(2))))
        };
        let mut held = lock.lock();
        lock.owe(&Rollback(StageId(1)));
        if let Some(taken) = lock.take_owed_of(StageId(1)) {
            apply(&mut held.state, &taken);
        }
        drop(held);
        lock.settle_after_letting_go(apply);
        record.join().ok();
        made_once_none_owed(&lock, StageId(2));
    });
}
