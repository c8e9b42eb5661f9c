//! `status`: what the status endpoints cost at 100,000 games (issue 26),
//! in process, on a status book filled by a real tick machine.
//!
//! Two fleets of 100,000 listed games, each folded through 10 ticks so
//! every shown game has its full ring of 10 outcomes: `1k` with 1,000 of
//! them failing (503), `100k` with all of them failing.
//!
//! - `status/json_failing_{1k,100k}`: `GET /status?state=failing` as the
//!   server answers it: the query parsed, the matching games found in the
//!   snapshot, one page (100 games) serialized.
//! - `status/page_{1k,100k}`: `GET /`: the HTML page (at most 500 rows).
//! - `status/snapshot_{1k,100k}`: what the worker adds to each tick:
//!   `StatusBook::tick_done`, the snapshot of the machine's state and the
//!   book put on the board.
//!
//! After the benches it prints `status summary:` lines with the medians.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use healthprobe_core::tick::{Action, MachineConfig, ProbeClass, Published, TickMachine};
use healthprobe_core::{Policy, ProbeResult, RuntimeRecord, Timestamp};
use healthprobe_shell::config::{Runtime, WorkerConfig};
use healthprobe_shell::driver::ports::Probed;
use healthprobe_shell::status::{StatusBoard, StatusBook, StatusQuery, page};

/// Games listed.
const GAMES: usize = 100_000;
/// Ticks folded before measuring: every shown game's ring is full.
const TICKS: u64 = 10;

/// A machine and its status book after [`TICKS`] ticks of `GAMES` games,
/// the first `failing` of them answering 503.
struct Filled {
    machine: TickMachine,
    book: StatusBook,
    board: Arc<StatusBoard>,
}

fn fill(failing: usize) -> Filled {
    let config = WorkerConfig::default();
    let policy = Policy::default();
    let mut machine = TickMachine::new(MachineConfig::new(Duration::from_secs(5)), policy);
    let board = Arc::new(StatusBoard::new());
    let start = Timestamp::from_second(1_800_000_000).expect("valid");
    let mut book = StatusBook::new(
        Arc::clone(&board),
        &config,
        Runtime::Threads,
        start,
        &machine,
    );
    let records: Vec<RuntimeRecord> = (0..GAMES)
        .map(|i| {
            RuntimeRecord::running(
                format!("game-{i:06}"),
                format!("container-{i:06}"),
                format!("http://10.0.{}.{}:8080/", i / 256 % 256, i % 256),
            )
        })
        .collect();
    for tick in 0..TICKS {
        let now = Duration::from_secs(5 * tick);
        let at = Timestamp::from_second(1_800_000_000 + 5 * tick as i64).expect("valid");
        machine.start_tick(now);
        drain(&mut machine, &mut book, now, at);
        machine.handle_listing(now, Ok(records.clone()));
        let Some(Action::Probe(batch)) = machine.poll_action() else {
            panic!("a batch to probe");
        };
        for (job, record) in batch.jobs().iter().enumerate() {
            let index: usize = record.game_id[5..].parse().expect("numbered");
            let (result, class) = if index < failing {
                let error = "unexpected status 503".to_owned();
                (
                    ProbeResult::Unhealthy { status: 503, error },
                    ProbeClass::BadStatus,
                )
            } else {
                (ProbeResult::Healthy, ProbeClass::Ok)
            };
            let probed =
                Probed::new(job, at, result, class).with_latency(Duration::from_micros(700));
            let outcome = book.outcome(&record.game_id, &probed);
            machine.handle_outcome(now, job, at, probed.result, probed.class);
            if let Some(outcome) = outcome {
                book.record(record, outcome, machine.states());
            }
            drain(&mut machine, &mut book, now, at);
        }
        machine.handle_probes_done(now);
        drain(&mut machine, &mut book, now, at);
    }
    Filled {
        machine,
        book,
        board,
    }
}

fn drain(machine: &mut TickMachine, book: &mut StatusBook, now: Duration, at: Timestamp) {
    while let Some(action) = machine.poll_action() {
        match action {
            Action::Publish(_) => machine.handle_published(now, Published::Accepted),
            Action::SyncPublisher => machine.handle_synced(now, Ok(())),
            Action::TickDone(report) => book.tick_done(machine, &report, at),
            Action::Wait { .. } | Action::List => return,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut medians = Vec::new();
    for (name, failing) in [("1k", 1_000), ("100k", GAMES)] {
        let mut filled = fill(failing);
        let snapshot = filled.board.snapshot().expect("a snapshot");
        assert_eq!(snapshot.totals.failing, failing);
        let mut group = criterion.benchmark_group("status");
        group.sampling_mode(SamplingMode::Flat).sample_size(20);
        group.bench_function(format!("json_failing_{name}"), |b| {
            b.iter(|| {
                let query = StatusQuery::parse(Some("state=failing")).expect("valid");
                filled.board.snapshot().expect("a snapshot").to_json(&query)
            });
        });
        group.bench_function(format!("page_{name}"), |b| {
            b.iter(|| page::render(filled.board.snapshot().as_deref()));
        });
        let report = healthprobe_core::tick::TickReport::default();
        let at = Timestamp::from_second(1_900_000_000).expect("valid");
        group.bench_function(format!("snapshot_{name}"), |b| {
            b.iter(|| filled.book.tick_done(&filled.machine, &report, at));
        });
        group.finish();
        // Medians of a few plain repetitions, for the summary.
        let median = |f: &mut dyn FnMut()| {
            let mut times: Vec<Duration> = (0..15)
                .map(|_| {
                    let started = Instant::now();
                    f();
                    started.elapsed()
                })
                .collect();
            times.sort();
            times[times.len() / 2]
        };
        let json = median(&mut || {
            let query = StatusQuery::parse(Some("state=failing")).expect("valid");
            let body = filled.board.snapshot().expect("a snapshot").to_json(&query);
            assert!(body.len() > 1000);
        });
        let page = median(&mut || {
            assert!(page::render(filled.board.snapshot().as_deref()).len() > 1000);
        });
        let snapshot = median(&mut || filled.book.tick_done(&filled.machine, &report, at));
        medians.push((name, json, page, snapshot));
    }
    criterion.final_summary();
    for (name, json, page, snapshot) in medians {
        println!(
            "status summary: {name} of {GAMES} failing: /status?state=failing {:.2} ms, / {:.2} ms, snapshot per tick {:.1} ms",
            json.as_secs_f64() * 1e3,
            page.as_secs_f64() * 1e3,
            snapshot.as_secs_f64() * 1e3
        );
    }
}
