//! The specification's log lines about the judge's verdicts, through `tracing`, and how a log
//! line shows a value a client chose (a request id).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::Environment;
use crate::error::{MAX_SHOWN_VALUE_BYTES, write_escaped};
use crate::history::RollbackTrigger;
use crate::judge::Recommendation;
use crate::judge::{Digits, HEALTHY_FROM, apart};
use crate::verdict::Verdict;

/// A value a client chose (a request id: any bytes), as log lines show it: quoted, with `"`,
/// `\`, control characters (a line feed, a NUL) and other characters Rust's `{:?}` escapes
/// written as escapes (`\n`, `\0`, `\u{1b}`), and so are the characters the library calls
/// invisible (U+2800, the Hangul fillers), each byte that is not UTF-8 as `\xNN`, and at
/// most [`MAX_SHOWN_VALUE_BYTES`] of it (cut before a character, not inside), followed by
/// `...(N bytes)` when cut, as error messages show values. So a value never starts a new log
/// line, never cuts one short (a NUL ends a C string), and never makes a huge line. Written
/// without allocating.
pub(crate) struct LoggedBytes<'a>(pub(crate) &'a [u8]);

impl fmt::Display for LoggedBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        let cut = cut_before_character(bytes, MAX_SHOWN_VALUE_BYTES);
        f.write_str("\"")?;
        for chunk in bytes[..cut].utf8_chunks() {
            for c in chunk.valid().chars() {
                write_escaped(f, c)?;
            }
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        f.write_str("\"")?;
        if cut < bytes.len() {
            write!(f, "...({} bytes)", bytes.len())?;
        }
        Ok(())
    }
}

/// Where `bytes` is cut to show at most `bound` of them: at the bound, or, when the bound
/// falls inside a UTF-8 character (one to three of its continuation bytes before it), at the
/// start of that character. Bytes that are no character's (a run of continuation bytes, a lead
/// byte not followed by a whole character) are cut at the bound: they are shown as `\xNN`
/// anyway, and backing over them would hide them.
fn cut_before_character(bytes: &[u8], bound: usize) -> usize {
    if bytes.len() <= bound {
        return bytes.len();
    }
    // A character is at most 4 bytes: its start is at most 3 bytes before the bound.
    let back = (1..=3.min(bound)).find(|&back| bytes[bound - back] & 0xC0 != 0x80);
    let Some(start) = back.map(|back| bound - back) else {
        return bound;
    };
    let len = match bytes[start] {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => return bound,
    };
    let straddles = bytes
        .get(start..start + len)
        .is_some_and(|character| start + len > bound && std::str::from_utf8(character).is_ok());
    if straddles { start } else { bound }
}

/// How long a judge's line, once written, is not written again while its condition holds in
/// the same stage: the record path judges every `evaluation_interval` (1 s by default).
pub(crate) const VERDICT_LINE_REPEAT: Duration = Duration::from_secs(60);

/// The judge's lines of a gate, as the specification writes them: an error for an SLO
/// violation (a rule fired); else, for a canary (or Staging) with enough samples, an error when
/// its compliance in the window is below `slo_threshold` (its promotion is refused), or a
/// warning when its health score is below the healthy threshold (0.9: it nears the rollback
/// score, 0.8); nothing otherwise. A MONITOR whose only cause is evidence still to gather (a
/// healthy canary early in its stage) logs nothing.
///
/// A line is written when its condition begins, or its stage does, then again at most every
/// [`VERDICT_LINE_REPEAT`] while it holds. Two words, no lock (the record path writes them): two
/// evaluations racing may write one line twice.
#[derive(Debug, Default)]
pub(crate) struct VerdictLines {
    /// The stage of the last line written.
    stage: AtomicU64,
    /// The last line's kind ([`Line`], top two bits) and the monotonic second it was written.
    last: AtomicU64,
}

/// Which of the judge's lines a verdict calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    Quiet = 0,
    Violation = 1,
    BelowSloThreshold = 2,
    BelowHealthy = 3,
}

impl Line {
    fn of(verdict: &Verdict) -> Self {
        let evidence = verdict.evidence();
        if verdict.calls_for_rollback() {
            return Line::Violation;
        }
        let judged = evidence.environment != Environment::Production
            && verdict.recommendation() != Recommendation::NoData
            && evidence.sufficient_data();
        if !judged {
            Line::Quiet
        } else if evidence.below_slo_threshold() {
            Line::BelowSloThreshold
        } else if evidence.health_score < HEALTHY_FROM {
            Line::BelowHealthy
        } else {
            Line::Quiet
        }
    }
}

impl VerdictLines {
    /// Logs what `verdict`, which the gate acts on, calls for, unless written lately; `now` is
    /// the gate's monotonic clock.
    pub(crate) fn log(&self, verdict: &Verdict, now: Duration) {
        let line = Line::of(verdict);
        let stage = verdict.evidence().stage.get();
        if self.due(stage, line, now) {
            write(verdict, line);
        }
    }

    /// Notes that no rule fires (the record path's evaluation found none, and so built no
    /// verdict), so the next violation is written as one begun again. A line about compliance
    /// or the score stays: with no verdict built, nothing says whether its condition ended.
    pub(crate) fn no_violation(&self) {
        let last = self.last.load(Ordering::Relaxed);
        if last >> 62 == Line::Violation as u64 {
            // Unless another line was written meanwhile.
            let _ = self
                .last
                .compare_exchange(last, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Whether `line` is to be written now (and then noted as written).
    fn due(&self, stage: u64, line: Line, now: Duration) -> bool {
        const SECONDS: u64 = (1 << 62) - 1;
        let second = now.as_secs() & SECONDS;
        let last = self.last.load(Ordering::Relaxed);
        if line == Line::Quiet {
            if last != 0 {
                self.last.store(0, Ordering::Relaxed);
            }
            return false;
        }
        let repeat = self.stage.load(Ordering::Relaxed) == stage
            && last >> 62 == line as u64
            && second.saturating_sub(last & SECONDS) < VERDICT_LINE_REPEAT.as_secs();
        if repeat {
            return false;
        }
        self.stage.store(stage, Ordering::Relaxed);
        self.last
            .store((line as u64) << 62 | second, Ordering::Relaxed);
        true
    }
}

/// Logs a rollback made (of the release, manual or automatic, or of a flag by
/// `disable_feature`): the `promotion.rollback` error line, with its reason, the environment it
/// rolled back and its trigger. Every rollback made writes it once, after it is made.
pub(crate) fn log_rollback(reason: &str, previous: Environment, trigger: RollbackTrigger) {
    tracing::error!(
        reason = %crate::error::quoted_whole(reason),
        previous_env = %previous,
        trigger = trigger.name(),
        "promotion.rollback"
    );
}

/// Writes `line` for `verdict`.
fn write(verdict: &Verdict, line: Line) {
    let evidence = verdict.evidence();
    let stage = evidence.stage.get();
    let (compliance, slo_threshold) =
        (evidence.subject().judged_compliance, evidence.slo_threshold);
    match line {
        Line::Quiet => {}
        Line::Violation => tracing::error!(stage, "SLO violation: {}", verdict.violation()),
        Line::BelowSloThreshold => {
            let [shown, threshold] = apart(
                (compliance, Digits::Fixed(4)),
                (slo_threshold, Digits::Fixed(4)),
                false,
            );
            tracing::error!(
                stage,
                compliance,
                slo_threshold,
                "Canary SLO compliance {shown} below threshold {threshold}"
            );
        }
        Line::BelowHealthy => {
            let health_score = evidence.health_score;
            let [shown, _] = apart(
                (health_score, Digits::Fixed(4)),
                (HEALTHY_FROM, Digits::Shortest),
                false,
            );
            tracing::warn!(
                stage,
                health_score,
                "Canary health score {shown} below threshold"
            );
        }
    }
}

#[cfg(test)]
#[path = "../../tests/common/log_lines.rs"]
#[allow(
    dead_code,
    reason = "shared with the integration tests, which use all of it"
)]
pub(crate) mod log_lines;

#[cfg(test)]
mod tests {
    use super::LoggedBytes;
    use super::log_lines::LogLines;
    use crate::MAX_SHOWN_VALUE_BYTES;
    use crate::judge::Recommendation;
    use crate::{Environment, PromotionConfig, PromotionGateManager};
    use crate::{SloAdmissionController, SloConfig};
    use std::time::Duration;

    #[test]
    fn an_automatic_rollback_logs_its_evidence_twice_not_three_times() {
        let gate = PromotionGateManager::new(
            PromotionConfig {
                environment: Environment::Canary {
                    traffic_percent: 100.0,
                },
                auto_rollback_enabled: true,
                ..Default::default()
            },
            SloAdmissionController::new(SloConfig::default()).unwrap(),
        )
        .unwrap();
        let lines = LogLines::default();
        lines.during(|| {
            for _ in 0..200 {
                let _ = gate.record_for(gate.stage(), true, false, Duration::from_millis(2));
            }
            let _ = gate.monitor_canary_health();
        });
        let history = gate.rollback_history();
        assert_eq!(history.len(), 1);
        let reason = &history[0].reason;
        let violation = reason.strip_prefix("automatic rollback: ").unwrap();
        let lines = lines.lines();
        let with_evidence: Vec<&String> = lines.iter().filter(|l| l.contains(violation)).collect();
        // The judge's "SLO violation" line, then the rollback's own "promotion.rollback" line.
        assert_eq!(with_evidence.len(), 2, "{lines:#?}");
        assert!(with_evidence[0].contains("SLO violation: "), "{lines:#?}");
        assert!(
            with_evidence[1].contains("promotion.rollback"),
            "{lines:#?}"
        );
    }

    #[test]
    fn the_kill_switch_logs_its_rollback_once() {
        let gate = PromotionGateManager::new(
            PromotionConfig {
                environment: Environment::Canary {
                    traffic_percent: 5.0,
                },
                ..Default::default()
            },
            SloAdmissionController::new(SloConfig::default()).unwrap(),
        )
        .unwrap();
        gate.enable_feature("dark_mode").unwrap();
        let lines = LogLines::default();
        lines.during(|| gate.disable_feature("dark_mode")).unwrap();
        let rollbacks = lines.lines_at(tracing::Level::ERROR);
        assert_eq!(rollbacks.len(), 1, "{:#?}", lines.lines());
        let line = &rollbacks[0];
        assert!(line.contains("promotion.rollback"), "{line}");
        assert!(line.contains(r#"trigger="flag_disabled""#), "{line}");
        assert!(line.contains(r#"reason="feature flag disabled""#), "{line}");
        assert!(line.contains("previous_env=Canary{5}"), "{line}");
        // Refused (the flag is off): nothing logged.
        let refused = LogLines::default();
        assert!(
            refused
                .during(|| gate.disable_feature("dark_mode"))
                .is_err()
        );
        assert!(refused.lines().is_empty(), "{:#?}", refused.lines());
    }

    /// A canary at 50 % (no warm-up) judged and acted on over 200 successes a cohort, `slow` of each at
    /// 600 ms (above the 500 ms latency target), the rest at 20 ms: the two cohorts alike.
    /// Returns its health and the lines logged.
    fn judged_alike(slow: u32) -> (PromotionGateManager, crate::CanaryHealth, Vec<String>) {
        let gate = PromotionGateManager::new(
            PromotionConfig {
                environment: Environment::Canary {
                    traffic_percent: 50.0,
                },
                ..Default::default()
            },
            SloAdmissionController::new(SloConfig {
                warm_up: Duration::ZERO,
                ..Default::default()
            })
            .unwrap(),
        )
        .unwrap();
        for i in 0..200 {
            let latency = Duration::from_millis(if i < slow { 600 } else { 20 });
            for canary in [false, true] {
                let _ = gate.record_for(gate.stage(), canary, true, latency);
            }
        }
        let lines = LogLines::default();
        let health = lines.during(|| gate.monitor_canary_health());
        (gate, health, lines.lines())
    }

    #[test]
    fn a_healthy_canary_still_gathering_evidence_logs_no_warning() {
        let (_, health, lines) = judged_alike(0);
        // MONITOR only because non-inferiority is not shown yet: its score is 1.
        assert_eq!(health.recommendation, Recommendation::Monitor);
        assert!(health.evidence.sufficient_data() && health.health_score >= 0.9);
        assert!(lines.is_empty(), "{lines:#?}");
    }

    #[test]
    fn a_canary_below_the_slo_threshold_logs_the_specifications_error() {
        let (gate, health, lines) = judged_alike(40);
        assert_ne!(
            health.recommendation,
            Recommendation::Rollback,
            "{health:?}"
        );
        assert_eq!(health.evidence.canary.compliance, 0.8);
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(
            lines[0].contains("Canary SLO compliance 0.8000 below threshold 0.9500"),
            "{lines:#?}"
        );
        // Judged again at once: the line holds, and is not written again.
        let again = LogLines::default();
        again.during(|| gate.monitor_canary_health());
        assert!(again.lines().is_empty(), "{:#?}", again.lines());
    }

    #[test]
    fn a_canary_scored_below_healthy_logs_the_specifications_warning() {
        let (_, mut health, _) = judged_alike(0);
        health.evidence.health_score = 0.85;
        let lines = LogLines::default();
        let verdict = crate::verdict::Verdict::new(health);
        lines.during(|| super::VerdictLines::default().log(&verdict, Duration::ZERO));
        let lines = lines.lines();
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(
            lines[0].contains("Canary health score 0.8500 below threshold"),
            "{lines:#?}"
        );
    }

    #[test]
    fn a_number_below_its_threshold_never_reads_equal_to_it() {
        let (_, health, _) = judged_alike(0);
        let logged = |compliance: f64, slo_threshold: f64, health_score: f64| {
            let mut health = health.clone();
            health.evidence.canary.compliance = compliance;
            health.evidence.canary.judged_compliance = compliance;
            health.evidence.slo_threshold = slo_threshold;
            health.evidence.health_score = health_score;
            let verdict = crate::verdict::Verdict::new(health);
            let lines = LogLines::default();
            lines.during(|| super::VerdictLines::default().log(&verdict, Duration::ZERO));
            (lines.lines(), verdict.evidence().to_string())
        };
        let (lines, evidence) = logged(0.99998, 0.99999, 1.0);
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(
            lines[0].contains("Canary SLO compliance 0.99998 below threshold 0.99999"),
            "{lines:#?}"
        );
        let (_, evidence_pct) = logged(0.999998, 0.999999, 1.0);
        assert!(
            evidence_pct.contains("compliance 99.9998% < slo_threshold 99.9999%"),
            "{evidence_pct}"
        );
        // Told apart in the short form: written as before.
        assert!(
            evidence.contains("compliance 99.998% < slo_threshold 99.999%"),
            "{evidence}"
        );
        let (lines, _) = logged(1.0, 0.95, 0.89996);
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(
            lines[0].contains("Canary health score 0.89996 below threshold"),
            "{lines:#?}"
        );
    }

    #[test]
    fn a_line_is_written_when_its_condition_begins_then_once_a_minute() {
        use super::{Line, VerdictLines};
        let lines = VerdictLines::default();
        let at = Duration::from_secs;
        assert!(lines.due(1, Line::BelowHealthy, at(10)));
        assert!(!lines.due(1, Line::BelowHealthy, at(11)));
        assert!(!lines.due(1, Line::BelowHealthy, at(69)));
        assert!(lines.due(1, Line::BelowHealthy, at(70)), "a minute on");
        assert!(
            lines.due(1, Line::BelowSloThreshold, at(71)),
            "another line"
        );
        assert!(
            lines.due(2, Line::BelowSloThreshold, at(72)),
            "another stage"
        );
        assert!(!lines.due(2, Line::Quiet, at(73)));
        assert!(lines.due(2, Line::BelowSloThreshold, at(74)), "begun again");
        assert!(lines.due(2, Line::Violation, at(75)));
        assert!(!lines.due(2, Line::Violation, at(76)));
        lines.no_violation();
        assert!(lines.due(2, Line::Violation, at(77)), "fired again");
        assert!(lines.due(2, Line::BelowHealthy, at(78)));
        lines.no_violation();
        assert!(
            !lines.due(2, Line::BelowHealthy, at(79)),
            "not the record path's to end"
        );
    }

    #[test]
    fn a_violation_that_ends_and_fires_again_on_the_record_path_is_written_again() {
        use crate::ManualClock;
        use std::sync::Arc;
        let clock = Arc::new(ManualClock::new());
        // All traffic on the canary, no auto rollback: the absolute rules judge it alone, and
        // keep judging after they fire.
        let gate = PromotionGateManager::with_clock(
            PromotionConfig {
                environment: Environment::Canary {
                    traffic_percent: 100.0,
                },
                auto_rollback_enabled: false,
                ..Default::default()
            },
            SloAdmissionController::new(SloConfig::default()).unwrap(),
            clock.clone(),
        )
        .unwrap();
        // `n` outcomes, then, past the evaluation interval, 128 more: a thread looks at the
        // clock every 64 records, and the look runs the paced full evaluation.
        let record = |n: usize, success: bool| {
            let outcome = || {
                let _ = gate.record_for(gate.stage(), true, success, Duration::from_millis(5));
            };
            (0..n).for_each(|_| outcome());
            clock.advance(Duration::from_millis(1100));
            (0..128).for_each(|_| outcome());
        };
        let violations = |lines: &LogLines| {
            lines
                .lines()
                .iter()
                .filter(|l| l.contains("SLO violation: "))
                .count()
        };
        let lines = LogLines::default();
        lines.during(|| {
            record(200, false);
            assert_eq!(violations(&lines), 1, "{:#?}", lines.lines());
            // Diluted below every limit (328 errors in 40,600): no rule fires.
            for _ in 0..3 {
                record(13_300, true);
            }
            assert_eq!(violations(&lines), 1, "{:#?}", lines.lines());
            // Within the minute, it fires again: a violation begun again, written again.
            record(4_000, false);
        });
        assert_eq!(violations(&lines), 2, "{:#?}", lines.lines());
        assert!(gate.rollback_history().is_empty());
    }

    /// Logs one line from a call site of its own, reached nowhere else.
    fn probe(n: u32) {
        tracing::info!(n, "probe");
    }

    #[test]
    fn a_call_site_first_reached_on_another_thread_still_reaches_this_threads_lines() {
        let lines = LogLines::default();
        lines.during(|| {
            std::thread::spawn(|| probe(1)).join().unwrap();
            probe(2);
        });
        assert_eq!(lines.lines(), vec![" message=probe n=2".to_string()]);
    }

    #[test]
    fn a_logged_value_is_quoted_escaped_and_bounded() {
        let shown = |bytes: &[u8]| LoggedBytes(bytes).to_string();
        assert_eq!(shown(b"user-1"), r#""user-1""#);
        assert_eq!(shown(b"a\nb"), r#""a\nb""#, "a line feed starts no line");
        assert_eq!(shown(b"a\0b"), r#""a\0b""#, "a NUL cuts no C string");
        assert_eq!(shown(b"\r\t\x1b[31m"), r#""\r\t\u{1b}[31m""#);
        assert_eq!(shown(br#"say "hi" \ it's"#), r#""say \"hi\" \\ it's""#);
        assert_eq!(shown(&[b'a', 0xff, b'b']), r#""a\xffb""#);
        assert_eq!(shown("é".as_bytes()), r#""é""#);
        let long = vec![b'x'; 1000];
        assert_eq!(
            shown(&long),
            format!("\"{}\"...(1000 bytes)", "x".repeat(MAX_SHOWN_VALUE_BYTES))
        );
        // Cut before a character, not inside it.
        let mut accents = vec![b'x'];
        accents.extend("é".repeat(MAX_SHOWN_VALUE_BYTES).as_bytes());
        let cut = shown(&accents);
        assert!(!cut.contains("\\x"), "{cut}");
        assert!(
            cut.starts_with("\"xéé") && cut.ends_with(&format!("\"...({} bytes)", accents.len()))
        );
        // A 4-byte character straddling the bound (3 of its bytes before it): cut before it.
        let emoji = format!("x{}", "😀".repeat(100));
        assert_eq!(
            shown(emoji.as_bytes()),
            format!("\"x{}\"...(401 bytes)", "😀".repeat(39))
        );
        // Continuation bytes that are no character's are shown up to the bound, not hidden.
        let continuations = [0x80; 200];
        assert_eq!(
            shown(&continuations),
            format!(
                "\"{}\"...(200 bytes)",
                r"\x80".repeat(MAX_SHOWN_VALUE_BYTES)
            )
        );
        // Nor are those after a lead byte whose character ends before the bound.
        let mut after_lead = vec![b'x'; MAX_SHOWN_VALUE_BYTES - 3];
        after_lead.extend([0xC3, 0x80, 0x80, 0x80, 0x80]);
        assert_eq!(
            shown(&after_lead),
            format!(
                "\"{}À\\x80\"...(162 bytes)",
                "x".repeat(MAX_SHOWN_VALUE_BYTES - 3)
            )
        );
        // Never a control character, whatever the bytes.
        let every: Vec<u8> = (0..=255).collect();
        assert!(!shown(&every).chars().any(char::is_control));
    }
}
