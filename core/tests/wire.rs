//! The JSON formats of DESIGN.md: events, journal lines, snapshots.

use healthprobe_core::{HealthEvent, HealthStates, Input, Policy, Timestamp, replay};

#[test]
fn r12_occurred_at_is_rfc3339_utc_like_go_rfc3339nano() {
    // Go marshals time.Time with RFC3339Nano: fraction trimmed of trailing zeros.
    for (input, wire) in [
        ("2026-11-28T05:00:10.5Z", "2026-11-28T05:00:10.5Z"),
        ("2026-11-28T05:00:30Z", "2026-11-28T05:00:30Z"),
        ("2026-11-28T05:00:30.000Z", "2026-11-28T05:00:30Z"),
        (
            "2026-11-28T05:00:30.123456789Z",
            "2026-11-28T05:00:30.123456789Z",
        ),
        ("2026-11-28T05:00:30.120Z", "2026-11-28T05:00:30.12Z"),
        ("2026-11-28T07:00:30+02:00", "2026-11-28T05:00:30Z"),
    ] {
        let ts: Timestamp = serde_json::from_str(&format!("{input:?}")).unwrap();
        assert_eq!(
            serde_json::to_string(&ts).unwrap(),
            format!("{wire:?}"),
            "{input}"
        );
    }
}

#[test]
fn journal_lines_round_trip_and_yield_design_events() {
    let journal = r#"{"type":"outcome","game_id":"g1","container_id":"c1","observed_at":"2026-11-28T05:00:00Z","result":"healthy"}
{"type":"outcome","game_id":"g1","container_id":"c1","observed_at":"2026-11-28T05:00:05Z","result":{"unhealthy":{"status":503,"error":"unexpected status 503"}}}
{"type":"prune","running":["g1","g2"]}
{"result":{"unhealthy":{"status":0,"error":"timeout"}},"observed_at":"2026-11-28T05:00:10.5Z","container_id":"c2","game_id":"g1","type":"outcome","extra":1}
{"type":"outcome","game_id":"g1","container_id":"c3","observed_at":"2026-11-28T05:00:30Z","result":"healthy"}"#;
    let inputs: Vec<Input> = journal
        .lines()
        .map(|line| serde_json::from_str(line).expect(line))
        .collect();
    for (line, input) in journal.lines().zip(&inputs).take(3) {
        assert_eq!(serde_json::to_string(input).unwrap(), line);
    }
    let (_, events) = replay(Policy::new(2, 1).unwrap(), inputs);
    let wire: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    assert_eq!(
        wire,
        [
            r#"{"game_id":"g1","container_id":"c2","event_type":"probe_failed","occurred_at":"2026-11-28T05:00:10.5Z","details":{"consecutive_failures":2,"last_status":0,"last_error":"timeout"}}"#,
            r#"{"game_id":"g1","container_id":"c3","event_type":"probe_recovered","occurred_at":"2026-11-28T05:00:30Z","details":{"prior_failure_count":2}}"#,
        ]
    );
    for (line, event) in wire.iter().zip(&events) {
        let back: HealthEvent = serde_json::from_str(line).unwrap();
        assert_eq!(&back, event);
    }
}

#[test]
fn journal_errors_name_what_is_wrong() {
    for (line, needle) in [
        (
            r#"{"type":"outcome","game_id":"g1","container_id":"c1","result":"healthy"}"#,
            "missing field `observed_at`",
        ),
        (r#"{"type":"restart"}"#, "unknown variant `restart`"),
        (r#"{"game_id":"g1"}"#, "missing field `type`"),
        (
            r#"{"type":"prune","running":["a"],"running":[]}"#,
            "duplicate field `running`",
        ),
        (
            r#"{"type":"outcome","game_id":"g1","container_id":"c1","observed_at":"yesterday","result":"healthy"}"#,
            "yesterday",
        ),
        (
            r#"{"type":"outcome","game_id":"g1","container_id":"c1","observed_at":"2026-11-28T05:00:00Z","result":{"unhealthy":{"status":70000,"error":""}}}"#,
            "70000",
        ),
    ] {
        let err = serde_json::from_str::<Input>(line).unwrap_err().to_string();
        assert!(err.contains(needle), "{line}: {err}");
    }
}

#[test]
fn event_details_must_match_event_type() {
    let bad = r#"{"game_id":"g1","container_id":"c1","event_type":"probe_recovered","occurred_at":"2026-11-28T05:00:30Z","details":{"consecutive_failures":2,"last_status":0,"last_error":""}}"#;
    let err = serde_json::from_str::<HealthEvent>(bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("probe_recovered details need"), "{err}");
}

#[test]
fn snapshot_rejects_zero_threshold_and_impossible_games() {
    let zero = r#"{"policy":{"failures_threshold":0,"recovery_threshold":1},"games":{}}"#;
    let err = serde_json::from_str::<HealthStates>(zero)
        .unwrap_err()
        .to_string();
    assert!(err.contains("failures_threshold must be positive"), "{err}");
    let empty_game = r#"{"policy":{"failures_threshold":3},"games":{"g1":{"consecutive_failures":0,"failure_published":false}}}"#;
    let err = serde_json::from_str::<HealthStates>(empty_game)
        .unwrap_err()
        .to_string();
    assert!(err.contains("game \"g1\""), "{err}");
    let streak = r#"{"policy":{"failures_threshold":3},"games":{"g1":{"consecutive_failures":1,"failure_published":false,"consecutive_successes":1}}}"#;
    let err = serde_json::from_str::<HealthStates>(streak)
        .unwrap_err()
        .to_string();
    assert!(err.contains("consecutive_successes without"), "{err}");
}
