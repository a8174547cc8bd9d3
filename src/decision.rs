//! What routing returns: [`RoutingDecision`], its [`RouteReason`] and the [`Cohort`] and
//! [`StageId`] that outcome recording attributes to.

use std::fmt;

use crate::bucket::{BUCKETS_PER_PERCENT, Bucket};
use crate::config::Environment;
use crate::flags::EnabledFeatures;
use crate::overrides::Forced;

/// Which version a request was sent to, as the judge counts it.
///
/// # Example
/// ```
/// use promotion_gates::Cohort;
/// assert_eq!(Cohort::Canary.name(), "canary");
/// assert_eq!(Cohort::ALL.len(), 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cohort {
    /// The new version (a canary request, or any request in Staging).
    Canary = 0,
    /// The stable version.
    Stable = 1,
}

impl Cohort {
    /// Both cohorts, in index order.
    pub const ALL: [Cohort; 2] = [Cohort::Canary, Cohort::Stable];

    /// `canary` or `stable`.
    ///
    /// # Example
    /// ```
    /// assert_eq!(promotion_gates::Cohort::Stable.name(), "stable");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Cohort::Canary => "canary",
            Cohort::Stable => "stable",
        }
    }

    /// The cohort of a request to the new version (`true`) or the stable one.
    ///
    /// # Example
    /// ```
    /// use promotion_gates::Cohort;
    /// assert_eq!(Cohort::of(true), Cohort::Canary);
    /// ```
    pub fn of(is_canary: bool) -> Self {
        if is_canary {
            Cohort::Canary
        } else {
            Cohort::Stable
        }
    }
}

/// One value per cohort, named: the canary's and the stable version's (in place of an array
/// indexed by position). Index it with a [`Cohort`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct PerCohort<T> {
    /// The new version's.
    pub(crate) canary: T,
    /// The stable version's.
    pub(crate) stable: T,
}

impl<T> PerCohort<T> {
    /// A value per cohort, made by `make`.
    pub(crate) fn from_fn(mut make: impl FnMut(Cohort) -> T) -> Self {
        Self {
            canary: make(Cohort::Canary),
            stable: make(Cohort::Stable),
        }
    }

    /// Both values, canary first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        [&self.canary, &self.stable].into_iter()
    }

    /// Both values, mutable, canary first.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        [&mut self.canary, &mut self.stable].into_iter()
    }
}

impl<T> std::ops::Index<Cohort> for PerCohort<T> {
    type Output = T;

    #[inline]
    fn index(&self, cohort: Cohort) -> &T {
        match cohort {
            Cohort::Canary => &self.canary,
            Cohort::Stable => &self.stable,
        }
    }
}

impl<T> std::ops::IndexMut<Cohort> for PerCohort<T> {
    #[inline]
    fn index_mut(&mut self, cohort: Cohort) -> &mut T {
        match cohort {
            Cohort::Canary => &mut self.canary,
            Cohort::Stable => &mut self.stable,
        }
    }
}

/// The number of a release stage; outcomes are judged per stage.
///
/// A new stage starts with each write that changes which requests the new version serves, or
/// what it serves them with: a promotion (a new rollout, a ramp up or down, to Staging or
/// Production), a rollback, a flag turned on in Canary or Staging
/// ([`enable_feature`](crate::PromotionGateManager::enable_feature), or a
/// [`swap_config`](crate::PromotionGateManager::swap_config) that turns one on for the requests
/// judged: in Canary, of either version, as one that graduates a release flag does for the
/// stable cohort's; in Staging, of the new version, which a graduated release flag is not), and a
/// `swap_config` of the environment or the salt. A swap to a canary share that rounds to the
/// same buckets moves no request and keeps the stage, as a flag turned off (a kill switch), a
/// flag change in Production and a policy change do. With a state store, another process's
/// write that started a stage starts one here too, once followed.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// let gate = PromotionGateManager::new(
///     PromotionConfig::default(),
///     SloAdmissionController::new(SloConfig::default())?,
/// )?;
/// let before = gate.route_request("u").stage;
/// gate.promote(Environment::Canary { traffic_percent: 10.000001 })?;
/// assert!(gate.route_request("u").stage > before);
/// // A flag turned on in Canary starts a stage: the judge's evidence was gathered without it.
/// let before = gate.stage();
/// gate.enable_feature("dark_mode")?;
/// assert!(gate.stage() > before);
/// // A share of the same buckets routes every request as before: the stage goes on.
/// let before = gate.stage();
/// let mut config = gate.config();
/// config.environment = Environment::Canary { traffic_percent: 10.0000012 };
/// gate.swap_config(config)?;
/// assert_eq!(gate.stage(), before);
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StageId(pub(crate) u64);

impl StageId {
    /// The stage numbered `n`, for hosts that keep decisions as plain data (the C ABI) and
    /// hand them back to [`record_for`](crate::PromotionGateManager::record_for).
    ///
    /// # Example
    /// ```
    /// use promotion_gates::StageId;
    /// assert_eq!(StageId::new(3).get(), 3);
    /// ```
    pub const fn new(n: u64) -> Self {
        Self(n)
    }

    /// The stage number (starts at 1, grows by one per stage).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert_eq!(gate.route_request("u").stage.get(), 1);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Why a request went where it went: the bucket, the threshold and the environment.
///
/// Its `Display` reads e.g. `canary: bucket 1503119 (15.03119%) < threshold 2000000 (20%)`.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// let gate = PromotionGateManager::new(
///     PromotionConfig { environment: Environment::Canary { traffic_percent: 20.0 }, ..Default::default() },
///     SloAdmissionController::new(SloConfig::default())?,
/// )?;
/// let decision = gate.route_request("user-12345-session");
/// let reason = decision.reason.to_string();
/// assert!(reason.contains("threshold 2000000 (20%)"), "{reason}");
/// assert_eq!(decision.is_canary, decision.reason.bucket().get() < 2_000_000);
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RouteReason {
    pub(crate) environment: Environment,
    pub(crate) bucket: Bucket,
    pub(crate) threshold: u32,
    pub(crate) forced: Option<Forced>,
}

impl RouteReason {
    /// The request's bucket.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert!(gate.route_request("u").reason.bucket().get() < BUCKETS);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn bucket(&self) -> Bucket {
        self.bucket
    }

    /// The threshold in buckets: requests below it go to the new version.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert_eq!(gate.route_request("u").reason.threshold(), 0); // Production: nobody
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// The override that decided the request, if one did (then the bucket did not).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// let gate = PromotionGateManager::new(
    ///     PromotionConfig { overrides: Some(Overrides { canary_ids: vec!["tester-1".into()], ..Default::default() }), ..Default::default() },
    ///     SloAdmissionController::new(SloConfig::default())?,
    /// )?;
    /// let reason = gate.route_request("tester-1").reason;
    /// assert_eq!(reason.forced().map(|f| f.by), Some(ForcedBy::IdList));
    /// assert_eq!(reason.to_string(), format!("forced to canary by overrides.canary_ids (bucket {})", reason.bucket().get()));
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn forced(&self) -> Option<Forced> {
        self.forced
    }
}

impl fmt::Display for RouteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bucket = self.bucket.get();
        let bucket_pct = self.bucket.percent();
        let threshold_pct = f64::from(self.threshold) / BUCKETS_PER_PERCENT;
        if let Some(forced) = self.forced {
            return write!(f, "{forced} (bucket {bucket})");
        }
        match self.environment {
            Environment::Canary { .. } if bucket < self.threshold => write!(
                f,
                "canary: bucket {bucket} ({bucket_pct}%) < threshold {} ({threshold_pct}%)",
                self.threshold
            ),
            Environment::Canary { .. } => write!(
                f,
                "stable: bucket {bucket} ({bucket_pct}%) >= threshold {} ({threshold_pct}%)",
                self.threshold
            ),
            Environment::Staging => {
                write!(
                    f,
                    "staging: all traffic to the new version (bucket {bucket})"
                )
            }
            Environment::Production => {
                write!(
                    f,
                    "production: all traffic to the stable version (bucket {bucket})"
                )
            }
        }
    }
}

/// Where one request goes, which flags it sees, and why.
///
/// It borrows its gate (for the flag names) and holds no reference count, so routing writes
/// no shared memory. Pass it back to
/// [`record_outcome`](crate::PromotionGateManager::record_outcome) so the outcome counts for the
/// cohort and stage the request was routed under.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// let gate = PromotionGateManager::new(
///     PromotionConfig {
///         environment: Environment::Canary { traffic_percent: 10.0 },
///         feature_flags: vec!["new_api".into()],
///         ..Default::default()
///     },
///     SloAdmissionController::new(SloConfig::default())?,
/// )?;
/// let decision = gate.route_request("user-session-123");
/// if decision.is_canary {
///     assert!(decision.enabled_features.contains("new_api"));
/// } else {
///     assert!(decision.enabled_features.is_empty());
/// }
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RoutingDecision<'a> {
    /// The environment the gate was in when the request was routed.
    pub target_environment: Environment,
    /// Whether the request goes to the new version.
    pub is_canary: bool,
    /// The flags on for this request (readable for at least
    /// [`FLAG_SET_GRACE_WRITES`](crate::FLAG_SET_GRACE_WRITES) writes after the gate stops
    /// using them; see [`EnabledFeatures`]).
    pub enabled_features: EnabledFeatures<'a>,
    /// The bucket and threshold behind the decision.
    pub reason: RouteReason,
    /// The stage the request was routed in.
    pub stage: StageId,
    /// Set when an override forced the request (an id list of the config, or the forcing value
    /// the host passed to
    /// [`route_request_forced`](crate::PromotionGateManager::route_request_forced)); its
    /// outcome then counts in neither cohort ([`Recorded::Forced`](crate::Recorded::Forced)).
    pub forced: Option<Forced>,
}

impl RoutingDecision<'_> {
    /// The cohort the request's outcome counts for.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert_eq!(gate.route_request("u").cohort(), Cohort::Stable);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn cohort(&self) -> Cohort {
        Cohort::of(self.is_canary)
    }
}
