//! The calibration of `errors_over_stage` alone: how often it fires, at any look of a stage,
//! at an A/A canary (both versions at the same error rate), simulated as the decision-quality
//! benchmark's trials run (quality/src/trial.rs): Poisson arrivals at `rps`, each a canary
//! request by a coin of `share`, the rule looked at every second (the record path's paced
//! evaluation, `evaluation_interval` 1 s; the hosts' health checks every 5 s fall on the same
//! seconds) and after each of the canary's first 32 errors and every 16th after (the record
//! path's screen, but for its looks after each run of 4 to 32 errors in a row, about 0.2 a
//! stage at 5 % errors and 20 canary requests a second), once both versions have
//! `min_samples`. Counts between looks are drawn
//! whole: the four streams (canary and stable, errors and successes) are independent Poisson
//! processes.
//!
//! The test holds the rule to a weak level, 0.05, where a few hundred stages resolve its
//! rate well enough to catch a rule far off it (it fails from 24 of 300 stages, a rate of
//! 8 %, whose bound is above 0.05); `JUDGE_CALIBRATION` (`stages,alpha[,factor]`, e.g. `60000,0.001`) runs every cell at
//! another level and count, the canary's error rate `factor` times the stable one's (1 by
//! default; 1.1 puts it at the rule's limit, `ERROR_RATE_MARGIN`), and prints the rates
//! instead (in release: `cargo test --release --lib -p promotion-gates calibration --
//! --nocapture`).

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Poisson};

use super::rules::over_stage;
use super::stats::Proportion;
use crate::slo::SloConfig;

/// One cell: the stable version at `error_rate`, the canary at `canary_factor` times it (1: an
/// A/A cell), `rps` requests a second, `share` of them the canary's, for `stage_s` seconds.
#[derive(Debug, Clone, Copy)]
struct Cell {
    rps: f64,
    share: f64,
    error_rate: f64,
    canary_factor: f64,
    stage_s: u32,
}

impl Cell {
    /// The canary's error rate.
    fn canary_rate(self) -> f64 {
        (self.error_rate * self.canary_factor).min(1.0)
    }
}

/// The canary errors after which the record path screens: its first 32, then every 16th.
fn screened(errors: u64) -> bool {
    errors <= 32 || errors.is_multiple_of(16)
}

/// A Poisson draw of mean `mean` (0 at a mean of 0).
fn poisson(rng: &mut Xoshiro256PlusPlus, mean: f64) -> u64 {
    match Poisson::new(mean) {
        Ok(d) => d.sample(rng) as u64,
        Err(_) => 0,
    }
}

/// Both versions' counts over the stage so far.
#[derive(Debug, Clone, Copy)]
struct Stage {
    canary: Proportion,
    stable: Proportion,
}

impl Stage {
    /// `seconds` more of `cell`'s traffic, the canary's errors not counted (drawn apart).
    fn advance(&mut self, rng: &mut Xoshiro256PlusPlus, cell: Cell, seconds: f64) {
        let (canary, stable) = (cell.rps * cell.share, cell.rps * (1.0 - cell.share));
        let (p, p_canary) = (cell.error_rate, cell.canary_rate());
        self.canary.trials += poisson(rng, canary * (1.0 - p_canary) * seconds);
        let (errors, successes) = (
            poisson(rng, stable * p * seconds),
            poisson(rng, stable * (1.0 - p) * seconds),
        );
        self.stable.events += errors;
        self.stable.trials += errors + successes;
    }

    /// Whether the rule fires at this look.
    fn fires(&self, slo: &SloConfig) -> bool {
        let n = slo.min_samples;
        self.canary.trials >= n
            && self.stable.trials >= n
            && over_stage(self.canary, self.stable, slo).is_some_and(|f| f.fired)
    }
}

/// Whether the rule fires at any look of one stage of `cell`.
fn fires_in_a_stage(rng: &mut Xoshiro256PlusPlus, cell: Cell, slo: &SloConfig) -> bool {
    let mut stage = Stage {
        canary: Proportion {
            events: 0,
            trials: 0,
        },
        stable: Proportion {
            events: 0,
            trials: 0,
        },
    };
    let error_rate = cell.rps * cell.share * cell.canary_rate();
    for _ in 0..cell.stage_s {
        // The canary's errors in this second, at uniform times, each a look if screened.
        let mut times: Vec<f64> = (0..poisson(rng, error_rate))
            .map(|_| rng.random::<f64>())
            .collect();
        times.sort_by(f64::total_cmp);
        let mut at = 0.0;
        for t in times {
            stage.advance(rng, cell, t - at);
            at = t;
            stage.canary.trials += 1;
            stage.canary.events += 1;
            if screened(stage.canary.events) && stage.fires(slo) {
                return true;
            }
        }
        stage.advance(rng, cell, 1.0 - at);
        if stage.fires(slo) {
            return true;
        }
    }
    false
}

/// The stages of `cell`, of `stages`, in which the rule fires at some look, at `slo`
/// (seeded with `seed`).
fn false_alarms(cell: Cell, slo: &SloConfig, stages: u64, seed: u64) -> u64 {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..stages)
        .filter(|_| fires_in_a_stage(&mut rng, cell, slo))
        .count() as u64
}

/// `P(X <= k)` for `X ~ Binomial(n, p)`, `0 < p < 1`: the terms summed in logarithms from
/// `P(X = 0)`.
fn binomial_cdf(k: u64, n: u64, p: f64) -> f64 {
    let (mut term, mut sum) = (n as f64 * (-p).ln_1p(), f64::NEG_INFINITY);
    let odds = (p / (1.0 - p)).ln();
    for x in 0..=k.min(n) {
        let (high, low) = (sum.max(term), sum.min(term));
        sum = high + (low - high).exp().ln_1p();
        term += ((n - x) as f64 / (x + 1) as f64).ln() + odds;
    }
    sum.exp().min(1.0)
}

/// The Clopper-Pearson interval of a rate seen `k` times in `n`, at 95 % (bisection on the
/// exact tails).
fn clopper_pearson(k: u64, n: u64) -> (f64, f64) {
    let solve = |above: &dyn Fn(f64) -> bool| {
        let (mut low, mut high) = (0.0f64, 1.0f64);
        for _ in 0..60 {
            let mid = 0.5 * (low + high);
            if above(mid) {
                high = mid;
            } else {
                low = mid;
            }
        }
        0.5 * (low + high)
    };
    // Lower: P(X >= k | p) = 0.025; upper: P(X <= k | p) = 0.025.
    let lower = if k == 0 {
        0.0
    } else {
        solve(&|p| 1.0 - binomial_cdf(k - 1, n, p) >= 0.025)
    };
    let upper = if k == n {
        1.0
    } else {
        solve(&|p| binomial_cdf(k, n, p) <= 0.025)
    };
    (lower, upper)
}

/// The cells measured: the benchmark's A/A cell of the false rollback (2 000 rps, a 1 %
/// share, 1 % errors), the same at 0.1 % and 5 % errors, and at a 5 % share.
const CELLS: [Cell; 4] = [
    Cell {
        rps: 2000.0,
        share: 0.01,
        error_rate: 0.01,
        canary_factor: 1.0,
        stage_s: 1800,
    },
    Cell {
        rps: 2000.0,
        share: 0.01,
        error_rate: 0.001,
        canary_factor: 1.0,
        stage_s: 1800,
    },
    Cell {
        rps: 2000.0,
        share: 0.01,
        error_rate: 0.05,
        canary_factor: 1.0,
        stage_s: 1800,
    },
    Cell {
        rps: 2000.0,
        share: 0.05,
        error_rate: 0.01,
        canary_factor: 1.0,
        stage_s: 1800,
    },
];

#[test]
fn errors_over_stage_keeps_its_level_over_every_look_of_a_stage() {
    if let Some(spec) = std::env::var_os("JUDGE_CALIBRATION") {
        let spec = spec.to_string_lossy().into_owned();
        let mut parts = spec.split(',');
        let stages = parts.next().unwrap_or_default();
        let (alpha, factor) = (parts.next().unwrap_or("0.001"), parts.next().unwrap_or("1"));
        let refused = |what: &str| format!("JUDGE_CALIBRATION={spec}: {what} is not a number");
        let stages: u64 = stages
            .parse()
            .unwrap_or_else(|_| panic!("{}", refused(stages)));
        let slo = SloConfig {
            significance: alpha
                .parse()
                .unwrap_or_else(|_| panic!("{}", refused(alpha))),
            ..Default::default()
        };
        let canary_factor: f64 = factor
            .parse()
            .unwrap_or_else(|_| panic!("{}", refused(factor)));
        for (i, cell) in CELLS.iter().enumerate() {
            let cell = Cell {
                canary_factor,
                ..*cell
            };
            let started = std::time::Instant::now();
            let k = false_alarms(cell, &slo, stages, 1 + i as u64);
            let (low, high) = clopper_pearson(k, stages);
            println!(
                "{cell:?} alpha {}: {k} of {stages} = {:.5} (95 % CP {low:.5}..{high:.5}) in {:?}",
                slo.significance,
                k as f64 / stages as f64,
                started.elapsed()
            );
        }
        return;
    }
    let slo = SloConfig {
        significance: 0.05,
        ..Default::default()
    };
    let stages = 300;
    for (i, cell) in CELLS.iter().enumerate() {
        let k = false_alarms(*cell, &slo, stages, 1 + i as u64);
        // Fails when the count shows a rate above the level (a rule at one look's level,
        // not every look's, fires in 56 of 300 stages of the first cell: checked).
        let (low, _) = clopper_pearson(k, stages);
        assert!(
            low <= slo.significance,
            "{cell:?}: {k} of {stages}, a rate of at least {low:.3} at α = 0.05"
        );
    }
}
