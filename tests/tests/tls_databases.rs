//! Issue 12 item 3: PostgreSQL and Redis over TLS, against a real
//! PostgreSQL (`ssl=on`) and a real `redis-server` (`--tls-port`) on
//! loopback, with certificates made at test time.
//!
//! - PostgreSQL: each `sslmode` does what the README says — `verify-full`
//!   checks the chain (against `--ca-file`) and the host, `verify-ca` the
//!   chain only, `require` and `prefer` encrypt without checking, `disable`
//!   stays plain — and every refusal names the server and the reason.
//! - Redis: `rediss://` verifies in full against `--ca-file`, publishes and
//!   reads back over TLS, refuses an untrusted or misnamed certificate, and
//!   a server that never answers the handshake fails within the bound.
//! - The CLI: `healthprobe run` with both, `--ca-file` applying to them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use healthprobe_shell::adapters::{PostgresRecords, RedisStreamPublisher, RedisTarget};
use healthprobe_shell::driver::ports::{
    HealthEventPublisher, ListError, PublishError, RuntimeRecordStore,
};
use healthprobe_shell::tls::{TlsClient, TlsOptions};
use healthprobe_tests::{
    Behaviour, CertifiedKey, Fleet, HANG_GUARD, HealthprobeProcess, RuntimeRecord, ScratchDir,
    TestCa, TestPostgres, TestRedis, Validity, at, probe_recovered, with_id,
};

/// Bound on any wait in these tests; reached only when something is broken.
const PATIENCE: Duration = Duration::from_secs(20);

/// The bound each listing gets here.
const LISTING_BOUND: Duration = Duration::from_secs(5);

const STREAM: &str = "health-events";

/// A CA, its certificate written to a file (what `--ca-file` names), and a
/// [`TlsClient`] trusting it besides the system store.
struct Trusted {
    ca: TestCa,
    ca_file: PathBuf,
    tls: TlsClient,
    _dir: ScratchDir,
}

impl Trusted {
    fn new(name: &str) -> Self {
        let ca = TestCa::new(name);
        let dir = ScratchDir::new("tls-databases").expect("scratch dir");
        let ca_file = dir.join("ca.pem");
        ca.write_cert(&ca_file).expect("write the CA");
        let tls = TlsClient::new(&TlsOptions {
            ca_file: Some(ca_file.clone()),
            ..TlsOptions::default()
        })
        .expect("a valid CA file");
        Self {
            ca,
            ca_file,
            tls,
            _dir: dir,
        }
    }

    /// A current server certificate for the loopback names.
    fn loopback_cert(&self) -> CertifiedKey {
        self.ca
            .server_cert(&["localhost", "127.0.0.1"], Validity::Current)
    }
}

/// The server's URL with `sslmode` (and a password, which trust
/// authentication ignores, to check it never shows), connecting as
/// application `hp-SSLMODE` (see [`uses_ssl`]).
fn url_with(postgres: &TestPostgres, sslmode: &str) -> String {
    format!(
        "postgres://postgres:s3cret-pw@127.0.0.1:{}/postgres?sslmode={sslmode}\
         &application_name=hp-{sslmode}",
        postgres.port()
    )
}

fn store(url: &str, tls: &TlsClient) -> PostgresRecords {
    PostgresRecords::with_timeout(url, LISTING_BOUND)
        .expect("a valid URL")
        .with_tls(tls.clone())
}

/// The listing's failure text; panics if it lists.
fn listing_error(store: &mut PostgresRecords) -> String {
    match store.list_running() {
        Err(ListError::Unavailable(text)) => {
            assert!(!text.contains("s3cret-pw"), "the password shows: {text}");
            text
        }
        other => panic!("the listing must fail: {other:?}"),
    }
}

/// Whether the adapter's open connection, made as `application`, is
/// encrypted, as the server sees it. (A name of its own per connection:
/// the backend of one already closed may not have exited yet.)
fn uses_ssl(postgres: &TestPostgres, application: &str) -> bool {
    let rows = postgres
        .client()
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = $1",
            &[&application],
        )
        .expect("pg_stat_ssl");
    assert_eq!(rows.len(), 1, "one connection of {application} is open");
    rows[0].get(0)
}

fn games(store: &mut PostgresRecords) -> Vec<String> {
    store
        .list_running()
        .unwrap_or_else(|err| panic!("the listing must succeed: {err}"))
        .into_iter()
        .map(|record| record.game_id)
        .collect()
}

#[test]
fn r12_postgres_verify_full_with_the_ca_file_lists_games_over_tls_and_an_untrusted_ca_is_refused() {
    let trusted = Trusted::new("healthprobe test CA");
    let postgres = TestPostgres::start_fresh_with_tls(&trusted.loopback_cert());
    postgres.upsert(&RuntimeRecord::running("g2", "c2", "http://127.0.0.1:2/"));
    postgres.upsert(&RuntimeRecord::running("g1", "c1", "http://127.0.0.1:1/"));

    let mut verified = store(&url_with(&postgres, "verify-full"), &trusted.tls);
    assert_eq!(games(&mut verified), ["g1", "g2"]);
    assert!(
        uses_ssl(&postgres, "hp-verify-full"),
        "verify-full must encrypt"
    );
    drop(verified);

    // The system store alone, and another private CA, do not know this one.
    let other = Trusted::new("another CA");
    for (trust, label) in [
        (TlsClient::system(), "system"),
        (other.tls.clone(), "other"),
    ] {
        for sslmode in ["verify-full", "verify-ca"] {
            let mut refused = store(&url_with(&postgres, sslmode), &trust);
            let text = listing_error(&mut refused);
            assert_eq!(
                text,
                format!(
                    "postgres postgres://postgres@127.0.0.1:{}/postgres: tls: certificate signed \
                     by unknown authority (sslmode={sslmode})",
                    postgres.port()
                ),
                "{label}"
            );
            assert!(!refused.is_connected());
        }
    }
}

#[test]
fn r12_postgres_require_and_prefer_encrypt_without_verifying_and_disable_stays_plain() {
    // A certificate nobody here trusts: require and prefer do not check it.
    let unknown = TestCa::new("a CA nobody trusts");
    let postgres = TestPostgres::start_fresh_with_tls(
        &unknown.server_cert(&["db.elsewhere.test"], Validity::Current),
    );
    postgres.upsert(&RuntimeRecord::running("g1", "c1", "http://127.0.0.1:1/"));
    let system = TlsClient::system();
    let port = postgres.port();
    for (url, application, encrypted) in [
        (url_with(&postgres, "require"), "hp-require", true),
        (url_with(&postgres, "prefer"), "hp-prefer", true),
        // No sslmode: libpq's default, prefer.
        (
            format!("postgres://postgres@127.0.0.1:{port}/postgres?application_name=hp-default"),
            "hp-default",
            true,
        ),
        (url_with(&postgres, "disable"), "hp-disable", false),
    ] {
        let mut listing = store(&url, &system);
        assert_eq!(games(&mut listing), ["g1"], "{url}");
        assert_eq!(uses_ssl(&postgres, application), encrypted, "{url}");
    }
}

#[test]
fn r12_postgres_a_failed_handshake_fails_require_and_prefer_retries_without_tls_as_libpq() {
    // The server speaks TLS 1.1 at most; rustls 1.2 at least.
    let trusted = Trusted::new("healthprobe test CA");
    let postgres = TestPostgres::start_fresh_with_tls_settings(
        &trusted.loopback_cert(),
        &[
            "ssl_min_protocol_version=TLSv1",
            "ssl_max_protocol_version=TLSv1.1",
        ],
    );
    postgres.upsert(&RuntimeRecord::running("g1", "c1", "http://127.0.0.1:1/"));
    let mut required = store(&url_with(&postgres, "require"), &trusted.tls);
    let text = listing_error(&mut required);
    assert!(
        text.starts_with(&format!(
            "postgres postgres://postgres@127.0.0.1:{}/postgres: tls: ",
            postgres.port()
        )) && text.ends_with(" (sslmode=require)"),
        "{text}"
    );
    let mut preferred = store(&url_with(&postgres, "prefer"), &trusted.tls);
    assert_eq!(games(&mut preferred), ["g1"]);
    assert!(
        !uses_ssl(&postgres, "hp-prefer"),
        "prefer fell back to plain"
    );
}

#[test]
fn r12_postgres_verify_full_refuses_another_hosts_certificate_and_verify_ca_accepts_it() {
    let trusted = Trusted::new("healthprobe test CA");
    let mut postgres = TestPostgres::start_fresh_with_tls(&trusted.loopback_cert());
    postgres.upsert(&RuntimeRecord::running("g1", "c1", "http://127.0.0.1:1/"));
    postgres.replace_certificate(
        &trusted
            .ca
            .server_cert(&["db.other.test"], Validity::Current),
    );

    let mut full = store(&url_with(&postgres, "verify-full"), &trusted.tls);
    assert_eq!(
        listing_error(&mut full),
        format!(
            "postgres postgres://postgres@127.0.0.1:{}/postgres: tls: certificate is valid for \
             db.other.test, not 127.0.0.1 (sslmode=verify-full)",
            postgres.port()
        )
    );
    let mut chain = store(&url_with(&postgres, "verify-ca"), &trusted.tls);
    assert_eq!(games(&mut chain), ["g1"]);
    assert!(uses_ssl(&postgres, "hp-verify-ca"));
    drop(chain);

    // verify-ca still checks everything but the name: an expired certificate is refused.
    postgres.replace_certificate(
        &trusted
            .ca
            .server_cert(&["db.other.test"], Validity::Expired),
    );
    let mut chain = store(&url_with(&postgres, "verify-ca"), &trusted.tls);
    let text = listing_error(&mut chain);
    assert!(
        text.contains(": tls: certificate has expired") && text.ends_with("(sslmode=verify-ca)"),
        "{text}"
    );
}

#[test]
fn r12_postgres_require_against_a_server_with_ssl_off_fails_clearly_and_prefer_connects_plain() {
    let trusted = Trusted::new("healthprobe test CA");
    let postgres = TestPostgres::start_fresh();
    postgres.upsert(&RuntimeRecord::running("g1", "c1", "http://127.0.0.1:1/"));
    for sslmode in ["require", "verify-ca", "verify-full"] {
        let mut refused = store(&url_with(&postgres, sslmode), &trusted.tls);
        assert_eq!(
            listing_error(&mut refused),
            format!(
                "postgres postgres://postgres@127.0.0.1:{}/postgres: tls: the server does not \
                 accept TLS connections (ssl = off?) (sslmode={sslmode})",
                postgres.port()
            )
        );
    }
    let mut plain = store(&url_with(&postgres, "prefer"), &trusted.tls);
    assert_eq!(games(&mut plain), ["g1"]);
    assert!(!uses_ssl(&postgres, "hp-prefer"));
}

/// A publisher to `url` trusting `tls`, each wait bounded by `timeout`.
fn redis_publisher(url: &str, tls: &TlsClient, timeout: Duration) -> RedisStreamPublisher {
    let target = RedisTarget::parse(url).expect("a valid URL");
    assert!(target.tls, "{url}");
    RedisStreamPublisher::new(target, 1000, tls)
        .expect("a client")
        .with_timeout(timeout)
}

fn refusal(result: Result<(), PublishError>) -> String {
    match result {
        Err(PublishError::Unavailable(text)) => text,
        other => panic!("the publish must fail: {other:?}"),
    }
}

#[test]
fn r12_redis_rediss_with_the_ca_file_publishes_events_and_reads_them_back() {
    let trusted = Trusted::new("healthprobe test CA");
    let redis = TestRedis::start_tls(&trusted.loopback_cert(), &trusted.ca);
    let url = redis.url(STREAM);
    assert!(url.starts_with("rediss://"), "{url}");
    let mut publisher = redis_publisher(&url, &trusted.tls, Duration::from_secs(3));
    assert_eq!(
        publisher.destination(),
        format!("rediss 127.0.0.1:{}/{STREAM}", redis.port())
    );
    publisher.ping().expect("PING over TLS");
    let events: Vec<_> = (1..=3)
        .map(|n| probe_recovered("g1", "c1", at(n), 2))
        .collect();
    for event in &events {
        publisher
            .publish(&with_id(event.clone()))
            .expect("published over TLS");
    }
    assert_eq!(redis.events(STREAM), events);
}

#[test]
fn r12_redis_an_untrusted_or_misnamed_certificate_is_refused_naming_the_reason() {
    let trusted = Trusted::new("healthprobe test CA");
    let redis = TestRedis::start_tls(&trusted.loopback_cert(), &trusted.ca);
    let event = probe_recovered("g1", "c1", at(1), 2);
    let destination = format!("rediss 127.0.0.1:{}/{STREAM}", redis.port());

    let other = Trusted::new("another CA");
    for trust in [TlsClient::system(), other.tls.clone()] {
        let mut publisher = redis_publisher(&redis.url(STREAM), &trust, Duration::from_secs(3));
        assert_eq!(
            refusal(publisher.publish(&with_id(event.clone()))),
            format!("{destination}: tls: certificate signed by unknown authority")
        );
        assert_eq!(
            refusal(publisher.ping()),
            format!("{destination}: tls: certificate signed by unknown authority")
        );
    }
    assert_eq!(redis.len(STREAM), 0, "nothing was published");

    // Valid for localhost (which the harness connects as), not for 127.0.0.1.
    let misnamed = TestRedis::start_tls_as(
        &trusted.ca.server_cert(&["localhost"], Validity::Current),
        &trusted.ca,
        "localhost",
    );
    let mut publisher = redis_publisher(
        &format!("rediss://:s3cret-pw@127.0.0.1:{}/{STREAM}", misnamed.port()),
        &trusted.tls,
        Duration::from_secs(3),
    );
    assert_eq!(
        refusal(publisher.publish(&with_id(event.clone()))),
        format!(
            "rediss 127.0.0.1:{}/{STREAM}: tls: certificate is valid for localhost, not 127.0.0.1",
            misnamed.port()
        )
    );
}

#[test]
fn r12_redis_a_server_that_never_answers_the_handshake_fails_within_the_bound() {
    // Connections complete in the listener's backlog; nothing ever answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("address").port();
    let trusted = Trusted::new("healthprobe test CA");
    let bound = Duration::from_millis(300);
    let mut publisher = redis_publisher(
        &format!("rediss://127.0.0.1:{port}/{STREAM}"),
        &trusted.tls,
        bound,
    );
    let event = probe_recovered("g1", "c1", at(1), 2);
    for _ in 0..2 {
        let started = Instant::now();
        let text = refusal(publisher.publish(&with_id(event.clone())));
        let took = started.elapsed();
        // Not before the bound; after it only a hang guard: the mechanism is
        // the error naming the bound, the handshake included.
        assert!(took >= bound && took < HANG_GUARD, "took {took:?}: {text}");
        assert_eq!(
            text,
            format!(
                "rediss 127.0.0.1:{port}/{STREAM}: no answer within 300ms (connecting, TLS \
                 handshake included)"
            )
        );
    }
}

#[test]
fn r12_cli_run_lists_from_postgres_verify_full_and_publishes_to_rediss_with_the_ca_file() {
    let trusted = Trusted::new("healthprobe test CA");
    let postgres = TestPostgres::start_fresh_with_tls(&trusted.loopback_cert());
    let redis = TestRedis::start_tls(&trusted.loopback_cert(), &trusted.ca);
    let fleet = Fleet::start([Behaviour::Status(500)]).expect("engine");
    postgres.upsert(&fleet.record(0));
    let records = url_with(&postgres, "verify-full");
    let events = redis.url(STREAM);
    let run = |ca_file: Option<&Path>| {
        let mut command = HealthprobeProcess::command();
        command.args(["run", "--records", &records, "--events", &events]);
        command.args([
            "--ticks",
            "1",
            "--interval",
            "200ms",
            "--probe-timeout",
            "1s",
        ]);
        command.args(["--failures-threshold", "1"]);
        if let Some(ca_file) = ca_file {
            command.arg("--ca-file").arg(ca_file);
        }
        HealthprobeProcess::spawn_command(command)
            .expect("start healthprobe")
            .wait(PATIENCE)
            .expect("exits after one tick")
    };

    let finished = run(Some(&trusted.ca_file));
    assert!(finished.status.success(), "{finished:?}");
    let published = redis.events(STREAM);
    assert_eq!(
        published.len(),
        1,
        "{published:?}; stderr:\n{}",
        finished.stderr
    );
    assert_eq!(published[0].game_id, fleet.record(0).game_id);
    assert_eq!(published[0].event_type().as_str(), "probe_failed");

    // Without --ca-file, the database's certificate is not trusted: the
    // first listing fails, naming the server and the reason, and the run
    // stops before probing.
    let finished = run(None);
    assert_eq!(finished.status.code(), Some(1), "{finished:?}");
    assert!(
        finished.stderr.contains(&format!(
            "postgres postgres://postgres@127.0.0.1:{}/postgres: tls: certificate signed by \
             unknown authority (sslmode=verify-full)",
            postgres.port()
        )),
        "{}",
        finished.stderr
    );
    assert!(
        !finished.stderr.contains("s3cret-pw"),
        "{}",
        finished.stderr
    );
    assert_eq!(redis.len(STREAM), 1, "nothing more was published");
}
