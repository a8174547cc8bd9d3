//! Flags: the help of a flag that overrides a field of a `--config` file (its own words, then
//! the default it takes without the file, as clap writes a default: `[default: 42; with
//! --config, the file's]`; such flags have no clap default, which would override the file's
//! value), the parser of a flag whose value is text, and of a flag whose value is a number.

use clap::builder::{OsStringValueParser, TypedValueParser};
use promotion_gates::is_tiny_number;
use std::ffi::OsString;
use std::fmt::Display;

use crate::error::{quoted_text, too_small};

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

/// A flag's number, finite (for [`text`]): a text that is no number is refused as `"TEXT" is
/// not a number`, and one that reads as infinity or NaN (`inf`, `NaN`, and `1e400` or 400
/// digits, which overflow to infinity) as `"TEXT" is not a finite number`, naming the text as
/// given, never the `inf` it would become. A number too small for an `f64`, which would read
/// as 0 (`1e-400`), is refused as the library refuses it in a document
/// ([`is_tiny_number`], [`too_small`]).
pub fn finite_number(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(_) if is_tiny_number(text) => Err(too_small(&quoted_text(text))),
        Ok(number) if number.is_finite() => Ok(number),
        Ok(_) => Err(format!("{} is not a finite number", quoted_text(text))),
        Err(_) => Err(format!("{} is not a number", quoted_text(text))),
    }
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

    #[test]
    fn a_number_that_is_not_finite_is_refused_as_written() {
        assert_eq!(finite_number("-2.5e1"), Ok(-25.0));
        let ones = "1".repeat(400);
        for text in ["1e400", "-1e400", ones.as_str(), "inf", "-infinity", "NaN"] {
            assert_eq!(
                finite_number(text),
                Err(format!("{} is not a finite number", quoted_text(text)))
            );
        }
        assert_eq!(
            finite_number(&ones),
            Err(format!(
                "\"{}...(400 bytes)\" is not a finite number",
                &ones[..promotion_gates::MAX_SHOWN_VALUE_BYTES]
            ))
        );
        assert_eq!(finite_number("abc"), Err("\"abc\" is not a number".into()));
    }

    #[test]
    fn a_number_that_would_read_as_0_is_refused_as_written() {
        let zeros = format!("0.{}1", "0".repeat(400));
        for text in ["1e-400", "-2.5e-330", zeros.as_str()] {
            assert_eq!(
                finite_number(text),
                Err(format!(
                    "{} is {}",
                    quoted_text(text),
                    promotion_gates::TINY_NUMBER_REFUSAL
                ))
            );
        }
        // A zero as written, and a subnormal that reads above 0, are numbers as before.
        assert_eq!(finite_number("0e-400"), Ok(0.0));
        assert_eq!(finite_number("-0.0"), Ok(0.0));
        assert_eq!(finite_number("1e-310"), Ok(1e-310));
    }
}
