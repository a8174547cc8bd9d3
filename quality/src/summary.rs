//! The table: one row per scenario and judge.

use crate::rate;
use crate::scenario::Scenario;
use crate::trial::{Decision, Trial};

/// The table's header (Markdown).
pub const HEADER: &str = "| scenario | judge | rolled back | canary req. to rollback (median / p90) | s to rollback (median / p90) | promotable before rollback | canary req. to first promotable (median) |\n|---|---|---|---|---|---|---|";

/// How to read one judge's decision from a trial.
pub type Reader = fn(&Trial) -> Decision;

/// The judges, in the table's order, with how to read each from a trial.
pub const JUDGES: [(&str, Reader); 3] = [
    ("engine", |t| t.engine),
    ("Kayenta-style", |t| t.kayenta),
    ("Flagger-style", |t| t.flagger),
];

/// The `q` quantile of `values` (nearest rank), `None` when empty.
pub fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

/// One judge's numbers over a scenario's trials.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    pub trials: usize,
    pub rolled_back: usize,
    pub requests: (Option<f64>, Option<f64>),
    pub seconds: (Option<f64>, Option<f64>),
    pub promotable_before: usize,
    pub first_promotable: Option<f64>,
}

impl Figures {
    /// The judge's figures over `runs`. A trial without the event (no rollback, never
    /// promotable) counts as infinitely late, so a median is finite only when at least half
    /// the trials had the event.
    pub fn of(runs: &[Trial], judge: fn(&Trial) -> Decision) -> Self {
        let decisions: Vec<Decision> = runs.iter().map(judge).collect();
        let late = |value: Option<f64>| value.unwrap_or(f64::INFINITY);
        let mut requests: Vec<f64> = decisions
            .iter()
            .map(|d| late(d.rollback.map(|r| r.1 as f64)))
            .collect();
        let mut seconds: Vec<f64> = decisions
            .iter()
            .map(|d| late(d.rollback.map(|r| r.0)))
            .collect();
        let mut promotable: Vec<f64> = decisions
            .iter()
            .map(|d| late(d.first_promotable.map(|p| p.0 as f64)))
            .collect();
        Figures {
            trials: runs.len(),
            rolled_back: decisions.iter().filter(|d| d.rollback.is_some()).count(),
            requests: (quantile(&mut requests, 0.5), quantile(&mut requests, 0.9)),
            seconds: (quantile(&mut seconds, 0.5), quantile(&mut seconds, 0.9)),
            promotable_before: decisions.iter().filter(|d| d.promotable_before()).count(),
            first_promotable: quantile(&mut promotable, 0.5),
        }
    }

    pub fn rate(&self, count: usize) -> f64 {
        count as f64 / self.trials.max(1) as f64
    }
}

/// A figure for the table: ">horizon" when the trials at that rank never had the event.
pub fn figure(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.0}")
    } else {
        ">horizon".to_owned()
    }
}

fn pair(rolled_back: usize, (a, b): (Option<f64>, Option<f64>)) -> String {
    match (a, b) {
        (Some(a), Some(b)) if rolled_back > 0 => format!("{} / {}", figure(a), figure(b)),
        _ => "-".to_owned(),
    }
}

/// A judge's rollbacks: "rolled back/trials", and in a healthy or held cell, where every
/// rollback is false, the one-sided Clopper-Pearson upper bound on the false-rollback rate at
/// [`rate::CONFIDENCE`] (the trials of a cell are independent; those of different cells are
/// not, see docs/judge.md), in percent rounded up to 0.1 ([`percent_up`]).
pub fn rolled_back(f: &Figures, healthy: bool) -> String {
    let count = format!("{}/{}", f.rolled_back, f.trials);
    if !healthy {
        return count;
    }
    let bound = rate::upper_bound(f.rolled_back, f.trials, rate::CONFIDENCE);
    format!("{count} (≤ {} %)", percent_up(bound))
}

/// `share` in percent with one decimal, rounded up: an upper bound printed to the nearest
/// tenth could read below itself (0 of 30 bounds the rate at 9.503 %, which is 9.5 to the
/// nearest and 9.6 up).
pub fn percent_up(share: f64) -> String {
    format!("{:.1}", (share * 1000.0).ceil() / 10.0)
}

/// The scenario's rows, and for the no-data scenario when NO_DATA was first said.
pub fn lines(scenario: &Scenario, runs: &[Trial]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, judge) in JUDGES {
        let f = Figures::of(runs, judge);
        out.push(format!(
            "| {} | {name} | {} | {} | {} | {}/{} | {} |",
            scenario.name,
            rolled_back(&f, scenario.kind.canary_is_healthy()),
            pair(f.rolled_back, f.requests),
            pair(f.rolled_back, f.seconds),
            f.promotable_before,
            f.trials,
            match f.first_promotable {
                Some(median) if f.promotable_before > 0 => figure(median),
                _ => "never".to_owned(),
            },
        ));
    }
    if scenario.no_outcomes {
        let mut at: Vec<f64> = runs.iter().filter_map(|t| t.no_data_at).collect();
        let flagged = at.len();
        out.push(format!(
            "| {} | engine NO_DATA | flagged in {flagged}/{}, median after {} s | | | | |",
            scenario.name,
            runs.len(),
            quantile(&mut at, 0.5).map_or("-".to_owned(), |s| format!("{s:.0}"))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_healthy_cells_count_carries_its_bound() {
        let f = |rolled_back, trials| Figures {
            trials,
            rolled_back,
            ..Figures::default()
        };
        assert_eq!(rolled_back(&f(0, 30), true), "0/30 (≤ 9.6 %)");
        assert_eq!(rolled_back(&f(0, 150), true), "0/150 (≤ 2.0 %)");
        assert_eq!(rolled_back(&f(1, 150), true), "1/150 (≤ 3.2 %)");
        assert_eq!(rolled_back(&f(0, 300), true), "0/300 (≤ 1.0 %)");
        assert_eq!(rolled_back(&f(2, 30), true), "2/30 (≤ 19.6 %)");
        assert_eq!(rolled_back(&f(30, 30), true), "30/30 (≤ 100.0 %)");
        // A regression's rollbacks are not false: no bound.
        assert_eq!(rolled_back(&f(30, 30), false), "30/30");
    }

    #[test]
    fn a_printed_bound_is_never_below_the_bound() {
        // An upper bound read from the table must not understate the rate it bounds: the
        // printed figure (of the share the table prints, not a round trip through percent)
        // is at least the bound, less than a tenth of a point above it, and the bound itself
        // when that is on a tenth (0/1 at 95.0 %, n/n at 100.0 %).
        for trials in [1, 6, 12, 30, 150, 300, 600] {
            for events in 0..=trials {
                let share = rate::upper_bound(events, trials, rate::CONFIDENCE);
                let bound = share * 100.0;
                let shown = percent_up(share);
                let printed: f64 = shown.parse().unwrap_or(f64::NAN);
                let tenths = bound * 10.0;
                let on_a_tenth = (tenths - tenths.round()).abs() < 1e-9;
                assert!(
                    printed >= bound - 1e-9
                        && if on_a_tenth {
                            (printed - bound).abs() < 1e-9
                        } else {
                            printed - bound < 0.1
                        },
                    "{events}/{trials}: printed {shown} for {bound}"
                );
            }
        }
    }

    #[test]
    fn a_share_on_a_tenth_stays_there() {
        assert_eq!(percent_up(1.0), "100.0");
        assert_eq!(percent_up(0.02), "2.0");
        assert_eq!(percent_up(0.0), "0.0");
        assert_eq!(percent_up(0.095_033), "9.6");
        assert_eq!(percent_up(0.020_000_1), "2.1");
    }
}
