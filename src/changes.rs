//! Change notifications: every state change a gate publishes (a rollback with its evidence, a
//! promotion, a flag change, a config swap, or another process's write applied from the state
//! store) becomes one numbered [`StateChange`]. A host learns of it without polling the judge:
//! - a cheap counter, [`change_count`](crate::PromotionGateManager::change_count) (one atomic
//!   load), then [`changes_since`](crate::PromotionGateManager::changes_since) for what changed;
//! - or a [`Subscription`] ([`subscribe`](crate::PromotionGateManager::subscribe)) that
//!   receives each change on the host's own thread, or in an async task
//!   ([`Subscription::recv`], a future for any executor).
//!
//! A change is queued, never delivered by calling back, so a change made on the record path
//! (an automatic rollback) costs that path one short queue operation per subscriber, and a
//! subscriber's code runs on its own thread, never while the gate holds a lock. The one piece
//! of host code the gate runs is an async subscriber's [`Waker`]: the thread that made the
//! change (a host's write, the store's sync thread, or the recording thread whose outcome
//! called for an automatic rollback) wakes it once it has let go of every lock of the gate.
//! (The gate's log lines are another matter: a `tracing` subscriber may be called while the
//! gate holds its writer lock; see docs/telemetry.md.) Memory is
//! bounded: the gate keeps the last [`MAX_RECENT_CHANGES`] changes, a subscription queues at
//! most [`MAX_QUEUED_CHANGES`] (a slow subscriber misses the oldest, counted in
//! [`Subscription::missed`], and can read them again with `changes_since` while they are
//! recent), and a change lists at most [`MAX_LISTED_FLAG_CHANGES`] flag names.

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Environment, PromotionConfig};
use crate::decision::StageId;
use crate::history::{RollbackEvent, RolledBack};
use crate::sync::{AtomicU64, Ordering};

/// How many of its latest changes a gate keeps for
/// [`changes_since`](crate::PromotionGateManager::changes_since).
pub const MAX_RECENT_CHANGES: usize = 64;

/// How many changes a [`Subscription`] queues before it misses the oldest.
pub const MAX_QUEUED_CHANGES: usize = 64;

/// How many flag names one [`StateChange`] lists, enabled and disabled together (a config swap
/// can change thousands); the rest are counted in [`FlagChanges::unlisted`].
pub const MAX_LISTED_FLAG_CHANGES: usize = 32;

/// What kind of change a [`StateChange`] is, by what matters most in it.
///
/// # Example
/// ```
/// use promotion_gates::ChangeKind;
/// assert_eq!(ChangeKind::Rollback.name(), "rollback");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChangeKind {
    /// The release was rolled back (manually, or by the judge with its evidence).
    Rollback,
    /// The environment moved otherwise: a promotion, a new rollout, a ramp, a config swap to
    /// another environment.
    Promotion,
    /// Flags were turned on or off, the environment unchanged.
    Flags,
    /// Anything else in the config (a swap of the policy, the salt, the history bound).
    Config,
}

impl ChangeKind {
    /// `rollback`, `promotion`, `flags` or `config`.
    ///
    /// # Example
    /// ```
    /// assert_eq!(promotion_gates::ChangeKind::Flags.name(), "flags");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Rollback => "rollback",
            ChangeKind::Promotion => "promotion",
            ChangeKind::Flags => "flags",
            ChangeKind::Config => "config",
        }
    }
}

/// Where a change was made.
///
/// # Example
/// ```
/// use promotion_gates::ChangeOrigin;
/// assert_eq!(ChangeOrigin::Store.name(), "store");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChangeOrigin {
    /// By a call on this gate, or by its judge.
    ThisGate,
    /// By another process sharing the gate's state store; applied by the sync thread.
    Store,
}

impl ChangeOrigin {
    /// `this_gate` or `store`.
    ///
    /// # Example
    /// ```
    /// assert_eq!(promotion_gates::ChangeOrigin::ThisGate.name(), "this_gate");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            ChangeOrigin::ThisGate => "this_gate",
            ChangeOrigin::Store => "store",
        }
    }
}

/// The flags a change turned on and off for the requests of either version, in byte order,
/// at most [`MAX_LISTED_FLAG_CHANGES`] names listed. The new version's requests see the
/// release flags and the graduated ones, the stable version's the graduated ones alone: so a
/// flag moved from `feature_flags` to `graduated_flags` (by a config swap, or by a promotion to
/// Production, which graduates the release's flags) is enabled, for the stable version's
/// requests, and one moved back is disabled, for theirs, though the gate shows both on
/// ([`is_feature_enabled`](crate::PromotionGateManager::is_feature_enabled)); a rollback made
/// over that promotion, which takes back the flags it graduated, disables them. No flag is
/// turned on for one version's requests and off for the other's.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
/// gate.enable_feature("dark_mode")?;
/// let change = &gate.changes_since(0)[0];
/// assert_eq!(change.flags.enabled, ["dark_mode"]);
/// assert!(change.flags.disabled.is_empty());
/// // Graduated by a swap: the stable version's requests get it too.
/// let mut next = gate.config();
/// next.feature_flags.clear();
/// next.graduated_flags.push("dark_mode".into());
/// gate.swap_config(next)?;
/// let change = &gate.changes_since(1)[0];
/// assert_eq!((change.kind(), &change.flags.enabled[..]), (ChangeKind::Flags, &["dark_mode".to_string()][..]));
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlagChanges {
    /// Flags now on for the requests of a version that were off for them.
    pub enabled: Vec<String>,
    /// Flags now off for the requests of a version that were on for them.
    pub disabled: Vec<String>,
    /// Changed flags beyond the listed ones.
    pub unlisted: usize,
}

impl FlagChanges {
    /// The flags the requests of either version see in `after` and not in `before` (and the
    /// reverse), as [`flags_gained`](crate::release::flags_gained) says, listing at most
    /// [`MAX_LISTED_FLAG_CHANGES`] names.
    fn between(before: &PromotionConfig, after: &PromotionConfig) -> Self {
        fn turned_on<'a>(
            before: &PromotionConfig,
            after: &'a PromotionConfig,
        ) -> BTreeSet<&'a str> {
            crate::release::flags_gained(before, after)
                .into_iter()
                .collect()
        }
        let (enabled, disabled) = (turned_on(before, after), turned_on(after, before));
        let changed = enabled.len() + disabled.len();
        let listed = |flags: BTreeSet<&str>, room: usize| -> Vec<String> {
            flags.into_iter().take(room).map(str::to_string).collect()
        };
        let enabled = listed(enabled, MAX_LISTED_FLAG_CHANGES);
        let disabled = listed(disabled, MAX_LISTED_FLAG_CHANGES - enabled.len());
        let unlisted = changed - enabled.len() - disabled.len();
        FlagChanges {
            enabled,
            disabled,
            unlisted,
        }
    }

    /// Whether no flag changed.
    ///
    /// # Example
    /// ```
    /// assert!(promotion_gates::FlagChanges::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.enabled.is_empty() && self.disabled.is_empty() && self.unlisted == 0
    }
}

/// One state change of a gate, as published.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// let gate = PromotionGateManager::new(
///     PromotionConfig { environment: Environment::Canary { traffic_percent: 10.0 }, ..Default::default() },
///     SloAdmissionController::new(SloConfig::default())?,
/// )?;
/// gate.rollback("bad deploy")?;
/// let change = &gate.changes_since(0)[0];
/// assert_eq!(change.kind(), ChangeKind::Rollback);
/// assert_eq!((change.from, change.to), (Environment::Canary { traffic_percent: 10.0 }, Environment::Production));
/// assert_eq!(change.rollback.as_ref().map(|e| e.reason.as_str()), Some("bad deploy"));
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StateChange {
    /// The change's number: 1 for the gate's first, then one more for each.
    pub sequence: u64,
    /// When, by the gate's clock.
    pub at: SystemTime,
    /// Where the change was made.
    pub origin: ChangeOrigin,
    /// The stage after the change.
    pub stage: StageId,
    /// The environment before the change.
    pub from: Environment,
    /// The environment after it.
    pub to: Environment,
    /// The flags it turned on and off.
    pub flags: FlagChanges,
    /// For a rollback, its event: trigger, reason and, for an automatic one, the judge's
    /// evidence (as in the rollback history). Set whatever the environments before and after:
    /// a rollback made over a promotion to Production goes from Production to Production. A
    /// change from the store carries only a rollback stored since the state the gate knew
    /// (from a store that went back, its file deleted or replaced, the one whose write made
    /// the state followed), never one it announced already (its own) or an older one of the
    /// stored history.
    pub rollback: Option<RollbackEvent>,
}

impl StateChange {
    /// What matters most in the change: a rollback, then an environment move, then flags.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// gate.promote(Environment::Canary { traffic_percent: 1.0 })?;
    /// assert_eq!(gate.changes_since(0)[0].kind(), ChangeKind::Promotion);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn kind(&self) -> ChangeKind {
        if self.rollback.is_some() {
            ChangeKind::Rollback
        } else if self.from != self.to {
            ChangeKind::Promotion
        } else if !self.flags.is_empty() {
            ChangeKind::Flags
        } else {
            ChangeKind::Config
        }
    }
}

/// What the gate knows of a publication when it describes it as a change.
pub(crate) struct Published<'a> {
    pub(crate) origin: ChangeOrigin,
    pub(crate) before: &'a PromotionConfig,
    pub(crate) after: &'a PromotionConfig,
    pub(crate) stage: StageId,
    /// The history events new with the publication, which no change of this gate announced
    /// before: a write's own event, or those another process stored since the state this
    /// gate knew. A release rollback among them makes it a rollback, whatever the
    /// environments before and after (one made over a promotion to Production goes from
    /// Production to Production; another process's rollback followed by a new rollout at the
    /// same share, from that share to the same).
    pub(crate) events: &'a [RollbackEvent],
    pub(crate) at: SystemTime,
}

/// A gate's changes: the counter, the recent ones and the subscribers' queues.
#[derive(Debug, Default)]
pub(crate) struct ChangeFeed {
    /// The newest change's sequence number (0 before the first). From `crate::sync`: the
    /// route path's generation model (`manager/generation/loom_model.rs`) checks that a
    /// route after the count moved uses that change's table.
    count: AtomicU64,
    state: Mutex<FeedState>,
    /// Whether `state.to_wake` holds a waker: read without the lock by every writer that lets
    /// go of the writer lock.
    waking: AtomicBool,
}

#[derive(Debug, Default)]
struct FeedState {
    recent: VecDeque<Arc<StateChange>>,
    subscribers: Vec<Weak<Inbox>>,
    /// Async subscribers to wake once the gate's locks are let go ([`ChangeFeed::wake`]).
    to_wake: Vec<Waker>,
}

impl ChangeFeed {
    /// The newest change's sequence number: one atomic load.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Describes a publication as the next change, keeps it and queues it for every live
    /// subscriber. Called by the gate's writer after the snapshot is published.
    pub(crate) fn publish(&self, published: Published<'_>) {
        let rollback = published
            .events
            .iter()
            .rev()
            .find(|event| event.rolled_back == RolledBack::Release)
            .cloned();
        let mut state = self.lock();
        let sequence = self.count.load(Ordering::Relaxed) + 1;
        let change = Arc::new(StateChange {
            sequence,
            at: published.at,
            origin: published.origin,
            stage: published.stage,
            from: published.before.environment,
            to: published.after.environment,
            flags: FlagChanges::between(published.before, published.after),
            rollback,
        });
        if state.recent.len() == MAX_RECENT_CHANGES {
            state.recent.pop_front();
        }
        state.recent.push_back(Arc::clone(&change));
        // Counted before any subscriber can receive it: a subscriber that reads the counter
        // after a change arrived sees that change counted.
        self.count.store(sequence, Ordering::Release);
        let mut to_wake = std::mem::take(&mut state.to_wake);
        state.subscribers.retain(|weak| match weak.upgrade() {
            Some(inbox) => {
                to_wake.extend(inbox.push(Arc::clone(&change)));
                true
            }
            None => false,
        });
        if !to_wake.is_empty() {
            self.waking.store(true, Ordering::Release);
        }
        state.to_wake = to_wake;
    }

    /// Wakes the async subscribers that changes were queued for. Called by every writer once
    /// it has let go of the writer lock (publication happens under it), so that no host code
    /// runs while the gate holds a lock; one atomic exchange when there is none.
    pub(crate) fn wake(&self) {
        if !self.waking.swap(false, Ordering::Acquire) {
            return;
        }
        let to_wake = std::mem::take(&mut self.lock().to_wake);
        to_wake.into_iter().for_each(Waker::wake);
    }

    /// The kept changes numbered above `after`, oldest first.
    pub(crate) fn since(&self, after: u64) -> Vec<Arc<StateChange>> {
        self.lock()
            .recent
            .iter()
            .filter(|change| change.sequence > after)
            .cloned()
            .collect()
    }

    /// A new subscription, receiving every change from now on.
    pub(crate) fn subscribe(&self) -> Subscription {
        let inbox = Arc::new(Inbox::default());
        let mut state = self.lock();
        state.subscribers.retain(|weak| weak.strong_count() > 0);
        state.subscribers.push(Arc::downgrade(&inbox));
        Subscription { inbox }
    }

    fn lock(&self) -> MutexGuard<'_, FeedState> {
        // Every update of the state is one push or pop: consistent after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The feed's lock, held until the value is dropped (for tests that hold every lock of a
    /// gate while another thread routes).
    #[cfg(test)]
    pub(crate) fn held(&self) -> impl Sized + '_ {
        self.lock()
    }
}

impl Drop for ChangeFeed {
    /// The gate is gone: every subscription is closed, and a host waiting on one wakes.
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let mut to_wake = std::mem::take(&mut state.to_wake);
        for inbox in state
            .subscribers
            .drain(..)
            .filter_map(|weak| weak.upgrade())
        {
            to_wake.extend(inbox.close());
        }
        // The gate is gone: it holds no lock any more.
        to_wake.into_iter().for_each(Waker::wake);
    }
}

/// One subscriber's queue.
#[derive(Debug, Default)]
struct Inbox {
    queue: Mutex<Queued>,
    arrived: Condvar,
}

#[derive(Debug, Default)]
struct Queued {
    changes: VecDeque<Arc<StateChange>>,
    missed: u64,
    /// The gate is gone: nothing more will be queued.
    closed: bool,
    /// The async task that last found the queue empty, to wake when a change arrives.
    waker: Option<Waker>,
}

impl Inbox {
    /// Queues `change`; the waker of an async task waiting for it, for the caller to wake once
    /// the gate's locks are let go.
    fn push(&self, change: Arc<StateChange>) -> Option<Waker> {
        let mut queued = self.lock();
        if queued.changes.len() == MAX_QUEUED_CHANGES {
            queued.changes.pop_front();
            queued.missed += 1;
        }
        queued.changes.push_back(change);
        let waker = queued.waker.take();
        drop(queued);
        self.arrived.notify_all();
        waker
    }

    /// Closes the queue; the waker of an async task waiting on it, as [`push`](Self::push).
    fn close(&self) -> Option<Waker> {
        let mut queued = self.lock();
        queued.closed = true;
        let waker = queued.waker.take();
        drop(queued);
        self.arrived.notify_all();
        waker
    }

    fn lock(&self) -> MutexGuard<'_, Queued> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A host's subscription to a gate's changes
/// ([`subscribe`](crate::PromotionGateManager::subscribe)): the changes made after it was
/// taken, in order, received on the host's own thread. Dropping it unsubscribes.
///
/// It queues at most [`MAX_QUEUED_CHANGES`]; when a slow host lets more pile up, the oldest
/// are dropped and counted in [`missed`](Self::missed) (their `sequence` numbers show the
/// gap, and [`changes_since`](crate::PromotionGateManager::changes_since) still has the last
/// [`MAX_RECENT_CHANGES`]).
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// # use std::time::Duration;
/// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
/// let changes = gate.subscribe();
/// gate.enable_feature("dark_mode")?;
/// let change = changes.recv_timeout(Duration::from_secs(1)).expect("a change");
/// assert_eq!(change.kind(), ChangeKind::Flags);
/// assert!(changes.try_recv().is_none());
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug)]
pub struct Subscription {
    inbox: Arc<Inbox>,
}

impl Subscription {
    /// The next change if one is queued, without waiting.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert!(gate.subscribe().try_recv().is_none());
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn try_recv(&self) -> Option<Arc<StateChange>> {
        self.inbox.lock().changes.pop_front()
    }

    /// The next change, waiting at most `timeout` for one; `None` at once when none is queued
    /// and the gate is gone ([`is_closed`](Self::is_closed)).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # use std::time::Duration;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert!(gate.subscribe().recv_timeout(Duration::from_millis(1)).is_none());
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Arc<StateChange>> {
        let deadline = Instant::now().checked_add(timeout);
        let mut queued = self.inbox.lock();
        loop {
            if let Some(change) = queued.changes.pop_front() {
                return Some(change);
            }
            if queued.closed {
                return None;
            }
            let left = match deadline {
                Some(deadline) => deadline.checked_duration_since(Instant::now())?,
                None => timeout, // a timeout past the clock's range: wait in long steps
            };
            queued = self
                .inbox
                .arrived
                .wait_timeout(queued, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// How many changes this subscription dropped because its queue was full.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert_eq!(gate.subscribe().missed(), 0);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn missed(&self) -> u64 {
        self.inbox.lock().missed
    }

    /// Whether the gate is gone (dropped): no change will be queued any more; those queued
    /// before can still be read.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # use std::time::Duration;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// let changes = gate.subscribe();
    /// gate.enable_feature("dark_mode")?;
    /// drop(gate);
    /// assert!(changes.is_closed());
    /// assert!(changes.try_recv().is_some()); // queued before the gate went
    /// assert!(changes.recv_timeout(Duration::from_secs(3600)).is_none()); // at once
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inbox.lock().closed
    }

    /// The next change, for an async task: a future that resolves to it, or to `None` once
    /// the gate is gone and nothing is queued (as [`recv_timeout`](Self::recv_timeout)
    /// without the timeout). It works with any executor (no runtime is assumed) and may be
    /// dropped at any time: a change not yet taken stays queued.
    ///
    /// The waker is called by the thread that made the change (a host's write, the store's
    /// sync thread, or a recording thread whose outcome called for an automatic rollback),
    /// after that thread let go of the gate's locks (a rollback left to the write that held
    /// the writer lock when the judge called for it is woken for by that write's thread, as it
    /// lets go); it should only schedule the task, as wakers do. One task at a time awaits a subscription: the last to find it empty is
    /// the one woken (take a subscription per task).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// use std::future::Future;
    /// use std::task::{Context, Poll, Waker};
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// let changes = gate.subscribe();
    /// // In a task: `while let Some(change) = changes.recv().await { ... }`. Polled by hand here:
    /// let mut cx = Context::from_waker(Waker::noop());
    /// assert!(std::pin::pin!(changes.recv()).poll(&mut cx).is_pending());
    /// gate.enable_feature("dark_mode")?;
    /// let Poll::Ready(Some(change)) = std::pin::pin!(changes.recv()).poll(&mut cx) else {
    ///     panic!("the change is queued");
    /// };
    /// assert_eq!(change.kind(), ChangeKind::Flags);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn recv(&self) -> Recv<'_> {
        Recv { subscription: self }
    }

    /// The next change if one is queued (`Ready(Some)`), `Ready(None)` once the gate is gone
    /// and nothing is queued, else `Pending`, with `cx`'s waker kept to be woken when a change
    /// arrives: [`recv`](Self::recv) for a hand-written future or stream.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// use std::task::{Context, Waker};
    /// let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// let changes = gate.subscribe();
    /// let mut cx = Context::from_waker(Waker::noop());
    /// assert!(changes.poll_recv(&mut cx).is_pending());
    /// drop(gate);
    /// assert!(changes.poll_recv(&mut cx).is_ready()); // Ready(None): the gate is gone
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Arc<StateChange>>> {
        let mut queued = self.inbox.lock();
        if let Some(change) = queued.changes.pop_front() {
            return Poll::Ready(Some(change));
        }
        if queued.closed {
            return Poll::Ready(None);
        }
        match &mut queued.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            none => *none = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// The future of [`Subscription::recv`]: the next change, or `None` once the gate is gone.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
/// let changes = gate.subscribe();
/// let next: Recv<'_> = changes.recv(); // `.await` it in an async task
/// # drop(next);
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "a future does nothing unless awaited or polled"]
pub struct Recv<'a> {
    subscription: &'a Subscription,
}

impl Future for Recv<'_> {
    type Output = Option<Arc<StateChange>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.subscription.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(flags: &[&str]) -> PromotionConfig {
        PromotionConfig {
            feature_flags: flags.iter().map(|f| f.to_string()).collect(),
            ..Default::default()
        }
    }

    fn publish(feed: &ChangeFeed, before: &PromotionConfig, after: &PromotionConfig) {
        feed.publish(Published {
            origin: ChangeOrigin::ThisGate,
            before,
            after,
            stage: StageId(1),
            events: &[],
            at: SystemTime::UNIX_EPOCH,
        });
    }

    #[test]
    fn flag_changes_list_a_bounded_number_of_names_and_count_the_rest() {
        let many: Vec<String> = (0..MAX_LISTED_FLAG_CHANGES + 10)
            .map(|i| format!("f{i:03}"))
            .collect();
        let after = PromotionConfig {
            feature_flags: many,
            ..Default::default()
        };
        let changes = FlagChanges::between(&config(&["old"]), &after);
        assert_eq!(changes.enabled.len(), MAX_LISTED_FLAG_CHANGES);
        assert_eq!(changes.enabled[0], "f000");
        assert!(changes.disabled.is_empty());
        assert_eq!(changes.unlisted, 11); // 10 more enabled, "old" disabled
        let small = FlagChanges::between(&config(&["a", "b"]), &config(&["b", "c"]));
        assert_eq!(
            (small.enabled, small.disabled),
            (vec!["c".to_string()], vec!["a".to_string()])
        );
    }

    #[test]
    fn a_flag_moved_between_the_lists_is_turned_on_or_off_for_the_stable_version() {
        let release = config(&["f"]);
        let graduated = PromotionConfig {
            graduated_flags: vec!["f".into()],
            ..Default::default()
        };
        let on = FlagChanges::between(&release, &graduated);
        assert_eq!((on.enabled, on.disabled), (vec!["f".to_string()], vec![]));
        let off = FlagChanges::between(&graduated, &release);
        assert_eq!((off.enabled, off.disabled), (vec![], vec!["f".to_string()]));
    }

    #[test]
    fn the_feed_keeps_the_latest_changes_numbered() {
        let feed = ChangeFeed::default();
        let (a, b) = (config(&[]), config(&["x"]));
        for _ in 0..MAX_RECENT_CHANGES + 5 {
            publish(&feed, &a, &b);
        }
        let total = (MAX_RECENT_CHANGES + 5) as u64;
        assert_eq!(feed.count(), total);
        let recent = feed.since(0);
        assert_eq!(recent.len(), MAX_RECENT_CHANGES);
        assert_eq!(recent[0].sequence, 6);
        assert_eq!(recent.last().map(|c| c.sequence), Some(total));
        assert_eq!(feed.since(total - 2).len(), 2);
        assert!(feed.since(total).is_empty());
    }

    #[test]
    fn a_full_subscription_drops_its_oldest_and_counts_them() {
        let feed = ChangeFeed::default();
        let subscription = feed.subscribe();
        let (a, b) = (config(&[]), config(&["x"]));
        for _ in 0..MAX_QUEUED_CHANGES + 3 {
            publish(&feed, &a, &b);
        }
        assert_eq!(subscription.missed(), 3);
        assert_eq!(subscription.try_recv().map(|c| c.sequence), Some(4));
    }

    #[test]
    fn a_dropped_feed_closes_its_subscriptions_and_wakes_their_waiters() {
        let feed = ChangeFeed::default();
        let subscription = feed.subscribe();
        publish(&feed, &config(&[]), &config(&["x"]));
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| {
                assert!(subscription.recv_timeout(Duration::from_secs(30)).is_some());
                let start = Instant::now();
                // Waits until the feed goes, then returns at once, not at the timeout.
                assert!(subscription.recv_timeout(Duration::from_secs(30)).is_none());
                start.elapsed()
            });
            std::thread::sleep(Duration::from_millis(20));
            assert!(!subscription.is_closed());
            drop(feed);
            let waited = waiter.join().unwrap();
            assert!(waited < Duration::from_secs(30), "{waited:?}");
        });
        assert!(subscription.is_closed());
    }

    #[test]
    fn a_dropped_subscription_is_forgotten() {
        let feed = ChangeFeed::default();
        let kept = feed.subscribe();
        for _ in 0..10 {
            drop(feed.subscribe());
        }
        let (a, b) = (config(&[]), config(&["x"]));
        publish(&feed, &a, &b);
        assert_eq!(feed.lock().subscribers.len(), 1);
        assert!(kept.try_recv().is_some());
    }

    #[test]
    fn recv_timeout_wakes_for_a_change_from_another_thread() {
        let feed = Arc::new(ChangeFeed::default());
        let subscription = feed.subscribe();
        let writer = {
            let feed = Arc::clone(&feed);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                publish(&feed, &config(&[]), &config(&["x"]));
            })
        };
        let change = subscription.recv_timeout(Duration::from_secs(30));
        assert_eq!(change.map(|c| c.kind()), Some(ChangeKind::Flags));
        assert!(writer.join().is_ok());
    }
}
