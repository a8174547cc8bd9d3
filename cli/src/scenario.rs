//! What a simulation runs: the ramp of stages, the traffic, the two synthetic services and the
//! gate's policy. The five built-in scenarios live here; the checks a scenario file must pass
//! (each error names the field and the value) live in `checks`.

use promotion_gates::{PromotionConfig, SloConfig, is_tiny_number};
use serde::{Deserialize, Serialize};

use crate::rollout::TICK_NS;

mod checks;
pub use checks::FieldError;
mod promotion_wire;
mod stage_kind_wire;

/// The most requests per simulated second a scenario may ask for (`rps`, `--rps`).
pub const MAX_RPS: f64 = 1_000_000.0;

/// The longest simulated run, in seconds: 365 days. It bounds every `duration_s`,
/// `extension_s` and `--duration`, and a scenario's [longest run](Scenario::longest_seconds):
/// the driver's ticks (100 a simulated second, below 500 with bursts: see
/// [`Scenario::ticks_per_second`]) cost CPU even when they carry no request.
pub const MAX_RUN_S: f64 = 365.0 * 86_400.0;

/// The most requests a scenario's longest run may send through the engine (`rps / sample` ×
/// [`Scenario::longest_seconds`]): 10 billion, about 16 minutes of CPU at 95 ns a request
/// (docs/simulator.md, Performance).
pub const MAX_RUN_REQUESTS: f64 = 1e10;

/// The most full evaluations of the judge a scenario's longest run may make on the record
/// path: one a simulated second over [`MAX_RUN_S`], so the default `evaluation_interval` (1 s)
/// always fits. An evaluation costs about 45 µs, up to about 70 µs with the widest latencies
/// (docs/simulator.md, Limits), so these take about 24 minutes of CPU, at most about 37, on top
/// of the requests' (see [`MAX_RUN_REQUESTS`]).
pub const MAX_RUN_EVALUATIONS: f64 = MAX_RUN_S;

/// How many steps [`Scenario::duration_range`] moves an end inwards at most, each twice the
/// last: the last is 2^38 × `f64::EPSILON` of it (6e-5), far beyond what scaling [`MAX_STAGES`]
/// lengths can round.
const RANGE_NUDGES: usize = 40;

/// The most times a stage may be extended (`max_extensions`): each extension keeps its
/// refusal and a timeline point for the report.
pub const MAX_EXTENSIONS: u32 = 100;

/// The most stages in a ramp: each keeps its report (and up to [`MAX_EXTENSIONS`] refusals).
pub const MAX_STAGES: usize = 1_000;

/// The shortest extension (`extension_s`): one tick of the driver, 10 ms. A shorter one sends
/// no request and moves no time, so it cannot give the gate the data it lacked.
pub const MIN_EXTENSION_S: f64 = TICK_NS as f64 / 1e9;

/// The longest `name`, in bytes: the library's longest gate name.
pub const MAX_NAME_BYTES: usize = promotion_gates::MAX_NAME_BYTES;

/// A service's latencies in milliseconds (`median_ms`, `p99_ms`): from 1 µs, the engine's
/// resolution, to the longest latency it records exactly (60 s).
pub const LATENCY_MS: (f64, f64) = (
    0.001,
    promotion_gates::MAX_TRACKED_LATENCY.as_millis() as f64,
);

/// The largest `sigma`: about the spread of a p99 at 60 s over a median at 1 µs.
pub const MAX_SIGMA: f64 = 8.0;

/// The largest `incident.latency_factor`.
pub const MAX_LATENCY_FACTOR: f64 = 1_000.0;

/// The longest `description`, in bytes: a sentence or two, on one line of the report.
pub const MAX_DESCRIPTION_BYTES: usize = 1_000;

/// The built-in scenarios, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioName {
    /// A healthy canary: promoted stage by stage to Production.
    Good,
    /// The canary fails six times as often as production: rolled back.
    ErrorSpike,
    /// The canary is twice as slow: rolled back in stage 1 on `p99_vs_stable` and
    /// `latency_shift`, once its latencies after the warm-up reach `min_samples`.
    LatencyRegression,
    /// Same 1 % error rate as production, with short bursts that are not significant: promoted.
    FlakyButFine,
    /// Healthy, then mid-stage every canary request fails: rolled back after 7 to 11 failures
    /// (seeds 1 to 20).
    Catastrophic,
}

impl ScenarioName {
    /// The scenario's name as written on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ScenarioName::Good => "good",
            ScenarioName::ErrorSpike => "error-spike",
            ScenarioName::LatencyRegression => "latency-regression",
            ScenarioName::FlakyButFine => "flaky-but-fine",
            ScenarioName::Catastrophic => "catastrophic",
        }
    }
}

/// A whole simulation: read from a scenario file or built in. Every field of a file is
/// optional: one left out takes the `good` scenario's value, but `name` (`custom`),
/// `description` (empty) and `slo` (the library's defaults, `promotion_evidence` on). So does
/// a key left out of the `stable`, `canary` or `promotion` table (a `promotion` table without
/// `gate` is `good`'s gate `checkout`, not the library's `default`); `slo`'s keys take the
/// library's defaults. A stage, a burst or an incident has no `good` value: its required keys
/// must be written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// A name for reports, not empty.
    pub name: String,
    /// One sentence on what the scenario shows.
    pub description: String,
    /// Seed of the random number generator: the same seed gives the same run.
    pub seed: u64,
    /// Requests per simulated second, all users together; at most [`MAX_RPS`].
    pub rps: f64,
    /// Fast mode: only every `sample`-th request is simulated (routed and recorded through the
    /// engine); 1 simulates every request.
    pub sample: u64,
    /// Distinct users; each request comes from one drawn at random and is routed by its id
    /// (`user-<n>`), so a user sticks to one version.
    pub users: u64,
    /// The ramp, in order, at most [`MAX_STAGES`]. After the last stage the driver promotes to
    /// Production.
    pub stages: Vec<StageSpec>,
    /// When a promotion is refused (not enough data, or not compliant), the stage goes on
    /// this many simulated seconds before the next try; from [`MIN_EXTENSION_S`] to
    /// [`MAX_RUN_S`].
    pub extension_s: f64,
    /// How many times a stage may be extended before the rollout is declared stalled; at most
    /// [`MAX_EXTENSIONS`].
    pub max_extensions: u32,
    /// The stable version.
    pub stable: ServiceModel,
    /// The new version.
    pub canary: ServiceModel,
    /// The gate's config. Its `environment` must be `production`: every rollout starts there.
    /// A key a file leaves out of it takes `good`'s value (read by `promotion_wire.rs`).
    #[serde(deserialize_with = "promotion_wire::over_good")]
    pub promotion: PromotionConfig,
    /// The judge's policy: the library's defaults unless set; the built-in scenarios turn
    /// `promotion_evidence` off (their minute-long stages are too short to show it).
    pub slo: SloConfig,
}

/// Where a stage routes the new version's traffic: `"canary"` or `"staging"` in a document
/// (read by `stage_kind_wire.rs`, whose errors name the value and both forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// `traffic_percent` of users go to the new version.
    #[default]
    Canary,
    /// All traffic goes to the new version.
    Staging,
}

/// One stage of the ramp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// `canary` (the default) or `staging`.
    #[serde(default)]
    pub environment: StageKind,
    /// The canary's share of traffic, for a canary stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_percent: Option<f64>,
    /// Simulated seconds the stage runs before the driver tries to promote; at most
    /// [`MAX_RUN_S`].
    pub duration_s: f64,
}

/// A synthetic service: how often it fails and how long it takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceModel {
    /// Share of requests that fail, `0..=1`.
    pub error_rate: f64,
    /// Median latency in milliseconds (latency is log-normal).
    pub median_ms: f64,
    /// 99th percentile latency in milliseconds; sets the spread. Give this or `sigma`, not
    /// both; with neither, the p99 is 6 × the median.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// The spread as the log-normal's sigma, instead of `p99_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma: Option<f64>,
    /// Short periodic bursts of errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bursts: Option<Bursts>,
    /// One incident, from a point in one stage on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<Incident>,
}

/// Error bursts: for `length_s` seconds out of every `every_s` (counted from the start of the
/// simulation, to the nanosecond), the error rate is `error_rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bursts {
    /// Period, in simulated seconds.
    pub every_s: f64,
    /// Length of each burst, in simulated seconds.
    pub length_s: f64,
    /// Error rate during a burst.
    pub error_rate: f64,
}

/// An incident: from `after_s` seconds into stage `stage` (1 is the first stage), the service
/// fails at `error_rate` and is `latency_factor` times slower, for `length_s` seconds or until
/// the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incident {
    /// The stage it starts in, counted from 1.
    pub stage: usize,
    /// Simulated seconds into that stage.
    pub after_s: f64,
    /// Error rate during the incident.
    pub error_rate: f64,
    /// Latency multiplier during the incident.
    #[serde(default = "one")]
    pub latency_factor: f64,
    /// How long it lasts; until the end when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length_s: Option<f64>,
}

fn one() -> f64 {
    1.0
}

impl Default for ServiceModel {
    fn default() -> Self {
        Self {
            error_rate: 0.005,
            median_ms: 20.0,
            p99_ms: None,
            sigma: None,
            bursts: None,
            incident: None,
        }
    }
}

/// The default ramp: 1 % → 5 % → 10 % → 25 % → 50 % → Staging, each `seconds` long.
fn ramp(seconds: f64) -> Vec<StageSpec> {
    let canary = |p: f64| StageSpec {
        environment: StageKind::Canary,
        traffic_percent: Some(p),
        duration_s: seconds,
    };
    let mut stages: Vec<StageSpec> = [1.0, 5.0, 10.0, 25.0, 50.0].map(canary).into();
    stages.push(StageSpec {
        environment: StageKind::Staging,
        traffic_percent: None,
        duration_s: seconds,
    });
    stages
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            name: "custom".into(),
            description: String::new(),
            seed: 42,
            rps: 2000.0,
            sample: 1,
            users: 100_000,
            stages: ramp(60.0),
            extension_s: 30.0,
            max_extensions: 4,
            stable: ServiceModel::default(),
            canary: ServiceModel::default(),
            promotion: PromotionConfig {
                gate: "checkout".into(),
                feature_flags: vec!["checkout_v2".into()],
                ..Default::default()
            },
            slo: SloConfig::default(),
        }
    }
}

impl Scenario {
    /// The built-in scenario called `name`.
    pub fn builtin(name: ScenarioName) -> Self {
        // The built-in ramps (a minute a stage) are too short for the judge's positive
        // evidence at their traffic: they promote on samples, compliance and no fired rule. A
        // scenario file judges as the library does unless its `slo` says otherwise.
        let base = Scenario {
            name: name.as_str().into(),
            slo: SloConfig {
                promotion_evidence: false,
                ..SloConfig::default()
            },
            ..Default::default()
        };
        match name {
            ScenarioName::Good => Scenario {
                description: "canary as healthy as production: promoted stage by stage".into(),
                ..base
            },
            ScenarioName::ErrorSpike => Scenario {
                description: "canary fails 3% of requests against production's 0.5%".into(),
                canary: ServiceModel {
                    error_rate: 0.03,
                    ..Default::default()
                },
                ..base
            },
            ScenarioName::LatencyRegression => Scenario {
                description: "canary twice as slow (median 40 ms, p99 240 ms), judged once \
                              2000 requests give its p99 a tail of 20"
                    .into(),
                canary: ServiceModel {
                    median_ms: 40.0,
                    p99_ms: Some(240.0),
                    ..Default::default()
                },
                // With the default 100, the health score's latency penalty, computed from the
                // p99 of ~100 requests (their maximum, near enough), fires first on noise in
                // most runs; 2000 lets p99_vs_stable, a test, speak first.
                slo: SloConfig {
                    min_samples: 2000,
                    ..base.slo.clone()
                },
                ..base
            },
            ScenarioName::FlakyButFine => {
                let one_percent = ServiceModel {
                    error_rate: 0.01,
                    ..Default::default()
                };
                Scenario {
                    description: "both at 1% errors; the canary has 5 s bursts to 1.5% every \
                                  37 s, not significant"
                        .into(),
                    canary: ServiceModel {
                        bursts: Some(Bursts {
                            every_s: 37.0,
                            length_s: 5.0,
                            error_rate: 0.015,
                        }),
                        ..one_percent.clone()
                    },
                    stable: one_percent,
                    ..base
                }
            }
            ScenarioName::Catastrophic => Scenario {
                description: "healthy, then 30 s into the 10% stage every canary request fails"
                    .into(),
                canary: ServiceModel {
                    incident: Some(Incident {
                        stage: 3,
                        after_s: 30.0,
                        error_rate: 1.0,
                        latency_factor: 1.0,
                        length_s: None,
                    }),
                    ..Default::default()
                },
                ..base
            },
        }
    }

    /// Stretches the ramp so that it lasts `total_s`: every stage, the extension step, and each
    /// incident's start and length (an incident is placed in a stage) scale by one factor.
    /// The bursts keep their period and length: "short bursts" means short on the judge's
    /// window, and the gate's own times (`promotion.rollback_window_seconds`, the judge's
    /// intervals) do not scale. Nor does `description`.
    ///
    /// Each length rounds on its own, so an incident that started by the end of its stage
    /// ([`Scenario::latest_incident_start`]) is held there once scaled, and one in the last
    /// stage just before it: its start and the stage's end, equal (or an ulp apart) as
    /// written, would differ by a rounding.
    pub fn scale_to(&mut self, total_s: f64) {
        let planned = self.planned_seconds();
        if planned > 0.0 {
            let factor = total_s / planned;
            let within = [&self.stable, &self.canary].map(|model| {
                matches!(
                    (&model.incident, self.latest_incident_start(model)),
                    (Some(incident), Some(latest)) if incident.after_s <= latest
                )
            });
            for stage in &mut self.stages {
                stage.duration_s *= factor;
            }
            self.extension_s *= factor;
            let latest =
                [&self.stable, &self.canary].map(|model| self.latest_incident_start(model));
            for ((model, within), latest) in [&mut self.stable, &mut self.canary]
                .into_iter()
                .zip(within)
                .zip(latest)
            {
                model.scale_incident(factor, latest.filter(|_| within));
            }
        }
    }

    /// The ramp's planned length, without extensions.
    pub fn planned_seconds(&self) -> f64 {
        self.stages.iter().map(|s| s.duration_s).sum()
    }

    /// The longest the run can last: the planned ramp, every stage extended `max_extensions`
    /// times.
    pub fn longest_seconds(&self) -> f64 {
        self.planned_seconds()
            + self.stages.len() as f64 * f64::from(self.max_extensions) * self.extension_s
    }

    /// The shortest planned stage's `duration_s` (infinite without stages).
    pub fn shortest_stage_seconds(&self) -> f64 {
        self.stages
            .iter()
            .map(|s| s.duration_s)
            .fold(f64::INFINITY, f64::min)
    }

    /// The longest `stage` can last: its `duration_s`, then `max_extensions` extensions of
    /// `extension_s`.
    pub fn longest_stage_seconds(&self, stage: &StageSpec) -> f64 {
        stage.duration_s + f64::from(self.max_extensions) * self.extension_s
    }

    /// The latest the incident of `model` can start, in seconds into its stage: the longest
    /// the stage lasts, and in the last stage just before that (its end is the end of the run:
    /// an incident from then on meets no request). `None` without an incident, or for one in
    /// no stage of the ramp.
    pub fn latest_incident_start(&self, model: &ServiceModel) -> Option<f64> {
        let number = model.incident.as_ref()?.stage;
        let longest = self.longest_stage_seconds(self.stages.get(number.checked_sub(1)?)?);
        Some(if number == self.stages.len() {
            longest.next_down()
        } else {
            longest
        })
    }

    /// The shortest and the longest planned ramp `--duration` may scale this scenario to
    /// ([`Scenario::scale_to`] scales every length by one factor), both taken: its shortest
    /// stage, its extension step and each incident's length at least one tick
    /// ([`MIN_EXTENSION_S`]), and its shortest stage at least one request
    /// ([`Scenario::validate_least_requests`]); its extension step, each incident's start and
    /// length, and its longest run within [`MAX_RUN_S`]; the longest run within [`MAX_RUN_REQUESTS`] and
    /// [`MAX_RUN_EVALUATIONS`].
    ///
    /// Each of those lengths and counts, computed from the scaled scenario, grows with the
    /// total (a correctly rounded product or sum never falls when an operand grows), so every
    /// total between the two validates once scaled. The ends are proportional to the factor,
    /// then moved inwards by the few rounding steps it takes for the scaled scenario to
    /// validate: each length rounds on its own when scaled, and their sum can land above the
    /// limit the factor was computed for (31536000.000000004 s planned for 365 days).
    pub fn duration_range(&self) -> (f64, f64) {
        let (least, most) = self.proportional_duration_range();
        (self.fitting(least, 1.0), self.fitting(most, -1.0))
    }

    /// [`Scenario::duration_range`] as if scaling rounded nothing.
    fn proportional_duration_range(&self) -> (f64, f64) {
        let planned = self.planned_seconds();
        let shortest = self
            .stages
            .iter()
            .map(|s| s.duration_s)
            .chain(self.incidents().filter_map(|i| i.length_s))
            .fold(self.extension_s, f64::min);
        // Each is checked against the longest run on its own: the extension step even when no
        // stage is extended (max_extensions = 0).
        let longest_length = self
            .incidents()
            .flat_map(|i| [i.after_s, i.length_s.unwrap_or(0.0)])
            .fold(self.extension_s, f64::max);
        let longest = self.longest_seconds();
        let requests = self.rps / self.sample as f64 * longest;
        let evaluations = self.evaluations(longest, requests);
        let most = (MAX_RUN_S / longest)
            .min(MAX_RUN_S / longest_length)
            .min(MAX_RUN_REQUESTS / requests)
            .min(MAX_RUN_EVALUATIONS / evaluations);
        // The shortest stage expects at least one request (`validate_least_requests`).
        let least_requests =
            planned / (self.rps / self.sample as f64 * self.shortest_stage_seconds());
        (
            (planned * MIN_EXTENSION_S / shortest).max(least_requests),
            planned * most,
        )
    }

    /// `end`, or the nearest total `inward` of it (`1.0`: above, `-1.0`: below) the scenario
    /// validates at once scaled, tried a step of `end × 2^k × EPSILON` further each time;
    /// `end` itself when none of [`RANGE_NUDGES`] steps does (no length fits this scenario).
    fn fitting(&self, end: f64, inward: f64) -> f64 {
        let mut step = f64::EPSILON;
        let mut total = end;
        for _ in 0..RANGE_NUDGES {
            let mut scaled = self.clone();
            scaled.scale_to(total);
            if scaled.validate().is_ok() {
                return total;
            }
            total = end * inward.mul_add(step, 1.0);
            step *= 2.0;
        }
        end
    }

    /// The incidents of both services: `--duration` scales them with the ramp.
    fn incidents(&self) -> impl Iterator<Item = &Incident> {
        [&self.stable, &self.canary]
            .into_iter()
            .filter_map(|model| model.incident.as_ref())
    }

    /// The most requests a simulated second the engine may see (`rps / sample`) over the
    /// longest run, and why: [`MAX_RUN_REQUESTS`] over it, or [`MAX_RUN_EVALUATIONS`] when
    /// `slo.evaluation_interval` would have the record path evaluate more often than that (it
    /// evaluates at most once a request). What `--rps` and `--sample` are held to.
    pub fn most_engine_rate(&self) -> (f64, String) {
        let longest = self.longest_seconds();
        if self.evaluations(longest, f64::INFINITY) > MAX_RUN_EVALUATIONS {
            let interval_ms = promotion_gates::shown_millis(self.slo.evaluation_interval);
            let why = format!(
                "the record path evaluates once per slo.evaluation_interval_ms = {interval_ms} \
                 and once a request at most, and a run at most {MAX_RUN_EVALUATIONS} times \
                 (MAX_RUN_EVALUATIONS; or raise the interval)"
            );
            (MAX_RUN_EVALUATIONS / longest, why)
        } else {
            let why = format!(
                "a run sends at most {MAX_RUN_REQUESTS} requests through the engine \
                 (MAX_RUN_REQUESTS)"
            );
            (MAX_RUN_REQUESTS / longest, why)
        }
    }

    /// The most evaluations the record path makes in `longest` seconds carrying `requests`:
    /// one per `evaluation_interval`, at most one per tick ([`Scenario::ticks_per_second`]:
    /// the clock moves a tick at a time) and one per request.
    fn evaluations(&self, longest: f64, requests: f64) -> f64 {
        let interval_s = self.slo.evaluation_interval.as_secs_f64();
        (longest / interval_s)
            .min(longest * self.ticks_per_second())
            .min(requests)
    }

    /// The most ticks of the driver a simulated second: 100 (one every 10 ms, [`TICK_NS`]),
    /// and the ticks the bursts of either service cut where one starts or ends, counted as
    /// [`crate::traffic::ticks_per_second`] says. Below 500.
    pub fn ticks_per_second(&self) -> f64 {
        crate::traffic::ticks_per_second(self.stable.bursts.as_ref(), self.canary.bursts.as_ref())
    }
}

impl StageSpec {
    /// The canary's share of traffic in this stage, in percent.
    pub fn percent(&self) -> f64 {
        match self.environment {
            StageKind::Canary => self.traffic_percent.unwrap_or(0.0),
            StageKind::Staging => 100.0,
        }
    }

    /// The engine's environment for this stage.
    pub fn environment(&self) -> promotion_gates::Environment {
        match self.environment {
            StageKind::Canary => promotion_gates::Environment::Canary {
                traffic_percent: self.percent(),
            },
            StageKind::Staging => promotion_gates::Environment::Staging,
        }
    }
}

impl ServiceModel {
    /// Multiplies the incident's start and length by `factor`, the start at most `latest`
    /// (see [`Scenario::scale_to`]).
    fn scale_incident(&mut self, factor: f64, latest: Option<f64>) {
        if let Some(incident) = &mut self.incident {
            incident.after_s = (incident.after_s * factor).min(latest.unwrap_or(f64::INFINITY));
            if let Some(length) = &mut incident.length_s {
                *length *= factor;
            }
        }
    }
}

/// Reads a simulated duration: `90`, `90s`, `1.5m`, `2h`, `1d`, `500ms`; above zero and at
/// most [`MAX_RUN_S`], and not too small for an `f64` ([`is_tiny_number`]).
pub fn parse_duration(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let shown = crate::error::quoted_text(text);
    // A sign is read with the number, so that `-5s` is refused as below zero.
    let sign = usize::from(text.starts_with(['-', '+']));
    let split = text[sign..]
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or(text.len(), |at| at + sign);
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        other => {
            return Err(format!(
                "unknown unit {} in duration {shown} (use ms, s, m or min, h or d; a bare number is \
                 seconds)",
                crate::error::quoted_text(other)
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{shown} is not a duration (e.g. 90s, 6m, 24h)"))?;
    let seconds = value * scale;
    // A number too long for an f64 (400 digits) reads as infinity: longer than any run, not
    // "not above zero"; one too small for it (`0.` then 330 zeros and `1`, or one a unit
    // scales below 5e-324) reads as 0, above zero as written.
    if is_tiny_number(number) || (value > 0.0 && seconds == 0.0) {
        Err(crate::error::too_small(&format!("duration {shown}")))
    } else if seconds > MAX_RUN_S {
        Err(format!(
            "duration {shown} is longer than 365d, the longest simulated run"
        ))
    } else if seconds > 0.0 {
        Ok(seconds)
    } else {
        Err(format!("duration {shown} must be above zero"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;
    use promotion_gates::StoreConfig;

    #[test]
    fn every_builtin_is_valid() {
        for name in ScenarioName::value_variants() {
            Scenario::builtin(*name).validate().unwrap();
        }
    }

    /// The default scenario after `change`.
    fn changed(change: impl FnOnce(&mut Scenario)) -> Scenario {
        let mut scenario = Scenario::default();
        change(&mut scenario);
        scenario
    }

    /// The message of the default scenario's validation error after `change`.
    fn refusal(change: impl FnOnce(&mut Scenario)) -> String {
        changed(change).validate().unwrap_err().to_string()
    }

    #[test]
    fn a_ramp_the_engine_would_refuse_is_refused_under_its_field() {
        let staging = StageSpec {
            environment: StageKind::Staging,
            traffic_percent: None,
            duration_s: 2.0,
        };
        assert_eq!(
            refusal(|s| s.stages = vec![staging]),
            "invalid stages[0].environment = staging: a stage the engine can move to from \
             Production (it refuses invalid promotion path Production -> Staging: a release \
             starts as a canary: promote to Canary{percent} first)"
        );
        // A ramp down is a move the engine makes (not gated).
        changed(|s| s.stages.swap(0, 1)).validate().unwrap();
    }

    #[test]
    fn rates_and_lengths_beyond_the_limits_are_refused_by_field() {
        assert_eq!(
            refusal(|s| s.rps = 1e300),
            "invalid rps = 1e300: at most 1000000 requests a simulated second"
        );
        let long_staging = refusal(|s| {
            s.stages.truncate(1);
            s.stages.push(StageSpec {
                environment: StageKind::Staging,
                traffic_percent: None,
                duration_s: 2e10,
            });
        });
        assert!(
            long_staging
                .starts_with("invalid stages[1].duration_s = 20000000000: at most 31536000"),
            "{long_staging}"
        );
        for length in [4e7, 1e-9, 1e-300, 0.009] {
            let message = refusal(|s| s.extension_s = length);
            assert!(
                message.contains("seconds from 0.01 (one tick of the simulation) to 31536000"),
                "{message}"
            );
        }
        assert_eq!(
            refusal(|s| s.max_extensions = u32::MAX),
            "invalid max_extensions = 4294967295: at most 100 extensions of a stage"
        );
        let alternating = |i: usize| StageSpec {
            environment: StageKind::Canary,
            traffic_percent: Some(if i.is_multiple_of(2) { 1.0 } else { 2.0 }),
            duration_s: 1.0,
        };
        assert_eq!(
            refusal(|s| s.stages = (0..=MAX_STAGES).map(alternating).collect()),
            "invalid stages = 1001 stages: at most 1000 stages"
        );
        changed(|s| s.stages = (0..MAX_STAGES).map(alternating).collect())
            .validate()
            .unwrap();
    }

    #[test]
    fn the_longest_run_is_bounded_in_time_and_requests() {
        // Each field within its limit, the run too long: 6 stages of 61 days, then 3 of them
        // with 4 extensions of 30 days each.
        let days = |s: &mut Scenario, stages: usize| {
            s.stages.truncate(stages);
            for stage in &mut s.stages {
                stage.duration_s = 61.0 * 86_400.0;
            }
        };
        let planned = refusal(|s| days(s, 6));
        assert!(
            planned.starts_with("invalid stages = 31622400 s planned: at most 31536000 s"),
            "{planned}"
        );
        let extended = refusal(|s| {
            days(s, 3);
            s.extension_s = 30.0 * 86_400.0;
        });
        assert!(
            extended.starts_with("invalid extension_s = 2592000: at most "),
            "{extended}"
        );
        // Within the time, too many requests: a day at a million requests a second.
        let busy_day = |s: &mut Scenario| {
            s.rps = MAX_RPS;
            s.stages.truncate(1);
            s.stages[0].duration_s = 86_400.0;
            s.max_extensions = 0;
        };
        let busy = refusal(busy_day);
        assert!(
            busy.starts_with("invalid rps = 1000000: at most 115740 with sample = 1"),
            "{busy}"
        );
        let sampled = changed(|s| {
            busy_day(s);
            s.sample = 10;
        });
        sampled.validate().unwrap();
        assert!(
            sampled.rps / sampled.sample as f64 * sampled.longest_seconds() <= MAX_RUN_REQUESTS
        );
    }

    #[test]
    fn the_longest_run_is_bounded_in_evaluations() {
        // A tiny evaluation_interval made the record path evaluate every tick: each request
        // up to 450 times dearer than MAX_RUN_REQUESTS allows for.
        let hours = |s: &mut Scenario, interval_ms: f64| {
            s.stages.truncate(1);
            s.stages[0].duration_s = 100.0 * 3600.0;
            s.rps = 100.0;
            s.max_extensions = 0;
            s.slo.evaluation_interval = std::time::Duration::from_secs_f64(interval_ms / 1e3);
        };
        let e = refusal(|s| hours(s, 2.0));
        assert_eq!(
            e,
            "invalid slo.evaluation_interval_ms = 2: at least 11.416 ms over the \
             longest run of 360000 s (the stages, each extended max_extensions times): the \
             record path evaluates once per evaluation_interval and at most once a tick of \
             the driver (100.0 a simulated second, the ticks the bursts cut where they start \
             or end counted), and a run at most 31536000 times (MAX_RUN_EVALUATIONS; raise \
             the interval or shorten the stages)"
        );
        changed(|s| hours(s, 11.416)).validate().unwrap();
        // Fewer requests than evaluations due: one a request at most.
        changed(|s| {
            hours(s, 2.0);
            s.rps = 50.0;
        })
        .validate()
        .unwrap();
        // The default interval fits the longest run.
        changed(|s| {
            s.stages.truncate(1);
            s.stages[0].duration_s = MAX_RUN_S;
            s.rps = 100.0;
            s.max_extensions = 0;
        })
        .validate()
        .unwrap();
    }

    #[test]
    fn the_ticks_bursts_cut_count_in_the_evaluations() {
        // A burst's start and its end each cut a tick off the 10 ms grid, and the clock moves
        // a tick at a time: with the stable version bursting for 10 ms every 10.000001 ms and
        // the canary every 10.5 ms, about 390 ticks a simulated second (the driver's tests
        // count them), not 100, and up to as many evaluations with a 1 ms interval.
        let every_ms = |s: &mut Scenario, interval_ms: u64| {
            s.stages.truncate(1);
            s.stages[0].duration_s = 200_000.0;
            s.rps = 1000.0;
            s.max_extensions = 0;
            s.slo.evaluation_interval = std::time::Duration::from_millis(interval_ms);
        };
        let bursts = |every_s: f64| Bursts {
            every_s,
            length_s: MIN_EXTENSION_S,
            error_rate: 0.0,
        };
        // 2 × 10^7 evaluations, one a tick.
        let quiet = changed(|s| every_ms(s, 1));
        assert_eq!(quiet.ticks_per_second(), 100.0);
        quiet.validate().unwrap();
        let interleaved = |s: &mut Scenario, interval_ms: u64| {
            every_ms(s, interval_ms);
            s.stable.bursts = Some(bursts(0.010_000_001));
            s.canary.bursts = Some(bursts(0.0105));
        };
        let ticks = changed(|s| interleaved(s, 1)).ticks_per_second();
        assert!((ticks - (100.0 + 2.0 / 0.010_000_001 + 2.0 / 0.0105)).abs() < 1e-9);
        // Up to 9.8 × 10^7 evaluations.
        let e = refusal(|s| interleaved(s, 1));
        assert!(
            e.starts_with("invalid slo.evaluation_interval_ms = 1: at least 6.342 ms over the "),
            "{e}"
        );
        assert!(
            e.contains(
                "at most once a tick of the driver (490.5 a simulated second, the ticks the \
                 bursts cut where they start or end counted)"
            ),
            "{e}"
        );
        changed(|s| interleaved(s, 7)).validate().unwrap();
        // Bursts on the 10 ms grid end ticks that end there anyway: 10 ms every 20 ms on both
        // services is 100 ticks a second, and 2 × 10^7 evaluations fit.
        let on_the_grid = |s: &mut Scenario| {
            every_ms(s, 1);
            s.stable.bursts = Some(bursts(0.02));
            s.canary.bursts = Some(bursts(0.02));
        };
        let on_grid = changed(on_the_grid);
        assert_eq!(on_grid.ticks_per_second(), 100.0);
        on_grid.validate().unwrap();
        // So do equal schedules, off the grid: their edges are the same instants.
        let equal = changed(|s| {
            interleaved(s, 1);
            s.stable.bursts = Some(bursts(0.0105));
        });
        assert!((equal.ticks_per_second() - (100.0 + 2.0 / 0.0105)).abs() < 1e-9);
        // A schedule on the grid beside one off it: none for the one on the grid, whose
        // edges only put the ticks back on it (`crate::traffic::ticks_per_second`).
        let mixed = changed(|s| {
            on_the_grid(s);
            s.canary.bursts = Some(bursts(0.0105));
        });
        assert!((mixed.ticks_per_second() - (100.0 + 2.0 / 0.0105)).abs() < 1e-9);
        // Bursts that never end cut no tick.
        let always = changed(|s| {
            interleaved(s, 1);
            s.canary.bursts = Some(Bursts {
                length_s: 0.0105,
                ..bursts(0.0105)
            });
        });
        assert!((always.ticks_per_second() - (100.0 + 2.0 / 0.010_000_001)).abs() < 1e-9);
    }

    #[test]
    fn a_stage_shorter_than_a_tick_is_refused() {
        // 1e-300 was accepted, a stage of 0 ns.
        let e = refusal(|s| s.stages[1].duration_s = 1e-300);
        assert_eq!(
            e,
            "invalid stages[1].duration_s = 1e-300: at least 0.01 seconds (one tick of the \
             simulation: a shorter stage sends no request and moves no time)"
        );
        changed(|s| s.stages[1].duration_s = MIN_EXTENSION_S)
            .validate()
            .unwrap();
    }

    /// Scaled to either end of its duration range `scenario` validates; 1 % beyond, it does not.
    fn assert_the_duration_range_is_what_validation_accepts(scenario: &Scenario, what: &str) {
        let (least, most) = scenario.duration_range();
        for (total, valid) in [
            (least, true),
            (most, true),
            (least * 0.99, false),
            (most * 1.01, false),
        ] {
            let mut scaled = scenario.clone();
            scaled.scale_to(total);
            assert_eq!(
                scaled.validate().is_ok(),
                valid,
                "{what} scaled to {total} s"
            );
        }
    }

    #[test]
    fn the_duration_range_is_what_validation_accepts_once_scaled() {
        for name in ScenarioName::value_variants() {
            let builtin = Scenario::builtin(*name);
            assert_the_duration_range_is_what_validation_accepts(&builtin, name.as_str());
        }
    }

    #[test]
    fn the_duration_range_keeps_each_incident_within_a_tick_and_the_longest_run() {
        // A 0.5 s incident in a 360 s ramp: --duration 1s made it 1.4 ms long, refused on
        // incident.length_s, a value never written (exit 1); a start at 1e308 became inf.
        let with_incident = |after_s: f64, length_s: Option<f64>| {
            changed(|s| {
                s.canary.incident = Some(Incident {
                    stage: 1,
                    after_s,
                    error_rate: 1.0,
                    latency_factor: 1.0,
                    length_s,
                });
            })
        };
        let short = with_incident(10.0, Some(0.5));
        let (least, _) = short.duration_range();
        assert!((least - 7.2).abs() < 1e-9, "{least}");
        // A start at the end of its stage (60 s + 4 × 30 s), which holds it within the longest
        // run: it scales with the stage and bounds nothing more.
        let late = with_incident(180.0, None);
        let (_, most) = late.duration_range();
        assert_eq!(most, Scenario::default().duration_range().1);
        let long = with_incident(0.0, Some(MAX_RUN_S / 4.0));
        let (_, most) = long.duration_range();
        assert!((most - 1440.0).abs() < 1e-6, "{most}");
        for (scenario, what) in [(short, "short"), (late, "late"), (long, "long")] {
            assert_the_duration_range_is_what_validation_accepts(&scenario, what);
        }
    }

    #[test]
    fn durations_read_with_units() {
        assert_eq!(parse_duration("90").unwrap(), 90.0);
        assert_eq!(parse_duration("1.5m").unwrap(), 90.0);
        assert_eq!(parse_duration("24h").unwrap(), 86_400.0);
        assert_eq!(parse_duration("500ms").unwrap(), 0.5);
        assert!(parse_duration("0s").is_err());
        assert_eq!(
            parse_duration("-5s").unwrap_err(),
            "duration \"-5s\" must be above zero"
        );
        let unknown = parse_duration("3 fortnights").unwrap_err();
        // `min` is read, and the refusal of an unknown unit lists it.
        assert_eq!(parse_duration("2min").unwrap(), 120.0);
        assert!(unknown.contains("m or min"), "{unknown}");
        assert!(parse_duration("").is_err());
        assert_eq!(parse_duration("365d").unwrap(), MAX_RUN_S);
        assert_eq!(
            parse_duration("50000000d").unwrap_err(),
            "duration \"50000000d\" is longer than 365d, the longest simulated run"
        );
        // Digits beyond an f64 read as infinity, which was refused as not above zero.
        let long = format!("{}d", "9".repeat(400));
        let e = parse_duration(&long).unwrap_err();
        assert!(
            e.ends_with("...(401 bytes)\" is longer than 365d, the longest simulated run"),
            "{e}"
        );
        // Digits too small for an f64 read as 0, and a unit can scale a subnormal to 0: both
        // above zero as written, refused as the library refuses `1e-400`, not as zero.
        for text in [
            format!("0.{}1s", "0".repeat(330)),
            format!("0.{}1ms", "0".repeat(320)),
        ] {
            let e = parse_duration(&text).unwrap_err();
            assert!(e.ends_with(promotion_gates::TINY_NUMBER_REFUSAL), "{e}");
        }
        assert!(parse_duration("0.0000000001ms").unwrap() > 0.0);
        assert!(
            parse_duration("0.000s")
                .unwrap_err()
                .ends_with("must be above zero")
        );
    }

    #[test]
    fn a_state_store_is_refused_under_its_field() {
        // It was opened and written: a second run started from the first one's stored state.
        let e = refusal(|s| {
            s.promotion.store = Some(StoreConfig::Sqlite(promotion_gates::SqliteStoreConfig {
                path: "/tmp/x/st.db".into(),
                sync_interval_ms: 250,
                busy_timeout_ms: 2000,
                fleet_judging: true,
            }));
        });
        assert!(
            e.starts_with(
                "invalid promotion.store = {\"sqlite\":{\"path\":\"/tmp/x/st.db\",\
                 \"sync_interval_ms\":250,"
            ),
            "{e}"
        );
        assert!(
            e.contains(": absent: a simulation never opens a state store"),
            "{e}"
        );
    }

    #[test]
    fn a_name_or_description_the_report_cannot_print_is_refused() {
        // They were printed raw: terminal escapes in the text report, an SVG no XML parser
        // reads.
        assert_eq!(
            refusal(|s| s.name = "a\u{1b}[31mred".into()),
            "invalid name = \"a\\u{1b}[31mred\": text without control, format or invisible \
             characters, line or paragraph separators, U+FFFE or U+FFFF (it holds '\\u{1b}'): \
             the report prints it on a terminal and in the SVG"
        );
        // Printed raw: U+202E showed the rest of the line reversed, U+200B nothing at all.
        let e = refusal(|s| s.name = "good\u{202e}".into());
        assert!(
            e.starts_with("invalid name = \"good\\u{202e}\": text without control, format"),
            "{e}"
        );
        assert!(e.contains("(it holds '\\u{202e}')"), "{e}");
        let e = refusal(|s| s.description = "zero\u{200b}width".into());
        assert!(e.contains("(it holds '\\u{200b}')"), "{e}");
        let e = refusal(|s| s.description = "two\nlines".into());
        assert!(
            e.starts_with("invalid description = \"two\\nlines\": text without"),
            "{e}"
        );
        let e = refusal(|s| s.description = "x\u{FFFF}".into());
        assert!(e.contains("(it holds '\\u{ffff}')"), "{e}");
        let e = refusal(|s| s.name = "n".repeat(MAX_NAME_BYTES + 1));
        assert!(e.ends_with(": at most 128 bytes of text"), "{e}");
        let e = refusal(|s| s.description = "d".repeat(1_000_000));
        assert!(e.len() < 400, "{e}");
        assert!(
            e.contains("...(1000000 bytes)\": at most 1000 bytes of text"),
            "{e}"
        );
        changed(|s| {
            s.name = "n".repeat(MAX_NAME_BYTES);
            s.description = "<b>&amp; \"ünïcode\" ✓</b>".into();
        })
        .validate()
        .unwrap();
    }

    #[test]
    fn a_file_takes_the_good_scenarios_values_but_its_name_description_and_slo() {
        // The docs said every field of a file defaults to the good scenario's; `{}` is named
        // "custom", has no description and judges with the library's slo.
        let file: Scenario = crate::document::parse(std::path::Path::new("s.json"), "{}").unwrap();
        let good = Scenario::builtin(ScenarioName::Good);
        assert_eq!(
            (file.name.as_str(), file.description.as_str()),
            ("custom", "")
        );
        assert_eq!(file.slo, promotion_gates::SloConfig::default());
        assert!(file.slo.promotion_evidence && !good.slo.promotion_evidence);
        let but = Scenario {
            name: good.name.clone(),
            description: good.description.clone(),
            slo: good.slo.clone(),
            ..file
        };
        assert_eq!(but, good);
    }

    #[test]
    fn an_empty_name_is_refused() {
        // Accepted: the report's header read "Scenario : ...".
        assert_eq!(
            refusal(|s| s.name = String::new()),
            "invalid name = \"\": a name for the report, 1 to 128 bytes (left out, it is \
             \"custom\")"
        );
        changed(|s| s.description = String::new())
            .validate()
            .unwrap();
    }

    #[test]
    fn bad_fields_are_named() {
        let mut s = Scenario::default();
        s.stages[2].traffic_percent = Some(120.0);
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "invalid stages[2].traffic_percent = 120: a percentage above 0, at most 100"
        );
        let mut s = Scenario::default();
        s.promotion.slo_threshold = 2.0;
        let e = s.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("invalid promotion.slo_threshold = 2: a fraction"),
            "{e}"
        );
    }

    #[test]
    fn a_service_the_simulation_cannot_represent_is_refused_under_its_field() {
        // Each of these was accepted, then failed the run or was clamped without a word: a
        // p99 1e310 times the median (an infinite spread), latencies past the engine's 60 s.
        let refused = |change: &dyn Fn(&mut ServiceModel)| {
            let mut s = Scenario::default();
            change(&mut s.canary);
            s.validate().unwrap_err().to_string()
        };
        let e = refused(&|m| (m.median_ms, m.p99_ms) = (1e-300, Some(1e10)));
        assert!(
            e.starts_with("invalid canary.median_ms = 1e-300: milliseconds from 0.001"),
            "{e}"
        );
        let e = refused(&|m| m.p99_ms = Some(60_001.0));
        assert!(
            e.starts_with("invalid canary.p99_ms = 60001: milliseconds"),
            "{e}"
        );
        let e = refused(&|m| m.median_ms = 1e300);
        assert!(
            e.contains("60000 (the longest latency it records exactly)"),
            "{e}"
        );
        let e = refused(&|m| (m.p99_ms, m.sigma) = (None, Some(8.5)));
        assert_eq!(
            e,
            "invalid canary.sigma = 8.5: at most 8 (the log-normal's spread)"
        );
        let e = refused(&|m| {
            m.bursts = Some(Bursts {
                every_s: 5e-324,
                length_s: 5e-324,
                error_rate: 0.5,
            });
        });
        assert!(e.starts_with("invalid canary.bursts.every_s = "), "{e}");
        assert!(
            e.ends_with("seconds from 0.01 (one tick of the simulation) to 31536000 (365 days)"),
            "{e}"
        );
        // The extremes it takes: a p99 at 60 s over a median at 1 µs, sigma 8.
        let mut s = Scenario::default();
        (s.canary.median_ms, s.canary.p99_ms) = (0.001, Some(60_000.0));
        s.validate().unwrap();
        crate::traffic::Service::new(&s.canary).unwrap();
        (s.canary.p99_ms, s.canary.sigma) = (None, Some(MAX_SIGMA));
        crate::traffic::Service::new(&s.canary).unwrap();
    }

    #[test]
    fn a_burst_or_incident_beyond_the_longest_run_is_refused_saying_both_limits() {
        // The message said "at least 0.01" of a value refused for being above the most.
        let burst = |m: &mut ServiceModel| {
            m.bursts = Some(Bursts {
                every_s: 1e9,
                length_s: 1.0,
                error_rate: 1.0,
            });
        };
        let e = service_refusal(&burst);
        assert_eq!(
            e,
            "invalid canary.bursts.every_s = 1000000000: seconds from 0.01 (one tick of the \
             simulation) to 31536000 (365 days)"
        );
        let incident = |after_s: f64, length_s: f64| Incident {
            stage: 1,
            after_s,
            error_rate: 1.0,
            latency_factor: 1.0,
            length_s: Some(length_s),
        };
        let e = service_refusal(&|m| m.incident = Some(incident(0.0, 4e7)));
        assert_eq!(
            e,
            "invalid canary.incident.length_s = 40000000: seconds from 0.01 (one tick of the \
             simulation) to 31536000 (365 days)"
        );
        // An unbounded start became `inf` once --duration scaled it.
        let e = service_refusal(&|m| m.incident = Some(incident(1e308, 1.0)));
        assert_eq!(
            e,
            "invalid canary.incident.after_s = 1e308: seconds from 0 to 31536000 (365 days), \
             the longest simulated run"
        );
        changed(|s| {
            s.stages[0].duration_s = MAX_RUN_S;
            s.canary.incident = Some(incident(MAX_RUN_S, MAX_RUN_S));
        })
        .validate_fields()
        .unwrap();
    }

    #[test]
    fn an_incident_that_cannot_start_in_its_stage_is_refused() {
        // Accepted, and the run went without it: stage 1 lasts 180 s at most.
        let incident = |stage: usize, after_s: f64| Incident {
            stage,
            after_s,
            error_rate: 1.0,
            latency_factor: 1.0,
            length_s: None,
        };
        assert_eq!(
            service_refusal(&|m| m.incident = Some(incident(1, 100_000.0))),
            "invalid canary.incident.after_s = 100000: at most 180 s, the longest stage 1 lasts \
             (its duration_s plus max_extensions × extension_s: 60 + 4 × 30 s)"
        );
        let e = refusal(|s| {
            s.max_extensions = 0;
            s.stable.incident = Some(incident(5, 60.5));
        });
        assert!(
            e.starts_with(
                "invalid stable.incident.after_s = 60.5: at most 60 s, the longest \
                 stage 5 lasts (its duration_s plus max_extensions × extension_s: 60 + 0 × 30 s)"
            ),
            "{e}"
        );
        // In the last stage, the end of its longest run is the end of the run: an incident
        // from then on was accepted and met no request. Elsewhere it starts the next stage.
        for after_s in [60.0, 60.5] {
            let e = refusal(|s| {
                s.max_extensions = 0;
                s.stable.incident = Some(incident(6, after_s));
            });
            assert_eq!(
                e,
                format!(
                    "invalid stable.incident.after_s = {after_s}: below 60 s, the longest the \
                     last stage (6) lasts (its duration_s plus max_extensions × extension_s: \
                     60 + 0 × 30 s): an incident from the end of the run on meets no request"
                )
            );
        }
        changed(|s| {
            s.max_extensions = 0;
            s.stable.incident = Some(incident(5, 60.0));
            s.canary.incident = Some(incident(6, 59.995));
        })
        .validate()
        .unwrap();
        changed(|s| s.canary.incident = Some(incident(1, 180.0)))
            .validate()
            .unwrap();
        // --duration scales the start with its stage: one at the stage's very end stays within
        // it, whatever scaling rounds; in the last stage, one just before its end stays before
        // it.
        let last = Scenario::default().stages.len();
        for (stage, after_s) in [
            (1, 0.1 + 4.0 * 0.7),
            (last, (0.1f64 + 4.0 * 0.7).next_down()),
        ] {
            let scenario = changed(|s| {
                s.stages[stage - 1].duration_s = 0.1;
                s.extension_s = 0.7;
                s.canary.incident = Some(incident(stage, after_s));
            });
            let (least, most) = scenario.duration_range();
            for step in 0..=1_000 {
                let total = least * (most / least).powf(f64::from(step) / 1e3);
                let mut scaled = scenario.clone();
                scaled.scale_to(total);
                assert_eq!(
                    scaled.validate(),
                    Ok(()),
                    "stage {stage} scaled to {total} s"
                );
            }
        }
    }

    /// The message of the default scenario's validation error after `change` to its canary.
    fn service_refusal(change: &dyn Fn(&mut ServiceModel)) -> String {
        refusal(|s| change(&mut s.canary))
    }

    #[test]
    fn a_p99_the_engine_cannot_record_is_refused_naming_the_fields_that_imply_it() {
        // Each was accepted: the report showed a p99 of 360 s, the engine, which records at
        // most 60 s, one of 60.03 s.
        let e = refusal(|s| s.stable.median_ms = 60_000.0);
        assert_eq!(
            e,
            "invalid stable.median_ms = 60000: at most 10000 ms without p99_ms or sigma: the \
             p99 is then 6 × median_ms = 360000 ms, above 60000 ms, the longest latency the \
             engine records exactly (set p99_ms or sigma, or lower median_ms)"
        );
        changed(|s| s.stable.median_ms = 10_000.0)
            .validate()
            .unwrap();
        let e = service_refusal(&|m| (m.median_ms, m.sigma) = (0.001, Some(8.0)));
        assert!(
            e.starts_with(
                "invalid canary.sigma = 8: at most 7.698 with median_ms = 0.001: the p99, \
                 median_ms × e^(2.326 × sigma), is then 120937.32"
            ),
            "{e}"
        );
        assert!(
            e.contains(" ms, above 60000 ms, the longest latency"),
            "{e}"
        );
        changed(|s| (s.canary.median_ms, s.canary.sigma) = (0.001, Some(7.698)))
            .validate()
            .unwrap();
        let incident = |latency_factor: f64| Incident {
            stage: 2,
            after_s: 1.0,
            error_rate: 0.0,
            latency_factor,
            length_s: None,
        };
        let e = service_refusal(&|m| m.incident = Some(incident(1_000.0)));
        assert_eq!(
            e,
            "invalid canary.incident.latency_factor = 1000: at most 500 with a p99 of 120 ms: \
             the incident's p99, latency_factor × 120 ms = 120000 ms, is above 60000 ms, the \
             longest latency the engine records exactly"
        );
        changed(|s| s.canary.incident = Some(incident(500.0)))
            .validate()
            .unwrap();
        let e = service_refusal(&|m| {
            m.p99_ms = Some(60_000.0);
            m.incident = Some(incident(1.5));
        });
        assert!(
            e.starts_with(
                "invalid canary.incident.latency_factor = 1.5: at most 1 with a p99 of 60000 ms"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_stage_share_the_library_refuses_is_refused_under_its_field() {
        for percent in [1e-9, 1e-6, 4e-6, 5e-6, 1e-5, 0.01, 0.5] {
            let mut s = Scenario::default();
            s.stages[0].traffic_percent = Some(percent);
            let library = promotion_gates::Environment::Canary {
                traffic_percent: percent,
            }
            .validate();
            let scenario = s.validate();
            // Below half the resolution a share routes nobody: refused outright under its field.
            if percent < promotion_gates::TRAFFIC_PERCENT_RESOLUTION / 2.0 {
                let Err(e) = &scenario else {
                    panic!("{percent}: the scenario was accepted");
                };
                let message = e.to_string();
                assert!(
                    message
                        .starts_with(&format!("invalid stages[0].traffic_percent = {percent}: ")),
                    "{message}"
                );
                assert!(
                    message.contains(&promotion_gates::TRAFFIC_PERCENT_RESOLUTION.to_string()),
                    "{message}"
                );
            }
            match (scenario, library) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(l)) => assert_eq!(
                    e.to_string(),
                    format!(
                        "invalid stages[0].traffic_percent = {}: {}",
                        l.value(),
                        l.expected()
                    )
                ),
                (scenario, library) => {
                    panic!("{percent}: the scenario gave {scenario:?}, the library {library:?}")
                }
            }
        }
    }

    #[test]
    fn scaling_keeps_proportions() {
        let mut s = Scenario::builtin(ScenarioName::Catastrophic);
        s.scale_to(36.0);
        assert!((s.planned_seconds() - 36.0).abs() < 1e-9);
        assert_eq!(s.canary.incident.as_ref().map(|i| i.after_s), Some(3.0));
        // Ten times shorter: the incident's start and length, not the bursts.
        let mut s = Scenario::builtin(ScenarioName::FlakyButFine);
        s.stable.incident = Some(Incident {
            stage: 2,
            after_s: 20.0,
            error_rate: 0.5,
            latency_factor: 1.0,
            length_s: Some(15.0),
        });
        s.scale_to(36.0);
        let incident = s.stable.incident.as_ref().unwrap();
        assert_eq!((incident.after_s, incident.length_s), (2.0, Some(1.5)));
        let bursts = s.canary.bursts.as_ref().unwrap();
        assert_eq!((bursts.every_s, bursts.length_s), (37.0, 5.0));
        assert_eq!(s.extension_s, 3.0);
    }

    #[test]
    fn a_promotion_table_with_every_key_written_reads_as_the_library_reads_it() {
        // promotion_wire copies the library's field list: a key the library reads otherwise
        // (a rename, an alias, a reader of its own) would read differently here.
        let config = promotion_gates::PromotionConfig::from_json(
            r#"{"environment": {"canary": {"traffic_percent": 12.5}}, "feature_flags": ["a"],
                "auto_rollback_enabled": false, "slo_threshold": 0.9,
                "rollback_window_seconds": 120, "gate": "search", "salt": "pepper",
                "graduated_flags": ["b"], "max_rollback_history": 7,
                "store": {"sqlite": {"path": "a.db"}},
                "overrides": {"stable_ids": ["user-1"], "header": "X-Canary"}}"#,
        )
        .unwrap();
        let json = format!(
            r#"{{"promotion": {}}}"#,
            serde_json::to_string(&config).unwrap()
        );
        assert_eq!(read("s.json", &json).promotion, config, "{json}");
        let mut table = toml::Table::new();
        table.insert(
            "promotion".into(),
            toml::Table::try_from(&config).unwrap().into(),
        );
        let text = toml::to_string(&table).unwrap();
        assert_eq!(read("s.toml", &text).promotion, config, "{text}");
        // An unknown key is refused with the library's list of keys.
        let library = promotion_gates::PromotionConfig::from_json(r#"{"x": 1}"#)
            .unwrap_err()
            .to_string();
        let here = crate::document::parse::<Scenario>(
            std::path::Path::new("s.json"),
            r#"{"promotion": {"x": 1}}"#,
        )
        .unwrap_err()
        .to_string();
        let expected = |e: &str| {
            let list = &e[e.find("expected one of").unwrap()..];
            list[..list.find(" at line").unwrap()].to_string()
        };
        assert_eq!(expected(&here), expected(&library), "{here}\n{library}");
    }

    /// `text` read as a scenario file named `name` (its extension picks the format).
    fn read(name: &str, text: &str) -> Scenario {
        crate::document::parse(std::path::Path::new(name), text).unwrap()
    }

    #[test]
    fn a_key_left_out_of_a_table_takes_the_good_scenarios_value_as_the_whole_table_does() {
        // A promotion table without `gate` and `feature_flags` took the library's ("default",
        // none): another salt, so other users went to the canary.
        for (name, text) in [
            ("s.json", r#"{"promotion": {"slo_threshold": 0.9}}"#),
            ("s.toml", "[promotion]\nslo_threshold = 0.9\n"),
        ] {
            let promotion = read(name, text).promotion;
            assert_eq!(promotion.gate, "checkout", "{text}");
            assert_eq!(promotion.feature_flags, ["checkout_v2"], "{text}");
            assert_eq!(promotion.slo_threshold, 0.9, "{text}");
        }
        let none = read("s.json", "{}");
        for table in ["promotion", "stable", "canary", "slo"] {
            assert_eq!(
                read("s.json", &format!(r#"{{"{table}": {{}}}}"#)),
                none,
                "{table}"
            );
            assert_eq!(read("s.toml", &format!("[{table}]\n")), none, "{table}");
        }
        // A key written is the file's, a null `salt` as none, a null `gate` refused by its type.
        let written = read(
            "s.json",
            r#"{"promotion": {"gate": "search", "feature_flags": [], "salt": null}}"#,
        );
        assert_eq!(written.promotion.gate, "search");
        assert!(written.promotion.feature_flags.is_empty());
        assert_eq!(written.promotion.salt, None);
        let e = crate::document::parse::<Scenario>(
            std::path::Path::new("s.json"),
            r#"{"promotion": {"gate": null}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("promotion.gate: invalid type: null, expected a string"),
            "{e}"
        );
        let e = crate::document::parse::<Scenario>(
            std::path::Path::new("s.json"),
            r#"{"promotion": {"gates": "x"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("promotion.gates: unknown field `gates`, expected one of `environment`"),
            "{e}"
        );
    }
}
