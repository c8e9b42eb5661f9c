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

/// A boxed store lists through the box (a store chosen at run time, as
/// [`crate::open::open_records`] returns).
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
    /// order the events were emitted.
    fn publish(&mut self, event: &HealthEvent) -> Result<(), PublishError>;
}

/// A boxed publisher publishes through the box (a publisher chosen at run time).
impl<P: HealthEventPublisher + ?Sized> HealthEventPublisher for Box<P> {
    fn publish(&mut self, event: &HealthEvent) -> Result<(), PublishError> {
        (**self).publish(event)
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
    /// The publisher refused the event for another reason (a broker down, a simulated failure).
    #[error("{0}")]
    Unavailable(String),
}
