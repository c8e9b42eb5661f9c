//! `reuse`: 10 ticks over 1,000 healthy keep-alive engines on loopback, over
//! plain HTTP and over TLS, healthprobe (both runtimes) with `--connections
//! keep` and `fresh` against the reference worker, and (plain HTTP)
//! against a keep-alive request loop — the machine's limit for a client
//! that reuses connections — all measured in one run.
//!
//! The engines run in this process. By default one fleet of event-loop
//! engines per scheme (`healthprobe_tests::EventFleet`, one small tokio
//! runtime): every command probes the same engines, which keep a
//! connection alive unless the client asks to close, as event-loop servers
//! do. With `HEALTHPROBE_BENCH_ENGINES=threads`, thread engines
//! (`Fleet`) instead, two fleets of each scheme: engines that keep
//! connections alive ([`KeepAlive::On`]), probed with reuse and by the
//! limit loop, and engines that answer `Connection: close`, probed without
//! reuse and by the reference (`refrun`: Go's `http.Client` sends no
//! `Connection: close` but closes a connection whose body it did not read,
//! so a keep-alive thread engine would start a thread for each of its
//! connections). A thread engine wakes a thread for every request, which
//! costs these two cores more than a whole keep-alive request loop does:
//! with them, the loop itself is at about 0.35× the reference.
//! healthprobe with reuse runs with `--connections keep`: the open-file
//! limit leaves room for every engine's connection. Over TLS the engines serve TLS 1.3 with an ECDSA P-256
//! certificate from a CA made at start (healthprobe: `--ca-file`; the
//! reference: `SSL_CERT_FILE`).
//!
//! The limit loop is this bench's executable run again as a process of its
//! own (`HEALTHPROBE_REUSE_LIMIT_RECORDS`): 16 threads, each holding one
//! connection per engine of its share, 10 rounds of `GET /healthz` and
//! reading the response to the end of its body.
//!
//! Criterion benches (group `reuse`, wall time, `SamplingMode::Flat`, 10
//! samples of one process each) for each command, then 5 paired
//! alternations of all of them, printed as `reuse summary:` lines: wall
//! time medians, CPU per probe (user + system of the child,
//! `getrusage(RUSAGE_CHILDREN)`), and the ratios to the reference, to the
//! limit loop, with reuse to without, and async to threads.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use healthprobe_benches::process::{expect_all_healthy, median, quiet, run};
use healthprobe_tests::{
    Behaviour, EngineTls, EventFleet, Fleet, FleetTls, KeepAlive, TestCa, Validity,
    try_healthprobe_binary,
};

const ENGINES: usize = 1000;
const TICKS: u64 = 10;
const ALTERNATIONS: usize = 5;
const LIMIT_RECORDS_ENV: &str = "HEALTHPROBE_REUSE_LIMIT_RECORDS";
const LIMIT_THREADS: usize = 16;

struct Setup {
    /// The fleets, of either kind ([`healthprobe_benches::thread_engines`]),
    /// kept running while the bench runs.
    _fleets: Vec<Box<dyn std::any::Any>>,
    dir: PathBuf,
    /// Records of the four fleets, by (https, keep-alive).
    records: [[PathBuf; 2]; 2],
    ca_file: PathBuf,
    healthprobe: PathBuf,
    refrun: Option<PathBuf>,
}

/// One measured command: its name, the fleet it probes, and how.
struct Case {
    name: &'static str,
    command: Option<Command>,
}

impl Setup {
    fn start() -> Self {
        let dir =
            std::env::temp_dir().join(format!("healthprobe-bench-reuse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let ca = TestCa::new("bench CA");
        let ca_file = dir.join("ca.pem");
        ca.write_cert(&ca_file).expect("write the CA");
        let config = ca
            .server_cert(&["127.0.0.1"], Validity::Current)
            .server_config();
        let started = Instant::now();
        let mut fleets: Vec<Box<dyn std::any::Any>> = Vec::new();
        let mut records: [[PathBuf; 2]; 2] = Default::default();
        let thread_engines = healthprobe_benches::thread_engines();
        for https in [false, true] {
            let scheme = if https { "https" } else { "http" };
            if !thread_engines {
                // One fleet serves every command: it keeps connections
                // alive unless the client asks to close.
                let fleet = EventFleet::start(ENGINES, https.then(|| config.clone()))
                    .expect("start the engines");
                let path = dir.join(format!("{scheme}.json"));
                fleet.write_records(&path).expect("records");
                records[usize::from(https)] = [path.clone(), path];
                fleets.push(Box::new(fleet));
                continue;
            }
            for keep in [false, true] {
                let fleet = if https {
                    Fleet::start_tls((0..ENGINES).map(|_| {
                        (
                            Behaviour::Status(200),
                            FleetTls::Tls(EngineTls::Serve(config.clone())),
                        )
                    }))
                } else {
                    Fleet::uniform(ENGINES, Behaviour::Status(200))
                }
                .expect("start the engines");
                if keep {
                    for engine in fleet.engines() {
                        engine.set_keep_alive(KeepAlive::On);
                    }
                }
                let path = dir.join(format!(
                    "{scheme}{}.json",
                    if keep { "-keep-alive" } else { "" }
                ));
                fleet.write_records(&path).expect("records");
                records[usize::from(https)][usize::from(keep)] = path;
                fleets.push(Box::new(fleet));
            }
        }
        println!(
            "reuse: started {} fleets of {ENGINES} {} engines in {:.2?}",
            fleets.len(),
            if thread_engines {
                "thread"
            } else {
                "event-loop"
            },
            started.elapsed()
        );
        let healthprobe = try_healthprobe_binary()
            .map(Path::to_path_buf)
            .unwrap_or_else(|err| panic!("{err}"));
        let refrun = healthprobe_benches::refrun_binary().ok();
        Self {
            _fleets: fleets,
            dir,
            records,
            ca_file,
            healthprobe,
            refrun,
        }
    }

    fn ours(&self, runtime: &str, https: bool, reuse: bool) -> Command {
        let mut command = Command::new(&self.healthprobe);
        command
            .args(["run", "--runtime", runtime, "--records"])
            .arg(self.records(https, reuse))
            .args(["--ticks", &TICKS.to_string(), "--probe-timeout", "2s"])
            .arg("--ca-file")
            .arg(&self.ca_file);
        if runtime == "threads" {
            command.args(["--max-concurrency", "16"]);
        }
        command.args(["--connections", if reuse { "keep" } else { "fresh" }]);
        quiet(command)
    }

    fn reference(&self, https: bool) -> Option<Command> {
        let mut command = Command::new(self.refrun.as_ref()?);
        command
            .arg("--records")
            .arg(self.records(https, false))
            .args(["--ticks", &TICKS.to_string(), "--probe-timeout", "2s"]);
        let mut command = quiet(command);
        command
            .env("SSL_CERT_FILE", &self.ca_file)
            .env_remove("SSL_CERT_DIR");
        Some(command)
    }

    fn limit(&self) -> Command {
        let mut command = Command::new(std::env::current_exe().expect("this bench's path"));
        command.env(LIMIT_RECORDS_ENV, self.records(false, true));
        quiet(command)
    }

    /// The records of the https or http fleet, keeping connections alive or not.
    fn records(&self, https: bool, keep_alive: bool) -> &Path {
        &self.records[usize::from(https)][usize::from(keep_alive)]
    }

    fn cases(&self) -> Vec<Case> {
        let case = |name, command| Case { name, command };
        vec![
            case(
                "threads_reuse_http",
                Some(self.ours("threads", false, true)),
            ),
            case("async_reuse_http", Some(self.ours("async", false, true))),
            case(
                "threads_fresh_http",
                Some(self.ours("threads", false, false)),
            ),
            case("async_fresh_http", Some(self.ours("async", false, false))),
            case("refrun_http", self.reference(false)),
            case("keep_alive_loop_http", Some(self.limit())),
            case(
                "threads_reuse_https",
                Some(self.ours("threads", true, true)),
            ),
            case("async_reuse_https", Some(self.ours("async", true, true))),
            case(
                "threads_fresh_https",
                Some(self.ours("threads", true, false)),
            ),
            case("refrun_https", self.reference(true)),
        ]
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The keep-alive request loop, when this executable is run as it.
fn limit_main() -> Option<()> {
    let records = std::env::var_os(LIMIT_RECORDS_ENV)?;
    let bytes = std::fs::read(&records).expect("the records file is readable");
    let addrs: Vec<SocketAddr> = healthprobe_shell::adapters::parse_records(&bytes, "records")
        .expect("the records file parses")
        .iter()
        .map(|record| {
            record
                .engine_endpoint
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .parse()
                .expect("endpoints are http://IP:PORT/")
        })
        .collect();
    std::thread::scope(|scope| {
        for share in 0..LIMIT_THREADS {
            let addrs = &addrs;
            scope.spawn(move || {
                // Each engine's request, made once, as a client's would be.
                let mine: Vec<(SocketAddr, Vec<u8>)> = addrs
                    .iter()
                    .skip(share)
                    .step_by(LIMIT_THREADS)
                    .map(|&addr| {
                        let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
                        (addr, request.into_bytes())
                    })
                    .collect();
                let mut connections: Vec<Option<TcpStream>> = mine.iter().map(|_| None).collect();
                let mut buffer = vec![0_u8; 4096];
                for _ in 0..TICKS {
                    for ((addr, request), connection) in mine.iter().zip(connections.iter_mut()) {
                        keep_alive_get(*addr, request, connection, &mut buffer)
                            .expect("a keep-alive GET");
                    }
                }
            });
        }
    });
    Some(())
}

/// `GET /healthz` over `connection` (made first if need be), reading the
/// response head and its `Content-Length` body.
fn keep_alive_get(
    addr: SocketAddr,
    request: &[u8],
    connection: &mut Option<TcpStream>,
    buffer: &mut [u8],
) -> io::Result<()> {
    if connection.is_none() {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        *connection = Some(stream);
    }
    let stream = connection.as_mut().expect("connected");
    stream.write_all(request)?;
    let mut filled = 0;
    loop {
        let read = stream.read(&mut buffer[filled..])?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        filled += read;
        let head = &buffer[..filled];
        let Some(end) = head.windows(4).position(|window| window == b"\r\n\r\n") else {
            continue;
        };
        let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
        let length: usize = text
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0);
        if filled >= end + 4 + length {
            return Ok(());
        }
    }
}

fn main() {
    if limit_main().is_some() {
        return;
    }
    let setup = Setup::start();
    let mut criterion = Criterion::default().configure_from_args();
    {
        let mut group = criterion.benchmark_group("reuse");
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(5));
        group.throughput(Throughput::Elements(ENGINES as u64 * TICKS));
        for case in setup.cases() {
            match case.command {
                Some(mut command) => {
                    expect_all_healthy(&mut command);
                    group.bench_function(case.name, |b| b.iter(|| run(&mut command)));
                }
                None => println!(
                    "reuse/{}: skipped (no refrun: bash tools/reference/build.sh)",
                    case.name
                ),
            }
        }
        group.finish();
    }
    criterion.final_summary();

    // Paired alternations: each command in turn, under the same load.
    let mut cases = setup.cases();
    let mut walls = vec![Vec::new(); cases.len()];
    let mut cpus = vec![Vec::new(); cases.len()];
    for _ in 0..ALTERNATIONS {
        for (index, case) in cases.iter_mut().enumerate() {
            if let Some(command) = &mut case.command {
                let (wall, cpu) = run(command);
                walls[index].push(wall);
                cpus[index].push(cpu);
            }
        }
    }
    let probes = (ENGINES as u64 * TICKS) as f64;
    let medians: Vec<Option<(Duration, Duration)>> = walls
        .iter_mut()
        .zip(cpus.iter_mut())
        .map(|(wall, cpu)| (!wall.is_empty()).then(|| (median(wall), median(cpu))))
        .collect();
    let find = |name: &str| {
        cases
            .iter()
            .position(|case| case.name == name)
            .and_then(|index| medians[index])
    };
    for (case, measured) in cases.iter().zip(&medians) {
        if let Some((wall, cpu)) = measured {
            println!(
                "reuse summary: {}: 10 ticks × {ENGINES} engines in {wall:.2?} (median of {ALTERNATIONS}), CPU {:.1} µs per probe",
                case.name,
                cpu.as_secs_f64() * 1e6 / probes
            );
        }
    }
    let ratio = |a: &str, b: &str| {
        if let (Some((wall_a, cpu_a)), Some((wall_b, cpu_b))) = (find(a), find(b)) {
            println!(
                "reuse summary: {a} / {b}: wall {:.2}, CPU per probe {:.2}",
                wall_a.as_secs_f64() / wall_b.as_secs_f64(),
                cpu_a.as_secs_f64() / cpu_b.as_secs_f64()
            );
        }
    };
    for (a, b) in [
        ("threads_reuse_http", "refrun_http"),
        ("async_reuse_http", "refrun_http"),
        ("threads_fresh_http", "refrun_http"),
        ("threads_reuse_http", "keep_alive_loop_http"),
        ("async_reuse_http", "keep_alive_loop_http"),
        ("threads_reuse_http", "threads_fresh_http"),
        ("async_reuse_http", "threads_reuse_http"),
        ("async_fresh_http", "threads_fresh_http"),
        ("threads_reuse_https", "refrun_https"),
        ("async_reuse_https", "refrun_https"),
        ("threads_fresh_https", "refrun_https"),
        ("threads_reuse_https", "threads_fresh_https"),
        ("async_reuse_https", "threads_reuse_https"),
    ] {
        ratio(a, b);
    }
}
