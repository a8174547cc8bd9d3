//! The scenario tests' traffic driver: seeded requests with given error rates and log-normal
//! latencies, routed and recorded through the public API while a [`ManualClock`] advances by
//! one request interval per request.

use promotion_gates::{
    Evidence, ManualClock, PromotionGateManager, RollbackEvent, RoutingDecision, StageId,
};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use std::sync::Arc;
use std::time::Duration;

/// How one version serves: the share of requests that fail, and a log-normal latency.
#[derive(Debug, Clone, Copy)]
pub struct Version {
    /// Share of requests that fail, `0.0..=1.0`.
    pub error_rate: f64,
    latency_ms: LogNormal<f64>,
}

impl Version {
    /// Fails `error_rate` of requests; latency log-normal with median `median_ms` and
    /// log-standard-deviation `sigma` (p99 = median × e^(2.326·sigma)).
    pub fn new(error_rate: f64, median_ms: f64, sigma: f64) -> Self {
        Self {
            error_rate,
            latency_ms: LogNormal::new(median_ms.ln(), sigma).expect("valid log-normal"),
        }
    }
}

/// A request rate and how each version serves it.
#[derive(Debug, Clone, Copy)]
pub struct Traffic {
    /// Requests per simulated second.
    pub rate: f64,
    /// The new version.
    pub canary: Version,
    /// The stable version.
    pub stable: Version,
}

/// Who sends the requests.
#[derive(Debug, Clone, Copy)]
pub enum Users {
    /// Every request comes from a new user (one route per request).
    Fresh,
    /// Requests come from this many returning users, picked uniformly; each user is routed
    /// once per stage and its decision reused (sticky routing, and cheap in debug builds).
    Returning(usize),
}

/// What one run of the driver saw, from its start until the gate left the stage or the bound.
#[derive(Debug, Clone)]
pub struct Run {
    /// Simulated time from the run's start to its last request.
    pub elapsed: Duration,
    /// Requests recorded.
    pub requests: u64,
    /// Requests recorded for the new version.
    pub canary_requests: u64,
    /// Of those, failed ones.
    pub canary_failures: u64,
    /// Whether the gate left the stage during the run.
    pub left_stage: bool,
    /// The rollback event written during the run, if any.
    pub rollback: Option<RollbackEvent>,
}

impl Run {
    /// Whether the gate rolled back during the run.
    pub fn rolled_back(&self) -> bool {
        self.rollback.is_some()
    }

    /// The rollback event's reason ("" without a rollback).
    pub fn reason(&self) -> &str {
        self.rollback.as_ref().map_or("", |e| e.reason.as_str())
    }

    /// The judge's evidence behind the rollback, if the gate rolled back automatically.
    pub fn evidence(&self) -> Option<&Evidence> {
        self.rollback.as_ref()?.evidence.as_ref()
    }
}

/// Drives one gate with seeded traffic.
pub struct Driver<'g> {
    gate: &'g PromotionGateManager,
    clock: Arc<ManualClock>,
    rng: SmallRng,
    seed: u64,
    users: Users,
    /// Returning users' decisions in `routed_stage`.
    routed: Vec<Option<RoutingDecision<'g>>>,
    routed_stage: Option<StageId>,
    sent: u64,
}

impl<'g> Driver<'g> {
    /// A driver of `gate`, which must read `clock`; `seed` fixes the requests and their ids.
    pub fn new(
        gate: &'g PromotionGateManager,
        clock: Arc<ManualClock>,
        seed: u64,
        users: Users,
    ) -> Self {
        Self {
            gate,
            clock,
            rng: SmallRng::seed_from_u64(seed),
            seed,
            users,
            routed: Vec::new(),
            routed_stage: None,
            sent: 0,
        }
    }

    /// Sends `traffic` for at most `bound` of simulated time; stops early when the gate leaves
    /// the stage it was in at the start (a rollback or any other stage change).
    pub fn run(&mut self, traffic: &Traffic, bound: Duration) -> Run {
        let stage = self.gate.stage();
        let history_before = self.gate.get_rollback_history().len();
        let interval = Duration::from_secs_f64(1.0 / traffic.rate);
        let requests = (bound.as_secs_f64() * traffic.rate).round() as u64;
        let mut run = Run {
            elapsed: Duration::ZERO,
            requests: 0,
            canary_requests: 0,
            canary_failures: 0,
            left_stage: false,
            rollback: None,
        };
        for i in 1..=requests {
            self.clock.advance(interval);
            let decision = self.route(stage);
            let version = if decision.is_canary {
                &traffic.canary
            } else {
                &traffic.stable
            };
            let success = !self.rng.random_bool(version.error_rate);
            let latency = Duration::from_secs_f64(version.latency_ms.sample(&mut self.rng) / 1e3);
            self.gate.record_outcome(&decision, success, latency);
            run.requests += 1;
            if decision.is_canary {
                run.canary_requests += 1;
                run.canary_failures += u64::from(!success);
            }
            run.elapsed = interval * i as u32;
            if self.gate.stage() != stage {
                run.left_stage = true;
                break;
            }
        }
        let history = self.gate.get_rollback_history();
        if run.left_stage && history.len() > history_before {
            run.rollback = history.last().cloned();
        }
        run
    }

    /// The next request's decision.
    fn route(&mut self, stage: StageId) -> RoutingDecision<'g> {
        self.sent += 1;
        match self.users {
            Users::Fresh => self.gate.route_request_bytes(&id(self.seed, self.sent)),
            Users::Returning(count) => {
                if self.routed_stage != Some(stage) {
                    self.routed = vec![None; count];
                    self.routed_stage = Some(stage);
                }
                let user = self.rng.random_range(0..count);
                let gate = self.gate;
                let seed = self.seed;
                *self.routed[user]
                    .get_or_insert_with(|| gate.route_request_bytes(&id(!seed, user as u64)))
            }
        }
    }
}

/// A request or user id: 16 bytes from the seed and a number.
fn id(seed: u64, n: u64) -> [u8; 16] {
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..].copy_from_slice(&n.to_le_bytes());
    bytes
}
