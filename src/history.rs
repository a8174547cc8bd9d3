//! Rollback events and the bounded history a gate keeps of them.

use std::collections::VecDeque;
use std::time::SystemTime;

use crate::config::Environment;
use crate::limits::MAX_ROLLBACK_HISTORY_BYTES;

/// What started a rollback event.
///
/// # Example
/// ```
/// assert_eq!(promotion_gates::RollbackTrigger::Automatic.name(), "automatic");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
pub struct RollbackEvent {
    /// What was rolled back, typed.
    pub rolled_back: RolledBack,
    /// The specification's text for it: the environment rolled back from (`Canary{50}`) or the
    /// flag's name. Derived from `rolled_back` and `environment` where the event is made. The
    /// share is written as everywhere in the library, as the shortest number that reads back
    /// the same (`Canary{50}`, `Canary{12.5}`), where the specification shows `Canary{50.0}`.
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

impl RollbackEvent {
    /// The event for `undone`, rolled back at `timestamp` from `environment` (the gate's
    /// environment before the change). The one place a [`RollbackEvent`] is made.
    pub(crate) fn made(undone: Undone, environment: Environment, timestamp: SystemTime) -> Self {
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
        Self {
            rolled_back,
            feature,
            reason,
            timestamp,
            environment,
            trigger,
            evidence,
        }
    }
}

/// Oldest-first history bounded in events and in bytes
/// ([`MAX_ROLLBACK_HISTORY_BYTES`]); the oldest events are dropped first, the newest is always
/// kept, and every dropped event is counted.
#[derive(Debug, Default)]
pub(crate) struct RollbackHistory {
    events: VecDeque<RollbackEvent>,
    /// The sum of [`event_bytes`] over `events`.
    bytes: usize,
    /// Events dropped over the gate's life, by either bound.
    dropped: u64,
}

/// What one event counts for against [`MAX_ROLLBACK_HISTORY_BYTES`]: the event's own size
/// (which holds its evidence inline), plus the heap it owns: its texts and its evidence's
/// findings.
fn event_bytes(event: &RollbackEvent) -> usize {
    let flag = match &event.rolled_back {
        RolledBack::Flag(name) => Some(name.as_str()),
        RolledBack::Release => None,
    };
    let evidence = event.evidence.as_ref().map_or(0, |evidence| {
        evidence.findings.capacity() * std::mem::size_of::<crate::judge::Finding>()
    });
    bytes_without_evidence(&event.feature, &event.reason, flag) + evidence
}

/// What an event without evidence (as a state store keeps it) counts for against
/// [`MAX_ROLLBACK_HISTORY_BYTES`]: of `feature` and `reason`, and for a flag its name. A store
/// reading the history newest first stops where the gate's history would drop the rest.
pub(crate) fn bytes_without_evidence(feature: &str, reason: &str, flag: Option<&str>) -> usize {
    std::mem::size_of::<RollbackEvent>() + feature.len() + reason.len() + flag.map_or(0, str::len)
}

/// What a rollback event undid.
#[derive(Debug)]
// An `Undone` lives for one call, until its event is made: boxing the evidence would cost an
// allocation on every rollback for no memory saved.
#[allow(clippy::large_enum_variant)]
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
    /// Appends an event made elsewhere (by [`RollbackEvent::made`], or read from a state
    /// store), keeping at most `bound` events and [`MAX_ROLLBACK_HISTORY_BYTES`]. Returns how
    /// many older events were dropped to make room.
    pub(crate) fn push(&mut self, event: RollbackEvent, bound: usize) -> u64 {
        self.bytes += event_bytes(&event);
        self.events.push_back(event);
        self.trim(bound)
    }

    /// Replaces the kept events by `events` (the whole history, read from a state store),
    /// oldest first, within `bound` and [`MAX_ROLLBACK_HISTORY_BYTES`]. The count of dropped
    /// events carries on: it never goes back. Returns how many of `events` were dropped.
    pub(crate) fn replace(
        &mut self,
        events: impl IntoIterator<Item = RollbackEvent>,
        bound: usize,
    ) -> u64 {
        self.events.clear();
        self.bytes = 0;
        events
            .into_iter()
            .map(|event| self.push(event, bound))
            .sum()
    }

    /// [`push`](Self::push) of the event [`RollbackEvent::made`] makes: the tests' shorthand.
    #[cfg(test)]
    pub(crate) fn record(
        &mut self,
        undone: Undone,
        environment: Environment,
        timestamp: SystemTime,
        bound: usize,
    ) -> u64 {
        self.push(RollbackEvent::made(undone, environment, timestamp), bound)
    }

    /// Drops the oldest events until at most `bound` (at least 1) remain within
    /// [`MAX_ROLLBACK_HISTORY_BYTES`], the newest always kept; returns how many it dropped.
    pub(crate) fn trim(&mut self, bound: usize) -> u64 {
        let mut dropped = 0;
        while self.events.len() > 1
            && (self.events.len() > bound.max(1) || self.bytes > MAX_ROLLBACK_HISTORY_BYTES)
        {
            if let Some(oldest) = self.events.pop_front() {
                self.bytes -= event_bytes(&oldest);
                dropped += 1;
            }
        }
        self.dropped += dropped;
        dropped
    }

    /// Events dropped over the gate's life, by either bound.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The bytes the kept events count for (see [`MAX_ROLLBACK_HISTORY_BYTES`]).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The newest event kept.
    pub(crate) fn last(&self) -> Option<&RollbackEvent> {
        self.events.back()
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
        assert_eq!(history.dropped(), 3);
    }

    fn release(reason: String) -> Undone {
        Undone::Release {
            trigger: RollbackTrigger::Manual,
            reason,
            evidence: None,
        }
    }

    #[test]
    fn history_is_bounded_in_bytes_and_keeps_the_newest() {
        let mut history = RollbackHistory::default();
        let reason = "r".repeat(crate::limits::MAX_REASON_BYTES);
        let mut dropped = 0;
        for _ in 0..5_000 {
            dropped += history.record(
                release(reason.clone()),
                Environment::Staging,
                SystemTime::UNIX_EPOCH,
                crate::limits::MAX_ROLLBACK_HISTORY,
            );
            assert!(history.bytes() <= MAX_ROLLBACK_HISTORY_BYTES);
        }
        let kept = history.to_vec().len() as u64;
        assert!(kept < 5_000 && kept > 100, "{kept}");
        assert_eq!(kept + dropped, 5_000);
        assert_eq!(history.dropped(), dropped);
        let recount: usize = history.events.iter().map(event_bytes).sum();
        assert_eq!(recount, history.bytes());
        // One event over the byte bound on its own is still kept: the newest always is.
        let mut history = RollbackHistory::default();
        let huge = "h".repeat(MAX_ROLLBACK_HISTORY_BYTES + 1);
        history.record(
            release(huge),
            Environment::Staging,
            SystemTime::UNIX_EPOCH,
            10,
        );
        assert_eq!(history.to_vec().len(), 1);
    }

    #[test]
    fn an_automatic_rollback_counts_its_findings_once_and_its_inline_evidence_not_twice() {
        use crate::judge::{Evidence, Finding, Rule};
        let finding = Finding {
            rule: Rule::OverwhelmingErrors,
            observed: 0.5,
            limit: 0.1,
            p_value: 0.0,
            fired: true,
            holds: false,
            acting: "overwhelming_significance",
        };
        let evidence = Evidence {
            stage: crate::StageId(1),
            environment: Environment::Production,
            canary: Default::default(),
            stable: Default::default(),
            min_samples: 5,
            slo_threshold: 0.99,
            findings: vec![finding; 7],
            health_score: 0.0,
            non_inferiority: Default::default(),
            instances: 1,
        };
        let findings_heap = evidence.findings.capacity() * std::mem::size_of::<Finding>();
        let undone = Undone::Release {
            trigger: RollbackTrigger::Automatic,
            reason: "r".into(),
            evidence: Some(evidence),
        };
        let event = RollbackEvent::made(undone, Environment::Production, SystemTime::UNIX_EPOCH);
        let texts = event.feature.len() + event.reason.len();
        assert_eq!(
            event_bytes(&event),
            std::mem::size_of::<RollbackEvent>() + texts + findings_heap
        );
    }

    #[test]
    fn replacing_the_history_keeps_the_count_of_dropped_events() {
        let mut history = RollbackHistory::default();
        for i in 0..4 {
            history.record(
                release(format!("r{i}")),
                Environment::Staging,
                SystemTime::UNIX_EPOCH,
                2,
            );
        }
        assert_eq!(history.dropped(), 2);
        let whole = |i: usize| {
            RollbackEvent::made(
                release(format!("s{i}")),
                Environment::Staging,
                SystemTime::UNIX_EPOCH,
            )
        };
        assert_eq!(history.replace((0..3).map(whole), 2), 1);
        assert_eq!(history.dropped(), 3);
        let reasons: Vec<_> = history.to_vec().into_iter().map(|e| e.reason).collect();
        assert_eq!(reasons, ["s1", "s2"]);
        let recount: usize = history.events.iter().map(event_bytes).sum();
        assert_eq!(recount, history.bytes());
    }

    #[test]
    fn lowering_the_bound_drops_the_oldest_and_says_how_many() {
        let mut history = RollbackHistory::default();
        for i in 0..10 {
            history.record(
                release(format!("r{i}")),
                Environment::Staging,
                SystemTime::UNIX_EPOCH,
                10,
            );
        }
        assert_eq!(history.trim(4), 6);
        assert_eq!(history.trim(100), 0);
        let reasons: Vec<_> = history.to_vec().into_iter().map(|e| e.reason).collect();
        assert_eq!(reasons, ["r6", "r7", "r8", "r9"]);
        assert_eq!(history.dropped(), 6);
    }
}
