//! The checked-in C header must be what cbindgen generates from the code today.
//! `PGATE_BLESS=1 cargo test -p promotion-gates-ffi --test header` rewrites it.

use std::path::Path;

#[test]
fn checked_in_header_is_fresh() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let path = crate_dir.join("../include/promotion_gates.h");
    if std::env::var_os("PGATE_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("header written");
        return;
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "include/promotion_gates.h is stale: run `PGATE_BLESS=1 cargo test -p promotion-gates-ffi --test header` and commit it"
    );
}

/// The header's comments give `FLAG_SET_GRACE_WRITES`'s value by hand (the status's
/// "`FLAG_SET_GRACE_WRITES` (60)", the flag set's "at least 60 writes after"), and the Lua and
/// Python tests read it from there: each must be the Rust constant's.
#[test]
fn header_gives_the_flag_set_grace_as_the_crate_does() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../include/promotion_gates.h");
    let header = std::fs::read_to_string(&path).expect("include/promotion_gates.h reads");
    // The comments' words in one line: a number may be wrapped away from its words.
    let words: Vec<&str> = header
        .split_whitespace()
        .filter(|word| *word != "*")
        .collect();
    let text = words.join(" ");
    let expected = promotion_gates::FLAG_SET_GRACE_WRITES.to_string();
    let mut found = 0;
    for (before, after) in [
        ("`FLAG_SET_GRACE_WRITES` (", ")"),
        ("at least ", " writes after"),
    ] {
        for (at, _) in text.match_indices(before) {
            let rest = &text[at + before.len()..];
            let number: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if number.is_empty() || !rest[number.len()..].starts_with(after) {
                continue;
            }
            assert_eq!(
                number, expected,
                "include/promotion_gates.h says {before}{number}{after}, FLAG_SET_GRACE_WRITES is {expected}"
            );
            found += 1;
        }
    }
    assert!(
        found >= 2,
        "{found} values of FLAG_SET_GRACE_WRITES in include/promotion_gates.h, 2 expected"
    );
}
