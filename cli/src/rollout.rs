//! The driver: one rollout on the real engine ([`PromotionGateManager::with_clock`] and a
//! [`ManualClock`]), in simulated time.
//!
//! Time moves in ticks of 10 ms, a tick cut short where an incident or a burst starts or
//! ends, so that it takes effect at the instant it is given. In each tick the driver sends the tick's share of `rps`
//! (1 in `sample` of them in fast mode) as requests from random users: each is routed with
//! `route_request_bytes`, served by the synthetic service of its cohort, and recorded with
//! `record_outcome` and the decision it was routed by. The engine judges by itself on that
//! record path and may roll back at any request; the driver notices from the next decision's
//! stage and stops there. At the end of each stage the driver calls `promote(next)`; a refusal
//! extends the stage (up to `max_extensions` times). Every sample interval it also reads the
//! judge with `monitor_canary_health`, which, unlike the read-only `health()`, acts on its
//! verdict too: a rollback found there is reported as such.

use promotion_gates::{
    Cohort, Environment, Error, MAX_TRACKED_LATENCY, ManualClock, PromotionError,
    PromotionGateManager, SloAdmissionController, StageId,
};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::CliError;
use crate::progress::Progress;
use crate::report::{
    CohortReport, IncidentReport, JudgeReport, Outcome, Report, RollbackReport, StageReport,
    TimelinePoint, Verdict, stage_line,
};
use crate::scenario::Scenario;
use crate::traffic::{Conditions, Service, after, nanos, seconds};

/// Simulated time between two batches of requests: 10 ms.
pub const TICK_NS: u64 = 10_000_000;

/// About this many health checks over a planned ramp.
const TIMELINE_POINTS: f64 = 200.0;

/// At most about this many health checks over the longest run (every stage extended
/// `max_extensions` times), so that the timeline stays small however long the run.
const MOST_TIMELINE_POINTS: f64 = 100_000.0;

/// Least simulated time between two health checks. Each check judges and may act, like the
/// record path's own evaluation (every `evaluation_interval`, 1 s by default): sampling five
/// times less often leaves nearly every rollback to the record path.
const LEAST_CHECK_INTERVAL_S: f64 = 5.0;

/// Where the engine's rollback happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DetectedBy {
    RecordPath,
    HealthCheck,
    PromotionGate,
}

impl DetectedBy {
    fn name(self) -> &'static str {
        match self {
            DetectedBy::RecordPath => "record_path",
            DetectedBy::HealthCheck => "health_check",
            DetectedBy::PromotionGate => "promotion_gate",
        }
    }
}

/// Runs `scenario` (already validated) and reports what happened.
pub fn run(scenario: &Scenario, progress: &Progress) -> Result<Report, CliError> {
    let started = Instant::now();
    let mut driver = Driver::new(scenario, progress)?;
    let mut report = driver.rollout()?;
    report.wall_s = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The longest latency the engine records, in microseconds: longer ones count as this.
const MAX_TRACKED_MICROS: u64 = MAX_TRACKED_LATENCY.as_micros() as u64;

/// One cohort's traffic in one stage.
#[derive(Debug)]
struct CohortTally {
    requests: u64,
    errors: u64,
    /// The latencies as the engine's histograms hold them: 1 µs to [`MAX_TRACKED_LATENCY`],
    /// two significant figures.
    latency_us: hdrhistogram::Histogram<u64>,
}

impl CohortTally {
    fn new() -> Result<Self, CliError> {
        let latency_us = hdrhistogram::Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, 2)
            .map_err(|e| CliError::Simulation(format!("latency histogram: {e}")))?;
        Ok(Self {
            requests: 0,
            errors: 0,
            latency_us,
        })
    }

    /// Counts one request, its latency capped at [`MAX_TRACKED_LATENCY`] as the engine caps
    /// it, so that the report shows the p99 the judge saw.
    fn record(&mut self, success: bool, latency: Duration) {
        self.requests += 1;
        self.errors += u64::from(!success);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us
            .saturating_record(micros.min(MAX_TRACKED_MICROS));
    }

    fn report(&self) -> CohortReport {
        let (rate, p50, p99) = if self.requests == 0 {
            (None, None, None)
        } else {
            let ms = |q: f64| Some(self.latency_us.value_at_quantile(q) as f64 / 1e3);
            (
                Some(self.errors as f64 / self.requests as f64),
                ms(0.5),
                ms(0.99),
            )
        };
        CohortReport {
            requests: self.requests,
            errors: self.errors,
            error_rate: rate,
            p50_ms: p50,
            p99_ms: p99,
        }
    }
}

/// What a service's incident has cost so far: its version's requests during it.
#[derive(Debug, Default)]
struct IncidentTally {
    requests: u64,
    failing: u64,
}

/// How a burst of traffic ended.
enum Flow {
    /// The time ran out; the stage goes on.
    Done,
    /// The engine rolled back, at this simulated second.
    RolledBack(DetectedBy, f64),
}

/// Writes `user-<n>` ids without allocating.
struct UserIds {
    buffer: [u8; 25],
}

impl UserIds {
    fn id(&mut self, mut n: u64) -> &[u8] {
        let mut at = self.buffer.len();
        loop {
            at -= 1;
            self.buffer[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        at -= 5;
        self.buffer[at..at + 5].copy_from_slice(b"user-");
        &self.buffer[at..]
    }
}

struct Driver<'s> {
    scenario: &'s Scenario,
    progress: &'s Progress,
    clock: Arc<ManualClock>,
    gate: PromotionGateManager,
    rng: Xoshiro256PlusPlus,
    /// Indexed like the engine's cohorts: `[canary, stable]`.
    services: [Service; 2],
    ids: UserIds,
    now_ns: u64,
    /// Fractional requests carried from one tick to the next.
    carry: f64,
    /// Requests sent to the engine per simulated nanosecond.
    per_ns: f64,
    /// The stage the driver last saw the gate in; another one means the engine rolled back.
    stage: StageId,
    requests: u64,
    timeline: Vec<TimelinePoint>,
    sample_every_ns: u64,
    next_sample_ns: u64,
    /// Indexed like [`services`](Self::services): each service's incident.
    incidents: [IncidentTally; 2],
    /// The ticks moved so far, for the tests of [`Scenario::ticks_per_second`].
    #[cfg(test)]
    ticks: u64,
}

/// Simulated time between two health checks: about [`TIMELINE_POINTS`] over the planned ramp,
/// at most about [`MOST_TIMELINE_POINTS`] over the longest run, never under
/// [`LEAST_CHECK_INTERVAL_S`].
fn health_check_interval_ns(scenario: &Scenario) -> u64 {
    nanos(
        (scenario.planned_seconds() / TIMELINE_POINTS)
            .max(scenario.longest_seconds() / MOST_TIMELINE_POINTS)
            .max(LEAST_CHECK_INTERVAL_S),
    )
}

impl<'s> Driver<'s> {
    fn new(scenario: &'s Scenario, progress: &'s Progress) -> Result<Self, CliError> {
        let clock = Arc::new(ManualClock::new());
        let slo = SloAdmissionController::new(scenario.slo.clone()).map_err(Error::from)?;
        let gate = PromotionGateManager::with_clock(
            scenario.promotion.clone(),
            slo,
            Arc::<ManualClock>::clone(&clock),
        )?;
        let service = |model| Service::new(model).map_err(CliError::Simulation);
        let stage = gate.stage();
        Ok(Self {
            scenario,
            progress,
            clock,
            gate,
            rng: Xoshiro256PlusPlus::seed_from_u64(scenario.seed),
            services: [service(&scenario.canary)?, service(&scenario.stable)?],
            ids: UserIds { buffer: [0; 25] },
            now_ns: 0,
            carry: 0.0,
            per_ns: scenario.rps / scenario.sample as f64 / 1e9,
            stage,
            requests: 0,
            timeline: Vec::new(),
            sample_every_ns: health_check_interval_ns(scenario),
            next_sample_ns: 0,
            incidents: Default::default(),
            #[cfg(test)]
            ticks: 0,
        })
    }

    /// The whole ramp: each stage, its gate, until Production, a rollback or a stall.
    fn rollout(&mut self) -> Result<Report, CliError> {
        let scenario = self.scenario;
        let mut stages = Vec::new();
        let mut rollback = None;
        let mut outcome = Outcome::PromotedToProduction;
        // A new rollout from Production is not gated.
        if let Some(first) = scenario.stages.first() {
            self.gate.promote(first.environment())?;
            self.stage = self.gate.stage();
        }
        for (index, spec) in scenario.stages.iter().enumerate() {
            let number = index + 1;
            let next = scenario
                .stages
                .get(index + 1)
                .map_or(Environment::Production, |s| s.environment());
            let start_ns = self.now_ns;
            for service in &mut self.services {
                service.enter_stage(number, start_ns);
            }
            self.progress
                .message(format!("stage {number}: {}", self.gate.environment()));
            let mut tallies = [CohortTally::new()?, CohortTally::new()?];
            let mut refusals = Vec::new();
            let mut extensions = 0;
            let mut judge;
            let mut flow = self.traffic(spec.duration_s, &mut tallies);
            let verdict = loop {
                if let Flow::RolledBack(by, at) = flow {
                    // Cut short, in the stage or in an extension: not judged at its end (a
                    // judge before an extension was not the stage's last).
                    rollback = Some((by, at, number));
                    judge = None;
                    break Verdict::RolledBack;
                }
                let health = self.health_check();
                judge = Some(JudgeReport::of(&health));
                if self.rolled_back() {
                    rollback = Some((DetectedBy::HealthCheck, seconds(self.now_ns), number));
                    break Verdict::RolledBack;
                }
                match self.gate.promote(next) {
                    Ok(()) => {
                        self.stage = self.gate.stage();
                        break Verdict::Promoted;
                    }
                    Err(Error::Promotion(
                        refusal @ (PromotionError::InsufficientData { .. }
                        | PromotionError::SloNotMet { .. }),
                    )) => {
                        refusals.push(refusal.to_string());
                        if self.rolled_back() {
                            rollback =
                                Some((DetectedBy::PromotionGate, seconds(self.now_ns), number));
                            break Verdict::RolledBack;
                        }
                        if extensions == scenario.max_extensions {
                            break Verdict::Stalled;
                        }
                        extensions += 1;
                        self.progress.extend(scenario.extension_s);
                        flow = self.traffic(scenario.extension_s, &mut tallies);
                    }
                    Err(other) => return Err(other.into()),
                }
            };
            let stage = StageReport {
                number,
                environment: spec.environment().name().to_string(),
                traffic_percent: spec.percent(),
                start_s: seconds(start_ns),
                duration_s: seconds(self.now_ns - start_ns),
                planned_s: spec.duration_s,
                extensions,
                canary: tallies[Cohort::Canary as usize].report(),
                stable: tallies[Cohort::Stable as usize].report(),
                judge,
                refusals,
                verdict,
                promoted_to: (verdict == Verdict::Promoted).then(|| next.to_string()),
            };
            self.progress.line(&stage_line(&stage))?;
            stages.push(stage);
            match verdict {
                Verdict::Promoted => {
                    // The new stage's first point: its share, an empty window. In Production
                    // the new version has become the stable one and serves everybody.
                    let health = self.gate.monitor_canary_health();
                    let mut point = TimelinePoint::of(seconds(self.now_ns), &health);
                    if next == Environment::Production {
                        point.canary_percent = 100.0;
                    }
                    self.timeline.push(point);
                }
                Verdict::RolledBack => {
                    outcome = Outcome::RolledBack;
                    break;
                }
                Verdict::Stalled => {
                    outcome = Outcome::Stalled;
                    break;
                }
            }
        }
        let rollback = rollback.map(|(by, at, stage)| self.rollback_report(by, at, stage));
        let mut judged_at_rollback = None;
        if let Some(rollback) = &rollback {
            // What the judge saw when it acted, then the share dropping to zero.
            let at = self
                .timeline
                .last()
                .map_or(rollback.at_s, |p| p.t_s.max(rollback.at_s));
            judged_at_rollback = rollback
                .judged
                .as_ref()
                .map(|e| TimelinePoint::of_evidence(at, e));
            if let Some(last) = self.timeline.last() {
                // The share held until the rollback: a step, not a slope.
                self.timeline.push(TimelinePoint {
                    t_s: at,
                    window_requests: [0, 0],
                    ..last.clone()
                });
            }
            self.timeline.push(TimelinePoint {
                t_s: at,
                canary_percent: 0.0,
                window_requests: [0, 0],
                error_rate: [0.0, 0.0],
                p99_ms: [0.0, 0.0],
                health_score: None,
            });
        }
        let [incident, stable_incident] =
            Cohort::ALL.map(|cohort| self.incident_report(cohort, rollback.as_ref(), &stages));
        self.progress.finish();
        Ok(Report {
            scenario: scenario.name.clone(),
            description: scenario.description.clone(),
            seed: scenario.seed,
            rps: scenario.rps,
            sample: scenario.sample,
            outcome,
            final_environment: self.gate.environment().to_string(),
            simulated_s: seconds(self.now_ns),
            requests: self.requests,
            represented_requests: self.requests.saturating_mul(scenario.sample),
            late_outcomes: self.gate.late_outcomes(),
            stages,
            rollback,
            incident,
            stable_incident,
            timeline: std::mem::take(&mut self.timeline),
            judged_at_rollback,
            min_samples: scenario.slo.min_samples,
            window_s: scenario.promotion.rollback_window_seconds as f64,
            wall_s: 0.0,
        })
    }

    /// Whether the engine has left the stage the driver put it in.
    fn rolled_back(&self) -> bool {
        self.gate.stage() != self.stage
    }

    /// Reads the judge (which acts on its verdict) and keeps the point for the plot.
    fn health_check(&mut self) -> promotion_gates::CanaryHealth {
        let health = self.gate.monitor_canary_health();
        self.timeline
            .push(TimelinePoint::of(seconds(self.now_ns), &health));
        health
    }

    /// Sends `duration_s` of traffic, or less if the engine rolls back.
    fn traffic(&mut self, duration_s: f64, tallies: &mut [CohortTally; 2]) -> Flow {
        let end = after(self.now_ns, duration_s);
        while self.now_ns < end {
            // A tick is cut where a service changes, so that its conditions hold all through.
            let tick_end = self
                .services
                .iter()
                .filter_map(|service| service.next_change_ns(self.now_ns))
                .fold(self.now_ns.saturating_add(TICK_NS).min(end), u64::min);
            self.clock.set(Duration::from_nanos(self.now_ns));
            #[cfg(test)]
            {
                self.ticks += 1;
            }
            let now_s = seconds(self.now_ns);
            let conditions = [
                self.services[0].conditions(self.now_ns),
                self.services[1].conditions(self.now_ns),
            ];
            self.carry += (tick_end - self.now_ns) as f64 * self.per_ns;
            let count = self.carry as u64;
            self.carry -= count as f64;
            for k in 0..count {
                if !self.request(&conditions, tallies) {
                    let at = now_s + seconds(tick_end - self.now_ns) * k as f64 / count as f64;
                    self.now_ns = tick_end;
                    return Flow::RolledBack(DetectedBy::RecordPath, at);
                }
            }
            self.now_ns = tick_end;
            if self.rolled_back() {
                return Flow::RolledBack(DetectedBy::RecordPath, seconds(tick_end));
            }
            if self.now_ns >= self.next_sample_ns {
                self.next_sample_ns = self.now_ns.saturating_add(self.sample_every_ns);
                self.health_check();
                if self.rolled_back() {
                    return Flow::RolledBack(DetectedBy::HealthCheck, seconds(self.now_ns));
                }
                self.progress.at(seconds(self.now_ns));
            }
        }
        Flow::Done
    }

    /// One request: routed, served, recorded. False when the gate had already rolled back
    /// (the request is then not sent).
    #[inline]
    fn request(&mut self, conditions: &[Conditions; 2], tallies: &mut [CohortTally; 2]) -> bool {
        let user = self.rng.random_range(0..self.scenario.users);
        let decision = self.gate.route_request_bytes(self.ids.id(user));
        if decision.stage != self.stage {
            return false;
        }
        let cohort = decision.cohort() as usize;
        let now = &conditions[cohort];
        let (success, latency) = self.services[cohort].serve(&mut self.rng, now);
        self.gate.record_outcome(&decision, success, latency);
        self.requests += 1;
        tallies[cohort].record(success, latency);
        if now.incident {
            let incident = &mut self.incidents[cohort];
            incident.requests += 1;
            incident.failing += u64::from(!success);
        }
        true
    }

    fn rollback_report(&self, by: DetectedBy, at_s: f64, stage: usize) -> RollbackReport {
        let history = self.gate.rollback_history();
        RollbackReport::of_event(history.last(), at_s, stage, by.name())
    }

    /// What the incident of `cohort`'s service cost, if it began before the run stopped: before
    /// the rollback, or before the end. An incident from the rollback's instant on (its onset
    /// cuts a tick, and the engine may roll back in the tick that ends there, or at its
    /// first request) met no request and is not one before the rollback. Its stage is the one
    /// of `stages` that was running at its onset, which is the stage it was planned for only if
    /// that stage lasted `after_s` (the onset is the planned stage's start plus `after_s`, and
    /// a stage not extended may end before).
    fn incident_report(
        &self,
        cohort: Cohort,
        rollback: Option<&RollbackReport>,
        stages: &[StageReport],
    ) -> Option<IncidentReport> {
        let onset = self.services[cohort as usize].incident_onset()?;
        let stopped = rollback.map_or(seconds(self.now_ns), |r| r.at_s);
        if onset >= stopped {
            return None;
        }
        let stage = stages
            .iter()
            .take_while(|s| s.start_s <= onset)
            .last()?
            .number;
        let tally = &self.incidents[cohort as usize];
        Some(IncidentReport {
            cohort,
            stage,
            onset_s: onset,
            requests: tally.requests,
            failing_requests: tally.failing,
            seconds_to_rollback: rollback.map(|r| r.at_s - onset),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Bursts, MIN_EXTENSION_S, ScenarioName};

    #[test]
    fn user_ids_are_written_in_place() {
        let mut ids = UserIds { buffer: [0; 25] };
        assert_eq!(ids.id(0), b"user-0");
        assert_eq!(ids.id(12345), b"user-12345");
        assert_eq!(ids.id(u64::MAX), b"user-18446744073709551615");
    }

    #[test]
    fn health_checks_are_bounded_over_the_longest_run() {
        let mut scenario = Scenario::builtin(ScenarioName::Good);
        assert_eq!(health_check_interval_ns(&scenario), 5_000_000_000);
        scenario.scale_to(86_400.0);
        assert_eq!(health_check_interval_ns(&scenario), 432_000_000_000);
        // A short ramp whose extensions may last a year: not a check every 5 s of it.
        scenario.scale_to(60.0);
        scenario.extension_s = 1e6;
        scenario.max_extensions = 5;
        let interval_s = seconds(health_check_interval_ns(&scenario));
        assert!(
            scenario.longest_seconds() / interval_s <= MOST_TIMELINE_POINTS,
            "{interval_s}"
        );
    }

    /// The longest p99 the engine can report: the top of the bucket that holds
    /// [`MAX_TRACKED_LATENCY`], in milliseconds (60.03 s).
    fn engine_longest_p99_ms() -> f64 {
        let micros = u64::try_from(MAX_TRACKED_LATENCY.as_micros()).unwrap();
        let engine = hdrhistogram::Histogram::<u64>::new_with_bounds(1, micros, 2).unwrap();
        engine.highest_equivalent(micros) as f64 / 1e3
    }

    #[test]
    fn the_report_caps_latencies_where_the_engine_does() {
        // The widest spread the limits take: a p99 at 60 s over a median at 1 µs, so that
        // about one request in a hundred is drawn beyond 60 s.
        let mut scenario = Scenario::default();
        scenario.stable.median_ms = 0.001;
        scenario.stable.p99_ms = None;
        scenario.stable.sigma = Some(7.698);
        let progress = Progress::new(scenario.planned_seconds(), false, false);
        let report = run(&scenario, &progress).unwrap();
        let longest = engine_longest_p99_ms();
        for stage in &report.stages {
            let p99 = stage.stable.p99_ms.unwrap();
            assert!(p99 <= longest, "stage {}: {p99} ms", stage.number);
        }
        assert!(report.stages[0].stable.p99_ms.unwrap() > 59_000.0);
    }

    /// The `good` scenario, its canary failing every request from `after_s` seconds into
    /// stage `stage` on, run to its end.
    fn with_incident(stage: usize, after_s: f64) -> Report {
        let mut scenario = Scenario::builtin(ScenarioName::Good);
        scenario.canary.incident = Some(crate::scenario::Incident {
            stage,
            after_s,
            error_rate: 1.0,
            latency_factor: 1.0,
            length_s: None,
        });
        scenario.validate().unwrap();
        let progress = Progress::new(scenario.planned_seconds(), false, false);
        run(&scenario, &progress).unwrap()
    }

    #[test]
    fn an_incident_in_the_last_tick_of_the_last_stage_meets_its_requests() {
        // When a tick's conditions were read at its start only, an incident that started within
        // the last stage's last tick met no request (nothing runs after it), 0 of 0.
        let last = Scenario::builtin(ScenarioName::Good).stages.len();
        let report = with_incident(last, 59.995);
        let incident = report.incident.unwrap();
        assert_eq!(incident.stage, last);
        // Staging sends the canary all of the 2 000 rps: about 10 requests in the last 5 ms,
        // every one failing.
        assert!((9..=11).contains(&incident.requests), "{incident:?}");
        assert_eq!(incident.failing_requests, incident.requests);
    }

    #[test]
    fn an_incident_is_reported_in_the_stage_it_started_in() {
        // Planned 150 s into stage 1 of 60 s stages that are promoted on time: it starts in
        // stage 3, which the report names, not stage 1.
        let report = with_incident(1, 150.0);
        let incident = report.incident.unwrap();
        assert_eq!(incident.onset_s, 150.0);
        let running = report
            .stages
            .iter()
            .rfind(|s| s.start_s <= incident.onset_s)
            .unwrap();
        assert_eq!(running.number, 3);
        assert_eq!(incident.stage, running.number);
        // At a stage's very end it starts with the next stage.
        let incident = with_incident(1, 60.0).incident.unwrap();
        assert_eq!((incident.onset_s, incident.stage), (60.0, 2));
    }

    /// One canary stage at 100 % for 100 s at 1 000 rps, no errors but the canary's bursts of
    /// `length_s` every second, each failing every request, auto-rollback off.
    fn with_bursts(length_s: f64) -> Report {
        let mut scenario = Scenario {
            rps: 1000.0,
            stages: vec![crate::scenario::StageSpec {
                environment: crate::scenario::StageKind::Canary,
                traffic_percent: Some(100.0),
                duration_s: 100.0,
            }],
            max_extensions: 0,
            ..Scenario::default()
        };
        scenario.promotion.auto_rollback_enabled = false;
        scenario.stable.error_rate = 0.0;
        scenario.canary.error_rate = 0.0;
        scenario.canary.bursts = Some(crate::scenario::Bursts {
            every_s: 1.0,
            length_s,
            error_rate: 1.0,
        });
        scenario.validate().unwrap();
        let progress = Progress::new(scenario.planned_seconds(), false, false);
        run(&scenario, &progress).unwrap()
    }

    #[test]
    fn a_burst_lasts_its_length_not_whole_ticks() {
        // Read at the start of 10 ms ticks, a burst of 11 ms every second failed 2 000 of the
        // 100 000 canary requests (20 ms a second), and one of 15 ms as many.
        for length_s in [0.011, 0.015] {
            let report = with_bursts(length_s);
            let canary = &report.stages[0].canary;
            assert_eq!(canary.requests, 100_000, "{canary:?}");
            // length_s of each second fails: within 4 standard deviations of a binomial draw
            // of that share (the requests of a burst all fail, so the count is near exact).
            let share = length_s / 1.0;
            let expected = share * canary.requests as f64;
            let sd = (expected * (1.0 - share)).sqrt();
            assert!(
                (canary.errors as f64 - expected).abs() <= 4.0 * sd,
                "{length_s} s bursts: {} errors, expected {expected}",
                canary.errors
            );
        }
    }

    /// The ticks the driver moves in `duration_s` of the first stage, at a request a
    /// simulated second, with these bursts (none failing) of the stable version and the
    /// canary, and what [`Scenario::ticks_per_second`] bounds them by.
    fn ticks_with(stable: Option<Bursts>, canary: Option<Bursts>, duration_s: f64) -> (u64, f64) {
        let mut scenario = Scenario {
            rps: 1.0,
            ..Scenario::default()
        };
        scenario.stable.bursts = stable;
        scenario.canary.bursts = canary;
        let progress = Progress::new(duration_s, false, false);
        let mut driver = Driver::new(&scenario, &progress).unwrap();
        let mut tallies = [CohortTally::new().unwrap(), CohortTally::new().unwrap()];
        assert!(matches!(
            driver.traffic(duration_s, &mut tallies),
            Flow::Done
        ));
        (driver.ticks, scenario.ticks_per_second())
    }

    /// Bursts of 10 ms every `every_s`.
    fn ten_ms_every(every_s: f64) -> Option<Bursts> {
        Some(Bursts {
            every_s,
            length_s: 0.01,
            error_rate: 0.0,
        })
    }

    #[test]
    fn the_driver_ticks_as_the_bursts_cut() {
        // No bursts: 100 000 ticks in 1000 s.
        assert_eq!(ticks_with(None, None, 1000.0), (100_000, 100.0));
        // Both bursting for 10 ms every 11 ms: both time bursts from 0, so their edges are the
        // same instants, and each 11 ms is a tick of 10 ms and one of 1 ms: 181 818 ticks in
        // 1000 s, not the 463 636 of 100 + 2 × 2 / 0.011 a second (docs/simulator.md).
        let (ticks, bound) = ticks_with(ten_ms_every(0.011), ten_ms_every(0.011), 1000.0);
        assert!(ticks.abs_diff(181_818) <= 2, "{ticks}");
        assert!((bound - (100.0 + 2.0 / 0.011)).abs() < 1e-9, "{bound}");
        // Interleaved: the stable version every 10.000001 ms (a tick and a tick of 1 ns each
        // period), the canary every 10.5 ms, 390 474 ticks in 1000 s as a model of the cuts
        // alone counts them: the most the limits allow is near this (docs/simulator.md).
        let (ticks, bound) = ticks_with(ten_ms_every(0.010_000_001), ten_ms_every(0.0105), 1000.0);
        assert!(ticks.abs_diff(390_474) <= 10, "{ticks}");
        assert!(ticks as f64 <= bound * 1000.0, "{ticks} > {bound} a second");
    }

    #[test]
    fn a_schedule_on_the_grid_beside_one_off_it_adds_no_tick() {
        // The stable version bursting for 10 ms every 20 ms (edges on the grid), the canary
        // for 10 ms every 10.000001 ms or every 290.5 ms (edges off it): each edge off the grid
        // cuts one tick more, and the stable version's edges, which put the ticks back on the
        // grid, none (the proof is at `crate::traffic::ticks_per_second`). The bound is 100
        // ticks a second and two each canary period, and the driver comes within 400 ticks of
        // it in 1000 s (within 3 with the first canary); it counted one more for each edge of
        // either schedule, whichever has fewer, 100 000 and 6 885 ticks the driver never makes.
        for (canary_every_s, counted) in [(0.010_000_001, 299_997), (0.2905, 106_540)] {
            let (ticks, bound) =
                ticks_with(ten_ms_every(0.02), ten_ms_every(canary_every_s), 1000.0);
            assert!(ticks.abs_diff(counted) <= 10, "{canary_every_s} s: {ticks}");
            assert!(
                (bound - (100.0 + 2.0 / canary_every_s)).abs() < 1e-9,
                "{bound}"
            );
            let most = bound * 1000.0;
            assert!(ticks as f64 <= most, "{ticks} > {bound} a second");
            assert!(
                most - (ticks as f64) < 400.0,
                "{ticks} well below {bound} a second"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(64))]
        /// Whatever the bursts, on the 10 ms grid or off it, equal or not, the driver's ticks in
        /// a run never exceed [`Scenario::ticks_per_second`] × its length, but for the ticks
        /// its ends cut: one each edge in the last, partial period of each service, and the
        /// last tick's own.
        #[test]
        fn the_ticks_per_second_bound_the_driver(
            schedules in proptest::collection::vec(
                proptest::option::of((1u64..=6, 0.0f64..=1.0, proptest::bool::ANY)),
                2,
            ),
            same in proptest::bool::ANY,
            duration_s in 0.5f64..3.0,
        ) {
            // `every_s` of 1 to 6 ticks, on the grid or up to a tick more; `length_s` from a
            // tick to `every_s`, on the grid when `every_s` is.
            let bursts = |schedule: &Option<(u64, f64, bool)>| {
                schedule.map(|(ticks, share, on_grid)| {
                    let tick = MIN_EXTENSION_S;
                    let every_s = if on_grid {
                        ticks as f64 * tick
                    } else {
                        (ticks as f64 + share) * tick
                    };
                    let length_s = if on_grid {
                        ((share * (ticks - 1) as f64).round() + 1.0) * tick
                    } else {
                        tick + share * (every_s - tick)
                    };
                    Bursts { every_s, length_s, error_rate: 0.0 }
                })
            };
            let stable = bursts(&schedules[0]);
            let canary = if same { stable.clone() } else { bursts(&schedules[1]) };
            let (ticks, bound) = ticks_with(stable, canary, duration_s);
            proptest::prop_assert!(
                ticks as f64 <= bound * duration_s + 3.0,
                "{} ticks in {} s, bound {} a second", ticks, duration_s, bound
            );
        }
    }

    #[test]
    fn traffic_at_the_end_of_simulated_time_stops_there() {
        let scenario = Scenario::builtin(ScenarioName::Good);
        let progress = Progress::new(1.0, false, false);
        let mut driver = Driver::new(&scenario, &progress).unwrap();
        let mut tallies = [CohortTally::new().unwrap(), CohortTally::new().unwrap()];
        // Less than three ticks before the end of u64 nanoseconds (the last tick is cut short),
        // a stage far longer than what is left.
        driver.now_ns = u64::MAX - 3 * TICK_NS + 1;
        driver.next_sample_ns = driver.now_ns;
        let flow = driver.traffic(2e10, &mut tallies);
        assert!(matches!(flow, Flow::Done));
        assert_eq!(driver.now_ns, u64::MAX);
        assert_eq!(driver.next_sample_ns, u64::MAX);
        assert_eq!(after(u64::MAX - 1, 1.0), u64::MAX);
    }
}
