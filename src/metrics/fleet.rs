//! The other gate instances' counts of the current stage, as the store's sync thread last read
//! them: one immutable value swapped in whole, which evaluations read without a lock, without
//! I/O and without allocating (the record path's screen reads its counters).

use arc_swap::ArcSwapOption;
use std::sync::Arc;

use super::Counts;
use crate::decision::{Cohort, StageId};

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
}

/// The latest [`Fleet`], if any.
#[derive(Debug, Default)]
pub(crate) struct FleetCache(ArcSwapOption<Fleet>);

impl FleetCache {
    /// Replaces what evaluations add (`None`: judge this process's data alone).
    pub(crate) fn set(&self, fleet: Option<Fleet>) {
        self.0.store(fleet.map(Arc::new));
    }

    /// Adds the others' counts of `stage` to `into` (their histograms too, with
    /// `histograms`; `into`'s histograms must then have the layout's length) and returns how
    /// many instances they are: 0 when none contributed to `stage`.
    pub(crate) fn add_to(&self, stage: StageId, into: &mut Counts, histograms: bool) -> u32 {
        let guard = self.0.load();
        let Some(fleet) = guard.as_ref().filter(|f| f.stage == stage) else {
            return 0;
        };
        for cohort in Cohort::ALL {
            let (to, from) = (&mut into[cohort], &fleet.counts[cohort]);
            to.add_counters(from);
            if histograms {
                to.add_histogram(from);
            }
        }
        fleet.others
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests_support::cohort;

    #[test]
    fn the_others_counts_are_added_to_their_stage_only() {
        let cache = FleetCache::default();
        let ours = || Counts {
            canary: cohort(100, 10, 1_000, 9_000),
            stable: cohort(1000, 10, 1_000, 9_000),
        };
        let mut into = ours();
        assert_eq!(cache.add_to(StageId(2), &mut into, true), 0, "nothing yet");
        assert_eq!(into, ours());
        cache.set(Some(Fleet {
            stage: StageId(2),
            others: 3,
            counts: Counts {
                canary: cohort(300, 30, 1_000, 9_000),
                stable: cohort(3000, 30, 1_000, 9_000),
            },
        }));
        assert_eq!(
            cache.add_to(StageId(3), &mut into, true),
            0,
            "another stage"
        );
        assert_eq!(into, ours());
        let buffer = into.canary.histogram.as_ptr();
        assert_eq!(cache.add_to(StageId(2), &mut into, true), 3);
        assert_eq!(into.canary.histogram.as_ptr(), buffer, "added in place");
        assert_eq!(into.canary, cohort(400, 40, 1_000, 9_000));
        assert_eq!(into.stable, cohort(4000, 40, 1_000, 9_000));
        // Counters only (the screen): the histograms are left alone.
        let mut counters = Counts::default();
        assert_eq!(cache.add_to(StageId(2), &mut counters, false), 3);
        assert_eq!(
            (counters.canary.requests, counters.canary.errors),
            (300, 30)
        );
        assert!(counters.canary.histogram.is_empty());
        cache.set(None);
        assert_eq!(cache.add_to(StageId(2), &mut ours(), true), 0);
    }
}
