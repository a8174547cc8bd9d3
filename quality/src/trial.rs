//! One seeded trial in simulated time: Poisson arrivals, the canary's share by a coin, each
//! outcome recorded into a gate on a manual clock (automatic rollback on) and into the
//! reference judges' tallies; the engine is asked `check_slo_compliance` every few seconds,
//! the references analyse every 60 s. The Flagger-style judge's first iteration, at the
//! stage's start (t = 0), starts its analysis and checks nothing: in Flagger that iteration
//! raises the canary's weight from 0, so its traffic begins there, and the first check, at
//! 60 s, covers the canary's first minute.

use std::sync::Arc;
use std::time::Duration;

use promotion_gates::{
    Environment, ManualClock, PromotionConfig, PromotionGateManager, Recommendation,
    SloAdmissionController, SloConfig,
};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::reference::{Call, Flagger, FlaggerLimits, Step, Tally, kayenta};
use crate::scenario::Scenario;

/// What one judge did in a trial.
#[derive(Debug, Clone, Copy, Default)]
pub struct Decision {
    /// Seconds and canary requests at rollback.
    pub rollback: Option<(f64, u64)>,
    /// Canary requests and seconds at the first look that said promotable before the
    /// rollback (or the end).
    pub first_promotable: Option<(u64, f64)>,
}

impl Decision {
    fn look(&mut self, promotable: bool, canary: u64, t: f64) {
        if self.rollback.is_none() && promotable {
            self.first_promotable.get_or_insert((canary, t));
        }
    }

    /// Whether a look said promotable before the rollback (or the end).
    pub fn promotable_before(&self) -> bool {
        self.first_promotable.is_some()
    }
}

/// The three judges' decisions in one trial, and when the engine first said NO_DATA.
#[derive(Debug, Clone, Copy, Default)]
pub struct Trial {
    pub engine: Decision,
    pub kayenta: Decision,
    pub flagger: Decision,
    pub no_data_at: Option<f64>,
}

/// One tally for each cohort.
#[derive(Debug, Default)]
struct PerCohort {
    canary: Tally,
    stable: Tally,
}

impl PerCohort {
    fn of(&mut self, canary: bool) -> &mut Tally {
        if canary {
            &mut self.canary
        } else {
            &mut self.stable
        }
    }
}

/// What the reference judges read: the stage's outcomes so far by cohort (Kayenta-style),
/// the canary's last minute and the Flagger-style judge's state.
struct References {
    stage: PerCohort,
    last_minute: Tally,
    flagger: Flagger,
}

/// Runs one trial of `scenario` with `seed`; an error when the gate cannot be built.
pub fn run(scenario: &Scenario, seed: u64) -> Result<Trial, String> {
    let clock = Arc::new(ManualClock::new());
    let config = PromotionConfig {
        environment: Environment::Canary {
            traffic_percent: scenario.share * 100.0,
        },
        ..Default::default()
    };
    let slo_config = SloConfig::default();
    let flagger = Flagger::new(FlaggerLimits::of(&slo_config));
    let slo = SloAdmissionController::new(slo_config)
        .map_err(|e| format!("{}: the SLO controller: {e}", scenario.name))?;
    let gate = PromotionGateManager::with_clock(config, slo, clock.clone())
        .map_err(|e| format!("{}: the gate: {e}", scenario.name))?;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut refs = References {
        stage: PerCohort::default(),
        last_minute: Tally::default(),
        flagger,
    };
    let mut trial = Trial::default();
    let (stage, mut canary_requests) = (gate.stage(), 0u64);
    // Flagger's start iteration, at t = 0, before any request: the canary gets its share
    // from here on, and the first check is at 60 s (`Step::Started`, nothing checked).
    refs.flagger.iterate(&refs.last_minute);
    let (mut t, mut next_look, mut next_analysis) = (0.0f64, scenario.look_s, 60.0);
    while t < scenario.horizon_s && !decided(&trial) {
        t += -rng.random::<f64>().max(1e-300).ln() / scenario.rps;
        while next_look <= t {
            clock.set(Duration::from_secs_f64(next_look));
            engine_look(&gate, stage, &mut trial, canary_requests, next_look);
            next_look += scenario.look_s;
        }
        while next_analysis <= t {
            analyse(&mut refs, &mut trial, canary_requests, next_analysis);
            next_analysis += 60.0;
        }
        let canary = rng.random::<f64>() < scenario.share;
        let (ok, ms) = scenario.service.serve(&mut rng, canary, t);
        canary_requests += u64::from(canary);
        if canary && scenario.no_outcomes {
            continue;
        }
        refs.stage.of(canary).record(ok, ms);
        if canary {
            refs.last_minute.record(ok, ms);
        }
        if trial.engine.rollback.is_none() {
            clock.set(Duration::from_secs_f64(t));
            gate.record_for(stage, canary, ok, Duration::from_secs_f64(ms / 1e3));
            if gate.stage() != stage {
                trial.engine.rollback = Some((t, canary_requests));
            }
        }
    }
    if trial.engine.rollback.is_some() {
        explain(&gate, scenario, seed);
    }
    Ok(trial)
}

/// Every judge has rolled back: nothing more to learn.
fn decided(trial: &Trial) -> bool {
    trial.engine.rollback.is_some()
        && trial.kayenta.rollback.is_some()
        && trial.flagger.rollback.is_some()
}

fn engine_look(
    gate: &PromotionGateManager,
    stage: promotion_gates::StageId,
    trial: &mut Trial,
    canary: u64,
    t: f64,
) {
    if trial.engine.rollback.is_some() {
        return;
    }
    let health = gate.monitor_canary_health();
    if gate.stage() != stage {
        trial.engine.rollback = Some((t, canary));
        return;
    }
    if health.recommendation == Recommendation::NoData {
        trial.no_data_at.get_or_insert(t);
    }
    let promotable = gate.check_slo_compliance() == Ok(true);
    trial.engine.look(promotable, canary, t);
}

fn analyse(refs: &mut References, trial: &mut Trial, canary: u64, t: f64) {
    if trial.kayenta.rollback.is_none() {
        match kayenta(&refs.stage.canary, &refs.stage.stable) {
            Call::Fail => trial.kayenta.rollback = Some((t, canary)),
            Call::Pass => trial
                .kayenta
                .look(refs.stage.canary.requests > 0, canary, t),
        }
    }
    if trial.flagger.rollback.is_none() {
        match refs.flagger.iterate(&refs.last_minute) {
            Step::RolledBack => trial.flagger.rollback = Some((t, canary)),
            Step::Passed => trial.flagger.look(true, canary, t),
            Step::Started | Step::Failed => {}
        }
    }
    refs.last_minute.clear();
}

/// With `JUDGE_QUALITY_REASONS` set, prints why the engine rolled back (to stderr).
fn explain(gate: &PromotionGateManager, scenario: &Scenario, seed: u64) {
    if std::env::var_os("JUDGE_QUALITY_REASONS").is_some()
        && let Some(event) = gate.rollback_history().last()
    {
        eprintln!("{} seed {seed}: {}", scenario.name, event.reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario;

    fn named(part: &str) -> Scenario {
        let found = scenario::all(false)
            .into_iter()
            .find(|s| s.name.contains(part));
        found.unwrap_or_else(|| panic!("no scenario named {part}"))
    }

    #[test]
    fn flagger_style_starts_at_the_stages_start() {
        // Flagger's start iteration is at t = 0, so a canary failing every check is checked at
        // 60, 120, 180, 240 and 300 s (the fifth failed check) and rolled back at the next
        // iteration, 360 s: not 420 s, as when the start was taken for the iteration at 60 s.
        for part in ["dead canary", "no data"] {
            let scenario = named(part);
            for seed in 1..=3 {
                let trial = run(&scenario, seed).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(
                    trial.flagger.rollback.map(|r| r.0),
                    Some(360.0),
                    "{part}, seed {seed}"
                );
            }
        }
    }
}
