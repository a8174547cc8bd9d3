//! The atomics of the recorders and of the screen's window base: std's, or loom's when the
//! unit tests are built with `--cfg promotion_gates_loom` (a name of its own: some
//! dependencies read a plain `loom` cfg).
//!
//! The recorder's protocol (`recorder.rs`) and the window base's (`window_base.rs`) go
//! through this module, so that the loom model (`loom_model.rs`, `.ci/loom`) explores exactly
//! the loads, stores and fences they run on the record path. Nothing else is modelled: the
//! record path's other atomics (the evaluation's claim and the stage's start in `mod.rs`, the
//! monitor's latency target and "evaluation wanted" flag) are std's, the fleet's cache is an
//! `ArcSwap`, and the route path's generation cache (`manager/route.rs`: a std atomic beside
//! the snapshot's `ArcSwap`) is not modelled at all; the model checks the order in which a
//! stage is published on a stand-in only (`a_published_stage_is_never_foreign`). In an
//! ordinary build these are std's types, re-exported: nothing is wrapped, so the record path
//! compiles to the same instructions.

#[cfg(all(test, promotion_gates_loom))]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering, fence};
#[cfg(not(all(test, promotion_gates_loom)))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering, fence};
