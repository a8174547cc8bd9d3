//! Flags: the help of a flag that overrides a field of a `--config` file (its own words, then
//! the default it takes without the file, as clap writes a default: `[default: 42; with
//! --config, the file's]`; such flags have no clap default, which would override the file's
//! value), and the parser of a flag whose value is text.

use clap::builder::{OsStringValueParser, TypedValueParser};
use std::ffi::OsString;
use std::fmt::Display;

/// `HELP [default: DEFAULT; with --config, the file's]`.
pub fn overriding(help: &str, default: impl Display) -> String {
    format!("{help} [default: {default}; with --config, the file's]")
}

/// The parser of a flag whose value `parse` reads as text: a value that is not UTF-8 is refused
/// as `parse` refuses a value, naming the flag and the value (its bytes that are not UTF-8
/// escaped: `"a\xFF"`), where clap's own parsers say only that some argument was not UTF-8.
pub fn text<T>(parse: fn(&str) -> Result<T, String>) -> impl TypedValueParser<Value = T>
where
    T: Clone + Send + Sync + 'static,
{
    OsStringValueParser::new().try_map(move |value: OsString| match value.to_str() {
        Some(text) => parse(text),
        None => Err(format!(
            "{} is not UTF-8 text",
            crate::error::shown_text(&format!("{value:?}"))
        )),
    })
}

/// A flag's text as it is (for [`text`]).
pub fn any_text(text: &str) -> Result<String, String> {
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_follows_the_help_as_clap_writes_it() {
        assert_eq!(
            overriding("Requests per second", 2000.0),
            "Requests per second [default: 2000; with --config, the file's]"
        );
    }
}
