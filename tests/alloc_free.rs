//! Routing allocates nothing and frees nothing: `route_request`, `route_request_bytes` and
//! `route_request_forced` (by id list, by forcing value, ignored value), and reading the
//! decision's flags, after the first call on a thread; nor does recording (by decision, or by
//! id with `record_request_outcome_forced`), after a write too (the snapshot a write replaced is
//! freed by the writer side, never by a route or a record).
//!
//! The counting global allocator (`common::alloc`) counts the allocations and frees made by
//! the measuring thread only (the test harness runs other tests on other threads). No tracing
//! subscriber is installed, so the route path's `debug!` must cost no allocation either.

mod common;

use std::time::Duration;

use promotion_gates::{
    Environment, Overrides, PromotionConfig, PromotionGateManager, Recorded, RoutingDecision,
    SloConfig,
};

use common::alloc::{Allocated, allocations_during};
use common::{canary, gate};

/// Ids routed per measurement.
const IDS: usize = 10_000;

/// Reads everything a host reads from a decision, without formatting it.
fn read(decision: RoutingDecision<'_>) -> usize {
    let features = decision.enabled_features;
    let mut sum = features.len()
        + usize::from(features.contains("new_api"))
        + usize::from(features.is_empty())
        + usize::from(decision.is_canary)
        + decision.cohort() as usize
        + decision.reason.bucket().get() as usize
        + decision.reason.threshold() as usize
        + decision.stage.get() as usize;
    for name in features.iter() {
        sum += name.len();
    }
    sum
}

/// Overrides by the `X-Canary` header, listing the first half of `listed` for the canary and
/// the rest for stable.
fn listing(listed: &[String]) -> Overrides {
    let (canary_ids, stable_ids) = listed.split_at(listed.len() / 2);
    Overrides {
        header: Some("X-Canary".to_string()),
        cookie: None,
        canary_ids: canary_ids.to_vec(),
        stable_ids: stable_ids.to_vec(),
    }
}

fn route_texts(manager: &PromotionGateManager, ids: &[String]) -> usize {
    ids.iter().map(|id| read(manager.route_request(id))).sum()
}

fn route_bytes(manager: &PromotionGateManager, ids: &[Vec<u8>]) -> usize {
    ids.iter()
        .map(|id| read(manager.route_request_bytes(id)))
        .sum()
}

#[test]
fn the_counter_sees_an_allocation() {
    let (_, allocated) = allocations_during(|| Vec::<u8>::with_capacity(16));
    assert_eq!(
        allocated,
        Allocated {
            count: 1,
            bytes: 16,
            frees: 0,
        }
    );
    let (_, allocated) = allocations_during(|| 40 + 2);
    assert_eq!(allocated, Allocated::default());
    let made = Vec::<u8>::with_capacity(16);
    let (_, allocated) = allocations_during(|| drop(made));
    assert_eq!(allocated.frees, 1, "the counter sees a free");
}

#[test]
fn routing_allocates_nothing_after_warm_up() {
    let manager = gate(PromotionConfig {
        environment: canary(50.0),
        feature_flags: vec!["new_api".to_string(), "fast_path".to_string()],
        graduated_flags: vec!["stable_ui".to_string()],
        ..Default::default()
    });
    let texts: Vec<String> = (0..IDS).map(|i| format!("user-{i}-session")).collect();
    // Not UTF-8 (0xff), of every length from 1 to 200 bytes: one to four SHA-256 blocks.
    let bytes: Vec<Vec<u8>> = (0..IDS)
        .map(|i| {
            let mut id = vec![0xff; i % 200];
            id.extend_from_slice(&(i as u32).to_le_bytes()[..1]);
            id
        })
        .collect();
    route_texts(&manager, &texts[..10]);
    route_bytes(&manager, &bytes[..10]);

    // Each write publishes a new snapshot, which the next route picks up: measured too. A
    // flag change gives the routes flag sets no thread has read yet (a set not among the two
    // a thread read last is found in its slot).
    for (step, environment) in [
        canary(50.0),
        canary(0.5),
        Environment::Staging,
        Environment::Production,
    ]
    .into_iter()
    .enumerate()
    {
        if manager.environment() != environment {
            let mut config = manager.config();
            config.environment = environment;
            manager.swap_config(config).expect("a valid config");
        }
        match environment {
            // Only the stable set is read there: a graduated flag changes it.
            Environment::Production => manager.disable_feature("stable_ui"),
            _ => manager.enable_feature(format!("toggle_{step}")),
        }
        .expect("a flag change");
        let (_, by_text) = allocations_during(|| route_texts(&manager, &texts));
        let (_, by_bytes) = allocations_during(|| route_bytes(&manager, &bytes));
        assert_eq!(
            (by_text, by_bytes),
            (Allocated::default(), Allocated::default()),
            "allocations for {IDS} route_request and {IDS} route_request_bytes in {environment}"
        );
    }
}

#[test]
fn forced_routing_allocates_nothing_after_warm_up() {
    let listed: Vec<String> = (0..100).map(|i| format!("tester-{i}")).collect();
    let manager = gate(PromotionConfig {
        environment: canary(10.0),
        feature_flags: vec!["new_api".to_string()],
        overrides: Some(listing(&listed)),
        ..Default::default()
    });
    let ids: Vec<String> = (0..IDS).map(|i| format!("user-{i}-session")).collect();
    let values: [Option<&[u8]>; 4] = [None, Some(b"canary"), Some(b"Stable"), Some(b"bogus")];
    let forced = |manager: &PromotionGateManager| -> usize {
        let by_value: usize = ids
            .iter()
            .zip(values.iter().cycle())
            .map(|(id, value)| read(manager.route_request_forced(id.as_bytes(), *value)))
            .sum();
        by_value + route_texts(manager, &listed)
    };
    forced(&manager);
    let (_, allocated) = allocations_during(|| forced(&manager));
    assert_eq!(allocated, Allocated::default());
    // A write publishes a new snapshot, whose overrides the next route reads: measured too.
    let mut config = manager.config();
    config.environment = canary(20.0);
    manager.swap_config(config).expect("a valid config");
    let (_, allocated) = allocations_during(|| forced(&manager));
    assert_eq!(allocated, Allocated::default(), "after a write");
    // Every kind of decision was made: by list, by value, by bucket, and ignored values.
    assert!(manager.route_request("tester-0").forced.is_some());
    assert!(
        manager
            .route_request_forced(b"u", Some(b"canary"))
            .forced
            .is_some()
    );
    // Each of the three runs above passed every value of `values` in turn; the one that is
    // neither `canary` nor `stable` (any case) is ignored and counted.
    let ignored_per_run = ids
        .iter()
        .zip(values.iter().cycle())
        .filter(|(_, value)| {
            value.is_some_and(|v| {
                !v.eq_ignore_ascii_case(b"canary") && !v.eq_ignore_ascii_case(b"stable")
            })
        })
        .count() as u64;
    assert!(ignored_per_run > 0);
    assert_eq!(manager.ignored_override_values(), 3 * ignored_per_run);
}

#[test]
fn a_threads_first_ignored_forcing_value_allocates_nothing_after_its_first_call() {
    let manager = gate(PromotionConfig {
        environment: canary(10.0),
        overrides: Some(Overrides {
            header: Some("X-Canary".to_string()),
            ..Default::default()
        }),
        ..Default::default()
    });
    // A thread that only routes (it records nothing, so nothing else made its recorder): its
    // first call passes an honoured value, and only later does a value get ignored.
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let first = manager.route_request_forced(b"tester", Some(b"canary"));
            assert!(first.forced.is_some());
            // The allocator counts on this thread: a check that the measure below can fail.
            let (_, allocated) = allocations_during(|| std::hint::black_box(vec![0u8; 8]).len());
            assert_eq!(allocated.count, 1);
            let ids: Vec<String> = (0..IDS).map(|i| format!("user-{i}-session")).collect();
            let (_, allocated) = allocations_during(|| {
                ids.iter()
                    .map(|id| read(manager.route_request_forced(id.as_bytes(), Some(b"bogus"))))
                    .sum::<usize>()
            });
            assert_eq!(allocated, Allocated::default());
        });
    });
    assert_eq!(manager.ignored_override_values(), IDS as u64);
}

#[test]
fn a_record_by_id_with_a_forcing_value_allocates_nothing_after_warm_up() {
    let manager = gate(PromotionConfig {
        environment: canary(50.0),
        feature_flags: vec!["new_api".to_string()],
        overrides: Some(Overrides {
            header: Some("X-Canary".to_string()),
            ..Default::default()
        }),
        ..Default::default()
    });
    let ids: Vec<String> = (0..IDS).map(|i| format!("user-{i}-session")).collect();
    // One value that forces, one that forces nothing, and none.
    let values: [Option<&[u8]>; 3] = [Some(b"canary"), Some(b"bogus"), None];
    let record = |manager: &PromotionGateManager| -> usize {
        let mut forced = 0;
        for (i, (id, value)) in ids.iter().zip(values.iter().cycle()).enumerate() {
            let latency = Duration::from_millis(1 + i as u64 % 7);
            let outcome =
                manager.record_request_outcome_forced(id.as_bytes(), *value, true, latency);
            // Only `canary` forces: the measure covers a forced record and two routed ones.
            let by_value = *value == Some(b"canary".as_slice());
            assert_eq!(outcome == Recorded::Forced, by_value, "{value:?}");
            forced += usize::from(by_value);
        }
        forced
    };
    // The thread's first calls make its recorder.
    record(&manager);
    let (_, allocated) = allocations_during(|| record(&manager));
    assert_eq!(allocated, Allocated::default(), "before a write");
    let mut config = manager.config();
    config.environment = canary(20.0);
    manager.swap_config(config).expect("a valid config");
    let (_, allocated) = allocations_during(|| record(&manager));
    assert_eq!(allocated, Allocated::default(), "after swap_config");
    // The route counted the ignored value already: a record by id does not count it again.
    assert_eq!(manager.ignored_override_values(), 0);
}

#[test]
fn a_route_or_a_record_after_a_write_frees_nothing() {
    // A snapshot that owns much heap: listed ids, flags, their slot tables.
    let listed: Vec<String> = (0..1_000).map(|i| format!("tester-{i}")).collect();
    let config = PromotionConfig {
        environment: canary(50.0),
        feature_flags: (0..100).map(|i| format!("flag_{i}")).collect(),
        overrides: Some(listing(&listed)),
        ..Default::default()
    };
    let manager = gate(config.clone());
    let ids: Vec<String> = (0..IDS).map(|i| format!("user-{i}-session")).collect();
    let route_and_record = |manager: &PromotionGateManager| -> usize {
        let mut sum = 0;
        for (i, id) in ids.iter().chain(&listed).enumerate() {
            let decision = manager.route_request_forced(id.as_bytes(), None);
            manager.record_outcome(&decision, true, Duration::from_millis(1 + i as u64 % 7));
            sum += read(decision);
        }
        sum
    };
    // The thread's first calls make its route cache and its recorder.
    route_and_record(&manager);
    let (_, allocated) = allocations_during(|| route_and_record(&manager));
    assert_eq!(allocated, Allocated::default(), "before a write");

    // Each write replaces the snapshot this thread's route cache holds (and the SLO policy):
    // the writer lets go of the old one, this thread's next route lets go of its own.
    let mut swapped = config.clone();
    swapped.environment = canary(20.0);
    swapped.feature_flags.push("one_more".to_string());
    let writes: [(&str, &dyn Fn()); 3] = [
        ("swap_config", &|| {
            manager
                .swap_config(swapped.clone())
                .expect("a valid config");
        }),
        ("enable_feature", &|| {
            manager.enable_feature("another").expect("a flag change");
        }),
        ("swap_slo", &|| {
            let slo = SloConfig {
                latency_target: Duration::from_millis(400),
                ..Default::default()
            };
            manager.swap_slo(slo).expect("a valid SLO");
        }),
    ];
    for (write, make) in writes {
        make();
        let (_, allocated) = allocations_during(|| route_and_record(&manager));
        assert_eq!(
            allocated,
            Allocated::default(),
            "{} routes and records after {write}",
            ids.len() + listed.len()
        );
    }
    assert!(manager.route_request("tester-0").forced.is_some());
}

#[test]
fn reading_a_decisions_flags_after_the_sets_this_thread_read_are_reclaimed_frees_nothing() {
    // Two stored sets: the canary's (`new_api`, `stable_ui`) and the stable version's.
    let manager = gate(PromotionConfig {
        environment: canary(50.0),
        feature_flags: vec!["new_api".to_string()],
        graduated_flags: vec!["stable_ui".to_string()],
        ..Default::default()
    });
    let ids: Vec<String> = (0..IDS).map(|i| format!("user-{i}-session")).collect();
    // This thread reads both, and keeps them among the sets it read last.
    route_texts(&manager, &ids);
    // Enough flag changes that the canary set this thread keeps is replaced and its slot
    // reused: the gate no longer holds it, and this thread's next read of another set lets go
    // of it.
    for i in 0..300 {
        manager
            .enable_feature(format!("toggle_{i}"))
            .expect("a flag change");
    }
    let (_, allocated) = allocations_during(|| route_texts(&manager, &ids));
    assert_eq!(
        allocated,
        Allocated::default(),
        "{IDS} routes, their flags read, after the sets this thread kept were reclaimed"
    );
}
