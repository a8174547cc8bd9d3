//! The exposition, read back by a small parser of the text format.

use super::*;
use crate::config::PromotionConfig;
use crate::slo::{SloAdmissionController, SloConfig};
use crate::{ManualClock, RollbackTrigger, StageId};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

fn gate(name: &str, environment: Environment) -> PromotionGateManager {
    PromotionGateManager::with_clock(
        PromotionConfig {
            gate: name.into(),
            environment,
            ..Default::default()
        },
        SloAdmissionController::new(SloConfig::default()).unwrap(),
        Arc::new(ManualClock::new()),
    )
    .unwrap()
}

/// One sample line: name, labels, value, and the type its family is declared.
#[derive(Debug)]
struct Sample {
    name: String,
    kind: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses an exposition: the families (name → type, in order of their `# TYPE` line) and the
/// samples. Checks on the way that each family has one HELP then one TYPE line before its
/// samples, that a family's samples are contiguous, and that no series (name and labels) is
/// repeated.
fn parse(text: &str) -> (Vec<(String, String)>, Vec<Sample>) {
    let mut families: Vec<(String, String)> = Vec::new();
    let mut samples: Vec<Sample> = Vec::new();
    let mut series_seen = std::collections::BTreeSet::new();
    let mut help: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_string();
            assert!(
                help.replace(name).is_none(),
                "HELP without TYPE before {line}"
            );
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert_eq!(
                help.take().as_deref(),
                Some(name),
                "TYPE without HELP: {line}"
            );
            assert!(
                families.iter().all(|(n, _)| n != name),
                "{name} declared twice"
            );
            families.push((name.to_string(), kind.to_string()));
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = series.split_once('{').unwrap();
            let (family, kind) = families.last().unwrap();
            let base = if kind == "histogram" {
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name)
            } else {
                name
            };
            assert_eq!(base, family, "sample of another family: {line}");
            let labels = parse_labels(labels.strip_suffix('}').unwrap());
            assert!(
                series_seen.insert((name.to_string(), labels.clone())),
                "series repeated: {line}"
            );
            samples.push(Sample {
                name: name.to_string(),
                kind: kind.clone(),
                labels,
                value: match value {
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    v => v.parse().unwrap(),
                },
            });
        }
    }
    (families, samples)
}

/// `k="v",k2="v2"` with escapes undone.
fn parse_labels(mut text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !text.is_empty() {
        let (key, rest) = text.split_once("=\"").unwrap();
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().unwrap() {
                (_, '\\') => match chars.next().unwrap().1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_string(), value);
        text = rest[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&rest[end + 1..]);
    }
    labels
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<_> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0].value
}

/// The parser's own check: one series twice (the same name and labels, in another order) is
/// refused, the same name with other labels is not.
#[test]
fn the_parser_refuses_a_series_repeated() {
    let family = "# HELP a_total A.\n# TYPE a_total counter\n";
    let (_, samples) = parse(&format!(
        "{family}a_total{{gate=\"g\",rule=\"x\"}} 1\na_total{{gate=\"g\",rule=\"y\"}} 1\n"
    ));
    assert_eq!(samples.len(), 2);
    let repeated =
        format!("{family}a_total{{gate=\"g\",rule=\"x\"}} 1\na_total{{rule=\"x\",gate=\"g\"}} 2\n");
    let refused = std::panic::catch_unwind(|| parse(&repeated));
    let message = refused.err().and_then(|e| e.downcast::<String>().ok());
    assert_eq!(
        message.as_deref().map(String::as_str),
        Some(r#"series repeated: a_total{rule="x",gate="g"} 2"#)
    );
}

#[test]
fn every_family_is_declared_once_with_help_and_type_and_every_sample_has_the_gate() {
    let web = gate(
        "web",
        Environment::Canary {
            traffic_percent: 5.0,
        },
    );
    let api = gate("api", Environment::Staging);
    let mut text = String::new();
    write_exposition(&[&web, &api], &mut text).unwrap();
    let (families, samples) = parse(&text);
    for (name, kind) in &families {
        assert!(name.starts_with("promotion_"), "{name}");
        assert_eq!(name.ends_with("_total"), kind == "counter", "{name} {kind}");
    }
    // What `promtool check metrics` refuses: a counter or gauge named as a histogram's series
    // or labelled `le` (an untyped family may be, as the window's latency histogram is).
    for s in samples
        .iter()
        .filter(|s| s.kind == "counter" || s.kind == "gauge")
    {
        let reserved = ["_bucket", "_sum", "_count"];
        assert!(!reserved.iter().any(|r| s.name.ends_with(r)), "{s:?}");
        assert!(!s.labels.contains_key("le"), "{s:?}");
    }
    for gate in ["web", "api"] {
        assert!(
            families.iter().all(|(family, _)| samples
                .iter()
                .any(|s| s.name.starts_with(family.as_str()) && s.labels["gate"] == gate)),
            "a family without gate {gate}"
        );
    }
    assert!(samples.iter().all(|s| s.labels.contains_key("gate")));
}

#[test]
fn two_gates_of_one_name_are_refused_naming_both_positions_and_nothing_is_written() {
    let web = gate("web", Environment::Staging);
    let api = gate("api", Environment::Staging);
    let other_web = gate("web", Environment::Production);
    let mut text = String::new();
    let err = write_exposition(&[&web, &api, &other_web], &mut text).unwrap_err();
    assert_eq!(
        err,
        ExpositionError::SameName {
            name: "web".into(),
            first: 0,
            second: 2
        }
    );
    assert_eq!(
        err.to_string(),
        r#"gates[2] is named "web", as gates[0] is: their series would repeat"#
    );
    assert!(text.is_empty(), "{text}");
    // One gate given twice is refused the same way.
    assert!(matches!(
        write_exposition(&[&api, &api], &mut text),
        Err(ExpositionError::SameName {
            first: 0,
            second: 1,
            ..
        })
    ));
}

#[test]
fn gauges_show_what_the_side_effect_free_reads_show() {
    let gate = gate(
        "checkout",
        Environment::Canary {
            traffic_percent: 25.0,
        },
    );
    for i in 0..400 {
        let d = gate.route_request(&format!("user-{i}"));
        gate.record_outcome(&d, i % 50 != 0, Duration::from_millis(2 + i % 7));
    }
    let (_, samples) = parse(&exposition(&gate));
    let health = gate.health();
    let g = [("gate", "checkout")];
    assert_eq!(
        value(&samples, "promotion_health_score", &g),
        health.health_score
    );
    assert_eq!(
        value(&samples, "promotion_canary_error_rate", &g),
        health.canary_error_rate
    );
    assert_eq!(
        value(&samples, "promotion_stable_error_rate", &g),
        health.production_error_rate
    );
    assert_eq!(
        value(&samples, "promotion_canary_traffic_ratio", &g),
        gate.environment().traffic_percent() / 100.0
    );
    assert_eq!(
        value(&samples, "promotion_stage", &g),
        gate.stage().get() as f64
    );
    for (cohort, evidence) in [
        ("canary", health.evidence.canary),
        ("stable", health.evidence.stable),
    ] {
        let c = [("gate", "checkout"), ("cohort", cohort)];
        assert_eq!(
            value(&samples, "promotion_window_requests", &c),
            evidence.requests as f64
        );
        assert_eq!(
            value(&samples, "promotion_window_errors", &c),
            evidence.errors as f64
        );
        assert_eq!(
            value(&samples, "promotion_slo_compliance_ratio", &c),
            evidence.compliance
        );
        assert_eq!(
            value(&samples, "promotion_p99_latency_seconds", &c),
            evidence.p99.as_secs_f64()
        );
    }
    assert!(health.evidence.canary.requests > 0 && health.evidence.stable.requests > 0);
    for state in ["canary", "staging", "production"] {
        let on = value(&samples, "promotion_environment", &[("environment", state)]);
        assert_eq!(on == 1.0, state == "canary", "{state}");
    }
    let current = health.recommendation.to_string().to_lowercase();
    for state in ["healthy", "monitor", "rollback", "no_data"] {
        let on = value(
            &samples,
            "promotion_recommendation",
            &[("recommendation", state)],
        );
        assert_eq!(on == 1.0, state == current, "{state}");
    }
    for &rule in Rule::ALL {
        let finding = health.evidence.findings.iter().find(|f| f.rule == rule);
        let r = [("rule", rule.name())];
        let fired = value(&samples, "promotion_rule_fired", &r);
        assert_eq!(fired == 1.0, finding.is_some_and(|f| f.fired), "{rule:?}");
        let judged = value(&samples, "promotion_rule_judged", &r);
        assert_eq!(judged == 1.0, finding.is_some(), "{rule:?}");
    }
}

#[test]
fn every_rule_has_its_series_whether_judged_or_not() {
    let gate = gate(
        "g",
        Environment::Canary {
            traffic_percent: 50.0,
        },
    );
    let rules = |gate: &PromotionGateManager, family: &str| {
        let (_, samples) = parse(&exposition(gate));
        let rules: Vec<(String, f64)> = samples
            .iter()
            .filter(|s| s.name == family)
            .map(|s| (s.labels["rule"].clone(), s.value))
            .collect();
        rules
    };
    let all: Vec<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
    let names = |series: &[(String, f64)]| -> Vec<String> {
        series.iter().map(|(rule, _)| rule.clone()).collect()
    };
    // No traffic: most rules are not judged, and every rule has its series all the same.
    let idle_judged = rules(&gate, "promotion_rule_judged");
    assert_eq!(names(&rules(&gate, "promotion_rule_fired")), all);
    assert_eq!(names(&idle_judged), all);
    assert!(idle_judged.iter().any(|(_, judged)| *judged == 0.0));
    // Both cohorts' traffic: more rules judged, the same series.
    for i in 0..400 {
        let d = gate.route_request(&format!("user-{i}"));
        gate.record_outcome(&d, true, Duration::from_millis(2));
    }
    let busy_judged = rules(&gate, "promotion_rule_judged");
    assert_eq!(names(&rules(&gate, "promotion_rule_fired")), all);
    assert_eq!(names(&busy_judged), all);
    let count = |series: &[(String, f64)]| series.iter().filter(|(_, v)| *v == 1.0).count();
    assert!(count(&busy_judged) > count(&idle_judged), "{busy_judged:?}");
}

#[test]
fn the_latency_histogram_counts_each_sample_in_the_buckets_at_or_above_it() {
    let gate = gate("g", Environment::Staging);
    // Every bound itself, 1 µs on either side and 1 % on either side, plus a few in between.
    let mut latencies_us: Vec<u64> = vec![200, 700, 3_000, 3_000, 40_000, 2_000_000, 45_000_000];
    for le in LATENCY_BUCKETS_SECONDS {
        let us = (le * 1e6).round() as u64;
        latencies_us.extend([us * 99 / 100, us - 1, us, us + 1, us * 101 / 100]);
    }
    let (_, max_micros, _) = crate::metrics::histogram_bounds();
    latencies_us.retain(|&us| us <= max_micros);
    for (i, &us) in latencies_us.iter().enumerate() {
        let d = gate.route_request(&format!("u{i}"));
        gate.record_outcome(&d, true, Duration::from_micros(us));
    }
    let (_, samples) = parse(&exposition(&gate));
    let canary = |le: &str| {
        value(
            &samples,
            "promotion_window_latency_seconds_bucket",
            &[("cohort", "canary"), ("le", le)],
        )
    };
    let at_or_below = |bound: f64| {
        latencies_us
            .iter()
            .filter(|&&us| us as f64 <= bound)
            .count()
    };
    for le in LATENCY_BUCKETS_SECONDS {
        let got = canary(&le.to_string());
        let bound = le * 1e6;
        // Every sample at or below the bound, the bound itself included; above it, at most
        // those that share its HDR bucket (under 0.78 % above).
        assert!(got >= at_or_below(bound) as f64, "le {le}: {got}");
        assert!(
            got <= at_or_below(bound * (1.0 + 1.0 / 128.0)) as f64,
            "le {le}: {got}"
        );
        // 1 % above is never counted, 1 % below always.
        assert_eq!(
            got,
            at_or_below(bound) as f64 + within(&latencies_us, bound),
            "le {le}"
        );
    }
    let n = latencies_us.len() as f64;
    assert_eq!(canary("+Inf"), n);
    let count = [("cohort", "canary")];
    assert_eq!(
        value(&samples, "promotion_window_latency_seconds_count", &count),
        n
    );
    let sum = value(&samples, "promotion_window_latency_seconds_sum", &count);
    let naive_sum: f64 = latencies_us.iter().map(|&us| us as f64 / 1e6).sum();
    assert!(
        (sum - naive_sum).abs() <= naive_sum * 0.01,
        "{sum} vs {naive_sum}"
    );
    let stable = [("cohort", "stable"), ("le", "+Inf")];
    assert_eq!(
        value(&samples, "promotion_window_latency_seconds_bucket", &stable),
        0.0
    );
}

/// How many of `latencies_us` are above `bound` but in the HDR bucket that holds it.
fn within(latencies_us: &[u64], bound: f64) -> f64 {
    let bound = bound.round() as u64;
    let (low, high, figures) = crate::metrics::histogram_bounds();
    let histogram = Histogram::<u64>::new_with_bounds(low, high, figures).unwrap();
    latencies_us
        .iter()
        .filter(|&&us| us > bound && histogram.lowest_equivalent(us) <= bound)
        .count() as f64
}

#[test]
fn a_latency_above_the_tracked_range_is_in_no_finite_bucket() {
    let gate = gate("g", Environment::Staging);
    for (i, seconds) in [300, 3_600].into_iter().enumerate() {
        let d = gate.route_request(&format!("u{i}"));
        gate.record_outcome(&d, true, Duration::from_secs(seconds));
    }
    let (_, samples) = parse(&exposition(&gate));
    let bucket = |le: &str| {
        let labels = [("cohort", "canary"), ("le", le)];
        value(&samples, "promotion_window_latency_seconds_bucket", &labels)
    };
    // The window holds them as 60 s: no bound may claim them, only +Inf.
    for le in LATENCY_BUCKETS_SECONDS {
        assert_eq!(bucket(&le.to_string()), 0.0, "le {le}");
    }
    assert_eq!(bucket("+Inf"), 2.0);
    let sum = value(
        &samples,
        "promotion_window_latency_seconds_sum",
        &[("cohort", "canary")],
    );
    // Each at the midpoint of the last HDR bucket (59.768832 s ..= 60.030975 s), as the
    // docs say: not 60 s.
    assert_eq!(sum, 2.0 * 59.899904);
}

/// `_sum` adds each sample as its HDR bucket's midpoint, as `LATENCY_BUCKETS_SECONDS` and
/// docs/telemetry.md say: exact below 256 µs, within 0.39 % above.
#[test]
fn the_latency_sum_counts_each_sample_at_its_hdr_buckets_midpoint() {
    let sum_of = |micros: u64| {
        let gate = gate("g", Environment::Staging);
        let d = gate.route_request("u");
        gate.record_outcome(&d, true, Duration::from_micros(micros));
        let (_, samples) = parse(&exposition(&gate));
        let canary = [("cohort", "canary")];
        value(&samples, "promotion_window_latency_seconds_sum", &canary)
    };
    assert_eq!(sum_of(100), 0.0001);
    assert_eq!(sum_of(255), 0.000255);
    assert_eq!(sum_of(1_000_000), 1.001472);
    assert_eq!(sum_of(60_000_000), 59.899904);
    assert_eq!(sum_of(59_768_832), 59.899904);
    let (_, max_micros, _) = crate::metrics::histogram_bounds();
    let mut micros = 256;
    while micros <= max_micros {
        let off = (sum_of(micros) * 1e6 - micros as f64).abs();
        assert!(off <= micros as f64 / 256.0, "{micros} µs: {off} µs off");
        micros = micros * 13 / 10;
    }
}

/// A series declared a counter, or a histogram (whose series are counters in the text format),
/// never falls: `rate()` and `increase()` would read each fall as a counter reset. The
/// window's series do fall as its samples leave it. Every counter but the rollbacks of causes
/// never met counts before the window moves on, so that a fall would show.
#[test]
fn no_series_declared_a_counter_or_a_histogram_falls_when_the_window_moves_on() {
    let clock = Arc::new(ManualClock::new());
    let config = PromotionConfig {
        gate: "g".into(),
        environment: Environment::Staging,
        overrides: Some(crate::Overrides {
            header: Some("X-Canary".into()),
            canary_ids: vec!["tester".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let window = Duration::from_secs(config.rollback_window_seconds);
    let slo = SloAdmissionController::new(SloConfig::default()).unwrap();
    let gate = PromotionGateManager::with_clock(config, slo, clock.clone()).unwrap();
    let record = |i: u32| {
        let d = gate.route_request(&format!("u{i}"));
        gate.record_outcome(&d, true, Duration::from_millis(3));
    };
    // A flag on (a new stage) and off (a rollback): a decision of the stage before is late.
    let old = gate.route_request("u").stage;
    gate.enable_feature("dark_mode").unwrap();
    gate.disable_feature("dark_mode").unwrap();
    (0..10).for_each(record);
    gate.record_for(old, true, true, Duration::from_millis(1));
    let foreign = StageId::new(gate.route_request("u").stage.get() + 7);
    gate.record_for(foreign, true, true, Duration::from_millis(1));
    let tester = gate.route_request("tester");
    gate.record_outcome(&tester, true, Duration::from_millis(1));
    gate.route_request_forced(b"u", Some(b"nope"));
    // An evaluation leaves its reading: the window's start once the clock has moved on.
    gate.monitor_canary_health();
    let (_, before) = parse(&exposition(&gate));
    let counted = |name: &str, labels: &[(&str, &str)]| value(&before, name, labels);
    let flag = [("trigger", "flag_disabled"), ("rule", "none")];
    assert_eq!(
        [
            counted("promotion_late_outcomes_total", &[]),
            counted("promotion_foreign_outcomes_total", &[]),
            counted("promotion_forced_outcomes_total", &[]),
            counted("promotion_ignored_override_values_total", &[]),
            counted("promotion_rollbacks_total", &flag),
        ],
        [1.0; 5],
        "every kind of counter counts before the window moves on"
    );
    clock.advance(window + Duration::from_secs(1));
    record(10);
    let (_, after) = parse(&exposition(&gate));
    let canary = [("cohort", "canary")];
    for (samples, n) in [(&before, 10.0), (&after, 1.0)] {
        assert_eq!(value(samples, "promotion_window_requests", &canary), n);
        let count = value(samples, "promotion_window_latency_seconds_count", &canary);
        assert_eq!(count, n);
    }
    let mut fell = Vec::new();
    for old in before
        .iter()
        .filter(|s| s.kind == "counter" || s.kind == "histogram")
    {
        let new = after
            .iter()
            .find(|s| s.name == old.name && s.labels == old.labels)
            .unwrap();
        if new.value < old.value {
            fell.push((&old.name, &old.labels, old.value, new.value));
        }
    }
    assert!(fell.is_empty(), "fell: {fell:?}");
}

/// Environment and stage come from one snapshot: a scrape during promotions and rollbacks
/// never shows Production (odd stages here) with a canary stage's number, or the reverse.
#[test]
fn a_scrape_reads_the_environment_and_the_stage_of_one_state() {
    let gate = Arc::new(gate("g", Environment::Production));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (gate, stop) = (Arc::clone(&gate), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let canary = Environment::Canary {
                    traffic_percent: 5.0,
                };
                gate.promote(canary).unwrap();
                gate.rollback("the scrape test").unwrap();
            }
        })
    };
    let mut mixed = Vec::new();
    for _ in 0..5_000 {
        let (_, samples) = parse(&exposition(&gate));
        let production = value(
            &samples,
            "promotion_environment",
            &[("environment", "production")],
        );
        let stage = value(&samples, "promotion_stage", &[]) as u64;
        let ratio = value(&samples, "promotion_canary_traffic_ratio", &[]);
        if (production == 1.0) == stage.is_multiple_of(2)
            || (ratio > 0.0) != stage.is_multiple_of(2)
        {
            mixed.push((production, stage, ratio));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        mixed.is_empty(),
        "{} mixed scrapes: {:?}",
        mixed.len(),
        &mixed[..mixed.len().min(3)]
    );
}

#[test]
fn an_empty_histogram_sums_to_zero_not_minus_zero() {
    let gate = gate("g", Environment::Staging);
    let text = exposition(&gate);
    assert!(
        text.contains("promotion_window_latency_seconds_sum{gate=\"g\",cohort=\"canary\"} 0\n"),
        "{text}"
    );
    assert!(!text.contains(" -0\n"), "{text}");
}

#[test]
fn rollbacks_total_starts_at_zero_and_counts_each_cause() {
    let gate = gate(
        "g",
        Environment::Canary {
            traffic_percent: 100.0,
        },
    );
    let rollbacks = |text: &str, trigger: &str, rule: &str| {
        let (_, samples) = parse(text);
        value(
            &samples,
            "promotion_rollbacks_total",
            &[("trigger", trigger), ("rule", rule)],
        )
    };
    let before = exposition(&gate);
    assert_eq!(rollbacks(&before, "manual", "none"), 0.0);
    assert_eq!(rollbacks(&before, "flag_disabled", "none"), 0.0);
    // Every rule that can roll back, even one not judged yet (no stable traffic).
    assert!(
        !gate
            .health()
            .evidence
            .findings
            .iter()
            .any(|f| f.rule == Rule::ErrorRateVsStable)
    );
    for rule in Rule::ALL.iter().copied().filter(|r| *r != Rule::NoData) {
        assert_eq!(
            rollbacks(&before, "automatic", rule.name()),
            0.0,
            "{rule:?}"
        );
    }
    let (_, samples) = parse(&before);
    assert!(
        !samples
            .iter()
            .any(|s| s.name == "promotion_rollbacks_total" && s.labels["rule"] == "no_data")
    );
    let mut i = 0;
    while gate.environment() != Environment::Production {
        let d = gate.route_request(&format!("u{i}"));
        gate.record_outcome(&d, false, Duration::from_millis(1));
        i += 1;
        assert!(i < 100, "no automatic rollback");
    }
    let event = &gate.rollback_history()[0];
    assert_eq!(event.trigger, RollbackTrigger::Automatic);
    let rule = event
        .evidence
        .as_ref()
        .unwrap()
        .fired()
        .next()
        .unwrap()
        .rule;
    gate.promote(Environment::Canary {
        traffic_percent: 1.0,
    })
    .unwrap();
    gate.rollback("by hand").unwrap();
    let after = exposition(&gate);
    assert_eq!(rollbacks(&after, "automatic", rule.name()), 1.0);
    assert_eq!(rollbacks(&after, "manual", "none"), 1.0);
    assert_eq!(rollbacks(&after, "flag_disabled", "none"), 0.0);
}

#[test]
fn late_and_foreign_outcomes_are_counted_apart() {
    let gate = gate(
        "g",
        Environment::Canary {
            traffic_percent: 50.0,
        },
    );
    let counts = |gate: &PromotionGateManager| {
        let (_, samples) = parse(&exposition(gate));
        (
            value(&samples, "promotion_late_outcomes_total", &[]),
            value(&samples, "promotion_foreign_outcomes_total", &[]),
        )
    };
    assert_eq!(counts(&gate), (0.0, 0.0));
    let old = gate.route_request("u").stage;
    gate.record_for(
        StageId::new(old.get() + 7),
        true,
        true,
        Duration::from_millis(1),
    );
    gate.record_for(
        StageId::new(old.get() + 7),
        false,
        true,
        Duration::from_millis(1),
    );
    assert_eq!(counts(&gate), (0.0, 2.0));
    gate.rollback("a new stage").unwrap();
    // The first outcome of the new stage clears the thread's recorder; then the old one is late.
    let now = gate.route_request("u");
    gate.record_outcome(&now, true, Duration::from_millis(1));
    gate.record_for(old, true, true, Duration::from_millis(1));
    assert_eq!(counts(&gate), (1.0, 2.0));
    assert_eq!((gate.late_outcomes(), gate.foreign_outcomes()), (1, 2));
}

#[test]
fn exporting_changes_nothing_the_gate_judges() {
    let gate = gate(
        "g",
        Environment::Canary {
            traffic_percent: 100.0,
        },
    );
    for i in 0..5 {
        let d = gate.route_request(&format!("u{i}"));
        gate.record_outcome(&d, i % 2 == 0, Duration::from_millis(1));
    }
    let health = gate.health();
    let first = exposition(&gate);
    assert_eq!(exposition(&gate), first);
    assert_eq!(gate.health(), health);
    assert_eq!(
        gate.environment(),
        Environment::Canary {
            traffic_percent: 100.0
        }
    );
}

#[test]
fn label_values_and_help_are_escaped() {
    let gate = gate(r#"we"b\1"#, Environment::Production);
    let text = exposition(&gate);
    assert!(
        text.contains(r#"promotion_stage{gate="we\"b\\1"} 1"#),
        "{text}"
    );
    let (_, samples) = parse(&text);
    assert!(samples.iter().all(|s| s.labels["gate"] == r#"we"b\1"#));
    assert_eq!(escape_label("a\nb"), "a\\nb");
    assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
}

#[test]
fn values_are_written_as_prometheus_reads_them() {
    let written: Vec<String> = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.25,
        3.0,
        1e-7,
        -0.0,
        0.0,
    ]
    .map(|v| Value(v).to_string())
    .into();
    assert_eq!(
        written,
        ["NaN", "+Inf", "-Inf", "0.25", "3", "0.0000001", "0", "0"]
    );
}

/// A count is written as the integer it is: as an `f64`, `u64::MAX` was written
/// 18446744073709552000, and 2^53 + 1 as 2^53.
#[test]
fn counts_are_written_as_integers_however_large() {
    let web = gate("web", Environment::Staging);
    let counts = OutcomeCounts {
        late_outcomes: u64::MAX,
        forced_outcomes: (1 << 53) + 1,
        ..OutcomeCounts::default()
    };
    let mut text = String::new();
    write_exposition_counted(&[(&web, counts)], &mut text).unwrap();
    for line in [
        "promotion_late_outcomes_total{gate=\"web\"} 18446744073709551615\n",
        "promotion_forced_outcomes_total{gate=\"web\"} 9007199254740993\n",
        "promotion_stage{gate=\"web\"} 1\n",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    let written: Vec<String> = [0, 1, u64::MAX].map(|n| Number::from(n).to_string()).into();
    assert_eq!(written, ["0", "1", "18446744073709551615"]);
}

#[test]
fn forced_outcomes_and_ignored_values_are_counted_apart() {
    let gate = PromotionGateManager::new(
        PromotionConfig {
            gate: "g".into(),
            environment: Environment::Canary {
                traffic_percent: 50.0,
            },
            overrides: Some(crate::Overrides {
                header: Some("X-Canary".into()),
                canary_ids: vec!["tester".into()],
                ..Default::default()
            }),
            ..Default::default()
        },
        SloAdmissionController::new(SloConfig::default()).unwrap(),
    )
    .unwrap();
    let counts = |gate: &PromotionGateManager| {
        let (_, samples) = parse(&exposition(gate));
        (
            value(&samples, "promotion_forced_outcomes_total", &[]),
            value(&samples, "promotion_ignored_override_values_total", &[]),
            value(
                &samples,
                "promotion_window_requests",
                &[("cohort", "canary")],
            ),
        )
    };
    assert_eq!(counts(&gate), (0.0, 0.0, 0.0));
    let tester = gate.route_request("tester");
    gate.record_outcome(&tester, false, Duration::from_millis(1));
    gate.route_request_forced(b"u", Some(b"nope"));
    assert_eq!(counts(&gate), (1.0, 1.0, 0.0));
}

#[test]
fn a_hosts_counts_replace_the_four_outcome_counters_and_nothing_else() {
    let web = gate(
        "web",
        Environment::Canary {
            traffic_percent: 50.0,
        },
    );
    let api = gate("api", Environment::Staging);
    let stage = web.route_request("u").stage;
    web.record_forced(stage);
    web.record_forced(StageId::new(stage.get() + 1));
    assert_eq!(
        OutcomeCounts::of(&web),
        OutcomeCounts {
            foreign_outcomes: 1,
            forced_outcomes: 1,
            ..OutcomeCounts::default()
        }
    );
    let counted = [
        (
            &web,
            OutcomeCounts {
                late_outcomes: 11,
                foreign_outcomes: 12,
                forced_outcomes: 13,
                ignored_override_values: 14,
            },
        ),
        (&api, OutcomeCounts::default()),
    ];
    let mut text = String::new();
    write_exposition_counted(&counted, &mut text).unwrap();
    let (families, samples) = parse(&text);
    let mut own = String::new();
    write_exposition(&[&web, &api], &mut own).unwrap();
    let (own_families, own_samples) = parse(&own);
    assert_eq!(families, own_families);
    let four = [
        ("promotion_late_outcomes_total", 11.0, 0.0),
        ("promotion_foreign_outcomes_total", 12.0, 1.0),
        ("promotion_forced_outcomes_total", 13.0, 1.0),
        ("promotion_ignored_override_values_total", 14.0, 0.0),
    ];
    assert_eq!(samples.len(), own_samples.len());
    for (sample, own) in samples.iter().zip(&own_samples) {
        assert_eq!((&sample.name, &sample.labels), (&own.name, &own.labels));
        let gate = sample.labels["gate"].as_str();
        match four.iter().find(|(name, ..)| *name == sample.name) {
            Some(&(_, host, gates_own)) if gate == "web" => {
                assert_eq!(
                    (sample.value, own.value),
                    (host, gates_own),
                    "{}",
                    sample.name
                );
            }
            Some(_) => assert_eq!((sample.value, own.value), (0.0, 0.0), "{}", sample.name),
            // the window's series may differ only where both read the clock: none here
            None => assert!(
                sample.value == own.value || (sample.value.is_nan() && own.value.is_nan()),
                "{} {:?}",
                sample.name,
                sample.labels
            ),
        }
    }
    let twice = write_exposition_counted(&[counted[0], counted[0]], &mut String::new());
    assert!(matches!(
        twice,
        Err(ExpositionError::SameName {
            first: 0,
            second: 1,
            ..
        })
    ));
    let mut empty = String::new();
    write_exposition_counted(&[], &mut empty).unwrap();
    assert_eq!(empty, "");
}
