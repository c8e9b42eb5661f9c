//! One probe on tokio: `GET {engine_endpoint}/healthz` over HTTP/1.1, with
//! the same rules and error texts as the blocking [`Prober`].
//!
//! - R1, R2, D2 as in [`crate::probe`]: healthy only for 200, the same URL,
//!   no redirect followed (a 3xx is `unexpected status 3xx`).
//! - R10: the whole call — resolve, connect, handshake, request, response
//!   head — runs inside one [`tokio::time::timeout`] of the probe timeout.
//! - HTTP/1.1 is [`ureq_proto`]'s: the sans-IO protocol the blocking
//!   prober's ureq is built on, driven here over tokio sockets. Both probers
//!   therefore send the same request (`host`, `connection: close` unless
//!   reusing, `user-agent`, `accept`), parse answers alike (1xx skipped,
//!   at most 128 headers) and word a malformed one alike
//!   (`malformed response: http parse fail: …`).
//! - The response head is capped at [`MAX_RESPONSE_HEADER_BYTES`] as ureq
//!   caps it: an answer whose head does not fit fails with `response header
//!   larger than 16384 bytes`; the body is never read (without reuse) and
//!   the socket closes when the probe ends.
//! - IP literals and `localhost` are resolved in place; other names go to
//!   [`tokio::net::lookup_host`] (tokio's blocking pool).
//! - `https://` endpoints: tokio-rustls with the run's [`TlsClient`], the
//!   same configuration and error texts as the blocking prober; the
//!   handshake runs inside the probe timeout (one that runs out during the
//!   handshake is `tls: handshake timeout`), and the head cap counts
//!   decrypted bytes.
//! - With reuse ([`crate::reuse`]) a probe sends no `connection: close`,
//!   reads a small body to its end (at most [`DRAIN_LIMIT`] bytes within
//!   [`DRAIN_WAIT`]) and keeps the connection (`Kept`) when ureq's rules
//!   say it can carry another request and nothing was left over.
//!
//! [`Prober`]: crate::probe::Prober

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use healthprobe_core::ProbeResult;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use ureq_proto::client::state::{RecvBody, RecvResponse};
use ureq_proto::client::{Call, RecvBodyResult, RecvResponseResult, SendRequestResult};
use ureq_proto::http::{self, Request, Uri, header};

use crate::probe::{
    MAX_RESPONSE_HEADER_BYTES, OUTPUT_BUFFER_BYTES, ProbeClass, USER_AGENT, answered,
    cannot_resolve, describe_io, failed, head_too_large, literal_addrs, probe_url, reason,
};
use crate::reuse::{
    self, ConnectionReuse, DRAIN_LIMIT, DRAIN_WAIT, IdlePool, closed_before_answer,
};
use crate::tls::{self, TlsClient};

/// Probes engines over HTTP/1.1 (and HTTP/1.1 over TLS) on the current
/// tokio runtime.
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
    /// enabled. Never panics and never reads the response body (but, when
    /// reusing connections, a small one to keep the connection); completes
    /// within the probe timeout (plus scheduling noise).
    pub async fn probe(&self, engine_endpoint: &str) -> ProbeResult {
        self.probe_classified(engine_endpoint).await.0
    }

    /// [`AsyncProber::probe`], with the kind of outcome decided from the
    /// error's structure (the I/O error kind, the protocol error), not its text.
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

    /// A probe that may go over the engine's idle connection: retried once
    /// on a fresh connection when the engine had closed that one before
    /// answering; the body then read to its end (up to [`DRAIN_LIMIT`],
    /// within [`DRAIN_WAIT`] and what is left of the probe timeout) so the
    /// connection can be kept.
    async fn probe_reusing(&self, url: &str, pool: &IdlePool<Kept>) -> (ProbeResult, ProbeClass) {
        let deadline = tokio::time::Instant::now() + self.probe_timeout;
        let in_handshake = AtomicBool::new(false);
        let fetch = fetch_reusing(url, &self.tls, &in_handshake, pool);
        let (status, key, mut kept, next) = match tokio::time::timeout_at(deadline, fetch).await {
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
        if let Ok(true) = tokio::time::timeout_at(drained_by, kept.finish(next)).await {
            drop(pool.put(key, kept));
        }
        answered(status)
    }
}

/// A probe failure, worded: its class and text.
type Failure = (ProbeClass, String);

/// A probe URL, parsed.
struct Target {
    uri: Uri,
    https: bool,
}

impl Target {
    fn parse(url: &str) -> Result<Self, Failure> {
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
        if uri.authority().is_none() {
            return Err(bad("bad engine endpoint: no host".to_owned()));
        }
        Ok(Self { uri, https })
    }

    fn authority(&self) -> &http::uri::Authority {
        self.uri.authority().expect("checked by parse")
    }

    /// The engine's key in the pool of idle connections.
    fn pool_key(&self) -> String {
        reuse::pool_key(
            if self.https { "https" } else { "http" },
            self.authority().as_str(),
        )
    }

    /// Connect, and shake hands over TLS for `https://`: a connection with
    /// nothing read yet.
    async fn connect(&self, tls: &TlsClient, in_handshake: &AtomicBool) -> Result<Kept, Failure> {
        let authority = self.authority();
        let stream = connect(authority, if self.https { 443 } else { 80 }).await?;
        let stream = if self.https {
            Stream::Tls(Box::new(
                handshake(stream, authority, tls, in_handshake).await?,
            ))
        } else {
            Stream::Plain(stream)
        };
        Ok(Kept {
            stream,
            input: Vec::new(),
        })
    }

    /// `GET` this URL as both probers send it, asking to close the
    /// connection unless `keep_alive`: the request's bytes, and the call
    /// that reads the answer.
    fn request(&self, keep_alive: bool) -> Result<(Vec<u8>, Call<RecvResponse>), Failure> {
        let bad = |err: &dyn std::fmt::Display| {
            (ProbeClass::Other, format!("bad engine endpoint: {err}"))
        };
        let mut request = Request::get(self.uri.clone());
        if !keep_alive {
            request = request.header(header::CONNECTION, "close");
        }
        let request = request
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::ACCEPT, "*/*")
            .body(())
            .map_err(|err| bad(&err))?;
        let mut call = Call::new(request).map_err(|err| bad(&err))?.proceed();
        let mut bytes = Vec::new();
        let mut output = [0_u8; OUTPUT_BUFFER_BYTES];
        while !call.can_proceed() {
            let written = call.write(&mut output).map_err(|err| protocol(&err))?;
            if written == 0 {
                return Err(protocol(&ureq_proto::Error::OutputOverflow));
            }
            bytes.extend_from_slice(&output[..written]);
        }
        match call.proceed() {
            Ok(Some(SendRequestResult::RecvResponse(call))) => Ok((bytes, call)),
            Ok(_) => Err((ProbeClass::Other, "a GET with a body".to_owned())),
            Err(err) => Err(protocol(&err)),
        }
    }
}

/// The TLS handshake of an `https://` probe, `in_handshake` set while it runs.
async fn handshake(
    stream: TcpStream,
    authority: &http::uri::Authority,
    tls: &TlsClient,
    in_handshake: &AtomicBool,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
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

/// Resolve, connect (and shake hands over TLS for `https://`), send `GET`
/// asking to close, read the response head: its status, or a readable
/// error. `in_handshake` is set while the TLS handshake runs, so a timeout
/// then is worded as one.
async fn fetch_status(
    url: &str,
    tls: &TlsClient,
    in_handshake: &AtomicBool,
) -> Result<u16, Failure> {
    let target = Target::parse(url)?;
    let (request, call) = target.request(false)?;
    let mut connection = target.connect(tls, in_handshake).await?;
    let answer = connection.exchange(&request, call).await;
    answer
        .map(|(status, _)| status)
        .map_err(|failed| failed.failure)
}

/// What a reusing probe got: the status, the engine's pool key, and the
/// connection with the rest of its answer still to read.
type Answered = (u16, String, Kept, RecvResponseResult);

/// [`fetch_status`] over the engine's idle connection if it has one (that
/// is still open), else a fresh one, without asking to close; a kept
/// connection the engine closed before answering is retried once on a
/// fresh connection.
async fn fetch_reusing(
    url: &str,
    tls: &TlsClient,
    in_handshake: &AtomicBool,
    pool: &IdlePool<Kept>,
) -> Result<Answered, Failure> {
    let target = Target::parse(url)?;
    let key = target.pool_key();
    let (request, mut call) = target.request(true)?;
    if let Some(mut kept) = pool.take(&key)
        && kept.is_open()
    {
        match kept.exchange(&request, call).await {
            Ok((status, next)) => return Ok((status, key, kept, next)),
            Err(failed) if failed.closed_before_answer => {}
            Err(failed) => return Err(failed.failure),
        }
        // The kept connection was refused: a fresh call for the retry.
        call = target.request(true)?.1;
    }
    let mut kept = target.connect(tls, in_handshake).await?;
    let (status, next) = kept
        .exchange(&request, call)
        .await
        .map_err(|failed| failed.failure)?;
    Ok((status, key, kept, next))
}

/// A failed request on a connection.
struct Failed {
    /// The failure, worded as always.
    failure: Failure,
    /// No byte of an answer arrived: the request was refused as a closed
    /// connection refuses it ([`closed_before_answer`]).
    closed_before_answer: bool,
}

impl Failed {
    fn io(err: &io::Error, answered: bool) -> Self {
        Self {
            failure: describe_io(err),
            closed_before_answer: !answered && closed_before_answer(err),
        }
    }

    fn worded(failure: Failure) -> Self {
        Self {
            failure,
            closed_before_answer: false,
        }
    }
}

/// An open connection to an engine, plain or TLS, and what was read from
/// it but not yet used: what a probe drives, and what the pool keeps
/// between probes when reusing.
pub(crate) struct Kept {
    stream: Stream,
    /// Bytes read and not yet consumed by the protocol.
    input: Vec<u8>,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept")
            .field("tls", &matches!(self.stream, Stream::Tls(_)))
            .finish_non_exhaustive()
    }
}

impl Kept {
    /// Whether an idle connection can carry the next request: nothing is
    /// left of an earlier answer, and one look at the socket (a
    /// non-blocking peek, a real system call) finds neither a close nor
    /// bytes the engine sent unasked (an answer ahead of its request, an
    /// alert) — either would be read as the next request's answer.
    fn is_open(&mut self) -> bool {
        if !self.input.is_empty() {
            return false;
        }
        if let Stream::Tls(stream) = &mut self.stream {
            match stream.get_mut().1.process_new_packets() {
                Ok(state) if state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed() => {}
                _ => return false,
            }
        }
        let mut byte = [0_u8; 1];
        matches!(
            rustix::net::recv(
                self.stream.tcp(),
                &mut byte,
                rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT,
            ),
            Err(rustix::io::Errno::AGAIN)
        )
    }

    /// Send `request` and read the answer's head through `call`: the
    /// status, and the state to finish the answer in (its body).
    async fn exchange(
        &mut self,
        request: &[u8],
        mut call: Call<RecvResponse>,
    ) -> Result<(u16, RecvResponseResult), Failed> {
        if let Err(err) = self.send(request).await {
            return Err(Failed::io(&err, false));
        }
        let mut answered = false;
        loop {
            if !self.input.is_empty() {
                let (used, response) = call
                    .try_response(&self.input, false)
                    .map_err(|err| Failed::worded(protocol(&err)))?;
                // As ureq: a parsed head must fit the cap, and so must
                // the input of one that is not whole yet.
                let size = if response.is_some() {
                    used
                } else {
                    self.input.len()
                };
                if size > MAX_RESPONSE_HEADER_BYTES {
                    return Err(Failed::worded((
                        ProbeClass::Other,
                        head_too_large(MAX_RESPONSE_HEADER_BYTES),
                    )));
                }
                self.input.drain(..used);
                if let Some(response) = response {
                    let next = call.proceed().expect("a whole head can proceed");
                    return Ok((response.status().as_u16(), next));
                }
            }
            match self.receive().await {
                Ok(0) => {
                    let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
                    return Err(Failed::io(&eof, answered));
                }
                Ok(_) => answered = true,
                Err(err) => return Err(Failed::io(&err, answered)),
            }
        }
    }

    /// Read the rest of the answer (`next`): whether the connection can
    /// carry another request — the body read to its end within
    /// [`DRAIN_LIMIT`] bytes, nothing left over, and neither side asking
    /// to close (ureq's rules for keeping a connection).
    async fn finish(&mut self, next: RecvResponseResult) -> bool {
        let cleanup = match next {
            RecvResponseResult::Cleanup(cleanup) => cleanup,
            RecvResponseResult::Redirect(redirect) => redirect.proceed(),
            RecvResponseResult::RecvBody(mut body) => {
                let mut drained = 0;
                while !body.can_proceed() {
                    match self.drain(&mut body, &mut drained) {
                        Some(true) => continue,
                        Some(false) => return false,
                        None => {}
                    }
                    if !matches!(self.receive().await, Ok(1..)) {
                        return false;
                    }
                }
                match body.proceed() {
                    Some(RecvBodyResult::Cleanup(cleanup)) => cleanup,
                    Some(RecvBodyResult::Redirect(redirect)) => redirect.proceed(),
                    None => return false,
                }
            }
        };
        !cleanup.must_close_connection() && self.input.is_empty()
    }

    /// Consume what `self.input` holds of the body, counting it in
    /// `drained`: `Some(true)` if some was, `Some(false)` if the body is
    /// broken or over [`DRAIN_LIMIT`], `None` if more must be read.
    fn drain(&mut self, body: &mut Call<RecvBody>, drained: &mut u64) -> Option<bool> {
        if self.input.is_empty() {
            return None;
        }
        let mut discard = [0_u8; 1024];
        let Ok((used, produced)) = body.read(&self.input, &mut discard) else {
            return Some(false);
        };
        self.input.drain(..used);
        *drained += produced as u64;
        if *drained > DRAIN_LIMIT {
            return Some(false);
        }
        if used == 0 && produced == 0 {
            // Not enough input for the next piece (a chunk's size line).
            return None;
        }
        Some(true)
    }

    /// Send all of `bytes`.
    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Read what the engine sent next into `self.input`: how many bytes (0
    /// at the end of the stream).
    async fn receive(&mut self) -> io::Result<usize> {
        if self.input.capacity() - self.input.len() < 512 {
            self.input.reserve(self.input.len().max(1024));
        }
        self.stream.read_buf(&mut self.input).await
    }
}

/// A connection's stream.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP socket under it.
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(stream) => stream,
            Self::Tls(stream) => stream.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Connect to the first address of `authority` that accepts; the last error otherwise.
async fn connect(
    authority: &http::uri::Authority,
    default_port: u16,
) -> Result<TcpStream, Failure> {
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

/// A protocol error worded as the blocking prober words ureq's
/// (`Error::Protocol`, the same [`ureq_proto::Error`]).
fn protocol(err: &ureq_proto::Error) -> Failure {
    (ProbeClass::Other, format!("malformed response: {err}"))
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

    #[test]
    fn the_request_is_the_blocking_probers() {
        let target = Target::parse("http://127.0.0.1:8080/healthz").expect("a URL");
        let (closing, _) = target.request(false).expect("a request");
        assert_eq!(
            String::from_utf8_lossy(&closing),
            format!(
                "GET /healthz HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nconnection: close\r\n\
                 user-agent: {USER_AGENT}\r\naccept: */*\r\n\r\n"
            )
        );
        let (keeping, _) = target.request(true).expect("a request");
        assert!(!String::from_utf8_lossy(&keeping).contains("connection"));
    }
}
