//! The healthprobe shell: everything that touches the outside world around
//! the pure `healthprobe-core`.
//!
//! The shell reads clocks, files, sockets and environment variables, and
//! turns what it sees into [`healthprobe_core::ProbeOutcome`]s and
//! [`healthprobe_core::Input`]s. It never decides hysteresis: that is the
//! core's `step` and `prune`, called from one owner.
//!
//! - [`ports`]: the traits the worker needs (records, publishing, telemetry, clock).
//! - [`config`]: [`config::WorkerConfig`] and its validation (R11).
//! - [`probe`]: one `GET /healthz` with ureq (R1, R2, D2). Built without TLS:
//!   `https://` endpoints fail with `https is not supported by this build`.
//! - `probe_async` (cargo feature `async`, on by default): the same probe
//!   on tokio with hyper, for [`config::Runtime::Async`].
//! - [`worker`]: [`worker::Worker`], its ticks and run loop (R8–R13, D3–D6).
//! - [`adapters`]: records file, JSONL publisher and in-memory adapters;
//!   with the cargo feature `postgres`, a PostgreSQL records table.
//! - [`open`]: a records store or an events publisher from the text of
//!   `--records` / `--events` (file, `-`, `postgres://`, `redis://`), password
//!   files included, with errors that tell bad input from a failure to open.
//! - [`redact`]: passwords out of every message, whatever the URL's shape.
//! - [`shard`]: `--shard I/N`, a record store that lists one shard's games.
//! - [`demo`]: the engines behind `healthprobe demo`.
//! - [`metrics`]: Prometheus metrics and their HTTP server (`run --metrics-addr`).
//! - [`durable`]: the state file, a snapshot written atomically (D5).
//! - [`journal`], [`journal_file`], [`replay`]: the input journal, its file
//!   and `healthprobe replay` (D6).
#![warn(missing_docs)]

pub mod adapters;
pub mod config;
pub mod demo;
pub mod durable;
pub mod fanout;
pub mod journal;
pub mod journal_file;
pub mod logging;
pub mod metrics;
pub mod open;
pub mod ports;
pub mod probe;
#[cfg(feature = "async")]
pub mod probe_async;
pub mod redact;
pub mod replay;
pub mod shard;
pub mod shutdown;
pub mod wire;
pub mod worker;
