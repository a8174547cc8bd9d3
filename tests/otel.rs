//! The OpenTelemetry gauges, counters and spans, seen by the SDK's in-memory exporters (the
//! way a host's OTLP exporter would receive them). One test: the tracer provider is global.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::{Array, KeyValue, Value, global};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{
    InMemoryMetricExporter, InMemoryMetricExporterBuilder, PeriodicReader, SdkMeterProvider,
    Temporality,
};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use promotion_gates::telemetry::{otel, route_request_observed};
use promotion_gates::*;

/// Data points: (metric name, attributes) → value.
type Points = BTreeMap<(String, Vec<(String, String)>), f64>;

/// Every data point of the last collection.
fn points(metrics: &[ResourceMetrics]) -> Points {
    let mut points = BTreeMap::new();
    let attrs = |kvs: &mut dyn Iterator<Item = &KeyValue>| -> Vec<(String, String)> {
        let mut attrs: Vec<_> = kvs
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect();
        attrs.sort();
        attrs
    };
    for metric in metrics
        .iter()
        .flat_map(|rm| rm.scope_metrics())
        .flat_map(|sm| sm.metrics())
    {
        let name = metric.name().to_string();
        match metric.data() {
            AggregatedMetrics::F64(MetricData::Gauge(gauge)) => {
                for p in gauge.data_points() {
                    points.insert((name.clone(), attrs(&mut p.attributes())), p.value());
                }
            }
            AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                assert!(sum.is_monotonic(), "{name}");
                for p in sum.data_points() {
                    points.insert((name.clone(), attrs(&mut p.attributes())), p.value() as f64);
                }
            }
            other => panic!("{name}: unexpected data {other:?}"),
        }
    }
    points
}

/// A meter provider whose one reader exports to an in-memory exporter of `temporality`, and
/// a meter of it.
#[allow(clippy::unwrap_used, reason = "test code")]
fn in_memory(
    temporality: Temporality,
) -> (
    InMemoryMetricExporter,
    SdkMeterProvider,
    opentelemetry::metrics::Meter,
) {
    let metrics = InMemoryMetricExporterBuilder::new()
        .with_temporality(temporality)
        .build();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics.clone()).build())
        .build();
    let meter = opentelemetry::metrics::MeterProvider::meter(&meter_provider, "host");
    (metrics, meter_provider, meter)
}

/// The data points of one collection of `provider`, `metrics` emptied for the next.
#[allow(clippy::unwrap_used, reason = "test code")]
fn collection(metrics: &InMemoryMetricExporter, provider: &SdkMeterProvider) -> Points {
    provider.force_flush().unwrap();
    let got = points(&metrics.get_finished_metrics().unwrap());
    metrics.reset();
    got
}

fn key(name: &str, attrs: &[(&str, &str)]) -> (String, Vec<(String, String)>) {
    let mut attrs: Vec<_> = attrs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    attrs.push(("promotion.gate".into(), "checkout".into()));
    attrs.sort();
    (name.to_string(), attrs)
}

/// A gate named `checkout`, a canary at `percent`, on a manual clock.
#[allow(clippy::unwrap_used, reason = "a failed set-up is a failed test")]
fn canary_gate(percent: f64) -> Arc<PromotionGateManager> {
    let config = PromotionConfig {
        gate: "checkout".into(),
        environment: Environment::Canary {
            traffic_percent: percent,
        },
        ..Default::default()
    };
    let slo = SloAdmissionController::new(SloConfig::default()).unwrap();
    let gate = PromotionGateManager::with_clock(config, slo, Arc::new(ManualClock::new()));
    Arc::new(gate.unwrap())
}

/// The window gauges show what the side-effect-free `health` shows (bit for bit).
fn assert_window_gauges(got: &Points, health: &CanaryHealth) {
    let same = |name: &str, attrs: &[(&str, &str)], value: f64| {
        let got = got[&key(name, attrs)];
        assert_eq!(
            got.to_bits(),
            value.to_bits(),
            "{name} {attrs:?}: {got} vs {value}"
        );
    };
    same("promotion.health_score", &[], health.health_score);
    same("promotion.canary_error_rate", &[], health.canary_error_rate);
    for (cohort, evidence) in [
        ("canary", &health.evidence.canary),
        ("stable", &health.evidence.stable),
    ] {
        let c = [("promotion.cohort", cohort)];
        same("promotion.window.requests", &c, evidence.requests as f64);
        same("promotion.window.errors", &c, evidence.errors as f64);
        same("promotion.slo_compliance", &c, evidence.compliance);
        same("promotion.p99_latency", &c, evidence.p99.as_secs_f64());
    }
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

#[test]
fn gauges_counters_and_spans_reach_the_hosts_providers() {
    let spans = InMemorySpanExporter::default();
    let tracer_provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    global::set_tracer_provider(tracer_provider.clone());
    let metrics = InMemoryMetricExporter::default();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics.clone()).build())
        .build();
    let meter = opentelemetry::metrics::MeterProvider::meter(&meter_provider, "host");

    let gate = canary_gate(40.0);
    let instruments = otel::observe(&gate, &meter);
    for i in 0..300 {
        let d = gate.route_request(&format!("user-{i}"));
        gate.record_outcome(&d, i % 60 != 0, Duration::from_millis(3 + i % 5));
    }

    // The window gauges show what the side-effect-free health shows (a manual clock: the window
    // stays as it is between the two reads).
    let got = collection(&metrics, &meter_provider);
    let health = gate.health();
    let cohorts = [&health.evidence.canary, &health.evidence.stable];
    assert!(cohorts.iter().all(|c| c.requests > 0 && c.errors > 0));
    assert_window_gauges(&got, &health);

    let observed = route_request_observed(&gate, "sampled-user");
    // No override section: a forcing value is ignored (and counted); one forced outcome.
    assert_eq!(
        gate.route_request_forced(b"u", Some(b"canary")).forced,
        None
    );
    gate.record_forced(observed.stage);
    gate.enable_feature("dark_mode").unwrap();
    gate.rollback("bad deploy").unwrap();

    meter_provider.force_flush().unwrap();
    let got = points(&metrics.get_finished_metrics().unwrap());
    let health = gate.health(); // the new stage's: nothing recorded since the rollback
    assert_eq!(health.evidence.canary.requests, 0);
    assert_window_gauges(&got, &health);
    assert_eq!(got[&key("promotion.traffic_percent", &[])], 0.0);
    for env in ["canary", "staging", "production"] {
        let on = got[&key("promotion.environment", &[("promotion.environment", env)])];
        assert_eq!(on == 1.0, env == "production", "{env}");
    }
    let manual = [("promotion.trigger", "manual"), ("promotion.rule", "none")];
    assert_eq!(got[&key("promotion.rollbacks", &manual)], 1.0);
    assert_eq!(got[&key("promotion.late_outcomes", &[])], 0.0);
    assert_eq!(got[&key("promotion.foreign_outcomes", &[])], 0.0);
    assert_eq!(got[&key("promotion.forced_outcomes", &[])], 1.0);
    assert_eq!(got[&key("promotion.ignored_override_values", &[])], 1.0);

    let finished = spans.get_finished_spans().unwrap();
    let named =
        |name: &str| -> Vec<&SpanData> { finished.iter().filter(|s| s.name == name).collect() };
    let route = named("promotion.route_request");
    assert_eq!(route.len(), 1, "only the observed route has a span");
    assert_eq!(
        attribute(route[0], "promotion.request_id"),
        Some(&Value::from("sampled-user"))
    );
    assert_eq!(
        attribute(route[0], "promotion.is_canary"),
        Some(&Value::Bool(observed.is_canary))
    );
    assert_eq!(
        attribute(route[0], "promotion.environment"),
        Some(&Value::from("canary"))
    );
    let flag = named("promotion.flag");
    assert_eq!(flag.len(), 1);
    assert_eq!(
        attribute(flag[0], "promotion.flag"),
        Some(&Value::from("dark_mode"))
    );
    assert_eq!(
        attribute(flag[0], "promotion.enabled"),
        Some(&Value::Bool(true))
    );
    let rollback = named("promotion.rollback");
    assert_eq!(rollback.len(), 1);
    assert_eq!(
        attribute(rollback[0], "promotion.reason"),
        Some(&Value::from("bad deploy"))
    );
    assert_eq!(
        attribute(rollback[0], "promotion.previous_env"),
        Some(&Value::from("canary"))
    );

    // A gated promotion carries the evidence the gate passed it on (recorded past the stage's
    // warm-up, whose latencies no rule judges).
    let clock = Arc::new(ManualClock::new());
    let staging = PromotionGateManager::with_clock(
        PromotionConfig {
            gate: "checkout".into(),
            environment: Environment::Canary {
                traffic_percent: 100.0,
            },
            ..Default::default()
        },
        SloAdmissionController::new(SloConfig::default()).unwrap(),
        clock.clone(),
    )
    .unwrap();
    clock.advance(SloConfig::default().warm_up + Duration::from_secs(1));
    for i in 0..200 {
        let d = staging.route_request(&format!("u{i}"));
        staging.record_outcome(&d, true, Duration::from_millis(2));
    }
    staging.promote(Environment::Staging).unwrap();
    let finished = spans.get_finished_spans().unwrap();
    let promote: Vec<_> = finished
        .iter()
        .filter(|s| s.name == "promotion.promote")
        .collect();
    assert_eq!(promote.len(), 1);
    assert_eq!(
        attribute(promote[0], "promotion.to"),
        Some(&Value::from("staging"))
    );
    assert_eq!(
        attribute(promote[0], "promotion.canary.requests"),
        Some(&Value::I64(200))
    );
    assert!(attribute(promote[0], "promotion.evidence").is_some());

    // An automatic rollback carries the judge's evidence.
    staging
        .promote(Environment::Canary {
            traffic_percent: 100.0,
        })
        .unwrap_err(); // no path back
    let mut i = 0;
    while staging.environment() != Environment::Production {
        let d = staging.route_request(&format!("failing-{i}"));
        staging.record_outcome(&d, false, Duration::from_millis(2));
        i += 1;
        assert!(i < 100, "no automatic rollback");
    }
    let finished = spans.get_finished_spans().unwrap();
    let automatic: Vec<_> = finished
        .iter()
        .filter(|s| s.name == "promotion.rollback")
        .filter(|s| attribute(s, "promotion.trigger") == Some(&Value::from("automatic")))
        .collect();
    assert_eq!(automatic.len(), 1);
    let event = &staging.rollback_history()[0];
    let fired: Vec<String> = event
        .evidence
        .as_ref()
        .unwrap()
        .fired()
        .map(|f| f.rule.name().to_string())
        .collect();
    let Some(Value::Array(Array::String(rules))) = attribute(automatic[0], "promotion.rules_fired")
    else {
        panic!("no promotion.rules_fired");
    };
    let rules: Vec<String> = rules.iter().map(|r| r.as_str().to_string()).collect();
    assert_eq!(rules, fired);
    assert!(!fired.is_empty());

    // The same information as the Prometheus exposition, as docs/telemetry.md maps it: with
    // a rollback counted, a new canary and latencies in its window.
    gate.promote(Environment::Canary {
        traffic_percent: 20.0,
    })
    .unwrap();
    for i in 0..50 {
        let d = gate.route_request(&format!("later-{i}"));
        gate.record_outcome(&d, i % 10 != 0, Duration::from_micros(300 + 997 * i));
    }
    metrics.reset();
    meter_provider.force_flush().unwrap();
    let got = points(&metrics.get_finished_metrics().unwrap());
    same_as_prometheus(&got, &gate);
    assert_eq!(got[&key("promotion.rollbacks", &manual)], 1.0);
    // Every cause has its series from the start, as in the exposition.
    let never = [
        ("promotion.trigger", "automatic"),
        ("promotion.rule", "error_rate_max"),
    ];
    assert_eq!(got[&key("promotion.rollbacks", &never)], 0.0);
    let canary = [("promotion.cohort", "canary")];
    assert!(got[&key("promotion.window.latency.count", &canary)] > 0.0);
    assert_eq!(got[&key("promotion.traffic_percent", &[])], 20.0);

    // A flag's rollback is counted as a rollback and has its rollback span, beside the flag's.
    gate.enable_feature("dark_mode").unwrap();
    gate.disable_feature("dark_mode").unwrap();
    metrics.reset();
    meter_provider.force_flush().unwrap();
    let got = points(&metrics.get_finished_metrics().unwrap());
    let by_flag = [
        ("promotion.trigger", "flag_disabled"),
        ("promotion.rule", "none"),
    ];
    assert_eq!(got[&key("promotion.rollbacks", &by_flag)], 1.0);
    let finished = spans.get_finished_spans().unwrap();
    let flag_rollbacks: Vec<_> = finished
        .iter()
        .filter(|s| s.name == "promotion.rollback")
        .filter(|s| attribute(s, "promotion.trigger") == Some(&Value::from("flag_disabled")))
        .collect();
    assert_eq!(flag_rollbacks.len(), 1);
    let history = gate.rollback_history();
    let reason = Value::from(history[1].reason.clone());
    assert_eq!(
        attribute(flag_rollbacks[0], "promotion.reason"),
        Some(&reason)
    );
    assert_eq!(
        attribute(flag_rollbacks[0], "promotion.previous_env"),
        Some(&Value::from("canary"))
    );

    // A swap makes the flag spans of the flags it turns off and on, one each, and no
    // rollback span (it is no rollback: nothing counted, nothing in the history).
    gate.enable_feature("old_flag").unwrap();
    spans.reset();
    let mut next = gate.config();
    next.feature_flags = vec!["new_flag".into()];
    gate.swap_config(next).unwrap();
    let finished = spans.get_finished_spans().unwrap();
    let changes: Vec<_> = finished
        .iter()
        .map(|s| {
            let flag = attribute(s, "promotion.flag").cloned();
            (
                s.name.to_string(),
                flag,
                attribute(s, "promotion.enabled").cloned(),
            )
        })
        .collect();
    let flag = |name: &str, on: bool| {
        let name = Some(Value::from(name.to_string()));
        ("promotion.flag".to_string(), name, Some(Value::Bool(on)))
    };
    assert_eq!(changes, [flag("old_flag", false), flag("new_flag", true)]);
    assert_eq!(gate.rollback_history().len(), 2);

    drop(instruments);
    meter_provider.shutdown().unwrap();
    tracer_provider.shutdown().unwrap();
}

#[test]
fn the_instruments_follow_a_gate_made_anew_and_stop_once_dropped() {
    let metrics = InMemoryMetricExporter::default();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics.clone()).build())
        .build();
    let meter = opentelemetry::metrics::MeterProvider::meter(&meter_provider, "host");
    // The gates of one collection's points: of every instrument, and of the window gauges.
    let gates = |metrics: &InMemoryMetricExporter| -> [BTreeSet<String>; 2] {
        let got = collection(metrics, &meter_provider);
        let of = |gauges_only: bool| {
            got.keys()
                .filter(|(name, _)| !gauges_only || name == "promotion.health_score")
                .flat_map(|(_, attrs)| attrs.iter())
                .filter(|(k, _)| k == "promotion.gate")
                .map(|(_, v)| v.clone())
                .collect()
        };
        [of(false), of(true)]
    };
    let checkout = || BTreeSet::from(["checkout".to_string()]);
    let old = canary_gate(10.0);
    let instruments = otel::observe(&old, &meter);
    assert_eq!(gates(&metrics), [checkout(), checkout()]);
    // A reload: the new gate (here of another name) is followed, with no new registration.
    let config = PromotionConfig {
        gate: "checkout-reloaded".into(),
        ..old.config()
    };
    let slo = SloAdmissionController::new(SloConfig::default()).unwrap();
    let reloaded = Arc::new(PromotionGateManager::new(config, slo).unwrap());
    instruments.follow(&reloaded);
    drop(old);
    // The gauges show the new gate; the counters of the name left go on at their last values.
    let reloaded = BTreeSet::from(["checkout-reloaded".to_string()]);
    let both = BTreeSet::from(["checkout".to_string(), "checkout-reloaded".to_string()]);
    assert_eq!(gates(&metrics), [both, reloaded]);
    drop(instruments);
    assert_eq!(
        gates(&metrics),
        [BTreeSet::new(), BTreeSet::new()],
        "dropped instruments report nothing"
    );
    meter_provider.shutdown().unwrap();
}

/// A reload keeps the gate's name, and the new gate counts its outcomes from 0 again: the
/// counters go on from the followed gate's counts, under either temporality. They went back
/// to the new gate's counts, which under delta temporality overflowed the SDK's `value -
/// reported` (a panic on the reader's thread, and every later flush failed), and under
/// cumulative temporality made a monotonic sum decrease. (No rollback here: its span would
/// reach the global tracer provider of the test above.)
#[test]
fn the_counters_go_on_across_a_reload_under_the_same_name() {
    for temporality in [Temporality::Delta, Temporality::Cumulative] {
        let (metrics, meter_provider, meter) = in_memory(temporality);
        // The forced outcomes and the ignored forcing values of one collection.
        let collect = || -> [f64; 2] {
            let got = collection(&metrics, &meter_provider);
            [
                "promotion.forced_outcomes",
                "promotion.ignored_override_values",
            ]
            .map(|name| got[&key(name, &[])])
        };
        let count = |gate: &PromotionGateManager, times: usize| {
            for _ in 0..times {
                // No override section: the value is ignored (and counted); the outcome forced.
                let decision = gate.route_request_forced(b"u", Some(b"canary"));
                gate.record_forced(decision.stage);
            }
        };
        // What a collection shows after counting `n` more, `total` in all.
        let shows = |n: f64, total: f64| match temporality {
            Temporality::Delta => [n, n],
            _ => [total, total],
        };

        let old = canary_gate(10.0);
        let instruments = otel::observe(&old, &meter);
        count(&old, 5);
        assert_eq!(collect(), shows(5.0, 5.0), "{temporality:?}");
        // A reload as docs/telemetry.md has it: follow the new gate, then drop the old one.
        let reloaded = canary_gate(10.0);
        instruments.follow(&reloaded);
        drop(old);
        count(&reloaded, 1);
        assert_eq!(collect(), shows(1.0, 6.0), "{temporality:?}");
        assert_eq!(collect(), shows(0.0, 6.0), "{temporality:?}");
        // A host that drops the gate before it follows the next one: a collection in between
        // shows the counts as they were (a series that skipped it would, under delta
        // temporality, count all of them again when it came back).
        count(&reloaded, 2);
        let again = canary_gate(10.0);
        drop(reloaded);
        assert_eq!(
            collect(),
            shows(0.0, 6.0),
            "{temporality:?}: the gate is gone"
        );
        instruments.follow(&again);
        count(&again, 3);
        assert_eq!(collect(), shows(3.0, 9.0), "{temporality:?}");
        drop(instruments);
        meter_provider.shutdown().unwrap();
    }
}

/// A gate of another name followed in between (`checkout`, `search`, `checkout` again): the
/// series of the name left are reported at their last values meanwhile, and go on when a gate
/// of the name is followed again. They were dropped: the SDK forgot them, and when the name came
/// back its series counted the gate's whole count again under delta temporality (7, not 2), and
/// under cumulative went back to a gate made anew's counts (1 after 7).
#[test]
fn a_name_followed_again_goes_on_under_either_temporality() {
    for temporality in [Temporality::Delta, Temporality::Cumulative] {
        let (metrics, meter_provider, meter) = in_memory(temporality);
        // The forced outcomes of `checkout` and of `search` in one collection.
        let collect = || -> [Option<f64>; 2] {
            let got = collection(&metrics, &meter_provider);
            ["checkout", "search"].map(|gate| {
                let attrs = vec![("promotion.gate".to_string(), gate.to_string())];
                got.get(&("promotion.forced_outcomes".to_string(), attrs))
                    .copied()
            })
        };
        let count = |gate: &PromotionGateManager, times: usize| {
            for _ in 0..times {
                gate.record_forced(gate.route_request_forced(b"u", Some(b"canary")).stage);
            }
        };
        // What a collection shows of a series after counting `n` more, `total` in all.
        let shows = |n: f64, total: f64| match temporality {
            Temporality::Delta => Some(n),
            _ => Some(total),
        };
        let a = canary_gate(10.0);
        let instruments = otel::observe(&a, &meter);
        count(&a, 5);
        assert_eq!(collect(), [shows(5.0, 5.0), None], "{temporality:?}");
        let config = PromotionConfig {
            gate: "search".into(),
            ..a.config()
        };
        let slo = SloAdmissionController::new(SloConfig::default()).unwrap();
        let b = Arc::new(PromotionGateManager::new(config, slo).unwrap());
        instruments.follow(&b);
        count(&b, 1);
        count(&a, 1); // not followed: not counted into its series until it is
        let shown = [shows(0.0, 5.0), shows(1.0, 1.0)];
        assert_eq!(collect(), shown, "{temporality:?}");
        // Back to the first gate, alive: it counts its own 7.
        instruments.follow(&a);
        count(&a, 1);
        let shown = [shows(2.0, 7.0), shows(0.0, 1.0)];
        assert_eq!(collect(), shown, "{temporality:?}");
        // Away again, then to a gate of the name made anew: the one before it is carried.
        instruments.follow(&b);
        let a_anew = canary_gate(10.0);
        instruments.follow(&a_anew);
        drop(a);
        count(&a_anew, 1);
        let shown = [shows(1.0, 8.0), shows(0.0, 1.0)];
        assert_eq!(collect(), shown, "{temporality:?}");
        drop(instruments);
        meter_provider.shutdown().unwrap();
    }
}

/// Following is idempotent for a gate: following the followed gate again, or a gate followed
/// before and still alive, counts its outcomes once. A gate followed again had its counts
/// carried into the series and counted again by itself (the series showed 12 of 7).
#[test]
fn a_gate_followed_again_is_counted_once() {
    let (metrics, meter_provider, meter) = in_memory(Temporality::Cumulative);
    let forced = || -> f64 {
        let got = collection(&metrics, &meter_provider);
        got[&key("promotion.forced_outcomes", &[])]
    };
    let count = |gate: &PromotionGateManager, times: usize| {
        for _ in 0..times {
            gate.record_forced(gate.route_request_forced(b"u", Some(b"canary")).stage);
        }
    };
    let first = canary_gate(10.0);
    let instruments = otel::observe(&first, &meter);
    count(&first, 5);
    instruments.follow(&first);
    assert_eq!(forced(), 5.0, "the followed gate followed again");
    let second = canary_gate(10.0);
    instruments.follow(&second);
    count(&second, 1);
    assert_eq!(forced(), 6.0);
    instruments.follow(&first);
    count(&first, 1);
    assert_eq!(
        forced(),
        7.0,
        "back to the first gate, which counts its own"
    );
    instruments.follow(&second);
    instruments.follow(&second);
    count(&second, 1);
    assert_eq!(forced(), 8.0);
    drop(instruments);
    meter_provider.shutdown().unwrap();
}

/// One row of docs/telemetry.md's metrics table: the OpenTelemetry name, the Prometheus name.
#[allow(
    clippy::unwrap_used,
    reason = "test code: a broken expectation is a failed test"
)]
fn mapping() -> Vec<(String, String)> {
    let doc = include_str!("../docs/telemetry.md");
    let table = doc
        .split("## Metrics")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .find(|p| p.starts_with("| OpenTelemetry name"));
    let rows = table.unwrap().lines().skip(2);
    rows.map(|row| {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let name = |cell: &str| cell.trim_matches('`').to_string();
        (name(cells[1]), name(cells[4]))
    })
    .collect()
}

/// The exposition's samples: (name, labels) → value; a series repeated is refused.
#[allow(
    clippy::unwrap_used,
    reason = "test code: a broken expectation is a failed test"
)]
fn prometheus_samples(gate: &PromotionGateManager) -> Points {
    let text = promotion_gates::telemetry::prometheus::exposition(gate);
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = series.split_once('{').unwrap();
        let mut labels: Vec<(String, String)> = labels
            .trim_end_matches('}')
            .split(',')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                (k.to_string(), v.trim_matches('"').to_string())
            })
            .collect();
        labels.sort();
        let repeated = samples.insert((name.to_string(), labels), value.parse().unwrap());
        assert!(repeated.is_none(), "series repeated: {line}");
    }
    samples
}

/// Every OpenTelemetry data point is a Prometheus sample and back, as docs/telemetry.md's table
/// maps their names (attributes lose their `promotion.` prefix), with the same value (the
/// traffic share: percent and ratio).
#[allow(
    clippy::unwrap_used,
    reason = "test code: a broken expectation is a failed test"
)]
fn same_as_prometheus(got: &Points, gate: &PromotionGateManager) {
    let mapping = mapping();
    let otel_names: BTreeSet<&String> = got.keys().map(|(name, _)| name).collect();
    let documented: BTreeSet<&String> = mapping.iter().map(|(otel, _)| otel).collect();
    assert_eq!(
        otel_names, documented,
        "the OpenTelemetry instruments and the table"
    );
    let expected: Points = got
        .iter()
        .map(|((name, attrs), value)| {
            let prometheus = &mapping.iter().find(|(otel, _)| otel == name).unwrap().1;
            let mut labels: Vec<(String, String)> = attrs
                .iter()
                .map(|(k, v)| (k.strip_prefix("promotion.").unwrap().to_string(), v.clone()))
                .collect();
            labels.sort();
            let value = if name == "promotion.traffic_percent" {
                value / 100.0
            } else {
                *value
            };
            ((prometheus.clone(), labels), value)
        })
        .collect();
    let samples = prometheus_samples(gate);
    assert_eq!(
        samples.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the series of both"
    );
    for (series, value) in &expected {
        assert_eq!(
            samples[series].to_bits(),
            value.to_bits(),
            "{series:?}: {} vs {value}",
            samples[series]
        );
    }
}
