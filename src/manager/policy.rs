//! Changing the gate's SLO policy in place: the judge's rules change, the gate's state does not.

use super::PromotionGateManager;
use crate::changes::{ChangeOrigin, Published};
use crate::error::Error;
use crate::slo::{SloAdmissionController, SloConfig};

impl PromotionGateManager {
    /// Replaces the SLO policy the gate judges with, keeping everything else: the stage, the
    /// environment and flags, the outcomes in the window, the rollback history. Returns the
    /// policy it replaced.
    ///
    /// The judge applies `slo` from its next evaluation (one under way finishes with the old
    /// policy). An outcome is counted as compliant or not when it is recorded, against the
    /// `latency_target` of that moment: the outcomes already in the window keep what they
    /// were counted as, the latency rules re-read the kept latencies with the new limits.
    /// The swap is published as a change of kind [`Config`](crate::ChangeKind::Config) (no
    /// environment or flag moved), so a host watching
    /// [`change_count`](Self::change_count) sees it.
    ///
    /// With a state store: the store keeps the release (environment, flags, stage, history)
    /// and not the SLO, which is each process's own. A swap changes this gate only: other
    /// processes sharing the store keep theirs, and a gate opened later judges with the SLO
    /// it is created with.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first invalid field of `slo` and its value (as
    /// [`SloConfig::validate`]), or a changed `evaluation_interval_ms` longer than a tenth of
    /// the gate's `rollback_window_seconds` ([`SloConfig::validate_for`]: the interval in force
    /// passes, against a window followed from the store too); the gate is unchanged then.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # use std::time::Duration;
    /// let gate = PromotionGateManager::new(
    ///     PromotionConfig { environment: Environment::Canary { traffic_percent: 10.0 }, ..Default::default() },
    ///     SloAdmissionController::new(SloConfig::default())?,
    /// )?;
    /// let stricter = SloConfig { latency_target: Duration::from_millis(100), ..Default::default() };
    /// let old = gate.swap_slo(stricter)?;
    /// assert_eq!(old.latency_target, Duration::from_millis(500));
    /// assert_eq!(gate.slo_controller().config().latency_target, Duration::from_millis(100));
    /// assert_eq!(gate.environment(), Environment::Canary { traffic_percent: 10.0 });
    ///
    /// let err = gate.swap_slo(SloConfig { max_error_rate: 2.0, ..Default::default() }).unwrap_err();
    /// assert!(err.to_string().contains("max_error_rate"));
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn swap_slo(&self, slo: SloConfig) -> Result<SloConfig, Error> {
        let controller = SloAdmissionController::new(slo)?;
        // Under the writer lock: swaps are serialized, and the change is numbered in order
        // with the gate's other writes.
        let mut writer = self.lock_writer();
        // Against the window of the config in force (under the writer lock, where a config
        // swap checks its window against the policy in force), and only an interval this swap
        // changes: the one in force passes, as it was accepted (the window may since have been
        // followed from the store, written by a process of a shorter interval), so re-sending
        // the policy in force with one change is not refused for it.
        let interval = controller.config().evaluation_interval;
        if interval != self.shared.monitor.slo().config().evaluation_interval {
            let window = self.shared.current.load().config.rollback_window_seconds;
            controller.config().check_window(window)?;
        }
        // Read before anything changes: a host's clock that panics leaves the old policy in
        // force, with no change to publish.
        let at = self.shared.monitor.wall();
        let old = self.shared.monitor.swap_slo(controller);
        // An evaluation on the record path may still hold the old policy: kept until it lets
        // go, so that the record path never frees it.
        writer.sweep_retired();
        writer.retired_slos.keep(std::sync::Arc::clone(&old));
        let current = self.shared.current.load();
        self.shared.changes.publish(Published {
            origin: ChangeOrigin::ThisGate,
            before: &current.config,
            after: &current.config,
            stage: current.route.stage,
            events: &[],
            at,
        });
        Ok(old.config().clone())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::changes::ChangeKind;
    use crate::config::{Environment, PromotionConfig, canary};
    use crate::decision::Cohort;
    use crate::error::Error;
    use crate::manager::PromotionGateManager;
    use crate::manager::tests::PanicsWhenArmed;
    use crate::slo::{SloAdmissionController, SloConfig};

    fn canary_gate() -> PromotionGateManager {
        let slo = SloConfig {
            warm_up: Duration::ZERO,
            ..Default::default()
        };
        let config = PromotionConfig {
            environment: canary(50.0),
            auto_rollback_enabled: true,
            ..Default::default()
        };
        let slo = SloAdmissionController::new(slo).expect("a valid SLO");
        PromotionGateManager::new(config, slo).expect("a valid gate")
    }

    /// Records `n` outcomes of each cohort, all successful, taking `latency`.
    fn record_both(gate: &PromotionGateManager, n: usize, latency: Duration) {
        let (mut canary, mut stable) = (0, 0);
        let mut i = 0;
        while canary < n || stable < n {
            let d = gate.route_request(&format!("user-{i}"));
            i += 1;
            let count = if d.is_canary {
                &mut canary
            } else {
                &mut stable
            };
            if *count < n {
                *count += 1;
                gate.record_outcome(&d, true, latency);
            }
        }
    }

    #[test]
    fn a_swapped_slo_keeps_the_stage_the_window_and_the_history() {
        let gate = canary_gate();
        gate.rollback("drill").expect("a rollback");
        gate.promote(canary(50.0)).expect("a new rollout");
        let (stage, environment) = (gate.stage(), gate.environment());
        record_both(&gate, 150, Duration::from_millis(20));
        let before = gate.health();
        assert_eq!(before.canary_requests, 150);

        let old = gate
            .swap_slo(SloConfig {
                min_samples: 200,
                warm_up: Duration::ZERO,
                ..Default::default()
            })
            .expect("a valid SLO");
        assert_eq!(old.min_samples, 100);
        assert_eq!(gate.slo_controller().config().min_samples, 200);
        assert_eq!((gate.stage(), gate.environment()), (stage, environment));
        assert_eq!(gate.rollback_history().len(), 1);
        let after = gate.health();
        assert_eq!(
            (after.canary_requests, after.production_requests),
            (before.canary_requests, before.production_requests)
        );
        let histogram = gate.latency_histogram(Cohort::Canary).expect("a histogram");
        assert_eq!(histogram.len(), 150);
    }

    #[test]
    fn the_judge_uses_the_new_policy_from_the_next_evaluation() {
        let gate = canary_gate();
        record_both(&gate, 150, Duration::from_millis(20));
        assert_eq!(gate.health().evidence.min_samples, 100);
        gate.swap_slo(SloConfig {
            min_samples: 1000,
            warm_up: Duration::ZERO,
            ..Default::default()
        })
        .expect("a valid SLO");
        // The same window, judged with the new policy: too few samples now.
        let evidence = gate.monitor_canary_health().evidence;
        assert_eq!(
            (evidence.min_samples, evidence.canary.requests),
            (1000, 150)
        );
    }

    #[test]
    fn outcomes_are_counted_against_the_latency_target_of_their_moment() {
        let gate = canary_gate();
        record_both(&gate, 150, Duration::from_millis(20));
        gate.swap_slo(SloConfig {
            latency_target: Duration::from_millis(10),
            warm_up: Duration::ZERO,
            ..Default::default()
        })
        .expect("a valid SLO");
        record_both(&gate, 150, Duration::from_millis(20));
        let health = gate.health();
        assert_eq!(health.canary_requests, 300);
        // The first 150 were within 500 ms, the next 150 beyond 10 ms.
        assert_eq!(health.evidence.canary.compliant, 150);
    }

    #[test]
    fn an_invalid_slo_names_its_field_and_value_and_changes_nothing() {
        let gate = canary_gate();
        let seen = gate.change_count();
        let err = gate
            .swap_slo(SloConfig {
                max_error_rate: 1.5,
                ..Default::default()
            })
            .expect_err("an invalid SLO");
        assert!(matches!(&err, Error::Config(e) if e.field() == "max_error_rate"));
        assert!(err.to_string().contains("1.5"), "{err}");
        assert_eq!(gate.slo_controller().config().max_error_rate, 0.05);
        assert_eq!(gate.change_count(), seen);
    }

    #[test]
    fn an_interval_longer_than_a_slot_of_the_window_is_refused_wherever_either_is_set() {
        // A 1 h interval with a 300 s window started the window at an hour-old reading.
        let hourly = SloConfig {
            evaluation_interval: Duration::from_secs(3600),
            ..Default::default()
        };
        let controller = || SloAdmissionController::new(hourly.clone()).expect("a valid SLO");
        let err = PromotionGateManager::new(PromotionConfig::default(), controller())
            .expect_err("a 1 h interval for a 300 s window");
        assert!(
            matches!(&err, Error::Config(e) if (e.field(), e.value()) == ("evaluation_interval_ms", "3600000")),
            "{err}"
        );
        let long = PromotionConfig {
            rollback_window_seconds: 36_000,
            ..Default::default()
        };
        let gate = PromotionGateManager::new(long.clone(), controller()).expect("a 10 h window");
        // A swap to a window too short for the policy names the window, and changes nothing.
        let seen = gate.change_count();
        let short = PromotionConfig {
            rollback_window_seconds: 300,
            ..long.clone()
        };
        let err = gate.swap_config(short).expect_err("a 300 s window");
        assert!(
            matches!(&err, Error::Config(e) if (e.field(), e.value()) == ("rollback_window_seconds", "300")),
            "{err}"
        );
        assert!(
            err.to_string().contains("evaluation_interval_ms = 3600000"),
            "{err}"
        );
        assert_eq!((gate.config(), gate.change_count()), (long, seen));
        // A policy too slow for the gate's window is refused, and the old one stays.
        let gate = canary_gate();
        let seen = gate.change_count();
        let err = gate.swap_slo(hourly).expect_err("a 1 h interval");
        assert!(
            matches!(&err, Error::Config(e) if e.field() == "evaluation_interval_ms"),
            "{err}"
        );
        assert_eq!(
            gate.slo_controller().config().evaluation_interval,
            Duration::from_secs(1)
        );
        assert_eq!(gate.change_count(), seen);
        // One slot, 30 s of the default 300 s window, is accepted.
        gate.swap_slo(SloConfig {
            evaluation_interval: Duration::from_secs(30),
            ..Default::default()
        })
        .expect("one slot");
    }

    #[test]
    fn a_host_clock_that_panics_leaves_the_old_slo_in_force() {
        let clock = std::sync::Arc::new(PanicsWhenArmed::default());
        let slo = SloAdmissionController::new(SloConfig::default()).expect("a valid SLO");
        let gate = PromotionGateManager::with_clock(PromotionConfig::default(), slo, clock.clone())
            .expect("a valid gate");
        let seen = gate.change_count();
        clock.arm();
        let swapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            gate.swap_slo(SloConfig {
                min_samples: 1000,
                ..Default::default()
            })
        }));
        assert!(swapped.is_err() && !clock.armed(), "the clock panicked");
        // Nothing changed: not the policy, not the count (a reload that read it before an SLO
        // swap must be refused, so a swap is never made unpublished).
        assert_eq!(gate.slo_controller().config().min_samples, 100);
        assert_eq!(gate.change_count(), seen);
    }

    #[test]
    fn a_swap_is_published_as_a_config_change() {
        let gate = canary_gate();
        gate.swap_slo(SloConfig::default()).expect("a valid SLO");
        let changes = gate.changes_since(0);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].kind(), ChangeKind::Config);
        assert_eq!(
            changes[0].to,
            Environment::Canary {
                traffic_percent: 50.0
            }
        );
        assert_eq!(changes[0].stage, gate.stage());
    }
}
