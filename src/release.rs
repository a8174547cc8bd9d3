//! The release model's state machine: which promotions are valid, and which are gated by the
//! judge. Pure: no state, no clock.
//!
//! ```text
//!                ramp up (gated) / ramp down
//!                   +------+
//!                   v      |
//!  Production --> Canary{p} --(gated)--> Staging --(gated)--> Production
//!   ^  (new rollout)   |                                          ^
//!   |                  +---------(gated, warns: skips Staging)----+
//!   +-- rollback (manual or automatic) from Canary or Staging
//! ```
//!
//! Ramping down (or to 0 %) is never gated: it only sends fewer users to the new version. (It
//! ends a stage, though, so the gate has the judge look at that stage first, as for every
//! write that ends one: a fired rule rolls the canary back instead.)
//!
//! A canary at 0 % (a share that rounds to no bucket) routes no request to the new version but
//! those an override forces there, which count in no cohort: the judge never has an outcome
//! of it, as in Production. So ramping up from it is not gated (a new rollout, as from
//! Production), and it cannot go to Staging or Production (as Production cannot go to Staging).
//!
//! Every config change a release makes is here too, as a pure function of the config: a
//! promotion (which graduates the release's flags when it reaches Production), a rollback, and
//! the flag edits. The gate validates, serializes and publishes; it decides none of them.

use crate::bucket::{BUCKETS, threshold_for_percent};
use crate::config::{Environment, PromotionConfig};
use crate::error::{FlagError, PromotionError};

/// The kind of a valid promotion.
///
/// # Example
/// ```
/// use promotion_gates::{plan_promotion, Environment, PromotionKind};
///
/// let step = plan_promotion(Environment::Production, Environment::Canary { traffic_percent: 1.0 })?;
/// assert_eq!(step.kind, PromotionKind::NewRollout);
/// assert!(!step.gated);
/// # Ok::<(), promotion_gates::PromotionError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PromotionKind {
    /// Production -> Canary: a new release starts.
    NewRollout,
    /// Canary{p} -> Canary{q} with q > p, in buckets ([`threshold_for_percent`]). Gated, but
    /// from a share of no bucket (0 %), which has no outcome to judge.
    RampUp,
    /// Canary{p} -> Canary{q} with q < p, in buckets.
    RampDown,
    /// Canary -> Staging.
    ToStaging,
    /// Staging -> Production: the new version becomes the stable one.
    ToProduction,
    /// Canary -> Production, skipping Staging (allowed, with a warning).
    CanaryToProduction,
}

impl PromotionKind {
    /// Its name in logs and spans (`promotion.kind`): `new_rollout`, `ramp_up`, `ramp_down`,
    /// `to_staging`, `to_production`, `canary_to_production`.
    ///
    /// # Example
    /// ```
    /// assert_eq!(promotion_gates::PromotionKind::RampUp.name(), "ramp_up");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            PromotionKind::NewRollout => "new_rollout",
            PromotionKind::RampUp => "ramp_up",
            PromotionKind::RampDown => "ramp_down",
            PromotionKind::ToStaging => "to_staging",
            PromotionKind::ToProduction => "to_production",
            PromotionKind::CanaryToProduction => "canary_to_production",
        }
    }
}

/// A valid promotion and whether the judge must approve it first.
///
/// # Example
/// ```
/// use promotion_gates::{plan_promotion, Environment};
/// let step = plan_promotion(Environment::Staging, Environment::Production)?;
/// assert!(step.gated);
/// # Ok::<(), promotion_gates::PromotionError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Promotion {
    /// What kind of move it is.
    pub kind: PromotionKind,
    /// Whether the judge must find the new version compliant before the move.
    pub gated: bool,
}

/// Whether `a` and `b` send every request to the same version: the same environment, or
/// canaries whose shares round to the same threshold (the same buckets: see
/// [`threshold_for_percent`]). A change between them changes no request's version, so it
/// begins no new stage.
pub(crate) fn same_split(a: Environment, b: Environment) -> bool {
    match (a, b) {
        (
            Environment::Canary { traffic_percent: p },
            Environment::Canary { traffic_percent: q },
        ) => threshold_for_percent(p) == threshold_for_percent(q),
        _ => a == b,
    }
}

/// Plans the move from `from` to `to`, or says why it is not a valid promotion.
///
/// Both environments are assumed valid (see [`Environment::validate`]).
///
/// # Errors
/// [`PromotionError::AlreadyThere`] when `to == from`, or when both are canaries whose shares
/// round to the same threshold (the same buckets, so the same split: see
/// [`threshold_for_percent`]); [`PromotionError::InvalidPath`] when the
/// state machine has no such edge (also from a canary of no bucket, 0 %, to Staging or
/// Production: it has no outcome to judge, as Production has none).
///
/// # Example
/// ```
/// use promotion_gates::{plan_promotion, Environment};
/// assert!(plan_promotion(Environment::Production, Environment::Staging).is_err());
/// // A canary at 0 % has no outcome to judge: ramping up from it is a new rollout.
/// let off = Environment::Canary { traffic_percent: 0.0 };
/// assert!(!plan_promotion(off, Environment::Canary { traffic_percent: 1.0 })?.gated);
/// assert!(plan_promotion(off, Environment::Staging).is_err());
/// # Ok::<(), promotion_gates::PromotionError>(())
/// ```
pub fn plan_promotion(from: Environment, to: Environment) -> Result<Promotion, PromotionError> {
    use Environment::{Canary, Production, Staging};
    let (kind, gated) = match (from, to) {
        (Canary { traffic_percent: p }, Canary { traffic_percent: q }) => {
            let (here, there) = (threshold_for_percent(p), threshold_for_percent(q));
            if there > here {
                // From no bucket, the judge has no canary outcome to approve (a request forced
                // to the canary counts in no cohort): a new rollout, as from Production.
                (PromotionKind::RampUp, here > 0)
            } else if there < here {
                (PromotionKind::RampDown, false)
            } else if q == p {
                return Err(PromotionError::AlreadyThere(from.to_string()));
            } else {
                // A new stage would restart the judge's evidence for the very same split.
                return Err(PromotionError::AlreadyThere(format!(
                    "{from}, which routes the same buckets as {to} ({here} of {BUCKETS})"
                )));
            }
        }
        // A canary of no bucket has no evidence to judge, as Production has none.
        (Canary { traffic_percent: p }, Staging | Production) if threshold_for_percent(p) == 0 => {
            return Err(invalid(
                from,
                to,
                "a canary at 0 % has no outcome to judge: ramp it up first (not gated from 0 %)",
            ));
        }
        (Canary { .. }, Staging) => (PromotionKind::ToStaging, true),
        (Canary { .. }, Production) => (PromotionKind::CanaryToProduction, true),
        (Staging, Production) => (PromotionKind::ToProduction, true),
        (Production, Canary { .. }) => (PromotionKind::NewRollout, false),
        (Staging, Staging) | (Production, Production) => {
            return Err(PromotionError::AlreadyThere(from.to_string()));
        }
        (Staging, Canary { .. }) => {
            return Err(invalid(
                from,
                to,
                "from staging the only promotion is to production; use rollback to leave",
            ));
        }
        (Production, Staging) => {
            return Err(invalid(
                from,
                to,
                "a release starts as a canary: promote to Canary{percent} first",
            ));
        }
    };
    Ok(Promotion { kind, gated })
}

fn invalid(from: Environment, to: Environment, hint: &'static str) -> PromotionError {
    PromotionError::InvalidPath {
        from: from.to_string(),
        to: to.to_string(),
        hint,
    }
}

/// The config after a promotion of `kind` to `target`. A promotion to Production graduates the
/// release's flags: they become stable flags, on for every request.
pub(crate) fn promoted(
    config: &PromotionConfig,
    target: Environment,
    kind: PromotionKind,
) -> PromotionConfig {
    let mut next = config.clone();
    next.environment = target;
    if matches!(
        kind,
        PromotionKind::ToProduction | PromotionKind::CanaryToProduction
    ) {
        let released = std::mem::take(&mut next.feature_flags);
        next.graduated_flags.extend(released);
    }
    next
}

/// The config after a rollback: back to Production, the release's flags off. Graduated flags
/// belong to the stable version and stay on.
pub(crate) fn rolled_back(config: &PromotionConfig) -> PromotionConfig {
    let mut next = config.clone();
    next.environment = Environment::Production;
    next.feature_flags.clear();
    next
}

/// The config after a rollback of a release made over `config`, a later state than the one
/// judged: the write that ended the judged stage (a promotion, a flag turned on, a swap), or
/// another process's write in the same stage on top of a promotion. Back to Production, the
/// release's flags off, as [`rolled_back`]: in Canary or Staging every release flag (one
/// turned on since is the release's too), and the flags the release graduated (`graduated`:
/// release flags a promotion to Production made stable). Everything else `config` changed is
/// kept: a flag turned on in Production (for the next rollout's forced requests), a graduated
/// flag turned off (a kill switch), a policy field swapped in.
pub(crate) fn rolled_back_over(config: &PromotionConfig, graduated: &[String]) -> PromotionConfig {
    let mut next = config.clone();
    if next.environment != Environment::Production {
        next.feature_flags.clear();
    }
    next.environment = Environment::Production;
    // Linear: a config may hold `MAX_FLAGS` flags.
    let graduated: std::collections::HashSet<&str> = graduated.iter().map(String::as_str).collect();
    next.graduated_flags
        .retain(|flag| !graduated.contains(flag.as_str()));
    next
}

/// The config after a rollback decided on `decided`, whose rolled-back config is `rollback`,
/// written over `stored`, a later write in Canary or Staging of the same release (flags
/// turned on, a stage each, or a write in the same stage) by another process. `rollback` is [`rolled_back`] of the release
/// judged: of `decided` itself, or, for a write undone by the rollback (a swap that started a
/// stage as the judge called for the rollback of the one it ended), of the config before that
/// write, whose changes the rollback takes back. The edits `stored` made since `decided` are
/// kept, as [`rolled_back_over`] keeps another process's: a graduated flag turned off (a kill
/// switch), a policy field swapped in, a flag turned on since as a graduated one. Back to
/// Production, every release flag off (one turned on since is the release's too), and a flag
/// on in `decided` that `stored` graduated off unless `rollback` graduates it: a release flag
/// of the release rolled back that a swap since moved to `graduated_flags` goes off in Canary,
/// as [`rolled_back_over`] takes back the flags a write over the judged stage graduated (that
/// swap started a stage, which the stable cohort judged with the flag), and stays in Staging
/// (the swap kept the stage, and changed no judged request's flags: the rollback made in the
/// process that swapped keeps it too).
pub(crate) fn rolled_back_under(
    rollback: &PromotionConfig,
    decided: &PromotionConfig,
    stored: &PromotionConfig,
) -> PromotionConfig {
    /// `stored`'s value where it changed `decided`'s, else the rollback's.
    fn kept<T: PartialEq + Clone>(rollback: &T, decided: &T, stored: &T) -> T {
        if stored == decided { rollback } else { stored }.clone()
    }
    // Every field named: a field added to the config is decided here too.
    let PromotionConfig {
        environment: _,
        feature_flags: _,
        auto_rollback_enabled,
        slo_threshold,
        rollback_window_seconds,
        gate,
        salt,
        graduated_flags,
        max_rollback_history,
        store,
        overrides,
    } = stored;
    // Linear: a config may hold `MAX_FLAGS` flags.
    let set =
        |flags: &[String]| -> std::collections::HashSet<String> { flags.iter().cloned().collect() };
    let (before, after) = (
        set(&decided.graduated_flags),
        set(&rollback.graduated_flags),
    );
    let now = set(graduated_flags);
    // In Staging every judged request had the release's flags already: a swap that graduated
    // one changed none of them and kept the stage, and the flag is the stable version's from
    // then on (a rollback made in the process that swapped keeps it too).
    let released_in_staging = if decided.environment == Environment::Staging {
        set(&decided.feature_flags)
    } else {
        std::collections::HashSet::new()
    };
    // The stored graduated flags turned on since `decided` (off there), or graduated by the
    // rollback; not those it takes back: graduated by the write it undoes, or a release flag
    // of the release it rolls back graduated since in Canary (where that swap started a stage
    // of its own). Then those it turns on again (turned off by that write).
    let graduated = graduated_flags
        .iter()
        .filter(|flag| {
            !flag_is_on(decided, flag)
                || after.contains(*flag)
                || released_in_staging.contains(*flag)
        })
        .chain(
            rollback
                .graduated_flags
                .iter()
                .filter(|flag| !now.contains(*flag) && !before.contains(*flag)),
        )
        .cloned()
        .collect();
    PromotionConfig {
        environment: Environment::Production,
        feature_flags: Vec::new(),
        auto_rollback_enabled: kept(
            &rollback.auto_rollback_enabled,
            &decided.auto_rollback_enabled,
            auto_rollback_enabled,
        ),
        slo_threshold: kept(
            &rollback.slo_threshold,
            &decided.slo_threshold,
            slo_threshold,
        ),
        rollback_window_seconds: kept(
            &rollback.rollback_window_seconds,
            &decided.rollback_window_seconds,
            rollback_window_seconds,
        ),
        gate: gate.clone(),
        salt: kept(&rollback.salt, &decided.salt, salt),
        graduated_flags: graduated,
        max_rollback_history: kept(
            &rollback.max_rollback_history,
            &decided.max_rollback_history,
            max_rollback_history,
        ),
        // Where the state is kept is the store's.
        store: store.clone(),
        overrides: kept(&rollback.overrides, &decided.overrides, overrides),
    }
}

/// Whether `after` holds a graduated flag that `before` does not: a promotion to Production
/// graduated a release's flags between them, so `after` is another release, even in the same
/// environment with the same salt. A graduated flag turned off is a kill switch, not a
/// release.
pub(crate) fn graduates_a_flag(before: &PromotionConfig, after: &PromotionConfig) -> bool {
    // Linear: a config may hold `MAX_FLAGS` flags.
    let graduated: std::collections::HashSet<&str> =
        before.graduated_flags.iter().map(String::as_str).collect();
    after
        .graduated_flags
        .iter()
        .any(|flag| !graduated.contains(flag.as_str()))
}

/// The flags a promotion of `judged` to Production would graduate: its release flags that are
/// not graduated already.
pub(crate) fn would_graduate(judged: &PromotionConfig) -> Vec<String> {
    judged
        .feature_flags
        .iter()
        .filter(|flag| !judged.graduated_flags.contains(flag))
        .cloned()
        .collect()
}

/// Whether flag `name` is on, as a release flag or a graduated one.
pub(crate) fn flag_is_on(config: &PromotionConfig, name: &str) -> bool {
    config
        .feature_flags
        .iter()
        .chain(&config.graduated_flags)
        .any(|f| f == name)
}

/// Whether the change from `before` to `after` turns a flag on for the requests the judge
/// compares while the release is judged (`after` in Canary or Staging): a flag of
/// [`flags_judged_on`]. Such a change starts a new stage, as a new salt does, so that a
/// promotion is judged on evidence gathered with the flags as they are, never on evidence from
/// before a flag it would graduate was on, nor on a stable cohort that saw other flags than it
/// does. Turning a flag off (for either version's requests: a graduated flag moved back to
/// `feature_flags` is off for the stable version's) keeps the stage: it is the kill switch of
/// an incident, and must not reset a judge that may be about to roll the canary back (and a
/// flag turned off reaches no one when the release is promoted).
pub(crate) fn turns_a_flag_on(before: &PromotionConfig, after: &PromotionConfig) -> bool {
    !flags_judged_on(before, after).is_empty()
}

/// The flags the change from `before` to `after` turns on for the requests the judge compares
/// in `after`'s environment, each once: in Canary, those the requests of either version gain
/// ([`flags_gained`]: a release flag moved to `graduated_flags` too, which the stable cohort
/// judged gets); in Staging, where every request goes to the new version and no stable cohort
/// is judged, those its requests gain ([`flags_turned_on`]: a release flag graduated is not
/// one, they saw it already); in Production, where no release is judged, none. Each starts a
/// stage ([`turns_a_flag_on`]).
pub(crate) fn flags_judged_on<'a>(
    before: &PromotionConfig,
    after: &'a PromotionConfig,
) -> std::collections::HashSet<&'a str> {
    match after.environment {
        Environment::Canary { .. } => flags_gained(before, after),
        Environment::Staging => flags_turned_on(before, after),
        Environment::Production => std::collections::HashSet::new(),
    }
}

/// Whether the change from `before` to `after` turns a release flag on while the release is
/// judged (`after` in Canary or Staging): a flag of `after.feature_flags` that was off, neither
/// a release flag nor a graduated one. A graduated flag renamed is not one (it reaches every
/// user, as before), nor a graduated flag moved back to `feature_flags` (the new version's
/// requests saw it already).
pub(crate) fn turns_a_release_flag_on(before: &PromotionConfig, after: &PromotionConfig) -> bool {
    after.environment != Environment::Production
        && flags_turned_on(before, after)
            .iter()
            .any(|flag| after.feature_flags.iter().any(|f| f == flag))
}

/// The flags on in `after` (release or graduated ones) that are off in `before`, each once: on
/// for the gate ([`flag_is_on`]), whichever list holds them. [`flags_gained`] tells which
/// flags the requests of either version get.
pub(crate) fn flags_turned_on<'a>(
    before: &PromotionConfig,
    after: &'a PromotionConfig,
) -> std::collections::HashSet<&'a str> {
    // Linear: a config may hold `MAX_FLAGS` flags.
    let on: std::collections::HashSet<&str> = before
        .feature_flags
        .iter()
        .chain(&before.graduated_flags)
        .map(String::as_str)
        .collect();
    after
        .feature_flags
        .iter()
        .chain(&after.graduated_flags)
        .map(String::as_str)
        .filter(|flag| !on.contains(flag))
        .collect()
}

/// The flags the requests of either version see in `after` and not in `before`, each once:
/// the new version's requests see the release and the graduated flags, the stable version's
/// the graduated ones alone. So a flag off in `before` that `after` lists ([`flags_turned_on`]),
/// and a release flag of `before` that `after` graduates (the stable version's requests get
/// it). Never one that the requests of a version lose: no flag is gained by one version's
/// requests and lost by the other's.
pub(crate) fn flags_gained<'a>(
    before: &PromotionConfig,
    after: &'a PromotionConfig,
) -> std::collections::HashSet<&'a str> {
    // Linear: a config may hold `MAX_FLAGS` flags.
    let graduated: std::collections::HashSet<&str> =
        before.graduated_flags.iter().map(String::as_str).collect();
    let stable = after
        .graduated_flags
        .iter()
        .map(String::as_str)
        .filter(|flag| !graduated.contains(flag));
    let mut gained = flags_turned_on(before, after);
    gained.extend(stable);
    gained
}

/// The flags the change from `before` to `after` turns off, then those it turns on, each once
/// with whether it is on after, in the order the configs list them. A flag is turned on or off
/// for the requests of either version, as [`flags_gained`] says: one moved from
/// `feature_flags` to `graduated_flags` is turned on (the stable version's requests get it),
/// one moved back is turned off (theirs lose it).
pub(crate) fn flag_changes<'a>(
    before: &'a PromotionConfig,
    after: &'a PromotionConfig,
) -> Vec<(&'a str, bool)> {
    // Linear: each flag is taken out of its set the first time it is listed.
    let mut turned_on = flags_gained(before, after);
    let mut turned_off = flags_gained(after, before);
    let listed = |config: &'a PromotionConfig| {
        config
            .feature_flags
            .iter()
            .chain(&config.graduated_flags)
            .map(String::as_str)
    };
    let off = listed(before).filter(|flag| turned_off.remove(flag));
    let off: Vec<(&str, bool)> = off.map(|flag| (flag, false)).collect();
    let on = listed(after).filter(|flag| turned_on.remove(flag));
    off.into_iter().chain(on.map(|flag| (flag, true))).collect()
}

/// The config with release flag `name` on, or `None` when the flag is already on (as a release
/// flag or a graduated one). `name` is assumed valid.
pub(crate) fn with_flag_enabled(config: &PromotionConfig, name: &str) -> Option<PromotionConfig> {
    if flag_is_on(config, name) {
        return None;
    }
    let mut next = config.clone();
    next.feature_flags.push(name.to_string());
    Some(next)
}

/// The config with flag `name` off, release or graduated.
///
/// # Errors
/// [`FlagError::NotEnabled`] when the flag is not on.
pub(crate) fn with_flag_disabled(
    config: &PromotionConfig,
    name: &str,
) -> Result<PromotionConfig, FlagError> {
    if !flag_is_on(config, name) {
        return Err(FlagError::NotEnabled(name.to_string()));
    }
    let mut next = config.clone();
    next.feature_flags.retain(|f| f != name);
    next.graduated_flags.retain(|f| f != name);
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::canary;
    use Environment::{Production, Staging};

    #[test]
    fn the_whole_table() {
        let ok = |from, to, kind, gated| {
            assert_eq!(
                plan_promotion(from, to),
                Ok(Promotion { kind, gated }),
                "{from} -> {to}"
            );
        };
        ok(Production, canary(1.0), PromotionKind::NewRollout, false);
        ok(Production, canary(0.0), PromotionKind::NewRollout, false);
        ok(canary(1.0), canary(5.0), PromotionKind::RampUp, true);
        // From no bucket (0 %, or a share that rounds to none) the judge has nothing to
        // approve: a new rollout, as from Production.
        ok(canary(0.0), canary(1.0), PromotionKind::RampUp, false);
        ok(
            canary(0.000_004),
            canary(100.0),
            PromotionKind::RampUp,
            false,
        );
        ok(canary(0.000_01), canary(1.0), PromotionKind::RampUp, true);
        ok(canary(5.0), canary(1.0), PromotionKind::RampDown, false);
        ok(canary(5.0), Staging, PromotionKind::ToStaging, true);
        ok(
            canary(5.0),
            Production,
            PromotionKind::CanaryToProduction,
            true,
        );
        ok(Staging, Production, PromotionKind::ToProduction, true);

        for (from, to) in [
            (Production, Staging),
            (Staging, canary(10.0)),
            (canary(0.0), Staging),
            (canary(0.0), Production),
            (canary(0.000_004), Production),
        ] {
            assert!(matches!(
                plan_promotion(from, to),
                Err(PromotionError::InvalidPath { .. })
            ));
        }
        for env in [Production, Staging, canary(3.0)] {
            assert!(matches!(
                plan_promotion(env, env),
                Err(PromotionError::AlreadyThere(_))
            ));
        }
    }

    #[test]
    fn an_invalid_path_names_both_environments_as_they_are_shown() {
        for (from, to, shown) in [
            (Staging, canary(12.5), "Staging -> Canary{12.5}"),
            (canary(0.0), Production, "Canary{0} -> Production"),
            (Production, Staging, "Production -> Staging"),
        ] {
            let err = plan_promotion(from, to).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid promotion path {shown}: ")),
                "{err}"
            );
        }
    }

    #[test]
    fn shares_of_the_same_buckets_are_the_same_split() {
        assert!(same_split(canary(10.000001), canary(10.0000012)));
        assert!(same_split(canary(10.0), canary(10.0)));
        assert!(
            !same_split(canary(10.0), canary(10.00001)),
            "one bucket apart"
        );
        assert!(same_split(Environment::Staging, Environment::Staging));
        assert!(!same_split(canary(100.0), Environment::Staging));
        assert!(!same_split(Environment::Staging, Environment::Production));
    }

    #[test]
    fn a_ramp_to_a_share_of_the_same_buckets_is_no_promotion() {
        // 10.000001 % and 10.0000012 % both round to 1 000 000 buckets: the same split.
        let refused = plan_promotion(canary(10.000001), canary(10.0000012));
        assert_eq!(
            refused.map_err(|e| e.to_string()),
            Err(
                "the gate is already in Canary{10.000001}, which routes the same buckets as \
                 Canary{10.0000012} (1000000 of 10000000); nothing to promote"
                    .to_string()
            )
        );
        assert!(matches!(
            plan_promotion(canary(10.0000012), canary(10.0)),
            Err(PromotionError::AlreadyThere(_))
        ));
        // One bucket apart is a ramp.
        assert_eq!(
            plan_promotion(canary(10.0), canary(10.00001)).map(|p| p.kind),
            Ok(PromotionKind::RampUp)
        );
    }

    fn flags(release: &[&str], graduated: &[&str]) -> PromotionConfig {
        PromotionConfig {
            environment: canary(5.0),
            feature_flags: release.iter().map(|f| f.to_string()).collect(),
            graduated_flags: graduated.iter().map(|f| f.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_promotion_to_production_graduates_flags() {
        let config = flags(&["new"], &["old"]);
        for kind in [
            PromotionKind::ToProduction,
            PromotionKind::CanaryToProduction,
        ] {
            let next = promoted(&config, Production, kind);
            assert_eq!(next.environment, Production);
            assert!(next.feature_flags.is_empty());
            assert_eq!(next.graduated_flags, ["old", "new"]);
        }
        for (kind, target) in [
            (PromotionKind::RampUp, canary(10.0)),
            (PromotionKind::RampDown, canary(1.0)),
            (PromotionKind::ToStaging, Staging),
            (PromotionKind::NewRollout, canary(1.0)),
        ] {
            let next = promoted(&config, target, kind);
            assert_eq!(next.environment, target);
            assert_eq!(
                (next.feature_flags, next.graduated_flags),
                (config.feature_flags.clone(), config.graduated_flags.clone())
            );
        }
    }

    #[test]
    fn a_rollback_returns_to_production_with_the_release_flags_off() {
        let next = rolled_back(&flags(&["new"], &["old"]));
        assert_eq!(next.environment, Production);
        assert!(next.feature_flags.is_empty());
        assert_eq!(next.graduated_flags, ["old"]);
    }

    #[test]
    fn a_rollback_over_a_later_write_takes_back_the_release_and_keeps_the_rest() {
        let judged = flags(&["new"], &["old"]);
        assert_eq!(would_graduate(&judged), ["new"]);
        // Over the promotion to Production: as if rolled back before it.
        let promoted = promoted(&judged, Production, PromotionKind::CanaryToProduction);
        let graduated = would_graduate(&judged);
        assert_eq!(
            rolled_back_over(&promoted, &graduated),
            rolled_back(&judged)
        );
        // Over a ramp that turned a flag on too: every release flag off.
        let mut ramped = promoted_to(&judged, canary(25.0));
        ramped.feature_flags.push("late".into());
        let over = rolled_back_over(&ramped, &graduated);
        assert_eq!(over.environment, Production);
        assert!(over.feature_flags.is_empty());
        assert_eq!(over.graduated_flags, ["old"]);
        // Over another process's edit in Production on top of the promotion: the edit stays.
        let mut edited = promoted.clone();
        edited.graduated_flags.retain(|f| f != "old"); // a kill switch
        edited.feature_flags.push("next".into()); // for the next rollout's forced requests
        edited.slo_threshold = 0.9;
        let over = rolled_back_over(&edited, &graduated);
        assert_eq!(over.environment, Production);
        assert!(over.graduated_flags.is_empty(), "{over:?}");
        assert_eq!(over.feature_flags, ["next"]);
        assert_eq!(over.slo_threshold, 0.9);
    }

    #[test]
    fn a_rollback_under_a_later_write_undoes_the_write_judged_and_keeps_the_edits_since() {
        let judged = flags(&["new"], &["old", "gone"]);
        // A write the rollback undoes: a new salt and threshold, a graduated flag off and one on.
        let mut written = judged.clone();
        written.salt = Some("reshuffled".into());
        written.slo_threshold = 0.5;
        written.graduated_flags = vec!["old".into(), "added".into()];
        // Another process's edits on top: a flag on, a kill switch, a window swapped in.
        let mut stored = written.clone();
        stored.feature_flags.push("other".into());
        stored.graduated_flags.retain(|f| f != "old");
        stored.rollback_window_seconds = 60;
        let under = rolled_back_under(&rolled_back(&judged), &written, &stored);
        let mut expected = rolled_back(&judged);
        expected.graduated_flags = vec!["gone".into()];
        expected.rollback_window_seconds = 60;
        assert_eq!(under, expected);
        // A rollback of the write's own config: that write's config rolled back.
        assert_eq!(
            rolled_back_under(&rolled_back(&written), &written, &stored),
            rolled_back(&stored)
        );
    }

    #[test]
    fn a_release_flag_a_swap_graduated_stays_through_a_rollback_decided_in_staging_only() {
        // Decided with release flag "f"; another process's swap since graduated it.
        for (environment, kept) in [(Environment::Staging, true), (canary(5.0), false)] {
            let decided = PromotionConfig {
                environment,
                ..flags(&["f", "g"], &["old"])
            };
            let mut stored = decided.clone();
            stored.feature_flags = vec!["g".into()];
            stored.graduated_flags.push("f".into());
            let under = rolled_back_under(&rolled_back(&decided), &decided, &stored);
            assert_eq!(under.environment, Environment::Production);
            assert!(under.feature_flags.is_empty(), "{under:?}");
            let expected: &[&str] = if kept { &["old", "f"] } else { &["old"] };
            assert_eq!(under.graduated_flags, expected, "{environment}");
        }
    }

    #[test]
    fn a_flag_graduated_since_is_another_release() {
        let judged = flags(&["new"], &["old"]);
        let next = promoted_to(
            &promoted(&judged, Production, PromotionKind::CanaryToProduction),
            canary(5.0),
        );
        assert!(graduates_a_flag(&judged, &next));
        let mut killed = judged.clone();
        killed.graduated_flags.clear();
        assert!(!graduates_a_flag(&judged, &killed));
    }

    fn promoted_to(config: &PromotionConfig, target: Environment) -> PromotionConfig {
        promoted(config, target, PromotionKind::RampUp)
    }

    #[test]
    fn flag_edits() {
        let config = flags(&["new"], &["old"]);
        assert!(flag_is_on(&config, "new") && flag_is_on(&config, "old"));
        assert!(!flag_is_on(&config, "other"));
        assert_eq!(with_flag_enabled(&config, "new"), None);
        assert_eq!(with_flag_enabled(&config, "old"), None);
        let enabled = with_flag_enabled(&config, "other").unwrap();
        assert_eq!(enabled.feature_flags, ["new", "other"]);
        assert_eq!(enabled.graduated_flags, ["old"]);

        let without_new = with_flag_disabled(&config, "new").unwrap();
        assert!(without_new.feature_flags.is_empty());
        assert_eq!(without_new.graduated_flags, ["old"]);
        let without_old = with_flag_disabled(&config, "old").unwrap();
        assert_eq!(without_old.feature_flags, ["new"]);
        assert!(without_old.graduated_flags.is_empty());
        assert_eq!(
            with_flag_disabled(&config, "other"),
            Err(FlagError::NotEnabled("other".into()))
        );
    }
}
