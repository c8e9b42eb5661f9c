//! Same fleet, both runtimes: identical outcomes and identical events.
//!
//! One scripted fleet (statuses, a hang, an abrupt close, garbage,
//! redirects, heads just under and over the cap, a huge header, a huge body,
//! a slowloris trickle, flapping scripts, a refused port) is started twice,
//! once per runtime, and each worker runs the same ticks under the same
//! manual clock. Within a tick the fold order follows which engine answers
//! first, so lines are compared per tick, sorted: the journal (every prune
//! and outcome, error texts included) and the events, as the JSON lines the
//! CLI writes, must be byte-identical.

use std::time::Duration;

use healthprobe_core::HealthEvent;
use healthprobe_shell::codec::wire::write_event_line;
use healthprobe_shell::config::WorkerConfig;
use healthprobe_shell::durability::journal_file::JournalFile;
use healthprobe_shell::probing::probe::MAX_RESPONSE_HEADER_BYTES;
use healthprobe_tests::{
    Behaviour, Fleet, RefusedPort, Runtime, RuntimeRecord, ScratchDir, TestWorker, test_config,
};

const TICKS: usize = 6;

/// Every kind of engine the prober must word identically, flapping ones included.
fn behaviours() -> Vec<Behaviour> {
    use Behaviour::{
        Close, Delayed, Garbage, Hang, HugeBody, HugeHeader, PaddedHead, Redirect, RedirectLoop,
        Script, Status, Trickle,
    };
    vec![
        Status(200),
        Status(503),
        Status(404),
        Status(204),
        Status(999),
        Hang,
        Close,
        Garbage,
        Redirect("http://127.0.0.1:1/healthz".to_owned()),
        RedirectLoop,
        HugeHeader,
        PaddedHead(MAX_RESPONSE_HEADER_BYTES),
        PaddedHead(MAX_RESPONSE_HEADER_BYTES + 1),
        HugeBody,
        Trickle,
        Delayed {
            delay: Duration::from_millis(50),
            status: 500,
        },
        Script(vec![
            Status(503),
            Status(503),
            Status(200),
            Status(503),
            Status(200),
            Status(200),
        ]),
        Script(vec![
            Close,
            Status(500),
            Hang,
            Status(200),
            Garbage,
            Status(200),
        ]),
        Script(vec![Status(200), Hang, Hang, Status(302), Status(200)]),
    ]
}

/// Per tick: the journal's lines and the events' JSON lines, each sorted.
type Ticks = Vec<(Vec<String>, Vec<String>)>;

fn run(runtime: Runtime, refused: &str, dir: &ScratchDir) -> Ticks {
    let fleet = Fleet::start(behaviours()).expect("start the fleet");
    let mut records = fleet.records();
    records.push(RuntimeRecord::running("g-refused", "c-refused", refused));
    let config = WorkerConfig {
        // Twenty times the delayed engine's 50 ms, so that a loaded machine
        // cannot turn its answer into a timeout on one runtime only.
        probe_timeout: Duration::from_secs(1),
        ..test_config(2, 1)
    };
    let journal = dir.join(&format!("{runtime}.jsonl"));
    let mut worker = TestWorker::with_ports(runtime, config, records, |ports| {
        ports.with_journal(JournalFile::append(&journal).expect("open the journal"))
    });
    let mut events_per_tick = Vec::new();
    for _ in 0..TICKS {
        let (report, events) = worker.tick();
        assert_eq!(report.probes, records_len(&fleet), "{runtime}: {report:?}");
        events_per_tick.push(jsonl(&events));
    }
    let text = std::fs::read_to_string(&journal).expect("read the journal");
    // Each tick's journal starts with its prune.
    let mut journal_per_tick: Vec<Vec<String>> = Vec::new();
    for line in text.lines() {
        if line.contains("\"type\":\"prune\"") {
            journal_per_tick.push(Vec::new());
        }
        journal_per_tick
            .last_mut()
            .expect("a prune opens every tick")
            .push(line.to_owned());
    }
    assert_eq!(journal_per_tick.len(), TICKS, "{runtime}");
    journal_per_tick
        .into_iter()
        .map(|mut lines| {
            lines.sort();
            lines
        })
        .zip(events_per_tick)
        .collect()
}

fn records_len(fleet: &Fleet) -> usize {
    fleet.len() + 1
}

/// The events as the CLI writes them, one JSON line each, sorted.
fn jsonl(events: &[HealthEvent]) -> Vec<String> {
    let mut lines: Vec<String> = events
        .iter()
        .map(|event| {
            let mut line = Vec::new();
            write_event_line(&mut line, event).expect("write to memory");
            String::from_utf8(line).expect("JSON is UTF-8")
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn both_runtimes_give_identical_outcomes_and_events_on_the_same_fleet() {
    let dir = ScratchDir::new("parity").expect("scratch dir");
    // Held for the whole test: no other server can take the port meanwhile.
    let refused = RefusedPort::new();
    let threads = run(Runtime::Threads, &refused.url(), &dir);
    let tasks = run(Runtime::Async, &refused.url(), &dir);
    for (tick, (threads, tasks)) in threads.iter().zip(&tasks).enumerate() {
        assert_eq!(threads.0, tasks.0, "tick {tick}: journal, threads vs async");
        assert_eq!(threads.1, tasks.1, "tick {tick}: events, threads vs async");
    }
    let events: usize = threads.iter().map(|(_, events)| events.len()).sum();
    assert!(
        events >= 15,
        "the fleet emits both kinds of event: {events}"
    );
}
