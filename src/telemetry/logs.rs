//! The specification's log lines about the judge's verdicts, through `tracing`.

use crate::judge::Recommendation;
use crate::verdict::Verdict;

/// Logs what a verdict the gate acts on says: an error for an SLO violation (a rule fired), a
/// warning when the canary has enough samples and its health score is below the healthy
/// threshold (the recommendation is MONITOR), nothing otherwise.
pub(crate) fn log_verdict(verdict: &Verdict) {
    let evidence = verdict.evidence();
    if verdict.calls_for_rollback() {
        tracing::error!(
            stage = evidence.stage.get(),
            "SLO violation: {}",
            verdict.violation()
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

#[cfg(test)]
mod tests {
    use crate::{Environment, PromotionConfig, PromotionGateManager};
    use crate::{SloAdmissionController, SloConfig};
    use std::fmt::Write;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tracing::field::{Field, Visit};

    /// One event's fields as text: ` name=value` each.
    struct Line(String);

    impl Visit for Line {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    /// Keeps every event as a [`Line`].
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<String>>>);

    impl tracing::Subscriber for Lines {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let mut line = Line(String::new());
            event.record(&mut line);
            if let Ok(mut lines) = self.0.lock() {
                lines.push(line.0);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn an_automatic_rollback_logs_its_evidence_twice_not_three_times() {
        let gate = PromotionGateManager::new(
            PromotionConfig {
                environment: Environment::Canary {
                    traffic_percent: 100.0,
                },
                auto_rollback_enabled: true,
                ..Default::default()
            },
            SloAdmissionController::new(SloConfig::default()).unwrap(),
        )
        .unwrap();
        let lines = Lines::default();
        tracing::subscriber::with_default(lines.clone(), || {
            for _ in 0..200 {
                let _ = gate.record_for(gate.stage(), true, false, Duration::from_millis(2));
            }
            let _ = gate.monitor_canary_health();
        });
        let history = gate.rollback_history();
        assert_eq!(history.len(), 1);
        let reason = &history[0].reason;
        let violation = reason.strip_prefix("automatic rollback: ").unwrap();
        let lines = lines.0.lock().unwrap();
        let with_evidence: Vec<&String> = lines.iter().filter(|l| l.contains(violation)).collect();
        // The judge's "SLO violation" line, then the rollback's own "promotion.rollback" line.
        assert_eq!(with_evidence.len(), 2, "{lines:#?}");
        assert!(with_evidence[0].contains("SLO violation: "), "{lines:#?}");
        assert!(
            with_evidence[1].contains("promotion.rollback"),
            "{lines:#?}"
        );
    }
}
