//! Telemetry through the C ABI: the Prometheus exposition and each cohort's latency
//! histogram, for hosts that serve `/metrics` or merge histograms themselves. Both read the
//! gate's window as `pgate_read_health` does: they judge nothing themselves, but make the
//! evaluation the record path asked for while they held the window (which may roll back), so
//! like it they are refused from inside the log callback. A host of several processes that
//! counts the outcome counters once for all of them hands its counts to
//! `pgate_metrics_prometheus_counted`.

use std::ffi::c_char;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};

use crate::boundary::{copy_out, guard, slice, text_out};
use crate::gate::{cold, pgate_gate};
use crate::log::refused_inside_callback;
use crate::status::pgate_status;
use promotion_gates::Cohort;
use promotion_gates::PromotionGateManager;
use promotion_gates::telemetry::prometheus::{self, ExpositionError, OutcomeCounts};

/// Writes the gate's metrics in the Prometheus text format 0.0.4 (NUL-terminated) into `buf` of
/// `cap` bytes and its length (without the NUL) into `*len_out`: `# HELP` and `# TYPE` lines, every series labelled
/// with the gate's name (`gate="..."`), e.g. `promotion_health_score`,
/// `promotion_canary_error_rate`, `promotion_rollbacks_total{trigger,rule}` and the window's
/// latency histograms (the untyped series `promotion_window_latency_seconds_bucket`, `_sum` and
/// `_count`, which fall as requests leave the window). Serve it with the content type
/// `text/plain; version=0.0.4`. If `buf` is NULL or `cap` is not above the length, only
/// `*len_out` is written and `PGATE_STATUS_BUFFER_TOO_SMALL` is returned: call again with
/// `*len_out + 1` bytes (the text may grow between two calls: allocate some slack, and call
/// until `PGATE_STATUS_OK`, as `PGATE_STATUS_BUFFER_TOO_SMALL` says). The window is
/// read as `pgate_read_health` reads it, so an evaluation that fell due meanwhile is made right
/// after, on this thread, and may roll the canary back: like `pgate_read_health`, it is refused
/// from inside the log callback (`PGATE_STATUS_INVALID_ARGUMENT`, writing nothing). A NULL
/// `len_out` (`PGATE_STATUS_NULL_POINTER`) or a `cap` above `PTRDIFF_MAX`
/// (`PGATE_STATUS_INVALID_ARGUMENT`) is refused before the window is read: a refused call
/// changes nothing.
///
/// # Safety
/// `gate` must be a live gate; `buf` NULL or valid for `cap` bytes; `len_out` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_metrics_prometheus(
    gate: *const pgate_gate,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> pgate_status {
    let call = "pgate_metrics_prometheus";
    // SAFETY: a pointer to one gate is an array of one; the rest is the caller's contract.
    unsafe { exposition(call, &gate, std::ptr::null(), 1, buf, cap, len_out) }
}

/// Like `pgate_metrics_prometheus`, for `count` gates in one exposition (each metric family
/// once, one series per gate): a host with several gates serves this at `/metrics`. Two gates
/// of one name (`pgate_gate_name`) would repeat each other's series: that is
/// `PGATE_STATUS_INVALID_ARGUMENT`, and nothing is written. `gates` may be NULL only with
/// `count` 0. Refused from inside the log callback, as `pgate_metrics_prometheus` is.
///
/// # Safety
/// `gates` must point to `count` live gates; `buf` NULL or valid for `cap` bytes; `len_out`
/// valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_metrics_prometheus_gates(
    gates: *const *const pgate_gate,
    count: usize,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> pgate_status {
    let call = "pgate_metrics_prometheus_gates";
    // SAFETY: NULL counts are the gates' own; the rest is the caller's contract.
    unsafe { exposition(call, gates, std::ptr::null(), count, buf, cap, len_out) }
}

/// The four outcome counters of a gate's exposition, as a host counts them:
/// `promotion_late_outcomes_total`, `promotion_foreign_outcomes_total`,
/// `promotion_forced_outcomes_total` and `promotion_ignored_override_values_total`.
///
/// A host of several processes whose gates pool each other's outcomes (the nginx module's
/// workers) counts each outcome once, in the process that recorded it first (from the
/// `pgate_recorded` of `pgate_record` or `pgate_record_abandoned_as`: `PGATE_RECORDED_LATE`,
/// `_FOREIGN` or `_FORCED`), and each ignored forcing value in the process that routed it (a
/// value passed to `pgate_route_forced` whose decision has `forced` `PGATE_FORCED_NONE`), in
/// memory the processes share; then every process serves the same counters.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct pgate_outcome_counts {
    /// Outcomes dropped because their stage had ended.
    pub late_outcomes: u64,
    /// Outcomes dropped because their decision names a stage the gate never published.
    pub foreign_outcomes: u64,
    /// Outcomes of requests an override forced, counted in neither cohort.
    pub forced_outcomes: u64,
    /// Forcing values routing ignored.
    pub ignored_override_values: u64,
}

impl From<pgate_outcome_counts> for OutcomeCounts {
    fn from(c: pgate_outcome_counts) -> Self {
        OutcomeCounts {
            late_outcomes: c.late_outcomes,
            foreign_outcomes: c.foreign_outcomes,
            forced_outcomes: c.forced_outcomes,
            ignored_override_values: c.ignored_override_values,
        }
    }
}

/// Like `pgate_metrics_prometheus_gates`, with the host's counts `counts[i]` in place of the
/// four outcome counters of `gates[i]` (see `pgate_outcome_counts`); every other series is the
/// gate's own. `counts` NULL is each gate's own counts (`pgate_metrics_prometheus_gates`);
/// else it must point to `count` counts. A host of several processes serving counts it keeps
/// in shared memory makes every process answer the same counters, which then never go down
/// when a scrape reaches another process. Refused from inside the log callback, as
/// `pgate_metrics_prometheus` is.
///
/// ```c
/// const pgate_gate *gates[] = { gate };
/// pgate_outcome_counts counts = {
///     .late_outcomes = __atomic_load_n(&shared->late, __ATOMIC_RELAXED),
///     .foreign_outcomes = __atomic_load_n(&shared->foreign, __ATOMIC_RELAXED),
///     .forced_outcomes = __atomic_load_n(&shared->forced, __ATOMIC_RELAXED),
///     .ignored_override_values = __atomic_load_n(&shared->ignored, __ATOMIC_RELAXED),
/// };  // all four replace the gate's own: a zero here is served as 0
/// size_t len = 0;
/// pgate_status st = pgate_metrics_prometheus_counted(gates, &counts, 1, buf, cap, &len);
/// // "promotion_forced_outcomes_total{gate=\"checkout\"} 7" when shared->forced is 7
/// ```
///
/// # Safety
/// `gates` must point to `count` live gates; `counts` NULL or pointing to `count` counts;
/// `buf` NULL or valid for `cap` bytes; `len_out` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_metrics_prometheus_counted(
    gates: *const *const pgate_gate,
    counts: *const pgate_outcome_counts,
    count: usize,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> pgate_status {
    let call = "pgate_metrics_prometheus_counted";
    // SAFETY: forwarded contract.
    unsafe { exposition(call, gates, counts, count, buf, cap, len_out) }
}

/// The body of the three exposition calls, `call` being the one made: refused from inside the
/// log callback, and every argument checked before a gate's window is read (the read may make
/// an evaluation, which may roll back): a refused call changes nothing.
///
/// # Safety
/// As `pgate_metrics_prometheus_counted`.
unsafe fn exposition(
    call: &'static str,
    gates: *const *const pgate_gate,
    counts: *const pgate_outcome_counts,
    count: usize,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> pgate_status {
    guard(|| {
        if refused_inside_callback(call).is_some() {
            return Err(pgate_status::InvalidArgument);
        }
        text_out(cap, len_out)?;
        // SAFETY: the caller guarantees `count` readable pointers at `gates` (or NULL with 0).
        let handles = unsafe { slice(gates, count) }?;
        let host_counts = if counts.is_null() {
            None
        } else {
            // SAFETY: non-NULL, and the caller guarantees `count` readable counts there.
            Some(unsafe { slice(counts, count) }?)
        };
        let counted = handles
            .iter()
            .enumerate()
            .map(|(i, &gate)| {
                // SAFETY: the caller keeps every gate alive during the call.
                let manager: &PromotionGateManager = &unsafe { cold(gate) }?.manager;
                let counts = match host_counts {
                    Some(host) => OutcomeCounts::from(host[i]),
                    None => OutcomeCounts::of(manager),
                };
                Ok((manager, counts))
            })
            .collect::<Result<Vec<_>, pgate_status>>()?;
        let mut text = String::new();
        prometheus::write_exposition_counted(&counted, &mut text).map_err(|e| match e {
            ExpositionError::SameName { .. } => pgate_status::InvalidArgument,
            ExpositionError::Write(_) => pgate_status::Panic,
            _ => pgate_status::InvalidArgument,
        })?;
        // SAFETY: forwarded buffer contract.
        unsafe { copy_out(&text, buf.cast(), cap, len_out) }
    })
}

/// Writes each cohort's latency histogram of the judged window as JSON (NUL-terminated) into
/// `buf` of `cap` bytes and its length (without the NUL) into `*len_out`:
/// `{"encoding":"hdrhistogram-v2-deflate-base64","unit":"microseconds","canary":"HISTFAAA...","stable":"HISTFAAA..."}`.
/// Each histogram is HdrHistogram's compressed V2 serialization in base64 (what
/// HdrHistogram's log files hold), readable by its ports in Java, Go, Python, C and Rust,
/// so a host can merge and plot them; values are microseconds (1 µs ..= 60 s, two
/// significant figures); both come from one read of the window. If `buf` is NULL or `cap` is
/// not above the length, only `*len_out` is written and `PGATE_STATUS_BUFFER_TOO_SMALL` is
/// returned: call again with `*len_out + 1` bytes (see `PGATE_STATUS_BUFFER_TOO_SMALL`). Like
/// `pgate_metrics_prometheus`, it reads the window as `pgate_read_health` does (an evaluation
/// that fell due meanwhile is made right after, and may roll back), so it is refused from
/// inside the log callback (`PGATE_STATUS_INVALID_ARGUMENT`, writing nothing). Its outputs
/// are checked before the window is read, as `pgate_metrics_prometheus`'s are.
///
/// # Safety
/// `gate` must be a live gate; `buf` NULL or valid for `cap` bytes; `len_out` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_latency_histograms_json(
    gate: *const pgate_gate,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> pgate_status {
    guard(|| {
        if refused_inside_callback("pgate_latency_histograms_json").is_some() {
            return Err(pgate_status::InvalidArgument);
        }
        // Checked before the window is read (which may make an evaluation, and roll back).
        text_out(cap, len_out)?;
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { cold(gate) }?;
        // Both cohorts from one read of the window.
        let window = gate.manager.window_export();
        let mut serializer = V2DeflateSerializer::new();
        let mut encoded = |cohort| -> Result<String, pgate_status> {
            let histogram = window
                .latency_histogram(cohort)
                .ok_or(pgate_status::Panic)?;
            let mut bytes = Vec::new();
            serializer
                .serialize(histogram, &mut bytes)
                .map_err(|_| pgate_status::Panic)?;
            Ok(STANDARD.encode(bytes))
        };
        let json = serde_json::json!({
            "encoding": "hdrhistogram-v2-deflate-base64",
            "unit": "microseconds",
            "canary": encoded(Cohort::Canary)?,
            "stable": encoded(Cohort::Stable)?,
        })
        .to_string();
        // SAFETY: forwarded buffer contract.
        unsafe { copy_out(&json, buf.cast(), cap, len_out) }
    })
}
