//! A loom model of the route path's generation protocol (`generation.rs`): a writer puts
//! snapshots in place and announces their generations while a thread routes through its copy
//! of the route table. A write runs `install`'s own steps, in `install`'s own order
//! (`Published::publish`: put in place, announce, count); the read and the copy's refresh are
//! the route path's own code, on loom's atomics. The snapshot in place (an `ArcSwap`, which loom
//! cannot run) is a stand-in: an atomic holding the generation of the table in place, stored
//! with `Release` and loaded with `Acquire`, no stronger than an `ArcSwap`'s swap and load. A
//! write may also count its change, on the gate's own `ChangeFeed`: a host that routes once the
//! change count moved uses that change's table. Built only with `--cfg promotion_gates_loom`
//! (`.ci/loom`).

use std::cell::Cell;
use std::time::SystemTime;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;

use super::{Generational, Published, fresh};
use crate::changes::{ChangeFeed, ChangeOrigin, Published as ChangePublished};
use crate::config::PromotionConfig;
use crate::decision::StageId;
use crate::sync::explore;

/// The stand-in for a route table: the generation of the snapshot it was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Table(u64);

impl Generational for Table {
    fn generation(&self) -> u64 {
        self.0
    }
}

/// The stand-in for the snapshot in place, and the generation announced.
struct Gate {
    in_place: AtomicU64,
    published: Published,
}

impl Gate {
    fn new() -> Self {
        Self {
            in_place: AtomicU64::new(1),
            published: Published::new(1),
        }
    }

    /// One write, through `install`'s own `publish`: the stand-in put in place, the generation
    /// announced, then `count` run.
    fn write(&self, generation: u64, count: impl FnOnce()) {
        self.published.publish(
            generation,
            || self.in_place.store(generation, Ordering::Release),
            |()| count(),
        );
    }

    /// One route, as `route_table` takes its table: the generation read, then the thread's
    /// copy or the table in place. Returns the generation read and the table routed with.
    fn route(&self, copy: &Cell<Table>) -> (u64, Table) {
        let generation = self.published.read();
        let table = fresh(generation, copy, || {
            Table(self.in_place.load(Ordering::Acquire))
        });
        (generation, table)
    }
}

/// Two writes (serialized, as the writer lock serializes them) race three routes of one
/// thread: no route uses a table older than the generation it read, the thread's copy never
/// goes back to an older table, and the first route after the writes uses the last one.
/// Announcing with a `Relaxed` store (or reading with a `Relaxed` load), or announcing before
/// the snapshot is in place (`publish`'s two steps swapped), fails the first check.
#[test]
fn a_route_never_uses_a_table_older_than_the_generation_it_read() {
    explore(10_000, || {
        let gate = Arc::new(Gate::new());
        let writer = {
            let gate = Arc::clone(&gate);
            thread::spawn(move || {
                gate.write(2, || ());
                gate.write(3, || ());
            })
        };

        let copy = Cell::new(Table(1));
        let mut newest = 1;
        for _ in 0..3 {
            let (generation, table) = gate.route(&copy);
            assert!(
                table.0 >= generation,
                "routed with generation {} after reading {generation}",
                table.0
            );
            assert!(table.0 >= newest, "went back from {newest} to {}", table.0);
            newest = table.0;
        }
        writer.join().ok();
        assert_eq!(gate.route(&copy), (3, Table(3)));
    });
}

/// A write as `install` makes it, its change counted where `publish` counts it (on the gate's
/// `ChangeFeed`, its own code): the change that made `generation` is change `generation - 1`.
fn write_counted(gate: &Gate, changes: &ChangeFeed, generation: u64) {
    let config = PromotionConfig::default();
    gate.write(generation, || {
        changes.publish(ChangePublished {
            origin: ChangeOrigin::ThisGate,
            before: &config,
            after: &config,
            stage: StageId(1),
            events: &[],
            at: SystemTime::UNIX_EPOCH,
        })
    });
}

/// Two counted writes race a thread that reads the change count, then routes: a route after
/// the count says change N uses that change's table or a newer one (`change_count`'s promise to
/// a host that routes once it moved). Counting a change with a `Relaxed` store (or reading the
/// count with a `Relaxed` load), or before the announcement (in `publish`), fails it.
#[test]
fn a_route_after_the_change_count_moved_uses_that_change() {
    explore(10_000, || {
        let gate = Arc::new(Gate::new());
        let changes = Arc::new(ChangeFeed::default());
        let writer = {
            let (gate, changes) = (Arc::clone(&gate), Arc::clone(&changes));
            thread::spawn(move || {
                write_counted(&gate, &changes, 2);
                write_counted(&gate, &changes, 3);
            })
        };

        let copy = Cell::new(Table(1));
        for _ in 0..2 {
            let counted = changes.count();
            let (_, table) = gate.route(&copy);
            assert!(
                table.0 > counted,
                "routed with generation {} after change {counted}",
                table.0
            );
        }
        writer.join().ok();
    });
}
