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
