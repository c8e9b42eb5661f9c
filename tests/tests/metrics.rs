//! `healthprobe run --metrics-addr`: the built binary over a fleet of real
//! engines on loopback, scraped over HTTP and parsed with a Prometheus text
//! parser; the counters must match the events file and what the fleet implies.

use std::net::TcpListener;
use std::time::Duration;

use healthprobe_tests::{
    Behaviour, Fleet, HealthprobeProcess, RefusedPort, RuntimeRecord, ScratchDir, both_runtimes,
    http_get, metrics_addr, scrape_metrics, wait_until, write_records_file,
};

/// Bound on any wait in these tests; reached only when something is broken.
const PATIENCE: Duration = Duration::from_secs(30);

both_runtimes! {
    fn the_scraped_counters_match_the_fleet_and_the_events_file(runtime) {
        // g0 healthy; g1 503; g2 hangs past the probe timeout; g3 answers
        // 503 twice then 200 (fails at tick 2, recovers at tick 3); g4 refused.
        let fleet = Fleet::start([
            Behaviour::Status(200),
            Behaviour::Status(503),
            Behaviour::Hang,
            Behaviour::Script(vec![
                Behaviour::Status(503),
                Behaviour::Status(503),
                Behaviour::Status(200),
            ]),
        ])
        .expect("start engines");
        let dir = ScratchDir::new("metrics").expect("scratch dir");
        let records = dir.join("records.json");
        let events = dir.join("events.jsonl");
        let mut listed = fleet.records();
        let refused = RefusedPort::new();
        listed.push(RuntimeRecord::running("g4", "c4", refused.url()));
        write_records_file(&records, &listed).expect("records file");
        let runtime_arg = match runtime {
            healthprobe_tests::Runtime::Threads => "threads",
            healthprobe_tests::Runtime::Async => "async",
        };
        let process = HealthprobeProcess::spawn(&[
            "run",
            "--records", records.to_str().expect("UTF-8 path"),
            "--events", events.to_str().expect("UTF-8 path"),
            "--runtime", runtime_arg,
            // 250 ms is a bucket bound, so the overruns are countable below.
            "--interval", "250ms",
            "--probe-timeout", "100ms",
            "--failures-threshold", "2",
            "--metrics-addr", "127.0.0.1:0",
        ])
        .expect("start healthprobe");
        let addr = metrics_addr(&process, PATIENCE);

        // Tick 3 emits the last event; wait for it, and one more.
        let mut parsed = scrape_metrics(addr);
        assert!(
            wait_until(PATIENCE, || {
                parsed = scrape_metrics(addr);
                parsed.value("healthprobe_ticks_total") >= 4.0
            }),
            "fewer than 4 ticks: {parsed:?}\n{}",
            process.stderr()
        );
        let ticks = parsed.value("healthprobe_ticks_total");

        // Each tick probes every game once: the fleet's classes, g3's
        // status turning from 503 to 200 from tick 3 on.
        let probes = |result: &str| parsed.value(&format!("healthprobe_probes_total{{result=\"{result}\"}}"));
        assert_eq!(probes("ok"), 2.0 * ticks - 2.0, "{parsed:?}");
        assert_eq!(probes("bad_status"), ticks + 2.0, "{parsed:?}");
        assert_eq!(probes("timeout"), ticks, "{parsed:?}");
        assert_eq!(probes("connect_error"), ticks, "{parsed:?}");
        assert_eq!(probes("other"), 0.0, "{parsed:?}");

        // Every delivered event is in the events file, and only those.
        let lines = std::fs::read_to_string(&events).expect("events file");
        let in_file = |event_type: &str| {
            lines
                .lines()
                .filter(|line| line.contains(&format!("\"event_type\":\"{event_type}\"")))
                .count() as f64
        };
        let published = |event_type: &str| {
            parsed.value(&format!("healthprobe_events_published_total{{event_type=\"{event_type}\"}}"))
        };
        assert_eq!(lines.lines().count(), 5, "{lines}");
        assert_eq!(published("probe_failed"), in_file("probe_failed"));
        assert_eq!(published("probe_failed"), 4.0);
        assert_eq!(published("probe_recovered"), in_file("probe_recovered"));
        assert_eq!(published("probe_recovered"), 1.0);
        assert_eq!(parsed.value("healthprobe_publish_failures_total"), 0.0);

        // g1, g2 and g4 keep failing; g0 and g3 hold no state (D7).
        assert_eq!(parsed.value("healthprobe_tracked_games"), 3.0);
        assert_eq!(parsed.value("healthprobe_pending_events"), 0.0);

        // One duration per tick; an overrun is a tick above the 250 ms interval.
        assert_eq!(parsed.value("healthprobe_tick_duration_seconds_count"), ticks);
        assert_eq!(parsed.bucket(f64::INFINITY), ticks);
        assert!(parsed.value("healthprobe_tick_duration_seconds_sum") >= 0.1 * ticks);
        assert_eq!(parsed.bucket(0.05), 0.0, "each tick waits for the 100 ms timeout");
        assert_eq!(
            parsed.value("healthprobe_tick_overruns_total"),
            ticks - parsed.bucket(0.25)
        );
        assert_eq!(parsed.value("healthprobe_ticks_skipped_total"), 0.0);

        // Other paths are not found.
        assert_eq!(http_get(addr, "/metricsx").0, 404);

        process.terminate().expect("SIGTERM");
        let finished = process.wait(PATIENCE).expect("healthprobe stops");
        assert!(finished.status.success(), "{}", finished.stderr);
        // Stopped with the process: nothing listens any more.
        assert!(std::net::TcpStream::connect(addr).is_err());
    }
}

#[test]
fn an_address_in_use_is_refused_at_start_with_exit_1() {
    let dir = ScratchDir::new("metrics-in-use").expect("scratch dir");
    let records = dir.join("records.json");
    write_records_file(&records, &[]).expect("records file");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = taken.local_addr().expect("local addr").to_string();
    let finished = HealthprobeProcess::spawn(&[
        "run",
        "--records",
        records.to_str().expect("UTF-8 path"),
        "--events",
        dir.join("events.jsonl").to_str().expect("UTF-8 path"),
        "--ticks",
        "1",
        "--metrics-addr",
        &addr,
    ])
    .expect("start healthprobe")
    .wait(PATIENCE)
    .expect("healthprobe exits");
    assert_eq!(finished.status.code(), Some(1), "{}", finished.stderr);
    assert!(
        finished.stderr.contains(&format!(
            "healthprobe: --metrics-addr {addr}: cannot serve metrics:"
        )),
        "{}",
        finished.stderr
    );
    assert!(
        !finished.stderr.contains("health probe worker started"),
        "{}",
        finished.stderr
    );
}

#[test]
fn a_malformed_address_is_a_usage_error() {
    let dir = ScratchDir::new("metrics-bad-addr").expect("scratch dir");
    let records = dir.join("records.json");
    write_records_file(&records, &[]).expect("records file");
    let finished = HealthprobeProcess::spawn(&[
        "run",
        "--records",
        records.to_str().expect("UTF-8 path"),
        "--ticks",
        "1",
        "--metrics-addr",
        "localhost:port",
    ])
    .expect("start healthprobe")
    .wait(PATIENCE)
    .expect("healthprobe exits");
    assert_eq!(finished.status.code(), Some(2), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("--metrics-addr"),
        "{}",
        finished.stderr
    );
}
