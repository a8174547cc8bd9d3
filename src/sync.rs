//! The atomics of the recorders, of the screen's window base and of the route path's
//! generation: std's, or loom's when the unit tests are built with `--cfg
//! promotion_gates_loom` (a name of its own: some dependencies read a plain `loom` cfg).
//!
//! The recorder's protocol (`metrics/recorder.rs`), the window base's
//! (`metrics/window_base.rs`) and the route path's generation (`manager/generation.rs`) go
//! through this module, so that the loom models (`metrics/loom_model.rs`,
//! `manager/generation/loom_model.rs`, `.ci/loom`) explore exactly the loads, stores and
//! fences they run on the record and route paths. Nothing else is modelled: the record path's
//! other atomics (the evaluation's claim and the stage's start in `metrics/mod.rs`, the
//! monitor's latency target and "evaluation wanted" flag) are std's, and the fleet's cache and
//! the snapshot in place are `ArcSwap`s, which the models replace by stand-ins (the order in
//! which a stage is published, `a_published_stage_is_never_foreign`; the snapshot a route
//! loads, `a_route_never_uses_a_table_older_than_the_generation_it_read`). In an ordinary build
//! these are std's types, re-exported: nothing is wrapped, so the record and route paths
//! compile to the same instructions.

#[cfg(all(test, promotion_gates_loom))]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering, fence};
#[cfg(not(all(test, promotion_gates_loom)))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering, fence};
