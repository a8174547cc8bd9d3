//! The command's errors: each one a sentence that names the file, field or flag and the value
//! refused, printed on one line to stderr.

use promotion_gates::{
    MAX_SHOWN_VALUE_BYTES, TINY_NUMBER_REFUSAL, is_format_char, is_invisible, shown_number,
};
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// A file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A document is empty, not valid JSON or TOML, or holds a field or a value of a type it
    /// should not (the message names the field path and the value, with the line and column).
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, on one line.
        message: String,
    },
    /// A document parsed, but a value in it was refused (the message names the field).
    Invalid {
        /// The file, or `-` for values given as flags.
        path: PathBuf,
        /// `invalid FIELD = VALUE: EXPECTED`.
        message: String,
    },
    /// A command-line value was refused.
    Usage(String),
    /// A line of standard input was refused or could not be read (the message names the
    /// line).
    Input(String),
    /// The engine refused a call the command made.
    Engine(promotion_gates::Error),
    /// The simulation could not be set up.
    Simulation(String),
    /// The plot could not be drawn.
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// What plotters said.
        message: String,
    },
    /// Standard input or output failed.
    Io(io::Error),
}

impl CliError {
    /// The exit code: 2 for a usage error (as for a bad flag), 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }

    /// Whether stdout was closed under us (`| head`): not worth a message. A command whose
    /// exit status says more than success (`simulate`, `validate`) writes through
    /// [`unless_closed`] instead, so that a closed stdout never changes its status.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Io(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A path is the user's text too: shown on one line and short, as a value is.
        let shown = shown_path;
        match self {
            CliError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", shown(path))
            }
            CliError::Parse { path, message } | CliError::Invalid { path, message } => {
                write!(f, "{}: {message}", shown(path))
            }
            CliError::Usage(message) | CliError::Input(message) | CliError::Simulation(message) => {
                f.write_str(message)
            }
            CliError::Engine(e) => write!(f, "the engine refused: {e}"),
            CliError::Plot { path, message } => {
                write!(f, "cannot draw {}: {message}", shown(path))
            }
            CliError::Io(e) => write!(f, "input/output failed: {e}"),
        }
    }
}

impl std::error::Error for CliError {}

/// `value`'s text as a message shows it: as it is, except a number whose decimal form is
/// longer than the library writes one (an `f64` such as `1e300` displays as 301 digits), which
/// is written as the library's errors write it ([`shown_number`]: `1e300`). For values that are
/// numbers or short words, such as the scenario's checks refuse (a text made of digits would be
/// rewritten as a number: not for user text).
pub fn shown_value(value: impl fmt::Display) -> String {
    let text = value.to_string();
    match text.parse::<f64>() {
        Ok(number) if shown_number(number).len() < text.len() => shown_number(number),
        _ => text,
    }
}

/// Most bytes of a parser's message the CLI prints (the field path and the position aside):
/// room for its longest list of expected fields, and for two values shown in full.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// `text` from a document or a flag, as a one-line message shows it: each control, format or
/// invisible character ([`shown_escaped`]: a newline, an escape, U+202E, U+3164) escaped
/// ([`push_escaped`]: `\n`, `\u{1b}`, `\u{202e}`, `\u{3164}`), and at most
/// [`MAX_SHOWN_VALUE_BYTES`] of it (the library's limit), then `...(N bytes)`, N its length.
pub fn shown_text(text: &str) -> String {
    bounded(text, MAX_SHOWN_VALUE_BYTES)
}

/// A path the user gave, as every line the command prints shows it (an error's, or a success
/// line's): as [`shown_text`] shows text, so that a path holding a newline, a terminal escape
/// or a format character stays on one line and prints no escape; each byte that is not UTF-8 as `\xNN`, as a flag's
/// refusal writes it (not U+FFFD, which would name another file), and so a backslash as `\\`
/// (a name holding the text `\xFF` is not the byte). At most [`MAX_SHOWN_VALUE_BYTES`] shown,
/// never cut inside an escape, then `...(N bytes)`, N the path's length.
pub fn shown_path(path: &std::path::Path) -> String {
    use std::fmt::Write as _;
    let bytes = path.as_os_str().as_encoded_bytes();
    let mut shown = String::new();
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid().chars().map(Ok);
        for unit in valid.chain(chunk.invalid().iter().map(|&byte| Err(byte))) {
            let before = shown.len();
            // Writing to a String cannot fail.
            let _ = match unit {
                Ok('\\') => write!(shown, "\\\\"),
                Ok(c) if shown_escaped(c) => {
                    push_escaped(&mut shown, c);
                    Ok(())
                }
                Ok(c) => write!(shown, "{c}"),
                Err(byte) => write!(shown, "\\x{byte:02X}"),
            };
            if shown.len() > MAX_SHOWN_VALUE_BYTES {
                shown.truncate(before);
                return format!("{shown}...({} bytes)", bytes.len());
            }
        }
    }
    shown
}

/// `text` in double quotes, shown as [`shown_text`] shows it: how a flag's parser names the
/// value it refuses.
pub fn quoted_text(text: &str) -> String {
    format!("\"{}\"", shown_text(text))
}

/// `WHAT is below the smallest positive number a double holds ...`: how a flag refuses a
/// number too small for an `f64`, which would read as 0, in the library's words
/// ([`TINY_NUMBER_REFUSAL`]); `what` names the value as given (`"1e-400"`).
pub fn too_small(what: &str) -> String {
    format!("{what} is {TINY_NUMBER_REFUSAL}")
}

/// A parser's message (serde's, toml's) on one line and short: each span it quotes in
/// backticks or double quotes (a key or a value from the document) shown as [`shown_text`]
/// shows text, control characters escaped everywhere, the whole at most
/// [`MAX_MESSAGE_BYTES`].
pub fn one_line_message(message: &str) -> String {
    let mut shown = String::new();
    let mut rest = message;
    while let Some(open) = rest.find(['`', '"']) {
        let quote = &rest[open..=open];
        let body = &rest[open + 1..];
        let length = quoted_length(body, quote);
        shown.push_str(&bounded(&rest[..open], usize::MAX));
        shown.push_str(quote);
        shown.push_str(&shown_text(&body[..length]));
        let after = &body[length..];
        rest = after.strip_prefix(quote).unwrap_or(after);
        if rest.len() < after.len() {
            shown.push_str(quote);
        }
    }
    shown.push_str(&bounded(rest, usize::MAX));
    bounded(&shown, MAX_MESSAGE_BYTES)
}

/// Bytes of `body` before its closing `quote` (all of it when there is none); a backslash
/// escapes the next character in a double-quoted span (`{:?}` writes `\"` for a quote).
fn quoted_length(body: &str, quote: &str) -> usize {
    if quote == "`" {
        return body.find('`').unwrap_or(body.len());
    }
    let mut escaped = false;
    for (at, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return at,
            _ => {}
        }
    }
    body.len()
}

/// Whether the user's text shows `c` escaped: a control character (a newline, an escape), a
/// format character ([`is_format_char`]: U+202E shows the rest of a line reversed, U+200B
/// nothing at all) or another character drawn as nothing ([`is_invisible`]: U+3164 HANGUL
/// FILLER, a variation selector, U+2800): the characters the library refuses in names, but
/// whitespace; and U+2028 and U+2029, the line and paragraph separators, which end a line as
/// a newline does and which the library's messages escape too. The one test of what the CLI
/// escapes, in its messages ([`push_escaped`]) and in `route`'s ids.
pub fn shown_escaped(c: char) -> bool {
    c.is_control() || is_format_char(c) || is_invisible(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Writes `c`, which [`shown_escaped`] escapes, as `{:?}` writes a control character (`\n`,
/// `\u{1b}`) and any other as `\u{...}` (`\u{202e}`, `\u{3164}`: `{:?}` writes a letter
/// drawn as nothing as it is).
fn push_escaped(shown: &mut String, c: char) {
    if c.is_control() {
        shown.extend(c.escape_debug());
    } else {
        shown.extend(c.escape_unicode());
    }
}

/// `text`, each control and format character escaped ([`shown_escaped`]), cut to at most `max`
/// bytes (then followed by `...(N bytes)`, N the length of `text`).
fn bounded(text: &str, max: usize) -> String {
    let mut shown = String::new();
    for c in text.chars() {
        let before = shown.len();
        if shown_escaped(c) {
            push_escaped(&mut shown, c);
        } else {
            shown.push(c);
        }
        if shown.len() > max {
            shown.truncate(before);
            return format!("{shown}...({} bytes)", text.len());
        }
    }
    shown
}

/// `written`, a write to stdout, with a closed stdout (`| head`) taken as written: the reader
/// has gone and the rest is not read, but the command goes on to its own exit status (a
/// simulation's outcome, a validation's verdict), not 0 for a pipe nobody reads.
pub fn unless_closed(written: io::Result<()>) -> io::Result<()> {
    match written {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError::Io(e)
    }
}

impl From<promotion_gates::Error> for CliError {
    fn from(e: promotion_gates::Error) -> Self {
        CliError::Engine(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_number_is_shown_as_the_library_shows_it_and_the_rest_as_it_is() {
        assert_eq!(shown_value(-1e300), "-1e300");
        assert_eq!(shown_value(1e-300), "1e-300");
        assert_eq!(shown_value(2.5), "2.5");
        assert_eq!(shown_value(0.000001), "0.000001");
        assert_eq!(shown_value(u64::MAX), "18446744073709551615");
        assert_eq!(shown_value("(missing)"), "(missing)");
        assert_eq!(shown_value(f64::NAN), "NaN");
    }

    #[test]
    fn a_path_is_shown_on_one_line_and_short() {
        let e = CliError::Read {
            path: PathBuf::from("a\nb\u{1b}[31m.json"),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert!(
            e.to_string()
                .starts_with("cannot read a\\nb\\u{1b}[31m.json: "),
            "{e}"
        );
        let long = PathBuf::from("p".repeat(10_000));
        let e = CliError::Invalid {
            path: long,
            message: "bad".into(),
        };
        assert!(e.to_string().ends_with("...(10000 bytes): bad"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_path_that_is_not_utf8_shows_its_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(b"/tmp/\xff\xc3(\n.json"));
        assert_eq!(shown_path(&path), "/tmp/\\xFF\\xC3(\\n.json");
        // The text `\xFF` is not the byte: its backslash is escaped.
        assert_eq!(shown_path(&PathBuf::from("a\\xFFb")), "a\\\\xFFb");
        // Cut between escapes, with the path's own length.
        let long = PathBuf::from(std::ffi::OsStr::from_bytes(&[0xff; 105]));
        let shown = shown_path(&long);
        assert!(shown.ends_with("\\xFF...(105 bytes)"), "{shown}");
    }

    #[test]
    fn user_text_is_shown_on_one_line_and_short() {
        assert_eq!(shown_text("a\nb\u{1b}[31m\t"), "a\\nb\\u{1b}[31m\\t");
        // Drawn as nothing, though neither control nor format characters: shown raw, as
        // `{:?}` writes a letter.
        assert_eq!(
            shown_text("alice\u{3164}\u{fe0f}\u{2800}"),
            "alice\\u{3164}\\u{fe0f}\\u{2800}"
        );
        assert_eq!(
            shown_path(std::path::Path::new("a\u{115f}.json")),
            "a\\u{115f}.json"
        );
        // A format character showed the rest of the line reversed (U+202E), or nothing.
        assert_eq!(shown_text("good\u{202e}\u{200b}"), "good\\u{202e}\\u{200b}");
        assert_eq!(
            shown_path(std::path::Path::new("a\u{202e}.json")),
            "a\\u{202e}.json"
        );
        let long = "é".repeat(MAX_SHOWN_VALUE_BYTES);
        let shown = shown_text(&long);
        assert!(shown.len() <= MAX_SHOWN_VALUE_BYTES + 20, "{shown}");
        assert!(
            shown.ends_with(&format!("é...({} bytes)", long.len())),
            "{shown}"
        );
        assert_eq!(shown_text("stages[0].duration_s"), "stages[0].duration_s");
    }

    #[test]
    fn a_parsers_message_shows_each_quoted_span_short_and_escaped() {
        let key = "k".repeat(1_000_000);
        let unknown = format!("unknown field `{key}`, expected one of `gate`, `salt`");
        let shown = one_line_message(&unknown);
        assert_eq!(
            shown,
            format!(
                "unknown field `{}...(1000000 bytes)`, expected one of `gate`, `salt`",
                &key[..MAX_SHOWN_VALUE_BYTES]
            )
        );
        // A string as serde writes it ({:?}), an escaped quote inside.
        let value = format!("{:?}", format!("{key}\"x"));
        let shown = one_line_message(&format!("invalid type: string {value}, expected f64"));
        assert!(shown.starts_with("invalid type: string \"kkk"), "{shown}");
        assert!(shown.ends_with("bytes)\", expected f64"), "{shown}");
        assert_eq!(
            one_line_message("unknown field `a\nb\u{1b}[31m`, expected `x`"),
            "unknown field `a\\nb\\u{1b}[31m`, expected `x`"
        );
        // Unpaired quotes: still short and on one line.
        let shown = one_line_message(&format!("`` {key}\n`"));
        assert!(shown.len() < MAX_MESSAGE_BYTES + 30, "{shown}");
        assert!(!shown.contains('\n'), "{shown}");
        assert_eq!(one_line_message("no quotes"), "no quotes");
        assert_eq!(one_line_message("open `end"), "open `end");
    }

    #[test]
    fn only_a_closed_stdout_is_taken_as_written() {
        let closed = io::Error::from(io::ErrorKind::BrokenPipe);
        assert!(unless_closed(Err(closed)).is_ok());
        let full = io::Error::from(io::ErrorKind::StorageFull);
        assert!(unless_closed(Err(full)).is_err());
    }
}
