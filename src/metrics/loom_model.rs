//! A loom model of the recorder's protocol: one writer per recorder, readers merging
//! concurrently, stage changes as a seqlock, and [`NewestStage`] set before a snapshot is
//! published; of the screen's window base (`window_base.rs`), rewritten by evaluations while
//! the record path's screen reads it; and of the claim of a due evaluation (`mod.rs`). Loom
//! runs each model under every interleaving (bounded by `LOOM_MAX_PREEMPTIONS`) and every value
//! a relaxed load may return, so these assertions hold for all of them, not for the ones a
//! stress test happens to meet.
//!
//! Built only with `--cfg promotion_gates_loom`, where the recorder's, the window base's and
//! the evaluation's due time's atomics are loom's (`src/sync.rs`):
//!
//! ```sh
//! .ci/loom 3          # LOOM_MAX_PREEMPTIONS=3 (.ci/run uses 2)
//! ```
//!
//! Readers that race a writer read the counters only: the histogram buckets are written and
//! read exactly as the counters are, under the same stage tag, and a racing read of all 2 × 2560
//! of them multiplies the interleavings past what CI can explore. The histograms are checked
//! once the writers are done.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;
use std::time::Duration;

use super::Metrics;
use super::recorder::{CohortCounts, NewestStage, Recorded, ThreadRecorder};
use super::window_base::{Base, WindowBase};
use crate::decision::{Cohort, PerCohort, StageId};
use crate::sync::explore;

const S1: StageId = StageId(1);
const S2: StageId = StageId(2);

/// A latency that every record below uses (any value does; one keeps the histogram sums easy).
const MICROS: u64 = 250;

/// Runs `model` under loom with room for the clears: every atomic operation is a branch of
/// loom's path, and a clear stores each of the two histograms' 2 × 2560 buckets.
/// Enough for a model's longest path: two clears and two full reads of a recorder.
const MAX_BRANCHES: usize = 50_000;

/// Records a success (within the latency target) or a failure for `cohort` in `stage`, on a
/// gate whose newest stage is `newest`.
fn record(
    rec: &ThreadRecorder,
    newest: &NewestStage,
    stage: StageId,
    cohort: Cohort,
    success: bool,
) -> Recorded {
    rec.record(stage, cohort, success, MICROS, success, newest)
        .recorded
}

/// What a reader gets for `stage` from `recorders`, or `None` if a recorder moved under it.
fn read(
    recorders: &[&ThreadRecorder],
    stage: StageId,
    histograms: bool,
) -> Option<PerCohort<CohortCounts>> {
    let mut sum: PerCohort<CohortCounts> = Default::default();
    let mut scratch: PerCohort<CohortCounts> = Default::default();
    for rec in recorders {
        if !rec.add_to(stage, &mut sum, &mut scratch, histograms) {
            return None;
        }
    }
    Some(sum)
}

fn totals(counts: &CohortCounts) -> (u64, u64, u64) {
    (counts.requests, counts.errors, counts.compliant)
}

fn zero(counts: &CohortCounts) -> bool {
    totals(counts) == (0, 0, 0) && counts.histogram.iter().all(|&n| n == 0)
}

/// A reader that races a stage change sees the old stage's counts whole (never the zeros of a
/// clear in progress) or the new stage's alone (never the old stage's leftovers), and a late
/// record is dropped and counted.
#[test]
fn a_stage_change_is_never_read_half_done() {
    explore(MAX_BRANCHES, || {
        let rec = Arc::new(ThreadRecorder::new());
        let newest = Arc::new(NewestStage::new(S1));
        // Stage 1 so far: two canary successes and a canary failure.
        for success in [true, true, false] {
            assert_eq!(
                record(&rec, &newest, S1, Cohort::Canary, success),
                Recorded::Counted
            );
        }

        let writer = {
            let rec = Arc::clone(&rec);
            let newest = Arc::clone(&newest);
            thread::spawn(move || {
                // The gate moves to stage 2 (the writer sets it before any decision of it is
                // routed), then this thread records.
                newest.set(S2);
                assert_eq!(
                    record(&rec, &newest, S2, Cohort::Stable, false),
                    Recorded::Counted
                );
                assert_eq!(
                    record(&rec, &newest, S1, Cohort::Canary, true),
                    Recorded::Late
                );
            })
        };

        if let Some(old) = read(&[&rec], S1, false) {
            assert_eq!(totals(&old.canary), (3, 1, 2), "stage 1 read torn");
            assert!(zero(&old.stable), "stage 2 leaked into stage 1");
        }
        if let Some(new) = read(&[&rec], S2, false) {
            assert!(zero(&new.canary), "stage 1 leftovers under stage 2");
            assert!(new.stable.requests <= 1 && new.stable.errors <= 1);
            assert_eq!(new.stable.compliant, 0);
        }
        writer.join().ok();

        let done = read(&[&rec], S2, true);
        let done = done
            .as_ref()
            .map(|c| (totals(&c.canary), totals(&c.stable)));
        assert_eq!(done, Some(((0, 0, 0), (1, 1, 0))));
        assert_eq!(rec.late(), 1);
        assert!(read(&[&rec], S1, false).is_none());
    });
}

/// Per-thread recorders merged while their writers run: each counter read is one the writer
/// wrote (never ahead of it, never torn), and once the writers are done the merge is exact.
#[test]
fn merged_counts_are_never_ahead_and_exact_once_written() {
    explore(MAX_BRANCHES, || {
        let recorders = [
            Arc::new(ThreadRecorder::new()),
            Arc::new(ThreadRecorder::new()),
        ];
        let newest = Arc::new(NewestStage::new(S1));
        let writers: Vec<_> = recorders
            .iter()
            .map(|rec| {
                let rec = Arc::clone(rec);
                let newest = Arc::clone(&newest);
                thread::spawn(move || {
                    record(&rec, &newest, S1, Cohort::Canary, true);
                    record(&rec, &newest, S1, Cohort::Canary, false);
                })
            })
            .collect();

        let [a, b] = &recorders;
        // Before a writer's first record its recorder is at stage 0: the merge is refused
        // or, once both are at stage 1, within what was written.
        if let Some(partial) = read(&[a, b], S1, false) {
            let (requests, errors, compliant) = totals(&partial.canary);
            assert!(requests <= 4 && errors <= 2 && compliant <= 2);
            assert!(zero(&partial.stable));
        }
        for writer in writers {
            writer.join().ok();
        }

        let merged = read(&[a, b], S1, true);
        let merged = merged.as_ref().map(|c| {
            (
                totals(&c.canary),
                c.canary.histogram.iter().sum::<u64>(),
                zero(&c.stable),
            )
        });
        assert_eq!(merged, Some(((4, 2, 2), 4, true)));
    });
}

/// The writer sets [`NewestStage`] before it publishes a snapshot of the stage (here an atomic
/// stands for the snapshot's `ArcSwap`), so a record of a decision routed in that snapshot is
/// counted, never refused as foreign (one routed in the stage before is late once the newer
/// stage is set).
///
/// This checks the order on a stand-in written here, not the manager's `install` itself (its
/// `ArcSwap` is not loom's): nothing here fails if `install` reverses it. `tests/concurrency.rs`
/// runs the real `install` (its readers record each decision they route while a writer
/// publishes stages, and no outcome may be foreign), but a stress test sees a reversed order
/// only when the writer is preempted between the two steps: it fails at once with a pause put
/// there, and rarely without one.
#[test]
fn a_published_stage_is_never_foreign() {
    explore(MAX_BRANCHES, || {
        let newest = Arc::new(NewestStage::new(S1));
        let published = Arc::new(AtomicU64::new(S1.0));
        let rec = ThreadRecorder::new();

        let publisher = {
            let (newest, published) = (Arc::clone(&newest), Arc::clone(&published));
            thread::spawn(move || {
                newest.set(S2);
                published.store(S2.0, Ordering::Release);
            })
        };

        let stage = StageId(published.load(Ordering::Acquire));
        let tally = rec.record(stage, Cohort::Canary, true, MICROS, true, &newest);
        // Routed in stage 1 while stage 2 was being published: late (stage 1 has ended);
        // routed in stage 2: counted. Never foreign.
        let expected = if stage == S2 {
            vec![Recorded::Counted]
        } else {
            vec![Recorded::Counted, Recorded::Late]
        };
        assert!(
            expected.contains(&tally.recorded),
            "stage {stage:?}: {:?}",
            tally.recorded
        );
        publisher.join().ok();
    });
}

/// A window base whose canary cohort shows `requests` and `errors`, and every other cell a
/// value of the same write.
fn base(requests: u64, errors: u64) -> Base {
    let counts = PerCohort::from_fn(|_| [requests, errors, requests - errors]);
    let bursts = [PerCohort::from_fn(|_| [requests, errors]); 2];
    Base { counts, bursts }
}

/// S1's base `before` (`base(100, 10)`) in place, rewritten as of `stage` with `after`
/// (`base(200, 20)`) by an evaluation on another thread while `read` reads on this one, given
/// both. Returns the cells once the write is done, and `after`.
fn read_while_rewritten(
    stage: StageId,
    read: impl FnOnce(&WindowBase, Base, Base),
) -> (Arc<WindowBase>, Base) {
    let (before, after) = (base(100, 10), base(200, 20));
    let cells = Arc::new(WindowBase::new());
    cells.write(S1, &before);

    let evaluation = {
        let cells = Arc::clone(&cells);
        thread::spawn(move || cells.write(stage, &after))
    };
    read(&cells, before, after);
    evaluation.join().ok();
    (cells, after)
}

/// An evaluation rewrites the screen's base for the same stage (as each evaluation of a stage
/// does) while the record path's screen reads it: the screen gets one write's base whole, or
/// none (a write under way at each try), never one write's requests beside the next one's
/// errors, nor zeros for a stage that has a base.
#[test]
fn the_window_base_is_never_read_torn() {
    explore(MAX_BRANCHES, || {
        let (cells, after) = read_while_rewritten(S1, |cells, before, after| {
            if let Some(read) = cells.read(S1) {
                assert!(
                    read == before || read == after,
                    "torn window base: {read:?}"
                );
            }
        });
        assert_eq!(cells.read(S1), Some(after));
        assert_eq!(cells.read(S2), Some(Base::default()));
    });
}

/// An evaluation of a new stage rewrites the screen's base (as `Monitor::refresh` does once the
/// stage changed: S1's base, then S2's) while the record path's screen reads it for each stage:
/// for S2 it gets zeros (S1's base still in place), S2's base, or none; for S1, S1's base,
/// zeros (S2's base in place), or none; never one stage's counts under the other's stage.
///
/// Fails if the stage is stored before the odd sequence (a read of S2 gets S1's counts) or after
/// the even one (a read of S1 gets S2's counts).
#[test]
fn the_window_base_of_a_new_stage_is_never_read_under_the_old_one() {
    explore(MAX_BRANCHES, || {
        let none = Base::default();
        let (cells, after) = read_while_rewritten(S2, |cells, before, after| {
            if let Some(read) = cells.read(S2) {
                assert!(read == none || read == after, "S2 read {read:?}");
            }
            if let Some(read) = cells.read(S1) {
                assert!(read == before || read == none, "S1 read {read:?}");
            }
        });
        assert_eq!(cells.read(S2), Some(after));
        assert_eq!(cells.read(S1), Some(none));
    });
}

/// Two record paths look at the clock for the same due evaluation (`Metrics::claim_evaluation`,
/// a compare-exchange on the due time): exactly one claims it, once it is due (an hour past
/// it) as after the clock went back well before the last claim (each thread's own reading,
/// both gone back: the first claim makes the next due an interval after its reading, which
/// the other's is not).
///
/// Fails if the claim stores the next due time instead of exchanging it (both threads claim).
#[test]
fn one_thread_claims_each_due_evaluation() {
    let (s, ms) = (Duration::from_secs, Duration::from_millis);
    let interval = s(1);
    // Due (an hour past the first due time); then, after a claim at 3,600 s, two clocks gone
    // back by about an hour.
    for (claimed_at, readings) in [
        (None, [s(3_601); 2]),
        (Some(s(3_600)), [s(1), s(1) + ms(500)]),
    ] {
        explore(MAX_BRANCHES, move || {
            let metrics = Arc::new(Metrics::new(S1));
            if let Some(at) = claimed_at {
                assert!(metrics.claim_evaluation(at, interval));
            }
            let other = {
                let metrics = Arc::clone(&metrics);
                thread::spawn(move || metrics.claim_evaluation(readings[1], interval))
            };
            let mine = metrics.claim_evaluation(readings[0], interval);
            let theirs = other.join().unwrap_or(false);
            assert!(
                mine != theirs,
                "claims: {mine} and {theirs}, of one due evaluation"
            );
        });
    }
}
