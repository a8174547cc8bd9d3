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

#[test]
fn a_thread_local_destructor_routes_and_records_after_the_librarys_thread_locals_are_gone() {
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "exiting_thread_child", "--nocapture"])
        .env("PGATE_EXITING_THREAD_CHILD", "1")
        .status()
        .unwrap();
    assert!(status.success(), "the child process: {status:?}");
}

#[test]
fn exiting_thread_child() {
    if std::env::var_os("PGATE_EXITING_THREAD_CHILD").is_none() {
        return;
    }
    let gate = shared_gate();
    std::thread::spawn(move || {
        // The host's thread-local is made first, then the thread routes and records: its
        // destructor runs after the library's.
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
    let health = gate.health();
    // One outcome before the thread's exit, two per in-flight request during it.
    assert_eq!(health.canary_requests + health.production_requests, 5);
}
