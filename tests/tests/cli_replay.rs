//! End-to-end tests of `healthprobe replay` (D6): the built binary, run on
//! journal files and on standard input.
//!
//! The binary comes from [`healthprobe_binary`], which builds it with cargo
//! once per test process (see `tests/src/binary.rs`).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use healthprobe_tests::{ScratchDir, healthprobe_binary};
use serde_json::{Value, json};

fn failure(second: &str, status: u16, error: &str) -> String {
    json!({
        "type": "outcome", "game_id": "g1", "container_id": "c1",
        "observed_at": format!("2026-11-28T05:00:{second}Z"),
        "result": {"unhealthy": {"status": status, "error": error}},
    })
    .to_string()
}

fn success(game_id: &str, container_id: &str, second: &str) -> String {
    json!({
        "type": "outcome", "game_id": game_id, "container_id": container_id,
        "observed_at": format!("2026-11-28T05:00:{second}Z"), "result": "healthy",
    })
    .to_string()
}

/// g1 fails three times (503, 503, no response), a prune keeps it, then it
/// answers 200 from a new container.
fn outage_journal() -> Vec<String> {
    vec![
        failure("00", 503, "unexpected status 503"),
        failure("05", 503, "unexpected status 503"),
        failure("10.5", 0, "connection refused"),
        json!({"type": "prune", "running": ["g1", "g2"]}).to_string(),
        success("g1", "c2", "30"),
    ]
}

fn outage_events() -> Vec<Value> {
    vec![
        json!({
            "game_id": "g1", "container_id": "c1", "event_type": "probe_failed",
            "occurred_at": "2026-11-28T05:00:10.5Z",
            "details": {"consecutive_failures": 3, "last_status": 0, "last_error": "connection refused"},
        }),
        json!({
            "game_id": "g1", "container_id": "c2", "event_type": "probe_recovered",
            "occurred_at": "2026-11-28T05:00:30Z",
            "details": {"prior_failure_count": 3},
        }),
    ]
}

fn write_journal(dir: &ScratchDir, lines: &[String]) -> std::path::PathBuf {
    let path = dir.join("journal.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").expect("write the journal");
    path
}

fn replay(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(healthprobe_binary())
        .arg("replay")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start healthprobe");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("a stdin pipe");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wait for healthprobe")
}

fn replay_file(args: &[&str], path: &Path) -> Output {
    let path = path.to_str().expect("a UTF-8 temp path");
    let mut all = args.to_vec();
    all.push(path);
    replay(&all, None)
}

/// Each stdout line parsed as JSON.
fn events(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{line:?}: {err}")))
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn d6_replay_of_a_journal_file_prints_the_events_as_jsonl() {
    let dir = ScratchDir::new("replay").unwrap();
    let journal = write_journal(&dir, &outage_journal());
    let output = replay_file(&[], &journal);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(events(&output), outage_events());
    assert!(output.stdout.ends_with(b"}\n"), "one object per line");
}

#[test]
fn d6_replay_follows_the_thresholds_given_on_the_command_line() {
    let dir = ScratchDir::new("replay").unwrap();
    let mut lines = outage_journal();
    lines.push(success("g1", "c2", "35"));
    let journal = write_journal(&dir, &lines);
    let output = replay_file(
        &["--failures-threshold", "2", "--recovery-threshold", "2"],
        &journal,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        events(&output),
        [
            json!({
                "game_id": "g1", "container_id": "c1", "event_type": "probe_failed",
                "occurred_at": "2026-11-28T05:00:05Z",
                "details": {"consecutive_failures": 2, "last_status": 503, "last_error": "unexpected status 503"},
            }),
            json!({
                "game_id": "g1", "container_id": "c2", "event_type": "probe_recovered",
                "occurred_at": "2026-11-28T05:00:35Z",
                "details": {"prior_failure_count": 3},
            }),
        ]
    );
}

#[test]
fn r8_a_prune_in_the_journal_drops_the_counter() {
    let dir = ScratchDir::new("replay").unwrap();
    let journal = write_journal(
        &dir,
        &[
            failure("00", 503, "unexpected status 503"),
            failure("05", 503, "unexpected status 503"),
            json!({"type": "prune", "running": ["g2"]}).to_string(),
            failure("10", 503, "unexpected status 503"),
            failure("15", 503, "unexpected status 503"),
        ],
    );
    let output = replay_file(&[], &journal);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(events(&output), Vec::<Value>::new());
}

#[test]
fn a_malformed_line_exits_2_naming_file_line_and_column_after_the_events_before_it() {
    let dir = ScratchDir::new("replay").unwrap();
    let mut lines = outage_journal();
    // Line 6: a result that is neither healthy nor unhealthy.
    lines.push(r#"{"type":"outcome","game_id":"g1","container_id":"c1","observed_at":"2026-11-28T05:01:00Z","result":"bogus"}"#.to_owned());
    lines.push(failure("59", 503, "unexpected status 503"));
    let journal = write_journal(&dir, &lines);
    let output = replay_file(&[], &journal);

    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(
        events(&output),
        outage_events(),
        "events before the bad line"
    );
    let stderr = stderr(&output);
    let location = format!("{}:6:", journal.display());
    let message = stderr
        .lines()
        .find(|line| line.contains(&location))
        .unwrap_or_else(|| panic!("no `{location}<column>:` in {stderr:?}"));
    let column = message
        .split(&location)
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|column| column.parse::<usize>().ok());
    assert!(column.is_some_and(|column| column > 0), "{message}");
    assert!(
        message.contains("bogus"),
        "the message says what was wrong: {message}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
}

#[test]
fn a_malformed_line_on_stdin_is_named_stdin() {
    let input = format!("{}\n\n{{\"type\":\"outcome\"\n", outage_journal()[0]);
    let output = replay(&["-"], Some(&input));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("<stdin>:3:"),
        "line 3 counts the blank line: {}",
        stderr(&output)
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn a_missing_journal_is_a_clear_error() {
    let dir = ScratchDir::new("replay").unwrap();
    let missing = dir.join("no-such-journal.jsonl");
    let output = replay_file(&[], &missing);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = stderr(&output);
    assert!(
        stderr.contains(&missing.display().to_string()),
        "names the file: {stderr}"
    );
    assert!(
        stderr.contains("No such file or directory"),
        "says why: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
}

#[test]
fn d6_replay_reads_standard_input_with_a_dash_or_no_argument() {
    let input = outage_journal().join("\n") + "\n";
    for args in [&["-"][..], &[][..]] {
        let output = replay(args, Some(&input));
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        assert_eq!(events(&output), outage_events(), "{args:?}");
    }
}

#[test]
fn r11_an_invalid_threshold_exits_2_naming_the_flag() {
    for (flag, value) in [
        ("--failures-threshold", "0"),
        ("--recovery-threshold", "0"),
        ("--failures-threshold", "-1"),
        ("--recovery-threshold", "-3"),
    ] {
        let output = replay(&[flag, value, "-"], Some(""));
        assert_eq!(output.status.code(), Some(2), "{flag} {value}");
        assert!(
            stderr(&output).contains(flag),
            "{flag} {value}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn an_empty_journal_prints_nothing_and_succeeds() {
    let output = replay(&["-"], Some(""));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(output.stdout.is_empty());
}
