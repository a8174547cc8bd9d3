//! What the state store tests need besides the crate, std only: a scratch directory and the
//! etcd endpoint of `.ci/etcd`. Shared by the integration tests (`tests/common`) and by the
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
