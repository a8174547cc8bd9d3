//! # Guarantees
//!
//! What a host may rely on, stated once. Each item names the test that holds it to account.
//!
//! ## Routing
//! - **Deterministic.** A decision is a pure function of the request id, the salt and the
//!   threshold: the same inputs give the same decision, in every process, on every machine,
//!   in every language. The formula is in [`bucket`](crate::bucket); `tests/vectors` pins it and
//!   every binding routes those vectors (the Python tests recompute them with `hashlib`).
//! - **Monotone.** Raising `traffic_percent` only raises the threshold, so a request that went
//!   to the canary keeps going there (`tests/routing_properties.rs`).
//! - **Exact at the edges.** 0 % routes nobody, 100 % everybody; the resolution is 0.00001 %.
//! - **Independent gates.** Two gates with different salts (by default, different names)
//!   pick nearly independent sets of users: at 10 % each, about 1 % of users are in both.
//!
//! ## Concurrency
//! - **Readers never block.** Routing reads one immutable snapshot (through a per-thread copy
//!   checked against a generation number) and waits for no lock. Between writes a decision
//!   writes only its own thread's memory, but for a thread's first route on a gate, which makes
//!   the thread's copy (the `thread_local` crate takes a process-wide lock for a moment the
//!   first time a thread asks for its id; on a gate with overrides the thread's recorder is
//!   made too, holding the judge's window a moment, and an evaluation the record path asked for
//!   meanwhile is made there, as every holder of the window makes it). The first route of each
//!   thread after a write refreshes its copy with an `arc-swap` load, which writes a slot the
//!   writer reads, and on a gate with overrides takes a reference to the new snapshot and
//!   drops one to the old (reference counts other threads write too). A write publishes a
//!   whole new snapshot, so a decision always belongs to exactly one published state, never a
//!   mix (`tests/concurrency.rs`).
//! - **Writers never lose each other's change.** Promotions, flag changes, rollbacks and config
//!   swaps are serialized; each one reads the latest state and publishes the next.
//! - **Recording never waits for a gate's lock**, not even a thread's first record, which
//!   registers its recorder (`a_threads_first_record_never_waits_for_a_read_holding_the_window`;
//!   the `thread_local` crate takes a process-wide lock for a moment when a thread first asks
//!   for its id). Each thread writes only its own recorder; the judge's periodic evaluation
//!   and the screen after a canary error take the window's lock with `try_lock` and, if it is
//!   held, ask its holder for the evaluation and try once more (the holder may have let go
//!   meanwhile). Every holder looks for an ask as it lets the window go and makes the
//!   evaluation then: a read of the health or a scrape, an evaluation of the record path, a
//!   write that judged (as it lets the writer lock go), a thread's first record or route,
//!   which makes the window's buffers. So a read delays no rollback, and none waits for a
//!   later record or read
//!   (`an_evaluation_asked_for_while_the_record_path_evaluates_is_made_as_it_lets_the_window_go`).
//!   A holder makes four evaluations in turn at most, each asked for while the one before held
//!   the window: a stream of canary errors cannot keep one thread evaluating, and the ask left
//!   after the fourth is taken by the next record's look at the clock. A rollback the record path calls
//!   for (only with `auto_rollback_enabled`: without it, a fired rule is logged and takes no
//!   lock) needs the writer lock: when a host's write holds it, a gate with a store hands the
//!   rollback to its sync thread, and a gate without one leaves it to that write, which makes
//!   it as it lets the lock go. So a record made from a log subscriber or callback, which may
//!   run inside a write of the same gate or of another, never waits for any write
//!   (`a_record_from_inside_the_gates_own_write_never_waits_for_it`,
//!   `records_from_inside_two_gates_writes_never_wait_for_each_other`). `monitor_canary_health`
//!   acts the same way.
//! - **Nothing is lost when threads exit.** A thread's recorder outlives it and is reused by the
//!   next thread (`metrics` tests). A thread may route and record from a thread-local
//!   destructor as it exits, after the gate's own per-thread state is gone: it routes through
//!   the shared snapshot and records on a recorder the exiting threads share, taking turns
//!   (a lock held for one record; made at the first such record) (`tests/thread_exit.rs`; a
//!   build with `panic = "abort"` aborts in one case: see `src/thread_exit.rs`).
//!
//! ## Allocation
//! - `route_request` and `route_request_bytes` allocate nothing after a thread's first call on a
//!   gate (`tests/alloc_free.rs`, `tests/recording.rs`).
//! - `record_outcome` allocates nothing after a thread's first record on a gate, including while
//!   periodic evaluations fall due and when the window's ring is at its fullest; only a rule
//!   that fires allocates, to build its evidence and roll back (`tests/recording.rs`).
//! - Neither frees anything either, after a write too: a write that replaces the snapshot (or
//!   the SLO policy) a thread still holds lets the writer side keep it, and a later write, the
//!   store's sync thread or the gate's drop frees it once no thread holds it, never a route or
//!   a record (which would free every listed id and flag name on the request's thread;
//!   `tests/alloc_free.rs`, `a_route_or_a_record_after_a_write_frees_nothing`). Reading a
//!   decision's flags frees nothing either: a flag set a thread still remembers (the two it
//!   read last) is kept by the writer side when its slot is reused, and freed, once no thread
//!   holds it, by the next write that takes a slot or publishes (a flag change, a promotion, a
//!   rollback, a config or SLO swap), the store's sync thread or the gate's drop; at most two
//!   are kept per reading thread
//!   (`reading_a_decisions_flags_after_the_sets_this_thread_read_are_reclaimed_frees_nothing`,
//!   `the_sets_a_reading_thread_let_go_of_are_freed_and_the_kept_ones_stay_bounded`,
//!   `a_write_that_changes_no_flag_frees_the_flag_sets_a_thread_let_go_of`).
//!   The exception
//!   is the record whose rule fires: the rollback it makes is a write, which may free them.
//! - Through the C ABI the same holds for `pgate_route` and `pgate_record`.
//!
//! ## Memory
//! - About 40 KiB per thread that records on a gate, and about 800 KiB per gate that is recorded
//!   on (the window's readings and an evaluation's scratch space); neither grows with traffic.
//!   A thread's recorder is kept for the next thread when it exits, so their number is the most
//!   threads that recorded at once, and so is an evaluation's CPU: it reads every recorder
//!   (a health read took about 13 ms with 1,000 recorders, 0.05 ms with a few). A host that
//!   records from a bounded pool of threads keeps both bounded.
//! - Flag sets are bounded by what is live, not by history: at most
//!   [`FLAG_SET_SLOTS`](crate::FLAG_SET_SLOTS) (current and recently replaced), two more per
//!   reading thread. Flag names are not: every distinct name ever enabled is kept, once, at
//!   most [`MAX_NAME_BYTES`](crate::MAX_NAME_BYTES) each, until the gate is dropped, because
//!   the C ABI hands out name pointers valid until the gate is freed. Enabling 4,000
//!   flags one by one and disabling them again peaks at about 11 MB of live heap, 1,500 at
//!   about 5 MB (`tests/bounded_memory.rs` holds that one under 8 MiB).
//! - A flag set number is never given to another set; a replaced set stays readable for at
//!   least [`FLAG_SET_GRACE_WRITES`](crate::FLAG_SET_GRACE_WRITES) writes, and after that its
//!   number is reported as unknown, never read as another set (`flags` and `manager` tests,
//!   `ffi/tests/ffi.rs`).
//! - The rollback history is bounded by `max_rollback_history` and by
//!   [`MAX_ROLLBACK_HISTORY_BYTES`](crate::MAX_ROLLBACK_HISTORY_BYTES); what it drops is
//!   counted (`tests/limits.rs`). Every other bound is in [`limits`](crate::limits).
//!
//! ## Errors
//! - No library code panics on any input; invalid input gives an error naming the field and the
//!   value, and a refused call changes nothing (`config`, `manager` and `tests/ffi.rs` tests).
//! - Nothing panics across the C ABI: every exported function catches panics and returns
//!   `PGATE_STATUS_PANIC`.
//!
//! ## Judging
//! - A stage's outcomes are judged only with that stage's outcomes: outcomes of a request
//!   routed before a promotion or rollback are dropped as late.
//! - No ordinary rule fires below `min_samples` (at least 5); the overwhelming-evidence rules
//!   need a p-value below 1e-9 at the worst acceptable error rate given the stable version's
//!   in the same span. Every rule that rolls back compares with the stable version when there
//!   is stable traffic; an absolute limit breached by the whole service, or before the
//!   stable version has `min_samples` to compare with, holds instead. The
//!   measured false-rollback rate of an A/A canary is 0 of 200 runs
//!   (`tests/judge_scenarios.rs`), and the decision-quality benchmark (`quality/`) measures
//!   A/A cells, shared outages and warm-up; see `docs/judge.md`.
//! - A promotion from a canary stage with stable traffic needs positive evidence (unless
//!   `promotion_evidence` is off): confidence sequences over the stage show the canary not
//!   worse than the stable version beyond the tolerated limits.
