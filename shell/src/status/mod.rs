//! What an operator looks at: the live status of a run, as JSON
//! (`GET /status`) and as one HTML page (`GET /`, [`page`]).
//!
//! The view is a [`StatusSnapshot`] taken at the end of each tick from the
//! state the tick machine owns: every counter, whether `probe_failed` is
//! published, and the events still pending are read from
//! [`TickMachine`] as it stands; nothing here counts failures or decides a
//! transition. Beside it, the [`StatusBook`] keeps what the machine does not
//! need and an operator does: each such game's last [`RECENT_OUTCOMES`]
//! outcomes (time, status, error, latency), its container and endpoint, and
//! since when it has been in its current [`Health`] (the first outcome this
//! run saw it in that health; `null` for a game restored from a state file
//! and unchanged since).
//!
//! Bounded (D7): the book holds a game only while the machine holds its
//! counters or a failure is among its last outcomes, so a fleet of healthy
//! games costs nothing per game and a healthy outcome of such a game
//! allocates nothing. A response holds at most [`MAX_LIMIT`] games.
//!
//! The worker owns the book ([`crate::Ports::with_status`]); the book hands
//! each snapshot to a shared [`StatusBoard`], which the HTTP server reads.
//! Nothing here changes the run: every endpoint is read-only.

pub mod page;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use healthprobe_core::tick::{TickMachine, TickReport};
use healthprobe_core::{EventType, GameState, HealthStates, ProbeResult, RuntimeRecord, Timestamp};
use serde::Serialize;

use crate::config::{Runtime, WorkerConfig};
use crate::driver::ports::Probed;

/// Outcomes kept per game shown: the bar of recent outcomes.
pub const RECENT_OUTCOMES: usize = 10;

/// Games in a response when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;

/// Most games in one response (`limit` above it is refused).
pub const MAX_LIMIT: usize = 1000;

/// Where a game stands between the thresholds, as the machine's counters say.
///
/// Ordered as the page lists them: failing first, healthy last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// `probe_failed` is emitted and no success counted since.
    Failing,
    /// `probe_failed` is emitted and successes are counted towards
    /// `recovery_threshold` (D1): about to recover.
    Recovering,
    /// Failures are counted, fewer than `failures_threshold`, nothing
    /// emitted: about to fail if the next probes fail too.
    Suspect,
    /// No counters (D7); shown only while a failure is among its recent outcomes.
    Healthy,
}

impl Health {
    /// Every health, in page order.
    pub const ALL: [Self; 4] = [
        Self::Failing,
        Self::Recovering,
        Self::Suspect,
        Self::Healthy,
    ];

    /// The health the machine's counters of a game give (`None`: no counters).
    pub fn of(state: Option<&GameState>) -> Self {
        match state {
            None => Self::Healthy,
            Some(game) if !game.failure_published() => Self::Suspect,
            Some(game) if game.consecutive_successes() > 0 => Self::Recovering,
            Some(_) => Self::Failing,
        }
    }

    /// The name used in JSON, in `?state=` and on the page.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failing => "failing",
            Self::Recovering => "recovering",
            Self::Suspect => "suspect",
            Self::Healthy => "healthy",
        }
    }
}

/// One probe's outcome, as the status shows it.
///
/// Its texts are shared (`Arc<str>`): a snapshot copies a game's outcomes
/// without copying their texts, and a game failing the same way again
/// shares its last error text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecentOutcome {
    /// When the probe finished (its `observed_at`).
    pub observed_at: Timestamp,
    /// The HTTP status; 0 when there was no response.
    pub status: u16,
    /// What went wrong; `None` (`""` in JSON) for a success.
    #[serde(serialize_with = "error_text")]
    pub error: Option<Arc<str>>,
    /// The metric's class of the outcome (`ok`, `bad_status`, `timeout`, …).
    pub result: &'static str,
    /// How long the probe took, in milliseconds.
    pub latency_ms: f64,
}

impl RecentOutcome {
    /// Whether the probe succeeded (status 200, R1).
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// The outcome of `probed`, its error text shared with `last` when equal.
    fn of(probed: &Probed, last: Option<&RecentOutcome>) -> Self {
        let (status, error) = match &probed.result {
            ProbeResult::Healthy => (200, None),
            ProbeResult::Unhealthy { status, error } => {
                let text = match last.and_then(|last| last.error.as_ref()) {
                    Some(same) if **same == **error => Arc::clone(same),
                    _ => Arc::from(error.as_str()),
                };
                (*status, Some(text))
            }
        };
        Self {
            observed_at: probed.observed_at,
            status,
            error,
            result: probed.class.as_str(),
            latency_ms: probed.latency.as_secs_f64() * 1e3,
        }
    }
}

/// One game holding counters or with a failure among its recent outcomes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GameStatus {
    /// The game.
    pub game_id: Arc<str>,
    /// The container its record named at its last probe (empty before one).
    pub container_id: Arc<str>,
    /// The endpoint probed last (`None` before a probe this run).
    pub engine_endpoint: Option<Arc<str>>,
    /// Where it stands.
    pub state: Health,
    /// Since when it has stood there (`None`: since before this run).
    pub since: Option<Timestamp>,
    /// Consecutive failures counted by the machine (R3, R5).
    pub consecutive_failures: u64,
    /// The policy's `failures_threshold`.
    pub failures_threshold: u32,
    /// Consecutive successes counted towards recovery (D1).
    pub consecutive_successes: u32,
    /// The policy's `recovery_threshold`.
    pub recovery_threshold: u32,
    /// Whether `probe_failed` was emitted and `probe_recovered` not yet.
    pub failure_published: bool,
    /// This game's events not yet delivered, oldest first (D4).
    pub pending_events: Vec<&'static str>,
    /// Its last outcomes, oldest first (at most [`RECENT_OUTCOMES`]).
    pub recent: Vec<RecentOutcome>,
}

/// The run, as the status shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunStatus {
    /// When the worker started.
    pub started_at: Timestamp,
    /// `threads` or `async`.
    pub runtime: &'static str,
    /// Time between tick starts.
    pub interval_ms: u64,
    /// Bound on one probe.
    pub probe_timeout_ms: u64,
    /// Most probes in flight.
    pub max_concurrency: usize,
    /// Consecutive failures that publish `probe_failed`.
    pub failures_threshold: u32,
    /// Consecutive successes that publish `probe_recovered`.
    pub recovery_threshold: u32,
    /// This instance's shard, `I/N`.
    pub shard: String,
    /// Ticks run, skipped ones included.
    pub ticks: u64,
    /// The last tick, once one has run.
    pub last_tick: Option<LastTick>,
    /// Events waiting for the publisher (D4).
    pub pending_events: usize,
}

/// What the last tick did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastTick {
    /// When it ended (wall clock).
    pub ended_at: Timestamp,
    /// How long it took.
    pub duration_ms: f64,
    /// Distinct games listed.
    pub games: usize,
    /// Probes folded.
    pub probes: usize,
    /// Of those, failures.
    pub failed_probes: usize,
    /// Events emitted.
    pub events: usize,
    /// The listing failed, so nothing was probed (R9).
    pub skipped: bool,
}

/// How many games stand where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Distinct games in the last listing that succeeded.
    pub games: usize,
    /// Games holding counters (D7).
    pub tracked_games: usize,
    /// [`Health::Failing`] games.
    pub failing: usize,
    /// [`Health::Recovering`] games.
    pub recovering: usize,
    /// [`Health::Suspect`] games.
    pub suspect: usize,
    /// Listed games holding no counters, shown or not.
    pub healthy: usize,
}

impl Totals {
    /// The count of `health`.
    pub fn of(&self, health: Health) -> usize {
        match health {
            Health::Failing => self.failing,
            Health::Recovering => self.recovering,
            Health::Suspect => self.suspect,
            Health::Healthy => self.healthy,
        }
    }
}

/// The status at the end of a tick: what `/status` and `/` show.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusSnapshot {
    /// The run.
    pub run: RunStatus,
    /// The counts.
    pub totals: Totals,
    /// Every game holding counters or with a failure among its recent
    /// outcomes, by [`Health`] then `game_id`.
    pub games: Vec<GameStatus>,
}

/// The latest [`StatusSnapshot`], shared between the worker and the server.
#[derive(Debug, Default)]
pub struct StatusBoard {
    current: Mutex<Option<Arc<StatusSnapshot>>>,
}

impl StatusBoard {
    /// A board with no snapshot yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The latest snapshot; `None` before the worker has started.
    pub fn snapshot(&self) -> Option<Arc<StatusSnapshot>> {
        self.lock().clone()
    }

    fn replace(&self, snapshot: StatusSnapshot) {
        *self.lock() = Some(Arc::new(snapshot));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<StatusSnapshot>>> {
        // A snapshot is replaced whole: a poisoned lock still holds a whole one.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the book keeps of one game beside the machine's counters.
#[derive(Debug, Clone)]
struct Shown {
    container_id: Arc<str>,
    engine_endpoint: Option<Arc<str>>,
    health: Health,
    since: Option<Timestamp>,
    recent: VecDeque<RecentOutcome>,
    /// The tick that last probed it.
    probed_in: u64,
}

impl Shown {
    fn has_recent_failure(&self) -> bool {
        self.recent.iter().any(|outcome| !outcome.is_ok())
    }
}

/// The worker's side of the status: recent outcomes of the games worth
/// showing, and a [`StatusSnapshot`] for the [`StatusBoard`] after each tick.
#[derive(Debug)]
pub struct StatusBook {
    board: Arc<StatusBoard>,
    run: RunStatus,
    games: BTreeMap<Arc<str>, Shown>,
    /// Ticks ended so far.
    tick: u64,
    /// Distinct games in the last listing that succeeded.
    listed: usize,
}

impl StatusBook {
    /// A book for a worker of `config` on `runtime` that started at
    /// `started_at`, publishing to `board`. Games the machine already holds
    /// counters for (restored from a state file) are shown from the start,
    /// `since` unknown.
    pub fn new(
        board: Arc<StatusBoard>,
        config: &WorkerConfig,
        runtime: Runtime,
        started_at: Timestamp,
        machine: &TickMachine,
    ) -> Self {
        let run = RunStatus {
            started_at,
            runtime: runtime.name(),
            interval_ms: millis(config.interval),
            probe_timeout_ms: millis(config.probe_timeout),
            max_concurrency: config.max_concurrency,
            failures_threshold: config.failures_threshold,
            recovery_threshold: config.recovery_threshold,
            shard: config.shard.to_string(),
            ticks: 0,
            last_tick: None,
            pending_events: 0,
        };
        let games = machine
            .states()
            .games()
            .map(|(game_id, state)| {
                let shown = Shown {
                    container_id: Arc::from(""),
                    engine_endpoint: None,
                    health: Health::of(Some(state)),
                    since: None,
                    recent: VecDeque::new(),
                    probed_in: 0,
                };
                (Arc::from(game_id), shown)
            })
            .collect();
        let book = Self {
            board,
            run,
            games,
            tick: 0,
            listed: 0,
        };
        book.board.replace(book.snapshot(machine));
        book
    }

    /// The outcome to record for `game_id` once folded, if the game is
    /// worth showing: a failure, or any outcome of a game already shown.
    /// `None` (and no allocation) for a success of a game not shown.
    pub fn outcome(&self, game_id: &str, probed: &Probed) -> Option<RecentOutcome> {
        let shown = self.games.get(game_id);
        (!probed.result.is_healthy() || shown.is_some())
            .then(|| RecentOutcome::of(probed, shown.and_then(|shown| shown.recent.back())))
    }

    /// Record `outcome` of `record`'s game, folded into `states` already:
    /// its health (and since when) is what the folded counters say.
    pub fn record(
        &mut self,
        record: &RuntimeRecord,
        outcome: RecentOutcome,
        states: &HealthStates,
    ) {
        let health = Health::of(states.game(&record.game_id));
        let at = outcome.observed_at;
        let tick = self.tick;
        let shown = match self.games.get_mut(record.game_id.as_str()) {
            Some(shown) => {
                if shown.health != health {
                    shown.health = health;
                    shown.since = Some(at);
                }
                shown
            }
            None => self
                .games
                .entry(Arc::from(record.game_id.as_str()))
                .or_insert(Shown {
                    container_id: Arc::from(""),
                    engine_endpoint: None,
                    health,
                    since: Some(at),
                    recent: VecDeque::with_capacity(RECENT_OUTCOMES),
                    probed_in: tick,
                }),
        };
        if *shown.container_id != *record.current_container_id {
            shown.container_id = Arc::from(record.current_container_id.as_str());
        }
        if shown.engine_endpoint.as_deref() != Some(record.engine_endpoint.as_str()) {
            shown.engine_endpoint = Some(Arc::from(record.engine_endpoint.as_str()));
        }
        if shown.recent.len() == RECENT_OUTCOMES {
            shown.recent.pop_front();
        }
        shown.recent.push_back(outcome);
        shown.probed_in = tick;
    }

    /// A tick ended (`report`, at wall time `ended_at`): forget the games no
    /// longer worth showing and put a new snapshot on the board.
    ///
    /// A game is kept while the machine holds its counters, or while a
    /// failure is among its recent outcomes and it was probed this tick (a
    /// game no longer listed is pruned, R8). A skipped or interrupted tick
    /// forgets nothing it did not probe.
    pub fn tick_done(&mut self, machine: &TickMachine, report: &TickReport, ended_at: Timestamp) {
        let states = machine.states();
        let tick = self.tick;
        let whole = !report.skipped && !report.interrupted;
        self.games.retain(|game_id, shown| {
            states.game(game_id).is_some()
                || (shown.has_recent_failure() && (shown.probed_in == tick || !whole))
        });
        if !report.skipped {
            self.listed = report.games;
        }
        self.tick += 1;
        self.run.ticks = machine.run_report().ticks;
        self.run.last_tick = Some(LastTick {
            ended_at,
            duration_ms: report.duration.as_secs_f64() * 1e3,
            games: report.games,
            probes: report.probes,
            failed_probes: report.failed_probes,
            events: report.events,
            skipped: report.skipped,
        });
        self.board.replace(self.snapshot(machine));
    }

    /// The status as the machine and the book stand now.
    fn snapshot(&self, machine: &TickMachine) -> StatusSnapshot {
        let states = machine.states();
        let policy = states.policy();
        let mut pending: HashMap<&str, Vec<&'static str>> = HashMap::new();
        for event in machine.pending() {
            pending
                .entry(event.game_id.as_str())
                .or_default()
                .push(event_type_name(event.event_type()));
        }
        let status = |game_id: Arc<str>, shown: Option<&Shown>, state: Option<&GameState>| {
            let counters = state.copied().unwrap_or_default();
            GameStatus {
                pending_events: pending.get(&*game_id).cloned().unwrap_or_default(),
                game_id,
                container_id: shown.map_or_else(|| Arc::from(""), |s| Arc::clone(&s.container_id)),
                engine_endpoint: shown.and_then(|s| s.engine_endpoint.clone()),
                state: Health::of(state),
                since: shown.and_then(|s| s.since),
                consecutive_failures: counters.consecutive_failures(),
                failures_threshold: policy.failures_threshold(),
                consecutive_successes: counters.consecutive_successes(),
                recovery_threshold: policy.recovery_threshold(),
                failure_published: counters.failure_published(),
                recent: shown
                    .map(|s| s.recent.iter().cloned().collect())
                    .unwrap_or_default(),
            }
        };
        let mut games: Vec<GameStatus> = self
            .games
            .iter()
            .map(|(game_id, shown)| status(Arc::clone(game_id), Some(shown), states.game(game_id)))
            .chain(
                states
                    .games()
                    .filter(|(game_id, _)| !self.games.contains_key(*game_id))
                    .map(|(game_id, state)| status(Arc::from(game_id), None, Some(state))),
            )
            .collect();
        // Nearly sorted already (by id): a stable sort by health finishes it.
        games.sort_by(|a, b| (a.state, &a.game_id).cmp(&(b.state, &b.game_id)));
        let count = |health| games.iter().filter(|game| game.state == health).count();
        let totals = Totals {
            games: self.listed,
            tracked_games: states.len(),
            failing: count(Health::Failing),
            recovering: count(Health::Recovering),
            suspect: count(Health::Suspect),
            healthy: self.listed.saturating_sub(states.len()),
        };
        let mut run = self.run.clone();
        run.pending_events = machine.pending_len();
        StatusSnapshot { run, totals, games }
    }
}

/// An outcome's error text in JSON: `""` for a success.
fn error_text<S: serde::Serializer>(
    error: &Option<Arc<str>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(error.as_deref().unwrap_or_default())
}

/// The name of an event type on the wire.
fn event_type_name(event_type: EventType) -> &'static str {
    match event_type {
        EventType::ProbeFailed => "probe_failed",
        EventType::ProbeRecovered => "probe_recovered",
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Which games a response holds: `?state=…&game=…&limit=…&offset=…`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusQuery {
    /// Only games in one of these (all when empty): `state=failing,suspect`,
    /// or `state` repeated.
    pub state: Vec<Health>,
    /// Only this game.
    pub game: Option<String>,
    /// Skip this many matching games.
    pub offset: usize,
    /// At most this many games (1 to [`MAX_LIMIT`]).
    pub limit: usize,
}

impl Default for StatusQuery {
    fn default() -> Self {
        Self {
            state: Vec::new(),
            game: None,
            offset: 0,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// A query parameter that is not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A parameter this endpoint does not take.
    #[error("unknown parameter {0:?}; known: state, game, limit, offset")]
    Unknown(String),
    /// `state=` named no known health.
    #[error("state={0:?}: not failing, recovering, suspect or healthy")]
    State(String),
    /// `limit=` or `offset=` is not a number in range.
    #[error("{name}={value:?}: {expected}")]
    Number {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
}

impl StatusQuery {
    /// Parse a URL's query string (percent-decoded, `+` as space); `None` is no query.
    pub fn parse(query: Option<&str>) -> Result<Self, QueryError> {
        let mut parsed = Self::default();
        let Some(query) = query else {
            return Ok(parsed);
        };
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*name {
                "state" => {
                    for word in value.split(',').filter(|word| !word.is_empty()) {
                        let health = Health::ALL
                            .into_iter()
                            .find(|health| health.as_str() == word)
                            .ok_or_else(|| QueryError::State(word.to_owned()))?;
                        if !parsed.state.contains(&health) {
                            parsed.state.push(health);
                        }
                    }
                }
                "game" => parsed.game = Some(value.into_owned()),
                "limit" => {
                    parsed.limit = value
                        .parse()
                        .ok()
                        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                        .ok_or_else(|| QueryError::Number {
                            name: "limit",
                            value: value.clone().into_owned(),
                            expected: "a number from 1 to 1000",
                        })?;
                }
                "offset" => {
                    parsed.offset = value.parse().map_err(|_| QueryError::Number {
                        name: "offset",
                        value: value.clone().into_owned(),
                        expected: "a number from 0",
                    })?;
                }
                other => return Err(QueryError::Unknown(other.to_owned())),
            }
        }
        Ok(parsed)
    }

    /// Whether `game` is asked for.
    pub fn matches(&self, game: &GameStatus) -> bool {
        (self.state.is_empty() || self.state.contains(&game.state))
            && self.game.as_deref().is_none_or(|id| id == &*game.game_id)
    }
}

/// The `/status` document: the run, the totals and one page of games.
#[derive(Debug, Serialize)]
pub struct StatusPage<'a> {
    /// The run.
    pub run: &'a RunStatus,
    /// The counts.
    pub totals: &'a Totals,
    /// The query this page answers.
    pub query: &'a StatusQuery,
    /// Games matching the query, on every page.
    pub matched: usize,
    /// The `offset` of the next page, if there is one.
    pub next_offset: Option<usize>,
    /// This page's games.
    pub games: Vec<&'a GameStatus>,
}

impl StatusSnapshot {
    /// The games `query` asks for, one page of them.
    pub fn page<'a>(&'a self, query: &'a StatusQuery) -> StatusPage<'a> {
        let mut matched = 0;
        let mut games = Vec::new();
        for game in self.games.iter().filter(|game| query.matches(game)) {
            if matched >= query.offset && games.len() < query.limit {
                games.push(game);
            }
            matched += 1;
        }
        let shown_to = query.offset.saturating_add(games.len());
        StatusPage {
            run: &self.run,
            totals: &self.totals,
            query,
            matched,
            next_offset: (shown_to < matched).then_some(shown_to),
            games,
        }
    }

    /// The `/status` JSON for `query`.
    pub fn to_json(&self, query: &StatusQuery) -> String {
        // Serializing plain data into a String cannot fail.
        serde_json::to_string(&self.page(query)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
