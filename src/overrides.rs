//! Overrides: forcing a request to the canary or the stable version, past its bucket.
//!
//! Two ways, both set by the `overrides` section of the config ([`Overrides`]):
//! - **a forcing value** the host reads from the request, from the header or cookie the config
//!   names ([`Overrides::header`], [`Overrides::cookie`]), and hands to
//!   [`route_request_forced`](crate::PromotionGateManager::route_request_forced): `canary` or
//!   `stable` (ASCII case ignored) force the request; any other value is ignored and counted
//!   ([`ignored_override_values`](crate::PromotionGateManager::ignored_override_values)), never
//!   an error on the request path;
//! - **allow-lists of request ids** ([`Overrides::canary_ids`], [`Overrides::stable_ids`]),
//!   checked by every route call.
//!
//! An id list wins over a forcing value (an operator's pin is not undone by a header). A forced
//! decision says so ([`RoutingDecision::forced`](crate::RoutingDecision::forced)); its outcome is
//! counted apart ([`Recorded::Forced`](crate::Recorded::Forced)), in neither cohort, so testers
//! never distort the judge's comparison.
//!
//! The compiled [`OverrideTable`] lives in the snapshot; the route table carries one bit saying
//! whether any id is listed, so a route without a forcing value on a gate that lists no ids
//! pays one predictable branch.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::bucket::{Bucket, SaltedHasher};
use crate::config::{is_format_char, is_invisible};
use crate::decision::Cohort;
use crate::error::{ConfigError, quoted};
use crate::limits::{MAX_NAME_BYTES, MAX_OVERRIDE_IDS};

/// The `overrides` section of a config: where a host reads a forcing value, and the ids forced
/// by list. Every field is optional; a missing section forces nothing.
///
/// In JSON: `{"header": "X-Canary", "cookie": "canary", "canary_ids": ["tester-1"],
/// "stable_ids": ["vip-7"]}`.
///
/// # Example
/// ```
/// use promotion_gates::PromotionConfig;
///
/// let config = PromotionConfig::from_json(
///     r#"{"overrides": {"header": "X-Canary", "canary_ids": ["tester-1"]}}"#,
/// )?;
/// let overrides = config.overrides.unwrap();
/// assert_eq!(overrides.header.as_deref(), Some("X-Canary"));
/// assert_eq!(overrides.canary_ids, ["tester-1"]);
/// # Ok::<(), promotion_gates::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Overrides {
    /// The request header whose value (`canary` or `stable`) forces the request. The core
    /// reads no headers: this names it for the host, which passes the value to
    /// [`route_request_forced`](crate::PromotionGateManager::route_request_forced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The cookie whose value (`canary` or `stable`) forces the request, read by the host like
    /// [`header`](Self::header). A host that finds both uses the header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// Request ids always sent to the new version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub canary_ids: Vec<String>,
    /// Request ids always sent to the stable version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stable_ids: Vec<String>,
}

impl Overrides {
    /// Checks the section: header and cookie names are 1 to
    /// [`MAX_NAME_BYTES`](crate::MAX_NAME_BYTES) bytes of an HTTP token (RFC 9110 `tchar`:
    /// ASCII letters, digits and ``!#$%&'*+-.^_`|~``, as RFC 6265's cookie names), and the
    /// header is not `Cookie`, `Set-Cookie`, `Host`, `Expect`, a hop-by-hop header (`Connection`,
    /// `Keep-Alive`, `Proxy-Connection`, `TE`, `Upgrade`) nor one that frames the body
    /// (`Content-Length`, `Transfer-Encoding`, `Trailer`), ASCII case ignored; each id is 1 to `MAX_NAME_BYTES` bytes without
    /// control, format or invisible characters (Unicode's default-ignorable code points, U+2800)
    /// nor whitespace at either end; at most
    /// [`MAX_OVERRIDE_IDS`](crate::MAX_OVERRIDE_IDS) ids in both lists together; no id in both
    /// lists (or twice in one).
    ///
    /// # Errors
    /// [`ConfigError`] naming the field (`overrides.header`, `overrides.canary_ids[3]`...) and
    /// the refused value.
    ///
    /// # Example
    /// ```
    /// use promotion_gates::Overrides;
    ///
    /// let both = Overrides {
    ///     canary_ids: vec!["u-1".into()],
    ///     stable_ids: vec!["u-1".into()],
    ///     ..Default::default()
    /// };
    /// let err = both.validate().unwrap_err();
    /// assert_eq!(err.field(), "overrides.stable_ids[0]");
    /// assert_eq!(err.value(), "\"u-1\"");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(header) = &self.header {
            check_header_name(header)?;
        }
        if let Some(cookie) = &self.cookie {
            check_token("overrides.cookie", cookie, "a cookie name (RFC 6265)")?;
        }
        let count = self.canary_ids.len() + self.stable_ids.len();
        if count > MAX_OVERRIDE_IDS {
            // The list in which the count (canary_ids first) passes the limit.
            let list = if self.canary_ids.len() > MAX_OVERRIDE_IDS {
                "canary_ids"
            } else {
                "stable_ids"
            };
            return Err(ConfigError::new(
                format!("overrides.{list}"),
                format!(
                    "{} ids in canary_ids and {} in stable_ids",
                    self.canary_ids.len(),
                    self.stable_ids.len()
                ),
                format!("at most {MAX_OVERRIDE_IDS} ids in both lists (MAX_OVERRIDE_IDS)"),
            ));
        }
        let mut seen = std::collections::HashSet::with_capacity(count);
        for (list, ids) in [
            ("canary_ids", &self.canary_ids),
            ("stable_ids", &self.stable_ids),
        ] {
            for (i, id) in ids.iter().enumerate() {
                let field = || format!("overrides.{list}[{i}]");
                if let Some(why) = id_problem(id) {
                    return Err(ConfigError::new(field(), quoted(id), why));
                }
                if !seen.insert(id.as_str()) {
                    return Err(ConfigError::new(
                        field(),
                        quoted(id),
                        "an id listed once across canary_ids and stable_ids",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What is wrong with a listed request id, if anything: its length, a control, format or
/// invisible character (which a host's id never matches as it reads: `tester\u{200B}` and
/// `tester\u{FE0F}` look like `tester`), or whitespace at either end (a copy-and-paste slip; whitespace inside is kept).
fn id_problem(id: &str) -> Option<&'static str> {
    if id.is_empty() || id.len() > MAX_NAME_BYTES {
        Some("a request id of 1 to 128 bytes (MAX_NAME_BYTES)")
    } else if id
        .chars()
        .any(|c| c.is_control() || is_format_char(c) || is_invisible(c))
    {
        Some("a request id must not hold control, format or invisible characters")
    } else if id.trim() != id {
        Some("a request id must not start or end with whitespace")
    } else {
        None
    }
}

/// Header names a forcing value cannot be read from: `Cookie` holds every cookie of the
/// request at once (name the cookie with [`Overrides::cookie`]), and `Set-Cookie` is a
/// response header.
const COOKIE_HEADERS: [&str; 2] = ["Cookie", "Set-Cookie"];

/// Hop-by-hop header names (RFC 9110 section 7.6.1, and the two older ones still sent): they
/// describe one connection, so a proxy in front of the host removes them before it forwards
/// the request, and an HTTP/2 or HTTP/3 request may not carry them (RFC 9113 section 8.2.2):
/// whether a host sees the forcing value would depend on the path the request took.
const HOP_BY_HOP_HEADERS: [&str; 5] = [
    "Connection",
    "Keep-Alive",
    "Proxy-Connection",
    "TE",
    "Upgrade",
];

/// Header names that frame the message body: Go's `net/http` removes `Transfer-Encoding` and
/// `Trailer` from the headers a handler reads while nginx keeps them, and a request whose
/// `Content-Length` or `Transfer-Encoding` is `canary` or `stable` is refused by both hosts
/// (400, 501) before any routing.
const FRAMING_HEADERS: [&str; 3] = ["Content-Length", "Transfer-Encoding", "Trailer"];

/// Checks `overrides.header`: a header name a request can carry (an RFC 9110 token, not
/// `Cookie` nor `Set-Cookie`, not `Host` nor `Expect`, no hop-by-hop header nor one that frames
/// the body).
fn check_header_name(header: &str) -> Result<(), ConfigError> {
    check_token("overrides.header", header, "a header name (RFC 9110)")?;
    if COOKIE_HEADERS
        .iter()
        .any(|name| name.eq_ignore_ascii_case(header))
    {
        return Err(ConfigError::new(
            "overrides.header",
            quoted(header),
            "a header that carries the forcing value alone: the Cookie header holds every \
             cookie and Set-Cookie is a response header (name the cookie with overrides.cookie)",
        ));
    }
    if header.eq_ignore_ascii_case("Host") {
        // nginx reads the first Host line; Go's net/http reads Request.Host, the request
        // line's host for an absolute-form request and none when empty: the hosts would read
        // two values.
        return Err(ConfigError::new(
            "overrides.header",
            quoted(header),
            "a header that carries the forcing value alone: Host holds the request's \
             authority, which each host reads its own way (the request line's host or the \
             Host line), and an HTTP/2 request has no Host line",
        ));
    }
    let named = |names: &[&str]| names.iter().any(|name| name.eq_ignore_ascii_case(header));
    if named(&HOP_BY_HOP_HEADERS) {
        return Err(ConfigError::new(
            "overrides.header",
            quoted(header),
            "a header that reaches the host as the client sent it: a hop-by-hop header \
             (Connection, Keep-Alive, Proxy-Connection, TE, Upgrade) is removed by a proxy in \
             front of the host and may not be sent over HTTP/2",
        ));
    }
    if header.eq_ignore_ascii_case("Expect") {
        // Go's net/http answers 417 to an Expect other than 100-continue before any handler
        // runs; nginx ignores an expectation it does not know and routes the request.
        return Err(ConfigError::new(
            "overrides.header",
            quoted(header),
            "a header that carries the forcing value alone: Expect asks the server for an \
             interim answer (Go's net/http answers 417 Expectation Failed to an Expect other \
             than 100-continue before any handler reads it, nginx ignores it)",
        ));
    }
    if named(&FRAMING_HEADERS) {
        return Err(ConfigError::new(
            "overrides.header",
            quoted(header),
            "a header that carries the forcing value alone: Content-Length, Transfer-Encoding \
             and Trailer frame the message body (Go's net/http removes Transfer-Encoding and \
             Trailer from a request's headers, nginx keeps them, and both refuse a request \
             whose Content-Length or Transfer-Encoding is canary or stable)",
        ));
    }
    Ok(())
}

/// Checks a header or cookie name (`what`, for the message): 1 to
/// [`MAX_NAME_BYTES`](crate::MAX_NAME_BYTES) bytes of an HTTP token (RFC 9110 section 5.6.2,
/// which RFC 6265 names `cookie-name`): ASCII letters, digits and ``!#$%&'*+-.^_`|~``. A name
/// with any other character (`:`, `=`, `;`, a quote, a space, a letter beyond ASCII) can never
/// be the name of a request's header or cookie.
fn check_token(field: &str, name: &str, what: &str) -> Result<(), ConfigError> {
    crate::config::check_name(field, name)?;
    match name.chars().find(|&c| !is_token_char(c)) {
        Some(c) => Err(ConfigError::new(
            field,
            quoted(name),
            format!(
                "{what} is an HTTP token of ASCII letters, digits and {TOKEN_PUNCTUATION}, \
                 not {c:?}"
            ),
        )),
        None => Ok(()),
    }
}

/// The punctuation an HTTP token may hold besides ASCII letters and digits (RFC 9110 `tchar`).
const TOKEN_PUNCTUATION: &str = "!#$%&'*+-.^_`|~";

/// Whether `c` may be in an HTTP token (RFC 9110 `tchar`).
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || TOKEN_PUNCTUATION.contains(c)
}

/// Why a request was forced: by the forcing value the host read from the request (the
/// configured header or cookie) or by an id list of the config.
///
/// # Example
/// ```
/// assert_eq!(promotion_gates::ForcedBy::IdList.name(), "id_list");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ForcedBy {
    /// The request's forcing value (from [`Overrides::header`] or [`Overrides::cookie`]).
    Value,
    /// [`Overrides::canary_ids`] or [`Overrides::stable_ids`].
    IdList,
}

impl ForcedBy {
    /// `value` or `id_list`.
    ///
    /// # Example
    /// ```
    /// assert_eq!(promotion_gates::ForcedBy::Value.name(), "value");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            ForcedBy::Value => "value",
            ForcedBy::IdList => "id_list",
        }
    }
}

/// A forced routing: the version the request was forced to, and by what.
///
/// # Example
/// ```
/// use promotion_gates::{Cohort, Forced, ForcedBy};
/// let forced = Forced { to: Cohort::Canary, by: ForcedBy::IdList };
/// assert_eq!(forced.to_string(), "forced to canary by overrides.canary_ids");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Forced {
    /// The version forced to.
    pub to: Cohort,
    /// What forced it.
    pub by: ForcedBy,
}

impl fmt::Display for Forced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let to = self.to.name();
        match self.by {
            ForcedBy::Value => write!(f, "forced to {to} by the request's override value"),
            ForcedBy::IdList => write!(f, "forced to {to} by overrides.{to}_ids"),
        }
    }
}

/// Reads a forcing value: `canary` or `stable`, ASCII case ignored; `None` for anything else.
///
/// # Example
/// ```
/// use promotion_gates::{Cohort, forcing_value};
/// assert_eq!(forcing_value(b"Canary"), Some(Cohort::Canary));
/// assert_eq!(forcing_value(b"stable"), Some(Cohort::Stable));
/// assert_eq!(forcing_value(b"yes"), None);
/// ```
pub fn forcing_value(value: &[u8]) -> Option<Cohort> {
    if value.eq_ignore_ascii_case(b"canary") {
        Some(Cohort::Canary)
    } else if value.eq_ignore_ascii_case(b"stable") {
        Some(Cohort::Stable)
    } else {
        None
    }
}

/// The compiled overrides of one snapshot: the listed ids in an open-addressing table keyed
/// by their bucket under the snapshot's salt, and whether a forcing value is honoured.
///
/// Routing has the request's bucket already (its SHA-256 is the route's one hash), and buckets
/// are uniform, so the bucket's low bits are the slot: a lookup reads one slot (a few more
/// after a collision; the table is at most half full), and compares the id's bytes only when
/// a listed id has the same bucket (for an id on no list, about once in 10 000 000 / ids
/// routes). No allocation on lookup.
#[derive(Debug, Clone, Default)]
pub(crate) struct OverrideTable {
    /// Per slot, the bucket of the id in it, or [`EMPTY`]; a power of two long (or empty).
    slots: Vec<u32>,
    /// Per slot, the id and its version (`None` in an empty slot).
    listed: Vec<Option<(Box<[u8]>, Cohort)>>,
    /// Whether the config names a header or a cookie.
    by_value: bool,
}

/// An empty slot: no bucket is this large.
const EMPTY: u32 = u32::MAX;

impl OverrideTable {
    /// Compiles a validated section (`None`: no overrides), bucketing its ids with the
    /// snapshot's `hasher`.
    pub(crate) fn build(overrides: Option<&Overrides>, hasher: &SaltedHasher) -> Self {
        let Some(overrides) = overrides else {
            return Self::default();
        };
        let count = overrides.canary_ids.len() + overrides.stable_ids.len();
        let len = if count == 0 {
            0
        } else {
            (2 * count).next_power_of_two()
        };
        let mut table = Self {
            slots: vec![EMPTY; len],
            listed: vec![None; len],
            by_value: overrides.header.is_some() || overrides.cookie.is_some(),
        };
        for (ids, to) in [
            (&overrides.canary_ids, Cohort::Canary),
            (&overrides.stable_ids, Cohort::Stable),
        ] {
            for id in ids {
                let bytes = id.as_bytes();
                let bucket = hasher.bucket(bytes).get();
                let mut slot = table.first_slot(bucket);
                while table.slots[slot] != EMPTY {
                    slot = (slot + 1) & (len - 1);
                }
                table.slots[slot] = bucket;
                table.listed[slot] = Some((Box::from(bytes), to));
            }
        }
        table
    }

    /// The slot a bucket's probe starts at (the table is not empty).
    #[inline]
    fn first_slot(&self, bucket: u32) -> usize {
        bucket as usize & (self.slots.len() - 1)
    }

    /// Whether any id is listed: when not, and no forcing value is passed, routing needs no
    /// look at the table (the route table keeps this bit).
    pub(crate) fn lists_ids(&self) -> bool {
        !self.slots.is_empty()
    }

    /// The version `request_id` (of `bucket`) is listed for, if it is.
    #[inline]
    fn listed(&self, request_id: &[u8], bucket: u32) -> Option<Cohort> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut slot = self.first_slot(bucket);
        // At most half the slots are full, so the probe meets an empty one.
        loop {
            match self.slots.get(slot) {
                Some(&b) if b == bucket => {
                    if let Some(Some((id, to))) = self.listed.get(slot)
                        && **id == *request_id
                    {
                        return Some(*to);
                    }
                }
                Some(&EMPTY) | None => return None,
                Some(_) => {}
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Decides whether `request_id` (whose bucket is `bucket`) with forcing value `value` is
    /// forced. The second result is true for a value that was passed but not honoured (not
    /// `canary`/`stable`, or no header or cookie configured), which the caller counts.
    pub(crate) fn force(
        &self,
        request_id: &[u8],
        bucket: Bucket,
        value: Option<&[u8]>,
    ) -> (Option<Forced>, bool) {
        if let Some(to) = self.listed(request_id, bucket.get()) {
            return (
                Some(Forced {
                    to,
                    by: ForcedBy::IdList,
                }),
                false,
            );
        }
        let Some(value) = value else {
            return (None, false);
        };
        match forcing_value(value) {
            Some(to) if self.by_value => (
                Some(Forced {
                    to,
                    by: ForcedBy::Value,
                }),
                false,
            ),
            _ => (None, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> Overrides {
        Overrides {
            header: Some("X-Canary".into()),
            cookie: None,
            canary_ids: vec!["t-2".into(), "t-1".into()],
            stable_ids: vec!["vip".into()],
        }
    }

    #[test]
    fn id_lists_win_over_values_and_values_force_only_when_named() {
        let hasher = SaltedHasher::new(b"checkout");
        let table = OverrideTable::build(Some(&section()), &hasher);
        let force = |table: &OverrideTable, id: &[u8], value: Option<&[u8]>| {
            table.force(id, hasher.bucket(id), value)
        };
        let forced = |to, by| Some(Forced { to, by });
        assert_eq!(
            force(&table, b"t-1", Some(b"stable")),
            (forced(Cohort::Canary, ForcedBy::IdList), false)
        );
        assert_eq!(
            force(&table, b"vip", None),
            (forced(Cohort::Stable, ForcedBy::IdList), false)
        );
        assert_eq!(
            force(&table, b"u", Some(b"STABLE")),
            (forced(Cohort::Stable, ForcedBy::Value), false)
        );
        assert_eq!(force(&table, b"u", Some(b"beta")), (None, true));
        assert_eq!(force(&table, b"u", None), (None, false));
        let ids_only = OverrideTable::build(
            Some(&Overrides {
                header: None,
                ..section()
            }),
            &hasher,
        );
        assert_eq!(force(&ids_only, b"u", Some(b"canary")), (None, true));
        assert!(ids_only.lists_ids());
        let values_only = Overrides {
            canary_ids: vec![],
            stable_ids: vec![],
            ..section()
        };
        assert!(!OverrideTable::build(Some(&values_only), &hasher).lists_ids());
        assert!(!OverrideTable::build(None, &hasher).lists_ids());
    }

    #[test]
    fn ids_sharing_a_bucket_are_told_apart_by_their_bytes() {
        let hasher = SaltedHasher::new(b"checkout");
        let shared = hasher.bucket(b"t-1");
        // Three ids put in the slots one bucket would probe, as colliding ids are: the
        // second and third under the first's bucket, the fourth under the next bucket.
        let mut table = OverrideTable::build(
            Some(&Overrides {
                canary_ids: vec!["a".into(), "b".into(), "c".into()],
                ..Default::default()
            }),
            &hasher,
        );
        let mask = table.slots.len() - 1;
        table.slots.fill(EMPTY);
        table.listed.fill(None);
        let start = table.first_slot(shared.get());
        for (i, (bucket, id, to)) in [
            (shared.get(), &b"t-1"[..], Cohort::Canary),
            (shared.get(), b"vip", Cohort::Stable),
            (shared.get() + 1, b"next", Cohort::Canary),
        ]
        .into_iter()
        .enumerate()
        {
            table.slots[(start + i) & mask] = bucket;
            table.listed[(start + i) & mask] = Some((Box::from(id), to));
        }
        let by_list = |to| {
            Some(Forced {
                to,
                by: ForcedBy::IdList,
            })
        };
        assert_eq!(
            table.force(b"t-1", shared, None),
            (by_list(Cohort::Canary), false)
        );
        assert_eq!(
            table.force(b"vip", shared, None),
            (by_list(Cohort::Stable), false)
        );
        // Same bucket, other bytes; a listed id's bytes under another bucket.
        assert_eq!(table.force(b"t-2", shared, None), (None, false));
        assert_eq!(table.force(b"next", shared, None), (None, false));
    }

    #[test]
    fn every_listed_id_is_found_and_no_other() {
        let hasher = SaltedHasher::new(b"checkout");
        let ids: Vec<String> = (0..MAX_OVERRIDE_IDS).map(|i| format!("u-{i}")).collect();
        let (canary, stable) = ids.split_at(MAX_OVERRIDE_IDS / 2);
        let table = OverrideTable::build(
            Some(&Overrides {
                canary_ids: canary.to_vec(),
                stable_ids: stable.to_vec(),
                ..Default::default()
            }),
            &hasher,
        );
        for (list, to) in [(canary, Cohort::Canary), (stable, Cohort::Stable)] {
            for id in list {
                assert_eq!(
                    table.listed(id.as_bytes(), hasher.bucket(id.as_bytes()).get()),
                    Some(to),
                    "{id}"
                );
            }
        }
        for i in 0..20_000 {
            let id = format!("other-{i}");
            assert_eq!(
                table.listed(id.as_bytes(), hasher.bucket(id.as_bytes()).get()),
                None
            );
        }
    }

    #[test]
    fn validation_names_the_field_and_the_value() {
        let cases: [(Overrides, &str, &str); 5] = [
            (
                Overrides {
                    header: Some("X Canary".into()),
                    ..section()
                },
                "overrides.header",
                "\"X Canary\"",
            ),
            (
                Overrides {
                    cookie: Some(String::new()),
                    ..section()
                },
                "overrides.cookie",
                "\"\"",
            ),
            (
                Overrides {
                    canary_ids: vec!["a".into(), String::new()],
                    ..section()
                },
                "overrides.canary_ids[1]",
                "\"\"",
            ),
            (
                Overrides {
                    stable_ids: vec!["x".repeat(MAX_NAME_BYTES + 1)],
                    ..section()
                },
                "overrides.stable_ids[0]",
                &quoted(&"x".repeat(MAX_NAME_BYTES + 1)),
            ),
            (
                Overrides {
                    canary_ids: vec!["a".into(), "a".into()],
                    ..section()
                },
                "overrides.canary_ids[1]",
                "\"a\"",
            ),
        ];
        for (overrides, field, value) in cases {
            let err = overrides.validate().unwrap_err();
            assert_eq!((err.field(), err.value()), (field, value), "{err}");
        }
        let ids = |from: usize, to: usize| (from..to).map(|i| format!("u-{i}")).collect();
        let many = Overrides {
            canary_ids: ids(0, MAX_OVERRIDE_IDS + 1),
            ..Default::default()
        };
        let err = many.validate().unwrap_err();
        assert_eq!(err.field(), "overrides.canary_ids");
        assert!(
            err.value()
                .starts_with(&format!("{} ids in canary_ids", MAX_OVERRIDE_IDS + 1)),
            "{err}"
        );
        // The list in which the count passes the limit is named, stable_ids when it holds them.
        for (canary, stable) in [(0, MAX_OVERRIDE_IDS + 1), (MAX_OVERRIDE_IDS, 1)] {
            let many = Overrides {
                canary_ids: ids(0, canary),
                stable_ids: ids(canary, canary + stable),
                ..Default::default()
            };
            let err = many.validate().unwrap_err();
            assert_eq!(err.field(), "overrides.stable_ids", "{err}");
            assert_eq!(
                err.value(),
                format!("{canary} ids in canary_ids and {stable} in stable_ids")
            );
        }
        section().validate().unwrap();
    }

    #[test]
    fn header_and_cookie_names_are_http_tokens() {
        let header = |name: &str| Overrides {
            header: Some(name.into()),
            ..Default::default()
        };
        let cookie = |name: &str| Overrides {
            cookie: Some(name.into()),
            ..Default::default()
        };
        for (overrides, field, value, why) in [
            (
                header("X:Canary"),
                "overrides.header",
                "X:Canary",
                "not ':'",
            ),
            (
                header("X-Canäry"),
                "overrides.header",
                "X-Canäry",
                "not 'ä'",
            ),
            (
                header("X-Canary\"("),
                "overrides.header",
                "X-Canary\"(",
                "not '\"'",
            ),
            (
                header("X/Canary"),
                "overrides.header",
                "X/Canary",
                "not '/'",
            ),
            (
                header("Cookie"),
                "overrides.header",
                "Cookie",
                "Cookie header",
            ),
            (
                header("cookie"),
                "overrides.header",
                "cookie",
                "Cookie header",
            ),
            (
                header("Set-Cookie"),
                "overrides.header",
                "Set-Cookie",
                "response",
            ),
            (header("Host"), "overrides.header", "Host", "authority"),
            (header("hOST"), "overrides.header", "hOST", "HTTP/2"),
            (cookie("a=b"), "overrides.cookie", "a=b", "not '='"),
            (cookie("a;b"), "overrides.cookie", "a;b", "not ';'"),
            (cookie("a,b"), "overrides.cookie", "a,b", "not ','"),
            (cookie("(a)"), "overrides.cookie", "(a)", "not '('"),
        ] {
            let err = overrides.validate().unwrap_err();
            assert_eq!((err.field(), err.value()), (field, quoted(value).as_str()));
            assert!(err.expected().contains(why), "{err}");
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid {field} = {}: ", quoted(value))),
                "{err}"
            );
        }
        let err = header("X:Canary").validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid overrides.header = \"X:Canary\": a header name (RFC 9110) is an HTTP token \
             of ASCII letters, digits and !#$%&'*+-.^_`|~, not ':'"
        );
        // Every token character is taken, in either name.
        let every = format!("Aa0{TOKEN_PUNCTUATION}");
        header(&every).validate().unwrap();
        cookie(&every).validate().unwrap();
        // A cookie may be named Cookie; a header may be named like a cookie header's prefix.
        cookie("Cookie").validate().unwrap();
        header("Cookie-Version").validate().unwrap();
        header("X-Forwarded-Host").validate().unwrap();
    }

    #[test]
    fn hop_by_hop_framing_and_expect_headers_are_refused_naming_why() {
        let header = |name: &str| Overrides {
            header: Some(name.into()),
            ..Default::default()
        };
        for (name, why) in [
            ("Connection", "hop-by-hop"),
            ("keep-alive", "hop-by-hop"),
            ("Proxy-Connection", "hop-by-hop"),
            ("te", "hop-by-hop"),
            ("UPGRADE", "hop-by-hop"),
            ("Transfer-Encoding", "message body"),
            ("trailer", "message body"),
            ("Content-Length", "message body"),
            ("Expect", "417 Expectation Failed"),
            ("expect", "417 Expectation Failed"),
        ] {
            let err = header(name).validate().unwrap_err();
            assert_eq!(err.field(), "overrides.header");
            assert_eq!(err.value(), quoted(name));
            assert!(err.expected().contains(why), "{err}");
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid overrides.header = \"{name}\": ")),
                "{err}"
            );
        }
        // Names that only start or end like one are taken.
        for name in [
            "X-Connection",
            "Upgrade-Insecure-Requests",
            "TE-X",
            "Content-Length2",
            "X-Expect",
        ] {
            header(name).validate().unwrap();
        }
    }

    #[test]
    fn listed_ids_hold_no_control_format_or_invisible_character_nor_whitespace_at_an_end() {
        for (id, why) in [
            ("tester\u{200B}", "control, format or invisible"),
            ("\u{202E}tester", "control, format or invisible"),
            ("tes\u{0}ter", "control, format or invisible"),
            ("tester\n", "control, format or invisible"),
            ("tester\u{7f}", "control, format or invisible"),
            (" tester", "whitespace"),
            ("tester ", "whitespace"),
            ("tester\u{3000}", "whitespace"),
        ] {
            for list in ["canary_ids", "stable_ids"] {
                let listed = vec!["ok".to_string(), id.to_string()];
                let overrides = if list == "canary_ids" {
                    Overrides {
                        canary_ids: listed,
                        ..Default::default()
                    }
                } else {
                    Overrides {
                        stable_ids: listed,
                        ..Default::default()
                    }
                };
                let err = overrides.validate().unwrap_err();
                assert_eq!(
                    (err.field(), err.value()),
                    (format!("overrides.{list}[1]").as_str(), quoted(id).as_str())
                );
                assert!(err.expected().contains(why), "{err}");
            }
        }
        // Whitespace inside an id, and letters beyond ASCII, are ids like any other.
        Overrides {
            canary_ids: vec!["user 1".into(), "usér-ſ".into()],
            ..Default::default()
        }
        .validate()
        .unwrap();
    }
}
