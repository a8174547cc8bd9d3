//! `promotion-gates simulate`: a scenario, built in or from a file, run on the real engine;
//! the report as a table or JSON, and the timeline as an SVG.

use clap::Args;
use clap::builder::{OsStringValueParser, TypedValueParser};
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use crate::document;
use crate::error::{CliError, quoted_text, shown_path, shown_value, unless_closed};
use crate::flag::{overriding, text};
use crate::plot::{self, PlotFile};
use crate::progress::Progress;
use crate::report::{self, Outcome, Report, human_duration, sampling, thousands};
use crate::rollout;
use crate::scenario::{
    MAX_RPS, MAX_RUN_EVALUATIONS, MAX_RUN_REQUESTS, Scenario, ScenarioName, parse_duration,
};
use promotion_gates::shown_number;

/// Exit status of a simulation whose canary was rolled back.
pub const ROLLED_BACK: u8 = 3;
/// Exit status of a simulation that stalled: a promotion was refused more often than the
/// scenario allows, so the release was not in Production at the end.
pub const STALLED: u8 = 4;

/// The exit status of a simulation that ran, by how the rollout ended: 0 only when the release
/// reached Production, so a script can tell a rollback from a stall from success.
pub fn exit_status(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::PromotedToProduction => 0,
        Outcome::RolledBack => ROLLED_BACK,
        Outcome::Stalled => STALLED,
    }
}

/// The exit statuses, as `simulate --help` lists them.
pub fn exit_status_help() -> String {
    format!(
        "Exit status: 0 promoted to Production; {ROLLED_BACK} rolled back; {STALLED} stalled \
         (a promotion refused more often than the scenario allows: not in Production at the \
         end); 1 an error (unreadable or invalid file, engine refusal); 2 a bad flag. \
         --show-config exits 0. The report is printed whatever the outcome."
    )
}

/// Flags of `simulate`. A flag that overrides a scenario field has its help (with its default:
/// every built-in scenario has the default scenario's value) written by [`overriding`]. The
/// numeric flags take a value that starts with `-`, so that `--users -1` is refused by the
/// flag's own check, naming the flag and the value, not as an unexpected argument.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// A built-in scenario.
    #[arg(long, value_enum, default_value = "good", value_name = "NAME")]
    scenario: ScenarioName,
    /// A scenario file (JSON or TOML) instead of a built-in one; see docs/simulator.md.
    #[arg(long, value_name = "FILE", conflicts_with = "scenario")]
    config: Option<PathBuf>,
    #[arg(long, value_parser = text(seed_number), allow_negative_numbers = true, help = overriding(
        "Seed of the random number generator (the same seed gives the same run)",
        Scenario::default().seed,
    ))]
    seed: Option<u64>,
    #[arg(long, value_parser = text(request_rate), allow_negative_numbers = true, help = overriding(
        "Requests per simulated second",
        Scenario::default().rps,
    ))]
    rps: Option<f64>,
    #[arg(long, value_parser = text(parse_duration), value_name = "DURATION", allow_hyphen_values = true, help = overriding(
        "Planned length of the whole ramp in simulated time (e.g. 90s, 6m, 24h), shared among \
         the stages in proportion to their own lengths; extensions and incidents stretch \
         with it, bursts do not",
        as_duration_flag(Scenario::default().planned_seconds()),
    ))]
    duration: Option<f64>,
    #[arg(long, value_parser = text(count), value_name = "N", allow_negative_numbers = true, help = overriding(
        "Fast mode: simulate 1 request in N (the judge then sees rps/N; see docs/simulator.md)",
        Scenario::default().sample,
    ))]
    sample: Option<u64>,
    #[arg(long, value_parser = text(count), allow_negative_numbers = true, help = overriding(
        "Number of distinct users",
        Scenario::default().users,
    ))]
    users: Option<u64>,
    /// Print a machine-readable report (JSON) and nothing else on stdout.
    #[arg(long)]
    json: bool,
    /// Write the timeline as an SVG chart (the name must end in .svg; the path is checked
    /// before the simulation runs, and the file written only once the run has ended).
    #[arg(long, value_name = "FILE.svg", value_parser = OsStringValueParser::new().try_map(plot::svg_path))]
    plot: Option<PathBuf>,
    /// Print the scenario that would run, a valid scenario file (TOML, or JSON with --json),
    /// and stop; nothing is simulated, so --plot is refused with it.
    #[arg(long, conflicts_with = "plot")]
    show_config: bool,
}

/// `seconds` as `--duration` reads it: `6m` for 360, `90s` for 90.
fn as_duration_flag(seconds: f64) -> String {
    if seconds >= 60.0 && seconds % 60.0 == 0.0 {
        format!("{}m", seconds / 60.0)
    } else {
        format!("{seconds}s")
    }
}

/// `--seed`: a whole number from 0 to `u64::MAX`.
fn seed_number(text: &str) -> Result<u64, String> {
    let shown = quoted_text(text);
    text.parse()
        .map_err(|_| format!("{shown} is not a whole number from 0 to {}", u64::MAX))
}

/// `--sample`, `--users`: a whole number from 1 to `u64::MAX`.
fn count(text: &str) -> Result<u64, String> {
    match text.parse() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "{} is not a whole number from 1 to {}",
            quoted_text(text),
            u64::MAX
        )),
    }
}

/// `--rps`: above 0, at most [`MAX_RPS`].
fn request_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x <= MAX_RPS => Ok(x),
        Ok(x) if x > MAX_RPS => Err(format!(
            "{} is above {MAX_RPS}, the most rps",
            quoted_text(text)
        )),
        _ => Err(format!("{} is not a number above 0", quoted_text(text))),
    }
}

/// `--duration`: within the range the scenario can be scaled to ([`Scenario::duration_range`]),
/// a bad flag value (exit 2) naming the flag, not the scenario field the scaling would break.
fn check_duration(scenario: &Scenario, total: f64) -> Result<(), CliError> {
    let (least, most) = scenario.duration_range();
    if (least..=most).contains(&total) {
        return Ok(());
    }
    Err(CliError::Usage(format!(
        "invalid --duration = {} s: from {} s to {} s for this scenario (its shortest stage, \
         extension_s and each incident's length_s at least one 10 ms tick; each incident's \
         after_s and length_s, and its longest run, every stage extended max_extensions times, \
         within 365 days; that run within {MAX_RUN_REQUESTS} requests and \
         {MAX_RUN_EVALUATIONS} evaluations)",
        shown_number(total),
        // Rounded inwards, to a millisecond, so both ends are accepted.
        shown_number((least * 1e3).ceil() / 1e3),
        shown_number((most * 1e3).floor() / 1e3),
    )))
}

/// `--show-config`: the scenario as a scenario file, JSON with `--json` (which promises only
/// JSON on stdout), TOML otherwise.
fn show_config(out: &mut impl Write, scenario: &Scenario, json: bool) -> Result<(), CliError> {
    if json {
        serde_json::to_writer_pretty(&mut *out, scenario).map_err(io::Error::from)?;
        writeln!(out)?;
    } else {
        let text = toml::to_string_pretty(scenario)
            .map_err(|e| CliError::Simulation(format!("cannot write the scenario as TOML: {e}")))?;
        out.write_all(text.as_bytes())?;
    }
    Ok(())
}

/// `--rps`, `--sample`: the requests they send through the engine over the scenario's longest
/// run ([`Scenario::most_engine_rate`]), a bad flag value (exit 2) naming the flag, not the
/// file's `rps` or `slo.evaluation_interval_ms`. Without either flag, or when the file's
/// stages alone are too long, the file is at fault and its own validation says so.
fn check_rate_flags(scenario: &Scenario, args: &SimulateArgs) -> Result<(), CliError> {
    let Err(refusal) = scenario.validate_run_size() else {
        return Ok(());
    };
    if !matches!(refusal.field(), "rps" | "slo.evaluation_interval_ms") {
        return Ok(());
    }
    let (most, why) = scenario.most_engine_rate();
    let run = format!(
        "over the longest run of {} s of this scenario (the stages, each extended \
         max_extensions times): {why}",
        shown_number(scenario.longest_seconds())
    );
    let sample = scenario.sample;
    match (args.rps, args.sample) {
        (Some(rps), _) => Err(CliError::Usage(format!(
            "invalid --rps = {}: at most {} with sample = {sample} {run} (lower --rps or raise \
             --sample)",
            shown_number(rps),
            shown_number((most * sample as f64).floor()),
        ))),
        (None, Some(_)) => Err(CliError::Usage(format!(
            "invalid --sample = {sample}: at least {} with rps = {} {run} (raise --sample)",
            shown_number((scenario.rps / most).ceil()),
            shown_number(scenario.rps),
        ))),
        (None, None) => Ok(()),
    }
}

/// The scenario that runs: the file's or the built-in one, the flags' values in it, scaled to
/// `--duration`, and valid. A flag value that cannot run is a bad flag (exit 2) naming the
/// flag; a field of the file that cannot run is the file's error (exit 1) naming the field.
fn runnable_scenario(args: &SimulateArgs) -> Result<Scenario, CliError> {
    let (mut scenario, source) = match &args.config {
        Some(path) => (document::load::<Scenario>(path)?, path.clone()),
        None => (
            Scenario::builtin(args.scenario),
            PathBuf::from(format!("built-in scenario {}", args.scenario.as_str())),
        ),
    };
    scenario.seed = args.seed.unwrap_or(scenario.seed);
    scenario.rps = args.rps.unwrap_or(scenario.rps);
    scenario.sample = args.sample.unwrap_or(scenario.sample);
    scenario.users = args.users.unwrap_or(scenario.users);
    let invalid = |message: String| CliError::Invalid {
        path: source.clone(),
        message,
    };
    // The fields as given first, so that an error names the value written (the flags' own
    // parsers hold them to these fields' limits); then the scenario that runs, whose lengths
    // `--duration` may have changed.
    scenario
        .validate_fields()
        .map_err(|e| invalid(e.to_string()))?;
    if let Some(total) = args.duration {
        // No --duration fits a scenario that cannot be scaled at all (its shortest stage needs
        // more than its runs allow): the scenario is at fault, as it is written, unless --rps
        // or --sample is (checked at its own length).
        let (least, most) = scenario.duration_range();
        if least > most {
            check_rate_flags(&scenario, args)?;
            scenario.validate().map_err(|e| invalid(e.to_string()))?;
        }
        check_duration(&scenario, total)?;
        scenario.scale_to(total);
    } else {
        check_rate_flags(&scenario, args)?;
    }
    scenario.validate().map_err(|e| match args.duration {
        Some(total) => invalid(format!(
            "{e} (the scenario as --duration scales it to {total} s planned)"
        )),
        None => invalid(e.to_string()),
    })?;
    Ok(scenario)
}

/// Runs `simulate`; returns the exit status ([`exit_status`] of the outcome).
pub fn run(args: &SimulateArgs) -> Result<u8, CliError> {
    let scenario = runnable_scenario(args)?;
    let mut out = io::stdout().lock();
    if args.show_config {
        show_config(&mut out, &scenario, args.json)?;
        return Ok(0);
    }
    // Checked now, written once the run has ended: nothing is made at the path before then.
    let plot = args.plot.as_deref().map(PlotFile::check).transpose()?;
    let terminal = io::stdout().is_terminal();
    if !args.json {
        unless_closed(write_header(&mut out, &scenario))?;
    }
    drop(out);
    let progress = Progress::new(
        scenario.planned_seconds(),
        terminal && !args.json,
        !args.json,
    );
    let report = rollout::run(&scenario, &progress)?;
    // The report first: a plot that cannot be written does not cost it. Where the plot went
    // is said once it is written.
    let mut out = io::stdout().lock();
    let mut printed = unless_closed(write_report(&mut out, args.json, &report));
    if let (Some(plot), Some(path)) = (plot, &args.plot) {
        plot.write(&report)?;
        if !args.json && printed.is_ok() {
            printed = unless_closed(writeln!(out, "Timeline written to {}.", shown_path(path)));
        }
    }
    printed?;
    Ok(exit_status(report.outcome))
}

/// The lines printed before the simulation runs: the scenario and its size.
fn write_header(out: &mut impl Write, scenario: &Scenario) -> io::Result<()> {
    writeln!(
        out,
        "Scenario {}: {}\n{} rps{}, {} users, {} stages over {} planned, seed {}.",
        scenario.name,
        scenario.description,
        shown_value(scenario.rps),
        sampling(scenario.sample),
        thousands(scenario.users),
        scenario.stages.len(),
        human_duration(scenario.planned_seconds()),
        scenario.seed,
    )
}

/// The report, as JSON with `--json`, else as the table.
fn write_report(out: &mut impl Write, json: bool, report: &Report) -> io::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, report)?;
        writeln!(out)
    } else {
        report::write_text(&mut *out, report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::ScenarioName;

    #[test]
    fn every_builtin_has_the_defaults_the_help_shows() {
        use clap::ValueEnum;
        let default = Scenario::default();
        for name in ScenarioName::value_variants() {
            let builtin = Scenario::builtin(*name);
            assert_eq!(
                (
                    builtin.seed,
                    builtin.rps,
                    builtin.sample,
                    builtin.users,
                    builtin.planned_seconds()
                ),
                (
                    default.seed,
                    default.rps,
                    default.sample,
                    default.users,
                    default.planned_seconds()
                ),
                "{}",
                name.as_str()
            );
        }
        assert_eq!(as_duration_flag(360.0), "6m");
        assert_eq!(as_duration_flag(90.0), "90s");
        assert_eq!(parse_duration(&as_duration_flag(90.0)), Ok(90.0));
    }

    #[test]
    fn each_outcome_has_its_own_documented_status() {
        let outcomes = [
            Outcome::PromotedToProduction,
            Outcome::RolledBack,
            Outcome::Stalled,
        ];
        let statuses = outcomes.map(exit_status);
        assert_eq!(statuses[0], 0);
        // Distinct, and clear of 1 (an error) and 2 (a bad flag).
        assert!(statuses[1..].iter().all(|s| *s > 2));
        assert_ne!(statuses[1], statuses[2]);
        let help = exit_status_help();
        assert!(
            help.contains(&format!("{} rolled back", statuses[1])),
            "{help}"
        );
        assert!(help.contains(&format!("{} stalled", statuses[2])), "{help}");
    }
}
