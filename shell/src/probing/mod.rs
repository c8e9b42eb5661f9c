//! Probing: one `GET /healthz` per engine, and the fan-outs that run many.
//!
//! Only I/O lives here: a probe returns its result and its kind
//! ([`healthprobe_core::tick::ProbeClass`]), decided from the error's
//! structure; what a result means is the core's business.

pub mod connections;
pub(crate) mod fanout;
pub mod probe;
#[cfg(feature = "async")]
pub mod probe_async;
