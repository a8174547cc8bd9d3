//! Help for a flag that overrides a field of a `--config` file: its own words, then the default
//! it takes without the file, as clap writes a default (`[default: 42; with --config, the
//! file's]`). Such flags have no clap default, which would override the file's value.

use std::fmt::Display;

/// `HELP [default: DEFAULT; with --config, the file's]`.
pub fn overriding(help: &str, default: impl Display) -> String {
    format!("{help} [default: {default}; with --config, the file's]")
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
