//! `promotion-gates route`: the decision for each request id and why, with `--explain` the
//! formula's every step (salt, SHA-256 of the salt, digest prefix, bucket, threshold).
//!
//! It answers for a static config (the file's, then the flags') and never opens a state store:
//! a `store` in the file is checked and set aside, so running `route` creates or changes
//! nothing a gate in production would start from.

use clap::Args;
use promotion_gates::{
    BUCKETS, Environment, Forced, MAX_SHOWN_VALUE_BYTES, MIN_EVALUATION_INTERVAL, PromotionConfig,
    PromotionGateManager, RoutingDecision, SloAdmissionController, SloConfig,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};

use crate::document;
use crate::error::{CliError, shown_escaped, shown_path};
use crate::flag::{any_text, finite_number, overriding, text};

/// The longest request id `route` reads from a line of stdin, in bytes (64 KiB, far beyond the
/// 8 KiB a proxy usually allows a whole header line): a longer line is refused, naming its
/// number, after at most this many bytes of it (and two more) were read.
pub const MAX_ID_BYTES: usize = 64 * 1024;

/// Flags of `route`. A flag that overrides a field of the config file has its help (with its
/// default) written by [`overriding`].
#[derive(Debug, Args)]
pub struct RouteArgs {
    /// A PromotionConfig file (JSON or TOML), whose fields the flags below override. Its
    /// `store`, if any, is checked but never opened: route answers for the file's static
    /// config, not for a store's current state, and creates or writes nothing. It cannot be
    /// stdin (/dev/stdin) unless ids are given: without them, ids are read from stdin
    /// [default: none, the library's PromotionConfig defaults]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[arg(long, value_parser = text(any_text), help = overriding("The gate's name (the default salt)", PromotionConfig::default().gate))]
    gate: Option<String>,
    #[arg(long, value_parser = text(any_text), help = overriding("The routing salt", "the gate's name"))]
    salt: Option<String>,
    #[arg(long, value_parser = text(finite_number), allow_negative_numbers = true, help = overriding(
        "Canary share of traffic, in percent (sets the environment to a canary; checked as the \
         library checks a config)",
        format!("none, the environment {}", PromotionConfig::default().environment),
    ))]
    percent: Option<f64>,
    /// The forcing value each request carries, as a host passes what the header or cookie
    /// `overrides` names holds (`canary` or `stable`, ASCII case ignored, force a request when
    /// the config's `overrides` names a header or a cookie, but an id on an id list, which the
    /// list forces whatever the value; any other value is ignored and the bucket decides)
    /// [default: none, as a request without that header or cookie]
    #[arg(long, value_name = "VALUE")]
    value: Option<OsString>,
    /// Show each step of the formula (for an id an override forces, what forced it in place of
    /// the comparison with the threshold).
    #[arg(long)]
    explain: bool,
    /// One JSON object per id, one per line. An id that is not UTF-8 has `"id": null` and its
    /// bytes in hex in `"id_hex"`; a forced decision names what forced it in `"forced"`
    /// (`id_list` or `value`).
    #[arg(long)]
    json: bool,
    #[arg(help = format!(
        "Request ids; without any, ids are read from stdin, one per line (empty lines skipped; \
         a line longer than {MAX_ID_BYTES} bytes, MAX_ID_BYTES, is refused with its number), \
         so that --config cannot then be stdin"
    ))]
    ids: Vec<OsString>,
}

/// One decision, as printed.
#[derive(Debug, Serialize)]
struct Routed<'a> {
    /// The id's bytes, which the text output shows [`readable`].
    #[serde(skip)]
    bytes: &'a [u8],
    /// The id, or `None` (`null`) when it is not UTF-8: then [`id_hex`](Self::id_hex) holds it.
    id: Option<String>,
    /// The id's bytes in hex, only for an id that is not UTF-8 (a lossy text would print
    /// different ids alike).
    #[serde(skip_serializing_if = "Option::is_none")]
    id_hex: Option<String>,
    /// What forced the decision, when an override did; in JSON its name (`id_list`, `value`).
    #[serde(
        serialize_with = "forced_by_name",
        skip_serializing_if = "Option::is_none"
    )]
    forced: Option<Forced>,
    cohort: &'static str,
    is_canary: bool,
    environment: String,
    bucket: u32,
    threshold: u32,
    reason: String,
    enabled_features: Vec<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    explain: Option<Steps>,
}

/// What `--explain` checks each decision against, computed here once from the config `route`
/// built ([`config`]), not taken from the engine: not from the config the gate publishes
/// either, which the engine could have changed.
#[derive(Debug)]
struct Formula {
    /// The gate's salt.
    salt: String,
    /// The threshold its environment sets ([`threshold_of`]).
    threshold: u32,
}

impl Formula {
    /// The formula of `config`, the config the gate was built with.
    fn of(config: &PromotionConfig) -> Self {
        Self {
            salt: config.effective_salt().to_string(),
            threshold: threshold_of(&config.environment),
        }
    }
}

/// The formula's steps for one id.
#[derive(Debug, Serialize)]
struct Steps {
    salt: String,
    salt_sha256: String,
    digest_prefix: String,
    x: u64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `"id_list"` or `"value"`: what forced a decision, in JSON.
fn forced_by_name<S: serde::Serializer>(forced: &Option<Forced>, s: S) -> Result<S::Ok, S::Error> {
    match forced {
        Some(forced) => s.serialize_str(forced.by.name()),
        None => s.serialize_none(),
    }
}

/// `id` for a reader, its first `max` bytes at most: as it is, except each byte that is not
/// UTF-8 and each byte of a character the CLI shows escaped ([`shown_escaped`]: a control
/// character such as a tab, an escape or `U+0085`; a format character, U+202E showing the rest
/// of the line reversed, U+200B nothing at all; another drawn as nothing, U+3164 HANGUL
/// FILLER; U+2028 and U+2029, which end a line), which are written `\xNN`, and a backslash, written `\\` (so the text `x\xFF` is
/// not the bytes `x`, 0xFF). `--json` gives ids that are not UTF-8 in hex instead,
/// unambiguously. Says too whether the whole id is shown. The one way the CLI writes an id,
/// in its output and in its messages.
fn readable(id: &[u8], max: usize) -> (String, bool) {
    let mut text = String::new();
    let fits = |text: &mut String, shown: &str| {
        let room = text.len() + shown.len() <= max;
        if room {
            text.push_str(shown);
        }
        room
    };
    for chunk in id.utf8_chunks() {
        let mut bytes = [0; 4];
        for c in chunk.valid().chars() {
            let encoded = c.encode_utf8(&mut bytes);
            let shown = if c == '\\' {
                "\\\\".to_string()
            } else if shown_escaped(c) {
                escaped(encoded.as_bytes())
            } else {
                encoded.to_string()
            };
            if !fits(&mut text, &shown) {
                return (text, false);
            }
        }
        if !fits(&mut text, &escaped(chunk.invalid())) {
            return (text, false);
        }
    }
    (text, true)
}

/// `bytes`, each written `\xNN`.
fn escaped(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\x{b:02X}")).collect()
}

/// The gate's config: the file's (checked on its own first, its `store` set aside), then the
/// flags. A flag's value the library refuses is a bad flag value (exit 2) named as the flag
/// ([`flag_refusal`]).
fn config(args: &RouteArgs) -> Result<PromotionConfig, CliError> {
    let mut config = match &args.config {
        Some(path) => {
            let (config, written) = document::load_written::<PromotionConfig>(path)?;
            config.validate().map_err(|e| CliError::Invalid {
                path: path.clone(),
                message: written.config_error(e).to_string(),
            })?;
            // A gate opened on a store starts from its stored state (the flags below would be
            // ignored), and opening one creates it or writes this gate's state into it.
            PromotionConfig {
                store: None,
                ..config
            }
        }
        None => PromotionConfig::default(),
    };
    if let Some(gate) = &args.gate {
        config.gate.clone_from(gate);
    }
    if let Some(salt) = &args.salt {
        config.salt = Some(salt.clone());
    }
    if let Some(percent) = args.percent {
        config.environment = Environment::Canary {
            traffic_percent: percent,
        };
    }
    config
        .validate()
        .map_err(|e| CliError::Usage(flag_refusal(&e)))?;
    Ok(config)
}

/// The library's refusal of a config the flags changed, named as the flag that set the field
/// (the file's config was valid on its own): `invalid --percent = 150: a finite percentage
/// from 0 to 100 (checked as the library checks environment.canary.traffic_percent)`, as
/// `simulate` names its flags.
fn flag_refusal(e: &promotion_gates::ConfigError) -> String {
    let flag = match e.field() {
        "gate" => "--gate",
        "salt" => "--salt",
        "environment.canary.traffic_percent" => "--percent",
        // No flag sets another field: the flags' values together.
        _ => return format!("{e} (from the command-line flags)"),
    };
    format!(
        "invalid {flag} = {}: {} (checked as the library checks {})",
        e.value(),
        e.expected(),
        e.field()
    )
}

/// The SLO of the gate `route` builds: the default one with its evaluation interval cut to
/// the longest `config`'s window accepts ([`SloConfig::longest_interval_for`]) where the
/// default's is longer (never below [`MIN_EVALUATION_INTERVAL`]). Routing does not read the
/// SLO, and nothing is judged, but a gate refuses a longer interval: a config with a short
/// window (5 s) routes as any other.
fn routing_slo(config: &PromotionConfig) -> SloConfig {
    let default = SloConfig::default();
    let longest = SloConfig::longest_interval_for(config.rollback_window_seconds);
    SloConfig {
        evaluation_interval: default
            .evaluation_interval
            .min(longest)
            .max(MIN_EVALUATION_INTERVAL),
        ..default
    }
}

/// Refuses a `--config` that is stdin (`/dev/stdin`, or the file stdin is redirected from)
/// when no id is given: the ids are then read from stdin too, which the config has used up (a
/// pipe: nothing was routed, and the command exited 0) or holds (a file: its lines would be
/// taken for ids). A bad flag (exit 2), checked before either is read.
fn check_stdin_read_once(args: &RouteArgs) -> Result<(), CliError> {
    match &args.config {
        Some(path) if args.ids.is_empty() && is_stdin(path) => Err(CliError::Usage(format!(
            "--config {} is stdin, and with no ids on the command line the ids are read from \
             stdin too: give the ids as arguments, or the config as a file",
            shown_path(path)
        ))),
        _ => Ok(()),
    }
}

/// Whether `path` is the file stdin reads: the same device and inode (a pipe's too, which
/// `/dev/stdin` opens again).
#[cfg(unix)]
fn is_stdin(path: &Path) -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(stdin) = io::stdin().as_fd().try_clone_to_owned() else {
        return false;
    };
    match (
        std::fs::File::from(stdin).metadata(),
        std::fs::metadata(path),
    ) {
        (Ok(stdin), Ok(file)) => stdin.dev() == file.dev() && stdin.ino() == file.ino(),
        _ => false,
    }
}

/// Whether `path` is the file stdin reads: known by name only, where there is no inode.
#[cfg(not(unix))]
fn is_stdin(path: &Path) -> bool {
    path == Path::new("/dev/stdin")
}

/// Runs `route`.
pub fn run(args: &RouteArgs) -> Result<(), CliError> {
    check_stdin_read_once(args)?;
    let config = config(args)?;
    // The salt and threshold of the config the gate is built with, which --explain checks the
    // engine's decisions against.
    let formula = Formula::of(&config);
    let environment = config.environment;
    let slo =
        SloAdmissionController::new(routing_slo(&config)).map_err(promotion_gates::Error::from)?;
    let gate = PromotionGateManager::new(config, slo)?;
    let salt = &formula.salt;
    let mut out = io::stdout().lock();
    if args.explain && !args.json {
        writeln!(out, "salt           {salt:?}")?;
        writeln!(
            out,
            "SHA-256(salt)  {}  (salt block = these 32 bytes, then 32 zero bytes)",
            hex(&salt_block(salt)[..32])
        )?;
        writeln!(
            out,
            "bucket = floor(x * {BUCKETS} / 2^64), x = first 8 bytes of SHA-256(salt block || id), big-endian"
        )?;
        writeln!(
            out,
            "{}; canary when bucket < threshold\n",
            threshold_rule(&environment)
        )?;
    }
    let mut each = |id: &[u8]| -> Result<(), CliError> {
        print(
            &mut out,
            &route(
                &gate,
                args.explain.then_some(&formula),
                id,
                args.value.as_ref().map(|v| v.as_encoded_bytes()),
            )?,
            args.json,
        )
    };
    if args.ids.is_empty() {
        each_line(io::stdin().lock(), each)?;
    } else {
        for id in &args.ids {
            each(id.as_encoded_bytes())?;
        }
    }
    Ok(())
}

/// Routes `id` through `gate`, with the forcing `value` a request carries, if any; with
/// `explain` (the gate's [`Formula`]), recomputes the formula's steps too.
fn route<'a>(
    gate: &PromotionGateManager,
    explain: Option<&Formula>,
    id: &'a [u8],
    value: Option<&[u8]>,
) -> Result<Routed<'a>, CliError> {
    let decision = gate.route_request_forced(id, value);
    let steps = explain
        .map(|formula| steps(formula, id, &decision))
        .transpose()?;
    let text = std::str::from_utf8(id).ok();
    Ok(Routed {
        id: text.map(str::to_string),
        id_hex: text.is_none().then(|| hex(id)),
        bytes: id,
        forced: decision.forced,
        cohort: decision.cohort().name(),
        is_canary: decision.is_canary,
        environment: decision.target_environment.to_string(),
        bucket: decision.reason.bucket().get(),
        threshold: decision.reason.threshold(),
        reason: decision.reason.to_string(),
        enabled_features: decision
            .enabled_features
            .iter()
            .map(str::to_string)
            .collect(),
        explain: steps,
    })
}

/// Calls `each` with the id on each line of `input` (its `\n` or `\r\n` taken off), skipping
/// empty lines. A line longer than [`MAX_ID_BYTES`] is refused, naming its number, once that
/// many bytes of it and two more were read: an endless line is never held. A line that cannot
/// be read (stdin a directory) is named by its number too.
fn each_line(
    mut input: impl BufRead,
    mut each: impl FnMut(&[u8]) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let mut line = Vec::new();
    for number in 1u64.. {
        line.clear();
        // The longest id and its `\r\n` at most: a line that does not end within them is too
        // long, and the rest of it is never read.
        let limit = u64::try_from(MAX_ID_BYTES + 2).unwrap_or(u64::MAX);
        let read = input
            .by_ref()
            .take(limit)
            .read_until(b'\n', &mut line)
            .map_err(|e| CliError::Input(format!("stdin line {number}: cannot be read: {e}")))?;
        if read == 0 {
            break;
        }
        let id = line.strip_suffix(b"\n").unwrap_or(&line);
        let id = id.strip_suffix(b"\r").unwrap_or(id);
        if id.len() > MAX_ID_BYTES {
            let (start, _) = readable(id, MAX_SHOWN_VALUE_BYTES);
            return Err(CliError::Input(format!(
                "stdin line {number}: invalid request id = \"{start}\"...(more than \
                 {MAX_ID_BYTES} bytes): at most {MAX_ID_BYTES} bytes (MAX_ID_BYTES) a line"
            )));
        }
        if !id.is_empty() {
            each(id)?;
        }
    }
    Ok(())
}

/// `SHA-256(salt) || [0; 32]`, the block that stands for the salt, computed here and not
/// taken from the library, so that `--explain` checks the engine against an independent
/// computation.
fn salt_block(salt: &str) -> [u8; 64] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(&Sha256::digest(salt.as_bytes()));
    block
}

/// The threshold `environment` sets, computed here and not taken from the library (as
/// [`salt_block`]): a canary's `round(percent * 100000)`, halves rounded away from zero
/// ([`f64::round`]; a valid percent, `0..=100`, gives `0..=BUCKETS`), Staging's every bucket,
/// Production's none.
fn threshold_of(environment: &Environment) -> u32 {
    match environment {
        // Clamped, as a percent outside 0..=100 (which validation refuses) would not be; `as`
        // makes NaN 0.
        Environment::Canary { traffic_percent } => (traffic_percent * 100_000.0)
            .round()
            .clamp(0.0, f64::from(BUCKETS))
            as u32,
        Environment::Staging => BUCKETS,
        Environment::Production => 0,
    }
}

/// How the environment sets the threshold, with its value ([`threshold_of`]).
fn threshold_rule(environment: &Environment) -> String {
    let threshold = threshold_of(environment);
    match environment {
        Environment::Canary { .. } => format!("threshold = round(percent * 100000) = {threshold}"),
        Environment::Staging => format!("threshold = {threshold} (Staging: every request)"),
        Environment::Production => format!("threshold = {threshold} (Production: no request)"),
    }
}

/// Checks the engine's decision: its threshold `engines` must be `threshold`, the one the
/// environment sets ([`threshold_of`]), forced or not (forcing does not change the threshold,
/// which `--json` prints); its cohort, unless an override `forced` it, the comparison of
/// `bucket` with it. A mismatch is a bug, refused rather than explained.
fn check_comparison(
    id: &[u8],
    bucket: u32,
    threshold: u32,
    engines: u32,
    is_canary: bool,
    forced: bool,
) -> Result<(), CliError> {
    let (shown, whole) = readable(id, MAX_SHOWN_VALUE_BYTES);
    if engines != threshold {
        return Err(CliError::Simulation(format!(
            "the environment sets threshold {threshold} but the engine routed \"{shown}{}\" by \
             threshold {engines}: a bug, please report it",
            if whole { "" } else { "..." },
        )));
    }
    if forced || (bucket < threshold) == is_canary {
        return Ok(());
    }
    Err(CliError::Simulation(format!(
        "bucket {bucket} {} threshold {threshold} for \"{shown}{}\" but the engine routed it \
         to the {}, and no override forced it: a bug, please report it",
        if bucket < threshold { "<" } else { ">=" },
        if whole { "" } else { "..." },
        if is_canary {
            "canary"
        } else {
            "stable version"
        },
    )))
}

/// Recomputes the formula by hand and checks it against the engine's decision.
fn steps(formula: &Formula, id: &[u8], decision: &RoutingDecision<'_>) -> Result<Steps, CliError> {
    let salt = &formula.salt;
    let block = salt_block(salt);
    let digest = Sha256::new()
        .chain_update(block)
        .chain_update(id)
        .finalize();
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&digest[..8]);
    let x = u64::from_be_bytes(prefix);
    let bucket = ((u128::from(x) * u128::from(BUCKETS)) >> 64) as u32;
    if bucket != decision.reason.bucket().get() {
        let (shown, whole) = readable(id, MAX_SHOWN_VALUE_BYTES);
        return Err(CliError::Simulation(format!(
            "the formula gives bucket {bucket} for \"{shown}{}\" but the engine routed by \
             bucket {}: a bug, please report it",
            if whole { "" } else { "..." },
            decision.reason.bucket().get()
        )));
    }
    check_comparison(
        id,
        bucket,
        formula.threshold,
        decision.reason.threshold(),
        decision.is_canary,
        decision.forced.is_some(),
    )?;
    Ok(Steps {
        salt: salt.to_string(),
        salt_sha256: hex(&block[..32]),
        digest_prefix: hex(&prefix),
        x,
    })
}

fn print(out: &mut impl Write, routed: &Routed<'_>, json: bool) -> Result<(), CliError> {
    if json {
        serde_json::to_writer(&mut *out, routed).map_err(io::Error::from)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{}\t{}\t{}",
        readable(routed.bytes, usize::MAX).0,
        routed.cohort,
        routed.reason
    )?;
    if let Some(steps) = &routed.explain {
        // A forced request's bucket decided nothing: say what did.
        let decided = match routed.forced {
            Some(forced) => format!("bucket {} not compared: {forced}", routed.bucket),
            None => format!(
                "bucket {} {} threshold {}",
                routed.bucket,
                if routed.bucket < routed.threshold {
                    "<"
                } else {
                    ">="
                },
                routed.threshold,
            ),
        };
        writeln!(
            out,
            "  digest prefix {} -> x = {} -> {decided} -> {}",
            steps.digest_prefix, steps.x, routed.cohort,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Zeros;
    use promotion_gates::{Overrides, TRAFFIC_PERCENT_RESOLUTION};

    /// The config of a gate at `percent` % that forces `alice` to the canary.
    fn forcing_alice(percent: f64) -> PromotionConfig {
        PromotionConfig {
            environment: Environment::Canary {
                traffic_percent: percent,
            },
            overrides: Some(Overrides {
                canary_ids: vec!["alice".into()],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A gate of [`forcing_alice`]'s config.
    fn gate_forcing_alice(percent: f64) -> PromotionGateManager {
        let slo = SloAdmissionController::new(SloConfig::default()).unwrap();
        PromotionGateManager::new(forcing_alice(percent), slo).unwrap()
    }

    fn printed(routed: &Routed<'_>, json: bool) -> String {
        let mut out = Vec::new();
        print(&mut out, routed, json).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn explain_says_a_forced_decision_was_forced_and_by_what() {
        // alice's bucket (3294347) is above 10 %'s threshold: she is canary only by the list.
        let gate = gate_forcing_alice(10.0);
        let routed = route(&gate, Some(&formula(10.0)), b"alice", None).unwrap();
        let text = printed(&routed, false);
        assert!(
            text.contains(
                "-> bucket 3294347 not compared: forced to canary by overrides.canary_ids -> canary"
            ),
            "{text}"
        );
        assert!(!text.contains("threshold 1000000 -> canary"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&printed(&routed, true)).unwrap();
        assert_eq!(json["forced"], "id_list");
        // An id routed by its bucket compares it, and has no `forced`.
        let routed = route(&gate, Some(&formula(10.0)), b"bob", None).unwrap();
        assert!(
            printed(&routed, false).contains("-> bucket 1673481 >= threshold 1000000 -> stable")
        );
        let json: serde_json::Value = serde_json::from_str(&printed(&routed, true)).unwrap();
        assert!(json.get("forced").is_none(), "{json}");
    }

    /// The formula `--explain` computes for [`forcing_alice`]'s config at `percent` %, whose
    /// salt is `default`.
    fn formula(percent: f64) -> Formula {
        let formula = Formula::of(&forcing_alice(percent));
        assert_eq!(formula.salt, "default");
        formula
    }

    #[test]
    fn a_decision_its_comparison_contradicts_is_refused_unless_forced() {
        for (bucket, threshold, is_canary) in [(5, 10, true), (10, 10, false), (0, 0, false)] {
            let check = |is_canary, forced| {
                check_comparison(b"u", bucket, threshold, threshold, is_canary, forced)
            };
            assert!(check(is_canary, false).is_ok());
            let Err(CliError::Simulation(message)) = check(!is_canary, false) else {
                panic!("{bucket} {threshold} {is_canary}: not refused");
            };
            assert!(message.contains("no override forced it"), "{message}");
            assert!(check(!is_canary, true).is_ok());
        }
    }

    #[test]
    fn a_decision_by_another_threshold_than_the_environments_is_refused_forced_or_not() {
        // Bucket 5 is canary by the engine's threshold 10 as by the environment's 20: the
        // comparison agrees, the threshold does not.
        for (threshold, engines) in [(20, 10), (0, 10), (10, 0)] {
            let is_canary = 5 < engines;
            let Err(CliError::Simulation(message)) =
                check_comparison(b"u", 5, threshold, engines, is_canary, false)
            else {
                panic!("engine's threshold {engines}, the environment's {threshold}: not refused");
            };
            assert!(
                message.contains(&format!(
                    "the environment sets threshold {threshold} but the engine routed \"u\" by \
                     threshold {engines}"
                )),
                "{message}"
            );
            // Forcing decides the cohort, not the threshold.
            assert!(check_comparison(b"u", 5, threshold, engines, is_canary, true).is_err());
            assert!(check_comparison(b"u", 5, engines, engines, !is_canary, true).is_ok());
        }
        // A real decision of a gate at 10 %, checked against a config at 20 %: refused even
        // for an id whose bucket both thresholds put on the same side.
        let gate = gate_forcing_alice(10.0);
        let decision = gate.route_request("bob"); // bucket 1673481: stable at 10 %
        let other = formula(15.0); // threshold 1500000: stable too
        assert_eq!((decision.is_canary, other.threshold), (false, 1_500_000));
        assert!(steps(&formula(10.0), b"bob", &decision).is_ok());
        let Err(CliError::Simulation(message)) = steps(&other, b"bob", &decision) else {
            panic!("a decision by threshold 1000000 passed a check at 1500000");
        };
        assert!(message.contains("by threshold 1000000"), "{message}");
    }

    #[test]
    fn a_forced_decision_by_another_threshold_than_the_environments_is_refused() {
        // alice is forced to the canary by the id list; the engine's threshold (10 %) is still
        // the environment's, and `--json` prints it.
        let gate = gate_forcing_alice(10.0);
        let decision = gate.route_request("alice");
        assert!(decision.forced.is_some() && decision.is_canary);
        assert!(steps(&formula(10.0), b"alice", &decision).is_ok());
        let Err(CliError::Simulation(message)) = steps(&formula(15.0), b"alice", &decision) else {
            panic!("a forced decision by threshold 1000000 passed a check at 1500000");
        };
        assert!(
            message.contains(
                "the environment sets threshold 1500000 but the engine routed \"alice\" by \
                 threshold 1000000"
            ),
            "{message}"
        );
    }

    #[test]
    fn the_threshold_is_the_percent_times_100000_rounded_half_away_from_zero() {
        for (percent, threshold) in [
            (0.0, 0),
            (-0.0, 0),
            (0.00001, 1),
            (0.015625, 1_563), // 2^-6 %: exactly 1562.5 buckets, rounded up (half-even: 1562)
            (12.5, 1_250_000),
            (99.99999, 9_999_999),
            (100.0, BUCKETS),
        ] {
            let environment = Environment::Canary {
                traffic_percent: percent,
            };
            assert_eq!(threshold_of(&environment), threshold, "{percent}");
            // The library's own computation agrees (the engine's threshold is checked against
            // this one for every explained id).
            assert_eq!(promotion_gates::threshold_for_percent(percent), threshold);
        }
        assert_eq!(threshold_of(&Environment::Staging), 10_000_000);
        assert_eq!(threshold_of(&Environment::Production), 0);
    }

    #[test]
    fn the_salt_block_is_the_salt_digest_then_zeros() {
        // SHA-256("abc"), FIPS 180-2's first example.
        let block = salt_block("abc");
        assert_eq!(
            hex(&block[..32]),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(block[32..], [0; 32]);
    }

    #[test]
    fn ids_that_are_not_utf8_are_printed_unambiguously() {
        let gate = gate_forcing_alice(50.0);
        let mut seen = Vec::new();
        for id in [&b"a\xff"[..], b"a\xfe", b"a\xef\xbf\xbd", b"a"] {
            let routed = route(&gate, None, id, None).unwrap();
            let json: serde_json::Value = serde_json::from_str(&printed(&routed, true)).unwrap();
            match std::str::from_utf8(id) {
                Ok(text) => {
                    assert_eq!(json["id"], text);
                    assert!(json.get("id_hex").is_none(), "{json}");
                }
                Err(_) => {
                    assert!(json["id"].is_null(), "{json}");
                    assert_eq!(json["id_hex"], hex(id));
                }
            }
            seen.push(format!("{} {}", json["id"], json["id_hex"]));
            let text = printed(&routed, false);
            assert!(
                text.starts_with(&format!("{}\t", readable(id, usize::MAX).0)),
                "{text}"
            );
        }
        // Four ids, four different prints (lossy UTF-8 gave `a\u{fffd}` for the first three).
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 4);
        assert_eq!(readable(b"a\xff", usize::MAX), ("a\\xFF".to_string(), true));
    }

    #[test]
    fn an_id_is_written_one_way_with_control_characters_escaped_and_within_a_bound() {
        let shown = |id: &[u8], max| readable(id, max);
        // A tab, an escape, NUL and U+0085 (two bytes) would move or hide the columns.
        assert_eq!(
            shown("a\tb\u{1b}[31m\0\u{85}é".as_bytes(), usize::MAX).0,
            "a\\x09b\\x1B[31m\\x00\\xC2\\x85é"
        );
        // U+202E showed the rest of the line reversed, U+200B nothing: printed raw.
        assert_eq!(
            shown("abc\u{202e}def\u{200b}".as_bytes(), usize::MAX).0,
            "abc\\xE2\\x80\\xAEdef\\xE2\\x80\\x8B"
        );
        // The text `x\xFF` and the bytes `x`, 0xFF printed alike; U+3164 printed raw.
        assert_eq!(shown(b"x\\xFF", usize::MAX).0, "x\\\\xFF");
        assert_eq!(shown(b"x\xff", usize::MAX).0, "x\\xFF");
        assert_eq!(
            shown("a\u{3164}\u{fe0f}".as_bytes(), usize::MAX).0,
            "a\\xE3\\x85\\xA4\\xEF\\xB8\\x8F"
        );
        // Cut between escapes and characters, never inside one.
        assert_eq!(shown(b"ab\xff\xfe", 5), ("ab".to_string(), false));
        assert_eq!(shown(b"ab\xff\xfe", 10), ("ab\\xFF\\xFE".to_string(), true));
        assert_eq!(shown("ééé".as_bytes(), 5), ("éé".to_string(), false));
        // An over-long stdin line and the text output show an id alike.
        let mut line = b"\xff\t".to_vec();
        line.resize(MAX_ID_BYTES + 1, b'x');
        let e = each_line(&line[..], |_| Ok(())).unwrap_err().to_string();
        let (start, _) = readable(&line, MAX_SHOWN_VALUE_BYTES);
        assert!(start.starts_with("\\xFF\\x09x"), "{start}");
        assert!(e.contains(&format!("= \"{start}\"...(more than")), "{e}");
    }

    #[test]
    fn stdin_lines_up_to_the_limit_are_read_and_a_longer_one_is_refused_by_number() {
        let id = |n: usize| "x".repeat(n);
        let input = format!("a\r\n\n{}\r\n{}\n", id(MAX_ID_BYTES), id(MAX_ID_BYTES + 1));
        let mut lengths = Vec::new();
        let e = each_line(input.as_bytes(), |id| {
            lengths.push(id.len());
            Ok(())
        })
        .unwrap_err()
        .to_string();
        assert_eq!(lengths, [1, MAX_ID_BYTES]);
        assert!(
            e.starts_with("stdin line 4: invalid request id = \"xxx"),
            "{e}"
        );
        assert!(
            e.ends_with(&format!(
                "...(more than {MAX_ID_BYTES} bytes): at most {MAX_ID_BYTES} bytes (MAX_ID_BYTES) a line"
            )),
            "{e}"
        );
        assert!(e.len() < 300, "{e}");
        // A last line without its newline is read too.
        let mut ids = Vec::new();
        each_line(&b"a\nb"[..], |id| {
            ids.push(id.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(ids, [b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn an_endless_line_is_refused_after_the_limit_not_held() {
        let mut zeros = Zeros(0);
        let e = each_line(io::BufReader::new(&mut zeros), |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("stdin line 1: invalid request id = \"\\x00"),
            "{e}"
        );
        // What was read: the limit, and at most one buffer more.
        assert!(zeros.0 <= MAX_ID_BYTES + 2 + 8 * 1024, "{}", zeros.0);
    }

    /// A reader that fails, as reading a directory does.
    struct Failing;

    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::IsADirectory))
        }
    }

    #[test]
    fn a_line_that_cannot_be_read_is_named_by_its_number() {
        // It was `input/output failed: Is a directory (os error 21)`: not stdin, not the line.
        let mut ids = Vec::new();
        let e = each_line(io::BufReader::new(b"a\n\nb".chain(Failing)), |id| {
            ids.push(id.to_vec());
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(e, CliError::Input(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "stdin line 3: cannot be read: is a directory"
        );
        assert_eq!(ids, [b"a".to_vec()]);
    }

    fn with_percent(percent: f64) -> RouteArgs {
        RouteArgs {
            config: None,
            gate: None,
            salt: None,
            percent: Some(percent),
            value: None,
            explain: false,
            json: false,
            ids: Vec::new(),
        }
    }

    #[test]
    fn percent_is_refused_exactly_when_the_library_refuses_it() {
        // Below, at and around the formula's resolution (0.00001 % is one bucket of 10^7),
        // and out of range.
        for percent in [
            1e-9,
            1e-6,
            4e-6,
            5e-6,
            1e-5,
            0.01,
            0.0,
            50.0,
            100.0,
            100.5,
            -1.0,
            f64::NAN,
        ] {
            let library = PromotionConfig {
                environment: Environment::Canary {
                    traffic_percent: percent,
                },
                ..Default::default()
            }
            .validate();
            let cli = config(&with_percent(percent));
            // Below half the resolution a share routes nobody: refused outright, naming the
            // field, the value and the resolution (whatever the library says).
            if percent > 0.0 && percent < TRAFFIC_PERCENT_RESOLUTION / 2.0 {
                let Err(CliError::Usage(message)) = &cli else {
                    panic!("{percent}: the CLI gave {cli:?}, not a refusal");
                };
                for part in [
                    format!("invalid --percent = {percent}: "),
                    format!("{TRAFFIC_PERCENT_RESOLUTION}"),
                ] {
                    assert!(message.contains(&part), "{percent}: {message}");
                }
            }
            match (cli, library) {
                (Ok(config), Ok(())) => assert_eq!(
                    config.environment,
                    Environment::Canary {
                        traffic_percent: percent
                    }
                ),
                (Err(CliError::Usage(message)), Err(e)) => {
                    assert_eq!(
                        message,
                        format!(
                            "invalid --percent = {}: {} (checked as the library checks \
                             environment.canary.traffic_percent)",
                            e.value(),
                            e.expected()
                        )
                    );
                }
                (cli, library) => {
                    panic!("{percent}: the CLI gave {cli:?}, the library {library:?}")
                }
            }
        }
    }
}
