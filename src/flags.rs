//! Interned feature-flag sets and the allocation-free view a routing decision carries.
//!
//! A decision must tell its caller which flags are on without allocating and without holding
//! a reference count on the snapshot (an `Arc` clone per request writes a shared cache line).
//! So every distinct *set* of flag names a gate ever publishes is interned once, in an
//! append-only arena owned by the gate, and a decision holds only the set's number and a
//! borrow of the arena. Sets are never removed while the gate lives, so a decision stays
//! valid across any number of writes; a gate that cycles through the same sets does not grow.

use std::collections::HashMap;
use std::fmt;

/// One interned set of flag names, sorted, without duplicates.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct FlagSet {
    names: Box<[Box<str>]>,
}

/// The number of an interned flag set within its gate. Set 0 is always the empty set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct FlagSetId(pub(crate) u32);

/// The append-only arena of a gate's flag sets. Reads are lock-free; interning is done by
/// writers, which the manager serializes.
pub(crate) struct FlagSets {
    sets: boxcar::Vec<FlagSet>,
}

/// The writer-side index that finds an already interned set. Lives in the writer's state.
#[derive(Debug, Default)]
pub(crate) struct FlagSetIndex {
    by_names: HashMap<Box<[Box<str>]>, FlagSetId>,
}

impl FlagSets {
    /// An arena holding only the empty set, as set 0.
    pub(crate) fn new() -> Self {
        let sets = boxcar::Vec::new();
        sets.push(FlagSet::default());
        Self { sets }
    }

    /// The names of the set numbered `id`; an unknown number reads as the empty set.
    pub(crate) fn names(&self, id: FlagSetId) -> &[Box<str>] {
        self.sets.get(id.0 as usize).map_or(&[], |set| &set.names)
    }

    /// Interns the set of `names` (order and repeats do not matter) and returns its number.
    pub(crate) fn intern<'n>(
        &self,
        index: &mut FlagSetIndex,
        names: impl IntoIterator<Item = &'n str>,
    ) -> FlagSetId {
        let mut sorted: Vec<Box<str>> = names.into_iter().map(Box::from).collect();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.is_empty() {
            return FlagSetId(0);
        }
        let key: Box<[Box<str>]> = sorted.into_boxed_slice();
        if let Some(id) = index.by_names.get(&key) {
            return *id;
        }
        let pushed = self.sets.push(FlagSet { names: key.clone() });
        // The arena outgrowing u32 would take four billion distinct sets; saturate rather than
        // wrap, so that a number never names the wrong set.
        let id = FlagSetId(u32::try_from(pushed).unwrap_or(u32::MAX));
        index.by_names.insert(key, id);
        id
    }

    /// How many distinct sets this gate has interned (the empty set included).
    pub(crate) fn count(&self) -> usize {
        self.sets.count()
    }
}

impl fmt::Debug for FlagSets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlagSets")
            .field("count", &self.count())
            .finish()
    }
}

/// The feature flags on for one routed request: a borrowed, allocation-free view.
///
/// # Example
/// ```
/// use promotion_gates::{Environment, PromotionConfig, PromotionGateManager, SloAdmissionController, SloConfig};
///
/// let gate = PromotionGateManager::new(
///     PromotionConfig {
///         environment: Environment::Staging,
///         feature_flags: vec!["new_api".into(), "fast_path".into()],
///         ..Default::default()
///     },
///     SloAdmissionController::new(SloConfig::default())?,
/// )?;
/// let decision = gate.route_request("user-1");
/// let features = decision.enabled_features;
/// assert_eq!(features.len(), 2);
/// assert!(features.contains("new_api"));
/// assert_eq!(features.iter().collect::<Vec<_>>(), ["fast_path", "new_api"]);
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct EnabledFeatures<'a> {
    sets: &'a FlagSets,
    id: FlagSetId,
}

impl<'a> EnabledFeatures<'a> {
    pub(crate) fn new(sets: &'a FlagSets, id: FlagSetId) -> Self {
        Self { sets, id }
    }

    fn names(&self) -> &'a [Box<str>] {
        self.sets.names(self.id)
    }

    /// The flag names, in byte order.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// for name in gate.route_request("u").enabled_features.iter() {
    ///     println!("{name}");
    /// }
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'a str> + 'a {
        self.names().iter().map(|name| &**name)
    }

    /// The flag at `index` in byte order, if there is one (constant time).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert_eq!(gate.route_request("u").enabled_features.get(0), None);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn get(&self, index: usize) -> Option<&'a str> {
        self.names().get(index).map(|name| &**name)
    }

    /// How many flags are on.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert_eq!(gate.route_request("u").enabled_features.len(), 0);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.names().len()
    }

    /// Whether no flag is on.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert!(gate.route_request("u").enabled_features.is_empty());
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.names().is_empty()
    }

    /// Whether the flag `name` is on (a binary search, no allocation).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert!(!gate.route_request("u").enabled_features.contains("new_api"));
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn contains(&self, name: &str) -> bool {
        self.names()
            .binary_search_by(|probe| (**probe).cmp(name))
            .is_ok()
    }

    /// The interned set's number within its gate (what the C ABI hands out).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert_eq!(gate.route_request("u").enabled_features.set_id(), 0); // 0 is the empty set
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn set_id(&self) -> u32 {
        self.id.0
    }
}

impl fmt::Debug for EnabledFeatures<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for EnabledFeatures<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.names() == other.names()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_dedupes_sets_regardless_of_order() {
        let sets = FlagSets::new();
        let mut index = FlagSetIndex::default();
        let a = sets.intern(&mut index, ["b", "a"]);
        let b = sets.intern(&mut index, ["a", "b", "a"]);
        assert_eq!(a, b);
        assert_eq!(sets.count(), 2);
        assert_eq!(sets.intern(&mut index, []), FlagSetId(0));
        let view = EnabledFeatures::new(&sets, a);
        assert_eq!(view.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert!(view.contains("a") && !view.contains("c"));
    }

    #[test]
    fn an_unknown_id_reads_as_empty() {
        let sets = FlagSets::new();
        assert!(EnabledFeatures::new(&sets, FlagSetId(99)).is_empty());
    }
}
