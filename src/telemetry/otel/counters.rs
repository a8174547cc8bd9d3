//! The counters' series across a reload: what each reported, and what the gates followed
//! before under the same name counted, so that a series never reports less than it did.
//!
//! An OpenTelemetry counter is a monotonic sum: under cumulative temporality a lower value is a
//! sum that decreased, and under delta temporality the SDK reports the value less the last one
//! reported, on `u64` (a lower value overflowed: a panic on the reader's thread in a debug
//! build, a wrapped delta in a release one). A gate's counts start again in a gate made anew,
//! though it keeps its name: the outcome counts at 0 always, the rollback counts at 0 without a
//! state store. So [`Counted::follow`] carries the followed gate's counts into its series, and
//! [`Counted::report`] adds them and holds every series at least at its last value.
//!
//! A series that skips a collection is forgotten by the SDK, and under delta temporality its
//! whole value counts again when it comes back; so while the followed gate is gone, its series
//! report their last values ([`Counted::report`] of no counts) until the instruments follow
//! another gate.
//!
//! Following is idempotent for a gate: following the followed gate again changes nothing, and
//! following again a gate left earlier (alive, it counts what was carried of it) takes that
//! back.
//!
//! A gate of another name starts series of its own, and the series of the name left are kept
//! ([`MAX_NAMES_LEFT`] names at most): reported at their last values at every collection (a
//! series that skipped one would count its whole value again under delta temporality, and
//! could report less under cumulative: the SDK forgets it), and going on as under one name
//! when a gate of that name is followed again.

use std::sync::{Arc, Weak};

use crate::history::RollbackTrigger;
use crate::judge::Rule;
use crate::manager::PromotionGateManager;
use crate::store::StoreConfig;
use crate::telemetry::rollback_series;

/// One counter series of a gate (told apart by its instrument and attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Series {
    /// `promotion.rollbacks` of one cause: its trigger and, for an automatic rollback, its
    /// first fired rule.
    Rollbacks(RollbackTrigger, Option<Rule>),
    /// One of the outcome counters.
    Outcomes(Outcome),
}

/// The counters of outcomes (and forcing values) a gate counts by itself, never in a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Late,
    Foreign,
    Forced,
    IgnoredOverrideValues,
}

impl Outcome {
    /// Every outcome counter, in the order they are registered.
    pub(super) const ALL: [Outcome; 4] = [
        Outcome::Late,
        Outcome::Foreign,
        Outcome::Forced,
        Outcome::IgnoredOverrideValues,
    ];

    /// The instrument's name.
    pub(super) fn name(self) -> &'static str {
        match self {
            Outcome::Late => "promotion.late_outcomes",
            Outcome::Foreign => "promotion.foreign_outcomes",
            Outcome::Forced => "promotion.forced_outcomes",
            Outcome::IgnoredOverrideValues => "promotion.ignored_override_values",
        }
    }

    /// The instrument's description.
    pub(super) fn description(self) -> &'static str {
        match self {
            Outcome::Late => "Outcomes dropped because their stage had ended.",
            Outcome::Foreign => {
                "Outcomes dropped because their decision names a stage the gate never published."
            }
            Outcome::Forced => {
                "Outcomes of requests an override forced, counted in neither cohort."
            }
            Outcome::IgnoredOverrideValues => "Forcing values routing ignored.",
        }
    }

    /// `gate`'s count.
    pub(super) fn read(self, gate: &PromotionGateManager) -> u64 {
        match self {
            Outcome::Late => gate.late_outcomes(),
            Outcome::Foreign => gate.foreign_outcomes(),
            Outcome::Forced => gate.forced_outcomes(),
            Outcome::IgnoredOverrideValues => gate.ignored_override_values(),
        }
    }
}

/// The `promotion.rollbacks` series of `gate` with their counts: every cause (each from 0, as
/// [`rollback_series`] lists them).
pub(super) fn rollback_counts(gate: &PromotionGateManager) -> Vec<(Series, u64)> {
    rollback_series(&gate.rollback_counts())
        .map(|count| (Series::Rollbacks(count.trigger, count.rule), count.count))
        .collect()
}

/// Every counter series of `gate` with its count.
fn all_counts(gate: &PromotionGateManager) -> Vec<(Series, u64)> {
    let outcomes = Outcome::ALL.map(|outcome| (Series::Outcomes(outcome), outcome.read(gate)));
    let mut counts = outcomes.to_vec();
    counts.extend(rollback_counts(gate));
    counts
}

/// Names left (followed before, under a gate of another name since) whose series are kept, at
/// most: more than a host renames its gate back and forth between. Beyond them, the name left
/// longest ago is forgotten: its series are no longer reported (the SDK forgets them), and
/// should a gate of that name be followed again, they start again from its counts, as a name
/// never seen (under cumulative temporality lower than they last were, under delta counted
/// again in full).
pub(super) const MAX_NAMES_LEFT: usize = 16;

/// The counter series of the followed gate's name, and of the names followed before.
#[derive(Debug, Default)]
pub(super) struct Counted {
    /// The followed gate's name's series.
    followed: Named,
    /// The names left, each with the gate last followed under it (if alive, what it counted
    /// since is carried when a gate of the name is followed again); the one left longest ago
    /// first, at most [`MAX_NAMES_LEFT`], none the followed gate's name.
    names_left: Vec<(Named, Weak<PromotionGateManager>)>,
}

/// The counter series of one name: what each last reported, and what the gates followed
/// before under that name counted beyond the last one followed under it.
#[derive(Debug, Default)]
struct Named {
    /// The name, which every series has as `promotion.gate`.
    name: String,
    /// The state store of the gate last followed under the name, if it has one (a gate keeps the store it was opened
    /// with): known after the gate is gone.
    store: Option<StoreConfig>,
    series: Vec<(Series, Count)>,
    /// The gates left under the name while alive, with what each carries into the series:
    /// following one again takes it back, for that gate counts it itself. A gate gone is
    /// dropped from the list at the next `follow` (it cannot be followed again).
    left: Vec<Left>,
}

/// A gate left while alive, and what was carried of it into each series.
#[derive(Debug)]
struct Left {
    gate: Weak<PromotionGateManager>,
    carried: Vec<(Series, u64)>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Count {
    /// Counted by the gates followed before under the name and not by the followed one.
    carried: u64,
    /// The last value reported.
    reported: u64,
}

impl Counted {
    /// The series of `gate`, none reported yet.
    pub(super) fn of(gate: &PromotionGateManager) -> Self {
        Self {
            followed: Named::of(gate),
            names_left: Vec::new(),
        }
    }

    /// The followed gate's name.
    pub(super) fn name(&self) -> &str {
        &self.followed.name
    }

    /// The values to report of the followed gate's series: see [`Named::report`].
    pub(super) fn report(
        &mut self,
        counts: Vec<(Series, u64)>,
        of: impl Fn(Series) -> bool,
    ) -> Vec<(Series, u64)> {
        self.followed.report(counts, of)
    }

    /// Each name left, with the values to report of its series `of` selects: each at its last
    /// value (no gate of the name counts into them now).
    pub(super) fn report_left(
        &mut self,
        of: impl Fn(Series) -> bool,
    ) -> impl Iterator<Item = (&str, Vec<(Series, u64)>)> {
        self.names_left.iter_mut().map(move |(named, _)| {
            let values = named.report(Vec::new(), &of);
            (named.name.as_str(), values)
        })
    }

    /// The instruments follow `new` from `old` (the gate followed so far, `None` if it is
    /// gone): under the same name, see [`Named::follow`]. Under another name, the followed
    /// name's series are kept with `old` among the names left, and `new`'s go on from its
    /// name's, if it was left (from the gate last followed under it), or are new ones, from
    /// its counts.
    ///
    /// Returns the gate last followed under `new`'s name, if it was left and is alive: the
    /// caller drops it out of its lock (it may be the last owner, and the gate go there).
    pub(super) fn follow(
        &mut self,
        old: Option<&Arc<PromotionGateManager>>,
        new: &Arc<PromotionGateManager>,
    ) -> Option<Arc<PromotionGateManager>> {
        if old.is_some_and(|old| Arc::ptr_eq(old, new)) {
            return None;
        }
        let name = new.gate_name();
        if name == self.followed.name {
            self.followed.follow(old, new);
            return None;
        }
        let back = match self.names_left.iter().position(|(n, _)| n.name == name) {
            Some(at) => Some(self.names_left.remove(at)),
            None => None,
        };
        let (followed, last_of_name) = match back {
            Some((named, last)) => (named, last.upgrade()),
            None => (Named::of(new), None),
        };
        let left = std::mem::replace(&mut self.followed, followed);
        let last = old.map_or_else(Weak::new, Arc::downgrade);
        self.names_left.push((left, last));
        if self.names_left.len() > MAX_NAMES_LEFT {
            self.names_left.remove(0);
        }
        self.followed.follow(last_of_name.as_ref(), new);
        last_of_name
    }
}

impl Named {
    /// The series of `gate`, none reported yet.
    fn of(gate: &PromotionGateManager) -> Self {
        Self {
            name: gate.gate_name(),
            store: gate.config().store,
            series: Vec::new(),
            left: Vec::new(),
        }
    }

    fn count(&mut self, series: Series) -> &mut Count {
        let at = match self.series.iter().position(|(s, _)| *s == series) {
            Some(at) => at,
            None => {
                self.series.push((series, Count::default()));
                self.series.len() - 1
            }
        };
        &mut self.series[at].1
    }

    /// The values to report of the followed gate's `counts` (none while it is gone), and of
    /// every other series `of` selects that was reported or carried (at 0: the gate does not
    /// count it): each count plus what the gates before counted, never below the value last
    /// reported. So no series once reported skips a collection while the instruments are kept
    /// (and its name is: see [`MAX_NAMES_LEFT`]).
    fn report(
        &mut self,
        counts: Vec<(Series, u64)>,
        of: impl Fn(Series) -> bool,
    ) -> Vec<(Series, u64)> {
        let mut values = counts;
        for (series, _) in &self.series {
            if of(*series) && !values.iter().any(|(s, _)| s == series) {
                values.push((*series, 0));
            }
        }
        for (series, value) in &mut values {
            let entry = self.count(*series);
            *value = entry.carried.saturating_add(*value).max(entry.reported);
            entry.reported = *value;
        }
        values
    }

    /// The instruments follow `new`, of this name, from `old` (the gate followed so far under
    /// it, `None` if it is gone). Each series carries what `old` counted (as much as the series showed, if `old`
    /// is gone, or if that is more): every outcome (a gate counts its own), and every rollback
    /// unless both gates are on one state store. There both count the stored rollbacks, and
    /// nothing is carried: `new` may not have read the store since `old` last wrote to it (a
    /// reload opens it first), and a rollback carried then would be counted again once `new`
    /// reads it; the series stays at its last value until `new`'s count passes it.
    ///
    /// Idempotent for a gate: `new` being `old` changes nothing, and `new` being a gate left
    /// earlier under the name takes back what was carried of it (it counts that itself).
    fn follow(&mut self, old: Option<&Arc<PromotionGateManager>>, new: &Arc<PromotionGateManager>) {
        if old.is_some_and(|old| Arc::ptr_eq(old, new)) {
            return;
        }
        let store = new.config().store;
        let one_store = match (&self.store, &store) {
            (Some(old), Some(new)) => old.is_same_store(new),
            _ => false,
        };
        let counted_by_old: Vec<(Series, u64)> = match old {
            Some(old) => all_counts(old),
            None => Vec::new(),
        };
        let mut series: Vec<Series> = self.series.iter().map(|(s, _)| *s).collect();
        for (s, _) in &counted_by_old {
            if !series.contains(s) {
                series.push(*s);
            }
        }
        let mut carried_of_old = Vec::new();
        for series in series {
            if one_store && matches!(series, Series::Rollbacks(..)) {
                continue;
            }
            let old_count = counted_by_old
                .iter()
                .find(|(s, _)| *s == series)
                .map_or(0, |(_, count)| *count);
            let entry = self.count(series);
            // What the series showed of the old gate, if more than its count now (a gate that
            // is gone).
            let shown = entry.reported.saturating_sub(entry.carried);
            let carried = old_count.max(shown);
            entry.carried = entry.carried.saturating_add(carried);
            carried_of_old.push((series, carried));
        }
        if let Some(old) = old {
            self.left.push(Left {
                gate: Arc::downgrade(old),
                carried: carried_of_old,
            });
        }
        self.take_back(new);
        self.store = store;
    }

    /// Takes back what was carried of `gate` when it was left, if it was (it counts that
    /// itself now), and forgets the gates left that are gone.
    fn take_back(&mut self, gate: &Arc<PromotionGateManager>) {
        let mut left = std::mem::take(&mut self.left);
        left.retain(|left| left.gate.strong_count() > 0);
        if let Some(at) = left
            .iter()
            .position(|left| std::ptr::eq(left.gate.as_ptr(), Arc::as_ptr(gate)))
        {
            for (series, carried) in left.swap_remove(at).carried {
                let entry = self.count(series);
                entry.carried = entry.carried.saturating_sub(carried);
            }
        }
        self.left = left;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PromotionConfig, SloAdmissionController, SloConfig};

    fn gate(config: PromotionConfig) -> Arc<PromotionGateManager> {
        let slo = SloAdmissionController::new(SloConfig::default()).unwrap();
        Arc::new(PromotionGateManager::new(config, slo).unwrap())
    }

    fn named(name: &str) -> Arc<PromotionGateManager> {
        gate(PromotionConfig {
            gate: name.into(),
            ..Default::default()
        })
    }

    const FLAG_ROLLBACKS: Series = Series::Rollbacks(RollbackTrigger::FlagDisabled, None);
    const FORCED: Series = Series::Outcomes(Outcome::Forced);

    /// A flag's rollback on `gate`.
    fn roll_back_a_flag(gate: &PromotionGateManager) {
        gate.enable_feature("dark_mode").unwrap();
        gate.disable_feature("dark_mode").unwrap();
    }

    /// `gate`'s count of flag rollbacks.
    fn flag_rollbacks(gate: &PromotionGateManager) -> u64 {
        let counts = rollback_counts(gate);
        counts
            .iter()
            .find(|(s, _)| *s == FLAG_ROLLBACKS)
            .map_or(0, |(_, n)| *n)
    }

    fn forced(gate: &PromotionGateManager, times: usize) {
        for _ in 0..times {
            gate.record_forced(gate.route_request("u").stage);
        }
    }

    /// What `counted` reports of `series` for `gate` (`None`: the gate is gone).
    fn value(
        counted: &mut Counted,
        gate: Option<&Arc<PromotionGateManager>>,
        series: Series,
    ) -> u64 {
        let counts = gate.map(|gate| all_counts(gate)).unwrap_or_default();
        let values = counted.report(counts, |_| true);
        values.iter().find(|(s, _)| *s == series).unwrap().1
    }

    #[test]
    fn without_a_store_the_rollbacks_and_outcomes_of_the_followed_gate_are_carried() {
        let old = named("checkout");
        roll_back_a_flag(&old);
        forced(&old, 5);
        let mut counted = Counted::of(&old);
        assert_eq!(value(&mut counted, Some(&old), FLAG_ROLLBACKS), 1);
        assert_eq!(value(&mut counted, Some(&old), FORCED), 5);
        forced(&old, 2); // after the last collection, before the reload: carried too
        let new = named("checkout");
        counted.follow(Some(&old), &new);
        assert_eq!(value(&mut counted, Some(&new), FLAG_ROLLBACKS), 1);
        assert_eq!(value(&mut counted, Some(&new), FORCED), 7);
        roll_back_a_flag(&new);
        forced(&new, 1);
        assert_eq!(value(&mut counted, Some(&new), FLAG_ROLLBACKS), 2);
        assert_eq!(value(&mut counted, Some(&new), FORCED), 8);
        let manual = Series::Rollbacks(RollbackTrigger::Manual, None);
        assert_eq!(value(&mut counted, Some(&new), manual), 0);
    }

    /// Without a store, the rollbacks the new gate made before the reload's `follow` are its
    /// own: none of the old gate's is taken for one. They were subtracted from what the old
    /// gate carried, and the series counted 4 of these 5.
    #[test]
    fn without_a_store_the_old_gates_rollbacks_are_carried_in_full() {
        let old = named("checkout");
        for _ in 0..3 {
            roll_back_a_flag(&old);
        }
        let mut counted = Counted::of(&old);
        assert_eq!(value(&mut counted, Some(&old), FLAG_ROLLBACKS), 3);
        let new = named("checkout");
        roll_back_a_flag(&new); // before the follow
        counted.follow(Some(&old), &new);
        drop(old);
        assert_eq!(value(&mut counted, Some(&new), FLAG_ROLLBACKS), 4);
        roll_back_a_flag(&new);
        assert_eq!(value(&mut counted, Some(&new), FLAG_ROLLBACKS), 5);
    }

    /// A config of the gate `checkout` on the SQLite store `dir/gate.db`, which a gate reads
    /// again every `sync_interval_ms` (and before each of its writes).
    #[cfg(feature = "sqlite")]
    fn on_store(dir: &crate::store::scratch::Scratch, sync_interval_ms: u64) -> PromotionConfig {
        use crate::{SqliteStoreConfig, StoreConfig};
        PromotionConfig {
            gate: "checkout".into(),
            store: Some(StoreConfig::Sqlite(SqliteStoreConfig {
                path: dir.file("gate.db"),
                sync_interval_ms,
                busy_timeout_ms: 1_000,
                fleet_judging: false,
            })),
            ..Default::default()
        }
    }

    /// A reload opens the new gate first, and it reads the store again only at its next sync
    /// or write: the rollbacks the old gate stores meanwhile are not yet in its counts. Carried
    /// at the `follow`, they were counted again once it read them (the series showed 4 of 2).
    #[cfg(feature = "sqlite")]
    #[test]
    fn on_a_shared_store_rollbacks_the_new_gate_has_not_read_yet_are_counted_once() {
        let dir = crate::store::scratch::Scratch::new("otel-follow-lag");
        let old = gate(on_store(&dir, 60_000));
        let mut counted = Counted::of(&old);
        let new = gate(on_store(&dir, 60_000));
        roll_back_a_flag(&old);
        assert_eq!(value(&mut counted, Some(&old), FLAG_ROLLBACKS), 1);
        roll_back_a_flag(&old); // after the last collection
        assert_eq!(flag_rollbacks(&new), 0, "not read yet");
        counted.follow(Some(&old), &new);
        drop(old);
        // The series stays at its last value until the new gate's count passes it.
        assert_eq!(value(&mut counted, Some(&new), FLAG_ROLLBACKS), 1);
        new.enable_feature("other").unwrap(); // a write reads the store first
        assert_eq!(flag_rollbacks(&new), 2);
        assert_eq!(value(&mut counted, Some(&new), FLAG_ROLLBACKS), 2);
        roll_back_a_flag(&new);
        assert_eq!(value(&mut counted, Some(&new), FLAG_ROLLBACKS), 3);
    }

    /// A reload that moves the gate to another store (or off one) carries the old gate's
    /// rollbacks: the new gate does not count them.
    #[cfg(feature = "sqlite")]
    #[test]
    fn a_gate_followed_onto_another_store_carries_the_rollbacks() {
        let dir = crate::store::scratch::Scratch::new("otel-follow-moved");
        let elsewhere = crate::store::scratch::Scratch::new("otel-follow-moved-to");
        let old = gate(on_store(&dir, 60_000));
        roll_back_a_flag(&old);
        let mut counted = Counted::of(&old);
        assert_eq!(value(&mut counted, Some(&old), FLAG_ROLLBACKS), 1);
        let new = gate(on_store(&elsewhere, 60_000));
        roll_back_a_flag(&new);
        counted.follow(Some(&old), &new);
        drop(old);
        assert_eq!(value(&mut counted, Some(&new), FLAG_ROLLBACKS), 2);
        let unstored = named("checkout");
        counted.follow(Some(&new), &unstored);
        drop(new);
        assert_eq!(value(&mut counted, Some(&unstored), FLAG_ROLLBACKS), 2);
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn on_a_shared_store_the_stored_rollbacks_are_not_carried_but_the_outcomes_are() {
        let dir = crate::store::scratch::Scratch::new("otel-follow");
        let config = on_store(&dir, 50);
        let old = gate(config.clone());
        roll_back_a_flag(&old);
        forced(&old, 3);
        let mut counted = Counted::of(&old);
        assert_eq!(value(&mut counted, Some(&old), FLAG_ROLLBACKS), 1);
        // The gate made anew on the same store counts the stored rollback already.
        let new = gate(config);
        assert_eq!(new.rollback_counts()[0].count, 1);
        counted.follow(Some(&old), &new);
        drop(old);
        assert_eq!(value(&mut counted, Some(&new), FLAG_ROLLBACKS), 1);
        assert_eq!(value(&mut counted, Some(&new), FORCED), 3);
        roll_back_a_flag(&new);
        assert_eq!(value(&mut counted, Some(&new), FLAG_ROLLBACKS), 2);
    }

    /// A reload whose document spells the store's path another way (a symbolic link, `.` in
    /// it) keeps the gate on its store: the stored rollback, which the new gate counts, is not
    /// carried too (the series showed 2 of 1).
    #[cfg(all(feature = "sqlite", unix))]
    #[test]
    fn a_store_spelled_another_way_is_the_same_store() {
        let dir = crate::store::scratch::Scratch::new("otel-follow-spelled");
        let config = on_store(&dir, 60_000);
        std::os::unix::fs::symlink(dir.file("gate.db"), dir.file("link.db")).unwrap();
        for spelling in [dir.file("link.db"), dir.file("./gate.db")] {
            let old = gate(config.clone());
            let mut counted = Counted::of(&old);
            let before = value(&mut counted, Some(&old), FLAG_ROLLBACKS);
            roll_back_a_flag(&old);
            assert_eq!(value(&mut counted, Some(&old), FLAG_ROLLBACKS), before + 1);
            let mut respelled = config.clone();
            if let Some(crate::StoreConfig::Sqlite(sqlite)) = &mut respelled.store {
                sqlite.path = spelling.clone();
            }
            let new = gate(respelled);
            assert_eq!(
                flag_rollbacks(&new),
                before + 1,
                "{spelling}: read at its opening"
            );
            counted.follow(Some(&old), &new);
            drop(old);
            let shown = value(&mut counted, Some(&new), FLAG_ROLLBACKS);
            assert_eq!(shown, before + 1, "{spelling}");
        }
    }

    #[test]
    fn a_gate_gone_before_the_reload_carries_what_its_series_showed() {
        let old = named("checkout");
        roll_back_a_flag(&old);
        forced(&old, 4);
        let mut counted = Counted::of(&old);
        assert_eq!(value(&mut counted, Some(&old), FORCED), 4);
        drop(old);
        // Gone: the series stay at their values, collection after collection.
        assert_eq!(value(&mut counted, None, FORCED), 4);
        assert_eq!(value(&mut counted, None, FLAG_ROLLBACKS), 1);
        let new = named("checkout");
        counted.follow(None, &new);
        forced(&new, 1);
        assert_eq!(value(&mut counted, Some(&new), FORCED), 5);
        assert_eq!(value(&mut counted, Some(&new), FLAG_ROLLBACKS), 1);
    }

    /// Following the followed gate again changes nothing, and following again a gate left
    /// earlier takes back what was carried of it: it counts that itself (the series showed 13
    /// of 7: the first gate's 5 twice, its rollback twice).
    #[test]
    fn a_gate_followed_again_is_counted_once() {
        let first = named("checkout");
        forced(&first, 5);
        roll_back_a_flag(&first);
        let mut counted = Counted::of(&first);
        assert_eq!(value(&mut counted, Some(&first), FORCED), 5);
        counted.follow(Some(&first), &first);
        assert_eq!(
            value(&mut counted, Some(&first), FORCED),
            5,
            "the same gate"
        );
        let second = named("checkout");
        counted.follow(Some(&first), &second);
        forced(&second, 1);
        assert_eq!(value(&mut counted, Some(&second), FORCED), 6);
        // Back to the first gate, still alive: it counts its own 5, and 1 more.
        counted.follow(Some(&second), &first);
        forced(&first, 1);
        assert_eq!(value(&mut counted, Some(&first), FORCED), 7);
        assert_eq!(value(&mut counted, Some(&first), FLAG_ROLLBACKS), 1);
        // And to the second again, then a gate made anew: each counted once.
        counted.follow(Some(&first), &second);
        counted.follow(Some(&second), &second);
        forced(&second, 1);
        assert_eq!(value(&mut counted, Some(&second), FORCED), 8);
        assert_eq!(value(&mut counted, Some(&second), FLAG_ROLLBACKS), 1);
        let third = named("checkout");
        counted.follow(Some(&second), &third);
        drop((first, second));
        forced(&third, 1);
        assert_eq!(value(&mut counted, Some(&third), FORCED), 9);
        assert_eq!(value(&mut counted, Some(&third), FLAG_ROLLBACKS), 1);
        // The gates left that are gone are forgotten at the next follow.
        let fourth = named("checkout");
        counted.follow(Some(&third), &fourth);
        assert_eq!(counted.followed.left.len(), 1, "the third gate alone");
    }

    #[test]
    fn a_gate_of_another_name_starts_series_of_its_own() {
        let old = named("checkout");
        forced(&old, 4);
        let mut counted = Counted::of(&old);
        assert_eq!(value(&mut counted, Some(&old), FORCED), 4);
        let new = named("checkout-v2");
        counted.follow(Some(&old), &new);
        assert_eq!(counted.name(), "checkout-v2");
        forced(&new, 1);
        assert_eq!(value(&mut counted, Some(&new), FORCED), 1);
    }

    /// What `counted` reports of `series` for the name left `name` (`None`: not kept).
    fn left_value(counted: &mut Counted, name: &str, series: Series) -> Option<u64> {
        let left: Vec<(String, Vec<(Series, u64)>)> = counted
            .report_left(|_| true)
            .map(|(n, values)| (n.to_string(), values))
            .collect();
        let (_, values) = left.into_iter().find(|(n, _)| n == name)?;
        values
            .into_iter()
            .find(|(s, _)| *s == series)
            .map(|(_, v)| v)
    }

    /// A gate of another name followed in between: the series of the name left went on from
    /// the new gate's counts (0 after 5: a cumulative sum that fell), and, the gate alive,
    /// counted its whole value again under delta temporality (skipped collections: the SDK
    /// forgot them).
    #[test]
    fn a_name_followed_again_goes_on_from_its_series() {
        let a = named("checkout");
        forced(&a, 5);
        let mut counted = Counted::of(&a);
        assert_eq!(value(&mut counted, Some(&a), FORCED), 5);
        let b = named("search");
        counted.follow(Some(&a), &b);
        forced(&b, 1);
        assert_eq!(value(&mut counted, Some(&b), FORCED), 1);
        // The name left is reported at its last value at every collection.
        forced(&a, 2); // not followed: not counted into its series until it is
        for _ in 0..2 {
            assert_eq!(left_value(&mut counted, "checkout", FORCED), Some(5));
        }
        // Back to the same gate, alive: it counts its own 7.
        counted.follow(Some(&b), &a);
        assert_eq!(value(&mut counted, Some(&a), FORCED), 7);
        assert_eq!(left_value(&mut counted, "search", FORCED), Some(1));
        assert_eq!(left_value(&mut counted, "checkout", FORCED), None);
        // Away again, then to a gate of the name made anew: the one before it is carried.
        counted.follow(Some(&a), &b);
        let a_anew = named("checkout");
        counted.follow(Some(&b), &a_anew);
        drop(a);
        assert_eq!(value(&mut counted, Some(&a_anew), FORCED), 7);
        forced(&a_anew, 1);
        assert_eq!(value(&mut counted, Some(&a_anew), FORCED), 8);
        // The first gate of the name gone before the name was followed again: what its series
        // showed is carried.
        let c = named("checkout");
        let mut counted = Counted::of(&c);
        forced(&c, 5);
        assert_eq!(value(&mut counted, Some(&c), FORCED), 5);
        counted.follow(Some(&c), &b);
        drop(c);
        counted.follow(Some(&b), &named("checkout"));
        assert!(value(&mut counted, None, FORCED) >= 5);
    }

    #[test]
    fn the_names_left_kept_are_the_last_ones() {
        let first = named("gate-0");
        forced(&first, 3);
        let mut counted = Counted::of(&first);
        assert_eq!(value(&mut counted, Some(&first), FORCED), 3);
        let mut gates = vec![first];
        for i in 1..=MAX_NAMES_LEFT {
            let next = named(&format!("gate-{i}"));
            counted.follow(gates.last(), &next);
            gates.push(next);
        }
        assert_eq!(counted.names_left.len(), MAX_NAMES_LEFT);
        assert_eq!(left_value(&mut counted, "gate-0", FORCED), Some(3));
        let one_more = named("gate-new");
        counted.follow(gates.last(), &one_more);
        assert_eq!(counted.names_left.len(), MAX_NAMES_LEFT);
        assert_eq!(
            left_value(&mut counted, "gate-0", FORCED),
            None,
            "forgotten"
        );
        let kept: Vec<&str> = counted.names_left.iter().map(|(n, _)| &*n.name).collect();
        assert_eq!(kept.first(), Some(&"gate-1"));
        assert_eq!(
            kept.last(),
            Some(&format!("gate-{MAX_NAMES_LEFT}").as_str())
        );
    }

    #[test]
    fn no_series_reports_less_than_it_did() {
        let mut counted = Counted::of(&named("checkout"));
        assert_eq!(counted.report(vec![(FORCED, 5)], |_| true), [(FORCED, 5)]);
        assert_eq!(counted.report(vec![(FORCED, 3)], |_| true), [(FORCED, 5)]);
        assert_eq!(counted.report(vec![(FORCED, 6)], |_| true), [(FORCED, 6)]);
        // A series reported once is reported though the gate no longer lists it.
        let late = Series::Outcomes(Outcome::Late);
        let values = counted.report(vec![(late, 1)], |_| true);
        assert_eq!(values, [(late, 1), (FORCED, 6)]);
        // But only among the series asked for.
        let values = counted.report(Vec::new(), |s| s == late);
        assert_eq!(values, [(late, 1)]);
    }
}
