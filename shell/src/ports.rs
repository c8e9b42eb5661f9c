//! The worker's ports: what it needs from the outside world, as traits.
//!
//! The worker lists running games through a [`RuntimeRecordStore`], hands
//! events to a [`HealthEventPublisher`], counts deliveries on a [`Telemetry`]
//! and reads time from a [`Clock`]. The embedded implementations live in
//! [`crate::adapters`]; a runtime manager plugs in its own.

use std::io;

use healthprobe_core::{EventType, HealthEvent, Timestamp};
use serde::{Deserialize, Serialize};

/// One row of the runtime manager's records: a game and where its engine listens.
///
/// Serialized as in DESIGN.md's records format:
/// `{"game_id","current_container_id","engine_endpoint","status"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RuntimeRecord {
    /// The game's id; hysteresis state is kept per game.
    pub game_id: String,
    /// The container currently running the game's engine; events name it.
    pub current_container_id: String,
    /// The engine's base URL, for example `http://127.0.0.1:8080/` (R2 appends `/healthz`).
    pub engine_endpoint: String,
    /// The record's status; only `running` records are probed.
    pub status: String,
}

impl RuntimeRecord {
    /// The status of a record whose engine is probed.
    pub const RUNNING: &'static str = "running";

    /// A `running` record.
    pub fn running(
        game_id: impl Into<String>,
        current_container_id: impl Into<String>,
        engine_endpoint: impl Into<String>,
    ) -> Self {
        Self {
            game_id: game_id.into(),
            current_container_id: current_container_id.into(),
            engine_endpoint: engine_endpoint.into(),
            status: Self::RUNNING.to_owned(),
        }
    }

    /// Whether the record's status is `running`.
    pub fn is_running(&self) -> bool {
        self.status == Self::RUNNING
    }
}

/// Where the worker lists the games to probe.
pub trait RuntimeRecordStore: Send {
    /// The records whose status is `running`, freshly read.
    ///
    /// Called once at the start of every tick. An error skips the tick and
    /// leaves the hysteresis state untouched (R9).
    fn list_running(&mut self) -> Result<Vec<RuntimeRecord>, ListError>;
}

/// Where the worker sends `probe_failed` and `probe_recovered`.
pub trait HealthEventPublisher: Send {
    /// Deliver one event; `Ok` means it is delivered (written and flushed, sent, ...).
    ///
    /// Called from the one thread that owns the hysteresis state, in the
    /// order the events were emitted.
    fn publish(&mut self, event: &HealthEvent) -> Result<(), PublishError>;

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
    fn publish(&mut self, event: &HealthEvent) -> Result<(), PublishError> {
        (**self).publish(event)
    }

    fn sync(&mut self) -> Result<(), PublishError> {
        (**self).sync()
    }
}

/// Counts delivered events (R12).
pub trait Telemetry: Send {
    /// Count one delivered event of `event_type`; called only after a successful publish.
    fn record_event(&mut self, event_type: EventType);
}

/// The worker's only source of time: it stamps each outcome's `observed_at`.
///
/// Shared by the probe threads, hence `Sync`.
pub trait Clock: Send + Sync {
    /// The current instant (UTC).
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Why the running records could not be listed.
#[derive(Debug, thiserror::Error)]
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
            Self::Unavailable(_) => false,
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
