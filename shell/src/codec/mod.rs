//! Codecs and line files: journal lines (D6), event lines (Go
//! `encoding/json` escaping), and the helpers every file of JSON lines uses.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use tracing::warn;

pub mod journal;
pub mod snapshot;
pub mod wire;

/// Open a file of lines for append, created `0600` when missing, a torn
/// tail (bytes after the last `\n`) cut back with a warning naming the file
/// (`what`): those bytes never counted as written. Returns the file and
/// its length after the repair.
pub(crate) fn open_append_lines(path: &Path, what: &str) -> io::Result<(File, u64)> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let len = file.metadata()?.len();
    let whole = whole_lines_len(&file, len)?;
    if whole < len {
        file.set_len(whole)?;
        warn!(
            file = %path.display(),
            dropped_bytes = len - whole,
            "{what}: cut a torn final line (no newline) back to the last whole line"
        );
    }
    Ok((file, whole))
}

/// The length of `file`'s first `len` bytes up to and including the last `\n`.
fn whole_lines_len(file: &File, len: u64) -> io::Result<u64> {
    let mut end = len;
    let mut chunk = vec![0u8; 8192];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        file.read_exact_at(part, start)?;
        if let Some(at) = part.iter().rposition(|&byte| byte == b'\n') {
            return Ok(start + at as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// serde_json's message without its trailing ` at line L column C`.
pub(crate) fn strip_position(err: &serde_json::Error) -> String {
    let message = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    match message.strip_suffix(&suffix) {
        Some(stripped) => stripped.to_owned(),
        None => message,
    }
}
