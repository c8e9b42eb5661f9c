//! A PostgreSQL table as the [`RuntimeRecordStore`] (cargo feature `postgres`).
//!
//! [`PostgresRecords`] reads the `runtime_records` table of
//! `shell/sql/runtime_records.sql` with the sync rust-postgres client, without
//! TLS.

use std::fmt;
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::thread;
use std::time::Duration;

use postgres::config::Host;
use postgres::{Client, Config, NoTls};
use tracing::warn;

use crate::ports::{ListError, RuntimeRecord, RuntimeRecordStore};
use crate::redact::Redactor;

/// The running records of a PostgreSQL table `runtime_records`, read every tick.
///
/// - **Query**: `status = 'running'` rows only, `ORDER BY game_id`.
/// - **Connection**: made lazily, at the first listing, and kept between
///   ticks. A listing that fails drops it, so the next tick reconnects: a
///   database that went away and came back is picked up again by itself.
/// - **Bounds**: every listing (connecting included) is answered within
///   [`PostgresRecords::timeout`] or fails with [`ListError::Unavailable`]:
///   the socket connect and the server's `statement_timeout` are set to it,
///   and the request runs on a helper thread the listing waits for at most
///   that long, so a database that accepts connections but never answers
///   cannot hang a tick either. At most one such unanswered request is left
///   behind: while it is, listings fail at once saying so.
/// - **NULLs**: a running row whose `current_container_id` or
///   `engine_endpoint` is NULL cannot be probed (no address) or reported
///   (no container to name). It is left out of the listing with a warning
///   naming the game and the column, every tick it stays that way; the rest
///   of the listing succeeds. Left out, it is treated like a game no longer
///   listed: its hysteresis state is pruned (R8).
/// - **Errors** name the server as `postgres://user@host:port/dbname`,
///   never with the password: [`ListError::Unavailable`]`("postgres
///   postgres://…: <reason>")`.
pub struct PostgresRecords {
    config: Config,
    server: String,
    password: Option<String>,
    timeout: Duration,
    client: Option<Client>,
    /// A request that outlived its listing's bound, still running.
    unanswered: Option<Receiver<Answer>>,
}

/// What the helper thread hands back: the client, if still usable, and the rows.
type Answer = (Option<Client>, Result<Vec<RuntimeRecord>, String>);

/// Why a PostgreSQL URL was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid PostgreSQL URL {url}: {reason}")]
pub struct InvalidUrl {
    /// The URL with any password replaced by `***`.
    pub url: String,
    /// What was wrong.
    pub reason: String,
}

impl PostgresRecords {
    /// The schema this store reads (`shell/sql/runtime_records.sql`), safe to run again.
    pub const SCHEMA_SQL: &str = include_str!("../../sql/runtime_records.sql");

    /// The query of every listing: the running rows, in game id order. The
    /// casts accept `varchar` (or `uuid`, ...) columns as well as `text`.
    pub const LIST_RUNNING_SQL: &str = "SELECT game_id::text, current_container_id::text, \
         engine_endpoint::text FROM runtime_records WHERE status = 'running' ORDER BY game_id";

    /// The bound on one listing when none is given: 5 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// Whether `text` is a PostgreSQL URL (`postgres://` or `postgresql://`).
    pub fn is_url(text: &str) -> bool {
        text.starts_with("postgres://") || text.starts_with("postgresql://")
    }

    /// The records at `url` with the [default bound](Self::DEFAULT_TIMEOUT);
    /// nothing is connected until listed.
    pub fn new(url: &str) -> Result<Self, InvalidUrl> {
        Self::with_timeout(url, Self::DEFAULT_TIMEOUT)
    }

    /// The records at `url`, each listing bounded by `timeout` (at least 1 ms).
    ///
    /// `url` is a libpq connection URL or key=value string
    /// (`postgres://user:password@host:port/dbname?options`); what the
    /// client cannot parse is refused here, naming the URL without its
    /// password. Options given in the URL are kept and the statement
    /// timeout is added to them.
    pub fn with_timeout(url: &str, timeout: Duration) -> Result<Self, InvalidUrl> {
        let timeout = timeout.max(Duration::from_millis(1));
        let mut config = Config::from_str(url).map_err(|err| {
            let redactor = Redactor::from_url(url);
            InvalidUrl {
                reason: redactor.redact(&with_causes(&err)),
                url: redactor.redact_url(url),
            }
        })?;
        let password = config
            .get_password()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
            .filter(|password| !password.is_empty());
        let statement_timeout = format!(
            "-c statement_timeout={}",
            timeout.as_millis().clamp(1, i32::MAX as u128)
        );
        let options = match config.get_options() {
            Some(options) if !options.trim().is_empty() => {
                format!("{options} {statement_timeout}")
            }
            _ => statement_timeout,
        };
        config
            .options(&options)
            .connect_timeout(timeout)
            .tcp_user_timeout(timeout);
        if config.get_application_name().is_none() {
            config.application_name("healthprobe");
        }
        let server = describe(&config);
        Ok(Self {
            config,
            server,
            password,
            timeout,
            client: None,
            unanswered: None,
        })
    }

    /// Authenticate with `password` when the URL gives none (a password
    /// file, `--records-password-file`); a password in the URL wins.
    pub fn with_default_password(mut self, password: &str) -> Self {
        if self.password.is_none() && !password.is_empty() {
            self.config.password(password);
            self.password = Some(password.to_owned());
        }
        self
    }

    /// Whether a password is set (from the URL or [`Self::with_default_password`]).
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// The server as errors name it: `postgres://user@host:port/dbname`, no password.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The bound on one listing, connecting included.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether a connection is open (made by a successful listing, dropped by a failed one).
    pub fn is_connected(&self) -> bool {
        self.client.is_some()
    }

    fn unavailable(&self, reason: &str) -> ListError {
        ListError::Unavailable(format!(
            "postgres {}: {}",
            self.server,
            redact(reason, self.password.as_deref())
        ))
    }
}

impl fmt::Debug for PostgresRecords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresRecords")
            .field("server", &self.server)
            .field("timeout", &self.timeout)
            .field("connected", &self.client.is_some())
            .field("unanswered", &self.unanswered.is_some())
            .finish_non_exhaustive()
    }
}

impl RuntimeRecordStore for PostgresRecords {
    fn list_running(&mut self) -> Result<Vec<RuntimeRecord>, ListError> {
        if let Some(unanswered) = &self.unanswered {
            match unanswered.try_recv() {
                // Late answers are dropped, client and all: the next
                // request starts on a fresh connection.
                Ok(_) | Err(TryRecvError::Disconnected) => self.unanswered = None,
                Err(TryRecvError::Empty) => {
                    return Err(self.unavailable(&format!(
                        "a request made more than {} ago is still unanswered; \
                         not sending another until it ends",
                        humantime::format_duration(self.timeout)
                    )));
                }
            }
        }
        let (sender, receiver) = mpsc::sync_channel::<Answer>(1);
        let client = self.client.take();
        let config = self.config.clone();
        let spawned = thread::Builder::new()
            .name("healthprobe-postgres".to_owned())
            .spawn(move || {
                let _ = sender.send(list_on(client, &config));
            });
        if let Err(err) = spawned {
            return Err(self.unavailable(&format!("cannot start the request thread: {err}")));
        }
        match receiver.recv_timeout(self.timeout) {
            Ok((client, Ok(records))) => {
                self.client = client;
                Ok(records)
            }
            Ok((_, Err(reason))) => Err(self.unavailable(&reason)),
            Err(RecvTimeoutError::Timeout) => {
                self.unanswered = Some(receiver);
                Err(self.unavailable(&format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                )))
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err(self.unavailable("the request thread ended without an answer"))
            }
        }
    }
}

/// Connect if needed and list; the client comes back only if it is still usable.
fn list_on(client: Option<Client>, config: &Config) -> Answer {
    let mut client = match client {
        Some(client) => client,
        None => match config.connect(NoTls) {
            Ok(client) => client,
            Err(err) => return (None, Err(error_text(&err))),
        },
    };
    match client.query(PostgresRecords::LIST_RUNNING_SQL, &[]) {
        Ok(rows) => {
            let records = rows.iter().filter_map(record_of).collect();
            (Some(client), Ok(records))
        }
        Err(err) => (None, Err(error_text(&err))),
    }
}

/// The record of one row, or `None` (logged) when a column it needs is NULL.
fn record_of(row: &postgres::Row) -> Option<RuntimeRecord> {
    let text = |index: usize| row.try_get::<_, Option<String>>(index).ok().flatten();
    let game_id = text(0)?;
    let container = text(1);
    let endpoint = text(2);
    match (container, endpoint) {
        (Some(container), Some(endpoint)) => {
            Some(RuntimeRecord::running(game_id, container, endpoint))
        }
        (container, endpoint) => {
            let null: Vec<&str> = [
                ("current_container_id", container.is_none()),
                ("engine_endpoint", endpoint.is_none()),
            ]
            .into_iter()
            .filter_map(|(column, is_null)| is_null.then_some(column))
            .collect();
            warn!(
                game_id = %game_id,
                null_columns = %null.join(", "),
                "running record with NULL {}: not probed", null.join(" and ")
            );
            None
        }
    }
}

/// The error with its causes, as the client words them.
fn error_text(err: &postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        let mut text = format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        return text;
    }
    let mut text = with_causes(err);
    if err.is_closed() && !text.contains("closed") {
        text.push_str(" (connection closed)");
    }
    text
}

/// `err: cause: cause's cause…`: the client keeps the reason in its sources.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `postgres://user@host:port/dbname`, from what the client will use.
fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let name = match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]"),
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            let port = config
                .get_ports()
                .get(index)
                .or_else(|| config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            format!("{name}:{port}")
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_owned()
    } else {
        hosts.join(",")
    };
    let user = config
        .get_user()
        .map(|user| format!("{user}@"))
        .unwrap_or_default();
    let dbname = config.get_dbname().unwrap_or_default();
    format!("postgres://{user}{hosts}/{dbname}")
}

/// `url` with its password (however given) replaced by `***`: see [`crate::redact`].
///
/// Works on text the client could not parse, too.
pub fn redact_url(url: &str) -> String {
    crate::redact::redact_url(url)
}

/// `text` with every occurrence of `password` replaced by `***`.
fn redact(text: &str, password: Option<&str>) -> String {
    let mut redactor = Redactor::default();
    if let Some(password) = password {
        redactor.add(password);
    }
    redactor.redact(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_recognised_by_scheme() {
        assert!(PostgresRecords::is_url("postgres://h/db"));
        assert!(PostgresRecords::is_url("postgresql://h/db"));
        assert!(!PostgresRecords::is_url("records.json"));
        assert!(!PostgresRecords::is_url("/srv/postgres://x"));
    }

    #[test]
    fn the_server_is_named_without_the_password() {
        let store =
            PostgresRecords::new("postgres://alice:s3cret@db.example:6543/fleet").expect("valid");
        assert_eq!(store.server(), "postgres://alice@db.example:6543/fleet");
        assert!(!format!("{store:?}").contains("s3cret"));
        assert_eq!(store.timeout(), PostgresRecords::DEFAULT_TIMEOUT);
        assert!(!store.is_connected());
        let store = PostgresRecords::new("postgresql://127.0.0.1/fleet").expect("valid");
        assert_eq!(store.server(), "postgres://127.0.0.1:5432/fleet");
    }

    #[test]
    fn urls_are_redacted_even_when_malformed() {
        assert_eq!(
            redact_url("postgres://alice:s3cret@h:5432/db"),
            "postgres://alice:***@h:5432/db"
        );
        assert_eq!(
            redact_url("postgres://alice:p@ss@h/db"),
            "postgres://alice:***@h/db"
        );
        assert_eq!(redact_url("postgres://alice@h/db"), "postgres://alice@h/db");
        assert_eq!(redact_url("postgres://h:5432/db"), "postgres://h:5432/db");
        assert_eq!(redact_url("postgres://h/db?x=a@b"), "postgres://h/db?x=a@b");
    }

    #[test]
    fn hostile_urls_never_show_the_password_in_the_error() {
        let hostile = [
            "postgres://h:5432/db?password=s3cret&port=x",
            "postgres://h/db?sslmode=nope&password=s3cret",
            "postgres://h/db?password=s3cret&connect_timeout=x",
            "postgres://alice:s3cret@h:x/db",
            "postgres://alice:s3c@ret@h:x/db",
            "postgres://alice:s3cret/db:x",
            "postgres://alice:s3cret/db?port=x",
            "postgres://alice:%73%33cret@h:x/db",
            "postgres://alice:s3cret@[::1/db",
            "postgres://alice:s3cret@h/db?unterminated",
            "postgresql://alice:s3cret@h:1:2/db",
            "host=h password=s3cret port=x",
            "host=h password='s3cret' port=x",
            "host=h password = s3cret port=x",
            "host=h password='s3cret",
            "host=h password s3cret",
            "password=s3cret nonsense",
        ];
        for url in hostile {
            let err = PostgresRecords::new(url).expect_err(url);
            let text = err.to_string();
            assert!(text.starts_with("invalid PostgreSQL URL "), "{url}: {text}");
            assert!(!text.contains("s3cret"), "{url}: {text}");
            assert!(!format!("{err:?}").contains("s3cret"), "{url}: {err:?}");
        }
    }

    #[test]
    fn a_default_password_is_used_only_when_the_url_has_none() {
        let store = PostgresRecords::new("postgres://alice@h/db")
            .expect("valid")
            .with_default_password("fr0m-file");
        assert!(store.has_password());
        assert_eq!(store.config.get_password(), Some(&b"fr0m-file"[..]));
        assert!(!format!("{store:?}").contains("fr0m-file"));
        let store = PostgresRecords::new("postgres://alice:in-url@h/db")
            .expect("valid")
            .with_default_password("fr0m-file");
        assert_eq!(store.config.get_password(), Some(&b"in-url"[..]));
        let store = PostgresRecords::new("postgres://alice@h/db").expect("valid");
        assert!(!store.has_password());
    }

    #[test]
    fn a_bad_url_is_refused_naming_it_without_the_password() {
        let err = PostgresRecords::new("postgres://alice:s3cret@h:notaport/db")
            .expect_err("a port must be a number");
        let text = err.to_string();
        assert!(
            text.starts_with("invalid PostgreSQL URL postgres://alice:***@h:notaport/db: "),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn errors_replace_the_password_wherever_it_appears() {
        assert_eq!(
            redact("auth for s3cret failed", Some("s3cret")),
            "auth for *** failed"
        );
        assert_eq!(redact("nothing", None), "nothing");
        assert_eq!(redact("nothing", Some("")), "nothing");
    }

    #[test]
    fn the_statement_timeout_is_added_to_the_urls_options() {
        let store = PostgresRecords::with_timeout(
            "postgres://h/db?options=-c%20search_path%3Dapp",
            Duration::from_millis(1500),
        )
        .expect("valid");
        assert_eq!(
            store.config.get_options(),
            Some("-c search_path=app -c statement_timeout=1500")
        );
        assert_eq!(
            store.config.get_connect_timeout(),
            Some(&Duration::from_millis(1500))
        );
    }

    #[test]
    fn an_unreachable_server_is_unavailable_and_names_it() {
        // A port just freed on loopback: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut store = PostgresRecords::with_timeout(
            &format!("postgres://alice:s3cret@127.0.0.1:{port}/db"),
            Duration::from_secs(5),
        )
        .expect("valid");
        match store.list_running() {
            Err(ListError::Unavailable(text)) => {
                assert!(
                    text.starts_with(&format!("postgres postgres://alice@127.0.0.1:{port}/db: ")),
                    "{text}"
                );
                assert!(!text.contains("s3cret"), "{text}");
                assert!(text.contains("refused"), "the reason is given: {text}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!store.is_connected());
    }

    #[test]
    fn a_server_that_never_answers_fails_the_listing_within_the_bound() {
        // Connections complete in the listener's backlog and are never answered.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = silent.local_addr().expect("address").port();
        let mut store = PostgresRecords::with_timeout(
            &format!("postgres://alice@127.0.0.1:{port}/db"),
            Duration::from_millis(200),
        )
        .expect("valid");
        let started = std::time::Instant::now();
        let err = store.list_running().expect_err("no answer");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert!(
            err.to_string().ends_with(": no answer within 200ms"),
            "{err}"
        );
        // The stuck request is not doubled: the next listing fails at once.
        let started = std::time::Instant::now();
        let err = store.list_running().expect_err("still unanswered");
        assert!(
            started.elapsed() < Duration::from_millis(150),
            "{:?}",
            started.elapsed()
        );
        assert!(err.to_string().contains("still unanswered"), "{err}");
        // Once the server goes away the stuck request ends, and the next
        // listing tries again (and fails on the closed port).
        drop(silent);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let err = store.list_running().expect_err("nothing listens");
            if !err.to_string().contains("still unanswered") {
                assert!(!err.to_string().contains("no answer within"), "{err}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "still stuck: {err}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
