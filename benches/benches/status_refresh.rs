//! `status_refresh`: does an operator watching the status page slow the
//! ticks down? Same-run pairs of ticks (issue 26).
//!
//! One fleet of 1,000 engines on loopback (900 answer 200, 100 answer 503,
//! so the page has 100 rows and the JSON 100 games), one `Worker`
//! (threads, 16 in flight, 1 s interval) with the status board and the
//! metrics server on 127.0.0.1, for [`TICKS`] ticks. Ticks come in pairs;
//! in one tick of each pair (the first in even pairs, the second in odd
//! ones) a client GETs `/` and then `/status?state=failing` a few
//! milliseconds after the tick starts, so both requests are served while
//! the tick runs: the worst case of a page refreshing once a second.
//! Printed: the ratio of each pair's tick durations (refreshed / quiet),
//! their median and quartiles, and the client's median latencies.
//!
//! `cargo bench -p healthprobe-benches --bench status_refresh` (~2 min).

use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use healthprobe_shell::Shutdown;
use healthprobe_shell::adapters::{CountingTelemetry, MemoryPublisher, MemoryStore};
use healthprobe_shell::config::WorkerConfig;
use healthprobe_shell::driver::ports::SystemClock;
use healthprobe_shell::driver::worker::{Ports, Worker};
use healthprobe_shell::metrics::{Metrics, MetricsServer, MetricsTelemetry};
use healthprobe_shell::status::StatusBoard;
use healthprobe_tests::{Behaviour, Fleet};

/// Engines, of which [`FAILING`] answer 503.
const ENGINES: usize = 1_000;
const FAILING: usize = 100;
/// Ticks measured (after the first, which creates the failing games' state).
const TICKS: usize = 100;
/// When, after a refreshed tick starts, the client sends its first request.
const REQUEST_OFFSET: Duration = Duration::from_millis(3);

fn main() {
    // `cargo bench` passes `--bench`; a filter that names another bench skips this one.
    if std::env::args()
        .skip(1)
        .any(|arg| !arg.starts_with("--") && !"status_refresh".contains(arg.as_str()))
    {
        return;
    }
    let behaviours = (0..ENGINES).map(|i| Behaviour::Status(if i < FAILING { 503 } else { 200 }));
    let fleet = Fleet::start(behaviours).expect("start the engines");
    let config = WorkerConfig {
        interval: Duration::from_secs(1),
        ..WorkerConfig::default()
    };
    let board = Arc::new(StatusBoard::new());
    let metrics = Arc::new(Metrics::new(config.interval, config.probe_timeout));
    let server = MetricsServer::start(
        "127.0.0.1:0".parse().expect("an address"),
        Arc::clone(&metrics),
        Arc::clone(&board),
    )
    .expect("start the server");
    let ports = Ports::new(
        MemoryStore::with_records(fleet.records()),
        MemoryPublisher::new(),
        MetricsTelemetry::new(Some(Arc::clone(&metrics)), CountingTelemetry::new()),
        SystemClock,
    )
    .with_status(board);
    let mut worker = Worker::new(config, ports).expect("a worker");

    // The client: told when the next refreshed tick starts, it requests then.
    let (starts, next_start) = mpsc::channel::<Instant>();
    let addr = server.local_addr();
    let client = thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut latencies = [Vec::new(), Vec::new()];
        for start in next_start {
            // Wait for the tick to start: the client's own pace, as a
            // browser's refresh timer, not synchronisation.
            thread::sleep((start + REQUEST_OFFSET).saturating_duration_since(Instant::now()));
            for (index, path) in ["/", "/status?state=failing"].into_iter().enumerate() {
                let started = Instant::now();
                let body = agent
                    .get(format!("http://{addr}{path}"))
                    .call()
                    .and_then(|mut response| response.body_mut().read_to_string())
                    .unwrap_or_else(|err| panic!("GET {path}: {err}"));
                assert!(body.contains("failures_threshold"), "{path}: {body}");
                latencies[index].push(started.elapsed());
            }
        }
        latencies
    });

    let interval = config.interval;
    let shutdown = Shutdown::new();
    let mut ticks: Vec<(Duration, bool)> = Vec::new();
    let mut done = 0;
    worker.run(&shutdown, |report| {
        metrics.observe_tick(report);
        done += 1;
        if done > 1 {
            let refreshed = refreshed(ticks.len());
            ticks.push((report.duration, refreshed));
        }
        if ticks.len() == TICKS {
            shutdown.trigger();
            return;
        }
        // The next tick starts one interval after this one started.
        if refreshed(ticks.len()) {
            let next = Instant::now() + interval.saturating_sub(report.duration);
            let _ = starts.send(next);
        }
    });
    drop(starts);
    let latencies = client.join().expect("the client");

    let mut ratios: Vec<f64> = ticks
        .chunks(2)
        .filter_map(|pair| match pair {
            [(a, true), (b, false)] | [(b, false), (a, true)] => {
                Some(a.as_secs_f64() / b.as_secs_f64())
            }
            _ => None,
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    let median = |times: &[Duration]| {
        let mut times = times.to_vec();
        times.sort();
        times[times.len() / 2]
    };
    let of = |refreshed: bool| {
        let times: Vec<Duration> = ticks
            .iter()
            .filter(|(_, r)| *r == refreshed)
            .map(|(d, _)| *d)
            .collect();
        median(&times)
    };
    println!(
        "status_refresh summary: {} pairs of ticks, refreshed / quiet: median {:.3} (quartiles {:.3} .. {:.3}); median tick refreshed {:.1} ms, quiet {:.1} ms",
        ratios.len(),
        at(0.5),
        at(0.25),
        at(0.75),
        of(true).as_secs_f64() * 1e3,
        of(false).as_secs_f64() * 1e3
    );
    for (what, times) in ["/", "/status?state=failing"].iter().zip(&latencies) {
        println!(
            "status_refresh summary: GET {what} during a tick: median {:.2} ms over {} requests",
            median(times).as_secs_f64() * 1e3,
            times.len()
        );
    }
}

/// Whether the `index`-th measured tick is the refreshed one of its pair:
/// the first of even pairs, the second of odd ones.
fn refreshed(index: usize) -> bool {
    (index / 2) % 2 == index % 2
}
