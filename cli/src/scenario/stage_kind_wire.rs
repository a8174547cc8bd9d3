//! How a stage's [`StageKind`] is read from a document: `"canary"` or `"staging"`, and an
//! error that names the value and those two forms when it is neither. serde's derived reader
//! said only "expected value" for a number, `null` or a list, and "expected unit" for
//! `{"canary": 1}`.

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Unexpected, Visitor};
use std::fmt;

use super::StageKind;

/// The names a stage kind has, as serde lists them in an unknown variant's error.
const NAMES: &[&str] = &["canary", "staging"];

/// The forms a stage's `environment` takes, as its errors list them.
const FORMS: &str = r#""canary" or "staging""#;

#[derive(Clone, Copy)]
struct StageKindVisitor;

impl<'de> Visitor<'de> for StageKindVisitor {
    type Value = StageKind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(FORMS)
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<StageKind, E> {
        match name {
            "canary" => Ok(StageKind::Canary),
            "staging" => Ok(StageKind::Staging),
            _ => Err(E::unknown_variant(name, NAMES)),
        }
    }

    /// The map form the derived reader took too, `{"staging": null}` (in TOML
    /// `{staging = {}}`): one name, holding nothing.
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<StageKind, M::Error> {
        let Some(name) = map.next_key::<String>()? else {
            return Err(de::Error::invalid_value(
                Unexpected::Other("an empty map"),
                &self,
            ));
        };
        let kind = self.visit_str(&name)?;
        map.next_value::<Nothing>()?;
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_value(
                Unexpected::Other("a map with a second key"),
                &self,
            ));
        }
        Ok(kind)
    }
}

impl<'de> Deserialize<'de> for StageKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StageKindVisitor)
    }
}

/// What a name in the map form may hold, as its errors say.
const NOTHING: &str = r#"nothing (null): or write the name alone, "canary" or "staging", and a canary's share in the stage's traffic_percent"#;

/// What a name holds in the map form: nothing (`null`, or an empty table or list, as TOML,
/// which has no `null`, writes it).
struct Nothing;

impl<'de> Visitor<'de> for Nothing {
    type Value = Nothing;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(NOTHING)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Nothing, E> {
        Ok(Nothing)
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Nothing, M::Error> {
        match map.next_key::<IgnoredAny>()? {
            None => Ok(Nothing),
            Some(_) => Err(de::Error::invalid_type(Unexpected::Map, &self)),
        }
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Nothing, S::Error> {
        match seq.next_element::<IgnoredAny>()? {
            None => Ok(Nothing),
            Some(_) => Err(de::Error::invalid_type(Unexpected::Seq, &self)),
        }
    }
}

impl<'de> Deserialize<'de> for Nothing {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Nothing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Result<StageKind, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn each_form_is_read() {
        assert_eq!(read(r#""canary""#), Ok(StageKind::Canary));
        assert_eq!(read(r#""staging""#), Ok(StageKind::Staging));
        assert_eq!(read(r#"{"staging": null}"#), Ok(StageKind::Staging));
        assert_eq!(read(r#"{"canary": null}"#), Ok(StageKind::Canary));
    }

    #[test]
    fn a_value_of_no_form_is_named_with_the_two_forms() {
        for (json, shown) in [
            ("5", "invalid type: integer `5`"),
            ("null", "invalid type: null"),
            ("true", "invalid type: boolean `true`"),
            ("[]", "invalid type: sequence"),
            (r#"["canary"]"#, "invalid type: sequence"),
            ("{}", "invalid value: an empty map"),
            (
                r#"{"canary": null, "staging": null}"#,
                "invalid value: a map with a second key",
            ),
        ] {
            let error = read(json).unwrap_err();
            assert!(
                error.starts_with(&format!("{shown}, expected {FORMS}")),
                "{json}: {error}"
            );
        }
        let error = read(r#""prod""#).unwrap_err();
        assert!(
            error.starts_with("unknown variant `prod`, expected `canary` or `staging`"),
            "{error}"
        );
        let nothing = format!("expected {NOTHING}");
        for (json, shown) in [
            (r#"{"canary": 1}"#, "invalid type: integer `1`"),
            (r#"{"canary": "x"}"#, r#"invalid type: string "x""#),
            (r#"{"canary": {"traffic_percent": 5}}"#, "invalid type: map"),
            (r#"{"staging": [1]}"#, "invalid type: sequence"),
        ] {
            let error = read(json).unwrap_err();
            assert!(
                error.starts_with(&format!("{shown}, {nothing}")),
                "{json}: {error}"
            );
        }
    }
}
