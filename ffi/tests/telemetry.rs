//! The telemetry calls of the C ABI: the Prometheus exposition and the histograms' export.
#![allow(unsafe_code)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{new_gate, route, text_of, text_sized_by_its_length, text_within};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use promotion_gates_ffi::*;
use std::ptr::{null, null_mut};

mod common;

/// A buffer the expositions below fit in, so that each is rendered once (`text_within`); the
/// first test keeps `text_of`'s size query.
const EXPOSITION_CAPACITY: usize = 64 << 10;

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
    // A buffer of the length told is refused (the NUL needs one byte more), one more byte fits.
    // SAFETY: as above.
    let before =
        text_sized_by_its_length(&|b, c, l| unsafe { pgate_metrics_prometheus(gate, b, c, l) });
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
    // SAFETY: two live gates; the buffers are handed in by text_within.
    let text = text_within(
        &|b, c, l| unsafe { pgate_metrics_prometheus_gates(gates.as_ptr(), gates.len(), b, c, l) },
        EXPOSITION_CAPACITY,
    );
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
    // SAFETY: live gate; the buffers are handed in by text_sized_by_its_length.
    let json = text_sized_by_its_length(&|b, c, l| unsafe {
        pgate_latency_histograms_json(gate, b, c, l)
    });
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

#[test]
fn a_hosts_counts_replace_the_gates_outcome_counters() {
    let gates = [
        new_gate(r#"{"gate": "web"}"#).cast_const(),
        new_gate(r#"{"gate": "api"}"#).cast_const(),
    ];
    let counts = [
        pgate_outcome_counts {
            late_outcomes: 1,
            foreign_outcomes: 2,
            forced_outcomes: 3,
            ignored_override_values: 4,
        },
        pgate_outcome_counts::default(),
    ];
    // SAFETY: two live gates and two counts; the buffers are handed in by text_within.
    let text = text_within(
        &|b, c, l| unsafe {
            pgate_metrics_prometheus_counted(gates.as_ptr(), counts.as_ptr(), gates.len(), b, c, l)
        },
        EXPOSITION_CAPACITY,
    );
    // Whether `text` shows `family` at `web` for web and at 0 for api.
    let shows = |text: &str, family: &str, web: u64| {
        text.contains(&format!("{family}{{gate=\"web\"}} {web}\n"))
            && text.contains(&format!("{family}{{gate=\"api\"}} 0\n"))
    };
    for (family, value) in [
        ("promotion_late_outcomes_total", 1),
        ("promotion_foreign_outcomes_total", 2),
        ("promotion_forced_outcomes_total", 3),
        ("promotion_ignored_override_values_total", 4),
    ] {
        assert!(shows(&text, family, value), "{text}");
    }
    // NULL counts: the gates' own, as pgate_metrics_prometheus_gates writes them: web's one
    // forced and one foreign outcome.
    // SAFETY: a live gate; `recorded` is valid for a write.
    unsafe {
        let d = route(gates[0], b"user-1");
        let mut recorded = pgate_recorded::Counted;
        for (decision, want) in [
            (
                pgate_decision {
                    forced: pgate_forced::Value,
                    ..d
                },
                pgate_recorded::Forced,
            ),
            (
                pgate_decision { stage: 1_000, ..d },
                pgate_recorded::Foreign,
            ),
        ] {
            let status = pgate_record(gates[0], &decision, true, 1, &mut recorded);
            assert_eq!((status, recorded), (pgate_status::Ok, want));
        }
    }
    // SAFETY: as above.
    let own = text_within(
        &|b, c, l| unsafe {
            pgate_metrics_prometheus_counted(gates.as_ptr(), null(), gates.len(), b, c, l)
        },
        EXPOSITION_CAPACITY,
    );
    // SAFETY: as above.
    let gates_own = text_within(
        &|b, c, l| unsafe { pgate_metrics_prometheus_gates(gates.as_ptr(), gates.len(), b, c, l) },
        EXPOSITION_CAPACITY,
    );
    assert_eq!(own, gates_own);
    for family in [
        "promotion_forced_outcomes_total",
        "promotion_foreign_outcomes_total",
    ] {
        assert!(shows(&own, family, 1), "{own}");
    }
    // refused(gates, n): the status and the length written (7: nothing), with `counts`
    let refused = |gates: *const *const pgate_gate, n| {
        let mut len = 7;
        // SAFETY: the cases below are refused before any buffer is used; `counts` holds 2.
        let status = unsafe {
            pgate_metrics_prometheus_counted(gates, counts.as_ptr(), n, null_mut(), 0, &mut len)
        };
        (status, len)
    };
    assert_eq!(refused(null(), 1), (pgate_status::NullPointer, 7));
    let twice = [gates[0], gates[0]];
    assert_eq!(
        refused(twice.as_ptr(), 2),
        (pgate_status::InvalidArgument, 7)
    );
    for gate in gates {
        // SAFETY: each gate was made by pgate_gate_new and is freed once.
        let status = unsafe { pgate_gate_free(gate.cast_mut()) };
        assert_eq!(status, pgate_status::Ok);
    }
    // a freed handle is only compared against the live gates, never read
    assert_eq!(refused(gates.as_ptr(), 1), (pgate_status::InvalidHandle, 7));
}

/// A call refused for its outputs (`len_out` NULL, `cap` above `PTRDIFF_MAX`) is refused
/// before a gate's window is read, which may make an evaluation and roll back: as
/// `pgate_read_health`, a refused call changes nothing. Two gates of one name were read (and
/// refused as such) before the NULL `len_out` was seen.
///
/// What this shows of the order: the two gates of one name with a NULL `len_out` are refused
/// as `PGATE_STATUS_NULL_POINTER` (`PGATE_STATUS_INVALID_ARGUMENT` when the outputs were
/// checked after the read; checked by moving `text_out` back after it), and no output is
/// written. What it does not show: that a refused call makes no evaluation. A read makes one
/// only when the record path asked for it, having found the window held (by a read or
/// another evaluation; `Monitor::wanted_evaluation`), and the window's holder takes that ask
/// as it lets go, so none is left for a later read (save after `WANTED_IN_TURN` evaluations
/// in a row, each asked for by a thread recording while the one before held the window: a
/// race no test here arranges); an evaluation that falls due with the interval is made by the
/// record path itself. No call of the C ABI leaves an ask for the calls below, so the change
/// count checked at the end is the same whatever the order: it shows only that the refusals
/// themselves change nothing.
#[test]
fn outputs_are_checked_before_a_window_is_read() {
    let gate = new_gate(r#"{"gate": "checkout"}"#).cast_const();
    let twice = [gate, gate];
    let mut buf = [0xAAu8; 8];
    let mut changes = 0;
    // SAFETY: a live gate (twice); `buf` of 8 bytes; the refused outputs are never written.
    unsafe {
        assert_eq!(pgate_change_count(gate, &mut changes), pgate_status::Ok);
        let status = pgate_metrics_prometheus_gates(
            twice.as_ptr(),
            2,
            buf.as_mut_ptr().cast(),
            buf.len(),
            null_mut(),
        );
        assert_eq!(status, pgate_status::NullPointer);
        let b = buf.as_mut_ptr().cast();
        assert_eq!(
            pgate_metrics_prometheus(gate, b, buf.len(), null_mut()),
            pgate_status::NullPointer
        );
        let mut len = 7;
        for status in [
            pgate_metrics_prometheus(gate, b, usize::MAX, &mut len),
            pgate_metrics_prometheus_counted(twice.as_ptr(), null(), 2, b, usize::MAX, &mut len),
            pgate_latency_histograms_json(gate, b, usize::MAX, &mut len),
        ] {
            assert_eq!(status, pgate_status::InvalidArgument);
        }
        assert_eq!(
            pgate_latency_histograms_json(gate, b, buf.len(), null_mut()),
            pgate_status::NullPointer
        );
        assert_eq!((len, buf), (7, [0xAA; 8]), "nothing written");
        let mut after = 0;
        assert_eq!(pgate_change_count(gate, &mut after), pgate_status::Ok);
        assert_eq!(after, changes);
        assert_eq!(pgate_gate_free(gate.cast_mut()), pgate_status::Ok);
    }
}
