//! The CLI's document reader and simulator, as a library for the binary (`src/main.rs`, which
//! adds the commands and their flags) and for the fuzz target `cli_documents`
//! (`fuzz/fuzz_targets/cli_documents.rs`), which reads bytes as `--config`, `--slo` and
//! `--scenario` files are read. Not an API: its modules are hidden from the docs, unversioned
//! and not published (the crate is `publish = false`).

// The modules are hidden from the rendered docs (not an API), but rustdoc still resolves
// their links, so `cargo doc` with warnings denied (`.ci/run`) catches a broken one; some
// link to private items, which is allowed here.
#![allow(rustdoc::private_intra_doc_links)]

#[doc(hidden)]
pub mod document;
#[doc(hidden)]
pub mod error;
#[doc(hidden)]
pub mod progress;
#[doc(hidden)]
pub mod report;
#[doc(hidden)]
pub mod rollout;
#[doc(hidden)]
pub mod scenario;
#[doc(hidden)]
pub mod traffic;
