//! `healthprobe simulate` before it is wired into the `healthprobe` binary:
//! `cargo run --release -p healthprobe-simulate --example simulate -- --help`.

use std::io::{self, BufWriter};
use std::process::ExitCode;

use clap::Parser;
use healthprobe_simulate::{SimulateArgs, run};

/// Simulate a fleet in virtual time and compare hysteresis policies.
#[derive(Debug, Parser)]
#[command(name = "healthprobe simulate")]
struct Cli {
    #[command(flatten)]
    args: SimulateArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = BufWriter::new(io::stdout().lock());
    match run(&cli.args, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            drop(out);
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}
