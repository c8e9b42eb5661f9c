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
                if let Some(timestamp) = parse_utc_seconds(value.as_bytes()) {
                    return Ok(ObservedAt(timestamp));
                }
                value
                    .parse()
                    .map(ObservedAt)
                    .map_err(|err| E::custom(format_args!("invalid observed_at {value:?}: {err}")))
            }
        }
        deserializer.deserialize_str(ObservedAtVisitor)
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fffffffff]Z`, the only form the shell writes, read
/// without the general RFC 3339 parser, which costs a tenth of a replay.
///
/// Anything else (an offset, a comma, a leap second, a bad date, a value out
/// of range) gives `None` and goes to the general parser, which accepts it or
/// words the error; for every string accepted here both give the same instant.
fn parse_utc_seconds(value: &[u8]) -> Option<Timestamp> {
    let &[
        y0,
        y1,
        y2,
        y3,
        b'-',
        mo0,
        mo1,
        b'-',
        d0,
        d1,
        b'T',
        h0,
        h1,
        b':',
        mi0,
        mi1,
        b':',
        s0,
        s1,
        ref rest @ ..,
    ] = value
    else {
        return None;
    };
    let nanosecond = match rest {
        [b'Z'] => 0,
        [b'.', fraction @ .., b'Z'] if (1..=9).contains(&fraction.len()) => {
            let digits = digits(fraction)?;
            // `fraction` has at most 9 digits, so the scale is at most 10^8.
            digits * 10_i32.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    let two = |a: u8, b: u8| -> Option<i8> { i8::try_from(digits(&[a, b])?).ok() };
    let datetime = jiff::civil::DateTime::new(
        i16::try_from(digits(&[y0, y1, y2, y3])?).ok()?,
        two(mo0, mo1)?,
        two(d0, d1)?,
        two(h0, h1)?,
        two(mi0, mi1)?,
        two(s0, s1)?,
        nanosecond,
    )
    .ok()?;
    jiff::tz::Offset::UTC.to_timestamp(datetime).ok()
}

/// The value of at most 9 ASCII digits; `None` if any byte is not a digit.
fn digits(bytes: &[u8]) -> Option<i32> {
    bytes.iter().try_fold(0_i32, |value, &byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + i32::from(byte - b'0'))
    })
}

fn set<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::parse_utc_seconds;
    use crate::Timestamp;

    /// The fast path must agree with jiff's parser on everything it accepts.
    fn check(text: &str) -> Option<Timestamp> {
        let general = text.parse::<Timestamp>();
        let fast = parse_utc_seconds(text.as_bytes());
        if let Some(fast) = fast {
            assert_eq!(general.ok(), Some(fast), "{text}");
        }
        fast
    }

    #[test]
    fn observed_at_fast_path_agrees_with_jiff() {
        for text in [
            "2026-11-28T05:00:00Z",
            "2026-11-28T05:00:10.5Z",
            "2026-11-28T05:00:30.123456789Z",
            "2024-02-29T23:59:59Z",
            "0000-01-01T00:00:00Z",
            "1970-01-01T00:00:00.000000001Z",
            "1969-12-31T23:59:59.999999999Z",
        ] {
            assert!(check(text).is_some(), "{text} takes the fast path");
        }
        // Left to the general parser, which accepts or rejects them itself.
        for text in [
            "2026-11-28T07:00:30+02:00",
            "2026-11-28t05:00:00z",
            "2026-11-28 05:00:00Z",
            "2026-11-28T05:00:10,5Z",
            "2016-12-31T23:59:60Z",
            "2023-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-28T24:00:00Z",
            "2026-11-28T05:00:00.Z",
            "2026-11-28T05:00:00.1234567890Z",
            "9999-12-31T23:59:59Z",
            "2026-11-28T05:00:0xZ",
            "+2026-11-28T05:00:00Z",
        ] {
            assert_eq!(check(text), None, "{text}");
        }
    }

    proptest! {
        #[test]
        fn observed_at_fast_path_agrees_with_jiff_on_any_field_values(
            year in 0u32..=9999,
            month in 0u32..=13,
            day in 0u32..=32,
            hour in 0u32..=24,
            minute in 0u32..=60,
            second in 0u32..=60,
            fraction in proptest::option::of("[0-9]{1,10}"),
        ) {
            let fraction = fraction.map(|digits| format!(".{digits}")).unwrap_or_default();
            let text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z");
            let fast = check(&text);
            let valid_fields = (1..=12).contains(&month) && day >= 1 && hour <= 23
                && minute <= 59 && second <= 59 && fraction.len() <= 10;
            if fast.is_none() && valid_fields && text.parse::<Timestamp>().is_ok() {
                // Only an impossible day of the month may fall back here.
                prop_assert!(day >= 29, "{text} fell back needlessly");
            }
        }
    }
}
