//! What one probe observed: the core's only input besides a prune.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// The result of one `GET {endpoint}/healthz` against one game's engine.
///
/// `observed_at` is when the shell saw the result; it becomes the
/// `occurred_at` of any event the outcome causes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOutcome {
    /// The game whose engine was probed.
    pub game_id: String,
    /// The container the game's record named when it was probed.
    pub container_id: String,
    /// When the result was observed (UTC).
    pub observed_at: Timestamp,
    /// Healthy (status 200) or not.
    pub result: ProbeResult,
}

/// Success or failure of one probe (R1: success is HTTP status exactly 200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeResult {
    /// The engine answered 200.
    Healthy,
    /// Any other status, or no response at all.
    Unhealthy {
        /// The HTTP status; 0 when there was no HTTP response.
        status: u16,
        /// What went wrong, for example `unexpected status 503`.
        error: String,
    },
}

impl ProbeResult {
    /// Whether this result counts as a success.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Self::Healthy)
    }
}
