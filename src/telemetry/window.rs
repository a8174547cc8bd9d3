//! What the exporters read of a gate's window at once: the health and both latency histograms.

use hdrhistogram::Histogram;

use crate::config::Environment;
use crate::decision::{Cohort, PerCohort};
use crate::judge::{CanaryHealth, CohortEvidence};

/// Every environment, in the order the exporters list them (the canary's share aside).
pub(crate) const ENVIRONMENTS: [Environment; 3] = [
    Environment::Canary {
        traffic_percent: 0.0,
    },
    Environment::Staging,
    Environment::Production,
];

/// The canary's health and both cohorts' latency histograms, from one read of the window (see
/// [`window_export`](crate::PromotionGateManager::window_export)): the numbers agree with
/// each other, as two separate calls' need not.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
/// let window = gate.window_export();
/// assert_eq!(window.health.canary_requests, window.evidence(Cohort::Canary).requests);
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct WindowExport {
    /// The canary's health over the window, as [`health`](crate::PromotionGateManager::health)
    /// gives it.
    pub health: CanaryHealth,
    latency: PerCohort<Option<Histogram<u64>>>,
}

impl WindowExport {
    pub(crate) fn new(health: CanaryHealth, latency: PerCohort<Option<Histogram<u64>>>) -> Self {
        Self { health, latency }
    }

    /// The window's numbers of `cohort`.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert_eq!(gate.window_export().evidence(Cohort::Stable).requests, 0);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn evidence(&self, cohort: Cohort) -> &CohortEvidence {
        match cohort {
            Cohort::Canary => &self.health.evidence.canary,
            Cohort::Stable => &self.health.evidence.stable,
        }
    }

    /// The latency histogram of `cohort` in the window, in microseconds, as
    /// [`latency_histogram`](crate::PromotionGateManager::latency_histogram) gives it (`None`
    /// only if hdrhistogram refused the bounds, which it does not).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// gate.record_request_outcome("u", true, std::time::Duration::from_micros(1500));
    /// assert_eq!(gate.window_export().latency_histogram(Cohort::Stable).unwrap().len(), 1);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn latency_histogram(&self, cohort: Cohort) -> Option<&Histogram<u64>> {
        self.latency[cohort].as_ref()
    }
}
