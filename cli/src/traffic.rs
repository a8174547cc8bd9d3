//! The synthetic services behind the gate: each request's success and latency, drawn from a
//! [`ServiceModel`] with the simulation's seeded generator.

use rand::RngExt;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, LogNormal};
use std::time::Duration;

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
    bursts: Option<Bursts>,
    incident: Option<Incident>,
    /// When the incident starts and ends, in simulated nanoseconds (its end `u64::MAX` when it
    /// lasts to the end), once its stage has begun.
    incident_ns: Option<(u64, u64)>,
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
            bursts: model.bursts.clone(),
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

    /// The next instant after `now_ns` at which the service changes for an incident (it starts
    /// or ends), if any: the driver ends a tick there, so that an incident takes effect at the
    /// instant it is given, not at the next tick (an incident that started in the last stage's
    /// last tick met no request).
    pub fn next_change_ns(&self, now_ns: u64) -> Option<u64> {
        let (onset, end) = self.incident_ns?;
        [onset, end].into_iter().find(|&edge| edge > now_ns)
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
        let now_s = seconds(now_ns);
        let error_rate = match &self.bursts {
            Some(b) if now_s.rem_euclid(b.every_s) < b.length_s => b.error_rate,
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
        let mut m = model();
        m.bursts = Some(Bursts {
            every_s: 60.0,
            length_s: 5.0,
            error_rate: 0.5,
        });
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
        assert_eq!(s.next_change_ns(0), None);
        s.enter_stage(1, 0);
        assert_eq!(s.incident_onset(), None);
        s.enter_stage(2, at(100.0));
        assert_eq!(s.incident_onset(), Some(110.0));
        assert!(!s.conditions(at(110.0) - 1).incident);
        let during = s.conditions(at(110.0));
        assert!(during.incident && during.error_rate == 1.0 && during.latency_factor == 3.0);
        assert!(s.conditions(at(130.0) - 1).incident);
        assert!(!s.conditions(at(130.0)).incident);
        // Its start and its end, each the next change until it has passed.
        assert_eq!(s.next_change_ns(at(109.995)), Some(at(110.0)));
        assert_eq!(s.next_change_ns(at(110.0)), Some(at(130.0)));
        assert_eq!(s.next_change_ns(at(130.0)), None);
    }
}
