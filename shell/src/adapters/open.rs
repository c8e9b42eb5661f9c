//! Opening what `--records` and `--events` name, for [`crate::run()`].
//! Every error ([`OpenError`]) names its flag and never shows a password;
//! a URL whose cargo feature is off is refused naming the feature.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

#[cfg(feature = "redis")]
use tracing::{info, warn};

use crate::adapters::{JsonlPublisher, RecordsFile};
use crate::driver::ports::{HealthEventPublisher, RuntimeRecordStore};
use crate::tls::TlsClient;

/// How [`open_records`] opens a store.
#[derive(Debug, Clone, Default)]
pub(crate) struct RecordsOptions {
    /// `--records-password-file`: its first line is the password when the URL has none.
    pub(crate) password_file: Option<PathBuf>,
    /// The trust a PostgreSQL certificate is checked against (the probes').
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) tls: TlsClient,
}

/// How [`open_events`] opens a publisher.
#[derive(Debug, Clone, Default)]
pub(crate) struct EventsOptions {
    /// `--redis-maxlen` (`XADD MAXLEN ~ N`; 0 never trims); Redis only.
    pub(crate) redis_maxlen: Option<u64>,
    /// `--events-password-file`: its first line is the password when the URL has none.
    pub(crate) password_file: Option<PathBuf>,
    /// The trust a `rediss://` certificate is checked against (the probes').
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) tls: TlsClient,
}

/// Why `open_records` or `open_events` could not open what it was given:
/// one line that names the flag and never shows a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The setting itself is wrong (exit 2): an unusable URL, one whose
    /// cargo feature is off, a password file unused or unreadable,
    /// `--events -` with standard output closed (`run >&-`: refused before
    /// the first probe rather than counting events delivered to nowhere).
    #[error("{0}")]
    BadInput(String),
    /// What it names cannot be opened now (exit 1): the events file, the publisher.
    #[error("{0}")]
    Unavailable(String),
}

impl OpenError {
    /// Whether the setting itself is wrong (exit 2), rather than what it
    /// names cannot be opened now (exit 1).
    pub(crate) fn is_bad_input(&self) -> bool {
        matches!(self, Self::BadInput(_))
    }
}

/// The store `spec` names: a `postgres://` or `postgresql://` URL, else a
/// records file. Nothing is read or connected yet.
pub(crate) fn open_records(
    spec: impl AsRef<OsStr>,
    options: &RecordsOptions,
) -> Result<Box<dyn RuntimeRecordStore>, OpenError> {
    let spec = spec.as_ref();
    if let Some(url) = spec.to_str().filter(|text| is_postgres_url(text)) {
        return open_postgres(url, options);
    }
    if options.password_file.is_some() {
        return Err(unused(
            RECORDS_PASSWORD_FILE,
            "a postgres:// URL in --records",
        ));
    }
    Ok(Box::new(RecordsFile::new(spec)))
}

/// The publisher `spec` names: `-` (standard output), a `redis://` or
/// `rediss://` URL (pinged: no answer yet is only a warning), else a file.
pub(crate) fn open_events(
    spec: impl AsRef<OsStr>,
    options: &EventsOptions,
) -> Result<Box<dyn HealthEventPublisher>, OpenError> {
    let spec = spec.as_ref();
    if let Some(url) = spec.to_str().filter(|text| is_redis_url(text)) {
        return open_redis(url, options);
    }
    if options.redis_maxlen.is_some() {
        return Err(OpenError::BadInput(
            "invalid setting: --redis-maxlen needs --events redis://HOST[:PORT]/STREAM".into(),
        ));
    }
    if options.password_file.is_some() {
        return Err(unused(EVENTS_PASSWORD_FILE, "a redis:// URL in --events"));
    }
    if spec == "-" {
        return match JsonlPublisher::stdout_checked() {
            Ok(publisher) => Ok(Box::new(publisher)),
            Err(err) => Err(OpenError::BadInput(format!(
                "--events -: {err}; give --events FILE, or run with an open standard output"
            ))),
        };
    }
    match JsonlPublisher::append(spec) {
        Ok(publisher) => Ok(Box::new(publisher)),
        Err(err) => Err(OpenError::Unavailable(format!(
            "{}: cannot open events file: {err}",
            Path::new(spec).display()
        ))),
    }
}

const RECORDS_PASSWORD_FILE: &str = "--records-password-file";
const EVENTS_PASSWORD_FILE: &str = "--events-password-file";

fn unused(flag: &str, needs: &str) -> OpenError {
    OpenError::BadInput(format!("invalid setting: {flag} is only used with {needs}"))
}

#[cfg(not(all(feature = "postgres", feature = "redis")))]
fn feature_off(flag: &str, what: &str, feature: &str) -> OpenError {
    OpenError::BadInput(format!(
        "{flag}: {what} needs the `{feature}` feature, which this build of healthprobe-shell \
         leaves out (its default features were turned off): build it with its default \
         features, or add `--features {feature}`"
    ))
}

pub(crate) fn is_redis_url(text: &str) -> bool {
    text.starts_with("redis://") || text.starts_with("rediss://")
}

fn is_postgres_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// The first line of `path` (without its line ending), at most 64 KiB read.
fn read_password(flag: &str, path: &Path) -> Result<String, OpenError> {
    let error = |reason: &dyn std::fmt::Display| {
        let path = path.display();
        OpenError::BadInput(format!("{flag} {path}: cannot read the password: {reason}"))
    };
    let file = std::fs::File::open(path).map_err(|err| error(&err))?;
    let mut line = Vec::new();
    BufReader::new(file.take(64 * 1024))
        .read_until(b'\n', &mut line)
        .map_err(|err| error(&err))?;
    let line = line
        .strip_suffix(b"\n")
        .map_or(&line[..], |line| line.strip_suffix(b"\r").unwrap_or(line));
    let password =
        String::from_utf8(line.to_vec()).map_err(|_| error(&"the first line is not UTF-8"))?;
    if password.is_empty() {
        return Err(error(&"the first line is empty"));
    }
    Ok(password)
}

#[cfg(feature = "postgres")]
fn open_postgres(
    url: &str,
    options: &RecordsOptions,
) -> Result<Box<dyn RuntimeRecordStore>, OpenError> {
    let timeout = crate::adapters::PostgresRecords::DEFAULT_TIMEOUT;
    let password_file = options.password_file.as_deref();
    let table = open_postgres_connection("--records", url, password_file, &options.tls, timeout)?;
    Ok(Box::new(table))
}

/// The PostgreSQL connection `flag` names (`--records`, `--ha`), its
/// password from `password_file` when the URL has none, every request
/// bounded by `timeout`. Nothing is connected yet.
#[cfg(feature = "postgres")]
pub(crate) fn open_postgres_connection(
    flag: &str,
    url: &str,
    password_file: Option<&Path>,
    tls: &TlsClient,
    timeout: std::time::Duration,
) -> Result<crate::adapters::PostgresRecords, OpenError> {
    use crate::adapters::PostgresRecords;
    let mut table = PostgresRecords::with_timeout(url, timeout)
        .map_err(|err| OpenError::BadInput(format!("{flag}: {err}")))?
        .with_tls(tls.clone());
    if let Some(path) = password_file {
        let password = read_password(&format!("{flag}-password-file"), path)?;
        if table.has_password() {
            tracing::warn!("{flag} has a password in its URL: {flag}-password-file is not used");
        } else {
            table = table.with_default_password(&password);
        }
    }
    Ok(table)
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(
    _url: &str,
    options: &RecordsOptions,
) -> Result<Box<dyn RuntimeRecordStore>, OpenError> {
    // Still say when the password file is wrong, so one rebuild is enough.
    if let Some(path) = &options.password_file {
        read_password(RECORDS_PASSWORD_FILE, path)?;
    }
    Err(feature_off("--records", "a PostgreSQL URL", "postgres"))
}

#[cfg(feature = "redis")]
fn open_redis(
    url: &str,
    options: &EventsOptions,
) -> Result<Box<dyn HealthEventPublisher>, OpenError> {
    use crate::adapters::{RedisStreamPublisher, RedisTarget};
    let password = match &options.password_file {
        Some(path) => Some(read_password(EVENTS_PASSWORD_FILE, path)?),
        None => None,
    };
    let target = RedisTarget::parse_with_default_password(url, password.as_deref())
        .map_err(|err| OpenError::BadInput(format!("--events: {err}")))?;
    if password.is_some() && target.password != password {
        warn!("--events has a password in its URL: {EVENTS_PASSWORD_FILE} is not used");
    }
    let maxlen = options
        .redis_maxlen
        .unwrap_or(RedisStreamPublisher::DEFAULT_MAXLEN);
    let mut publisher = RedisStreamPublisher::new(target, maxlen, &options.tls)
        .map_err(|err| OpenError::Unavailable(err.to_string()))?;
    match publisher.ping() {
        Ok(()) => info!(
            destination = publisher.destination(),
            maxlen, "publishing events to a Redis stream"
        ),
        Err(err) => {
            warn!(error = %err, "Redis does not answer yet; events stay pending and are retried every tick")
        }
    }
    Ok(Box::new(publisher))
}

#[cfg(not(feature = "redis"))]
fn open_redis(
    _url: &str,
    options: &EventsOptions,
) -> Result<Box<dyn HealthEventPublisher>, OpenError> {
    if let Some(path) = &options.password_file {
        read_password(EVENTS_PASSWORD_FILE, path)?;
    }
    Err(feature_off("--events", "a Redis URL", "redis"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("healthprobe-open-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn records_that_are_not_a_postgres_url_are_a_file() {
        use std::os::unix::ffi::OsStrExt;
        let not_utf8 = OsStr::from_bytes(b"rec\xffords.json");
        let with_password = RecordsOptions {
            password_file: Some("pw".into()),
            ..RecordsOptions::default()
        };
        for path in ["records.json", "/srv/postgres://x", "postgres.json"].map(OsStr::new) {
            for path in [path, not_utf8] {
                open_records(path, &RecordsOptions::default()).expect("a file store");
                let err = open_records(path, &with_password).err().expect("a file");
                assert!(err.is_bad_input(), "{err}");
                assert!(
                    err.to_string()
                        .ends_with("is only used with a postgres:// URL in --records")
                );
            }
        }
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn a_postgres_url_selects_the_table_and_a_bad_one_is_refused_masked() {
        open_records(
            "postgresql://alice:pw1234@db/fleet",
            &RecordsOptions::default(),
        )
        .expect("a table store");
        let err = open_records(
            "postgres://alice:pw1234@db:x/fleet",
            &RecordsOptions::default(),
        )
        .err()
        .expect("a bad port");
        assert!(err.is_bad_input());
        let text = err.to_string();
        // It does not parse: only its scheme is shown.
        assert_eq!(
            text,
            "--records: invalid PostgreSQL URL postgres://…: invalid port number"
        );
    }

    #[cfg(not(feature = "postgres"))]
    #[test]
    fn a_postgres_url_without_the_feature_is_refused_naming_the_feature() {
        for url in ["postgres://alice:pw1234@db/fleet", "postgresql://db/fleet"] {
            let err = open_records(url, &RecordsOptions::default())
                .err()
                .expect("no postgres feature");
            assert!(err.is_bad_input());
            let text = err.to_string();
            assert!(
                text.starts_with("--records: a PostgreSQL URL needs"),
                "{text}"
            );
            assert!(
                text.contains("default features, or add `--features postgres`"),
                "{text}"
            );
            assert!(
                !text.contains("pw1234") && !text.contains("db/fleet"),
                "{text}"
            );
        }
    }

    #[cfg(not(feature = "redis"))]
    #[test]
    fn a_redis_url_without_the_feature_is_refused_naming_the_feature() {
        let err = open_events("redis://:pw1234@h/s", &EventsOptions::default())
            .err()
            .expect("no redis feature");
        assert!(err.is_bad_input());
        let text = err.to_string();
        assert!(
            text.contains("default features, or add `--features redis`"),
            "{text}"
        );
        assert!(!text.contains("pw1234") && !text.contains("h/s"), "{text}");
    }

    #[test]
    fn redis_maxlen_and_password_files_need_their_destination() {
        let options = EventsOptions {
            redis_maxlen: Some(10),
            ..EventsOptions::default()
        };
        for spec in ["-", "events.jsonl"] {
            let err = open_events(spec, &options)
                .err()
                .expect("maxlen needs redis");
            assert!(err.is_bad_input());
            assert_eq!(
                err.to_string(),
                "invalid setting: --redis-maxlen needs --events redis://HOST[:PORT]/STREAM"
            );
        }
        let options = EventsOptions {
            password_file: Some("pw".into()),
            ..EventsOptions::default()
        };
        let err = open_events("-", &options)
            .err()
            .expect("unused password file");
        assert!(err.is_bad_input());
        assert_eq!(
            err.to_string(),
            "invalid setting: --events-password-file is only used with a redis:// URL in --events"
        );
        let options = RecordsOptions {
            password_file: Some("pw".into()),
            ..RecordsOptions::default()
        };
        let err = open_records("records.json", &options)
            .err()
            .expect("unused");
        assert!(err.is_bad_input());
        assert!(
            err.to_string()
                .contains("--records-password-file is only used with")
        );
    }

    #[test]
    fn an_events_file_that_cannot_be_opened_is_not_bad_input() {
        let dir = scratch("events");
        let err = open_events(&dir, &EventsOptions::default())
            .err()
            .expect("a directory");
        assert!(!err.is_bad_input());
        assert!(
            err.to_string()
                .starts_with(&format!("{}: cannot open events file: ", dir.display())),
            "{err}"
        );
        let file = dir.join("events.jsonl");
        open_events(&file, &EventsOptions::default()).expect("a new file");
        assert!(file.exists());
    }

    #[test]
    fn a_password_file_gives_its_first_line_and_names_the_file_when_unusable() {
        let dir = scratch("password");
        let good = dir.join("good");
        std::fs::write(&good, "s3cret-line\r\nsecond line\n").expect("write");
        assert_eq!(
            read_password("--x", &good).expect("readable"),
            "s3cret-line"
        );
        std::fs::write(&good, "no-newline").expect("write");
        assert_eq!(read_password("--x", &good).expect("readable"), "no-newline");

        let missing = dir.join("missing");
        let err = read_password("--records-password-file", &missing).expect_err("missing");
        assert!(err.is_bad_input());
        assert_eq!(
            err.to_string(),
            format!(
                "--records-password-file {}: cannot read the password: No such file or directory (os error 2)",
                missing.display()
            )
        );
        let empty = dir.join("empty");
        std::fs::write(&empty, "\nsecond\n").expect("write");
        let err = read_password("--x", &empty).expect_err("empty first line");
        assert!(
            err.to_string().ends_with("the first line is empty"),
            "{err}"
        );
        assert!(!err.to_string().contains("second"), "{err}");
        let err = read_password("--x", &dir).expect_err("a directory");
        assert!(
            err.to_string().contains(&dir.display().to_string()),
            "{err}"
        );
    }

    #[cfg(not(feature = "postgres"))]
    #[test]
    fn a_bad_password_file_is_named_even_without_the_feature() {
        let options = RecordsOptions {
            password_file: Some("/nonexistent/healthprobe-pw".into()),
            ..RecordsOptions::default()
        };
        let err = open_records("postgres://db/fleet", &options)
            .err()
            .expect("missing file");
        assert!(
            err.to_string().contains("/nonexistent/healthprobe-pw"),
            "{err}"
        );
    }
}
