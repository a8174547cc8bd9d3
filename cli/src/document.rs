//! Config documents on disk, JSON or TOML (by extension; otherwise by the first character),
//! read into the library's types with serde, whose errors name an unknown field.

use serde::de::DeserializeOwned;
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
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, CliError> {
    let message = match Format::of(path, text) {
        Format::Json => match serde_json::from_str(text) {
            Ok(value) => return Ok(value),
            Err(e) => format!("invalid JSON: {e}"),
        },
        Format::Toml => match toml::from_str(text) {
            Ok(value) => return Ok(value),
            Err(e) => {
                // toml's Display draws the line with a caret; one line is enough here.
                let at = e.span().map(|span| position(text, span.start));
                match at {
                    Some((line, column)) => format!(
                        "invalid TOML: {} at line {line} column {column}",
                        e.message().trim()
                    ),
                    None => format!("invalid TOML: {}", e.message().trim()),
                }
            }
        },
    };
    Err(CliError::Parse {
        path: path.to_path_buf(),
        message,
    })
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
    use promotion_gates::PromotionConfig;

    #[test]
    fn unknown_fields_are_named_in_both_formats() {
        let e = parse::<PromotionConfig>(Path::new("c.json"), r#"{"slo_treshold": 0.9}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c.json: invalid JSON: unknown field `slo_treshold`"),
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
    fn format_by_extension_then_content() {
        assert_eq!(Format::of(Path::new("a.TOML"), "{"), Format::Toml);
        assert_eq!(Format::of(Path::new("a"), " {}"), Format::Json);
        assert_eq!(Format::of(Path::new("a.conf"), "gate = 'x'"), Format::Toml);
    }
}
