//! How a [`StoreConfig`] is read from a document: `{"sqlite": {...}}` or `{"etcd": {...}}`, and
//! an error that names the value and those two forms when it is neither. serde's derived reader
//! said only "expected value" for a number, a list, an empty map or a map naming both stores,
//! and "invalid type: unit variant, expected newtype variant" for the bare string `"sqlite"`.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Unexpected, Visitor};
use std::fmt;

use super::StoreConfig;
use crate::error::quoted_within;

/// The stores' names, as serde lists them in an unknown variant's error.
const NAMES: &[&str] = &["sqlite", "etcd"];

/// The forms a `store` takes, as its errors list them.
const FORMS: &str = r#"{"sqlite": {"path": ...}} or {"etcd": {...}}"#;

/// The most of a refused text (a string given as the store, a second key) these errors show
/// before `...(N bytes)`: little enough that the forms after it fit within the
/// [`MAX_SHOWN_VALUE_BYTES`](crate::MAX_SHOWN_VALUE_BYTES) a library message shows (a path
/// given for the store, `"store": "/var/lib/pg/checkout.db"`, is a likely mistake).
const SHOWN_TEXT_BYTES: usize = 48;

/// `text` quoted, at most [`SHOWN_TEXT_BYTES`] of it shown.
fn shown(text: &str) -> String {
    quoted_within(text, SHOWN_TEXT_BYTES)
}

struct StoreVisitor;

impl<'de> Visitor<'de> for StoreVisitor {
    type Value = StoreConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(FORMS)
    }

    /// A text is never a store (`"sqlite"` lacks its settings): refused, shown shortened.
    fn visit_str<E: de::Error>(self, text: &str) -> Result<StoreConfig, E> {
        let string = format!("string {}", shown(text));
        Err(E::invalid_type(Unexpected::Other(&string), &self))
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<StoreConfig, M::Error> {
        let Some(name) = map.next_key::<String>()? else {
            return Err(de::Error::invalid_value(
                Unexpected::Other("an empty map"),
                &self,
            ));
        };
        let store = match name.as_str() {
            "sqlite" => StoreConfig::Sqlite(map.next_value()?),
            "etcd" => StoreConfig::Etcd(map.next_value()?),
            _ => return Err(de::Error::unknown_variant(&name, NAMES)),
        };
        match map.next_key::<String>()? {
            None => Ok(store),
            Some(second) => {
                let second = format!("a second key {}", shown(&second));
                Err(de::Error::invalid_value(Unexpected::Other(&second), &self))
            }
        }
    }
}

impl<'de> Deserialize<'de> for StoreConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StoreVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PromotionConfig;

    /// The message of reading `store` as a config's `store`.
    fn refusal(store: &str) -> String {
        let json = format!(r#"{{"store": {store}}}"#);
        PromotionConfig::from_json(&json).unwrap_err().to_string()
    }

    #[test]
    fn a_value_of_no_form_is_named_with_the_two_forms() {
        for (store, shown) in [
            ("5", "invalid type: integer `5`"),
            ("-1.5", "invalid type: floating point `-1.5`"),
            ("true", "invalid type: boolean `true`"),
            ("[]", "invalid type: sequence"),
            (
                r#"[{"sqlite": {"path": "a.db"}}]"#,
                "invalid type: sequence",
            ),
            (r#""sqlite""#, r#"invalid type: string "sqlite""#),
            (r#""etcd""#, r#"invalid type: string "etcd""#),
            ("{}", "invalid value: an empty map"),
            (
                r#"{"sqlite": {"path": "a.db"}, "etcd": {"endpoints": ["http://a:1"], "prefix": "/p"}}"#,
                r#"invalid value: a second key "etcd""#,
            ),
        ] {
            let message = refusal(store);
            assert!(
                message.starts_with(&format!(
                    "invalid JSON config: store: {shown}, expected {FORMS} at line 1"
                )),
                "{store}: {message}"
            );
        }
    }

    #[test]
    fn a_long_text_is_shown_shortened_with_its_length_and_the_forms_still_follow() {
        let long = "x".repeat(100_000);
        let cut = "x".repeat(SHOWN_TEXT_BYTES);
        for (store, shown) in [
            (
                format!("{long:?}"),
                format!(r#"string "{cut}"...(100000 bytes)"#),
            ),
            (
                format!(r#"{{"sqlite": {{"path": "a.db"}}, {long:?}: 1}}"#),
                format!(r#"a second key "{cut}"...(100000 bytes)"#),
            ),
            (
                r#""/var/lib/promotion-gates/checkout-service.db""#.to_string(),
                r#"string "/var/lib/promotion-gates/checkout-service.db""#.to_string(),
            ),
        ] {
            let message = refusal(&store);
            assert!(
                message.contains(&format!("{shown}, expected {FORMS} at line 1")),
                "{message}"
            );
        }
    }

    #[test]
    fn each_form_is_read_and_a_bad_setting_keeps_its_path() {
        let read =
            |json: &str| serde_json::from_str::<StoreConfig>(json).map_err(|e| e.to_string());
        assert!(matches!(
            read(r#"{"sqlite": {"path": "a.db"}}"#),
            Ok(StoreConfig::Sqlite(_))
        ));
        assert!(matches!(
            read(r#"{"etcd": {"endpoints": ["http://a:1"], "prefix": "/p"}}"#),
            Ok(StoreConfig::Etcd(_))
        ));
        for (store, expected) in [
            (
                r#"{"redis": {}}"#,
                "store: unknown variant `redis`, expected `sqlite` or `etcd`",
            ),
            (
                r#"{"sqlite": 5}"#,
                "store.sqlite: invalid type: integer `5`",
            ),
            (
                r#"{"sqlite": {"file": "a.db"}}"#,
                "store.sqlite.file: unknown field `file`",
            ),
            (
                r#"{"etcd": {"prefix": "/p"}}"#,
                "store.etcd: missing field `endpoints`",
            ),
        ] {
            let message = refusal(store);
            assert!(message.contains(expected), "{store}: {message}");
        }
        // No store at all: `null` is the absent store, as before.
        let config = PromotionConfig::from_json(r#"{"store": null}"#).unwrap();
        assert_eq!(config.store, None);
    }
}
