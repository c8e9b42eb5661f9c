//! `PostgresRecords` and `healthprobe run --records postgres://…` against a
//! real PostgreSQL on loopback ([`TestPostgres`]), engines included: which
//! rows are listed, what an outage does (R9: ticks skipped with a warning,
//! state kept, probing resumed when the database is back) and how bad URLs
//! and unreachable servers are reported (clearly, without the password).

use std::time::{Duration, Instant};

use healthprobe_core::HealthEvent;
use healthprobe_shell::adapters::{
    CountingTelemetry, ManualClock, MemoryPublisher, PostgresRecords,
};
use healthprobe_shell::driver::ports::{ListError, RuntimeRecordStore};
use healthprobe_shell::driver::worker::{Ports, TickReport, Worker};
use healthprobe_tests::{
    Behaviour, Fleet, HealthprobeProcess, RuntimeRecord, TestPostgres, at, free_port, metrics_addr,
    probe_failed, probe_recovered, scrape_metrics, test_config, wait_until,
};

/// Bound on any wait in these tests; reached only when something is broken.
const PATIENCE: Duration = Duration::from_secs(20);

/// The bound the library tests give each listing: an outage costs a tick at most this.
const LISTING_BOUND: Duration = Duration::from_secs(2);

/// A worker listing from `url`, publishing to memory, on a manual clock
/// that moves 5 s per [`Rig::tick`] (tick `n` stamps its events `START + 5n s`).
struct Rig {
    worker: Worker,
    publisher: MemoryPublisher,
    clock: ManualClock,
}

impl Rig {
    fn new(url: &str, failures_threshold: u32, recovery_threshold: u32) -> Self {
        let store = PostgresRecords::with_timeout(url, LISTING_BOUND).expect("a valid URL");
        let publisher = MemoryPublisher::new();
        let clock = ManualClock::new(at(0));
        let ports = Ports::new(
            store,
            publisher.clone(),
            CountingTelemetry::new(),
            clock.clone(),
        );
        let worker = Worker::new(test_config(failures_threshold, recovery_threshold), ports)
            .expect("a valid config");
        Self {
            worker,
            publisher,
            clock,
        }
    }

    fn tick(&mut self) -> (TickReport, Vec<HealthEvent>) {
        let report = self.worker.tick();
        self.clock.advance(Duration::from_secs(5));
        let mut events = self.publisher.take_events();
        events.sort_by(|a, b| a.game_id.cmp(&b.game_id));
        (report, events)
    }

    fn failures(&self, game_id: &str) -> Option<u64> {
        self.worker
            .states()
            .game(game_id)
            .map(|game| game.consecutive_failures())
    }
}

#[test]
fn only_running_rows_are_listed_in_game_id_order_and_rows_with_null_columns_left_out() {
    let postgres = TestPostgres::start_fresh();
    postgres.upsert(&RuntimeRecord::running("g2", "c2", "http://127.0.0.1:2/"));
    postgres.upsert(&RuntimeRecord::running("g1", "c1", "http://127.0.0.1:1/"));
    postgres.upsert_row(
        "g3",
        Some("c3"),
        Some("http://127.0.0.1:3/"),
        Some("stopped"),
    );
    postgres.upsert_row("g4", Some("c4"), Some("http://127.0.0.1:4/"), None);
    postgres.upsert_row("g5", Some("c5"), None, Some("running"));
    postgres.upsert_row("g6", None, Some("http://127.0.0.1:6/"), Some("running"));
    postgres.upsert_row(
        "g7",
        Some("c7"),
        Some("http://127.0.0.1:7/"),
        Some("Running"),
    );
    let mut store = PostgresRecords::new(&postgres.url()).expect("a valid URL");
    assert!(!store.is_connected(), "connected lazily");
    let listed = store.list_running().expect("the table lists");
    assert_eq!(
        listed,
        vec![
            RuntimeRecord::running("g1", "c1", "http://127.0.0.1:1/"),
            RuntimeRecord::running("g2", "c2", "http://127.0.0.1:2/"),
        ]
    );
    assert!(store.is_connected());
    // Every listing reads the table afresh, on the same connection.
    postgres.execute("UPDATE runtime_records SET status = 'stopped' WHERE game_id = 'g1'");
    postgres.upsert_row(
        "g5",
        Some("c5"),
        Some("http://127.0.0.1:5/"),
        Some("running"),
    );
    assert_eq!(
        store.list_running().expect("the table lists"),
        vec![
            RuntimeRecord::running("g2", "c2", "http://127.0.0.1:2/"),
            RuntimeRecord::running("g5", "c5", "http://127.0.0.1:5/"),
        ]
    );
}

#[test]
fn r4_r5_engines_listed_in_postgres_are_probed_and_their_events_published() {
    let fleet = Fleet::start([Behaviour::Status(200), Behaviour::Status(503)]).expect("engines");
    let postgres = TestPostgres::start_fresh();
    for record in fleet.records() {
        postgres.upsert(&record);
    }
    // A stopped game's engine is never probed.
    let stopped = Fleet::start([Behaviour::Status(503)]).expect("engine");
    postgres.upsert_row(
        "g9",
        Some("c9"),
        Some(&stopped.engine(0).url()),
        Some("stopped"),
    );
    let mut rig = Rig::new(&postgres.url(), 2, 1);
    let (report, events) = rig.tick();
    assert!(!report.skipped);
    assert_eq!((report.games, report.probes), (2, 2));
    assert_eq!(events, vec![]);
    let (_, events) = rig.tick();
    assert_eq!(
        events,
        vec![probe_failed(
            "g1",
            "c1",
            at(5),
            2,
            503,
            "unexpected status 503"
        )]
    );
    assert_eq!(stopped.requests(), 0);
    fleet.engine(1).set(Behaviour::Status(200));
    let (_, events) = rig.tick();
    assert_eq!(events, vec![probe_recovered("g1", "c1", at(10), 2)]);
}

#[test]
fn r9_postgres_stopped_mid_run_skips_ticks_keeps_state_and_probing_resumes_on_restart() {
    let fleet = Fleet::start([Behaviour::Status(500)]).expect("engine");
    let mut postgres = TestPostgres::start_fresh();
    postgres.upsert(&fleet.record(0));
    let mut rig = Rig::new(&postgres.url(), 3, 1);
    let (report, _) = rig.tick();
    assert!(!report.skipped);
    assert_eq!(rig.failures("g0"), Some(1));

    postgres.stop();
    for _ in 0..2 {
        let started = Instant::now();
        let (report, events) = rig.tick();
        assert!(report.skipped, "{report:?}");
        assert_eq!((report.games, report.probes), (0, 0));
        assert_eq!(events, vec![]);
        assert!(
            started.elapsed() <= LISTING_BOUND + Duration::from_secs(1),
            "a skipped tick took {:?}",
            started.elapsed()
        );
        assert_eq!(rig.failures("g0"), Some(1), "state kept while skipped");
    }
    assert_eq!(fleet.engine(0).requests(), 1, "nothing probed while down");

    postgres.start();
    let (report, events) = rig.tick();
    assert!(!report.skipped, "reconnected after the restart: {report:?}");
    assert_eq!(events, vec![]);
    assert_eq!(
        rig.failures("g0"),
        Some(2),
        "counting went on from the kept state"
    );
    let (_, events) = rig.tick();
    assert_eq!(
        events,
        vec![probe_failed(
            "g0",
            "c0",
            at(20),
            3,
            500,
            "unexpected status 500"
        )]
    );
}

#[test]
fn r9_a_dropped_connection_fails_one_listing_and_the_next_reconnects() {
    let postgres = TestPostgres::start_fresh();
    postgres.upsert(&RuntimeRecord::running("g1", "c1", "http://127.0.0.1:1/"));
    let mut store = PostgresRecords::with_timeout(&postgres.url(), LISTING_BOUND).expect("valid");
    assert_eq!(store.list_running().expect("lists").len(), 1);
    postgres.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'healthprobe'",
    );
    match store.list_running() {
        Err(ListError::Unavailable(text)) => assert!(
            text.starts_with(&format!("postgres {}: ", postgres.url())),
            "{text}"
        ),
        other => panic!("a terminated connection must fail the listing: {other:?}"),
    }
    assert!(!store.is_connected(), "the broken client is dropped");
    assert_eq!(store.list_running().expect("reconnects").len(), 1);
}

#[test]
fn r9_cli_warns_while_postgres_is_down_and_events_resume_after_restart_then_exits_0_on_sigterm() {
    let fleet = Fleet::start([Behaviour::Status(500)]).expect("engine");
    let mut postgres = TestPostgres::start_fresh();
    postgres.upsert(&fleet.record(0));
    let url = postgres.url();
    let mut process = HealthprobeProcess::spawn(&[
        "run",
        "--records",
        &url,
        "--interval",
        "200ms",
        "--probe-timeout",
        "1s",
        "--failures-threshold",
        "1",
        "--recovery-threshold",
        "1",
        "--metrics-addr",
        "127.0.0.1:0",
    ])
    .expect("start healthprobe");
    let metrics = metrics_addr(&process, PATIENCE);
    assert!(
        process.wait_for_stdout(PATIENCE, |out| out.contains("\"probe_failed\"")),
        "no probe_failed; stderr:\n{}",
        process.stderr()
    );

    postgres.stop();
    // The engine recovers while the database is down: no tick probes it.
    fleet.engine(0).set(Behaviour::Status(200));
    let warning = format!(
        "postgres postgres://postgres@127.0.0.1:{}/postgres",
        postgres.port()
    );
    assert!(
        process.wait_for_stderr(PATIENCE, |err| {
            err.lines()
                .filter(|line| line.contains("tick skipped") && line.contains(&warning))
                .count()
                >= 2
        }),
        "no skipped ticks naming the server; stderr:\n{}",
        process.stderr()
    );
    assert!(process.is_running(), "an outage must not stop the worker");
    // The metrics count the skipped ticks (at each tick's end, after its
    // warning: wait for the second), and the game's state is kept.
    wait_until(PATIENCE, || {
        scrape_metrics(metrics).value("healthprobe_ticks_skipped_total") >= 2.0
    });
    let scraped = scrape_metrics(metrics);
    assert!(
        scraped.value("healthprobe_ticks_skipped_total") >= 2.0,
        "{scraped:?}"
    );
    assert_eq!(
        scraped.value("healthprobe_tracked_games"),
        1.0,
        "{scraped:?}"
    );
    assert!(
        !process.stdout().contains("probe_recovered"),
        "recovered while nothing could be listed:\n{}",
        process.stdout()
    );

    postgres.start();
    assert!(
        process.wait_for_stdout(PATIENCE, |out| out.contains("\"probe_recovered\"")),
        "no probe_recovered after the restart; stderr:\n{}",
        process.stderr()
    );
    process.terminate().expect("SIGTERM");
    let finished = process.wait(PATIENCE).expect("exits after SIGTERM");
    assert!(finished.status.success(), "{finished:?}");
    let events: Vec<&str> = finished
        .stdout
        .lines()
        .filter_map(|line| {
            ["probe_failed", "probe_recovered"]
                .into_iter()
                .find(|kind| line.contains(&format!("\"{kind}\"")))
        })
        .collect();
    assert_eq!(
        events,
        ["probe_failed", "probe_recovered"],
        "{}",
        finished.stdout
    );
}

#[test]
fn an_unreachable_database_at_start_exits_1_naming_it_without_the_password() {
    let port = free_port();
    let url = format!("postgresql://alice:Sup3r-s3cret@127.0.0.1:{port}/fleet");
    let finished = HealthprobeProcess::spawn(&["run", "--records", &url, "--ticks", "1"])
        .expect("start healthprobe")
        .wait(PATIENCE)
        .expect("exits");
    assert_eq!(finished.status.code(), Some(1), "{finished:?}");
    assert_eq!(
        finished.stderr,
        format!(
            "healthprobe: postgres postgres://alice@127.0.0.1:{port}/fleet: \
             error connecting to server: Connection refused (os error 111)\n"
        )
    );
    assert_eq!(finished.stdout, "");
}

#[test]
fn a_malformed_postgres_url_exits_2_naming_its_scheme_and_what_is_wrong() {
    // A URL that does not parse is never echoed, password or not.
    let finished = HealthprobeProcess::spawn(&[
        "run",
        "--records",
        "postgres://alice:Sup3r-s3cret@127.0.0.1:not-a-port/fleet",
    ])
    .expect("start healthprobe")
    .wait(PATIENCE)
    .expect("exits");
    assert_eq!(finished.status.code(), Some(2), "{finished:?}");
    assert_eq!(
        finished.stderr,
        "healthprobe: --records: invalid PostgreSQL URL postgres://…: invalid port number\n"
    );
    // One that parses but that the client refuses is shown with the password masked.
    let finished = HealthprobeProcess::spawn(&[
        "run",
        "--records",
        "postgres://alice:Sup3r-s3cret@127.0.0.1/fleet?connect_timeout=soon",
    ])
    .expect("start healthprobe")
    .wait(PATIENCE)
    .expect("exits");
    assert_eq!(finished.status.code(), Some(2), "{finished:?}");
    assert_eq!(
        finished.stderr,
        "healthprobe: --records: invalid PostgreSQL URL \
         postgres://alice:***@127.0.0.1/fleet?connect_timeout=soon: invalid connection string: \
         invalid value for option `connect_timeout`\n"
    );
}

#[test]
fn a_database_without_the_table_at_start_exits_1_with_the_servers_reason() {
    let postgres = TestPostgres::start_fresh();
    postgres.execute("DROP TABLE runtime_records");
    let finished = HealthprobeProcess::spawn(&["run", "--records", &postgres.url()])
        .expect("start healthprobe")
        .wait(PATIENCE)
        .expect("exits");
    assert_eq!(finished.status.code(), Some(1), "{finished:?}");
    assert_eq!(
        finished.stderr,
        format!(
            "healthprobe: postgres {}: ERROR: relation \"runtime_records\" does not exist (42P01)\n",
            postgres.url()
        )
    );
}
