//! `judge-quality`: the decision-quality benchmark of issue 15. Runs every scenario for a
//! number of seeded trials in simulated time and prints, per scenario and judge (the engine
//! at its default settings, a Kayenta-style and a Flagger-style judge on the same outcomes),
//! the rollback rate, canary requests and seconds to rollback (median and p90), how often the
//! judge called the canary promotable before rolling it back, and the canary requests at its
//! first promotable look. With `--check` it exits non-zero when a "Done when" criterion that
//! the run can check is not met, except those listed as open in `criteria::OPEN` (documented
//! as unmet in docs/judge.md).
//!
//! Usage: `judge-quality [--trials N] [--reduced] [--check] [--only NAME-PART]`, N from 1 to
//! 10 000 (50 by default).

mod bound;
mod criteria;
mod rate;
mod reference;
mod scenario;
mod service;
mod summary;
mod trial;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use scenario::Scenario;
use trial::Trial;

/// The most trials `--trials` takes: memory and time grow with it, and 10 000 is about 17
/// times the most docs/judge.md runs (600 of single cells).
const MAX_TRIALS: u64 = 10_000;

struct Args {
    trials: u64,
    reduced: bool,
    check: bool,
    /// Only the scenarios whose name contains this.
    only: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        trials: 50,
        reduced: false,
        check: false,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--trials" => {
                let n = it.next().ok_or("--trials needs a number")?;
                args.trials = trials_value(&n)?;
            }
            "--reduced" => args.reduced = true,
            "--check" => args.check = true,
            "--only" => args.only = Some(it.next().ok_or("--only needs a name")?),
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: judge-quality [--trials N] [--reduced] [--check] [--only NAME-PART]"
                ));
            }
        }
    }
    Ok(args)
}

/// `--trials`'s value: from 1 to [`MAX_TRIALS`] (no trial would make every row 0 of 0, and
/// every criterion unchecked).
fn trials_value(n: &str) -> Result<u64, String> {
    let trials: u64 = n
        .parse()
        .map_err(|_| format!("--trials: not a number: {n}"))?;
    if !(1..=MAX_TRIALS).contains(&trials) {
        let why = if trials == 0 {
            "no trial would run, and nothing be checked"
        } else {
            "memory and time grow with it"
        };
        return Err(format!("--trials {trials}: from 1 to {MAX_TRIALS} ({why})"));
    }
    Ok(trials)
}

/// Runs `trials` seeded trials of `scenario` on two threads; the seeds are 1..=trials. The
/// first error, if a trial could not run; a trial that panics ends the run with its panic.
fn trials(scenario: &Scenario, trials: u64) -> Result<Vec<Trial>, String> {
    let next = AtomicU64::new(1);
    let out = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed > trials {
                        break;
                    }
                    let trial = trial::run(scenario, seed);
                    let failed = trial.is_err();
                    out.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(trial);
                    if failed {
                        break;
                    }
                }
            });
        }
    });
    // A thread that panicked holding the lock would have poisoned it, but `thread::scope`
    // re-raises that panic before this line: the list is whole here.
    out.into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .into_iter()
        .collect()
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let mut results = Vec::new();
    println!("{}", summary::HEADER);
    let (chosen, left_out): (Vec<Scenario>, Vec<Scenario>) =
        scenario::all(args.reduced).into_iter().partition(|s| {
            args.only
                .as_ref()
                .is_none_or(|only| s.name.contains(only.as_str()))
        });
    if chosen.is_empty() {
        eprintln!(
            "--only {}: no scenario's name contains it, so nothing would be run or checked",
            args.only.as_deref().unwrap_or_default()
        );
        return ExitCode::from(2);
    }
    // What `--reduced` or `--only` left out: a criterion about it is not checked.
    let mut skipped: Vec<String> = left_out.into_iter().map(|s| s.name).collect();
    if args.reduced {
        let kept: Vec<String> = scenario::all(true).into_iter().map(|s| s.name).collect();
        skipped.extend(
            scenario::all(false)
                .into_iter()
                .map(|s| s.name)
                .filter(|name| !kept.contains(name)),
        );
    }
    for scenario in chosen {
        // The low-traffic scenario simulates a week per trial: a few trials suffice.
        let n = if scenario.horizon_s > 86_400.0 {
            args.trials.min(6)
        } else {
            args.trials
        };
        let runs = match trials(&scenario, n) {
            Ok(runs) => runs,
            Err(message) => {
                eprintln!("{message}");
                return ExitCode::FAILURE;
            }
        };
        for line in summary::lines(&scenario, &runs) {
            println!("{line}");
        }
        results.push((scenario, runs));
    }
    let (open, unmet): (Vec<String>, Vec<String>) = criteria::check(&results, &skipped)
        .into_iter()
        .partition(|f| criteria::is_open(f));
    for failure in &open {
        println!("NOT MET (open, see docs/judge.md): {failure}");
    }
    for failure in &unmet {
        println!("NOT MET: {failure}");
    }
    if unmet.is_empty() {
        println!("every checked criterion met, but {} open", open.len());
    }
    if args.check && !unmet.is_empty() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trials_from_one_to_the_bound() {
        assert_eq!(trials_value("1"), Ok(1));
        assert_eq!(trials_value("10000"), Ok(MAX_TRIALS));
        for refused in ["0", "10001"] {
            let message = trials_value(refused).unwrap_err();
            assert!(
                message.starts_with(&format!("--trials {refused}:")),
                "{message}"
            );
        }
        assert!(trials_value("x").is_err());
    }
}
