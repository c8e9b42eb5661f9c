//! The `healthprobe` command line: parses arguments, calls the library,
//! maps the result to an exit code (0, 1 for a failure, 2 for bad input,
//! 130 for a second signal).

#![warn(unreachable_pub)]

mod demo;
mod logging;

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};
use healthprobe_core::Policy;
use healthprobe_shell::codec::journal::JournalError;
use healthprobe_shell::config::{parse_duration, parse_positive};
use healthprobe_shell::durability::journal_file::JournalFlusher;
use healthprobe_shell::replay::{ReplayError, replay_journal};
use healthprobe_shell::{RunOptions, Shutdown};
use healthprobe_simulate::{SimulateArgs, SimulateError};
use logging::LogFormat;

/// Active HTTP health probing with hysteresis.
#[derive(Debug, Parser)]
#[command(name = "healthprobe", version, about)]
struct Cli {
    /// Log lines on standard error: `text` (readable) or `json` (one object per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Probe the engines of a records file and print events as JSON lines.
    ///
    /// Endpoints are `http://` or `https://` (TLS verified against the
    /// system store and --ca-file). SIGINT or SIGTERM starts no new probe,
    /// waits for those in flight (at most one probe timeout) and exits 0.
    Run(Box<RunOptions>),
    /// Start a few engines on loopback and probe them: see both event kinds in seconds.
    Demo(DemoArgs),
    /// Fold a journal through the core and print the events as JSON lines.
    Replay(ReplayArgs),
    /// Simulate a fleet in virtual time under many policies: delays, false alarms, a plot.
    Simulate(SimulateArgs),
    /// Failover's lease table: make it, or show who holds which shard.
    #[cfg(feature = "postgres")]
    #[command(subcommand)]
    Ha(healthprobe_shell::HaCommand),
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Stop after this long, like `20s`; without it, run until Ctrl-C.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    duration: Option<Duration>,
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// Consecutive failures that publish `probe_failed`.
    #[arg(long, allow_negative_numbers = true, default_value_t = Policy::DEFAULT_FAILURES_THRESHOLD, value_parser = parse_positive::<u32>)]
    failures_threshold: u32,
    /// Consecutive successes after `probe_failed` that publish `probe_recovered`.
    #[arg(long, allow_negative_numbers = true, default_value_t = Policy::DEFAULT_RECOVERY_THRESHOLD, value_parser = parse_positive::<u32>)]
    recovery_threshold: u32,
    /// The journal to replay; `-` or nothing reads standard input.
    journal: Option<PathBuf>,
}

/// Exit code for bad input (a malformed file or an invalid setting).
const EXIT_BAD_INPUT: u8 = 2;

#[allow(
    clippy::disallowed_methods,
    reason = "the binary installs the crypto provider"
)]
fn main() -> ExitCode {
    // One crypto provider for every TLS connection of the process, before
    // any is made: redis-rs builds its rustls configuration on this default.
    let _ = (*healthprobe_shell::tls::provider())
        .clone()
        .install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    match cli.command {
        Command::Run(options) => run(*options, cli.log_format),
        Command::Demo(args) => demo(args.duration, cli.log_format),
        Command::Replay(args) => replay(&args),
        Command::Simulate(args) => simulate(&args),
        #[cfg(feature = "postgres")]
        Command::Ha(command) => match healthprobe_shell::ha_command(&command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(err.exit_code(), err),
        },
    }
}

/// Help and version as clap prints them; any other parse error on one line, exit 2.
fn usage_error(err: &clap::Error) -> ExitCode {
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        err.exit()
    }
    // The first paragraph (clap's usage and `--help` hint follow), as one line.
    let rendered = err.render().to_string();
    let first = rendered.split("\n\n").next().unwrap_or_default();
    let line = first.split_whitespace().collect::<Vec<_>>().join(" ");
    fail(
        EXIT_BAD_INPUT,
        line.strip_prefix("error: ").unwrap_or(&line),
    )
}

fn run(options: RunOptions, log_format: LogFormat) -> ExitCode {
    if let Err(err) = logging::init(log_format, "info") {
        return fail(EXIT_BAD_INPUT, err);
    }
    raise_open_file_limit();
    let shutdown = Shutdown::new();
    let on_started = |journal| install_signal_handler(&shutdown, journal);
    match healthprobe_shell::run(options, &shutdown, on_started) {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => fail(err.exit_code(), err),
    }
}

fn demo(duration: Option<Duration>, log_format: LogFormat) -> ExitCode {
    // The tick lines are the demo's readable output; logs only say what went wrong.
    if let Err(err) = logging::init(log_format, "warn") {
        return fail(EXIT_BAD_INPUT, err);
    }
    let shutdown = Shutdown::new();
    if let Err(err) = install_signal_handler(&shutdown, None) {
        return fail(1, err);
    }
    match demo::run(duration, &shutdown) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(1, format_args!("demo: {err}")),
    }
}

/// SIGINT, SIGTERM (and SIGHUP) trigger `shutdown`; a second signal
/// flushes the journal's buffered lines (so `replay` still sees every
/// outcome folded) and exits at once, 130.
#[allow(clippy::disallowed_methods, reason = "the binary ends the process")]
fn install_signal_handler(shutdown: &Shutdown, journal: Option<JournalFlusher>) -> io::Result<()> {
    let shutdown = shutdown.clone();
    ctrlc::set_handler(move || {
        if shutdown.is_triggered() {
            let flushed = match journal
                .as_ref()
                .map(|j| j.flush_within(Duration::from_secs(1)))
            {
                Some(Ok(())) => ", journal flushed",
                Some(Err(_)) => ", the journal could not be flushed",
                None => "",
            };
            let _ = writeln!(
                io::stderr(),
                "healthprobe: second signal, exiting now{flushed}"
            );
            std::process::exit(130);
        }
        let _ = writeln!(
            io::stderr(),
            "healthprobe: stopping after the probes in flight (signal again to exit now)"
        );
        shutdown.trigger();
    })
    .map_err(|err| io::Error::other(format!("cannot install the signal handler: {err}")))
}

fn replay(args: &ReplayArgs) -> ExitCode {
    let policy = Policy::new(args.failures_threshold, args.recovery_threshold)
        .expect("clap's parsers refuse a zero threshold");
    let (journal, name): (Box<dyn BufRead>, String) = match &args.journal {
        Some(path) if path.as_os_str() != "-" => match File::open(path) {
            Ok(file) => (
                Box::new(BufReader::with_capacity(64 * 1024, file)),
                path.display().to_string(),
            ),
            Err(err) => {
                return fail(
                    1,
                    format_args!("{}: cannot open journal: {err}", path.display()),
                );
            }
        },
        _ => (Box::new(io::stdin().lock()), "<stdin>".to_owned()),
    };
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    match replay_journal(policy, journal, &name, &mut out) {
        Ok(_) => ExitCode::SUCCESS,
        Err(ReplayError::Write(err)) if err.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(
            err @ ReplayError::Journal(
                JournalError::Malformed { .. } | JournalError::TornFinalLine { .. },
            ),
        ) => fail(EXIT_BAD_INPUT, err),
        Err(err) => fail(1, err),
    }
}

/// `healthprobe simulate`: the table (or JSON) on stdout, the plot if asked.
fn simulate(args: &SimulateArgs) -> ExitCode {
    match healthprobe_simulate::run(args, &mut io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err @ (SimulateError::Output(_) | SimulateError::PlotFile { .. })) => {
            fail(1, format_args!("simulate: {err}"))
        }
        Err(err) => fail(EXIT_BAD_INPUT, format_args!("simulate: {err}")),
    }
}

/// Raise the open-file soft limit to the hard one, as Go's runtime does at
/// start: the bound on kept connections follows from it.
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
        && current < maximum
    {
        let raised = Rlimit {
            current: Some(maximum),
            maximum: Some(maximum),
        };
        if let Err(err) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %err, "cannot raise the open-file limit");
        }
    }
}

/// `healthprobe: MESSAGE` on one line of stderr, and exit `code`.
fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    let _ = writeln!(io::stderr(), "healthprobe: {message}");
    ExitCode::from(code)
}
