//! What reading a decision's flags costs on top of routing, paired: a host that asks whether
//! one flag is on for each request (`contains`) and one that walks every name (`iter`), each
//! beside the route alone and beside the same read of a plain sorted slice of the names (what
//! a decision read before flag sets were reclaimed: a borrowed `&[Box<str>]`), in alternating
//! rounds after a warm-up round (`common::paired`, as `benches/paired.rs` times); the figure is
//! the median over rounds of the per-round difference (this host's speed moves in phases, see
//! BENCHMARKS.md).
//!
//! Staging, so every request goes to the new version and sees the gate's four flags.
//!
//! ```text
//! cargo bench --bench flags   # ~10 s; prints a markdown table
//! PGATE_FLAGS_ONLY=contains PGATE_FLAGS_COUNT=1000 valgrind --tool=callgrind \
//!     target/release/deps/flags-<hash> --bench   # one subject alone, to count instructions
//! ```
//!
//! Subjects for `PGATE_FLAGS_ONLY`: `nothing`, `contains`, `contains_plain`, `iter`,
//! `iter_plain` (10 million routes unless `PGATE_FLAGS_COUNT` says otherwise).
//!
//! Under `cargo test --all-targets` (the `--bench` flag absent) it runs one tiny round.

#![allow(clippy::expect_used, reason = "a failed set-up is a failed bench")]

mod common;

use std::hint::black_box;

use promotion_gates::{Environment, PromotionConfig, PromotionGateManager};

use common::{Cycle, Subject, gate, ids, paired, per_op};

/// What a subject does after each route: reads the decision's flags.
type Read<'r> = &'r dyn Fn(promotion_gates::EnabledFeatures<'_>) -> usize;

/// A subject that routes `ids` in turn, reading each decision's flags with `read`.
fn subject<'a>(
    manager: &'a PromotionGateManager,
    ids: &'a [String],
    read: Read<'a>,
) -> Subject<'a> {
    Box::new(move |n| {
        let mut cursor = Cycle::new(ids);
        for _ in 0..n {
            let decision = manager.route_request(black_box(cursor.next()));
            black_box(read(decision.enabled_features));
        }
    })
}

fn main() {
    let benching = std::env::args().any(|arg| arg == "--bench");
    let (rounds, ops) = if benching { (41, 100_000) } else { (1, 100) };
    let manager = gate(PromotionConfig {
        environment: Environment::Staging,
        feature_flags: ["new_api", "fast_path", "dark_mode", "checkout_v2"]
            .map(String::from)
            .to_vec(),
        gate: "checkout".into(),
        ..Default::default()
    });
    let ids = ids(36);
    let plain: Vec<Box<str>> = ["checkout_v2", "dark_mode", "fast_path", "new_api"]
        .map(Box::from)
        .to_vec();
    let plain = black_box(plain.as_slice());
    let nothing = |_: promotion_gates::EnabledFeatures<'_>| 0;
    let contains =
        |f: promotion_gates::EnabledFeatures<'_>| usize::from(f.contains(black_box("dark_mode")));
    let contains_plain = |f: promotion_gates::EnabledFeatures<'_>| {
        let found = plain
            .binary_search_by(|probe| (**probe).cmp(black_box("dark_mode")))
            .is_ok();
        usize::from(found) + f.set_id() as usize
    };
    let iter = |f: promotion_gates::EnabledFeatures<'_>| f.iter().map(str::len).sum();
    let iter_plain = |f: promotion_gates::EnabledFeatures<'_>| {
        plain.iter().map(|name| name.len()).sum::<usize>() + f.set_id() as usize
    };
    // `PGATE_FLAGS_ONLY=<subject>`: that subject alone, 10 million times (for `perf stat`).
    if let Ok(only) = std::env::var("PGATE_FLAGS_ONLY") {
        let read: Read<'_> = match only.as_str() {
            "contains" => &contains,
            "contains_plain" => &contains_plain,
            "iter" => &iter,
            "iter_plain" => &iter_plain,
            "nothing" => &nothing,
            other => panic!(
                "PGATE_FLAGS_ONLY = {other:?}: one of contains, contains_plain, iter, iter_plain, nothing"
            ),
        };
        let count = std::env::var("PGATE_FLAGS_COUNT").map_or(10_000_000, |n| {
            n.parse()
                .unwrap_or_else(|_| panic!("PGATE_FLAGS_COUNT = {n:?}: a whole number of reads"))
        });
        println!(
            "{only}: {:.1} ns",
            per_op(&mut subject(&manager, &ids, read), count)
        );
        return;
    }
    println!("{rounds} rounds of {ops} routes per subject, alternating\n");
    println!("| subject vs baseline, after a route of 36 B | subject | baseline | difference |");
    println!("| --- | --- | --- | --- |");
    let pairs: [(&str, Read<'_>, Read<'_>); 4] = [
        ("`contains` vs nothing", &contains, &nothing),
        ("`contains` vs a plain slice's", &contains, &contains_plain),
        ("`iter` vs nothing", &iter, &nothing),
        ("`iter` vs a plain slice's", &iter, &iter_plain),
    ];
    for (name, read, baseline) in pairs {
        let (mut a, mut b) = (
            subject(&manager, &ids, read),
            subject(&manager, &ids, baseline),
        );
        let [with, without, difference, _] = paired(rounds, ops, &mut a, &mut b);
        println!("| {name} | {with:.1} ns | {without:.1} ns | {difference:+.1} ns |");
    }
}
