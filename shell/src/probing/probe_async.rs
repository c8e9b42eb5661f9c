//! One probe on tokio: `GET {engine_endpoint}/healthz` with hyper's HTTP/1
//! client, with the same rules and error texts as the blocking [`Prober`].
//!
//! - R1, R2, D2 as in [`crate::probe`]: healthy only for 200, the same URL,
//!   no redirect followed (a 3xx is `unexpected status 3xx`).
//! - R10: the whole call — resolve, connect, handshake, request, response
//!   head — runs inside one [`tokio::time::timeout`] of the probe timeout.
//! - A fresh connection per probe (`hyper::client::conn::http1` over a
//!   [`tokio::net::TcpStream`], `Connection: close`): health checks go to
//!   many distinct hosts, where a pool only adds bookkeeping, and a fresh
//!   connection per probe is what the blocking prober does too. The
//!   connection is driven inside the probe's own future, not spawned, so
//!   dropping the response closes the socket at once and no body byte is
//!   read by anyone.
//! - The response head is capped at [`MAX_RESPONSE_HEADER_BYTES`], exactly
//!   as the blocking prober: the socket hands hyper at most that many bytes,
//!   so a head that fits is parsed and a longer one fails with
//!   `response header larger than 16384 bytes`. (hyper's own
//!   `max_buf_size` is set just above the cap, so it never decides first.)
//! - IP literals and `localhost` are resolved in place; other names go to
//!   [`tokio::net::lookup_host`] (tokio's blocking pool).
//! - `https://` endpoints: tokio-rustls with the run's [`TlsClient`], the
//!   same configuration and error texts as the blocking prober; the
//!   handshake runs inside the probe timeout (one that runs out during the
//!   handshake is `tls: handshake timeout`), and the head cap counts
//!   decrypted bytes.
//!
//! [`Prober`]: crate::probe::Prober

use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use healthprobe_core::ProbeResult;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper::body::Incoming;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::probe::{
    MAX_RESPONSE_HEADER_BYTES, ProbeClass, answered, cannot_resolve, describe_io, failed,
    head_too_large, literal_addrs, probe_url, reason,
};
use crate::reuse::{
    self, ConnectionReuse, DRAIN_LIMIT, DRAIN_WAIT, IdlePool, closed_before_answer,
};
use crate::tls::{self, TlsClient};

/// Probes engines over HTTP/1.1 (and HTTP/1.1 over TLS) with hyper on the
/// current tokio runtime.
///
/// Stateless but for the timeout, the shared TLS client and (with
/// [`AsyncProber::with_options`]) the shared pool of idle connections:
/// cheap to clone into every probe task.
#[derive(Debug, Clone)]
pub struct AsyncProber {
    probe_timeout: Duration,
    tls: TlsClient,
    pool: Option<Arc<IdlePool<Kept>>>,
}

impl AsyncProber {
    /// A prober whose every probe is bounded by `probe_timeout`, start to
    /// end, trusting the system store for `https://` engines.
    pub fn new(probe_timeout: Duration) -> Self {
        Self::with_tls(probe_timeout, TlsClient::system())
    }

    /// [`AsyncProber::new`] with the trust and client certificate of `tls`.
    pub fn with_tls(probe_timeout: Duration, tls: TlsClient) -> Self {
        Self::with_options(probe_timeout, tls, None)
    }

    /// [`AsyncProber::with_tls`], keeping idle connections between probes
    /// when `reuse` is given ([`crate::reuse`]). The kept connections belong
    /// to the tokio runtime that made them: probe on one runtime only.
    pub fn with_options(
        probe_timeout: Duration,
        tls: TlsClient,
        reuse: Option<ConnectionReuse>,
    ) -> Self {
        Self {
            probe_timeout,
            tls,
            pool: reuse.map(|reuse| Arc::new(IdlePool::new(reuse.max_idle))),
        }
    }

    /// The most idle connections kept between probes, when they are.
    pub fn max_idle_connections(&self) -> Option<usize> {
        self.pool.as_ref().map(|pool| pool.capacity())
    }

    /// Probe one engine: `GET {engine_endpoint}/healthz` (R2), healthy iff status 200 (R1).
    ///
    /// Must run inside a tokio runtime with the time and I/O drivers
    /// enabled. Never panics and never reads the response body; completes
    /// within the probe timeout (plus scheduling noise).
    pub async fn probe(&self, engine_endpoint: &str) -> ProbeResult {
        self.probe_classified(engine_endpoint).await.0
    }

    /// [`AsyncProber::probe`], with the kind of outcome decided from the
    /// error's structure (hyper's error, the I/O error kind), not its text.
    pub async fn probe_classified(&self, engine_endpoint: &str) -> (ProbeResult, ProbeClass) {
        let url = probe_url(engine_endpoint);
        if let Some(pool) = &self.pool {
            return self.probe_reusing(&url, pool).await;
        }
        let in_handshake = AtomicBool::new(false);
        let fetch = fetch_status(&url, &self.tls, &in_handshake);
        match tokio::time::timeout(self.probe_timeout, fetch).await {
            Err(_elapsed) if in_handshake.load(Ordering::Relaxed) => {
                failed(ProbeClass::Tls, tls::handshake_timeout())
            }
            Err(_elapsed) => failed(ProbeClass::Timeout, reason::TIMEOUT.to_owned()),
            Ok(Err((class, error))) => failed(class, error),
            Ok(Ok(status)) => answered(status),
        }
    }
}

impl AsyncProber {
    /// A probe that may go over the engine's idle connection: retried once
    /// on a fresh connection when the engine had closed that one before
    /// answering; the body then read to its end (up to [`DRAIN_LIMIT`],
    /// within what is left of the probe timeout) so the connection can be kept.
    async fn probe_reusing(&self, url: &str, pool: &IdlePool<Kept>) -> (ProbeResult, ProbeClass) {
        let deadline = tokio::time::Instant::now() + self.probe_timeout;
        let in_handshake = AtomicBool::new(false);
        let fetch = fetch_reusing(url, &self.tls, &in_handshake, pool);
        let (status, kept) = match tokio::time::timeout_at(deadline, fetch).await {
            Err(_elapsed) if in_handshake.load(Ordering::Relaxed) => {
                return failed(ProbeClass::Tls, tls::handshake_timeout());
            }
            Err(_elapsed) => return failed(ProbeClass::Timeout, reason::TIMEOUT.to_owned()),
            Ok(Err((class, error))) => return failed(class, error),
            Ok(Ok(answered)) => answered,
        };
        // The outcome is known: what follows only decides whether the
        // connection is kept, and never changes it.
        let drained_by = deadline.min(tokio::time::Instant::now() + DRAIN_WAIT);
        if let Some((key, kept, response)) = kept
            && let Ok(Some(kept)) = tokio::time::timeout_at(drained_by, kept.finish(response)).await
        {
            drop(pool.put(key, kept));
        }
        answered(status)
    }
}

/// Any stream a kept connection runs over: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Io for S {}

/// hyper's half of a [`Kept`] connection: it does the reading and writing.
type KeptConnection = Connection<TokioIo<HeadCap<Box<dyn Io>>>, Empty<Bytes>>;

/// An open HTTP/1.1 connection that can carry more requests: hyper's two
/// halves, and the byte budget of the [`HeadCap`] under it.
pub(crate) struct Kept {
    sender: SendRequest<Empty<Bytes>>,
    connection: Pin<Box<KeptConnection>>,
    budget: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept").finish_non_exhaustive()
    }
}

/// A failed request on a [`Kept`] connection.
struct Failed {
    /// The failure, worded as always.
    failure: (ProbeClass, String),
    /// The engine had closed the connection before any byte of an answer.
    closed_before_answer: bool,
}

impl Kept {
    /// Open HTTP/1.1 over `stream`.
    async fn open(stream: Box<dyn Io>) -> Result<Self, (ProbeClass, String)> {
        let budget = Arc::new(AtomicUsize::new(MAX_RESPONSE_HEADER_BYTES));
        let capped = HeadCap::with_budget(stream, Arc::clone(&budget));
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_RESPONSE_HEADER_BYTES + 1)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(capped))
            .await
            .map_err(|err| describe(&err))?;
        Ok(Self {
            sender,
            connection: Box::pin(connection),
            budget,
        })
    }

    /// Whether the connection still looks usable: hyper has not seen it
    /// close, and one look at the socket finds no close (or stray bytes) now.
    ///
    /// The look goes through tokio, which reads a socket only once its
    /// reactor has seen it become readable: yielding first lets the reactor
    /// take in what the engine sent while the connection sat idle (a close,
    /// or an answer nobody asked for, which would otherwise be read as the
    /// answer to the next request).
    async fn is_open(&mut self) -> bool {
        if self.sender.is_closed() {
            return false;
        }
        tokio::task::yield_now().await;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.connection.as_mut().poll(&mut cx).is_pending() && !self.sender.is_closed()
    }

    /// Send `GET path` (keep-alive) and read the response head; with it,
    /// whether the connection can still carry another request (hyper may
    /// end it right behind the answer: bytes the engine sent after it).
    async fn request(
        &mut self,
        authority: &hyper::http::uri::Authority,
        path: &str,
    ) -> Result<(Response<Incoming>, bool), Failed> {
        let failed = |err: &hyper::Error, budget: &AtomicUsize| Failed {
            failure: describe(err),
            closed_before_answer: budget.load(Ordering::Relaxed) == MAX_RESPONSE_HEADER_BYTES
                && closed_early(err),
        };
        self.budget
            .store(MAX_RESPONSE_HEADER_BYTES, Ordering::Relaxed);
        let request = Request::get(path)
            .header(HOST, authority.as_str())
            .header(
                USER_AGENT,
                concat!("healthprobe/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|err| Failed {
                failure: (ProbeClass::Other, format!("bad engine endpoint: {err}")),
                closed_before_answer: false,
            })?;
        let response = pin!(self.sender.send_request(request));
        let (response, open) = answer(self.connection.as_mut(), response).await;
        response
            .map(|response| (response, open))
            .map_err(|err| failed(&err, &self.budget))
    }

    /// Read the body of `response` to its end, at most [`DRAIN_LIMIT`]
    /// bytes, and wait until the connection can carry the next request:
    /// the connection if it can, `None` if it closed or the body did not fit.
    async fn finish(mut self, response: Response<Incoming>) -> Option<Self> {
        self.budget.store(DRAIN_LIMIT as usize, Ordering::Relaxed);
        let drained = tokio::select! {
            biased;
            body = Limited::new(response.into_body(), DRAIN_LIMIT as usize).collect() => body.is_ok(),
            _ended = &mut self.connection => false,
        };
        if !drained {
            return None;
        }
        let ready = tokio::select! {
            biased;
            ready = self.sender.ready() => ready.is_ok(),
            _ended = &mut self.connection => false,
        };
        ready.then_some(self)
    }
}

/// Whether hyper's error is an early close: the connection ended before a
/// response, or its I/O failed as a close does ([`closed_before_answer`]).
fn closed_early(err: &hyper::Error) -> bool {
    if err.is_incomplete_message() || err.is_canceled() || err.is_closed() {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return closed_before_answer(io);
        }
        source = cause.source();
    }
    false
}

/// What a reusing probe got: the status, and the connection with its
/// response still to finish, when it may be kept.
type Answered = (u16, Option<(String, Kept, Response<Incoming>)>);

/// [`fetch_status`] over the engine's idle connection if it has one, else a
/// fresh one; a kept connection the engine closed before answering is
/// retried once on a fresh connection.
async fn fetch_reusing(
    url: &str,
    tls: &TlsClient,
    in_handshake: &AtomicBool,
    pool: &IdlePool<Kept>,
) -> Result<Answered, (ProbeClass, String)> {
    let target = Target::parse(url)?;
    let key = reuse::pool_key(
        if target.https { "https" } else { "http" },
        target.authority.as_str(),
    );
    if let Some(mut kept) = pool.take(&key)
        && kept.is_open().await
    {
        match kept.request(&target.authority, &target.path).await {
            Ok((response, open)) => {
                let status = response.status().as_u16();
                return Ok((status, open.then_some((key, kept, response))));
            }
            Err(failed) if failed.closed_before_answer => {}
            Err(failed) => return Err(failed.failure),
        }
    }
    let stream = target.connect(tls, in_handshake).await?;
    let mut kept = Kept::open(stream).await?;
    let (response, open) = kept
        .request(&target.authority, &target.path)
        .await
        .map_err(|failed| failed.failure)?;
    let status = response.status().as_u16();
    Ok((status, open.then_some((key, kept, response))))
}

/// Drive `connection` (hyper's half that reads and writes) until
/// `response` (the head of the answer) arrives: the answer, and whether
/// the connection lives on to carry another request.
///
/// hyper may end the connection right behind the answer (bytes the engine
/// sent after it): an answer it delivered before that is still the answer,
/// and changes neither the outcome nor, without reuse, anything else.
async fn answer<C, R>(
    mut connection: Pin<&mut C>,
    mut response: Pin<&mut R>,
) -> (Result<Response<Incoming>, hyper::Error>, bool)
where
    C: Future<Output = Result<(), hyper::Error>>,
    R: Future<Output = Result<Response<Incoming>, hyper::Error>>,
{
    tokio::select! {
        biased;
        answered = &mut response => (answered, true),
        ended = &mut connection => match ended {
            Err(err) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                match response.as_mut().poll(&mut cx) {
                    Poll::Ready(Ok(delivered)) => (Ok(delivered), false),
                    Poll::Ready(Err(_)) | Poll::Pending => (Err(err), false),
                }
            }
            Ok(()) => (response.await, false),
        },
    }
}

/// A probe URL, parsed.
struct Target {
    https: bool,
    authority: hyper::http::uri::Authority,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, (ProbeClass, String)> {
        let bad = |text: String| (ProbeClass::Other, text);
        let uri: Uri = url
            .parse()
            .map_err(|err| bad(format!("bad engine endpoint: {err}")))?;
        let https = match uri.scheme_str() {
            Some(scheme) if scheme.eq_ignore_ascii_case("http") => false,
            Some(scheme) if scheme.eq_ignore_ascii_case("https") => true,
            Some(scheme) => {
                return Err(bad(format!(
                    "bad engine endpoint: unsupported scheme {scheme}"
                )));
            }
            None => return Err(bad("bad engine endpoint: no scheme".to_owned())),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| bad("bad engine endpoint: no host".to_owned()))?
            .clone();
        let path = uri
            .path_and_query()
            .map_or("/", hyper::http::uri::PathAndQuery::as_str)
            .to_owned();
        Ok(Self {
            https,
            authority,
            path,
        })
    }

    /// Connect, and shake hands over TLS for `https://`.
    async fn connect(
        &self,
        tls: &TlsClient,
        in_handshake: &AtomicBool,
    ) -> Result<Box<dyn Io>, (ProbeClass, String)> {
        let stream = connect(&self.authority, if self.https { 443 } else { 80 }).await?;
        if !self.https {
            return Ok(Box::new(stream));
        }
        let stream = handshake(stream, &self.authority, tls, in_handshake).await?;
        Ok(Box::new(stream))
    }
}

/// The TLS handshake of an `https://` probe, `in_handshake` set while it runs.
async fn handshake(
    stream: TcpStream,
    authority: &hyper::http::uri::Authority,
    tls: &TlsClient,
    in_handshake: &AtomicBool,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, (ProbeClass, String)> {
    let host = authority.host();
    let name = tls::server_name(host).map_err(|text| (ProbeClass::Tls, text))?;
    in_handshake.store(true, Ordering::Relaxed);
    let stream = tokio_rustls::TlsConnector::from(tls.probe_config())
        .connect(name, stream)
        .await
        .map_err(|err| match tls::handshake_failure(&err, host) {
            Some(text) => (ProbeClass::Tls, text),
            None => describe_io(&err),
        })?;
    in_handshake.store(false, Ordering::Relaxed);
    Ok(stream)
}

/// Resolve, connect (and shake hands over TLS for `https://`), send `GET`,
/// read the response head: its status, or a readable error. `in_handshake`
/// is set while the TLS handshake runs, so a timeout then is worded as one.
async fn fetch_status(
    url: &str,
    tls: &TlsClient,
    in_handshake: &AtomicBool,
) -> Result<u16, (ProbeClass, String)> {
    let target = Target::parse(url)?;
    let stream = connect(&target.authority, if target.https { 443 } else { 80 }).await?;
    if !target.https {
        return exchange(HeadCap::new(stream), &target.authority, &target.path).await;
    }
    let stream = handshake(stream, &target.authority, tls, in_handshake).await?;
    exchange(HeadCap::new(stream), &target.authority, &target.path).await
}

/// Send `GET path` over an open connection and read the response head.
async fn exchange<S>(
    stream: HeadCap<S>,
    authority: &hyper::http::uri::Authority,
    path: &str,
) -> Result<u16, (ProbeClass, String)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let bad = |text: String| (ProbeClass::Other, text);
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        // Above the cap: `HeadCap` decides, with the blocking prober's semantics.
        .max_buf_size(MAX_RESPONSE_HEADER_BYTES + 1)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|err| describe(&err))?;
    let request = Request::get(path)
        .header(HOST, authority.as_str())
        .header(
            USER_AGENT,
            concat!("healthprobe/", env!("CARGO_PKG_VERSION")),
        )
        .header(CONNECTION, "close")
        .body(Empty::new())
        .map_err(|err| bad(format!("bad engine endpoint: {err}")))?;
    // Drive the connection here until the response head arrives; dropping
    // both then closes the socket without reading the body.
    let (response, _) = answer(pin!(connection), pin!(sender.send_request(request))).await;
    response
        .map(|response| response.status().as_u16())
        .map_err(|err| describe(&err))
}

/// Connect to the first address of `authority` that accepts; the last error otherwise.
async fn connect(
    authority: &hyper::http::uri::Authority,
    default_port: u16,
) -> Result<TcpStream, (ProbeClass, String)> {
    let port = authority.port_u16().unwrap_or(default_port);
    let host = authority.host();
    let addrs: Vec<SocketAddr> = match literal_addrs(host, port) {
        Some(literal) => literal.collect(),
        None => tokio::net::lookup_host((host, port))
            .await
            .map_err(|err| {
                (
                    ProbeClass::ConnectError,
                    cannot_resolve(host, &describe_io(&err).1),
                )
            })?
            .collect(),
    };
    let mut last_error = (ProbeClass::ConnectError, reason::HOST_NOT_FOUND.to_owned());
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // One small request, one small head: no Nagle delay.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(err) => last_error = describe_io(&err),
        }
    }
    Err(last_error)
}

/// The kind and a readable one-line reason, worded as the blocking prober words it.
fn describe(err: &hyper::Error) -> (ProbeClass, String) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            if io.get_ref().is_some_and(|inner| inner.is::<HeadTooLarge>()) {
                return (ProbeClass::Other, head_too_large(MAX_RESPONSE_HEADER_BYTES));
            }
            return describe_io(io);
        }
        source = cause.source();
    }
    if err.is_incomplete_message() {
        (
            ProbeClass::Other,
            "connection closed before a complete response".to_owned(),
        )
    } else if err.is_parse() || err.is_parse_status() {
        (ProbeClass::Other, malformed(&err.to_string()))
    } else if err.is_timeout() {
        (ProbeClass::Timeout, reason::TIMEOUT.to_owned())
    } else {
        (ProbeClass::Other, err.to_string())
    }
}

/// hyper's parse error worded as ureq words httparse's (both parse with
/// httparse): `malformed response: http parse fail: invalid HTTP version`.
/// A bad header is only `invalid HTTP header` here (hyper does not say
/// which part), where ureq names the part (`invalid header name`, ...).
fn malformed(hyper_text: &str) -> String {
    let reason = match hyper_text {
        "invalid HTTP version parsed" => "invalid HTTP version",
        "invalid HTTP status-code parsed" => "invalid response status",
        other => other.strip_suffix(" parsed").unwrap_or(other),
    };
    format!("malformed response: http parse fail: {reason}")
}

/// The marker error of a response head longer than the cap.
#[derive(Debug)]
struct HeadTooLarge;

impl std::fmt::Display for HeadTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "response header larger than {MAX_RESPONSE_HEADER_BYTES} bytes"
        )
    }
}

impl std::error::Error for HeadTooLarge {}

/// A stream that yields at most [`MAX_RESPONSE_HEADER_BYTES`] bytes, then
/// fails with [`HeadTooLarge`]: a head that fits is whole within them, a
/// longer one never is. The body is never read, so it never reaches the cap.
///
/// A kept connection shares its budget with its [`Kept`], which sets it
/// again before each request (and before draining a body): an untouched
/// budget also tells that no byte of an answer arrived.
#[derive(Debug)]
struct HeadCap<S> {
    inner: S,
    remaining: Arc<AtomicUsize>,
}

impl<S> HeadCap<S> {
    fn new(inner: S) -> Self {
        Self::with_budget(inner, Arc::new(AtomicUsize::new(MAX_RESPONSE_HEADER_BYTES)))
    }

    fn with_budget(inner: S, remaining: Arc<AtomicUsize>) -> Self {
        Self { inner, remaining }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadCap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let remaining = self.remaining.load(Ordering::Relaxed);
        if remaining == 0 {
            return Poll::Ready(Err(io::Error::other(HeadTooLarge)));
        }
        let limit = buf.remaining().min(remaining);
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(limit));
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut limited))?;
        let read = limited.filled().len();
        buf.advance(read);
        self.remaining.store(remaining - read, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadCap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::unhealthy;

    fn probe(endpoint: &str) -> ProbeResult {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a test runtime");
        runtime.block_on(AsyncProber::new(Duration::from_millis(200)).probe(endpoint))
    }

    #[test]
    fn https_to_a_closed_port_is_a_connect_error_before_any_tls() {
        assert_eq!(
            probe(crate::probe::tests::HTTPS_CLOSED_PORT),
            unhealthy(0, reason::CONNECTION_REFUSED.to_owned())
        );
    }

    #[test]
    fn bad_endpoints_fail_without_panicking() {
        for endpoint in crate::probe::tests::BAD_ENDPOINTS {
            match probe(endpoint) {
                ProbeResult::Unhealthy { status: 0, error } => {
                    assert!(!error.is_empty(), "{endpoint:?}");
                }
                other => panic!("{endpoint:?}: {other:?}"),
            }
        }
    }
}
