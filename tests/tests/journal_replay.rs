//! D6: `healthprobe run --journal` records every prune and outcome, and
//! `healthprobe replay` over that journal reproduces the run's events byte
//! for byte.

use std::path::Path;
use std::time::Duration;

use healthprobe_tests::{
    Behaviour, Fleet, HealthprobeProcess, ScratchDir, both_runtimes, wait_until, write_records_file,
};
use serde_json::Value;

/// Bound on any wait in these tests; reached only when something is broken.
const PATIENCE: Duration = Duration::from_secs(20);

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

/// An engine answering `cycle` over and over (a long script; the last repeats).
fn flapping(cycle: &[u16]) -> Behaviour {
    Behaviour::Script(
        cycle
            .iter()
            .cycle()
            .take(300)
            .map(|&status| Behaviour::Status(status))
            .collect(),
    )
}

/// The whole lines of a file another process is appending to (a line
/// still being written is left out).
fn whole_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n')
        .filter_map(|line| line.strip_suffix('\n'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{line:?}: {err}")))
        .collect()
}

/// Whether `events` holds `kind` for `game` at least `times` times.
fn emitted(events: &Path, game: &str, kind: &str, times: usize) -> bool {
    let lines = whole_lines(events);
    let count = lines
        .iter()
        .filter(|e| e["game_id"] == game && e["event_type"] == kind)
        .count();
    count >= times
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{line:?}: {err}")))
        .collect()
}

both_runtimes! {
    fn d6_replaying_the_journal_of_a_flapping_pruned_run_gives_its_events_byte_for_byte(runtime) {
        let fleet = Fleet::start([
            Behaviour::Status(500),
            flapping(&[500, 500, 200]),
            flapping(&[503, 200]),
            Behaviour::Status(200),
            flapping(&[500, 500, 500, 200, 200]),
            Behaviour::Close,
        ])
        .expect("start fleet");
        let dir = ScratchDir::new("journal-replay").expect("scratch dir");
        let records = dir.join("records.json");
        let events = dir.join("events.jsonl");
        let journal = dir.join("journal.jsonl");
        // Phase A: every game, g1 listed twice (D3) with a second container.
        let mut all = fleet.records();
        let mut duplicate = fleet.record(1);
        duplicate.current_container_id = "c1-other".into();
        all.push(duplicate);
        // Phase B: g0 (failed, published) and g2 stop, so their state is pruned.
        let without: Vec<_> = fleet
            .records()
            .into_iter()
            .filter(|record| record.game_id != "g0" && record.game_id != "g2")
            .collect();
        write_records_file(&records, &all).expect("records");

        let process = HealthprobeProcess::spawn(&[
            "run",
            "--runtime",
            runtime.name(),
            "--records",
            path_str(&records),
            "--events",
            path_str(&events),
            "--journal",
            path_str(&journal),
            "--failures-threshold",
            "2",
            "--interval",
            "20ms",
        ])
        .expect("start healthprobe");
        // Each phase lasts until what it is for has happened, in the events
        // and the journal (each flushed at its tick's end).
        let waited = |what: &str, condition: &dyn Fn() -> bool| {
            assert!(
                wait_until(PATIENCE, condition),
                "{what}: {}",
                process.stderr()
            );
        };
        waited("g0 failed and g1 recovered", &|| {
            emitted(&events, "g0", "probe_failed", 1)
                && emitted(&events, "g1", "probe_recovered", 1)
        });
        write_records_file(&records, &without).expect("records");
        waited("a tick pruned g0 and g2", &|| {
            whole_lines(&journal).iter().any(|input| {
                let running = input["running"].as_array();
                input["type"] == "prune"
                    && running.is_some_and(|running| !running.contains(&Value::from("g0")))
            })
        });
        write_records_file(&records, &all).expect("records");
        waited("g0 failed again", &|| emitted(&events, "g0", "probe_failed", 2));
        process.interrupt().expect("SIGINT");
        let finished = process.wait(PATIENCE).expect("stops");
        assert_eq!(finished.status.code(), Some(0), "{}", finished.stderr);

        let replayed =
            HealthprobeProcess::spawn(&["replay", "--failures-threshold", "2", path_str(&journal)])
                .expect("start replay")
                .wait(PATIENCE)
                .expect("replay ends");
        assert_eq!(replayed.status.code(), Some(0), "{}", replayed.stderr);
        let written = std::fs::read_to_string(&events).expect("events");
        assert_eq!(replayed.stdout, written, "replay differs from the run");

        // The run did flap and prune: both kinds, and g0 failed twice with no
        // recovery between (its state was pruned while it was away).
        let events = json_lines(&written);
        let kinds = |game: &str| -> Vec<String> {
            events
                .iter()
                .filter(|e| e["game_id"] == game)
                .map(|e| e["event_type"].as_str().unwrap_or_default().to_owned())
                .collect()
        };
        assert_eq!(kinds("g0"), ["probe_failed", "probe_failed"], "{written}");
        assert!(
            kinds("g1").contains(&"probe_recovered".to_owned()),
            "{written}"
        );
        assert!(kinds("g3").is_empty());
        assert!(events.iter().all(|e| e["container_id"] != "c1-other"));
        let journal_text = std::fs::read_to_string(&journal).expect("journal");
        let inputs = json_lines(&journal_text);
        let listings: std::collections::HashSet<String> = inputs
            .iter()
            .filter(|input| input["type"] == "prune")
            .map(|input| input["running"].to_string())
            .collect();
        assert_eq!(listings.len(), 2, "{listings:?}");
        assert!(
            listings.iter().any(|l| l.matches("\"g1\"").count() == 2),
            "the whole listing, duplicates included: {listings:?}"
        );
    }
}

#[test]
fn d6_a_journal_that_cannot_be_opened_is_refused_before_probing() {
    let fleet = Fleet::uniform(1, Behaviour::Status(500)).expect("start fleet");
    let dir = ScratchDir::new("journal-refused").expect("scratch dir");
    let records = dir.join("records.json");
    fleet.write_records(&records).expect("records");
    let finished = HealthprobeProcess::spawn(&[
        "run",
        "--records",
        path_str(&records),
        "--journal",
        "/dev/null/journal.jsonl",
        "--ticks",
        "1",
    ])
    .expect("start healthprobe")
    .wait(PATIENCE)
    .expect("ends");
    assert_eq!(finished.status.code(), Some(1), "{}", finished.stderr);
    assert_eq!(
        finished.stderr.trim_end(),
        "healthprobe: /dev/null/journal.jsonl: cannot open journal: Not a directory (os error 20)"
    );
    assert_eq!(fleet.engine(0).requests(), 0);
}
