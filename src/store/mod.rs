//! The state store: where a gate's release state and history outlive the process and are
//! shared between processes. The only module that does I/O, and never on the route or record
//! path: the manager commits its writes here and a sync thread reads other processes' writes.
//!
//! A store holds, per gate, one release (version, stage, config) and the bounded rollback
//! history. Every write is one transaction guarded by the version and stage it was decided on
//! (a compare-and-swap): of two writers deciding on the same state, exactly one wins and the
//! other is told so, with nothing written. Backends: [`sqlite`] (one host), and etcd (a fleet).

use std::fmt;
use std::sync::Arc;

mod config;
mod sqlite;
mod state;

pub use config::{EtcdStoreConfig, SqliteStoreConfig, StoreConfig};
pub(crate) use state::{
    Commit, Guard, SCHEMA_VERSION, StoredEvent, StoredRelease, StoredState, StoredWrite,
};

/// A state store failed; the gate's in-process state is unchanged by the failed call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state store {location}: {problem}: {detail}")]
pub(crate) struct StoreError {
    location: String,
    problem: StoreProblem,
    detail: String,
}

/// What kind of failure a [`StoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreProblem {
    /// The store cannot be reached, opened or written now (a missing directory, a lock held
    /// too long, an I/O error, a cluster that does not answer). Routing goes on from the last
    /// snapshot; retrying may succeed.
    Unavailable,
    /// The store holds something that is not a promotion-gates state this version reads: a
    /// corrupt file, another program's database, a newer schema. Retrying will not help.
    NotOurs,
    /// The build has no support for this kind of store.
    Unsupported,
}

impl fmt::Display for StoreProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreProblem::Unavailable => "unavailable",
            StoreProblem::NotOurs => "not a promotion-gates state store (corrupt or foreign)",
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
    pub(crate) fn location(&self) -> &str {
        &self.location
    }

    /// What kind of failure it is.
    pub(crate) fn problem(&self) -> StoreProblem {
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
}

/// Opens the store `config` names, for the gate called `gate`.
pub(crate) fn open(config: &StoreConfig, gate: &str) -> Result<Arc<dyn StateStore>, StoreError> {
    match config {
        StoreConfig::Sqlite(sqlite) => Ok(Arc::new(sqlite::SqliteStore::open(sqlite, gate)?)),
        StoreConfig::Etcd(etcd) => Err(StoreError::new(
            format!("{} {}", etcd.endpoints.join(","), etcd.prefix),
            StoreProblem::Unsupported,
            "etcd support is not built in yet",
        )),
    }
}
