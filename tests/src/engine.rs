//! One test engine: a tiny HTTP/1.1 server on `127.0.0.1:0` whose
//! [`Behaviour`] a test chooses, and changes, while it runs.
//!
//! Built on a plain std [`TcpListener`]: one accept thread per engine with a
//! [`ENGINE_THREAD_STACK`] stack. Quick answers (a status, a redirect,
//! garbage, an abrupt close) are written from the accept thread itself, so a
//! healthy engine costs one thread. Answers that take time (trickle, huge
//! header or body, delayed) get a thread of their own that ends when the
//! client goes away or the engine stops. A hung connection pins no thread at
//! all: it is parked in a [`HangGauge`] and dropped once the client closes
//! it (noticed at the next look) or the engine stops.
//!
//! By default every engine answers `Connection: close`: one request per
//! connection, which is what a prober with fresh connections sends.
//! [`TestEngine::set_keep_alive`] makes it keep connections open after a
//! status or redirect answer (unless the client asked to close), serving
//! the next requests on them from a thread of their own — or drop them as
//! engines do that close idle connections ([`KeepAlive`],
//! [`TestEngine::drop_idle`]).
//!
//! [`TestEngine::start_tls`] serves the same behaviours over TLS (rustls,
//! certificates from [`crate::TestCa`]), or stalls every handshake
//! ([`EngineTls::StallHandshake`]). A plain engine answers a request that
//! is not HTTP — such as a TLS ClientHello — with `400 Bad Request`, as web
//! servers do, so an `https://` endpoint on a plain engine is "not TLS".

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Stack size of every engine thread (accept and per-connection).
pub const ENGINE_THREAD_STACK: usize = 64 * 1024;

/// How many of the most recent requests an engine keeps in [`TestEngine::seen`].
/// [`TestEngine::requests`] counts all of them.
pub const RECENT_REQUESTS: usize = 64;

/// The longest request head an engine reads; a longer one closes the connection.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Size of the one header sent by [`Behaviour::HugeHeader`].
pub const HUGE_HEADER_BYTES: usize = 200 * 1024;

/// `Content-Length` announced by [`Behaviour::HugeBody`]: 1 GiB.
pub const HUGE_BODY_BYTES: u64 = 1 << 30;

/// Time between two bytes of [`Behaviour::Trickle`].
pub const TRICKLE_PACE: Duration = Duration::from_millis(10);

/// How long an engine waits for a client to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What an engine does with one request, after reading its head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer this status with `Connection: close` and a short text body
    /// (no body for 1xx, 204 and 304).
    Status(u16),
    /// Answer `status` after `delay` (a thread waits; the engine stopping
    /// ends the wait without an answer).
    Delayed {
        /// How long to wait before answering.
        delay: Duration,
        /// The status then answered.
        status: u16,
    },
    /// Answer `status` once the test opens `gate` (a thread waits; the
    /// engine stopping ends the wait without an answer): a probe that is in
    /// flight for exactly as long as the test needs, however slow the machine.
    Gated {
        /// Opened by the test.
        gate: Gate,
        /// The status then answered.
        status: u16,
    },
    /// Never answer. The connection stays open, holding no thread, until the
    /// client closes it or the engine stops; [`HangGauge`] counts it.
    Hang,
    /// Close the connection without sending a byte (the client sees EOF).
    Close,
    /// Slowloris: `HTTP/1.1 200 OK\r\n` and then an endless header, one byte
    /// every [`TRICKLE_PACE`], until the client closes or the engine stops.
    Trickle,
    /// A 200 whose head carries one header of [`HUGE_HEADER_BYTES`].
    HugeHeader,
    /// A 200 whose whole head, status line to the blank line included, is
    /// exactly this many bytes (padded with one `X-Padding` header; at least 128).
    PaddedHead(usize),
    /// A 200 announcing a body of [`HUGE_BODY_BYTES`], streamed lazily from
    /// one static buffer of zeros; stops when the client closes.
    HugeBody,
    /// A few kilobytes that are not HTTP, then close.
    Garbage,
    /// `302 Found` with `Location:` this URL.
    Redirect(String),
    /// `302 Found` with `Location:` this engine's own `/healthz`.
    RedirectLoop,
    /// One behaviour per request, in order; the last one repeats. An empty
    /// script closes every connection, as [`Behaviour::Close`]. A script
    /// inside a script is indexed by the same request number.
    Script(Vec<Behaviour>),
}

impl Behaviour {
    /// Every way an engine can misbehave at the HTTP level, in this order:
    /// slowloris, a huge header, a huge body, garbage, an abrupt close, a
    /// hang, a redirect to `redirect_to` (a healthy engine elsewhere) and a
    /// redirect loop. Each must fail its probe within the probe timeout.
    pub fn hostile(redirect_to: &TestEngine) -> Vec<Behaviour> {
        vec![
            Behaviour::Trickle,
            Behaviour::HugeHeader,
            Behaviour::HugeBody,
            Behaviour::Garbage,
            Behaviour::Close,
            Behaviour::Hang,
            Behaviour::Redirect(redirect_to.healthz_url()),
            Behaviour::RedirectLoop,
        ]
    }
}

/// Holds back the answers of [`Behaviour::Gated`] engines until [`Gate::open`].
/// Clones share one gate; two gates are equal when they are the same gate.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Let every answer waiting on this gate, and every later one, go out.
    pub fn open(&self) {
        let (open, changed) = &*self.0;
        *lock(open) = true;
        changed.notify_all();
    }

    /// Wait until the gate is open, at most `timeout`; whether it is.
    fn wait_open(&self, timeout: Duration) -> bool {
        let (open, changed) = &*self.0;
        let (open, _) = changed
            .wait_timeout_while(lock(open), timeout, |open| !*open)
            .unwrap_or_else(PoisonError::into_inner);
        *open
    }
}

impl PartialEq for Gate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Gate {}

/// What an engine does with a connection after a status or redirect answer
/// to a client that did not send `Connection: close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepAlive {
    /// Answer `Connection: close` and close, as always (the default).
    #[default]
    Off,
    /// Answer `Connection: keep-alive` and serve the next requests on the
    /// connection; [`TestEngine::drop_idle`] closes or resets it while idle.
    On,
    /// Answer keep-alive, then close the connection (FIN, no answer) when
    /// the next request on it arrives, without counting that request: an
    /// engine that closed an idle connection just as the probe came back.
    CloseOnNext,
    /// [`KeepAlive::CloseOnNext`] with a reset (RST) instead of a close.
    ResetOnNext,
}

/// One request an engine received (its head, at most [`MAX_REQUEST_HEAD`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// The method, for example `GET`.
    pub method: String,
    /// The request target exactly as sent, for example `/healthz`.
    pub path: String,
    /// The `Host` header, if any.
    pub host: Option<String>,
    /// The whole head (request line and headers), lossily decoded.
    pub head: String,
    /// When the engine finished reading the head.
    pub at: Instant,
}

/// Connections held open by [`Behaviour::Hang`], possibly shared by many
/// engines (a [`crate::Fleet`] shares one): how many are open now, and the
/// most that were open at once.
///
/// A held connection is checked for closure (a non-blocking peek) whenever
/// the gauge is read or another connection is held, so a client that closed
/// its side is never counted as still in flight at the moment a new request
/// arrives. On loopback a client's close reaches the peer before its next
/// connection can, which makes [`HangGauge::peak`] exact.
#[derive(Debug, Default)]
pub struct HangGauge {
    inner: Mutex<HangInner>,
}

#[derive(Debug, Default)]
struct HangInner {
    held: Vec<(u64, TcpStream)>,
    peak: usize,
    total: u64,
}

impl HangGauge {
    /// A new gauge with nothing held.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Hung connections whose client has not closed them yet.
    pub fn open(&self) -> usize {
        let mut inner = lock(&self.inner);
        reap(&mut inner.held);
        inner.held.len()
    }

    /// The most hung connections that were open at once since the start or
    /// the last [`HangGauge::reset_peak`].
    pub fn peak(&self) -> usize {
        lock(&self.inner).peak
    }

    /// Hung connections ever held.
    pub fn total(&self) -> u64 {
        lock(&self.inner).total
    }

    /// Restart the peak from the connections open now.
    pub fn reset_peak(&self) {
        let mut inner = lock(&self.inner);
        reap(&mut inner.held);
        inner.peak = inner.held.len();
    }

    fn open_for(&self, engine: u64) -> usize {
        let mut inner = lock(&self.inner);
        reap(&mut inner.held);
        inner.held.iter().filter(|(id, _)| *id == engine).count()
    }

    /// Park `stream`; dropped at once when `engine` is stopping.
    fn hold(&self, engine: &Shared, stream: TcpStream) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let mut inner = lock(&self.inner);
        if engine.is_stopping() {
            return;
        }
        reap(&mut inner.held);
        inner.held.push((engine.id, stream));
        inner.total += 1;
        inner.peak = inner.peak.max(inner.held.len());
    }

    /// Drop every connection `engine` holds.
    fn release(&self, engine: u64) {
        lock(&self.inner).held.retain(|(id, _)| *id != engine);
    }
}

/// Drop held connections whose client closed (EOF) or reset them.
fn reap(held: &mut Vec<(u64, TcpStream)>) {
    held.retain(|(_, stream)| {
        let mut byte = [0_u8; 1];
        match stream.peek(&mut byte) {
            Ok(0) => false,
            Ok(_) => true,
            Err(err) => err.kind() == io::ErrorKind::WouldBlock,
        }
    });
}

/// How a TLS engine ([`TestEngine::start_tls`]) meets a client.
#[derive(Clone)]
pub enum EngineTls {
    /// Shake hands with this configuration, then serve HTTP over TLS.
    Serve(Arc<rustls::ServerConfig>),
    /// Accept the connection and never answer the ClientHello (held as
    /// [`Behaviour::Hang`] holds a connection).
    StallHandshake,
}

impl std::fmt::Debug for EngineTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Serve(_) => f.write_str("Serve(..)"),
            Self::StallHandshake => f.write_str("StallHandshake"),
        }
    }
}

/// An HTTP engine on `127.0.0.1:0`. Stops, and frees its port, on drop.
#[derive(Debug)]
pub struct TestEngine {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl TestEngine {
    /// Start an engine with its own [`HangGauge`].
    pub fn start(behaviour: Behaviour) -> io::Result<Self> {
        Self::start_with_gauge(behaviour, HangGauge::new())
    }

    /// Start an engine whose hung connections count in `gauge`.
    pub fn start_with_gauge(behaviour: Behaviour, gauge: Arc<HangGauge>) -> io::Result<Self> {
        Self::start_inner(behaviour, gauge, None)
    }

    /// Start an engine that serves `behaviour` over TLS (`https://` URLs).
    pub fn start_tls(behaviour: Behaviour, tls: EngineTls) -> io::Result<Self> {
        Self::start_inner(behaviour, HangGauge::new(), Some(tls))
    }

    /// [`TestEngine::start_tls`] counting hung connections in `gauge`.
    pub fn start_tls_with_gauge(
        behaviour: Behaviour,
        tls: EngineTls,
        gauge: Arc<HangGauge>,
    ) -> io::Result<Self> {
        Self::start_inner(behaviour, gauge, Some(tls))
    }

    fn start_inner(
        behaviour: Behaviour,
        gauge: Arc<HangGauge>,
        tls: Option<EngineTls>,
    ) -> io::Result<Self> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            addr,
            behaviour: Mutex::new(Current {
                behaviour,
                position: 0,
            }),
            log: Mutex::new(Log::default()),
            log_changed: Condvar::new(),
            connections: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            stop: Mutex::new(false),
            stop_changed: Condvar::new(),
            live: Mutex::new(Live::default()),
            gauge,
            tls: tls.map(Mutex::new),
            keep_alive: Mutex::new(KeepAlive::Off),
        });
        let accept = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("engine-{}", addr.port()))
                .stack_size(ENGINE_THREAD_STACK)
                .spawn(move || accept_loop(&shared, &listener))?
        };
        Ok(Self {
            shared,
            accept: Some(accept),
        })
    }

    /// The address the engine listens on (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:port` (`https://` for a TLS engine), without a trailing slash.
    pub fn url(&self) -> String {
        format!("{}://{}", self.shared.scheme(), self.shared.addr)
    }

    /// `http://127.0.0.1:port/healthz`, what a prober should request.
    pub fn healthz_url(&self) -> String {
        format!("{}/healthz", self.url())
    }

    /// Whether the engine serves TLS.
    pub fn is_tls(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// Answer every later request with `behaviour` (a script starts over).
    pub fn set(&self, behaviour: Behaviour) {
        *lock(&self.shared.behaviour) = Current {
            behaviour,
            position: 0,
        };
    }

    /// Meet later connections as `tls` says (a renewed or replaced
    /// certificate); connections already made keep theirs.
    ///
    /// # Panics
    /// On a plain engine ([`TestEngine::start`]).
    pub fn set_tls(&self, tls: EngineTls) {
        let current = self.shared.tls.as_ref().expect("set_tls on a TLS engine");
        *lock(current) = tls;
    }

    /// Keep connections open after an answer, or not ([`KeepAlive`]);
    /// applies to answers from now on.
    pub fn set_keep_alive(&self, keep_alive: KeepAlive) {
        *lock(&self.shared.keep_alive) = keep_alive;
    }

    /// Close (FIN) every kept connection that waits for its next request,
    /// or reset it (RST) if `reset`; returns how many.
    pub fn drop_idle(&self, reset: bool) -> usize {
        let idle = std::mem::take(&mut lock(&self.shared.live).idle);
        for (_, stream) in &idle {
            if reset {
                set_linger_zero(stream);
                // Wakes the serving thread, which closes the last descriptor: an RST.
                let _ = stream.shutdown(Shutdown::Read);
            } else {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        idle.len()
    }

    /// Kept connections waiting for their next request now.
    pub fn idle(&self) -> usize {
        lock(&self.shared.live).idle.len()
    }

    /// The behaviour set now.
    pub fn behaviour(&self) -> Behaviour {
        lock(&self.shared.behaviour).behaviour.clone()
    }

    /// Requests whose head was read completely, since the start.
    pub fn requests(&self) -> usize {
        lock(&self.shared.log).requests
    }

    /// Connections accepted, since the start (with or without a request).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Response bytes the kernel accepted from this engine, since the start.
    /// Bounds what a client read: a huge body the client drops early stops
    /// at its socket buffers (a few MiB), far from [`HUGE_BODY_BYTES`].
    pub fn bytes_sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// The most recent requests (at most [`RECENT_REQUESTS`]), oldest first.
    pub fn seen(&self) -> Vec<SeenRequest> {
        lock(&self.shared.log).recent.iter().cloned().collect()
    }

    /// The request targets of [`TestEngine::seen`], oldest first.
    pub fn paths(&self) -> Vec<String> {
        lock(&self.shared.log)
            .recent
            .iter()
            .map(|request| request.path.clone())
            .collect()
    }

    /// Wait until at least `count` requests were received; false on timeout.
    pub fn wait_for_requests(&self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut log = lock(&self.shared.log);
        while log.requests < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            log = self
                .shared
                .log_changed
                .wait_timeout(log, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Connections this engine holds hung now (clients that closed excluded).
    pub fn hung(&self) -> usize {
        self.shared.gauge.open_for(self.shared.id)
    }

    /// Connections being answered now (a hung one is not: it is parked).
    /// Drops to 0 once every trickle, huge body or delayed answer has ended.
    pub fn serving(&self) -> usize {
        lock(&self.shared.live).streams.len()
    }

    /// The gauge counting this engine's hung connections.
    pub fn gauge(&self) -> &Arc<HangGauge> {
        &self.shared.gauge
    }

    /// Stop now: close every connection, free the port, join every thread.
    pub fn stop(self) {
        drop(self);
    }

    /// First half of a stop: signal every thread and wake the accept.
    /// Lets a fleet signal all its engines before joining any.
    pub(crate) fn begin_stop(&self) {
        let shared = &self.shared;
        {
            let mut stop = lock(&shared.stop);
            if *stop {
                return;
            }
            *stop = true;
            shared.stopping.store(true, Ordering::SeqCst);
            shared.stop_changed.notify_all();
        }
        for (_, stream) in &lock(&shared.live).streams {
            let _ = stream.shutdown(Shutdown::Both);
        }
        shared.gauge.release(shared.id);
        // Wake the blocked accept; it sees `stopping` and returns.
        let _ = TcpStream::connect_timeout(&shared.addr, Duration::from_secs(1));
    }

    /// Second half of a stop: join the accept thread, then connection threads.
    pub(crate) fn finish_stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let threads = std::mem::take(&mut lock(&self.shared.live).threads);
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Drop for TestEngine {
    fn drop(&mut self) {
        self.begin_stop();
        self.finish_stop();
    }
}

#[derive(Debug)]
struct Shared {
    id: u64,
    addr: SocketAddr,
    behaviour: Mutex<Current>,
    log: Mutex<Log>,
    log_changed: Condvar,
    connections: AtomicUsize,
    sent: AtomicU64,
    stopping: AtomicBool,
    stop: Mutex<bool>,
    stop_changed: Condvar,
    live: Mutex<Live>,
    gauge: Arc<HangGauge>,
    /// `None` for a plain engine; swapped by [`TestEngine::set_tls`].
    tls: Option<Mutex<EngineTls>>,
    keep_alive: Mutex<KeepAlive>,
}

#[derive(Debug)]
struct Current {
    behaviour: Behaviour,
    position: usize,
}

#[derive(Debug, Default)]
struct Log {
    requests: usize,
    recent: VecDeque<SeenRequest>,
}

/// Connections being served (so a stop can shut them down) and the
/// threads serving the slow ones (so a stop can join them).
#[derive(Debug, Default)]
struct Live {
    next_id: u64,
    streams: Vec<(u64, TcpStream)>,
    threads: Vec<JoinHandle<()>>,
    /// Kept connections waiting for their next request (clones, by track id).
    idle: Vec<(u64, TcpStream)>,
}

impl Shared {
    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Wait up to `pause` or until the engine stops; true if it stopped.
    /// Paces trickles and delays; never used to wait for another thread.
    fn pause_or_stop(&self, pause: Duration) -> bool {
        let stop = lock(&self.stop);
        let (stop, _) = self
            .stop_changed
            .wait_timeout_while(stop, pause, |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        *stop
    }

    /// Register a clone of `stream` so that a stop can shut it down;
    /// `None` if the engine is stopping (then drop the connection).
    fn track(self: &Arc<Self>, stream: &TcpStream) -> Option<Tracked> {
        let clone = stream.try_clone().ok()?;
        let mut live = lock(&self.live);
        if self.is_stopping() {
            return None;
        }
        live.next_id += 1;
        let id = live.next_id;
        live.streams.push((id, clone));
        Some(Tracked {
            shared: Arc::clone(self),
            id,
        })
    }

    /// Whether to keep the connection of `request` after a quick answer:
    /// keep-alive is on and the client did not ask to close.
    fn keeps(&self, request: &SeenRequest) -> bool {
        *lock(&self.keep_alive) != KeepAlive::Off && !request.asks_close()
    }

    /// Log one request and choose what to do with it.
    fn record(&self, request: SeenRequest) -> Behaviour {
        let behaviour = {
            let mut current = lock(&self.behaviour);
            let position = current.position;
            current.position += 1;
            pick(&current.behaviour, position)
        };
        let mut log = lock(&self.log);
        log.requests += 1;
        if log.recent.len() == RECENT_REQUESTS {
            log.recent.pop_front();
        }
        log.recent.push_back(request);
        self.log_changed.notify_all();
        behaviour
    }

    /// Write all of `bytes`, counting what the kernel (or TLS) accepted in `sent`.
    fn send(&self, stream: &mut impl Write, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match stream.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    self.sent.fetch_add(written as u64, Ordering::Relaxed);
                    bytes = &bytes[written..];
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Run `serve` on a thread of its own; the connection is dropped if
    /// no thread can be started.
    fn spawn(&self, serve: impl FnOnce() + Send + 'static) {
        let spawned = thread::Builder::new()
            .name(format!("engine-{}-conn", self.addr.port()))
            .stack_size(ENGINE_THREAD_STACK)
            .spawn(serve);
        if let Ok(handle) = spawned {
            let mut live = lock(&self.live);
            live.threads.retain(|thread| !thread.is_finished());
            live.threads.push(handle);
        }
    }
}

/// A connection registered with its engine; unregistered (and the clone
/// closed) on drop, so the socket closes when the served stream does.
struct Tracked {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        lock(&self.shared.live)
            .streams
            .retain(|(id, _)| *id != self.id);
    }
}

fn pick(behaviour: &Behaviour, position: usize) -> Behaviour {
    match behaviour {
        Behaviour::Script(steps) => match steps.get(position).or(steps.last()) {
            Some(step) => pick(step, position),
            None => Behaviour::Close,
        },
        other => other.clone(),
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    let mut buffer = vec![0_u8; MAX_REQUEST_HEAD];
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) if shared.is_stopping() => return,
            // Out of descriptors or similar: back off briefly and retry.
            Err(_) => {
                if shared.pause_or_stop(Duration::from_millis(10)) {
                    return;
                }
                continue;
            }
        };
        if shared.is_stopping() {
            return;
        }
        shared.connections.fetch_add(1, Ordering::SeqCst);
        match &shared.tls {
            None => serve(shared, stream, &mut buffer),
            Some(tls) => {
                let tls = lock(tls).clone();
                serve_tls(shared, stream, &tls, &mut buffer);
            }
        }
    }
}

fn serve(shared: &Arc<Shared>, stream: TcpStream, buffer: &mut [u8]) {
    let _ = stream.set_nodelay(true);
    let Some(tracked) = shared.track(&stream) else {
        return;
    };
    if stream.set_read_timeout(Some(READ_TIMEOUT)).is_err() {
        return;
    }
    // Not HTTP (a TLS ClientHello starts 0x16): `400 Bad Request`, as web servers answer.
    let mut first = [0_u8; 1];
    if matches!(stream.peek(&mut first), Ok(1) if !first[0].is_ascii_alphabetic()) {
        let _ = shared.send(&mut &stream, &status_response(400, false));
        return;
    }
    let Some(request) = read_head(&stream, buffer) else {
        return;
    };
    let keep = shared.keeps(&request);
    let behaviour = shared.record(request);
    if let Some(stream) = respond(shared, stream, tracked, behaviour, keep) {
        keep_serving(shared, stream);
    }
}

/// [`serve`] over TLS: shake hands (or stall), read the head, then answer
/// as a plain engine would, encrypted.
fn serve_tls(shared: &Arc<Shared>, stream: TcpStream, tls: &EngineTls, buffer: &mut [u8]) {
    let _ = stream.set_nodelay(true);
    let config = match tls {
        EngineTls::StallHandshake => {
            shared.gauge.hold(shared, stream);
            return;
        }
        EngineTls::Serve(config) => Arc::clone(config),
    };
    let Some(tracked) = shared.track(&stream) else {
        return;
    };
    if stream.set_read_timeout(Some(READ_TIMEOUT)).is_err() {
        return;
    }
    let Ok(connection) = rustls::ServerConnection::new(config) else {
        return;
    };
    // The handshake happens in the first read; a failed one ends here.
    let mut tls = TlsConn(rustls::StreamOwned::new(connection, stream));
    let Some(request) = read_head(&mut tls.0, buffer) else {
        return;
    };
    let keep = shared.keeps(&request);
    let behaviour = shared.record(request);
    if let Some(kept) = respond(shared, tls, tracked, behaviour, keep) {
        keep_serving(shared, kept);
    }
}

/// A connection kept after an answer: its stream and its registration.
struct Kept<C> {
    stream: C,
    tracked: Tracked,
}

/// Serve the next requests of a kept connection on a thread of its own,
/// as [`KeepAlive`] says, until the client closes, the engine stops or
/// drops it, or an answer ends it.
fn keep_serving<C: Conn + Read>(shared: &Arc<Shared>, kept: Kept<C>) {
    let engine = Arc::clone(shared);
    shared.spawn(move || {
        let Kept {
            mut stream,
            mut tracked,
        } = kept;
        let mut buffer = vec![0_u8; MAX_REQUEST_HEAD];
        loop {
            let Some(tcp) = stream.tcp().try_clone().ok() else {
                return;
            };
            let _ = stream.tcp().set_read_timeout(Some(IDLE_TIMEOUT));
            {
                let mut live = lock(&engine.live);
                if engine.is_stopping() {
                    return;
                }
                live.idle.push((tracked.id, tcp));
            }
            let request = read_head(&mut stream, &mut buffer);
            let dropped = {
                let mut live = lock(&engine.live);
                let before = live.idle.len();
                live.idle.retain(|(id, _)| *id != tracked.id);
                live.idle.len() == before
            };
            // Dropped while idle: never answer on it, even a request that
            // got in first (a shut-down read side can still deliver one).
            let (Some(request), false) = (request, dropped) else {
                return;
            };
            let mode = *lock(&engine.keep_alive);
            match mode {
                KeepAlive::CloseOnNext => return,
                KeepAlive::ResetOnNext => {
                    set_linger_zero(stream.tcp());
                    return;
                }
                KeepAlive::Off | KeepAlive::On => {}
            }
            let keep = engine.keeps(&request);
            let behaviour = engine.record(request);
            match respond(&engine, stream, tracked, behaviour, keep) {
                Some(next) => {
                    stream = next.stream;
                    tracked = next.tracked;
                }
                None => return,
            }
        }
    });
}

/// How long a kept connection waits for its next request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Make the last close of `stream` send a reset (RST) instead of a FIN.
#[allow(unsafe_code)]
fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a `linger` of the size passed.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// A served connection: plain TCP or TLS over it.
trait Conn: Write + Read + Send + 'static {
    /// The TCP connection under it (a hung connection is held as TCP).
    fn into_tcp(self) -> TcpStream;
    /// The TCP connection under it, borrowed.
    fn tcp(&self) -> &TcpStream;
    /// End the response: a TLS `close_notify`, nothing for TCP.
    fn finish(&mut self);
}

impl Conn for TcpStream {
    fn into_tcp(self) -> TcpStream {
        self
    }

    fn tcp(&self) -> &TcpStream {
        self
    }

    fn finish(&mut self) {}
}

struct TlsConn(rustls::StreamOwned<rustls::ServerConnection, TcpStream>);

impl Write for TlsConn {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Read for TlsConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Conn for TlsConn {
    fn into_tcp(self) -> TcpStream {
        self.0.into_parts().1
    }

    fn tcp(&self) -> &TcpStream {
        self.0.get_ref()
    }

    fn finish(&mut self) {
        self.0.conn.send_close_notify();
        let _ = self.0.flush();
    }
}

/// Answer one request with `behaviour`; a status or redirect answered
/// with `keep` (keep-alive) hands the connection back to be kept.
fn respond<C: Conn>(
    shared: &Arc<Shared>,
    mut stream: C,
    tracked: Tracked,
    behaviour: Behaviour,
    keep: bool,
) -> Option<Kept<C>> {
    match behaviour {
        Behaviour::Status(status) if keep => {
            shared
                .send(&mut stream, &status_response(status, true))
                .ok()?;
            return Some(Kept { stream, tracked });
        }
        Behaviour::Status(status) => {
            let _ = shared.send(&mut stream, &status_response(status, false));
            stream.finish();
        }
        Behaviour::Redirect(location) if keep => {
            shared
                .send(&mut stream, &redirect_response(&location, true))
                .ok()?;
            return Some(Kept { stream, tracked });
        }
        Behaviour::Close => {}
        Behaviour::Garbage => {
            let _ = shared.send(&mut stream, garbage());
            stream.finish();
        }
        Behaviour::Redirect(location) => {
            let _ = shared.send(&mut stream, &redirect_response(&location, false));
            stream.finish();
        }
        Behaviour::RedirectLoop => {
            let location = format!("{}://{}/healthz", shared.scheme(), shared.addr);
            let _ = shared.send(&mut stream, &redirect_response(&location, false));
            stream.finish();
        }
        Behaviour::Hang => {
            drop(tracked);
            shared.gauge.hold(shared, stream.into_tcp());
        }
        Behaviour::Delayed { delay, status } => {
            let engine = Arc::clone(shared);
            shared.spawn(move || {
                let _tracked = tracked;
                if !engine.pause_or_stop(delay) {
                    let _ = engine.send(&mut stream, &status_response(status, false));
                    stream.finish();
                }
            });
        }
        Behaviour::Gated { gate, status } => {
            let engine = Arc::clone(shared);
            shared.spawn(move || {
                let _tracked = tracked;
                // Looks up every few milliseconds to see whether the engine stops.
                while !gate.wait_open(Duration::from_millis(5)) {
                    if engine.is_stopping() {
                        return;
                    }
                }
                let _ = engine.send(&mut stream, &status_response(status, false));
                stream.finish();
            });
        }
        Behaviour::HugeHeader => {
            let engine = Arc::clone(shared);
            shared.spawn(move || {
                let _tracked = tracked;
                let _ = engine.send(&mut stream, huge_header_response());
                stream.finish();
            });
        }
        Behaviour::PaddedHead(size) => {
            let engine = Arc::clone(shared);
            shared.spawn(move || {
                let _tracked = tracked;
                let _ = engine.send(&mut stream, &padded_head_response(size));
                stream.finish();
            });
        }
        Behaviour::HugeBody => {
            let engine = Arc::clone(shared);
            shared.spawn(move || {
                let _tracked = tracked;
                stream_huge_body(&engine, &mut stream);
            });
        }
        Behaviour::Trickle => {
            let engine = Arc::clone(shared);
            shared.spawn(move || {
                let _tracked = tracked;
                trickle(&engine, &mut stream);
            });
        }
        // `pick` never returns a script; close, as an empty one does.
        Behaviour::Script(_) => {}
    }
    None
}

/// Read until the blank line ending the head; `None` if the client closed,
/// stalled past the read timeout, or sent more than [`MAX_REQUEST_HEAD`].
fn read_head(mut stream: impl Read, buffer: &mut [u8]) -> Option<SeenRequest> {
    let mut filled = 0;
    loop {
        if filled == buffer.len() {
            return None;
        }
        let read = match stream.read(&mut buffer[filled..]) {
            Ok(0) => return None,
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        let search_from = filled.saturating_sub(3);
        filled += read;
        if let Some(end) = find(&buffer[search_from..filled], b"\r\n\r\n") {
            return Some(parse_head(&buffer[..search_from + end]));
        }
    }
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn parse_head(head: &[u8]) -> SeenRequest {
    let head = String::from_utf8_lossy(head).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let host = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("host")
            .then(|| value.trim().to_owned())
    });
    SeenRequest {
        method,
        path,
        host,
        head,
        at: Instant::now(),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

impl SeenRequest {
    /// Whether the request carries `Connection: close`.
    pub fn asks_close(&self) -> bool {
        asks_close(self.head.as_bytes())
    }
}

/// Whether a request head has a `Connection` header with the token `close`.
pub(crate) fn asks_close(head: &[u8]) -> bool {
    head.split(|&byte| byte == b'\n').skip(1).any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&byte| byte == b':') else {
            return false;
        };
        line[..colon]
            .trim_ascii()
            .eq_ignore_ascii_case(b"connection")
            && line[colon + 1..]
                .split(|&byte| byte == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

fn connection_header(keep: bool) -> &'static str {
    if keep { "keep-alive" } else { "close" }
}

fn status_response(status: u16, keep: bool) -> Vec<u8> {
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        String::new()
    } else if status == 200 {
        "ok\n".to_owned()
    } else {
        format!("{status} {}\n", reason(status))
    };
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{body}",
        reason(status),
        body.len(),
        connection_header(keep)
    )
    .into_bytes()
}

fn redirect_response(location: &str, keep: bool) -> Vec<u8> {
    format!(
        "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: {}\r\n\r\n",
        connection_header(keep)
    )
    .into_bytes()
}

/// Four kilobytes of deterministic noise that no parser takes for HTTP.
fn garbage() -> &'static [u8] {
    static GARBAGE: OnceLock<Vec<u8>> = OnceLock::new();
    GARBAGE.get_or_init(|| {
        let mut bytes = b"\x00\xff\xfe GARBAGE \x16\x03\x01".to_vec();
        let mut x: u32 = 0x9E37_79B9;
        while bytes.len() < 4096 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            bytes.push(x.to_le_bytes()[0]);
        }
        bytes
    })
}

fn huge_header_response() -> &'static [u8] {
    static RESPONSE: OnceLock<Vec<u8>> = OnceLock::new();
    RESPONSE.get_or_init(|| {
        let mut response =
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\nX-Padding: ".to_vec();
        response.resize(response.len() + HUGE_HEADER_BYTES, b'a');
        response.extend_from_slice(b"\r\n\r\n");
        response
    })
}

fn padded_head_response(size: usize) -> Vec<u8> {
    const START: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\nX-Padding: ";
    const END: &[u8] = b"\r\n\r\n";
    let mut response = START.to_vec();
    let padding = size.saturating_sub(START.len() + END.len()).max(1);
    response.resize(START.len() + padding, b'a');
    response.extend_from_slice(END);
    response
}

fn stream_huge_body(engine: &Shared, stream: &mut impl Write) {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {HUGE_BODY_BYTES}\r\nConnection: close\r\n\r\n"
    );
    if engine.send(stream, head.as_bytes()).is_err() {
        return;
    }
    let mut left = HUGE_BODY_BYTES;
    while left > 0 {
        let chunk = usize::try_from(left).map_or(ZEROS.len(), |left| left.min(ZEROS.len()));
        if engine.send(stream, &ZEROS[..chunk]).is_err() {
            return;
        }
        left -= chunk as u64;
    }
}

fn trickle(engine: &Shared, stream: &mut impl Write) {
    const PREFIX: &[u8] = b"HTTP/1.1 200 OK\r\nX-Trickle: ";
    let bytes = PREFIX.iter().copied().chain(std::iter::repeat(b'a'));
    for byte in bytes {
        if engine.send(stream, &[byte]).is_err() || engine.pause_or_stop(TRICKLE_PACE) {
            return;
        }
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
