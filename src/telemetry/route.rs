//! Routing that a host observes: the same decision as the gate's, plus the specification's
//! per-request debug log line and, with the `otel` feature, a `promotion.route_request` span.

use crate::decision::RoutingDecision;
use crate::manager::PromotionGateManager;

/// Routes `request_id` as [`route_request`](PromotionGateManager::route_request) does (the
/// same decision), and reports it: a `tracing` debug event ("Request … routed to canary
/// (hash …%)") and, with the `otel` feature, a `promotion.route_request` span with
/// `promotion.request_id`, `promotion.is_canary`, `promotion.environment`, `promotion.bucket`
/// and `promotion.stage`. It allocates: call it for the requests a host samples or debugs,
/// and `route_request` (allocation-free, no span, no log) for the others.
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// use promotion_gates::telemetry::route_request_observed;
/// let gate = PromotionGateManager::new(
///     PromotionConfig { environment: Environment::Canary { traffic_percent: 30.0 }, ..Default::default() },
///     SloAdmissionController::new(SloConfig::default())?,
/// )?;
/// let sampled = true; // e.g. the host's trace sampler said so
/// let decision = if sampled { route_request_observed(&gate, "user-7") } else { gate.route_request("user-7") };
/// assert_eq!(decision, gate.route_request("user-7"));
/// # Ok::<(), promotion_gates::Error>(())
/// ```
pub fn route_request_observed<'g>(
    gate: &'g PromotionGateManager,
    request_id: &str,
) -> RoutingDecision<'g> {
    let decision = gate.route_request(request_id);
    let bucket = decision.reason.bucket();
    tracing::debug!(
        request_id,
        is_canary = decision.is_canary,
        environment = decision.target_environment.name(),
        "Request {request_id} routed to {} (hash {}%)",
        decision.cohort().name(),
        bucket.percent()
    );
    #[cfg(feature = "otel")]
    crate::telemetry::otel::route_span(&gate.config().gate, request_id.as_bytes(), &decision);
    decision
}
