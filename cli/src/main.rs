//! `promotion-gates`: the engine from the command line.
//!
//! - `simulate` runs a canary rollout on the real engine in simulated time, with synthetic
//!   stable and canary services, and reports what the judge did (table, JSON, SVG timeline);
//! - `route` prints each request id's decision and why (`--explain`: every step of the
//!   formula);
//! - `validate` checks a config file and names the field that is wrong.
//!
//! Every failure is one line on stderr and a non-zero exit code: 2 for a bad flag, 1 for
//! anything else (unreadable file, invalid config, engine refusal). A simulation that ran
//! exits 0 only when the release reached Production: 3 when it was rolled back, 4 when it
//! stalled.

mod flag;
mod plot;
mod route;
mod simulate;
mod validate;

// The modules the fuzz target `cli_documents` reads documents with too (`src/lib.rs`).
use promotion_gates_cli::{document, error, progress, report, rollout, scenario};

use clap::builder::Styles;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::io::{self, Write};
use std::process::ExitCode;

use crate::error::CliError;

/// Canary routing and promotion gates: simulate a rollout, route request ids, check configs.
#[derive(Debug, Parser)]
#[command(
    name = "promotion-gates",
    version,
    propagate_version = true,
    // Without a subcommand, clap printed the whole help to stderr: one line instead, naming
    // what is missing, as every other failure (see `one_line`).
    arg_required_else_help = false,
    after_help = "Exit status: 0 success; 1 an error (unreadable or invalid file, engine refusal); \
                  2 a bad flag. simulate also exits 3 when the canary was rolled back and 4 when \
                  the rollout stalled (see simulate --help)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a canary rollout on the real engine in simulated time and report the verdicts.
    #[command(after_help = simulate::exit_status_help())]
    Simulate(simulate::SimulateArgs),
    /// Print each request id's routing decision and why.
    Route(route::RouteArgs),
    /// Check a config file (PromotionConfig, SloConfig or scenario; JSON or TOML).
    Validate(validate::ValidateArgs),
}

/// A clap error on one line: its message (the missing arguments it lists included), plus the
/// valid values and the tips when it gives them. Each text of the user's it quotes (an unknown
/// argument or subcommand, a refused value; in the message or in a tip) is shown as
/// [`error::shown_text`] shows one: control characters escaped (a newline in it would end the
/// line it is on), at most `MAX_SHOWN_VALUE_BYTES`.
fn one_line(error: &clap::Error) -> String {
    // The error of the command without styles (see `parsed`): its only control characters are
    // clap's line breaks and the user's texts, replaced where clap quotes them. In the styled
    // text, a newline or an escape given replaced clap's own line breaks and styles too; its
    // plain form strips an escape of the user's as it strips clap's styles.
    let mut text = error.render().ansi().to_string();
    for (given, shown) in user_texts(error) {
        // `'--x'`, and `'-- --x'` in the tip to pass it as a value.
        for quote in ["'", "'-- "] {
            text = text.replace(&format!("{quote}{given}'"), &format!("{quote}{shown}'"));
        }
    }
    // The message is the first paragraph; the tips and the usage follow, each after a blank line.
    let mut paragraphs = text.split("\n\n");
    let mut message = words_of(paragraphs.next().unwrap_or_default());
    if message.is_empty() {
        message = "error: invalid arguments".to_string();
    }
    for line in paragraphs.flat_map(str::lines).map(str::trim) {
        if line.starts_with("[possible values") || line.starts_with("tip:") {
            message.push(' ');
            message.push_str(line);
        }
    }
    message.push_str(" (see --help)");
    message
}

/// The texts of the user's that `error` quotes, each with its shown form, where they differ.
fn user_texts(error: &clap::Error) -> Vec<(String, String)> {
    let mut texts = Vec::new();
    for kind in [
        ContextKind::InvalidArg,
        ContextKind::InvalidSubcommand,
        ContextKind::InvalidValue,
    ] {
        match error.get(kind) {
            Some(ContextValue::String(text)) => texts.push(text.clone()),
            Some(ContextValue::Strings(list)) => texts.extend(list.iter().cloned()),
            _ => {}
        }
    }
    texts
        .into_iter()
        .map(|given| {
            let shown = error::shown_text(&given);
            (given, shown)
        })
        .filter(|(given, shown)| given != shown)
        .collect()
}

/// The lines of `paragraph`, trimmed, on one line.
fn words_of(paragraph: &str) -> String {
    let lines: Vec<&str> = paragraph
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" ")
}

fn complain(error: &CliError) {
    let _ = writeln!(io::stderr().lock(), "error: {error}");
}

/// The command line, read by the command without styles, so that an error's text holds no
/// escape but the user's ([`one_line`]): clap styles parts of an error, a tip quoting the
/// user's text among them, as it makes it. `validate --slo` with a `--kind` other than
/// `promotion` is refused as clap refuses two conflicting flags ([`validate::ValidateArgs::slo_conflict`]).
fn parsed() -> Result<Cli, clap::Error> {
    let mut command = Cli::command().styles(Styles::plain());
    let mut matches = command.try_get_matches_from_mut(std::env::args_os())?;
    let cli = Cli::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut command))?;
    if let Command::Validate(args) = &cli.command
        && let Some(message) = args.slo_conflict()
    {
        return Err(command.error(ErrorKind::ArgumentConflict, message));
    }
    Ok(cli)
}

fn main() -> ExitCode {
    let cli = match parsed() {
        Ok(cli) => cli,
        Err(e) => {
            let code = e.exit_code();
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                // The same help, read again with the command's styles.
                let e = Cli::try_parse().err().unwrap_or(e);
                // Help that could not be written (a full disk) is a failure; a reader that
                // closed the pipe early is not, as for every other command's output.
                if let Err(written) = e.print()
                    && written.kind() != std::io::ErrorKind::BrokenPipe
                {
                    let _ = writeln!(io::stderr().lock(), "error: input/output failed: {written}");
                    return ExitCode::from(1);
                }
            } else {
                let _ = writeln!(io::stderr().lock(), "{}", one_line(&e));
            }
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
    };
    let result = match &cli.command {
        Command::Simulate(args) => simulate::run(args),
        Command::Route(args) => route::run(args).map(|()| 0),
        Command::Validate(args) => validate::run(args),
    };
    match result {
        Ok(status) => ExitCode::from(status),
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            complain(&e);
            ExitCode::from(e.exit_code())
        }
    }
}
