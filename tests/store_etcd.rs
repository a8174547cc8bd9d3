//! Gates on an etcd state store, through the public API: restart, two gates following each
//! other through the watch, a lost race, an unreachable cluster. Needs `PGATE_ETCD_ENDPOINT`
//! (set by `.ci/etcd`); without it the tests say so loudly and pass, except in CI (`CI=true`),
//! where a missing etcd fails them.

#![cfg(feature = "etcd")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a broken expectation is a failed test"
)]

mod common;

use common::scratch::etcd_endpoint as endpoint;
use common::stored::{
    eventually, fail_the_canary, race_a_rollback_against_a_ramp,
    roll_back_while_the_store_is_unavailable, routes_to_canary,
};
use promotion_gates::{
    Environment, Error, PromotionConfig, PromotionGateManager, RollbackTrigger,
    SloAdmissionController, SloConfig, StoreProblem,
};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
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
    let document = format!(
        r#"{{"gate": "checkout", "environment": {{"canary": {{"traffic_percent": 10}}}},
            "feature_flags": ["checkout_v2"],
            "store": {{"etcd": {{"endpoints": [{endpoint:?}], "prefix": {prefix:?}}}}}}}"#
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

#[test]
fn an_unreachable_cluster_is_an_error_naming_it() {
    if endpoint("etcd unreachable").is_none() {
        return;
    }
    let Err(Error::Store(err)) = open("http://127.0.0.1:9", &unique_prefix("nowhere")) else {
        panic!("a gate opened on a cluster that is not there");
    };
    assert_eq!(err.problem(), StoreProblem::Unavailable);
    assert!(err.to_string().contains("http://127.0.0.1:9"), "{err}");
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
