//! One probe: `GET {engine_endpoint}/healthz` with ureq, bounded in time and memory.
//!
//! - R1: healthy only for status 200; any other status is
//!   `unexpected status N`; no response at all is status 0 with a readable
//!   error (`timeout`, `connection refused`, ...).
//! - R2: the URL is the endpoint with every trailing `/` trimmed, then `/healthz`.
//! - R10: the whole call (resolve, connect, send, response headers) is bounded
//!   by the probe timeout.
//! - D2: redirects are not followed; a 3xx is `unexpected status 3xx`.
//! - The body is never read; response headers are capped at
//!   [`MAX_RESPONSE_HEADER_BYTES`]; proxy settings from the environment are ignored.
//! - `https://` endpoints are probed over TLS ([`crate::tls`]): the
//!   handshake is part of the probe and of its timeout, a TLS failure is
//!   status 0 with a `tls: …` error and [`ProbeClass::Tls`], and the 16 KiB
//!   head cap counts decrypted bytes.
//! - [`classify`] sorts a result into a [`ProbeClass`] for metrics. The
//!   error texts it recognises are the constants of [`reason`], which both
//!   probers use to word their errors, so the two cannot drift apart.

use std::cell::Cell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use std::io::{Read, Write};

use healthprobe_core::ProbeResult;
use rustls::ClientConnection;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, ShutdownHandle,
    TcpConnector, Transport, TransportAdapter,
};
use ureq::{Agent, Error};

use crate::reuse::{
    self, ConnectionReuse, DRAIN_LIMIT, DRAIN_WAIT, IdlePool, closed_before_answer,
};
use crate::tls::{self, TlsClient, TlsFailure};

/// The path appended to every engine endpoint.
pub const HEALTHZ_PATH: &str = "/healthz";

/// Largest response head (status line and headers) accepted; a bigger one is a failure.
pub const MAX_RESPONSE_HEADER_BYTES: usize = 16 * 1024;

/// Per-connection input buffer: one byte more than the largest accepted response
/// head, so that a bigger head fills it and is refused as too large.
const INPUT_BUFFER_BYTES: usize = MAX_RESPONSE_HEADER_BYTES + 1;

/// Per-connection output buffer: holds the request head (`GET`, long URLs
/// included); the longest request line either prober can send.
pub(crate) const OUTPUT_BUFFER_BYTES: usize = 8 * 1024;

/// The `user-agent` both probers send.
pub(crate) const USER_AGENT: &str = concat!("healthprobe/", env!("CARGO_PKG_VERSION"));

/// Longest probe timeout handed to ureq, which panics on an instant past the clock's range.
pub const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The error texts of a probe that got no response, shared by both probers and [`classify`].
pub mod reason {
    /// The probe timeout passed (R10).
    pub const TIMEOUT: &str = "timeout";
    /// Nothing listens on the engine's port.
    pub const CONNECTION_REFUSED: &str = "connection refused";
    /// The engine's name resolved to no address.
    pub const HOST_NOT_FOUND: &str = "host not found";
    /// Start of the error of a failed name lookup: `cannot resolve host NAME: why`.
    pub const CANNOT_RESOLVE_HOST: &str = "cannot resolve host ";
    /// Every address of the engine failed to connect.
    pub const CONNECTION_FAILED: &str = "connection failed";
    /// No route to the engine's network.
    pub const NETWORK_UNREACHABLE: &str = "network unreachable";
    /// No route to the engine's host.
    pub const HOST_UNREACHABLE: &str = "host unreachable";
    /// The local address cannot be used (ephemeral ports exhausted, ...).
    pub const ADDRESS_NOT_AVAILABLE: &str = "address not available";

    /// The errors of a connection that could not be made (besides
    /// [`CANNOT_RESOLVE_HOST`], a prefix).
    pub(crate) const CONNECT_ERRORS: [&str; 6] = [
        CONNECTION_REFUSED,
        HOST_NOT_FOUND,
        CONNECTION_FAILED,
        NETWORK_UNREACHABLE,
        HOST_UNREACHABLE,
        ADDRESS_NOT_AVAILABLE,
    ];
}

pub use healthprobe_core::tick::ProbeClass;

/// The class of a result known only by its text (a journal line, a
/// simulation): healthy is [`ProbeClass::Ok`]; an unhealthy result with a
/// status is [`ProbeClass::BadStatus`]; without one (status 0), its error
/// text decides, as worded by [`reason`]. The probers do not use it: they
/// decide the class from the error's structure ([`Prober::probe_classified`]).
///
/// ```
/// use healthprobe_core::ProbeResult;
/// use healthprobe_shell::probe::{ProbeClass, classify};
/// let refused = ProbeResult::Unhealthy { status: 0, error: "connection refused".into() };
/// assert_eq!(classify(&refused), ProbeClass::ConnectError);
/// ```
pub fn classify(result: &ProbeResult) -> ProbeClass {
    match result {
        ProbeResult::Healthy => ProbeClass::Ok,
        ProbeResult::Unhealthy { status, .. } if *status != 0 => ProbeClass::BadStatus,
        ProbeResult::Unhealthy { error, .. } if error == reason::TIMEOUT => ProbeClass::Timeout,
        ProbeResult::Unhealthy { error, .. }
            if reason::CONNECT_ERRORS.contains(&error.as_str())
                || error.starts_with(reason::CANNOT_RESOLVE_HOST) =>
        {
            ProbeClass::ConnectError
        }
        ProbeResult::Unhealthy { error, .. } if tls::is_tls_error(error) => ProbeClass::Tls,
        ProbeResult::Unhealthy { .. } => ProbeClass::Other,
    }
}

/// The URL probed for an engine endpoint (R2): every trailing `/` trimmed, then `/healthz`.
///
/// ```
/// use healthprobe_shell::probe::probe_url;
/// assert_eq!(probe_url("http://10.0.0.1:8080//"), "http://10.0.0.1:8080/healthz");
/// ```
pub fn probe_url(engine_endpoint: &str) -> String {
    let base = engine_endpoint.trim_end_matches('/');
    let mut url = String::with_capacity(base.len() + HEALTHZ_PATH.len());
    url.push_str(base);
    url.push_str(HEALTHZ_PATH);
    url
}

/// The error text of a non-200 status (R1): exactly `unexpected status N`.
pub fn unexpected_status(status: u16) -> String {
    format!("unexpected status {status}")
}

/// Probes engines over HTTP/1.1 (and HTTP/1.1 over TLS) through one shared ureq [`Agent`].
///
/// Cheap to share by reference across probe threads (`Sync`). By default
/// every probe opens a fresh connection, sends `Connection: close` and
/// drops it after the response head, as the reference does. With
/// [`Prober::with_options`] and a [`ConnectionReuse`], a probe reuses the
/// engine's idle connection from the last one ([`crate::reuse`]).
#[derive(Debug, Clone)]
pub struct Prober {
    agent: Agent,
    /// When connections are reused: the probe timeout (a retry gets what
    /// is left of it) and the bound on idle connections.
    reuse: Option<(Duration, ConnectionReuse)>,
}

impl Prober {
    /// A prober whose every probe is bounded by `probe_timeout`, start to
    /// end, trusting the system store for `https://` engines.
    ///
    /// A timeout above [`MAX_PROBE_TIMEOUT`] (a year) is treated as a year.
    pub fn new(probe_timeout: Duration) -> Self {
        Self::with_tls(probe_timeout, TlsClient::system())
    }

    /// [`Prober::new`] with the trust and client certificate of `tls`.
    pub fn with_tls(probe_timeout: Duration, tls: TlsClient) -> Self {
        Self::with_options(probe_timeout, tls, None)
    }

    /// [`Prober::with_tls`], keeping idle connections between probes when
    /// `reuse` is given ([`crate::reuse`]).
    pub fn with_options(
        probe_timeout: Duration,
        tls: TlsClient,
        reuse: Option<ConnectionReuse>,
    ) -> Self {
        let probe_timeout = probe_timeout.min(MAX_PROBE_TIMEOUT);
        let config = Agent::config_builder()
            .proxy(None)
            .timeout_global(Some(probe_timeout))
            .max_redirects(0)
            .http_status_as_error(false)
            .max_response_header_size(MAX_RESPONSE_HEADER_BYTES)
            .input_buffer_size(INPUT_BUFFER_BYTES)
            .output_buffer_size(OUTPUT_BUFFER_BYTES)
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .user_agent(USER_AGENT);
        let connector = ().chain(TcpConnector::default()).chain(TlsConnector { tls });
        match reuse {
            None => Self {
                agent: Agent::with_parts(config.build(), connector, LiteralResolver),
                reuse: None,
            },
            Some(reuse) => {
                // A body slower than DRAIN_WAIT is not waited for (the
                // outcome is known): the connection is just not kept.
                let config = config.timeout_recv_body(Some(DRAIN_WAIT)).build();
                // ureq's own pool stays empty (its bookkeeping is quadratic
                // in the idle connections); ours takes them back on drop.
                let connector =
                    ReuseConnector::new(connector, Arc::new(IdlePool::new(reuse.max_idle)));
                Self {
                    agent: Agent::with_parts(config, connector, LiteralResolver),
                    reuse: Some((probe_timeout, reuse)),
                }
            }
        }
    }

    /// The most idle connections kept between probes, when they are.
    pub fn max_idle_connections(&self) -> Option<usize> {
        self.reuse.map(|(_, reuse)| reuse.max_idle)
    }

    /// Probe one engine: `GET {engine_endpoint}/healthz` (R2), healthy iff status 200 (R1).
    ///
    /// Never panics and never reads the response body; returns within the
    /// probe timeout (plus scheduling noise).
    pub fn probe(&self, engine_endpoint: &str) -> ProbeResult {
        self.probe_classified(engine_endpoint).0
    }

    /// [`Prober::probe`], with the kind of outcome decided from the error's
    /// structure (ureq's error variant, the I/O error kind), not its text.
    pub fn probe_classified(&self, engine_endpoint: &str) -> (ProbeResult, ProbeClass) {
        let url = probe_url(engine_endpoint);
        if let Some((probe_timeout, _)) = self.reuse {
            return self.probe_reusing(&url, probe_timeout);
        }
        let response = self
            .agent
            .get(url.as_str())
            .header("connection", "close")
            .call();
        match response {
            // The body is dropped unread: the connection closes with it.
            Ok(response) => answered(response.status().as_u16()),
            Err(err) => {
                let (class, error) = describe(&err);
                failed(class, error)
            }
        }
    }
}

impl Prober {
    /// A probe that may go over the engine's idle connection: retried once
    /// on a fresh connection when the engine had closed that one before
    /// answering; the body read to its end (up to [`DRAIN_LIMIT`]) so the
    /// connection can be kept.
    fn probe_reusing(&self, url: &str, probe_timeout: Duration) -> (ProbeResult, ProbeClass) {
        let started = Instant::now();
        TRACE.set(Trace::default());
        let mut response = self.agent.get(url).call();
        let trace = TRACE.get();
        if let Err(Error::Io(io)) = &response
            && trace.reused
            && !trace.answered
            && closed_before_answer(io)
        {
            let left = probe_timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return failed(ProbeClass::Timeout, reason::TIMEOUT.to_owned());
            }
            TRACE.set(Trace {
                fresh_only: true,
                ..Trace::default()
            });
            response = self
                .agent
                .get(url)
                .config()
                .timeout_global(Some(left))
                .build()
                .call();
            TRACE.set(Trace::default());
        }
        match response {
            Ok(mut response) => {
                let status = response.status().as_u16();
                // Read to the end (or fail and close): only a whole,
                // small body leaves the connection reusable.
                let _ = response
                    .body_mut()
                    .with_config()
                    .limit(DRAIN_LIMIT)
                    .read_to_vec();
                answered(status)
            }
            Err(err) => {
                let (class, error) = describe(&err);
                failed(class, error)
            }
        }
    }
}

/// What the current probe on this thread did with its connection (ureq
/// runs a call on the calling thread, connectors and transports included).
#[derive(Debug, Clone, Copy, Default)]
struct Trace {
    /// The connection came from the pool.
    reused: bool,
    /// Some response byte arrived on it.
    answered: bool,
    /// This is the retry: do not take from the pool.
    fresh_only: bool,
}

thread_local! {
    static TRACE: Cell<Trace> = const {
        Cell::new(Trace { reused: false, answered: false, fresh_only: false })
    };
}

type Idle = IdlePool<Box<dyn Transport>>;

/// Hands out the engine's idle connection when it has one that is still
/// open, a fresh one from `inner` otherwise; either comes wrapped in a
/// [`Reusable`] that goes back to the pool if ureq finds it reusable.
///
/// Fresh connections are made without registering a shutdown handle with
/// the agent: ureq keeps one per live connection and walks them all on
/// every call, which with hundreds of kept connections was 6.5% of a run's
/// samples (perf, 1,000 engines); this prober never calls
/// `Agent::shutdown`, which is all they are for.
struct ReuseConnector<C> {
    inner: C,
    pool: Arc<Idle>,
    no_shutdown_handles: Arc<NoShutdownHandles>,
}

type NoShutdownHandles =
    dyn Fn(Weak<dyn ShutdownHandle>) -> Result<(), Error> + Send + Sync + 'static;

impl<C> ReuseConnector<C> {
    fn new(inner: C, pool: Arc<Idle>) -> Self {
        Self {
            inner,
            pool,
            no_shutdown_handles: Arc::new(|_| Ok(())),
        }
    }
}

impl<C: std::fmt::Debug> std::fmt::Debug for ReuseConnector<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReuseConnector")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<C: Connector<()>> Connector<()> for ReuseConnector<C> {
    type Out = Reusable;

    fn connect(
        &self,
        details: &ConnectionDetails<'_>,
        chained: Option<()>,
    ) -> Result<Option<Self::Out>, Error> {
        let uri = details.uri;
        let key = reuse::pool_key(
            uri.scheme_str().unwrap_or_default(),
            uri.authority().map_or("", |authority| authority.as_str()),
        );
        if !TRACE.get().fresh_only
            && let Some(mut idle) = self.pool.take(&key)
            // A connection the engine closed (or wrote to) while idle is dropped.
            && idle.is_open()
        {
            TRACE.set(Trace {
                reused: true,
                ..TRACE.get()
            });
            return Ok(Some(Reusable::new(idle, key, &self.pool)));
        }
        let details = ConnectionDetails {
            uri: details.uri,
            addrs: details.addrs.clone(),
            config: details.config,
            request_level: details.request_level,
            resolver: details.resolver,
            now: details.now,
            timeout: details.timeout,
            current_time: Arc::clone(&details.current_time),
            run_connector: Arc::clone(&details.run_connector),
            register_shutdown: Arc::clone(&self.no_shutdown_handles),
        };
        let Some(fresh) = self.inner.connect(&details, chained)? else {
            return Ok(None);
        };
        Ok(Some(Reusable::new(fresh.boxed(), key, &self.pool)))
    }
}

/// A connection that returns to the pool when dropped, if ureq judged it
/// reusable: ureq asks [`Transport::is_open`] only when the response was
/// keep-alive and its body was read to the end with nothing left over in
/// its buffer.
struct Reusable {
    inner: Option<Box<dyn Transport>>,
    key: String,
    pool: Weak<Idle>,
    keep: bool,
}

impl Reusable {
    fn new(inner: Box<dyn Transport>, key: String, pool: &Arc<Idle>) -> Self {
        Self {
            inner: Some(inner),
            key,
            pool: Arc::downgrade(pool),
            keep: false,
        }
    }

    fn transport(&mut self) -> &mut Box<dyn Transport> {
        self.inner.as_mut().expect("a transport until dropped")
    }
}

impl std::fmt::Debug for Reusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reusable")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Transport for Reusable {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.transport().buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        self.transport().transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let more = self.transport().await_input(timeout)?;
        if more {
            TRACE.set(Trace {
                answered: true,
                ..TRACE.get()
            });
        }
        Ok(more)
    }

    /// Asked by ureq only as it returns a connection to its pool: keep
    /// it. Whether the engine closed it (or sent stray bytes) is looked at
    /// when it is next taken ([`ReuseConnector`]), which covers the time
    /// since this call too; looking now as well would cost three system
    /// calls a probe.
    fn is_open(&mut self) -> bool {
        self.keep = true;
        true
    }

    fn is_tls(&self) -> bool {
        self.inner.as_ref().is_some_and(|inner| inner.is_tls())
    }
}

impl Drop for Reusable {
    fn drop(&mut self) {
        if !self.keep {
            return;
        }
        if let (Some(inner), Some(pool)) = (self.inner.take(), self.pool.upgrade()) {
            let key = std::mem::take(&mut self.key);
            drop(pool.put(key, inner));
        }
    }
}

/// The outcome of an answer with `status` (R1): healthy iff 200.
pub(crate) fn answered(status: u16) -> (ProbeResult, ProbeClass) {
    match status {
        200 => (ProbeResult::Healthy, ProbeClass::Ok),
        status => (
            unhealthy(status, unexpected_status(status)),
            ProbeClass::BadStatus,
        ),
    }
}

/// The error text of a response head longer than `limit` bytes.
pub(crate) fn head_too_large(limit: usize) -> String {
    format!("response header larger than {limit} bytes")
}

pub(crate) fn unhealthy(status: u16, error: String) -> ProbeResult {
    ProbeResult::Unhealthy { status, error }
}

/// A failure with no response (status 0) of `class`.
pub(crate) fn failed(class: ProbeClass, error: String) -> (ProbeResult, ProbeClass) {
    (unhealthy(0, error), class)
}

/// The kind and a readable one-line reason for a probe that got no usable response.
fn describe(err: &Error) -> (ProbeClass, String) {
    match err {
        Error::Timeout(_) => (ProbeClass::Timeout, reason::TIMEOUT.to_owned()),
        Error::Io(io) => describe_io(io),
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
    }
}

/// The kind and reason of an I/O error, by its [`io::ErrorKind`] (and, for a
/// failed name lookup, the [`ResolveFailed`] it carries).
pub(crate) fn describe_io(err: &io::Error) -> (ProbeClass, String) {
    use io::ErrorKind::*;
    if err
        .get_ref()
        .is_some_and(|inner| inner.is::<ResolveFailed>())
    {
        return (ProbeClass::ConnectError, err.to_string());
    }
    if let Some(tls) = tls::describe_tls_io(err) {
        return tls;
    }
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

/// Wraps the TCP connection of an `https://` probe in TLS ([`crate::tls`]):
/// the handshake runs inside the probe's timeout, and a failed one is a
/// [`TlsFailure`] worded for the endpoint's host.
#[derive(Debug)]
struct TlsConnector {
    tls: TlsClient,
}

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
        let tls_error = |text: String| Error::Io(TlsFailure(text).into_io());
        let name = tls::server_name(host).map_err(tls_error)?;
        let mut connection = ClientConnection::new(self.tls.probe_config(), name)
            .map_err(|err| tls_error(tls::describe_tls(&err, Some(host))))?;
        let mut socket = Flights(TransportAdapter::new(
            transport.boxed(),
            details.current_time.clone(),
        ));
        socket.0.set_timeout(details.timeout);
        handshake(&mut connection, &mut socket).map_err(|err| match err {
            Handshake::Tls(err) => tls_error(tls::describe_tls(&err, Some(host))),
            Handshake::Io(io) => match Error::from(io) {
                Error::Timeout(_) => tls_error(tls::handshake_timeout()),
                Error::Io(io) => match tls::handshake_failure(&io, host) {
                    Some(text) => tls_error(text),
                    None => Error::Io(io),
                },
                other => other,
            },
        })?;
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(TlsTransport {
            buffers,
            connection,
            socket,
        })))
    }
}

/// Why a handshake failed.
enum Handshake {
    /// The engine's answer, as rustls judged it (a certificate, an alert, not TLS).
    Tls(rustls::Error),
    /// The connection (a timeout, an early close).
    Io(io::Error),
}

/// Drive the client side of the handshake until it is complete, leaving
/// the client's last flight (its `Finished`) queued: it leaves with the
/// request, in one segment ([`TlsTransport::transmit_output`]).
fn handshake(
    connection: &mut ClientConnection,
    socket: &mut Flights<TransportAdapter>,
) -> Result<(), Handshake> {
    while connection.is_handshaking() {
        while connection.wants_write() {
            connection.write_tls(socket).map_err(Handshake::Io)?;
        }
        if connection.read_tls(socket).map_err(Handshake::Io)? == 0 {
            return Err(Handshake::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        if let Err(err) = connection.process_new_packets() {
            // Tell the engine why (an alert), as far as it listens.
            let _ = connection.write_tls(socket);
            return Err(Handshake::Tls(err));
        }
    }
    Ok(())
}

/// A writer that sends each flight of TLS records as one write (rustls
/// hands a flight over as several buffers; a plain `write` would send each
/// record in a segment of its own).
struct Flights<W>(W);

impl<W: Read> Read for Flights<W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<W: Write> Write for Flights<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let total: usize = bufs.iter().map(|buf| buf.len()).sum();
        match bufs.iter().filter(|buf| !buf.is_empty()).count() {
            0 => Ok(0),
            1 => self
                .0
                .write(bufs.iter().find(|buf| !buf.is_empty()).expect("one")),
            _ => {
                let mut flight = Vec::with_capacity(total);
                for buf in bufs {
                    flight.extend_from_slice(buf);
                }
                self.0.write_all(&flight)?;
                Ok(total)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// An established TLS connection, as ureq's HTTP/1.1 code sees it.
struct TlsTransport {
    buffers: LazyBuffers,
    connection: ClientConnection,
    socket: Flights<TransportAdapter>,
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
        self.socket.0.set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        // Encrypt into rustls' queue, behind the handshake's last flight,
        // then send everything queued at once.
        self.connection.writer().write_all(output)?;
        while self.connection.wants_write() {
            self.connection.write_tls(&mut self.socket)?;
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.socket.0.set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = rustls::Stream::new(&mut self.connection, &mut self.socket).read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.socket.0.get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// A failed name lookup, carried inside an [`io::Error`] so the probe knows
/// its kind without reading the text.
#[derive(Debug)]
pub(crate) struct ResolveFailed(pub(crate) String);

impl std::fmt::Display for ResolveFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ResolveFailed {}

/// The error text of a failed name lookup: `cannot resolve host NAME: why`.
pub(crate) fn cannot_resolve(host: &str, why: &dyn std::fmt::Display) -> String {
    format!("{}{host}: {why}", reason::CANNOT_RESOLVE_HOST)
}

/// Resolves IP literals and `localhost` in place; names go to ureq's resolver.
///
/// ureq's default resolver starts a thread per lookup whenever a timeout is
/// set, even for `127.0.0.1`; engines are nearly always addressed by IP.
#[derive(Debug)]
struct LiteralResolver;

impl Resolver for LiteralResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, Error> {
        if let Some(addrs) = self.resolve_literal(uri) {
            return Ok(addrs);
        }
        DefaultResolver::default()
            .resolve(uri, config, timeout)
            .map_err(|err| match err {
                Error::Io(io) => {
                    let host = uri.host().unwrap_or_default();
                    let text = cannot_resolve(host, &io);
                    Error::Io(io::Error::new(io.kind(), ResolveFailed(text)))
                }
                other => other,
            })
    }
}

impl LiteralResolver {
    fn resolve_literal(&self, uri: &Uri) -> Option<ResolvedSocketAddrs> {
        let authority = uri.authority()?;
        let port = match authority.port_u16() {
            Some(port) => port,
            None => match uri.scheme_str()? {
                scheme if scheme.eq_ignore_ascii_case("http") => 80,
                scheme if scheme.eq_ignore_ascii_case("https") => 443,
                _ => return None,
            },
        };
        let mut addrs = self.empty();
        for addr in literal_addrs(authority.host(), port)? {
            addrs.push(addr);
        }
        Some(addrs)
    }
}

/// The addresses of an IP literal (bracketed or not) or of `localhost`,
/// found without DNS or a thread; `None` for any other name.
pub(crate) fn literal_addrs(host: &str, port: u16) -> Option<impl Iterator<Item = SocketAddr>> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ips = if let Ok(ip) = host.parse::<IpAddr>() {
        [Some(ip), None]
    } else if host.eq_ignore_ascii_case("localhost") {
        [
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ]
    } else {
        return None;
    };
    Some(
        ips.into_iter()
            .flatten()
            .map(move |ip| SocketAddr::new(ip, port)),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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

    #[test]
    fn r2_probe_url_trims_every_trailing_slash() {
        let cases = [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080/healthz"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/healthz"),
            ("http://127.0.0.1:8080///", "http://127.0.0.1:8080/healthz"),
            ("http://h:1/engine/", "http://h:1/engine/healthz"),
            ("http://h:1/engine//", "http://h:1/engine/healthz"),
            ("http://h:1//engine", "http://h:1//engine/healthz"),
            ("", "/healthz"),
            ("///", "/healthz"),
        ];
        for (endpoint, expected) in cases {
            assert_eq!(probe_url(endpoint), expected, "{endpoint:?}");
        }
    }

    #[test]
    fn r1_unexpected_status_text_is_exact() {
        assert_eq!(unexpected_status(503), "unexpected status 503");
        assert_eq!(unexpected_status(302), "unexpected status 302");
    }

    fn failure(status: u16, error: &str) -> ProbeResult {
        unhealthy(status, error.to_owned())
    }

    #[test]
    fn classify_sorts_every_kind_of_result() {
        let cases = [
            (ProbeResult::Healthy, ProbeClass::Ok),
            (failure(503, &unexpected_status(503)), ProbeClass::BadStatus),
            (failure(301, &unexpected_status(301)), ProbeClass::BadStatus),
            // A status wins over whatever the text says.
            (failure(500, "timeout"), ProbeClass::BadStatus),
            (failure(0, "timeout"), ProbeClass::Timeout),
            (failure(0, "connection refused"), ProbeClass::ConnectError),
            (failure(0, "host not found"), ProbeClass::ConnectError),
            (failure(0, "connection failed"), ProbeClass::ConnectError),
            (failure(0, "network unreachable"), ProbeClass::ConnectError),
            (failure(0, "host unreachable"), ProbeClass::ConnectError),
            (
                failure(0, "address not available"),
                ProbeClass::ConnectError,
            ),
            (
                failure(0, "cannot resolve host engine.invalid: failed to lookup"),
                ProbeClass::ConnectError,
            ),
            (failure(0, "connection reset by peer"), ProbeClass::Other),
            (
                failure(0, "connection closed before a complete response"),
                ProbeClass::Other,
            ),
            (
                failure(
                    0,
                    "malformed response: http parse fail: invalid HTTP version",
                ),
                ProbeClass::Other,
            ),
            (failure(0, &head_too_large(16384)), ProbeClass::Other),
            (
                failure(0, "tls: certificate signed by unknown authority"),
                ProbeClass::Tls,
            ),
            (failure(0, &tls::handshake_timeout()), ProbeClass::Tls),
            (failure(0, "tlsv1 alert"), ProbeClass::Other),
            (
                failure(0, "bad engine endpoint: no host"),
                ProbeClass::Other,
            ),
            (failure(0, ""), ProbeClass::Other),
            // Only the exact text counts, not a longer one that starts alike.
            (failure(0, "timeout waiting"), ProbeClass::Other),
            (failure(0, "Connection Refused"), ProbeClass::Other),
        ];
        for (result, class) in cases {
            assert_eq!(classify(&result), class, "{result:?}");
        }
    }

    #[test]
    fn classify_agrees_with_the_io_error_wording() {
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
            // The text classifier (for journals) agrees with the structure.
            assert_eq!(
                classify(&unhealthy(0, error.clone())),
                class,
                "{kind:?}: {error}"
            );
        }
        let lookup = cannot_resolve("engine.invalid", &"no such host");
        let (class, text) = describe_io(&io::Error::other(ResolveFailed(lookup.clone())));
        assert_eq!((class, text), (ProbeClass::ConnectError, lookup.clone()));
        assert_eq!(classify(&unhealthy(0, lookup)), ProbeClass::ConnectError);
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
        let prober = Prober::new(Duration::from_millis(200));
        assert_eq!(
            prober.probe_classified(HTTPS_CLOSED_PORT),
            (
                unhealthy(0, reason::CONNECTION_REFUSED.to_owned()),
                ProbeClass::ConnectError
            )
        );
    }

    #[test]
    fn bad_endpoints_fail_without_panicking() {
        let prober = Prober::new(Duration::from_millis(200));
        for endpoint in BAD_ENDPOINTS {
            match prober.probe(endpoint) {
                ProbeResult::Unhealthy { status: 0, error } => {
                    assert!(!error.is_empty(), "{endpoint:?}");
                }
                other => panic!("{endpoint:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn literal_resolver_short_circuits_ips_and_localhost() {
        let resolve = |url: &str| {
            let uri: Uri = url.parse().expect("test uri");
            LiteralResolver
                .resolve_literal(&uri)
                .map(|addrs| addrs.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        assert_eq!(
            resolve("http://127.0.0.1:8080/healthz"),
            Some(vec!["127.0.0.1:8080".to_owned()])
        );
        assert_eq!(
            resolve("http://[::1]:9/healthz"),
            Some(vec!["[::1]:9".to_owned()])
        );
        assert_eq!(
            resolve("http://10.1.2.3/healthz"),
            Some(vec!["10.1.2.3:80".to_owned()])
        );
        assert_eq!(
            resolve("http://LocalHost:7/healthz"),
            Some(vec!["127.0.0.1:7".to_owned(), "[::1]:7".to_owned()])
        );
        assert_eq!(resolve("http://engine.example:7/healthz"), None);
    }
}
