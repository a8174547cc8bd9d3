//! The immutable compiled state that routing reads: one [`Snapshot`] per published write.
//!
//! A snapshot holds the full config (for readers of the config) and a small `Copy`
//! [`RouteTable`]: the salt's SHA-256 midstate, the threshold in buckets, the two flag sets and
//! whether overrides list ids (the overrides themselves stay in the snapshot).
//! Routing copies the table into a per-thread cache and only looks at the shared snapshot again
//! when the gate's generation number moves.

use crate::bucket::{BUCKETS, Bucket, SaltedHasher};
use crate::config::{Environment, PromotionConfig};
use crate::decision::{Cohort, RouteReason, RoutingDecision, StageId};
use crate::error::FlagError;
use crate::flags::{EnabledFeatures, FlagSetId, FlagSetIndex, FlagSets};
use crate::overrides::{Forced, OverrideTable};

/// Everything one routing decision needs, in about a cache line and a half.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteTable {
    /// Publication number; grows by one per write.
    pub(crate) generation: u64,
    /// Release stage; grows at each write that starts one ([`StageId`] says which).
    pub(crate) stage: StageId,
    pub(crate) environment: Environment,
    /// Requests with a bucket below this go to the new version.
    pub(crate) threshold: u32,
    pub(crate) hasher: SaltedHasher,
    /// Flags seen by requests to the new version: the release's and the graduated ones.
    pub(crate) new_version_flags: FlagSetId,
    /// Flags seen by requests to the stable version: the graduated ones.
    pub(crate) stable_flags: FlagSetId,
    /// Whether the snapshot's [`OverrideTable`] lists ids: routing looks at it only then, or
    /// when the host passed a forcing value.
    pub(crate) lists_ids: bool,
}

impl RouteTable {
    /// Routes one request id. Pure, allocation-free.
    #[inline]
    pub(crate) fn route<'a>(&self, sets: &'a FlagSets, request_id: &[u8]) -> RoutingDecision<'a> {
        let bucket = self.hasher.bucket(request_id);
        self.decision(sets, bucket, bucket.get() < self.threshold, None)
    }

    /// The decision for a request in `bucket` sent to the new version (`is_canary`) or the
    /// stable one, by its bucket or, with `forced`, by an override.
    #[inline]
    fn decision<'a>(
        &self,
        sets: &'a FlagSets,
        bucket: Bucket,
        is_canary: bool,
        forced: Option<Forced>,
    ) -> RoutingDecision<'a> {
        RoutingDecision {
            target_environment: self.environment,
            is_canary,
            enabled_features: EnabledFeatures::new(sets, self.flags(is_canary)),
            reason: RouteReason {
                environment: self.environment,
                bucket,
                threshold: self.threshold,
                forced,
            },
            stage: self.stage,
            forced,
        }
    }

    /// The flag set of a request to the new version (`true`) or the stable one.
    #[inline]
    fn flags(&self, is_canary: bool) -> FlagSetId {
        if is_canary {
            self.new_version_flags
        } else {
            self.stable_flags
        }
    }
}

/// One published state of a gate.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) config: PromotionConfig,
    pub(crate) route: RouteTable,
    /// The config's overrides, compiled for lookup.
    pub(crate) overrides: OverrideTable,
}

/// A decision made with the overrides, and whether a forcing value passed was not honoured.
pub(crate) struct Overridden<'a> {
    pub(crate) decision: RoutingDecision<'a>,
    pub(crate) ignored_value: bool,
}

impl Snapshot {
    /// Routes one request id with this snapshot's overrides: an id list first, then the
    /// forcing value `value`, then the bucket. Allocation-free.
    #[inline]
    pub(crate) fn route_overridden<'a>(
        &self,
        sets: &'a FlagSets,
        request_id: &[u8],
        value: Option<&[u8]>,
    ) -> Overridden<'a> {
        let table = &self.route;
        let bucket = table.hasher.bucket(request_id);
        let (forced, ignored_value) = self.overrides.force(request_id, bucket, value);
        let is_canary = match forced {
            Some(forced) => forced.to == Cohort::Canary,
            None => bucket.get() < table.threshold,
        };
        let decision = table.decision(sets, bucket, is_canary, forced);
        Overridden {
            decision,
            ignored_value,
        }
    }

    /// Compiles a validated config into a snapshot, interning its flag sets as the live ones.
    ///
    /// # Errors
    /// [`FlagError::SetNumbersExhausted`] when a new set is needed and the gate has no number
    /// left; nothing changed then.
    pub(crate) fn build(
        config: PromotionConfig,
        generation: u64,
        stage: StageId,
        sets: &FlagSets,
        index: &mut FlagSetIndex,
    ) -> Result<Self, FlagError> {
        let threshold = match config.environment {
            Environment::Canary { traffic_percent } => {
                crate::bucket::threshold_for_percent(traffic_percent)
            }
            Environment::Staging => BUCKETS,
            Environment::Production => 0,
        };
        let graduated = config.graduated_flags.iter().map(String::as_str);
        let [stable_flags, new_version_flags] = sets.intern_live(
            index,
            graduated.clone(),
            graduated.chain(config.feature_flags.iter().map(String::as_str)),
        )?;
        let hasher = SaltedHasher::new(config.effective_salt().as_bytes());
        let overrides = OverrideTable::build(config.overrides.as_ref(), &hasher);
        let route = RouteTable {
            generation,
            stage,
            environment: config.environment,
            threshold,
            hasher,
            new_version_flags,
            stable_flags,
            lists_ids: overrides.lists_ids(),
        };
        Ok(Self {
            config,
            route,
            overrides,
        })
    }
}
