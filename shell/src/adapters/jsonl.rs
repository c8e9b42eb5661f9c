//! Events as JSON lines (byte-identical to the reference's, see
//! [`crate::codec::wire`]): the embedded [`HealthEventPublisher`]. A file
//! never holds a torn line: a failed write is cut back to the last whole
//! line, a failed `fdatasync` to the last good one. Standard output is
//! written through a duplicate of fd 1, so a closed stdout is an error, not
//! `std::io::stdout()`'s silent success.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::Path;

use healthprobe_core::Outgoing;

use crate::codec::open_append_lines;
use crate::codec::wire::write_event_line;
use crate::driver::ports::{HealthEventPublisher, PublishError};

/// Whether `fd` is `/dev/null` opened read-write: what Rust's runtime puts
/// on a standard fd found closed at start (a shell's `>/dev/null` is write-only).
fn is_runtime_dev_null(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(dup) = fd.try_clone_to_owned() else {
        return false;
    };
    let (Ok(meta), Ok(null)) = (File::from(dup).metadata(), std::fs::metadata("/dev/null")) else {
        return false;
    };
    let read_write = rustix::fs::fcntl_getfl(fd)
        .is_ok_and(|flags| flags & rustix::fs::OFlags::ACCMODE == rustix::fs::OFlags::RDWR);
    meta.rdev() == null.rdev() && meta.dev() == null.dev() && read_write
}

/// A file the publisher appends whole lines to and can cut back.
trait LinesFile: Write + Send {
    fn set_len(&self, len: u64) -> io::Result<()>;
    fn sync_data(&self) -> io::Result<()>;
}

impl LinesFile for File {
    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
}

enum Sink {
    /// An events file opened for append.
    File {
        file: Box<dyn LinesFile>,
        /// Length of the whole lines written so far.
        len: u64,
        /// Length at the last successful sync (or at open).
        synced: u64,
        /// The file may be longer than `len` (a cut back failed): cut it before the next line.
        torn: bool,
    },
    /// A duplicate of fd 1, or an events path that is not a regular file (a
    /// FIFO, a device such as `/dev/full`): written as it is, never cut back
    /// (a pipe cannot be, and `ftruncate` on a device fails with `EINVAL`);
    /// `regular` when it is a regular file, which `sync` syncs.
    Stdout { file: File, regular: bool },
    /// Any writer (tests, the demo); `sync` does nothing.
    Writer(Box<dyn Write + Send>),
}

/// Writes each event as one JSON line, flushed before it counts as published.
pub struct JsonlPublisher {
    sink: Sink,
    destination: String,
    line: Vec<u8>,
}

impl std::fmt::Debug for JsonlPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlPublisher")
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}

impl JsonlPublisher {
    /// Events to a duplicate of fd 1, refused when fd 1 is not open; a
    /// regular file there is fdatasynced by [`HealthEventPublisher::sync`].
    pub(crate) fn stdout_checked() -> io::Result<Self> {
        let fd = io::stdout().as_fd().try_clone_to_owned().map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("standard output (fd 1) is not open: {err}"),
            )
        })?;
        if is_runtime_dev_null(fd.as_fd()) {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "standard output (fd 1) is not open (the runtime put /dev/null in its place)",
            ));
        }
        let file = File::from(fd);
        let regular = file.metadata().is_ok_and(|meta| meta.is_file());
        Ok(Self::with_sink(Sink::Stdout { file, regular }, "<stdout>"))
    }

    /// Events appended to the file at `path` (`open_append_lines`).
    pub fn append(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        let (file, len) = open_append_lines(path, "events file")?;
        if !file.metadata()?.is_file() {
            let sink = Sink::Stdout {
                file,
                regular: false,
            };
            return Ok(Self::with_sink(sink, path.display().to_string()));
        }
        Ok(Self::lines_file(file, len, path.display().to_string()))
    }

    fn lines_file(file: impl LinesFile + 'static, len: u64, destination: String) -> Self {
        Self::with_sink(
            Sink::File {
                file: Box::new(file),
                len,
                synced: len,
                torn: false,
            },
            destination,
        )
    }

    /// Events to any writer; `destination` names it in errors.
    pub fn new(out: impl Write + Send + 'static, destination: impl Into<String>) -> Self {
        Self::with_sink(Sink::Writer(Box::new(out)), destination)
    }

    fn with_sink(sink: Sink, destination: impl Into<String>) -> Self {
        Self {
            sink,
            destination: destination.into(),
            line: Vec::with_capacity(256),
        }
    }

    fn write_error(&self, source: io::Error) -> PublishError {
        PublishError::Write {
            destination: self.destination.clone(),
            source,
        }
    }
}

impl HealthEventPublisher for JsonlPublisher {
    /// Writes the envelope only: the id stays out, so the lines are the reference's.
    fn publish(&mut self, event: &Outgoing) -> Result<(), PublishError> {
        self.line.clear();
        write_event_line(&mut self.line, &event.event)
            .map_err(|source| self.write_error(source))?;
        let result = match &mut self.sink {
            Sink::File {
                file, len, torn, ..
            } => {
                let repaired = if *torn { file.set_len(*len) } else { Ok(()) };
                *torn = repaired.is_err();
                match repaired.and_then(|()| file.write_all(&self.line)) {
                    Ok(()) => {
                        *len += self.line.len() as u64;
                        Ok(())
                    }
                    Err(err) => {
                        // Never leave a torn line: cut back to the last
                        // whole line, or do it before the next line.
                        *torn = file.set_len(*len).is_err();
                        Err(err)
                    }
                }
            }
            Sink::Stdout { file, .. } => file.write_all(&self.line),
            Sink::Writer(out) => out.write_all(&self.line).and_then(|()| out.flush()),
        };
        result.map_err(|source| self.write_error(source))
    }

    fn sync(&mut self) -> Result<(), PublishError> {
        let result = match &mut self.sink {
            Sink::File {
                file,
                len,
                synced,
                torn,
            } => {
                if *len == *synced && !*torn {
                    return Ok(());
                }
                match file.sync_data() {
                    Ok(()) => {
                        *synced = *len;
                        Ok(())
                    }
                    Err(err) => {
                        // The lines since the last sync may not be on disk:
                        // they will be published again, so drop them here.
                        *len = *synced;
                        *torn = file.set_len(*len).is_err();
                        Err(err)
                    }
                }
            }
            Sink::Stdout {
                file,
                regular: true,
            } => file.sync_data(),
            Sink::Stdout { .. } | Sink::Writer(_) => Ok(()),
        };
        result.map_err(|source| PublishError::Sync {
            destination: self.destination.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use healthprobe_core::{EventDetails, HealthEvent, Timestamp};

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("test lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::BrokenPipe, "pipe closed"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn event() -> Outgoing {
        let event = HealthEvent {
            game_id: "g1".into(),
            container_id: "c1".into(),
            occurred_at: Timestamp::from_second(1_795_842_030).expect("valid"),
            details: EventDetails::ProbeRecovered {
                prior_failure_count: 4,
            },
        };
        Outgoing::new(Timestamp::from_second(1_795_842_000).expect("valid"), event)
    }

    #[test]
    fn each_event_is_one_json_line() {
        let out = Shared::default();
        let mut publisher = JsonlPublisher::new(out.clone(), "test");
        publisher.publish(&event()).expect("written");
        publisher.publish(&event()).expect("written");
        let text = String::from_utf8(out.0.lock().expect("test lock").clone()).expect("utf-8");
        let line = r#"{"game_id":"g1","container_id":"c1","event_type":"probe_recovered","occurred_at":"2026-11-28T05:00:30Z","details":{"prior_failure_count":4}}"#;
        assert_eq!(text, format!("{line}\n{line}\n"));
    }

    #[test]
    fn a_write_error_is_a_publish_error_naming_the_destination() {
        let mut publisher = JsonlPublisher::new(Broken, "events.jsonl");
        let err = publisher.publish(&event()).expect_err("broken writer");
        assert_eq!(
            err.to_string(),
            "cannot write event to events.jsonl: pipe closed"
        );
    }

    /// A real file whose writes stop after `budget` bytes (a full disk), and
    /// whose `sync_data` fails while `fail_sync` is set.
    struct FullDisk {
        file: File,
        budget: Arc<Mutex<(usize, bool)>>,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut guard = self.budget.lock().expect("test lock");
            if guard.0 == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(guard.0);
            let written = self.file.write(&buf[..n])?;
            guard.0 -= written;
            Ok(written)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl LinesFile for FullDisk {
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.file.set_len(len)
        }
        fn sync_data(&self) -> io::Result<()> {
            if self.budget.lock().expect("test lock").1 {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            self.file.sync_data()
        }
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("healthprobe-jsonl-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn full_disk(path: &Path) -> (JsonlPublisher, Arc<Mutex<(usize, bool)>>) {
        let (file, len) = open_append_lines(path, "events file").expect("open");
        let budget = Arc::new(Mutex::new((usize::MAX, false)));
        let sink = FullDisk {
            file,
            budget: Arc::clone(&budget),
        };
        (
            JsonlPublisher::lines_file(sink, len, path.display().to_string()),
            budget,
        )
    }

    #[test]
    fn a_write_cut_off_part_way_is_cut_back_to_the_last_whole_line() {
        let dir = scratch("partial");
        let path = dir.join("events.jsonl");
        let (mut publisher, budget) = full_disk(&path);
        publisher.publish(&event()).expect("written");
        let one = std::fs::read(&path).expect("read");
        budget.lock().expect("test lock").0 = 10;
        let err = publisher.publish(&event()).expect_err("disk full");
        assert!(!err.is_permanent(), "ENOSPC heals: {err}");
        assert_eq!(std::fs::read(&path).expect("read"), one, "no torn line");
        budget.lock().expect("test lock").0 = usize::MAX;
        publisher.publish(&event()).expect("disk grew");
        publisher.sync().expect("synced");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            format!("{0}{0}", String::from_utf8(one).expect("utf-8"))
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn a_failed_sync_cuts_back_to_the_last_synced_line() {
        let dir = scratch("sync");
        let path = dir.join("events.jsonl");
        let (mut publisher, budget) = full_disk(&path);
        publisher.publish(&event()).expect("written");
        publisher.sync().expect("synced");
        let synced = std::fs::read(&path).expect("read");
        publisher.publish(&event()).expect("written");
        budget.lock().expect("test lock").1 = true;
        let err = publisher.sync().expect_err("EIO");
        assert!(
            err.to_string().starts_with(&format!(
                "cannot make events durable in {}: ",
                path.display()
            )),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).expect("read"), synced);
        budget.lock().expect("test lock").1 = false;
        publisher.publish(&event()).expect("published again");
        publisher.sync().expect("synced");
        assert_eq!(
            std::fs::read_to_string(&path)
                .expect("read")
                .lines()
                .count(),
            2
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn a_torn_tail_is_cut_back_at_open_and_the_next_event_starts_its_own_line() {
        let dir = scratch("torn");
        let path = dir.join("events.jsonl");
        std::fs::write(&path, "{\"whole\":1}\n{\"game_id\":\"g").expect("seed");
        let mut publisher = JsonlPublisher::append(&path).expect("open");
        publisher.publish(&event()).expect("written");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], "{\"whole\":1}");
        assert!(lines[1].starts_with("{\"game_id\":\"g1\""), "{text}");
        // A file that is one torn line is emptied.
        std::fs::write(&path, "no newline at all").expect("seed");
        drop(JsonlPublisher::append(&path).expect("open"));
        assert_eq!(std::fs::read(&path).expect("read"), b"");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn a_new_events_file_is_0600_and_an_existing_one_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("mode");
        let path = dir.join("events.jsonl");
        drop(JsonlPublisher::append(&path).expect("open"));
        let mode =
            |path: &Path| std::fs::metadata(path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        let shared = dir.join("shared.jsonl");
        std::fs::write(&shared, "").expect("seed");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        drop(JsonlPublisher::append(&shared).expect("open"));
        assert_eq!(mode(&shared), 0o644);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn stdout_in_the_test_process_is_open() {
        JsonlPublisher::stdout_checked().expect("fd 1 is open under cargo test");
    }

    #[test]
    fn append_keeps_what_the_file_held() {
        let path =
            std::env::temp_dir().join(format!("healthprobe-events-{}.jsonl", std::process::id()));
        std::fs::write(&path, "earlier\n").expect("seed file");
        let mut publisher = JsonlPublisher::append(&path).expect("open");
        publisher.publish(&event()).expect("written");
        let text = std::fs::read_to_string(&path).expect("read back");
        std::fs::remove_file(&path).expect("clean up");
        assert!(text.starts_with("earlier\n{\"game_id\":\"g1\""), "{text}");
        assert_eq!(text.lines().count(), 2);
    }
}
