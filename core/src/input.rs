//! The journal's inputs: every outcome and every prune, in order.

use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{ProbeOutcome, ProbeResult, Timestamp};

/// One input to the state machine, as written to the journal (D6):
///
/// ```json
/// {"type":"outcome","game_id":"g1","container_id":"c1","observed_at":"2026-11-28T05:00:00Z","result":"healthy"}
/// {"type":"prune","running":["g1","g2"]}
/// ```
///
/// Unknown fields are ignored, so journals written by a newer version still replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A probe outcome, folded with [`crate::step`].
    Outcome(ProbeOutcome),
    /// The running list at the start of a tick, applied with [`crate::prune`].
    Prune {
        /// The game ids listed as running.
        running: Vec<String>,
    },
}

impl Serialize for Input {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Outcome(outcome) => {
                let mut line = serializer.serialize_struct("Input", 5)?;
                line.serialize_field("type", "outcome")?;
                line.serialize_field("game_id", &outcome.game_id)?;
                line.serialize_field("container_id", &outcome.container_id)?;
                line.serialize_field("observed_at", &outcome.observed_at)?;
                line.serialize_field("result", &outcome.result)?;
                line.end()
            }
            Self::Prune { running } => {
                let mut line = serializer.serialize_struct("Input", 2)?;
                line.serialize_field("type", "prune")?;
                line.serialize_field("running", running)?;
                line.end()
            }
        }
    }
}

// Hand-written rather than `#[serde(tag = "type")]`: the derived internally
// tagged form buffers every field into an intermediate tree before decoding,
// which dominates the cost of `healthprobe replay`. This visitor decodes each
// field once, in any order.
impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(InputVisitor)
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Outcome,
    Prune,
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KindVisitor;
        impl Visitor<'_> for KindVisitor {
            type Value = Kind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"outcome\" or \"prune\"")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Kind, E> {
                match value {
                    "outcome" => Ok(Kind::Outcome),
                    "prune" => Ok(Kind::Prune),
                    other => Err(E::unknown_variant(other, &["outcome", "prune"])),
                }
            }
        }
        deserializer.deserialize_str(KindVisitor)
    }
}

enum Field {
    Type,
    GameId,
    ContainerId,
    ObservedAt,
    Result,
    Running,
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a journal field name")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Field, E> {
                Ok(match value {
                    "type" => Field::Type,
                    "game_id" => Field::GameId,
                    "container_id" => Field::ContainerId,
                    "observed_at" => Field::ObservedAt,
                    "result" => Field::Result,
                    "running" => Field::Running,
                    _ => Field::Other,
                })
            }
        }
        deserializer.deserialize_identifier(FieldVisitor)
    }
}

struct InputVisitor;

impl<'de> Visitor<'de> for InputVisitor {
    type Value = Input;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a journal object with \"type\": \"outcome\" or \"prune\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Input, A::Error> {
        let mut kind: Option<Kind> = None;
        let mut game_id: Option<String> = None;
        let mut container_id: Option<String> = None;
        let mut observed_at: Option<Timestamp> = None;
        let mut result: Option<ProbeResult> = None;
        let mut running: Option<Vec<String>> = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Type => set(&mut kind, "type", map.next_value()?)?,
                Field::GameId => set(&mut game_id, "game_id", map.next_value()?)?,
                Field::ContainerId => set(&mut container_id, "container_id", map.next_value()?)?,
                Field::ObservedAt => set(
                    &mut observed_at,
                    "observed_at",
                    map.next_value::<ObservedAt>()?.0,
                )?,
                Field::Result => set(&mut result, "result", map.next_value()?)?,
                Field::Running => set(&mut running, "running", map.next_value()?)?,
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match kind.ok_or_else(|| de::Error::missing_field("type"))? {
            Kind::Outcome => Ok(Input::Outcome(ProbeOutcome {
                game_id: game_id.ok_or_else(|| de::Error::missing_field("game_id"))?,
                container_id: container_id
                    .ok_or_else(|| de::Error::missing_field("container_id"))?,
                observed_at: observed_at.ok_or_else(|| de::Error::missing_field("observed_at"))?,
                result: result.ok_or_else(|| de::Error::missing_field("result"))?,
            })),
            Kind::Prune => Ok(Input::Prune {
                running: running.ok_or_else(|| de::Error::missing_field("running"))?,
            }),
        }
    }
}

/// `observed_at`, parsed so that a bad value names the field.
struct ObservedAt(Timestamp);

impl<'de> Deserialize<'de> for ObservedAt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObservedAtVisitor;
        impl Visitor<'_> for ObservedAtVisitor {
            type Value = ObservedAt;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<ObservedAt, E> {
                value
                    .parse()
                    .map(ObservedAt)
                    .map_err(|err| E::custom(format_args!("invalid observed_at {value:?}: {err}")))
            }
        }
        deserializer.deserialize_str(ObservedAtVisitor)
    }
}

fn set<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(value);
    Ok(())
}
