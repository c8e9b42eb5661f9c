//! Embedded implementations of the ports: files, stdout and memory.
//!
//! [`RecordsFile`] and [`JsonlPublisher`] back `healthprobe run`; the memory
//! adapters ([`MemoryStore`], [`MemoryPublisher`], [`CountingTelemetry`],
//! [`ManualClock`]) are cloneable handles for library users and tests: keep
//! one clone, give the other to the worker. With the cargo feature
//! `postgres`, `PostgresRecords` lists the running records of a
//! PostgreSQL table (`--records postgres://…`).

mod jsonl;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod records_file;

#[cfg(feature = "postgres")]
pub use self::postgres::{InvalidUrl, PostgresRecords, redact_url};
pub use jsonl::JsonlPublisher;
pub use memory::{CountingTelemetry, ManualClock, MemoryPublisher, MemoryStore};
pub(crate) use records_file::strip_position;
pub use records_file::{RecordsFile, parse_records};
