//! The judge end to end: simulated traffic through the public API on a manual clock, each
//! scenario asserting the verdict and how long (in time and in canary requests) it took.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a broken expectation is a failed test"
)]

mod common;
mod traffic;

use common::{canary, gate_with_clock};
use promotion_gates::{
    Clock, Environment, Error, ManualClock, PromotionConfig, PromotionError, PromotionGateManager,
    Recommendation, RollbackTrigger, Rule,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use traffic::{Driver, Run, Traffic, Users, Version};

/// Production in every scenario: 1 % errors, latency median 20 ms, p99 about 64 ms.
fn stable() -> Version {
    Version::new(0.01, 20.0, 0.5)
}

/// Traffic at `rate` where the canary serves as `canary` and the stable version as [`stable`].
fn traffic(rate: f64, canary: Version) -> Traffic {
    Traffic {
        rate,
        canary,
        stable: stable(),
    }
}

/// A canary gate at `percent`, default SLO policy, on a manual clock at zero.
fn canary_gate(percent: f64, auto_rollback: bool) -> (PromotionGateManager, Arc<ManualClock>) {
    gate_with_clock(PromotionConfig {
        environment: canary(percent),
        auto_rollback_enabled: auto_rollback,
        ..Default::default()
    })
}

/// The rules that fired for a run's automatic rollback, from its evidence.
fn fired_rules(run: &Run) -> Vec<Rule> {
    let evidence = run
        .evidence()
        .unwrap_or_else(|| panic!("no evidence: {run:?}"));
    evidence.fired().map(|f| f.rule).collect()
}

/// Sends `traffic` to a fresh 10 % canary gate (automatic rollback on) per seed, for at most
/// `bound`, and checks that each rolled back with a complete automatic rollback event: the
/// trigger, the environment left, the evidence (whose counts are every request of the stage,
/// as the run recorded them) and the time (the gate's clock). Prints the spread of canary
/// requests and milliseconds to rollback under `name`.
fn rollbacks(
    name: &str,
    traffic: &Traffic,
    seeds: std::ops::Range<u64>,
    users: Users,
    bound: Duration,
) -> Vec<Run> {
    let from = canary(10.0);
    let runs: Vec<Run> = seeds
        .map(|seed| {
            let (gate, clock) = canary_gate(10.0, true);
            let run = Driver::new(&gate, clock.clone(), seed, users).run(traffic, bound);
            let event = run
                .rollback
                .as_ref()
                .unwrap_or_else(|| panic!("seed {seed}: {run:?}"));
            assert_eq!(event.trigger, RollbackTrigger::Automatic);
            assert_eq!(event.environment, from);
            assert_eq!(event.feature, from.to_string());
            assert_eq!(event.timestamp, clock.wall(), "stamped by the gate's clock");
            assert_eq!(gate.environment(), Environment::Production);
            let reason = &event.reason;
            let evidence = event
                .evidence
                .as_ref()
                .unwrap_or_else(|| panic!("seed {seed}: no evidence: {reason}"));
            assert_eq!(evidence.environment, from, "{evidence}");
            assert!(evidence.fired().count() > 0, "{evidence}");
            // The reason carries the same evidence, as text.
            assert!(reason.contains(&evidence.to_string()), "{reason}");
            let stable = run.requests - run.canary_requests;
            assert_eq!(
                (
                    evidence.canary.requests,
                    evidence.canary.errors,
                    evidence.stable.requests
                ),
                (run.canary_requests, run.canary_failures, stable),
                "seed {seed}: the evidence counts every request of the stage: {evidence}"
            );
            run
        })
        .collect();
    let spread = |value: fn(&Run) -> u64| {
        let mut values: Vec<u64> = runs.iter().map(value).collect();
        values.sort_unstable();
        (
            values[0],
            values[values.len() / 2],
            values[values.len() - 1],
        )
    };
    println!(
        "{name}: canary requests to rollback (min, median, max) {:?}, ms {:?}",
        spread(|r| r.canary_requests),
        spread(|r| r.elapsed.as_millis() as u64)
    );
    runs
}

/// Seeds of the A/A experiment.
const AA_SEEDS: u64 = 200;
/// Simulated time of each A/A run at [`AA_RATE`]: 60 evaluations, about 3 000 canary requests.
const AA_DURATION: Duration = Duration::from_secs(60);
/// Requests per second of the A/A runs (kept modest so that 200 runs take seconds in debug).
const AA_RATE: f64 = 500.0;
/// Most A/A runs allowed to roll back: 1 % of seeds. Each rule tests at α = 0.001, but the
/// judge looks again every second and after every 16th canary error, so the chance of a false
/// rollback per run is above α; 1 % is what the judge is held to. Measured: 0 of these 200
/// runs; 0 of 1 000 runs of 180 s at 2 000 rps (36 000 canary requests and 180 evaluations
/// each, one request id per request) in a release build.
const MAX_FALSE_ROLLBACKS: usize = AA_SEEDS as usize / 100;

#[test]
fn a_canary_identical_to_the_stable_version_is_rarely_rolled_back() {
    let aa = traffic(AA_RATE, stable());
    let next_seed = AtomicU64::new(0);
    let rolled_back = Mutex::new(Vec::new());
    let healthy = AtomicU64::new(0);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let seed = next_seed.fetch_add(1, Ordering::Relaxed);
                    if seed >= AA_SEEDS {
                        break;
                    }
                    let (gate, clock) = gate_with_clock(PromotionConfig {
                        environment: canary(10.0),
                        gate: format!("a-a-{seed}"),
                        ..Default::default()
                    });
                    let run = Driver::new(&gate, clock, seed, Users::Returning(500))
                        .run(&aa, AA_DURATION);
                    if run.rolled_back() {
                        rolled_back
                            .lock()
                            .expect("no panic while held")
                            .push((seed, run.reason().to_string()));
                        continue;
                    }
                    assert!(!run.left_stage, "seed {seed}");
                    assert_eq!(run.elapsed, AA_DURATION, "seed {seed}");
                    let verdict = gate.monitor_canary_health().recommendation;
                    healthy.fetch_add(
                        u64::from(verdict == Recommendation::Healthy),
                        Ordering::Relaxed,
                    );
                }
            });
        }
    });
    let rolled_back = rolled_back.into_inner().expect("no panic while held");
    println!(
        "A/A: {} of {AA_SEEDS} seeds rolled back in {AA_DURATION:?} at {AA_RATE} rps, 10 % canary, \
         {} HEALTHY at the end; {rolled_back:?}",
        rolled_back.len(),
        healthy.into_inner()
    );
    assert!(
        rolled_back.len() <= MAX_FALSE_ROLLBACKS,
        "{} false rollbacks of {AA_SEEDS}: {rolled_back:#?}",
        rolled_back.len()
    );
}

#[test]
fn ten_times_the_error_rate_rolls_back_within_500_canary_requests() {
    let bad = traffic(2000.0, Version::new(0.10, 20.0, 0.5));
    for run in rollbacks(
        "10x errors",
        &bad,
        0..20,
        Users::Fresh,
        Duration::from_secs(60),
    ) {
        let error_rules = [
            Rule::ErrorRateVsStable,
            Rule::ErrorsOverStage,
            Rule::ErrorRateMax,
            Rule::HealthScore,
            Rule::OverwhelmingErrors,
        ];
        let rules = fired_rules(&run);
        assert!(rules.iter().any(|r| error_rules.contains(r)), "{run:?}");
        // Over these 20 seeds: 101 to 235 canary requests, 0.45 to 1.24 s (docs/judge.md).
        assert!(run.canary_requests < 500, "{run:?}");
        assert!(run.elapsed < Duration::from_secs(3), "{run:?}");
    }
}

#[test]
fn twice_the_error_rate_rolls_back_once_the_difference_is_significant() {
    let bad = traffic(2000.0, Version::new(0.02, 20.0, 0.5));
    let users = Users::Returning(2000);
    for run in rollbacks("2x errors", &bad, 0..8, users, Duration::from_secs(120)) {
        let evidence = run.evidence().unwrap();
        let rules = fired_rules(&run);
        assert!(
            rules.iter().any(|r| matches!(
                r,
                Rule::HealthScore | Rule::ErrorRateVsStable | Rule::ErrorsOverStage
            )),
            "{evidence}"
        );
        if let Some(score) = evidence.fired().find(|f| f.rule == Rule::HealthScore) {
            assert!(score.observed < 0.8, "{evidence}");
        }
        // Detection needs the canary's observed error rate to be significantly above 1.5 x
        // the stable one's, or surely above the tolerated 1.1 % over the stage, or a score
        // surely below 0.8 (more than 0.8 points beyond 1.1 %): over these 8 seeds after 1 263
        // to 7 146 canary requests (median 3 608, 18 s).
        assert!(run.canary_requests < 18_000, "{run:?}");
        assert!(run.elapsed < Duration::from_secs(90), "{run:?}");
    }
}

#[test]
fn three_times_the_error_rate_scores_as_the_worked_example() {
    // Half the traffic each, 140 s at 2 000 rps: 140 000 requests per version, so the score's
    // sampling noise (from both error rates) is about ±0.015, a sixteenth of the way to 0.8.
    let (gate, clock) = canary_gate(50.0, false);
    let bad = traffic(2000.0, Version::new(0.03, 20.0, 0.5));
    let run =
        Driver::new(&gate, clock, 7, Users::Returning(2000)).run(&bad, Duration::from_secs(140));
    assert!(!run.left_stage);
    let health = gate.monitor_canary_health();
    println!(
        "3x errors for 140 s without rollback: score {:.3}, {}",
        health.health_score, health.evidence
    );
    // Worked example: stable 1 %, canary 3 %: 1.9 points beyond the tolerated 1.1 %, error
    // penalty 0.475, score 0.525, ROLLBACK.
    assert!(
        (health.health_score - 0.525).abs() < 0.05,
        "{}: {}",
        health.health_score,
        health.evidence
    );
    assert_eq!(health.recommendation, Recommendation::Rollback);
    assert!(
        health.evidence.fired().any(|f| f.rule == Rule::HealthScore),
        "{}",
        health.evidence
    );
    assert_eq!(gate.environment(), canary(50.0));
}

#[test]
fn twice_the_latency_rolls_back_on_p99_vs_stable() {
    let slow = traffic(2000.0, Version::new(0.01, 40.0, 0.5));
    for run in rollbacks(
        "2x latency",
        &slow,
        0..10,
        Users::Fresh,
        Duration::from_secs(60),
    ) {
        let rules = fired_rules(&run);
        assert!(
            rules
                .iter()
                .any(|r| matches!(r, Rule::P99VsStable | Rule::LatencyShift)),
            "{run:?}"
        );
        assert!(
            !rules
                .iter()
                .any(|r| matches!(r, Rule::ErrorRateMax | Rule::ErrorRateVsStable)),
            "{run:?}"
        );
        // The latency rules skip the stage's first 30 s (warm-up); then only the full
        // evaluation (once a second) reads latencies, and the whole-distribution test
        // (latency_shift) fires at its first look: 30 to 32 s, 6 000 to 6 500 requests.
        assert!(run.canary_requests < 7_500, "{run:?}");
        assert!(run.elapsed >= Duration::from_secs(30), "{run:?}");
        assert!(run.elapsed < Duration::from_secs(38), "{run:?}");
    }
}

#[test]
fn a_catastrophic_canary_rolls_back_within_20_canary_requests() {
    let broken = Traffic {
        rate: 2000.0,
        canary: Version::new(1.0, 20.0, 0.5),
        stable: Version::new(0.005, 20.0, 0.5),
    };
    let users = Users::Fresh;
    for run in rollbacks(
        "catastrophic",
        &broken,
        0..50,
        users,
        Duration::from_secs(10),
    ) {
        assert!(
            fired_rules(&run)
                .iter()
                .any(|r| matches!(r, Rule::OverwhelmingErrors | Rule::ErrorBurst)),
            "{run:?}"
        );
        // Against max_error_rate (5 %) while the stage's first milliseconds hold too few
        // stable requests to bound their rate below it, then against their upper bound:
        // 5 %^7 < 1e-9, so 7 failures, once Fisher's test against the stable requests agrees
        // (beside 63, a 10 % share's, 1 / C(70, 7) < 1e-9). Measured: 7 to 10 over 50 seeds.
        assert!(run.canary_requests <= 20, "{run:?}");
    }
}

/// Failing canary requests a sudden total failure may take to roll back after a minute of
/// healthy traffic (12 000 canary requests, about 120 errors, in the window). `error_burst`
/// judges the current burst span, which holds up to a second of healthy requests from before
/// the failure: measured 17 to 19 over the test's 4 seeds, which are deterministic (21 to 27,
/// over the bound, when the burst was measured from the span before the current one alone;
/// 86 to 129 over 20 seeds when only the whole window was judged).
const SUDDEN_FAILURE_BOUND: u64 = 20;

#[test]
fn a_sudden_failure_mid_stage_rolls_back_within_20_failing_requests() {
    let healthy = traffic(2000.0, stable());
    let failing = traffic(2000.0, Version::new(1.0, 20.0, 0.5));
    let mut failing_requests = Vec::new();
    for seed in 0..4 {
        let (gate, clock) = canary_gate(10.0, true);
        let mut driver = Driver::new(&gate, clock, seed, Users::Returning(2000));
        let before = driver.run(&healthy, Duration::from_secs(60));
        assert!(!before.left_stage, "seed {seed}: {before:?}");
        let run = driver.run(&failing, Duration::from_secs(30));
        assert!(run.rolled_back(), "seed {seed}: {run:?}");
        assert_eq!(run.canary_failures, run.canary_requests);
        assert!(
            run.canary_requests <= SUDDEN_FAILURE_BOUND,
            "seed {seed}: {run:?}"
        );
        failing_requests.push((run.canary_requests, run.elapsed.as_millis()));
    }
    println!(
        "sudden failure after 60 s healthy: (failing canary requests, ms) to rollback \
         {failing_requests:?}"
    );
}

#[test]
fn a_canary_with_too_few_requests_is_never_judged() {
    let (gate, clock) = canary_gate(0.05, true);
    let elevated = traffic(1000.0, Version::new(0.10, 20.0, 0.5));
    let run = Driver::new(&gate, clock, 3, Users::Fresh).run(&elevated, Duration::from_secs(120));
    assert!(!run.left_stage, "{run:?}");
    assert!(
        (1..100).contains(&run.canary_requests),
        "{} canary requests",
        run.canary_requests
    );
    assert!(run.canary_failures > 0, "{run:?}");
    println!(
        "too few: {} canary requests ({} failed) in {:?}",
        run.canary_requests, run.canary_failures, run.elapsed
    );
    let health = gate.monitor_canary_health();
    assert_eq!(health.evidence.fired().count(), 0, "{}", health.evidence);
    assert_eq!(health.recommendation, Recommendation::Monitor);
    assert_eq!(gate.check_slo_compliance(), Ok(false));
    // The samples every rule has: its requests, or fewer latencies after the warm-up.
    assert!(health.evidence.canary.judged() <= run.canary_requests);

    let (config, stage) = (gate.config(), gate.stage());
    let err = gate.promote(Environment::Staging).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Promotion(PromotionError::InsufficientData { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!(
            "{} of 100 canary samples",
            health.evidence.canary.judged()
        )),
        "{err}"
    );
    assert_eq!(gate.config(), config);
    assert_eq!(gate.stage(), stage);
    assert!(gate.get_rollback_history().is_empty());
}

#[test]
fn a_healthy_canary_is_promoted_to_production_and_its_flags_graduate() {
    let (gate, clock) = gate_with_clock(PromotionConfig {
        environment: canary(5.0),
        feature_flags: vec!["new_checkout".into()],
        ..Default::default()
    });
    let healthy = traffic(1000.0, stable());
    let mut driver = Driver::new(&gate, clock, 11, Users::Returning(2000));
    for next in [
        canary(25.0),
        canary(50.0),
        Environment::Staging,
        Environment::Production,
    ] {
        // A new stage has no data yet: the gate refuses, and nothing changes.
        let stage = gate.stage();
        let refused = gate.promote(next).unwrap_err();
        assert!(
            matches!(
                refused,
                Error::Promotion(PromotionError::InsufficientData { .. })
            ),
            "{refused}"
        );
        assert_eq!(gate.stage(), stage);
        // The stage must show the canary not worse than stable: thousands of requests past
        // the 30 s warm-up.
        let run = driver.run(&healthy, Duration::from_secs(300));
        assert!(!run.left_stage, "{run:?}");
        assert!(run.canary_requests >= 100, "{run:?}");
        assert_eq!(gate.check_slo_compliance(), Ok(true));
        gate.promote(next).unwrap();
        assert_eq!(gate.environment(), next);
        assert!(gate.stage() > stage);
    }
    let config = gate.config();
    assert!(config.feature_flags.is_empty());
    assert_eq!(config.graduated_flags, ["new_checkout"]);
    assert!(gate.is_feature_enabled("new_checkout"));
    let decision = gate.route_request("any-user");
    assert!(!decision.is_canary);
    assert!(decision.enabled_features.contains("new_checkout"));
    assert!(gate.get_rollback_history().is_empty());
}

#[test]
fn without_auto_rollback_a_bad_canary_is_reported_but_stays() {
    let (gate, clock) = canary_gate(10.0, false);
    let bad = traffic(2000.0, Version::new(0.10, 20.0, 0.5));
    let run = Driver::new(&gate, clock, 5, Users::Fresh).run(&bad, Duration::from_secs(10));
    assert!(!run.left_stage, "{run:?}");
    assert_eq!(run.elapsed, Duration::from_secs(10));

    let health = gate.monitor_canary_health();
    assert_eq!(health.recommendation, Recommendation::Rollback);
    assert!(
        health
            .evidence
            .fired()
            .any(|f| matches!(f.rule, Rule::ErrorRateMax | Rule::ErrorRateVsStable)),
        "{}",
        health.evidence
    );
    assert_eq!(health.canary_requests, run.canary_requests);
    assert_eq!(gate.check_slo_compliance(), Ok(false));

    let stage = gate.stage();
    let err = gate.promote(Environment::Staging).unwrap_err();
    assert!(
        matches!(&err, Error::Promotion(PromotionError::SloNotMet { evidence })
            if evidence.starts_with("a rule fired (auto_rollback_enabled is off: nothing was rolled back)")),
        "{err}"
    );
    assert_eq!(gate.environment(), canary(10.0));
    assert_eq!(gate.stage(), stage);
    assert!(gate.get_rollback_history().is_empty());
}

#[test]
fn a_ramp_after_the_judge_rolled_back_is_refused_not_a_new_rollout() {
    // The evidence gathered with automatic rollback off, which is then turned on: the judge
    // rolls back inside the promotion's own gate, and says so.
    let (gate, clock) = canary_gate(10.0, false);
    let bad = traffic(2000.0, Version::new(0.10, 20.0, 0.5));
    let run = Driver::new(&gate, clock, 5, Users::Fresh).run(&bad, Duration::from_secs(10));
    assert!(!run.left_stage, "{run:?}");
    let stage = gate.stage();
    gate.swap_config(PromotionConfig {
        auto_rollback_enabled: true,
        ..gate.config()
    })
    .unwrap();
    assert_eq!(
        gate.stage(),
        stage,
        "turning automatic rollback on keeps the stage"
    );

    let err = gate.promote_from(stage, canary(25.0)).unwrap_err();
    assert!(
        matches!(&err, Error::Promotion(PromotionError::SloNotMet { evidence })
            if evidence.starts_with("a rule fired and the canary was rolled back; ")),
        "{err}"
    );
    assert_eq!(gate.environment(), Environment::Production);
    assert_eq!(gate.get_rollback_history().len(), 1);

    // The ramp loop's next step, decided on its earlier look: refused, nothing changed.
    let rolled_back = gate.stage();
    let err = gate.promote_from(stage, canary(25.0)).unwrap_err();
    assert!(
        matches!(&err, Error::Promotion(PromotionError::StageChanged { expected, now })
            if *expected == stage.get() && now.starts_with("Production")),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("left stage {}", stage.get())),
        "{err}"
    );
    assert_eq!(gate.environment(), Environment::Production);
    assert_eq!(gate.stage(), rolled_back);
    // Where `promote` would have started a new rollout of the build just rolled back.
    gate.promote(canary(25.0)).unwrap();
    assert_eq!(gate.environment(), canary(25.0));
    // From the stage it is in, `promote_from` moves as `promote` does.
    gate.promote_from(gate.stage(), canary(5.0)).unwrap();
    assert_eq!(gate.environment(), canary(5.0));
}

/// The sliding window's length in the window scenarios.
const WINDOW: u64 = 60;

/// A canary gate at `percent` that judges a [`WINDOW`]-second window and never acts, with
/// traffic at `rate` where the canary fails `burst_error_rate` of requests, and traffic where
/// neither version fails.
fn window_scenario(
    percent: f64,
    rate: f64,
    burst_error_rate: f64,
) -> (PromotionGateManager, Arc<ManualClock>, Traffic, Traffic) {
    let (gate, clock) = gate_with_clock(PromotionConfig {
        environment: canary(percent),
        auto_rollback_enabled: false,
        rollback_window_seconds: WINDOW,
        ..Default::default()
    });
    let clean = Version::new(0.0, 20.0, 0.5);
    let burst = Traffic {
        rate,
        canary: Version::new(burst_error_rate, 20.0, 0.5),
        stable: clean,
    };
    let healthy = Traffic {
        rate,
        canary: clean,
        stable: clean,
    };
    (gate, clock, burst, healthy)
}

#[test]
fn errors_older_than_the_window_no_longer_count() {
    let (gate, clock, burst, healthy) = window_scenario(10.0, 1000.0, 0.5);
    let mut driver = Driver::new(&gate, clock, 13, Users::Returning(2000));
    let burst = driver.run(&burst, Duration::from_secs(20));
    assert!(burst.canary_failures > 100, "{burst:?}");

    // 55 s in: the whole burst is within the window.
    let early = driver.run(&healthy, Duration::from_secs(35));
    let health = gate.monitor_canary_health();
    assert_eq!(health.evidence.canary.errors, burst.canary_failures);
    assert_eq!(
        health.canary_requests,
        burst.canary_requests + early.canary_requests
    );
    assert_eq!(health.recommendation, Recommendation::Rollback);

    // 90 s in: the window (60 s, exact to one 6 s slot) starts after the burst ended at 20 s.
    let late = driver.run(&healthy, Duration::from_secs(35));
    let health = gate.monitor_canary_health();
    assert_eq!(health.evidence.canary.errors, 0, "{}", health.evidence);
    // The window's rules have forgotten the burst; the stage-long test has not.
    let fired: Vec<Rule> = health.evidence.fired().map(|f| f.rule).collect();
    assert_eq!(fired, [Rule::ErrorsOverStage], "{}", health.evidence);
    let since_burst = early.canary_requests + late.canary_requests;
    let per_second = since_burst as f64 / 70.0;
    let windowed = health.canary_requests as f64;
    assert!(
        windowed >= per_second * WINDOW as f64 * 0.9 && windowed <= per_second * 67.0,
        "{windowed} canary requests in the window, {per_second}/s"
    );
}

/// The window slides even when too few records arrive to evaluate the gate once a slot.
#[test]
fn errors_older_than_the_window_no_longer_count_at_one_request_per_second() {
    let (gate, clock, burst, healthy) = window_scenario(50.0, 1.0, 1.0);
    let mut driver = Driver::new(&gate, clock, 1, Users::Fresh);
    let burst = driver.run(&burst, Duration::from_secs(20));
    assert!(burst.canary_failures > 5, "{burst:?}");
    let after = driver.run(&healthy, Duration::from_secs(80));
    // 100 s in, the window is 40 s..100 s; the burst ended at 20 s.
    let health = gate.monitor_canary_health();
    // The record path looks for a due evaluation only every 64 records of a thread
    // (manager.rs `record_outcome`): at 1 request/s the only reading is at 64 s, none at or
    // before 40 s. A window whose start were exact only when the gate is evaluated once a
    // slot would reach back to the stage's start here.
    assert_eq!(
        health.evidence.canary.errors, 0,
        "errors of 0..20 s still count at 100 s with a {WINDOW} s window: {} canary requests \
         in the window, {} sent since the burst: {}",
        health.canary_requests, after.canary_requests, health.evidence
    );
}

/// 20 stable requests a second for 130 s, past the default `no_data_after` of 120 s, and no
/// canary outcome (at 5 % about 137 were due); `at_tick(tick)` runs before each request, one
/// every 50 ms. Asserts that the canary is then flagged NO_DATA.
fn a_silent_canary_for_130_s(
    gate: &PromotionGateManager,
    clock: &ManualClock,
    mut at_tick: impl FnMut(u64),
) {
    let stage = gate.stage();
    for tick in 0..2_600u64 {
        clock.set(Duration::from_millis(tick * 50));
        at_tick(tick);
        gate.record_for(stage, false, tick % 100 != 0, Duration::from_millis(20));
    }
    assert_eq!(gate.stage(), stage);
    assert_recommends(gate, Recommendation::NoData);
}

/// Asserts that `gate`'s judge now recommends `expected`.
fn assert_recommends(gate: &PromotionGateManager, expected: Recommendation) {
    let health = gate.monitor_canary_health();
    assert_eq!(health.recommendation, expected, "{}", health.evidence);
}

#[test]
fn a_canary_that_reports_nothing_is_no_data_and_cannot_be_promoted() {
    let (gate, clock) = canary_gate(5.0, true);
    let stage = gate.stage();
    a_silent_canary_for_130_s(&gate, &clock, |_| {});
    let refused = gate.promote(Environment::Staging).unwrap_err();
    assert!(
        matches!(&refused, Error::Promotion(PromotionError::InsufficientData { evidence })
            if evidence.contains("no_data")),
        "{refused}"
    );
    assert_eq!(gate.stage(), stage);
    assert!(gate.get_rollback_history().is_empty());
}

#[test]
fn a_flag_change_within_the_stage_does_not_restart_its_no_data_clock() {
    let flags: Vec<String> = (0..7).map(|i| format!("flag_{i}")).collect();
    let (gate, clock) = gate_with_clock(PromotionConfig {
        environment: canary(5.0),
        feature_flags: flags.clone(),
        ..Default::default()
    });
    // A flag switched off every 20 s (a kill switch; a flag turned on starts a new stage):
    // each change publishes a new snapshot of the same stage, which must not restart the
    // stage's clock (else the silent canary would look 10 s old, and flags switched off often
    // would hide it forever).
    a_silent_canary_for_130_s(&gate, &clock, |tick| {
        if tick % 400 == 200 {
            let flag = &flags[usize::try_from(tick / 400).unwrap()];
            gate.disable_feature(flag).expect("a flag change");
        }
    });
}

#[test]
fn a_canary_whose_outcomes_stop_mid_stage_is_no_data_and_not_compliant() {
    let (gate, clock) = canary_gate(5.0, true);
    let stage = gate.stage();
    // 600 s of both versions healthy: the stage shows the canary not worse.
    let healthy = Driver::new(&gate, clock.clone(), 3, Users::Fresh)
        .run(&traffic(500.0, stable()), Duration::from_secs(600));
    assert!(!healthy.left_stage, "{healthy:?}");
    assert_recommends(&gate, Recommendation::Healthy);
    // Then the canary crashes, and its failed connections are never recorded, while the
    // stable version's outcomes keep coming (20 a second: at 5 %, about one canary outcome
    // due a second).
    let stable_only = |seconds: u64| {
        for tick in 0..seconds * 20 {
            clock.advance(Duration::from_millis(50));
            gate.record_for(stage, false, tick % 100 != 0, Duration::from_millis(20));
        }
    };
    stable_only(100);
    let early = gate.monitor_canary_health();
    assert_ne!(
        early.recommendation,
        Recommendation::NoData,
        "{}",
        early.evidence
    );
    // Past `no_data_ms` (120 s) without a canary outcome, and for as long as that lasts.
    for seconds in [30, 470] {
        stable_only(seconds);
        assert_recommends(&gate, Recommendation::NoData);
    }
    assert!(!gate.check_slo_compliance().unwrap());
    assert!(gate.promote(Environment::Staging).is_err());
    assert_eq!(gate.stage(), stage);
    assert!(gate.get_rollback_history().is_empty());
}

/// A fresh 10 % canary gate (automatic rollback on, default SLO: `latency_target_ms` 500,
/// `warm_up_ms` 30 000) whose canary answers in about 800 ms for its first 20 s (cold JIT) at
/// 500 requests a second, failing `cold_errors` of them, then as the stable version for 40 s;
/// returns the gate and how long it stayed in the stage (`None`: to the end).
fn a_cold_start(cold_errors: f64) -> (PromotionGateManager, Option<Duration>) {
    let (gate, clock) = canary_gate(10.0, true);
    let mut driver = Driver::new(&gate, clock, 5, Users::Fresh);
    let cold = driver.run(
        &traffic(500.0, Version::new(cold_errors, 800.0, 0.05)),
        Duration::from_secs(20),
    );
    if cold.left_stage {
        return (gate, Some(cold.elapsed));
    }
    let warm = driver.run(&traffic(500.0, stable()), Duration::from_secs(40));
    (gate, warm.left_stage.then(|| cold.elapsed + warm.elapsed))
}

#[test]
fn a_canary_slow_only_in_its_warm_up_is_not_rolled_back() {
    // Every canary request of the first 20 s misses the 500 ms target, against about 1 % of
    // the stable version's: the latency misses of the warm-up are not held against it, not
    // inside it nor once it ended (the window still holds them).
    let (gate, left) = a_cold_start(0.01);
    assert_eq!(
        left,
        None,
        "rolled back: {:?}",
        gate.get_rollback_history().last().map(|e| e.reason.clone())
    );
    let health = gate.monitor_canary_health();
    assert_eq!(health.evidence.fired().count(), 0, "{}", health.evidence);
}

#[test]
fn errors_in_the_warm_up_still_roll_back() {
    let (gate, left) = a_cold_start(0.5);
    let left = left.expect("a canary failing half its requests stayed");
    assert!(left < Duration::from_secs(30), "rolled back after {left:?}");
    assert_eq!(gate.get_rollback_history().len(), 1);
}

/// Both versions fail `error_rate` of requests at `rate` from the first request of a 50 %
/// stage, one fresh gate per seed, for `length`: none may roll the canary back.
fn a_shared_outage_from_the_stage_s_start(
    rate: f64,
    error_rate: f64,
    seeds: std::ops::Range<u64>,
    length: Duration,
) {
    let down = Version::new(error_rate, 20.0, 0.5);
    let outage = Traffic {
        rate,
        canary: down,
        stable: down,
    };
    for seed in seeds {
        let (gate, clock) = canary_gate(50.0, true);
        let run = Driver::new(&gate, clock, seed, Users::Fresh).run(&outage, length);
        assert!(!run.left_stage, "seed {seed}: {run:?}");
        assert!(gate.get_rollback_history().is_empty(), "seed {seed}");
    }
}

#[test]
fn an_outage_shared_from_the_stage_s_first_request_is_not_blamed_on_the_canary() {
    // At 30 % errors the canary reaches min_samples first in about half the seeds, and its
    // breach of the absolute limits must wait for as many stable outcomes, which show the same
    // errors. (While the absolute limits acted alone there, 27 to 36 % of such stages were
    // rolled back.)
    a_shared_outage_from_the_stage_s_start(100.0, 0.3, 0..20, Duration::from_secs(20));
}

#[test]
fn the_first_requests_of_a_stage_in_a_shared_outage_do_not_blame_the_canary() {
    // At 80 % errors, now and then the first 7 requests all go to the canary and all fail
    // (about 1 stage in 600) with no stable outcome yet to compare: against the absolute
    // ceiling alone (5 %^7 < 1e-9) that was a rollback; Fisher's exact test against the stable
    // outcomes must agree.
    a_shared_outage_from_the_stage_s_start(2000.0, 0.8, 0..3000, Duration::from_millis(20));
}

#[test]
fn a_service_wide_breach_holds_the_promotion_and_rolls_nothing_back() {
    let (gate, clock) = canary_gate(5.0, true);
    let stage = gate.stage();
    // Both versions fail 8 % of requests: the absolute error limit is breached, but the
    // canary is no worse than the stable version.
    let breaching = Version::new(0.08, 20.0, 0.5);
    let service = Traffic {
        rate: 2000.0,
        canary: breaching,
        stable: breaching,
    };
    let run = Driver::new(&gate, clock, 3, Users::Fresh).run(&service, Duration::from_secs(120));
    assert!(!run.left_stage, "{run:?}");
    let health = gate.monitor_canary_health();
    assert_eq!(health.evidence.fired().count(), 0, "{}", health.evidence);
    assert!(
        health.evidence.findings.iter().any(|f| f.holds),
        "{}",
        health.evidence
    );
    let refused = gate.promote(Environment::Staging).unwrap_err();
    assert!(
        matches!(&refused, Error::Promotion(PromotionError::SloNotMet { evidence })
            if evidence.contains("the whole service breaches its SLO")),
        "{refused}"
    );
    assert_eq!(gate.stage(), stage);
    assert_eq!(gate.environment(), canary(5.0));
    assert!(gate.get_rollback_history().is_empty());
}

/// A clock a test sets anywhere, backwards too (against `Clock`'s contract).
#[derive(Debug, Default)]
struct SteppingClock {
    nanos: AtomicU64,
}

impl SteppingClock {
    fn set(&self, at: Duration) {
        self.nanos
            .store(u64::try_from(at.as_nanos()).unwrap(), Ordering::SeqCst);
    }
}

impl Clock for SteppingClock {
    fn monotonic(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }

    fn wall(&self) -> std::time::SystemTime {
        std::time::SystemTime::UNIX_EPOCH + self.monotonic()
    }
}

#[test]
fn a_clock_that_went_back_an_hour_leaves_a_slow_canary_judged_within_minutes() {
    // The record path's evaluations were due only once the clock reached the last one's time
    // again, and the stage's warm-up ran until its start: blind to latency for the hour.
    let clock = Arc::new(SteppingClock::default());
    clock.set(Duration::from_secs(3_700));
    let slo = promotion_gates::SloAdmissionController::new(promotion_gates::SloConfig::default())
        .unwrap();
    let config = PromotionConfig {
        environment: canary(10.0),
        ..Default::default()
    };
    let gate = PromotionGateManager::with_clock(config, slo, clock.clone()).unwrap();
    let tick = Duration::from_millis(5); // 200 requests a second
    let mut at = Duration::from_secs(3_700);
    let serve = |i: u64, at: &mut Duration, canary_ms: u64| {
        let decision = gate.route_request(&format!("user-{i}"));
        let latency = if decision.is_canary { canary_ms } else { 20 };
        gate.record_outcome(&decision, true, Duration::from_millis(latency));
        *at += tick;
        clock.set(*at);
    };
    for i in 0..2_000 {
        serve(i, &mut at, 20); // 10 s of a healthy canary, in the stage's warm-up
    }
    assert_eq!(gate.environment(), canary(10.0));
    at = Duration::from_secs(100); // an hour back
    clock.set(at);
    let mut i = 2_000;
    while gate.environment() != Environment::Production {
        assert!(
            at < Duration::from_secs(400),
            "a canary 20x slower not rolled back within 300 s of the step"
        );
        serve(i, &mut at, 400);
        i += 1;
    }
}

/// A Staging gate at `at` on its own stepping clock, default SLO policy.
fn staging_gate_at(at: Duration) -> (PromotionGateManager, Arc<SteppingClock>) {
    let clock = Arc::new(SteppingClock::default());
    clock.set(at);
    let slo = promotion_gates::SloAdmissionController::new(promotion_gates::SloConfig::default())
        .unwrap();
    let config = PromotionConfig {
        environment: Environment::Staging,
        ..Default::default()
    };
    let gate = PromotionGateManager::with_clock(config, slo, clock.clone()).unwrap();
    (gate, clock)
}

#[test]
fn reads_after_the_clock_went_back_leave_the_stage_start_where_it_was() {
    // Two identical gates whose host clock steps back from 10 000 s to 100 s; only the first
    // is read there (health, a histogram, an export). The reads used to restart its stage at
    // 100 s, so at 225 s it was NO_DATA (125 s without canary outcomes) and the other MONITOR.
    let (read, read_clock) = staging_gate_at(Duration::from_secs(10_000));
    let (unread, unread_clock) = staging_gate_at(Duration::from_secs(10_000));
    for clock in [&read_clock, &unread_clock] {
        clock.set(Duration::from_secs(100));
    }
    let _ = read.health();
    let _ = read.latency_histogram(promotion_gates::Cohort::Canary);
    let _ = read.window_export();
    for clock in [&read_clock, &unread_clock] {
        clock.set(Duration::from_secs(225));
    }
    let (was_read, was_not) = (read.health(), unread.health());
    assert_eq!(
        was_read.recommendation, was_not.recommendation,
        "earlier reads changed what a read says: {} against {}",
        was_read.evidence, was_not.evidence
    );
    assert_eq!(was_read.recommendation, Recommendation::Monitor);
    // Judging moves the start (the judging path restarts the stage at the clock's time): a
    // judgement at 100 s makes the stage 125 s old at 225 s, with no canary outcome.
    for clock in [&read_clock, &unread_clock] {
        clock.set(Duration::from_secs(100));
    }
    let _ = read.monitor_canary_health();
    for clock in [&read_clock, &unread_clock] {
        clock.set(Duration::from_secs(225));
    }
    assert_eq!(read.health().recommendation, Recommendation::NoData);
}

#[test]
fn the_largest_p99_budget_accepted_fires_on_requests_slower_than_60_s() {
    // Every latency of 60 s or more is counted in the histogram's last bucket, from
    // 59 768.832 ms; a budget within it was accepted (up to 60 s) and never fired: 10 000
    // canary requests of 120 s against a 60 s budget showed p99_budget observed 60030.975 ms
    // above its limit, p = 1, not fired.
    let with_budget = |budget| promotion_gates::SloConfig {
        p99_budget: Some(budget),
        ..Default::default()
    };
    let (mut accepted, mut refused) = (Duration::from_millis(1), Duration::from_secs(61));
    while refused - accepted > Duration::from_nanos(1) {
        let mid = accepted + (refused - accepted) / 2;
        if with_budget(mid).validate().is_ok() {
            accepted = mid;
        } else {
            refused = mid;
        }
    }
    let clock = Arc::new(ManualClock::new());
    let slo = promotion_gates::SloAdmissionController::new(with_budget(accepted)).unwrap();
    let config = PromotionConfig {
        environment: Environment::Staging,
        auto_rollback_enabled: false,
        ..Default::default()
    };
    let gate = PromotionGateManager::with_clock(config, slo, clock.clone()).unwrap();
    clock.advance(Duration::from_secs(31)); // past the warm-up
    for i in 0..10_000 {
        let decision = gate.route_request(&format!("user-{i}"));
        assert!(decision.is_canary);
        gate.record_outcome(&decision, true, Duration::from_secs(120));
    }
    let health = gate.health();
    assert!(
        health.evidence.fired().any(|f| f.rule == Rule::P99Budget),
        "p99_budget_ms {accepted:?}: {}",
        health.evidence
    );
    assert_eq!(health.recommendation, Recommendation::Rollback);
}
