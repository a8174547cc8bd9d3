//! Keeping the gate and its state store in step: the stored state a gate opens on, each write
//! committed before it is published, and what the sync thread (`sync_thread`) does at each
//! tick: apply other processes' writes, write a rollback waiting to be written (an automatic
//! one always waits for the sync thread; one made while the store was unavailable, until it
//! answers again), and exchange the stage's evidence with the fleet.
//! Those three live beside this file: `catch_up` (following the store), `pending` (a rollback
//! not written yet) and `fleet` (the evidence exchange).
//!
//! Every store call here runs either in a host's own write (promote, flags, rollback,
//! `swap_config`) or on the sync thread, never on the route or record path: an automatic
//! rollback decided while recording is published at once and written by the sync thread.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::ended::{EndedStage, Instead};
use super::sync_thread::Wake;
use super::{Shared, WriterState};
use crate::changes::ChangeOrigin;
use crate::config::PromotionConfig;
use crate::decision::StageId;
use crate::error::{Error, PromotionError, shortened};
use crate::history::RollbackEvent;
use crate::monitor::Now;
use crate::store::{
    self, Commit, Guard, RolloutOn, StateStore, StoreConfig, StoreError, StoreProblem,
    StoredRelease, StoredWrite,
};
use crate::telemetry::RollbackTally;

mod catch_up;
mod fleet;
mod pending;

pub(super) use fleet::Exchange;
use pending::{Pending, WAITING_ROLLBACK};

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

/// What a write does to the release stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NextStage {
    /// The stage goes on.
    Same,
    /// A new stage starts (a rollback).
    New,
    /// A new stage starts, unless the judge rolls the release back first: a rollback the
    /// record path called for in the stage this write ends (a promotion, a flag turned on, a
    /// swap), left for later because this write held the writer lock, is made instead, and
    /// the write refused ([`Shared::commit`]); one left as the write published is made over
    /// it (`ended`).
    UnlessRolledBack,
    /// A new stage of the next release: a `swap_config` that turns a release flag on in Canary
    /// or Staging (the operator's replacement), which starts a rollout in the store
    /// ([`RolloutOn::next_release`](crate::store::RolloutOn::next_release)). A rollback the
    /// record path called for in the stage it ends is made instead only when found before
    /// the write is prepared; once it is stored, the stage judged is the release before's, and
    /// the verdict is dropped as of a stage that has ended, as another process's rollback
    /// waiting to be written is: the next release is not rolled back for the one before.
    NextRelease,
}

impl NextStage {
    /// Whether the write ends the judged stage otherwise than by a rollback, so that a
    /// rollback the record path called for in it before the write is prepared is made first.
    fn unless_rolled_back(self) -> bool {
        matches!(self, Self::UnlessRolledBack | Self::NextRelease)
    }

    /// Whether a rollback the record path called for in the stage the write ends is still
    /// made once the write is stored (or, without a store, prepared): over it, undoing it,
    /// and later over the stage it started (`ended`). Not over the next release.
    fn overruled_by_its_verdict(self) -> bool {
        self == Self::UnlessRolledBack
    }
}

/// The gate's side of its store: the store, the stored state this process last wrote or read,
/// and a rollback not yet written.
#[derive(Debug)]
pub(super) struct StoreLink {
    store: Arc<dyn StateStore>,
    /// The `store` key of the gate's config, put back on every config read from the store.
    config: StoreConfig,
    known: Guard,
    /// The config of the `known` state (what a rollback deferred now is decided on).
    known_config: PromotionConfig,
    /// The rollout of the `known` state ([`StoredRelease::known_rollout`]; `None`: not known).
    known_rollout: Option<store::StoredRollout>,
    /// The rollback counts of the `known` state.
    counted: RollbackTally,
    pending: Option<Pending>,
    /// Wakes the sync thread (to write a pending rollback now).
    wake: Option<Wake>,
    /// Whether the last store call failed; outages are logged once, and their end.
    down: bool,
    /// Whether the store's refusal of the waiting rollback as too large was logged: once for
    /// each rollback deferred, whether the store was down before or not.
    told_too_large: bool,
    /// The stored version the gate last found it cannot publish: logged once, not at every
    /// tick that reads it again.
    unpublishable: Option<u64>,
    /// This gate's instance id among those that share the store (fleet-wide judging).
    instance: String,
    /// How long a contribution counts after it was published.
    ttl: Duration,
}

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
            let rollout = state.release.known_rollout();
            let counted = state
                .rollback_counts(None)
                .map_err(|why| StoreError::new(store.location(), StoreProblem::NotOurs, why))?;
            return Ok(Some(Opened {
                link: StoreLink::new(
                    store,
                    store_config,
                    (known, &state.release.config, rollout, counted),
                    opened,
                ),
                config: stored,
                stage: StageId(known.stage.max(1)),
                history,
                difference,
            }));
        }
        let first = StoredWrite::new(
            Guard::EMPTY,
            RolloutOn::new(None, config),
            &RollbackTally::default(),
            1,
            config,
            None,
        );
        if let Commit::Written { epoch } = store.commit(&first)? {
            let release = first.release.in_epoch(epoch);
            let known = (
                guard_of(&release),
                config,
                release.known_rollout(),
                first.counts,
            );
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
        (known, known_config, known_rollout, counted): (
            Guard,
            &PromotionConfig,
            Option<store::StoredRollout>,
            RollbackTally,
        ),
        opened: SystemTime,
    ) -> Self {
        Self {
            store,
            config: config.clone(),
            known,
            known_config: known_config.clone(),
            known_rollout,
            counted,
            pending: None,
            wake: None,
            down: false,
            told_too_large: false,
            unpublishable: None,
            instance: store::instance_id(opened),
            ttl: store::time_to_live(config),
        }
    }

    /// The rollback counts of the stored state the gate knows.
    pub(super) fn counted(&self) -> &RollbackTally {
        &self.counted
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

    /// Commits a write of `config` (a new stage unless `next` is [`NextStage::Same`]; of the next
    /// release when [`NextStage::NextRelease`]) with `event`, as `durability` says. `Ok` means the
    /// caller may publish, at the time it holds: `clock`, read once the write is stored (or
    /// deferred), before this link changes (a clock that panics then leaves the link as it was: a
    /// stored write is followed from the store).
    fn write(
        &mut self,
        config: &PromotionConfig,
        next: NextStage,
        event: Option<&RollbackEvent>,
        durability: Durability,
        clock: impl FnOnce() -> Now,
    ) -> Result<Now, Error> {
        if durability == Durability::Deferred {
            let now = clock();
            self.defer(config, event);
            return Ok(now);
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
        let stage = self.known.stage + u64::from(next != NextStage::Same);
        let mut on = RolloutOn::new(self.known_rollout, &self.known_config);
        if next == NextStage::NextRelease {
            on = on.next_release();
        }
        let write = StoredWrite::new(self.known, on, &self.counted, stage, config, event);
        match self.store.commit(&write) {
            Ok(Commit::Written { epoch }) => {
                let now = clock();
                let release = write.release.in_epoch(epoch);
                self.known = guard_of(&release);
                self.known_rollout = release.known_rollout();
                self.known_config = release.config;
                self.counted = write.counts;
                self.came_back();
                Ok(now)
            }
            Ok(Commit::Conflict {
                stored_version,
                another_file,
            }) => Err(conflict(
                self.store.location(),
                if another_file {
                    format!(
                        "the file was replaced on disk: this write was decided on the state of the file before (version {}), not on the one the path names now (version {stored_version})",
                        self.known.version
                    )
                } else {
                    format!(
                        "another process wrote first (stored version {stored_version}, this write was decided on {})",
                        self.known.version
                    )
                },
            )
            .into()),
            Err(error) => {
                if durability == Durability::BestEffort {
                    let now = clock();
                    // Deferred first: the log tells a rollback that cannot be written.
                    self.defer(config, event);
                    self.went_down(&error);
                    Ok(now)
                } else {
                    self.went_down(&error);
                    Err(error.into())
                }
            }
        }
    }

    /// Lets the sync thread be woken through `wake` (to write a pending rollback at once) and
    /// starts the store's watch, if it has one, waking it at each change until `stop` is set.
    pub(super) fn follow(&mut self, wake: &Wake, stop: Arc<AtomicBool>) -> Option<JoinHandle<()>> {
        self.wake = Some(wake.clone());
        let wake = wake.clone();
        self.store.watch(
            Box::new(move || {
                let _ = wake.wake();
            }),
            stop,
        )
    }

    /// Whether a rollback made here waits to be written to the store.
    pub(super) fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    fn defer(&mut self, config: &PromotionConfig, event: Option<&RollbackEvent>) {
        self.pending = Some(Pending {
            event: event.cloned(),
            reseeded: Default::default(),
            decided_on: self.known,
            decided_config: self.known_config.clone(),
            decided_rollout: self.known_rollout.map(|rollout| rollout.started),
            config: config.clone(),
        });
        self.told_too_large = false;
        if let Some(wake) = &self.wake {
            let _ = wake.wake();
        }
    }

    /// Logs a failed store call: an outage once, until the store answers again. A write
    /// refused as too large ([`StoreProblem::TooLarge`]) is no outage: the store answered, and
    /// only that write was refused. It leaves the store marked as it was; a host's write
    /// returns the error to its caller, and a waiting rollback's refusal is logged once for
    /// that rollback (whether or not the store was down before).
    fn went_down(&mut self, error: &StoreError) {
        if error.problem() == StoreProblem::TooLarge {
            if self.pending.is_some() && !self.told_too_large {
                // Not a store that will answer again by itself: this gate shows the rollback,
                // the store (and every other process) the release it rolled back.
                tracing::error!(%error, "promotion.store a rollback cannot be written: the store refuses a write this large; this gate routes the rolled-back release, other processes keep routing the stored one until the store's limit is raised (the write is tried again at each sync tick, not logged again)");
                self.told_too_large = true;
            }
        } else if !self.down {
            // The error says whether the store is unreachable or holds what this gate refuses.
            tracing::error!(%error, "promotion.store cannot be used: routing goes on from the last snapshot, promotions are refused");
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

impl Shared {
    /// Commits a write to the store (when there is one) as `durability` says, then publishes
    /// `config` and records `event` (in the history and the count by cause) at once, under the
    /// records lock. Returns how many old events the history dropped to keep within the
    /// config's bound (logged here when `event` pushed them out). Called with the writer lock
    /// held; on error nothing changed.
    ///
    /// A write that ends the judged stage otherwise than by a rollback
    /// ([`NextStage::UnlessRolledBack`]: a promotion, a flag turned on, a swap; or
    /// [`NextStage::NextRelease`]) looks for a rollback the record path left for later while it
    /// held the writer lock (its judgement, the store write): before it prepares anything, and
    /// once more after the store write (or at once without a store), the last point before it
    /// is published. A rollback found is
    /// made instead and the write refused ([`PromotionError::SloNotMet`]); after the store
    /// write, it is written over the write just stored, so neither this process nor the store
    /// keeps it (other processes may follow it in between, for one sync, as they may any
    /// write). A verdict left after that last look is made over the write once it is
    /// published: the write remembers the stage it ended (see `ended`), looks once more after
    /// it published, and later verdicts of that stage are made over it by
    /// [`Shared::apply_verdict`]. The next release ([`NextStage::NextRelease`]) looks only
    /// before it prepares anything: a verdict left after that is of the release it replaced,
    /// and is dropped once the write is published, as of a stage that has ended.
    pub(super) fn commit(
        &self,
        writer: &mut WriterState,
        config: PromotionConfig,
        next: NextStage,
        event: Option<RollbackEvent>,
        durability: Durability,
    ) -> Result<u64, Error> {
        let new_stage = next != NextStage::Same;
        if durability != Durability::Deferred {
            self.settle_pending(writer)?;
        }
        let before = self.current.load_full();
        let judged = before.route.stage;
        if next.unless_rolled_back()
            && let Some(verdict) = self.take_left_rollback(judged)
        {
            return Err(self.roll_back_instead(writer, &verdict, None, Instead::OfTheWrite));
        }
        // Built first: a config the gate cannot publish (no flag set number left) is never
        // stored.
        let bound = config.max_rollback_history;
        // Without a store nothing waits: the clocks are read before anything is prepared, so
        // a host's clock that panics changes nothing (preparing makes the new flag sets live).
        let unstored = writer.store.is_none().then(|| self.monitor.now());
        let snapshot = self.prepare(writer, config, new_stage)?;
        // With one, read once the write is stored (the stage starts then, not before a wait
        // for the store), before the link changes.
        let clock = || self.monitor.now();
        let now = match writer.store.as_mut() {
            Some(link) => {
                match link.write(&snapshot.config, next, event.as_ref(), durability, clock) {
                    Ok(now) => now,
                    Err(error) => {
                        self.restore_live_flags(writer);
                        return Err(error);
                    }
                }
            }
            None => unstored.unwrap_or_else(clock),
        };
        if next.overruled_by_its_verdict()
            && let Some(verdict) = self.take_left_rollback(judged)
        {
            self.restore_live_flags(writer);
            // Over the promotion just stored, committed before it is published here.
            let stored = writer.store.is_some().then_some(Durability::BestEffort);
            return Err(self.roll_back_instead(writer, &verdict, stored, Instead::OfTheWrite));
        }
        let mut snapshot = snapshot;
        if let Some(link) = writer.store.as_ref().filter(|_| new_stage) {
            // Never below the stage stored (one above a promotion stored and rolled back).
            snapshot.route.stage = snapshot.route.stage.max(StageId(link.known.stage));
        }
        // With a store: its counts, and the event here too while it waits to be written.
        let stored = writer
            .store
            .as_ref()
            .map(|link| (link.counted.clone(), link.has_pending()));
        // Looked for again after the write (`look_after_publishing`), and by `apply_verdict`;
        // made before the records lock is taken (it copies the judged config).
        let published = (snapshot.route.stage, snapshot.route.generation);
        let ended = next
            .overruled_by_its_verdict()
            .then(|| EndedStage::new(&before, published))
            .flatten();
        let mut records = self.lock_records();
        self.install(
            writer,
            snapshot,
            ChangeOrigin::ThisGate,
            event.as_slice(),
            now,
        );
        if new_stage {
            // A write in the same stage keeps what the last stage-starting write ended: a
            // rollback called for in that stage is still made over it (a flag turned off in
            // Production right after a promotion must not lose the verdict that condemns it).
            writer.ended = ended;
        }
        let waits = match stored {
            Some((counted, waits)) => {
                records.rollbacks.stored(counted);
                waits
            }
            None => true,
        };
        let Some(event) = event else {
            return Ok(records.history.trim(bound));
        };
        if waits {
            records.rollbacks.count_here(&event);
        }
        let dropped = records.history.push(event, bound);
        drop(records);
        super::writes::log_dropped(dropped);
        Ok(dropped)
    }

    /// Makes the rollback `verdict` calls for, which a write found left for later, in place of
    /// the write (written as `durability` says: `None`, as an automatic one; a `BestEffort`
    /// one that meets another process's write is deferred), and returns the write's refusal,
    /// naming the rule.
    pub(super) fn roll_back_instead(
        &self,
        writer: &mut WriterState,
        verdict: &crate::verdict::Verdict,
        durability: Option<Durability>,
        instead: Instead,
    ) -> Error {
        let reason = verdict.rollback_reason();
        let evidence = verdict.evidence();
        let trigger = crate::RollbackTrigger::Automatic;
        let roll_back = |writer: &mut WriterState, durability| match instead {
            Instead::OfTheWrite => self.roll_back(
                writer,
                reason.clone(),
                trigger,
                Some(evidence.clone()),
                durability,
            ),
            Instead::OverTheWrite => {
                self.roll_back_over_the_write(writer, verdict, durability, true)
            }
        };
        let made = match roll_back(writer, durability) {
            // Another process wrote on top of the promotion just stored: the rollback is left
            // to the sync thread, decided on that promotion, as when the store does not answer
            // (refused, the gate would follow the store into the promotion).
            Err(Error::Store(error))
                if durability == Some(Durability::BestEffort)
                    && error.problem() == StoreProblem::Conflict =>
            {
                tracing::warn!(%error, "promotion.rollback over the promotion just stored met another process's write: it is written later");
                roll_back(writer, Some(Durability::Deferred))
            }
            made => made,
        };
        let what = match (made, instead) {
            (Ok(()), Instead::OfTheWrite) => {
                "the canary was rolled back, and the write was not made"
            }
            (Ok(()), Instead::OverTheWrite) => {
                "the canary was rolled back over the write, which had just been published: the write is undone"
            }
            (Err(error), _) => {
                tracing::error!(%error, stage = verdict.stage().get(), "promotion.rollback failed: the canary is still routed");
                match instead {
                    Instead::OfTheWrite => {
                        "its rollback could not be made (logged as an error), and the write was not made"
                    }
                    Instead::OverTheWrite => {
                        "its rollback over the write, which had just been published, could not be made (logged as an error)"
                    }
                }
            }
        };
        PromotionError::SloNotMet {
            evidence: format!(
                "the judge called for a rollback while this write was being made ({reason}): {what}; {evidence}"
            ),
        }
        .into()
    }

    /// Makes the published snapshot's flag sets the live ones again after a write that
    /// prepared a snapshot but was not stored: preparing made the new sets live and retired the
    /// published ones, whose numbers a later write would then reuse under the routing's feet,
    /// and stored the new sets over the oldest retired ones, which are put back first.
    /// Re-interning sets the gate still holds needs no new number: no error is expected (one
    /// would be logged).
    fn restore_live_flags(&self, writer: &mut WriterState) {
        self.flag_sets.undo_stores(&mut writer.flag_index);
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
}

/// The guard of a write decided on `release`: its numbers, and the epoch of the store's file it
/// was read from or written in.
fn guard_of(release: &StoredRelease) -> Guard {
    Guard {
        version: release.version,
        stage: release.stage,
        epoch: release.epoch,
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
/// `field: static X, stored Y`, or `None` when they agree. Every field either side has is
/// compared (`overrides` and `store` are left out of a config's JSON when unset): a field one
/// side lacks is shown as `absent`. Each value is shown [`shortened`]: at most
/// [`MAX_SHOWN_VALUE_BYTES`](crate::MAX_SHOWN_VALUE_BYTES), then its length, since the text is
/// kept for the gate's life (an 8 MiB list of override ids would otherwise be kept whole).
fn difference(static_config: &PromotionConfig, stored: &PromotionConfig) -> Option<String> {
    let as_map = |config: &PromotionConfig| match serde_json::to_value(config) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (ours, theirs) = (as_map(static_config), as_map(stored));
    let shown = |value: Option<&serde_json::Value>| {
        value.map_or("absent".to_string(), |v| shortened(&v.to_string()))
    };
    let fields = ours
        .keys()
        .chain(theirs.keys().filter(|field| !ours.contains_key(*field)));
    let differences: Vec<String> = fields
        .filter(|field| ours.get(*field) != theirs.get(*field))
        .map(|field| {
            format!(
                "{field}: static {}, stored {}",
                shown(ours.get(field)),
                shown(theirs.get(field))
            )
        })
        .collect();
    (!differences.is_empty()).then(|| differences.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config of a canary at 10 % on the SQLite file `path`, fleet judging on.
    pub(super) fn config_on(
        path: &str,
        sync_interval_ms: u64,
        busy_timeout_ms: u64,
    ) -> PromotionConfig {
        let mut config = crate::store::testing::config(crate::config::canary(10.0));
        config.store = Some(StoreConfig::Sqlite(crate::store::SqliteStoreConfig {
            path: path.to_string(),
            sync_interval_ms,
            busy_timeout_ms,
            fleet_judging: true,
        }));
        config
    }

    pub(super) fn gate_of(config: PromotionConfig) -> crate::PromotionGateManager {
        let slo = crate::SloAdmissionController::new(crate::SloConfig::default()).unwrap();
        crate::PromotionGateManager::new(config, slo).unwrap()
    }

    /// A gate on the SQLite file `path` (canary 10 %, fleet judging on).
    pub(super) fn gate_on(
        path: &str,
        sync_interval_ms: u64,
        busy_timeout_ms: u64,
    ) -> crate::PromotionGateManager {
        gate_of(config_on(path, sync_interval_ms, busy_timeout_ms))
    }

    /// A gate on the SQLite file `path`, opened with `overrides` in its static config.
    fn gate_with_overrides(
        path: &str,
        overrides: Option<crate::Overrides>,
    ) -> crate::PromotionGateManager {
        gate_of(PromotionConfig {
            overrides,
            ..config_on(path, 60_000, 5_000)
        })
    }

    #[test]
    fn stored_overrides_the_static_config_lacks_are_a_difference_logged_as_a_warning() {
        let dir = crate::store::scratch::Scratch::new("difference-overrides");
        let path = dir.file("gate.db");
        let header = crate::Overrides {
            header: Some("X-Canary".into()),
            ..Default::default()
        };
        drop(gate_with_overrides(&path, Some(header)));
        let logs = crate::telemetry::log_lines::LogLines::default();
        let reopened = logs.during(|| gate_with_overrides(&path, None));
        assert_eq!(
            reopened.stored_state_difference(),
            Some(r#"overrides: static absent, stored {"header":"X-Canary"}"#)
        );
        let warnings = logs.lines_at(tracing::Level::WARN);
        assert!(
            warnings.iter().any(|l| l.contains("X-Canary")),
            "{warnings:#?}"
        );
        // And the other way: the static config's overrides, none stored.
        let dir = crate::store::scratch::Scratch::new("difference-no-overrides");
        let path = dir.file("gate.db");
        drop(gate_with_overrides(&path, None));
        let header = crate::Overrides {
            header: Some("X-Canary".into()),
            ..Default::default()
        };
        let reopened = gate_with_overrides(&path, Some(header));
        assert_eq!(
            reopened.stored_state_difference(),
            Some(r#"overrides: static {"header":"X-Canary"}, stored absent"#)
        );
    }

    #[test]
    fn a_difference_shows_each_value_within_its_bound_and_its_length() {
        let dir = crate::store::scratch::Scratch::new("difference-bound");
        let path = dir.file("gate.db");
        let ids = crate::Overrides {
            canary_ids: (0..5_000).map(|i| format!("{i:0>100}")).collect(),
            ..Default::default()
        };
        drop(gate_with_overrides(&path, Some(ids)));
        let header = crate::Overrides {
            header: Some("X-Canary".into()),
            ..Default::default()
        };
        let reopened = gate_with_overrides(&path, Some(header));
        let difference = reopened.stored_state_difference().unwrap();
        let whole = serde_json::to_string(&reopened.config().overrides).unwrap();
        assert!(whole.len() > 500_000);
        assert!(
            difference.len() < 2 * crate::MAX_SHOWN_VALUE_BYTES + 100,
            "{} bytes",
            difference.len()
        );
        assert!(
            difference.ends_with(&format!("...({} bytes)", whole.len())),
            "{difference}"
        );
    }

    #[test]
    fn a_stage_starts_when_its_write_is_stored_not_before_it_waited_for_the_store() {
        let dir = crate::store::scratch::Scratch::new("stage-starts-stored");
        let path = dir.file("gate.db");
        let clock = Arc::new(crate::ManualClock::new());
        let config = config_on(&path, 60_000, 5_000);
        let slo = crate::SloAdmissionController::new(crate::SloConfig::default()).unwrap();
        let gate = crate::PromotionGateManager::with_clock(config, slo, clock.clone()).unwrap();
        // Another connection holds SQLite's write lock: the ramp waits for it.
        let lock = rusqlite::Connection::open(&path).unwrap();
        lock.execute_batch("BEGIN IMMEDIATE").unwrap();
        std::thread::scope(|scope| {
            let ramp = scope.spawn(|| gate.promote(crate::config::canary(5.0)));
            std::thread::sleep(Duration::from_millis(200));
            clock.set(Duration::from_secs(30)); // 30 s of the gate's time pass while it waits
            lock.execute_batch("ROLLBACK").unwrap();
            ramp.join().unwrap().unwrap();
        });
        assert_eq!(gate.config().environment, crate::config::canary(5.0));
        assert_eq!(gate.shared.monitor.stage_start(), Duration::from_secs(30));
    }

    /// How [`Answering`] answers a commit, given the store it wraps and the write.
    type Answer =
        Box<dyn Fn(&dyn StateStore, &StoredWrite) -> Result<Commit, StoreError> + Send + Sync>;

    /// A store whose commits `answer` answers; the other calls it forwards are `inner`'s
    /// (`watch` and `load` are the trait's defaults: it wraps the store of a gate open already).
    struct Answering {
        inner: Arc<dyn StateStore>,
        answer: Answer,
    }

    impl std::fmt::Debug for Answering {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Answering")
                .field("inner", &self.inner)
                .finish_non_exhaustive()
        }
    }

    impl StateStore for Answering {
        fn location(&self) -> &str {
            self.inner.location()
        }
        fn changes_since(&self, known: Guard) -> Result<store::Since, StoreError> {
            self.inner.changes_since(known)
        }
        fn commit(&self, write: &StoredWrite) -> Result<Commit, StoreError> {
            (self.answer)(self.inner.as_ref(), write)
        }
        fn publish(
            &self,
            c: &store::Contribution,
            known: Guard,
            ttl: Duration,
        ) -> Result<(), StoreError> {
            self.inner.publish(c, known, ttl)
        }
        fn contributions(
            &self,
            known: Guard,
            except: &str,
            ttl: Duration,
        ) -> Result<Vec<Result<store::Contribution, store::BadContribution>>, StoreError> {
            self.inner.contributions(known, except, ttl)
        }
    }

    /// Puts `answer` in front of the commits of `gate`'s store (see [`Answering`]).
    pub(super) fn answer_commits(gate: &crate::PromotionGateManager, answer: Answer) {
        let mut writer = gate.shared.lock_writer();
        let link = writer.store.as_mut().unwrap();
        link.store = Arc::new(Answering {
            inner: Arc::clone(&link.store),
            answer,
        });
    }

    /// A gate on a SQLite file in `dir` whose commits are refused with the problems in
    /// `refusals`, first to last, then refused as too large, its sync thread not woken (the
    /// test syncs by hand).
    fn refusing_gate(
        dir: &crate::store::scratch::Scratch,
        refusals: Vec<StoreProblem>,
    ) -> crate::PromotionGateManager {
        let gate = gate_on(&dir.file("gate.db"), 60_000, 5_000);
        if let Some(link) = gate.shared.lock_writer().store.as_mut() {
            link.wake = None;
        }
        let refusals = std::sync::Mutex::new(refusals);
        let refuse = move |store: &dyn StateStore, _: &StoredWrite| {
            let mut refusals = refusals.lock().unwrap();
            let problem = if refusals.is_empty() {
                StoreProblem::TooLarge
            } else {
                refusals.remove(0)
            };
            Err(StoreError::new(
                store.location(),
                problem,
                "refused by the test",
            ))
        };
        answer_commits(&gate, Box::new(refuse));
        gate
    }

    #[test]
    fn a_rollback_refused_as_too_large_is_logged_once_even_after_an_outage() {
        let dir = crate::store::scratch::Scratch::new("too-large-after-outage");
        // The store is unreachable as the rollback is made, then answers, refusing it as too
        // large at each tick.
        let gate = refusing_gate(&dir, vec![StoreProblem::Unavailable]);
        let logs = crate::telemetry::log_lines::LogLines::default();
        logs.during(|| {
            gate.rollback("checkout errors").unwrap();
            gate.shared.sync_once();
            gate.shared.sync_once();
        });
        let errors = logs.lines_at(tracing::Level::ERROR);
        let told = |line: &str| errors.iter().filter(|l| l.contains(line)).count();
        assert_eq!(told("cannot be used"), 1, "{errors:#?}");
        assert_eq!(told("a rollback cannot be written"), 1, "{errors:#?}");
        assert!(gate.lock_writer().store.as_ref().unwrap().has_pending());
    }

    #[test]
    fn a_hosts_write_refused_as_too_large_is_no_outage() {
        let dir = crate::store::scratch::Scratch::new("too-large-host-write");
        let gate = refusing_gate(&dir, vec![]);
        let logs = crate::telemetry::log_lines::LogLines::default();
        let refused = logs.during(|| {
            let refused = gate.enable_feature("checkout-v2");
            gate.shared.sync_once();
            refused
        });
        let Err(crate::Error::Store(error)) = refused else {
            panic!("{refused:?}")
        };
        assert_eq!(error.problem(), StoreProblem::TooLarge);
        assert!(!gate.is_feature_enabled("checkout-v2"));
        let lines = logs.lines();
        assert!(
            !lines
                .iter()
                .any(|l| l.contains("cannot be used") || l.contains("available again")),
            "{lines:#?}"
        );
    }

    pub(super) fn automatic_rollbacks(gate: &crate::PromotionGateManager) -> u64 {
        gate.rollback_counts()
            .iter()
            .filter(|c| c.trigger == crate::RollbackTrigger::Automatic)
            .map(|c| c.count)
            .sum()
    }

    #[test]
    fn a_stored_state_the_gate_cannot_publish_changes_nothing_and_is_never_overwritten() {
        let dir = crate::store::scratch::Scratch::new("unpublishable");
        let path = dir.file("gate.db");
        let ours = gate_on(&path, 60_000, 5_000);
        ours.enable_feature("early").unwrap();
        let theirs = gate_on(&path, 60_000, 5_000);
        // This gate has held every flag name it may: a stored config naming a new one cannot
        // be published here.
        {
            let shared = &ours.shared;
            let mut writer = shared.lock_writer();
            let names: Vec<String> = (1..crate::MAX_FLAG_NAMES)
                .map(|i| format!("n{i}"))
                .collect();
            for chunk in names.chunks(1_000) {
                let chunk = chunk.iter().map(String::as_str);
                shared
                    .flag_sets
                    .intern_live(&mut writer.flag_index, chunk.clone(), chunk)
                    .unwrap();
            }
            shared.restore_live_flags(&mut writer);
        }
        // Another process turns "early" off (a history event) and a new flag on.
        theirs.disable_feature("early").unwrap();
        theirs.enable_feature("brand_new").unwrap();
        let (changes, config) = (ours.change_count(), ours.config());
        let logs = crate::telemetry::log_lines::LogLines::default();
        logs.during(|| {
            for _ in 0..5 {
                ours.shared.sync_once();
            }
        });
        let refusals = logs
            .lines()
            .iter()
            .filter(|l| l.contains("cannot publish"))
            .count();
        assert_eq!(
            refusals,
            1,
            "logged once, not at every tick: {:#?}",
            logs.lines()
        );
        assert_eq!(ours.change_count(), changes);
        assert_eq!(ours.config(), config);
        assert!(
            ours.rollback_history().is_empty(),
            "{:?}",
            ours.rollback_history()
        );
        assert_eq!(ours.rollback_counts(), Vec::new());
        // Its own writes were decided on the state it still shows: refused, never stored over
        // the other process's.
        assert!(ours.promote(crate::config::canary(5.0)).is_err());
        let reopened = gate_on(&path, 60_000, 5_000);
        assert_eq!(reopened.config().feature_flags, ["brand_new"]);
        assert_eq!(reopened.config().environment, crate::config::canary(10.0));
        // A rollback by hand is still made: at once here, then written over the stored state.
        ours.rollback("by hand").unwrap();
        assert_eq!(ours.environment(), crate::Environment::Production);
        ours.shared.sync_once();
        assert!(
            !ours
                .shared
                .lock_writer()
                .store
                .as_ref()
                .unwrap()
                .has_pending()
        );
        let after = gate_on(&path, 60_000, 5_000);
        assert_eq!(after.environment(), crate::Environment::Production);
        assert_eq!(after.rollback_history().last().unwrap().reason, "by hand");
    }

    /// The stored environment and flags, read by a connection of its own.
    fn stored_release(path: &str) -> (String, String) {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row(
                "SELECT environment, json_extract(config, '$.feature_flags') FROM release",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap()
    }

    #[test]
    fn a_hosts_write_made_while_the_sync_thread_reads_a_new_file_is_decided_again_on_it() {
        // Another file moved over the path, holding another state at the very version and
        // stage the gate knows (its first, Canary{20} where the gate's is Canary{10}).
        let dir = crate::store::scratch::Scratch::new("replaced-sync-race");
        let path = dir.file("gate.db");
        let gate = gate_on(&path, 60_000, 5_000);
        let made = dir.file("made.db");
        drop(gate_of(PromotionConfig {
            environment: crate::config::canary(20.0),
            ..config_on(&made, 60_000, 5_000)
        }));
        let replacement = dir.file("replacement.db");
        crate::store::scratch::backup(&made, &replacement);
        crate::store::scratch::move_over(&replacement, &path);
        // The sync thread reads the new file's state, without the writer lock; before it
        // takes it, a host's write, decided on the old file's state, takes the lock.
        let read = gate.shared.sync_read().unwrap();
        assert_eq!(gate.environment(), crate::config::canary(10.0));
        gate.enable_feature("checkout-v2").unwrap();
        gate.shared.sync_apply(read);
        // The write was refused on the new file, whose state the gate then read and decided
        // the write again on: made over Canary{20}, not over the gate's old Canary{10}.
        assert_eq!(
            stored_release(&path),
            ("Canary{20}".to_string(), r#"["checkout-v2"]"#.to_string())
        );
        assert_eq!(gate.environment(), crate::config::canary(20.0));
        assert!(gate.is_feature_enabled("checkout-v2"));
        // And the gate goes on from the new file: its next write is made there at once.
        gate.disable_feature("checkout-v2").unwrap();
        assert_eq!(
            stored_release(&path),
            ("Canary{20}".to_string(), "[]".to_string())
        );
    }

    #[test]
    fn a_gate_that_gives_a_removed_file_its_state_again_knows_that_state_in_the_new_file() {
        let dir = crate::store::scratch::Scratch::new("removed-reseeded");
        let path = dir.file("gate.db");
        let gate = gate_on(&path, 60_000, 5_000);
        crate::store::scratch::remove_store(&path);
        let logs = crate::telemetry::log_lines::LogLines::default();
        logs.during(|| {
            // The store went back (emptied): the gate writes its state there, decided on no
            // state, in the store's second file; the next tick finds that state unchanged.
            gate.shared.sync_once();
            gate.shared.sync_once();
        });
        let errors = logs.lines_at(tracing::Level::ERROR);
        let went_back = errors
            .iter()
            .filter(|l| l.contains("the store went back"))
            .count();
        assert_eq!(went_back, 1, "{errors:#?}");
        assert_eq!(gate.lock_writer().store.as_ref().unwrap().known.epoch, 1);
        // A host's write is made there at once.
        gate.enable_feature("checkout-v2").unwrap();
        assert_eq!(
            stored_release(&path),
            ("Canary{10}".to_string(), r#"["checkout-v2"]"#.to_string())
        );
    }

    /// A gate on `path` at Canary{10} (version and stage 1) with five failing canary outcomes
    /// recorded (below `min_samples`), and a file holding `environment` at the same version
    /// and stage moved over its path.
    fn a_gate_whose_file_is_replaced_by(
        dir: &crate::store::scratch::Scratch,
        environment: crate::config::Environment,
    ) -> crate::PromotionGateManager {
        let gate = a_gate_with_five_failures(&dir.file("gate.db"));
        move_over_a_file_holding(dir, environment);
        gate
    }

    /// A gate on `path` at Canary{10} (version and stage 1) with five failing canary outcomes
    /// recorded (below `min_samples`).
    fn a_gate_with_five_failures(path: &str) -> crate::PromotionGateManager {
        let gate = gate_on(path, 60_000, 5_000);
        for _ in 0..5 {
            gate.record_for(gate.stage(), true, false, Duration::from_millis(5));
        }
        assert_eq!(canary_requests(&gate), 5);
        gate
    }

    /// The canary outcomes in `gate`'s window.
    fn canary_requests(gate: &crate::PromotionGateManager) -> u64 {
        gate.window_export()
            .evidence(crate::Cohort::Canary)
            .requests
    }

    /// Moves a file holding `environment` at version and stage 1 (another process's first
    /// state) over `dir`'s `gate.db`.
    fn move_over_a_file_holding(
        dir: &crate::store::scratch::Scratch,
        environment: crate::config::Environment,
    ) {
        let made = dir.file("made.db");
        drop(gate_of(PromotionConfig {
            environment,
            ..config_on(&made, 60_000, 5_000)
        }));
        let replacement = dir.file("replacement.db");
        crate::store::scratch::backup(&made, &replacement);
        crate::store::scratch::move_over(&replacement, &dir.file("gate.db"));
    }

    /// A write of the gate's stage (a policy-only swap: the rollback history's bound), which
    /// moves the stored version on and leaves the stage and its evidence alone.
    fn swap_policy_only(gate: &crate::PromotionGateManager) {
        let stage = gate.stage();
        let mut config = gate.config();
        config.max_rollback_history -= 1;
        gate.swap_config(config).unwrap();
        assert_eq!(gate.stage(), stage);
        assert_eq!(known_numbers(gate), (2, 1, 0));
        assert_eq!(canary_requests(gate), 5);
    }

    /// The version, stage and epoch of the stored state `gate` knows.
    fn known_numbers(gate: &crate::PromotionGateManager) -> (u64, u64, u64) {
        let known = gate.lock_writer().store.as_ref().unwrap().known;
        (known.version, known.stage, known.epoch)
    }

    #[test]
    fn another_state_followed_from_a_new_file_below_the_known_version_starts_a_new_stage() {
        // The gate knows version 2 of stage 1 (a write of the same stage); the new file holds
        // Canary{20} at version 1, stage 1: another state, whose stage number tells nothing of
        // the gate's. It is followed as a new stage, its window empty.
        let dir = crate::store::scratch::Scratch::new("replaced-below-another-state");
        let gate = a_gate_with_five_failures(&dir.file("gate.db"));
        swap_policy_only(&gate);
        move_over_a_file_holding(&dir, crate::config::canary(20.0));
        follows_canary_20_in_a_new_stage(&gate, (1, 1, 1));
    }

    /// Syncs `gate` once, and checks that it follows Canary{20} in a new stage, its window
    /// empty, knowing the stored state of `known` numbers (version, stage, epoch).
    fn follows_canary_20_in_a_new_stage(
        gate: &crate::PromotionGateManager,
        known: (u64, u64, u64),
    ) {
        let stage = gate.stage();
        gate.shared.sync_once();
        assert_eq!(gate.environment(), crate::config::canary(20.0));
        assert!(gate.stage() > stage, "{:?} after {stage:?}", gate.stage());
        assert_eq!(canary_requests(gate), 0);
        assert_eq!(known_numbers(gate), known);
    }

    #[test]
    fn another_state_followed_from_a_new_file_at_the_known_numbers_starts_a_new_stage() {
        // The new file holds Canary{20} at the version and stage the gate knows: the outcomes
        // recorded under Canary{10} are no evidence of it, neither judged as its stage's nor
        // published as this process's contribution to it.
        let dir = crate::store::scratch::Scratch::new("replaced-another-state");
        let gate = a_gate_whose_file_is_replaced_by(&dir, crate::config::canary(20.0));
        let stage = gate.stage();
        gate.shared.sync_once();
        assert_eq!(gate.environment(), crate::config::canary(20.0));
        assert!(gate.stage() > stage, "{:?} after {stage:?}", gate.stage());
        let export = gate.window_export();
        assert_eq!(export.evidence(crate::Cohort::Canary).requests, 0);
        assert_eq!(export.evidence(crate::Cohort::Stable).requests, 0);
        // Its stored numbers are the new file's: nothing was written there.
        let link = gate.lock_writer();
        let known = link.store.as_ref().unwrap().known;
        assert_eq!((known.version, known.stage, known.epoch), (1, 1, 1));
    }

    #[test]
    fn the_same_state_followed_from_a_new_file_keeps_the_stage_and_writes_nothing() {
        // A copy of the very state the gate knows moved over the file (a backup of it restored):
        // the stage and its evidence go on, logged as a warning, not as a store that went back.
        let dir = crate::store::scratch::Scratch::new("replaced-same-state");
        let gate = a_gate_whose_file_is_replaced_by(&dir, crate::config::canary(10.0));
        let stage = gate.stage();
        let logs = crate::telemetry::log_lines::LogLines::default();
        logs.during(|| gate.shared.sync_once());
        let errors = logs.lines_at(tracing::Level::ERROR);
        assert!(errors.is_empty(), "{errors:#?}");
        let warnings = logs.lines_at(tracing::Level::WARN);
        assert!(
            warnings
                .iter()
                .any(|l| l.contains("same version and stage")),
            "{warnings:#?}"
        );
        assert_eq!(gate.stage(), stage);
        assert_eq!(
            gate.window_export()
                .evidence(crate::Cohort::Canary)
                .requests,
            5
        );
        let link = gate.lock_writer();
        let known = link.store.as_ref().unwrap().known;
        assert_eq!((known.version, known.stage, known.epoch), (1, 1, 1));
    }

    /// A gate on `dir`'s `gate.db` with five failing canary outcomes, knowing version 2 of
    /// stage 1 (a write of the same stage), whose rows are then deleted in place (the file, and
    /// its epoch, stay) and written again by a process started right after: its first state,
    /// of the config `theirs` makes of the gate's, at version 1, stage 1 (a store that went
    /// back, whose stage number tells nothing of the gate's stage).
    fn a_gate_whose_rows_are_written_again_by(
        dir: &crate::store::scratch::Scratch,
        theirs: impl FnOnce(PromotionConfig) -> PromotionConfig,
    ) -> crate::PromotionGateManager {
        let path = dir.file("gate.db");
        let gate = a_gate_with_five_failures(&path);
        swap_policy_only(&gate);
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("DELETE FROM history; DELETE FROM release;")
            .unwrap();
        drop(gate_of(theirs(gate.config())));
        gate
    }

    #[test]
    fn another_state_written_in_place_at_the_known_stage_number_starts_a_new_stage() {
        let dir = crate::store::scratch::Scratch::new("reseeded-in-place-another-state");
        let gate = a_gate_whose_rows_are_written_again_by(&dir, |config| PromotionConfig {
            environment: crate::config::canary(20.0),
            ..config
        });
        follows_canary_20_in_a_new_stage(&gate, (1, 1, 0));
    }

    #[test]
    fn the_same_state_written_in_place_at_the_known_stage_number_keeps_the_stage() {
        // The process started right after writes the state the gate shows (its config): the
        // stage and its evidence go on.
        let dir = crate::store::scratch::Scratch::new("reseeded-in-place-same-state");
        let gate = a_gate_whose_rows_are_written_again_by(&dir, |config| config);
        let stage = gate.stage();
        gate.shared.sync_once();
        assert_eq!(gate.stage(), stage);
        assert_eq!(canary_requests(&gate), 5);
        assert_eq!(known_numbers(&gate), (1, 1, 0));
    }

    /// The contributions stored in the SQLite file `path`: each instance's stage and canary
    /// requests, read by a connection of its own.
    fn stored_contributions(path: &str) -> Vec<(String, i64, i64)> {
        let connection = rusqlite::Connection::open(path).unwrap();
        let mut rows = connection
            .prepare("SELECT instance, stage, canary_requests FROM contribution ORDER BY instance")
            .unwrap();
        rows.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn counts_of_a_replaced_files_stage_are_neither_published_nor_read_in_the_new_file() {
        // A tick whose exchange comes before the gate has read the new file (moved over the
        // path between the tick's catch-up and its exchange): the stage it knows is the old
        // file's, stage 1 there, and stage 1 of the new file is another state (another
        // process's Canary{20}, with its own instance's counts).
        let dir = crate::store::scratch::Scratch::new("replaced-exchange");
        let path = dir.file("gate.db");
        let gate = a_gate_with_five_failures(&path);
        let made = dir.file("made.db");
        let theirs = gate_of(PromotionConfig {
            environment: crate::config::canary(20.0),
            ..config_on(&made, 60_000, 5_000)
        });
        theirs.record_for(theirs.stage(), true, true, Duration::from_millis(5));
        theirs
            .shared
            .exchange_contributions(&mut Exchange::default());
        drop(theirs);
        let replacement = dir.file("replacement.db");
        crate::store::scratch::backup(&made, &replacement);
        crate::store::scratch::move_over(&replacement, &path);
        let before = stored_contributions(&path);
        assert_eq!(before.len(), 1, "{before:?}");
        let mut exchange = Exchange::default();
        gate.shared.exchange_contributions(&mut exchange);
        // Nothing of this instance in the new file, and nothing of the other read.
        assert_eq!(stored_contributions(&path), before);
        assert_eq!(gate.health().evidence.instances, 1);
        assert_eq!(canary_requests(&gate), 5);
        // Once the gate follows the new file (a new stage here, its window empty), it
        // publishes its counts of it, and reads the other's.
        gate.shared.sync_once();
        gate.shared.exchange_contributions(&mut exchange);
        let after = stored_contributions(&path);
        assert_eq!(after.len(), 2, "{after:?}");
        assert!(after.iter().all(|&(_, stage, _)| stage == 1), "{after:?}");
        assert!(after.contains(&(before[0].0.clone(), 1, 1)), "{after:?}");
        assert!(after.iter().any(|row| row.2 == 0), "{after:?}");
        assert_eq!(gate.health().evidence.instances, 2);
    }

    /// A host's write of the shown config at canary `percent` (a new stage), as `writer` holds.
    fn commit_canary(
        shared: &Shared,
        writer: &mut WriterState,
        percent: f64,
    ) -> Result<u64, crate::Error> {
        let mut next = shared.current.load().config.clone();
        next.environment = crate::config::canary(percent);
        shared.commit(writer, next, NextStage::New, None, Durability::Required)
    }

    #[test]
    fn a_write_decided_on_a_replaced_files_state_is_refused_saying_so() {
        // The gate has not read the new file yet (no sync tick): its write, decided on the old
        // file's state at the very numbers the new one holds, is refused as of another file.
        let dir = crate::store::scratch::Scratch::new("replaced-refusal-text");
        let gate = a_gate_whose_file_is_replaced_by(&dir, crate::config::canary(20.0));
        let shared = &gate.shared;
        let refused = commit_canary(shared, &mut shared.lock_writer(), 30.0).unwrap_err();
        let crate::Error::Store(error) = &refused else {
            panic!("{refused:?}");
        };
        assert_eq!(error.problem(), crate::StoreProblem::Conflict);
        assert!(
            error.to_string().contains(
                "the file was replaced on disk: this write was decided on the state of the file before (version 1), not on the one the path names now (version 1)"
            ),
            "{error}"
        );
        assert_eq!(stored_release(&dir.file("gate.db")).0, "Canary{20}");
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
        let evidence = gate.monitor_canary_health().evidence;
        let mut writer = shared.lock_writer();
        shared
            .rollback_locked(
                &mut writer,
                "burst".into(),
                automatic,
                Some(evidence.clone()),
            )
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
        commit_canary(shared, &mut writer, 1.0).unwrap();
        drop(writer);
        let reopened = gate_on(&path, 60_000, 5_000);
        assert_eq!(automatic_rollbacks(&reopened), 1, "one rollback stored");
        assert_eq!(automatic_rollbacks(&gate), 1, "counted once");
        assert_eq!(gate.rollback_history().len(), 1);
        // Found stored, it keeps the evidence its stored copy lacks (in this process).
        assert_eq!(gate.rollback_history()[0].evidence, Some(evidence));
        assert_eq!(reopened.rollback_history()[0].evidence, None);
    }
}
