//! The specification's log lines about the judge's verdicts, through `tracing`, and how a log
//! line shows a value a client chose (a request id).

use std::fmt;

use crate::error::MAX_SHOWN_VALUE_BYTES;
use crate::judge::Recommendation;
use crate::verdict::Verdict;

/// A value a client chose (a request id: any bytes), as log lines show it: quoted, with `"`,
/// `\`, control characters (a line feed, a NUL) and other characters Rust's `{:?}` escapes
/// written as escapes (`\n`, `\0`, `\u{1b}`), each byte that is not UTF-8 as `\xNN`, and at
/// most [`MAX_SHOWN_VALUE_BYTES`] of it (cut before a character, not inside), followed by
/// `...(N bytes)` when cut, as error messages show values. So a value never starts a new log
/// line, never cuts one short (a NUL ends a C string), and never makes a huge line. Written
/// without allocating.
pub(crate) struct LoggedBytes<'a>(pub(crate) &'a [u8]);

impl fmt::Display for LoggedBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        let mut cut = bytes.len().min(MAX_SHOWN_VALUE_BYTES);
        // Back to the start of the character the bound falls in (at most 3 continuation bytes).
        while cut < bytes.len() && cut > 0 && bytes[cut] & 0xC0 == 0x80 {
            cut -= 1;
        }
        f.write_str("\"")?;
        for chunk in bytes[..cut].utf8_chunks() {
            for c in chunk.valid().chars() {
                // `'` needs no escape inside double quotes.
                match c {
                    '\'' => f.write_str("'")?,
                    c => write!(f, "{}", c.escape_debug())?,
                }
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

/// Logs what a verdict the gate acts on says: an error for an SLO violation (a rule fired), a
/// warning when the canary has enough samples and its health score is below the healthy
/// threshold (the recommendation is MONITOR), nothing otherwise.
pub(crate) fn log_verdict(verdict: &Verdict) {
    let evidence = verdict.evidence();
    if verdict.calls_for_rollback() {
        tracing::error!(
            stage = evidence.stage.get(),
            "SLO violation: {}",
            verdict.violation()
        );
    } else if verdict.recommendation() == Recommendation::Monitor && evidence.sufficient_data() {
        tracing::warn!(
            stage = evidence.stage.get(),
            health_score = evidence.health_score,
            "Canary health score {:.4} below threshold",
            evidence.health_score
        );
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
        // Never a control character, whatever the bytes.
        let every: Vec<u8> = (0..=255).collect();
        assert!(!shown(&every).chars().any(char::is_control));
    }
}
