//! The `healthprobe` command line.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use healthprobe_core::Policy;
use healthprobe_shell::replay::{ReplayError, replay_journal};

/// Active HTTP health probing with hysteresis.
#[derive(Debug, Parser)]
#[command(name = "healthprobe", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fold a journal through the core and print the events as JSON lines.
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// Consecutive failures that publish `probe_failed`.
    #[arg(long, default_value_t = Policy::DEFAULT_FAILURES_THRESHOLD)]
    failures_threshold: u32,
    /// Consecutive successes after `probe_failed` that publish `probe_recovered`.
    #[arg(long, default_value_t = Policy::DEFAULT_RECOVERY_THRESHOLD)]
    recovery_threshold: u32,
    /// The journal to replay; `-` or nothing reads standard input.
    journal: Option<PathBuf>,
}

/// Exit code for bad input (a malformed journal or an invalid setting).
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Replay(args) => replay(args),
    }
}

fn replay(args: ReplayArgs) -> ExitCode {
    let policy = match Policy::new(args.failures_threshold, args.recovery_threshold) {
        Ok(policy) => policy,
        Err(err) => {
            return fail(
                EXIT_BAD_INPUT,
                format_args!("invalid policy: --{}", dashed(&err.to_string())),
            );
        }
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let result = match args.journal.as_deref() {
        None => replay_journal(policy, io::stdin().lock(), "<stdin>", &mut out),
        Some(path) if path.as_os_str() == "-" => {
            replay_journal(policy, io::stdin().lock(), "<stdin>", &mut out)
        }
        Some(path) => match File::open(path) {
            Ok(file) => replay_journal(
                policy,
                BufReader::with_capacity(64 * 1024, file),
                &path.display().to_string(),
                &mut out,
            ),
            Err(err) => {
                return fail(
                    1,
                    format_args!("{}: cannot open journal: {err}", path.display()),
                );
            }
        },
    };
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(ReplayError::Write(err)) if err.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(
            err @ ReplayError::Journal(healthprobe_shell::journal::JournalError::Malformed {
                ..
            }),
        ) => fail(EXIT_BAD_INPUT, format_args!("{err}")),
        Err(err) => fail(1, format_args!("{err}")),
    }
}

/// `failures_threshold must…` → `failures-threshold must…`, the flag's spelling.
fn dashed(message: &str) -> String {
    match message.split_once(' ') {
        Some((field, rest)) => format!("{} {rest}", field.replace('_', "-")),
        None => message.to_owned(),
    }
}

fn fail(code: u8, message: std::fmt::Arguments<'_>) -> ExitCode {
    let _ = writeln!(io::stderr(), "healthprobe: {message}");
    ExitCode::from(code)
}
