//! `healthprobe replay`: fold a journal through the core, streaming.

use std::io::{self, BufRead, Write};

use healthprobe_core::{HealthStates, Policy};

use crate::codec::journal::{JournalError, JournalReader};
use crate::codec::wire::write_event_line;

/// Why a replay stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// A journal line was malformed or unreadable; events before it were written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Writing the events failed.
    #[error("cannot write events: {0}")]
    Write(#[source] io::Error),
}

/// What a finished replay saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ReplaySummary {
    /// Journal inputs folded.
    pub inputs: u64,
    /// Events written.
    pub events: u64,
}

/// Fold every input of `journal` under `policy`, writing each event as one
/// JSON line to `out` as soon as it is emitted.
///
/// Memory stays at the size of the state, whatever the journal's length.
/// On a malformed line the events already emitted are flushed to `out`
/// before the error is returned.
pub fn replay_journal(
    policy: Policy,
    journal: impl BufRead,
    source_name: &str,
    out: &mut impl Write,
) -> Result<(HealthStates, ReplaySummary), ReplayError> {
    let mut state = HealthStates::new(policy);
    let mut summary = ReplaySummary::default();
    let mut reader = JournalReader::new(journal, source_name);
    while let Some(input) = reader.next_input() {
        let input = match input {
            Ok(input) => input,
            Err(err) => {
                out.flush().map_err(ReplayError::Write)?;
                return Err(err.into());
            }
        };
        summary.inputs += 1;
        if let Some(event) = state.apply_input(input) {
            write_event_line(out, &event.event).map_err(ReplayError::Write)?;
            summary.events += 1;
        }
    }
    out.flush().map_err(ReplayError::Write)?;
    Ok((state, summary))
}
