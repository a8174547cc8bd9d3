//! What a gate exports to monitoring systems: its rollbacks counted by cause
//! ([`RollbackCount`]), its state in the Prometheus text format ([`prometheus`]), the same
//! metrics and the specification's spans through OpenTelemetry (`otel`, behind the cargo
//! feature `otel`), what they read of the window ([`WindowExport`]), and routing that a host
//! observes ([`route_request_observed`]). The rest of this page is `docs/telemetry.md`,
//! included here so that it is written once.
//!
#![doc = include_str!("../../docs/telemetry.md")]

mod logs;
#[cfg(feature = "otel")]
pub mod otel;
pub mod prometheus;
mod rollbacks;
mod route;
mod window;

#[cfg(test)]
pub(crate) use logs::log_lines;
pub(crate) use logs::{LoggedBytes, VerdictLines, log_rollback};
pub use rollbacks::RollbackCount;
pub(crate) use rollbacks::{RollbackCounts, RollbackTally, rollback_series, same_cause};
pub use route::route_request_observed;
pub(crate) use window::ENVIRONMENTS;
pub use window::WindowExport;
