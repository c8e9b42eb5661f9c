//! The journal's inputs: every outcome and every prune, in order.

use serde::{Deserialize, Serialize};

use crate::{ProbeOutcome, ProbeResult, Timestamp};

/// One input to the state machine, as written to the journal (D6):
///
/// ```json
/// {"type":"outcome","game_id":"g1","container_id":"c1","observed_at":"2026-11-28T05:00:00Z","result":"healthy"}
/// {"type":"prune","running":["g1","g2"]}
/// ```
///
/// Unknown fields are ignored, so journals written by a newer version still replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", try_from = "Line")]
pub enum Input {
    /// A probe outcome, folded with [`crate::step`].
    Outcome(ProbeOutcome),
    /// The running list at the start of a tick, applied with [`crate::prune`].
    Prune {
        /// The game ids listed as running.
        running: Vec<String>,
    },
}

/// A journal line as read: a flat object, decoded field by field as it
/// streams (serde's internally tagged form would buffer it first and lose
/// the column of an error inside it), then checked for its type's fields.
#[derive(Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: Kind,
    game_id: Option<String>,
    container_id: Option<String>,
    #[serde(default, deserialize_with = "crate::outcome::some_observed_at")]
    observed_at: Option<Timestamp>,
    result: Option<ProbeResult>,
    running: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Outcome,
    Prune,
}

/// A field that a line of its type must have.
#[derive(Debug)]
struct MissingField(&'static str);

impl std::fmt::Display for MissingField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "missing field `{}`", self.0)
    }
}

impl TryFrom<Line> for Input {
    type Error = MissingField;

    fn try_from(line: Line) -> Result<Self, MissingField> {
        Ok(match line.kind {
            Kind::Outcome => Self::Outcome(ProbeOutcome {
                game_id: line.game_id.ok_or(MissingField("game_id"))?,
                container_id: line.container_id.ok_or(MissingField("container_id"))?,
                observed_at: line.observed_at.ok_or(MissingField("observed_at"))?,
                result: line.result.ok_or(MissingField("result"))?,
            }),
            Kind::Prune => Self::Prune {
                running: line.running.ok_or(MissingField("running"))?,
            },
        })
    }
}
