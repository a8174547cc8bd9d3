//! Rollbacks counted by cause over a gate's life. The rollback history is bounded and drops
//! its oldest events; these counts never decrease, so they can be exported as counters.

use crate::history::RollbackTrigger;
use crate::judge::{Evidence, Rule};

/// How many rollback events of one cause a gate made since it was built.
///
/// The cause is the trigger and, for an automatic rollback, the first rule that fired (the
/// judge evaluates its rules in a fixed order, so one rollback counts once).
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
/// assert_eq!(
///     gate.rollback_counts(),
///     [RollbackCount { trigger: RollbackTrigger::Manual, rule: None, count: 1 }]
/// );
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollbackCount {
    /// What started the rollbacks.
    pub trigger: RollbackTrigger,
    /// For automatic rollbacks, the first rule that fired; `None` otherwise.
    pub rule: Option<Rule>,
    /// How many, since the gate was built.
    pub count: u64,
}

/// The gate's counts, one entry per cause seen, in order of first occurrence. Kept by the
/// writer, under its lock.
#[derive(Debug, Default)]
pub(crate) struct RollbackTally {
    counts: Vec<RollbackCount>,
}

impl RollbackTally {
    /// Counts one rollback event started by `trigger`, on `evidence` if the judge's.
    pub(crate) fn count(&mut self, trigger: RollbackTrigger, evidence: Option<&Evidence>) {
        let rule = evidence.and_then(|e| e.fired().next()).map(|f| f.rule);
        match self
            .counts
            .iter_mut()
            .find(|c| c.trigger == trigger && c.rule == rule)
        {
            Some(entry) => entry.count += 1,
            None => self.counts.push(RollbackCount {
                trigger,
                rule,
                count: 1,
            }),
        }
    }

    pub(crate) fn to_vec(&self) -> Vec<RollbackCount> {
        self.counts.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Environment;
    use crate::decision::StageId;
    use crate::judge::{CohortEvidence, Finding};

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

    #[test]
    fn counts_each_event_once_under_its_first_fired_rule() {
        let mut tally = RollbackTally::default();
        let two_rules = evidence(&[Rule::ErrorRateMax, Rule::HealthScore]);
        tally.count(RollbackTrigger::Automatic, Some(&two_rules));
        tally.count(RollbackTrigger::Manual, None);
        tally.count(RollbackTrigger::Automatic, Some(&two_rules));
        tally.count(
            RollbackTrigger::Automatic,
            Some(&evidence(&[Rule::P99Budget])),
        );
        let got: Vec<_> = tally
            .to_vec()
            .into_iter()
            .map(|c| (c.trigger, c.rule, c.count))
            .collect();
        assert_eq!(
            got,
            [
                (RollbackTrigger::Automatic, Some(Rule::ErrorRateMax), 2),
                (RollbackTrigger::Manual, None, 1),
                (RollbackTrigger::Automatic, Some(Rule::P99Budget), 1),
            ]
        );
    }
}
