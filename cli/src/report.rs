//! What a simulation found: the stages, the outcome and the rollback, as a table for people
//! and as JSON for machines.

use promotion_gates::{CanaryHealth, Cohort, Evidence, RollbackEvent};
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use std::fmt::Write as _;
use std::io::{self, Write};

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// What the scenario shows.
    pub description: String,
    /// Seed of the run.
    pub seed: u64,
    /// Requests per simulated second.
    pub rps: f64,
    /// Fast mode: 1 request in `sample` was simulated (1: all of them).
    pub sample: u64,
    /// How the rollout ended.
    pub outcome: Outcome,
    /// The gate's environment at the end, in the engine's words (`Production`, `Canary{5}`).
    pub final_environment: String,
    /// Simulated seconds, extensions included.
    pub simulated_s: f64,
    /// Requests routed and recorded through the engine.
    pub requests: u64,
    /// Requests they stand for (`requests × sample`).
    pub represented_requests: u64,
    /// Outcomes the engine dropped as late (their stage had ended).
    pub late_outcomes: u64,
    /// One entry per stage entered.
    pub stages: Vec<StageReport>,
    /// The rollback, if there was one.
    pub rollback: Option<RollbackReport>,
    /// What the canary's incident cost before the rollback, if it had one that began before
    /// the rollback (or the end).
    pub incident: Option<IncidentReport>,
    /// The same for the stable version's incident.
    pub stable_incident: Option<IncidentReport>,
    /// The judge sampled over time, for the plot.
    #[serde(skip)]
    pub timeline: Vec<TimelinePoint>,
    /// What the judge saw when it rolled back (read from the event's evidence line).
    #[serde(skip)]
    pub judged_at_rollback: Option<TimelinePoint>,
    /// The judge's `min_samples`: below it, the plot leaves a cohort's numbers out.
    #[serde(skip)]
    pub min_samples: u64,
    /// The judge's window, in seconds.
    #[serde(skip)]
    pub window_s: f64,
    /// Wall-clock seconds the simulation took (not in JSON, which is reproducible).
    #[serde(skip)]
    pub wall_s: f64,
}

/// How a rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every stage passed its gate: the release is in Production.
    PromotedToProduction,
    /// The engine rolled the canary back.
    RolledBack,
    /// A promotion was refused more often than the scenario allows.
    Stalled,
}

impl Outcome {
    fn describe(self) -> &'static str {
        match self {
            Outcome::PromotedToProduction => "promoted to Production",
            Outcome::RolledBack => "ROLLED BACK",
            Outcome::Stalled => "stalled (a promotion was refused too often)",
        }
    }
}

/// One stage as it ran.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    /// Stage number, from 1.
    pub number: usize,
    /// `canary` or `staging`.
    pub environment: String,
    /// Share of traffic to the new version.
    pub traffic_percent: f64,
    /// Simulated second it started.
    pub start_s: f64,
    /// How long it ran, extensions included.
    pub duration_s: f64,
    /// How long it was planned to run.
    pub planned_s: f64,
    /// How many times it was extended after a refused promotion.
    pub extensions: u32,
    /// The new version's requests in this stage.
    pub canary: CohortReport,
    /// The stable version's requests in this stage.
    pub stable: CohortReport,
    /// The judge at the end of the stage, or its extension, also when that judgement or the
    /// promotion after it rolled back; absent when a rollback cut the stage short.
    pub judge: Option<JudgeReport>,
    /// Why each refused promotion was refused, in the engine's words.
    pub refusals: Vec<String>,
    /// What happened at the end.
    pub verdict: Verdict,
    /// Where the gate went, when promoted.
    pub promoted_to: Option<String>,
}

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The gate let the release through to the next stage.
    Promoted,
    /// The engine rolled back during the stage (or at its gate).
    RolledBack,
    /// The gate kept refusing.
    Stalled,
}

/// One cohort's traffic in a stage, as simulated (the whole stage, not the judge's window).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CohortReport {
    /// Requests routed to this cohort.
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
    /// `errors / requests`; absent with no requests.
    pub error_rate: Option<f64>,
    /// Median latency in milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds (a latency beyond 60 s counts as 60 s, as in
    /// the engine).
    pub p99_ms: Option<f64>,
}

/// The judge's verdict on a window, reduced to what a report shows.
#[derive(Debug, Clone, Serialize)]
pub struct JudgeReport {
    /// Health score, `0..=1`.
    pub health_score: f64,
    /// HEALTHY, MONITOR or ROLLBACK.
    pub recommendation: String,
    /// New-version requests in the window.
    pub window_canary_requests: u64,
    /// Stable requests in the window.
    pub window_stable_requests: u64,
    /// The rules that fired, each with what was observed against what limit.
    pub fired: Vec<String>,
    /// The whole evidence line.
    pub evidence: String,
}

impl JudgeReport {
    /// The report of one health check.
    pub fn of(health: &CanaryHealth) -> Self {
        Self {
            health_score: health.health_score,
            recommendation: health.recommendation.to_string(),
            window_canary_requests: health.canary_requests,
            window_stable_requests: health.production_requests,
            fired: health.evidence.fired().map(ToString::to_string).collect(),
            evidence: health.evidence.to_string(),
        }
    }
}

/// The rollback event, with where the simulator saw it happen.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    /// Simulated second of the rollback (to the request when the record path fired).
    pub at_s: f64,
    /// The stage rolled back.
    pub stage: usize,
    /// Its environment, in the engine's words.
    pub environment: String,
    /// `automatic` or `manual`.
    pub trigger: String,
    /// Which call the judge acted in: `record_path` (an outcome being recorded),
    /// `health_check` (the simulator's `monitor_canary_health`) or `promotion_gate`
    /// (`promote`).
    pub detected_by: String,
    /// Names of the rules that fired.
    pub rules: Vec<String>,
    /// Each fired rule's finding: observed, limit, p-value.
    pub fired: Vec<String>,
    /// The evidence line of the event.
    pub evidence: String,
    /// The event's whole reason, as the engine wrote it.
    pub reason: String,
    /// The judge's evidence, structured (automatic rollbacks only).
    #[serde(skip)]
    pub judged: Option<Evidence>,
}

impl RollbackReport {
    /// The report of `event`, which the simulator saw at `at_s` in `stage`, detected `by`.
    pub fn of_event(
        event: Option<&RollbackEvent>,
        at_s: f64,
        stage: usize,
        detected_by: &str,
    ) -> Self {
        let evidence = event.and_then(|e| e.evidence.as_ref());
        let reason = event.map_or_else(String::new, |e| e.reason.clone());
        Self {
            at_s,
            stage,
            environment: event.map_or_else(String::new, |e| e.environment.to_string()),
            trigger: event.map_or("unknown", |e| e.trigger.name()).to_string(),
            detected_by: detected_by.to_string(),
            rules: evidence.map_or_else(Vec::new, |e| {
                e.fired().map(|f| f.rule.name().to_string()).collect()
            }),
            fired: evidence.map_or_else(Vec::new, |e| e.fired().map(ToString::to_string).collect()),
            evidence: evidence.map_or_else(|| reason.clone(), ToString::to_string),
            reason,
            judged: evidence.cloned(),
        }
    }
}

/// An incident's cost: how much of its version's traffic failed before the engine acted.
///
/// In JSON the counts are named after the version: `canary_requests` and
/// `failing_canary_requests` for the canary's incident, `stable_requests` and
/// `failing_stable_requests` for the stable version's.
#[derive(Debug, Clone)]
pub struct IncidentReport {
    /// The version whose service had the incident (not in JSON but in the counts' names).
    pub cohort: Cohort,
    /// The stage it started in.
    pub stage: usize,
    /// Simulated second it started.
    pub onset_s: f64,
    /// The version's requests during the incident, before the rollback (or the end).
    pub requests: u64,
    /// Of which failed: what the incident cost users.
    pub failing_requests: u64,
    /// Simulated seconds from onset to rollback (above 0: an incident from the rollback on is
    /// not reported).
    pub seconds_to_rollback: Option<f64>,
}

impl Serialize for IncidentReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (requests, failing) = match self.cohort {
            Cohort::Canary => ("canary_requests", "failing_canary_requests"),
            Cohort::Stable => ("stable_requests", "failing_stable_requests"),
        };
        let mut incident = serializer.serialize_struct("IncidentReport", 5)?;
        incident.serialize_field("stage", &self.stage)?;
        incident.serialize_field("onset_s", &self.onset_s)?;
        incident.serialize_field(requests, &self.requests)?;
        incident.serialize_field(failing, &self.failing_requests)?;
        incident.serialize_field("seconds_to_rollback", &self.seconds_to_rollback)?;
        incident.end()
    }
}

impl IncidentReport {
    /// How the text report and the plot name it: `incident`, or `stable incident`.
    pub fn title(&self) -> &'static str {
        match self.cohort {
            Cohort::Canary => "incident",
            Cohort::Stable => "stable incident",
        }
    }
}

/// The judge at one moment, for the plot.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelinePoint {
    /// Simulated second.
    pub t_s: f64,
    /// Share of traffic routed to the new version.
    pub canary_percent: f64,
    /// Requests of each cohort in the judge's window: `[canary, stable]`.
    pub window_requests: [u64; 2],
    /// Error rates in the window: `[canary, stable]`.
    pub error_rate: [f64; 2],
    /// p99 latencies in the window, in milliseconds: `[canary, stable]`.
    pub p99_ms: [f64; 2],
    /// Health score (unknown at a rollback whose evidence does not list it).
    pub health_score: Option<f64>,
}

impl TimelinePoint {
    /// A point from one health check at `t_s`.
    pub fn of(t_s: f64, health: &CanaryHealth) -> Self {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        Self {
            t_s,
            canary_percent: health.traffic_percent,
            window_requests: [health.canary_requests, health.production_requests],
            error_rate: [health.canary_error_rate, health.production_error_rate],
            p99_ms: [
                ms(health.canary_p99_latency),
                ms(health.production_p99_latency),
            ],
            health_score: Some(health.health_score),
        }
    }

    /// The point the judge saw when it rolled back, from the event's evidence.
    pub fn of_evidence(t_s: f64, evidence: &Evidence) -> Self {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let (c, p) = (&evidence.canary, &evidence.stable);
        Self {
            t_s,
            canary_percent: 0.0,
            window_requests: [c.requests, p.requests],
            error_rate: [c.error_rate, p.error_rate],
            p99_ms: [ms(c.p99), ms(p.p99)],
            health_score: Some(evidence.health_score),
        }
    }
}

/// Seconds as people read them: `45 s`, `2.5 min`, `4 h`.
pub fn human_duration(seconds: f64) -> String {
    if seconds > 0.0 && seconds < 0.0001 {
        "under 0.1 ms".into()
    } else if seconds > 0.0 && seconds < 0.1 {
        format!("{} ms", trim_float(seconds * 1000.0, 1))
    } else if seconds < 120.0 {
        format!("{} s", trim_float(seconds, 1))
    } else if seconds < 7200.0 {
        format!("{} min", trim_float(seconds / 60.0, 1))
    } else {
        format!("{} h", trim_float(seconds / 3600.0, 2))
    }
}

/// ` (1 in N simulated)` in fast mode, nothing otherwise.
pub fn sampling(sample: u64) -> String {
    if sample > 1 {
        format!(" (1 in {sample} simulated)")
    } else {
        String::new()
    }
}

/// `n` with thousands separated: `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn trim_float(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A rate as a percentage with two decimals, and a rate above 0 that two decimals would show
/// as `0.00%` as `<0.01%` (a canary with 3 errors in 100,000 requests had some).
fn percent(rate: Option<f64>) -> String {
    match rate {
        None => "-".into(),
        Some(r) if r > 0.0 && r < 0.00005 => "<0.01%".into(),
        Some(r) => format!("{:.2}%", r * 100.0),
    }
}

/// Decimals a share of traffic is shown with: three, as a reader reads a share (`33.333%`, not
/// `33.333333%`), and for a share within 0.001 % of none or of all one below the routing
/// resolution ([`TRAFFIC_PERCENT_RESOLUTION`](promotion_gates::TRAFFIC_PERCENT_RESOLUTION),
/// 0.00001 %), so that every valid share shows, the least (half of it) as `0.000005%`, never
/// as `0%`, and one short of all never as `100%`.
const SHARE_DECIMALS: usize = 3;
/// Decimals of a share within 0.001 % of none or of all (see [`SHARE_DECIMALS`]).
const TINY_SHARE_DECIMALS: usize = 6;

/// A share of traffic: `12.5%`, `33.333%`, `0.00001%`.
fn share(percent: f64) -> String {
    let near_an_end = (percent > 0.0 && percent < 0.001) || (percent < 100.0 && percent > 99.999);
    let decimals = if near_an_end {
        TINY_SHARE_DECIMALS
    } else {
        SHARE_DECIMALS
    };
    format!("{}%", trim_float(percent, decimals))
}

/// A latency in whole milliseconds (`250 ms`), or to the microsecond, the engine's resolution,
/// below one millisecond (`0.5 ms`), so that a fast service's p99 does not show as `0 ms`.
pub fn milliseconds(ms: f64) -> String {
    let decimals = if ms < 1.0 { 3 } else { 0 };
    format!("{} ms", trim_float(ms, decimals))
}

fn millis(ms: Option<f64>) -> String {
    ms.map_or("-".into(), milliseconds)
}

/// The one-line summary printed as each stage ends.
pub fn stage_line(stage: &StageReport) -> String {
    let mut line = format!(
        "stage {} {:>7} {:>6}  {:>8}  canary {:>9} req {:>6} err p99 {:>7} | stable {:>9} req {:>6} err p99 {:>7}",
        stage.number,
        stage.environment,
        share(stage.traffic_percent),
        human_duration(stage.duration_s),
        thousands(stage.canary.requests),
        percent(stage.canary.error_rate),
        millis(stage.canary.p99_ms),
        thousands(stage.stable.requests),
        percent(stage.stable.error_rate),
        millis(stage.stable.p99_ms),
    );
    if let Some(judge) = &stage.judge {
        let _ = write!(
            line,
            " | score {:.2} {}",
            judge.health_score, judge.recommendation
        );
    }
    let _ = write!(line, " -> {}", verdict_text(stage));
    line
}

fn verdict_text(stage: &StageReport) -> String {
    let extended = if stage.extensions > 0 {
        format!(
            " after {} extension{}",
            stage.extensions,
            if stage.extensions == 1 { "" } else { "s" }
        )
    } else {
        String::new()
    };
    match stage.verdict {
        Verdict::Promoted => format!(
            "promoted to {}{extended}",
            stage.promoted_to.as_deref().unwrap_or("?")
        ),
        Verdict::RolledBack => "ROLLED BACK".into(),
        Verdict::Stalled => format!("stalled{extended}"),
    }
}

/// The human report: the stage table, the outcome, the rollback and its evidence.
pub fn write_text(out: &mut impl Write, report: &Report) -> io::Result<()> {
    let header = [
        "stage",
        "environment",
        "traffic",
        "duration",
        "canary req",
        "stable req",
        "canary err",
        "stable err",
        "canary p99",
        "stable p99",
        "score",
        "judge",
        "verdict",
    ];
    let rows: Vec<[String; 13]> = report
        .stages
        .iter()
        .map(|s| {
            [
                s.number.to_string(),
                s.environment.clone(),
                share(s.traffic_percent),
                human_duration(s.duration_s),
                thousands(s.canary.requests),
                thousands(s.stable.requests),
                percent(s.canary.error_rate),
                percent(s.stable.error_rate),
                millis(s.canary.p99_ms),
                millis(s.stable.p99_ms),
                s.judge
                    .as_ref()
                    .map_or("-".into(), |j| format!("{:.2}", j.health_score)),
                s.judge
                    .as_ref()
                    .map_or("-".into(), |j| j.recommendation.clone()),
                verdict_text(s),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Text columns left-aligned, numbers right-aligned.
    let left = [
        true, true, false, false, false, false, false, false, false, false, false, true, true,
    ];
    let write_row = |out: &mut dyn Write, cells: &[String]| -> io::Result<()> {
        let mut line = String::new();
        for ((cell, w), l) in cells.iter().zip(widths).zip(left) {
            if l {
                let _ = write!(line, "{cell:<w$}  ");
            } else {
                let _ = write!(line, "{cell:>w$}  ");
            }
        }
        writeln!(out, "{}", line.trim_end())
    };
    writeln!(out)?;
    write_row(out, &header.map(str::to_string))?;
    for row in &rows {
        write_row(out, row)?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "Outcome: {} (final environment {}), {} simulated, {} requests through the engine{}, {} late.",
        report.outcome.describe(),
        report.final_environment,
        human_duration(report.simulated_s),
        thousands(report.requests),
        if report.sample > 1 {
            format!(
                " (fast mode: 1 in {}, standing for {})",
                report.sample,
                thousands(report.represented_requests)
            )
        } else {
            String::new()
        },
        thousands(report.late_outcomes),
    )?;
    if let Some(rollback) = &report.rollback {
        writeln!(
            out,
            "Rolled back at {} in stage {} ({}), trigger {}, detected in the {}.",
            human_duration(rollback.at_s),
            rollback.stage,
            rollback.environment,
            rollback.trigger,
            rollback.detected_by.replace('_', " "),
        )?;
        writeln!(out, "  rules fired: {}", rollback.rules.join(", "))?;
        for finding in &rollback.fired {
            writeln!(out, "    {finding}")?;
        }
        writeln!(out, "  evidence: {}", rollback.evidence)?;
    }
    for incident in [&report.incident, &report.stable_incident]
        .into_iter()
        .flatten()
    {
        let title = incident.title();
        writeln!(
            out,
            "{}{} from {} (stage {}): {} failing {} requests of {} before {}.",
            title[..1].to_uppercase(),
            &title[1..],
            human_duration(incident.onset_s),
            incident.stage,
            thousands(incident.failing_requests),
            incident.cohort.name(),
            thousands(incident.requests),
            incident.seconds_to_rollback.map_or_else(
                || "the end (no rollback)".to_string(),
                |s| format!("the rollback, {} after onset", human_duration(s))
            ),
        )?;
    }
    for stage in report.stages.iter().filter(|s| !s.refusals.is_empty()) {
        writeln!(out, "Stage {} promotion refused:", stage.number)?;
        for refusal in &stage.refusals {
            writeln!(out, "  {refusal}")?;
        }
    }
    writeln!(
        out,
        "Simulated in {:.2} s wall time (seed {}).",
        report.wall_s, report.seed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234), "1,234");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(human_duration(60.0), "60 s");
        assert_eq!(human_duration(90.5), "90.5 s");
        assert_eq!(human_duration(360.0), "6 min");
        assert_eq!(human_duration(86_400.0), "24 h");
        // A rollback 40 ms after an incident's onset is not "0 s" after it.
        assert_eq!(human_duration(0.04), "40 ms");
        assert_eq!(human_duration(0.0123), "12.3 ms");
        assert_eq!(human_duration(0.00004), "under 0.1 ms");
        assert_eq!(human_duration(0.0), "0 s");
        assert_eq!(human_duration(0.5), "0.5 s");
        assert_eq!(percent(Some(0.00003)), "<0.01%");
        assert_eq!(percent(Some(0.00005)), "0.01%");
        assert_eq!(percent(Some(0.0)), "0.00%");
        assert_eq!(percent(None), "-");
    }

    /// A promoted canary stage of `percent`, both cohorts' p99 `p99_ms`.
    fn stage(percent: f64, p99_ms: f64) -> StageReport {
        let cohort = CohortReport {
            requests: 1000,
            errors: 5,
            error_rate: Some(0.005),
            p50_ms: Some(p99_ms / 2.0),
            p99_ms: Some(p99_ms),
        };
        StageReport {
            number: 1,
            environment: "canary".into(),
            traffic_percent: percent,
            start_s: 0.0,
            duration_s: 60.0,
            planned_s: 60.0,
            extensions: 0,
            canary: cohort.clone(),
            stable: cohort,
            judge: None,
            refusals: Vec::new(),
            verdict: Verdict::Promoted,
            promoted_to: Some("Canary{5}".into()),
        }
    }

    /// The stage table row of `stage`, as [`write_text`] writes it.
    fn table_row(stage: StageReport) -> String {
        let report = Report {
            scenario: "custom".into(),
            description: String::new(),
            seed: 42,
            rps: 100.0,
            sample: 1,
            outcome: Outcome::PromotedToProduction,
            final_environment: "Production".into(),
            simulated_s: 60.0,
            requests: 2000,
            represented_requests: 2000,
            late_outcomes: 0,
            stages: vec![stage],
            rollback: None,
            incident: None,
            stable_incident: None,
            timeline: Vec::new(),
            judged_at_rollback: None,
            min_samples: 100,
            window_s: 60.0,
            wall_s: 0.0,
        };
        let mut out = Vec::new();
        write_text(&mut out, &report).unwrap();
        let text = String::from_utf8(out).unwrap();
        text.lines().nth(2).unwrap().to_string()
    }

    #[test]
    fn a_tiny_share_and_a_fast_p99_keep_their_digits() {
        // The least share that routes anyone: half the routing resolution of 0.00001 %.
        let least = promotion_gates::TRAFFIC_PERCENT_RESOLUTION / 2.0;
        for (percent, shown) in [
            (0.00001, "0.00001%"),
            (least, "0.000005%"),
            (99.99999, "99.99999%"),
            (100.0 - least, "99.999995%"),
        ] {
            let line = stage_line(&stage(percent, 0.5));
            assert!(line.contains(&format!(" {shown} ")), "{line}");
            assert!(line.contains("p99  0.5 ms |"), "{line}");
            let row = table_row(stage(percent, 0.5));
            assert!(row.contains(&format!(" {shown} ")), "{row}");
            assert!(row.contains(" 0.5 ms "), "{row}");
        }
        let line = stage_line(&stage(0.1, 0.001));
        assert!(line.contains("p99 0.001 ms |"), "{line}");
    }

    #[test]
    fn ordinary_shares_and_p99s_print_as_they_did() {
        for (percent, p99_ms, shown_percent, shown_p99) in [
            (1.0, 250.0, "1%", "250 ms"),
            (12.5, 120.319, "12.5%", "120 ms"),
            (100.0, 1.5, "100%", "2 ms"),
            (33.333, 60_030.975, "33.333%", "60031 ms"),
            (33.3333333, 60_030.975, "33.333%", "60031 ms"),
        ] {
            let line = stage_line(&stage(percent, p99_ms));
            assert!(line.contains(&format!(" {shown_percent} ")), "{line}");
            assert!(line.contains(&format!(" {shown_p99} |")), "{line}");
            let row = table_row(stage(percent, p99_ms));
            assert!(row.contains(&format!(" {shown_percent} ")), "{row}");
            assert!(row.contains(&format!(" {shown_p99} ")), "{row}");
        }
    }
}
