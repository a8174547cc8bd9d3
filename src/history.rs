//! Rollback events and the bounded history a gate keeps of them.

use std::collections::VecDeque;
use std::time::SystemTime;

use crate::config::Environment;

/// What started a rollback event.
///
/// # Example
/// ```
/// assert_eq!(promotion_gates::RollbackTrigger::Automatic.name(), "automatic");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackTrigger {
    /// A host called [`rollback`](crate::PromotionGateManager::rollback).
    Manual,
    /// The judge found the canary in breach of its SLO.
    Automatic,
    /// A host disabled a feature flag (recorded, as the specification asks; the environment
    /// does not change).
    FlagDisabled,
}

impl RollbackTrigger {
    /// `manual`, `automatic` or `flag_disabled`.
    ///
    /// # Example
    /// ```
    /// assert_eq!(promotion_gates::RollbackTrigger::Manual.name(), "manual");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            RollbackTrigger::Manual => "manual",
            RollbackTrigger::Automatic => "automatic",
            RollbackTrigger::FlagDisabled => "flag_disabled",
        }
    }
}

/// What a rollback event rolled back.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
/// gate.enable_feature("dark_mode")?;
/// gate.disable_feature("dark_mode")?;
/// assert_eq!(gate.rollback_history()[0].rolled_back, RolledBack::Flag("dark_mode".into()));
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolledBack {
    /// The release: the gate went from [`environment`](RollbackEvent::environment) back to
    /// Production.
    Release,
    /// One feature flag, turned off; the environment did not change.
    Flag(String),
}

impl RolledBack {
    /// `release` or `flag`, as the C ABI's history JSON writes it.
    ///
    /// # Example
    /// ```
    /// assert_eq!(promotion_gates::RolledBack::Release.kind(), "release");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            RolledBack::Release => "release",
            RolledBack::Flag(_) => "flag",
        }
    }
}

/// One entry of a gate's rollback history.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// let gate = PromotionGateManager::new(
///     PromotionConfig { environment: Environment::Canary { traffic_percent: 50.0 }, ..Default::default() },
///     SloAdmissionController::new(SloConfig::default())?,
/// )?;
/// gate.rollback("bad deploy")?;
/// let event = &gate.rollback_history()[0];
/// assert_eq!(event.rolled_back, RolledBack::Release);
/// assert_eq!(event.feature, "Canary{50}");
/// assert_eq!(event.reason, "bad deploy");
/// assert_eq!(event.environment, Environment::Canary { traffic_percent: 50.0 });
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackEvent {
    /// What was rolled back, typed.
    pub rolled_back: RolledBack,
    /// The specification's text for it: the environment rolled back from (`Canary{50}`) or the
    /// flag's name. Derived from `rolled_back` and `environment` where the event is made.
    pub feature: String,
    /// Why, with the judge's evidence for automatic rollbacks.
    pub reason: String,
    /// When, by the gate's clock.
    pub timestamp: SystemTime,
    /// The environment the gate was in before.
    pub environment: Environment,
    /// What started it.
    pub trigger: RollbackTrigger,
    /// For an automatic rollback, the judge's evidence: numbers and fired rules, structured
    /// (the same as in `reason`, as text).
    pub evidence: Option<crate::judge::Evidence>,
}

/// Oldest-first history with a bound; the oldest event is dropped when full.
#[derive(Debug, Default)]
pub(crate) struct RollbackHistory {
    events: VecDeque<RollbackEvent>,
}

/// What a rollback event undid.
#[derive(Debug)]
pub(crate) enum Undone {
    /// The release (a manual or automatic rollback), for `reason`.
    Release {
        trigger: RollbackTrigger,
        reason: String,
        evidence: Option<crate::judge::Evidence>,
    },
    /// One flag, disabled.
    Flag(String),
}

impl RollbackHistory {
    /// Records that `undone` was rolled back at `timestamp` from `environment` (the gate's
    /// environment before the change), keeping at most `bound` events. The one place a
    /// [`RollbackEvent`] is made.
    pub(crate) fn record(
        &mut self,
        undone: Undone,
        environment: Environment,
        timestamp: SystemTime,
        bound: usize,
    ) {
        let (rolled_back, feature, reason, trigger, evidence) = match undone {
            Undone::Release {
                trigger,
                reason,
                evidence,
            } => (
                RolledBack::Release,
                environment.to_string(),
                reason,
                trigger,
                evidence,
            ),
            Undone::Flag(name) => (
                RolledBack::Flag(name.clone()),
                name,
                "feature flag disabled".to_string(),
                RollbackTrigger::FlagDisabled,
                None,
            ),
        };
        let event = RollbackEvent {
            rolled_back,
            feature,
            reason,
            timestamp,
            environment,
            trigger,
            evidence,
        };
        self.events.push_back(event);
        self.trim(bound);
    }

    pub(crate) fn trim(&mut self, bound: usize) {
        while self.events.len() > bound.max(1) {
            self.events.pop_front();
        }
    }

    pub(crate) fn to_vec(&self) -> Vec<RollbackEvent> {
        self.events.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_newest_within_its_bound() {
        let mut history = RollbackHistory::default();
        for i in 0..5 {
            let undone = Undone::Release {
                trigger: RollbackTrigger::Manual,
                reason: format!("r{i}"),
                evidence: None,
            };
            history.record(undone, Environment::Staging, SystemTime::UNIX_EPOCH, 3);
        }
        history.record(
            Undone::Flag("f".into()),
            Environment::Production,
            SystemTime::UNIX_EPOCH,
            3,
        );
        let events = history.to_vec();
        let reasons: Vec<_> = events.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(reasons, ["r3", "r4", "feature flag disabled"]);
        assert_eq!(events[0].feature, "Staging");
        assert_eq!(events[2].feature, "f");
        assert_eq!(events[2].trigger, RollbackTrigger::FlagDisabled);
    }
}
