//! The hysteresis policy: how many failures publish `probe_failed`, how many
//! successes publish `probe_recovered`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Hysteresis thresholds, both at least 1.
///
/// `failures_threshold` consecutive failures publish `probe_failed` (R4);
/// `recovery_threshold` consecutive successes after that publish
/// `probe_recovered` (D1). `recovery_threshold = 1` is the reference exactly (R7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawPolicy")]
pub struct Policy {
    failures_threshold: u32,
    recovery_threshold: u32,
}

impl Policy {
    /// The reference worker's default `failures_threshold`.
    pub const DEFAULT_FAILURES_THRESHOLD: u32 = 3;
    /// The default `recovery_threshold`: the first success recovers (R7).
    pub const DEFAULT_RECOVERY_THRESHOLD: u32 = 1;

    /// A policy with both thresholds; zero is rejected with the field's name.
    pub fn new(failures_threshold: u32, recovery_threshold: u32) -> Result<Self, PolicyError> {
        if failures_threshold == 0 {
            return Err(PolicyError::ZeroFailuresThreshold);
        }
        if recovery_threshold == 0 {
            return Err(PolicyError::ZeroRecoveryThreshold);
        }
        Ok(Self {
            failures_threshold,
            recovery_threshold,
        })
    }

    /// The reference worker's policy: recover on the first success.
    pub fn reference(failures_threshold: u32) -> Result<Self, PolicyError> {
        Self::new(failures_threshold, Self::DEFAULT_RECOVERY_THRESHOLD)
    }

    /// Consecutive failures that publish `probe_failed`.
    pub fn failures_threshold(&self) -> u32 {
        self.failures_threshold
    }

    /// Consecutive successes, after a published failure, that publish `probe_recovered`.
    pub fn recovery_threshold(&self) -> u32 {
        self.recovery_threshold
    }
}

impl Default for Policy {
    /// `failures_threshold = 3`, `recovery_threshold = 1`.
    fn default() -> Self {
        Self {
            failures_threshold: Self::DEFAULT_FAILURES_THRESHOLD,
            recovery_threshold: Self::DEFAULT_RECOVERY_THRESHOLD,
        }
    }
}

/// A threshold was zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyError {
    /// `failures_threshold` was 0.
    ZeroFailuresThreshold,
    /// `recovery_threshold` was 0.
    ZeroRecoveryThreshold,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = match self {
            Self::ZeroFailuresThreshold => "failures_threshold",
            Self::ZeroRecoveryThreshold => "recovery_threshold",
        };
        write!(f, "{field} must be positive, got 0")
    }
}

impl std::error::Error for PolicyError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    failures_threshold: u32,
    #[serde(default = "default_recovery_threshold")]
    recovery_threshold: u32,
}

fn default_recovery_threshold() -> u32 {
    Policy::DEFAULT_RECOVERY_THRESHOLD
}

impl TryFrom<RawPolicy> for Policy {
    type Error = PolicyError;

    fn try_from(raw: RawPolicy) -> Result<Self, Self::Error> {
        Self::new(raw.failures_threshold, raw.recovery_threshold)
    }
}
