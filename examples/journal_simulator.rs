//! Folding a recorded journal through candidate policies, in a simulator loop.
//!
//! A worker run with `--journal FILE` records every prune and probe outcome
//! (one JSON line each, `healthprobe_core::Input`). Because the core is a
//! pure fold, a simulator can replay those real outcomes through any policy
//! and ask what it would have done: here, for each candidate
//! `failures_threshold` / `recovery_threshold`, how many alerts, how long
//! after an outage's first failed probe each `probe_failed` came, and how
//! many recoveries. It also checks its loop against `healthprobe_core::replay`.
//!
//! `cargo run -p healthprobe-examples --bin journal-simulator [JOURNAL]`
//! (default: the repository's `examples/journal.jsonl`).

use std::collections::HashMap;
use std::process::ExitCode;

use healthprobe_core::{
    EventType, HealthEvent, HealthStates, Input, Outgoing, Policy, Timestamp, replay,
};

/// What one policy would have done over the journal.
#[derive(Debug, Default)]
struct Verdict {
    events: Vec<HealthEvent>,
    /// For each `probe_failed`: milliseconds since its outage's first failed probe.
    detection_ms: Vec<i64>,
}

/// The simulator loop: every input, in order, through `policy`.
fn simulate(policy: Policy, inputs: &[Input]) -> Verdict {
    let mut state = HealthStates::new(policy);
    let mut outage_began: HashMap<String, Timestamp> = HashMap::new();
    let mut verdict = Verdict::default();
    for input in inputs {
        match input {
            Input::Outcome(outcome) if outcome.result.is_healthy() => {
                outage_began.remove(&outcome.game_id);
            }
            Input::Outcome(outcome) => {
                outage_began
                    .entry(outcome.game_id.clone())
                    .or_insert(outcome.observed_at);
            }
            // A game no longer running starts afresh if it comes back.
            Input::Prune { running } => outage_began.retain(|game, _| running.contains(game)),
        }
        let Some(Outgoing { event, .. }) = state.apply_input(input.clone()) else {
            continue;
        };
        if event.event_type() == EventType::ProbeFailed {
            let began = outage_began[&event.game_id];
            verdict
                .detection_ms
                .push(event.occurred_at.as_millisecond() - began.as_millisecond());
        }
        verdict.events.push(event);
    }
    verdict
}

fn main() -> ExitCode {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/journal.jsonl").to_owned());
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("{path}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut inputs = Vec::new();
    for (number, line) in text.lines().enumerate() {
        match serde_json::from_str::<Input>(line) {
            Ok(input) => inputs.push(input),
            Err(err) => {
                eprintln!("{path}:{}: {err}", number + 1);
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{} inputs from {path}", inputs.len());
    println!("policy  alerts  detection (s)  recoveries");
    for failures_threshold in 1..=5 {
        for recovery_threshold in 1..=2 {
            let policy =
                Policy::new(failures_threshold, recovery_threshold).expect("valid thresholds");
            let verdict = simulate(policy, &inputs);
            // The loop folds exactly as the core's own replay does.
            if replay(policy, inputs.iter().cloned()).1 != verdict.events {
                eprintln!(
                    "f{failures_threshold}/r{recovery_threshold}: the loop and replay disagree"
                );
                return ExitCode::FAILURE;
            }
            let count = |kind| {
                verdict
                    .events
                    .iter()
                    .filter(|e| e.event_type() == kind)
                    .count()
            };
            let detection: Vec<String> = verdict
                .detection_ms
                .iter()
                .map(|ms| format!("{:.1}", *ms as f64 / 1000.0))
                .collect();
            println!(
                "f{failures_threshold}/r{recovery_threshold}  {:>6}  {:>13}  {:>10}",
                count(EventType::ProbeFailed),
                if detection.is_empty() {
                    "-".to_owned()
                } else {
                    detection.join(" ")
                },
                count(EventType::ProbeRecovered),
            );
        }
    }
    ExitCode::SUCCESS
}
