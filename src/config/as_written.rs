//! Refused numbers shown as a document wrote them. Validation sees a config's values after
//! they were read: an integer given to an `f64` field (`18446744073709551615` reads as
//! 18446744073709551616.0), a duration in milliseconds made a `Duration` (to the nanosecond),
//! a number written `2.50` or `1E3`. A refusal that showed the value as read named a number
//! the document does not hold (`latency_target_ms = 18446744073709552000`); a reader of a
//! document looks the field up in it ([`written_json_number`]) and, when the number written
//! there [`reads_as`] the value refused, shows that
//! ([`ConfigError::as_written`](crate::ConfigError::as_written)).
//!
//! The library does so in the refusals of the documents a host hands it
//! ([`PromotionConfig::from_json`](crate::PromotionConfig::from_json),
//! [`SloConfig::from_json`](crate::SloConfig::from_json), and the C ABI's documents); the CLI
//! does it for TOML too. A config read from a state store is refused with its values as read.

use crate::error::{shown_millis, shown_number};

/// The number written at `field` in the JSON document `json`, as it is written there
/// (`1.50`, `-0.0`, `18446744073709551615`): `field` is a path as this library's errors name
/// one (`slo.latency_target_ms`, `environment.canary.traffic_percent`, `stages[0].duration_s`).
/// `None` when that field holds no number (it is absent, or holds a text, an object...), or
/// when the document is no JSON before it.
///
/// One pass over the document, for a refusal's message: not for a request's path.
///
/// # Example
/// ```
/// use promotion_gates::written_json_number;
///
/// let json = r#"{"environment": {"canary": {"traffic_percent": 1.50}}, "gate": "1"}"#;
/// assert_eq!(written_json_number(json, "environment.canary.traffic_percent"), Some("1.50"));
/// assert_eq!(written_json_number(r#"{"a": [0, -0.0]}"#, "a[1]"), Some("-0.0"));
/// assert_eq!(written_json_number(json, "gate"), None); // a text
/// assert_eq!(written_json_number(json, "slo_threshold"), None); // absent
/// ```
pub fn written_json_number<'j>(json: &'j str, field: &str) -> Option<&'j str> {
    super::tiny_numbers::number_at(json.as_bytes(), field)
}

/// Whether the number `written` in a document (JSON's form, or TOML's: `1_000`, `+5`,
/// `0x10`, `inf`) is read by this library as the value a refusal shows as `shown`: as an
/// integer, as an `f64` ([`shown_number`]), or as a duration of that many milliseconds
/// ([`shown_millis`], as the `SloConfig`'s `..._ms` fields read one). A refusal shows the
/// number written in place of its own only then, so that a value that did not come from the
/// document (a command-line flag's, a value worked out from others) is not shown as the
/// document's: unless the two read as the same duration to the nanosecond, whatever the field
/// (`1.0000004` reads as `1` then; the reader does not know which fields are durations), so a
/// caller whose values may come from elsewhere leaves those fields out, as the CLI does with
/// its flags'.
///
/// # Example
/// ```
/// use promotion_gates::reads_as;
///
/// assert!(reads_as("18446744073709551615", "18446744073709552000")); // an f64 or a duration
/// assert!(reads_as("2.50", "2.5"));
/// assert!(reads_as("-0.0", "-0") && reads_as("-0.0", "0")); // a zero, or a duration of 0
/// assert!(reads_as("0.0000014", "0.000001")); // a duration, to the nanosecond
/// assert!(reads_as("1_000", "1000") && reads_as("0x10", "16"));
/// assert!(!reads_as("100.5", "100"));
/// assert!(!reads_as("five", "5"));
/// ```
pub fn reads_as(written: &str, shown: &str) -> bool {
    let written = written.trim();
    if written == shown {
        return true;
    }
    // TOML's underscores between digits and its `+`; JSON has neither.
    let plain: String = written.chars().filter(|&c| c != '_').collect();
    let plain = plain.strip_prefix('+').unwrap_or(&plain);
    if integer(plain).is_some_and(|integer| integer.to_string() == shown) {
        return true;
    }
    let Ok(value) = plain.parse::<f64>() else {
        return false;
    };
    shown_number(value) == shown
        || value.to_string() == shown
        || crate::slo::duration_of_millis(value).is_some_and(|d| shown_millis(d) == shown)
}

/// `number` as an integer: decimal, or TOML's hexadecimal, octal or binary (`0x10`, `0o20`,
/// `0b10000`).
fn integer(number: &str) -> Option<i128> {
    let (negative, digits) = match number.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, number),
    };
    let magnitude = [("0x", 16), ("0o", 8), ("0b", 2)]
        .into_iter()
        .find_map(|(prefix, radix)| {
            digits
                .strip_prefix(prefix)
                .map(|rest| i128::from_str_radix(rest, radix))
        })
        .unwrap_or_else(|| digits.parse::<i128>())
        .ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_found_at_its_field_and_nowhere_else() {
        let json = r#"{"a": {"b": [1, {"c": 18446744073709551615}]}, "c": "2", "d": 3e0}"#;
        assert_eq!(
            written_json_number(json, "a.b[1].c"),
            Some("18446744073709551615")
        );
        assert_eq!(written_json_number(json, "a.b[0]"), Some("1"));
        assert_eq!(written_json_number(json, "d"), Some("3e0"));
        for absent in ["c", "a", "a.b", "a.b[2]", "b", "", "a.b[1]"] {
            assert_eq!(written_json_number(json, absent), None, "{absent}");
        }
        // No JSON before the field: nothing is found.
        assert_eq!(written_json_number(r#"{"x": tru, "d": 1}"#, "d"), None);
    }

    #[test]
    fn a_written_number_reads_as_the_values_it_makes_and_no_other() {
        for (written, shown) in [
            ("1e300", "1e300"),
            ("1E2", "100"),
            ("100.0", "100"),
            ("0.10", "0.1"),
            ("18446744073709551615", "18446744073709551615"),
            ("18446744073709551615", "18446744073709552000"),
            ("1e20", "100000000000000000000"),
            ("70000.0000014", "70000.000001"),
            ("-0.0", "-0"),
            ("-0.0", "0"),
            ("-1_0", "-10"),
            ("+5", "5"),
            ("0o17", "15"),
            ("0b11", "3"),
            ("inf", "inf"),
            ("-inf", "-inf"),
        ] {
            assert!(reads_as(written, shown), "{written} as {shown}");
        }
        for (written, shown) in [
            ("100.001", "100"),
            ("100.0000006", "100"),
            ("5", "6"),
            ("0x10", "10"),
            ("1", "0.001"),
            ("", "0"),
            ("nan", "0"),
        ] {
            assert!(!reads_as(written, shown), "{written} as {shown}");
        }
    }
}
