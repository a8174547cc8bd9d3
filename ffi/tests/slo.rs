//! The read-only health read and the SLO change through the C ABI: reading judges nothing, and
//! a changed SLO keeps the gate's stage and the recorded counts.
#![allow(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    reason = "test code: a broken expectation is a failed test"
)]

mod common;

use common::{QUIET_SLO, QUIET_WINDOW, error_text, new_gate_with_slo, route_and_record};
use promotion_gates_ffi::*;
use std::ptr::{null, null_mut};

/// The health through `pgate_read_health`, and its evidence line.
///
/// # Safety
/// `gate` must be a live gate.
unsafe fn read_health(gate: *const pgate_gate) -> (pgate_health, String) {
    // SAFETY: zeroed is a valid value of the plain C struct.
    let mut h = unsafe { std::mem::zeroed::<pgate_health>() };
    let mut evidence = vec![0u8; PGATE_EVIDENCE_CAPACITY];
    let mut len = 0;
    // SAFETY: live gate; evidence holds its capacity; valid out-pointers.
    let status = unsafe {
        pgate_read_health(
            gate,
            &mut h,
            evidence.as_mut_ptr().cast(),
            evidence.len(),
            &mut len,
        )
    };
    assert_eq!(status, pgate_status::Ok);
    (h, String::from_utf8(evidence[..len].to_vec()).unwrap())
}

/// The gate's environment and stage through `pgate_state`.
///
/// # Safety
/// `gate` must be a live gate.
unsafe fn state(gate: *const pgate_gate) -> (pgate_environment, u64) {
    let (mut env, mut percent, mut stage) = (pgate_environment::Production, 0.0, 0);
    // SAFETY: live gate, valid out-pointers.
    let status = unsafe { pgate_state(gate, &mut env, &mut percent, &mut stage) };
    assert_eq!(status, pgate_status::Ok);
    (env, stage)
}

#[test]
fn reading_the_health_never_rolls_back() {
    let gate = new_gate_with_slo(
        &format!(
            r#"{{"environment": {{"canary": {{"traffic_percent": 100}}}}, "auto_rollback_enabled": true, {QUIET_WINDOW}}}"#
        ),
        Some(QUIET_SLO),
    );
    // SAFETY: live gate and buffers throughout.
    unsafe {
        // Without auto-rollback on the record path: failures judged only when asked.
        let config = br#"{"environment": {"canary": {"traffic_percent": 100}}, "auto_rollback_enabled": false,
            "rollback_window_seconds": 36000}"#;
        assert_eq!(
            pgate_swap_config(gate, config.as_ptr(), config.len(), null_mut()),
            pgate_status::Ok
        );
        route_and_record(gate, 20, false, 20_000_000);
        // Rolling back allowed again: a judging call would act now, a read must not.
        let config = br#"{"environment": {"canary": {"traffic_percent": 100}}, "auto_rollback_enabled": true,
            "rollback_window_seconds": 36000}"#;
        assert_eq!(
            pgate_swap_config(gate, config.as_ptr(), config.len(), null_mut()),
            pgate_status::Ok
        );
        let (h, evidence) = read_health(gate);
        assert_eq!(h.canary_requests, 20);
        assert_eq!(h.recommendation, pgate_recommendation::Rollback);
        assert!(evidence.contains("overwhelming_errors"), "{evidence}");
        assert_eq!(read_health(gate).0.canary_requests, 20);
        assert_eq!(state(gate).0, pgate_environment::Canary);
        let mut count = 0;
        assert_eq!(pgate_change_count(gate, &mut count), pgate_status::Ok);
        assert_eq!(count, 2); // the two config swaps only
        // SAFETY: zeroed is a valid value of the plain C struct.
        let mut judged = std::mem::zeroed::<pgate_health>();
        assert_eq!(
            pgate_monitor_health(gate, &mut judged, null_mut(), 0, null_mut()),
            pgate_status::Ok
        );
        assert_eq!(state(gate).0, pgate_environment::Production);
        assert_eq!(pgate_gate_free(gate), pgate_status::Ok);
    }
}

#[test]
fn a_changed_slo_keeps_the_stage_and_the_recorded_counts() {
    let gate = new_gate_with_slo(
        &format!(r#"{{"environment": {{"canary": {{"traffic_percent": 50}}}}, {QUIET_WINDOW}}}"#),
        Some(QUIET_SLO),
    );
    // SAFETY: live gate and buffers throughout.
    unsafe {
        route_and_record(gate, 200, true, 20_000_000);
        let (before, _) = read_health(gate);
        let (env, stage) = state(gate);
        let slo = br#"{"min_samples": 1000, "max_error_rate": 0.01}"#;
        let mut err = null_mut();
        assert_eq!(
            pgate_swap_slo(gate, slo.as_ptr(), slo.len(), &mut err),
            pgate_status::Ok
        );
        assert_eq!(state(gate), (env, stage));
        let (after, evidence) = read_health(gate);
        assert_eq!(
            (after.canary_requests, after.production_requests),
            (before.canary_requests, before.production_requests)
        );
        assert!(!after.sufficient_data, "{evidence}");
        let mut len = 0;
        let mut buf = vec![0u8; 4096];
        assert_eq!(
            pgate_slo_json(gate, buf.as_mut_ptr().cast(), buf.len(), &mut len),
            pgate_status::Ok
        );
        let slo: serde_json::Value = serde_json::from_slice(&buf[..len]).unwrap();
        assert_eq!(slo["min_samples"], 1000);
        assert_eq!(slo["max_error_rate"], 0.01);
        // The whole SLO is replaced: a field the new one omits takes its default.
        assert_eq!(slo["evaluation_interval_ms"], 1000.0);

        let bad = br#"{"max_error_rate": 2.5}"#;
        assert_eq!(
            pgate_swap_slo(gate, bad.as_ptr(), bad.len(), &mut err),
            pgate_status::InvalidConfig
        );
        let message = error_text(err);
        assert!(
            message.contains("max_error_rate") && message.contains("2.5"),
            "{message}"
        );
        let unknown = br#"{"max_eror_rate": 0.1}"#;
        assert_eq!(
            pgate_swap_slo(gate, unknown.as_ptr(), unknown.len(), &mut err),
            pgate_status::InvalidJson
        );
        // Named as gate creation names the SLO document.
        let message = error_text(err);
        assert!(
            message.starts_with("invalid JSON SLO config: ") && message.contains("max_eror_rate"),
            "{message}"
        );
        let mut created = null_mut();
        assert_eq!(
            pgate_gate_new(
                null(),
                0,
                unknown.as_ptr(),
                unknown.len(),
                &mut created,
                &mut err
            ),
            pgate_status::InvalidJson
        );
        assert_eq!(error_text(err), message);
        // A duration its type cannot hold is the document's error; one it holds but validation
        // refuses is the config's, as the status codes say.
        let negative = br#"{"latency_target_ms": -1}"#;
        assert_eq!(
            pgate_swap_slo(gate, negative.as_ptr(), negative.len(), &mut err),
            pgate_status::InvalidJson
        );
        let message = error_text(err);
        assert!(
            message.contains("latency_target_ms") && message.contains("-1"),
            "{message}"
        );
        let zero = br#"{"latency_target_ms": 0}"#;
        assert_eq!(
            pgate_swap_slo(gate, zero.as_ptr(), zero.len(), &mut err),
            pgate_status::InvalidConfig
        );
        let message = error_text(err);
        assert!(message.contains("latency_target_ms"), "{message}");
        assert_eq!(
            pgate_swap_slo(gate, bad.as_ptr(), bad.len(), null_mut()),
            pgate_status::InvalidConfig
        );
        assert_eq!(state(gate), (env, stage));
        assert_eq!(pgate_gate_free(gate), pgate_status::Ok);
    }
}

/// serde_json reads a number too small for an `f64` as 0: a canary at 0 %, a zero error limit.
/// Gate creation and an SLO swap refuse it, naming the field and the number, and the gate keeps
/// its SLO.
#[test]
fn a_number_too_small_for_a_double_opens_no_gate_and_swaps_no_slo() {
    let words = "below the smallest positive number a double holds (5e-324); it would read as 0";
    let canary = r#"{"environment": {"canary": {"traffic_percent": 1e-400}}}"#;
    let (status, message) = common::refused_gate(canary);
    assert_eq!(status, pgate_status::InvalidJson, "{message}");
    assert_eq!(
        message,
        format!(
            "invalid JSON config: environment.canary.traffic_percent = 1e-400: {words} at line 1 \
             column 53"
        )
    );
    let gate = new_gate_with_slo(r#"{}"#, Some(r#"{"max_error_rate": 0.05}"#));
    let slo_json = || {
        let (mut len, mut buf) = (0, vec![0u8; 4096]);
        // SAFETY: live gate; the buffer holds the capacity passed; a valid out-pointer.
        let status = unsafe { pgate_slo_json(gate, buf.as_mut_ptr().cast(), buf.len(), &mut len) };
        assert_eq!(status, pgate_status::Ok);
        serde_json::from_slice::<serde_json::Value>(&buf[..len]).unwrap()
    };
    let before = slo_json();
    for (slo, field) in [
        (r#"{"max_error_rate": 1e-400}"#, "max_error_rate"),
        (
            r#"{"latency_tolerance_ms": 1e-400}"#,
            "latency_tolerance_ms",
        ),
        (r#"{"latency_target_ms": 1e-400}"#, "latency_target_ms"),
    ] {
        let mut err = null_mut();
        // SAFETY: live gate; a live document; err is a valid out-pointer.
        let (status, message) = unsafe {
            let status = pgate_swap_slo(gate, slo.as_ptr(), slo.len(), &mut err);
            (status, error_text(err))
        };
        assert_eq!(status, pgate_status::InvalidJson, "{message}");
        assert!(
            message.starts_with(&format!(
                "invalid JSON SLO config: {field} = 1e-400: {words}"
            )),
            "{message}"
        );
        assert_eq!(slo_json(), before);
    }
    // SAFETY: live gate, freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
}
