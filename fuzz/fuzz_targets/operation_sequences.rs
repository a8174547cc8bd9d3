//! Operation sequences on one gate through the C ABI: routes, records (of routed, forged and
//! re-routed decisions), promotions, ramps, rollbacks, flag changes, config reloads and
//! judgements, in any order and with any arguments.
//!
//! After each step:
//! - a refused call (any status but OK, with its error object) changed nothing a host can
//!   read: `pgate_state`, the config and SLO documents, the rollback history and every flag
//!   the sequence names read back as before. The one documented exception: a gated promotion
//!   refused as `SLO_NOT_MET` because a rule fired may have rolled the canary back (with
//!   `auto_rollback_enabled`), which leaves the gate in Production, in a new stage, with an
//!   automatic rollback as its newest event;
//! - the stage never goes back, a decision is the formula's (`is_canary` is `bucket <
//!   threshold`) and names only flags that are on for the gate, and a record of a decision
//!   from a stage the gate has not reached is refused as foreign.
//!
//! The seeds `promoted_to_staging` and `promoted_to_production` earn gated promotions (to
//! Staging, and on to Production), so the states after them are fuzzed from the first run.
//! `.ci/fuzz` runs each alone with `PGATE_FUZZ_EXPECT_PROMOTED_TO` set to `staging` or
//! `production`: the run fails unless a promotion of the sequence reached that environment.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use promotion_gates_ffi::{pgate_decision, pgate_environment, pgate_recorded, pgate_status};
use promotion_gates_fuzz::{Gate, Observed, Refusal};
use serde_json::Value;
use std::sync::OnceLock;

/// Flag names a sequence picks from (so enabling, disabling and reading meet), beside raw bytes.
const FLAGS: [&[u8]; 4] = [b"new_api", b"dark_mode", b"beta", b"x"];

/// The gate's SLO: few samples, no stage-long evidence and no warm-up, so that a sequence can
/// earn a gated promotion (5 is the least `min_samples` validation takes; a sequence runs for
/// microseconds, so with the default 30 s warm-up no latency would ever count and every gated
/// promotion would be refused for too few samples).
const SLO: &[u8] = br#"{"min_samples": 5, "latency_target_ms": 100, "promotion_evidence": false, "warm_up_ms": 0}"#;

#[derive(Debug, Arbitrary)]
enum Name {
    Pool(u8),
    Raw(Vec<u8>),
}

impl Name {
    fn bytes(&self) -> &[u8] {
        match self {
            Name::Pool(i) => FLAGS[usize::from(*i) % FLAGS.len()],
            Name::Raw(bytes) => bytes,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Percent {
    Whole(u8),
    Any(f64),
}

impl Percent {
    fn value(&self) -> f64 {
        match *self {
            Percent::Whole(p) => f64::from(p),
            Percent::Any(p) => p,
        }
    }
}

/// A change to the current config document, for `pgate_swap_config`.
#[derive(Debug, Arbitrary)]
enum Edit {
    Canary(Percent),
    Staging,
    Production,
    Flags(Vec<Name>),
    Graduated(Vec<Name>),
    Salt(String),
    History(u32),
    SloThreshold(f64),
    AutoRollback(bool),
    Window(u64),
    /// A document of any bytes.
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum Op {
    Route {
        user: u8,
    },
    /// Records the outcome of the `which`-th decision routed so far.
    Record {
        which: u8,
        success: bool,
        latency_ms: u16,
    },
    /// Records a decision built by the caller.
    RecordForged {
        stage: u64,
        canary: bool,
        success: bool,
    },
    RecordById {
        user: u8,
        success: bool,
        latency_ms: u16,
    },
    /// `count` users' outcomes: enough traffic for the judge to decide.
    Traffic {
        count: u8,
        success: bool,
        latency_ms: u16,
    },
    Promote {
        environment: u8,
        percent: Percent,
    },
    Rollback {
        reason: Name,
    },
    Enable {
        name: Name,
    },
    Disable {
        name: Name,
    },
    IsEnabled {
        name: Name,
    },
    SwapConfig {
        edit: Edit,
    },
    MonitorHealth,
    CheckSlo,
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// The starting canary percentage (a new rollout at this share).
    start: u8,
    ops: Vec<Op>,
}

fn user(i: u8) -> Vec<u8> {
    format!("user-{i}").into_bytes()
}

fn names(list: &[Name]) -> Value {
    Value::from(
        list.iter()
            .map(|n| Value::from(String::from_utf8_lossy(n.bytes()).into_owned()))
            .collect::<Vec<_>>(),
    )
}

/// The current config document with `edit` applied.
fn edited(gate: &Gate, edit: &Edit) -> Vec<u8> {
    let mut config: Value = match serde_json::from_str(&gate.config_json()) {
        Ok(config) => config,
        Err(err) => panic!("pgate_config_json is not JSON: {err}"),
    };
    let (field, value) = match edit {
        Edit::Canary(p) => (
            "environment",
            serde_json::json!({"canary": {"traffic_percent": p.value()}}),
        ),
        Edit::Staging => ("environment", Value::from("staging")),
        Edit::Production => ("environment", Value::from("production")),
        Edit::Flags(list) => ("feature_flags", names(list)),
        Edit::Graduated(list) => ("graduated_flags", names(list)),
        Edit::Salt(salt) => ("salt", Value::from(salt.as_str())),
        Edit::History(n) => ("max_rollback_history", Value::from(*n % 8)),
        Edit::SloThreshold(t) => ("slo_threshold", Value::from(*t)),
        Edit::AutoRollback(on) => ("auto_rollback_enabled", Value::from(*on)),
        Edit::Window(s) => ("rollback_window_seconds", Value::from(*s)),
        Edit::Raw(bytes) => return bytes.clone(),
    };
    config[field] = value;
    config.to_string().into_bytes()
}

/// Every flag name the sequence mentions, for the before/after comparison.
fn mentioned(input: &Input) -> Vec<&[u8]> {
    let mut all: Vec<&[u8]> = FLAGS.to_vec();
    for op in &input.ops {
        match op {
            Op::Enable { name } | Op::Disable { name } | Op::IsEnabled { name } => {
                all.push(name.bytes())
            }
            Op::SwapConfig {
                edit: Edit::Flags(list) | Edit::Graduated(list),
            } => all.extend(list.iter().map(Name::bytes)),
            _ => {}
        }
    }
    all.sort_unstable();
    all.dedup();
    all.truncate(64);
    all
}

/// A decision's flags are the gate's: each name is on for the gate (in Canary and Staging the
/// canary cohort sees the release's flags, every request the graduated ones).
fn check_decision(gate: &Gate, decision: &pgate_decision) {
    assert_eq!(
        decision.is_canary,
        decision.bucket < decision.threshold,
        "{decision:?}"
    );
    for name in gate.flag_set(decision.flag_set) {
        assert_eq!(
            gate.is_feature_enabled(&name),
            Ok(true),
            "{name:?} in {decision:?}"
        );
    }
}

fn step(gate: &Gate, op: &Op, decisions: &mut Vec<pgate_decision>) -> Result<(), Refusal> {
    match op {
        Op::Route { user: u } => {
            let decision = gate.route(&user(*u));
            check_decision(gate, &decision);
            if decisions.len() < 16 {
                decisions.push(decision);
            }
        }
        Op::Record {
            which,
            success,
            latency_ms,
        } => {
            if let Some(d) = decisions.get(usize::from(*which) % decisions.len().max(1)) {
                gate.record(d, *success, u64::from(*latency_ms) * 1_000_000);
            }
        }
        Op::RecordForged {
            stage,
            canary,
            success,
        } => {
            let (_, _, current) = gate.state();
            let forged = pgate_decision {
                stage: *stage,
                is_canary: *canary,
                ..gate.route(b"forged")
            };
            let recorded = gate.record(&forged, *success, 1_000_000);
            if *stage > current {
                assert_eq!(
                    recorded,
                    pgate_recorded::Foreign,
                    "stage {stage} > {current}"
                );
            }
        }
        Op::RecordById {
            user: u,
            success,
            latency_ms,
        } => {
            gate.record_by_id(&user(*u), *success, u64::from(*latency_ms) * 1_000_000);
        }
        Op::Traffic {
            count,
            success,
            latency_ms,
        } => {
            for i in 0..*count {
                let decision = gate.route(&user(i));
                gate.record(&decision, *success, u64::from(*latency_ms) * 1_000_000);
            }
        }
        Op::Promote {
            environment,
            percent,
        } => {
            gate.promote(u32::from(*environment % 4), percent.value())?;
        }
        Op::Rollback { reason } => gate.rollback(reason.bytes())?,
        Op::Enable { name } => gate.enable_feature(name.bytes())?,
        Op::Disable { name } => gate.disable_feature(name.bytes())?,
        Op::IsEnabled { name } => {
            if let Err(status) = gate.is_feature_enabled(name.bytes()) {
                return Err(Refusal {
                    status,
                    message: "is_feature_enabled".into(),
                });
            }
        }
        Op::SwapConfig { edit } => gate.swap_config(&edited(gate, edit))?,
        Op::MonitorHealth => {
            gate.monitor_health();
        }
        Op::CheckSlo => {
            let status = gate.check_slo();
            assert_eq!(status, pgate_status::Ok);
        }
    }
    Ok(())
}

/// Whether `after` is `before` rolled back by the judge: what a gated promotion refused as
/// `SLO_NOT_MET` may leave when a rule fired and `auto_rollback_enabled` is on.
fn rolled_back_by_judge(before: &Observed, after: &Observed) -> bool {
    let parse = |json: &str| serde_json::from_str::<Value>(json).ok();
    let (Some(config), Some(history)) = (parse(&before.config), parse(&after.history)) else {
        return false;
    };
    let newest = history.as_array().and_then(|events| events.last());
    config["auto_rollback_enabled"] == Value::Bool(true)
        && after.state.0 == pgate_environment::Production
        && after.state.2 > before.state.2
        && newest.is_some_and(|event| event["trigger"] == "automatic")
}

/// The environment a promotion of every sequence must reach (`PGATE_FUZZ_EXPECT_PROMOTED_TO`:
/// `staging` or `production`), for the check that a seed still earns it; none while fuzzing.
fn expected_promotion() -> Option<pgate_environment> {
    static EXPECTED: OnceLock<Option<pgate_environment>> = OnceLock::new();
    *EXPECTED.get_or_init(|| {
        let name = std::env::var("PGATE_FUZZ_EXPECT_PROMOTED_TO").ok()?;
        match name.as_str() {
            "staging" => Some(pgate_environment::Staging),
            "production" => Some(pgate_environment::Production),
            _ => panic!("PGATE_FUZZ_EXPECT_PROMOTED_TO={name:?}: expected staging or production"),
        }
    })
}

fuzz_target!(|input: Input| {
    let config = serde_json::json!({
        "environment": {"canary": {"traffic_percent": f64::from(input.start % 101)}},
        "feature_flags": ["new_api"],
        "max_rollback_history": 4,
    });
    let gate = match Gate::new(config.to_string().as_bytes(), SLO) {
        Ok(gate) => gate,
        Err(refusal) => panic!("{config} refused: {refusal:?}"),
    };
    let flags = mentioned(&input);
    let mut decisions = Vec::new();
    let mut before = gate.observe(&flags);
    let mut promoted_to = Vec::new();
    for op in input.ops.iter().take(64) {
        let result = step(&gate, op, &mut decisions);
        let after = gate.observe(&flags);
        if matches!(op, Op::Promote { .. }) && result.is_ok() {
            promoted_to.push(after.state.0);
        }
        if let Err(refusal) = result {
            // A promotion, and a write that starts a stage (a flag turned on, a swap of the
            // split or the salt), judge the stage first: a fired rule rolls back, and the write
            // is refused.
            let judged = matches!(
                op,
                Op::Promote { .. } | Op::Enable { .. } | Op::SwapConfig { .. }
            ) && refusal.status == pgate_status::SloNotMet
                && rolled_back_by_judge(&before, &after);
            if !judged {
                assert_eq!(
                    after, before,
                    "{op:?} was refused ({refusal:?}) and changed the gate"
                );
            }
        }
        assert!(
            after.state.2 >= before.state.2,
            "{op:?}: the stage went back"
        );
        before = after;
    }
    if let Some(expected) = expected_promotion() {
        assert!(
            promoted_to.contains(&expected),
            "no promotion reached {expected:?}; the promotions made reached {promoted_to:?}"
        );
    }
});
