//! The state store: where a gate's release state and history outlive the process and are
//! shared between processes. The only module that does I/O, and never on the route or record
//! path: the manager commits its writes here and a sync thread reads other processes' writes.
//!
//! A store holds, per gate, one release (version, stage, config) and the bounded rollback
//! history. Every write is one transaction guarded by the version and stage it was decided on
//! (a compare-and-swap): of two writers deciding on the same state, exactly one wins and the
//! other is told so, with nothing written. Backends: with the cargo feature `sqlite` (on by
//! default), `sqlite` (one host), and with the cargo feature `etcd`, `etcd` (a fleet).
#![cfg_attr(
    not(any(feature = "sqlite", feature = "etcd")),
    allow(
        dead_code,
        unused_imports,
        unused_variables,
        reason = "what the backends share is unused in a build without one"
    )
)]

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
pub(crate) mod scratch;
#[cfg(feature = "sqlite")]
mod sqlite;
mod state;
#[cfg(test)]
pub(crate) mod testing;

pub use config::{EtcdStoreConfig, SqliteStoreConfig, StoreConfig};
pub(crate) use contribution::{
    BadContribution, Contribution, MAX_INSTANCES, decode, encode, instance_id, opened_at,
    time_to_live,
};
pub(crate) use state::{
    Commit, Guard, NewestFirst, RolloutOn, SCHEMA_VERSION, StoredEvent, StoredRelease,
    StoredRollout, StoredState, StoredWrite,
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
#[non_exhaustive]
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
    /// The store refuses a request this large: a release whose config is above etcd's
    /// `--max-request-bytes` (1.5 MiB unless raised; a config may be up to
    /// [`MAX_DOCUMENT_BYTES`](crate::MAX_DOCUMENT_BYTES)). The error names the release's size
    /// and the store's answer. Retrying will not help until the store's limit is raised (or
    /// the config made smaller).
    TooLarge,
}

impl fmt::Display for StoreProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreProblem::Unavailable => "unavailable",
            StoreProblem::NotOurs => "not a promotion-gates state store (corrupt or foreign)",
            StoreProblem::Conflict => "another process wrote first",
            StoreProblem::Unsupported => "not supported by this build",
            StoreProblem::TooLarge => "a request larger than the store takes",
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

    /// What failed, without the location and the kind (for a message that wraps it).
    pub(crate) fn detail(&self) -> &str {
        &self.detail
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

/// What a store holds against the version a process knows ([`StateStore::changes_since`]).
#[derive(Debug, PartialEq)]
pub(crate) enum Since {
    /// The version known: nothing changed.
    Same,
    /// A newer state: its release, and the history events recorded after the known version.
    Newer(StoredState),
    /// The store went back: it holds no state although a version above 0 is known, or a lower
    /// version (its state was deleted or replaced); or the state known was read from another
    /// of a SQLite store's files (another [`Guard::epoch`]: its file was replaced on disk
    /// since), whatever the new file's numbers. The whole stored state, if any.
    Reset(Option<StoredState>),
}

impl Since {
    /// Which history events a read of the stored release (its version and stage; `None`: no
    /// state) takes against the `known` state: those after the returned version (0 for a store
    /// that went back); `None` when nothing is to be read ([`unread`](Self::unread) says what
    /// that means). In a store that did not go back neither the version nor the stage ever
    /// falls, and a version is never written twice with two stages.
    pub(crate) fn read_after(stored: Option<(u64, u64)>, known: Guard) -> Option<u64> {
        let (version, stage) = stored?;
        if (version, stage) == (known.version, known.stage) {
            None
        } else if Self::went_back(version, stage, known) {
            Some(0)
        } else {
            Some(known.version)
        }
    }

    /// What a read with nothing to take means: no state although one is known is a reset.
    pub(crate) fn unread(stored: Option<(u64, u64)>, known: Guard) -> Self {
        if stored.is_none() && known.version > 0 {
            Self::Reset(None)
        } else {
            Self::Same
        }
    }

    /// The state read for the `known` one, its history taken after `after` (what
    /// [`read_after`](Self::read_after) said): newer, or, when the whole history was taken
    /// although a version is known (the store went back), the whole stored state.
    pub(crate) fn of(state: StoredState, after: u64, known: Guard) -> Self {
        if after < known.version {
            Self::Reset(Some(state))
        } else {
            Self::Newer(state)
        }
    }

    fn went_back(version: u64, stage: u64, known: Guard) -> bool {
        version < known.version
            || stage < known.stage
            || (version == known.version && stage != known.stage)
    }
}

/// A place that keeps gates' release state: load it, commit a write as one guarded
/// transaction, and read what changed since a version.
pub(crate) trait StateStore: Send + Sync + fmt::Debug {
    /// Where the store is, for messages and logs.
    fn location(&self) -> &str;

    /// What the store holds against a state of `version` a process knows (0: none): the same
    /// version, a newer state (the release and the history events recorded after `version`),
    /// or, when the store went back (no state at all for a known version above 0, or a lower
    /// version: its state was deleted or replaced; a state known of another SQLite file than
    /// the one open, [`Guard::epoch`], whatever its numbers), the whole stored state if any.
    /// A state handed back carries the epoch of the file it was read from.
    fn changes_since(&self, known: Guard) -> Result<Since, StoreError>;

    /// The whole stored state, if any.
    fn load(&self) -> Result<Option<StoredState>, StoreError> {
        let nothing = Guard::EMPTY;
        Ok(match self.changes_since(nothing)? {
            Since::Newer(state) => Some(state),
            Since::Same | Since::Reset(_) => None,
        })
    }

    /// Commits `write` if the stored state is still the one at `write.guard` (no state at all
    /// for version 0): the release, the event and the history trim, in one transaction. A
    /// write decided on a state read from another SQLite file than the one open (another
    /// [`Guard::epoch`]: the file was replaced on disk since) is refused as a conflict,
    /// whatever the numbers; [`Commit::Written`] names the epoch of the file written.
    fn commit(&self, write: &StoredWrite) -> Result<Commit, StoreError>;

    /// Stores this instance's contribution to its stage, a stage of the state `known` (read
    /// from or written in the store's file of its [`Guard::epoch`]), replacing the one it
    /// stored before for that stage, to count for `ttl` unless published again, and forgets
    /// every contribution not published again within `ttl`. A SQLite store whose path names
    /// another file now (replaced on disk since: `known` is of another file, as
    /// [`commit`](Self::commit) tells a write's guard) publishes nothing there, where the stage
    /// number is another state's, and answers a conflict. The stage stored is the
    /// contribution's own ([`Contribution::stage`]), which the sync thread encodes from
    /// `known.stage`; a store checks no agreement between the two (`known` tells it the file).
    fn publish(
        &self,
        contribution: &Contribution,
        known: Guard,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// The live contributions to the stage of the state `known` (its [`Guard::stage`], read
    /// from or written in the store's file of its [`Guard::epoch`]) of instances other than
    /// `except` (published within `ttl`), newest first, at most [`MAX_INSTANCES`]: each one
    /// read, or refused with what in it is wrong (the caller logs it and goes on). A SQLite
    /// store whose path names another file now reads nothing there and answers a conflict, as
    /// [`publish`](Self::publish) does.
    fn contributions(
        &self,
        known: Guard,
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
        #[cfg(feature = "sqlite")]
        StoreConfig::Sqlite(sqlite) => Ok(Arc::new(sqlite::SqliteStore::open(sqlite, gate)?)),
        #[cfg(not(feature = "sqlite"))]
        StoreConfig::Sqlite(sqlite) => Err(StoreError::new(
            sqlite.path.clone(),
            StoreProblem::Unsupported,
            "this build has no SQLite support (cargo feature `sqlite` of promotion-gates, on by default)",
        )),
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
