//! The gate's unit tests: routing, flags, rollbacks, verdicts and the health read.

use std::time::Duration;

use super::*;
use crate::config::canary;
use crate::decision::Cohort;
use crate::error::RollbackError;
use crate::judge::CanaryHealth;
use crate::metrics::Recorded;
use crate::slo::SloConfig;

#[test]
fn a_canary_failing_every_request_rolls_back_at_its_seventh_failure() {
    let gate = gate(PromotionConfig {
        environment: canary(100.0),
        ..Default::default()
    });
    let mut failures = 0;
    while gate.environment() != Environment::Production {
        let d = gate.route_request(&format!("u{failures}"));
        gate.record_outcome(&d, false, Duration::from_millis(1));
        failures += 1;
        assert!(failures <= 20, "no rollback after 20 failures");
    }
    assert_eq!(failures, 7); // 0.05^7 < 1e-9: overwhelming against max_error_rate
    let event = &gate.rollback_history()[0];
    assert_eq!(event.trigger, RollbackTrigger::Automatic);
    let evidence = event
        .evidence
        .as_ref()
        .expect("an automatic rollback carries evidence");
    assert_eq!((evidence.canary.requests, evidence.canary.errors), (7, 7));
    assert!(
        evidence
            .fired()
            .any(|f| f.rule == crate::judge::Rule::OverwhelmingErrors)
    );
    assert!(
        event.reason.contains("overwhelming_errors"),
        "{}",
        event.reason
    );
}

#[test]
fn a_new_salt_starts_a_new_stage() {
    let gate = gate(PromotionConfig {
        environment: canary(5.0),
        ..Default::default()
    });
    let stage = gate.stage();
    gate.swap_config(PromotionConfig {
        environment: canary(5.0),
        salt: Some("other".into()),
        ..Default::default()
    })
    .unwrap();
    assert!(gate.stage() > stage);
}

#[test]
fn a_swap_to_a_share_of_the_same_buckets_keeps_the_stage() {
    let gate = gate(PromotionConfig {
        environment: canary(10.000001),
        ..Default::default()
    });
    let stage = gate.stage();
    let swap_to = |traffic_percent: f64| {
        gate.swap_config(PromotionConfig {
            environment: canary(traffic_percent),
            ..Default::default()
        })
        .unwrap();
    };
    // Both 1 000 000 buckets of 10 000 000: every request keeps its version.
    swap_to(10.0000012);
    assert_eq!(gate.stage(), stage);
    assert_eq!(
        gate.environment(),
        canary(10.0000012),
        "the config is swapped"
    );
    // One bucket more is another split.
    swap_to(10.00001);
    assert!(gate.stage() > stage);
}

/// What a hot reload reads, in this order: the change count, then the config, edited
/// (`wide_layout` turned on).
fn read_to_edit(gate: &PromotionGateManager) -> (u64, PromotionConfig) {
    let seen = gate.change_count();
    let mut config = gate.config();
    config.feature_flags.push("wide_layout".into());
    (seen, config)
}

/// `swap_config_from(seen, config)` refused as changed since `seen`, by `now` changes.
fn refused_as_changed(
    gate: &PromotionGateManager,
    (seen, config): (u64, PromotionConfig),
) -> Result<(), String> {
    match gate.swap_config_from(seen, config) {
        Err(Error::Swap(crate::SwapError::GateChanged { seen: s, now }))
            if s == seen && now == gate.change_count() && now > seen =>
        {
            Ok(())
        }
        other => Err(format!("{other:?}")),
    }
}

#[test]
fn a_config_read_before_a_rollback_is_not_swapped_back_in() {
    let gate = gate(PromotionConfig {
        environment: canary(5.0),
        ..Default::default()
    });
    let read = read_to_edit(&gate);
    gate.rollback("a bad build").unwrap();
    refused_as_changed(&gate, read).unwrap();
    assert_eq!(gate.environment(), Environment::Production);
    assert!(!gate.is_feature_enabled("wide_layout"));
}

/// A kill switch begins no stage (the token of the swap was once the stage, which let this
/// swap turn the flag on again).
#[test]
fn a_config_read_before_a_kill_switch_does_not_turn_the_flag_on_again() {
    let gate = gate(PromotionConfig::default());
    gate.enable_feature("dark_mode").unwrap();
    let read = read_to_edit(&gate);
    let stage = gate.stage();
    gate.disable_feature("dark_mode").unwrap();
    assert_eq!(gate.stage(), stage);
    refused_as_changed(&gate, read).unwrap();
    assert!(!gate.is_feature_enabled("dark_mode"));
    assert!(!gate.is_feature_enabled("wide_layout"));
    // Read again, it is swapped over the disable.
    let (seen, config) = read_to_edit(&gate);
    gate.swap_config_from(seen, config).unwrap();
    assert!(gate.is_feature_enabled("wide_layout") && !gate.is_feature_enabled("dark_mode"));
    assert_eq!(gate.change_count(), seen + 1);
}

#[test]
fn two_hot_reloads_from_one_read_do_not_overwrite_each_other() {
    let gate = gate(PromotionConfig::default());
    let (seen, mut first) = read_to_edit(&gate);
    let mut second = first.clone();
    first.feature_flags.push("first".into());
    second.feature_flags.push("second".into());
    gate.swap_config_from(seen, first).unwrap();
    refused_as_changed(&gate, (seen, second)).unwrap();
    assert!(gate.is_feature_enabled("first") && !gate.is_feature_enabled("second"));
}

/// An SLO swap changes no config, yet it is a change of the gate: a reload that read the
/// count before it is refused too (read again, it is made).
#[test]
fn an_slo_swap_counts_as_a_change() {
    let gate = gate(PromotionConfig::default());
    let read = read_to_edit(&gate);
    let config = gate.config();
    gate.swap_slo(SloConfig::default()).unwrap();
    assert_eq!(gate.config(), config);
    refused_as_changed(&gate, read).unwrap();
    let (seen, config) = read_to_edit(&gate);
    gate.swap_config_from(seen, config).unwrap();
    assert!(gate.is_feature_enabled("wide_layout"));
}

/// A config of another environment is swapped from the current count like any other, and a
/// refused one (invalid, renamed) is refused for what it is, not for the count.
#[test]
fn a_swap_from_the_current_count_is_a_swap() {
    let gate = gate(PromotionConfig::default());
    let seen = gate.change_count();
    let renamed = PromotionConfig {
        gate: "other".into(),
        ..gate.config()
    };
    let err = gate.swap_config_from(seen, renamed).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    let config = PromotionConfig {
        environment: canary(5.0),
        ..gate.config()
    };
    gate.swap_config_from(seen, config).unwrap();
    assert_eq!(gate.environment(), canary(5.0));
}

/// A gate on the system clock whose latency rules need no warm-up, so that a promotion can
/// rest on a few thousand samples recorded at once.
fn gate(config: PromotionConfig) -> PromotionGateManager {
    let slo = SloConfig {
        warm_up: Duration::ZERO,
        ..Default::default()
    };
    PromotionGateManager::new(config, SloAdmissionController::new(slo).unwrap()).unwrap()
}

/// Clean canary requests, beside as many clean stable ones, that show a 50 % canary within
/// the tolerated limit at the defaults: with no error in either, the bound at every look at
/// `promotion_significance` 0.05 shows the canary below 0.05 points from about 23 500.
pub(super) const PROMOTABLE: u64 = 24_000;

/// Records healthy outcomes until the new version has `n` in this stage.
fn feed_healthy(gate: &PromotionGateManager, n: u64) {
    let (mut seen, mut i) = (0, 0u64);
    while seen < n {
        let d = gate.route_request(&format!("feed-{i}"));
        i += 1;
        gate.record_outcome(&d, true, Duration::from_millis(3));
        seen += u64::from(d.is_canary);
    }
}

#[test]
fn manager_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PromotionGateManager>();
}

#[test]
fn routing_follows_the_published_snapshot() {
    let gate = gate(PromotionConfig::default());
    assert!(!gate.route_request("a").is_canary);
    gate.promote(canary(100.0)).unwrap();
    assert!(gate.route_request("a").is_canary);
    gate.promote(canary(0.0)).unwrap();
    assert!(!gate.route_request("a").is_canary);
}

#[test]
fn flags_per_environment_and_cohort() {
    let gate = gate(PromotionConfig {
        environment: canary(50.0),
        feature_flags: vec!["new".into()],
        graduated_flags: vec!["old".into()],
        ..Default::default()
    });
    let (mut seen_canary, mut seen_stable) = (false, false);
    for i in 0..200 {
        let d = gate.route_request(&format!("user-{i}"));
        let names: Vec<_> = d.enabled_features.iter().collect();
        if d.is_canary {
            seen_canary = true;
            assert_eq!(names, ["new", "old"]);
        } else {
            seen_stable = true;
            assert_eq!(names, ["old"]);
        }
    }
    assert!(seen_canary && seen_stable);
    // Both cohorts' thousands of clean outcomes show the canary not worse than stable.
    feed_healthy(&gate, PROMOTABLE);
    gate.promote(Environment::Staging).unwrap();
    assert_eq!(gate.route_request("x").enabled_features.len(), 2);
    feed_healthy(&gate, 200);
    gate.promote(Environment::Production).unwrap();
    let d = gate.route_request("x");
    assert!(!d.is_canary);
    assert_eq!(
        d.enabled_features.iter().collect::<Vec<_>>(),
        ["new", "old"]
    );
    assert_eq!(gate.config().graduated_flags, ["old", "new"]);
    assert!(gate.config().feature_flags.is_empty());
}

#[test]
fn a_swap_tells_each_flag_it_turns_on_or_off_as_enable_and_disable_feature_do() {
    use crate::telemetry::log_lines::LogLines;
    let config = PromotionConfig {
        environment: canary(50.0),
        feature_flags: vec!["a".into(), "b".into()],
        graduated_flags: vec!["g".into()],
        ..Default::default()
    };
    let flag_lines = |lines: &LogLines| -> Vec<String> {
        let lines = lines.lines();
        lines
            .into_iter()
            .filter(|l| l.contains("Feature flag"))
            .collect()
    };
    // `a` off, `c` on; `g` moved from the graduated flags to the release ones is off for the
    // stable version's requests (the new version's keep it), told as a flag turned off.
    let swapped = gate(config.clone());
    let lines = LogLines::default();
    lines.during(|| {
        swapped
            .swap_config(PromotionConfig {
                feature_flags: vec!["b".into(), "g".into(), "c".into()],
                graduated_flags: vec![],
                ..config.clone()
            })
            .unwrap()
    });
    let by_calls = gate(config.clone());
    let called = LogLines::default();
    called.during(|| {
        by_calls.disable_feature("a").unwrap();
        by_calls.disable_feature("g").unwrap();
        by_calls.enable_feature("c").unwrap();
    });
    assert_eq!(flag_lines(&lines), flag_lines(&called));
    assert_eq!(flag_lines(&lines).len(), 3, "{:#?}", lines.lines());
    // A swap that keeps every flag on or off tells none.
    let lines = LogLines::default();
    lines.during(|| swapped.swap_config(swapped.config()).unwrap());
    assert!(flag_lines(&lines).is_empty(), "{:#?}", lines.lines());
}

/// The flags the requests of each version get from `gate`: (stable, canary).
fn flags_seen(gate: &PromotionGateManager) -> (Vec<String>, Vec<String>) {
    let (mut stable, mut canary) = (None, None);
    for i in 0..200 {
        let d = gate.route_request(&format!("user-{i}"));
        let names = d.enabled_features.iter().map(str::to_string).collect();
        *if d.is_canary {
            &mut canary
        } else {
            &mut stable
        } = Some(names);
    }
    (stable.unwrap_or_default(), canary.unwrap_or_default())
}

#[test]
fn a_swap_that_moves_a_flag_between_the_lists_is_told_and_staged_as_a_flag_write() {
    use crate::telemetry::log_lines::LogLines;
    let config = PromotionConfig {
        environment: canary(50.0),
        feature_flags: vec!["f".into()],
        graduated_flags: vec!["g".into()],
        ..Default::default()
    };
    let last = |gate: &PromotionGateManager| gate.changes_since(gate.change_count() - 1);
    // Graduated by the swap: the stable version's requests get `f` mid-stage, as a flag turned
    // on by `enable_feature` reaches requests that did not have it, and it is told as one.
    let swapped = gate(config.clone());
    assert_eq!(flags_seen(&swapped).0, ["g"]);
    let stage = swapped.stage();
    let lines = LogLines::default();
    lines.during(|| {
        swapped
            .swap_config(PromotionConfig {
                feature_flags: vec![],
                graduated_flags: vec!["g".into(), "f".into()],
                ..config.clone()
            })
            .unwrap()
    });
    assert_eq!(flags_seen(&swapped).0, ["f", "g"]);
    assert!(
        swapped.stage() > stage,
        "the stable cohort judged saw other flags"
    );
    let change = &last(&swapped)[0];
    assert_eq!(change.kind(), crate::ChangeKind::Flags);
    assert_eq!(
        (&change.flags.enabled[..], &change.flags.disabled[..]),
        (&["f".to_string()][..], &[][..])
    );
    let told = lines.lines();
    assert!(
        told.iter().any(|l| l.contains("Feature flag enabled: f")),
        "{told:#?}"
    );
    // The flag write that turns a flag on is reported the same way.
    let written = gate(PromotionConfig {
        feature_flags: vec![],
        ..config.clone()
    });
    let stage = written.stage();
    written.enable_feature("f").unwrap();
    assert!(written.stage() > stage);
    let by_write = &last(&written)[0];
    assert_eq!(
        (by_write.kind(), &by_write.flags),
        (change.kind(), &change.flags)
    );
    // Moved back: the stable version's requests lose it, a flag turned off (the stage goes on,
    // as after `disable_feature`); the new version's keep it.
    let stage = swapped.stage();
    swapped.swap_config(config.clone()).unwrap();
    assert_eq!(
        flags_seen(&swapped),
        (vec!["g".into()], vec!["f".into(), "g".into()])
    );
    assert_eq!(swapped.stage(), stage);
    let change = &last(&swapped)[0];
    assert_eq!(change.kind(), crate::ChangeKind::Flags);
    assert_eq!(
        (&change.flags.enabled[..], &change.flags.disabled[..]),
        (&[][..], &["f".to_string()][..])
    );
    assert!(swapped.is_feature_enabled("f"));
}

#[test]
fn a_flag_graduated_by_a_swap_judges_the_stage_it_ends_first() {
    // A canary failing with release flag `f`, not yet judged so; then a swap that graduates
    // `f` (the stable version's requests would get it).
    let quiet = PromotionConfig {
        environment: canary(50.0),
        feature_flags: vec!["f".into()],
        auto_rollback_enabled: false,
        ..Default::default()
    };
    let gate = still_gate(quiet.clone());
    record_canary(&gate, 50, false);
    let loud = PromotionConfig {
        auto_rollback_enabled: true,
        ..quiet
    };
    gate.swap_config(loud.clone()).unwrap();
    let stage = gate.stage();
    let err = gate
        .swap_config(PromotionConfig {
            feature_flags: vec![],
            graduated_flags: vec!["f".into()],
            ..loud
        })
        .unwrap_err();
    assert!(
        matches!(&err, Error::Promotion(crate::PromotionError::SloNotMet { evidence }) if evidence.contains("before this write ended the stage")),
        "{err}"
    );
    assert_eq!(gate.environment(), Environment::Production);
    assert!(gate.stage() > stage);
    assert!(!gate.is_feature_enabled("f"), "{:?}", gate.config());
    let history = gate.rollback_history();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].trigger, RollbackTrigger::Automatic);
}

#[test]
fn a_flag_graduated_by_a_swap_in_staging_keeps_the_stage_and_is_told() {
    // Every request of Staging goes to the new version, which sees release flag `f` already:
    // graduated, it changes the flags of no request judged (no stable cohort is), so the
    // stage goes on, unjudged; only the stable version's requests (forced ones) get it.
    let config = PromotionConfig {
        environment: Environment::Staging,
        feature_flags: vec!["f".into()],
        ..Default::default()
    };
    let gate = still_gate(config.clone());
    let changes = gate.subscribe();
    let stage = gate.stage();
    gate.swap_config(PromotionConfig {
        feature_flags: vec![],
        graduated_flags: vec!["f".into()],
        ..config
    })
    .unwrap();
    assert_eq!(gate.stage(), stage);
    assert_eq!(gate.environment(), Environment::Staging);
    let change = changes.try_recv().expect("the swap's change");
    assert_eq!(change.kind(), crate::ChangeKind::Flags, "{change:?}");
    assert_eq!(change.flags.enabled, ["f"]);
    assert!(change.flags.disabled.is_empty());
    assert_eq!(change.stage, stage);
    // `f` is the stable version's from the swap on: a rollback of the release keeps it.
    gate.rollback("a bad build").unwrap();
    assert_eq!(gate.environment(), Environment::Production);
    assert!(gate.is_feature_enabled("f"), "{:?}", gate.config());
    assert_eq!(gate.config().graduated_flags, ["f"]);
    let change = changes.try_recv().expect("the rollback's change");
    assert!(change.flags.disabled.is_empty(), "{change:?}");
}

#[test]
fn a_rollback_judged_in_staging_before_a_swap_graduated_a_release_flag_keeps_it() {
    // The judge condemned the Staging stage; a swap graduated release flag `f` (the stage
    // kept) before the rollback was made: it keeps `f`, as a waiting one written over such a
    // swap from the store does (`release::rolled_back_under`).
    let config = PromotionConfig {
        environment: Environment::Staging,
        feature_flags: vec!["f".into(), "g".into()],
        ..Default::default()
    };
    let gate = still_gate(config.clone());
    let stage = gate.stage();
    let verdict = failing_in(stage, Environment::Staging);
    gate.swap_config(PromotionConfig {
        feature_flags: vec!["g".into()],
        graduated_flags: vec!["f".into()],
        ..config
    })
    .unwrap();
    assert_eq!(gate.stage(), stage);
    gate.act_on_recording(&verdict);
    assert_eq!(gate.environment(), Environment::Production);
    assert!(gate.is_feature_enabled("f"), "{:?}", gate.config());
    assert!(!gate.is_feature_enabled("g"), "{:?}", gate.config());
    assert_eq!(gate.rollback_history().len(), 1);
}

#[test]
fn enabling_a_flag_beyond_max_flags_is_refused_naming_the_count() {
    let full = PromotionConfig {
        feature_flags: (0..crate::MAX_FLAGS).map(|i| format!("f{i}")).collect(),
        ..Default::default()
    };
    let gate = gate(full.clone());
    let Err(Error::Config(err)) = gate.enable_feature("one_more") else {
        panic!("a flag beyond MAX_FLAGS was enabled");
    };
    assert_eq!(err.field(), "feature_flags");
    assert!(err.to_string().contains("10001 flags"), "{err}");
    assert!(!gate.is_feature_enabled("one_more"));
    assert_eq!(gate.config().feature_flags, full.feature_flags);
    // One that is on already is no write at all.
    gate.enable_feature("f0").unwrap();
}

#[test]
fn invalid_moves_change_nothing() {
    let gate = gate(PromotionConfig::default());
    let before = gate.shared.current.load().route.generation;
    assert!(gate.promote(Environment::Staging).is_err());
    assert!(gate.promote(canary(f64::NAN)).is_err());
    assert!(gate.promote(Environment::Production).is_err());
    assert!(gate.rollback("x").is_err());
    assert!(gate.enable_feature("").is_err());
    assert!(gate.disable_feature("never-on").is_err());
    assert!(
        gate.swap_config(PromotionConfig {
            slo_threshold: 9.0,
            ..Default::default()
        })
        .is_err()
    );
    assert_eq!(gate.shared.current.load().route.generation, before);
    assert!(gate.rollback_history().is_empty());
}

#[test]
fn rollback_resets_and_records() {
    let gate = gate(PromotionConfig {
        environment: canary(25.0),
        feature_flags: vec!["a".into()],
        graduated_flags: vec!["g".into()],
        max_rollback_history: 2,
        ..Default::default()
    });
    let stage = gate.stage();
    gate.rollback("first").unwrap();
    assert_eq!(gate.environment(), Environment::Production);
    assert!(gate.stage() > stage);
    assert!(!gate.is_feature_enabled("a") && gate.is_feature_enabled("g"));
    for reason in ["second", "third"] {
        gate.promote(canary(5.0)).unwrap();
        gate.rollback(reason).unwrap();
    }
    let reasons: Vec<_> = gate
        .rollback_history()
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert_eq!(reasons, ["second", "third"]);
    assert!(matches!(
        gate.rollback(" "),
        Err(Error::Rollback(RollbackError::BlankReason { .. }))
    ));
}

#[test]
fn a_blank_reason_is_refused_naming_reason_and_showing_it() {
    let gate = gate(PromotionConfig {
        environment: canary(25.0),
        ..Default::default()
    });
    let stage = gate.stage();
    for (reason, shown) in [
        ("", r#""""#),
        ("   ", r#""   ""#),
        ("\t\n", r#""\t\n""#),
        ("\u{200B}", r#""\u{200b}""#),
        ("\u{3164}", r#""\u{3164}""#),
        (" \u{FE0F}\u{2800} ", r#"" \u{fe0f}\u{2800} ""#),
    ] {
        let err = gate.rollback(reason).unwrap_err();
        assert_eq!(
            err,
            Error::Rollback(RollbackError::BlankReason {
                shown: shown.to_string()
            })
        );
        assert!(
            err.to_string()
                .starts_with(&format!("invalid reason = {shown}: ")),
            "{err}"
        );
    }
    let long = "x".repeat(5000);
    let err = gate.rollback(long).unwrap_err();
    let shown = format!(
        "\"{}\"...(5000 bytes)",
        "x".repeat(crate::MAX_SHOWN_VALUE_BYTES)
    );
    assert_eq!(
        err.to_string(),
        format!("invalid reason = {shown}: at most 4096 bytes (MAX_REASON_BYTES)")
    );
    assert_eq!(gate.environment(), canary(25.0));
    assert_eq!(gate.stage(), stage);
    assert!(gate.rollback_history().is_empty());
    // One visible character is enough, among invisible ones.
    gate.rollback("\u{200B}x\u{3164}").unwrap();
    assert_eq!(gate.rollback_history()[0].reason, "\u{200B}x\u{3164}");
}

/// A verdict on `stage` of a Canary{5} whose every request failed: a rollback.
fn failing(stage: StageId) -> Verdict {
    failing_in(stage, canary(5.0))
}

/// A verdict on `stage` of a canary in `environment` whose every request failed.
fn failing_in(stage: StageId, environment: Environment) -> Verdict {
    use crate::judge::Policy;
    use crate::judge::tests::judge_cohorts;
    use crate::metrics::tests_support::cohort;
    let slo = SloConfig::default();
    let policy = Policy::new(&slo, 0.95);
    let (subject, baseline) = (cohort(1000, 1000, 900, 900), cohort(1000, 0, 900, 900));
    Verdict::new(judge_cohorts(
        stage,
        environment,
        &subject,
        &baseline,
        Default::default(),
        policy,
    ))
}

#[test]
fn a_verdict_applies_only_to_the_stage_it_judged() {
    let gate = gate(PromotionConfig {
        environment: canary(5.0),
        ..Default::default()
    });
    let old = gate.stage();
    gate.promote(canary(1.0)).unwrap();
    // A stage the last write did not end (that is `a_verdict_left_after_a_write_published_
    // is_made_over_it`): two writes ago.
    gate.enable_feature("x").unwrap();
    gate.shared
        .apply_verdict(&mut gate.lock_writer(), &failing(old));
    assert_eq!(gate.environment(), canary(1.0));
    assert!(gate.rollback_history().is_empty());
    gate.shared
        .apply_verdict(&mut gate.lock_writer(), &failing(gate.stage()));
    assert_eq!(gate.environment(), Environment::Production);
    assert_eq!(
        gate.rollback_history()[0].trigger,
        RollbackTrigger::Automatic
    );
}

/// Counts the warnings logged on the thread it is the default subscriber of.
#[derive(Default)]
struct Warnings(std::sync::atomic::AtomicU64);

impl tracing::Subscriber for Warnings {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The warnings `f` logs on this thread.
fn warnings_of(f: impl FnOnce()) -> u64 {
    // A call site first reached on another thread while one subscriber alone is registered is
    // cached as never wanted; with a second one registered for the run, each is asked (as
    // tests/common/log_lines.rs does).
    static SECOND: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    SECOND.get_or_init(|| tracing::Dispatch::new(Warnings::default()));
    let warnings = Arc::new(Warnings::default());
    tracing::subscriber::with_default(warnings.clone(), f);
    warnings.0.load(std::sync::atomic::Ordering::SeqCst)
}

#[test]
fn a_verdict_of_a_stage_rolled_back_is_no_warning_one_of_a_stage_another_write_ended_is() {
    for manual in [false, true] {
        let gate = gate(PromotionConfig {
            environment: canary(5.0),
            ..Default::default()
        });
        let stage = gate.stage();
        if manual {
            gate.rollback("seen by hand").unwrap();
        } else {
            gate.shared
                .apply_verdict(&mut gate.lock_writer(), &failing(stage));
        }
        assert_eq!(gate.environment(), Environment::Production);
        // Another verdict of the stage rolled back: the normal case, no warning.
        let warned = warnings_of(|| {
            gate.shared
                .apply_verdict(&mut gate.lock_writer(), &failing(stage))
        });
        assert_eq!(warned, 0, "manual: {manual}");
    }
    // A stage other writes ended, the gate two stages on: the verdict is dropped, with a
    // warning. (Of the stage the last write ended, it is made over that write.)
    let gate = gate(PromotionConfig {
        environment: canary(5.0),
        ..Default::default()
    });
    let stage = gate.stage();
    gate.promote(canary(1.0)).unwrap();
    gate.enable_feature("x").unwrap();
    let warned = warnings_of(|| {
        gate.shared
            .apply_verdict(&mut gate.lock_writer(), &failing(stage))
    });
    assert_eq!(warned, 1);
}

/// A gate on a clock that stands still: the record path evaluates once (at the first record)
/// and never again, so only the calls of a test judge.
fn still_gate(config: PromotionConfig) -> PromotionGateManager {
    PromotionGateManager::with_clock(
        config,
        SloAdmissionController::new(SloConfig::default()).unwrap(),
        Arc::new(crate::ManualClock::new()),
    )
    .unwrap()
}

/// A gate in `environment` that never rolls back by itself, on a clock the test moves: what
/// the judge finds is read, and nothing acts on it.
fn judged_gate(environment: Environment) -> (PromotionGateManager, Arc<crate::ManualClock>) {
    judged_gate_on(environment, None)
}

/// [`judged_gate`] on `store`.
fn judged_gate_on(
    environment: Environment,
    store: Option<crate::store::StoreConfig>,
) -> (PromotionGateManager, Arc<crate::ManualClock>) {
    let clock = Arc::new(crate::ManualClock::new());
    let config = PromotionConfig {
        environment,
        auto_rollback_enabled: false,
        store,
        ..Default::default()
    };
    let slo = SloAdmissionController::new(SloConfig::default()).unwrap();
    let gate = PromotionGateManager::with_clock(config, slo, clock.clone()).unwrap();
    (gate, clock)
}

fn record_canary(gate: &PromotionGateManager, n: u64, success: bool) {
    for _ in 0..n {
        let recorded = gate.record_for(gate.stage(), true, success, Duration::from_millis(2));
        assert_eq!(recorded, Recorded::Counted);
    }
}

fn fired(health: &CanaryHealth) -> Vec<crate::judge::Rule> {
    health.evidence.fired().map(|f| f.rule).collect()
}

/// A Canary{100} gate whose canary failed 50 requests while automatic rollback was off (the
/// record path left it alone), with automatic rollback on again, so the next judge may act.
fn failing_canary_not_yet_judged() -> PromotionGateManager {
    let quiet = PromotionConfig {
        environment: canary(100.0),
        auto_rollback_enabled: false,
        ..Default::default()
    };
    let gate = still_gate(quiet.clone());
    record_canary(&gate, 50, false);
    gate.swap_config(PromotionConfig {
        auto_rollback_enabled: true,
        ..quiet
    })
    .unwrap();
    gate
}

#[test]
fn a_flag_turned_on_judges_the_stage_it_ends_first() {
    for swap in [false, true] {
        // Failing, not yet judged so; then a flag turned on (an operator during the incident).
        let gate = failing_canary_not_yet_judged();
        let stage = gate.stage();
        let err = if swap {
            let mut config = gate.config();
            config.feature_flags.push("fix".into());
            gate.swap_config(config).unwrap_err()
        } else {
            gate.enable_feature("fix").unwrap_err()
        };
        assert!(
            matches!(&err, Error::Promotion(crate::PromotionError::SloNotMet { evidence }) if evidence.contains("before this write ended the stage")),
            "{err}"
        );
        assert_eq!(gate.environment(), Environment::Production, "swap: {swap}");
        assert!(gate.stage() > stage);
        assert!(!gate.is_feature_enabled("fix"));
        let history = gate.rollback_history();
        assert_eq!(history.len(), 1, "{history:?}");
        assert_eq!(history[0].trigger, RollbackTrigger::Automatic);
    }
    // A healthy stage ends with the flag turned on, as before.
    let gate = still_gate(PromotionConfig {
        environment: canary(100.0),
        ..Default::default()
    });
    let stage = gate.stage();
    gate.enable_feature("fix").unwrap();
    assert!(gate.stage() > stage);
}

#[test]
fn a_canary_at_0_percent_is_ramped_up_as_a_new_rollout() {
    // A tester's requests forced to the canary of a 0 % gate (docs/overrides.md): no request
    // is a canary, so the judge never has a canary outcome to approve.
    let gate = still_gate(PromotionConfig::default());
    gate.promote(canary(0.0)).unwrap();
    let stage = gate.stage();
    for _ in 0..200 {
        assert_eq!(
            gate.record_for(stage, false, true, Duration::from_millis(2)),
            Recorded::Counted
        );
    }
    // Without evidence, it goes nowhere but up: Staging and Production need a judged canary.
    for target in [Environment::Staging, Environment::Production] {
        let err = gate.promote(target).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Promotion(crate::PromotionError::InvalidPath { .. })
            ),
            "{err}"
        );
    }
    gate.promote_from(stage, canary(1.0)).unwrap();
    assert_eq!(gate.environment(), canary(1.0));
    assert!(gate.stage() > stage);
    // From there on, a ramp up is gated again.
    let err = gate.promote(canary(5.0)).unwrap_err();
    assert!(err.to_string().contains("not enough data"), "{err}");
}

#[test]
fn a_ramp_down_or_a_swap_that_ends_the_stage_judges_it_first() {
    // Each write ends the stage of a failing canary the judge has not yet acted on: an
    // operator ramping down or reloading during the incident.
    type Write = fn(&PromotionGateManager) -> Result<(), Error>;
    fn swapped(gate: &PromotionGateManager, edit: fn(&mut PromotionConfig)) -> Result<(), Error> {
        let mut config = gate.config();
        edit(&mut config);
        gate.swap_config(config).map(drop)
    }
    let writes: [(&str, Write); 6] = [
        ("ramp down", |gate| gate.promote(canary(10.0))),
        ("ramp down from the stage read", |gate| {
            gate.promote_from(gate.stage(), canary(10.0))
        }),
        ("swap of the split", |gate| {
            swapped(gate, |c| c.environment = canary(10.0))
        }),
        ("swap of the salt", |gate| {
            swapped(gate, |c| c.salt = Some("reshuffled".into()))
        }),
        ("swap to Staging", |gate| {
            swapped(gate, |c| c.environment = Environment::Staging)
        }),
        ("swap to Production", |gate| {
            swapped(gate, |c| c.environment = Environment::Production)
        }),
    ];
    for (name, write) in writes {
        let gate = failing_canary_not_yet_judged();
        let stage = gate.stage();
        let err = write(&gate).unwrap_err();
        assert!(
            matches!(&err, Error::Promotion(crate::PromotionError::SloNotMet { evidence }) if evidence.contains("before this write ended the stage")),
            "{name}: {err}"
        );
        assert_eq!(gate.environment(), Environment::Production, "{name}");
        assert!(gate.stage() > stage, "{name}");
        assert_eq!(gate.config().salt, None, "{name}: the swap was not made");
        let history = gate.rollback_history();
        assert_eq!(history.len(), 1, "{name}: {history:?}");
        assert_eq!(history[0].trigger, RollbackTrigger::Automatic, "{name}");
    }
    // A swap that keeps the stage (a policy field) is not judged: the stage and its evidence
    // go on, for the judge to act on.
    let gate = failing_canary_not_yet_judged();
    let stage = gate.stage();
    swapped(&gate, |c| c.slo_threshold = 0.9).unwrap();
    assert_eq!((gate.environment(), gate.stage()), (canary(100.0), stage));
    assert!(gate.rollback_history().is_empty());
    // A healthy stage is ramped down and swapped as before.
    for (name, write) in writes {
        let gate = still_gate(PromotionConfig {
            environment: canary(100.0),
            ..Default::default()
        });
        let stage = gate.stage();
        write(&gate).unwrap();
        assert!(gate.stage() > stage, "{name}");
        assert!(gate.rollback_history().is_empty(), "{name}");
    }
}

#[test]
fn the_health_read_never_rolls_back() {
    let gate = failing_canary_not_yet_judged();
    for _ in 0..3 {
        let health = gate.health();
        assert_eq!(health.recommendation, crate::Recommendation::Rollback);
        assert!(!fired(&health).is_empty(), "{}", health.evidence);
        assert_eq!(gate.environment(), canary(100.0));
        assert!(gate.rollback_history().is_empty());
    }
    // The judging call acts on the same window.
    let judged = gate.monitor_canary_health();
    assert_eq!(judged.recommendation, crate::Recommendation::Rollback);
    assert_eq!(gate.environment(), Environment::Production);
    assert_eq!(gate.rollback_history().len(), 1);
}

#[test]
fn the_burst_span_does_not_shrink_however_often_anyone_judges() {
    use crate::judge::Rule::ErrorBurst;
    let (gate, clock) = judged_gate(canary(100.0));
    record_canary(&gate, 2000, true);
    // Judging calls a second apart start new burst spans; the burst covers the last two.
    for _ in 0..2 {
        clock.advance(Duration::from_secs(1));
        assert!(fired(&gate.monitor_canary_health()).is_empty());
    }
    // A sudden outage after a long healthy window: only error_burst sees it.
    record_canary(&gate, 10, false);
    for _ in 0..3 {
        let health = gate.health();
        assert_eq!(fired(&health), [ErrorBurst], "{}", health.evidence);
        let exported = gate.latency_histogram(Cohort::Canary).unwrap();
        assert_eq!(exported.len(), 2010);
    }
    // Judging on every request does not restart the span: it restarts at most once per
    // evaluation_interval.
    for _ in 0..100 {
        let judged = gate.monitor_canary_health();
        assert_eq!(fired(&judged), [ErrorBurst], "{}", judged.evidence);
    }
    // A call a second later starts a new span; the burst still covers the one before it.
    clock.advance(Duration::from_secs(1));
    for _ in 0..2 {
        assert_eq!(fired(&gate.monitor_canary_health()), [ErrorBurst]);
    }
    // Another second: the burst is behind the span before the new one.
    clock.advance(Duration::from_secs(1));
    assert_eq!(fired(&gate.monitor_canary_health()), [ErrorBurst]);
    assert!(fired(&gate.monitor_canary_health()).is_empty());
    assert!(fired(&gate.health()).is_empty());
}

#[test]
fn a_burst_span_just_begun_does_not_blame_an_outage_both_versions_share() {
    use crate::judge::Rule::ErrorBurst;
    let (gate, clock) = judged_gate(canary(50.0));
    // Each version's `n` requests in a second, the first `failing` of them failed.
    let second = |n: u64, failing: u64| {
        for canary in [true, false] {
            for i in 0..n {
                gate.record_for(gate.stage(), canary, i >= failing, Duration::from_millis(2));
            }
        }
    };
    // A minute healthy, then an outage both versions share: 30 % of each one's requests.
    for failing in [0; 60].into_iter().chain([300; 3]) {
        second(1000, failing);
        clock.advance(Duration::from_secs(1));
        assert!(fired(&gate.monitor_canary_health()).is_empty());
    }
    // That call started a new burst span. In its first milliseconds the canary's few requests
    // happen to fail and the stable version's few do not: too few to bound the stable rate,
    // but the span before, also measured, shows the outage on both.
    for (canary, success) in [(true, false), (false, true)] {
        for _ in 0..7 {
            gate.record_for(gate.stage(), canary, success, Duration::from_millis(2));
        }
    }
    let health = gate.monitor_canary_health();
    assert!(!fired(&health).contains(&ErrorBurst), "{}", health.evidence);
}

#[test]
fn compliance_has_one_subject_per_environment() {
    // In Production the stable version is judged: enough stable samples are compliant.
    let gate = still_gate(PromotionConfig::default());
    for _ in 0..150 {
        gate.record_for(gate.stage(), false, true, Duration::from_millis(2));
    }
    assert_eq!(gate.check_slo_compliance(), Ok(true));
    // Outside Production it is the new version, which has no samples in the new stage.
    gate.promote(canary(10.0)).unwrap();
    assert_eq!(gate.check_slo_compliance(), Ok(false));
    let refused = gate.promote(canary(20.0)).unwrap_err();
    assert!(
        refused.to_string().contains("0 of 100 canary samples"),
        "{refused}"
    );
}

#[test]
fn flag_sets_are_reused_across_repeated_writes() {
    let gate = gate(PromotionConfig::default());
    for _ in 0..100 {
        gate.enable_feature("a").unwrap();
        gate.disable_feature("a").unwrap();
    }
    assert!(gate.shared.flag_sets.held() <= 2);
    assert_eq!(gate.shared.flag_sets.names_stored(), 1);
}

#[test]
fn a_decision_reads_its_flags_for_the_grace_then_reports_stale() {
    let gate = gate(PromotionConfig {
        environment: Environment::Staging,
        feature_flags: vec!["first".into()],
        ..Default::default()
    });
    let decision = gate.route_request("u");
    let id = decision.enabled_features.set_id();
    let mut writes = 0;
    let mut previous = id;
    while !decision.enabled_features.is_stale() {
        assert_eq!(
            decision.enabled_features.iter().collect::<Vec<_>>(),
            ["first"]
        );
        assert!(gate.flag_set(id).unwrap().contains("first"));
        writes += 1;
        gate.enable_feature(format!("f{writes}")).unwrap();
        // Read two other sets, as a host routing requests does, so this thread forgets it.
        let current = gate.route_request("u").enabled_features;
        assert_eq!(current.len(), writes + 1);
        if let Ok(set) = gate.flag_set(previous) {
            assert!(set.contains("first"));
        }
        previous = current.set_id();
    }
    assert!(
        writes > crate::FLAG_SET_GRACE_WRITES,
        "stale after {writes} writes"
    );
    assert!(decision.enabled_features.is_empty());
    let err = gate.flag_set(id).unwrap_err();
    assert_eq!(err, Error::Flag(crate::FlagError::UnknownSet(id)));
    assert!(err.to_string().contains(&id.to_string()), "{err}");
    // The current decision reads every flag.
    assert_eq!(gate.route_request("u").enabled_features.len(), writes + 1);
}

#[test]
fn another_gates_set_number_is_unknown_here() {
    let config = PromotionConfig {
        environment: Environment::Staging,
        feature_flags: vec!["new_api".into()],
        ..Default::default()
    };
    let (a, b) = (gate(config.clone()), gate(config));
    let id = a.route_request("u").enabled_features.set_id();
    assert!(a.flag_set(id).unwrap().contains("new_api"));
    // Gates number their sets from random starts: a match has odds of 1 in 2^25.
    assert_eq!(
        b.flag_set(id).unwrap_err(),
        Error::Flag(crate::FlagError::UnknownSet(id))
    );
}

#[test]
fn a_hung_canary_whose_clients_give_up_is_rolled_back_and_early_leavers_say_nothing() {
    let gate = gate(PromotionConfig {
        environment: canary(50.0),
        ..Default::default()
    });
    let target = gate.slo_controller().config().latency_target;
    let mut abandoned = 0;
    for i in 0..10_000u64 {
        let d = gate.route_request(&format!("u{i}"));
        if !d.is_canary {
            gate.record_outcome(&d, true, Duration::from_millis(20));
            continue;
        }
        // Clients that leave before the target tell nothing: never recorded.
        assert_eq!(gate.record_abandoned(&d, target / 2), None);
        // The canary never answers; its clients give up after 2 s.
        if gate.record_abandoned(&d, Duration::from_secs(2)) == Some(Recorded::Counted) {
            abandoned += 1;
        }
        if abandoned % 10 == 0 {
            gate.monitor_canary_health(); // a host's health check: judges, and acts
        }
        if gate.environment() == Environment::Production {
            break;
        }
    }
    assert_eq!(
        gate.environment(),
        Environment::Production,
        "never rolled back"
    );
    assert!(
        (100..200).contains(&abandoned),
        "{abandoned} abandoned requests"
    );
    let event = &gate.rollback_history()[0];
    let evidence = event.evidence.as_ref().expect("evidence");
    assert_eq!(
        evidence.canary.errors, 0,
        "a client leaving is not a failure"
    );
    assert!(event.reason.contains("slo_compliance"), "{}", event.reason);
}

/// A canary at 100 % whose errors the record path would roll back at once (no stable traffic:
/// the absolute rules act alone).
fn held_window_gate(slo: SloConfig) -> PromotionGateManager {
    PromotionGateManager::with_clock(
        PromotionConfig {
            environment: canary(100.0),
            ..Default::default()
        },
        SloAdmissionController::new(slo).unwrap(),
        Arc::new(crate::ManualClock::new()),
    )
    .unwrap()
}

#[test]
fn a_screened_error_while_a_read_holds_the_window_is_judged_when_the_read_lets_it_go() {
    let gate = held_window_gate(SloConfig::default());
    // A thread's first record makes its recorder under the window's lock: made here first.
    gate.shared.monitor.prepare_thread();
    let held = gate.shared.monitor.evaluation(); // a read under way
    record_canary(&gate, 20, false);
    // The screens found the window held and did not wait.
    assert_eq!(gate.environment(), canary(100.0));
    drop(held);
    // The next read lets the window go and makes the evaluation the screens asked for.
    let health = gate.health();
    assert_eq!(health.recommendation, crate::Recommendation::Rollback);
    assert_eq!(gate.environment(), Environment::Production);
    let history = gate.rollback_history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].trigger, RollbackTrigger::Automatic);
    // Made once: nothing is wanted any more, and further reads do nothing.
    assert!(gate.shared.monitor.wanted_evaluation().is_none());
    gate.health();
    assert_eq!(gate.rollback_history().len(), 1);
}

#[test]
fn a_due_evaluation_while_a_read_holds_the_window_is_made_when_the_read_lets_it_go() {
    // Slow successes only: no error to screen, only the periodic evaluation judges them.
    let gate = held_window_gate(SloConfig {
        warm_up: Duration::ZERO,
        ..SloConfig::default()
    });
    for _ in 0..500 {
        gate.record_for(gate.stage(), true, true, Duration::from_secs(5));
    }
    // No read held the window: the first record's look evaluated (too few samples then), and
    // the clock stands still, so no evaluation is due.
    assert!(gate.shared.monitor.wanted_evaluation().is_none());
    assert_eq!(gate.environment(), canary(100.0));
    let gate = held_window_gate(SloConfig {
        warm_up: Duration::ZERO,
        ..SloConfig::default()
    });
    // The first record's look at the clock finds the evaluation due and the window held.
    gate.shared.monitor.prepare_thread();
    let held = gate.shared.monitor.evaluation();
    for _ in 0..500 {
        gate.record_for(gate.stage(), true, true, Duration::from_secs(5));
    }
    assert_eq!(gate.environment(), canary(100.0));
    drop(held);
    let exported = gate.window_export();
    assert_eq!(exported.evidence(Cohort::Canary).requests, 500);
    assert_eq!(gate.environment(), Environment::Production);
}

/// A clock that holds one thread at its `n`-th look after [`arm`](Self::arm), until let go: an
/// evaluation looks at the clock right after reading the recorders, the window held.
#[derive(Debug, Default)]
struct HoldingClock {
    inner: crate::ManualClock,
    armed: std::sync::Mutex<Option<(std::thread::ThreadId, usize)>>,
    held: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    release: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl HoldingClock {
    /// Holds `thread` at its `n`-th look from now; returns what says it is held and what lets
    /// it go.
    fn arm(
        &self,
        thread: std::thread::ThreadId,
        n: usize,
    ) -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
        let (held, on_hold) = std::sync::mpsc::channel();
        let (let_go, release) = std::sync::mpsc::channel();
        *self.held.lock().unwrap() = Some(held);
        *self.release.lock().unwrap() = Some(release);
        *self.armed.lock().unwrap() = Some((thread, n));
        (on_hold, let_go)
    }
}

impl crate::Clock for HoldingClock {
    fn monotonic(&self) -> Duration {
        let mut armed = self.armed.lock().unwrap();
        if let Some((thread, n)) = armed.as_mut()
            && *thread == std::thread::current().id()
        {
            *n -= 1;
            if *n == 0 {
                *armed = None;
                drop(armed);
                self.held.lock().unwrap().take().unwrap().send(()).unwrap();
                let release = self.release.lock().unwrap().take().unwrap();
                release.recv().unwrap();
            }
        }
        self.inner.monotonic()
    }

    fn wall(&self) -> std::time::SystemTime {
        self.inner.wall()
    }
}

#[test]
fn an_evaluation_asked_for_while_the_record_path_evaluates_is_made_as_it_lets_the_window_go() {
    let clock = Arc::new(HoldingClock::default());
    let gate = PromotionGateManager::with_clock(
        PromotionConfig {
            environment: canary(100.0),
            ..Default::default()
        },
        SloAdmissionController::new(SloConfig::default()).unwrap(),
        Arc::clone(&clock) as Arc<dyn crate::Clock>,
    )
    .unwrap();
    std::thread::scope(|scope| {
        let (go, start) = std::sync::mpsc::channel::<()>();
        let gate = &gate;
        let evaluating = scope.spawn(move || {
            start.recv().unwrap();
            // The gate's first record: its look at the clock (the 1st look) finds the
            // evaluation due; the evaluation reads the recorders (nothing yet), then the clock
            // (the 2nd look), and is held there, holding the window.
            gate.record_for(gate.stage(), true, true, Duration::from_millis(2));
        });
        let (on_hold, let_go) = clock.arm(evaluating.thread().id(), 2);
        go.send(()).unwrap();
        on_hold.recv().unwrap();
        // Canary errors whose screens fire and find the window held: they ask its holder.
        record_canary(gate, 20, false);
        assert_eq!(gate.environment(), canary(100.0));
        let_go.send(()).unwrap();
        evaluating.join().unwrap();
    });
    // The holder found nothing in what it read, let the window go and made the evaluation
    // asked for: no later record or read was needed for the rollback.
    assert_eq!(gate.environment(), Environment::Production);
    assert_eq!(
        gate.rollback_history()[0].trigger,
        RollbackTrigger::Automatic
    );
}

#[test]
fn a_threads_first_record_never_waits_for_a_read_holding_the_window() {
    let gate = held_window_gate(SloConfig::default());
    let held = gate.shared.monitor.evaluation();
    let (done, recorded) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // This thread's first record: it makes its recorder.
            gate.record_for(gate.stage(), true, true, Duration::from_millis(2));
            done.send(()).unwrap();
        });
        let waited = recorded.recv_timeout(Duration::from_secs(10));
        drop(held);
        assert!(
            waited.is_ok(),
            "a thread's first record waited for the window"
        );
    });
    assert_eq!(gate.health().canary_requests, 1);
}

#[test]
fn an_owed_rollback_of_the_current_stage_is_not_replaced_by_a_stale_one() {
    use crate::judge::tests::judge_cohorts;
    use crate::metrics::tests_support::cohort;
    use crate::verdict::Verdict;
    let gate = gate(PromotionConfig {
        environment: canary(5.0),
        auto_rollback_enabled: true,
        ..Default::default()
    });
    let old = gate.stage();
    let mut config = gate.config();
    config.environment = canary(10.0);
    gate.swap_config(config).unwrap();
    let current = gate.stage();
    assert!(current > old);
    let slo = SloConfig::default();
    let failing = |stage| {
        Verdict::new(judge_cohorts(
            stage,
            canary(10.0),
            &cohort(1000, 1000, 900, 900),
            &cohort(1000, 0, 900, 900),
            Default::default(),
            crate::judge::Policy::new(&slo, 0.95),
        ))
    };
    let (fresh, stale) = (failing(current), failing(old));
    assert!(fresh.calls_for_rollback() && stale.calls_for_rollback());
    {
        let _write = gate.lock_writer(); // a host's write under way
        // A record-path evaluation of the current stage owes its rollback; then a thread that
        // judged the stage before (preempted before acting) owes its own.
        gate.shared.apply_verdict_or_owe(&fresh);
        gate.shared.apply_verdict_or_owe(&stale);
    }
    assert_eq!(
        gate.environment(),
        Environment::Production,
        "the current stage's owed rollback was made"
    );
}

/// Records `rounds` rounds of 200 failed canary requests on `gate`, each then followed, a
/// minute on (past the evaluation interval and the judge's line's repeat), by 128 more: a
/// thread looks at the clock every 64 records at most, and the look runs the paced full
/// evaluation. How many `SLO violation` lines were logged (one a round while a rule fires).
fn failing_rounds(gate: &PromotionGateManager, clock: &crate::ManualClock, rounds: u32) -> usize {
    let lines = crate::telemetry::log_lines::LogLines::default();
    lines.during(|| {
        for _ in 0..rounds {
            record_canary(gate, 200, false);
            clock.advance(Duration::from_secs(61));
            record_canary(gate, 128, false);
        }
    });
    lines
        .lines()
        .iter()
        .filter(|line| line.contains("SLO violation: "))
        .count()
}

#[test]
fn with_auto_rollback_off_a_fired_rule_never_takes_the_writer_lock() {
    let (gate, clock) = judged_gate(canary(100.0));
    let taken = gate.shared.writer.times_taken();
    // The record path's evaluations: a rule fires at each.
    assert_eq!(failing_rounds(&gate, &clock, 3), 3);
    // The host's judging reads, which act on what they find.
    let health = gate.monitor_canary_health();
    assert_eq!(health.recommendation, crate::Recommendation::Rollback);
    assert_eq!(gate.check_slo_compliance(), Ok(false));
    assert_eq!(
        gate.shared.writer.times_taken(),
        taken,
        "nothing to roll back, and yet the writer lock was taken"
    );
    assert_eq!(gate.environment(), canary(100.0));
    assert!(gate.rollback_history().is_empty());
}

#[test]
fn with_auto_rollback_off_a_fired_rule_leaves_nothing_for_the_write_holding_the_lock() {
    let dir = crate::store::scratch::Scratch::new("auto-rollback-off-held");
    for store in [None, sqlite_store(&dir)] {
        let with_store = store.is_some();
        let (gate, clock) = judged_gate_on(canary(100.0), store);
        let stage = gate.stage();
        std::thread::scope(|scope| {
            let (locked, held) = std::sync::mpsc::channel();
            let (ask, asked) = std::sync::mpsc::channel::<()>();
            let (answer, answers) = std::sync::mpsc::channel();
            let gate = &gate;
            // A host's write under way (storing itself, say): while it holds the lock, it
            // says at each ask whether a rollback of the stage was left for later, owed to
            // the lock or handed to the sync thread.
            scope.spawn(move || {
                let _write = gate.shared.lock_writer();
                locked.send(()).unwrap();
                for () in asked {
                    answer.send(gate.shared.take_left(stage).is_some()).unwrap();
                }
            });
            held.recv().unwrap();
            let left = || {
                ask.send(()).unwrap();
                answers.recv().unwrap()
            };
            assert_eq!(failing_rounds(gate, &clock, 2), 2, "store: {with_store}");
            assert!(!left(), "a record left a rollback; store: {with_store}");
            let health = gate.monitor_canary_health();
            assert_eq!(health.recommendation, crate::Recommendation::Rollback);
            assert!(
                !left(),
                "a health check left a rollback; store: {with_store}"
            );
        });
        assert_eq!(gate.environment(), canary(100.0));
        assert!(gate.rollback_history().is_empty());
    }
}

#[test]
fn a_stale_judgement_leaves_the_newer_stages_window_as_it_was() {
    use crate::clock::ManualClock;
    let clock = std::sync::Arc::new(ManualClock::new());
    let slo = SloAdmissionController::new(SloConfig {
        warm_up: Duration::ZERO,
        ..Default::default()
    })
    .unwrap();
    let gate = PromotionGateManager::with_clock(
        PromotionConfig {
            environment: canary(50.0),
            auto_rollback_enabled: false,
            ..Default::default()
        },
        slo,
        clock.clone(),
    )
    .unwrap();
    // A screen on stage 1 loaded its snapshot...
    let old = gate.shared.current.load_full();
    let mut config = gate.config();
    config.environment = canary(60.0);
    gate.swap_config(config).unwrap(); // ...then stage 2 began
    let stage = gate.stage();
    let record = |canary_errors: u64| {
        for i in 0..100 {
            gate.record_for(stage, true, i >= canary_errors, Duration::from_millis(2));
            gate.record_for(stage, false, true, Duration::from_millis(2));
        }
        gate.monitor_canary_health(); // leaves a reading
    };
    clock.set(Duration::from_secs(1));
    record(50); // an early burst of canary errors in stage 2
    for t in (11..=401).step_by(10) {
        clock.set(Duration::from_secs(t));
        record(0);
    }
    assert_eq!(
        gate.health().evidence.canary.errors,
        0,
        "the burst left the window"
    );
    // The screen's judgement of stage 1 runs now (it found the window free).
    let _ = gate.shared.monitor.evaluation().judge(&old);
    assert_eq!(
        gate.health().evidence.canary.errors,
        0,
        "errors 400 s old are back in stage 2's 300 s window"
    );
}

/// A clock that, armed, has the canary fail 3000 times on another thread at its next
/// `wall()` read: inside a promotion's commit, after its judgement (and after its store write,
/// with a store), while it holds the writer lock.
#[derive(Debug, Default)]
struct FailsDuringCommit {
    inner: crate::ManualClock,
    armed: std::sync::atomic::AtomicBool,
    gate: std::sync::OnceLock<std::sync::Weak<PromotionGateManager>>,
    /// A store on which another process then turns flag "other" on and graduated flag "old"
    /// off (a kill switch), once: a write in Production that keeps the stage.
    meanwhile: std::sync::Mutex<Option<crate::store::StoreConfig>>,
}

impl crate::Clock for FailsDuringCommit {
    fn monotonic(&self) -> Duration {
        crate::Clock::monotonic(&self.inner)
    }

    fn wall(&self) -> std::time::SystemTime {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            let gate = self.gate.get().unwrap().upgrade().unwrap();
            std::thread::spawn(move || {
                let stage = gate.stage();
                for _ in 0..3000 {
                    gate.record_for(stage, true, false, Duration::from_millis(3));
                }
            })
            .join()
            .unwrap();
            if let Some(store) = self.meanwhile.lock().unwrap().take() {
                let other = gate_on(Some(store));
                other.enable_feature("other").unwrap();
                other.disable_feature("old").unwrap();
            }
        }
        crate::Clock::wall(&self.inner)
    }
}

/// A healthy canary at 50 % with release flag "new" (and `graduated` flags of the releases
/// before), judged ready for promotion, on a clock that can fail it mid-promotion; with
/// `store`, on that state store.
fn ready_gate(
    store: Option<crate::store::StoreConfig>,
    graduated: &[&str],
) -> (Arc<PromotionGateManager>, Arc<FailsDuringCommit>) {
    let clock = Arc::new(FailsDuringCommit::default());
    let slo = SloConfig {
        warm_up: Duration::ZERO,
        ..Default::default()
    };
    let config = PromotionConfig {
        environment: canary(50.0),
        feature_flags: vec!["new".into()],
        graduated_flags: graduated.iter().map(|flag| flag.to_string()).collect(),
        store,
        ..Default::default()
    };
    let slo = SloAdmissionController::new(slo).unwrap();
    let gate = Arc::new(PromotionGateManager::with_clock(config, slo, clock.clone()).unwrap());
    clock.gate.set(Arc::downgrade(&gate)).unwrap();
    feed_healthy(&gate, PROMOTABLE);
    (gate, clock)
}

/// Promotes `gate` to Production while its canary fails, and checks that the rollback the
/// judge called for meanwhile won: the promotion refused, the canary rolled back.
fn promote_while_failing(gate: &PromotionGateManager, clock: &FailsDuringCommit) {
    let stage = gate.stage();
    clock.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let promoted = gate.promote(Environment::Production);
    refused_and_rolled_back(gate, promoted, "while this write was being made");
    assert!(gate.stage() > stage);
    let history = gate.rollback_history();
    assert!(
        history
            .iter()
            .any(|event| event.trigger == RollbackTrigger::Automatic && event.evidence.is_some()),
        "{history:?}"
    );
}

/// Checks that `promoted`, the promotion of `gate`'s 50 % canary, was refused (`SloNotMet`
/// saying `how`) and the canary rolled back: Production, its flag neither on nor graduated,
/// one automatic rollback of the canary and none by hand.
fn refused_and_rolled_back(gate: &PromotionGateManager, promoted: Result<(), Error>, how: &str) {
    let err = promoted.unwrap_err();
    assert!(
        matches!(&err, Error::Promotion(crate::PromotionError::SloNotMet { evidence }) if evidence.contains(how)),
        "{err}"
    );
    assert_eq!(gate.environment(), Environment::Production);
    let config = gate.config();
    assert!(
        !config.graduated_flags.contains(&"new".into()),
        "{config:?}"
    );
    // The release flag off, and one automatic rollback of the canary. Not "no flag and no
    // other event": another process's flag edits made meanwhile may be followed already (the
    // sync thread writes a rollback handed to it at once, then follows the store).
    assert!(!config.feature_flags.contains(&"new".into()), "{config:?}");
    let history = gate.rollback_history();
    let automatic: Vec<_> = history
        .iter()
        .filter(|event| event.trigger == RollbackTrigger::Automatic)
        .collect();
    assert_eq!(automatic.len(), 1, "{history:?}");
    assert_eq!(automatic[0].environment, canary(50.0));
    assert!(
        history
            .iter()
            .all(|event| event.trigger != RollbackTrigger::Manual),
        "{history:?}"
    );
}

/// A SQLite store in `dir`, slow to sync (the tests sync by hand).
fn sqlite_store(dir: &crate::store::scratch::Scratch) -> Option<crate::store::StoreConfig> {
    Some(crate::store::StoreConfig::Sqlite(
        crate::store::SqliteStoreConfig {
            path: dir.file("gate.db"),
            sync_interval_ms: 60_000,
            busy_timeout_ms: 5_000,
            fleet_judging: false,
        },
    ))
}

/// A gate opened on `store` with the default config (the stored state wins over it).
fn gate_on(store: Option<crate::store::StoreConfig>) -> PromotionGateManager {
    PromotionGateManager::new(
        PromotionConfig {
            store,
            ..Default::default()
        },
        SloAdmissionController::new(SloConfig::default()).unwrap(),
    )
    .unwrap()
}

/// A manual clock that, armed, panics at its next read on the thread that armed it.
#[derive(Debug, Default)]
pub(super) struct PanicsWhenArmed {
    inner: crate::ManualClock,
    armed: std::sync::Mutex<Option<std::thread::ThreadId>>,
}

impl PanicsWhenArmed {
    /// Panics at the next read on this thread.
    pub(super) fn arm(&self) {
        *self.armed.lock().unwrap() = Some(std::thread::current().id());
    }

    /// Whether it is still armed (it has not panicked since [`arm`](Self::arm)).
    pub(super) fn armed(&self) -> bool {
        self.armed.lock().unwrap().is_some()
    }

    fn read(&self) {
        let mut armed = self.armed.lock().unwrap();
        if *armed == Some(std::thread::current().id()) {
            *armed = None;
            drop(armed);
            std::panic::resume_unwind(Box::new("a host's clock failed"));
        }
    }
}

impl crate::Clock for PanicsWhenArmed {
    fn monotonic(&self) -> Duration {
        self.read();
        crate::Clock::monotonic(&self.inner)
    }

    fn wall(&self) -> std::time::SystemTime {
        self.read();
        crate::Clock::wall(&self.inner)
    }
}

#[test]
fn a_catch_up_whose_clock_panics_leaves_the_published_flag_sets_live() {
    // Another process turns a flag on; this gate's write loses the race and catches up with
    // it, and the clock panics there. The published snapshot's flag sets must stay the live
    // ones: were the stored state's made live, the published ones would be retired, and their
    // slots reused by a later write while routes still read them.
    let dir = crate::store::scratch::Scratch::new("catch-up-clock-panics");
    let clock = Arc::new(PanicsWhenArmed::default());
    let config = PromotionConfig {
        store: sqlite_store(&dir),
        ..Default::default()
    };
    let slo = SloAdmissionController::new(SloConfig::default()).unwrap();
    let gate = PromotionGateManager::with_clock(config, slo, clock.clone()).unwrap();
    gate_on(sqlite_store(&dir)).enable_feature("other").unwrap();
    clock.arm();
    let written =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| gate.enable_feature("mine")));
    assert!(written.is_err(), "the clock panicked");
    assert!(!clock.armed());
    let current = gate.shared.current.load_full();
    assert!(!current.config.feature_flags.contains(&"other".to_string()));
    let published = [current.route.stable_flags, current.route.new_version_flags];
    assert_eq!(gate.lock_writer().flag_index.live(), published);
    // The next write catches up and is made.
    gate.enable_feature("mine").unwrap();
    assert!(gate.is_feature_enabled("other") && gate.is_feature_enabled("mine"));
}

#[test]
fn a_rollback_called_for_while_a_promotion_is_made_wins_over_it() {
    let (gate, clock) = ready_gate(None, &[]);
    promote_while_failing(&gate, &clock);
}

#[test]
fn a_rollback_called_for_while_a_promotion_is_stored_is_stored_over_it() {
    let dir = crate::store::scratch::Scratch::new("promotion-yields");
    let store = || sqlite_store(&dir);
    let (gate, clock) = ready_gate(store(), &[]);
    promote_while_failing(&gate, &clock);
    stored_over_the_promotion(gate, store());
}

/// Checks that `store` holds `gate`'s automatic rollback, written over the promotion, at the
/// stage `gate` shows (a sync changes nothing), and drops `gate`.
fn stored_over_the_promotion(
    gate: Arc<PromotionGateManager>,
    store: Option<crate::store::StoreConfig>,
) {
    let stage = gate.stage();
    gate.shared.sync_once();
    assert_eq!(gate.stage(), stage);
    drop(gate);
    let reopened = gate_on(store);
    assert_eq!(reopened.environment(), Environment::Production);
    assert_eq!(reopened.stage(), stage);
    assert!(reopened.config().graduated_flags.is_empty());
    let history = reopened.rollback_history();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].trigger, RollbackTrigger::Automatic);
}

#[test]
fn a_rollback_stored_over_a_promotion_another_process_wrote_on_is_written_later_keeping_its_flags()
{
    let dir = crate::store::scratch::Scratch::new("promotion-yields-later");
    let store = || sqlite_store(&dir);
    let (gate, clock) = ready_gate(store(), &["old"]);
    // Between the promotion's store write and the rollback written over it, another process
    // turns flag "other" on in Production and graduated flag "old" off (the stage stays).
    *clock.meanwhile.lock().unwrap() = store();
    promote_while_failing(&gate, &clock);
    gate.shared.sync_once();
    // Written over that write: the flag the promotion graduated is taken back, and the other
    // process's flag edits stay (a rollback changes the release, not the flags set since).
    let kept = |config: PromotionConfig| {
        assert_eq!(config.environment, Environment::Production);
        assert!(config.graduated_flags.is_empty(), "{config:?}");
        assert_eq!(config.feature_flags, ["other"], "{config:?}");
    };
    kept(gate.config());
    drop(gate);
    let reopened = gate_on(store());
    kept(reopened.config());
    let history = reopened.rollback_history();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0].feature, "old", "the kill switch");
    assert_eq!(history[1].trigger, RollbackTrigger::Automatic);
    assert_eq!(history[1].environment, canary(50.0));
}

/// Promotes `gate` (in stage S) to Production while a recording thread leaves the judge's
/// rollback of stage S, judged just before the promotion published: the recording thread runs
/// at the write's first log line after its new snapshot is published, under the writer lock,
/// after the write's last look for a rollback before it published.
fn promote_as_a_verdict_is_left(gate: &Arc<PromotionGateManager>) -> Result<(), Error> {
    write_as_a_verdict_is_left(gate, |gate| gate.promote(Environment::Production))
}

/// [`promote_as_a_verdict_is_left`] for any write that ends the stage.
fn write_as_a_verdict_is_left(
    gate: &Arc<PromotionGateManager>,
    write: impl FnOnce(&PromotionGateManager) -> Result<(), Error>,
) -> Result<(), Error> {
    write_as_a_verdict_is_left_then(gate, write, || {})
}

/// [`write_as_a_verdict_is_left`], running `meanwhile` on another thread once the verdict is
/// left (another process's write, between the write's store write and its last look).
fn write_as_a_verdict_is_left_then(
    gate: &Arc<PromotionGateManager>,
    write: impl FnOnce(&PromotionGateManager) -> Result<(), Error>,
    meanwhile: impl FnOnce() + Send + 'static,
) -> Result<(), Error> {
    let (made, dropped) = write_leaving_a_verdict(gate, write, meanwhile);
    assert!(dropped.is_empty(), "the verdict was dropped: {dropped:#?}");
    made
}

/// [`write_as_a_verdict_is_left_then`], returning the lines logged during the write that say
/// a verdict was dropped (its stage had ended) beside the write's result.
fn write_leaving_a_verdict(
    gate: &Arc<PromotionGateManager>,
    write: impl FnOnce(&PromotionGateManager) -> Result<(), Error>,
    meanwhile: impl FnOnce() + Send + 'static,
) -> (Result<(), Error>, Vec<String>) {
    let (environment, judged) = gate.environment_and_stage();
    let armed = std::sync::atomic::AtomicBool::new(true);
    let meanwhile = std::sync::Mutex::new(Some(meanwhile));
    let weak = Arc::downgrade(gate);
    let lines = crate::telemetry::log_lines::LogLines::calling(move || {
        let Some(gate) = weak.upgrade() else {
            return;
        };
        if gate.stage() != judged && armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            std::thread::spawn(move || gate.act_on_recording(&failing_in(judged, environment)))
                .join()
                .unwrap();
            if let Some(meanwhile) = meanwhile.lock().unwrap().take() {
                std::thread::spawn(meanwhile).join().unwrap();
            }
        }
    });
    let made = lines.during(|| write(gate));
    let stale = "the stage the judge called for it in has ended";
    let dropped: Vec<String> = lines
        .lines()
        .into_iter()
        .filter(|l| l.contains(stale))
        .collect();
    (made, dropped)
}

/// Checks that the promotion of `promote_as_a_verdict_is_left` was refused and rolled back
/// over, the flag it graduated taken back.
fn rolled_back_over_the_promotion(gate: &PromotionGateManager, promoted: Result<(), Error>) {
    refused_and_rolled_back(gate, promoted, "rolled back over the write");
}

#[test]
fn a_rollback_left_as_a_promotion_publishes_is_made_over_it() {
    let (gate, _) = ready_gate(None, &[]);
    let promoted = promote_as_a_verdict_is_left(&gate);
    rolled_back_over_the_promotion(&gate, promoted);
}

#[test]
fn a_rollback_handed_to_the_sync_thread_as_a_promotion_publishes_is_stored_over_it() {
    let dir = crate::store::scratch::Scratch::new("left-as-published");
    let store = || sqlite_store(&dir);
    let (gate, _) = ready_gate(store(), &[]);
    let promoted = promote_as_a_verdict_is_left(&gate);
    rolled_back_over_the_promotion(&gate, promoted);
    stored_over_the_promotion(gate, store());
}

#[test]
fn a_swap_a_rollback_is_left_for_as_it_publishes_is_undone() {
    // A swap that starts a stage (a new salt) and changes the policy.
    let swapped = |gate: &PromotionGateManager| {
        let mut next = gate.config();
        next.salt = Some("reshuffled".into());
        next.slo_threshold = 0.5;
        next
    };
    let (gate, _) = ready_gate(None, &[]);
    let before = gate.config();
    let refused =
        write_as_a_verdict_is_left(&gate, |gate| gate.swap_config(swapped(gate)).map(drop));
    let err = refused.unwrap_err();
    assert!(err.to_string().contains("the write is undone"), "{err}");
    assert_eq!(gate.config(), crate::release::rolled_back(&before));
    // With a store, another process's writes in the release the swap started (a flag turned
    // on, a kill switch) stored before the undo, which is then written by the sync thread:
    // still back to the config judged, the kill switch kept.
    let dir = crate::store::scratch::Scratch::new("swap-undone-later");
    let store = || sqlite_store(&dir);
    let (gate, _) = ready_gate(store(), &["old"]);
    let before = gate.config();
    let theirs = store();
    let refused = write_as_a_verdict_is_left_then(
        &gate,
        |gate| gate.swap_config(swapped(gate)).map(drop),
        move || {
            let other = gate_on(theirs);
            other.enable_feature("other").unwrap();
            other.disable_feature("old").unwrap();
        },
    );
    let err = refused.unwrap_err();
    assert!(err.to_string().contains("the write is undone"), "{err}");
    gate.shared.sync_once();
    let mut undone = crate::release::rolled_back(&before);
    undone.graduated_flags.clear();
    assert_eq!(
        gate.config(),
        undone,
        "the old salt and policy, the kill switch kept"
    );
    drop(gate);
    assert_eq!(gate_on(store()).config(), undone);
    // Left once the swap was made (told so): the release is rolled back, the swap stays.
    let (gate, _) = ready_gate(None, &[]);
    let judged = gate.stage();
    gate.swap_config(swapped(&gate)).unwrap();
    gate.act_on_recording(&failing_in(judged, canary(50.0)));
    assert_eq!(gate.environment(), Environment::Production);
    assert_eq!(gate.config().slo_threshold, 0.5);
    assert_eq!(gate.config().salt.as_deref(), Some("reshuffled"));
}

#[test]
fn a_verdict_of_the_release_before_is_not_made_over_the_next_release_a_swap_put_in() {
    // The operator's swap turns release flag "next" on at the same split: the next release,
    // a rollout of its own in the store. A verdict of the stage it ended, left as the swap
    // publishes or called for once it is made, is dropped, as another process's rollback
    // waiting to be written is: the next release is not rolled back for the one before.
    let next_release = |gate: &PromotionGateManager| {
        let mut next = gate.config();
        next.feature_flags.push("next".into());
        next
    };
    for with_store in [false, true] {
        let dir = crate::store::scratch::Scratch::new("next-release-verdict");
        let store = || with_store.then(|| sqlite_store(&dir)).flatten();
        // Left as the swap publishes (its last look, after it published).
        let (gate, _) = ready_gate(store(), &[]);
        let next = next_release(&gate);
        let swap = next.clone();
        let (made, _) =
            write_leaving_a_verdict(&gate, move |gate| gate.swap_config(swap).map(drop), || {});
        made.unwrap();
        // With a store the verdict was handed to the sync thread: the drop takes it.
        if !with_store {
            assert_eq!(gate.config(), next);
        }
        drop(gate);
        if with_store {
            let reopened = gate_on(store());
            assert_eq!(reopened.config().environment, canary(50.0));
            assert_eq!(reopened.config().feature_flags, ["new", "next"]);
            assert!(reopened.rollback_history().is_empty());
        }
        // Left as the swap is stored (after its judgement, before it published).
        let dir = crate::store::scratch::Scratch::new("next-release-verdict-stored");
        let store = || with_store.then(|| sqlite_store(&dir)).flatten();
        let (gate, clock) = ready_gate(store(), &[]);
        let next = next_release(&gate);
        clock.armed.store(true, std::sync::atomic::Ordering::SeqCst);
        gate.swap_config(next.clone()).unwrap();
        assert!(!clock.armed.load(std::sync::atomic::Ordering::SeqCst));
        if !with_store {
            assert_eq!(gate.config(), next);
        }
        drop(gate);
        if with_store {
            let reopened = gate_on(store());
            assert_eq!(reopened.config().feature_flags, ["new", "next"]);
            assert!(reopened.rollback_history().is_empty());
        }
        // Called for once the swap was made (told so).
        let dir = crate::store::scratch::Scratch::new("next-release-verdict-later");
        let store = || with_store.then(|| sqlite_store(&dir)).flatten();
        let (gate, _) = ready_gate(store(), &[]);
        let judged = gate.stage();
        let next = next_release(&gate);
        gate.swap_config(next.clone()).unwrap();
        gate.act_on_recording(&failing_in(judged, canary(50.0)));
        assert_eq!(gate.config(), next);
        assert!(gate.rollback_history().is_empty());
    }
}

/// The last change `changes` received: the judge's rollback of the 50 % canary, from
/// Production to Production (over the promotion), announced as a rollback with its event.
fn announced_over_the_promotion(changes: &crate::Subscription, case: &str) {
    let all: Vec<_> = std::iter::from_fn(|| changes.try_recv()).collect();
    // The promotion, when told, lists the release flag it graduates as enabled; the rollback
    // over it, as disabled (off for the stable version's requests again).
    let flags =
        |change: &crate::StateChange| (change.flags.enabled.clone(), change.flags.disabled.clone());
    let none: Vec<String> = Vec::new();
    let new = vec!["new".to_string()];
    for promotion in all
        .iter()
        .filter(|c| c.kind() == crate::ChangeKind::Promotion)
    {
        assert_eq!(flags(promotion), (new.clone(), none.clone()), "{case}");
    }
    let change = all.last().unwrap_or_else(|| panic!("{case}: no change"));
    assert_eq!(flags(change), (none, new), "{case}");
    assert_eq!(
        (change.from, change.to),
        (Environment::Production, Environment::Production),
        "{case}"
    );
    assert_eq!(
        change.kind(),
        crate::ChangeKind::Rollback,
        "{case}: {change:?}"
    );
    let event = change.rollback.as_ref();
    assert_eq!(
        event.map(|event| (event.trigger, event.environment)),
        Some((crate::RollbackTrigger::Automatic, canary(50.0))),
        "{case}"
    );
}

#[test]
fn a_rollback_made_over_a_promotion_to_production_is_announced_as_a_rollback() {
    // Made by the recording thread, once the promotion was made (told so).
    let (gate, _) = ready_gate(None, &[]);
    let judged = gate.stage();
    gate.promote(Environment::Production).unwrap();
    let changes = gate.subscribe();
    gate.act_on_recording(&failing_in(judged, canary(50.0)));
    announced_over_the_promotion(&changes, "after the promotion");
    // Made by the promotion itself, its last look after it published: the write is undone.
    let (gate, _) = ready_gate(None, &[]);
    let changes = gate.subscribe();
    let promoted = promote_as_a_verdict_is_left(&gate);
    assert!(promoted.is_err(), "{promoted:?}");
    announced_over_the_promotion(&changes, "over the write");
}

#[test]
fn a_verdict_left_after_a_write_published_is_made_over_it() {
    // After the write let go of the writer lock: made by the recording thread itself.
    let (gate, _) = ready_gate(None, &[]);
    let judged = gate.stage();
    let failing = || failing_in(judged, canary(50.0));
    gate.promote(Environment::Production).unwrap();
    assert_eq!(gate.config().graduated_flags, ["new"]);
    gate.act_on_recording(&failing());
    assert_eq!(gate.environment(), Environment::Production);
    assert!(gate.config().graduated_flags.is_empty());
    assert_eq!(gate.rollback_history().len(), 1);
    // Its stage's other verdicts: quiet, as for any stage rolled back.
    let warned = warnings_of(|| gate.act_on_recording(&failing()));
    assert_eq!(warned, 0);
    assert_eq!(gate.rollback_history().len(), 1);
    // A write in the stage the promotion started (a flag turned off, a swap of the threshold)
    // keeps the promotion's ended stage: a verdict left for it is still made over both. The
    // flag turned off is "old", graduated by an earlier release: the rollback takes back
    // "new", the flag this promotion graduated, and keeps "old" as the write left it.
    for write in ["disable", "swap"] {
        let (gate, _) = ready_gate(None, &["old"]);
        let judged = gate.stage();
        gate.promote(Environment::Production).unwrap();
        assert_eq!(gate.config().graduated_flags, ["old", "new"]);
        match write {
            "disable" => gate.disable_feature("old").unwrap(),
            _ => {
                let mut config = gate.config();
                config.slo_threshold = 0.9;
                gate.swap_config(config).unwrap();
            }
        }
        gate.act_on_recording(&failing_in(judged, canary(50.0)));
        let automatic = gate
            .rollback_history()
            .iter()
            .filter(|event| event.trigger == crate::RollbackTrigger::Automatic)
            .count();
        assert_eq!(automatic, 1, "{write}");
        assert!(!gate.is_feature_enabled("new"), "{write}");
        let config = gate.config();
        assert!(config.feature_flags.is_empty(), "{write}");
        if write == "swap" {
            assert_eq!(
                config.graduated_flags,
                ["old"],
                "the release before's flag is kept"
            );
            assert_eq!(config.slo_threshold, 0.9, "the swap is kept");
        } else {
            assert!(config.graduated_flags.is_empty(), "the kill switch is kept");
        }
    }
    // A ramp (down, ungated) and a flag turned on end a stage of the same release too.
    for write in ["ramp", "flag"] {
        let gate = self::gate(PromotionConfig {
            environment: canary(5.0),
            ..Default::default()
        });
        let judged = gate.stage();
        match write {
            "ramp" => gate.promote(canary(1.0)).unwrap(),
            _ => gate.enable_feature("late").unwrap(),
        }
        gate.act_on_recording(&self::failing(judged));
        assert_eq!(gate.environment(), Environment::Production, "{write}");
        assert!(gate.config().feature_flags.is_empty(), "{write}");
        assert_eq!(gate.rollback_history()[0].environment, canary(5.0));
    }
}

#[test]
fn a_flag_turned_on_after_the_judging_is_judged_before_it_graduates() {
    let gate = gate(PromotionConfig {
        environment: canary(50.0),
        ..Default::default()
    });
    feed_healthy(&gate, PROMOTABLE);
    let stage = gate.stage();
    gate.enable_feature("risky").unwrap();
    assert!(gate.stage() > stage, "a flag turned on starts a stage");
    let err = gate.promote(Environment::Production).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Promotion(crate::PromotionError::InsufficientData { .. })
        ),
        "{err}"
    );
    assert!(matches!(
        gate.promote_from(stage, Environment::Production),
        Err(Error::Promotion(crate::PromotionError::StageChanged { .. }))
    ));
    assert_eq!(gate.environment(), canary(50.0));
    // Judged with the flag on, it graduates.
    feed_healthy(&gate, PROMOTABLE);
    gate.promote(Environment::Production).unwrap();
    assert_eq!(gate.config().graduated_flags, ["risky"]);
}

/// A 50 % canary whose release has flag `flag` on.
fn canary_with_flag(flag: &str) -> PromotionGateManager {
    gate(PromotionConfig {
        environment: canary(50.0),
        feature_flags: vec![flag.into()],
        ..Default::default()
    })
}

#[test]
fn which_flag_changes_start_a_stage() {
    let gate = canary_with_flag("a");
    let stage = gate.stage();
    gate.disable_feature("a").unwrap();
    assert_eq!(gate.stage(), stage, "a kill switch keeps the judge's stage");
    // A swap that turns a flag on for the new version starts one; one that turns it off not.
    let mut next = gate.config();
    next.feature_flags.push("b".into());
    gate.swap_config(next).unwrap();
    let stage = gate.stage();
    assert!(stage.get() > 1);
    let mut next = gate.config();
    next.feature_flags.clear();
    gate.swap_config(next).unwrap();
    assert_eq!(gate.stage(), stage);
    let mut next = gate.config();
    next.graduated_flags.push("g".into());
    gate.swap_config(next).unwrap();
    assert!(
        gate.stage() > stage,
        "a graduated flag reaches the new version too"
    );
    // In Production no release is judged: a flag turned on keeps the stage.
    gate.rollback("done").unwrap();
    let stage = gate.stage();
    gate.enable_feature("c").unwrap();
    assert_eq!(gate.stage(), stage);
    // Staging is judged: a stage starts.
    let staging = self::gate(PromotionConfig {
        environment: Environment::Staging,
        ..Default::default()
    });
    let stage = staging.stage();
    staging.enable_feature("d").unwrap();
    assert!(staging.stage() > stage);
}

#[test]
fn routing_and_recording_wait_for_none_of_the_gates_locks() {
    // Every lock of the gate held: the window held, the canary's errors only ask for an
    // evaluation, and no rule fires meanwhile.
    let gate = canary_with_flag("new_api");
    assert!(
        recorded_while_held(&gate, true),
        "routing or recording waited for a lock"
    );
    // The writer, let go after the window, makes the evaluation asked for, as every holder of
    // the window would as it lets go.
    assert_eq!(gate.environment(), Environment::Production);
    let history = gate.rollback_history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].trigger, RollbackTrigger::Automatic);
    // The window free, a rule fires while a write holds the writer lock: the rollback is left
    // to the writer, made as it lets go.
    let gate = canary_with_flag("new_api");
    assert!(
        recorded_while_held(&gate, false),
        "a firing rule waited for a lock"
    );
    assert_eq!(gate.environment(), Environment::Production);
    let history = gate.rollback_history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].trigger, RollbackTrigger::Automatic);
}

/// Routes and records 20,000 requests on another thread, a third of the canary's failing,
/// while this one holds the gate's writer lock (a write storing itself), its rollback records
/// and its change feed, and with `window` the judge's window (an evaluation); whether that
/// thread was done within 30 s. The locks are let go either way, so that a blocked thread
/// ends and the test fails, not hangs.
fn recorded_while_held(gate: &PromotionGateManager, window: bool) -> bool {
    let writer = gate.shared.lock_writer();
    let records = gate.shared.lock_records();
    let window = window.then(|| gate.shared.monitor.evaluation());
    let feed = gate.shared.changes.held();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..20_000 {
                let decision = gate.route_request(&format!("user-{i}"));
                // Canary errors too: the quick check and a firing rule must not wait either.
                let success = !decision.is_canary || i % 3 != 0;
                gate.record_outcome(&decision, success, Duration::from_millis(3));
                let stage = decision.stage;
                gate.record_for(stage, decision.is_canary, true, Duration::from_millis(2));
            }
            done.send(()).unwrap();
        });
        let finished = finished.recv_timeout(Duration::from_secs(30));
        drop((feed, window, records, writer));
        finished.is_ok()
    })
}

mod fleet;
mod followed;

#[test]
fn a_swap_that_turns_a_release_flag_on_in_canary_starts_a_rollout_and_no_other_write_does() {
    let dir = crate::store::scratch::Scratch::new("swap-next-release");
    let gate = gate_on(sqlite_store(&dir));
    let stored = || {
        let settings = sqlite_store(&dir).unwrap();
        let store = crate::store::open(&settings, &gate.config().gate).unwrap();
        store.load().unwrap().unwrap().release
    };
    gate.promote(Environment::Canary {
        traffic_percent: 10.0,
    })
    .unwrap();
    let rollout = stored().rollout();
    assert_eq!(
        rollout,
        Some(stored().version),
        "a new rollout out of Production"
    );
    // A flag turned on and off, a policy-only swap, a ramp down: the same release.
    gate.enable_feature("x").unwrap();
    gate.disable_feature("x").unwrap();
    let mut policy = gate.config();
    policy.max_rollback_history += 1;
    gate.swap_config(policy).unwrap();
    gate.promote(Environment::Canary {
        traffic_percent: 5.0,
    })
    .unwrap();
    assert_eq!(stored().rollout(), rollout, "{:?}", stored());
    // The operator's replacement with a release flag turned on at the same split: the next
    // release, numbered by its write.
    let mut next = gate.config();
    next.feature_flags = vec!["v2".into()];
    gate.swap_config(next).unwrap();
    let release = stored();
    assert_eq!(release.rollout(), Some(release.version), "{release:?}");
}

#[test]
fn a_write_that_changes_no_flag_frees_the_flag_sets_a_thread_let_go_of() {
    // Two stored sets: the canary's (`new_api`, `stable_ui`) and the stable version's.
    let gate = gate(PromotionConfig {
        environment: canary(50.0),
        feature_flags: vec!["new_api".into()],
        graduated_flags: vec!["stable_ui".into()],
        ..Default::default()
    });
    let kept = || gate.lock_writer().flag_index.reclaimed();
    std::thread::scope(|scope| {
        // Thread T routes both cohorts and reads their flags when asked, remembering the two
        // sets it read last.
        let (ask, asked) = std::sync::mpsc::channel::<()>();
        let (done, read) = std::sync::mpsc::channel();
        let on_t = &gate;
        scope.spawn(move || {
            for () in asked {
                let read: usize = (0..200)
                    .map(|i| on_t.route_request(&format!("u{i}")).enabled_features.len())
                    .sum();
                done.send(read).unwrap();
            }
        });
        let read_on_t = || {
            ask.send(()).unwrap();
            assert!(read.recv().unwrap() > 0, "T read the flags");
        };
        read_on_t();
        // Enough flag changes that T's canary set is taken out of its slot: kept for T.
        for i in 0..300 {
            gate.enable_feature(format!("toggle_{i}")).unwrap();
        }
        assert_eq!(kept(), 1, "T's canary set, kept");
        read_on_t(); // T lets go of it
        assert_eq!(kept(), 1, "a read frees nothing");
        // A write that stores no flag set frees it all the same.
        gate.swap_slo(SloConfig::default()).unwrap();
        assert_eq!(kept(), 0, "an SLO swap frees what no thread holds");
        // And so does a write that publishes a snapshot with the same flags.
        for i in 300..600 {
            gate.enable_feature(format!("toggle_{i}")).unwrap();
        }
        assert_eq!(kept(), 1);
        read_on_t();
        let mut config = gate.config();
        config.environment = canary(60.0);
        gate.swap_config(config).unwrap();
        assert_eq!(kept(), 0, "a config swap frees what no thread holds");
        drop(ask);
    });
}
