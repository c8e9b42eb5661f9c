//! Hostile engines (issue 3): slowloris, a 200 KB header, a 1 GiB body,
//! garbage, an abrupt close, a hang, redirects and odd statuses. Each ends
//! its probe by the probe timeout at the latest (a `timeout` failure; the
//! tick's wall time is bounded only against a hang), never crashes the
//! worker, and ends in a failure with a readable error (or, for a 200 whose
//! body is huge, a success that reads none of it).

use std::time::{Duration, Instant};

use healthprobe_core::{EventDetails, HealthEvent};
use healthprobe_shell::config::WorkerConfig;
use healthprobe_tests::{
    Behaviour, Fleet, HANG_GUARD, HUGE_BODY_BYTES, RefusedPort, Runtime, RuntimeRecord, TestEngine,
    TestWorker, at, both_runtimes, probe_failed, test_config, wait_until,
};

const PROBE_TIMEOUT: Duration = Duration::from_millis(400);

fn config() -> WorkerConfig {
    WorkerConfig {
        probe_timeout: PROBE_TIMEOUT,
        ..test_config(1, 1)
    }
}

/// One tick against one engine behaving as `behaviour`: the event, the tick's duration.
fn probe_once(runtime: Runtime, behaviour: Behaviour) -> (TestEngine, Vec<HealthEvent>, Duration) {
    let engine = TestEngine::start(behaviour).unwrap();
    let mut worker = TestWorker::with_runtime(
        runtime,
        config(),
        vec![RuntimeRecord::running("g1", "c1", engine.url())],
    );
    let started = Instant::now();
    let (report, events) = worker.tick();
    let took = started.elapsed();
    assert_eq!(report.probes, 1, "{report:?}");
    assert!(took < HANG_GUARD, "the tick took {took:?}");
    (engine, events, took)
}

/// The event is a `probe_failed` with no HTTP status and a one-line, readable error.
fn assert_no_response(events: &[HealthEvent]) -> String {
    let [event] = events else {
        panic!("one event expected: {events:?}");
    };
    let EventDetails::ProbeFailed {
        last_status,
        last_error,
        ..
    } = &event.details
    else {
        panic!("probe_failed expected: {event:?}");
    };
    assert_eq!(*last_status, 0, "{event:?}");
    assert!(readable(last_error), "unreadable error {last_error:?}");
    last_error.clone()
}

/// One short line of words, not a Debug dump.
fn readable(error: &str) -> bool {
    !error.is_empty()
        && error.len() < 200
        && !error.contains('\n')
        && !error.contains("Custom {")
        && !error.contains("kind:")
}

both_runtimes! {
    fn slowloris_headers_time_out_at_the_probe_timeout(runtime) {
        let (engine, events, _) = probe_once(runtime, Behaviour::Trickle);
        assert_eq!(assert_no_response(&events), "timeout");
        assert!(
            wait_until(Duration::from_secs(5), || engine.serving() == 0),
            "the prober hung up"
        );
    }

    fn a_200_kb_response_header_is_refused(runtime) {
        let (_, events, _) = probe_once(runtime, Behaviour::HugeHeader);
        let error = assert_no_response(&events);
        assert!(error.contains("header"), "{error}");
    }

    fn a_1_gib_body_is_not_read(runtime) {
        let (engine, events, _) = probe_once(runtime, Behaviour::HugeBody);
        // Not awaited: a success (a probe held past its timeout would fail),
        // the connection closed and most of the body never sent.
        assert_eq!(events, [], "a 200 is a success whatever its body (R1)");
        assert!(
            wait_until(Duration::from_secs(5), || engine.serving() == 0),
            "the prober closed the connection"
        );
        let sent = engine.bytes_sent();
        assert!(
            sent < HUGE_BODY_BYTES / 16,
            "{sent} bytes of the body went out"
        );
    }

    fn garbage_is_a_readable_protocol_failure(runtime) {
        let (_, events, _) = probe_once(runtime, Behaviour::Garbage);
        let error = assert_no_response(&events);
        // Both probers word it alike (probe_class.rs counts it as `other`).
        assert_eq!(error, "malformed response: http parse fail: invalid HTTP version");
    }

    fn an_abrupt_close_is_a_readable_failure(runtime) {
        let (_, events, _) = probe_once(runtime, Behaviour::Close);
        assert_eq!(
            assert_no_response(&events),
            "connection closed before a complete response"
        );
    }

    fn a_hang_times_out_at_the_probe_timeout(runtime) {
        let (engine, events, took) = probe_once(runtime, Behaviour::Hang);
        assert_eq!(assert_no_response(&events), "timeout");
        assert!(took >= PROBE_TIMEOUT / 2, "gave up early: {took:?}");
        assert!(wait_until(Duration::from_secs(5), || engine.hung() == 0));
    }

    fn a_closed_port_is_connection_refused(runtime) {
        // A port bound but never listening, held for the whole test: every
        // connection to it is refused, and no other test can take it.
        let refused = RefusedPort::new();
        let mut worker = TestWorker::with_runtime(
            runtime,
            config(),
            vec![RuntimeRecord::running("g1", "c1", refused.url())],
        );
        let (report, events) = worker.tick();
        assert_eq!(report.probes, 1, "{report:?}");
        assert_eq!(
            events,
            [probe_failed("g1", "c1", at(0), 1, 0, "connection refused")],
            "one probe_failed naming the refusal, not a timeout"
        );
    }

    fn odd_statuses_are_failures_with_their_status(runtime) {
        for status in [100, 101, 199, 204, 304, 418, 599, 999] {
            let (_, events, _) = probe_once(runtime, Behaviour::Status(status));
            let expected = format!("unexpected status {status}");
            match &events[..] {
                [
                    HealthEvent {
                        details:
                            EventDetails::ProbeFailed {
                                last_status,
                                last_error,
                                ..
                            },
                        ..
                    },
                ] => {
                    // A 1xx is interim: a client may wait past it or reject it.
                    if (100..200).contains(&status) && *last_status == 0 {
                        assert!(readable(last_error), "{status}: {last_error:?}");
                    } else {
                        assert_eq!((*last_status, last_error), (status, &expected));
                    }
                }
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    fn a_hostile_fleet_costs_one_probe_timeout_per_tick_and_healthy_engines_stay_healthy(runtime) {
        let target = TestEngine::start(Behaviour::Status(200)).unwrap();
        let mut behaviours = Behaviour::hostile(&target);
        behaviours.push(Behaviour::Status(503));
        behaviours.extend(std::iter::repeat_n(Behaviour::Status(200), 6));
        let fleet = Fleet::start(behaviours).unwrap();
        let mut worker = TestWorker::with_runtime(runtime,
            WorkerConfig {
                failures_threshold: 3,
                ..config()
            },
            fleet.records(),
        );
        for tick in 0..3 {
            let started = Instant::now();
            let (report, events) = worker.tick();
            let took = started.elapsed();
            assert!(took < HANG_GUARD, "tick {tick} took {took:?}");
            assert_eq!((report.probes, report.failed_probes), (15, 8), "{report:?}");
            let failed: Vec<&str> = events.iter().map(|e| e.game_id.as_str()).collect();
            let expected: &[&str] = if tick == 2 {
                &["g0", "g1", "g3", "g4", "g5", "g6", "g7", "g8"]
            } else {
                &[]
            };
            assert_eq!(failed, expected, "tick {tick}");
        }
        assert_eq!(target.requests(), 0, "no redirect was followed");
        for index in 9..15 {
            assert_eq!(fleet.engine(index).requests(), 3);
        }
    }

    fn response_heads_up_to_the_cap_are_accepted_and_larger_ones_refused(runtime) {
        let cap = healthprobe_shell::probing::probe::MAX_RESPONSE_HEADER_BYTES;
        let fleet = Fleet::start([
            Behaviour::PaddedHead(cap - 1),
            Behaviour::PaddedHead(cap),
            Behaviour::PaddedHead(cap + 1),
            Behaviour::PaddedHead(4 * cap),
        ])
        .unwrap();
        let mut worker = TestWorker::with_runtime(runtime, config(), fleet.records());
        let (report, events) = worker.tick();
        assert_eq!((report.probes, report.failed_probes), (4, 2), "{events:?}");
        let refused = format!("response header larger than {cap} bytes");
        assert_eq!(
            events,
            [
                probe_failed("g2", "c2", at(0), 1, 0, &refused),
                probe_failed("g3", "c3", at(0), 1, 0, &refused),
            ]
        );
    }
}
