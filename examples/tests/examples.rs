//! Each example runs, and does what its documentation says.
//!
//! Cargo builds the examples (binaries of this package) before this test,
//! with the same profile, so a broken example fails `cargo xtask test`
//! whether it stops compiling or starts printing something else.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use healthprobe_core::{EventDetails, HealthEvent};

fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {program}: {err}"));
    eprintln!(
        "{program} {args:?}: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("UTF-8 output")
}

#[test]
fn tokio_shell_publishes_each_games_events_from_real_engines() {
    let output = run(env!("CARGO_BIN_EXE_tokio-shell"), &[]);
    assert!(output.status.success());
    // Probes finish in any order within a tick, so compare each game's events.
    let mut by_game: BTreeMap<String, Vec<EventDetails>> = BTreeMap::new();
    for line in text(&output.stdout).lines() {
        let event: HealthEvent = serde_json::from_str(line).expect("an event JSON line");
        by_game
            .entry(event.game_id)
            .or_default()
            .push(event.details);
    }
    let failed = |status: u16, error: &str| EventDetails::ProbeFailed {
        consecutive_failures: 2,
        last_status: status,
        last_error: error.into(),
    };
    let expected = BTreeMap::from([
        (
            "game-failing".to_owned(),
            vec![failed(503, "unexpected status 503")],
        ),
        (
            "game-flapping".to_owned(),
            vec![
                failed(503, "unexpected status 503"),
                EventDetails::ProbeRecovered {
                    prior_failure_count: 2,
                },
            ],
        ),
        (
            "game-refusing".to_owned(),
            vec![failed(0, "connection refused")],
        ),
    ]);
    assert_eq!(by_game, expected);
    let stderr = text(&output.stderr);
    assert_eq!(stderr.matches("tick: 4 probes").count(), 4, "{stderr}");
    assert!(stderr.ends_with("stopped: TickLimit\n"), "{stderr}");
}

#[test]
fn policy_proptest_passes_and_its_planted_bug_is_caught_and_shrunk() {
    let output = run(env!("CARGO_BIN_EXE_policy-proptest"), &[]);
    assert!(output.status.success());
    assert!(text(&output.stdout).starts_with("policy holds: 1000 random histories"));

    let output = run(env!("CARGO_BIN_EXE_policy-proptest"), &["--planted-bug"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("policy broken: "), "{stderr}");
    // Shrunk to the smallest history that shows the bug: one failure, one success.
    assert!(stderr.contains("recovery_threshold: 2,"), "{stderr}");
    assert_eq!(stderr.matches("Probe {").count(), 2, "{stderr}");
}

#[test]
fn journal_simulator_folds_the_recorded_journal_through_each_policy() {
    let output = run(env!("CARGO_BIN_EXE_journal-simulator"), &[]);
    assert!(output.status.success());
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("16 inputs from "), "{stdout}");
    assert!(lines[0].ends_with("journal.jsonl"), "{stdout}");
    // g2 fails from 05:00:00.2 to 05:00:15 and recovers at 05:00:30; g1 fails once, at 05:00:05.
    let rows: Vec<Vec<&str>> = lines[2..]
        .iter()
        .map(|line| line.split_whitespace().collect())
        .collect();
    let expected: [&[&str]; 10] = [
        &["f1/r1", "2", "0.0", "0.0", "2"],
        &["f1/r2", "2", "0.0", "0.0", "1"],
        &["f2/r1", "1", "4.9", "1"],
        &["f2/r2", "1", "4.9", "0"],
        &["f3/r1", "1", "10.3", "1"],
        &["f3/r2", "1", "10.3", "0"],
        &["f4/r1", "1", "14.8", "1"],
        &["f4/r2", "1", "14.8", "0"],
        &["f5/r1", "0", "-", "0"],
        &["f5/r2", "0", "-", "0"],
    ];
    assert_eq!(rows, expected, "{stdout}");
}

#[test]
fn journal_simulator_names_the_line_of_a_malformed_journal() {
    let dir = std::env::temp_dir().join(format!("healthprobe-examples-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let journal = dir.join("bad.jsonl");
    std::fs::write(
        &journal,
        "{\"type\":\"prune\",\"running\":[]}\n{\"type\":\"nope\"}\n",
    )
    .expect("write");
    let output = run(
        env!("CARGO_BIN_EXE_journal-simulator"),
        &[journal.to_str().expect("UTF-8 path")],
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("bad.jsonl:2: "),
        "{}",
        text(&output.stderr)
    );
}
