//! What the binary reads, run under a memory limit: a document larger than its limit is
//! refused after reading at most the limit, never held whole.

#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a failed set-up is a failed test"
)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_promotion-gates");

/// The limit on the binary's address space: 64 MiB, several times what it needs, far less than
/// a 200 MB file or an endless line.
const ADDRESS_SPACE_KIB: u32 = 64 * 1024;

/// Runs `BIN ARGS` by `sh` under the memory limit, stdin from `stdin` (a path).
fn run_limited(args: &str, stdin: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" {args} < {stdin}"
        ))
        .arg(BIN)
        .stdin(Stdio::null())
        .output()
        .expect("sh runs")
}

/// A directory of this test's own.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pg-input-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_endless_or_huge_document_is_refused_within_the_memory_limit() {
    let limit = "at most 8388608 bytes (MAX_DOCUMENT_BYTES), the most the library reads";
    let output = run_limited("validate /dev/zero", "/dev/null");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).starts_with(&format!(
            "error: /dev/zero: invalid document = more than 8388608 bytes: {limit}"
        )),
        "{}",
        stderr(&output)
    );
    let dir = temp_dir("huge");
    let path = dir.join("huge.json");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(200 << 20)
        .unwrap();
    let output = run_limited(&format!("validate {}", path.display()), "/dev/null");
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("invalid document = 209715200 bytes: {limit}")),
        "{}",
        stderr(&output)
    );
}
