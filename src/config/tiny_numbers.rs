//! Numbers written too small for an `f64`. serde_json reads `1e-400` (or `0.` and 400 zeros
//! then `1`) as 0 without an error, so a canary share, a tolerance or a limit given so became
//! 0 unseen; a document holding one is refused, naming the field and the number as written.
//! [`first_tiny_number`] finds the first in a JSON document, in one pass over its bytes before
//! serde reads it: it skips strings, keeps the path to the value (object keys and array
//! indices, at most serde_json's depth of 128, in a fixed array), and stops, leaving the
//! document to serde's error, at the first thing that is no JSON. [`number_at`] walks a
//! document the same way to find the number written at a field, for a refusal that names it as
//! written ([`as_written`](super::as_written)).
//!
//! A positive number below the smallest normal `f64` (2.2250738585072014e-308) that still
//! reads as one above 0 (a subnormal, `1e-310`) is read as it reads, as before: only a number
//! that would read as 0 is refused.

use crate::error::shortened;

/// The words of the refusal of a number [`is_tiny_number`] finds, after `FIELD = NUMBER: `.
///
/// # Example
/// ```
/// use promotion_gates::{PromotionConfig, TINY_NUMBER_REFUSAL};
///
/// let e = PromotionConfig::from_json(r#"{"slo_threshold": 1e-400}"#).unwrap_err();
/// assert!(e.to_string().contains(&format!("slo_threshold = 1e-400: {TINY_NUMBER_REFUSAL}")));
/// ```
pub const TINY_NUMBER_REFUSAL: &str =
    "below the smallest positive number a double holds (5e-324); it would read as 0";

/// Whether `number`, a decimal number as a document writes it (JSON's form, or TOML's once
/// its underscores are taken out), has a digit other than 0 before its exponent yet reads as
/// 0 in an `f64`: `1e-400`, `-2.5e-330`, or `0.` then 400 zeros and `1`. A zero as written
/// (`0`, `-0.0`, `0e-400`) is none, nor is a subnormal that reads above 0 (`1e-310`), nor
/// anything that is not a number.
///
/// The library refuses such a number in every JSON document it reads, with
/// [`TINY_NUMBER_REFUSAL`]; a program that reads documents of its own, or in another format,
/// calls it to refuse them alike (the CLI reads TOML so).
///
/// # Example
/// ```
/// use promotion_gates::is_tiny_number;
///
/// assert!(is_tiny_number("1e-400"));
/// assert!(is_tiny_number(&format!("0.{}1", "0".repeat(400))));
/// assert!(!is_tiny_number("0e-400"));
/// assert!(!is_tiny_number("-0.0"));
/// assert!(!is_tiny_number("1e-310"));
/// assert!(!is_tiny_number("5"));
/// ```
pub fn is_tiny_number(number: &str) -> bool {
    let mantissa = number.split(['e', 'E']).next().unwrap_or("");
    mantissa.bytes().any(|b| matches!(b, b'1'..=b'9'))
        && number.parse::<f64>().is_ok_and(|value| value == 0.0)
}

/// serde_json's nesting limit: a deeper document is refused by serde, so the pass stops there.
const MAX_DEPTH: usize = 128;

/// Where a value is within its parent: under a key (the key's bytes with their quotes), or at
/// an index of an array.
#[derive(Debug, Clone, Copy)]
enum Place {
    Key { start: usize, end: usize },
    Index(usize),
}

/// The first number [`first_tiny_number`] found, with where it is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TinyNumber {
    /// Its field path as this library's messages write it (`environment.canary.traffic_percent`,
    /// `stages[0].duration_s`), empty for a number that is the whole document.
    pub(crate) field: String,
    /// The number as written.
    pub(crate) written: String,
    /// Its line (from 1) and the column of its last byte, counted in bytes as serde_json
    /// counts them in its errors.
    pub(crate) line: usize,
    pub(crate) column: usize,
}

impl TinyNumber {
    /// The refusal as this library's JSON errors write it, the field under `within`
    /// (`release.config`) unless that is empty: `FIELD = NUMBER: ... at line L column C`, the
    /// field and the number [`shortened`].
    pub(crate) fn refusal(&self, within: &str) -> String {
        let field = match (within.is_empty(), self.field.is_empty()) {
            (_, true) => within.to_string(),
            (true, false) => self.field.clone(),
            (false, false) => format!("{within}.{}", self.field),
        };
        let written = shortened(&self.written);
        let at = format!("at line {} column {}", self.line, self.column);
        match field.is_empty() {
            true => format!("{written}: {TINY_NUMBER_REFUSAL} {at}"),
            false => format!(
                "{} = {written}: {TINY_NUMBER_REFUSAL} {at}",
                shortened(&field)
            ),
        }
    }
}

/// The first number in `json` that [`is_tiny_number`], with its field path and position; `None`
/// when it has none, or when it is no JSON before one is met (serde's error tells what).
///
/// One pass over the bytes; nothing is allocated unless a number is found.
pub(crate) fn first_tiny_number(json: &[u8]) -> Option<TinyNumber> {
    first_number(json, |_, written| is_tiny_number(written))
        .map(|(path, written, end)| found(json, &path, written, end))
}

/// The number written at `field` in the JSON document `json` (a field path as this library's
/// messages write it, `slo.latency_target_ms`, `stages[0].duration_s`), as it is written there;
/// `None` when no number is there, or when the document is no JSON before it.
///
/// One pass over the bytes, each number's path compared with `field` place by place (at most
/// about `field`'s length read per number, whatever the document's keys and depth): for an
/// error's message, never on a request's path.
pub(crate) fn number_at<'j>(json: &'j [u8], field: &str) -> Option<&'j str> {
    first_number(json, |path, _| is_field(json, path, field)).map(|(_, written, _)| written)
}

/// Whether `path` in `json` is written `field`, as [`field_of`] writes it, without writing it
/// out: a key is decoded only when it holds an escape or is no UTF-8 and could still be as long
/// as what is left of `field` (a decoded key is at least a sixth of its raw length, `\u0041`).
fn is_field(json: &[u8], path: &[Place], field: &str) -> bool {
    let mut rest = field.as_bytes();
    for place in path {
        let written_before = rest.len() < field.len();
        match *place {
            Place::Key { start, end } => {
                if written_before {
                    let Some(after_dot) = rest.strip_prefix(b".") else {
                        return false;
                    };
                    rest = after_dot;
                }
                let raw = &json[start..end];
                let inner = &raw[1..raw.len() - 1];
                let key_matches = |key: &[u8], rest: &mut &[u8]| match rest.strip_prefix(key) {
                    Some(after) => {
                        *rest = after;
                        true
                    }
                    None => false,
                };
                let plain = !inner.contains(&b'\\') && std::str::from_utf8(inner).is_ok();
                let matched = if plain {
                    key_matches(inner, &mut rest)
                } else if raw.len() > 6 * rest.len() + 2 {
                    false
                } else {
                    let key = field_of(json, std::slice::from_ref(place));
                    key_matches(key.as_bytes(), &mut rest)
                };
                if !matched {
                    return false;
                }
            }
            Place::Index(index) => {
                let Some(digits_on) = rest.strip_prefix(b"[") else {
                    return false;
                };
                let digits = digits_on.iter().take_while(|b| b.is_ascii_digit()).count();
                let shown = &digits_on[..digits];
                let same = !shown.is_empty()
                    && (shown == b"0" || shown[0] != b'0')
                    && std::str::from_utf8(shown)
                        .ok()
                        .and_then(|d| d.parse::<usize>().ok())
                        == Some(index);
                match digits_on[digits..].strip_prefix(b"]") {
                    Some(after) if same => rest = after,
                    _ => return false,
                }
            }
        }
    }
    rest.is_empty()
}

/// The first number in `json` that `wanted` (given its path and its text as written) takes:
/// its path, its text and the end of its bytes; `None` when there is none, or when `json` is
/// no JSON before one is met.
fn first_number(
    json: &[u8],
    mut wanted: impl FnMut(&[Place], &str) -> bool,
) -> Option<(Vec<Place>, &str, usize)> {
    let mut path = [Place::Index(0); MAX_DEPTH];
    let mut depth = 0;
    let mut at = whitespace(json, 0);
    loop {
        // A value starts at `at`.
        match *json.get(at)? {
            open @ (b'{' | b'[') => {
                if depth == MAX_DEPTH {
                    return None;
                }
                at = whitespace(json, at + 1);
                if json.get(at) == Some(&(open + 2)) {
                    // `{}` or `[]`: `}` and `]` follow `{` and `[` by 2 in ASCII.
                    at += 1;
                } else {
                    path[depth] = match open {
                        b'{' => {
                            let key;
                            (key, at) = key_then_colon(json, at)?;
                            key
                        }
                        _ => Place::Index(0),
                    };
                    depth += 1;
                    continue;
                }
            }
            b'"' => at = string_end(json, at)?,
            b'-' | b'0'..=b'9' => {
                let end = number_end(json, at)?;
                let written = std::str::from_utf8(&json[at..end]).ok()?;
                if wanted(&path[..depth], written) {
                    return Some((path[..depth].to_vec(), written, end));
                }
                at = end;
            }
            b't' => at = literal(json, at, b"true")?,
            b'f' => at = literal(json, at, b"false")?,
            b'n' => at = literal(json, at, b"null")?,
            _ => return None,
        }
        // A value ended at `at`: close what it ends, then the next value's place.
        loop {
            at = whitespace(json, at);
            let place = path[..depth].last_mut()?;
            match (place, *json.get(at)?) {
                (Place::Key { .. }, b'}') | (Place::Index(_), b']') => {
                    depth -= 1;
                    at += 1;
                }
                (place @ Place::Key { .. }, b',') => {
                    (*place, at) = key_then_colon(json, whitespace(json, at + 1))?;
                    break;
                }
                (Place::Index(index), b',') => {
                    *index += 1;
                    at = whitespace(json, at + 1);
                    break;
                }
                _ => return None,
            }
        }
    }
}

/// `path` in `json` as this library's messages write a field (`a.b[2].c`).
fn field_of(json: &[u8], path: &[Place]) -> String {
    let mut field = String::new();
    for place in path {
        match *place {
            Place::Key { start, end } => {
                if !field.is_empty() {
                    field.push('.');
                }
                let raw = &json[start..end];
                match serde_json::from_slice::<String>(raw) {
                    Ok(key) => field.push_str(&key),
                    Err(_) => field.push_str(&String::from_utf8_lossy(raw)),
                }
            }
            Place::Index(index) => field.push_str(&format!("[{index}]")),
        }
    }
    field
}

/// The number `written`, ending at `end`, under `path` in `json`.
fn found(json: &[u8], path: &[Place], written: &str, end: usize) -> TinyNumber {
    let field = field_of(json, path);
    let before = &json[..end];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |newline| newline + 1);
    TinyNumber {
        field,
        written: written.to_string(),
        line: before.iter().filter(|&&b| b == b'\n').count() + 1,
        column: end - line_start,
    }
}

/// The first byte at or after `at` that is not JSON's whitespace.
fn whitespace(json: &[u8], mut at: usize) -> usize {
    while matches!(json.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// An object's key at `at` and the `:` after it: the key's place and where its value starts.
fn key_then_colon(json: &[u8], at: usize) -> Option<(Place, usize)> {
    if json.get(at) != Some(&b'"') {
        return None;
    }
    let end = string_end(json, at)?;
    let colon = whitespace(json, end);
    (json.get(colon) == Some(&b':'))
        .then(|| (Place::Key { start: at, end }, whitespace(json, colon + 1)))
}

/// The end of the string whose opening quote is at `at` (just past its closing quote).
fn string_end(json: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        match *json.get(i)? {
            b'"' => return Some(i + 1),
            // The escaped byte is skipped; `\u` is followed by hex digits, none of them a quote.
            b'\\' => i += 2,
            // A control character is no JSON.
            0..=0x1F => return None,
            _ => i += 1,
        }
    }
}

/// The end of the JSON number starting at `at`: `-`? (`0` | [1-9][0-9]*) (`.` [0-9]+)?
/// ([eE] [+-]? [0-9]+)?, or `None` if what starts there is no such number.
fn number_end(json: &[u8], at: usize) -> Option<usize> {
    let digits = |from: usize| {
        from + json[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let mut i = at + usize::from(json.get(at) == Some(&b'-'));
    match json.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(i),
        _ => return None,
    }
    if json.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    if matches!(json.get(i), Some(b'e' | b'E')) {
        i += 1;
        i += usize::from(matches!(json.get(i), Some(b'+' | b'-')));
        let end = digits(i);
        if end == i {
            return None;
        }
        i = end;
    }
    Some(i)
}

/// The end of `word` (`true`, `false`, `null`) at `at`, if it is there.
fn literal(json: &[u8], at: usize, word: &[u8]) -> Option<usize> {
    json.get(at..at + word.len())
        .filter(|found| *found == word)
        .map(|_| at + word.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn found_in(json: &str) -> Option<(String, String)> {
        first_tiny_number(json.as_bytes()).map(|n| (n.field, n.written))
    }

    #[test]
    fn the_first_tiny_number_is_found_with_its_path() {
        let zeros = format!("0.{}1", "0".repeat(400));
        for (json, field, written) in [
            (r#"{"a": 1e-400}"#, "a", "1e-400"),
            (r#"{"a": {"b": [1, 2, -5E-999]}}"#, "a.b[2]", "-5E-999"),
            (
                r#"{"x": "1e-400", "y": [[], {}, {"z": 1e-400}]}"#,
                "y[2].z",
                "1e-400",
            ),
            (&format!(r#"{{"a\"b": {zeros}}}"#), "a\"b", zeros.as_str()),
            (r#"{"\u0041": 1e-330}"#, "A", "1e-330"),
            ("1e-400", "", "1e-400"),
        ] {
            assert_eq!(
                found_in(json),
                Some((field.to_string(), written.to_string())),
                "{json}"
            );
        }
    }

    #[test]
    fn zeros_subnormals_strings_and_other_numbers_are_no_tiny_number() {
        for json in [
            r#"{"a": [0, 0.0, -0.0, 0e-400, -0.000e5, 0E+0]}"#,
            r#"{"a": 1e-310, "b": 5e-324, "c": 2.5e-324}"#,
            r#"{"a": "1e-400", "b\"": "\"1e-400", "1e-400": 1}"#,
            r#"{"a": 1e400, "b": 123456789012345678901234567890, "c": true, "d": null}"#,
        ] {
            assert_eq!(found_in(json), None, "{json}");
        }
        // 2.4e-324 is nearer 0 than the smallest subnormal: it reads as 0.
        assert!(found_in(r#"{"a": 2.4e-324}"#).is_some());
    }

    #[test]
    fn what_is_no_json_before_a_tiny_number_stops_the_pass() {
        for json in [
            r#"{"a": 01, "b": 1e-400}"#,
            r#"{"a": tru, "b": 1e-400}"#,
            r#"{"a" 1, "b": 1e-400}"#,
            r#"{"a": "x
", "b": 1e-400}"#,
            r#"{"a": 1.e5, "b": 1e-400}"#,
            r#"[1 2, 1e-400]"#,
            r#"{"a": [1}, "b": 1e-400}"#,
        ] {
            assert_eq!(found_in(json), None, "{json}");
        }
        let deep = format!("{}1e-400{}", "[".repeat(129), "]".repeat(129));
        assert_eq!(found_in(&deep), None);
        let deepest = format!("{}1e-400{}", "[".repeat(128), "]".repeat(128));
        assert!(found_in(&deepest).is_some());
    }

    #[test]
    fn a_field_is_compared_place_by_place() {
        let json = br#"{"": {"\u0041": [5, 6], "a": {"b": [[7], 8]}}, "x\"y": 9}"#;
        let mut found = Vec::new();
        for field in [
            "A[1]",
            "a.b[0][0]",
            "a.b[1]",
            "x\"y",
            "A[01]",
            "A[]",
            "A",
            ".A[1]",
            "a.b[1][0]",
        ] {
            found.push(number_at(json, field));
        }
        assert_eq!(
            found,
            [
                Some("6"),
                Some("7"),
                Some("8"),
                Some("9"),
                None,
                None,
                None,
                None,
                None
            ]
        );
        // A long key is never decoded for a short field: millions of numbers under a 4 MiB
        // key with an escape cost one pass, not one decoding each (this took minutes before).
        let key = format!("\\u0041{}", "k".repeat(4 << 20));
        let numbers = vec!["0"; 1 << 20].join(",");
        let json = format!(r#"{{"{key}": [{numbers}], "a": 1}}"#);
        assert_eq!(number_at(json.as_bytes(), "a"), Some("1"));
    }

    #[test]
    fn the_refusal_names_the_field_the_number_and_its_place() {
        let json = "{\n  \"slo\": {\"max_error_rate\": 1e-400}}";
        let tiny = first_tiny_number(json.as_bytes()).unwrap();
        assert_eq!(
            tiny.refusal("release.config"),
            format!(
                "release.config.slo.max_error_rate = 1e-400: {TINY_NUMBER_REFUSAL} at line 2 column 34"
            )
        );
        let long = format!("{{\"a\": 0.{}1}}", "0".repeat(400));
        let refusal = first_tiny_number(long.as_bytes()).unwrap().refusal("");
        assert!(refusal.starts_with("a = 0.000"), "{refusal}");
        assert!(refusal.contains("...(403 bytes): below"), "{refusal}");
    }

    /// A JSON value whose numbers each read as written (none [`is_tiny_number`]), keys and
    /// strings with escapes among them.
    fn representable_json() -> impl Strategy<Value = String> {
        let number = prop_oneof![
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:e}")),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| f.to_string()),
            any::<i64>().prop_map(|i| i.to_string()),
            "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?"
                .prop_filter("read as written: finite, not tiny", |n| !is_tiny_number(n)
                    && n.parse::<f64>().is_ok_and(f64::is_finite)),
        ];
        let text = "([a-z0-9 \"\\\\/\n\t\u{1}é]|1e-400){0,8}"
            .prop_map(|s| serde_json::to_string(&s).unwrap_or_default());
        let leaf = prop_oneof![
            number,
            text.clone(),
            Just("true".to_string()),
            Just("null".to_string()),
        ];
        leaf.prop_recursive(6, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6)
                    .prop_map(|items| format!("[ {} ]", items.join(" ,\n"))),
                prop::collection::vec((text.clone(), inner), 0..6).prop_map(|fields| {
                    let fields: Vec<_> = fields.iter().map(|(k, v)| format!("{k}\t:{v}")).collect();
                    format!("{{{}}}", fields.join(","))
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn a_document_serde_reads_with_every_number_as_written_is_never_refused(
            json in representable_json()
        ) {
            prop_assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok(), "{}", json);
            prop_assert_eq!(found_in(&json), None, "{}", json);
        }

        #[test]
        fn a_number_is_found_at_its_field_after_any_value(
            json in representable_json(), number in "-?(0|[1-9][0-9]{0,25})(\\.[0-9]{1,5})?(e-?[0-9]{1,3})?"
        ) {
            let document = format!("[{json}, {{\"k\": [true, {number}]}}]");
            prop_assert_eq!(number_at(document.as_bytes(), "[1].k[1]"), Some(number.as_str()));
            prop_assert_eq!(number_at(document.as_bytes(), "[1].k[0]"), None);
        }

        #[test]
        fn a_path_is_its_field_as_written_out_and_no_other(json in representable_json()) {
            // Every number's path against its own field (found), against that field cut short
            // or made longer (never: a prefix, a longer index, another key).
            let mut paths = Vec::new();
            first_number(json.as_bytes(), |path, _| {
                paths.push(path.to_vec());
                false
            });
            for path in paths {
                let field = field_of(json.as_bytes(), &path);
                prop_assert!(is_field(json.as_bytes(), &path, &field), "{} at {:?}", json, field);
                for other in [
                    format!("{field}0"),
                    format!("{field}.x"),
                    format!("{field}[0]"),
                    field.chars().skip(1).collect(),
                ]
                .into_iter()
                .filter(|other| *other != field)
                {
                    prop_assert!(!is_field(json.as_bytes(), &path, &other), "{} at {:?}", json, other);
                }
            }
        }

        #[test]
        fn a_tiny_number_anywhere_is_found_where_serde_reads_zero(
            json in representable_json(), mantissa in 1u32..1000, exponent in 328u32..100_000
        ) {
            let tiny = format!("{mantissa}e-{exponent}");
            let document = format!("[{json}, {{\"k\": [{tiny}]}}]");
            let value: serde_json::Value = serde_json::from_str(&document).unwrap();
            prop_assert_eq!(value[1]["k"][0].as_f64(), Some(0.0));
            prop_assert_eq!(found_in(&document), Some(("[1].k[0]".to_string(), tiny)));
        }
    }
}
