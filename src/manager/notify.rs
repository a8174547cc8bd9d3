//! How a host learns of the gate's changes: the change counter, the recent changes and
//! subscriptions (see [`crate::changes`]).

use std::sync::Arc;

use super::PromotionGateManager;
use crate::changes::{StateChange, Subscription};

impl PromotionGateManager {
    /// Asks the state store's sync thread to read the store now rather than at its next
    /// `sync_interval_ms`: for a host that learned by its own means that another process wrote
    /// (the nginx module's workers share a generation counter in shared memory for this).
    /// Returns at once, having done no I/O: the sync thread reads the store and publishes what
    /// changed (the change count then moves). Asks made before the thread begins that read are
    /// merged into one. False when the gate has no store (nothing to read).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// assert!(!gate.sync_now(), "no store: nothing to read");
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn sync_now(&self) -> bool {
        self.shared.handoff.ask_sync()
    }

    /// The number of the gate's newest change (0 before the first): one atomic load, cheap
    /// enough to call on every request. When it moves, [`changes_since`](Self::changes_since)
    /// says what changed. With a state store, another process's writes move it once this gate
    /// has read them; another process's [`swap_slo`](Self::swap_slo) does not: the SLO is each
    /// process's own and never stored, so this gate's is unchanged.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// let seen = gate.change_count();
    /// gate.enable_feature("dark_mode")?;
    /// assert_eq!(gate.change_count(), seen + 1);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn change_count(&self) -> u64 {
        self.shared.changes.count()
    }

    /// The kept changes numbered above `after`, oldest first: the last
    /// [`MAX_RECENT_CHANGES`](crate::MAX_RECENT_CHANGES) at most (a gap in their `sequence`
    /// numbers shows what is no longer kept).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// gate.promote(Environment::Canary { traffic_percent: 5.0 })?;
    /// gate.enable_feature("dark_mode")?;
    /// let kinds: Vec<_> = gate.changes_since(0).iter().map(|c| c.kind()).collect();
    /// assert_eq!(kinds, [ChangeKind::Promotion, ChangeKind::Flags]);
    /// assert_eq!(gate.changes_since(1).len(), 1);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn changes_since(&self, after: u64) -> Vec<Arc<StateChange>> {
        self.shared.changes.since(after)
    }

    /// Subscribes to the gate's changes: every change from now on is queued for the returned
    /// [`Subscription`], which the host reads on its own thread. The gate never calls host
    /// code: it only queues, also for a rollback the judge makes on the record path. Dropping
    /// the subscription ends it.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # use std::time::Duration;
    /// let gate = PromotionGateManager::new(
    ///     PromotionConfig { environment: Environment::Canary { traffic_percent: 10.0 }, ..Default::default() },
    ///     SloAdmissionController::new(SloConfig::default())?,
    /// )?;
    /// let changes = gate.subscribe();
    /// gate.rollback("drill")?;
    /// let change = changes.recv_timeout(Duration::from_secs(1)).expect("the rollback");
    /// assert_eq!(change.kind(), ChangeKind::Rollback);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    #[must_use = "dropping the Subscription ends it at once"]
    pub fn subscribe(&self) -> Subscription {
        self.shared.changes.subscribe()
    }
}
