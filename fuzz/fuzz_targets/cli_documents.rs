//! The CLI's own document reader (`promotion_gates_cli::document::parse_written`: `parse`,
//! which reads the files of `--config`, `--slo` and `--scenario`, with the text kept to show a
//! refused number as written): its TOML token count, its search for a float too small for an
//! `f64`, the spans of its TOML errors and its search for a JSON error's number are written by
//! hand, over text it has not parsed yet. And a scenario's own checks (`Scenario::validate`,
//! `duration_range`, `scale_to`), which `validate` and `simulate` run on what it read.
//!
//! Input: a byte choosing the kind (config, SLO, scenario) and the file name (`.json`,
//! `.toml`, or none: JSON when the text starts with `{`, or with `[` and is all JSON,
//! `Format::of`), then the document (inputs that are not UTF-8 are left out: `load` refuses
//! them before `parse`). For every input:
//! - no panic, and a refusal is `CliError::Parse` whose message is one line;
//! - a config or SLO document read as JSON and validated is accepted exactly when the
//!   library's `from_json` accepts it, and reads as the same value (an empty one aside: the
//!   library's defaults, the CLI's refusal);
//! - a scenario read is validated (`Scenario::validate`, as `validate` and `simulate` do): a
//!   refusal, shown as the document writes the number refused (`FieldError::as_written`,
//!   which finds it by the field's path: `toml_number_at` in TOML), is one line naming a
//!   field, `invalid FIELD = VALUE: ...`; and when its fields validate and `--duration` has
//!   a range (`duration_range`, least not above most), the scenario scaled to either end
//!   (`scale_to`) validates, as `simulate --duration` takes it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use promotion_gates::{ConfigError, PromotionConfig, SloConfig};
use promotion_gates_cli::document::{Document, Format, Written, parse_written};
use promotion_gates_cli::error::CliError;
use promotion_gates_cli::scenario::Scenario;
use std::fmt::Debug;
use std::path::Path;

/// Reads `text` from `path` as a `T`: the value with the document as written, or the
/// refusal's message, checked.
fn read<T: Document>(path: &Path, text: &str) -> Result<(T, Written), String> {
    parse_written::<T>(path, text).map_err(|e| {
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

/// A scenario read from `path`, validated: a refusal names its field in one line, showing
/// the number as written; a scenario whose fields validate scales to either end of its
/// `--duration` range (when it has one) and validates there.
fn scenario(path: &Path, text: &str) {
    let Ok((scenario, written)) = read::<Scenario>(path, text) else {
        return;
    };
    if let Err(e) = scenario.validate() {
        let e = e.as_written(&written);
        let message = e.to_string();
        assert!(
            !e.field().is_empty(),
            "a refusal naming no field: {message:?}"
        );
        assert!(
            message.starts_with(&format!("invalid {} = ", e.field())),
            "a refusal not of its field {:?}: {message:?}",
            e.field()
        );
        assert!(
            !message.contains(['\n', '\r']),
            "a refusal on more than one line: {message:?}"
        );
    }
    if scenario.validate_fields().is_ok() {
        let (least, most) = scenario.duration_range();
        if least <= most {
            for total in [least, most] {
                let mut scaled = scenario.clone();
                scaled.scale_to(total);
                if let Err(e) = scaled.validate() {
                    panic!("scaled to {total} s (of {least} ..= {most} s): {e}");
                }
            }
        }
    }
}

/// [`read`], and for a document read as JSON, the same answer as the library's `from_json`
/// (`validate` is the check `from_json` makes after the read).
fn agrees<T: Document + Debug + PartialEq>(
    path: &Path,
    text: &str,
    library: fn(&str) -> Result<T, promotion_gates::Error>,
    validate: fn(&T) -> Result<(), ConfigError>,
) {
    let cli = read::<T>(path, text).map(|(value, _)| value);
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
        _ => scenario(path, text),
    }
});
