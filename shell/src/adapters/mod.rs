//! Embedded implementations of the ports: files, stdout, memory and (cargo
//! feature `redis`) a Redis stream.
//!
//! [`RecordsFile`] and [`JsonlPublisher`] (or `RedisStreamPublisher`) back
//! `healthprobe run`; the memory
//! adapters ([`MemoryStore`], [`MemoryPublisher`], [`CountingTelemetry`],
//! [`ManualClock`]) are cloneable handles for library users and tests: keep
//! one clone, give the other to the worker. With the cargo feature
//! `postgres`, `PostgresRecords` lists the running records of a
//! PostgreSQL table (`--records postgres://…`).

mod jsonl;
mod memory;
pub mod open;
#[cfg(feature = "postgres")]
pub mod pg_leases;
#[cfg(feature = "postgres")]
mod postgres;
mod records_file;
#[cfg(any(feature = "postgres", feature = "redis"))]
mod redact;
#[cfg(feature = "redis")]
mod redis_streams;

#[cfg(feature = "postgres")]
pub use self::postgres::PostgresRecords;
pub use jsonl::JsonlPublisher;
pub use memory::{CountingTelemetry, ManualClock, MemoryPublisher, MemoryStore};
pub use records_file::{RecordsFile, parse_records};
#[cfg(any(feature = "postgres", feature = "redis"))]
pub use redact::InvalidUrl;
#[cfg(feature = "redis")]
pub use redis_streams::{RedisStreamPublisher, RedisTarget};
