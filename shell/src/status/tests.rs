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
            .map(|(id, _)| RuntimeRecord::running(*id, format!("c-{id}"), format!("http://{id}/")))
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
    assert_eq!(g1.recent[1].error.as_deref(), Some("connection refused"));
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
        .map(|outcome| outcome.error.as_ref().expect("an error"))
        .collect();
    assert!(Arc::ptr_eq(errors[0], errors[1]));
    let snapshot = run.tick(&[("g1", 503)]);
    let g1 = game(&snapshot, "g1");
    assert_eq!(g1.recent[2].error.as_deref(), Some("unexpected status 503"));
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
    let query = StatusQuery::parse(Some("state=failing&limit=7&offset=14")).expect("valid");
    let page = snapshot.page(&query);
    assert_eq!(page.matched, 20);
    assert_eq!(page.games.len(), 6);
    assert_eq!(page.next_offset, None);
    assert_eq!(&*page.games[0].game_id, "g18");
    let query = StatusQuery::parse(Some("limit=7")).expect("valid");
    let page = snapshot.page(&query);
    assert_eq!((page.games.len(), page.next_offset), (7, Some(7)));
    let query = StatusQuery::parse(Some("game=g03")).expect("valid");
    let json: serde_json::Value = serde_json::from_str(&snapshot.to_json(&query)).expect("JSON");
    assert_eq!(json["matched"], 1);
    assert_eq!(json["games"][0]["game_id"], "g03");
    assert_eq!(json["games"][0]["state"], "failing");
    assert_eq!(json["totals"]["failing"], 20);
    assert_eq!(json["totals"]["healthy"], 5);
    assert_eq!(json["run"]["failures_threshold"], 1);
    let query = StatusQuery::parse(Some("state=healthy")).expect("valid");
    assert_eq!(
        snapshot.page(&query).matched,
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
            outcome.error = Some(Arc::from(format!(
                "malformed response: {lossy} </td></tr></table><script>x</script>"
            )));
        }
    }
    snapshot
}
