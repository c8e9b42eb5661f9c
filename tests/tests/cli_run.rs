//! End-to-end tests of `healthprobe run` and `healthprobe demo`: the built
//! binary against engines on loopback, through records files, flags,
//! environment variables and signals.

use std::path::{Path, PathBuf};
use std::time::Duration;

use healthprobe_core::Timestamp;
use healthprobe_tests::{
    Behaviour, Finished, Fleet, Gate, HealthprobeProcess, RuntimeRecord, ScratchDir, TestEngine,
    both_runtimes, wait_until, write_atomically, write_records_file,
};
use serde_json::{Value, json};

/// Bound on any wait in these tests; reached only when something is broken.
const PATIENCE: Duration = Duration::from_secs(20);

fn run_to_end(args: &[&str]) -> Finished {
    HealthprobeProcess::spawn(args)
        .expect("start healthprobe")
        .wait(PATIENCE)
        .unwrap_or_else(|err| panic!("healthprobe {args:?}: {err}"))
}

/// A scratch dir whose `records.json` lists one running game, g0 in c0, on `engine`.
fn one_game_records(engine: &TestEngine) -> (ScratchDir, PathBuf) {
    let dir = ScratchDir::new("run").unwrap();
    let records = dir.join("records.json");
    write_records_file(
        &records,
        &[RuntimeRecord::running("g0", "c0", engine.url())],
    )
    .unwrap();
    (dir, records)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

/// The JSON lines of `text`, parsed.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{line:?}: {err}")))
        .collect()
}

/// `event` without `occurred_at`, after checking it is an RFC 3339 instant
/// between `from` and `to`.
fn without_time(mut event: Value, from: Timestamp, to: Timestamp) -> Value {
    let occurred_at = event
        .as_object_mut()
        .and_then(|fields| fields.remove("occurred_at"))
        .unwrap_or_else(|| panic!("no occurred_at"));
    let occurred_at: Timestamp = occurred_at
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("occurred_at {occurred_at} is not RFC 3339"));
    assert!(
        from <= occurred_at && occurred_at <= to,
        "{occurred_at} not within {from}..{to}"
    );
    event
}

fn failed(game: usize, consecutive_failures: u64, status: u16) -> Value {
    json!({
        "game_id": Fleet::game_id(game), "container_id": Fleet::container_id(game),
        "event_type": "probe_failed",
        "details": {
            "consecutive_failures": consecutive_failures, "last_status": status,
            "last_error": format!("unexpected status {status}"),
        },
    })
}

fn recovered(game: usize, prior_failure_count: u64) -> Value {
    json!({
        "game_id": Fleet::game_id(game), "container_id": Fleet::container_id(game),
        "event_type": "probe_recovered",
        "details": {"prior_failure_count": prior_failure_count},
    })
}

/// The events of one game, in the order written.
fn events_of(events: &[Value], game: usize) -> Vec<Value> {
    let game_id = Fleet::game_id(game);
    events
        .iter()
        .filter(|event| event["game_id"] == game_id.as_str())
        .cloned()
        .collect()
}

/// `path:LINE:COLUMN:` in `text`: the line and column.
fn location(text: &str, path: &Path) -> Option<(usize, usize)> {
    let prefix = format!("{}:", path.display());
    text.match_indices(&prefix).find_map(|(start, _)| {
        let mut rest = text[start + prefix.len()..].splitn(3, ':');
        let line = rest.next()?.parse().ok()?;
        let column = rest.next()?.parse().ok()?;
        Some((line, column))
    })
}

fn scripted_fleet() -> Fleet {
    Fleet::start([
        Behaviour::Status(503),
        Behaviour::Script(vec![
            Behaviour::Status(503),
            Behaviour::Status(503),
            Behaviour::Status(200),
        ]),
        Behaviour::Status(200),
    ])
    .unwrap()
}

both_runtimes! {
    fn run_ticks_3_prints_the_expected_events_as_jsonl(runtime) {
        let fleet = scripted_fleet();
        let stopped = TestEngine::start(Behaviour::Status(503)).unwrap();
        let dir = ScratchDir::new("run").unwrap();
        let records = dir.join("records.json");
        let mut rows = fleet.records();
        rows.push(RuntimeRecord {
            status: "stopped".to_owned(),
            ..RuntimeRecord::running("g9", "c9", stopped.url())
        });
        write_records_file(&records, &rows).unwrap();

        let from = Timestamp::now();
        let finished = run_to_end(&[
            "run",
            "--runtime",
            runtime.name(),
            "--records",
            path_str(&records),
            "--ticks",
            "3",
            "--failures-threshold",
            "2",
            "--probe-timeout",
            "2s",
        ]);
        let to = Timestamp::now();
        assert!(finished.status.success(), "{}", finished.stderr);

        let events: Vec<Value> = json_lines(&finished.stdout)
            .into_iter()
            .map(|event| without_time(event, from, to))
            .collect();
        assert_eq!(events_of(&events, 0), [failed(0, 2, 503)]);
        assert_eq!(events_of(&events, 1), [failed(1, 2, 503), recovered(1, 2)]);
        assert_eq!(events_of(&events, 2), Vec::<Value>::new());
        assert_eq!(events.len(), 3);
        for engine in fleet.engines() {
            assert_eq!(engine.requests(), 3, "one probe per tick");
        }
        assert_eq!(stopped.requests(), 0, "a stopped row is not probed");
        // The wire format's field order (DESIGN.md "Formats").
        let first = finished.stdout.lines().next().unwrap_or_default();
        let order: Vec<usize> = [
            "\"game_id\"",
            "\"container_id\"",
            "\"event_type\"",
            "\"occurred_at\"",
            "\"details\"",
        ]
        .iter()
        .map(|key| first.find(key).unwrap_or(usize::MAX))
        .collect();
        assert!(order.is_sorted() && order[4] < usize::MAX, "{first}");
    }
}

#[test]
fn run_appends_events_to_an_events_file_and_loses_nothing_in_it() {
    let engine = TestEngine::start(Behaviour::Status(500)).unwrap();
    let (dir, records) = one_game_records(&engine);
    let events = dir.join("events.jsonl");
    std::fs::write(&events, "{\"kept\":true}\n").unwrap();
    for _ in 0..2 {
        let finished = run_to_end(&[
            "run",
            "--records",
            path_str(&records),
            "--events",
            path_str(&events),
            "--ticks",
            "1",
            "--failures-threshold",
            "1",
        ]);
        assert!(finished.status.success(), "{}", finished.stderr);
        assert_eq!(finished.stdout, "", "events go to the file only");
    }
    let lines = json_lines(&std::fs::read_to_string(&events).unwrap());
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], json!({"kept": true}));
    for line in &lines[1..] {
        assert_eq!(line["event_type"], "probe_failed");
        assert_eq!(line["details"]["last_status"], 500);
    }
}

#[test]
fn r9_a_records_file_broken_mid_run_skips_ticks_with_a_warning_naming_file_line_and_column() {
    let engine = TestEngine::start(Behaviour::Status(503)).unwrap();
    let dir = ScratchDir::new("run").unwrap();
    let records = dir.join("records.json");
    let valid = format!(
        "[\n{{\"game_id\":\"g0\",\"current_container_id\":\"c0\",\"engine_endpoint\":\"{}\",\"status\":\"running\"}}\n]\n",
        engine.url()
    );
    write_atomically(&records, valid.as_bytes()).unwrap();
    let mut process = HealthprobeProcess::spawn(&[
        "run",
        "--records",
        path_str(&records),
        "--interval",
        "100ms",
        "--failures-threshold",
        "1000",
    ])
    .unwrap();
    assert!(
        engine.wait_for_requests(1, PATIENCE),
        "{}",
        process.stderr()
    );

    // Line 3: a game_id that is a number.
    let broken = format!(
        "{},\n{{\"game_id\": 7}}\n]\n",
        valid.trim_end().trim_end_matches(']').trim_end()
    );
    write_atomically(&records, broken.as_bytes()).unwrap();
    assert!(
        process.wait_for_stderr(PATIENCE, |stderr| location(stderr, &records).is_some()),
        "no warning naming the file: {}",
        process.stderr()
    );
    let stderr = process.stderr();
    let (line, column) = location(&stderr, &records).unwrap_or_default();
    assert_eq!(line, 3, "{stderr}");
    assert!(column > 0, "{stderr}");
    let warning = stderr
        .lines()
        .find(|text| text.contains(&records.display().to_string()))
        .unwrap_or_default();
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        process.is_running(),
        "a bad listing does not stop the worker"
    );

    // Repaired: probing resumes.
    let probed = engine.requests();
    write_atomically(&records, valid.as_bytes()).unwrap();
    assert!(engine.wait_for_requests(probed + 2, PATIENCE));

    process.interrupt().unwrap();
    let finished = process.wait(PATIENCE).unwrap();
    assert_eq!(finished.status.code(), Some(0), "{}", finished.stderr);
    assert_eq!(finished.stdout, "", "no event: the threshold is 1000");
}

#[test]
fn a_malformed_records_file_at_start_exits_2_naming_file_line_and_column() {
    let dir = ScratchDir::new("run").unwrap();
    let records = dir.join("records.json");
    std::fs::write(
        &records,
        "[\n  {\"game_id\": \"g1\", \"status\": running}\n]\n",
    )
    .unwrap();
    let finished = run_to_end(&["run", "--records", path_str(&records), "--ticks", "1"]);
    assert_eq!(finished.status.code(), Some(2), "{}", finished.stderr);
    let (line, column) = location(&finished.stderr, &records)
        .unwrap_or_else(|| panic!("no file:line:column in {:?}", finished.stderr));
    assert_eq!((line, column > 0), (2, true), "{}", finished.stderr);
    assert_eq!(finished.stderr.lines().count(), 1, "{}", finished.stderr);
    assert_eq!(finished.stdout, "");
}

#[test]
fn a_missing_records_file_is_a_clear_error() {
    let dir = ScratchDir::new("run").unwrap();
    let records = dir.join("absent.json");
    let finished = run_to_end(&["run", "--records", path_str(&records), "--ticks", "1"]);
    assert!(!finished.status.success());
    assert!(
        finished.stderr.contains(&records.display().to_string()),
        "{}",
        finished.stderr
    );
    assert_eq!(finished.stderr.lines().count(), 1, "{}", finished.stderr);
}

#[test]
fn r11_invalid_flags_exit_2_naming_the_flag() {
    let dir = ScratchDir::new("run").unwrap();
    let records = dir.join("records.json");
    std::fs::write(&records, "[]").unwrap();
    let cases: [(&[&str], &str); 12] = [
        (&["--interval", "0s"], "--interval"),
        (&["--probe-timeout", "0s"], "--probe-timeout"),
        (&["--failures-threshold", "0"], "--failures-threshold"),
        (&["--recovery-threshold", "0"], "--recovery-threshold"),
        (&["--max-concurrency", "0"], "--max-concurrency"),
        (&["--interval", "soon"], "--interval"),
        (&["--failures-threshold=-1"], "--failures-threshold"),
        // A negative number after a space is the flag's value, not a flag.
        (&["--failures-threshold", "-1"], "--failures-threshold"),
        (&["--recovery-threshold", "-2"], "--recovery-threshold"),
        (&["--max-concurrency", "-5"], "--max-concurrency"),
        (&["--ticks", "many"], "--ticks"),
        (&["--connections", "sometimes"], "--connections"),
    ];
    for (flags, named) in cases {
        let mut args = vec!["run", "--records", path_str(&records)];
        args.extend_from_slice(flags);
        let finished = run_to_end(&args);
        assert_eq!(finished.status.code(), Some(2), "{flags:?}: {finished:?}");
        assert!(
            finished.stderr.contains(named),
            "{flags:?}: {}",
            finished.stderr
        );
        assert_eq!(finished.stderr.lines().count(), 1, "{}", finished.stderr);
        assert_eq!(finished.stdout, "");
    }
}

#[test]
fn settings_are_read_from_the_environment() {
    let engine = TestEngine::start(Behaviour::Status(503)).unwrap();
    let (_dir, records) = one_game_records(&engine);
    let mut command = HealthprobeProcess::command();
    command
        .args(["run", "--records", path_str(&records), "--ticks", "1"])
        .env("RTMANAGER_PROBE_FAILURES_THRESHOLD", "1");
    let finished = HealthprobeProcess::spawn_command(command)
        .unwrap()
        .wait(PATIENCE)
        .unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
    assert_eq!(
        json_lines(&finished.stdout)
            .into_iter()
            .map(|event| event["details"]["consecutive_failures"].clone())
            .collect::<Vec<_>>(),
        [json!(1)]
    );

    let mut command = HealthprobeProcess::command();
    command
        .args(["run", "--records", path_str(&records), "--ticks", "1"])
        .env("RTMANAGER_PROBE_INTERVAL", "0s");
    let finished = HealthprobeProcess::spawn_command(command)
        .unwrap()
        .wait(PATIENCE)
        .unwrap();
    assert_eq!(finished.status.code(), Some(2), "{}", finished.stderr);
    assert!(finished.stderr.contains("interval"), "{}", finished.stderr);
}

#[test]
fn r12_json_logs_name_game_container_and_event_type() {
    let engine = TestEngine::start(Behaviour::Status(503)).unwrap();
    let (_dir, records) = one_game_records(&engine);
    let finished = run_to_end(&[
        "run",
        "--records",
        path_str(&records),
        "--ticks",
        "1",
        "--failures-threshold",
        "1",
        "--log-format",
        "json",
    ]);
    assert!(finished.status.success(), "{}", finished.stderr);
    let logs = json_lines(&finished.stderr);
    let published = logs
        .iter()
        .find(|log| log["event_type"] == "probe_failed")
        .unwrap_or_else(|| panic!("no log of the published event: {logs:?}"));
    assert_eq!(published["game_id"], "g0");
    assert_eq!(published["container_id"], "c0");
    let tick = logs
        .iter()
        .find(|log| log.get("failed_probes").is_some())
        .unwrap_or_else(|| panic!("no tick summary: {logs:?}"));
    assert_eq!(
        (&tick["games"], &tick["probes"], &tick["events"]),
        (&json!(1), &json!(1), &json!(1))
    );
}

/// SIGINT while `engine`'s first probe is held at `gate`; once the run says
/// it stops after the probes in flight, the answer goes out. How it ended.
fn interrupt_mid_probe(process: HealthprobeProcess, engine: &TestEngine, gate: &Gate) -> Finished {
    assert!(
        engine.wait_for_requests(1, PATIENCE),
        "{}",
        process.stderr()
    );
    process.interrupt().unwrap();
    assert!(
        process.wait_for_stderr(PATIENCE, |stderr| {
            stderr.contains("stopping after the probes in flight")
        }),
        "{}",
        process.stderr()
    );
    gate.open();
    process.wait(PATIENCE).unwrap()
}

both_runtimes! {
    fn r13_sigint_during_a_tick_exits_0_after_the_probe_in_flight(runtime) {
        // The answer waits for the gate: the probe is in flight when the
        // signal comes, however slow this machine is.
        let gate = Gate::new();
        let engine = TestEngine::start(Behaviour::Gated {
            gate: gate.clone(),
            status: 503,
        })
        .unwrap();
        let (_dir, records) = one_game_records(&engine);
        let process = HealthprobeProcess::spawn(&[
            "run",
            "--runtime",
            runtime.name(),
            "--records",
            path_str(&records),
            "--interval",
            "1h",
            "--probe-timeout",
            "1h",
            "--failures-threshold",
            "1",
        ])
        .unwrap();
        // Exits once the probe is answered, not after the 1 h interval.
        let finished = interrupt_mid_probe(process, &engine, &gate);

        assert_eq!(finished.status.code(), Some(0), "{}", finished.stderr);
        let events = json_lines(&finished.stdout);
        assert_eq!(
            events.len(),
            1,
            "the probe in flight was folded: {events:?}"
        );
        assert_eq!(events[0]["details"]["last_status"], 503);
        assert_eq!(engine.requests(), 1);
        // Without --max-concurrency, each runtime's own default applies.
        let started = format!(
            "max_concurrency={} runtime={runtime}",
            runtime.default_max_concurrency()
        );
        assert!(finished.stderr.contains(&started), "{}", finished.stderr);
    }
}

both_runtimes! {
    fn r13_sigint_with_ticks_finishes_the_tick_and_runs_no_more(runtime) {
        let gate = Gate::new();
        let engine = TestEngine::start(Behaviour::Gated {
            gate: gate.clone(),
            status: 200,
        })
        .unwrap();
        let (_dir, records) = one_game_records(&engine);
        let process = HealthprobeProcess::spawn(&[
            "run",
            "--runtime",
            runtime.name(),
            "--records",
            path_str(&records),
            "--probe-timeout",
            "1h",
            "--ticks",
            "5",
        ])
        .unwrap();
        let finished = interrupt_mid_probe(process, &engine, &gate);
        assert_eq!(finished.status.code(), Some(0), "{}", finished.stderr);
        assert_eq!(engine.requests(), 1, "no tick after the signal");
        assert!(finished.stderr.contains("ticks=1"), "{}", finished.stderr);
    }
}

#[test]
fn r13_sigterm_between_ticks_exits_0_at_once() {
    let engine = TestEngine::start(Behaviour::Status(200)).unwrap();
    let (_dir, records) = one_game_records(&engine);
    let process =
        HealthprobeProcess::spawn(&["run", "--records", path_str(&records), "--interval", "1h"])
            .unwrap();
    assert!(
        process.wait_for_stderr(PATIENCE, |stderr| stderr.contains("tick finished")),
        "{}",
        process.stderr()
    );
    process.terminate().unwrap();
    // At once: within the wait's patience, not after the 1 h interval.
    let finished = process.wait(PATIENCE).unwrap();
    assert_eq!(finished.status.code(), Some(0), "{}", finished.stderr);
    assert_eq!(engine.requests(), 1);
}

#[test]
fn run_over_a_hostile_fleet_keeps_its_memory_bounded_and_does_not_grow_on_either_runtime() {
    /// Ticks before the first sample (allocator arenas, runtime threads and
    /// buffers are warm by then), and before the second.
    const WARM: usize = 5;
    const LATER: usize = 35;
    for runtime in ["threads", "async"] {
        let target = TestEngine::start(Behaviour::Status(200)).unwrap();
        let mut behaviours = Behaviour::hostile(&target);
        behaviours.extend(std::iter::repeat_n(Behaviour::HugeBody, 8));
        behaviours.extend(std::iter::repeat_n(Behaviour::HugeHeader, 8));
        behaviours.extend(std::iter::repeat_n(Behaviour::Status(200), 8));
        let fleet = Fleet::start(behaviours).unwrap();
        let dir = ScratchDir::new("run").unwrap();
        let records = dir.join("records.json");
        fleet.write_records(&records).unwrap();
        let process = HealthprobeProcess::spawn(&[
            "run",
            "--records",
            path_str(&records),
            "--runtime",
            runtime,
            "--interval",
            "50ms",
            "--probe-timeout",
            "300ms",
        ])
        .unwrap();
        let ticked = |ticks: usize| {
            wait_until(PATIENCE * 3, || {
                fleet
                    .engines()
                    .iter()
                    .all(|engine| engine.requests() >= ticks)
            })
        };
        assert!(ticked(WARM), "{runtime}: {}", process.stderr());
        let warm_kib = process.rss_kib().expect("the process is running");
        assert!(ticked(LATER), "{runtime}: {}", process.stderr());
        let later_kib = process.rss_kib().expect("the process is running");
        let peak_kib = process.peak_rss_kib().expect("the process is running");
        process.interrupt().unwrap();
        let finished = process.wait(PATIENCE).unwrap();
        assert_eq!(finished.status.code(), Some(0), "{}", finished.stderr);
        assert!(
            peak_kib < 64 * 1024,
            "{runtime}: peak RSS {peak_kib} KiB with 1 GiB bodies and 200 KB headers on offer"
        );
        // 30 more ticks over the fleet (960 probes): a leak of about 1 KiB
        // per probe, or of anything per tick beyond 30 KiB, exceeds the slack.
        let probes = (LATER - WARM) * fleet.engines().len();
        assert!(
            later_kib <= warm_kib + 1024,
            "{runtime}: RSS grew from {warm_kib} KiB to {later_kib} KiB over {probes} probes"
        );
        assert_eq!(target.requests(), 0);
        assert!(!finished.stderr.contains("panicked"), "{}", finished.stderr);
        eprintln!(
            "{runtime}: RSS {warm_kib} KiB after {WARM} ticks, {later_kib} KiB after {LATER} ({probes} probes between), peak {peak_kib} KiB"
        );
    }
}

#[test]
fn demo_shows_both_event_kinds() {
    let finished = run_to_end(&["demo", "--duration", "6s"]);
    assert!(finished.status.success(), "{}", finished.stderr);
    let kinds: Vec<String> = json_lines(&finished.stdout)
        .iter()
        .map(|event| event["event_type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(kinds.iter().any(|kind| kind == "probe_failed"), "{kinds:?}");
    assert!(
        kinds.iter().any(|kind| kind == "probe_recovered"),
        "{kinds:?}"
    );
}

#[test]
fn demo_stops_cleanly_on_sigint() {
    let process = HealthprobeProcess::spawn(&["demo"]).unwrap();
    assert!(
        process.wait_for_stdout(PATIENCE, |stdout| stdout.contains("\"probe_failed\"")),
        "{}",
        process.stderr()
    );
    process.interrupt().unwrap();
    // The demo runs until stopped: exiting within the wait's patience is the check.
    let finished = process.wait(PATIENCE).unwrap();
    assert_eq!(finished.status.code(), Some(0), "{}", finished.stderr);
    assert!(!finished.stderr.contains("panicked"), "{}", finished.stderr);
    json_lines(&finished.stdout);
}

#[test]
fn an_unknown_runtime_exits_2_naming_the_choices() {
    let dir = ScratchDir::new("run").unwrap();
    let records = dir.join("records.json");
    write_records_file(&records, &[]).unwrap();
    let finished = run_to_end(&[
        "run",
        "--records",
        path_str(&records),
        "--runtime",
        "fibers",
        "--ticks",
        "1",
    ]);
    assert_eq!(finished.status.code(), Some(2), "{}", finished.stderr);
    let stderr = finished.stderr.trim_end();
    assert!(!stderr.contains('\n'), "one line: {stderr}");
    assert!(
        stderr.contains("--runtime") && stderr.contains("threads") && stderr.contains("async"),
        "{stderr}"
    );
}

#[test]
fn d4_a_closed_events_pipe_stops_the_run_exit_1_with_the_event_kept_in_the_state_file() {
    // `healthprobe run | head -0`: the reader is gone before the first event.
    let engine = TestEngine::start(Behaviour::Status(503)).unwrap();
    let (dir, records) = one_game_records(&engine);
    let state = dir.join("state.json");
    let mut command = HealthprobeProcess::command();
    command
        .args([
            "run",
            "--records",
            path_str(&records),
            "--state",
            path_str(&state),
            "--failures-threshold",
            "1",
            "--interval",
            "50ms",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("start healthprobe");
    drop(child.stdout.take());
    let mut status = None;
    let exited = wait_until(PATIENCE, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    assert!(
        exited,
        "healthprobe kept running with its events output closed"
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.unwrap().code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "the events output was closed (broken pipe): stopped with 1 undelivered event(s), kept in the state file"
        ),
        "{stderr}"
    );
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let pending = saved["pending"].as_array().expect("pending events");
    assert_eq!(pending.len(), 1, "{saved}");
    assert_eq!(pending[0]["event"]["event_type"], "probe_failed");
    assert_eq!(pending[0]["event"]["game_id"], "g0");
    let id = pending[0]["id"].as_str().expect("its id");
    assert!(id.ends_with(":probe_failed:g0"), "{id}");
}
