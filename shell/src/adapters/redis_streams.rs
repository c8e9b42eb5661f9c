//! Events to a Redis stream (cargo feature `redis`): one `XADD STREAM
//! [MAXLEN ~ N] * game_id … container_id … event_type … occurred_at …
//! details … event_id …` per event, the values exactly as in the JSON
//! lines, then the event's stable id.
//!
//! Every wait is bounded, and any failure is a [`PublishError::Unavailable`]
//! naming the destination that drops the connection; the worker keeps the
//! event pending (D4). The `XADD` runs in a script ([`ADD_ONCE`]) that skips
//! an id already added (a marker key `hp:event:{STREAM}:{event_id}`, kept
//! [`DEDUPE_TTL_SECONDS`]), so a re-send — after a lost reply, a failed
//! state write, a restart — adds nothing.
//!
//! `rediss://` verifies the server's certificate in full against the trust
//! given to [`RedisStreamPublisher::new`]; `#insecure` is refused. redis-rs
//! builds on the process's default crypto provider, which the binary
//! installs ([`crate::tls::provider`]).

use std::error::Error as _;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use healthprobe_core::Outgoing;
use percent_encoding::percent_decode_str;
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RedisError, TlsCertificates};
use url::Host;

use crate::adapters::redact::{self, InvalidUrl, hide};
use crate::codec::wire::to_writer_go;
use crate::driver::ports::{HealthEventPublisher, PublishError};
use crate::tls::{TlsClient, describe_database_tls};
use healthprobe_core::lease::ShardLease;

/// How long Redis remembers an added event's id: a re-send within it is not
/// added again (7 days).
pub(crate) const DEDUPE_TTL_SECONDS: u64 = 7 * 24 * 3600;

/// With failover, first the shard's fence: an epoch below the one the
/// shard's fence key holds is refused (`{'fenced', epoch}`), a higher one
/// raises it. Then `XADD` unless the id's marker exists, then the marker
/// (after the `XADD`: one that failed leaves none, so nothing is lost).
/// KEYS: the stream, the marker, the fence; ARGV: the marker's TTL in
/// seconds, `MAXLEN ~` (0: none), the epoch (0: no fence), then the fields.
const ADD_ONCE: &str = r"
local epoch = tonumber(ARGV[3])
if epoch > 0 then
  local fence = tonumber(redis.call('GET', KEYS[3]) or '0')
  if epoch < fence then return {'fenced', tostring(fence)} end
  if epoch > fence then redis.call('SET', KEYS[3], ARGV[3]) end
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'duplicate' end
local id
if tonumber(ARGV[2]) > 0 then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 4))
else
  id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4))
end
redis.call('SET', KEYS[2], id, 'EX', ARGV[1])
return id
";

/// Raise a shard's fence (KEYS[1]) to an epoch (ARGV[1]), never lower it.
const RAISE_FENCE: &str = r"
if tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
";

/// Where events go: `redis://[[USER]:PASSWORD@]HOST[:PORT]/STREAM`, or
/// `rediss://…` over TLS.
///
/// Its `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisTarget {
    /// Whether the connection is over TLS (`rediss://`).
    pub tls: bool,
    /// The server's host name or IP address (without brackets for IPv6).
    pub host: String,
    /// The server's port (6379 unless the URL names one).
    pub port: u16,
    /// The stream's key: the URL's path after the first `/`.
    pub stream: String,
    /// The ACL user to authenticate as (`AUTH USER PASSWORD`), if any.
    pub username: Option<String>,
    /// The password to authenticate with (`AUTH [USER] PASSWORD`), if any.
    pub password: Option<String>,
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget")
            .field("tls", &self.tls)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("stream", &self.stream)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl RedisTarget {
    /// The port when the URL names none.
    pub(crate) const DEFAULT_PORT: u16 = 6379;

    /// Parse `redis://[[USER]:PASSWORD@]HOST[:PORT]/STREAM`, or `rediss://…`
    /// for TLS (port 6379 either way). Credentials and the stream are
    /// percent-decoded; a query or a fragment is refused rather than
    /// ignored. Errors never show the password.
    pub fn parse(url: &str) -> Result<Self, InvalidUrl> {
        Self::parse_with_default_password(url, None)
    }

    /// [`Self::parse`], with `password` (from a password file,
    /// `--events-password-file`) used when the URL gives none: then
    /// `redis://USER@HOST/STREAM` is accepted too. A password in the URL wins.
    pub(crate) fn parse_with_default_password(
        url: &str,
        password: Option<&str>,
    ) -> Result<Self, InvalidUrl> {
        let url = redact::parse("Redis", url)?;
        // The password in effect is hidden wherever it appears.
        let secret = url
            .password()
            .map(|password| percent_decode_str(password).decode_utf8_lossy())
            .or(password.map(Into::into));
        let invalid = |reason: &str| InvalidUrl::new("Redis", &url, reason, secret.as_deref());
        let decode = |text: &str| {
            percent_decode_str(text)
                .decode_utf8()
                .map(|text| text.into_owned())
                .map_err(|_| invalid("not UTF-8 once percent-decoded"))
        };
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            _ => {
                return Err(invalid(
                    "expected redis://HOST[:PORT]/STREAM (or rediss:// for TLS)",
                ));
            }
        };
        if url.fragment() == Some("insecure") {
            return Err(invalid(
                "#insecure is not supported: the server's certificate is always verified \
                 (trust a private CA with --ca-file)",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "a query or fragment is not supported: the path is the stream name",
            ));
        }
        let host = match url.host() {
            Some(Host::Domain(name)) if !name.is_empty() => name.to_owned(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(invalid("no host")),
        };
        let port = match url.port() {
            Some(0) => return Err(invalid("port 0: expected a port from 1 to 65535")),
            port => port.unwrap_or(Self::DEFAULT_PORT),
        };
        let stream = decode(url.path().strip_prefix('/').unwrap_or_default())?;
        if stream.is_empty() {
            return Err(invalid(
                "no stream name: expected redis://HOST[:PORT]/STREAM",
            ));
        }
        let username = match url.username() {
            "" => None,
            user => Some(decode(user)?),
        };
        let password = match url.password() {
            Some(password) => Some(decode(password)?),
            None => password
                .filter(|password| !password.is_empty())
                .map(str::to_owned),
        };
        if username.is_some() && password.is_none() {
            return Err(invalid(
                "a user name needs a password: expected USER:PASSWORD@ or :PASSWORD@ \
                 (or a password file)",
            ));
        }
        Ok(Self {
            tls,
            host,
            port,
            stream,
            username,
            password,
        })
    }
}

impl fmt::Display for RedisTarget {
    /// `redis HOST:PORT/STREAM` (`rediss …` over TLS), as errors name the destination.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        if self.host.contains(':') {
            write!(f, "{scheme} [{}]:{}/{}", self.host, self.port, self.stream)
        } else {
            write!(f, "{scheme} {}:{}/{}", self.host, self.port, self.stream)
        }
    }
}

/// One event as stream fields: the envelope's, then `event_id`.
type Fields = [(&'static str, String); 6];

/// Publishes each event as one entry of a Redis stream (`XADD`).
pub struct RedisStreamPublisher {
    target: RedisTarget,
    destination: String,
    maxlen: u64,
    timeout: Duration,
    client: redis::Client,
    connection: Option<redis::Connection>,
}

impl fmt::Debug for RedisStreamPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStreamPublisher")
            .field("destination", &self.destination)
            .field("maxlen", &self.maxlen)
            .field("timeout", &self.timeout)
            .field("connected", &self.connection.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisStreamPublisher {
    /// Bound on connecting (TCP and handshake) and on each read and write.
    pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

    /// The default `MAXLEN ~` bound on the stream's length.
    pub(crate) const DEFAULT_MAXLEN: u64 = 100_000;

    /// A publisher to `target`, trimming the stream to about `maxlen`
    /// entries (`MAXLEN ~`; 0 never trims); a `rediss://` server's
    /// certificate is checked against the trust of `tls`. Connects at the
    /// first publish.
    pub fn new(target: RedisTarget, maxlen: u64, tls: &TlsClient) -> Result<Self, PublishError> {
        let destination = target.to_string();
        let client = Self::client(&target, tls)
            .map_err(|err| PublishError::Unavailable(format!("{destination}: {err}")))?;
        Ok(Self {
            target,
            destination,
            maxlen,
            timeout: Self::DEFAULT_TIMEOUT,
            client,
            connection: None,
        })
    }

    fn client(target: &RedisTarget, tls: &TlsClient) -> redis::RedisResult<redis::Client> {
        let mut settings = RedisConnectionInfo::default();
        if let Some(username) = &target.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &target.password {
            settings = settings.set_password(password);
        }
        if !target.tls {
            let info = ConnectionAddr::Tcp(target.host.clone(), target.port)
                .into_connection_info()?
                .set_redis_settings(settings);
            return redis::Client::open(info);
        }
        let info = ConnectionAddr::TcpTls {
            host: target.host.clone(),
            port: target.port,
            insecure: false,
            tls_params: None,
        }
        .into_connection_info()?
        .set_redis_settings(settings);
        // Its `root_cert` replaces the system store: give it the whole trust.
        redis::Client::build_with_tls(
            info,
            TlsCertificates {
                client_tls: None,
                root_cert: Some(tls.trusted_roots_pem().into_bytes()),
            },
        )
    }

    /// The same with another bound on connecting and on each read and write.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `redis HOST:PORT/STREAM`, as errors name it.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// Check that Redis answers `PING` now (connecting if needed).
    pub fn ping(&mut self) -> Result<(), PublishError> {
        let connection = match self.connection() {
            Ok(connection) => connection,
            Err(err) => return Err(self.fail(&err, true)),
        };
        let result = redis::cmd("PING").query::<redis::Value>(connection);
        result.map(drop).map_err(|err| self.fail(&err, false))
    }

    fn connection(&mut self) -> redis::RedisResult<&mut redis::Connection> {
        if self.connection.is_none() {
            let connection = self.client.get_connection_with_timeout(self.timeout)?;
            connection.set_read_timeout(Some(self.timeout))?;
            connection.set_write_timeout(Some(self.timeout))?;
            self.connection = Some(connection);
        }
        Ok(self.connection.as_mut().expect("connected just above"))
    }

    /// Drop the connection and name the destination in the error. Over
    /// TLS, a timeout while `connecting` may be the handshake's.
    fn fail(&mut self, err: &RedisError, connecting: bool) -> PublishError {
        self.connection = None;
        let reason = if connecting && self.target.tls && err.is_timeout() {
            let timeout = humantime::format_duration(self.timeout);
            format!("no answer within {timeout} (connecting, TLS handshake included)")
        } else {
            describe(err, &self.target.host)
        };
        let reason = hide(&reason, self.target.password.as_deref());
        PublishError::Unavailable(format!("{}: {reason}", self.destination))
    }

    /// One attempt: [`ADD_ONCE`] for the event's `fields`, fenced by
    /// `lease` if any; `Ok(Some(epoch))`: refused by the shard's fence at `epoch`.
    fn attempt(
        &mut self,
        fields: &Fields,
        lease: Option<ShardLease>,
    ) -> Result<Option<u64>, Attempt> {
        let stream = &self.target.stream;
        let mut script = redis::cmd("EVAL");
        let marker = format!("hp:event:{stream}:{}", fields[5].1);
        // Unfenced, the fence key is unused: the marker again, so a user
        // without rights on fence keys can publish.
        let fence = match lease {
            Some(lease) => format!("hp:fence:{stream}:{}", lease.shard),
            None => marker.clone(),
        };
        script
            .arg(ADD_ONCE)
            .arg(3)
            .arg(stream)
            .arg(marker)
            .arg(fence)
            .arg(DEDUPE_TTL_SECONDS)
            .arg(self.maxlen)
            .arg(lease.map_or(0, |lease| lease.epoch));
        for (name, value) in fields {
            script.arg(*name).arg(value);
        }
        if let Some(lease) = lease {
            script
                .arg("shard")
                .arg(lease.shard)
                .arg("epoch")
                .arg(lease.epoch);
        }
        let reused = self.connection.is_some();
        let connection = self.connection().map_err(Attempt::NotSent)?;
        let added = script.query::<redis::Value>(connection);
        match added {
            Ok(redis::Value::Array(reply)) => match reply.as_slice() {
                [
                    redis::Value::BulkString(word),
                    redis::Value::BulkString(epoch),
                ] if word == b"fenced" => {
                    let epoch = String::from_utf8_lossy(epoch).parse().unwrap_or(u64::MAX);
                    Ok(Some(epoch))
                }
                _ => Ok(None),
            },
            Ok(_) => Ok(None),
            Err(err) => Err(Attempt::Failed { err, reused }),
        }
    }
}

/// How an attempt failed.
enum Attempt {
    /// No connection: nothing reached Redis.
    NotSent(RedisError),
    /// A command failed on a connection (`reused`: one kept from an earlier publish).
    Failed { err: RedisError, reused: bool },
}

impl HealthEventPublisher for RedisStreamPublisher {
    /// Adds the event unless its id was added within [`DEDUPE_TTL_SECONDS`]
    /// (which counts as delivered).
    fn publish(&mut self, event: &Outgoing) -> Result<(), PublishError> {
        self.add(event, None)
    }

    /// Refused when the shard's fence holds a newer epoch (another instance
    /// published for it since); otherwise raises the fence to `lease`'s epoch.
    fn publish_fenced(&mut self, event: &Outgoing, lease: ShardLease) -> Result<(), PublishError> {
        self.add(event, Some(lease))
    }

    fn raise_fence(&mut self, lease: ShardLease) -> Result<(), PublishError> {
        let mut script = redis::cmd("EVAL");
        script
            .arg(RAISE_FENCE)
            .arg(1)
            .arg(format!("hp:fence:{}:{}", self.target.stream, lease.shard))
            .arg(lease.epoch);
        let raised = self
            .connection()
            .and_then(|connection| script.query::<redis::Value>(connection));
        raised.map(drop).map_err(|err| self.fail(&err, false))
    }
}

impl RedisStreamPublisher {
    fn add(&mut self, event: &Outgoing, lease: Option<ShardLease>) -> Result<(), PublishError> {
        let fields = event_fields(event).map_err(|err| {
            PublishError::Unavailable(format!("{}: cannot encode event: {err}", self.destination))
        })?;
        let mut retried = false;
        loop {
            match self.attempt(&fields, lease) {
                Ok(None) => return Ok(()),
                Ok(Some(newer)) => {
                    return Err(PublishError::Fenced {
                        destination: self.destination.clone(),
                        lease: lease.expect("only a fenced publish is refused by a fence"),
                        newer,
                    });
                }
                Err(Attempt::NotSent(err)) => return Err(self.fail(&err, true)),
                Err(Attempt::Failed { err, reused }) => {
                    self.connection = None;
                    // A connection kept since an earlier publish may have
                    // been closed by a Redis restart: one fresh try now
                    // rather than a refusal for the whole tick.
                    if reused && !retried && err.is_connection_dropped() {
                        retried = true;
                        continue;
                    }
                    return Err(self.fail(&err, false));
                }
            }
        }
    }
}

/// The error as a short reason: a TLS failure worded (checked against
/// `host`), the I/O error alone when there is one.
fn describe(err: &RedisError, host: &str) -> String {
    if let Some(tls) = tls_error(err) {
        describe_database_tls(tls, Some(host))
    } else if err.is_connection_refusal() {
        "connection refused".to_owned()
    } else if err.is_timeout() {
        "timed out".to_owned()
    } else {
        err.to_string()
    }
}

/// The rustls error inside `err`, if any: redis-rs keeps the I/O error
/// (which holds it) as its source, behind an `Arc`.
fn tls_error(err: &RedisError) -> Option<&rustls::Error> {
    err.source()?
        .downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>()?
        .downcast_ref::<io::Error>()?
        .get_ref()?
        .downcast_ref::<rustls::Error>()
}

/// The envelope's fields with the values the JSON line would hold, then `event_id`.
fn event_fields(outgoing: &Outgoing) -> std::io::Result<Fields> {
    let event = &outgoing.event;
    let occurred_at = serde_json::to_string(&event.occurred_at)?;
    let occurred_at = occurred_at.trim_matches('"').to_owned();
    let mut details = Vec::with_capacity(128);
    to_writer_go(&mut details, &event.details)?;
    let details = String::from_utf8(details)
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))?;
    Ok([
        ("game_id", event.game_id.clone()),
        ("container_id", event.container_id.clone()),
        ("event_type", event.event_type().as_str().to_owned()),
        ("occurred_at", occurred_at),
        ("details", details),
        ("event_id", outgoing.id.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use healthprobe_core::{EventDetails, HealthEvent, Timestamp};

    use super::*;
    use crate::codec::wire::write_event_line;

    fn target(host: &str, port: u16, stream: &str) -> RedisTarget {
        RedisTarget {
            tls: false,
            host: host.into(),
            port,
            stream: stream.into(),
            username: None,
            password: None,
        }
    }

    #[test]
    fn a_url_names_host_port_and_stream() {
        assert_eq!(
            RedisTarget::parse("redis://127.0.0.1:7000/health-events"),
            Ok(target("127.0.0.1", 7000, "health-events"))
        );
        assert_eq!(
            RedisTarget::parse("redis://cache.internal/a/b"),
            Ok(target("cache.internal", 6379, "a/b"))
        );
        assert_eq!(
            RedisTarget::parse("redis://[::1]:6380/s"),
            Ok(target("::1", 6380, "s"))
        );
        assert_eq!(
            RedisTarget::parse("redis://[::1]/s").map(|t| t.to_string()),
            Ok("redis [::1]:6379/s".to_owned())
        );
    }

    #[test]
    fn a_url_without_a_usable_stream_host_or_port_is_refused_with_the_reason() {
        let cases = [
            ("redis://127.0.0.1:6379", "no stream name"),
            ("redis://127.0.0.1:6379/", "no stream name"),
            ("redis:///events", "no host"),
            ("redis://h:0/s", "port 0: expected a port from 1 to 65535"),
            ("redis://u@h/s", "a user name needs a password"),
            ("redis://u:@h/s", "a user name needs a password"),
            ("redis://h/s?db=1", "query or fragment"),
            ("http://h/s", "expected redis://"),
            ("rediss://h/s#insecure", "#insecure is not supported"),
            ("rediss://h:6380", "no stream name"),
        ];
        for (url, reason) in cases {
            let err = RedisTarget::parse(url).expect_err(url);
            let message = err.to_string();
            assert!(
                message.starts_with(&format!(
                    "invalid Redis URL {}: ",
                    redact::without_password(&url::Url::parse(url).expect("parses"))
                )),
                "{message}"
            );
            assert!(message.contains(reason), "{url}: {message}");
        }
        // A URL that does not parse is not shown (a port that is not a
        // number may be a password whose `@HOST` was forgotten).
        for (url, reason) in [
            ("redis://h:x/s", "invalid port number"),
            ("redis://h:99999/s", "invalid port number"),
            ("rediss://[::1/s", "invalid IPv6 address"),
        ] {
            let err = RedisTarget::parse(url).expect_err(url);
            let scheme = &url[..url.find(':').expect("a scheme")];
            assert_eq!(
                err.to_string(),
                format!("invalid Redis URL {scheme}://…: {reason}")
            );
        }
    }

    #[test]
    fn credentials_are_percent_decoded_and_never_shown() {
        let target =
            RedisTarget::parse("redis://probe%40ops:p%3Ass%2Fw0rd@127.0.0.1:6380/ev%20ents")
                .expect("valid");
        assert_eq!(target.username.as_deref(), Some("probe@ops"));
        assert_eq!(target.password.as_deref(), Some("p:ss/w0rd"));
        assert_eq!(target.stream, "ev ents");
        assert_eq!(target.to_string(), "redis 127.0.0.1:6380/ev ents");
        let debug = format!("{target:?}");
        assert!(debug.contains("***") && !debug.contains("w0rd"), "{debug}");

        let default_user = RedisTarget::parse("redis://:s3cret@h/s").expect("valid");
        assert_eq!(default_user.username, None);
        assert_eq!(default_user.password.as_deref(), Some("s3cret"));

        let err = RedisTarget::parse("redis://u:s3cret@h:0/s").expect_err("port 0");
        assert_eq!(err.url, "redis://u:***@h:0/s");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn hostile_urls_never_show_the_password_in_the_error() {
        let hostile = [
            "redis://u:s3cret/stream",
            "redis://:s3cret/with/slash@h/s",
            "redis://:s3cret@h:x/s",
            "redis://:s3cret@h/s?db=1",
            "redis://:s3c@ret@h:0/s",
            "redis://:s3cret@[::1/s",
            "redis://u:s3cret@",
            "redis://:s3cret@h",
            "redis://:%73%33cret@h:x/s",
            "redis://:s3cret@h/",
            "redis://h:s3cret/s",
        ];
        for url in hostile {
            let err = RedisTarget::parse(url).expect_err(url);
            assert!(!err.to_string().contains("s3cret"), "{url}: {err}");
            assert!(!format!("{err:?}").contains("s3cret"), "{url}: {err:?}");
        }
        // A password from a file is hidden in the errors too.
        let err =
            RedisTarget::parse_with_default_password("redis://u@h:fr0m-file/s", Some("fr0m-file"))
                .expect_err("a bad port");
        assert!(!err.to_string().contains("fr0m-file"), "{err}");
    }

    #[test]
    fn a_default_password_is_used_only_when_the_url_has_none() {
        let target = RedisTarget::parse_with_default_password("redis://prober@h/s", Some("f1le"))
            .expect("a user and a password file");
        assert_eq!(target.username.as_deref(), Some("prober"));
        assert_eq!(target.password.as_deref(), Some("f1le"));
        let target = RedisTarget::parse_with_default_password("redis://h/s", Some("f1le"))
            .expect("the default user");
        assert_eq!(
            (target.username, target.password.as_deref()),
            (None, Some("f1le"))
        );
        let target = RedisTarget::parse_with_default_password("redis://:in-url@h/s", Some("f1le"))
            .expect("valid");
        assert_eq!(target.password.as_deref(), Some("in-url"));
        assert!(RedisTarget::parse_with_default_password("redis://u@h/s", None).is_err());
    }

    #[test]
    fn fields_hold_the_json_lines_values() {
        let event = HealthEvent {
            game_id: "g<1>".into(),
            container_id: "c1".into(),
            occurred_at: "2026-11-28T05:00:10.5Z"
                .parse::<Timestamp>()
                .expect("valid"),
            details: EventDetails::ProbeFailed {
                consecutive_failures: 3,
                last_status: 503,
                last_error: "unexpected status 503 & <more>".into(),
            },
        };
        let episode = "2026-11-28T05:00:00.25Z".parse().expect("valid");
        let fields = event_fields(&Outgoing::new(episode, event.clone())).expect("encodes");
        let mut line = Vec::new();
        write_event_line(&mut line, &event).expect("encodes");
        let line = String::from_utf8(line).expect("utf-8");
        let rebuilt = format!(
            r#"{{"game_id":{},"container_id":{},"event_type":"{}","occurred_at":"{}","details":{}}}"#,
            {
                let mut out = Vec::new();
                to_writer_go(&mut out, &fields[0].1).expect("encodes");
                String::from_utf8(out).expect("utf-8")
            },
            serde_json::to_string(&fields[1].1).expect("encodes"),
            fields[2].1,
            fields[3].1,
            fields[4].1
        );
        assert_eq!(format!("{rebuilt}\n"), line);
        let names: Vec<_> = fields.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                "game_id",
                "container_id",
                "event_type",
                "occurred_at",
                "details",
                "event_id"
            ]
        );
        assert_eq!(fields[0].1, "g<1>");
        assert_eq!(fields[3].1, "2026-11-28T05:00:10.5Z");
        assert_eq!(fields[5].1, "1795842000250000000:probe_failed:g<1>");
    }

    #[test]
    fn a_refused_connection_is_unavailable_naming_the_destination() {
        // A port nothing listens on: bind one, note it, free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut publisher = RedisStreamPublisher::new(
            target("127.0.0.1", port, "events"),
            10,
            &TlsClient::system(),
        )
        .expect("client");
        let event = HealthEvent {
            game_id: "g1".into(),
            container_id: "c1".into(),
            occurred_at: Timestamp::from_second(1_795_842_030).expect("valid"),
            details: EventDetails::ProbeRecovered {
                prior_failure_count: 4,
            },
        };
        let err = publisher
            .publish(&Outgoing::new(Timestamp::UNIX_EPOCH, event))
            .expect_err("nothing listens");
        assert_eq!(
            err.to_string(),
            format!("redis 127.0.0.1:{port}/events: connection refused")
        );
    }
}
