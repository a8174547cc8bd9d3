//! Log lines for C hosts: the library's `tracing` events (info on flag changes, warnings on low
//! health, errors on SLO violations and rollbacks, debug per route) handed to a callback the
//! host sets.

use std::cell::Cell;
use std::ffi::{CString, c_char, c_void};
use std::fmt::Write;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

use crate::boundary::{Failure, guard_err};
use crate::error::pgate_error;
use crate::status::pgate_status;

/// The level of a log line, most severe first. The numbers are fixed.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[allow(non_camel_case_types)]
pub enum pgate_log_level {
    /// A rollback, an SLO violation.
    Error = 1,
    /// A canary whose health score is below the healthy threshold; a risky config change.
    Warn = 2,
    /// A promotion, a flag change.
    Info = 3,
    /// One line per route: every `pgate_route`, `pgate_route_forced` and `pgate_record_by_id` sends
    /// one (`promotion.route_request request_id="..." is_canary=... forced="..." bucket=...
    /// threshold=... environment="..."`, the id escaped, `forced` `none`, `value` or `id_list`), so
    /// a callback at this level is called once per request (`pgate_record_by_id_forced` sends
    /// none). These hot calls then allocate (the line is formatted) and take the callback's read
    /// lock: an exception to their allocation-free, lock-free promise (the header's opening comment
    /// gives the other). Below this level, a route pays one atomic load for the level check and
    /// nothing else.
    Debug = 4,
    /// Finer detail.
    Trace = 5,
}

crate::boundary::numbered!(pgate_log_level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
});

impl pgate_log_level {
    /// The level a host asked for as `max_level`, or the failure that says which are levels.
    fn max_level(max_level: u32) -> Result<Self, Failure> {
        Self::from_u32(max_level).ok_or_else(|| {
            Failure::new(
                pgate_status::InvalidArgument,
                format!("max_level {max_level} is not a level: {}", Self::choices()),
            )
        })
    }

    fn of(level: Level) -> Self {
        match level {
            Level::ERROR => Self::Error,
            Level::WARN => Self::Warn,
            Level::INFO => Self::Info,
            Level::DEBUG => Self::Debug,
            Level::TRACE => Self::Trace,
        }
    }

    fn filter(self) -> LevelFilter {
        match self {
            Self::Error => LevelFilter::ERROR,
            Self::Warn => LevelFilter::WARN,
            Self::Info => LevelFilter::INFO,
            Self::Debug => LevelFilter::DEBUG,
            Self::Trace => LevelFilter::TRACE,
        }
    }
}

/// Receives one log line: `user_data` as given to `pgate_set_log_callback`, the line's level,
/// its target (the Rust module that wrote it, NUL-terminated) and its message (NUL-terminated,
/// `message_len` bytes without the NUL, so `message_len == strlen(message)`): the text, then
/// ` key=value` for each field. The message is one line: every text value is quoted and
/// escaped (`reason="bad\ndeploy"`, `previous_env="Canary{5}"`, an error's text), numbers and
/// booleans bare (`stage=3`, `is_canary=true`), and no line feed, NUL or other control
/// character appears in it unescaped, whatever a client sent (a request id with a line feed
/// shows as `request_id="a\nb"`). Both strings live only during the call. Called on the
/// thread that logs (a host's thread, or a gate's store thread, which the library owns),
/// possibly on many threads at once, sometimes while a gate holds its writer lock (which is
/// not reentrant). It must return normally (no
/// `longjmp`, C++ exception or `pthread_exit` out of it: that would leave the library's locks
/// held), and it must
/// call no `pgate_` function (a call back into that gate would wait forever). Lines logged on
/// a thread while it runs the callback are dropped, and the calls that write to, judge, read
/// the window of or free a gate are refused from it with `PGATE_STATUS_INVALID_ARGUMENT` and
/// change nothing (`pgate_set_log_callback`, `pgate_promote`, `pgate_promote_from`,
/// `pgate_rollback`, `pgate_enable_feature`, `pgate_disable_feature`, `pgate_swap_config`,
/// `pgate_swap_config_from`, `pgate_swap_slo`, `pgate_monitor_health`, `pgate_read_health`,
/// `pgate_check_slo`, `pgate_metrics_prometheus`, `pgate_metrics_prometheus_gates`,
/// `pgate_metrics_prometheus_counted`, `pgate_latency_histograms_json`, `pgate_gate_free`); the
/// recording and routing calls are not checked (the check would cost them a thread-local read
/// each), and never wait for a writer lock there: a rollback a record calls for while a write
/// holds the lock (this thread's own, or another's) is made by that write as it lets the lock
/// go, or by the state store's thread. The callback should return quickly (the thread may be
/// recording, and `pgate_set_log_callback` waits for it: copy the line and write it
/// elsewhere). It must not wait for a thread that is calling `pgate_set_log_callback` or
/// `pgate_gate_free` (they wait for it), nor for one making a call listed above on a gate this
/// thread may be writing to (the callback may run under that gate's writer lock). No thread
/// waits to log while another runs the callback, so the callback may wait for a host lock
/// whose holder makes other `pgate_` calls meanwhile (`pgate_route` at DEBUG, another gate's
/// `pgate_promote`) while a third thread sets the callback.
#[allow(non_camel_case_types)]
pub type pgate_log_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: pgate_log_level,
        target: *const c_char,
        message: *const c_char,
        message_len: usize,
    ),
>;

/// The host's callback: the function, its `user_data` and the most verbose level it receives.
struct Sink {
    callback:
        unsafe extern "C" fn(*mut c_void, pgate_log_level, *const c_char, *const c_char, usize),
    user_data: UserData,
    max_level: pgate_log_level,
}

/// The host's `user_data`, kept as a pointer (its provenance intact) and only handed back.
#[derive(Clone, Copy)]
struct UserData(*mut c_void);

// SAFETY: the library never reads or writes through the pointer: it only passes it back to the
// host's callback, which `pgate_set_log_callback`'s contract makes safe to call from any
// thread with it.
unsafe impl Send for UserData {}
// SAFETY: as for `Send`: shared references only copy the pointer.
unsafe impl Sync for UserData {}

/// The host's callback. A thread that logs clones the `Arc` out of the lock and lets the lock go
/// before it calls the callback, so that no thread waits for the lock while another runs the
/// callback (a host thread whose callback waits for a host lock could otherwise keep, through a
/// waiting `pgate_set_log_callback`, a thread holding that lock from logging). The clones count the
/// calls under way: `pgate_set_log_callback` swaps the sink under the write lock (held for the swap
/// only) and then returns only once it holds the last clone of the sink it replaced, that is once
/// no thread is still inside that callback: a host may then free what the old callback uses, or end
/// its threads abruptly (Python's `pthread_exit` of threads entering the interpreter while it
/// finalizes would unwind through these frames, which aborts: it detaches the callback first).
static SINK: RwLock<Option<Arc<Sink>>> = RwLock::new(None);

/// Held by `pgate_set_log_callback` from its swap to the end of its wait, so that setters
/// take turns: each returns only once every callback replaced before it has returned.
static SETTING: Mutex<()> = Mutex::new(());

/// The most verbose level the host's callback receives, or `None` without a callback.
fn sink_level() -> Option<pgate_log_level> {
    SINK.read()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map(|sink| sink.max_level)
}

/// Returns once `replaced` is the last clone of its sink: once no thread still runs its
/// callback (no new clone can be made: the sink is no longer in [`SINK`]). The wait polls,
/// as callbacks return quickly and this cold call is rare; `Arc::try_unwrap` makes what the
/// callbacks did visible to this thread. A callback that never returns keeps it polling (once
/// a millisecond) for ever, as it would keep any wait.
fn wait_for_calls_under_way(mut replaced: Arc<Sink>) {
    let mut pause = Duration::from_micros(10);
    while let Err(still_shared) = Arc::try_unwrap(replaced) {
        replaced = still_shared;
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}

thread_local! {
    /// Whether this thread is running the host's callback.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is running the host's callback: a line it logs meanwhile is dropped
/// (the callback would be called from inside itself), and `pgate_set_log_callback` is refused
/// (it would wait for itself).
fn in_callback() -> bool {
    IN_CALLBACK.try_with(Cell::get).unwrap_or(false)
}

/// The refusal of `function`, a call that writes to a gate, judges it, reads its window (its
/// health or metrics: the read makes the evaluation asked for meanwhile, which may roll back),
/// frees it or sets the callback, made from inside the log callback: the library may be
/// logging with a lock held (a write logs its change under the gate's, a judgement its
/// verdict; a setter waits for the callback's call to return), so the call would wait for its
/// own thread, or free a gate still in use. `None` outside the callback.
pub(crate) fn refused_inside_callback(function: &str) -> Option<Failure> {
    in_callback().then(|| {
        Failure::new(
            pgate_status::InvalidArgument,
            format!(
                "{function} was called from inside the log callback, which must call no \
                 pgate_ function (the library may hold a lock while it logs: the call would \
                 wait for its own thread)"
            ),
        )
    })
}

/// Marks this thread as running the host's callback until dropped.
struct Inside;

impl Inside {
    fn enter() -> Self {
        let _ = IN_CALLBACK.try_with(|inside| inside.set(true));
        Inside
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        let _ = IN_CALLBACK.try_with(|inside| inside.set(false));
    }
}

/// The process-wide `tracing` subscriber that forwards events to the [`Sink`], if any.
struct CallbackSubscriber;

impl Subscriber for CallbackSubscriber {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The sink can change at any time: ask `enabled` at each event.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event()
            && !in_callback()
            && sink_level().is_some_and(|max| pgate_log_level::of(*metadata.level()) <= max)
    }

    /// The sink's level, or off without a sink: `tracing` keeps it as the process's maximum
    /// (recomputed by `rebuild_interest_cache` at each change of the sink), so a
    /// `level_enabled!(DEBUG)` on the route path stays false, without a lock, unless the host
    /// asked for debug lines.
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(sink_level().map_or(LevelFilter::OFF, pgate_log_level::filter))
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        if in_callback() {
            return;
        }
        // The lock is let go at once; the clone, kept until the callback returns, is what
        // `pgate_set_log_callback` waits for (see SINK).
        let Some(sink) = SINK.read().unwrap_or_else(PoisonError::into_inner).clone() else {
            return;
        };
        let level = pgate_log_level::of(*event.metadata().level());
        if level > sink.max_level {
            return;
        }
        let mut line = Line::default();
        event.record(&mut line);
        let text = line.message + &line.fields;
        // `Line` escapes every NUL: the whole line is one C string. (Were one left, the line
        // would be cut there rather than dropped.)
        let message = CString::new(text).unwrap_or_else(|e| {
            let end = e.nul_position();
            let mut bytes = e.into_vec();
            bytes.truncate(end);
            CString::new(bytes).unwrap_or_default()
        });
        let target = CString::new(event.metadata().target()).unwrap_or_default();
        let len = message.as_bytes().len();
        let _inside = Inside::enter();
        // SAFETY: the host set this callback for these calls; both strings are NUL-terminated
        // and live until it returns; user_data is the host's own pointer, passed back as is.
        unsafe {
            (sink.callback)(
                sink.user_data.0,
                level,
                target.as_ptr(),
                message.as_ptr(),
                len,
            )
        };
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// An event's message and its other fields as ` key=value`, on one line: every text field's
/// value (a `&str`, or one written with `%` or `?`: an environment, an error, a path) is
/// quoted and escaped as Rust's `{:?}` writes it (`reason="bad\ndeploy"`), unless the library
/// quoted it already (a request id), a number or a boolean is bare, and every control
/// character left in the message or another value (a line feed, a NUL) is written as its
/// escape (`\n`, `\0`), so that no value starts a new line or cuts the C string short. The
/// library bounds what clients choose before it logs it (a request id: at most
/// `MAX_SHOWN_VALUE_BYTES`; a reason: `MAX_REASON_BYTES`, checked when it is given).
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Line {
    /// Where the value of `field` goes: the message, or a new ` name=` in the fields.
    fn value_of(&mut self, field: &Field) -> &mut String {
        if field.name() == "message" {
            &mut self.message
        } else {
            let _ = write!(self.fields, " {}=", field.name());
            &mut self.fields
        }
    }
}

impl Line {
    /// Writes a number or a boolean, bare.
    fn bare(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        push_escaped_controls(self.value_of(field), &text);
    }
}

/// `Visit` methods that write a number or a boolean bare, one for each type.
macro_rules! bare {
    ($($method:ident: $type:ty),*) => {
        $(
            fn $method(&mut self, field: &Field, value: $type) {
                self.bare(field, &value);
            }
        )*
    };
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            push_escaped_controls(&mut self.message, value);
        } else {
            let _ = write!(self.value_of(field), "{value:?}");
        }
    }

    bare!(
        record_f64: f64,
        record_i64: i64,
        record_u64: u64,
        record_i128: i128,
        record_u128: u128,
        record_bool: bool
    );

    /// A field written with `%` or `?` (an error, an environment, a store's path, or a value the
    /// library quoted itself): text, quoted and escaped as `record_str` quotes, unless it is
    /// one quoted value already (a request id, a reason).
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            push_escaped_controls(&mut self.message, &text);
        } else if is_quoted(&text) {
            push_escaped_controls(self.value_of(field), &text);
        } else {
            let _ = write!(self.value_of(field), "{text:?}");
        }
    }
}

/// Whether `text` is one quoted value as the library quotes what it logs (a request id, a
/// reason): `"`, characters with no `"` but `\"` (each `\` escaping the next), `"`, and
/// for a value cut short `...(N bytes)` after it.
fn is_quoted(text: &str) -> bool {
    let Some(inside) = text.strip_prefix('"') else {
        return false;
    };
    let mut escaped = false;
    for (at, c) in inside.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' => {
                let after = &inside[at + 1..];
                let length = after
                    .strip_prefix("...(")
                    .and_then(|rest| rest.strip_suffix(" bytes)"));
                return after.is_empty()
                    || length
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            }
            _ => {}
        }
    }
    false
}

/// Appends `text` to `out` with each control character written as its escape (`\n`, `\0`,
/// `\u{1b}`) and every other character as it is.
fn push_escaped_controls(out: &mut String, text: &str) {
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_debug());
        } else {
            out.push(c);
        }
    }
}

/// Sends the library's log lines up to `max_level` (1 error, 2 warn, 3 info, 4 debug, 5 trace)
/// to `callback`, with `user_data`; a NULL `callback` stops them. Without a callback the
/// library logs nothing. At 4 and 5 every route sends a line (`PGATE_LOG_LEVEL_DEBUG`): one
/// callback call per request, and the routing calls then allocate and take a read lock. The
/// first call installs the process's `tracing` subscriber: it fails
/// with `PGATE_STATUS_ALREADY_THERE` if the process (a Rust host) already installed another,
/// whose lines then go where that one sends them. With a callback, a `max_level` outside 1..=5 is refused with
/// `PGATE_STATUS_INVALID_ARGUMENT`, and so is a call from inside the callback (which must call
/// no `pgate_` function; it would wait for itself). On failure nothing changed and `*err` (if
/// not NULL) says why.
///
/// Returns only once no thread is still running the callback it replaced, nor one a setter
/// before it replaced (setters take turns; each waits for the calls under way, which is why a
/// callback must return quickly and never wait for a thread that sets the callback; other
/// threads log on meanwhile, to the new callback): after a NULL `callback`, no callback set
/// before is called again, and what they use may be freed. A host whose threads end abruptly at
/// exit (Python's, during finalization) sets NULL before.
///
/// # Safety
/// `callback`, if not NULL, must be safe to call from any thread with `user_data` until this
/// function returns from replacing it; `err` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pgate_set_log_callback(
    callback: pgate_log_callback,
    user_data: *mut c_void,
    max_level: u32,
    err: *mut *mut pgate_error,
) -> pgate_status {
    guard_err(err, || {
        if let Some(refused) = refused_inside_callback("pgate_set_log_callback") {
            return Err(refused);
        }
        // Only a callback receives lines: detaching takes any level (a host that detaches
        // with 0 must not keep a callback whose user_data it is about to free).
        let max_level = match callback {
            Some(_) => pgate_log_level::max_level(max_level)?,
            None => pgate_log_level::Error,
        };
        install()?;
        let sink = callback.map(|callback| {
            Arc::new(Sink {
                callback,
                user_data: UserData(user_data),
                max_level,
            })
        });
        // One setter at a time, through its wait: a second setter (NULL, say) must not return
        // while the callback the first replaced still runs (they may share `user_data`, which
        // the host frees once NULL is set). No thread that logs takes it, and a callback
        // cannot set (refused above), so it waits for no callback but the replaced one's.
        let _setting = SETTING.lock().unwrap_or_else(PoisonError::into_inner);
        let replaced = std::mem::replace(
            &mut *SINK.write().unwrap_or_else(PoisonError::into_inner),
            sink,
        );
        tracing::callsite::rebuild_interest_cache();
        if let Some(replaced) = replaced {
            wait_for_calls_under_way(replaced);
        }
        Ok(())
    })
}

/// Installs [`CallbackSubscriber`] once per process.
fn install() -> Result<(), Failure> {
    static INSTALLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ours = *INSTALLED
        .get_or_init(|| tracing::subscriber::set_global_default(CallbackSubscriber).is_ok());
    if ours {
        Ok(())
    } else {
        Err(Failure::new(
            pgate_status::AlreadyThere,
            "another tracing subscriber is already installed in this process",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::ffi::CStr;
    use std::ptr::null_mut;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    use std::thread;
    use std::time::Duration;

    /// The start of the lines `slow` acts on (other tests of this binary may log meanwhile).
    const MARK: &str = "log.rs test line";
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    static RETURNED: AtomicBool = AtomicBool::new(false);
    static SET_INSIDE: Mutex<Option<pgate_status>> = Mutex::new(None);

    /// For a marked line: logs another, sets the callback from inside, then takes its time.
    unsafe extern "C" fn slow(
        _: *mut c_void,
        _: pgate_log_level,
        _: *const c_char,
        message: *const c_char,
        _: usize,
    ) {
        // SAFETY: the message is NUL-terminated and live during the call.
        let message = unsafe { CStr::from_ptr(message) };
        if !message.to_bytes().starts_with(MARK.as_bytes()) {
            return;
        }
        CALLS.fetch_add(1, SeqCst);
        tracing::info!("{MARK} logged from inside the callback");
        // SAFETY: err may be NULL.
        let status = unsafe { pgate_set_log_callback(None, null_mut(), 3, null_mut()) };
        *SET_INSIDE.lock().unwrap() = Some(status);
        thread::sleep(Duration::from_millis(200));
        RETURNED.store(true, SeqCst);
    }

    #[test]
    fn setting_the_callback_waits_for_the_calls_under_way_and_is_refused_from_inside_one() {
        // SAFETY: `slow` may be called from any thread; it ignores user_data.
        let set = unsafe { pgate_set_log_callback(Some(slow), null_mut(), 3, null_mut()) };
        assert_eq!(set, pgate_status::Ok);
        let logger = thread::spawn(|| tracing::info!("{MARK}"));
        while CALLS.load(SeqCst) == 0 {
            thread::sleep(Duration::from_millis(1));
        }
        // SAFETY: err may be NULL.
        let set = unsafe { pgate_set_log_callback(None, null_mut(), 3, null_mut()) };
        assert_eq!(set, pgate_status::Ok);
        assert!(
            RETURNED.load(SeqCst),
            "pgate_set_log_callback returned while the callback it replaced still ran"
        );
        logger.join().unwrap();
        assert_eq!(
            *SET_INSIDE.lock().unwrap(),
            Some(pgate_status::InvalidArgument),
            "pgate_set_log_callback from inside the callback"
        );
        assert_eq!(CALLS.load(SeqCst), 1, "the line logged inside the callback");
    }

    #[test]
    fn control_characters_are_written_as_escapes() {
        let mut out = String::new();
        push_escaped_controls(&mut out, "a\nb\0c\r\u{1b}[0m \"é\" \\");
        assert_eq!(out, r#"a\nb\0c\r\u{1b}[0m "é" \"#);
        // Every control character is below U+00A0; Miri (for which this safe code holds
        // nothing to check) takes the first 512 characters, not minutes for 70,000.
        let count = if cfg!(miri) { 512 } else { 70_000 };
        let every: String = (0..=0x10ffff)
            .filter_map(char::from_u32)
            .take(count)
            .collect();
        let mut out = String::new();
        push_escaped_controls(&mut out, &every);
        assert!(!out.chars().any(char::is_control));
    }

    /// Keeps the line of the last event, as the callback would receive it.
    struct LastLine(Mutex<String>);

    impl Subscriber for LastLine {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut line = Line::default();
            event.record(&mut line);
            *self.0.lock().unwrap() = line.message + &line.fields;
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[test]
    fn every_text_field_is_quoted_and_numbers_are_bare() {
        let last = std::sync::Arc::new(LastLine(Mutex::new(String::new())));
        let id = promotion_gates::shown_bytes(b"a\nb");
        let long = vec![b'x'; 200];
        let cut = promotion_gates::shown_bytes(&long);
        let environment = promotion_gates::Environment::Canary {
            traffic_percent: 5.0,
        };
        tracing::subscriber::with_default(last.clone(), || {
            tracing::error!(
                stage = 3u64,
                delta = -2i64,
                score = 0.5,
                is_canary = true,
                from = %environment,
                error = %"store /tmp/a b.db: \"locked\"\nretry",
                request_id = %id,
                cut = %cut,
                pair = %"\"a\" or \"b\"",
                stored = ?Some(1),
                name = "plain",
                "promotion.test line"
            );
        });
        let line = last.0.lock().unwrap().clone();
        let x = "x".repeat(160);
        let want = [
            "promotion.test line stage=3 delta=-2 score=0.5 is_canary=true",
            r#" from="Canary{5}" error="store /tmp/a b.db: \"locked\"\nretry""#,
            r#" request_id="a\nb""#,
            &format!(r#" cut="{x}"...(200 bytes)"#),
            r#" pair="\"a\" or \"b\"" stored="Some(1)" name="plain""#,
        ]
        .concat();
        assert_eq!(line, want);
    }

    #[test]
    fn a_quoted_value_is_told_from_text_with_quotes() {
        assert!(is_quoted(r#""a""#));
        assert!(is_quoted(r#""a\"b""#));
        assert!(is_quoted(r#""""#));
        assert!(is_quoted(r#""xx"...(200 bytes)"#));
        for text in [
            "a",
            r#""a"#,
            r#""a\""#,
            r#""a" or "b""#,
            r#""a"b"#,
            r#""a"...( bytes)"#,
            r#""a"...(2x bytes)"#,
        ] {
            assert!(!is_quoted(text), "{text}");
        }
    }

    #[test]
    fn a_number_past_the_last_level_is_refused_with_the_levels() {
        let all = pgate_log_level::ALL;
        let (first, last) = (all[0], all[all.len() - 1]);
        for level in all {
            assert!(
                pgate_log_level::max_level(*level as u32).is_ok(),
                "{level:?}"
            );
        }
        // The message lists every level the enum has (`choices` is tested in `boundary`).
        for refused in [first as u32 - 1, last as u32 + 1, u32::MAX] {
            let failure = pgate_log_level::max_level(refused).err();
            assert_eq!(
                failure.map(|f| (f.status, f.message)),
                Some((
                    pgate_status::InvalidArgument,
                    format!(
                        "max_level {refused} is not a level: {}",
                        pgate_log_level::choices()
                    )
                ))
            );
        }
    }
}
