//! Serde of a duration as milliseconds (a float, so sub-millisecond values survive).

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    from_millis(f64::deserialize(d)?)
}

/// The duration of `ms` milliseconds, or an error naming `ms` (negative, not finite, or too
/// long for a `Duration`).
pub(super) fn from_millis<E: serde::de::Error>(ms: f64) -> Result<Duration, E> {
    Duration::try_from_secs_f64(ms / 1e3).map_err(|_| {
        E::custom(format!(
            "{ms} is not a duration in milliseconds (finite, not negative)"
        ))
    })
}
