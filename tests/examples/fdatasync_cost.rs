//! What `HealthEventPublisher::sync` (fdatasync of the events file) costs.
//!
//! `cargo run --release -p healthprobe-tests --example fdatasync_cost [ROUNDS] [DIR]`
//!
//! Publishes ROUNDS (default 1,000) one-event ticks to an events file in DIR
//! (default a scratch directory), once without `sync` and once with one
//! `sync` per tick, in the same run, and prints both and their ratio.

use std::time::Instant;

use healthprobe_core::{EventDetails, HealthEvent, Timestamp};
use healthprobe_shell::adapters::JsonlPublisher;
use healthprobe_shell::driver::ports::HealthEventPublisher;
use healthprobe_tests::ScratchDir;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let rounds: u32 = args.next().and_then(|t| t.parse().ok()).unwrap_or(1_000);
    let scratch = ScratchDir::new("fdatasync-cost")?;
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| scratch.path().to_path_buf());
    let event = healthprobe_tests::with_id(HealthEvent {
        game_id: "g1".into(),
        container_id: "c1".into(),
        occurred_at: Timestamp::from_second(1_795_842_030).expect("valid"),
        details: EventDetails::ProbeRecovered {
            prior_failure_count: 4,
        },
    });
    let mut timings = Vec::new();
    for (name, sync) in [("write only", false), ("write + fdatasync", true)] {
        let path = dir.join(format!("events-{sync}.jsonl"));
        let _ = std::fs::remove_file(&path);
        let mut publisher = JsonlPublisher::append(&path)?;
        let start = Instant::now();
        for _ in 0..rounds {
            publisher.publish(&event).expect("written");
            if sync {
                publisher.sync().expect("synced");
            }
        }
        let per_tick = start.elapsed() / rounds;
        println!(
            "{name:>18}: {per_tick:?} per tick ({rounds} ticks, {})",
            dir.display()
        );
        timings.push(per_tick.as_secs_f64());
        std::fs::remove_file(&path)?;
    }
    println!("ratio: {:.0}x", timings[1] / timings[0]);
    Ok(())
}
