//! Config documents on disk, JSON or TOML (by extension; otherwise by the text, [`Format::of`]),
//! read into the library's types with serde; every error names the field path, the value and
//! where it is, the same way in both formats.

use promotion_gates::{
    ConfigError, MAX_DOCUMENT_BYTES, MAX_SHOWN_VALUE_BYTES, NamedFields, PromotionConfig,
    SloConfig, TINY_NUMBER_REFUSAL, check_json_document, field_path, is_tiny_number,
    written_json_number,
};
use serde::de::{DeserializeOwned, IgnoredAny};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::error::{CliError, one_line_message, shown_text};
use crate::scenario::Scenario;

/// The most tokens a TOML document may hold, counted by [`toml_tokens`] before it is parsed:
/// every key, value, punctuation mark, run of spaces, line break and comment, as the TOML
/// reader's lexer reads them, and each `[`, `{` and `.` [`OPENER_WEIGHT`] times. The reader
/// keeps each token and an event for it (tens of bytes), each value with its place in the text
/// (about 150 bytes for a number in an array: an 8 MiB array of zeros took 635 MB), and each
/// array or table a `[`, `{` or `.` opens in hundreds (an array room for four values at once,
/// a table its map), so this bounds its memory to about 48 MB, blank lines, comments, nested
/// arrays and dotted tables too. A scenario's longest ramp (1 000 stages, about 34 tokens each)
/// or a config's 10 000 override ids (about 3 each) stay well within it; JSON has no such
/// limit (it is read straight into the config).
pub const MAX_TOML_TOKENS: usize = 400_000;

/// How a document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON.
    Json,
    /// TOML.
    Toml,
}

impl Format {
    /// `.json` and `.toml` by name (any case). Otherwise, as for `/dev/stdin` or `<(...)`, by
    /// the text's first character but whitespace: `{` is JSON; `[` is JSON when the whole
    /// text is a JSON value (`["x"]`, refused as a JSON array, not read as the TOML table
    /// `x`), and TOML otherwise (a table header, `[promotion]`, `[[stages]]`); anything else
    /// is TOML.
    pub fn of(path: &Path, text: &str) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("toml") => Format::Toml,
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            _ => {
                let text = text.trim_start();
                if text.starts_with('{')
                    || (text.starts_with('[') && serde_json::from_str::<IgnoredAny>(text).is_ok())
                {
                    Format::Json
                } else {
                    Format::Toml
                }
            }
        }
    }
}

/// A type a document holds, and the name its errors give it (`a scenario must be a JSON
/// object`).
pub trait Document: DeserializeOwned {
    /// The kind of document, as `validate --kind` describes it.
    const KIND: &'static str;
}

impl Document for PromotionConfig {
    const KIND: &'static str = "PromotionConfig";
}

impl Document for SloConfig {
    const KIND: &'static str = "SloConfig";
}

impl Document for Scenario {
    const KIND: &'static str = "scenario";
}

/// Reads `path` as a `T`: at most [`MAX_DOCUMENT_BYTES`] + 1 bytes are read, so a longer
/// file (or `/dev/zero`) is refused, naming the limit, without reading the rest.
pub fn load<T: Document>(path: &Path) -> Result<T, CliError> {
    load_written(path).map(|(value, _)| value)
}

/// A document as it was read, kept to show a refused number as it is written there
/// ([`Written::number_at`]): validation sees the values as read, and an integer given to an
/// `f64` field (`18446744073709551615`) or a duration in milliseconds (made a `Duration`) was
/// refused as converted (`18446744073709552000`).
#[derive(Debug, Clone)]
pub struct Written {
    text: String,
    format: Format,
}

impl Written {
    /// The number written at `field` (a field path as the library's errors name one:
    /// `slo.latency_target_ms`, `stages[0].duration_s`), as it is written there (`1_000`,
    /// `-0.0`, `18446744073709551615`); `None` when the field holds no number.
    pub fn number_at(&self, field: &str) -> Option<&str> {
        match self.format {
            Format::Json => written_json_number(&self.text, field),
            Format::Toml => toml_number_at(&self.text, field),
        }
    }

    /// The library's refusal `error` of a value read from this document, showing the number
    /// written at its field when that is what it refused ([`ConfigError::as_written`]).
    pub fn config_error(&self, error: ConfigError) -> ConfigError {
        match self.number_at(error.field()) {
            Some(written) => error.as_written(written),
            None => error,
        }
    }
}

/// Reads `path` as a `T`, as [`load`] does, with the document as read ([`Written`]).
pub fn load_written<T: Document>(path: &Path) -> Result<(T, Written), CliError> {
    let unreadable = |source| CliError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(unreadable)?;
    // A regular file says its length; a device or a pipe does not.
    let length = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    let bytes = read_at_most(file, MAX_DOCUMENT_BYTES).map_err(unreadable)?;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        let size = match length {
            Some(length) if length > MAX_DOCUMENT_BYTES as u64 => length.to_string(),
            _ => format!("more than {MAX_DOCUMENT_BYTES}"),
        };
        return Err(too_long(path, &size));
    }
    let text = String::from_utf8(bytes).map_err(|e| not_utf8(path, e.utf8_error()))?;
    parse_written(path, &text)
}

/// Parses `text`, read from `path`, as a `T`, as [`parse`] does, with the document as read
/// ([`Written`]): what [`load_written`] does once the file is read, for a caller that holds
/// the text (the fuzz target `cli_documents`).
pub fn parse_written<T: Document>(path: &Path, text: &str) -> Result<(T, Written), CliError> {
    let value = parse(path, text)?;
    // As `parse` reads it: a TOML document's byte order mark dropped (a JSON one is refused).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text).to_string();
    let format = Format::of(path, &text);
    Ok((value, Written { text, format }))
}

/// The number written at `field` in the TOML document `text` (see [`Written::number_at`]):
/// the field's path followed key by key and index by index in the parsed document, and the
/// integer or float found there as written (its span in `text`).
fn toml_number_at<'t>(text: &'t str, field: &str) -> Option<&'t str> {
    use toml::de::DeValue;
    let document = toml::de::DeTable::parse(text).ok()?;
    let mut table = document.get_ref();
    let mut value: Option<&toml::Spanned<DeValue<'_>>> = None;
    for part in field.split('.') {
        if let Some(held) = value {
            let DeValue::Table(inner) = held.get_ref() else {
                return None;
            };
            table = inner;
        }
        // `key`, then its indices: `stages[0]`.
        let (key, indices) = part
            .split_once('[')
            .map_or((part, ""), |(key, rest)| (key, rest));
        let mut found = table
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| v)?;
        for index in indices.split('[').filter(|i| !i.is_empty()) {
            let index: usize = index.strip_suffix(']')?.parse().ok()?;
            let DeValue::Array(items) = found.get_ref() else {
                return None;
            };
            found = items.get(index)?;
        }
        value = Some(found);
    }
    let value = value?;
    match value.get_ref() {
        DeValue::Integer(_) | DeValue::Float(_) => text.get(value.span()),
        _ => None,
    }
}

/// The refusal of a document that was read but is not UTF-8 text (a Latin-1 or UTF-16 file),
/// naming the offset of its first invalid byte: the content is at fault, not the reading.
fn not_utf8(path: &Path, e: std::str::Utf8Error) -> CliError {
    CliError::Parse {
        path: path.to_path_buf(),
        message: format!(
            "the document is not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        ),
    }
}

/// The first `limit` + 1 bytes of `reader` at most: one byte more than a document may hold
/// tells that it is too long, and the rest is never read.
fn read_at_most(reader: impl Read, limit: usize) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The refusal of a document of `size` bytes, over [`MAX_DOCUMENT_BYTES`].
fn too_long(path: &Path, size: &str) -> CliError {
    CliError::Parse {
        path: path.to_path_buf(),
        message: format!(
            "invalid document = {size} bytes: at most {MAX_DOCUMENT_BYTES} bytes \
             (MAX_DOCUMENT_BYTES), the most the library reads"
        ),
    }
}

/// Parses `text`, read from `path`, as a `T`.
///
/// Every error names what is wrong the same way in both formats: an empty document, or one
/// longer than [`MAX_DOCUMENT_BYTES`] (the library's limit), is refused (`{}` in JSON takes
/// every default), and a value of the wrong type, an unknown variant, a bad duration or an
/// array given for a struct (which serde alone reads as its fields in order; [`NamedFields`])
/// is reported under its field path (`slo.max_error_rate`, `stages[0].environment`), as the
/// library's own `from_json` does, with the line and column.
pub fn parse<T: Document>(path: &Path, text: &str) -> Result<T, CliError> {
    let refuse = |message: String| CliError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let json_refusal = |e: promotion_gates::Error| {
        refuse(match e {
            promotion_gates::Error::Json(message) => {
                format!("invalid JSON: {}", one_line_message(&message))
            }
            e => one_line_message(&e.to_string()),
        })
    };
    // A byte order mark, as some editors write first. JSON has none (RFC 8259): the library
    // refuses it, naming it, and so does this reader, or `validate` would pass a document no
    // host reads. The TOML reader reads past one (the toml crate, TOML 1.1); it is dropped
    // here so that line 1's columns are counted as an editor shows them.
    let unmarked = text.strip_prefix('\u{feff}');
    let format = Format::of(path, unmarked.unwrap_or(text));
    if unmarked.is_some() && matches!(format, Format::Json) {
        check_json_document(text, T::KIND).map_err(json_refusal)?;
    }
    let text = unmarked.unwrap_or(text);
    if text.trim().is_empty() {
        return Err(refuse(
            "the document is empty (nothing but whitespace): write the fields to set \
             (in JSON, `{}` takes every default)"
                .into(),
        ));
    }
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(too_long(path, &text.len().to_string()));
    }
    match format {
        Format::Json => {
            // The library's check (one JSON object: serde would read an array as the fields in
            // order). A syntax error is left to the reader below, which names line and column.
            if serde_json::from_str::<IgnoredAny>(text).is_ok() {
                check_json_document(text, T::KIND).map_err(json_refusal)?;
            }
            let mut json = serde_json::Deserializer::from_str(text);
            let value =
                serde_path_to_error::deserialize(NamedFields::new(&mut json, "a JSON object"))
                    .map_err(|e| {
                        let number = json_number(text, e.inner());
                        refuse(format!(
                            "invalid JSON: {}{}",
                            field_prefix(e.path(), number),
                            json_message(e.inner())
                        ))
                    })?;
            // Whatever follows the object (`{} {}`) is refused, as serde_json::from_str does.
            json.end()
                .map_err(|e| refuse(format!("invalid JSON: {}", json_message(&e))))?;
            Ok(value)
        }
        Format::Toml => {
            let toml_error = |path: Option<&serde_path_to_error::Path>, e: &toml::de::Error| {
                let number = e.span().and_then(|span| text.get(span)).filter(|written| {
                    hides_the_number(e.message()) || quotes_another_integer(e.message(), written)
                });
                let field = match path {
                    Some(path) => field_prefix(path, number),
                    None => number_prefix("", number),
                };
                // toml's Display draws the line with a caret; one line is enough here.
                let mut message = one_line_message(e.message().trim());
                if let Some(datetime) =
                    datetime_message(&message, e.span().and_then(|s| text.get(s)))
                {
                    message = datetime;
                }
                // toml names no key in this message, but its span is the second key's place:
                // the key as written there (unless it is too long to show).
                if let Some(key) = e
                    .span()
                    .filter(|_| message == "duplicate key")
                    .and_then(|span| text.get(span))
                    .filter(|key| key.len() <= MAX_SHOWN_VALUE_BYTES)
                {
                    message = format!("duplicate key `{}`", shown_text(key));
                }
                refuse(match e.span().map(|span| position(text, span.start)) {
                    Some((line, column)) => {
                        format!("invalid TOML: {field}{message} at line {line} column {column}")
                    }
                    None => format!("invalid TOML: {field}{message}"),
                })
            };
            let tokens = toml_tokens(text);
            if tokens > MAX_TOML_TOKENS {
                return Err(refuse(format!(
                    "invalid TOML document = {tokens} tokens: at most {MAX_TOML_TOKENS} \
                     (MAX_TOML_TOKENS: keys, values, punctuation, runs of spaces, line breaks and \
                     comments, as the TOML reader's lexer reads them, each `[`, `{{` and `.` \
                     counted {OPENER_WEIGHT} times), as the reader takes tens of bytes for each \
                     and hundreds for a value, an array or a table; write a longer document as \
                     JSON"
                )));
            }
            let document = toml::de::DeTable::parse(text).map_err(|e| toml_error(None, &e))?;
            // A float too small for an f64 (`1e-400`) reads as 0, without an error.
            if let Some((field, span)) = first_tiny_float(document.get_ref(), "") {
                let (line, column) = position(text, span.start);
                return Err(refuse(format!(
                    "invalid TOML: {}{TINY_NUMBER_REFUSAL} at line {line} column {column}",
                    number_prefix(&field, text.get(span))
                )));
            }
            let document = toml::Deserializer::from(document);
            serde_path_to_error::deserialize(NamedFields::new(document, "a TOML table"))
                .map_err(|e| toml_error(Some(e.path()), e.inner()))
        }
    }
}

/// The field path (as [`field_path`] writes it) and place of the first float in `table`, under
/// `within`, that [`is_tiny_number`]: the TOML reader, as serde_json, reads it as 0. toml's
/// nesting limit (80) bounds the recursion.
fn first_tiny_float(
    table: &toml::de::DeTable<'_>,
    within: &str,
) -> Option<(String, std::ops::Range<usize>)> {
    table.iter().find_map(|(key, value)| {
        let field = match within {
            "" => key.get_ref().to_string(),
            _ => format!("{within}.{}", key.get_ref()),
        };
        first_tiny_value(value, field)
    })
}

/// [`first_tiny_float`] of one `value` at `field`.
fn first_tiny_value(
    value: &toml::Spanned<toml::de::DeValue<'_>>,
    field: String,
) -> Option<(String, std::ops::Range<usize>)> {
    use toml::de::DeValue;
    match value.get_ref() {
        DeValue::Float(float) if is_tiny_number(float.as_str()) => Some((field, value.span())),
        DeValue::Table(table) => first_tiny_float(table, &field),
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| first_tiny_value(item, format!("{field}[{i}]"))),
        _ => None,
    }
}

/// The key under which the toml crate hands a TOML datetime to a reader that takes any type
/// (as a map of this one key to its text), which toml's messages then name.
const TOML_DATETIME_KEY: &str = "$__toml_private_datetime";

/// toml's `message` for a TOML datetime read where a number, a text or an environment is
/// expected, told as what the document holds: toml hands a datetime over as a map of its
/// private key, so its message was `unknown variant `$__toml_private_datetime`` or `invalid
/// type: map, expected f64`. Now `invalid type: TOML datetime `1979-05-27`, expected f64`, the
/// datetime as `written` at the error's place (else without it); `None` for another message.
fn datetime_message(message: &str, written: Option<&str>) -> Option<String> {
    let datetime = written
        .map(str::trim)
        .filter(|written| written.parse::<toml::value::Datetime>().is_ok());
    let told_as_a_map = datetime.is_some() && message.starts_with("invalid type: map");
    if !(message.contains(TOML_DATETIME_KEY) || told_as_a_map) {
        return None;
    }
    let expected = message.find(", expected ").map_or("", |at| &message[at..]);
    Some(match datetime {
        Some(datetime) => format!(
            "invalid type: TOML datetime `{}`{expected}",
            shown_text(datetime)
        ),
        None => format!("invalid type: TOML datetime{expected}"),
    })
}

/// `FIELD: ` for an error inside a field (named by the library's [`field_path`], shown as
/// [`shown_text`] shows a key: a map's keys are the document's), nothing for one at the top of
/// the document or in a key that was not read (a truncated document); `FIELD = NUMBER: ` for
/// an error whose message hides the `number` written there ([`hides_the_number`]).
fn field_prefix(path: &serde_path_to_error::Path, number: Option<&str>) -> String {
    number_prefix(&field_path(path), number)
}

/// [`field_prefix`] of the field path `field`.
fn number_prefix(field: &str, number: Option<&str>) -> String {
    let field = shown_text(field);
    match (field.is_empty(), number) {
        (true, None) => field,
        (true, Some(number)) => format!("{}: ", shown_text(number.trim())),
        (false, None) => field + ": ",
        (false, Some(number)) => format!("{field} = {}: ", shown_text(number.trim())),
    }
}

/// Whether a parser's `message` refuses a number without showing it as written: serde_json's
/// `number out of range` (`1e400`) and `invalid type: floating point` (an integer beyond
/// `u64`, `18446744073709551616`, is read as the float `1.8446744073709552e+19`), toml's
/// `floating-point number overflowed`.
fn hides_the_number(message: &str) -> bool {
    message.starts_with("number out of range")
        || message.starts_with("invalid type: floating point")
        || message.contains("number overflowed")
}

/// Whether toml's `message` quotes an integer otherwise than it is `written` in the document:
/// toml quotes the integer it read, without the underscores (`18446744073709551616` for
/// `18_446_744_073_709_551_616`, beyond `u64`, or `-10` for `-1_0`, below 0), and in decimal.
fn quotes_another_integer(message: &str, written: &str) -> bool {
    message.contains("integer `") && !message.contains(&format!("integer `{}`", written.trim()))
}

/// The number written where serde_json's error `e` is, when its message hides it
/// ([`hides_the_number`]): the run of number characters around its line and column (which
/// count bytes, the column that of the last byte read).
fn json_number<'t>(text: &'t str, e: &serde_json::Error) -> Option<&'t str> {
    if !hides_the_number(&e.to_string()) || e.line() == 0 {
        return None;
    }
    let line_start: usize = text
        .split_inclusive('\n')
        .take(e.line() - 1)
        .map(str::len)
        .sum();
    let at = (line_start + e.column()).min(text.len());
    let is_number = |b: &u8| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E');
    let bytes = text.as_bytes();
    let start = at
        - bytes[..at]
            .iter()
            .rev()
            .take_while(|b| is_number(b))
            .count();
    let end = at + bytes[at..].iter().take_while(|b| is_number(b)).count();
    // Number characters are ASCII: both ends are character boundaries.
    text.get(start..end).filter(|number| !number.is_empty())
}

/// serde_json's message ([`one_line_message`]) and where it is: its Display writes the keys
/// and values it quotes as they are, however long, newlines and all.
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&position) {
        Some(message) if e.line() > 0 => one_line_message(message) + &position,
        _ => one_line_message(&text),
    }
}

/// How many tokens a `[`, `{` or `.` counts for in [`MAX_TOML_TOKENS`]: each may open an array
/// or a table, which the reader keeps in about four times a value's bytes.
pub const OPENER_WEIGHT: usize = 4;

/// The tokens in the TOML `text` as the TOML reader's own lexer (toml_parser, the version
/// `toml` reads with) makes them, its end included, each `[`, `{` and `.` counted
/// [`OPENER_WEIGHT`] times: in one pass, none kept, so the tokens are the reader's whatever
/// the text (strings, comments, a byte order mark).
fn toml_tokens(text: &str) -> usize {
    use toml_parser::lexer::TokenKind;
    toml_parser::Source::new(text)
        .lex()
        .map(|token| match token.kind() {
            TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket | TokenKind::Dot => {
                OPENER_WEIGHT
            }
            _ => 1,
        })
        .sum()
}

/// Line and column (from 1) of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}

/// Endless zeros, counting the bytes read: for the tests that a reader stops at its limit
/// (the binary's too, which see this library without `cfg(test)`).
pub struct Zeros(pub usize);

impl Read for Zeros {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        buf.fill(0);
        self.0 += buf.len();
        Ok(buf.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error of reading `text` as a `T` from a file named `name`.
    fn refusal<T: Document + std::fmt::Debug>(name: &str, text: &str) -> String {
        parse::<T>(Path::new(name), text).unwrap_err().to_string()
    }

    /// Asserts that each of `documents` (file name, text) is refused as a `T` with a message
    /// holding `expected`.
    fn refused_alike<T: Document + std::fmt::Debug>(documents: [(&str, &str); 2], expected: &str) {
        for (name, text) in documents {
            let e = refusal::<T>(name, text);
            assert!(e.contains(expected), "{text}: {e}");
        }
    }

    use crate::error::MAX_MESSAGE_BYTES;

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
    fn a_store_of_no_form_is_named_with_its_value_and_both_forms_in_both_formats() {
        let forms = r#"expected {"sqlite": {"path": ...}} or {"etcd": {...}}"#;
        let both_json = r#"{"store": {"sqlite": {"path": "a.db"}, "etcd": {"endpoints": ["http://a:1"], "prefix": "/p"}}}"#;
        let both_toml = "[store.sqlite]\npath = \"a.db\"\n[store.etcd]\nendpoints = [\"http://a:1\"]\nprefix = \"/p\"\n";
        for (name, text, shown) in [
            (
                "c.json",
                r#"{"store": 5}"#,
                "store: invalid type: integer `5`",
            ),
            (
                "c.json",
                r#"{"store": []}"#,
                "store: invalid type: sequence",
            ),
            (
                "c.json",
                r#"{"store": {}}"#,
                "store: invalid value: an empty map",
            ),
            (
                "c.json",
                r#"{"store": "sqlite"}"#,
                r#"store: invalid type: string "sqlite""#,
            ),
            (
                "c.json",
                both_json,
                r#"store: invalid value: a second key "etcd""#,
            ),
            ("c.toml", "store = 5\n", "store: invalid type: integer `5`"),
            ("c.toml", "store = []\n", "store: invalid type: sequence"),
            ("c.toml", "[store]\n", "store: invalid value: an empty map"),
            (
                "c.toml",
                "store = \"sqlite\"\n",
                r#"store: invalid type: string "sqlite""#,
            ),
            (
                "c.toml",
                both_toml,
                r#"store: invalid value: a second key "etcd""#,
            ),
        ] {
            let e = refusal::<PromotionConfig>(name, text);
            assert!(
                e.contains(&format!("{shown}, {forms} at line ")),
                "{text}: {e}"
            );
        }
        refused_alike::<Scenario>(
            [
                ("s.json", r#"{"promotion": {"store": 5}}"#),
                ("s.toml", "[promotion]\nstore = 5\n"),
            ],
            &format!("promotion.store: invalid type: integer `5`, {forms}"),
        );
    }

    #[test]
    fn a_stage_environment_of_no_form_is_named_with_its_value_and_both_forms_in_both_formats() {
        let forms = r#"expected "canary" or "staging""#;
        let nothing = r#"expected nothing (null): or write the name alone, "canary" or "staging""#;
        let json = |environment: &str| {
            format!(r#"{{"stages": [{{"environment": {environment}, "duration_s": 1}}]}}"#)
        };
        let toml = |environment: &str| {
            format!("[[stages]]\nenvironment = {environment}\nduration_s = 1\n")
        };
        let within = "stages[0].environment";
        for (json_value, toml_value, field, shown, expected) in [
            ("5", "5", within, "invalid type: integer `5`", forms),
            ("[]", "[]", within, "invalid type: sequence", forms),
            ("{}", "{}", within, "invalid value: an empty map", forms),
            (
                r#"{"canary": 1}"#,
                "{canary = 1}",
                "stages[0].environment.canary",
                "invalid type: integer `1`",
                nothing,
            ),
        ] {
            refused_alike::<Scenario>(
                [("s.json", &json(json_value)), ("s.toml", &toml(toml_value))],
                &format!("{field}: {shown}, {expected}"),
            );
        }
        let e = refusal::<Scenario>("s.json", &json("null"));
        assert!(
            e.contains(&format!("{within}: invalid type: null, {forms}")),
            "{e}"
        );
    }

    #[test]
    fn a_gate_environment_name_holding_something_is_named_in_both_formats() {
        let nothing =
            r#"expected nothing (null): or write the name alone, "staging" or "production""#;
        refused_alike::<PromotionConfig>(
            [
                ("c.json", r#"{"environment": {"staging": 1}}"#),
                ("c.toml", "environment = {staging = 1}\n"),
            ],
            &format!("environment.staging: invalid type: integer `1`, {nothing}"),
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

    /// serde_json and the TOML reader read a number too small for an `f64` as 0.
    #[test]
    fn a_number_too_small_for_a_double_is_named_by_its_field_and_shown_as_written_in_both_formats()
    {
        let words = TINY_NUMBER_REFUSAL;
        assert_eq!(
            refusal::<PromotionConfig>(
                "c.json",
                r#"{"environment": {"canary": {"traffic_percent": 1e-400}}}"#
            ),
            format!(
                "c.json: invalid JSON: environment.canary.traffic_percent = 1e-400: {words} at \
                 line 1 column 53"
            )
        );
        assert_eq!(
            refusal::<PromotionConfig>(
                "c.toml",
                "[environment.canary]\ntraffic_percent = 1_0e-4_00\n"
            ),
            format!(
                "c.toml: invalid TOML: environment.canary.traffic_percent = 1_0e-4_00: {words} \
                 at line 2 column 19"
            )
        );
        let e = refusal::<SloConfig>("slo.toml", "latency_tolerance_ms = 1e-400\n");
        assert!(
            e.contains(&format!("latency_tolerance_ms = 1e-400: {words}")),
            "{e}"
        );
        let e = refusal::<Scenario>(
            "s.toml",
            "[[stages]]\nduration_s = 60\n[[stages]]\nduration_s = 1e-999\n",
        );
        assert!(
            e.contains(&format!("stages[1].duration_s = 1e-999: {words}")),
            "{e}"
        );
        let e = refusal::<Scenario>("s.json", r#"{"stages": [{"duration_s": 1e-400}]}"#);
        assert!(
            e.contains(&format!("stages[0].duration_s = 1e-400: {words}")),
            "{e}"
        );
        // Zero as written, a subnormal and a text are read as they are.
        let read = parse::<SloConfig>(
            Path::new("slo.toml"),
            "max_error_rate = 1e-310\nlatency_tolerance_ms = -0.0e-400\n",
        )
        .unwrap();
        assert_eq!(read.max_error_rate, 1e-310);
        let read = parse::<PromotionConfig>(Path::new("c.toml"), "salt = \"1e-400\"\n").unwrap();
        assert_eq!(read.salt.as_deref(), Some("1e-400"));
    }

    #[test]
    fn a_number_out_of_range_is_named_by_its_field_and_shown_as_written_in_every_kind() {
        // The message showed no value (`number out of range`, `floating-point number
        // overflowed`) or another one (`floating point `1.8446744073709552e+19``).
        assert_eq!(
            refusal::<PromotionConfig>("c.json", r#"{"rollback_window_seconds": 1e400}"#),
            "c.json: invalid JSON: rollback_window_seconds = 1e400: number out of range at line \
             1 column 33"
        );
        assert_eq!(
            refusal::<PromotionConfig>(
                "c.json",
                r#"{"max_rollback_history": 18446744073709551616}"#
            ),
            "c.json: invalid JSON: max_rollback_history = 18446744073709551616: invalid type: \
             floating point `1.8446744073709552e+19`, expected usize at line 1 column 45"
        );
        assert_eq!(
            refusal::<PromotionConfig>("c.toml", "gate = \"a\"\nslo_threshold = 1e400\n"),
            "c.toml: invalid TOML: slo_threshold = 1e400: floating-point number overflowed at \
             line 2 column 17"
        );
        let e = refusal::<Scenario>("s.json", "{\"stages\": [\n  {\"duration_s\": -1e400}]}");
        assert!(
            e.contains(
                "invalid JSON: stages[0].duration_s = -1e400: number out of range at line 2"
            ),
            "{e}"
        );
        let e = refusal::<SloConfig>("slo.toml", "latency_target_ms = -1e400\n");
        assert!(
            e.contains("latency_target_ms = -1e400: floating-point"),
            "{e}"
        );
        // Beyond u64 (toml reads it as an i128) or below 0, toml's message shows the integer
        // without the underscores written: the number as written is shown beside it.
        assert_eq!(
            refusal::<Scenario>("s.toml", "seed = 18_446_744_073_709_551_616\n"),
            "s.toml: invalid TOML: seed = 18_446_744_073_709_551_616: invalid type: integer \
             `18446744073709551616` as i128, expected u64 at line 1 column 8"
        );
        assert_eq!(
            refusal::<PromotionConfig>("c.toml", "gate = \"a\"\nmax_rollback_history = -1_0\n"),
            "c.toml: invalid TOML: max_rollback_history = -1_0: invalid value: integer `-10`, \
             expected usize at line 2 column 24"
        );
        // Written as toml shows it, it is not shown twice.
        assert_eq!(
            refusal::<Scenario>("s.toml", "users = 18446744073709551616\n"),
            "s.toml: invalid TOML: users: invalid type: integer `18446744073709551616` as i128, \
             expected u64 at line 1 column 9"
        );
        // Beyond i128, as toml reads an integer: written with its underscores.
        let seed = format!("1{}", "_000".repeat(15));
        let e = refusal::<Scenario>("s.toml", &format!("seed = {seed}\n"));
        assert!(
            e.contains(&format!("seed = {seed}: integer number overflowed")),
            "{e}"
        );
        // A long number is cut as every value shown is.
        let digits = "9".repeat(100_000);
        for (name, text) in [
            ("s.json", format!(r#"{{"rps": {digits}}}"#)),
            ("s.toml", format!("rps = {digits}e9\n")),
        ] {
            let e = refusal::<Scenario>(name, &text);
            assert!(e.len() < 2 * MAX_MESSAGE_BYTES, "{name}: {} bytes", e.len());
            assert!(
                e.contains(&format!("rps = {}...(", &digits[..MAX_SHOWN_VALUE_BYTES])),
                "{name}: {e}"
            );
        }
    }

    #[test]
    fn the_object_check_names_the_kind_of_document() {
        let expected = |kind: &str| {
            format!(
                "s.json: invalid JSON: {kind} must be a JSON object with named fields, not an array"
            )
        };
        assert_eq!(refusal::<Scenario>("s.json", "[]"), expected("a scenario"));
        assert_eq!(
            refusal::<SloConfig>("s.json", "[]"),
            expected("a SloConfig")
        );
    }

    /// Asserts that `json` and `toml`, read as a `T`, are refused naming `field` as a struct
    /// given as an array.
    fn refused_as_an_array<T: Document + std::fmt::Debug>(field: &str, json: &str, toml: &str) {
        for (name, text, format, map) in [
            ("d.json", json, "JSON", "a JSON object"),
            ("d.toml", toml, "TOML", "a TOML table"),
        ] {
            let e = refusal::<T>(name, text);
            let expected = format!(
                "{name}: invalid {format}: {field}: must be {map} with named fields, not an \
                 array at line "
            );
            assert!(e.starts_with(&expected), "{text}: {e}");
        }
    }

    #[test]
    fn a_struct_given_as_an_array_is_refused_naming_its_field_in_both_formats() {
        // serde's derived reader took a struct's fields in order, in JSON and in TOML.
        refused_as_an_array::<PromotionConfig>(
            "overrides",
            r#"{"overrides": ["X-Canary", "c", ["a"], []]}"#,
            "overrides = [\"X-Canary\", \"c\", [\"a\"], []]\n",
        );
        refused_as_an_array::<PromotionConfig>(
            "store.sqlite",
            r#"{"store": {"sqlite": ["a.db"]}}"#,
            "[store]\nsqlite = [\"a.db\"]\n",
        );
        refused_as_an_array::<PromotionConfig>(
            "store.etcd",
            r#"{"store": {"etcd": [["http://127.0.0.1:2379"], "/pg/a"]}}"#,
            "store = { etcd = [[\"http://127.0.0.1:2379\"], \"/pg/a\"] }\n",
        );
        for (field, json, toml) in [
            (
                "stages[0]",
                r#"{"stages": [["canary", 5, 60]]}"#,
                "stages = [[\"canary\", 5.0, 60.0]]\n",
            ),
            (
                "canary",
                r#"{"canary": [0.5, 20]}"#,
                "canary = [0.5, 20.0]\n",
            ),
            (
                "canary.bursts",
                r#"{"canary": {"bursts": [60, 5, 0.5]}}"#,
                "[canary]\nbursts = [60.0, 5.0, 0.5]\n",
            ),
            (
                "canary.incident",
                r#"{"canary": {"incident": [1, 10, 0.5]}}"#,
                "[canary]\nincident = [1, 10.0, 0.5]\n",
            ),
            (
                "promotion.overrides",
                r#"{"promotion": {"overrides": ["X-Canary"]}}"#,
                "[promotion]\noverrides = [\"X-Canary\"]\n",
            ),
        ] {
            refused_as_an_array::<Scenario>(field, json, toml);
        }
    }

    #[test]
    fn a_truncated_json_document_has_no_path_where_there_is_none() {
        let eof = "c.json: invalid JSON: EOF while parsing";
        for (text, expected) in [
            (r#"{"gate": "a", "#, format!("{eof} a value at line 1 column 14")),
            ("{", format!("{eof} an object at line 1 column 1")),
            (
                r#"{"feature_flags": ["a", "#,
                "c.json: invalid JSON: feature_flags: EOF while parsing a value at line 1 column 24"
                    .to_string(),
            ),
        ] {
            assert_eq!(refusal::<PromotionConfig>("c.json", text), expected);
        }
    }

    #[test]
    fn a_duplicate_toml_key_is_named() {
        assert_eq!(
            refusal::<PromotionConfig>("c.toml", "gate = \"a\"\ngate = \"b\"\n"),
            "c.toml: invalid TOML: duplicate key `gate` at line 2 column 1"
        );
        assert_eq!(
            refusal::<Scenario>("s.toml", "[slo]\n[promotion]\n[slo]\n"),
            "s.toml: invalid TOML: duplicate key `slo` at line 3 column 2"
        );
        // A key too long to show is left unnamed; its line and column still say where.
        let key = "k".repeat(MAX_SHOWN_VALUE_BYTES + 1);
        assert_eq!(
            refusal::<PromotionConfig>("c.toml", &format!("{key} = 1\n{key} = 2\n")),
            "c.toml: invalid TOML: duplicate key at line 2 column 1"
        );
    }

    #[test]
    fn keys_and_values_are_shown_short_and_on_one_line_in_both_formats() {
        // A 1 MB key or value gave a 1-2 MB message; a newline or an escape in a key was
        // printed raw, over several lines.
        let long = "k".repeat(1_000_000);
        let cut = format!("{}...(1000000 bytes)", &long[..MAX_SHOWN_VALUE_BYTES]);
        for (name, text, expected) in [
            (
                "c.json",
                format!(r#"{{"{long}": 1}}"#),
                format!("{cut}: unknown field `{cut}`"),
            ),
            (
                "c.toml",
                format!("{long} = 1\n"),
                format!("{cut}: unknown field `{cut}`"),
            ),
            (
                "c.json",
                format!(r#"{{"slo_threshold": "{long}"}}"#),
                format!("slo_threshold: invalid type: string \"{cut}\", expected f64"),
            ),
            (
                "c.toml",
                format!("slo_threshold = \"{long}\"\n"),
                format!("slo_threshold: invalid type: string \"{cut}\", expected f64"),
            ),
        ] {
            let e = refusal::<PromotionConfig>(name, &text);
            assert!(e.len() < 2 * MAX_MESSAGE_BYTES, "{name}: {} bytes", e.len());
            assert!(e.contains(&expected), "{name}: {e}");
        }
        let escaped = r"a\nb\u{1b}[31mred";
        for (name, text) in [
            ("c.json", r#"{"a\nb\u001b[31mred": 1}"#),
            ("c.toml", "\"a\\nb\\u001b[31mred\" = 1\n"),
        ] {
            let e = refusal::<PromotionConfig>(name, text);
            assert!(!e.chars().any(char::is_control), "{name}: {e}");
            assert!(
                e.contains(&format!("{escaped}: unknown field `{escaped}`")),
                "{name}: {e}"
            );
        }
    }

    #[test]
    fn a_toml_document_with_more_tokens_than_its_reader_should_hold_is_refused() {
        // An 8 MiB `x = [0,0,...]` took 635 MB to read. `x`, ` `, `=`, ` `, `[` (4), a `0`
        // and a `,` for each of n, `0`, `]`, a line break and the end: 2n + 12 tokens.
        let zeros = |n: usize| format!("x = [{}0]\n", "0,".repeat(n));
        assert_eq!(toml_tokens(&zeros(10)), 32);
        let most = (MAX_TOML_TOKENS - 12) / 2;
        assert_eq!(toml_tokens(&zeros(most)), MAX_TOML_TOKENS);
        // Within the limit: read, and refused for what it holds.
        let e = refusal::<Scenario>("s.toml", &zeros(most));
        assert!(e.contains("x: unknown field `x`"), "{e}");
        let e = refusal::<Scenario>("s.toml", &zeros(most + 1));
        assert_eq!(
            e,
            "s.toml: invalid TOML document = 400002 tokens: at most 400000 (MAX_TOML_TOKENS: \
             keys, values, punctuation, runs of spaces, line breaks and comments, as the TOML \
             reader's lexer reads them, each `[`, `{` and `.` counted 4 times), as the reader \
             takes tens of bytes for each and hundreds for a value, an array or a table; write \
             a longer document as JSON"
        );
        // Blank lines and comments are tokens the reader keeps too.
        for filler in ["\n", "#\n", " \n"] {
            let text = format!("a = 1\n{}", filler.repeat(MAX_TOML_TOKENS));
            let e = refusal::<PromotionConfig>("c.toml", &text);
            assert!(
                e.starts_with("c.toml: invalid TOML document = "),
                "{filler:?}: {e}"
            );
        }
        // The longest ramp and the most override ids fit.
        let stages = "[[stages]]\ntraffic_percent = 0.5\nduration_s = 1.5\n".repeat(1_000);
        assert!(toml_tokens(&stages) < MAX_TOML_TOKENS / 10);
        let ids = format!(
            "[overrides]\ncanary_ids = [{}]\n",
            "\"user-1.example\", ".repeat(10_000)
        );
        assert!(toml_tokens(&ids) < MAX_TOML_TOKENS / 10);
    }

    #[test]
    fn the_toml_token_count_is_the_readers() {
        // 10 000 override ids of 10 dots each: a string token each.
        let ids: Vec<String> = (0..10_000)
            .map(|i| format!("\"a.b.c.d.e.f.g.h.i.j.{i}\""))
            .collect();
        let document = format!("[overrides]\ncanary_ids = [{}]\n", ids.join(", "));
        let config = parse::<PromotionConfig>(Path::new("c.toml"), &document).unwrap();
        assert_eq!(config.overrides.map(|o| o.canary_ids.len()), Some(10_000));
        assert!(toml_tokens(&document) < 3 * 10_000 + 20);

        // Strings and comments are one token each, whatever they hold.
        for (text, tokens) in [
            (r#"a = "x.=,[{""#, 6),
            ("# a.b = [1, 2]\nc = 1", 8),
            ("a = \"\"\"x.\n=,[{\"\"\"", 6),
            // What opens an array or a table counts 4 (a float's point too).
            ("a = [[1], {b = 2.5}]", 33),
            ("[a.b]", 12),
            // The parts of the memory limit's test documents (cli/tests/input.rs): 52 each.
            ("[[[[[[[[[[0]]]]]]]]]],", 53),
            ("[a0.b.c.d.e.f.g.h.i.j]\n", 53),
        ] {
            assert_eq!(toml_tokens(text), tokens, "{text:?}");
        }
        // A byte order mark the reader skips (after the one the CLI drops) is skipped here
        // too: a quoted key after it does not hide the punctuation behind it.
        let bom = format!("\u{feff}\"a \" = [{}0]", "0,".repeat(MAX_TOML_TOKENS / 2));
        let e = refusal::<PromotionConfig>("c.toml", &format!("\u{feff}{bom}"));
        assert!(e.starts_with("c.toml: invalid TOML document = "), "{e}");
        assert_eq!(toml_tokens("\u{feff}\"a \" = [0,0]"), 13);
    }

    #[test]
    fn a_file_is_read_no_further_than_one_byte_past_the_limit() {
        let mut zeros = Zeros(0);
        let bytes = read_at_most(&mut zeros, MAX_DOCUMENT_BYTES).unwrap();
        assert_eq!(bytes.len(), MAX_DOCUMENT_BYTES + 1);
        assert_eq!(zeros.0, MAX_DOCUMENT_BYTES + 1);
        let limit = format!(
            "at most {MAX_DOCUMENT_BYTES} bytes (MAX_DOCUMENT_BYTES), the most the library reads"
        );
        // A regular file says how long it is (sparse: no disk space taken). An endless one
        // (`/dev/zero`) is tested in tests/input.rs, under a memory limit.
        let path = std::env::temp_dir().join(format!("pg-document-{}.json", std::process::id()));
        let file = File::create(&path).unwrap();
        file.set_len(200 << 20).unwrap();
        let e = load::<PromotionConfig>(&path).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(
            e.ends_with(&format!("invalid document = 209715200 bytes: {limit}")),
            "{e}"
        );
    }

    #[test]
    fn a_document_that_is_not_utf8_is_refused_as_such_not_as_unreadable() {
        // It was `cannot read PATH: invalid utf-8 sequence of 1 bytes from index 11`.
        let path = std::env::temp_dir().join(format!("pg-latin1-{}.json", std::process::id()));
        std::fs::write(&path, b"{\"gate\": \"caf\xe9\"}").unwrap();
        let e = load::<PromotionConfig>(&path).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            e,
            format!(
                "{}: the document is not UTF-8 text (invalid byte at offset 13)",
                path.display()
            )
        );
        // A file that cannot be read still says so.
        let e = load::<PromotionConfig>(&path).unwrap_err().to_string();
        assert!(e.starts_with("cannot read "), "{e}");
    }

    #[test]
    fn a_byte_order_mark_is_refused_in_json_as_the_library_refuses_it_and_read_past_in_toml() {
        // JSON: `validate` passed a file every host refuses, with serde's `expected value at
        // line 1 column 1`.
        let library = PromotionConfig::from_json("\u{feff}{\"gate\": \"a\"}")
            .unwrap_err()
            .to_string();
        assert_eq!(
            library,
            "invalid JSON config: starts with a UTF-8 byte order mark (EF BB BF): save it \
             without one"
        );
        for name in ["c.json", "c"] {
            for text in ["\u{feff}{\"gate\": \"a\"}", "\u{feff}{\"gate\": 1}"] {
                let e = refusal::<PromotionConfig>(name, text);
                assert_eq!(
                    e,
                    format!(
                        "{name}: invalid JSON: starts with a UTF-8 byte order mark (EF BB BF): \
                         save it without one"
                    )
                );
            }
        }
        let e = refusal::<SloConfig>("s.json", "\u{feff}{}");
        assert!(
            e.ends_with("byte order mark (EF BB BF): save it without one"),
            "{e}"
        );
        // TOML: the toml crate reads past one (TOML 1.1), and line 1's columns are counted
        // after it.
        let config = parse::<PromotionConfig>(Path::new("c.toml"), "\u{feff}gate = \"a\"\n");
        assert_eq!(config.unwrap().gate, "a");
        let e = refusal::<PromotionConfig>("c.toml", "\u{feff}gate = 1\n");
        assert!(e.ends_with("at line 1 column 8"), "{e}");
    }

    #[test]
    fn format_by_extension_then_content() {
        assert_eq!(Format::of(Path::new("a.TOML"), "{"), Format::Toml);
        assert_eq!(Format::of(Path::new("a"), " {}"), Format::Json);
        assert_eq!(Format::of(Path::new("a.conf"), "gate = 'x'"), Format::Toml);
        // `[` is JSON when the text is JSON, a TOML table header otherwise.
        for json in ["[\"x\"]", " \n[]", "[1, {\"gate\": \"x\"}]", "[[1]]"] {
            assert_eq!(
                Format::of(Path::new("/dev/stdin"), json),
                Format::Json,
                "{json}"
            );
        }
        for toml in [
            "[promotion]\ngate = 'x'\n",
            "[[stages]]\nduration_s = 1\n",
            "# c\n[1]",
        ] {
            assert_eq!(
                Format::of(Path::new("/dev/stdin"), toml),
                Format::Toml,
                "{toml}"
            );
        }
        assert_eq!(Format::of(Path::new("a.toml"), "[\"x\"]"), Format::Toml);
    }

    #[test]
    fn a_text_held_is_read_with_its_numbers_as_written_as_a_file_of_it_is() {
        // A byte order mark is dropped (a TOML one), so that the spans count from the text.
        let text = "\u{feff}latency_target_ms = 1_000\nmax_error_rate = 0.050\n";
        let (slo, written) = parse_written::<SloConfig>(Path::new("s.toml"), text).unwrap();
        assert_eq!(written.number_at("latency_target_ms"), Some("1_000"));
        assert_eq!(written.number_at("max_error_rate"), Some("0.050"));
        let path = std::env::temp_dir().join(format!("pg-written-{}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let (loaded, from_file) = load_written::<SloConfig>(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(slo, loaded);
        assert_eq!(from_file.number_at("latency_target_ms"), Some("1_000"));
        // A refusal is `parse`'s.
        let e = parse_written::<SloConfig>(Path::new("s.json"), "{\"min_samples\": -1}")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            parse::<SloConfig>(Path::new("s.json"), "{\"min_samples\": -1}")
                .unwrap_err()
                .to_string()
        );
    }
}
