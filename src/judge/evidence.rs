//! What a verdict rests on, as the public types the judge hands out: each rule's
//! [`Finding`], each cohort's numbers, the positive evidence a promotion needs, and the
//! [`CanaryHealth`] that gathers them.

use std::fmt;
use std::time::Duration;

use super::{Digits, Recommendation, Rule, apart};
use crate::config::Environment;
use crate::decision::StageId;

/// One rule's evaluation: what was seen, against what limit, how surely.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
/// for finding in gate.monitor_canary_health().evidence.findings {
///     println!("{finding}");
/// }
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Finding {
    /// The rule.
    pub rule: Rule,
    /// The observed value: a rate (`p99_vs_stable`: the share of canary requests slower than
    /// the stable p99's bound), a latency in milliseconds (`p99_budget`), `θ`
    /// (`latency_shift`), the score's upper confidence bound, which the rule tests
    /// (`health_score`; the health score itself is the point estimate, at or below it), or 0
    /// (`no_data`).
    pub observed: f64,
    /// The limit it was held against: in the same unit, but for `no_data`, whose limit is
    /// `no_data_ms` in seconds: how long the canary may report nothing, from the stage's start
    /// or, once it has reported, since its latest outcome, before that is held against it.
    /// `p99_budget`'s is the budget as configured, to the nanosecond.
    pub limit: f64,
    /// The test's p-value (an upper bound). The rules on a confidence bound (`errors_over_stage`,
    /// `latency_shift`, `health_score`) report `significance` when their bound is beyond the
    /// limit and 1 otherwise (`health_score`'s bound may be beyond it while the rule waits for
    /// `min_samples`, unfired; `errors_over_stage` reports the exact binomial tail of the
    /// canary's errors instead when that is larger and the canary expects fewer than 10
    /// errors at the limit: the tail at the limit of the stable rate with one error more than
    /// seen, since the stable estimate is not exact); `overwhelming_errors` and `error_burst`
    /// report Fisher's exact p-value against the stable outcomes of the same span instead when
    /// those are too few to bound their rate and it is the larger;
    /// `no_data` reports the chance of no canary outcome at all given those due (at least
    /// e⁻⁷⁰⁰), or 0 when no stable traffic counts them (Staging, a 100 % canary), which its
    /// text shows as no p-value.
    pub p_value: f64,
    /// Whether the rule fired: the canary is to blame and is rolled back.
    pub fired: bool,
    /// Whether the finding holds the promotion without rolling back: an absolute limit
    /// breached by the whole service (the canary not significantly worse than the stable
    /// version, or the stable version not yet with `min_samples` to show it), or no data.
    pub holds: bool,
    /// The setting whose limit acted, e.g. `error_rate_ratio_limit` or
    /// `error_rate_tolerance` (whichever is more lenient for the data at hand). A limit fixed
    /// in the judge is named as its constant, in capitals: `ERROR_RATE_MARGIN`
    /// ([`ERROR_RATE_MARGIN`](crate::judge::ERROR_RATE_MARGIN), 1.1, in `errors_over_stage`;
    /// [`ERROR_RATE_FLOOR`](crate::judge::ERROR_RATE_FLOOR) where it raises `max_error_rate`
    /// or `1 - slo_threshold`; [`OVERWHELMING_RATE_FLOOR`](crate::judge::OVERWHELMING_RATE_FLOOR)
    /// in `overwhelming_errors` and `error_burst`, whose ceiling may also be `max_error_rate`,
    /// the tolerance's setting, or the stable rate's upper bound, named `significance`, its
    /// level); `health_score` names the score's limit of 0.8.
    pub acting: &'static str,
}

/// A time of at most a day given in seconds (`no_data`'s limit), in milliseconds to the
/// nanosecond, as [`shown_millis`](crate::shown_millis) writes a duration: within a day an
/// `f64` of seconds holds every nanosecond, so rounding to one gives the setting back.
fn seconds_shown_in_ms(seconds: f64) -> String {
    let nanos = (seconds * 1e9).round();
    if !(nanos.is_finite() && nanos >= 0.0 && nanos < u64::MAX as f64) {
        return format!("{}", seconds * 1e3);
    }
    crate::shown_millis(Duration::from_nanos(nanos as u64))
}

/// The decimals, from 3 to 6, that show `millis` (a duration of at most a day) to the
/// nanosecond, as it was configured.
fn millis_decimals(millis: f64) -> usize {
    let nanos = (millis * 1e6).round();
    if !(nanos.is_finite() && nanos >= 0.0 && nanos < u64::MAX as f64) {
        return 3;
    }
    let nanos = nanos as u64;
    match (nanos % 1_000, nanos % 100, nanos % 10) {
        (0, _, _) => 3,
        (_, 0, _) => 4,
        (_, _, 0) => 5,
        _ => 6,
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match (self.fired, self.holds) {
            (true, _) => "FIRED",
            (false, true) => "HOLDS",
            (false, false) => "ok",
        };
        let pair = |decimals, percent| {
            apart(
                (self.observed, Digits::Fixed(decimals)),
                (self.limit, Digits::Fixed(decimals)),
                percent,
            )
        };
        let (observed, limit) = match self.rule {
            // The budget as configured, to the nanosecond: three decimals showed 0.0005 ms
            // as 0.000.
            Rule::P99Budget => {
                let [observed, limit] = apart(
                    (self.observed, Digits::Fixed(3)),
                    (self.limit, Digits::Fixed(millis_decimals(self.limit))),
                    false,
                );
                (format!("{observed}ms"), format!("{limit}ms"))
            }
            Rule::HealthScore | Rule::LatencyShift => {
                let [observed, limit] = pair(4, false);
                (observed.to_string(), limit.to_string())
            }
            // In milliseconds, as `no_data_ms`, exactly: whole seconds showed 1500 ms as 2s.
            Rule::NoData => (
                "no outcome".to_owned(),
                format!("{}ms", seconds_shown_in_ms(self.limit)),
            ),
            _ => {
                let [observed, limit] = pair(3, true);
                (format!("{observed}%"), format!("{limit}%"))
            }
        };
        write!(
            f,
            "{} {verdict}: observed {observed} vs limit {limit} by {} ({})",
            self.rule.name(),
            self.acting,
            self.test_result()
        )
    }
}

impl Finding {
    /// What the test gave, in words: a p-value, or for a rule on a confidence bound, whether
    /// the bound is beyond the limit and at which level (its reported `p_value` is then that
    /// level, `significance`, not a p-value).
    fn test_result(&self) -> String {
        let p = self.p_value;
        match self.rule {
            Rule::ErrorsOverStage | Rule::LatencyShift | Rule::HealthScore if p >= 1.0 => {
                "bound within the limit".to_owned()
            }
            // Fired only at p = significance: the exact tail, when asked, was not larger.
            Rule::ErrorsOverStage | Rule::LatencyShift if self.fired => {
                format!("bound beyond the limit at α = {p:e}")
            }
            Rule::ErrorsOverStage => {
                format!("bound beyond the limit, but the exact binomial tail p={p:.2e}")
            }
            Rule::HealthScore => {
                format!("bound beyond the limit: four bounds at α = {p:e} each")
            }
            // Silent with no stable traffic to count the outcomes due: no chance to give (the
            // cap, p=9.86e-305, was shown).
            Rule::NoData if p == 0.0 => "no stable traffic to count the outcomes due".to_owned(),
            _ => format!("p={p:.2e}"),
        }
    }
}

/// One cohort's numbers in the judged window.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
/// let health = gate.monitor_canary_health();
/// assert_eq!(health.evidence.canary.requests, 0);
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct CohortEvidence {
    /// Requests in the window.
    pub requests: u64,
    /// Failed requests in the window.
    pub errors: u64,
    /// Requests that succeeded within the SLO latency target.
    pub compliant: u64,
    /// `errors / requests` (0 with no requests).
    pub error_rate: f64,
    /// `compliant / requests` (1 with no requests).
    pub compliance: f64,
    /// The compliance the judge holds against `slo_threshold`: the share of requests that
    /// neither failed nor, after the stage's warm-up, succeeded slower than the latency target
    /// (1 with no requests). A slow success in the warm-up counts as compliant here, as
    /// `slo_compliance` counts it: the latency rules skip the warm-up, so a canary slow only
    /// while its caches fill is not held back while the window still holds them. At least
    /// `compliance`; equal to it when the window holds no slow success of the warm-up.
    pub judged_compliance: f64,
    /// 99th percentile latency (zero with no requests or when only counters were read).
    pub p99: Duration,
    /// Requests in the window after the stage's warm-up (`warm_up_ms`): those whose latencies
    /// the latency rules judge. A canary needs `min_samples` of them, as of `requests`, to be
    /// promotable without the stage-long evidence: otherwise a warm-up could hide its latency
    /// from every rule until it was promoted.
    pub latency_requests: u64,
}

impl CohortEvidence {
    /// The samples every rule has of this cohort: the fewer of its requests and of its
    /// latencies after the stage's warm-up.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::CohortEvidence;
    /// let mut cohort = CohortEvidence::default();
    /// (cohort.requests, cohort.latency_requests) = (2_400, 1_800);
    /// assert_eq!(cohort.judged(), 1_800);
    /// ```
    pub fn judged(&self) -> u64 {
        self.requests.min(self.latency_requests)
    }
}

/// Everything a verdict rests on: the numbers and each rule's finding.
///
/// Its `Display` is one line, written into automatic rollback events.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
/// let evidence = gate.monitor_canary_health().evidence;
/// assert!(evidence.to_string().contains("canary 0 req"));
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Evidence {
    /// The stage judged.
    pub stage: StageId,
    /// The environment of that stage.
    pub environment: Environment,
    /// The new version's numbers.
    pub canary: CohortEvidence,
    /// The stable version's numbers.
    pub stable: CohortEvidence,
    /// Samples the canary needs before ordinary rules may fire.
    pub min_samples: u64,
    /// The least compliance a promotion needs (the release's `slo_threshold`): below it, in
    /// the window ([`CohortEvidence::judged_compliance`]), the version under judgement is
    /// never HEALTHY nor promotable.
    pub slo_threshold: f64,
    /// Every rule evaluated, fired or not.
    pub findings: Vec<Finding>,
    /// The health score (point estimate) of this window.
    pub health_score: f64,
    /// The positive evidence a promotion needs (see [`NonInferiority`]).
    pub non_inferiority: NonInferiority,
    /// How many gate instances the numbers are of: 1 for a gate judging its own process's
    /// traffic; on a shared state store, this process and every other instance whose counts of
    /// the stage are in them, those that stopped publishing included (shown in the text when
    /// more than 1).
    pub instances: u32,
}

/// Whether the data show the canary not worse than the stable version beyond the tolerated
/// limits, over the whole stage: confidence bounds at `promotion_significance` that hold at
/// every look. A promotion from a canary stage with stable traffic needs both.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
/// let shown = gate.monitor_canary_health().evidence.non_inferiority;
/// assert!(!shown.errors && !shown.latency); // nothing recorded, nothing shown
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct NonInferiority {
    /// Whether promotions need it (`promotion_evidence`).
    pub required: bool,
    /// Whether the stage is compared: a canary stage beside stable outcomes (until both
    /// cohorts have `min_samples` of them, nothing is shown yet).
    pub compared: bool,
    /// The canary's error rate is shown below `error_rate_ratio_limit` × the stable one's, or
    /// below the stable one's + `error_rate_tolerance`.
    pub errors: bool,
    /// The canary's latencies after warm-up are shown no slower than `latency_shift_limit` ×
    /// (or `latency_tolerance_ms` +) the stable version's, and its share of requests slower
    /// than the stable p99 is not significantly above `p99_ratio_limit` × the stable share.
    pub latency: bool,
}

impl NonInferiority {
    /// Whether a promotion may rely on it: not required, nothing to compare with (Staging,
    /// Production, a canary whose stable outcomes are not reported), or both shown.
    ///
    /// # Example
    /// ```
    /// use promotion_gates::NonInferiority;
    /// assert!(NonInferiority::default().sufficient());
    /// let mut half = NonInferiority::default();
    /// (half.required, half.compared, half.errors) = (true, true, true);
    /// assert!(!half.sufficient());
    /// half.required = false;
    /// assert!(half.sufficient());
    /// ```
    pub fn sufficient(&self) -> bool {
        !self.required || !self.compared || self.shown()
    }

    /// Whether the stage shows both: the canary not worse on errors nor on latency.
    ///
    /// # Example
    /// ```
    /// use promotion_gates::NonInferiority;
    /// let mut both = NonInferiority::default();
    /// (both.required, both.compared, both.errors, both.latency) = (true, true, true, true);
    /// assert!(both.shown());
    /// assert!(!NonInferiority::default().shown());
    /// ```
    pub fn shown(&self) -> bool {
        self.compared && self.errors && self.latency
    }
}

impl Evidence {
    /// The findings that fired.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert_eq!(gate.monitor_canary_health().evidence.fired().count(), 0);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn fired(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.fired)
    }

    /// The findings that hold the promotion without rolling back ([`Finding::holds`]).
    pub(crate) fn held(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.holds)
    }

    /// Whether a finding of `rule` holds the promotion (the judge and the compliance check
    /// ask it of `no_data`, whose hold comes before any other finding's).
    pub(crate) fn holds(&self, rule: Rule) -> bool {
        self.held().any(|f| f.rule == rule)
    }

    /// Whether the canary has at least `min_samples` samples in the window, of its outcomes and
    /// of its latencies after the stage's warm-up, or the stage as a whole shows it not worse
    /// than the stable version (a low-traffic canary whose window never holds `min_samples`).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert!(!gate.monitor_canary_health().evidence.sufficient_data());
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn sufficient_data(&self) -> bool {
        self.enough_samples(self.canary.judged())
    }

    /// Whether `samples` of the version under judgement are enough to judge it on: at least
    /// `min_samples`, or the stage as a whole shows the canary not worse than the stable
    /// version. The one rule behind [`sufficient_data`](Self::sufficient_data) (the canary's
    /// samples) and [`too_few_samples`](Self::too_few_samples) (the subject's).
    fn enough_samples(&self, samples: u64) -> bool {
        samples >= self.min_samples || self.non_inferiority.shown()
    }

    /// The samples of the version under judgement in the window, as the judge and the
    /// compliance check count them: the canary's [`CohortEvidence::judged`] (its latencies
    /// after the stage's warm-up too), or in Production the stable version's requests (no
    /// rule reads its latencies there).
    pub(crate) fn subject_samples(&self) -> u64 {
        if self.environment == Environment::Production {
            self.stable.requests
        } else {
            self.canary.judged()
        }
    }

    /// Whether the version under judgement has too few samples to be HEALTHY or promotable:
    /// fewer than `min_samples` ([`Evidence::subject_samples`]) and, for a canary, the stage
    /// not showing it not worse than the stable version ([`Evidence::sufficient_data`] outside
    /// Production).
    pub(crate) fn too_few_samples(&self) -> bool {
        !self.enough_samples(self.subject_samples())
    }

    /// The numbers of the version under judgement: the new version's, or in Production
    /// (where there is none) the stable version's.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// let evidence = gate.monitor_canary_health().evidence;
    /// assert_eq!(evidence.subject().requests, 0);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn subject(&self) -> &CohortEvidence {
        if self.environment == Environment::Production {
            &self.stable
        } else {
            &self.canary
        }
    }

    /// Whether the version under judgement's compliance in the window (its point estimate,
    /// [`CohortEvidence::judged_compliance`]: latency misses counted after the stage's warm-up,
    /// as `slo_compliance` counts them) is below `slo_threshold`: a promotion is refused, and
    /// the judge says MONITOR at best.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// // No request yet: a compliance of 1.
    /// assert!(!gate.monitor_canary_health().evidence.below_slo_threshold());
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn below_slo_threshold(&self) -> bool {
        self.subject().judged_compliance < self.slo_threshold
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cohort = |f: &mut fmt::Formatter<'_>, name: &str, c: &CohortEvidence| {
            write!(
                f,
                "{name} {} req, {:.3}% errors, compliance {:.3}%, p99 {:.3}ms",
                c.requests,
                c.error_rate * 100.0,
                c.compliance * 100.0,
                c.p99.as_secs_f64() * 1e3
            )
        };
        write!(f, "stage {} {}: ", self.stage.get(), self.environment)?;
        if self.instances > 1 {
            write!(f, "{} instances, ", self.instances)?;
        }
        cohort(f, "canary", &self.canary)?;
        f.write_str("; ")?;
        cohort(f, "stable", &self.stable)?;
        let mut acted = self
            .findings
            .iter()
            .filter(|x| x.fired || x.holds)
            .peekable();
        if acted.peek().is_none() {
            write!(f, "; no rule fired (min_samples {})", self.min_samples)?;
        }
        for finding in acted {
            write!(f, "; {finding}")?;
        }
        if self.below_slo_threshold() {
            let subject = self.subject();
            let [compliance, threshold] = apart(
                (subject.judged_compliance, Digits::Fixed(3)),
                (self.slo_threshold, Digits::Fixed(3)),
                true,
            );
            // Shown beside the window's compliance, which differs by the warm-up's slow
            // successes: say which is compared.
            let span = if subject.judged_compliance == subject.compliance {
                ""
            } else {
                " (latency misses after warm-up)"
            };
            write!(
                f,
                "; compliance{span} {compliance}% < slo_threshold {threshold}%"
            )?;
        }
        let shown = self.non_inferiority;
        if shown.compared {
            let yes = |b: bool| if b { "shown" } else { "not shown" };
            write!(
                f,
                "; not worse than stable: errors {}, latency {}",
                yes(shown.errors),
                yes(shown.latency)
            )?;
        }
        Ok(())
    }
}

/// The canary's health in the current window (the specification's fields, plus evidence).
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
/// let health = gate.monitor_canary_health();
/// println!("Canary error rate: {}", health.canary_error_rate);
/// println!("Health score: {}", health.health_score);
/// println!("Recommendation: {}", health.recommendation);
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CanaryHealth {
    /// The canary's traffic share (100 in Staging, 0 in Production).
    pub traffic_percent: f64,
    /// Requests to the new version in the window.
    pub canary_requests: u64,
    /// Requests to the stable version in the window.
    pub production_requests: u64,
    /// The new version's error rate.
    pub canary_error_rate: f64,
    /// The stable version's error rate.
    pub production_error_rate: f64,
    /// The new version's p99 latency.
    pub canary_p99_latency: Duration,
    /// The stable version's p99 latency.
    pub production_p99_latency: Duration,
    /// 1.0 minus the error and latency penalties, in `0.0..=1.0`.
    pub health_score: f64,
    /// HEALTHY, MONITOR, ROLLBACK or NO_DATA.
    pub recommendation: Recommendation,
    /// Numbers and findings behind the recommendation.
    pub evidence: Evidence,
}
