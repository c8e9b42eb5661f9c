//! Records files (DESIGN.md "Formats") and scratch directories to put them in.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use healthprobe_shell::driver::ports::RuntimeRecord;

/// Write `records` to `path` as a JSON array, one record per line.
///
/// Atomic (a temporary file beside it, then a rename), so a worker that
/// re-reads the file every tick never sees half of it.
pub fn write_records_file(path: &Path, records: &[RuntimeRecord]) -> io::Result<()> {
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
