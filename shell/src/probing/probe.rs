//! One probe with ureq: `GET {engine_endpoint}/healthz` (R1, R2 decided by
//! the core), the whole call bounded by the probe timeout (R10), no
//! redirect followed (D2), no proxy, the response head capped at
//! [`MAX_RESPONSE_HEADER_BYTES`] (decrypted bytes over TLS). The texts of
//! `reason` word both probers' errors, so the two cannot drift apart.

use std::cell::Cell;
use std::error::Error as StdError;
use std::hash::{DefaultHasher, Hasher};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use healthprobe_core::{ProbeResult, probe_url};
use rustls::{ClientConnection, StreamOwned};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, TcpConnector,
    Transport, TransportAdapter,
};
use ureq::{Agent, Error};

use crate::probing::connections::{
    ConnectionPolicy, Connections, DRAIN_LIMIT, DRAIN_WAIT, KeptBudget, KeptPlace,
    closed_before_answer,
};
use crate::tls::{self, TlsClient, TlsFailure};

/// Largest response head (status line and headers) accepted; a bigger one is a failure.
pub const MAX_RESPONSE_HEADER_BYTES: usize = 16 * 1024;

/// Per-connection input buffer (ureq's default is 128 KiB): one byte more
/// than the largest accepted head, so a bigger one fills it and is refused
/// rather than stalling.
const INPUT_BUFFER_BYTES: usize = MAX_RESPONSE_HEADER_BYTES + 1;

/// Per-connection output buffer (ureq's default is 128 KiB): the request head.
const OUTPUT_BUFFER_BYTES: usize = 8 * 1024;

/// The `user-agent` both probers send.
pub(crate) const USER_AGENT: &str = concat!("healthprobe/", env!("CARGO_PKG_VERSION"));

/// Longest probe timeout handed to ureq, which panics on an instant past the clock's range.
pub(crate) const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The error texts of a probe that got no response, shared by both probers.
pub(crate) mod reason {
    pub(crate) const TIMEOUT: &str = "timeout";
    pub(crate) const CONNECTION_REFUSED: &str = "connection refused";
    pub(crate) const HOST_NOT_FOUND: &str = "host not found";
    /// Start of `cannot resolve host NAME: why`.
    pub(crate) const CANNOT_RESOLVE_HOST: &str = "cannot resolve host ";
    pub(crate) const CONNECTION_FAILED: &str = "connection failed";
    pub(crate) const NETWORK_UNREACHABLE: &str = "network unreachable";
    pub(crate) const HOST_UNREACHABLE: &str = "host unreachable";
    pub(crate) const ADDRESS_NOT_AVAILABLE: &str = "address not available";
}

pub use healthprobe_core::tick::ProbeClass;

/// Probes engines over HTTP/1.1 (and over TLS) through ureq [`Agent`]s as
/// they ship, and their pools. Shared by reference across probe threads.
#[derive(Debug, Clone)]
pub struct Prober {
    agents: Arc<Agents>,
    probe_timeout: Duration,
    connections: Connections,
}

/// Kept connections per agent, about: ureq's pool compares its idle
/// connections pairwise on every connect and return, so pools stay small.
const KEPT_PER_AGENT: usize = 4;

/// Most agents a prober spreads its engines over.
const MOST_AGENTS: usize = 16_384;

/// ureq agents of one configuration, made as first needed: an engine's
/// probes always go through the agent its address hashes to.
#[derive(Debug)]
struct Agents {
    config: Config,
    tls: TlsClient,
    budget: Arc<KeptBudget>,
    shards: Box<[OnceLock<Agent>]>,
}

impl Agents {
    /// The agent of the engine `url` names.
    fn of(&self, url: &str) -> &Agent {
        let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority = authority.split('/').next().unwrap_or_default();
        let mut hasher = DefaultHasher::new();
        for byte in authority.bytes() {
            hasher.write_u8(byte.to_ascii_lowercase());
        }
        let shard = (hasher.finish() % self.shards.len() as u64) as usize;
        self.shards[shard].get_or_init(|| {
            let connector =
                ().chain(TcpConnector::default())
                    .chain(TlsConnector(self.tls.clone()))
                    .chain(KeepingConnector(Arc::clone(&self.budget)));
            Agent::with_parts(self.config.clone(), connector, ClassifyingResolver)
        })
    }
}

impl Prober {
    /// A prober whose every probe is bounded by `probe_timeout` (at most a
    /// year), start to end, with the TLS of `tls` and the connections of `policy`.
    pub fn new(probe_timeout: Duration, tls: TlsClient, policy: ConnectionPolicy) -> Self {
        let probe_timeout = probe_timeout.min(MAX_PROBE_TIMEOUT);
        let config = Agent::config_builder()
            .proxy(None)
            .timeout_global(Some(probe_timeout))
            // A slower body is not waited for: its connection is not kept.
            .timeout_recv_body(Some(DRAIN_WAIT))
            .max_redirects(0)
            .http_status_as_error(false)
            .max_response_header_size(MAX_RESPONSE_HEADER_BYTES)
            .input_buffer_size(INPUT_BUFFER_BYTES)
            .output_buffer_size(OUTPUT_BUFFER_BYTES)
            .max_idle_connections(policy.max_idle)
            .max_idle_connections_per_host(1)
            .max_idle_age(policy.idle_timeout)
            .user_agent(USER_AGENT)
            .build();
        let shards = (policy.max_idle / KEPT_PER_AGENT).clamp(1, MOST_AGENTS);
        Self {
            agents: Arc::new(Agents {
                config,
                tls,
                budget: KeptBudget::new(policy.max_idle),
                shards: (0..shards).map(|_| OnceLock::new()).collect(),
            }),
            probe_timeout,
            connections: policy.connections,
        }
    }

    /// Probe one engine (R1, R2): the result, and its kind decided from the
    /// error's structure (ureq's error variant, the I/O error kind), not its
    /// text. Returns within the probe timeout, never panics.
    pub fn probe(&self, engine_endpoint: &str) -> (ProbeResult, ProbeClass) {
        let url = probe_url(engine_endpoint);
        let https = url
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
        let agent = self.agents.of(&url);
        let keep = self.connections.keeps(https);
        let started = Instant::now();
        CALL.set(Call {
            keep,
            ..Call::default()
        });
        let request = agent.get(&url);
        let mut response = if keep {
            request.call()
        } else {
            request.header("connection", "close").call()
        };
        let call = CALL.get();
        if let Err(Error::Io(io)) = &response
            && keep
            && !call.connected
            && !call.answered
            && closed_before_answer(io)
        {
            // The engine had closed the pooled connection: once more, on a
            // fresh one (the pool holds none for this engine now).
            let left = self.probe_timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                CALL.set(Call::default());
                return failed(ProbeClass::Timeout, reason::TIMEOUT.to_owned());
            }
            let retry = agent.get(&url).config().timeout_global(Some(left));
            response = retry.build().call();
        }
        CALL.set(Call::default());
        match response {
            Ok(mut response) => {
                // Read to the end (or fail and close): only a whole, small
                // body leaves the connection to ureq's pool. Without reuse
                // the body is dropped unread and the connection closes.
                if keep {
                    let _ = response
                        .body_mut()
                        .with_config()
                        .limit(DRAIN_LIMIT)
                        .read_to_vec();
                }
                answered(response.status().as_u16())
            }
            Err(err) => describe(&err),
        }
    }
}

/// What the probe on this thread asked of its connection and got (ureq
/// runs a call, connectors included, on the caller's thread).
#[derive(Debug, Clone, Copy, Default)]
struct Call {
    /// The probe may keep its connection.
    keep: bool,
    /// A fresh connection was made (none came from the pool).
    connected: bool,
    /// Some byte of an answer arrived.
    answered: bool,
}

thread_local! {
    static CALL: Cell<Call> = const {
        Cell::new(Call { keep: false, connected: false, answered: false })
    };
}

/// The last link of the connector chain: a new connection of a keeping
/// probe takes a place in the [`KeptBudget`] if one is left; only one with
/// a place may be pooled.
#[derive(Debug)]
struct KeepingConnector(Arc<KeptBudget>);

impl<In: Transport> Connector<In> for KeepingConnector {
    type Out = Keeping<In>;

    fn connect(
        &self,
        _details: &ConnectionDetails<'_>,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        let call = CALL.get();
        CALL.set(Call {
            connected: true,
            ..call
        });
        let place = if call.keep { self.0.admit() } else { None };
        Ok(chained.map(|inner| Keeping { inner, place }))
    }
}

/// A connection, and its place among the kept ones if it has one.
#[derive(Debug)]
struct Keeping<T> {
    inner: T,
    place: Option<KeptPlace>,
}

impl<T: Transport> Transport for Keeping<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        self.inner.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let more = self.inner.await_input(timeout)?;
        if more {
            CALL.set(Call {
                answered: true,
                ..CALL.get()
            });
        }
        Ok(more)
    }

    fn is_open(&mut self) -> bool {
        self.place.is_some() && self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

/// The outcome of an answer with `status` (R1, decided by the core) and its class.
pub(crate) fn answered(status: u16) -> (ProbeResult, ProbeClass) {
    let result = ProbeResult::from_status(status);
    let class = if result.is_healthy() {
        ProbeClass::Ok
    } else {
        ProbeClass::BadStatus
    };
    (result, class)
}

/// The error text of a response head longer than `limit` bytes.
pub(crate) fn head_too_large(limit: usize) -> String {
    format!("response header larger than {limit} bytes")
}

/// A failure with no response (status 0) of `class`.
pub(crate) fn failed(class: ProbeClass, error: String) -> (ProbeResult, ProbeClass) {
    (ProbeResult::Unhealthy { status: 0, error }, class)
}

/// The failure of a probe that got no usable response, by ureq's error.
fn describe(err: &Error) -> (ProbeResult, ProbeClass) {
    let (class, error) = match err {
        Error::Timeout(_) => (ProbeClass::Timeout, reason::TIMEOUT.to_owned()),
        Error::Io(io) => describe_error(io, None, false),
        Error::HostNotFound => (ProbeClass::ConnectError, reason::HOST_NOT_FOUND.to_owned()),
        Error::LargeResponseHeader(_, limit) => (ProbeClass::Other, head_too_large(*limit)),
        Error::Protocol(err) => (ProbeClass::Other, format!("malformed response: {err}")),
        Error::BadUri(reason) => (ProbeClass::Other, format!("bad engine endpoint: {reason}")),
        Error::Http(err) => (ProbeClass::Other, format!("bad engine endpoint: {err}")),
        Error::ConnectionFailed => (
            ProbeClass::ConnectError,
            reason::CONNECTION_FAILED.to_owned(),
        ),
        other => (ProbeClass::Other, other.to_string()),
    };
    failed(class, error)
}

/// The class and reason of a failure (both probers), from the error types
/// in its chain: a failed lookup, a TLS failure (worded for `host`), else
/// the innermost I/O error's kind, which while `handshaking` is the TLS
/// handshake's if it can be.
pub(crate) fn describe_error(
    err: &(dyn StdError + 'static),
    host: Option<&str>,
    handshaking: bool,
) -> (ProbeClass, String) {
    let mut innermost_io = None;
    for current in tls::error_chain(err) {
        if let Some(lookup) = current.downcast_ref::<ResolveFailed>() {
            return (ProbeClass::ConnectError, lookup.0.clone());
        }
        if let Some(failure) = current.downcast_ref::<TlsFailure>() {
            return (ProbeClass::Tls, failure.0.clone());
        }
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return (ProbeClass::Tls, tls::describe_tls(tls, host));
        }
        innermost_io = current.downcast_ref::<io::Error>().or(innermost_io);
    }
    let Some(io) = innermost_io else {
        return (ProbeClass::Other, err.to_string());
    };
    if handshaking && let Some(text) = tls::handshake_failure(io) {
        return (ProbeClass::Tls, text);
    }
    describe_io(io)
}

/// The class and reason of an I/O error, by its [`io::ErrorKind`].
pub(crate) fn describe_io(err: &io::Error) -> (ProbeClass, String) {
    use io::ErrorKind::*;
    let (class, reason) = match err.kind() {
        ConnectionRefused => (ProbeClass::ConnectError, reason::CONNECTION_REFUSED),
        ConnectionReset => (ProbeClass::Other, "connection reset by peer"),
        ConnectionAborted => (ProbeClass::Other, "connection aborted"),
        UnexpectedEof => (
            ProbeClass::Other,
            "connection closed before a complete response",
        ),
        TimedOut | WouldBlock => (ProbeClass::Timeout, reason::TIMEOUT),
        BrokenPipe => (
            ProbeClass::Other,
            "connection closed while sending the request",
        ),
        AddrNotAvailable => (ProbeClass::ConnectError, reason::ADDRESS_NOT_AVAILABLE),
        NetworkUnreachable => (ProbeClass::ConnectError, reason::NETWORK_UNREACHABLE),
        HostUnreachable => (ProbeClass::ConnectError, reason::HOST_UNREACHABLE),
        _ => return (ProbeClass::Other, err.to_string()),
    };
    (class, reason.to_owned())
}

/// TLS for `https://` probes with the run's [`TlsClient::probe_config`]:
/// ureq's own rustls connector builds its configuration itself and cannot
/// turn session resumption off. A failed handshake is a [`TlsFailure`]
/// worded for the host.
#[derive(Debug)]
struct TlsConnector(TlsClient);

impl<In: Transport> Connector<In> for TlsConnector {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails<'_>,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details
            .uri
            .authority()
            .map(|authority| authority.host())
            .unwrap_or_default();
        let tls_error = |text: String| Error::Io(io::Error::other(TlsFailure(text)));
        let name = tls::server_name(host).map_err(tls_error)?;
        let mut conn = ClientConnection::new(self.0.probe_config(), name)
            .map_err(|err| tls_error(tls::describe_tls(&err, Some(host))))?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)
            .map_err(|io| match Error::from(io) {
                Error::Timeout(_) => tls_error(tls::handshake_timeout()),
                Error::Io(io) => match describe_error(&io, Some(host), true) {
                    (ProbeClass::Tls, text) => tls_error(text),
                    _ => Error::Io(io),
                },
                other => other,
            })?;
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(TlsTransport {
            buffers,
            stream: StreamOwned::new(conn, sock),
        })))
    }
}

/// An established TLS connection, as ureq's HTTP/1.1 code sees it.
struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport").finish_non_exhaustive()
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// A failed name lookup, worded `cannot resolve host NAME: why`, carried
/// inside an [`io::Error`] so the probe knows its kind without reading the text.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ResolveFailed(pub(crate) String);

impl ResolveFailed {
    pub(crate) fn new(host: &str, why: &dyn std::fmt::Display) -> Self {
        Self(format!("{}{host}: {why}", reason::CANNOT_RESOLVE_HOST))
    }
}

/// ureq's resolver, its failures carried as [`ResolveFailed`], and an IP
/// address taken as it is (ureq's starts a thread per lookup, even of one).
#[derive(Debug)]
struct ClassifyingResolver;

impl Resolver for ClassifyingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, Error> {
        let host = uri.host().unwrap_or_default();
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        let default_port = match uri.scheme_str() {
            Some(scheme) if scheme.eq_ignore_ascii_case("https") => Some(443),
            Some(scheme) if scheme.eq_ignore_ascii_case("http") => Some(80),
            _ => None,
        };
        if let (Ok(ip), Some(port)) = (
            bare.unwrap_or(host).parse::<IpAddr>(),
            uri.port_u16().or(default_port),
        ) {
            let mut addrs = self.empty();
            addrs.push(SocketAddr::new(ip, port));
            return Ok(addrs);
        }
        DefaultResolver::default()
            .resolve(uri, config, timeout)
            .map_err(|err| match err {
                Error::Io(io) => {
                    Error::Io(io::Error::new(io.kind(), ResolveFailed::new(host, &io)))
                }
                other => other,
            })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn unhealthy(status: u16, error: String) -> ProbeResult {
        ProbeResult::Unhealthy { status, error }
    }

    /// An `https://` endpoint on a port nobody listens on (both probers' tests).
    pub(crate) const HTTPS_CLOSED_PORT: &str = "HTTPS://127.0.0.1:1/";

    /// Endpoints no prober can use (both probers' tests).
    pub(crate) const BAD_ENDPOINTS: [&str; 5] = [
        "",
        "not a url",
        "ftp://127.0.0.1:1",
        "http://",
        "http://[::1",
    ];

    /// A prober keeping every connection, with a short timeout.
    fn test_prober() -> Prober {
        let policy = ConnectionPolicy::new(Connections::Keep, Duration::from_secs(1), 16);
        Prober::new(Duration::from_millis(200), TlsClient::system(), policy)
    }

    #[test]
    fn describe_io_classes_each_kind_of_io_error() {
        use io::ErrorKind::*;
        let cases = [
            (TimedOut, ProbeClass::Timeout),
            (WouldBlock, ProbeClass::Timeout),
            (ConnectionRefused, ProbeClass::ConnectError),
            (AddrNotAvailable, ProbeClass::ConnectError),
            (NetworkUnreachable, ProbeClass::ConnectError),
            (HostUnreachable, ProbeClass::ConnectError),
            (ConnectionReset, ProbeClass::Other),
            (ConnectionAborted, ProbeClass::Other),
            (UnexpectedEof, ProbeClass::Other),
            (BrokenPipe, ProbeClass::Other),
            (InvalidData, ProbeClass::Other),
        ];
        for (kind, class) in cases {
            let (kind_class, error) = describe_io(&io::Error::new(kind, "detail"));
            assert_eq!(kind_class, class, "{kind:?}: {error}");
        }
        let lookup = ResolveFailed::new("engine.invalid", &"no such host").0;
        let carried = io::Error::other(ResolveFailed(lookup.clone()));
        let (class, text) = describe_error(&carried, None, false);
        assert_eq!((class, text), (ProbeClass::ConnectError, lookup));
    }

    #[test]
    fn probe_class_labels_are_distinct_and_snake_case() {
        let labels: Vec<_> = ProbeClass::ALL
            .iter()
            .map(|class| class.to_string())
            .collect();
        assert_eq!(
            labels,
            [
                "ok",
                "bad_status",
                "timeout",
                "connect_error",
                "tls_error",
                "other"
            ]
        );
    }

    #[test]
    fn https_to_a_closed_port_is_a_connect_error_before_any_tls() {
        let prober = test_prober();
        assert_eq!(
            prober.probe(HTTPS_CLOSED_PORT),
            (
                unhealthy(0, reason::CONNECTION_REFUSED.to_owned()),
                ProbeClass::ConnectError
            )
        );
    }

    #[test]
    fn bad_endpoints_fail_without_panicking() {
        let prober = test_prober();
        for endpoint in BAD_ENDPOINTS {
            match prober.probe(endpoint).0 {
                ProbeResult::Unhealthy { status: 0, error } => {
                    assert!(!error.is_empty(), "{endpoint:?}");
                }
                other => panic!("{endpoint:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn ip_addresses_resolve_in_place_with_their_scheme_s_port() {
        let resolve = |url: &str| {
            let uri: Uri = url.parse().expect("test uri");
            let timeout = NextTimeout {
                after: ureq::unversioned::transport::time::Duration::Exact(Duration::from_secs(1)),
                ..NextTimeout::default()
            };
            ClassifyingResolver
                .resolve(&uri, &Config::default(), timeout)
                .map(|addrs| addrs.iter().map(ToString::to_string).collect::<Vec<_>>())
                .map_err(|err| describe(&err).1)
        };
        assert_eq!(
            resolve("http://127.0.0.1:8080/healthz"),
            Ok(vec!["127.0.0.1:8080".to_owned()])
        );
        assert_eq!(
            resolve("http://[::1]:9/healthz"),
            Ok(vec!["[::1]:9".to_owned()])
        );
        assert_eq!(
            resolve("http://10.1.2.3/healthz"),
            Ok(vec!["10.1.2.3:80".to_owned()])
        );
        assert_eq!(
            resolve("https://10.1.2.3/healthz"),
            Ok(vec!["10.1.2.3:443".to_owned()])
        );
        assert_eq!(
            resolve("http://engine.invalid:7/healthz"),
            Err(ProbeClass::ConnectError)
        );
    }
}
