//! One cohort's statistics in the judged window, computed once per evaluation from its
//! counts: what every rule, the score and the evidence read.

use std::time::Duration;

use super::CohortEvidence;
use super::stats::{Proportion, binomial_tail, p99_lower, p99_upper};
use crate::metrics::{CohortCounts, Edge, count_above, quantile_micros, rank_micros};

/// One cohort's numbers: the counts clamped to the requests, their rates, and the p99.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CohortStats<'a> {
    pub(crate) requests: u64,
    /// Failed requests, at most `requests`.
    pub(crate) errors: u64,
    /// Requests that succeeded within the latency target, at most `requests`.
    pub(crate) compliant: u64,
    /// Requests that failed or missed the latency target.
    pub(crate) misses: u64,
    /// `errors / requests`, 0 with no requests.
    pub(crate) error_rate: f64,
    /// `compliant / requests`, 1 with no requests.
    pub(crate) compliance: f64,
    /// The p99 latency in microseconds; `None` when only counters were read or the histogram
    /// holds no latency (just after the warm-up's settled reading).
    pub(crate) p99_micros: Option<u64>,
    /// The latency histogram, empty when only counters were read.
    histogram: &'a [u64],
}

impl<'a> CohortStats<'a> {
    /// The statistics of `counts`.
    pub(crate) fn of(counts: &'a CohortCounts) -> Self {
        let requests = counts.requests;
        let errors = counts.errors.min(requests);
        let compliant = counts.compliant.min(requests);
        let misses = requests - compliant;
        let share = |part: u64, empty: f64| {
            if requests == 0 {
                empty
            } else {
                part as f64 / requests as f64
            }
        };
        let histogram = counts.histogram.as_slice();
        Self {
            requests,
            errors,
            compliant,
            misses,
            error_rate: share(errors, 0.0),
            compliance: share(compliant, 1.0),
            p99_micros: histogram
                .iter()
                .any(|&count| count > 0)
                .then(|| quantile_micros(histogram, 0.99)),
            histogram,
        }
    }

    /// Errors out of requests.
    pub(crate) fn errors(&self) -> Proportion {
        Proportion {
            events: self.errors,
            trials: self.requests,
        }
    }

    /// Requests slower than `micros` (counting whole buckets above it), out of requests.
    pub(crate) fn slower_than(&self, micros: u64) -> Proportion {
        Proportion {
            events: count_above(self.histogram, micros).min(self.requests),
            trials: self.requests,
        }
    }

    /// Whether the cohort has at least `min_samples` requests.
    pub(crate) fn has(&self, min_samples: u64) -> bool {
        self.requests >= min_samples
    }

    /// An upper confidence bound of the p99 at level `alpha`, in microseconds: the order
    /// statistic [`p99_upper`] names, of the histogram's own samples, as the highest latency of
    /// its bucket. `None` when the samples are too few to bound it (or only counters were read).
    pub(crate) fn p99_upper_micros(&self, alpha: f64) -> Option<u64> {
        let rank = p99_upper(self.latencies(), alpha)?;
        Some(rank_micros(self.histogram, rank, Edge::Highest))
    }

    /// A lower confidence bound of the p99 at level `alpha`, in microseconds: the order
    /// statistic [`p99_lower`] names, as the lowest latency of its bucket. `None` when the
    /// samples are too few to bound it.
    pub(crate) fn p99_lower_micros(&self, alpha: f64) -> Option<u64> {
        let rank = p99_lower(self.latencies(), alpha)?;
        Some(rank_micros(self.histogram, rank, Edge::Lowest))
    }

    /// The samples the histogram holds (its own count: `requests` is counted apart, and a
    /// read between the two may see one more of either).
    fn latencies(&self) -> u64 {
        self.histogram
            .iter()
            .fold(0u64, |sum, &count| sum.saturating_add(count))
    }

    /// The p-value (an upper bound) of "more than 1 % of requests are slower than `micros`".
    pub(crate) fn p_slower_than(&self, micros: u64) -> f64 {
        binomial_tail(count_above(self.histogram, micros), self.requests, 0.01)
    }

    /// The public numbers of the cohort, with the p99 reported (of its latencies after warm-up
    /// when it has any), its requests after the stage's warm-up, and its `misses` as the judge
    /// counts them (latency misses after the warm-up only), out of its requests.
    pub(crate) fn evidence(
        &self,
        p99_micros: Option<u64>,
        latency_requests: u64,
        misses: Proportion,
    ) -> CohortEvidence {
        CohortEvidence {
            requests: self.requests,
            errors: self.errors,
            compliant: self.compliant,
            error_rate: self.error_rate,
            compliance: self.compliance,
            // As `compliance` is computed, so that the two are equal when the misses are.
            judged_compliance: if misses.trials == 0 {
                1.0
            } else {
                (misses.trials - misses.events.min(misses.trials)) as f64 / misses.trials as f64
            },
            p99: p99_micros.map_or(Duration::ZERO, Duration::from_micros),
            latency_requests,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::layout;

    #[test]
    fn the_p99_bounds_read_their_rank_and_the_safe_end_of_its_bucket() {
        // 8 210 samples: the upper bound is the 8 155th (as a fraction, 8155 / 8210 times 8210
        // comes to just above 8155 and would read the 8 156th), here the last of bucket 100.
        assert_eq!(p99_upper(8_210, 0.001), Some(8_155));
        let many = CohortCounts::compliant_in_buckets(&[(100, 8_155), (200, 55)]);
        let stats = CohortStats::of(&many);
        assert_eq!(stats.p99_upper_micros(0.001), Some(layout::highest_of(100)));
        // The lower bound's rank, in the same bucket, is read as the bucket's lowest latency.
        assert_eq!(stats.p99_lower_micros(0.001), Some(layout::lowest_of(100)));
        // Too few samples bound nothing.
        let few = CohortCounts::compliant_in_buckets(&[(100, 99), (200, 1)]);
        assert_eq!(CohortStats::of(&few).p99_upper_micros(0.001), None);
    }
}
