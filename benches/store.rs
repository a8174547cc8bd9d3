//! The state store's costs off the request path: what one sync tick costs when nothing
//! changed, and with fleet-wide judging's contributions (four gates that record traffic, each
//! publishing its counts and reading the three others'), as CPU time of the sync thread and,
//! with etcd, of the watch thread, from `/proc/self/task/*/schedstat`, over many ticks;
//! and how long a write made by one process takes to reach another process's routing (wall
//! time from the end of the writer's call to the moment the reader's gate routes by it).
//!
//! ```sh
//! cargo bench --bench store            # markdown tables; its time: BENCHMARKS.md, How to run
//! ```
//!
//! Under `cargo test --all-targets` (no `--bench` flag) it runs a few ticks and changes, to
//! keep the code working. Built with `--features etcd` and run beside an etcd
//! (`.ci/etcd -- cargo bench --bench store --features etcd`), it measures etcd as well.

#![allow(clippy::expect_used, reason = "a failed set-up is a failed bench")]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use promotion_gates::{
    Environment, EtcdStoreConfig, PromotionConfig, PromotionGateManager, SloAdmissionController,
    SloConfig, SqliteStoreConfig, StoreConfig,
};

const READER_ENV: &str = "PGATE_BENCH_STORE_READER";

/// The stores measured: SQLite at `path`, and etcd when built in and an endpoint is given.
fn stores(path: &str, sync_interval_ms: u64) -> Vec<(&'static str, StoreConfig)> {
    let mut stores = vec![(
        "SQLite",
        StoreConfig::Sqlite(SqliteStoreConfig {
            path: path.to_string(),
            sync_interval_ms,
            busy_timeout_ms: 2000,
            fleet_judging: true,
        }),
    )];
    if let (true, Ok(endpoint)) = (cfg!(feature = "etcd"), std::env::var("PGATE_ETCD_ENDPOINT")) {
        stores.push((
            "etcd",
            StoreConfig::Etcd(EtcdStoreConfig {
                endpoints: vec![endpoint],
                prefix: format!("/pg-bench/{}-{sync_interval_ms}", std::process::id()),
                sync_interval_ms,
                fleet_judging: true,
            }),
        ));
    }
    stores
}

fn gate_on(store: &StoreConfig) -> PromotionGateManager {
    gate_in(store, Environment::Production)
}

fn gate_in(store: &StoreConfig, environment: Environment) -> PromotionGateManager {
    let config = PromotionConfig {
        gate: "bench".into(),
        store: Some(store.clone()),
        environment,
        ..Default::default()
    };
    let slo = SloAdmissionController::new(SloConfig::default()).expect("the default SLO");
    PromotionGateManager::new(config, slo).expect("a gate on the store")
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos()
}

/// The store threads' CPU time per tick and gate over `span`, for `gates` gates ticking every
/// `tick_ms`; and the ticks each gate made.
fn per_tick_cpu_ns(span: Duration, tick_ms: u64, gates: usize) -> (f64, f64) {
    let cpu_before = store_threads_cpu_ns();
    let start = Instant::now();
    std::thread::sleep(span);
    let cpu = store_threads_cpu_ns() - cpu_before;
    let ticks = start.elapsed().as_millis() as f64 / tick_ms as f64;
    (cpu as f64 / ticks / gates as f64, ticks)
}

/// CPU time the store's threads of this process (sync and watch) have used, in nanoseconds.
fn store_threads_cpu_ns() -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("procfs") {
        let dir = task.expect("a task").path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if matches!(name.trim(), "pgate-sync" | "pgate-watch") {
            let stat = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
            total += stat
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// The reader process: opens the gate, and for each line on stdin waits until its routing
/// shows the flag state named there, then prints the wall time it saw it.
fn reader(store: &StoreConfig) {
    let gate = gate_on(store);
    let stdout = std::io::stdout();
    println!("ready");
    for line in std::io::stdin().lock().lines() {
        let want_on = line.expect("a line") == "on";
        while gate.is_feature_enabled("probe") != want_on {
            std::hint::spin_loop();
        }
        let mut out = stdout.lock();
        writeln!(out, "{}", now_ns()).expect("stdout");
        out.flush().expect("stdout");
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    if let Ok(store) = std::env::var(READER_ENV) {
        reader(&serde_json::from_str(&store).expect("a store config"));
        return;
    }
    let benching = std::env::args().any(|a| a == "--bench");
    let dir = std::env::temp_dir().join(format!("pg-bench-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join("gate.db").to_str().expect("UTF-8").to_string();

    // 1. One idle sync tick: the store threads' CPU time over many ticks of a fast interval.
    let tick_ms = 10;
    let idle_for = if benching {
        Duration::from_secs(10)
    } else {
        Duration::from_millis(100)
    };
    let mut ticks_rows = Vec::new();
    for (name, store) in stores(&path, tick_ms) {
        let idle = gate_on(&store);
        let (per_tick, ticks) = per_tick_cpu_ns(idle_for, tick_ms, 1);
        drop(idle);
        ticks_rows.push((name, "nothing recorded, no other instance", per_tick, ticks));
    }
    // 1b. The same with contributions: four gates (four instances) at Canary{50} that have
    // recorded 20 000 outcomes each, over a spread of latencies; each tick publishes one
    // gate's counts and histograms and reads the three others'.
    let fleet_path = dir.join("fleet.db").to_str().expect("UTF-8").to_string();
    for (name, store) in stores(&fleet_path, tick_ms) {
        let canary = Environment::Canary {
            traffic_percent: 50.0,
        };
        let gates: Vec<_> = (0..4).map(|_| gate_in(&store, canary)).collect();
        for (g, gate) in gates.iter().enumerate() {
            for i in 0..20_000u64 {
                let latency = Duration::from_micros(500 + (i * 7919 + g as u64) % 200_000);
                gate.record_request_outcome(&format!("user-{i}"), true, latency);
            }
        }
        let (per_tick, ticks) = per_tick_cpu_ns(idle_for, tick_ms, gates.len());
        drop(gates);
        ticks_rows.push((
            name,
            "4 instances recording: publish 1, read 3",
            per_tick,
            ticks,
        ));
    }

    // 2. Propagation to another process, at the default interval and a fast one.
    let changes = if benching { 60 } else { 2 };
    let mut propagation = Vec::new();
    for interval in [250u64, 10] {
        for (name, store) in stores(&path, interval) {
            propagation.push((name, interval, travel(&store, interval, changes)));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if !benching {
        return;
    }
    println!(
        "| sync tick, no release change, every {tick_ms} ms | contributions | CPU per tick and gate, sync and watch threads | ticks per gate |"
    );
    println!("| --- | --- | --- | --- |");
    for (name, contributions, per_tick_ns, ticks) in ticks_rows {
        println!(
            "| {name} | {contributions} | {:.1} µs | {ticks:.0} |",
            per_tick_ns / 1e3
        );
    }
    println!("\n| a flag write reaching another process | median | p90 | max | changes |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, interval, ms) in propagation {
        println!(
            "| {name}, `sync_interval_ms` {interval} | {:.1} ms | {:.1} ms | {:.1} ms | {} |",
            percentile(&ms, 0.5),
            percentile(&ms, 0.9),
            ms[ms.len() - 1],
            ms.len()
        );
    }
}

/// Times `changes` flag writes from this process until a reader process routes by them, in
/// milliseconds, sorted.
fn travel(store: &StoreConfig, interval: u64, changes: usize) -> Vec<f64> {
    let writer = gate_on(store);
    let mut child = Command::new(std::env::current_exe().expect("this executable"))
        .env(
            READER_ENV,
            serde_json::to_string(store).expect("a store config"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the reader process");
    let mut to_child = child.stdin.take().expect("stdin");
    let mut from_child = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(from_child.next().expect("ready").expect("a line"), "ready");
    let mut latencies_ms = Vec::new();
    for i in 0..changes {
        let on = i % 2 == 0;
        if on {
            writer.enable_feature("probe").expect("a write");
        } else {
            writer.disable_feature("probe").expect("a write");
        }
        let written = now_ns();
        writeln!(to_child, "{}", if on { "on" } else { "off" }).expect("to the reader");
        let seen: u128 = from_child
            .next()
            .expect("an answer")
            .expect("a line")
            .parse()
            .expect("a time");
        latencies_ms.push(seen.saturating_sub(written) as f64 / 1e6);
        // Start the next change at a point of the interval that does not follow the tick.
        std::thread::sleep(Duration::from_millis(7 + (i as u64 * 13) % interval));
    }
    drop(to_child);
    child.wait().expect("the reader ends");
    latencies_ms.sort_by(f64::total_cmp);
    latencies_ms
}
