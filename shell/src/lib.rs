//! The healthprobe shell: everything that touches the outside world around
//! the pure `healthprobe-core`.
//!
//! The core decides *what* happens: [`healthprobe_core::HealthStates`]
//! folds probe outcomes into `probe_failed` / `probe_recovered` (the
//! hysteresis), and [`healthprobe_core::tick::TickMachine`] decides every
//! other rule of a run (tick pacing, listing and pruning, the outbox and
//! its delivery order, persist before publish, journal before fold
//! effects, when to stop). Neither does I/O. This crate does only I/O: it
//! lists records, probes engines, writes files and publishes events, as
//! the machine asks.
//!
//! # The driver loop
//!
//! [`Worker`] owns the ports and pumps the machine:
//!
//! 0. At start, with a state store: `LoadState` (the snapshot restored
//!    under the configured policy), with a journal `FlushJournal` (its
//!    length) and perhaps `TruncateJournal`, then `Persist`: a start whose
//!    load or first write fails is refused ([`Worker::new`] returns it).
//! 1. `start_tick(now)`: the machine yields `Publish` for each event still
//!    pending (oldest first, until one is refused), then `List`.
//! 2. The worker calls [`RuntimeRecordStore::list_running`] and hands the
//!    records back (`handle_listing`). The machine keeps its shard's games
//!    (`--shard I/N`), prunes every game not listed (R8) and yields `Probe(batch)`: one job per game (D3).
//! 3. A [`ProbeFanout`] (threads or tokio tasks, `fanout`) probes the
//!    batch with at most `max_concurrency` in flight (R10); each result goes
//!    back to the machine (`handle_outcome`), which folds it with the core
//!    and yields its `Journal` line (D6) and, without a state file, the
//!    `Publish` of the event it caused.
//! 4. At the end of the tick: `FlushJournal`; with a state file, `Persist`
//!    before any of the tick's events is published (D5); the deliveries,
//!    `SyncPublisher` (a delivery counts once durable), `Persist` again.
//! 5. `TickDone(report)`, then `Wait { until }` for the next tick (R13),
//!    or `Stop(reason)`: shutdown, a tick limit, a closed events output.
//!
//! Because every rule is in the machine, the same worker runs under a
//! deterministic simulation with virtual time and failing ports
//! (`tests/tests/simulation.rs`) exactly as it runs in production.
//!
//! ```
//! use std::time::Duration;
//! use healthprobe_shell::adapters::{CountingTelemetry, ManualClock, MemoryPublisher, MemoryStore};
//! use healthprobe_shell::{Ports, RuntimeRecord, Worker, WorkerConfig};
//! use healthprobe_core::Timestamp;
//!
//! // An engine that refuses connections: nothing listens on this port.
//! let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
//! let store = MemoryStore::with_records(vec![RuntimeRecord::running(
//!     "g1", "c1", format!("http://127.0.0.1:{port}/"),
//! )]);
//! let publisher = MemoryPublisher::new();
//! let config = WorkerConfig { failures_threshold: 2, ..WorkerConfig::default() };
//! let clock = ManualClock::new(Timestamp::from_second(1_800_000_000)?);
//! let ports = Ports::new(store, publisher.clone(), CountingTelemetry::new(), clock);
//! let mut worker = Worker::new(config, ports)?;
//! worker.tick(); // one failure: below the threshold
//! let report = worker.tick(); // the second: probe_failed
//! assert_eq!((report.events, report.published), (1, 1));
//! assert_eq!(publisher.events()[0].game_id, "g1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Where things are
//!
//! - [`driver`]: [`Worker`] (the driver), [`driver::ports`] (the traits it
//!   performs actions through), [`Shutdown`].
//! - [`probing`]: one `GET /healthz` with ureq ([`probing::probe`]) or
//!   hyper-util's client on tokio (`probe_async`, cargo feature `async`),
//!   which connections they keep ([`probing::connections`]), and the
//!   `probing::fanout`s that run a batch on threads or tasks.
//! - [`tls`]: rustls for `https://` engines, and the trust PostgreSQL and
//!   Redis connections share.
//! - [`durability`]: the state file ([`durability::durable`], D5) and the
//!   journal file ([`durability::journal_file`], D6).
//! - [`adapters`]: records stores and publishers (records file, JSONL,
//!   in-memory; PostgreSQL and Redis Streams with their cargo features),
//!   [`adapters::open`] (a store or publisher from the text of `--records`
//!   / `--events`) and `redact`.
//! - [`codec`]: journal lines ([`codec::journal`]) and event lines ([`codec::wire`]).
//! - [`run()`]: the composition root — opens everything [`RunOptions`]
//!   names (as `healthprobe run` does) and runs a worker over it.
//! - [`config`], [`metrics`], [`status`] (`/status`, `/`), [`replay`]
//!   (`healthprobe replay`).
//!
//! What may do I/O: everything here but [`config`] and the codecs' pure
//! functions. What decides: nothing here.
#![warn(missing_docs, unreachable_pub)]

pub mod adapters;
pub mod codec;
pub mod config;
pub mod driver;
pub mod durability;
mod ha;
pub mod metrics;
pub mod probing;
pub mod replay;
mod run;
pub mod status;
pub mod tls;

// The API an embedder starts from.
pub use config::{ConfigError, Runtime, WorkerConfig};
pub use driver::ports::{
    Clock, HealthEventPublisher, JournalSink, ListError, ProbeFanout, Probed, PublishError,
    RuntimeRecord, RuntimeRecordStore, Saved, StateError, StateStore, SystemClock, Telemetry,
};
pub use driver::shutdown::Shutdown;
pub use driver::worker::{
    Ports, Restored, RunReport, StartError, StopReason, TickReport, Undelivered, Worker,
    probe_fanout,
};
pub use durability::durable::StateFile;
pub use durability::journal_file::JournalFile;
pub use ha::HaOptions;
#[cfg(feature = "postgres")]
pub use ha::{HaCommand, ha_command};
pub use run::{RunError, RunOptions, RunOutcome, run};
pub use tls::{TlsClient, TlsOptions, TlsSetupError};
