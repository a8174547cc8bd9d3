//! Change notifications through the public API: every kind of write becomes one numbered
//! change, a refused write none; a subscriber on another thread receives the judge's automatic
//! rollback with its evidence; an async subscriber is woken by every path that makes a change,
//! never while the gate holds a lock.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a broken expectation is a failed test"
)]

mod common;

use common::log_lines::LogLines;
use common::scratch::Scratch;
use common::stored::fail_the_canary;
use common::{canary, gate, gate_for_moves};
use promotion_gates::{
    ChangeKind, ChangeOrigin, Environment, PromotionConfig, PromotionGateManager, RollbackTrigger,
    Rule, Subscription,
};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// A waker that does, when woken, what a careless async host might: it subscribes and writes
/// to the gate. Woken while the gate held its writer lock or its change feed's lock, it would
/// wait for that lock forever.
struct Careless {
    gate: Arc<PromotionGateManager>,
    woken: Mutex<Sender<()>>,
}

impl Wake for Careless {
    fn wake(self: Arc<Self>) {
        drop(self.gate.subscribe());
        self.gate
            .swap_slo(self.gate.slo_controller().config().clone())
            .unwrap();
        self.woken.lock().unwrap().send(()).unwrap();
    }
}

/// Polls `subscription` (pending), makes a change on another thread (one that deadlocks must
/// not hang the test), and expects the careless waker woken and the change then ready.
fn woken_outside_the_gates_locks(
    gate: &Arc<PromotionGateManager>,
    subscription: &Subscription,
    change: impl FnOnce() + Send + 'static,
) -> ChangeKind {
    let (sender, woken) = channel();
    let waker = Waker::from(Arc::new(Careless {
        gate: Arc::clone(gate),
        woken: Mutex::new(sender),
    }));
    let mut cx = Context::from_waker(&waker);
    assert!(subscription.poll_recv(&mut cx).is_pending());
    std::thread::spawn(change);
    woken
        .recv_timeout(Duration::from_secs(60))
        .expect("the waker was called, and could use the gate");
    let Poll::Ready(Some(change)) = subscription.poll_recv(&mut cx) else {
        panic!("woken with no change queued");
    };
    change.kind()
}

/// The kind of the change `change` makes to a gate at Canary{50}, which an async subscriber
/// was woken for outside the gate's locks.
fn woken_at_canary_50_for(change: fn(&PromotionGateManager)) -> ChangeKind {
    let gate = Arc::new(gate(PromotionConfig {
        environment: canary(50.0),
        ..Default::default()
    }));
    let subscription = gate.subscribe();
    let changer = Arc::clone(&gate);
    woken_outside_the_gates_locks(&gate, &subscription, move || change(&changer))
}

#[test]
fn an_async_subscriber_is_woken_by_a_write_once_the_gate_lets_go_of_its_locks() {
    let kind = woken_at_canary_50_for(|gate| gate.enable_feature("dark_mode").unwrap());
    assert_eq!(kind, ChangeKind::Flags);
}

#[test]
fn an_async_subscriber_is_woken_by_the_judges_rollback_on_the_record_path() {
    assert_eq!(
        woken_at_canary_50_for(fail_the_canary),
        ChangeKind::Rollback
    );
}

#[test]
fn an_async_subscriber_is_woken_by_another_process_s_write_applied_from_the_store() {
    let scratch = Scratch::new("async-subscriber");
    let document = format!(
        r#"{{"environment": {{"canary": {{"traffic_percent": 10}}}},
            "store": {{"sqlite": {{"path": "{}", "sync_interval_ms": 20}}}}}}"#,
        scratch.file("gate.db")
    );
    let open = || gate(PromotionConfig::from_json(&document).unwrap());
    let (this, other) = (Arc::new(open()), open());
    let subscription = this.subscribe();
    let kind = woken_outside_the_gates_locks(&this, &subscription, move || {
        other.enable_feature("dark_mode").unwrap();
    });
    assert_eq!(kind, ChangeKind::Flags);
}

#[test]
fn an_async_subscriber_is_woken_after_a_write_whose_log_handler_judged_lets_go() {
    // The swap logs its flag line under the writer lock, after publishing (the waker is queued
    // then). The host's log handler asks the judge from there, which calls for a rollback: the
    // lock is this thread's own, so the rollback is left to the write, and the waker must be
    // left to it too, not called while the write still holds the lock.
    let gate = Arc::new(gate(PromotionConfig {
        environment: canary(50.0),
        auto_rollback_enabled: false, // the record path rolls nothing back while it fails
        feature_flags: vec!["a".into()],
        ..Default::default()
    }));
    for i in 0.. {
        assert!(i < 100_000, "no rule ever fired on the failing canary");
        let decision = gate.route_request(&format!("user-{i}"));
        gate.record_outcome(&decision, !decision.is_canary, Duration::from_millis(5));
        if gate.health().evidence.fired().next().is_some() {
            break;
        }
    }
    // Now the judge's rollback is made (the stage and its evidence go on).
    let stage = gate.stage();
    gate.swap_config(PromotionConfig {
        auto_rollback_enabled: true,
        ..gate.config()
    })
    .unwrap();
    assert_eq!(gate.stage(), stage);
    let subscription = gate.subscribe();
    let judging = Arc::downgrade(&gate);
    let armed = Arc::new(AtomicBool::new(true));
    // The environment the handler saw once it had judged: still Canary{50}, the rollback
    // left to the write.
    let seen = Arc::new(Mutex::new(None));
    let handler = LogLines::calling({
        let (armed, seen) = (Arc::clone(&armed), Arc::clone(&seen));
        move || {
            let Some(gate) = judging.upgrade() else {
                return;
            };
            // Once the swap is published, still inside the write: ask the judge, once.
            if !gate.is_feature_enabled("a") && armed.swap(false, Ordering::SeqCst) {
                let health = gate.monitor_canary_health();
                assert!(health.evidence.fired().next().is_some(), "a rule fired");
                *seen.lock().unwrap() = Some(gate.environment());
            }
        }
    });
    let swapped = Arc::clone(&gate);
    let kind = woken_outside_the_gates_locks(&gate, &subscription, move || {
        let mut next = swapped.config();
        next.feature_flags.clear();
        handler.during(|| swapped.swap_config(next)).unwrap();
    });
    assert_eq!(kind, ChangeKind::Flags);
    assert!(!armed.load(Ordering::SeqCst), "the handler judged");
    assert_eq!(
        *seen.lock().unwrap(),
        Some(canary(50.0)),
        "left to the write"
    );
    // Made by the write as it let go of the lock.
    assert_eq!(gate.environment(), Environment::Production);
    let history = gate.rollback_history();
    assert!(
        history
            .iter()
            .any(|event| event.trigger == RollbackTrigger::Automatic)
    );
}

#[test]
fn an_awaited_subscription_resolves_to_the_next_change_then_to_none_once_the_gate_is_gone() {
    /// Wakes the thread that blocks on a future.
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    fn block_on<F: Future>(future: F) -> F::Output {
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            std::thread::park();
        }
    }
    let gate = gate(PromotionConfig::default());
    let subscription = gate.subscribe();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            gate.enable_feature("dark_mode").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            drop(gate);
        });
        let change = block_on(subscription.recv()).expect("the flag change");
        assert_eq!(change.kind(), ChangeKind::Flags);
        assert!(block_on(subscription.recv()).is_none());
    });
    assert!(subscription.is_closed());
}

#[test]
fn every_kind_of_write_is_one_change_and_a_refused_write_none() {
    let (gate, _clock) = gate_for_moves(PromotionConfig::default());
    assert_eq!(gate.change_count(), 0);
    gate.promote(canary(5.0)).unwrap();
    gate.enable_feature("dark_mode").unwrap();
    gate.enable_feature("dark_mode").unwrap(); // already on: no change
    gate.disable_feature("dark_mode").unwrap();
    assert!(gate.disable_feature("dark_mode").is_err()); // refused: no change
    let mut next = gate.config();
    next.slo_threshold = 0.9;
    gate.swap_config(next).unwrap();
    gate.rollback("drill").unwrap();
    assert!(gate.rollback("again").is_err()); // nothing to roll back: no change

    let changes = gate.changes_since(0);
    let kinds: Vec<_> = changes.iter().map(|c| c.kind()).collect();
    assert_eq!(
        kinds,
        [
            ChangeKind::Promotion,
            ChangeKind::Flags,
            ChangeKind::Flags,
            ChangeKind::Config,
            ChangeKind::Rollback
        ]
    );
    let sequences: Vec<_> = changes.iter().map(|c| c.sequence).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5]);
    assert_eq!(gate.change_count(), 5);
    assert_eq!(
        (changes[0].from, changes[0].to),
        (Environment::Production, canary(5.0))
    );
    assert_eq!(changes[1].flags.enabled, ["dark_mode"]);
    assert_eq!(changes[2].flags.disabled, ["dark_mode"]);
    let rollback = changes[4].rollback.as_ref().expect("the rollback's event");
    assert_eq!(
        (rollback.trigger, rollback.reason.as_str()),
        (RollbackTrigger::Manual, "drill")
    );
    assert_eq!(changes[4].to, Environment::Production);
    assert!(changes[4].stage > changes[3].stage);
    assert!(changes.iter().all(|c| c.origin == ChangeOrigin::ThisGate));
}

#[test]
fn a_swap_that_moves_a_flag_between_the_lists_is_a_flag_change() {
    // Every request of a 50 % canary or of Production: the stable version's requests get the
    // graduated flags, the new version's the release flags too.
    for environment in [canary(50.0), Environment::Production] {
        let config = PromotionConfig {
            environment,
            feature_flags: vec!["f".into()],
            ..Default::default()
        };
        let gate = gate(config.clone());
        let subscription = gate.subscribe();
        let graduated = PromotionConfig {
            feature_flags: vec![],
            graduated_flags: vec!["f".into()],
            ..config.clone()
        };
        let (f, none): (&[&str], &[&str]) = (&["f"], &[]);
        for (next, enabled, disabled) in [(graduated, f, none), (config, none, f)] {
            gate.swap_config(next).unwrap();
            let change = subscription.try_recv().expect("the swap's change");
            assert_eq!(
                change.kind(),
                ChangeKind::Flags,
                "{environment}: {change:?}"
            );
            assert_eq!(change.flags.enabled, enabled, "{environment}");
            assert_eq!(change.flags.disabled, disabled, "{environment}");
        }
        assert_eq!(gate.change_count(), 2);
    }
}

#[test]
fn a_promotion_to_production_lists_the_flags_it_graduates_as_enabled() {
    let (gate, _clock) = gate_for_moves(PromotionConfig {
        environment: canary(10.0),
        feature_flags: vec!["f".into()],
        graduated_flags: vec!["old".into()],
        ..Default::default()
    });
    // The judge's min_samples, healthy, from both cohorts.
    for canary in [true, false] {
        for _ in 0..100 {
            gate.record_for(gate.stage(), canary, true, Duration::from_millis(5));
        }
    }
    gate.promote(Environment::Production).unwrap();
    let changes = gate.changes_since(0);
    let change = changes.last().expect("the promotion's change");
    assert_eq!(change.kind(), ChangeKind::Promotion, "{change:?}");
    assert_eq!(
        change.flags.enabled,
        ["f"],
        "graduated: the stable version's requests get it"
    );
    assert!(change.flags.disabled.is_empty(), "{change:?}");
    assert_eq!(gate.config().graduated_flags, ["old", "f"]);
    // Promoted, the release is stable: nothing to roll back, no change.
    assert!(gate.rollback("too late").is_err());
    assert_eq!(gate.change_count(), u64::try_from(changes.len()).unwrap());
}

#[test]
fn a_subscriber_receives_the_judges_rollback_with_its_evidence() {
    let gate = gate(PromotionConfig {
        environment: canary(50.0),
        feature_flags: vec!["checkout_v2".into()],
        ..Default::default()
    });
    let subscription = gate.subscribe();
    let watcher = std::thread::spawn(move || {
        let change = subscription.recv_timeout(Duration::from_secs(60));
        (change, subscription.missed())
    });
    fail_the_canary(&gate);
    let (change, missed) = watcher.join().unwrap();
    let change = change.expect("the rollback reached the subscriber");
    assert_eq!(missed, 0);
    assert_eq!(change.kind(), ChangeKind::Rollback);
    assert_eq!(change.from, canary(50.0));
    assert_eq!(change.flags.disabled, ["checkout_v2"]);
    let event = change.rollback.as_ref().unwrap();
    assert_eq!(event.trigger, RollbackTrigger::Automatic);
    let evidence = event
        .evidence
        .as_ref()
        .expect("an automatic rollback's evidence");
    assert!(evidence.fired().any(|f| f.rule != Rule::NoData));
    assert_eq!(gate.changes_since(0).len(), 1);
}
