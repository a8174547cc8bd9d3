//! The record path: an outcome counted for its cohort and stage, and the judge run from it
//! (the quick check after a canary error, the paced full evaluation).

use std::time::Duration;

use super::sync_thread::Offered;
use super::{PromotionGateManager, Shared};
use crate::decision::{RoutingDecision, StageId};
use crate::metrics::Recorded;
use crate::verdict::Verdict;

impl PromotionGateManager {
    /// Records the outcome of a routed request: whether it succeeded and how long it took.
    ///
    /// The outcome counts for the cohort and stage in `decision`, so an outcome that arrives
    /// after a promotion or rollback cannot pollute the next stage (it is dropped and counted
    /// as [`Recorded::Late`]). No shared cache line written and no wait for a lock; no
    /// allocation after the thread's first record but for a rule that fires, whose evidence
    /// is built and whose rollback is made here when no write holds the gate (its log lines
    /// then written under the gate's writer lock; see [the guarantees](crate::guarantees)).
    /// The judge runs from here by itself: a quick check of the
    /// counters after a canary error (each of a thread's first 32 canary errors in a stage, then
    /// every 16th, and every error of a run of 4 to 32 in a row; so a canary failing every
    /// request rolls back within about 10 failures, and a sudden outage within about 20: docs/judge.md
    /// has the measured figures), and a
    /// full evaluation at most every
    /// [`evaluation_interval`](crate::SloConfig::evaluation_interval), looked for every 1 to 64
    /// records of a thread (paced to its rate: about every quarter of the interval). Either may roll the canary back when `auto_rollback_enabled`;
    /// without it, a rule that fires is logged, and no lock taken for it.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// use std::time::Duration;
    /// let gate = PromotionGateManager::new(
    ///     PromotionConfig { environment: Environment::Canary { traffic_percent: 10.0 }, ..Default::default() },
    ///     SloAdmissionController::new(SloConfig::default())?,
    /// )?;
    /// let decision = gate.route_request("user-1");
    /// // ... forward the request ...
    /// assert_eq!(gate.record_outcome(&decision, true, Duration::from_millis(12)), Recorded::Counted);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    #[inline]
    pub fn record_outcome(
        &self,
        decision: &RoutingDecision<'_>,
        success: bool,
        latency: Duration,
    ) -> Recorded {
        if decision.forced.is_some() {
            return self.record_forced(decision.stage);
        }
        self.record_for(decision.stage, decision.is_canary, success, latency)
    }

    /// Records the outcome of a forced request (one whose decision has
    /// [`forced`](RoutingDecision::forced) set), routed in `stage`: it counts in neither
    /// cohort, so testers and allow-lists never distort the judge's comparison, only in
    /// [`forced_outcomes`](Self::forced_outcomes), and returns [`Recorded::Forced`]; a `stage`
    /// newer than the gate's (a decision of another gate, or from before a restart) is dropped
    /// as [`Recorded::Foreign`], as an unforced one is. For hosts that keep decisions as plain
    /// data (the C ABI); [`record_outcome`](Self::record_outcome) calls it for a forced
    /// decision. Lock-free; no allocation after the thread's first record, but for the
    /// judge: a record made as another thread let the judge's window go may make the
    /// evaluation that thread asked for, and act on it as the record path does (a rule that
    /// fired builds its evidence and may roll back on this thread).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// let stage = gate.route_request("u").stage;
    /// assert_eq!(gate.record_forced(stage), Recorded::Forced);
    /// assert_eq!(gate.forced_outcomes(), 1);
    /// assert_eq!(gate.health().canary_requests + gate.health().production_requests, 0);
    /// assert_eq!(gate.record_forced(StageId::new(stage.get() + 1)), Recorded::Foreign);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    #[cold]
    pub fn record_forced(&self, stage: StageId) -> Recorded {
        let recorded = self.shared.monitor.forced_outcome(stage);
        // A thread's first record made its recorder and the window's buffers, holding the
        // window: an evaluation asked for meanwhile is this thread's to make. One relaxed load
        // (that record's fence orders it after the window was let go).
        if self.shared.monitor.evaluation_asked() {
            self.shared.evaluate_wanted();
        }
        recorded
    }

    /// Outcomes of forced requests, over the gate's life (counted in neither cohort).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// let gate = PromotionGateManager::new(
    ///     PromotionConfig { overrides: Some(Overrides { stable_ids: vec!["vip-7".into()], ..Default::default() }), ..Default::default() },
    ///     SloAdmissionController::new(SloConfig::default())?,
    /// )?;
    /// let decision = gate.route_request("vip-7");
    /// assert_eq!(gate.record_outcome(&decision, false, std::time::Duration::from_millis(5)), Recorded::Forced);
    /// assert_eq!(gate.forced_outcomes(), 1);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn forced_outcomes(&self) -> u64 {
        self.shared.monitor.forced_outcomes()
    }

    /// Forcing values passed to
    /// [`route_request_forced`](Self::route_request_forced) and ignored, over the gate's life:
    /// neither `canary` nor `stable`, or passed to a gate whose config names no header or cookie.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// let decision = gate.route_request_forced(b"u", Some(b"canary")); // no header configured
    /// assert_eq!(decision.forced, None);
    /// assert_eq!(gate.ignored_override_values(), 1);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn ignored_override_values(&self) -> u64 {
        self.shared.monitor.ignored_override_values()
    }

    /// Records an outcome for the stage and cohort of a decision kept as plain data (as the C
    /// ABI hands decisions out): the same as [`record_outcome`](Self::record_outcome) with a
    /// decision whose `stage` and `is_canary` are these.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// let d = gate.route_request("user-1");
    /// let (stage, is_canary) = (d.stage.get(), d.is_canary); // e.g. kept by a C host
    /// let recorded = gate.record_for(StageId::new(stage), is_canary, true, std::time::Duration::from_millis(3));
    /// assert_eq!(recorded, Recorded::Counted);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    #[inline]
    pub fn record_for(
        &self,
        stage: StageId,
        is_canary: bool,
        success: bool,
        latency: Duration,
    ) -> Recorded {
        let recording = self
            .shared
            .monitor
            .record(stage, is_canary, success, latency);
        if recording.screen {
            self.screen_errors(stage);
        }
        if recording.look_at_the_clock {
            self.look_at_the_clock();
        }
        recording.recorded
    }

    /// Records a request whose client went away before the version answered, `waited` after
    /// the request was sent to it (a proxy's 499, a canceled request context).
    ///
    /// A client leaving is never the version's failure, but a wait longer than the SLO's
    /// `latency_target` is evidence all the same: the request missed its target, whatever its
    /// answer would have been. So it counts as a success with latency `waited`, a lower bound
    /// of the true one: not compliant, and at least that slow for the latency rules. A canary
    /// that hangs is then rolled back even when every client gives up before the proxy's own
    /// upstream timeout (whose error a host records with
    /// [`record_outcome`](Self::record_outcome), as a failure). A wait up to the target says nothing of
    /// the version: nothing is recorded, and `None` is returned. Otherwise what
    /// [`record_outcome`](Self::record_outcome) returns (a forced request is counted apart, a
    /// late one dropped).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// use std::time::Duration;
    /// let gate = PromotionGateManager::new(
    ///     PromotionConfig { environment: Environment::Canary { traffic_percent: 100.0 }, ..Default::default() },
    ///     SloAdmissionController::new(SloConfig { latency_target: Duration::from_millis(500), ..Default::default() })?,
    /// )?;
    /// let decision = gate.route_request("user-1");
    /// // The client gave up after 100 ms: nothing to say of the canary.
    /// assert_eq!(gate.record_abandoned(&decision, Duration::from_millis(100)), None);
    /// // After 2 s without an answer: a request that missed its target.
    /// assert_eq!(gate.record_abandoned(&decision, Duration::from_secs(2)), Some(Recorded::Counted));
    /// assert_eq!(gate.health().canary_requests, 1);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    #[cold]
    pub fn record_abandoned(
        &self,
        decision: &RoutingDecision<'_>,
        waited: Duration,
    ) -> Option<Recorded> {
        self.record_abandoned_for(
            decision.stage,
            decision.is_canary,
            decision.forced.is_some(),
            waited,
        )
    }

    /// [`record_abandoned`](Self::record_abandoned) for a decision kept as plain data (as
    /// [`record_for`](Self::record_for)), `forced` when an override sent the request.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// let d = gate.route_request("user-1");
    /// let waited = std::time::Duration::from_secs(30);
    /// assert_eq!(gate.record_abandoned_for(d.stage, d.is_canary, false, waited), Some(Recorded::Counted));
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    #[cold]
    pub fn record_abandoned_for(
        &self,
        stage: StageId,
        is_canary: bool,
        forced: bool,
        waited: Duration,
    ) -> Option<Recorded> {
        if waited <= self.shared.monitor.slo().config().latency_target {
            return None;
        }
        if forced {
            return Some(self.record_forced(stage));
        }
        Some(self.record_for(stage, is_canary, true, waited))
    }

    /// Records an outcome by request id, as the specification's API does: the id is routed
    /// again (one more hash) under the *current* snapshot. Prefer
    /// [`record_outcome`](Self::record_outcome) with the decision the request was routed by.
    ///
    /// The id is routed without a forcing value: this call cannot see that a header or cookie
    /// forced the request (only that an id list does), so the outcome of a request forced by
    /// value would count in the cohort of its bucket. A host that routes with
    /// [`route_request_forced`](Self::route_request_forced) records by id with
    /// [`record_request_outcome_forced`](Self::record_request_outcome_forced), passing the
    /// same value.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// gate.record_request_outcome("req-1", true, std::time::Duration::from_millis(5));
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn record_request_outcome(
        &self,
        request_id: &str,
        success: bool,
        latency: Duration,
    ) -> Recorded {
        let decision = self.decide(request_id.as_bytes(), None);
        self.record_outcome(&decision, success, latency)
    }

    /// [`record_request_outcome`](Self::record_request_outcome) for a request routed with
    /// [`route_request_forced`](Self::route_request_forced): the id (any bytes) is routed
    /// again under the current snapshot with the same forcing value (`None` when the request
    /// carried none), so an outcome the value forced counts in neither cohort
    /// ([`Recorded::Forced`]), as [`record_outcome`](Self::record_outcome) would count it with
    /// the decision. A value that forces nothing is not counted again as ignored
    /// ([`ignored_override_values`](Self::ignored_override_values) counts routes), and no
    /// route line is logged.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// use std::time::Duration;
    /// let gate = PromotionGateManager::new(
    ///     PromotionConfig {
    ///         environment: Environment::Canary { traffic_percent: 0.0 },
    ///         overrides: Some(Overrides { header: Some("X-Canary".into()), ..Default::default() }),
    ///         ..Default::default()
    ///     },
    ///     SloAdmissionController::new(SloConfig::default())?,
    /// )?;
    /// let served = gate.route_request_forced(b"tester", Some(b"canary")); // X-Canary: canary
    /// assert!(served.is_canary);
    /// let latency = Duration::from_millis(5);
    /// assert_eq!(gate.record_request_outcome_forced(b"tester", Some(b"canary"), true, latency), Recorded::Forced);
    /// assert_eq!(gate.health().canary_requests + gate.health().production_requests, 0);
    /// // Without the value, the id alone would have been counted for the stable version.
    /// assert_eq!(gate.record_request_outcome_forced(b"tester", None, true, latency), Recorded::Counted);
    /// assert_eq!(gate.health().production_requests, 1);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn record_request_outcome_forced(
        &self,
        request_id: &[u8],
        forcing_value: Option<&[u8]>,
        success: bool,
        latency: Duration,
    ) -> Recorded {
        let decision = match forcing_value {
            None => self.decide(request_id, None),
            Some(value) => self.decide_uncounted(request_id, value),
        };
        self.record_outcome(&decision, success, latency)
    }

    /// Outcomes dropped because their stage had ended, over the gate's life.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert_eq!(gate.late_outcomes(), 0);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn late_outcomes(&self) -> u64 {
        self.shared.monitor.late_outcomes()
    }

    /// Outcomes dropped as foreign over the gate's life: their decision names a stage this gate
    /// never published (a decision of another gate, or one built by hand).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// let routed = gate.route_request("user-1");
    /// let forged = StageId::new(routed.stage.get() + 1_000);
    /// let outcome = gate.record_for(forged, routed.is_canary, true, std::time::Duration::from_millis(5));
    /// assert_eq!(outcome, Recorded::Foreign);
    /// assert_eq!(gate.foreign_outcomes(), 1);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn foreign_outcomes(&self) -> u64 {
        self.shared.monitor.foreign_outcomes()
    }

    /// [`Shared::evaluate_wanted`], for the gate's own reads.
    pub(super) fn evaluate_wanted(&self) {
        self.shared.evaluate_wanted();
    }

    /// [`Shared::act_on_recording`], for a verdict judged under the current snapshot.
    #[cfg(test)]
    pub(super) fn act_on_recording(&self, verdict: &Verdict) {
        let auto_rollback_enabled = self.shared.current.load().config.auto_rollback_enabled;
        self.shared.act_on_recording(verdict, auto_rollback_enabled);
    }

    /// The record path's quick check after a canary error (see [`Monitor::screen`]). Out of
    /// line: the record path inlines only the test that calls it.
    #[cold]
    fn screen_errors(&self, stage: StageId) {
        let snapshot = self.shared.current.load();
        if let Some(verdict) = self.shared.monitor.screen(stage, &snapshot) {
            let auto_rollback_enabled = snapshot.config.auto_rollback_enabled;
            self.shared
                .act_on_recording(&verdict, auto_rollback_enabled);
        }
        // Let go first: the evaluations below may write.
        drop(snapshot);
        // The screen may have held the window (its full screen): an evaluation asked for
        // meanwhile is this thread's to make.
        self.shared.evaluate_wanted();
    }

    /// The record path's look at the clock (see [`Monitor::due_evaluation`]): never waits for a
    /// lock and allocates nothing unless a rule fires (then the judge's evidence is built and
    /// the canary rolled back, a write like any other).
    #[cold]
    fn look_at_the_clock(&self) {
        self.shared
            .evaluate_as_recording(self.shared.monitor.due_evaluation());
    }
}

/// How many evaluations asked for in turn a holder of the window makes as it lets go (see
/// [`Shared::evaluate_wanted`]): each is asked for by a record made while the one before held
/// the window, so a stream of canary errors cannot keep one thread evaluating for ever; an ask
/// left after the last is taken by the record path's next look at the clock.
const WANTED_IN_TURN: usize = 4;

impl Shared {
    /// Makes the evaluation the record path asked for while this thread held the window (see
    /// [`Monitor::wanted_evaluation`](crate::monitor::Monitor::wanted_evaluation)), and acts
    /// on it as the record path would have: every holder calls it after letting the window go
    /// (a read, an evaluation of the record path, a thread's first record or route that made
    /// the window's buffers, a write that judged), so no ask waits for a later record or read.
    #[cold]
    pub(super) fn evaluate_wanted(&self) {
        self.evaluate_as_recording(self.monitor.wanted_evaluation());
    }

    /// Screens and, if a rule fires, judges over `evaluation` (the record path's, or one it
    /// asked for), and acts on the verdict as the record path does; then makes the
    /// evaluations asked for while it held the window, in turn ([`WANTED_IN_TURN`] in all at
    /// most).
    fn evaluate_as_recording<'a>(&'a self, mut evaluation: Option<crate::monitor::Evaluation<'a>>) {
        for turn in 1..=WANTED_IN_TURN {
            let Some(held) = evaluation else {
                return;
            };
            // The window is let go before acting on the verdict.
            let snapshot = self.current.load();
            match held.screen_then_judge(&snapshot) {
                Some(verdict) => {
                    let auto_rollback_enabled = snapshot.config.auto_rollback_enabled;
                    self.act_on_recording(&verdict, auto_rollback_enabled);
                }
                None => self.verdict_lines.no_violation(),
            }
            if turn == WANTED_IN_TURN {
                return;
            }
            evaluation = self.monitor.wanted_evaluation();
        }
    }

    /// [`act_on`](PromotionGateManager::act_on) for the record path, which never waits for a
    /// lock nor for store I/O: when the writer lock is held (a host's write may be storing
    /// itself, up to the store's timeout), a gate with a store hands the rollback to its sync
    /// thread, which makes it as soon as the lock is free; a gate without one leaves it to the
    /// writer, which makes it as it lets the lock go.
    ///
    /// `auto_rollback_enabled` is the flag of the snapshot `verdict` was judged under. Off, the
    /// verdict is only logged: the writer lock is not taken, nor a rollback handed off or
    /// owed, since none would be made. A write that turns it on after that snapshot was read
    /// is not seen here, and the verdict is dropped as it would have been if judged just
    /// before that write: the next evaluation (the paced one, or a quick check after a canary
    /// error) judges again under the new config, and acts. One that turns it off is seen by
    /// [`apply_verdict`](Shared::apply_verdict), under the lock.
    pub(super) fn act_on_recording(&self, verdict: &Verdict, auto_rollback_enabled: bool) {
        self.verdict_lines.log(verdict, self.monitor.monotonic());
        if !verdict.calls_for_rollback() || !auto_rollback_enabled {
            return;
        }
        if let Some(mut writer) = self.try_lock_writer() {
            self.apply_verdict(&mut writer, verdict);
        } else {
            match self.handoff.offer(verdict) {
                // Made by the sync thread, or by whoever took it before the thread ended (a
                // tick, the gate's stop, a write, another offer): not made again.
                Offered::Handed | Offered::TakenBack(None) => {}
                Offered::NoThread => self.apply_verdict_or_owe(verdict),
                Offered::TakenBack(Some(taken)) => self.apply_verdict_or_owe(&taken),
            }
        }
    }
}
