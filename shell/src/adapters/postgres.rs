//! A PostgreSQL table as the [`RuntimeRecordStore`] (cargo feature
//! `postgres`): the sync rust-postgres client, TLS through
//! tokio-postgres-rustls with the trust of [`TlsClient`].

use std::fmt;
use std::str::FromStr;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use postgres::config::{Host, SslMode as ClientSslMode};
use postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::warn;
use url::{Url, form_urlencoded};

use crate::adapters::redact::{self, InvalidUrl, hide};
use crate::driver::ports::{ListError, RuntimeRecord, RuntimeRecordStore};
use crate::tls::{ServerVerification, TLS_ERROR_PREFIX, TlsClient, database_tls_failure};

/// The running records of a PostgreSQL table `runtime_records`, read every
/// tick over a connection made lazily and dropped by a failed listing.
///
/// Every listing, connecting included, is answered within the timeout: the
/// request runs on a helper thread waited for at most that long (a server
/// that accepts but never answers cannot hang a tick), and at most one
/// unanswered request is left behind. A running row with a NULL column is
/// left out with a warning. Errors name the server without its password.
pub struct PostgresRecords {
    config: Config,
    server: String,
    password: Option<String>,
    ssl_mode: SslMode,
    tls: TlsClient,
    timeout: Duration,
    client: Option<Client>,
    /// A request that outlived its bound, still running.
    unanswered: Option<thread::JoinHandle<()>>,
}

/// An `sslmode` of a PostgreSQL URL, as libpq's (`allow` aside; no
/// `sslrootcert`: trust is the system store plus `--ca-file`): its name,
/// what rust-postgres (which knows `disable`, `prefer` and `require` only)
/// is told, and the certificate check when TLS is used. `prefer`, the
/// default, connects without TLS when the server does not offer it or (as
/// libpq) the handshake fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SslMode(&'static str, ClientSslMode, Option<ServerVerification>);

const SSL_MODES: [SslMode; 5] = {
    use ClientSslMode::{Disable, Prefer, Require};
    use ServerVerification::{Chain, EncryptOnly, Full};
    [
        SslMode("disable", Disable, None),
        SslMode("prefer", Prefer, Some(EncryptOnly)),
        SslMode("require", Require, Some(EncryptOnly)),
        SslMode("verify-ca", Require, Some(Chain)),
        SslMode("verify-full", Require, Some(Full)),
    ]
};

impl PostgresRecords {
    /// The schema this store reads (`shell/sql/runtime_records.sql`), safe to run again.
    pub const SCHEMA_SQL: &str = include_str!("../../sql/runtime_records.sql");

    /// The query of every listing: the running rows, in game id order. The
    /// casts accept `varchar` (or `uuid`, ...) columns as well as `text`.
    pub(crate) const LIST_RUNNING_SQL: &str = "SELECT game_id::text, current_container_id::text, \
         engine_endpoint::text FROM runtime_records WHERE status = 'running' ORDER BY game_id";

    /// The bound on one listing when none is given: 5 s.
    pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// The records at `url` with the default bound (5 s);
    /// nothing is connected until listed.
    pub fn new(url: &str) -> Result<Self, InvalidUrl> {
        Self::with_timeout(url, Self::DEFAULT_TIMEOUT)
    }

    /// The records at the libpq URL `url`, each listing bounded by `timeout`
    /// (at least 1 ms; also the connect and statement timeouts). Its
    /// `sslmode` is read here, the rest by the client.
    pub fn with_timeout(url: &str, timeout: Duration) -> Result<Self, InvalidUrl> {
        let timeout = timeout.max(Duration::from_millis(1));
        let mut url = redact::parse("PostgreSQL", url)?;
        let given = url.clone();
        let password = password_of(&url);
        let invalid =
            |reason: &str| InvalidUrl::new("PostgreSQL", &given, reason, password.as_deref());
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(invalid("expected postgres:// or postgresql://"));
        }
        let ssl_mode = take_ssl_mode(&mut url).map_err(|reason| invalid(&reason))?;
        let mut config =
            Config::from_str(url.as_str()).map_err(|err| invalid(&with_causes(&err)))?;
        let ssl_mode = ssl_mode.unwrap_or(SSL_MODES[1]); // `prefer`, as libpq
        config.ssl_mode(ssl_mode.1);
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
            ssl_mode,
            tls: TlsClient::system(),
            timeout,
            client: None,
            unanswered: None,
        })
    }

    /// Check the server's certificate against the trust of `tls` rather
    /// than the system store alone.
    pub fn with_tls(mut self, tls: TlsClient) -> Self {
        self.tls = tls;
        self
    }

    /// Authenticate with `password` when the URL gives none (a password
    /// file, `--records-password-file`); a password in the URL wins.
    pub(crate) fn with_default_password(mut self, password: &str) -> Self {
        if self.password.is_none() && !password.is_empty() {
            self.config.password(password);
            self.password = Some(password.to_owned());
        }
        self
    }

    /// Whether a password is set (from the URL or [`Self::with_default_password`]).
    pub(crate) fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// Whether a connection is open (made by a successful listing, dropped by a failed one).
    pub fn is_connected(&self) -> bool {
        self.client.is_some()
    }

    fn unavailable(&self, reason: &str) -> String {
        format!(
            "postgres {}: {}",
            self.server,
            hide(reason, self.password.as_deref())
        )
    }
}

impl fmt::Debug for PostgresRecords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresRecords")
            .field("server", &self.server)
            .field("ssl_mode", &self.ssl_mode)
            .field("timeout", &self.timeout)
            .field("connected", &self.client.is_some())
            .field("unanswered", &self.unanswered.is_some())
            .finish_non_exhaustive()
    }
}

impl RuntimeRecordStore for PostgresRecords {
    fn list_running(&mut self) -> Result<Vec<RuntimeRecord>, ListError> {
        self.request(|client| {
            let rows = client
                .query(PostgresRecords::LIST_RUNNING_SQL, &[])
                .map_err(|err| error_text(&err))?;
            Ok(rows.iter().filter_map(record_of).collect())
        })
        .map_err(ListError::Unavailable)
    }
}

impl PostgresRecords {
    /// Run `work` on the connection (made first if there is none) within
    /// the timeout: on a helper thread waited for at most that long, so a
    /// server that accepts but never answers cannot hang the caller; at
    /// most one unanswered request is left behind. A failed request drops
    /// the connection (the next makes a new one). The error names the
    /// server, never the password.
    pub(crate) fn request<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut Client) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        if let Some(unanswered) = &self.unanswered {
            // Late answers are dropped, client and all.
            if !unanswered.is_finished() {
                return Err(self.unavailable(&format!(
                    "a request made more than {} ago is still unanswered; \
                     not sending another until it ends",
                    humantime::format_duration(self.timeout)
                )));
            }
            self.unanswered = None;
        }
        let (sender, receiver) = mpsc::sync_channel(1);
        let client = self.client.take();
        let connect = Connect {
            config: self.config.clone(),
            ssl_mode: self.ssl_mode,
            tls: self.tls.clone(),
        };
        let spawned = thread::Builder::new()
            .name("healthprobe-postgres".to_owned())
            .spawn(move || {
                let mut client = match client.map_or_else(|| connect.connect(), Ok) {
                    Ok(client) => client,
                    Err(reason) => return drop(sender.send((None, Err(reason)))),
                };
                let answer = match work(&mut client) {
                    Ok(value) => (Some(client), Ok(value)),
                    Err(reason) => (None, Err(reason)),
                };
                let _ = sender.send(answer);
            });
        let thread = match spawned {
            Ok(thread) => thread,
            Err(err) => {
                return Err(self.unavailable(&format!("cannot start the request thread: {err}")));
            }
        };
        match receiver.recv_timeout(self.timeout) {
            Ok((client, Ok(value))) => {
                self.client = client;
                Ok(value)
            }
            Ok((_, Err(reason))) => Err(self.unavailable(&reason)),
            Err(RecvTimeoutError::Timeout) => {
                self.unanswered = Some(thread);
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

/// What a new connection needs.
struct Connect {
    config: Config,
    ssl_mode: SslMode,
    tls: TlsClient,
}

impl Connect {
    /// A new connection, over TLS as the mode says.
    fn connect(&self) -> Result<Client, String> {
        let Some(verification) = self.ssl_mode.2 else {
            return self.config.connect(NoTls).map_err(|err| error_text(&err));
        };
        let tls = MakeRustlsConnect::new((*self.tls.database_config(verification)).clone());
        match self.config.connect(tls) {
            Ok(client) => Ok(client),
            Err(err) => {
                let failure = self.tls_failure(&err);
                match (failure, self.ssl_mode.1) {
                    // libpq's `prefer` tries again without TLS when the handshake fails.
                    (Some(failure), ClientSslMode::Prefer) => {
                        warn!(
                            reason = %failure,
                            "PostgreSQL: the TLS handshake failed; connecting without TLS, \
                             as sslmode=prefer allows"
                        );
                        self.config.connect(NoTls).map_err(|err| error_text(&err))
                    }
                    (Some(failure), _) => Err(format!("{failure} (sslmode={})", self.ssl_mode.0)),
                    (None, _) => Err(error_text(&err)),
                }
            }
        }
    }

    /// The words for a TLS failure of `err`, if it is one.
    fn tls_failure(&self, err: &postgres::Error) -> Option<String> {
        let host = self.config.get_hosts().iter().find_map(|host| match host {
            Host::Tcp(name) => Some(name.as_str()),
            Host::Unix(_) => None,
        });
        if let Some(text) = database_tls_failure(err, host) {
            return Some(text);
        }
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            if cause.to_string() == "server does not support TLS" {
                return Some(format!(
                    "{TLS_ERROR_PREFIX}the server does not accept TLS connections (ssl = off?)"
                ));
            }
            source = cause.source();
        }
        None
    }
}

/// The record of one row, or `None` (logged) when a column it needs is NULL.
fn record_of(row: &postgres::Row) -> Option<RuntimeRecord> {
    let text = |index: usize| row.try_get::<_, Option<String>>(index).ok().flatten();
    let game_id = text(0)?;
    if let (Some(container), Some(endpoint)) = (text(1), text(2)) {
        return Some(RuntimeRecord::running(game_id, container, endpoint));
    }
    let null: Vec<&str> = [(1, "current_container_id"), (2, "engine_endpoint")]
        .into_iter()
        .filter_map(|(index, column)| text(index).is_none().then_some(column))
        .collect();
    warn!(
        game_id = %game_id,
        null_columns = %null.join(", "),
        "running record with NULL {}: not probed", null.join(" and ")
    );
    None
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

/// The `sslmode` the URL asks for (the last one given), taken out of `url`
/// (the client knows fewer modes); the other parameters are left as given.
fn take_ssl_mode(url: &mut Url) -> Result<Option<SslMode>, String> {
    let Some(query) = url.query() else {
        return Ok(None);
    };
    let mut mode = None;
    let mut kept = Vec::new();
    for param in query.split('&') {
        match form_urlencoded::parse(param.as_bytes()).next() {
            Some((key, value)) if key == "sslmode" => {
                let known = SSL_MODES.into_iter().find(|mode| mode.0 == value);
                mode = Some(known.ok_or_else(|| {
                    format!(
                        "sslmode `{value}` is not supported: use disable, prefer, require, \
                         verify-ca or verify-full"
                    )
                })?);
            }
            _ => kept.push(param),
        }
    }
    let kept = kept.join("&");
    url.set_query((!kept.is_empty()).then_some(kept.as_str()));
    Ok(mode)
}

/// The password `url` gives the client, decoded: its userinfo's, or a
/// `password` parameter's.
fn password_of(url: &Url) -> Option<String> {
    match url.password() {
        Some(password) => Some(
            percent_decode_str(password)
                .decode_utf8_lossy()
                .into_owned(),
        ),
        None => url
            .query_pairs()
            .filter(|(key, _)| key == "password")
            .last()
            .map(|(_, value)| value.into_owned()),
    }
}

/// `postgres://user@host:port/dbname`, from what the client will use.
fn describe(config: &Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = (config.get_hosts().iter().enumerate())
        .map(|(index, host)| {
            let port = ports.get(index).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
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
    format!(
        "postgres://{user}{hosts}/{}",
        config.get_dbname().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_is_named_without_the_password() {
        let store =
            PostgresRecords::new("postgres://alice:s3cret@db.example:6543/fleet").expect("valid");
        assert_eq!(store.server, "postgres://alice@db.example:6543/fleet");
        assert!(!format!("{store:?}").contains("s3cret"));
        assert_eq!(store.timeout, PostgresRecords::DEFAULT_TIMEOUT);
        assert!(!store.is_connected());
        let store = PostgresRecords::new("postgresql://127.0.0.1/fleet").expect("valid");
        assert_eq!(store.server, "postgres://127.0.0.1:5432/fleet");
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
            "http://alice:s3cret@h/db",
            // A key=value string is not a URL: refused.
            "host=h password=s3cret",
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
        // It does not parse: only its scheme is shown.
        assert_eq!(
            err.to_string(),
            "invalid PostgreSQL URL postgres://…: invalid port number"
        );
        // It parses, but the client refuses a parameter: shown without the password.
        let err = PostgresRecords::new("postgres://alice:s3cret@h/db?connect_timeout=x")
            .expect_err("a timeout must be a number");
        let text = err.to_string();
        assert!(
            text.starts_with(
                "invalid PostgreSQL URL postgres://alice:***@h/db?connect_timeout=x: "
            ),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn r12_sslmode_is_read_and_taken_out_of_the_url_the_client_reads() {
        let cases = [
            ("postgres://h/db", "postgres://h/db", None),
            (
                "postgres://h/db?sslmode=disable",
                "postgres://h/db",
                Some("disable"),
            ),
            (
                "postgres://u:p@h/db?sslmode=verify-full",
                "postgres://u:p@h/db",
                Some("verify-full"),
            ),
            (
                "postgresql://h:5432/db?application_name=x&sslmode=verify-ca&options=-c%20a%3Db",
                "postgresql://h:5432/db?application_name=x&options=-c%20a%3Db",
                Some("verify-ca"),
            ),
            (
                "postgres://h?ssl%6Dode=verify%2Dfull",
                "postgres://h",
                Some("verify-full"),
            ),
            // The last one wins, as the client reads them.
            (
                "postgres://h/db?sslmode=verify-full&sslmode=disable",
                "postgres://h/db",
                Some("disable"),
            ),
            // A `?sslmode=` inside the credentials is the password's.
            (
                "postgres://u:a%3Fsslmode=verify-ca@h/db",
                "postgres://u:a%3Fsslmode%3Dverify-ca@h/db",
                None,
            ),
        ];
        for (url, rest, mode) in cases {
            let mut parsed = Url::parse(url).expect(url);
            let found = take_ssl_mode(&mut parsed).expect(url);
            assert_eq!((parsed.as_str(), found.map(|m| m.0)), (rest, mode), "{url}");
            Config::from_str(parsed.as_str()).unwrap_or_else(|err| panic!("{url}: {err}"));
        }
        let store = PostgresRecords::new("postgres://u@h/db?sslmode=verify-full").expect("valid");
        assert_eq!(store.ssl_mode.0, "verify-full");
        assert_eq!(store.config.get_ssl_mode(), ClientSslMode::Require);
        let store = PostgresRecords::new("postgres://h/db").expect("valid");
        assert_eq!(store.ssl_mode.0, "prefer");
        assert_eq!(store.config.get_ssl_mode(), ClientSslMode::Prefer);
        let store = PostgresRecords::new("postgres://h/db?sslmode=disable").expect("valid");
        assert_eq!(store.config.get_ssl_mode(), ClientSslMode::Disable);
    }

    #[test]
    fn r12_an_unknown_sslmode_is_refused_naming_the_supported_ones_without_the_password() {
        for url in [
            "postgres://alice:s3cret@h/db?sslmode=allow",
            "postgres://h/db?password=s3cret&sslmode=verify",
            "postgres://h/db?password=s3cret&sslmode=VERIFY-FULL",
        ] {
            let err = PostgresRecords::new(url).expect_err(url);
            let text = err.to_string();
            assert!(text.starts_with("invalid PostgreSQL URL "), "{text}");
            assert!(
                text.ends_with(
                    "is not supported: use disable, prefer, require, verify-ca or verify-full"
                ),
                "{text}"
            );
            assert!(!text.contains("s3cret"), "{url}: {text}");
        }
        // A password given as the sslmode is hidden too.
        let err = PostgresRecords::new("postgres://h/db?sslmode=s3cret&password=s3cret")
            .expect_err("not a mode");
        assert!(!err.to_string().contains("s3cret"), "{err}");
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
        // The stuck request is not doubled: the next listing fails at once,
        // saying so, instead of sending another and waiting out the bound.
        let err = store.list_running().expect_err("still unanswered");
        assert!(err.to_string().contains("still unanswered"), "{err}");
        assert!(!err.to_string().contains("no answer within"), "{err}");
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
