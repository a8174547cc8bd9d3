//! Routing that a host observes: the same decision as the gate's, plus the specification's
//! per-request debug log line and, with the `otel` feature, a `promotion.route_request` span.

use crate::decision::RoutingDecision;
use crate::manager::PromotionGateManager;
use crate::telemetry::LoggedBytes;

/// Routes `request_id` as [`route_request`](PromotionGateManager::route_request) does (the
/// same decision), and reports it: a `tracing` debug event (`Request "…" routed to canary
/// (hash …%)`, the id quoted and escaped, at most
/// [`MAX_SHOWN_VALUE_BYTES`](crate::MAX_SHOWN_VALUE_BYTES) of it) and, with the `otel` feature, a `promotion.route_request` span with
/// `promotion.request_id` (as much of it as the line shows, unquoted), `promotion.is_canary`, `promotion.environment`, `promotion.bucket`
/// and `promotion.stage`. It allocates: call it for the requests a host samples or debugs,
/// and `route_request` (allocation-free, no span; at debug level its own short line) for the
/// others. Each observed route makes one debug line, this one, not the route path's as well.
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
    // Its own line, the specification's: not the route path's as well.
    let decision = gate.route_unlogged(request_id.as_bytes());
    let bucket = decision.reason.bucket();
    let shown = LoggedBytes(request_id.as_bytes());
    tracing::debug!(
        request_id = %shown,
        is_canary = decision.is_canary,
        environment = decision.target_environment.name(),
        "Request {shown} routed to {} (hash {}%)",
        decision.cohort().name(),
        bucket.percent()
    );
    #[cfg(feature = "otel")]
    crate::telemetry::otel::route_span(&gate.gate_name(), request_id, &decision);
    decision
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::route_request_observed;
    use crate::telemetry::log_lines::LogLines;
    use crate::{PromotionConfig, PromotionGateManager, SloAdmissionController, SloConfig};

    #[test]
    fn an_observed_route_logs_one_debug_line() {
        let gate = PromotionGateManager::new(
            PromotionConfig::default(),
            SloAdmissionController::new(SloConfig::default()).unwrap(),
        )
        .unwrap();
        let lines = LogLines::default();
        lines.during(|| {
            route_request_observed(&gate, "user-1");
            assert_eq!(lines.lines_at(Level::DEBUG).len(), 1, "observed route");
            gate.route_request("user-1");
            assert_eq!(lines.lines_at(Level::DEBUG).len(), 2, "plain route");
        });
    }
}
