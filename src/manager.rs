//! [`PromotionGateManager`]: the gate. It is the one place that owns the `ArcSwap` snapshot:
//! routing reads it (through a per-thread cache, `route`); promotions, flag changes, rollbacks
//! and config swaps publish a new one (`writes`), serialized by one writer lock that also keeps
//! the rollback history. Evaluation is the [`Monitor`]'s: the gate hands it each outcome and
//! the snapshot to judge, and applies the verdicts it returns: from the record path (`record`)
//! and from a host's health check (`health`).

use arc_swap::ArcSwap;
use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use thread_local::ThreadLocal;

use crate::changes::{ChangeFeed, ChangeOrigin, Published};
use crate::clock::{Clock, SystemClock, recordable};
use crate::config::{Environment, PromotionConfig};
use crate::decision::StageId;
use crate::error::Error;
use crate::flags::{FlagSetIndex, FlagSets};
use crate::history::{RollbackEvent, RollbackHistory, RollbackTrigger};
use crate::monitor::{Monitor, Now};
use crate::slo::SloAdmissionController;
use crate::snapshot::{RouteTable, Snapshot};
use crate::telemetry::{RollbackCounts, VerdictLines};
use crate::verdict::Verdict;
use retired::Retired;
use writer_lock::{WriterLock, Writing};

/// State only writers touch, behind the writer lock. Readers never take it.
#[derive(Debug, Default)]
struct WriterState {
    flag_index: FlagSetIndex,
    /// The state store and where this process stands in it, when the config names one.
    store: Option<stored::StoreLink>,
    /// Snapshots a write replaced that a thread may still hold: freed here, never on the
    /// route or record path (see `retired`).
    retired_snapshots: Retired<Arc<Snapshot>>,
    /// SLO policies `swap_slo` replaced that an evaluation may still hold, likewise.
    retired_slos: Retired<Arc<SloAdmissionController>>,
    /// The stage the last write ended, when it was a stage-starting write other than a
    /// rollback (this process's, or another's it followed from the store): a rollback called
    /// for in it is made over that write (`ended`).
    ended: Option<ended::EndedStage>,
}

impl WriterState {
    /// Frees the replaced snapshots, policies and flag sets no thread holds any more.
    fn sweep_retired(&mut self) {
        self.retired_snapshots.sweep();
        self.retired_slos.sweep();
        self.flag_index.sweep_reclaimed();
    }
}

/// What the gate keeps of its rollbacks, behind a lock of its own: readers (the history, the
/// metrics exposition) never wait for a write that is storing itself under the writer lock.
/// A writer takes it, after the writer lock, only to publish: the snapshot, the event and its
/// count change together, never across I/O.
#[derive(Default)]
struct Records {
    history: RollbackHistory,
    /// Rollback events counted by cause over the gate's life (the history drops old ones).
    rollbacks: RollbackCounts,
}

/// The canary routing and promotion-gate engine for one gate (one service or route).
///
/// Share one manager between all threads of a host (`Arc<PromotionGateManager>`); every method
/// takes `&self`. Routing is lock-free, allocation-free and frees nothing (a snapshot a write
/// replaced is freed by the writer side); writes are serialized among
/// themselves and publish a new snapshot atomically, so readers see either the old state or
/// the new one, never a mix.
///
/// **What may block.** Routing and recording never wait for I/O. With a state store
/// (docs/store.md), writes (`promote`, flag edits, `rollback`, `swap_config`) store
/// themselves before they return, and dropping the gate stops its sync thread and stores a
/// rollback not yet written: each may wait for the store, up to SQLite's `busy_timeout_ms` or
/// etcd's request timeout (2 s) per attempt. An async host calls them off its executor's
/// threads (e.g. in `spawn_blocking`). A child process forked with a gate open has none of
/// its threads and may find its locks held: make gates after the fork (docs/store.md).
///
/// # Example
/// ```
/// use promotion_gates::{Environment, PromotionConfig, PromotionGateManager, SloAdmissionController, SloConfig};
///
/// let config = PromotionConfig {
///     environment: Environment::Canary { traffic_percent: 10.0 },
///     feature_flags: vec!["new_api".to_string()],
///     auto_rollback_enabled: true,
///     slo_threshold: 0.95,
///     rollback_window_seconds: 300,
///     ..Default::default()
/// };
/// let slo_controller = SloAdmissionController::new(SloConfig::default())?;
/// let manager = PromotionGateManager::new(config, slo_controller)?;
///
/// let decision = manager.route_request("user-session-123");
/// assert_eq!(decision.is_canary, manager.route_request("user-session-123").is_canary);
/// # Ok::<(), promotion_gates::Error>(())
/// ```
pub struct PromotionGateManager {
    shared: Arc<Shared>,
    /// Each thread's copy of the current route table.
    route_cache: ThreadLocal<Cell<RouteTable>>,
    /// Each thread's reference to the snapshot whose overrides it last read, made at its first
    /// route that needs them (a gate that lists override ids, or a forcing value passed), so
    /// that such routes read no shared atomic while the generation is unchanged. Holds that
    /// snapshot alive until the thread routes under a newer one (or the gate is dropped); the
    /// writer side keeps a reference to it too (`retired`), so that route never frees it.
    override_cache: ThreadLocal<RefCell<Arc<Snapshot>>>,
    /// Applies other processes' writes from the state store, when the config names one.
    /// Stopped by the gate's `Drop`, which then stores a rollback the thread has not written.
    sync: Option<sync_thread::SyncThread>,
}

impl Drop for PromotionGateManager {
    fn drop(&mut self) {
        // Explicitly, while the shared state still lives: an automatic rollback published
        // but not yet stored must reach the store before the gate goes (a reload, `pgate_gate_free`).
        if let Some(sync) = self.sync.take() {
            sync.stop(&self.shared);
        }
    }
}

/// What the gate's callers and its state store's sync thread share: the snapshot, the writer
/// lock and the monitor.
struct Shared {
    /// Bumped after each publication; the only shared word the route path reads.
    generation: generation::Published,
    current: ArcSwap<Snapshot>,
    flag_sets: FlagSets,
    writer: WriterLock,
    records: Mutex<Records>,
    /// Metrics, policy and clock: when to evaluate, and the verdicts this gate applies.
    monitor: Monitor,
    /// How the static config differed from the stored state the gate opened on, if it did.
    difference_at_open: Option<String>,
    /// Every published change, for hosts that watch the gate.
    changes: ChangeFeed,
    /// An automatic rollback the record path left for the sync thread.
    handoff: sync_thread::Handoff,
    /// The judge's log lines, each written when its condition begins, then once a minute.
    verdict_lines: VerdictLines,
}

impl std::fmt::Debug for PromotionGateManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snapshot = self.shared.current.load();
        f.debug_struct("PromotionGateManager")
            .field("config", &snapshot.config)
            .field("generation", &snapshot.route.generation)
            .field("stage", &snapshot.route.stage)
            .finish_non_exhaustive()
    }
}

impl PromotionGateManager {
    /// Validates `config` and builds a gate that judges with `slo_controller`'s policy.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first invalid field, or `evaluation_interval_ms` when it is
    /// longer than a tenth of `config`'s window ([`SloConfig::validate_for`](crate::SloConfig::validate_for)).
    ///
    /// # Example
    /// ```
    /// use promotion_gates::{Environment, PromotionConfig, PromotionGateManager, SloAdmissionController, SloConfig};
    ///
    /// let slo = SloAdmissionController::new(SloConfig::default())?;
    /// let bad = PromotionConfig { environment: Environment::Canary { traffic_percent: 150.0 }, ..Default::default() };
    /// assert!(PromotionGateManager::new(bad, slo).is_err());
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn new(
        config: PromotionConfig,
        slo_controller: SloAdmissionController,
    ) -> Result<Self, Error> {
        Self::with_clock(config, slo_controller, Arc::new(SystemClock::new()))
    }

    /// Like [`new`](Self::new), with an injected clock (a [`ManualClock`](crate::ManualClock) in
    /// tests and simulations).
    ///
    /// # Errors
    /// [`Error::Config`] naming the first invalid field.
    ///
    /// # Example
    /// ```
    /// use promotion_gates::*;
    /// use std::sync::Arc;
    ///
    /// let clock = Arc::new(ManualClock::new());
    /// let gate = PromotionGateManager::with_clock(
    ///     PromotionConfig::default(),
    ///     SloAdmissionController::new(SloConfig::default())?,
    ///     clock.clone(),
    /// )?;
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn with_clock(
        mut config: PromotionConfig,
        slo_controller: SloAdmissionController,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        config.validate()?;
        // The window `config` sets, not one read from a store (another process, or an older
        // build, may have set it): that one is taken as it is.
        slo_controller
            .config()
            .check_window(config.rollback_window_seconds)?;
        config.environment = config.environment.unsigned();
        let flag_sets = FlagSets::new();
        let mut writer = WriterState::default();
        let mut records = Records::default();
        // With a store, the stored state (when there is one) wins over `config`.
        let opened = stored::open(&config, recordable(clock.wall()))?;
        let (config, stage, difference_at_open) = match opened {
            Some(opened) => {
                // The stored counts, as every process on the store counts them.
                records.rollbacks.stored(opened.link.counted().clone());
                for event in opened.history {
                    records
                        .history
                        .push(event, opened.config.max_rollback_history);
                }
                writer.store = Some(opened.link);
                (opened.config, opened.stage, opened.difference)
            }
            None => (config, StageId(1), None),
        };
        let sync_interval = config.store.as_ref().map(|store| store.sync_interval());
        let snapshot = Snapshot::build(config, 1, stage, &flag_sets, &mut writer.flag_index)?;
        let shared = Arc::new(Shared {
            generation: generation::Published::new(1),
            current: ArcSwap::from_pointee(snapshot),
            flag_sets,
            writer: WriterLock::new(writer),
            records: Mutex::new(records),
            monitor: Monitor::new(slo_controller, clock, stage),
            difference_at_open,
            changes: ChangeFeed::default(),
            handoff: sync_thread::Handoff::default(),
            verdict_lines: VerdictLines::default(),
        });
        let sync = sync_interval
            .map(|interval| sync_thread::SyncThread::start(&shared, interval))
            .transpose()?;
        Ok(Self {
            shared,
            route_cache: ThreadLocal::new(),
            sync,
            override_cache: ThreadLocal::new(),
        })
    }

    /// The current config: environment, flags and policy, as last published.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert_eq!(gate.config().environment, Environment::Production);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn config(&self) -> PromotionConfig {
        self.shared.current.load().config.clone()
    }

    /// The gate's name (its config's `gate`), without copying the rest of the config.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// let config = PromotionConfig { gate: "checkout".into(), ..Default::default() };
    /// let gate = PromotionGateManager::new(config, SloAdmissionController::new(SloConfig::default())?)?;
    /// assert_eq!(gate.gate_name(), "checkout");
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn gate_name(&self) -> String {
        self.shared.current.load().config.gate.clone()
    }

    /// How the static config differed from the stored state this gate opened on, as
    /// `field: static X, stored Y` pairs joined by `; `, or `None` when they agreed (or there
    /// is no store, or the store held no state yet and the static config was written to it).
    /// Every field either side has is compared; one a side lacks (`overrides`, when unset) is
    /// shown as `absent`. Each value is shown up to
    /// [`MAX_SHOWN_VALUE_BYTES`](crate::MAX_SHOWN_VALUE_BYTES), then cut and followed by its
    /// length (`...(515064 bytes)`): the text is kept for the gate's life.
    ///
    /// With a `store`, a gate opened on a store that already holds this gate's state starts
    /// from the stored state: a rolled-back canary stays rolled back, the stage and the
    /// history survive, and the static config's own values are not applied (the difference is
    /// logged as a warning and reported here). To start a new rollout, promote from
    /// Production ([`promote`](Self::promote) to a canary), or replace the stored state for
    /// every process with [`swap_config`](Self::swap_config).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// let dir = std::env::temp_dir().join(format!("pg-doc-difference-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let path = dir.join("gate.db");
    /// let json = |percent: f64| format!(
    ///     r#"{{"environment": {{"canary": {{"traffic_percent": {percent}}}}}, "store": {{"sqlite": {{"path": {:?}}}}}}}"#,
    ///     path.display().to_string(),
    /// );
    /// let slo = || SloAdmissionController::new(SloConfig::default());
    /// let first = PromotionGateManager::new(PromotionConfig::from_json(&json(10.0))?, slo()?)?;
    /// assert_eq!(first.stored_state_difference(), None);
    /// drop(first);
    /// let second = PromotionGateManager::new(PromotionConfig::from_json(&json(20.0))?, slo()?)?;
    /// assert_eq!(second.environment(), Environment::Canary { traffic_percent: 10.0 });
    /// assert!(second.stored_state_difference().unwrap().starts_with("environment: static"));
    /// # drop(second);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn stored_state_difference(&self) -> Option<&str> {
        self.shared.difference_at_open.as_deref()
    }

    /// The environment the gate is in.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert_eq!(gate.environment(), Environment::Production);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn environment(&self) -> Environment {
        self.shared.current.load().config.environment
    }

    /// The current release stage.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert_eq!(gate.stage().get(), 1);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn stage(&self) -> StageId {
        self.shared.current.load().route.stage
    }

    /// The current environment and release stage, read together from one snapshot: calling
    /// [`environment`](Self::environment) then [`stage`](Self::stage) may read two states
    /// when another thread writes in between (a production environment with a canary
    /// stage's number).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// let (environment, stage) = gate.environment_and_stage();
    /// assert_eq!((environment, stage.get()), (Environment::Production, 1));
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn environment_and_stage(&self) -> (Environment, StageId) {
        let current = self.shared.current.load();
        (current.config.environment, current.route.stage)
    }

    /// The SLO policy this gate judges with now (a copy: [`swap_slo`](Self::swap_slo) may
    /// replace it).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert_eq!(gate.slo_controller().config().max_error_rate, 0.05);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn slo_controller(&self) -> SloAdmissionController {
        SloAdmissionController::clone(&self.shared.monitor.slo())
    }

    /// The flag set numbered `id` (a decision's
    /// [`EnabledFeatures::set_id`](crate::EnabledFeatures::set_id), as the C ABI hands it out),
    /// as a view. Lock-free, allocation-free.
    ///
    /// A number always names the same set: this gate never gives it to another one. The set
    /// stays readable while a snapshot uses it and for at least
    /// [`FLAG_SET_GRACE_WRITES`](crate::FLAG_SET_GRACE_WRITES) writes after (see
    /// [`limits`](crate::limits)); the view returned can become
    /// [stale](crate::EnabledFeatures::is_stale) later, never wrong.
    ///
    /// # Errors
    /// [`FlagError::UnknownSet`](crate::FlagError::UnknownSet) for a number this gate no longer
    /// holds or never gave out. Another gate's number is almost always one (gates number their
    /// sets from random starts), but not certainly: a host caching a set's names keys them by
    /// gate and number.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// let gate = PromotionGateManager::new(
    ///     PromotionConfig { environment: Environment::Staging, feature_flags: vec!["new_api".into()], ..Default::default() },
    ///     SloAdmissionController::new(SloConfig::default())?,
    /// )?;
    /// let id = gate.route_request("user-1").enabled_features.set_id();
    /// assert!(gate.flag_set(id)?.contains("new_api"));
    /// assert!(matches!(gate.flag_set(id + 1), Err(Error::Flag(FlagError::UnknownSet(_)))));
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn flag_set(&self, id: u32) -> Result<crate::EnabledFeatures<'_>, Error> {
        let view = crate::EnabledFeatures::new(&self.shared.flag_sets, crate::flags::FlagSetId(id));
        if view.is_stale() {
            return Err(crate::FlagError::UnknownSet(id).into());
        }
        Ok(view)
    }

    /// How many rollback events the history has dropped over the gate's life: the oldest go
    /// first when it holds more than `max_rollback_history` events or
    /// [`MAX_ROLLBACK_HISTORY_BYTES`](crate::MAX_ROLLBACK_HISTORY_BYTES), and when
    /// `swap_config` lowers `max_rollback_history` (raising it again cannot restore them).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// let gate = PromotionGateManager::new(
    ///     PromotionConfig { max_rollback_history: 1, ..Default::default() },
    ///     SloAdmissionController::new(SloConfig::default())?,
    /// )?;
    /// gate.enable_feature("a")?;
    /// gate.disable_feature("a")?;
    /// gate.enable_feature("a")?;
    /// gate.disable_feature("a")?;
    /// assert_eq!(gate.rollback_history().len(), 1);
    /// assert_eq!(gate.rollback_events_dropped(), 1);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn rollback_events_dropped(&self) -> u64 {
        self.shared.lock_records().history.dropped()
    }

    fn lock_writer(&self) -> Writing<'_> {
        self.shared.lock_writer()
    }
}

impl Shared {
    /// Rolls back automatically if a rule fired, the config allows it and the judged stage is
    /// still current, or was ended by the gate's last write, a stage-starting one other than a
    /// rollback or the next release (a promotion, a flag turned on, a swap that turns no release
    /// flag on in Canary or Staging; this process's, or another's it
    /// followed from the store), whose stage the gate still shows: the rollback is then made
    /// over that write (the record path judged the stage just before the write published, and
    /// left its verdict after the write's last look, or this process judged the fleet's
    /// evidence of the stage another process's write ended; see `ended`). Any other stage that already left is not rolled back again: logged as a
    /// warning when a write other than its rollback ended it (at debug after its rollback: the
    /// other verdicts of a stage rolled back); Production has nothing to roll back. Neither is
    /// an error here.
    fn apply_verdict(&self, writer: &mut WriterState, verdict: &Verdict) {
        if !verdict.calls_for_rollback() {
            return;
        }
        let current = self.current.load_full();
        if !current.config.auto_rollback_enabled {
            return;
        }
        if current.route.stage != verdict.stage() {
            if self.ended_by_a_write(writer, verdict) {
                tracing::warn!(
                    judged_stage = verdict.stage().get(),
                    stage = current.route.stage.get(),
                    environment = %current.config.environment,
                    "promotion.rollback called for in the stage the last write ended (this process's as it was published, or another's followed from the store): made over that write"
                );
                if let Err(error) = self.roll_back_over_the_write(writer, verdict, None, false) {
                    tracing::error!(%error, stage = verdict.stage().get(), "promotion.rollback failed: the canary is still routed");
                }
                return;
            }
            if self.rolled_back_in(&current, verdict) {
                tracing::debug!(
                    judged_stage = verdict.stage().get(),
                    stage = current.route.stage.get(),
                    "promotion.rollback not made again: the stage the judge called for it in was rolled back"
                );
            } else {
                tracing::warn!(
                    judged_stage = verdict.stage().get(),
                    stage = current.route.stage.get(),
                    environment = %current.config.environment,
                    reason = %verdict.rollback_reason(),
                    "promotion.rollback not made: the stage the judge called for it in has ended"
                );
            }
            return;
        }
        let reason = verdict.rollback_reason();
        let evidence = Some(verdict.evidence().clone());
        if let Err(error) =
            self.rollback_locked(writer, reason, RollbackTrigger::Automatic, evidence)
        {
            tracing::error!(%error, stage = verdict.stage().get(), "promotion.rollback failed: the canary is still routed");
        }
    }

    /// Whether the stage `verdict` judged was ended by a rollback of it: the gate is in
    /// Production, and the newest event rolled the release back from the judged environment,
    /// on the judge's evidence of that stage (automatic) or into the stage right after it
    /// (manual, with no stage named). Called with the writer lock held.
    fn rolled_back_in(&self, current: &Snapshot, verdict: &Verdict) -> bool {
        let judged = verdict.evidence();
        current.config.environment == Environment::Production
            && self.lock_records().history.last().is_some_and(|event| {
                event.rolled_back == crate::history::RolledBack::Release
                    && event.environment == judged.environment
                    && event.evidence.as_ref().map_or(
                        current.route.stage.get() == judged.stage.get().saturating_add(1),
                        |evidence| evidence.stage == judged.stage,
                    )
            })
    }

    /// The rollback records. Taken after the writer lock by a writer, alone by a reader.
    fn lock_records(&self) -> MutexGuard<'_, Records> {
        // Each update (an event pushed and counted, a trim) leaves them consistent.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Builds the next snapshot without publishing it (a write commits it to the state store
    /// in between). Called with the writer lock held.
    ///
    /// # Errors
    /// [`FlagError::SetNumbersExhausted`](crate::FlagError::SetNumbersExhausted) when the
    /// config needs a new flag set and the gate has no number left, and
    /// [`FlagError::NamesExhausted`](crate::FlagError::NamesExhausted) when it names a flag
    /// beyond the gate's [`MAX_FLAG_NAMES`](crate::MAX_FLAG_NAMES); no set changed then.
    fn prepare(
        &self,
        writer: &mut WriterState,
        config: PromotionConfig,
        new_stage: bool,
    ) -> Result<Snapshot, Error> {
        let stage = self.current.load().route.stage;
        let stage = if new_stage {
            StageId(stage.0 + 1)
        } else {
            stage
        };
        self.prepare_at(writer, config, stage)
    }

    /// Builds the next snapshot at `stage` (the stored stage, when the gate follows its
    /// store), without publishing it. Called with the writer lock held.
    ///
    /// # Errors
    /// As [`prepare`](Self::prepare).
    fn prepare_at(
        &self,
        writer: &mut WriterState,
        config: PromotionConfig,
        stage: StageId,
    ) -> Result<Snapshot, Error> {
        let generation = self.current.load().route.generation + 1;
        Ok(Snapshot::build(
            config,
            generation,
            stage,
            &self.flag_sets,
            &mut writer.flag_index,
        )?)
    }

    /// Publishes a snapshot [`prepare`](Self::prepare) or [`prepare_at`](Self::prepare_at) built, under the same writer lock, then
    /// tells the change feed what changed (`events`: the history events new with it, which no
    /// change announced before), at
    /// `now`, the clocks read before the write changed anything. The snapshot replaced is
    /// kept in `writer` until no thread holds it: the writer side frees it, never a route.
    fn install(
        &self,
        writer: &mut WriterState,
        snapshot: Snapshot,
        origin: ChangeOrigin,
        events: &[RollbackEvent],
        now: Now,
    ) {
        let (stage, generation) = (snapshot.route.stage, snapshot.route.generation);
        // Before the snapshot: a decision of the new stage must never find the recorders'
        // newest stage older than its own (it would be refused as another gate's). Only a new
        // stage restarts the stage's clock: a flag change or a config swap within the stage
        // must not push back its warm-up or its no-data alarm.
        if stage != self.current.load().route.stage {
            self.monitor.stage_started(stage, now.monotonic);
        }
        let snapshot = Arc::new(snapshot);
        let before = self.generation.publish(
            generation,
            || self.current.swap(Arc::clone(&snapshot)),
            |before| {
                self.changes.publish(Published {
                    origin,
                    before: &before.config,
                    after: &snapshot.config,
                    stage,
                    events,
                    at: now.wall,
                })
            },
        );
        writer.sweep_retired();
        writer.retired_snapshots.keep(before);
    }
}

mod ended;
mod generation;
mod health;
mod notify;
mod policy;
mod record;
pub(crate) mod retired;
mod route;
mod stored;
mod sync_thread;
#[cfg(test)]
mod tests;
mod writer_lock;
mod writes;
