//! `--shard I/N`: N `healthprobe run` processes over one shared records file
//! split a real fleet exactly: every engine probed once per tick by exactly
//! one of them, every event emitted by exactly one of them.

use std::collections::BTreeSet;
use std::time::Duration;

use healthprobe_core::shard::shard_of;
use healthprobe_tests::{Behaviour, Fleet, HealthprobeProcess, ScratchDir};
use serde_json::Value;

/// Bound on any wait in these tests; reached only when something is broken.
const PATIENCE: Duration = Duration::from_secs(30);

const ENGINES: usize = 48;
const TICKS: usize = 2;

/// Engine `index` answers 503 when `index % 3 == 0`, 200 otherwise.
fn behaviour(index: usize) -> Behaviour {
    if index % 3 == 0 {
        Behaviour::Status(503)
    } else {
        Behaviour::Status(200)
    }
}

fn game_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|event| event["game_id"].as_str().expect("game_id").to_owned())
        .collect()
}

/// Run `count` shards to the end, concurrently, over the same records; the
/// events each one wrote.
fn run_shards(fleet: &Fleet, dir: &ScratchDir, count: u32, runtime: &str) -> Vec<Vec<Value>> {
    let records = dir.join("records.json");
    fleet.write_records(&records).unwrap();
    let processes: Vec<HealthprobeProcess> = (0..count)
        .map(|index| {
            let shard = format!("{index}/{count}");
            let ticks = TICKS.to_string();
            HealthprobeProcess::spawn(&[
                "run",
                "--records",
                records.to_str().unwrap(),
                "--ticks",
                &ticks,
                "--failures-threshold",
                "2",
                "--shard",
                &shard,
                "--runtime",
                runtime,
            ])
            .expect("start healthprobe")
        })
        .collect();
    processes
        .into_iter()
        .enumerate()
        .map(|(index, process)| {
            let finished = process
                .wait(PATIENCE)
                .unwrap_or_else(|err| panic!("shard {index}/{count}: {err}"));
            assert!(
                finished.status.success(),
                "shard {index}/{count}: {}",
                finished.stderr
            );
            finished
                .stdout
                .lines()
                .map(|line| serde_json::from_str(line).expect("an event line"))
                .collect()
        })
        .collect()
}

fn check_exact_split(count: u32, runtime: &str) {
    let fleet = Fleet::start((0..ENGINES).map(behaviour)).unwrap();
    let dir = ScratchDir::new("shard").unwrap();
    let per_shard = run_shards(&fleet, &dir, count, runtime);

    // Every engine was probed once per tick, by one shard between them all.
    for (index, engine) in fleet.engines().iter().enumerate() {
        assert_eq!(
            engine.requests(),
            TICKS,
            "engine {index} ({}) over {count} shards",
            Fleet::game_id(index)
        );
    }
    // Each shard emitted events only for its own games, and together
    // exactly one probe_failed per failing game.
    let mut all = Vec::new();
    for (index, events) in per_shard.iter().enumerate() {
        for game_id in game_ids(events) {
            assert_eq!(
                shard_of(&game_id, count),
                u32::try_from(index).unwrap(),
                "{game_id} published by shard {index}/{count}"
            );
            all.push(game_id);
        }
        assert!(
            events
                .iter()
                .all(|event| event["event_type"] == "probe_failed"),
            "{events:?}"
        );
    }
    let mut expected: Vec<String> = (0..ENGINES)
        .filter(|index| index % 3 == 0)
        .map(Fleet::game_id)
        .collect();
    all.sort();
    expected.sort();
    assert_eq!(all, expected, "one probe_failed per failing game");
    // The split is a real one: no shard was left without games.
    let owners: BTreeSet<u32> = (0..ENGINES)
        .map(|index| shard_of(&Fleet::game_id(index), count))
        .collect();
    assert_eq!(owners.len(), count as usize, "every shard owns games");
}

#[test]
fn two_shards_probe_a_fleet_exactly_once_and_split_its_events() {
    check_exact_split(2, "threads");
}

#[test]
fn three_async_shards_probe_a_fleet_exactly_once_and_split_its_events() {
    check_exact_split(3, "async");
}

#[test]
fn a_bad_shard_is_refused_naming_the_flag() {
    let dir = ScratchDir::new("shard-bad").unwrap();
    let records = dir.join("records.json");
    std::fs::write(&records, "[]").unwrap();
    for (shard, reason) in [
        ("2/2", "shard index 2 must be below the shard count 2"),
        ("0/0", "the shard count must be at least 1"),
        ("1-2", "is not I/N"),
    ] {
        let finished = HealthprobeProcess::spawn(&[
            "run",
            "--records",
            records.to_str().unwrap(),
            "--ticks",
            "1",
            "--shard",
            shard,
        ])
        .unwrap()
        .wait(PATIENCE)
        .unwrap();
        assert_eq!(
            finished.status.code(),
            Some(2),
            "{shard}: {}",
            finished.stderr
        );
        assert!(
            finished.stderr.contains("--shard") && finished.stderr.contains(reason),
            "{shard}: {}",
            finished.stderr
        );
    }
}
