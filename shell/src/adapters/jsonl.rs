//! Events as JSON lines: the embedded [`HealthEventPublisher`].
//!
//! Lines are byte-identical to the reference's (see [`crate::wire`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use healthprobe_core::HealthEvent;

use crate::ports::{HealthEventPublisher, PublishError};
use crate::wire::write_event_line;

/// Writes each event as one JSON line, flushed before it counts as published.
///
/// A write or flush error is a [`PublishError`]. A file is opened for
/// append, so nothing already in it is lost or truncated.
pub struct JsonlPublisher {
    out: Box<dyn Write + Send>,
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
    /// Events to standard output.
    pub fn stdout() -> Self {
        Self::new(io::stdout(), "<stdout>")
    }

    /// Events appended to the file at `path`, created if missing.
    pub fn append(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        let file: File = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self::new(file, path.display().to_string()))
    }

    /// Events to any writer; `destination` names it in errors.
    pub fn new(out: impl Write + Send + 'static, destination: impl Into<String>) -> Self {
        Self {
            out: Box::new(out),
            destination: destination.into(),
            line: Vec::with_capacity(256),
        }
    }

    /// Where the events go (`<stdout>` or a path).
    pub fn destination(&self) -> &str {
        &self.destination
    }
}

impl HealthEventPublisher for JsonlPublisher {
    fn publish(&mut self, event: &HealthEvent) -> Result<(), PublishError> {
        self.line.clear();
        write_event_line(&mut self.line, event).map_err(|source| PublishError::Write {
            destination: self.destination.clone(),
            source,
        })?;
        self.out
            .write_all(&self.line)
            .and_then(|()| self.out.flush())
            .map_err(|source| PublishError::Write {
                destination: self.destination.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use healthprobe_core::{EventDetails, Timestamp};

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

    fn event() -> HealthEvent {
        HealthEvent {
            game_id: "g1".into(),
            container_id: "c1".into(),
            occurred_at: Timestamp::from_second(1_795_842_030).expect("valid"),
            details: EventDetails::ProbeRecovered {
                prior_failure_count: 4,
            },
        }
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
