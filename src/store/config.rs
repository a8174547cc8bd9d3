//! The `store` key of a config document: which state store keeps a gate's release state.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::error::{ConfigError, quoted};
use crate::limits::{MAX_ETCD_ENDPOINTS, MAX_STORE_ADDRESS_BYTES};

mod store_wire;

/// Where a gate keeps its release state and history, shared by every process that opens the
/// same store. No `store` key means in-memory only: state lives and dies with the gate.
///
/// In JSON: `{"sqlite": {"path": "/var/lib/promotion-gates/checkout.db"}}` or
/// `{"etcd": {"endpoints": ["http://127.0.0.1:2379"], "prefix": "/promotion-gates/checkout"}}`.
/// A value of neither form is refused naming the value and both forms (the library's own
/// reader, `src/store/config/store_wire.rs`; serde's derived one said only "expected value").
///
/// # Example
/// ```
/// use promotion_gates::{PromotionConfig, StoreConfig};
///
/// let config = PromotionConfig::from_json(
///     r#"{"gate": "checkout", "store": {"sqlite": {"path": "/var/lib/promotion-gates/checkout.db"}}}"#,
/// )?;
/// let Some(StoreConfig::Sqlite(sqlite)) = &config.store else { panic!("a sqlite store") };
/// assert_eq!(sqlite.path, "/var/lib/promotion-gates/checkout.db");
/// assert_eq!(sqlite.sync_interval_ms, 250);
///
/// let err = PromotionConfig::from_json(r#"{"store": 5}"#).unwrap_err();
/// assert!(err.to_string().contains(
///     r#"store: invalid type: integer `5`, expected {"sqlite": {"path": ...}} or {"etcd": {...}}"#
/// ));
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreConfig {
    /// One SQLite file on one host, shared by every process that opens it.
    Sqlite(SqliteStoreConfig),
    /// An etcd cluster, shared by a fleet (opened only by builds with the cargo feature
    /// `etcd`; others refuse it with [`StoreProblem::Unsupported`](crate::StoreProblem)).
    Etcd(EtcdStoreConfig),
}

/// The SQLite store: a file path, and how often to look for other processes' writes.
///
/// # Example
/// ```
/// use promotion_gates::SqliteStoreConfig;
/// let sqlite: SqliteStoreConfig = serde_json::from_str(r#"{"path": "/tmp/gate.db"}"#).unwrap();
/// assert_eq!(sqlite.busy_timeout_ms, 2000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteStoreConfig {
    /// The database file; created (with its tables) when missing. Its directory must exist.
    /// It is always a file name, never a SQLite URI nor one of SQLite's special names:
    /// `file:gate.db` and `:memory:` are the files of those names. A relative path is made
    /// absolute against the working directory once, when the gate opens: the gate keeps to
    /// that file if the host changes its working directory later. Errors show it as written.
    pub path: String,
    /// How often the sync thread looks for other processes' writes, in milliseconds
    /// (default 250, accepted 10 to 60000).
    #[serde(default = "default_sqlite_sync_ms")]
    pub sync_interval_ms: u64,
    /// How long a write waits for another process's write lock before it fails, in
    /// milliseconds (default 2000, accepted 0 to 60000); a wait for this process's other store
    /// call under way (the sync thread's) counts in it.
    #[serde(default = "default_busy_timeout_ms")]
    pub busy_timeout_ms: u64,
    /// Whether the processes on the store judge their summed outcomes (fleet-wide judging;
    /// default true). Turn it off when the host pools its processes' outcomes itself, as the
    /// nginx module's workers do through shared memory: the store would count them again.
    #[serde(default = "default_fleet_judging")]
    pub fleet_judging: bool,
}

/// The etcd store: the cluster's endpoints and the key prefix of this gate.
///
/// # Example
/// ```
/// use promotion_gates::EtcdStoreConfig;
/// let etcd: EtcdStoreConfig = serde_json::from_str(
///     r#"{"endpoints": ["http://127.0.0.1:2379"], "prefix": "/promotion-gates/checkout"}"#,
/// ).unwrap();
/// assert_eq!(etcd.sync_interval_ms, 1000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdStoreConfig {
    /// `http://host:port` of one or more cluster members (plain HTTP: `https://` is refused).
    pub endpoints: Vec<String>,
    /// The key prefix under which this gate's keys live, e.g. `/promotion-gates/checkout`.
    pub prefix: String,
    /// How often the sync thread re-reads the state besides the watch, in milliseconds
    /// (default 1000, accepted 10 to 60000).
    #[serde(default = "default_etcd_sync_ms")]
    pub sync_interval_ms: u64,
    /// Whether the processes on the store judge their summed outcomes (as
    /// [`SqliteStoreConfig::fleet_judging`]; default true).
    #[serde(default = "default_fleet_judging")]
    pub fleet_judging: bool,
}

fn default_sqlite_sync_ms() -> u64 {
    250
}

fn default_etcd_sync_ms() -> u64 {
    1000
}

fn default_busy_timeout_ms() -> u64 {
    2000
}

fn default_fleet_judging() -> bool {
    true
}

const SYNC_RANGE_MS: std::ops::RangeInclusive<u64> = 10..=60_000;

impl StoreConfig {
    /// Checks every field; the first bad one is reported with its dotted path and value.
    ///
    /// # Errors
    /// [`ConfigError`] for an empty path or one holding a NUL byte, no endpoints, an endpoint
    /// that is not `http://` with a host (`https://` too: this build has no TLS), a prefix
    /// that does not start with `/` or ends with `/`, or an interval out of range.
    ///
    /// # Example
    /// ```
    /// use promotion_gates::{EtcdStoreConfig, StoreConfig};
    /// let etcd = StoreConfig::Etcd(EtcdStoreConfig {
    ///     endpoints: vec!["127.0.0.1:2379".into()],
    ///     prefix: "/pg/checkout".into(),
    ///     sync_interval_ms: 1000,
    ///     fleet_judging: true,
    /// });
    /// assert_eq!(etcd.validate().unwrap_err().field(), "store.etcd.endpoints[0]");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            StoreConfig::Sqlite(sqlite) => sqlite.validate(),
            StoreConfig::Etcd(etcd) => etcd.validate(),
        }
    }

    /// How often the sync thread runs.
    ///
    /// # Example
    /// ```
    /// use promotion_gates::{SqliteStoreConfig, StoreConfig};
    /// let store = StoreConfig::Sqlite(SqliteStoreConfig { path: "g.db".into(), sync_interval_ms: 100, busy_timeout_ms: 0, fleet_judging: true });
    /// assert_eq!(store.sync_interval(), std::time::Duration::from_millis(100));
    /// ```
    pub fn sync_interval(&self) -> Duration {
        Duration::from_millis(match self {
            StoreConfig::Sqlite(sqlite) => sqlite.sync_interval_ms,
            StoreConfig::Etcd(etcd) => etcd.sync_interval_ms,
        })
    }

    /// Whether the gate publishes its counts and judges the sum of every live instance's
    /// (`fleet_judging`, on unless the document turns it off).
    ///
    /// # Example
    /// ```
    /// use promotion_gates::StoreConfig;
    /// let store: StoreConfig = serde_json::from_str(r#"{"sqlite": {"path": "g.db", "fleet_judging": false}}"#).unwrap();
    /// assert!(!store.fleet_judging());
    /// ```
    pub fn fleet_judging(&self) -> bool {
        match self {
            StoreConfig::Sqlite(sqlite) => sqlite.fleet_judging,
            StoreConfig::Etcd(etcd) => etcd.fleet_judging,
        }
    }

    /// Whether `self` and `other` name one store: one SQLite file, however each path spells
    /// it ([`same_file`]), or the same etcd prefix on endpoints of which they share one, however
    /// each spells it ([`same_endpoint`]). How each is read (sync interval, busy timeout, fleet
    /// judging) does not make it another store. (Used by the OpenTelemetry instruments'
    /// `follow` alone.)
    #[cfg(feature = "otel")]
    pub(crate) fn is_same_store(&self, other: &StoreConfig) -> bool {
        match (self, other) {
            (StoreConfig::Sqlite(a), StoreConfig::Sqlite(b)) => same_file(&a.path, &b.path),
            (StoreConfig::Etcd(a), StoreConfig::Etcd(b)) => {
                a.prefix == b.prefix
                    && a.endpoints
                        .iter()
                        .any(|e| b.endpoints.iter().any(|f| same_endpoint(e, f)))
            }
            _ => false,
        }
    }
}

/// Whether two valid etcd endpoints name one server ([`server_of`]): with or without the `/`
/// either may end with, the host in any case (`http://ETCD:2379` is `http://etcd:2379`), the
/// port with leading zeros or HTTP's 80 left out, an IPv6 address however it is written.
#[cfg(feature = "otel")]
fn same_endpoint(a: &str, b: &str) -> bool {
    server_of(a).is_some_and(|server| server_of(b) == Some(server))
}

/// A valid etcd endpoint as the etcd store calls it: without the `/` at its end that
/// validation accepts ([`is_endpoint`]), since the store appends its paths to it
/// (`http://a:2379/` would ask for `//v3/...`).
pub(super) fn endpoint_base(endpoint: &str) -> &str {
    endpoint.strip_suffix('/').unwrap_or(endpoint)
}

/// Whether two SQLite paths name one file: written alike, or resolved alike now
/// ([`std::fs::canonicalize`]: against the working directory, through every symbolic link,
/// `.` and `..`), as SQLite resolves a path before it names the file's `-wal` and `-shm` beside
/// it. So `gate.db`, `./gate.db`, its absolute path and a symbolic link to it are one store.
/// A path that resolves to no file (removed since) is one store only with itself as written.
#[cfg(feature = "otel")]
fn same_file(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(a), Ok(b)) if a == b
        )
}

impl SqliteStoreConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        // Control characters (a NUL, a newline, an escape) are refused: a path holding one
        // would reach log lines and error messages as written, where a newline forges a line.
        if self.path.is_empty()
            || self.path.chars().any(char::is_control)
            || self.path.len() > MAX_STORE_ADDRESS_BYTES
        {
            return Err(ConfigError::new(
                "store.sqlite.path",
                quoted(&self.path),
                format!(
                    "a file path, not empty, without control characters (NUL, newline...), at most {MAX_STORE_ADDRESS_BYTES} bytes"
                ),
            ));
        }
        check_interval("store.sqlite.sync_interval_ms", self.sync_interval_ms)?;
        if self.busy_timeout_ms > 60_000 {
            return Err(ConfigError::new(
                "store.sqlite.busy_timeout_ms",
                self.busy_timeout_ms,
                "a wait from 0 to 60000 milliseconds",
            ));
        }
        Ok(())
    }
}

/// Whether `endpoint` is `http://` and a host with an optional port, nothing else but an
/// optional `/` at the end (the store appends its paths to it).
fn is_endpoint(endpoint: &str) -> bool {
    server_of(endpoint).is_some()
}

/// The server a valid endpoint names, as `(host, port)`: a name in lower case (RFC 3986: a
/// host is read without regard to case), an IPv6 address in its one canonical form (`::1`
/// for `0:0:0:0:0:0:0:1`), the port as a number (`02379` is 2379; none is HTTP's 80). `None`
/// for anything [`is_endpoint`] refuses.
fn server_of(endpoint: &str) -> Option<(String, u16)> {
    let authority = endpoint_base(endpoint.strip_prefix("http://")?);
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (ip, rest) = bracketed.split_once(']')?;
            let ip = ip.parse::<std::net::Ipv6Addr>().ok()?;
            (format!("[{ip}]"), rest)
        }
        None => {
            let end = authority.find(':').unwrap_or(authority.len());
            let (name, rest) = authority.split_at(end);
            let named = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
            (named.then(|| name.to_ascii_lowercase())?, rest)
        }
    };
    let port = match port.strip_prefix(':') {
        None if port.is_empty() => 80,
        None => return None,
        Some(digits) => {
            if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            digits.parse::<u16>().ok().filter(|&p| p != 0)?
        }
    };
    Some((host, port))
}

impl EtcdStoreConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::new(
                "store.etcd.endpoints",
                "[]",
                "at least one endpoint, e.g. \"http://127.0.0.1:2379\"",
            ));
        }
        if self.endpoints.len() > MAX_ETCD_ENDPOINTS {
            return Err(ConfigError::new(
                "store.etcd.endpoints",
                format!("{} endpoints", self.endpoints.len()),
                format!("at most {MAX_ETCD_ENDPOINTS} endpoints (each request tries them in turn)"),
            ));
        }
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            if !is_endpoint(endpoint) || endpoint.len() > MAX_STORE_ADDRESS_BYTES {
                return Err(ConfigError::new(
                    format!("store.etcd.endpoints[{i}]"),
                    quoted(endpoint),
                    format!(
                        "http:// and a host (a name, an IPv4 address or an [IPv6] one) with an optional port from 1 to 65535, nothing else (no user, path, query or fragment: the store adds its own path), e.g. \"http://127.0.0.1:2379\" (this build has no TLS: no https://), at most {MAX_STORE_ADDRESS_BYTES} bytes"
                    ),
                ));
            }
        }
        let prefix = &self.prefix;
        if !prefix.starts_with('/')
            || prefix.len() < 2
            || prefix.len() > MAX_STORE_ADDRESS_BYTES
            || prefix.ends_with('/')
            || prefix.chars().any(crate::config::is_unseen)
        {
            return Err(ConfigError::new(
                "store.etcd.prefix",
                quoted(prefix),
                format!(
                    "a key prefix starting with / and not ending with /, without whitespace, control, format or invisible characters, at most {MAX_STORE_ADDRESS_BYTES} bytes, e.g. \"/promotion-gates/checkout\""
                ),
            ));
        }
        // A gate's history keys are `<prefix>/history/<20 digits>` and its instances' keys
        // `<prefix>/contributions/<instance>`: a prefix inside either range would put this
        // gate's keys among another gate's history (which its trims delete) or instances
        // (which it would pool as its own).
        let in_history = prefix.match_indices("/history/").any(|(at, found)| {
            prefix[at + found.len()..].starts_with(|c: char| c.is_ascii_digit())
        });
        let in_contributions = prefix.split('/').any(|segment| segment == "contributions");
        if in_history || in_contributions {
            return Err(ConfigError::new(
                "store.etcd.prefix",
                quoted(prefix),
                "a prefix with no segment named contributions and no digit right after a /history/ segment: such keys are another gate's instances or history, under the prefix before it",
            ));
        }
        check_interval("store.etcd.sync_interval_ms", self.sync_interval_ms)
    }
}

fn check_interval(field: &str, ms: u64) -> Result<(), ConfigError> {
    if SYNC_RANGE_MS.contains(&ms) {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            ms,
            "an interval from 10 to 60000 milliseconds",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PromotionConfig;

    #[cfg(feature = "otel")]
    #[test]
    fn a_store_is_the_same_whatever_its_settings_but_not_another_place() {
        let sqlite = |path: &str, sync_interval_ms| {
            StoreConfig::Sqlite(SqliteStoreConfig {
                path: path.into(),
                sync_interval_ms,
                busy_timeout_ms: 2000,
                fleet_judging: true,
            })
        };
        let etcd = |endpoints: &[&str], prefix: &str, fleet_judging| {
            StoreConfig::Etcd(EtcdStoreConfig {
                endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
                prefix: prefix.into(),
                sync_interval_ms: 1000,
                fleet_judging,
            })
        };
        assert!(sqlite("/a/g.db", 250).is_same_store(&sqlite("/a/g.db", 60_000)));
        assert!(!sqlite("/a/g.db", 250).is_same_store(&sqlite("/b/g.db", 250)));
        let a = etcd(&["http://a:2379", "http://b:2379"], "/pg/checkout", true);
        assert!(a.is_same_store(&etcd(&["http://b:2379"], "/pg/checkout", false)));
        assert!(!a.is_same_store(&etcd(&["http://c:2379"], "/pg/checkout", true)));
        assert!(!a.is_same_store(&etcd(&["http://a:2379"], "/pg/payments", true)));
        assert!(!a.is_same_store(&sqlite("/pg/checkout", 250)));
        // One endpoint however it is spelled: the etcd store takes off a `/` at its end, and a
        // host name is read without regard to case.
        for spelling in [
            "http://a:2379/",
            "http://A:2379",
            "http://A:2379/",
            "http://a:02379",
        ] {
            let b = etcd(&[spelling], "/pg/checkout", true);
            assert!(a.is_same_store(&b), "{spelling}");
            assert!(b.is_same_store(&a), "{spelling}");
        }
        assert!(!a.is_same_store(&etcd(&["http://a:2380/"], "/pg/checkout", true)));
        // An IPv6 address however it is written; HTTP's port left out.
        let v6 = etcd(&["http://[::1]:2379"], "/pg/checkout", true);
        assert!(v6.is_same_store(&etcd(
            &["http://[0:0:0:0:0:0:0:1]:2379/"],
            "/pg/checkout",
            true
        )));
        assert!(!v6.is_same_store(&etcd(&["http://[::2]:2379"], "/pg/checkout", true)));
        let web = etcd(&["http://e"], "/pg/checkout", true);
        assert!(web.is_same_store(&etcd(&["http://e:80/"], "/pg/checkout", true)));
        assert!(!web.is_same_store(&etcd(&["http://e:8080"], "/pg/checkout", true)));
    }

    /// Every spelling of one SQLite file names one store: relative or absolute, through `.`
    /// and `..`, or a symbolic link; another file in the same directory does not.
    #[cfg(all(feature = "otel", unix))]
    #[test]
    fn every_spelling_of_one_sqlite_file_is_one_store() {
        let dir = crate::store::scratch::Scratch::new("same-store-spelled");
        let sqlite = |path: &str| {
            StoreConfig::Sqlite(SqliteStoreConfig {
                path: path.into(),
                sync_interval_ms: 250,
                busy_timeout_ms: 2000,
                fleet_judging: true,
            })
        };
        let file = dir.file("gate.db");
        std::fs::write(&file, b"").unwrap();
        std::fs::create_dir(dir.file("sub")).unwrap();
        let link = dir.file("link.db");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let here = std::env::current_dir().unwrap();
        let relative = pathdiff(std::path::Path::new(&file), &here);
        for spelling in [
            dir.file("./gate.db"),
            dir.file("sub/../gate.db"),
            link,
            relative,
        ] {
            assert!(
                sqlite(&file).is_same_store(&sqlite(&spelling)),
                "{spelling}"
            );
            assert!(
                sqlite(&spelling).is_same_store(&sqlite(&file)),
                "{spelling}"
            );
        }
        std::fs::write(dir.file("other.db"), b"").unwrap();
        assert!(!sqlite(&file).is_same_store(&sqlite(&dir.file("other.db"))));
        assert!(!sqlite(&file).is_same_store(&sqlite(&dir.file("missing.db"))));
    }

    /// `path` relative to the directory `from` (both absolute): `..` up to their common part.
    #[cfg(all(feature = "otel", unix))]
    fn pathdiff(path: &std::path::Path, from: &std::path::Path) -> String {
        let (path, from) = (
            std::fs::canonicalize(path).unwrap(),
            std::fs::canonicalize(from).unwrap(),
        );
        let common = path
            .components()
            .zip(from.components())
            .take_while(|(a, b)| a == b)
            .count();
        let mut relative = std::path::PathBuf::new();
        for _ in from.components().skip(common) {
            relative.push("..");
        }
        relative.extend(path.components().skip(common));
        relative.to_str().unwrap().to_string()
    }

    fn field_of(json: &str) -> (String, String) {
        let store: StoreConfig = serde_json::from_str(json).unwrap();
        let err = store.validate().unwrap_err();
        (err.field().to_string(), err.value().to_string())
    }

    #[test]
    fn the_issue_s_documents_are_read_as_written() {
        let sqlite = PromotionConfig::from_json(
            r#"{"store": {"sqlite": {"path": "/var/lib/promotion-gates/checkout.db"}}}"#,
        )
        .unwrap();
        assert_eq!(
            sqlite.store,
            Some(StoreConfig::Sqlite(SqliteStoreConfig {
                path: "/var/lib/promotion-gates/checkout.db".into(),
                sync_interval_ms: 250,
                busy_timeout_ms: 2000,
                fleet_judging: true,
            }))
        );
        let etcd = PromotionConfig::from_json(
            r#"{"store": {"etcd": {"endpoints": ["http://127.0.0.1:2379"], "prefix": "/promotion-gates/checkout"}}}"#,
        )
        .unwrap();
        assert_eq!(
            etcd.store,
            Some(StoreConfig::Etcd(EtcdStoreConfig {
                endpoints: vec!["http://127.0.0.1:2379".into()],
                prefix: "/promotion-gates/checkout".into(),
                sync_interval_ms: 1000,
                fleet_judging: true,
            }))
        );
        assert_eq!(PromotionConfig::from_json("{}").unwrap().store, None);
    }

    #[test]
    fn an_endpoint_is_a_host_and_a_port_and_nothing_else() {
        for good in [
            "http://127.0.0.1:2379",
            "http://127.0.0.1:2379/",
            "http://etcd-0.etcd.svc:2379",
            "http://etcd_1",
            "http://[::1]:2379",
            "http://[fe80::1]",
            "http://a:65535",
        ] {
            assert!(is_endpoint(good), "{good}");
        }
        for bad in [
            "http://",
            "http:///",
            "http://a:",
            "http://a:0",
            "http://a:65536",
            "http://a:99999",
            "http://a:abc",
            "http://a:+1",
            "http://[::1",
            "http://[::1]x",
            "http://[nonsense]:1",
            "http://a:2379/p",
            "http://a:2379?x",
            "http://a:2379#y",
            "http://user:pass@a:2379",
            "http://a b",
            "http://a:2379//",
            "https://a:2379",
            "ftp://a",
        ] {
            assert!(!is_endpoint(bad), "{bad}");
        }
    }

    #[test]
    fn each_bad_field_is_named_with_its_value() {
        let cases = [
            (r#"{"sqlite": {"path": ""}}"#, "store.sqlite.path", "\"\""),
            (
                r#"{"sqlite": {"path": "a.db", "sync_interval_ms": 5}}"#,
                "store.sqlite.sync_interval_ms",
                "5",
            ),
            (
                r#"{"sqlite": {"path": "a.db", "busy_timeout_ms": 60001}}"#,
                "store.sqlite.busy_timeout_ms",
                "60001",
            ),
            (
                r#"{"etcd": {"endpoints": [], "prefix": "/p"}}"#,
                "store.etcd.endpoints",
                "[]",
            ),
            (
                r#"{"etcd": {"endpoints": ["http://a:1", "ftp://b"], "prefix": "/p"}}"#,
                "store.etcd.endpoints[1]",
                "\"ftp://b\"",
            ),
            (
                r#"{"etcd": {"endpoints": ["http://"], "prefix": "/p"}}"#,
                "store.etcd.endpoints[0]",
                "\"http://\"",
            ),
            (
                r#"{"etcd": {"endpoints": ["http://a:1", "https://b:2379"], "prefix": "/p"}}"#,
                "store.etcd.endpoints[1]",
                "\"https://b:2379\"",
            ),
            (
                r#"{"sqlite": {"path": "/tmp/b\n2026/12/03 [emerg] FAKE.db"}}"#,
                "store.sqlite.path",
                r#""/tmp/b\n2026/12/03 [emerg] FAKE.db""#,
            ),
            (
                r#"{"sqlite": {"path": "/tmp/\u001b[31mred.db"}}"#,
                "store.sqlite.path",
                r#""/tmp/\u{1b}[31mred.db""#,
            ),
            (
                r#"{"etcd": {"endpoints": ["http://a\u001b[2J:1"], "prefix": "/p"}}"#,
                "store.etcd.endpoints[0]",
                r#""http://a\u{1b}[2J:1""#,
            ),
            (
                r#"{"etcd": {"endpoints": ["http://a:99999"], "prefix": "/p"}}"#,
                "store.etcd.endpoints[0]",
                r#""http://a:99999""#,
            ),
            (
                r#"{"etcd": {"endpoints": ["http://a:1"], "prefix": "p"}}"#,
                "store.etcd.prefix",
                "\"p\"",
            ),
            (
                r#"{"etcd": {"endpoints": ["http://a:1"], "prefix": "/p/"}}"#,
                "store.etcd.prefix",
                "\"/p/\"",
            ),
            (
                r#"{"etcd": {"endpoints": ["http://a:1"], "prefix": "/p\u202eq"}}"#,
                "store.etcd.prefix",
                r#""/p\u{202e}q""#,
            ),
            (
                r#"{"etcd": {"endpoints": ["http://a:1"], "prefix": "/p/history/0001/q"}}"#,
                "store.etcd.prefix",
                "\"/p/history/0001/q\"",
            ),
            (
                r#"{"etcd": {"endpoints": ["http://a:1"], "prefix": "/p/contributions/q"}}"#,
                "store.etcd.prefix",
                "\"/p/contributions/q\"",
            ),
            (
                r#"{"etcd": {"endpoints": ["http://a:1"], "prefix": "/p/contributions"}}"#,
                "store.etcd.prefix",
                "\"/p/contributions\"",
            ),
            (
                r#"{"etcd": {"endpoints": ["http://a:1"], "prefix": "/p", "sync_interval_ms": 60001}}"#,
                "store.etcd.sync_interval_ms",
                "60001",
            ),
        ];
        for (json, field, value) in cases {
            assert_eq!(
                field_of(json),
                (field.to_string(), value.to_string()),
                "{json}"
            );
        }
        // A long value is shown shortened, as every refused value is.
        let long = "x".repeat(1_000_000);
        for json in [
            format!(r#"{{"sqlite": {{"path": "\u0000{long}"}}}}"#),
            format!(r#"{{"etcd": {{"endpoints": ["ftp://{long}"], "prefix": "/p"}}}}"#),
            format!(r#"{{"etcd": {{"endpoints": ["http://a:1"], "prefix": "{long}"}}}}"#),
        ] {
            let (field, value) = field_of(&json);
            assert!(value.len() < 300, "{field}: {} bytes", value.len());
            assert!(value.contains("bytes)"), "{field}: {value}");
        }
    }

    #[test]
    fn a_store_address_or_endpoint_list_beyond_its_limit_is_refused_naming_it() {
        let too_long = "x".repeat(MAX_STORE_ADDRESS_BYTES);
        let endpoint = |i: usize| format!("\"http://10.0.0.{i}:2379\"");
        let endpoints = |n: usize| (0..n).map(endpoint).collect::<Vec<_>>().join(",");
        let etcd = |endpoints: &str, prefix: &str| {
            format!(r#"{{"etcd": {{"endpoints": [{endpoints}], "prefix": "{prefix}"}}}}"#)
        };
        for (json, field) in [
            (
                format!(r#"{{"sqlite": {{"path": "/{too_long}"}}}}"#),
                "store.sqlite.path",
            ),
            (
                etcd(&format!("\"http://{too_long}\""), "/p"),
                "store.etcd.endpoints[0]",
            ),
            (
                etcd(&endpoint(1), &format!("/{too_long}")),
                "store.etcd.prefix",
            ),
            (
                etcd(&endpoints(MAX_ETCD_ENDPOINTS + 1), "/p"),
                "store.etcd.endpoints",
            ),
        ] {
            assert_eq!(field_of(&json).0, field, "{}", &json[..60]);
        }
        assert_eq!(
            field_of(&etcd(&endpoints(MAX_ETCD_ENDPOINTS + 1), "/p")).1,
            format!("{} endpoints", MAX_ETCD_ENDPOINTS + 1)
        );
        // At the limits: accepted.
        let at = |json: String| {
            serde_json::from_str::<StoreConfig>(&json)
                .unwrap()
                .validate()
        };
        let path = "x".repeat(MAX_STORE_ADDRESS_BYTES - 1);
        assert!(at(format!(r#"{{"sqlite": {{"path": "/{path}"}}}}"#)).is_ok());
        assert!(at(etcd(&endpoints(MAX_ETCD_ENDPOINTS), &format!("/{path}"))).is_ok());
    }

    #[test]
    fn a_config_with_a_bad_store_is_refused_naming_the_field() {
        let err = PromotionConfig::from_json(r#"{"store": {"sqlite": {"path": ""}}}"#).unwrap_err();
        assert!(err.to_string().contains("store.sqlite.path"), "{err}");
        let err =
            PromotionConfig::from_json(r#"{"store": {"sqlite": {"file": "a.db"}}}"#).unwrap_err();
        assert!(err.to_string().contains("file"), "{err}");
        let err = PromotionConfig::from_json(r#"{"store": {"redis": {}}}"#).unwrap_err();
        assert!(err.to_string().contains("redis"), "{err}");
    }
}
