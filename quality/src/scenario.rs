//! The scenarios of issue 15: A/A cells, shared incidents, a service-wide breach, warm-up,
//! error and latency regressions, a slow leak, a dead canary, low traffic and no data.

use crate::service::{Change, Latency, Outage, Service};

/// What a scenario is for, and so which criterion it is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The canary is as good as the stable version: any rollback is false.
    Healthy,
    /// The canary is worse: it should be rolled back, and never promotable before.
    Bad,
    /// The canary is as good as the stable version but the whole service breaches its SLO:
    /// the gate holds it, never promotable and never rolled back.
    Held,
    /// Shown for information (no criterion), e.g. a 60 s warm-up longer than the default.
    Info,
}

impl Kind {
    /// Whether the canary of a scenario of this kind is as good as the stable version, so
    /// that any rollback is false.
    pub fn canary_is_healthy(self) -> bool {
        matches!(self, Kind::Healthy | Kind::Held)
    }
}

/// One scenario: traffic, service, horizon and how often the engine is asked.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub kind: Kind,
    pub rps: f64,
    pub share: f64,
    pub service: Service,
    pub horizon_s: f64,
    pub look_s: f64,
    /// Canary outcomes never reach the gate.
    pub no_outcomes: bool,
}

/// The light-tailed latency of the scenarios' services.
pub const LIGHT: Latency = Latency::LogNormal {
    median_ms: 20.0,
    sigma: 0.5,
};
/// The heavy-tailed latency of the scenarios' services.
pub const HEAVY: Latency = Latency::Pareto {
    scale_ms: 10.0,
    shape: 1.8,
};

fn service(error_rate: f64, latency: Latency, canary: Change) -> Service {
    Service {
        error_rate,
        latency,
        canary,
        outage: None,
    }
}

fn scenario(name: &str, kind: Kind, rps: f64, share: f64, service: Service) -> Scenario {
    Scenario {
        name: name.to_owned(),
        kind,
        rps,
        share,
        service,
        horizon_s: 1800.0,
        look_s: 5.0,
        no_outcomes: false,
    }
}

/// The A/A cells: 10, 100 and 2 000 rps, production at 0.1, 1 and 5 % errors, light and heavy
/// tails, shares 1-50 % (each value in some cell, not every combination).
fn healthy() -> Vec<Scenario> {
    let aa = |rps: f64, share: f64, errors: f64, latency: Latency, tail: &str| {
        let name = format!(
            "A/A {rps} rps {}% canary, {}% errors, {tail}",
            share * 100.0,
            errors * 100.0
        );
        scenario(
            &name,
            Kind::Healthy,
            rps,
            share,
            service(errors, latency, Change::None),
        )
    };
    let mut list = vec![
        aa(2000.0, 0.05, 0.005, LIGHT, "light"),
        aa(2000.0, 0.05, 0.01, LIGHT, "light"),
        aa(2000.0, 0.05, 0.05, LIGHT, "light"),
        aa(2000.0, 0.05, 0.001, LIGHT, "light"),
        aa(2000.0, 0.05, 0.001, HEAVY, "heavy"),
        aa(2000.0, 0.05, 0.05, HEAVY, "heavy"),
        aa(2000.0, 0.01, 0.01, LIGHT, "light"),
        aa(2000.0, 0.01, 0.01, HEAVY, "heavy"),
        aa(2000.0, 0.5, 0.01, LIGHT, "light"),
        aa(100.0, 0.05, 0.01, LIGHT, "light"),
        aa(100.0, 0.5, 0.05, HEAVY, "heavy"),
        aa(10.0, 0.05, 0.01, LIGHT, "light"),
        aa(10.0, 0.5, 0.001, HEAVY, "heavy"),
    ];
    // Shared incidents of 20 s: a database down (30 % errors) mid-stage, and from the stage's
    // first request (where at a 50 % share the canary may reach `min_samples` before the
    // stable version does); a dependency 3x slower mid-stage.
    let outage = |at_s| (at_s, 0.3, 1.0);
    let shared = [
        ("outage at 30 %", outage(300.0), 2000.0, 0.05),
        ("outage at 30 %", outage(300.0), 2000.0, 0.5),
        (
            "outage at 30 % from the stage's start",
            outage(0.0),
            2000.0,
            0.5,
        ),
        (
            "outage at 30 % from the stage's start",
            outage(0.0),
            100.0,
            0.5,
        ),
        ("slowdown 3x", (300.0, 0.0, 3.0), 2000.0, 0.05),
        ("slowdown 3x", (300.0, 0.0, 3.0), 2000.0, 0.5),
        ("slowdown 3x", (300.0, 0.0, 3.0), 100.0, 0.5),
    ];
    for (what, (at_s, error_rate, slower), rps, share) in shared {
        let mut s = service(0.01, LIGHT, Change::None);
        s.outage = Some(Outage {
            at_s,
            for_s: 20.0,
            error_rate,
            slower,
        });
        let name = format!("shared 20 s {what}, {rps} rps {}% canary", share * 100.0);
        list.push(scenario(&name, Kind::Healthy, rps, share, s));
    }
    let breach = service(0.08, HEAVY, Change::None);
    list.push(scenario(
        "service-wide breach: 8% errors, heavy tails",
        Kind::Held,
        2000.0,
        0.05,
        breach,
    ));
    let warm = service(
        0.01,
        LIGHT,
        Change::WarmUp {
            factor: 3.0,
            for_s: 20.0,
        },
    );
    // The warm-up failure was at 10 rps, where the window took minutes to reach
    // `min_samples`.
    for (rps, share) in [(2000.0, 0.05), (10.0, 0.5)] {
        let name = format!(
            "warm-up: 3x latency for 20 s, {rps} rps {}% canary",
            share * 100.0
        );
        list.push(scenario(&name, Kind::Healthy, rps, share, warm));
    }
    let long = service(
        0.01,
        LIGHT,
        Change::WarmUp {
            factor: 3.0,
            for_s: 60.0,
        },
    );
    list.push(scenario(
        "warm-up: 3x latency for 60 s",
        Kind::Info,
        2000.0,
        0.05,
        long,
    ));
    list
}

/// The regressions.
fn bad() -> Vec<Scenario> {
    let at = |name: &str, rps: f64, change: Change, base: f64| {
        let name = format!("{name}, {rps} rps 5% canary");
        scenario(&name, Kind::Bad, rps, 0.05, service(base, LIGHT, change))
    };
    vec![
        at("errors 2x", 2000.0, Change::Errors(2.0), 0.01),
        at("errors 2x", 100.0, Change::Errors(2.0), 0.01),
        at("errors 3x", 2000.0, Change::Errors(3.0), 0.01),
        at("errors 3x", 100.0, Change::Errors(3.0), 0.01),
        at("errors 10x", 2000.0, Change::Errors(10.0), 0.01),
        at("latency +20%", 2000.0, Change::Slower(1.2), 0.01),
        at("latency +50%", 2000.0, Change::Slower(1.5), 0.01),
        at("latency +50%", 100.0, Change::Slower(1.5), 0.01),
        at("latency 2x", 2000.0, Change::Slower(2.0), 0.01),
        at(
            "tail: 2% of requests 5x slower",
            2000.0,
            Change::Tail {
                share: 0.02,
                factor: 5.0,
            },
            0.01,
        ),
        at(
            "tail: 2% of requests 5x slower",
            100.0,
            Change::Tail {
                share: 0.02,
                factor: 5.0,
            },
            0.01,
        ),
        at(
            "leak 0.5% to 10% over 10 min",
            2000.0,
            Change::Leak {
                from: 0.005,
                to: 0.10,
                over_s: 600.0,
            },
            0.005,
        ),
        at("dead canary", 2000.0, Change::Dead, 0.005),
    ]
}

/// Every scenario; `reduced` shortens the A/A and held horizons to 10 min and leaves out the
/// low-traffic cell (a week of simulated time per trial).
pub fn all(reduced: bool) -> Vec<Scenario> {
    let mut list = healthy();
    list.extend(bad());
    let mut low = scenario(
        "low traffic: 1 canary request a minute",
        Kind::Healthy,
        1.0 / 60.0 / 0.05,
        0.05,
        service(0.01, LIGHT, Change::None),
    );
    low.horizon_s = 7.0 * 86_400.0;
    low.look_s = 600.0;
    let mut silent = scenario(
        "no data: canary outcomes never arrive",
        Kind::Info,
        100.0,
        0.05,
        service(0.01, LIGHT, Change::None),
    );
    silent.horizon_s = 600.0;
    silent.no_outcomes = true;
    list.push(silent);
    if reduced {
        for s in list
            .iter_mut()
            .filter(|s| matches!(s.kind, Kind::Healthy | Kind::Held))
        {
            s.horizon_s = s.horizon_s.min(600.0);
        }
    } else {
        list.push(low);
    }
    list
}
