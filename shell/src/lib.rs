//! The healthprobe shell: everything that touches the outside world around
//! the pure `healthprobe-core`.
//!
//! The shell reads clocks, files, sockets and environment variables, and
//! turns what it sees into [`healthprobe_core::ProbeOutcome`]s and
//! [`healthprobe_core::Input`]s. It never decides hysteresis: that is the
//! core's `step` and `prune`, called from one owner.
#![warn(missing_docs)]

pub mod journal;
pub mod replay;
pub mod wire;
