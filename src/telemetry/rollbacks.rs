//! Rollbacks counted by cause over a gate's life. The rollback history is bounded and drops
//! its oldest events; these counts never decrease, so they can be exported as counters.
//!
//! On a state store the counts are stored with the release, in the write that records each
//! event, and every process shows the stored counts (see [`RollbackCount`]). A store's events
//! carry no structured evidence, so the rule of an automatic rollback counted from a store's
//! history (one written before the counts were stored) is read from the start of its reason,
//! where every automatic rollback names its fired rules (`automatic rollback: error_rate_max,
//! ...`).

use crate::history::{RollbackEvent, RollbackTrigger};
use crate::judge::Rule;

/// How many rollback events of one cause a gate counted since it was built.
///
/// The cause is the trigger and, for an automatic rollback, the first rule that fired (the
/// judge evaluates its rules in a fixed order, so one rollback counts once).
///
/// A gate without a state store counts its own rollbacks. A gate on a store shows the counts
/// stored with its release: every rollback any process stored, once, never trimmed with the
/// history, so every process that shares the store shows the same counts once it has synced,
/// and a restarted process goes on from them. Two limits: a rollback this process made that
/// another process's write overtook before it was written (an automatic one is always written
/// by the sync thread, a moment later, the store up or not), and that the store does not hold
/// as the same rollback under the same cause (dropped; or the same rollback stored first by
/// another process whose judge fired another rule first, or a manual one and an automatic
/// one), is counted here only, until this process exits: processes judging pooled evidence
/// (nginx workers) then differ by one for each such rollback (docs/telemetry.md says how to
/// alert on rollbacks regardless); and stored counts that went back (a store replaced
/// by an older copy or made afresh, a write of a process that counted fewer) never make a count
/// go down: it stays at the most this gate showed until the stored count passes it.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// use promotion_gates::telemetry::RollbackCount;
/// let gate = PromotionGateManager::new(
///     PromotionConfig { environment: Environment::Staging, ..Default::default() },
///     SloAdmissionController::new(SloConfig::default())?,
/// )?;
/// gate.rollback("bad deploy")?;
/// let counts: Vec<RollbackCount> = gate.rollback_counts();
/// assert_eq!(counts.len(), 1);
/// assert_eq!((counts[0].trigger, counts[0].rule, counts[0].count), (RollbackTrigger::Manual, None, 1));
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RollbackCount {
    /// What started the rollbacks.
    pub trigger: RollbackTrigger,
    /// For automatic rollbacks, the first rule that fired; `None` otherwise.
    pub rule: Option<Rule>,
    /// How many, since the gate was built (with a store: since the store's state was made).
    pub count: u64,
}

/// Counts by cause, one entry per cause seen, in order of first occurrence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RollbackTally {
    counts: Vec<RollbackCount>,
}

impl RollbackTally {
    /// Counts one rollback event under its trigger and, for an automatic one, its first fired
    /// rule: from its evidence, or, for an event read from a store (which keeps no evidence),
    /// from its reason.
    pub(crate) fn count(&mut self, event: &RollbackEvent) {
        let (trigger, rule) = cause_of(event);
        self.add(RollbackCount {
            trigger,
            rule,
            count: 1,
        });
    }

    /// Takes back one count of `event`'s cause (a rollback counted here that is now counted
    /// elsewhere); an entry counted down to 0 stays, in its place.
    pub(crate) fn uncount(&mut self, event: &RollbackEvent) {
        let (trigger, rule) = cause_of(event);
        if let Some(entry) = self
            .counts
            .iter_mut()
            .find(|c| c.trigger == trigger && c.rule == rule)
        {
            entry.count = entry.count.saturating_sub(1);
        }
    }

    /// Adds `more` to its cause's count (saturating: a store edited by hand may hold counts
    /// near `u64::MAX`).
    fn add(&mut self, more: RollbackCount) {
        let entry = self.entry(more);
        entry.count = entry.count.saturating_add(more.count);
    }

    /// Raises `to`'s cause's count to `to.count`, if below it.
    fn raise(&mut self, to: RollbackCount) {
        let entry = self.entry(to);
        entry.count = entry.count.max(to.count);
    }

    /// The entry of `cause`'s trigger and rule, added at 0 if there is none.
    fn entry(&mut self, cause: RollbackCount) -> &mut RollbackCount {
        let at = self
            .counts
            .iter()
            .position(|c| c.trigger == cause.trigger && c.rule == cause.rule);
        let at = at.unwrap_or_else(|| {
            self.counts.push(RollbackCount { count: 0, ..cause });
            self.counts.len() - 1
        });
        &mut self.counts[at]
    }

    /// A tally of `counts` (one entry per cause, as a store's read gives them).
    pub(crate) fn of(counts: Vec<RollbackCount>) -> Self {
        Self { counts }
    }

    /// The counts, one entry per cause, in order of first occurrence.
    pub(crate) fn counts(&self) -> &[RollbackCount] {
        &self.counts
    }
}

/// A gate's rollback counts: those of the stored state it knows (with a store), and those of
/// the rollbacks made here that no store holds (without a store, every one; with one, a
/// rollback waiting to be written, or one that another process's write overtook, counted in
/// this process only), shown never below what was shown before. Kept under the records lock.
#[derive(Debug, Default)]
pub(crate) struct RollbackCounts {
    stored: RollbackTally,
    here: RollbackTally,
    /// The most shown of each cause so far: a count is shown as the larger of it and the
    /// stored count with those made here, so that no count shown goes down (a store whose
    /// counts went back: made afresh, put back to an older copy, or written by a process that
    /// counted fewer, a build before the counts' history).
    shown: RollbackTally,
}

impl RollbackCounts {
    /// Counts a rollback made here that the store does not hold (or there is no store).
    pub(crate) fn count_here(&mut self, event: &RollbackEvent) {
        self.here.count(event);
    }

    /// A rollback counted here is now stored (its counts are in the next
    /// [`stored`](Self::stored)): counted here no more.
    pub(crate) fn now_stored(&mut self, event: &RollbackEvent) {
        self.here.uncount(event);
    }

    /// The counts of the stored state the gate now follows.
    pub(crate) fn stored(&mut self, stored: RollbackTally) {
        self.stored = stored;
    }

    /// Both together, one entry per cause (in the order each cause was first shown: at the
    /// first read, the stored causes in their order, then those counted here only), each at
    /// least what it was shown before: a count whose stored
    /// count went back stays where it was shown until the stored one passes it. Read under the
    /// records lock, with every change of a write or a catch-up made, so that a count moving
    /// from here to the stored ones is never shown twice.
    pub(crate) fn shown(&mut self) -> Vec<RollbackCount> {
        let mut all = self.stored.clone();
        for count in self.here.counts() {
            all.add(*count);
        }
        for count in all.counts {
            self.shown.raise(count);
        }
        let shown = self.shown.counts.iter().filter(|c| c.count > 0);
        shown.copied().collect()
    }
}

/// Whether `a` and `b` count under the same cause.
pub(crate) fn same_cause(a: &RollbackEvent, b: &RollbackEvent) -> bool {
    cause_of(a) == cause_of(b)
}

/// The cause an event counts under: its trigger and, for an automatic rollback, its first
/// fired rule, from its evidence, or, for an event read from a store (which keeps no
/// evidence), from its reason.
fn cause_of(event: &RollbackEvent) -> (RollbackTrigger, Option<Rule>) {
    let trigger = event.trigger;
    let rule = match &event.evidence {
        Some(evidence) => evidence.fired().next().map(|f| f.rule),
        None if trigger == RollbackTrigger::Automatic => first_rule_named(&event.reason),
        None => None,
    };
    (trigger, rule)
}

/// The series both exporters show of `counts`: every cause a gate can count, each from the
/// start (at 0) so that a rate or `increase()` sees the first rollback: `manual`,
/// `flag_disabled`, then `automatic` under each rule that can roll back (all but `no_data`,
/// whether judged in the window or not), then any other cause counted (an automatic rollback
/// read from a store whose reason names no rule).
pub(crate) fn rollback_series(counts: &[RollbackCount]) -> impl Iterator<Item = RollbackCount> {
    let mut causes: Vec<(RollbackTrigger, Option<Rule>)> = vec![
        (RollbackTrigger::Manual, None),
        (RollbackTrigger::FlagDisabled, None),
    ];
    let rules = Rule::ALL
        .iter()
        .copied()
        .filter(|rule| *rule != Rule::NoData);
    causes.extend(rules.map(|rule| (RollbackTrigger::Automatic, Some(rule))));
    for counted in counts {
        if !causes.contains(&(counted.trigger, counted.rule)) {
            causes.push((counted.trigger, counted.rule));
        }
    }
    let counts = counts.to_vec();
    causes
        .into_iter()
        .map(move |(trigger, rule)| RollbackCount {
            trigger,
            rule,
            count: counts
                .iter()
                .find(|c| c.trigger == trigger && c.rule == rule)
                .map_or(0, |c| c.count),
        })
}

/// The first fired rule an automatic rollback's reason names: its reason starts with
/// `automatic rollback: ` and the fired rules' names, separated by `, `
/// ([`Verdict::rollback_reason`](crate::verdict::Verdict::rollback_reason)). `None` for a
/// reason in another form.
fn first_rule_named(reason: &str) -> Option<Rule> {
    let rules = reason.strip_prefix(AUTOMATIC_REASON_PREFIX)?;
    let name = rules.split([',', ' ']).next()?;
    Rule::ALL.iter().copied().find(|rule| rule.name() == name)
}

/// How an automatic rollback's reason starts.
const AUTOMATIC_REASON_PREFIX: &str = "automatic rollback: ";

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::config::Environment;
    use crate::decision::StageId;
    use crate::history::Undone;
    use crate::judge::{CanaryHealth, CohortEvidence, Evidence, Finding, Recommendation};
    use crate::verdict::Verdict;

    fn evidence(fired: &[Rule]) -> Evidence {
        let finding = |rule, fired| Finding {
            rule,
            observed: 0.5,
            limit: 0.1,
            p_value: 0.0,
            fired,
            holds: false,
            acting: "max_error_rate",
        };
        let mut findings = vec![finding(Rule::SloCompliance, false)];
        findings.extend(fired.iter().map(|&rule| finding(rule, true)));
        Evidence {
            stage: StageId::new(2),
            environment: Environment::Staging,
            canary: CohortEvidence::default(),
            stable: CohortEvidence::default(),
            min_samples: 10,
            slo_threshold: 0.99,
            findings,
            health_score: 0.2,
            non_inferiority: Default::default(),
            instances: 1,
        }
    }

    /// A release rollback's event, as the gate makes it (an automatic one's reason is the
    /// verdict's, as the gate writes it).
    fn event(trigger: RollbackTrigger, evidence: Option<Evidence>) -> RollbackEvent {
        let reason = match &evidence {
            Some(evidence) => Verdict::new(CanaryHealth {
                traffic_percent: 100.0,
                canary_requests: 0,
                production_requests: 0,
                canary_error_rate: 0.5,
                production_error_rate: 0.0,
                canary_p99_latency: Duration::ZERO,
                production_p99_latency: Duration::ZERO,
                health_score: 0.2,
                recommendation: Recommendation::Rollback,
                evidence: evidence.clone(),
            })
            .rollback_reason(),
            None => "by hand".to_string(),
        };
        let undone = Undone::Release {
            trigger,
            reason,
            evidence,
        };
        RollbackEvent::made(undone, Environment::Staging, SystemTime::UNIX_EPOCH)
    }

    /// The event as another process reads it from a store: without its evidence.
    fn stored(mut event: RollbackEvent) -> RollbackEvent {
        event.evidence = None;
        event
    }

    fn counts(tally: &RollbackTally) -> Vec<(RollbackTrigger, Option<Rule>, u64)> {
        let counts = tally.counts().iter();
        counts.map(|c| (c.trigger, c.rule, c.count)).collect()
    }

    #[test]
    fn counts_each_event_once_under_its_first_fired_rule() {
        let mut tally = RollbackTally::default();
        let two_rules = Some(evidence(&[Rule::ErrorRateMax, Rule::HealthScore]));
        tally.count(&event(RollbackTrigger::Automatic, two_rules.clone()));
        tally.count(&event(RollbackTrigger::Manual, None));
        tally.count(&event(RollbackTrigger::Automatic, two_rules));
        let p99 = Some(evidence(&[Rule::P99Budget]));
        tally.count(&event(RollbackTrigger::Automatic, p99));
        assert_eq!(
            counts(&tally),
            [
                (RollbackTrigger::Automatic, Some(Rule::ErrorRateMax), 2),
                (RollbackTrigger::Manual, None, 1),
                (RollbackTrigger::Automatic, Some(Rule::P99Budget), 1),
            ]
        );
    }

    #[test]
    fn a_count_shown_never_goes_down_and_a_count_moved_to_the_store_is_shown_once() {
        let manual = event(RollbackTrigger::Manual, None);
        let tally = |n: u64| {
            let mut tally = RollbackTally::default();
            (0..n).for_each(|_| tally.count(&manual));
            tally
        };
        let shown = |counts: &mut RollbackCounts| -> Vec<u64> {
            counts.shown().iter().map(|c| c.count).collect()
        };
        let mut counts = RollbackCounts::default();
        counts.stored(tally(2));
        counts.count_here(&manual);
        assert_eq!(shown(&mut counts), [3]);
        // Written: in the stored counts, counted here no more (one update, under one lock).
        counts.stored(tally(3));
        counts.now_stored(&manual);
        assert_eq!(shown(&mut counts), [3]);
        // The stored counts go back: held where shown until they pass it.
        counts.stored(tally(1));
        assert_eq!(shown(&mut counts), [3]);
        counts.stored(tally(4));
        assert_eq!(shown(&mut counts), [4]);
    }

    #[test]
    fn an_event_read_from_a_store_counts_under_the_rule_its_reason_names_first() {
        for &rule in Rule::ALL {
            let made = event(
                RollbackTrigger::Automatic,
                Some(evidence(&[rule, Rule::HealthScore])),
            );
            let mut ours = RollbackTally::default();
            ours.count(&made);
            let mut theirs = RollbackTally::default();
            theirs.count(&stored(made));
            assert_eq!(counts(&theirs), counts(&ours), "{rule:?}");
            assert_eq!(counts(&theirs)[0].1, Some(rule));
        }
        // A reason in another form (edited by hand in the store) counts with no rule.
        let mut tally = RollbackTally::default();
        let mut edited = stored(event(RollbackTrigger::Automatic, Some(evidence(&[]))));
        edited.reason = "automatic rollback: nothing_we_know | ...".into();
        tally.count(&edited);
        edited.reason = "rolled back".into();
        tally.count(&edited);
        assert_eq!(counts(&tally), [(RollbackTrigger::Automatic, None, 2)]);
        // A manual rollback's reason is never read for a rule.
        let mut tally = RollbackTally::default();
        let mut manual = event(RollbackTrigger::Manual, None);
        manual.reason = "automatic rollback: error_rate_max".into();
        tally.count(&manual);
        assert_eq!(counts(&tally), [(RollbackTrigger::Manual, None, 1)]);
    }
}
