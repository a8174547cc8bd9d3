//! The gate's writes: promotions (behind the promotion gate), flag edits, rollbacks and config
//! swaps. Each decides its config change in [`crate::release`], then records and publishes it
//! under the writer lock.

use super::stored::{Durability, NextStage, StoreLink};
use super::{PromotionGateManager, Shared, WriterState};
use crate::config::{Environment, PromotionConfig, is_unseen, validate_flag_name};
use crate::decision::StageId;
use crate::error::{Error, FlagError, PromotionError, RollbackError, SwapError, quoted};
use crate::history::{RollbackEvent, RollbackTrigger, Undone};
use crate::judge::{Digits, Evidence, apart};
use crate::limits::MAX_REASON_BYTES;
use crate::release::{self, PromotionKind, plan_promotion};
use crate::snapshot::Snapshot;
use crate::store::{StoreError, StoreProblem};
use crate::verdict::Compliance;

/// Logs the rollback events the history dropped to stay within its bounds.
pub(super) fn log_dropped(dropped: u64) {
    if dropped > 0 {
        tracing::debug!(
            dropped,
            "promotion.rollback_history dropped its oldest events to stay within its bounds"
        );
    }
}

/// Tells that flag `name` of `gate` was turned on or off, once the write is made: the
/// specification's info line and the `promotion.flag` span, the same for
/// [`enable_feature`](PromotionGateManager::enable_feature),
/// [`disable_feature`](PromotionGateManager::disable_feature) and each flag a
/// [`swap_config`](PromotionGateManager::swap_config) turns on or off.
fn tell_flag_change(gate: &str, name: &str, on: bool) {
    if on {
        tracing::info!(feature = name, "Feature flag enabled: {name}");
    } else {
        tracing::info!(feature = name, "Feature flag disabled: {name}");
    }
    #[cfg(feature = "otel")]
    crate::telemetry::otel::flag_span(gate, name, on);
    #[cfg(not(feature = "otel"))]
    let _ = gate;
}

/// How a refused promotion says that the stable version breaches the SLO as much as the
/// canary: nothing is rolled back, the whole service must be fixed first.
const SERVICE_WIDE: &str =
    "the whole service breaches its SLO (the canary is not significantly worse than stable): ";

impl PromotionGateManager {
    /// Moves the release along the state machine (see [`plan_promotion`]).
    ///
    /// Promotion to Production graduates the release's flags: they become stable flags, on for
    /// every request. A gated move (ramping up, to Staging, to Production) is refused unless
    /// the judge finds the new version compliant: enough samples in the window, compliance at
    /// or above `slo_threshold`, and no rule fired (a fired rule also rolls back, when
    /// `auto_rollback_enabled`). Ungated moves (a new rollout, ramping down) need no approval,
    /// but a ramp down ends a stage whose evidence would be thrown away: the judge looks at it
    /// first, and a fired rule (with `auto_rollback_enabled`) rolls the canary back instead, as
    /// for a flag turned on ([`enable_feature`](Self::enable_feature)).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid target; [`Error::Promotion`] for a path the state
    /// machine does not have ([`PromotionError::InvalidPath`]), a target the gate is already
    /// at ([`PromotionError::AlreadyThere`], also a canary share that rounds to the current
    /// buckets: the same split, whose new stage would only restart the judge), too little data
    /// ([`PromotionError::InsufficientData`]) or a non-compliant canary
    /// ([`PromotionError::SloNotMet`], "SLO compliance below threshold", with the evidence;
    /// also when the record path's judge called for a rollback while the promotion was being
    /// made, its store write and its publication included, or when the judge, asked before a
    /// ramp down, finds a rule fired in the stage it ends: the rollback is made instead, or
    /// over the promotion once published, and the error names its rule).
    /// With a state store, [`Error::Store`] when the store cannot be written (a rollback made
    /// while it was unavailable is written first, so this includes one it still cannot take),
    /// or when another process moved the gate first.
    /// A refused promotion changes nothing (unless the judge rolled the canary back).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// gate.promote(Environment::Canary { traffic_percent: 1.0 })?; // a new rollout: not gated
    /// gate.promote(Environment::Canary { traffic_percent: 0.5 })?; // ramping down: not gated
    /// assert_eq!(gate.environment(), Environment::Canary { traffic_percent: 0.5 });
    /// // Ramping up is gated: no canary data yet.
    /// let err = gate.promote(Environment::Canary { traffic_percent: 5.0 }).unwrap_err();
    /// assert!(err.to_string().contains("not enough data"));
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn promote(&self, target: Environment) -> Result<(), Error> {
        self.promote_if(None, target)
    }

    /// [`promote`](Self::promote), made only if the gate is still in release stage `stage`:
    /// the stage the caller read before it decided to promote (with
    /// [`stage`](Self::stage), [`environment_and_stage`](Self::environment_and_stage), or a
    /// health read's `evidence.stage`, the stage judged). A ramp loop needs it: if the judge rolled the
    /// canary back after the caller's look, or another process moved the gate, a plain
    /// `promote(Canary { .. })` from Production would start a new rollout of the very build
    /// that was rolled back (a new rollout is not gated). Here it is refused instead.
    ///
    /// # Errors
    /// [`PromotionError::StageChanged`] when the gate is no longer in `stage` (nothing
    /// changed); otherwise as [`promote`](Self::promote).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig { environment: Environment::Canary { traffic_percent: 5.0 }, ..Default::default() }, SloAdmissionController::new(SloConfig::default())?)?;
    /// let stage = gate.stage();
    /// gate.rollback("a bad build")?; // meanwhile: another thread, the judge, or another process
    /// let err = gate.promote_from(stage, Environment::Canary { traffic_percent: 25.0 }).unwrap_err();
    /// assert!(matches!(err, Error::Promotion(PromotionError::StageChanged { .. })));
    /// assert_eq!(gate.environment(), Environment::Production); // no new rollout
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn promote_from(&self, stage: StageId, target: Environment) -> Result<(), Error> {
        self.promote_if(Some(stage), target)
    }

    /// [`promote`](Self::promote) or [`promote_from`](Self::promote_from).
    fn promote_if(&self, expected: Option<StageId>, target: Environment) -> Result<(), Error> {
        target.validate()?;
        let target = target.unsigned();
        let mut first_step = None;
        self.write(|writer| {
            let current = self.shared.current.load_full();
            if let Some(expected) = expected.filter(|&stage| stage != current.route.stage) {
                return Err(PromotionError::StageChanged {
                    expected: expected.get(),
                    now: format!("{} (stage {})", current.config.environment, current.route.stage.get()),
                }
                .into());
            }
            let step = plan_promotion(current.config.environment, target)?;
            // Decided again after another process's write: the same move, gated as it was, or
            // none (a ramp down that lost to a rollback must not become a new rollout, nor a
            // gated ramp up one from another process's 0 %, which is not gated).
            if *first_step.get_or_insert((step.kind, step.gated)) != (step.kind, step.gated) {
                let not_made = format!("the promotion to {target} was not made");
                return Err(moved_first(writer, &current, &not_made));
            }
            // Every promotion ends the stage: a gated one is judged by the gate, an ungated one
            // (a ramp down, an operator's move during an incident) first by the judge.
            let evidence = if step.gated {
                Some(self.gate(writer, &current)?)
            } else {
                self.judged_before_its_stage_ends(writer, &current)?;
                None
            };
            let config = release::promoted(&current.config, target, step.kind);
            self.shared
                .commit(writer, config, NextStage::UnlessRolledBack, None, Durability::Required)?;
            // Told once made: a write the store refused changed nothing.
            if step.kind == PromotionKind::CanaryToProduction {
                tracing::warn!(from = %current.config.environment, "promotion.promote skips staging: canary straight to production");
            }
            tracing::info!(from = %current.config.environment, to = %target, kind = step.kind.name(), "promotion.promote");
            #[cfg(feature = "otel")]
            crate::telemetry::otel::promotion_span(
                &current.config.gate,
                current.config.environment,
                target,
                step.kind,
                evidence.as_ref(),
            );
            #[cfg(not(feature = "otel"))]
            drop(evidence);
            Ok(())
        })
    }

    /// Runs a write under the writer lock. With a store, a write that another process's write
    /// overtook (a lost compare-and-swap) brings the gate up to the stored state and is
    /// decided again, a few times at most.
    fn write<T>(
        &self,
        decide: impl FnMut(&mut WriterState) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.write_asking(decide, |_| false)
    }

    /// [`write`](Self::write) for a write that can end without writing: `unwritten` tells such
    /// an end (a flag enabled already, a flag or a release the gate shows off or rolled back
    /// already). That end was decided on this process's state alone, which another process's
    /// write may have moved on since (until the next sync tick), and no compare-and-swap
    /// checked it: with a store the gate first catches up with the stored state and decides
    /// once more, so that the write is made on top of the stored state, or ends so there too.
    /// Host calls only: the route and record paths never come here.
    fn write_asking<T>(
        &self,
        decide: impl FnMut(&mut WriterState) -> Result<T, Error>,
        unwritten: impl Fn(&Result<T, Error>) -> bool,
    ) -> Result<T, Error> {
        match self.write_locked(&mut self.lock_writer(), decide, unwritten) {
            Ok(made) => Ok(made),
            Err(Refused::Decided(error) | Refused::CatchUp(error)) => Err(error),
        }
    }

    /// [`write_asking`](Self::write_asking) with the writer lock held by the caller, telling a
    /// refusal of the write itself from a failure to catch up with the stored state (after a
    /// lost race, or before an end without a write).
    fn write_locked<T>(
        &self,
        writer: &mut WriterState,
        mut decide: impl FnMut(&mut WriterState) -> Result<T, Error>,
        unwritten: impl Fn(&Result<T, Error>) -> bool,
    ) -> Result<T, Refused> {
        let mut attempts = 0;
        // Whether the gate has caught up with the store during this write.
        let mut caught_up = false;
        // The generation before this write's own publication: taken again after each catch-up,
        // whose followed write (another process's, remembered as ending a stage) is not this
        // write, and is not undone by this write's last look.
        let mut published_before = self.shared.current.load().route.generation;
        loop {
            match decide(writer) {
                Err(Error::Store(e)) if e.problem() == StoreProblem::Conflict && attempts < 3 => {
                    attempts += 1;
                    caught_up = true;
                    self.shared
                        .catch_up_locked(writer)
                        .map_err(Refused::CatchUp)?;
                    published_before = self.shared.current.load().route.generation;
                }
                result if !caught_up && writer.store.is_some() && unwritten(&result) => {
                    caught_up = true;
                    self.shared
                        .catch_up_locked(writer)
                        .map_err(Refused::CatchUp)?;
                    published_before = self.shared.current.load().route.generation;
                }
                result => {
                    // The last look, under the lock, after the write published (its logs too).
                    let result = result.and_then(|made| {
                        self.shared
                            .look_after_publishing(writer, published_before)
                            .map(|()| made)
                    });
                    return result.map_err(Refused::Decided);
                }
            }
        }
    }

    /// Judges the stage of `current` before a write ends it (an ungated promotion: a ramp down;
    /// a flag turned on; a swap of the split, the environment or the salt): a new stage would
    /// throw its evidence away, and the judge would wait for `min_samples` again. A fired rule,
    /// with `auto_rollback_enabled`, rolls the canary back here, under the same writer lock,
    /// and the write is refused ([`PromotionError::SloNotMet`] naming the rule), as a
    /// promotion is. Any other finding lets the write go on.
    fn judged_before_its_stage_ends(
        &self,
        writer: &mut WriterState,
        current: &Snapshot,
    ) -> Result<(), Error> {
        if current.config.environment == Environment::Production
            || !current.config.auto_rollback_enabled
        {
            return Ok(());
        }
        let verdict = self.shared.monitor.evaluation().judge(current);
        if verdict.compliance() != Compliance::RuleFired {
            return Ok(());
        }
        self.shared.apply_verdict(writer, &verdict);
        let rolled_back = self.shared.current.load().route.stage != current.route.stage;
        let what = if rolled_back {
            "the canary was rolled back"
        } else {
            "its rollback could not be made (logged as an error)"
        };
        Err(PromotionError::SloNotMet {
            evidence: format!(
                "the judge called for a rollback before this write ended the stage ({}): {what}, and the write was not made; {}",
                verdict.rollback_reason(),
                verdict.evidence()
            ),
        }
        .into())
    }

    /// The promotion gate: the judge must find the new version of `current` compliant, and
    /// the evidence it passed on is returned. Called with the writer lock held; a fired rule
    /// rolls back here (under the same lock) before refusing.
    fn gate(&self, writer: &mut WriterState, current: &Snapshot) -> Result<Evidence, Error> {
        let verdict = self.shared.monitor.evaluation().judge(current);
        let evidence = verdict.evidence();
        match verdict.compliance() {
            Compliance::Compliant => Ok(evidence.clone()),
            Compliance::RuleFired => {
                self.shared.apply_verdict(writer, &verdict);
                let rolled_back = self.shared.current.load().route.stage != current.route.stage;
                let what = if rolled_back {
                    "a rule fired and the canary was rolled back"
                } else if current.config.auto_rollback_enabled {
                    "a rule fired, but its rollback could not be made (logged as an error)"
                } else {
                    "a rule fired (auto_rollback_enabled is off: nothing was rolled back)"
                };
                Err(PromotionError::SloNotMet {
                    evidence: format!("{what}; {evidence}"),
                }
                .into())
            }
            Compliance::TooFewSamples {
                subject,
                have,
                need,
            } => Err(PromotionError::InsufficientData {
                evidence: format!(
                    "{have} of {need} {} samples needed in the window{}; {evidence}",
                    subject.name(),
                    match subject {
                        crate::Cohort::Canary => " (latencies counted after the stage's warm-up)",
                        crate::Cohort::Stable => "",
                    }
                ),
            }
            .into()),
            // The evidence's text shows the compliance and the threshold, after the findings
            // (and before, at a canary stage, "not worse than stable: ...").
            Compliance::BelowThreshold { service_wide, .. } => Err(PromotionError::SloNotMet {
                evidence: format!(
                    "{}compliance below slo_threshold; {evidence}",
                    if service_wide { SERVICE_WIDE } else { "" },
                ),
            }
            .into()),
            Compliance::ServiceBreach { rule } => Err(PromotionError::SloNotMet {
                evidence: format!("{SERVICE_WIDE}{} holds; {evidence}", rule.name()),
            }
            .into()),
            Compliance::LowScore { score, threshold } => Err(PromotionError::SloNotMet {
                evidence: format!("{}; {evidence}", low_score(score, threshold)),
            }
            .into()),
            Compliance::NoData => Err(PromotionError::InsufficientData {
                evidence: format!("no canary outcome recorded (no_data); {evidence}"),
            }
            .into()),
            Compliance::NotShown { errors, latency } => Err(PromotionError::InsufficientData {
                evidence: format!(
                    "the stage does not yet show the canary not worse than stable (errors {}, latency {}); {evidence}",
                    if errors { "shown" } else { "not shown" },
                    if latency { "shown" } else { "not shown" },
                ),
            }
            .into()),
        }
    }

    /// Turns a release flag on (idempotent).
    ///
    /// Release flags are seen by requests to the new version. In Production only requests an
    /// override forces to the canary go there (docs/overrides.md), so a flag enabled there
    /// reaches those alone until the next rollout (`is_feature_enabled` says true).
    ///
    /// In Canary and Staging a flag turned on starts a new release stage, as a new salt does:
    /// the judge's evidence so far was gathered without it, so a promotion (which would
    /// graduate it to every user) waits for evidence gathered with it on, and
    /// [`promote_from`](Self::promote_from) with the stage read before is refused.
    /// ([`disable_feature`](Self::disable_feature) keeps the stage: see there.)
    ///
    /// With a state store, a flag this gate shows on already is looked up in the store first
    /// (another process may have turned it off since this one last synced): it is turned on
    /// there if it is off, and nothing is written if it is on.
    ///
    /// # Errors
    /// [`Error::Flag`] for an invalid name, or when the gate has used up its flag-set numbers
    /// or names; [`Error::Config`] (field `feature_flags`, or `feature_flags + graduated_flags`
    /// when graduated flags count too) past [`MAX_FLAGS`](crate::limits::MAX_FLAGS); with a
    /// state store, [`Error::Store`] when it cannot be written (or, for a flag this gate shows
    /// on, read); [`PromotionError::SloNotMet`] when the flag would start a stage and the
    /// judge, asked first, finds a rule fired in the current one (with
    /// `auto_rollback_enabled`), or the record path's judge called for a rollback of it while
    /// this write was being made (its publication included): the rollback is made instead (or
    /// over the write once published, undoing it). Nothing else changes on error.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// gate.enable_feature("experimental_cache")?;
    /// assert!(gate.is_feature_enabled("experimental_cache"));
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn enable_feature(&self, name: impl AsRef<str>) -> Result<(), Error> {
        let name = name.as_ref();
        validate_flag_name(name)?;
        // Whether the flag was turned on (false: it is on already).
        let written = |writer: &mut WriterState| {
            let current = self.shared.current.load_full();
            let Some(config) = release::with_flag_enabled(&current.config, name) else {
                return Ok(false);
            };
            config.check_flag_count()?;
            let next = if release::turns_a_flag_on(&current.config, &config) {
                self.judged_before_its_stage_ends(writer, &current)?;
                NextStage::UnlessRolledBack
            } else {
                NextStage::Same
            };
            self.shared
                .commit(writer, config, next, None, Durability::Required)?;
            tell_flag_change(&current.config.gate, name, true);
            Ok(true)
        };
        self.write_asking(written, |made| matches!(made, Ok(false)))
            .map(drop)
    }

    /// Turns a flag off, release or graduated, and records the disable in the rollback
    /// history (trigger [`RollbackTrigger::FlagDisabled`]).
    ///
    /// The release stage goes on, unlike [`enable_feature`](Self::enable_feature): turning a
    /// flag off is the kill switch of an incident, and a new stage would throw away the
    /// judge's evidence and restart its warm-up just when it may be about to roll a failing
    /// canary back (the flag may not be the cause). A flag turned off is not graduated by a
    /// promotion, so no flag reaches every user unjudged.
    ///
    /// With a state store, a flag this gate shows off is looked up in the store first
    /// (another process may have turned it on since this one last synced), and turned off
    /// there if it is on.
    ///
    /// # Errors
    /// [`Error::Flag`] for an invalid name or a flag that is not on (with a state store: in
    /// the stored state either); with a state store, [`Error::Store`] when it cannot be
    /// written (or, for a flag this gate shows off, read). Nothing changes on error.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// gate.enable_feature("experimental_cache")?;
    /// gate.disable_feature("experimental_cache")?;
    /// assert!(!gate.is_feature_enabled("experimental_cache"));
    /// assert_eq!(gate.rollback_history()[0].feature, "experimental_cache");
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn disable_feature(&self, name: impl AsRef<str>) -> Result<(), Error> {
        let name = name.as_ref();
        validate_flag_name(name)?;
        let written = |writer: &mut WriterState| {
            let current = self.shared.current.load_full();
            let config = release::with_flag_disabled(&current.config, name)?;
            let event = RollbackEvent::made(
                Undone::Flag(name.to_string()),
                current.config.environment,
                self.shared.monitor.wall(),
            );
            let reason = event.reason.clone();
            self.shared.commit(
                writer,
                config,
                NextStage::Same,
                Some(event),
                Durability::Required,
            )?;
            tell_flag_change(&current.config.gate, name, false);
            // A rollback by the specification's triggers, counted as one: its line and span too.
            crate::telemetry::log_rollback(
                &reason,
                current.config.environment,
                crate::RollbackTrigger::FlagDisabled,
            );
            #[cfg(feature = "otel")]
            {
                crate::telemetry::otel::rollback_span(
                    &current.config.gate,
                    &reason,
                    current.config.environment,
                    crate::RollbackTrigger::FlagDisabled,
                    None,
                );
            }
            Ok(())
        };
        let off =
            |made: &Result<(), Error>| matches!(made, Err(Error::Flag(FlagError::NotEnabled(_))));
        self.write_asking(written, off)
    }

    /// Whether a flag is on for the gate (as a release flag or a graduated one).
    ///
    /// Which flags one request sees is in its decision's
    /// [`enabled_features`](crate::RoutingDecision::enabled_features).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert!(!gate.is_feature_enabled("nope"));
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn is_feature_enabled(&self, name: &str) -> bool {
        release::flag_is_on(&self.shared.current.load().config, name)
    }

    /// Rolls the release back: records the event, turns the release's flags off, returns to
    /// Production and starts a new stage (so the canary's metrics start from zero). Graduated
    /// flags belong to the stable version and stay on, and so does a release flag a
    /// `swap_config` moved to `graduated_flags` in Staging (it changed no judged request's
    /// flags, and kept the stage), in every process of a store alike; in Canary such a swap
    /// starts a stage of its own, and a rollback of the stage it ended takes the flag back
    /// (see docs/store.md).
    ///
    /// With a state store, a gate that shows Production reads the store first (another
    /// process may have started a rollout since this one last synced): a canary stored there
    /// is rolled back.
    ///
    /// # Errors
    /// [`Error::Rollback`] when the gate is already in Production (with a state store: in the
    /// stored state too, or, when the store cannot be read, in this process's), or the reason
    /// is blank (no visible character: only whitespace, control, format and invisible
    /// characters, which names refuse) or longer than
    /// [`MAX_REASON_BYTES`](crate::MAX_REASON_BYTES), the message naming `reason` and showing
    /// it. Nothing changes
    /// on error. A state store that cannot be written, or whose state (another process's
    /// write) this build cannot read, is not an error: the rollback is made at once and
    /// written by this process when the store answers again and can be read (a process that
    /// ends first, killed or without dropping the gate, loses it; an etcd cluster that refuses
    /// the release as too large, [`StoreProblem::TooLarge`], takes it only once its
    /// `--max-request-bytes` is raised: logged as an error).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// let gate = PromotionGateManager::new(
    ///     PromotionConfig { environment: Environment::Staging, feature_flags: vec!["x".into()], ..Default::default() },
    ///     SloAdmissionController::new(SloConfig::default())?,
    /// )?;
    /// gate.rollback("error budget burned")?;
    /// assert_eq!(gate.environment(), Environment::Production);
    /// assert!(!gate.is_feature_enabled("x"));
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn rollback(&self, reason: impl Into<String>) -> Result<(), Error> {
        let reason = reason.into();
        if reason.len() > MAX_REASON_BYTES {
            return Err(RollbackError::ReasonTooLong {
                shown: quoted(&reason),
                bytes: reason.len(),
                max: MAX_REASON_BYTES,
            }
            .into());
        }
        if reason.chars().all(is_unseen) {
            return Err(RollbackError::BlankReason {
                shown: quoted(&reason),
            }
            .into());
        }
        let manual = RollbackTrigger::Manual;
        let mut writer = self.lock_writer();
        let rolled_back = |writer: &mut WriterState| {
            self.shared
                .rollback_locked(writer, reason.clone(), manual, None)
        };
        let nothing = |made: &Result<(), Error>| {
            matches!(made, Err(Error::Rollback(RollbackError::NothingToRollBack)))
        };
        match self.write_locked(&mut writer, rolled_back, nothing) {
            Ok(()) => Ok(()),
            // Another process's write came first, and the gate cannot follow the stored state
            // (its config names flags beyond what the gate can hold; a release a newer build
            // wrote with a field this build does not know, or another row that is not ours,
            // logged by the catch-up; a store that did not answer the read): the rollback is
            // made here at once and written over the stored state by the sync thread once it
            // can be, as an automatic one is, rather than refused (a store that cannot be
            // written is no error for a rollback).
            Err(refused) if refused.cannot_follow_the_store() => self.shared.roll_back(
                &mut writer,
                reason,
                manual,
                None,
                Some(Durability::Deferred),
            ),
            Err(Refused::CatchUp(error) | Refused::Decided(error)) => Err(error),
        }
    }

    /// The rollback history, oldest first, at most
    /// [`max_rollback_history`](PromotionConfig::max_rollback_history) events.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// for event in gate.rollback_history() {
    ///     println!("Rollback: {} - {} at {:?}", event.feature, event.reason, event.timestamp);
    /// }
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn rollback_history(&self) -> Vec<RollbackEvent> {
        self.shared.lock_records().history.to_vec()
    }

    /// Rollback events counted by cause since the gate was built, in order of each cause's
    /// first event: unlike the bounded [`rollback_history`](Self::rollback_history), the
    /// counts never decrease (the Prometheus exposition exports them as
    /// `promotion_rollbacks_total`). With a store they are the stored counts (see
    /// [`RollbackCount`](crate::telemetry::RollbackCount)), each shown no lower than this gate
    /// showed it before: stored counts that went back (a store replaced by an older copy, or
    /// made afresh) hold it where it was until they pass it.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// gate.enable_feature("dark_mode")?;
    /// gate.disable_feature("dark_mode")?;
    /// let counts = gate.rollback_counts();
    /// assert_eq!((counts[0].trigger, counts[0].count), (RollbackTrigger::FlagDisabled, 1));
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn rollback_counts(&self) -> Vec<crate::telemetry::RollbackCount> {
        self.shared.lock_records().rollbacks.shown()
    }

    /// The specification's name for [`rollback_history`](Self::rollback_history), kept as an
    /// alias for hosts written against it.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert_eq!(gate.get_rollback_history(), gate.rollback_history());
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn get_rollback_history(&self) -> Vec<RollbackEvent> {
        self.rollback_history()
    }

    /// Replaces the whole config atomically (hot reload) and returns the one it replaced.
    ///
    /// This is an operator's override: it does not go through the promotion state machine or
    /// the judge, and it replaces whatever state the gate is in. A change of environment
    /// starts a new stage (unless it is a canary share that rounds to the same buckets, which
    /// moves no request), and so does a change of salt, which reshuffles users (both are
    /// logged as warnings): metrics of one set of canary users are never judged together with
    /// another's. A flag is turned on or off for the requests of either version: the stable
    /// version's get the graduated flags, the new version's the release flags too, so a flag
    /// moved from `feature_flags` to `graduated_flags` is turned on (the stable version's
    /// requests get it), and one moved back is turned off (theirs lose it). In Canary and
    /// Staging, a flag turned on for the requests judged starts a stage too, as
    /// [`enable_feature`](Self::enable_feature) does (in Staging, where every request goes to
    /// the new version and no stable cohort is judged, a release flag graduated is not one: it
    /// keeps the stage); a flag turned off keeps the stage, as
    /// [`disable_feature`](Self::disable_feature) does. Each flag turned on or off is logged, has its `promotion.flag` span and is listed
    /// in the swap's change ([`StateChange::flags`](crate::StateChange::flags), a change of kind
    /// [`ChangeKind::Flags`](crate::ChangeKind::Flags) when the environment stays) as those
    /// calls make them (a flag turned off is no rollback: it is not counted nor kept in the
    /// history). With a
    /// state store, the new config replaces the stored state for every process (the explicit
    /// way to start over from a config document); it must keep the gate's `store` and `gate`
    /// name. One that turns a release flag on in Canary or Staging is the next release, even
    /// at the same split and salt: it starts a rollout in the store, and a rollback another
    /// process decided on the release before and could not write yet is dropped, never
    /// written over it (docs/store.md).
    ///
    /// A config read from the gate ([`config`](Self::config)) and edited is swapped in as it
    /// is, even if the gate has changed since it was read: a rollback made meanwhile (by the
    /// judge, another thread, or another process once this one has applied it) is undone, and
    /// the rolled-back canary takes traffic again; a flag turned off meanwhile
    /// ([`disable_feature`](Self::disable_feature), a kill switch) is on again; another
    /// reload's swap is overwritten. To swap a config only over the state it was read from,
    /// use [`swap_config_from`](Self::swap_config_from).
    ///
    /// # Errors
    /// [`Error::Config`] naming the first invalid field (or a changed `gate`: a running gate
    /// keeps its name; or, with a store, a changed `store`; or a changed
    /// `rollback_window_seconds` shorter than ten of the gate's `evaluation_interval_ms`, as
    /// [`SloConfig::validate_for`](crate::SloConfig::validate_for): the window in force passes,
    /// one followed from the store too), [`Error::Store`] when the store
    /// cannot be written, or when another process began a stage first (a rollback or a
    /// promotion this process had not applied yet: the swap was decided on a release the
    /// store no longer holds; read the config again); [`PromotionError::SloNotMet`] when the
    /// swap would start a stage and the record path's judge called for a rollback of the
    /// current one while it was being made (its publication included), or, for a swap that
    /// starts a stage (a change of the split, the environment or the salt, a flag turned on,
    /// a release flag graduated in Canary),
    /// the judge asked first finds a rule fired in it (with `auto_rollback_enabled`): the
    /// rollback is made instead (or over the swap, once published, undoing it); the gate is
    /// otherwise unchanged.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// let mut next = gate.config();
    /// next.feature_flags.push("dark_mode".into());
    /// let old = gate.swap_config(next)?;
    /// assert!(old.feature_flags.is_empty());
    /// assert!(gate.is_feature_enabled("dark_mode"));
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn swap_config(&self, config: PromotionConfig) -> Result<PromotionConfig, Error> {
        self.swap_config_if(None, config)
    }

    /// [`swap_config`](Self::swap_config), made only if the gate has not changed since the
    /// caller read [`change_count`](Self::change_count) `seen_change_count`, *before* it read
    /// the config it edited ([`config`](Self::config)). A hot reload that edits the gate's
    /// config needs it: a plain `swap_config` of a config read before a rollback (by the
    /// judge, another thread or another process) puts the rolled-back canary back, one read
    /// before a [`disable_feature`](Self::disable_feature) (a kill switch) turns the flag on
    /// again, and two operators' reloads overwrite each other. Here the swap is refused
    /// instead; read the change count and the config again.
    ///
    /// Every change the gate notifies moves the count: a rollback, a promotion, a flag turned
    /// on or off, a config swap, an SLO swap ([`swap_slo`](Self::swap_slo): the config is
    /// unchanged, yet it counts, so a reload that read the count before it is refused too), and
    /// another process's write once this gate has read it from the state store. The count is
    /// compared under the writer lock, where every such change is counted before the lock is
    /// let go; with a store, a swap that lost the compare-and-swap to another process's write
    /// first catches up with the stored state (which moves the count if that write changed
    /// the gate) and compares again, so a write made elsewhere after the read refuses the swap
    /// even before this gate has synced.
    ///
    /// Read the count first: a change between the two reads then refuses the swap (the config
    /// is newer than the count), never lets it through. The count is this gate's own (each
    /// process numbers the changes it has seen): read it from the gate the swap is made on.
    ///
    /// # Errors
    /// [`SwapError::GateChanged`](crate::SwapError::GateChanged) when the change count is no
    /// longer `seen_change_count` (nothing changed); otherwise as
    /// [`swap_config`](Self::swap_config).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// gate.enable_feature("dark_mode")?;
    /// let seen = gate.change_count(); // first
    /// let mut next = gate.config();
    /// next.feature_flags.push("wide_layout".into());
    /// gate.disable_feature("dark_mode")?; // meanwhile: a kill switch, here or in another process
    /// let err = gate.swap_config_from(seen, next).unwrap_err();
    /// assert!(matches!(err, Error::Swap(SwapError::GateChanged { .. })));
    /// assert!(!gate.is_feature_enabled("dark_mode")); // the kill switch stays
    /// // Read again, the swap is made.
    /// let seen = gate.change_count();
    /// let mut next = gate.config();
    /// next.feature_flags.push("wide_layout".into());
    /// gate.swap_config_from(seen, next)?;
    /// assert!(gate.is_feature_enabled("wide_layout") && !gate.is_feature_enabled("dark_mode"));
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn swap_config_from(
        &self,
        seen_change_count: u64,
        config: PromotionConfig,
    ) -> Result<PromotionConfig, Error> {
        self.swap_config_if(Some(seen_change_count), config)
    }

    /// [`swap_config`](Self::swap_config) or [`swap_config_from`](Self::swap_config_from).
    fn swap_config_if(
        &self,
        seen: Option<u64>,
        mut config: PromotionConfig,
    ) -> Result<PromotionConfig, Error> {
        config.validate()?;
        config.environment = config.environment.unsigned();
        let mut first_stage = None;
        self.write(|writer| {
            // Under the writer lock, where every change is counted before the lock is let go;
            // decided again, so compared again, after a lost race's catch-up.
            let now = self.shared.changes.count();
            if let Some(seen) = seen.filter(|&seen| seen != now) {
                return Err(SwapError::GateChanged { seen, now }.into());
            }
            let current = self.shared.current.load_full();
            if config.gate != current.config.gate {
                return Err(crate::ConfigError::new(
                    "gate",
                    format!("{:?}", config.gate),
                    format!(
                        "{:?}: a running gate keeps its name, which keys its stored state, its \
                         metrics' series and a host's shared memory; open a new gate for another \
                         name",
                        current.config.gate
                    ),
                )
                .into());
            }
            StoreLink::check_same_store(writer.store.as_ref(), &config)?;
            // Only a window this swap changes: the one in force passes, as it was accepted
            // (perhaps followed from the store, written by a process of a shorter interval),
            // so re-sending the config in force with one change is not refused for it.
            if config.rollback_window_seconds != current.config.rollback_window_seconds {
                self.check_window_for_slo(config.rollback_window_seconds)?;
            }
            // Decided again after another process's write: only if that write left the stage
            // alone (a flag edit, say). One that began a stage (a rollback, a promotion) is not
            // written over: the caller read a release that is no longer there.
            if *first_stage.get_or_insert(current.route.stage) != current.route.stage {
                let not_made = "the config was not swapped: read it again";
                return Err(moved_first(writer, &current, not_made));
            }
            // A canary share that rounds to the same buckets routes every request as before:
            // the stage and the judge's evidence go on.
            let new_stage = !release::same_split(current.config.environment, config.environment);
            let new_salt = current.config.effective_salt() != config.effective_salt();
            let flag_on = release::turns_a_flag_on(&current.config, &config);
            if new_stage || new_salt || flag_on {
                self.judged_before_its_stage_ends(writer, &current)?;
            }
            // A release flag turned on by the operator's replacement is the next release, even
            // at the same split and salt: a rollback decided on the one before (waiting to be
            // written by another process) is not written over it.
            let next_stage = if release::turns_a_release_flag_on(&current.config, &config) {
                NextStage::NextRelease
            } else if new_stage || new_salt || flag_on {
                NextStage::UnlessRolledBack
            } else {
                NextStage::Same
            };
            let (bound, next) = (config.max_rollback_history, config.clone());
            let dropped = self.shared.commit(
                writer,
                next,
                next_stage,
                None,
                Durability::Required,
            )?;
            // Told once made: a write the store refused changed nothing.
            for (flag, on) in release::flag_changes(&current.config, &config) {
                tell_flag_change(&config.gate, flag, on);
            }
            if current.config.environment != config.environment {
                tracing::warn!(from = %current.config.environment, to = %config.environment, "promotion.swap_config changes the environment");
            }
            if new_salt {
                tracing::warn!(gate = %config.gate, "promotion.swap_config changes the routing salt: users are reshuffled");
            }
            if dropped > 0 {
                tracing::warn!(
                    dropped,
                    max_rollback_history = bound,
                    "promotion.swap_config lowered max_rollback_history: the oldest rollback events were dropped (raising it again cannot restore them)"
                );
            }
            Ok(current.config.clone())
        })
    }

    /// A config's window of `window_seconds` against the policy in force: refused, naming
    /// the window, when the policy's `evaluation_interval` is longer than a tenth of it
    /// ([`SloConfig::validate_for`](crate::SloConfig::validate_for)).
    fn check_window_for_slo(&self, window_seconds: u64) -> Result<(), crate::ConfigError> {
        let slo = self.shared.monitor.slo();
        let interval = slo.config().evaluation_interval;
        slo.config().check_window(window_seconds).map_err(|_| {
            crate::ConfigError::new(
                "rollback_window_seconds",
                window_seconds,
                format!(
                    "at least ten times the gate's evaluation_interval_ms = {} (a reading is \
                     taken only at an evaluation, and the window's start must be exact to a \
                     tenth of it): lengthen the window or swap_slo to a shorter interval first",
                    crate::shown_millis(interval)
                ),
            )
        })
    }
}

/// Why a write under the writer lock was not made.
enum Refused {
    /// The write was decided and refused (an invalid move, a store that refused it).
    Decided(Error),
    /// The write lost a race to another process's, and the gate could not catch up with the
    /// stored state to decide it again (the store cannot be read, or did not answer).
    CatchUp(Error),
}

impl Refused {
    /// Whether the gate could not follow the stored state a write lost to: a stored config
    /// naming flags beyond what the gate can hold, or a store that cannot be read (not ours to
    /// this build) or did not answer the read. Not a conflict that kept coming back: that store
    /// answers, and the write may be tried again.
    fn cannot_follow_the_store(&self) -> bool {
        match self {
            Self::Decided(Error::Flag(_)) | Self::CatchUp(Error::Flag(_)) => true,
            Self::CatchUp(Error::Store(e)) => e.problem() != StoreProblem::Conflict,
            Self::Decided(_) | Self::CatchUp(_) => false,
        }
    }
}

/// The conflict of a write decided again after another process's write moved the gate to
/// `current`, which the write will not be made over (`not_made` says what was not done).
fn moved_first(writer: &WriterState, current: &Snapshot, not_made: &str) -> Error {
    let location = writer.store.as_ref().map_or("", |link| link.location());
    let environment = current.config.environment;
    let detail = format!("another process moved the gate to {environment} first; {not_made}");
    StoreError::new(location, StoreProblem::Conflict, detail).into()
}

impl Shared {
    /// Rolls back under the writer lock: records the event and publishes the rolled-back
    /// config (see [`release::rolled_back`]) as a new stage. With a store, a manual rollback
    /// is committed first when the store answers; an automatic one, and any rollback while the
    /// store is unavailable, is published at once and written by the sync thread.
    pub(super) fn rollback_locked(
        &self,
        writer: &mut WriterState,
        reason: String,
        trigger: RollbackTrigger,
        evidence: Option<Evidence>,
    ) -> Result<(), Error> {
        self.roll_back(writer, reason, trigger, evidence, None)
    }

    /// [`rollback_locked`](Self::rollback_locked), written to the store as `durability` says
    /// (`None`: as its trigger says).
    pub(super) fn roll_back(
        &self,
        writer: &mut WriterState,
        reason: String,
        trigger: RollbackTrigger,
        evidence: Option<Evidence>,
        durability: Option<Durability>,
    ) -> Result<(), Error> {
        let current = self.current.load_full();
        let previous = current.config.environment;
        if previous == Environment::Production {
            return Err(RollbackError::NothingToRollBack.into());
        }
        let config = release::rolled_back(&current.config);
        let rollback = Rollback {
            config,
            previous,
            trigger,
        };
        self.roll_back_to(writer, rollback, reason, evidence, durability)
    }

    /// Publishes `rollback` (a rolled-back config, and the environment of the release it rolls
    /// back, which its event names) as a new stage, with its history event, written to the
    /// store as `durability` says (`None`: as its trigger says).
    pub(super) fn roll_back_to(
        &self,
        writer: &mut WriterState,
        rollback: Rollback,
        reason: String,
        evidence: Option<Evidence>,
        durability: Option<Durability>,
    ) -> Result<(), Error> {
        let Rollback {
            config,
            previous,
            trigger,
        } = rollback;
        #[cfg(feature = "otel")]
        let gate = self.current.load().config.gate.clone();
        let undone = Undone::Release {
            trigger,
            reason,
            evidence,
        };
        let event = RollbackEvent::made(undone, previous, self.monitor.wall());
        let durability = durability.unwrap_or(match trigger {
            RollbackTrigger::Automatic => Durability::Deferred,
            RollbackTrigger::Manual | RollbackTrigger::FlagDisabled => Durability::BestEffort,
        });
        // Logged, its span made and counted (by `commit`) once the rollback is made: a write
        // that lost a race to another process's is decided again, and only the one made is
        // told, with the environment it rolled back.
        let told = event.clone();
        self.commit(writer, config, NextStage::New, Some(event), durability)?;
        crate::telemetry::log_rollback(&told.reason, previous, trigger);
        #[cfg(feature = "otel")]
        crate::telemetry::otel::rollback_span(
            &gate,
            &told.reason,
            previous,
            trigger,
            told.evidence.as_ref(),
        );
        Ok(())
    }
}

/// A rollback to publish: the rolled-back config, the environment of the release it rolls
/// back (which its history event names), and what made it.
pub(super) struct Rollback {
    pub(super) config: PromotionConfig,
    pub(super) previous: Environment,
    pub(super) trigger: RollbackTrigger,
}

/// Why a canary scored `score`, below the healthy `threshold`, is not promoted: the score with
/// enough decimals to read below the threshold (0.89996 is not `0.9000 below 0.9`).
fn low_score(score: f64, threshold: f64) -> String {
    let [score, threshold] = apart(
        (score, Digits::Fixed(4)),
        (threshold, Digits::Shortest),
        false,
    );
    format!("health score {score} below {threshold} (MONITOR: watch before promoting)")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_low_score_never_reads_as_the_threshold() {
        assert_eq!(
            super::low_score(0.8796, 0.9),
            "health score 0.8796 below 0.9 (MONITOR: watch before promoting)"
        );
        assert_eq!(
            super::low_score(0.89996, 0.9),
            "health score 0.89996 below 0.9 (MONITOR: watch before promoting)"
        );
    }
}
