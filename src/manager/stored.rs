//! Keeping the gate and its state store in step: the stored state a gate opens on, each write
//! committed before it is published, and what the sync thread (`sync_thread`) does at each
//! tick: apply other processes' writes, write a rollback made while the store was unavailable
//! once it answers again, and exchange the stage's evidence with the fleet.
//!
//! Every store call here runs either in a host's own write (promote, flags, rollback,
//! `swap_config`) or on the sync thread, never on the route or record path: an automatic
//! rollback decided while recording is published at once and written by the sync thread.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::sync_thread::Signal;
use super::{Shared, WriterState};
use crate::changes::ChangeOrigin;
use crate::config::{Environment, PromotionConfig};
use crate::decision::StageId;
use crate::error::Error;
use crate::history::{RollbackEvent, RolledBack};
use crate::metrics::{FleetLedger, FleetReading, MAX_REMEMBERED};
use crate::release;
use crate::snapshot::Snapshot;
use crate::store::{
    self, BadContribution, Commit, Contribution, Guard, Since, StateStore, StoreConfig, StoreError,
    StoreProblem, StoredRelease, StoredWrite,
};

// The instances read at one tick are all remembered by the book: none of them is folded (and
// then taken back at its next reading, losing what it gained meanwhile).
const _: () = assert!(MAX_REMEMBERED >= store::MAX_INSTANCES);

/// Why a host's write is refused while a rollback waits to be written.
const WAITING_ROLLBACK: &str = "a rollback made while the store was unavailable is not written yet, and this write waits for it";

/// How a write treats a store that cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// Committed before it is published; refused while the store cannot be written.
    Required,
    /// Committed before it is published when the store answers; otherwise published at once
    /// and written by the sync thread when the store is back (a manual rollback).
    BestEffort,
    /// Published at once and written by the sync thread, without waiting for the store (an
    /// automatic rollback, which may be decided on the record path).
    Deferred,
}

/// The gate's side of its store: the store, the stored state this process last wrote or read,
/// and a rollback not yet written.
#[derive(Debug)]
pub(super) struct StoreLink {
    store: Arc<dyn StateStore>,
    /// The `store` key of the gate's config, put back on every config read from the store.
    config: StoreConfig,
    known: Guard,
    pending: Option<Pending>,
    /// Wakes the sync thread (to write a pending rollback now).
    wake: Option<mpsc::Sender<Signal>>,
    /// Whether the last store call failed; outages are logged once, and their end.
    down: bool,
    /// This gate's instance id among those that share the store (fleet-wide judging).
    instance: String,
    /// How long a contribution counts after it was published.
    ttl: Duration,
}

/// A rollback published here but not yet in the store.
#[derive(Debug, Clone)]
struct Pending {
    /// Its history event (with the judge's evidence, when automatic).
    event: Option<RollbackEvent>,
    /// The stored state it was decided on.
    decided_on: Guard,
}

/// How a stored state read after a rollback was deferred settles it.
#[derive(Debug, PartialEq)]
enum Settled {
    /// The rollback is stored already (an earlier try whose answer was lost, or the sync
    /// thread's write racing a host's), by the write of this version.
    Written(u64),
    /// Another write made it pointless, or wrong: why, for the log.
    Overtaken(String),
}

impl Pending {
    /// Whether `state`, the stored state, settles this rollback without writing it: it holds
    /// the rollback already; another release rollback was stored after the state it was
    /// decided on; the stored release is in Production; or the stored release moved on to
    /// another stage (another process ramped, graduated or started the next rollout meanwhile:
    /// a stage that already left is not rolled back again, as on the record path). A store
    /// that went back (a version at or below the one decided on) settles nothing: the rollback
    /// is written on top of it. `None`: still to be written.
    fn settled_by(&self, state: &store::StoredState) -> Option<Settled> {
        let decided_on = self.decided_on;
        let since = || {
            state
                .history
                .iter()
                .filter(move |e| e.version > decided_on.version)
        };
        let ours = |stored: &store::StoredEvent| {
            self.event.as_ref().is_some_and(|event| {
                *stored == store::StoredEvent::from_event(stored.version, event)
            })
        };
        if let Some(stored) = since().find(|e| ours(e)) {
            return Some(Settled::Written(stored.version));
        }
        let release = &state.release;
        let why = if let Some(other) = since().find(|e| e.rolled_back == "release") {
            format!(
                "the store holds another rollback of the release since (version {}, {:?})",
                other.version, other.reason
            )
        } else if release.config.environment == Environment::Production {
            "the stored release is in Production".to_string()
        } else if release.version > decided_on.version && release.stage != decided_on.stage {
            format!(
                "the stored release moved on from stage {} it was decided on to stage {} ({}): a stage that already left is not rolled back again",
                decided_on.stage, release.stage, release.config.environment
            )
        } else {
            return None;
        };
        Some(Settled::Overtaken(why))
    }
}

/// A gate opened on a store: the state to start from.
pub(super) struct Opened {
    pub(super) link: StoreLink,
    pub(super) config: PromotionConfig,
    /// The stored stage: the gate's stage numbers go on from it.
    pub(super) stage: StageId,
    pub(super) history: Vec<RollbackEvent>,
    pub(super) difference: Option<String>,
}

/// Opens the store `config` names and returns the state to start from: the stored one when
/// the store holds one for this gate (the static config then only supplies the store key), or
/// `config`, written as the first state; `opened` (the gate's clock's wall time) dates its
/// instance id. `None` without a `store` key.
pub(super) fn open(config: &PromotionConfig, opened: SystemTime) -> Result<Option<Opened>, Error> {
    let Some(store_config) = &config.store else {
        return Ok(None);
    };
    let store = store::open(store_config, &config.gate)?;
    for _ in 0..3 {
        if let Some(state) = store.load()? {
            let stored = with_store_key(state.release.config.clone(), store_config);
            let difference = difference(config, &stored);
            if let Some(difference) = &difference {
                tracing::warn!(
                    gate = %config.gate,
                    store = store.location(),
                    "promotion.store the stored state wins over the static config: {difference}"
                );
            }
            let history = events(store.as_ref(), &state.history)?
                .into_iter()
                .map(|(_, event)| event)
                .collect();
            let known = guard_of(&state.release);
            return Ok(Some(Opened {
                link: StoreLink::new(store, store_config, known, opened),
                config: stored,
                stage: StageId(known.stage.max(1)),
                history,
                difference,
            }));
        }
        let first = StoredWrite::new(Guard::EMPTY, 1, config, None);
        if store.commit(&first)? == Commit::Written {
            let known = guard_of(&first.release);
            return Ok(Some(Opened {
                link: StoreLink::new(store, store_config, known, opened),
                config: config.clone(),
                stage: StageId(1),
                history: Vec::new(),
                difference: None,
            }));
        }
        // Another process created the state first: read it.
    }
    Err(conflict(
        store.location(),
        "the stored state kept changing while the gate opened",
    )
    .into())
}

impl StoreLink {
    fn new(
        store: Arc<dyn StateStore>,
        config: &StoreConfig,
        known: Guard,
        opened: SystemTime,
    ) -> Self {
        Self {
            store,
            config: config.clone(),
            known,
            pending: None,
            wake: None,
            down: false,
            instance: store::instance_id(opened),
            ttl: store::time_to_live(config),
        }
    }

    /// Where the store is.
    pub(super) fn location(&self) -> &str {
        self.store.location()
    }

    /// Whether `config` keeps the store the gate was opened with, `link`'s (`None`: none): a
    /// running gate can neither move its state nor take a store it was not opened with.
    pub(super) fn check_same_store(
        link: Option<&Self>,
        config: &PromotionConfig,
    ) -> Result<(), Error> {
        let opened = link.map(|link| &link.config);
        if config.store.as_ref() != opened {
            let reason = if opened.is_some() {
                "the store the gate was opened with: a running gate cannot move its state"
            } else {
                "none, as the gate was opened without a store: a running gate cannot take one \
                 (open a new gate with it)"
            };
            return Err(crate::ConfigError::new(
                "store",
                serde_json::to_string(&config.store).unwrap_or_default(),
                reason,
            )
            .into());
        }
        Ok(())
    }

    /// Commits a write of `config` (a new stage when `new_stage`) with `event`, as
    /// `durability` says. `Ok` means the caller may publish.
    fn write(
        &mut self,
        config: &PromotionConfig,
        new_stage: bool,
        event: Option<&RollbackEvent>,
        durability: Durability,
    ) -> Result<(), Error> {
        if durability == Durability::Deferred {
            self.defer(event);
            return Ok(());
        }
        // Settled by `Shared::commit` first; still waiting only if it could not be written.
        if self.pending.is_some() {
            return Err(StoreError::new(
                self.store.location(),
                StoreProblem::Unavailable,
                WAITING_ROLLBACK,
            )
            .into());
        }
        let stage = self.known.stage + u64::from(new_stage);
        let write = StoredWrite::new(self.known, stage, config, event);
        match self.store.commit(&write) {
            Ok(Commit::Written) => {
                self.known = guard_of(&write.release);
                self.came_back();
                Ok(())
            }
            Ok(Commit::Conflict { stored_version }) => Err(conflict(
                self.store.location(),
                format!(
                    "another process wrote first (stored version {stored_version}, this write was decided on {})",
                    self.known.version
                ),
            )
            .into()),
            Err(error) => {
                self.went_down(&error);
                if durability == Durability::BestEffort {
                    self.defer(event);
                    Ok(())
                } else {
                    Err(error.into())
                }
            }
        }
    }

    /// Lets the sync thread be woken through `wake` (to write a pending rollback at once) and
    /// starts the store's watch, if it has one, waking it at each change until `stop` is set.
    pub(super) fn follow(
        &mut self,
        wake: &mpsc::Sender<Signal>,
        stop: Arc<AtomicBool>,
    ) -> Option<JoinHandle<()>> {
        self.wake = Some(wake.clone());
        let wake = wake.clone();
        self.store.watch(
            Box::new(move || {
                let _ = wake.send(Signal::Wake);
            }),
            stop,
        )
    }

    /// Whether a rollback made here waits to be written to the store.
    pub(super) fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    fn defer(&mut self, event: Option<&RollbackEvent>) {
        self.pending = Some(Pending {
            event: event.cloned(),
            decided_on: self.known,
        });
        if let Some(wake) = &self.wake {
            let _ = wake.send(Signal::Wake);
        }
    }

    fn went_down(&mut self, error: &StoreError) {
        if !self.down {
            tracing::error!(%error, "promotion.store unavailable: routing goes on from the last snapshot, promotions are refused");
            self.down = true;
        }
    }

    fn came_back(&mut self) {
        if self.down {
            tracing::info!(
                store = self.store.location(),
                "promotion.store available again"
            );
            self.down = false;
        }
    }
}

/// What the store says has changed since a known state, to apply under the writer lock.
struct CatchUp {
    /// The state the catch-up was computed from; applied only if it is still the known one.
    from: Guard,
    release: StoredRelease,
    /// Events read from the store, to add to the history, oldest first, each with the version
    /// of the write that stored it.
    events: Vec<(u64, RollbackEvent)>,
    /// The pending rollback this catch-up wrote, to follow `events` in the history: this
    /// process made it, and counted it then.
    own: Option<RollbackEvent>,
    /// The version of the event among `events` that is the pending rollback, found stored
    /// already: this process made it, and counted it then.
    counted: Option<u64>,
    /// Whether `events` (and `own`) are the whole history (they replace the local one).
    whole_history: bool,
    /// Whether the pending rollback is now settled (written, or overtaken by another write).
    settles_pending: bool,
    /// Whether this process started the stored stage (its pending rollback, written now or
    /// found stored; its state written to an emptied store): the gate is in it already.
    /// Otherwise a stored stage other than `from`'s is another process's, and a new stage here
    /// too, even when the local stage number is ahead of the stored one (a dropped rollback).
    started_here: bool,
}

impl CatchUp {
    /// Follows the stored `state` read after `from`: its history is the whole history when
    /// `settles_pending` (a pending rollback yields to it), else the events since `from`.
    fn following(
        store: &dyn StateStore,
        from: Guard,
        state: store::StoredState,
        settles_pending: bool,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            from,
            events: events(store, &state.history)?,
            own: None,
            counted: None,
            release: state.release,
            whole_history: settles_pending,
            settles_pending,
            started_here: false,
        })
    }

    /// The same, its events replacing the local history (they were read whole, from a store
    /// that went back).
    fn whole(mut self) -> Self {
        self.whole_history = true;
        self
    }
}

/// This process's published snapshot, read with the known state: what a store that went back
/// is given again, or what its stages are numbered above. Shared, not copied: most ticks
/// never read it.
struct Local {
    stage: u64,
    snapshot: Arc<Snapshot>,
}

impl Local {
    fn of(snapshot: Arc<Snapshot>) -> Self {
        Self {
            stage: snapshot.route.stage.get(),
            snapshot,
        }
    }
}

/// Reads what changed in the store since `from`, writing `pending` first if there is one.
/// Store I/O only: no lock held.
fn catch_up(
    store: &dyn StateStore,
    from: Guard,
    pending: Option<&Pending>,
    local: &Local,
) -> Result<Option<CatchUp>, StoreError> {
    let Some(pending) = pending else {
        return match store.changes_since(from)? {
            Since::Same => Ok(None),
            Since::Newer(state) => CatchUp::following(store, from, state, false).map(Some),
            Since::Reset(state) => went_back(store, from, state, local),
        };
    };
    for _ in 0..4 {
        let Some(state) = store.load()? else {
            // The store lost the gate's state: this process's rolled-back release is its first.
            tracing::error!(
                known = from.version,
                "promotion.store the stored state is gone (deleted or replaced): the pending rollback is written as the store's first state"
            );
            match reseed(store, from, local, pending.event.as_ref())? {
                Some(update) => return Ok(Some(update)),
                None => continue,
            }
        };
        match pending.settled_by(&state) {
            Some(Settled::Written(version)) => {
                let update = CatchUp::following(store, from, state, true)?;
                return Ok(Some(CatchUp {
                    counted: Some(version),
                    started_here: true,
                    ..update
                }));
            }
            Some(Settled::Overtaken(why)) => {
                tracing::warn!(
                    decided_on_stage = pending.decided_on.stage,
                    stored_stage = state.release.stage,
                    stored = %state.release.config.environment,
                    "promotion.store a rollback made while the store was unavailable is dropped: {why}; the gate follows the stored state"
                );
                return CatchUp::following(store, from, state, true).map(Some);
            }
            None => {}
        }
        let stored = guard_of(&state.release);
        let config = release::rolled_back(&state.release.config);
        // Above the local stage too, if the store went back below it: every process numbers
        // the stored stages alike.
        let stage = (stored.stage + 1).max(local.stage);
        let write = StoredWrite::new(stored, stage, &config, pending.event.as_ref());
        if store.commit(&write)? == Commit::Written {
            return Ok(Some(CatchUp {
                from,
                events: events(store, &state.history)?,
                own: pending.event.clone(),
                counted: None,
                release: write.release,
                whole_history: true,
                settles_pending: true,
                started_here: true,
            }));
        }
    }
    Err(conflict(
        store.location(),
        "the stored state kept changing while a rollback was written",
    ))
}

/// Follows a store that went back below the known state `from` (its state deleted, or replaced
/// by an older or another one): an empty store is given this process's state again (one
/// process wins that write; the others follow it at their next tick); a stored state is
/// adopted, its stages first numbered above the local one if they are below it (the gates of a
/// store number their stages alike, and a gate's stage never goes back). `None`: another
/// process wrote between the reads, and the next tick looks again.
fn went_back(
    store: &dyn StateStore,
    from: Guard,
    state: Option<store::StoredState>,
    local: &Local,
) -> Result<Option<CatchUp>, StoreError> {
    let stored = state.as_ref().map(|s| (s.release.version, s.release.stage));
    tracing::error!(
        known_version = from.version,
        known_stage = from.stage,
        ?stored,
        "promotion.store the store went back (its state was deleted or replaced): following it"
    );
    let Some(state) = state else {
        if let Some(update) = reseed(store, from, local, None)? {
            return Ok(Some(update));
        }
        // Another process wrote the emptied store first: follow what it wrote.
        return match store.load()? {
            Some(state) => went_back(store, from, Some(state), local),
            None => Ok(None),
        };
    };
    if state.release.stage >= local.stage {
        return CatchUp::following(store, from, state, false).map(|update| Some(update.whole()));
    }
    let write = StoredWrite::new(
        guard_of(&state.release),
        local.stage + 1,
        &state.release.config,
        None,
    );
    match store.commit(&write)? {
        Commit::Written => Ok(Some(CatchUp {
            from,
            events: events(store, &state.history)?,
            own: None,
            counted: None,
            release: write.release,
            whole_history: true,
            settles_pending: false,
            started_here: false,
        })),
        Commit::Conflict { .. } => Ok(None),
    }
}

/// Writes the local state as the first of an empty store, with `event` (a pending rollback's,
/// which it then settles), and makes the stored history the gate's (the store lost the rest).
/// `None` when another process wrote first.
fn reseed(
    store: &dyn StateStore,
    from: Guard,
    local: &Local,
    event: Option<&RollbackEvent>,
) -> Result<Option<CatchUp>, StoreError> {
    let empty = Guard::EMPTY;
    let write = StoredWrite::new(empty, local.stage, &local.snapshot.config, event);
    Ok(match store.commit(&write)? {
        // The history is what the store now holds, the event alone (if any), as every other
        // process and a restart read it.
        Commit::Written => Some(CatchUp {
            from,
            events: Vec::new(),
            own: event.cloned(),
            counted: None,
            release: write.release,
            whole_history: true,
            settles_pending: event.is_some(),
            started_here: true,
        }),
        Commit::Conflict { .. } => None,
    })
}

impl Shared {
    /// Commits a write to the store (when there is one) as `durability` says, then publishes
    /// `config` and records `event` (in the history and the count by cause) at once, under the
    /// records lock. Returns how many old events the history dropped to keep within the
    /// config's bound (logged here when `event` pushed them out). Called with the writer lock
    /// held; on error nothing changed.
    pub(super) fn commit(
        &self,
        writer: &mut WriterState,
        config: PromotionConfig,
        new_stage: bool,
        event: Option<RollbackEvent>,
        durability: Durability,
    ) -> Result<u64, Error> {
        if durability != Durability::Deferred {
            self.settle_pending(writer)?;
        }
        // Built first: a config the gate cannot publish (no flag set number left) is never
        // stored.
        let bound = config.max_rollback_history;
        let snapshot = self.prepare(writer, config, new_stage)?;
        if let Some(link) = writer.store.as_mut()
            && let Err(error) = link.write(&snapshot.config, new_stage, event.as_ref(), durability)
        {
            self.restore_live_flags(writer);
            return Err(error);
        }
        let mut records = self.lock_records();
        self.install(snapshot, ChangeOrigin::ThisGate, event.as_slice());
        let Some(event) = event else {
            return Ok(records.history.trim(bound));
        };
        records.rollbacks.count(&event);
        let dropped = records.history.push(event, bound);
        drop(records);
        super::writes::log_dropped(dropped);
        Ok(dropped)
    }

    /// Makes the published snapshot's flag sets the live ones again after a write that
    /// prepared a snapshot but was not stored: preparing made the new sets live and retired the
    /// published ones, whose numbers a later write would then reuse under the routing's feet.
    /// Re-interning sets the gate still holds needs no new number: no error is expected (one
    /// would be logged).
    fn restore_live_flags(&self, writer: &mut WriterState) {
        let current = self.current.load_full();
        let published = [current.route.stable_flags, current.route.new_version_flags];
        match self.prepare(writer, current.config.clone(), false) {
            Ok(snapshot)
                if [
                    snapshot.route.stable_flags,
                    snapshot.route.new_version_flags,
                ] == published => {}
            Ok(_) | Err(_) => tracing::error!(
                "promotion.store cannot make the published flag sets live again after a failed write"
            ),
        }
    }

    /// Writes a rollback still waiting to be written, under the writer lock (as
    /// [`catch_up_locked`](Self::catch_up_locked) does), before a write that waits for no one:
    /// an automatic rollback is published at once and left to the sync thread, so a host's
    /// write right after one finds it waiting even when the store is healthy. The host's write
    /// is then made on top of it.
    ///
    /// # Errors
    /// The store still does not answer, or refuses the rollback: the error's kind, with a
    /// message that says the rollback is not written yet. [`StoreProblem::Conflict`] when the
    /// gate, settling it, followed a stored state other than its own (the rollback was
    /// dropped, or written over another process's write): the caller's write was decided on a
    /// state that is no longer published, and is decided again.
    fn settle_pending(&self, writer: &mut WriterState) -> Result<(), Error> {
        let Some(link) = writer.store.as_mut() else {
            return Ok(());
        };
        let Some(pending) = link.pending.clone() else {
            return Ok(());
        };
        let published = self.current.load_full();
        let local = Local::of(Arc::clone(&published));
        match catch_up(link.store.as_ref(), link.known, Some(&pending), &local) {
            Ok(Some(update)) => self.apply(writer, update),
            Ok(None) => {}
            Err(error) => {
                link.went_down(&error);
                let detail = format!(
                    "{WAITING_ROLLBACK}: writing it now failed ({})",
                    error.detail()
                );
                return Err(StoreError::new(link.location(), error.problem(), detail).into());
            }
        }
        let Some(link) = writer.store.as_ref() else {
            return Ok(());
        };
        if link.pending.is_some() {
            return Err(StoreError::new(
                link.location(),
                StoreProblem::Unavailable,
                WAITING_ROLLBACK,
            )
            .into());
        }
        if !Arc::ptr_eq(&published, &self.current.load_full()) {
            return Err(conflict(
                link.location(),
                "the gate followed the stored state while it wrote its waiting rollback; the write is decided again",
            )
            .into());
        }
        Ok(())
    }

    /// Brings the gate up to the store's state, under the writer lock (a host's write that
    /// lost a race calls it before trying again).
    pub(super) fn catch_up_locked(&self, writer: &mut WriterState) -> Result<(), Error> {
        let Some(link) = writer.store.as_mut() else {
            return Ok(());
        };
        let local = Local::of(self.current.load_full());
        match catch_up(
            link.store.as_ref(),
            link.known,
            link.pending.as_ref(),
            &local,
        ) {
            Ok(Some(update)) => {
                self.apply(writer, update);
                Ok(())
            }
            Ok(None) => {
                link.came_back();
                Ok(())
            }
            Err(error) => {
                link.went_down(&error);
                Err(error.into())
            }
        }
    }

    /// One catch-up of the sync thread (each tick, before it exchanges contributions): the store
    /// I/O without the writer lock, then the result applied under it (if no write moved the gate
    /// meanwhile).
    pub(super) fn sync_once(&self) {
        if let Some(verdict) = self.handoff.take() {
            self.apply_verdict(&mut self.lock_writer(), &verdict);
        }
        let (store, from, pending, local) = {
            let writer = self.lock_writer();
            let Some(link) = writer.store.as_ref() else {
                return;
            };
            let local = Local::of(self.current.load_full());
            (
                Arc::clone(&link.store),
                link.known,
                link.pending.clone(),
                local,
            )
        };
        let result = catch_up(store.as_ref(), from, pending.as_ref(), &local);
        {
            let mut writer = self.lock_writer();
            match result {
                Ok(Some(update)) => self.apply(&mut writer, update),
                Ok(None) => {
                    if let Some(link) = writer.store.as_mut() {
                        link.came_back();
                    }
                }
                Err(error) => {
                    if let Some(link) = writer.store.as_mut() {
                        link.went_down(&error);
                    }
                }
            }
        }
    }

    /// Fleet-wide judging, at each sync tick: publishes this process's counts of the current
    /// stage, reads the other live instances' into `ledger` (the sync thread's) and leaves
    /// their total, which never falls within the stage, where evaluations add it. Judges alone
    /// (no others' counts) while a rollback waits to be written (the local stage is ahead of
    /// the stored one), and always when the store's `fleet_judging` is off. While the store
    /// cannot be reached or read, evaluations go on adding the others' counts as last read:
    /// taking them away, then back, would hide their failures for a window and then count old
    /// errors as new ones.
    pub(super) fn exchange_contributions(&self, exchange: &mut Exchange) {
        let (store, instance, ttl, stored_stage, stage, window) = {
            let writer = self.lock_writer();
            let Some(link) = writer.store.as_ref() else {
                return;
            };
            if link.pending.is_some() || !link.config.fleet_judging() {
                drop(writer);
                self.monitor.set_fleet(None);
                return;
            }
            if link.down {
                return;
            }
            // Read together under the writer lock: the local stage is the stored one's (the
            // gates of a store number their stages alike only in the store).
            let current = self.current.load();
            (
                Arc::clone(&link.store),
                link.instance.clone(),
                link.ttl,
                link.known.stage,
                current.route.stage,
                Duration::from_secs(current.config.rollback_window_seconds),
            )
        };
        let ours = self.monitor.stage_counts(stage);
        let published = store::encode(&instance, stored_stage, &ours)
            .map_err(|why| StoreError::new(store.location(), StoreProblem::Unavailable, why))
            .and_then(|contribution| store.publish(&contribution, ttl));
        if let Err(error) = published {
            tracing::warn!(%error, instance, "promotion.store cannot publish this instance's counts");
        }
        match store.contributions(stored_stage, &instance, ttl) {
            Ok(rows) => {
                let now = (self.monitor.monotonic(), self.monitor.wall());
                let (read, bad) = readable(&rows, stored_stage);
                exchange.report(bad);
                let fleet = exchange
                    .ledger
                    .update((stage, stored_stage), now, window, read);
                self.monitor.set_fleet(fleet);
            }
            Err(error) => {
                tracing::warn!(%error, "promotion.store cannot read the other instances' counts; judging with them as last read");
            }
        }
    }

    /// Applies a catch-up: the stored release becomes the gate's, its events join the
    /// history, and a snapshot is published if routing changes.
    ///
    /// The events stored after the state the catch-up started from (`from`) are counted by
    /// cause ([`rollback_counts`](crate::PromotionGateManager::rollback_counts)), but for this
    /// process's own pending rollback found stored (`counted`): every write through `from`,
    /// and that rollback, is counted already (this process's own when it made them, the
    /// others' at an earlier catch-up, those of the history the gate opened on when it opened), so
    /// each stored event counts once in every process, and every process that follows the
    /// store counts the same stored events. A pending rollback dropped here (overtaken) stays
    /// counted in this process only: its routing did roll back, but the store never held it.
    /// Events at or below `from` in a store that went back (deleted, or replaced by an older
    /// copy) are not counted again.
    fn apply(&self, writer: &mut WriterState, update: CatchUp) {
        let Some(link) = writer.store.as_mut() else {
            return;
        };
        if link.known != update.from {
            return; // a host's write moved the gate meanwhile; the next tick looks again
        }
        if link.pending.is_some() && !update.settles_pending {
            // A rollback was made (and published) during this catch-up's unlocked I/O, which
            // did not know it: applying would put the stored, not rolled-back stage back. The
            // rollback's wake-up writes it and catches up.
            return;
        }
        link.came_back();
        if update.settles_pending {
            link.pending = None;
        }
        link.known = guard_of(&update.release);
        let config = with_store_key(update.release.config, &link.config);
        // The newest release rollback among the events, for the change feed (the events
        // themselves move into the history).
        let rollback = update
            .events
            .iter()
            .map(|(_, event)| event)
            .chain(&update.own)
            .rev()
            .find(|event| event.rolled_back == RolledBack::Release)
            .cloned();
        let bound = config.max_rollback_history;
        // The history, the counts and the snapshot change together for readers.
        let mut records = self.lock_records();
        for (version, event) in &update.events {
            if *version > update.from.version && Some(*version) != update.counted {
                records.rollbacks.count(event);
            }
        }
        let history = update
            .events
            .into_iter()
            .map(|(_, event)| event)
            .chain(update.own);
        let dropped = if update.whole_history {
            records.history.replace(history, bound)
        } else {
            history
                .map(|event| records.history.push(event, bound))
                .sum()
        };
        let current = self.current.load_full();
        // The gate follows the stored stage (never going back): a stage this gate already
        // started itself (its own rollback, written later), or shows already (the same config
        // at the same number: another process's rollback of the stage this one rolled back
        // too), is not started again; another process's is a new stage here too, numbered
        // above the local one if that is ahead (a dropped rollback's: the outcomes recorded
        // while rolled back are neither judged as the followed stage's nor published as this
        // process's contribution to it).
        let stored = StageId(update.release.stage);
        let shown = stored == current.route.stage && config == current.config;
        let stage = if update.started_here || update.release.stage == update.from.stage || shown {
            current.route.stage.max(stored)
        } else {
            StageId(current.route.stage.0 + 1).max(stored)
        };
        if stage == current.route.stage && current.config == config {
            drop(records);
            super::writes::log_dropped(dropped);
            return;
        }
        let to = config.environment;
        let published = self.publish(
            writer,
            config,
            stage,
            ChangeOrigin::Store,
            rollback.as_slice(),
        );
        drop(records);
        super::writes::log_dropped(dropped);
        match published {
            Ok(()) => {
                tracing::info!(from = %current.config.environment, %to, "promotion.store applied a write from the store");
            }
            Err(error) => {
                tracing::error!(%error, "promotion.store cannot publish the stored state; routing stays on the last snapshot");
            }
        }
    }
}

/// The contributions in `rows` to the stored stage `stored_stage`, as each instance's counts
/// with when its gate opened (if its id says), and those refused ([`Exchange::report`] logs
/// them).
fn readable(
    rows: &[Result<Contribution, BadContribution>],
    stored_stage: u64,
) -> (Vec<FleetReading<'_>>, Vec<BadContribution>) {
    let mut bad = Vec::new();
    let read = rows
        .iter()
        .filter_map(|row| {
            let read = row.as_ref().map_err(Clone::clone).and_then(|contribution| {
                let instance = contribution.instance.as_str();
                store::decode(contribution, stored_stage)
                    .map(|counts| (instance, store::opened_at(instance), counts))
            });
            read.map_err(|refused| bad.push(refused)).ok()
        })
        .collect();
    (read, bad)
}

/// What the sync thread keeps from one tick's fleet-wide judging to the next.
#[derive(Default)]
pub(super) struct Exchange {
    /// The other instances' counts of the stage, as this thread last read them.
    ledger: FleetLedger,
    /// The bad contributions of the last read: each is logged when first found, not again at
    /// every tick while it stays in the store.
    bad: HashSet<BadContribution>,
}

impl Exchange {
    /// Logs the contributions of this read that are bad and were not in the last one, and
    /// keeps this read's.
    fn report(&mut self, bad: Vec<BadContribution>) {
        for refused in bad.iter().filter(|refused| !self.bad.contains(*refused)) {
            tracing::error!(
                instance = refused.instance,
                field = refused.field,
                "promotion.store skips a bad contribution (logged once while it stays): {refused}"
            );
        }
        self.bad = bad.into_iter().collect();
    }
}

fn guard_of(release: &StoredRelease) -> Guard {
    Guard {
        version: release.version,
        stage: release.stage,
    }
}

fn with_store_key(mut config: PromotionConfig, store: &StoreConfig) -> PromotionConfig {
    config.store = Some(store.clone());
    config
}

fn conflict(location: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::new(location, StoreProblem::Conflict, detail)
}

/// The `stored` events, each with the version of the write that stored it.
fn events(
    store: &dyn StateStore,
    stored: &[store::StoredEvent],
) -> Result<Vec<(u64, RollbackEvent)>, StoreError> {
    stored
        .iter()
        .map(|e| {
            e.to_event()
                .map(|event| (e.version, event))
                .map_err(|why| StoreError::new(store.location(), StoreProblem::NotOurs, why))
        })
        .collect()
}

/// The fields in which the static config differs from the stored one, as
/// `field: static X, stored Y`, or `None` when they agree.
fn difference(static_config: &PromotionConfig, stored: &PromotionConfig) -> Option<String> {
    let as_map = |config: &PromotionConfig| match serde_json::to_value(config) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (ours, theirs) = (as_map(static_config), as_map(stored));
    let differences: Vec<String> = ours
        .iter()
        .filter(|(field, value)| theirs.get(*field) != Some(*value))
        .map(|(field, value)| {
            let stored = theirs
                .get(field)
                .map_or("none".to_string(), |v| v.to_string());
            format!("{field}: static {value}, stored {stored}")
        })
        .collect();
    (!differences.is_empty()).then(|| differences.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::contribution;

    #[test]
    fn only_the_good_contributions_to_the_stage_are_read() {
        let mut bad = contribution("liar", 4, 100);
        bad.cohorts.canary.errors = 101;
        let rows = vec![
            Ok(contribution("a", 4, 100)),
            Ok(bad),
            Err(BadContribution::new(
                "mangled",
                "stable_requests",
                "not an integer",
            )),
            Ok(contribution("b", 4, 300)),
            Ok(contribution("late", 3, 1000)),
        ];
        let (read, bad) = readable(&rows, 4);
        let read: Vec<_> = read
            .into_iter()
            .map(|(instance, _, counts)| (instance, counts.canary.requests, counts.canary.errors))
            .collect();
        assert_eq!(read, [("a", 100, 10), ("b", 300, 30)]);
        let bad: Vec<_> = bad.iter().map(|b| b.instance.as_str()).collect();
        assert_eq!(bad, ["liar", "mangled", "late"]);
        assert_eq!(readable(&rows[1..3], 4).0.len(), 0, "none left");
    }

    #[test]
    fn a_bad_contribution_is_logged_once_while_it_stays() {
        use crate::telemetry::log_lines::LogLines;
        let junk = |problem: &str| BadContribution::new("junk", "stage", problem);
        let logs = LogLines::default();
        let mut exchange = Exchange::default();
        logs.during(|| {
            for _ in 0..5 {
                exchange.report(vec![junk("not an integer")]); // one tick each
            }
        });
        assert_eq!(logs.lines().len(), 1, "{:?}", logs.lines());
        // Another problem is logged; so is the first again once it had gone.
        logs.during(|| {
            exchange.report(vec![junk("not an integer"), junk("negative")]);
            exchange.report(Vec::new());
            exchange.report(vec![junk("not an integer")]);
        });
        let lines = logs.lines();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[1].contains("negative") && lines[2].contains("not an integer"));
    }

    /// A SQLite store holding the state `write_on(0, Canary{10})` made (version and stage 1),
    /// in `dir`; a rollback of that state waiting to be written; and the state of the gate that
    /// made it (rolled back, stage 2).
    fn a_rollback_waiting_on(
        dir: &crate::store::scratch::Scratch,
    ) -> (Arc<dyn StateStore>, Pending, Local) {
        use crate::store::testing::{GATE, rollback_event, write_on};
        let settings = StoreConfig::Sqlite(crate::store::SqliteStoreConfig {
            path: dir.file("gate.db"),
            sync_interval_ms: 250,
            busy_timeout_ms: 2000,
            fleet_judging: true,
        });
        let store = store::open(&settings, GATE).unwrap();
        let first = write_on(0, crate::config::canary(10.0), None);
        assert_eq!(store.commit(&first).unwrap(), Commit::Written);
        let gate = crate::PromotionGateManager::new(
            crate::store::testing::config(crate::config::canary(10.0)),
            crate::SloAdmissionController::new(crate::SloConfig::default()).unwrap(),
        )
        .unwrap();
        gate.rollback("seen offline").unwrap();
        let pending = Pending {
            event: Some(rollback_event("seen offline")),
            decided_on: Guard {
                version: 1,
                stage: 1,
            },
        };
        (store, pending, Local::of(gate.shared.current.load_full()))
    }

    #[test]
    fn a_waiting_rollback_is_dropped_when_the_stored_release_moved_on_to_another_stage() {
        use crate::store::testing::write_on;
        let dir = crate::store::scratch::Scratch::new("stale-pending");
        let (store, pending, local) = a_rollback_waiting_on(&dir);
        // Meanwhile another process graduated the canary and started the next rollout; no
        // rollback event on the way.
        for write in [
            write_on(1, Environment::Production, None),
            write_on(2, crate::config::canary(5.0), None),
        ] {
            assert_eq!(store.commit(&write).unwrap(), Commit::Written);
        }
        let from = pending.decided_on;
        let update = catch_up(store.as_ref(), from, Some(&pending), &local)
            .unwrap()
            .unwrap();
        assert!(update.settles_pending && update.whole_history);
        assert_eq!(
            (update.release.version, update.release.stage),
            (3, 3),
            "the new rollout is followed"
        );
        let stored = store.load().unwrap().unwrap();
        assert_eq!(
            stored.release.config.environment,
            crate::config::canary(5.0),
            "the new rollout is not rolled back"
        );
        assert!(stored.history.is_empty());
    }

    #[test]
    fn a_waiting_rollback_is_written_over_a_write_that_kept_its_stage_and_only_once() {
        let dir = crate::store::scratch::Scratch::new("pending-flag");
        let (store, pending, local) = a_rollback_waiting_on(&dir);
        // Another process enabled a flag: same stage, so the rollback still applies.
        let mut flagged = crate::store::testing::config(crate::config::canary(10.0));
        flagged.feature_flags.push("dark_mode".into());
        let flag_edit = StoredWrite::new(pending.decided_on, 1, &flagged, None);
        assert_eq!(store.commit(&flag_edit).unwrap(), Commit::Written);
        let update = catch_up(store.as_ref(), pending.decided_on, Some(&pending), &local)
            .unwrap()
            .unwrap();
        assert_eq!(update.release.version, 3);
        let stored = store.load().unwrap().unwrap();
        assert_eq!(stored.release.config.environment, Environment::Production);
        assert_eq!(stored.history.len(), 1);
        // Tried again (another thread held a copy of it): it is there already, not written twice.
        assert_eq!(
            pending.settled_by(&stored),
            Some(Settled::Written(3)),
            "{stored:?}"
        );
        let again = catch_up(store.as_ref(), pending.decided_on, Some(&pending), &local)
            .unwrap()
            .unwrap();
        assert_eq!(again.release.version, 3);
        assert_eq!(store.load().unwrap().unwrap(), stored);
    }

    /// A gate on the SQLite file `path` (canary 10 %, fleet judging on).
    fn gate_on(
        path: &str,
        sync_interval_ms: u64,
        busy_timeout_ms: u64,
    ) -> crate::PromotionGateManager {
        let mut config = crate::store::testing::config(crate::config::canary(10.0));
        config.store = Some(StoreConfig::Sqlite(crate::store::SqliteStoreConfig {
            path: path.to_string(),
            sync_interval_ms,
            busy_timeout_ms,
            fleet_judging: true,
        }));
        let slo = crate::SloAdmissionController::new(crate::SloConfig::default()).unwrap();
        crate::PromotionGateManager::new(config, slo).unwrap()
    }

    fn automatic_rollbacks(gate: &crate::PromotionGateManager) -> u64 {
        gate.rollback_counts()
            .iter()
            .filter(|c| c.trigger == crate::RollbackTrigger::Automatic)
            .map(|c| c.count)
            .sum()
    }

    #[test]
    fn a_rollback_the_sync_thread_stored_while_a_host_wrote_is_counted_once() {
        let dir = crate::store::scratch::Scratch::new("found-stored");
        let path = dir.file("gate.db");
        let gate = gate_on(&path, 60_000, 5_000);
        let shared = &gate.shared;
        // Another connection holds SQLite's write lock: the sync thread's write waits in it.
        let lock = rusqlite::Connection::open(&path).unwrap();
        lock.execute_batch("BEGIN IMMEDIATE").unwrap();
        // An automatic rollback as the record path makes it: published, left to the sync thread.
        let automatic = crate::RollbackTrigger::Automatic;
        let mut writer = shared.lock_writer();
        shared
            .rollback_locked(&mut writer, "burst".into(), automatic, None)
            .unwrap();
        drop(writer);
        assert_eq!(automatic_rollbacks(&gate), 1);
        // The sync thread takes the waiting rollback and waits for SQLite's lock.
        std::thread::sleep(Duration::from_millis(300));
        // A host's write (a promotion) takes the writer lock; then the sync thread's write
        // lands, and the host's write finds the rollback stored.
        let mut writer = shared.lock_writer();
        lock.execute_batch("ROLLBACK").unwrap();
        let stored = || {
            let check = rusqlite::Connection::open(&path).unwrap();
            check
                .query_row("SELECT environment FROM release", [], |row| {
                    row.get::<_, String>(0)
                })
                .unwrap()
        };
        let start = std::time::Instant::now();
        while stored() != "Production" {
            assert!(start.elapsed() < Duration::from_secs(5), "never stored");
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut next = shared.current.load().config.clone();
        next.environment = crate::config::canary(1.0);
        shared
            .commit(&mut writer, next, true, None, Durability::Required)
            .unwrap();
        drop(writer);
        let reopened = gate_on(&path, 60_000, 5_000);
        assert_eq!(automatic_rollbacks(&reopened), 1, "one rollback stored");
        assert_eq!(automatic_rollbacks(&gate), 1, "counted once");
        assert_eq!(gate.rollback_history().len(), 1);
    }
}
