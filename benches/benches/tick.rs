//! `tick`: the worker's tick over real engines on loopback, against the
//! machine's limit and the reference worker, measured in one run.
//!
//! Criterion benches (group `tick`, wall time, `SamplingMode::Flat`, 10
//! samples; every iteration is a whole tick or a whole process):
//!
//! - `tick/threads_1000_healthy`: `Worker::tick` over 1,000 healthy engines,
//!   `max_concurrency` 16, `probe_timeout` 2 s, in-memory store and
//!   publisher; throughput in probes per second.
//! - `tick/limit_1000_fresh_connections`: the machine's limit on the same
//!   engines: 16 threads, each looping over the engines with a fresh
//!   `TcpStream`, a minimal `GET /healthz HTTP/1.1` with `Connection: close`,
//!   and a read to EOF. Same throughput unit.
//! - `tick/threads_5000_with_50_hanging`: `Worker::tick` over 5,000 engines,
//!   every 100th one hanging, `probe_timeout` 1 s: the tick time.
//! - `tick/async_1000_healthy` and `tick/async_5000_with_50_hanging`: the
//!   same two ticks with `Runtime::Async` (tokio) and its default
//!   cap (`Runtime::default_max_concurrency`, 512 probes in flight).
//! - `tick/healthprobe_run_10_ticks_1000_healthy` and
//!   `tick/refrun_10_ticks_1000_healthy`: the release `healthprobe run
//!   --ticks 10` and the reference worker's `refrun --ticks 10` as processes
//!   over a records file of the same 1,000 engines (events to `/dev/null`).
//!   `refrun` is `target/reference/bin/refrun` (`bash tools/reference/build.sh`)
//!   or `$HEALTHPROBE_REFERENCE_REFRUN`; without it that bench is skipped
//!   with a note. `tick/limit_process_10_rounds_1000_fresh_connections`:
//!   the limit loop above, 10 rounds, as a process of its own (this bench's
//!   executable re-run with `HEALTHPROBE_TICK_LIMIT_RECORDS`), so the limit
//!   is also measured from outside the process that hosts the engines, like
//!   the two workers. The `healthprobe` binary is built first with `cargo build
//!   --release` into this bench's target dir (or `$HEALTHPROBE_BIN`).
//!
//! After the benches it prints a summary (`tick summary:` lines): the
//! medians of the samples, the ratio worker / limit (also from 10 paired
//! alternations, which a neighbour's load disturbs less), the ratio
//! healthprobe / reference (also from 3 paired alternations), the peak RSS
//! of `healthprobe run --ticks 3` with each `--runtime` (and of `refrun`)
//! over the 5,000 engines, their wall times and the ratio of each runtime's
//! to `refrun`'s (the async target: at most 0.35), the most threads each
//! process had (`/proc/PID/status`, sampled every 2 ms), async/threads
//! ratios of the tick medians, and the load average before and after.
//!
//! Fleets start once, lazily, outside the timed regions; a filter such as
//! `-- threads_1000` starts only what it needs, and the extra measurements
//! run only when the benches they belong to ran.

use std::cell::{OnceCell, RefCell};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use healthprobe_shell::adapters::{CountingTelemetry, MemoryPublisher, MemoryStore};
use healthprobe_shell::config::{Runtime, WorkerConfig};
use healthprobe_shell::driver::ports::SystemClock;
use healthprobe_shell::driver::worker::{Ports, Worker, probe_fanout};
use healthprobe_shell::probing::connections::{ConnectionPolicy, Connections};
use healthprobe_shell::tls::TlsClient;
use healthprobe_tests::{Behaviour, Fleet, try_healthprobe_binary};

/// Engines in the healthy fleet.
const HEALTHY_ENGINES: usize = 1_000;
/// Engines in the fleet with hanging ones.
const LARGE_ENGINES: usize = 5_000;
/// Every `HANG_EVERY`-th engine of the large fleet hangs: 50 of 5,000.
const HANG_EVERY: usize = 100;
/// The reference's concurrency cap, for the worker and the limit loop alike.
const CONCURRENCY: usize = 16;
/// Ticks per process run in the healthprobe-vs-reference benches.
const PROCESS_TICKS: u64 = 10;
/// Ticks of the RSS run over the large fleet.
const RSS_TICKS: u64 = 3;
/// Paired worker/limit alternations measured after the criterion benches.
const LIMIT_PAIRS: usize = 10;
/// Paired healthprobe/refrun alternations measured after the criterion benches.
const PROCESS_PAIRS: usize = 3;

/// Durations of individual iterations, recorded alongside criterion's.
#[derive(Default)]
struct Samples(RefCell<Vec<Duration>>);

impl Samples {
    /// Time `work` `iters` times, recording each run; the total for criterion.
    fn time(&self, iters: u64, mut work: impl FnMut()) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let start = Instant::now();
            work();
            let took = start.elapsed();
            self.0.borrow_mut().push(took);
            total += took;
        }
        total
    }

    fn median(&self) -> Option<Duration> {
        median(&self.0.borrow())
    }
}

fn median(values: &[Duration]) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied()
}

fn median_f64(values: &mut [f64]) -> Option<f64> {
    values.sort_unstable_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// A fleet of engines and its records file, removed on drop.
struct Engines {
    fleet: Fleet,
    records_file: PathBuf,
    targets: Vec<Target>,
}

/// An engine's address and the request the limit loop sends it.
type Target = (SocketAddr, Vec<u8>);

impl Engines {
    fn start(name: &str, behaviours: impl IntoIterator<Item = Behaviour>) -> Self {
        let started = Instant::now();
        let fleet = Fleet::start(behaviours).expect("cannot start the engines");
        let records_file = std::env::temp_dir().join(format!(
            "healthprobe-bench-tick-{}-{name}.json",
            std::process::id()
        ));
        fleet
            .write_records(&records_file)
            .expect("cannot write the records file to the temp dir");
        let targets = fleet
            .engines()
            .iter()
            .map(|engine| (engine.addr(), request(engine.addr())))
            .collect();
        println!(
            "tick: started {} engines ({name}) in {:.2?}",
            fleet.len(),
            started.elapsed()
        );
        Self {
            fleet,
            records_file,
            targets,
        }
    }

    fn healthy() -> Self {
        Self::start(
            "1000_healthy",
            std::iter::repeat_n(Behaviour::Status(200), HEALTHY_ENGINES),
        )
    }

    fn with_hanging() -> Self {
        Self::start(
            "5000_with_50_hanging",
            (0..LARGE_ENGINES).map(|index| {
                if index % HANG_EVERY == HANG_EVERY / 2 {
                    Behaviour::Hang
                } else {
                    Behaviour::Status(200)
                }
            }),
        )
    }

    fn hanging(&self) -> usize {
        (0..self.fleet.len())
            .filter(|index| index % HANG_EVERY == HANG_EVERY / 2)
            .count()
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.records_file);
    }
}

/// The request of the limit loop: what a minimal prober sends.
fn request(addr: SocketAddr) -> Vec<u8> {
    format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// A worker over `engines` with the reference's settings and `probe_timeout`,
/// fanning out on `runtime` (threads: the reference's cap of 16; async: its
/// default cap).
fn worker(engines: &Engines, probe_timeout: Duration, runtime: Runtime) -> Worker {
    let config = WorkerConfig {
        interval: WorkerConfig::DEFAULT_INTERVAL,
        probe_timeout,
        failures_threshold: 3,
        recovery_threshold: 1,
        max_concurrency: match runtime {
            Runtime::Threads => CONCURRENCY,
            Runtime::Async => runtime.default_max_concurrency(),
        },
        ..WorkerConfig::default()
    };
    let connections =
        ConnectionPolicy::new(Connections::Auto, config.interval, config.max_concurrency);
    let fanout = probe_fanout(runtime, &config, TlsClient::system(), connections)
        .expect("the bench's runtime starts");
    let ports = Ports::new(
        MemoryStore::with_records(engines.fleet.records()),
        MemoryPublisher::new(),
        CountingTelemetry::new(),
        SystemClock,
    )
    .with_fanout(fanout);
    Worker::new(config, ports).expect("the bench's config is valid")
}

/// One tick; checks every engine was probed and `failed` of them failed.
fn tick(worker: &mut Worker, games: usize, failed: usize) {
    let report = worker.tick();
    assert_eq!(report.probes, games, "every engine is probed: {report:?}");
    assert_eq!(report.failed_probes, failed, "{report:?}");
}

/// The limit: one fresh-connection GET per engine on `CONCURRENCY` threads.
fn fresh_connection_round(targets: &[Target]) {
    let next = AtomicUsize::new(0);
    let ok = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..CONCURRENCY {
            scope.spawn(|| {
                let mut response = Vec::with_capacity(1024);
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some((addr, request)) = targets.get(index) else {
                        break;
                    };
                    match get(*addr, request, &mut response) {
                        Ok(()) if response.starts_with(b"HTTP/1.1 200 ") => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(()) => {}
                        Err(err) => eprintln!("limit loop: {addr}: {err}"),
                    }
                }
            });
        }
    });
    assert_eq!(ok.into_inner(), targets.len(), "every GET got 200");
}

fn get(addr: SocketAddr, request: &[u8], response: &mut Vec<u8>) -> io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.write_all(request)?;
    response.clear();
    stream.read_to_end(response)?;
    Ok(())
}

/// The programs the process benches run, when present.
struct Programs {
    healthprobe: Result<PathBuf, String>,
    refrun: Result<PathBuf, String>,
}

impl Programs {
    fn locate() -> Self {
        Self {
            healthprobe: try_healthprobe_binary()
                .map(Path::to_path_buf)
                .map_err(str::to_owned),
            refrun: healthprobe_benches::refrun_binary(),
        }
    }
}

/// `healthprobe run --records FILE --ticks N --events /dev/null`, logs
/// discarded: threads with the reference's cap of 16.
fn healthprobe_run(binary: &Path, records: &Path, ticks: u64, probe_timeout: &str) -> Command {
    let mut command = Command::new(binary);
    command
        .arg("run")
        .arg("--records")
        .arg(records)
        .args(["--ticks", &ticks.to_string()])
        .args(["--probe-timeout", probe_timeout])
        .args(["--max-concurrency", &CONCURRENCY.to_string()])
        .args(["--events", "/dev/null"]);
    quiet(command)
}

/// [`healthprobe_run`] with `--runtime async` and its default cap.
fn healthprobe_run_async(
    binary: &Path,
    records: &Path,
    ticks: u64,
    probe_timeout: &str,
) -> Command {
    let mut command = Command::new(binary);
    command
        .args(["run", "--runtime", "async", "--records"])
        .arg(records)
        .args(["--ticks", &ticks.to_string()])
        .args(["--probe-timeout", probe_timeout])
        .args(["--events", "/dev/null"]);
    quiet(command)
}

/// Run `command` to completion; the most threads it had at once, from
/// `/proc/PID/status` sampled every 2 ms.
fn peak_threads(command: &Command) -> io::Result<usize> {
    let mut child = clone_command(command).spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    while child.try_wait()?.is_none() {
        if let Ok(status) = std::fs::read_to_string(&status_path) {
            let threads = status
                .lines()
                .find_map(|line| line.strip_prefix("Threads:"))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0);
            peak = peak.max(threads);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(peak)
}

/// `refrun --records FILE --ticks N --probe-timeout T`, events and logs discarded.
fn refrun(binary: &Path, records: &Path, ticks: u64, probe_timeout: &str) -> Command {
    let mut command = Command::new(binary);
    command
        .arg("--records")
        .arg(records)
        .args(["--ticks", &ticks.to_string()])
        .args(["--probe-timeout", probe_timeout]);
    quiet(command)
}

fn quiet(mut command: Command) -> Command {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Environment of the limit loop as a process: the records file to read.
const LIMIT_RECORDS_ENV: &str = "HEALTHPROBE_TICK_LIMIT_RECORDS";
/// Environment of the limit loop as a process: how many rounds to run.
const LIMIT_ROUNDS_ENV: &str = "HEALTHPROBE_TICK_LIMIT_ROUNDS";

/// This bench's own executable as the limit loop in a process of its own:
/// `rounds` fresh-connection rounds over the engines of `records`.
fn limit_process(records: &Path, rounds: u64) -> io::Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .env(LIMIT_RECORDS_ENV, records)
        .env(LIMIT_ROUNDS_ENV, rounds.to_string());
    Ok(quiet(command))
}

/// The limit loop as a process (see [`limit_process`]), when asked for.
fn limit_process_main() -> Option<()> {
    let records = std::env::var_os(LIMIT_RECORDS_ENV)?;
    let rounds: u64 = std::env::var(LIMIT_ROUNDS_ENV)
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .expect("HEALTHPROBE_TICK_LIMIT_ROUNDS is a number");
    let bytes = std::fs::read(&records).expect("the records file is readable");
    let targets: Vec<Target> = healthprobe_shell::adapters::parse_records(&bytes, "records")
        .expect("the records file parses")
        .iter()
        .map(|record| {
            let addr: SocketAddr = record
                .engine_endpoint
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .parse()
                .expect("endpoints are http://IP:PORT/");
            (addr, request(addr))
        })
        .collect();
    for _ in 0..rounds {
        fresh_connection_round(&targets);
    }
    Some(())
}

/// Run `command` to completion; panics unless it succeeds.
fn run_process(command: &mut Command) {
    let status = command.status().expect("the program starts");
    assert!(status.success(), "{command:?} failed: {status}");
}

/// Run `program args…` and return its peak RSS in KiB and its wall time.
///
/// Not `wait4`/`getrusage` on a child of this process: `ru_maxrss` of a
/// child forked from here counts the address space it was forked with
/// (the kernel records the pre-`exec` image's high-water mark), i.e. this
/// bench's own RSS with thousands of engines in it. So the program runs
/// under `/usr/bin/time -f %M` (a small process whose child's `ru_maxrss`
/// is that program's alone). Without `/usr/bin/time`, `VmHWM` of
/// `/proc/PID/status` is polled every 5 ms instead (it can miss the last
/// milliseconds before exit; the line says which method was used).
fn peak_rss_kib(command: &Command) -> io::Result<(u64, Duration, &'static str)> {
    let time = Path::new("/usr/bin/time");
    if time.is_file() {
        let output = std::env::temp_dir().join(format!(
            "healthprobe-bench-tick-{}-rss.txt",
            std::process::id()
        ));
        let mut wrapped = Command::new(time);
        wrapped
            .args(["-f", "%M", "-o"])
            .arg(&output)
            .arg(command.get_program())
            .args(command.get_args());
        let started = Instant::now();
        let status = quiet(wrapped).status()?;
        let took = started.elapsed();
        let text = std::fs::read_to_string(&output);
        let _ = std::fs::remove_file(&output);
        if !status.success() {
            return Err(io::Error::other(format!("{command:?} failed: {status}")));
        }
        let kib = text?
            .lines()
            .last()
            .and_then(|line| line.trim().parse().ok())
            .ok_or_else(|| io::Error::other("/usr/bin/time printed no peak RSS"))?;
        return Ok((kib, took, "/usr/bin/time -f %M"));
    }
    let mut command = quiet(clone_command(command));
    let started = Instant::now();
    let mut child = command.spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Some(kib) = std::fs::read_to_string(&status_path).ok().and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        }) {
            peak = kib;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = started.elapsed();
    if !status.success() {
        return Err(io::Error::other(format!("{command:?} failed: {status}")));
    }
    Ok((peak, took, "polled VmHWM"))
}

fn clone_command(command: &Command) -> Command {
    let mut clone = Command::new(command.get_program());
    clone.args(command.get_args());
    clone
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn per_second(elements: usize, took: Duration) -> f64 {
    elements as f64 / took.as_secs_f64()
}

#[derive(Default)]
struct Recorded {
    worker_1000: Samples,
    limit_1000: Samples,
    hanging_5000: Samples,
    async_1000: Samples,
    async_hanging_5000: Samples,
    healthprobe_10: Samples,
    refrun_10: Samples,
    limit_process_10: Samples,
}

fn benches(c: &mut Criterion, recorded: &Recorded) {
    let healthy: OnceCell<Engines> = OnceCell::new();
    let healthy = || healthy.get_or_init(Engines::healthy);
    let large: OnceCell<Engines> = OnceCell::new();
    let programs: OnceCell<Programs> = OnceCell::new();
    let programs = || programs.get_or_init(Programs::locate);

    let mut group = c.benchmark_group("tick");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(HEALTHY_ENGINES as u64));

    let mut worker_1000: Option<Worker> = None;
    group.bench_function("threads_1000_healthy", |b| {
        let engines = healthy();
        let worker = worker_1000
            .get_or_insert_with(|| worker(engines, Duration::from_secs(2), Runtime::Threads));
        b.iter_custom(|iters| {
            recorded
                .worker_1000
                .time(iters, || tick(worker, HEALTHY_ENGINES, 0))
        });
    });

    group.bench_function("async_1000_healthy", |b| {
        let engines = healthy();
        let mut worker = worker(engines, Duration::from_secs(2), Runtime::Async);
        b.iter_custom(|iters| {
            recorded
                .async_1000
                .time(iters, || tick(&mut worker, HEALTHY_ENGINES, 0))
        });
    });

    group.bench_function("limit_1000_fresh_connections", |b| {
        let engines = healthy();
        b.iter_custom(|iters| {
            recorded
                .limit_1000
                .time(iters, || fresh_connection_round(&engines.targets))
        });
    });

    // Paired alternations: worker tick, then limit round, back to back.
    let limit_ran = !recorded.limit_1000.0.borrow().is_empty();
    if let (Some(worker), true) = (worker_1000.as_mut(), limit_ran) {
        let engines = healthy();
        let mut ratios = Vec::with_capacity(LIMIT_PAIRS);
        for _ in 0..LIMIT_PAIRS {
            let started = Instant::now();
            tick(worker, HEALTHY_ENGINES, 0);
            let worker_took = started.elapsed();
            let started = Instant::now();
            fresh_connection_round(&engines.targets);
            let limit_took = started.elapsed();
            ratios.push(limit_took.as_secs_f64() / worker_took.as_secs_f64());
        }
        let summary = median_f64(&mut ratios).expect("pairs were measured");
        println!(
            "tick summary: worker/limit over {LIMIT_PAIRS} paired alternations: median {summary:.3} (min {:.3}, max {:.3})",
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
    drop(worker_1000);

    group.throughput(Throughput::Elements(LARGE_ENGINES as u64));
    // Each iteration takes ~4 s: a short target time makes criterion run
    // one tick per sample (it warns that 10 samples take longer; expected).
    group.measurement_time(Duration::from_secs(1));
    group.bench_function("threads_5000_with_50_hanging", |b| {
        let engines = large.get_or_init(Engines::with_hanging);
        let hanging = engines.hanging();
        let mut worker = worker(engines, Duration::from_secs(1), Runtime::Threads);
        b.iter_custom(|iters| {
            recorded.hanging_5000.time(iters, || {
                tick(&mut worker, LARGE_ENGINES, hanging);
            })
        });
    });
    group.bench_function("async_5000_with_50_hanging", |b| {
        let engines = large.get_or_init(Engines::with_hanging);
        let hanging = engines.hanging();
        let mut worker = worker(engines, Duration::from_secs(1), Runtime::Async);
        b.iter_custom(|iters| {
            recorded.async_hanging_5000.time(iters, || {
                tick(&mut worker, LARGE_ENGINES, hanging);
            })
        });
    });

    group.throughput(Throughput::Elements(HEALTHY_ENGINES as u64 * PROCESS_TICKS));
    group.bench_function("healthprobe_run_10_ticks_1000_healthy", |b| {
        let records = &healthy().records_file;
        match &programs().healthprobe {
            Ok(binary) => {
                let mut command = healthprobe_run(binary, records, PROCESS_TICKS, "2s");
                b.iter_custom(|iters| {
                    recorded
                        .healthprobe_10
                        .time(iters, || run_process(&mut command))
                });
            }
            Err(why) => {
                println!("tick/healthprobe_run_10_ticks_1000_healthy skipped: {why}");
                b.iter(|| ());
            }
        }
    });
    group.bench_function("refrun_10_ticks_1000_healthy", |b| {
        let records = &healthy().records_file;
        match &programs().refrun {
            Ok(binary) => {
                let mut command = refrun(binary, records, PROCESS_TICKS, "2s");
                b.iter_custom(|iters| recorded.refrun_10.time(iters, || run_process(&mut command)));
            }
            Err(why) => {
                println!("tick/refrun_10_ticks_1000_healthy skipped: {why}");
                b.iter(|| ());
            }
        }
    });
    group.bench_function("limit_process_10_rounds_1000_fresh_connections", |b| {
        let records = &healthy().records_file;
        let mut command = limit_process(records, PROCESS_TICKS).expect("this bench's executable");
        b.iter_custom(|iters| {
            recorded
                .limit_process_10
                .time(iters, || run_process(&mut command))
        });
    });
    group.finish();

    // Paired alternations of the processes.
    if !recorded.healthprobe_10.0.borrow().is_empty() && !recorded.refrun_10.0.borrow().is_empty() {
        let programs = programs();
        let (Ok(ours), Ok(reference)) = (&programs.healthprobe, &programs.refrun) else {
            unreachable!("both process benches ran");
        };
        let records = &healthy().records_file;
        let mut ours = healthprobe_run(ours, records, PROCESS_TICKS, "2s");
        let mut reference = refrun(reference, records, PROCESS_TICKS, "2s");
        let mut limit = limit_process(records, PROCESS_TICKS).expect("this bench's executable");
        let mut ratios = Vec::with_capacity(PROCESS_PAIRS);
        let mut limit_ratios = Vec::with_capacity(PROCESS_PAIRS);
        for _ in 0..PROCESS_PAIRS {
            let started = Instant::now();
            run_process(&mut reference);
            let reference_took = started.elapsed();
            let started = Instant::now();
            run_process(&mut ours);
            let ours_took = started.elapsed();
            let started = Instant::now();
            run_process(&mut limit);
            let limit_took = started.elapsed();
            println!(
                "tick summary: alternation: refrun {reference_took:.2?}, healthprobe run {ours_took:.2?}, limit process {limit_took:.2?}"
            );
            ratios.push(ours_took.as_secs_f64() / reference_took.as_secs_f64());
            limit_ratios.push(limit_took.as_secs_f64() / ours_took.as_secs_f64());
        }
        let limit_summary = median_f64(&mut limit_ratios).expect("pairs were measured");
        println!(
            "tick summary: healthprobe run throughput / limit process throughput over {PROCESS_PAIRS} alternations: median {limit_summary:.3} (min {:.3}, max {:.3})",
            limit_ratios[0],
            limit_ratios[limit_ratios.len() - 1]
        );
        let summary = median_f64(&mut ratios).expect("pairs were measured");
        println!(
            "tick summary: healthprobe/reference over {PROCESS_PAIRS} paired alternations: median {summary:.3} (min {:.3}, max {:.3})",
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }

    // Peak RSS over the large fleet, when its bench ran.
    if let Some(engines) = large.get() {
        let programs = programs();
        let timeout = "1s";
        let mut walls: Vec<(&str, Duration)> = Vec::new();
        for (name, command) in [
            (
                "healthprobe run --runtime threads",
                programs.healthprobe.as_ref().map(|binary| {
                    healthprobe_run(binary, &engines.records_file, RSS_TICKS, timeout)
                }),
            ),
            (
                "healthprobe run --runtime async",
                programs.healthprobe.as_ref().map(|binary| {
                    healthprobe_run_async(binary, &engines.records_file, RSS_TICKS, timeout)
                }),
            ),
            (
                "refrun",
                programs
                    .refrun
                    .as_ref()
                    .map(|binary| refrun(binary, &engines.records_file, RSS_TICKS, timeout)),
            ),
        ] {
            match command {
                Ok(command) => {
                    match peak_rss_kib(&command) {
                        Ok((kib, took, method)) => {
                            walls.push((name, took));
                            println!(
                                "tick summary: peak RSS of {name} --ticks {RSS_TICKS} --probe-timeout {timeout} over {LARGE_ENGINES} engines ({} hanging): {:.1} MiB ({kib} KiB, {method}), wall {took:.2?}",
                                engines.hanging(),
                                kib as f64 / 1024.0
                            );
                        }
                        Err(err) => println!("tick summary: peak RSS of {name}: failed: {err}"),
                    }
                    match peak_threads(&command) {
                        Ok(threads) => println!(
                            "tick summary: peak threads of {name} over {LARGE_ENGINES} engines: {threads}"
                        ),
                        Err(err) => println!("tick summary: peak threads of {name}: failed: {err}"),
                    }
                }
                Err(why) => println!("tick summary: peak RSS of {name} skipped: {why}"),
            }
        }
        if let Some(&(_, reference)) = walls.iter().find(|(name, _)| *name == "refrun") {
            for (name, wall) in walls.iter().filter(|(name, _)| *name != "refrun") {
                println!(
                    "tick summary: {name} / refrun wall over {LARGE_ENGINES} engines ({} hanging), {RSS_TICKS} ticks: {:.3}{}",
                    engines.hanging(),
                    wall.as_secs_f64() / reference.as_secs_f64(),
                    if name.ends_with("async") {
                        " (target <= 0.35)"
                    } else {
                        ""
                    }
                );
            }
        }
    }
}

fn summary(recorded: &Recorded) {
    if let (Some(worker), Some(limit)) =
        (recorded.worker_1000.median(), recorded.limit_1000.median())
    {
        println!(
            "tick summary: 1,000 healthy engines: worker tick median {worker:.2?} ({:.0} probes/s), limit round median {limit:.2?} ({:.0} GETs/s), worker/limit {:.3} (target >= 0.85)",
            per_second(HEALTHY_ENGINES, worker),
            per_second(HEALTHY_ENGINES, limit),
            limit.as_secs_f64() / worker.as_secs_f64()
        );
    }
    if let Some(tick) = recorded.hanging_5000.median() {
        let samples = recorded.hanging_5000.0.borrow();
        let min = samples.iter().min().expect("samples exist");
        let max = samples.iter().max().expect("samples exist");
        println!(
            "tick summary: 5,000 engines with 50 hanging, 1 s timeout: tick median {tick:.2?} (min {min:.2?}, max {max:.2?}, {} ticks)",
            samples.len()
        );
    }
    if let Some(tick) = recorded.async_hanging_5000.median() {
        let samples = recorded.async_hanging_5000.0.borrow();
        let min = samples.iter().min().expect("samples exist");
        let max = samples.iter().max().expect("samples exist");
        println!(
            "tick summary: 5,000 engines with 50 hanging, 1 s timeout, async: tick median {tick:.2?} (min {min:.2?}, max {max:.2?}, {} ticks)",
            samples.len()
        );
        if let Some(threads) = recorded.hanging_5000.median() {
            println!(
                "tick summary: 5,000 engines with 50 hanging: async/threads tick medians {:.3}",
                tick.as_secs_f64() / threads.as_secs_f64()
            );
        }
    }
    if let Some(tick) = recorded.async_1000.median() {
        println!(
            "tick summary: 1,000 healthy engines, async: tick median {tick:.2?} ({:.0} probes/s)",
            per_second(HEALTHY_ENGINES, tick)
        );
        if let Some(threads) = recorded.worker_1000.median() {
            println!(
                "tick summary: 1,000 healthy engines: async/threads tick medians {:.3}",
                tick.as_secs_f64() / threads.as_secs_f64()
            );
        }
    }
    let ours = recorded.healthprobe_10.median();
    let reference = recorded.refrun_10.median();
    if let Some(ours) = ours {
        println!("tick summary: healthprobe run --ticks 10 over 1,000 healthy: median {ours:.2?}");
    }
    if let Some(reference) = reference {
        println!("tick summary: refrun --ticks 10 over 1,000 healthy: median {reference:.2?}");
    }
    if let Some(limit) = recorded.limit_process_10.median() {
        println!("tick summary: limit process, 10 rounds over 1,000 healthy: median {limit:.2?}");
        if let Some(ours) = ours {
            println!(
                "tick summary: healthprobe run / limit process throughput (medians): {:.3}",
                limit.as_secs_f64() / ours.as_secs_f64()
            );
        }
    }
    if let (Some(ours), Some(reference)) = (ours, reference) {
        println!(
            "tick summary: healthprobe/reference (medians): {:.3} (target <= 0.6)",
            ours.as_secs_f64() / reference.as_secs_f64()
        );
    }
}

fn main() {
    if limit_process_main().is_some() {
        return;
    }
    let load_before = load_average();
    let recorded = Recorded::default();
    let mut criterion = Criterion::default().configure_from_args();
    benches(&mut criterion, &recorded);
    criterion.final_summary();
    summary(&recorded);
    println!(
        "tick summary: load average (1, 5, 15 min) before {load_before}, after {}",
        load_average()
    );
}
