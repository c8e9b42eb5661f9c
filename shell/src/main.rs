//! The `healthprobe` command line.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};
use healthprobe_core::shard::Shard;
use healthprobe_core::{EventType, Policy};
use healthprobe_shell::adapters::CountingTelemetry;
use healthprobe_shell::config::{Runtime, WorkerConfig, parse_duration};
use healthprobe_shell::connections::{ConnectionPolicy, Connections};
use healthprobe_shell::demo;
use healthprobe_shell::durable::StateFile;
use healthprobe_shell::journal_file::{JournalFile, JournalFlusher};
use healthprobe_shell::logging::{self, LogFormat};
use healthprobe_shell::metrics::{Metrics, MetricsServer, MetricsTelemetry};
use healthprobe_shell::open::{
    EventsOptions, OpenError, RecordsOptions, open_events, open_records,
};
use healthprobe_shell::ports::{ListError, RuntimeRecordStore, SystemClock};
use healthprobe_shell::replay::{ReplayError, replay_journal};
use healthprobe_shell::status::StatusBoard;
use healthprobe_shell::tls::{TlsClient, TlsOptions};
use healthprobe_shell::worker::{
    Ports, Shutdown, StartError, StopReason, Undelivered, Worker, probe_fanout,
};
use tracing::{error, info, warn};

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
    Run(Box<RunArgs>),
    /// Start a few engines on loopback and probe them: see both event kinds in seconds.
    Demo(DemoArgs),
    /// Fold a journal through the core and print the events as JSON lines.
    Replay(ReplayArgs),
    /// Simulate a fleet in virtual time under many policies: delays, false alarms, a plot.
    Simulate(healthprobe_simulate::SimulateArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The records JSON file, re-read every tick; only `running` rows are probed.
    /// Or a `postgres://` (`postgresql://`) URL: its `runtime_records` table
    /// (shell/sql/runtime_records.sql), in builds with the `postgres` feature;
    /// its `sslmode` (disable, prefer, require, verify-ca, verify-full) says
    /// whether TLS is used and what is verified.
    /// Prefer the environment variable for a URL (`ps` shows arguments).
    #[arg(
        long,
        env = "HEALTHPROBE_RECORDS",
        hide_env_values = true,
        value_name = "FILE|URL"
    )]
    records: PathBuf,
    /// With `--records postgres://…` without a password: the PostgreSQL
    /// password is this file's first line.
    #[arg(long, env = "HEALTHPROBE_RECORDS_PASSWORD_FILE", value_name = "FILE")]
    records_password_file: Option<PathBuf>,
    /// Where events go: a file (JSON lines, appended to), `-` for stdout, or
    /// `redis://[[USER]:PASSWORD@]HOST[:PORT]/STREAM` (one XADD per event;
    /// needs a build with the `redis` feature; `rediss://` for TLS, the
    /// certificate verified as --ca-file says). A Redis that is down keeps
    /// events pending.
    #[arg(
        long,
        env = "HEALTHPROBE_EVENTS",
        hide_env_values = true,
        value_name = "FILE|-|URL",
        default_value = "-"
    )]
    events: PathBuf,
    /// With `--events redis://…` without a password: the Redis password is
    /// this file's first line (`redis://USER@HOST/STREAM` for an ACL user).
    #[arg(long, env = "HEALTHPROBE_EVENTS_PASSWORD_FILE", value_name = "FILE")]
    events_password_file: Option<PathBuf>,
    /// With `--events redis://…`: trim the stream to about N entries
    /// (`XADD MAXLEN ~ N`); 0 never trims [default: 100000].
    #[arg(long, value_name = "N")]
    redis_maxlen: Option<u64>,
    /// Time between tick starts, like `500ms`, `5s`, `1m30s`.
    #[arg(long, env = "RTMANAGER_PROBE_INTERVAL", default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    interval: Duration,
    /// Bound on one whole probe (resolve, connect, send, response headers).
    #[arg(long, env = "RTMANAGER_PROBE_TIMEOUT", default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    probe_timeout: Duration,
    /// Consecutive failures that publish `probe_failed`.
    #[arg(long, allow_negative_numbers = true, env = "RTMANAGER_PROBE_FAILURES_THRESHOLD", default_value_t = Policy::DEFAULT_FAILURES_THRESHOLD, value_name = "N")]
    failures_threshold: u32,
    /// Consecutive successes after `probe_failed` that publish `probe_recovered`.
    #[arg(long, allow_negative_numbers = true, env = "RTMANAGER_PROBE_RECOVERY_THRESHOLD", default_value_t = Policy::DEFAULT_RECOVERY_THRESHOLD, value_name = "N")]
    recovery_threshold: u32,
    /// Most probes in flight at once [default: 16 with threads, 512 with
    /// async]. With async each needs a file descriptor: keep it below
    /// `ulimit -n` minus a few.
    #[arg(
        long,
        allow_negative_numbers = true,
        env = "RTMANAGER_PROBE_MAX_CONCURRENCY",
        value_name = "N"
    )]
    max_concurrency: Option<usize>,
    /// Probe only this worker's share of the fleet: games whose stable hash
    /// of `game_id` modulo N is I. N workers with I = 0..N-1 over the same
    /// records probe every game exactly once, with no other coordination.
    #[arg(
        long,
        env = "RTMANAGER_PROBE_SHARD",
        default_value = "0/1",
        value_name = "I/N"
    )]
    shard: Shard,
    /// How probes run: `threads` (blocking, one thread per probe in flight)
    /// or `async` (tokio tasks: a hung engine holds a socket, not a thread).
    /// Same events, state and journal either way.
    #[arg(long, value_enum, default_value_t = RuntimeArg::Threads, value_name = "RUNTIME")]
    runtime: RuntimeArg,
    /// Run this many ticks back to back, then exit (for scripts and tests).
    #[arg(long, value_name = "N")]
    ticks: Option<u64>,
    /// Keep the hysteresis state and undelivered events in this file across
    /// restarts. Restored at start (a missing file starts fresh, a bad one is
    /// refused); rewritten atomically whenever a tick changes it, and always
    /// before an event is published, so a crash can repeat an event but never
    /// lose one.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Append every prune and probe outcome to this file (JSON lines).
    /// `healthprobe replay` over it, with the same thresholds, prints the
    /// events this run emitted (for a run that did not restore a --state
    /// snapshot).
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Serve Prometheus metrics (OpenMetrics text) at `http://ADDR/metrics`,
    /// like `127.0.0.1:9464`, and the run's status at `/status` (JSON) and
    /// `/` (a page). Read-only; keep it on loopback or behind your proxy.
    /// Without it nothing listens.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// PEM certificates to trust besides the system store (which honours
    /// SSL_CERT_FILE and SSL_CERT_DIR), a private CA: for https:// engines,
    /// PostgreSQL with sslmode=verify-ca or verify-full, and rediss://.
    #[arg(long, env = "HEALTHPROBE_CA_FILE", value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to https:// engines that ask for one
    /// (mTLS; never to PostgreSQL or Redis); with --tls-client-key.
    #[arg(
        long,
        env = "HEALTHPROBE_TLS_CLIENT_CERT",
        value_name = "PEM",
        requires = "tls_client_key"
    )]
    tls_client_cert: Option<PathBuf>,
    /// PEM private key of --tls-client-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "HEALTHPROBE_TLS_CLIENT_KEY",
        value_name = "PEM",
        requires = "tls_client_cert"
    )]
    tls_client_key: Option<PathBuf>,
    /// Which connections are kept between ticks: `auto` keeps those to
    /// https:// engines (a handshake per engine, not per probe, as the
    /// reference does) and opens a fresh one for every probe of an http://
    /// engine (which also checks that it still accepts connections, as the
    /// reference does); `keep` or `fresh` for every engine. At most one
    /// idle connection per engine, and as many in all as the open-file
    /// limit allows (raised to its hard limit at start); a kept connection
    /// the engine closed is retried once on a fresh one.
    #[arg(
        long,
        env = "HEALTHPROBE_CONNECTIONS",
        value_enum,
        default_value_t = ConnectionsArg::Auto,
        value_name = "POLICY"
    )]
    connections: ConnectionsArg,
}

/// `--connections`, as the CLI spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ConnectionsArg {
    /// Keep connections to https:// engines, fresh ones for http:// engines.
    Auto,
    /// A fresh connection for every probe.
    Fresh,
    /// Keep connections to every engine.
    Keep,
}

impl From<ConnectionsArg> for Connections {
    fn from(arg: ConnectionsArg) -> Self {
        match arg {
            ConnectionsArg::Auto => Connections::Auto,
            ConnectionsArg::Fresh => Connections::Fresh,
            ConnectionsArg::Keep => Connections::Keep,
        }
    }
}

/// `--runtime`, as the CLI spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RuntimeArg {
    /// Blocking probes on threads.
    Threads,
    /// Probes as tokio tasks.
    Async,
}

impl From<RuntimeArg> for Runtime {
    fn from(arg: RuntimeArg) -> Self {
        match arg {
            RuntimeArg::Threads => Runtime::Threads,
            RuntimeArg::Async => Runtime::Async,
        }
    }
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
    #[arg(long, allow_negative_numbers = true, default_value_t = Policy::DEFAULT_FAILURES_THRESHOLD)]
    failures_threshold: u32,
    /// Consecutive successes after `probe_failed` that publish `probe_recovered`.
    #[arg(long, allow_negative_numbers = true, default_value_t = Policy::DEFAULT_RECOVERY_THRESHOLD)]
    recovery_threshold: u32,
    /// The journal to replay; `-` or nothing reads standard input.
    journal: Option<PathBuf>,
}

/// `healthprobe simulate`: the table (or JSON) on stdout, the plot if asked.
fn simulate(args: &healthprobe_simulate::SimulateArgs) -> ExitCode {
    let mut out = io::stdout().lock();
    match healthprobe_simulate::run(args, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(
            err @ (healthprobe_simulate::SimulateError::Output(_)
            | healthprobe_simulate::SimulateError::PlotFile { .. }),
        ) => fail(1, format_args!("simulate: {err}")),
        Err(err) => fail(EXIT_BAD_INPUT, format_args!("simulate: {err}")),
    }
}

/// Exit code for bad input (a malformed file or an invalid setting).
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    // One crypto provider for every TLS connection of the process, before
    // any is made: redis-rs builds its rustls configuration on this default.
    let _ = (*healthprobe_shell::probing::tls::provider())
        .clone()
        .install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    match cli.command {
        Command::Run(args) => run(*args, cli.log_format),
        Command::Demo(args) => run_demo(args, cli.log_format),
        Command::Replay(args) => replay(args),
        Command::Simulate(args) => simulate(&args),
    }
}

/// Help and version as clap prints them; any other parse error on one line, exit 2.
fn usage_error(err: &clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => err.exit(),
        _ => {
            let rendered = err.render().to_string();
            let first_paragraph = rendered.split("\n\n").next().unwrap_or_default();
            let line = first_paragraph
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let line = line.strip_prefix("error: ").unwrap_or(&line);
            fail(EXIT_BAD_INPUT, format_args!("{line}"))
        }
    }
}

fn run(args: RunArgs, log_format: LogFormat) -> ExitCode {
    let runtime = Runtime::from(args.runtime);
    let config = WorkerConfig {
        interval: args.interval,
        probe_timeout: args.probe_timeout,
        failures_threshold: args.failures_threshold,
        recovery_threshold: args.recovery_threshold,
        max_concurrency: args
            .max_concurrency
            .unwrap_or_else(|| runtime.default_max_concurrency()),
        tick_limit: args.ticks,
        shard: args.shard,
    };
    if let Err(err) = config.validate() {
        return fail(
            EXIT_BAD_INPUT,
            format_args!("invalid setting: --{}", dashed(&err.to_string())),
        );
    }
    if !runtime.is_available() {
        return fail(
            EXIT_BAD_INPUT,
            format_args!(
                "invalid setting: --runtime async is not available: this healthprobe was built without the `async` feature"
            ),
        );
    }
    if let Err(err) = logging::init(log_format, "info") {
        return fail(EXIT_BAD_INPUT, format_args!("{err}"));
    }
    raise_open_file_limit();
    let connections = ConnectionPolicy::new(
        args.connections.into(),
        config.interval,
        config.max_concurrency,
    );
    let tls = match TlsClient::new(&TlsOptions {
        ca_file: args.ca_file.clone(),
        client_cert: args.tls_client_cert.clone(),
        client_key: args.tls_client_key.clone(),
    }) {
        Ok(tls) => tls,
        Err(err) => return fail(EXIT_BAD_INPUT, format_args!("invalid setting: {err}")),
    };
    // A records file that is missing or malformed at start is bad input (a
    // database that cannot be listed, likewise); once running, a bad listing
    // only skips its tick (R9).
    let records_options = RecordsOptions {
        password_file: args.records_password_file.clone(),
        tls: tls.clone(),
    };
    let mut records = match open_records(&args.records, &records_options) {
        Ok(records) => records,
        Err(err) => return fail_open(&err),
    };
    match records.list_running() {
        Ok(_) => {}
        Err(err @ ListError::Malformed { .. }) => {
            return fail(EXIT_BAD_INPUT, format_args!("{err}"));
        }
        Err(err) => return fail(1, format_args!("{err}")),
    }
    let shutdown = Shutdown::new();
    let events_options = EventsOptions {
        redis_maxlen: args.redis_maxlen,
        password_file: args.events_password_file.clone(),
        tls: tls.clone(),
    };
    let publisher = match open_events(&args.events, &events_options) {
        Ok(publisher) => publisher,
        Err(err) => return fail_open(&err),
    };
    let telemetry = CountingTelemetry::new();
    if args.shard != Shard::ALL {
        info!(shard = %args.shard, "probing only this shard's games");
    }
    let metrics = args
        .metrics_addr
        .map(|_| Arc::new(Metrics::new(config.interval, config.probe_timeout)));
    let status = Arc::new(StatusBoard::new());
    let fanout = match probe_fanout(runtime, &config, tls.clone(), connections) {
        Ok(fanout) => fanout,
        Err(err) => return fail(EXIT_BAD_INPUT, format_args!("invalid settings: {err}")),
    };
    let telemetry_port = MetricsTelemetry::new(metrics.clone(), telemetry.clone());
    let mut ports = Ports::new(records, publisher, telemetry_port, SystemClock).with_fanout(fanout);
    let mut journal_flusher = None;
    if let Some(path) = &args.journal {
        match JournalFile::append(path) {
            Ok(journal) => {
                journal_flusher = Some(journal.flusher());
                ports = ports.with_journal(journal);
            }
            Err(err) => {
                return fail(
                    1,
                    format_args!("{}: cannot open journal: {err}", path.display()),
                );
            }
        }
    }
    if let Some(path) = &args.state {
        ports = ports.with_state(StateFile::new(path));
    }
    if metrics.is_some() {
        ports = ports.with_status(Arc::clone(&status));
    }
    // A state file that cannot be read, parsed or written is refused before
    // the first probe, and left as it was.
    let worker = match Worker::new(config, ports) {
        Ok(worker) => worker,
        Err(StartError::Config(err)) => {
            return fail(EXIT_BAD_INPUT, format_args!("invalid settings: {err}"));
        }
        Err(StartError::State(err)) => {
            let code = if err.is_bad_contents() {
                EXIT_BAD_INPUT
            } else {
                1
            };
            return fail(code, format_args!("{err}"));
        }
    };
    if let Some(metrics) = &metrics {
        metrics.observe_restored(worker.pending_len(), worker.states().len());
    }
    // Stops serving when dropped, at the end of `run`.
    let _metrics_server = match (&metrics, args.metrics_addr) {
        (Some(metrics), Some(addr)) => {
            match MetricsServer::start(addr, Arc::clone(metrics), status) {
                Ok(server) => {
                    info!(metrics_addr = %server.local_addr(), "serving metrics at /metrics, the status at /status and /");
                    Some(server)
                }
                Err(err) => {
                    return fail(
                        1,
                        format_args!("--metrics-addr {addr}: cannot serve metrics: {err}"),
                    );
                }
            }
        }
        _ => None,
    };
    let ran = run_worker(
        worker,
        &shutdown,
        journal_flusher.as_ref(),
        &telemetry,
        metrics.as_deref(),
    );
    match ran {
        Ok((undelivered, Some(StopReason::OutputClosed))) => {
            let (pending, fate) = match undelivered {
                Undelivered::Nothing => (0, ""),
                Undelivered::Kept(n) => (n, ", kept in the state file for the next run"),
                Undelivered::LostLastWriteFailed(n) => {
                    (n, ", lost: the state file's last write failed")
                }
                Undelivered::LostWithoutStateStore(n) => (n, ""),
            };
            fail(
                1,
                format_args!(
                    "the events output was closed (broken pipe): stopped with {pending} undelivered event(s){fate}"
                ),
            )
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => fail(1, format_args!("{err:#}")),
    }
}

/// An [`OpenError`] on one line: exit 2 for bad input, 1 otherwise.
fn fail_open(err: &OpenError) -> ExitCode {
    let code = if err.is_bad_input() {
        EXIT_BAD_INPUT
    } else {
        1
    };
    fail(code, format_args!("{err}"))
}

/// Run the worker until `--ticks`, `shutdown` or a closed events output;
/// what becomes of the events left undelivered, and why it stopped.
fn run_worker(
    mut worker: Worker,
    shutdown: &Shutdown,
    journal: Option<&JournalFlusher>,
    telemetry: &CountingTelemetry,
    metrics: Option<&Metrics>,
) -> anyhow::Result<(Undelivered, Option<StopReason>)> {
    let observe = |tick: &_| {
        if let Some(metrics) = metrics {
            metrics.observe_tick(tick);
        }
    };
    install_signal_handler(shutdown, journal.cloned())?;
    let report = worker.run(shutdown, observe);
    let pending = worker.pending_len();
    info!(
        ticks = report.ticks,
        probe_failed = telemetry.count(EventType::ProbeFailed),
        probe_recovered = telemetry.count(EventType::ProbeRecovered),
        publish_failures = report.publish_failures,
        pending,
        "done"
    );
    let undelivered = worker.undelivered();
    match undelivered {
        Undelivered::Nothing => {}
        Undelivered::Kept(pending) => info!(
            pending,
            "undelivered events are kept in the state file for the next run"
        ),
        Undelivered::LostLastWriteFailed(pending) => error!(
            pending,
            "undelivered events are lost at exit: the state file's last write failed, so it holds an older snapshot without them"
        ),
        Undelivered::LostWithoutStateStore(pending) => warn!(
            pending,
            "undelivered events are lost at exit (--state keeps them for the next run)"
        ),
    }
    Ok((undelivered, report.stopped))
}

fn run_demo(args: DemoArgs, log_format: LogFormat) -> ExitCode {
    // The tick lines are the demo's readable output; logs only say what went wrong.
    if let Err(err) = logging::init(log_format, "warn") {
        return fail(EXIT_BAD_INPUT, format_args!("{err}"));
    }
    let shutdown = Shutdown::new();
    if let Err(err) = install_signal_handler(&shutdown, None) {
        return fail(1, format_args!("{err:#}"));
    }
    match demo::run(args.duration, &shutdown, io::stdout(), io::stderr()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => fail(1, format_args!("demo: {err}")),
    }
}

/// SIGINT, SIGTERM (and SIGHUP) trigger `shutdown`; a second signal
/// flushes the journal's buffered lines (so `replay` still sees every
/// outcome folded) and exits at once.
fn install_signal_handler(
    shutdown: &Shutdown,
    journal: Option<JournalFlusher>,
) -> anyhow::Result<()> {
    let shutdown = shutdown.clone();
    ctrlc::set_handler(move || {
        if shutdown.is_triggered() {
            let flushed = match &journal {
                Some(journal) => match journal.flush_within(Duration::from_secs(1)) {
                    Ok(()) => ", journal flushed",
                    Err(_) => ", the journal could not be flushed",
                },
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
    .context("cannot install the signal handler")
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
            err @ ReplayError::Journal(
                healthprobe_shell::journal::JournalError::Malformed { .. }
                | healthprobe_shell::journal::JournalError::TornFinalLine { .. },
            ),
        ) => fail(EXIT_BAD_INPUT, format_args!("{err}")),
        Err(err) => fail(1, format_args!("{err}")),
    }
}

/// Raise the open-file soft limit to the hard one, as Go's runtime does at
/// start: kept connections are bounded by it ([`ConnectionPolicy::new`]).
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
            warn!(error = %err, "cannot raise the open-file limit");
        }
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
