//! Gates on an etcd state store, through the public API: restart, two gates following each
//! other through the watch, a lost race, an unreachable cluster. Needs `PGATE_ETCD_ENDPOINT`
//! (set by `.ci/etcd`); without it the tests say so loudly and pass, except in CI (`CI=true`),
//! where a missing etcd fails them. The unreachable cluster's test needs no etcd and always runs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a broken expectation is a failed test"
)]

mod common;

use common::fleet::{
    SYNC_MS, a_bad_canary_is_rolled_back_by_four_as_by_one, no_a_a_canary_is_rolled_back_by_four,
};
use common::scratch::{Scratch, etcd_endpoint as endpoint};
use common::stored::{
    a_release_deleted_alone_is_written_again_without_its_history,
    a_release_put_back_alone_to_an_older_version_is_followed, eventually, fail_the_canary,
    race_a_rollback_against_a_ramp, roll_back_while_the_store_is_unavailable, routes_to_canary,
};
use promotion_gates::{
    Environment, Error, PromotionConfig, PromotionGateManager, RollbackTrigger,
    SloAdmissionController, SloConfig, StoreProblem,
};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

fn unique_prefix(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("/pg-test/{name}-{}-{nanos}", std::process::id())
}

fn open(endpoint: &str, prefix: &str) -> Result<PromotionGateManager, Error> {
    open_on(&[endpoint], prefix)
}

fn open_on(endpoints: &[&str], prefix: &str) -> Result<PromotionGateManager, Error> {
    open_syncing(endpoints, prefix, 1000)
}

/// [`open_on`] with a sync interval of `sync_interval_ms`.
fn open_syncing(
    endpoints: &[&str],
    prefix: &str,
    sync_interval_ms: u64,
) -> Result<PromotionGateManager, Error> {
    let endpoints = serde_json::to_string(endpoints).unwrap();
    let document = format!(
        r#"{{"gate": "checkout", "environment": {{"canary": {{"traffic_percent": 10}}}},
            "feature_flags": ["checkout_v2"],
            "store": {{"etcd": {{"endpoints": {endpoints}, "prefix": {prefix:?},
                "sync_interval_ms": {sync_interval_ms}}}}}}}"#
    );
    let config = PromotionConfig::from_json(&document)?;
    PromotionGateManager::new(config, SloAdmissionController::new(SloConfig::default())?)
}

#[test]
fn a_rolled_back_canary_stays_rolled_back_after_a_restart() {
    let Some(endpoint) = endpoint("etcd restart") else {
        return;
    };
    let prefix = unique_prefix("restart");
    let gate = open(&endpoint, &prefix).unwrap();
    gate.promote(Environment::Canary {
        traffic_percent: 5.0,
    })
    .unwrap();
    gate.rollback("bad deploy").unwrap();
    let (history, stage, config) = (gate.rollback_history(), gate.stage(), gate.config());
    drop(gate);
    let reopened = open(&endpoint, &prefix).unwrap();
    assert_eq!(reopened.environment(), Environment::Production);
    assert_eq!(reopened.rollback_history(), history);
    assert_eq!(reopened.stage(), stage);
    assert_eq!(reopened.config(), config);
    assert!(!routes_to_canary(&reopened));
    assert!(reopened.stored_state_difference().is_some());
}

#[test]
fn two_gates_follow_each_other_through_the_watch() {
    let Some(endpoint) = endpoint("etcd watch") else {
        return;
    };
    let prefix = unique_prefix("watch");
    let (a, b) = (
        open(&endpoint, &prefix).unwrap(),
        open(&endpoint, &prefix).unwrap(),
    );
    a.enable_feature("dark_mode").unwrap();
    eventually("b sees a's flag", || b.is_feature_enabled("dark_mode"));
    fail_the_canary(&b);
    eventually("a follows b's automatic rollback", || {
        a.environment() == Environment::Production
    });
    assert_eq!(a.rollback_history().len(), 1);
    assert_eq!(a.rollback_history()[0].trigger, RollbackTrigger::Automatic);
}

/// An endpoint written with a `/` at the end reaches the same keys (the store appends its
/// paths: it would ask for "//v3/...").
#[test]
fn an_endpoint_with_a_slash_at_the_end_reaches_the_same_store() {
    let Some(endpoint) = endpoint("etcd endpoint slash") else {
        return;
    };
    let prefix = unique_prefix("slash");
    let with_slash = open(&format!("{endpoint}/"), &prefix).unwrap();
    with_slash.rollback("drill").unwrap();
    let plain = open(&endpoint, &prefix).unwrap();
    assert_eq!(plain.environment(), Environment::Production);
    assert_eq!(plain.rollback_history().len(), 1);
}

#[test]
fn a_race_between_a_rollback_and_a_ramp_converges() {
    let Some(endpoint) = endpoint("etcd race") else {
        return;
    };
    let prefix = unique_prefix("race");
    race_a_rollback_against_a_ramp(&[
        open(&endpoint, &prefix).unwrap(),
        open(&endpoint, &prefix).unwrap(),
    ]);
}

/// Writes `value` at `key` of the etcd on `endpoint`, as another program (or etcdctl) would.
fn put(endpoint: &str, key: &str, value: &str) {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let body = serde_json::json!({"key": engine.encode(key), "value": engine.encode(value)});
    ureq::post(format!("{endpoint}/v3/kv/put"))
        .send(body.to_string())
        .unwrap();
}

/// Deletes `key` of the etcd on `endpoint`, as `etcdctl del` would.
fn delete(endpoint: &str, key: &str) {
    use base64::Engine as _;
    let body = serde_json::json!({"key": base64::engine::general_purpose::STANDARD.encode(key)});
    ureq::post(format!("{endpoint}/v3/kv/deleterange"))
        .send(body.to_string())
        .unwrap();
}

#[test]
fn a_release_deleted_alone_is_written_again_and_its_history_goes() {
    let Some(endpoint) = endpoint("etcd release deleted") else {
        return;
    };
    let prefix = unique_prefix("release-deleted");
    a_release_deleted_alone_is_written_again_without_its_history(
        &|| open(&endpoint, &prefix).unwrap(),
        &|| delete(&endpoint, &format!("{prefix}/release")),
    );
}

#[test]
fn a_release_put_back_alone_to_an_older_version_is_followed_and_written_over() {
    let Some(endpoint) = endpoint("etcd release put back") else {
        return;
    };
    let prefix = unique_prefix("release-put-back");
    let key = format!("{prefix}/release");
    a_release_put_back_alone_to_an_older_version_is_followed(
        &|| open(&endpoint, &prefix).unwrap(),
        &|| {
            let (endpoint, key) = (endpoint.clone(), key.clone());
            let kept = get(&endpoint, &key);
            Box::new(move || put(&endpoint, &key, &kept))
        },
    );
}

#[test]
fn a_tampered_release_is_refused_naming_the_field_and_its_value() {
    let Some(endpoint) = endpoint("etcd tampered release") else {
        return;
    };
    for (value, named) in [
        (
            r#"{"version": 18446744073709551615, "stage": 1, "config": {}}"#,
            "release.version = 18446744073709551615",
        ),
        (
            r#"{"version": 2, "stage": 9223372036854775808, "config": {}}"#,
            "release.stage = 9223372036854775808",
        ),
        (
            r#"{"version": 2, "stage": 1, "config": {"rollback_window_seconds": 0}}"#,
            "release.config: ",
        ),
        // Another gate's state (a prefix shared by two gates): this one would take its name.
        (
            r#"{"version": 2, "stage": 1, "config": {"gate": "payments"}}"#,
            r#"release.config.gate = "payments": the state of another gate, this one is "checkout""#,
        ),
        (
            r#"{"version": 2, "stage": 1, "config": {}, "rollbacks": {"version": 2, "counts": [{"trigger": "cosmic", "count": 1}]}}"#,
            r#"release.rollbacks.counts[0].trigger = "cosmic": manual, automatic or flag_disabled"#,
        ),
        (
            r#"{"version": 2, "stage": 1, "config": {}, "rollbacks": {"version": 2, "counts": [{"trigger": "manual", "count": 1}, {"trigger": "manual", "count": 1}]}}"#,
            "release.rollbacks.counts[1]: a second count of manual",
        ),
        (
            r#"{"version": 2, "stage": 1, "config": {}, "rollbacks": {"version": 3, "counts": []}}"#,
            "release.rollbacks.version = 3: at most the release's version 2",
        ),
    ] {
        let prefix = unique_prefix("tampered");
        drop(open(&endpoint, &prefix).unwrap());
        put(&endpoint, &format!("{prefix}/release"), value);
        let Err(Error::Store(err)) = open(&endpoint, &prefix) else {
            panic!("a gate opened on the release {value}");
        };
        assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
        let message = err.to_string();
        assert!(message.contains(named), "{message}");
    }
}

#[test]
fn a_value_written_by_hand_is_named_by_its_field_in_a_short_error() {
    let Some(endpoint) = endpoint("etcd huge values") else {
        return;
    };
    let huge = "x".repeat(1 << 20);
    let release = format!(
        r#"{{"version": 2, "stage": 1, "config": {{"gate": "checkout", "slo_threshold": "{huge}"}}}}"#
    );
    let event = format!(r#"{{"version": "{huge}"}}"#);
    for (key, value, named) in [
        (
            "release",
            release.as_str(),
            "release.config.slo_threshold: invalid type: string \"xxx",
        ),
        ("schema", huge.as_str(), "/schema = \"xxx"),
        (
            "history/00000000000000000002",
            event.as_str(),
            "not a history event: history.version: invalid type: string \"xxx",
        ),
    ] {
        let prefix = unique_prefix("huge");
        let gate = open(&endpoint, &prefix).unwrap();
        gate.rollback("a stored event").unwrap();
        drop(gate);
        put(&endpoint, &format!("{prefix}/{key}"), value);
        let Err(Error::Store(err)) = open(&endpoint, &prefix) else {
            panic!("a gate opened with {key} of 1 MiB");
        };
        let message = err.to_string();
        assert_eq!(err.problem(), StoreProblem::NotOurs, "{message}");
        assert!(message.contains(named), "{key}: {message}");
        assert!(message.contains("bytes)"), "{key}: {message}");
        assert!(message.len() < 1024, "{key}: {} bytes", message.len());
    }
}

#[test]
fn a_gate_whose_prefix_is_another_gates_history_keeps_its_state() {
    let Some(endpoint) = endpoint("etcd nested prefix") else {
        return;
    };
    let outer = unique_prefix("nested");
    let inner = format!("{outer}/history");
    let open_gate = |prefix: &str, gate: &str| {
        let document = format!(
            r#"{{"gate": "{gate}", "environment": {{"canary": {{"traffic_percent": 10}}}},
                "max_rollback_history": 1,
                "store": {{"etcd": {{"endpoints": [{endpoint:?}], "prefix": {prefix:?}}}}}}}"#
        );
        let config = PromotionConfig::from_json(&document).unwrap();
        PromotionGateManager::new(
            config,
            SloAdmissionController::new(SloConfig::default()).unwrap(),
        )
        .unwrap()
    };
    let payments = open_gate(&inner, "payments");
    payments.rollback("payments rolled back").unwrap();
    let history = payments.rollback_history();
    drop(payments);
    // The outer gate's first write clears its history range, and each write after an event
    // trims it to one event: neither may reach the inner gate's keys.
    let checkout = open_gate(&outer, "checkout");
    checkout.rollback("checkout rolled back").unwrap();
    checkout
        .promote(Environment::Canary {
            traffic_percent: 5.0,
        })
        .unwrap();
    checkout.rollback("checkout again").unwrap();
    checkout
        .promote(Environment::Canary {
            traffic_percent: 5.0,
        })
        .unwrap();
    drop(checkout);
    let payments = open_gate(&inner, "payments");
    assert_eq!(payments.environment(), Environment::Production);
    assert_eq!(payments.rollback_history(), history);
    let checkout = open_gate(&outer, "checkout");
    let reasons: Vec<_> = checkout
        .rollback_history()
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert_eq!(reasons, ["checkout again"]);
}

#[test]
fn a_release_numbered_at_the_end_opens_and_a_write_past_it_is_refused_naming_it() {
    let Some(endpoint) = endpoint("etcd numbering end") else {
        return;
    };
    let prefix = unique_prefix("numbering-end");
    drop(open(&endpoint, &prefix).unwrap());
    // SQLite's largest integer, the last number any store holds: read, as a store at it.
    put(
        &endpoint,
        &format!("{prefix}/release"),
        r#"{"version": 9223372036854775807, "stage": 1,
            "config": {"gate": "checkout", "environment": {"canary": {"traffic_percent": 10}}}}"#,
    );
    let gate = open(&endpoint, &prefix).unwrap();
    let ramp_down = Environment::Canary {
        traffic_percent: 5.0,
    };
    // No write can follow it: refused naming the field, the gate and the store unchanged.
    let Err(Error::Store(err)) = gate.promote(ramp_down) else {
        panic!("a write numbered past the last number was made");
    };
    assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
    assert!(
        err.to_string()
            .contains("release.version = 9223372036854775808: past 9223372036854775807"),
        "{err}"
    );
    let canary_10 = Environment::Canary {
        traffic_percent: 10.0,
    };
    assert_eq!(gate.environment(), canary_10);
    drop(gate);
    assert_eq!(open(&endpoint, &prefix).unwrap().environment(), canary_10);
}

#[test]
fn lowering_the_history_bound_below_many_stored_events_trims_them_in_one_write() {
    let Some(endpoint) = endpoint("etcd history trim") else {
        return;
    };
    let prefix = unique_prefix("trim");
    let gate = open(&endpoint, &prefix).unwrap();
    let mut config = gate.config();
    config.max_rollback_history = 1_000;
    gate.swap_config(config).unwrap();
    // More events than etcd's default limit of operations in one transaction (128), so that
    // deleting them one key per operation would be refused.
    for i in 0..140 {
        gate.promote(Environment::Canary {
            traffic_percent: 5.0,
        })
        .unwrap();
        gate.rollback(format!("rollback {i}")).unwrap();
    }
    assert_eq!(gate.rollback_history().len(), 140);
    let mut config = gate.config();
    config.max_rollback_history = 10;
    gate.swap_config(config).unwrap();
    let kept = gate.rollback_history();
    assert_eq!(kept.len(), 10);
    drop(gate);
    let reopened = open(&endpoint, &prefix).unwrap();
    assert_eq!(reopened.rollback_history(), kept);
    assert_eq!(
        reopened.rollback_history().last().map(|e| e.reason.clone()),
        Some("rollback 139".to_string())
    );
}

#[test]
fn with_a_history_bound_of_one_every_rollback_and_flag_disable_is_stored() {
    let Some(endpoint) = endpoint("etcd history bound 1") else {
        return;
    };
    let prefix = unique_prefix("bound-1");
    let gate = open(&endpoint, &prefix).unwrap();
    let mut config = gate.config();
    config.max_rollback_history = 1;
    config.feature_flags = vec!["a".into(), "b".into()];
    gate.swap_config(config).unwrap();
    gate.disable_feature("a").unwrap();
    gate.disable_feature("b").unwrap();
    gate.rollback("first").unwrap();
    let next = Environment::Canary {
        traffic_percent: 5.0,
    };
    gate.promote(next).unwrap();
    gate.rollback("second").unwrap();
    // Stored at once (not left waiting for the sync thread), so the next write is made.
    gate.promote(next).unwrap();
    drop(gate);
    let reopened = open(&endpoint, &prefix).unwrap();
    assert_eq!(reopened.environment(), next);
    let reasons: Vec<_> = reopened
        .rollback_history()
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert_eq!(reasons, ["second"]);
    // The counts are stored with the release: the history's bound does not trim them.
    let counts: Vec<_> = reopened
        .rollback_counts()
        .into_iter()
        .map(|c| (c.trigger, c.count))
        .collect();
    assert_eq!(
        counts,
        [
            (RollbackTrigger::FlagDisabled, 2),
            (RollbackTrigger::Manual, 2)
        ]
    );
}

#[test]
fn an_unreachable_cluster_is_an_error_naming_it() {
    // Needs no etcd: nothing listens on port 9, and the other member cannot answer.
    let failing = Unavailable::start();
    let endpoints = ["http://127.0.0.1:9", failing.url.as_str()];
    let Err(Error::Store(err)) = open_on(&endpoints, &unique_prefix("nowhere")) else {
        panic!("a gate opened on a cluster that is not there");
    };
    assert_eq!(err.problem(), StoreProblem::Unavailable);
    let message = err.to_string();
    assert!(message.contains("http://127.0.0.1:9/"), "{message}");
    assert!(message.contains(&format!("{}/", failing.url)), "{message}");
    assert!(message.contains("HTTP 503"), "{message}");
}

#[test]
fn a_member_that_cannot_answer_passes_the_request_to_the_next() {
    let Some(endpoint) = endpoint("etcd 5xx fallback") else {
        return;
    };
    let failing = Unavailable::start();
    let gate = open_on(
        &[failing.url.as_str(), &endpoint],
        &unique_prefix("fallback"),
    )
    .unwrap();
    gate.rollback("through the second member").unwrap();
    assert_eq!(gate.environment(), Environment::Production);
    assert!(failing.requests.load(Ordering::Relaxed) > 0);
}

/// An etcd member that answers every request with HTTP 503 (no leader).
struct Unavailable {
    url: String,
    requests: Arc<AtomicUsize>,
}

impl Unavailable {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&requests);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                counted.fetch_add(1, Ordering::Relaxed);
                read_request(&mut client);
                let body = "etcdserver: no leader";
                let _ = write!(
                    client,
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { url, requests }
    }
}

/// Reads one HTTP request (its head, then a body of `Content-Length` bytes).
fn read_request(client: &mut TcpStream) {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => seen.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    let _ = client.read_exact(&mut body);
}

/// A TCP relay to etcd that can be cut and restored: an etcd cluster unreachable on demand.
struct Relay {
    url: String,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(endpoint: &str) -> Self {
        let target = endpoint.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(true));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (relay_up, relay_open) = (Arc::clone(&up), Arc::clone(&open));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                if !relay_up.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let mut streams = relay_open.lock().unwrap();
                streams.extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Self { url, up, open }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[test]
fn while_etcd_is_unreachable_routing_goes_on_a_rollback_happens_and_promotion_is_refused() {
    let Some(endpoint) = endpoint("etcd unreachable at run time") else {
        return;
    };
    let prefix = unique_prefix("outage");
    let relay = Relay::start(&endpoint);
    let gate = open(&relay.url, &prefix).unwrap();
    let watcher = open(&endpoint, &prefix).unwrap();
    relay.cut();

    roll_back_while_the_store_is_unavailable(&gate, &relay.url);
    assert!(
        routes_to_canary(&watcher),
        "the store was written while unreachable"
    );

    relay.restore();
    eventually(
        "the rollback reaches the other gate once etcd is back",
        || watcher.environment() == Environment::Production,
    );
    assert_eq!(watcher.rollback_history(), gate.rollback_history());
}

#[test]
fn a_rollback_made_while_cut_off_does_not_undo_a_rollout_started_meanwhile() {
    let Some(endpoint) = endpoint("etcd stale rollback") else {
        return;
    };
    let prefix = unique_prefix("stale-rollback");
    let relay = Relay::start(&endpoint);
    let offline = open(&relay.url, &prefix).unwrap();
    let online = open(&endpoint, &prefix).unwrap();
    relay.cut();
    // Cut off, one gate sees the canary fail and rolls it back: published, not written.
    fail_the_canary(&offline);
    // Meanwhile an operator graduates the canary elsewhere and starts the next rollout.
    let mut graduated = online.config();
    graduated.environment = Environment::Production;
    online.swap_config(graduated).unwrap();
    let next = Environment::Canary {
        traffic_percent: 5.0,
    };
    online.promote(next).unwrap();
    let stage = online.stage();

    relay.restore();
    eventually("the cut-off gate follows the new rollout", || {
        offline.environment() == next
    });
    assert_eq!(offline.stage(), stage);
    assert!(
        offline.rollback_history().is_empty(),
        "its rollback is dropped"
    );
    // Nothing more is written: the new rollout stays.
    online.sync_now();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!((online.environment(), online.stage()), (next, stage));
    assert!(online.rollback_history().is_empty());
}

/// A TCP relay to etcd that passes every request but a watch, which it holds unanswered
/// until the client gives it up: a gate behind it hears of another process's write only at
/// its sync ticks (or its own writes), as a SQLite gate with a long sync interval does.
struct DeafToWatch {
    url: String,
}

impl DeafToWatch {
    fn start(endpoint: &str) -> Self {
        let target = endpoint.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { continue };
                let Ok(mut server) = TcpStream::connect(&target) else {
                    continue;
                };
                let (mut answers, mut to_client) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut answers, &mut to_client);
                    let _ = to_client.shutdown(Shutdown::Both);
                });
                // A connection's requests follow one another (each waits for its answer), so
                // a watch request starts a read of its own.
                std::thread::spawn(move || {
                    let mut buffer = vec![0u8; 1 << 16];
                    loop {
                        let n = match client.read(&mut buffer) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let watch = b"POST /v3/watch";
                        if buffer[..n].windows(watch.len()).any(|w| w == watch) {
                            while client.read(&mut buffer).is_ok_and(|n| n > 0) {}
                            break;
                        }
                        if server.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = server.shutdown(Shutdown::Both);
                });
            }
        });
        Self { url }
    }
}

/// The value at `key` of the etcd on `endpoint`, as `etcdctl get` shows it.
fn get(endpoint: &str, key: &str) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let body = serde_json::json!({"key": engine.encode(key)});
    let answer = ureq::post(format!("{endpoint}/v3/kv/range"))
        .send(body.to_string())
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let value = engine
        .decode(answer["kvs"][0]["value"].as_str().unwrap())
        .unwrap();
    String::from_utf8(value).unwrap()
}

#[test]
fn a_write_decided_on_the_restored_version_at_another_stage_does_not_undo_a_rollback() {
    // As with SQLite: the store holds the version a running gate knows, at another stage
    // (another timeline: a restored snapshot, then another process's rollback). The running
    // gate's write was decided on a state the store no longer holds, and is refused, not
    // written over the rollback.
    let Some(endpoint) = endpoint("etcd restored same version") else {
        return;
    };
    let prefix = unique_prefix("restored-same-version");
    let relay = DeafToWatch::start(&endpoint);
    // Deaf to the watch and syncing once a minute: it reads the store at its own writes.
    let a = open_syncing(&[relay.url.as_str()], &prefix, 60_000).unwrap(); // version 1, stage 1
    a.enable_feature("dark_mode").unwrap(); // version 2, stage 2 (a flag turned on)
    a.disable_feature("dark_mode").unwrap(); // a knows version 3, stage 2
    let key = format!("{prefix}/release");
    let mut release: serde_json::Value = serde_json::from_str(&get(&endpoint, &key)).unwrap();
    assert_eq!(
        (&release["version"], &release["stage"]),
        (&3.into(), &2.into())
    );
    release["stage"] = 3.into();
    release["config"]["environment"] = "production".into();
    release["config"]["feature_flags"] = serde_json::json!([]);
    put(&endpoint, &key, &release.to_string());
    let ramp = a.promote(Environment::Canary {
        traffic_percent: 5.0,
    });
    assert!(
        matches!(&ramp, Err(Error::Store(e)) if e.problem() == StoreProblem::Conflict),
        "{ramp:?}"
    );
    let stored: serde_json::Value = serde_json::from_str(&get(&endpoint, &key)).unwrap();
    assert_eq!(
        (&stored["version"], &stored["stage"]),
        (&3.into(), &3.into()),
        "the rollback stays"
    );
    assert_eq!(stored["config"]["environment"], "production");
    // Refused, a has followed the stored state.
    assert_eq!(a.environment(), Environment::Production);
}

/// A new etcd store (a prefix of its own) on `endpoint`: the `store` key's JSON.
fn etcd(endpoint: &str, name: &str) -> String {
    let prefix = unique_prefix(name);
    format!(
        r#"{{"etcd": {{"endpoints": [{endpoint:?}], "prefix": {prefix:?}, "sync_interval_ms": {SYNC_MS}}}}}"#
    )
}

#[test]
fn four_processes_with_a_quarter_of_a_bad_canarys_traffic_each_roll_it_back_as_one_would() {
    if common::fleet::child() {
        return;
    }
    let Some(endpoint) = endpoint("etcd fleet, bad canary") else {
        return;
    };
    let dir = Scratch::new("etcd-fleet-bad");
    a_bad_canary_is_rolled_back_by_four_as_by_one(
        "four_processes_with_a_quarter_of_a_bad_canarys_traffic_each_roll_it_back_as_one_would",
        &etcd(&endpoint, "fleet-bad"),
        &dir.file(""),
    );
}

#[test]
fn four_processes_on_a_a_traffic_roll_back_no_canary_one_process_keeps() {
    if common::fleet::child() {
        return;
    }
    let Some(endpoint) = endpoint("etcd fleet, A/A") else {
        return;
    };
    let dir = Scratch::new("etcd-fleet-a-a");
    no_a_a_canary_is_rolled_back_by_four(
        "four_processes_on_a_a_traffic_roll_back_no_canary_one_process_keeps",
        &etcd(&endpoint, "fleet-a-a"),
        &dir.file(""),
    );
}

/// An etcd of a test's own on 127.0.0.1 (`client` and `peer` ports), data in `dir`; killed
/// by its pid when dropped.
struct PrivateEtcd {
    child: std::process::Child,
}

impl PrivateEtcd {
    fn start(client: u16, peer: u16, dir: &str) -> Self {
        let (client_url, peer_url) = (
            format!("http://127.0.0.1:{client}"),
            format!("http://127.0.0.1:{peer}"),
        );
        let child = std::process::Command::new("etcd")
            .args(["--name", "restarted", "--data-dir", dir])
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("restarted={peer_url}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("etcd runs (.ci/etcd installs it)");
        let health = format!("{client_url}/health");
        eventually("the private etcd is healthy", || {
            ureq::get(&health).call().is_ok_and(|mut r| {
                r.body_mut()
                    .read_to_string()
                    .is_ok_and(|b| b.contains("true"))
            })
        });
        Self { child }
    }
}

impl Drop for PrivateEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free on 127.0.0.1 now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_gate_hears_of_writes_through_the_watch_after_etcd_comes_back_with_a_lower_revision() {
    // The watch resumed at its last revision, which the new cluster had not reached: etcd held
    // back every event silently, and the gate learned of writes only at its sync interval.
    if endpoint("etcd restarted empty").is_none() {
        return;
    }
    let dir = Scratch::new("etcd-restarted");
    let (client, peer) = (free_port(), free_port());
    let endpoint = format!("http://127.0.0.1:{client}");
    let first = PrivateEtcd::start(client, peer, &dir.file("first"));
    for i in 0..200 {
        put(&endpoint, &format!("/elsewhere/{i}"), "x"); // the revision passes 200
    }
    let document = |sync_ms: u64| {
        format!(
            r#"{{"gate": "checkout", "environment": {{"canary": {{"traffic_percent": 10}}}},
                "store": {{"etcd": {{"endpoints": [{endpoint:?}], "prefix": "/restarted", "sync_interval_ms": {sync_ms}}}}}}}"#
        )
    };
    let open = |sync_ms| {
        let config = PromotionConfig::from_json(&document(sync_ms)).unwrap();
        PromotionGateManager::new(
            config,
            SloAdmissionController::new(SloConfig::default()).unwrap(),
        )
        .unwrap()
    };
    // `writer` writes its state again at its sync tick; `listener` relies on the watch.
    let (writer, listener) = (open(100), open(60_000));
    drop(first); // killed
    writer.rollback("while etcd was down").unwrap();
    let _second = PrivateEtcd::start(client, peer, &dir.file("second")); // empty: revision 1
    eventually(
        "the listener follows the rollback before its sync interval",
        || listener.environment() == Environment::Production,
    );
    writer
        .promote(Environment::Canary {
            traffic_percent: 1.0,
        })
        .unwrap();
    eventually("and the next write through the watch too", || {
        listener.environment()
            == Environment::Canary {
                traffic_percent: 1.0,
            }
    });
}

/// A config this build takes (up to `MAX_DOCUMENT_BYTES`) above etcd's `--max-request-bytes`
/// (1.5 MiB by default): etcd refuses its write ("request is too large"; above its gRPC
/// receive limit, 512 KiB more, "received message larger than max"), which no retry mends.
/// Refused as such, naming the release's size, not as a store that may answer later.
#[test]
fn a_release_above_etcds_request_limit_is_refused_naming_its_size() {
    let Some(endpoint) = endpoint("etcd request too large") else {
        return;
    };
    // 10 000 flags and override ids make 2.5 MB; 7 000 of each, 1.8 MB.
    for (count, refusal) in [
        (10_000, "received message larger than max"),
        (7_000, "request is too large"),
    ] {
        let prefix = unique_prefix("too-large");
        let config = large_config(&endpoint, &prefix, count);
        // As stored: without the store.
        let stored = PromotionConfig {
            store: None,
            ..config.clone()
        };
        let bytes = serde_json::to_string(&stored).unwrap().len();
        let slo = || SloAdmissionController::new(SloConfig::default()).unwrap();
        let Err(Error::Store(err)) = PromotionGateManager::new(config.clone(), slo()) else {
            panic!("a gate opened with a release of {bytes} bytes");
        };
        assert_eq!(err.problem(), StoreProblem::TooLarge, "{err}");
        let message = err.to_string();
        for words in [
            "a request larger than the store takes",
            "bytes (its config and counts as JSON",
            refusal,
            "--max-request-bytes",
        ] {
            assert!(message.contains(words), "{words:?} not in {message}");
        }
        // The size named is the release's: the stored config's JSON and a little more.
        let named: usize = message
            .split("a release of ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(
            named >= bytes && named < bytes + 4096,
            "{named} vs {bytes}: {message}"
        );
        // A running gate's swap to it is refused alike, and changes nothing.
        let gate = open(&endpoint, &prefix).unwrap();
        let before = gate.config();
        let err = gate
            .swap_config(PromotionConfig {
                store: before.store.clone(),
                ..config
            })
            .unwrap_err();
        let Error::Store(err) = err else {
            panic!("{err}");
        };
        assert_eq!(err.problem(), StoreProblem::TooLarge, "{err}");
        assert_eq!(gate.config(), before);
    }
}

/// A gate's config of `count` flags and as many canary ids, 125 bytes each, on `prefix`.
fn large_config(endpoint: &str, prefix: &str, count: usize) -> PromotionConfig {
    let name = |kind: &str, i: usize| format!("{kind}_{i:05}_{}", "x".repeat(110));
    PromotionConfig {
        gate: "checkout".into(),
        environment: Environment::Canary {
            traffic_percent: 10.0,
        },
        feature_flags: (0..count).map(|i| name("flag", i)).collect(),
        overrides: Some(
            serde_json::from_value(serde_json::json!({
                "canary_ids": (0..count).map(|i| name("id", i)).collect::<Vec<_>>(),
            }))
            .unwrap(),
        ),
        store: Some(
            serde_json::from_value(serde_json::json!({
                "etcd": {"endpoints": [endpoint], "prefix": prefix},
            }))
            .unwrap(),
        ),
        ..PromotionConfig::default()
    }
}
