//! Operation sequences on one gate through the C ABI: routes, records (of routed, forged and
//! re-routed decisions), promotions, ramps, rollbacks, flag changes, config reloads and
//! judgements, in any order and with any arguments.
//!
//! After each step:
//! - a refused call (any status but OK, with its error object) changed nothing a host can
//!   read: `pgate_state`, the config and SLO documents, the rollback history, every flag the
//!   sequence names and the window's requests of each cohort (`pgate_read_health`, while the
//!   gate is younger than a quarter of a second: nothing has left the window) read back as
//!   before. The one documented exception: a gated promotion
//!   refused as `SLO_NOT_MET` because a rule fired may have rolled the canary back (with
//!   `auto_rollback_enabled`), which leaves the gate in Production, in a new stage, with an
//!   automatic rollback as its newest event;
//! - the stage never goes back; a decision is the gate's as it stands (`pgate_state`'s
//!   stage, environment and share; the bucket `reference_bucket` gives for the current salt,
//!   or the gate's name without one; the current share's threshold), so a route through a
//!   stale table is caught; an unforced one is the formula's (`is_canary` is `bucket <
//!   threshold`); it names only flags that are on for the gate; and a record of a decision
//!   from a stage the gate has not reached is refused as foreign;
//! - forced routes (`pgate_route_forced`) follow the config's `overrides` (an id list wins
//!   over a forcing value, which forces only when a header or cookie is named; any other
//!   value is counted as ignored), and a forced outcome (`pgate_record` of a forced decision,
//!   `pgate_record_by_id_forced`, `pgate_record_abandoned_as`) is recorded as forced;
//! - every record (of a routed, forged or re-routed decision, by id, forced or abandoned)
//!   that returns anything but `COUNTED` (late, foreign, forced, or a wait not recorded)
//!   leaves the judge's cohorts (`pgate_read_health`) as they were, and one that returns
//!   `COUNTED` adds one request to them, to the decision's cohort for a routed decision
//!   (plain, abandoned or `Traffic`'s), while the gate is younger than a quarter of a second
//!   and the stage unchanged. Of a `Traffic` step's records, the first 8 and then one in 31
//!   are checked so (`TRAFFIC_CHECKED_FIRST`, `TRAFFIC_CHECKED_EVERY`): a check reads the
//!   window twice, and checking all of them made a run about 7 times slower;
//! - an abandoned request is recorded exactly when its wait is longer than the latency
//!   target; `pgate_promote_from` and `pgate_swap_config_from` refuse a stale stage or count
//!   with `STAGE_CHANGED` or `GATE_CHANGED`; `pgate_swap_slo` keeps the state and the window;
//! - `pgate_change_count` never falls, and `pgate_changes_json` lists the changes it moved
//!   past; the Prometheus exposition parses, its counters never fall, and its outcome
//!   counters equal what the calls returned;
//! - every log line (a callback at DEBUG) is one line of UTF-8, and each route sends one whose
//!   `request_id` reads back as the id routed.
//!
//! The C ABI reads the system clock: no operation makes time pass.
//!
//! The seeds `promoted_to_staging` and `promoted_to_production` earn gated promotions (to
//! Staging, and on to Production), so the states after them are fuzzed from the first run.
//! A new kind of operation renumbers the kinds (arbitrary maps a variant tag by
//! multiplication): the named seeds are then written again for the new numbering, by
//! `fuzz/operation_sequences_seeds.py` (which says how an input is encoded).
//! `.ci/fuzz` runs each alone with `PGATE_FUZZ_EXPECT_PROMOTED_TO` set to `staging` or
//! `production`: the run fails unless a promotion of the sequence reached that environment.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use promotion_gates::{BUCKETS, reference_bucket, threshold_for_percent};
use promotion_gates_ffi::{
    pgate_decision, pgate_environment, pgate_forced, pgate_health, pgate_log_level,
    pgate_outcome_counts, pgate_recorded, pgate_set_log_callback, pgate_status,
};
use promotion_gates_fuzz::{Gate, Observed, Refusal};
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::{CStr, c_char, c_void};
use std::ptr::null_mut;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Flag names a sequence picks from (so enabling, disabling and reading meet), beside raw bytes.
const FLAGS: [&[u8]; 4] = [b"new_api", b"dark_mode", b"beta", b"x"];

/// The gate's SLO: few samples, no stage-long evidence and no warm-up, so that a sequence can
/// earn a gated promotion (5 is the least `min_samples` validation takes; a sequence runs for
/// microseconds, so with the default 30 s warm-up no latency would ever count and every gated
/// promotion would be refused for too few samples).
const SLO: &[u8] = br#"{"min_samples": 5, "latency_target_ms": 100, "promotion_evidence": false, "warm_up_ms": 0}"#;

#[derive(Debug, Arbitrary)]
enum Name {
    Pool(u8),
    Raw(Vec<u8>),
}

impl Name {
    fn bytes(&self) -> &[u8] {
        match self {
            Name::Pool(i) => FLAGS[usize::from(*i) % FLAGS.len()],
            Name::Raw(bytes) => bytes,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Percent {
    Whole(u8),
    Any(f64),
}

impl Percent {
    fn value(&self) -> f64 {
        match *self {
            Percent::Whole(p) => f64::from(p),
            Percent::Any(p) => p,
        }
    }
}

/// A change to the current config document, for `pgate_swap_config`.
#[derive(Debug, Arbitrary)]
enum Edit {
    Canary(Percent),
    Staging,
    Production,
    Flags(Vec<Name>),
    Graduated(Vec<Name>),
    Salt(String),
    History(u32),
    SloThreshold(f64),
    AutoRollback(bool),
    Window(u64),
    /// A document of any bytes.
    Raw(Vec<u8>),
    /// An `overrides` section: a header and a cookie named or not, and the users listed.
    Overrides {
        header: bool,
        cookie: bool,
        canary: Vec<u8>,
        stable: Vec<u8>,
    },
}

/// A change to the current SLO document, for `pgate_swap_slo`.
#[derive(Debug, Arbitrary)]
enum SloEdit {
    MinSamples(u8),
    LatencyTargetMs(u16),
    MaxErrorRate(f64),
    EvaluationIntervalMs(u16),
    /// A document of any bytes.
    Raw(Vec<u8>),
}

/// The forcing value a host read from a request's header or cookie.
#[derive(Debug, Arbitrary)]
enum Forcing {
    /// The request carried none (NULL).
    Absent,
    /// `canary`, each letter upper case where its bit is set.
    Canary(u8),
    /// `stable`, likewise.
    Stable(u8),
    Raw(Vec<u8>),
}

impl Forcing {
    fn value(&self) -> Option<Vec<u8>> {
        let cased = |word: &[u8], mask: u8| {
            word.iter()
                .enumerate()
                .map(|(i, b)| match mask >> i & 1 {
                    1 => b.to_ascii_uppercase(),
                    _ => *b,
                })
                .collect()
        };
        match self {
            Forcing::Absent => None,
            Forcing::Canary(mask) => Some(cased(b"canary", *mask)),
            Forcing::Stable(mask) => Some(cased(b"stable", *mask)),
            Forcing::Raw(bytes) => Some(bytes.clone()),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Op {
    Route {
        user: u8,
    },
    /// Records the outcome of the `which`-th decision routed so far.
    Record {
        which: u8,
        success: bool,
        latency_ms: u16,
    },
    /// Records a decision built by the caller.
    RecordForged {
        stage: u64,
        canary: bool,
        success: bool,
    },
    RecordById {
        user: u8,
        success: bool,
        latency_ms: u16,
    },
    /// `count` users' outcomes: enough traffic for the judge to decide.
    Traffic {
        count: u8,
        success: bool,
        latency_ms: u16,
    },
    Promote {
        environment: u8,
        percent: Percent,
    },
    Rollback {
        reason: Name,
    },
    Enable {
        name: Name,
    },
    Disable {
        name: Name,
    },
    IsEnabled {
        name: Name,
    },
    SwapConfig {
        edit: Edit,
    },
    MonitorHealth,
    CheckSlo,
    // A new kind changes every kind's tag (arbitrary scales the tag by the count of kinds):
    // add it to OPS in fuzz/operation_sequences_seeds.py too, and write the seeds again.
    /// `pgate_route_forced`, checked against the config's `overrides`; the decision is kept
    /// for `Record` and `RecordAbandoned`.
    RouteForced {
        user: u8,
        value: Forcing,
    },
    /// `pgate_record_by_id_forced`.
    RecordByIdForced {
        user: u8,
        value: Forcing,
        success: bool,
        latency_ms: u16,
    },
    /// `pgate_record_abandoned_as` of the `which`-th decision kept.
    RecordAbandoned {
        which: u8,
        waited_ms: u16,
    },
    /// `pgate_route` of any request id.
    RouteRaw {
        id: Vec<u8>,
    },
    /// `pgate_record_by_id` of any request id and any latency in nanoseconds.
    RecordRaw {
        id: Vec<u8>,
        success: bool,
        latency_ns: u64,
    },
    /// `pgate_promote_from` of the stage `stale` before the current one (0: the current).
    PromoteFrom {
        stale: u8,
        environment: u8,
        percent: Percent,
    },
    /// `pgate_swap_config_from` of the change count `stale` before the current one.
    SwapConfigFrom {
        stale: u8,
        edit: Edit,
    },
    SwapSlo {
        edit: SloEdit,
    },
    ReadHealth,
    /// `pgate_metrics_prometheus`, and `_counted` with these counts.
    Metrics {
        counts: [u64; 4],
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// The starting canary percentage (a new rollout at this share).
    start: u8,
    ops: Vec<Op>,
}

fn user(i: u8) -> Vec<u8> {
    format!("user-{i}").into_bytes()
}

fn names(list: &[Name]) -> Value {
    Value::from(
        list.iter()
            .map(|n| Value::from(String::from_utf8_lossy(n.bytes()).into_owned()))
            .collect::<Vec<_>>(),
    )
}

/// `json` parsed: a document the library wrote must be JSON.
fn parsed(json: &str, what: &str) -> Value {
    match serde_json::from_str(json) {
        Ok(value) => value,
        Err(err) => panic!("{what} is not JSON: {err}: {json}"),
    }
}

/// The current config document with `edit` applied.
fn edited(gate: &Gate, edit: &Edit) -> Vec<u8> {
    let mut config = parsed(&gate.config_json(), "pgate_config_json");
    let (field, value) = match edit {
        Edit::Canary(p) => (
            "environment",
            serde_json::json!({"canary": {"traffic_percent": p.value()}}),
        ),
        Edit::Staging => ("environment", Value::from("staging")),
        Edit::Production => ("environment", Value::from("production")),
        Edit::Flags(list) => ("feature_flags", names(list)),
        Edit::Graduated(list) => ("graduated_flags", names(list)),
        Edit::Salt(salt) => ("salt", Value::from(salt.as_str())),
        Edit::History(n) => ("max_rollback_history", Value::from(*n % 8)),
        Edit::SloThreshold(t) => ("slo_threshold", Value::from(*t)),
        Edit::AutoRollback(on) => ("auto_rollback_enabled", Value::from(*on)),
        Edit::Window(s) => ("rollback_window_seconds", Value::from(*s)),
        Edit::Raw(bytes) => return bytes.clone(),
        Edit::Overrides {
            header,
            cookie,
            canary,
            stable,
        } => {
            let ids = |users: &[u8]| {
                let ids: Vec<Value> = users
                    .iter()
                    .map(|u| Value::from(format!("user-{u}")))
                    .collect();
                Value::from(ids)
            };
            let mut section =
                serde_json::json!({"canary_ids": ids(canary), "stable_ids": ids(stable)});
            if *header {
                section["header"] = Value::from("X-Canary");
            }
            if *cookie {
                section["cookie"] = Value::from("canary");
            }
            ("overrides", section)
        }
    };
    config[field] = value;
    config.to_string().into_bytes()
}

/// The current SLO document with `edit` applied.
fn slo_edited(gate: &Gate, edit: &SloEdit) -> Vec<u8> {
    let mut slo = parsed(&gate.slo_json(), "pgate_slo_json");
    let (field, value) = match edit {
        SloEdit::MinSamples(n) => ("min_samples", Value::from(*n)),
        SloEdit::LatencyTargetMs(ms) => ("latency_target_ms", Value::from(*ms)),
        SloEdit::MaxErrorRate(rate) => ("max_error_rate", Value::from(*rate)),
        SloEdit::EvaluationIntervalMs(ms) => ("evaluation_interval_ms", Value::from(*ms)),
        SloEdit::Raw(bytes) => return bytes.clone(),
    };
    slo[field] = value;
    slo.to_string().into_bytes()
}

/// Every flag name the sequence mentions, for the before/after comparison.
fn mentioned(input: &Input) -> Vec<&[u8]> {
    let mut all: Vec<&[u8]> = FLAGS.to_vec();
    for op in &input.ops {
        match op {
            Op::Enable { name } | Op::Disable { name } | Op::IsEnabled { name } => {
                all.push(name.bytes())
            }
            Op::SwapConfig {
                edit: Edit::Flags(list) | Edit::Graduated(list),
            }
            | Op::SwapConfigFrom {
                edit: Edit::Flags(list) | Edit::Graduated(list),
                ..
            } => all.extend(list.iter().map(Name::bytes)),
            _ => {}
        }
    }
    all.sort_unstable();
    all.dedup();
    all.truncate(64);
    all
}

/// A decision of request `id` is the gate's as it stands: its stage, environment and share are
/// `pgate_state`'s, its bucket is the formula's for the salt of the current config (`salt`,
/// else the gate's name: `PromotionConfig::effective_salt`) and its threshold the current
/// share's (all buckets in Staging, none in Production), so that a route through a stale
/// table (a thread's cached copy kept after a write) is caught. Each flag it names is on for
/// the gate (in Canary and Staging the canary cohort sees the release's flags, every request
/// the graduated ones). An unforced decision is the formula's (`is_canary` is `bucket <
/// threshold`).
fn check_decision(gate: &Gate, id: &[u8], decision: &pgate_decision) {
    let config = parsed(&gate.config_json(), "pgate_config_json");
    let Some(salt) = config["salt"].as_str().or(config["gate"].as_str()) else {
        panic!("a config with neither salt nor gate: {config}")
    };
    let (environment, percent, stage) = gate.state();
    let threshold = match environment {
        pgate_environment::Canary => threshold_for_percent(percent),
        pgate_environment::Staging => BUCKETS,
        pgate_environment::Production => 0,
    };
    assert_eq!(
        (
            decision.stage,
            decision.environment,
            decision.traffic_percent,
            decision.bucket,
            decision.threshold,
        ),
        (
            stage,
            environment,
            percent,
            reference_bucket(salt.as_bytes(), id),
            threshold,
        ),
        "{decision:?} of {id:?}: not the gate's at stage {stage}, {environment:?} {percent} %, \
         salt {salt:?}"
    );
    if decision.forced == pgate_forced::None {
        assert_eq!(
            decision.is_canary,
            decision.bucket < decision.threshold,
            "{decision:?}"
        );
    }
    for name in gate.flag_set(decision.flag_set) {
        assert_eq!(
            gate.is_feature_enabled(&name),
            Ok(true),
            "{name:?} in {decision:?}"
        );
    }
}

/// How the config's `overrides` section forces request `id` with forcing value `value`
/// (`src/overrides.rs`): an id list wins over a value; `canary` or `stable` (ASCII case
/// ignored) force only when the section names a header or a cookie. `Some((by, to_canary))`.
fn expected_forcing(
    config: &Value,
    id: &[u8],
    value: Option<&[u8]>,
) -> Option<(pgate_forced, bool)> {
    let overrides = &config["overrides"];
    let listed = |list: &str| {
        overrides[list].as_array().is_some_and(|ids| {
            ids.iter()
                .any(|x| x.as_str().map(str::as_bytes) == Some(id))
        })
    };
    if listed("canary_ids") {
        return Some((pgate_forced::IdList, true));
    }
    if listed("stable_ids") {
        return Some((pgate_forced::IdList, false));
    }
    let by_value = overrides["header"].is_string() || overrides["cookie"].is_string();
    match value? {
        v if by_value && v.eq_ignore_ascii_case(b"canary") => Some((pgate_forced::Value, true)),
        v if by_value && v.eq_ignore_ascii_case(b"stable") => Some((pgate_forced::Value, false)),
        _ => None,
    }
}

/// One log line the library sent to the callback.
struct Line {
    level: pgate_log_level,
    target: Vec<u8>,
    message: Vec<u8>,
    message_len: usize,
}

/// The lines sent since the last step's were read.
static LINES: Mutex<Vec<Line>> = Mutex::new(Vec::new());

/// The log callback: copies the line (as a callback must: both strings live only during the
/// call).
unsafe extern "C" fn collect(
    _user_data: *mut c_void,
    level: pgate_log_level,
    target: *const c_char,
    message: *const c_char,
    message_len: usize,
) {
    // SAFETY: the library passes two NUL-terminated strings that live during the call.
    let (target, message) = unsafe {
        (
            CStr::from_ptr(target).to_bytes().to_vec(),
            CStr::from_ptr(message).to_bytes().to_vec(),
        )
    };
    let mut lines = LINES.lock().unwrap_or_else(PoisonError::into_inner);
    lines.push(Line {
        level,
        target,
        message,
        message_len,
    });
}

/// Sends the library's lines up to DEBUG (one per route) to [`collect`], once a process.
fn listen() {
    static SET: OnceLock<()> = OnceLock::new();
    SET.get_or_init(|| {
        let mut err = null_mut();
        // SAFETY: `collect` may be called from any thread, with any user data; `err` writable.
        let status = unsafe {
            pgate_set_log_callback(
                Some(collect),
                null_mut(),
                pgate_log_level::Debug as u32,
                &mut err,
            )
        };
        assert_eq!(status, pgate_status::Ok);
    });
}

/// Reads back a request id as the route line shows it (`"..."`, escaped as `{:?}` escapes a
/// text, bytes that are no UTF-8 as `\xNN`, then `...(N bytes)` when cut): the bytes shown,
/// and the whole id's length when cut.
fn shown_id(line: &str) -> (Vec<u8>, Option<usize>) {
    let Some(start) = line.find(" request_id=\"") else {
        panic!("a route line without a request id: {line}")
    };
    let mut chars = line[start + " request_id=\"".len()..].chars();
    let mut id = Vec::new();
    let hex = |digits: &str| match u32::from_str_radix(digits, 16) {
        Ok(n) => n,
        Err(err) => panic!("bad escape {digits:?} in {line}: {err}"),
    };
    loop {
        match chars.next() {
            None => panic!("an unterminated request id: {line}"),
            Some('"') => break,
            Some('\\') => match chars.next() {
                Some('n') => id.push(b'\n'),
                Some('r') => id.push(b'\r'),
                Some('t') => id.push(b'\t'),
                Some('0') => id.push(0),
                Some(c @ ('\\' | '"' | '\'')) => id.push(c as u8),
                Some('x') => {
                    let digits: String = chars.by_ref().take(2).collect();
                    id.push(hex(&digits) as u8);
                }
                Some('u') => {
                    let braced: String = chars.by_ref().take_while(|c| *c != '}').collect();
                    let code = hex(braced.trim_start_matches('{'));
                    let Some(c) = char::from_u32(code) else {
                        panic!("\\u{{{code:x}}} is no character: {line}")
                    };
                    id.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
                other => panic!("unknown escape {other:?} in {line}"),
            },
            Some(c) => id.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    let rest = chars.as_str();
    let cut = rest.strip_prefix("...(").map(|cut| {
        let Some((len, _)) = cut.split_once(" bytes)") else {
            panic!("a cut id without its length: {line}")
        };
        match len.parse() {
            Ok(len) => len,
            Err(err) => panic!("a cut id's length {len:?}: {err}"),
        }
    });
    (id, cut)
}

/// The lines logged during a step: each message is one line of UTF-8 (no control character
/// unescaped, `message_len` its length), and the route lines are one per route the step
/// made, in order, each showing its request id as it was (or its start, when cut).
fn check_log(routed: &mut Vec<Vec<u8>>) {
    let lines = std::mem::take(&mut *LINES.lock().unwrap_or_else(PoisonError::into_inner));
    let mut shown = Vec::new();
    for line in &lines {
        assert_eq!(
            line.message.len(),
            line.message_len,
            "message_len is not strlen"
        );
        let Ok(text) = std::str::from_utf8(&line.message) else {
            panic!("a log line that is not UTF-8: {:?}", line.message)
        };
        assert!(
            !text.chars().any(char::is_control),
            "a control character unescaped: {text:?}"
        );
        assert!(
            std::str::from_utf8(&line.target).is_ok(),
            "a target that is not UTF-8"
        );
        if text.starts_with("promotion.route_request ") {
            assert_eq!(line.level, pgate_log_level::Debug, "{text}");
            shown.push((shown_id(text), text));
        }
    }
    assert_eq!(
        shown.len(),
        routed.len(),
        "{} route lines for the routes of {routed:?}",
        shown.len()
    );
    for (((id, cut), text), routed) in shown.iter().zip(routed.iter()) {
        match cut {
            None => assert_eq!(id, routed, "{text}"),
            Some(len) => {
                assert_eq!(*len, routed.len(), "{text}");
                assert!(routed.starts_with(id) && id.len() < routed.len(), "{text}");
            }
        }
    }
    routed.clear();
}

/// The length of the label set (`{name="value",...}`) that `text` starts with, checked pair by
/// pair: names of letters, digits and `_`, values quoted with only `\\`, `\"` and `\n` escaped.
fn label_set_len(text: &str, line: &str) -> usize {
    let mut chars = text.char_indices().skip(1);
    loop {
        let mut name = String::new();
        loop {
            match chars.next() {
                Some((_, '=')) if !name.is_empty() => break,
                Some((end, '}')) if name.is_empty() => return end + 1,
                Some((_, c)) if c.is_ascii_alphanumeric() || c == '_' => name.push(c),
                other => panic!("a label name with {other:?}: {line}"),
            }
        }
        assert!(!name.starts_with(|c: char| c.is_ascii_digit()), "{line}");
        let quote = chars.next().map(|(_, c)| c);
        assert_eq!(quote, Some('"'), "an unquoted label value: {line}");
        loop {
            match chars.next() {
                Some((_, '"')) => break,
                Some((_, '\\')) => {
                    let escaped = chars.next().map(|(_, c)| c);
                    assert!(
                        matches!(escaped, Some('\\' | '"' | 'n')),
                        "escape {escaped:?}: {line}"
                    );
                }
                Some((_, '\n')) | None => panic!("an unterminated label value: {line}"),
                Some(_) => {}
            }
        }
        match chars.next() {
            Some((_, ',')) => {}
            Some((end, '}')) => return end + 1,
            other => panic!("{other:?} after a label: {line}"),
        }
    }
}

/// One sample line of an exposition: its family, its series (`name{labels}`), its value as
/// written.
#[derive(Debug)]
struct Sample {
    family: String,
    series: String,
    value: String,
}

/// A Prometheus text exposition (format 0.0.4) parsed line by line: each family's kind, and
/// each sample's series (`name{labels}`) with its value as written. Panics on a line that is
/// none of `# HELP`, `# TYPE` or a sample, on a family typed twice, and on a sample before
/// its family's `# TYPE` or whose value is no number.
fn exposition(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut kinds = BTreeMap::new();
    let mut samples = Vec::new();
    let valid_name = |name: &str| {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "no final line feed"
    );
    for line in text.lines() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            let name = help.split(' ').next().unwrap_or_default();
            assert!(valid_name(name), "{line}");
        } else if let Some(typed) = line.strip_prefix("# TYPE ") {
            let Some((name, kind)) = typed.split_once(' ') else {
                panic!("{line}")
            };
            assert!(valid_name(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            let again = kinds.insert(name.to_owned(), kind.to_owned());
            assert!(again.is_none(), "{name} typed twice");
        } else {
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let name = &line[..name_end];
            assert!(valid_name(name), "{line}");
            let mut rest = &line[name_end..];
            if rest.starts_with('{') {
                rest = &rest[label_set_len(rest, line)..];
            }
            let series = &line[..line.len() - rest.len()];
            let Some(value) = rest.strip_prefix(' ') else {
                panic!("{line}")
            };
            let value = value.split(' ').next().unwrap_or_default();
            assert!(
                value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
                "{line}"
            );
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).filter(|f| kinds.contains_key(*f)))
                .unwrap_or(name);
            assert!(
                kinds.contains_key(family),
                "a sample before its # TYPE: {line}"
            );
            samples.push(Sample {
                family: family.to_owned(),
                series: series.to_owned(),
                value: value.to_owned(),
            });
        }
    }
    (kinds, samples)
}

/// Whether the one sample of family `name` (a gate's exposition: one series) shows `count`
/// (as Prometheus reads a value: an `f64`, so a count above 2^53 shows rounded).
fn shows(samples: &[Sample], name: &str, count: u64) -> bool {
    let mut found = samples.iter().filter(|sample| sample.family == name);
    match (found.next(), found.next()) {
        (Some(sample), None) => sample.value.parse::<f64>() == Ok(count as f64),
        other => panic!("{name}: {other:?}"),
    }
}

/// What the sequence has seen of the gate, for the checks that span steps.
struct Seen {
    /// Decisions kept, for `Record` and `RecordAbandoned`.
    decisions: Vec<pgate_decision>,
    /// Outcomes recorded as late, foreign and forced, and forcing values ignored: the gate's
    /// Prometheus counters must show as many.
    late: u64,
    foreign: u64,
    forced: u64,
    ignored: u64,
    /// The ids of the routes the step made (each sends one DEBUG line).
    routed: Vec<Vec<u8>>,
    /// Each counter series' value at the last exposition read: counters never fall.
    counters: BTreeMap<String, f64>,
    /// When the gate was made: while it is younger than a second (the shortest window) nothing
    /// has left its window, so a record the judge must not see leaves the counts as they were.
    born: Instant,
}

impl Seen {
    fn keep(&mut self, decision: pgate_decision) {
        if self.decisions.len() < 16 {
            self.decisions.push(decision);
        }
    }

    fn route(&mut self, gate: &Gate, id: &[u8]) -> pgate_decision {
        self.routed.push(id.to_vec());
        gate.route(id)
    }

    fn tally(&mut self, recorded: pgate_recorded) -> pgate_recorded {
        match recorded {
            pgate_recorded::Late => self.late += 1,
            pgate_recorded::Foreign => self.foreign += 1,
            pgate_recorded::Forced => self.forced += 1,
            pgate_recorded::Counted => {}
        }
        recorded
    }

    /// Whether nothing can have left the window yet: the gate is younger than a quarter of
    /// the shortest window (a second), so its cohorts change only by records.
    fn young(&self) -> bool {
        self.born.elapsed() < Duration::from_millis(250)
    }

    /// Runs `record`, which may record an outcome the judge must not count (forced, late,
    /// foreign, or an abandoned wait too short to say anything): when it did not count
    /// (`counted` of its result is false: anything but [`counted`]), the window's cohorts hold
    /// as many requests as before, and when it did, one more, in the cohort `canary` names when
    /// the caller knows it (`Some(true)`: the new version's); unless the stage changed
    /// meanwhile (a rollback) or the window may have moved.
    fn unjudged<T>(
        &self,
        gate: &Gate,
        record: impl FnOnce() -> T,
        counted: impl Fn(&T) -> bool,
        canary: Option<bool>,
    ) -> T {
        let before = gate.read_health();
        let result = record();
        let after = gate.read_health();
        if before.stage == after.stage && self.young() {
            let cohorts = |h: &pgate_health| (h.canary_requests, h.production_requests);
            if counted(&result) {
                let requests = |h: &pgate_health| h.canary_requests + h.production_requests;
                assert_eq!(
                    requests(&after),
                    requests(&before) + 1,
                    "an outcome counted, but the cohorts went from {:?} to {:?}",
                    cohorts(&before),
                    cohorts(&after)
                );
                if let Some(canary) = canary {
                    assert_eq!(
                        after.canary_requests,
                        before.canary_requests + u64::from(canary),
                        "an outcome of the {} version counted, but the cohorts went from {:?} to {:?}",
                        if canary { "new" } else { "stable" },
                        cohorts(&before),
                        cohorts(&after)
                    );
                }
            } else {
                assert_eq!(
                    cohorts(&before),
                    cohorts(&after),
                    "an outcome the judge must not count changed its cohorts"
                );
            }
        }
        result
    }
}

/// Whether a record counted its outcome for the judge: `COUNTED`, and nothing else (a late,
/// foreign or forced outcome is dropped from the window).
fn counted(recorded: &pgate_recorded) -> bool {
    *recorded == pgate_recorded::Counted
}

/// A `Traffic` step checks its first this many records one by one (through
/// [`Seen::unjudged`]), then one in [`TRAFFIC_CHECKED_EVERY`]: each check reads the window
/// twice (`pgate_read_health`, which sums its histograms), and checking every record made a
/// run about 7 times slower (one corpus of 906 inputs: 80 s instead of 10.8 s, about 11 inputs
/// a second instead of 84; this sample costs about a third more: 18.1 s).
const TRAFFIC_CHECKED_FIRST: u8 = 8;

/// The sample of a `Traffic` step's records after its first [`TRAFFIC_CHECKED_FIRST`]: those
/// whose index is a multiple of this. Odd, so that the records sampled keep no one phase of
/// the library's power-of-two strides (a thread's clock look at most every 64 records, its
/// quick check every 16th canary error).
const TRAFFIC_CHECKED_EVERY: u8 = 31;

/// How a promotion whose arguments are no promotion's is refused (before its stage is looked at).
const INVALID_PROMOTION: [pgate_status; 2] =
    [pgate_status::InvalidArgument, pgate_status::InvalidConfig];

/// How a document that is no config is refused (before the change count is looked at).
const INVALID_DOCUMENT: [pgate_status; 3] = [
    pgate_status::InvalidJson,
    pgate_status::InvalidConfig,
    pgate_status::InvalidArgument,
];

/// The result of a `_from` write, made on a read `stale` changes old (0: the current one): a
/// stale one is refused as `changed` (or first for its arguments, as one of `invalid`), a
/// current one is never refused as `changed`.
fn guarded(
    result: &Result<(), Refusal>,
    stale: u8,
    changed: pgate_status,
    invalid: &[pgate_status],
) {
    match (result, stale) {
        (Err(refusal), 0) => assert_ne!(refusal.status, changed),
        (Ok(()), 0) => {}
        (Err(refusal), _) => assert!(
            refusal.status == changed || invalid.contains(&refusal.status),
            "{refusal:?}, {stale} changes old"
        ),
        (Ok(()), _) => panic!("a write {stale} changes old was made, not refused as {changed:?}"),
    }
}

fn step(gate: &Gate, op: &Op, seen: &mut Seen) -> Result<(), Refusal> {
    match op {
        Op::Route { user: u } => {
            let decision = seen.route(gate, &user(*u));
            check_decision(gate, &user(*u), &decision);
            seen.keep(decision);
        }
        Op::Record {
            which,
            success,
            latency_ms,
        } => {
            let index = usize::from(*which) % seen.decisions.len().max(1);
            if let Some(d) = seen.decisions.get(index).copied() {
                let (_, _, current) = gate.state();
                let recorded = seen.unjudged(
                    gate,
                    || gate.record(&d, *success, u64::from(*latency_ms) * 1_000_000),
                    counted,
                    Some(d.is_canary),
                );
                seen.tally(recorded);
                if d.forced != pgate_forced::None && d.stage <= current {
                    assert_eq!(recorded, pgate_recorded::Forced, "{d:?}");
                }
            }
        }
        Op::RecordForged {
            stage,
            canary,
            success,
        } => {
            let (_, _, current) = gate.state();
            let forged = pgate_decision {
                stage: *stage,
                is_canary: *canary,
                ..seen.route(gate, b"forged")
            };
            let recorded = seen.unjudged(
                gate,
                || gate.record(&forged, *success, 1_000_000),
                counted,
                None,
            );
            seen.tally(recorded);
            if *stage > current {
                assert_eq!(
                    recorded,
                    pgate_recorded::Foreign,
                    "stage {stage} > {current}"
                );
            }
        }
        Op::RecordById {
            user: u,
            success,
            latency_ms,
        } => {
            seen.routed.push(user(*u));
            let recorded = seen.unjudged(
                gate,
                || gate.record_by_id(&user(*u), *success, u64::from(*latency_ms) * 1_000_000),
                counted,
                None,
            );
            seen.tally(recorded);
        }
        Op::Traffic {
            count,
            success,
            latency_ms,
        } => {
            let latency_ns = u64::from(*latency_ms) * 1_000_000;
            for i in 0..*count {
                let decision = seen.route(gate, &user(i));
                let record = || gate.record(&decision, *success, latency_ns);
                let recorded = if i < TRAFFIC_CHECKED_FIRST || i % TRAFFIC_CHECKED_EVERY == 0 {
                    seen.unjudged(gate, record, counted, Some(decision.is_canary))
                } else {
                    record()
                };
                seen.tally(recorded);
            }
        }
        Op::Promote {
            environment,
            percent,
        } => {
            gate.promote(u32::from(*environment % 4), percent.value())?;
        }
        Op::Rollback { reason } => gate.rollback(reason.bytes())?,
        Op::Enable { name } => gate.enable_feature(name.bytes())?,
        Op::Disable { name } => gate.disable_feature(name.bytes())?,
        Op::IsEnabled { name } => {
            if let Err(status) = gate.is_feature_enabled(name.bytes()) {
                return Err(Refusal {
                    status,
                    message: "is_feature_enabled".into(),
                });
            }
        }
        Op::SwapConfig { edit } => gate.swap_config(&edited(gate, edit))?,
        Op::MonitorHealth => {
            gate.monitor_health();
        }
        Op::CheckSlo => {
            let status = gate.check_slo();
            assert_eq!(status, pgate_status::Ok);
        }
        Op::RouteForced { user: u, value } => {
            let (id, value) = (user(*u), value.value());
            let config = parsed(&gate.config_json(), "pgate_config_json");
            let plain = seen.route(gate, &id);
            seen.routed.push(id.clone());
            let forced = gate.route_forced(&id, value.as_deref());
            check_decision(gate, &id, &forced);
            let same = |d: &pgate_decision| (d.stage, d.bucket, d.threshold, d.environment);
            assert_eq!(same(&forced), same(&plain), "{forced:?} vs {plain:?}");
            let plain_forcing = expected_forcing(&config, &id, None);
            assert_eq!(
                (plain.forced, plain.is_canary),
                plain_forcing.unwrap_or((pgate_forced::None, plain.bucket < plain.threshold)),
                "{plain:?} under {}",
                config["overrides"]
            );
            match expected_forcing(&config, &id, value.as_deref()) {
                Some(expected) => assert_eq!(
                    (forced.forced, forced.is_canary),
                    expected,
                    "{forced:?} under {}",
                    config["overrides"]
                ),
                None => {
                    assert_eq!(
                        (forced.forced, forced.is_canary),
                        (pgate_forced::None, plain.is_canary),
                        "{forced:?} under {}",
                        config["overrides"]
                    );
                    if value.is_some() {
                        seen.ignored += 1;
                    }
                }
            }
            seen.keep(forced);
        }
        Op::RecordByIdForced {
            user: u,
            value,
            success,
            latency_ms,
        } => {
            let (id, value) = (user(*u), value.value());
            let config = parsed(&gate.config_json(), "pgate_config_json");
            let expected = expected_forcing(&config, &id, value.as_deref());
            let latency_ns = u64::from(*latency_ms) * 1_000_000;
            let recorded = seen.unjudged(
                gate,
                || gate.record_by_id_forced(&id, value.as_deref(), *success, latency_ns),
                counted,
                None,
            );
            seen.tally(recorded);
            assert_eq!(
                recorded == pgate_recorded::Forced,
                expected.is_some(),
                "{recorded:?} for {value:?} under {}",
                config["overrides"]
            );
        }
        Op::RecordAbandoned { which, waited_ms } => {
            let index = usize::from(*which) % seen.decisions.len().max(1);
            if let Some(d) = seen.decisions.get(index).copied() {
                let slo = parsed(&gate.slo_json(), "pgate_slo_json");
                let (_, _, current) = gate.state();
                let waited_ns = u64::from(*waited_ms) * 1_000_000;
                let recorded = seen.unjudged(
                    gate,
                    || gate.record_abandoned_as(&d, waited_ns),
                    |r| r.as_ref().is_some_and(counted),
                    Some(d.is_canary),
                );
                // A wait longer than the latency target is a success that missed it; one up
                // to the target records nothing.
                if let Some(target_ms) = slo["latency_target_ms"].as_f64() {
                    // Exact at the boundary for a whole number of milliseconds.
                    let (waited, target) = (waited_ns as f64, target_ms * 1e6);
                    if target_ms.fract() == 0.0 || (waited - target).abs() >= 1.0 {
                        assert_eq!(
                            recorded.is_some(),
                            waited > target,
                            "waited {waited} ns, target {target} ns"
                        );
                    }
                }
                if let Some(recorded) = recorded {
                    seen.tally(recorded);
                    if d.forced != pgate_forced::None && d.stage <= current {
                        assert_eq!(recorded, pgate_recorded::Forced, "{d:?}");
                    }
                }
            }
        }
        Op::RouteRaw { id } => {
            let decision = seen.route(gate, id);
            check_decision(gate, id, &decision);
            seen.keep(decision);
        }
        Op::RecordRaw {
            id,
            success,
            latency_ns,
        } => {
            seen.routed.push(id.clone());
            let recorded = seen.unjudged(
                gate,
                || gate.record_by_id(id, *success, *latency_ns),
                counted,
                None,
            );
            seen.tally(recorded);
        }
        Op::PromoteFrom {
            stale,
            environment,
            percent,
        } => {
            let (_, _, current) = gate.state();
            let stage = current.wrapping_sub(u64::from(*stale));
            let result = gate.promote_from(stage, u32::from(*environment % 4), percent.value());
            guarded(
                &result,
                *stale,
                pgate_status::StageChanged,
                &INVALID_PROMOTION,
            );
            result?;
        }
        Op::SwapConfigFrom { stale, edit } => {
            let count = gate.change_count().wrapping_sub(u64::from(*stale));
            let json = edited(gate, edit);
            let result = gate.swap_config_from(count, &json);
            guarded(
                &result,
                *stale,
                pgate_status::GateChanged,
                &INVALID_DOCUMENT,
            );
            result?;
        }
        Op::SwapSlo { edit } => {
            let json = slo_edited(gate, edit);
            // The SLO swap keeps the outcomes in the window.
            seen.unjudged(gate, || gate.swap_slo(&json), |_| false, None)?;
        }
        Op::ReadHealth => {
            let (_, _, current) = gate.state();
            let health = gate.read_health();
            assert!(health.stage <= current.max(gate.state().2), "{health:?}");
            assert!(
                health.health_score.is_nan() || (0.0..=1.0).contains(&health.health_score),
                "{health:?}"
            );
        }
        Op::Metrics { counts } => {
            let text = gate.metrics_prometheus();
            let (kinds, samples) = exposition(&text);
            for sample in &samples {
                if kinds.get(&sample.family).map(String::as_str) == Some("counter") {
                    let value: f64 = sample.value.parse().unwrap_or(f64::NAN);
                    let last = seen.counters.insert(sample.series.clone(), value);
                    assert!(
                        last.is_none_or(|last| value >= last),
                        "{} fell from {last:?} to {value}",
                        sample.series
                    );
                }
            }
            let outcomes = [
                ("promotion_late_outcomes_total", seen.late),
                ("promotion_foreign_outcomes_total", seen.foreign),
                ("promotion_forced_outcomes_total", seen.forced),
                ("promotion_ignored_override_values_total", seen.ignored),
            ];
            for (name, expected) in outcomes {
                assert!(
                    shows(&samples, name, expected),
                    "{name} is not {expected}: {text}"
                );
            }
            let host = pgate_outcome_counts {
                late_outcomes: counts[0],
                foreign_outcomes: counts[1],
                forced_outcomes: counts[2],
                ignored_override_values: counts[3],
            };
            let (_, counted) = exposition(&gate.metrics_prometheus_counted(Some(host)));
            for ((name, _), expected) in outcomes.iter().zip(counts) {
                assert!(shows(&counted, name, *expected), "{name} is not {expected}");
            }
        }
    }
    Ok(())
}

/// Whether `after` is `before` rolled back by the judge: what a gated promotion refused as
/// `SLO_NOT_MET` may leave when a rule fired and `auto_rollback_enabled` is on.
fn rolled_back_by_judge(before: &Observed, after: &Observed) -> bool {
    let parse = |json: &str| serde_json::from_str::<Value>(json).ok();
    let (Some(config), Some(history)) = (parse(&before.config), parse(&after.history)) else {
        return false;
    };
    let newest = history.as_array().and_then(|events| events.last());
    config["auto_rollback_enabled"] == Value::Bool(true)
        && after.state.0 == pgate_environment::Production
        && after.state.2 > before.state.2
        && newest.is_some_and(|event| event["trigger"] == "automatic")
}

/// The changes numbered from `before` to `after` (`pgate_change_count` before and after a
/// step): the count never falls, and the changes it moved past read back as a JSON array of
/// changes numbered upwards, the newest numbered `after`.
fn check_changes(gate: &Gate, before: u64, after: u64) {
    assert!(
        after >= before,
        "the change count fell from {before} to {after}"
    );
    if after == before {
        return;
    }
    let json = gate.changes_json(before);
    let changes = parsed(&json, "pgate_changes_json");
    let Some(changes) = changes.as_array() else {
        panic!("pgate_changes_json is no array: {json}")
    };
    let numbers: Vec<u64> = changes
        .iter()
        .map(|change| {
            let kind = change["kind"].as_str().unwrap_or_default();
            assert!(
                ["rollback", "promotion", "flags", "config"].contains(&kind),
                "{change}"
            );
            assert_eq!(change["origin"], "this_gate", "{change}");
            match change["sequence"].as_u64() {
                Some(n) => n,
                None => panic!("a change without its number: {change}"),
            }
        })
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1])
            && numbers.first().is_none_or(|first| *first > before)
            && numbers.last().copied().unwrap_or(before) == after,
        "changes {numbers:?} after {before}, count {after}: {json}"
    );
}

/// The environment a promotion of every sequence must reach (`PGATE_FUZZ_EXPECT_PROMOTED_TO`:
/// `staging` or `production`), for the check that a seed still earns it; none while fuzzing.
fn expected_promotion() -> Option<pgate_environment> {
    static EXPECTED: OnceLock<Option<pgate_environment>> = OnceLock::new();
    *EXPECTED.get_or_init(|| {
        let name = std::env::var("PGATE_FUZZ_EXPECT_PROMOTED_TO").ok()?;
        match name.as_str() {
            "staging" => Some(pgate_environment::Staging),
            "production" => Some(pgate_environment::Production),
            _ => panic!("PGATE_FUZZ_EXPECT_PROMOTED_TO={name:?}: expected staging or production"),
        }
    })
}

fuzz_target!(|input: Input| {
    listen();
    let config = serde_json::json!({
        "environment": {"canary": {"traffic_percent": f64::from(input.start % 101)}},
        "feature_flags": ["new_api"],
        "max_rollback_history": 4,
    });
    let gate = match Gate::new(config.to_string().as_bytes(), SLO) {
        Ok(gate) => gate,
        Err(refusal) => panic!("{config} refused: {refusal:?}"),
    };
    let flags = mentioned(&input);
    let mut seen = Seen {
        decisions: Vec::new(),
        late: 0,
        foreign: 0,
        forced: 0,
        ignored: 0,
        routed: Vec::new(),
        counters: BTreeMap::new(),
        born: Instant::now(),
    };
    // Lines of the gate's making (and of an earlier input's end) say nothing of the steps.
    LINES.lock().unwrap_or_else(PoisonError::into_inner).clear();
    let mut before = gate.observe(&flags);
    let mut promoted_to = Vec::new();
    for op in input.ops.iter().take(64) {
        let result = step(&gate, op, &mut seen);
        check_log(&mut seen.routed);
        let after = gate.observe(&flags);
        check_changes(&gate, before.changes, after.changes);
        if matches!(op, Op::Promote { .. } | Op::PromoteFrom { .. }) && result.is_ok() {
            promoted_to.push(after.state.0);
        }
        if matches!(op, Op::SwapSlo { .. }) && result.is_ok() {
            // An SLO swap keeps the gate's state, and is one change.
            let kept = |o: &Observed| {
                (
                    o.state,
                    o.config.clone(),
                    o.history.clone(),
                    o.flags.clone(),
                )
            };
            assert_eq!(
                kept(&after),
                kept(&before),
                "{op:?} changed the gate's state"
            );
            assert_eq!(
                after.changes,
                before.changes + 1,
                "{op:?}: the change count"
            );
        }
        if let Err(refusal) = result {
            // A promotion, and a write that starts a stage (a flag turned on, a swap of the
            // split or the salt), judge the stage first: a fired rule rolls back, and the write
            // is refused.
            let judged = matches!(
                op,
                Op::Promote { .. }
                    | Op::PromoteFrom { .. }
                    | Op::Enable { .. }
                    | Op::SwapConfig { .. }
                    | Op::SwapConfigFrom { .. }
            ) && refusal.status == pgate_status::SloNotMet
                && rolled_back_by_judge(&before, &after);
            if !judged {
                // The window's counts change only by records, which a refused call makes none
                // of, and with time, while nothing has left the window yet.
                let after = if seen.young() {
                    after.clone()
                } else {
                    Observed {
                        cohorts: before.cohorts,
                        ..after.clone()
                    }
                };
                assert_eq!(
                    after, before,
                    "{op:?} was refused ({refusal:?}) and changed the gate"
                );
            }
        }
        assert!(
            after.state.2 >= before.state.2,
            "{op:?}: the stage went back"
        );
        before = after;
    }
    if let Some(expected) = expected_promotion() {
        assert!(
            promoted_to.contains(&expected),
            "no promotion reached {expected:?}; the promotions made reached {promoted_to:?}"
        );
    }
});
