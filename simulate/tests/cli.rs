//! `healthprobe simulate` as a user runs it: flags, output, determinism, plot.

use std::path::PathBuf;

use clap::Parser;
use healthprobe_simulate::{SimulateArgs, SimulateError, ThresholdRange, run};

#[derive(Debug, Parser)]
#[command(name = "healthprobe simulate")]
struct Cli {
    #[command(flatten)]
    args: SimulateArgs,
}

fn parse(flags: &[&str]) -> Result<SimulateArgs, clap::Error> {
    let argv = std::iter::once("healthprobe-simulate").chain(flags.iter().copied());
    Cli::try_parse_from(argv).map(|cli| cli.args)
}

/// A small fleet, so each run takes a fraction of a second even unoptimised.
fn small(extra: &[&str]) -> SimulateArgs {
    let mut flags = vec!["--engines", "12", "--days", "0.5", "--outage-rate", "6"];
    flags.extend_from_slice(extra);
    parse(&flags).expect("valid flags")
}

fn output(args: &SimulateArgs) -> String {
    let mut out = Vec::new();
    run(args, &mut out).expect("run succeeds");
    String::from_utf8(out).expect("UTF-8 output")
}

fn scratch(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

#[test]
fn defaults_compare_eighteen_policies_over_a_week() {
    let args = parse(&[]).expect("no flags needed");
    assert_eq!(args.engines, 200);
    assert_eq!(args.days, 7.0);
    assert_eq!(args.interval, std::time::Duration::from_secs(5));
    assert_eq!(args.failures, ThresholdRange::new(1, 6).expect("valid"));
    assert_eq!(args.recoveries, ThresholdRange::new(1, 3).expect("valid"));
    let policies = args.policies().expect("policies");
    assert_eq!(policies.len(), 18);
    assert_eq!(args.scenario().expect("scenario").probes, 7 * 17_280);
}

#[test]
fn ranges_are_inclusive_and_a_single_number_is_one_threshold() {
    let thresholds = |flag: &str, value: &str| -> Vec<u32> {
        let args = parse(&[flag, value]).expect("valid range");
        let range = if flag == "--failures" {
            args.failures
        } else {
            args.recoveries
        };
        range.thresholds().collect()
    };
    assert_eq!(thresholds("--failures", "2..4"), [2, 3, 4]);
    assert_eq!(thresholds("--failures", "2..=4"), [2, 3, 4]);
    assert_eq!(thresholds("--failures", "3"), [3]);
    assert_eq!(thresholds("--recoveries", "1..1"), [1]);
    assert_eq!(thresholds("--recoveries", " 2 .. 3 "), [2, 3]);
    let args = parse(&["--failures", "2..3", "--recoveries", "4"]).expect("valid");
    let names: Vec<String> = args
        .policies()
        .expect("policies")
        .into_iter()
        .map(healthprobe_simulate::policy_name)
        .collect();
    assert_eq!(names, ["f2/r4", "f3/r4"]);
}

#[test]
fn bad_flags_are_rejected_naming_the_flag() {
    let cases: &[(&[&str], &str, &str)] = &[
        (&["--failures", "0..3"], "--failures", "start at 1"),
        (&["--failures", "0"], "--failures", "start at 1"),
        (&["--recoveries", "3..1"], "--recoveries", "empty"),
        (&["--failures", "a..b"], "--failures", "whole numbers"),
        (&["--failures", "1..101"], "--failures", "up to 100"),
        (&["--failures", "1...3"], "--failures", "whole numbers"),
        (&["--engines", "0"], "--engines", "0"),
        (&["--days", "0"], "--days", "positive"),
        (&["--days", "nan"], "--days", "positive"),
        (&["--days", "100000"], "--days", "at most"),
        (&["--interval", "0s"], "--interval", "positive"),
        (&["--interval", "soon"], "--interval", "duration"),
        (&["--flake", "1.5"], "--flake", "between 0 and 1"),
        (&["--flake", "150%"], "--flake", "between 0 and 1"),
        (&["--settle-flake", "x"], "--settle-flake", "probability"),
        (&["--outage-rate", "inf"], "--outage-rate", "zero or more"),
        (
            &["--outage-mean", "2 fortnights"],
            "--outage-mean",
            "duration",
        ),
        (&["--seed=-1"], "--seed", "invalid value"),
    ];
    for (flags, flag, reason) in cases {
        let error = parse(flags).expect_err(&format!("{flags:?} must be rejected"));
        let text = error.to_string();
        assert!(text.contains(flag), "{flags:?}: {text}");
        assert!(
            text.contains(reason),
            "{flags:?}: {text} should say {reason}"
        );
    }
}

#[test]
fn percentages_are_probabilities() {
    assert_eq!(parse(&["--flake", "2.5%"]).expect("valid").flake, 0.025);
    assert_eq!(
        parse(&["--settle-flake", "0.3"])
            .expect("valid")
            .settle_flake,
        0.3
    );
}

#[test]
fn a_run_too_short_for_one_probe_is_an_error_naming_both_flags() {
    let args = parse(&["--days", "0.00001", "--interval", "5s"]).expect("each flag is valid");
    let error = run(&args, &mut Vec::new()).expect_err("no probe fits");
    assert!(matches!(error, SimulateError::NoProbes { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("--days") && text.contains("--interval"),
        "{text}"
    );
}

#[test]
fn the_table_has_one_row_per_policy_and_explains_itself() {
    let text = output(&small(&["--failures", "1..3", "--recoveries", "1..2"]));
    assert!(
        text.starts_with("Simulated 12 engines × 0.5 days, a probe every 5s"),
        "{text}"
    );
    for name in ["f1/r1", "f1/r2", "f2/r1", "f2/r2", "f3/r1", "f3/r2"] {
        let rows = text
            .lines()
            .filter(|l| l.starts_with(&format!("{name} ")))
            .count();
        assert_eq!(rows, 1, "{name} in\n{text}");
    }
    assert!(
        text.contains("detection delay") && text.contains("false alarms"),
        "{text}"
    );
    assert!(
        text.contains("False alarm:"),
        "the legend explains the columns:\n{text}"
    );
    // Aligned: every policy row is as wide as the header row.
    let header = text
        .lines()
        .find(|l| l.starts_with("policy"))
        .expect("header");
    for row in text
        .lines()
        .filter(|l| l.starts_with('f') && l.contains('/'))
    {
        assert_eq!(row.chars().count(), header.chars().count(), "{row}");
    }
}

#[test]
fn json_has_every_policy_and_its_metrics() {
    let text = output(&small(&[
        "--json",
        "--failures",
        "2..3",
        "--recoveries",
        "1",
    ]));
    let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let policies = json["policies"].as_array().expect("policies array");
    let names: Vec<&str> = policies
        .iter()
        .filter_map(|p| p["policy"].as_str())
        .collect();
    assert_eq!(names, ["f2/r1", "f3/r1"]);
    for p in policies {
        for key in [
            "false_alarms_per_engine_day",
            "events_per_engine_day",
            "missed_outages",
        ] {
            assert!(p[key].is_number(), "{key} in {p}");
        }
        assert!(p["detection"]["seconds"]["p95"].is_number(), "{p}");
        assert!(p["detection"]["probes"]["max"].is_u64(), "{p}");
        assert!(p["recovery"]["samples"].is_u64(), "{p}");
    }
    assert_eq!(json["scenario"]["engines"], 12);
    assert!(json["outages"]["total"].as_u64().expect("count") > 0);
}

#[test]
fn same_seed_same_bytes_for_table_json_and_plot() {
    for (format, name) in [(None, "table"), (Some("--json"), "json")] {
        let svg = |run_index: usize| scratch(&format!("determinism-{name}-{run_index}.svg"));
        let args = |run_index: usize, threads: &str| {
            let plot = svg(run_index);
            let mut flags = vec!["--seed", "99", "--threads", threads, "--plot"];
            let plot = plot.to_str().expect("UTF-8 path").to_owned();
            flags.push(&plot);
            flags.extend(format);
            small(&flags)
        };
        let first = output(&args(0, "1"));
        let second = output(&args(1, "3"));
        let strip = |text: &str| {
            text.replace(&svg(0).display().to_string(), "")
                .replace(&svg(1).display().to_string(), "")
        };
        assert_eq!(strip(&first), strip(&second), "{name} differs between runs");
        let plot0 = std::fs::read(svg(0)).expect("plot written");
        let plot1 = std::fs::read(svg(1)).expect("plot written");
        assert!(plot0 == plot1, "{name}: the SVG differs between runs");
    }
    let other_seed = output(&small(&["--seed", "100"]));
    assert_ne!(
        output(&small(&["--seed", "99"])),
        other_seed,
        "the seed matters"
    );
}

#[test]
fn the_plot_is_svg_naming_every_policy_and_its_axes() {
    let path = scratch("names-every-policy.svg");
    let plot = path.to_str().expect("UTF-8 path");
    let text = output(&small(&[
        "--failures",
        "1..4",
        "--recoveries",
        "1..3",
        "--plot",
        plot,
    ]));
    assert!(text.ends_with(&format!("Plot: {plot}\n")), "{text}");
    let svg = std::fs::read_to_string(&path).expect("plot written");
    let document = roxmltree::Document::parse(&svg).expect("the plot is well-formed XML");
    assert_eq!(document.root_element().tag_name().name(), "svg");
    let texts: Vec<String> = document
        .descendants()
        .filter(|node| node.has_tag_name("text"))
        .filter_map(|node| node.text())
        .map(|text| text.trim().to_owned())
        .collect();
    for f in 1..=4 {
        for r in 1..=3 {
            let name = format!("f{f}/r{r}");
            assert!(
                texts.contains(&name),
                "{name} is not labelled; texts: {texts:?}"
            );
        }
    }
    assert!(
        texts
            .iter()
            .any(|t| t.contains("false alarms per engine-day")),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("median detection delay (s)")),
        "{texts:?}"
    );
}

#[test]
fn json_output_is_only_json_even_with_a_plot() {
    let path = scratch("json-only.svg");
    let plot = path.to_str().expect("UTF-8 path");
    let text = output(&small(&["--json", "--plot", plot, "--failures", "2"]));
    serde_json::from_str::<serde_json::Value>(&text).expect("stdout is one JSON document");
}

#[test]
fn an_unwritable_plot_is_an_error_naming_the_file() {
    let path = scratch("no-such-dir/plot.svg");
    let args = small(&[
        "--failures",
        "2",
        "--plot",
        path.to_str().expect("UTF-8 path"),
    ]);
    let error = run(&args, &mut Vec::new()).expect_err("the directory does not exist");
    assert!(matches!(error, SimulateError::PlotFile { .. }), "{error:?}");
    assert!(
        error.to_string().contains("no-such-dir/plot.svg"),
        "{error}"
    );
}
