//! Property-testing your own alerting policy against healthprobe-core, with proptest.
//!
//! Say your runtime manager pages someone after `F` consecutive failed
//! probes of a game and clears the page after `R` consecutive successes,
//! forgetting games that stop running. Write down what you expect as a
//! plain model ([`Expectation`], a few lines anyone can read), and let
//! proptest check the core against it on random histories: random
//! thresholds, interleaved games, odd statuses, prunes, and a snapshot
//! taken and restored at a random point. A failure prints the smallest
//! history that breaks it.
//!
//! `--planted-bug` checks a wrong expectation (a page clears on the first
//! success, whatever `R` is), to show what a failure looks like: that run
//! must fail. Run with `cargo run -p healthprobe-examples --bin policy-proptest`.

use std::collections::HashMap;
use std::process::ExitCode;

use healthprobe_core::{
    EventDetails, HealthEvent, HealthStates, Policy, ProbeOutcome, ProbeResult, Timestamp, prune,
    step,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};

/// How many games a history interleaves.
const GAMES: usize = 3;

/// One thing that happens to the fleet.
#[derive(Debug, Clone)]
enum Happening {
    /// A probe of game `game`: healthy, or failed with `status` (0: no response).
    Probe {
        game: usize,
        healthy: bool,
        status: u16,
    },
    /// A tick's listing: the games still running.
    Listing { running: [bool; GAMES] },
}

/// A random history under a random policy.
#[derive(Debug, Clone)]
struct History {
    failures_threshold: u32,
    recovery_threshold: u32,
    happenings: Vec<Happening>,
    /// Where the state is saved and restored (a restart).
    restart_at: Index,
}

fn histories() -> impl Strategy<Value = History> {
    let happening = prop_oneof![
        8 => (0..GAMES, any::<bool>(), prop_oneof![Just(0u16), Just(503), 100..600u16])
            .prop_map(|(game, healthy, status)| Happening::Probe { game, healthy, status }),
        1 => any::<[bool; GAMES]>().prop_map(|running| Happening::Listing { running }),
    ];
    (
        1..=4u32,
        1..=3u32,
        prop::collection::vec(happening, 0..80),
        any::<Index>(),
    )
        .prop_map(
            |(failures_threshold, recovery_threshold, happenings, restart_at)| History {
                failures_threshold,
                recovery_threshold,
                happenings,
                restart_at,
            },
        )
}

/// What we expect the core to publish, as our policy's spec says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    Page { failures: u64, status: u16 },
    Clear { failures: u64 },
}

/// Our policy, written from its spec, one game at a time.
#[derive(Debug, Default)]
struct Expectation {
    failures_threshold: u64,
    recovery_threshold: u32,
    /// Per game: failures in a row, paged, successes in a row since the page.
    games: HashMap<usize, (u64, bool, u32)>,
    planted_bug: bool,
}

impl Expectation {
    fn probe(&mut self, game: usize, healthy: bool, status: u16) -> Option<Expected> {
        let (failures, paged, successes) = self.games.entry(game).or_default();
        if !healthy {
            *failures += 1;
            *successes = 0;
            if !*paged && *failures >= self.failures_threshold {
                *paged = true;
                return Some(Expected::Page {
                    failures: *failures,
                    status,
                });
            }
            return None;
        }
        *successes += 1;
        let needed = if self.planted_bug {
            1
        } else {
            self.recovery_threshold
        };
        let cleared = (*paged && *successes >= needed).then_some(Expected::Clear {
            failures: *failures,
        });
        if !*paged || cleared.is_some() {
            self.games.remove(&game); // a healthy game is forgotten
        }
        cleared
    }

    fn listing(&mut self, running: [bool; GAMES]) {
        self.games.retain(|game, _| running[*game]);
    }
}

/// The event the core emitted, as our model spells it.
fn as_expected(event: &HealthEvent) -> Expected {
    match event.details {
        EventDetails::ProbeFailed {
            consecutive_failures,
            last_status,
            ..
        } => Expected::Page {
            failures: consecutive_failures,
            status: last_status,
        },
        EventDetails::ProbeRecovered {
            prior_failure_count,
        } => Expected::Clear {
            failures: prior_failure_count,
        },
    }
}

fn check(history: &History, planted_bug: bool) -> Result<(), TestCaseError> {
    let policy = Policy::new(history.failures_threshold, history.recovery_threshold)
        .map_err(|err| TestCaseError::fail(err.to_string()))?;
    let mut state = HealthStates::new(policy);
    let mut model = Expectation {
        failures_threshold: u64::from(history.failures_threshold),
        recovery_threshold: history.recovery_threshold,
        planted_bug,
        ..Expectation::default()
    };
    let restart_at = history.restart_at.index(history.happenings.len() + 1);
    for (i, happening) in history.happenings.iter().enumerate() {
        if i == restart_at {
            // A restart: the snapshot must carry everything the fold needs.
            let snapshot =
                serde_json::to_string(&state).map_err(|e| TestCaseError::fail(e.to_string()))?;
            state =
                serde_json::from_str(&snapshot).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        match *happening {
            Happening::Probe {
                game,
                healthy,
                status,
            } => {
                let observed_at =
                    Timestamp::from_second(1_800_000_000 + i as i64).expect("in range");
                let result = if healthy {
                    ProbeResult::Healthy
                } else {
                    ProbeResult::Unhealthy {
                        status,
                        error: format!("status {status}"),
                    }
                };
                let outcome = ProbeOutcome {
                    game_id: format!("g{game}"),
                    container_id: "c".into(),
                    observed_at,
                    result,
                };
                let (next, events) = step(state, outcome);
                state = next;
                prop_assert!(events.len() <= 1, "one outcome, at most one event");
                if let Some(event) = events.first() {
                    prop_assert_eq!(&event.game_id, &format!("g{game}"));
                    prop_assert_eq!(event.occurred_at, observed_at);
                }
                let expected = model.probe(game, healthy, status);
                prop_assert_eq!(
                    events.first().map(as_expected),
                    expected,
                    "after happening {}",
                    i
                );
            }
            Happening::Listing { running } => {
                let ids: Vec<String> = (0..GAMES)
                    .filter(|g| running[*g])
                    .map(|g| format!("g{g}"))
                    .collect();
                state = prune(state, ids.iter().map(String::as_str));
                model.listing(running);
            }
        }
        // Only games with something counted hold state, in the core as in the model.
        prop_assert_eq!(
            state.len(),
            model.games.len(),
            "games tracked after happening {}",
            i
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let planted_bug = std::env::args().any(|arg| arg == "--planted-bug");
    let mut config = Config::with_cases(1_000);
    config.failure_persistence = None; // a fixed seed instead: every run checks the same cases
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    match runner.run(&histories(), |history| check(&history, planted_bug)) {
        Ok(()) => {
            println!(
                "policy holds: 1000 random histories, healthprobe-core did what the model expects"
            );
            ExitCode::SUCCESS
        }
        Err(TestError::Fail(reason, smallest)) => {
            eprintln!("policy broken: {reason}\nsmallest failing history: {smallest:#?}");
            ExitCode::FAILURE
        }
        Err(TestError::Abort(reason)) => {
            eprintln!("proptest gave up: {reason}");
            ExitCode::FAILURE
        }
    }
}
