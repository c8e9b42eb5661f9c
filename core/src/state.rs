//! Per-game hysteresis counters and the transitions on them.

use std::collections::HashMap;
use std::fmt;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::hash::GameIdHash;
use crate::outcome::Text;
use crate::{
    EventDetails, HealthEvent, Input, OutcomeRef, Policy, ProbeOutcome, ProbeResult, Timestamp,
};

/// The whole hysteresis state: the policy and one counter set per game that
/// has failed since it last recovered.
///
/// A game with no failure counted and nothing published holds no entry (D7).
/// Serializes as a snapshot (`{"policy":…,"games":{…}}`, games sorted by id);
/// a snapshot plus the inputs after it replays to the same state and events
/// as the whole input log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawStates")]
pub struct HealthStates {
    policy: Policy,
    games: HashMap<String, GameState, GameIdHash>,
}

/// The counters of one game that has failed since it last recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GameState {
    consecutive_failures: u64,
    failure_published: bool,
    #[serde(default)]
    consecutive_successes: u32,
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
}

impl HealthStates {
    /// An empty state under `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            games: HashMap::default(),
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

    /// Every game holding counters, in no particular order.
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

    /// Fold one outcome in place; the event it causes, if any.
    ///
    /// The in-place form of [`crate::step`]. Does not allocate unless the
    /// game enters the map (its first failure) or an event is emitted; an
    /// event takes the outcome's strings.
    pub fn apply(&mut self, outcome: ProbeOutcome) -> Option<HealthEvent> {
        let ProbeOutcome {
            game_id,
            container_id,
            observed_at,
            result,
        } = outcome;
        let failure = match result {
            ProbeResult::Healthy => None,
            ProbeResult::Unhealthy { status, error } => Some((status, Text::Owned(error))),
        };
        self.fold(
            Text::Owned(game_id),
            Text::Owned(container_id),
            observed_at,
            failure,
        )
    }

    /// Fold one outcome given by reference; the event it causes, if any.
    ///
    /// Same transitions as [`HealthStates::apply`], for callers that keep
    /// their ids (a worker's records, a simulator's fleet): the strings are
    /// copied only into an emitted event, so an outcome that emits nothing
    /// costs no allocation and no free.
    pub fn apply_ref(&mut self, outcome: OutcomeRef<'_>) -> Option<HealthEvent> {
        let failure = match outcome.result {
            ProbeResult::Healthy => None,
            ProbeResult::Unhealthy { status, error } => Some((*status, Text::Borrowed(error))),
        };
        self.fold(
            Text::Borrowed(outcome.game_id),
            Text::Borrowed(outcome.container_id),
            outcome.observed_at,
            failure,
        )
    }

    /// The transitions, shared by the owning and the borrowing forms.
    fn fold(
        &mut self,
        game_id: Text<'_>,
        container_id: Text<'_>,
        observed_at: Timestamp,
        failure: Option<(u16, Text<'_>)>,
    ) -> Option<HealthEvent> {
        let Some((status, error)) = failure else {
            // R6: a success with no state emits nothing.
            let game = self.games.get_mut(game_id.as_str())?;
            if !game.failure_published {
                // R6: reset; D7: a reset game holds no state.
                self.games.remove(game_id.as_str());
                return None;
            }
            // D1: count successes while published; R7 when the threshold is 1.
            game.consecutive_successes = game.consecutive_successes.saturating_add(1);
            if game.consecutive_successes < self.policy.recovery_threshold() {
                return None;
            }
            let prior_failure_count = game.consecutive_failures;
            self.games.remove(game_id.as_str());
            return Some(HealthEvent {
                game_id: game_id.into_string(),
                container_id: container_id.into_string(),
                occurred_at: observed_at,
                details: EventDetails::ProbeRecovered {
                    prior_failure_count,
                },
            });
        };
        let threshold = u64::from(self.policy.failures_threshold());
        let count = if let Some(game) = self.games.get_mut(game_id.as_str()) {
            // R3; D1: a failure breaks the success streak.
            game.consecutive_failures = game.consecutive_failures.saturating_add(1);
            game.consecutive_successes = 0;
            if game.failure_published || game.consecutive_failures < threshold {
                return None; // R5: keep counting, emit nothing.
            }
            game.failure_published = true;
            game.consecutive_failures
        } else {
            // R3: the first failure creates the state.
            let publish = threshold <= 1;
            let game = GameState {
                consecutive_failures: 1,
                failure_published: publish,
                consecutive_successes: 0,
                running: false,
            };
            if !publish {
                self.games.insert(game_id.into_string(), game);
                return None;
            }
            self.games.insert(game_id.as_str().to_owned(), game);
            1
        };
        // R4: the threshold is reached and nothing was published yet.
        Some(HealthEvent {
            game_id: game_id.into_string(),
            container_id: container_id.into_string(),
            occurred_at: observed_at,
            details: EventDetails::ProbeFailed {
                consecutive_failures: count,
                last_status: status,
                last_error: error.into_string(),
            },
        })
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

    /// Apply one journal input in place; the event it causes, if any.
    pub fn apply_input(&mut self, input: Input) -> Option<HealthEvent> {
        match input {
            Input::Outcome(outcome) => self.apply(outcome),
            Input::Prune { running } => {
                self.prune(running.iter().map(String::as_str));
                None
            }
        }
    }
}

impl Serialize for HealthStates {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut snapshot = serializer.serialize_struct("HealthStates", 2)?;
        snapshot.serialize_field("policy", &self.policy)?;
        snapshot.serialize_field("games", &SortedGames(&self.games))?;
        snapshot.end()
    }
}

/// Serializes the map sorted by game id, so equal states give equal snapshots.
struct SortedGames<'a>(&'a HashMap<String, GameState, GameIdHash>);

impl Serialize for SortedGames<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<(&String, &GameState)> = self.0.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut map = serializer.serialize_map(Some(entries.len()))?;
        for (game_id, game) in entries {
            map.serialize_entry(game_id, game)?;
        }
        map.end()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStates {
    policy: Policy,
    games: HashMap<String, GameState, GameIdHash>,
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
