//! Telemetry through the C ABI: the Prometheus exposition and each cohort's latency
//! histogram, for hosts that serve `/metrics` or merge histograms themselves. Both read the
//! gate without side effects (never its judging calls).

use std::ffi::c_char;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};

use crate::boundary::{copy_out, guard, slice};
use crate::gate::{cold, pgate_gate};
use crate::status::pgate_status;
use promotion_gates::Cohort;
use promotion_gates::telemetry::prometheus::{self, ExpositionError};

/// Writes the gate's metrics in the Prometheus text format 0.0.4 (NUL-terminated) into `buf`
/// of `cap` bytes and its length into `*len_out`: `# HELP` and `# TYPE` lines, every series
/// labelled with the gate's name (`gate="..."`), e.g. `promotion_health_score`,
/// `promotion_canary_error_rate`, `promotion_rollbacks_total{trigger,rule}` and the window's
/// latency histograms `promotion_window_latency_seconds`. Serve it with the content type
/// `text/plain; version=0.0.4`. If `buf` is NULL or too small, only `*len_out` is written and
/// `PGATE_STATUS_BUFFER_TOO_SMALL` is returned (the text may grow by a few bytes between two
/// calls: allocate some slack).
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
    // SAFETY: a pointer to one gate is an array of one; the rest is the caller's contract.
    unsafe { pgate_metrics_prometheus_gates(&gate, 1, buf, cap, len_out) }
}

/// Like `pgate_metrics_prometheus`, for `count` gates in one exposition (each metric family
/// once, one series per gate): a host with several gates serves this at `/metrics`. Two gates
/// of one name (`pgate_gate_name`) would repeat each other's series: that is
/// `PGATE_STATUS_INVALID_ARGUMENT`, and nothing is written. `gates` may be NULL only with
/// `count` 0.
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
    guard(|| {
        // SAFETY: the caller guarantees `count` readable pointers at `gates` (or NULL with 0).
        let handles = unsafe { slice(gates, count) }?;
        let managers = handles
            .iter()
            // SAFETY: the caller keeps every gate alive during the call.
            .map(|&gate| unsafe { cold(gate) }.map(|g| &*g.manager))
            .collect::<Result<Vec<_>, _>>()?;
        let mut text = String::new();
        prometheus::write_exposition(&managers, &mut text).map_err(|e| match e {
            ExpositionError::SameName { .. } => pgate_status::InvalidArgument,
            ExpositionError::Write(_) => pgate_status::Panic,
            _ => pgate_status::InvalidArgument,
        })?;
        // SAFETY: forwarded buffer contract.
        unsafe { copy_out(&text, buf.cast(), cap, len_out) }
    })
}

/// Writes each cohort's latency histogram of the judged window as JSON (NUL-terminated) into
/// `buf` of `cap` bytes and its length into `*len_out`:
/// `{"encoding":"hdrhistogram-v2-deflate-base64","unit":"microseconds","canary":"HISTFAAA...","stable":"HISTFAAA..."}`.
/// Each histogram is HdrHistogram's compressed V2 serialization in base64 (what
/// HdrHistogram's log files hold), readable by its ports in Java, Go, Python, C and Rust,
/// so a host can merge and plot them; values are microseconds (1 µs ..= 60 s, two
/// significant figures); both come from one read of the window. If `buf` is NULL or too
/// small, only `*len_out` is written and `PGATE_STATUS_BUFFER_TOO_SMALL` is returned.
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
