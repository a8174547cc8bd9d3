//! What the state store tests need besides the crate (std and rusqlite only): a scratch
//! directory, the file operations of an operator on a SQLite store, and the etcd endpoint of
//! `.ci/etcd`. Shared by the integration tests (`tests/common`) and by the
//! store backends' unit tests (`src/store`, which include this file by path: integration test
//! helpers are not part of the crate).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a broken expectation is a failed test"
)]

use std::path::PathBuf;
use std::time::SystemTime;

/// A directory of its own under the system's temporary directory, removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A new, empty directory named after `name`, the process and the time.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "promotion-gates-{name}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// The path of the file `name` in the directory.
    pub fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes the SQLite store file at `path` with its `-wal` and `-shm`, as an operator resetting
/// it does (`rm gate.db gate.db-wal gate.db-shm`) while gates have it open.
pub fn remove_store(path: &str) {
    for file in [
        path.to_string(),
        format!("{path}-wal"),
        format!("{path}-shm"),
    ] {
        std::fs::remove_file(&file).unwrap();
    }
}

/// A copy of the SQLite store at `path` as it is now, at `to` (`VACUUM INTO`: consistent while
/// gates write).
pub fn backup(path: &str, to: &str) {
    rusqlite::Connection::open(path)
        .unwrap()
        .execute("VACUUM INTO ?1", [to])
        .unwrap();
}

/// Moves `file` over the SQLite store at `path`, as an operator restoring a backup does: the
/// `-wal` and `-shm` of the file it replaces removed first (`rm gate.db-wal gate.db-shm; mv
/// restored.db gate.db`).
pub fn move_over(file: &str, path: &str) {
    for companion in [format!("{path}-wal"), format!("{path}-shm")] {
        match std::fs::remove_file(&companion) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("{companion}: {e}"),
            _ => {}
        }
    }
    std::fs::rename(file, path).unwrap();
}

/// The etcd endpoint of `.ci/etcd`, or `None` after saying loudly that `test` did not run
/// (outside CI only: with `CI=true` a missing etcd fails the test).
pub fn etcd_endpoint(test: &str) -> Option<String> {
    match std::env::var("PGATE_ETCD_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => Some(endpoint),
        _ => {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "{test}: CI must run the etcd tests: start etcd with .ci/etcd (PGATE_ETCD_ENDPOINT is not set)"
            );
            eprintln!(
                "!!! {test}: NOT RUN: no etcd (set PGATE_ETCD_ENDPOINT, e.g. with `.ci/etcd -- cargo test --features etcd`)"
            );
            None
        }
    }
}
