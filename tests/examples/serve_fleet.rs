//! Serve a fleet of test engines on 127.0.0.1 until standard input closes, for
//! comparing workers by hand on the same fleet (see benches/README.md).
//!
//! `cargo run --release -p healthprobe-tests --example serve_fleet -- RECORDS.json 1000 [HANGING]`
//!
//! Writes the records file (DESIGN.md's format; the first HANGING engines
//! never answer, the rest answer 200), prints `ready` on stdout, and stops
//! every engine when standard input reaches its end.

use std::io::{Read, Write};
use std::path::PathBuf;

use healthprobe_tests::{Behaviour, Fleet};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let records = PathBuf::from(args.next().unwrap_or_else(|| "records.json".into()));
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let hanging: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let behaviours = (0..count).map(|i| {
        if i < hanging {
            Behaviour::Hang
        } else {
            Behaviour::Status(200)
        }
    });
    let fleet = Fleet::start(behaviours)?;
    fleet.write_records(&records)?;
    println!(
        "ready {count} engines, {hanging} hanging, records in {}",
        records.display()
    );
    std::io::stdout().flush()?;
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    drop(fleet);
    Ok(())
}
