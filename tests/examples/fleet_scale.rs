//! Start a fleet of N engines (default 5,000), serve one request each, stop;
//! print the time and memory each phase takes.
//!
//! `cargo run --release -p healthprobe-tests --example fleet_scale -- 5000`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use healthprobe_tests::{Behaviour, Fleet};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> std::io::Result<()> {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(5000);
    let before = rss_kib();
    let started = Instant::now();
    let fleet = Fleet::uniform(count, Behaviour::Status(200))?;
    let start_took = started.elapsed();
    let after_start = rss_kib();

    let started = Instant::now();
    for engine in fleet.engines() {
        let mut stream = TcpStream::connect(engine.addr())?;
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        assert!(response.starts_with(b"HTTP/1.1 200 OK"));
    }
    let serve_took = started.elapsed();
    let after_serve = rss_kib();

    let started = Instant::now();
    drop(fleet);
    let stop_took = started.elapsed();
    println!(
        "{count} engines: start {start_took:?} (+{} KiB RSS, {} B/engine), one GET each {serve_took:?} ({:.0}/s, RSS +{} KiB), stop {stop_took:?}",
        after_start - before,
        (after_start - before) * 1024 / count as u64,
        count as f64 / serve_took.as_secs_f64(),
        after_serve.saturating_sub(after_start),
    );
    Ok(())
}
