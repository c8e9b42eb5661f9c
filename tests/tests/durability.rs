//! No event lost (D4, D5): a refusing publisher, a full disk, SIGKILLs during
//! an outage and bad state files, against real engines on loopback.
//!
//! Library tests drive a [`TestWorker`] tick by tick; CLI tests run the
//! built `healthprobe` and read its events file and state file.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use healthprobe_core::{EventType, HealthEvent};
use healthprobe_shell::config::WorkerConfig;
use healthprobe_shell::driver::worker::TickReport;
use healthprobe_tests::{
    Behaviour, Finished, Fleet, HealthprobeProcess, ScratchDir, TestWorker, both_runtimes, by_game,
    expected_events, missing_capability, script, test_config, wait_until,
};
use serde_json::Value;

/// Bound on any wait in these tests; reached only when something is broken.
const PATIENCE: Duration = Duration::from_secs(20);

/// One tick; the events delivered during it, in delivery order.
fn tick(worker: &mut TestWorker) -> (TickReport, Vec<HealthEvent>) {
    let report = worker.worker.tick();
    worker.clock.advance(Duration::from_secs(5));
    (report, worker.publisher.take_events())
}

/// Flapping and failing scripts: every game fails and recovers at least once.
fn flapping_scripts() -> Vec<Vec<u16>> {
    vec![
        vec![500, 500, 200, 500, 500, 500, 200, 200],
        vec![503, 503, 503, 200, 503, 503, 200],
        vec![200, 500, 500, 200, 200, 500, 500, 200],
        vec![500, 200, 500, 500, 200],
        vec![500, 500, 500, 500, 500, 200],
        vec![200, 200, 500, 500, 200, 500, 500, 500, 200],
    ]
}

/// Check that, for every game, what was delivered followed by what is
/// pending is exactly the first `emitted` events the core emitted.
fn check_nothing_lost(
    delivered: &[HealthEvent],
    pending: &[HealthEvent],
    expected: &HashMap<String, Vec<HealthEvent>>,
    emitted: &HashMap<String, usize>,
) {
    let delivered = by_game(delivered);
    let pending = by_game(pending);
    for (game_id, expected) in expected {
        let mut seen = delivered.get(game_id).cloned().unwrap_or_default();
        seen.extend(pending.get(game_id).cloned().unwrap_or_default());
        let emitted = emitted.get(game_id).copied().unwrap_or(0);
        assert_eq!(seen, expected[..emitted], "{game_id}");
    }
}

fn count_emitted(events: &[HealthEvent], emitted: &mut HashMap<String, usize>) {
    for event in events {
        *emitted.entry(event.game_id.clone()).or_default() += 1;
    }
}

/// The flapping fleet, threshold 2, and each game's events over `ticks`
/// ticks as the core alone folds its script.
fn flapping_fleet(ticks: usize) -> (Fleet, WorkerConfig, HashMap<String, Vec<HealthEvent>>) {
    let scripts = flapping_scripts();
    let fleet = Fleet::start(scripts.iter().map(|s| script(s))).expect("start fleet");
    let config = test_config(2, 1);
    let policy = config.policy().expect("valid");
    let expected = scripts
        .iter()
        .enumerate()
        .map(|(i, s)| (Fleet::game_id(i), expected_events(i, s, ticks, policy)))
        .collect();
    (fleet, config, expected)
}

both_runtimes! {
    fn d4_a_publisher_failing_every_other_call_gets_every_event_once_in_order(runtime) {
        let ticks = 60;
        let (fleet, config, expected) = flapping_fleet(ticks);
        let total: usize = expected.values().map(Vec::len).sum();
        let mut worker = TestWorker::with_runtime(runtime, config, fleet.records());
        worker.publisher.fail_every(2);

        let mut delivered = Vec::new();
        let mut emitted_events = 0;
        let mut failures = 0;
        for _ in 0..ticks {
            let (report, events) = tick(&mut worker);
            emitted_events += report.events;
            failures += report.publish_failures;
            assert!(report.publish_failures <= 1, "{report:?}");
            assert_eq!(report.published, events.len());
            assert_eq!(report.pending, worker.worker.pending().len());
            delivered.extend(events);
            // Telemetry counts deliveries, and only deliveries.
            assert_eq!(worker.telemetry.total(), delivered.len() as u64);
            assert_eq!(
                delivered.len() + worker.worker.pending().len(),
                emitted_events
            );
            if emitted_events == total && worker.worker.pending().is_empty() {
                break;
            }
        }
        assert!(
            worker.worker.pending().is_empty(),
            "still pending after {ticks} ticks"
        );
        assert_eq!(delivered.len(), total);
        assert_eq!(by_game(&delivered), expected);
        assert_eq!(
            worker.publisher.attempts(),
            (delivered.len() + failures) as u64
        );
        assert!(failures > 0);
        let failed = expected
            .values()
            .flatten()
            .filter(|e| e.event_type() == EventType::ProbeFailed)
            .count();
        assert_eq!(
            worker.telemetry.count(EventType::ProbeFailed),
            failed as u64
        );
    }

    fn d4_a_publisher_down_for_several_ticks_gets_the_backlog_first_in_order(runtime) {
        let ticks = 12;
        let (fleet, config, expected) = flapping_fleet(ticks);
        let mut worker = TestWorker::with_runtime(runtime, config, fleet.records());

        // Down for 6 ticks: everything emitted waits, nothing is counted.
        worker.publisher.fail(true);
        let mut emitted: HashMap<String, usize> = HashMap::new();
        let mut ticks_with_pending = 0;
        for _ in 0..6 {
            let before = worker.worker.pending().len();
            let (report, events) = tick(&mut worker);
            assert!(events.is_empty());
            assert_eq!(report.published, 0);
            let pending = worker.worker.pending().to_vec();
            count_emitted(&pending[before..], &mut emitted);
            check_nothing_lost(&[], &pending, &expected, &emitted);
            // One refused attempt per tick that had something to deliver.
            assert_eq!(report.publish_failures, usize::from(!pending.is_empty()));
            ticks_with_pending += usize::from(!pending.is_empty());
        }
        assert_eq!(worker.telemetry.total(), 0);
        assert_eq!(worker.publisher.attempts(), ticks_with_pending as u64);
        let backlog = worker.worker.pending().to_vec();
        assert!(backlog.len() >= expected.len(), "{backlog:?}"); // one entry per script

        // Back up: the backlog goes first, in the order it was emitted.
        worker.publisher.fail(false);
        let (report, events) = tick(&mut worker);
        assert_eq!(events[..backlog.len()], backlog);
        assert_eq!(report.published, events.len());
        let mut delivered = events;
        for _ in 7..ticks {
            let (report, events) = tick(&mut worker);
            assert_eq!((report.pending, report.publish_failures), (0, 0));
            delivered.extend(events);
        }
        assert_eq!(by_game(&delivered), expected);
        assert_eq!(worker.telemetry.total(), delivered.len() as u64);
    }
}

// ---------------------------------------------------------------- the CLI

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

fn run_to_end(args: &[&str]) -> Finished {
    HealthprobeProcess::spawn(args)
        .expect("start healthprobe")
        .wait(PATIENCE)
        .unwrap_or_else(|err| panic!("healthprobe {args:?}: {err}"))
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{line:?}: {err}")))
        .collect()
}

/// The state file's pending events (each with its id) and game ids with counters.
fn read_state(path: &Path) -> (Vec<Value>, Vec<String>) {
    let text = std::fs::read_to_string(path).expect("a state file");
    let state: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(state["version"], 2);
    let pending = pending_events(&state);
    let games = state["states"]["games"]
        .as_object()
        .expect("games")
        .keys()
        .cloned()
        .collect();
    (pending, games)
}

/// A snapshot's pending events, the envelopes (each entry has its id beside).
fn pending_events(snapshot: &Value) -> Vec<Value> {
    let pending = snapshot["pending"].as_array().expect("pending");
    pending
        .iter()
        .map(|entry| {
            assert!(entry["id"].is_string(), "{entry}");
            entry["event"].clone()
        })
        .collect()
}

#[test]
fn d5_events_refused_by_a_full_disk_reach_the_next_run_once_in_order() {
    let fleet = Fleet::start([
        Behaviour::Status(500),
        Behaviour::Status(503),
        Behaviour::Status(500),
        script(&[500, 500, 200]),
        script(&[502, 502, 200]),
        Behaviour::Status(200),
    ])
    .expect("start fleet");
    let dir = ScratchDir::new("full-disk").expect("scratch dir");
    let records = dir.join("records.json");
    let state = dir.join("state.json");
    let good = dir.join("good.jsonl");
    fleet.write_records(&records).expect("records");
    let common = [
        "run",
        "--records",
        path_str(&records),
        "--state",
        path_str(&state),
        "--failures-threshold",
        "2",
        "--interval",
        "10ms",
    ];

    let mut args = common.to_vec();
    args.extend(["--events", "/dev/full", "--ticks", "5"]);
    let first = run_to_end(&args);
    assert_eq!(first.status.code(), Some(0), "{}", first.stderr);
    assert!(
        first.stderr.contains("No space left on device"),
        "{}",
        first.stderr
    );
    assert!(
        first.stderr.contains("events wait for the publisher"),
        "{}",
        first.stderr
    );
    let (pending, games) = read_state(&state);
    let kinds: Vec<(&str, &str)> = pending
        .iter()
        .map(|e| {
            (
                e["game_id"].as_str().unwrap(),
                e["event_type"].as_str().unwrap(),
            )
        })
        .collect();
    // Five failures and two recoveries, all refused and all kept.
    assert_eq!(pending.len(), 7, "{kinds:?}");
    assert_eq!(games, ["g0", "g1", "g2"]);

    for engine in fleet.engines() {
        engine.set(Behaviour::Status(200));
    }
    let mut args = common.to_vec();
    args.extend(["--events", path_str(&good), "--ticks", "2"]);
    let second = run_to_end(&args);
    assert_eq!(second.status.code(), Some(0), "{}", second.stderr);
    let delivered = json_lines(&std::fs::read_to_string(&good).expect("events"));
    // The refused events first, exactly once, in the order they were emitted...
    assert_eq!(delivered[..pending.len()], pending[..]);
    // ...then the recoveries of the games still failed, and nothing else.
    let mut recovered: Vec<&str> = delivered[pending.len()..]
        .iter()
        .map(|e| {
            assert_eq!(e["event_type"], "probe_recovered", "{e}");
            e["game_id"].as_str().unwrap()
        })
        .collect();
    recovered.sort_unstable();
    assert_eq!(recovered, ["g0", "g1", "g2"]);
    let (pending, games) = read_state(&state);
    assert!(
        pending.is_empty() && games.is_empty(),
        "{pending:?} {games:?}"
    );
}

/// splitmix64: a small seeded generator for the kill delays.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// How many distinct games have a `probe_failed` line in `text`.
fn failed_games(text: &str) -> usize {
    whole_lines(text)
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["event_type"] == "probe_failed")
        .filter_map(|event| event["game_id"].as_str().map(str::to_owned))
        .collect::<HashSet<_>>()
        .len()
}

/// The lines of `text` that end in a newline (a line cut by a kill would not).
fn whole_lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n')
        .filter_map(|line| line.strip_suffix('\n'))
        .collect()
}

#[test]
fn d5_sigkill_at_random_moments_during_an_outage_loses_no_event() {
    const GAMES: usize = 10;
    const KILLS: usize = 10;
    // The loop stops as soon as two kills landed mid-delivery. Bounded at
    // 60, with scripts of 400 answers, it once found only 1 of 61 (CI
    // rehearsal, seed 0x5eedd5d5): the scripts ran out after about 6 s of
    // 15 ms ticks, and with every engine answering its last status for
    // good, no event was left to be delivered mid-kill (0 of 400 when the
    // bound alone was raised). Scripts now outlast every round.
    const MAX_KILLS: usize = 200;
    let seed = std::env::var("HEALTHPROBE_TEST_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0x5EED_D5D5_u64);
    let mut rng = SplitMix(seed);
    // Engine i flaps: 3 to 5 failures, then 1 or 2 successes, over and over,
    // from a different phase; so events are emitted in nearly every tick and
    // the kills land before, during and after publishing.
    let fleet = Fleet::start((0..GAMES).map(|i| {
        let cycle: Vec<u16> = [vec![500; 3 + i % 3], vec![200; 1 + i % 2]].concat();
        // Long enough for MAX_KILLS rounds of up to 250 ms at 15 ms a tick.
        let statuses: Vec<u16> = cycle.iter().copied().cycle().skip(i).take(4000).collect();
        script(&statuses)
    }))
    .expect("start fleet");
    let dir = ScratchDir::new("sigkill").expect("scratch dir");
    let records = dir.join("records.json");
    let state = dir.join("state.json");
    let events = dir.join("events.jsonl");
    fleet.write_records(&records).expect("records");
    let args = [
        "run",
        "--records",
        path_str(&records),
        "--state",
        path_str(&state),
        "--events",
        path_str(&events),
        "--failures-threshold",
        "3",
        "--interval",
        "15ms",
        "--probe-timeout",
        "1s",
    ];
    let read_events = || std::fs::read_to_string(&events).unwrap_or_default();
    // Where each run's lines start in the events file.
    let mut run_starts = Vec::new();
    let mut delays = Vec::new();
    // Kills that landed between a delivery and the snapshot recording it:
    // the state file still holds as pending an event the events file has.
    let mut mid_delivery = 0;
    let mut round = 0;
    loop {
        // At least KILLS kills, and on until two landed mid-delivery (at
        // most MAX_KILLS); the last outage run lasts until every game failed.
        let last = (round >= KILLS && mid_delivery >= 2) || round >= MAX_KILLS;
        run_starts.push(read_events().len());
        let process = HealthprobeProcess::spawn(&args).expect("start healthprobe");
        if last {
            assert!(
                wait_until(PATIENCE, || failed_games(&read_events()) == GAMES),
                "seed {seed:#x}: not every game failed:\n{}",
                read_events()
            );
        }
        let delay = Duration::from_millis(rng.below(250));
        delays.push(delay);
        std::thread::sleep(delay); // a random moment, not a synchronisation
        process.kill().expect("SIGKILL");
        let killed = process.wait(PATIENCE).expect("dies");
        assert_eq!(
            killed.status.code(),
            None,
            "seed {seed:#x}: {}",
            killed.stderr
        );
        if let Some(pending) = std::fs::read_to_string(&state)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .map(|snapshot| pending_events(&snapshot))
        {
            let delivered: Vec<Value> = whole_lines(&read_events())
                .iter()
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect();
            if pending.iter().any(|event| delivered.contains(event)) {
                mid_delivery += 1;
            }
        }
        round += 1;
        if last {
            break;
        }
    }
    assert!(
        mid_delivery >= 2,
        "seed {seed:#x}: only {mid_delivery} of {round} kills landed between a delivery and its record (delays {delays:?})"
    );

    // The engines recover; one clean run publishes what is left.
    for engine in fleet.engines() {
        engine.set(Behaviour::Status(200));
    }
    run_starts.push(read_events().len());
    let mut last = args.to_vec();
    last.extend(["--ticks", "2"]);
    let finished = run_to_end(&last);
    assert_eq!(finished.status.code(), Some(0), "{}", finished.stderr);
    let text = read_events();
    let context = format!("seed {seed:#x}, delays {delays:?}, events:\n{text}");

    // A repeat is a byte-identical redelivery at the very start of a run
    // that followed a kill; every run here but the first follows a kill.
    let mut first_seen: HashMap<(String, String, String), String> = HashMap::new();
    let mut redeliveries = 0;
    let mut unique: Vec<Value> = Vec::new();
    run_starts.push(text.len());
    for (run, bounds) in run_starts.windows(2).enumerate() {
        let mut repeats_allowed = run > 0;
        let mut keys_this_run = HashSet::new();
        for line in whole_lines(&text[bounds[0]..bounds[1]]) {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("{line:?}: {err}\n{context}"));
            let key = (
                event["game_id"].as_str().unwrap().to_owned(),
                event["event_type"].as_str().unwrap().to_owned(),
                event["occurred_at"].as_str().unwrap().to_owned(),
            );
            assert!(
                keys_this_run.insert(key.clone()),
                "repeat within run {run}: {line}\n{context}"
            );
            match first_seen.get(&key) {
                Some(original) => {
                    redeliveries += 1;
                    assert!(
                        repeats_allowed,
                        "run {run} repeats {line} after new events\n{context}"
                    );
                    assert_eq!(original, line, "a redelivery differs\n{context}");
                }
                None => {
                    repeats_allowed = false;
                    first_seen.insert(key, line.to_owned());
                    unique.push(event);
                }
            }
        }
    }

    // Each kill that landed mid-delivery left events to publish again.
    assert!(
        redeliveries >= 1,
        "seed {seed:#x}: {mid_delivery} kills landed mid-delivery but nothing was redelivered\n{context}"
    );

    // De-duplicated, every game alternates probe_failed and probe_recovered,
    // from a failure to a recovery.
    for game in 0..GAMES {
        let game_id = Fleet::game_id(game);
        let sequence: Vec<&Value> = unique
            .iter()
            .filter(|e| e["game_id"] == game_id.as_str())
            .collect();
        assert!(!sequence.is_empty(), "{game_id} never failed\n{context}");
        let kinds: Vec<&str> = sequence
            .iter()
            .map(|e| e["event_type"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(sequence.len() % 2, 0, "{game_id}: {kinds:?}\n{context}");
        for pair in sequence.chunks(2) {
            assert_eq!(
                pair[0]["event_type"], "probe_failed",
                "{game_id}: {kinds:?}\n{context}"
            );
            assert_eq!(pair[0]["details"]["consecutive_failures"], 3, "{context}");
            assert_eq!(
                pair[1]["event_type"], "probe_recovered",
                "{game_id}: {kinds:?}\n{context}"
            );
            let prior = pair[1]["details"]["prior_failure_count"].as_u64();
            assert!(prior >= Some(3), "{game_id}: {prior:?}\n{context}");
        }
    }
    let (pending, games) = read_state(&state);
    assert!(
        pending.is_empty() && games.is_empty(),
        "{pending:?} {games:?}"
    );
}

#[test]
fn d5_bad_state_files_are_refused_by_name_and_left_untouched() {
    let fleet = Fleet::uniform(1, Behaviour::Status(500)).expect("start fleet");
    let dir = ScratchDir::new("bad-state").expect("scratch dir");
    let records = dir.join("records.json");
    fleet.write_records(&records).expect("records");
    let valid = concat!(
        r#"{"version":1,"states":{"policy":{"failures_threshold":3,"recovery_threshold":1},"#,
        r#""games":{"g0":{"consecutive_failures":2,"failure_published":false,"consecutive_successes":0}}},"#,
        r#""pending":[]}"#,
        "\n"
    );
    let cases: [(&str, &[u8], &str); 6] = [
        ("empty", b"", "the state file is empty"),
        ("blank", b"\n \n", "the state file is empty"),
        ("truncated", &valid.as_bytes()[..60], "the state file is not valid JSON: EOF while parsing"),
        ("corrupt", b"{\"version\":1,\"states\":\x00}", "the state file is not valid JSON"),
        ("future", br#"{"version":3,"states":{},"pending":[],"shards":4}"#, "the state file has version 3; this build reads versions 1 and 2 only"),
        ("invalid", br#"{"version":1,"states":{"policy":{"failures_threshold":0,"recovery_threshold":1},"games":{}},"pending":[]}"#, "the state file is not a valid snapshot: states.policy"),
    ];
    for (name, contents, problem) in cases {
        let state = dir.join(&format!("{name}.json"));
        std::fs::write(&state, contents).expect("seed state");
        let finished = run_to_end(&[
            "run",
            "--records",
            path_str(&records),
            "--state",
            path_str(&state),
            "--ticks",
            "1",
        ]);
        assert_eq!(
            finished.status.code(),
            Some(2),
            "{name}: {}",
            finished.stderr
        );
        let line = finished.stderr.trim_end();
        assert!(!line.contains('\n'), "{name}: one line: {line}");
        assert!(
            line.starts_with(&format!("healthprobe: {}", state.display())),
            "{name}: {line}"
        );
        assert!(line.contains(problem), "{name}: {line}");
        assert_eq!(
            std::fs::read(&state).expect("kept"),
            contents,
            "{name}: file changed"
        );
        assert!(!dir.join(&format!("{name}.json.tmp")).exists());
        assert_eq!(finished.stdout, "", "{name}");
    }
    // Refused before the first probe.
    assert_eq!(fleet.engine(0).requests(), 0);

    // The valid file is restored and carried on: the third failure publishes.
    let state = dir.join("valid.json");
    std::fs::write(&state, valid).expect("seed state");
    let finished = run_to_end(&[
        "run",
        "--records",
        path_str(&records),
        "--state",
        path_str(&state),
        "--ticks",
        "1",
    ]);
    assert_eq!(finished.status.code(), Some(0), "{}", finished.stderr);
    let events = json_lines(&finished.stdout);
    assert_eq!(events.len(), 1, "{}", finished.stdout);
    assert_eq!(events[0]["details"]["consecutive_failures"], 3);
}

/// A directory no process of this test can write into, root included:
/// `0555` for another user; for root, who writes through permissions, the
/// immutable attribute (`chattr +i`), taken off again on drop.
struct ReadOnlyDir {
    path: std::path::PathBuf,
    immutable: bool,
}

impl ReadOnlyDir {
    /// `None` when this machine cannot make one (the test has then failed,
    /// or skipped where `HEALTHPROBE_TEST_ALLOW_SKIP=1`).
    #[allow(unsafe_code)]
    fn new(path: std::path::PathBuf) -> Option<Self> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir(&path).expect("dir");
        // SAFETY: geteuid(2) takes no arguments and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o555)).expect("chmod");
            return Some(Self {
                path,
                immutable: false,
            });
        }
        match std::process::Command::new("chattr")
            .arg("+i")
            .arg(&path)
            .output()
        {
            Ok(out) if out.status.success() => Some(Self {
                path,
                immutable: true,
            }),
            failed => {
                let why = match failed {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                    Err(err) => format!("cannot run chattr: {err}"),
                };
                missing_capability(
                    &format!(
                        "root cannot make {} read-only: chattr +i: {why}",
                        path.display()
                    ),
                    "Run the tests on a file system with the immutable attribute \
                     (ext4, xfs, btrfs) with e2fsprogs' chattr, or as a user other than root",
                );
                None
            }
        }
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        if self.immutable {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.path)
                .status();
        }
    }
}

#[test]
fn d5_an_unwritable_or_unreadable_state_path_is_refused_before_probing() {
    let fleet = Fleet::uniform(1, Behaviour::Status(500)).expect("start fleet");
    let dir = ScratchDir::new("unwritable").expect("scratch dir");
    let records = dir.join("records.json");
    fleet.write_records(&records).expect("records");
    let Some(read_only) = ReadOnlyDir::new(dir.join("read-only")) else {
        return;
    };
    // procfs refuses to create files even for root.
    let proc_state = format!("/proc/healthprobe-test-{}.json", std::process::id());
    let cases = [
        (proc_state, "cannot write the state file (via"),
        (
            "/dev/null/state.json".to_owned(),
            "cannot read the state file: Not a directory",
        ),
        (
            path_str(&read_only.path.join("state.json")).to_owned(),
            "cannot write the state file (via",
        ),
    ];
    for (state, problem) in cases {
        let finished = run_to_end(&[
            "run",
            "--records",
            path_str(&records),
            "--state",
            &state,
            "--ticks",
            "1",
        ]);
        assert_eq!(
            finished.status.code(),
            Some(1),
            "{state}: {}",
            finished.stderr
        );
        let line = finished.stderr.trim_end();
        assert!(
            line.starts_with(&format!("healthprobe: {state}: ")),
            "{line}"
        );
        assert!(line.contains(problem), "{line}");
        assert!(!line.contains('\n'), "one line: {line}");
    }
    assert_eq!(
        fleet.engine(0).requests(),
        0,
        "probed despite a bad --state"
    );
}

/// D6: a second signal exits at once (a probe may hang for its whole
/// timeout), but first flushes the journal's buffered lines, so `replay`
/// still sees every outcome the run folded and published.
#[test]
fn d6_a_second_signal_flushes_the_journal_before_exiting() {
    let fleet = Fleet::start([Behaviour::Status(503), Behaviour::Hang]).expect("start fleet");
    let dir = ScratchDir::new("second-signal").expect("scratch dir");
    let records = dir.join("records.json");
    let journal = dir.join("journal.jsonl");
    fleet.write_records(&records).expect("records");
    let run = HealthprobeProcess::spawn(&[
        "run",
        "--records",
        path_str(&records),
        "--journal",
        path_str(&journal),
        "--failures-threshold",
        "1",
        "--probe-timeout",
        "60s",
        "--interval",
        "1h",
        // One probe at a time, in listing order: g0 is folded before g1's
        // probe starts. (With more, the threads runtime's calling thread may
        // take g1 and fold g0's outcome, probed by another thread, only when
        // its own probe ends: 60 s later.)
        "--max-concurrency",
        "1",
    ])
    .expect("start healthprobe");
    // g0's outcome is folded and its event published; g1 hangs for 60 s.
    assert!(
        run.wait_for_stdout(PATIENCE, |out| out.contains("probe_failed")),
        "{}",
        run.stderr()
    );
    // Signalled only once g1's probe is in flight: a first signal between
    // g0's fold and g1's start ends the tick with no probe left to wait for
    // (exit 0 before the second signal; seen once in a suite run).
    assert!(
        fleet.engine(1).wait_for_requests(1, PATIENCE),
        "g1 was not probed: {}",
        run.stderr()
    );
    run.interrupt().expect("first signal");
    assert!(run.wait_for_stderr(PATIENCE, |err| err.contains("stopping after the probes")));
    run.interrupt().expect("second signal");
    let finished = run.wait(PATIENCE).expect("exits at once");
    assert_eq!(finished.status.code(), Some(130), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("journal flushed"),
        "{}",
        finished.stderr
    );
    let lines = json_lines(&std::fs::read_to_string(&journal).expect("journal"));
    assert_eq!(lines.len(), 2, "the prune and g0's outcome: {lines:?}");
    assert_eq!(lines[0]["type"], "prune");
    assert_eq!(
        (&lines[1]["type"], &lines[1]["game_id"]),
        (&Value::from("outcome"), &Value::from("g0"))
    );
}
