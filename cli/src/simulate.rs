//! `promotion-gates simulate`: a scenario, built in or from a file, run on the real engine;
//! the report as a table or JSON, and the timeline as an SVG.

use clap::Args;
use clap::builder::{OsStringValueParser, TypedValueParser};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use crate::document::{self, Written};
use crate::error::{CliError, quoted_text, shown_path, shown_value, unless_closed};
use crate::flag::{finite_number, overriding, text};
use crate::plot::{self, PlotFile};
use crate::progress::Progress;
use crate::report::{self, Outcome, Report, human_duration, sampling, thousands};
use crate::rollout;
use crate::scenario::{
    FieldError, MAX_RPS, MAX_RUN_EVALUATIONS, MAX_RUN_REQUESTS, Scenario, ScenarioName,
    parse_duration,
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
        "Requests per simulated second (the shortest stage must expect one request: rps / sample \
         × its length at least 1)",
        Scenario::default().rps,
    ))]
    rps: Option<f64>,
    #[arg(long, value_parser = text(parse_duration), value_name = "DURATION", allow_hyphen_values = true, help = overriding(
        "Planned length of the whole ramp in simulated time (e.g. 90s, 6m, 24h; units ms, s, m \
         or min, h, d; a bare number is seconds), shared among \
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
    /// Write the timeline as an SVG chart (the name must end in .svg, and not be the --config
    /// file's; the path is checked before the simulation runs, and the file written only once
    /// the run has ended).
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

/// `--rps`: a number ([`finite_number`]: `inf`, `NaN` and `1e-400` refused as such) above 0,
/// at most [`MAX_RPS`].
fn request_rate(text: &str) -> Result<f64, String> {
    match finite_number(text)? {
        x if x > MAX_RPS => Err(format!(
            "{} is above {MAX_RPS}, the most rps",
            quoted_text(text)
        )),
        x if x > 0.0 => Ok(x),
        _ => Err(format!("{} is not a number above 0", quoted_text(text))),
    }
}

/// How far outside [`Scenario::duration_range`] a `--duration` may be and still be taken, as
/// the end it is beyond, in parts of that end: a billionth. The refusal states the range to
/// the millisecond, and a value written in other units (`110ms`, `1.5m`) reads within an ulp
/// or two of its decimal, so a stated end written so may fall just outside it.
const DURATION_SLACK: f64 = 1e-9;

/// The range `--duration` takes for `scenario`, as its refusal states it: the accepted range,
/// the ends of [`Scenario::duration_range`] widened by [`DURATION_SLACK`], rounded inwards to a
/// millisecond. So each end stated is accepted, and the millisecond just beyond it is refused:
/// the `good` scenario's least, 360 × 0.01 / 30 s, computes as 0.12000000000000001 s, and
/// rounded up on its own it was stated as 0.121 s while 0.12 s ran (as, for a least up to a
/// billionth past a millisecond, would a margin narrower than the slack); its most,
/// 1 666 666.6666666667 s, is stated as 1 666 666.668 s, the last millisecond taken as it.
fn stated_duration_range(scenario: &Scenario) -> (f64, f64) {
    let (least, most) = scenario.duration_range();
    let (low, high) = (
        least * (1.0 - DURATION_SLACK),
        most * (1.0 + DURATION_SLACK),
    );
    // A millisecond whose division by 1000 rounds past the end moves one more inwards.
    let mut from = (low * 1e3).ceil() / 1e3;
    if from < low {
        from = ((low * 1e3).ceil() + 1.0) / 1e3;
    }
    let mut to = (high * 1e3).floor() / 1e3;
    if to > high {
        to = ((high * 1e3).floor() - 1.0) / 1e3;
    }
    (from, to)
}

/// `--duration`: within the range the scenario can be scaled to ([`Scenario::duration_range`]),
/// a bad flag value (exit 2) naming the flag, not the scenario field the scaling would break.
/// Returns the total to scale to: `total`, or the end of the range it is within
/// [`DURATION_SLACK`] of.
fn check_duration(scenario: &Scenario, total: f64) -> Result<f64, CliError> {
    let (least, most) = scenario.duration_range();
    let within = (least * (1.0 - DURATION_SLACK)..=most * (1.0 + DURATION_SLACK)).contains(&total);
    if least <= most && within {
        return Ok(total.clamp(least, most));
    }
    let (from, to) = stated_duration_range(scenario);
    Err(CliError::Usage(format!(
        "invalid --duration = {} s: from {} s to {} s for this scenario (its shortest stage, \
         extension_s and each incident's length_s at least one 10 ms tick; its shortest stage \
         at least one request, rps / sample × its duration_s; extension_s, each \
         incident's after_s and length_s, and its longest run, every stage extended \
         max_extensions times, within 365 days; that run within {MAX_RUN_REQUESTS} requests \
         and {MAX_RUN_EVALUATIONS} evaluations)",
        shown_number(total),
        shown_number(from),
        shown_number(to),
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
    check_least_rate_flags(scenario, args)?;
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

/// `--rps`, `--sample`: at least one request expected in the scenario's shortest stage
/// ([`Scenario::validate_least_requests`]), a bad flag value (exit 2) naming the flag. Without
/// either flag, or when the file's `rps` is too low even at `sample = 1`, the file is at fault
/// and its own validation says so.
fn check_least_rate_flags(scenario: &Scenario, args: &SimulateArgs) -> Result<(), CliError> {
    if scenario.validate_least_requests().is_ok() {
        return Ok(());
    }
    let shortest = scenario.shortest_stage_seconds();
    let why = format!(
        "the shortest stage of this scenario, {} s, expects rps / sample × its duration_s \
         requests, and with fewer than one a run may send none and stall with nothing judged",
        shown_number(shortest)
    );
    let sample = scenario.sample;
    match (args.rps, args.sample) {
        (Some(rps), _) => Err(CliError::Usage(format!(
            "invalid --rps = {}: at least {} with sample = {sample}: {why} (raise --rps or \
             lower --sample)",
            shown_number(rps),
            shown_number(scenario.least_rps()),
        ))),
        // The same product as the check's, so that the most stated is taken.
        (None, Some(_)) if scenario.rps * shortest >= 1.0 => Err(CliError::Usage(format!(
            "invalid --sample = {sample}: at most {} with rps = {}: {why} (lower --sample)",
            shown_number((scenario.rps * shortest).floor()),
            shown_number(scenario.rps),
        ))),
        _ => Ok(()),
    }
}

/// The scenario that runs: the file's or the built-in one, the flags' values in it, scaled to
/// `--duration`, and valid. A flag value that cannot run is a bad flag (exit 2) naming the
/// flag; a field of the file that cannot run is the file's error (exit 1) naming the field.
fn runnable_scenario(args: &SimulateArgs) -> Result<Scenario, CliError> {
    let (scenario, source, written) = match &args.config {
        Some(path) => {
            let (scenario, written) = document::load_written::<Scenario>(path)?;
            (scenario, path.clone(), Some(written))
        }
        None => (
            Scenario::builtin(args.scenario),
            PathBuf::from(format!("built-in scenario {}", args.scenario.as_str())),
            None,
        ),
    };
    with_flags(scenario, &source, written.as_ref(), args)
}

/// `error`, a refusal of the scenario read from `written` with the flags' values in it (not
/// yet scaled), showing the number the file writes at its field ([`FieldError::as_written`]),
/// unless a flag gave that field its value.
fn as_written(error: FieldError, written: Option<&Written>, args: &SimulateArgs) -> FieldError {
    let by_flag = match error.field() {
        "seed" => args.seed.is_some(),
        "rps" => args.rps.is_some(),
        "sample" => args.sample.is_some(),
        "users" => args.users.is_some(),
        _ => false,
    };
    match written {
        Some(written) if !by_flag => error.as_written(written),
        _ => error,
    }
}

/// `scenario`, read from `source` (as `written`, for a file), with the flags' values in it,
/// scaled to `--duration` and checked (see [`runnable_scenario`]).
fn with_flags(
    mut scenario: Scenario,
    source: &Path,
    written: Option<&Written>,
    args: &SimulateArgs,
) -> Result<Scenario, CliError> {
    scenario.seed = args.seed.unwrap_or(scenario.seed);
    scenario.rps = args.rps.unwrap_or(scenario.rps);
    scenario.sample = args.sample.unwrap_or(scenario.sample);
    scenario.users = args.users.unwrap_or(scenario.users);
    let invalid = |message: String| CliError::Invalid {
        path: source.to_path_buf(),
        message,
    };
    // The fields as given first, so that an error names the value written (the flags' own
    // parsers hold them to these fields' limits); then the scenario that runs, whose lengths
    // `--duration` may have changed.
    scenario
        .validate_fields()
        .map_err(|e| invalid(as_written(e, written, args).to_string()))?;
    if let Some(total) = args.duration {
        // No --duration fits a scenario that cannot be scaled at all (its shortest stage needs
        // more than its runs allow): the scenario is at fault, as it is written, unless --rps
        // or --sample is (checked at its own length).
        let (least, most) = scenario.duration_range();
        if least > most {
            check_rate_flags(&scenario, args)?;
            scenario
                .validate()
                .map_err(|e| invalid(as_written(e, written, args).to_string()))?;
        }
        let total = check_duration(&scenario, total)?;
        scenario.scale_to(total);
    } else {
        check_rate_flags(&scenario, args)?;
    }
    scenario.validate().map_err(|e| match args.duration {
        Some(total) => invalid(format!(
            "{e} (the scenario as --duration scales it to {total} s planned)"
        )),
        None => invalid(as_written(e, written, args).to_string()),
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
    let plot = args
        .plot
        .as_deref()
        .map(|path| PlotFile::check(path, args.config.as_deref()))
        .transpose()?;
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
    // The report first: a plot that cannot be written does not cost it, and a report that
    // cannot be written (a full disk) fails the run before the plot is made. Where the plot
    // went is said once it is written.
    let mut out = io::stdout().lock();
    unless_closed(write_report(&mut out, args.json, &report).and_then(|()| out.flush()))?;
    if let (Some(plot), Some(path)) = (plot, &args.plot) {
        plot.write(&report)?;
        if !args.json {
            unless_closed(writeln!(out, "Timeline written to {}.", shown_path(path)))?;
        }
    }
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
    use crate::scenario::{
        Incident, MAX_EXTENSIONS, MAX_RUN_S, MIN_EXTENSION_S, ScenarioName, StageKind, StageSpec,
    };
    use proptest::prelude::*;

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

    /// `simulate` flags with `--duration total` and nothing else set.
    fn with_duration(total: f64) -> SimulateArgs {
        SimulateArgs {
            scenario: ScenarioName::Good,
            config: None,
            seed: None,
            rps: None,
            duration: Some(total),
            sample: None,
            users: None,
            json: false,
            plot: None,
            show_config: false,
        }
    }

    /// `scenario` as `simulate --duration total` runs it.
    fn scaled(scenario: &Scenario, total: f64) -> Result<Scenario, CliError> {
        with_flags(
            scenario.clone(),
            Path::new("s.json"),
            None,
            &with_duration(total),
        )
    }

    /// The scenario file read from `json`.
    fn scenario_file(json: &str) -> Scenario {
        document::parse(Path::new("s.json"), json).unwrap()
    }

    #[test]
    fn a_duration_that_stretches_extension_s_past_the_longest_run_is_a_bad_flag() {
        // Stated "to 5000000 s", --duration 346896s made extension_s 94608000 s (never used:
        // max_extensions = 0) and was the file's error, exit 1.
        let file = scenario_file(
            r#"{"stages":[{"traffic_percent":1,"duration_s":0.01},
                {"traffic_percent":2,"duration_s":0.1}],"max_extensions":0,"extension_s":30}"#,
        );
        let Err(CliError::Usage(e)) = scaled(&file, 346_896.0) else {
            panic!("346896 s was taken");
        };
        assert!(
            e.starts_with("invalid --duration = 346896 s: from 0.11 s to 115632 s for this"),
            "{e}"
        );
        let (_, most) = stated_duration_range(&file);
        let run = scaled(&file, most).unwrap();
        assert_eq!(run.extension_s, MAX_RUN_S);
    }

    #[test]
    fn the_stated_least_duration_is_the_least_accepted_to_the_millisecond() {
        // good's least is 360 × 0.01 / 30 = 0.12000000000000001 s: rounded up to the
        // millisecond on its own, it was stated as 0.121 s, refusing 0.1199 s that way while
        // 0.12 s ran.
        let good = Scenario::builtin(ScenarioName::Good);
        let (from, to) = stated_duration_range(&good);
        assert_eq!(from, 0.12);
        for written in ["0.12", "120ms", "0.002m"] {
            let total = parse_duration(written).unwrap();
            assert!(scaled(&good, total).is_ok(), "{written}");
        }
        let Err(CliError::Usage(e)) = scaled(&good, 0.1199) else {
            panic!("0.1199 s was taken");
        };
        assert!(
            e.starts_with(&format!(
                "invalid --duration = 0.1199 s: from 0.12 s to {} s for this scenario",
                shown_number(to)
            )),
            "{e}"
        );
        assert!(scaled(&good, from - 0.001).is_err());
        // The other end, 1 666 666.6666666667 s, taken within a billionth: 1 666 666.668 s
        // runs (as the most), and was stated as 1 666 666.666 s; the next millisecond not.
        assert_eq!(to, 1_666_666.668);
        assert!(scaled(&good, to).is_ok());
        assert!(scaled(&good, to + 0.001).is_err());
    }

    #[test]
    fn a_least_a_billionth_past_a_millisecond_is_stated_as_that_millisecond() {
        // planned 12.000000001 s: least 0.12000000001 s, which a trillionth's margin stated
        // as 0.121 s, though 0.12 s is within the slack and runs.
        let file = scenario_file(
            r#"{"stages":[{"traffic_percent":1,"duration_s":1.0},
                {"traffic_percent":5,"duration_s":11.000000001}]}"#,
        );
        let (from, _) = stated_duration_range(&file);
        assert_eq!(from, 0.12);
        assert!(scaled(&file, from).is_ok());
        assert!(scaled(&file, from - 0.001).is_err());
    }

    #[test]
    fn a_duration_at_the_longest_run_is_taken_whatever_scaling_rounds() {
        // 365d was in the stated range, then the scaled stages summed to 31536000.000000004 s,
        // over the longest run: the file's error, exit 1.
        let file = scenario_file(
            r#"{"rps":10,"max_extensions":0,"extension_s":0.01,"stages":[
                {"traffic_percent":1,"duration_s":60},{"traffic_percent":2,"duration_s":0.01},
                {"traffic_percent":3,"duration_s":2592000}]}"#,
        );
        let run = scaled(&file, parse_duration("365d").unwrap()).unwrap();
        assert!(run.planned_seconds() <= MAX_RUN_S);
        assert!(MAX_RUN_S - run.planned_seconds() < 1e-6);
    }

    /// A length from 10 ms to 10^7 s, log-uniform, or one of the ends tests like.
    fn length() -> impl Strategy<Value = f64> {
        prop_oneof![
            (-2.0f64..7.0).prop_map(|e| 10f64.powf(e)),
            Just(0.01),
            Just(60.0),
            Just(2_592_000.0),
        ]
    }

    /// Canary stages of `lengths`, at 1 %, 2 %, 3 % and on.
    fn canary_ramp(lengths: &[f64]) -> Vec<StageSpec> {
        lengths
            .iter()
            .enumerate()
            .map(|(i, &duration_s)| StageSpec {
                environment: StageKind::Canary,
                traffic_percent: Some(i as f64 + 1.0),
                duration_s,
            })
            .collect()
    }

    prop_compose! {
        /// A scenario as a file may write it: its run need not fit as written, as long as some
        /// --duration makes it fit.
        fn scenario()(
            lengths in prop::collection::vec(length(), 1..8),
            extension_s in length(),
            max_extensions in prop_oneof![Just(0u32), 0u32..=4, Just(MAX_EXTENSIONS)],
            // Requests through the engine a second (rps / sample), from 10 to 10^4: a ramp of a
            // 10 ms stage among ones of 10^7 s fits a --duration only in a band of rates (its
            // shortest stage expecting a request, its longest run within the limits), and more
            // of these ramps fit one in that range than at lower or higher rates.
            rate in (1.0f64..4.0).prop_map(|e| 10f64.powf(e)),
            sample in prop_oneof![Just(1u64), 1u64..1000],
            interval_ms in prop_oneof![Just(1u64), Just(10), Just(1000), Just(3_600_000)],
            incident in proptest::option::of((0usize..8, prop_oneof![Just(0.0), Just(1.0), 0.0f64..1.0], proptest::option::of(length()))),
        ) -> Scenario {
            let mut scenario = Scenario {
                stages: canary_ramp(&lengths),
                extension_s,
                max_extensions,
                rps: (rate * sample as f64).min(crate::scenario::MAX_RPS),
                sample,
                ..Scenario::default()
            };
            scenario.slo.evaluation_interval = std::time::Duration::from_millis(interval_ms);
            // A window of at least ten intervals, as a gate needs (300 s, the default, or 10 h).
            scenario.promotion.rollback_window_seconds = (interval_ms / 100).max(300);
            if let Some((stage, at, length_s)) = incident {
                let stage = stage % scenario.stages.len();
                let longest = scenario.stages[stage].duration_s
                    + f64::from(max_extensions) * extension_s;
                scenario.canary.incident = Some(Incident {
                    stage: stage + 1,
                    after_s: (at * longest).min(MAX_RUN_S),
                    error_rate: 1.0,
                    latency_factor: 1.0,
                    length_s,
                });
            }
            scenario
        }
    }

    /// Every --duration in the range its refusal states runs, whichever unit it is written in;
    /// one a thousandth beyond either end is a bad flag naming --duration. A case whose
    /// scenario no --duration fits, or whose total the flag's parser refuses, checks no range:
    /// at least half of the 1,000 cases must reach the checks (about 590 do).
    #[test]
    fn every_duration_in_the_stated_range_runs() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        const CASES: u32 = 1000;
        let checked = AtomicUsize::new(0);
        let config = ProptestConfig {
            source_file: Some(file!()),
            ..ProptestConfig::with_cases(CASES)
        };
        let durations = (
            scenario(),
            0usize..5,
            0.0f64..=1.0,
            prop::sample::select(vec![("s", 1.0), ("ms", 1e-3), ("m", 60.0), ("d", 86_400.0)]),
        );
        let run = proptest::test_runner::TestRunner::new(config).run(
            &durations,
            |(scenario, pick, between, unit)| {
                if the_stated_range_runs(&scenario, pick, between, unit)? {
                    checked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            },
        );
        if let Err(failed) = run {
            panic!("{failed}");
        }
        let checked = checked.into_inner();
        assert!(
            checked >= 500,
            "{checked} of {CASES} cases reached the range checks"
        );
    }

    /// One case of [`every_duration_in_the_stated_range_runs`]: the `pick`th total of the
    /// stated range (its ends, the range's ends, or `between` them) written in `unit`. Whether
    /// it reached the range checks: not when no --duration fits `scenario`, nor when the flag's
    /// parser refuses the total as written.
    fn the_stated_range_runs(
        scenario: &Scenario,
        pick: usize,
        between: f64,
        (name, seconds): (&str, f64),
    ) -> Result<bool, TestCaseError> {
        prop_assume!(scenario.validate_fields().is_ok());
        let (least, most) = scenario.duration_range();
        let (from, to) = stated_duration_range(scenario);
        if least > most || from > to {
            // No --duration fits (its shortest stage needs more than its runs allow).
            return Ok(false);
        }
        let total = [from, to, least, most, from + between * (to - from)][pick];
        // As a decimal (`{}` writes no exponent, which the flag does not read).
        let written = format!("{}{name}", total / seconds);
        let Ok(read) = parse_duration(&written) else {
            // Above 365 days as written in that unit: refused by the flag's own parser.
            prop_assert!(total > MAX_RUN_S * 0.999_999, "{written}");
            return Ok(false);
        };
        match scaled(scenario, read) {
            Ok(run) => prop_assert!(
                (run.planned_seconds() - read).abs() <= read * 1e-9,
                "{written}: {} s planned",
                run.planned_seconds()
            ),
            Err(e) => prop_assert!(false, "--duration {written} in {from}..={to}: {e}"),
        }
        for beyond in [least / 1.001, most * 1.001] {
            let refused = scaled(scenario, beyond);
            prop_assert!(
                matches!(&refused, Err(CliError::Usage(e)) if e.starts_with("invalid --duration = ")),
                "--duration {beyond} outside {least}..={most}: {refused:?}"
            );
        }
        Ok(true)
    }

    /// `scenario` as `simulate` runs it with `--rps` and `--sample` as given.
    fn with_rate_flags(
        scenario: &Scenario,
        rps: Option<f64>,
        sample: Option<u64>,
    ) -> Result<Scenario, CliError> {
        let args = SimulateArgs {
            rps,
            sample,
            duration: None,
            ..with_duration(0.0)
        };
        with_flags(scenario.clone(), Path::new("s.json"), None, &args)
    }

    /// The number a refusal states after `before` (`"at least "`), up to the next space.
    fn stated<T: std::str::FromStr>(message: &str, before: &str) -> Option<T> {
        let (_, rest) = message.split_once(before)?;
        rest.split(' ').next()?.parse().ok()
    }

    prop_compose! {
        /// A ramp (stages of whole milliseconds from 10 ms to 100 s, as in the sweep that
        /// found the stated bounds refused, or of any length from 10 ms to 100 s) with a
        /// `sample`; an rps below the least its shortest stage takes (a share of it), and
        /// one above (a round one, or a multiple of the least).
        fn rates()(
            lengths in prop::collection::vec(
                prop_oneof![
                    (10u32..100_000).prop_map(|ms| f64::from(ms) / 1e3),
                    (-2.0f64..2.0).prop_map(|e| 10f64.powf(e).max(MIN_EXTENSION_S)),
                ],
                1..4,
            ),
            sample in prop_oneof![Just(1u64), 1u64..100, 1u64..100_000],
            short in 0.0f64..1.0,
            above in prop_oneof![
                (1u32..=1000).prop_map(|r| Above::Rps(f64::from(r) * 1000.0)),
                (1.0f64..1000.0).prop_map(Above::TimesTheLeast),
            ],
        ) -> (Scenario, f64, Above) {
            let scenario = Scenario {
                stages: canary_ramp(&lengths),
                max_extensions: 0,
                sample,
                ..Scenario::default()
            };
            let least = scenario.sample as f64 / scenario.shortest_stage_seconds();
            (scenario, (least * short).max(f64::MIN_POSITIVE), above)
        }
    }

    /// An rps above the least a scenario takes: a round one, or a multiple of the least.
    #[derive(Debug, Clone, Copy)]
    enum Above {
        Rps(f64),
        TimesTheLeast(f64),
    }

    /// Every bound the least-requests refusal states is accepted: the least `rps` of the file's
    /// refusal and of `--rps`'s, and the most `--sample` of `--sample`'s. They were computed
    /// with other roundings than the check's (`sample / duration_s` and `floor(rps ×
    /// duration_s)` against `rps / sample × duration_s >= 1`), and a sweep of samples and
    /// stages at 1000 rps found about 1 stated bound in 5 refused.
    #[test]
    fn every_bound_the_least_requests_refusal_states_is_accepted() {
        let config = ProptestConfig {
            source_file: Some(file!()),
            ..ProptestConfig::with_cases(2000)
        };
        proptest::test_runner::TestRunner::new(config)
            .run(&rates(), |(scenario, low, above)| {
                the_stated_least_requests_run(&scenario, low, above)
            })
            .unwrap_or_else(|failed| panic!("{failed}"));
    }

    /// One case of [`every_bound_the_least_requests_refusal_states_is_accepted`]: `scenario`
    /// refused at rps `low`, then at `--rps low`, each bound stated taken; `--sample` refused
    /// at an rps `above` the least, the most stated taken.
    fn the_stated_least_requests_run(
        scenario: &Scenario,
        low: f64,
        above: Above,
    ) -> Result<(), TestCaseError> {
        let at = |rps: f64| Scenario {
            rps,
            ..scenario.clone()
        };
        let refusal = at(low).validate_least_requests();
        prop_assume!(refusal.is_err());
        let refusal = refusal.unwrap_err().to_string();
        let least: f64 = stated(&refusal, "at least ").unwrap();
        prop_assert!(at(least).validate_least_requests().is_ok(), "{}", refusal);
        prop_assume!(least <= MAX_RPS);
        match with_rate_flags(scenario, Some(low), None) {
            Err(CliError::Usage(message)) => {
                prop_assert_eq!(
                    stated::<f64>(&message, "at least "),
                    Some(least),
                    "{}",
                    message
                );
            }
            other => prop_assert!(false, "--rps {low}: {other:?}"),
        }
        let run = with_rate_flags(scenario, Some(least), None);
        prop_assert!(run.is_ok(), "--rps {least}: {run:?}");
        let rps = match above {
            Above::Rps(rps) => rps,
            Above::TimesTheLeast(times) => (least * times).min(MAX_RPS),
        };
        prop_assume!(rps >= least);
        match with_rate_flags(&at(rps), None, Some(u64::MAX)) {
            Err(CliError::Usage(message)) => {
                let most: u64 = stated(&message, "at most ").unwrap();
                let run = with_rate_flags(&at(rps), None, Some(most));
                prop_assert!(run.is_ok(), "{message}; --sample {most}: {run:?}");
            }
            other => prop_assert!(false, "--sample {}: {other:?}", u64::MAX),
        }
        Ok(())
    }

    #[test]
    fn the_least_requests_bounds_are_accepted_where_rounding_differs() {
        // A 0.093 s stage: 1 / 0.093 = 10.75268817204301, stated as the least rps with
        // sample = 1, is 0.9999999999999999 of a request there; the next number up is stated.
        let file = scenario_file(
            r#"{"max_extensions":0,"stages":[{"traffic_percent":1,"duration_s":0.093}]}"#,
        );
        let stated_at = |rps: f64| {
            let mut scenario = file.clone();
            scenario.rps = rps;
            scenario
                .validate_least_requests()
                .map_err(|e| e.to_string())
        };
        let refusal = stated_at(10.75268817204301).unwrap_err();
        assert!(
            refusal.starts_with(
                "invalid rps = 10.75268817204301: at least 10.752688172043012 with sample = 1"
            ),
            "{refusal}"
        );
        assert_eq!(stated_at(10.752688172043012), Ok(()));
        // At 1000 rps, --sample 94 states at most 93, which is taken (1000 / 93 × 0.093 was
        // 0.9999999999999999).
        let at_1000 = Scenario {
            rps: 1000.0,
            ..file
        };
        let Err(CliError::Usage(refusal)) = with_rate_flags(&at_1000, None, Some(94)) else {
            panic!("--sample 94 was taken");
        };
        assert!(
            refusal.starts_with("invalid --sample = 94: at most 93 with rps = 1000: "),
            "{refusal}"
        );
        let run = with_rate_flags(&at_1000, None, Some(93)).unwrap();
        assert_eq!(run.sample, 93);
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

    #[test]
    fn a_refused_value_a_flag_gave_is_named_as_the_flag_gave_it() {
        // The file writes rps = 2e6; --rps gives the same number (here without the flag's
        // own check, which refuses it first): the refusal names the flag's value, not the
        // file's spelling, and without the flag the file's.
        let path = std::env::temp_dir().join(format!("pg-flag-{}.toml", std::process::id()));
        std::fs::write(&path, "rps = 2e6\n").unwrap();
        let read = document::load_written::<Scenario>(&path);
        std::fs::remove_file(&path).unwrap();
        let (scenario, written) = read.unwrap();
        let refusal = |rps| {
            let args = SimulateArgs {
                rps,
                duration: None,
                ..with_duration(0.0)
            };
            with_flags(scenario.clone(), &path, Some(&written), &args)
                .unwrap_err()
                .to_string()
        };
        let by_flag = refusal(Some(2e6));
        assert!(by_flag.contains("invalid rps = 2000000: "), "{by_flag}");
        let by_file = refusal(None);
        assert!(by_file.contains("invalid rps = 2e6: "), "{by_file}");
    }
}
