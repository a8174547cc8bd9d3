//! The route path: the per-thread route table and the debug log of a decision.

use std::cell::{Cell, RefCell};

use super::{PromotionGateManager, generation};
use crate::decision::RoutingDecision;
use crate::snapshot::RouteTable;
use crate::telemetry::LoggedBytes;
use crate::thread_exit;

impl PromotionGateManager {
    /// Routes a request by its id: deterministic, lock-free, allocation-free.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// let gate = PromotionGateManager::new(
    ///     PromotionConfig { environment: Environment::Canary { traffic_percent: 20.0 }, ..Default::default() },
    ///     SloAdmissionController::new(SloConfig::default())?,
    /// )?;
    /// let decision = gate.route_request("user-12345-session");
    /// println!("{}", decision.reason);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    #[inline]
    pub fn route_request(&self, request_id: &str) -> RoutingDecision<'_> {
        self.route_request_bytes(request_id.as_bytes())
    }

    /// Routes a request whose id is arbitrary bytes (not necessarily UTF-8).
    ///
    /// Lock-free, and allocation-free after the calling thread's first call on this gate (which
    /// makes the thread's route cache). It frees nothing either, after a write too: the
    /// snapshot a write replaced is freed by the writer side. At debug level it logs a line
    /// with the id (quoted and escaped, at most
    /// [`MAX_SHOWN_VALUE_BYTES`](crate::MAX_SHOWN_VALUE_BYTES) of it).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// # let gate = PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?;
    /// let decision = gate.route_request_bytes(&[0xde, 0xad, 0xbe, 0xef]);
    /// assert!(!decision.is_canary); // Production routes everyone to stable
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    #[inline(always)]
    pub fn route_request_bytes(&self, request_id: &[u8]) -> RoutingDecision<'_> {
        self.route_logged(request_id, None)
    }

    /// Routes a request with the forcing value the host read from it (from the header or
    /// cookie named by [`Overrides`](crate::Overrides)), or `None` when it carried none.
    ///
    /// `canary` or `stable` (ASCII case ignored) force the request when the config names a
    /// header or a cookie; the config's id lists win over the value (a listed id's value is
    /// not looked at, so it is never counted as ignored). Any other value, or a value with no
    /// header or cookie configured, is ignored (the request is routed by its bucket) and
    /// counted ([`ignored_override_values`](Self::ignored_override_values)). A
    /// forced decision has [`forced`](RoutingDecision::forced) set, and its outcome counts in
    /// neither cohort. Lock-free and allocation-free like
    /// [`route_request_bytes`](Self::route_request_bytes), which it is with `None`.
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// let gate = PromotionGateManager::new(
    ///     PromotionConfig {
    ///         environment: Environment::Canary { traffic_percent: 0.0 },
    ///         overrides: Some(Overrides { header: Some("X-Canary".into()), ..Default::default() }),
    ///         ..Default::default()
    ///     },
    ///     SloAdmissionController::new(SloConfig::default())?,
    /// )?;
    /// let decision = gate.route_request_forced(b"tester-1", Some(b"canary"));
    /// assert!(decision.is_canary);
    /// assert_eq!(decision.forced, Some(Forced { to: Cohort::Canary, by: ForcedBy::Value }));
    /// assert!(!gate.route_request_forced(b"tester-1", Some(b"maybe")).is_canary);
    /// assert_eq!(gate.ignored_override_values(), 1);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    #[inline(always)]
    pub fn route_request_forced(
        &self,
        request_id: &[u8],
        forcing_value: Option<&[u8]>,
    ) -> RoutingDecision<'_> {
        self.route_logged(request_id, forcing_value)
    }

    /// Routes and logs at debug level.
    #[inline(always)]
    fn route_logged(&self, request_id: &[u8], forcing_value: Option<&[u8]>) -> RoutingDecision<'_> {
        let decision = self.decide(request_id, forcing_value);
        if tracing::level_enabled!(tracing::Level::DEBUG) {
            log_route(request_id, &decision);
        }
        decision
    }

    /// The decision of [`route_request_bytes`](Self::route_request_bytes) without its debug
    /// line, for callers that log the route their own way.
    #[inline(always)]
    pub(crate) fn route_unlogged(&self, request_id: &[u8]) -> RoutingDecision<'_> {
        self.decide(request_id, None)
    }

    /// Routes one request: by the per-thread route table alone when the gate lists no override
    /// ids and no forcing value was passed (one predictable branch), else with the snapshot's
    /// overrides.
    #[inline(always)]
    pub(super) fn decide(
        &self,
        request_id: &[u8],
        forcing_value: Option<&[u8]>,
    ) -> RoutingDecision<'_> {
        let table = self.route_table();
        if !table.lists_ids && forcing_value.is_none() {
            table.route(&self.shared.flag_sets, request_id)
        } else {
            self.route_overridden(table.generation, request_id, forcing_value)
        }
    }

    /// Routes with the snapshot's overrides (its id table is not in the `Copy` route table),
    /// read through this thread's reference to the snapshot of the route table's generation.
    /// Out of line: a gate without overrides never calls it. Lock-free and allocation-free
    /// after the thread's first call (one hash-table probe of the listed ids' buckets); that
    /// call also makes the thread's recorder, which counts the ignored forcing values.
    #[inline(never)]
    fn route_overridden(
        &self,
        generation: u64,
        request_id: &[u8],
        forcing_value: Option<&[u8]>,
    ) -> RoutingDecision<'_> {
        let cell = match self.override_cache.get() {
            Some(cell) => cell,
            None => {
                let made = thread_exit::slot(|| {
                    self.override_cache.get_or(|| {
                        self.shared.monitor.prepare_thread();
                        RefCell::new(self.shared.current.load_full())
                    })
                });
                let Some(cell) = made else {
                    return self.route_overridden_shared(request_id, forcing_value);
                };
                // Making the thread's recorder held the window a moment: an evaluation the
                // record path asked for meanwhile is this thread's to make.
                self.shared.evaluate_wanted();
                cell
            }
        };
        // Not reentrant (routing calls nothing of the host's), so the cell is never borrowed
        // here already; if it were, the shared snapshot would serve.
        let Ok(mut cached) = cell.try_borrow_mut() else {
            return self.route_overridden_shared(request_id, forcing_value);
        };
        if cached.route.generation != generation {
            *cached = self.shared.current.load_full();
        }
        let overridden = cached.route_overridden(&self.shared.flag_sets, request_id, forcing_value);
        if overridden.ignored_value {
            self.shared.monitor.ignored_override_value();
        }
        overridden.decision
    }

    /// [`route_overridden`](Self::route_overridden) through the shared snapshot (an `arc-swap`
    /// load), should the thread's reference be unreadable (or the thread exiting).
    #[cold]
    fn route_overridden_shared(
        &self,
        request_id: &[u8],
        forcing_value: Option<&[u8]>,
    ) -> RoutingDecision<'_> {
        let overridden = self.shared.current.load().route_overridden(
            &self.shared.flag_sets,
            request_id,
            forcing_value,
        );
        if overridden.ignored_value {
            self.shared.monitor.ignored_override_value();
        }
        overridden.decision
    }

    /// The decision [`decide`](Self::decide) makes with forcing value `value`, but a value it
    /// ignores is not counted: for a record by id, whose request's route counted it already.
    /// Through the shared snapshot (an `arc-swap` load), as a record by id is no hot call.
    #[cold]
    pub(super) fn decide_uncounted(&self, request_id: &[u8], value: &[u8]) -> RoutingDecision<'_> {
        self.shared
            .current
            .load()
            .route_overridden(&self.shared.flag_sets, request_id, Some(value))
            .decision
    }

    /// The current route table: this thread's cached copy while the generation is unchanged.
    #[inline]
    pub(super) fn route_table(&self) -> RouteTable {
        // Seeing generation N means the snapshot of generation N (or newer) is already in
        // `current` (see `generation.rs`).
        let generation = self.shared.generation.read();
        let cell = match self.route_cache.get() {
            Some(cell) => cell,
            None => match self.first_route_cache() {
                Some(cell) => cell,
                None => return self.shared.current.load().route,
            },
        };
        generation::fresh(generation, cell, || self.shared.current.load().route)
    }

    /// The calling thread's route cache, made at its first route (`None`: the thread is
    /// exiting). Out of line, so that the common path inlines `ThreadLocal::get` alone.
    #[cold]
    #[inline(never)]
    fn first_route_cache(&self) -> Option<&Cell<RouteTable>> {
        thread_exit::slot(|| {
            self.route_cache
                .get_or(|| Cell::new(self.shared.current.load().route))
        })
    }
}

/// Logs one routing decision at debug level (the id as [`LoggedBytes`] shows it: quoted,
/// escaped, at most `MAX_SHOWN_VALUE_BYTES`; `forced` is `none`, `value` or `id_list`, as
/// [`ForcedBy::name`](crate::ForcedBy::name) names it). Out of line: routing inlines only the
/// level check.
#[cold]
#[inline(never)]
fn log_route(request_id: &[u8], decision: &RoutingDecision<'_>) {
    let reason = decision.reason;
    tracing::debug!(
        request_id = %LoggedBytes(request_id),
        is_canary = decision.is_canary,
        forced = decision.forced.map_or("none", |forced| forced.by.name()),
        bucket = reason.bucket().get(),
        threshold = reason.threshold(),
        environment = reason.environment.name(),
        "promotion.route_request"
    );
}
