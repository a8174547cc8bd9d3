//! Fleet-wide judging: each instance publishes its counts of the stage to the store and reads
//! the others' at every sync tick.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::manager::Shared;
use crate::manager::retired::Retired;
use crate::metrics::{Fleet, FleetLedger, FleetReading, MAX_REMEMBERED};
use crate::store::{self, BadContribution, Contribution, StoreError, StoreProblem};

// The instances read at one tick are all remembered by the book: none of them is folded (and
// then taken back at its next reading, losing what it gained meanwhile).
const _: () = assert!(MAX_REMEMBERED >= store::MAX_INSTANCES);

impl Shared {
    /// Fleet-wide judging, at each sync tick: publishes this process's counts of the current
    /// stage, reads the other live instances' into `ledger` (the sync thread's) and leaves
    /// their total, which never falls within the stage, where evaluations add it. Judges alone
    /// (no others' counts) while a rollback waits to be written (the local stage is ahead of
    /// the stored one), and always when the store's `fleet_judging` is off. While the store
    /// cannot be reached or read, evaluations go on adding the others' counts as last read:
    /// taking them away, then back, would hide their failures for a window and then count old
    /// errors as new ones. So they do while the store's file was replaced on disk and the gate
    /// has not followed the new one yet (a tick's catch-up came before the replacement, or
    /// could not apply the new file's state): the stage known is the old file's, and nothing
    /// is published to, or read from, the stage of that number in the new file.
    pub(in crate::manager) fn exchange_contributions(&self, exchange: &mut Exchange) {
        let (store, instance, ttl, known, stage, window) = {
            let writer = self.lock_writer();
            let Some(link) = writer.store.as_ref() else {
                return;
            };
            if link.pending.is_some() || !link.config.fleet_judging() {
                drop(writer);
                exchange.retire(self.monitor.set_fleet(None));
                return;
            }
            if link.down {
                return;
            }
            // Read together under the writer lock: the local stage is the stored one's (the
            // gates of a store number their stages alike only in the store), of the file it
            // was read from (`known.epoch`: in another file, the stage of that number is
            // another state, and the store publishes and reads nothing there).
            let current = self.current.load();
            (
                Arc::clone(&link.store),
                link.instance.clone(),
                link.ttl,
                link.known,
                current.route.stage,
                Duration::from_secs(current.config.rollback_window_seconds),
            )
        };
        let stored_stage = known.stage;
        let ours = self.monitor.stage_counts(stage);
        let published = store::encode(&instance, stored_stage, &ours)
            .map_err(|why| StoreError::new(store.location(), StoreProblem::Unavailable, why))
            .and_then(|contribution| store.publish(&contribution, known, ttl));
        exchange.publishing.note(published.err(), &instance);
        let rows = match store.contributions(known, &instance, ttl) {
            Ok(rows) => rows,
            Err(error) => {
                // Judged with the others' counts as last read.
                exchange.reading.note(Some(error), &instance);
                return;
            }
        };
        exchange.reading.note(None, &instance);
        let now = (self.monitor.monotonic(), self.monitor.wall());
        let (read, bad) = readable(&rows, stored_stage);
        exchange.report(bad);
        let fleet = exchange
            .ledger
            .update((stage, stored_stage), now, window, read);
        exchange.retire(self.monitor.set_fleet(fleet));
    }
}

/// The contributions in `rows` to the stored stage `stored_stage`, as each instance's counts
/// with when its gate opened (if its id says), and those refused ([`Exchange::report`] logs
/// them).
fn readable(
    rows: &[Result<Contribution, BadContribution>],
    stored_stage: u64,
) -> (Vec<FleetReading<'_>>, Vec<BadContribution>) {
    let mut bad = Vec::new();
    let read = rows
        .iter()
        .filter_map(|row| {
            let read = row.as_ref().map_err(Clone::clone).and_then(|contribution| {
                let instance = contribution.instance.as_str();
                store::decode(contribution, stored_stage)
                    .map(|counts| (instance, store::opened_at(instance), counts))
            });
            read.map_err(|refused| bad.push(refused)).ok()
        })
        .collect();
    (read, bad)
}

/// What the sync thread keeps from one tick's fleet-wide judging to the next.
#[derive(Default)]
pub(in crate::manager) struct Exchange {
    /// The other instances' counts of the stage, as this thread last read them.
    ledger: FleetLedger,
    /// Whether this instance's counts could be published at the last tick.
    publishing: Outage<Publishing>,
    /// Whether the other instances' counts could be read at the last tick.
    reading: Outage<Reading>,
    /// The bad contributions of the last read: each is logged when first found, not again at
    /// every tick while it stays in the store.
    bad: HashSet<BadContribution>,
    /// The fleets this thread replaced that an evaluation may still hold: freed here, never on
    /// the record path (see `retired`).
    retired: Retired<Arc<Fleet>>,
}

impl Exchange {
    /// Keeps the fleet just replaced, if any, after freeing those no other thread holds.
    fn retire(&mut self, replaced: Option<Arc<Fleet>>) {
        match replaced {
            Some(replaced) => self.retired.keep(replaced),
            None => self.retired.sweep(),
        }
    }

    /// Logs the contributions of this read that are bad and were not in the last one, and
    /// keeps this read's.
    fn report(&mut self, bad: Vec<BadContribution>) {
        for refused in bad.iter().filter(|refused| !self.bad.contains(*refused)) {
            tracing::error!(
                instance = refused.instance,
                field = refused.field,
                "promotion.store skips a bad contribution (logged once while it stays): {refused}"
            );
        }
        self.bad = bad.into_iter().collect();
    }
}

/// One of the two store calls of a tick, as its failures are logged.
trait Exchanged {
    /// The warning when the call starts failing (or fails otherwise than it did).
    const FAILING: &'static str;
    /// The line when it works again.
    const WORKING: &'static str;
}

#[derive(Default)]
struct Publishing;

impl Exchanged for Publishing {
    const FAILING: &'static str =
        "promotion.store cannot publish this instance's counts (logged once while it lasts)";
    const WORKING: &'static str = "promotion.store publishes this instance's counts again";
}

#[derive(Default)]
struct Reading;

impl Exchanged for Reading {
    const FAILING: &'static str = "promotion.store cannot read the other instances' counts; judging with them as last read (logged once while it lasts)";
    const WORKING: &'static str = "promotion.store reads the other instances' counts again";
}

/// The last failure of one of a tick's store calls: a failure is logged when it starts or
/// changes, and its end once, not at every tick (four times a second by default) while the
/// store stays broken.
struct Outage<Call> {
    last: Option<StoreError>,
    call: std::marker::PhantomData<Call>,
}

impl<Call> Default for Outage<Call> {
    fn default() -> Self {
        Self {
            last: None,
            call: std::marker::PhantomData,
        }
    }
}

impl<Call: Exchanged> Outage<Call> {
    /// Notes this tick's result of the call: `failure` is its error, if it failed.
    fn note(&mut self, failure: Option<StoreError>, instance: &str) {
        match (&self.last, &failure) {
            (None, None) => {}
            (Some(_), None) => tracing::info!(instance, "{}", Call::WORKING),
            (Some(last), Some(error)) if last == error => {}
            (_, Some(error)) => tracing::warn!(%error, instance, "{}", Call::FAILING),
        }
        self.last = failure;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::contribution;

    #[test]
    fn only_the_good_contributions_to_the_stage_are_read() {
        let mut bad = contribution("liar", 4, 100);
        bad.cohorts.canary.errors = 101;
        let rows = vec![
            Ok(contribution("a", 4, 100)),
            Ok(bad),
            Err(BadContribution::new(
                "mangled",
                "stable_requests",
                "not an integer",
            )),
            Ok(contribution("b", 4, 300)),
            Ok(contribution("late", 3, 1000)),
        ];
        let (read, bad) = readable(&rows, 4);
        let read: Vec<_> = read
            .into_iter()
            .map(|(instance, _, counts)| (instance, counts.canary.requests, counts.canary.errors))
            .collect();
        assert_eq!(read, [("a", 100, 10), ("b", 300, 30)]);
        let bad: Vec<_> = bad.iter().map(|b| b.instance.as_str()).collect();
        assert_eq!(bad, ["liar", "mangled", "late"]);
        assert_eq!(readable(&rows[1..3], 4).0.len(), 0, "none left");
    }

    #[test]
    fn a_bad_contribution_is_logged_once_while_it_stays() {
        use crate::telemetry::log_lines::LogLines;
        let junk = |problem: &str| BadContribution::new("junk", "stage", problem);
        let logs = LogLines::default();
        let mut exchange = Exchange::default();
        logs.during(|| {
            for _ in 0..5 {
                exchange.report(vec![junk("not an integer")]); // one tick each
            }
        });
        assert_eq!(logs.lines().len(), 1, "{:?}", logs.lines());
        // Another problem is logged; so is the first again once it had gone.
        logs.during(|| {
            exchange.report(vec![junk("not an integer"), junk("negative")]);
            exchange.report(Vec::new());
            exchange.report(vec![junk("not an integer")]);
        });
        let lines = logs.lines();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[1].contains("negative") && lines[2].contains("not an integer"));
    }

    #[test]
    fn a_failing_store_call_is_logged_when_it_starts_changes_and_ends() {
        use crate::telemetry::log_lines::LogLines;
        let error = |why: &str| StoreError::new("/x/gate.db", StoreProblem::Unavailable, why);
        let logs = LogLines::default();
        let mut reading = Outage::<Reading>::default();
        logs.during(|| {
            for _ in 0..40 {
                reading.note(Some(error("no such table: contribution")), "i-1"); // a tick each
            }
            reading.note(Some(error("disk I/O error")), "i-1");
            reading.note(None, "i-1");
            reading.note(None, "i-1");
            reading.note(Some(error("disk I/O error")), "i-1");
        });
        let lines = logs.lines();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[0].contains("no such table") && lines[0].contains("cannot read"));
        assert!(lines[1].contains("disk I/O error"));
        assert!(lines[2].contains("reads the other instances' counts again"));
        assert!(lines[3].contains("disk I/O error"));
    }
}
