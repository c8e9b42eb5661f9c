//! insta snapshots of the wire payloads of DESIGN.md §Formats: events (R12),
//! a state snapshot (D5) and journal lines (D6).
//!
//! Each payload is produced by the core (events by `replay`, lines by
//! serializing an `Input`) and snapshotted as the exact serde_json text, so
//! field order, escaping and the timestamp format are pinned byte for byte.
//! Timestamps are not redacted: they are input data here, not clock reads,
//! and their RFC 3339 form (Go's RFC3339Nano) is part of the contract.

use healthprobe_core::{
    HealthEvent, HealthStates, Input, Policy, ProbeOutcome, ProbeResult, Timestamp, replay,
};

fn at(instant: &str) -> Timestamp {
    instant.parse().expect("a valid RFC 3339 instant")
}

fn outcome(game_id: &str, container_id: &str, instant: &str, result: ProbeResult) -> Input {
    Input::Outcome(ProbeOutcome {
        game_id: game_id.into(),
        container_id: container_id.into(),
        observed_at: at(instant),
        result,
    })
}

fn unhealthy(status: u16, error: &str) -> ProbeResult {
    ProbeResult::Unhealthy {
        status,
        error: error.into(),
    }
}

/// DESIGN.md's example: three 503s publish at 05:00:10.5, a fourth failure
/// keeps counting (R5), the success at 05:00:30 recovers with 4 (R7).
fn design_example() -> Vec<HealthEvent> {
    let failure = || unhealthy(503, "unexpected status 503");
    let inputs = vec![
        outcome("g1", "c1", "2026-11-28T05:00:00Z", failure()),
        outcome("g1", "c1", "2026-11-28T05:00:05Z", failure()),
        outcome("g1", "c1", "2026-11-28T05:00:10.5Z", failure()),
        outcome("g1", "c1", "2026-11-28T05:00:20Z", unhealthy(0, "timeout")),
        outcome("g1", "c1", "2026-11-28T05:00:30Z", ProbeResult::Healthy),
    ];
    let (state, events) = replay(Policy::new(3, 1).expect("valid"), inputs);
    assert!(state.is_empty(), "D7: a recovered game holds no state");
    assert_eq!(events.len(), 2, "{events:?}");
    events
}

/// Serialize, check that the text parses back to the same value, return it.
fn wire<T>(value: &T) -> String
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = serde_json::to_string(value).expect("serializes");
    let back: T = serde_json::from_str(&text).expect("parses back");
    assert_eq!(&back, value, "{text}");
    text
}

#[test]
fn r4_r12_probe_failed_event_wire() {
    let events = design_example();
    let line = wire(&events[0]);
    assert_eq!(
        line,
        r#"{"game_id":"g1","container_id":"c1","event_type":"probe_failed","occurred_at":"2026-11-28T05:00:10.5Z","details":{"consecutive_failures":3,"last_status":503,"last_error":"unexpected status 503"}}"#,
        "DESIGN.md §Formats, Event"
    );
    insta::assert_snapshot!(line);
}

#[test]
fn r7_r12_probe_recovered_event_wire() {
    let events = design_example();
    let line = wire(&events[1]);
    assert_eq!(
        line,
        r#"{"game_id":"g1","container_id":"c1","event_type":"probe_recovered","occurred_at":"2026-11-28T05:00:30Z","details":{"prior_failure_count":4}}"#,
        "DESIGN.md §Formats, Event"
    );
    insta::assert_snapshot!(line);
}

#[test]
fn r4_r12_probe_failed_event_wire_escapes_odd_error_text() {
    let inputs = vec![outcome(
        "ゲーム \"1\"",
        "c\\1",
        "2026-11-28T07:00:10.123456789+02:00",
        unhealthy(
            0,
            "Get \"http://e/healthz\": dial tcp: i/o timeout\n\t<&>\u{1}",
        ),
    )];
    let (_, events) = replay(Policy::new(1, 1).expect("valid"), inputs);
    insta::assert_snapshot!(wire(&events[0]));
}

#[test]
fn d5_health_states_snapshot_with_several_games() {
    let failure = || unhealthy(503, "unexpected status 503");
    let inputs = vec![
        // "g3": two failures, below the threshold: counting, unpublished.
        outcome("g3", "c3", "2026-11-28T05:00:00Z", failure()),
        outcome("g3", "c3", "2026-11-28T05:00:05Z", failure()),
        // "g1": published, then one success of the two D1 needs.
        outcome("g1", "c1", "2026-11-28T05:00:00Z", failure()),
        outcome("g1", "c1", "2026-11-28T05:00:05Z", failure()),
        outcome("g1", "c1", "2026-11-28T05:00:10Z", failure()),
        outcome("g1", "c1", "2026-11-28T05:00:15Z", ProbeResult::Healthy),
        // "ゲーム-2": published, four failures (R5 kept counting).
        outcome("ゲーム-2", "c2", "2026-11-28T05:00:00Z", failure()),
        outcome("ゲーム-2", "c2", "2026-11-28T05:00:05Z", failure()),
        outcome("ゲーム-2", "c2", "2026-11-28T05:00:10Z", failure()),
        outcome(
            "ゲーム-2",
            "c2",
            "2026-11-28T05:00:15Z",
            unhealthy(0, "refused"),
        ),
        // "g4": failed once then succeeded: reset, holds no state (D7).
        outcome("g4", "c4", "2026-11-28T05:00:00Z", failure()),
        outcome("g4", "c4", "2026-11-28T05:00:05Z", ProbeResult::Healthy),
        // "g5": pruned away (R8).
        outcome("g5", "c5", "2026-11-28T05:00:00Z", failure()),
        Input::Prune {
            running: vec!["g1".into(), "ゲーム-2".into(), "g3".into(), "g4".into()],
        },
    ];
    let (state, _) = replay(Policy::new(3, 2).expect("valid"), inputs);
    assert_eq!(state.len(), 3);
    let pretty = serde_json::to_string_pretty(&state).expect("serializes");
    let back: HealthStates = serde_json::from_str(&pretty).expect("parses back");
    assert_eq!(back, state);
    insta::assert_snapshot!(pretty);
}

#[test]
fn d6_journal_line_outcome_healthy() {
    let line = wire(&outcome(
        "g1",
        "c1",
        "2026-11-28T05:00:00Z",
        ProbeResult::Healthy,
    ));
    assert_eq!(
        line,
        r#"{"type":"outcome","game_id":"g1","container_id":"c1","observed_at":"2026-11-28T05:00:00Z","result":"healthy"}"#,
        "DESIGN.md §Formats, Journal input"
    );
    insta::assert_snapshot!(line);
}

#[test]
fn d6_journal_line_outcome_unhealthy() {
    let line = wire(&outcome(
        "g1",
        "c1",
        "2026-11-28T05:00:05Z",
        unhealthy(503, "unexpected status 503"),
    ));
    assert_eq!(
        line,
        r#"{"type":"outcome","game_id":"g1","container_id":"c1","observed_at":"2026-11-28T05:00:05Z","result":{"unhealthy":{"status":503,"error":"unexpected status 503"}}}"#,
        "DESIGN.md §Formats, Journal input"
    );
    insta::assert_snapshot!(line);
}

#[test]
fn d6_journal_line_outcome_no_response() {
    let line = wire(&outcome(
        "g2",
        "c7",
        "2026-11-28T05:00:05.25Z",
        unhealthy(0, "connection refused"),
    ));
    insta::assert_snapshot!(line);
}

#[test]
fn d6_r8_journal_line_prune() {
    let line = wire(&Input::Prune {
        running: vec!["g1".into(), "g2".into()],
    });
    assert_eq!(
        line, r#"{"type":"prune","running":["g1","g2"]}"#,
        "DESIGN.md §Formats, Journal input"
    );
    insta::assert_snapshot!(line);
}

#[test]
fn d6_r8_journal_line_prune_to_nothing() {
    insta::assert_snapshot!(wire(&Input::Prune { running: vec![] }));
}
