//! What a write replaced, kept by the writer side until no other thread holds it, so that the
//! route and record paths never drop the last reference to a snapshot (an SLO policy, or the
//! other instances' counts).
//!
//! A thread's override cache holds the snapshot it last routed with, and an `arc-swap` guard
//! or a paced evaluation holds what was current when it loaded it. Were the writer to drop its
//! reference to the snapshot it replaced, the last of those threads to let go would free it on
//! its next route: every listed id, every flag string and the slot tables, a large vector
//! perhaps unmapped, on the request's thread (taking another arena's lock for memory another
//! thread allocated). So [`Shared::install`](super::Shared) keeps it here instead, and later
//! writes and the store's sync thread (each under the writer lock) free what no thread holds
//! any more; the gate's drop frees the rest. (A rollback the record path makes itself, when a
//! rule fires, is such a write: that record may free them, as it builds a snapshot too.) The
//! store's sync thread keeps the other instances' counts it replaces at each tick likewise
//! (`stored::fleet`): an evaluation holds the fleet it added until the next one, whose
//! histograms that evaluation would otherwise free on its request's thread. And the writer's
//! flag set index keeps the flag sets whose slots it reuses (`flags`): a thread's recent sets
//! hold the two it read last, and would otherwise free one (its names' numbers and texts) as
//! it reads another.
//!
//! Why a count of one means nobody can read it again: a replaced value is never loaded anew
//! (a load returns the current one, and `arc-swap`'s swap pays every guard that borrowed the
//! old one a reference of its own before it returns), and a thread's cache only ever replaces
//! its entry with the current one (a flag set cache, with a set still in its slot: a flag set
//! is kept here only once it is taken out of its slot). So a thread gets a reference to a
//! retired value only by cloning one it holds already: the strong count may still rise while
//! another thread holds one (it does not only fall), but once this list holds the only
//! reference no thread can raise it again, and the list alone frees it. A thread that still
//! holds a flag set's number, not the set, is never handed the freed set: its slot holds
//! another set (of another epoch), or none, and the number is found reclaimed (`flags.rs`);
//! the names, which the sets share, live as long as the gate. The flag sets' loom model
//! (`flags/loom_model.rs`, `.ci/loom`) runs this list's keeping and freeing against a thread
//! that holds a set while a write displaces it.
//!
//! Bound: one entry per thread whose route cache (or a load under way) still holds an older
//! value, plus the one just replaced (two per thread for flag sets); per-thread caches are kept when a thread exits
//! (`thread_local` reuses them), so their number is the most threads that routed at once.

use std::sync::Arc;

/// A shared reference whose holders can be counted: std's `Arc`, or loom's in the flag sets'
/// loom model (`flags/loom_model.rs`), which runs this list's keeping and freeing on loom's
/// reference counts.
pub(crate) trait Counted {
    /// How many references to the value there are, this one included.
    fn holders(&self) -> usize;
}

impl<T: ?Sized> Counted for Arc<T> {
    fn holders(&self) -> usize {
        Arc::strong_count(self)
    }
}

/// Values a write replaced (`Arc`s), until no other thread holds them.
pub(crate) struct Retired<P> {
    held: Vec<P>,
}

impl<P: Counted> Retired<P> {
    /// Keeps `replaced` (just swapped out) until no other thread holds it, after freeing what
    /// no thread holds any more.
    pub(crate) fn keep(&mut self, replaced: P) {
        self.sweep();
        self.held.push(replaced);
    }

    /// Keeps `displaced` (a value just taken out of where threads load it, if there was one)
    /// while another thread holds it, after freeing what no thread holds any more; one that no
    /// other thread holds is freed here at once: out of its place, nobody can take it again.
    pub(crate) fn keep_if_held(&mut self, displaced: Option<P>) {
        match displaced {
            Some(value) if value.holders() > 1 => self.keep(value),
            Some(_) | None => self.sweep(),
        }
    }

    /// Frees the values no other thread holds (their count is ours alone, and can no longer
    /// rise); the others stay. Called by the writer side only.
    pub(crate) fn sweep(&mut self) {
        self.held.retain(|held| held.holders() > 1);
    }

    /// How many values are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }
}

impl<P> Default for Retired<P> {
    fn default() -> Self {
        Self { held: Vec::new() }
    }
}

impl<P> std::fmt::Debug for Retired<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retired")
            .field("held", &self.held.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::Retired;
    use crate::PromotionGateManager;
    use crate::config::{Environment, PromotionConfig, canary};
    use crate::overrides::Overrides;
    use crate::slo::{SloAdmissionController, SloConfig};
    use crate::snapshot::Snapshot;
    use std::sync::{Arc, Weak};
    use std::time::Duration;

    /// A gate listing override ids, in `config`'s store if it names one.
    fn listing_gate(mut config: PromotionConfig) -> PromotionGateManager {
        config.overrides = Some(Overrides {
            canary_ids: vec!["tester".into()],
            ..Default::default()
        });
        let slo = SloAdmissionController::new(SloConfig::default()).unwrap();
        PromotionGateManager::new(config, slo).unwrap()
    }

    /// The snapshot published now, not held.
    fn published(gate: &PromotionGateManager) -> Weak<Snapshot> {
        Arc::downgrade(&gate.shared.current.load_full())
    }

    fn swap_to(gate: &PromotionGateManager, environment: Environment) {
        let mut config = gate.config();
        config.environment = environment;
        gate.swap_config(config).unwrap();
    }

    #[test]
    fn a_replaced_snapshot_outlives_the_routes_and_the_next_write_frees_it() {
        let gate = listing_gate(PromotionConfig {
            environment: canary(10.0),
            ..Default::default()
        });
        gate.route_request("u"); // this thread's cache holds the first snapshot
        let first = published(&gate);
        swap_to(&gate, canary(20.0));
        gate.route_request("u"); // the cache lets go of the first snapshot
        assert!(
            first.upgrade().is_some(),
            "the route let go of the last reference"
        );
        swap_to(&gate, canary(30.0));
        assert_eq!(first.strong_count(), 0, "the next write frees it");
        // The second snapshot, still in this thread's cache, is kept.
        assert_eq!(gate.lock_writer().retired_snapshots.len(), 1);
    }

    #[test]
    fn a_replaced_slo_policy_is_kept_while_an_evaluation_holds_it() {
        let gate = listing_gate(PromotionConfig::default());
        let held = gate.shared.monitor.slo(); // as an evaluation on the record path holds it
        let old = Arc::downgrade(&held);
        let stricter = SloConfig {
            latency_target: Duration::from_millis(100),
            ..Default::default()
        };
        gate.swap_slo(stricter).unwrap();
        drop(held);
        assert!(
            old.upgrade().is_some(),
            "the holder let go of the last reference"
        );
        gate.swap_slo(SloConfig::default()).unwrap();
        assert_eq!(old.strong_count(), 0, "the next swap frees it");
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn the_sync_thread_frees_what_the_routes_let_go_of_without_a_write() {
        let dir = crate::store::scratch::Scratch::new("retired-sync");
        let mut config = crate::store::testing::config(canary(10.0));
        config.store = Some(crate::store::StoreConfig::Sqlite(
            crate::store::SqliteStoreConfig {
                path: dir.file("gate.db"),
                sync_interval_ms: 60_000,
                busy_timeout_ms: 5_000,
                fleet_judging: false,
            },
        ));
        let gate = listing_gate(config);
        gate.route_request("u");
        let first = published(&gate);
        swap_to(&gate, canary(20.0));
        gate.route_request("u");
        assert!(first.upgrade().is_some());
        gate.shared.sync_once(); // a tick
        assert_eq!(first.strong_count(), 0, "the tick frees it");
    }

    #[test]
    fn a_value_another_thread_holds_stays_until_it_lets_go() {
        let mut retired = Retired::default();
        let held_elsewhere = Arc::new(String::from("old"));
        retired.keep(Arc::clone(&held_elsewhere));
        retired.keep(Arc::new(String::from("older, held by nobody")));
        assert_eq!(retired.len(), 2);
        retired.sweep();
        assert_eq!(retired.len(), 1, "the value nobody held is freed");
        drop(held_elsewhere); // not the last reference: the list still holds it
        retired.sweep();
        assert_eq!(retired.len(), 0);
    }
}
