//! `promotion-gates validate`: checks a config file and says what is wrong, naming the field.
//!
//! The library's `validate()` stops at the first invalid value, and serde at the first unknown
//! field, so each file gets at most one error: fix it and run again.

use clap::{Args, ValueEnum};
use promotion_gates::{PromotionConfig, SloConfig, shown_millis};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::document::{self, Written};
use crate::error::{CliError, shown_path, shown_value, unless_closed};
use crate::scenario::Scenario;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// A PromotionConfig (the gate's config).
    Promotion,
    /// An SloConfig (the judge's policy).
    Slo,
    /// A `simulate` scenario.
    Scenario,
}

/// Flags of `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The file to check, JSON or TOML: by its extension, `.json` or `.toml`; without one
    /// (/dev/stdin, <(...)) JSON if its text starts with `{`, or with `[` and is all JSON (an
    /// array, refused as one), TOML otherwise (a table header such as `[promotion]`).
    file: PathBuf,
    /// What the file holds.
    #[arg(long, value_enum, default_value = "promotion")]
    kind: Kind,
    /// Also check this SloConfig file, alone and for the gate of the PromotionConfig FILE
    /// (only with --kind promotion, the default).
    #[arg(long, value_name = "FILE")]
    slo: Option<PathBuf>,
}

impl ValidateArgs {
    /// The refusal of `--slo` with a `--kind` other than `promotion`, where it would be checked
    /// alone, for no gate (a clap conflict: exit 2). Clap's `conflicts_with` cannot say it: it
    /// would refuse `--kind promotion` too.
    pub fn slo_conflict(&self) -> Option<String> {
        let kind = match (self.kind, &self.slo) {
            (Kind::Promotion, _) | (_, None) => return None,
            (Kind::Slo, Some(_)) => "slo",
            (Kind::Scenario, Some(_)) => "scenario",
        };
        Some(format!(
            "the argument '--slo <FILE>' cannot be used with '--kind {kind}': --slo pairs an \
             SloConfig file with the PromotionConfig FILE (--kind promotion, the default)"
        ))
    }
}

/// A file read as its kind: each file is read once, so that a pipe, `/dev/stdin` or a file
/// changed meanwhile is judged as the one text read.
enum Loaded {
    Promotion(PromotionConfig, Written),
    Slo(SloConfig, Written),
    Scenario(Box<Scenario>, Written),
}

/// Reads the file at `path` as a `kind`, keeping the document as written, so that a refused
/// number is shown as the file writes it ([`Written`]).
fn load(path: &Path, kind: Kind) -> Result<Loaded, CliError> {
    Ok(match kind {
        Kind::Promotion => {
            let (config, written) = document::load_written(path)?;
            Loaded::Promotion(config, written)
        }
        Kind::Slo => {
            let (slo, written) = document::load_written(path)?;
            Loaded::Slo(slo, written)
        }
        Kind::Scenario => {
            let (scenario, written) = document::load_written(path)?;
            Loaded::Scenario(Box::new(scenario), written)
        }
    })
}

/// Runs `validate`: exit status 0 when every file is valid, 1 otherwise. Each verdict is
/// printed as found; each file is read once.
pub fn run(args: &ValidateArgs) -> Result<u8, CliError> {
    let mut all_valid = true;
    // The config file, read and checked alone; without --slo, a PromotionConfig is checked for
    // a gate of the default SLO (as a host opening it without an SLO document makes).
    let file = args.file.as_path();
    let checked = load(file, args.kind).and_then(|loaded| {
        let summary = check(file, &loaded)?;
        if let Loaded::Promotion(config, _) = &loaded
            && args.slo.is_none()
        {
            check_default_slo(file, config)?;
        }
        Ok((summary, loaded))
    });
    let config = match report(file, checked)? {
        Some(Loaded::Promotion(config, _)) => Some(config),
        Some(_) => None,
        None => {
            all_valid = false;
            None
        }
    };
    if let Some(slo) = &args.slo {
        // The SLO file, valid alone, for the valid config file's gate: its interval against
        // the window.
        let checked = load(slo, Kind::Slo).and_then(|loaded| {
            let summary = check(slo, &loaded)?;
            if let (Loaded::Slo(policy, written), Some(config)) = (&loaded, &config) {
                check_pair(file, config, slo, policy, written)?;
            }
            Ok((summary, loaded))
        });
        if report(slo, checked)?.is_none() {
            all_valid = false;
        }
    }
    Ok(if all_valid { 0 } else { 1 })
}

/// Prints the verdict on the file at `path`: `ok: PATH: SUMMARY` on stdout, or the error on
/// stderr; returns the file read when it is valid, `None` when it is not. An error other than
/// an invalid file (a failed write) is returned.
fn report(
    path: &Path,
    checked: Result<(String, Loaded), CliError>,
) -> Result<Option<Loaded>, CliError> {
    match checked {
        Ok((summary, loaded)) => {
            unless_closed(writeln!(
                io::stdout().lock(),
                "ok: {}: {summary}",
                shown_path(path)
            ))?;
            Ok(Some(loaded))
        }
        Err(error @ (CliError::Parse { .. } | CliError::Invalid { .. })) => {
            let _ = writeln!(
                io::stderr().lock(),
                "error: {error} (the first error found: fix it and run again)"
            );
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// Checks the SloConfig `policy` read from `slo` (as `written`) for the gate of the
/// PromotionConfig `config` read from `promotion`, both valid alone
/// ([`SloConfig::validate_for`]: `evaluation_interval_ms` at most a tenth of
/// `rollback_window_seconds`); the refusal is the SLO file's.
fn check_pair(
    promotion: &Path,
    config: &PromotionConfig,
    slo: &Path,
    policy: &SloConfig,
    written: &Written,
) -> Result<(), CliError> {
    policy.validate_for(config).map_err(|e| CliError::Invalid {
        path: slo.to_path_buf(),
        message: format!(
            "{} (for the gate of {})",
            written.config_error(e),
            shown_path(promotion)
        ),
    })
}

/// Checks the default SloConfig for the gate of the valid PromotionConfig `config` read from
/// `promotion` ([`SloConfig::validate_for`]), as a gate opened without an SLO document checks
/// it; the refusal is the config file's.
fn check_default_slo(promotion: &Path, config: &PromotionConfig) -> Result<(), CliError> {
    SloConfig::default()
        .validate_for(config)
        .map_err(|e| CliError::Invalid {
            path: promotion.to_path_buf(),
            message: format!(
                "{e} (for the default SLO, which a gate opened without an SLO document has: \
                 pass the gate's SLO file with --slo)"
            ),
        })
}

/// Checks one file, read from `path`; returns a one-line summary of a valid one. A refused
/// number is shown as the file writes it.
fn check(path: &Path, loaded: &Loaded) -> Result<String, CliError> {
    let invalid = |message: String| CliError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    match loaded {
        Loaded::Promotion(config, written) => {
            config
                .validate()
                .map_err(|e| invalid(written.config_error(e).to_string()))?;
            Ok(format!(
                "a valid PromotionConfig: gate {}, salt {:?}, environment {}, {} feature flag(s), \
                 slo_threshold {}, window {} s, auto rollback {}",
                config.gate,
                config.effective_salt(),
                config.environment,
                config.feature_flags.len(),
                read_number(config.slo_threshold),
                config.rollback_window_seconds,
                if config.auto_rollback_enabled {
                    "on"
                } else {
                    "off"
                },
            ))
        }
        Loaded::Slo(slo, written) => {
            slo.validate()
                .map_err(|e| invalid(written.config_error(e).to_string()))?;
            Ok(format!(
                "a valid SloConfig: latency target {} ms, max error rate {}, min samples {}, \
                 significance {}",
                shown_millis(slo.latency_target),
                read_number(slo.max_error_rate),
                slo.min_samples,
                read_number(slo.significance),
            ))
        }
        Loaded::Scenario(scenario, written) => {
            scenario
                .validate()
                .map_err(|e| invalid(e.as_written(written).to_string()))?;
            Ok(format!(
                "a valid scenario: {} stages, {} rps, seed {}",
                scenario.stages.len(),
                read_number(scenario.rps),
                scenario.seed
            ))
        }
    }
}

/// A number of a valid file as its summary writes it: as read ([`shown_value`]), and a zero
/// written `-0.0` as `0`. `-0.0` is a zero: every check takes it as 0 (accepted where 0 is,
/// refused where 0 is, the refusal showing it as written) and so does the judge, and the
/// library writes a canary share of `-0.0` as `Canary{0}`; the summary said `-0`.
fn read_number(value: f64) -> String {
    // -0.0 + 0.0 is 0.0; any other value is unchanged.
    shown_value(value + 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_writes_its_numbers_short() {
        // 5e-324 was written with about 330 digits.
        let path = std::env::temp_dir().join(format!("pg-summary-{}.json", std::process::id()));
        std::fs::write(&path, r#"{"max_error_rate": 5e-324, "significance": 1e-300, "overwhelming_significance": 1e-300}"#).unwrap();
        let summary = load(&path, Kind::Slo).and_then(|loaded| check(&path, &loaded));
        std::fs::write(&path, r#"{"slo_threshold": 1e-300}"#).unwrap();
        let promotion = load(&path, Kind::Promotion).and_then(|loaded| check(&path, &loaded));
        std::fs::remove_file(&path).unwrap();
        let summary = summary.unwrap();
        assert!(
            summary.ends_with("max error rate 5e-324, min samples 100, significance 1e-300"),
            "{summary}"
        );
        let promotion = promotion.unwrap();
        assert!(promotion.contains("slo_threshold 1e-300,"), "{promotion}");
    }

    #[test]
    fn a_huge_number_is_written_short() {
        let path = std::env::temp_dir().join(format!("pg-validate-{}.toml", std::process::id()));
        std::fs::write(&path, "rps = 1e300\n").unwrap();
        let checked = load(&path, Kind::Scenario).and_then(|loaded| check(&path, &loaded));
        std::fs::remove_file(&path).unwrap();
        let refused = checked.unwrap_err().to_string();
        assert!(refused.contains("rps = 1e300"), "{refused}");
    }
}
