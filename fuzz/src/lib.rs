//! Shared by the fuzz targets: the naive model of the Go worker's hysteresis
//! that the property tests use too (one file, `core/tests/support/go_model.rs`,
//! included by path since this crate is outside the workspace). The targets
//! compare `healthprobe-core` against it; the core does not depend on this crate.

#[path = "../../core/tests/support/go_model.rs"]
mod go_model;

pub use go_model::{ModelGame, NaiveModel, observed};
