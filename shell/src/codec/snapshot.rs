//! The snapshot format (D5, D7): the hysteresis state and the pending
//! events with their ids, one JSON object, version 2 (version 1 still read).
//! A state file holds one; with failover, each shard's row holds one.

use healthprobe_core::tick::Snapshot;
use healthprobe_core::{HealthEvent, HealthStates, Outgoing, Timestamp};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::strip_position;
use crate::driver::ports::{SNAPSHOT_VERSION, StateError};

/// Append the snapshot of `states`, `pending` and the journal's committed
/// length (written only when there is a journal) to `out`, as one JSON line.
pub fn encode_snapshot_with_journal(
    out: &mut Vec<u8>,
    states: &HealthStates,
    pending: &[Outgoing],
    journal_len: Option<u64>,
) {
    let snapshot = SnapshotRef {
        version: SNAPSHOT_VERSION,
        states,
        pending,
        journal_len,
    };
    // No I/O, and every map key is a string.
    serde_json::to_writer(&mut *out, &snapshot).expect("a snapshot always serializes");
    out.push(b'\n');
}

/// Parse a state file's bytes; `name` names the file in errors. The version
/// is checked first, whatever else the file holds.
pub fn parse_snapshot(bytes: &[u8], name: &str) -> Result<Snapshot, StateError> {
    if bytes.trim_ascii().is_empty() {
        return Err(StateError::Empty {
            path: name.to_owned(),
        });
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|err| StateError::Syntax {
            path: name.to_owned(),
            line: err.line(),
            column: err.column(),
            message: strip_position(&err),
        })?;
    let invalid = |message: String| StateError::Invalid {
        path: name.to_owned(),
        message,
    };
    let Some(fields) = value.as_object() else {
        return Err(invalid(
            "expected an object with `version`, `states` and `pending`".to_owned(),
        ));
    };
    let version = match fields.get("version") {
        None => return Err(invalid("missing field `version`".to_owned())),
        Some(version) => version,
    };
    fn parse<P: DeserializeOwned>(value: serde_json::Value) -> Result<SnapshotFile<P>, String> {
        serde_path_to_error::deserialize(value).map_err(|err| {
            let path = err.path().to_string();
            let reason = err.inner().to_string();
            if path == "." || path.is_empty() {
                reason
            } else {
                format!("{path}: {reason}")
            }
        })
    }
    let (states, pending, journal_len) = match version.as_u64() {
        Some(SNAPSHOT_VERSION) => parse(value).map_err(invalid)?.into_parts(),
        Some(1) => {
            let (states, pending, journal_len) =
                parse::<HealthEvent>(value).map_err(invalid)?.into_parts();
            // Version 1 kept no episodes: its events' ids are the Unix epoch's.
            let pending = pending
                .into_iter()
                .map(|event| Outgoing::new(Timestamp::UNIX_EPOCH, event))
                .collect();
            (states, pending, journal_len)
        }
        _ => {
            return Err(StateError::Version {
                path: name.to_owned(),
                found: version.to_string(),
            });
        }
    };
    Ok(Snapshot {
        states,
        pending,
        journal_len,
    })
}

#[derive(Serialize)]
struct SnapshotRef<'a> {
    version: u64,
    states: &'a HealthStates,
    pending: &'a [Outgoing],
    #[serde(skip_serializing_if = "Option::is_none")]
    journal_len: Option<u64>,
}

/// A state file as read: `P` is a pending event of its version
/// ([`HealthEvent`] in version 1, [`Outgoing`] in version 2).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, bound = "P: DeserializeOwned")]
struct SnapshotFile<P> {
    #[allow(dead_code)]
    version: u64,
    states: HealthStates,
    pending: Vec<P>,
    #[serde(default)]
    journal_len: Option<u64>,
}

impl<P> SnapshotFile<P> {
    fn into_parts(self) -> (HealthStates, Vec<P>, Option<u64>) {
        (self.states, self.pending, self.journal_len)
    }
}
