//! The run's input journal on disk (D6): every prune and outcome the worker
//! folds, as [`crate::codec::journal`] lines, buffered until
//! [`JournalFile::flush`] (each tick's end, and drop). Diagnostics, not the
//! source of truth: never fsynced.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use healthprobe_core::Input;

use crate::codec::journal::write_input;
use crate::codec::open_append_lines;
use crate::driver::ports::JournalSink;

/// Buffer between flushes; a tick of a few thousand outcomes is written in a few calls.
const JOURNAL_BUFFER_BYTES: usize = 64 * 1024;

/// A journal file opened for append: nothing already in it is lost.
#[derive(Debug)]
pub struct JournalFile {
    /// Shared with [`JournalFlusher`]s; only the worker's thread writes.
    out: Arc<Mutex<BufWriter<File>>>,
    path: PathBuf,
    /// Bytes in the file after the last successful flush.
    flushed: u64,
    /// Bytes recorded since then (in the buffer, or partly written).
    buffered: u64,
}

impl JournalFile {
    /// Open `path` for append, created `0600`, a torn final line cut back.
    pub fn append(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let (file, _) = open_append_lines(&path, "journal")?;
        // After the torn-tail repair: every byte up to here is a whole line.
        let flushed = file.metadata()?.len();
        Ok(Self {
            out: Arc::new(Mutex::new(BufWriter::with_capacity(
                JOURNAL_BUFFER_BYTES,
                file,
            ))),
            path,
            flushed,
            buffered: 0,
        })
    }

    /// A handle that flushes this journal from another thread: a second
    /// signal's handler flushes the lines buffered so far before exiting.
    pub(crate) fn flusher(&self) -> JournalFlusher {
        JournalFlusher(Arc::clone(&self.out))
    }

    fn out(&self) -> MutexGuard<'_, BufWriter<File>> {
        // A writer left mid-line by a panic is still a writer: whole lines
        // are checked at the next open.
        self.out.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl JournalSink for JournalFile {
    /// Append `input` as one line (buffered).
    fn record(&mut self, input: &Input) -> io::Result<()> {
        let out = Arc::clone(&self.out);
        let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
        let mut counted = Counted {
            inner: &mut *out,
            bytes: 0,
        };
        let result = write_input(&mut counted, input);
        self.buffered += counted.bytes;
        result
    }

    /// Hand every buffered line to the operating system.
    fn flush(&mut self) -> io::Result<()> {
        self.out().flush()?;
        self.flushed += std::mem::take(&mut self.buffered);
        Ok(())
    }

    /// The file's length after the last successful flush: every line up to
    /// it is whole.
    fn flushed_len(&self) -> u64 {
        self.flushed
    }

    /// Cut the file back to `len` bytes (lines a restored snapshot does not
    /// hold), dropping anything buffered; appends continue from there.
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut out = self.out();
        out.flush()?;
        out.get_ref().set_len(len)?;
        drop(out);
        self.flushed = len;
        self.buffered = 0;
        Ok(())
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

/// Flushes a [`JournalFile`] from another thread (`JournalFile::flusher`).
#[derive(Debug, Clone)]
pub struct JournalFlusher(Arc<Mutex<BufWriter<File>>>);

impl JournalFlusher {
    /// Hand every line buffered so far to the operating system, waiting at
    /// most `patience` for a write in progress (a dead disk must not keep a
    /// second signal from exiting).
    pub fn flush_within(&self, patience: std::time::Duration) -> io::Result<()> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            match self.0.try_lock() {
                Ok(mut out) => return out.flush(),
                Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                    return poisoned.into_inner().flush();
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    if std::time::Instant::now() >= deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the journal is busy (a write in progress)",
                        ));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
        }
    }
}

/// Counts the bytes written through it.
struct Counted<'a, W> {
    inner: &'a mut W,
    bytes: u64,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use healthprobe_core::{ProbeOutcome, ProbeResult, Timestamp};

    use super::*;
    use crate::codec::journal::JournalReader;

    #[test]
    fn d6_recorded_inputs_read_back_in_order_after_what_the_file_held() {
        let path =
            std::env::temp_dir().join(format!("healthprobe-journal-{}.jsonl", std::process::id()));
        std::fs::write(&path, "{\"type\":\"prune\",\"running\":[]}\n").expect("seed file");
        let inputs = [
            Input::Prune {
                running: vec!["g1".into(), "g1".into()],
            },
            Input::Outcome(ProbeOutcome {
                game_id: "g1".into(),
                container_id: "c1".into(),
                observed_at: Timestamp::from_second(1_795_842_000).expect("valid"),
                result: ProbeResult::Unhealthy {
                    status: 0,
                    error: "connection refused".into(),
                },
            }),
        ];
        let mut journal = JournalFile::append(&path).expect("open");
        for input in &inputs {
            journal.record(input).expect("buffered");
        }
        journal.flush().expect("flushed");
        let text = std::fs::read(&path).expect("read back");
        std::fs::remove_file(&path).expect("clean up");
        let read: Vec<Input> = JournalReader::new(text.as_slice(), "journal")
            .collect::<Result<_, _>>()
            .expect("valid journal");
        assert_eq!(read[0], Input::Prune { running: vec![] });
        assert_eq!(read[1..], inputs);
    }

    #[test]
    fn d6_a_torn_tail_is_cut_back_at_open_and_a_new_journal_is_0600() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!(
            "healthprobe-journal-torn-{}.jsonl",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        drop(JournalFile::append(&path).expect("create"));
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(
            &path,
            "{\"type\":\"prune\",\"running\":[]}\n{\"type\":\"outc",
        )
        .expect("seed");
        let mut journal = JournalFile::append(&path).expect("open");
        let prune = Input::Prune {
            running: vec!["g1".into()],
        };
        journal.record(&prune).expect("buffered");
        journal.flush().expect("flushed");
        let text = std::fs::read(&path).expect("read back");
        std::fs::remove_file(&path).expect("clean up");
        let read: Vec<Input> = JournalReader::new(text.as_slice(), "journal")
            .collect::<Result<_, _>>()
            .expect("the torn line is gone");
        assert_eq!(read, [Input::Prune { running: vec![] }, prune]);
    }
}
