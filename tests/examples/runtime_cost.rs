//! Tick time, peak threads and peak RSS of `healthprobe run` per runtime and
//! cap, on the same loopback fleets, measured side by side in one run.
//!
//! ```sh
//! cargo build --release -p healthprobe-shell
//! cargo run --release -p healthprobe-tests --example runtime_cost -- [TICKS] [CONFIGS] [FLEETS]
//! ```
//!
//! FLEETS is a comma-separated list of `ENGINES/HANGING` (default
//! `1000/0,5000/50`: 1,000 healthy engines; 5,000 engines of which 50 hang);
//! the probe timeout is 1 s. CONFIGS is a comma-separated list of `threads:N` or
//! `async:N` (default `threads:16,async:64,async:256,async:512,async:1024`).
//! The binary is `HEALTHPROBE_BIN`, or `healthprobe` beside this example's
//! profile directory. Each run does TICKS ticks back to back (default 4);
//! the table shows the median and the slowest tick (from the JSON logs),
//! the most threads seen (sampled every 2 ms from `/proc`) and the peak RSS.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use healthprobe_tests::{Behaviour, Fleet, ScratchDir};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let ticks: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(4);
    let configs: Vec<(String, usize)> = args
        .next()
        .unwrap_or_else(|| "threads:16,async:64,async:256,async:512,async:1024".to_owned())
        .split(',')
        .filter_map(|config| {
            let (runtime, cap) = config.split_once(':')?;
            Some((runtime.to_owned(), cap.parse().ok()?))
        })
        .collect();
    let fleets: Vec<(usize, usize)> = args
        .next()
        .unwrap_or_else(|| "1000/0,5000/50".to_owned())
        .split(',')
        .filter_map(|fleet| {
            let (engines, hanging) = fleet.split_once('/')?;
            Some((engines.parse().ok()?, hanging.parse().ok()?))
        })
        .collect();
    let binary = std::env::var_os("HEALTHPROBE_BIN").map_or_else(
        || {
            let exe = std::env::current_exe().expect("current_exe");
            exe.parent()
                .and_then(|examples| examples.parent())
                .expect("<target>/<profile>/examples")
                .join("healthprobe")
        },
        PathBuf::from,
    );
    let dir = ScratchDir::new("runtime-cost")?;
    println!(
        "{:<28} {:>10} {:>10} {:>8} {:>9}",
        "fleet / runtime:cap", "median ms", "max ms", "threads", "RSS MiB"
    );
    for (engines, hanging) in fleets {
        let fleet = Fleet::start((0..engines).map(|i| {
            if i < hanging {
                Behaviour::Hang
            } else {
                Behaviour::Status(200)
            }
        }))?;
        let records = dir.join(&format!("records-{engines}.json"));
        fleet.write_records(&records)?;
        for (runtime, cap) in &configs {
            let (mut durations, threads, rss_kib) =
                measure(&binary, &records, runtime, *cap, ticks)?;
            durations.sort_unstable();
            let median = durations.get(durations.len() / 2).copied().unwrap_or(0);
            let max = durations.last().copied().unwrap_or(0);
            println!(
                "{:<28} {:>10} {:>10} {:>8} {:>9.1}",
                format!("{engines}/{hanging} hang {runtime}:{cap}"),
                median,
                max,
                threads,
                rss_kib as f64 / 1024.0
            );
        }
    }
    Ok(())
}

/// One `healthprobe run`: tick durations (ms), most threads seen, peak RSS (KiB).
fn measure(
    binary: &PathBuf,
    records: &std::path::Path,
    runtime: &str,
    cap: usize,
    ticks: usize,
) -> std::io::Result<(Vec<u64>, usize, u64)> {
    let mut child = Command::new(binary)
        .args(["--log-format", "json", "run", "--records"])
        .arg(records)
        .args(["--runtime", runtime, "--max-concurrency"])
        .arg(cap.to_string())
        .args(["--probe-timeout", "1s", "--ticks"])
        .arg(ticks.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr));
    let (mut threads, mut rss_kib) = (0, 0);
    while child.try_wait()?.is_none() {
        if let Ok(status) = std::fs::read_to_string(&status_path) {
            for line in status.lines() {
                if let Some(value) = line.strip_prefix("Threads:") {
                    threads = threads.max(value.trim().parse().unwrap_or(0));
                }
                if let Some(value) = line.strip_prefix("VmHWM:") {
                    let kib = value.trim().trim_end_matches("kB").trim().parse();
                    rss_kib = rss_kib.max(kib.unwrap_or(0));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let stderr = reader.join().expect("stderr reader")?;
    let durations = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|log| log["message"] == "tick finished")
        .filter_map(|log| log["duration_ms"].as_u64())
        .collect();
    Ok((durations, threads, rss_kib))
}
