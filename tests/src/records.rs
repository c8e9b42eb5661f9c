//! Records files (DESIGN.md "Formats") and scratch directories to put them in.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// One row of a records file, as the embedded store reads it:
/// `{"game_id","current_container_id","engine_endpoint","status"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineRecord {
    /// The game.
    pub game_id: String,
    /// The container running the game's engine now.
    pub current_container_id: String,
    /// Base URL of the engine; the prober appends `/healthz`.
    pub engine_endpoint: String,
    /// Only `running` rows are probed.
    pub status: String,
}

impl EngineRecord {
    /// A `running` record.
    pub fn running(
        game_id: impl Into<String>,
        container_id: impl Into<String>,
        engine_endpoint: impl Into<String>,
    ) -> Self {
        Self {
            game_id: game_id.into(),
            current_container_id: container_id.into(),
            engine_endpoint: engine_endpoint.into(),
            status: "running".to_owned(),
        }
    }
}

/// Write `records` to `path` as a JSON array, one record per line.
///
/// Atomic (a temporary file beside it, then a rename), so a worker that
/// re-reads the file every tick never sees half of it.
pub fn write_records_file(path: &Path, records: &[EngineRecord]) -> io::Result<()> {
    let mut text = String::from("[\n");
    for (index, record) in records.iter().enumerate() {
        if index > 0 {
            text.push_str(",\n");
        }
        text.push_str(&serde_json::to_string(record).map_err(io::Error::other)?);
    }
    text.push_str("\n]\n");
    write_atomically(path, text.as_bytes())
}

/// Replace `path` with `contents` atomically (temporary file, then rename).
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = fs::File::create(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, path)
}

/// A fresh directory under the system temporary directory, removed on drop.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Create `healthprobe-tests-<pid>-<n>-<label>`.
    pub fn new(label: &str) -> io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "healthprobe-tests-{}-{}-{label}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path)?;
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}
