//! The `promotion-gates` binary, run as a process: each subcommand, each built-in scenario's
//! verdict, the JSON report's shape, the SVG plot, and the error exits (a one-line message
//! naming the flag, file or field; never a panic).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a failed set-up is a failed test"
)]

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_promotion-gates");

/// Runs the binary with `args` and no stdin.
fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

/// Runs the binary with `args`, feeding `input` on stdin.
fn run_with_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// A successful run's stdout, parsed as one JSON document (so nothing else was printed).
fn json(args: &[&str]) -> Value {
    json_exiting(args, 0)
}

/// A run's stdout, parsed as one JSON document, checking that it exited with `status`.
fn json_exiting(args: &[&str], status: i32) -> Value {
    let output = run(args);
    assert_eq!(
        output.status.code(),
        Some(status),
        "{args:?}: {}",
        stderr(&output)
    );
    serde_json::from_str(&stdout(&output)).expect("stdout is one JSON document")
}

/// `simulate`'s exit status for a rollback and for a stall, as `--help` documents them.
const ROLLED_BACK: i32 = 3;
const STALLED: i32 = 4;

/// A failed run: the exit code and its one-line message.
fn failure(args: &[&str]) -> (i32, String) {
    let output = run(args);
    let message = stderr(&output);
    assert!(!output.status.success(), "{args:?} should fail");
    assert!(!message.contains("panicked"), "{message}");
    assert_eq!(message.trim_end().lines().count(), 1, "one line: {message}");
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    (output.status.code().unwrap(), message)
}

/// A file in the temporary directory, unique to this test process and `name`, removed when
/// dropped: a test that fails leaves nothing behind either.
fn temp_file(name: &str, contents: &str) -> TempFile {
    let path =
        std::env::temp_dir().join(format!("promotion-gates-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    TempFile(path)
}

/// A file of [`temp_file`]'s, read as its path.
struct TempFile(PathBuf);

impl std::ops::Deref for TempFile {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempFile {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn text(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

// The scenarios' verdicts. `good` and `flaky-but-fine` run at 500 rps to stay quick in debug
// builds; the verdicts below are those of seed 42 (the default) at these sizes.

#[test]
fn the_readmes_main_job_is_promoted_and_exits_0() {
    // `cargo run --release -- simulate`: the built-in defaults, no flag.
    let output = run(&["simulate"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("Outcome: promoted to Production (final environment Production)"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn good_is_promoted_stage_by_stage_to_production() {
    let report = json(&["simulate", "--scenario", "good", "--rps", "500", "--json"]);
    assert_eq!(report["outcome"], "promoted_to_production");
    assert_eq!(report["final_environment"], "Production");
    assert!(report["rollback"].is_null());
    let stages = report["stages"].as_array().unwrap();
    let shares: Vec<f64> = stages
        .iter()
        .map(|s| s["traffic_percent"].as_f64().unwrap())
        .collect();
    assert_eq!(shares, [1.0, 5.0, 10.0, 25.0, 50.0, 100.0]);
    assert_eq!(stages[5]["environment"], "staging");
    assert!(stages.iter().all(|s| s["verdict"] == "promoted"));
    assert_eq!(stages[5]["promoted_to"], "Production");
    assert_eq!(report["late_outcomes"], 0);
}

#[test]
fn error_spike_is_rolled_back_by_the_record_path() {
    let report = json_exiting(
        &["simulate", "--scenario", "error-spike", "--json"],
        ROLLED_BACK,
    );
    assert_eq!(report["outcome"], "rolled_back");
    assert_eq!(report["final_environment"], "Production");
    let rollback = &report["rollback"];
    assert_eq!(rollback["trigger"], "automatic");
    assert_eq!(rollback["detected_by"], "record_path");
    assert_eq!(rollback["stage"], 1);
    assert!(!rollback["rules"].as_array().unwrap().is_empty());
    assert!(
        rollback["evidence"].as_str().unwrap().contains("FIRED"),
        "{rollback}"
    );
    let last = report["stages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["verdict"], "rolled_back");
}

#[test]
fn latency_regression_is_rolled_back_on_p99_vs_stable() {
    let report = json_exiting(
        &["simulate", "--scenario", "latency-regression", "--json"],
        ROLLED_BACK,
    );
    assert_eq!(report["outcome"], "rolled_back");
    let rules = report["rollback"]["rules"].as_array().unwrap();
    assert!(rules.iter().any(|r| r == "p99_vs_stable"), "{rules:?}");
    let stage = &report["stages"][0];
    let (canary, production) = (
        stage["canary"]["p99_ms"].as_f64().unwrap(),
        stage["stable"]["p99_ms"].as_f64().unwrap(),
    );
    assert!(canary > 1.7 * production, "{canary} vs {production}");
}

#[test]
fn flaky_but_fine_is_not_rolled_back() {
    let report = json(&[
        "simulate",
        "--scenario",
        "flaky-but-fine",
        "--rps",
        "500",
        "--json",
    ]);
    assert_eq!(
        report["outcome"], "promoted_to_production",
        "{}",
        report["rollback"]
    );
    assert!(report["rollback"].is_null());
}

#[test]
fn catastrophic_is_rolled_back_within_a_few_dozen_failing_requests() {
    let report = json_exiting(
        &["simulate", "--scenario", "catastrophic", "--json"],
        ROLLED_BACK,
    );
    assert_eq!(report["outcome"], "rolled_back");
    let incident = &report["incident"];
    assert_eq!(incident["stage"], 3);
    let failing = incident["failing_canary_requests"].as_u64().unwrap();
    assert!(
        (1..=64).contains(&failing),
        "{failing} failing canary requests"
    );
    assert_eq!(
        incident["canary_requests"], failing,
        "every incident request fails"
    );
    assert!(incident["seconds_to_rollback"].as_f64().unwrap() < 5.0);
    assert_eq!(report["rollback"]["stage"], 3);
    assert!(report["stable_incident"].is_null());
}

/// `name`'s built-in scenario as a JSON scenario file, changed by `change`.
fn changed_scenario(name: &str, change: impl FnOnce(&mut Value)) -> TempFile {
    let mut scenario = json(&["simulate", "--scenario", name, "--show-config", "--json"]);
    change(&mut scenario);
    temp_file(&format!("{name}-changed.json"), &scenario.to_string())
}

#[test]
fn an_incident_from_the_rollbacks_instant_on_is_not_reported() {
    // The engine rolls `error-spike` back within the tick that ends at `at` (ticks are 10 ms
    // from 0); an incident from then on cuts no tick before it, so the draws and the rollback
    // are the same. It was reported: "0 failing canary requests of 0 before the rollback,
    // -0 s after onset", seconds_to_rollback -0.001, and a marker drawn.
    let spike = json_exiting(
        &["simulate", "--scenario", "error-spike", "--json"],
        ROLLED_BACK,
    );
    let at = spike["rollback"]["at_s"].as_f64().unwrap();
    let onset = (at / 0.01).ceil() * 0.01;
    let with_incident_from = |after_s: f64| {
        changed_scenario("error-spike", |scenario| {
            scenario["canary"]["incident"] = serde_json::json!({
                "stage": 1, "after_s": after_s, "error_rate": 1.0
            });
        })
    };
    let file = with_incident_from(onset);
    let report = json_exiting(
        &["simulate", "--config", text(&file), "--json"],
        ROLLED_BACK,
    );
    assert_eq!(report["rollback"], spike["rollback"], "the same rollback");
    assert_eq!(report["stages"], spike["stages"], "the same draws");
    assert!(report["incident"].is_null(), "{}", report["incident"]);
    let output = run(&["simulate", "--config", text(&file)]);
    assert_eq!(output.status.code(), Some(ROLLED_BACK));
    assert!(!stdout(&output).contains("ncident"), "{}", stdout(&output));
    // One that began a tick earlier met the rollback's tick: reported, after its onset.
    let file = with_incident_from(onset - 0.01);
    let report = json_exiting(
        &["simulate", "--config", text(&file), "--json"],
        ROLLED_BACK,
    );
    let incident = &report["incident"];
    assert!(
        incident["seconds_to_rollback"].as_f64().unwrap() > 0.0,
        "{incident}"
    );
}

#[test]
fn the_stable_versions_incident_is_reported_and_marked() {
    // Only the canary's incident was reported: this one had `"incident": null`, no text line
    // and no marker on the plot.
    let file = changed_scenario("good", |scenario| {
        scenario["rps"] = 500.into();
        scenario["stable"]["incident"] = serde_json::json!({
            "stage": 2, "after_s": 10, "error_rate": 0.5, "length_s": 5
        });
    });
    let plot = temp_file("stable-incident.svg", "");
    let report = json(&[
        "simulate",
        "--config",
        text(&file),
        "--json",
        "--plot",
        text(&plot),
    ]);
    assert!(report["incident"].is_null(), "{}", report["incident"]);
    let incident = &report["stable_incident"];
    assert_eq!(incident["stage"], 2);
    assert_eq!(incident["onset_s"], 70.0);
    // The stable version's share of 500 rps at 1 % for 5 s, half of them failing.
    let requests = incident["stable_requests"].as_u64().unwrap();
    let failing = incident["failing_stable_requests"].as_u64().unwrap();
    assert!((2_300..=2_450).contains(&requests), "{incident}");
    assert!(failing.abs_diff(requests / 2) < 150, "{incident}");
    assert!(incident["seconds_to_rollback"].is_null());
    has_exactly(
        incident,
        &[
            "stage",
            "onset_s",
            "stable_requests",
            "failing_stable_requests",
            "seconds_to_rollback",
        ],
    );
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.contains("stable incident starts (stage 2)"));
    let output = run(&["simulate", "--config", text(&file)]);
    assert_eq!(output.status.code(), Some(0));
    // Both counts below 10 000, in thousands as the table writes them.
    let line = format!(
        "Stable incident from 70 s (stage 2): {},{:03} failing stable requests of {},{:03} \
         before the end (no rollback).",
        failing / 1000,
        failing % 1000,
        requests / 1000,
        requests % 1000
    );
    assert!(stdout(&output).contains(&line), "{}", stdout(&output));
}

#[test]
fn json_report_has_its_documented_shape_and_is_reproducible() {
    let args = [
        "simulate",
        "--scenario",
        "catastrophic",
        "--seed",
        "7",
        "--json",
    ];
    let first = stdout(&run(&args));
    assert_eq!(
        first,
        stdout(&run(&args)),
        "the same seed gives the same report"
    );
    let report: Value = serde_json::from_str(&first).unwrap();
    has_exactly(
        &report,
        &[
            "scenario",
            "description",
            "seed",
            "rps",
            "sample",
            "outcome",
            "final_environment",
            "simulated_s",
            "requests",
            "represented_requests",
            "late_outcomes",
            "stages",
            "rollback",
            "incident",
            "stable_incident",
        ],
    );
    assert_eq!(report["seed"], 7);
    let stages = report["stages"].as_array().unwrap();
    for stage in stages {
        has_exactly(
            stage,
            &[
                "number",
                "environment",
                "traffic_percent",
                "start_s",
                "duration_s",
                "planned_s",
                "extensions",
                "canary",
                "stable",
                "judge",
                "refusals",
                "verdict",
                "promoted_to",
            ],
        );
        for cohort in ["canary", "stable"] {
            has_exactly(
                &stage[cohort],
                &["requests", "errors", "error_rate", "p50_ms", "p99_ms"],
            );
        }
    }
    let judged: Vec<&Value> = stages
        .iter()
        .map(|stage| &stage["judge"])
        .filter(|judge| !judge.is_null())
        .collect();
    assert!(!judged.is_empty(), "no stage was judged: {stages:?}");
    for judge in judged {
        has_exactly(judge, &JUDGE_KEYS);
    }
    has_exactly(
        &report["rollback"],
        &[
            "at_s",
            "stage",
            "environment",
            "trigger",
            "detected_by",
            "rules",
            "fired",
            "evidence",
            "reason",
        ],
    );
    has_exactly(
        &report["incident"],
        &[
            "stage",
            "onset_s",
            "canary_requests",
            "failing_canary_requests",
            "seconds_to_rollback",
        ],
    );
}

/// The keys of a stage's `judge` in the JSON report, as docs/simulator.md lists them.
const JUDGE_KEYS: [&str; 6] = [
    "health_score",
    "recommendation",
    "window_canary_requests",
    "window_stable_requests",
    "fired",
    "evidence",
];

/// Checks that `object` is a JSON object with exactly the keys `keys`, so that a key renamed,
/// added or left out fails.
fn has_exactly(object: &Value, keys: &[&str]) {
    let mut found: Vec<&str> = object
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {object}"))
        .keys()
        .map(String::as_str)
        .collect();
    found.sort_unstable();
    let mut expected = keys.to_vec();
    expected.sort_unstable();
    assert_eq!(found, expected, "{object}");
}

#[test]
fn a_stage_rolled_back_at_its_end_keeps_its_judge() {
    // A stage that ran its whole length, rolled back by the health check at its end, was
    // reported with "judge": null, as if a rollback had cut it short. The record path judges
    // every 30 s, so within the 4 s stage only the driver's health checks judge the slower
    // canary: the one at the stage's end rolls it back.
    let file = temp_file(
        "rolled-back-at-the-end.toml",
        "rps = 2000\n\
         stages = [{traffic_percent = 50, duration_s = 4}, {traffic_percent = 100, duration_s = 4}]\n\
         [canary]\nerror_rate = 0.005\nmedian_ms = 40\n\
         [stable]\nerror_rate = 0.005\nmedian_ms = 20\n\
         [slo]\nevaluation_interval_ms = 30000\nwarm_up_ms = 0\nmin_samples = 10\n\
         promotion_evidence = false\n",
    );
    let report = json_exiting(
        &["simulate", "--config", text(&file), "--json"],
        ROLLED_BACK,
    );
    assert_eq!(report["rollback"]["detected_by"], "health_check");
    assert_eq!(report["rollback"]["at_s"], 4.0);
    let stage = &report["stages"][0];
    assert_eq!(stage["verdict"], "rolled_back");
    assert_eq!(stage["duration_s"], stage["planned_s"]);
    let judge = &stage["judge"];
    has_exactly(judge, &JUDGE_KEYS);
    assert_eq!(judge["recommendation"], "ROLLBACK", "{judge}");
    assert_eq!(judge["fired"].as_array().unwrap().len(), 2, "{judge}");
    // A stage a rollback cut short was not judged at its end.
    let spike = json_exiting(
        &["simulate", "--scenario", "error-spike", "--json"],
        ROLLED_BACK,
    );
    assert_eq!(spike["rollback"]["detected_by"], "record_path");
    assert!(
        spike["stages"][0]["judge"].is_null(),
        "{}",
        spike["stages"][0]
    );
}

#[test]
fn text_report_shows_the_stage_table_and_the_rollback_evidence() {
    let output = run(&["simulate", "--scenario", "error-spike"]);
    assert_eq!(
        output.status.code(),
        Some(ROLLED_BACK),
        "{}",
        stderr(&output)
    );
    let out = stdout(&output);
    assert!(
        out.contains("stage  environment  traffic  duration"),
        "{out}"
    );
    assert!(out.contains("Outcome: ROLLED BACK"), "{out}");
    assert!(out.contains("rules fired:"), "{out}");
    assert!(out.contains("evidence: stage"), "{out}");
}

#[test]
fn a_stalled_rollout_exits_4_after_its_report() {
    let path = temp_file(
        "starved.toml",
        "name = \"starved\"\nrps = 50\nmax_extensions = 1\nextension_s = 5\n\n\
         [[stages]]\ntraffic_percent = 10\nduration_s = 10\n\n[slo]\nmin_samples = 100000\n",
    );
    let report = json_exiting(&["simulate", "--config", text(&path), "--json"], STALLED);
    assert_eq!(report["outcome"], "stalled");
    assert_eq!(report["final_environment"], "Canary{10}");
}

/// The exit status of `args` run with a stdout whose reader has gone before anything is read
/// (`| head -0`), and what it said on stderr.
fn status_with_stdout_closed(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    (output.status.code(), stderr(&output))
}

#[test]
fn a_closed_stdout_keeps_the_outcomes_exit_status() {
    // `simulate | head -1` exited 0 after a rollback: the broken pipe was taken for success.
    for (args, status) in [
        (&["simulate", "--scenario", "error-spike"][..], ROLLED_BACK),
        (
            &["simulate", "--scenario", "error-spike", "--json"][..],
            ROLLED_BACK,
        ),
    ] {
        let (code, message) = status_with_stdout_closed(args);
        assert_eq!(code, Some(status), "{args:?}: {message}");
        assert_eq!(message, "", "{args:?}: quiet about the pipe");
    }
    let path = temp_file(
        "starved-piped.toml",
        "rps = 50\nmax_extensions = 0\n[[stages]]\ntraffic_percent = 10\nduration_s = 10\n\n\
         [slo]\nmin_samples = 100000\n",
    );
    let (code, message) = status_with_stdout_closed(&["simulate", "--config", text(&path)]);
    assert_eq!(code, Some(STALLED), "{message}");
    // validate's verdict on a second file survives the first one's `ok:` line.
    let config = temp_file("config-piped.json", "{}");
    let bad = temp_file("bad-piped.json", r#"{"min_samples": "many"}"#);
    let (code, message) =
        status_with_stdout_closed(&["validate", text(&config), "--slo", text(&bad)]);
    assert_eq!(code, Some(1), "{message}");
    assert!(message.contains("min_samples"), "{message}");
}

#[test]
fn simulate_help_documents_every_exit_status() {
    let help = stdout(&run(&["simulate", "--help"]));
    for status in [
        "0 promoted to Production".to_string(),
        format!("{ROLLED_BACK} rolled back"),
        format!("{STALLED} stalled"),
        "1 an error".to_string(),
        "2 a bad flag".to_string(),
    ] {
        assert!(help.contains(&status), "--help lacks {status:?}: {help}");
    }
}

#[test]
fn fast_mode_simulates_one_request_in_n() {
    let report = json(&[
        "simulate",
        "--scenario",
        "good",
        "--rps",
        "5000",
        "--sample",
        "10",
        "--json",
    ]);
    assert_eq!(report["outcome"], "promoted_to_production");
    assert_eq!(report["sample"], 10);
    let requests = report["requests"].as_u64().unwrap();
    assert_eq!(
        report["represented_requests"].as_u64().unwrap(),
        10 * requests
    );
    assert_eq!(requests, 180_000); // 500 simulated requests a second for 6 minutes
}

#[test]
fn plot_writes_an_svg_timeline_with_the_rollback_marked() {
    let path = temp_file("catastrophic.svg", "");
    let report = json_exiting(
        &[
            "simulate",
            "--scenario",
            "catastrophic",
            "--json",
            "--plot",
            text(&path),
        ],
        ROLLED_BACK,
    );
    assert_eq!(report["outcome"], "rolled_back");
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<svg").count(), 1);
    for label in [
        "Canary traffic share (%)",
        "Error rate (%)",
        "p99 latency (ms)",
        "Health score (0-1)",
        "simulated time (s)",
        "rollback: ",
        "incident starts (stage 3)",
    ] {
        assert!(svg.contains(label), "the SVG lacks {label:?}");
    }
}

#[test]
fn a_name_with_xml_specials_is_escaped_in_the_svg_and_a_control_character_refused() {
    // A control character in name or description made an SVG no XML parser reads, and
    // terminal escapes in the text report.
    validate_and_simulate_refuse(
        "escape.toml",
        "name = \"a\\u001b[31mred\"\n",
        "invalid name = \"a\\u{1b}[31mred\": text without control, format or invisible \
         characters, line or paragraph separators, U+FFFE or U+FFFF (it holds '\\u{1b}')",
    );
    validate_and_simulate_refuse(
        "newline.json",
        r#"{"description": "two\nlines"}"#,
        "invalid description = \"two\\nlines\"",
    );
    let path = temp_file(
        "specials.toml",
        "name = \"<a&b>\"\ndescription = \"it's \\\"quoted\\\" & <tagged>\"\nrps = 200\n\
         stages = [{traffic_percent = 50, duration_s = 5}]\n\
         [slo]\npromotion_evidence = false\nwarm_up_ms = 0\nmin_samples = 10\n",
    );
    let svg = temp_file("specials.svg", "");
    let output = run(&["simulate", "--config", text(&path), "--plot", text(&svg)]);
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    // Said once the plot is written, after the report.
    let said = format!("\nTimeline written to {}.\n", svg.display());
    assert!(stdout(&output).ends_with(&said), "{}", stdout(&output));
    assert!(drawn.contains("&lt;a&amp;b&gt;"), "{drawn}");
    assert!(
        drawn.contains("&quot;quoted&quot; &amp; &lt;tagged&gt;"),
        "{drawn}"
    );
    assert!(
        !drawn.contains("<a&b>") && !drawn.contains("<tagged>"),
        "{drawn}"
    );
}

#[test]
fn a_name_or_description_with_a_character_the_cli_escapes_is_refused_naming_it() {
    // U+2028, U+2029 and U+3164 were accepted in name and description, which the report
    // prints as they are: a line ended, or a blank no reader sees as one.
    for (field, toml_escape, shown) in [
        ("name", "\\u3164", "\\u{3164}"),
        ("name", "\\u2028", "\\u{2028}"),
        ("description", "\\u2029", "\\u{2029}"),
        ("description", "\\u3164", "\\u{3164}"),
    ] {
        let path = temp_file("unseen.toml", &format!("{field} = \"a{toml_escape}b\"\n"));
        let (code, message) = failure(&["validate", "--kind", "scenario", text(&path)]);
        assert_eq!(code, 1, "{message}");
        let expected = format!(
            "invalid {field} = \"a{shown}b\": text without control, format or invisible \
             characters, line or paragraph separators, U+FFFE or U+FFFF (it holds '{shown}')"
        );
        assert!(message.contains(&expected), "{message}");
    }
}

/// docs/simulator.md.
fn simulator_docs() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/simulator.md")).unwrap()
}

/// The text of the docs' first code block that starts with `opening` (its fence included),
/// from the line after the fence.
fn code_block<'d>(docs: &'d str, opening: &str) -> &'d str {
    let fence = docs.find(opening).expect("the docs hold the block");
    let start = fence + docs[fence..].find('\n').unwrap() + 1;
    let length = docs[start..].find("```").unwrap();
    &docs[start..start + length]
}

/// Checks that each line of `shown` (the docs' output, lines that end in `...` cut there) is a
/// line of `output`, but for the wall time and the lines the docs leave out.
fn shows_as_documented(shown: &str, output: &str) {
    for line in shown.lines().filter(|l| {
        !(l.is_empty() || l.starts_with("...") || l.starts_with("$ ") || l.contains("wall time"))
    }) {
        let found = match line.strip_suffix("...") {
            Some(start) => output.lines().any(|l| l.starts_with(start)),
            None => output.lines().any(|l| l == line),
        };
        assert!(found, "the docs show {line:?}; the run printed:\n{output}");
    }
}

#[test]
fn the_examples_of_the_simulator_docs_give_the_outcomes_they_state() {
    let docs = simulator_docs();
    // The scenario file example stalled in stage 1 (exit 4), before the incident it describes.
    let path = temp_file(
        "slow-after-deploy.toml",
        code_block(&docs, "```toml\nname = \"slow-after-deploy\""),
    );
    let report = json_exiting(
        &["simulate", "--config", text(&path), "--json"],
        ROLLED_BACK,
    );
    assert_eq!(report["stages"][0]["promoted_to"], "Canary{20}");
    assert_eq!(report["rollback"]["stage"], 2);
    assert_eq!(
        report["rollback"]["rules"],
        serde_json::json!(["p99_vs_stable"])
    );
    let after = report["incident"]["seconds_to_rollback"].as_f64().unwrap();
    assert_eq!(format!("{after:.1}"), "2.9");
    assert!(docs.contains("rolls the canary back 2.9 s later on\n`p99_vs_stable`"));
    // The default run's table, and the rollback of `catastrophic`.
    shows_as_documented(
        code_block(&docs, "```\n$ cargo run --release -- simulate\n"),
        &stdout(&run(&["simulate"])),
    );
    shows_as_documented(
        code_block(&docs, "```\nRolled back at "),
        &stdout(&run(&["simulate", "--scenario", "catastrophic"])),
    );
}

/// Checks that `shown`, the built-in scenario `name` as `--show-config` printed it, run from
/// a file called `file`, gives the built-in scenario's report.
fn runs_as_the_built_in(name: &str, file: &str, shown: &str) {
    let path = temp_file(file, shown);
    let from_file = stdout(&run(&["simulate", "--config", text(&path), "--json"]));
    let built_in = stdout(&run(&["simulate", "--scenario", name, "--json"]));
    assert_eq!(from_file, built_in);
}

#[test]
fn a_scenario_file_runs_and_round_trips_through_show_config() {
    let shown = run(&["simulate", "--scenario", "error-spike", "--show-config"]);
    assert!(shown.status.success());
    runs_as_the_built_in("error-spike", "error-spike.toml", &stdout(&shown));
}

#[test]
fn show_config_with_json_prints_a_json_scenario_file() {
    // It printed TOML, though --json promises only JSON on stdout.
    let shown = json(&[
        "simulate",
        "--scenario",
        "catastrophic",
        "--show-config",
        "--json",
    ]);
    assert_eq!(shown["name"], "catastrophic");
    runs_as_the_built_in("catastrophic", "catastrophic.json", &shown.to_string());
}

#[test]
fn show_config_with_plot_is_a_usage_error() {
    // It wrote no plot and said nothing.
    let path = std::env::temp_dir().join(format!(
        "promotion-gates-cli-{}-show-config.svg",
        std::process::id()
    ));
    let (code, message) = failure(&["simulate", "--show-config", "--plot", text(&path)]);
    assert_eq!(code, 2);
    assert!(
        message.contains("'--show-config' cannot be used with '--plot <FILE.svg>'"),
        "{message}"
    );
    assert!(!path.exists(), "nothing is written");
}

#[test]
fn a_json_scenario_file_with_its_own_ramp() {
    let path = temp_file(
        "ramp.json",
        r#"{
            "name": "two-step",
            "rps": 400,
            "stages": [
                {"traffic_percent": 20, "duration_s": 30},
                {"environment": "staging", "duration_s": 20}
            ],
            "canary": {"error_rate": 0.005, "median_ms": 20, "sigma": 0.7},
            "slo": {"promotion_evidence": false, "warm_up_ms": 0}
        }"#,
    );
    // No warm-up: a 30 s stage's latencies count from its first request.
    let report = json(&["simulate", "--config", text(&path), "--json"]);
    assert_eq!(report["scenario"], "two-step");
    assert_eq!(report["outcome"], "promoted_to_production");
    assert_eq!(report["stages"].as_array().unwrap().len(), 2);
    assert_eq!(report["requests"], 20_000);
}

// route

#[test]
fn route_prints_each_decision_and_its_reason() {
    let output = run(&[
        "route",
        "--gate",
        "checkout",
        "--percent",
        "50",
        "user-1",
        "user-2",
    ]);
    assert!(output.status.success());
    let out = stdout(&output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    // SHA-256(SHA-256("checkout") || 32 zero bytes || "user-1")[..8] = 726c68d0b0b500cc
    // (Python's hashlib): x * 10^7 >> 64 = 4469666 < 5000000.
    assert_eq!(
        lines[0],
        "user-1\tcanary\tcanary: bucket 4469666 (44.69666%) < threshold 5000000 (50%)"
    );
    assert!(lines[1].starts_with("user-2\t"));
}

#[test]
fn route_explain_shows_every_step() {
    let out = stdout(&run(&[
        "route",
        "--gate",
        "checkout",
        "--percent",
        "5",
        "--explain",
        "user-1",
    ]));
    assert!(out.contains("salt           \"checkout\""), "{out}");
    assert!(
        out.contains("c7761e58969f7edd498186641b2021e8477e1bcd230de4cf3435242da4a40d14"),
        "{out}"
    );
    assert!(
        out.contains(
            "digest prefix 726c68d0b0b500cc -> x = 8245080263335674060 -> bucket 4469666 >= threshold 500000 -> stable"
        ),
        "{out}"
    );
}

#[test]
fn route_explain_states_each_environments_threshold() {
    let canary = stdout(&run(&["route", "--percent", "5", "--explain", "u"]));
    assert!(
        canary.contains("threshold = round(percent * 100000) = 500000; canary when"),
        "{canary}"
    );
    for (environment, rule) in [
        (
            "staging",
            "threshold = 10000000 (Staging: every request); canary when",
        ),
        (
            "production",
            "threshold = 0 (Production: no request); canary when",
        ),
    ] {
        let path = temp_file(
            &format!("{environment}.toml"),
            &format!("environment = \"{environment}\"\n"),
        );
        let output = run(&["route", "--config", text(&path), "--explain", "u"]);
        assert!(output.status.success(), "{}", stderr(&output));
        let out = stdout(&output);
        assert!(out.contains(rule), "{out}");
        assert!(!out.contains("round(percent"), "{out}");
    }
}

#[test]
fn route_with_a_forcing_value_shows_what_it_forces_and_what_it_ignores() {
    // A 0 % canary whose overrides name a header: `--value canary` forces every id to the
    // canary, in any ASCII case; another value, or none, leaves the bucket to decide (stable).
    let path = temp_file(
        "forcing.json",
        r#"{"environment": {"canary": {"traffic_percent": 0}}, "overrides": {"header": "X-Canary"}}"#,
    );
    let routed = |value: Option<&str>| {
        let mut args = vec!["route", "--config", text(&path), "--json", "--explain"];
        if let Some(value) = value {
            args.extend(["--value", value]);
        }
        args.push("alice");
        let output = run(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        serde_json::from_str::<Value>(stdout(&output).trim()).unwrap()
    };
    for value in ["canary", "CaNaRy"] {
        let d = routed(Some(value));
        assert_eq!(
            (&d["cohort"], &d["forced"]),
            (&serde_json::json!("canary"), &serde_json::json!("value")),
            "{d}"
        );
    }
    for value in [Some("beta"), Some(""), None] {
        let d = routed(value);
        assert_eq!(d["cohort"], "stable", "{d}");
        assert!(d.get("forced").is_none(), "{d}");
    }
    let text_output = run(&[
        "route",
        "--config",
        text(&path),
        "--explain",
        "--value",
        "canary",
        "alice",
    ]);
    assert!(
        stdout(&text_output).contains("not compared: forced to canary by"),
        "{}",
        stdout(&text_output)
    );
}

#[test]
fn route_reads_ids_from_stdin_and_writes_json_lines() {
    let output = run_with_stdin(
        &[
            "route",
            "--salt",
            "s1",
            "--percent",
            "100",
            "--json",
            "--explain",
        ],
        "alice\nbob\r\n\ncarol\n",
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let decisions: Vec<Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = decisions
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alice", "bob", "carol"]);
    for d in &decisions {
        assert_eq!(d["is_canary"], true);
        assert_eq!(d["cohort"], "canary");
        assert_eq!(d["threshold"], 10_000_000);
        assert_eq!(d["salt"], "s1");
        assert_eq!(d["digest_prefix"].as_str().unwrap().len(), 16);
        assert!(d["bucket"].as_u64().unwrap() < 10_000_000);
    }
}

#[test]
fn route_writes_each_id_one_way_a_backslash_and_an_unseen_character_escaped() {
    // The text `x\xFF` and the bytes `x`, 0xFF printed alike; U+3164 HANGUL FILLER, which
    // the library refuses in names as drawn as nothing, printed raw.
    let mut child = Command::new(BIN)
        .arg("route")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"x\\xFF\nx\xff\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    let ids: Vec<&str> = out.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(ids, ["x\\\\xFF", "x\\xFF"], "{out}");
    for (id, shown) in [
        ("alice\u{3164}", "alice\\xE3\\x85\\xA4"),
        ("bob\u{fe0f}", "bob\\xEF\\xB8\\x8F"),
        ("\u{2800}", "\\xE2\\xA0\\x80"),
    ] {
        let out = stdout(&run(&["route", id]));
        assert!(out.starts_with(&format!("{shown}\t")), "{out}");
    }
}

#[test]
fn route_and_validate_escape_the_line_and_paragraph_separators() {
    // U+2028 and U+2029 end a line as a newline does: `route` printed them raw in its
    // tab-separated lines, `validate` inside its one-line error, where the library's messages
    // escape them.
    for (id, shown) in [
        ("u\u{2028}x", "u\\xE2\\x80\\xA8x"),
        ("v\u{2029}y", "v\\xE2\\x80\\xA9y"),
    ] {
        let out = stdout(&run(&["route", id]));
        assert!(out.starts_with(&format!("{shown}\t")), "{out:?}");
        assert!(!out.contains(['\u{2028}', '\u{2029}']), "{out:?}");
    }
    let missing = std::env::temp_dir().join(format!(
        "promotion-gates-cli-{}-a\u{2029}b\u{2028}.json",
        std::process::id()
    ));
    let (code, message) = failure(&["validate", text(&missing)]);
    assert_eq!(code, 1, "{message}");
    assert!(message.contains("a\\u{2029}b\\u{2028}.json"), "{message:?}");
    assert!(!message.contains(['\u{2028}', '\u{2029}']), "{message:?}");
}

#[test]
fn route_with_a_config_file() {
    let path = temp_file(
        "gate.toml",
        "gate = \"search\"\nenvironment = { canary = { traffic_percent = 0 } }\n",
    );
    let out = stdout(&run(&["route", "--config", text(&path), "u"]));
    assert!(out.starts_with("u\tstable\tstable: bucket "), "{out}");
    assert!(out.contains("threshold 0 (0%)"), "{out}");
}

#[test]
fn route_with_a_config_of_a_short_window() {
    // Routing does not read the window: a 5 s one (shorter than ten of the default SLO's 1 s
    // evaluations) routes as any other.
    let path = temp_file("short-route.json", r#"{"rollback_window_seconds": 5}"#);
    let output = run(&["route", "--config", text(&path), "u1"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("u1\t"), "{out}");
}

// validate

#[test]
fn validate_accepts_a_valid_config() {
    let path = temp_file(
        "valid.json",
        r#"{"gate": "shop", "environment": {"canary": {"traffic_percent": 5}}}"#,
    );
    let output = run(&["validate", text(&path)]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).starts_with("ok: "), "{}", stdout(&output));
    assert!(stdout(&output).contains("environment Canary{5}"));
}

#[test]
fn validate_without_slo_checks_the_default_slo_against_the_window() {
    // A 5 s window does not fit the default SLO's 1 s interval: every gate opened without an
    // SLO document refuses it, so validate does.
    let path = temp_file("short-validate.json", r#"{"rollback_window_seconds": 5}"#);
    let (code, message) = failure(&["validate", text(&path)]);
    assert_eq!(code, 1);
    assert!(
        message.contains("invalid evaluation_interval_ms = 1000")
            && message.contains("rollback_window_seconds = 5")
            && message.contains("--slo"),
        "{message}"
    );
    // With an SLO that fits, it is valid.
    let slo = temp_file(
        "short-validate-slo.json",
        r#"{"evaluation_interval_ms": 500}"#,
    );
    let output = run(&["validate", text(&path), "--slo", text(&slo)]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn validate_reads_each_file_once_so_stdin_can_be_checked() {
    // A file read again for the default SLO or for the pair found a pipe empty the second time.
    let output = run_with_stdin(&["validate", "/dev/stdin"], "{}");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with("ok: /dev/stdin: a valid PromotionConfig"),
        "{}",
        stdout(&output)
    );
    let slo = temp_file("once-slo.json", r#"{"evaluation_interval_ms": 500}"#);
    let output = run_with_stdin(&["validate", "/dev/stdin", "--slo", text(&slo)], "{}");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output).matches("ok: ").count(),
        2,
        "{}",
        stdout(&output)
    );
    let config = temp_file("once-config.json", r#"{"rollback_window_seconds": 5}"#);
    let output = run_with_stdin(
        &["validate", text(&config), "--slo", "/dev/stdin"],
        r#"{"evaluation_interval_ms": 500}"#,
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output).matches("ok: ").count(),
        2,
        "{}",
        stdout(&output)
    );
}

#[test]
fn a_document_without_an_extension_is_json_when_its_text_is_a_json_value() {
    // A JSON array on stdin was read as TOML, the table `x`: "invalid TOML: x: unknown field".
    for array in ["[\"x\"]\n", " [1, 2]", "[]"] {
        let output = run_with_stdin(&["validate", "/dev/stdin"], array);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{array}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).starts_with(
                "error: /dev/stdin: invalid JSON: a PromotionConfig must be a JSON object with \
                 named fields, not an array"
            ),
            "{array}: {}",
            stderr(&output)
        );
    }
    // A TOML table header is TOML still.
    let output = run_with_stdin(
        &["validate", "--kind", "scenario", "/dev/stdin"],
        "[promotion]\ngate = \"search\"\n\n[[stages]]\ntraffic_percent = 5\nduration_s = 60\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn route_refuses_a_config_on_stdin_when_the_ids_are_read_from_stdin_too() {
    // The config used stdin up: no id was read, nothing printed, exit 0. Refused before
    // stdin is read, so the write may find the pipe closed.
    let refused = |config: &str, stdin: Stdio| {
        let mut child = Command::new(BIN)
            .args(["route", "--config", config])
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(mut input) = child.stdin.take() {
            let written = input.write_all(b"{}\n");
            assert!(
                written
                    .as_ref()
                    .map_or_else(|e| e.kind() == std::io::ErrorKind::BrokenPipe, |()| true),
                "{written:?}"
            );
        }
        child.wait_with_output().unwrap()
    };
    // A pipe, and a file stdin is redirected from (its lines would be taken for ids).
    let file = temp_file("route-stdin-config.json", "{}\n");
    for (config, stdin) in [
        ("/dev/stdin", Stdio::piped()),
        ("/dev/fd/0", Stdio::piped()),
        (
            "/dev/stdin",
            Stdio::from(std::fs::File::open(&file).unwrap()),
        ),
        (
            text(&file),
            Stdio::from(std::fs::File::open(&file).unwrap()),
        ),
    ] {
        let output = refused(config, stdin);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{config}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(&format!(
                "--config {config} is stdin, and with no ids on the command line the ids are \
                 read from stdin too"
            )),
            "{}",
            stderr(&output)
        );
        assert_eq!(stdout(&output), "");
    }
    // With ids on the command line, the config is read from stdin.
    let output = run_with_stdin(
        &["route", "--config", "/dev/stdin", "alice"],
        r#"{"environment": "staging"}"#,
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with("alice\tcanary"),
        "{}",
        stdout(&output)
    );
    // A config file and ids on stdin, as before.
    let config = temp_file("route-stdin.json", r#"{"environment": "staging"}"#);
    let output = run_with_stdin(&["route", "--config", text(&config)], "alice\n");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with("alice\tcanary"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn validate_refuses_slo_with_another_kind_as_a_conflict() {
    // --slo pairs an SLO file with a PromotionConfig: with --kind slo or scenario it was
    // accepted and checked alone, for no gate.
    let slo = temp_file("conflict-slo.json", "{}");
    for kind in ["slo", "scenario"] {
        let (code, message) =
            failure(&["validate", "--kind", kind, text(&slo), "--slo", text(&slo)]);
        assert_eq!(code, 2, "{message}");
        assert!(
            message.contains("'--slo <FILE>' cannot be used with")
                && message.contains(&format!("'--kind {kind}'")),
            "{message}"
        );
    }
    let config = temp_file("conflict-config.json", "{}");
    let output = run(&[
        "validate",
        "--kind",
        "promotion",
        text(&config),
        "--slo",
        text(&slo),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn validate_names_the_invalid_field_and_its_value() {
    let path = temp_file("threshold.json", r#"{"slo_threshold": 2}"#);
    let (code, message) = failure(&["validate", text(&path)]);
    assert_eq!(code, 1);
    assert!(message.contains("invalid slo_threshold = 2"), "{message}");
    assert!(message.contains("the first error"), "{message}");
}

#[test]
fn a_refused_number_is_named_as_the_file_writes_it_in_json_and_toml() {
    // Read through an f64 (and a Duration), u64::MAX was named 18446744073709552000; 1e20 ms
    // 100000000000000000000, 1.50e2 150.
    let u64_max = "18446744073709551615";
    let stages = |duration: &str| {
        (
            format!(
                r#"{{"stages": [{{"environment": "canary", "traffic_percent": 5, "duration_s": 60}},
                   {{"environment": "canary", "traffic_percent": 50, "duration_s": {duration}}}]}}"#
            ),
            format!(
                "[[stages]]\nenvironment = \"canary\"\ntraffic_percent = 5\nduration_s = 60\n\n\
                 [[stages]]\nenvironment = \"canary\"\ntraffic_percent = 50\n\
                 duration_s = {duration}\n"
            ),
        )
    };
    let cases = [
        ("slo", "latency_target_ms", u64_max, ("", "")),
        ("slo", "no_data_ms", "1e20", ("", "")),
        ("slo", "latency_target_ms", "-0.0", ("", "")),
        ("promotion", "slo_threshold", u64_max, ("", "")),
        (
            "promotion",
            "environment.canary.traffic_percent",
            "1.50e2",
            ("environment", "canary"),
        ),
        ("scenario", "rps", u64_max, ("", "")),
        ("scenario", "slo.warm_up_ms", u64_max, ("slo", "")),
    ];
    for (kind, field, written, (table, inner)) in cases {
        let key = field.rsplit('.').next().unwrap();
        let (json, toml) = match (table, inner) {
            ("", _) => (
                format!(r#"{{"{key}": {written}}}"#),
                format!("{key} = {written}\n"),
            ),
            (table, "") => (
                format!(r#"{{"{table}": {{"{key}": {written}}}}}"#),
                format!("[{table}]\n{key} = {written}\n"),
            ),
            (table, inner) => (
                format!(r#"{{"{table}": {{"{inner}": {{"{key}": {written}}}}}}}"#),
                format!("[{table}.{inner}]\n{key} = {written}\n"),
            ),
        };
        for (name, document) in [("written.json", json), ("written.toml", toml)] {
            let path = temp_file(name, &document);
            let (code, message) = failure(&["validate", "--kind", kind, text(&path)]);
            assert_eq!(code, 1, "{message}");
            assert!(
                message.contains(&format!("invalid {field} = {written}: ")),
                "{document}: {message}"
            );
        }
    }
    let (json, toml) = stages("1e20");
    for (name, document) in [("stages.json", json), ("stages.toml", toml)] {
        let path = temp_file(name, &document);
        let (_, message) = failure(&["validate", "--kind", "scenario", text(&path)]);
        assert!(
            message.contains("invalid stages[1].duration_s = 1e20: "),
            "{message}"
        );
    }
    // TOML's own spellings too: underscores.
    let path = temp_file("spelled.toml", "min_samples = 1_000_000_000\n");
    let (_, message) = failure(&["validate", "--kind", "slo", text(&path)]);
    assert!(
        message.contains("invalid min_samples = 1_000_000_000: "),
        "{message}"
    );
    // simulate and route name the file's number as written too.
    let path = temp_file("rps.toml", "rps = 2_000_000.0\n");
    let (_, message) = failure(&["simulate", "--config", text(&path)]);
    assert!(message.contains("invalid rps = 2_000_000.0: "), "{message}");
    let path = temp_file("route.toml", &format!("slo_threshold = {u64_max}\n"));
    let (_, message) = failure(&["route", "--config", text(&path), "user-1"]);
    assert!(
        message.contains(&format!("invalid slo_threshold = {u64_max}: ")),
        "{message}"
    );
}

#[test]
fn a_zero_written_negative_is_a_zero() {
    // -0.0 is accepted where 0 is and summarised as 0 (the summary said -0); refused where
    // 0 is, it is named as written.
    for (name, document, kind, summary) in [
        (
            "zero.json",
            r#"{"max_error_rate": -0.0}"#,
            "slo",
            "max error rate 0, ",
        ),
        (
            "zero.toml",
            "slo_threshold = -0.0\n",
            "promotion",
            "slo_threshold 0, ",
        ),
    ] {
        let path = temp_file(name, document);
        let output = run(&["validate", "--kind", kind, text(&path)]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(stdout(&output).contains(summary), "{}", stdout(&output));
    }
    let path = temp_file("zero-rps.toml", "rps = -0.0\n");
    let (_, message) = failure(&["validate", "--kind", "scenario", text(&path)]);
    assert!(message.contains("invalid rps = -0.0: "), "{message}");
}

#[test]
fn validate_names_an_unknown_field() {
    let path = temp_file("unknown.toml", "gate = \"a\"\nslo_treshold = 0.9\n");
    let (code, message) = failure(&["validate", text(&path)]);
    assert_eq!(code, 1);
    assert!(
        message.contains("unknown field `slo_treshold`"),
        "{message}"
    );
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn validate_checks_the_slo_file_against_the_config_file_s_window() {
    // Each valid alone: a 1 h interval and a 300 s window, whose start would be an hour-old
    // reading.
    let promotion = temp_file("window.json", r#"{"rollback_window_seconds": 300}"#);
    let slo = temp_file("hourly.json", r#"{"evaluation_interval_ms": 3600000}"#);
    let output = run(&["validate", text(&promotion), "--slo", text(&slo)]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(
        message.contains("invalid evaluation_interval_ms = 3600000: at most a tenth of rollback_window_seconds = 300, 30000 ms"),
        "{message}"
    );
    assert!(message.contains("window.json"), "{message}");
    let long = temp_file("long.json", r#"{"rollback_window_seconds": 36000}"#);
    let output = run(&["validate", text(&long), "--slo", text(&slo)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let scenario = temp_file("hourly.toml", "[slo]\nevaluation_interval_ms = 3600000\n");
    let (_, message) = failure(&["validate", "--kind", "scenario", text(&scenario)]);
    assert!(
        message.contains("invalid slo.evaluation_interval_ms = 3600000"),
        "{message}"
    );
}

#[test]
fn validate_checks_slo_and_scenario_files() {
    let promotion = temp_file("p.json", "{}");
    let slo = temp_file("slo.toml", "min_samples = 0\n");
    let output = run(&["validate", text(&promotion), "--slo", text(&slo)]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).starts_with("ok: "),
        "the valid one: {}",
        stdout(&output)
    );
    let message = stderr(&output);
    assert!(message.contains("invalid min_samples = 0"), "{message}");
    let scenario = temp_file("s.toml", "[canary]\nerror_rate = 1.5\n");
    let (_, message) = failure(&["validate", "--kind", "scenario", text(&scenario)]);
    assert!(
        message.contains("invalid canary.error_rate = 1.5"),
        "{message}"
    );
}

#[test]
fn validate_refuses_a_json_document_with_a_byte_order_mark_as_the_library_does() {
    // It said ok for a file every host refuses (with serde's `expected value`).
    let path = temp_file("bom.json", "\u{feff}{\"gate\": \"a\"}");
    let (code, message) = failure(&["validate", text(&path)]);
    assert_eq!(code, 1);
    assert!(
        message.starts_with(&format!(
            "error: {}: invalid JSON: starts with a UTF-8 byte order mark (EF BB BF): save it \
             without one",
            text(&path)
        )),
        "{message}"
    );
    let toml = temp_file("bom.toml", "\u{feff}gate = \"a\"\n");
    assert!(run(&["validate", text(&toml)]).status.success());
}

#[test]
fn a_toml_datetime_where_a_number_or_environment_is_expected_is_named_as_one() {
    // toml's private key showed: unknown variant `$__toml_private_datetime`; invalid type: map.
    for (kind, contents, expected) in [
        (
            "promotion",
            "environment = 1979-05-27\n",
            "invalid TOML: environment: invalid type: TOML datetime `1979-05-27`, expected",
        ),
        (
            "promotion",
            "slo_threshold = 07:32:00\n",
            "invalid TOML: slo_threshold: invalid type: TOML datetime `07:32:00`, expected f64",
        ),
        (
            "scenario",
            "[[stages]]\nenvironment = 1979-05-27T07:32:00Z\nduration_s = 10\n",
            "stages[0].environment: invalid type: TOML datetime `1979-05-27T07:32:00Z`",
        ),
    ] {
        let message = validate_error(kind, "datetime.toml", contents);
        assert!(
            message.contains(expected) && !message.contains("$__toml_private"),
            "{message}"
        );
    }
}

/// `validate --kind KIND` on a file `name` holding `contents`: exits 1 with one line, returned.
fn validate_error(kind: &str, name: &str, contents: &str) -> String {
    let path = temp_file(name, contents);
    let (code, message) = failure(&["validate", "--kind", kind, text(&path)]);
    assert_eq!(code, 1, "{message}");
    message
}

#[test]
fn validate_names_the_field_path_and_the_value_of_a_type_error_duration_or_variant() {
    for (kind, name, contents, expected) in [
        (
            "promotion",
            "type.json",
            r#"{"gate": "a", "slo_threshold": "high"}"#,
            "invalid JSON: slo_threshold: invalid type: string \"high\", expected f64",
        ),
        (
            "promotion",
            "type.toml",
            "gate = \"a\"\nslo_threshold = \"high\"\n",
            "invalid TOML: slo_threshold: invalid type: string \"high\", expected f64 at line 2",
        ),
        (
            "scenario",
            "slo-type.toml",
            "[slo]\nmax_error_rate = \"x\"\n",
            "slo.max_error_rate: invalid type: string \"x\"",
        ),
        (
            "slo",
            "negative.json",
            r#"{"p99_budget_ms": -20}"#,
            "p99_budget_ms: -20 is not a duration in milliseconds",
        ),
        (
            "scenario",
            "variant.toml",
            "[[stages]]\nenvironment = \"prod\"\nduration_s = 10\n",
            "stages[0].environment: unknown variant `prod`",
        ),
    ] {
        let message = validate_error(kind, name, contents);
        assert!(message.contains(expected), "{message}");
    }
}

#[test]
fn an_empty_document_is_one_error_in_every_format() {
    let json = temp_file("empty.json", "");
    let toml = temp_file("empty.toml", "  \n");
    for path in [text(&json), text(&toml), "/dev/null"] {
        let (code, message) = failure(&["validate", path]);
        assert_eq!(code, 1, "{path}");
        assert!(
            message.starts_with(&format!(
                "error: {path}: the document is empty (nothing but whitespace)"
            )),
            "{message}"
        );
        let (code, message) = failure(&["simulate", "--config", path]);
        assert_eq!(code, 1, "{path}");
        assert!(message.contains("the document is empty"), "{message}");
    }
}

#[test]
fn help_shows_every_default() {
    let simulate: &[&str] = &[
        "[default: good]",
        "[default: 42; with --config, the file's]",
        "[default: 2000; with --config, the file's]",
        "[default: 6m; with --config, the file's]",
        "[default: 1; with --config, the file's]",
        "[default: 100000; with --config, the file's]",
    ];
    let route: &[&str] = &[
        "[default: none, the library's PromotionConfig defaults]",
        "[default: default; with --config, the file's]",
        "[default: the gate's name; with --config, the file's]",
        "[default: none, the environment Production; with --config, the file's]",
    ];
    for (command, defaults) in [("simulate", simulate), ("route", route)] {
        let help = stdout(&run(&[command, "--help"]));
        for default in defaults {
            assert!(
                help.contains(default),
                "{command} --help lacks {default}: {help}"
            );
        }
    }
}

#[test]
fn a_percentage_below_the_formulas_resolution_gets_the_librarys_verdict() {
    // 0.000001 % is a threshold of round(0.1) = 0 of the 10^7 buckets: it would route nobody, so
    // the library refuses it, and the CLI gives its error for the flag (named as the flag) and
    // a scenario's stage.
    let tiny = "0.000001";
    let library = promotion_gates::Environment::Canary {
        traffic_percent: 0.000_001,
    }
    .validate();
    let scenario = temp_file(
        "tiny-stage.toml",
        &format!("[[stages]]\ntraffic_percent = {tiny}\nduration_s = 10\n"),
    );
    let e = library.expect_err("the library refuses a share that routes no bucket");
    let resolution = promotion_gates::TRAFFIC_PERCENT_RESOLUTION.to_string();
    let (code, message) = failure(&["route", "--percent", tiny, "x"]);
    assert_eq!(code, 2);
    assert!(
        message.contains(&format!(
            "invalid --percent = {}: {} (checked as the library checks {})",
            e.value(),
            e.expected(),
            e.field()
        )),
        "{message}"
    );
    let (route_message, field) = (message, "--percent");
    let (code, message) = failure(&["validate", "--kind", "scenario", text(&scenario)]);
    assert_eq!(code, 1);
    // Refused outright, not only as the library does: the field, the value, the resolution.
    for (message, field) in [
        (&route_message, field),
        (&message, "stages[0].traffic_percent"),
    ] {
        assert!(message.contains(&format!("{field} = {tiny}")), "{message}");
        assert!(
            message.contains("resolution") && message.contains(&resolution),
            "{message}"
        );
    }
    assert!(
        message.contains(&format!(
            "invalid stages[0].traffic_percent = {}: {}",
            e.value(),
            e.expected()
        )),
        "{message}"
    );
}

// errors

#[test]
fn a_bad_flag_exits_2_with_one_line() {
    let (code, message) = failure(&["simulate", "--bogus"]);
    assert_eq!(code, 2);
    assert!(message.contains("'--bogus'"), "{message}");
    let (code, message) = failure(&["simulate", "--scenario", "nope"]);
    assert_eq!(code, 2);
    assert!(message.contains("possible values: good"), "{message}");
    let (code, message) = failure(&["simulate", "--rps", "-3"]);
    assert_eq!(code, 2);
    assert!(message.contains("--rps"), "{message}");
    // A negative number is the flag's value, refused by the flag's check (it was an
    // "unexpected argument '-1'" that named no flag).
    for (flag, value) in [
        ("--users", "-1"),
        ("--seed", "-1"),
        ("--sample", "-2"),
        ("--duration", "-5s"),
    ] {
        let (code, message) = failure(&["simulate", flag, value]);
        assert_eq!(code, 2);
        assert!(
            message.contains(&format!("invalid value '{value}' for '{flag} <")),
            "{message}"
        );
    }
    // Named as the flag and its value, as `simulate` names its own, not as the config's field
    // (`invalid environment.canary.traffic_percent = 150 ... (from the command-line flags)`).
    for (flag, value, shown) in [
        ("--percent", "150", "150"),
        ("--gate", "", "\"\""),
        ("--salt", "a b", "\"a b\""),
    ] {
        let (code, message) = failure(&["route", flag, value, "x"]);
        assert_eq!(code, 2);
        assert!(
            message.starts_with(&format!("error: invalid {flag} = {shown}: ")),
            "{message}"
        );
    }
}

#[test]
fn a_missing_file_exits_1_naming_it() {
    let (code, message) = failure(&["simulate", "--config", "/no/such/scenario.toml"]);
    assert_eq!(code, 1);
    assert!(message.contains("/no/such/scenario.toml"), "{message}");
    let (code, message) = failure(&["validate", "/no/such/config.json"]);
    assert_eq!(code, 1);
    assert!(message.contains("/no/such/config.json"), "{message}");
}

#[test]
fn an_invalid_scenario_exits_1_naming_the_field() {
    let path = temp_file(
        "bad-stage.toml",
        "[[stages]]\ntraffic_percent = 120\nduration_s = 10\n",
    );
    let (code, message) = failure(&["simulate", "--config", text(&path)]);
    assert_eq!(code, 1);
    assert!(
        message.contains("invalid stages[0].traffic_percent = 120"),
        "{message}"
    );
    let path = temp_file("typo.json", r#"{"canary": {"error_rat": 0.1}}"#);
    let (code, message) = failure(&["simulate", "--config", text(&path)]);
    assert_eq!(code, 1);
    assert!(message.contains("unknown field `error_rat`"), "{message}");
}

#[test]
fn a_ramp_starting_in_staging_is_refused_before_it_runs() {
    // It was valid, then the engine refused Production -> Staging at the start of the run.
    validate_and_simulate_refuse(
        "staging-first.toml",
        "stages = [{environment = \"staging\", duration_s = 2}]\n",
        "invalid stages[0].environment = staging: a stage the engine can move to from Production",
    );
}

#[test]
fn a_scenario_with_a_state_store_is_refused_and_the_store_never_opened() {
    // simulate opened the store and wrote the simulated release into it: a second run started
    // from the first one's stored state.
    let db = std::env::temp_dir().join(format!("promotion-gates-cli-{}-st.db", std::process::id()));
    let scenario = format!(
        r#"{{"stages": [{{"traffic_percent": 1, "duration_s": 5}}], "max_extensions": 0,
            "promotion": {{"gate": "checkout", "store": {{"sqlite": {{"path": {:?}}}}}}}}}"#,
        text(&db)
    );
    validate_and_simulate_refuse(
        "stored.json",
        &scenario,
        &format!(
            "invalid promotion.store = {{\"sqlite\":{{\"path\":{:?},",
            text(&db)
        ),
    );
    assert!(!db.exists(), "{} was created", db.display());
}

#[test]
fn a_scenario_with_overrides_is_refused() {
    // The judge leaves the requests of listed ids out of both cohorts: the stage table counted
    // 3,600 stable requests, the judge 0.
    validate_and_simulate_refuse(
        "overrides.json",
        r#"{"promotion": {"gate": "checkout", "overrides": {"stable_ids": ["user-1"]}}}"#,
        r#"invalid promotion.overrides = {"stable_ids":["user-1"]}"#,
    );
    // A header or cookie alone never matches a simulated request: a production config's
    // overrides run unchanged.
    let path = temp_file(
        "overrides-header.json",
        r#"{"promotion": {"gate": "checkout", "overrides": {"header": "X-Canary", "cookie": "canary"}}}"#,
    );
    let output = run(&["validate", "--kind", "scenario", text(&path)]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn a_rate_that_sends_no_request_in_the_shortest_stage_is_refused() {
    // It ran, sent no request, stalled and exited 4, as a refused canary does.
    let message = validate_error("scenario", "no-requests.json", r#"{"rps": 1e-320}"#);
    assert!(
        message.contains("invalid rps = 1e-320: at least 0.016666666666666666 with sample = 1"),
        "{message}"
    );
    for (flag, value, expected) in [
        (
            "--rps",
            "1e-300",
            "at least 0.016666666666666666 with sample = 1",
        ),
        (
            "--sample",
            "18446744073709551615",
            "at most 120000 with rps = 2000",
        ),
    ] {
        let (code, message) = failure(&["simulate", flag, value]);
        assert_eq!(code, 2);
        assert!(
            message.starts_with(&format!("error: invalid {flag} = {value}: {expected}")),
            "{message}"
        );
    }
    // One request expected in the shortest stage runs.
    let path = temp_file(
        "one-request.json",
        r#"{"rps": 1, "stages": [{"traffic_percent": 1, "duration_s": 1}], "max_extensions": 0}"#,
    );
    let output = run(&["validate", "--kind", "scenario", text(&path)]);
    assert!(output.status.success(), "{}", stderr(&output));
}

/// Checks that `validate --kind scenario` and `simulate --config` both refuse the scenario
/// `contents` (written to a file called `file`), exiting 1 with a message holding `expected`.
fn validate_and_simulate_refuse(file: &str, contents: &str, expected: &str) {
    let path = temp_file(file, contents);
    for command in ["validate --kind scenario", "simulate --config"] {
        let mut args: Vec<&str> = command.split(' ').collect();
        args.push(text(&path));
        let (code, message) = failure(&args);
        assert_eq!(code, 1);
        assert!(message.contains(expected), "{command}: {message}");
    }
}

#[test]
fn a_run_beyond_the_limits_is_refused_naming_the_flag_or_field() {
    // Each of these was accepted, then panicked (debug) or ran without end (release).
    validate_and_simulate_refuse(
        "long-staging.toml",
        "stages = [{traffic_percent = 50, duration_s = 1}, \
         {environment = \"staging\", duration_s = 2e10}]\n",
        "invalid stages[1].duration_s = 2e10: at most 31536000",
    );
    fails_saying(
        &["simulate", "--duration", "50000000d"],
        2,
        &[
            "'50000000d' for '--duration <DURATION>'",
            "longer than 365d",
        ],
    );
    fails_saying(
        &["simulate", "--rps", "1e15"],
        2,
        &["'1e15' for '--rps <RPS>'"],
    );
    validate_and_simulate_refuse(
        "huge-rps.toml",
        "rps = 1e300\n",
        "invalid rps = 1e300: at most 1000000",
    );
    validate_and_simulate_refuse(
        "endless-extensions.toml",
        "max_extensions = 4294967295\nextension_s = 1e-9\n",
        "invalid extension_s = 1e-9",
    );
    validate_and_simulate_refuse(
        "unbounded-extensions.toml",
        "max_extensions = 4294967295\n",
        "invalid max_extensions = 4294967295: at most 100",
    );
    // --duration is within its own limit, the scaled scenario's extensions are not: the
    // error named extension_s (a field the user never set) and exited 1.
    for duration in ["300d", "365d"] {
        fails_saying(
            &["simulate", "--duration", duration],
            2,
            &[
                "invalid --duration = ",
                " s: from 0.12 s to 1666666.668 s for this scenario",
                "10000000000 requests",
            ],
        );
    }
    fails_saying(
        &["simulate", "--duration", "10ms"],
        2,
        &["invalid --duration = 0.01 s: from 0.12 s to 1666666.668 s"],
    );
}

/// Checks that `args` fail with exit code `code` and a message holding each of `parts`.
fn fails_saying(args: &[&str], code: i32, parts: &[&str]) {
    let (status, message) = failure(args);
    assert_eq!(status, code, "{args:?}: {message}");
    for part in parts {
        assert!(message.contains(part), "{args:?}: {message}");
    }
}

/// Runs the CLI with `args`, which must fail with exit code 2 and a message starting with
/// `start`; returns the message.
fn bad_flag_starting(args: &[&str], start: &str) -> String {
    let (code, message) = failure(args);
    assert_eq!(code, 2, "{args:?}: {message}");
    assert!(message.starts_with(start), "{args:?}: {message}");
    message
}

#[test]
fn an_unwritable_plot_exits_1_naming_the_file_before_simulating() {
    // Without --json the scenario's header is printed when the simulation starts: `failure`
    // checks that stdout stayed empty, so the path was refused first.
    let (code, message) = failure(&[
        "simulate",
        "--scenario",
        "error-spike",
        "--plot",
        "/no/such/dir/plot.svg",
    ]);
    assert_eq!(code, 1);
    assert!(
        message.starts_with("error: cannot draw /no/such/dir/plot.svg: "),
        "{message}"
    );
}

#[test]
fn an_interrupted_run_leaves_no_plot() {
    // The file was created before the run and written after it: a run killed in between left
    // an empty SVG, and one over an existing plot left it empty. Then (05b95d5) a temporary
    // file beside it was left instead.
    let missing = temp_file("interrupted.svg", "");
    std::fs::remove_file(&*missing).unwrap();
    let existing = temp_file("interrupted-existing.svg", "kept");
    for path in [&missing, &existing] {
        let mut child = Command::new(BIN)
            .args(["simulate", "--duration", "24h", "--plot", text(path)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary runs");
        // The header is printed once the plot's path is checked and the simulation starts.
        let mut header = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut header,
        )
        .unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(header.starts_with("Scenario good"), "{header}");
    }
    assert!(!missing.exists(), "a plot was left");
    assert_eq!(std::fs::read_to_string(&*existing).unwrap(), "kept");
    // Nothing else named after the plots: no temporary file.
    let names = [&missing, &existing].map(|path| path.file_name().unwrap().to_owned());
    for entry in std::fs::read_dir(std::env::temp_dir()).unwrap() {
        let found = entry.unwrap().file_name();
        let found = found.to_string_lossy();
        for name in &names {
            let name = name.to_string_lossy();
            assert!(found == name || !found.contains(&*name), "{found} was left");
        }
    }
}

#[test]
fn a_plot_whose_write_fails_is_not_said_written_and_a_new_one_is_removed() {
    // "Timeline written to" was printed with the report, before the plot was written. The
    // write is made to fail by a file size limit of a few KiB (with SIGXFSZ ignored, a write
    // beyond it fails with EFBIG), which the shell sets before it runs the binary.
    let path = temp_file("too-large.svg", "");
    std::fs::remove_file(&*path).unwrap();
    let output = Command::new("sh")
        .args(["-c", "trap '' XFSZ; ulimit -f 8 && exec \"$@\"", "sh", BIN])
        .args(["simulate", "--duration", "30s", "--plot", text(&path)])
        .stdin(Stdio::null())
        .output()
        .expect("sh runs");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).starts_with(&format!("error: cannot draw {}: ", path.display())),
        "{}",
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("Simulated in"),
        "{}",
        stdout(&output)
    );
    assert!(!stdout(&output).contains("Timeline written"));
    assert!(!path.exists(), "the plot's new file was left, cut short");
}

#[test]
fn a_scenario_no_duration_fits_is_refused_on_its_field_not_on_the_flag() {
    // Its 10 ms stage needs the run at least 8 640 001 times its planned length, its rate at
    // most 0.116 times it: no --duration fits, and the error named --duration (exit 2).
    let path = temp_file(
        "no-duration-fits.json",
        r#"{"rps": 1000000, "max_extensions": 0, "stages": [
            {"traffic_percent": 1, "duration_s": 0.01},
            {"traffic_percent": 2, "duration_s": 86400}]}"#,
    );
    let (code, message) = failure(&["simulate", "--config", text(&path), "--duration", "1h"]);
    assert_eq!(code, 1);
    assert!(
        message.contains(": invalid rps = 1000000: at most 115740"),
        "{message}"
    );
    // A range below a second is said to the millisecond (it read "from 0.01 s to 0 s").
    let path = temp_file(
        "range-below-a-second.json",
        r#"{"rps": 100, "max_extensions": 100, "extension_s": 315359.995,
            "stages": [{"traffic_percent": 1, "duration_s": 0.5}]}"#,
    );
    let (code, message) = failure(&["simulate", "--config", text(&path), "--duration", "1s"]);
    assert_eq!(code, 2);
    assert!(
        message.contains("from 0.01 s to 0.5 s for this scenario"),
        "{message}"
    );
}

#[test]
fn a_duration_that_would_break_an_incident_is_a_bad_flag() {
    // validate said ok, then --duration 1s made the 0.5 s incident 1.4 ms long and the error
    // named incident.length_s = 0.001388888888888889, a value never written, with exit 1.
    let path = temp_file(
        "short-incident.toml",
        "[canary]\nincident = { stage = 1, after_s = 10, error_rate = 1, length_s = 0.5 }\n",
    );
    let valid = run(&["validate", "--kind", "scenario", text(&path)]);
    assert_eq!(valid.status.code(), Some(0), "{}", stderr(&valid));
    fails_saying(
        &["simulate", "--config", text(&path), "--duration", "1s"],
        2,
        &[
            "invalid --duration = 1 s: from 7.2 s to ",
            "each incident's length_s",
        ],
    );
    // A start past the longest run is the file's error, as written (it became `inf`).
    let path = temp_file(
        "late-incident.toml",
        "[canary]\nincident = { stage = 1, after_s = 1e308, error_rate = 1 }\n",
    );
    fails_saying(
        &["simulate", "--config", text(&path), "--duration", "60m"],
        1,
        &["invalid canary.incident.after_s = 1e308: seconds from 0 to 31536000"],
    );
}

#[test]
fn a_rate_flag_that_breaks_the_run_size_is_a_bad_flag_naming_it() {
    // The error named the file (`l.toml: invalid rps = 1000000`) and exited 1.
    let path = temp_file(
        "day-stage.toml",
        "stages = [{traffic_percent = 1, duration_s = 86400}]\n",
    );
    let message = bad_flag_starting(
        &["simulate", "--config", text(&path), "--rps", "1000000"],
        "error: invalid --rps = 1000000: at most 115580 with sample = 1 ",
    );
    assert!(!message.contains("day-stage.toml"), "{message}");
    bad_flag_starting(
        &[
            "simulate",
            "--config",
            text(&path),
            "--rps",
            "1000000",
            "--sample",
            "2",
        ],
        "error: invalid --rps = 1000000: at most 231160 with sample = 2 ",
    );
    // A busy file that --sample does not thin enough: the flag, with the least it may be.
    let busy = temp_file(
        "busy-day.toml",
        "rps = 1000000\nstages = [{traffic_percent = 1, duration_s = 86400}]\n",
    );
    bad_flag_starting(
        &["simulate", "--config", text(&busy), "--sample", "2"],
        "error: invalid --sample = 2: at least 9 with rps = 1000000 ",
    );
    let at_least = run(&[
        "simulate",
        "--config",
        text(&busy),
        "--sample",
        "9",
        "--show-config",
    ]);
    assert_eq!(at_least.status.code(), Some(0), "{}", stderr(&at_least));
    let at_most = run(&[
        "simulate",
        "--config",
        text(&path),
        "--rps",
        "115580",
        "--show-config",
    ]);
    assert_eq!(at_most.status.code(), Some(0), "{}", stderr(&at_most));
    // Without the flags the file is at fault, as it is written.
    let (code, message) = failure(&["simulate", "--config", text(&busy)]);
    assert_eq!(code, 1, "{message}");
    assert!(
        message.contains("busy-day.toml: invalid rps = 1000000"),
        "{message}"
    );
    // No --duration fits because of --rps (a 10 ms stage beside a day-long one): the flag,
    // not the file.
    let tick = temp_file(
        "tick-and-day.json",
        r#"{"rps": 100, "max_extensions": 0, "stages": [
            {"traffic_percent": 1, "duration_s": 0.01},
            {"traffic_percent": 2, "duration_s": 86400}]}"#,
    );
    bad_flag_starting(
        &[
            "simulate",
            "--config",
            text(&tick),
            "--rps",
            "1000000",
            "--duration",
            "1h",
        ],
        "error: invalid --rps = 1000000: at most 115740 with sample = 1 ",
    );
}

#[test]
fn clap_errors_name_the_missing_argument_and_show_user_text_escaped_and_short() {
    // No subcommand: clap's whole help on stderr.
    let (code, message) = failure(&[]);
    assert_eq!(code, 2);
    assert!(
        message.starts_with("error: 'promotion-gates' requires a subcommand")
            && message.contains("simulate, route, validate")
            && message.trim_end().ends_with("(see --help)"),
        "{message}"
    );
    // The missing <FILE> was dropped: "were not provided: (see --help)".
    let (code, message) = failure(&["validate"]);
    assert_eq!(code, 2);
    assert_eq!(
        message.trim_end(),
        "error: the following required arguments were not provided: <FILE> (see --help)"
    );
    // Cut at the newline: "unrecognized subcommand 'bo (see --help)".
    let (code, message) = failure(&["bo\ngus"]);
    assert_eq!(code, 2);
    assert!(
        message.starts_with(r"error: unrecognized subcommand 'bo\ngus'"),
        "{message}"
    );
    // Echoed whole, 100 KB.
    let long = "x".repeat(100_000);
    for args in [vec![long.as_str()], vec!["simulate", &format!("--{long}")]] {
        let (code, message) = failure(&args);
        assert_eq!(code, 2);
        assert!(message.len() < 1_000, "{} bytes", message.len());
        assert!(
            message.contains(&format!("...({} bytes)'", args[args.len() - 1].len())),
            "{message}"
        );
    }
    // A newline or an escape alone: clap's own line breaks and styles were escaped with it
    // (`'\n'\n\nUsage: ...`, `\u{1b}[1m\u{1b}[31merror:\u{1b}[0m invalid value ...`).
    let (code, message) = failure(&["\n"]);
    assert_eq!(code, 2);
    assert_eq!(
        message.trim_end(),
        r"error: unrecognized subcommand '\n' (see --help)"
    );
    let (code, message) = failure(&["route", "--percent", "\u{1b}", "a"]);
    assert_eq!(code, 2);
    assert_eq!(
        message.trim_end(),
        r#"error: invalid value '\u{1b}' for '--percent <PERCENT>': "\u{1b}" is not a number (see --help)"#
    );
    // An unknown argument and clap's tip that quotes it, both escaped.
    let (code, message) = failure(&["route", "--x\u{1b}[31m"]);
    assert_eq!(code, 2);
    assert_eq!(
        message.trim_end(),
        r"error: unexpected argument '--x\u{1b}[31m' found tip: to pass '--x\u{1b}[31m' as a value, use '-- --x\u{1b}[31m' (see --help)"
    );
}

#[test]
fn a_flag_value_is_shown_on_one_line_and_short() {
    // A newline in the value ended the message at the value: the flag and the reason lost.
    let (code, message) = failure(&["simulate", "--rps", "1\n2"]);
    assert_eq!(code, 2);
    assert_eq!(
        message.trim_end(),
        r#"error: invalid value '1\n2' for '--rps <RPS>': "1\n2" is not a number (see --help)"#
    );
    let long = "9".repeat(100_000);
    let (code, message) = failure(&["simulate", "--duration", &long]);
    assert_eq!(code, 2);
    assert!(message.len() < 1_000, "{} bytes", message.len());
    assert!(message.contains("...(100000 bytes)"), "{message}");
    // Beyond an f64, not "must be above zero".
    assert!(message.contains("is longer than 365d"), "{message}");
}

#[test]
fn rps_and_duration_too_small_for_an_f64_or_not_finite_are_refused_as_such() {
    // `--rps 1e-400` was "not a number above 0", `--duration 0.<330 zeros>1s` "must be above
    // zero" (both above 0 as written), and `--rps inf` "above 1000000, the most rps".
    let tiny = promotion_gates::TINY_NUMBER_REFUSAL;
    for value in ["1e-400", "2.5e-330"] {
        let message = bad_flag_starting(&["simulate", "--rps", value], "error: invalid value '");
        assert!(
            message.ends_with(&format!(
                "for '--rps <RPS>': \"{value}\" is {tiny} (see --help)\n"
            )),
            "{message}"
        );
    }
    for value in ["inf", "infinity", "NaN", "1e400"] {
        let message = bad_flag_starting(&["simulate", "--rps", value], "error: invalid value '");
        assert!(
            message.ends_with(&format!(
                "for '--rps <RPS>': \"{value}\" is not a finite number (see --help)\n"
            )),
            "{message}"
        );
    }
    let zeros = format!("0.{}1", "0".repeat(330));
    let shown = format!("{}...(334 bytes)", &zeros[..160]);
    for unit in ["", "s", "ms", "d"] {
        let value = format!("{zeros}{unit}");
        let message = bad_flag_starting(
            &["simulate", "--duration", &value],
            "error: invalid value '",
        );
        let shown = match unit {
            "" => shown.replace("334", "333"),
            "ms" => shown.replace("334", "335"),
            _ => shown.clone(),
        };
        assert!(
            message.ends_with(&format!(
                "for '--duration <DURATION>': duration \"{shown}\" is {tiny} (see --help)\n"
            )),
            "{message}"
        );
    }
}

#[test]
fn a_percent_that_is_not_finite_is_refused_as_written() {
    // `1e400` and 400 digits overflow to infinity, which the refusal showed as the value
    // (`invalid environment.canary.traffic_percent = inf`), a text nobody typed.
    let ones = "1".repeat(400);
    for value in ["1e400", "-1e400", ones.as_str(), "inf", "NaN", "infinity"] {
        let message = bad_flag_starting(
            &["route", "--percent", value, "abc"],
            "error: invalid value '",
        );
        assert!(
            message.ends_with(&format!(
                "for '--percent <PERCENT>': \"{}\" is not a finite number (see --help)\n",
                value
                    .get(..160)
                    .map_or(value.to_string(), |start| format!("{start}...(400 bytes)"))
            )),
            "{message}"
        );
    }
}

#[test]
fn a_percent_that_would_read_as_0_is_refused_as_written() {
    // `1e-400` reads as 0 in an f64: it routed a 0 % canary and exited 0, where a document's
    // `traffic_percent = 1e-400` is refused.
    let zeros = format!("0.{}1", "0".repeat(400));
    for value in ["1e-400", "2.5e-330", zeros.as_str()] {
        let message = bad_flag_starting(
            &["route", "--percent", value, "u"],
            "error: invalid value '",
        );
        let shown = value
            .get(..160)
            .map_or(value.to_string(), |start| format!("{start}...(403 bytes)"));
        assert!(
            message.ends_with(&format!(
                "for '--percent <PERCENT>': \"{shown}\" is {} (see --help)\n",
                promotion_gates::TINY_NUMBER_REFUSAL
            )),
            "{message}"
        );
    }
}

#[test]
fn a_file_that_is_not_utf8_is_refused_as_such_by_every_command() {
    // It was `cannot read PATH: invalid utf-8 sequence of 1 bytes from index 11`.
    let path = temp_file("latin1.json", "");
    std::fs::write(&path, b"{\"gate\": \"caf\xe9\"}").unwrap();
    // validate goes on to its other files, adding `(the first error found: ...)`.
    let expected = format!(
        "error: {}: the document is not UTF-8 text (invalid byte at offset 13)",
        text(&path)
    );
    for command in [
        "validate",
        "validate --kind slo",
        "validate --kind scenario",
        "simulate --config",
        "route --config",
    ] {
        let mut args: Vec<&str> = command.split(' ').collect();
        args.push(text(&path));
        let (code, message) = failure(&args);
        assert_eq!(code, 1, "{command}: {message}");
        assert!(message.starts_with(&expected), "{command}: {message}");
    }
}

#[test]
fn a_stdin_that_cannot_be_read_is_named_with_its_line() {
    let output = Command::new(BIN)
        .arg("route")
        .stdin(std::fs::File::open("/").unwrap())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("error: stdin line 1: cannot be read: "),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_flag_value_that_is_not_utf8_is_refused_naming_the_flag() {
    // clap's own parsers said only "invalid UTF-8 was detected in one or more arguments".
    use std::os::unix::ffi::OsStrExt;
    let value = std::ffi::OsStr::from_bytes(b"1\xff");
    for (command, flag, shown) in [
        ("route", "--gate", "GATE"),
        ("route", "--salt", "SALT"),
        ("route", "--percent", "PERCENT"),
        ("simulate", "--seed", "SEED"),
        ("simulate", "--rps", "RPS"),
        ("simulate", "--duration", "DURATION"),
        ("simulate", "--sample", "N"),
        ("simulate", "--users", "USERS"),
    ] {
        let output = Command::new(BIN)
            .arg(command)
            .arg(flag)
            .arg(value)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{flag}: {message}");
        assert_eq!(
            message.trim_end(),
            format!(
                "error: invalid value '1\u{fffd}' for '{flag} <{shown}>': \"1\\xFF\" is not UTF-8 text (see --help)"
            ),
        );
        assert!(stdout(&output).is_empty());
    }
}

#[test]
fn a_plot_on_anything_but_a_regular_file_exits_1_before_simulating() {
    // A device took the whole run, then failed and cost the report; a FIFO without a reader
    // blocked the open for ever.
    let dir = std::env::temp_dir().join(format!("pgate-plot-devices-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let device = dir.join("null.svg");
    let _ = std::fs::remove_file(&device);
    std::os::unix::fs::symlink("/dev/null", &device).unwrap();
    let directory = dir.join("dir.svg");
    std::fs::create_dir_all(&directory).unwrap();
    for path in [&device, &directory] {
        let (code, message) = failure(&[
            "simulate",
            "--scenario",
            "error-spike",
            "--plot",
            text(path),
        ]);
        assert_eq!(code, 1);
        assert!(
            message.trim_end().ends_with(
                ": not a regular file (a directory, a device or a FIFO): the plot is an SVG file"
            ),
            "{message}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_plot_that_is_the_config_file_is_a_usage_error_and_leaves_it_as_it_was() {
    // `--config s.svg --plot s.svg` exited 0 and replaced the scenario with the SVG; so did a
    // --plot naming it through a link.
    let scenario = "{\"rps\": 200, \"stages\": [{\"traffic_percent\": 50, \"duration_s\": 5}], \
                    \"slo\": {\"promotion_evidence\": false, \"warm_up_ms\": 0, \"min_samples\": 10}}\n";
    let config = temp_file("scenario-as.svg", scenario);
    let link = temp_file("scenario-link.svg", "");
    std::fs::remove_file(&*link).unwrap();
    std::os::unix::fs::symlink(&*config, &*link).unwrap();
    let hard = temp_file("scenario-hard.svg", "");
    std::fs::remove_file(&*hard).unwrap();
    std::fs::hard_link(&*config, &*hard).unwrap();
    for plot in [&config, &link, &hard] {
        let (code, message) =
            failure(&["simulate", "--config", text(&config), "--plot", text(plot)]);
        assert_eq!(code, 2, "{message}");
        assert!(
            message.starts_with(&format!(
                "error: invalid --plot = \"{}\": it is the --config file, \"{}\"",
                text(plot),
                text(&config)
            )),
            "{message}"
        );
        assert_eq!(std::fs::read_to_string(&*config).unwrap(), scenario);
    }
    // Another file beside it is written as before.
    let other = temp_file("scenario-plot.svg", "");
    let output = run(&[
        "simulate",
        "--config",
        text(&config),
        "--plot",
        text(&other),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        std::fs::read_to_string(&*other)
            .unwrap()
            .starts_with("<svg")
    );
    assert_eq!(std::fs::read_to_string(&*config).unwrap(), scenario);
}

#[test]
fn a_plot_not_named_svg_is_a_usage_error() {
    let path = std::env::temp_dir().join(format!(
        "promotion-gates-cli-{}-timeline.png",
        std::process::id()
    ));
    let (code, message) = failure(&["simulate", "--plot", text(&path)]);
    assert_eq!(code, 2);
    assert!(message.contains("does not end in .svg"), "{message}");
    assert!(!path.exists(), "nothing is written");
    // A name that is not UTF-8 is shown as every path is, not with U+FFFD for its byte.
    use std::os::unix::ffi::OsStrExt;
    let output = Command::new(BIN)
        .args(["simulate", "--plot"])
        .arg(std::ffi::OsStr::from_bytes(b"a\xff.txt"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).trim_end().ends_with(
            ": \"a\\xFF.txt\" does not end in .svg: the timeline is drawn as SVG only (see --help)"
        ),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_first_error_named_is_the_documents_first_in_toml_as_in_json() {
    // TOML's keys were read in sorted order: `aaa` (line 3) was named before `zzz` (line 1).
    let toml = temp_file("order.toml", "zzz = 1\nslo_threshold = \"x\"\naaa = 2\n");
    let json = temp_file(
        "order.json",
        r#"{"zzz": 1, "slo_threshold": "x", "aaa": 2}"#,
    );
    for path in [&toml, &json] {
        let (code, message) = failure(&["validate", text(path)]);
        assert_eq!(code, 1, "{message}");
        assert!(message.contains(": zzz: unknown field `zzz`"), "{message}");
        assert!(message.contains("at line 1 column"), "{message}");
    }
}

/// Runs the binary with `args`, its stdout on /dev/full (every write fails: no space).
fn run_to_a_full_disk(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .stderr(Stdio::piped())
        .output()
        .expect("the binary runs")
}

#[test]
fn output_that_cannot_be_written_fails_and_leaves_no_plot_behind() {
    // The plot file was made before the header was printed; a header that could not be written
    // left it behind, empty. Now the path is only checked then, and nothing is left.
    let plot = temp_file("unwritten.svg", "");
    std::fs::remove_file(&*plot).unwrap();
    let output = run_to_a_full_disk(&["simulate", "--plot", text(&plot)]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).starts_with("error: input/output failed: "),
        "{}",
        stderr(&output)
    );
    assert!(!plot.exists(), "the plot file was left behind");
    // Help and the version that could not be written exited 0.
    for args in [&["simulate", "--help"][..], &["--version"], &["--help"]] {
        let output = run_to_a_full_disk(args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn a_json_report_that_cannot_be_written_fails_and_leaves_the_plot_as_it_was() {
    // With --json nothing is printed before the run; the report that could not be written
    // failed the run (exit 1) after the plot had been written over the path all the same.
    let plot = temp_file("unwritten-json.svg", "");
    std::fs::remove_file(&*plot).unwrap();
    let existing = temp_file("unwritten-json-existing.svg", "the old plot");
    for (path, before) in [(&plot, None), (&existing, Some("the old plot"))] {
        let args = [
            "simulate",
            "--json",
            "--duration",
            "30s",
            "--plot",
            text(path),
        ];
        let output = run_to_a_full_disk(&args);
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        assert!(
            stderr(&output).starts_with("error: input/output failed: "),
            "{}",
            stderr(&output)
        );
        let after = std::fs::read_to_string(&**path).ok();
        assert!(
            after.as_deref() == before,
            "the plot file was changed: {:?}...",
            after.map(|svg| svg.chars().take(40).collect::<String>())
        );
    }
}

#[test]
fn a_success_line_shows_the_path_as_an_error_would() {
    // A path with a line feed and a terminal escape was printed raw on the `ok:` line.
    let path = temp_file("ok\nx\u{1b}[31m.json", "{}");
    let output = run(&["validate", text(&path)]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let line = stdout(&output);
    assert_eq!(line.lines().count(), 1, "{line:?}");
    assert!(
        line.contains("ok\\nx\\u{1b}[31m.json: a valid PromotionConfig"),
        "{line:?}"
    );
    assert!(!line.contains('\u{1b}'), "{line:?}");
}
