//! A `tracing` subscriber that keeps each event's fields as a line of text, for the tests of
//! what the library logs. Shared by the integration tests (`tests/common`) and by the crate's
//! unit tests (`src/telemetry/logs.rs` includes this file by path).

use std::fmt::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tracing::Level;
use tracing::field::{Field, Visit};

/// One event's fields as text: ` name=value` each, the value as its `Debug` writes it.
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

/// What a [`LogLines`] calls after keeping each line, on the thread that logged.
type OnLine = Arc<dyn Fn() + Send + Sync>;

/// Keeps every event as a line, with its level; clones share the lines.
#[derive(Clone, Default)]
pub struct LogLines {
    lines: Arc<Mutex<Vec<(Level, String)>>>,
    on_line: Option<OnLine>,
}

impl LogLines {
    /// Keeps every line, then calls `on_line` (on the thread that logged, as a host's log
    /// handler runs: for tests of what a handler may do from there).
    pub fn calling(on_line: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            on_line: Some(Arc::new(on_line)),
            ..Self::default()
        }
    }

    /// The lines kept so far.
    pub fn lines(&self) -> Vec<String> {
        self.kept(|_| true)
    }

    /// The lines kept so far at `level`.
    pub fn lines_at(&self, level: Level) -> Vec<String> {
        self.kept(|at| at == level)
    }

    fn kept(&self, wanted: impl Fn(Level) -> bool) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        lines
            .iter()
            .filter(|(level, _)| wanted(*level))
            .map(|(_, line)| line.clone())
            .collect()
    }

    /// Runs `f` with this subscriber as the calling thread's (other threads' events are not
    /// kept) and returns what `f` returned.
    pub fn during<T>(&self, f: impl FnOnce() -> T) -> T {
        // `tracing` caches whether a call site is wanted when the site is first reached. While
        // one subscriber alone is registered, a site first reached on another thread asks that
        // thread's default (none) and is cached as never wanted, so this thread would miss its
        // events. With a second subscriber registered for the whole run, every registered
        // subscriber is asked instead.
        static SECOND: OnceLock<tracing::Dispatch> = OnceLock::new();
        SECOND.get_or_init(|| tracing::Dispatch::new(LogLines::default()));
        tracing::subscriber::with_default(self.clone(), f)
    }
}

impl tracing::Subscriber for LogLines {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = Line(String::new());
        event.record(&mut line);
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((*event.metadata().level(), line.0));
        if let Some(on_line) = &self.on_line {
            on_line();
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
