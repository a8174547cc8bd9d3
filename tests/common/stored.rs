//! Helpers of the state store tests (SQLite and etcd): polling for another gate's write,
//! failing a canary, the race between a rollback and a ramp, a store that cannot be written,
//! a release deleted by hand with its history left, and one put back alone to an older version.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a broken expectation is a failed test"
)]

use promotion_gates::{Environment, Error, PromotionGateManager, StoreProblem};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Polls until `done`, for at most 30 s: a bound for correctness, not a measure of speed
/// (`benches/store.rs` measures how fast a change travels), so generous that a loaded machine
/// (CI on two busy cores) does not reach it. It stays below the longest sync interval (a
/// minute), which a test that must tell an asked read from a gate's own tick checks as well.
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not within 30 s: {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Records failures for canary requests (and successes for stable ones) until the gate rolls
/// back by itself.
pub fn fail_the_canary(gate: &PromotionGateManager) {
    for i in 0..100_000 {
        let decision = gate.route_request(&format!("user-{i}"));
        let canary = decision.is_canary;
        gate.record_outcome(&decision, !canary, Duration::from_millis(5));
        if gate.environment() == Environment::Production {
            return;
        }
    }
    panic!("the failing canary was never rolled back");
}

/// Whether any of 2000 probe ids routes to the canary.
pub fn routes_to_canary(gate: &PromotionGateManager) -> bool {
    (0..2000).any(|i| gate.route_request(&format!("probe-{i}")).is_canary)
}

/// Two gates on one store, at Canary{10}: one rolls back while the other ramps down to 5 %, at
/// the same moment. The rollback always lands (a lost race is decided again on the winner's
/// state); the ramp lands when it went first, and after the rollback it is refused (never
/// turned into a new rollout from Production). Both converge on Production with one event.
pub fn race_a_rollback_against_a_ramp(gates: &[PromotionGateManager; 2]) {
    let barrier = Barrier::new(2);
    let (rollback, ramp) = std::thread::scope(|s| {
        let rollback = s.spawn(|| {
            barrier.wait();
            gates[0].rollback("race")
        });
        let ramp = s.spawn(|| {
            barrier.wait();
            gates[1].promote(Environment::Canary {
                traffic_percent: 5.0,
            })
        });
        (rollback.join(), ramp.join())
    });
    assert!(matches!(rollback, Ok(Ok(()))), "{rollback:?}");
    match &ramp {
        Ok(Ok(()) | Err(Error::Promotion(_))) => {}
        Ok(Err(Error::Store(e))) => assert_eq!(e.problem(), StoreProblem::Conflict, "{e}"),
        other => panic!("{other:?}"),
    }
    eventually("both gates converge", || {
        gates[0].environment() == gates[1].environment()
            && gates[0].rollback_history() == gates[1].rollback_history()
    });
    // What a failure needs to be told apart: a rollback overtaken by the ramp (deferred while
    // the store was slow, then dropped: counted where it was made, not stored) or lost.
    let seen = |gate: &PromotionGateManager| {
        let made: u64 = gate.rollback_counts().iter().map(|c| c.count).sum();
        (
            gate.environment(),
            gate.stage(),
            made,
            gate.rollback_history().len(),
        )
    };
    let told = format!(
        "ramp {ramp:?}; (environment, stage, rollbacks made, history) {:?} {:?}",
        seen(&gates[0]),
        seen(&gates[1])
    );
    assert_eq!(gates[1].environment(), Environment::Production, "{told}");
    assert_eq!(gates[0].rollback_history().len(), 1, "{told}");
}

/// On a gate at Canary{10} whose store at `location` cannot be written: routing goes on, a
/// promotion is refused with an error naming the store and changes nothing, a rollback happens
/// at once, and a promotion then waits for that rollback to be written.
pub fn roll_back_while_the_store_is_unavailable(gate: &PromotionGateManager, location: &str) {
    assert!(routes_to_canary(gate));
    let err = gate
        .promote(Environment::Canary {
            traffic_percent: 5.0,
        })
        .unwrap_err();
    let Error::Store(store_err) = &err else {
        panic!("{err}")
    };
    assert_eq!(store_err.problem(), StoreProblem::Unavailable, "{err}");
    assert!(err.to_string().contains(location), "{err}");
    let canary = Environment::Canary {
        traffic_percent: 10.0,
    };
    assert_eq!(gate.environment(), canary);

    gate.rollback("the store is unavailable, the canary is bad")
        .unwrap();
    assert_eq!(gate.environment(), Environment::Production);
    assert!(!routes_to_canary(gate));
    // A write first tries to write the rollback: the store still does not answer.
    let err = gate
        .promote(Environment::Canary {
            traffic_percent: 1.0,
        })
        .unwrap_err();
    let Error::Store(store_err) = &err else {
        panic!("{err}")
    };
    assert_eq!(store_err.problem(), StoreProblem::Unavailable, "{err}");
    assert!(
        err.to_string()
            .contains("is not written yet, and this write waits for it: writing it now failed"),
        "{err}"
    );
    assert_eq!(gate.environment(), Environment::Production);
}

/// Two gates on one store (`open` opens another) with two rollbacks in their history; then
/// `delete_release` deletes the stored release alone, leaving its history (an operator's
/// repair of a release key holding junk): the store is given a gate's state again, its
/// leftover history goes, and every gate, a new one too, reads one state and one history and
/// follows the others' writes. (A first release written over the leftovers clashed with their
/// versions: every read refused the store as not ours, and no gate could open.)
pub fn a_release_deleted_alone_is_written_again_without_its_history(
    open: &dyn Fn() -> PromotionGateManager,
    delete_release: &dyn Fn(),
) {
    let (a, b) = (open(), open());
    let canary = Environment::Canary {
        traffic_percent: 5.0,
    };
    for reason in ["first", "second"] {
        a.promote(canary).unwrap();
        a.rollback(reason).unwrap();
    }
    a.promote(canary).unwrap();
    eventually("b follows a", || {
        b.environment() == canary && b.rollback_history().len() == 2
    });
    delete_release();
    eventually("the gates agree on the store's state again", || {
        a.sync_now();
        b.sync_now();
        a.environment() == b.environment()
            && a.rollback_history() == b.rollback_history()
            && a.rollback_history().is_empty()
    });
    let late = open();
    assert_eq!(late.environment(), a.environment());
    assert!(late.rollback_history().is_empty());
    b.rollback("after the repair").unwrap();
    eventually("a and the late gate follow b's rollback", || {
        a.environment() == Environment::Production
            && late.environment() == Environment::Production
            && a.rollback_history() == b.rollback_history()
    });
}

/// Two gates on one store (`open` opens another); `keep_release` saves the stored release
/// (the first: version 1, Canary{10}) and returns what puts it back alone, leaving the history
/// of the writes since (a backup of the release row or key restored by hand). A promotion and
/// a rollback later (its event stored at version 3), the release is put back: the gates follow
/// it, a gate opened then reads it, and the next writes, a rollback's event at a version the
/// leftover history held, are stored. (The history above the release's version was read
/// with it and refused as not ours: no gate followed the store and none could open it.)
pub fn a_release_put_back_alone_to_an_older_version_is_followed(
    open: &dyn Fn() -> PromotionGateManager,
    keep_release: &dyn Fn() -> Box<dyn FnOnce()>,
) {
    let (a, b) = (open(), open());
    let first = a.environment();
    let put_back = keep_release();
    a.promote(Environment::Canary {
        traffic_percent: 5.0,
    })
    .unwrap();
    a.rollback("bad deploy").unwrap();
    eventually("b follows a", || {
        b.environment() == Environment::Production && b.rollback_history().len() == 1
    });
    put_back();
    let late = open();
    assert_eq!(late.environment(), first);
    assert!(late.rollback_history().is_empty());
    eventually("the gates follow the release put back", || {
        a.sync_now();
        b.sync_now();
        [&a, &b]
            .iter()
            .all(|g| g.environment() == first && g.rollback_history().is_empty())
    });
    b.rollback("after the repair").unwrap();
    eventually("a and the late gate follow b's rollback", || {
        [&a, &late].iter().all(|g| {
            g.environment() == Environment::Production
                && g.rollback_history() == b.rollback_history()
        })
    });
    assert_eq!(b.rollback_history().len(), 1);
    assert_eq!(open().rollback_history(), b.rollback_history());
}
