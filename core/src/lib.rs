//! Sans-IO, event-sourced hysteresis for active HTTP health probes.
//!
//! **Invariant: this crate does no I/O, reads no clock, starts no thread and
//! uses no randomness** (enforced by `core/clippy.toml`). Time enters as data:
//! every [`ProbeOutcome`] carries `observed_at`, and the [`HealthEvent`] it
//! causes carries the same instant as `occurred_at`. Everything here is
//! therefore deterministic: the same inputs give the same state and events,
//! in a worker, in `healthprobe replay`, or in a simulator.
//!
//! # The rules (from the reference worker, `healthprobe.go`)
//!
//! - **R1** Success is HTTP status exactly 200 ([`ProbeResult::from_status`]);
//!   anything else, or no response, is a failure.
//! - **R2** An engine is probed at its endpoint with every trailing `/`
//!   trimmed, then `/healthz` ([`probe_url`]).
//! - **R3** A failure adds one to the game's consecutive-failure counter,
//!   creating the game's state if it had none.
//! - **R4** When the counter reaches `failures_threshold` and no failure is
//!   published yet, emit `probe_failed` with the counter, the last HTTP status
//!   (0 for no response) and the last error.
//! - **R5** Further failures while published emit nothing but keep counting.
//! - **R6** A success with no state emits nothing; a success while nothing is
//!   published resets the counter.
//! - **R7** The first success while published emits `probe_recovered` with
//!   `prior_failure_count` (failures after R4 included) and resets.
//! - **R8** [`prune`] drops the state of every game not in the running list.
//! - **D1** `recovery_threshold` consecutive successes are needed to recover
//!   (1 = R7 exactly); a failure in the streak resets it and keeps counting.
//! - **D7** A game with no failure counted and nothing published holds no
//!   state at all.
//!
//! # Example
//!
//! ```
//! use healthprobe_core::{step, EventType, HealthStates, Policy, ProbeOutcome, ProbeResult, Timestamp};
//!
//! let policy = Policy::new(2, 1)?;
//! let outcome = |second: i64, result: ProbeResult| ProbeOutcome {
//!     game_id: "g1".into(),
//!     container_id: "c1".into(),
//!     observed_at: Timestamp::from_second(second).unwrap(),
//!     result,
//! };
//! let failure = || ProbeResult::Unhealthy { status: 503, error: "unexpected status 503".into() };
//!
//! let state = HealthStates::new(policy);
//! let (state, events) = step(state, outcome(0, failure()));
//! assert!(events.is_empty()); // one failure: below the threshold
//! let (state, events) = step(state, outcome(5, failure()));
//! assert_eq!(events[0].event_type(), EventType::ProbeFailed);
//! let (state, events) = step(state, outcome(10, ProbeResult::Healthy));
//! assert_eq!(events[0].event_type(), EventType::ProbeRecovered);
//! assert_eq!(events[0].occurred_at, Timestamp::from_second(10).unwrap());
//! assert!(state.is_empty()); // D7: a recovered game holds no state
//! # Ok::<(), healthprobe_core::PolicyError>(())
//! ```
#![warn(missing_docs)]

mod event;
mod input;
pub mod lease;
mod outcome;
mod policy;
mod record;
pub mod shard;
mod state;
pub mod tick;

pub use event::{EventDetails, EventId, EventType, HealthEvent, Outgoing};
pub use input::Input;
pub use outcome::{OutcomeRef, ProbeOutcome, ProbeResult};
pub use policy::{Policy, PolicyError};
pub use record::{RuntimeRecord, probe_url};
pub use state::{GameState, HealthStates, SnapshotError};

/// An instant in UTC; RFC 3339 in JSON (`2026-11-28T05:00:10.5Z`).
pub use jiff::Timestamp;

// The README's examples (step, prune, replay, the snapshot round trip) run
// as doctests, so the page crates.io shows cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Fold one probe outcome into the state; the events it causes (none or one).
///
/// Call once per outcome, in the order the outcomes were observed for each
/// game. The result depends only on `state` and `outcome`. The path that
/// emits nothing does not allocate.
pub fn step(mut state: HealthStates, outcome: ProbeOutcome) -> (HealthStates, Vec<HealthEvent>) {
    let events = match state.apply(outcome.as_ref()) {
        Some(outgoing) => vec![outgoing.event],
        None => Vec::new(),
    };
    (state, events)
}

/// Drop the state of every game not in `running` (R8).
///
/// Call at the start of each tick with the freshly listed running games, so
/// a game that stops and later re-enters starts with a clean counter.
pub fn prune<'a>(
    mut state: HealthStates,
    running: impl IntoIterator<Item = &'a str>,
) -> HealthStates {
    state.prune(running);
    state
}

/// Fold a whole input log from an empty state under `policy`.
///
/// Equal to folding [`step`] and [`prune`] by hand; the events come in input order.
pub fn replay(
    policy: Policy,
    inputs: impl IntoIterator<Item = Input>,
) -> (HealthStates, Vec<HealthEvent>) {
    let mut state = HealthStates::new(policy);
    let events = inputs
        .into_iter()
        .filter_map(|input| state.apply_input(input).map(|outgoing| outgoing.event))
        .collect();
    (state, events)
}
