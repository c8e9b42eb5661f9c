//! A naive model of the Go worker's hysteresis, transcribed from
//! `recordFailure`, `recordSuccess` and `pruneStates` in
//! `reference/healthprobe.go`, plus D1's success streak; D7 is the projection
//! [`NaiveModel::held`]. Shared by the property tests (`core/tests/model.rs`)
//! and the fuzz targets (`fuzz/src/lib.rs`), which include this file by path;
//! the core itself never depends on it.

use std::collections::{BTreeMap, BTreeSet};

use healthprobe_core::{
    EventDetails, HealthEvent, HealthStates, Policy, ProbeOutcome, ProbeResult, Timestamp,
};

/// Go's `probeState`, plus D1's success streak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelGame {
    /// `consecutiveFailures`.
    pub consecutive_failures: u64,
    /// `failurePublished`.
    pub failure_published: bool,
    /// D1: successes counted while a failure is published.
    pub consecutive_successes: u32,
    /// The `observed_at` of the failure that took the counter from 0 to 1:
    /// the episode in the ids of the streak's events.
    pub episode: Timestamp,
}

impl ModelGame {
    /// D7: whether the core must hold an entry for this game.
    pub fn holds_state(&self) -> bool {
        self.consecutive_failures > 0 || self.failure_published
    }
}

/// Go's `Worker.states` under a policy. Like Go, a reset game keeps its
/// zeroed entry; [`NaiveModel::held`] is what the core must hold (D7).
#[derive(Debug, Clone)]
pub struct NaiveModel {
    failures_threshold: u64,
    recovery_threshold: u32,
    states: BTreeMap<String, ModelGame>,
}

impl NaiveModel {
    /// An empty model under `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            failures_threshold: u64::from(policy.failures_threshold()),
            recovery_threshold: policy.recovery_threshold(),
            states: BTreeMap::new(),
        }
    }

    /// A snapshot restored under new settings (`HealthStates::set_policy`):
    /// every counter is kept, only the thresholds change.
    pub fn set_policy(&mut self, policy: Policy) {
        self.failures_threshold = u64::from(policy.failures_threshold());
        self.recovery_threshold = policy.recovery_threshold();
    }

    /// `recordSuccess` or `recordFailure`, by the outcome's result.
    pub fn probe(&mut self, outcome: &ProbeOutcome) -> Option<HealthEvent> {
        match &outcome.result {
            ProbeResult::Healthy => self.record_success(outcome),
            ProbeResult::Unhealthy { status, error } => {
                self.record_failure(outcome, *status, error)
            }
        }
    }

    /// [`NaiveModel::probe`] with the event's id,
    /// `{episode_unix_ns}:{event_type}:{game_id}`, spelled out here rather
    /// than built by the core.
    pub fn probe_with_id(&mut self, outcome: &ProbeOutcome) -> Option<(String, HealthEvent)> {
        let episode = match self.states.get(&outcome.game_id) {
            Some(game) if game.consecutive_failures > 0 => game.episode,
            _ => outcome.observed_at,
        };
        let event = self.probe(outcome)?;
        let ns = episode.as_nanosecond();
        let id = format!("{ns}:{}:{}", event.event_type(), event.game_id);
        Some((id, event))
    }

    /// `pruneStates`.
    pub fn prune_states(&mut self, running: &[String]) {
        if self.states.is_empty() {
            return;
        }
        let running: BTreeSet<&str> = running.iter().map(String::as_str).collect();
        self.states
            .retain(|game_id, _| running.contains(game_id.as_str()));
    }

    /// Every game's entry, the zeroed ones Go keeps included.
    pub fn games(&self) -> &BTreeMap<String, ModelGame> {
        &self.states
    }

    /// Consecutive failures that publish `probe_failed`.
    pub fn failures_threshold(&self) -> u64 {
        self.failures_threshold
    }

    /// Consecutive successes that publish `probe_recovered`.
    pub fn recovery_threshold(&self) -> u32 {
        self.recovery_threshold
    }

    /// The games the core must hold (D7), with their counters.
    pub fn held(&self) -> BTreeMap<String, ModelGame> {
        self.states
            .iter()
            .filter(|(_, game)| game.holds_state())
            .map(|(game_id, game)| (game_id.clone(), *game))
            .collect()
    }

    fn record_success(&mut self, outcome: &ProbeOutcome) -> Option<HealthEvent> {
        let state = self.states.get_mut(&outcome.game_id)?;
        if !state.failure_published {
            state.consecutive_failures = 0;
            return None;
        }
        state.consecutive_successes += 1;
        if state.consecutive_successes < self.recovery_threshold {
            return None;
        }
        let prior_failure_count = state.consecutive_failures;
        *state = ModelGame::default();
        Some(HealthEvent {
            game_id: outcome.game_id.clone(),
            container_id: outcome.container_id.clone(),
            occurred_at: outcome.observed_at,
            details: EventDetails::ProbeRecovered {
                prior_failure_count,
            },
        })
    }

    fn record_failure(
        &mut self,
        outcome: &ProbeOutcome,
        last_status: u16,
        last_error: &str,
    ) -> Option<HealthEvent> {
        let state = self.states.entry(outcome.game_id.clone()).or_default();
        if state.consecutive_failures == 0 {
            state.episode = outcome.observed_at;
        }
        state.consecutive_failures += 1;
        state.consecutive_successes = 0;
        if state.failure_published || state.consecutive_failures < self.failures_threshold {
            return None;
        }
        state.failure_published = true;
        Some(HealthEvent {
            game_id: outcome.game_id.clone(),
            container_id: outcome.container_id.clone(),
            occurred_at: outcome.observed_at,
            details: EventDetails::ProbeFailed {
                consecutive_failures: state.consecutive_failures,
                last_status,
                last_error: last_error.to_owned(),
            },
        })
    }
}

/// The core's state in the model's terms.
pub fn observed(state: &HealthStates) -> BTreeMap<String, ModelGame> {
    state
        .games()
        .map(|(game_id, game)| {
            let game = ModelGame {
                consecutive_failures: game.consecutive_failures(),
                failure_published: game.failure_published(),
                consecutive_successes: game.consecutive_successes(),
                episode: game.episode(),
            };
            (game_id.to_owned(), game)
        })
        .collect()
}
