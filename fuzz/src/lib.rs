//! What the fuzz targets share: a gate driven through the C ABI (the `pgate_*` functions, called
//! from Rust exactly as a C host calls them), and a snapshot of everything a host can observe of
//! it, to check that a refused call changed nothing.
//!
//! Each wrapper passes valid pointers and lengths, so a failure found here is the library's,
//! not the harness's.

use std::ffi::CStr;
use std::ptr::{null, null_mut};

use promotion_gates_ffi::*;

/// A refused call: its status and the error object's message.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The status the call returned.
    pub status: pgate_status,
    /// The message of the error object it wrote.
    pub message: String,
}

/// Turns a status and the error object a cold-path call wrote into a result, freeing the
/// object. A refusal must carry an error object with a message.
fn outcome(status: pgate_status, err: *mut pgate_error) -> Result<(), Refusal> {
    assert_ne!(status, pgate_status::Panic, "the library panicked");
    if status == pgate_status::Ok {
        assert!(err.is_null(), "an error object written on success");
        return Ok(());
    }
    assert!(!err.is_null(), "{status:?} without an error object");
    // SAFETY: `err` is a live error object the call just wrote; it is read, then freed once.
    let (status_of_err, message) = unsafe {
        let status_of_err = pgate_error_status(err);
        let message = CStr::from_ptr(pgate_error_message(err))
            .to_string_lossy()
            .into_owned();
        pgate_error_free(err);
        (status_of_err, message)
    };
    assert_eq!(status_of_err, status, "the error object's status");
    assert!(!message.is_empty(), "{status:?} with an empty message");
    Err(Refusal { status, message })
}

/// `pgate_monitor_health` or `pgate_read_health`: `(gate, out, evidence, evidence_cap,
/// evidence_len)`.
type HealthCall = unsafe extern "C" fn(
    *const pgate_gate,
    *mut pgate_health,
    *mut std::ffi::c_char,
    usize,
    *mut usize,
) -> pgate_status;

/// A live gate, freed on drop.
#[derive(Debug)]
pub struct Gate(*mut pgate_gate);

/// Reads a JSON document the library writes into a caller buffer (`pgate_config_json` and
/// friends): asks for the length, then reads it whole.
fn read_document(
    gate: *const pgate_gate,
    call: unsafe extern "C" fn(
        *const pgate_gate,
        *mut std::ffi::c_char,
        usize,
        *mut usize,
    ) -> pgate_status,
) -> String {
    let mut len = 0usize;
    // SAFETY: `gate` is live; a NULL buffer asks for the length only; `len` is writable.
    let status = unsafe { call(gate, null_mut(), 0, &mut len) };
    assert_eq!(status, pgate_status::BufferTooSmall);
    let mut buf = vec![0u8; len + 1];
    let mut written = 0usize;
    // SAFETY: `buf` holds `len + 1` writable bytes; `written` is writable.
    let status = unsafe { call(gate, buf.as_mut_ptr().cast(), buf.len(), &mut written) };
    assert_eq!(status, pgate_status::Ok);
    assert_eq!(
        written, len,
        "the document's length changed between two reads"
    );
    assert_eq!(buf[len], 0, "not NUL-terminated");
    buf.truncate(len);
    match String::from_utf8(buf) {
        Ok(text) => text,
        Err(err) => panic!("a document that is not UTF-8: {err}"),
    }
}

/// Reads a text the library writes into a caller buffer through `call(buf, cap, len_out)`:
/// asks for the length, then reads it whole (with slack, for texts that may grow a few bytes
/// between two calls, as the Prometheus exposition may). Checks the NUL, the length written
/// and UTF-8.
fn read_text(call: impl Fn(*mut std::ffi::c_char, usize, *mut usize) -> pgate_status) -> String {
    let mut len = 0usize;
    assert_eq!(
        call(null_mut(), 0, &raw mut len),
        pgate_status::BufferTooSmall
    );
    let mut buf = vec![0xAAu8; len + 256];
    let mut written = usize::MAX;
    assert_eq!(
        call(buf.as_mut_ptr().cast(), buf.len(), &raw mut written),
        pgate_status::Ok
    );
    assert!(
        written < buf.len(),
        "{written} bytes written into {}",
        buf.len()
    );
    assert_eq!(buf[written], 0, "not NUL-terminated");
    buf.truncate(written);
    assert!(!buf.contains(&0), "a NUL inside the text");
    match String::from_utf8(buf) {
        Ok(text) => text,
        Err(err) => panic!("a text that is not UTF-8: {err}"),
    }
}

impl Gate {
    /// `pgate_gate_new` with a config and an SLO document (either may be empty).
    pub fn new(config: &[u8], slo: &[u8]) -> Result<Gate, Refusal> {
        let mut gate = null_mut();
        let mut err = null_mut();
        // SAFETY: both documents are live slices; `gate` and `err` are writable out-pointers.
        let status = unsafe {
            pgate_gate_new(
                config.as_ptr(),
                config.len(),
                slo.as_ptr(),
                slo.len(),
                &mut gate,
                &mut err,
            )
        };
        outcome(status, err).map(|()| {
            assert!(!gate.is_null());
            Gate(gate)
        })
    }

    /// The current `PromotionConfig` as JSON.
    pub fn config_json(&self) -> String {
        read_document(self.0, pgate_config_json)
    }

    /// The `SloConfig` as JSON.
    pub fn slo_json(&self) -> String {
        read_document(self.0, pgate_slo_json)
    }

    /// The rollback history as JSON.
    pub fn history_json(&self) -> String {
        read_document(self.0, pgate_rollback_history_json)
    }

    /// `pgate_change_count`: the number of the gate's newest state change.
    pub fn change_count(&self) -> u64 {
        let mut count = u64::MAX;
        // SAFETY: live gate; `count` writable.
        let status = unsafe { pgate_change_count(self.0, &mut count) };
        assert_eq!(status, pgate_status::Ok);
        count
    }

    /// `pgate_changes_json`: the kept changes numbered above `after`, as JSON.
    pub fn changes_json(&self, after: u64) -> String {
        read_text(|buf, cap, len| {
            // SAFETY: live gate; `buf` NULL or valid for `cap` bytes; `len` writable.
            unsafe { pgate_changes_json(self.0, after, buf, cap, len) }
        })
    }

    /// `pgate_metrics_prometheus`: the gate's exposition.
    pub fn metrics_prometheus(&self) -> String {
        read_text(|buf, cap, len| {
            // SAFETY: live gate; `buf` NULL or valid for `cap` bytes; `len` writable.
            unsafe { pgate_metrics_prometheus(self.0, buf, cap, len) }
        })
    }

    /// `pgate_metrics_prometheus_counted` of this gate alone, with the host's `counts` (`None`:
    /// the gate's own).
    pub fn metrics_prometheus_counted(&self, counts: Option<pgate_outcome_counts>) -> String {
        let gates = [self.0.cast_const()];
        let counts_ptr = counts.as_ref().map_or(null(), std::ptr::from_ref);
        read_text(|buf, cap, len| {
            // SAFETY: one live gate; `counts_ptr` NULL or one count; `buf` NULL or valid for
            // `cap` bytes; `len` writable.
            unsafe {
                pgate_metrics_prometheus_counted(gates.as_ptr(), counts_ptr, 1, buf, cap, len)
            }
        })
    }

    /// `pgate_read_health` with room for any evidence line.
    pub fn read_health(&self) -> pgate_health {
        self.health(pgate_read_health)
    }

    /// A judgement (`pgate_monitor_health`, `pgate_read_health`) with room for any evidence
    /// line, which must be NUL-terminated UTF-8.
    fn health(&self, call: HealthCall) -> pgate_health {
        let mut health = std::mem::MaybeUninit::<pgate_health>::zeroed();
        let mut evidence = vec![0u8; PGATE_EVIDENCE_CAPACITY];
        let mut len = usize::MAX;
        // SAFETY: live gate; `health` writable; `evidence` holds its capacity; `len` writable.
        let status = unsafe {
            call(
                self.0,
                health.as_mut_ptr(),
                evidence.as_mut_ptr().cast(),
                evidence.len(),
                &mut len,
            )
        };
        assert_eq!(status, pgate_status::Ok);
        assert!(len < evidence.len(), "evidence of {len} bytes");
        assert_eq!(evidence[len], 0, "evidence not NUL-terminated");
        assert!(
            std::str::from_utf8(&evidence[..len]).is_ok(),
            "evidence that is not UTF-8"
        );
        // SAFETY: on success the call wrote the whole health.
        unsafe { health.assume_init() }
    }

    /// `pgate_state`: environment, canary share and stage.
    pub fn state(&self) -> (pgate_environment, f64, u64) {
        let (mut env, mut percent, mut stage) = (pgate_environment::Production, 0.0, 0);
        // SAFETY: live gate; three writable outputs.
        let status = unsafe { pgate_state(self.0, &mut env, &mut percent, &mut stage) };
        assert_eq!(status, pgate_status::Ok);
        (env, percent, stage)
    }

    /// `pgate_swap_config`.
    pub fn swap_config(&self, json: &[u8]) -> Result<(), Refusal> {
        let mut err = null_mut();
        // SAFETY: live gate and slice; `err` writable.
        let status = unsafe { pgate_swap_config(self.0, json.as_ptr(), json.len(), &mut err) };
        outcome(status, err)
    }

    /// `pgate_swap_slo`.
    pub fn swap_slo(&self, json: &[u8]) -> Result<(), Refusal> {
        let mut err = null_mut();
        // SAFETY: live gate and slice; `err` writable.
        let status = unsafe { pgate_swap_slo(self.0, json.as_ptr(), json.len(), &mut err) };
        outcome(status, err)
    }

    /// `pgate_swap_config_from`: the swap, made only if the gate is still at `change_count`.
    pub fn swap_config_from(&self, change_count: u64, json: &[u8]) -> Result<(), Refusal> {
        let mut err = null_mut();
        // SAFETY: live gate and slice; `err` writable.
        let status = unsafe {
            pgate_swap_config_from(self.0, change_count, json.as_ptr(), json.len(), &mut err)
        };
        outcome(status, err)
    }

    /// `pgate_promote_from`: the promotion, made only if the gate is still in `stage`.
    pub fn promote_from(
        &self,
        stage: u64,
        environment: u32,
        traffic_percent: f64,
    ) -> Result<(), Refusal> {
        let mut err = null_mut();
        // SAFETY: live gate; `err` writable. Any environment number is accepted as input.
        let status =
            unsafe { pgate_promote_from(self.0, stage, environment, traffic_percent, &mut err) };
        outcome(status, err)
    }

    /// `pgate_promote`.
    pub fn promote(&self, environment: u32, traffic_percent: f64) -> Result<(), Refusal> {
        let mut err = null_mut();
        // SAFETY: live gate; `err` writable. Any environment number is accepted as input.
        let status = unsafe { pgate_promote(self.0, environment, traffic_percent, &mut err) };
        outcome(status, err)
    }

    /// `pgate_rollback`.
    pub fn rollback(&self, reason: &[u8]) -> Result<(), Refusal> {
        let mut err = null_mut();
        // SAFETY: live gate and slice; `err` writable.
        let status = unsafe { pgate_rollback(self.0, reason.as_ptr(), reason.len(), &mut err) };
        outcome(status, err)
    }

    /// `pgate_enable_feature`.
    pub fn enable_feature(&self, name: &[u8]) -> Result<(), Refusal> {
        let mut err = null_mut();
        // SAFETY: live gate and slice; `err` writable.
        let status = unsafe { pgate_enable_feature(self.0, name.as_ptr(), name.len(), &mut err) };
        outcome(status, err)
    }

    /// `pgate_disable_feature`.
    pub fn disable_feature(&self, name: &[u8]) -> Result<(), Refusal> {
        let mut err = null_mut();
        // SAFETY: live gate and slice; `err` writable.
        let status = unsafe { pgate_disable_feature(self.0, name.as_ptr(), name.len(), &mut err) };
        outcome(status, err)
    }

    /// `pgate_is_feature_enabled`: `Err` with the status for a name that is not UTF-8.
    pub fn is_feature_enabled(&self, name: &[u8]) -> Result<bool, pgate_status> {
        let mut enabled = false;
        // SAFETY: live gate and slice; `enabled` writable.
        let status =
            unsafe { pgate_is_feature_enabled(self.0, name.as_ptr(), name.len(), &mut enabled) };
        assert_ne!(status, pgate_status::Panic, "the library panicked");
        if status == pgate_status::Ok {
            Ok(enabled)
        } else {
            Err(status)
        }
    }

    /// `pgate_route`.
    pub fn route(&self, id: &[u8]) -> pgate_decision {
        let mut decision = std::mem::MaybeUninit::<pgate_decision>::uninit();
        // SAFETY: live gate and slice; `decision` writable.
        let status = unsafe { pgate_route(self.0, id.as_ptr(), id.len(), decision.as_mut_ptr()) };
        assert_eq!(status, pgate_status::Ok);
        // SAFETY: on success `pgate_route` wrote the whole decision.
        unsafe { decision.assume_init() }
    }

    /// `pgate_record` of a decision (routed here or built by the caller).
    pub fn record(
        &self,
        decision: &pgate_decision,
        success: bool,
        latency_ns: u64,
    ) -> pgate_recorded {
        let mut recorded = pgate_recorded::Late;
        // SAFETY: live gate; `decision` readable; `recorded` writable.
        let status = unsafe { pgate_record(self.0, decision, success, latency_ns, &mut recorded) };
        assert_eq!(status, pgate_status::Ok);
        recorded
    }

    /// `pgate_record_by_id`.
    pub fn record_by_id(&self, id: &[u8], success: bool, latency_ns: u64) -> pgate_recorded {
        let mut recorded = pgate_recorded::Late;
        // SAFETY: live gate and slice; `recorded` writable.
        let status = unsafe {
            pgate_record_by_id(
                self.0,
                id.as_ptr(),
                id.len(),
                success,
                latency_ns,
                &mut recorded,
            )
        };
        assert_eq!(status, pgate_status::Ok);
        recorded
    }

    /// `pgate_route_forced` with the forcing value `value` (`None`: the request carried none).
    pub fn route_forced(&self, id: &[u8], value: Option<&[u8]>) -> pgate_decision {
        let (value_ptr, value_len) = value.map_or((null(), 0), |v| (v.as_ptr(), v.len()));
        let mut decision = std::mem::MaybeUninit::<pgate_decision>::uninit();
        // SAFETY: live gate and slices (`value_ptr` NULL with length 0); `decision` writable.
        let status = unsafe {
            pgate_route_forced(
                self.0,
                id.as_ptr(),
                id.len(),
                value_ptr,
                value_len,
                decision.as_mut_ptr(),
            )
        };
        assert_eq!(status, pgate_status::Ok);
        // SAFETY: on success `pgate_route_forced` wrote the whole decision.
        unsafe { decision.assume_init() }
    }

    /// `pgate_record_by_id_forced`.
    pub fn record_by_id_forced(
        &self,
        id: &[u8],
        value: Option<&[u8]>,
        success: bool,
        latency_ns: u64,
    ) -> pgate_recorded {
        let (value_ptr, value_len) = value.map_or((null(), 0), |v| (v.as_ptr(), v.len()));
        let mut recorded = pgate_recorded::Late;
        // SAFETY: live gate and slices (`value_ptr` NULL with length 0); `recorded` writable.
        let status = unsafe {
            pgate_record_by_id_forced(
                self.0,
                id.as_ptr(),
                id.len(),
                value_ptr,
                value_len,
                success,
                latency_ns,
                &mut recorded,
            )
        };
        assert_eq!(status, pgate_status::Ok);
        recorded
    }

    /// `pgate_record_abandoned_as` of a decision: whether the wait was recorded, and how (the
    /// second is checked to be written exactly when the first is true).
    pub fn record_abandoned_as(
        &self,
        decision: &pgate_decision,
        waited_ns: u64,
    ) -> Option<pgate_recorded> {
        let mut recorded = false;
        let mut recorded_as = std::mem::MaybeUninit::<pgate_recorded>::uninit();
        // A value no `pgate_recorded` has, to see whether the call wrote one.
        const UNWRITTEN: u32 = 0xA5A5_A5A5;
        // SAFETY: `pgate_recorded` is a `u32` enum: the cell holds 4 writable bytes.
        unsafe { recorded_as.as_mut_ptr().cast::<u32>().write(UNWRITTEN) };
        // SAFETY: live gate; `decision` readable; both outputs writable.
        let status = unsafe {
            pgate_record_abandoned_as(
                self.0,
                decision,
                waited_ns,
                &mut recorded,
                recorded_as.as_mut_ptr(),
            )
        };
        assert_eq!(status, pgate_status::Ok);
        // SAFETY: the 4 bytes were initialised above (and, if written, by the call).
        let raw = unsafe { recorded_as.as_ptr().cast::<u32>().read() };
        if !recorded {
            assert_eq!(
                raw, UNWRITTEN,
                "recorded_as written for a wait not recorded"
            );
            return None;
        }
        let kinds = [
            pgate_recorded::Counted,
            pgate_recorded::Late,
            pgate_recorded::Foreign,
            pgate_recorded::Forced,
        ];
        match kinds.into_iter().find(|kind| *kind as u32 == raw) {
            Some(kind) => Some(kind),
            None => panic!("recorded_as {raw:#x} for a recorded wait"),
        }
    }

    /// `pgate_monitor_health` with room for any evidence line: the status.
    pub fn monitor_health(&self) -> pgate_status {
        self.health(pgate_monitor_health);
        pgate_status::Ok
    }

    /// `pgate_check_slo`.
    pub fn check_slo(&self) -> pgate_status {
        let mut compliant = false;
        // SAFETY: live gate; `compliant` writable.
        let status = unsafe { pgate_check_slo(self.0, &mut compliant) };
        assert_ne!(status, pgate_status::Panic, "the library panicked");
        status
    }

    /// The names of flag set `set` (`pgate_flag_set_len`, then `pgate_flag_set_name` each).
    pub fn flag_set(&self, set: u32) -> Vec<Vec<u8>> {
        let mut len = 0usize;
        // SAFETY: live gate; `len` writable.
        let status = unsafe { pgate_flag_set_len(self.0, set, &mut len) };
        assert_eq!(status, pgate_status::Ok);
        let names: Vec<Vec<u8>> = (0..len)
            .map(|index| {
                let (mut name, mut name_len) = (null(), 0usize);
                // SAFETY: live gate; both outputs writable. The name lives as long as the gate
                // and is copied at once.
                unsafe {
                    assert_eq!(
                        pgate_flag_set_name(self.0, set, index, &mut name, &mut name_len),
                        pgate_status::Ok
                    );
                    std::slice::from_raw_parts(name, name_len).to_vec()
                }
            })
            .collect();
        let (mut name, mut name_len) = (null(), 0usize);
        // SAFETY: as above; one past the last index must be refused without writing.
        let past = unsafe { pgate_flag_set_name(self.0, set, len, &mut name, &mut name_len) };
        assert_eq!(past, pgate_status::IndexOutOfRange);
        assert!(
            names.windows(2).all(|w| w[0] < w[1]),
            "names not in byte order"
        );
        names
    }

    /// Everything a host can read back of the gate, with whether each of `flags` is on.
    pub fn observe(&self, flags: &[&[u8]]) -> Observed {
        let health = self.read_health();
        Observed {
            state: self.state(),
            config: self.config_json(),
            slo: self.slo_json(),
            history: self.history_json(),
            flags: flags.iter().map(|f| self.is_feature_enabled(f)).collect(),
            changes: self.change_count(),
            cohorts: (health.canary_requests, health.production_requests),
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // SAFETY: the gate is live and no other call is in flight on it.
        let status = unsafe { pgate_gate_free(self.0) };
        assert_eq!(status, pgate_status::Ok);
    }
}

/// What a host can read of a gate: compared before and after a refused call. The window's
/// counts change with time too (an outcome older than the window leaves it), which a caller
/// comparing them across more than the shortest window (a second) must allow for.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// `pgate_state`.
    pub state: (pgate_environment, f64, u64),
    /// `pgate_config_json`.
    pub config: String,
    /// `pgate_slo_json`.
    pub slo: String,
    /// `pgate_rollback_history_json`.
    pub history: String,
    /// `pgate_is_feature_enabled` of each name asked about.
    pub flags: Vec<Result<bool, pgate_status>>,
    /// `pgate_change_count`.
    pub changes: u64,
    /// `pgate_read_health`'s requests in the window: the new version's, the stable version's.
    pub cohorts: (u64, u64),
}

/// A text call on a config document alone (`pgate_store_location`,
/// `pgate_document_gate_name`): `(config_json, config_len, buf, cap, len_out, err)`.
type DocumentText = unsafe extern "C" fn(
    *const u8,
    usize,
    *mut std::ffi::c_char,
    usize,
    *mut usize,
    *mut *mut pgate_error,
) -> pgate_status;

/// Runs a [`DocumentText`] call on `config` as a C host does: asks for the length (a NULL
/// buffer: `BUFFER_TOO_SMALL` without an error object, or the document's refusal), then reads
/// the text whole.
fn document_text(config: &[u8], call: DocumentText) -> Result<String, Refusal> {
    let (mut len, mut err) = (usize::MAX, null_mut());
    // SAFETY: a live slice; a NULL buffer with cap 0 asks for the length; outputs writable.
    let status = unsafe {
        call(
            config.as_ptr(),
            config.len(),
            null_mut(),
            0,
            &mut len,
            &mut err,
        )
    };
    // A buffer too small writes the length it needs and no error object, as every text read
    // does; a document refused is refused with one.
    if status == pgate_status::BufferTooSmall {
        assert!(
            err.is_null(),
            "an error object written for a buffer too small"
        );
    } else {
        outcome(status, err)?;
        panic!("a NULL buffer accepted");
    }
    err = null_mut();
    let mut buf = vec![0xAAu8; len + 1];
    let mut written = usize::MAX;
    // SAFETY: `buf` holds `len + 1` writable bytes; outputs writable.
    let status = unsafe {
        call(
            config.as_ptr(),
            config.len(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut written,
            &mut err,
        )
    };
    outcome(status, err)?;
    assert_eq!((written, buf[len]), (len, 0), "the length, then a NUL");
    buf.truncate(len);
    match String::from_utf8(buf) {
        Ok(text) => Ok(text),
        Err(e) => panic!("a text that is not UTF-8: {e}"),
    }
}

/// `pgate_store_location` of a config document: read alone, nothing opened.
pub fn store_location(config: &[u8]) -> Result<String, Refusal> {
    document_text(config, pgate_store_location)
}

/// `pgate_document_gate_name` of a config document: read alone, nothing opened.
pub fn document_gate_name(config: &[u8]) -> Result<String, Refusal> {
    document_text(config, pgate_document_gate_name)
}

/// `pgate_document_fleet_judging` of a config document: read alone, nothing opened.
pub fn document_fleet_judging(config: &[u8]) -> Result<bool, Refusal> {
    let (mut sums, mut err) = (false, null_mut());
    // SAFETY: a live slice; both outputs writable.
    let status =
        unsafe { pgate_document_fleet_judging(config.as_ptr(), config.len(), &mut sums, &mut err) };
    outcome(status, err).map(|()| sums)
}

/// `pgate_document_check_slo` of a config and an SLO document (either may be empty): read
/// alone, nothing opened.
pub fn document_check_slo(config: &[u8], slo: &[u8]) -> Result<(), Refusal> {
    let mut err = null_mut();
    // SAFETY: live slices; `err` writable.
    let status = unsafe {
        pgate_document_check_slo(
            config.as_ptr(),
            config.len(),
            slo.as_ptr(),
            slo.len(),
            &mut err,
        )
    };
    outcome(status, err)
}
