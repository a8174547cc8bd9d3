//! A rollback published while the store could not be written: when a stored state settles
//! it, and how a host's write first writes it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::catch_up::{Local, catch_up};
use super::conflict;
use crate::config::{Environment, PromotionConfig};
use crate::error::Error;
use crate::history::RollbackEvent;
use crate::manager::{Shared, WriterState};
use crate::release;
use crate::store::{self, Guard, StoreError, StoreProblem};

/// Why a host's write is refused while a rollback waits to be written.
pub(super) const WAITING_ROLLBACK: &str = "a rollback this process made (automatic ones are written by the sync thread, one made while the store did not answer once it does) is not written yet, and this write waits for it";

#[derive(Debug, Clone)]
pub(super) struct Pending {
    /// Its history event (with the judge's evidence, when automatic).
    pub(super) event: Option<RollbackEvent>,
    /// Whether this rollback was written (or tried) as the first state of a store that lost
    /// its own ([`reseeding`](Self::reseeding)): shared by every copy of it, so that the
    /// sync thread's write, made without the writer lock, is known to a host's write that
    /// takes the lock before the sync thread applies it.
    pub(super) reseeded: Reseeded,
    /// The stored state it was decided on.
    pub(super) decided_on: Guard,
    /// The config of that state: a stored stage that differs from it only by flags turned on
    /// (or off) is the same release, which the rollback is written over.
    pub(super) decided_config: PromotionConfig,
    /// The rollout of the state decided on ([`StoredRelease::rollout`](store::StoredRelease::rollout);
    /// `None`: written by a build before the rollout was stored): the stored release is the
    /// same release exactly when it is of the same rollout.
    pub(super) decided_rollout: Option<u64>,
    /// The rolled-back config published here, written while the store still holds the state
    /// decided on (then it may be a promotion this process stored and the rollback won over,
    /// whose config, rolled back, would keep the flags it graduated; or a write of this
    /// process the rollback undoes, whose config, rolled back, would keep that write's
    /// changes); after another write, with that write's edits since the state decided on (see
    /// [`config_over`](Self::config_over)).
    pub(super) config: PromotionConfig,
}

/// How a stored state read after a rollback was deferred settles it.
#[derive(Debug, PartialEq)]
pub(super) enum Settled {
    /// The rollback is stored already (an earlier try whose answer was lost, or the sync
    /// thread's write racing a host's), by the write of this version.
    Written(u64),
    /// Another write made it pointless, or wrong: why, for the log, and the version of the
    /// write that stored the same rollback of the release, if one did (the same decision made
    /// first elsewhere, as when every worker of a host judges the pooled evidence: nothing
    /// for an operator; see [`Pending::same_rollback`]).
    Overtaken {
        why: String,
        same_rollback: Option<u64>,
    },
}

/// [`Pending::reseeded`]: shared by the copies of one rollback.
#[derive(Debug, Clone, Default)]
pub(super) struct Reseeded(Arc<Mutex<Reseed>>);

impl Reseeded {
    fn lock(&self) -> MutexGuard<'_, Reseed> {
        // The mark is one value, whole at any time: a panic elsewhere leaves it readable.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether a rollback was written as the first state of a store that lost its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Reseed {
    #[default]
    Never,
    /// Tried, not known to be stored: its answer not heard yet, or lost (the write may be
    /// stored), or a conflict (another process wrote the emptied store first: an identical
    /// event in its first state is the same rollback made at the same time).
    Tried,
    /// Stored by the write that made this state. Not a plain flag: `reseeded_as` is asked
    /// only of a state of the file decided on that did not go back, and a write into that
    /// file answers alike either way; but a host's write may read the old file just before
    /// the sync thread writes the first state of a new one (the file removed or replaced),
    /// and look at the mark after: an identical event at version 1 of the old file is then
    /// an older rollback made at the same wall time, which this tells apart (a plain flag
    /// would settle the rollback on that stale state, and the gate would follow the stage
    /// it rolled back until the next sync). While the write's answer is not known
    /// ([`Tried`](Self::Tried)) that window stays open.
    At(Guard),
}

impl Pending {
    /// Marks this rollback as about to be written as the first state of an emptied store (by
    /// the sync thread's catch-up, or a host's): until that write is known stored, an event
    /// the same as this rollback's at version 1, of whatever file, may be that write's.
    pub(super) fn reseeding(&self) {
        let mut mark = self.reseeded.lock();
        if *mark == Reseed::Never {
            *mark = Reseed::Tried;
        }
    }

    /// Marks this rollback as written by `written`, the first state of an emptied store: its
    /// event there (that version, of that file) is this rollback.
    pub(super) fn reseeded(&self, written: Guard) {
        *self.reseeded.lock() = Reseed::At(written);
    }

    /// Whether `stored`, an event of the stored release `release`, is the one this rollback's
    /// first-state write stored ([`reseeding`](Self::reseeding)): at the version that write
    /// made, in the file it wrote (at version 1 of any file while its answer is not known).
    fn reseeded_as(&self, stored: &store::StoredEvent, release: &store::StoredRelease) -> bool {
        match *self.reseeded.lock() {
            Reseed::Never => false,
            Reseed::Tried => stored.version == 1,
            Reseed::At(written) => {
                stored.version == written.version && !written.of_another_file(release.epoch)
            }
        }
    }

    /// Whether `state`, the stored state, settles this rollback without writing it: it holds
    /// the rollback already (its very event above the version decided on; at version 1 once
    /// this process wrote it, or tried to, as the first state of a store that lost its own
    /// ([`reseeded_as`](Self::reseeded_as)); at any version when the store went back below
    /// the version decided on or `state` is of another file, where the sync thread may have
    /// written it too; else such an event is an older rollback made at the same wall time);
    /// another release rollback was stored after the state it was decided on; a write since
    /// put the stored release in Production at another stage; or the stored release moved on to
    /// another stage (another process ramped, graduated or started the next rollout
    /// meanwhile: a stage that already left is not rolled back again, as on the record path).
    /// A stage whose config differs from the one decided on only by flags turned on (the same
    /// salt and split: a flag turned on, which starts a stage in Canary and Staging; flags
    /// turned off too, a kill switch keeps the release), of the same rollout, is the same
    /// release: the rollback is written over it; one of another rollout is the next release
    /// (a promotion to Production, then the next rollout at the same split; or the operator's
    /// `swap_config` that turned a release flag on, which starts a rollout), and the rollback
    /// is dropped ([`flags_turned_on_in`](Self::flags_turned_on_in)). A store that
    /// went back (a version at or below the one decided on) settles nothing: the rollback is
    /// written on top of it; neither does a state read from another file than the one decided
    /// on ([`of_another_file`](Self::of_another_file)), whatever its numbers and history
    /// (but for the rollback's own event, found there); nor does the very stage decided on in Production (a promotion
    /// this process stored, which the rollback won over, or one it followed, see `ended`,
    /// even with another process's write in Production on top of it), nor the promotion that
    /// ended the stage decided on directly ([`promoted_in`](Self::promoted_in): another
    /// process promoted the release this process's judge condemned, on the fleet's same
    /// evidence): the rollback is written over it, as over this process's own promotion.
    /// `None`: still to be written.
    pub(super) fn settled_by(&self, state: &store::StoredState) -> Option<Settled> {
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
        let release = &state.release;
        // Looked for above the state decided on; at or below it too when the store went back
        // below that state or is another file; and at version 1 once this process wrote it,
        // or tried to, as the first state of a store that lost its own (a host's write taking
        // the lock before the sync thread applied it; others' writes may have taken that
        // state since past the one decided on, into the next rollout too, and rows deleted in
        // place keep the file's epoch). Else an identical event at or below is an older
        // rollback made at the same wall time (a clock that repeats one: a `ManualClock` not
        // advanced, a host's clock that clamps), not this one, whether the gate still knows it
        // or not.
        let went_back = release.version < decided_on.version || self.of_another_file(release);
        let written = state
            .history
            .iter()
            .filter(|e| went_back || e.version > decided_on.version || self.reseeded_as(e, release))
            .find(|e| ours(e));
        if let Some(stored) = written {
            return Some(Settled::Written(stored.version));
        }
        if self.of_another_file(release) {
            // Its numbers and history are another file's: nothing in them was written since
            // the state decided on, and the rollback is written on top, as over a store that
            // went back.
            return None;
        }
        let other = since().find(|e| e.rolled_back == "release");
        let why = if let Some(other) = other {
            format!(
                "the store holds another rollback of the release since (version {}, {})",
                other.version,
                crate::error::quoted(&other.reason)
            )
        } else if self.promoted_in(release) {
            return None;
        } else if release.version <= decided_on.version || release.stage == decided_on.stage {
            // A store that went back settles nothing, in Production too (a backup restored).
            return None;
        } else if release.config.environment == Environment::Production {
            "the stored release is in Production".to_string()
        } else if !self.flags_turned_on_in(state) {
            format!(
                "the stored release moved on from stage {} it was decided on to stage {} ({}): a stage that already left is not rolled back again",
                decided_on.stage, release.stage, release.config.environment
            )
        } else {
            return None;
        };
        let same_rollback = other
            .filter(|other| self.same_rollback(other, release))
            .map(|other| other.version);
        Some(Settled::Overtaken { why, same_rollback })
    }

    /// Whether `stored` was read from another file than the state this rollback was decided
    /// on ([`Guard::epoch`]: a SQLite store's file replaced or removed on disk since): its
    /// version, stage and history tell nothing of that state's, however alike (a file made by
    /// another process holds another state at the very same numbers). A rollback decided on
    /// no state reads any state as a first one, as the store's own reads do.
    fn of_another_file(&self, stored: &store::StoredRelease) -> bool {
        self.decided_on.of_another_file(stored.epoch)
    }

    /// Whether `other`, the first release rollback stored after the state this rollback was
    /// decided on, is the same decision made first elsewhere: the very next write; or, when
    /// it is the stored release's own write, a rollback from the environment decided on, of
    /// the same rollout, at the stage right after the one decided on, so that every write
    /// between kept the stage decided on (a graduated flag turned off: a kill switch keeps
    /// the release). A rollback after a stage started since (a ramp, a flag turned on) is of
    /// another stage; one with writes on top is not told apart, and stays another rollback.
    fn same_rollback(&self, other: &store::StoredEvent, stored: &store::StoredRelease) -> bool {
        let decided_on = self.decided_on;
        other.version == decided_on.version.saturating_add(1)
            || (other.version == stored.version
                && stored.stage == decided_on.stage.saturating_add(1)
                && other.environment == self.decided_config.environment
                && self.same_rollout(stored) != Some(false))
    }
}

impl Pending {
    /// The config to write over `stored`, the stored release this rollback was not settled
    /// by ([`settled_by`](Self::settled_by)): over the state decided on (or a store that went
    /// back to a state in Production), the config rolled back here; over another process's
    /// write in Production on top of the state decided on (the promotion this process stored,
    /// which the rollback won over, or followed; the same stage: a flag edit, a swap of the
    /// policy), or over another process's promotion that ended the stage decided on (and a
    /// write in its stage), that write rolled back over ([`release::rolled_back_over`]): the
    /// flags the promotion graduated are taken back ([`promoted_flags`](Self::promoted_flags)),
    /// and that write's own edits stay (a flag turned on for the next rollout's forced
    /// requests, a graduated flag turned off: a kill switch), as a rollback changes the
    /// release, not the flags another process set since. Over a later state in Canary or
    /// Staging (a same-release stage, or the same stage), the config rolled back here with that
    /// state's edits since the state decided on kept
    /// ([`release::rolled_back_under`]): for a rollback that undoes this process's write (a
    /// swap that started a stage, its undo deferred by another process's write on top of it),
    /// the config before that write, as the undo made at once; a kill switch or a policy field
    /// swapped in since stays. Over a store that went back to a state in Canary or Staging,
    /// that state's config rolled back. Over a state of another file than the one decided on
    /// ([`of_another_file`](Self::of_another_file)), that state's config rolled back too (in
    /// Production, as it is: its flags turned on for the next rollout's forced requests
    /// kept), never the config rolled back here, which is the old file's: the new file's
    /// salt, overrides and graduated flags stay.
    pub(super) fn config_over(&self, stored: &store::StoredRelease) -> PromotionConfig {
        if self.of_another_file(stored) {
            // Nothing of the config rolled back here, which is the old file's: the new file's
            // release rolled back, in Production kept as it is.
            return release::rolled_back_over(&stored.config, &[]);
        }
        let decided_on = self.decided_on.version;
        if stored.version == decided_on {
            return self.config.clone();
        }
        if stored.config.environment != Environment::Production {
            if stored.version < decided_on {
                return release::rolled_back(&stored.config);
            }
            // Over the state decided on, the config rolled back here (of the release judged:
            // for a write this rollback undoes, the config before it); over it, the edits
            // made since.
            return release::rolled_back_under(&self.config, &self.decided_config, &stored.config);
        }
        if stored.version < decided_on {
            return self.config.clone();
        }
        release::rolled_back_over(&stored.config, &self.promoted_flags())
    }

    /// Whether `stored` is the promotion that ended the stage this rollback was decided on,
    /// directly: another process promoted the release judged (which its own judge found
    /// compliant) to Production, and this process's judge, on the fleet's same pooled evidence,
    /// condemned it. Precisely: decided in Canary or Staging, `stored` in Production at the
    /// very next stage (every process numbers the stored stages alike; a write on top of the
    /// promotion that kept its stage, a flag edit, is still that stage), with the same salt and
    /// no flag graduated but the release's (see [`promoted_flags`](Self::promoted_flags)). A
    /// later stage on top (the next rollout, promoted or not) is not, nor a store that went
    /// back: the rollback is dropped, or written on top, as for any other state. Nor is a
    /// promotion on top of a write of this process that this rollback undoes (a swap that
    /// started a stage as the judge called for the rollback of the one it ended, its undo
    /// deferred by another process's write on top: `config` is then the config before that
    /// write rolled back, not the one decided on rolled back): written over the promotion,
    /// the undone write's salt and policy would stay in Production. That rollback is dropped
    /// as "the stored release is in Production", as any rollback of a release another
    /// process promoted meanwhile was before (the host was told the write is undone; the
    /// promotion, made on the fleet's evidence, stands).
    fn promoted_in(&self, stored: &store::StoredRelease) -> bool {
        let decided = &self.decided_config;
        !self.undoes_a_write()
            && self.same_rollout(stored) != Some(false)
            && decided.environment != Environment::Production
            && stored.config.environment == Environment::Production
            && stored.version > self.decided_on.version
            && stored.stage == self.decided_on.stage.saturating_add(1)
            && decided.salt == stored.config.salt
            && !release::graduates_a_flag(
                &release::promoted(
                    decided,
                    Environment::Production,
                    release::PromotionKind::ToProduction,
                ),
                &stored.config,
            )
    }

    /// Whether this rollback undoes a write of this process (its undo deferred): its config
    /// is not the config decided on rolled back (the store key aside). An undone ramp or flag
    /// turned on rolls back to the same config as the stage it started (only the environment
    /// and the release flags differ, which a rollback sets), so it counts as a rollback of
    /// that stage; an undone salt or policy swap does not.
    fn undoes_a_write(&self) -> bool {
        // Without the store key on both sides: a gate that opened on an empty store decides
        // on its static config, which has it.
        let without_store = |config: PromotionConfig| PromotionConfig {
            store: None,
            ..config
        };
        without_store(self.config.clone())
            != without_store(release::rolled_back(&self.decided_config))
    }

    /// The flags the promotion this rollback is written over graduated, which it takes back:
    /// decided on that promotion (this process's own, which the rollback won over, or one it
    /// followed, see `ended`), the flags graduated there that the rollback made here does not
    /// keep; decided on the stage that promotion ended ([`promoted_in`](Self::promoted_in)),
    /// the release flags judged there.
    fn promoted_flags(&self) -> Vec<String> {
        if self.decided_config.environment != Environment::Production {
            return release::would_graduate(&self.decided_config);
        }
        self.decided_config
            .graduated_flags
            .iter()
            .filter(|flag| !self.config.graduated_flags.contains(flag))
            .cloned()
            .collect()
    }

    /// Whether `state`'s release is the config decided on with flags turned on, of the same
    /// release: the same salt, the same environment (and split, in Canary or Staging), the
    /// same rollout when both sides' are known ([`same_rollout`](Self::same_rollout): a
    /// promotion to Production and the next rollout started at the same split between, or the
    /// operator's swap of the next release, make it another release, however many flags were
    /// turned on meanwhile), and every stage since the one decided on started by flags turned
    /// on: any other stage between (a ramp and back) left the stage decided on, which is not
    /// rolled back again. Flags turned off since (a kill switch or a swap, release or
    /// graduated) keep the release, as they keep its stage; a swap in Canary that renames a
    /// graduated flag, or graduates a release flag, turns one on, and keeps the release (the
    /// rollback written over it takes that flag back, [`release::rolled_back_under`]).
    ///
    /// The stored rollout says it when it knows its first stage at its split and salt
    /// ([`StoredRelease::split_from`](store::StoredRelease::split_from)): at or before the
    /// stage decided on. Otherwise (a rollout stored without it) a flag turned on since, and no more stages since than
    /// times a flag was turned on ([`turned_on_since`](Self::turned_on_since)), as every write
    /// that turns flags on starts exactly one stage. Without a rollout known on either side (a
    /// state written by a build before the rollout was stored), that count is of the flags
    /// `state` turns on for the requests judged alone (in Canary a release flag graduated
    /// since too); either count errs toward dropping
    /// the rollback (the next stage's judge goes on) when a flag was turned off and on again
    /// between without its event kept, and the latter also takes flags turned on in
    /// Production before the next rollout at the same split for the same release.
    fn flags_turned_on_in(&self, state: &store::StoredState) -> bool {
        let (decided, stored) = (&self.decided_config, &state.release);
        let config = &stored.config;
        let same_rollout = self.same_rollout(stored) == Some(true);
        if let Some(split_from) = stored.split_from().filter(|_| same_rollout) {
            return decided.salt == config.salt
                && decided.environment == config.environment
                && config.environment != Environment::Production
                && stored.stage > self.decided_on.stage
                && split_from <= self.decided_on.stage;
        }
        let stages_since = stored.stage.saturating_sub(self.decided_on.stage);
        let turned_on = self.turned_on_since(state);
        decided.salt == config.salt
            && decided.environment == config.environment
            && config.environment != Environment::Production
            && turned_on > 0
            && self.same_rollout(stored) != Some(false)
            && u64::try_from(turned_on).is_ok_and(|turned_on| stages_since <= turned_on)
    }

    /// How many times at least a flag was turned on between the state decided on and
    /// `state`: each flag on in `state` and off in the config decided on once; and, when
    /// `state` is known to be of the rollout decided on ([`same_rollout`](Self::same_rollout)),
    /// each flag `state` turns on for the requests judged instead
    /// ([`release::flags_judged_on`]: in Canary a release flag graduated since too, which the
    /// stable cohort's requests get, as every write that turns one on for them starts a stage;
    /// not counted otherwise, as a promotion that graduated it and the next rollout at the same
    /// split look alike), and each flag turned off since by a kill switch (`disable_feature`,
    /// a `flag` event of the stored history) was turned on once more for each time it was turned off, less once if it
    /// is off in `state`, more once if it was on when decided on. (A flag turned off by a
    /// swap records no event, and a history trimmed to its bound keeps fewer: the count errs
    /// toward dropping the rollback. It is asked only of a rollout stored without its first
    /// stage at its split, [`StoredRelease::split_from`](store::StoredRelease::split_from).)
    /// In a rollout that left Production no more, every one of those turned a flag on in
    /// Canary or Staging, which starts a stage.
    fn turned_on_since(&self, state: &store::StoredState) -> usize {
        let (decided, config) = (&self.decided_config, &state.release.config);
        if self.same_rollout(&state.release) != Some(true) {
            // A release flag graduated since is not told from one a promotion graduated
            // before the next rollout started at the same split: not counted.
            return release::flags_turned_on(decided, config).len();
        }
        let turned_on = release::flags_judged_on(decided, config);
        let mut killed: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for event in &state.history {
            if event.version > self.decided_on.version && event.rolled_back == "flag" {
                *killed.entry(event.feature.as_str()).or_default() += 1;
            }
        }
        let on =
            |config: &PromotionConfig, flag: &str| usize::from(release::flag_is_on(config, flag));
        let never_killed = turned_on
            .iter()
            .filter(|flag| !killed.contains_key(*flag))
            .count();
        let after_kills: usize = killed
            .iter()
            .map(|(flag, kills)| (kills + on(config, flag)).saturating_sub(on(decided, flag)))
            .sum();
        never_killed + after_kills
    }

    /// Whether `stored` belongs to the rollout this rollback was decided on: the same number
    /// is the same release. A stored rollout started by a write after the state decided on is
    /// another release, even when the state decided on was written by a build before the
    /// rollout was stored. `None` when that does not settle it and either side's rollout is
    /// not known.
    fn same_rollout(&self, stored: &store::StoredRelease) -> Option<bool> {
        let started = stored.rollout()?;
        if started > self.decided_on.version {
            return Some(false);
        }
        Some(self.decided_rollout? == started)
    }

    /// Whether `state`, which overtook this rollback with the same rollback made first by
    /// another process (stored by the write of `version`, see [`Settled::Overtaken`]), counts
    /// it under the same cause: then this process's count of it moves to the stored counts.
    /// Under another cause (a manual rollback here, an automatic one there; automatic ones on
    /// different first rules) it stays counted here, as a dropped rollback does, so that no
    /// count goes down.
    pub(super) fn counted_by(&self, state: &store::StoredState, version: u64) -> bool {
        let stored = state.history.iter().find(|e| e.version == version);
        match (&self.event, stored.map(store::StoredEvent::to_event)) {
            (Some(own), Some(Ok(theirs))) => crate::telemetry::same_cause(own, &theirs),
            _ => false,
        }
    }
}

impl Shared {
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
    pub(super) fn settle_pending(&self, writer: &mut WriterState) -> Result<(), Error> {
        let Some(link) = writer.store.as_mut() else {
            return Ok(());
        };
        let Some(pending) = link.pending.clone() else {
            return Ok(());
        };
        let published = self.current.load_full();
        let local = Local::of(Arc::clone(&published), &link.counted);
        match catch_up(link.store.as_ref(), link.known, Some(&pending), &local) {
            Ok(Some(update)) => self.apply(writer, update)?,
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
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::super::tests::{answer_commits, automatic_rollbacks, config_on, gate_of, gate_on};
    use crate::store::scratch::{Scratch, backup, move_over, remove_store};
    use crate::store::{Commit, Guard, StateStore, StoreError, StoreProblem, StoredWrite};

    /// A gate on the SQLite file `path` whose sync thread is never woken: the test syncs by
    /// hand, between the steps it interleaves.
    fn quiet_gate_on(path: &str) -> crate::PromotionGateManager {
        let gate = gate_on(path, 60_000, 5_000);
        if let Some(link) = gate.shared.lock_writer().store.as_mut() {
            link.wake = None;
        }
        gate
    }

    /// An automatic rollback as the record path makes it: published, left to the sync thread.
    fn roll_back_automatically(gate: &crate::PromotionGateManager, reason: &str) {
        let shared = &gate.shared;
        let mut writer = shared.lock_writer();
        let automatic = crate::RollbackTrigger::Automatic;
        shared
            .rollback_locked(&mut writer, reason.into(), automatic, None)
            .unwrap();
    }

    /// The stored history's reasons, oldest first, read by a connection of its own.
    fn stored_reasons(path: &str) -> Vec<String> {
        let connection = rusqlite::Connection::open(path).unwrap();
        let mut query = connection
            .prepare("SELECT reason FROM history ORDER BY version")
            .unwrap();
        query
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_waiting_rollback_the_sync_thread_wrote_below_the_state_decided_on_is_not_written_again() {
        let dir = Scratch::new("pending-reseeded-race");
        let path = dir.file("gate.db");
        let gate = quiet_gate_on(&path);
        gate.enable_feature("a").unwrap();
        gate.enable_feature("b").unwrap();
        // Decided on version 3; then the file is removed.
        roll_back_automatically(&gate, "burst");
        remove_store(&path);
        // The sync thread gives the emptied store the gate's state, the rollback its event at
        // version 1, without the writer lock; a host's write takes the lock before the sync
        // thread applies what it wrote, and finds the rollback stored below version 3.
        let read = gate.shared.sync_read().unwrap();
        gate.enable_feature("x").unwrap();
        gate.shared.sync_apply(read);
        assert_eq!(stored_reasons(&path), ["burst"]);
        assert_eq!(automatic_rollbacks(&gate_on(&path, 60_000, 5_000)), 1);
        assert_eq!(automatic_rollbacks(&gate), 1);
        assert!(gate.is_feature_enabled("x"));
    }

    #[test]
    fn a_waiting_rollback_the_sync_thread_wrote_into_rows_deleted_in_place_is_not_written_again() {
        // Decided on version 1; on 3, the store then followed past it by another gate; or on
        // 3, of a rollout started there (a manual rollback, then the next rollout), the store
        // followed as far by another gate: the rows are deleted in place (the file, and its
        // epoch, stay); the sync thread gives the emptied store the gate's state, the rollback
        // its event at version 1 (of rollout 1, whatever rollout it was decided on); a host's
        // write takes the lock before the sync thread applies what it wrote. Another gate may
        // also have started the next rollout on that state (version 2, rollout 2, Canary),
        // with a flag turned on (version 3, the version decided on) or not: the rollback is
        // still the one at version 1, stored already, and counted once.
        for case in [
            "first",
            "followed",
            "next rollout",
            "followed into the next rollout",
            "first, then the next rollout",
        ] {
            let dir = Scratch::new(&format!(
                "pending-reseeded-in-place-{}",
                case.replace([' ', ','], "-")
            ));
            let path = dir.file("gate.db");
            let gate = quiet_gate_on(&path);
            match case {
                "followed" | "followed into the next rollout" => {
                    gate.enable_feature("a").unwrap();
                    gate.enable_feature("b").unwrap();
                }
                "next rollout" => {
                    gate.rollback("by hand").unwrap();
                    start_the_next_rollout(&gate);
                }
                _ => {}
            }
            roll_back_automatically(&gate, "burst");
            delete_rows_in_place(&path);
            let read = gate.shared.sync_read().unwrap();
            // Another gate follows the reseeded state as far as the one decided on, or past
            // it; or starts the next rollout on it.
            let next_rollout = case.ends_with("the next rollout");
            if case != "first" {
                let other = gate_on(&path, 60_000, 5_000);
                if next_rollout {
                    start_the_next_rollout(&other);
                }
                match case {
                    "first, then the next rollout" => {}
                    "followed into the next rollout" => other.enable_feature("c").unwrap(),
                    _ => {
                        other.enable_feature("c").unwrap();
                        other.enable_feature("d").unwrap();
                    }
                }
            }
            gate.enable_feature("x").unwrap();
            gate.shared.sync_apply(read);
            assert_eq!(stored_reasons(&path), ["burst"], "{case}");
            assert_eq!(automatic_rollbacks(&gate), 1, "{case}");
            let expected = if next_rollout {
                crate::Environment::Canary {
                    traffic_percent: 10.0,
                }
            } else {
                crate::Environment::Production
            };
            assert_eq!(stored_config(&path).1.environment, expected, "{case}");
        }
    }

    /// A gate as [`quiet_gate_on`] makes one, on a clock the test never advances: every
    /// rollback is made at the same wall time.
    fn quiet_gate_at_one_time(path: &str) -> crate::PromotionGateManager {
        let slo = crate::SloAdmissionController::new(crate::SloConfig::default()).unwrap();
        let clock = std::sync::Arc::new(crate::ManualClock::new());
        let config = config_on(path, 60_000, 5_000);
        let gate = crate::PromotionGateManager::with_clock(config, slo, clock).unwrap();
        if let Some(link) = gate.shared.lock_writer().store.as_mut() {
            link.wake = None;
        }
        gate
    }

    /// Deletes the stored release and history of the SQLite file `path` in place: the file,
    /// and its epoch, stay.
    fn delete_rows_in_place(path: &str) {
        rusqlite::Connection::open(path)
            .unwrap()
            .execute_batch("DELETE FROM history; DELETE FROM release;")
            .unwrap();
    }

    /// The host starts the next rollout from Production: a swap into Canary at 10 %.
    fn start_the_next_rollout(gate: &crate::PromotionGateManager) {
        let next = crate::PromotionConfig {
            environment: crate::Environment::Canary {
                traffic_percent: 10.0,
            },
            ..gate.config()
        };
        gate.swap_config(next).unwrap();
    }

    #[test]
    fn an_older_identical_event_does_not_settle_a_rollback_decided_again_at_the_same_time() {
        // The first rollback is written by the sync thread's tick; or, the rows deleted in
        // place while it waited, as the emptied store's first state, its event at version 1.
        for reseeded in [false, true] {
            let dir = Scratch::new(&format!("pending-same-time-{reseeded}"));
            let path = dir.file("gate.db");
            let gate = quiet_gate_at_one_time(&path);
            roll_back_automatically(&gate, "burst");
            if reseeded {
                delete_rows_in_place(&path);
            }
            gate.shared.sync_once();
            // The host starts the next rollout, and the same rollback is decided again on it,
            // with the very same event but for its version: it is written, not taken for the
            // first one.
            start_the_next_rollout(&gate);
            roll_back_automatically(&gate, "burst");
            gate.shared.sync_once();
            assert_eq!(stored_reasons(&path), ["burst", "burst"], "{reseeded}");
            let (version, stored) = stored_config(&path);
            assert_eq!(version, if reseeded { 3 } else { 4 });
            assert_eq!(stored.environment, crate::Environment::Production);
            assert_eq!(gate.environment(), crate::Environment::Production);
            assert_eq!(automatic_rollbacks(&gate), 2, "{reseeded}");
        }
    }

    #[test]
    fn a_same_time_rollback_reseeded_then_followed_to_the_version_decided_on_is_written_once() {
        // A clock that repeats wall times: the first rollback "burst" is stored (version 2),
        // the host starts the next rollout (version 3), and the same rollback is decided again
        // on it, its event the first one's but for the version. The rows are deleted in place
        // (the file, and its epoch, stay); the sync thread writes the emptied store's first
        // state with that event at version 1, and has not heard back yet; or heard no answer
        // (stored, the answer lost: the rollback still waits, marked as tried). Another gate
        // follows that state to the very version the rollback was decided on (3) before a
        // host's write takes the lock, which finds the rollback stored already: not written a
        // second time.
        for answer_lost in [false, true] {
            let dir = Scratch::new(&format!(
                "pending-same-time-reseeded-followed-{answer_lost}"
            ));
            let path = dir.file("gate.db");
            let gate = quiet_gate_at_one_time(&path);
            roll_back_automatically(&gate, "burst");
            gate.shared.sync_once();
            start_the_next_rollout(&gate);
            roll_back_automatically(&gate, "burst");
            if answer_lost {
                answer_commits(&gate, Box::new(losing_the_first_state_answer()));
            }
            delete_rows_in_place(&path);
            let mut read = Some(gate.shared.sync_read().unwrap());
            if answer_lost {
                gate.shared.sync_apply(read.take().unwrap());
                assert_eq!(stored_reasons(&path), ["burst"]);
                assert!(
                    gate.shared
                        .lock_writer()
                        .store
                        .as_ref()
                        .unwrap()
                        .has_pending()
                );
            }
            let other = gate_on(&path, 60_000, 5_000);
            other.enable_feature("c").unwrap();
            other.enable_feature("d").unwrap();
            assert_eq!(stored_config(&path).0, 3);
            gate.enable_feature("x").unwrap();
            if let Some(read) = read {
                gate.shared.sync_apply(read);
            }
            assert_eq!(
                stored_reasons(&path),
                ["burst"],
                "answer lost {answer_lost}"
            );
            let (version, stored) = stored_config(&path);
            assert_eq!(version, 4);
            assert_eq!(stored.environment, crate::Environment::Production);
            assert!(gate.is_feature_enabled("x"));
            assert_eq!(automatic_rollbacks(&gate), 2, "answer lost {answer_lost}");
        }
    }

    /// Commits as the store does, but the first write to an empty store (the first state of
    /// an emptied store), stored, is answered as if the store did not answer.
    fn losing_the_first_state_answer()
    -> impl Fn(&dyn StateStore, &StoredWrite) -> Result<Commit, StoreError> + Send + Sync {
        let lost = Mutex::new(false);
        move |store, write| {
            let committed = store.commit(write)?;
            let mut lost = lost.lock().unwrap();
            if write.guard != Guard::EMPTY || *lost {
                return Ok(committed);
            }
            *lost = true;
            Err(StoreError::new(
                store.location(),
                StoreProblem::Unavailable,
                "the answer lost by the test",
            ))
        }
    }

    /// The stored release's version and config, read by a connection of its own.
    fn stored_config(path: &str) -> (i64, crate::PromotionConfig) {
        let (version, config): (i64, String) = rusqlite::Connection::open(path)
            .unwrap()
            .query_row("SELECT version, config FROM release", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap();
        (version, serde_json::from_str(&config).unwrap())
    }

    /// Moves a copy of the SQLite file `made` over `gate`'s file `path` (as an operator
    /// restoring a backup does), then rolls `gate` back automatically ("burst") before it read
    /// the new file, and syncs once: the stored release then, in Production.
    fn rolled_back_over_a_moved_file(
        gate: &crate::PromotionGateManager,
        dir: &Scratch,
        made: &str,
        path: &str,
    ) -> (i64, crate::PromotionConfig) {
        let replacement = dir.file("replacement.db");
        backup(made, &replacement);
        move_over(&replacement, path);
        roll_back_automatically(gate, "burst");
        gate.shared.sync_once();
        let (version, stored) = stored_config(path);
        assert_eq!(stored.environment, crate::Environment::Production);
        (version, stored)
    }

    #[test]
    fn a_waiting_rollback_decided_on_a_replaced_file_is_written_over_the_new_files_config() {
        let dir = Scratch::new("pending-other-file");
        let path = dir.file("gate.db");
        // The gate knows version 1, stage 1 of its file; another file, made by another
        // process, holds another state at the very same numbers: another salt, overrides and
        // graduated flags.
        let gate = quiet_gate_on(&path);
        let made = dir.file("made.db");
        let header = crate::Overrides {
            header: Some("X-Canary".into()),
            ..Default::default()
        };
        let theirs = crate::PromotionConfig {
            salt: Some("other".into()),
            overrides: Some(header),
            graduated_flags: vec!["stable".into()],
            ..config_on(&made, 60_000, 5_000)
        };
        drop(gate_of(theirs.clone()));
        // A rollback deferred before the gate read the new file, decided on the old one, is
        // written over the new file's state, that state rolled back: its salt, overrides and
        // graduated flags kept, not the old file's config.
        let (version, stored) = rolled_back_over_a_moved_file(&gate, &dir, &made, &path);
        assert_eq!(version, 2);
        assert_eq!(stored.salt.as_deref(), Some("other"));
        assert_eq!(stored.overrides, theirs.overrides);
        assert_eq!(stored.graduated_flags, ["stable"]);
        assert_eq!(stored_reasons(&path), ["burst"]);
        assert_eq!(gate.config().salt.as_deref(), Some("other"));
        assert_eq!(automatic_rollbacks(&gate_on(&path, 60_000, 5_000)), 1);
    }

    #[test]
    fn a_waiting_rollback_decided_on_a_replaced_file_is_not_overtaken_by_its_history() {
        let dir = Scratch::new("pending-other-file-history");
        let path = dir.file("gate.db");
        let gate = quiet_gate_on(&path);
        // The new file holds an automatic rollback at version 2, right above the version the
        // gate knows of its old file, then a flag turned on in Production (for the next
        // rollout's forced requests).
        let made = dir.file("made.db");
        let other = gate_on(&made, 60_000, 5_000);
        roll_back_automatically(&other, "theirs");
        other.shared.sync_once();
        other.enable_feature("next").unwrap();
        drop(other);
        assert_eq!(stored_config(&made).0, 3);
        // Not taken for the same rollback made first elsewhere: written on top, the new
        // file's flag kept, and counted in the store.
        let (version, stored) = rolled_back_over_a_moved_file(&gate, &dir, &made, &path);
        assert_eq!(version, 4);
        assert_eq!(stored.feature_flags, ["next"]);
        assert_eq!(stored_reasons(&path), ["theirs", "burst"]);
        assert_eq!(automatic_rollbacks(&gate_on(&path, 60_000, 5_000)), 2);
        assert_eq!(automatic_rollbacks(&gate), 2);
    }
}
