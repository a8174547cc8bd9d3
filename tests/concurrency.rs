//! Routing while the gate is rewritten: every decision must come from one published state,
//! and its outcome, recorded at once, is never refused as another gate's (the real `install`'s
//! order, which the loom model of `src/metrics/loom_model.rs` checks only on a stand-in; a
//! reversed order shows here only when the writer is preempted between its two steps).
//!
//! A writer runs a fixed script of writes (config swaps, flag changes, ramps, rollbacks) while
//! readers route without pause. The script is simulated up front, so every state the writer
//! can publish is known: its stage, its environment and the flags each cohort sees. Flag
//! names carry the percentage they were published with, so a decision that mixed two states
//! (one state's environment with another's flags, or a stale threshold) matches none of them.

mod common;

use std::collections::HashSet;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use promotion_gates::{
    BUCKETS, Environment, PromotionConfig, PromotionGateManager, Recorded, RoutingDecision,
    threshold_for_percent,
};

use common::{canary, gate};

const READERS: usize = 3;
/// The writer stops after this many cycles of the script or after `WRITER_TIME`.
const MAX_CYCLES: usize = 2_000;
const WRITER_TIME: Duration = Duration::from_millis(800);
/// Percentages the script ramps to, one per cycle, in turn.
const PERCENTS: [f64; 6] = [1.0, 5.0, 12.5, 25.0, 50.0, 100.0];
/// The latency every reader records (a success well within the SLO: no rule fires).
const LATENCY: Duration = Duration::from_millis(1);

/// One write of the script.
#[derive(Debug, Clone)]
enum Write {
    /// `swap_config` to this environment with these release and graduated flags.
    Swap(Environment, Vec<String>, Vec<String>),
    Enable(String),
    Disable(String),
    /// `promote`, only ever a ramp down (never gated by the judge).
    Promote(Environment),
    Rollback,
}

/// What the gate looks like after a write, as the documentation defines it.
#[derive(Debug, Clone, PartialEq)]
struct State {
    stage: u64,
    environment: Environment,
    release: Vec<String>,
    graduated: Vec<String>,
}

/// The writes of cycle `c`: into a canary whose flags name its percentage, a flag on, a ramp
/// down, the flag off, on to staging, and a rollback to production.
fn cycle(c: usize) -> Vec<Write> {
    let p = PERCENTS[c % PERCENTS.len()];
    let extra = format!("extra-{p}");
    vec![
        Write::Swap(
            canary(p),
            vec![format!("pct-{p}")],
            vec![format!("grad-{p}")],
        ),
        Write::Enable(extra.clone()),
        Write::Promote(canary(p / 2.0)),
        Write::Disable(extra),
        Write::Swap(
            Environment::Staging,
            vec![format!("pct-{p}")],
            vec![format!("grad-{p}")],
        ),
        Write::Rollback,
    ]
}

impl State {
    /// The state after `write`, by the documented rules: a promotion, a rollback, a swap to
    /// another environment and, in Canary or Staging, a flag turned on for the new version
    /// start a new stage; a rollback turns the release's flags off.
    fn after(&self, write: &Write) -> State {
        let mut next = self.clone();
        let judged = |environment: Environment| environment != Environment::Production;
        match write {
            Write::Swap(environment, release, graduated) => {
                let on: Vec<&String> = self.release.iter().chain(&self.graduated).collect();
                let flag_on = release.iter().chain(graduated).any(|f| !on.contains(&f));
                let moved = *environment != self.environment;
                next.stage += u64::from(moved || (judged(*environment) && flag_on));
                next.environment = *environment;
                next.release.clone_from(release);
                next.graduated.clone_from(graduated);
            }
            Write::Enable(flag) => {
                next.stage += u64::from(judged(self.environment));
                next.release.push(flag.clone());
            }
            Write::Disable(flag) => next.release.retain(|f| f != flag),
            Write::Promote(environment) => {
                next.stage += 1;
                next.environment = *environment;
            }
            Write::Rollback => {
                next.stage += 1;
                next.environment = Environment::Production;
                next.release.clear();
            }
        }
        next
    }

    /// The (stage, environment, is_canary, flags) views a decision in this state can have.
    fn views(&self) -> Vec<View> {
        let threshold = threshold_of(self.environment);
        let mut new_version: Vec<String> = self
            .release
            .iter()
            .chain(&self.graduated)
            .cloned()
            .collect();
        new_version.sort();
        let mut stable = self.graduated.clone();
        stable.sort();
        let environment = self.environment.to_string();
        let mut views = Vec::new();
        if threshold > 0 {
            views.push((self.stage, environment.clone(), true, new_version));
        }
        if threshold < BUCKETS {
            views.push((self.stage, environment, false, stable));
        }
        views
    }

    /// Performs `write` on the gate, which is in this state; any refusal fails the test.
    fn apply(&self, manager: &PromotionGateManager, write: &Write) {
        let result = match write {
            Write::Swap(environment, release, graduated) => manager
                .swap_config(PromotionConfig {
                    environment: *environment,
                    feature_flags: release.clone(),
                    graduated_flags: graduated.clone(),
                    ..manager.config()
                })
                .map(drop),
            Write::Enable(flag) => manager.enable_feature(flag),
            Write::Disable(flag) => manager.disable_feature(flag),
            Write::Promote(environment) => manager.promote(*environment),
            Write::Rollback => manager.rollback("stress drill"),
        };
        if let Err(e) = result {
            panic!("{write:?} from {self:?}: {e}");
        }
    }
}

type View = (u64, String, bool, Vec<String>);

fn threshold_of(environment: Environment) -> u32 {
    match environment {
        Environment::Canary { traffic_percent } => threshold_for_percent(traffic_percent),
        Environment::Staging => BUCKETS,
        Environment::Production => 0,
    }
}

/// Checks that `decision` is one of the published views and agrees with itself.
fn check(decision: &RoutingDecision<'_>, published: &HashSet<View>) {
    let threshold = decision.reason.threshold();
    let bucket = decision.reason.bucket().get();
    assert_eq!(
        threshold,
        threshold_of(decision.target_environment),
        "{decision:?}"
    );
    assert_eq!(decision.is_canary, bucket < threshold, "{decision:?}");
    let view = (
        decision.stage.get(),
        decision.target_environment.to_string(),
        decision.is_canary,
        decision
            .enabled_features
            .iter()
            .map(str::to_string)
            .collect(),
    );
    assert!(
        published.contains(&view),
        "no published state looks like {view:?}"
    );
}

/// Sets the flag when dropped, so that readers stop even if the writer panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

#[test]
fn every_decision_comes_from_one_published_state() {
    let initial = State {
        stage: 1,
        environment: Environment::Production,
        release: Vec::new(),
        graduated: Vec::new(),
    };
    let script: Vec<Write> = (0..MAX_CYCLES).flat_map(cycle).collect();
    let states: Vec<State> = std::iter::once(initial.clone())
        .chain(script.iter().scan(initial, |state, write| {
            *state = state.after(write);
            Some(state.clone())
        }))
        .collect();
    let published: HashSet<View> = states.iter().flat_map(State::views).collect();

    let manager = gate(PromotionConfig {
        salt: Some("stress".to_string()),
        ..Default::default()
    });
    let ids: Vec<String> = (0..1_000).map(|i| format!("user-{i}")).collect();
    let stop = AtomicBool::new(false);
    let start = Barrier::new(READERS + 1);

    let (writes, stages_seen) = std::thread::scope(|s| {
        let readers: Vec<_> = (0..READERS)
            .map(|r| {
                let (manager, ids, stop, start, published) =
                    (&manager, &ids, &stop, &start, &published);
                s.spawn(move || {
                    start.wait();
                    let mut last_stage = 0;
                    let mut stages = HashSet::new();
                    for id in ids.iter().cycle().skip(r * 337) {
                        if stop.load(Ordering::Acquire) {
                            break;
                        }
                        let decision = manager.route_request(id);
                        check(&decision, published);
                        // The gate publishes a stage only after its recorders know it: a
                        // decision just routed is counted (or late), never foreign.
                        let recorded = manager.record_outcome(&decision, true, LATENCY);
                        assert_ne!(recorded, Recorded::Foreign, "{decision:?}");
                        let stage = decision.stage.get();
                        assert!(
                            stage >= last_stage,
                            "reader {r} went back from stage {last_stage} to {stage}"
                        );
                        last_stage = stage;
                        stages.insert(stage);
                    }
                    stages.len()
                })
            })
            .collect();

        let stop_readers = StopOnDrop(&stop);
        start.wait();
        let deadline = Instant::now() + WRITER_TIME;
        let mut done = 0;
        for (write, before) in script.iter().zip(&states) {
            if done % 6 == 0 && Instant::now() > deadline {
                break;
            }
            before.apply(&manager, write);
            done += 1;
            std::thread::yield_now(); // give the readers a chance to see each state
        }
        drop(stop_readers);
        let seen: Vec<usize> = readers
            .into_iter()
            .map(|reader| reader.join().expect("reader panicked"))
            .collect();
        (done, seen)
    });

    // The run ends in the state the script reached, and every reader saw the gate move.
    let last = &states[writes];
    assert_eq!(manager.stage().get(), last.stage);
    assert_eq!(manager.environment(), last.environment);
    let config = manager.config();
    assert_eq!(
        (config.feature_flags, config.graduated_flags),
        (last.release.clone(), last.graduated.clone())
    );
    check(&manager.route_request("user-1"), &published);
    assert_eq!(manager.foreign_outcomes(), 0);
    let events = script[..writes]
        .iter()
        .filter(|w| matches!(w, Write::Disable(_) | Write::Rollback))
        .count();
    assert_eq!(manager.get_rollback_history().len(), events.min(100));
    assert!(writes >= 6, "the writer finished no cycle");
    assert!(
        stages_seen.iter().any(|&stages| stages > 1),
        "no reader saw the gate move in {writes} writes: {stages_seen:?}"
    );
}
