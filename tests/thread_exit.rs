//! Routing and recording from a host's thread-local destructor, as a thread exits (a
//! per-thread pool flushing its in-flight requests): after the library's own thread-locals
//! are gone. A panic there would abort the process, so the case runs in a child process.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a broken expectation is a failed test"
)]

mod common;

use common::{canary, gate};
use promotion_gates::{PromotionConfig, PromotionGateManager, Recorded, StageId};
use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::Duration;

static GATE: OnceLock<PromotionGateManager> = OnceLock::new();

fn shared_gate() -> &'static PromotionGateManager {
    GATE.get_or_init(|| {
        gate(PromotionConfig {
            environment: canary(50.0),
            auto_rollback_enabled: false,
            feature_flags: vec!["new_api".into()],
            ..Default::default()
        })
    })
}

/// The host's requests still in flight on this thread: routed and recorded when it exits.
struct InFlight(RefCell<Vec<String>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let gate = shared_gate();
        for id in self.0.borrow().iter() {
            let decision = gate.route_request(id);
            assert_eq!(decision.is_canary, gate.route_request(id).is_canary);
            assert_eq!(
                decision.enabled_features.contains("new_api"),
                decision.is_canary
            );
            assert_eq!(
                gate.record_outcome(&decision, false, Duration::from_millis(5)),
                Recorded::Counted
            );
            let stage = StageId::new(decision.stage.get());
            assert_eq!(
                gate.record_for(stage, decision.is_canary, true, Duration::from_millis(5)),
                Recorded::Counted
            );
        }
    }
}

thread_local! {
    static IN_FLIGHT: InFlight = const { InFlight(RefCell::new(Vec::new())) };
}

/// Runs `scenario` in a child process (this test binary, running `exiting_thread_child`).
fn in_a_child_process(scenario: &str) {
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "exiting_thread_child", "--nocapture"])
        .env("PGATE_EXITING_THREAD_CHILD", scenario)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "{scenario}: the child process: {status:?}"
    );
}

#[test]
fn a_thread_local_destructor_routes_and_records_after_the_librarys_thread_locals_are_gone() {
    in_a_child_process("after the gate's slots");
}

#[test]
fn a_thread_local_destructor_routes_and_records_on_a_thread_that_never_used_the_gate() {
    // Another user of `thread_local` gave the thread its id after the host's thread-local:
    // the id is gone before the host's destructor calls the gate for the first time.
    in_a_child_process("first call from the destructor");
}

#[test]
fn a_thread_local_destructor_routes_and_records_on_a_thread_that_took_over_anothers_slots() {
    // The thread got the id of a thread that had used the gate, after the host's thread-local,
    // and routed through that thread's slots: it made none of its own.
    in_a_child_process("slots of an exited thread");
}

#[test]
fn exiting_thread_child() {
    let Some(scenario) = std::env::var_os("PGATE_EXITING_THREAD_CHILD") else {
        return;
    };
    let gate = shared_gate();
    let other: &'static thread_local::ThreadLocal<u8> =
        Box::leak(Box::new(thread_local::ThreadLocal::new()));
    let before_exit = match scenario.to_str().unwrap() {
        "after the gate's slots" => {
            std::thread::spawn(move || {
                // The host's thread-local is made first, then the thread routes and records:
                // its destructor runs after the library's.
                IN_FLIGHT.with(|in_flight| {
                    let decision = gate.route_request("user-1");
                    gate.record_outcome(&decision, true, Duration::from_millis(1));
                    in_flight
                        .0
                        .borrow_mut()
                        .extend(["user-2".into(), "user-3".into()]);
                });
            })
            .join()
            .unwrap();
            1
        }
        "first call from the destructor" => {
            std::thread::spawn(move || {
                IN_FLIGHT.with(|in_flight| {
                    in_flight
                        .0
                        .borrow_mut()
                        .extend(["user-2".into(), "user-3".into()]);
                });
                other.get_or(|| 0);
            })
            .join()
            .unwrap();
            0
        }
        "slots of an exited thread" => {
            std::thread::spawn(move || {
                other.get_or(|| 0);
                let decision = gate.route_request("user-0");
                gate.record_outcome(&decision, true, Duration::from_millis(1));
            })
            .join()
            .unwrap();
            std::thread::spawn(move || {
                IN_FLIGHT.with(|in_flight| {
                    in_flight
                        .0
                        .borrow_mut()
                        .extend(["user-2".into(), "user-3".into()]);
                });
                other.get_or(|| 0); // the exited thread's id, and so its slots
                let decision = gate.route_request("user-1");
                gate.record_outcome(&decision, true, Duration::from_millis(1));
            })
            .join()
            .unwrap();
            2
        }
        other => panic!("no scenario {other}"),
    };
    let health = gate.health();
    // Two outcomes per in-flight request during the exit.
    assert_eq!(
        health.canary_requests + health.production_requests,
        before_exit + 4
    );
}
