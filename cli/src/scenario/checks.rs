//! The checks a scenario file must pass before it runs: each field on its own, the moves
//! between stages, and the size of the whole run; each error names the field and the value.

use std::fmt;

use promotion_gates::{
    Environment, Overrides, StoreConfig, plan_promotion, shown_millis, shown_number,
};

use crate::error::shown_escaped;
use crate::traffic::{DEFAULT_P99_OVER_MEDIAN, Z99, p99_ms};

use super::{
    LATENCY_MS, MAX_DESCRIPTION_BYTES, MAX_EXTENSIONS, MAX_LATENCY_FACTOR, MAX_NAME_BYTES, MAX_RPS,
    MAX_RUN_EVALUATIONS, MAX_RUN_REQUESTS, MAX_RUN_S, MAX_SIGMA, MAX_STAGES, MIN_EXTENSION_S,
    Scenario, ServiceModel, StageKind, StageSpec,
};

impl Scenario {
    /// Checks every field the engine does not check itself, then the size of the run (see
    /// [`Scenario::validate_run_size`]); the first bad one is reported.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.validate_fields()?;
        self.validate_run_size()
    }

    /// Checks each field on its own (the engine's config and policy included).
    pub fn validate_fields(&self) -> Result<(), FieldError> {
        if self.name.is_empty() {
            return Err(FieldError::new(
                "name",
                "\"\"",
                format!(
                    "a name for the report, 1 to {MAX_NAME_BYTES} bytes (left out, it is \"{}\")",
                    Scenario::default().name
                ),
            ));
        }
        report_text("name", &self.name, MAX_NAME_BYTES)?;
        report_text("description", &self.description, MAX_DESCRIPTION_BYTES)?;
        positive("rps", self.rps)?;
        at_most("rps", self.rps, MAX_RPS, "requests a simulated second")?;
        if self.sample == 0 {
            return Err(FieldError::new("sample", 0, "1 (every request) or more"));
        }
        if self.users == 0 {
            return Err(FieldError::new("users", 0, "at least 1 user"));
        }
        if self.stages.is_empty() {
            return Err(FieldError::new("stages", "[]", "at least one stage"));
        }
        if self.stages.len() > MAX_STAGES {
            return Err(FieldError::new(
                "stages",
                format!("{} stages", self.stages.len()),
                format!("at most {MAX_STAGES} stages"),
            ));
        }
        for (i, stage) in self.stages.iter().enumerate() {
            stage.validate(i, self.stages.len())?;
            if i > 0 && stage.environment() == self.stages[i - 1].environment() {
                return Err(FieldError::new(
                    format!("stages[{i}].traffic_percent"),
                    stage.percent(),
                    "a share other than the previous stage's (a stage must move the gate)",
                ));
            }
        }
        self.validate_moves()?;
        extension_length(self.extension_s)?;
        if self.max_extensions > MAX_EXTENSIONS {
            return Err(FieldError::new(
                "max_extensions",
                self.max_extensions,
                format!("at most {MAX_EXTENSIONS} extensions of a stage"),
            ));
        }
        self.stable.validate("stable", self.stages.len())?;
        self.canary.validate("canary", self.stages.len())?;
        self.validate_incident_starts()?;
        if self.promotion.environment != promotion_gates::Environment::Production {
            return Err(FieldError::new(
                "promotion.environment",
                self.promotion.environment,
                "production: every simulated rollout starts from production",
            ));
        }
        if let Some(store) = &self.promotion.store {
            return Err(no_store(store));
        }
        // Id lists only: a header or a cookie never matches (the simulated requests carry
        // none), so a production config's overrides run unchanged.
        if let Some(overrides) = &self.promotion.overrides
            && (!overrides.canary_ids.is_empty() || !overrides.stable_ids.is_empty())
        {
            return Err(no_overrides(overrides));
        }
        self.promotion
            .validate()
            .map_err(|e| FieldError::wrap("promotion", &e))?;
        // The policy for the gate's window too: an evaluation_interval longer than a tenth of
        // rollback_window_seconds is refused (the window's start is an evaluation's reading).
        self.slo
            .validate_for(&self.promotion)
            .map_err(|e| FieldError::wrap("slo", &e))?;
        Ok(())
    }

    /// Checks that each incident can start in its stage: `after_s` at most the longest the
    /// stage lasts ([`Scenario::longest_stage_seconds`]), and in the last stage below it (there
    /// the stage's end is the run's: an incident from then on meets no request). A later start
    /// was accepted and, past the whole run, never came. `--duration` scales the start and the
    /// stage alike.
    fn validate_incident_starts(&self) -> Result<(), FieldError> {
        for (name, model) in [("stable", &self.stable), ("canary", &self.canary)] {
            let Some(incident) = &model.incident else {
                continue;
            };
            // A stage number out of the ramp is refused on its own field.
            let Some(stage) = incident
                .stage
                .checked_sub(1)
                .and_then(|i| self.stages.get(i))
            else {
                continue;
            };
            let longest = self.longest_stage_seconds(stage);
            let how_long = format!(
                "(its duration_s plus max_extensions × extension_s: {} + {} × {} s)",
                shown_number(stage.duration_s),
                self.max_extensions,
                shown_number(self.extension_s),
            );
            let last = incident.stage == self.stages.len();
            let why = if last && incident.after_s >= longest {
                format!(
                    "below {} s, the longest the last stage ({}) lasts {how_long}: an incident \
                     from the end of the run on meets no request",
                    shown_number(longest),
                    incident.stage,
                )
            } else if incident.after_s > longest {
                format!(
                    "at most {} s, the longest stage {} lasts {how_long}",
                    shown_number(longest),
                    incident.stage,
                )
            } else {
                continue;
            };
            return Err(FieldError::new(
                format!("{name}.incident.after_s"),
                incident.after_s,
                why,
            ));
        }
        Ok(())
    }

    /// Checks each move the driver will ask of the engine, from Production (where every
    /// rollout starts) to the first stage and on, with the library's own [`plan_promotion`],
    /// so that a ramp the engine would refuse mid-run is refused here under its field.
    fn validate_moves(&self) -> Result<(), FieldError> {
        let mut from = Environment::Production;
        for (i, stage) in self.stages.iter().enumerate() {
            let to = stage.environment();
            plan_promotion(from, to).map_err(|refusal| {
                FieldError::new(
                    format!("stages[{i}].environment"),
                    to.name(),
                    format!("a stage the engine can move to from {from} (it refuses {refusal})"),
                )
            })?;
            from = to;
        }
        Ok(())
    }

    /// Checks that the longest run ([`Scenario::longest_seconds`]) lasts at most [`MAX_RUN_S`]
    /// and sends at most [`MAX_RUN_REQUESTS`] requests through the engine, so that a run is
    /// bounded in time and memory. The error names the field to change: the stages' lengths,
    /// `extension_s`, or `rps`.
    pub fn validate_run_size(&self) -> Result<(), FieldError> {
        let planned = self.planned_seconds();
        if planned > MAX_RUN_S {
            return Err(FieldError::new(
                "stages",
                format!("{} s planned", shown_number(planned)),
                format!("at most {MAX_RUN_S} s (365 days) in all, the longest simulated run"),
            ));
        }
        let longest = self.longest_seconds();
        if longest > MAX_RUN_S {
            let extensions = self.stages.len() as f64 * f64::from(self.max_extensions);
            return Err(FieldError::new(
                "extension_s",
                self.extension_s,
                format!(
                    "at most {} s: the {planned} s planned plus {extensions} extensions \
                     ({} stages × max_extensions = {}) must fit in {MAX_RUN_S} s (365 days), \
                     the longest simulated run",
                    (MAX_RUN_S - planned) / extensions,
                    self.stages.len(),
                    self.max_extensions,
                ),
            ));
        }
        let requests = self.rps / self.sample as f64 * longest;
        if requests > MAX_RUN_REQUESTS {
            return Err(FieldError::new(
                "rps",
                self.rps,
                format!(
                    "at most {} with sample = {} over the longest run of {longest} s (the \
                     stages, each extended max_extensions times): a run sends at most \
                     {MAX_RUN_REQUESTS} requests through the engine (lower rps, raise sample or \
                     shorten the stages)",
                    (MAX_RUN_REQUESTS / longest * self.sample as f64).floor(),
                    self.sample,
                ),
            ));
        }
        self.validate_evaluations(longest, requests)?;
        self.validate_least_requests()
    }

    /// Checks that the shortest stage expects at least one request (`rps / sample ×` its
    /// `duration_s`, as the driver sends a tick's share of `rps / sample`): with fewer, a run
    /// may send none at all, judge nothing and stall, which reads as a refused canary.
    ///
    /// Checked as `rps × duration_s >= sample`, one rounding, so that the bounds a refusal
    /// states are accepted: the most `sample`, `floor(rps × duration_s)`, and the least `rps`
    /// ([`Scenario::least_rps`]). Checked as `rps / sample × duration_s >= 1`, two roundings,
    /// `sample = 93` was refused at `rps = 1000` and a 0.093 s stage, where `--sample 94` had
    /// stated "at most 93".
    pub fn validate_least_requests(&self) -> Result<(), FieldError> {
        let shortest = self.shortest_stage_seconds();
        if self.rps * shortest >= self.sample as f64 {
            return Ok(());
        }
        Err(FieldError::new(
            "rps",
            self.rps,
            format!(
                "at least {} with sample = {}: the shortest stage, {} s, expects rps / sample × \
                 its duration_s requests, and with fewer than one a run may send none and stall \
                 with nothing judged (raise rps, lower sample or lengthen the stage)",
                shown_number(self.least_rps()),
                self.sample,
                shown_number(shortest),
            ),
        ))
    }

    /// The least `rps` with which the shortest stage expects a request at this `sample`
    /// ([`Scenario::validate_least_requests`]), as its refusals state it: `sample / duration_s`,
    /// stepped up an ulp at a time until the check takes it (`1 / 0.093`, 10.75268817204301,
    /// times 0.093 is 0.9999999999999999; the next number up is taken). The quotient is within
    /// an ulp of the exact bound, so a step or two at most.
    pub fn least_rps(&self) -> f64 {
        let shortest = self.shortest_stage_seconds();
        let sample = self.sample as f64;
        let mut rps = sample / shortest;
        while rps * shortest < sample {
            rps = rps.next_up();
        }
        rps
    }

    /// The record path evaluates at most once per `evaluation_interval` of simulated time,
    /// once per tick of the driver (the clock moves a tick at a time) and once per request:
    /// at most [`MAX_RUN_EVALUATIONS`] of them over the longest run. A tiny interval made each
    /// request 6 to 450 times dearer than the requests' bound allows for.
    fn validate_evaluations(&self, longest: f64, requests: f64) -> Result<(), FieldError> {
        if self.evaluations(longest, requests) <= MAX_RUN_EVALUATIONS {
            return Ok(());
        }
        Err(FieldError::new(
            "slo.evaluation_interval_ms",
            shown_millis(self.slo.evaluation_interval),
            format!(
                "at least {} ms over the longest run of {longest} s (the stages, each \
                 extended max_extensions times): the record path evaluates once per \
                 evaluation_interval and at most once a tick of the driver ({:.1} a simulated \
                 second, the ticks the bursts cut where they start or end counted), and a run \
                 at most {MAX_RUN_EVALUATIONS} times (MAX_RUN_EVALUATIONS; raise the interval \
                 or shorten the stages)",
                // Rounded up to a microsecond, so that the interval named is accepted.
                shown_number((longest / MAX_RUN_EVALUATIONS * 1e6).ceil() / 1e3),
                self.ticks_per_second(),
            ),
        ))
    }
}

impl StageSpec {
    fn validate(&self, index: usize, count: usize) -> Result<(), FieldError> {
        let field = |name: &str| format!("stages[{index}].{name}");
        positive(&field("duration_s"), self.duration_s)?;
        if self.duration_s < MIN_EXTENSION_S {
            return Err(FieldError::new(
                field("duration_s"),
                self.duration_s,
                format!(
                    "at least {MIN_EXTENSION_S} seconds (one tick of the simulation: a shorter \
                     stage sends no request and moves no time)"
                ),
            ));
        }
        at_most(
            &field("duration_s"),
            self.duration_s,
            MAX_RUN_S,
            "seconds (365 days), the longest simulated run",
        )?;
        match (self.environment, self.traffic_percent) {
            (StageKind::Canary, None) => Err(FieldError::new(
                field("traffic_percent"),
                "(missing)",
                "a percentage for a canary stage",
            )),
            (StageKind::Canary, Some(p)) if !(p.is_finite() && p > 0.0 && p <= 100.0) => {
                Err(FieldError::new(
                    field("traffic_percent"),
                    p,
                    "a percentage above 0, at most 100",
                ))
            }
            // The library's own check of a canary share, under this stage's field name.
            (StageKind::Canary, Some(_)) => self
                .environment()
                .validate()
                .map_err(|e| FieldError::new(field("traffic_percent"), e.value(), e.expected())),
            (StageKind::Staging, Some(p)) => Err(FieldError::new(
                field("traffic_percent"),
                p,
                "nothing: staging sends all traffic to the new version",
            )),
            (StageKind::Staging, None) if index + 1 != count => Err(FieldError::new(
                field("environment"),
                "staging",
                "staging only as the last stage (the engine goes staging -> production)",
            )),
            _ => Ok(()),
        }
    }
}

impl ServiceModel {
    fn validate(&self, name: &str, stages: usize) -> Result<(), FieldError> {
        let field = |f: &str| format!("{name}.{f}");
        fraction(&field("error_rate"), self.error_rate)?;
        let (fastest, slowest) = LATENCY_MS;
        let latency = format!(
            "milliseconds from {fastest} (1 µs, the engine's resolution) to {slowest} (the \
             longest latency it records exactly)"
        );
        within(
            &field("median_ms"),
            self.median_ms,
            fastest,
            slowest,
            &latency,
        )?;
        match (self.p99_ms, self.sigma) {
            (Some(_), Some(sigma)) => {
                return Err(FieldError::new(
                    field("sigma"),
                    sigma,
                    "absent when p99_ms is given (set one of p99_ms and sigma)",
                ));
            }
            (Some(p99), None) => {
                within(&field("p99_ms"), p99, fastest, slowest, &latency)?;
                if p99 <= self.median_ms {
                    return Err(FieldError::new(
                        field("p99_ms"),
                        p99,
                        "a latency above median_ms",
                    ));
                }
            }
            (None, Some(sigma)) => positive(&field("sigma"), sigma).and_then(|()| {
                at_most(
                    &field("sigma"),
                    sigma,
                    MAX_SIGMA,
                    "(the log-normal's spread)",
                )
            })?,
            _ => {}
        }
        self.validate_p99(name)?;
        if let Some(b) = &self.bursts {
            ticks_to_longest_run(&field("bursts.every_s"), b.every_s)?;
            ticks_to_longest_run(&field("bursts.length_s"), b.length_s)?;
            if b.length_s > b.every_s {
                return Err(FieldError::new(
                    field("bursts.length_s"),
                    b.length_s,
                    "at most bursts.every_s",
                ));
            }
            fraction(&field("bursts.error_rate"), b.error_rate)?;
        }
        if let Some(i) = &self.incident {
            if i.stage == 0 || i.stage > stages {
                return Err(FieldError::new(
                    field("incident.stage"),
                    i.stage,
                    format!("a stage number from 1 to {stages}"),
                ));
            }
            // At most the longest run, so that no --duration within its range scales it to inf.
            within(
                &field("incident.after_s"),
                i.after_s,
                0.0,
                MAX_RUN_S,
                &format!("seconds from 0 to {MAX_RUN_S} (365 days), the longest simulated run"),
            )?;
            fraction(&field("incident.error_rate"), i.error_rate)?;
            positive(&field("incident.latency_factor"), i.latency_factor)?;
            at_most(
                &field("incident.latency_factor"),
                i.latency_factor,
                MAX_LATENCY_FACTOR,
                "(times the service's latency)",
            )?;
            incident_p99(
                &field("incident.latency_factor"),
                i.latency_factor,
                p99_ms(self),
            )?;
            if let Some(length) = i.length_s {
                ticks_to_longest_run(&field("incident.length_s"), length)?;
            }
        }
        Ok(())
    }
}

impl ServiceModel {
    /// The p99 a `sigma` or the default spread implies ([`p99_ms`]) must be a latency the
    /// engine records exactly, as a `p99_ms` must: else the report's p99 and the judge's
    /// (clamped at 60 s) disagree. The error names the field that sets it.
    fn validate_p99(&self, name: &str) -> Result<(), FieldError> {
        let (_, slowest) = LATENCY_MS;
        let p99 = p99_ms(self);
        if p99 <= slowest {
            return Ok(());
        }
        let why = format!(
            "above {slowest} ms, the longest latency the engine records exactly{}",
            if self.sigma.is_some() {
                ""
            } else {
                " (set p99_ms or sigma, or lower median_ms)"
            }
        );
        match self.sigma {
            Some(sigma) => Err(FieldError::new(
                format!("{name}.sigma"),
                sigma,
                format!(
                    "at most {} with median_ms = {}: the p99, median_ms × e^({:.3} × sigma), \
                     is then {} ms, {why}",
                    rounded_down((slowest / self.median_ms).ln() / Z99),
                    shown_number(self.median_ms),
                    Z99,
                    to_microseconds(p99),
                ),
            )),
            None => Err(FieldError::new(
                format!("{name}.median_ms"),
                self.median_ms,
                format!(
                    "at most {} ms without p99_ms or sigma: the p99 is then \
                     {DEFAULT_P99_OVER_MEDIAN} × median_ms = {} ms, {why}",
                    rounded_down(slowest / DEFAULT_P99_OVER_MEDIAN),
                    shown_number(p99),
                ),
            )),
        }
    }
}

/// An incident's `latency_factor`: the service's `p99` times it must be a latency the engine
/// records exactly ([`ServiceModel::validate_p99`]).
fn incident_p99(field: &str, factor: f64, p99: f64) -> Result<(), FieldError> {
    let (_, slowest) = LATENCY_MS;
    if p99 * factor <= slowest {
        return Ok(());
    }
    let shown = to_microseconds(p99);
    Err(FieldError::new(
        field,
        factor,
        format!(
            "at most {} with a p99 of {shown} ms: the incident's p99, latency_factor × {shown} \
             ms = {} ms, is above {slowest} ms, the longest latency the engine records exactly",
            rounded_down(slowest / p99),
            to_microseconds(p99 * factor),
        ),
    ))
}

/// `value` rounded down to a thousandth, as a bound an error states: the bound is accepted.
fn rounded_down(value: f64) -> String {
    shown_number((value * 1e3).floor() / 1e3)
}

/// A latency in milliseconds, to the microsecond (the engine's resolution).
fn to_microseconds(ms: f64) -> String {
    shown_number((ms * 1e3).round() / 1e3)
}

/// The refusal of a `promotion.store`: the simulated gate would open the store, write the
/// simulated release into it, and start the next run from what the last one stored (or a real
/// gate's state), so a scenario with one is a mistake.
fn no_store(store: &StoreConfig) -> FieldError {
    let shown = serde_json::to_string(store).unwrap_or_else(|_| format!("{store:?}"));
    FieldError::new(
        "promotion.store",
        crate::error::shown_text(&shown),
        "absent: a simulation never opens a state store (it would write the simulated release \
         into it and start the next run from it); remove the store from the scenario",
    )
}

/// The refusal of `promotion.overrides` with id lists: the judge leaves the requests of listed
/// ids out of both cohorts, so the stage table (every request counted) and the judge's lines
/// (forced ones left out) would disagree. A header or cookie alone is not refused: the
/// simulated requests carry none.
fn no_overrides(overrides: &Overrides) -> FieldError {
    let shown = serde_json::to_string(overrides).unwrap_or_else(|_| format!("{overrides:?}"));
    FieldError::new(
        "promotion.overrides",
        crate::error::shown_text(&shown),
        "no canary_ids or stable_ids: the judge leaves the requests of listed ids out of both \
         cohorts, where the stage table counts them; remove the id lists from the scenario (a \
         header or cookie is accepted: the simulated requests carry none)",
    )
}

/// `name`, `description`: at most `max` bytes of text the report prints as it is, on a
/// terminal and in the SVG, so none of the characters the CLI's messages escape
/// ([`shown_escaped`]: a control character such as a newline or a terminal escape, which XML
/// refuses too; a format or invisible character, which the library refuses in names: U+202E
/// shows the rest of a line reversed, U+200B and U+3164 nothing at all; U+2028 and U+2029,
/// which end a line) and neither U+FFFE nor U+FFFF (not characters in XML).
fn report_text(field: &str, text: &str, max: usize) -> Result<(), FieldError> {
    let refuse = |expected: String| {
        let shown = format!("\"{}\"", crate::error::shown_text(text));
        Err(FieldError::new(field, shown, expected))
    };
    if text.len() > max {
        return refuse(format!("at most {max} bytes of text"));
    }
    match text
        .chars()
        .find(|&c| shown_escaped(c) || c == '\u{FFFE}' || c == '\u{FFFF}')
    {
        Some(c) => {
            // As the value shows it: `\n`, `\u{1b}`, `\u{3164}`; U+FFFE and U+FFFF, which
            // messages need not escape, as `\u{ffff}`.
            let held = if shown_escaped(c) {
                crate::error::shown_text(c.encode_utf8(&mut [0; 4]))
            } else {
                c.escape_unicode().to_string()
            };
            refuse(format!(
                "text without control, format or invisible characters, line or paragraph \
                 separators, U+FFFE or U+FFFF (it holds '{held}'): the report prints it on a \
                 terminal and in the SVG"
            ))
        }
        None => Ok(()),
    }
}

fn positive(field: &str, value: f64) -> Result<(), FieldError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(FieldError::new(field, value, "a finite number above 0"))
    }
}

fn at_most(field: &str, value: f64, limit: f64, unit: &str) -> Result<(), FieldError> {
    if value <= limit {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            value,
            format!("at most {limit} {unit}"),
        ))
    }
}

/// `extension_s`: from one tick of the driver to the longest run.
fn extension_length(seconds: f64) -> Result<(), FieldError> {
    ticks_to_longest_run("extension_s", seconds)
}

/// A length of simulated time (`extension_s`, a burst's period and length, an incident's
/// length): from one tick of the driver ([`MIN_EXTENSION_S`]) to the longest run
/// ([`MAX_RUN_S`]), both limits said.
fn ticks_to_longest_run(field: &str, seconds: f64) -> Result<(), FieldError> {
    within(
        field,
        seconds,
        MIN_EXTENSION_S,
        MAX_RUN_S,
        &format!(
            "seconds from {MIN_EXTENSION_S} (one tick of the simulation) to {MAX_RUN_S} \
             (365 days)"
        ),
    )
}

/// `value` from `least` to `most`, finite; `expected` says so in the field's words.
fn within(
    field: &str,
    value: f64,
    least: f64,
    most: f64,
    expected: &str,
) -> Result<(), FieldError> {
    if value.is_finite() && (least..=most).contains(&value) {
        Ok(())
    } else {
        Err(FieldError::new(field, value, expected))
    }
}

fn fraction(field: &str, value: f64) -> Result<(), FieldError> {
    if value.is_finite() && (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(FieldError::new(field, value, "a fraction from 0.0 to 1.0"))
    }
}

/// A scenario value refused by validation, in the library's words: field, value, expected.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    field: String,
    value: String,
    expected: String,
}

impl FieldError {
    /// `value` is written as [`shown_value`](crate::error::shown_value) writes it: a number as
    /// the library's errors write one.
    fn new(
        field: impl Into<String>,
        value: impl fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            value: crate::error::shown_value(value),
            expected: expected.into(),
        }
    }

    /// The field refused, as the scenario names it (`rps`, `stages[2].duration_s`).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The same refusal, showing the number written at its field in `document` when that is
    /// what it refused ([`reads_as`](promotion_gates::reads_as)): a value the scenario read
    /// through an `f64` (`18446744073709551615`) or as a duration was shown as converted.
    pub fn as_written(self, document: &crate::document::Written) -> Self {
        match document.number_at(&self.field) {
            Some(written) if promotion_gates::reads_as(written, &self.value) => Self {
                value: crate::error::shown_text(written.trim()),
                ..self
            },
            _ => self,
        }
    }

    /// A library `ConfigError` found inside the table `table`, its field prefixed.
    fn wrap(table: &str, error: &promotion_gates::ConfigError) -> Self {
        Self::new(
            format!("{table}.{}", error.field()),
            error.value(),
            error.expected(),
        )
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} = {}: {}",
            self.field, self.value, self.expected
        )
    }
}
