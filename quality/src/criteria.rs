//! The "Done when" criteria of issue 15 that a run can check, each returning what is not met.

use crate::bound;
use crate::scenario::{Kind, Scenario};
use crate::service::Change;
use crate::summary::{Figures, JUDGES, figure};
use crate::trial::Trial;

/// The most false rollbacks the criteria allow in a healthy scenario, as a share of trials.
const MAX_FALSE_ROLLBACKS: f64 = 0.01;

type Results = [(Scenario, Vec<Trial>)];

fn engine(runs: &[Trial]) -> Figures {
    Figures::of(runs, JUDGES[0].1)
}

fn named<'a>(
    results: &'a Results,
    prefix: &str,
) -> impl Iterator<Item = &'a (Scenario, Vec<Trial>)> {
    results
        .iter()
        .filter(move |(s, _)| s.name.starts_with(prefix))
}

/// A criterion this version does not meet in one scenario (docs/judge.md says which and
/// why): being no later than the Kayenta-style judge at the median. `--check` reports it as
/// open and does not fail on it, but only while the engine's median seconds to rollback stay
/// within `max_median_s`: an open criterion is no licence to get slower.
#[derive(Debug, Clone, Copy)]
pub struct Open {
    /// The scenario's name.
    pub scenario: &'static str,
    /// The most seconds to rollback, at the median over the run's trials, that it may take.
    pub max_median_s: f64,
}

/// The open criteria. The caps leave room for the median's scatter over a few trials: over 30
/// trials the engine takes 543 s and 112 s (docs/judge.md), over the 12 of `.ci/run` about 460
/// s and 90 s.
pub const OPEN: &[Open] = &[
    // Slower than the Kayenta-style judge at the median, which looks at α = 0.01 a minute
    // without correcting for the looks and rolls back 2 to 7 of 30 identical canaries per A/A
    // cell (docs/judge.md). The first is beyond any judge within the false-rollback criterion
    // (`bound`); the second is met over 30 trials but not over 12, 60, 150 or 300: the
    // Kayenta-style judge catches about half at its first look, so its median is 60 or 120 s
    // by the draw (docs/judge.md).
    Open {
        scenario: "errors 2x, 100 rps 5% canary",
        max_median_s: 900.0,
    },
    Open {
        scenario: "errors 3x, 100 rps 5% canary",
        max_median_s: 240.0,
    },
];

/// The start of the message of a regression caught later than by the Kayenta-style judge at
/// the median: the one failure an open criterion waives.
fn later_message(scenario: &str) -> String {
    format!("{scenario}: engine caught later at the median: ")
}

/// Whether an unmet criterion is a known, documented open one: its scenario's regression
/// caught later at the median than by the Kayenta-style judge (not caught less often).
pub fn is_open(failure: &str) -> bool {
    OPEN.iter()
        .any(|open| failure.starts_with(&later_message(open.scenario)))
}

/// Every criterion the run can check; the list of those not met. `skipped` names the
/// scenarios that `--reduced` or `--only` left out: a criterion about one of them is not
/// checked; a criterion that names no scenario at all fails, and so does every scenario run
/// with no trial (no criterion is met on no data).
pub fn check(results: &Results, skipped: &[String]) -> Vec<String> {
    let mut failures: Vec<String> = results
        .iter()
        .filter(|(_, runs)| runs.is_empty())
        .map(|(s, _)| format!("{}: no trial run, so no criterion about it is met", s.name))
        .collect();
    let mut run = Criteria {
        results,
        skipped,
        failures: &mut failures,
    };
    run.false_rollbacks();
    run.held();
    run.no_data();
    run.never_promotable();
    run.detection();
    run.promotable();
    against_references(results, run.failures);
    failures
}

/// A run's results, what it left out and what it found unmet so far.
struct Criteria<'a> {
    results: &'a Results,
    skipped: &'a [String],
    failures: &'a mut Vec<String>,
}

impl<'a> Criteria<'a> {
    /// Checks every scenario whose name starts with one of `prefixes`: `unmet` says what is
    /// wrong with it, if anything. A prefix that matches no scenario run fails, unless it
    /// matches one that `--reduced` or `--only` left out.
    fn each(&mut self, prefixes: &[&str], unmet: impl Fn(&[Trial], &Figures) -> Option<String>) {
        for prefix in prefixes {
            let mut matched = false;
            for (s, runs) in named(self.results, prefix) {
                matched = true;
                if let Some(why) = unmet(runs, &engine(runs)) {
                    self.failures.push(format!("{}: {why}", s.name));
                }
            }
            let left_out = self.skipped.iter().any(|name| name.starts_with(prefix));
            if !matched && !left_out {
                self.failures
                    .push(format!("{prefix}: no scenario has this name"));
            }
        }
    }

    /// Checks every scenario run of a kind that `which` accepts: `unmet` says what is wrong
    /// with it, if anything.
    fn every(&mut self, which: fn(Kind) -> bool, unmet: impl Fn(&Figures) -> Option<String>) {
        for (s, runs) in self.results.iter().filter(|(s, _)| which(s.kind)) {
            if let Some(why) = unmet(&engine(runs)) {
                self.failures.push(format!("{}: {why}", s.name));
            }
        }
    }

    /// At most 1 % false rollbacks in every healthy or held scenario.
    fn false_rollbacks(&mut self) {
        self.every(Kind::canary_is_healthy, |f| {
            (f.rate(f.rolled_back) > MAX_FALSE_ROLLBACKS).then(|| {
                format!(
                    "{} of {} rolled back (at most {} %)",
                    f.rolled_back,
                    f.trials,
                    MAX_FALSE_ROLLBACKS * 100.0
                )
            })
        });
    }

    /// A held scenario (the whole service breaches its SLO) is never promotable and never
    /// rolled back: in no trial at all, stricter than the 1 % of [`Self::false_rollbacks`]
    /// (docs/judge.md's table has the engine at 0 of 30).
    fn held(&mut self) {
        self.every(
            |k| k == Kind::Held,
            |f| {
                (f.promotable_before > 0 || f.rolled_back > 0).then(|| {
                    format!(
                        "promotable in {} of {}, rolled back in {} (held: never either)",
                        f.promotable_before, f.trials, f.rolled_back
                    )
                })
            },
        );
    }

    /// When canary outcomes never arrive, NO_DATA is said in every trial and the canary is
    /// held: never promotable and never rolled back (silence is not evidence of harm).
    fn no_data(&mut self) {
        self.each(&["no data"], |runs, f| {
            let flagged = runs.iter().filter(|t| t.no_data_at.is_some()).count();
            (flagged < runs.len() || f.promotable_before > 0 || f.rolled_back > 0).then(|| {
                format!(
                    "NO_DATA in {flagged} of {} (every one), promotable in {} (none), rolled \
                     back in {} (none)",
                    runs.len(),
                    f.promotable_before,
                    f.rolled_back
                )
            })
        });
    }

    /// 2x errors or more, 1.5x latency or more: promotable before the rollback in at most 1 %
    /// of trials (issue 15: never promotable "in at least 99 % of trials"), not in none.
    fn never_promotable(&mut self) {
        let strong = [
            "errors 2x",
            "errors 3x",
            "errors 10x",
            "latency +50%",
            "latency 2x",
            "dead canary",
        ];
        self.each(&strong, |_, f| {
            (f.rate(f.promotable_before) > 0.01).then(|| {
                format!(
                    "promotable before rollback in {} of {}",
                    f.promotable_before, f.trials
                )
            })
        });
    }

    /// Caught within 30 min in 90 % of trials (every regression of errors or latency the issue
    /// names, 2x latency, 10x errors and the dead canary too); the dead canary within 8 canary
    /// requests and 10x errors within 500 (medians, a trial without a rollback counting as
    /// never).
    fn detection(&mut self) {
        let caught = [
            "errors 2x",
            "errors 3x",
            "errors 10x",
            "latency +50%",
            "latency 2x",
            "tail: 2% of requests 5x slower, 2000",
            "leak",
            "dead canary",
        ];
        self.each(&caught, |_, f| {
            (f.rate(f.rolled_back) < 0.9).then(|| {
                format!(
                    "caught in {} of {} within 30 min (at least 90 %)",
                    f.rolled_back, f.trials
                )
            })
        });
        for (prefix, limit) in [("dead canary", 8.0), ("errors 10x", 500.0)] {
            self.each(&[prefix], |_, f| {
                let median = f.requests.0;
                median.is_none_or(|m| m > limit).then(|| {
                    format!(
                        "median canary requests to rollback {} (at most {limit})",
                        median.map_or("-".to_owned(), figure)
                    )
                })
            });
        }
    }

    /// A healthy canary promotable within 5 000 canary requests at 2 000 rps and 5 % (median,
    /// 1 % errors; a trial never promotable counting as never), and the low-traffic canary
    /// promotable within the week in at least half the trials.
    fn promotable(&mut self) {
        self.each(&["A/A 2000 rps 5% canary, 1% errors"], |_, f| {
            let median = f.first_promotable.unwrap_or(f64::INFINITY);
            (median > 5000.0).then(|| {
                format!(
                    "median canary requests to promotable {} (at most 5000)",
                    figure(median)
                )
            })
        });
        self.each(&["low traffic"], |_, f| {
            f.first_promotable
                .is_none_or(|m| m.is_infinite())
                .then(|| format!("promotable in only {} of {}", f.promotable_before, f.trials))
        });
    }
}

/// Against the references: the open criteria within their caps, fewer false rollbacks than
/// each reference, and every regression the Kayenta-style judge catches caught as often and
/// no later at the median.
fn against_references(results: &Results, failures: &mut Vec<String>) {
    open_caps(results, failures);
    fewer_false_rollbacks(results, failures);
    caught_as_often_and_as_early(results, failures);
}

/// An open criterion is waived only while the engine's median stays within its cap.
fn open_caps(results: &Results, failures: &mut Vec<String>) {
    for open in OPEN {
        for (s, runs) in results.iter().filter(|(s, _)| s.name == open.scenario) {
            let median = engine(runs).seconds.0;
            if median.is_none_or(|m| m > open.max_median_s) {
                failures.push(format!(
                    "{}: the engine's median seconds to rollback {}, above the {} s its open \
                     criterion allows",
                    s.name,
                    median.map_or("never".to_owned(), figure),
                    open.max_median_s
                ));
            }
        }
    }
}

/// Fewer false rollbacks than each reference, read cell by cell (the cells share their
/// random draws, so they are not summed as if they were more trials): in every healthy or
/// held cell at most as many as each reference, and fewer than each in at least one A/A cell.
/// Only an A/A cell counts for "fewer": there the canary is healthy throughout and no judge
/// has a reason to skip a span, whereas a warm-up cell is won by the engine's warm-up
/// (the Kayenta-style judge has none) and not by its comparison. A reference that never
/// rolled back a healthy canary in an A/A cell is not beaten. Not checked when the run has
/// no healthy or held cell (`--only` left them all out); "fewer" not when it has no A/A cell.
fn fewer_false_rollbacks(results: &Results, failures: &mut Vec<String>) {
    let cells: Vec<_> = results
        .iter()
        .filter(|(s, _)| s.kind.canary_is_healthy())
        .collect();
    if cells.is_empty() {
        return;
    }
    let aa_cells = cells.iter().filter(|(s, _)| is_aa(s)).count();
    for judge in [1, 2] {
        let name = JUDGES[judge].0;
        let mut fewer_somewhere = false;
        for (s, runs) in &cells {
            let (ours, theirs) = (
                engine(runs).rolled_back,
                Figures::of(runs, JUDGES[judge].1).rolled_back,
            );
            fewer_somewhere |= is_aa(s) && ours < theirs;
            if ours > theirs {
                failures.push(format!(
                    "false rollbacks in {}: engine {ours}, {name} {theirs} (at most as many)",
                    s.name
                ));
            }
        }
        if aa_cells > 0 && !fewer_somewhere {
            failures.push(format!(
                "false rollbacks: the engine has fewer than {name} in none of the {aa_cells} A/A \
                 cells run"
            ));
        }
    }
}

/// Whether a scenario is an A/A cell: both versions identical from the first request on.
fn is_aa(s: &Scenario) -> bool {
    s.kind == Kind::Healthy && s.name.starts_with("A/A ")
}

/// Every regression the Kayenta-style judge catches in 90 % of trials: caught in as many
/// trials (never waived), and no later at the median (waived for the open criteria).
fn caught_as_often_and_as_early(results: &Results, failures: &mut Vec<String>) {
    for (s, runs) in results.iter().filter(|(s, _)| s.kind == Kind::Bad) {
        let (f, k) = (engine(runs), Figures::of(runs, JUDGES[1].1));
        if k.rate(k.rolled_back) < 0.9 {
            continue;
        }
        if f.rolled_back < k.rolled_back {
            failures.push(format!(
                "{}: engine rolled back fewer canaries than Kayenta-style: {}/{} against {}/{}",
                s.name, f.rolled_back, f.trials, k.rolled_back, k.trials
            ));
        }
        if matches!((f.seconds.0, k.seconds.0), (Some(a), Some(b)) if a > b) {
            failures.push(format!(
                "{}{} s, Kayenta-style {} s{}",
                later_message(&s.name),
                f.seconds.0.map_or("never".to_owned(), figure),
                k.seconds.0.map_or("never".to_owned(), figure),
                best_possible(s, k.seconds.0)
            ));
        }
    }
}

/// For a constant error regression with a Kayenta-style median, what the best possible judge
/// within the false-rollback criterion catches by then (see [`crate::bound`]); empty otherwise.
fn best_possible(s: &Scenario, kayenta_median_s: Option<f64>) -> String {
    let (Change::Errors(factor), None, Some(seconds)) =
        (s.service.canary, s.service.outage, kayenta_median_s)
    else {
        return String::new();
    };
    let requests = s.rps * s.share * seconds;
    let (p0, p1) = (
        s.service.error_rate,
        (s.service.error_rate * factor).min(1.0),
    );
    let power = bound::best_power(requests, p0, p1, MAX_FALSE_ROLLBACKS);
    format!(
        "; by then (about {requests:.0} canary requests) the most powerful test at {:.0} % false \
         rollbacks, knowing the stable rate, catches {:.0} %{}",
        MAX_FALSE_ROLLBACKS * 100.0,
        power * 100.0,
        if power < 0.5 {
            ": on average, no judge within the false-rollback criterion catches half the trials by then"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario;
    use crate::trial::Decision;

    /// `name`'s scenario with `runs`, and every other scenario's name as left out.
    fn only(name: &str, runs: Vec<Trial>) -> (Vec<(Scenario, Vec<Trial>)>, Vec<String>) {
        let (chosen, others): (Vec<Scenario>, Vec<Scenario>) = scenario::all(false)
            .into_iter()
            .partition(|s| s.name == name);
        assert_eq!(chosen.len(), 1, "{name}");
        let skipped = others.into_iter().map(|s| s.name).collect();
        (
            chosen.into_iter().map(|s| (s, runs.clone())).collect(),
            skipped,
        )
    }

    fn engine(rollback: Option<(f64, u64)>, first_promotable: Option<(u64, f64)>) -> Trial {
        Trial {
            engine: Decision {
                rollback,
                first_promotable,
            },
            ..Trial::default()
        }
    }

    #[test]
    fn a_median_counts_the_trials_without_a_rollback_as_never() {
        // One of 30 dead canaries caught at 5 requests: the median is not 5.
        let mut runs = vec![engine(None, None); 29];
        runs.push(engine(Some((0.1, 5)), None));
        let (results, skipped) = only("dead canary, 2000 rps 5% canary", runs);
        let failures = check(&results, &skipped);
        assert!(
            failures
                .iter()
                .any(|f| f.contains("median canary requests to rollback >horizon")),
            "{failures:?}"
        );
    }

    #[test]
    fn a_healthy_canary_promotable_late_or_never_fails_and_is_not_open() {
        let name = "A/A 2000 rps 5% canary, 1% errors, light";
        for promotable in [None, Some((5_500, 55.0))] {
            let (results, skipped) = only(name, vec![engine(None, promotable); 30]);
            let unmet: Vec<String> = check(&results, &skipped)
                .into_iter()
                .filter(|f| !is_open(f))
                .collect();
            assert!(unmet.iter().any(|f| f.starts_with(name)), "{unmet:?}");
        }
        // Promotable in time, and (so that the engine has fewer false rollbacks than each
        // reference) one healthy canary rolled back by each reference.
        let mut runs = vec![engine(None, Some((4_500, 45.0))); 30];
        runs[0].kayenta.rollback = Some((60.0, 6_000));
        runs[0].flagger.rollback = Some((300.0, 30_000));
        let (results, skipped) = only(name, runs);
        assert_eq!(check(&results, &skipped), Vec::<String>::new());
    }

    #[test]
    fn an_open_criterion_is_waived_only_within_its_cap() {
        let open = OPEN[1];
        // Kayenta-style at 120 s in every trial; the engine later, within the cap or beyond.
        let trial = |engine_s: f64| Trial {
            engine: Decision {
                rollback: Some((engine_s, 600)),
                first_promotable: None,
            },
            kayenta: Decision {
                rollback: Some((120.0, 600)),
                first_promotable: None,
            },
            ..Trial::default()
        };
        let (results, skipped) = only(open.scenario, vec![trial(open.max_median_s - 1.0); 12]);
        let failures = check(&results, &skipped);
        assert!(!failures.is_empty(), "later than Kayenta-style");
        assert!(failures.iter().all(|f| is_open(f)), "{failures:?}");
        let (results, skipped) = only(open.scenario, vec![trial(open.max_median_s + 1.0); 12]);
        let unmet: Vec<String> = check(&results, &skipped)
            .into_iter()
            .filter(|f| !is_open(f))
            .collect();
        let beyond = format!(
            "above the {} s its open criterion allows",
            open.max_median_s
        );
        assert!(unmet.iter().any(|f| f.contains(&beyond)), "{unmet:?}");
    }

    #[test]
    fn an_open_criterion_never_waives_fewer_canaries_caught() {
        let open = OPEN[1];
        // Kayenta-style catches all 30 at 120 s; the engine 29 (within the 90 % of the
        // detection criterion), earlier at the median.
        let trial = |engine: Option<(f64, u64)>| Trial {
            engine: Decision {
                rollback: engine,
                first_promotable: None,
            },
            kayenta: Decision {
                rollback: Some((120.0, 600)),
                first_promotable: None,
            },
            ..Trial::default()
        };
        let mut runs = vec![trial(Some((100.0, 500))); 29];
        runs.push(trial(None));
        let (results, skipped) = only(open.scenario, runs);
        let unmet: Vec<String> = check(&results, &skipped)
            .into_iter()
            .filter(|f| !is_open(f))
            .collect();
        assert!(
            unmet
                .iter()
                .any(|f| f.contains("fewer canaries than Kayenta-style: 29/30 against 30/30")),
            "{unmet:?}"
        );
    }

    /// Two healthy cells, each with its trials' false rollbacks: (engine, Kayenta-style,
    /// Flagger-style) in how many of 150.
    fn two_cells(
        rollbacks: [(usize, usize, usize); 2],
    ) -> (Vec<(Scenario, Vec<Trial>)>, Vec<String>) {
        let names = [
            "A/A 2000 rps 5% canary, 1% errors, light",
            "A/A 2000 rps 5% canary, 5% errors, light",
        ];
        let rolled = |n: usize, i: usize| Decision {
            rollback: (i < n).then_some((60.0, 6000)),
            first_promotable: Some((4_000, 40.0)),
        };
        let (chosen, others): (Vec<Scenario>, Vec<Scenario>) = scenario::all(false)
            .into_iter()
            .partition(|s| names.contains(&s.name.as_str()));
        let results = chosen
            .into_iter()
            .map(|s| {
                let at = names.iter().position(|n| *n == s.name).unwrap_or(0);
                let (e, k, f) = rollbacks[at];
                let runs = (0..150)
                    .map(|i| Trial {
                        engine: rolled(e, i),
                        kayenta: rolled(k, i),
                        flagger: rolled(f, i),
                        no_data_at: None,
                    })
                    .collect();
                (s, runs)
            })
            .collect();
        (results, others.into_iter().map(|s| s.name).collect())
    }

    fn false_rollback_failures(rollbacks: [(usize, usize, usize); 2]) -> Vec<String> {
        let (results, skipped) = two_cells(rollbacks);
        assert_eq!(results.len(), 2);
        check(&results, &skipped)
            .into_iter()
            .filter(|f| f.starts_with("false rollbacks"))
            .collect()
    }

    #[test]
    fn false_rollbacks_are_compared_cell_by_cell() {
        // Fewer in total (2 against 3 each), but more than both in the second cell.
        let failures = false_rollback_failures([(1, 3, 3), (1, 0, 0)]);
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(
            failures[0].contains("engine 1, Kayenta-style 0"),
            "{failures:?}"
        );
        // No reference rolled back a healthy canary: the engine is not fewer.
        let failures = false_rollback_failures([(0, 0, 2), (0, 0, 0)]);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].contains("fewer than Kayenta-style in none"),
            "{failures:?}"
        );
        // At most as many in every cell, fewer than each somewhere.
        assert!(false_rollback_failures([(0, 2, 0), (1, 1, 3)]).is_empty());
    }

    #[test]
    fn fewer_false_rollbacks_must_be_shown_in_an_a_a_cell() {
        // Each reference rolls back every canary of the warm-up cells (as the Kayenta-style
        // judge, having no warm-up, does) and none in the A/A cell, as the engine: the engine
        // is fewer only where the warm-up decides, which does not count.
        let names = [
            "A/A 2000 rps 5% canary, 1% errors, light",
            "warm-up: 3x latency for 20 s, 2000 rps 5% canary",
            "warm-up: 3x latency for 20 s, 10 rps 50% canary",
        ];
        let (chosen, others): (Vec<Scenario>, Vec<Scenario>) = scenario::all(false)
            .into_iter()
            .partition(|s| names.contains(&s.name.as_str()));
        assert_eq!(chosen.len(), names.len());
        let skipped: Vec<String> = others.into_iter().map(|s| s.name).collect();
        let rolled = |yes: bool| Decision {
            rollback: yes.then_some((60.0, 6000)),
            first_promotable: Some((4_000, 40.0)),
        };
        let results_with = |aa_reference_rollbacks: usize| -> Vec<(Scenario, Vec<Trial>)> {
            chosen
                .iter()
                .map(|s| {
                    let warm_up = s.name.starts_with("warm-up");
                    let runs = (0..30)
                        .map(|i| Trial {
                            engine: rolled(false),
                            kayenta: rolled(warm_up || i < aa_reference_rollbacks),
                            flagger: rolled(warm_up || i < aa_reference_rollbacks),
                            no_data_at: None,
                        })
                        .collect();
                    (s.clone(), runs)
                })
                .collect()
        };
        let fewer = |failures: Vec<String>| -> Vec<String> {
            failures
                .into_iter()
                .filter(|f| f.starts_with("false rollbacks"))
                .collect()
        };
        let failures = fewer(check(&results_with(0), &skipped));
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(
            failures[0].contains("fewer than Kayenta-style in none of the 1 A/A cells"),
            "{failures:?}"
        );
        assert!(failures[1].contains("fewer than Flagger-style in none"));
        // Fewer in the A/A cell: met.
        assert_eq!(
            fewer(check(&results_with(1), &skipped)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_silent_canary_rolled_back_by_the_engine_fails() {
        let name = "no data: canary outcomes never arrive";
        let flagged = |rollback: Option<(f64, u64)>| Trial {
            no_data_at: Some(120.0),
            ..engine(rollback, None)
        };
        let mut runs = vec![flagged(None); 30];
        runs[3] = flagged(Some((130.0, 650)));
        let (results, skipped) = only(name, runs);
        let failures = check(&results, &skipped);
        assert!(
            failures
                .iter()
                .any(|f| f.starts_with(name) && f.contains("rolled back in 1 (none)")),
            "{failures:?}"
        );
        // Flagged in every trial, held in every one: met.
        let (results, skipped) = only(name, vec![flagged(None); 30]);
        assert_eq!(check(&results, &skipped), Vec::<String>::new());
    }

    #[test]
    fn a_strong_regression_never_caught_fails_even_if_never_promotable() {
        for name in [
            "latency 2x, 2000 rps 5% canary",
            "errors 10x, 2000 rps 5% canary",
            "dead canary, 2000 rps 5% canary",
        ] {
            // Caught early in 26 of 30 trials: the median is fine, the rate is not.
            let mut runs = vec![engine(Some((1.0, 5)), None); 26];
            runs.extend(vec![engine(None, None); 4]);
            let (results, skipped) = only(name, runs);
            let failures = check(&results, &skipped);
            assert!(
                failures
                    .iter()
                    .any(|f| f.starts_with(name) && f.contains("caught in 26 of 30")),
                "{name}: {failures:?}"
            );
        }
    }

    #[test]
    fn a_held_cell_rolled_back_once_fails() {
        let name = "service-wide breach: 8% errors, heavy tails";
        // One rollback in 150, within the 1 % of false rollbacks, is still one too many.
        let mut runs = vec![engine(None, None); 150];
        runs[0] = engine(Some((60.0, 6_000)), None);
        let (results, skipped) = only(name, runs);
        let failures = check(&results, &skipped);
        assert!(
            failures
                .iter()
                .any(|f| f.starts_with(name) && f.contains("rolled back in 1 (held: never")),
            "{failures:?}"
        );
        let (results, skipped) = only(name, vec![engine(None, None); 150]);
        let failures = check(&results, &skipped);
        assert!(
            !failures.iter().any(|f| f.starts_with(name)),
            "{failures:?}"
        );
    }

    #[test]
    fn no_criterion_is_met_on_no_trial() {
        for name in [
            "no data: canary outcomes never arrive",
            "A/A 2000 rps 5% canary, 1% errors, light",
        ] {
            let (results, skipped) = only(name, Vec::new());
            let failures = check(&results, &skipped);
            assert!(
                failures
                    .iter()
                    .any(|f| f == &format!("{name}: no trial run, so no criterion about it is met")),
                "{name}: {failures:?}"
            );
        }
    }

    #[test]
    fn a_criterion_naming_no_scenario_fails_unless_it_was_left_out() {
        let failures = check(&[], &[]);
        assert!(
            failures
                .iter()
                .any(|f| f == "dead canary: no scenario has this name"),
            "{failures:?}"
        );
        let everything: Vec<String> = scenario::all(false).into_iter().map(|s| s.name).collect();
        assert_eq!(check(&[], &everything), Vec::<String>::new());
    }
}
