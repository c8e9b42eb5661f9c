//! What the core emits: `probe_failed` and `probe_recovered`.

use std::fmt::{self, Write as _};

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use crate::Timestamp;

/// One published health event, serialized exactly as the reference envelope:
/// `{"game_id","container_id","event_type","occurred_at","details"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawEvent")]
pub struct HealthEvent {
    /// The game the event is about.
    pub game_id: String,
    /// The container named by the outcome that caused the event.
    pub container_id: String,
    /// The `observed_at` of the outcome that caused the event.
    pub occurred_at: Timestamp,
    /// The event's kind and payload.
    pub details: EventDetails,
}

impl HealthEvent {
    /// `probe_failed` or `probe_recovered`.
    pub fn event_type(&self) -> EventType {
        self.details.event_type()
    }
}

/// An event's id: `{episode_unix_ns}:{event_type}:{game_id}`, where the
/// episode is the `observed_at` of the first failure of the streak the event
/// belongs to (so `probe_failed` and its `probe_recovered` share it).
///
/// The same inputs give the same id, however often the event is re-sent and
/// across restarts: consumers drop repeats on it (D5 allows a repeat, never a
/// loss). The game id comes last, so it may hold `:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    /// The id of `event`, of the failure episode that began at `episode`.
    pub fn new(episode: Timestamp, event: &HealthEvent) -> Self {
        let (ns, kind, game) = (episode.as_nanosecond(), event.event_type(), &event.game_id);
        // One allocation: an i128 takes at most 40 characters.
        let mut id = String::with_capacity(42 + kind.as_str().len() + game.len());
        write!(id, "{ns}:{kind}:{game}").expect("writing to a String cannot fail");
        Self(id)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event with its id, as the outbox holds it until it is delivered.
///
/// Serializes as `{"id":"…","event":{envelope}}` (a state file's pending
/// events); reading one back checks that the id is of its event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawOutgoing")]
pub struct Outgoing {
    /// The event's stable id.
    pub id: EventId,
    /// The event, exactly the reference's envelope.
    pub event: HealthEvent,
}

impl Outgoing {
    /// `event` with its id, of the failure episode that began at `episode`.
    pub fn new(episode: Timestamp, event: HealthEvent) -> Self {
        let id = EventId::new(episode, &event);
        Self { id, event }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutgoing {
    id: String,
    event: HealthEvent,
}

impl TryFrom<RawOutgoing> for Outgoing {
    type Error = String;

    fn try_from(raw: RawOutgoing) -> Result<Self, Self::Error> {
        let episode = raw.id.split_once(':').and_then(|(ns, _)| {
            let ns: i128 = ns.parse().ok()?;
            Timestamp::from_nanosecond(ns).ok()
        });
        match episode.map(|episode| Self::new(episode, raw.event)) {
            Some(outgoing) if outgoing.id.0 == raw.id => Ok(outgoing),
            _ => Err(format!(
                "id {:?} is not `{{episode_unix_ns}}:{{event_type}}:{{game_id}}` of its event",
                raw.id
            )),
        }
    }
}

/// The payload of a [`HealthEvent`]; its variant decides the `event_type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventDetails {
    /// `failures_threshold` consecutive failures were reached (R4).
    ProbeFailed {
        /// The failure counter when the threshold was reached.
        consecutive_failures: u64,
        /// The HTTP status of the last failure, 0 when there was no response.
        last_status: u16,
        /// The error of the last failure.
        last_error: String,
    },
    /// A published failure recovered (R7, D1).
    ProbeRecovered {
        /// The failure counter at recovery, failures after `probe_failed` included.
        prior_failure_count: u64,
    },
}

impl EventDetails {
    /// The event type this payload belongs to.
    pub fn event_type(&self) -> EventType {
        match self {
            Self::ProbeFailed { .. } => EventType::ProbeFailed,
            Self::ProbeRecovered { .. } => EventType::ProbeRecovered,
        }
    }
}

/// The two event types, named as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// `probe_failed`
    ProbeFailed,
    /// `probe_recovered`
    ProbeRecovered,
}

impl EventType {
    /// The wire name: `probe_failed` or `probe_recovered`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProbeFailed => "probe_failed",
            Self::ProbeRecovered => "probe_recovered",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for HealthEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut envelope = serializer.serialize_struct("HealthEvent", 5)?;
        envelope.serialize_field("game_id", &self.game_id)?;
        envelope.serialize_field("container_id", &self.container_id)?;
        envelope.serialize_field("event_type", &self.event_type())?;
        envelope.serialize_field("occurred_at", &self.occurred_at)?;
        envelope.serialize_field("details", &self.details)?;
        envelope.end()
    }
}

impl Serialize for EventDetails {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::ProbeFailed {
                consecutive_failures,
                last_status,
                last_error,
            } => {
                let mut details = serializer.serialize_struct("ProbeFailed", 3)?;
                details.serialize_field("consecutive_failures", consecutive_failures)?;
                details.serialize_field("last_status", last_status)?;
                details.serialize_field("last_error", last_error)?;
                details.end()
            }
            Self::ProbeRecovered {
                prior_failure_count,
            } => {
                let mut details = serializer.serialize_struct("ProbeRecovered", 1)?;
                details.serialize_field("prior_failure_count", prior_failure_count)?;
                details.end()
            }
        }
    }
}

/// The envelope as read back (from an outbox or a consumer's stream): the
/// payload's fields must match `event_type`.
#[derive(Deserialize)]
struct RawEvent {
    game_id: String,
    container_id: String,
    event_type: EventType,
    occurred_at: Timestamp,
    details: RawDetails,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDetails {
    consecutive_failures: Option<u64>,
    last_status: Option<u16>,
    last_error: Option<String>,
    prior_failure_count: Option<u64>,
}

impl TryFrom<RawEvent> for HealthEvent {
    type Error = String;

    fn try_from(raw: RawEvent) -> Result<Self, Self::Error> {
        let d = raw.details;
        let details = match raw.event_type {
            EventType::ProbeFailed => match (
                d.consecutive_failures,
                d.last_status,
                d.last_error,
                d.prior_failure_count,
            ) {
                (Some(consecutive_failures), Some(last_status), Some(last_error), None) => {
                    EventDetails::ProbeFailed {
                        consecutive_failures,
                        last_status,
                        last_error,
                    }
                }
                _ => {
                    return Err("probe_failed details need exactly consecutive_failures, last_status and last_error".into());
                }
            },
            EventType::ProbeRecovered => match (
                d.consecutive_failures,
                d.last_status,
                d.last_error,
                d.prior_failure_count,
            ) {
                (None, None, None, Some(prior_failure_count)) => EventDetails::ProbeRecovered {
                    prior_failure_count,
                },
                _ => return Err("probe_recovered details need exactly prior_failure_count".into()),
            },
        };
        Ok(Self {
            game_id: raw.game_id,
            container_id: raw.container_id,
            occurred_at: raw.occurred_at,
            details,
        })
    }
}
