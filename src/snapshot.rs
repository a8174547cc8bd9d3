//! The immutable compiled state that routing reads: one [`Snapshot`] per published write.
//!
//! A snapshot holds the full config (for readers of the config) and a small `Copy`
//! [`RouteTable`]: the salt's SHA-256 midstate, the threshold in buckets and the two flag sets.
//! Routing copies the table into a per-thread cache and only looks at the shared snapshot again
//! when the gate's generation number moves.

use crate::bucket::{BUCKETS, SaltedHasher};
use crate::config::{Environment, PromotionConfig};
use crate::decision::{RouteReason, RoutingDecision, StageId};
use crate::error::FlagError;
use crate::flags::{EnabledFeatures, FlagSetId, FlagSetIndex, FlagSets};

/// Everything one routing decision needs, in about a cache line and a half.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteTable {
    /// Publication number; grows by one per write.
    pub(crate) generation: u64,
    /// Release stage; grows by one per environment change.
    pub(crate) stage: StageId,
    pub(crate) environment: Environment,
    /// Requests with a bucket below this go to the new version.
    pub(crate) threshold: u32,
    pub(crate) hasher: SaltedHasher,
    /// Flags seen by requests to the new version: the release's and the graduated ones.
    pub(crate) new_version_flags: FlagSetId,
    /// Flags seen by requests to the stable version: the graduated ones.
    pub(crate) stable_flags: FlagSetId,
}

impl RouteTable {
    /// Routes one request id. Pure, allocation-free.
    #[inline]
    pub(crate) fn route<'a>(&self, sets: &'a FlagSets, request_id: &[u8]) -> RoutingDecision<'a> {
        let bucket = self.hasher.bucket(request_id);
        let is_canary = bucket.get() < self.threshold;
        let flags = if is_canary {
            self.new_version_flags
        } else {
            self.stable_flags
        };
        RoutingDecision {
            target_environment: self.environment,
            is_canary,
            enabled_features: EnabledFeatures::new(sets, flags),
            reason: RouteReason {
                environment: self.environment,
                bucket,
                threshold: self.threshold,
            },
            stage: self.stage,
        }
    }
}

/// One published state of a gate.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) config: PromotionConfig,
    pub(crate) route: RouteTable,
}

impl Snapshot {
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
        let route = RouteTable {
            generation,
            stage,
            environment: config.environment,
            threshold,
            hasher: SaltedHasher::new(config.effective_salt().as_bytes()),
            new_version_flags,
            stable_flags,
        };
        Ok(Self { config, route })
    }
}
