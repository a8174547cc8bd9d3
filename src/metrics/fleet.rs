//! The other gate instances' counts of the current stage, as the store's sync thread last read
//! them: one immutable value swapped in whole, which evaluations read without a lock, without
//! I/O and without allocating (the record path's screen reads its counters). The one an
//! evaluation added is left for the window, which measures against what the others showed
//! when first read.

use arc_swap::ArcSwapOption;
use std::sync::Arc;

use super::Counts;
use crate::decision::{Cohort, PerCohort, StageId};

/// The other instances' counts of one stage: the total the sync thread's
/// [`FleetLedger`](super::FleetLedger) keeps, which never falls within the stage.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fleet {
    /// The local stage they count (the stored stage, as this process numbers it).
    pub(crate) stage: StageId,
    /// How many other instances the counts are of (those no longer read included).
    pub(crate) others: u32,
    /// Their cumulative counts of the stage, with histograms.
    pub(crate) counts: Counts,
    /// The part of `counts` they showed when this process first read them, with histograms:
    /// of the stage, but taken as older than every window ([`FleetLedger::update`](super::FleetLedger::update)).
    pub(crate) joined: Counts,
}

/// Each cohort's `[requests, errors, compliant]` the others showed when first read: what the
/// screen's window leaves out.
pub(crate) type JoinedCounters = PerCohort<[u64; 3]>;

/// The latest [`Fleet`], if any, and the one the last evaluation added. The sync thread keeps
/// each fleet it replaced until no other thread holds it (see `manager::retired`), so an
/// evaluation replacing `evaluated`, or a load's guard, never drops the last reference.
#[derive(Debug, Default)]
pub(crate) struct FleetCache {
    latest: ArcSwapOption<Fleet>,
    /// Left by [`add_to`](Self::add_to) with histograms (an evaluation, which holds the
    /// window): the window measures against its `joined`, so that both come from one read.
    evaluated: ArcSwapOption<Fleet>,
}

impl FleetCache {
    /// Replaces what evaluations add (`None`: judge this process's data alone) and returns
    /// the fleet replaced, for the caller (the store's sync thread) to keep until no other
    /// thread holds it: the evaluation that added it keeps it in `evaluated` until the next
    /// one, and would otherwise free it then, on a request's thread, with its histograms.
    #[must_use = "kept until no other thread holds it, so that no request's thread frees it"]
    pub(crate) fn set(&self, fleet: Option<Fleet>) -> Option<Arc<Fleet>> {
        self.latest.swap(fleet.map(Arc::new))
    }

    /// Adds the others' counts of `stage` to `into` (their histograms too, with
    /// `histograms`; `into`'s histograms must then have the layout's length) and returns how
    /// many instances they are (0 when none contributed to `stage`) and the counters they
    /// showed when first read. With `histograms` (an evaluation, holding the window) the fleet
    /// added is also left for the window ([`joined_into`](Self::joined_into)).
    pub(crate) fn add_to(
        &self,
        stage: StageId,
        into: &mut Counts,
        histograms: bool,
    ) -> (u32, JoinedCounters) {
        let guard = self.latest.load();
        let fleet = guard.as_ref().filter(|f| f.stage == stage);
        if histograms {
            self.evaluated.store(fleet.cloned());
        }
        let Some(fleet) = fleet else {
            return (0, JoinedCounters::default());
        };
        for cohort in Cohort::ALL {
            let (to, from) = (&mut into[cohort], &fleet.counts[cohort]);
            to.add_counters(from);
            if histograms {
                to.add_histogram(from);
            }
        }
        let joined = PerCohort::from_fn(|cohort| {
            let c = &fleet.joined[cohort];
            [c.requests, c.errors, c.compliant]
        });
        (fleet.others, joined)
    }

    /// Writes into `out` the counts of `stage` in `now` less what the others, as the last
    /// evaluation added them, showed when first read (`now` itself when they are of another
    /// stage, or there are none): the reading the window measures. No allocation once `out`
    /// has its size.
    pub(crate) fn joined_into(&self, stage: StageId, now: &Counts, out: &mut Counts) {
        let guard = self.evaluated.load();
        let joined = guard
            .as_ref()
            .filter(|f| f.stage == stage)
            .map(|f| &f.joined);
        for cohort in Cohort::ALL {
            match joined {
                Some(joined) => now[cohort].since_into(&joined[cohort], &mut out[cohort]),
                None => out[cohort].copy_from(&now[cohort]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::CohortCounts;
    use crate::metrics::tests_support::cohort;

    #[test]
    fn the_others_counts_are_added_to_their_stage_only() {
        let cache = FleetCache::default();
        let ours = || Counts {
            canary: cohort(100, 10, 1_000, 9_000),
            stable: cohort(1000, 10, 1_000, 9_000),
        };
        let mut into = ours();
        assert_eq!(
            cache.add_to(StageId(2), &mut into, true).0,
            0,
            "nothing yet"
        );
        assert_eq!(into, ours());
        let _ = cache.set(Some(Fleet {
            stage: StageId(2),
            others: 3,
            counts: Counts {
                canary: cohort(300, 30, 1_000, 9_000),
                stable: cohort(3000, 30, 1_000, 9_000),
            },
            joined: Counts {
                canary: cohort(100, 20, 1_000, 9_000),
                stable: cohort(1000, 10, 1_000, 9_000),
            },
        }));
        assert_eq!(
            cache.add_to(StageId(3), &mut into, true).0,
            0,
            "another stage"
        );
        assert_eq!(into, ours());
        let buffer = into.canary.histogram.as_ptr();
        let (others, joined) = cache.add_to(StageId(2), &mut into, true);
        assert_eq!(others, 3);
        let first = cohort(100, 20, 1_000, 9_000);
        assert_eq!(joined.canary, [100, 20, first.compliant]);
        assert_eq!(into.canary.histogram.as_ptr(), buffer, "added in place");
        assert_eq!(into.canary, cohort(400, 40, 1_000, 9_000));
        assert_eq!(into.stable, cohort(4000, 40, 1_000, 9_000));
        // Counters only (the screen): the histograms are left alone.
        let mut counters = Counts::default();
        assert_eq!(cache.add_to(StageId(2), &mut counters, false).0, 3);
        assert_eq!(
            (counters.canary.requests, counters.canary.errors),
            (300, 30)
        );
        assert!(counters.canary.histogram.is_empty());
        let _ = cache.set(None);
        assert_eq!(cache.add_to(StageId(2), &mut ours(), true).0, 0);
    }

    #[test]
    fn the_window_reads_what_the_last_evaluation_added_less_what_was_first_read() {
        let cache = FleetCache::default();
        let fleet = |canary: CohortCounts| Fleet {
            stage: StageId(2),
            others: 1,
            counts: Counts {
                canary: cohort(1000, 100, 1_000, 9_000),
                stable: cohort(1000, 10, 1_000, 9_000),
            },
            joined: Counts {
                canary,
                stable: cohort(600, 6, 1_000, 9_000),
            },
        };
        let _ = cache.set(Some(fleet(cohort(800, 20, 1_000, 9_000))));
        let mut now = crate::metrics::window::sized();
        cache.add_to(StageId(2), &mut now, true);
        // A newer fleet arrives before the window reads: the evaluation's is still used.
        let _replaced = cache.set(Some(fleet(cohort(900, 50, 1_000, 9_000))));
        let mut reading = crate::metrics::window::sized();
        cache.joined_into(StageId(2), &now, &mut reading);
        assert_eq!((reading.canary.requests, reading.canary.errors), (200, 80));
        assert_eq!(reading.canary.histogram.iter().sum::<u64>(), 200);
        assert_eq!(reading.stable.requests, 400);
        // Of another stage: the reading is `now` itself.
        cache.joined_into(StageId(3), &now, &mut reading);
        assert_eq!(reading, now);
        // The screen's read (no histograms) leaves the evaluation's fleet as it was.
        cache.add_to(StageId(2), &mut Counts::default(), false);
        cache.joined_into(StageId(2), &now, &mut reading);
        assert_eq!(reading.canary.requests, 200);
    }

    #[test]
    fn an_evaluation_never_drops_the_last_reference_to_a_replaced_fleet() {
        let cache = FleetCache::default();
        let fleet = |requests: u64| Fleet {
            stage: StageId(2),
            others: 1,
            counts: crate::metrics::window::sized(),
            joined: Counts {
                canary: cohort(requests, 0, 1_000, 9_000),
                stable: cohort(requests, 0, 1_000, 9_000),
            },
        };
        let _ = cache.set(Some(fleet(100)));
        let mut now = crate::metrics::window::sized();
        cache.add_to(StageId(2), &mut now, true); // an evaluation keeps it in `evaluated`
        let first = Arc::downgrade(cache.latest.load().as_ref().unwrap());
        // A sync tick replaces it, and keeps what it replaced (as `Exchange::retire` does)...
        let replaced = cache.set(Some(fleet(200)));
        // ... so the next evaluation, on a request's thread, lets go of a reference that is
        // not the last: its histograms are not freed there.
        cache.add_to(StageId(2), &mut now, true);
        assert!(
            first.upgrade().is_some(),
            "the evaluation freed the replaced fleet"
        );
        assert_eq!(first.strong_count(), 1, "the sync thread's alone");
        drop(replaced);
        assert_eq!(first.strong_count(), 0);
    }
}
