//! The config documents through the C ABI: `pgate_gate_new` (a `PromotionConfig` and a
//! `SloConfig` document), `pgate_swap_config` and `pgate_swap_slo`, and the reads of a document
//! alone (`pgate_store_location`, `pgate_document_gate_name`, `pgate_document_fleet_judging`,
//! `pgate_document_check_slo`).
//!
//! Input: the config document, then optionally a 0xFF byte (never part of UTF-8) and the SLO
//! document. For every input, store documents too (the reads open nothing):
//! - the reads of the config alone do not panic, refuse as `INVALID_JSON` or `INVALID_CONFIG`
//!   with a message (`INVALID_ARGUMENT` only for a document that is not UTF-8), all three
//!   alike, and a text read answers `BUFFER_TOO_SMALL` with its length to a NULL buffer;
//! - `pgate_document_check_slo` of the pair refuses as the config's reads do when they refuse
//!   (the config is read first).
//!
//! For any input whose config names no state store (see `names_a_store`):
//! - no panic, and a refusal is `INVALID_JSON` or `INVALID_CONFIG` with a message
//!   (`INVALID_ARGUMENT` only for a document that is not UTF-8);
//! - `pgate_document_check_slo` accepts the pair exactly when `pgate_gate_new` does, with the
//!   same status when the config alone reads; the reads of the config alone answer as the gate
//!   does (its name, no store: an empty location, no fleet judging);
//! - an accepted pair reads back (`pgate_config_json`, `pgate_slo_json`) as documents that are
//!   accepted again and read back the same (a fixed point);
//! - `pgate_swap_config` of a default gate of the document's name (a running gate keeps its
//!   name) accepts a config document exactly when `pgate_gate_new` does, leaves the gate as it
//!   was when it refuses, and otherwise holds the same config as a new gate (an empty document
//!   is the exception: the defaults for a new gate, refused as a reload);
//! - `pgate_swap_slo` of the SLO document on that gate answers as `pgate_document_check_slo`
//!   of the gate's config and the SLO (an empty SLO is refused as a swap, `INVALID_JSON`),
//!   and leaves the gate as it was when it refuses.

#![no_main]

use libfuzzer_sys::fuzz_target;
use promotion_gates_ffi::pgate_status;
use promotion_gates_fuzz::{
    Gate, Refusal, document_check_slo, document_fleet_judging, document_gate_name, store_location,
};

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

/// Whether `document` names a state store (`"store"`). Such inputs are read by the calls that
/// open nothing, and kept from `pgate_gate_new` and the swaps on purpose: a valid store would
/// make each run create SQLite files (in the fuzzer's directory) or dial etcd, and its
/// refusals (`PGATE_STATUS_STORE`) would be the file system's, not the document's.
fn names_a_store(document: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(document).is_ok_and(|v| v.get("store").is_some())
}

fuzz_target!(|data: &[u8]| {
    let (config, slo) = match data.iter().position(|&b| b == 0xFF) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let name = document_reads(config);
    let checked = document_check_slo(config, slo);
    if let Err(config_refused) = &name {
        match &checked {
            Err(refusal) => assert_eq!(refusal.status, config_refused.status, "{refusal:?}"),
            Ok(()) => panic!("pgate_document_check_slo accepted a config refused alone"),
        }
    }
    if names_a_store(config) {
        return;
    }

    let created = Gate::new(config, slo);
    match (&created, &checked) {
        (Ok(_), Ok(())) => {}
        (Err(new), Err(check)) if name.is_ok() => {
            assert_eq!(new.status, check.status, "{new:?} vs {check:?}")
        }
        (Err(_), Err(_)) => {}
        (new, check) => panic!("pgate_gate_new: {new:?}; pgate_document_check_slo: {check:?}"),
    }
    if let Ok(gate) = &created {
        let read = serde_json::from_str::<serde_json::Value>(&gate.config_json())
            .map(|config| config["gate"].as_str().map(str::to_owned));
        assert_eq!(
            name.as_ref().ok().cloned(),
            read.ok().flatten(),
            "pgate_document_gate_name"
        );
    }
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

    // The SLO document as a swap on that gate, checked against the config it holds now.
    let before = reloaded.observe(&[]);
    let held = reloaded.config_json();
    let expected = match slo.is_empty() {
        true => Err(pgate_status::InvalidJson),
        false => document_check_slo(held.as_bytes(), slo).map_err(|r| r.status),
    };
    let swapped = reloaded.swap_slo(slo);
    assert_eq!(
        swapped.clone().map_err(|r| r.status),
        expected,
        "{swapped:?}"
    );
    if let Err(refusal) = &swapped {
        check_refusal(refusal, &[slo]);
        assert_eq!(
            reloaded.observe(&[]),
            before,
            "a refused swap_slo changed the gate"
        );
    }
});

/// The reads of `config` alone (`pgate_store_location`, `pgate_document_gate_name`,
/// `pgate_document_fleet_judging`): each refuses as the others do, with an expected status;
/// a document without a store has an empty location and no fleet judging. The gate name, or
/// the refusal.
fn document_reads(config: &[u8]) -> Result<String, Refusal> {
    let (location, name, judging) = (
        store_location(config),
        document_gate_name(config),
        document_fleet_judging(config),
    );
    let statuses = [
        location.as_ref().err().map(|r| r.status),
        name.as_ref().err().map(|r| r.status),
        judging.as_ref().err().map(|r| r.status),
    ];
    assert!(
        statuses.iter().all(|s| *s == statuses[0]),
        "location {location:?}, name {name:?}, fleet judging {judging:?}"
    );
    match (&location, &judging) {
        (Err(refusal), _) => check_refusal(refusal, &[config]),
        (Ok(location), Ok(judging)) if !names_a_store(config) => {
            assert_eq!(
                (location.as_str(), *judging),
                ("", false),
                "without a store"
            )
        }
        _ => {}
    }
    name
}
