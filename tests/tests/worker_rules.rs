//! The worker against real engines on loopback, one test per rule of
//! DESIGN.md (R1–R13, D1–D3). Each drives `Worker::tick` (or `run`) with
//! in-memory adapters and a manual clock, and asserts the events.

use std::thread;
use std::time::{Duration, Instant};

use healthprobe_core::{EventType, HealthEvent};
use healthprobe_shell::Shutdown;
use healthprobe_shell::config::WorkerConfig;
use healthprobe_shell::driver::worker::{Ports, TickReport, Worker, probe_fanout};
use healthprobe_shell::probing::connections::ConnectionPolicy;
use healthprobe_shell::tls::TlsClient;
use healthprobe_tests::{
    Behaviour, Fleet, Gate, HANG_GUARD, Runtime, RuntimeRecord, TestEngine, TestWorker, at,
    both_runtimes, probe_failed, probe_recovered, test_config, wait_until,
};

/// Long enough for anything that should happen at once.
const SOON: Duration = Duration::from_secs(10);

fn status_error(status: u16) -> String {
    format!("unexpected status {status}")
}

/// Run `ticks` ticks; check each one's events (sorted by game) against `expected[i]`.
fn check_ticks(worker: &mut TestWorker, expected: &[Vec<HealthEvent>]) {
    for (index, expected) in expected.iter().enumerate() {
        let (_, events) = worker.tick();
        assert_eq!(&events, expected, "tick {index}");
    }
}

both_runtimes! {
    fn r1_only_status_200_is_a_success(runtime) {
        let statuses = [200, 201, 204, 301, 404, 500, 503];
        let fleet = Fleet::start(statuses.map(Behaviour::Status)).unwrap();
        let mut worker = TestWorker::with_runtime(runtime, test_config(1, 1), fleet.records());
        let (report, events) = worker.tick();

        let expected: Vec<HealthEvent> = statuses
            .iter()
            .enumerate()
            .filter(|(_, status)| **status != 200)
            .map(|(index, &status)| {
                probe_failed(
                    &Fleet::game_id(index),
                    &Fleet::container_id(index),
                    at(0),
                    1,
                    status,
                    &status_error(status),
                )
            })
            .collect();
        assert_eq!(events, expected);
        assert_eq!(worker.failures("g0"), None, "a success holds no state");
        assert_eq!((report.probes, report.failed_probes), (7, 6));
    }

    fn r1_no_response_is_status_0_with_a_readable_error(runtime) {
        let fleet = Fleet::start([Behaviour::Close, Behaviour::Hang]).unwrap();
        let mut worker = TestWorker::with_runtime(runtime, test_config(1, 1), fleet.records());
        let (_, events) = worker.tick();
        assert_eq!(
            events,
            [
                probe_failed(
                    "g0",
                    "c0",
                    at(0),
                    1,
                    0,
                    "connection closed before a complete response"
                ),
                probe_failed("g1", "c1", at(0), 1, 0, "timeout"),
            ]
        );
    }

    fn r2_trailing_slashes_are_trimmed_and_exactly_healthz_is_probed(runtime) {
        let engine = TestEngine::start(Behaviour::Status(200)).unwrap();
        let prefixed = TestEngine::start(Behaviour::Status(200)).unwrap();
        let records = vec![
            RuntimeRecord::running("g0", "c0", format!("{}///", engine.url())),
            RuntimeRecord::running("g1", "c1", format!("{}/engine//", prefixed.url())),
        ];
        let mut worker = TestWorker::with_runtime(runtime, test_config(1, 1), records);
        let (report, events) = worker.tick();
        assert_eq!((report.probes, report.failed_probes), (2, 0));
        assert_eq!(events, []);

        assert_eq!(engine.paths(), ["/healthz"]);
        assert_eq!(prefixed.paths(), ["/engine/healthz"]);
        let request = &engine.seen()[0];
        assert_eq!(request.method, "GET");
        assert_eq!(
            request.host.as_deref(),
            Some(engine.addr().to_string().as_str())
        );
    }

    fn r3_to_r7_hysteresis_end_to_end_through_tick(runtime) {
        let engine = TestEngine::start(Behaviour::Script(vec![
            Behaviour::Close,       // 0: R3 counter 1 (state created)
            Behaviour::Status(503), // 1: counter 2
            Behaviour::Status(503), // 2: R4 counter 3 = threshold: probe_failed
            Behaviour::Status(500), // 3: R5 counts on, emits nothing
            Behaviour::Status(200), // 4: R7 probe_recovered with 4, reset
            Behaviour::Status(200), // 5: R6 no state: nothing
            Behaviour::Status(503), // 6: counter 1
            Behaviour::Status(200), // 7: R6 not published: reset
            Behaviour::Status(503), // 8: counter 1 again
            Behaviour::Status(503), // 9: counter 2
            Behaviour::Status(404), // 10: counter 3: probe_failed again
        ]))
        .unwrap();
        let records = vec![RuntimeRecord::running("g1", "c1", engine.url())];
        let mut worker = TestWorker::with_runtime(runtime, test_config(3, 1), records);

        let counters: Vec<Option<u64>> = (0..11)
            .map(|tick| {
                let (_, events) = worker.tick();
                let seconds = 5 * tick;
                let expected = match tick {
                    2 => vec![probe_failed(
                        "g1",
                        "c1",
                        at(seconds),
                        3,
                        503,
                        &status_error(503),
                    )],
                    4 => vec![probe_recovered("g1", "c1", at(seconds), 4)],
                    10 => vec![probe_failed(
                        "g1",
                        "c1",
                        at(seconds),
                        3,
                        404,
                        &status_error(404),
                    )],
                    _ => vec![],
                };
                assert_eq!(events, expected, "tick {tick}");
                worker.failures("g1")
            })
            .collect();
        assert_eq!(
            counters,
            [
                Some(1),
                Some(2),
                Some(3),
                Some(4),
                None,
                None,
                Some(1),
                None,
                Some(1),
                Some(2),
                Some(3)
            ]
        );
        assert_eq!(engine.requests(), 11);
    }

    fn d1_recovery_threshold_needs_consecutive_successes(runtime) {
        let engine = TestEngine::start(Behaviour::Script(vec![
            Behaviour::Status(503), // counter 1
            Behaviour::Status(503), // counter 2: probe_failed
            Behaviour::Status(200), // 1 success of 2
            Behaviour::Status(503), // streak broken, counter 3
            Behaviour::Status(200), // 1 success of 2
            Behaviour::Status(200), // 2 of 2: probe_recovered with 3
        ]))
        .unwrap();
        let records = vec![RuntimeRecord::running("g1", "c1", engine.url())];
        let mut worker = TestWorker::with_runtime(runtime, test_config(2, 2), records);
        check_ticks(
            &mut worker,
            &[
                vec![],
                vec![probe_failed("g1", "c1", at(5), 2, 503, &status_error(503))],
                vec![],
                vec![],
                vec![],
                vec![probe_recovered("g1", "c1", at(25), 3)],
            ],
        );
    }

    fn r8_a_game_removed_from_the_store_is_forgotten_and_starts_clean_when_back(runtime) {
        let fleet = Fleet::uniform(2, Behaviour::Status(503)).unwrap();
        let records = fleet.records();
        let mut worker = TestWorker::with_runtime(runtime, test_config(3, 1), records.clone());
        check_ticks(&mut worker, &[vec![], vec![]]);
        assert_eq!(
            (worker.failures("g0"), worker.failures("g1")),
            (Some(2), Some(2))
        );

        // g1 stops running: its counter goes at the next tick, before any probe.
        worker.store.set(vec![records[0].clone()]);
        let (_, events) = worker.tick();
        assert_eq!(
            events,
            [probe_failed("g0", "c0", at(10), 3, 503, &status_error(503))]
        );
        assert_eq!(worker.failures("g1"), None);
        assert_eq!(fleet.engine(1).requests(), 2, "g1 is not probed while gone");

        // Back: it needs three fresh failures again.
        worker.store.set(records);
        check_ticks(
            &mut worker,
            &[
                vec![],
                vec![],
                vec![probe_failed("g1", "c1", at(25), 3, 503, &status_error(503))],
            ],
        );
        assert_eq!(fleet.engine(1).requests(), 5);
    }

    fn r8_a_stopped_record_is_not_running_and_is_pruned(runtime) {
        let engine = TestEngine::start(Behaviour::Status(503)).unwrap();
        let record = RuntimeRecord::running("g1", "c1", engine.url());
        let mut worker = TestWorker::with_runtime(runtime, test_config(2, 1), vec![record.clone()]);
        check_ticks(&mut worker, &[vec![]]);
        worker.store.set(vec![RuntimeRecord {
            status: "stopped".to_owned(),
            ..record.clone()
        }]);
        let (report, events) = worker.tick();
        assert_eq!((report.games, events.len()), (0, 0));
        assert_eq!(worker.failures("g1"), None);
        worker.store.set(vec![record]);
        check_ticks(
            &mut worker,
            &[
                vec![],
                vec![probe_failed("g1", "c1", at(15), 2, 503, &status_error(503))],
            ],
        );
    }

    fn r9_a_listing_error_skips_the_tick_and_leaves_the_state_untouched(runtime) {
        let engine = TestEngine::start(Behaviour::Status(503)).unwrap();
        let records = vec![RuntimeRecord::running("g1", "c1", engine.url())];
        let mut worker = TestWorker::with_runtime(runtime, test_config(3, 1), records);
        check_ticks(&mut worker, &[vec![], vec![]]);
        let before = worker.worker.states().clone();

        worker.store.fail_next(2);
        for _ in 0..2 {
            let (report, events) = worker.tick();
            assert!(report.skipped, "{report:?}");
            assert_eq!((report.games, report.probes, events.len()), (0, 0, 0));
        }
        assert_eq!(worker.worker.states(), &before);
        assert_eq!(engine.requests(), 2, "nothing probed while listing fails");

        // The third failure counts on from before the skipped ticks.
        let (report, events) = worker.tick();
        assert!(!report.skipped);
        assert_eq!(
            events,
            [probe_failed("g1", "c1", at(20), 3, 503, &status_error(503))]
        );
    }

    fn r10_at_most_max_concurrency_probes_are_in_flight(runtime) {
        let fleet = Fleet::uniform(12, Behaviour::Hang).unwrap();
        let config = WorkerConfig {
            probe_timeout: Duration::from_millis(300),
            max_concurrency: 3,
            ..test_config(1, 1)
        };
        let mut worker = TestWorker::with_runtime(runtime, config, fleet.records());
        let started = Instant::now();
        let (report, events) = worker.tick();
        let took = started.elapsed();

        assert_eq!(fleet.gauge().total(), 12, "every engine was probed");
        assert_eq!(
            fleet.gauge().peak(),
            3,
            "at most 3 in flight, and 3 reached"
        );
        assert_eq!((report.probes, report.failed_probes), (12, 12));
        let expected: Vec<HealthEvent> = (0..12)
            .map(|index| {
                probe_failed(
                    &Fleet::game_id(index),
                    &Fleet::container_id(index),
                    at(0),
                    1,
                    0,
                    "timeout",
                )
            })
            .collect();
        let mut events = events;
        events.sort_by_key(|event| event.game_id[1..].parse::<usize>().unwrap_or(usize::MAX));
        assert_eq!(events, expected);
        // Four waves of three hung probes, each ended by its timeout (the
        // events above); the wall time is bounded only against a hang.
        assert!(took < HANG_GUARD, "tick took {took:?}");
    }

    fn r10_a_hung_engine_costs_one_probe_timeout_not_more(runtime) {
        let mut behaviours = vec![Behaviour::Hang];
        behaviours.extend(std::iter::repeat_n(Behaviour::Status(200), 20));
        let fleet = Fleet::start(behaviours).unwrap();
        let config = WorkerConfig {
            // Twelve times what the twenty healthy probes took together on
            // the loaded machine.
            probe_timeout: Duration::from_secs(2),
            max_concurrency: 4,
            ..test_config(1, 1)
        };
        let mut worker = TestWorker::with_runtime(runtime, config, fleet.records());
        // The hung probe holds one slot; the others go on meanwhile: every
        // engine has its request while the hung connection is still open.
        let (took, (report, events), hung_when_all_probed) = thread::scope(|scope| {
            let watcher = scope.spawn(|| {
                let all = wait_until(HANG_GUARD, || fleet.requests() == 21);
                all.then(|| fleet.gauge().open())
            });
            let started = Instant::now();
            let ticked = worker.tick();
            (started.elapsed(), ticked, watcher.join().expect("watcher"))
        });
        assert_eq!(
            hung_when_all_probed,
            Some(1),
            "the healthy engines waited for the hung probe to end"
        );
        assert_eq!((report.probes, report.failed_probes), (21, 1));
        assert_eq!(events, [probe_failed("g0", "c0", at(0), 1, 0, "timeout")]);
        // Ended by its timeout (the event) and not retried; the wall time is
        // bounded only against a hang.
        assert_eq!(fleet.engine(0).requests(), 1);
        assert!(took < HANG_GUARD, "tick took {took:?}");
        assert_eq!(fleet.requests(), 21);
    }

    fn r12_events_carry_the_current_container_and_the_injected_clock(runtime) {
        let engine = TestEngine::start(Behaviour::Status(503)).unwrap();
        let record = |container: &str| RuntimeRecord::running("g1", container, engine.url());
        let mut worker = TestWorker::with_runtime(runtime, test_config(2, 1), vec![record("c1")]);
        check_ticks(&mut worker, &[vec![]]);

        // The container changes between failures: the event names the current one.
        worker.store.set(vec![record("c2")]);
        check_ticks(
            &mut worker,
            &[vec![probe_failed(
                "g1",
                "c2",
                at(5),
                2,
                503,
                &status_error(503),
            )]],
        );
        worker.store.set(vec![record("c3")]);
        engine.set(Behaviour::Status(200));
        worker.clock.set(at(3600));
        let (_, events) = worker.tick();
        assert_eq!(events, [probe_recovered("g1", "c3", at(3600), 2)]);

        let event_json = serde_json::to_value(&events[0]).unwrap();
        assert_eq!(
            event_json,
            serde_json::json!({
                "game_id": "g1", "container_id": "c3", "event_type": "probe_recovered",
                "occurred_at": "2026-11-28T06:00:00Z", "details": {"prior_failure_count": 2},
            })
        );
    }

    fn r12_telemetry_counts_one_per_delivered_event_by_type(runtime) {
        let fleet = Fleet::start([
            Behaviour::Script(vec![Behaviour::Status(500), Behaviour::Status(200)]),
            Behaviour::Status(503),
            Behaviour::Status(200),
        ])
        .unwrap();
        let mut worker = TestWorker::with_runtime(runtime, test_config(1, 1), fleet.records());
        let (first, _) = worker.tick();
        let (second, _) = worker.tick();
        assert_eq!((first.events, second.events), (2, 1));
        assert_eq!(worker.telemetry.count(EventType::ProbeFailed), 2);
        assert_eq!(worker.telemetry.count(EventType::ProbeRecovered), 1);

        // A refused delivery is not counted.
        fleet.engine(2).set(Behaviour::Status(500));
        worker.publisher.fail_next(1);
        let (report, events) = worker.tick();
        assert_eq!((report.events, events.len()), (1, 0));
        assert_eq!(worker.telemetry.count(EventType::ProbeFailed), 2);
    }

    // R13 cadence and overruns are asserted exactly on a virtual clock in
    // tests/virtual_time.rs; here, shutdown against real engines.

    fn r13_shutdown_mid_tick_returns_after_the_probes_in_flight(runtime) {
        // Every answer waits for the gate: the first probe is in flight
        // when the shutdown comes, however slow this machine is.
        let gate = Gate::new();
        let gated = Behaviour::Gated {
            gate: gate.clone(),
            status: 503,
        };
        let fleet = Fleet::uniform(4, gated).unwrap();
        let config = WorkerConfig {
            interval: Duration::from_secs(3600),
            // Never reached: the probe ends when the gate opens.
            probe_timeout: Duration::from_secs(60),
            max_concurrency: 1,
            ..test_config(1, 1)
        };
        let mut worker = TestWorker::with_runtime(runtime, config, fleet.records());
        let publisher = worker.publisher.clone();
        let shutdown = Shutdown::new();
        let running = {
            let shutdown = shutdown.clone();
            thread::spawn(move || {
                let mut ticks: Vec<TickReport> = Vec::new();
                let run = worker
                    .worker
                    .run(&shutdown, |tick| ticks.push(tick.clone()));
                (run, ticks)
            })
        };
        assert!(fleet.engine(0).wait_for_requests(1, SOON));
        shutdown.trigger();
        gate.open();
        let (run, ticks) = running.join().expect("run returns");

        // The probe in flight finished and its event was published before `run` returned.
        assert_eq!(
            publisher.events(),
            [probe_failed("g0", "c0", at(0), 1, 503, &status_error(503))]
        );
        assert_eq!(fleet.requests(), 1, "no new probe after the shutdown");
        assert_eq!(run.ticks, 1);
        assert!(ticks[0].interrupted && ticks[0].probes == 1, "{ticks:?}");
    }

    fn r13_run_returns_at_once_when_shutdown_is_already_triggered(runtime) {
        let engine = TestEngine::start(Behaviour::Status(200)).unwrap();
        let mut worker = TestWorker::with_runtime(runtime,
            test_config(1, 1),
            vec![RuntimeRecord::running("g1", "c1", engine.url())],
        );
        let shutdown = Shutdown::new();
        shutdown.trigger();
        let run = worker.worker.run(&shutdown, |_| panic!("no tick"));
        assert_eq!(run.ticks, 0);
        assert_eq!(engine.requests(), 0);
    }

    fn r11_invalid_settings_are_refused_naming_the_field(runtime) {
        type Spoil = fn(&mut WorkerConfig);
        let cases: [(Spoil, &str); 5] = [
            (|c| c.interval = Duration::ZERO, "interval"),
            (|c| c.probe_timeout = Duration::ZERO, "probe_timeout"),
            (|c| c.failures_threshold = 0, "failures_threshold"),
            (|c| c.recovery_threshold = 0, "recovery_threshold"),
            (|c| c.max_concurrency = 0, "max_concurrency"),
        ];
        for (spoil, field) in cases {
            let mut config = test_config(3, 1);
            spoil(&mut config);
            let fanout = probe_fanout(runtime, &config, TlsClient::system(), ConnectionPolicy::fresh())
                .expect("the runtime starts");
            let ports = Ports::new(
                healthprobe_shell::adapters::MemoryStore::new(),
                healthprobe_shell::adapters::MemoryPublisher::new(),
                healthprobe_shell::adapters::CountingTelemetry::new(),
                healthprobe_shell::driver::ports::SystemClock,
            )
            .with_fanout(fanout);
            let err = Worker::new(config, ports).expect_err(field);
            assert!(err.to_string().starts_with(field), "{field}: {err}");
        }
    }

    fn d2_a_redirect_to_another_healthy_engine_is_not_followed(runtime) {
        let healthy = TestEngine::start(Behaviour::Status(200)).unwrap();
        let redirecting = TestEngine::start(Behaviour::Redirect(healthy.healthz_url())).unwrap();
        let looping = TestEngine::start(Behaviour::RedirectLoop).unwrap();
        let records = vec![
            RuntimeRecord::running("g1", "c1", redirecting.url()),
            RuntimeRecord::running("g2", "c2", looping.url()),
        ];
        let mut worker = TestWorker::with_runtime(runtime, test_config(1, 1), records);
        let (_, events) = worker.tick();
        assert_eq!(
            events,
            [
                probe_failed("g1", "c1", at(0), 1, 302, &status_error(302)),
                probe_failed("g2", "c2", at(0), 1, 302, &status_error(302)),
            ]
        );
        assert_eq!(
            healthy.requests(),
            0,
            "the redirect target is never contacted"
        );
        assert_eq!(redirecting.requests(), 1);
        assert_eq!(looping.requests(), 1, "the loop is not followed even once");
    }

    fn d3_a_game_listed_twice_is_probed_once(runtime) {
        let first = TestEngine::start(Behaviour::Status(503)).unwrap();
        let second = TestEngine::start(Behaviour::Status(503)).unwrap();
        let other = TestEngine::start(Behaviour::Status(200)).unwrap();
        let records = vec![
            RuntimeRecord::running("g1", "c1", first.url()),
            RuntimeRecord::running("g2", "c2", other.url()),
            RuntimeRecord::running("g1", "c1", first.url()),
            RuntimeRecord::running("g1", "c1-other", second.url()),
        ];
        let mut worker = TestWorker::with_runtime(runtime, test_config(1, 1), records);
        let (report, events) = worker.tick();
        assert_eq!((report.records, report.games, report.probes), (4, 2, 2));
        assert_eq!(first.requests(), 1);
        assert_eq!(second.requests(), 0, "the first record of a game wins");
        assert_eq!(
            events,
            [probe_failed("g1", "c1", at(0), 1, 503, &status_error(503))]
        );
    }

    fn r10_every_game_is_probed_exactly_once_per_tick_in_a_large_fleet(runtime) {
        let fleet = Fleet::uniform(400, Behaviour::Status(200)).unwrap();
        let mut worker = TestWorker::with_runtime(runtime, test_config(1, 1), fleet.records());
        for tick in 1..=2 {
            let (report, events) = worker.tick();
            assert_eq!(
                (report.games, report.probes, report.failed_probes),
                (400, 400, 0)
            );
            assert_eq!(events, []);
            let counts: Vec<usize> = fleet.engines().iter().map(TestEngine::requests).collect();
            assert!(
                counts.iter().all(|&count| count == tick),
                "tick {tick}: {counts:?}"
            );
        }
    }

    fn r2_a_localhost_endpoint_reaches_the_engine(runtime) {
        let engine = TestEngine::start(Behaviour::Status(200)).unwrap();
        let endpoint = format!("http://localhost:{}/", engine.addr().port());
        let mut worker = TestWorker::with_runtime(runtime,
            test_config(1, 1),
            vec![RuntimeRecord::running("g1", "c1", endpoint)],
        );
        let (report, events) = worker.tick();
        assert_eq!((report.probes, report.failed_probes), (1, 0), "{events:?}");
        assert_eq!(engine.paths(), ["/healthz"]);
    }
}

/// Async only: the threads runtime keeps listing order.
#[test]
fn async_probes_games_with_a_failure_counted_first() {
    let fleet = Fleet::start([
        Behaviour::Status(200),
        Behaviour::Status(200),
        Behaviour::Status(503),
    ])
    .unwrap();
    let config = WorkerConfig {
        max_concurrency: 1,
        ..test_config(3, 1)
    };
    let mut worker = TestWorker::with_runtime(Runtime::Async, config, fleet.records());
    // Tick 0 in listing order; g2 fails and holds state. Tick 1: g2 first.
    check_ticks(&mut worker, &[vec![], vec![]]);
    let second_probe = |index: usize| fleet.engine(index).seen()[1].at;
    assert!(
        second_probe(2) < second_probe(0) && second_probe(2) < second_probe(1),
        "the failing game is probed first"
    );
    let first_probe = |index: usize| fleet.engine(index).seen()[0].at;
    assert!(first_probe(0) < first_probe(1) && first_probe(1) < first_probe(2));
}
