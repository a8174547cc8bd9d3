//! The OpenTelemetry gauges of one collection show one release state and one read of the
//! window: the environment, the stage and the traffic share come from the snapshot the window
//! was read over, however the gate changes meanwhile, and every window gauge from that read,
//! however many readers collect at once. Its own test binary: the promotions here make spans,
//! which must not reach `tests/otel.rs`' global tracer provider.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use promotion_gates::telemetry::otel;
use promotion_gates::*;

/// The gauge `name`'s value, where `attr` (if any) is `value`.
fn gauge(
    metrics: &[opentelemetry_sdk::metrics::data::ResourceMetrics],
    name: &str,
    attr: Option<(&str, &str)>,
) -> f64 {
    let metric = metrics
        .iter()
        .flat_map(|rm| rm.scope_metrics())
        .flat_map(|sm| sm.metrics())
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("no {name}"));
    let AggregatedMetrics::F64(MetricData::Gauge(data)) = metric.data() else {
        panic!("{name} is not an f64 gauge");
    };
    let point = data
        .data_points()
        .find(|p| {
            attr.is_none_or(|(key, value)| {
                p.attributes()
                    .any(|kv| kv.key.as_str() == key && kv.value.to_string() == value)
            })
        })
        .unwrap_or_else(|| panic!("no {name} point for {attr:?}"));
    point.value()
}

#[test]
fn a_collection_shows_the_environment_and_the_stage_of_one_state() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let meter = provider.meter("host");
    let slo = SloAdmissionController::new(SloConfig::default()).unwrap();
    let gate = Arc::new(PromotionGateManager::new(PromotionConfig::default(), slo).unwrap());
    let _instruments = otel::observe(&gate, &meter);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (gate, stop) = (Arc::clone(&gate), Arc::clone(&stop));
        std::thread::spawn(move || {
            // From Production (stage 1): a canary on even stages, Production on odd ones.
            while !stop.load(Ordering::Relaxed) {
                let canary = Environment::Canary {
                    traffic_percent: 5.0,
                };
                gate.promote(canary).unwrap();
                gate.rollback("the collection test").unwrap();
            }
        })
    };
    let mut mixed = Vec::new();
    for _ in 0..1_000 {
        provider.force_flush().unwrap();
        let metrics = exporter.get_finished_metrics().unwrap();
        exporter.reset();
        let production = gauge(
            &metrics,
            "promotion.environment",
            Some(("promotion.environment", "production")),
        );
        let stage = gauge(&metrics, "promotion.stage", None) as u64;
        let percent = gauge(&metrics, "promotion.traffic_percent", None);
        if (production == 1.0) == stage.is_multiple_of(2)
            || (percent > 0.0) != stage.is_multiple_of(2)
        {
            mixed.push((production, stage, percent));
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        mixed.is_empty(),
        "{} mixed collections: {:?}",
        mixed.len(),
        &mixed[..mixed.len().min(3)]
    );
}

/// Two exporters (an OTLP push and a Prometheus pull, say) collect at once while a thread
/// records, each with a meter provider of its own, as docs/telemetry.md advises: each
/// collection's window gauges come from one read of the window. (Two readers of one provider
/// need not: opentelemetry_sdk 0.33 records what one reader's callbacks observe into every
/// reader.)
#[test]
fn two_exporters_collecting_at_once_each_show_one_read_per_collection() {
    let slo = SloAdmissionController::new(SloConfig::default()).unwrap();
    let gate = Arc::new(PromotionGateManager::new(PromotionConfig::default(), slo).unwrap());
    let exporters = [
        InMemoryMetricExporter::default(),
        InMemoryMetricExporter::default(),
    ];
    let providers = exporters.clone().map(|exporter| {
        let reader = PeriodicReader::builder(exporter)
            .with_interval(Duration::from_millis(1))
            .build();
        SdkMeterProvider::builder().with_reader(reader).build()
    });
    let instruments = providers
        .each_ref()
        .map(|provider| otel::observe(&gate, &provider.meter("host")));
    let until = Instant::now() + Duration::from_millis(800);
    let mut i = 0u64;
    while Instant::now() < until {
        let latency = Duration::from_micros(200 + i % 3_000);
        gate.record_request_outcome("u", !i.is_multiple_of(20), latency);
        i += 1;
    }
    drop(instruments);
    for provider in providers {
        provider.shutdown().unwrap();
    }
    let stable = Some(("promotion.cohort", "stable"));
    for (reader, exporter) in exporters.iter().enumerate() {
        let batches = exporter.get_finished_metrics().unwrap();
        let mut mixed = Vec::new();
        let mut whole = 0;
        for batch in &batches {
            let names: Vec<&str> = batch
                .scope_metrics()
                .flat_map(|sm| sm.metrics())
                .map(|m| m.name())
                .collect();
            if !names.contains(&"promotion.window.latency.count") {
                continue; // collected while the instruments were being registered
            }
            whole += 1;
            // One read counts as many requests as latencies (the requests gauge is the
            // eleventh window gauge, the latency count the last).
            let batch = std::slice::from_ref(batch);
            let read = [
                gauge(batch, "promotion.window.requests", stable),
                gauge(batch, "promotion.window.latency.count", stable),
            ];
            if read[0] != read[1] {
                mixed.push(read);
            }
        }
        assert!(whole >= 10, "reader {reader}: {whole} whole batches");
        assert!(
            mixed.is_empty(),
            "reader {reader}: {} of {whole} batches mixed reads (requests, latency count): {:?}",
            mixed.len(),
            &mixed[..mixed.len().min(3)]
        );
    }
}
