//! What the exporters read of a gate's window at once: the health and both latency histograms,
//! and the histograms' buckets as both exporters show them.

use hdrhistogram::Histogram;

use crate::config::Environment;
use crate::decision::{Cohort, PerCohort, StageId};
use crate::judge::{CanaryHealth, CohortEvidence, Finding, Recommendation, Rule};
use crate::snapshot::Snapshot;

/// Every environment, in the order the exporters list them (the canary's share aside).
pub(crate) const ENVIRONMENTS: [Environment; 3] = [
    Environment::Canary {
        traffic_percent: 0.0,
    },
    Environment::Staging,
    Environment::Production,
];

/// The canary's health and both cohorts' latency histograms, from one read of the window (see
/// [`window_export`](crate::PromotionGateManager::window_export)), and the release state it
/// was read over: the numbers agree with each other, as two separate calls' need not. A
/// cohort's requests are its histogram's samples, even while threads record (on a state
/// store, with the other instances' counts as they published them, which may differ by the
/// records an instance had in flight when it read its own).
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
#[non_exhaustive]
pub struct WindowExport {
    /// The canary's health over the window, as [`health`](crate::PromotionGateManager::health)
    /// gives it.
    pub health: CanaryHealth,
    latency: PerCohort<Option<Histogram<u64>>>,
    /// The environment of the snapshot the window was read over.
    pub(crate) environment: Environment,
    /// That snapshot's stage: the stage whose outcomes the window holds.
    pub(crate) stage: StageId,
    /// That snapshot's `slo_threshold`.
    pub(crate) slo_threshold: f64,
}

impl WindowExport {
    /// The export of `health` and `latency`, read over `snapshot`.
    pub(crate) fn new(
        health: CanaryHealth,
        latency: PerCohort<Option<Histogram<u64>>>,
        snapshot: &Snapshot,
    ) -> Self {
        Self {
            health,
            latency,
            environment: snapshot.config.environment,
            stage: snapshot.route.stage,
            slo_threshold: snapshot.config.slo_threshold,
        }
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

    /// The window's finding of `rule`, if the judge judged it.
    pub(crate) fn finding(&self, rule: Rule) -> Option<&Finding> {
        let findings = &self.health.evidence.findings;
        findings.iter().find(|finding| finding.rule == rule)
    }

    /// The latency histogram of `cohort` in the exporters' buckets
    /// ([`LATENCY_BUCKETS_SECONDS`]), or `None` without a histogram.
    pub(crate) fn latency_buckets(&self, cohort: Cohort) -> Option<LatencyBuckets> {
        self.latency_histogram(cohort).map(LatencyBuckets::of)
    }
}

/// The judge's recommendations as the exporters name them, in the order they list them.
pub(crate) const RECOMMENDATIONS: [&str; 4] = ["healthy", "monitor", "rollback", "no_data"];

/// `recommendation`'s name among [`RECOMMENDATIONS`].
pub(crate) fn recommendation_name(recommendation: Recommendation) -> &'static str {
    match recommendation {
        Recommendation::Healthy => "healthy",
        Recommendation::Monitor => "monitor",
        Recommendation::Rollback => "rollback",
        Recommendation::NoData => "no_data",
    }
}

/// The upper bounds (`le`, in seconds) of the exported latency histogram's buckets
/// (`promotion_window_latency_seconds_bucket`); the last bucket, `+Inf`, holds every sample. The
/// last bound is 30 s: the window counts a latency above 60 s as 60 s
/// ([`MAX_TRACKED_LATENCY`](crate::MAX_TRACKED_LATENCY)), so a bound at 60 s would count
/// samples far above it. A sample from 30.015488 s up is in `+Inf` alone; one up to
/// 30.015487 s shares the HDR bucket of 30 s (29.884416 s to 30.015487 s, in microseconds) and
/// is counted in `le="30"` too (below).
///
/// The window keeps latencies in HDR buckets (each at most 0.78 % wide), not one by one, so a
/// bucket that straddles a bound is counted whole on one side. It counts in `le` when its
/// lowest value is at or below `le`: every sample at or below a bound is in that bound's
/// bucket (an exact `0.001` too, as Prometheus' "less than or equal" asks), and a sample less
/// than 0.78 % above a bound may be counted in it as well. Counting a straddling bucket only
/// above its highest value would instead leave out samples at or just below the bound
/// (a sample of exactly 1 ms shares its HDR bucket with samples up to 1.003 ms).
///
/// The `_sum` adds each sample as the midpoint of its HDR bucket (hdrhistogram's
/// `median_equivalent`), within half the bucket's width of its latency: exact below 256 µs,
/// at most 0.39 % off above (a sample of 1 s adds 1.001472 s). A latency in the last HDR
/// bucket, from 59.768832 s up (60 s, and every longer one, which the window holds as 60 s),
/// adds its midpoint, 59.899904 s, however long it took.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// use promotion_gates::telemetry::prometheus::{LATENCY_BUCKETS_SECONDS, exposition};
/// assert_eq!(LATENCY_BUCKETS_SECONDS[1], 0.001);
///
/// let gate = PromotionGateManager::new(
///     PromotionConfig { gate: "g".into(), ..Default::default() },
///     SloAdmissionController::new(SloConfig::default())?,
/// )?;
/// gate.record_request_outcome("u", true, std::time::Duration::from_secs(300));
/// let text = exposition(&gate);
/// let series = r#"promotion_window_latency_seconds_bucket{gate="g",cohort="stable",le="30"} 0"#;
/// assert!(text.contains(series));
/// let series = r#"promotion_window_latency_seconds_sum{gate="g",cohort="stable"} 59.899904"#;
/// assert!(text.contains(series));
///
/// // 30 s's HDR bucket ends at 30.015487 s: a sample up to there is in le="30", one after not.
/// gate.record_request_outcome("u", true, std::time::Duration::from_micros(30_015_487));
/// gate.record_request_outcome("u", true, std::time::Duration::from_micros(30_015_488));
/// let text = exposition(&gate);
/// let series = r#"promotion_window_latency_seconds_bucket{gate="g",cohort="stable",le="30"} 1"#;
/// assert!(text.contains(series), "{text}");
/// let series = r#"promotion_window_latency_seconds_bucket{gate="g",cohort="stable",le="+Inf"} 3"#;
/// assert!(text.contains(series), "{text}");
/// # Ok::<(), promotion_gates::Error>(())
/// ```
pub const LATENCY_BUCKETS_SECONDS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One cohort's latency histogram in the exported buckets.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LatencyBuckets {
    /// The samples counted in each bucket of [`LATENCY_BUCKETS_SECONDS`] (cumulative).
    pub(crate) at_or_below: [u64; LATENCY_BUCKETS_SECONDS.len()],
    /// Every sample (the `+Inf` bucket).
    pub(crate) count: u64,
    /// The samples' sum in seconds, each HDR bucket's samples at its midpoint (see
    /// [`LATENCY_BUCKETS_SECONDS`]).
    pub(crate) sum_seconds: f64,
}

impl LatencyBuckets {
    /// A sample counts in every bucket whose bound is at or above the lowest value of its HDR
    /// bucket (see [`LATENCY_BUCKETS_SECONDS`]).
    fn of(histogram: &Histogram<u64>) -> Self {
        let mut at_or_below = [0; LATENCY_BUCKETS_SECONDS.len()];
        let mut micros = 0.0;
        for value in histogram.iter_recorded() {
            let highest = value.value_iterated_to();
            let lowest = histogram.lowest_equivalent(highest);
            let n = value.count_at_value();
            for (count, le) in at_or_below.iter_mut().zip(LATENCY_BUCKETS_SECONDS) {
                if lowest <= (le * 1e6).round() as u64 {
                    *count += n;
                }
            }
            micros += histogram.median_equivalent(highest) as f64 * n as f64;
        }
        Self {
            at_or_below,
            count: histogram.len(),
            sum_seconds: micros / 1e6,
        }
    }

    /// Each bucket's `le` as the exporters write it (`0.0005` .. `30`, then `+Inf`), with
    /// its count.
    pub(crate) fn buckets(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        let bounded = LATENCY_BUCKETS_SECONDS.iter().map(|le| le.to_string());
        bounded
            .zip(self.at_or_below)
            .chain(std::iter::once(("+Inf".to_string(), self.count)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use crate::decision::Cohort;
    use crate::{PromotionConfig, PromotionGateManager, SloAdmissionController, SloConfig};

    /// A read of the window while a thread records shows as many requests as latencies: the
    /// requests are the histogram's samples of the same read (the `requests` counter, read
    /// before the buckets, lagged them by the records made meanwhile: 8299 against 8301).
    #[test]
    fn a_read_while_a_thread_records_shows_as_many_requests_as_latencies() {
        let slo = SloAdmissionController::new(SloConfig::default()).unwrap();
        let gate = Arc::new(PromotionGateManager::new(PromotionConfig::default(), slo).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let recording = {
            let (gate, stop) = (Arc::clone(&gate), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let latency = Duration::from_micros(100 + i % 5_000);
                    gate.record_request_outcome("u", !i.is_multiple_of(50), latency);
                    i += 1;
                }
            })
        };
        let (mut reads, mut moving, mut differing) = (0, 0, Vec::new());
        let mut last = 0;
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until || moving < 100 {
            let window = gate.window_export();
            let requests = window.evidence(Cohort::Stable).requests;
            let latencies = window.latency_histogram(Cohort::Stable).unwrap().len();
            if requests != latencies {
                differing.push((requests, latencies));
            }
            moving += u32::from(requests != last);
            last = requests;
            reads += 1;
        }
        stop.store(true, Ordering::Relaxed);
        recording.join().unwrap();
        assert!(
            differing.is_empty(),
            "{} of {reads} reads differ (requests, latencies): {:?}",
            differing.len(),
            &differing[..differing.len().min(5)]
        );
    }
}
