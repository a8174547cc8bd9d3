//! Routing's promises as properties: determinism, the monotone ramp, the split, the ends of
//! the range and independent salts. All of them through the manager, as a host sees it.

mod common;

use std::fmt::Write as _;

use promotion_gates::{Environment, PromotionConfig};
use proptest::prelude::*;

use common::{canary, canary_gate, gate};

/// Ids per split measurement: `user-0` .. `user-199999`.
const SAMPLE: usize = 200_000;

/// Salts a config accepts: 1 to 128 bytes, no whitespace, control, format or invisible characters.
fn salt() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_./:é☕-]{1,40}"
}

/// Any request id: empty, short, around SHA-256 block edges, or long; any bytes.
fn request_id() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..300)
}

/// How many of `user-0` .. `user-{SAMPLE - 1}` satisfy `pred`.
fn count_users(mut pred: impl FnMut(&str) -> bool) -> usize {
    let mut id = String::new();
    (0..SAMPLE)
        .filter(|i| {
            id.clear();
            let _ = write!(id, "user-{i}");
            pred(&id)
        })
        .count()
}

/// Asserts that `count` of the sample is `percent` % within `tolerance` percentage points.
fn assert_share(count: usize, percent: f64, tolerance: f64) {
    let share = count as f64 * 100.0 / SAMPLE as f64;
    assert!(
        (share - percent).abs() <= tolerance,
        "{count} of {SAMPLE} is {share}%, expected {percent}% +/- {tolerance}"
    );
}

proptest! {
    #[test]
    fn the_same_id_gets_the_same_decision(
        salt in salt(),
        id in request_id(),
        percent in 0.0f64..=100.0,
    ) {
        let first = canary_gate(&salt, percent);
        let second = canary_gate(&salt, percent);
        let decision = first.route_request_bytes(&id);
        prop_assert_eq!(decision, first.route_request_bytes(&id));
        prop_assert_eq!(decision, second.route_request_bytes(&id));
        if let Ok(text) = std::str::from_utf8(&id) {
            prop_assert_eq!(decision, first.route_request(text));
        }
    }

    #[test]
    fn raising_the_percentage_keeps_every_canary_in_the_canary(
        salt in salt(),
        ids in proptest::collection::vec(request_id(), 1..32),
        a in 0.0f64..=100.0,
        b in 0.0f64..=100.0,
    ) {
        let (low, high) = (a.min(b), a.max(b));
        let manager = canary_gate(&salt, low);
        let at_low: Vec<bool> = ids.iter().map(|id| manager.route_request_bytes(id).is_canary).collect();

        // Ramp up by config swap (an operator's override, never refused by the judge) ...
        let mut config = manager.config();
        config.environment = canary(high);
        manager.swap_config(config).expect("a valid config");
        for (id, was_canary) in ids.iter().zip(&at_low) {
            let decision = manager.route_request_bytes(id);
            prop_assert!(!was_canary || decision.is_canary, "left the canary at {}%: {}", high, decision.reason);
        }

        // ... and back down by promotion (ramping down is never gated): the same users again.
        if high > low {
            manager.promote(canary(low)).expect("ramping down is always allowed");
        }
        let again: Vec<bool> = ids.iter().map(|id| manager.route_request_bytes(id).is_canary).collect();
        prop_assert_eq!(again, at_low);
    }

    #[test]
    fn zero_percent_routes_nobody_and_100_percent_everybody(salt in salt(), id in request_id()) {
        for (environment, expected) in [
            (canary(0.0), false),
            (Environment::Production, false),
            (canary(100.0), true),
            (Environment::Staging, true),
        ] {
            let manager = gate(PromotionConfig {
                environment,
                salt: Some(salt.clone()),
                ..Default::default()
            });
            let decision = manager.route_request_bytes(&id);
            prop_assert_eq!(decision.is_canary, expected, "{}: {}", environment, decision.reason);
        }
    }
}

#[test]
fn a_quarter_of_users_go_to_a_25_percent_canary() {
    assert_canary_share("default", 25.0, 0.5);
}

#[test]
fn a_thousandth_of_users_go_to_a_0_1_percent_canary() {
    assert_canary_share("checkout", 0.1, 0.05);
}

/// Asserts that a canary at `percent` takes `percent` % of the sample within `tolerance`.
fn assert_canary_share(salt: &str, percent: f64, tolerance: f64) {
    let manager = canary_gate(salt, percent);
    let canaries = count_users(|id| manager.route_request(id).is_canary);
    assert_share(canaries, percent, tolerance);
}

#[test]
fn two_salts_pick_independent_users() {
    let first = canary_gate("checkout", 10.0);
    let second = canary_gate("search", 10.0);
    let both =
        count_users(|id| first.route_request(id).is_canary && second.route_request(id).is_canary);
    // Independent 10 % samples overlap in 1 % of users.
    assert_share(both, 1.0, 0.3);
}
