//! The config documents through the C ABI: `pgate_gate_new` (a `PromotionConfig` and a
//! `SloConfig` document) and `pgate_swap_config`.
//!
//! Input: the config document, then optionally a 0xFF byte (never part of UTF-8) and the SLO
//! document. For any input whose config names no state store (see `names_a_store`):
//! - no panic, and a refusal is `INVALID_JSON` or `INVALID_CONFIG` with a message
//!   (`INVALID_ARGUMENT` only for a document that is not UTF-8);
//! - an accepted pair reads back (`pgate_config_json`, `pgate_slo_json`) as documents that are
//!   accepted again and read back the same (a fixed point);
//! - `pgate_swap_config` of a default gate of the document's name (a running gate keeps its
//!   name) accepts a config document exactly when `pgate_gate_new` does, leaves the gate as it
//!   was when it refuses, and otherwise holds the same config as a new gate (an empty document
//!   is the exception: the defaults for a new gate, refused as a reload).

#![no_main]

use libfuzzer_sys::fuzz_target;
use promotion_gates_ffi::pgate_status;
use promotion_gates_fuzz::{Gate, Refusal};

fn check_refusal(refusal: &Refusal, documents: &[&[u8]]) {
    let utf8 = documents.iter().all(|d| std::str::from_utf8(d).is_ok());
    assert!(
        match refusal.status {
            pgate_status::InvalidJson | pgate_status::InvalidConfig => true,
            pgate_status::InvalidArgument => !utf8,
            _ => false,
        },
        "a document refused with {refusal:?}"
    );
}

/// Whether `document` names a state store (`"store"`). Such inputs are left alone on purpose: a
/// valid store would make each run create SQLite files (in the fuzzer's directory) or dial
/// etcd, and its refusals (`PGATE_STATUS_STORE`) would be the file system's, not the
/// document's. The store's document is checked by the tests of `src/store/config.rs`.
fn names_a_store(document: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(document).is_ok_and(|v| v.get("store").is_some())
}

fuzz_target!(|data: &[u8]| {
    let (config, slo) = match data.iter().position(|&b| b == 0xFF) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    if names_a_store(config) {
        return;
    }

    let created = Gate::new(config, slo);
    match &created {
        Err(refusal) => check_refusal(refusal, &[config, slo]),
        Ok(gate) => {
            let (config_out, slo_out) = (gate.config_json(), gate.slo_json());
            let again = match Gate::new(config_out.as_bytes(), slo_out.as_bytes()) {
                Ok(again) => again,
                Err(refusal) => {
                    panic!("{config_out} / {slo_out} read back and refused: {refusal:?}")
                }
            };
            assert_eq!(again.config_json(), config_out);
            assert_eq!(again.slo_json(), slo_out);
        }
    }

    // The config document alone, as a new gate and as a hot reload of a default gate.
    let alone = if config.is_empty() {
        Err(Refusal {
            status: pgate_status::InvalidJson,
            message: "an empty reload".into(),
        })
    } else {
        Gate::new(config, b"")
    };
    // A running gate keeps its name: the reloaded gate is a default one of the document's
    // name, when the document is accepted (a refused one is refused before its name is read).
    let named = match &alone {
        Ok(alone) => match serde_json::from_str::<serde_json::Value>(&alone.config_json()) {
            Ok(read) => serde_json::json!({ "gate": read["gate"] }).to_string(),
            Err(err) => panic!("pgate_config_json is not JSON: {err}"),
        },
        Err(_) => String::new(),
    };
    let reloaded = match Gate::new(named.as_bytes(), b"") {
        Ok(gate) => gate,
        Err(refusal) => panic!("the defaults refused: {refusal:?}"),
    };
    let before = reloaded.observe(&[]);
    match (alone, reloaded.swap_config(config)) {
        (Ok(alone), Ok(())) => assert_eq!(reloaded.config_json(), alone.config_json()),
        (Err(new), Err(swap)) => {
            check_refusal(&swap, &[config]);
            assert_eq!(new.status, swap.status, "{new:?} vs {swap:?}");
            assert_eq!(
                reloaded.observe(&[]),
                before,
                "a refused swap_config changed the gate"
            );
        }
        (alone, swap) => panic!("pgate_gate_new: {alone:?}; pgate_swap_config: {swap:?}"),
    }
});
