//! The CLI's document reader and simulator, as a library for the binary (`src/main.rs`, which
//! adds the commands and their flags) and for the fuzz target `cli_documents`
//! (`fuzz/fuzz_targets/cli_documents.rs`), which reads bytes as `--config`, `--slo` and
//! `--scenario` files are read. Not an API: its modules are hidden from the docs, unversioned
//! and not published (the crate is `publish = false`).

// The modules are documented with the binary (`cargo doc` documents a binary's private items
// too), where their links to private items resolve; here they are hidden.
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
