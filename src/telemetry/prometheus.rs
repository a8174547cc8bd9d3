//! The Prometheus text exposition format (version 0.0.4) of one or more gates, for hosts that
//! serve `/metrics` (and, through the C ABI, for hosts that are not written in Rust).
//!
//! Every series carries a `gate` label (the config's `gate`); names and units follow the
//! Prometheus conventions (seconds, ratios in `0..=1`, `_total` counters). A gate's window
//! series, its histogram included, come from one read of the window
//! ([`window_export`](crate::PromotionGateManager::window_export)), so they agree with each
//! other. The metrics, their labels and their OpenTelemetry names are in one table in the
//! [`telemetry`](crate::telemetry) module's docs (`docs/telemetry.md`).
//!
//! A host of several processes, each with its own gate, that counts the four outcome
//! counters once for all of them (in memory they share) gives its counts with
//! [`write_exposition_counted`]: every process then exposes the same counters.

use std::fmt::{self, Write};

use crate::config::Environment;
use crate::decision::{Cohort, PerCohort};
use crate::judge::{CohortEvidence, Rule};
use crate::manager::PromotionGateManager;
use crate::telemetry::window::{LatencyBuckets, RECOMMENDATIONS, recommendation_name};
use crate::telemetry::{ENVIRONMENTS, RollbackCount, WindowExport, rollback_series};

/// Why [`write_exposition`] wrote nothing, or stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExpositionError {
    /// `gates[second]` carries the name `gates[first]` does: their series would repeat.
    #[error("gates[{second}] is named {name:?}, as gates[{first}] is: their series would repeat")]
    SameName {
        /// The name both carry.
        name: String,
        /// The earlier position.
        first: usize,
        /// The later position.
        second: usize,
    },
    /// The output refused a write.
    #[error("the exposition could not be written: {0}")]
    Write(#[from] fmt::Error),
}

/// Refuses two readings of one gate name, naming the first pair found.
fn check_names(readings: &[Reading]) -> Result<(), ExpositionError> {
    let mut first = std::collections::HashMap::with_capacity(readings.len());
    for (second, reading) in readings.iter().enumerate() {
        if let Some(&first) = first.get(reading.name.as_str()) {
            return Err(ExpositionError::SameName {
                name: reading.name.clone(),
                first,
                second,
            });
        }
        first.insert(reading.name.as_str(), second);
    }
    Ok(())
}

pub use super::window::LATENCY_BUCKETS_SECONDS;

/// The four outcome counters of a gate's exposition: `promotion_late_outcomes_total`,
/// `promotion_foreign_outcomes_total`, `promotion_forced_outcomes_total` and
/// `promotion_ignored_override_values_total`.
///
/// [`OutcomeCounts::of`] reads a gate's own, counted by the process that holds it. A host of
/// several processes whose gates pool each other's outcomes (the nginx module's workers)
/// counts each outcome once, where it was first recorded, and each ignored value where it was
/// routed, in memory the processes share, and passes those counts to
/// [`write_exposition_counted`] in place of the gate's own: then every process exposes the
/// same counters, and they never go down when a scrape reaches another process.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// use promotion_gates::telemetry::prometheus::OutcomeCounts;
/// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
/// let stage = gate.route_request("u").stage;
/// assert_eq!(gate.record_forced(stage), Recorded::Forced);
/// assert_eq!(
///     OutcomeCounts::of(&gate),
///     OutcomeCounts { forced_outcomes: 1, ..OutcomeCounts::default() }
/// );
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    /// Outcomes dropped because their stage had ended ([`Recorded::Late`](crate::Recorded::Late)).
    pub late_outcomes: u64,
    /// Outcomes dropped because their decision names a stage the gate never published
    /// ([`Recorded::Foreign`](crate::Recorded::Foreign)).
    pub foreign_outcomes: u64,
    /// Outcomes of requests an override forced ([`Recorded::Forced`](crate::Recorded::Forced)).
    pub forced_outcomes: u64,
    /// Forcing values routing ignored
    /// ([`ignored_override_values`](PromotionGateManager::ignored_override_values)).
    pub ignored_override_values: u64,
}

impl OutcomeCounts {
    /// The gate's own counts: [`late_outcomes`](PromotionGateManager::late_outcomes),
    /// [`foreign_outcomes`](PromotionGateManager::foreign_outcomes),
    /// [`forced_outcomes`](PromotionGateManager::forced_outcomes) and
    /// [`ignored_override_values`](PromotionGateManager::ignored_override_values).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// use promotion_gates::telemetry::prometheus::OutcomeCounts;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert_eq!(OutcomeCounts::of(&gate), OutcomeCounts::default());
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn of(gate: &PromotionGateManager) -> Self {
        Self {
            late_outcomes: gate.late_outcomes(),
            foreign_outcomes: gate.foreign_outcomes(),
            forced_outcomes: gate.forced_outcomes(),
            ignored_override_values: gate.ignored_override_values(),
        }
    }
}

/// The exposition of `gate`, as [`write_exposition`] writes it.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// let gate = PromotionGateManager::new(
///     PromotionConfig { environment: Environment::Canary { traffic_percent: 5.0 }, gate: "checkout".into(), ..Default::default() },
///     SloAdmissionController::new(SloConfig::default())?,
/// )?;
/// let text = promotion_gates::telemetry::prometheus::exposition(&gate);
/// assert!(text.contains("# TYPE promotion_health_score gauge\n"));
/// assert!(text.contains("promotion_canary_traffic_ratio{gate=\"checkout\"} 0.05\n"));
/// # Ok::<(), promotion_gates::Error>(())
/// ```
pub fn exposition(gate: &PromotionGateManager) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = write_exposition(&[gate], &mut text);
    text
}

/// Writes the metrics of `gates` in the Prometheus text format 0.0.4: each metric family once,
/// with its `# HELP` and `# TYPE` lines, one series per gate; nothing for no gate. Reads each
/// gate as [`health`](PromotionGateManager::health) does ([`window_export`](PromotionGateManager::window_export):
/// its health, latency histograms and release state from one read; its counters), never its
/// judging calls.
///
/// # Errors
/// [`ExpositionError::SameName`] when two of `gates` carry one `gate` name (or one gate is
/// given twice): their series would repeat, which Prometheus refuses; nothing is written.
/// [`ExpositionError::Write`] when `out` refuses a write (a `String` never does).
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// let slo = || SloAdmissionController::new(SloConfig::default());
/// let web = PromotionGateManager::new(PromotionConfig { gate: "web".into(), ..Default::default() }, slo()?)?;
/// let api = PromotionGateManager::new(PromotionConfig { gate: "api".into(), ..Default::default() }, slo()?)?;
/// let mut text = String::new();
/// promotion_gates::telemetry::prometheus::write_exposition(&[&web, &api], &mut text)?;
/// assert_eq!(text.matches("# TYPE promotion_health_score gauge").count(), 1);
/// assert!(text.contains("promotion_health_score{gate=\"api\"}"));
///
/// let again = promotion_gates::telemetry::prometheus::write_exposition(&[&web, &api, &web], &mut String::new());
/// assert_eq!(again.unwrap_err().to_string(), r#"gates[2] is named "web", as gates[0] is: their series would repeat"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_exposition(
    gates: &[&PromotionGateManager],
    out: &mut impl Write,
) -> Result<(), ExpositionError> {
    let readings: Vec<Reading> = gates
        .iter()
        .map(|gate| Reading::of(gate, OutcomeCounts::of(gate)))
        .collect();
    write_readings(&readings, out)
}

/// [`write_exposition`] with the host's [`OutcomeCounts`] for each gate in place of the
/// gate's own: every other series is the gate's, read as `write_exposition` reads it.
///
/// # Errors
/// As [`write_exposition`].
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// use promotion_gates::telemetry::prometheus::{write_exposition_counted, OutcomeCounts};
/// let gate = PromotionGateManager::new(
///     PromotionConfig { gate: "web".into(), ..Default::default() },
///     SloAdmissionController::new(SloConfig::default())?,
/// )?;
/// // counted by the host for all its processes, in memory they share
/// let counts = OutcomeCounts { forced_outcomes: 7, ..OutcomeCounts::default() };
/// let mut text = String::new();
/// write_exposition_counted(&[(&gate, counts)], &mut text)?;
/// assert!(text.contains("promotion_forced_outcomes_total{gate=\"web\"} 7\n"));
/// assert!(text.contains("promotion_late_outcomes_total{gate=\"web\"} 0\n"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_exposition_counted(
    gates: &[(&PromotionGateManager, OutcomeCounts)],
    out: &mut impl Write,
) -> Result<(), ExpositionError> {
    let readings: Vec<Reading> = gates
        .iter()
        .map(|&(gate, counts)| Reading::of(gate, counts))
        .collect();
    write_readings(&readings, out)
}

/// The exposition of `readings`, one per gate; nothing for none.
fn write_readings(readings: &[Reading], out: &mut impl Write) -> Result<(), ExpositionError> {
    if readings.is_empty() {
        return Ok(());
    }
    check_names(readings)?;
    let mut e = Exposition { out, readings };
    e.state_set(
        "promotion_environment",
        "The gate's environment: 1 for the current one.",
        "environment",
        &ENVIRONMENTS.map(|env| env.name()),
        |r| r.environment.name(),
    )?;
    e.gauge("promotion_stage", "The release stage's number.", |r| {
        r.stage
    })?;
    e.gauge(
        "promotion_canary_traffic_ratio",
        "Share of requests routed to the new version.",
        |r| r.environment.traffic_percent() / 100.0,
    )?;
    e.gauge(
        "promotion_health_score",
        "The canary's health score in the judged window, 0 to 1.",
        |r| r.window.health.health_score,
    )?;
    e.state_set(
        "promotion_recommendation",
        "The judge's recommendation on the window: 1 for the current one.",
        "recommendation",
        &RECOMMENDATIONS,
        |r| recommendation_name(r.window.health.recommendation),
    )?;
    e.gauge(
        "promotion_canary_error_rate",
        "The new version's error rate in the judged window.",
        |r| r.window.health.canary_error_rate,
    )?;
    e.gauge(
        "promotion_stable_error_rate",
        "The stable version's error rate in the judged window.",
        |r| r.window.health.production_error_rate,
    )?;
    e.per_cohort(
        "promotion_window_requests",
        "Requests in the judged window.",
        |r, c| r.cohort(c).requests,
    )?;
    e.per_cohort(
        "promotion_window_errors",
        "Failed requests in the judged window.",
        |r, c| r.cohort(c).errors,
    )?;
    e.per_cohort(
        "promotion_slo_compliance_ratio",
        "Share of the window's requests that succeeded within the SLO latency target.",
        |r, c| r.cohort(c).compliance,
    )?;
    e.gauge(
        "promotion_slo_threshold_ratio",
        "The SLO compliance the gate asks for (slo_threshold).",
        |r| r.slo_threshold,
    )?;
    e.per_cohort(
        "promotion_p99_latency_seconds",
        "The judge's p99 latency in the window.",
        |r, c| r.cohort(c).p99.as_secs_f64(),
    )?;
    e.rules()?;
    e.latency_histograms()?;
    e.rollbacks()?;
    e.counter(
        "promotion_late_outcomes_total",
        "Outcomes dropped because their stage had ended.",
        |r| r.counts.late_outcomes,
    )?;
    e.counter(
        "promotion_foreign_outcomes_total",
        "Outcomes dropped because their decision names a stage the gate never published.",
        |r| r.counts.foreign_outcomes,
    )?;
    e.counter(
        "promotion_forced_outcomes_total",
        "Outcomes of requests an override forced, counted in neither cohort.",
        |r| r.counts.forced_outcomes,
    )?;
    e.counter(
        "promotion_ignored_override_values_total",
        "Forcing values routing ignored.",
        |r| r.counts.ignored_override_values,
    )?;
    Ok(())
}

/// What one gate exports, read once per exposition.
struct Reading {
    /// The gate's name, as its config gives it.
    name: String,
    /// The `gate="..."` label pair, escaped.
    gate_label: String,
    environment: Environment,
    stage: u64,
    slo_threshold: f64,
    window: WindowExport,
    /// The window's latency histograms in the exported buckets, read once for three families.
    latency: PerCohort<Option<LatencyBuckets>>,
    rollbacks: Vec<RollbackCount>,
    counts: OutcomeCounts,
}

impl Reading {
    /// The environment, stage and threshold are the window's (one snapshot: a scrape never
    /// pairs one state's environment with another's stage), and the config is not copied.
    /// The outcome counters are `counts`: the gate's own or the host's.
    fn of(gate: &PromotionGateManager, counts: OutcomeCounts) -> Self {
        let name = gate.gate_name();
        let window = gate.window_export();
        Self {
            gate_label: format!("gate=\"{}\"", escape_label(&name)),
            name,
            environment: window.environment,
            stage: window.stage.get(),
            slo_threshold: window.slo_threshold,
            latency: PerCohort::from_fn(|cohort| window.latency_buckets(cohort)),
            window,
            rollbacks: gate.rollback_counts(),
            counts,
        }
    }

    fn cohort(&self, cohort: Cohort) -> &CohortEvidence {
        self.window.evidence(cohort)
    }

    /// `{gate="...",k="v",...}` with `pairs`' values escaped.
    fn labels(&self, pairs: &[(&str, &str)]) -> String {
        let mut labels = format!("{{{}", self.gate_label);
        for (key, value) in pairs {
            let _ = write!(labels, ",{key}=\"{}\"", escape_label(value));
        }
        labels.push('}');
        labels
    }
}

/// The writer of one exposition over the readings of its gates.
struct Exposition<'a, W> {
    out: &'a mut W,
    readings: &'a [Reading],
}

impl<W: Write> Exposition<'_, W> {
    fn sample(&mut self, name: &str, labels: &str, value: impl Into<Number>) -> fmt::Result {
        writeln!(self.out, "{name}{labels} {}", value.into())
    }

    /// A metric family: its HELP and TYPE lines, then `each` reading's samples.
    fn family(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        mut each: impl FnMut(&mut Self, &Reading) -> fmt::Result,
    ) -> fmt::Result {
        writeln!(self.out, "# HELP {name} {}", escape_help(help))?;
        writeln!(self.out, "# TYPE {name} {kind}")?;
        let readings = self.readings;
        readings.iter().try_for_each(|r| each(self, r))
    }

    fn gauge<N: Into<Number>>(
        &mut self,
        name: &str,
        help: &str,
        value: impl Fn(&Reading) -> N,
    ) -> fmt::Result {
        self.family(name, "gauge", help, |e, r| {
            e.sample(name, &r.labels(&[]), value(r))
        })
    }

    fn counter(&mut self, name: &str, help: &str, value: impl Fn(&Reading) -> u64) -> fmt::Result {
        self.family(name, "counter", help, |e, r| {
            e.sample(name, &r.labels(&[]), value(r))
        })
    }

    fn per_cohort<N: Into<Number>>(
        &mut self,
        name: &str,
        help: &str,
        value: impl Fn(&Reading, Cohort) -> N,
    ) -> fmt::Result {
        self.family(name, "gauge", help, |e, r| {
            Cohort::ALL.into_iter().try_for_each(|cohort| {
                e.sample(
                    name,
                    &r.labels(&[("cohort", cohort.name())]),
                    value(r, cohort),
                )
            })
        })
    }

    /// One series per state, 1 for the reading's current one and 0 for the others.
    fn state_set(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        states: &[&str],
        current: impl Fn(&Reading) -> &'static str,
    ) -> fmt::Result {
        self.family(name, "gauge", help, |e, r| {
            states.iter().try_for_each(|state| {
                let on = u64::from(*state == current(r));
                e.sample(name, &r.labels(&[(label, state)]), on)
            })
        })
    }

    /// `promotion_rule_fired` and `promotion_rule_judged`: one series per rule of
    /// [`Rule::ALL`] each, whether the rule was judged on the window or not, so that the set
    /// of series never changes with the traffic.
    fn rules(&mut self) -> fmt::Result {
        let fired = "promotion_rule_fired";
        let help = "Whether the judge rule fires on the judged window (1) or not (0, also when it is not judged).";
        self.family(fired, "gauge", help, |e, r| {
            Rule::ALL.iter().copied().try_for_each(|rule| {
                let on = r.window.finding(rule).is_some_and(|f| f.fired);
                e.sample(fired, &r.labels(&[("rule", rule.name())]), u64::from(on))
            })
        })?;
        let judged = "promotion_rule_judged";
        let help = "Whether the judge rule was judged on the judged window (1) or skipped (0: not enough samples, no stable traffic, not due).";
        self.family(judged, "gauge", help, |e, r| {
            Rule::ALL.iter().copied().try_for_each(|rule| {
                let on = r.window.finding(rule).is_some();
                e.sample(judged, &r.labels(&[("rule", rule.name())]), u64::from(on))
            })
        })
    }

    /// The window's latency histogram of each cohort, under a histogram's series names
    /// (`promotion_window_latency_seconds_bucket{le}`, `_sum`, `_count`) but each its own
    /// `untyped` family: the series fall as requests leave the window or a stage starts, and a
    /// `histogram`'s series are counters to Prometheus (a fall is a reset to `rate()`). The
    /// text format 0.0.4 has no gauge histogram, and `promtool check metrics` refuses a gauge
    /// named `_bucket`, `_sum` or `_count` or labelled `le`; untyped series may be, so
    /// `histogram_quantile` reads the buckets as they are.
    fn latency_histograms(&mut self) -> fmt::Result {
        const FALLS: &str = "untyped: a gauge histogram, it falls as requests leave the window";
        self.per_histogram(
            "promotion_window_latency_seconds_bucket",
            &format!(
                "Requests of the judged window whose latency is at or below le seconds ({FALLS})."
            ),
            |e, name, r, cohort, histogram| {
                histogram.buckets().try_for_each(|(le, count)| {
                    let labels = r.labels(&[("cohort", cohort.name()), ("le", &le)]);
                    e.sample(name, &labels, count)
                })
            },
        )?;
        self.histogram_total(
            "promotion_window_latency_seconds_sum",
            &format!("The judged window's latencies, summed, each at its HDR bucket's midpoint ({FALLS})."),
            |histogram| histogram.sum_seconds,
        )?;
        self.histogram_total(
            "promotion_window_latency_seconds_count",
            &format!("Requests of the judged window with a latency, the +Inf bucket ({FALLS})."),
            |histogram| histogram.count,
        )
    }

    /// An untyped family `name` of one `value` per reading's cohort that has a histogram.
    fn histogram_total<N: Into<Number>>(
        &mut self,
        name: &str,
        help: &str,
        value: impl Fn(&LatencyBuckets) -> N,
    ) -> fmt::Result {
        self.per_histogram(name, help, |e, name, r, cohort, histogram| {
            e.sample(
                name,
                &r.labels(&[("cohort", cohort.name())]),
                value(histogram),
            )
        })
    }

    /// An untyped family `name` of `write`'s samples for each reading's cohort that has a
    /// latency histogram.
    fn per_histogram(
        &mut self,
        name: &str,
        help: &str,
        mut write: impl FnMut(&mut Self, &str, &Reading, Cohort, &LatencyBuckets) -> fmt::Result,
    ) -> fmt::Result {
        self.family(name, "untyped", help, |e, r| {
            Cohort::ALL.into_iter().try_for_each(|cohort| {
                r.latency[cohort]
                    .as_ref()
                    .map_or(Ok(()), |histogram| write(e, name, r, cohort, histogram))
            })
        })
    }

    /// Every rollback cause the gate can count has a series from the start (at 0), so that
    /// `increase()` sees the first rollback ([`rollback_series`]).
    fn rollbacks(&mut self) -> fmt::Result {
        let name = "promotion_rollbacks_total";
        let help = "Rollback events since the gate was built (on a state store: every one stored for the gate), by trigger and, for automatic ones, the first rule that fired.";
        self.family(name, "counter", help, |e, r| {
            rollback_series(&r.rollbacks).try_for_each(|series| {
                let rule = series.rule.map_or("none", |rule| rule.name());
                let labels = r.labels(&[("trigger", series.trigger.name()), ("rule", rule)]);
                e.sample(name, &labels, series.count)
            })
        })
    }
}

/// A sample value as Prometheus reads it: a count (a counter, a request or bucket count, a
/// stage number, a state's 0 or 1) as the integer it is, every `u64` exactly (as an `f64`,
/// whose integers are exact up to 2^53 only, `u64::MAX` was written 18446744073709552000), or
/// a [`Value`].
enum Number {
    Count(u64),
    Float(f64),
}

impl From<u64> for Number {
    fn from(count: u64) -> Self {
        Number::Count(count)
    }
}

impl From<f64> for Number {
    fn from(value: f64) -> Self {
        Number::Float(value)
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Number::Count(count) => write!(f, "{count}"),
            Number::Float(value) => Value(value).fmt(f),
        }
    }
}

/// A float sample value as Prometheus reads it (`+Inf`, `-Inf`, `NaN`, or a decimal).
struct Value(f64);

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            v if v.is_nan() => f.write_str("NaN"),
            v if v == f64::INFINITY => f.write_str("+Inf"),
            v if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            // `-0` (an empty sum) is written `0`.
            0.0 => f.write_str("0"),
            v => write!(f, "{v}"),
        }
    }
}

/// A label value with `\`, `"` and line feeds escaped, as the text format asks.
fn escape_label(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A help text with `\` and line feeds escaped.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
