//! Following the store: what changed since the known state (a pending rollback written
//! first, a store that went back followed), applied under the writer lock.

use std::sync::Arc;

use super::pending::{Pending, Settled};
use super::{conflict, events, guard_of, with_store_key};
use crate::changes::ChangeOrigin;
use crate::config::Environment;
use crate::decision::StageId;
use crate::error::Error;
use crate::history::{RollbackEvent, RolledBack};
use crate::manager::ended::EndedStage;
use crate::manager::{Shared, WriterState};
use crate::snapshot::Snapshot;
use crate::store::{
    self, Commit, Guard, RolloutOn, Since, StateStore, StoreError, StoredRelease, StoredWrite,
};
use crate::telemetry::RollbackTally;

/// What the store says has changed since a known state, to apply under the writer lock.
pub(super) struct CatchUp {
    /// The state the catch-up was computed from; applied only if it is still the known one.
    from: Guard,
    release: StoredRelease,
    /// The stored rollback counts of `release`.
    counts: RollbackTally,
    /// Events read from the store, to add to the history, oldest first, each with the version
    /// of the write that stored it.
    events: Vec<(u64, RollbackEvent)>,
    /// The pending rollback this catch-up wrote, to follow `events` in the history: this
    /// process made it, and counted it then.
    own: Option<RollbackEvent>,
    /// The version of the event among `events` that is the pending rollback, found stored
    /// already: this process made it, and counted it then.
    counted: Option<u64>,
    /// Whether the pending rollback was overtaken by the same rollback stored by another
    /// process (the same decision made first elsewhere), under the same cause: counted in
    /// the stored counts ([`Pending::counted_by`]).
    same_stored: bool,
    /// The version of the event among `events` that this process announced already as a
    /// change of its own: its pending rollback found stored, or the same rollback of the
    /// release made first by another process (see [`Settled::Overtaken`]).
    announced: Option<u64>,
    /// Whether `events` (and `own`) are the whole history (they replace the local one).
    whole_history: bool,
    /// For a store that went back (its state deleted or replaced), the version of the
    /// stored write that made the state followed: the versions of `events` restart below the
    /// known one and tell nothing of which events are new, and the one rollback announced is
    /// that write's own (the state followed is a rollback's), never an older one of the
    /// history read again, which a backup may hold.
    went_back: Option<u64>,
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
    /// `known`: the counts of `from`, when the state's history holds only the events since.
    fn following(
        store: &dyn StateStore,
        from: Guard,
        known: Option<&RollbackTally>,
        state: store::StoredState,
        settles_pending: bool,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            from,
            counts: counts(store, &state, known.map(|counted| (from.version, counted)))?,
            events: events(store, &state.history)?,
            own: None,
            counted: None,
            same_stored: false,
            announced: None,
            release: state.release,
            whole_history: settles_pending,
            went_back: None,
            settles_pending,
            started_here: false,
        })
    }

    /// The same, its events replacing the local history (they were read whole, from a store
    /// that went back to the state the write of `version` made).
    fn went_back(mut self, version: u64) -> Self {
        self.whole_history = true;
        self.went_back = Some(version);
        self
    }
}

/// This process's published snapshot, read with the known state: what a store that went back
/// is given again, or what its stages are numbered above. Shared, not copied: most ticks
/// never read it.
pub(super) struct Local {
    stage: u64,
    snapshot: Arc<Snapshot>,
    /// The rollback counts of the stored state the gate knows, which a store that lost its
    /// state is given again.
    counted: RollbackTally,
}

impl Local {
    pub(super) fn of(snapshot: Arc<Snapshot>, counted: &RollbackTally) -> Self {
        Self {
            stage: snapshot.route.stage.get(),
            snapshot,
            counted: counted.clone(),
        }
    }
}

/// The rollback counts of a stored `state`, or why they are not counts this build reads.
/// `known`: see [`StoredState::rollback_counts`](store::StoredState::rollback_counts).
fn counts(
    store: &dyn StateStore,
    state: &store::StoredState,
    known: Option<(u64, &RollbackTally)>,
) -> Result<RollbackTally, StoreError> {
    state
        .rollback_counts(known)
        .map_err(|why| StoreError::new(store.location(), store::StoreProblem::NotOurs, why))
}

/// Reads what changed in the store since `from`, writing `pending` first if there is one.
/// Store I/O only: no lock held.
pub(super) fn catch_up(
    store: &dyn StateStore,
    from: Guard,
    pending: Option<&Pending>,
    local: &Local,
) -> Result<Option<CatchUp>, StoreError> {
    let Some(pending) = pending else {
        return match store.changes_since(from)? {
            Since::Same => Ok(None),
            Since::Newer(state) => {
                CatchUp::following(store, from, Some(&local.counted), state, false).map(Some)
            }
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
            // Marked before it is written: a host's write that reads the store before this
            // one hears back finds the mark already (the sync thread writes without the lock).
            pending.reseeding();
            match reseed(store, from, local, pending.event.as_ref())? {
                Some(update) => {
                    pending.reseeded(guard_of(&update.release));
                    return Ok(Some(update));
                }
                None => continue,
            }
        };
        match pending.settled_by(&state) {
            Some(Settled::Written(version)) => {
                let update = CatchUp::following(store, from, None, state, true)?;
                return Ok(Some(CatchUp {
                    counted: Some(version),
                    announced: Some(version),
                    started_here: true,
                    ..update
                }));
            }
            Some(Settled::Overtaken { why, same_rollback }) => {
                // An automatic rollback is always written by the sync thread, after it was
                // published; a manual one only when the store did not answer.
                if same_rollback.is_some() {
                    tracing::info!(
                        decided_on_stage = pending.decided_on.stage,
                        stored_stage = state.release.stage,
                        stored = %state.release.config.environment,
                        "promotion.store this gate's rollback is not written: another process rolled the release back first; {why}; the gate follows the stored state"
                    );
                } else {
                    tracing::warn!(
                        decided_on_stage = pending.decided_on.stage,
                        stored_stage = state.release.stage,
                        stored = %state.release.config.environment,
                        "promotion.store a rollback not yet written is dropped: {why}; the gate follows the stored state"
                    );
                }
                // The same decision stored by another process counts there: not here too.
                let same_stored =
                    same_rollback.is_some_and(|version| pending.counted_by(&state, version));
                // This process announced its own rollback of the release as it made it.
                let announced_here = pending
                    .event
                    .as_ref()
                    .is_some_and(|event| event.rolled_back == RolledBack::Release);
                let update = CatchUp::following(store, from, None, state, true)?;
                return Ok(Some(CatchUp {
                    same_stored,
                    announced: same_rollback.filter(|_| announced_here),
                    ..update
                }));
            }
            None => {}
        }
        let stored = guard_of(&state.release);
        let config = pending.config_over(&state.release);
        // Above the local stage too, if the store went back below it: every process numbers
        // the stored stages alike.
        let stage = (stored.stage + 1).max(local.stage);
        let write = StoredWrite::new(
            stored,
            RolloutOn::of(&state.release),
            &counts(store, &state, None)?,
            stage,
            &config,
            pending.event.as_ref(),
        );
        if let Commit::Written { epoch } = store.commit(&write)? {
            return Ok(Some(CatchUp {
                from,
                counts: write.counts,
                events: events(store, &state.history)?,
                own: pending.event.clone(),
                counted: None,
                same_stored: false,
                announced: None,
                release: write.release.in_epoch(epoch),
                whole_history: true,
                went_back: None,
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

/// Follows a store whose state [`changes_since`](StateStore::changes_since) answered as
/// [`Since::Reset`]: one that went back ([`went_below`]), or a SQLite file replaced on disk by
/// one at the very version and stage known (a copy of it, or another state numbered alike).
/// There nothing went back, and there is nothing to number above the local stage: the state is
/// followed as read (its history the gate's), in a new stage here unless it is the state the
/// gate shows ([`Shared::apply`]); no rollback is announced, none being newer than the known
/// state.
fn went_back(
    store: &dyn StateStore,
    from: Guard,
    state: Option<store::StoredState>,
    local: &Local,
) -> Result<Option<CatchUp>, StoreError> {
    let state = match state {
        Some(state) if another_file_at(from, &state.release) => state,
        state => return went_below(store, from, state, local),
    };
    tracing::warn!(
        version = from.version,
        stage = from.stage,
        stored = %state.release.config.environment,
        "promotion.store the file was replaced on disk by one at the same version and stage: following its state (a new stage here unless it is the state the gate shows)"
    );
    CatchUp::following(store, from, None, state, false).map(|update| {
        Some(CatchUp {
            whole_history: true,
            ..update
        })
    })
}

/// Follows a store that went back below the known state `from` (its state deleted, or replaced
/// by an older or another one): an empty store is given this process's state again (one
/// process wins that write; the others follow it at their next tick); a stored state is
/// adopted, its stages first numbered above the local one if they are below it (the gates of a
/// store number their stages alike, and a gate's stage never goes back). `None`: another
/// process wrote between the reads, and the next tick looks again.
fn went_below(
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
    let version = state.release.version;
    if state.release.stage >= local.stage {
        return CatchUp::following(store, from, None, state, false)
            .map(|update| Some(update.went_back(version)));
    }
    let write = StoredWrite::new(
        guard_of(&state.release),
        RolloutOn::of(&state.release),
        &counts(store, &state, None)?,
        local.stage + 1,
        &state.release.config,
        None,
    );
    match store.commit(&write)? {
        Commit::Written { epoch } => Ok(Some(CatchUp {
            from,
            counts: write.counts,
            events: events(store, &state.history)?,
            own: None,
            counted: None,
            same_stored: false,
            announced: None,
            release: write.release.in_epoch(epoch),
            whole_history: true,
            went_back: Some(version),
            settles_pending: false,
            started_here: false,
        })),
        Commit::Conflict { .. } => Ok(None),
    }
}

/// Whether `release` was read from another file (another [`Guard::epoch`]) than the state
/// `known`, at its very version and stage: the file was replaced on disk, and its numbers tell
/// nothing of whether the state is the one known.
fn another_file_at(known: Guard, release: &StoredRelease) -> bool {
    known.of_another_file(release.epoch)
        && (release.version, release.stage) == (known.version, known.stage)
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
    let write = StoredWrite::new(
        empty,
        RolloutOn::new(None, &local.snapshot.config),
        &local.counted,
        local.stage,
        &local.snapshot.config,
        event,
    );
    Ok(match store.commit(&write)? {
        // The history is what the store now holds, the event alone (if any), as every other
        // process and a restart read it; the counts go on from the local ones.
        Commit::Written { epoch } => Some(CatchUp {
            from,
            counts: write.counts,
            events: Vec::new(),
            own: event.cloned(),
            counted: None,
            same_stored: false,
            announced: None,
            // Written in the file the store has open, maybe another than the one read.
            release: write.release.in_epoch(epoch),
            whole_history: true,
            // The store's history is the event alone, this process's own: nothing to announce.
            went_back: None,
            settles_pending: event.is_some(),
            started_here: true,
        }),
        Commit::Conflict { .. } => None,
    })
}

impl Shared {
    /// Brings the gate up to the store's state, under the writer lock (a host's write that
    /// lost a race calls it before trying again).
    pub(in crate::manager) fn catch_up_locked(
        &self,
        writer: &mut WriterState,
    ) -> Result<(), Error> {
        let Some(link) = writer.store.as_mut() else {
            return Ok(());
        };
        let local = Local::of(self.current.load_full(), &link.counted);
        match catch_up(
            link.store.as_ref(),
            link.known,
            link.pending.as_ref(),
            &local,
        ) {
            Ok(Some(update)) => self.apply(writer, update),
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
    /// I/O without the writer lock ([`sync_read`](Self::sync_read)), then the result applied
    /// under it ([`sync_apply`](Self::sync_apply): if no write moved the gate meanwhile).
    pub(in crate::manager) fn sync_once(&self) {
        if let Some(read) = self.sync_read() {
            self.sync_apply(read);
        }
    }

    /// The sync thread's look at the store: what the writer lock guards is taken under it (a
    /// verdict handed off is applied first), then the store is read, and a pending rollback
    /// written, without it; a host's write may come in between. `None` without a store.
    pub(super) fn sync_read(&self) -> Option<Result<Option<CatchUp>, StoreError>> {
        let (store, from, pending, local) = {
            let mut writer = self.lock_writer();
            // Taken under the lock, not before it: a promotion holding the lock still finds
            // it, and makes it instead of promoting (see `Shared::commit`).
            if let Some(verdict) = self.handoff.take() {
                self.apply_verdict(&mut writer, &verdict);
            }
            // What the routing threads let go of since the last write is freed here, off
            // their path, even while no write comes.
            writer.sweep_retired();
            let link = writer.store.as_ref()?;
            let local = Local::of(self.current.load_full(), &link.counted);
            (
                Arc::clone(&link.store),
                link.known,
                link.pending.clone(),
                local,
            )
        };
        Some(catch_up(store.as_ref(), from, pending.as_ref(), &local))
    }

    /// Applies what [`sync_read`](Self::sync_read) found, under the writer lock: dropped when
    /// a write moved the gate meanwhile ([`apply`](Self::apply)), as the store it read may
    /// since hold that write.
    pub(super) fn sync_apply(&self, read: Result<Option<CatchUp>, StoreError>) {
        let mut writer = self.lock_writer();
        match read {
            // Logged by `apply`; the next tick tries again.
            Ok(Some(update)) => drop(self.apply(&mut writer, update)),
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

    /// Applies a catch-up: the stored release becomes the gate's, its events join the
    /// history, and a snapshot is published if routing changes.
    ///
    /// The stored state's rollback counts become the gate's
    /// ([`rollback_counts`](crate::PromotionGateManager::rollback_counts)), so every process
    /// that follows the store shows the same counts. This process's pending rollback, counted
    /// here when it was made, is counted in them once written (or found stored: `own`,
    /// `counted`), or once the same rollback made first by another process is, under the same
    /// cause (`same_stored`); one dropped for another reason (the stored release moved on), or
    /// overtaken by the same rollback under another cause, stays counted in this process only:
    /// its routing did roll back, but the store never held it. Stored counts that
    /// went back (a store replaced by an older copy, or made afresh) are shown no lower than
    /// the gate showed before ([`RollbackCounts`](crate::telemetry::RollbackCounts)).
    pub(super) fn apply(&self, writer: &mut WriterState, update: CatchUp) -> Result<(), Error> {
        let Some(link) = writer.store.as_ref() else {
            return Ok(());
        };
        if link.known != update.from {
            return Ok(()); // a host's write moved the gate meanwhile; the next tick looks again
        }
        if link.pending.is_some() && !update.settles_pending {
            // A rollback was made (and published) during this catch-up's unlocked I/O, which
            // did not know it: applying would put the stored, not rolled-back stage back. The
            // rollback's wake-up writes it and catches up.
            return Ok(());
        }
        let stored_guard = guard_of(&update.release);
        let config = with_store_key(update.release.config.clone(), &link.config);
        let current = self.current.load_full();
        // The gate follows the stored stage (never going back): a stage this gate already
        // started itself (its own rollback, written later), or shows already (the same config
        // at the same number: another process's rollback of the stage this one rolled back
        // too), is not started again; another process's is a new stage here too, numbered
        // above the local one if that is ahead (a dropped rollback's: the outcomes recorded
        // while rolled back are neither judged as the followed stage's nor published as this
        // process's contribution to it).
        //
        // A state read from another file (the file replaced on disk), at whatever version, or
        // from a store that went back (its writes numbered afresh: another process's first
        // state in the rows deleted, say) is the stage known only if it is the state shown: its
        // stage number tells nothing of the known one's, and the outcomes recorded under
        // another state are no evidence of it.
        let stored = StageId(update.release.stage);
        let shown = stored == current.route.stage && config == current.config;
        let numbered_apart =
            update.from.of_another_file(update.release.epoch) || update.went_back.is_some();
        let same_number = update.release.stage == update.from.stage;
        let same_stage = same_number && (!numbered_apart || config == current.config);
        let kept = update.started_here || same_stage || shown;
        if numbered_apart && same_number && !kept {
            tracing::warn!(
                stage = update.release.stage,
                shown = %current.config.environment,
                stored = %update.release.config.environment,
                "promotion.store the state followed (of a replaced file, or of a store that went back) is another one at the stage number known: a new stage starts here, the outcomes recorded before are no evidence of it"
            );
        }
        let stage = if kept {
            current.route.stage.max(stored)
        } else {
            StageId(current.route.stage.0 + 1).max(stored)
        };
        let bound = config.max_rollback_history;
        let to = config.environment;
        // Read before anything changes (preparing makes the new flag sets live): a host's clock
        // that panics, on the sync thread or in a host's write catching up, leaves the gate as
        // it was, and the next catch-up applies the write.
        let now = self.monitor.now();
        // Built before anything changes: a stored state the gate cannot publish (no flag set
        // number or flag name left) changes nothing here, not the known state, the history or
        // the counts, so this gate's writes stay refused as decided on an older state (they
        // would overwrite the stored one) and the next catch-up tries again.
        let snapshot = if stage == current.route.stage && current.config == config {
            None
        } else {
            match self.prepare_at(writer, config, stage) {
                Ok(snapshot) => Some(snapshot),
                Err(error) => {
                    if let Some(link) = writer.store.as_mut()
                        && link.unpublishable.replace(stored_guard.version)
                            != Some(stored_guard.version)
                    {
                        tracing::error!(%error, version = stored_guard.version, "promotion.store cannot publish the stored state; routing stays on the last snapshot and the gate does not follow the store (logged once for this stored version)");
                    }
                    return Err(error);
                }
            }
        };
        // A pending rollback written now, or found stored: counted here until now, counted in
        // the stored counts from now on.
        let mut now_stored = None;
        if let Some(link) = writer.store.as_mut() {
            link.came_back();
            link.unpublishable = None;
            if update.settles_pending {
                let pending = link.pending.take();
                if update.own.is_some() || update.counted.is_some() || update.same_stored {
                    now_stored = pending.and_then(|pending| pending.event);
                }
            }
            link.known = stored_guard;
            link.known_config = update.release.config.clone();
            link.known_rollout = update.release.known_rollout();
            link.counted = update.counts.clone();
        }
        // The newest release rollback this process did not know, for the change feed (the
        // events themselves move into the history): one stored after the state it knew (a
        // catch-up that reads the whole history reads the older ones again), neither its own
        // (`own`, or found stored) nor the same one made first elsewhere, announced as this
        // process made them. A store that went back numbers its writes afresh, below the
        // state known: there, the rollback announced is the one that made the state followed
        // (another process's, in the store it emptied), never an older one of the history
        // read again (a backup's, which the gate may have known; no clock compared).
        let rollback = update
            .events
            .iter()
            .filter(|(version, _)| match update.went_back {
                Some(made_it) => *version == made_it,
                None => *version > update.from.version && Some(*version) != update.announced,
            })
            .map(|(_, event)| event)
            .rev()
            .find(|event| event.rolled_back == RolledBack::Release)
            .cloned();
        // Another process's promotion to Production that started the stored stage right after
        // the one the gate showed (not a rollback) ends the gate's stage as a write of its own
        // would: remembered likewise (made before the records lock is taken, it copies the
        // judged config), so that a verdict of the ended stage, this process's judgement of
        // the fleet's evidence, is made over it (`ended`), as a verdict decided before this
        // process followed it is written over it (`Pending::promoted_in`). Another process's
        // stage in Canary or Staging (a ramp, a swap of the split or salt) has its own judge: a
        // verdict of the stage before is dropped, whether it came before or after following
        // (a flag turned on is written over only by a rollback waiting when it is followed).
        let new_stage = snapshot
            .as_ref()
            .filter(|snapshot| snapshot.route.stage != current.route.stage)
            .map(|snapshot| (snapshot.route.stage, snapshot.route.generation));
        let directly = !update.whole_history
            && !update.started_here
            && rollback.is_none()
            && update.release.config.environment == Environment::Production
            && update.release.stage == update.from.stage.saturating_add(1);
        let ended = new_stage
            .filter(|_| directly)
            .and_then(|published| EndedStage::new(&current, published));
        // The history, the counts and the snapshot change together for readers.
        let mut records = self.lock_records();
        records.rollbacks.stored(update.counts);
        if let Some(event) = &now_stored {
            records.rollbacks.now_stored(event);
        }
        // The pending rollback found stored is this process's own event, with the judge's
        // evidence its stored copy lacks.
        let own_found = update.counted.zip(now_stored.clone());
        let history = update
            .events
            .into_iter()
            .map(|(version, event)| match &own_found {
                Some((found, own)) if *found == version => own.clone(),
                _ => event,
            })
            .chain(update.own);
        let dropped = if update.whole_history {
            records.history.replace(history, bound)
        } else {
            history
                .map(|event| records.history.push(event, bound))
                .sum()
        };
        let published = snapshot.is_some();
        if let Some(snapshot) = snapshot {
            self.install(
                writer,
                snapshot,
                ChangeOrigin::Store,
                rollback.as_slice(),
                now,
            );
        }
        if new_stage.is_some() {
            // A followed write in the same stage keeps what the last stage-starting write
            // ended, as a local one does.
            writer.ended = ended;
        }
        drop(records);
        crate::manager::writes::log_dropped(dropped);
        if published {
            tracing::info!(from = %current.config.environment, %to, "promotion.store applied a write from the store");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Environment;
    use crate::store::StoreConfig;

    /// A SQLite store holding the state `write_on(0, Canary{10})` made (version and stage 1),
    /// in `dir`; a rollback of that state waiting to be written; and the state of the gate that
    /// made it (rolled back, stage 2).
    fn a_rollback_waiting_on(
        dir: &crate::store::scratch::Scratch,
    ) -> (Arc<dyn StateStore>, Pending, Local) {
        use crate::store::testing::{rollback_event, write_on};
        let store = sqlite_in(dir, "gate.db");
        let first = write_on(0, crate::config::canary(10.0), None);
        assert_eq!(store.commit(&first).unwrap(), Commit::Written { epoch: 0 });
        let gate = crate::PromotionGateManager::new(
            crate::store::testing::config(crate::config::canary(10.0)),
            crate::SloAdmissionController::new(crate::SloConfig::default()).unwrap(),
        )
        .unwrap();
        gate.rollback("seen offline").unwrap();
        // The event of that rollback, of Canary{10}.
        let mut event = rollback_event("seen offline");
        event.environment = crate::config::canary(10.0);
        let pending = Pending {
            event: Some(event),
            reseeded: Default::default(),
            decided_on: Guard {
                version: 1,
                stage: 1,
                epoch: 0,
            },
            decided_config: crate::store::testing::config(crate::config::canary(10.0)),
            decided_rollout: first.release.rollout(),
            config: gate.config(),
        };
        (
            store,
            pending,
            Local::of(gate.shared.current.load_full(), &Default::default()),
        )
    }

    /// The SQLite store of the file `name` in `dir`.
    fn sqlite_in(dir: &crate::store::scratch::Scratch, name: &str) -> Arc<dyn StateStore> {
        let settings = StoreConfig::Sqlite(crate::store::SqliteStoreConfig {
            path: dir.file(name),
            sync_interval_ms: 250,
            busy_timeout_ms: 2000,
            fleet_judging: true,
        });
        store::open(&settings, crate::store::testing::GATE).unwrap()
    }

    #[test]
    fn a_copy_of_the_known_state_moved_over_the_file_is_followed_and_nothing_written() {
        use crate::store::scratch::{backup, move_over};
        use crate::store::testing::write_on;
        let dir = crate::store::scratch::Scratch::new("replaced-by-a-copy");
        let (path, copy) = (dir.file("gate.db"), dir.file("copy.db"));
        let store = sqlite_in(&dir, "gate.db");
        let first = write_on(0, crate::config::canary(10.0), None);
        assert_eq!(store.commit(&first).unwrap(), Commit::Written { epoch: 0 });
        backup(&path, &copy);
        move_over(&copy, &path);
        // The gate's stage is ahead of the stored one (a dropped rollback's, say): a store
        // that went back below it would be written again numbered above it; a copy of the
        // state known is not one.
        let gate = crate::PromotionGateManager::new(
            crate::store::testing::config(crate::config::canary(10.0)),
            crate::SloAdmissionController::new(crate::SloConfig::default()).unwrap(),
        )
        .unwrap();
        let local = Local {
            stage: 3,
            snapshot: gate.shared.current.load_full(),
            counted: RollbackTally::default(),
        };
        let known = Guard {
            version: 1,
            stage: 1,
            epoch: 0,
        };
        let update = catch_up(store.as_ref(), known, None, &local)
            .unwrap()
            .unwrap();
        let followed = &update.release;
        assert_eq!(
            (followed.version, followed.stage, followed.epoch),
            (1, 1, 1)
        );
        assert_eq!(followed.config, first.release.config);
        assert_eq!(update.went_back, None, "no rollback to announce");
        assert_eq!(store.load().unwrap().unwrap().release.version, 1);
    }

    /// Deletes the rows of the SQLite file in `dir` in place (the file, and its epoch, stay)
    /// and writes the emptied store's first state with `pending`'s event, as the sync
    /// thread's catch-up does: the state then stored.
    fn reseeded_in_place(
        dir: &crate::store::scratch::Scratch,
        store: &dyn StateStore,
        pending: &Pending,
        local: &Local,
    ) -> store::StoredState {
        rusqlite::Connection::open(dir.file("gate.db"))
            .unwrap()
            .execute_batch("DELETE FROM history; DELETE FROM release;")
            .unwrap();
        let first = reseed(store, pending.decided_on, local, pending.event.as_ref());
        assert_eq!(first.unwrap().unwrap().release.version, 1);
        store.load().unwrap().unwrap()
    }

    #[test]
    fn a_first_state_write_not_yet_heard_back_from_settles_its_rollback_there_alone() {
        let dir = crate::store::scratch::Scratch::new("pending-reseed-unanswered");
        let (store, pending, local) = a_rollback_waiting_on(&dir);
        // The rows are deleted in place (the file, and its epoch, stay); the sync thread
        // writes the emptied store's first state with the rollback's event, and a host's write
        // reads the store before the sync thread hears back: the mark made before the write
        // settles the rollback at version 1, not written again.
        pending.reseeding();
        let state = reseeded_in_place(&dir, store.as_ref(), &pending, &local);
        // The same event at version 1 settles no other rollback: there it is an older one
        // made at the same wall time, whether the gate knows it or not.
        let another = Pending {
            reseeded: Default::default(),
            ..pending.clone()
        };
        assert_eq!(another.settled_by(&state), None);
        let update = catch_up(store.as_ref(), pending.decided_on, Some(&pending), &local);
        assert_eq!(update.unwrap().unwrap().counted, Some(1));
        assert_eq!(store.load().unwrap().unwrap().history.len(), 1);
    }

    #[test]
    fn an_old_files_first_event_read_before_a_new_files_first_state_settles_nothing() {
        let dir = crate::store::scratch::Scratch::new("pending-reseed-new-file");
        let (store, mut pending, local) = a_rollback_waiting_on(&dir);
        // With a clock that repeats wall times, an older rollback with the very same event was
        // this file's first state (version 1, epoch 0), and this rollback is decided on it.
        let read = reseeded_in_place(&dir, store.as_ref(), &pending, &local);
        pending.decided_on = guard_of(&read.release);
        // A host's write reads that state; the file is then replaced by an empty one, and the
        // sync thread writes this rollback as the new file's first state (epoch 1) before the
        // host's write looks at what it read: the old file's event at version 1 is the older
        // rollback, and settles nothing (the rollback is written over that state, a conflict
        // there, then found in the new file).
        let stage = read.release.stage;
        pending.reseeding();
        pending.reseeded(Guard {
            version: 1,
            stage,
            epoch: 1,
        });
        assert_eq!(pending.settled_by(&read), None);
        // While the first-state write's answer is not known, an event at version 1 of any
        // file may be its own.
        let tried = Pending {
            reseeded: Default::default(),
            ..pending.clone()
        };
        tried.reseeding();
        assert_eq!(tried.settled_by(&read), Some(Settled::Written(1)));
    }

    #[test]
    fn a_waiting_rollback_is_written_over_a_store_that_went_back_to_production_at_another_stage() {
        use crate::store::testing::write_on;
        let dir = crate::store::scratch::Scratch::new("pending-went-back-production");
        let (_, mut pending, local) = a_rollback_waiting_on(&dir);
        // Decided on version and stage 3 (Canary{10}); the store was then put back (a backup
        // restored) to version and stage 1, in Production: it went back, which settles
        // nothing, and the rollback is written on top of it, not dropped.
        pending.decided_on = Guard {
            version: 3,
            stage: 3,
            epoch: 0,
        };
        let restored = sqlite_in(&dir, "restored.db");
        let backup = write_on(0, Environment::Production, None);
        let stored = written_over(restored.as_ref(), &pending, &local, &backup);
        assert_eq!(stored.release.config, pending.config);
    }

    #[test]
    fn a_waiting_rollback_overtaken_by_another_cause_stays_counted_here() {
        use crate::store::testing::{rollback_event, write_on};
        for (theirs, counted_there) in [
            (crate::RollbackTrigger::Manual, true),
            (crate::RollbackTrigger::Automatic, false),
        ] {
            let dir = crate::store::scratch::Scratch::new("overtaken-cause");
            let (store, pending, local) = a_rollback_waiting_on(&dir);
            // Another process rolled the release back first (the very next write): a manual
            // rollback as this one, or an automatic one.
            let mut event = rollback_event("automatic rollback: error_rate_max");
            event.trigger = theirs;
            let mut other = write_on(1, Environment::Production, None);
            other = StoredWrite::new(
                other.guard,
                crate::store::RolloutOn::UNKNOWN,
                &Default::default(),
                other.release.stage,
                &crate::store::testing::config(Environment::Production),
                Some(&event),
            );
            assert_eq!(store.commit(&other).unwrap(), Commit::Written { epoch: 0 });
            let update = catch_up(store.as_ref(), pending.decided_on, Some(&pending), &local)
                .unwrap()
                .unwrap();
            assert!(update.settles_pending && update.own.is_none());
            assert_eq!(update.same_stored, counted_there, "{theirs:?}");
        }
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
            assert_eq!(store.commit(&write).unwrap(), Commit::Written { epoch: 0 });
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

    /// Checks that `writes`, another process's, stored after the state `pending` was decided
    /// on, drop it: the stored release is left as the last of them wrote it.
    fn dropped_by(
        store: &dyn StateStore,
        pending: &Pending,
        local: &Local,
        writes: &[StoredWrite],
    ) {
        for write in writes {
            assert_eq!(store.commit(write).unwrap(), Commit::Written { epoch: 0 });
        }
        let state = store.load().unwrap().unwrap();
        assert!(
            matches!(pending.settled_by(&state), Some(Settled::Overtaken { .. })),
            "{state:?}"
        );
        let update = catch_up(store, pending.decided_on, Some(pending), local)
            .unwrap()
            .unwrap();
        assert!(update.settles_pending && update.own.is_none());
        let stored = store.load().unwrap().unwrap();
        let last = writes.last().map(|write| &write.release.config);
        assert_eq!(
            Some(&stored.release.config),
            last,
            "the new release is not rolled back"
        );
        assert!(stored.history.is_empty(), "{stored:?}");
    }

    #[test]
    fn a_waiting_rollback_is_dropped_when_a_new_release_started_where_it_was_decided() {
        use crate::store::testing::write_on;
        let dir = crate::store::scratch::Scratch::new("pending-new-release");
        let (store, pending, local) = a_rollback_waiting_on(&dir);
        // Another process promoted the canary, then swapped in the next release at Canary{10}
        // again: the environment rolled back, but another release.
        let writes = [
            write_on(1, Environment::Production, None),
            write_on(2, crate::config::canary(10.0), None),
        ];
        dropped_by(store.as_ref(), &pending, &local, &writes);
    }

    #[test]
    fn a_waiting_rollback_is_dropped_when_the_next_release_turned_a_flag_on_where_it_was_decided() {
        let dir = crate::store::scratch::Scratch::new("pending-next-release-flag");
        let (store, mut pending, local) = a_rollback_waiting_on(&dir);
        // Decided on release flag "new"; another process promoted the canary (graduating
        // "new"), then started the next release at Canary{10} again, with flag "v2": flags
        // turned on since, but another release.
        pending.decided_config.feature_flags = vec!["new".into()];
        let mut promoted = crate::store::testing::config(Environment::Production);
        promoted.graduated_flags = vec!["new".into()];
        let mut next = promoted.clone();
        next.environment = crate::config::canary(10.0);
        next.feature_flags = vec!["v2".into()];
        let promotion = unnumbered(pending.decided_on, 2, &promoted);
        let next_rollout = unnumbered(guard_of(&promotion.release), 3, &next);
        dropped_by(store.as_ref(), &pending, &local, &[promotion, next_rollout]);
    }

    /// Checks that `write`, another process's, stored after the state `pending` was decided
    /// on, does not settle it, and that it is written over it (one event); the stored state.
    fn written_over(
        store: &dyn StateStore,
        pending: &Pending,
        local: &Local,
        write: &StoredWrite,
    ) -> store::StoredState {
        let stored = written_over_all(store, pending, local, std::slice::from_ref(write));
        assert_eq!(stored.history.len(), 1, "{stored:?}");
        stored
    }

    /// Checks that `writes`, another process's, stored after the state `pending` was decided
    /// on, do not settle it, and that it is written over the last; the stored state.
    fn written_over_all(
        store: &dyn StateStore,
        pending: &Pending,
        local: &Local,
        writes: &[StoredWrite],
    ) -> store::StoredState {
        for write in writes {
            assert_eq!(store.commit(write).unwrap(), Commit::Written { epoch: 0 });
        }
        let state = store.load().unwrap().unwrap();
        assert_eq!(pending.settled_by(&state), None, "{state:?}");
        let update = catch_up(store, pending.decided_on, Some(pending), local)
            .unwrap()
            .unwrap();
        assert!(update.settles_pending && update.own.is_some());
        store.load().unwrap().unwrap()
    }

    /// The write on `on` at `stage` with `config`, of no known rollout (as a build before the
    /// rollout was stored writes it).
    fn unnumbered(on: Guard, stage: u64, config: &crate::PromotionConfig) -> StoredWrite {
        StoredWrite::new(
            on,
            RolloutOn::UNKNOWN,
            &Default::default(),
            stage,
            config,
            None,
        )
    }

    /// The write on `on`, another process's, that starts the stage after it with `config`.
    fn next_stage(on: &StoredWrite, config: &crate::PromotionConfig) -> StoredWrite {
        let on = guard_of(&on.release);
        unnumbered(on, on.stage + 1, config)
    }

    #[test]
    fn a_waiting_rollback_is_dropped_when_the_next_flagless_release_turned_a_flag_on() {
        use crate::store::testing::{config, write_on};
        let dir = crate::store::scratch::Scratch::new("pending-next-flagless-release");
        let (store, pending, local) = a_rollback_waiting_on(&dir);
        // Decided on a Canary{10} without release flags; another process promoted it (no flag
        // to graduate), started the next rollout at Canary{10} again, then turned "v2" on: the
        // same salt and split with a flag turned on, but three stages on, another release.
        let promotion = write_on(1, Environment::Production, None);
        let next_rollout = next_stage(&promotion, &config(crate::config::canary(10.0)));
        let mut flagged = config(crate::config::canary(10.0));
        flagged.feature_flags = vec!["v2".into()];
        let flag_on = next_stage(&next_rollout, &flagged);
        dropped_by(
            store.as_ref(),
            &pending,
            &local,
            &[promotion, next_rollout, flag_on],
        );
    }

    /// The write on `on`, another process's, at `stage` with `config`, numbering its rollout
    /// as this build does.
    fn numbered_on(on: &StoredRelease, stage: u64, config: &crate::PromotionConfig) -> StoredWrite {
        written_on(on, RolloutOn::of(on), stage, config)
    }

    /// The write on `on`, another process's, at `stage` with `config`, of the rollout `rollout`
    /// says.
    fn written_on(
        on: &StoredRelease,
        rollout: RolloutOn,
        stage: u64,
        config: &crate::PromotionConfig,
    ) -> StoredWrite {
        StoredWrite::new(
            guard_of(on),
            rollout,
            &Default::default(),
            stage,
            config,
            None,
        )
    }

    /// The state `pending` was decided on, as stored (its rollout too).
    fn decided(store: &dyn StateStore) -> StoredRelease {
        store.load().unwrap().unwrap().release
    }

    /// Over the state decided on (a Canary{10} without release flags): another process's
    /// promotion, "a" and "b" turned on in Production (no stage), then the next rollout at
    /// Canary{10} again: two flags turned on and two stages since, but another release.
    fn production_flags_then_the_next_rollout(store: &dyn StateStore) -> [StoredWrite; 4] {
        use crate::store::testing::config;
        let promotion = numbered_on(&decided(store), 2, &config(Environment::Production));
        let mut one = config(Environment::Production);
        one.feature_flags = vec!["a".into()];
        let flag_a = numbered_on(&promotion.release, 2, &one);
        let mut two = one.clone();
        two.feature_flags.push("b".into());
        let flag_b = numbered_on(&flag_a.release, 2, &two);
        let mut next = two.clone();
        next.environment = crate::config::canary(10.0);
        let next_rollout = numbered_on(&flag_b.release, 3, &next);
        [promotion, flag_a, flag_b, next_rollout]
    }

    #[test]
    fn a_waiting_rollback_is_dropped_when_flags_turned_on_in_production_reach_the_next_rollout() {
        let dir = crate::store::scratch::Scratch::new("pending-production-flags");
        let (store, pending, local) = a_rollback_waiting_on(&dir);
        let writes = production_flags_then_the_next_rollout(store.as_ref());
        assert_eq!(
            (writes[2].release.rollout(), writes[3].release.rollout()),
            (Some(1), Some(5)),
            "the next rollout is numbered by the write that started it"
        );
        dropped_by(store.as_ref(), &pending, &local, &writes);
    }

    #[test]
    fn a_waiting_rollback_is_dropped_when_the_next_rollout_started_after_a_state_of_a_build_before()
    {
        let dir = crate::store::scratch::Scratch::new("pending-older-decided");
        let (store, mut pending, local) = a_rollback_waiting_on(&dir);
        // Decided on a state whose rollout this process does not know (written by a build
        // before the rollout was stored); the writes since are this build's: the next rollout,
        // started after the state decided on, is another release whatever the stages say.
        pending.decided_rollout = None;
        let writes = production_flags_then_the_next_rollout(store.as_ref());
        dropped_by(store.as_ref(), &pending, &local, &writes);
    }

    #[test]
    fn a_waiting_rollback_is_written_over_a_flag_turned_on_in_its_rollout() {
        let dir = crate::store::scratch::Scratch::new("pending-flag-same-rollout");
        let (store, pending, local) = a_rollback_waiting_on(&dir);
        // Every writer of this build: another process turned "x" on (a stage) in the rollout
        // the rollback was decided on: the same release, written over, the rollout kept.
        let mut with_x = pending.decided_config.clone();
        with_x.feature_flags = vec!["x".into()];
        let flag = numbered_on(&decided(store.as_ref()), 2, &with_x);
        assert_eq!(flag.release.rollout(), Some(1));
        let stored = written_over(store.as_ref(), &pending, &local, &flag);
        assert_eq!(stored.release.config.environment, Environment::Production);
        assert_eq!(
            stored.release.rollout(),
            Some(1),
            "a rollback keeps the rollout"
        );
    }

    #[test]
    fn a_waiting_rollback_is_dropped_when_a_swap_put_the_next_release_where_it_was_decided() {
        let dir = crate::store::scratch::Scratch::new("pending-swapped-release");
        let (store, mut pending, local) = a_rollback_waiting_on(&dir);
        // Decided on Canary{10} with release flag "v1"; another process's operator swapped in
        // the next release at the same split and salt, flag "v2" (a stage): not the release
        // the rollback was decided on, which must not be rolled back on v1's evidence.
        pending.decided_config.feature_flags = vec!["v1".into()];
        let mut next = pending.decided_config.clone();
        next.feature_flags = vec!["v2".into()];
        let decided = decided(store.as_ref());
        let swap = written_on(&decided, RolloutOn::of(&decided).next_release(), 2, &next);
        assert_eq!(swap.release.rollout(), Some(2), "the swap starts a rollout");
        dropped_by(store.as_ref(), &pending, &local, &[swap]);
    }

    #[test]
    fn a_waiting_rollback_is_dropped_after_a_ramp_and_back_with_a_flag_turned_on() {
        use crate::store::testing::config;
        let dir = crate::store::scratch::Scratch::new("pending-ramp-and-back");
        let (store, pending, local) = a_rollback_waiting_on(&dir);
        // Decided on Canary{10}; another process ramped to 25 and back to 10 (two stages),
        // then turned "x" on (a stage): the same rollout, but the stage decided on left, as
        // it does without the flag.
        let up = numbered_on(
            &decided(store.as_ref()),
            2,
            &config(crate::config::canary(25.0)),
        );
        let down = numbered_on(&up.release, 3, &pending.decided_config);
        let mut with_x = pending.decided_config.clone();
        with_x.feature_flags = vec!["x".into()];
        let flag = numbered_on(&down.release, 4, &with_x);
        assert_eq!(flag.release.rollout(), decided(store.as_ref()).rollout());
        dropped_by(store.as_ref(), &pending, &local, &[up, down, flag]);
    }

    /// A write of another process in the rollout a rollback was decided on.
    #[derive(Clone, Copy)]
    enum Step {
        /// `enable_feature` (a stage).
        On(&'static str),
        /// `disable_feature`, a kill switch: no stage, a `flag` event.
        Kill(&'static str),
        /// A `swap_config` that turns the flag off: no stage, no event.
        SwappedOff(&'static str),
        /// A ramp to that share (a stage).
        Ramp(f64),
    }

    /// The writes `steps` make, in order, on the state decided on (stored in `store`), from
    /// its config with release flags `flags`.
    fn steps_on(store: &dyn StateStore, flags: &[&str], steps: &[Step]) -> Vec<StoredWrite> {
        steps_keeping(store, flags, steps, 100)
    }

    /// [`steps_on`], each write keeping at most `history` events.
    fn steps_keeping(
        store: &dyn StateStore,
        flags: &[&str],
        steps: &[Step],
        history: usize,
    ) -> Vec<StoredWrite> {
        let mut on = decided(store);
        let mut config = on.config.clone();
        config.feature_flags = flags.iter().map(|f| f.to_string()).collect();
        config.max_rollback_history = history;
        let mut writes = Vec::new();
        for step in steps {
            let (stage, mut event) = (on.stage, None);
            let stage = match *step {
                Step::On(flag) => {
                    config.feature_flags.push(flag.into());
                    stage + 1
                }
                Step::Kill(flag) | Step::SwappedOff(flag) => {
                    config.feature_flags.retain(|f| f != flag);
                    if let Step::Kill(_) = step {
                        event = Some(crate::history::RollbackEvent::made(
                            crate::history::Undone::Flag(flag.into()),
                            config.environment,
                            std::time::SystemTime::UNIX_EPOCH,
                        ));
                    }
                    stage
                }
                Step::Ramp(share) => {
                    config.environment = crate::config::canary(share);
                    stage + 1
                }
            };
            let write = StoredWrite::new(
                guard_of(&on),
                RolloutOn::of(&on),
                &Default::default(),
                stage,
                &config,
                event.as_ref(),
            );
            on = write.release.clone();
            writes.push(write);
        }
        writes
    }

    #[test]
    fn a_waiting_rollback_is_written_over_flags_turned_on_again_after_a_kill_switch() {
        use Step::{Kill, On, SwappedOff};
        // Decided on a Canary{10} with those release flags; another process's writes since, in
        // the same rollout, at the same salt and split: each stage a flag turned on, the same
        // release, written over. Whatever turned a flag off before (a kill switch, or a swap,
        // which stores no event), and whatever events the history kept (here 1, or 100).
        for (flags, steps, history) in [
            (&["a"][..], &[On("b"), Kill("a"), On("a")][..], 100),
            (&[], &[On("x"), Kill("x"), On("y")], 100),
            (&[], &[On("x"), Kill("x"), On("x")], 100),
            (&["x"], &[Kill("x"), On("x")], 100),
            (&[], &[On("x"), Kill("x"), On("x"), Kill("x"), On("x")], 100),
            (&["x"], &[SwappedOff("x"), On("x")], 100),
            (&["a"], &[On("b"), SwappedOff("a"), On("a")], 100),
            (&[], &[On("x"), Kill("x"), On("x"), Kill("x"), On("x")], 1),
        ] {
            let dir = crate::store::scratch::Scratch::new("pending-flag-on-again");
            let (store, mut pending, local) = a_rollback_waiting_on(&dir);
            pending.decided_config.feature_flags = flags.iter().map(|f| f.to_string()).collect();
            let writes = steps_keeping(store.as_ref(), flags, steps, history);
            let last = writes.last().unwrap().release.clone();
            assert_eq!(last.rollout(), Some(1), "the same rollout");
            let stored = written_over_all(store.as_ref(), &pending, &local, &writes);
            assert_eq!(stored.release.config.environment, Environment::Production);
            assert_eq!(stored.history.last().unwrap().rolled_back, "release");
        }
    }

    #[test]
    fn a_waiting_rollback_is_dropped_after_a_stage_no_flag_turned_on_whatever_the_kill_switches() {
        use Step::{Kill, On, Ramp, SwappedOff};
        for (flags, steps) in [
            // A ramp and back between: the stage decided on left.
            (
                &[][..],
                &[On("x"), Kill("x"), Ramp(25.0), Ramp(10.0), On("y")][..],
            ),
            // The same with a flag turned off by a swap (no event) before.
            (
                &["a"],
                &[On("b"), SwappedOff("a"), Ramp(25.0), Ramp(10.0), On("a")],
            ),
        ] {
            let dir = crate::store::scratch::Scratch::new("pending-stage-left");
            let (store, mut pending, local) = a_rollback_waiting_on(&dir);
            pending.decided_config.feature_flags = flags.iter().map(|f| f.to_string()).collect();
            let writes = steps_on(store.as_ref(), flags, steps);
            // The kill switches' events stay: only the rollback is not written.
            let kills = writes.iter().filter(|w| w.event.is_some()).count();
            for write in &writes {
                assert_eq!(store.commit(write).unwrap(), Commit::Written { epoch: 0 });
            }
            let state = store.load().unwrap().unwrap();
            assert!(
                matches!(pending.settled_by(&state), Some(Settled::Overtaken { .. })),
                "{state:?}"
            );
            let update = catch_up(store.as_ref(), pending.decided_on, Some(&pending), &local)
                .unwrap()
                .unwrap();
            assert!(update.settles_pending && update.own.is_none());
            let stored = store.load().unwrap().unwrap();
            assert_eq!(stored.release, writes.last().unwrap().release);
            assert_eq!(stored.history.len(), kills);
        }
    }

    #[test]
    fn a_waiting_rollback_is_written_over_a_swap_that_renamed_a_graduated_flag() {
        let dir = crate::store::scratch::Scratch::new("pending-renamed-graduated");
        let (store, mut pending, local) = a_rollback_waiting_on(&dir);
        // Decided on a Canary{10} with graduated flag "old"; another process swapped in a
        // config that renames it "old-v2" (a flag turned on, a stage: the same release).
        pending.decided_config.graduated_flags = vec!["old".into()];
        pending.config.graduated_flags = vec!["old".into()];
        let mut renamed = pending.decided_config.clone();
        renamed.graduated_flags = vec!["old-v2".into()];
        let swap = unnumbered(pending.decided_on, 2, &renamed);
        let stored = written_over(store.as_ref(), &pending, &local, &swap);
        assert_eq!(stored.release.config.environment, Environment::Production);
        assert_eq!(stored.release.config.graduated_flags, ["old-v2"]);
    }

    #[test]
    fn a_waiting_rollback_is_written_over_a_swap_that_graduated_its_release_flag() {
        // Decided on a Canary{10} with release flag "f"; another process swapped in a config
        // that graduates "f" (a flag the stable cohort judged gets, a stage: the same
        // release), of the rollout decided on, known with its first stage at the split
        // (`split_from`), or without it (stored by a build before it: stages counted, the
        // graduation one). The rollback is written over it, and "f", the condemned release's
        // flag, goes off with it.
        for split_from_known in [true, false] {
            let dir = crate::store::scratch::Scratch::new("pending-graduated-release-flag");
            let (store, mut pending, local) = a_rollback_waiting_on(&dir);
            pending.decided_config.feature_flags = vec!["f".into()];
            pending.config = crate::release::rolled_back(&pending.decided_config);
            let mut graduated = pending.decided_config.clone();
            graduated.feature_flags.clear();
            graduated.graduated_flags = vec!["f".into()];
            let on = decided(store.as_ref());
            let rollout = RolloutOn {
                split_from: RolloutOn::of(&on).split_from.filter(|_| split_from_known),
                ..RolloutOn::of(&on)
            };
            let swap = written_on(&on, rollout, 2, &graduated);
            let stored_rollout = (swap.release.rollout(), swap.release.split_from());
            assert_eq!(
                stored_rollout,
                (pending.decided_rollout, split_from_known.then_some(1)),
                "split_from known {split_from_known}"
            );
            let stored = written_over(store.as_ref(), &pending, &local, &swap);
            let config = &stored.release.config;
            assert_eq!(config.environment, Environment::Production);
            assert!(
                config.feature_flags.is_empty(),
                "split_from known {split_from_known}"
            );
            assert!(
                config.graduated_flags.is_empty(),
                "split_from known {split_from_known}: {config:?}"
            );
        }
    }

    #[test]
    fn a_deferred_undo_of_a_write_is_not_written_over_a_promotion_on_top_of_it() {
        let dir = crate::store::scratch::Scratch::new("pending-undo-promoted");
        let (store, mut pending, local) = a_rollback_waiting_on(&dir);
        // This process's swap to salt "reshuffled" (stored as version and stage 1), undone as
        // the judge called for the rollback of the stage before: its undo, the config before
        // it rolled back, waits. Another process promoted the swapped release meanwhile.
        pending.decided_config.salt = Some("reshuffled".into());
        let mut promoted = pending.decided_config.clone();
        promoted.environment = Environment::Production;
        let promotion = unnumbered(pending.decided_on, 2, &promoted);
        // Dropped as the stored release is in Production: not written over the promotion with
        // the undone swap's salt kept.
        dropped_by(store.as_ref(), &pending, &local, &[promotion]);
    }

    #[test]
    fn a_rollback_decided_on_a_static_config_is_written_over_another_process_promotion() {
        let dir = crate::store::scratch::Scratch::new("pending-static-promoted");
        let (store, mut pending, local) = a_rollback_waiting_on(&dir);
        // A gate that opened on an empty store decides on its static config, which names the
        // store: an ordinary rollback, not the undo of a write.
        pending.decided_config.store = Some(StoreConfig::Sqlite(crate::store::SqliteStoreConfig {
            path: dir.file("gate.db"),
            sync_interval_ms: 250,
            busy_timeout_ms: 2000,
            fleet_judging: true,
        }));
        pending.config = crate::release::rolled_back(&pending.decided_config);
        let promotion = crate::store::testing::write_on(1, Environment::Production, None);
        let stored = written_over(store.as_ref(), &pending, &local, &promotion);
        assert_eq!(stored.release.config.environment, Environment::Production);
        assert!(stored.release.config.feature_flags.is_empty());
    }

    #[test]
    fn a_waiting_rollback_is_written_over_a_stage_a_flag_turned_on_started() {
        let dir = crate::store::scratch::Scratch::new("pending-flag-stage");
        let (store, pending, local) = a_rollback_waiting_on(&dir);
        // Another process turned a flag on: a new stage of the same release.
        let mut flagged = crate::store::testing::config(crate::config::canary(10.0));
        flagged.feature_flags.push("dark_mode".into());
        let flag_on = unnumbered(pending.decided_on, 2, &flagged);
        assert_eq!(
            store.commit(&flag_on).unwrap(),
            Commit::Written { epoch: 0 }
        );
        let update = catch_up(store.as_ref(), pending.decided_on, Some(&pending), &local)
            .unwrap()
            .unwrap();
        assert!(update.settles_pending && update.own.is_some());
        let stored = store.load().unwrap().unwrap();
        assert_eq!(stored.release.config.environment, Environment::Production);
        assert!(stored.release.config.feature_flags.is_empty());
        assert_eq!(stored.history.len(), 1);
    }

    #[test]
    fn a_waiting_rollback_of_a_stored_promotion_is_written_over_a_write_in_its_stage() {
        use crate::store::testing::write_on;
        let dir = crate::store::scratch::Scratch::new("pending-over-promotion");
        let (store, mut pending, local) = a_rollback_waiting_on(&dir);
        // The promotion this process stored (version and stage 2), which the rollback won
        // over; then another process's write in Production that kept the stage.
        let promotion = write_on(1, Environment::Production, None);
        assert_eq!(
            store.commit(&promotion).unwrap(),
            Commit::Written { epoch: 0 }
        );
        pending.decided_on = guard_of(&promotion.release);
        pending.decided_config = promotion.release.config.clone();
        let mut flagged = promotion.release.config.clone();
        flagged.feature_flags.push("dark_mode".into());
        let same_stage = unnumbered(pending.decided_on, 2, &flagged);
        let stored = written_over(store.as_ref(), &pending, &local, &same_stage);
        // The rollback changes the release, not the flag the other process turned on since.
        let mut expected = pending.config.clone();
        expected.feature_flags.push("dark_mode".into());
        assert_eq!(stored.release.config, expected);
    }

    #[test]
    fn a_rollback_of_the_stage_decided_on_after_a_write_that_kept_it_is_the_same_rollback() {
        use crate::config::canary;
        use crate::store::testing::{config, rollback_event};
        // Another process's write that keeps the stage decided on (a kill switch), then its
        // rollback from Canary{10}, the next stage: the same decision, counted there. After
        // another stage started between (a ramp to 25 % and back, as one write here), a
        // rollback from the same share is another one: told apart by its stage alone.
        for (ramped, same) in [(false, Some(3)), (true, None)] {
            let dir = crate::store::scratch::Scratch::new("pending-same-after-write");
            let (store, pending, _) = a_rollback_waiting_on(&dir);
            let stage = if ramped { 2 } else { 1 };
            let between = unnumbered(pending.decided_on, stage, &config(canary(10.0)));
            assert_eq!(
                store.commit(&between).unwrap(),
                Commit::Written { epoch: 0 }
            );
            let mut event = rollback_event("bad deploy");
            event.environment = canary(10.0);
            let rollback = StoredWrite::new(
                guard_of(&between.release),
                RolloutOn::UNKNOWN,
                &Default::default(),
                stage + 1,
                &config(Environment::Production),
                Some(&event),
            );
            assert_eq!(
                store.commit(&rollback).unwrap(),
                Commit::Written { epoch: 0 }
            );
            let state = store.load().unwrap().unwrap();
            let settled = pending.settled_by(&state);
            let Some(Settled::Overtaken { same_rollback, .. }) = settled else {
                panic!("ramped {ramped}: {settled:?}")
            };
            assert_eq!(same_rollback, same, "ramped {ramped}");
            // Manual here and there: the same cause.
            assert!(pending.counted_by(&state, 3));
        }
    }

    #[test]
    fn a_waiting_rollback_is_written_over_a_write_that_kept_its_stage_and_only_once() {
        let dir = crate::store::scratch::Scratch::new("pending-flag");
        let (store, pending, local) = a_rollback_waiting_on(&dir);
        // Another process enabled a flag: same stage, so the rollback still applies.
        let mut flagged = crate::store::testing::config(crate::config::canary(10.0));
        flagged.feature_flags.push("dark_mode".into());
        let flag_edit = unnumbered(pending.decided_on, 1, &flagged);
        assert_eq!(
            store.commit(&flag_edit).unwrap(),
            Commit::Written { epoch: 0 }
        );
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
}
