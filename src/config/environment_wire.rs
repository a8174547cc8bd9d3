//! How an [`Environment`] is read from a document: `"staging"`, `"production"` or
//! `{"canary": {"traffic_percent": P}}`, and an error that names the value and those three
//! forms when it is none of them (serde's derived reader says only "expected value" for a
//! number, a list or `null`).

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Unexpected, Visitor};
use std::fmt;

use super::Environment;

/// The names an environment has, as serde lists them in an unknown variant's error.
const NAMES: &[&str] = &["canary", "staging", "production"];

/// The canary's fields, `{"traffic_percent": P}`: a map only (serde's derived reader of a struct
/// also takes a list, `{"canary": [5]}`, which no document of ours writes).
struct CanaryFields {
    traffic_percent: f64,
}

/// The one field a canary has.
const CANARY_FIELDS: &[&str] = &["traffic_percent"];

struct CanaryFieldsVisitor;

impl<'de> Visitor<'de> for CanaryFieldsVisitor {
    type Value = CanaryFields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"{"traffic_percent": P}"#)
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<CanaryFields, M::Error> {
        let mut traffic_percent = None;
        while let Some(field) = map.next_key::<String>()? {
            if field != "traffic_percent" {
                return Err(de::Error::unknown_field(&field, CANARY_FIELDS));
            }
            if traffic_percent.is_some() {
                return Err(de::Error::duplicate_field("traffic_percent"));
            }
            traffic_percent = Some(map.next_value::<f64>()?);
        }
        let traffic_percent =
            traffic_percent.ok_or_else(|| de::Error::missing_field("traffic_percent"))?;
        Ok(CanaryFields { traffic_percent })
    }
}

impl<'de> Deserialize<'de> for CanaryFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(CanaryFieldsVisitor)
    }
}

/// What `staging` or `production` holds in the map form the derived reader took,
/// `{"staging": null}`: nothing.
struct Nothing;

impl<'de> Visitor<'de> for Nothing {
    type Value = Nothing;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"nothing (null): or write the name alone, "staging" or "production""#)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Nothing, E> {
        Ok(Nothing)
    }
}

impl<'de> Deserialize<'de> for Nothing {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_unit(Nothing)
    }
}

#[derive(Clone, Copy)]
struct EnvironmentVisitor;

impl<'de> Visitor<'de> for EnvironmentVisitor {
    type Value = Environment;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#""staging", "production" or {"canary": {"traffic_percent": P}}"#)
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Environment, E> {
        match name {
            "staging" => Ok(Environment::Staging),
            "production" => Ok(Environment::Production),
            "canary" => Err(E::invalid_value(Unexpected::Str(name), &self)),
            _ => Err(E::unknown_variant(name, NAMES)),
        }
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Environment, M::Error> {
        let Some(name) = map.next_key::<String>()? else {
            return Err(de::Error::invalid_length(0, &self));
        };
        let environment = match name.as_str() {
            "canary" => {
                let fields: CanaryFields = map.next_value()?;
                Environment::Canary {
                    // −0, which validation takes as it equals 0, read as 0.
                    traffic_percent: fields.traffic_percent + 0.0,
                }
            }
            // The derived reader took these too ({"staging": null}).
            "staging" | "production" => {
                map.next_value::<Nothing>()?;
                self.visit_str(&name)?
            }
            _ => return Err(de::Error::unknown_variant(&name, NAMES)),
        };
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(2, &self));
        }
        Ok(environment)
    }
}

impl<'de> Deserialize<'de> for Environment {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EnvironmentVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Result<Environment, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn each_form_is_read() {
        assert_eq!(read(r#""staging""#), Ok(Environment::Staging));
        assert_eq!(read(r#""production""#), Ok(Environment::Production));
        assert_eq!(read(r#"{"staging": null}"#), Ok(Environment::Staging));
        assert_eq!(
            read(r#"{"canary": {"traffic_percent": 12.5}}"#),
            Ok(Environment::Canary {
                traffic_percent: 12.5
            })
        );
    }

    #[test]
    fn a_share_of_minus_zero_is_read_and_written_as_zero() {
        let Ok(Environment::Canary { traffic_percent }) =
            read(r#"{"canary": {"traffic_percent": -0.0}}"#)
        else {
            panic!("not a canary");
        };
        assert!(traffic_percent == 0.0 && traffic_percent.is_sign_positive());
        let written = serde_json::to_string(&Environment::Canary {
            traffic_percent: -0.0,
        })
        .unwrap();
        assert_eq!(written, r#"{"canary":{"traffic_percent":0.0}}"#);
    }

    #[test]
    fn a_value_of_no_form_is_named_with_the_three_forms() {
        let forms = r#"expected "staging", "production" or {"canary": {"traffic_percent": P}}"#;
        for (json, shown) in [
            ("5", "integer `5`"),
            ("-1.5", "floating point `-1.5`"),
            ("null", "null"),
            ("true", "boolean `true`"),
            ("[1]", "sequence"),
            (r#""canary""#, r#"string "canary""#),
        ] {
            let error = read(json).unwrap_err();
            assert!(
                error.contains(shown) && error.contains(forms),
                "{json}: {error}"
            );
        }
        let error = read("{}").unwrap_err();
        assert!(
            error.contains("invalid length 0") && error.contains(forms),
            "{error}"
        );
        let error = read(r#"{"canary": {"traffic_percent": 1}, "staging": null}"#).unwrap_err();
        assert!(error.contains("invalid length 2"), "{error}");
        let error = read(r#""bogus""#).unwrap_err();
        assert!(
            error.contains(
                "unknown variant `bogus`, expected one of `canary`, `staging`, `production`"
            ),
            "{error}"
        );
        let error = read(r#"{"canary": {"traffic_percent": 1, "x": 2}}"#).unwrap_err();
        assert!(error.contains("unknown field `x`"), "{error}");
        let fields = r#"expected {"traffic_percent": P}"#;
        for (json, shown) in [
            (r#"{"canary": [5]}"#, "sequence"),
            (r#"{"canary": null}"#, "null"),
            (r#"{"canary": 5}"#, "integer `5`"),
        ] {
            let error = read(json).unwrap_err();
            assert!(
                error.contains(shown) && error.contains(fields),
                "{json}: {error}"
            );
        }
        let nothing =
            r#"expected nothing (null): or write the name alone, "staging" or "production""#;
        for (json, shown) in [
            (r#"{"staging": 1}"#, "integer `1`"),
            (r#"{"production": {}}"#, "map"),
            (r#"{"staging": "x"}"#, r#"string "x""#),
        ] {
            let error = read(json).unwrap_err();
            assert!(
                error.starts_with(&format!("invalid type: {shown}, {nothing}")),
                "{json}: {error}"
            );
        }
        let error = read(r#"{"canary": {}}"#).unwrap_err();
        assert!(error.contains("missing field `traffic_percent`"), "{error}");
        let error =
            read(r#"{"canary": {"traffic_percent": 1, "traffic_percent": 2}}"#).unwrap_err();
        assert!(
            error.contains("duplicate field `traffic_percent`"),
            "{error}"
        );
        let error = read(r#"{"canary": {"traffic_percent": "5"}}"#).unwrap_err();
        assert!(error.contains(r#"string "5""#), "{error}");
    }
}
