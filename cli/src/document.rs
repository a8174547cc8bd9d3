//! Config documents on disk, JSON or TOML (by extension; otherwise by the first character),
//! read into the library's types with serde; every error names the field path, the value and
//! where it is, the same way in both formats.

use promotion_gates::{MAX_DOCUMENT_BYTES, check_json_document};
use serde::de::{DeserializeOwned, IgnoredAny};
use std::fs;
use std::path::Path;

use crate::error::CliError;

/// How a document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON.
    Json,
    /// TOML.
    Toml,
}

impl Format {
    /// `.json` and `.toml` by name; otherwise JSON if the text starts with `{`.
    pub fn of(path: &Path, text: &str) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("toml") => Format::Toml,
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            _ if text.trim_start().starts_with('{') => Format::Json,
            _ => Format::Toml,
        }
    }
}

/// Reads `path` as a `T`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, CliError> {
    let text = fs::read_to_string(path).map_err(|source| CliError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses `text`, read from `path`, as a `T`.
///
/// Every error names what is wrong the same way in both formats: an empty document, or one
/// longer than [`MAX_DOCUMENT_BYTES`] (the library's limit), is refused (`{}` in JSON takes
/// every default), and a value of the wrong type, an unknown variant or a
/// bad duration is reported under its field path (`slo.max_error_rate`, `stages[0].environment`),
/// as the library's own `from_json` does, with the line and column.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, CliError> {
    let refuse = |message: String| CliError::Parse {
        path: path.to_path_buf(),
        message,
    };
    if text.trim().is_empty() {
        return Err(refuse(
            "the document is empty (nothing but whitespace): write the fields to set \
             (in JSON, `{}` takes every default)"
                .into(),
        ));
    }
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(refuse(format!(
            "invalid document = {} bytes: at most {MAX_DOCUMENT_BYTES} bytes (MAX_DOCUMENT_BYTES), \
             the most the library reads",
            text.len()
        )));
    }
    match Format::of(path, text) {
        Format::Json => {
            // The library's check (one JSON object: serde would read an array as the fields in
            // order). A syntax error is left to the reader below, which names line and column.
            if serde_json::from_str::<IgnoredAny>(text).is_ok() {
                check_json_document(text, "config").map_err(|e| refuse(e.to_string()))?;
            }
            let mut json = serde_json::Deserializer::from_str(text);
            let value = serde_path_to_error::deserialize(&mut json).map_err(|e| {
                refuse(format!(
                    "invalid JSON: {}{}",
                    field_prefix(e.path()),
                    e.inner()
                ))
            })?;
            // Whatever follows the object (`{} {}`) is refused, as serde_json::from_str does.
            json.end()
                .map_err(|e| refuse(format!("invalid JSON: {e}")))?;
            Ok(value)
        }
        Format::Toml => {
            let toml_error = |field: String, e: &toml::de::Error| {
                // toml's Display draws the line with a caret; one line is enough here.
                let message = e.message().trim();
                refuse(match e.span().map(|span| position(text, span.start)) {
                    Some((line, column)) => {
                        format!("invalid TOML: {field}{message} at line {line} column {column}")
                    }
                    None => format!("invalid TOML: {field}{message}"),
                })
            };
            let document =
                toml::Deserializer::parse(text).map_err(|e| toml_error(String::new(), &e))?;
            serde_path_to_error::deserialize(document)
                .map_err(|e| toml_error(field_prefix(e.path()), e.inner()))
        }
    }
}

/// `FIELD: ` for an error inside a field, nothing for one at the top of the document.
fn field_prefix(path: &serde_path_to_error::Path) -> String {
    if path.iter().next().is_some() {
        format!("{path}: ")
    } else {
        String::new()
    }
}

/// Line and column (from 1) of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use promotion_gates::{PromotionConfig, SloConfig};

    #[test]
    fn unknown_fields_are_named_in_both_formats() {
        let e = parse::<PromotionConfig>(Path::new("c.json"), r#"{"slo_treshold": 0.9}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c.json: invalid JSON: slo_treshold: unknown field `slo_treshold`"),
            "{e}"
        );
        let e = parse::<PromotionConfig>(Path::new("c.toml"), "gate = \"a\"\nslo_treshold = 0.9\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `slo_treshold`"), "{e}");
        assert!(e.ends_with("at line 2 column 1"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn type_errors_name_the_field_path_and_the_value_in_both_formats() {
        let e = parse::<PromotionConfig>(Path::new("c.json"), r#"{"slo_threshold": "high"}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "c.json: invalid JSON: slo_threshold: invalid type: string \"high\", expected f64 \
             at line 1 column 24"
        );
        let e = parse::<PromotionConfig>(Path::new("c.toml"), "slo_threshold = \"high\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "c.toml: invalid TOML: slo_threshold: invalid type: string \"high\", expected f64 \
             at line 1 column 17"
        );
        let e = parse::<Scenario>(Path::new("s.json"), r#"{"slo": {"max_error_rate": true}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("slo.max_error_rate: invalid type: boolean `true`"),
            "{e}"
        );
    }

    #[test]
    fn durations_and_variants_name_their_field_path() {
        let e = parse::<SloConfig>(Path::new("s.toml"), "latency_target_ms = -5\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("latency_target_ms: -5 is not a duration in milliseconds"),
            "{e}"
        );
        let e = parse::<Scenario>(
            Path::new("s.toml"),
            "[[stages]]\nduration_s = 5\n\n[[stages]]\nenvironment = \"prod\"\nduration_s = 5\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("stages[1].environment: unknown variant `prod`"),
            "{e}"
        );
        assert!(e.ends_with("at line 5 column 15"), "{e}");
        let e = parse::<Scenario>(
            Path::new("s.json"),
            r#"{"promotion": {"environment": {"canary": {"traffic_percent": "5"}}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("promotion.environment.canary.traffic_percent: invalid type: string \"5\""),
            "{e}"
        );
    }

    #[test]
    fn an_empty_document_is_the_same_error_in_every_format() {
        let expected = "the document is empty (nothing but whitespace)";
        for (name, text) in [
            ("c.json", ""),
            ("c.toml", ""),
            ("c.json", " \n\t"),
            ("c.toml", "\n\n"),
            ("/dev/null", ""),
            ("c.conf", "   "),
        ] {
            let e = parse::<PromotionConfig>(Path::new(name), text)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("{name}: {expected}")), "{e}");
        }
        assert!(parse::<PromotionConfig>(Path::new("c.json"), "{}").is_ok());
        assert!(parse::<PromotionConfig>(Path::new("c.toml"), "# defaults\n").is_ok());
    }

    #[test]
    fn a_json_document_must_be_one_object() {
        for (text, what) in [("[]", "an array"), ("null", "null"), ("\"x\"", "a string")] {
            let e = parse::<PromotionConfig>(Path::new("c.json"), text)
                .unwrap_err()
                .to_string();
            assert!(
                e.ends_with(&format!("with named fields, not {what}")),
                "{e}"
            );
        }
        let e = parse::<PromotionConfig>(Path::new("c.json"), "{} {}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("trailing characters"), "{e}");
    }

    #[test]
    fn a_document_longer_than_the_library_reads_is_refused_in_both_formats() {
        for (name, body) in [("c.json", "{}"), ("c.toml", "# defaults")] {
            let at_limit = format!("{body}{}", " ".repeat(MAX_DOCUMENT_BYTES - body.len()));
            assert!(
                parse::<PromotionConfig>(Path::new(name), &at_limit).is_ok(),
                "{name}"
            );
            let over = format!("{at_limit} ");
            let e = parse::<PromotionConfig>(Path::new(name), &over)
                .unwrap_err()
                .to_string();
            assert_eq!(
                e,
                format!(
                    "{name}: invalid document = {} bytes: at most {MAX_DOCUMENT_BYTES} bytes \
                     (MAX_DOCUMENT_BYTES), the most the library reads",
                    MAX_DOCUMENT_BYTES + 1
                )
            );
        }
        // The library refuses the same JSON document.
        let over = format!("{{}}{}", " ".repeat(MAX_DOCUMENT_BYTES - 1));
        assert!(PromotionConfig::parse_json(&over).is_err());
    }

    #[test]
    fn format_by_extension_then_content() {
        assert_eq!(Format::of(Path::new("a.TOML"), "{"), Format::Toml);
        assert_eq!(Format::of(Path::new("a"), " {}"), Format::Json);
        assert_eq!(Format::of(Path::new("a.conf"), "gate = 'x'"), Format::Toml);
    }
}
