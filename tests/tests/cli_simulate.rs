//! End-to-end tests of `healthprobe simulate` (issue 7): the built binary.

use std::process::{Command, Output};

use healthprobe_tests::{ScratchDir, healthprobe_binary};
use serde_json::Value;

fn simulate(args: &[&str]) -> Output {
    Command::new(healthprobe_binary())
        .arg("simulate")
        .args(args)
        .output()
        .expect("run healthprobe simulate")
}

const SMALL: [&str; 8] = [
    "--engines",
    "20",
    "--days",
    "1",
    "--failures",
    "1..3",
    "--recoveries",
    "1..2",
];

#[test]
fn simulate_table_names_every_policy_and_is_deterministic() {
    let first = simulate(&[&SMALL[..], &["--seed", "7"]].concat());
    let second = simulate(&[&SMALL[..], &["--seed", "7"]].concat());
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(first.stdout, second.stdout, "same seed, same bytes");
    let table = String::from_utf8(first.stdout).unwrap();
    for policy in ["f1/r1", "f1/r2", "f2/r1", "f2/r2", "f3/r1", "f3/r2"] {
        assert!(table.contains(policy), "{policy} missing from\n{table}");
    }
    let other_seed = simulate(&[&SMALL[..], &["--seed", "8"]].concat());
    assert_ne!(
        table.as_bytes(),
        other_seed.stdout.as_slice(),
        "the seed matters"
    );
}

#[test]
fn simulate_json_and_plot_are_written() {
    let dir = ScratchDir::new("simulate-plot").expect("scratch dir");
    let plot = dir.join("tradeoff.svg");
    let plot_arg = plot.to_str().unwrap();
    let output = simulate(&[&SMALL[..], &["--json", "--plot", plot_arg]].concat());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value =
        serde_json::from_slice(&output.stdout).expect("--json prints one JSON document");
    assert!(report.is_object(), "{report}");
    let svg = std::fs::read_to_string(&plot).expect("the plot file");
    assert!(
        svg.starts_with("<svg") || svg.starts_with("<?xml"),
        "{}",
        &svg[..80.min(svg.len())]
    );
    assert!(svg.contains("f2/r1"));
}

#[test]
fn simulate_rejects_a_zero_threshold_naming_the_flag() {
    let output = simulate(&["--failures", "0..3"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--failures"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
}
