//! What an operator looks at: the live status of a run, as JSON
//! (`GET /status`) and as one HTML page (`GET /`, [`page`]).
//!
//! A [`StatusSnapshot`] is taken at the end of each tick from the state the
//! [`TickMachine`] owns (counters, whether `probe_failed` is published,
//! pending events): nothing here counts failures or decides a transition.
//! Beside it, the [`StatusBook`] keeps what only an operator needs: each
//! shown game's last [`RECENT_OUTCOMES`] outcomes, its container and
//! endpoint, and since when it has been in its current [`Health`].
//!
//! Bounded (D7): the book holds a game only while the machine holds its
//! counters or a failure is among its last outcomes, so a healthy fleet
//! costs nothing per game. A response holds at most [`MAX_LIMIT`] games.
//! The worker owns the book ([`crate::Ports::with_status`]); the HTTP server
//! reads the [`StatusBoard`] it fills. Every endpoint is read-only.

pub mod page;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use healthprobe_core::tick::{TickMachine, TickReport};
use healthprobe_core::{GameState, HealthStates, ProbeResult, RuntimeRecord, Timestamp};
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
    /// What went wrong; empty for a success.
    pub error: Arc<str>,
    /// The metric's class of the outcome (`ok`, `bad_status`, `timeout`, …).
    pub result: &'static str,
    /// How long the probe took, in milliseconds.
    pub latency_ms: f64,
}

impl RecentOutcome {
    /// Whether the probe succeeded (status 200, R1).
    pub fn is_ok(&self) -> bool {
        self.error.is_empty()
    }

    /// The outcome of `probed`, its error text shared with `last` when equal.
    fn of(probed: &Probed, last: Option<&RecentOutcome>) -> Self {
        let (status, text) = match &probed.result {
            ProbeResult::Healthy => (200, ""),
            ProbeResult::Unhealthy { status, error } => (*status, error.as_str()),
        };
        let error = match last {
            Some(last) if *last.error == *text => Arc::clone(&last.error),
            _ => Arc::from(text),
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
    /// A game first shown in `health`, since `since`; its record comes with its outcome.
    fn new(health: Health, since: Option<Timestamp>) -> Self {
        Self {
            container_id: Arc::from(""),
            engine_endpoint: None,
            health,
            since,
            recent: VecDeque::new(),
            probed_in: 0,
        }
    }

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
            interval_ms: config.interval.as_millis() as u64,
            probe_timeout_ms: config.probe_timeout.as_millis() as u64,
            max_concurrency: config.max_concurrency,
            failures_threshold: config.failures_threshold,
            recovery_threshold: config.recovery_threshold,
            shard: config.shard.to_string(),
            ticks: 0,
            last_tick: None,
            pending_events: 0,
        };
        let games = (machine.states().games())
            .map(|(game_id, state)| {
                (
                    Arc::from(game_id),
                    Shown::new(Health::of(Some(state)), None),
                )
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
        let game_id = record.game_id.as_str();
        if !self.games.contains_key(game_id) {
            self.games
                .insert(Arc::from(game_id), Shown::new(health, Some(at)));
        }
        let shown = self.games.get_mut(game_id).expect("inserted above");
        if shown.health != health {
            shown.health = health;
            shown.since = Some(at);
        }
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
        shown.probed_in = self.tick;
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
                .entry(event.event.game_id.as_str())
                .or_default()
                .push(event.event.event_type().as_str());
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

/// A query parameter that is not understood: which, and what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(String);

impl StatusQuery {
    /// Parse a URL's query string (percent-decoded, `+` as space); `None` is no query.
    pub fn parse(query: Option<&str>) -> Result<Self, QueryError> {
        let mut parsed = Self::default();
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let bad = |expected: &str| QueryError(format!("{name}={value:?}: {expected}"));
            match &*name {
                "state" => {
                    for word in value.split(',').filter(|word| !word.is_empty()) {
                        let health = Health::ALL.into_iter().find(|h| h.as_str() == word);
                        let health = health.ok_or_else(|| {
                            QueryError(format!(
                                "state={word:?}: not failing, recovering, suspect or healthy"
                            ))
                        })?;
                        if !parsed.state.contains(&health) {
                            parsed.state.push(health);
                        }
                    }
                }
                "game" => parsed.game = Some(value.into_owned()),
                "limit" => {
                    parsed.limit = (value.parse().ok())
                        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                        .ok_or_else(|| bad("a number from 1 to 1000"))?;
                }
                "offset" => parsed.offset = value.parse().map_err(|_| bad("a number from 0"))?,
                other => {
                    return Err(QueryError(format!(
                        "unknown parameter {other:?}; known: state, game, limit, offset"
                    )));
                }
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
#[derive(Serialize)]
struct StatusPage<'a> {
    run: &'a RunStatus,
    totals: &'a Totals,
    /// The query this page answers.
    query: &'a StatusQuery,
    /// Games matching the query, on every page.
    matched: usize,
    /// The `offset` of the next page, if there is one.
    next_offset: Option<usize>,
    games: Vec<&'a GameStatus>,
}

impl StatusSnapshot {
    /// The `/status` JSON for `query`: the games it asks for, one page of them.
    pub fn to_json(&self, query: &StatusQuery) -> String {
        let matching = self.games.iter().filter(|game| query.matches(game));
        let games: Vec<&GameStatus> = matching
            .clone()
            .skip(query.offset)
            .take(query.limit)
            .collect();
        let matched = matching.count();
        let shown_to = query.offset.saturating_add(games.len());
        let page = StatusPage {
            run: &self.run,
            totals: &self.totals,
            query,
            matched,
            next_offset: (shown_to < matched).then_some(shown_to),
            games,
        };
        // Serializing plain data into a String cannot fail.
        serde_json::to_string(&page).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    //! The status book against a real tick machine, in virtual time.

    use std::time::Duration;

    use healthprobe_core::tick::{Action, MachineConfig, ProbeClass, Published};
    use healthprobe_core::{Policy, ProbeResult};

    use super::*;

    const OK: u16 = 200;
    const REFUSED: u16 = 0;

    /// A tick machine and a status book over it, one tick per virtual second.
    struct Run {
        machine: TickMachine,
        book: StatusBook,
        board: Arc<StatusBoard>,
        second: i64,
        /// Whether the publisher refuses (events stay pending).
        refuse: bool,
    }

    impl Run {
        fn new(failures_threshold: u32, recovery_threshold: u32) -> Self {
            let config = WorkerConfig {
                failures_threshold,
                recovery_threshold,
                ..WorkerConfig::default()
            };
            let policy = Policy::new(failures_threshold, recovery_threshold).expect("valid");
            let machine = TickMachine::new(MachineConfig::new(Duration::from_secs(1)), policy);
            let board = Arc::new(StatusBoard::new());
            let book = StatusBook::new(
                Arc::clone(&board),
                &config,
                Runtime::Threads,
                at(0),
                &machine,
            );
            Self {
                machine,
                book,
                board,
                second: 0,
                refuse: false,
            }
        }

        /// One tick listing `games`, each answering its status (0: refused).
        fn tick(&mut self, games: &[(&str, u16)]) -> Arc<StatusSnapshot> {
            self.second += 1;
            let now = Duration::from_secs(self.second as u64);
            self.machine.start_tick(now);
            self.drain(now);
            let records: Vec<RuntimeRecord> = games
                .iter()
                .map(|(id, _)| {
                    RuntimeRecord::running(*id, format!("c-{id}"), format!("http://{id}/"))
                })
                .collect();
            self.machine.handle_listing(now, Ok(records.clone()));
            if let Some(Action::Probe(batch)) = self.machine.poll_action() {
                for (job, record) in batch.jobs().iter().enumerate() {
                    let status = games
                        .iter()
                        .find(|(id, _)| *id == record.game_id)
                        .map(|(_, status)| *status)
                        .expect("listed");
                    let (result, class) = match status {
                        OK => (ProbeResult::Healthy, ProbeClass::Ok),
                        REFUSED => (
                            ProbeResult::Unhealthy {
                                status: 0,
                                error: "connection refused".into(),
                            },
                            ProbeClass::ConnectError,
                        ),
                        status => (
                            ProbeResult::Unhealthy {
                                status,
                                error: format!("unexpected status {status}"),
                            },
                            ProbeClass::BadStatus,
                        ),
                    };
                    let probed = Probed::new(job, at(self.second), result, class)
                        .with_latency(Duration::from_millis(3));
                    let outcome = self.book.outcome(&record.game_id, &probed);
                    self.machine.handle_outcome(
                        now,
                        job,
                        probed.observed_at,
                        probed.result,
                        probed.class,
                    );
                    if let Some(outcome) = outcome {
                        self.book.record(record, outcome, self.machine.states());
                    }
                    self.drain(now);
                }
            }
            self.machine.handle_probes_done(now);
            self.drain(now);
            self.board.snapshot().expect("a snapshot after each tick")
        }

        fn drain(&mut self, now: Duration) {
            while let Some(action) = self.machine.poll_action() {
                match action {
                    Action::Publish(_) => {
                        let answer = if self.refuse {
                            Published::Refused
                        } else {
                            Published::Accepted
                        };
                        self.machine.handle_published(now, answer);
                    }
                    Action::SyncPublisher => self.machine.handle_synced(now, Ok(())),
                    Action::Persist { .. } => self
                        .machine
                        .handle_persisted(now, healthprobe_core::tick::Persisted::Written),
                    Action::TickDone(report) => {
                        self.book.tick_done(&self.machine, &report, at(self.second));
                    }
                    // Answered by the caller.
                    Action::Wait { .. } | Action::List => return,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).expect("valid")
    }

    fn game<'a>(snapshot: &'a StatusSnapshot, id: &str) -> &'a GameStatus {
        snapshot
            .games
            .iter()
            .find(|game| &*game.game_id == id)
            .unwrap_or_else(|| panic!("{id} not shown: {:#?}", snapshot.games))
    }

    fn statuses(game: &GameStatus) -> Vec<u16> {
        game.recent.iter().map(|outcome| outcome.status).collect()
    }

    #[test]
    fn d7_a_healthy_fleet_is_a_count_and_holds_nothing_per_game() {
        let mut run = Run::new(3, 1);
        let fleet: Vec<(String, u16)> = (0..1000).map(|i| (format!("g{i}"), OK)).collect();
        let fleet: Vec<(&str, u16)> = fleet.iter().map(|(id, s)| (id.as_str(), *s)).collect();
        for _ in 0..3 {
            let snapshot = run.tick(&fleet);
            assert!(snapshot.games.is_empty());
            assert_eq!(snapshot.totals.healthy, 1000);
            assert_eq!(snapshot.totals.games, 1000);
        }
        assert!(run.book.games.is_empty(), "no per-game memory");
    }

    #[test]
    fn r4_d1_the_health_and_since_follow_the_machines_counters() {
        let mut run = Run::new(2, 2);
        let snapshot = run.tick(&[("g1", 503)]);
        let g1 = game(&snapshot, "g1");
        assert_eq!((g1.state, g1.since), (Health::Suspect, Some(at(1))));
        assert_eq!((g1.consecutive_failures, g1.failure_published), (1, false));

        let snapshot = run.tick(&[("g1", REFUSED)]);
        let g1 = game(&snapshot, "g1");
        assert_eq!((g1.state, g1.since), (Health::Failing, Some(at(2))));
        assert_eq!((g1.consecutive_failures, g1.failure_published), (2, true));
        assert_eq!(&*g1.recent[1].error, "connection refused");
        assert_eq!(g1.recent[1].result, "connect_error");
        assert_eq!(g1.recent[1].latency_ms, 3.0);

        run.tick(&[("g1", 503)]);
        let snapshot = run.tick(&[("g1", OK)]);
        let g1 = game(&snapshot, "g1");
        assert_eq!((g1.state, g1.since), (Health::Recovering, Some(at(4))));
        assert_eq!((g1.consecutive_failures, g1.consecutive_successes), (3, 1));
        assert_eq!((g1.failures_threshold, g1.recovery_threshold), (2, 2));

        // D1: a failure in the streak goes back to failing, counting on.
        let snapshot = run.tick(&[("g1", 503)]);
        let g1 = game(&snapshot, "g1");
        assert_eq!((g1.state, g1.since), (Health::Failing, Some(at(5))));
        assert_eq!((g1.consecutive_failures, g1.consecutive_successes), (4, 0));

        run.tick(&[("g1", OK)]);
        let snapshot = run.tick(&[("g1", OK)]);
        let g1 = game(&snapshot, "g1");
        // Recovered: no counters, shown while failures are in its last outcomes.
        assert_eq!((g1.state, g1.since), (Health::Healthy, Some(at(7))));
        assert_eq!(statuses(g1), [503, 0, 503, 200, 503, 200, 200]);
        assert_eq!(snapshot.totals.healthy, 1);
    }

    #[test]
    fn the_recent_outcomes_are_a_ring_and_a_healthy_game_leaves_with_its_last_failure() {
        let mut run = Run::new(3, 1);
        run.tick(&[("g1", 500)]);
        for tick in 0..RECENT_OUTCOMES {
            let snapshot = run.tick(&[("g1", OK)]);
            if tick + 1 < RECENT_OUTCOMES {
                let g1 = game(&snapshot, "g1");
                assert_eq!(g1.recent.len(), RECENT_OUTCOMES.min(tick + 2));
                assert_eq!(g1.recent[0].status, 500, "the failure is still in the ring");
            } else {
                assert!(snapshot.games.is_empty(), "{:#?}", snapshot.games);
            }
        }
        assert!(run.book.games.is_empty());
    }

    #[test]
    fn d5_a_game_restored_from_a_state_file_is_shown_since_before_this_run() {
        let policy = Policy::new(2, 2).expect("valid");
        let mut restored = HealthStates::new(policy);
        for second in 0..3 {
            let failure = ProbeResult::Unhealthy {
                status: 503,
                error: "unexpected status 503".into(),
            };
            let outcome = healthprobe_core::ProbeOutcome {
                game_id: "g1".into(),
                container_id: "c-g1".into(),
                observed_at: at(second),
                result: failure,
            };
            restored.apply(outcome.as_ref());
        }
        let mut config = MachineConfig::new(Duration::from_secs(1));
        config.durable = true;
        let mut machine = TickMachine::new(config, policy);
        assert_eq!(machine.poll_action(), Some(Action::LoadState));
        let snapshot = healthprobe_core::tick::Snapshot {
            states: restored,
            pending: Vec::new(),
            journal_len: None,
        };
        machine.handle_loaded(Duration::ZERO, Ok(Some(snapshot)));
        assert!(matches!(
            machine.poll_action(),
            Some(Action::Persist { .. })
        ));
        machine.handle_persisted(Duration::ZERO, healthprobe_core::tick::Persisted::Written);
        let mut run = Run::new(2, 2);
        run.book = StatusBook::new(
            Arc::clone(&run.board),
            &WorkerConfig {
                failures_threshold: 2,
                recovery_threshold: 2,
                ..WorkerConfig::default()
            },
            Runtime::Threads,
            at(10),
            &machine,
        );
        run.machine = machine;
        let snapshot = run.board.snapshot().expect("a snapshot at start");
        let g1 = game(&snapshot, "g1");
        assert_eq!(
            (g1.state, g1.since, g1.consecutive_failures),
            (Health::Failing, None, 3)
        );
        assert_eq!((g1.engine_endpoint.as_deref(), g1.recent.len()), (None, 0));
        assert_eq!(snapshot.run.ticks, 0);

        // Still failing: since stays unknown; the endpoint is now known.
        let snapshot = run.tick(&[("g1", 503)]);
        let g1 = game(&snapshot, "g1");
        assert_eq!(
            (g1.state, g1.since, g1.consecutive_failures),
            (Health::Failing, None, 4)
        );
        assert_eq!(g1.engine_endpoint.as_deref(), Some("http://g1/"));
        let snapshot = run.tick(&[("g1", OK)]);
        let g1 = game(&snapshot, "g1");
        assert_eq!((g1.state, g1.since), (Health::Recovering, Some(at(2))));
    }

    #[test]
    fn the_same_error_again_shares_its_text() {
        let mut run = Run::new(3, 1);
        run.tick(&[("g1", REFUSED)]);
        let snapshot = run.tick(&[("g1", REFUSED)]);
        let errors: Vec<&Arc<str>> = game(&snapshot, "g1")
            .recent
            .iter()
            .map(|outcome| &outcome.error)
            .collect();
        assert!(Arc::ptr_eq(errors[0], errors[1]));
        let snapshot = run.tick(&[("g1", 503)]);
        let g1 = game(&snapshot, "g1");
        assert_eq!(&*g1.recent[2].error, "unexpected status 503");
    }

    #[test]
    fn r8_a_game_no_longer_listed_leaves_the_status() {
        let mut run = Run::new(1, 1);
        run.tick(&[("g1", 503), ("g2", 503)]);
        let snapshot = run.tick(&[("g2", 503)]);
        assert_eq!(snapshot.games.len(), 1);
        assert_eq!(&*snapshot.games[0].game_id, "g2");
        assert_eq!(snapshot.totals.games, 1);
    }

    #[test]
    fn d4_undelivered_events_are_shown_per_game() {
        let mut run = Run::new(1, 1);
        run.refuse = true;
        let snapshot = run.tick(&[("g1", 503), ("g2", OK)]);
        assert_eq!(game(&snapshot, "g1").pending_events, ["probe_failed"]);
        assert_eq!(snapshot.run.pending_events, 1);
        run.refuse = false;
        let snapshot = run.tick(&[("g1", 503), ("g2", OK)]);
        assert!(game(&snapshot, "g1").pending_events.is_empty());
        assert_eq!(snapshot.run.pending_events, 0);
    }

    #[test]
    fn games_come_by_health_then_id_and_totals_count_them() {
        let mut run = Run::new(2, 2);
        run.tick(&[("a", 503), ("b", 503), ("c", OK), ("d", OK)]);
        run.tick(&[("a", 503), ("b", 503), ("c", 503), ("d", OK)]);
        let snapshot = run.tick(&[("a", OK), ("b", 503), ("c", 503), ("d", 503)]);
        let order: Vec<(&str, Health)> = snapshot
            .games
            .iter()
            .map(|game| (&*game.game_id, game.state))
            .collect();
        assert_eq!(
            order,
            [
                ("b", Health::Failing),
                ("c", Health::Failing),
                ("a", Health::Recovering),
                ("d", Health::Suspect),
            ]
        );
        let totals = snapshot.totals;
        assert_eq!(
            (
                totals.failing,
                totals.recovering,
                totals.suspect,
                totals.healthy
            ),
            (2, 1, 1, 0)
        );
        assert_eq!((totals.games, totals.tracked_games), (4, 4));
        assert_eq!(snapshot.run.ticks, 3);
        let last = snapshot.run.last_tick.as_ref().expect("a tick");
        assert_eq!((last.games, last.probes, last.failed_probes), (4, 4, 3));
    }

    #[test]
    fn a_query_filters_by_state_and_game_and_pages() {
        let mut run = Run::new(1, 1);
        let fleet: Vec<(String, u16)> = (0..25)
            .map(|i| (format!("g{i:02}"), if i % 5 == 0 { OK } else { 503 }))
            .collect();
        let fleet: Vec<(&str, u16)> = fleet.iter().map(|(id, s)| (id.as_str(), *s)).collect();
        let snapshot = run.tick(&fleet);
        let page = |query: &str| -> serde_json::Value {
            let query = StatusQuery::parse(Some(query)).expect("valid");
            serde_json::from_str(&snapshot.to_json(&query)).expect("JSON")
        };
        let json = page("state=failing&limit=7&offset=14");
        assert_eq!(json["matched"], 20);
        assert_eq!(json["games"].as_array().expect("games").len(), 6);
        assert_eq!(json["next_offset"], serde_json::Value::Null);
        assert_eq!(json["games"][0]["game_id"], "g18");
        let json = page("limit=7");
        assert_eq!(json["games"].as_array().expect("games").len(), 7);
        assert_eq!(json["next_offset"], 7);
        let json = page("game=g03");
        assert_eq!(json["matched"], 1);
        assert_eq!(json["games"][0]["game_id"], "g03");
        assert_eq!(json["games"][0]["state"], "failing");
        assert_eq!(json["totals"]["failing"], 20);
        assert_eq!(json["totals"]["healthy"], 5);
        assert_eq!(json["run"]["failures_threshold"], 1);
        assert_eq!(
            page("state=healthy")["matched"],
            0,
            "healthy games are a count"
        );
    }

    #[test]
    fn a_bad_query_is_an_error_naming_the_parameter() {
        let check = |query: &str, expected: &str| {
            let err = StatusQuery::parse(Some(query)).expect_err(query);
            assert_eq!(err.to_string(), expected, "{query}");
        };
        check(
            "state=down",
            "state=\"down\": not failing, recovering, suspect or healthy",
        );
        check("limit=0", "limit=\"0\": a number from 1 to 1000");
        check("limit=1001", "limit=\"1001\": a number from 1 to 1000");
        check("offset=-1", "offset=\"-1\": a number from 0");
        check(
            "x=1",
            "unknown parameter \"x\"; known: state, game, limit, offset",
        );
        let parsed = StatusQuery::parse(Some("state=failing,suspect&state=failing&game=a%20b%3Cc"))
            .expect("valid");
        assert_eq!(parsed.state, [Health::Failing, Health::Suspect]);
        assert_eq!(parsed.game.as_deref(), Some("a b<c"));
        assert_eq!(StatusQuery::parse(None), Ok(StatusQuery::default()));
    }

    /// A snapshot with one game of each health (thresholds 3 and 2): `f`
    /// failing, `r` recovering (1 of 2), `s` suspect (2 of 3), `h` healthy with
    /// a failure among its last outcomes.
    pub(crate) fn snapshot_of() -> StatusSnapshot {
        let mut run = Run::new(3, 2);
        run.tick(&[("f", 503), ("r", 503), ("s", OK), ("h", 503)]);
        run.tick(&[("f", 503), ("r", 503), ("s", OK), ("h", OK)]);
        run.tick(&[("f", 503), ("r", 503), ("s", OK), ("h", OK)]);
        run.tick(&[("f", 503), ("r", 503), ("s", 503), ("h", OK)]);
        (*run.tick(&[("f", 503), ("r", OK), ("s", 503), ("h", OK)])).clone()
    }

    /// A snapshot whose ids, endpoint and error texts are hostile.
    pub(crate) fn hostile_snapshot() -> StatusSnapshot {
        let mut run = Run::new(1, 1);
        let id = "<script>alert(\"id\")</script>";
        let long = "x".repeat(10_000);
        run.tick(&[(id, 503), (long.as_str(), 503)]);
        let mut snapshot = (*run.board.snapshot().expect("snapshot")).clone();
        let lossy = String::from_utf8_lossy(b"\xff\xfe<b>bold</b>").into_owned();
        for game in &mut snapshot.games {
            game.engine_endpoint = Some(Arc::from("http://e/\"><img src=x onerror=alert(1)>"));
            game.container_id = Arc::from(format!("'single' & \"double\" {lossy}"));
            for outcome in &mut game.recent {
                outcome.error = Arc::from(format!(
                    "malformed response: {lossy} </td></tr></table><script>x</script>"
                ));
            }
        }
        snapshot
    }
}
