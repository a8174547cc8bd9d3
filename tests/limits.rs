//! The limits of `promotion_gates::limits`, held through the public API: each refused input
//! names its field and the limit, shows at most a short part of a huge value, and leaves the
//! gate exactly as it was.

mod common;

use promotion_gates::{
    Environment, Error, FlagError, MAX_DOCUMENT_BYTES, MAX_NAME_BYTES, MAX_REASON_BYTES,
    MAX_ROLLBACK_HISTORY_BYTES, MAX_SHOWN_VALUE_BYTES, PromotionConfig, PromotionGateManager,
    RollbackError, TRAFFIC_PERCENT_RESOLUTION,
};

use common::{canary, gate};

/// Longest message a refused huge value may produce: the shown part and some words.
const SHORT_MESSAGE: usize = MAX_SHOWN_VALUE_BYTES + 400;

/// Everything a host can observe of a gate's state, to compare before and after a refused call.
fn state(gate: &PromotionGateManager) -> String {
    format!(
        "{:?} {:?} {:?} {} {:?}",
        gate.config(),
        gate.stage(),
        gate.rollback_history(),
        gate.rollback_events_dropped(),
        gate.route_request("u").enabled_features,
    )
}

fn staging_gate() -> PromotionGateManager {
    gate(PromotionConfig {
        environment: Environment::Staging,
        feature_flags: vec!["new_api".into()],
        ..Default::default()
    })
}

#[test]
fn a_huge_flag_name_is_refused_with_a_short_message_and_changes_nothing() {
    let gate = staging_gate();
    let before = state(&gate);
    let huge = "x".repeat(10 * 1024 * 1024);
    for err in [
        gate.enable_feature(&huge).unwrap_err(),
        gate.disable_feature(&huge).unwrap_err(),
    ] {
        let message = err.to_string();
        assert!(message.len() < SHORT_MESSAGE, "{} bytes", message.len());
        assert!(message.contains("10485760 bytes"), "{message}");
        assert!(message.contains(&MAX_NAME_BYTES.to_string()), "{message}");
        assert!(matches!(err, Error::Flag(FlagError::InvalidName { .. })));
    }
    assert_eq!(state(&gate), before);
}

#[test]
fn a_huge_name_in_a_config_is_refused_naming_its_field() {
    let gate = staging_gate();
    let before = state(&gate);
    let huge = "é".repeat(5 * 1024 * 1024);
    let cases = [
        (
            PromotionConfig {
                gate: huge.clone(),
                ..Default::default()
            },
            "gate",
        ),
        (
            PromotionConfig {
                salt: Some(huge.clone()),
                ..Default::default()
            },
            "salt",
        ),
        (
            PromotionConfig {
                feature_flags: vec!["ok".into(), huge.clone()],
                ..Default::default()
            },
            "feature_flags[1]",
        ),
        (
            PromotionConfig {
                graduated_flags: vec![huge.clone()],
                ..Default::default()
            },
            "graduated_flags[0]",
        ),
    ];
    for (config, field) in cases {
        let Err(Error::Config(err)) = gate.swap_config(config) else {
            panic!("{field}: a huge name must be refused");
        };
        assert_eq!(err.field(), field);
        assert!(
            err.value().ends_with("...(10485760 bytes)"),
            "{}",
            err.value()
        );
        assert!(err.to_string().len() < SHORT_MESSAGE);
        let limit = format!("{MAX_NAME_BYTES} bytes");
        assert!(err.expected().contains(&limit), "{err}");
    }
    assert_eq!(state(&gate), before);
}

#[test]
fn a_name_at_the_limit_is_accepted_one_byte_over_is_not() {
    let gate = staging_gate();
    gate.enable_feature("n".repeat(MAX_NAME_BYTES)).unwrap();
    assert!(gate.enable_feature("n".repeat(MAX_NAME_BYTES + 1)).is_err());
}

#[test]
fn a_rollback_reason_over_the_limit_is_refused_and_changes_nothing() {
    let gate = staging_gate();
    let before = state(&gate);
    let err = gate.rollback("r".repeat(50 * 1024 * 1024)).unwrap_err();
    assert_eq!(
        err,
        Error::Rollback(RollbackError::ReasonTooLong {
            shown: format!(
                "\"{}\"...({} bytes)",
                "r".repeat(MAX_SHOWN_VALUE_BYTES),
                50 * 1024 * 1024
            ),
            bytes: 50 * 1024 * 1024,
            max: MAX_REASON_BYTES
        })
    );
    let message = err.to_string();
    assert!(
        message.contains("reason") && message.contains(&MAX_REASON_BYTES.to_string()),
        "{message}"
    );
    assert!(message.len() < SHORT_MESSAGE);
    assert_eq!(state(&gate), before);
    gate.rollback("r".repeat(MAX_REASON_BYTES)).unwrap();
    assert_eq!(gate.environment(), Environment::Production);
}

#[test]
fn a_document_over_the_limit_is_refused_before_it_is_parsed() {
    let padding = " ".repeat(MAX_DOCUMENT_BYTES);
    let document = format!("{{\"gate\": \"big\"}}{padding}");
    let Err(Error::Config(err)) = PromotionConfig::from_json(&document) else {
        panic!("an over-long document must be refused");
    };
    assert_eq!(err.field(), "document");
    assert!(err.value().contains(&document.len().to_string()), "{err}");
    assert!(
        err.expected().contains(&MAX_DOCUMENT_BYTES.to_string()),
        "{err}"
    );
    assert!(PromotionConfig::parse_json(&document).is_err());
    // Just under the limit it is read.
    let fits = &document[..MAX_DOCUMENT_BYTES];
    assert_eq!(PromotionConfig::from_json(fits).unwrap().gate, "big");
}

#[test]
fn a_huge_value_in_a_json_error_is_cut() {
    let huge = "v".repeat(1024 * 1024);
    let document = format!("{{\"slo_threshold\": \"{huge}\"}}");
    let err = PromotionConfig::from_json(&document).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Json(_)));
    assert!(message.contains("slo_threshold"), "{message}");
    assert!(message.len() < SHORT_MESSAGE, "{} bytes", message.len());
}

#[test]
fn a_percentage_below_the_resolution_is_refused_naming_field_value_and_resolution() {
    let gate = staging_gate();
    let before = state(&gate);
    for tiny in [1e-9, TRAFFIC_PERCENT_RESOLUTION / 4.0, f64::MIN_POSITIVE] {
        let config = PromotionConfig {
            environment: canary(tiny),
            ..Default::default()
        };
        let Err(Error::Config(err)) = gate.swap_config(config) else {
            panic!("{tiny} % routes nobody and must be refused");
        };
        assert_eq!(err.field(), "environment.canary.traffic_percent");
        // The value reads back as the refused number (a long one in scientific notation).
        assert_eq!(err.value().parse::<f64>().unwrap(), tiny, "{err}");
        assert!(err.expected().contains("0.00001"), "{err}");
    }
    assert_eq!(state(&gate), before);
    // 0 is explicit (nobody) and the resolution itself routes one bucket.
    for fine in [0.0, TRAFFIC_PERCENT_RESOLUTION] {
        assert!(canary(fine).validate().is_ok(), "{fine}");
    }
    let err = gate.promote(canary(1e-9)).unwrap_err();
    assert!(matches!(err, Error::Config(_)));
}

#[test]
fn a_share_of_minus_zero_is_taken_as_zero_by_every_write_and_never_shown() {
    let unsigned = |gate: &PromotionGateManager| {
        let Environment::Canary { traffic_percent } =
            gate.route_request("someone").target_environment
        else {
            panic!("not in canary: {}", gate.environment());
        };
        assert_eq!(
            traffic_percent.to_bits(),
            0.0f64.to_bits(),
            "{traffic_percent:?}"
        );
        assert_eq!(gate.environment(), canary(0.0));
        let Environment::Canary { traffic_percent } = gate.config().environment else {
            panic!("not in canary");
        };
        assert!(traffic_percent.is_sign_positive(), "{traffic_percent:?}");
    };
    let config = PromotionConfig {
        environment: canary(-0.0),
        ..Default::default()
    };
    unsigned(&gate(config.clone()));
    let staged = staging_gate();
    staged.swap_config(config).unwrap();
    unsigned(&staged);
    let promoted = gate(PromotionConfig::default());
    promoted.promote(canary(-0.0)).unwrap();
    unsigned(&promoted);
}

#[test]
fn the_history_is_bounded_in_bytes_and_counts_what_it_drops() {
    let gate = gate(PromotionConfig {
        max_rollback_history: 100_000,
        ..Default::default()
    });
    let reason = "r".repeat(MAX_REASON_BYTES);
    let rollbacks = 2 * MAX_ROLLBACK_HISTORY_BYTES / MAX_REASON_BYTES;
    for _ in 0..rollbacks {
        gate.promote(canary(1.0)).unwrap();
        gate.rollback(reason.as_str()).unwrap();
    }
    let history = gate.rollback_history();
    let kept_bytes: usize = history.iter().map(|e| e.reason.len()).sum();
    assert!(kept_bytes <= MAX_ROLLBACK_HISTORY_BYTES, "{kept_bytes}");
    assert!(history.len() < rollbacks);
    assert_eq!(
        history.len() as u64 + gate.rollback_events_dropped(),
        rollbacks as u64
    );
}

#[test]
fn lowering_max_rollback_history_drops_the_oldest_counted_and_raising_it_restores_nothing() {
    let gate = gate(PromotionConfig {
        max_rollback_history: 10,
        ..Default::default()
    });
    for i in 0..10 {
        gate.promote(canary(1.0)).unwrap();
        gate.rollback(format!("r{i}")).unwrap();
    }
    assert_eq!(gate.rollback_events_dropped(), 0);
    let lowered = PromotionConfig {
        max_rollback_history: 3,
        ..gate.config()
    };
    gate.swap_config(lowered).unwrap();
    let reasons = |gate: &PromotionGateManager| -> Vec<String> {
        gate.rollback_history()
            .into_iter()
            .map(|e| e.reason)
            .collect()
    };
    assert_eq!(reasons(&gate), ["r7", "r8", "r9"]);
    assert_eq!(gate.rollback_events_dropped(), 7);
    let raised = PromotionConfig {
        max_rollback_history: 10,
        ..gate.config()
    };
    gate.swap_config(raised).unwrap();
    assert_eq!(reasons(&gate), ["r7", "r8", "r9"]);
    assert_eq!(gate.rollback_events_dropped(), 7);
    // A refused swap (an invalid bound) drops nothing.
    let refused = PromotionConfig {
        max_rollback_history: 0,
        ..gate.config()
    };
    assert!(gate.swap_config(refused).is_err());
    assert_eq!(reasons(&gate).len(), 3);
}
