//! Against a real etcd: `PGATE_ETCD_ENDPOINT` (set by `.ci/etcd`). Without it the tests say so
//! loudly and pass, except in CI (`CI=true`), where a missing etcd fails them.

use super::*;
use crate::config::Environment;
use crate::store::Guard;
use crate::store::scratch::etcd_endpoint as endpoint;
use crate::store::testing::{
    GATE, commit_on_top, config, contribution, rollback_event as event, sorted_lines, write_on,
};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

/// A state of the store ([`EPOCH`], as every state an etcd store reads or writes), whose stage
/// the tests' contributions are to.
const KNOWN: Guard = Guard {
    version: 1,
    stage: 2,
    epoch: EPOCH,
};

/// Held by the tests that start watch threads, so each counts only its own.
static WATCH_THREADS: Mutex<()> = Mutex::new(());

/// The thread ids of this process's threads named `pgate-watch` that have not exited. A
/// joined thread can still be listed in /proc for a moment (the join returns once the thread
/// has released its thread id, early in its exit): one whose memory is released already
/// (`statm` all zero, or gone) has exited.
fn watch_threads() -> std::collections::BTreeSet<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .map(|task| task.unwrap().path())
        .filter(|task| {
            std::fs::read_to_string(task.join("comm"))
                .is_ok_and(|name| name.trim() == "pgate-watch")
                && std::fs::read_to_string(task.join("statm"))
                    .is_ok_and(|pages| pages.split_whitespace().next() != Some("0"))
        })
        .map(|task| task.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn settings(endpoint: &str, name: &str) -> EtcdStoreConfig {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    EtcdStoreConfig {
        endpoints: vec![endpoint.to_string()],
        prefix: format!("/pg-test/{name}-{}-{nanos}", std::process::id()),
        sync_interval_ms: 1000,
        fleet_judging: true,
    }
}

#[test]
fn a_state_survives_reopening_and_stale_guards_write_nothing() {
    let Some(endpoint) = endpoint("etcd reopen") else {
        return;
    };
    let settings = settings(&endpoint, "reopen");
    let store = EtcdStore::open(&settings, GATE).unwrap();
    assert_eq!(store.load().unwrap(), None);
    let first = StoredWrite::new(
        Guard::EMPTY,
        crate::store::RolloutOn::UNKNOWN,
        &Default::default(),
        1,
        &config(Environment::Canary {
            traffic_percent: 10.0,
        }),
        None,
    );
    assert_eq!(store.commit(&first).unwrap(), Commit::Written { epoch: 0 });
    assert_eq!(
        store.commit(&first).unwrap(),
        Commit::Conflict {
            stored_version: 1,
            another_file: false,
        }
    );
    let rollback = StoredWrite::new(
        Guard {
            version: 1,
            stage: 1,
            epoch: 0,
        },
        crate::store::RolloutOn::UNKNOWN,
        &Default::default(),
        2,
        &config(Environment::Production),
        Some(&event("bad deploy")),
    );
    assert_eq!(
        store.commit(&rollback).unwrap(),
        Commit::Written { epoch: 0 }
    );
    let before = store.load().unwrap().unwrap();
    drop(store);
    let reopened = EtcdStore::open(&settings, GATE).unwrap();
    let after = reopened.load().unwrap().unwrap();
    assert_eq!(after, before);
    assert_eq!(after.release.config.environment, Environment::Production);
    assert_eq!(after.history[0].to_event().unwrap(), event("bad deploy"));
    assert_eq!(reopened.changes_since(known(2)).unwrap(), Since::Same);
}

/// A store replaced by a copy (a restored snapshot, a value put by hand) may hold the version
/// a process knows at another stage: a write decided on that version is refused, as with
/// SQLite, never written over the stored stage.
#[test]
fn a_guard_of_the_stored_version_at_another_stage_writes_nothing() {
    let Some(endpoint) = endpoint("etcd guard stage") else {
        return;
    };
    let store = EtcdStore::open(&settings(&endpoint, "guard-stage"), GATE).unwrap();
    // Version 1 at stage 5.
    let first = StoredWrite::new(
        Guard::EMPTY,
        crate::store::RolloutOn::UNKNOWN,
        &Default::default(),
        5,
        &config(Environment::Production),
        None,
    );
    assert_eq!(store.commit(&first).unwrap(), Commit::Written { epoch: 0 });
    // Decided on version 1 at stage 1.
    let stale = write_on(
        1,
        Environment::Canary {
            traffic_percent: 50.0,
        },
        None,
    );
    assert_eq!(
        store.commit(&stale).unwrap(),
        Commit::Conflict {
            stored_version: 1,
            another_file: false,
        }
    );
    let stored = store.load().unwrap().unwrap().release;
    assert_eq!((stored.version, stored.stage), (1, 5));
    assert_eq!(stored.config.environment, Environment::Production);
    // Decided on version 1 at stage 5: written.
    let current = StoredWrite::new(
        Guard {
            version: 1,
            stage: 5,
            epoch: 0,
        },
        crate::store::RolloutOn::UNKNOWN,
        &Default::default(),
        6,
        &config(Environment::Canary {
            traffic_percent: 50.0,
        }),
        None,
    );
    assert_eq!(
        store.commit(&current).unwrap(),
        Commit::Written { epoch: 0 }
    );
}

#[test]
fn concurrent_writers_lose_nothing_and_the_history_keeps_its_bound() {
    let Some(endpoint) = endpoint("etcd concurrent writers") else {
        return;
    };
    let settings = settings(&endpoint, "cas");
    std::thread::scope(|scope| {
        for w in 0..3 {
            let settings = &settings;
            scope.spawn(move || {
                let store = EtcdStore::open(settings, GATE).unwrap();
                for i in 0..8 {
                    commit_on_top(&store, &format!("w{w}-{i}"), 100);
                }
            });
        }
    });
    let store = EtcdStore::open(&settings, GATE).unwrap();
    let state = store.load().unwrap().unwrap();
    assert_eq!(state.release.version, 24);
    let mut reasons: Vec<_> = state.history.iter().map(|e| e.reason.clone()).collect();
    reasons.sort();
    let mut expected: Vec<_> = (0..3)
        .flat_map(|w| (0..8).map(move |i| format!("w{w}-{i}")))
        .collect();
    expected.sort();
    assert_eq!(reasons, expected);
    // A smaller bound trims the oldest events in the same transaction.
    commit_on_top(&store, "last", 5);
    let state = store.load().unwrap().unwrap();
    let versions: Vec<_> = state.history.iter().map(|e| e.version).collect();
    assert_eq!(versions, [21, 22, 23, 24, 25]);
}

#[test]
fn a_history_bound_of_one_or_two_keeps_the_newest_events_at_every_write() {
    let Some(endpoint) = endpoint("etcd small history bound") else {
        return;
    };
    for bound in [1, 2] {
        let store = EtcdStore::open(&settings(&endpoint, &format!("bound-{bound}")), GATE).unwrap();
        for i in 1..=4u64 {
            commit_on_top(&store, &format!("r{i}"), bound);
            let state = store.load().unwrap().unwrap();
            let reasons: Vec<_> = state.history.iter().map(|e| e.reason.clone()).collect();
            let oldest_kept = (i + 1).saturating_sub(bound as u64).max(1);
            let kept: Vec<_> = (oldest_kept..=i).map(|k| format!("r{k}")).collect();
            assert_eq!(reasons, kept, "bound {bound}, after write {i}");
            assert_eq!(state.release.version, i);
        }
    }
}

/// Writes on top of version `on` (at stage `on`, as every write here) up to version `to`, each
/// recording a rollback and keeping `bound` events; no read between them.
fn writes_keeping(store: &EtcdStore, on: u64, to: u64, bound: usize) {
    for version in on..to {
        let mut next = config(Environment::Production);
        next.max_rollback_history = bound;
        let write = StoredWrite::new(
            Guard {
                version,
                stage: version,
                epoch: 0,
            },
            crate::store::RolloutOn::UNKNOWN,
            &Default::default(),
            version + 1,
            &next,
            Some(&event(&format!("r{}", version + 1))),
        );
        assert_eq!(store.commit(&write).unwrap(), Commit::Written { epoch: 0 });
    }
}

/// The reasons of the history events stored, oldest first.
fn stored_reasons(store: &EtcdStore) -> Vec<String> {
    let state = store.load().unwrap().unwrap();
    state.history.iter().map(|e| e.reason.clone()).collect()
}

/// A bound lowered below the history stored is trimmed to at the next write, whichever end
/// the first key kept is looked for from and over several pages of keys: from the newest
/// (fewer stay than go) and from the oldest (fewer go than stay).
#[test]
fn a_lowered_history_bound_is_trimmed_to_over_several_pages_of_keys() {
    let Some(endpoint) = endpoint("etcd lowered history bound") else {
        return;
    };
    let store = EtcdStore::open(&settings(&endpoint, "lowered-bound"), GATE).unwrap();
    let reasons = |from: u64, to: u64| (from..=to).map(|v| format!("r{v}")).collect::<Vec<_>>();
    writes_keeping(&store, 0, 700, 1_000);
    // 700 stored, 299 stay beside the write's own event: read from the newest, 2 pages.
    writes_keeping(&store, 700, 701, 300);
    assert_eq!(stored_reasons(&store), reasons(402, 701));
    writes_keeping(&store, 701, 1_100, 1_000);
    // 699 stored, 301 go: read from the oldest, 2 pages.
    writes_keeping(&store, 1_100, 1_101, 400);
    assert_eq!(stored_reasons(&store), reasons(702, 1_101));
}

/// The trim reads at most a page of keys a request, whatever count the member gives: it read
/// as many as the count said went at once (30 MB of keys when the bound went from 100 000 to
/// 1, unbounded for keys written by hand).
#[test]
fn the_trim_reads_a_page_of_keys_at_most_whatever_the_count() {
    for bound in [1, 10, 5_000_000, 9_999_999] {
        let (endpoint, _, bodies) = answering_in_turn(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 46\r\nConnection: close\r\n\r\n{\"header\":{\"revision\":\"5\"},\"count\":\"10000000\"}",
            "HTTP/1.1 200 OK\r\nContent-Length: 36\r\nConnection: close\r\n\r\n{\"header\":{\"revision\":\"5\"},\"kvs\":[]}",
        ]);
        let store = EtcdStore::new(&settings(&endpoint, "trim-count"), GATE);
        let mut write = write_on(7, Environment::Production, Some("r"));
        write.history_bound = bound;
        // No key where the count said there were ten million (another process trimmed
        // meanwhile): none is deleted, whichever end it was looked for from; with a bound of 1
        // (the write's own event alone) every key below goes, unread.
        let trim = store.history_trim(&write).unwrap();
        assert_eq!(trim.is_some(), bound == 1, "bound {bound}: {trim:?}");
        let bodies = bodies.lock().unwrap();
        assert!(bodies[0].contains("count_only"), "{bodies:?}");
        for body in bodies.iter().skip(1) {
            let limit: usize = serde_json::from_str::<Value>(body).unwrap()["limit"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                limit <= HISTORY_PAGE,
                "bound {bound}: a request for {limit} keys"
            );
        }
    }
}

/// One HTTP request read from `client`: its request line and its body (`None` if the client
/// went away first).
fn request_of(client: &mut std::io::BufReader<std::net::TcpStream>) -> Option<(String, String)> {
    use std::io::{BufRead, Read};
    let (mut request_line, mut line, mut length) = (String::new(), String::new(), 0);
    client.read_line(&mut request_line).ok()?;
    while client.read_line(&mut line).is_ok_and(|n| n > 2) {
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
        line.clear();
    }
    let mut body = vec![0; length];
    client.read_exact(&mut body).ok()?;
    Some((request_line, String::from_utf8_lossy(&body).into_owned()))
}

/// Passes the request `request_line` with `body` to etcd at `etcd` and writes its answer to
/// `client`, closing the connection.
fn relay(etcd: &str, request_line: &str, body: String, client: &mut std::net::TcpStream) {
    use std::io::Write;
    let path = request_line.split(' ').nth(1).unwrap_or("/");
    let answer = ureq::post(format!("{etcd}{path}"))
        .send(body)
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let _ = write!(
        client,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
}

/// A loopback endpoint that never answers a transaction: it hands the body of each to
/// `on_txn` (which may apply it, as a member that times out after committing does), then closes
/// the connection, and the store passes the request to its next endpoint. Other requests it
/// passes to etcd at `etcd` and answers, so that it is the endpoint the store asks first.
fn losing_answers(etcd: &str, on_txn: impl Fn(String) + Send + 'static) -> String {
    let etcd = etcd.to_string();
    serving(move |request_line, body, client| {
        if request_line.contains(" /v3/kv/txn ") {
            on_txn(body);
            return;
        }
        relay(&etcd, &request_line, body, client);
    })
}

/// A loopback endpoint that reads each request it is sent and hands its request line, its
/// body and the connection to `serve`, one after the other.
fn serving(
    mut serve: impl FnMut(String, String, &mut std::net::TcpStream) + Send + 'static,
) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for connection in listener.incoming() {
            let Ok(connection) = connection else {
                continue;
            };
            let mut client = std::io::BufReader::new(connection);
            if let Some((request_line, body)) = request_of(&mut client) {
                serve(request_line, body, client.get_mut());
            }
        }
    });
    endpoint
}

/// A loopback endpoint that passes each request to etcd at `etcd` and answers, until `hang` is
/// set: from then on it accepts connections and never answers (a member that starts hanging,
/// after it answered last, so that the store asks it first).
fn hanging_once_told(etcd: &str, hang: &Arc<AtomicBool>) -> String {
    let (etcd, hang) = (etcd.to_string(), Arc::clone(hang));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for connection in listener.incoming() {
            let Ok(connection) = connection else {
                continue;
            };
            if hang.load(Ordering::Relaxed) {
                held.push(connection);
                continue;
            }
            let mut client = std::io::BufReader::new(connection);
            if let Some((request_line, body)) = request_of(&mut client) {
                relay(&etcd, &request_line, body, client.get_mut());
            }
        }
    });
    endpoint
}

/// A live instance's contribution outlives a sync tick slowed by members that hang, within
/// what the store allows a request (each endpoint tried in turn, up to its timeout): its lease
/// is of the slowest tick. With a lease of five sync intervals alone (at least 1 s) it expired
/// during the tick, and the other instances lost its counts until its next publication.
#[test]
fn a_live_instances_contribution_outlives_a_tick_slowed_by_members_that_hang() {
    let Some(endpoint) = endpoint("etcd slow tick") else {
        return;
    };
    let hang = Arc::new(AtomicBool::new(false));
    let direct = EtcdStoreConfig {
        sync_interval_ms: 10,
        ..settings(&endpoint, "slow-tick")
    };
    let through_hanging = EtcdStoreConfig {
        endpoints: vec![
            hanging_once_told(&endpoint, &hang),
            hanging_once_told(&endpoint, &hang),
            endpoint.clone(),
        ],
        ..direct.clone()
    };
    let ttl = crate::store::time_to_live(&crate::StoreConfig::Etcd(through_hanging.clone()));
    let (instance, other) = (
        EtcdStore::open(&through_hanging, GATE).unwrap(),
        EtcdStore::open(&direct, GATE).unwrap(),
    );
    let counts = contribution("live", 2, 100);
    instance.publish(&counts, KNOWN, ttl).unwrap();
    let lease = instance.lease.lock().unwrap().clone();
    let read_by_the_other = || {
        other
            .contributions(KNOWN, "other", ttl)
            .unwrap()
            .iter()
            .any(|read| read.as_ref().is_ok_and(|c| c.instance == "live"))
    };
    assert!(read_by_the_other());
    // The other instance reads at its own ticks while this one's tick is slow.
    let ticking = AtomicBool::new(true);
    let (took, missed) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut missed = 0;
            while ticking.load(Ordering::Relaxed) {
                missed += usize::from(!read_by_the_other());
                std::thread::sleep(Duration::from_millis(50));
            }
            missed
        });
        // The members this instance asks first start hanging after its publication. Then the
        // rest of its tick (the others' counts read, whose request waits out both members
        // before etcd answers), its sync interval, and its next tick as the sync thread makes
        // it (the release read, then the publication).
        hang.store(true, Ordering::Relaxed);
        let start = Instant::now();
        instance.contributions(KNOWN, "live", ttl).unwrap();
        std::thread::sleep(Duration::from_millis(direct.sync_interval_ms));
        instance.changes_since(Guard::EMPTY).unwrap();
        instance.publish(&counts, KNOWN, ttl).unwrap();
        let took = start.elapsed();
        ticking.store(false, Ordering::Relaxed);
        (took, reader.join().unwrap())
    });
    assert!(took >= REQUEST_TIMEOUT * 2, "both members hung: {took:?}");
    assert!(
        took < SLOWEST_TICK,
        "within the slowest tick the store allows: {took:?}"
    );
    assert_eq!(
        missed, 0,
        "the live instance was missed at {missed} reads in a tick of {took:?}"
    );
    assert_eq!(
        *instance.lease.lock().unwrap(),
        lease,
        "kept alive, not granted again"
    );
    assert!(read_by_the_other());
}

#[test]
fn a_write_whose_answer_is_lost_after_etcd_applied_it_is_written_not_a_conflict() {
    let Some(endpoint) = endpoint("etcd lost answers") else {
        return;
    };
    let etcd = endpoint.clone();
    let applies = losing_answers(&endpoint, move |txn| {
        ureq::post(format!("{etcd}/v3/kv/txn")).send(txn).unwrap();
    });
    let direct = settings(&endpoint, "lost");
    let through = |first: String| EtcdStoreConfig {
        endpoints: vec![first, endpoint.clone()],
        ..direct.clone()
    };
    let store = EtcdStore::open(&through(applies), GATE).unwrap();
    let first = write_on(0, crate::config::canary(10.0), None);
    // Applied by the first endpoint, then refused by the second's compare: this write's own.
    assert_eq!(store.commit(&first).unwrap(), Commit::Written { epoch: 0 });
    // The store now asks the second endpoint first (the first lost an answer): back to it.
    assert_eq!(store.preferred.swap(0, Ordering::Relaxed), 1);
    let rollback = write_on(1, Environment::Production, Some("bad deploy"));
    assert_eq!(
        store.commit(&rollback).unwrap(),
        Commit::Written { epoch: 0 }
    );
    let stored = store.load().unwrap().unwrap();
    assert_eq!(stored.release, rollback.release);
    assert_eq!(stored.history, [rollback.event.clone().unwrap()]);
    // The answer lost while another writer's transaction went in: a conflict, and nothing of
    // this write is stored (its compare can no longer hold).
    let rival = EtcdStore::open(&direct, GATE).unwrap();
    let races = losing_answers(&endpoint, move |_| {
        commit_on_top(&rival, "rival", 10);
    });
    let racing = EtcdStore::open(&through(races), GATE).unwrap();
    let late = write_on(2, Environment::Production, Some("late"));
    assert_eq!(
        racing.commit(&late).unwrap(),
        Commit::Conflict {
            stored_version: 3,
            another_file: false,
        }
    );
    let stored = store.load().unwrap().unwrap();
    let reasons: Vec<_> = stored.history.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["bad deploy", "rival"]);
}

#[test]
fn a_history_larger_than_one_answer_is_read_in_pages_as_far_as_the_gate_keeps_it() {
    use crate::history::RollbackHistory;
    let Some(endpoint) = endpoint("etcd large history") else {
        return;
    };
    let settings = settings(&endpoint, "large-history");
    let store = EtcdStore::open(&settings, GATE).unwrap();
    // 3 000 events of 4 000-byte reasons, written by hand 25 to a transaction (100 KB each,
    // well within the store's request timeout on a loaded host): about 17 MB of answer read
    // whole, above ureq's default limit of 10 MiB.
    let events = 3_000u64;
    let stored: Vec<StoredEvent> = (1..=events)
        .map(|version| {
            let reason = format!("{version:04} {}", "r".repeat(3_995));
            StoredEvent::from_event(version, &event(&reason))
        })
        .collect();
    for batch in stored.chunks(25) {
        let puts: Vec<Value> = batch
            .iter()
            .map(|e| {
                put(
                    &store.history_key(e.version),
                    &serde_json::to_vec(e).unwrap(),
                )
            })
            .collect();
        store
            .call("/v3/kv/txn", &json!({ "success": puts }))
            .unwrap();
    }
    let mut config = config(Environment::Production);
    config.max_rollback_history = 5_000;
    let release = StoredRelease {
        version: events,
        stage: events,
        config: config.clone(),
        rollbacks: None,
        rollout: None,
        epoch: 0,
    };
    let release = serde_json::to_vec(&release).unwrap();
    let put_release = json!({ "success": [put(&store.key("release"), &release)] });
    store.call("/v3/kv/txn", &put_release).unwrap();

    // The read keeps what the gate's history keeps of the whole: the newest within
    // MAX_ROLLBACK_HISTORY_BYTES, here about 1 000 events over 4 pages.
    let mut kept = RollbackHistory::default();
    kept.replace(stored.iter().map(|e| e.to_event().unwrap()), 5_000);
    let expected: Vec<StoredEvent> = stored[stored.len() - kept.to_vec().len()..].to_vec();
    assert!((HISTORY_PAGE * 2..events as usize).contains(&expected.len()));
    let state = store.load().unwrap().unwrap();
    assert_eq!(state.history, expected);
    // And a gate opens on it.
    let mut document = config;
    document.store = Some(crate::StoreConfig::Etcd(settings));
    let gate = crate::PromotionGateManager::new(
        document,
        crate::SloAdmissionController::new(crate::SloConfig::default()).unwrap(),
    )
    .unwrap();
    let history = gate.rollback_history();
    assert_eq!(history.len(), expected.len());
    assert!(history.last().unwrap().reason.starts_with("3000 "));
}

#[test]
fn an_answer_larger_than_a_store_of_ours_gives_is_refused_as_not_ours_naming_the_limit() {
    // Needs no etcd: a member that answers every request with 12 MiB.
    let body = "x".repeat(12 << 20);
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (endpoint, _) = answering_at_once(Box::leak(answer.into_boxed_str()));
    let store = EtcdStore::new(&settings(&endpoint, "huge"), GATE);
    let err = store.load().unwrap_err();
    assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
    let limit = store.one_key_answer();
    assert!(
        err.to_string()
            .contains(&format!("an answer above {limit} bytes")),
        "{err}"
    );
}

#[test]
fn a_read_takes_the_newest_events_the_release_keeps_and_refuses_a_bad_one_naming_it() {
    let Some(endpoint) = endpoint("etcd history read") else {
        return;
    };
    let store = EtcdStore::open(&settings(&endpoint, "history-read"), GATE).unwrap();
    for i in 1..=4 {
        commit_on_top(&store, &format!("r{i}"), 100);
    }
    let put = |key: String, value: Vec<u8>| {
        let put = json!({"key": BASE64.encode(key), "value": BASE64.encode(value)});
        store.call("/v3/kv/put", &put).unwrap();
    };
    // A release that keeps 2 events beside 4 stored keys (written by hand): the read takes
    // the newest 2, never every key.
    let state = store.load().unwrap().unwrap();
    let mut release = state.release.clone();
    release.config.max_rollback_history = 2;
    put(store.key("release"), serde_json::to_vec(&release).unwrap());
    let reasons = |state: StoredState| -> Vec<String> {
        state.history.into_iter().map(|e| e.reason).collect()
    };
    assert_eq!(reasons(store.load().unwrap().unwrap()), ["r3", "r4"]);
    let refused = |words: &[&str]| {
        let err = store.load().unwrap_err();
        assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
        for word in words {
            assert!(err.to_string().contains(word), "{word:?} not in {err}");
        }
    };
    let mut last = state.history[3].clone();
    last.reason = "r".repeat(crate::MAX_REASON_BYTES + 1);
    put(store.history_key(4), serde_json::to_vec(&last).unwrap());
    refused(&["history.reason = \"rrr", "4097 bytes", "event 4"]);
    last.reason = "r4".into();
    last.version = 3;
    put(store.history_key(4), serde_json::to_vec(&last).unwrap());
    refused(&["history/00000000000000000004\": holds history.version = 3"]);
    // The event's fields in order, an array, as serde's derived reader took it.
    let positional = json!([
        4,
        last.rolled_back,
        last.feature,
        "r4",
        last.trigger,
        last.environment,
        last.timestamp_ns
    ]);
    put(
        store.history_key(4),
        serde_json::to_vec(&positional).unwrap(),
    );
    refused(&[
        "history/00000000000000000004\": not a history event: history: must be a JSON object \
         with named fields, not an array at line 1 column 1",
    ]);
    // A key in the history's range written by hand, 20 000 bytes with a line break: shown
    // escaped and cut, as every value is, not whole (a huge, log-forging message).
    put(
        store.history_key(4),
        serde_json::to_vec(&state.history[3]).unwrap(),
    );
    let long = format!("{}\n{}", store.history_key(4), "x".repeat(20_000));
    put(long.clone(), serde_json::to_vec(&state.history[3]).unwrap());
    let err = store.load().unwrap_err();
    assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
    let message = err.to_string();
    assert!(message.len() < 1_000, "{} bytes", message.len());
    assert!(!message.contains('\n'), "{message}");
    // Where the cut falls depends on the test's key prefix (its length varies by run).
    assert!(message.contains("\\nxxx"), "{message}");
    assert!(
        message.contains(&format!(
            "xxx\"...({} bytes): holds history.version = 4",
            long.len()
        )),
        "{message}"
    );
}

/// A history key that is not one this build writes (any key in the range: written by hand, by
/// another program, or by a member that is not etcd) is shown as every value is, escaped and
/// cut at [`MAX_SHOWN_VALUE_BYTES`](crate::MAX_SHOWN_VALUE_BYTES), not whole: a key of 20 000
/// bytes holding a line break made a message as long, which a log took for two lines.
#[test]
fn a_history_key_not_ours_is_shown_escaped_and_cut() {
    let release = format!(
        r#"{{"version": 2, "stage": 2, "config": {{"gate": "{GATE}", "environment": "production"}}}}"#
    );
    let event = r#"{"version": 2, "rolled_back": "release", "feature": "canary", "reason": "r",
        "trigger": "manual", "environment": "production", "timestamp_ns": 1}"#;
    let key = format!("/history/2\n{}", "x".repeat(20_000));
    for (value, words) in [
        (event, "holds history.version = 2"),
        ("x", "not a history event: "),
    ] {
        let (endpoint, _, _) =
            answering_in_turn(vec![release_answer(&release), one_key_answer(&key, value)]);
        let store = EtcdStore::new(&settings(&endpoint, "long-history-key"), GATE);
        let err = store.load().unwrap_err();
        assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
        let message = err.to_string();
        assert!(message.len() < 1_000, "{words}: {} bytes", message.len());
        assert!(!message.contains('\n'), "{message}");
        let shown = format!(
            "\"/history/2\\n{}\"...(20011 bytes): {words}",
            "x".repeat(149)
        );
        assert!(message.contains(&shown), "{shown:?} not in {message}");
    }
}

/// A release key put back alone to an older version (a restored key, one put by hand) leaves
/// the history of the writes since: a read takes the history up to the release's version, and
/// the next write deletes the keys from its own version on.
#[test]
fn history_above_the_release_is_not_read_and_the_next_write_deletes_it() {
    let Some(endpoint) = endpoint("etcd history above") else {
        return;
    };
    let store = EtcdStore::open(&settings(&endpoint, "history-above"), GATE).unwrap();
    let release = store.key("release");
    commit_on_top(&store, "r1", 100);
    commit_on_top(&store, "r2", 100);
    let kept = store.get(&release, None).unwrap().0.unwrap().value;
    commit_on_top(&store, "r3", 100);
    commit_on_top(&store, "r4", 100);
    let put = json!({"key": BASE64.encode(&release), "value": BASE64.encode(&kept)});
    store.call("/v3/kv/put", &put).unwrap();
    let reasons = |state: StoredState| -> Vec<String> {
        state.history.into_iter().map(|e| e.reason).collect()
    };
    assert_eq!(reasons(store.load().unwrap().unwrap()), ["r1", "r2"]);
    let Since::Reset(Some(state)) = store.changes_since(known(4)).unwrap() else {
        panic!("the store went back to version 2")
    };
    assert_eq!(reasons(state), ["r1", "r2"]);
    let keys = || {
        let range = json!({
            "key": BASE64.encode(store.history_start()),
            "range_end": BASE64.encode(store.history_end()),
            "count_only": true,
        });
        text_of(&store.call("/v3/kv/range", &range).unwrap()["count"])
    };
    assert_eq!(keys(), "4");
    // A write without an event deletes the keys from its version on; one with an event puts
    // its own over the leftover of its version.
    let production = write_on(2, Environment::Production, None);
    assert_eq!(
        store.commit(&production).unwrap(),
        Commit::Written { epoch: 0 }
    );
    assert_eq!(keys(), "2");
    commit_on_top(&store, "r4 again", 100);
    store.call("/v3/kv/put", &put).unwrap(); // back to version 2 once more
    commit_on_top(&store, "r3 again", 100);
    assert_eq!(keys(), "3");
    assert_eq!(
        reasons(store.load().unwrap().unwrap()),
        ["r1", "r2", "r3 again"]
    );
}

#[test]
fn a_foreign_schema_and_an_unreachable_cluster_are_errors_naming_the_store() {
    let Some(endpoint) = endpoint("etcd foreign schema") else {
        return;
    };
    let settings = settings(&endpoint, "foreign");
    let store = EtcdStore::open(&settings, GATE).unwrap();
    let key = store.key("schema");
    store
        .call(
            "/v3/kv/put",
            &json!({"key": BASE64.encode(&key), "value": BASE64.encode("7")}),
        )
        .unwrap();
    let err = EtcdStore::open(&settings, GATE).unwrap_err();
    assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
    assert!(err.to_string().contains(&settings.prefix), "{err}");

    let nowhere = EtcdStoreConfig {
        endpoints: vec!["http://127.0.0.1:9".into()],
        ..settings
    };
    let err = EtcdStore::open(&nowhere, GATE).unwrap_err();
    assert_eq!(err.problem(), StoreProblem::Unavailable, "{err}");
    assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
}

#[test]
fn a_watch_resumes_after_the_state_read_and_ends_when_stopped() {
    let Some(endpoint) = endpoint("etcd watch resumes") else {
        return;
    };
    let _alone = WATCH_THREADS.lock().unwrap_or_else(|e| e.into_inner());
    let settings = settings(&endpoint, "resume");
    let reader = EtcdStore::open(&settings, GATE).unwrap();
    // Written after `reader` read the state and before its watch starts.
    commit_on_top(&EtcdStore::open(&settings, GATE).unwrap(), "between", 10);
    let (woken, wakes) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let watch = reader
        .watch(
            Box::new(move || {
                let _ = woken.send(());
            }),
            Arc::clone(&stop),
        )
        .unwrap();
    assert_eq!(
        wakes.recv_timeout(Duration::from_secs(5)),
        Ok(()),
        "the write made before the watch started wakes it"
    );
    // The next spans resume after that event: it does not wake the watch again.
    assert_eq!(
        wakes.recv_timeout(WATCH_SPAN * 3),
        Err(mpsc::RecvTimeoutError::Timeout)
    );
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + WATCH_SPAN * 5;
    while !watch.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(watch.is_finished(), "the watch thread ends once stopped");
    watch.join().unwrap();
}

/// A loopback HTTP server that answers every request at once with `answer` and closes the
/// connection: its endpoint, and how many requests it was sent.
fn answering_at_once(answer: &'static str) -> (String, Arc<AtomicU64>) {
    let (endpoint, requests, _) = answering_at_once_noting(answer);
    (endpoint, requests)
}

/// [`answering_at_once`], and the bodies of the requests it was sent.
fn answering_at_once_noting(
    answer: &'static str,
) -> (String, Arc<AtomicU64>, Arc<Mutex<Vec<String>>>) {
    answering_in_turn(vec![answer])
}

/// [`answering_at_once_noting`], but the `n`th request (from 0) answered with `answers[n]`, and
/// every one past them with the last.
fn answering_in_turn(
    answers: Vec<&'static str>,
) -> (String, Arc<AtomicU64>, Arc<Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&requests);
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let noted = Arc::clone(&bodies);
    std::thread::spawn(move || {
        for connection in listener.incoming() {
            let Ok(mut connection) = connection else {
                continue;
            };
            // The answer does not depend on the request, but it is read whole: a connection
            // closed on a body not read is reset, and the answer lost.
            let mut head = Vec::new();
            let mut byte = [0; 1];
            while !head.ends_with(b"\r\n\r\n") && connection.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let length = String::from_utf8_lossy(&head)
                .to_ascii_lowercase()
                .lines()
                .find_map(|line| {
                    line.strip_prefix("content-length:")
                        .map(str::trim)
                        .map(str::to_string)
                })
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            let _ = connection.read_exact(&mut body);
            noted
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            let n = counted.fetch_add(1, Ordering::Relaxed);
            let answer = answers[usize::try_from(n).unwrap().min(answers.len() - 1)];
            let _ = connection.write_all(answer.as_bytes());
        }
    });
    (endpoint, requests, bodies)
}

/// A loopback endpoint that accepts connections and never answers (a hung member, or one
/// behind a partition that still accepts): its endpoint, and how many connections it took.
fn hanging() -> (String, Arc<AtomicU64>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&accepted);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for connection in listener.incoming() {
            counted.fetch_add(1, Ordering::Relaxed);
            held.push(connection);
        }
    });
    (endpoint, accepted)
}

#[test]
fn a_member_that_hangs_costs_its_timeout_once_not_at_every_request() {
    let _alone = WATCH_THREADS.lock().unwrap_or_else(|e| e.into_inner());
    // Needs no etcd: the second member answers every request with an empty range.
    let (hung, accepted) = hanging();
    let (answering, answered) = answering_at_once(
        "HTTP/1.1 200 OK\r\nContent-Length: 27\r\nConnection: close\r\n\r\n{\"header\":{\"revision\":\"5\"}}",
    );
    let config = EtcdStoreConfig {
        endpoints: vec![hung, answering],
        ..settings("http://unused", "hung")
    };
    let store = EtcdStore::new(&config, GATE);
    let start = Instant::now();
    assert_eq!(store.load().unwrap(), None);
    assert!(
        start.elapsed() >= REQUEST_TIMEOUT,
        "the hung member was asked first"
    );
    let start = Instant::now();
    for _ in 0..5 {
        assert_eq!(store.load().unwrap(), None);
    }
    let took = start.elapsed();
    assert!(took < REQUEST_TIMEOUT, "5 reads took {took:?}");
    assert_eq!(answered.load(Ordering::Relaxed), 6);
    // The watch starts with the member that answers too.
    let stop = Arc::new(AtomicBool::new(false));
    let watch = store.watch(Box::new(|| {}), Arc::clone(&stop)).unwrap();
    std::thread::sleep(WATCH_SPAN * 5 / 2);
    stop.store(true, Ordering::Relaxed);
    watch.join().unwrap();
    assert_eq!(accepted.load(Ordering::Relaxed), 1, "asked once");
}

#[test]
fn a_watch_answered_at_once_with_an_error_or_nothing_pauses_between_requests() {
    let _alone = WATCH_THREADS.lock().unwrap_or_else(|e| e.into_inner());
    for answer in [
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
        // A stream that ends before its span: no event, no error.
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        // A watch canceled at once, as a member with auth switched on after the gate opened
        // answers every watch: it was asked again at once, thousands of times a second.
        concat!(
            "HTTP/1.1 200 OK\r\nContent-Length: 118\r\nConnection: close\r\n\r\n",
            r#"{"result":{"header":{"revision":"7"},"created":true,"canceled":true,"#,
            r#""cancel_reason":"etcdserver: permission denied"}}"#,
            "\n"
        ),
    ] {
        let (endpoint, requests) = answering_at_once(answer);
        let store = EtcdStore::new(&settings(&endpoint, "fast-errors"), GATE);
        let sent = watch_requests_in_a_span_and_a_half(&store, &requests);
        assert!(
            (1..=3).contains(&sent),
            "{sent} watch requests in 1.5 s to a member answering {answer:?}"
        );
    }
}

/// A watch found behind (its start beyond the member's revision: a new cluster, a restored
/// snapshot) pauses too before the next: one answered with ever lower revisions was asked
/// again at once each time.
#[test]
fn a_watch_found_behind_at_once_pauses_before_the_next_request() {
    let _alone = WATCH_THREADS.lock().unwrap_or_else(|e| e.into_inner());
    let answers = (0..20)
        .map(|i| {
            let body = format!(
                r#"{{"result":{{"header":{{"revision":"{}"}},"created":true}}}}"#,
                900_000 - i * 1_000
            ) + "\n";
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            &*Box::leak(answer.into_boxed_str())
        })
        .collect();
    let (endpoint, requests, _) = answering_in_turn(answers);
    let store = EtcdStore::new(&settings(&endpoint, "behind"), GATE);
    store.read_revision.store(1_000_000, Ordering::Relaxed);
    let sent = watch_requests_in_a_span_and_a_half(&store, &requests);
    assert!((1..=3).contains(&sent), "{sent} watch requests in 1.5 s");
}

/// How many requests `store`'s watch sends in one and a half spans from its first (to a member
/// that answers at once: the first request, a pause of one span, the second request), counted
/// by `requests`. The span starts at the first request, not at the watch's start: on a loaded
/// host the watch thread may take longer than that to send it (a run once counted none).
fn watch_requests_in_a_span_and_a_half(store: &EtcdStore, requests: &AtomicU64) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let watch = store.watch(Box::new(|| {}), Arc::clone(&stop)).unwrap();
    let started = Instant::now();
    while requests.load(Ordering::Relaxed) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the watch sent no request in 60 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(WATCH_SPAN * 3 / 2);
    stop.store(true, Ordering::Relaxed);
    watch.join().unwrap();
    requests.load(Ordering::Relaxed)
}

#[test]
fn a_members_error_answer_is_shown_shortened() {
    for status in ["500 Internal Server Error", "404 Not Found"] {
        let body = "y".repeat(100_000);
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let (endpoint, _) = answering_at_once(Box::leak(answer.into_boxed_str()));
        let store = EtcdStore::new(&settings(&endpoint, "error-body"), GATE);
        let error = store.load().unwrap_err().to_string();
        assert!(error.len() < 1_000, "{status}: {} bytes", error.len());
        assert!(error.contains("...(100000 bytes)"), "{error}");
    }
}

/// An answer that grants no lease is shown shortened, as an error answer is: it was shown
/// whole, as long as an answer is let be (megabytes).
#[test]
fn an_answer_granting_no_lease_is_shown_shortened() {
    let body = format!(r#"{{"ID":"0","error":"{}"}}"#, "y".repeat(100_000));
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (endpoint, _) = answering_at_once(Box::leak(answer.into_boxed_str()));
    let store = EtcdStore::new(&settings(&endpoint, "no-lease"), GATE);
    let err = store
        .publish(&contribution("a", 2, 100), KNOWN, Duration::from_secs(5))
        .unwrap_err();
    assert_eq!(err.problem(), StoreProblem::Unavailable, "{err}");
    let message = err.to_string();
    assert!(message.len() < 1_000, "{} bytes", message.len());
    assert!(
        message.contains(r#"no lease granted: {"ID":"0","error":"yyy"#),
        "{message}"
    );
    assert!(
        message.contains(&format!("...({} bytes)", body.len())),
        "{message}"
    );
}

#[test]
fn a_watch_answer_longer_than_one_event_is_not_read_whole() {
    let _alone = WATCH_THREADS.lock().unwrap_or_else(|e| e.into_inner());
    let limit = EtcdStore::new(&settings("http://unused", "long-line"), GATE).one_key_answer();
    // Larger than any answer holding the release: a batch of several large events, whose
    // header says when it was sent; or a member that is not etcd, one line with no header.
    let batch = format!(
        r#"{{"result":{{"header":{{"cluster_id":"1","member_id":"2","revision":"41","raft_term":"3"}},"events":[{}"#,
        "x".repeat(limit)
    );
    for (body, next_from) in [(batch, Some("42")), ("x".repeat(limit + 1), None)] {
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let (endpoint, _, requests) = answering_at_once_noting(Box::leak(answer.into_boxed_str()));
        let store = EtcdStore::new(&settings(&endpoint, "long-line"), GATE);
        let (woke, wakes) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let watch = store
            .watch(
                Box::new(move || {
                    let _ = woke.send(());
                }),
                Arc::clone(&stop),
            )
            .unwrap();
        // Read up to the limit, then given up: the gate reads the store instead, and the next
        // watch starts after the batch (a pause of a span first: the answer came at once).
        let woken = wakes.recv_timeout(Duration::from_secs(10));
        std::thread::sleep(WATCH_SPAN * 3 / 2);
        stop.store(true, Ordering::Relaxed);
        watch.join().unwrap();
        assert!(woken.is_ok(), "the watch never gave the line up");
        let requests = requests.lock().unwrap();
        assert!(requests.len() >= 2, "{} watch requests", requests.len());
        let second: Value = serde_json::from_str(&requests[1]).unwrap();
        let start = &second["create_request"]["start_revision"];
        assert_eq!(start.as_str(), next_from, "{second}");
    }
}

#[test]
fn dropping_a_gate_ends_its_watch_thread() {
    let Some(endpoint) = endpoint("etcd watch joined") else {
        return;
    };
    let _alone = WATCH_THREADS.lock().unwrap_or_else(|e| e.into_inner());
    let before = watch_threads();
    let config = crate::PromotionConfig {
        gate: "checkout".into(),
        store: Some(crate::StoreConfig::Etcd(settings(&endpoint, "joined"))),
        ..Default::default()
    };
    let slo = crate::SloAdmissionController::new(crate::SloConfig::default()).unwrap();
    let gate = crate::PromotionGateManager::new(config, slo).unwrap();
    // This gate's watch thread, by its thread id: other tests' threads may come and go. A
    // thread takes its name once it runs.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut ours = Vec::new();
    while ours.is_empty() && Instant::now() < deadline {
        ours = watch_threads().difference(&before).cloned().collect();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!ours.is_empty(), "the gate started a watch thread");
    drop(gate);
    // Joined: gone at once, but for the last steps of its exit, which take microseconds. A
    // thread left running would still wait in its watch request (up to a second).
    let deadline = Instant::now() + Duration::from_millis(50);
    let mut left = watch_threads();
    while ours.iter().any(|id| left.contains(id)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
        left = watch_threads();
    }
    assert!(
        ours.iter().all(|id| !left.contains(id)),
        "the watch thread is joined on drop: {ours:?} still in {left:?}"
    );
}

#[test]
fn contributions_are_read_per_stage_and_expire_with_their_instances_lease() {
    let Some(endpoint) = endpoint("etcd contributions") else {
        return;
    };
    let settings = settings(&endpoint, "contributions");
    let (a, b) = (
        EtcdStore::open(&settings, GATE).unwrap(),
        EtcdStore::open(&settings, GATE).unwrap(),
    );
    let ttl = Duration::from_secs(1);
    a.publish(&contribution("a", 2, 100), KNOWN, ttl).unwrap();
    b.publish(&contribution("b", 2, 200), KNOWN, ttl).unwrap();
    // Publishing again keeps the lease alive and replaces the value.
    b.publish(&contribution("b", 2, 250), KNOWN, ttl).unwrap();
    let read = a.contributions(KNOWN, "a", ttl).unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].as_ref().unwrap(), &contribution("b", 2, 250));
    assert!(
        a.contributions(Guard { stage: 3, ..KNOWN }, "a", ttl)
            .unwrap()
            .is_empty(),
        "another stage"
    );
    // A foreign or corrupt value is refused on its own, naming the instance and the field.
    let bad = json!({"stage": 2, "canary": {"requests": 5, "errors": 1, "compliant": 4, "latency": "@@"}});
    let lease = a
        .call("/v3/lease/grant", &json!({"TTL": "60"}))
        .map(|granted| text_of(&granted["ID"]))
        .unwrap();
    a.call(
        "/v3/kv/put",
        &json!({"key": BASE64.encode(a.contribution_key("forged")), "value": BASE64.encode(bad.to_string()), "lease": lease}),
    )
    .unwrap();
    // A sane value on a key without a lease, which would never expire, is refused too, naming
    // the lease.
    let (found, _) = a.get(&b.contribution_key("b"), None).unwrap();
    a.call(
        "/v3/kv/put",
        &json!({"key": BASE64.encode(a.contribution_key("unleased")), "value": BASE64.encode(found.unwrap().value)}),
    )
    .unwrap();
    let read_by = |store: &EtcdStore, except: &str| {
        let mut read: Vec<String> = store
            .contributions(KNOWN, except, ttl)
            .unwrap()
            .into_iter()
            .map(|r| match r {
                Ok(c) => format!("{} ok", c.instance),
                Err(bad) => format!("{} {}", bad.instance, bad.field),
            })
            .collect();
        read.sort();
        read
    };
    assert_eq!(
        read_by(&a, "a"),
        ["b ok", "forged canary.latency", "unleased lease"]
    );
    let refused = a
        .contributions(KNOWN, "a", ttl)
        .unwrap()
        .into_iter()
        .find_map(|r| r.err().filter(|bad| bad.instance == "unleased"))
        .unwrap();
    assert_eq!(
        refused.to_string(),
        "contribution of instance \"unleased\": lease: none (0): expected the publishing instance's lease, without which the key never expires (put by hand? delete it)"
    );
    // b stops publishing (a dead instance): its key goes with its lease. etcd may round a short
    // lease up to its minimum, so the bound is generous.
    let start = Instant::now();
    while a
        .contributions(KNOWN, "a", ttl)
        .unwrap()
        .iter()
        .any(|r| r.as_ref().is_ok_and(|c| c.instance == "b"))
    {
        assert!(start.elapsed() < Duration::from_secs(20), "b never expired");
        a.publish(&contribution("a", 2, 100), KNOWN, ttl).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    // a's own key lives on while a publishes; the key without a lease is still refused.
    assert_eq!(
        read_by(&b, "b"),
        ["a ok", "forged canary.latency", "unleased lease"]
    );
}

#[test]
fn a_refused_contribution_names_the_field_shows_the_value_and_what_was_expected() {
    let cohort = json!({"requests": 5, "errors": 1, "compliant": 4, "latency": "AAAA"});
    let sane = json!({"stage": 2, "canary": cohort, "stable": cohort});
    let refusal = |edit: &dyn Fn(&mut Value)| {
        let mut value = sane.clone();
        edit(&mut value);
        let read = json_of("i", value.to_string().as_bytes())
            .and_then(|value| contribution_in("i", &value));
        read.unwrap_err()
            .to_string()
            .trim_start_matches("contribution of instance \"i\": ")
            .to_string()
    };
    assert!(contribution_in("i", &sane).is_ok());
    /// A change to the sane value.
    type Edit<'a> = &'a dyn Fn(&mut Value);
    let cases: [(Edit, &str); 9] = [
        (
            &|v| v["canary"]["latency"] = json!(5),
            "canary.latency: 5 (number): expected a V2 histogram in base64 (text)",
        ),
        (
            &|v| v["stable"]["latency"] = json!("@@"),
            "stable.latency: \"@@\" (text): expected base64 (Invalid symbol 64, offset 0.)",
        ),
        (
            &|v| v["canary"]["errors"] = json!(-3),
            "canary.errors: -3 (number): expected a count (a whole number, 0 or more)",
        ),
        (
            &|v| v["stable"]["requests"] = json!(1.5),
            "stable.requests: 1.5 (number): expected a count (a whole number, 0 or more)",
        ),
        (
            &|v| {
                v["canary"].as_object_mut().unwrap().remove("compliant");
            },
            "canary.compliant: missing: expected a count (a whole number, 0 or more)",
        ),
        (
            &|v| {
                v.as_object_mut().unwrap().remove("canary");
            },
            "canary: missing: expected an object of requests, errors, compliant and latency",
        ),
        (
            &|v| v["stable"] = json!("x".repeat(300)),
            &format!(
                "stable: \"{}...(302 bytes) (text): expected an object of requests, errors, compliant and latency",
                "x".repeat(159)
            ),
        ),
        (
            &|v| *v = json!([2]),
            "value: [2] (array): expected an object of stage, canary and stable",
        ),
        (
            &|v| v["stage"] = json!(null),
            "stage: null (null): expected a count (a whole number, 0 or more)",
        ),
    ];
    for (edit, expected) in cases {
        assert_eq!(refusal(edit), expected);
    }
    let not_json = json_of("i", b"stage=2\xff").unwrap_err();
    assert_eq!(
        not_json.to_string(),
        "contribution of instance \"i\": value: \"stage=2\\xff\": expected a contribution's JSON (expected value at line 1 column 1)"
    );
}

/// The value `store` published for `instance`, at `stage` instead of its own.
fn published_at(store: &EtcdStore, instance: &str, stage: u64) -> Vec<u8> {
    let (found, _) = store.get(&store.contribution_key(instance), None).unwrap();
    let mut value: Value = serde_json::from_slice(&found.unwrap().value).unwrap();
    value["stage"] = json!(stage);
    value.to_string().into_bytes()
}

/// Puts each of `kvs` (instance, value) under `store`'s contribution keys, with a lease of a
/// minute unless `leased` is false, 100 keys a transaction (etcd takes 128 at most).
fn put_contributions(store: &EtcdStore, kvs: &[(String, Vec<u8>)], leased: bool) {
    let lease = leased.then(|| {
        let granted = store
            .call("/v3/lease/grant", &json!({"TTL": "60"}))
            .unwrap();
        text_of(&granted["ID"])
    });
    for batch in kvs.chunks(100) {
        let puts: Vec<Value> = batch
            .iter()
            .map(|(instance, value)| {
                let mut put = json!({
                    "key": BASE64.encode(store.contribution_key(instance)),
                    "value": BASE64.encode(value),
                });
                if let Some(lease) = &lease {
                    put["lease"] = json!(lease);
                }
                json!({ "request_put": put })
            })
            .collect();
        let answer = store
            .call_within(
                "/v3/kv/txn",
                &json!({"compare": [], "success": puts}),
                usize::MAX,
            )
            .unwrap();
        assert_eq!(answer["succeeded"].as_bool(), Some(true));
    }
}

/// The instances of `read`, each followed by ` ok` or by the refused field.
fn read_as_text(read: Vec<Result<Contribution, BadContribution>>) -> Vec<String> {
    read.into_iter()
        .map(|r| match r {
            Ok(c) => format!("{} ok", c.instance),
            Err(bad) => format!("{} {}", bad.instance, bad.field),
        })
        .collect()
}

/// The time to live of the contributions the tests below publish.
const MINUTE: Duration = Duration::from_secs(60);

/// A store of its own prefix (`name`), where `instance` published its contribution to stage 2,
/// for a minute; `None` without an etcd to test against.
fn published_by(name: &str, instance: &str) -> Option<EtcdStore> {
    let endpoint = endpoint(&format!("etcd {name}"))?;
    let store = EtcdStore::open(&settings(&endpoint, name), GATE).unwrap();
    store
        .publish(&contribution(instance, 2, 100), KNOWN, MINUTE)
        .unwrap();
    Some(store)
}

#[test]
fn contributions_of_another_stage_however_many_and_new_hide_none_of_the_stage() {
    let Some(a) = published_by("other-stages", "real") else {
        return;
    };
    // More instances still at stage 1 than a page holds, all published after it: a read of
    // the newest 257 keys found none of stage 2.
    let behind = published_at(&a, "real", 1);
    let others: Vec<(String, Vec<u8>)> = (0..300)
        .map(|n| (format!("behind-{n:03}"), behind.clone()))
        .collect();
    put_contributions(&a, &others, true);
    let read = read_as_text(a.contributions(KNOWN, "a", MINUTE).unwrap());
    assert_eq!(read, ["real ok"]);
    // Of stage 1, the newest 256: the last two transactions' 200, then 56 of the first's
    // (one revision: the first in key order).
    let read = read_as_text(
        a.contributions(Guard { stage: 1, ..KNOWN }, "a", MINUTE)
            .unwrap(),
    );
    assert_eq!(read.len(), MAX_INSTANCES);
    assert_eq!(read[0], "behind-200 ok");
    assert_eq!(read[MAX_INSTANCES - 1], "behind-055 ok");
    assert!(!read.contains(&"behind-056 ok".to_string()), "{read:?}");
}

#[test]
fn a_read_of_contributions_stops_at_its_page_bound_and_says_so_once() {
    use crate::telemetry::log_lines::LogLines;
    let Some(a) = published_by("contributions-bound", "a") else {
        return;
    };
    let bound = MAX_CONTRIBUTION_PAGES * CONTRIBUTION_PAGE;
    // Keys in key order: "early" first, then stage 1's, then "zz-late", beyond the bound.
    let behind = published_at(&a, "a", 1);
    let mut kvs: Vec<(String, Vec<u8>)> = (0..bound)
        .map(|n| (format!("k-{n:05}"), behind.clone()))
        .collect();
    kvs.push(("early".to_string(), published_at(&a, "a", 2)));
    kvs.push(("zz-late".to_string(), published_at(&a, "a", 2)));
    put_contributions(&a, &kvs, true);
    let keys = bound + 3;
    let lines = LogLines::default();
    let read = lines.during(|| read_as_text(a.contributions(KNOWN, "b", MINUTE).unwrap()));
    assert_eq!(
        read,
        ["early ok", "a ok"],
        "the newest first, within the bound"
    );
    let warned = lines.lines_at(tracing::Level::WARN);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains(&format!(
            "reads the first {bound} of {keys} contribution keys"
        )),
        "{warned:?}"
    );
    // Not again while it lasts; again once it ended and came back.
    lines.during(|| a.contributions(KNOWN, "b", MINUTE).unwrap());
    assert_eq!(lines.lines_at(tracing::Level::WARN).len(), 1);
    // Three keys fewer: every key is read, "zz-late" too (put with "early", at its revision).
    let deleted = delete_range(
        &a,
        &a.contribution_key("k-00000"),
        &a.contribution_key("k-00003"),
    );
    assert_eq!(deleted, "3");
    let read = lines.during(|| read_as_text(a.contributions(KNOWN, "b", MINUTE).unwrap()));
    assert_eq!(read, ["early ok", "zz-late ok", "a ok"]);
    assert_eq!(lines.lines_at(tracing::Level::WARN).len(), 1);
    put_contributions(&a, &kvs[..1], true);
    lines.during(|| a.contributions(KNOWN, "b", MINUTE).unwrap());
    assert_eq!(lines.lines_at(tracing::Level::WARN).len(), 2);
}

/// An instance id that is not UTF-8 (a key put by hand) is refused showing its bytes: read as
/// text, `x\xff` and `x\xfe` would be one instance, counted once. Its length is its bytes'.
#[test]
fn contribution_keys_whose_instance_is_not_utf8_are_refused_each_showing_its_bytes() {
    let Some(a) = published_by("not-utf8", "ok") else {
        return;
    };
    let value = published_at(&a, "ok", 2);
    let granted = a.call("/v3/lease/grant", &json!({"TTL": "60"})).unwrap();
    for id in [&b"x\xff"[..], b"x\xfe", &[0xff; 200], &[0xff; 300]] {
        let mut key = a.contribution_key("").into_bytes();
        key.extend_from_slice(id);
        a.call(
            "/v3/kv/put",
            &json!({"key": BASE64.encode(key), "value": BASE64.encode(&value), "lease": text_of(&granted["ID"])}),
        )
        .unwrap();
    }
    let lines = sorted_lines(a.contributions(KNOWN, "a", MINUTE).unwrap());
    assert_eq!(
        lines,
        [
            format!(
                r#"contribution of instance "?": instance: "{}"...(200 bytes): expected UTF-8 text"#,
                r"\xff".repeat(160)
            ),
            r#"contribution of instance "?": instance: "x\xfe": expected UTF-8 text"#.to_string(),
            r#"contribution of instance "?": instance: "x\xff": expected UTF-8 text"#.to_string(),
            format!(
                r#"contribution of instance "{}"...(300 bytes): instance: 300 bytes is above 256"#,
                "\u{fffd}".repeat(32)
            ),
            "ok ok".to_string(),
        ]
    );
}

/// What a value no gate wrote holds, in a fake member's page ([`windows_over_one_large_value`]).
#[derive(Clone, Copy)]
enum LargeValue {
    /// A value of this many bytes (as written; etcd answers it in base64).
    Of(usize),
    /// A value above what any window holding it takes (a cluster whose `--max-request-bytes`
    /// was raised): the answer streams until the store stops reading it.
    AboveEveryWindow,
}

/// What [`EtcdStore::windows`] did over a page ([`windows_over_one_large_value`]).
#[derive(Debug, PartialEq)]
struct WindowsRead {
    /// How many keys each window held, in turn.
    widths: Vec<usize>,
    /// The key-values refused: their keys' indices, and the limit named.
    refused: Vec<(usize, Option<usize>)>,
    /// The key it stopped at (`None`: every key read).
    stop: Option<usize>,
    /// The requests spent.
    spent: usize,
}

/// The windows `store`'s [`EtcdStore::windows`] reads over a page of [`CONTRIBUTION_PAGE`] keys
/// whose `large`th holds `value`, the others a small one (answered by a fake member: no etcd).
fn windows_over_one_large_value(
    store: &mut EtcdStore,
    large: usize,
    value: LargeValue,
) -> WindowsRead {
    use std::io::Write;
    let keys: Vec<Vec<u8>> = (0..CONTRIBUTION_PAGE)
        .map(|n| {
            store
                .contribution_key(&format!("instance-{n:03}"))
                .into_bytes()
        })
        .collect();
    let widths = Arc::new(Mutex::new(Vec::new()));
    let noted = Arc::clone(&widths);
    let held = keys.clone();
    store.endpoints = vec![serving(move |_, body, client| {
        let range: Value = serde_json::from_str(&body).unwrap();
        let from = BASE64.decode(range["key"].as_str().unwrap()).unwrap();
        let end = range["range_end"]
            .as_str()
            .map(|end| BASE64.decode(end).unwrap());
        let asked: Vec<usize> = (0..held.len())
            .filter(|&n| match &end {
                Some(end) => held[n] >= from && held[n] < *end,
                None => held[n] == from,
            })
            .collect();
        noted.lock().unwrap().push(asked.len());
        if asked.contains(&large) && matches!(value, LargeValue::AboveEveryWindow) {
            let _ = write!(
                client,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                u32::MAX
            );
            let chunk = vec![b' '; 64 * 1024];
            while client.write_all(&chunk).is_ok() {}
            return;
        }
        let kvs: Vec<Value> = asked
            .iter()
            .map(|&n| {
                let written = match value {
                    LargeValue::Of(bytes) if n == large => vec![b'x'; bytes],
                    _ => b"{}".to_vec(),
                };
                json!({
                    "key": BASE64.encode(&held[n]),
                    "value": BASE64.encode(written),
                    "create_revision": "3",
                    "mod_revision": "3",
                    "version": "1",
                })
            })
            .collect();
        let answer = json!({"header": {"revision": "5"}, "kvs": kvs}).to_string();
        let _ = write!(
            client,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
            answer.len()
        );
    })];
    let kvs: Vec<Value> = keys
        .iter()
        .map(|key| json!({"key": BASE64.encode(key)}))
        .collect();
    let listing = Listing {
        kvs: &kvs,
        keys: &keys,
        revision: "5",
    };
    let (mut junk, mut entries) = (JUNK_REQUESTS, Vec::new());
    let stop = store.windows(&listing, &mut junk, &mut entries).unwrap();
    let read: Vec<Vec<u8>> = entries
        .iter()
        .map(|(kv, _)| store.decode(&kv["key"]).unwrap())
        .collect();
    assert_eq!(read, keys, "every key, in key order");
    let refused = entries
        .iter()
        .enumerate()
        .filter(|(_, (_, above))| above.is_some())
        .map(|(n, (_, above))| (n, *above))
        .collect();
    let widths = widths.lock().unwrap().clone();
    WindowsRead {
        widths,
        refused,
        stop,
        spent: JUNK_REQUESTS - junk,
    }
}

/// The cost of a value above a contribution's limit in a page read in windows, as the docs
/// give it (docs/store.md, `JUNK_REQUESTS`): one within etcd's default request limit (1.5 MiB,
/// 2 MiB as base64) fits in a window of 9 keys of small values and is refused within the
/// first window holding it (two windows for the page); one above every window holding it costs
/// 17 windows at the page's first key, 18 at its last, 30 at key 127 (the most).
#[test]
fn one_value_too_large_costs_the_windows_the_docs_give_by_where_it_is() {
    let mut store = EtcdStore::new(&settings("http://127.0.0.1:1", "windows"), GATE);
    let one = store.contributions_answer(1, false);
    // A window of 9 keys takes a value of 1.5 MiB and 8 small ones; one of 8 does not.
    let largest = base64_len(1536 * 1024);
    assert!(store.contributions_answer(8, false) < largest);
    assert!(largest + 8 * (KV_OVERHEAD + 400) < store.contributions_answer(9, false));
    let last = CONTRIBUTION_PAGE - 1;
    let read = |widths: &[usize], at: usize| WindowsRead {
        widths: widths.to_vec(),
        refused: vec![(at, Some(one))],
        stop: None,
        spent: widths.len(),
    };
    for large in [0, last] {
        assert_eq!(
            windows_over_one_large_value(&mut store, large, LargeValue::Of(1536 * 1024)),
            read(&[128, 129], large),
            "a value of 1.5 MiB at key {large}"
        );
    }
    // Halved down to the key, then one key and doubled again (at the first key); halved at each
    // window past it, whose first half is read (at the last).
    assert_eq!(
        windows_over_one_large_value(&mut store, 0, LargeValue::AboveEveryWindow),
        read(
            &[128, 64, 32, 16, 8, 4, 2, 1, 1, 2, 4, 8, 16, 32, 64, 128, 1],
            0
        )
    );
    let widths = [
        128, 129, 64, 65, 32, 33, 16, 17, 8, 9, 4, 5, 2, 3, 1, 2, 1, 1,
    ];
    assert_eq!(
        windows_over_one_large_value(&mut store, last, LargeValue::AboveEveryWindow),
        read(&widths, last)
    );
    let most = windows_over_one_large_value(&mut store, 127, LargeValue::AboveEveryWindow);
    assert_eq!(most, read(&most.widths, 127));
    assert_eq!(most.spent, 30, "{most:?}");
}

#[test]
fn a_value_too_large_to_be_a_contribution_is_refused_alone_naming_its_key() {
    let Some(a) = published_by("oversized", "real") else {
        return;
    };
    // Values no gate writes, each within etcd's request limit (1.5 MiB), together above what
    // a page of contributions takes (about 60 MB as base64).
    let page = a.contributions_answer(CONTRIBUTION_PAGE, false);
    let junk = vec![b'x'; 1400 * 1024];
    let count = page / base64_len(junk.len()) + 1;
    let kvs: Vec<(String, Vec<u8>)> = (0..count)
        .map(|n| (format!("junk-{n:02}"), junk.clone()))
        .collect();
    for kv in &kvs {
        put_contributions(&a, std::slice::from_ref(kv), false);
    }
    let mut read = read_as_text(a.contributions(KNOWN, "a", MINUTE).unwrap());
    read.sort();
    let mut expected: Vec<String> = (0..count).map(|n| format!("junk-{n:02} value")).collect();
    expected.push("real ok".to_string());
    assert_eq!(read, expected);
    let refused = a
        .contributions(KNOWN, "a", MINUTE)
        .unwrap()
        .into_iter()
        .find_map(Result::err)
        .unwrap();
    assert!(
        refused.to_string().starts_with(&format!(
            "contribution of instance \"junk-{:02}\": value: above {} bytes as etcd answers it",
            count - 1,
            a.contributions_answer(1, false)
        )),
        "{refused}"
    );
    // The first read: the page, its listing, then windows of 16, 8, 4, 2 and 1 key to the
    // first value above the limit, one key each for the rest. The reads after it go around
    // the values it found oversized: a page before them (none here), one listing of keys that
    // refuses them again unread, and the page after them. Read whole again, then key by key,
    // they took 2 + 33 requests at every read.
    let requests = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&requests);
    let counting = meddling(&a.endpoints[0], move |_| {
        counted.fetch_add(1, Ordering::Relaxed);
        None
    });
    let b = EtcdStore::open(
        &EtcdStoreConfig {
            endpoints: vec![counting],
            prefix: a.prefix.clone(),
            sync_interval_ms: 1000,
            fleet_judging: true,
        },
        GATE,
    )
    .unwrap();
    let read_counting = || {
        let before = requests.load(Ordering::Relaxed);
        let mut read = read_as_text(b.contributions(KNOWN, "a", MINUTE).unwrap());
        read.sort();
        (read, requests.load(Ordering::Relaxed) - before)
    };
    assert_eq!(
        read_counting(),
        (expected.clone(), 2 + 4 + count as u64 + 1)
    );
    assert_eq!(read_counting(), (expected.clone(), 3));
    assert_eq!(read_counting(), (expected.clone(), 3), "at every read");
    // One made a contribution (a new `mod_revision`) and one deleted: the first is read, in a
    // page of its own, the listing goes on after it.
    put_contributions(
        &a,
        &[("junk-01".to_string(), published_at(&a, "real", 2))],
        true,
    );
    delete_range(
        &a,
        &a.contribution_key("junk-02"),
        &a.contribution_key("junk-03"),
    );
    expected[1] = "junk-01 ok".to_string();
    expected.remove(2);
    assert_eq!(read_counting(), (expected.clone(), 5));
    assert_eq!(read_counting(), (expected, 5));
    delete_contributions(&a);
}

/// A store of `store`'s prefix whose requests pass through `meddle` first ([`meddling`]).
fn through_meddling(
    store: &EtcdStore,
    meddle: impl Fn(&Value) -> Option<String> + Send + 'static,
) -> EtcdStore {
    let endpoint = meddling(&store.endpoints[0], meddle);
    let settings = EtcdStoreConfig {
        endpoints: vec![endpoint],
        prefix: store.prefix.clone(),
        sync_interval_ms: 1000,
        fleet_judging: true,
    };
    EtcdStore::open(&settings, GATE).unwrap()
}

/// A process's first read of a page above its limit read it again keys only, then a request
/// per key: 2 + 202 requests here, in one tick, whatever the keys held. It makes
/// `JUNK_REQUESTS` at most on it (and one to count the keys it warns of), stops at the first
/// key it did not read, and the next read goes around the values found above a
/// contribution's limit and on.
#[test]
fn a_first_read_spends_a_bounded_number_of_requests_on_values_too_large_then_goes_on() {
    use crate::telemetry::log_lines::LogLines;
    let Some(a) = published_by("junk-bound", "real") else {
        return;
    };
    // In key order: four runs of 8 values no gate writes (together above a page's limit, as
    // the values of the other tests: no more), each followed by 42 contributions; then "real"
    // and "zz-late".
    let junk = vec![b'x'; 1400 * 1024];
    let current = published_at(&a, "real", 2);
    let mut kvs: Vec<(String, Vec<u8>)> = Vec::new();
    for run in 0..4 {
        for n in 0..8 {
            put_contributions(&a, &[(format!("r{run}-a-junk-{n}"), junk.clone())], false);
        }
        kvs.extend((0..42).map(|n| (format!("r{run}-b-{n:02}"), current.clone())));
    }
    kvs.push(("zz-late".to_string(), current));
    put_contributions(&a, &kvs, true);
    let requests = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&requests);
    let b = through_meddling(&a, move |_| {
        counted.fetch_add(1, Ordering::Relaxed);
        None
    });
    let lines = LogLines::default();
    let read_counting = || {
        let before = requests.load(Ordering::Relaxed);
        let mut read = lines.during(|| read_as_text(b.contributions(KNOWN, "a", MINUTE).unwrap()));
        read.sort();
        (read, requests.load(Ordering::Relaxed) - before)
    };
    let rows = |runs: usize, then: usize| {
        let mut rows = Vec::new();
        for run in 0..runs {
            rows.extend((0..8).map(|n| format!("r{run}-a-junk-{n} value")));
            let ok = if run + 1 == runs { then } else { 42 };
            rows.extend((0..ok).map(|n| format!("r{run}-b-{n:02} ok")));
        }
        rows
    };
    // The page, its listing and 63 windows, which find three runs and stop at "r2-b-01".
    let (read, sent) = read_counting();
    assert_eq!(
        sent,
        1 + JUNK_REQUESTS as u64 + 1,
        "the page, the junk's, the count"
    );
    assert_eq!(read, rows(3, 1), "the keys before the first not read");
    let warned = lines.lines_at(tracing::Level::WARN);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains("reads the first 109 of 202 contribution keys"),
        "{warned:?}"
    );
    // The next: for each run found, a page before it (the first empty) and a listing that
    // refuses it again unread; then the page after them (the fourth run within its limit),
    // read whole.
    let mut expected = rows(4, 42);
    expected.extend(["real ok".to_string(), "zz-late ok".to_string()]);
    assert_eq!(read_counting(), (expected.clone(), 7));
    assert_eq!(read_counting(), (expected, 7), "at every read");
    assert_eq!(lines.lines_at(tracing::Level::WARN).len(), 1);
    delete_contributions(&a);
}

/// The read of the others' contributions took as many requests as it had pages after the
/// keep-alive of the instance's lease, which the lease's allowance counts one of: a read of
/// four pages, each answered in 1.4 s, outlasted a lease of 5 s, and the instance's own key
/// was gone for the others until its next publication. It keeps the lease alive itself.
#[test]
fn a_read_of_many_slow_pages_keeps_the_instances_lease_alive() {
    let Some(a) = published_by("slow-pages", "other") else {
        return;
    };
    let current = published_at(&a, "other", 2);
    let kvs: Vec<(String, Vec<u8>)> = (0..3 * CONTRIBUTION_PAGE)
        .map(|n| (format!("k-{n:04}"), current.clone()))
        .collect();
    put_contributions(&a, &kvs, true);
    let pages = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&pages);
    let slow = through_meddling(&a, move |body| {
        if body["limit"].is_string() {
            counted.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1400));
        }
        None
    });
    let ttl = Duration::from_secs(5);
    slow.publish(&contribution("slow", 2, 100), KNOWN, ttl)
        .unwrap();
    let started = Instant::now();
    let read = slow.contributions(KNOWN, "slow", ttl).unwrap();
    assert_eq!(pages.load(Ordering::Relaxed), 4);
    assert!(started.elapsed() > ttl, "{:?}", started.elapsed());
    assert_eq!(read.len(), MAX_INSTANCES);
    let (own, _) = a.get(&a.contribution_key("slow"), None).unwrap();
    assert!(own.is_some(), "the instance's contribution expired");
    delete_contributions(&a);
}

/// Deletes `store`'s keys from `key` to `range_end` (excluded): how many.
fn delete_range(store: &EtcdStore, key: &str, range_end: &str) -> String {
    let deleted = store
        .call(
            "/v3/kv/deleterange",
            &json!({"key": BASE64.encode(key), "range_end": BASE64.encode(range_end)}),
        )
        .unwrap();
    text_of(&deleted["deleted"])
}

/// Deletes every contribution key of `store`'s prefix, so that the cluster the tests share does
/// not keep their large values.
fn delete_contributions(store: &EtcdStore) {
    delete_range(
        store,
        &store.contribution_key(""),
        &store.key("contributions0"),
    );
}

/// Passes the request `request_line` with `body` to etcd at `etcd` and copies its answer to
/// `client` as it comes, whatever its length (a page above the store's limit too), closing the
/// connection.
fn relay_whole(etcd: &str, request_line: &str, body: &str, client: &mut std::net::TcpStream) {
    use std::io::Write;
    let address = etcd.trim_start_matches("http://");
    let path = request_line.split(' ').nth(1).unwrap_or("/");
    let mut server = std::net::TcpStream::connect(address).unwrap();
    write!(
        server,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // The store stops reading an answer above its limit: the rest is not copied.
    let _ = std::io::copy(&mut server, client);
    let _ = client.shutdown(std::net::Shutdown::Both);
}

/// A loopback endpoint that hands each request's body (as JSON) to `meddle`, which may act on
/// etcd at `etcd` meanwhile, and answers with what `meddle` returns (an answer of etcd's JSON
/// gateway, status 200), or with etcd's own answer when it returns `None`.
fn meddling(etcd: &str, meddle: impl Fn(&Value) -> Option<String> + Send + 'static) -> String {
    use std::io::Write;
    let etcd = etcd.to_string();
    serving(move |request_line, body, client| {
        match meddle(&serde_json::from_str(&body).unwrap_or(Value::Null)) {
            Some(answer) => {
                let _ = write!(
                    client,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
            None => relay_whole(&etcd, &request_line, &body, client),
        }
    })
}

/// A page after the first whose answer is above its limit is read in windows of keys at the
/// first page's revision, not at the cluster's current one, and the next page starts after the last
/// key it listed, whether or not each was read. Keys listed at that revision and deleted since
/// (a lease expired between the pages) were read at "now" and skipped; the page came out empty
/// and the read stopped there as if complete, never reading the keys after it.
#[test]
fn keys_of_a_page_above_its_limit_are_read_at_the_first_pages_revision() {
    let Some(endpoint) = endpoint("etcd page revision") else {
        return;
    };
    let settings = settings(&endpoint, "page-revision");
    let a = EtcdStore::open(&settings, GATE).unwrap();
    a.publish(&contribution("real", 2, 100), KNOWN, MINUTE)
        .unwrap();
    // Page 1: 257 keys of stage 1. Page 2: one of stage 2, values above what a contribution
    // takes (together above a page's limit), and keys of stage 1 up to 257. Page 3: "real"
    // and "zz-late", of stage 2.
    let (behind, current) = (published_at(&a, "real", 1), published_at(&a, "real", 2));
    let junk = vec![b'x'; 1400 * 1024];
    let junks = a.contributions_answer(CONTRIBUTION_PAGE, false) / base64_len(junk.len()) + 1;
    let mut kvs: Vec<(String, Vec<u8>)> = (0..CONTRIBUTION_PAGE)
        .map(|n| (format!("k1-{n:03}"), behind.clone()))
        .collect();
    kvs.push(("k2-good".to_string(), current.clone()));
    kvs.extend(
        (0..CONTRIBUTION_PAGE - 1 - junks).map(|n| (format!("k2-pad-{n:03}"), behind.clone())),
    );
    kvs.push(("zz-late".to_string(), current));
    put_contributions(&a, &kvs, true);
    for n in 0..junks {
        put_contributions(&a, &[(format!("k2-junk-{n:02}"), junk.clone())], true);
    }
    let second_page = |body: &Value| {
        body["revision"].is_string() && body["range_end"].is_string() && body["keys_only"].is_null()
    };
    // A member that answers no key read in a window of a page's keys (not etcd): page 2's
    // keys are none of them counted, and page 3 is read all the same.
    let contribution_key = a.contribution_key("");
    let no_single_key = meddling(&endpoint, move |body| {
        let key = BASE64
            .decode(body["key"].as_str().unwrap_or(""))
            .unwrap_or_default();
        let window = body["limit"].is_null() && body["keys_only"].is_null();
        (window && body["revision"].is_string() && key.starts_with(contribution_key.as_bytes()))
            .then(|| r#"{"header":{"revision":"1"},"count":"0"}"#.to_string())
    });
    let through = |endpoint: String| {
        let settings = EtcdStoreConfig {
            endpoints: vec![endpoint],
            ..settings.clone()
        };
        EtcdStore::open(&settings, GATE).unwrap()
    };
    let mut read = read_as_text(
        through(no_single_key)
            .contributions(KNOWN, "a", MINUTE)
            .unwrap(),
    );
    read.sort();
    assert_eq!(read, ["real ok", "zz-late ok"], "page 3 read");
    // Page 2's keys deleted once page 1 was read (at its revision), before page 2 is: each is
    // read as it was then.
    let (etcd, range) = (
        endpoint.clone(),
        json!({
            "key": BASE64.encode(a.contribution_key("k2-")),
            "range_end": BASE64.encode(a.contribution_key("k2.")),
        }),
    );
    let deleted = Arc::new(AtomicBool::new(false));
    let deleting = Arc::clone(&deleted);
    let deleting_after_page_1 = meddling(&endpoint, move |body| {
        if second_page(body) && !deleting.swap(true, Ordering::Relaxed) {
            ureq::post(format!("{etcd}/v3/kv/deleterange"))
                .send(range.to_string())
                .unwrap();
        }
        None
    });
    let mut read = read_as_text(
        through(deleting_after_page_1)
            .contributions(KNOWN, "a", MINUTE)
            .unwrap(),
    );
    assert!(deleted.load(Ordering::Relaxed), "page 2 was read");
    assert!(
        a.get(&a.contribution_key("k2-good"), None)
            .unwrap()
            .0
            .is_none(),
        "deleted"
    );
    read.sort();
    let mut expected = vec!["k2-good ok".to_string()];
    expected.extend((0..junks).map(|n| format!("k2-junk-{n:02} value")));
    expected.extend(["real ok".to_string(), "zz-late ok".to_string()]);
    assert_eq!(read, expected);
    delete_contributions(&a);
}

#[test]
fn an_unchanged_contribution_is_not_written_again_while_its_lease_lives() {
    let Some(endpoint) = endpoint("etcd unchanged contribution") else {
        return;
    };
    let store = EtcdStore::open(&settings(&endpoint, "unchanged"), GATE).unwrap();
    let ttl = Duration::from_secs(5);
    // The key's revision (0: no key): every put makes a new one, of the same value too. Not
    // etcd's newest revision, which the other tests' writes to the cluster move meanwhile.
    let revision = || {
        let (found, _) = store.get(&store.contribution_key("a"), None).unwrap();
        found.map_or(0, |f| f.mod_revision.parse::<u64>().unwrap())
    };
    store
        .publish(&contribution("a", 2, 100), KNOWN, ttl)
        .unwrap();
    let written = revision();
    assert!(written > 0);
    for _ in 0..3 {
        store
            .publish(&contribution("a", 2, 100), KNOWN, ttl)
            .unwrap();
    }
    assert_eq!(revision(), written, "no write, no new revision");
    // Changed counts are written.
    store
        .publish(&contribution("a", 2, 101), KNOWN, ttl)
        .unwrap();
    let changed = revision();
    assert!(changed > written);
    // The lease gone (and the key with it), the same counts are written again.
    let lease = store.lease.lock().unwrap().clone().unwrap();
    store
        .call("/v3/lease/revoke", &json!({ "ID": lease }))
        .unwrap();
    assert_eq!(revision(), 0, "the key went with its lease");
    store
        .publish(&contribution("a", 2, 101), KNOWN, ttl)
        .unwrap();
    assert!(revision() > changed);
    let read = store.contributions(KNOWN, "b", ttl).unwrap();
    assert_eq!(read[0].as_ref().unwrap(), &contribution("a", 2, 101));
}

/// A known state of version and stage `n` (the tests' writes keep the two equal).
fn known(n: u64) -> Guard {
    Guard {
        version: n,
        stage: n,
        epoch: 0,
    }
}

/// Numbers of an answer are the server's word (a member, or a proxy in front of it): at
/// `u64::MAX` (etcd's own stay below 2^63) a revision and a history count panic nothing, not
/// the watch's start (the gate's constructor) nor a write that trims the history.
#[test]
fn numbers_past_etcds_range_in_an_answer_panic_nothing() {
    const ANSWER: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 77\r\nConnection: close\r\n\r\n{\"header\":{\"revision\":\"18446744073709551615\"},\"count\":\"18446744073709551615\"}";
    let (endpoint, _) = answering_at_once(ANSWER);
    let store = EtcdStore::new(&settings(&endpoint, "huge-numbers"), GATE);
    let (found, revision) = store.get(&store.key("release"), None).unwrap();
    assert!(found.is_none());
    assert_eq!(revision, "18446744073709551615");
    let stop = Arc::new(AtomicBool::new(true));
    if let Some(watch) = store.watch(Box::new(|| {}), stop) {
        watch.join().unwrap();
    }
    let result = store.commit(&write_on(0, Environment::Production, Some("back")));
    assert!(result.is_err(), "{result:?}");
}

/// A fake member's answer to every request: one key, `/release`, holding `release`, at
/// revision 34 (the answer's 40).
fn release_answer(release: &str) -> &'static str {
    one_key_answer("/release", release)
}

/// A fake member's answer: one key, `key`, holding `value`, at revision 34 (the answer's 40).
fn one_key_answer(key: &str, value: &str) -> &'static str {
    let kv = format!(
        r#"{{"header":{{"revision":"40"}},"kvs":[{{"key":"{}","value":"{}","mod_revision":"34"}}],"count":"1"}}"#,
        BASE64.encode(key),
        BASE64.encode(value)
    );
    let http = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{kv}",
        kv.len()
    );
    Box::leak(http.into_boxed_str())
}

/// A cluster that came back with lower revisions may hold another release at the revision of
/// the one last read: the release read is its value, not its revision alone.
#[test]
fn a_release_at_the_revision_of_the_one_last_read_is_read_when_its_value_differs() {
    let rolled_back = format!(
        r#"{{"version": 2, "stage": 2, "config": {{"gate": "{GATE}", "environment": "production"}}}}"#
    );
    let promoted = format!(
        r#"{{"version": 3, "stage": 3, "config": {{"gate": "{GATE}", "environment": {{"canary": {{"traffic_percent": 50}}}}}}}}"#
    );
    let (first, _) = answering_at_once(release_answer(&rolled_back));
    let (second, _) = answering_at_once(release_answer(&promoted));
    let mut store = EtcdStore::new(&settings(&first, "same-revision"), GATE);
    assert!(matches!(store.changes_since(known(2)), Ok(Since::Same)));
    // The same answer again: known, not parsed again.
    assert!(matches!(store.changes_since(known(2)), Ok(Since::Same)));
    // Another release at revision 34: read (its history is then asked for, which this fake
    // member answers with the release again, refused as no event: what matters is that the
    // release was not taken for the one known).
    store.endpoints = vec![second];
    match store.changes_since(known(2)) {
        Ok(Since::Same) => panic!("the release at the same revision was taken for the known one"),
        Ok(_) => {}
        Err(e) => assert!(e.to_string().contains("not a history event"), "{e}"),
    }
}

/// serde's derived reader took a struct's fields in order, an array: a release written so
/// (by hand, or by another program), or holding a struct written so, was read.
#[test]
fn a_stored_struct_written_as_an_array_is_not_ours_naming_its_field() {
    let config = format!(r#"{{"gate": "{GATE}", "environment": "production"}}"#);
    let with_config = |config: &str| format!(r#"{{"version": 2, "stage": 2, "config": {config}"#);
    let refusal = "must be a JSON object with named fields, not an array at line 1 column";
    for (release, field) in [
        (format!("[2, 2, {config}]"), "release"),
        (
            with_config(&format!(
                r#"{{"gate": "{GATE}", "overrides": ["X-Canary", "c", ["a"], []]}}}}"#
            )),
            "release.config.overrides",
        ),
        (
            with_config(&format!(
                r#"{{"gate": "{GATE}", "store": {{"sqlite": ["a.db"]}}}}}}"#
            )),
            "release.config.store.sqlite",
        ),
        (
            format!(r#"{}, "rollbacks": [2, []]}}"#, with_config(&config)),
            "release.rollbacks",
        ),
        (
            format!(
                r#"{}, "rollbacks": {{"version": 2, "counts": [["manual", null, 1]]}}}}"#,
                with_config(&config)
            ),
            "release.rollbacks.counts[0]",
        ),
    ] {
        let (endpoint, _) = answering_at_once(release_answer(&release));
        let store = EtcdStore::new(&settings(&endpoint, "positional"), GATE);
        let err = store.load().unwrap_err();
        assert_eq!(err.problem(), StoreProblem::NotOurs, "{release}: {err}");
        assert!(
            err.to_string()
                .contains(&format!("/release: {field}: {refusal}")),
            "{release}: {err}"
        );
    }
}

/// A release's rollout that is not one this build writes is refused naming the field and the
/// value: of another type, negative, above what a store holds, numbered beyond the release's
/// version, or a first stage at its split beyond the release's stage.
#[test]
fn a_stored_rollout_is_read_checked_naming_the_field_and_the_value() {
    let config = format!(r#"{{"gate": "{GATE}", "environment": "production"}}"#);
    let with = |rollout: &str| {
        format!(r#"{{"version": 2, "stage": 2, "config": {config}, "rollout": {rollout}}}"#)
    };
    for (rollout, words) in [
        (
            r#"{"version": 2, "started": -1}"#,
            "release.rollout.started: invalid value: integer `-1`",
        ),
        (
            r#"{"version": 2, "started": "1"}"#,
            r#"release.rollout.started: invalid type: string "1""#,
        ),
        (
            r#"{"version": 2, "started": 1.5}"#,
            "release.rollout.started: invalid type: floating point `1.5`",
        ),
        (
            r#"{"version": 2, "started": 18446744073709551616}"#,
            "release.rollout.started",
        ),
        (
            r#"{"version": 3, "started": 1}"#,
            "release.rollout.version = 3: at most the release's version 2",
        ),
        (
            r#"{"version": 2, "started": 0}"#,
            "release.rollout.started = 0: from 1 to the rollout's version 2",
        ),
        // Inside the rollout, where etcd keeps it (SQLite names its own column).
        (
            r#"{"version": 2, "started": 1, "split_from": 3}"#,
            "release.rollout.split_from = 3: from 1 to the release's stage 2",
        ),
        (
            r#"{"version": 2, "started": 1, "split_from": 0}"#,
            "release.rollout.split_from = 0: from 1 to the release's stage 2",
        ),
        (r#"[2, 1]"#, "release.rollout: must be a JSON object"),
        ("null", NULL_REFUSED),
    ] {
        refused_naming(&with(rollout), words);
    }
}

/// How a stored release's `rollout` or `rollbacks` of `null` is refused, after the field's
/// name: no build writes it (one not stored is left out), and SQLite refuses it too.
const NULL_REFUSED: &str = "release.rollout: null: not one this build writes (absent, the \
                            field is left out)";

/// Checks that the stored release `release` is refused as not ours, with `words`.
fn refused_naming(release: &str, words: &str) {
    let (endpoint, _) = answering_at_once(release_answer(release));
    let store = EtcdStore::new(&settings(&endpoint, "refused"), GATE);
    let err = store.load().unwrap_err();
    assert_eq!(err.problem(), StoreProblem::NotOurs, "{release}: {err}");
    assert!(err.to_string().contains(words), "{words:?} not in {err}");
}

/// Stored rollback counts of `null` are refused naming the field, as SQLite refuses its
/// column's text `null`.
#[test]
fn stored_rollback_counts_of_null_are_not_ours_naming_the_field() {
    let config = format!(r#"{{"gate": "{GATE}", "environment": "production"}}"#);
    let release = format!(r#"{{"version": 2, "stage": 2, "config": {config}, "rollbacks": null}}"#);
    refused_naming(&release, &NULL_REFUSED.replace("rollout", "rollbacks"));
}

/// A release this build refuses (a newer build's, with a field this one does not know) stays
/// in the store until every process is upgraded: each sync tick refuses it again without
/// parsing it again (a config may be a megabyte of JSON), and parses a changed one.
#[test]
fn a_refused_release_is_parsed_once_while_it_stays() {
    let release = |field: &str| {
        format!(
            r#"{{"version": 3, "stage": 3, "config": {{"gate": "{GATE}", "{field}": {}}}}}"#,
            "1".repeat(100_000)
        )
    };
    let (first, _) = answering_at_once(release_answer(&release("newer_field")));
    let (second, _) = answering_at_once(release_answer(&release("other_field")));
    let mut store = EtcdStore::new(&settings(&first, "refused-once"), GATE);
    for _ in 0..20 {
        let err = store.changes_since(known(2)).unwrap_err();
        assert_eq!(err.problem(), StoreProblem::NotOurs, "{err}");
        assert!(err.to_string().contains("newer_field"), "{err}");
    }
    assert_eq!(store.parsed.load(Ordering::Relaxed), 1);
    // Another value at the same revision: parsed, and refused naming its own field.
    store.endpoints = vec![second];
    for _ in 0..5 {
        let err = store.changes_since(known(2)).unwrap_err();
        assert!(err.to_string().contains("other_field"), "{err}");
    }
    assert_eq!(store.parsed.load(Ordering::Relaxed), 2);
}
