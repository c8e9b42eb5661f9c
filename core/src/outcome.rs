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
    #[serde(deserialize_with = "observed_at")]
    pub observed_at: Timestamp,
    /// Healthy (status 200) or not.
    pub result: ProbeResult,
}

/// An RFC 3339 `observed_at`; a bad one is named with its value.
fn observed_at<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    text.parse().map_err(|err| {
        serde::de::Error::custom(format_args!("invalid observed_at {text:?}: {err}"))
    })
}

/// [`observed_at`] for a field that may be absent.
pub(crate) fn some_observed_at<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Timestamp>, D::Error> {
    observed_at(deserializer).map(Some)
}

impl ProbeOutcome {
    /// A borrowed view, for [`crate::HealthStates::apply`].
    pub fn as_ref(&self) -> OutcomeRef<'_> {
        OutcomeRef {
            game_id: &self.game_id,
            container_id: &self.container_id,
            observed_at: self.observed_at,
            result: &self.result,
        }
    }
}

/// A [`ProbeOutcome`] whose strings are borrowed from the caller.
///
/// Folded with [`crate::HealthStates::apply`], which copies the strings
/// only into an emitted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutcomeRef<'a> {
    /// The game whose engine was probed.
    pub game_id: &'a str,
    /// The container the game's record named when it was probed.
    pub container_id: &'a str,
    /// When the result was observed (UTC).
    pub observed_at: Timestamp,
    /// Healthy (status 200) or not.
    pub result: &'a ProbeResult,
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
    /// The result of an HTTP answer with `status` (R1): healthy only for
    /// exactly 200; any other status, a redirect included (D2), is a
    /// failure whose error is `unexpected status N`.
    pub fn from_status(status: u16) -> Self {
        match status {
            200 => Self::Healthy,
            status => Self::Unhealthy {
                status,
                error: format!("unexpected status {status}"),
            },
        }
    }

    /// Whether this result counts as a success.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Self::Healthy)
    }
}
