//! [`PromotionGateManager`]: the gate. It is the one place that owns the `ArcSwap` snapshot:
//! routing reads it (through a per-thread cache, `route`); promotions, flag changes, rollbacks
//! and config swaps publish a new one (`writes`), serialized by one writer lock that also keeps
//! the rollback history. Evaluation is the [`Monitor`]'s: the gate hands it each outcome and
//! the snapshot to judge, and applies the verdicts it returns.

use arc_swap::ArcSwap;
use crossbeam_utils::CachePadded;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use thread_local::ThreadLocal;

use crate::changes::{ChangeFeed, ChangeOrigin, Published};
use crate::clock::{Clock, SystemClock, recordable};
use crate::config::{Environment, PromotionConfig};
use crate::decision::Cohort;
use crate::decision::{RoutingDecision, StageId};
use crate::error::Error;
use crate::flags::{FlagSetIndex, FlagSets};
use crate::history::{RollbackEvent, RollbackHistory, RollbackTrigger};
use crate::judge::CanaryHealth;
use crate::metrics::Recorded;
use crate::monitor::Monitor;
use crate::slo::SloAdmissionController;
use crate::snapshot::{RouteTable, Snapshot};
use crate::telemetry::RollbackTally;
use crate::verdict::{Compliance, Verdict};
use writer_lock::{WriterLock, Writing};

/// State only writers touch, behind the writer lock. Readers never take it.
#[derive(Debug, Default)]
struct WriterState {
    flag_index: FlagSetIndex,
    /// The state store and where this process stands in it, when the config names one.
    store: Option<stored::StoreLink>,
}

/// What the gate keeps of its rollbacks, behind a lock of its own: readers (the history, the
/// metrics exposition) never wait for a write that is storing itself under the writer lock.
/// A writer takes it, after the writer lock, only to publish: the snapshot, the event and its
/// count change together, never across I/O.
#[derive(Default)]
struct Records {
    history: RollbackHistory,
    /// Rollback events counted by cause over the gate's life (the history drops old ones).
    rollbacks: RollbackTally,
}

/// The canary routing and promotion-gate engine for one gate (one service or route).
///
/// Share one manager between all threads of a host (`Arc<PromotionGateManager>`); every method
/// takes `&self`. Routing is lock-free and allocation-free; writes are serialized among
/// themselves and publish a new snapshot atomically, so readers see either the old state or
/// the new one, never a mix.
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
    /// snapshot alive until the thread routes under a newer one (or the gate is dropped).
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
    generation: CachePadded<AtomicU64>,
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
    /// [`Error::Config`] naming the first invalid field.
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
        config: PromotionConfig,
        slo_controller: SloAdmissionController,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        config.validate()?;
        let flag_sets = FlagSets::new();
        let mut writer = WriterState::default();
        let mut records = Records::default();
        // With a store, the stored state (when there is one) wins over `config`.
        let opened = stored::open(&config, recordable(clock.wall()))?;
        let (config, stage, difference_at_open) = match opened {
            Some(opened) => {
                // The stored history counts, as every process on the store counts it.
                for event in opened.history {
                    records.rollbacks.count(&event);
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
            generation: CachePadded::new(AtomicU64::new(1)),
            current: ArcSwap::from_pointee(snapshot),
            flag_sets,
            writer: WriterLock::new(writer),
            records: Mutex::new(records),
            monitor: Monitor::new(slo_controller, clock, stage),
            difference_at_open,
            changes: ChangeFeed::default(),
            handoff: sync_thread::Handoff::default(),
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

    /// Records the outcome of a routed request: whether it succeeded and how long it took.
    ///
    /// The outcome counts for the cohort and stage in `decision`, so an outcome that arrives
    /// after a promotion or rollback cannot pollute the next stage (it is dropped and counted
    /// as [`Recorded::Late`]). No shared cache line written; no allocation and no wait for a
    /// lock after the thread's first record, except to roll back while a host's write holds
    /// the gate (see [the guarantees](crate::guarantees)). The judge runs from here by itself: a quick check of the
    /// counters after a canary error (each of a thread's first 32 canary errors in a stage, then
    /// every 16th, and every error of a run of 4 or more in a row; so a canary failing every
    /// request rolls back within about 10 failures, and a sudden outage within about 30), and a
    /// full evaluation at most every
    /// [`evaluation_interval`](crate::SloConfig::evaluation_interval), looked for every 64
    /// records of a thread. Either may roll the canary back when `auto_rollback_enabled`.
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
            return self.record_forced();
        }
        self.record_for(decision.stage, decision.is_canary, success, latency)
    }

    /// Records the outcome of a forced request (one whose decision has
    /// [`forced`](RoutingDecision::forced) set): it counts in neither cohort, so testers and
    /// allow-lists never distort the judge's comparison, only in
    /// [`forced_outcomes`](Self::forced_outcomes). Returns [`Recorded::Forced`]. For hosts that
    /// keep decisions as plain data (the C ABI); [`record_outcome`](Self::record_outcome) calls
    /// it for a forced decision. Lock-free; no allocation after the thread's first record.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert_eq!(gate.record_forced(), Recorded::Forced);
    /// assert_eq!(gate.forced_outcomes(), 1);
    /// assert_eq!(gate.health().canary_requests + gate.health().production_requests, 0);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    #[cold]
    pub fn record_forced(&self) -> Recorded {
        self.shared.monitor.forced_outcome();
        Recorded::Forced
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
            return Some(self.record_forced());
        }
        Some(self.record_for(stage, is_canary, true, waited))
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
    /// holds or never gave out (e.g. a decision of another gate).
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

    /// Records an outcome by request id, as the specification's API does: the id is routed
    /// again (one more hash) under the *current* snapshot. Prefer
    /// [`record_outcome`](Self::record_outcome) with the decision the request was routed by.
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
        let verdict = self.judge_now();
        self.act_on(&verdict);
        verdict.into_health()
    }

    /// The canary's health over the current window, judged as
    /// [`monitor_canary_health`](Self::monitor_canary_health) judges it, without side effects:
    /// it never rolls back, and it leaves the `error_burst` spans (see
    /// [`monitor_canary_health`](Self::monitor_canary_health)) and the window as they were, so
    /// it may be called as often as a dashboard likes. A rule may show as fired here; the gate
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

    /// Whether the version under judgement meets its SLO: at least
    /// [`min_samples`](crate::SloConfig::min_samples) samples in the window, compliance (success
    /// within the latency target) at or above `slo_threshold`, and no rule fired. In
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
        let verdict = self.judge_now();
        self.act_on(&verdict);
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

    /// Judges the current stage now (waiting for an evaluation under way), without acting.
    fn judge_now(&self) -> Verdict {
        self.with_window(|evaluation, snapshot| evaluation.judge(snapshot))
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

    /// Makes the evaluation the record path asked for while this call held the window (see
    /// [`Monitor::wanted_evaluation`]), and acts on it as the record path would have: a read
    /// that held the window when an evaluation fell due makes it right after, so reading
    /// never changes or delays what the gate decides. Called after letting the window go,
    /// never with the writer lock held.
    #[cold]
    fn evaluate_wanted(&self) {
        self.evaluate_as_recording(self.shared.monitor.wanted_evaluation());
    }

    /// Screens and, if a rule fires, judges over `evaluation` (the record path's, or one it
    /// asked for), and acts on the verdict as the record path does.
    fn evaluate_as_recording(&self, evaluation: Option<crate::monitor::Evaluation<'_>>) {
        let Some(evaluation) = evaluation else {
            return;
        };
        if let Some(verdict) = evaluation.screen_then_judge(&self.shared.current.load()) {
            self.act_on_recording(&verdict);
        }
    }

    /// Logs `verdict` and applies it, taking the writer lock only when it calls for a rollback
    /// and never waiting for it (see [`Shared::apply_verdict_or_owe`]).
    fn act_on(&self, verdict: &Verdict) {
        crate::telemetry::log_verdict(verdict);
        if verdict.calls_for_rollback() {
            self.shared.apply_verdict_or_owe(verdict);
        }
    }

    /// [`act_on`](Self::act_on) for the record path, which never waits for a lock nor for
    /// store I/O: when the writer lock is held (a host's write may be storing itself, up to
    /// the store's timeout), a gate with a store hands the rollback to its sync thread, which
    /// makes it as soon as the lock is free; a gate without one leaves it to the writer, which
    /// makes it as it lets the lock go.
    fn act_on_recording(&self, verdict: &Verdict) {
        crate::telemetry::log_verdict(verdict);
        if !verdict.calls_for_rollback() {
            return;
        }
        if let Some(mut writer) = self.shared.try_lock_writer() {
            self.shared.apply_verdict(&mut writer, verdict);
        } else if !self.shared.handoff.offer(verdict) {
            self.shared.apply_verdict_or_owe(verdict);
        }
    }

    /// The record path's quick check after a canary error (see [`Monitor::screen`]). Out of
    /// line: the record path inlines only the test that calls it.
    #[cold]
    fn screen_errors(&self, stage: StageId) {
        if let Some(verdict) = self
            .shared
            .monitor
            .screen(stage, &self.shared.current.load())
        {
            self.act_on_recording(&verdict);
        }
    }

    /// The record path's look at the clock (see [`Monitor::due_evaluation`]): never waits for a
    /// lock and allocates nothing unless a rule fires (then the judge's evidence is built and
    /// the canary rolled back, a write like any other).
    #[cold]
    fn look_at_the_clock(&self) {
        self.evaluate_as_recording(self.shared.monitor.due_evaluation());
    }

    fn lock_writer(&self) -> Writing<'_> {
        self.shared.lock_writer()
    }
}

impl Shared {
    /// Rolls back automatically if a rule fired, the config allows it and the judged stage is
    /// still current. A stage that already left (another thread rolled back or promoted) is not
    /// rolled back again; Production has nothing to roll back. Neither is an error here.
    fn apply_verdict(&self, writer: &mut WriterState, verdict: &Verdict) {
        if !verdict.calls_for_rollback() {
            return;
        }
        let current = self.current.load_full();
        if !current.config.auto_rollback_enabled || current.route.stage != verdict.stage() {
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

    /// The rollback records. Taken after the writer lock by a writer, alone by a reader.
    fn lock_records(&self) -> MutexGuard<'_, Records> {
        // Each update (an event pushed and counted, a trim) leaves them consistent.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Builds and publishes the next snapshot. Called with the writer lock held.
    ///
    /// # Errors
    /// [`FlagError::SetNumbersExhausted`](crate::FlagError::SetNumbersExhausted) when the
    /// config needs a new flag set and the gate has no number left; nothing is published then.
    fn publish(
        &self,
        writer: &mut WriterState,
        config: PromotionConfig,
        stage: StageId,
        origin: ChangeOrigin,
        events: &[RollbackEvent],
    ) -> Result<(), Error> {
        let snapshot = self.prepare_at(writer, config, stage)?;
        self.install(snapshot, origin, events);
        Ok(())
    }

    /// Builds the next snapshot without publishing it (a write commits it to the state store
    /// in between). Called with the writer lock held.
    ///
    /// # Errors
    /// [`FlagError::SetNumbersExhausted`](crate::FlagError::SetNumbersExhausted), as
    /// [`publish`](Self::publish).
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

    /// Publishes a snapshot [`prepare`](Self::prepare) built, under the same writer lock, then
    /// tells the change feed what changed (`events`: the history events it came with).
    fn install(&self, snapshot: Snapshot, origin: ChangeOrigin, events: &[RollbackEvent]) {
        let (stage, generation) = (snapshot.route.stage, snapshot.route.generation);
        // Before the snapshot: a decision of the new stage must never find the recorders'
        // newest stage older than its own (it would be refused as another gate's). Only a new
        // stage restarts the stage's clock: a flag change or a config swap within the stage
        // must not push back its warm-up or its no-data alarm.
        if stage != self.current.load().route.stage {
            self.monitor.stage_started(stage);
        }
        let snapshot = Arc::new(snapshot);
        let before = self.current.swap(Arc::clone(&snapshot));
        self.generation.store(generation, Ordering::Release);
        self.changes.publish(Published {
            origin,
            before: &before.config,
            after: &snapshot.config,
            stage,
            events,
            at: self.monitor.wall(),
        });
    }
}

mod notify;
mod policy;
mod route;
mod stored;
mod sync_thread;
#[cfg(test)]
mod tests;
mod writer_lock;
mod writes;
