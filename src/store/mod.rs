//! The state store: where a gate's release state and history outlive the process and are
//! shared between processes. The only module that does I/O, and never on the route or record
//! path: the manager commits its writes here and a sync thread reads other processes' writes.
//!
//! A store holds, per gate, one release (version, stage, config) and the bounded rollback
//! history. Every write is one transaction guarded by the version and stage it was decided on
//! (a compare-and-swap): of two writers deciding on the same state, exactly one wins and the
//! other is told so, with nothing written. Backends: `sqlite` (one host) and, with the cargo
//! feature `etcd`, `etcd` (a fleet).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::Duration;

mod config;
mod contribution;
#[cfg(feature = "etcd")]
mod etcd;
#[cfg(test)]
#[path = "../../tests/common/scratch.rs"]
#[allow(dead_code, reason = "each backend's tests use their own part")]
mod scratch;
mod sqlite;
mod state;
#[cfg(test)]
pub(crate) mod testing;

pub use config::{EtcdStoreConfig, SqliteStoreConfig, StoreConfig};
pub(crate) use contribution::{
    BadContribution, Contribution, MAX_INSTANCES, decode, encode, instance_id, time_to_live,
};
pub(crate) use state::{
    Commit, Guard, SCHEMA_VERSION, StoredEvent, StoredRelease, StoredState, StoredWrite,
};

/// A state store failed; the gate's in-process state is unchanged by the failed call.
///
/// # Example
/// ```
/// use promotion_gates::{Error, PromotionConfig, PromotionGateManager, SloAdmissionController, SloConfig};
///
/// let config = PromotionConfig::from_json(r#"{"store": {"sqlite": {"path": "/nonexistent-dir/gate.db"}}}"#)?;
/// let err = PromotionGateManager::new(config, SloAdmissionController::new(SloConfig::default())?).unwrap_err();
/// assert!(matches!(err, Error::Store(_)));
/// assert!(err.to_string().contains("/nonexistent-dir/gate.db"), "{err}");
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state store {location}: {problem}: {detail}")]
pub struct StoreError {
    location: String,
    problem: StoreProblem,
    detail: String,
}

/// What kind of failure a [`StoreError`] is.
///
/// # Example
/// ```
/// use promotion_gates::StoreProblem;
/// assert_eq!(StoreProblem::Unavailable.to_string(), "unavailable");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreProblem {
    /// The store cannot be reached, opened or written now (a missing directory, a lock held
    /// too long, an I/O error, a cluster that does not answer). Routing goes on from the last
    /// snapshot; retrying may succeed.
    Unavailable,
    /// The store holds something that is not a promotion-gates state this version reads: a
    /// corrupt file, another program's database, a newer schema. Retrying will not help.
    NotOurs,
    /// Another process wrote first: the write was decided on a state that is no longer the
    /// stored one. Nothing was written; the gate follows the stored state, and the call may be
    /// made again.
    Conflict,
    /// The build has no support for this kind of store.
    Unsupported,
}

impl fmt::Display for StoreProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreProblem::Unavailable => "unavailable",
            StoreProblem::NotOurs => "not a promotion-gates state store (corrupt or foreign)",
            StoreProblem::Conflict => "another process wrote first",
            StoreProblem::Unsupported => "not supported by this build",
        })
    }
}

impl StoreError {
    pub(crate) fn new(
        location: impl Into<String>,
        problem: StoreProblem,
        detail: impl fmt::Display,
    ) -> Self {
        Self {
            location: location.into(),
            problem,
            detail: detail.to_string(),
        }
    }

    /// The store: a file path, or an etcd cluster's endpoints and prefix.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// let config = PromotionConfig::from_json(r#"{"store": {"sqlite": {"path": "/nonexistent-dir/g.db"}}}"#)?;
    /// let Err(Error::Store(err)) = PromotionGateManager::new(config, SloAdmissionController::new(SloConfig::default())?) else { panic!() };
    /// assert_eq!(err.location(), "/nonexistent-dir/g.db");
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn location(&self) -> &str {
        &self.location
    }

    /// What kind of failure it is.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// let config = PromotionConfig::from_json(r#"{"store": {"sqlite": {"path": "/nonexistent-dir/g.db"}}}"#)?;
    /// let Err(Error::Store(err)) = PromotionGateManager::new(config, SloAdmissionController::new(SloConfig::default())?) else { panic!() };
    /// assert_eq!(err.problem(), StoreProblem::Unavailable);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn problem(&self) -> StoreProblem {
        self.problem
    }
}

/// A place that keeps gates' release state: load it, commit a write as one guarded
/// transaction, and read what changed since a version.
pub(crate) trait StateStore: Send + Sync + fmt::Debug {
    /// Where the store is, for messages and logs.
    fn location(&self) -> &str;

    /// The stored state if its version is above `version`: the release, and the history
    /// events recorded after `version` (all of them for 0). `None` when nothing is newer (or
    /// the store holds no state for the gate yet).
    fn changes_since(&self, version: u64) -> Result<Option<StoredState>, StoreError>;

    /// The whole stored state, if any.
    fn load(&self) -> Result<Option<StoredState>, StoreError> {
        self.changes_since(0)
    }

    /// Commits `write` if the stored state is still the one at `write.guard` (no state at all
    /// for version 0): the release, the event and the history trim, in one transaction.
    fn commit(&self, write: &StoredWrite) -> Result<Commit, StoreError>;

    /// Stores this instance's contribution to its stage (replacing the one it stored before
    /// for that stage), to count for `ttl` unless published again, and forgets every
    /// contribution not published again within `ttl`.
    fn publish(&self, contribution: &Contribution, ttl: Duration) -> Result<(), StoreError>;

    /// The live contributions to `stage` of instances other than `except` (published within
    /// `ttl`), newest first, at most [`MAX_INSTANCES`]: each one read, or refused with what in
    /// it is wrong (the caller logs it and goes on).
    fn contributions(
        &self,
        stage: u64,
        except: &str,
        ttl: Duration,
    ) -> Result<Vec<Result<Contribution, BadContribution>>, StoreError>;

    /// Calls `wake` (on a thread of the store's own, returned for the caller to join once it
    /// set `stop`) whenever another writer may have changed the state, until `stop` is set.
    /// Stores that cannot push changes start no thread: the sync interval finds the changes.
    fn watch(&self, wake: Box<dyn Fn() + Send>, stop: Arc<AtomicBool>) -> Option<JoinHandle<()>> {
        let _ = (wake, stop);
        None
    }
}

/// Opens the store `config` names, for the gate called `gate`.
pub(crate) fn open(config: &StoreConfig, gate: &str) -> Result<Arc<dyn StateStore>, StoreError> {
    match config {
        StoreConfig::Sqlite(sqlite) => Ok(Arc::new(sqlite::SqliteStore::open(sqlite, gate)?)),
        #[cfg(feature = "etcd")]
        StoreConfig::Etcd(etcd) => Ok(Arc::new(etcd::EtcdStore::open(etcd, gate)?)),
        #[cfg(not(feature = "etcd"))]
        StoreConfig::Etcd(etcd) => Err(StoreError::new(
            format!("{} {}", etcd.endpoints.join(","), etcd.prefix),
            StoreProblem::Unsupported,
            "this build has no etcd support (cargo feature `etcd` of promotion-gates)",
        )),
    }
}
