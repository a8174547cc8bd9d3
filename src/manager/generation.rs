//! The route path's generation protocol: how a thread's copy of the route table learns that a
//! write published a newer one, reading one shared word per route.
//!
//! A write [publishes](Published::publish): it puts its snapshot in place (the `ArcSwap`), then
//! announces its generation with a `Release` store, then counts its change; a route
//! [`reads`](Published::read) the generation with an `Acquire` load and keeps its thread's copy
//! while the copy's generation is that one, else loads the snapshot's table and keeps it
//! instead ([`fresh`]). So a route never uses a table older than the generation it read, and
//! the first route after a write's announcement uses that write's table (or a newer one). The
//! loom model (`generation/loom_model.rs`, run by `.ci/loom`) checks both, and that a route
//! after the change count moved uses that change's table, under loom's atomics: on this
//! module's code (`publish`, `read`, `fresh`) and the change feed's, with a stand-in for the
//! snapshot in place (an `ArcSwap`, which loom cannot run) that `publish` puts in place as
//! `install` has it put the `ArcSwap`'s.

use std::cell::Cell;

use crossbeam_utils::CachePadded;

use crate::snapshot::RouteTable;
use crate::sync::{AtomicU64, Ordering};

#[cfg(all(test, promotion_gates_loom))]
mod loom_model;

/// The generation of the newest snapshot in place: the only shared word the route path reads.
#[derive(Debug)]
pub(super) struct Published(CachePadded<AtomicU64>);

impl Published {
    /// The generation of the first snapshot.
    pub(super) fn new(generation: u64) -> Self {
        Self(CachePadded::new(AtomicU64::new(generation)))
    }

    /// Publishes `generation` in the protocol's order: `put_in_place` puts its snapshot in
    /// place (returning what it replaced), then the generation is announced, then `count`
    /// counts the change (given what was replaced). `install` and the loom model both publish
    /// through here, so the model checks this order, not a copy of it.
    pub(super) fn publish<B>(
        &self,
        generation: u64,
        put_in_place: impl FnOnce() -> B,
        count: impl FnOnce(&B),
    ) -> B {
        let before = put_in_place();
        self.announce(generation);
        count(&before);
        before
    }

    /// Announces `generation`, once its snapshot is in place. `Release`: a route that reads it
    /// finds that snapshot (or a newer one) in place.
    fn announce(&self, generation: u64) {
        self.0.store(generation, Ordering::Release);
    }

    /// The generation last announced (`Acquire`, pairing with [`announce`](Self::announce)).
    #[inline(always)]
    pub(super) fn read(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// A table that knows its generation: [`RouteTable`], and the loom model's stand-in.
pub(super) trait Generational: Copy {
    /// The generation of the snapshot it was taken from.
    fn generation(&self) -> u64;
}

impl Generational for RouteTable {
    #[inline(always)]
    fn generation(&self) -> u64 {
        self.generation
    }
}

/// The table to route with, for a route that read `generation`: this thread's `copy` while its
/// generation is that one, else the table `load` takes from the snapshot in place, kept in
/// `copy` for the next routes.
#[inline(always)]
pub(super) fn fresh<T: Generational>(
    generation: u64,
    copy: &Cell<T>,
    load: impl FnOnce() -> T,
) -> T {
    let cached = copy.get();
    if cached.generation() == generation {
        return cached;
    }
    let table = load();
    copy.set(table);
    table
}
