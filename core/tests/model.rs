//! Model-based property tests: `step`, `prune` and `replay` against a naive
//! reference model transcribed line by line from the Go worker
//! (`recordFailure`, `recordSuccess`, `pruneStates`) plus D1, with D7 checked
//! as a projection of the model.
//!
//! Scripts mix bursts of outcomes for one game (so thresholds up to 6 are
//! actually crossed), single outcomes interleaving games, prunes to random
//! subsets with duplicates and unknown ids, odd ids and error texts, and
//! either increasing or arbitrary `observed_at`.

use std::collections::{BTreeMap, BTreeSet};

use healthprobe_core::{
    EventDetails, HealthEvent, HealthStates, Input, Outgoing, Policy, ProbeOutcome, ProbeResult,
    Timestamp, prune, replay, step,
};
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Union, ValueTree};
use proptest::test_runner::TestRunner;

#[path = "support/go_model.rs"]
mod go_model;

use go_model::{NaiveModel as Model, observed};

// ---------------------------------------------------------------------------
// Scripts and their generators.
// ---------------------------------------------------------------------------

/// Eight game ids, some of them near-duplicates or odd on the wire.
const GAME_IDS: [&str; 8] = ["g1", "g2", "g1 ", "G1", "ゲーム-3", "g\"4\\", "", "🦀"];

const ERRORS: [&str; 8] = [
    "",
    "unexpected status 503",
    "dial tcp 127.0.0.1:9: connect: connection refused",
    "délai dépassé ⏱",
    "quote \" backslash \\ slash /",
    "line\nbreak\ttab\r",
    "nul \u{0} separator \u{2028} bom \u{feff}",
    "🦀 <b>&amp;</b>",
];

#[derive(Debug, Clone)]
enum Op {
    Outcome(ProbeOutcome),
    Prune(Vec<String>),
    /// A snapshot restored under new settings (`HealthStates::set_policy`).
    SetPolicy(Policy),
}

#[derive(Debug, Clone)]
struct Script {
    policy: Policy,
    ops: Vec<Op>,
}

impl Script {
    /// The journal inputs; only for scripts generated without policy changes.
    fn inputs(&self) -> Vec<Input> {
        self.ops
            .iter()
            .map(|op| match op {
                Op::Outcome(outcome) => Input::Outcome(outcome.clone()),
                Op::Prune(running) => Input::Prune {
                    running: running.clone(),
                },
                Op::SetPolicy(_) => unreachable!("journal scripts have no policy change"),
            })
            .collect()
    }
}

/// One outcome before its clock is decided.
#[derive(Debug, Clone)]
struct RawOutcome {
    container_id: String,
    failure: (u16, String),
    /// Nanoseconds after the previous outcome, on an increasing clock.
    delta: i128,
    /// The instant on an arbitrary clock.
    arbitrary_at: Timestamp,
}

#[derive(Debug, Clone)]
enum RawOp {
    /// Consecutive outcomes of one game, all healthy or all unhealthy.
    Burst {
        game: usize,
        healthy: bool,
        outcomes: Vec<RawOutcome>,
    },
    Prune(Vec<RunningId>),
    SetPolicy(Policy),
}

/// An id in a prune's running list.
#[derive(Debug, Clone)]
enum RunningId {
    Game(usize),
    /// An id that never holds state.
    Ghost(u8),
}

fn policy() -> impl Strategy<Value = Policy> {
    (1u32..=6, 1u32..=6)
        .prop_map(|(failures, recoveries)| Policy::new(failures, recoveries).expect("both >= 1"))
}

/// A game of the script's active window (see [`script`]).
fn game() -> impl Strategy<Value = usize> {
    0..GAME_IDS.len()
}

/// Short arbitrary text: any scalar values, quotes and control characters included.
/// Odd fragments of text: quotes, escapes, controls, non-ASCII, non-BMP.
const FRAGMENTS: [&str; 16] = [
    "",
    "a",
    "Z9",
    " ",
    "\"",
    "\\",
    "/",
    "\n",
    "\t\r",
    "\u{0}",
    "\u{1f}\u{7f}",
    "é",
    "\u{2028}",
    "\u{feff}",
    "🦀",
    "\u{10ffff}",
];

/// Short odd text, from two fragments (cheap to generate, unlike `any::<String>()`).
fn odd_text() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&FRAGMENTS[..]),
        prop::sample::select(&FRAGMENTS[..]),
    )
        .prop_map(|(a, b)| format!("{a}{b}"))
}

fn container_id() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u8..100).prop_map(|n| format!("c{n}")),
        1 => odd_text(),
    ]
}

fn failure() -> impl Strategy<Value = (u16, String)> {
    const STATUSES: [u16; 14] = [
        503, 503, 503, 503, 0, 0, 0, 200, 201, 204, 302, 404, 500, 502,
    ];
    let status = prop_oneof![
        6 => prop::sample::select(&STATUSES[..]),
        1 => any::<u16>(),
    ];
    let error = prop_oneof![
        3 => prop::sample::select(&ERRORS[..]).prop_map(String::from),
        1 => odd_text(),
    ];
    (status, error)
}

fn arbitrary_instant() -> impl Strategy<Value = Timestamp> {
    (Timestamp::MIN.as_nanosecond()..=Timestamp::MAX.as_nanosecond())
        .prop_map(|ns| Timestamp::from_nanosecond(ns).expect("in jiff's range"))
}

fn raw_outcome() -> impl Strategy<Value = RawOutcome> {
    (
        container_id(),
        failure(),
        // Up to ten seconds, sometimes exactly zero (equal instants).
        prop_oneof![1 => Just(0i128), 4 => 1i128..10_000_000_000],
        arbitrary_instant(),
    )
        .prop_map(|(container_id, failure, delta, arbitrary_at)| RawOutcome {
            container_id,
            failure,
            delta,
            arbitrary_at,
        })
}

fn raw_op(policy_changes: bool) -> impl Strategy<Value = RawOp> {
    let burst = (
        game(),
        any::<bool>(),
        prop_oneof![
            // Single outcomes interleave the games...
            2 => prop::collection::vec(raw_outcome(), 1),
            // ... bursts cross thresholds up to 6.
            3 => prop::collection::vec(raw_outcome(), 1..=7),
        ],
    )
        .prop_map(|(game, healthy, outcomes)| RawOp::Burst {
            game,
            healthy,
            outcomes,
        })
        .boxed();
    // Ids from the pool (with duplicates) and ids that hold no state.
    let running_id = prop_oneof![
        6 => game().prop_map(RunningId::Game),
        1 => (0u8..10).prop_map(RunningId::Ghost),
    ];
    let prune = prop::collection::vec(running_id, 0..=14)
        .prop_map(RawOp::Prune)
        .boxed();
    let mut choices: Vec<(u32, BoxedStrategy<RawOp>)> = vec![(10, burst), (1, prune)];
    if policy_changes {
        choices.push((1, policy().prop_map(RawOp::SetPolicy).boxed()));
    }
    Union::new_weighted(choices)
}

/// Scripts of up to about 250 ops; `policy_changes` adds `SetPolicy` ops.
///
/// Each script plays 1 to 8 active games, a window of [`GAME_IDS`] (fewer
/// games cross more thresholds); prunes may still name the others.
fn script(policy_changes: bool) -> impl Strategy<Value = Script> {
    (
        policy(),
        (1..=GAME_IDS.len(), game()),
        any::<bool>(),
        1_700_000_000_000_000_000i128..1_900_000_000_000_000_000,
        prop::collection::vec(raw_op(policy_changes), 0..40),
    )
        .prop_map(|(policy, (active, first), increasing, start, raw)| {
            let active_id = |game: usize| GAME_IDS[(first + game % active) % GAME_IDS.len()];
            let mut elapsed = 0i128;
            let mut ops = Vec::new();
            for raw_op in raw {
                match raw_op {
                    RawOp::Burst {
                        game,
                        healthy,
                        outcomes,
                    } => {
                        let game_id = active_id(game);
                        for raw in outcomes {
                            elapsed += raw.delta;
                            let observed_at = if increasing {
                                Timestamp::from_nanosecond(start + elapsed).expect("in range")
                            } else {
                                raw.arbitrary_at
                            };
                            let result = if healthy {
                                ProbeResult::Healthy
                            } else {
                                let (status, error) = raw.failure;
                                ProbeResult::Unhealthy { status, error }
                            };
                            ops.push(Op::Outcome(ProbeOutcome {
                                game_id: game_id.to_owned(),
                                container_id: raw.container_id,
                                observed_at,
                                result,
                            }));
                        }
                    }
                    RawOp::Prune(running) => ops.push(Op::Prune(
                        running
                            .into_iter()
                            .map(|id| match id {
                                RunningId::Game(game) => GAME_IDS[game].to_owned(),
                                RunningId::Ghost(n) => format!("ghost-{n}"),
                            })
                            .collect(),
                    )),
                    RawOp::SetPolicy(policy) => ops.push(Op::SetPolicy(policy)),
                }
            }
            Script { policy, ops }
        })
}

/// Fold `inputs` into `state` with `step` and `prune`, as a worker would.
fn fold_by_hand(
    mut state: HealthStates,
    inputs: impl IntoIterator<Item = Input>,
) -> (HealthStates, Vec<HealthEvent>) {
    let mut events = Vec::new();
    for input in inputs {
        match input {
            Input::Outcome(outcome) => {
                let (next, caused) = step(state, outcome);
                assert!(caused.len() <= 1, "one outcome causes at most one event");
                state = next;
                events.extend(caused);
            }
            Input::Prune { running } => state = prune(state, running.iter().map(String::as_str)),
        }
    }
    (state, events)
}

// ---------------------------------------------------------------------------
// The properties.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// R3–R8, D1, R12: after every op, the core emits exactly the model's
    /// events (order, kind, counters, status, error, the causing outcome's
    /// container and `observed_at`) with the model's ids (the streak's
    /// first failure, the event type, the game) and holds exactly the
    /// model's counters and episodes. (`step` is `apply` without the id.)
    /// Policy changes mid-script (a snapshot restored under new settings)
    /// follow the same rules with the new thresholds.
    #[test]
    fn r3_to_r8_d1_step_and_prune_agree_with_the_go_model_after_every_op(
        script in script(true),
    ) {
        let mut model = Model::new(script.policy);
        let mut state = HealthStates::new(script.policy);
        for (index, op) in script.ops.into_iter().enumerate() {
            let (expected, events) = match op {
                Op::Outcome(outcome) => {
                    let expected: Vec<_> = model.probe_with_id(&outcome).into_iter().collect();
                    let events = state.apply(outcome.as_ref()).into_iter();
                    (expected, events.map(|out| (out.id.to_string(), out.event)).collect())
                }
                Op::Prune(running) => {
                    model.prune_states(&running);
                    state = prune(state, running.iter().map(String::as_str));
                    (Vec::new(), Vec::new())
                }
                Op::SetPolicy(policy) => {
                    model.set_policy(policy);
                    state.set_policy(policy);
                    (Vec::new(), Vec::new())
                }
            };
            prop_assert_eq!(events, expected, "events after op {}", index);
            prop_assert_eq!(observed(&state), model.held(), "state after op {}", index);
        }
    }

    /// D7: the core holds an entry for exactly the games the Go model has
    /// with failures > 0 or a published failure; a reset, recovered or
    /// pruned game holds nothing.
    #[test]
    fn d7_state_holds_exactly_the_games_with_failures_or_published(
        script in script(false),
    ) {
        let mut model = Model::new(script.policy);
        let mut state = HealthStates::new(script.policy);
        for input in script.inputs() {
            match &input {
                Input::Outcome(outcome) => {
                    model.probe(outcome);
                }
                Input::Prune { running } => model.prune_states(running),
            }
            state.apply_input(input);
            let held: BTreeSet<&str> = state.games().map(|(game_id, _)| game_id).collect();
            let expected: BTreeSet<&str> = model.games()
                .iter()
                .filter(|(_, game)| game.holds_state())
                .map(|(game_id, _)| game_id.as_str())
                .collect();
            prop_assert_eq!(&held, &expected);
            prop_assert_eq!(state.len(), expected.len());
            prop_assert_eq!(state.is_empty(), expected.is_empty());
            for (game_id, zeroed) in model.games() {
                if !zeroed.holds_state() {
                    prop_assert!(state.game(game_id).is_none(), "{:?} holds a trivial entry", game_id);
                }
            }
        }
    }

    /// R4, R5, D1 bounds under a fixed policy: published ⇔ failures ≥
    /// failures_threshold; a success streak exists only while published and
    /// stays below recovery_threshold.
    #[test]
    fn r4_d1_counters_stay_within_the_policy(script in script(false)) {
        let failures_threshold = u64::from(script.policy.failures_threshold());
        let recovery_threshold = script.policy.recovery_threshold();
        let mut state = HealthStates::new(script.policy);
        for input in script.inputs() {
            state.apply_input(input);
            for (game_id, game) in state.games() {
                prop_assert!(game.consecutive_failures() > 0 || game.failure_published(), "{:?}", game_id);
                prop_assert_eq!(
                    game.failure_published(),
                    game.consecutive_failures() >= failures_threshold,
                    "{:?}: {:?}", game_id, game
                );
                prop_assert!(game.consecutive_successes() == 0 || game.failure_published(), "{:?}: {:?}", game_id, game);
                prop_assert!(game.consecutive_successes() < recovery_threshold, "{:?}: {:?}", game_id, game);
            }
        }
    }

    /// D5: replay(prefix) → JSON snapshot → parse back → continue with the
    /// suffix gives the same state, events and snapshot as replay(whole).
    #[test]
    fn d5_snapshot_of_a_prefix_plus_the_suffix_replays_like_the_whole_log(
        script in script(false),
        split in any::<prop::sample::Index>(),
    ) {
        let inputs = script.inputs();
        let split = split.index(inputs.len() + 1);
        let (whole_state, whole_events) = replay(script.policy, inputs.clone());

        let (prefix_state, mut events) = replay(script.policy, inputs[..split].iter().cloned());
        let snapshot = serde_json::to_string(&prefix_state).expect("a state serializes");
        let mut restored: HealthStates = serde_json::from_str(&snapshot)
            .unwrap_or_else(|err| panic!("{snapshot}: {err}"));
        prop_assert_eq!(&restored, &prefix_state, "{}", snapshot);
        events.extend(inputs[split..].iter().cloned().filter_map(|input| restored.apply_input(input).map(|out| out.event)));

        prop_assert_eq!(&restored, &whole_state);
        prop_assert_eq!(events, whole_events);
        prop_assert_eq!(
            serde_json::to_string(&restored).expect("serializes"),
            serde_json::to_string(&whole_state).expect("serializes")
        );
    }

    /// R4, R7, R8: per game, events alternate probe_failed, probe_recovered,
    /// probe_failed, ... A prune that drops the game resets the alternation
    /// (a re-entering game may fail again without having recovered). Under a
    /// fixed policy probe_failed carries exactly failures_threshold and
    /// probe_recovered at least the failed count (R5).
    #[test]
    fn r4_r7_r8_events_alternate_per_game_and_a_prune_resets_the_alternation(
        script in script(false),
    ) {
        let failures_threshold = u64::from(script.policy.failures_threshold());
        // Per game: the failed count of its pending probe_failed, if any.
        let mut pending: BTreeMap<String, u64> = BTreeMap::new();
        let mut state = HealthStates::new(script.policy);
        for input in script.inputs() {
            if let Input::Prune { running } = &input {
                pending.retain(|game_id, _| running.contains(game_id));
            }
            let Some(Outgoing { event, .. }) = state.apply_input(input) else { continue };
            match event.details {
                EventDetails::ProbeFailed { consecutive_failures, .. } => {
                    prop_assert_eq!(consecutive_failures, failures_threshold);
                    let previous = pending.insert(event.game_id.clone(), consecutive_failures);
                    prop_assert!(previous.is_none(), "{:?} failed twice without recovering", event.game_id);
                }
                EventDetails::ProbeRecovered { prior_failure_count } => {
                    let failed = pending.remove(&event.game_id);
                    prop_assert!(failed.is_some(), "{:?} recovered without a failure", event.game_id);
                    prop_assert!(prior_failure_count >= failed.unwrap_or_default());
                }
            }
        }
    }

    /// `replay` equals folding `step` and `prune` by hand, state and events.
    #[test]
    fn replay_equals_folding_step_and_prune_by_hand(script in script(false)) {
        let inputs = script.inputs();
        let by_hand = fold_by_hand(HealthStates::new(script.policy), inputs.clone());
        prop_assert_eq!(replay(script.policy, inputs), by_hand);
    }
}

proptest! {
    /// D5: a snapshot's game entry parses exactly when `step` can reach it
    /// under some sequence of policies: at least one failure counted, and a
    /// success streak only while a failure is published. Anything else would
    /// let a bad state file emit events the Go worker never could (say
    /// `probe_recovered` with `prior_failure_count` 0).
    #[test]
    fn d5_snapshot_accepts_exactly_the_game_entries_step_can_reach(
        consecutive_failures in 0u64..4,
        failure_published in any::<bool>(),
        consecutive_successes in 0u32..4,
        policy in policy(),
    ) {
        let game = format!(
            r#"{{"consecutive_failures":{consecutive_failures},"failure_published":{failure_published},"consecutive_successes":{consecutive_successes}}}"#
        );
        let snapshot = format!(
            r#"{{"policy":{},"games":{{"g1":{game}}}}}"#,
            serde_json::to_string(&policy).expect("serializes")
        );
        let reachable = consecutive_failures > 0 && (consecutive_successes == 0 || failure_published);
        match serde_json::from_str::<HealthStates>(&snapshot) {
            Ok(state) => {
                prop_assert!(reachable, "accepted {}", snapshot);
                let restored = state.game("g1").expect("holds g1");
                prop_assert_eq!(restored.consecutive_failures(), consecutive_failures);
                prop_assert_eq!(restored.failure_published(), failure_published);
                prop_assert_eq!(restored.consecutive_successes(), consecutive_successes);
            }
            Err(err) => {
                prop_assert!(!reachable, "rejected {}: {}", snapshot, err);
                prop_assert!(err.to_string().contains("game \"g1\""), "{}", err);
            }
        }
    }
}

/// The generator is meant to exercise every rule above; this pins that it
/// does, so the properties cannot pass vacuously after a generator change.
#[test]
fn generator_reaches_every_rule_the_properties_check() {
    #[derive(Debug, Default)]
    struct Seen {
        failed: u32,
        recovered: u32,
        failed_above_threshold_one: u32,
        recovered_after_streak: u32,
        recovered_with_extra_failures: u32,
        streak_broken_by_failure: u32,
        published_game_pruned: u32,
        failed_again_after_prune: u32,
        odd_game_id_event: u32,
        backwards_clock: u32,
        policy_changes: u32,
    }
    let mut seen = Seen::default();
    let mut runner = TestRunner::deterministic();
    let strategy = script(true);
    for _ in 0..300 {
        let script = strategy.new_tree(&mut runner).expect("generates").current();
        let mut model = Model::new(script.policy);
        let mut last_at: Option<Timestamp> = None;
        let mut pruned_while_published = BTreeSet::new();
        for op in &script.ops {
            match op {
                Op::Outcome(outcome) => {
                    if last_at.is_some_and(|last| outcome.observed_at < last) {
                        seen.backwards_clock += 1;
                    }
                    last_at = Some(outcome.observed_at);
                    let before = model.games().get(&outcome.game_id).copied();
                    if !outcome.result.is_healthy()
                        && before.is_some_and(|game| game.consecutive_successes > 0)
                    {
                        seen.streak_broken_by_failure += 1;
                    }
                    let threshold = model.failures_threshold();
                    let recovery = model.recovery_threshold();
                    let Some(event) = model.probe(outcome) else {
                        continue;
                    };
                    if !matches!(event.game_id.as_str(), "g1" | "g2") {
                        seen.odd_game_id_event += 1;
                    }
                    match event.details {
                        EventDetails::ProbeFailed { .. } => {
                            seen.failed += 1;
                            if threshold > 1 {
                                seen.failed_above_threshold_one += 1;
                            }
                            if pruned_while_published.remove(&event.game_id) {
                                seen.failed_again_after_prune += 1;
                            }
                        }
                        EventDetails::ProbeRecovered {
                            prior_failure_count,
                        } => {
                            seen.recovered += 1;
                            if recovery > 1 {
                                seen.recovered_after_streak += 1;
                            }
                            if prior_failure_count > threshold {
                                seen.recovered_with_extra_failures += 1;
                            }
                        }
                    }
                }
                Op::Prune(running) => {
                    for (game_id, game) in model.games() {
                        if game.failure_published && !running.contains(game_id) {
                            seen.published_game_pruned += 1;
                            pruned_while_published.insert(game_id.clone());
                        }
                    }
                    model.prune_states(running);
                }
                Op::SetPolicy(policy) => {
                    seen.policy_changes += 1;
                    model.set_policy(*policy);
                }
            }
        }
    }
    let Seen {
        failed,
        recovered,
        failed_above_threshold_one,
        recovered_after_streak,
        recovered_with_extra_failures,
        streak_broken_by_failure,
        published_game_pruned,
        failed_again_after_prune,
        odd_game_id_event,
        backwards_clock,
        policy_changes,
    } = seen;
    for (what, count) in [
        ("probe_failed", failed),
        ("probe_recovered", recovered),
        (
            "probe_failed with failures_threshold > 1",
            failed_above_threshold_one,
        ),
        (
            "probe_recovered with recovery_threshold > 1",
            recovered_after_streak,
        ),
        (
            "probe_recovered counting failures after R4",
            recovered_with_extra_failures,
        ),
        ("a D1 streak broken by a failure", streak_broken_by_failure),
        ("a published game pruned", published_game_pruned),
        ("probe_failed again after a prune", failed_again_after_prune),
        ("an event for an odd game id", odd_game_id_event),
        ("observed_at going backwards", backwards_clock),
        ("a policy change", policy_changes),
    ] {
        assert!(
            count >= 20,
            "the generator reached {what} only {count} times"
        );
    }
}
