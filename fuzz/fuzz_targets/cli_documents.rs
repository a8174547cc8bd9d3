//! The CLI's own document reader (`promotion_gates_cli::document::parse`, which reads the files
//! of `--config`, `--slo` and `--scenario`): its TOML token count, its search for a float too
//! small for an `f64`, the spans of its TOML errors and its search for a JSON error's number are
//! written by hand, over text it has not parsed yet.
//!
//! Input: a byte choosing the kind (config, SLO, scenario) and the file name (`.json`,
//! `.toml`, or none: JSON when the text starts with `{`), then the document (inputs that are
//! not UTF-8 are left out: `load` refuses them before `parse`). For every input:
//! - no panic, and a refusal is `CliError::Parse` whose message is one line;
//! - a config or SLO document read as JSON and validated is accepted exactly when the
//!   library's `from_json` accepts it, and reads as the same value (an empty one aside: the
//!   library's defaults, the CLI's refusal).

#![no_main]

use libfuzzer_sys::fuzz_target;
use promotion_gates::{ConfigError, PromotionConfig, SloConfig};
use promotion_gates_cli::document::{Document, Format, parse};
use promotion_gates_cli::error::CliError;
use promotion_gates_cli::scenario::Scenario;
use std::fmt::Debug;
use std::path::Path;

/// Reads `text` from `path` as a `T`: the value, or the refusal's message, checked.
fn read<T: Document>(path: &Path, text: &str) -> Result<T, String> {
    parse::<T>(path, text).map_err(|e| {
        let message = e.to_string();
        assert!(
            matches!(e, CliError::Parse { .. }),
            "{path:?} refused as {message}"
        );
        assert!(
            !message.contains(['\n', '\r']),
            "a message on more than one line: {message:?}"
        );
        message
    })
}

/// [`read`], and for a document read as JSON, the same answer as the library's `from_json`
/// (`validate` is the check `from_json` makes after the read).
fn agrees<T: Document + Debug + PartialEq>(
    path: &Path,
    text: &str,
    library: fn(&str) -> Result<T, promotion_gates::Error>,
    validate: fn(&T) -> Result<(), ConfigError>,
) {
    let cli = read::<T>(path, text);
    let json = Format::of(path, text) == Format::Json;
    // An empty document is the defaults for the library, and refused by the CLI; a byte order
    // mark is refused by both, each in its own words.
    if json && !text.trim().is_empty() {
        match (
            cli.and_then(|v| validate(&v).map(|()| v).map_err(|e| e.to_string())),
            library(text),
        ) {
            (Ok(cli), Ok(library)) => assert_eq!(cli, library),
            (Err(_), Err(_)) => {}
            (cli, library) => panic!("the CLI: {cli:?}; the library: {library:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, document)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(document) else {
        return;
    };
    let path = Path::new(["d.json", "d.toml", "d"][usize::from(choice % 3)]);
    match choice / 3 % 3 {
        0 => agrees(
            path,
            text,
            PromotionConfig::from_json,
            PromotionConfig::validate,
        ),
        1 => agrees(path, text, SloConfig::from_json, SloConfig::validate),
        _ => drop(read::<Scenario>(path, text)),
    }
});
