//! The atomics of the recorders: std's, or loom's when the unit tests are built with
//! `--cfg promotion_gates_loom` (a name of its own: some dependencies read a plain `loom` cfg).
//!
//! Only the recorder's protocol (`recorder.rs`) goes through this module, so that the loom
//! model (`loom_model.rs`, `.ci/loom`) explores exactly the loads, stores and fences the route
//! and record paths run. In an ordinary build these are std's types, re-exported: nothing is
//! wrapped, so the record path compiles to the same instructions.

#[cfg(all(test, promotion_gates_loom))]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering, fence};
#[cfg(not(all(test, promotion_gates_loom)))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering, fence};
