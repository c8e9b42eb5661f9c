//! `tls`: 10 ticks over 1,000 `https://` engines on loopback, healthprobe
//! (both runtimes) against the reference worker, and against the same
//! engines over plain HTTP (the cost of TLS per probe), measured in one run.
//!
//! The engines (this process; event-loop engines, `healthprobe_tests::EventFleet`,
//! or with `HEALTHPROBE_BENCH_ENGINES=threads` thread engines, `Fleet`) serve
//! TLS 1.3 with an ECDSA P-256 certificate for 127.0.0.1 from a CA made at start; healthprobe trusts it through
//! `--ca-file`, the reference (`refrun`, Go's `http.Client`) through
//! `SSL_CERT_FILE`. healthprobe runs with `--connections fresh`, so that
//! every probe is a fresh connection and a full handshake (no session is
//! resumed); the reference keeps its connections (HTTP/2), as healthprobe
//! does by default (tools/floors.py measures that default).
//!
//! Criterion benches (group `tls`, wall time, `SamplingMode::Flat`, 10
//! samples of one process each):
//!
//! - `tls/healthprobe_run_10_ticks_1000_https` (threads, 16 in flight),
//! - `tls/healthprobe_run_async_10_ticks_1000_https` (async, its default cap),
//! - `tls/refrun_10_ticks_1000_https` (skipped with a note without `refrun`:
//!   `bash tools/reference/build.sh`, or `$HEALTHPROBE_REFERENCE_REFRUN`),
//! - `tls/healthprobe_run_10_ticks_1000_http`: the same fleet size over plain HTTP.
//!
//! Then 5 paired alternations of the four, printed as `tls summary:` lines:
//! wall-time medians and ratios to the reference, and the CPU time per
//! probe (user + system of the child process, `getrusage(RUSAGE_CHILDREN)`),
//! with the ratios to the reference and the TLS cost per probe (https − http).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use healthprobe_benches::process::{expect_all_healthy, median, quiet, run};
use healthprobe_tests::{
    Behaviour, EngineTls, EventFleet, Fleet, FleetTls, TestCa, Validity, try_healthprobe_binary,
};

const ENGINES: usize = 1000;
const TICKS: u64 = 10;
const ALTERNATIONS: usize = 5;

/// A fleet of either kind ([`healthprobe_benches::thread_engines`]).
enum Engines {
    Events(EventFleet),
    Threads(Fleet),
}

impl Engines {
    fn write_records(&self, path: &Path) {
        match self {
            Self::Events(fleet) => fleet.write_records(path),
            Self::Threads(fleet) => fleet.write_records(path),
        }
        .expect("records");
    }
}

struct Setup {
    _https: Engines,
    _http: Engines,
    dir: PathBuf,
    https_records: PathBuf,
    http_records: PathBuf,
    ca_file: PathBuf,
    healthprobe: PathBuf,
    refrun: Option<PathBuf>,
}

impl Setup {
    fn start() -> Self {
        let dir =
            std::env::temp_dir().join(format!("healthprobe-bench-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let ca = TestCa::new("bench CA");
        let ca_file = dir.join("ca.pem");
        ca.write_cert(&ca_file).expect("write the CA");
        let config = ca
            .server_cert(&["127.0.0.1"], Validity::Current)
            .server_config();
        let started = Instant::now();
        let thread_engines = healthprobe_benches::thread_engines();
        let (https, http) = if thread_engines {
            let https = Fleet::start_tls((0..ENGINES).map(|_| {
                (
                    Behaviour::Status(200),
                    FleetTls::Tls(EngineTls::Serve(config.clone())),
                )
            }))
            .expect("start the https engines");
            let http =
                Fleet::uniform(ENGINES, Behaviour::Status(200)).expect("start the http engines");
            (Engines::Threads(https), Engines::Threads(http))
        } else {
            let https = EventFleet::start(ENGINES, Some(config)).expect("start the https engines");
            let http = EventFleet::start(ENGINES, None).expect("start the http engines");
            (Engines::Events(https), Engines::Events(http))
        };
        println!(
            "tls: started 2 × {ENGINES} {} engines in {:.2?}",
            if thread_engines {
                "thread"
            } else {
                "event-loop"
            },
            started.elapsed()
        );
        let https_records = dir.join("https.json");
        let http_records = dir.join("http.json");
        https.write_records(&https_records);
        http.write_records(&http_records);
        let healthprobe = try_healthprobe_binary()
            .map(Path::to_path_buf)
            .unwrap_or_else(|err| panic!("{err}"));
        let refrun = healthprobe_benches::refrun_binary().ok();
        Self {
            _https: https,
            _http: http,
            dir,
            https_records,
            http_records,
            ca_file,
            healthprobe,
            refrun,
        }
    }

    fn ours(&self, runtime: &str, records: &Path) -> Command {
        let mut command = Command::new(&self.healthprobe);
        command
            .args(["run", "--runtime", runtime, "--records"])
            .arg(records)
            .args(["--ticks", &TICKS.to_string(), "--probe-timeout", "2s"])
            .arg("--ca-file")
            .arg(&self.ca_file)
            .args(["--connections", "fresh"]);
        if runtime == "threads" {
            command.args(["--max-concurrency", "16"]);
        }
        quiet(command)
    }

    fn reference(&self) -> Option<Command> {
        let mut command = Command::new(self.refrun.as_ref()?);
        command.arg("--records").arg(&self.https_records).args([
            "--ticks",
            &TICKS.to_string(),
            "--probe-timeout",
            "2s",
        ]);
        // After `quiet`, which removes any inherited SSL_CERT_FILE: before,
        // this trust was removed with it and every reference probe failed.
        let mut command = quiet(command);
        command
            .env("SSL_CERT_FILE", &self.ca_file)
            .env_remove("SSL_CERT_DIR");
        Some(command)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn main() {
    let setup = Setup::start();
    let mut criterion = Criterion::default().configure_from_args();
    {
        let mut group = criterion.benchmark_group("tls");
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(5));
        group.throughput(Throughput::Elements(ENGINES as u64 * TICKS));
        let cases: [(&str, Command); 3] = [
            (
                "healthprobe_run_10_ticks_1000_https",
                setup.ours("threads", &setup.https_records),
            ),
            (
                "healthprobe_run_async_10_ticks_1000_https",
                setup.ours("async", &setup.https_records),
            ),
            (
                "healthprobe_run_10_ticks_1000_http",
                setup.ours("threads", &setup.http_records),
            ),
        ];
        for (name, mut command) in cases {
            expect_all_healthy(&mut command);
            group.bench_function(name, |b| b.iter(|| run(&mut command)));
        }
        match setup.reference() {
            Some(mut command) => {
                expect_all_healthy(&mut command);
                group.bench_function("refrun_10_ticks_1000_https", |b| {
                    b.iter(|| run(&mut command))
                });
            }
            None => println!(
                "tls/refrun_10_ticks_1000_https: skipped (no refrun: bash tools/reference/build.sh)"
            ),
        }
        group.finish();
    }
    criterion.final_summary();

    // Paired alternations: the same load for each, in turn.
    let names = [
        "threads https",
        "async https",
        "threads http",
        "refrun https",
    ];
    let mut commands: Vec<Option<Command>> = vec![
        Some(setup.ours("threads", &setup.https_records)),
        Some(setup.ours("async", &setup.https_records)),
        Some(setup.ours("threads", &setup.http_records)),
        setup.reference(),
    ];
    let mut walls = vec![Vec::new(); names.len()];
    let mut cpus = vec![Vec::new(); names.len()];
    for _ in 0..ALTERNATIONS {
        for (index, command) in commands.iter_mut().enumerate() {
            if let Some(command) = command {
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
    for (name, measured) in names.iter().zip(&medians) {
        if let Some((wall, cpu)) = measured {
            println!(
                "tls summary: {name}: 10 ticks × {ENGINES} engines in {wall:.2?} (median of {ALTERNATIONS}), CPU {:.0} µs per probe",
                cpu.as_secs_f64() * 1e6 / probes
            );
        }
    }
    if let Some((ref_wall, ref_cpu)) = medians[3] {
        for (index, name) in names.iter().enumerate().take(2) {
            if let Some((wall, cpu)) = medians[index] {
                println!(
                    "tls summary: {name} / reference: wall {:.2}, CPU per probe {:.2}",
                    wall.as_secs_f64() / ref_wall.as_secs_f64(),
                    cpu.as_secs_f64() / ref_cpu.as_secs_f64()
                );
            }
        }
    }
    if let (Some((_, https)), Some((_, http))) = (medians[0], medians[2]) {
        println!(
            "tls summary: TLS costs {:.0} µs of CPU per probe (threads, https − http)",
            (https.as_secs_f64() - http.as_secs_f64()) * 1e6 / probes
        );
    }
}
