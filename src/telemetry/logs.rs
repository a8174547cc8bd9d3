//! The specification's log lines about the judge's verdicts, through `tracing`.

use crate::judge::Recommendation;
use crate::verdict::Verdict;

/// Logs what a verdict the gate acts on says: an error for an SLO violation (a rule fired), a
/// warning when the canary has enough samples and its health score is below the healthy
/// threshold (the recommendation is MONITOR), nothing otherwise.
pub(crate) fn log_verdict(verdict: &Verdict) {
    let evidence = verdict.evidence();
    if verdict.calls_for_rollback() {
        let rules: Vec<&str> = evidence.fired().map(|f| f.rule.name()).collect();
        tracing::error!(
            stage = evidence.stage.get(),
            rules = ?rules,
            "SLO violation: {} | {evidence}",
            rules.join(", ")
        );
    } else if verdict.recommendation() == Recommendation::Monitor && evidence.sufficient_data() {
        tracing::warn!(
            stage = evidence.stage.get(),
            health_score = evidence.health_score,
            "Canary health score {:.4} below threshold",
            evidence.health_score
        );
    }
}
