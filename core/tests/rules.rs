//! Data-driven tests, one per rule of DESIGN.md they pin (R1–R8, D1, D2, D7),
//! and the event ids those rules give (`id_…`).

use healthprobe_core::{
    EventDetails, HealthEvent, HealthStates, Input, Policy, ProbeOutcome, ProbeResult, Timestamp,
    probe_url, prune, replay, step,
};

/// A compact script line: `F` fail (503), `N` no response, `S` success,
/// `P:a,b` prune to the listed games. Each outcome is one second after the last.
fn inputs(game_id: &str, script: &str) -> Vec<Input> {
    let mut second = 0;
    script
        .split_whitespace()
        .map(|token| {
            if let Some(list) = token.strip_prefix("P:") {
                return Input::Prune {
                    running: list
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect(),
                };
            }
            second += 1;
            let result = match token {
                "S" => ProbeResult::Healthy,
                "F" => ProbeResult::Unhealthy {
                    status: 503,
                    error: "unexpected status 503".into(),
                },
                "N" => ProbeResult::Unhealthy {
                    status: 0,
                    error: "connection refused".into(),
                },
                other => panic!("bad script token {other}"),
            };
            Input::Outcome(ProbeOutcome {
                game_id: game_id.into(),
                container_id: format!("c{second}"),
                observed_at: at(second),
                result,
            })
        })
        .collect()
}

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_795_842_000 + second).expect("in range")
}

/// Events rendered as `failed(count,status)@second` / `recovered(count)@second`.
fn render(events: &[HealthEvent]) -> Vec<String> {
    events
        .iter()
        .map(|event| {
            let second = event.occurred_at.as_second() - 1_795_842_000;
            match &event.details {
                EventDetails::ProbeFailed {
                    consecutive_failures,
                    last_status,
                    ..
                } => format!("failed({consecutive_failures},{last_status})@{second}"),
                EventDetails::ProbeRecovered {
                    prior_failure_count,
                } => format!("recovered({prior_failure_count})@{second}"),
            }
        })
        .collect()
}

fn check(failures: u32, recoveries: u32, script: &str, expected: &[&str]) {
    let policy = Policy::new(failures, recoveries).expect("valid policy");
    let (_, events) = replay(policy, inputs("g1", script));
    assert_eq!(
        render(&events),
        expected,
        "script {script:?} under {policy:?}"
    );
}

#[test]
fn r1_d2_only_exactly_200_is_healthy() {
    assert_eq!(ProbeResult::from_status(200), ProbeResult::Healthy);
    for status in [100, 201, 204, 299, 301, 302, 304, 404, 500, 503, 599] {
        assert_eq!(
            ProbeResult::from_status(status),
            ProbeResult::Unhealthy {
                status,
                error: format!("unexpected status {status}"),
            }
        );
    }
}

#[test]
fn r2_probe_url_trims_every_trailing_slash() {
    let cases = [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/healthz"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/healthz"),
        ("http://127.0.0.1:8080///", "http://127.0.0.1:8080/healthz"),
        ("http://h:1/engine/", "http://h:1/engine/healthz"),
        ("http://h:1/engine//", "http://h:1/engine/healthz"),
        ("http://h:1//engine", "http://h:1//engine/healthz"),
        ("", "/healthz"),
        ("///", "/healthz"),
    ];
    for (endpoint, expected) in cases {
        assert_eq!(probe_url(endpoint), expected, "{endpoint:?}");
    }
}

#[test]
fn r4_threshold_reached_emits_probe_failed_once() {
    check(3, 1, "F F", &[]);
    check(3, 1, "F F F", &["failed(3,503)@3"]);
    check(3, 1, "N N N", &["failed(3,0)@3"]);
}

#[test]
fn r4_threshold_one_fails_on_first_failure() {
    check(1, 1, "F", &["failed(1,503)@1"]);
    check(
        1,
        1,
        "F S F",
        &["failed(1,503)@1", "recovered(1)@2", "failed(1,503)@3"],
    );
}

#[test]
fn r4_last_status_and_error_come_from_the_failure_that_crossed() {
    let policy = Policy::new(2, 1).unwrap();
    let (_, events) = replay(policy, inputs("g1", "F N"));
    assert_eq!(
        events[0].details,
        EventDetails::ProbeFailed {
            consecutive_failures: 2,
            last_status: 0,
            last_error: "connection refused".into(),
        }
    );
}

#[test]
fn r5_failures_after_publication_keep_counting_and_prior_count_includes_them() {
    check(2, 1, "F F F F F S", &["failed(2,503)@2", "recovered(5)@6"]);
}

#[test]
fn r6_success_with_no_state_emits_nothing_and_holds_no_state() {
    check(3, 1, "S S S", &[]);
    let (state, _) = replay(Policy::default(), inputs("g1", "S"));
    assert!(state.is_empty());
}

#[test]
fn r6_success_while_not_published_resets_the_counter() {
    check(3, 1, "F F S F F", &[]);
    check(3, 1, "F F S F F F", &["failed(3,503)@6"]);
}

#[test]
fn r7_first_success_while_published_recovers_and_resets() {
    check(3, 1, "F F F S", &["failed(3,503)@3", "recovered(3)@4"]);
    check(
        3,
        1,
        "F F F S F F F S",
        &[
            "failed(3,503)@3",
            "recovered(3)@4",
            "failed(3,503)@7",
            "recovered(3)@8",
        ],
    );
}

#[test]
fn r8_prune_drops_counters_so_a_reentering_game_starts_clean() {
    check(3, 1, "F F P: F F", &[]);
    check(3, 1, "F F P:g2 F F F", &["failed(3,503)@5"]);
    // A published failure is forgotten too: no recovery after re-entry.
    check(2, 1, "F F P:g2 S F", &["failed(2,503)@2"]);
}

#[test]
fn r8_prune_keeps_running_games() {
    check(3, 1, "F F P:g1,g2 F", &["failed(3,503)@3"]);
    check(3, 1, "F F P:g2,g1,g1 F", &["failed(3,503)@3"]);
}

#[test]
fn r12_event_container_id_is_the_one_of_the_causing_outcome() {
    let (_, events) = replay(Policy::new(2, 1).unwrap(), inputs("g1", "F F S"));
    assert_eq!(events[0].container_id, "c2");
    assert_eq!(events[1].container_id, "c3");
    assert_eq!(events[0].game_id, "g1");
}

#[test]
fn r12_occurred_at_is_observed_at_of_the_causing_outcome() {
    let (_, events) = replay(Policy::new(2, 1).unwrap(), inputs("g1", "F F S"));
    assert_eq!(events[0].occurred_at, at(2));
    assert_eq!(events[1].occurred_at, at(3));
}

#[test]
fn d1_recovery_threshold_three_with_failures_interleaved() {
    check(2, 3, "F F S S", &["failed(2,503)@2"]);
    check(2, 3, "F F S S S", &["failed(2,503)@2", "recovered(2)@5"]);
    // A failure in the streak resets it and keeps adding to the failure counter.
    check(
        2,
        3,
        "F F S S F S S S",
        &["failed(2,503)@2", "recovered(3)@8"],
    );
    check(
        2,
        3,
        "F F S F S F S S S",
        &["failed(2,503)@2", "recovered(4)@9"],
    );
}

#[test]
fn d1_recovery_threshold_one_is_the_reference() {
    // The reference's policy is D1 with one success to recover...
    assert_eq!(Policy::reference(3).unwrap(), Policy::new(3, 1).unwrap());
    // ...and under it the events are R3-R7's, worked out by hand: a success
    // before the threshold resets (R6), the first success after a
    // published failure recovers with every failure counted (R5, R7), and
    // a success with no state emits nothing (R6).
    check(
        3,
        1,
        "F F S F F F S S F F F F S",
        &[
            "failed(3,503)@6",
            "recovered(3)@7",
            "failed(3,503)@11",
            "recovered(4)@13",
        ],
    );
}

#[test]
fn d7_reset_and_recovered_games_hold_no_state() {
    let (state, _) = replay(Policy::new(2, 1).unwrap(), inputs("g1", "F S"));
    assert!(state.is_empty());
    let (state, _) = replay(Policy::new(2, 1).unwrap(), inputs("g1", "F F S"));
    assert!(state.is_empty());
    let (state, _) = replay(Policy::new(2, 2).unwrap(), inputs("g1", "F F S"));
    let game = state.game("g1").expect("still published");
    assert_eq!(
        (
            game.consecutive_failures(),
            game.failure_published(),
            game.consecutive_successes()
        ),
        (2, true, 1)
    );
}

#[test]
fn games_are_independent() {
    let policy = Policy::new(2, 1).unwrap();
    let mut all = inputs("g1", "F F S");
    all.extend(inputs("g2", "F S F"));
    let (state, events) = replay(policy, all);
    assert_eq!(render(&events), ["failed(2,503)@2", "recovered(2)@3"]);
    assert_eq!(state.game("g2").map(|g| g.consecutive_failures()), Some(1));
}

#[test]
fn step_and_prune_are_the_functional_form_of_replay() {
    let policy = Policy::new(2, 2).unwrap();
    let script = inputs("g1", "F F S P:g1 F S S P: F");
    let mut state = HealthStates::new(policy);
    let mut by_hand = Vec::new();
    for input in script.clone() {
        match input {
            Input::Outcome(outcome) => {
                let (next, events) = step(state, outcome);
                state = next;
                by_hand.extend(events);
            }
            Input::Prune { running } => state = prune(state, running.iter().map(String::as_str)),
        }
    }
    assert_eq!((state, by_hand), replay(policy, script));
}

#[test]
fn r11_policy_rejects_zero_thresholds_naming_the_field() {
    assert_eq!(
        Policy::new(0, 1).unwrap_err().to_string(),
        "failures_threshold must be positive, got 0"
    );
    assert_eq!(
        Policy::new(3, 0).unwrap_err().to_string(),
        "recovery_threshold must be positive, got 0"
    );
    assert_eq!(Policy::default(), Policy::new(3, 1).unwrap());
}

#[test]
fn policy_change_keeps_published_failures_published() {
    let (mut state, _) = replay(Policy::new(2, 1).unwrap(), inputs("g1", "F F"));
    state.set_policy(Policy::new(5, 1).unwrap());
    let (state, events) = step(state, outcome_at(9, ProbeResult::Healthy));
    assert_eq!(render(&events), ["recovered(2)@9"]);
    assert!(state.is_empty());
}

fn outcome_at(second: i64, result: ProbeResult) -> ProbeOutcome {
    ProbeOutcome {
        game_id: "g1".into(),
        container_id: "c1".into(),
        observed_at: at(second),
        result,
    }
}

/// The ids `apply` gives the events of `script` for `game_id`.
fn ids(policy: Policy, game_id: &str, script: &str) -> Vec<String> {
    let mut state = HealthStates::new(policy);
    inputs(game_id, script)
        .into_iter()
        .filter_map(|input| state.apply_input(input))
        .map(|out| out.id.to_string())
        .collect()
}

/// `expected`: each event's type and its episode (the second of the
/// streak's first failure), spelled out as the full id of game `g1`.
fn check_ids(failures: u32, recoveries: u32, script: &str, expected: &[(&str, i64)]) {
    let policy = Policy::new(failures, recoveries).expect("valid policy");
    let expected: Vec<String> = expected
        .iter()
        .map(|(kind, second)| format!("{}:{kind}:g1", at(*second).as_nanosecond()))
        .collect();
    assert_eq!(
        ids(policy, "g1", script),
        expected,
        "script {script:?} under {policy:?}"
    );
}

#[test]
fn id_r3_r4_r7_the_episode_is_the_first_failure_and_both_events_share_it() {
    check_ids(
        3,
        1,
        "F F F F S",
        &[("probe_failed", 1), ("probe_recovered", 1)],
    );
    check_ids(1, 1, "N S", &[("probe_failed", 1), ("probe_recovered", 1)]);
}

#[test]
fn id_r6_an_unpublished_reset_begins_a_new_episode() {
    check_ids(
        2,
        1,
        "F S F F S",
        &[("probe_failed", 3), ("probe_recovered", 3)],
    );
}

#[test]
fn id_r7_a_new_streak_after_a_recovery_gets_a_new_episode() {
    check_ids(
        1,
        1,
        "F S F S",
        &[
            ("probe_failed", 1),
            ("probe_recovered", 1),
            ("probe_failed", 3),
            ("probe_recovered", 3),
        ],
    );
}

#[test]
fn id_r8_a_game_pruned_and_back_begins_a_new_episode() {
    check_ids(
        2,
        1,
        "F F P: F F S",
        &[
            ("probe_failed", 1),
            ("probe_failed", 3),
            ("probe_recovered", 3),
        ],
    );
    // Still listed: the prune keeps the episode.
    check_ids(
        2,
        1,
        "F P:g1 F S",
        &[("probe_failed", 1), ("probe_recovered", 1)],
    );
}

#[test]
fn id_d1_a_failure_during_recovery_keeps_the_episode() {
    check_ids(
        2,
        2,
        "F F S F S S",
        &[("probe_failed", 1), ("probe_recovered", 1)],
    );
}

#[test]
fn id_a_game_id_holding_colons_stays_whole_at_the_end() {
    let policy = Policy::new(1, 1).expect("valid");
    let episode = at(1).as_nanosecond();
    assert_eq!(
        ids(policy, "eu:g:1", "F"),
        [format!("{episode}:probe_failed:eu:g:1")]
    );
}

#[test]
fn id_d5_the_same_inputs_give_the_same_ids_whole_or_through_a_snapshot() {
    let policy = Policy::new(2, 2).expect("valid");
    let script = "F F F S F S S F S F F P:g1 S S F F P: F F S S";
    let whole = ids(policy, "g1", script);
    assert_eq!(whole, ids(policy, "g1", script), "replayed");
    assert_eq!(whole.len(), 7);
    let inputs = inputs("g1", script);
    for split in 0..=inputs.len() {
        let mut state = HealthStates::new(policy);
        let mut got: Vec<String> = Vec::new();
        for (index, input) in inputs.iter().cloned().enumerate() {
            if index == split {
                // A restart: the state goes through its snapshot.
                let snapshot = serde_json::to_string(&state).expect("serializes");
                state = serde_json::from_str(&snapshot).expect("parses back");
            }
            got.extend(state.apply_input(input).map(|out| out.id.to_string()));
        }
        assert_eq!(got, whole, "restarted before input {split}");
    }
}
