//! A rollback the judge called for in a stage that a write ended (a promotion, a flag turned
//! on, a swap: [`NextStage::UnlessRolledBack`](super::stored::NextStage)) after that write's
//! last look for one before it published. The record path judged the snapshot of the stage
//! just before the new one was published, and left its verdict after that look (owed to the
//! writer lock's holder, or handed to the sync thread), or made it once the lock was free:
//! applied, it found its stage ended and was dropped with a warning, and a canary the judge
//! condemned stayed promoted. The write now remembers the stage it ended, and such a verdict
//! is made over the write: by the write itself, which looks once more after it published,
//! still under the writer lock, undoes itself so, and answers
//! [`PromotionError::SloNotMet`](crate::PromotionError::SloNotMet) naming the rule; after
//! that, by [`Shared::apply_verdict`], while the gate is still in the stage the write started
//! (the write was told it was made: the rollback takes back the release, and keeps the rest). A stage ended by a rollback (automatic or manual) is not remembered: the other
//! verdicts of a stage rolled back are dropped, as before. Nor is one ended by the next
//! release (a swap that turns a release flag on in Canary or Staging,
//! [`NextStage::NextRelease`](super::stored::NextStage)): its verdicts judged the release the
//! swap replaced, and are dropped, as another process's rollback waiting to be written is.
//!
//! With a state store and fleet judging every process judges the fleet's pooled evidence, and
//! the write that ends a stage may be another process's: process A promotes the canary its
//! judge found compliant, and process B's judge condemns it on the same evidence a moment
//! later. A process that follows another's promotion to Production starting the stored stage
//! right after the one it showed (not a rollback; see `catch_up`'s `apply`) remembers the
//! stage it ended here too, exactly as for a write of its own, so that its verdict of that
//! stage is made over the followed promotion, and written over it in the store as an
//! automatic rollback is. A verdict made before the process followed the promotion (its
//! rollback waiting to be written, decided on the stage the promotion ended) is written over
//! it by the sync thread (`pending`'s `promoted_in`). Either way the fleet follows the one
//! rollback. Only a promotion to Production: another process's stage in Canary or Staging (a
//! ramp, a swap of the split or the salt) has a judge of its own, which goes on, and this
//! process's verdict of the stage before is dropped, whether it comes before or after the
//! process followed that write. A flag turned on at the same split and salt is the same
//! release: a verdict waiting to be written when the process follows it is written over it
//! (`pending`), one made after is dropped. A further stage on top (the next rollout) ends the
//! remembered one: the verdict is dropped.

use super::stored::Durability;
use super::writes::Rollback;
use super::{Shared, WriterState};
use crate::config::{Environment, PromotionConfig};
use crate::decision::StageId;
use crate::error::{Error, RollbackError};
use crate::release;
use crate::snapshot::Snapshot;
use crate::verdict::Verdict;

/// The stage the gate's last stage-starting write ended (its own, or another process's it
/// followed from the store), kept under the writer lock until the next write publishes.
#[derive(Debug)]
pub(super) struct EndedStage {
    /// The stage the write ended: the stage a verdict names.
    judged: StageId,
    /// Its config: the release judged in it.
    config: PromotionConfig,
    /// The stage the write started.
    started: StageId,
    /// The generation of the snapshot the write published.
    generation: u64,
}

impl EndedStage {
    /// The stage of `before` that the write publishing `after` (its stage and generation, of
    /// the snapshot this process published for it) ends; `None` in Production, where the judge
    /// calls for no rollback.
    pub(super) fn new(before: &Snapshot, (started, generation): (StageId, u64)) -> Option<Self> {
        (before.config.environment != Environment::Production).then(|| Self {
            judged: before.route.stage,
            config: before.config.clone(),
            started,
            generation,
        })
    }
}

/// Where the rollback a write found left for later is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Instead {
    /// Before the write is published: the write is not made.
    OfTheWrite,
    /// Over the write, which published already (its look after it published).
    OverTheWrite,
}

impl Shared {
    /// Whether `verdict` judged the stage the gate's last stage-starting write ended, and the
    /// gate is still in the stage that write started: then its rollback is made over the
    /// write ([`roll_back_over_the_write`](Self::roll_back_over_the_write)). Called with the
    /// writer lock held.
    pub(super) fn ended_by_a_write(&self, writer: &WriterState, verdict: &Verdict) -> bool {
        let stage = self.current.load().route.stage;
        writer
            .ended
            .as_ref()
            .is_some_and(|ended| ended.judged == verdict.stage() && ended.started == stage)
    }

    /// Makes the rollback `verdict` calls for over the write that ended its stage, which the
    /// gate still shows, as a new stage; its event names the environment judged. For a write
    /// that is `refused` (its own look after it published), the config is the judged one
    /// rolled back, as if the rollback had been found before the write: the write is not
    /// made. Otherwise (the write was told it was made) back to Production, the release's
    /// flags off and the flags it graduated taken back, anything else the write (or a write
    /// since in its stage) changed kept (see [`release::rolled_back_over`]). Written as
    /// `durability` says (`None`: as an automatic rollback, deferred). Called with the writer
    /// lock held.
    ///
    /// # Errors
    /// [`RollbackError::NothingToRollBack`] when no write ended a stage; otherwise as the
    /// rollback's commit (nothing changed then, and the ended stage is still remembered).
    pub(super) fn roll_back_over_the_write(
        &self,
        writer: &mut WriterState,
        verdict: &Verdict,
        durability: Option<Durability>,
        refused: bool,
    ) -> Result<(), Error> {
        let Some(ended) = writer.ended.take() else {
            return Err(RollbackError::NothingToRollBack.into());
        };
        let config = if refused {
            release::rolled_back(&ended.config)
        } else {
            let current = self.current.load_full();
            release::rolled_back_over(&current.config, &release::would_graduate(&ended.config))
        };
        let rollback = Rollback {
            config,
            previous: ended.config.environment,
            trigger: crate::RollbackTrigger::Automatic,
        };
        let reason = verdict.rollback_reason();
        let evidence = Some(verdict.evidence().clone());
        let made = self.roll_back_to(writer, rollback, reason, evidence, durability);
        if made.is_err() {
            writer.ended = Some(ended);
        }
        made
    }

    /// A write's last look, after it published a stage `published_before` (the generation the
    /// gate showed before the write) did not know, still under the writer lock: a rollback the
    /// record path left for later in the stage the write ended is made over the write (with a
    /// store, written over it as the write was), undoing it, and the write answers
    /// [`PromotionError::SloNotMet`](crate::PromotionError::SloNotMet) naming the rule.
    ///
    /// # Errors
    /// That refusal.
    pub(super) fn look_after_publishing(
        &self,
        writer: &mut WriterState,
        published_before: u64,
    ) -> Result<(), Error> {
        let Some(judged) = writer
            .ended
            .as_ref()
            .filter(|ended| ended.generation > published_before)
            .map(|ended| ended.judged)
        else {
            return Ok(());
        };
        if !self.current.load().config.auto_rollback_enabled {
            return Ok(());
        }
        let Some(verdict) = self.take_left(judged) else {
            return Ok(());
        };
        if !self.ended_by_a_write(writer, &verdict) {
            // The write published again since (none does today): applied as any other.
            self.apply_verdict(writer, &verdict);
            return Ok(());
        }
        let durability = writer.store.is_some().then_some(Durability::BestEffort);
        Err(self.roll_back_instead(writer, &verdict, durability, Instead::OverTheWrite))
    }
}
