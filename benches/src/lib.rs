//! Workloads shared by the criterion benches.
//!
//! Every workload is deterministic (no randomness, no clock): the same call
//! builds the same outcomes, so figures from different runs measure the same
//! work. The benches build their inputs here, outside the timed region, and
//! time only the core (or the replay) folding them.
//!
//! - [`Workload::step_healthy`]: 1,000 games, every outcome healthy.
//! - [`Workload::step_mixed`]: 1,000 games, one outcome per game per round;
//!   rounds 0–3 of every 10 fail with status 503, threshold 3, so each game
//!   emits one `probe_failed` and one `probe_recovered` every 10 rounds (one
//!   outcome in five emits an event).
//! - [`PruneWorkload`]: 100,000 tracked games (one failure each) pruned to half.
//! - [`ReplayJournal`]: the `step_mixed` workload written as a JSONL journal.
//!
//! [`process`] runs whole processes for the `tls` and `reuse` benches.
//! [`cpu_time`] holds the CPU-time measurement the benches switch to with
//! `HEALTHPROBE_BENCH_TIME=cpu` on a machine shared with other work.
#![warn(missing_docs)]

pub mod cpu_time;
pub mod process;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use healthprobe_core::{HealthStates, Input, Policy, ProbeOutcome, ProbeResult, Timestamp};
use healthprobe_shell::codec::journal::write_input;

/// Games in the `step_healthy` and `step_mixed` workloads.
pub const STEP_GAMES: usize = 1_000;

/// Rounds in one period of the mixed workload.
pub const PERIOD_ROUNDS: u64 = 10;

/// Rounds at the start of each period in which every game of the mixed workload fails.
pub const MIXED_FAILING_ROUNDS: u64 = 4;

/// `failures_threshold` of the step workloads (the reference's default).
pub const FAILURES_THRESHOLD: u32 = 3;

/// Seconds between two rounds: the reference's default probe interval.
pub const ROUND_SECONDS: i64 = 5;

/// Tracked games in the `prune_100k` workload.
pub const PRUNE_GAMES: usize = 100_000;

/// Outcomes in the `replay_1m` journal.
pub const REPLAY_OUTCOMES: u64 = 1_000_000;

/// The HTTP status of every failure.
pub const FAILURE_STATUS: u16 = 503;

/// The error text of every failure, as the worker writes it.
pub const FAILURE_ERROR: &str = "unexpected status 503";

/// `observed_at` of round 0: `2026-11-28T05:00:00Z`.
const START_SECOND: i64 = 1_795_842_000;

/// The id of the `index`-th game: `game-000042`.
pub fn game_id(index: usize) -> String {
    format!("game-{index:06}")
}

/// The container of the `index`-th game: `container-000042`.
pub fn container_id(index: usize) -> String {
    format!("container-{index:06}")
}

/// When the outcomes of `round` are observed: one round every [`ROUND_SECONDS`].
pub fn observed_at(round: u64) -> Timestamp {
    let round = i64::try_from(round).expect("bench rounds fit in i64");
    Timestamp::from_second(START_SECOND + round * ROUND_SECONDS)
        .expect("bench rounds stay within jiff's range")
}

/// One outcome per game per round, for a fixed set of games.
///
/// Round `r` fails for every game when `r % PERIOD_ROUNDS < failing_rounds`
/// and is healthy otherwise.
#[derive(Debug, Clone)]
pub struct Workload {
    game_ids: Vec<String>,
    container_ids: Vec<String>,
    failing_rounds: u64,
}

impl Workload {
    /// `step_healthy`: [`STEP_GAMES`] games, every outcome healthy.
    pub fn step_healthy() -> Self {
        Self::new(STEP_GAMES, 0)
    }

    /// `step_mixed`: [`STEP_GAMES`] games; rounds 0–3 of every 10 fail.
    pub fn step_mixed() -> Self {
        Self::new(STEP_GAMES, MIXED_FAILING_ROUNDS)
    }

    /// `games` games failing in the first `failing_rounds` rounds of every period.
    pub fn new(games: usize, failing_rounds: u64) -> Self {
        Self {
            game_ids: (0..games).map(game_id).collect(),
            container_ids: (0..games).map(container_id).collect(),
            failing_rounds,
        }
    }

    /// The policy the workload is measured under: threshold 3, recovery 1 (the reference).
    pub fn policy(&self) -> Policy {
        Policy::reference(FAILURES_THRESHOLD).expect("threshold 3 is positive")
    }

    /// How many games take part.
    pub fn games(&self) -> usize {
        self.game_ids.len()
    }

    /// Outcomes in one period of [`PERIOD_ROUNDS`] rounds.
    pub fn outcomes_per_period(&self) -> u64 {
        self.games() as u64 * PERIOD_ROUNDS
    }

    /// Whether every game fails in `round`.
    pub fn is_failing_round(&self, round: u64) -> bool {
        round % PERIOD_ROUNDS < self.failing_rounds
    }

    /// The outcome of game `game` in `round`; allocates its strings.
    pub fn outcome(&self, round: u64, game: usize) -> ProbeOutcome {
        let result = if self.is_failing_round(round) {
            ProbeResult::Unhealthy {
                status: FAILURE_STATUS,
                error: FAILURE_ERROR.to_owned(),
            }
        } else {
            ProbeResult::Healthy
        };
        ProbeOutcome {
            game_id: self.game_ids[game].clone(),
            container_id: self.container_ids[game].clone(),
            observed_at: observed_at(round),
            result,
        }
    }

    /// Every outcome of `rounds`, round by round, games in index order.
    pub fn outcomes(&self, rounds: std::ops::Range<u64>) -> Vec<ProbeOutcome> {
        let mut outcomes = Vec::with_capacity(
            usize::try_from(rounds.end.saturating_sub(rounds.start)).unwrap_or(0) * self.games(),
        );
        for round in rounds {
            outcomes.extend((0..self.games()).map(|game| self.outcome(round, game)));
        }
        outcomes
    }

    /// The first `count` outcomes of the workload as journal inputs, in order.
    pub fn inputs(&self, count: u64) -> impl Iterator<Item = Input> + '_ {
        let games = self.games() as u64;
        (0..count).map(move |n| {
            let game = usize::try_from(n % games).expect("game index fits in usize");
            Input::Outcome(self.outcome(n / games, game))
        })
    }

    /// A state that has folded `periods` whole periods: the steady state the
    /// step benches start from (map capacity grown, every game recovered).
    pub fn warm_state(&self, periods: u64) -> HealthStates {
        let mut state = HealthStates::new(self.policy());
        for outcome in self.outcomes(0..periods * PERIOD_ROUNDS) {
            state.apply(outcome.as_ref());
        }
        state
    }
}

/// `prune_100k`: [`PRUNE_GAMES`] tracked games, each with one failure, and a
/// running list naming every other one of them.
#[derive(Debug, Clone)]
pub struct PruneWorkload {
    state: HealthStates,
    running: Vec<String>,
}

impl PruneWorkload {
    /// The `prune_100k` workload.
    pub fn prune_100k() -> Self {
        Self::new(PRUNE_GAMES)
    }

    /// `games` tracked games, the even-numbered ones still running.
    pub fn new(games: usize) -> Self {
        let workload = Workload::new(games, 1);
        let mut state = HealthStates::new(workload.policy());
        for outcome in workload.outcomes(0..1) {
            state.apply(outcome.as_ref());
        }
        let running = (0..games).step_by(2).map(game_id).collect();
        Self { state, running }
    }

    /// The state before the prune: every game tracked with one failure.
    pub fn state(&self) -> &HealthStates {
        &self.state
    }

    /// The running list: half of the tracked games.
    pub fn running(&self) -> &[String] {
        &self.running
    }
}

/// A JSONL journal of the `step_mixed` workload in a temporary file, removed on drop.
#[derive(Debug)]
pub struct ReplayJournal {
    path: PathBuf,
    outcomes: u64,
}

impl ReplayJournal {
    /// Write the first `outcomes` outcomes of [`Workload::step_mixed`] to a
    /// fresh file under [`std::env::temp_dir`].
    pub fn write_step_mixed(outcomes: u64) -> io::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "healthprobe-bench-replay-{}-{outcomes}.jsonl",
            std::process::id()
        ));
        let journal = Self { path, outcomes };
        let mut out = BufWriter::with_capacity(1 << 16, File::create(&journal.path)?);
        write_journal(&mut out, &Workload::step_mixed(), outcomes)?;
        out.into_inner().map_err(io::IntoInnerError::into_error)?;
        Ok(journal)
    }

    /// Where the journal is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many outcomes it holds.
    pub fn outcomes(&self) -> u64 {
        self.outcomes
    }
}

impl Drop for ReplayJournal {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Write the first `outcomes` outcomes of `workload` as journal lines.
pub fn write_journal(out: &mut impl Write, workload: &Workload, outcomes: u64) -> io::Result<()> {
    for input in workload.inputs(outcomes) {
        write_input(out, &input)?;
    }
    Ok(())
}

/// The reference worker's `refrun`: `$HEALTHPROBE_REFERENCE_REFRUN`, else
/// `target/reference/bin/refrun` of the workspace (`bash tools/reference/build.sh`);
/// why not, when it is missing.
pub fn refrun_binary() -> Result<std::path::PathBuf, String> {
    let path = std::env::var_os("HEALTHPROBE_REFERENCE_REFRUN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target/reference/bin/refrun")
        });
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found (build it with `bash tools/reference/build.sh`, \
             or set HEALTHPROBE_REFERENCE_REFRUN)",
            path.display()
        ))
    }
}

/// Whether the process benches (`tls`, `reuse`) probe thread engines
/// (`HEALTHPROBE_BENCH_ENGINES=threads`: `healthprobe_tests::Fleet`, a
/// thread per engine and per kept connection) rather than event-loop
/// engines (the default: `healthprobe_tests::EventFleet`). Panics on any
/// other value, naming it.
pub fn thread_engines() -> bool {
    match std::env::var("HEALTHPROBE_BENCH_ENGINES").as_deref() {
        Err(_) | Ok("events") => false,
        Ok("threads") => true,
        Ok(other) => panic!("HEALTHPROBE_BENCH_ENGINES={other:?}: expected events or threads"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::BufReader;

    use healthprobe_core::{EventDetails, EventType, HealthEvent, replay, step};
    use healthprobe_shell::replay::replay_journal;

    use super::*;

    /// Fold `outcomes` with `step` from `state`; the events in order.
    fn fold(
        mut state: HealthStates,
        outcomes: Vec<ProbeOutcome>,
    ) -> (HealthStates, Vec<HealthEvent>) {
        let mut all = Vec::new();
        for outcome in outcomes {
            let (next, events) = step(state, outcome);
            state = next;
            all.extend(events);
        }
        (state, all)
    }

    #[test]
    fn step_healthy_emits_nothing_and_holds_no_state() {
        let workload = Workload::step_healthy();
        assert_eq!(workload.games(), 1_000);
        let outcomes = workload.outcomes(0..PERIOD_ROUNDS);
        assert!(outcomes.iter().all(|o| o.result.is_healthy()));
        let (state, events) = fold(HealthStates::new(workload.policy()), outcomes);
        assert!(events.is_empty());
        assert!(state.is_empty());
    }

    #[test]
    fn step_mixed_emits_one_failed_and_one_recovered_per_game_every_ten_rounds() {
        let workload = Workload::step_mixed();
        let periods = 3;
        let outcomes = workload.outcomes(0..periods * PERIOD_ROUNDS);
        let failures = outcomes.iter().filter(|o| !o.result.is_healthy()).count();
        assert_eq!(
            failures as u64,
            periods * 4 * 1_000,
            "rounds 0-3 of every 10 fail"
        );
        let total = outcomes.len();
        let (state, events) = fold(workload.warm_state(1), outcomes);

        // One outcome in five emits an event.
        assert_eq!(events.len() * 5, total);
        let mut per_game: HashMap<&str, Vec<EventType>> = HashMap::new();
        for event in &events {
            per_game
                .entry(&event.game_id)
                .or_default()
                .push(event.event_type());
        }
        assert_eq!(per_game.len(), 1_000);
        let expected: Vec<EventType> = (0..periods)
            .flat_map(|_| [EventType::ProbeFailed, EventType::ProbeRecovered])
            .collect();
        assert!(per_game.values().all(|types| *types == expected));

        // Failed at the third failure (round 2), recovered at round 4 after four failures.
        for event in &events {
            match &event.details {
                EventDetails::ProbeFailed {
                    consecutive_failures,
                    last_status,
                    last_error,
                } => {
                    assert_eq!(*consecutive_failures, 3);
                    assert_eq!(*last_status, 503);
                    assert_eq!(last_error, "unexpected status 503");
                    let second = event.occurred_at.as_second() - START_SECOND;
                    assert_eq!((second / ROUND_SECONDS) % 10, 2);
                }
                EventDetails::ProbeRecovered {
                    prior_failure_count,
                } => {
                    assert_eq!(*prior_failure_count, 4);
                    let second = event.occurred_at.as_second() - START_SECOND;
                    assert_eq!((second / ROUND_SECONDS) % 10, 4);
                }
            }
        }
        // Steady state: every period ends with no game tracked.
        assert!(state.is_empty());
    }

    #[test]
    fn prune_100k_tracks_100k_games_and_keeps_half() {
        let workload = PruneWorkload::prune_100k();
        assert_eq!(workload.state().len(), 100_000);
        assert!(
            workload
                .state()
                .games()
                .all(|(_, game)| game.consecutive_failures() == 1 && !game.failure_published())
        );
        assert_eq!(workload.running().len(), 50_000);
        let pruned = healthprobe_core::prune(
            workload.state().clone(),
            workload.running().iter().map(String::as_str),
        );
        assert_eq!(pruned.len(), 50_000);
        assert!(
            workload
                .running()
                .iter()
                .all(|id| pruned.game(id).is_some())
        );
    }

    #[test]
    fn journal_replays_to_the_events_of_the_workload() {
        let outcomes = 20 * 1_000 + 500; // two periods and half a round
        let journal = ReplayJournal::write_step_mixed(outcomes).expect("temp dir is writable");
        assert_eq!(journal.outcomes(), outcomes);
        let lines = std::fs::read_to_string(journal.path()).expect("journal was written");
        assert_eq!(lines.lines().count() as u64, outcomes);
        assert_eq!(
            lines.lines().next(),
            Some(
                r#"{"type":"outcome","game_id":"game-000000","container_id":"container-000000","observed_at":"2026-11-28T05:00:00Z","result":{"unhealthy":{"status":503,"error":"unexpected status 503"}}}"#
            )
        );

        let workload = Workload::step_mixed();
        let (_, expected) = replay(workload.policy(), workload.inputs(outcomes));
        assert_eq!(expected.len(), 4_000);
        let mut expected_jsonl = Vec::new();
        for event in &expected {
            serde_json::to_writer(&mut expected_jsonl, event).expect("events serialize");
            expected_jsonl.push(b'\n');
        }

        let file = File::open(journal.path()).expect("journal exists");
        let mut printed = Vec::new();
        let (_, summary) = replay_journal(
            workload.policy(),
            BufReader::new(file),
            "journal",
            &mut printed,
        )
        .expect("the journal replays");
        assert_eq!(summary.inputs, outcomes);
        assert_eq!(summary.events, 4_000);
        assert_eq!(printed, expected_jsonl);

        let path = journal.path().to_owned();
        drop(journal);
        assert!(!path.exists(), "the journal is removed on drop");
    }
}
