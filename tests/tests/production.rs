//! The production set-up end to end: two `healthprobe run --shard I/2`
//! processes list one shared PostgreSQL table and publish to one Redis
//! stream. Between them they probe every engine once per tick and publish
//! each event once.

use std::time::Duration;

use healthprobe_core::EventType;
use healthprobe_core::shard::shard_of;
use healthprobe_tests::{Behaviour, Fleet, HealthprobeProcess, TestPostgres, TestRedis};

/// Bound on any wait in these tests; reached only when something is broken.
const PATIENCE: Duration = Duration::from_secs(30);

const ENGINES: usize = 24;
const TICKS: usize = 3;
const STREAM: &str = "health-events";

#[test]
fn two_shards_over_one_postgres_table_publish_each_event_once_to_one_redis_stream() {
    // Every third engine answers 503: with a threshold of 2 each of those
    // fails once, at the second tick, whichever shard owns it.
    let fleet = Fleet::start((0..ENGINES).map(|index| {
        if index % 3 == 0 {
            Behaviour::Status(503)
        } else {
            Behaviour::Status(200)
        }
    }))
    .unwrap();
    let postgres = TestPostgres::start_fresh();
    for record in fleet.records() {
        postgres.upsert(&record);
    }
    let redis = TestRedis::start();
    let ticks = TICKS.to_string();
    let shards: Vec<HealthprobeProcess> = ["0/2", "1/2"]
        .iter()
        .map(|shard| {
            HealthprobeProcess::spawn(&[
                "run",
                "--records",
                &postgres.url(),
                "--events",
                &redis.url(STREAM),
                "--shard",
                shard,
                "--ticks",
                &ticks,
                "--failures-threshold",
                "2",
            ])
            .expect("start healthprobe")
        })
        .collect();
    for (index, process) in shards.into_iter().enumerate() {
        let finished = process
            .wait(PATIENCE)
            .unwrap_or_else(|err| panic!("shard {index}/2: {err}"));
        assert!(
            finished.status.success(),
            "shard {index}/2: {}",
            finished.stderr
        );
    }

    for (index, engine) in fleet.engines().iter().enumerate() {
        assert_eq!(engine.requests(), TICKS, "engine {index}");
    }
    let events = redis.events(STREAM);
    let mut failed: Vec<String> = events
        .iter()
        .map(|event| {
            assert_eq!(event.event_type(), EventType::ProbeFailed, "{event:?}");
            event.game_id.clone()
        })
        .collect();
    failed.sort();
    let mut expected: Vec<String> = (0..ENGINES)
        .filter(|index| index % 3 == 0)
        .map(Fleet::game_id)
        .collect();
    expected.sort();
    assert_eq!(failed, expected, "one probe_failed per failing engine");
    let failing_shards: Vec<u32> = expected.iter().map(|game| shard_of(game, 2)).collect();
    assert!(
        failing_shards.contains(&0) && failing_shards.contains(&1),
        "both shards own a failing engine: {failing_shards:?}"
    );
}
