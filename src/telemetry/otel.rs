//! OpenTelemetry (cargo feature `otel`): the gate's metrics and the specification's spans, over
//! the host's providers. The library starts no exporter and sets no provider: metrics go to
//! the [`Meter`] the host hands to [`observe`] (or the global one, [`observe_globally`]), spans
//! to the global tracer provider (`opentelemetry::global::tracer("promotion-gates")`), a no-op
//! until the host installs one.
//!
//! The metrics are observable instruments, read at each collection from
//! [`window_export`](crate::PromotionGateManager::window_export), which reads as
//! [`health`](crate::PromotionGateManager::health) does (once per collection of each reader,
//! for all the window gauges and the release's environment, stage and threshold, which come
//! from the snapshot the window was read over; with several readers on one provider, see
//! "Several readers" in the [`telemetry`](crate::telemetry) docs), and the gate's counters;
//! every data point has the
//! attribute `promotion.gate`. They carry what the [Prometheus exposition](super::prometheus)
//! carries: the instruments, their units and attributes, the spans and their attributes are in
//! one table in the [`telemetry`](crate::telemetry) module's docs (`docs/telemetry.md`), beside
//! the Prometheus names. The per-request `promotion.route_request` span is made only by
//! [`route_request_observed`](crate::telemetry::route_request_observed), which a host calls for
//! the requests it samples: [`route_request`](crate::PromotionGateManager::route_request) stays
//! span-free and allocation-free.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use opentelemetry::global;
use opentelemetry::metrics::{AsyncInstrument, Meter, ObservableCounter, ObservableGauge};
use opentelemetry::trace::{Span, Tracer};
use opentelemetry::{KeyValue, StringValue, Value};

use crate::config::Environment;
use crate::decision::{Cohort, RoutingDecision};
use crate::error::shortened;
use crate::history::RollbackTrigger;
use crate::judge::{CohortEvidence, Evidence, Finding, Rule};
use crate::manager::PromotionGateManager;
use crate::release::PromotionKind;
use crate::telemetry::window::{LatencyBuckets, RECOMMENDATIONS, recommendation_name};
use crate::telemetry::{ENVIRONMENTS, WindowExport};

mod counters;
mod shared_window;

use counters::{Counted, Outcome, Series};
use shared_window::{Generation, SharedWindow};

/// The instrumentation scope's name: of the global meter and tracer this module uses.
///
/// # Example
/// ```
/// assert_eq!(promotion_gates::telemetry::otel::SCOPE, "promotion-gates");
/// ```
pub const SCOPE: &str = "promotion-gates";

/// The observable instruments of one gate: they report while this value is kept, and nothing
/// once it is dropped. Their callbacks hold the gate weakly, and stay registered with the
/// meter provider (opentelemetry gives no way to remove them): a host that makes its gate anew
/// (a reload) points the instruments at the new gate with [`follow`](Self::follow) rather
/// than observing it again, which would add a set of callbacks (and the time each collection
/// spends in them) at every reload, and start its counters again from the new gate's counts.
/// Once the gate is gone (and until they follow another), the gauges report nothing and the
/// counters their last values: a counter series that skipped a collection would, under delta
/// temporality, count its whole value again when it came back.
#[derive(Debug)]
#[must_use = "the instruments report only while this value is kept"]
pub struct GateInstruments {
    _gauges: Vec<ObservableGauge<f64>>,
    _counters: Vec<ObservableCounter<u64>>,
    observed: Arc<Observed>,
}

impl GateInstruments {
    /// Points the instruments at `gate` from the next collection on: the gate that replaces
    /// the observed one (a reload), under the same or another name.
    ///
    /// Under the same name, the counters go on from where they were: a gate made anew counts
    /// from 0 again (its outcomes; its rollbacks too without a state store), so each counter
    /// series carries what the gate followed so far counted, and no series ever reports less
    /// than it did. Its outcomes are carried, and its rollbacks unless both gates are on one
    /// state store (one SQLite file, however each path spells it: `gate.db`, `./gate.db`, its
    /// absolute path, a symbolic link to it; or the same etcd prefix on a shared endpoint,
    /// with or without a `/` at its end, its host in any case, its port with leading zeros or
    /// HTTP's 80 left out, an IPv6 address however it is written): there both count the stored rollbacks, and none is carried. A new gate opened before the
    /// old one's last rollbacks may not have read them yet: its series stay at their last
    /// values until its counts pass them. Call it before the followed gate is dropped: what
    /// the gate counted after the last collection, if it is gone, is not carried. A gate of
    /// another name starts series of its own, from its counts, or goes on from its name's if
    /// the instruments followed a gate of that name before: the series of a name left are
    /// reported at their last values at every collection (a series that skipped one would,
    /// under delta temporality, count its whole value again when it came back), for the last
    /// 16 names left; one left longer ago is forgotten, and starts again if it is followed
    /// again.
    ///
    /// Following is idempotent for a gate: following the followed gate again changes nothing,
    /// and following again a gate followed before under the name (still alive) takes back what
    /// was carried of it, which it counts itself. Following a gate back onto a store an
    /// earlier reload took away counts that store's rollbacks twice (carried when the store
    /// was left, and counted by the gate back on it).
    ///
    /// # Example
    /// ```
    /// # use promotion_gates::*;
    /// use std::sync::Arc;
    /// let make = || -> Result<Arc<PromotionGateManager>, Error> {
    ///     let slo = SloAdmissionController::new(SloConfig::default())?;
    ///     Ok(Arc::new(PromotionGateManager::new(PromotionConfig::default(), slo)?))
    /// };
    /// let gate = make()?;
    /// let instruments = promotion_gates::telemetry::otel::observe_globally(&gate);
    /// let reloaded = make()?;
    /// instruments.follow(&reloaded);
    /// drop(gate);
    /// # Ok::<(), promotion_gates::Error>(())
    /// ```
    pub fn follow(&self, gate: &Arc<PromotionGateManager>) {
        self.observed.follow(gate);
    }
}

impl Drop for GateInstruments {
    /// The callbacks stay with the meter provider: they report nothing from now on, and let go
    /// of their last read of the window.
    fn drop(&mut self) {
        let mut followed = self.observed.followed();
        followed.gate = Weak::new();
        followed.generation = followed.generation.next();
        followed.counted = Counted::default();
        drop(followed);
        self.observed.window.forget();
    }
}

/// The gate a set of instruments reads, their counters' series, and their shared read of its
/// window.
struct Observed {
    followed: Mutex<Followed>,
    window: SharedWindow,
}

/// The followed gate and its counters' series.
#[derive(Default)]
struct Followed {
    gate: Weak<PromotionGateManager>,
    /// The following of `gate`, which the window gauges' shared read is kept by.
    generation: Generation,
    counted: Counted,
}

impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("live", &self.gate().is_some())
            .finish_non_exhaustive()
    }
}

impl Observed {
    /// A window gauge's reading, from the window read shared by the instruments (at most 64
    /// gauges share one).
    fn gauge<F>(self: &Arc<Self>, read: F) -> Reading
    where
        F: Fn(&WindowExport, &dyn AsyncInstrument<f64>, &[KeyValue]) + Send + Sync + 'static,
    {
        let bit = self.window.next_bit();
        let shared = Arc::clone(self);
        Box::new(move |g, generation, o, a| read(&shared.window.take(g, generation, bit), o, a))
    }

    /// The instruments of a gate: `gate`'s, none of its counter series reported yet.
    fn of(gate: &Arc<PromotionGateManager>) -> Self {
        let followed = Followed {
            gate: Arc::downgrade(gate),
            generation: Generation::default(),
            counted: Counted::of(gate),
        };
        Self {
            followed: Mutex::new(followed),
            window: SharedWindow::default(),
        }
    }

    fn followed(&self) -> std::sync::MutexGuard<'_, Followed> {
        self.followed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Points the instruments at `gate`, its counter series going on from the followed gate's
    /// (see [`GateInstruments::follow`]).
    fn follow(&self, gate: &Arc<PromotionGateManager>) {
        let mut followed = self.followed();
        let old = followed.gate.upgrade();
        let last_of_name = followed.counted.follow(old.as_ref(), gate);
        followed.gate = Arc::downgrade(gate);
        followed.generation = followed.generation.next();
        drop(followed);
        // The old gate (or the one last followed under the new one's name) may go here, with
        // the last owner: not under the lock.
        drop((old, last_of_name));
        self.window.forget();
    }

    /// The observed gate, while it lives, and the generation it is followed at.
    fn gate(&self) -> Option<(Arc<PromotionGateManager>, Generation)> {
        let followed = self.followed();
        let gate = followed.gate.upgrade()?;
        Some((gate, followed.generation))
    }

    /// Observes the counter series `of` selects: `read` of the followed gate while it lives,
    /// each with its attributes (`promotion.gate` first, then `attributes` of the series),
    /// as [`Counted::report`] makes them go on; then those of the names left, at their last
    /// values ([`Counted::report_left`]).
    ///
    /// The values are observed under the lock they are made under: opentelemetry_sdk 0.33
    /// records an observation into every reader of the provider, and a value made before
    /// another reader's but observed after it would reach that reader's aggregation lower
    /// than the one it last reported (under delta temporality, an overflow).
    fn count(
        &self,
        observer: &dyn AsyncInstrument<u64>,
        of: impl Fn(Series) -> bool,
        read: impl FnOnce(&PromotionGateManager) -> Vec<(Series, u64)>,
        attributes: impl Fn(Series) -> Vec<KeyValue>,
    ) {
        let mut followed = self.followed();
        let gate = followed.gate.upgrade();
        let counts = gate.as_deref().map(read).unwrap_or_default();
        let values = followed.counted.report(counts, &of);
        let name = followed.counted.name().to_string();
        let observe = |name: &str, values: Vec<(Series, u64)>| {
            let attrs = [KeyValue::new("promotion.gate", name.to_string())];
            for (series, value) in values {
                let mut all = attrs.to_vec();
                all.extend(attributes(series));
                observer.observe(value, &all);
            }
        };
        observe(&name, values);
        // The names followed before, at their last values: see `Counted::follow`.
        for (name, values) in followed.counted.report_left(&of) {
            observe(name, values);
        }
        drop(followed);
        // The gate may go here, with the last owner: not under the lock.
        drop(gate);
    }
}

/// Registers `gate`'s instruments (listed in the [`telemetry`](crate::telemetry) docs) with
/// the host's global meter provider, under the scope [`SCOPE`].
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// use std::sync::Arc;
/// let gate = Arc::new(PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?);
/// // After the host installed its meter provider (an OTLP exporter, say):
/// let _instruments = promotion_gates::telemetry::otel::observe_globally(&gate);
/// # Ok::<(), promotion_gates::Error>(())
/// ```
pub fn observe_globally(gate: &Arc<PromotionGateManager>) -> GateInstruments {
    observe(gate, &global::meter(SCOPE))
}

/// Registers `gate`'s instruments (listed in the [`telemetry`](crate::telemetry) docs) with
/// `meter`. Each collection reads the gate's window once
/// ([`window_export`](PromotionGateManager::window_export)), for every window gauge: each
/// reader's, when several collect at once (each on its own thread).
///
/// Register each gate once with a meter provider, and gates of distinct names: a data point
/// is told from another only by `promotion.gate`, so a second registration (or a second gate
/// of one name) reports
/// the same series twice, which OpenTelemetry does not refuse (the Prometheus exposition
/// refuses it: [`ExpositionError::SameName`](crate::telemetry::prometheus::ExpositionError::SameName)).
///
/// # Example
/// ```
/// # use promotion_gates::*;
/// use std::sync::Arc;
/// let gate = Arc::new(PromotionGateManager::new(PromotionConfig::default(), SloAdmissionController::new(SloConfig::default())?)?);
/// let meter = opentelemetry::global::meter("my-proxy");
/// let _instruments = promotion_gates::telemetry::otel::observe(&gate, &meter);
/// # Ok::<(), promotion_gates::Error>(())
/// ```
pub fn observe(gate: &Arc<PromotionGateManager>, meter: &Meter) -> GateInstruments {
    let observed = Arc::new(Observed::of(gate));
    let window = Arc::clone(&observed);
    let gauge = |name: &'static str, unit: &'static str, help: &'static str, read: Reading| {
        let gate = Arc::clone(&observed);
        meter
            .f64_observable_gauge(name)
            .with_unit(unit)
            .with_description(help)
            .with_callback(move |observer| {
                with_gate(&gate, |g, generation, attrs| {
                    read(g, generation, observer, attrs)
                });
            })
            .build()
    };
    let gauges = vec![
        gauge(
            "promotion.health_score",
            "1",
            "The canary's health score in the judged window, 0 to 1.",
            window.gauge(|w, o, a| o.observe(w.health.health_score, a)),
        ),
        gauge(
            "promotion.canary_error_rate",
            "1",
            "The new version's error rate in the judged window.",
            window.gauge(|w, o, a| o.observe(w.health.canary_error_rate, a)),
        ),
        gauge(
            "promotion.stable_error_rate",
            "1",
            "The stable version's error rate in the judged window.",
            window.gauge(|w, o, a| o.observe(w.health.production_error_rate, a)),
        ),
        gauge(
            "promotion.recommendation",
            "1",
            "The judge's recommendation on the window: 1 for the current one.",
            window.gauge(|w, o, a| {
                let current = recommendation_name(w.health.recommendation);
                for state in RECOMMENDATIONS {
                    let on = f64::from(u8::from(state == current));
                    o.observe(on, &with(a, "promotion.recommendation", state));
                }
            }),
        ),
        gauge(
            "promotion.rule_fired",
            "1",
            "Whether the judge rule fires on the judged window (1) or not (0, also when it is not judged).",
            window.gauge(per_rule(|finding| finding.is_some_and(|f| f.fired))),
        ),
        gauge(
            "promotion.rule_judged",
            "1",
            "Whether the judge rule was judged on the judged window (1) or skipped (0).",
            window.gauge(per_rule(|finding| finding.is_some())),
        ),
        gauge(
            "promotion.stage",
            "{stage}",
            "The release stage's number.",
            window.gauge(|w, o, a| o.observe(w.stage.get() as f64, a)),
        ),
        gauge(
            "promotion.traffic_percent",
            "%",
            "Share of requests routed to the new version, in percent.",
            window.gauge(|w, o, a| o.observe(w.environment.traffic_percent(), a)),
        ),
        gauge(
            "promotion.slo_threshold",
            "1",
            "The SLO compliance the gate asks for (slo_threshold).",
            window.gauge(|w, o, a| o.observe(w.slo_threshold, a)),
        ),
        gauge(
            "promotion.environment",
            "1",
            "The gate's environment: 1 for the current one.",
            window.gauge(|w, o, a| {
                let current = w.environment.name();
                for env in ENVIRONMENTS {
                    let on = f64::from(u8::from(env.name() == current));
                    o.observe(on, &with(a, "promotion.environment", env.name()));
                }
            }),
        ),
        gauge(
            "promotion.window.requests",
            "{request}",
            "Requests in the judged window.",
            window.gauge(per_cohort(|c| c.requests as f64)),
        ),
        gauge(
            "promotion.window.errors",
            "{request}",
            "Failed requests in the judged window.",
            window.gauge(per_cohort(|c| c.errors as f64)),
        ),
        gauge(
            "promotion.slo_compliance",
            "1",
            "Share of the window's requests that succeeded within the SLO latency target.",
            window.gauge(per_cohort(|c| c.compliance)),
        ),
        gauge(
            "promotion.p99_latency",
            "s",
            "The judge's p99 latency in the window.",
            window.gauge(per_cohort(|c| c.p99.as_secs_f64())),
        ),
        gauge(
            "promotion.window.latency.bucket",
            "{request}",
            "Requests of the judged window whose latency is at or below promotion.le seconds (cumulative, as a histogram's buckets).",
            window.gauge(per_histogram(|h, o, a| {
                for (le, count) in h.buckets() {
                    o.observe(count as f64, &with(a, "promotion.le", le));
                }
            })),
        ),
        gauge(
            "promotion.window.latency.sum",
            "s",
            "The latencies of the judged window's requests, summed, each at its HDR bucket's midpoint.",
            window.gauge(per_histogram(|h, o, a| o.observe(h.sum_seconds, a))),
        ),
        gauge(
            "promotion.window.latency.count",
            "{request}",
            "The judged window's requests with a latency.",
            window.gauge(per_histogram(|h, o, a| o.observe(h.count as f64, a))),
        ),
    ];
    let rollbacks = Arc::clone(&observed);
    let mut counters = vec![
        meter
            .u64_observable_counter("promotion.rollbacks")
            .with_unit("{rollback}")
            .with_description(
                "Rollback events since the gate was built (on a state store: every one stored for the gate), by trigger and first fired rule; a gate followed after a reload goes on from the counts before it.",
            )
            .with_callback(move |observer| {
                // Every cause from the start, at 0, as the Prometheus exposition has it.
                let of = |series| matches!(series, Series::Rollbacks(..));
                rollbacks.count(observer, of, counters::rollback_counts, |series| {
                    let Series::Rollbacks(trigger, rule) = series else {
                        return Vec::new();
                    };
                    vec![
                        KeyValue::new("promotion.trigger", trigger.name()),
                        KeyValue::new("promotion.rule", rule.map_or("none", |r| r.name())),
                    ]
                });
            })
            .build(),
    ];
    counters.extend(Outcome::ALL.map(|outcome| outcome_counter(meter, outcome, &observed)));
    GateInstruments {
        _gauges: gauges,
        _counters: counters,
        observed,
    }
}

/// What one gauge reads from a live gate followed at a generation, given its observer and the
/// gate's attributes.
type Reading = Box<
    dyn Fn(&PromotionGateManager, Generation, &dyn AsyncInstrument<f64>, &[KeyValue]) + Send + Sync,
>;

/// What one window gauge reads from the window, given its observer and the gate's attributes.
type WindowRead = dyn Fn(&WindowExport, &dyn AsyncInstrument<f64>, &[KeyValue]) + Send + Sync;

/// A gauge observed for each cohort, from the window's evidence.
fn per_cohort(value: fn(&CohortEvidence) -> f64) -> Box<WindowRead> {
    Box::new(move |w, o, a| {
        for cohort in Cohort::ALL {
            let attrs = with(a, "promotion.cohort", cohort.name());
            o.observe(value(w.evidence(cohort)), &attrs);
        }
    })
}

/// A gauge observed for each rule of [`Rule::ALL`], from the window's finding of it (if the
/// judge judged it).
fn per_rule(value: fn(Option<&Finding>) -> bool) -> Box<WindowRead> {
    Box::new(move |w, o, a| {
        for &rule in Rule::ALL {
            let on = f64::from(u8::from(value(w.finding(rule))));
            o.observe(on, &with(a, "promotion.rule", rule.name()));
        }
    })
}

/// A gauge observed for each cohort's latency histogram in the window (if it has one), in the
/// exported buckets, with the cohort's attribute.
fn per_histogram(
    value: fn(&LatencyBuckets, &dyn AsyncInstrument<f64>, &[KeyValue]),
) -> Box<WindowRead> {
    Box::new(move |w, o, a| {
        for cohort in Cohort::ALL {
            if let Some(histogram) = w.latency_buckets(cohort) {
                value(&histogram, o, &with(a, "promotion.cohort", cohort.name()));
            }
        }
    })
}

/// The observable counter of `outcome`, in `{outcome}`.
fn outcome_counter(
    meter: &Meter,
    outcome: Outcome,
    observed: &Arc<Observed>,
) -> ObservableCounter<u64> {
    let observed = Arc::clone(observed);
    meter
        .u64_observable_counter(outcome.name())
        .with_unit("{outcome}")
        .with_description(outcome.description())
        .with_callback(move |observer| {
            let series = Series::Outcomes(outcome);
            let read = |gate: &PromotionGateManager| vec![(series, outcome.read(gate))];
            observed.count(observer, |s| s == series, read, |_| Vec::new());
        })
        .build()
}

/// Runs `read` on the observed gate if there is one alive, with the generation it is followed
/// at and its `promotion.gate` attribute. Once the gate is gone, the last read of its window
/// goes too.
fn with_gate(
    observed: &Observed,
    read: impl FnOnce(&PromotionGateManager, Generation, &[KeyValue]),
) {
    match observed.gate() {
        Some((gate, generation)) => {
            let attrs = [KeyValue::new("promotion.gate", gate.gate_name())];
            read(&gate, generation, &attrs);
        }
        None => observed.window.forget(),
    }
}

/// `attrs` plus `key = value`.
fn with(attrs: &[KeyValue], key: &'static str, value: impl Into<Value>) -> Vec<KeyValue> {
    let mut all = attrs.to_vec();
    all.push(KeyValue::new(key, value));
    all
}

/// Ends a span named `name` with `attributes` (and the evidence's, if any) at once: the
/// events it stands for are instants.
fn event_span(name: &'static str, mut attributes: Vec<KeyValue>, evidence: Option<&Evidence>) {
    attributes.extend(evidence.map(evidence_attributes).unwrap_or_default());
    let tracer = global::tracer(SCOPE);
    let mut span = tracer
        .span_builder(name)
        .with_attributes(attributes)
        .start(&tracer);
    span.end();
}

/// The evidence a verdict or a gated promotion rests on, as span attributes.
fn evidence_attributes(evidence: &Evidence) -> Vec<KeyValue> {
    let rules: Vec<StringValue> = evidence.fired().map(|f| f.rule.name().into()).collect();
    let mut attrs = vec![
        KeyValue::new("promotion.rules_fired", Value::Array(rules.into())),
        KeyValue::new("promotion.health_score", evidence.health_score),
        KeyValue::new(
            "promotion.stage",
            i64::try_from(evidence.stage.get()).unwrap_or(i64::MAX),
        ),
        KeyValue::new("promotion.evidence", evidence.to_string()),
    ];
    for (cohort, numbers) in [("canary", &evidence.canary), ("stable", &evidence.stable)] {
        let key = |field: &str| format!("promotion.{cohort}.{field}");
        attrs.extend([
            KeyValue::new(
                key("requests"),
                i64::try_from(numbers.requests).unwrap_or(i64::MAX),
            ),
            KeyValue::new(key("error_rate"), numbers.error_rate),
            KeyValue::new(key("compliance"), numbers.compliance),
            KeyValue::new(key("p99_latency_s"), numbers.p99.as_secs_f64()),
        ]);
    }
    attrs
}

/// The `promotion.rollback` span of one rollback.
pub(crate) fn rollback_span(
    gate: &str,
    reason: &str,
    previous: Environment,
    trigger: RollbackTrigger,
    evidence: Option<&Evidence>,
) {
    let attrs = vec![
        KeyValue::new("promotion.gate", gate.to_string()),
        KeyValue::new("promotion.reason", reason.to_string()),
        KeyValue::new("promotion.previous_env", previous.name()),
        KeyValue::new("promotion.trigger", trigger.name()),
    ];
    event_span("promotion.rollback", attrs, evidence);
}

/// The `promotion.promote` span of one promotion, with the gate's evidence if it was gated.
pub(crate) fn promotion_span(
    gate: &str,
    from: Environment,
    to: Environment,
    kind: PromotionKind,
    evidence: Option<&Evidence>,
) {
    let attrs = vec![
        KeyValue::new("promotion.gate", gate.to_string()),
        KeyValue::new("promotion.from", from.name()),
        KeyValue::new("promotion.to", to.name()),
        KeyValue::new("promotion.traffic_percent", to.traffic_percent()),
        KeyValue::new("promotion.kind", kind.name()),
    ];
    event_span("promotion.promote", attrs, evidence);
}

/// The `promotion.flag` span of one flag change.
pub(crate) fn flag_span(gate: &str, flag: &str, enabled: bool) {
    let attrs = vec![
        KeyValue::new("promotion.gate", gate.to_string()),
        KeyValue::new("promotion.flag", flag.to_string()),
        KeyValue::new("promotion.enabled", enabled),
    ];
    event_span("promotion.flag", attrs, None);
}

/// The `promotion.route_request` span of one decision.
pub(crate) fn route_span(gate: &str, request_id: &str, decision: &RoutingDecision<'_>) {
    event_span(
        "promotion.route_request",
        route_attributes(gate, request_id, decision),
        None,
    );
}

/// The `promotion.route_request` span's attributes. The request id is the client's: at most
/// [`MAX_SHOWN_VALUE_BYTES`](crate::MAX_SHOWN_VALUE_BYTES) of it (cut on a character
/// boundary, followed by `...(N bytes)`), as the log line and error messages show it, so that
/// a client's megabyte id never makes a megabyte attribute.
fn route_attributes(gate: &str, request_id: &str, decision: &RoutingDecision<'_>) -> Vec<KeyValue> {
    vec![
        KeyValue::new("promotion.gate", gate.to_string()),
        KeyValue::new("promotion.request_id", shortened(request_id)),
        KeyValue::new("promotion.is_canary", decision.is_canary),
        KeyValue::new("promotion.environment", decision.target_environment.name()),
        KeyValue::new(
            "promotion.bucket",
            i64::from(decision.reason.bucket().get()),
        ),
        KeyValue::new(
            "promotion.stage",
            i64::try_from(decision.stage.get()).unwrap_or(i64::MAX),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PromotionConfig, SloAdmissionController, SloConfig};

    #[test]
    fn the_route_span_shows_at_most_max_shown_value_bytes_of_the_request_id() {
        let gate = PromotionGateManager::new(
            PromotionConfig::default(),
            SloAdmissionController::new(SloConfig::default()).unwrap(),
        )
        .unwrap();
        let request_id = |attrs: &[KeyValue]| {
            let kv = attrs
                .iter()
                .find(|kv| kv.key.as_str() == "promotion.request_id");
            kv.unwrap().value.to_string()
        };
        let short = "user-7";
        let attrs = route_attributes("g", short, &gate.route_request(short));
        assert_eq!(request_id(&attrs), short);
        let long = "x".repeat(1000);
        let attrs = route_attributes("g", &long, &gate.route_request(&long));
        let max = crate::MAX_SHOWN_VALUE_BYTES;
        assert_eq!(
            request_id(&attrs),
            format!("{}...(1000 bytes)", "x".repeat(max))
        );
        // Cut before a character, not inside one: the 160th byte is the first of the 80th `é`.
        let accents = format!("a{}", "é".repeat(max));
        let attrs = route_attributes("g", &accents, &gate.route_request(&accents));
        let shown = format!("a{}...({} bytes)", "é".repeat(max / 2 - 1), accents.len());
        assert_eq!(request_id(&attrs), shown);
    }

    #[test]
    fn each_follow_takes_the_next_generation_even_of_the_same_gate() {
        // The window gauges' shared read is kept by generation (a gate made at a freed
        // gate's address is another following): a follow that kept it would hand a new
        // gate's gauges the read of the gate followed before.
        let gate = || {
            Arc::new(
                PromotionGateManager::new(
                    PromotionConfig::default(),
                    SloAdmissionController::new(SloConfig::default()).unwrap(),
                )
                .unwrap(),
            )
        };
        let (a, b) = (gate(), gate());
        let observed = Observed::of(&a);
        let generation = |o: &Observed| o.gate().unwrap().1;
        let first = generation(&observed);
        observed.follow(&b);
        let second = generation(&observed);
        assert_ne!(first, second);
        observed.follow(&a);
        assert_ne!(generation(&observed), second);
        assert_ne!(generation(&observed), first);
    }
}
