//! What the binary reads, run under a memory limit: a document or an id line larger than its
//! limit is refused after reading at most the limit, never held whole; and what `route` makes
//! of a config file with a state store (it never opens it).

#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a failed set-up is a failed test"
)]

use std::path::{Path, PathBuf};
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

/// Writes `text` to `NAME.toml` in `dir` and validates it as a scenario under the memory limit:
/// its refusal (the run must exit 1).
fn validate_scenario_limited(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let output = run_limited(
        &format!("validate --kind scenario {}", path.display()),
        "/dev/null",
    );
    assert_eq!(output.status.code(), Some(1), "{name}: {}", stderr(&output));
    stderr(&output)
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

#[test]
fn a_toml_document_of_many_small_values_is_refused_within_the_memory_limit() {
    // Within MAX_DOCUMENT_BYTES, an 8 MiB `x = [0,0,...]` took 635 MB to read; 8 MiB of line
    // breaks are as many tokens, each kept by the reader.
    let dir = temp_dir("zeros");
    let n = (4 << 20) - 8;
    for (name, text, tokens) in [
        ("zeros", format!("x = [{}0]\n", "0,".repeat(n)), 2 * n + 12),
        ("blank", format!("x = 1\n{}", "\n".repeat(2 * n)), 2 * n + 7),
    ] {
        let refusal = validate_scenario_limited(&dir, name, &text);
        assert!(
            refusal.contains(&format!(
                "invalid TOML document = {tokens} tokens: at most 400000"
            )),
            "{name}: {refusal}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_toml_document_of_nested_arrays_or_dotted_tables_at_the_limit_is_read_within_the_memory_limit()
{
    // Each array the reader starts takes room for four values, each table a map: a `[` or `.`
    // counts 4 tokens, so that a document at the limit made of them is read (and refused for
    // what it holds) within the memory limit. 52 tokens a part.
    let dir = temp_dir("openers");
    let parts = (400_000 - 12) / 52;
    let nested = format!("x = [{}0]\n", "[[[[[[[[[[0]]]]]]]]]],".repeat(parts));
    let dotted: String = (0..parts)
        .map(|i| format!("[a{i}.b.c.d.e.f.g.h.i.j]\n"))
        .collect();
    for (name, text, field) in [("nested", nested, "x"), ("dotted", dotted, "a0")] {
        let refusal = validate_scenario_limited(&dir, name, &text);
        assert!(
            refusal.contains(&format!("unknown field `{field}`")),
            "{name}: {refusal}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_endless_id_line_is_refused_by_number_within_the_memory_limit() {
    let output = run_limited("route --percent 50", "/dev/zero");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.starts_with("error: stdin line 1: invalid request id = \"\\x00"),
        "{message}"
    );
    assert!(
        message
            .trim_end()
            .ends_with("at most 65536 bytes (MAX_ID_BYTES) a line"),
        "{message}"
    );
}

#[test]
fn route_never_opens_the_files_store_and_its_flags_override_the_file() {
    let dir = temp_dir("store");
    let db = dir.join("s.db");
    let config = dir.join("gate.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"environment": {{"canary": {{"traffic_percent": 10}}}},
                "store": {{"sqlite": {{"path": {:?}}}}}}}"#,
            db.to_str().unwrap()
        ),
    )
    .unwrap();
    let route = |args: &[&str]| {
        let output = Command::new(BIN)
            .args(["route", "--config", config.to_str().unwrap()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        String::from_utf8(output.stdout).unwrap()
    };
    // bob's bucket is 1673481 under the salt `default`, 808712 under `other`.
    assert_eq!(
        route(&["bob"]),
        "bob\tstable\tstable: bucket 1673481 (16.73481%) >= threshold 1000000 (10%)\n"
    );
    assert_eq!(
        route(&["--percent", "100", "bob"]),
        "bob\tcanary\tcanary: bucket 1673481 (16.73481%) < threshold 10000000 (100%)\n"
    );
    assert!(route(&["--percent", "0", "bob"]).contains("threshold 0 (0%)"));
    let explained = route(&["--salt", "other", "--explain", "bob"]);
    assert!(
        explained.starts_with("salt           \"other\""),
        "{explained}"
    );
    assert!(
        explained.contains("-> bucket 808712 < threshold 1000000 -> canary"),
        "{explained}"
    );
    route(&["--gate", "other2", "bob"]);
    assert!(!db.exists(), "route created {}", db.display());
    std::fs::remove_dir_all(&dir).unwrap();
}
