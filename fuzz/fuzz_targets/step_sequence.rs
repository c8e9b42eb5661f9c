//! Structure-aware: a policy and a list of outcomes and prunes, applied with
//! `step` and `prune`; after every op the core must agree with the naive Go
//! model and keep its invariants (D1, D7, R4); at the end the state must
//! survive a JSON snapshot and `replay` must give the same result.
#![no_main]

use arbitrary::Arbitrary;
use healthprobe_core::{
    HealthEvent, HealthStates, Input, Policy, ProbeOutcome, ProbeResult, Timestamp, prune, replay,
    step,
};
use healthprobe_fuzz::{NaiveModel, observed};
use libfuzzer_sys::fuzz_target;

/// A few games, some odd on the wire; prunes may also name `GHOST`.
const GAME_IDS: [&str; 5] = ["g1", "g2", "ゲーム", "", "g\"5\\"];
const GHOST: &str = "ghost";

#[derive(Debug, Arbitrary)]
struct Scenario {
    failures_threshold: u8,
    recovery_threshold: u8,
    ops: Vec<Op>,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Outcome {
        game: u8,
        container: u8,
        /// Seconds after an arbitrary origin; need not increase.
        second: u16,
        result: FuzzResult,
    },
    Prune {
        running: Vec<u8>,
    },
}

#[derive(Debug, Arbitrary)]
enum FuzzResult {
    Healthy,
    Unhealthy { status: u16, error: String },
}

/// 1..=6 from any byte.
fn threshold(byte: u8) -> u32 {
    1 + u32::from(byte % 6)
}

fn game_id(index: u8) -> &'static str {
    GAME_IDS[usize::from(index) % GAME_IDS.len()]
}

fn input(op: Op) -> Input {
    match op {
        Op::Outcome {
            game,
            container,
            second,
            result,
        } => Input::Outcome(ProbeOutcome {
            game_id: game_id(game).to_owned(),
            container_id: format!("c{container}"),
            observed_at: Timestamp::from_second(1_795_842_000 + i64::from(second))
                .expect("within jiff's range"),
            result: match result {
                FuzzResult::Healthy => ProbeResult::Healthy,
                FuzzResult::Unhealthy { status, error } => ProbeResult::Unhealthy { status, error },
            },
        }),
        Op::Prune { running } => Input::Prune {
            running: running
                .into_iter()
                .map(|index| {
                    let index = usize::from(index) % (GAME_IDS.len() + 1);
                    GAME_IDS.get(index).copied().unwrap_or(GHOST).to_owned()
                })
                .collect(),
        },
    }
}

fn check_invariants(state: &HealthStates, policy: Policy) {
    let failures_threshold = u64::from(policy.failures_threshold());
    for (game_id, game) in state.games() {
        // D7: no trivial game.
        assert!(
            game.consecutive_failures() > 0 || game.failure_published(),
            "{game_id:?}: {game:?}"
        );
        // R4, R5: published exactly when the threshold was reached.
        assert_eq!(
            game.failure_published(),
            game.consecutive_failures() >= failures_threshold,
            "{game_id:?}: {game:?}"
        );
        // D1: a success streak only while published, below the threshold.
        assert!(
            game.consecutive_successes() == 0 || game.failure_published(),
            "{game_id:?}: {game:?}"
        );
        assert!(
            game.consecutive_successes() < policy.recovery_threshold(),
            "{game_id:?}: {game:?}"
        );
    }
}

fuzz_target!(|scenario: Scenario| {
    let policy = Policy::new(
        threshold(scenario.failures_threshold),
        threshold(scenario.recovery_threshold),
    )
    .expect("thresholds are 1..=6");
    let inputs: Vec<Input> = scenario.ops.into_iter().map(input).collect();

    let mut model = NaiveModel::new(policy);
    let mut state = HealthStates::new(policy);
    let mut all_events = Vec::new();
    for input in inputs.iter().cloned() {
        let (expected, events): (Vec<HealthEvent>, Vec<HealthEvent>) = match input {
            Input::Outcome(outcome) => {
                let expected = model.probe(&outcome).into_iter().collect();
                let (next, events) = step(state, outcome);
                state = next;
                (expected, events)
            }
            Input::Prune { running } => {
                model.prune_states(&running);
                state = prune(state, running.iter().map(String::as_str));
                (Vec::new(), Vec::new())
            }
        };
        assert_eq!(events, expected);
        assert_eq!(observed(&state), model.held());
        check_invariants(&state, policy);
        all_events.extend(events);
    }

    // D5: the state survives a snapshot; replay is the fold of step/prune.
    let snapshot = serde_json::to_string(&state).expect("a state serializes");
    let restored: HealthStates = serde_json::from_str(&snapshot).expect("a snapshot parses");
    assert_eq!(restored, state, "{snapshot}");
    assert_eq!(replay(policy, inputs), (state, all_events));
});
