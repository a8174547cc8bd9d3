//! What a store keeps of a gate: the release (its version, stage and config) and the history,
//! in a form every backend writes the same way.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

use crate::config::{Environment, PromotionConfig, check_name};
use crate::error::{ConfigError, quoted};
use crate::history::{RollbackEvent, RollbackTrigger, RolledBack, bytes_without_evidence};
use crate::judge::Rule;
use crate::limits::{MAX_REASON_BYTES, MAX_ROLLBACK_HISTORY_BYTES};
use crate::telemetry::{RollbackCount, RollbackTally};

/// The stored schema's version. A store written with a newer one is refused, never guessed at.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// The release as stored: which write made it, its stage and its config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredRelease {
    /// The write that made this state: 1 for the first, one more per committed write.
    pub(crate) version: u64,
    /// The release stage ([`StageId`](crate::StageId)) of this state.
    pub(crate) stage: u64,
    /// The config, without its `store` key (where the state lives is not part of it).
    pub(crate) config: PromotionConfig,
    /// Every rollback event the gate's writes stored, counted by cause: unlike the history,
    /// never trimmed, so a process that opens the store goes on from the exact counts. `None`
    /// in a release written before the counts were stored: the history's events are counted
    /// instead ([`StoredState::rollback_counts`]). Absent then, never `null` ([`never_null`]).
    #[serde(
        default,
        deserialize_with = "never_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) rollbacks: Option<StoredTally>,
    /// The rollout (the release) this state belongs to: what tells a rollback waiting to be
    /// written whether the stored release is still the one it was decided on. `None` in a
    /// release written before it was stored ([`StoredRelease::rollout`]). Absent then, never
    /// `null` ([`never_null`]).
    #[serde(
        default,
        deserialize_with = "never_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) rollout: Option<StoredRollout>,
    /// The epoch ([`Guard::epoch`]) of the store's file this release was read from or written
    /// in: what the process knows of, not stored (a SQLite store's count of the files it
    /// followed its path to; etcd's is always 0).
    #[serde(skip)]
    pub(crate) epoch: u64,
}

/// An optional field of a stored release read as present: `None` only when it is absent
/// (`#[serde(default)]`). `null`, which no build writes (an absent field is left out), is
/// refused, naming the field (`release.rollout: null: ...`), as SQLite refuses a column that
/// holds the text `null`: a value of a hand edit or another program is not ours, whichever
/// backend holds it.
fn never_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    match Option::<T>::deserialize(deserializer)? {
        Some(value) => Ok(Some(value)),
        None => Err(serde::de::Error::custom(
            "null: not one this build writes (absent, the field is left out)",
        )),
    }
}

/// The stored rollout, as of the write of `version`: the release's own version when this
/// build wrote it. An older one is what a build before the rollout was stored left when it
/// wrote the release (SQLite keeps the column it does not know), and tells nothing: that
/// write may have started a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredRollout {
    pub(crate) version: u64,
    /// The version of the write that started the rollout: the first write of the store, one
    /// that left Production for Canary or Staging (a new rollout, or a `swap_config` out of
    /// Production), or a `swap_config` that turned a release flag on in Canary or Staging (the
    /// operator's replacement: the next release, even at the same split). Every other write
    /// keeps it (a ramp, a promotion, a rollback, a flag edit, a swap that turns no release
    /// flag on), so that the same number is the same release, whatever flags or stages came
    /// between.
    pub(crate) started: u64,
    /// The first stage of the rollout at its split and salt: the stage of the rollout's latest
    /// write that started a stage otherwise than by turning flags on at the environment and
    /// salt of the release it was written over (the write that started the rollout, a ramp,
    /// a swap of the salt, a promotion, a rollback). A stage started by flags turned on keeps
    /// it, whatever flags were turned off before (by a kill switch or a swap, which stores no
    /// event), so that a rollback waiting to be written, decided on this stage or a later
    /// one, tells that every stage since was started by flags turned on: the same release.
    /// `None` (absent) in a rollout stored before it was; then it stays unknown until such a
    /// write. Absent then, never `null` ([`never_null`]). SQLite keeps it in a column of its
    /// own (`rollout_split_from`), which a build before it neither reads nor writes.
    #[serde(
        default,
        deserialize_with = "never_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) split_from: Option<u64>,
}

/// `split_from` ([`StoredRollout::split_from`]) of a release at `stage`, as the store's field
/// `field` holds it, or why it is not one this build writes: from 1 to that stage. Each backend
/// names the field where it keeps it: etcd `release.rollout.split_from` (inside the rollout,
/// [`StoredRelease::checked`]), SQLite `release.rollout_split_from.split_from` (a column of its
/// own, checked when read, whatever version it is as of).
pub(crate) fn checked_split_from(split_from: u64, stage: u64, field: &str) -> Result<u64, String> {
    if split_from == 0 || split_from > stage {
        return Err(format!(
            "{field} = {split_from}: from 1 to the release's stage {stage} (the first stage of \
             the rollout at its split and salt)"
        ));
    }
    Ok(split_from)
}

/// What a write's rollout follows from: the stored release it is written over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RolloutOn<'a> {
    /// That release's rollout ([`StoredRelease::rollout`]; `None`: not known).
    pub(crate) rollout: Option<u64>,
    /// The first stage of that rollout at its split and salt ([`StoredRollout::split_from`];
    /// `None`: not known).
    pub(crate) split_from: Option<u64>,
    /// That release's config (`None`: not known), which tells whether the write starts a stage
    /// by turning flags on at its environment and salt.
    pub(crate) config: Option<&'a PromotionConfig>,
    /// Whether that release is in Production: a write out of it starts a rollout.
    pub(crate) production: bool,
    /// Whether the write is the next release over it: an operator's `swap_config` that turns
    /// a release flag on in Canary or Staging ([`next_release`](Self::next_release)), which
    /// starts a rollout wherever it is written.
    pub(crate) next_release: bool,
}

impl<'a> RolloutOn<'a> {
    /// A release whose rollout is not known, in Canary or Staging: what the tests write on
    /// when they do not say (a store written by a build before the rollout was stored).
    #[cfg(test)]
    pub(crate) const UNKNOWN: RolloutOn<'static> = RolloutOn {
        rollout: None,
        split_from: None,
        config: None,
        production: false,
        next_release: false,
    };

    /// The rollout of `release` and its config.
    pub(crate) fn of(release: &'a StoredRelease) -> Self {
        Self::new(release.known_rollout(), &release.config)
    }

    /// A release of rollout `rollout` ([`StoredRelease::known_rollout`]) with `config`.
    pub(crate) fn new(rollout: Option<StoredRollout>, config: &'a PromotionConfig) -> Self {
        Self {
            rollout: rollout.map(|rollout| rollout.started),
            split_from: rollout.and_then(|rollout| rollout.split_from),
            config: Some(config),
            production: config.environment == Environment::Production,
            next_release: false,
        }
    }

    /// The same, written over by the next release: the operator's replacement of the release
    /// (a `swap_config` that turns a release flag on in Canary or Staging), which starts a
    /// rollout even at the split and salt of the one it replaces, so that a rollback decided
    /// on the release before is never written over it.
    pub(crate) fn next_release(self) -> Self {
        Self {
            next_release: true,
            ..self
        }
    }

    /// The rollout of the write of `version` over it at `stage` with `config`: started by that
    /// write when it starts one (over an empty store, `guard` version 0; out of Production; or
    /// the next release, [`next_release`](Self::next_release)), else this one (`None` stays
    /// `None` until a write starts a rollout). Its first stage at its split and salt is the
    /// write's stage when the write starts a stage otherwise than by turning flags on at the
    /// environment and salt of the release it is written over, else this one's.
    fn next(
        self,
        guard: Guard,
        version: u64,
        stage: u64,
        config: &PromotionConfig,
    ) -> Option<StoredRollout> {
        let starts = guard.version == 0
            || self.next_release
            || (self.production && config.environment != Environment::Production);
        if starts {
            return Some(StoredRollout {
                version,
                started: version,
                split_from: Some(stage),
            });
        }
        let flags_turned_on = |before: &PromotionConfig| {
            before.environment == config.environment
                && before.effective_salt() == config.effective_salt()
                && crate::release::turns_a_flag_on(before, config)
        };
        let split_from = if stage == guard.stage || self.config.is_some_and(flags_turned_on) {
            self.split_from
        } else {
            Some(stage)
        };
        self.rollout.map(|started| StoredRollout {
            version,
            started,
            split_from,
        })
    }
}

/// The stored rollback counts, as of the write of `version`: the release's own version when
/// this build wrote it. An older one is what a build before the counts left when it wrote
/// the release (SQLite keeps the column it does not know): its events since are counted on
/// top ([`StoredState::rollback_counts`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredTally {
    pub(crate) version: u64,
    pub(crate) counts: Vec<StoredCount>,
}

/// One cause's count as stored: the trigger's name, the first fired rule's name (automatic
/// rollbacks only, and not always: a reason edited by hand may name none) and the count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredCount {
    pub(crate) trigger: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rule: Option<String>,
    pub(crate) count: u64,
}

impl StoredCount {
    fn of(count: &RollbackCount) -> Self {
        Self {
            trigger: count.trigger.name().to_string(),
            rule: count.rule.map(|rule| rule.name().to_string()),
            count: count.count,
        }
    }

    /// The count it stores, or what in it is not one, naming the field (`at`: its place).
    fn read(&self, at: usize) -> Result<RollbackCount, String> {
        let field = |name: &str, value: &str, expected: &str| {
            format!(
                "release.rollbacks.counts[{at}].{name} = {}: {expected}",
                quoted(value)
            )
        };
        let trigger = [
            RollbackTrigger::Manual,
            RollbackTrigger::Automatic,
            RollbackTrigger::FlagDisabled,
        ]
        .into_iter()
        .find(|trigger| trigger.name() == self.trigger)
        .ok_or_else(|| {
            field(
                "trigger",
                &self.trigger,
                "manual, automatic or flag_disabled",
            )
        })?;
        let rule = match (&self.rule, trigger) {
            (None, _) => None,
            (Some(name), RollbackTrigger::Automatic) => Some(
                Rule::ALL
                    .iter()
                    .copied()
                    .find(|rule| rule.name() == name)
                    .ok_or_else(|| field("rule", name, "the name of one of the judge's rules"))?,
            ),
            (Some(name), _) => {
                return Err(field(
                    "rule",
                    name,
                    "none: only an automatic rollback has a rule",
                ));
            }
        };
        Ok(RollbackCount {
            trigger,
            rule,
            count: self.count,
        })
    }
}

/// `counts` as stored with the write of `version`.
fn stored_tally(version: u64, counts: &[RollbackCount]) -> StoredTally {
    StoredTally {
        version,
        counts: counts.iter().map(StoredCount::of).collect(),
    }
}

/// The highest version or stage a store holds: SQLite's largest integer, `i64::MAX`, for every
/// backend. A read of more (an etcd value edited by hand) is refused, and so is a write that
/// would number past it ([`StoredWrite::numbers_checked`]): a gate never writes a state that
/// it, or another process, would then refuse to read. Only a hand edit gets near it.
pub(crate) const MAX_STORED_NUMBER: u64 = i64::MAX as u64;

/// `version`, read as a stored release's: at least 1 (the first write stores 1). Version 0
/// is what a process knows of a store with no state ([`Guard::EMPTY`]), so a
/// release stored with it (only a hand edit makes one) would read as no state at all, and the
/// next write would replace it and its history: it is refused instead, by every backend's read
/// and commit, naming it.
pub(crate) fn stored_version(version: u64) -> Result<u64, String> {
    if version == 0 {
        return Err(
            "release.version = 0: a stored release's version is at least 1 (the \
             first write stores 1; 0 is no state at all): a store edited by hand"
                .to_string(),
        );
    }
    Ok(version)
}

impl PartialEq for StoredRelease {
    /// The same release, whichever file of the store it was read from or written in: the
    /// epoch is what the reading store counts, not part of the release (two stores on one
    /// file may count it differently).
    fn eq(&self, other: &Self) -> bool {
        let Self {
            version,
            stage,
            config,
            rollbacks,
            rollout,
            epoch: _,
        } = self;
        (version, stage, config, rollbacks, rollout)
            == (
                &other.version,
                &other.stage,
                &other.config,
                &other.rollbacks,
                &other.rollout,
            )
    }
}

impl StoredRelease {
    /// The release as written in the store's file of `epoch` (see [`Commit::Written`]).
    pub(crate) fn in_epoch(self, epoch: u64) -> Self {
        Self { epoch, ..self }
    }

    /// Its version or stage above [`MAX_STORED_NUMBER`], named, if either is.
    fn past_the_last_number(&self) -> Option<(&'static str, u64)> {
        [("version", self.version), ("stage", self.stage)]
            .into_iter()
            .find(|&(_, value)| value > MAX_STORED_NUMBER)
    }

    /// Checks a release read from the store of the gate called `gate`, which another process
    /// or a hand edit may have written: its config valid and of that gate (the gate would
    /// otherwise run under the stored name), its version and stage at most
    /// [`MAX_STORED_NUMBER`], its version and stage at least 1.
    /// Every backend reads its release through it. The error names the field and its value.
    pub(crate) fn checked(self, gate: &str) -> Result<Self, String> {
        stored_version(self.version)?;
        if self.stage == 0 {
            // Stage 0 is no stage ([`Guard::EMPTY`]'s); a gate would show it as stage 1.
            return Err(
                "release.stage = 0: a stored release's stage is at least 1 (stages \
                 are numbered from 1, which the first write stores): a store edited by hand"
                    .to_string(),
            );
        }
        if let Some((field, value)) = self.past_the_last_number() {
            return Err(format!(
                "release.{field} = {value}: at most {MAX_STORED_NUMBER} (SQLite's largest \
                 integer, the last number a store holds)"
            ));
        }
        self.config
            .validate()
            .map_err(|e| format!("release.config: {e}"))?;
        self.stored_tally()?;
        self.checked_rollout()?;
        if self.config.gate != gate {
            return Err(format!(
                "release.config.gate = {}: the state of another gate, this one is {} (the gate's name keys its stored state)",
                quoted(&self.config.gate),
                quoted(gate)
            ));
        }
        Ok(self)
    }

    /// Its stored rollout, or what in it is not one this build writes: as of a version at
    /// most the release's, started by a write from 1 to that version.
    fn checked_rollout(&self) -> Result<(), String> {
        let Some(rollout) = self.rollout else {
            return Ok(());
        };
        if rollout.version > self.version {
            return Err(format!(
                "release.rollout.version = {}: at most the release's version {} (the write \
                 that stored the rollout)",
                rollout.version, self.version
            ));
        }
        if rollout.started == 0 || rollout.started > rollout.version {
            return Err(format!(
                "release.rollout.started = {}: from 1 to the rollout's version {} (the \
                 version of the write that started the rollout)",
                rollout.started, rollout.version
            ));
        }
        if let Some(split_from) = rollout.split_from {
            checked_split_from(split_from, self.stage, "release.rollout.split_from")?;
        }
        Ok(())
    }

    /// The rollout this release belongs to (the version of the write that started it), when
    /// known: stored by the write that made the release. `None` in a release written before
    /// it was stored, or by such a build since (its rollout is as of an older version).
    pub(crate) fn rollout(&self) -> Option<u64> {
        self.known_rollout().map(|rollout| rollout.started)
    }

    /// Its stored rollout when known ([`rollout`](Self::rollout)): as of the release's own
    /// version.
    pub(crate) fn known_rollout(&self) -> Option<StoredRollout> {
        self.rollout
            .filter(|rollout| rollout.version == self.version)
    }

    /// The first stage of its rollout at the rollout's split and salt
    /// ([`StoredRollout::split_from`]), when known.
    pub(crate) fn split_from(&self) -> Option<u64> {
        self.known_rollout().and_then(|rollout| rollout.split_from)
    }

    /// Its stored rollback counts and the version they are as of, read, or what in them is
    /// not counts this build writes: each a cause it knows, each cause once, as of a version
    /// at most the release's. `None` in a release written before the counts were stored.
    pub(crate) fn stored_tally(&self) -> Result<Option<(u64, RollbackTally)>, String> {
        let Some(stored) = &self.rollbacks else {
            return Ok(None);
        };
        if stored.version > self.version {
            return Err(format!(
                "release.rollbacks.version = {}: at most the release's version {} (the write \
                 that stored the counts)",
                stored.version, self.version
            ));
        }
        let mut counts: Vec<RollbackCount> = Vec::with_capacity(stored.counts.len());
        for (at, count) in stored.counts.iter().enumerate() {
            let count = count.read(at)?;
            if counts
                .iter()
                .any(|c| c.trigger == count.trigger && c.rule == count.rule)
            {
                return Err(format!(
                    "release.rollbacks.counts[{at}]: a second count of {}{}",
                    count.trigger.name(),
                    count
                        .rule
                        .map_or(String::new(), |rule| format!(" ({})", rule.name()))
                ));
            }
            counts.push(count);
        }
        Ok(Some((stored.version, RollbackTally::of(counts))))
    }

    /// The most history events a store holds with this release, and so the most a read of
    /// it takes (the newest): its config's `max_rollback_history`, to which every write trims
    /// the stored history (a write that lowers it trims at once; raising it brings none back).
    pub(crate) fn history_bound(&self) -> usize {
        self.config.max_rollback_history.max(1)
    }
}

/// One rollback event as stored. The structured evidence of an automatic rollback stays in
/// the process that judged; its text is part of `reason`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredEvent {
    /// The write that recorded the event (its [`StoredRelease::version`]).
    pub(crate) version: u64,
    /// `release` or `flag`.
    pub(crate) rolled_back: String,
    /// The environment rolled back from, or the flag's name.
    pub(crate) feature: String,
    pub(crate) reason: String,
    /// `manual`, `automatic` or `flag_disabled`.
    pub(crate) trigger: String,
    pub(crate) environment: Environment,
    /// Nanoseconds since the Unix epoch (negative before it).
    pub(crate) timestamp_ns: i64,
}

/// A gate's stored state: the release and the history, oldest event first.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredState {
    pub(crate) release: StoredRelease,
    pub(crate) history: Vec<StoredEvent>,
}

impl StoredState {
    /// The gate's rollback counts in this state: the release's stored counts, and the events
    /// stored after the write that stored them (those a build before the counts wrote;
    /// without stored counts, every event the history holds). `known`: this state was read
    /// after a state the process knows, at that version with those counts, and its history
    /// holds only the events since; counts stored before that version are replaced by the
    /// known ones, so events between the two are not lost.
    pub(crate) fn rollback_counts(
        &self,
        known: Option<(u64, &RollbackTally)>,
    ) -> Result<RollbackTally, String> {
        let (mut after, mut tally) = self.release.stored_tally()?.unwrap_or_default();
        if let Some((since, counted)) = known
            && after < since
        {
            (after, tally) = (since, counted.clone());
        }
        for event in self.history.iter().filter(|e| e.version > after) {
            tally.count(&event.to_event()?);
        }
        Ok(tally)
    }

    /// Checks a state read from a store (the release already checked, the history read
    /// through [`NewestFirst`], which checked each event's fields, oldest first): each
    /// event's version, the one of the write that recorded it, so from 1 to the release's
    /// and increasing. Every backend reads its state through it. The error names the field
    /// and its value.
    pub(crate) fn checked(self) -> Result<Self, String> {
        let mut previous = 0;
        for event in &self.history {
            let version = event.version;
            if version == 0 || version > self.release.version || version <= previous {
                return Err(format!(
                    "invalid history.version = {version}: from {} to the release's version {}",
                    previous + 1,
                    self.release.version
                ));
            }
            previous = version;
        }
        Ok(self)
    }
}

/// A history read newest first, kept as far as the gate's history keeps it: at most the
/// release's [`history_bound`](StoredRelease::history_bound) events within
/// [`MAX_ROLLBACK_HISTORY_BYTES`] as the history counts them (the newest always kept), so that
/// a backend stops reading there instead of reading events that would be dropped at once.
#[derive(Debug)]
pub(crate) struct NewestFirst {
    events: Vec<StoredEvent>,
    bytes: usize,
    bound: usize,
}

impl NewestFirst {
    /// An empty read of at most `bound` events.
    pub(crate) fn new(bound: usize) -> Self {
        Self {
            events: Vec::new(),
            bytes: 0,
            bound,
        }
    }

    /// Takes the next older event; false, and the event is not taken, when the history would
    /// not keep it (nothing older would be kept either). An event whose fields are not an
    /// event's ([`StoredEvent::to_event`]) is refused as it is read, naming it, so that a
    /// read holds no more than the events it counts: the texts the count leaves out
    /// (`rolled_back`, `trigger`) are then a few bytes each.
    pub(crate) fn take(&mut self, event: StoredEvent) -> Result<bool, String> {
        let flag = (event.rolled_back == "flag").then_some(event.feature.as_str());
        let bytes = bytes_without_evidence(&event.feature, &event.reason, flag);
        let full = self.events.len() >= self.bound
            || (!self.events.is_empty() && self.bytes + bytes > MAX_ROLLBACK_HISTORY_BYTES);
        if full {
            return Ok(false);
        }
        event.to_event()?;
        self.bytes += bytes;
        self.events.push(event);
        Ok(true)
    }

    /// How many more events it would take at most.
    #[cfg(feature = "etcd")]
    pub(crate) fn room(&self) -> usize {
        self.bound.saturating_sub(self.events.len())
    }

    /// The events taken, oldest first.
    pub(crate) fn oldest_first(mut self) -> Vec<StoredEvent> {
        self.events.reverse();
        self.events
    }
}

/// The stored state a write was decided on: its version, which the store compares (0 means an
/// empty store: the gate's first write), its stage, from which the write's stage follows, and
/// the epoch of the store's file it was read from or written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Guard {
    pub(crate) version: u64,
    pub(crate) stage: u64,
    /// Which of the files a SQLite store followed its path to holds this state: 0 for the
    /// file the store opened first, one more for each file it opened in place of another (the
    /// path's file removed or replaced on disk). A version and stage tell nothing across
    /// files (a new file may hold another state at the same numbers): a state known of
    /// another epoch than the open file's is read whole, and a write decided on it, or a
    /// contribution to its stage, is refused as a conflict. Always 0 with etcd.
    pub(crate) epoch: u64,
}

impl Guard {
    /// An empty store: no state written yet (version 0).
    pub(crate) const EMPTY: Self = Self {
        version: 0,
        stage: 0,
        epoch: 0,
    };

    /// Whether this state was read from (or written in) another file than the one of `epoch`
    /// ([`epoch`](Self::epoch)): then its version and stage tell nothing of that file's
    /// state. A guard of no state (version 0) is of no file: it reads any state as a first
    /// one.
    pub(crate) fn of_another_file(self, epoch: u64) -> bool {
        self.version != 0 && self.epoch != epoch
    }
}

/// One write: the state it was decided on, the release it makes and the history event it
/// records, committed together or not at all.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredWrite {
    pub(crate) guard: Guard,
    /// The new release; its version is `guard.version + 1`.
    pub(crate) release: StoredRelease,
    /// The event this write records, with `version == release.version`.
    pub(crate) event: Option<StoredEvent>,
    /// How many events the stored history keeps; older ones are deleted in the same write.
    pub(crate) history_bound: usize,
    /// The rollback counts the release stores (those of `guard`'s state, and the event).
    pub(crate) counts: RollbackTally,
}

impl StoredWrite {
    /// The write that moves the state at `guard`, whose rollback counts are `counted` and
    /// whose rollout is `on`'s, to `stage` with `config`, recording `event` (and counting
    /// it).
    pub(crate) fn new(
        guard: Guard,
        on: RolloutOn,
        counted: &RollbackTally,
        stage: u64,
        config: &PromotionConfig,
        event: Option<&RollbackEvent>,
    ) -> Self {
        let version = guard.version + 1;
        let rollout = on.next(guard, version, stage, config);
        let mut config = config.clone();
        config.store = None;
        let history_bound = config.max_rollback_history;
        let mut counts = counted.clone();
        if let Some(event) = event {
            counts.count(event);
        }
        Self {
            guard,
            release: StoredRelease {
                version,
                stage,
                config,
                rollbacks: Some(stored_tally(version, counts.counts())),
                rollout,
                // Where it is written, if it is: where the state it was decided on is (a
                // write decided on no state, wherever the store is then: [`Commit::Written`]).
                epoch: guard.epoch,
            },
            event: event.map(|e| StoredEvent::from_event(version, e)),
            history_bound,
            counts,
        }
    }

    /// Refuses a write whose version or stage would pass [`MAX_STORED_NUMBER`] (a release a
    /// hand edit numbered there): no write can follow it, and retrying cannot help. Every
    /// backend checks it before writing; the error names the field and its value.
    pub(crate) fn numbers_checked(&self) -> Result<(), String> {
        match self.release.past_the_last_number() {
            Some((field, value)) => Err(format!(
                "release.{field} = {value}: past {MAX_STORED_NUMBER}, SQLite's largest integer \
                 and the last number a store holds (the stored release was numbered there by \
                 hand: no write can follow it)"
            )),
            None => Ok(()),
        }
    }
}

/// The outcome of a commit that reached the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// The write is stored, in the store's file of `epoch` ([`Guard::epoch`]): the guard's,
    /// for a write decided on a state; for one decided on none, the file the store had open.
    Written { epoch: u64 },
    /// The stored state is not the one the write was decided on (another writer won, or the
    /// store was created meanwhile): nothing was written. `stored_version` is the stored
    /// state's version (0: none); `another_file`: the write was decided on a state of another
    /// [`Guard::epoch`] (a SQLite file replaced on disk since), whatever the numbers.
    Conflict {
        stored_version: u64,
        another_file: bool,
    },
}

impl StoredEvent {
    pub(crate) fn from_event(version: u64, event: &RollbackEvent) -> Self {
        let timestamp_ns = match event.timestamp.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_nanos()).map_or(i64::MIN, |n| -n),
        };
        Self {
            version,
            rolled_back: event.rolled_back.kind().to_string(),
            feature: event.feature.clone(),
            reason: event.reason.clone(),
            trigger: event.trigger.name().to_string(),
            environment: event.environment,
            timestamp_ns,
        }
    }

    /// The event as the gate's history holds it, or what in it is not one this build writes,
    /// naming the field and its value: `rolled_back` and `trigger` among their words and
    /// matching (a flag is rolled back by `flag_disabled`, a release manually or
    /// automatically), `feature` a name (the flag's, or the environment's text: at most
    /// [`MAX_NAME_BYTES`](crate::MAX_NAME_BYTES) bytes, no whitespace), `reason` at most
    /// [`MAX_REASON_BYTES`], `environment` valid, `timestamp_ns` a time this system holds.
    pub(crate) fn to_event(&self) -> Result<RollbackEvent, String> {
        let refused = |e: ConfigError| {
            format!(
                "invalid history.{} = {}: {} (event {})",
                e.field(),
                e.value(),
                e.expected(),
                self.version
            )
        };
        let (rolled_back, trigger) = match (self.rolled_back.as_str(), self.trigger.as_str()) {
            ("release", "manual") => (RolledBack::Release, RollbackTrigger::Manual),
            ("release", "automatic") => (RolledBack::Release, RollbackTrigger::Automatic),
            ("flag", "flag_disabled") => (
                RolledBack::Flag(self.feature.clone()),
                RollbackTrigger::FlagDisabled,
            ),
            ("release", other) => {
                let why = "manual or automatic for a release";
                return Err(refused(ConfigError::new("trigger", quoted(other), why)));
            }
            ("flag", other) => {
                let why = "flag_disabled for a flag";
                return Err(refused(ConfigError::new("trigger", quoted(other), why)));
            }
            (other, _) => {
                let why = "release or flag";
                return Err(refused(ConfigError::new("rolled_back", quoted(other), why)));
            }
        };
        check_name("feature", &self.feature).map_err(refused)?;
        if self.reason.len() > MAX_REASON_BYTES {
            return Err(refused(ConfigError::new(
                "reason",
                quoted(&self.reason),
                format!("at most {MAX_REASON_BYTES} bytes (MAX_REASON_BYTES)"),
            )));
        }
        self.environment.validate().map_err(refused)?;
        let magnitude = Duration::from_nanos(self.timestamp_ns.unsigned_abs());
        let timestamp = if self.timestamp_ns >= 0 {
            SystemTime::UNIX_EPOCH.checked_add(magnitude)
        } else {
            SystemTime::UNIX_EPOCH.checked_sub(magnitude)
        }
        .ok_or_else(|| {
            refused(ConfigError::new(
                "timestamp_ns",
                self.timestamp_ns.to_string(),
                "a time this system holds",
            ))
        })?;
        Ok(RollbackEvent {
            rolled_back,
            feature: self.feature.clone(),
            reason: self.reason.clone(),
            timestamp,
            environment: self.environment,
            trigger,
            evidence: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::canary;

    fn event(rolled_back: RolledBack, trigger: RollbackTrigger, at: SystemTime) -> RollbackEvent {
        RollbackEvent {
            feature: match &rolled_back {
                RolledBack::Release => "Canary{12.5}".into(),
                RolledBack::Flag(name) => name.clone(),
            },
            rolled_back,
            reason: "why".into(),
            timestamp: at,
            environment: canary(12.5),
            trigger,
            evidence: None,
        }
    }

    #[test]
    fn events_round_trip_to_the_nanosecond_on_both_sides_of_the_epoch() {
        let after = SystemTime::UNIX_EPOCH + Duration::new(1_800_000_000, 123_456_789);
        let before = SystemTime::UNIX_EPOCH - Duration::new(5, 7);
        for original in [
            event(RolledBack::Release, RollbackTrigger::Manual, after),
            event(RolledBack::Release, RollbackTrigger::Automatic, before),
            event(
                RolledBack::Flag("f".into()),
                RollbackTrigger::FlagDisabled,
                after,
            ),
        ] {
            let stored = StoredEvent::from_event(7, &original);
            assert_eq!(stored.version, 7);
            let json = serde_json::to_string(&stored).unwrap();
            let back: StoredEvent = serde_json::from_str(&json).unwrap();
            assert_eq!(back.to_event().unwrap(), original);
        }
    }

    #[test]
    fn an_event_with_unknown_words_is_refused_with_what_is_wrong() {
        let at = SystemTime::UNIX_EPOCH;
        let mut stored =
            StoredEvent::from_event(3, &event(RolledBack::Release, RollbackTrigger::Manual, at));
        stored.trigger = "cosmic_ray".into();
        assert!(stored.to_event().unwrap_err().contains("\"cosmic_ray\""));
        stored.trigger = "manual".into();
        stored.rolled_back = "everything".into();
        assert!(stored.to_event().unwrap_err().contains("\"everything\""));
    }

    #[test]
    fn each_field_of_a_stored_event_is_checked_naming_it_and_its_value() {
        let at = SystemTime::UNIX_EPOCH;
        let release =
            StoredEvent::from_event(3, &event(RolledBack::Release, RollbackTrigger::Manual, at));
        let flag = StoredEvent::from_event(
            3,
            &event(
                RolledBack::Flag("f".into()),
                RollbackTrigger::FlagDisabled,
                at,
            ),
        );
        // The event changed, and words its refusal holds.
        type Case<'a> = (&'a StoredEvent, fn(&mut StoredEvent), &'a [&'a str]);
        let cases: [Case; 7] = [
            (
                &release,
                |e| e.reason = "r".repeat(MAX_REASON_BYTES + 1),
                &[
                    "history.reason = \"rrrr",
                    "(4097 bytes)",
                    "MAX_REASON_BYTES",
                    "event 3",
                ],
            ),
            (
                &flag,
                |e| e.feature = "two words".into(),
                &["history.feature = \"two words\"", "whitespace"],
            ),
            (
                &flag,
                |e| e.feature.clear(),
                &["history.feature = \"\"", "empty"],
            ),
            (
                &release,
                |e| e.feature = "x".repeat(129),
                &["history.feature", "128 bytes"],
            ),
            (
                &flag,
                |e| e.trigger = "manual".into(),
                &["history.trigger = \"manual\"", "flag_disabled for a flag"],
            ),
            (
                &release,
                |e| e.trigger = "flag_disabled".into(),
                &["history.trigger = \"flag_disabled\"", "for a release"],
            ),
            (
                &release,
                |e| e.environment = canary(120.0),
                &["history.environment.canary.traffic_percent = 120"],
            ),
        ];
        for (base, change, words) in cases {
            let mut stored = base.clone();
            change(&mut stored);
            let err = stored.to_event().unwrap_err();
            for word in words {
                assert!(err.contains(word), "{word:?} not in {err}");
            }
            assert!(err.len() < 400, "the value is shortened: {err}");
        }
        // At the bound it is read.
        let mut at_bound = release.clone();
        at_bound.reason = "r".repeat(MAX_REASON_BYTES);
        assert!(at_bound.to_event().is_ok());
    }

    /// A manual rollback of the release, as the write of `version` stored it.
    fn manual_rollback(version: u64) -> StoredEvent {
        let at = SystemTime::UNIX_EPOCH;
        StoredEvent::from_event(
            version,
            &event(RolledBack::Release, RollbackTrigger::Manual, at),
        )
    }

    #[test]
    fn a_stored_events_version_is_at_most_the_releases_and_increasing() {
        let state = |versions: &[u64]| StoredState {
            release: StoredRelease {
                version: 5,
                stage: 5,
                config: PromotionConfig::default(),
                rollbacks: None,
                rollout: None,
                epoch: 0,
            },
            history: versions.iter().map(|&v| manual_rollback(v)).collect(),
        };
        assert!(state(&[2, 5]).checked().is_ok());
        for (versions, words) in [
            (
                &[2, 6][..],
                "history.version = 6: from 3 to the release's version 5",
            ),
            (&[0][..], "history.version = 0"),
            (&[3, 3][..], "history.version = 3: from 4"),
        ] {
            let err = state(versions).checked().unwrap_err();
            assert!(err.contains(words), "{err}");
        }
    }

    #[test]
    fn a_history_read_refuses_a_bad_event_as_it_is_read() {
        let mut newest = NewestFirst::new(crate::limits::MAX_ROLLBACK_HISTORY);
        assert_eq!(newest.take(manual_rollback(9)), Ok(true));
        // Texts the history's byte count leaves out: refused at the first such event, before
        // a read could hold thousands of them (each up to 4 KiB in SQLite).
        let mut junk = manual_rollback(8);
        junk.rolled_back = "x".repeat(4097);
        let err = newest.take(junk).unwrap_err();
        assert!(
            err.contains("history.rolled_back") && err.contains("(event 8)"),
            "{err}"
        );
        let mut junk = manual_rollback(8);
        junk.trigger = "x".repeat(4097);
        assert!(newest.take(junk).unwrap_err().contains("history.trigger"));
        let mut long = manual_rollback(8);
        long.reason = "r".repeat(MAX_REASON_BYTES + 1);
        assert!(newest.take(long).unwrap_err().contains("history.reason"));
        assert_eq!(newest.take(manual_rollback(8)), Ok(true));
        assert_eq!(
            newest.oldest_first(),
            [manual_rollback(8), manual_rollback(9)]
        );
    }

    #[test]
    fn a_release_of_another_gate_is_refused_naming_both() {
        let release = |gate: &str| StoredRelease {
            version: 2,
            stage: 1,
            config: PromotionConfig {
                gate: gate.into(),
                ..Default::default()
            },
            rollbacks: None,
            rollout: None,
            epoch: 0,
        };
        assert!(release("checkout").checked("checkout").is_ok());
        let err = release("payments").checked("checkout").unwrap_err();
        assert!(
            err.starts_with(
                r#"release.config.gate = "payments": the state of another gate, this one is "checkout""#
            ),
            "{err}"
        );
    }

    #[test]
    fn a_release_of_version_or_stage_0_is_refused_as_every_backend_reads_it() {
        // Version 0 is no state: stored (by hand), it would read as none, and the next write
        // would replace it and its history (etcd's and SQLite's reads both check it here).
        let release = |version: u64, stage: u64| StoredRelease {
            version,
            stage,
            config: PromotionConfig::default(),
            rollbacks: None,
            rollout: None,
            epoch: 0,
        };
        let gate = PromotionConfig::default().gate;
        assert!(release(1, 1).checked(&gate).is_ok());
        // Stages are numbered from 1 too: no write stores stage 0 (a hand edit).
        let err = release(1, 0).checked(&gate).unwrap_err();
        assert!(
            err.starts_with("release.stage = 0: a stored release's stage is at least 1"),
            "{err}"
        );
        for stage in [0, 3] {
            let err = release(0, stage).checked(&gate).unwrap_err();
            assert!(
                err.starts_with("release.version = 0: a stored release's version is at least 1"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_write_is_the_next_version_and_drops_the_store_key() {
        let config = PromotionConfig {
            store: Some(crate::StoreConfig::Sqlite(crate::SqliteStoreConfig {
                path: "g.db".into(),
                sync_interval_ms: 250,
                busy_timeout_ms: 0,
                fleet_judging: true,
            })),
            max_rollback_history: 9,
            ..Default::default()
        };
        let guard = Guard {
            version: 4,
            stage: 2,
            epoch: 0,
        };
        let at = SystemTime::UNIX_EPOCH;
        let rollback = event(RolledBack::Release, RollbackTrigger::Manual, at);
        let write = StoredWrite::new(
            guard,
            crate::store::RolloutOn::UNKNOWN,
            &Default::default(),
            3,
            &config,
            Some(&rollback),
        );
        assert_eq!(write.release.version, 5);
        assert_eq!(write.release.stage, 3);
        assert_eq!(write.release.config.store, None);
        assert_eq!(write.event.as_ref().map(|e| e.version), Some(5));
        assert_eq!(write.history_bound, 9);
    }
    #[test]
    fn a_rollout_starts_at_the_first_write_out_of_production_and_at_the_next_release_only() {
        let write = |on: &StoredRelease, environment: Environment, flags: &[&str]| {
            let config = PromotionConfig {
                environment,
                feature_flags: flags.iter().map(|f| f.to_string()).collect(),
                ..Default::default()
            };
            let guard = Guard {
                version: on.version,
                stage: on.stage,
                epoch: 0,
            };
            let write = StoredWrite::new(
                guard,
                RolloutOn::of(on),
                &Default::default(),
                on.stage + 1,
                &config,
                None,
            );
            write.release
        };
        let first = StoredWrite::new(
            Guard::EMPTY,
            RolloutOn::UNKNOWN,
            &Default::default(),
            1,
            &PromotionConfig {
                environment: canary(10.0),
                ..Default::default()
            },
            None,
        )
        .release;
        assert_eq!(first.rollout(), Some(1), "the first write starts one");
        // A ramp, a flag on, a promotion, flags edited in Production: the same rollout.
        let ramp = write(&first, canary(25.0), &[]);
        let flag = write(&ramp, canary(25.0), &["a"]);
        let promoted = write(&flag, Environment::Production, &[]);
        let edited = write(&promoted, Environment::Production, &["b", "c"]);
        for release in [&ramp, &flag, &promoted, &edited] {
            assert_eq!(release.rollout(), Some(1), "{release:?}");
        }
        // The next release swapped in at the same split: numbered by the write of it.
        let swapped = StoredWrite::new(
            Guard {
                version: flag.version,
                stage: flag.stage,
                epoch: 0,
            },
            RolloutOn::of(&flag).next_release(),
            &Default::default(),
            flag.stage + 1,
            &flag.config,
            None,
        )
        .release;
        assert_eq!(swapped.rollout(), Some(swapped.version));
        // Out of Production: the next rollout, numbered by the write that started it.
        let next = write(&edited, canary(5.0), &["b", "c"]);
        assert_eq!(next.rollout(), Some(next.version));
        let rolled_back = write(&next, Environment::Production, &[]);
        assert_eq!(rolled_back.rollout(), Some(next.version));
        // Unknown (a build before wrote the release) until a rollout starts.
        let mut older = rolled_back.clone();
        older.version += 1;
        assert_eq!(older.rollout(), None, "as of an older version: unknown");
        let kept = write(&older, Environment::Production, &["d"]);
        assert_eq!(kept.rollout(), None);
        let started = write(&kept, canary(1.0), &[]);
        assert_eq!(started.rollout(), Some(started.version));
        assert!(
            started
                .clone()
                .checked(&started.config.gate.clone())
                .is_ok()
        );
    }

    #[test]
    fn a_rollouts_first_stage_at_its_split_moves_only_with_a_stage_flags_did_not_start() {
        let config = |environment: Environment, flags: &[&str]| PromotionConfig {
            environment,
            feature_flags: flags.iter().map(|f| f.to_string()).collect(),
            ..Default::default()
        };
        let on_top =
            |on: &StoredRelease, rollout: RolloutOn, stage: u64, config: &PromotionConfig| {
                let guard = Guard {
                    version: on.version,
                    stage: on.stage,
                    epoch: 0,
                };
                StoredWrite::new(guard, rollout, &Default::default(), stage, config, None).release
            };
        let write = |on: &StoredRelease, stage: u64, config: &PromotionConfig| {
            on_top(on, RolloutOn::of(on), stage, config)
        };
        let first = StoredWrite::new(
            Guard::EMPTY,
            RolloutOn::UNKNOWN,
            &Default::default(),
            1,
            &config(canary(10.0), &["a"]),
            None,
        )
        .release;
        assert_eq!(first.split_from(), Some(1), "the rollout's first stage");
        // A flag turned off (by a swap: no stage, no event) and on again (a stage): kept.
        let off = write(&first, 1, &config(canary(10.0), &[]));
        let on = write(&off, 2, &config(canary(10.0), &["a"]));
        assert_eq!((off.split_from(), on.split_from()), (Some(1), Some(1)));
        // A ramp (with a flag turned on too), a swap of the salt: moved to their stage.
        let ramp = write(&on, 3, &config(canary(25.0), &["a", "b"]));
        assert_eq!(ramp.split_from(), Some(3));
        let mut salted = config(canary(25.0), &["a", "b", "c"]);
        salted.salt = Some("reshuffled".into());
        let salt = write(&ramp, 4, &salted);
        assert_eq!(salt.split_from(), Some(4));
        // A stage no flag turned on started (the stored release written again one stage up,
        // after the store went back): moved.
        let again = write(&salt, 5, &salted);
        assert_eq!(again.split_from(), Some(5));
        // The next release: its own first stage.
        let mut next = salted.clone();
        next.feature_flags.push("v2".into());
        let swapped = on_top(&again, RolloutOn::of(&again).next_release(), 6, &next);
        assert_eq!(swapped.split_from(), Some(6));
        // A rollout stored without it: unknown until a stage flags did not start.
        let mut older = swapped.clone();
        if let Some(rollout) = older.rollout.as_mut() {
            rollout.split_from = None;
        }
        let mut flagged = next.clone();
        flagged.feature_flags.push("d".into());
        let flag = write(&older, 7, &flagged);
        let rollout = swapped.rollout();
        assert_eq!((flag.rollout(), flag.split_from()), (rollout, None));
        let ramp = write(
            &flag,
            8,
            &PromotionConfig {
                environment: canary(50.0),
                ..flagged
            },
        );
        assert_eq!((ramp.rollout(), ramp.split_from()), (rollout, Some(8)));
    }
}
