//! The other gate instances' counts of the current stage, as the store's sync thread last read
//! them: one immutable value swapped in whole, which evaluations read without a lock, without
//! I/O and without allocating (the record path's screen reads its counters).

use arc_swap::ArcSwapOption;
use std::sync::Arc;

use super::Counts;
use crate::decision::{Cohort, StageId};

/// The sum of the other instances' contributions to one stage.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fleet {
    /// The local stage they count (the stored stage, as this process numbers it).
    pub(crate) stage: StageId,
    /// How many other instances contributed.
    pub(crate) others: u32,
    /// Their summed cumulative counts of the stage, with histograms.
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
            to.requests += from.requests;
            to.errors += from.errors;
            to.compliant += from.compliant;
            if histograms {
                for (a, b) in to.histogram.iter_mut().zip(&from.histogram) {
                    *a += b;
                }
            }
        }
        fleet.others
    }
}
