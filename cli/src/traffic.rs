//! The synthetic services behind the gate: each request's success and latency, drawn from a
//! [`ServiceModel`] with the simulation's seeded generator.

use rand::RngExt;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, LogNormal};
use std::time::Duration;

use crate::rollout::TICK_NS;
use crate::scenario::{Bursts, Incident, ServiceModel};

/// The standard normal's 99th percentile: `p99 = median · exp(Z99 · sigma)`.
pub const Z99: f64 = 2.326_347_874_040_841;

/// `p99 / median` of a model that gives neither `p99_ms` nor `sigma`.
pub const DEFAULT_P99_OVER_MEDIAN: f64 = 6.0;

/// The 99th percentile latency `model` draws, in milliseconds, before any incident: its
/// `p99_ms`, or `median_ms · exp(Z99 · sigma)`, or [`DEFAULT_P99_OVER_MEDIAN`] × `median_ms`.
pub fn p99_ms(model: &ServiceModel) -> f64 {
    match (model.sigma, model.p99_ms) {
        (Some(sigma), _) => model.median_ms * (Z99 * sigma).exp(),
        (None, Some(p99)) => p99,
        (None, None) => model.median_ms * DEFAULT_P99_OVER_MEDIAN,
    }
}

/// Simulated nanoseconds as seconds.
pub fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// `seconds` in nanoseconds; `as` saturates, so an absurd length is the end of time (`u64::MAX`).
pub fn nanos(seconds: f64) -> u64 {
    (seconds * 1e9).round() as u64
}

/// The simulated instant `seconds` after `now_ns`, or the end of time (`u64::MAX`) if that is
/// later: a validated scenario never gets there, and a clock that stops there cannot overflow.
pub fn after(now_ns: u64, seconds: f64) -> u64 {
    now_ns.saturating_add(nanos(seconds))
}

/// A synthetic service, ready to draw outcomes.
#[derive(Debug, Clone)]
pub struct Service {
    error_rate: f64,
    latency_ms: LogNormal<f64>,
    bursts: Option<BurstSchedule>,
    incident: Option<Incident>,
    /// When the incident starts and ends, in simulated nanoseconds (its end `u64::MAX` when it
    /// lasts to the end), once its stage has begun.
    incident_ns: Option<(u64, u64)>,
}

/// A service's [`Bursts`] in whole simulated nanoseconds, so that the instant a burst starts or
/// ends ([`BurstSchedule::next_edge`]) and whether one is under way
/// ([`BurstSchedule::under_way`]) are computed alike: the driver cuts a tick at each edge, and
/// the tick's conditions, read at its start, then hold all through it.
#[derive(Debug, Clone, Copy)]
struct BurstSchedule {
    every_ns: u64,
    length_ns: u64,
    error_rate: f64,
}

impl BurstSchedule {
    /// The schedule of validated bursts (`every_s` and `length_s` at least a tick, `length_s`
    /// at most `every_s`).
    fn new(bursts: &Bursts) -> Self {
        Self {
            every_ns: nanos(bursts.every_s).max(1),
            length_ns: nanos(bursts.length_s),
            error_rate: bursts.error_rate,
        }
    }

    /// Whether bursts end (`length_s` below `every_s`): only then do they cut ticks.
    fn ends(&self) -> bool {
        self.length_ns < self.every_ns
    }

    /// Whether every edge falls on the 10 ms grid ([`TICK_NS`]) the ticks start on: those
    /// edges end ticks that end there anyway.
    fn on_the_tick_grid(&self) -> bool {
        self.every_ns.is_multiple_of(TICK_NS) && self.length_ns.is_multiple_of(TICK_NS)
    }

    /// The most ticks its edges cut a simulated second: two each `every_s`.
    fn cuts_per_second(&self) -> f64 {
        2e9 / self.every_ns as f64
    }

    /// Whether a burst is under way at `now_ns`: the first `length_s` of each `every_s`,
    /// counted from the start of the simulation.
    fn under_way(&self, now_ns: u64) -> bool {
        now_ns % self.every_ns < self.length_ns
    }

    /// The next instant after `now_ns` at which a burst starts or ends: `None` when bursts
    /// never end (`length_s = every_s`), or past the end of time.
    fn next_edge(&self, now_ns: u64) -> Option<u64> {
        if self.length_ns >= self.every_ns {
            return None;
        }
        let phase = now_ns % self.every_ns;
        let since = if phase < self.length_ns {
            self.length_ns
        } else {
            self.every_ns
        };
        (now_ns - phase).checked_add(since)
    }
}

/// The most ticks of the driver a simulated second with the bursts of both services: one
/// every 10 ms ([`TICK_NS`]), and one more each time a burst's start or end off the 10 ms grid
/// cuts a tick ([`Service::next_change_ns`]), an upper bound:
///
/// - bursts that never end (`length_s = every_s`) cut nothing;
/// - a schedule equal to the other's (to the nanosecond) cuts nothing more: both time their
///   bursts from the start of the simulation, so their edges are the same instants;
/// - a schedule whose `every_s` and `length_s` are whole ticks cuts nothing, beside any other:
///   its edges are on the grid;
/// - any other schedule cuts up to two ticks each `every_s`.
///
/// Why edges on the grid cost nothing: every edge ends a tick, and between two of them the
/// driver ticks every 10 ms, so the ticks between two consecutive instants on the grid that
/// end one (`m` ticks apart, `n` edges off the grid between them) number the ceilings of the
/// `n + 1` pieces' lengths in ticks. Their lengths add up to `m`, so their fractions, when one
/// is not whole, add up to a whole number at least 1, and the ceilings to at most `m + n`:
/// one tick more for each edge off the grid, whichever instants on the grid end ticks beside
/// them (the driver's tests count such a pair: `the_driver_ticks_as_the_bursts_cut`).
///
/// Below 500: a burst lasts at least a tick, so bursts that end come less often than every
/// 10 ms, each service's edges fewer than 200 a second. (An incident's start and end, and the
/// end of each stage and extension, cut a few more in a run: one more each.)
pub fn ticks_per_second(stable: Option<&Bursts>, canary: Option<&Bursts>) -> f64 {
    let ending = |bursts: Option<&Bursts>| bursts.map(BurstSchedule::new).filter(|b| b.ends());
    let cuts = |b: &BurstSchedule| {
        if b.on_the_tick_grid() {
            0.0
        } else {
            b.cuts_per_second()
        }
    };
    let extra = match (ending(stable), ending(canary)) {
        (None, None) => 0.0,
        (Some(one), None) | (None, Some(one)) => cuts(&one),
        (Some(a), Some(b)) if (a.every_ns, a.length_ns) == (b.every_ns, b.length_ns) => cuts(&a),
        (Some(a), Some(b)) => cuts(&a) + cuts(&b),
    };
    1e9 / TICK_NS as f64 + extra
}

/// What a service is like at one moment: its error rate and how much slower than usual.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conditions {
    /// Probability that a request fails.
    pub error_rate: f64,
    /// Latency multiplier.
    pub latency_factor: f64,
    /// Whether the incident is under way.
    pub incident: bool,
}

impl Service {
    /// Builds the service of a validated model.
    pub fn new(model: &ServiceModel) -> Result<Self, String> {
        let sigma = match (model.sigma, model.p99_ms) {
            (Some(sigma), _) => sigma,
            (None, Some(p99)) => (p99 / model.median_ms).ln() / Z99,
            (None, None) => DEFAULT_P99_OVER_MEDIAN.ln() / Z99,
        };
        let latency_ms = LogNormal::new(model.median_ms.ln(), sigma)
            .map_err(|e| format!("log-normal latency (median_ms, sigma {sigma}): {e}"))?;
        Ok(Self {
            error_rate: model.error_rate,
            latency_ms,
            bursts: model.bursts.as_ref().map(BurstSchedule::new),
            incident: model.incident.clone(),
            incident_ns: None,
        })
    }

    /// Tells the service that stage `number` (from 1) starts at `start_ns`, so that an
    /// incident planned for that stage is scheduled.
    pub fn enter_stage(&mut self, number: usize, start_ns: u64) {
        if let Some(incident) = &self.incident
            && incident.stage == number
            && self.incident_ns.is_none()
        {
            let onset = after(start_ns, incident.after_s);
            let end = incident
                .length_s
                .map_or(u64::MAX, |length| after(onset, length));
            self.incident_ns = Some((onset, end));
        }
    }

    /// When the incident starts, in simulated seconds, once scheduled.
    pub fn incident_onset(&self) -> Option<f64> {
        self.incident_ns.map(|(onset, _)| seconds(onset))
    }

    /// The next instant after `now_ns` at which the service changes, if any: an incident or a
    /// burst starts or ends. The driver ends a tick there, so that each takes effect at the
    /// instant it is given, not at the next tick (an incident that started in the last stage's
    /// last tick met no request; a burst of 11 ms every second, seen at the start of 10 ms
    /// ticks, lasted 20 ms).
    pub fn next_change_ns(&self, now_ns: u64) -> Option<u64> {
        let incident = self
            .incident_ns
            .and_then(|(onset, end)| [onset, end].into_iter().find(|&edge| edge > now_ns));
        let burst = self.bursts.and_then(|b| b.next_edge(now_ns));
        incident.into_iter().chain(burst).min()
    }

    /// The service's state at simulated nanosecond `now_ns`.
    pub fn conditions(&self, now_ns: u64) -> Conditions {
        if let (Some(incident), Some((onset, end))) = (&self.incident, self.incident_ns)
            && (onset..end).contains(&now_ns)
        {
            return Conditions {
                error_rate: incident.error_rate,
                latency_factor: incident.latency_factor,
                incident: true,
            };
        }
        let error_rate = match &self.bursts {
            Some(b) if b.under_way(now_ns) => b.error_rate,
            _ => self.error_rate,
        };
        Conditions {
            error_rate,
            latency_factor: 1.0,
            incident: false,
        }
    }

    /// One request's outcome: whether it succeeded, and its latency.
    #[inline]
    pub fn serve(&self, rng: &mut Xoshiro256PlusPlus, now: &Conditions) -> (bool, Duration) {
        let success = rng.random::<f64>() >= now.error_rate;
        let ms = self.latency_ms.sample(rng) * now.latency_factor;
        // `as` saturates: an absurd draw becomes the longest Duration of u64 nanoseconds.
        (success, Duration::from_nanos((ms * 1e6) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn model() -> ServiceModel {
        ServiceModel {
            error_rate: 0.1,
            median_ms: 20.0,
            p99_ms: Some(120.0),
            ..Default::default()
        }
    }

    /// [`model`] with bursts to `error_rate` for `length_s` of every `every_s`.
    fn bursting(every_s: f64, length_s: f64, error_rate: f64) -> ServiceModel {
        ServiceModel {
            bursts: Some(Bursts {
                every_s,
                length_s,
                error_rate,
            }),
            ..model()
        }
    }

    #[test]
    fn draws_match_the_model() {
        let service = Service::new(&model()).unwrap();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let now = service.conditions(0);
        let mut latencies: Vec<f64> = Vec::new();
        let mut errors = 0;
        for _ in 0..200_000 {
            let (ok, latency) = service.serve(&mut rng, &now);
            errors += u32::from(!ok);
            latencies.push(latency.as_secs_f64() * 1e3);
        }
        latencies.sort_by(f64::total_cmp);
        let at = |q: f64| latencies[(q * latencies.len() as f64) as usize];
        assert!((f64::from(errors) / 200_000.0 - 0.1).abs() < 0.003);
        assert!((at(0.5) - 20.0).abs() < 0.5, "median {}", at(0.5));
        assert!((at(0.99) - 120.0).abs() < 5.0, "p99 {}", at(0.99));
    }

    #[test]
    fn bursts_and_incidents_change_the_conditions() {
        let mut m = bursting(60.0, 5.0, 0.5);
        m.incident = Some(Incident {
            stage: 2,
            after_s: 10.0,
            error_rate: 1.0,
            latency_factor: 3.0,
            length_s: Some(20.0),
        });
        let mut s = Service::new(&m).unwrap();
        let at = nanos;
        assert_eq!(s.conditions(at(2.0)).error_rate, 0.5);
        assert_eq!(s.conditions(at(7.0)).error_rate, 0.1);
        // A burst's end, then the next one's start.
        assert_eq!(s.next_change_ns(0), Some(at(5.0)));
        assert_eq!(s.next_change_ns(at(5.0)), Some(at(60.0)));
        s.enter_stage(1, 0);
        assert_eq!(s.incident_onset(), None);
        s.enter_stage(2, at(100.0));
        assert_eq!(s.incident_onset(), Some(110.0));
        assert!(!s.conditions(at(110.0) - 1).incident);
        let during = s.conditions(at(110.0));
        assert!(during.incident && during.error_rate == 1.0 && during.latency_factor == 3.0);
        assert!(s.conditions(at(130.0) - 1).incident);
        assert!(!s.conditions(at(130.0)).incident);
        // Its start and its end, each the next change until it has passed, and the bursts'
        // edges (under the incident too: a cut there changes nothing).
        assert_eq!(s.next_change_ns(at(109.995)), Some(at(110.0)));
        assert_eq!(s.next_change_ns(at(110.0)), Some(at(120.0)));
        assert_eq!(s.next_change_ns(at(120.0)), Some(at(125.0)));
        assert_eq!(s.next_change_ns(at(125.0)), Some(at(130.0)));
        assert_eq!(s.next_change_ns(at(130.0)), Some(at(180.0)));
    }

    #[test]
    fn the_conditions_hold_from_one_change_to_the_next() {
        // 11 ms every 0.7 s: each edge off the 10 ms ticks' grid.
        let s = Service::new(&bursting(0.7, 0.011, 1.0)).unwrap();
        let mut now = 0;
        let mut in_bursts = 0;
        while now < nanos(7.0) {
            let next = s.next_change_ns(now).unwrap();
            let held = s.conditions(now);
            assert_eq!(s.conditions(next - 1), held, "{now}..{next}");
            assert_ne!(s.conditions(next), held, "{next}");
            if held.error_rate == 1.0 {
                in_bursts += next - now;
            }
            now = next;
        }
        // 10 bursts of 11 ms in 7 s.
        assert_eq!(in_bursts, 10 * nanos(0.011));
        // A burst as long as its period never ends: no change.
        let s = Service::new(&bursting(0.7, 0.7, 1.0)).unwrap();
        assert_eq!(s.next_change_ns(nanos(3.0)), None);
        assert_eq!(s.conditions(nanos(3.0)).error_rate, 1.0);
    }
}
