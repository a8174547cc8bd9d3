//! The etcd store: a fleet's gates share one key prefix of an etcd cluster, through etcd's
//! JSON gateway (`/v3/kv/range`, `/v3/kv/txn`, `/v3/watch`) over plain HTTP. A write is one
//! transaction whose compare is the release key's revision as read with the guard checked; a
//! watch on the release key wakes the sync thread at once. The key layout is in
//! `docs/store.md`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::contribution::{MAX_INSTANCE_BYTES, MAX_LATENCY_BYTES, PublishedCohort, instance_of};
use super::{
    BadContribution, Commit, Contribution, EtcdStoreConfig, Guard, MAX_INSTANCES, NewestFirst,
    SCHEMA_VERSION, Since, StateStore, StoreError, StoreProblem, StoredEvent, StoredRelease,
    StoredState, StoredWrite,
};
use crate::config::stored_json;
use crate::decision::PerCohort;
use crate::error::{quoted, shortened, shown_bytes};
use crate::limits::{MAX_DOCUMENT_BYTES, MAX_NAME_BYTES, MAX_REASON_BYTES};

/// How long one request may take before the store counts as unavailable.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The requests that can come between two keep-alives of an instance's lease: after one, the
/// put of its contribution and a request of the read of the others' (one page of
/// [`CONTRIBUTION_PAGE`] keys); at the next tick, the read of the release, a page of its
/// history when another process wrote, and the keep-alive itself. A read of the others' that
/// takes longer (more pages, pages above their limit) keeps the lease alive itself
/// ([`EtcdStore::lease_kept_alive`]): none of its requests starts [`REQUEST_TIMEOUT`] or more
/// after a keep-alive.
pub(super) const TICK_REQUESTS: u32 = 5;

/// The requests of a host's write (one attempt), which holds the writer lock that the sync
/// tick takes before it publishes: the read of the release, the count of its history and a
/// page of its keys (the trim), the transaction, and the read back of a transaction whose
/// answer was lost.
pub(super) const WRITE_REQUESTS: u32 = 5;

/// How much longer than its sync intervals a live instance's keep-alives may come apart in a
/// slow tick: every request of a tick and of one host's write taking its whole
/// [`REQUEST_TIMEOUT`] (a member that hangs costs its timeout once, then the next one answers;
/// a slow one answers within it), 20 s. The lease of a contribution outlives it
/// ([`time_to_live`](super::time_to_live)). An allowance, not a bound: a tick behind several
/// host writes (it takes the writer lock up to three times), or one retrying conflicts, with
/// every request that slow, can take longer.
pub(super) const SLOWEST_TICK: Duration =
    REQUEST_TIMEOUT.saturating_mul(TICK_REQUESTS + WRITE_REQUESTS);

/// How long one watch request lives before it is made again (and the stop flag looked at).
const WATCH_SPAN: Duration = Duration::from_secs(1);

/// What etcd answers a request above its `--max-request-bytes` with: HTTP 400 `etcdserver:
/// request is too large`, or, above its gRPC server's receive limit (512 KiB more), HTTP 429
/// `grpc: received message larger than max (N vs. M)`.
const TOO_LARGE: [&str; 2] = ["request is too large", "received message larger than max"];

/// History events read per request: a page of the largest events is a few MiB.
const HISTORY_PAGE: usize = 256;

/// Contribution keys read per request: the instance's own key and [`MAX_INSTANCES`] others'.
const CONTRIBUTION_PAGE: usize = MAX_INSTANCES + 1;

/// The most requests one read of the contributions makes on pages whose answer was above
/// their limit ([`EtcdStore::contributions_page`]), beyond the pages themselves: a listing of
/// a page's keys, then the reads of its windows of keys ([`EtcdStore::windows`]). A window
/// takes about 229 KiB a key: one of 9 keys holds a value within etcd's default request limit
/// (1.5 MiB, 2 MiB as base64) beside small ones, so a page goes above its limit only with about
/// 29 such values, and a window holding some among small values is read whole, each refused
/// there. A value above every window holding it (a cluster whose `--max-request-bytes` was
/// raised) costs the listing and 17 windows at a page's first key, 18 at its last, 30 at most
/// (key 127, the last of the first window); a run of 32 values above a contribution's limit
/// costs about 50 requests, a page of nothing else 265 (key by key, 258). Once this many are
/// spent the read goes on through pages read whole and stops at the first key it cannot read:
/// the first of a window not read, or the first of the next page above its limit, after one
/// request for that page whole. The keys found so far are remembered, and the next tick's read
/// goes around them and on.
const JUNK_REQUESTS: usize = 64;

/// The most pages of contribution keys one read takes (4112 keys), a key found above one
/// contribution's limit at the read before counting as a page of its own (read keys only): the
/// newest contributions to the stage are looked for among that many at most, so that a tick's
/// requests and memory stay bounded however many keys the prefix holds.
const MAX_CONTRIBUTION_PAGES: usize = 16;

/// The epoch of every state an etcd store reads or writes
/// ([`Guard::epoch`](super::Guard::epoch)): the cluster's keys are one store, never another
/// file.
const EPOCH: u64 = 0;

/// Room for what a range answer writes around each key-value (revisions, version, lease,
/// names), and around all of them (the header).
const KV_OVERHEAD: usize = 256;

/// The largest history event this build writes, as JSON: a reason of [`MAX_REASON_BYTES`] and
/// a feature of [`MAX_NAME_BYTES`], each byte escaped at worst (`\u00XX`), and its other fields.
const MAX_EVENT_JSON: usize = 6 * (MAX_REASON_BYTES + MAX_NAME_BYTES) + 512;

/// The largest contribution this build writes, as JSON: two cohorts' latencies of at most
/// [`MAX_LATENCY_BYTES`] in base64, and their counts.
const MAX_CONTRIBUTION_JSON: usize = 2 * (base64_len(MAX_LATENCY_BYTES) + 256) + 64;

/// How many characters base64 writes for `bytes` bytes.
const fn base64_len(bytes: usize) -> usize {
    bytes.div_ceil(3) * 4
}

/// A gate's state under one etcd key prefix.
#[derive(Debug)]
pub(crate) struct EtcdStore {
    location: String,
    endpoints: Vec<String>,
    /// The endpoint that last answered, where every request (and the watch) starts: one that
    /// hangs costs its timeout once, not at every request.
    preferred: Arc<AtomicUsize>,
    prefix: String,
    /// The gate whose state the prefix holds: a release of another is refused.
    gate: String,
    agent: ureq::Agent,
    /// The newest revision a read of this store saw: the watch starts after it.
    read_revision: AtomicU64,
    /// The lease this instance's contribution key is attached to, once granted: kept alive at
    /// each publication, so the key expires with the instance.
    lease: Mutex<Option<String>>,
    /// The contribution last put (its key and value, as sent) and the lease it was put with:
    /// publishing it again only keeps the lease alive. Every put is a new revision of etcd's
    /// history, so an instance that records nothing writes nothing.
    last_put: Mutex<Option<(String, String, String)>>,
    /// The release last read and checked (its `mod_revision` and value), and its version and
    /// stage: a sync tick that finds the same value at the same revision knows them without
    /// parsing the release again (a config may be a megabyte of JSON). The value is compared
    /// too: a cluster that came back with lower revisions may hold another release at the
    /// same revision.
    last_read: Mutex<Option<(Found, (u64, u64))>>,
    /// The release last refused (its `mod_revision` and value) and why: a sync tick that finds
    /// it again refuses it without parsing it again (a newer build's config of a megabyte,
    /// refused for a field this build does not know, stays until every process is upgraded).
    /// The value is compared too, as for `last_read`.
    last_refused: Mutex<Option<(Found, StoreError)>>,
    /// Whether the last read of the contributions stopped at [`MAX_CONTRIBUTION_PAGES`] with
    /// keys left: logged when it starts, not at every tick.
    capped: AtomicBool,
    /// The contribution keys the last read of the contributions found with a value above one
    /// contribution's limit, and when each was written ([`Written`]): the next read goes
    /// around them (a page holding one is read again keys only, then in windows, at most
    /// [`JUNK_REQUESTS`] a read), listing them keys only and refusing each again unread while it
    /// was written then. At most [`MAX_CONTRIBUTION_PAGES`] pages of keys: those one read
    /// lists, and those found before beyond where a read stopped on its junk requests.
    oversized: Mutex<BTreeMap<Vec<u8>, Written>>,
    /// When this instance's lease was last kept alive (or granted), as its answer came: the
    /// read of the contributions keeps it alive again once [`REQUEST_TIMEOUT`] has passed.
    kept_alive: Mutex<Option<Instant>>,
    /// How many times a release value was parsed: tests count them.
    #[cfg(test)]
    parsed: AtomicUsize,
}

/// What an endpoint answered a request: its JSON, or an answer above the request's limit (not
/// read further) and the endpoint's URL.
enum Answer {
    Read(Value),
    AboveLimit(String),
}

/// A contribution key read: its `mod_revision`, its key, and the contribution or its refusal.
type Listed = (u64, Vec<u8>, Result<Contribution, BadContribution>);

/// A key-value of a contributions' page, and whether its value was above `Some(limit)` bytes
/// (then only its key was read).
type PageEntry = (Value, Option<usize>);

/// One page of contribution keys as read ([`EtcdStore::contributions_page`]).
struct Page {
    /// Its key-values: every key listed, but those a member did not answer when read one by
    /// one.
    entries: Vec<PageEntry>,
    /// How many keys it listed.
    listed: usize,
    /// The last key the page listed (base64, as etcd writes it), read or not: the next page
    /// starts after it.
    last: Option<Value>,
    /// The answer that listed the keys: its header, count and `more`.
    response: Value,
    /// The first key not read when the read's [`JUNK_REQUESTS`] were spent in this page: the
    /// read stops there.
    rest: Option<Vec<u8>>,
}

/// The keys of a page above its limit, listed keys only ([`EtcdStore::contributions_page`]),
/// which its windows read.
struct Listing<'a> {
    /// The key-values listed (keys only).
    kvs: &'a [Value],
    /// Their keys, decoded.
    keys: &'a [Vec<u8>],
    /// The revision they were listed at, which every window is read at.
    revision: &'a str,
}

/// When a key was written, as a range's answer lists it: its `create_revision`,
/// `mod_revision` and `version`. A key written again has another (all three, so that a
/// cluster restored from a backup, whose revisions went back, is unlikely to give a new value
/// the same).
type Written = [String; 3];

/// A key's value and the revision that last changed it.
#[derive(Clone)]
struct Found {
    value: Vec<u8>,
    mod_revision: String,
}

/// Its revision and its value's length: a value may be a megabyte.
impl std::fmt::Debug for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Found")
            .field("mod_revision", &self.mod_revision)
            .field("value_bytes", &self.value.len())
            .finish()
    }
}

impl EtcdStore {
    /// Connects to the cluster and checks (or writes) the prefix's schema version, for the
    /// gate called `gate`.
    pub(crate) fn open(config: &EtcdStoreConfig, gate: &str) -> Result<Self, StoreError> {
        let store = Self::new(config, gate);
        store.check_schema()?;
        Ok(store)
    }

    /// The store `config` names, for the gate called `gate`, before any request is made.
    fn new(config: &EtcdStoreConfig, gate: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            location: format!("{} {}", config.endpoints.join(","), config.prefix),
            endpoints: config
                .endpoints
                .iter()
                .map(|endpoint| super::config::endpoint_base(endpoint).to_string())
                .collect(),
            preferred: Arc::new(AtomicUsize::new(0)),
            prefix: config.prefix.clone(),
            gate: gate.to_string(),
            agent,
            read_revision: AtomicU64::new(0),
            lease: Mutex::new(None),
            last_put: Mutex::new(None),
            last_read: Mutex::new(None),
            last_refused: Mutex::new(None),
            capped: AtomicBool::new(false),
            oversized: Mutex::new(BTreeMap::new()),
            kept_alive: Mutex::new(None),
            #[cfg(test)]
            parsed: AtomicUsize::new(0),
        }
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}/{suffix}", self.prefix)
    }

    fn history_key(&self, version: u64) -> String {
        self.key(&format!("history/{version:020}"))
    }

    /// The start of the history keys' range: the first key of 20 digits.
    fn history_start(&self) -> String {
        self.key("history/0")
    }

    /// The end of the history keys' range: `history/:` follows every `history/` key of digits
    /// (`:` is the byte after `9`), and no other key: a gate whose prefix is this one's
    /// `.../history` has keys such as `.../history/release`, which no range of this gate's
    /// history reaches (a range to `history0` deleted them at this gate's trims).
    fn history_end(&self) -> String {
        self.key("history/:")
    }

    fn error(&self, problem: StoreProblem, detail: impl std::fmt::Display) -> StoreError {
        StoreError::new(self.location.clone(), problem, detail)
    }

    /// The most an answer that holds one key of this prefix takes: the release, whose config
    /// was a document of at most [`MAX_DOCUMENT_BYTES`] (written back as JSON no longer than
    /// it, but for the defaults it fills in), in base64. Every call but the history's, the
    /// trim's and the contributions' reads reads at most one key.
    fn one_key_answer(&self) -> usize {
        let key = base64_len(self.key("release").len());
        base64_len(MAX_DOCUMENT_BYTES + 64 * 1024) + key + 2 * KV_OVERHEAD
    }

    /// The most an answer holding `keys` keys of the history takes (with their values unless
    /// `keys_only`).
    fn history_answer(&self, keys: usize, keys_only: bool) -> usize {
        let value = if keys_only {
            0
        } else {
            base64_len(MAX_EVENT_JSON)
        };
        let key = base64_len(self.history_key(0).len());
        keys.saturating_mul(key + value + KV_OVERHEAD)
            .saturating_add(KV_OVERHEAD)
    }

    /// The most an answer holding `keys` contributions takes (their keys: the prefix and an
    /// instance id, a host name and three numbers), or only their keys when `keys_only`.
    fn contributions_answer(&self, keys: usize, keys_only: bool) -> usize {
        let key = base64_len(self.contribution_key("").len() + MAX_INSTANCE_BYTES);
        let value = if keys_only {
            0
        } else {
            base64_len(MAX_CONTRIBUTION_JSON)
        };
        keys * (key + value + KV_OVERHEAD) + KV_OVERHEAD
    }

    /// POSTs `body` to `path` on the first endpoint that answers, starting with the one that
    /// answered last: one that cannot be reached (or does not answer within the timeout), or
    /// answers with a server error (5xx), passes the request to the next, which then comes
    /// first. The answer holds at most one key ([`one_key_answer`](Self::one_key_answer)).
    fn call(&self, path: &str, body: &Value) -> Result<Value, StoreError> {
        self.call_within(path, body, self.one_key_answer())
    }

    /// [`call`](Self::call) of a request whose answer takes at most `limit` bytes in a store
    /// this build writes: a longer one is refused as not ours, naming the limit, without asking
    /// another endpoint (they hold the same keys).
    fn call_within(&self, path: &str, body: &Value, limit: usize) -> Result<Value, StoreError> {
        self.call_noting(path, body, limit).0
    }

    /// [`call_within`](Self::call_within), also saying whether an endpoint failed before the
    /// answer (or the error): such an endpoint may have applied the request all the same (a
    /// timeout after etcd committed it, a member that answered 5xx with the proposal under
    /// way).
    fn call_noting(
        &self,
        path: &str,
        body: &Value,
        limit: usize,
    ) -> (Result<Value, StoreError>, bool) {
        let (answer, doubt) = self.exchange(path, body, limit);
        let answer = answer.and_then(|answer| match answer {
            Answer::Read(value) => Ok(value),
            Answer::AboveLimit(url) => Err(self.error(
                StoreProblem::NotOurs,
                format!(
                    "{url}: an answer above {limit} bytes, more than this request's answer takes in a store this build writes (keys or values under the prefix that no gate wrote?)"
                ),
            )),
        });
        (answer, doubt)
    }

    /// [`call_within`](Self::call_within), but an answer above `limit` is no error: `None`.
    fn call_bounded(
        &self,
        path: &str,
        body: &Value,
        limit: usize,
    ) -> Result<Option<Value>, StoreError> {
        match self.exchange(path, body, limit).0? {
            Answer::Read(value) => Ok(Some(value)),
            Answer::AboveLimit(_) => Ok(None),
        }
    }

    /// [`call_noting`](Self::call_noting), an answer above `limit` told apart (not read
    /// further, nor asked of another endpoint: they hold the same keys).
    fn exchange(
        &self,
        path: &str,
        body: &Value,
        limit: usize,
    ) -> (Result<Answer, StoreError>, bool) {
        // What each endpoint tried answered: the error names them all.
        let mut failures = Vec::new();
        let body = body.to_string();
        let first = self.preferred.load(Ordering::Relaxed);
        for index in (first..self.endpoints.len()).chain(0..first) {
            let url = format!("{}{path}", self.endpoints[index]);
            // Asked first from now on if it answers; left behind if not.
            self.preferred.store(index, Ordering::Relaxed);
            let mut response = match self.agent.post(&url).send(body.as_str()) {
                Ok(response) => response,
                Err(e) => {
                    failures.push(format!("{url}: {e}"));
                    continue;
                }
            };
            let status = response.status();
            let read = response
                .body_mut()
                .with_config()
                .limit(u64::try_from(limit).unwrap_or(u64::MAX))
                .read_to_string();
            let text = match read {
                Ok(text) => text,
                Err(ureq::Error::BodyExceedsLimit(_)) => {
                    return (Ok(Answer::AboveLimit(url)), !failures.is_empty());
                }
                Err(e) => {
                    failures.push(format!("{url}: {e}"));
                    continue;
                }
            };
            if status.is_server_error() {
                // This member cannot answer now (no leader, shutting down): another may.
                failures.push(format!("{url}: HTTP {status}: {}", shortened(&text)));
                continue;
            }
            let answer = if status.is_success() {
                serde_json::from_str(&text)
                    .map(Answer::Read)
                    .map_err(|e| self.error(StoreProblem::NotOurs, format!("{url}: not JSON: {e}")))
            } else if TOO_LARGE.iter().any(|refusal| text.contains(refusal)) {
                // Every member has the same limit (or should): asking another would not help,
                // nor would asking again.
                Err(self.error(
                    StoreProblem::TooLarge,
                    format!(
                        "{url}: a request of {} bytes refused (HTTP {status}: {}): above the cluster's --max-request-bytes (1.5 MiB unless raised)",
                        body.len(),
                        shortened(&text)
                    ),
                ))
            } else {
                Err(self.error(
                    StoreProblem::Unavailable,
                    format!("{url}: HTTP {status}: {}", shortened(&text)),
                ))
            };
            return (answer, !failures.is_empty());
        }
        let error = self.error(StoreProblem::Unavailable, failures.join("; "));
        (Err(error), true)
    }

    /// Reads one key, at `revision` if given; returns it and the response's revision.
    fn get(
        &self,
        key: &str,
        revision: Option<&str>,
    ) -> Result<(Option<Found>, String), StoreError> {
        let mut body = json!({ "key": BASE64.encode(key) });
        if let Some(revision) = revision {
            body["revision"] = json!(revision);
        }
        let response = self.call("/v3/kv/range", &body)?;
        let revision = text_of(&response["header"]["revision"]);
        if let Ok(read) = revision.parse::<u64>() {
            self.read_revision.fetch_max(read, Ordering::Relaxed);
        }
        let found = match response["kvs"].as_array().and_then(|kvs| kvs.first()) {
            Some(kv) => Some(Found {
                value: self.decode(&kv["value"])?,
                mod_revision: text_of(&kv["mod_revision"]),
            }),
            None => None,
        };
        Ok((found, revision))
    }

    fn decode(&self, value: &Value) -> Result<Vec<u8>, StoreError> {
        BASE64
            .decode(value.as_str().unwrap_or(""))
            .map_err(|e| self.error(StoreProblem::NotOurs, format!("a value not in base64: {e}")))
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let key = self.key("schema");
        for _ in 0..3 {
            let (found, _) = self.get(&key, None)?;
            if let Some(found) = found {
                let text = String::from_utf8_lossy(&found.value);
                if text.trim() == SCHEMA_VERSION.to_string() {
                    return Ok(());
                }
                return Err(self.error(
                    StoreProblem::NotOurs,
                    format!(
                        "{key} = {} (this build reads schema {SCHEMA_VERSION})",
                        quoted(&text)
                    ),
                ));
            }
            let created = self.call(
                "/v3/kv/txn",
                &json!({
                    "compare": [{"key": BASE64.encode(&key), "target": "VERSION", "result": "EQUAL", "version": "0"}],
                    "success": [{"request_put": {"key": BASE64.encode(&key), "value": BASE64.encode(SCHEMA_VERSION.to_string())}}],
                }),
            )?;
            if created["succeeded"].as_bool() == Some(true) {
                return Ok(());
            }
        }
        Err(self.error(StoreProblem::Conflict, "the schema key kept changing"))
    }

    /// The one delete a write needs to keep `history_bound` events: the range from the oldest
    /// history key up to the first one kept (one operation however many go: etcd limits the
    /// operations of a transaction, 128 by default), or none when nothing goes. The range ends
    /// before the write's own event, which the same transaction puts: etcd refuses a
    /// transaction that puts a key and deletes it too ("duplicate key given in txn request").
    ///
    /// The first key kept is looked for from the nearer end (the oldest key when fewer go than
    /// stay, the newest else), [`HISTORY_PAGE`] keys a request: no answer grows with the
    /// count the member gives (a bound lowered from 100 000 to 1, or a count of keys written by
    /// hand), and no more keys are read than the history keeps.
    fn history_trim(&self, write: &StoredWrite) -> Result<Option<Value>, StoreError> {
        // The keys the write keeps beside its own event: those below its version (the ones
        // from it on go, [`history_above`](Self::history_above)).
        let below = self.history_key(write.release.version);
        let counted = self.call(
            "/v3/kv/range",
            &json!({
                "key": BASE64.encode(self.history_start()),
                "range_end": BASE64.encode(&below),
                "count_only": true,
            }),
        )?;
        let stored = text_of(&counted["count"]).parse::<usize>().unwrap_or(0);
        // Saturating: the count is the server's word, and no answer may panic a write.
        let total = stored.saturating_add(usize::from(write.event.is_some()));
        let excess = total.saturating_sub(write.history_bound.max(1));
        if excess == 0 {
            return Ok(None);
        }
        // The stored keys below the write's version that stay.
        let kept = stored - excess;
        let first_kept = if kept == 0 {
            None
        } else {
            // The keys in byte order: the zero-padded versions, oldest first.
            let found = if excess <= kept {
                self.history_key_at(&below, excess, false)?
            } else {
                self.history_key_at(&below, kept - 1, true)?
            };
            match found {
                Some(key) => Some(key),
                // Fewer keys than the count said (another process trimmed meanwhile): all of
                // them stay.
                None => return Ok(None),
            }
        };
        Ok(Some(json!({"request_delete_range": {
            "key": BASE64.encode(self.history_start()),
            "range_end": BASE64.encode(first_kept.unwrap_or_else(|| below.into_bytes())),
        }})))
    }

    /// The history key `n` places (from 0) from the oldest (from the newest when `newest`) of
    /// those below `end`, read [`HISTORY_PAGE`] keys a request; `None` when there are no more
    /// than `n`.
    fn history_key_at(
        &self,
        end: &str,
        mut n: usize,
        newest: bool,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut start = self.history_start().into_bytes();
        let mut end = end.as_bytes().to_vec();
        loop {
            let page = n.saturating_add(1).min(HISTORY_PAGE);
            let mut range = json!({
                "key": BASE64.encode(&start),
                "range_end": BASE64.encode(&end),
                "keys_only": true,
                "limit": page.to_string(),
            });
            if newest {
                range["sort_order"] = json!("DESCEND");
                range["sort_target"] = json!("KEY");
            }
            let response =
                self.call_within("/v3/kv/range", &range, self.history_answer(page, true))?;
            let kvs = response["kvs"].as_array().map_or(&[][..], Vec::as_slice);
            if let Some(kv) = kvs.get(n) {
                return Ok(Some(self.decode(&kv["key"])?));
            }
            let Some(last) = kvs.last() else {
                return Ok(None);
            };
            if kvs.len() < page {
                return Ok(None);
            }
            n -= kvs.len();
            // The next page starts after the last key read (ends before it, newest first).
            let last = self.decode(&last["key"])?;
            if newest {
                end = last;
            } else {
                start = last;
                start.push(0);
            }
        }
    }

    /// The delete of the history keys from the write's version on: a later state's, left when
    /// the release was put back alone to an older version (a restored key, one put by hand),
    /// no history of the release (reads skip them). After the write's own event, which the
    /// same transaction puts (etcd refuses a transaction that puts a key and deletes it too).
    fn history_above(&self, write: &StoredWrite) -> Value {
        let mut start = self.history_key(write.release.version).into_bytes();
        if write.event.is_some() {
            start.push(0);
        }
        json!({"request_delete_range": {
            "key": BASE64.encode(start),
            "range_end": BASE64.encode(self.history_end()),
        }})
    }

    /// The deletes of the first release's write: history keys left without a release (one
    /// deleted by hand) are no history of it, and their versions would clash with its own.
    /// Around the write's own event, which the same transaction puts.
    fn history_cleared(&self, write: &StoredWrite) -> Vec<Value> {
        let start = self.history_start().into_bytes();
        let end = self.history_end().into_bytes();
        let ranges = match &write.event {
            Some(event) => {
                let own = self.history_key(event.version).into_bytes();
                let mut after = own.clone();
                after.push(0);
                vec![(start, own), (after, end)]
            }
            None => vec![(start, end)],
        };
        ranges
            .into_iter()
            .map(|(key, range_end)| {
                json!({"request_delete_range": {
                    "key": BASE64.encode(key),
                    "range_end": BASE64.encode(range_end),
                }})
            })
            .collect()
    }

    /// The contribution key of `instance`.
    fn contribution_key(&self, instance: &str) -> String {
        self.key(&format!("contributions/{instance}"))
    }

    /// One page of the contributions' `range`: its key-values, the last key it listed, and the
    /// answer it came in (its header, count and `more`). An answer above the page's limit
    /// (values that no gate wrote, each up to etcd's request limit) is read again keys only,
    /// then in windows of keys at the page's revision (`range`'s, or for a first page the
    /// revision the keys were listed at), each within its keys' limit
    /// ([`windows`](Self::windows)): a value above one contribution's limit is refused alone,
    /// the others read. Each request after the page's own takes one of `junk`; once none is
    /// left the page ends at the first key not read ([`Page::rest`]).
    fn contributions_page(&self, range: &Value, junk: &mut usize) -> Result<Page, StoreError> {
        let whole = self.contributions_answer(CONTRIBUTION_PAGE, false);
        if let Some(mut response) = self.read_contributions(range, whole)? {
            let kvs = match response["kvs"].take() {
                Value::Array(kvs) => kvs,
                _ => Vec::new(),
            };
            let (listed, last) = (kvs.len(), kvs.last().map(|kv| kv["key"].clone()));
            let entries = kvs.into_iter().map(|kv| (kv, None)).collect();
            return Ok(Page {
                entries,
                listed,
                last,
                response,
                rest: None,
            });
        }
        if *junk == 0 {
            let rest = Some(self.decode(&range["key"])?);
            return Ok(Page {
                entries: Vec::new(),
                listed: 0,
                last: None,
                response: Value::Null,
                rest,
            });
        }
        *junk -= 1;
        let (kvs, response) = self.contribution_keys(range)?;
        // The answer's header holds the cluster's current revision, not the one asked for: a
        // key listed at the page's revision may be gone since (its lease expired).
        let revision = match range.get("revision") {
            Some(asked) => text_of(asked),
            None => text_of(&response["header"]["revision"]),
        };
        let keys = kvs
            .iter()
            .map(|kv| self.decode(&kv["key"]))
            .collect::<Result<Vec<_>, _>>()?;
        let listing = Listing {
            kvs: &kvs,
            keys: &keys,
            revision: &revision,
        };
        let mut entries = Vec::new();
        let stop = self.windows(&listing, junk, &mut entries)?;
        let (listed, last, rest) = match stop {
            Some(at) => (at, None, Some(keys[at].clone())),
            None => (kvs.len(), kvs.last().map(|kv| kv["key"].clone()), None),
        };
        Ok(Page {
            entries,
            listed,
            last,
            response,
            rest,
        })
    }

    /// Reads the keys of `listing`, whose page's answer was above its limit, in windows of keys,
    /// in key order, each a range at the listing's revision within what that many
    /// contributions take: the first of half the keys, each next twice as many after one read
    /// whole, half as many at the same key after one above its limit; a single key above a
    /// contribution's limit is refused (its listed key-value, value unread) and the next
    /// window is one key (such keys come in runs). A key-value read within a window but above
    /// one contribution's limit (what it takes alone, as etcd answers it) is refused alike, and
    /// the next window is twice as many keys all the same (this one was read whole). A value
    /// above every window holding it, among [`CONTRIBUTION_PAGE`] keys, costs 17 windows at the
    /// first key, 18 at the last, 30 at most (key 127); one within etcd's default request
    /// limit, among small values, is read in the first window holding it. A run of 32 values
    /// above a contribution's limit costs about 50 windows. `None` once every key is read, or
    /// the first key (its index) left unread when `junk` ran out.
    fn windows(
        &self,
        listing: &Listing<'_>,
        junk: &mut usize,
        entries: &mut Vec<PageEntry>,
    ) -> Result<Option<usize>, StoreError> {
        let one = self.contributions_answer(1, false);
        let keys = listing.keys.len();
        let (mut at, mut width) = (0, (keys / 2).max(1));
        while at < keys {
            if *junk == 0 {
                return Ok(Some(at));
            }
            *junk -= 1;
            width = width.min(keys - at);
            let range = if width == 1 {
                json!({"key": listing.kvs[at]["key"], "revision": listing.revision})
            } else {
                let end = listing.keys.get(at + width).cloned().unwrap_or_else(|| {
                    let mut after = listing.keys[keys - 1].clone();
                    after.push(0);
                    after
                });
                json!({
                    "key": listing.kvs[at]["key"],
                    "range_end": BASE64.encode(end),
                    "revision": listing.revision,
                })
            };
            match self.read_contributions(&range, self.contributions_answer(width, false))? {
                Some(mut answer) => {
                    // No such key at the revision its name was listed at (a member that is
                    // not etcd): nothing to count.
                    if let Value::Array(kvs) = answer["kvs"].take() {
                        for mut kv in kvs {
                            if kv.to_string().len() + KV_OVERHEAD > one {
                                // Refused unread, as a value read alone above the limit is.
                                kv["value"] = Value::Null;
                                entries.push((kv, Some(one)));
                            } else {
                                entries.push((kv, None));
                            }
                        }
                    }
                    at += width;
                    width = width.saturating_mul(2);
                }
                None if width == 1 => {
                    entries.push((listing.kvs[at].clone(), Some(one)));
                    at += 1;
                }
                None => width /= 2,
            }
        }
        Ok(None)
    }

    /// [`call_bounded`](Self::call_bounded) of a range of the read of the contributions, after
    /// keeping the instance's lease alive when that is due
    /// ([`lease_kept_alive`](Self::lease_kept_alive)).
    fn read_contributions(&self, range: &Value, limit: usize) -> Result<Option<Value>, StoreError> {
        self.lease_kept_alive()?;
        self.call_bounded("/v3/kv/range", range, limit)
    }

    /// Keeps this instance's lease alive, if it has one and [`REQUEST_TIMEOUT`] has passed
    /// since it was last kept alive: called before each request of the read of the
    /// contributions, so that a read of many pages, or of pages above their limit, however
    /// slow, starts no request [`REQUEST_TIMEOUT`] or more after a keep-alive: what follows one
    /// is the put and requests started within that time, the two requests [`TICK_REQUESTS`]
    /// counts. A lease found expired is left to the next publication, which grants another and
    /// puts the contribution again.
    fn lease_kept_alive(&self) -> Result<(), StoreError> {
        let due = self
            .kept_alive
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() >= REQUEST_TIMEOUT);
        let lease = self.lease.lock().unwrap_or_else(PoisonError::into_inner);
        if let (true, Some(id)) = (due, lease.as_ref()) {
            let response = self.call("/v3/lease/keepalive", &json!({ "ID": id }))?;
            // An expired lease answers with no TTL (or 0).
            self.note_kept_alive(text_of(&response["result"]["TTL"]) != "0");
        }
        Ok(())
    }

    /// The keys of a page of contributions' `range` (a page's keys only) and the answer that
    /// listed them.
    fn contribution_keys(&self, range: &Value) -> Result<(Vec<Value>, Value), StoreError> {
        let mut keys_only = range.clone();
        keys_only["keys_only"] = json!(true);
        self.lease_kept_alive()?;
        let mut response = self.call_within(
            "/v3/kv/range",
            &keys_only,
            self.contributions_answer(CONTRIBUTION_PAGE, true),
        )?;
        let kvs = match response["kvs"].take() {
            Value::Array(kvs) => kvs,
            _ => Vec::new(),
        };
        Ok((kvs, response))
    }

    /// Where the read of the contributions goes on after a range whose `answer` listed `last`
    /// last (its key, base64): after it when the answer says there is `more`, else at the
    /// range's `end`.
    fn next_from(
        &self,
        last: Option<&Value>,
        answer: &Value,
        end: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        Ok(match last {
            Some(last) if answer["more"].as_bool() == Some(true) => {
                let mut after = self.decode(last)?;
                after.push(0);
                after
            }
            _ => end.to_vec(),
        })
    }

    /// The contribution `kv` holds (`above`: its value was above that many bytes, unread), with
    /// its `mod_revision` and key; `None` for `except`'s own, and for one of another stage than
    /// `stage` (an instance that has not moved yet: not ours to count).
    fn listed(
        &self,
        kv: &Value,
        above: Option<usize>,
        start: &str,
        stage: u64,
        except: &str,
    ) -> Result<Option<Listed>, StoreError> {
        let key = self.decode(&kv["key"])?;
        let raw = key.strip_prefix(start.as_bytes()).unwrap_or(&key);
        if raw == except.as_bytes() {
            return Ok(None);
        }
        let instance = String::from_utf8_lossy(raw).into_owned();
        let mod_revision = text_of(&kv["mod_revision"]).parse::<u64>().unwrap_or(0);
        let bad = |field: &str, problem: String| BadContribution::new(&instance, field, problem);
        let value = match above {
            Some(limit) => Err(bad(
                "value",
                format!(
                    "above {limit} bytes as etcd answers it: larger than any contribution a gate writes (put by another program? delete the key)"
                ),
            )),
            None => self
                .decode(&kv["value"])
                .map_err(|e| bad("value", e.to_string()))
                .and_then(|value| json_of(&instance, &value)),
        };
        // Another stage's (an instance that has not moved yet): not ours to count, nor to
        // refuse, whatever else it holds.
        if let Ok(value) = &value
            && value["stage"].as_u64().is_some_and(|found| found != stage)
        {
            return Ok(None);
        }
        let read = value.and_then(|value| {
            let instance = instance_of(raw, raw.len())?;
            leased(&instance, &kv["lease"])?;
            contribution_in(&instance, &value)
        });
        Ok(Some((mod_revision, key, read)))
    }

    /// A live lease of `ttl` for this instance's contribution: the one granted before, kept
    /// alive, or a new one when it expired (or none was granted yet).
    fn live_lease(&self, ttl: Duration) -> Result<String, StoreError> {
        let mut lease = self.lease.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = lease.as_ref() {
            let response = self.call("/v3/lease/keepalive", &json!({ "ID": id }))?;
            // An expired lease answers with no TTL (or 0).
            if text_of(&response["result"]["TTL"]) != "0" {
                self.note_kept_alive(true);
                return Ok(id.clone());
            }
        }
        let seconds = ttl.as_secs_f64().ceil().max(1.0) as u64;
        let granted = self.call("/v3/lease/grant", &json!({ "TTL": seconds.to_string() }))?;
        let id = text_of(&granted["ID"]);
        if id == "0" {
            return Err(self.error(
                StoreProblem::Unavailable,
                // The answer's JSON may be as long as an answer is let be: shown shortened.
                format!("no lease granted: {}", shortened(&granted.to_string())),
            ));
        }
        *lease = Some(id.clone());
        self.note_kept_alive(true);
        Ok(id)
    }

    /// Notes that the lease was kept alive (or granted) now, or that it expired (`alive`
    /// false): nothing to keep alive until the next publication grants another.
    fn note_kept_alive(&self, alive: bool) {
        *self
            .kept_alive
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = alive.then(Instant::now);
    }

    /// Whether `write` is stored, by its content: its event as the stored one of its version
    /// (the transaction that makes a version alone writes that key, and an event holds its
    /// reason and its time to the nanosecond), or, without an event, its release as the
    /// stored one (version, stage and config: another writer's equal release is the same
    /// state). Read after a transaction whose answer was lost.
    fn holds(&self, write: &StoredWrite) -> Result<bool, StoreError> {
        let Some(event) = &write.event else {
            let (found, _) = self.get(&self.key("release"), None)?;
            return match found {
                Some(found) => Ok(self.release(&found)? == write.release),
                None => Ok(false),
            };
        };
        let (found, _) = self.get(&self.history_key(event.version), None)?;
        Ok(found.is_some_and(|found| {
            stored_json::<StoredEvent>(&found.value, "history").is_ok_and(|stored| stored == *event)
        }))
    }

    /// The history events of `release` after version `after`, oldest first, as of `revision`
    /// (the release's read): the newest the release keeps at most (keys written by hand may be
    /// more), and no more than the gate's history keeps ([`NewestFirst`]). Read newest first,
    /// [`HISTORY_PAGE`] events a request, so that no answer grows with the history.
    fn history_after(
        &self,
        release: &StoredRelease,
        after: u64,
        revision: &str,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let not_ours = |e: String| self.error(StoreProblem::NotOurs, e);
        let start = BASE64.encode(self.history_key(after + 1));
        // Each page ends (excluded) at the oldest key of the one before; the first at the
        // release's version: keys above it are a later state's, left when the release was put
        // back alone to an older version (the next write deletes them).
        let mut end = self.history_key(release.version.saturating_add(1));
        let mut newest = NewestFirst::new(release.history_bound());
        loop {
            let page = newest.room().min(HISTORY_PAGE);
            if page == 0 {
                break;
            }
            let response = self.call_within(
                "/v3/kv/range",
                &json!({
                    "key": start,
                    "range_end": BASE64.encode(&end),
                    "revision": revision,
                    "limit": page.to_string(),
                    "sort_order": "DESCEND",
                    "sort_target": "KEY",
                }),
                self.history_answer(page, false),
            )?;
            let kvs = response["kvs"].as_array().map_or(&[][..], Vec::as_slice);
            for kv in kvs {
                let raw_key = self.decode(&kv["key"])?;
                let key = String::from_utf8_lossy(&raw_key).into_owned();
                // Any key in the range, written by hand or by another program: shown as every
                // value is (escaped, cut at MAX_SHOWN_VALUE_BYTES), not whole.
                let shown = shown_bytes(&raw_key);
                let value = self.decode(&kv["value"])?;
                let event: StoredEvent = stored_json(&value, "history")
                    .map_err(|e| not_ours(format!("{shown}: not a history event: {e}")))?;
                // The key names the version of the write that recorded it, as the event does.
                if key != self.history_key(event.version) {
                    return Err(not_ours(format!(
                        "{shown}: holds history.version = {}",
                        event.version
                    )));
                }
                if !newest.take(event).map_err(not_ours)? {
                    return Ok(newest.oldest_first());
                }
                end = key;
            }
            if kvs.len() < page {
                break;
            }
        }
        Ok(newest.oldest_first())
    }

    /// `error`, when the cluster refused a request as too large, told as the write of a
    /// release of `bytes` bytes (its JSON) that the cluster cannot take.
    fn too_large(&self, error: StoreError, bytes: usize) -> StoreError {
        if error.problem() != StoreProblem::TooLarge {
            return error;
        }
        self.error(
            StoreProblem::TooLarge,
            format!(
                "{}: a release of {bytes} bytes (its config and counts as JSON, {} in base64) is more than the cluster takes; raise etcd's --max-request-bytes above it (docs/store.md, etcd) or make the config smaller: {}",
                self.key("release"),
                base64_len(bytes),
                error.detail()
            ),
        )
    }

    /// The stored release, read and checked ([`StoredRelease::checked`]): another process, or
    /// a hand edit, may have written anything there. The release last refused is refused
    /// again without being parsed (`last_refused`).
    fn release(&self, found: &Found) -> Result<StoredRelease, StoreError> {
        let mut refused = self
            .last_refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, error)) = refused.as_ref().filter(|(last, _)| {
            last.mod_revision == found.mod_revision && last.value == found.value
        }) {
            return Err(error.clone());
        }
        let read = self.parsed_release(found);
        *refused = read
            .as_ref()
            .err()
            .map(|error| (found.clone(), error.clone()));
        read
    }

    /// [`release`](Self::release), parsed.
    fn parsed_release(&self, found: &Found) -> Result<StoredRelease, StoreError> {
        #[cfg(test)]
        self.parsed.fetch_add(1, Ordering::Relaxed);
        let not_ours = |e: String| {
            self.error(
                StoreProblem::NotOurs,
                format!("{}: {e}", self.key("release")),
            )
        };
        stored_json::<StoredRelease>(&found.value, "release")
            .map_err(not_ours)?
            .checked(&self.gate)
            .map_err(not_ours)
    }
}

impl StateStore for EtcdStore {
    fn location(&self) -> &str {
        &self.location
    }

    fn changes_since(&self, known: Guard) -> Result<Since, StoreError> {
        let (found, revision) = self.get(&self.key("release"), None)?;
        let last_read = || {
            self.last_read
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        let Some(found) = found else {
            *last_read() = None;
            return Ok(Since::unread(None, known));
        };
        let same = last_read()
            .as_ref()
            .filter(|(last, _)| {
                last.mod_revision == found.mod_revision && last.value == found.value
            })
            .map(|(_, numbers)| *numbers);
        let (stored, release) = match same {
            Some(numbers) => (numbers, None),
            None => {
                // A release refused leaves the last one read, whose value differs from it.
                let release = self.release(&found)?;
                let numbers = (release.version, release.stage);
                *last_read() = Some((found.clone(), numbers));
                (numbers, Some(release))
            }
        };
        let Some(after) = Since::read_after(Some(stored), known) else {
            return Ok(Since::unread(Some(stored), known));
        };
        let release = match release {
            Some(release) => release,
            None => self.release(&found)?,
        };
        let history = self.history_after(&release, after, &revision)?;
        let not_ours = |e: String| self.error(StoreProblem::NotOurs, e);
        StoredState { release, history }
            .checked()
            .map(|state| Since::of(state, after, known))
            .map_err(not_ours)
    }

    fn commit(&self, write: &StoredWrite) -> Result<Commit, StoreError> {
        write
            .numbers_checked()
            .map_err(|e| self.error(StoreProblem::NotOurs, e))?;
        let release_key = self.key("release");
        for _ in 0..5 {
            let (found, _) = self.get(&release_key, None)?;
            let (stored_version, stored_stage) = match &found {
                Some(found) => {
                    let release = self.release(found)?;
                    (release.version, release.stage)
                }
                None => (0, 0),
            };
            // The version and the stage: a store replaced by a copy (a restored snapshot, a
            // value put by hand) may hold the version the write was decided on at another
            // stage.
            if stored_version != write.guard.version
                || (stored_version != 0 && stored_stage != write.guard.stage)
            {
                return Ok(Commit::Conflict {
                    stored_version,
                    another_file: false,
                });
            }
            // The guard holds for the release as read: write only if it is still that one.
            let compare = match &found {
                Some(found) => {
                    json!({"key": BASE64.encode(&release_key), "target": "MOD", "result": "EQUAL", "mod_revision": found.mod_revision})
                }
                None => {
                    json!({"key": BASE64.encode(&release_key), "target": "VERSION", "result": "EQUAL", "version": "0"})
                }
            };
            let release = serde_json::to_vec(&write.release)
                .map_err(|e| self.error(StoreProblem::Unavailable, e))?;
            let mut success = vec![put(&release_key, &release)];
            if let Some(event) = &write.event {
                let value = serde_json::to_vec(event)
                    .map_err(|e| self.error(StoreProblem::Unavailable, e))?;
                success.push(put(&self.history_key(event.version), &value));
            }
            if found.is_some() {
                success.extend(self.history_trim(write)?);
                success.push(self.history_above(write));
            } else {
                success.extend(self.history_cleared(write));
            }
            let (answer, doubt) = self.call_noting(
                "/v3/kv/txn",
                &json!({"compare": [compare], "success": success}),
                self.one_key_answer(),
            );
            let answer = answer.map_err(|e| self.too_large(e, release.len()));
            match answer {
                Ok(response) if response["succeeded"].as_bool() == Some(true) => {
                    return Ok(Commit::Written { epoch: EPOCH });
                }
                // An endpoint tried first may have applied it, so that the compare failed on
                // this very write. If its compare failed on another writer's, this one can no
                // longer apply: the compare names the revision that writer changed.
                Ok(_) if doubt && self.holds(write)? => {
                    return Ok(Commit::Written { epoch: EPOCH });
                }
                // Another writer committed between the read and the transaction: look again.
                Ok(_) => {}
                // No endpoint answered (or the last refused it after others failed): stored if
                // it is there now, else unknown (a proposal may still commit), which the
                // caller treats as a store it cannot reach.
                Err(error) if doubt => {
                    return match self.holds(write) {
                        Ok(true) => Ok(Commit::Written { epoch: EPOCH }),
                        _ => Err(error),
                    };
                }
                Err(error) => return Err(error),
            }
        }
        Err(self.error(
            StoreProblem::Conflict,
            "the release key kept changing under this write",
        ))
    }

    /// `known`'s epoch is [`EPOCH`]: the cluster's keys are one store, whose stage numbers no
    /// other file's replace.
    fn publish(
        &self,
        contribution: &Contribution,
        _known: Guard,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let cohort = |c: &PublishedCohort| {
            json!({
                "requests": c.requests,
                "errors": c.errors,
                "compliant": c.compliant,
                "latency": BASE64.encode(&c.latency),
            })
        };
        let value = json!({
            "stage": contribution.stage,
            "canary": cohort(&contribution.cohorts.canary),
            "stable": cohort(&contribution.cohorts.stable),
        });
        let key = BASE64.encode(self.contribution_key(&contribution.instance));
        let value = BASE64.encode(value.to_string());
        for _ in 0..2 {
            let lease = self.live_lease(ttl)?;
            let mut last_put = self.last_put.lock().unwrap_or_else(PoisonError::into_inner);
            let put = (key.clone(), value.clone(), lease);
            if last_put.as_ref() == Some(&put) {
                // Stored already, and the keep-alive just renewed the lease that holds it.
                return Ok(());
            }
            let (key, value, lease) = &put;
            let answer = self.call(
                "/v3/kv/put",
                &json!({ "key": key, "value": value, "lease": lease }),
            );
            match answer {
                Ok(_) => {
                    *last_put = Some(put);
                    return Ok(());
                }
                // The lease expired between the keep-alive and the put: grant another.
                Err(e) if e.to_string().contains("lease not found") => {
                    *self.lease.lock().unwrap_or_else(PoisonError::into_inner) = None;
                }
                Err(e) => return Err(e),
            }
        }
        Err(self.error(
            StoreProblem::Unavailable,
            "the contribution's lease kept expiring",
        ))
    }

    /// `known`'s epoch is [`EPOCH`], as for [`publish`](StateStore::publish).
    fn contributions(
        &self,
        known: Guard,
        except: &str,
        _ttl: Duration,
    ) -> Result<Vec<Result<Contribution, BadContribution>>, StoreError> {
        let stage = known.stage;
        // Expiry is the lease's: every key read with one is live, and one without is refused.
        // The keys are read in key order, a page a request, all at the first page's revision,
        // and the newest (by `mod_revision`) of the stage's kept: other stages' keys, however
        // many and however new, hide none of them. A key found oversized at the read before
        // ends the page before it (`seen_oversized`).
        let start = self.key("contributions/");
        let end = self.key("contributions0").into_bytes();
        let mut seen_oversized = self
            .oversized
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut oversized = BTreeMap::new();
        let one = self.contributions_answer(1, false);
        let mut from = start.clone().into_bytes();
        let mut revision = None;
        let mut listed = 0;
        let mut newest: Vec<Listed> = Vec::new();
        // The requests left for pages above their limit; once spent, the read stops where it
        // is (`stopped`).
        let mut junk = JUNK_REQUESTS;
        let mut stopped = false;
        for _ in 0..MAX_CONTRIBUTION_PAGES {
            if stopped || from >= end {
                break;
            }
            let page_end = seen_oversized
                .range(from.clone()..)
                .next()
                .map_or(&end, |(key, _)| key);
            let mut entries = Vec::new();
            if from < *page_end {
                let range = page_range(&from, page_end, revision.as_deref());
                let page = self.contributions_page(&range, &mut junk)?;
                if !page.response.is_null() {
                    revision.get_or_insert_with(|| text_of(&page.response["header"]["revision"]));
                }
                listed += page.listed;
                from = match page.rest {
                    Some(rest) => {
                        stopped = true;
                        rest
                    }
                    None => self.next_from(page.last.as_ref(), &page.response, page_end)?,
                };
                entries = page.entries;
            } else {
                // Keys found oversized before, from here: the keys that follow, listed (keys
                // only), are refused again unread while each is one of them, not written since.
                // The first that is not (new, or written again) starts the next page.
                let range = page_range(&from, &end, revision.as_deref());
                let (kvs, answer) = self.contribution_keys(&range)?;
                revision.get_or_insert_with(|| text_of(&answer["header"]["revision"]));
                from = self.next_from(kvs.last().map(|kv| &kv["key"]), &answer, &end)?;
                for kv in kvs {
                    let key = self.decode(&kv["key"])?;
                    if seen_oversized.get(&key) != Some(&written(&kv)) {
                        seen_oversized.remove(&key);
                        from = key;
                        break;
                    }
                    listed += 1;
                    entries.push((kv, Some(one)));
                }
            }
            for (kv, above) in &entries {
                if above.is_some() {
                    oversized.insert(self.decode(&kv["key"])?, written(kv));
                }
                if let Some(listed) = self.listed(kv, *above, &start, stage, except)? {
                    newest.push(listed);
                }
            }
            newest.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            newest.truncate(MAX_INSTANCES);
        }
        if stopped {
            // The keys found before that this read did not reach are gone around again at the
            // next, which goes on from where this one stopped.
            let room = MAX_CONTRIBUTION_PAGES * CONTRIBUTION_PAGE;
            for (key, when) in seen_oversized.range(from.clone()..) {
                if oversized.len() >= room {
                    break;
                }
                oversized.entry(key.clone()).or_insert_with(|| when.clone());
            }
        }
        *self
            .oversized
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = oversized;
        if from >= end {
            self.capped.store(false, Ordering::Relaxed);
        } else if !self.capped.swap(true, Ordering::Relaxed) {
            let keys = self
                .lease_kept_alive()
                .and_then(|()| {
                    self.call_within(
                        "/v3/kv/range",
                        &json!({
                            "key": BASE64.encode(&start),
                            "range_end": BASE64.encode(&end),
                            "revision": revision,
                            "count_only": true,
                        }),
                        self.contributions_answer(1, true),
                    )
                })
                // The count is only told: a member that does not answer it fails no read.
                .map_or_else(|_| "?".to_string(), |answer| text_of(&answer["count"]));
            tracing::warn!(
                store = %self.location,
                keys,
                "promotion.store reads the first {listed} of {keys} contribution keys under {start} (logged once while it lasts): the newest {MAX_INSTANCES} contributions to the stage among them count, those after them in key order are not read (more instances than a tick reads, or keys no gate wrote, whose values above a contribution's limit a read looks for with {JUNK_REQUESTS} requests at most: delete those)"
            );
        }
        Ok(newest.into_iter().map(|(_, _, read)| read).collect())
    }

    fn watch(&self, wake: Box<dyn Fn() + Send>, stop: Arc<AtomicBool>) -> Option<JoinHandle<()>> {
        let agent = self.agent.clone();
        let endpoints = self.endpoints.clone();
        let preferred = Arc::clone(&self.preferred);
        let key = BASE64.encode(self.key("release"));
        // A watch answer's line is read up to what the release key's range answer holds (one
        // event). More (several large events batched in one message, or a member that is not
        // etcd) is not read: the gate reads the store instead.
        let line_limit = self.one_key_answer();
        // The first watch starts after the state the gate read when it opened; each next one
        // after the last event received, so nothing written between two watches is missed.
        // Saturating, as below: a revision is the server's word (etcd's are below 2^63).
        let mut from = self.read_revision.load(Ordering::Relaxed).saturating_add(1);
        let spawned = std::thread::Builder::new()
            .name("pgate-watch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // The endpoint the requests use; one that does not answer is passed over
                    // for the next, for the requests too.
                    let index = preferred.load(Ordering::Relaxed) % endpoints.len();
                    let endpoint = &endpoints[index];
                    let mut create = json!({"key": key});
                    if from > 1 {
                        create["start_revision"] = json!(from.to_string());
                    }
                    let started = Instant::now();
                    let response = agent
                        .post(format!("{endpoint}/v3/watch"))
                        .config()
                        .timeout_global(Some(WATCH_SPAN))
                        .build()
                        .send(json!({ "create_request": create }).to_string());
                    // A status other than success is no error here (`http_status_as_error` is
                    // off for the other calls): a member that answers every request at once
                    // with one (no leader, shutting down, a proxy in front) is not asked again
                    // at once.
                    let Some(mut response) = response.ok().filter(|r| r.status().is_success())
                    else {
                        let next = (index + 1) % endpoints.len();
                        let _ = preferred.compare_exchange(
                            index,
                            next,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                        pause(&stop);
                        continue;
                    };
                    let mut reader = BufReader::new(response.body_mut().as_reader());
                    let mut line = Vec::new();
                    loop {
                        line.clear();
                        let mut limited = (&mut reader)
                            .take(u64::try_from(line_limit).unwrap_or(u64::MAX - 1) + 1);
                        if !limited.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                            break;
                        }
                        if line.len() > line_limit {
                            // Its events are not read: read the store now, and watch from after
                            // the revision the answer was sent at (its header, written first),
                            // or else from now on. A pause follows, as after a failed request,
                            // if it came early.
                            from = header_revision(&line).map_or(0, |r| r.saturating_add(1));
                            wake();
                            break;
                        }
                        let Ok(message) = serde_json::from_slice::<Value>(&line) else {
                            continue;
                        };
                        let result = &message["result"];
                        // `from` was compacted away, or is beyond the cluster's revision (a new
                        // cluster, a restored snapshot: etcd would hold back every event up to
                        // `from`, silently): read now, and watch from after the revision the
                        // answer was sent at (the read is at it or later, so a write made
                        // before the next watch starts is in one or the other), or from now on
                        // when the answer has no header.
                        let header = text_of(&result["header"]["revision"]).parse::<u64>().ok();
                        let behind =
                            header.is_some_and(|revision| revision.saturating_add(1) < from);
                        if result["canceled"].as_bool() == Some(true) || behind {
                            from = header.map_or(0, |revision| revision.saturating_add(1));
                            wake();
                            break;
                        }
                        let events = result["events"].as_array().map_or(&[][..], Vec::as_slice);
                        for event in events {
                            if let Ok(revision) =
                                text_of(&event["kv"]["mod_revision"]).parse::<u64>()
                            {
                                from = from.max(revision.saturating_add(1));
                            }
                        }
                        if !events.is_empty() {
                            wake();
                        }
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                    }
                    // A span ended (or the stream broke): the next watch resumes at `from`. One
                    // that ended early (an empty answer, a stream the member closed, a watch it
                    // canceled or found behind) waits as a failed request does, so that a member
                    // ending every stream at once (one that cancels every watch: "permission
                    // denied" once auth is on) is not asked again in a tight loop. The read a
                    // cancel wakes is not held back, and the next watch starts after the
                    // cancel's revision: a change meanwhile is heard of late, never missed.
                    if started.elapsed() < WATCH_SPAN / 2 {
                        pause(&stop);
                    }
                }
            });
        match spawned {
            Ok(thread) => Some(thread),
            Err(e) => {
                tracing::warn!(store = %self.location, "promotion.store no watch thread ({e}): changes arrive at the sync interval");
                None
            }
        }
    }
}

/// Waits one watch span before the next try, or less if `stop` is set meanwhile.
fn pause(stop: &AtomicBool) {
    let step = WATCH_SPAN / 10;
    for _ in 0..10 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(step);
    }
}

/// Refuses a contribution key attached to no lease (`lease` absent or 0: etcd's JSON gateway
/// leaves zeros out), which never expires: a gate puts its contribution with its instance's
/// lease, so such a key was put by hand (or by another program), and would count for ever, in
/// every process of its stage, and in those of a later stage it names once they start it. Only
/// that: a key attached to a lease of its own (a long time to live, or kept alive by another
/// program) counts while that lease lives; its time to live is not looked at.
fn leased(instance: &str, lease: &Value) -> Result<(), BadContribution> {
    if text_of(lease) != "0" {
        return Ok(());
    }
    Err(BadContribution::new(
        instance,
        "lease",
        "none (0): expected the publishing instance's lease, without which the key never expires (put by hand? delete it)",
    ))
}

/// An instance's contribution value (JSON; latencies in base64) read as JSON, or why not,
/// showing the start of the value.
fn json_of(instance: &str, value: &[u8]) -> Result<Value, BadContribution> {
    serde_json::from_slice(value).map_err(|e| {
        BadContribution::new(
            instance,
            "value",
            format!(
                "{}: expected a contribution's JSON ({})",
                shown_bytes(value),
                shortened(&e.to_string())
            ),
        )
    })
}

/// What a contribution's field holds, as its refusal shows it: `missing`, or its JSON
/// (shortened) and its kind.
fn found(value: Option<&Value>) -> String {
    let Some(value) = value else {
        return "missing".to_string();
    };
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "text",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    format!("{} ({kind})", shortened(&value.to_string()))
}

/// An instance's contribution value, read as JSON ([`json_of`]), as a contribution, or what in
/// it is not: the field, what it holds ([`found`]) and what was expected.
fn contribution_in(instance: &str, value: &Value) -> Result<Contribution, BadContribution> {
    let bad = |field: &str, held: Option<&Value>, expected: &str| {
        BadContribution::new(
            instance,
            field,
            format!("{}: expected {expected}", found(held)),
        )
    };
    fn object<'v>(
        instance: &str,
        v: &'v Value,
        field: &str,
        fields: &str,
    ) -> Result<&'v serde_json::Map<String, Value>, BadContribution> {
        v.as_object().ok_or_else(|| {
            BadContribution::new(
                instance,
                field,
                format!("{}: expected an object of {fields}", found(Some(v))),
            )
        })
    }
    let count = |c: &serde_json::Map<String, Value>, name: &str, field: &str| {
        let v = c.get(name);
        v.and_then(Value::as_u64)
            .ok_or_else(|| bad(field, v, "a count (a whole number, 0 or more)"))
    };
    let value = object(instance, value, "value", "stage, canary and stable")?;
    let cohort = |name: &str| -> Result<PublishedCohort, BadContribution> {
        let fields = "requests, errors, compliant and latency";
        let c = match value.get(name) {
            Some(c) => object(instance, c, name, fields)?,
            None => return Err(bad(name, None, &format!("an object of {fields}"))),
        };
        let field = |f: &str| format!("{name}.{f}");
        let held = c.get("latency");
        let latency = held
            .and_then(Value::as_str)
            .ok_or_else(|| bad(&field("latency"), held, "a V2 histogram in base64 (text)"))?;
        // Base64 of at most MAX_LATENCY_BYTES is at most 4/3 as long: longer is not decoded.
        if latency.len() > MAX_LATENCY_BYTES / 3 * 4 + 4 {
            return Err(BadContribution::new(
                instance,
                field("latency"),
                format!(
                    "{} base64 characters is above {MAX_LATENCY_BYTES} bytes",
                    latency.len()
                ),
            ));
        }
        Ok(PublishedCohort {
            requests: count(c, "requests", &field("requests"))?,
            errors: count(c, "errors", &field("errors"))?,
            compliant: count(c, "compliant", &field("compliant"))?,
            latency: BASE64
                .decode(latency)
                .map_err(|e| bad(&field("latency"), held, &format!("base64 ({e})")))?,
        })
    };
    Ok(Contribution {
        instance: instance.to_string(),
        stage: count(value, "stage", "stage")?,
        cohorts: PerCohort {
            canary: cohort("canary")?,
            stable: cohort("stable")?,
        },
    })
}

fn put(key: &str, value: &[u8]) -> Value {
    json!({"request_put": {"key": BASE64.encode(key), "value": BASE64.encode(value)}})
}

/// The revision in the header a watch message starts with (`{"result":{"header":{...,
/// "revision":"N",...}`), read from its first bytes only: a message too long to be read whole
/// still says when it was sent.
fn header_revision(message: &[u8]) -> Option<u64> {
    const FIELD: &[u8] = b"\"revision\":\"";
    let start = &message[..message.len().min(1024)];
    let at = start.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    let digits = start[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&start[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// etcd's JSON gateway writes 64-bit numbers as strings, and leaves zeros out.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "0".to_string(),
    }
}

/// A page of contribution keys from `from` to `end` (excluded), at `revision` when given.
fn page_range(from: &[u8], end: &[u8], revision: Option<&str>) -> Value {
    let mut range = json!({
        "key": BASE64.encode(from),
        "range_end": BASE64.encode(end),
        "limit": CONTRIBUTION_PAGE.to_string(),
    });
    if let Some(revision) = revision {
        range["revision"] = json!(revision);
    }
    range
}

/// When the key-value `kv` was written ([`Written`]).
fn written(kv: &Value) -> Written {
    ["create_revision", "mod_revision", "version"].map(|field| text_of(&kv[field]))
}

#[cfg(test)]
mod tests;
