//! One probe on tokio with hyper-util's `Client` over hyper-rustls: the same
//! rules and error texts as the blocking [`Prober`]. The whole call runs in
//! one [`tokio::time::timeout`] (R10); one that runs out during a TLS
//! handshake is `tls: handshake timeout`. The thin adapter here
//! (`KeepingConnector`) marks each new connection: whether it may be kept
//! (`KeptBudget`), whether it has `Served` a whole exchange (so a failure on
//! it is retried once, and a close or unasked answer is looked for before it
//! serves again), and when its TCP connection was up. Probe on one runtime,
//! kept running between probes: hyper's pool works from its own tasks.
//!
//! [`Prober`]: crate::probing::probe::Prober

use std::cell::Cell;
use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use healthprobe_core::{ProbeResult, probe_url};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::{Request, Uri, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::probing::connections::{
    ConnectionPolicy, Connections, DRAIN_LIMIT, DRAIN_WAIT, KeptBudget, KeptPlace,
    closed_before_answer,
};
use crate::probing::probe::{
    MAX_RESPONSE_HEADER_BYTES, ProbeClass, ResolveFailed, USER_AGENT, answered, describe_error,
    describe_io, failed, head_too_large, reason,
};
use crate::tls::{self, TlsClient};

/// Probes engines over HTTP/1.1 (and over TLS) through one hyper-util
/// client and its pool. Cheap to clone into every probe task.
#[derive(Debug, Clone)]
pub struct AsyncProber {
    client: Client<HttpsConnector<KeepingConnector>, Empty<Bytes>>,
    client_connector: HttpsConnector<KeepingConnector>,
    probe_timeout: Duration,
    connections: Connections,
}

/// What a probe asked of its connection and how far a new one got (a
/// task-local: hyper-util connects inside the request's own future).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Call {
    /// The probe may keep its connection.
    keep: bool,
    /// How far a new connection got; `None` while none was made.
    connection: Option<Made>,
}

/// How far a new connection got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Made {
    /// TCP is up: for `https://`, the handshake is running.
    Tcp,
    /// Handed to hyper (handshake done).
    Ready,
}

tokio::task_local! {
    static CALL: Cell<Call>;
}

/// Record how far this probe's new connection got (nothing outside a probe).
fn made(made: Made) -> bool {
    CALL.try_with(|call| {
        call.set(Call {
            connection: Some(made),
            ..call.get()
        });
        call.get().keep
    })
    .unwrap_or(false)
}

/// Whether a connection has served a whole exchange, shared by the
/// connection ([`Keeping`]) and its pool entry (an extra of its [`Connected`]).
#[derive(Debug, Clone, Default)]
struct Served(Arc<AtomicBool>);

impl Served {
    /// Whether the connection `connected` describes has served.
    fn of(connected: Option<&Connected>) -> bool {
        let mut extensions = hyper::http::Extensions::new();
        if let Some(connected) = connected {
            connected.get_extras(&mut extensions);
        }
        extensions.get::<Self>().is_some_and(Self::get)
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Why an exchange failed, and whether it went over a kept connection that
/// had served before.
type Exchange = (BoxError, bool);

fn fresh(error: impl Into<BoxError>) -> Exchange {
    (error.into(), false)
}

impl AsyncProber {
    /// A prober whose every probe is bounded by `probe_timeout`, start to
    /// end, with the TLS of `tls` and the connections of `policy`.
    pub fn new(probe_timeout: Duration, tls: TlsClient, policy: ConnectionPolicy) -> Self {
        let mut http = HttpConnector::new_with_resolver(ClassifyingResolver(GaiResolver::new()));
        // hyper-rustls hands `https://` addresses to it as well.
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = KeepingConnector {
            http,
            budget: KeptBudget::new(policy.max_idle),
        };
        let connector = HttpsConnector::from((connector, tls.probe_config()));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(policy.idle_timeout)
            .pool_max_idle_per_host(1)
            .http1_max_buf_size(MAX_RESPONSE_HEADER_BYTES)
            .build(connector.clone());
        Self {
            client,
            client_connector: connector,
            probe_timeout,
            connections: policy.connections,
        }
    }

    /// Probe one engine (R1, R2) on a tokio runtime with time and I/O: the
    /// result, and its kind decided from the error's structure, not its
    /// text. Completes within the probe timeout, never panics.
    pub async fn probe(&self, engine_endpoint: &str) -> (ProbeResult, ProbeClass) {
        let url = probe_url(engine_endpoint);
        let (uri, https) = match target(&url) {
            Ok(target) => target,
            Err((class, error)) => return failed(class, error),
        };
        let keep = self.connections.keeps(https);
        let deadline = Instant::now() + self.probe_timeout;
        let (mut outcome, retry) = self.call(&uri, keep, deadline).await;
        if retry {
            outcome = self.call(&uri, keep, deadline).await.0;
        }
        match outcome {
            Ok(status) => answered(status),
            Err((class, error)) => failed(class, error),
        }
    }

    /// One request for `uri` before `deadline`: the status or why not, and
    /// whether the request goes again (a kept connection the engine had
    /// closed: once more, on a fresh one, as the pool holds none for it now).
    async fn call(
        &self,
        uri: &Uri,
        keep: bool,
        deadline: Instant,
    ) -> (Result<u16, (ProbeClass, String)>, bool) {
        let call = Cell::new(Call {
            keep,
            connection: None,
        });
        CALL.scope(call, async {
            let exchanged = if keep {
                tokio::time::timeout_at(deadline, self.exchange_kept(uri, deadline)).await
            } else {
                tokio::time::timeout_at(deadline, self.exchange_fresh(uri)).await
            };
            let handshaking = CALL.with(|call| call.get().connection) == Some(Made::Tcp)
                && uri.scheme_str() == Some("https");
            match exchanged {
                Ok(Ok(status)) => (Ok(status), false),
                Err(_elapsed) if handshaking => {
                    (Err((ProbeClass::Tls, tls::handshake_timeout())), false)
                }
                Err(_elapsed) => (
                    Err((ProbeClass::Timeout, reason::TIMEOUT.to_owned())),
                    false,
                ),
                Ok(Err((error, reused))) => (
                    Err(describe(
                        &*error,
                        uri.host().unwrap_or_default(),
                        handshaking,
                    )),
                    reused && closed_early(&*error),
                ),
            }
        })
        .await
    }

    /// A request through the pool. The body is read to its end within
    /// `DRAIN_LIMIT` and `DRAIN_WAIT`, or the connection is not kept.
    async fn exchange_kept(&self, uri: &Uri, deadline: Instant) -> Result<u16, Exchange> {
        let request = Request::get(uri.clone())
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::ACCEPT, "*/*")
            .body(Empty::new())
            .map_err(fresh)?;
        let response = self.client.request(request).await.map_err(|err| {
            let reused = Served::of(err.connect_info());
            (Box::new(err) as BoxError, reused)
        })?;
        let status = response.status().as_u16();
        let served = response.extensions().get::<Served>().cloned();
        let drained_by = deadline.min(Instant::now() + DRAIN_WAIT);
        let body = Limited::new(response.into_body(), DRAIN_LIMIT as usize).collect();
        if let (Ok(Ok(_)), Some(served)) = (tokio::time::timeout_at(drained_by, body).await, served)
        {
            served.0.store(true, Ordering::Release);
        }
        Ok(status)
    }

    /// A request over a fresh connection asked to close, driven in this task
    /// (the pool never sees it). The body is never read.
    async fn exchange_fresh(&self, uri: &Uri) -> Result<u16, Exchange> {
        let host = match (uri.host(), uri.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (host, _) => host.unwrap_or_default().to_owned(),
        };
        let path = uri.path_and_query().map_or("/", |path| path.as_str());
        let request = Request::get(path)
            .header(header::HOST, host)
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::ACCEPT, "*/*")
            .header(header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(fresh)?;
        let mut connector = self.client_connector.clone();
        let io = tower_service::Service::call(&mut connector, uri.clone())
            .await
            .map_err(fresh)?;
        made(Made::Ready);
        let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_RESPONSE_HEADER_BYTES)
            .handshake(io)
            .await
            .map_err(fresh)?;
        let mut connection = std::pin::pin!(connection);
        let mut response = std::pin::pin!(sender.send_request(request));
        let response = tokio::select! {
            biased;
            response = &mut response => response,
            ended = &mut connection => match ended {
                Err(err) => Err(err),
                // The engine closed after its answer: the answer stands.
                Ok(()) => response.await,
            },
        };
        Ok(response.map_err(fresh)?.status().as_u16())
    }
}

/// The probe URL parsed, and whether it is `https://`.
fn target(url: &str) -> Result<(Uri, bool), (ProbeClass, String)> {
    let bad =
        |why: &dyn std::fmt::Display| (ProbeClass::Other, format!("bad engine endpoint: {why}"));
    let uri: Uri = url.parse().map_err(|err| bad(&err))?;
    let https = match uri.scheme_str() {
        Some(scheme) if scheme.eq_ignore_ascii_case("http") => false,
        Some(scheme) if scheme.eq_ignore_ascii_case("https") => true,
        Some(scheme) => return Err(bad(&format_args!("unsupported scheme {scheme}"))),
        None => return Err(bad(&"no scheme")),
    };
    let Some(host) = uri.host() else {
        return Err(bad(&"no host"));
    };
    if https {
        tls::server_name(host).map_err(|text| (ProbeClass::Tls, text))?;
    }
    Ok((uri, https))
}

/// The class and text of a failed request: hyper's parse errors and early
/// ends by its error, the rest as both probers describe it.
fn describe(err: &(dyn StdError + 'static), host: &str, handshaking: bool) -> (ProbeClass, String) {
    for hyper in tls::error_chain(err).filter_map(|err| err.downcast_ref::<hyper::Error>()) {
        if hyper.is_parse() {
            return (ProbeClass::Other, malformed(hyper));
        }
        if hyper.is_incomplete_message() {
            return describe_io(&io::ErrorKind::UnexpectedEof.into());
        }
    }
    describe_error(err, Some(host), handshaking)
}

/// The text of a response hyper could not parse, worded as the blocking
/// prober words ureq's (hyper tells the kind only in its text).
fn malformed(err: &hyper::Error) -> String {
    let text = err.to_string();
    if text == "message head is too large" {
        return head_too_large(MAX_RESPONSE_HEADER_BYTES);
    }
    let text = if err.is_parse_status() {
        "invalid response status"
    } else {
        text.strip_suffix(" parsed").unwrap_or(&text)
    };
    format!("malformed response: http parse fail: {text}")
}

/// Whether a request failed because the engine closed its connection
/// before a complete answer (end of stream, a reset, a broken pipe).
fn closed_early(err: &(dyn StdError + 'static)) -> bool {
    let closed = |err: &(dyn StdError + 'static)| match err.downcast_ref::<hyper::Error>() {
        Some(hyper) if hyper.is_incomplete_message() => Some(true),
        _ => err.downcast_ref::<io::Error>().map(closed_before_answer),
    };
    tls::error_chain(err).find_map(closed).unwrap_or(false)
}

/// hyper-util's TCP connector, each new connection marked for its probe
/// ([`Call`]) and given a [`KeptBudget`] place if the probe keeps it.
#[derive(Debug, Clone)]
pub(crate) struct KeepingConnector {
    http: HttpConnector<ClassifyingResolver>,
    budget: Arc<KeptBudget>,
}

type BoxError = Box<dyn StdError + Send + Sync>;

impl tower_service::Service<Uri> for KeepingConnector {
    type Response = Keeping;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Keeping, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.http.call(uri);
        let budget = Arc::clone(&self.budget);
        Box::pin(async move {
            let stream = connecting.await?;
            // Outside a probe's scope (hyper finishing a connection in the
            // background), nothing is kept.
            let place = if made(Made::Tcp) {
                budget.admit()
            } else {
                None
            };
            Ok(Keeping {
                stream,
                place,
                served: Served::default(),
            })
        })
    }
}

/// A new connection, its kept place (without one, its [`Connected`] is
/// poisoned so hyper's pool drops it), and whether it has [`Served`].
#[derive(Debug)]
pub(crate) struct Keeping {
    stream: TokioIo<TcpStream>,
    place: Option<KeptPlace>,
    served: Served,
}

impl Connection for Keeping {
    fn connected(&self) -> Connected {
        made(Made::Ready);
        let connected = self.stream.connected().extra(self.served.clone());
        if self.place.is_none() {
            connected.poison();
        }
        connected
    }
}

impl Read for Keeping {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl Write for Keeping {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // A connection about to serve again with anything to read (a close,
        // or an answer sent unasked) fails as if the engine had closed it,
        // so the request goes again on a fresh one: hyper's own watch runs
        // in another task and can be a moment late.
        let mut byte = [0_u8; 1];
        if self.served.get()
            && !matches!(
                rustix::net::recv(
                    self.stream.inner(),
                    &mut byte,
                    rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT,
                ),
                Err(rustix::io::Errno::AGAIN)
            )
        {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// hyper-util's resolver, its failures carried as [`ResolveFailed`].
#[derive(Debug, Clone)]
pub(crate) struct ClassifyingResolver(GaiResolver);

impl tower_service::Service<Name> for ClassifyingResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().to_owned();
        let lookup = self.0.call(name);
        Box::pin(async move {
            match lookup.await {
                Ok(addrs) => Ok(addrs.collect::<Vec<_>>().into_iter()),
                Err(err) => {
                    let why = describe_io(&err).1;
                    Err(io::Error::new(err.kind(), ResolveFailed::new(&host, &why)))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probing::probe::tests::unhealthy;

    fn probe(endpoint: &str) -> ProbeResult {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a test runtime");
        let policy = ConnectionPolicy::new(Connections::Keep, Duration::from_secs(1), 16);
        let prober = AsyncProber::new(Duration::from_millis(200), TlsClient::system(), policy);
        runtime.block_on(prober.probe(endpoint)).0
    }

    #[test]
    fn https_to_a_closed_port_is_a_connect_error_before_any_tls() {
        assert_eq!(
            probe(crate::probing::probe::tests::HTTPS_CLOSED_PORT),
            unhealthy(0, reason::CONNECTION_REFUSED.to_owned())
        );
    }

    #[test]
    fn bad_endpoints_fail_without_panicking() {
        for endpoint in crate::probing::probe::tests::BAD_ENDPOINTS {
            match probe(endpoint) {
                ProbeResult::Unhealthy { status: 0, error } => {
                    assert!(!error.is_empty(), "{endpoint:?}");
                }
                other => panic!("{endpoint:?}: {other:?}"),
            }
        }
    }
}
