//! What `--state` and `--journal` cost per tick, on 1,000 loopback engines.
//!
//! `cargo run --release -p healthprobe-tests --example durability_cost [ROUNDS]`
//!
//! Four workers (plain, state file, journal, both) tick in turn over the
//! same fleet, so drift hits them alike; the median tick of each is printed,
//! first with every engine healthy (the snapshot does not change, so it is
//! not rewritten), then with every engine failing (a new snapshot, with
//! 1,000 games, written and fsynced every tick). Then the bookkeeping alone,
//! without probes: a snapshot write and a tick's journal lines.

use std::time::{Duration, Instant};

use healthprobe_core::{HealthStates, Input, Policy, ProbeOutcome, ProbeResult, Timestamp};
use healthprobe_shell::adapters::{CountingTelemetry, MemoryPublisher, MemoryStore};
use healthprobe_shell::codec::snapshot::encode_snapshot_with_journal;
use healthprobe_shell::config::WorkerConfig;
use healthprobe_shell::driver::ports::SystemClock;
use healthprobe_shell::driver::ports::{JournalSink, StateStore};
use healthprobe_shell::driver::worker::{Ports, Worker};
use healthprobe_shell::durability::durable::StateFile;
use healthprobe_shell::durability::journal_file::JournalFile;
use healthprobe_tests::{Behaviour, Fleet, ScratchDir};

const ENGINES: usize = 1_000;

fn main() -> std::io::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or(40);
    let fleet = Fleet::uniform(ENGINES, Behaviour::Status(200))?;
    let dir = ScratchDir::new("durability-cost")?;
    let config = WorkerConfig {
        failures_threshold: 3,
        ..WorkerConfig::default()
    };
    let names = ["plain", "--state", "--journal", "--state --journal"];
    let mut workers: Vec<Worker> = (0..names.len())
        .map(|index| {
            let mut ports = Ports::new(
                MemoryStore::with_records(fleet.records()),
                MemoryPublisher::new(),
                CountingTelemetry::new(),
                SystemClock,
            );
            if index == 1 || index == 3 {
                ports = ports.with_state(StateFile::new(dir.join(&format!("state-{index}.json"))));
            }
            if index >= 2 {
                ports = ports.with_journal(
                    JournalFile::append(dir.join(&format!("journal-{index}.jsonl")))
                        .expect("journal"),
                );
            }
            Worker::new(config, ports).expect("valid config and state file")
        })
        .collect();

    for (phase, behaviour) in [
        ("healthy", Behaviour::Status(200)),
        ("failing", Behaviour::Status(500)),
    ] {
        for engine in fleet.engines() {
            engine.set(behaviour.clone());
        }
        // Warm up: connections, page cache, and (failing) the published state.
        for worker in &mut workers {
            for _ in 0..4 {
                worker.tick();
            }
        }
        let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); workers.len()];
        for _ in 0..rounds {
            for (worker, times) in workers.iter_mut().zip(&mut times) {
                let report = worker.tick();
                assert_eq!(report.probes, ENGINES);
                times.push(report.duration);
            }
        }
        let plain = median(&mut times[0]);
        println!("{ENGINES} engines, {phase}, median of {rounds} ticks:");
        for (name, times) in names.iter().zip(&mut times) {
            let median = median(times);
            println!(
                "  {name:<20} {:>8.2} ms  ({:+.2} ms, {:+.1}%)",
                ms(median),
                ms(median) - ms(plain),
                (ms(median) / ms(plain) - 1.0) * 100.0
            );
        }
    }

    // The bookkeeping alone.
    let policy = Policy::new(1, 1).expect("valid");
    let mut failing = HealthStates::new(policy);
    let outcomes: Vec<ProbeOutcome> = (0..ENGINES)
        .map(|i| ProbeOutcome {
            game_id: Fleet::game_id(i),
            container_id: Fleet::container_id(i),
            observed_at: Timestamp::now(),
            result: ProbeResult::Unhealthy {
                status: 500,
                error: "unexpected status 500".into(),
            },
        })
        .collect();
    for outcome in &outcomes {
        failing.apply(outcome.as_ref());
    }
    let mut failing_more = failing.clone();
    for outcome in &outcomes {
        failing_more.apply(outcome.as_ref());
    }
    let mut file = StateFile::new(dir.join("alone.json"));
    let mut writes = Vec::new();
    for round in 0..rounds {
        // Alternate two 1,000-game states so every save is a real write.
        let states = if round % 2 == 0 {
            &failing
        } else {
            &failing_more
        };
        let started = Instant::now();
        file.save(states, &[], None).expect("write");
        writes.push(started.elapsed());
    }
    let mut encodes = Vec::new();
    let mut buffer = Vec::new();
    for _ in 0..rounds {
        buffer.clear();
        let started = Instant::now();
        encode_snapshot_with_journal(&mut buffer, &failing, &[], None);
        encodes.push(started.elapsed());
    }
    let mut unchanged = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        file.save(&HealthStates::new(policy), &[], None)
            .expect("write");
        unchanged.push(started.elapsed());
    }
    let mut journal = JournalFile::append(dir.join("alone.jsonl"))?;
    let mut lines = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        journal.record(&Input::Prune {
            running: (0..ENGINES).map(Fleet::game_id).collect(),
        })?;
        for outcome in &outcomes {
            journal.record(&Input::Outcome(outcome.clone()))?;
        }
        journal.flush()?;
        lines.push(started.elapsed());
    }
    println!("bookkeeping alone, median of {rounds}:");
    println!(
        "  snapshot of 1,000 games, written and fsynced:              {:.3} ms",
        ms(median(&mut writes))
    );
    println!(
        "  snapshot of 1,000 games, encoded only ({} bytes):       {:.3} ms",
        buffer.len(),
        ms(median(&mut encodes))
    );
    println!(
        "  snapshot unchanged (encoded and compared only):            {:.3} ms",
        ms(median(&mut unchanged))
    );
    println!(
        "  journal, 1 prune + 1,000 outcome lines, flushed:           {:.3} ms",
        ms(median(&mut lines))
    );
    Ok(())
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
