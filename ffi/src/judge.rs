//! Health and SLO compliance through the C ABI.

use std::ffi::c_char;

use crate::boundary::{copy_out, guard, write};
use crate::gate::{cold, pgate_gate};
use crate::log::refused_inside_callback;
use crate::route::pgate_environment;
use crate::status::pgate_status;
use promotion_gates::{CanaryHealth, PromotionGateManager, Recommendation, Rule};

/// What the judge advises.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pgate_recommendation {
    /// Enough data, no rule fired, score >= 0.9, and the canary shown not worse than the
    /// stable version beyond the tolerated limits: promotable.
    Healthy = 0,
    /// Too little data, a finding that holds (the whole service breaches its SLO), a score
    /// below 0.9, or non-inferiority not yet shown; no rule fired.
    Monitor = 1,
    /// A rule fired (`health_score` fires once the score's upper confidence bound is below
    /// 0.8): the gate rolls back, or would with auto rollback on.
    Rollback = 2,
    /// The canary has reported no outcome for `no_data_ms` while some were due: never
    /// promotable; check that the host records canary outcomes.
    NoData = 3,
}

/// Bits of `pgate_health.rules_fired`, one per rule of the judge.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pgate_rule {
    /// Compliance below `slo_threshold`.
    SloCompliance = 1,
    /// Error rate above `max_error_rate`.
    ErrorRateMax = 2,
    /// Error rate above `error_rate_ratio_limit` x the stable version's.
    ErrorRateVsStable = 4,
    /// Errors improbable at any acceptable rate, before `min_samples`.
    OverwhelmingErrors = 8,
    /// p99 above the stable version's x `p99_ratio_limit`.
    P99VsStable = 16,
    /// p99 above `p99_budget_ms`.
    P99Budget = 32,
    /// Health score surely below 0.8: its upper confidence bound is.
    HealthScore = 64,
    /// Errors in a burst span (the current one, or since the one before it) improbable at any
    /// acceptable rate given the stable version's in the same span.
    ErrorBurst = 128,
    /// Over the stage, the error rate surely above the stable version's beyond the margin.
    ErrorsOverStage = 256,
    /// Over the stage after warm-up, the latency distribution surely slower than tolerated.
    LatencyShift = 512,
    /// No canary outcome for `no_data_ms` (holds; never set in `rules_fired`).
    NoData = 1024,
}

impl pgate_rule {
    /// The rule's bit, or `None` for a rule the C ABI has no constant for yet (a later core).
    fn of(rule: Rule) -> Option<Self> {
        Some(match rule {
            Rule::SloCompliance => pgate_rule::SloCompliance,
            Rule::ErrorRateMax => pgate_rule::ErrorRateMax,
            Rule::ErrorRateVsStable => pgate_rule::ErrorRateVsStable,
            Rule::OverwhelmingErrors => pgate_rule::OverwhelmingErrors,
            Rule::P99VsStable => pgate_rule::P99VsStable,
            Rule::P99Budget => pgate_rule::P99Budget,
            Rule::HealthScore => pgate_rule::HealthScore,
            Rule::ErrorBurst => pgate_rule::ErrorBurst,
            Rule::ErrorsOverStage => pgate_rule::ErrorsOverStage,
            Rule::LatencyShift => pgate_rule::LatencyShift,
            Rule::NoData => pgate_rule::NoData,
            _ => return None,
        })
    }
}

/// The canary's health in the current window (see the Rust `CanaryHealth`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct pgate_health {
    /// The stage judged.
    pub stage: u64,
    /// Requests to the new version in the window.
    pub canary_requests: u64,
    /// Requests to the stable version in the window.
    pub production_requests: u64,
    /// The new version's p99 latency, in nanoseconds.
    pub canary_p99_ns: u64,
    /// The stable version's p99 latency, in nanoseconds.
    pub production_p99_ns: u64,
    /// The canary share (100 in Staging, 0 in Production).
    pub traffic_percent: f64,
    /// The new version's error rate.
    pub canary_error_rate: f64,
    /// The stable version's error rate.
    pub production_error_rate: f64,
    /// The new version's share of requests that succeeded within the latency target.
    pub canary_compliance: f64,
    /// 1.0 minus the penalties, in 0..=1.
    pub health_score: f64,
    /// The environment judged.
    pub environment: pgate_environment,
    /// HEALTHY, MONITOR, ROLLBACK or NO_DATA.
    pub recommendation: pgate_recommendation,
    /// The rules that fired, as a bitwise OR of `pgate_rule` values.
    pub rules_fired: u32,
    /// Whether the new version has at least `min_samples` samples in the window, of its outcomes
    /// and of its latencies after the stage's warm-up (`warm_up_ms`), or the stage as a whole
    /// shows it not worse than the stable version (a low-traffic canary whose window never
    /// holds `min_samples`).
    pub sufficient_data: bool,
}

/// A buffer of this many bytes always holds the evidence line of `pgate_monitor_health`
/// (longer evidence is cut at a character boundary with `...`).
pub const PGATE_EVIDENCE_CAPACITY: usize = 4096;

/// The evidence line, cut to fit [`PGATE_EVIDENCE_CAPACITY`] with its NUL.
fn bounded(mut text: String) -> String {
    if text.len() < PGATE_EVIDENCE_CAPACITY {
        return text;
    }
    let mut end = PGATE_EVIDENCE_CAPACITY - 4;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str("...");
    text
}

/// Judges the canary now and writes its health to `*out`. Like the Rust
/// `monitor_canary_health`, this rolls a canary back if a rule fired and
/// `auto_rollback_enabled`. If `evidence` is not NULL, the evidence line (NUL-terminated) is
/// copied into it and its length (without the NUL) into `*evidence_len`; if `evidence_cap` is
/// not above the length, `*out` is still written, `*evidence_len` holds the length and
/// `PGATE_STATUS_BUFFER_TOO_SMALL` is returned (the line needs `*evidence_len + 1` bytes, see
/// `PGATE_STATUS_BUFFER_TOO_SMALL`). Judging again changes the window, so pass `PGATE_EVIDENCE_CAPACITY` bytes, which
/// always suffice, rather than retrying. `pgate_read_health` reads the same without judging.
///
/// # Safety
/// `gate` must be a live gate; `out` valid for a write; `evidence` NULL or valid for
/// `evidence_cap` bytes; `evidence_len` NULL (only if `evidence` is NULL) or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_monitor_health(
    gate: *const pgate_gate,
    out: *mut pgate_health,
    evidence: *mut c_char,
    evidence_cap: usize,
    evidence_len: *mut usize,
) -> pgate_status {
    let call = "pgate_monitor_health";
    // SAFETY: forwarded contract.
    unsafe {
        health_out(call, gate, out, evidence, evidence_cap, evidence_len, |m| {
            m.monitor_canary_health()
        })
    }
}

/// Reads the canary's health over the current window, as `pgate_monitor_health` judges it,
/// without side effects of its own (the Rust `health`): its judgement never rolls back and
/// leaves the window as it was, so a status page or a metrics scrape may call it as often as
/// it likes. A rule may show as fired here; the gate acts on it at its next judgement (the
/// record path judges by itself). Reading never delays that judgement: an evaluation that fell
/// due while this read held the window is made right after it, on this thread, as the record
/// path would have made it (see the Rust `health`), so that evaluation, not this read, may
/// roll the canary back here. So, like `pgate_monitor_health`, it is refused from inside the
/// log callback (`PGATE_STATUS_INVALID_ARGUMENT`, changing nothing). `out` and the evidence
/// line as in `pgate_monitor_health`. The read itself changes nothing, but a second call reads
/// the window again, which records made since (and a rollback made by the first call) may
/// have changed: for the evidence of the health written, pass `PGATE_EVIDENCE_CAPACITY` bytes,
/// which always suffice, rather than retrying.
///
/// # Safety
/// As `pgate_monitor_health`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_read_health(
    gate: *const pgate_gate,
    out: *mut pgate_health,
    evidence: *mut c_char,
    evidence_cap: usize,
    evidence_len: *mut usize,
) -> pgate_status {
    let call = "pgate_read_health";
    // SAFETY: forwarded contract.
    unsafe {
        health_out(call, gate, out, evidence, evidence_cap, evidence_len, |m| {
            m.health()
        })
    }
}

/// Checks every argument, then runs `read` on the live gate and writes the health and its
/// evidence line: the body of `pgate_monitor_health` and `pgate_read_health` (`call`, refused
/// from inside the log callback).
///
/// # Safety
/// As `pgate_monitor_health`.
unsafe fn health_out(
    call: &'static str,
    gate: *const pgate_gate,
    out: *mut pgate_health,
    evidence: *mut c_char,
    evidence_cap: usize,
    evidence_len: *mut usize,
    read: impl FnOnce(&PromotionGateManager) -> CanaryHealth,
) -> pgate_status {
    guard(|| {
        if refused_inside_callback(call).is_some() {
            return Err(pgate_status::InvalidArgument);
        }
        // Every argument is checked before the judge runs: a refused call changes nothing.
        if out.is_null() || (!evidence.is_null() && evidence_len.is_null()) {
            return Err(pgate_status::NullPointer);
        }
        if evidence_cap > isize::MAX as usize {
            return Err(pgate_status::InvalidArgument);
        }
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { cold(gate) }?;
        let h = read(&gate.manager);
        let nanos = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let health = pgate_health {
            stage: h.evidence.stage.get(),
            canary_requests: h.canary_requests,
            production_requests: h.production_requests,
            canary_p99_ns: nanos(h.canary_p99_latency),
            production_p99_ns: nanos(h.production_p99_latency),
            traffic_percent: h.traffic_percent,
            canary_error_rate: h.canary_error_rate,
            production_error_rate: h.production_error_rate,
            canary_compliance: h.evidence.canary.compliance,
            health_score: h.health_score,
            environment: h.evidence.environment.into(),
            recommendation: match h.recommendation {
                Recommendation::Healthy => pgate_recommendation::Healthy,
                Recommendation::Monitor => pgate_recommendation::Monitor,
                Recommendation::Rollback => pgate_recommendation::Rollback,
                Recommendation::NoData => pgate_recommendation::NoData,
                // A recommendation the C ABI has no constant for: not promotable, watch.
                _ => pgate_recommendation::Monitor,
            },
            rules_fired: h
                .evidence
                .fired()
                .filter_map(|f| pgate_rule::of(f.rule))
                .fold(0, |bits, rule| bits | rule as u32),
            sufficient_data: h.evidence.sufficient_data(),
        };
        // SAFETY: out is non-NULL and valid for a write (caller's contract).
        unsafe { write(out, health) }?;
        if evidence.is_null() {
            return Ok(());
        }
        // SAFETY: evidence is valid for evidence_cap bytes and evidence_len for a write.
        unsafe {
            copy_out(
                &bounded(h.evidence.to_string()),
                evidence.cast(),
                evidence_cap,
                evidence_len,
            )
        }
    })
}

/// Writes whether the version under judgement meets its SLO to `*compliant` (see the Rust
/// `check_slo_compliance`: false with too little data). May roll a failing canary back.
///
/// # Safety
/// `gate` must be a live gate; `compliant` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_check_slo(
    gate: *const pgate_gate,
    compliant: *mut bool,
) -> pgate_status {
    guard(|| {
        if refused_inside_callback("pgate_check_slo").is_some() {
            return Err(pgate_status::InvalidArgument);
        }
        // SAFETY: the caller keeps the gate alive during the call.
        let gate = unsafe { cold(gate) }?;
        if compliant.is_null() {
            return Err(pgate_status::NullPointer);
        }
        let answer = gate
            .manager
            .check_slo_compliance()
            .map_err(|e| pgate_status::from(&e))?;
        // SAFETY: compliant is non-NULL and valid for a write (caller's contract).
        unsafe { write(compliant, answer) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_always_fits_the_documented_capacity() {
        assert_eq!(bounded("short".into()), "short");
        let long = "é".repeat(3000); // 6000 bytes, two per character
        let cut = bounded(long);
        assert!(cut.len() < PGATE_EVIDENCE_CAPACITY && cut.ends_with("..."));
    }
}
