//! Overrides through the public API: id lists and forcing values force a request, forced
//! outcomes stay out of both cohorts, a gate without overrides routes as before, a bad
//! section is refused naming its field and value with the gate unchanged, and the shared
//! vectors hold. (`tests/store.rs` checks that the section survives a reopen of a store.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a broken expectation is a failed test"
)]

mod common;

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{canary, gate};
use promotion_gates::{
    Cohort, Environment, Error, Forced, ForcedBy, Overrides, PromotionConfig, PromotionGateManager,
    Recorded,
};

fn overrides() -> Overrides {
    Overrides {
        header: Some("X-Canary".into()),
        cookie: Some("canary".into()),
        canary_ids: vec!["tester-1".into()],
        stable_ids: vec!["vip-7".into()],
    }
}

fn config(environment: Environment, overrides: Option<Overrides>) -> PromotionConfig {
    PromotionConfig {
        environment,
        feature_flags: vec!["new_api".into()],
        graduated_flags: vec!["old_ui".into()],
        overrides,
        ..Default::default()
    }
}

#[test]
fn id_lists_and_values_force_the_version_and_its_flags() {
    for environment in [
        canary(0.0),
        canary(50.0),
        canary(100.0),
        Environment::Staging,
        Environment::Production,
    ] {
        let gate = gate(config(environment, Some(overrides())));
        let tester = gate.route_request("tester-1");
        assert!(tester.is_canary, "{environment}");
        assert!(tester.enabled_features.contains("new_api"));
        assert_eq!(
            tester.forced,
            Some(Forced {
                to: Cohort::Canary,
                by: ForcedBy::IdList
            })
        );
        assert!(
            tester
                .reason
                .to_string()
                .starts_with("forced to canary by overrides.canary_ids")
        );

        // The id list wins over the value.
        let vip = gate.route_request_forced(b"vip-7", Some(b"canary"));
        assert!(!vip.is_canary, "{environment}");
        assert!(!vip.enabled_features.contains("new_api"));
        assert!(vip.enabled_features.contains("old_ui"));
        assert_eq!(
            vip.forced,
            Some(Forced {
                to: Cohort::Stable,
                by: ForcedBy::IdList
            })
        );

        for (value, to) in [
            (&b"canary"[..], Cohort::Canary),
            (b"STABLE", Cohort::Stable),
        ] {
            let d = gate.route_request_forced(b"someone", Some(value));
            assert_eq!(d.cohort(), to, "{environment}");
            assert_eq!(
                d.forced,
                Some(Forced {
                    to,
                    by: ForcedBy::Value
                })
            );
            assert_eq!(d.reason.forced(), d.forced);
            // Bucket and stage are still the request's own.
            assert_eq!(
                d.reason.bucket(),
                gate.route_request("someone").reason.bucket()
            );
            assert_eq!(d.stage, gate.stage());
        }
        assert_eq!(gate.ignored_override_values(), 0);
    }
}

#[test]
fn other_values_are_ignored_and_counted() {
    let gate = gate(config(canary(30.0), Some(overrides())));
    for (i, value) in [&b"beta"[..], b"", b"canary ", b"\xff"]
        .into_iter()
        .enumerate()
    {
        let id = format!("user-{i}");
        let d = gate.route_request_forced(id.as_bytes(), Some(value));
        assert_eq!(d, gate.route_request(&id));
        assert_eq!(d.forced, None);
        assert_eq!(gate.ignored_override_values(), i as u64 + 1);
    }
    // A value with no header or cookie configured is ignored too.
    let ids_only = gate_with(Overrides {
        header: None,
        cookie: None,
        ..overrides()
    });
    let d = ids_only.route_request_forced(b"someone", Some(b"canary"));
    assert_eq!(d.forced, None);
    assert_eq!(ids_only.ignored_override_values(), 1);
}

fn gate_with(overrides: Overrides) -> PromotionGateManager {
    gate(config(canary(30.0), Some(overrides)))
}

#[test]
fn without_overrides_routing_is_unchanged() {
    let plain = gate(config(canary(30.0), None));
    let with = gate(config(canary(30.0), Some(overrides())));
    for i in 0..5_000 {
        let id = format!("user-{i}");
        let before = plain.route_request(&id);
        assert_eq!(before.forced, None);
        assert_eq!(plain.route_request_forced(id.as_bytes(), None), before);
        // Ids on no list and no value: the same decision with overrides configured.
        assert_eq!(with.route_request(&id), before, "{id}");
    }
    assert_eq!(
        plain.ignored_override_values() + with.ignored_override_values(),
        0
    );
}

#[test]
fn forced_outcomes_stay_out_of_both_cohorts() {
    let gate = gate(PromotionConfig {
        auto_rollback_enabled: true,
        ..config(canary(50.0), Some(overrides()))
    });
    let failing = gate.route_request("tester-1");
    for _ in 0..200 {
        assert_eq!(
            gate.record_outcome(&failing, false, Duration::from_secs(5)),
            Recorded::Forced
        );
        let forced = gate.route_request_forced(b"user-x", Some(b"stable"));
        assert_eq!(
            gate.record_outcome(&forced, false, Duration::from_secs(5)),
            Recorded::Forced
        );
    }
    assert_eq!(gate.forced_outcomes(), 400);
    let health = gate.health();
    assert_eq!((health.canary_requests, health.production_requests), (0, 0));
    // 400 failures, none judged: the canary is still there.
    assert_eq!(gate.monitor_canary_health().canary_requests, 0);
    assert_eq!(gate.environment(), canary(50.0));
    // An ordinary decision still counts.
    let plain = gate.route_request("user-0");
    assert_eq!(plain.forced, None);
    assert_eq!(
        gate.record_outcome(&plain, true, Duration::from_millis(3)),
        Recorded::Counted
    );
    let health = gate.health();
    assert_eq!(health.canary_requests + health.production_requests, 1);
}

#[test]
fn swap_config_changes_overrides_and_refuses_a_bad_section_unchanged() {
    let gate = gate(config(canary(0.0), None));
    assert!(!gate.route_request("tester-1").is_canary);
    gate.swap_config(config(canary(0.0), Some(overrides())))
        .unwrap();
    assert!(gate.route_request("tester-1").is_canary);
    let generation_config = gate.config();

    let bad = Overrides {
        stable_ids: vec!["tester-1".into()],
        ..overrides()
    };
    let Err(Error::Config(err)) = gate.swap_config(config(canary(0.0), Some(bad))) else {
        panic!("an id on both lists is refused");
    };
    assert_eq!(
        (err.field(), err.value()),
        ("overrides.stable_ids[0]", "\"tester-1\"")
    );
    assert_eq!(gate.config(), generation_config);
    assert!(gate.route_request("tester-1").is_canary);

    gate.swap_config(config(canary(0.0), None)).unwrap();
    assert_eq!(gate.route_request("tester-1").forced, None);
    assert!(!gate.route_request("tester-1").is_canary);
}

#[test]
fn the_json_section_is_read_and_refused_by_name() {
    let config = PromotionConfig::from_json(
        r#"{"overrides": {"header": "X-Canary", "cookie": "canary", "canary_ids": ["tester-1"], "stable_ids": ["vip-7"]}}"#,
    )
    .unwrap();
    assert_eq!(config.overrides, Some(overrides()));
    let back: PromotionConfig =
        serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
    assert_eq!(back, config);
    // No section: nothing written, so documents read by older versions stay readable.
    let plain = serde_json::to_string(&PromotionConfig::default()).unwrap();
    assert!(!plain.contains("overrides"), "{plain}");

    let err = PromotionConfig::from_json(r#"{"overrides": {"headr": "X"}}"#).unwrap_err();
    assert!(err.to_string().contains("headr"), "{err}");
    let err = PromotionConfig::from_json(r#"{"overrides": {"cookie": "a b"}}"#).unwrap_err();
    let Error::Config(err) = err else {
        panic!("{err}")
    };
    assert_eq!((err.field(), err.value()), ("overrides.cookie", "\"a b\""));
}

/// One `route` line of `tests/vectors/overrides.tsv`.
struct Case<'a> {
    config: &'a str,
    id: &'a str,
    value: Option<Vec<u8>>,
    is_canary: bool,
    forced: &'a str,
}

/// A VALUE field of `tests/vectors/overrides.tsv`: `-` none, `hex:` and the bytes in hex, or
/// the field's own bytes.
fn forcing_value(field: &str) -> Option<Vec<u8>> {
    if field == "-" {
        return None;
    }
    let Some(hex) = field.strip_prefix("hex:") else {
        return Some(field.as_bytes().to_vec());
    };
    assert!(hex.len() % 2 == 0, "{field:?}");
    Some(
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect(),
    )
}

#[test]
fn the_shared_vectors_hold() {
    let text = include_str!("vectors/overrides.tsv");
    let mut configs = std::collections::HashMap::new();
    let mut cases = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields[..] {
            ["config", name, json] => {
                configs.insert(name, gate(PromotionConfig::from_json(json).unwrap()));
            }
            ["route", config, id, value, is_canary, forced] => cases.push(Case {
                config,
                id,
                value: forcing_value(value),
                is_canary: is_canary == "1",
                forced,
            }),
            _ => panic!("a malformed line: {line:?}"),
        }
    }
    assert!(cases.len() >= 45, "{} cases", cases.len());
    let recorded = |forced: bool| {
        if forced {
            Recorded::Forced
        } else {
            Recorded::Counted
        }
    };
    for case in &cases {
        let gate = &configs[case.config];
        let value = case.value.as_deref();
        let d = gate.route_request_forced(case.id.as_bytes(), value);
        let forced = d.forced.map_or("none", |f| f.by.name());
        let line = format!("{} {:?} {:?}", case.config, case.id, case.value);
        assert_eq!(
            (d.is_canary, forced),
            (case.is_canary, case.forced),
            "{line}"
        );
        let ignored = gate.ignored_override_values();
        let latency = Duration::from_millis(1);
        assert_eq!(
            gate.record_outcome(&d, true, latency),
            recorded(case.forced != "none"),
            "{line}"
        );
        assert_eq!(
            gate.record_request_outcome_forced(case.id.as_bytes(), value, true, latency),
            recorded(case.forced != "none"),
            "{line}"
        );
        assert_eq!(
            gate.record_request_outcome(case.id, true, latency),
            recorded(case.forced == "id_list"),
            "{line}"
        );
        // Recording by id counts no ignored value again.
        assert_eq!(gate.ignored_override_values(), ignored, "{line}");
    }
}

/// A request forced by value and recorded by id: the plain call cannot see the value (it counts
/// the outcome in the cohort of the id's bucket, documented), the forced one counts it apart.
#[test]
fn a_record_by_id_with_the_forcing_value_counts_in_neither_cohort() {
    let gate = gate(config(canary(0.0), Some(overrides())));
    let latency = Duration::from_millis(2);
    let served = gate.route_request_forced(b"tester", Some(b"canary"));
    assert!(served.is_canary);
    assert_eq!(
        gate.record_request_outcome_forced(b"tester", Some(b"canary"), false, latency),
        Recorded::Forced
    );
    let health = gate.health();
    assert_eq!((health.canary_requests, health.production_requests), (0, 0));
    assert_eq!(gate.forced_outcomes(), 1);
    // What the plain call does with the same request.
    assert_eq!(
        gate.record_request_outcome("tester", false, latency),
        Recorded::Counted
    );
    assert_eq!(gate.health().production_requests, 1);
    // An id list is seen by both; a value forcing nothing is not counted again as ignored.
    for value in [None, Some(&b"stable"[..]), Some(b"beta")] {
        assert_eq!(
            gate.record_request_outcome_forced(b"tester-1", value, true, latency),
            Recorded::Forced
        );
    }
    assert_eq!(
        gate.record_request_outcome_forced(b"someone", Some(b"beta"), true, latency),
        Recorded::Counted
    );
    assert_eq!(gate.ignored_override_values(), 0);
    // Bytes that are no UTF-8 are an id like any other.
    assert_eq!(
        gate.record_request_outcome_forced(b"\xff\xfe", Some(b"STABLE"), true, latency),
        Recorded::Forced
    );
    assert_eq!(gate.forced_outcomes(), 5);
}

/// Routing while a writer swaps between two configs that list one id on opposite lists: every
/// forced decision comes from one published state (its version, threshold and flags agree),
/// never from one config's lists and the other's route table.
#[test]
fn forced_decisions_come_from_one_published_state() {
    let listed = |canary_ids: Vec<String>, stable_ids| Overrides {
        canary_ids,
        stable_ids,
        ..Default::default()
    };
    let to_canary = PromotionConfig {
        environment: canary(1.0),
        feature_flags: vec!["flag-a".into()],
        overrides: Some(listed(vec!["tester".into()], vec![])),
        ..Default::default()
    };
    let to_stable = PromotionConfig {
        environment: canary(2.0),
        feature_flags: vec!["flag-b".into()],
        overrides: Some(listed(vec![], vec!["tester".into()])),
        ..Default::default()
    };
    let gate = gate(to_canary.clone());
    // This thread routes first, so that its reference to the first snapshot must be renewed.
    assert!(gate.route_request("tester").is_canary);
    let stop = AtomicBool::new(false);
    // Decisions seen per version (stable, canary), over both readers.
    let seen = [AtomicU64::new(0), AtomicU64::new(0)];
    let start = Barrier::new(3);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    let d = gate.route_request("tester");
                    let flags: Vec<&str> = d.enabled_features.iter().collect();
                    let expected = if d.is_canary {
                        (canary(1.0), Cohort::Canary, vec!["flag-a"])
                    } else {
                        (canary(2.0), Cohort::Stable, vec![])
                    };
                    assert_eq!(
                        (d.target_environment, d.forced.map(|f| f.to), flags),
                        (expected.0, Some(expected.1), expected.2),
                        "{d:?}"
                    );
                    seen[usize::from(d.is_canary)].fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        start.wait();
        // At least 400 writes, and on until the readers saw both states (bounded); the last
        // one is to the stable version.
        for i in 0..100_000 {
            let next = if i % 2 == 0 { &to_stable } else { &to_canary };
            gate.swap_config(next.clone()).unwrap();
            if i % 2 == 0 && i >= 400 && seen.iter().all(|n| n.load(Ordering::Relaxed) > 0) {
                break;
            }
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
    });
    let last = gate.route_request("tester");
    assert_eq!(
        (last.is_canary, last.target_environment),
        (false, canary(2.0))
    );
    let seen = seen.map(AtomicU64::into_inner);
    assert!(
        seen.iter().all(|&n| n > 0),
        "both states were routed under: {seen:?}"
    );
}
