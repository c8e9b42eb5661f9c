//! The worker's ports: what it needs from the outside world, as traits.
//!
//! The driver ([`crate::driver::worker::Worker`]) lists running games through a
//! [`RuntimeRecordStore`], probes them through a [`ProbeFanout`], hands
//! events to a [`HealthEventPublisher`], counts deliveries on a
//! [`Telemetry`], persists through a [`StateStore`], journals through a
//! [`JournalSink`] and reads time from a [`Clock`]. It only performs what
//! the pure [`healthprobe_core::tick::TickMachine`] asks for, so every rule
//! holds whatever these do. The embedded implementations live in
//! [`crate::adapters`], [`crate::durability::durable`], [`crate::durability::journal_file`] and
//! `crate::probing::fanout`; a runtime manager (or a simulation) plugs in its own.

use std::io;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use healthprobe_core::lease::{Heartbeat, ShardLease};
use healthprobe_core::tick::{Persisted, ProbeBatch, ProbeClass};
use healthprobe_core::{EventType, HealthStates, Input, Outgoing, ProbeResult, Timestamp};

use crate::config::Runtime;
use crate::driver::shutdown::Shutdown;

pub use healthprobe_core::RuntimeRecord;
pub use healthprobe_core::tick::Snapshot;

/// Where the worker lists the games to probe.
pub trait RuntimeRecordStore: Send {
    /// The records whose status is `running`, freshly read.
    ///
    /// Called once at the start of every tick. An error skips the tick and
    /// leaves the hysteresis state untouched (R9).
    fn list_running(&mut self) -> Result<Vec<RuntimeRecord>, ListError>;
}

/// A boxed store lists through the box (a store chosen at run time, as
/// `crate::adapters::open::open_records` returns).
impl<S: RuntimeRecordStore + ?Sized> RuntimeRecordStore for Box<S> {
    fn list_running(&mut self) -> Result<Vec<RuntimeRecord>, ListError> {
        (**self).list_running()
    }
}

/// Where the worker sends `probe_failed` and `probe_recovered`.
pub trait HealthEventPublisher: Send {
    /// Deliver one event; `Ok` means it is delivered (written and flushed, sent, ...).
    ///
    /// Called from the one thread that owns the hysteresis state, in the
    /// order the events were emitted. A re-send (after a refusal, a failed
    /// sync or a restart) carries the same `event.id`; a publisher with a
    /// place for it beside the envelope carries it (Redis: `event_id`), JSON
    /// lines do not.
    fn publish(&mut self, event: &Outgoing) -> Result<(), PublishError>;

    /// Failover: deliver one event fenced by `lease`, refused with
    /// [`PublishError::Fenced`] when the sink has seen a newer epoch for the
    /// shard. The default has no fence (it publishes): only a sink shared by
    /// every instance can hold one (Redis does).
    fn publish_fenced(&mut self, event: &Outgoing, lease: ShardLease) -> Result<(), PublishError> {
        let _ = lease;
        self.publish(event)
    }

    /// Failover: raise the shard's fence to `lease`'s epoch, so an older
    /// owner's publish is refused from now on (called when a shard is
    /// loaded, before any of its events is published; best effort: the
    /// first fenced publish raises it too). The default has no fence.
    fn raise_fence(&mut self, lease: ShardLease) -> Result<(), PublishError> {
        let _ = lease;
        Ok(())
    }

    /// Make every event accepted so far durable; the worker calls it before
    /// recording deliveries in the state file.
    ///
    /// One call per tick covers every event published since the last call.
    /// On `Err`, none of the events accepted since the last successful
    /// `sync` counts as delivered: the caller keeps them pending and
    /// publishes them again. A publisher may drop them on error
    /// (`JsonlPublisher` cuts its file back to its length at the last
    /// successful sync, so the retry writes them once). The default does
    /// nothing: a publisher whose `publish` already means durable (a broker's
    /// acknowledgement, memory) needs nothing more.
    fn sync(&mut self) -> Result<(), PublishError> {
        Ok(())
    }
}

/// A boxed publisher publishes through the box (a publisher chosen at run time).
impl<P: HealthEventPublisher + ?Sized> HealthEventPublisher for Box<P> {
    fn publish(&mut self, event: &Outgoing) -> Result<(), PublishError> {
        (**self).publish(event)
    }

    fn publish_fenced(&mut self, event: &Outgoing, lease: ShardLease) -> Result<(), PublishError> {
        (**self).publish_fenced(event, lease)
    }

    fn raise_fence(&mut self, lease: ShardLease) -> Result<(), PublishError> {
        (**self).raise_fence(lease)
    }

    fn sync(&mut self) -> Result<(), PublishError> {
        (**self).sync()
    }
}

/// Counts delivered events (R12).
pub trait Telemetry: Send {
    /// Count one delivered event of `event_type`; called only after a successful publish.
    fn record_event(&mut self, event_type: EventType);

    /// One probe finished and was folded: its class and how long it took.
    /// The default ignores it.
    fn record_probe(&mut self, class: ProbeClass, latency: Duration) {
        let _ = (class, latency);
    }
}

/// The worker's only source of time: it stamps each outcome's `observed_at`
/// ([`Clock::now`]) and paces the ticks ([`Clock::monotonic`],
/// [`Clock::sleep_until`]).
///
/// Shared by the probe threads, hence `Sync`. A simulation implements all
/// three on a virtual clock; the provided `monotonic` and `sleep_until` use
/// the process's monotonic clock and a real wait.
pub trait Clock: Send + Sync {
    /// The current instant (UTC).
    fn now(&self) -> Timestamp;

    /// Monotonic time since an arbitrary origin, for tick pacing and durations.
    fn monotonic(&self) -> Duration {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }

    /// Wait until [`Clock::monotonic`] reaches `deadline` or `shutdown` is
    /// triggered; whether it was triggered.
    fn sleep_until(&self, deadline: Duration, shutdown: &Shutdown) -> bool {
        let left = deadline.saturating_sub(self.monotonic());
        if left.is_zero() {
            return shutdown.is_triggered();
        }
        shutdown.wait_timeout(left)
    }
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods, reason = "the one place wall time is read")]
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Why the running records could not be listed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// The records file could not be read.
    #[error("{path}: cannot read records: {source}")]
    Read {
        /// The records file.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The records file is not a valid records list.
    #[error("{path}:{line}:{column}: {message}")]
    Malformed {
        /// The records file.
        path: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem, 0 when unknown.
        column: usize,
        /// What was wrong, with the row and field when known (``[1].status: missing field `status` ``).
        message: String,
    },
    /// The store is unavailable for another reason (a database down, a simulated failure).
    #[error("{0}")]
    Unavailable(String),
}

/// Why an event could not be delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Writing or flushing the event failed.
    #[error("cannot write event to {destination}: {source}")]
    Write {
        /// Where the event was going (`<stdout>` or a path).
        destination: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Making the written events durable (`fdatasync`) failed; they do not count as delivered.
    #[error("cannot make events durable in {destination}: {source}")]
    Sync {
        /// Where the events went (`<stdout>` or a path).
        destination: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The publisher refused the event for another reason (a broker down, a simulated failure).
    #[error("{0}")]
    Unavailable(String),
    /// Failover: the sink holds a newer epoch for the event's shard
    /// (another instance owns it now); the event is that owner's to publish.
    #[error("{destination}: refused, shard {} is held under epoch {newer} (this instance had {})", .lease.shard, .lease.epoch)]
    Fenced {
        /// Where the event was going.
        destination: String,
        /// The lease the publish carried.
        lease: ShardLease,
        /// The epoch the sink holds.
        newer: u64,
    },
}

impl PublishError {
    /// Whether retrying cannot succeed: the output itself is gone or unusable
    /// through this descriptor, so the run should stop (pending events are
    /// kept by `--state`) rather than retry every tick.
    ///
    /// Permanent (a `Write` or `Sync` error whose cause is one of):
    /// `EPIPE` (the reader went away), `EBADF` (the descriptor is closed or
    /// not open for writing), `ECONNRESET`, `ENOTCONN`, `ESHUTDOWN` (a socket
    /// closed by the peer), `ENXIO` (the device or FIFO reader is gone) and
    /// `EINVAL` (the descriptor refers to something that cannot be written).
    ///
    /// Transient, retried next tick: everything else, notably `ENOSPC` and
    /// `EDQUOT` (space can be freed or the disk grown while the worker keeps
    /// the events pending), `EIO` (a storage error: the retry rewrites the
    /// lines), `EINTR`/`EAGAIN`, `EROFS` and `EFBIG` (an operator can fix
    /// them without restarting), and every `Unavailable` refusal (a broker
    /// down comes back).
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Write { source, .. } | Self::Sync { source, .. } => is_permanent_io(source),
            Self::Unavailable(_) | Self::Fenced { .. } => false,
        }
    }
}

fn is_permanent_io(err: &io::Error) -> bool {
    if err.kind() == io::ErrorKind::BrokenPipe {
        return true;
    }
    matches!(
        err.raw_os_error(),
        Some(
            libc::EPIPE
                | libc::EBADF
                | libc::ECONNRESET
                | libc::ENOTCONN
                | libc::ESHUTDOWN
                | libc::ENXIO
                | libc::EINVAL
        )
    )
}

/// The snapshot format version a state store writes; it reads version 1
/// too (no episodes, no ids: both are then the Unix epoch's).
pub const SNAPSHOT_VERSION: u64 = 2;

/// Why a state store could not load or save a snapshot (D5); every message
/// names the store (a state file's path).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The file exists but could not be read.
    #[error("{path}: cannot read the state file: {source}")]
    Read {
        /// The state file.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is empty (or only whitespace).
    #[error("{path}: the state file is empty (expected a version {SNAPSHOT_VERSION} snapshot)")]
    Empty {
        /// The state file.
        path: String,
    },
    /// The file is not JSON, or is cut short (a truncated write).
    #[error("{path}:{line}:{column}: the state file is not valid JSON: {message}")]
    Syntax {
        /// The state file.
        path: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What was wrong, for example `EOF while parsing an object`.
        message: String,
    },
    /// The file is JSON but not a snapshot this build understands.
    #[error("{path}: the state file is not a valid snapshot: {message}")]
    Invalid {
        /// The state file.
        path: String,
        /// What was wrong, with the field when known (``states.games.g1: …``).
        message: String,
    },
    /// The file records a format version this build does not read.
    #[error(
        "{path}: the state file has version {found}; this build reads versions 1 and {SNAPSHOT_VERSION} only"
    )]
    Version {
        /// The state file.
        path: String,
        /// The `version` value found, as JSON.
        found: String,
    },
    /// Another process (or another handle in this one) holds the state file's lock.
    #[error(
        "{path}: the state file is in use by {}; one process per state file (lock file {path}.lock)",
        holder_text(*.holder)
    )]
    Locked {
        /// The state file.
        path: String,
        /// The holder's PID, as written in the lock file, when known.
        holder: Option<u32>,
    },
    /// The lock file could not be opened or locked.
    #[error("{path}: cannot lock the state file (lock file {path}.lock): {source}")]
    Lock {
        /// The state file.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing the snapshot (temporary file, fsync, rename, directory fsync) failed.
    #[error("{path}: cannot write the state file (via {temporary}): {source}")]
    Write {
        /// The state file.
        path: String,
        /// The temporary file written first.
        temporary: String,
        /// The underlying error.
        source: io::Error,
    },
}

impl StateError {
    /// Whether the file's contents are at fault (rather than the file system).
    pub(crate) fn is_bad_contents(&self) -> bool {
        matches!(
            self,
            Self::Empty { .. } | Self::Syntax { .. } | Self::Invalid { .. } | Self::Version { .. }
        )
    }
}

fn holder_text(holder: Option<u32>) -> String {
    match holder {
        Some(pid) => format!("process {pid}"),
        None => "another process".to_owned(),
    }
}

/// Whether [`StateStore::save`] wrote the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// The snapshot changed and was written (and fsynced).
    Written,
    /// The snapshot is byte-identical to the last one written: nothing to do.
    Unchanged,
}

/// Where the worker keeps its snapshot (D5): [`crate::durability::durable::StateFile`], or a simulation's disk.
pub trait StateStore: Send + std::fmt::Debug {
    /// The last snapshot written, `None` when there is none yet (a fresh start).
    fn load(&mut self) -> Result<Option<Snapshot>, StateError>;

    /// Write `states`, `pending` and the journal's committed length
    /// atomically: after `Ok` a crash finds this snapshot, after `Err` the
    /// previous one.
    fn save(
        &mut self,
        states: &HealthStates,
        pending: &[Outgoing],
        journal_len: Option<u64>,
    ) -> Result<Saved, StateError>;

    /// The store's name in logs (a path).
    fn name(&self) -> String;
}

/// Failover: where each shard's snapshot (its games' counters and pending
/// events) is kept, fenced by the shard's lease (PostgreSQL:
/// `adapters::pg_leases`, or a simulation's table).
pub trait ShardStore: Send + std::fmt::Debug {
    /// The snapshots of `leases`' shards, each read only while this
    /// instance holds it under that epoch (`Ok(None)`: nothing kept yet);
    /// `Err` for a shard not held (lost) or unreadable, its reason.
    fn load(
        &mut self,
        leases: &[ShardLease],
    ) -> Vec<(ShardLease, Result<Option<Snapshot>, String>)>;

    /// Write each snapshot under its lease: [`Persisted::Written`], or
    /// [`Persisted::Fenced`] where the store holds the shard under another
    /// owner, epoch, or an expired lease (by its own clock), or
    /// [`Persisted::Failed`] for all when the write could not be made (logged).
    fn write(&mut self, shards: &[(ShardLease, Snapshot)]) -> Vec<(ShardLease, Persisted)>;
}

/// Failover: the lease table as the lease machine's requests see it
/// ([`healthprobe_core::lease`]); each call bounded in time.
pub trait LeaseTable: Send {
    /// Register as a live member and renew every lease held (L2).
    fn heartbeat(&mut self) -> Result<Heartbeat, String>;
    /// Take up to `want` free or expired shards, each under epoch + 1.
    fn acquire(&mut self, want: u32) -> Result<Vec<ShardLease>, String>;
    /// Give `leases` back (their last write is done): another instance may take them at once.
    fn release(&mut self, leases: &[ShardLease]) -> Result<(), String>;
    /// Leave the membership (at exit, after the releases).
    fn leave(&mut self) -> Result<(), String>;
}

/// Where the worker journals every prune and outcome (D6):
/// [`crate::durability::journal_file::JournalFile`], or a simulation's disk.
pub trait JournalSink: Send + std::fmt::Debug {
    /// Append one input (may be buffered until [`JournalSink::flush`]).
    fn record(&mut self, input: &Input) -> io::Result<()>;

    /// Make every recorded line reach the file.
    fn flush(&mut self) -> io::Result<()>;

    /// The journal's length after the last successful flush (whole lines).
    fn flushed_len(&self) -> u64;

    /// Cut the journal back to `len` bytes: lines of a tick the restored
    /// snapshot does not hold, which the run probes again.
    fn truncate(&mut self, len: u64) -> io::Result<()>;

    /// The journal's name in logs (a path).
    fn name(&self) -> String;
}

/// One probe's result, as a fan-out hands it to the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Probed {
    /// The job: an index into the batch's jobs.
    pub job: usize,
    /// When the probe finished.
    pub observed_at: Timestamp,
    /// Healthy, or why not (R1).
    pub result: ProbeResult,
    /// What kind of outcome it was, decided by the prober from the error's
    /// structure (metrics count it).
    pub class: ProbeClass,
    /// How long the probe took, from its start to its result, on the
    /// [`Clock`]'s monotonic time: for the latency histogram and the status
    /// page, never for the journal or an event.
    pub latency: Duration,
}

impl Probed {
    /// The result of job `job`, observed at `observed_at`, its latency zero
    /// until [`Probed::with_latency`] says otherwise.
    pub fn new(job: usize, observed_at: Timestamp, result: ProbeResult, class: ProbeClass) -> Self {
        Self {
            job,
            observed_at,
            result,
            class,
            latency: Duration::ZERO,
        }
    }

    /// The same result, the probe having taken `latency`.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }
}

/// How the probes of a tick run: threads, tokio tasks, or a simulation.
///
/// The probe port of the driver: both runtimes' fan-outs
/// (`crate::probing::fanout::ThreadFanout`, `crate::probing::fanout::TaskFanout`)
/// implement it around their prober.
pub trait ProbeFanout: Send + std::fmt::Debug {
    /// The runtime this fan-out is (or stands for).
    fn runtime(&self) -> Runtime;

    /// Probe every job of `batch` with at most `max_concurrency` in flight
    /// (R10), starting none once `shutdown` is triggered, and hand each
    /// result to `fold` on the calling thread as it arrives. Returns once
    /// every started probe has finished.
    fn probe_batch(
        &mut self,
        batch: &ProbeBatch,
        max_concurrency: usize,
        clock: &std::sync::Arc<dyn Clock>,
        shutdown: &Shutdown,
        fold: &mut dyn FnMut(Probed),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_error(source: io::Error) -> PublishError {
        PublishError::Write {
            destination: "events.jsonl".into(),
            source,
        }
    }

    #[test]
    fn a_closed_output_is_permanent() {
        for errno in [
            libc::EPIPE,
            libc::EBADF,
            libc::ECONNRESET,
            libc::ENOTCONN,
            libc::ENXIO,
        ] {
            let err = write_error(io::Error::from_raw_os_error(errno));
            assert!(err.is_permanent(), "{err}");
        }
        assert!(write_error(io::ErrorKind::BrokenPipe.into()).is_permanent());
        let sync = PublishError::Sync {
            destination: "<stdout>".into(),
            source: io::Error::from_raw_os_error(libc::EBADF),
        };
        assert!(sync.is_permanent(), "{sync}");
    }

    #[test]
    fn a_full_disk_or_a_down_broker_is_transient() {
        for errno in [
            libc::ENOSPC,
            libc::EDQUOT,
            libc::EIO,
            libc::EINTR,
            libc::EAGAIN,
        ] {
            let err = write_error(io::Error::from_raw_os_error(errno));
            assert!(!err.is_permanent(), "{err}");
        }
        assert!(!write_error(io::ErrorKind::WriteZero.into()).is_permanent());
        assert!(!PublishError::Unavailable("redis down".into()).is_permanent());
    }
}
