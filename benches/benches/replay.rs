//! `replay_1m`: replaying a 1,000,000-outcome journal of the `step_mixed`
//! workload (200,000 events), two ways:
//!
//! - `replay_1m/library`: `replay_journal` reading the file through a
//!   `BufReader`, events serialized into `std::io::sink()`;
//! - `replay_1m/binary`: the release `healthprobe replay FILE` as a user runs
//!   it, spawned with stdout to `/dev/null` (process start included).
//!
//! The journal is written once per run under the temp dir and removed at the
//! end. The binary is (re)built with `cargo build --release -p
//! healthprobe-shell` into the target dir this bench runs from, so the figure
//! is never taken from a stale binary.
//!
//! `HEALTHPROBE_BENCH_TIME=cpu` measures CPU time instead of wall time (group
//! `replay_1m-cpu`; for the binary, the CPU time of the `healthprobe` process).

use std::cell::OnceCell;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::measurement::Measurement;
use criterion::{Criterion, SamplingMode, Throughput};
use healthprobe_benches::cpu_time::{BenchTime, CpuTime};
use healthprobe_benches::{REPLAY_OUTCOMES, ReplayJournal, Workload};
use healthprobe_shell::replay::replay_journal;
use healthprobe_tests::try_healthprobe_binary;

/// Events in the `replay_1m` journal: one outcome in five emits one.
const REPLAY_EVENTS: u64 = REPLAY_OUTCOMES / 5;

fn replay_1m<M: Measurement>(
    c: &mut Criterion<M>,
    time: BenchTime,
    journal: &OnceCell<ReplayJournal>,
) {
    let journal = || {
        journal.get_or_init(|| {
            ReplayJournal::write_step_mixed(REPLAY_OUTCOMES)
                .expect("cannot write the replay_1m journal to the temp dir")
        })
    };
    let policy = Workload::step_mixed().policy();

    let mut group = c.benchmark_group(time.group("replay_1m"));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(REPLAY_OUTCOMES));

    group.bench_function("library", |b| {
        let path = journal().path();
        b.iter(|| {
            let file = File::open(path).expect("the journal exists");
            let (_, summary) = replay_journal(
                policy,
                BufReader::with_capacity(1 << 16, file),
                "replay_1m",
                &mut io::sink(),
            )
            .expect("the journal replays");
            assert_eq!(summary.events, REPLAY_EVENTS);
            summary
        });
    });

    // The release binary of this bench's target dir, built up to date first.
    match try_healthprobe_binary() {
        Ok(binary) => {
            group.bench_function("binary", |b| {
                let path = journal().path();
                b.iter(|| run_replay(binary, path));
            });
        }
        Err(why) => eprintln!("replay_1m/binary skipped: {why}"),
    }
    group.finish();
}

/// `healthprobe replay --failures-threshold 3 JOURNAL > /dev/null`.
fn run_replay(binary: &Path, journal: &Path) {
    let status = Command::new(binary)
        .args(["replay", "--failures-threshold", "3"])
        .arg(journal)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("healthprobe starts");
    assert!(status.success(), "healthprobe replay failed: {status}");
}

fn main() {
    // Owned here so the journal is removed when the run ends.
    let journal = OnceCell::new();
    let time = BenchTime::from_env();
    match time {
        BenchTime::Wall => run(Criterion::default(), time, &journal),
        BenchTime::Cpu => run(
            Criterion::default().with_measurement(CpuTime),
            time,
            &journal,
        ),
    }
}

fn run<M: Measurement + 'static>(
    criterion: Criterion<M>,
    time: BenchTime,
    journal: &OnceCell<ReplayJournal>,
) {
    let mut criterion = criterion
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    replay_1m(&mut criterion, time, journal);
    criterion.final_summary();
}
