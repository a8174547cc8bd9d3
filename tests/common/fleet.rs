//! Fleet-wide judging with real processes, on any store: four processes that each see a quarter
//! of a canary's traffic, against one process that sees all of it (same seeds).
//!
//! Every process (and the single-process reference) reads a manual clock that never moves, so
//! when the gate judges depends on the traffic only: after each canary error the record path
//! screens (as it always does), and after each round of traffic the test judges
//! (`monitor_canary_health`). The four processes go round by round: after its share of a
//! round, a process waits (a bounded poll) until its merged evidence counts every process's
//! share of that round, or the canary is rolled back. The sync interval decides how long that
//! takes, never what is judged.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a broken expectation is a failed test"
)]

use super::stored::eventually;
use promotion_gates::{
    Environment, ManualClock, PromotionConfig, PromotionGateManager, RollbackTrigger,
    SloAdmissionController, SloConfig,
};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const PROCESSES: u64 = 4;
/// The production (stable) error rate.
pub const STABLE_ERRORS: f64 = 0.01;
/// The sync interval of the processes' gates.
pub const SYNC_MS: u64 = 10;

/// The child side's environment: `<process>|<directory>|<canary error rate>|<round>|<rounds>`,
/// and the store key's JSON.
const CHILD: &str = "PGATE_FLEET_TEST";
const CHILD_STORE: &str = "PGATE_FLEET_STORE";

/// How the traffic runs: the canary's error rate, and rounds of `round` requests (over all
/// processes: each of four records a quarter), at most `rounds` of them.
#[derive(Debug, Clone, Copy)]
pub struct Traffic {
    pub canary_errors: f64,
    pub round: u64,
    pub rounds: u64,
}

/// What one run of the traffic did: canary requests recorded before the rollback, whether it
/// rolled back, and the instances its last evidence named.
#[derive(Debug, PartialEq)]
pub struct Run {
    pub canary: u64,
    pub rolled_back: bool,
    pub instances: u32,
}

impl Run {
    /// `gate`'s run, after `canary` canary requests.
    fn of(gate: &PromotionGateManager, canary: u64) -> Self {
        Self {
            canary,
            rolled_back: rolled_back(gate),
            instances: gate.health().evidence.instances,
        }
    }
}

/// A gate with a canary taking half the traffic, on `store` (the `store` key's JSON) if any,
/// reading a manual clock that never moves.
pub fn open(store: Option<&str>) -> PromotionGateManager {
    let store = store.map_or(String::new(), |store| format!(r#", "store": {store}"#));
    let document = format!(
        r#"{{"gate": "checkout", "environment": {{"canary": {{"traffic_percent": 50.0}}}},
            "auto_rollback_enabled": true{store}}}"#
    );
    let config = PromotionConfig::from_json(&document).unwrap();
    let slo = SloAdmissionController::new(SloConfig::default()).unwrap();
    PromotionGateManager::with_clock(config, slo, Arc::new(ManualClock::new())).unwrap()
}

fn rolled_back(gate: &PromotionGateManager) -> bool {
    gate.environment() == Environment::Production
}

/// Request `i` of the traffic: its id, and whether it fails if routed to the canary (at
/// `canary_errors`) or to the stable version. The same for every process (a fixed seed).
fn request(i: u64, canary_errors: f64) -> (String, [bool; 2]) {
    let mut x = i
        .wrapping_add(0x9e37_79b9_7f4a_7c15)
        .wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 31)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 29;
    let u = (x >> 11) as f64 / (1u64 << 53) as f64;
    (format!("user-{i}"), [u < canary_errors, u < STABLE_ERRORS])
}

/// Records request `i` on `gate`; returns whether it went to the canary.
fn record(gate: &PromotionGateManager, i: u64, canary_errors: f64) -> bool {
    let (id, [canary_fails, stable_fails]) = request(i, canary_errors);
    let decision = gate.route_request(&id);
    let fails = if decision.is_canary {
        canary_fails
    } else {
        stable_fails
    };
    gate.record_outcome(&decision, !fails, Duration::from_millis(5));
    decision.is_canary
}

/// One process seeing all the traffic, without a store.
pub fn single_process(traffic: Traffic) -> Run {
    let Traffic {
        canary_errors,
        round: round_len,
        rounds,
    } = traffic;
    let gate = open(None);
    let mut canary = 0;
    'rounds: for round in 0..rounds {
        for i in round * round_len..(round + 1) * round_len {
            canary += u64::from(record(&gate, i, canary_errors));
            if rolled_back(&gate) {
                break 'rounds;
            }
        }
        gate.monitor_canary_health();
        if rolled_back(&gate) {
            break;
        }
    }
    Run::of(&gate, canary)
}

/// Process `p` of four on `store`: records its quarter of each round (requests `i` with
/// `i % 4 == p`), then waits for the others' share of the round and judges.
fn one_of_four(p: u64, dir: &str, store: &str, traffic: Traffic) -> Run {
    let Traffic {
        canary_errors,
        round: round_len,
        rounds,
    } = traffic;
    let gate = open(Some(store));
    let dir = std::path::Path::new(dir);
    std::fs::write(dir.join(format!("ready-{p}")), b"").unwrap();
    eventually("all four processes opened the gate", || {
        (0..PROCESSES).all(|q| dir.join(format!("ready-{q}")).exists())
    });
    // Which requests go to the canary while it is routed (the same in every process).
    let routed = |i: u64| gate.route_request(&request(i, canary_errors).0).is_canary;
    let is_canary: Vec<bool> = (0..rounds * round_len).map(routed).collect();
    let mut canary = 0;
    'rounds: for round in 0..rounds {
        let end = (round + 1) * round_len;
        for i in (round * round_len..end).filter(|i| i % PROCESSES == p) {
            if rolled_back(&gate) {
                break 'rounds;
            }
            canary += u64::from(record(&gate, i, canary_errors));
        }
        let expected = is_canary[..end as usize].iter().filter(|c| **c).count() as u64;
        eventually("every process's share of the round is merged", || {
            rolled_back(&gate) || gate.health().canary_requests >= expected
        });
        gate.monitor_canary_health();
        if rolled_back(&gate) {
            break;
        }
    }
    let run = Run::of(&gate, canary);
    // The gate stays open (and publishing) until every process is through: one that has seen
    // the others' last round may not have published its own yet.
    std::fs::write(dir.join(format!("done-{p}")), b"").unwrap();
    eventually("all four processes are through", || {
        (0..PROCESSES).all(|q| dir.join(format!("done-{q}")).exists())
    });
    run
}

/// In a child process of [`four_processes`]: runs this process's share and prints its run,
/// then returns true (the test returns at once). In the parent: false.
pub fn child() -> bool {
    let Ok(spec) = std::env::var(CHILD) else {
        return false;
    };
    let store = std::env::var(CHILD_STORE).unwrap();
    let parts: Vec<&str> = spec.split('|').collect();
    let [p, dir, rate, round, rounds] = parts[..] else {
        panic!("{spec}")
    };
    let traffic = Traffic {
        canary_errors: rate.parse().unwrap(),
        round: round.parse().unwrap(),
        rounds: rounds.parse().unwrap(),
    };
    let run = one_of_four(p.parse().unwrap(), dir, &store, traffic);
    println!(
        "fleet-run: {} {} {}",
        run.canary,
        u8::from(run.rolled_back),
        run.instances
    );
    true
}

/// Runs four child processes of `test` (this test binary, re-executed) on `store`, a new one,
/// with `dir` for their meeting files; returns each one's run and the reasons of the
/// automatic rollbacks in the stored history.
pub fn four_processes(
    test: &str,
    store: &str,
    dir: &str,
    traffic: Traffic,
) -> (Vec<Run>, Vec<String>) {
    let children: Vec<_> = (0..PROCESSES)
        .map(|p| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", test, "--test-threads=1", "--nocapture"])
                .env(
                    CHILD,
                    format!(
                        "{p}|{dir}|{}|{}|{}",
                        traffic.canary_errors, traffic.round, traffic.rounds
                    ),
                )
                .env(CHILD_STORE, store)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let runs = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "{stdout}");
            let line = stdout
                .lines()
                .find_map(|l| l.split_once("fleet-run: ").map(|(_, run)| run))
                .unwrap_or_else(|| panic!("no run in {stdout}"));
            let n: Vec<u64> = line.split(' ').map(|w| w.parse().unwrap()).collect();
            Run {
                canary: n[0],
                rolled_back: n[1] == 1,
                instances: u32::try_from(n[2]).unwrap(),
            }
        })
        .collect();
    let reasons = open(Some(store))
        .rollback_history()
        .into_iter()
        .filter(|e| e.trigger == RollbackTrigger::Automatic)
        .map(|e| e.reason)
        .collect();
    (runs, reasons)
}

/// The bad canary's case: ten times production's error rate, rounds of 8 requests. One
/// process rolls it back; four, each with a quarter of the traffic, roll it back after at most
/// 1.5 times the canary requests (over all four), with one rollback stored, whose evidence
/// merged all four.
pub fn a_bad_canary_is_rolled_back_by_four_as_by_one(test: &str, store: &str, dir: &str) {
    let traffic = Traffic {
        canary_errors: STABLE_ERRORS * 10.0,
        round: 8,
        rounds: 2000,
    };
    let single = single_process(traffic);
    assert!(single.rolled_back, "{single:?}");
    assert_eq!(single.instances, 1);
    let (runs, reasons) = four_processes(test, store, dir, traffic);
    assert!(runs.iter().all(|r| r.rolled_back), "{runs:?}");
    let total: u64 = runs.iter().map(|r| r.canary).sum();
    println!(
        "canary requests before the rollback: one process {}, four processes {total} ({runs:?})",
        single.canary
    );
    assert!(
        total as f64 <= 1.5 * single.canary as f64,
        "four processes needed {total} canary requests, one needs {}",
        single.canary
    );
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("4 instances"), "{}", reasons[0]);
}

/// The A/A case: the canary as good as production, 60 rounds of 100 requests. One process
/// keeps it; so does each of four, whose last evidence merged all four.
pub fn no_a_a_canary_is_rolled_back_by_four(test: &str, store: &str, dir: &str) {
    let traffic = Traffic {
        canary_errors: STABLE_ERRORS,
        round: 100,
        rounds: 60,
    };
    let single = single_process(traffic);
    assert!(!single.rolled_back, "{single:?}");
    let (runs, reasons) = four_processes(test, store, dir, traffic);
    for run in &runs {
        assert!(!run.rolled_back, "{runs:?}");
        assert_eq!(run.instances, 4, "{runs:?}");
    }
    assert_eq!(
        runs.iter().map(|r| r.canary).sum::<u64>(),
        single.canary,
        "every canary request recorded once"
    );
    assert!(reasons.is_empty(), "{reasons:?}");
}
