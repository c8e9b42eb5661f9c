//! The composition root: [`run`] opens everything [`RunOptions`] names and
//! runs a [`Worker`] over it, as `healthprobe run` does.
//!
//! The binary only parses its arguments into [`RunOptions`] (the same
//! struct, through clap, with the `cli` feature), calls [`run`], and exits
//! with [`RunError::exit_code`]. Logging and signals stay the caller's.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use healthprobe_core::tick::{RunReport, StopReason, Undelivered};
use healthprobe_core::{EventType, Policy, shard::Shard};
use tracing::{error, info, warn};

use crate::adapters::CountingTelemetry;
use crate::adapters::open::{EventsOptions, OpenError, RecordsOptions, open_events, open_records};
use crate::config::{ConfigError, Runtime, WorkerConfig};
use crate::driver::ports::{ListError, StateError, SystemClock};
use crate::driver::shutdown::Shutdown;
use crate::driver::worker::{Ports, StartError, Worker, probe_fanout};
use crate::durability::durable::StateFile;
use crate::durability::journal_file::{JournalFile, JournalFlusher};
use crate::ha::{HaOptions, open_ha};
use crate::metrics::{Metrics, MetricsTelemetry};
use crate::probing::connections::{ConnectionPolicy, Connections};
use crate::status::StatusBoard;
use crate::tls::{TlsClient, TlsOptions, TlsSetupError};

/// What [`run`] opens and how it runs: `healthprobe run`'s flags.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[non_exhaustive]
pub struct RunOptions {
    /// The records JSON file, re-read every tick; only `running` rows are probed.
    /// Or a `postgres://` (`postgresql://`) URL: its `runtime_records` table
    /// (shell/sql/runtime_records.sql), in builds with the `postgres` feature;
    /// its `sslmode` (disable, prefer, require, verify-ca, verify-full) says
    /// whether TLS is used and what is verified.
    /// Prefer the environment variable for a URL (`ps` shows arguments).
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            env = "HEALTHPROBE_RECORDS",
            hide_env_values = true,
            value_name = "FILE|URL"
        )
    )]
    pub records: PathBuf,
    /// With `--records postgres://…` without a password: the PostgreSQL
    /// password is this file's first line.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "HEALTHPROBE_RECORDS_PASSWORD_FILE", value_name = "FILE")
    )]
    pub records_password_file: Option<PathBuf>,
    /// Where events go: a file (JSON lines, appended to), `-` for stdout, or
    /// `redis://[[USER]:PASSWORD@]HOST[:PORT]/STREAM` (one XADD per event;
    /// needs a build with the `redis` feature; `rediss://` for TLS, the
    /// certificate verified as --ca-file says). A Redis that is down keeps
    /// events pending.
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            env = "HEALTHPROBE_EVENTS",
            hide_env_values = true,
            value_name = "FILE|-|URL",
            default_value = "-"
        )
    )]
    pub events: PathBuf,
    /// With `--events redis://…` without a password: the Redis password is
    /// this file's first line (`redis://USER@HOST/STREAM` for an ACL user).
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "HEALTHPROBE_EVENTS_PASSWORD_FILE", value_name = "FILE")
    )]
    pub events_password_file: Option<PathBuf>,
    /// With `--events redis://…`: trim the stream to about N entries
    /// (`XADD MAXLEN ~ N`); 0 never trims [default: 100000].
    #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
    pub redis_maxlen: Option<u64>,
    /// Time between tick starts, like `500ms`, `5s`, `1m30s`.
    #[cfg_attr(feature = "cli", arg(long, env = "RTMANAGER_PROBE_INTERVAL", default_value = "5s", value_parser = crate::config::parse_positive_duration, value_name = "DURATION"))]
    pub interval: Duration,
    /// Bound on one whole probe (resolve, connect, send, response headers).
    #[cfg_attr(feature = "cli", arg(long, env = "RTMANAGER_PROBE_TIMEOUT", default_value = "2s", value_parser = crate::config::parse_positive_duration, value_name = "DURATION"))]
    pub probe_timeout: Duration,
    /// Consecutive failures that publish `probe_failed`.
    #[cfg_attr(feature = "cli", arg(long, allow_negative_numbers = true, env = "RTMANAGER_PROBE_FAILURES_THRESHOLD", default_value_t = Policy::DEFAULT_FAILURES_THRESHOLD, value_parser = crate::config::parse_positive::<u32>, value_name = "N"))]
    pub failures_threshold: u32,
    /// Consecutive successes after `probe_failed` that publish `probe_recovered`.
    #[cfg_attr(feature = "cli", arg(long, allow_negative_numbers = true, env = "RTMANAGER_PROBE_RECOVERY_THRESHOLD", default_value_t = Policy::DEFAULT_RECOVERY_THRESHOLD, value_parser = crate::config::parse_positive::<u32>, value_name = "N"))]
    pub recovery_threshold: u32,
    /// Most probes in flight at once [default: 16 with threads, 512 with
    /// async]. With async each needs a file descriptor: keep it below
    /// `ulimit -n` minus a few.
    #[cfg_attr(feature = "cli", arg(long, allow_negative_numbers = true, env = "RTMANAGER_PROBE_MAX_CONCURRENCY", value_parser = crate::config::parse_positive::<usize>, value_name = "N"))]
    pub max_concurrency: Option<usize>,
    /// Probe only this worker's share of the fleet: games whose stable hash
    /// of `game_id` modulo N is I. N workers with I = 0..N-1 over the same
    /// records probe every game exactly once, with no other coordination.
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            env = "RTMANAGER_PROBE_SHARD",
            default_value = "0/1",
            value_name = "I/N"
        )
    )]
    pub shard: Shard,
    /// How probes run: `threads` (blocking, one thread per probe in flight)
    /// or `async` (tokio tasks: a hung engine holds a socket, not a thread).
    /// Same events, state and journal either way.
    #[cfg_attr(
        feature = "cli",
        arg(long, value_enum, default_value_t = Runtime::Threads, value_name = "RUNTIME")
    )]
    pub runtime: Runtime,
    /// Run this many ticks back to back, then exit (for scripts and tests).
    #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
    pub ticks: Option<u64>,
    /// Keep the hysteresis state and undelivered events in this file across
    /// restarts. Restored at start (a missing file starts fresh, a bad one is
    /// refused); rewritten atomically whenever a tick changes it, and always
    /// before an event is published, so a crash can repeat an event but never
    /// lose one.
    #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
    pub state: Option<PathBuf>,
    /// Append every prune and probe outcome to this file (JSON lines).
    /// `healthprobe replay` over it, with the same thresholds, prints the
    /// events this run emitted (for a run that did not restore a --state
    /// snapshot).
    #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
    pub journal: Option<PathBuf>,
    /// Serve Prometheus metrics (OpenMetrics text) at `http://ADDR/metrics`,
    /// like `127.0.0.1:9464`, and the run's status at `/status` (JSON) and
    /// `/` (a page). Read-only; keep it on loopback or behind your proxy.
    /// Without it nothing listens.
    #[cfg_attr(feature = "cli", arg(long, value_name = "ADDR"))]
    pub metrics_addr: Option<SocketAddr>,
    /// Trust and client certificate for `https://` engines and the databases.
    #[cfg_attr(feature = "cli", command(flatten))]
    pub tls: TlsOptions,
    /// Which connections are kept between ticks: `auto` keeps those to
    /// https:// engines (a handshake per engine, not per probe, as the
    /// reference does) and opens a fresh one for every probe of an http://
    /// engine (which also checks that it still accepts connections, as the
    /// reference does); `keep` or `fresh` for every engine. At most one
    /// idle connection per engine, and as many in all as the open-file
    /// limit allows (raised to its hard limit at start); a kept connection
    /// the engine closed is retried once on a fresh one.
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            env = "HEALTHPROBE_CONNECTIONS",
            value_enum,
            default_value_t = Connections::Auto,
            value_name = "POLICY"
        )
    )]
    pub connections: Connections,
    /// Failover across instances (PostgreSQL leases).
    #[cfg_attr(feature = "cli", command(flatten))]
    pub ha: HaOptions,
}

impl RunOptions {
    /// The defaults of `healthprobe run --records RECORDS`: events to
    /// stdout, the reference worker's settings, threads, every game.
    pub fn new(records: impl Into<PathBuf>) -> Self {
        Self {
            records: records.into(),
            records_password_file: None,
            events: PathBuf::from("-"),
            events_password_file: None,
            redis_maxlen: None,
            interval: WorkerConfig::DEFAULT_INTERVAL,
            probe_timeout: WorkerConfig::DEFAULT_PROBE_TIMEOUT,
            failures_threshold: Policy::DEFAULT_FAILURES_THRESHOLD,
            recovery_threshold: Policy::DEFAULT_RECOVERY_THRESHOLD,
            max_concurrency: None,
            shard: Shard::ALL,
            runtime: Runtime::Threads,
            ticks: None,
            state: None,
            journal: None,
            metrics_addr: None,
            tls: TlsOptions::default(),
            connections: Connections::Auto,
            ha: HaOptions::default(),
        }
    }

    /// The worker's settings (the cap on probes in flight defaults by runtime).
    pub(crate) fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            interval: self.interval,
            probe_timeout: self.probe_timeout,
            failures_threshold: self.failures_threshold,
            recovery_threshold: self.recovery_threshold,
            max_concurrency: self
                .max_concurrency
                .unwrap_or_else(|| self.runtime.default_max_concurrency()),
            tick_limit: self.ticks,
            shard: self.shard,
        }
    }
}

/// How a [`run`] ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunOutcome {
    /// What the run did, and why it stopped.
    pub report: RunReport,
    /// What became of the events still pending at the end.
    pub undelivered: Undelivered,
}

/// Why [`run`] refused to start, or stopped short.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A setting is out of range, or the runtime cannot start (R11).
    #[error("invalid settings: {0}")]
    Config(#[from] ConfigError),
    /// A certificate or key file cannot be used.
    #[error("invalid setting: {0}")]
    Tls(#[from] TlsSetupError),
    /// What `records` or `events` names cannot be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The records cannot be listed at start (once running, a bad listing
    /// only skips its tick, R9).
    #[error(transparent)]
    List(#[from] ListError),
    /// The journal cannot be opened for append.
    #[error("{}: cannot open journal: {source}", path.display())]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The state file cannot be read, parsed or written; it is left as it was.
    #[error(transparent)]
    State(#[from] StateError),
    /// The metrics address cannot be served.
    #[error("--metrics-addr {addr}: cannot serve metrics: {source}")]
    Metrics {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The caller's `on_started` failed; nothing was probed.
    #[error("{0}")]
    Started(io::Error),
    /// The events output was closed (an `EPIPE`): the run stopped.
    #[error(
        "the events output was closed (broken pipe): stopped with {} undelivered event(s){}",
        undelivered_count(.0),
        undelivered_fate(.0)
    )]
    OutputClosed(Undelivered),
}

impl RunError {
    /// The process exit code: 2 for bad input (a setting, or a file's
    /// contents), 1 for what is right but cannot be done now.
    pub fn exit_code(&self) -> u8 {
        let bad_input = match self {
            Self::Config(_) | Self::Tls(_) => true,
            Self::Open(err) => err.is_bad_input(),
            Self::List(err) => matches!(err, ListError::Malformed { .. }),
            Self::State(err) => err.is_bad_contents(),
            Self::Journal { .. } | Self::Metrics { .. } | Self::Started(_) => false,
            Self::OutputClosed(_) => false,
        };
        if bad_input { 2 } else { 1 }
    }
}

fn undelivered_count(undelivered: &Undelivered) -> usize {
    match *undelivered {
        Undelivered::Nothing => 0,
        Undelivered::Kept(n)
        | Undelivered::LostLastWriteFailed(n)
        | Undelivered::LostWithoutStateStore(n) => n,
    }
}

fn undelivered_fate(undelivered: &Undelivered) -> &'static str {
    match undelivered {
        Undelivered::Kept(_) => ", kept in the state file for the next run",
        Undelivered::LostLastWriteFailed(_) => ", lost: the state file's last write failed",
        Undelivered::Nothing | Undelivered::LostWithoutStateStore(_) => "",
    }
}

/// Open everything `options` names and run a worker over it until its tick
/// limit, `shutdown`, or a closed events output.
///
/// Before the first probe: the TLS files are read, the records opened and
/// listed once (a malformed file is refused, R11), the publisher opened,
/// the journal and the state file opened and reconciled (D5, D6), the
/// metrics address bound; then `on_started` is called with a handle that
/// flushes the journal from another thread (a second signal's handler
/// uses it before exiting). An error before then probed nothing.
pub fn run(
    options: RunOptions,
    shutdown: &Shutdown,
    on_started: impl FnOnce(Option<JournalFlusher>) -> io::Result<()>,
) -> Result<RunOutcome, RunError> {
    let config = options.worker_config();
    config.validate()?;
    let connections =
        ConnectionPolicy::new(options.connections, config.interval, config.max_concurrency);
    let tls = TlsClient::new(&options.tls)?;
    let records_options = RecordsOptions {
        password_file: options.records_password_file.clone(),
        tls: tls.clone(),
    };
    let mut records = open_records(&options.records, &records_options)?;
    records.list_running()?;
    let events_options = EventsOptions {
        redis_maxlen: options.redis_maxlen,
        password_file: options.events_password_file.clone(),
        tls: tls.clone(),
    };
    let publisher = open_events(&options.events, &events_options)?;
    let ha = match &options.ha.url {
        Some(_) => Some(open_ha(&options, &config, &tls)?),
        None => None,
    };
    if options.shard != Shard::ALL {
        info!(shard = %options.shard, "probing only this shard's games");
    }
    let metrics = options.metrics_addr.map(|_| {
        let metrics = Metrics::new(config.interval, config.probe_timeout);
        Arc::new(match &ha {
            Some((leases, ..)) => metrics.with_ha(leases.counts()),
            None => metrics,
        })
    });
    let status = Arc::new(StatusBoard::new());
    let fanout = probe_fanout(options.runtime, &config, tls, connections)?;
    let telemetry = CountingTelemetry::new();
    let telemetry_port = MetricsTelemetry::new(metrics.clone(), telemetry.clone());
    let mut ports = Ports::new(records, publisher, telemetry_port, SystemClock).with_fanout(fanout);
    let mut flusher = None;
    if let Some(path) = options.journal {
        let journal =
            JournalFile::append(&path).map_err(|source| RunError::Journal { path, source })?;
        flusher = Some(journal.flusher());
        ports = ports.with_journal(journal);
    }
    if let Some(path) = &options.state {
        ports = ports.with_state(StateFile::new(path));
    }
    let mut coordinator = None;
    if let Some((leases, table, shards)) = ha {
        coordinator = Some(leases.spawn(table).map_err(RunError::Started)?);
        ports = ports.with_ha(leases, shards);
    }
    if metrics.is_some() {
        ports = ports.with_status(Arc::clone(&status));
    }
    let mut worker = Worker::new(config, ports).map_err(|err| match err {
        StartError::Config(err) => RunError::Config(err),
        StartError::State(err) => RunError::State(err),
    })?;
    // Stops serving when dropped, at the end of the run.
    let _server = match (&metrics, options.metrics_addr) {
        (Some(metrics), Some(addr)) => {
            metrics.observe_restored(worker.pending_len(), worker.states().len());
            Some(
                serve_metrics(addr, metrics, status)
                    .map_err(|source| RunError::Metrics { addr, source })?,
            )
        }
        _ => None,
    };
    on_started(flusher).map_err(RunError::Started)?;
    let report = worker.run(shutdown, |tick| {
        if let Some(metrics) = &metrics {
            metrics.observe_tick(tick);
        }
    });
    // After the worker released its shards: leave the members.
    if let Some(coordinator) = coordinator {
        coordinator.stop();
    }
    info!(
        ticks = report.ticks,
        probe_failed = telemetry.count(EventType::ProbeFailed),
        probe_recovered = telemetry.count(EventType::ProbeRecovered),
        publish_failures = report.publish_failures,
        pending = worker.pending_len(),
        "done"
    );
    let undelivered = worker.undelivered();
    match undelivered {
        Undelivered::Nothing => {}
        Undelivered::Kept(pending) if options.ha.url.is_some() => info!(
            pending,
            "undelivered events are kept in their shards' rows for the shards' next owner"
        ),
        Undelivered::LostLastWriteFailed(pending) if options.ha.url.is_some() => warn!(
            pending,
            "events of shards whose last write failed were never committed; the shards' next owner probes their games again"
        ),
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
    if report.stopped == Some(StopReason::OutputClosed) {
        return Err(RunError::OutputClosed(undelivered));
    }
    Ok(RunOutcome {
        report,
        undelivered,
    })
}

#[cfg(feature = "metrics-server")]
fn serve_metrics(
    addr: SocketAddr,
    metrics: &Arc<Metrics>,
    status: Arc<StatusBoard>,
) -> io::Result<crate::metrics::MetricsServer> {
    let server = crate::metrics::MetricsServer::start(addr, Arc::clone(metrics), status)?;
    info!(
        metrics_addr = %server.local_addr(),
        "serving metrics at /metrics, the status at /status and /"
    );
    Ok(server)
}

#[cfg(not(feature = "metrics-server"))]
fn serve_metrics(
    _addr: SocketAddr,
    _metrics: &Arc<Metrics>,
    _status: Arc<StatusBoard>,
) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "this build of healthprobe-shell leaves out the `metrics-server` feature",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An embedder's `RunOptions::new` runs what `healthprobe run --records
    /// FILE` runs.
    #[cfg(feature = "cli")]
    #[test]
    fn new_has_the_cli_defaults() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            options: RunOptions,
        }
        let parsed = Cli::try_parse_from(["healthprobe", "--records", "r.json"]).expect("parses");
        assert_eq!(parsed.options, RunOptions::new("r.json"));
        assert_eq!(parsed.options.worker_config().max_concurrency, 16);
    }

    #[test]
    fn r11_bad_settings_exit_2_and_what_cannot_be_done_now_exits_1() {
        let zero = RunError::Config(ConfigError::ZeroInterval);
        assert_eq!(
            (zero.exit_code(), zero.to_string().as_str()),
            (2, "invalid settings: interval must be positive, got 0s")
        );
        let closed = RunError::OutputClosed(Undelivered::Kept(2));
        assert_eq!(closed.exit_code(), 1);
        assert_eq!(
            closed.to_string(),
            "the events output was closed (broken pipe): stopped with 2 undelivered event(s), kept in the state file for the next run"
        );
    }
}
