//! A real `redis-server` on loopback for the Redis Streams tests.
//!
//! [`TestRedis`] runs Debian's `redis-server` (or the one `REDIS_SERVER`
//! names) on `127.0.0.1` and a free port, without persistence, in a scratch
//! directory; it can be stopped and started again on the same port (an
//! outage), and it is stopped on drop. Readiness is a `PING` answered, polled
//! with a deadline.
//!
//! [`TestRedis::start_tls`] listens with TLS only (`--tls-port`, `--port
//! 0`), presenting a given certificate and asking no client certificate;
//! the test's own connections then trust the CA given with it.

use std::io;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use healthprobe_core::HealthEvent;
use redis::{ConnectionAddr, TlsCertificates, Value};

use crate::tls::{CertifiedKey, TestCa};
use crate::{ScratchDir, free_port, wait_until};

/// Bound on a start: the server binding its port and answering `PING`.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A `redis-server` on `127.0.0.1:port`, killed on drop.
#[derive(Debug)]
pub struct TestRedis {
    port: u16,
    dir: ScratchDir,
    /// Over TLS only: the PEM of the CA the test's connections trust, and
    /// the name they connect as (the certificate must be valid for it).
    tls_ca: Option<(String, String)>,
    server: Option<Child>,
    starts: u32,
}

/// One stream entry as read back: its id and its field-value pairs in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// The entry's id (`1700000000000-0`).
    pub id: String,
    /// Its fields, in the order they were added.
    pub fields: Vec<(String, String)>,
}

impl StreamEntry {
    /// The field names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.fields.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// The value of `name`, if the entry has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }

    /// The event the entry holds: its fields assembled into the JSON
    /// envelope (`details` is JSON text already) and parsed.
    pub fn event(&self) -> Result<HealthEvent, String> {
        let mut envelope = serde_json::Map::new();
        for (name, value) in &self.fields {
            let value = if name == "details" {
                serde_json::from_str(value)
                    .map_err(|err| format!("entry {}: details `{value}`: {err}", self.id))?
            } else {
                serde_json::Value::String(value.clone())
            };
            envelope.insert(name.clone(), value);
        }
        serde_json::from_value(serde_json::Value::Object(envelope))
            .map_err(|err| format!("entry {}: {err}", self.id))
    }
}

impl TestRedis {
    /// Start a server on a free port. Panics with the reason if it cannot
    /// (saying to install Debian's `redis-server` when it is missing).
    pub fn start() -> Self {
        match Self::try_start() {
            Ok(redis) => redis,
            Err(reason) => panic!("cannot start redis-server: {reason}"),
        }
    }

    /// [`TestRedis::start`], or why it could not start.
    pub fn try_start() -> Result<Self, String> {
        Self::try_start_with(None)
    }

    /// A server listening with TLS only, presenting `cert` (whose
    /// `ca` the test's own connections trust), asking no client
    /// certificate. Panics with the reason if it cannot start.
    /// The test's own connections go to `127.0.0.1`, which `cert` must name.
    pub fn start_tls(cert: &CertifiedKey, ca: &TestCa) -> Self {
        Self::start_tls_as(cert, ca, "127.0.0.1")
    }

    /// [`TestRedis::start_tls`] with the test's own connections made to
    /// `host` (which must resolve to 127.0.0.1 and be named by `cert`):
    /// for a certificate that does not name 127.0.0.1.
    pub fn start_tls_as(cert: &CertifiedKey, ca: &TestCa, host: &str) -> Self {
        match Self::try_start_with(Some((cert, ca, host))) {
            Ok(redis) => redis,
            Err(reason) => panic!("cannot start redis-server with TLS: {reason}"),
        }
    }

    fn try_start_with(tls: Option<(&CertifiedKey, &TestCa, &str)>) -> Result<Self, String> {
        let mut last = String::new();
        // A free port can be taken between finding it and the server binding it.
        for _ in 0..3 {
            let mut redis = Self {
                port: free_port(),
                dir: ScratchDir::new("redis").map_err(|err| format!("scratch directory: {err}"))?,
                tls_ca: None,
                server: None,
                starts: 0,
            };
            if let Some((cert, ca, host)) = tls {
                let written = cert
                    .write(&redis.dir.join("server.crt"), &redis.dir.join("server.key"))
                    .and_then(|()| ca.write_cert(&redis.dir.join("ca.crt")));
                written.map_err(|err| format!("cannot write the certificates: {err}"))?;
                redis.tls_ca = Some((ca.cert_pem().to_owned(), host.to_owned()));
            }
            match redis.restart() {
                Ok(()) => return Ok(redis),
                Err(reason) if reason.contains("not found: install") => return Err(reason),
                Err(reason) => last = reason,
            }
        }
        Err(last)
    }

    /// The port the server listens on (the same after [`TestRedis::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/STREAM` (`rediss://` over TLS), for `--events`.
    pub fn url(&self, stream: &str) -> String {
        let scheme = if self.tls_ca.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/{stream}", self.port)
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.server
            .as_mut()
            .is_some_and(|server| matches!(server.try_wait(), Ok(None)))
    }

    /// Kill the server and wait for it to exit: its port refuses connections
    /// until [`TestRedis::restart`]. Without persistence, its data is gone.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Freeze the server (SIGSTOP) until [`TestRedis::resume`]: its
    /// connections stay open and the kernel still accepts and buffers, but
    /// nothing is answered — a server that stalls for exactly as long as the
    /// test needs.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Let a [`TestRedis::pause`]d server go on (SIGCONT): it reads what
    /// was sent meanwhile and answers it.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let server = self.server.as_ref().expect("redis-server is running");
        crate::process::signal_child(server, signal)
            .unwrap_or_else(|err| panic!("signal {signal} to redis-server: {err}"));
    }

    /// Start the server again on the same port and wait until it answers.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.starts += 1;
        let log = self.dir.join(&format!("redis-{}.log", self.starts));
        let binary = crate::servers::redis_server_program();
        let mut command = Command::new(&binary);
        if self.tls_ca.is_some() {
            command
                .args(["--port", "0", "--tls-port"])
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(self.dir.join("server.crt"))
                .arg("--tls-key-file")
                .arg(self.dir.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(self.dir.join("ca.crt"))
                .args(["--tls-auth-clients", "no"]);
        } else {
            command.arg("--port").arg(self.port.to_string());
        }
        let server = command
            .args(["--bind", "127.0.0.1", "--protected-mode", "yes"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--loglevel", "notice"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| match err.kind() {
                io::ErrorKind::NotFound => format!(
                    "`{}` not found: install Debian's `redis-server` package \
                     (apt-get install redis-server) or set REDIS_SERVER to its path",
                    binary.display()
                ),
                _ => format!("cannot run `{}`: {err}", binary.display()),
            })?;
        self.server = Some(server);
        let port = self.port;
        let tls_ca = self.tls_ca.clone();
        let mut exited = None;
        let ready = wait_until(READY_WITHIN, || {
            match self.server.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => {
                    exited = Some(status);
                    return true;
                }
                Some(Err(_)) | None => return true,
                Some(Ok(None)) => {}
            }
            ping(port, tls_ca.as_ref())
        });
        let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(status) = exited {
            self.server = None;
            return Err(format!(
                "redis-server on port {port} exited ({status}):\n{}",
                log_text()
            ));
        }
        if !ready {
            self.kill();
            return Err(format!(
                "redis-server on port {port} did not answer PING within {READY_WITHIN:?}:\n{}",
                log_text()
            ));
        }
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }

    /// A new connection to the server (timeouts of a few seconds).
    pub fn client(&self) -> redis::Connection {
        connect(self.port, self.tls_ca.as_ref(), Duration::from_secs(5))
            .unwrap_or_else(|err| panic!("cannot connect to redis on port {}: {err}", self.port))
    }

    /// Run one command on a new connection; panics if it fails.
    pub fn command(&self, args: &[&str]) -> Value {
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command
            .query(&mut self.client())
            .unwrap_or_else(|err| panic!("redis {args:?}: {err}"))
    }

    /// Every entry of `stream`, oldest first (`XRANGE stream - +`).
    pub fn entries(&self, stream: &str) -> Vec<StreamEntry> {
        let reply = self.command(&["XRANGE", stream, "-", "+"]);
        parse_entries(&reply).unwrap_or_else(|reason| panic!("XRANGE {stream}: {reason}"))
    }

    /// The events of `stream`, oldest first; panics on an entry that is not one.
    pub fn events(&self, stream: &str) -> Vec<HealthEvent> {
        self.entries(stream)
            .iter()
            .map(|entry| entry.event().unwrap_or_else(|reason| panic!("{reason}")))
            .collect()
    }

    /// `XLEN stream`.
    pub fn len(&self, stream: &str) -> usize {
        match self.command(&["XLEN", stream]) {
            Value::Int(len) => usize::try_from(len).expect("a length"),
            other => panic!("XLEN {stream}: unexpected reply {other:?}"),
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A connection to `127.0.0.1:port`, or over TLS to `host:port` trusting
/// `ca` (PEM) if `tls_ca` is `(ca, host)`.
fn connect(
    port: u16,
    tls_ca: Option<&(String, String)>,
    timeout: Duration,
) -> redis::RedisResult<redis::Connection> {
    let client = match tls_ca {
        None => redis::Client::open(ConnectionAddr::Tcp("127.0.0.1".to_owned(), port))?,
        Some((ca, host)) => redis::Client::build_with_tls(
            ConnectionAddr::TcpTls {
                host: host.clone(),
                port,
                insecure: false,
                tls_params: None,
            },
            TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.as_bytes().to_vec()),
            },
        )?,
    };
    let connection = client.get_connection_with_timeout(timeout)?;
    connection.set_read_timeout(Some(timeout))?;
    connection.set_write_timeout(Some(timeout))?;
    Ok(connection)
}

/// Whether a server on `port` answers `PING` within a short bound.
fn ping(port: u16, tls_ca: Option<&(String, String)>) -> bool {
    connect(port, tls_ca, Duration::from_millis(500))
        .and_then(|mut connection| redis::cmd("PING").query::<String>(&mut connection))
        .is_ok_and(|pong| pong == "PONG")
}

fn text(value: &Value) -> Result<String, String> {
    match value {
        Value::BulkString(bytes) => {
            String::from_utf8(bytes.clone()).map_err(|err| format!("not UTF-8: {err}"))
        }
        Value::SimpleString(text) => Ok(text.clone()),
        other => Err(format!("expected a string, got {other:?}")),
    }
}

fn parse_entries(reply: &Value) -> Result<Vec<StreamEntry>, String> {
    let Value::Array(entries) = reply else {
        return Err(format!("expected an array, got {reply:?}"));
    };
    entries
        .iter()
        .map(|entry| match entry {
            Value::Array(pair) if pair.len() == 2 => {
                let Value::Array(values) = &pair[1] else {
                    return Err(format!("expected the fields array, got {:?}", pair[1]));
                };
                if values.len() % 2 != 0 {
                    return Err(format!("odd number of field values: {values:?}"));
                }
                Ok(StreamEntry {
                    id: text(&pair[0])?,
                    fields: values
                        .chunks(2)
                        .map(|kv| Ok((text(&kv[0])?, text(&kv[1])?)))
                        .collect::<Result<_, String>>()?,
                })
            }
            other => Err(format!("expected [id, fields], got {other:?}")),
        })
        .collect()
}
