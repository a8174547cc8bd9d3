//! `promotion-gates route`: the decision for each request id and why, with `--explain` the
//! formula's every step (salt, SHA-256 of the salt, digest prefix, bucket, threshold).

use clap::Args;
use promotion_gates::{
    BUCKETS, Environment, PromotionConfig, PromotionGateManager, RoutingDecision,
    SloAdmissionController, SloConfig, bucket::salt_block,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::io::{self, BufRead, Write};
use std::path::PathBuf;

use crate::document;
use crate::error::CliError;
use crate::flag::overriding;

/// Flags of `route`. A flag that overrides a field of the config file has its help (with its
/// default) written by [`overriding`].
#[derive(Debug, Args)]
pub struct RouteArgs {
    /// A PromotionConfig file (JSON or TOML), whose fields the flags below override [default:
    /// none, the library's PromotionConfig defaults]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[arg(long, help = overriding("The gate's name (the default salt)", PromotionConfig::default().gate))]
    gate: Option<String>,
    #[arg(long, help = overriding("The routing salt", "the gate's name"))]
    salt: Option<String>,
    #[arg(long, allow_negative_numbers = true, help = overriding(
        "Canary share of traffic, in percent (sets the environment to a canary; checked as the \
         library checks a config)",
        format!("none, the environment {}", PromotionConfig::default().environment),
    ))]
    percent: Option<f64>,
    /// Show each step of the formula.
    #[arg(long)]
    explain: bool,
    /// One JSON object per id, one per line.
    #[arg(long)]
    json: bool,
    /// Request ids; without any, ids are read from stdin, one per line (empty lines skipped).
    ids: Vec<OsString>,
}

/// One decision, as printed.
#[derive(Debug, Serialize)]
struct Routed {
    id: String,
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

/// The gate's config: the file's (checked on its own first), then the flags.
fn config(args: &RouteArgs) -> Result<PromotionConfig, CliError> {
    let mut config = match &args.config {
        Some(path) => {
            let config: PromotionConfig = document::load(path)?;
            config.validate().map_err(|e| CliError::Invalid {
                path: path.clone(),
                message: e.to_string(),
            })?;
            config
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
        .map_err(|e| CliError::Usage(format!("{e} (from the command-line flags)")))?;
    Ok(config)
}

/// Runs `route`.
pub fn run(args: &RouteArgs) -> Result<(), CliError> {
    let config = config(args)?;
    let salt = config.effective_salt().to_string();
    let slo =
        SloAdmissionController::new(SloConfig::default()).map_err(promotion_gates::Error::from)?;
    let gate = PromotionGateManager::new(config, slo)?;
    let block = salt_block(salt.as_bytes());
    let mut out = io::stdout().lock();
    if args.explain && !args.json {
        writeln!(out, "salt           {salt:?}")?;
        writeln!(
            out,
            "SHA-256(salt)  {}  (salt block = these 32 bytes, then 32 zero bytes)",
            hex(&block[..32])
        )?;
        writeln!(
            out,
            "bucket = floor(x * {BUCKETS} / 2^64), x = first 8 bytes of SHA-256(salt block || id), big-endian"
        )?;
        writeln!(
            out,
            "threshold = round(percent * 100000); canary when bucket < threshold\n"
        )?;
    }
    let mut each = |id: &[u8]| -> Result<(), CliError> {
        let decision = gate.route_request_bytes(id);
        let steps = if args.explain {
            Some(steps(&salt, &block, id, &decision)?)
        } else {
            None
        };
        let routed = Routed {
            id: String::from_utf8_lossy(id).into_owned(),
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
        };
        print(&mut out, &routed, args.json)
    };
    if args.ids.is_empty() {
        let mut line = Vec::new();
        let mut input = io::stdin().lock();
        while input.read_until(b'\n', &mut line)? > 0 {
            let id = line.strip_suffix(b"\n").unwrap_or(&line);
            let id = id.strip_suffix(b"\r").unwrap_or(id);
            if !id.is_empty() {
                each(id)?;
            }
            line.clear();
        }
    } else {
        for id in &args.ids {
            each(id.as_encoded_bytes())?;
        }
    }
    Ok(())
}

/// Recomputes the formula by hand and checks it against the engine's decision.
fn steps(
    salt: &str,
    block: &[u8; 64],
    id: &[u8],
    decision: &RoutingDecision<'_>,
) -> Result<Steps, CliError> {
    let digest = Sha256::new()
        .chain_update(block)
        .chain_update(id)
        .finalize();
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&digest[..8]);
    let x = u64::from_be_bytes(prefix);
    let bucket = ((u128::from(x) * u128::from(BUCKETS)) >> 64) as u32;
    if bucket != decision.reason.bucket().get() {
        return Err(CliError::Simulation(format!(
            "the formula gives bucket {bucket} for {:?} but the engine routed by bucket {}: \
             a bug, please report it",
            String::from_utf8_lossy(id),
            decision.reason.bucket().get()
        )));
    }
    Ok(Steps {
        salt: salt.to_string(),
        salt_sha256: hex(&block[..32]),
        digest_prefix: hex(&prefix),
        x,
    })
}

fn print(out: &mut impl Write, routed: &Routed, json: bool) -> Result<(), CliError> {
    if json {
        serde_json::to_writer(&mut *out, routed).map_err(io::Error::from)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "{}\t{}\t{}", routed.id, routed.cohort, routed.reason)?;
    if let Some(steps) = &routed.explain {
        writeln!(
            out,
            "  digest prefix {} -> x = {} -> bucket {} {} threshold {} -> {}",
            steps.digest_prefix,
            steps.x,
            routed.bucket,
            if routed.bucket < routed.threshold {
                "<"
            } else {
                ">="
            },
            routed.threshold,
            routed.cohort,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use promotion_gates::TRAFFIC_PERCENT_RESOLUTION;

    fn with_percent(percent: f64) -> RouteArgs {
        RouteArgs {
            config: None,
            gate: None,
            salt: None,
            percent: Some(percent),
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
                    format!("environment.traffic_percent = {percent}"),
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
                    assert_eq!(message, format!("{e} (from the command-line flags)"));
                }
                (cli, library) => {
                    panic!("{percent}: the CLI gave {cli:?}, the library {library:?}")
                }
            }
        }
    }
}
