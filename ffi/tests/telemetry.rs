//! The telemetry calls of the C ABI: the Prometheus exposition and the histograms' export.
#![allow(unsafe_code)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{new_gate, text_of};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use promotion_gates_ffi::*;
use std::ptr::{null, null_mut};

mod common;

fn record(gate: *mut pgate_gate, id: &str, success: bool, latency_ns: u64) {
    // SAFETY: live gate and id slice; recorded may be NULL.
    let status =
        unsafe { pgate_record_by_id(gate, id.as_ptr(), id.len(), success, latency_ns, null_mut()) };
    assert_eq!(status, pgate_status::Ok);
}

#[test]
fn the_exposition_names_the_gate_and_counts_a_manual_rollback() {
    let gate = new_gate(r#"{"environment": "staging", "gate": "checkout"}"#);
    // SAFETY: live gate; the buffers are handed in by text_of.
    let exposition = || text_of(&|b, c, l| unsafe { pgate_metrics_prometheus(gate, b, c, l) });
    let before = exposition();
    assert!(before.contains(
        "# TYPE promotion_health_score gauge\npromotion_health_score{gate=\"checkout\"} "
    ));
    let manual = r#"promotion_rollbacks_total{gate="checkout",trigger="manual",rule="none"}"#;
    assert!(before.contains(&format!("{manual} 0\n")), "{before}");
    let reason = "bad deploy";
    // SAFETY: live gate and reason slice; err may be NULL.
    let status = unsafe { pgate_rollback(gate, reason.as_ptr(), reason.len(), null_mut()) };
    assert_eq!(status, pgate_status::Ok);
    assert!(exposition().contains(&format!("{manual} 1\n")));
    // SAFETY: the gate is live until here.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
    let mut len = 0;
    // SAFETY: a freed handle is refused before use.
    let status = unsafe { pgate_metrics_prometheus(gate, null_mut(), 0, &mut len) };
    assert_eq!(status, pgate_status::InvalidHandle);
}

#[test]
fn several_gates_share_one_exposition() {
    let gates = [
        new_gate(r#"{"gate": "web"}"#).cast_const(),
        new_gate(r#"{"gate": "api"}"#).cast_const(),
    ];
    // SAFETY: two live gates; the buffers are handed in by text_of.
    let text = text_of(&|b, c, l| unsafe {
        pgate_metrics_prometheus_gates(gates.as_ptr(), gates.len(), b, c, l)
    });
    assert_eq!(text.matches("# TYPE promotion_stage gauge").count(), 1);
    for name in ["web", "api"] {
        assert!(text.contains(&format!("promotion_stage{{gate=\"{name}\"}} 1\n")));
    }
    let mut len = 0;
    // SAFETY: NULL with a count is refused; NULL with count 0 is an empty list.
    unsafe {
        let status = pgate_metrics_prometheus_gates(null(), 1, null_mut(), 0, &mut len);
        assert_eq!(status, pgate_status::NullPointer);
        let mut buf = [0xAAu8; 1];
        let status =
            pgate_metrics_prometheus_gates(null(), 0, buf.as_mut_ptr().cast(), 1, &mut len);
        assert_eq!((status, len, buf[0]), (pgate_status::Ok, 0, 0));
        for gate in gates {
            assert_eq!(pgate_gate_free(gate.cast_mut()), pgate_status::Ok);
        }
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "did not finish in 10 minutes under Miri (hdrhistogram's serialization, deflate \
              and inflate); the boundary helpers this call uses (cold, copy_out) run in the \
              other tests"
)]
fn each_cohorts_histogram_decodes_to_what_was_recorded() {
    let gate = new_gate(r#"{"environment": {"canary": {"traffic_percent": 50}}}"#);
    let latencies_us: Vec<u64> = (1..=300).map(|i| i * 97).collect();
    for (i, &us) in latencies_us.iter().enumerate() {
        record(gate, &format!("user-{i}"), true, us * 1000);
    }
    // SAFETY: live gate; the buffers are handed in by text_of.
    let json = text_of(&|b, c, l| unsafe { pgate_latency_histograms_json(gate, b, c, l) });
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["encoding"], "hdrhistogram-v2-deflate-base64");
    assert_eq!(doc["unit"], "microseconds");
    let decode = |cohort: &str| -> Histogram<u64> {
        let bytes = STANDARD.decode(doc[cohort].as_str().unwrap()).unwrap();
        Deserializer::new().deserialize(&mut &bytes[..]).unwrap()
    };
    let (canary, stable) = (decode("canary"), decode("stable"));
    assert_eq!(canary.len() + stable.len(), latencies_us.len() as u64);
    assert!(!canary.is_empty() && !stable.is_empty());
    let mut merged = canary.clone();
    merged.add(&stable).unwrap();
    for (quantile, &us) in [(0.0, &latencies_us[0]), (1.0, latencies_us.last().unwrap())] {
        assert!(
            merged.equivalent(merged.value_at_quantile(quantile), us),
            "{quantile}"
        );
    }
    // SAFETY: the gate is live until here.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
}
