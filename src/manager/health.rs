//! The judge's reads of the canary: its health over the window, the SLO compliance check, the
//! window's latencies, and a judgement acted on.

use super::PromotionGateManager;
use crate::decision::Cohort;
use crate::error::Error;
use crate::judge::CanaryHealth;
use crate::snapshot::Snapshot;
use crate::verdict::{Compliance, Verdict};

impl PromotionGateManager {
    /// Judges the canary now, over the current window, and rolls it back if a rule fired and
    /// `auto_rollback_enabled` (never waiting for a write: while one holds the gate, that write
    /// makes the rollback as it ends). The returned health is the one judged (so after an automatic
    /// rollback it still shows the canary's numbers and `ROLLBACK`). The `error_burst` rule
    /// looks at the requests in its burst spans (the current one, and since the one before
    /// it); a call starts a new span only when the current one is at least
    /// `evaluation_interval` old, so judging more often never shrinks them.
    /// To look without acting, use [`health`](Self::health).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// let health = gate.monitor_canary_health();
    /// if health.health_score >= 0.9 {
    ///     println!("{}", health.recommendation);
    /// }
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn monitor_canary_health(&self) -> CanaryHealth {
        self.judge_and_act().into_health()
    }

    /// The canary's health over the current window, judged as
    /// [`monitor_canary_health`](Self::monitor_canary_health) judges it, without side effects:
    /// it never rolls back, and it leaves the `error_burst` spans (see
    /// [`monitor_canary_health`](Self::monitor_canary_health)), the window and the stage's
    /// start as they were, so it may be called as often as a dashboard likes. (A host clock
    /// that went back before the stage's start, against [`Clock`](crate::Clock)'s contract,
    /// restarts the stage there, its warm-up and no-data time with it, only when the gate
    /// judges; a read takes the stage as started at that time, and moves nothing.) A rule may show as fired here; the gate
    /// acts on it at its next judgement.
    ///
    /// Reading never delays that judgement either: the record path evaluates only when it
    /// finds the window free, never waiting for it, so an evaluation that falls due (or a
    /// screened canary error) while this read holds the window is left to the read, which makes
    /// it right after letting the window go, and acts on it as the record path would have
    /// (the one way a read may roll back: as the gate would have without it). Its own reading
    /// of the window judges nothing.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// let gate = PromotionGateManager::new(
    ///     PromotionConfig { environment: Environment::Canary { traffic_percent: 100.0 }, auto_rollback_enabled: true, ..Default::default() },
    ///     SloAdmissionController::new(SloConfig::default())?,
    /// )?;
    /// let health = gate.health();
    /// assert_eq!(health.canary_requests, 0);
    /// assert_eq!(gate.environment(), Environment::Canary { traffic_percent: 100.0 });
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn health(&self) -> CanaryHealth {
        self.with_window(|evaluation, snapshot| evaluation.health(snapshot))
    }

    /// Whether the version under judgement may be promoted: the decision a gated
    /// [`promote`](Self::promote) makes. No rule fired; no finding holds the promotion (no
    /// canary data, or the whole service breaching an absolute limit); at least
    /// [`min_samples`](crate::SloConfig::min_samples) samples in the window (a canary's
    /// latencies counted after its stage's warm-up); compliance (success within the latency
    /// target) at or above `slo_threshold`; and, with
    /// [`promotion_evidence`](crate::SloConfig::promotion_evidence) and stable traffic to
    /// compare with, the stage showing the canary not worse than the stable version. In
    /// Production the stable version is judged. With too little data the answer is
    /// `Ok(false)`. Like [`monitor_canary_health`](Self::monitor_canary_health), it rolls back a
    /// canary a rule fired on.
    ///
    /// # Errors
    /// None today: the judge reads only in-memory counters. The `Result` is kept for hosts
    /// written against the specification and for judges that read external sources.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert_eq!(gate.check_slo_compliance(), Ok(false)); // no data yet
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn check_slo_compliance(&self) -> Result<bool, Error> {
        let verdict = self.judge_and_act();
        Ok(verdict.compliance() == Compliance::Compliant)
    }

    /// The latency histogram of `cohort` in the current window, in microseconds (1 µs ..= 60 s,
    /// two significant figures), for export to a metrics system. Like [`health`](Self::health)
    /// it has no side effect: the window and the `error_burst` span stay as they were. `None`
    /// only if hdrhistogram refuses the bounds, which it does not.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// gate.record_request_outcome("u", true, std::time::Duration::from_micros(1500));
    /// let h = gate.latency_histogram(Cohort::Stable).unwrap();
    /// assert_eq!(h.len(), 1);
    /// assert!(h.equivalent(h.max(), 1500));
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn latency_histogram(&self, cohort: Cohort) -> Option<hdrhistogram::Histogram<u64>> {
        self.with_window(|evaluation, snapshot| evaluation.latency_histogram(snapshot, cohort))
    }

    /// The canary's [`health`](Self::health) and both cohorts'
    /// [`latency_histogram`](Self::latency_histogram)s from one read of the window, so that they
    /// agree (two calls may see different windows): what an exporter shows at a scrape. Like
    /// them it has no side effect.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// gate.record_request_outcome("u", true, std::time::Duration::from_micros(1500));
    /// let window = gate.window_export();
    /// let stable = window.latency_histogram(Cohort::Stable).unwrap();
    /// assert_eq!(stable.len(), window.evidence(Cohort::Stable).requests);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn window_export(&self) -> crate::telemetry::WindowExport {
        self.with_window(|evaluation, snapshot| evaluation.export(snapshot))
    }

    /// Judges the current stage now (waiting for an evaluation under way), then acts on the
    /// verdict ([`act_on`](Self::act_on)) as the snapshot it was judged under says.
    fn judge_and_act(&self) -> Verdict {
        let (verdict, auto_rollback_enabled) = self.with_window(|evaluation, snapshot| {
            let auto_rollback_enabled = snapshot.config.auto_rollback_enabled;
            (evaluation.judge(snapshot), auto_rollback_enabled)
        });
        self.act_on(&verdict, auto_rollback_enabled);
        verdict
    }

    /// Runs `read` over the window (waiting for an evaluation under way) and the current
    /// snapshot, then makes the evaluation the record path asked for meanwhile, if any
    /// ([`evaluate_wanted`](Self::evaluate_wanted)).
    fn with_window<T>(
        &self,
        read: impl FnOnce(crate::monitor::Evaluation<'_>, &Snapshot) -> T,
    ) -> T {
        let read = read(
            self.shared.monitor.evaluation(),
            &self.shared.current.load(),
        );
        self.evaluate_wanted();
        read
    }

    /// Logs `verdict` and applies it, taking the writer lock only when it calls for a rollback
    /// and `auto_rollback_enabled` (the flag of the snapshot it was judged under), and never
    /// waiting for it (see [`Shared::apply_verdict_or_owe`]). Off, nothing is owed either: a
    /// write that turns it on meanwhile is acted on from the next judgement, as on the record
    /// path ([`Shared::act_on_recording`](super::Shared::act_on_recording)).
    fn act_on(&self, verdict: &Verdict, auto_rollback_enabled: bool) {
        self.shared
            .verdict_lines
            .log(verdict, self.shared.monitor.monotonic());
        if verdict.calls_for_rollback() && auto_rollback_enabled {
            self.shared.apply_verdict_or_owe(verdict);
        }
    }
}
