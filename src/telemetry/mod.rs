//! What a gate exports to monitoring systems: its rollbacks counted by cause
//! ([`RollbackCount`]), its state in the Prometheus text format ([`prometheus`]), the
//! specification's gauges and spans through OpenTelemetry (`otel`, behind the cargo feature
//! `otel`), what they read of the window ([`WindowExport`]), and routing that a host observes
//! ([`route_request_observed`]).
//!
//! Every export reads the gate without side effects: the side-effect-free
//! [`health`](crate::PromotionGateManager::health) and
//! [`latency_histogram`](crate::PromotionGateManager::latency_histogram) (both at once, from
//! one read of the window: [`window_export`](crate::PromotionGateManager::window_export)), the
//! config and the counters. Nothing here judges, so scraping as often as a dashboard likes
//! never changes what the gate decides.

mod logs;
#[cfg(feature = "otel")]
pub mod otel;
pub mod prometheus;
mod rollbacks;
mod route;
mod window;

pub(crate) use logs::log_verdict;
pub use rollbacks::RollbackCount;
pub(crate) use rollbacks::RollbackTally;
pub use route::route_request_observed;
pub(crate) use window::ENVIRONMENTS;
pub use window::WindowExport;
