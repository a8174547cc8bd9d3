//! What a gate exports to monitoring systems: its rollbacks counted by cause
//! ([`RollbackCount`]) and its state in the Prometheus text format ([`prometheus`]).
//!
//! Every export reads the gate without side effects: the side-effect-free
//! [`health`](crate::PromotionGateManager::health) and
//! [`latency_histogram`](crate::PromotionGateManager::latency_histogram), the config and the
//! counters. Nothing here judges, so scraping as often as a dashboard likes never changes what
//! the gate decides.

pub mod prometheus;
mod rollbacks;

pub use rollbacks::RollbackCount;
pub(crate) use rollbacks::RollbackTally;
