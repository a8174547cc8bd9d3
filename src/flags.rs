//! Feature-flag sets: what a gate holds of them, and the allocation-free view a routing
//! decision carries.
//!
//! A decision must tell its caller which flags are on without allocating and without holding
//! a reference count on the snapshot (an `Arc` clone per request writes a shared cache line).
//! So a decision carries only a *number* for its flag set and a borrow of the gate's
//! [`FlagSets`], which resolves the number when the flags are read.
//!
//! What the gate holds, and for how long (the guarantee, also in the README's limits section):
//! - Each distinct flag **name** is stored once, for the gate's life, so a name read from any
//!   decision (and a C pointer to it) stays valid until the gate is freed. Names are at most
//!   [`MAX_NAME_BYTES`](crate::MAX_NAME_BYTES) long.
//! - A flag **set** is a sorted list of names (their numbers, and the names themselves shared
//!   with the arena) in one of [`FLAG_SET_SLOTS`] slots (slot 0 is the empty set, never
//!   stored). The sets of the current snapshot are always held. A set no
//!   snapshot uses any more is *retired*: it stays readable until its slot is reused, and slots
//!   are reused oldest-retired first, so it stays readable for at least
//!   [`FLAG_SET_GRACE_WRITES`] later writes (a write retires or revives at most two sets).
//!   Memory for sets is therefore at most [`FLAG_SET_SLOTS`] sets, whatever the history.
//! - A set number is `epoch << 7 | slot` (128 slots; under Miri 16, `<< 4`), the epoch growing
//!   by one (from a random start per gate) each time the slot is reused: **a number is never
//!   given to a different set** while the gate lives. A slot whose 2^25 epochs are used up is
//!   never reused again; after about 4.2 billion distinct sets a write that needs a new set is
//!   refused ([`FlagError::SetNumbersExhausted`]).
//! - A number whose set was reclaimed is detected, and so, almost always, is another gate's
//!   number (the random start makes a match unlikely; a host caching sets keys them by gate):
//!   [`PromotionGateManager::flag_set`](crate::PromotionGateManager::flag_set) answers
//!   [`FlagError::UnknownSet`], the C ABI `PGATE_STATUS_UNKNOWN_FLAG_SET`, and a decision's
//!   [`EnabledFeatures`] says [`is_stale`](EnabledFeatures::is_stale) and may read as empty
//!   (a thread that read the set recently still reads it right: it never reads as another set).
//! - Reading a set takes no atomic read-modify-write in the common case: each thread remembers
//!   the two sets of the gate it read last (keeping at most two sets alive per reading thread
//!   and gate). A set whose slot a write reuses is freed by that write when no thread holds
//!   it; otherwise the writer's index keeps it (at most two per reading thread, plus one per
//!   read under way) until the first of these, under the writer lock, once no thread holds it:
//!   a write that takes another slot or publishes (a flag change, a promotion, a rollback, a
//!   config or SLO swap), a tick of the store's sync thread, or the gate's drop. Reading frees
//!   nothing.

use arc_swap::ArcSwapOption;
use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use thread_local::ThreadLocal;

use crate::error::FlagError;
use crate::manager::retired::Retired;
use crate::thread_exit;

#[cfg(all(test, promotion_gates_loom))]
mod loom_model;

/// How many slots a gate has for flag sets (slot 0, the empty set, included): the most sets it
/// holds at once, current and retired.
///
/// Builds for Miri (`cfg(miri)`, the CI's check for undefined behaviour) have 16 slots and a
/// [`FLAG_SET_GRACE_WRITES`] of 4, the same 7 slots of slack: the tests there wear a ring out,
/// and 128 slots' worth of writes took minutes under Miri.
#[cfg(not(miri))]
pub const FLAG_SET_SLOTS: usize = 128;
/// Miri's smaller ring (see the other build's documentation).
#[cfg(miri)]
pub const FLAG_SET_SLOTS: usize = 16;

/// A set that no snapshot uses any more stays readable for at least this many later writes.
///
/// A write the state store refused counts as one: the retired sets its new sets displaced
/// (at most two, the oldest) stay gone, since they read as stale while it waited for the
/// store, and a set that reads as stale never reads again. Further refused writes take the
/// slots it freed, and displace no more.
///
/// Why it holds: a write makes or revives at most two sets, each taking one slot from the
/// front of the free queue, and a retired set joins its back. A write is refused unless
/// `2 * FLAG_SET_GRACE_WRITES` free slots remain after it, so a set retired by a write has at
/// least that many slots ahead of it.
///
/// Builds for Miri have 4 (see [`FLAG_SET_SLOTS`]).
#[cfg(not(miri))]
pub const FLAG_SET_GRACE_WRITES: usize = 60;
/// Miri's shorter grace (see the other build's documentation).
#[cfg(miri)]
pub const FLAG_SET_GRACE_WRITES: usize = 4;

/// Free slots a write must leave: enough for the grace (reached only as slots wear out, since
/// at most two of the usable slots, 127 or Miri's 15, are live).
const RESERVED_SLOTS: usize = 2 * FLAG_SET_GRACE_WRITES;

// What both builds' figures keep: a set number's slot is its low bits; and the same slack beside
// the reserve (for the two live sets and those kept for reading threads), so that Miri's tests
// run the ring out as the real one runs out.
const _: () = assert!(FLAG_SET_SLOTS.is_power_of_two());
const _: () = assert!(FLAG_SET_SLOTS - 1 - RESERVED_SLOTS == 7);

/// Bits of a set number that name its slot.
const SLOT_BITS: u32 = FLAG_SET_SLOTS.trailing_zeros();

/// The largest epoch a slot may reach before it is retired for good.
const MAX_EPOCH: u32 = u32::MAX >> SLOT_BITS;

/// The number of a flag set within its gate. Set 0 is always the empty set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct FlagSetId(pub(crate) u32);

impl FlagSetId {
    const EMPTY: Self = Self(0);

    fn new(slot: usize, epoch: u32) -> Self {
        // slot < FLAG_SET_SLOTS and epoch <= MAX_EPOCH, so nothing is lost.
        Self(epoch << SLOT_BITS | slot as u32)
    }

    fn slot(self) -> usize {
        (self.0 as usize) & (FLAG_SET_SLOTS - 1)
    }
}

/// A stored set: its number (to tell a reused slot from the set asked for) and its names'
/// numbers, sorted by name (shared with the writer's index).
#[derive(Debug)]
struct StoredSet {
    id: FlagSetId,
    names: Arc<[u32]>,
    /// The same names as text, shared with the arena, so that `contains` compares directly.
    texts: Box<[Arc<str>]>,
}

/// The flag names and sets of a gate. Reads are lock-free and allocation-free; interning is
/// done by writers, which the manager serializes, with a [`FlagSetIndex`].
pub(crate) struct FlagSets {
    /// Every distinct name, by number; append-only.
    names: boxcar::Vec<Arc<str>>,
    /// The set slots; slot 0 stays empty (number 0 is the empty set).
    slots: Box<[ArcSwapOption<StoredSet>]>,
    /// Each reading thread's [`Recent`] sets of this gate.
    recent: ThreadLocal<RefCell<Recent>>,
}

/// The writer's side: finds interned names and sets, and knows which slots are free.
#[derive(Debug)]
pub(crate) struct FlagSetIndex {
    name_numbers: HashMap<Arc<str>, u32>,
    /// The set each used slot holds, by its names' numbers.
    by_names: HashMap<Arc<[u32]>, FlagSetId>,
    /// How many sets each slot has held, and the key of the set it holds.
    slots: Vec<SlotState>,
    /// This gate's first epoch (random), so that another gate's numbers rarely name a set here.
    epoch_base: u32,
    /// Slots free for a new set, oldest-retired first. The sets they hold are still readable.
    free: VecDeque<usize>,
    /// The sets the current snapshot uses.
    live: [FlagSetId; 2],
    /// The slots the last interning stored new sets in, oldest first (the front free slots,
    /// whose retired sets they displaced), which [`FlagSets::undo_stores`] frees again when
    /// the write is refused.
    overwritten: Vec<usize>,
    /// The sets taken out of their slots that a thread's [`Recent`] sets (or a load under way)
    /// still held, freed here (by the next set taken out or
    /// [`sweep_reclaimed`](Self::sweep_reclaimed)) once none does: a reading thread never
    /// frees one.
    reclaimed: Retired<Arc<StoredSet>>,
}

impl FlagSetIndex {
    /// Keeps `displaced` (a set just taken out of its slot) while a thread holds it, after
    /// freeing the sets taken out earlier that no thread holds any more. One that no thread
    /// holds is freed here at once: out of its slot, nobody can take it again.
    fn reclaim(&mut self, displaced: Option<Arc<StoredSet>>) {
        self.reclaimed.keep_if_held(displaced);
    }

    /// Frees the sets taken out of their slots that no thread holds any more. Every write
    /// that publishes (a snapshot or an SLO policy) and each tick of the store's sync thread
    /// calls it, under the writer lock: a gate whose flags stop changing still frees them.
    pub(crate) fn sweep_reclaimed(&mut self) {
        self.reclaimed.sweep();
    }

    /// How many sets taken out of their slots are kept for the threads that hold them.
    #[cfg(test)]
    pub(crate) fn reclaimed(&self) -> usize {
        self.reclaimed.len()
    }

    /// The sets the writer takes as the current snapshot's.
    #[cfg(test)]
    pub(crate) fn live(&self) -> [FlagSetId; 2] {
        self.live
    }
}

#[derive(Debug, Default, Clone)]
struct SlotState {
    /// Sets stored in the slot so far; the slot is worn out past `MAX_EPOCH + 1` of them.
    used: u32,
    key: Option<Arc<[u32]>>,
}

impl Default for FlagSetIndex {
    fn default() -> Self {
        Self {
            name_numbers: HashMap::new(),
            by_names: HashMap::new(),
            slots: vec![SlotState::default(); FLAG_SET_SLOTS],
            // `RandomState` is seeded from the OS and differs per instance.
            epoch_base: (RandomState::new().hash_one(0u8) as u32) & MAX_EPOCH,
            free: (1..FLAG_SET_SLOTS).collect(),
            live: [FlagSetId::EMPTY; 2],
            overwritten: Vec::new(),
            reclaimed: Retired::default(),
        }
    }
}

/// A reading thread's two most recently read sets of one gate (one per cohort, typically), so
/// that reading a decision's flags costs no atomic read-modify-write in the common case. A
/// cached set is right even after its slot is reused (its number names it alone); the cache
/// keeps at most two sets alive per thread and gate.
///
/// Generic over the reference it holds (`Arc<StoredSet>`) only for the loom model
/// (`flags/loom_model.rs`), which holds sets by loom's `Arc`.
struct Recent<P = Arc<StoredSet>> {
    /// The sets' numbers, beside them so that a look-up reads no set (0: an empty entry).
    ids: [FlagSetId; 2],
    sets: [Option<P>; 2],
}

impl<P> Default for Recent<P> {
    fn default() -> Self {
        Self {
            ids: [FlagSetId::EMPTY; 2],
            sets: [None, None],
        }
    }
}

impl<P> Recent<P> {
    fn find(&self, id: FlagSetId) -> Option<&P> {
        let i = self.ids.iter().position(|&known| known == id)?;
        self.sets[i].as_ref()
    }

    /// Remembers `set`, numbered `id`, and lets go of the older of the two remembered.
    fn insert(&mut self, id: FlagSetId, set: P) {
        self.ids.swap(0, 1);
        self.sets.swap(0, 1);
        self.ids[0] = id;
        self.sets[0] = Some(set);
    }
}

/// One set as found: the empty set, a stored set, or a number the gate does not hold.
enum Found<'s> {
    Empty,
    Set(&'s Arc<StoredSet>),
    Unknown,
}

impl Found<'_> {
    fn numbers(&self) -> &[u32] {
        match self {
            Found::Set(set) => &set.names,
            Found::Empty | Found::Unknown => &[],
        }
    }
}

impl FlagSets {
    /// No names, and only the empty set (number 0).
    pub(crate) fn new() -> Self {
        Self {
            names: boxcar::Vec::new(),
            slots: (0..FLAG_SET_SLOTS)
                .map(|_| ArcSwapOption::empty())
                .collect(),
            recent: ThreadLocal::new(),
        }
    }

    /// Calls `read` with set `id`: from this thread's recent sets, else from its slot if the
    /// slot still holds it (and then remembers it). Lock-free, and allocation-free after the
    /// thread's first read on this gate.
    fn with_set<R>(&self, id: FlagSetId, read: impl FnOnce(Found<'_>) -> R) -> R {
        if id == FlagSetId::EMPTY {
            return read(Found::Empty);
        }
        let recent = match self.recent.get() {
            Some(recent) => recent,
            None => match self.first_recent() {
                Some(recent) => recent,
                None => return self.with_set_in_slot(id, read),
            },
        };
        if let Ok(cached) = recent.try_borrow()
            && let Some(set) = cached.find(id)
        {
            return read(Found::Set(set));
        }
        let guard = self.slots[id.slot()].load();
        match guard.as_ref() {
            Some(set) if set.id == id => {
                // Busy only while this thread reads a recent set: then it is not cached.
                if let Ok(mut cached) = recent.try_borrow_mut() {
                    cached.insert(id, Arc::clone(set));
                }
                read(Found::Set(set))
            }
            _ => read(Found::Unknown),
        }
    }

    /// This thread's recent sets, made at its first read (`None`: the thread is exiting).
    #[cold]
    #[inline(never)]
    fn first_recent(&self) -> Option<&RefCell<Recent>> {
        thread_exit::slot(|| self.recent.get_or(RefCell::default))
    }

    /// [`with_set`](Self::with_set) from the slot alone, on a thread that is exiting (its
    /// recent sets can no longer be found).
    #[cold]
    fn with_set_in_slot<R>(&self, id: FlagSetId, read: impl FnOnce(Found<'_>) -> R) -> R {
        let guard = self.slots[id.slot()].load();
        match guard.as_ref() {
            Some(set) if set.id == id => read(Found::Set(set)),
            _ => read(Found::Unknown),
        }
    }

    /// Whether the gate still holds set `id` (read from its slot, never from a cache).
    #[cfg(test)]
    fn holds(&self, id: FlagSetId) -> bool {
        id == FlagSetId::EMPTY
            || self.slots[id.slot()]
                .load()
                .as_ref()
                .is_some_and(|set| set.id == id)
    }

    /// The name numbered `number` (always there: numbers come from stored sets).
    fn name(&self, number: u32) -> &str {
        self.names.get(number as usize).map_or("", |name| name)
    }

    /// Interns the two sets a snapshot uses (order and repeats within each do not matter),
    /// makes them the live ones and retires the sets the previous snapshot used but this one
    /// does not.
    ///
    /// # Errors
    /// [`FlagError::SetNumbersExhausted`] when a new set is needed and no slot can take one;
    /// [`FlagError::NamesExhausted`] when a name never held would be one more than
    /// [`MAX_FLAG_NAMES`](crate::MAX_FLAG_NAMES); then nothing changed, no set and no name
    /// (names never held are added only once the sets are sure to be stored).
    pub(crate) fn intern_live<'n>(
        &self,
        index: &mut FlagSetIndex,
        stable: impl IntoIterator<Item = &'n str>,
        new_version: impl IntoIterator<Item = &'n str>,
    ) -> Result<[FlagSetId; 2], FlagError> {
        index.overwritten.clear();
        let mut unseen = HashMap::new();
        let mut keys = [
            self.key(index, stable, &mut unseen)?,
            self.key(index, new_version, &mut unseen)?,
        ];
        // The same set twice (no release flags) takes one number.
        let same = keys[0] == keys[1];
        if same {
            keys[1] = None;
        }
        let known = |key: &Option<Arc<[u32]>>| key.as_ref().and_then(|k| index.by_names.get(k));
        let needed = keys
            .iter()
            .filter(|key| key.is_some() && known(key).is_none())
            .count();
        let revived_from_free = keys
            .iter()
            .filter_map(known)
            .filter(|id| index.free.contains(&id.slot()))
            .count();
        if index.free.len() < needed + revived_from_free + RESERVED_SLOTS {
            return Err(FlagError::SetNumbersExhausted);
        }
        // The sets will be stored: the names never held join the arena, under the numbers
        // their keys were given (pushed in number order by the only writer).
        let mut unseen: Vec<(&str, u32)> = unseen.into_iter().collect();
        unseen.sort_unstable_by_key(|&(_, number)| number);
        for (name, number) in unseen {
            let text: Arc<str> = Arc::from(name);
            let pushed = self.names.push(Arc::clone(&text));
            debug_assert_eq!(pushed, number as usize, "names are numbered in push order");
            index.name_numbers.insert(text, number);
        }
        let mut ids = [FlagSetId::EMPTY; 2];
        for (id, key) in ids.iter_mut().zip(keys) {
            let Some(key) = key else { continue };
            *id = match index.by_names.get(&key) {
                Some(&known) => {
                    index.free.retain(|&slot| slot != known.slot());
                    known
                }
                None => self.store(index, key)?,
            };
        }
        if same {
            ids[1] = ids[0];
        }
        let previous = std::mem::replace(&mut index.live, ids);
        for id in previous {
            let slot = id.slot();
            // A slot whose epochs are used up is never reused, so its numbers never recur.
            let reusable = index.slots[slot].used <= MAX_EPOCH;
            let retired = id != FlagSetId::EMPTY && !ids.contains(&id);
            if retired && reusable && !index.free.contains(&slot) {
                index.free.push_back(slot);
            }
        }
        Ok(ids)
    }

    /// The name numbers of `names`, deduplicated and ordered by name, or `None` for the
    /// empty set. A name never held is numbered as it will be once pushed to the arena, and
    /// kept in `unseen` (shared by the keys of one write) for the caller to push: nothing is
    /// added here. At most [`MAX_FLAG_NAMES`](crate::MAX_FLAG_NAMES) names in all.
    fn key<'n>(
        &self,
        index: &FlagSetIndex,
        names: impl IntoIterator<Item = &'n str>,
        unseen: &mut HashMap<&'n str, u32>,
    ) -> Result<Option<Arc<[u32]>>, FlagError> {
        let next = self.names.count();
        let mut named: Vec<(&str, u32)> = names
            .into_iter()
            .map(|name| {
                if let Some(&number) = index.name_numbers.get(name) {
                    return Ok((name, number));
                }
                if let Some(&number) = unseen.get(name) {
                    return Ok((name, number));
                }
                if index.name_numbers.len() + unseen.len() >= crate::MAX_FLAG_NAMES {
                    return Err(FlagError::NamesExhausted);
                }
                // MAX_FLAG_NAMES is far below u32::MAX.
                let number = u32::try_from(next + unseen.len()).unwrap_or(u32::MAX);
                unseen.insert(name, number);
                Ok((name, number))
            })
            .collect::<Result<_, _>>()?;
        named.sort_unstable();
        named.dedup();
        let numbers: Vec<u32> = named.into_iter().map(|(_, number)| number).collect();
        Ok((!numbers.is_empty()).then(|| numbers.into()))
    }

    /// Stores a new set in the oldest free slot, under a number never used before. The caller
    /// checked that there is a free slot (so the error is not reached).
    fn store(&self, index: &mut FlagSetIndex, key: Arc<[u32]>) -> Result<FlagSetId, FlagError> {
        let slot = index
            .free
            .pop_front()
            .ok_or(FlagError::SetNumbersExhausted)?;
        let state = &mut index.slots[slot];
        let old = state.key.replace(key.clone());
        if let Some(old) = &old {
            index.by_names.remove(old);
        }
        index.overwritten.push(slot);
        // `used` <= MAX_EPOCH here, so the epochs of one slot never repeat.
        let id = FlagSetId::new(slot, index.epoch_base.wrapping_add(state.used) & MAX_EPOCH);
        state.used += 1;
        index.by_names.insert(key.clone(), id);
        let texts = key
            .iter()
            .filter_map(|&number| self.names.get(number as usize).cloned())
            .collect();
        let displaced = self.slots[slot].swap(Some(Arc::new(StoredSet {
            id,
            names: key,
            texts,
        })));
        index.reclaim(displaced);
        Ok(id)
    }

    /// Frees the slots the last interning stored its new sets in, when its write was refused
    /// (the state store did not take it), at the front of the free queue: the next write takes
    /// them again, so refused writes, however many, displace no more retired sets than the
    /// first one did. The retired sets it displaced are not put back: they read as stale while
    /// the write waited for the store, and a set that read as stale must never read again (a
    /// C host that read its length as 0, then asks whether it is stale, would take it for an
    /// empty set). The new sets' numbers are not given again (their epochs are used), and no
    /// snapshot carried them. Call it before making the published sets live again.
    pub(crate) fn undo_stores(&self, index: &mut FlagSetIndex) {
        while let Some(slot) = index.overwritten.pop() {
            if let Some(new) = index.slots[slot].key.take() {
                index.by_names.remove(&new);
            }
            index.reclaim(self.slots[slot].swap(None));
            // A slot whose epochs the undone set used up is never reused, as in `intern_live`.
            if index.slots[slot].used <= MAX_EPOCH {
                index.free.retain(|&free| free != slot);
                index.free.push_front(slot);
            }
        }
    }

    /// How many sets the gate holds now (the empty set excluded), current and retired.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.load().is_some())
            .count()
    }

    /// How many distinct names the gate has stored.
    #[cfg(test)]
    pub(crate) fn names_stored(&self) -> usize {
        self.names.count()
    }
}

impl fmt::Debug for FlagSets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlagSets")
            .field("names", &self.names.count())
            .finish_non_exhaustive()
    }
}

/// The feature flags on for one routed request: a borrowed, allocation-free view.
///
/// It holds the set's number and reads the set when asked (lock-free; from the calling
/// thread's two most recently read sets, else from the gate). The set stays readable while the
/// gate uses it and for at least [`FLAG_SET_GRACE_WRITES`] writes after; read the flags when
/// the request is routed, not hours later. A view that can no longer be read
/// [`is_stale`](Self::is_stale) and reads as empty; it never reads as another set.
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

    /// Calls `read` with this set, read now.
    fn with_set<R>(&self, read: impl FnOnce(Found<'_>) -> R) -> R {
        self.sets.with_set(self.id, read)
    }

    /// The flag names, in byte order. Each step reads the set as [`get`](Self::get) does (no
    /// atomic read-modify-write in the common case); should the set turn stale mid-way, the
    /// names left read as "".
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
        // By index through `get`, which finds the set in the thread's cache: no reference
        // count taken. A set that turns stale mid-way (this thread read two other sets of the
        // gate meanwhile, and the gate reclaimed it) yields "" for the names left.
        let features = *self;
        (0..features.len()).map(move |i| features.get(i).unwrap_or(""))
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
        let number = self.with_set(|found| found.numbers().get(index).copied())?;
        Some(self.sets.name(number))
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
        self.with_set(|found| found.numbers().len())
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
        self.len() == 0
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
        self.with_set(|found| match found {
            Found::Set(set) => set
                .texts
                .binary_search_by(|probe| (**probe).cmp(name))
                .is_ok(),
            Found::Empty | Found::Unknown => false,
        })
    }

    /// Whether this set can no longer be read here: the gate replaced it more than
    /// [`FLAG_SET_GRACE_WRITES`] writes ago and this thread does not remember it among the two
    /// sets it read last (or the number is not one this gate gave out). A stale view reads as
    /// empty, and [`PromotionGateManager::flag_set`](crate::PromotionGateManager::flag_set)
    /// answers its number with [`FlagError::UnknownSet`]. Once stale, always stale.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert!(!gate.route_request("u").enabled_features.is_stale());
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn is_stale(&self) -> bool {
        self.with_set(|found| matches!(found, Found::Unknown))
    }

    /// The set's number within its gate (what the C ABI hands out): never given to another
    /// set by this gate.
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
        self.iter().eq(other.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterating_a_read_set_takes_no_reference_to_it() {
        let sets = FlagSets::new();
        let mut index = FlagSetIndex::default();
        let id = intern(&sets, &mut index, &["b", "a", "c"]);
        let features = EnabledFeatures::new(&sets, id);
        assert_eq!(features.len(), 3); // now in this thread's cache
        let count = || {
            let slot = sets.slots[id.slot()].load();
            slot.as_ref().map_or(0, Arc::strong_count)
        };
        let before = count();
        let mut names = features.iter();
        assert_eq!(names.next(), Some("a"));
        assert_eq!(count(), before);
        assert_eq!(names.collect::<Vec<_>>(), ["b", "c"]);
        let other = intern(&sets, &mut index, &["a"]);
        assert_eq!(features, EnabledFeatures::new(&sets, id), "the same set");
        assert_ne!(features, EnabledFeatures::new(&sets, other), "another set");
        assert_eq!(count(), before, "comparing takes no reference either");
    }

    fn intern(sets: &FlagSets, index: &mut FlagSetIndex, names: &[&str]) -> FlagSetId {
        let ids = sets.intern_live(index, [], names.iter().copied()).unwrap();
        ids[1]
    }

    #[test]
    fn interning_dedupes_sets_regardless_of_order() {
        let sets = FlagSets::new();
        let mut index = FlagSetIndex::default();
        let a = intern(&sets, &mut index, &["b", "a"]);
        let b = intern(&sets, &mut index, &["a", "b", "a"]);
        assert_eq!(a, b);
        assert_eq!(sets.held(), 1);
        assert_eq!(intern(&sets, &mut index, &[]), FlagSetId(0));
        let view = EnabledFeatures::new(&sets, a);
        assert_eq!(view.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(view.get(1), Some("b"));
        assert!(view.contains("a") && !view.contains("c"));
    }

    #[test]
    fn the_same_set_for_both_cohorts_takes_one_number() {
        let sets = FlagSets::new();
        let mut index = FlagSetIndex::default();
        let [stable, new] = sets.intern_live(&mut index, ["g"], ["g"]).unwrap();
        assert_eq!(stable, new);
        assert_ne!(stable, FlagSetId::EMPTY);
        assert_eq!(sets.held(), 1);
        let none = sets.intern_live(&mut index, [], []).unwrap();
        assert_eq!(none, [FlagSetId::EMPTY; 2]);
        // The retired set is still readable.
        assert_eq!(EnabledFeatures::new(&sets, stable).get(0), Some("g"));
    }

    #[test]
    fn an_unknown_id_reads_as_empty_and_stale() {
        let sets = FlagSets::new();
        let view = EnabledFeatures::new(&sets, FlagSetId(99));
        assert!(view.is_empty() && view.is_stale());
        assert!(!EnabledFeatures::new(&sets, FlagSetId(0)).is_stale());
    }

    #[test]
    fn a_retired_set_stays_readable_for_the_grace_then_is_stale_and_its_number_never_recurs() {
        let sets = FlagSets::new();
        let mut index = FlagSetIndex::default();
        let first = intern(&sets, &mut index, &["first"]);
        let mut seen = std::collections::HashSet::from([first]);
        let mut writes = 0;
        let mut live = [FlagSetId::EMPTY; 2];
        let view = EnabledFeatures::new(&sets, first);
        while sets.holds(first) {
            assert_eq!(view.iter().collect::<Vec<_>>(), ["first"]);
            writes += 1;
            let stable = format!("s{writes}");
            let new = format!("n{writes}");
            live = sets
                .intern_live(&mut index, [stable.as_str()], [new.as_str()])
                .unwrap();
            for id in live {
                assert!(seen.insert(id), "number {} given twice", id.0);
            }
            assert!(sets.held() < FLAG_SET_SLOTS);
        }
        assert!(
            writes > FLAG_SET_GRACE_WRITES,
            "stale after {writes} writes"
        );
        // This thread read it last: it remembers it, and reads it right, not as the set that
        // took its slot.
        assert!(!view.is_stale());
        assert_eq!(view.iter().collect::<Vec<_>>(), ["first"]);
        // Once it has read two other sets, it no longer can.
        for id in live {
            assert_eq!(EnabledFeatures::new(&sets, id).len(), 1);
        }
        assert!(view.is_stale() && view.is_empty() && view.get(0).is_none());
        // Thousands of sets later, numbers are still new and the held sets bounded.
        for i in 0..5_000 {
            let name = format!("x{i}");
            let [_, id] = sets.intern_live(&mut index, [], [name.as_str()]).unwrap();
            assert!(seen.insert(id), "number {} given twice", id.0);
        }
        assert!(sets.held() < FLAG_SET_SLOTS);
    }

    #[test]
    fn a_thread_remembers_the_two_sets_it_read_last() {
        let sets = FlagSets::new();
        let mut index = FlagSetIndex::default();
        let a = intern(&sets, &mut index, &["a"]);
        let b = intern(&sets, &mut index, &["b"]);
        let c = intern(&sets, &mut index, &["c"]);
        for (id, name) in [(a, "a"), (b, "b"), (c, "c")] {
            assert!(EnabledFeatures::new(&sets, id).contains(name));
        }
        let remembered = sets.recent.get_or(RefCell::default).borrow().ids;
        assert_eq!(remembered, [c, b]);
        // Another gate's set of the same number is not taken for this one's.
        let other = FlagSets::new();
        assert!(EnabledFeatures::new(&other, c).is_stale());
    }

    #[test]
    fn a_retired_set_wanted_again_keeps_its_number() {
        let sets = FlagSets::new();
        let mut index = FlagSetIndex::default();
        let a = intern(&sets, &mut index, &["a"]);
        let b = intern(&sets, &mut index, &["a", "b"]);
        assert_ne!(a, b);
        assert_eq!(intern(&sets, &mut index, &["a"]), a);
        assert_eq!(intern(&sets, &mut index, &["b", "a"]), b);
        assert_eq!(sets.held(), 2);
    }

    #[test]
    fn a_slot_whose_epochs_are_used_up_is_never_reused() {
        let sets = FlagSets::new();
        let mut index = FlagSetIndex::default();
        for state in &mut index.slots {
            state.used = MAX_EPOCH;
        }
        let mut ids = std::collections::HashSet::new();
        let mut i = 0;
        let err = loop {
            i += 1;
            let name = format!("f{i}");
            match sets.intern_live(&mut index, [], [name.as_str()]) {
                Ok([_, id]) => assert!(ids.insert(id)),
                Err(err) => break err,
            }
        };
        assert_eq!(err, FlagError::SetNumbersExhausted);
        // Every slot but the reserve gave one number, and none was given twice.
        assert_eq!(ids.len(), FLAG_SET_SLOTS - 1 - RESERVED_SLOTS);
        // The refused write changed nothing: the live set still reads.
        let live = index.live[1];
        assert_eq!(EnabledFeatures::new(&sets, live).len(), 1);
    }

    #[test]
    fn undone_stores_give_back_the_retired_sets_they_displaced() {
        let sets = FlagSets::new();
        let mut index = FlagSetIndex::default();
        let [_, retired] = sets.intern_live(&mut index, [], ["a"]).unwrap();
        let [_, published] = sets.intern_live(&mut index, [], ["b"]).unwrap();
        let mut refused = Vec::new();
        // Many more refused writes than slots, each undone and the published set made live
        // again, as a write the state store refuses is.
        for i in 0..3 * FLAG_SET_SLOTS {
            let name = format!("new{i}");
            let [_, id] = sets.intern_live(&mut index, [], [name.as_str()]).unwrap();
            refused.push(id);
            sets.undo_stores(&mut index);
            let [_, live] = sets.intern_live(&mut index, [], ["b"]).unwrap();
            assert_eq!(live, published);
        }
        assert!(sets.holds(retired), "the retired set kept its slot");
        assert!(
            refused.iter().all(|&id| !sets.holds(id)),
            "no refused set is held"
        );
        let unique: std::collections::HashSet<_> = refused.iter().collect();
        assert_eq!(
            unique.len(),
            refused.len(),
            "a refused set's number is never given again"
        );
        // A write that is made takes the oldest retired slot, as before.
        let [_, made] = sets.intern_live(&mut index, [], ["c"]).unwrap();
        assert!(sets.holds(made) && sets.holds(published));
        assert_eq!(
            index.free.len(),
            FLAG_SET_SLOTS - 2,
            "all but slot 0 and the live one"
        );
    }

    #[test]
    fn a_set_a_refused_write_displaced_stays_stale() {
        let sets = FlagSets::new();
        let mut index = FlagSetIndex::default();
        let [_, retired] = sets.intern_live(&mut index, [], ["a"]).unwrap();
        // Published writes until the retired set's slot is the next one a write takes.
        for i in 0.. {
            if index.free.front() == Some(&retired.slot()) {
                break;
            }
            let name = format!("p{i}");
            sets.intern_live(&mut index, [], [name.as_str()]).unwrap();
        }
        // Held: readable by any thread (not only by one that remembers it).
        assert!(sets.holds(retired));
        // A write the state store then refuses: the set reads as stale while it waits.
        sets.intern_live(&mut index, [], ["refused"]).unwrap();
        assert!(!sets.holds(retired));
        sets.undo_stores(&mut index);
        assert!(!sets.holds(retired), "once stale, always stale");
        // Refused writes again and again displace no other retired set.
        let held = sets.held();
        for i in 0..3 * FLAG_SET_SLOTS {
            let name = format!("refused{i}");
            sets.intern_live(&mut index, [], [name.as_str()]).unwrap();
            sets.undo_stores(&mut index);
        }
        assert_eq!(sets.held(), held);
    }

    #[test]
    fn an_undone_store_that_wore_its_slot_out_never_frees_it() {
        let sets = FlagSets::new();
        let mut index = FlagSetIndex::default();
        for slot in &mut index.slots {
            slot.used = MAX_EPOCH; // one epoch left in every slot
        }
        let [_, worn] = sets.intern_live(&mut index, [], ["x"]).unwrap();
        sets.undo_stores(&mut index);
        sets.intern_live(&mut index, [], []).unwrap();
        assert!(
            !index.free.contains(&worn.slot()),
            "the worn slot is never reused"
        );
        let [_, next] = sets.intern_live(&mut index, [], ["y"]).unwrap();
        assert_ne!(next.slot(), worn.slot());
    }

    #[test]
    fn a_refused_write_adds_no_name() {
        let sets = FlagSets::new();
        let mut index = FlagSetIndex::default();
        let names: Vec<String> = (0..crate::MAX_FLAG_NAMES - 1)
            .map(|i| format!("f{i}"))
            .collect();
        for chunk in names.chunks(10_000) {
            sets.intern_live(&mut index, [], chunk.iter().map(String::as_str))
                .unwrap();
        }
        // One name short of the bound: two new names are refused, and neither is added, so
        // one of them still fits afterwards.
        let err = sets
            .intern_live(&mut index, ["new1"], ["new2"])
            .unwrap_err();
        assert_eq!(err, FlagError::NamesExhausted);
        assert_eq!(sets.names_stored(), crate::MAX_FLAG_NAMES - 1);
        assert_eq!(index.name_numbers.len(), crate::MAX_FLAG_NAMES - 1);
        let [_, id] = sets.intern_live(&mut index, [], ["new3", "f0"]).unwrap();
        let features = EnabledFeatures::new(&sets, id);
        assert_eq!(features.iter().collect::<Vec<_>>(), ["f0", "new3"]);
        // A write refused for want of set numbers adds no name either.
        let mut worn = FlagSetIndex::default();
        let fresh = FlagSets::new();
        for slot in &mut worn.slots {
            slot.used = MAX_EPOCH + 1;
        }
        worn.free.clear();
        let err = fresh.intern_live(&mut worn, ["a"], ["b"]).unwrap_err();
        assert_eq!(err, FlagError::SetNumbersExhausted);
        assert_eq!((fresh.names_stored(), worn.name_numbers.len()), (0, 0));
    }

    #[test]
    fn a_gate_holds_at_most_max_flag_names_distinct_names() {
        let sets = FlagSets::new();
        let mut index = FlagSetIndex::default();
        let names: Vec<String> = (0..crate::MAX_FLAG_NAMES)
            .map(|i| format!("f{i}"))
            .collect();
        for chunk in names.chunks(10_000) {
            sets.intern_live(&mut index, [], chunk.iter().map(String::as_str))
                .unwrap();
        }
        let live = index.live;
        let err = sets
            .intern_live(&mut index, [], ["f0", "one_more"])
            .unwrap_err();
        assert_eq!(err, FlagError::NamesExhausted);
        assert!(err.to_string().contains("MAX_FLAG_NAMES"), "{err}");
        assert_eq!(index.live, live, "the refused write changed no set");
        assert_eq!(index.name_numbers.len(), crate::MAX_FLAG_NAMES);
        // Names it holds are still taken, in any set.
        let [_, id] = sets.intern_live(&mut index, [], ["f0", "f99999"]).unwrap();
        assert_eq!(EnabledFeatures::new(&sets, id).len(), 2);
    }
}

#[cfg(test)]
mod reclaimed_tests {
    use super::*;
    use std::sync::Weak;
    use std::sync::mpsc;

    /// A write as a canary gate makes one: both cohorts' sets new (`s{i}`, then it and
    /// `f{i}`), so that each write displaces the two oldest retired sets once slots are reused.
    fn write(sets: &FlagSets, index: &mut FlagSetIndex, i: usize) -> [FlagSetId; 2] {
        let (stable, flag) = (format!("s{i}"), format!("f{i}"));
        sets.intern_live(index, [stable.as_str()], [stable.as_str(), flag.as_str()])
            .unwrap()
    }

    /// The set stored under `id` now, not held.
    fn stored(sets: &FlagSets, id: FlagSetId) -> Weak<StoredSet> {
        let slot = sets.slots[id.slot()].load();
        slot.as_ref().map(Arc::downgrade).unwrap_or_default()
    }

    #[test]
    fn the_sets_a_reading_thread_let_go_of_are_freed_and_the_kept_ones_stay_bounded() {
        let sets = FlagSets::new();
        let mut index = FlagSetIndex::default();
        let mut ids = write(&sets, &mut index, 0);
        std::thread::scope(|scope| {
            // Thread T reads both cohorts' sets when asked, as a route's caller reads its
            // decision's flags, and remembers them (the two it read last).
            let (ask, asked) = mpsc::channel::<[FlagSetId; 2]>();
            let (done, read) = mpsc::channel();
            let on_t = &sets;
            scope.spawn(move || {
                for pair in asked {
                    let lens = pair.map(|id| EnabledFeatures::new(on_t, id).len());
                    done.send(lens).unwrap();
                }
            });
            let read_on_t = |pair| {
                ask.send(pair).unwrap();
                assert_eq!(read.recv().unwrap(), [1, 2], "T read both sets");
            };
            read_on_t(ids);
            let first = ids.map(|id| stored(&sets, id));
            // The bound: a set is kept only while a thread holds it (at most the two it read
            // last, per reading thread); one nobody holds is freed by the write displacing it.
            let bound = 2;
            for i in 1..=300 {
                ids = write(&sets, &mut index, i);
                let kept = index.reclaimed();
                assert!(kept <= bound, "{kept} sets kept after write {i}");
            }
            assert!(
                first.iter().all(|set| set.strong_count() > 0),
                "the sets T holds are kept after their slots were reused"
            );
            read_on_t(ids);
            let second = ids.map(|id| stored(&sets, id));
            for i in 301..=600 {
                ids = write(&sets, &mut index, i);
                let kept = index.reclaimed();
                assert!(kept <= bound, "{kept} sets kept after write {i}");
            }
            assert!(
                first.iter().all(|set| set.strong_count() == 0),
                "the sets T let go of are freed by a later write"
            );
            assert!(second.iter().all(|set| set.strong_count() > 0));
            assert_eq!(index.reclaimed(), 2, "T's second sets, kept");
            drop(ask);
        });
    }
}
