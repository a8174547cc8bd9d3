//! The Rust engine against the shared routing vectors, `tests/vectors/routing.json`, which
//! `tests/vectors/generate.py` computes from the documented formula alone (Python's hashlib).
//! Every language binding reads the same file; this is the Rust side.
//!
//! Also `tests/vectors/quoted.tsv`, how the bindings show a value they refuse themselves: each
//! row is checked against the library's `shown_bytes` and, when UTF-8, against Rust's `{:?}`.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use promotion_gates::bucket::salt_block;
use promotion_gates::{
    MAX_SHOWN_VALUE_BYTES, Overrides, PromotionConfig, RoutingDecision, SaltedHasher,
    reference_bucket, shown_bytes, threshold_for_percent,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use common::{canary, gate};

/// The format this test reads; a new format needs a new reader, not a silent pass.
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorFile {
    header: Header,
    vectors: Vec<Vector>,
}

/// The header's machine-read parts; the formula and rules are prose for people.
#[derive(Debug, Deserialize)]
struct Header {
    format_version: u32,
    overridden: Overridden,
    salt_block_sha256: Vec<SaltAnswer>,
}

/// The header's `overridden` rule: every vector routes the same through a gate with these
/// overrides, with no forcing value and with `ignored_value`, and is not forced.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Overridden {
    overrides: Overrides,
    ignored_value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SaltAnswer {
    salt: String,
    salt_sha256: String,
    salt_block_sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    name: String,
    salt: String,
    id: Option<String>,
    id_hex: Option<String>,
    id_rule: Option<IdRule>,
    traffic_percent: f64,
    bucket: u32,
    threshold: u32,
    is_canary: bool,
    digest_prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdRule {
    repeat: String,
    length: usize,
}

impl Vector {
    /// The request id's bytes, by the header's rules: exactly one of `id`, `id_hex`, `id_rule`.
    fn request_id(&self) -> Vec<u8> {
        match (&self.id, &self.id_hex, &self.id_rule) {
            (Some(text), None, None) => text.as_bytes().to_vec(),
            (None, Some(hex), None) => from_hex(hex),
            (None, None, Some(rule)) => rule.repeat.bytes().cycle().take(rule.length).collect(),
            _ => panic!("{}: needs exactly one of id, id_hex, id_rule", self.name),
        }
    }
}

fn load() -> VectorFile {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "vectors",
        "routing.json",
    ]
    .iter()
    .collect();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run tests/vectors/generate.py to write it)",
            path.display()
        )
    });
    let file: VectorFile = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not a vector file: {e}", path.display()));
    assert_eq!(file.header.format_version, FORMAT_VERSION);
    assert!(
        !file.vectors.is_empty(),
        "{} holds no vectors",
        path.display()
    );
    file
}

fn from_hex(hex: &str) -> Vec<u8> {
    assert!(hex.len().is_multiple_of(2), "odd-length hex {hex:?}");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or_else(|e| panic!("{hex:?}: {e}")))
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn salt_blocks_match_the_known_answers() {
    let file = load();
    assert!(!file.header.salt_block_sha256.is_empty());
    for answer in &file.header.salt_block_sha256 {
        let block = salt_block(answer.salt.as_bytes());
        assert_eq!(to_hex(&block[..32]), answer.salt_sha256, "{}", answer.salt);
        assert_eq!(block[32..], [0u8; 32], "{}", answer.salt);
        assert_eq!(
            to_hex(&Sha256::digest(block)),
            answer.salt_block_sha256,
            "{}",
            answer.salt
        );
    }
}

#[test]
fn the_pure_functions_match_every_vector() {
    let mut failures = Vec::new();
    for v in &load().vectors {
        let id = v.request_id();
        let mut message = salt_block(v.salt.as_bytes()).to_vec();
        message.extend_from_slice(&id);
        let got = [
            (
                "digest_prefix",
                to_hex(&Sha256::digest(&message)[..8]),
                v.digest_prefix.clone(),
            ),
            (
                "reference_bucket",
                reference_bucket(v.salt.as_bytes(), &id).to_string(),
                v.bucket.to_string(),
            ),
            (
                "SaltedHasher::bucket",
                SaltedHasher::new(v.salt.as_bytes())
                    .bucket(&id)
                    .get()
                    .to_string(),
                v.bucket.to_string(),
            ),
            (
                "threshold_for_percent",
                threshold_for_percent(v.traffic_percent).to_string(),
                v.threshold.to_string(),
            ),
        ];
        for (what, actual, expected) in got {
            if actual != expected {
                failures.push(format!(
                    "{}: {what} = {actual}, expected {expected}",
                    v.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn gates_route_every_vector_as_expected() {
    let file = load();
    let overridden = &file.header.overridden;
    let ignored = overridden.ignored_value.as_bytes();
    // One pair of gates per (salt, percentage): the salt set explicitly, and the same string as
    // the gate's name with no salt (the effective salt falls back to the gate); each pair once
    // without overrides and once with the header's, which take the override path.
    let mut groups: BTreeMap<(&str, u64), Vec<&Vector>> = BTreeMap::new();
    for v in &file.vectors {
        groups
            .entry((v.salt.as_str(), v.traffic_percent.to_bits()))
            .or_default()
            .push(v);
    }
    let mut failures = Vec::new();
    let mut routed = 0;
    for ((salt, percent_bits), group) in groups {
        let percent = f64::from_bits(percent_bits);
        let by_salt = PromotionConfig {
            environment: canary(percent),
            salt: Some(salt.to_string()),
            ..Default::default()
        };
        let by_gate = PromotionConfig {
            gate: salt.to_string(),
            salt: None,
            ..by_salt.clone()
        };
        for (via, config) in [("salt", by_salt), ("gate", by_gate)] {
            let with_overrides = PromotionConfig {
                overrides: Some(overridden.overrides.clone()),
                ..config.clone()
            };
            let plain = gate(config);
            let overriding = gate(with_overrides);
            for v in &group {
                let id = v.request_id();
                let decision = plain.route_request_bytes(&id);
                let mut check = |how: &str, d: &RoutingDecision<'_>| {
                    let got = (
                        d.is_canary,
                        d.reason.bucket().get(),
                        d.reason.threshold(),
                        d.forced,
                    );
                    if got != (v.is_canary, v.bucket, v.threshold, None) {
                        failures.push(format!(
                            "{} (salted via {via}, {how}): (is_canary, bucket, threshold, \
                             forced) = {got:?}, expected ({}, {}, {}, None)",
                            v.name, v.is_canary, v.bucket, v.threshold
                        ));
                    }
                    assert_eq!(d.target_environment, canary(percent), "{}", v.name);
                };
                check("no overrides", &decision);
                check(
                    "overrides, no forcing value",
                    &overriding.route_request_bytes(&id),
                );
                check(
                    "overrides, an ignored forcing value",
                    &overriding.route_request_forced(&id, Some(ignored)),
                );
                routed += 1;
                if let Some(text) = &v.id {
                    assert_eq!(plain.route_request(text), decision, "{}", v.name);
                }
            }
            assert_eq!(
                overriding.ignored_override_values(),
                group.len() as u64,
                "{salt} at {percent}% (salted via {via}): every ignored value counted"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(routed, 2 * file.vectors.len());
}

#[test]
fn the_vectors_cover_what_they_promise() {
    let vectors = load().vectors;
    let any = |f: &dyn Fn(&Vector) -> bool| vectors.iter().any(f);
    assert!(any(&|v| v.is_canary) && any(&|v| !v.is_canary));
    assert!(
        any(&|v| v.bucket + 1 == v.threshold),
        "no vector at bucket == threshold - 1"
    );
    assert!(
        any(&|v| v.bucket == v.threshold),
        "no vector at bucket == threshold"
    );
    assert!(any(&|v| v.id_hex.is_some()) && any(&|v| v.id_rule.is_some()));
    assert!(any(&|v| v.id.as_deref() == Some("")), "no empty id");
    for percent in [
        0.0, 0.00001, 0.001, 0.01, 0.1, 1.0, 5.0, 12.345678, 25.0, 50.0, 99.99999, 100.0,
    ] {
        assert!(
            any(&|v| v.traffic_percent == percent),
            "no vector at {percent}%"
        );
    }
}

/// One row of `tests/vectors/quoted.tsv`: a value's bytes, what the bindings show of it, and
/// what the library shows where that differs.
struct QuotedRow {
    line: &'static str,
    input: Vec<u8>,
    shown: &'static str,
    rust: Option<&'static str>,
}

fn quoted_rows() -> Vec<QuotedRow> {
    include_str!("vectors/quoted.tsv")
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let (hex, shown, rust) = match fields[..] {
                [hex, shown] => (hex, shown, None),
                [hex, shown, rust] => (hex, shown, Some(rust)),
                _ => panic!("quoted.tsv: not 2 or 3 fields: {line:?}"),
            };
            QuotedRow {
                line,
                input: from_hex(hex),
                shown,
                rust,
            }
        })
        .collect()
}

/// Rust's `{:?}` of `text`, shortened as the library shortens a value it shows: past
/// [`MAX_SHOWN_VALUE_BYTES`], its first bytes up to there, cut before a character, then
/// `...(N bytes)`.
fn debug_shown(text: &str) -> String {
    if text.len() <= MAX_SHOWN_VALUE_BYTES {
        return format!("{text:?}");
    }
    let cut = (0..=MAX_SHOWN_VALUE_BYTES)
        .rev()
        .find(|&at| text.is_char_boundary(at))
        .unwrap_or(0);
    format!("{:?}...({} bytes)", &text[..cut], text.len())
}

/// `expected`, what the library shows of `text`, with each character of `text` that Rust's
/// `{:?}` shows as it is but the library escapes (one it calls invisible: the Hangul fillers,
/// U+2800) as `{:?}` shows it: what `{:?}` shows, when the library differs from it only there.
fn as_debug_shows(expected: &str, text: &str) -> String {
    let mut shown = expected.to_owned();
    for c in text.chars().filter(|&c| promotion_gates::is_invisible(c)) {
        let escaped = format!("\\u{{{:x}}}", u32::from(c));
        if format!("{c:?}") == format!("'{c}'") {
            shown = shown.replace(&escaped, &c.to_string());
        }
    }
    shown
}

#[test]
fn the_quoted_vectors_are_what_the_library_and_rust_show() {
    let rows = quoted_rows();
    let (mut utf8, mut differing, mut long) = (0, 0, 0);
    for row in &rows {
        if let Some(rust) = row.rust {
            assert_ne!(
                rust, row.shown,
                "a third field that does not differ: {}",
                row.line
            );
            differing += 1;
        }
        let expected = row.rust.unwrap_or(row.shown);
        assert_eq!(
            shown_bytes(&row.input).to_string(),
            expected,
            "{}",
            row.line
        );
        if let Ok(text) = std::str::from_utf8(&row.input) {
            assert_eq!(
                debug_shown(text),
                as_debug_shows(expected, text),
                "{}",
                row.line
            );
            utf8 += 1;
        }
        if row.input.len() > MAX_SHOWN_VALUE_BYTES {
            long += 1;
        }
    }
    assert!(utf8 >= 90, "only {utf8} rows of UTF-8");
    assert!(
        rows.len() - utf8 >= 10,
        "only {} rows not UTF-8",
        rows.len() - utf8
    );
    assert!(
        differing >= 10 && long >= 2,
        "{differing} rows differing, {long} long"
    );
}
