//! Gate handles after `pgate_gate_free`: a stale handle is refused while new gates are made.
#![allow(unsafe_code)]

use common::new_gate;
use promotion_gates_ffi::*;
use std::collections::VecDeque;
use std::ptr::null_mut;
use std::sync::{Mutex, PoisonError};

mod common;

/// The config name of `gate`, or the status a refused handle gets.
fn name_of(gate: *const pgate_gate) -> Result<String, pgate_status> {
    let mut buf = [0u8; PGATE_NAME_CAPACITY];
    let mut len = 0;
    // SAFETY: a live gate, or a freed one, which the cold check refuses before use; the buffer
    // holds PGATE_NAME_CAPACITY bytes.
    let status = unsafe { pgate_gate_name(gate, buf.as_mut_ptr().cast(), buf.len(), &mut len) };
    match status {
        pgate_status::Ok => Ok(String::from_utf8_lossy(&buf[..len]).into_owned()),
        refused => Err(refused),
    }
}

/// Held by each test: one test's frees would push another's stale gate out of the quarantine.
static SERIAL: Mutex<()> = Mutex::new(());

fn free(gate: *mut pgate_gate) {
    // SAFETY: a live gate, freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
}

#[test]
fn a_freed_handle_is_not_given_to_the_next_gates() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let stale = new_gate(r#"{"gate": "old"}"#);
    free(stale);
    // Without the quarantine the allocator gives the freed block out again: one of these
    // blocks would cover the stale address, and a new gate there would answer to the stale
    // handle.
    let stale_at = stale as usize;
    let layouts = (0..20_000).map(|i| std::alloc::Layout::from_size_align(16 + 8 * (i % 140), 8));
    let blocks: Vec<_> = layouts
        .map(|layout| {
            let layout = layout.unwrap();
            // SAFETY: every layout has a non-zero size.
            (unsafe { std::alloc::alloc(layout) }, layout)
        })
        .collect();
    let covering = blocks
        .iter()
        .filter(|(b, layout)| (*b as usize..*b as usize + layout.size()).contains(&stale_at))
        .count();
    for &(b, layout) in &blocks {
        // SAFETY: allocated above with this layout, freed once.
        unsafe { std::alloc::dealloc(b, layout) };
    }
    assert_eq!(covering, 0, "the stale gate's memory was given out again");
    let newer: Vec<_> = (0..64)
        .map(|i| new_gate(&format!(r#"{{"gate": "new-{i}"}}"#)))
        .collect();
    assert!(!newer.contains(&stale), "a new gate got the stale address");
    assert_eq!(name_of(stale), Err(pgate_status::InvalidHandle));
    // SAFETY: freed once already: refused, nothing freed.
    let again = unsafe { pgate_gate_free(stale) };
    assert_eq!(again, pgate_status::InvalidHandle);
    for (i, &g) in newer.iter().enumerate() {
        assert_eq!(name_of(g).as_deref(), Ok(format!("new-{i}").as_str()));
        free(g);
    }
}

/// How many freed gates the library holds back: `PGATE_QUARANTINED_GATES`, or 4 under Miri
/// (`QUARANTINE_LENGTH` in ffi/src/gate.rs), so that Miri checks the release of the oldest in
/// a few gates, where 3 × 256 took far too long.
const QUARANTINED: usize = if cfg!(miri) {
    4
} else {
    PGATE_QUARANTINED_GATES
};

#[test]
fn churning_gates_past_the_quarantine_keeps_refusing_the_recently_freed_handles() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    // Freeing far more gates than the quarantine holds releases the oldest ones: making and
    // freeing them keeps working, no new gate is given the address of one of the last
    // QUARANTINED freed, and every one of those stays refused.
    let mut recent: VecDeque<*mut pgate_gate> = VecDeque::new();
    for i in 0..3 * QUARANTINED {
        let gate = new_gate(&format!(r#"{{"gate": "churn-{i}"}}"#));
        assert!(
            !recent.contains(&gate),
            "gate {i} got the address of one of the last {QUARANTINED} freed"
        );
        assert_eq!(name_of(gate).as_deref(), Ok(format!("churn-{i}").as_str()));
        free(gate);
        recent.push_back(gate);
        if recent.len() > QUARANTINED {
            recent.pop_front();
        }
        if i % (QUARANTINED / 4) == QUARANTINED / 4 - 1 {
            for &stale in &recent {
                assert_eq!(name_of(stale), Err(pgate_status::InvalidHandle));
            }
        }
    }
    let mut len = 0;
    // SAFETY: NULL is refused before use.
    let status = unsafe { pgate_gate_name(null_mut(), null_mut(), 0, &mut len) };
    assert_eq!(status, pgate_status::NullPointer);
}
