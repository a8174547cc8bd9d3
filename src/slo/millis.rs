//! Serde of a duration as milliseconds (a float, so sub-millisecond values survive).

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

use crate::error::shown_number;

/// `d` in milliseconds: from its whole nanoseconds, one division that rounds once, so that a
/// duration a config can hold (whole nanoseconds, below 2^53 of them) is written as the `f64`
/// nearest its exact milliseconds ([`shown_millis`](crate::shown_millis)): `as_secs_f64() *
/// 1e3` rounded twice, and wrote 1 ns as 0.0000010000000000000002.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_nanos() as f64 / 1e6)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    from_millis(f64::deserialize(d)?)
}

/// The duration of `ms` milliseconds, to the nearest nanosecond, as the `..._ms` fields read
/// it; `None` when a `Duration` cannot hold it (negative, not finite, too long).
pub(crate) fn duration_of_millis(ms: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(ms / 1e3).ok()
}

/// The duration of `ms` milliseconds, or an error naming `ms` (as [`shown_number`] writes it):
/// negative, not finite, too long for a `Duration`, or above 0 but shorter than a `Duration`'s
/// nanosecond: read as 0, it would be refused as `= 0` (a latency target), not as written, or
/// taken as none (a tolerance).
pub(super) fn from_millis<E: serde::de::Error>(ms: f64) -> Result<Duration, E> {
    let duration = duration_of_millis(ms).ok_or_else(|| {
        let why = if ms.is_finite() && ms >= 0.0 {
            "longer than a duration holds (about 1.8e22 ms)"
        } else {
            "finite, not negative"
        };
        E::custom(format!(
            "{} is not a duration in milliseconds ({why})",
            shown_number(ms)
        ))
    })?;
    if ms > 0.0 && duration.is_zero() {
        return Err(E::custom(format!(
            "{} is not a duration in milliseconds: above 0 but below the shortest duration, \
             1 nanosecond (0.000001 ms), it would be read as 0",
            shown_number(ms)
        )));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use crate::SloConfig;

    fn refusal(json: &str) -> String {
        match SloConfig::from_json(json) {
            Ok(slo) => panic!("{json} was read as {slo:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_duration_too_long_for_a_duration_is_refused_for_that() {
        let refused = refusal(r#"{"latency_target_ms": 1e308}"#);
        assert!(
            refused.contains("latency_target_ms: 1e308 is not a duration in milliseconds (longer than a duration holds"),
            "{refused}"
        );
        let refused = refusal(r#"{"latency_target_ms": -1}"#);
        assert!(refused.contains("(finite, not negative)"), "{refused}");
    }

    #[test]
    fn a_refused_duration_is_shown_as_written() {
        // 1 ns, refused by validation: shown from whole nanoseconds, not as
        // 0.0000010000000000000002 (`as_secs_f64() * 1e3` rounds twice).
        let refused = refusal(r#"{"no_data_ms": 0.000001}"#);
        assert!(refused.contains("no_data_ms = 0.000001:"), "{refused}");
    }

    #[test]
    fn a_positive_duration_below_a_nanosecond_is_refused_as_written() {
        for (json, expected) in [
            (
                r#"{"latency_target_ms": 1e-7}"#,
                "latency_target_ms: 0.0000001 ",
            ),
            (
                r#"{"p99_budget_ms": 0.0000001}"#,
                "p99_budget_ms: 0.0000001 ",
            ),
            (
                r#"{"evaluation_interval_ms": 1e-9}"#,
                "evaluation_interval_ms: 0.000000001 ",
            ),
            (
                r#"{"latency_tolerance_ms": 1e-300}"#,
                "latency_tolerance_ms: 1e-300 ",
            ),
        ] {
            let e = refusal(json);
            assert!(e.contains(expected), "{e}");
            assert!(
                e.contains("below the shortest duration, 1 nanosecond"),
                "{e}"
            );
        }
        // One nanosecond, and zero where zero is allowed, are read as written.
        let slo =
            SloConfig::from_json(r#"{"latency_target_ms": 0.000001, "latency_tolerance_ms": 0}"#)
                .unwrap();
        assert_eq!(slo.latency_target.as_nanos(), 1);
        assert!(slo.latency_tolerance.is_zero());
    }

    #[test]
    fn a_duration_refused_after_it_was_read_is_shown_as_written() {
        // Read through an f64 and a Duration, u64::MAX ms was refused as 18446744073709552000.
        for (field, written) in [
            ("latency_target_ms", "18446744073709551615"),
            ("p99_budget_ms", "9007199254740993"),
            ("no_data_ms", "1e20"),
            ("warm_up_ms", "3600000.0000014"),
            ("latency_target_ms", "-0.0"),
            ("evaluation_interval_ms", "0.00099999"),
        ] {
            let e = refusal(&format!(r#"{{"{field}": {written}}}"#));
            assert!(
                e.starts_with(&format!("invalid {field} = {written}: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn a_huge_duration_is_named_in_scientific_notation() {
        let e = refusal(r#"{"latency_target_ms": 1e300}"#);
        assert!(
            e.contains("latency_target_ms: 1e300 is not a duration in milliseconds"),
            "{e}"
        );
        assert!(e.len() < 200, "{e}");
    }
}
