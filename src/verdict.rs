//! What a judgement means for the gate: a [`Verdict`] (roll back or not) and [`Compliance`]
//! (may the release move on), decided here once for every caller.

use crate::config::Environment;
use crate::decision::{Cohort, StageId};
use crate::judge::{CanaryHealth, Evidence, HEALTHY_FROM, Recommendation, Rule};

/// The judge's health of one stage, for the gate to act on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdict {
    health: CanaryHealth,
}

impl Verdict {
    pub(crate) fn new(health: CanaryHealth) -> Self {
        Self { health }
    }

    /// The stage judged: a verdict applies to that stage only.
    pub(crate) fn stage(&self) -> StageId {
        self.health.evidence.stage
    }

    pub(crate) fn evidence(&self) -> &Evidence {
        &self.health.evidence
    }

    /// The judge's recommendation.
    pub(crate) fn recommendation(&self) -> Recommendation {
        self.health.recommendation
    }

    pub(crate) fn into_health(self) -> CanaryHealth {
        self.health
    }

    /// Whether a rule fired: the canary should be rolled back (when the config allows).
    pub(crate) fn calls_for_rollback(&self) -> bool {
        self.health.evidence.fired().next().is_some()
    }

    /// What fired and on what: the fired rules, then the evidence (the SLO violation log line).
    pub(crate) fn violation(&self) -> String {
        let evidence = &self.health.evidence;
        let rules: Vec<&str> = evidence.fired().map(|f| f.rule.name()).collect();
        format!("{} | {evidence}", rules.join(", "))
    }

    /// The reason written into an automatic rollback event: the [`Self::violation`].
    pub(crate) fn rollback_reason(&self) -> String {
        format!("automatic rollback: {}", self.violation())
    }

    /// Whether the version under judgement meets its SLO (see [`compliance`]).
    pub(crate) fn compliance(&self) -> Compliance {
        compliance(&self.health.evidence)
    }
}

/// Whether the version under judgement meets its SLO, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Compliance {
    /// Enough samples, compliance at or above the threshold, no rule fired.
    Compliant,
    /// A rule fired.
    RuleFired,
    /// The canary has reported no outcome for `no_data_ms` while some were due.
    NoData,
    /// An absolute limit is breached, but the canary is not significantly worse than the
    /// stable version: the whole service breaches its SLO. Nothing is rolled back. (Breached
    /// before the window holds `min_samples` stable outcomes to compare with, it is
    /// [`Compliance::TooFewSamples`] of the stable version.)
    ServiceBreach { rule: Rule },
    /// Fewer than `min_samples` samples of the subject in the window (a canary: of its outcomes,
    /// or of its latencies after the stage's warm-up); or an absolute limit breached while the
    /// stable version has fewer than that to say whether the canary is to blame (`subject` is
    /// then the stable version).
    TooFewSamples {
        subject: Cohort,
        have: u64,
        need: u64,
    },
    /// Compliance (success within the latency target, a slow success in the stage's warm-up
    /// not counted against it: `CohortEvidence::judged_compliance`) below `slo_threshold`;
    /// `service_wide` when the stable version's is below it too.
    BelowThreshold {
        compliance: f64,
        threshold: f64,
        service_wide: bool,
    },
    /// The stage does not yet show the canary not worse than the stable version beyond the
    /// tolerated limits (on errors, on latency, or both).
    NotShown { errors: bool, latency: bool },
    /// The health score is below `threshold` ([`HEALTHY_FROM`], 0.9): the judge's MONITOR,
    /// watch before promoting, though no rule fired (the `health_score` rule acts on the
    /// score's upper confidence bound, below 0.8).
    LowScore { score: f64, threshold: f64 },
}

/// The one compliance decision. The subject is the version under judgement: the new version,
/// or in Production (where there is none) the stable one. It is compliant when no rule fired,
/// no finding holds, it has at least `min_samples` samples in the window (a canary: of its
/// latencies after the stage's warm-up too, which the latency rules judge), compliance at or
/// above the evidence's `slo_threshold` (the judged release's), a health score at least
/// [`HEALTHY_FROM`] (0.9), and (a canary with stable traffic to compare with) the stage shows
/// it not worse than the stable version beyond the tolerated limits; checked in that order,
/// a `no_data` hold before any other finding that holds (as the judge's NO_DATA comes before
/// its MONITOR).
/// It is the judge's HEALTHY, in every environment (in Production too, where no rule judges
/// but the stable version's samples and compliance are held against `slo_threshold`).
pub(crate) fn compliance(evidence: &Evidence) -> Compliance {
    let subject = if evidence.environment == Environment::Production {
        Cohort::Stable
    } else {
        Cohort::Canary
    };
    let numbers = evidence.subject();
    let slo_threshold = evidence.slo_threshold;
    // No data first, as the judge's NO_DATA: a breach the whole service shows is no reason
    // to ignore that the canary reports nothing.
    let held = evidence.held().next().map(|f| f.rule);
    let shown = evidence.non_inferiority;
    if evidence.fired().next().is_some() {
        Compliance::RuleFired
    } else if evidence.holds(Rule::NoData) {
        Compliance::NoData
    } else if let Some(rule) = held {
        // The stable outcomes the rule's blame needs: without them the breach is nobody's yet.
        let stable = match rule {
            Rule::P99Budget => evidence.stable.judged(),
            _ => evidence.stable.requests,
        };
        if stable < evidence.min_samples {
            Compliance::TooFewSamples {
                subject: Cohort::Stable,
                have: stable,
                need: evidence.min_samples,
            }
        } else {
            Compliance::ServiceBreach { rule }
        }
    } else if evidence.too_few_samples() {
        Compliance::TooFewSamples {
            subject,
            have: evidence.subject_samples(),
            need: evidence.min_samples,
        }
    } else if evidence.below_slo_threshold() {
        Compliance::BelowThreshold {
            compliance: numbers.judged_compliance,
            threshold: slo_threshold,
            service_wide: subject == Cohort::Canary
                && evidence.stable.requests >= evidence.min_samples
                && evidence.stable.judged_compliance < slo_threshold,
        }
    } else if evidence.health_score < HEALTHY_FROM {
        Compliance::LowScore {
            score: evidence.health_score,
            threshold: HEALTHY_FROM,
        }
    } else if !shown.sufficient() {
        Compliance::NotShown {
            errors: shown.errors,
            latency: shown.latency,
        }
    } else {
        Compliance::Compliant
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::{CohortEvidence, Finding};

    fn evidence(environment: Environment, canary: u64, stable: u64, fired: bool) -> Evidence {
        at_threshold(environment, canary, stable, fired, 0.95)
    }

    fn at_threshold(
        environment: Environment,
        canary: u64,
        stable: u64,
        fired: bool,
        slo_threshold: f64,
    ) -> Evidence {
        let numbers = |requests| CohortEvidence {
            requests,
            latency_requests: requests,
            compliant: requests * 99 / 100,
            compliance: 0.99,
            judged_compliance: 0.99,
            ..Default::default()
        };
        Evidence {
            stage: StageId(3),
            environment,
            canary: numbers(canary),
            stable: numbers(stable),
            min_samples: 100,
            slo_threshold,
            findings: vec![Finding {
                rule: Rule::OverwhelmingErrors,
                observed: 0.0,
                limit: 0.0,
                p_value: 1.0,
                fired,
                holds: false,
                acting: "overwhelming_significance",
            }],
            health_score: 1.0,
            non_inferiority: Default::default(),
            instances: 1,
        }
    }

    #[test]
    fn the_subject_is_the_new_version_outside_production() {
        let canary = Environment::Canary {
            traffic_percent: 5.0,
        };
        for env in [canary, Environment::Staging] {
            assert_eq!(
                compliance(&evidence(env, 100, 0, false)),
                Compliance::Compliant
            );
            assert_eq!(
                compliance(&evidence(env, 99, 10_000, false)),
                Compliance::TooFewSamples {
                    subject: Cohort::Canary,
                    have: 99,
                    need: 100
                }
            );
        }
        let production = Environment::Production;
        assert_eq!(
            compliance(&evidence(production, 0, 100, false)),
            Compliance::Compliant
        );
        assert!(matches!(
            compliance(&evidence(production, 100, 99, false)),
            Compliance::TooFewSamples {
                subject: Cohort::Stable,
                ..
            }
        ));
    }

    /// The canary silent while the whole service breaches its SLO: NO_DATA, as the judge says
    /// (the promotion was refused as the service's breach, `SloNotMet`, beside NO_DATA).
    #[test]
    fn no_data_comes_before_the_service_s_breach() {
        let canary = Environment::Canary {
            traffic_percent: 5.0,
        };
        let mut silent = evidence(canary, 0, 10_000, false);
        let holding = |rule| Finding {
            rule,
            observed: 0.0,
            limit: 0.0,
            p_value: 1e-9,
            fired: false,
            holds: true,
            acting: "",
        };
        silent.findings = vec![holding(Rule::SloCompliance), holding(Rule::NoData)];
        assert!(silent.stable.requests >= silent.min_samples);
        assert_eq!(compliance(&silent), Compliance::NoData);
        silent.findings.pop();
        assert_eq!(
            compliance(&silent),
            Compliance::ServiceBreach {
                rule: Rule::SloCompliance
            }
        );
    }

    #[test]
    fn a_fired_rule_comes_first_then_samples_then_the_threshold() {
        let env = Environment::Staging;
        assert_eq!(
            compliance(&evidence(env, 0, 0, true)),
            Compliance::RuleFired
        );
        assert_eq!(
            compliance(&at_threshold(env, 500, 0, false, 0.995)),
            Compliance::BelowThreshold {
                compliance: 0.99,
                threshold: 0.995,
                service_wide: false
            }
        );
        assert_eq!(
            compliance(&at_threshold(env, 500, 0, false, 0.99)),
            Compliance::Compliant
        );
    }
}
