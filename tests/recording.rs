//! Outcome recording through the public API: exact merged counts while stages change under
//! concurrent recorders, no allocation (nor free) per record, and nothing lost when threads exit.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a broken expectation is a failed test"
)]

mod common;

use promotion_gates::{
    Clock, Cohort, Environment, ManualClock, PromotionConfig, PromotionGateManager, Recommendation,
    Recorded, RoutingDecision, SloAdmissionController, SloConfig,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::time::Duration;

use common::alloc::{Allocated, allocations_during};
use common::log_lines::LogLines;
use common::{canary, gate_for_moves, gate_with_clock};

/// A config that keeps the judge out of the way: no automatic rollback, a week-long window.
fn quiet(environment: Environment) -> PromotionConfig {
    PromotionConfig {
        environment,
        auto_rollback_enabled: false,
        rollback_window_seconds: 7 * 24 * 3600,
        ..Default::default()
    }
}

/// One cohort's counted outcomes, as the judge's evidence counts them.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Counts {
    requests: u64,
    errors: u64,
    /// Successes within the default latency target (500 ms).
    compliant: u64,
}

impl Counts {
    fn add(&mut self, success: bool, latency: Duration) {
        self.requests += 1;
        self.errors += u64::from(!success);
        self.compliant += u64::from(success && latency <= Duration::from_millis(500));
    }

    fn merge(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.compliant += other.compliant;
    }
}

/// Counted outcomes per (stage, cohort).
type Tally = HashMap<(u64, Cohort), Counts>;

/// The `n`-th outcome of a recording thread: 1 % fail, 2 % of the rest are slower than the
/// latency target, the others take 1 to 9 ms.
fn outcome(n: u64) -> (bool, Duration) {
    let success = n % 100 != 7;
    let latency = if n % 50 == 3 {
        Duration::from_millis(600)
    } else {
        Duration::from_millis(1 + n % 9)
    };
    (success, latency)
}

/// Asserts that the judge's window of the current stage holds exactly `tally`'s counts.
fn assert_current_stage_counts(gate: &PromotionGateManager, tally: &Tally, when: &str) {
    let stage = gate.stage().get();
    let expected = |cohort| tally.get(&(stage, cohort)).copied().unwrap_or_default();
    let (canary, production) = (expected(Cohort::Canary), expected(Cohort::Stable));
    let health = gate.monitor_canary_health();
    let evidence = &health.evidence;
    let seen = |c: &promotion_gates::CohortEvidence| Counts {
        requests: c.requests,
        errors: c.errors,
        compliant: c.compliant,
    };
    assert_eq!(
        health.canary_requests, canary.requests,
        "{when}: {evidence}"
    );
    assert_eq!(health.production_requests, production.requests, "{when}");
    assert_eq!(seen(&evidence.canary), canary, "{when}: {evidence}");
    assert_eq!(seen(&evidence.stable), production, "{when}: {evidence}");
}

/// A move of the release made while outcomes are being recorded.
#[derive(Debug, Clone, Copy)]
enum Move {
    Promote(Environment),
    Swap(Environment),
    Rollback,
}

const WORKERS: usize = 4;
/// Requests each worker routes (and records) per phase.
const PER_PHASE: u64 = 6_000;
/// Requests a worker has in flight: routed, not yet recorded.
const IN_FLIGHT: usize = 32;

/// One recording thread's view of a phase: what the gate said it did with each outcome.
#[derive(Default)]
struct Recorder {
    counted: Tally,
    late: u64,
    recorded: u64,
}

impl Recorder {
    /// Records the outcome of the worker's `n`-th request, routed by `decision`.
    fn record(&mut self, gate: &PromotionGateManager, n: u64, decision: &RoutingDecision<'_>) {
        let (success, latency) = outcome(n);
        self.recorded += 1;
        match gate.record_outcome(decision, success, latency) {
            Recorded::Counted => self
                .counted
                .entry((decision.stage.get(), decision.cohort()))
                .or_default()
                .add(success, latency),
            Recorded::Late => {
                // The stage has ended: the writer tells the recorders before it publishes the
                // next one, so that one may take a moment to show.
                let stage = decision.stage;
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while gate.stage() <= stage {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "late, yet stage {stage:?} stays current"
                    );
                    std::thread::yield_now();
                }
                self.late += 1;
            }
            Recorded::Foreign => panic!("a decision of this gate was refused as foreign"),
            Recorded::Forced => panic!("a gate without overrides forced a decision"),
            other => panic!("an outcome this test does not know: {other:?}"),
        }
    }
}

#[test]
fn merged_counts_match_what_was_counted_while_stages_change() {
    let (gate, clock) = gate_for_moves(quiet(canary(10.0)));
    // Each phase: the workers route and record; half-way through, the release moves. The
    // first phase only records, so that the first gated move has data.
    let moves = [
        None,
        Some(Move::Promote(canary(50.0))), // ramp up: gated, needs 100+ healthy samples
        Some(Move::Promote(canary(5.0))),  // ramp down: not gated
        Some(Move::Promote(Environment::Staging)), // gated
        Some(Move::Swap(canary(30.0))),    // operator override, not gated
        Some(Move::Rollback),
        Some(Move::Promote(canary(20.0))), // a new rollout
    ];
    let barrier = Barrier::new(WORKERS + 1);
    let progress = AtomicU64::new(0);
    let counted = Mutex::new(Tally::new());
    let late = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for worker in 0..WORKERS as u64 {
            let (gate, barrier, progress, counted, late) =
                (&gate, &barrier, &progress, &counted, &late);
            scope.spawn(move || {
                let mut n = 0u64;
                for phase in 0..moves.len() as u64 {
                    barrier.wait();
                    let mut mine = Recorder::default();
                    // Requests complete out of order: each new one takes a pseudo-random slot
                    // and the request there completes. Across a move, some outcomes of the old
                    // stage complete after the thread's first of the new stage: those are late.
                    let mut in_flight: [Option<(u64, RoutingDecision<'_>)>; IN_FLIGHT] =
                        [None; IN_FLIGHT];
                    for _ in 0..PER_PHASE {
                        n += 1;
                        let id = [worker.to_le_bytes(), n.to_le_bytes()].concat();
                        let decision = gate.route_request_bytes(&id);
                        let slot = (n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 59) as usize;
                        if let Some((m, earlier)) = in_flight[slot].replace((n, decision)) {
                            mine.record(gate, m, &earlier);
                        }
                        progress.fetch_add(1, Ordering::Relaxed);
                    }
                    for (m, decision) in in_flight.iter_mut().filter_map(Option::take) {
                        mine.record(gate, m, &decision);
                    }
                    let mine_counted: u64 = mine.counted.values().map(|c| c.requests).sum();
                    assert_eq!(mine.recorded, PER_PHASE, "phase {phase}");
                    assert_eq!(mine_counted + mine.late, mine.recorded, "phase {phase}");
                    let mut all = counted.lock().unwrap();
                    for (key, counts) in &mine.counted {
                        all.entry(*key).or_default().merge(counts);
                    }
                    late.fetch_add(mine.late, Ordering::Relaxed);
                    drop(all);
                    barrier.wait();
                }
            });
        }

        let per_phase = WORKERS as u64 * PER_PHASE;
        for (phase, step) in moves.iter().enumerate() {
            clock.advance(Duration::from_secs(1)); // lets the record path evaluate, too
            barrier.wait();
            if let Some(step) = step {
                let half_way = per_phase * phase as u64 + per_phase / 2;
                while progress.load(Ordering::Relaxed) < half_way {
                    std::thread::yield_now();
                }
                let before = gate.stage();
                match *step {
                    Move::Promote(to) => gate.promote(to).unwrap(),
                    Move::Swap(to) => {
                        gate.swap_config(quiet(to)).unwrap();
                    }
                    Move::Rollback => gate.rollback("drill").unwrap(),
                }
                assert!(gate.stage() > before, "{step:?} starts a new stage");
            }
            barrier.wait();
            // Quiescent: every worker has merged its counts and waits for the next phase.
            let counted = counted.lock().unwrap();
            assert_current_stage_counts(&gate, &counted, &format!("after phase {phase}"));
            let total: u64 = counted.values().map(|c| c.requests).sum();
            let late = late.load(Ordering::Relaxed);
            assert_eq!(total + late, per_phase * (phase as u64 + 1));
            assert_eq!(gate.late_outcomes(), late);
        }
    });
    assert_eq!(gate.environment(), canary(20.0));
    assert!(
        gate.get_rollback_history()
            .iter()
            .any(|e| e.reason == "drill")
    );
    let counted = counted.into_inner().unwrap();
    let stages: std::collections::BTreeSet<u64> = counted.keys().map(|(s, _)| *s).collect();
    println!(
        "concurrent recording: {} late outcomes; counted in stages {stages:?}",
        late.into_inner()
    );
    assert_eq!(stages.len(), moves.len(), "every stage counted outcomes");
    assert!(
        gate.late_outcomes() > 0,
        "moves happened with outcomes in flight"
    );
}

/// An outcome of a stage that has ended is late, whether or not the recording thread has
/// recorded in the new stage yet: it is never reported as counted where no reader looks.
#[test]
fn an_outcome_of_an_ended_stage_is_late_on_every_thread() {
    let (gate, _clock) = gate_for_moves(quiet(canary(50.0)));
    let before = gate.route_request("user-1");
    assert_eq!(gate.record_outcome(&before, true, ms(5)), Recorded::Counted);
    gate.swap_config(quiet(canary(60.0))).unwrap();
    // This thread's recorder still holds the old stage; another thread has none yet.
    assert_eq!(gate.record_outcome(&before, false, ms(5)), Recorded::Late);
    std::thread::scope(|scope| {
        scope.spawn(|| assert_eq!(gate.record_outcome(&before, false, ms(5)), Recorded::Late));
    });
    assert_eq!(gate.late_outcomes(), 2);
    let after = gate.route_request("user-1");
    assert_eq!(gate.record_outcome(&after, true, ms(5)), Recorded::Counted);
}

#[test]
fn threads_that_exit_keep_what_they_recorded() {
    let (gate, _clock) = gate_with_clock(quiet(canary(50.0)));
    let mut counted = Tally::new();
    for (batch, (threads, records)) in [(4u64, 1_000u64), (3, 700)].into_iter().enumerate() {
        let tallies: Vec<Tally> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let gate = &gate;
                    scope.spawn(move || {
                        let mut mine = Tally::new();
                        for n in 0..records {
                            let id = format!("batch-{batch}-thread-{t}-request-{n}");
                            let decision = gate.route_request(&id);
                            let (success, latency) = outcome(n);
                            assert_eq!(
                                gate.record_outcome(&decision, success, latency),
                                Recorded::Counted
                            );
                            mine.entry((decision.stage.get(), decision.cohort()))
                                .or_default()
                                .add(success, latency);
                        }
                        mine
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // Every thread of the batch has exited.
        for tally in &tallies {
            for (key, counts) in tally {
                counted.entry(*key).or_default().merge(counts);
            }
        }
        assert_current_stage_counts(&gate, &counted, &format!("after batch {batch}"));
    }
    let total: u64 = counted.values().map(|c| c.requests).sum();
    assert_eq!(total, 4 * 1_000 + 3 * 700);
    assert_eq!(gate.late_outcomes(), 0);
}

/// Runs `test` on a new thread (so that its first record is the thread's first) with a 10 %
/// canary gate, automatic rollback on (so canary errors run the quick screen), and its clock.
fn on_a_new_thread(test: impl FnOnce(&PromotionGateManager, &ManualClock) + Send + 'static) {
    on_a_new_thread_windowed(300, test);
}

/// [`on_a_new_thread`], the gate's window `window_seconds` long.
fn on_a_new_thread_windowed(
    window_seconds: u64,
    test: impl FnOnce(&PromotionGateManager, &ManualClock) + Send + 'static,
) {
    std::thread::spawn(move || {
        let (gate, clock) = gate_with_clock(PromotionConfig {
            environment: canary(10.0),
            feature_flags: vec!["new_api".into()],
            rollback_window_seconds: window_seconds,
            ..Default::default()
        });
        test(&gate, &clock);
    })
    .join()
    .unwrap();
}

/// Decisions routed beforehand, 64 per cohort, served as a mix where every 10th request goes
/// to the canary.
struct Mix<'g> {
    canary: Vec<RoutingDecision<'g>>,
    stable: Vec<RoutingDecision<'g>>,
}

impl<'g> Mix<'g> {
    fn route(gate: &'g PromotionGateManager) -> Self {
        let mut mix = Mix {
            canary: Vec::new(),
            stable: Vec::new(),
        };
        let mut i = 0u64;
        while mix.canary.len() < 64 || mix.stable.len() < 64 {
            let decision = gate.route_request_bytes(&i.to_le_bytes());
            i += 1;
            let cohort = if decision.is_canary {
                &mut mix.canary
            } else {
                &mut mix.stable
            };
            if cohort.len() < 64 {
                cohort.push(decision);
            }
        }
        mix
    }

    /// The `i`-th request's decision.
    fn nth(&self, i: u64) -> &RoutingDecision<'g> {
        if i.is_multiple_of(10) {
            &self.canary[(i / 10) as usize % 64]
        } else {
            &self.stable[i as usize % 64]
        }
    }
}

/// Records measured for allocations.
const MEASURED: u64 = 100_000;

#[test]
fn record_outcome_allocates_nothing_while_no_evaluation_is_due() {
    on_a_new_thread(|gate, _clock| {
        let mix = Mix::route(gate);
        // The thread's first record makes its recorder; the counter sees that.
        let (_, first) = allocations_during(|| gate.record_outcome(mix.nth(1), true, ms(3)));
        assert!(first.count > 0, "the allocation counter works");
        // The gate's first periodic evaluation is due at once (the clock stands still, so no
        // other falls due): it runs within the thread's first 64 records.
        for i in 2..=64 {
            gate.record_outcome(mix.nth(i), true, ms(3));
        }

        // Production fails 1 %, the canary 1 % (every 100th canary request): the screen runs
        // on each of the thread's first 32 canary errors, then on every 16th (its errors come
        // alone, never in a run of 4 or more), and finds nothing.
        let kinds = [
            "stable success",
            "stable failure",
            "canary success",
            "canary failure",
        ];
        let mut calls = [0u64; 4];
        let mut allocations = [0u64; 4];
        for i in 0..MEASURED {
            let decision = mix.nth(i);
            let success = if decision.is_canary {
                i % 1000 != 0
            } else {
                i % 100 != 1
            };
            let kind = usize::from(decision.is_canary) * 2 + usize::from(!success);
            let (recorded, allocated) =
                allocations_during(|| gate.record_outcome(decision, success, ms(2 + i % 7)));
            assert_eq!(recorded, Recorded::Counted);
            calls[kind] += 1;
            allocations[kind] += allocated.count + allocated.frees;
        }
        for ((kind, calls), allocations) in kinds.iter().zip(calls).zip(allocations) {
            assert!(calls >= 100, "{kind}: {calls} calls");
            assert_eq!(
                allocations, 0,
                "{kind}: {allocations} allocations and frees in {calls} calls"
            );
        }
        assert_eq!(gate.environment(), canary(10.0), "the screen must not act");
        assert_eq!(gate.monitor_canary_health().evidence.canary.errors, 100);
    });
}

/// The periodic full evaluation runs on the record path, and must not allocate either.
///
/// The gate's window is 10 s, in slots of 1 s: it starts at the latest reading taken at least a
/// window ago, and only an evaluation leaves a reading (at most one a slot; `health` leaves
/// none). So the canary requests the window holds show that the evaluations ran: 10 to 11 s of
/// them (100 a second) while an evaluation runs about every second, more when one is missed,
/// and the whole stage when none runs.
#[test]
fn record_outcome_allocates_nothing_even_when_an_evaluation_falls_due() {
    on_a_new_thread_windowed(10, |gate, clock| {
        let mix = Mix::route(gate);
        gate.record_outcome(mix.nth(1), true, ms(3)); // the thread's first record
        // 1 ms per record: 100 s, so about 100 periodic evaluations fall due (one a second).
        let (mut allocating_calls, mut total) = (0u64, Allocated::default());
        let mut windows = Vec::new();
        for i in 0..MEASURED {
            clock.advance(ms(1));
            let (_, allocated) =
                allocations_during(|| gate.record_outcome(mix.nth(i), true, ms(3)));
            allocating_calls += u64::from(allocated.count + allocated.frees > 0);
            total.count += allocated.count;
            total.bytes += allocated.bytes;
            total.frees += allocated.frees;
            // Each second once the first window has passed: what the window holds.
            if i % 1000 == 999 && i >= 12_000 {
                windows.push(gate.health().canary_requests);
            }
        }
        // A window of at most 11.1 s each second: a reading (an evaluation) at most 1.1 s
        // after another all through the loop, so at least about 80 of the 100 due ran.
        assert_eq!(windows.len(), 88);
        assert!(
            windows
                .iter()
                .all(|canary| (1_000..=1_110).contains(canary)),
            "canary requests in each second's window: {windows:?}"
        );
        // `record_outcome` documents "no allocation after the thread's first record", and the
        // house style says hot calls never allocate, also the records that run the periodic
        // full evaluation (which reads the window's histograms and writes the findings).
        assert_eq!(
            allocating_calls,
            0,
            "{allocating_calls} of {MEASURED} records allocated or freed: {} allocations, {} KiB, \
             {} frees, one record per evaluation_interval (each with the full evaluation)",
            total.count,
            total.bytes / 1024,
            total.frees
        );
    });
}

/// The window's ring at its fullest: a reading before the window's start and one in each of
/// the 11 slots the window touches. An evaluation in the next slot finds a spare buffer.
#[test]
fn record_outcome_allocates_nothing_when_the_windows_ring_is_full() {
    on_a_new_thread(|gate, clock| {
        let mix = Mix::route(gate);
        gate.record_outcome(mix.nth(1), true, ms(3)); // the thread's first record
        // The default 300 s window's slots are 30 s. One evaluation (130 records, more than
        // `evaluation_interval` since the last) at each of these times: one in slot 0, the
        // last of slot 1 late in it, then one mid-slot in slots 2 to 12.
        let times_ms = [
            10_000, 59_900, 75_000, 105_000, 135_000, 165_000, 195_000, 225_000, 255_000, 285_000,
            315_000, 345_000, 375_000,
        ];
        let mut allocating = Vec::new();
        for at in times_ms {
            clock.set(ms(at));
            let (_, allocated) = allocations_during(|| {
                for i in 0..130 {
                    gate.record_outcome(mix.nth(i), true, ms(3));
                }
            });
            if allocated.count + allocated.frees > 0 {
                allocating.push((at, allocated.count, allocated.bytes, allocated.frees));
            }
        }
        assert_eq!(gate.environment(), canary(10.0), "no rule fired");
        assert!(
            allocating.is_empty(),
            "records allocated or freed at (ms, allocations, bytes, frees): {allocating:?}"
        );
    });
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Dead-canary outcomes on `gate`: every canary request fails, every stable one succeeds,
/// until 40 canary requests failed, or 4 000 requests (the canary may be rolled back meanwhile).
fn record_a_dead_canary(gate: &PromotionGateManager) {
    let mut canary_failures = 0;
    for i in 0..4_000 {
        let decision = gate.route_request(&format!("user-{i}"));
        let canary = decision.cohort() == Cohort::Canary;
        gate.record_outcome(&decision, !canary, ms(3));
        canary_failures += u32::from(canary);
        if canary_failures == 40 {
            return;
        }
    }
}

/// A canary gate without a store, shared with a log handler.
fn shared_canary_gate() -> Arc<PromotionGateManager> {
    Arc::new(common::gate(PromotionConfig {
        environment: canary(10.0),
        ..Default::default()
    }))
}

/// Runs `enable_feature` on `writes_on` on a thread of its own, whose log handler, at the
/// first line (the flag's, logged under the writer lock), runs `meanwhile` and then records a
/// dead canary's outcomes on `records_on`; returns what the write returned, or panics if it
/// has not returned within 30 s (it waits for a lock that will never be let go).
fn write_while_the_handler_records(
    writes_on: &Arc<PromotionGateManager>,
    records_on: &Arc<PromotionGateManager>,
    meanwhile: impl Fn() + Send + Sync + 'static,
) -> std::thread::JoinHandle<()> {
    let armed = AtomicBool::new(true);
    let recording = Arc::clone(records_on);
    let handler = LogLines::calling(move || {
        if armed.swap(false, Ordering::SeqCst) {
            meanwhile();
            record_a_dead_canary(&recording);
        }
    });
    let writer = Arc::clone(writes_on);
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let enabled = handler.during(|| writer.enable_feature("dark-mode"));
        let _ = done.send(enabled);
    });
    std::thread::spawn(move || {
        let enabled = finished
            .recv_timeout(Duration::from_secs(30))
            .expect("the write returned: no record waited for a writer lock");
        assert_eq!(enabled, Ok(()));
    })
}

#[test]
fn a_record_from_inside_the_gates_own_write_never_waits_for_it() {
    // A flag change logs its line under the writer lock. The handler records a dead canary's
    // outcomes from there, and the rule that fires calls for a rollback, which needs that
    // lock: this thread holds it, so waiting for it would be forever. The write makes the
    // rollback as it lets the lock go.
    let gate = shared_canary_gate();
    write_while_the_handler_records(&gate, &gate, || {})
        .join()
        .unwrap();
    assert_eq!(gate.environment(), Environment::Production);
    assert_eq!(gate.rollback_history().len(), 1);
}

#[test]
fn records_from_inside_two_gates_writes_never_wait_for_each_other() {
    // Each thread holds one gate's writer lock (its flag change logging) and records on the
    // other gate from its handler: waiting for the other's lock would wait forever, each for
    // the other. Both writes return, and each makes the other's rollback as it lets go.
    let (a, b) = (shared_canary_gate(), shared_canary_gate());
    let both_inside = Arc::new(Barrier::new(2));
    let (first, second) = (Arc::clone(&both_inside), both_inside);
    let on_a = write_while_the_handler_records(&a, &b, move || {
        first.wait();
    });
    let on_b = write_while_the_handler_records(&b, &a, move || {
        second.wait();
    });
    on_a.join().unwrap();
    on_b.join().unwrap();
    for gate in [&a, &b] {
        assert_eq!(gate.environment(), Environment::Production);
        assert_eq!(gate.rollback_history().len(), 1);
    }
}

/// A manual clock that counts its monotonic reads: the screen firing is seen as the window
/// read it makes.
#[derive(Debug)]
struct CountingClock {
    clock: Arc<ManualClock>,
    reads: AtomicU64,
}

impl Clock for CountingClock {
    fn monotonic(&self) -> Duration {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.clock.monotonic()
    }

    fn wall(&self) -> std::time::SystemTime {
        self.clock.wall()
    }
}

/// The screen's window starts where the last evaluation's did, up to a slot (30 s) earlier
/// than the judge's next: canary errors in that slot can make the screen fire while the full
/// judge, over the newer window, finds nothing. Then the record judges only if a rule fires:
/// no evidence built, no line logged, nothing allocated.
#[test]
fn a_screen_the_judge_does_not_confirm_allocates_nothing() {
    let (allocated, screened, stable) = a_canary_error_at_361_s(true, None);
    // The same without the canary's errors between 30 and 60 s, where the screen finds
    // nothing: the clock reads of the record (its look at the clock, the evaluation then due)
    // are the same but for the screen's window read.
    let (_, unscreened, _) = a_canary_error_at_361_s(false, Some(stable));
    assert!(
        screened > unscreened,
        "the screen fired: {screened} clock reads, {unscreened} without it"
    );
    assert_eq!(allocated, Allocated::default());
}

/// The allocations and the clock reads of the measured thread's first canary error, at 361 s
/// after the scenario this sets up (the canary's errors between 30 and 60 s if `slot_errors`), and
/// the stable successes recorded at 359 s (`stable`, else until the judge would roll back).
fn a_canary_error_at_361_s(slot_errors: bool, stable: Option<u64>) -> (Allocated, u64, u64) {
    let clock = Arc::new(ManualClock::new());
    let counting = Arc::new(CountingClock {
        clock: Arc::clone(&clock),
        reads: AtomicU64::new(0),
    });
    let gate = PromotionGateManager::with_clock(
        PromotionConfig {
            environment: canary(10.0),
            ..Default::default()
        },
        SloAdmissionController::new(SloConfig::default()).unwrap(),
        counting.clone(),
    )
    .unwrap();
    let mix = Mix::route(&gate);
    // A record every millisecond to 60 s, then every 10 ms to 359 s (an evaluation about every
    // second, the last at 359 s; the window's start is then the reading at about 30 s).
    // Stable fails 1.1 %; the canary 3 % between 30 and 60 s (with `slot_errors`), never else.
    let (mut canary_i, mut i) = (0u64, 0u64);
    for at in (1..60_000).chain((60_000..=359_000).step_by(10)) {
        clock.set(ms(at));
        let decision = mix.nth(i);
        let success = if decision.is_canary {
            canary_i += 1;
            !(slot_errors && (30_000..60_000).contains(&at)) || canary_i % 33 != 0
        } else {
            i % 100 != 1
        };
        gate.record_outcome(decision, success, ms(3));
        i += 1;
    }
    assert_eq!(gate.environment(), canary(10.0), "nothing fired yet");
    // Still at 359 s (no evaluation is due): stable successes, which never screen, until the
    // judge over the window from 30 s would roll back (`health` leaves no reading).
    let mut recorded = 0;
    while stable.map_or(
        gate.health().recommendation != Recommendation::Rollback,
        |stable| recorded < stable,
    ) {
        for _ in 0..500 {
            gate.record_outcome(mix.nth(1), true, ms(3));
        }
        recorded += 500;
        assert!(
            recorded < 1_000_000,
            "the window never calls for a rollback"
        );
    }
    assert_eq!(gate.environment(), canary(10.0), "no evaluation ran");
    // At 361 s the judge's window starts at about 60 s, without the canary's errors; the
    // screen's still at 30 s, with them: it fires, and the judge finds nothing.
    let (gate, clock) = (&gate, &clock);
    let (ready, at_361) = (Barrier::new(2), Barrier::new(2));
    let ((_, allocated), reads) = std::thread::scope(|scope| {
        let measured = scope.spawn(|| {
            gate.record_outcome(mix.nth(1), true, ms(3)); // the thread's first record
            ready.wait();
            at_361.wait();
            // The thread's first canary error: it screens.
            let before = counting.reads.load(Ordering::SeqCst);
            let measured = allocations_during(|| gate.record_outcome(mix.nth(0), false, ms(3)));
            (measured, counting.reads.load(Ordering::SeqCst) - before)
        });
        ready.wait();
        clock.set(ms(361_000));
        at_361.wait();
        measured.join().unwrap()
    });
    assert_eq!(gate.environment(), canary(10.0), "no rule fired");
    (allocated, reads, recorded)
}
