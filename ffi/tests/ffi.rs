//! The C ABI called from Rust: statuses, outputs only on success, no panic across it.
#![allow(unsafe_code)]

mod common;

use common::{
    QUIET_SLO, QUIET_WINDOW, error_text, fail_the_canary, new_gate, new_gate_with_slo,
    refused_gate, route_and_record, text_of,
};
use promotion_gates_ffi::*;
use std::ptr::{null, null_mut};

#[test]
fn route_and_record_through_the_abi() {
    let gate = new_gate(
        r#"{"environment": {"canary": {"traffic_percent": 50}}, "feature_flags": ["new_api"], "gate": "checkout"}"#,
    );
    let id = b"user-12345";
    let mut d = pgate_decision {
        stage: 0,
        traffic_percent: 0.0,
        bucket: 0,
        threshold: 0,
        flag_set: 0,
        environment: pgate_environment::Production,
        is_canary: false,
        forced: pgate_forced::None,
    };
    // SAFETY: live gate, live id slice, valid out-pointers throughout.
    unsafe {
        assert_eq!(
            pgate_route(gate, id.as_ptr(), id.len(), &mut d),
            pgate_status::Ok
        );
        assert_eq!(d.threshold, 5_000_000);
        assert_eq!(d.is_canary, d.bucket < d.threshold);
        assert_eq!(d.bucket, promotion_gates::reference_bucket(b"checkout", id));
        let mut n = 99;
        assert_eq!(
            pgate_flag_set_len(gate, d.flag_set, &mut n),
            pgate_status::Ok
        );
        assert_eq!(n, usize::from(d.is_canary));
        let mut recorded = pgate_recorded::Late;
        assert_eq!(
            pgate_record(gate, &d, true, 1_500_000, &mut recorded),
            pgate_status::Ok
        );
        assert_eq!(recorded, pgate_recorded::Counted);
        // A forged decision from a future stage is refused, not counted.
        let forged = pgate_decision { stage: 1_000, ..d };
        assert_eq!(
            pgate_record(gate, &forged, true, 1, &mut recorded),
            pgate_status::Ok
        );
        assert_eq!(recorded, pgate_recorded::Foreign);
        // Forced too: a forced decision of a future stage was counted as forced.
        for forced in [pgate_forced::Value, pgate_forced::IdList] {
            let forged = pgate_decision {
                stage: u64::MAX,
                forced,
                ..d
            };
            assert_eq!(
                pgate_record(gate, &forged, true, 1, &mut recorded),
                pgate_status::Ok
            );
            assert_eq!(recorded, pgate_recorded::Foreign);
            let forced_now = pgate_decision { forced, ..d };
            assert_eq!(
                pgate_record(gate, &forced_now, true, 1, &mut recorded),
                pgate_status::Ok
            );
            assert_eq!(recorded, pgate_recorded::Forced);
        }
        assert_eq!(pgate_gate_free(gate), pgate_status::Ok);
    }
}

#[test]
fn bad_input_returns_a_status_and_changes_nothing() {
    let gate = new_gate("{}");
    // SAFETY: every pointer is live or deliberately NULL; the library must refuse the NULLs.
    unsafe {
        let mut d = std::mem::zeroed::<pgate_decision>();
        assert_eq!(
            pgate_route(null(), null(), 0, &mut d),
            pgate_status::NullPointer
        );
        assert_eq!(
            pgate_route(gate, null(), 3, &mut d),
            pgate_status::NullPointer
        );
        assert_eq!(
            pgate_route(gate, b"x".as_ptr(), usize::MAX, &mut d),
            pgate_status::InvalidArgument
        );
        assert_eq!(pgate_route(gate, null(), 0, &mut d), pgate_status::Ok); // the empty id

        // All the gate shows a write could change: its config, SLO, history and change count.
        let shown = || {
            let mut changes = 0;
            assert_eq!(pgate_change_count(gate, &mut changes), pgate_status::Ok);
            (
                text_of(&|b, c, l| pgate_config_json(gate, b, c, l)),
                text_of(&|b, c, l| pgate_slo_json(gate, b, c, l)),
                text_of(&|b, c, l| pgate_rollback_history_json(gate, b, c, l)),
                changes,
            )
        };
        let before = shown();
        let mut err = null_mut();
        assert_eq!(
            pgate_promote(gate, 0, f64::NAN, &mut err),
            pgate_status::InvalidConfig
        );
        assert!(error_text(err).contains("environment.canary.traffic_percent"));
        assert_eq!(
            pgate_promote(gate, 7, 1.0, &mut err),
            pgate_status::InvalidArgument
        );
        assert_eq!(
            error_text(err),
            "invalid environment = 7: 0 (canary), 1 (staging) or 2 (production)"
        );
        assert_eq!(
            pgate_promote(gate, 1, 0.0, &mut err),
            pgate_status::InvalidPromotion
        );
        error_text(err);
        assert_eq!(
            pgate_promote_from(gate, 99, 0, 5.0, &mut err),
            pgate_status::StageChanged
        );
        let refused = error_text(err);
        assert!(
            refused.starts_with("the gate left stage 99: it is now in "),
            "{refused}"
        );
        let bad_utf8 = [0xffu8, 0xfe];
        assert_eq!(
            pgate_enable_feature(gate, bad_utf8.as_ptr(), 2, &mut err),
            pgate_status::InvalidArgument
        );
        assert!(error_text(err).contains("UTF-8"));
        assert_eq!(
            pgate_rollback(gate, b"x".as_ptr(), 1, &mut err),
            pgate_status::RollbackRefused
        );
        error_text(err);

        let json = br#"{"slo_threshold": 7}"#;
        assert_eq!(
            pgate_swap_config(gate, json.as_ptr(), json.len(), &mut err),
            pgate_status::InvalidConfig
        );
        assert!(error_text(err).contains("slo_threshold"));
        let slo = br#"{"min_samples": 0}"#;
        assert_eq!(
            pgate_swap_slo(gate, slo.as_ptr(), slo.len(), &mut err),
            pgate_status::InvalidConfig
        );
        assert!(error_text(err).contains("min_samples"));
        let mut gate2 = null_mut();
        let bad = b"{not json";
        assert_eq!(
            pgate_gate_new(bad.as_ptr(), bad.len(), null(), 0, &mut gate2, &mut err),
            pgate_status::InvalidJson
        );
        assert!(gate2.is_null());
        error_text(err);

        let text = text_of(&|b, c, l| pgate_config_json(gate, b, c, l));
        assert!(text.contains(r#""environment":"production""#), "{text}");
        assert_eq!(shown(), before, "a refused call changed the gate");

        assert_eq!(pgate_gate_free(gate), pgate_status::Ok);
        assert_eq!(pgate_gate_free(gate), pgate_status::InvalidHandle); // double free detected
        let mut on = false;
        assert_eq!(
            pgate_is_feature_enabled(gate, b"a".as_ptr(), 1, &mut on),
            pgate_status::InvalidHandle
        );
        assert_eq!(pgate_gate_free(null_mut()), pgate_status::Ok);
    }
}

/// A refused call's status and its error object's message.
type Refusal = (pgate_status, String);

/// The status and message of a cold call given `&mut err`.
fn refusal(call: impl FnOnce(*mut *mut pgate_error) -> pgate_status) -> Refusal {
    let mut err = null_mut();
    let status = call(&mut err);
    assert!(!err.is_null(), "{status:?} wrote no error object");
    // SAFETY: the error object the call just made, read and freed once.
    (status, unsafe { error_text(err) })
}

#[test]
fn cold_call_errors_name_the_argument_and_its_value() {
    use pgate_status::{InvalidArgument, InvalidHandle, NullPointer};
    let gate = new_gate("{}");
    let huge = isize::MAX as usize + 1;
    let above = |name: &str| {
        format!(
            "invalid {name} = {huge}: above PTRDIFF_MAX ({})",
            isize::MAX
        )
    };
    let no_gate = || String::from("invalid gate = NULL: a gate made by pgate_gate_new is needed");
    let mut out = null_mut();
    let x = b"x".as_ptr();
    // SAFETY: every pointer is live or refused before use (NULL, a length past PTRDIFF_MAX,
    // a foreign handle); err is a valid out-pointer.
    unsafe {
        let cases: [(&str, Refusal, Refusal); 15] = [
            (
                "gate_new config",
                refusal(|e| pgate_gate_new(null(), 5, null(), 0, &mut out, e)),
                (
                    NullPointer,
                    "invalid config_json = NULL with config_len = 5: a NULL pointer needs length 0"
                        .into(),
                ),
            ),
            (
                "gate_new slo",
                refusal(|e| pgate_gate_new(null(), 0, null(), 2, &mut out, e)),
                (
                    NullPointer,
                    "invalid slo_json = NULL with slo_len = 2: a NULL pointer needs length 0"
                        .into(),
                ),
            ),
            (
                "gate_new slo_len",
                refusal(|e| pgate_gate_new(null(), 0, x, huge, &mut out, e)),
                (InvalidArgument, above("slo_len")),
            ),
            (
                "gate_new gate_out",
                refusal(|e| pgate_gate_new(null(), 0, null(), 0, null_mut(), e)),
                (
                    NullPointer,
                    "invalid gate_out = NULL: the result is written there".into(),
                ),
            ),
            (
                "swap_config",
                refusal(|e| pgate_swap_config(gate, null(), 5, e)),
                (
                    NullPointer,
                    "invalid json = NULL with len = 5: a NULL pointer needs length 0".into(),
                ),
            ),
            (
                "swap_slo",
                refusal(|e| pgate_swap_slo(gate, x, huge, e)),
                (InvalidArgument, above("len")),
            ),
            (
                "enable_feature",
                refusal(|e| pgate_enable_feature(gate, null(), 3, e)),
                (
                    NullPointer,
                    "invalid name = NULL with len = 3: a NULL pointer needs length 0".into(),
                ),
            ),
            (
                "disable_feature",
                refusal(|e| pgate_disable_feature(gate, x, usize::MAX, e)),
                (
                    InvalidArgument,
                    format!(
                        "invalid len = {}: above PTRDIFF_MAX ({})",
                        usize::MAX,
                        isize::MAX
                    ),
                ),
            ),
            (
                "rollback",
                refusal(|e| pgate_rollback(gate, x, huge, e)),
                (InvalidArgument, above("len")),
            ),
            (
                "promote NULL",
                refusal(|e| pgate_promote(null(), 0, 5.0, e)),
                (NullPointer, no_gate()),
            ),
            (
                "promote_from NULL",
                refusal(|e| pgate_promote_from(null(), 1, 0, 5.0, e)),
                (NullPointer, no_gate()),
            ),
            (
                "swap_config_from NULL",
                refusal(|e| pgate_swap_config_from(null(), 1, x, 1, e)),
                (NullPointer, no_gate()),
            ),
            (
                "swap_config_from json",
                refusal(|e| pgate_swap_config_from(gate, 1, null(), 5, e)),
                (
                    NullPointer,
                    "invalid json = NULL with len = 5: a NULL pointer needs length 0".into(),
                ),
            ),
            (
                "swap_slo NULL",
                refusal(|e| pgate_swap_slo(null(), x, 1, e)),
                (NullPointer, no_gate()),
            ),
            (
                "rollback NULL",
                refusal(|e| pgate_rollback(null(), x, 1, e)),
                (NullPointer, no_gate()),
            ),
        ];
        for (call, got, expected) in cases {
            assert_eq!(got, expected, "{call}");
        }
        assert!(out.is_null(), "no gate written on failure");

        // A handle that is not a live gate: its address is the value.
        let mut foreign = [0u64; 8];
        let handle: *const pgate_gate = foreign.as_mut_ptr().cast();
        let not_live = format!(
            "invalid gate = {handle:p}: not a live gate (freed, or not made by pgate_gate_new)"
        );
        for (call, got) in [
            ("promote", refusal(|e| pgate_promote(handle, 0, 5.0, e))),
            (
                "promote_from",
                refusal(|e| pgate_promote_from(handle, 1, 0, 5.0, e)),
            ),
            (
                "swap_config",
                refusal(|e| pgate_swap_config(handle, x, 1, e)),
            ),
            (
                "swap_config_from",
                refusal(|e| pgate_swap_config_from(handle, 1, x, 1, e)),
            ),
            ("swap_slo", refusal(|e| pgate_swap_slo(handle, x, 1, e))),
            (
                "enable_feature",
                refusal(|e| pgate_enable_feature(handle, x, 1, e)),
            ),
            ("rollback", refusal(|e| pgate_rollback(handle, x, 1, e))),
        ] {
            assert_eq!(got, (InvalidHandle, not_live.clone()), "{call}");
        }
        assert_eq!(pgate_gate_free(gate), pgate_status::Ok);
        // A freed gate is refused the same way (held in quarantine, so its address is not reused).
        let freed = format!(
            "invalid gate = {gate:p}: not a live gate (freed, or not made by pgate_gate_new)"
        );
        assert_eq!(
            refusal(|e| pgate_promote(gate, 0, 5.0, e)),
            (InvalidHandle, freed)
        );
    }
}

#[test]
fn a_name_no_flag_can_have_is_refused_and_a_swap_needs_a_document() {
    let gate = new_gate(r#"{"feature_flags": ["on"]}"#);
    // SAFETY: a live gate, live names and out-pointers; err is a valid out-pointer.
    unsafe {
        // Refused with the status pgate_enable_feature refuses the name with: INVALID_FLAG,
        // or INVALID_ARGUMENT for bytes that are not UTF-8.
        let long = "n".repeat(129);
        for (name, refused) in [
            (b"".as_slice(), pgate_status::InvalidFlag),
            (b"a b", pgate_status::InvalidFlag),
            (b"tab\t", pgate_status::InvalidFlag),
            (long.as_bytes(), pgate_status::InvalidFlag),
            (b"bad\xff", pgate_status::InvalidArgument),
        ] {
            let mut on = true;
            let status = pgate_is_feature_enabled(gate, name.as_ptr(), name.len(), &mut on);
            assert_eq!((status, on), (refused, true), "{name:?}");
            let mut err = null_mut();
            let enabled = pgate_enable_feature(gate, name.as_ptr(), name.len(), &mut err);
            assert_eq!(enabled, refused, "enable {name:?}");
            error_text(err);
        }
        let mut on = false;
        let status = pgate_is_feature_enabled(gate, b"on".as_ptr(), 2, &mut on);
        assert_eq!((status, on), (pgate_status::Ok, true));
        // An empty document is refused by both swaps (gate_new takes it as the defaults).
        let mut err = null_mut();
        assert_eq!(
            pgate_swap_slo(gate, null(), 0, &mut err),
            pgate_status::InvalidJson
        );
        assert!(error_text(err).starts_with("invalid JSON SLO config"));
        assert_eq!(
            pgate_swap_config(gate, null(), 0, &mut err),
            pgate_status::InvalidJson
        );
        error_text(err);
        assert_eq!(pgate_gate_free(gate), pgate_status::Ok);
    }
}

#[test]
fn health_and_rollback_through_the_abi() {
    // (the quiet SLO: the canary's errors roll it back, no evaluation by the clock)
    let gate = new_gate_with_slo(
        &format!(r#"{{"environment": {{"canary": {{"traffic_percent": 100}}}}, {QUIET_WINDOW}}}"#),
        Some(QUIET_SLO),
    );
    // SAFETY: live gate and buffers throughout.
    unsafe {
        let d = fail_the_canary(gate);
        assert_eq!(d.environment, pgate_environment::Production);
        // A canary failing every request rolled itself back.
        let mut h = std::mem::zeroed::<pgate_health>();
        let mut buf = [0u8; 2048];
        let mut len = 0;
        assert_eq!(
            pgate_monitor_health(gate, &mut h, buf.as_mut_ptr().cast(), buf.len(), &mut len),
            pgate_status::Ok
        );
        assert_eq!(h.environment, pgate_environment::Production);
        assert_eq!(
            pgate_rollback_history_json(gate, buf.as_mut_ptr().cast(), buf.len(), &mut len),
            pgate_status::Ok
        );
        let history = std::str::from_utf8(&buf[..len]).unwrap();
        assert!(
            history.contains("overwhelming_errors")
                && history.contains(r#""trigger":"automatic""#)
                && history.contains(r#""rolled_back":"release""#),
            "{history}"
        );
        let name = std::ffi::CStr::from_ptr(pgate_status_str(6))
            .to_str()
            .unwrap();
        assert_eq!(name, "PGATE_STATUS_SLO_NOT_MET");
        assert_eq!(
            std::ffi::CStr::from_ptr(pgate_status_str(999))
                .to_str()
                .unwrap(),
            "PGATE_STATUS_UNKNOWN"
        );
        assert_eq!(pgate_gate_free(gate), pgate_status::Ok);
    }
}

/// The gate's change count, read through the C ABI.
fn change_count_of(gate: *const pgate_gate) -> u64 {
    let mut count = 0;
    // SAFETY: live gate, valid output.
    let status = unsafe { pgate_change_count(gate, &mut count) };
    assert_eq!(status, pgate_status::Ok);
    count
}

/// Whether `name` is on, read through the C ABI.
fn flag_on(gate: *const pgate_gate, name: &str) -> bool {
    let mut on = false;
    // SAFETY: live gate, `name` readable, valid output.
    let status = unsafe { pgate_is_feature_enabled(gate, name.as_ptr(), name.len(), &mut on) };
    assert_eq!(status, pgate_status::Ok);
    on
}

/// A hot reload's read: the change count first, then the config, edited (`dark_mode` on).
fn read_to_edit(gate: *const pgate_gate) -> (u64, String) {
    let seen = change_count_of(gate);
    // SAFETY: live gate; `text_of` passes a buffer of `c` bytes and a valid `l`.
    let read = text_of(&|b, c, l| unsafe { pgate_config_json(gate, b, c, l) });
    let edited = if read.contains(r#""feature_flags":[]"#) {
        read.replace(r#""feature_flags":[]"#, r#""feature_flags":["dark_mode"]"#)
    } else {
        read.replace(r#""feature_flags":["#, r#""feature_flags":["dark_mode","#)
    };
    assert_ne!(edited, read);
    (seen, edited)
}

/// `pgate_swap_config_from` of `read` is refused with `PGATE_STATUS_GATE_CHANGED`, naming the
/// count read and the count now.
fn refused_as_changed(gate: *const pgate_gate, (seen, edited): (u64, String)) {
    let mut err = null_mut();
    // SAFETY: live gate, readable document, valid output.
    let status =
        unsafe { pgate_swap_config_from(gate, seen, edited.as_ptr(), edited.len(), &mut err) };
    assert_eq!(status, pgate_status::GateChanged);
    // SAFETY: the error the refused call wrote, freed once.
    let refused = unsafe { error_text(err) };
    let now = change_count_of(gate);
    assert!(
        refused.starts_with(&format!(
            "the gate changed since change {seen} (now {now}: "
        )) && refused.ends_with("read its config again"),
        "{refused}"
    );
    assert!(!flag_on(gate, "dark_mode"), "nothing swapped");
}

#[test]
fn a_config_swap_from_a_change_count_is_refused_once_the_gate_changed() {
    let gate =
        new_gate(r#"{"gate": "checkout", "environment": {"canary": {"traffic_percent": 10}}}"#);
    let read = read_to_edit(gate);
    // SAFETY: live gate and buffers throughout.
    unsafe {
        // Meanwhile the canary is rolled back.
        assert_eq!(
            pgate_rollback(gate, b"bad".as_ptr(), 3, null_mut()),
            pgate_status::Ok
        );
        refused_as_changed(gate, read);
        let (mut env, mut pct, mut stage) = (pgate_environment::Canary, 0.0, 0);
        assert_eq!(
            pgate_state(gate, &mut env, &mut pct, &mut stage),
            pgate_status::Ok
        );
        assert_eq!(env, pgate_environment::Production, "the rollback stays");
        // Read again, the swap is made.
        let (seen, edited) = read_to_edit(gate);
        assert_eq!(
            pgate_swap_config_from(gate, seen, edited.as_ptr(), edited.len(), null_mut()),
            pgate_status::Ok
        );
        assert!(flag_on(gate, "dark_mode"));
        assert_eq!(pgate_gate_free(gate), pgate_status::Ok);
    }
}

/// A kill switch begins no stage, and a config read before it does not turn the flag on again.
#[test]
fn a_config_swap_from_a_change_count_does_not_undo_a_kill_switch() {
    let gate = new_gate(r#"{"gate": "checkout", "feature_flags": ["checkout_v2"]}"#);
    assert!(flag_on(gate, "checkout_v2"));
    let read = read_to_edit(gate);
    // SAFETY: live gate, readable name.
    let status = unsafe { pgate_disable_feature(gate, b"checkout_v2".as_ptr(), 11, null_mut()) };
    assert_eq!(status, pgate_status::Ok);
    refused_as_changed(gate, read);
    assert!(!flag_on(gate, "checkout_v2"), "the kill switch stays");
    // SAFETY: a live gate, freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
}

#[test]
fn a_decision_built_by_the_caller_is_read_safely() {
    let gate = new_gate(r#"{"environment": {"canary": {"traffic_percent": 100}}}"#);
    // SAFETY: the decision is built from raw bytes as a C caller might (invalid bool and enum
    // values included); the library must read only its stage and canary byte as integers.
    unsafe {
        let mut d = std::mem::zeroed::<pgate_decision>();
        assert_eq!(
            pgate_route(gate, b"a".as_ptr(), 1, &mut d),
            pgate_status::Ok
        );
        let mut raw = std::mem::MaybeUninit::<pgate_decision>::zeroed();
        let bytes = raw.as_mut_ptr().cast::<u8>();
        std::ptr::copy_nonoverlapping(
            (&raw const d).cast::<u8>(),
            bytes,
            std::mem::size_of::<pgate_decision>(),
        );
        let base = raw.as_ptr() as usize;
        let env_at = std::ptr::addr_of!((*raw.as_ptr()).environment) as usize - base;
        let canary_at = std::ptr::addr_of!((*raw.as_ptr()).is_canary) as usize - base;
        bytes.add(env_at).cast::<u32>().write_unaligned(7);
        bytes.add(canary_at).write(2);
        let mut recorded = pgate_recorded::Late;
        assert_eq!(
            pgate_record(gate, raw.as_ptr(), true, 10, &mut recorded),
            pgate_status::Ok
        );
        assert_eq!(recorded, pgate_recorded::Counted);
        assert_eq!(pgate_gate_free(gate), pgate_status::Ok);
    }
}

#[test]
fn a_refused_health_call_judges_nothing() {
    // A gate whose health call would roll the canary back: slow canary successes over a 1 ms
    // p99 budget, judged only when asked (the longest evaluation interval, with a window of ten
    // of them, no warm-up).
    let gate = new_gate_with_slo(
        r#"{"environment": {"canary": {"traffic_percent": 100}}, "auto_rollback_enabled": true,
            "rollback_window_seconds": 36000}"#,
        Some(
            r#"{"evaluation_interval_ms": 3600000, "p99_budget_ms": 1, "min_samples": 5,
                "warm_up_ms": 0}"#,
        ),
    );
    // SAFETY: live gate; the oversized capacity is refused before any memory is touched.
    unsafe {
        route_and_record(gate, 50, true, 100_000_000);
        let mut h = std::mem::zeroed::<pgate_health>();
        let status = pgate_read_health(gate, &mut h, null_mut(), 0, null_mut());
        assert_eq!(status, pgate_status::Ok);
        assert_eq!(
            h.recommendation,
            pgate_recommendation::Rollback,
            "would roll back"
        );
        assert_ne!(h.rules_fired & pgate_rule::P99Budget as u32, 0);
        let state = || {
            let (mut env, mut pct, mut stage) = (pgate_environment::Production, 0.0, 0);
            let mut changes = 0;
            assert_eq!(
                pgate_state(gate, &mut env, &mut pct, &mut stage),
                pgate_status::Ok
            );
            assert_eq!(pgate_change_count(gate, &mut changes), pgate_status::Ok);
            (env, pct, stage, changes)
        };
        let before = state();
        assert_eq!(before.0, pgate_environment::Canary);
        let mut h = std::mem::zeroed::<pgate_health>();
        let mut buf = [0u8; 8];
        let mut len = 0;
        let status =
            pgate_monitor_health(gate, &mut h, buf.as_mut_ptr().cast(), usize::MAX, &mut len);
        assert_eq!(status, pgate_status::InvalidArgument);
        assert_eq!(h.stage, 0, "output written on failure");
        assert_eq!(state(), before, "the refused call judged and rolled back");
        // The call not refused rolls back: the refusal is what kept the canary.
        let status = pgate_monitor_health(gate, &mut h, null_mut(), 0, null_mut());
        assert_eq!(status, pgate_status::Ok);
        assert_ne!(state().0, pgate_environment::Canary);
        let (mut pct, mut stage) = (0.0, 0);
        assert_eq!(
            pgate_state(gate, null_mut(), &mut pct, &mut stage),
            pgate_status::NullPointer
        );
        assert_eq!(pgate_gate_free(gate), pgate_status::Ok);
    }
}

#[test]
fn a_flag_set_number_the_gate_no_longer_holds_is_reported_not_read_as_empty() {
    let gate = new_gate(r#"{"environment": "staging", "feature_flags": ["first"]}"#);
    // SAFETY: every pointer is live; the gate is freed at the end.
    unsafe {
        let mut d = std::mem::zeroed::<pgate_decision>();
        assert_eq!(
            pgate_route(gate, b"u".as_ptr(), 1, &mut d),
            pgate_status::Ok
        );
        let (mut name, mut len) = (null(), 0);
        assert_eq!(
            pgate_flag_set_name(gate, d.flag_set, 0, &mut name, &mut len),
            pgate_status::Ok
        );
        let first = std::slice::from_raw_parts(name, len);
        assert_eq!(first, b"first");
        let mut n = 0;
        let mut writes = 0;
        let mut previous = d.flag_set;
        // Each round turns a new flag on and the one before off: two writes, each making a
        // set the gate never held ({first, f1}, {first, f1, f2}, {first, f2}, ...), kept small
        // so that the writes cost the same from the first to the last (under Miri too).
        let mut round = 0;
        while pgate_flag_set_len(gate, d.flag_set, &mut n) == pgate_status::Ok {
            assert_eq!(n, 1);
            round += 1;
            let flag = format!("f{round}");
            let status = pgate_enable_feature(gate, flag.as_ptr(), flag.len(), null_mut());
            assert_eq!(status, pgate_status::Ok);
            writes += 1;
            if round > 1 {
                let before = format!("f{}", round - 1);
                let status = pgate_disable_feature(gate, before.as_ptr(), before.len(), null_mut());
                assert_eq!(status, pgate_status::Ok);
                writes += 1;
            }
            // Read two other sets, as a host routing requests does: the thread forgets this one.
            let mut now = std::mem::zeroed::<pgate_decision>();
            assert_eq!(
                pgate_route(gate, b"u".as_ptr(), 1, &mut now),
                pgate_status::Ok
            );
            assert_eq!(
                pgate_flag_set_len(gate, now.flag_set, &mut n),
                pgate_status::Ok
            );
            pgate_flag_set_len(gate, previous, &mut n);
            previous = now.flag_set;
        }
        assert!(writes > promotion_gates::FLAG_SET_GRACE_WRITES);
        assert_eq!(
            pgate_flag_set_len(gate, d.flag_set, &mut n),
            pgate_status::UnknownFlagSet
        );
        assert_eq!(
            pgate_flag_set_name(gate, d.flag_set, 0, &mut name, &mut len),
            pgate_status::UnknownFlagSet
        );
        // The name handed out before stays valid until the gate is freed.
        assert_eq!(std::slice::from_raw_parts(name, len), b"first");
        assert_eq!(pgate_gate_free(gate), pgate_status::Ok);
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "18 MiB of text through the limits' messages: minutes under Miri, and no unsafe code \
              beyond what the other tests' short texts take"
)]
fn byte_limits_are_statuses_with_messages_that_name_the_limit() {
    let gate = new_gate(r#"{"environment": "staging"}"#);
    // SAFETY: every pointer is live; the gate is freed at the end.
    unsafe {
        let mut err = null_mut();
        let reason = "r".repeat(promotion_gates::MAX_REASON_BYTES + 1);
        assert_eq!(
            pgate_rollback(gate, reason.as_ptr(), reason.len(), &mut err),
            pgate_status::RollbackRefused
        );
        assert!(error_text(err).contains("4096"));
        let document = format!("{{}}{}", " ".repeat(promotion_gates::MAX_DOCUMENT_BYTES));
        assert_eq!(
            pgate_swap_config(gate, document.as_ptr(), document.len(), &mut err),
            pgate_status::InvalidConfig
        );
        let text = error_text(err);
        assert!(
            text.contains("document") && text.contains("8388608"),
            "{text}"
        );
        let name = "n".repeat(10 * 1024 * 1024);
        assert_eq!(
            pgate_enable_feature(gate, name.as_ptr(), name.len(), &mut err),
            pgate_status::InvalidFlag
        );
        let text = error_text(err);
        assert!(
            text.len() < 1024 && text.contains("10485760 bytes"),
            "{text}"
        );
        assert_eq!(pgate_gate_free(gate), pgate_status::Ok);
    }
}

/// The gate's environment and rollback history JSON.
fn stored_gate_state(gate: *mut pgate_gate) -> (pgate_environment, String) {
    // SAFETY: all-zero bytes are a valid pgate_decision (environment 0 is Canary).
    let mut d = unsafe { std::mem::zeroed::<pgate_decision>() };
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    // SAFETY: live gate, live id slice and buffer, valid out-pointers.
    unsafe {
        assert_eq!(
            pgate_route(gate, b"u".as_ptr(), 1, &mut d),
            pgate_status::Ok
        );
        assert_eq!(
            pgate_rollback_history_json(gate, buf.as_mut_ptr().cast(), buf.len(), &mut len),
            pgate_status::Ok
        );
    }
    (
        d.environment,
        String::from_utf8_lossy(&buf[..len]).into_owned(),
    )
}

/// Through the C ABI: ramps down, rolls back, frees the gate, makes it again from `document`,
/// and checks that the new handle starts rolled back with the same history.
fn rolls_back_and_restarts(document: &str) {
    let gate = new_gate(document);
    let reason = "bad deploy";
    // SAFETY: live gate; the reason is a live slice; err may be NULL.
    unsafe {
        assert_eq!(
            pgate_promote(gate, 0, 5.0, null_mut()),
            pgate_status::Ok,
            "ramping down is ungated"
        );
        assert_eq!(
            pgate_rollback(gate, reason.as_ptr(), reason.len(), null_mut()),
            pgate_status::Ok
        );
    }
    let before = stored_gate_state(gate);
    assert_eq!(before.0, pgate_environment::Production);
    assert!(before.1.contains("bad deploy"), "{}", before.1);
    // SAFETY: live gate, freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);

    let again = new_gate(document);
    assert_eq!(stored_gate_state(again), before);
    // SAFETY: live gate, freed once.
    assert_eq!(unsafe { pgate_gate_free(again) }, pgate_status::Ok);
}

/// A gate on a SQLite state store: the config document carries the `store` key as it is, and a
/// rolled-back canary stays rolled back after the handle is freed and a new one is made from
/// the same document (as after a process restart).
#[test]
#[cfg_attr(miri, ignore = "SQLite is C code, which Miri cannot run")]
fn a_stored_rollback_survives_freeing_the_gate_and_making_it_again() {
    let dir = std::env::temp_dir().join(format!("pg-ffi-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gate.db").to_str().unwrap().to_string();
    let document = format!(
        r#"{{"gate": "checkout", "environment": {{"canary": {{"traffic_percent": 10}}}},
            "store": {{"sqlite": {{"path": {path:?}}}}}}}"#
    );
    rolls_back_and_restarts(&document);

    // A corrupt file: PGATE_STATUS_STORE, with the path in the message.
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let _ = std::fs::remove_file(format!("{path}-wal"));
    let _ = std::fs::remove_file(format!("{path}-shm"));
    let (status, message) = refused_gate(&document);
    assert_eq!(status, pgate_status::Store);
    assert!(message.contains(&path), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The same through an etcd store (`.ci/etcd` sets `PGATE_ETCD_ENDPOINT`; outside CI, a
/// missing etcd is said loudly and the test passes; in CI it fails).
#[cfg(feature = "etcd")]
#[test]
#[cfg_attr(
    miri,
    ignore = "etcd is reached over sockets, which Miri does not model"
)]
fn a_rollback_stored_in_etcd_survives_freeing_the_gate_and_making_it_again() {
    let Some(endpoint) = std::env::var("PGATE_ETCD_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
    else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI must run the etcd tests: start etcd with .ci/etcd"
        );
        eprintln!("!!! etcd restart through the C ABI: NOT RUN: no PGATE_ETCD_ENDPOINT");
        return;
    };
    let prefix = format!("/pg-test/ffi-{}", std::process::id());
    rolls_back_and_restarts(&format!(
        r#"{{"gate": "checkout", "environment": {{"canary": {{"traffic_percent": 10}}}},
            "store": {{"etcd": {{"endpoints": [{endpoint:?}], "prefix": {prefix:?}}}}}}}"#
    ));
}

#[test]
fn an_abandoned_request_is_recorded_only_past_the_latency_target() {
    let gate = new_gate(r#"{"environment": {"canary": {"traffic_percent": 100}}}"#);
    // SAFETY: live gate.
    let decision = unsafe { common::route(gate, b"user-1") };
    let target_ns = 500_000_000; // the default SLO's latency_target
    for (waited_ns, expected) in [
        (1_000_000, false),
        (target_ns, false),
        (target_ns + 1, true),
    ] {
        let mut recorded = !expected;
        // SAFETY: live gate; a decision it made; a valid out-pointer.
        let status = unsafe { pgate_record_abandoned(gate, &decision, waited_ns, &mut recorded) };
        assert_eq!(
            (status, recorded),
            (pgate_status::Ok, expected),
            "{waited_ns} ns"
        );
    }
    let mut recorded = true;
    // SAFETY: live gate; a NULL decision is refused, nothing written.
    let status = unsafe { pgate_record_abandoned(gate, null(), 1, &mut recorded) };
    assert_eq!((status, recorded), (pgate_status::NullPointer, true));
    // SAFETY: the gate was made by pgate_gate_new and is freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
    // SAFETY: a freed handle is only compared against the live gates, never read.
    let status = unsafe { pgate_record_abandoned(gate, &decision, 1, null_mut()) };
    assert_eq!(status, pgate_status::InvalidHandle);
}

#[test]
fn an_abandoned_request_passed_on_is_classified_as_pgate_record_would() {
    let gate = new_gate(
        r#"{"environment": {"canary": {"traffic_percent": 100}},
            "overrides": {"header": "X-Canary"}}"#,
    );
    let long_ns = 500_000_001; // past the default SLO's latency_target
    // SAFETY: live gate.
    let routed = unsafe { common::route(gate, b"user-1") };
    let value = b"stable";
    let mut forced = std::mem::MaybeUninit::<pgate_decision>::uninit();
    // SAFETY: live gate, id and value slices; `forced` valid for a write.
    let status = unsafe {
        pgate_route_forced(
            gate,
            b"u".as_ptr(),
            1,
            value.as_ptr(),
            value.len(),
            forced.as_mut_ptr(),
        )
    };
    assert_eq!(status, pgate_status::Ok);
    // SAFETY: pgate_route_forced returned OK, so it wrote the decision.
    let forced = unsafe { forced.assume_init() };
    let foreign = pgate_decision {
        stage: routed.stage + 1,
        ..routed
    };
    let abandoned = |decision: &pgate_decision, waited_ns| {
        let (mut recorded, mut recorded_as) = (false, pgate_recorded::Late);
        // SAFETY: live gate; a decision; valid out-pointers.
        let status = unsafe {
            pgate_record_abandoned_as(gate, decision, waited_ns, &mut recorded, &mut recorded_as)
        };
        assert_eq!(status, pgate_status::Ok);
        (recorded, recorded_as)
    };
    // a short wait records nothing, and leaves recorded_as as it was
    assert_eq!(abandoned(&routed, 1_000), (false, pgate_recorded::Late));
    assert_eq!(abandoned(&routed, long_ns), (true, pgate_recorded::Counted));
    assert_eq!(abandoned(&forced, long_ns), (true, pgate_recorded::Forced));
    assert_eq!(
        abandoned(&foreign, long_ns),
        (true, pgate_recorded::Foreign)
    );
    let reason = "late";
    // SAFETY: live gate and reason slice; err may be NULL.
    let status = unsafe { pgate_rollback(gate, reason.as_ptr(), reason.len(), null_mut()) };
    assert_eq!(status, pgate_status::Ok);
    assert_eq!(abandoned(&routed, long_ns), (true, pgate_recorded::Late));
    // either output may be NULL
    // SAFETY: live gate; a decision; NULL outputs are not written.
    unsafe {
        let mut recorded = false;
        let status = pgate_record_abandoned_as(gate, &routed, long_ns, &mut recorded, null_mut());
        assert_eq!((status, recorded), (pgate_status::Ok, true));
        let mut recorded_as = pgate_recorded::Counted;
        let status =
            pgate_record_abandoned_as(gate, &routed, long_ns, null_mut(), &mut recorded_as);
        assert_eq!(
            (status, recorded_as),
            (pgate_status::Ok, pgate_recorded::Late)
        );
        let status = pgate_record_abandoned_as(gate, null(), 1, null_mut(), &mut recorded_as);
        assert_eq!(status, pgate_status::NullPointer);
    }
    // SAFETY: the gate was made by pgate_gate_new and is freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
}

/// A forcing value passed whose decision is not forced is exactly one the gate counted as
/// ignored: what a host counting ignored values itself relies on.
#[test]
fn a_value_passed_and_not_forcing_is_one_counted_as_ignored() {
    let gate = new_gate(
        r#"{"gate": "g", "environment": {"canary": {"traffic_percent": 50}},
            "overrides": {"header": "X-Canary", "canary_ids": ["tester"]}}"#,
    );
    let mut host_count = 0;
    let values: [Option<&[u8]>; 6] = [
        None,
        Some(b"canary"),
        Some(b"STABLE"),
        Some(b"maybe"),
        Some(b""),
        Some(b"canary "),
    ];
    for id in ["tester", "user-1", "user-2"] {
        for value in values {
            let (ptr, len) = value.map_or((null(), 0), |v| (v.as_ptr(), v.len()));
            let mut d = std::mem::MaybeUninit::<pgate_decision>::uninit();
            // SAFETY: live gate, id and value slices (or NULL, 0); `d` valid for a write.
            let status = unsafe {
                pgate_route_forced(gate, id.as_ptr(), id.len(), ptr, len, d.as_mut_ptr())
            };
            assert_eq!(status, pgate_status::Ok);
            // SAFETY: pgate_route_forced returned OK, so it wrote the decision.
            let d = unsafe { d.assume_init() };
            if value.is_some() && d.forced == pgate_forced::None {
                host_count += 1;
            }
        }
    }
    assert_eq!(
        host_count,
        2 * 3,
        "three ignored values for each of the two unlisted ids"
    );
    // SAFETY: live gate; the buffers are handed in by text_of.
    let text = common::text_of(&|b, c, l| unsafe { pgate_metrics_prometheus(gate, b, c, l) });
    assert!(
        text.contains(&format!(
            "promotion_ignored_override_values_total{{gate=\"g\"}} {host_count}\n"
        )),
        "{text}"
    );
    // SAFETY: the gate was made by pgate_gate_new and is freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
}

/// A forcing value pointer NULL with a length is refused as an id's is (it was taken as no
/// value), by the route and the record by id, and nothing is written.
#[test]
fn a_null_forcing_value_with_a_length_is_refused() {
    let gate = new_gate(r#"{"overrides": {"header": "X-Canary"}}"#);
    let id = b"tester";
    let mut d = std::mem::MaybeUninit::<pgate_decision>::uninit();
    // SAFETY: live gate and id slice; a NULL value with a length is what is refused; `d`
    // valid for a write.
    let status =
        unsafe { pgate_route_forced(gate, id.as_ptr(), id.len(), null(), 6, d.as_mut_ptr()) };
    assert_eq!(status, pgate_status::NullPointer);
    let mut recorded = pgate_recorded::Late;
    // SAFETY: as above; `recorded` valid for a write.
    let status = unsafe {
        pgate_record_by_id_forced(
            gate,
            id.as_ptr(),
            id.len(),
            null(),
            6,
            true,
            1,
            &mut recorded,
        )
    };
    assert_eq!(
        (status, recorded),
        (pgate_status::NullPointer, pgate_recorded::Late)
    );
    // SAFETY: the gate was made by pgate_gate_new and is freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
}

/// A request forced by value and recorded by id with its value counts in neither cohort, where
/// the plain record by id counts it in the cohort of its bucket; an ignored value is not
/// counted again.
#[test]
fn a_record_by_id_with_the_forcing_value_is_forced() {
    // (the quiet SLO: no evaluation by the clock on the counted records)
    let gate = new_gate_with_slo(
        &format!(
            r#"{{"gate": "g", "environment": {{"canary": {{"traffic_percent": 0}}}},
            "overrides": {{"header": "X-Canary", "canary_ids": ["tester-1"]}}, {QUIET_WINDOW}}}"#
        ),
        Some(QUIET_SLO),
    );
    let record = |id: &[u8], value: Option<&[u8]>| {
        let (ptr, len) = value.map_or((null(), 0), |v| (v.as_ptr(), v.len()));
        let mut recorded = pgate_recorded::Late;
        // SAFETY: live gate, id and value slices (or NULL, 0); `recorded` valid for a write.
        let status = unsafe {
            pgate_record_by_id_forced(
                gate,
                id.as_ptr(),
                id.len(),
                ptr,
                len,
                false,
                1_000,
                &mut recorded,
            )
        };
        assert_eq!(status, pgate_status::Ok);
        recorded
    };
    assert_eq!(record(b"tester", Some(b"canary")), pgate_recorded::Forced);
    assert_eq!(record(b"tester", Some(b"Stable")), pgate_recorded::Forced);
    assert_eq!(record(b"tester-1", None), pgate_recorded::Forced);
    assert_eq!(record(b"tester", None), pgate_recorded::Counted);
    assert_eq!(record(b"tester", Some(b"maybe")), pgate_recorded::Counted);
    assert_eq!(record(b"tester", Some(b"")), pgate_recorded::Counted);
    let mut recorded = pgate_recorded::Late;
    // SAFETY: live gate and id slice; `recorded` valid for a write.
    let status = unsafe { pgate_record_by_id(gate, b"tester".as_ptr(), 6, true, 1, &mut recorded) };
    assert_eq!(
        (status, recorded),
        (pgate_status::Ok, pgate_recorded::Counted)
    );
    // SAFETY: a NULL gate is refused before anything is read.
    let status =
        unsafe { pgate_record_by_id_forced(null(), null(), 0, null(), 0, true, 1, null_mut()) };
    assert_eq!(status, pgate_status::NullPointer);
    // SAFETY: live gate; the buffers are handed in by text_of.
    let text = common::text_of(&|b, c, l| unsafe { pgate_metrics_prometheus(gate, b, c, l) });
    for line in [
        "promotion_forced_outcomes_total{gate=\"g\"} 3\n",
        "promotion_ignored_override_values_total{gate=\"g\"} 0\n",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    // SAFETY: the gate was made by pgate_gate_new and is freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
}
