//! Helpers of the backends' tests: a history event, a config, and a write committed on top of
//! whatever is stored.

use super::{Commit, Guard, StateStore, StoredWrite};
use crate::config::{Environment, PromotionConfig};
use crate::history::{RollbackEvent, RollbackTrigger, RolledBack};
use std::time::{Duration, SystemTime};

/// A manual rollback of Canary{5} for `reason`.
pub(crate) fn rollback_event(reason: &str) -> RollbackEvent {
    RollbackEvent {
        rolled_back: RolledBack::Release,
        feature: "Canary{5}".into(),
        reason: reason.into(),
        timestamp: SystemTime::UNIX_EPOCH + Duration::from_nanos(1_234_567_891),
        environment: Environment::Canary {
            traffic_percent: 5.0,
        },
        trigger: RollbackTrigger::Manual,
        evidence: None,
    }
}

/// The gate the backends' tests store the state of.
pub(crate) const GATE: &str = "checkout";

/// The default config of the gate [`GATE`] in `environment`.
pub(crate) fn config(environment: Environment) -> PromotionConfig {
    PromotionConfig {
        gate: GATE.into(),
        environment,
        ..Default::default()
    }
}

/// The write made on the stored state of version and stage `on` (0: none), to stage `on + 1`
/// with the default config in `environment`, recording a manual rollback for `reason` if any.
pub(crate) fn write_on(on: u64, environment: Environment, reason: Option<&str>) -> StoredWrite {
    let guard = Guard {
        version: on,
        stage: on,
        epoch: 0,
    };
    let event = reason.map(rollback_event);
    StoredWrite::new(
        guard,
        crate::store::RolloutOn::UNKNOWN,
        &Default::default(),
        on + 1,
        &config(environment),
        event.as_ref(),
    )
}

/// Commits one write recording `reason` on top of whatever is stored (keeping `bound`
/// events), retrying on conflict; returns the number of conflicts seen.
pub(crate) fn commit_on_top(store: &dyn StateStore, reason: &str, bound: usize) -> u64 {
    let mut conflicts = 0;
    loop {
        let state = store.load().unwrap();
        let guard = state.as_ref().map_or(Guard::EMPTY, |s| Guard {
            version: s.release.version,
            stage: s.release.stage,
            epoch: 0,
        });
        let counted = state.map(|s| s.rollback_counts(None).unwrap());
        let mut next = config(Environment::Canary {
            traffic_percent: (guard.version % 100) as f64,
        });
        next.max_rollback_history = bound;
        let event = rollback_event(reason);
        let write = StoredWrite::new(
            guard,
            crate::store::RolloutOn::UNKNOWN,
            &counted.unwrap_or_default(),
            guard.stage + 1,
            &next,
            Some(&event),
        );
        match store.commit(&write).unwrap() {
            Commit::Written { .. } => return conflicts,
            Commit::Conflict { .. } => conflicts += 1,
        }
    }
}

/// `instance`'s contribution to `stage`: `canary_requests` canary requests (10 % failed),
/// 900 stable ones (1 % failed).
pub(crate) fn contribution(
    instance: &str,
    stage: u64,
    canary_requests: u64,
) -> super::Contribution {
    use crate::metrics::tests_support::cohort;
    let counts = crate::decision::PerCohort {
        canary: cohort(canary_requests, canary_requests / 10, 2_000, 50_000),
        stable: cohort(900, 9, 1_500, 40_000),
    };
    super::encode(instance, stage, &counts).unwrap()
}

/// Each of `rows` (a read of contributions) as a line, `<instance> ok` or the refusal's text,
/// sorted.
pub(crate) fn sorted_lines(
    rows: Vec<Result<super::Contribution, super::BadContribution>>,
) -> Vec<String> {
    let mut lines: Vec<String> = rows
        .into_iter()
        .map(|row| match row {
            Ok(c) => format!("{} ok", c.instance),
            Err(bad) => bad.to_string(),
        })
        .collect();
    lines.sort();
    lines
}
