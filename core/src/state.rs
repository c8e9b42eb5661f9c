//! Per-game hysteresis counters and the transitions on them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{
    EventDetails, HealthEvent, Input, OutcomeRef, Outgoing, Policy, ProbeResult, Timestamp,
};

/// The whole hysteresis state: the policy and one counter set per game that
/// has failed since it last recovered.
///
/// A game with no failure counted and nothing published holds no entry (D7).
/// Serializes as a snapshot (`{"policy":…,"games":{…}}`, games sorted by id);
/// a snapshot plus the inputs after it replays to the same state and events
/// as the whole input log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawStates")]
pub struct HealthStates {
    policy: Policy,
    games: BTreeMap<String, GameState>,
}

/// The counters of one game that has failed since it last recovered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GameState {
    consecutive_failures: u64,
    failure_published: bool,
    #[serde(default)]
    consecutive_successes: u32,
    /// The `observed_at` of the streak's first failure; the Unix epoch in a
    /// snapshot written before episodes were kept.
    #[serde(default)]
    episode: Timestamp,
    /// Scratch mark used only inside [`HealthStates::prune`]; always false at rest.
    #[serde(skip)]
    running: bool,
}

impl GameState {
    /// Failures since the game last recovered or succeeded unpublished (R3, R5).
    pub fn consecutive_failures(&self) -> u64 {
        self.consecutive_failures
    }

    /// Whether `probe_failed` is published and `probe_recovered` is not yet.
    pub fn failure_published(&self) -> bool {
        self.failure_published
    }

    /// Successes counted towards `recovery_threshold` while a failure is published (D1).
    pub fn consecutive_successes(&self) -> u32 {
        self.consecutive_successes
    }

    /// When the failure streak began: the `observed_at` of its first
    /// failure (R3), the episode in the ids of its events ([`crate::EventId`]).
    pub fn episode(&self) -> Timestamp {
        self.episode
    }
}

impl HealthStates {
    /// An empty state under `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            games: BTreeMap::new(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Replace the policy and keep every counter, for example when a worker
    /// restores a snapshot under new settings. A game already past a raised
    /// threshold publishes on its next failure; a published failure stays
    /// published until it recovers.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// The counters of `game_id`, if it holds any.
    pub fn game(&self, game_id: &str) -> Option<&GameState> {
        self.games.get(game_id)
    }

    /// Every game holding counters, by game id.
    pub fn games(&self) -> impl ExactSizeIterator<Item = (&str, &GameState)> {
        self.games.iter().map(|(id, game)| (id.as_str(), game))
    }

    /// How many games hold counters.
    pub fn len(&self) -> usize {
        self.games.len()
    }

    /// Whether no game holds counters.
    pub fn is_empty(&self) -> bool {
        self.games.is_empty()
    }

    /// Fold one outcome in place; the event it causes, if any, with its id.
    ///
    /// The in-place form of [`crate::step`], on a borrowed outcome: the
    /// strings are copied only into an emitted event, so an outcome that
    /// emits nothing allocates nothing (a caller such as a worker keeps its
    /// records' ids).
    pub fn apply(&mut self, outcome: OutcomeRef<'_>) -> Option<Outgoing> {
        let event = |details| HealthEvent {
            game_id: outcome.game_id.to_owned(),
            container_id: outcome.container_id.to_owned(),
            occurred_at: outcome.observed_at,
            details,
        };
        let ProbeResult::Unhealthy { status, error } = outcome.result else {
            // R6: a success with no state emits nothing.
            let game = self.games.get_mut(outcome.game_id)?;
            if !game.failure_published {
                // R6: reset; D7: a reset game holds no state.
                self.games.remove(outcome.game_id);
                return None;
            }
            // D1: count successes while published; R7 when the threshold is 1.
            game.consecutive_successes = game.consecutive_successes.saturating_add(1);
            if game.consecutive_successes < self.policy.recovery_threshold() {
                return None;
            }
            let (prior_failure_count, episode) = (game.consecutive_failures, game.episode);
            self.games.remove(outcome.game_id);
            let details = EventDetails::ProbeRecovered {
                prior_failure_count,
            };
            return Some(Outgoing::new(episode, event(details)));
        };
        let threshold = u64::from(self.policy.failures_threshold());
        if !self.games.contains_key(outcome.game_id) {
            // R3: the first failure creates the state and begins the episode.
            let game = GameState {
                episode: outcome.observed_at,
                ..GameState::default()
            };
            self.games.insert(outcome.game_id.to_owned(), game);
        }
        let game = self.games.get_mut(outcome.game_id)?;
        // R3; D1: a failure breaks the success streak.
        game.consecutive_failures = game.consecutive_failures.saturating_add(1);
        game.consecutive_successes = 0;
        if game.failure_published || game.consecutive_failures < threshold {
            return None; // R5: keep counting, emit nothing.
        }
        // R4: the threshold is reached and nothing was published yet.
        game.failure_published = true;
        let details = EventDetails::ProbeFailed {
            consecutive_failures: game.consecutive_failures,
            last_status: *status,
            last_error: error.clone(),
        };
        Some(Outgoing::new(game.episode, event(details)))
    }

    /// Drop the counters of every game not in `running`, in place (R8).
    ///
    /// The in-place form of [`crate::prune`]. Ids in `running` that hold no
    /// counters are ignored; an id listed twice counts once.
    pub fn prune<'a>(&mut self, running: impl IntoIterator<Item = &'a str>) {
        if self.games.is_empty() {
            return;
        }
        for game_id in running {
            if let Some(game) = self.games.get_mut(game_id) {
                game.running = true;
            }
        }
        self.games
            .retain(|_, game| std::mem::replace(&mut game.running, false));
    }

    /// Keep only the games whose id `keep` accepts (a shard's games leave
    /// memory when the shard is dropped, failover).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.games.retain(|game_id, _| keep(game_id));
    }

    /// The games whose id `keep` accepts, under the same policy (one
    /// shard's snapshot, failover).
    pub fn filtered(&self, mut keep: impl FnMut(&str) -> bool) -> Self {
        let games = self.games.iter().filter(|(game_id, _)| keep(game_id));
        Self {
            policy: self.policy,
            games: games.map(|(id, game)| (id.clone(), *game)).collect(),
        }
    }

    /// Take every game of `other` (a loaded shard's), replacing any with the
    /// same id; the policy stays this one's.
    pub fn absorb(&mut self, other: Self) {
        self.games.extend(other.games);
    }

    /// Apply one journal input in place; the event it causes, if any, with its id.
    pub fn apply_input(&mut self, input: Input) -> Option<Outgoing> {
        match input {
            Input::Outcome(outcome) => self.apply(outcome.as_ref()),
            Input::Prune { running } => {
                self.prune(running.iter().map(String::as_str));
                None
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStates {
    policy: Policy,
    games: BTreeMap<String, GameState>,
}

/// A snapshot's game entry cannot have come from `step`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotError {
    game_id: String,
    problem: &'static str,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "game {:?}: {}", self.game_id, self.problem)
    }
}

impl std::error::Error for SnapshotError {}

impl TryFrom<RawStates> for HealthStates {
    type Error = SnapshotError;

    fn try_from(raw: RawStates) -> Result<Self, Self::Error> {
        for (game_id, game) in &raw.games {
            let problem = if game.consecutive_failures == 0 && !game.failure_published {
                "no failure counted and nothing published: such a game holds no state"
            } else if game.consecutive_successes > 0 && !game.failure_published {
                "consecutive_successes without a published failure"
            } else if game.consecutive_failures == 0 {
                "a published failure with no failure counted"
            } else {
                continue;
            };
            return Err(SnapshotError {
                game_id: game_id.clone(),
                problem,
            });
        }
        Ok(Self {
            policy: raw.policy,
            games: raw.games,
        })
    }
}
