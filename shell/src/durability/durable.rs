//! Durable state (D5): the hysteresis state and the pending events, one
//! JSON snapshot (`{"version":2,"states":…,"pending":[{"id":…,"event":…}]}`;
//! version 1, whose pending events are bare envelopes, is read too, a file
//! of another version refused) replaced atomically: a temporary created
//! exclusively beside `FILE` (`tempfile`), fsynced, renamed over it, the
//! directory fsynced. One process per state file: a `flock` on `FILE.lock`,
//! which holds the holder's PID.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use healthprobe_core::{HealthStates, Outgoing};

use crate::codec::snapshot::{encode_snapshot_with_journal, parse_snapshot};
use crate::driver::ports::{Saved, StateError, StateStore};
use healthprobe_core::tick::Snapshot;

/// A snapshot file: `StateFile::load` at start, [`StateFile::save`] after changes.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    directory: PathBuf,
    /// `FILE.lock`, locked while `lock` is `Some`.
    lock_path: PathBuf,
    lock: Option<File>,
    /// The bytes of the last successful write; empty before the first one.
    written: Vec<u8>,
    /// Scratch buffer for the next snapshot.
    encoded: Vec<u8>,
}

impl StateFile {
    /// The state file at `path`; nothing is read or written until asked.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Self {
            path,
            directory,
            lock_path: PathBuf::from(lock_path),
            lock: None,
            written: Vec::new(),
            encoded: Vec::new(),
        }
    }

    /// Take the exclusive lock on `FILE.lock` (`0600`, never through a
    /// symlink) for as long as this handle lives, and write our PID in it;
    /// [`StateError::Locked`] names the holder while another has it.
    pub fn lock(&mut self) -> Result<(), StateError> {
        if self.lock.is_some() {
            return Ok(());
        }
        let name = || self.path.display().to_string();
        let lock_error = |source: io::Error| StateError::Lock {
            path: name(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.lock_path)
            .map_err(lock_error)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(errno) if errno == rustix::io::Errno::WOULDBLOCK => {
                let mut text = String::new();
                let holder = io::Read::read_to_string(&mut &file, &mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(StateError::Locked {
                    path: name(),
                    holder,
                });
            }
            Err(errno) => return Err(lock_error(errno.into())),
        }
        let pid = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.write_all_at(pid.as_bytes(), 0))
            .map_err(lock_error)?;
        self.lock = Some(file);
        Ok(())
    }

    /// `temporary` names the temporary file once created, for the error.
    fn write_encoded(&self, temporary: &mut Option<String>) -> io::Result<()> {
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(self.path.file_name().unwrap_or_default());
        prefix.push(".");
        let mut file = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .tempfile_in(&self.directory)?;
        *temporary = Some(file.path().display().to_string());
        // The replacement keeps the mode of the file it replaces.
        if let Ok(meta) = fs::metadata(&self.path) {
            file.as_file().set_permissions(fs::Permissions::from_mode(
                meta.permissions().mode() & 0o7777,
            ))?;
        }
        file.write_all(&self.encoded)?;
        file.as_file().sync_all()?;
        file.persist(&self.path).map_err(|err| err.error)?;
        File::open(&self.directory)?.sync_all()
    }
}

impl StateStore for StateFile {
    /// Read the snapshot; `None` when the file does not exist (a fresh start).
    fn load(&mut self) -> Result<Option<Snapshot>, StateError> {
        let name = self.path.display().to_string();
        match fs::read(&self.path) {
            Ok(bytes) => parse_snapshot(&bytes, &name).map(Some),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Read { path: name, source }),
        }
    }

    /// Write the snapshot of `states`, `pending` and the journal's
    /// committed length atomically (the lock taken first), unless it is
    /// byte-identical to the last one written.
    fn save(
        &mut self,
        states: &HealthStates,
        pending: &[Outgoing],
        journal_len: Option<u64>,
    ) -> Result<Saved, StateError> {
        self.encoded.clear();
        encode_snapshot_with_journal(&mut self.encoded, states, pending, journal_len);
        if !self.written.is_empty() && self.encoded == self.written {
            return Ok(Saved::Unchanged);
        }
        // Writing starts with the lock file: a directory where it cannot be
        // created is a write error, as the temporary file would be.
        self.lock().map_err(|err| match err {
            StateError::Lock { path, source } => StateError::Write {
                path,
                temporary: self.lock_path.display().to_string(),
                source,
            },
            other => other,
        })?;
        let mut temporary = None;
        self.write_encoded(&mut temporary)
            .map_err(|source| StateError::Write {
                path: self.path.display().to_string(),
                temporary: temporary
                    .unwrap_or_else(|| format!("a temporary file in {}", self.directory.display())),
                source,
            })?;
        std::mem::swap(&mut self.written, &mut self.encoded);
        Ok(Saved::Written)
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use healthprobe_core::{Policy, ProbeOutcome, ProbeResult, Timestamp};

    use super::*;
    use std::path::Path;

    fn failing_states() -> (HealthStates, Vec<Outgoing>) {
        let mut states = HealthStates::new(Policy::new(1, 1).expect("valid"));
        let event = states
            .apply(
                ProbeOutcome {
                    game_id: "g1".into(),
                    container_id: "c1".into(),
                    observed_at: "2026-11-28T05:00:10.5Z".parse().expect("valid"),
                    result: ProbeResult::Unhealthy {
                        status: 503,
                        error: "unexpected status 503".into(),
                    },
                }
                .as_ref(),
            )
            .expect("threshold 1 publishes");
        (states, vec![event])
    }

    fn check_error(text: &str, expected: &str) {
        match parse_snapshot(text.as_bytes(), "state.json") {
            Err(err) => assert_eq!(err.to_string(), expected, "{text}"),
            Ok(snapshot) => panic!("{text}: parsed {snapshot:?}"),
        }
    }

    #[test]
    fn d5_a_snapshot_round_trips_and_pins_its_format() {
        let (states, pending) = failing_states();
        let mut bytes = Vec::new();
        encode_snapshot_with_journal(&mut bytes, &states, &pending, None);
        assert_eq!(
            String::from_utf8(bytes.clone()).expect("utf-8"),
            concat!(
                r#"{"version":2,"states":{"policy":{"failures_threshold":1,"recovery_threshold":1},"#,
                r#""games":{"g1":{"consecutive_failures":1,"failure_published":true,"consecutive_successes":0,"#,
                r#""episode":"2026-11-28T05:00:10.5Z"}}},"#,
                r#""pending":[{"id":"1795842010500000000:probe_failed:g1","event":{"game_id":"g1","container_id":"c1","#,
                r#""event_type":"probe_failed","occurred_at":"2026-11-28T05:00:10.5Z","details":{"consecutive_failures":1,"#,
                r#""last_status":503,"last_error":"unexpected status 503"}}}]}"#,
                "\n"
            )
        );
        let snapshot = parse_snapshot(&bytes, "state.json").expect("round trip");
        assert_eq!(
            snapshot,
            Snapshot {
                states,
                pending,
                journal_len: None
            }
        );
    }

    #[test]
    fn d5_a_version_1_file_loads_with_its_episodes_and_ids_at_the_unix_epoch() {
        let v1 = concat!(
            r#"{"version":1,"states":{"policy":{"failures_threshold":1,"recovery_threshold":1},"#,
            r#""games":{"g:1":{"consecutive_failures":1,"failure_published":true,"consecutive_successes":0}}},"#,
            r#""pending":[{"game_id":"g:1","container_id":"c1","event_type":"probe_failed","#,
            r#""occurred_at":"2026-11-28T05:00:10.5Z","details":{"consecutive_failures":1,"#,
            r#""last_status":503,"last_error":"unexpected status 503"}}],"journal_len":42}"#,
        );
        let snapshot = parse_snapshot(v1.as_bytes(), "state.json").expect("version 1 loads");
        let game = snapshot.states.game("g:1").expect("restored");
        assert_eq!(game.episode(), Timestamp::UNIX_EPOCH);
        let ids: Vec<&str> = snapshot.pending.iter().map(|out| out.id.as_str()).collect();
        assert_eq!(ids, ["0:probe_failed:g:1"]);
        assert_eq!(snapshot.journal_len, Some(42));
        // Written back as version 2, it reads back the same.
        let mut bytes = Vec::new();
        encode_snapshot_with_journal(&mut bytes, &snapshot.states, &snapshot.pending, Some(42));
        assert!(bytes.starts_with(br#"{"version":2,"#));
        assert_eq!(parse_snapshot(&bytes, "state.json").expect("v2"), snapshot);
    }

    #[test]
    fn d5_bad_state_files_name_the_file_and_the_problem() {
        check_error(
            "",
            "state.json: the state file is empty (expected a version 2 snapshot)",
        );
        check_error(
            " \n",
            "state.json: the state file is empty (expected a version 2 snapshot)",
        );
        check_error(
            r#"{"version":1,"states":{"pol"#,
            "state.json:1:27: the state file is not valid JSON: EOF while parsing a string",
        );
        check_error(
            "not json",
            "state.json:1:2: the state file is not valid JSON: expected ident",
        );
        check_error(
            r#"{"version":3,"states":{}}"#,
            "state.json: the state file has version 3; this build reads versions 1 and 2 only",
        );
        check_error(
            r#"{"version":"1","states":{},"pending":[]}"#,
            r#"state.json: the state file has version "1"; this build reads versions 1 and 2 only"#,
        );
        let event = r#""event":{"game_id":"g1","container_id":"c1","event_type":"probe_recovered","occurred_at":"2026-11-28T05:00:10Z","details":{"prior_failure_count":3}}"#;
        for id in [
            "1:probe_failed:g1",
            "1:probe_recovered:g2",
            "x:probe_recovered:g1",
            "probe_recovered:g1",
        ] {
            check_error(
                &format!(
                    r#"{{"version":2,"states":{{"policy":{{"failures_threshold":3,"recovery_threshold":1}},"games":{{}}}},"pending":[{{"id":"{id}",{event}}}]}}"#
                ),
                &format!(
                    "state.json: the state file is not a valid snapshot: pending[0]: id \"{id}\" is not `{{episode_unix_ns}}:{{event_type}}:{{game_id}}` of its event"
                ),
            );
        }
        check_error(
            &format!(
                r#"{{"version":2,"states":{{"policy":{{"failures_threshold":3,"recovery_threshold":1}},"games":{{}}}},"pending":[{{{event}}}]}}"#
            ),
            "state.json: the state file is not a valid snapshot: pending[0]: missing field `id`",
        );
        check_error(
            r#"{"states":{},"pending":[]}"#,
            "state.json: the state file is not a valid snapshot: missing field `version`",
        );
        check_error(
            "[1]",
            "state.json: the state file is not a valid snapshot: expected an object with `version`, `states` and `pending`",
        );
        check_error(
            r#"{"version":1,"states":{"policy":{"failures_threshold":3,"recovery_threshold":1},"games":{"g1":{"consecutive_failures":"x","failure_published":true}}},"pending":[]}"#,
            "state.json: the state file is not a valid snapshot: states.games.g1.consecutive_failures: invalid type: string \"x\", expected u64",
        );
        check_error(
            r#"{"version":1,"states":{"policy":{"failures_threshold":3,"recovery_threshold":1},"games":{}},"pending":[{"game_id":"g1"}]}"#,
            "state.json: the state file is not a valid snapshot: pending[0]: missing field `container_id`",
        );
        check_error(
            r#"{"version":1,"states":{"policy":{"failures_threshold":3,"recovery_threshold":1},"games":{}},"pending":[],"extra":0}"#,
            "state.json: the state file is not a valid snapshot: extra: unknown field `extra`, expected one of `version`, `states`, `pending`, `journal_len`",
        );
    }

    #[test]
    fn d5_save_writes_atomically_and_skips_an_identical_snapshot() {
        let dir = std::env::temp_dir().join(format!("healthprobe-durable-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("state.json");
        let _ = fs::remove_file(&path);
        let mut file = StateFile::new(&path);
        assert_eq!(file.load().expect("missing is fine"), None);
        let (states, pending) = failing_states();
        assert_eq!(
            file.save(&states, &pending, None).expect("write"),
            Saved::Written
        );
        assert_eq!(
            file.save(&states, &pending, None).expect("same"),
            Saved::Unchanged
        );
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .filter(|name| name.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let loaded = StateFile::new(&path)
            .load()
            .expect("valid")
            .expect("exists");
        assert_eq!(loaded.pending, pending);
        assert_eq!(
            file.save(&states, &[], None).expect("write"),
            Saved::Written
        );
        let loaded = StateFile::new(&path)
            .load()
            .expect("valid")
            .expect("exists");
        assert!(loaded.pending.is_empty());
        // A fresh handle writes its first snapshot even if the file already holds it.
        drop(file);
        let mut file = StateFile::new(&path);
        assert_eq!(
            file.save(&states, &[], None).expect("write"),
            Saved::Written
        );
        fs::remove_dir_all(&dir).expect("clean up");
        let err = file
            .save(&states, &pending, None)
            .expect_err("no directory");
        assert!(
            err.to_string().starts_with(&format!(
                "{}: cannot write the state file (via ",
                path.display()
            )),
            "{err}"
        );
        assert!(!err.is_bad_contents());
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("healthprobe-durable-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn d5_a_second_handle_on_one_state_file_is_refused_until_the_first_is_dropped() {
        let dir = scratch("lock");
        let path = dir.join("state.json");
        let (states, pending) = failing_states();
        let mut first = StateFile::new(&path);
        first.save(&states, &pending, None).expect("first holder");
        let mut second = StateFile::new(&path);
        let err = second.save(&states, &[], None).expect_err("locked");
        let pid = std::process::id();
        assert!(
            matches!(err, StateError::Locked { holder: Some(holder), .. } if holder == pid),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "{0}: the state file is in use by process {pid}; one process per state file (lock file {0}.lock)",
                path.display()
            )
        );
        assert!(matches!(second.lock(), Err(StateError::Locked { .. })));
        // Refused without touching the file: it still holds the first snapshot.
        let loaded = StateFile::new(&path)
            .load()
            .expect("valid")
            .expect("exists");
        assert_eq!(loaded.pending, pending);
        drop(first);
        second.lock().expect("free after the first is dropped");
        second
            .save(&states, &[], None)
            .expect("second holder writes");
        fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn d5_symlinks_at_guessable_temporary_names_are_not_followed() {
        let dir = scratch("symlink");
        let path = dir.join("state.json");
        let victim = dir.join("victim");
        fs::write(&victim, "precious\n").expect("victim");
        for name in [
            "state.json.tmp",
            ".state.json.tmp",
            "state.json.lock.tmp",
            ".state.json.0.tmp",
        ] {
            std::os::unix::fs::symlink(&victim, dir.join(name)).expect("plant symlink");
        }
        let (states, pending) = failing_states();
        let mut file = StateFile::new(&path);
        file.save(&states, &pending, None).expect("written");
        file.save(&states, &[], None).expect("written again");
        assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious\n");
        assert!(!fs::symlink_metadata(&path).expect("stat").is_symlink());
        let loaded = StateFile::new(&path)
            .load()
            .expect("valid")
            .expect("exists");
        assert!(loaded.pending.is_empty());
        drop(file);
        // A symlink planted at the lock file is refused, not followed.
        fs::remove_file(dir.join("state.json.lock")).expect("unlock file");
        std::os::unix::fs::symlink(&victim, dir.join("state.json.lock")).expect("plant");
        let err = StateFile::new(&path)
            .lock()
            .expect_err("symlinked lock file");
        assert!(matches!(err, StateError::Lock { .. }), "{err:?}");
        assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious\n");
        fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn d5_a_new_state_file_is_0600_and_an_existing_one_keeps_its_mode() {
        let dir = scratch("mode");
        let (states, pending) = failing_states();
        let path = dir.join("state.json");
        StateFile::new(&path)
            .save(&states, &pending, None)
            .expect("written");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.join("state.json.lock")), 0o600);
        let shared = dir.join("shared.json");
        fs::write(&shared, "").expect("seed");
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o640)).expect("chmod");
        StateFile::new(&shared)
            .save(&states, &pending, None)
            .expect("written");
        assert_eq!(mode(&shared), 0o640);
        fs::remove_dir_all(&dir).expect("clean up");
    }
}
