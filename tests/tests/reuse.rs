//! Kept connections (issues 14 and 23, `run --connections`) on both runtimes,
//! against real engines on loopback that keep connections alive, close or
//! reset them while idle, or close them just as the next request arrives,
//! and raw hostile ones ([`RawEngine`]) that answer ahead or trickle a body:
//! a probe over a kept connection gives the same outcome a fresh one
//! gives, a connection the engine closed before answering is retried once
//! on a fresh one (and that retry is not a second request to the engine),
//! any other failure is the outcome, only a cleanly finished small
//! response leaves a connection to reuse, and a fleet larger than the
//! bound on kept connections keeps what fits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use healthprobe_core::ProbeResult;
use healthprobe_shell::probing::connections::{ConnectionPolicy, Connections};
use healthprobe_shell::probing::probe::{ProbeClass, Prober};
use healthprobe_shell::probing::probe_async::AsyncProber;
use healthprobe_shell::tls::{TlsClient, TlsOptions};
use healthprobe_tests::{
    Behaviour, EngineTls, Fleet, HANG_GUARD, HUGE_BODY_BYTES, HealthprobeProcess, KeepAlive,
    Runtime, RuntimeRecord, ScratchDir, TestCa, TestEngine, TestWorker, Validity, both_runtimes,
    test_config, wait_until, write_records_file,
};

/// Seven times the slowest successful fresh TLS probe seen on the loaded
/// two-core machine (286 ms in a debug build at a load of 10).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A prober of either runtime, keeping connections or not. The async one
/// probes in tasks of a runtime of its own that keeps running between
/// probes, as the worker's fan-out does: hyper watches idle connections,
/// and returns kept ones to its pool, from tasks of their own.
enum AnyProber {
    Threads(Prober),
    Async(Box<(AsyncProber, tokio::runtime::Runtime)>),
}

impl AnyProber {
    fn new(runtime: Runtime, connections: Connections, tls: TlsClient) -> Self {
        Self::with(runtime, policy(connections), tls, PROBE_TIMEOUT)
    }

    fn with(runtime: Runtime, policy: ConnectionPolicy, tls: TlsClient, timeout: Duration) -> Self {
        match runtime {
            Runtime::Threads => Self::Threads(Prober::new(timeout, tls, policy)),
            Runtime::Async => Self::Async(Box::new((
                AsyncProber::new(timeout, tls, policy),
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap(),
            ))),
        }
    }

    fn reusing(runtime: Runtime) -> Self {
        Self::new(runtime, Connections::Keep, TlsClient::system())
    }

    fn probe(&self, url: &str) -> (ProbeResult, ProbeClass) {
        match self {
            Self::Threads(prober) => prober.probe(url),
            Self::Async(parts) => {
                let (prober, runtime) = &**parts;
                let (prober, url) = (prober.clone(), url.to_owned());
                runtime
                    .block_on(runtime.spawn(async move { prober.probe(&url).await }))
                    .unwrap()
            }
        }
    }
}

/// `connections` with the default bound and idle timeout.
fn policy(connections: Connections) -> ConnectionPolicy {
    ConnectionPolicy::new(connections, Duration::from_secs(1), 16)
}

fn keeping(behaviour: Behaviour, keep_alive: KeepAlive) -> TestEngine {
    let engine = TestEngine::start(behaviour).unwrap();
    engine.set_keep_alive(keep_alive);
    engine
}

fn healthy() -> (ProbeResult, ProbeClass) {
    (ProbeResult::Healthy, ProbeClass::Ok)
}

/// A raw keep-alive HTTP server on loopback for the hostile cases the
/// test engines do not script: the first request is answered by `first`
/// (which writes what it likes and signals when done), and the connection
/// is then held open; every later request, on any connection, gets `503`
/// (closing).
struct RawEngine {
    url: String,
    first_done: std::sync::mpsc::Receiver<()>,
    connections: Arc<AtomicUsize>,
    _server: std::thread::JoinHandle<()>,
}

impl RawEngine {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
    const UNAVAILABLE: &[u8] =
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

    fn start(first: fn(&mut dyn std::io::Write)) -> Self {
        Self::serve(None, first)
    }

    /// [`RawEngine::start`] over TLS, with a certificate for 127.0.0.1 from [`ca`].
    fn start_tls(first: fn(&mut dyn std::io::Write)) -> Self {
        let config = ca()
            .server_cert(&["127.0.0.1"], Validity::Current)
            .server_config();
        Self::serve(Some(config), first)
    }

    fn serve(tls: Option<Arc<rustls::ServerConfig>>, first: fn(&mut dyn std::io::Write)) -> Self {
        use std::io::{Read, Write};
        trait Conn: Read + Write + Send {}
        impl<T: Read + Write + Send> Conn for T {}
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let (done, first_done) = std::sync::mpsc::channel();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::clone(&connections);
        let server = std::thread::spawn(move || {
            let mut answered_first = false;
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                accepted.fetch_add(1, Ordering::SeqCst);
                let mut stream: Box<dyn Conn> = match &tls {
                    None => Box::new(stream),
                    Some(config) => {
                        let Ok(connection) = rustls::ServerConnection::new(Arc::clone(config))
                        else {
                            continue;
                        };
                        Box::new(rustls::StreamOwned::new(connection, stream))
                    }
                };
                let mut head = Vec::new();
                let mut byte = [0_u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                if !head.ends_with(b"\r\n\r\n") {
                    continue;
                }
                if answered_first {
                    let _ = stream.write_all(Self::UNAVAILABLE);
                    continue;
                }
                answered_first = true;
                first(&mut *stream);
                let _ = done.send(());
                // Held open: a later request on it would read what `first`
                // left behind, which is what must not happen.
                held.push(stream);
            }
        });
        Self {
            url,
            first_done,
            connections,
            _server: server,
        }
    }

    /// An engine that answers ahead: its first answer is followed by a
    /// second `200 OK` nobody asked for, in the same write or `later`.
    /// Over TLS when `tls` (each write one record).
    fn answering_ahead(later: bool, tls: bool) -> Self {
        let first: fn(&mut dyn std::io::Write) = if later {
            |stream| {
                let _ = stream.write_all(Self::OK);
                std::thread::sleep(Duration::from_millis(50));
                let _ = stream.write_all(Self::OK);
            }
        } else {
            |stream| {
                let _ = stream.write_all(&[Self::OK, Self::OK].concat());
            }
        };
        if tls {
            Self::start_tls(first)
        } else {
            Self::start(first)
        }
    }

    fn wait_for_the_first_answer(&self) {
        self.first_done
            .recv_timeout(HANG_GUARD)
            .expect("the engine sent its first answer");
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A TLS client trusting [`ca`] (through `--ca-file`), and the scratch
/// directory holding that file.
fn trusting_ca() -> (ScratchDir, TlsClient) {
    let dir = ScratchDir::new("reuse-tls").unwrap();
    let ca_file = dir.path().join("ca.pem");
    ca().write_cert(&ca_file).unwrap();
    let tls = TlsClient::new(&TlsOptions {
        ca_file: Some(ca_file),
        ..TlsOptions::default()
    })
    .unwrap();
    (dir, tls)
}

/// The CA of the TLS engines, made once per test binary.
fn ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| TestCa::new("healthprobe reuse test CA"))
}

both_runtimes! {
    fn d14_a_kept_connection_serves_every_later_probe(runtime) {
        {
            let engine = keeping(Behaviour::Status(200), KeepAlive::On);
            let prober = AnyProber::reusing(runtime);
            for _ in 0..5 {
                assert_eq!(prober.probe(&engine.url()), healthy(), "{runtime:?}");
            }
            assert_eq!(engine.requests(), 5, "{runtime:?}");
            assert_eq!(engine.connections(), 1, "{runtime:?}: one connection reused");
            assert!(
                engine.seen().iter().all(|request| !request.asks_close()),
                "{runtime:?}: a reusing prober does not ask to close"
            );
        }
    }

    fn d14_without_reuse_every_probe_opens_and_closes_its_own(runtime) {
        {
            let engine = keeping(Behaviour::Status(200), KeepAlive::On);
            let prober = AnyProber::new(runtime, Connections::Fresh, TlsClient::system());
            for _ in 0..3 {
                assert_eq!(prober.probe(&engine.url()), healthy(), "{runtime:?}");
            }
            assert_eq!(engine.connections(), 3, "{runtime:?}");
            assert!(engine.seen().iter().all(|request| request.asks_close()));
        }
    }

    fn d14_a_bad_status_is_the_outcome_and_keeps_the_connection(runtime) {
        {
            let engine = keeping(Behaviour::Status(503), KeepAlive::On);
            let prober = AnyProber::reusing(runtime);
            for _ in 0..3 {
                assert_eq!(
                    prober.probe(&engine.url()),
                    (
                        ProbeResult::Unhealthy {
                            status: 503,
                            error: "unexpected status 503".into()
                        },
                        ProbeClass::BadStatus
                    ),
                    "{runtime:?}"
                );
            }
            assert_eq!(engine.connections(), 1, "{runtime:?}");
        }
    }

    fn d14_a_connection_closed_before_the_answer_is_retried_once_on_a_fresh_one(runtime) {
        for keep_alive in [KeepAlive::CloseOnNext, KeepAlive::ResetOnNext] {
            {
                let engine = keeping(
                    Behaviour::Script(vec![
                        Behaviour::Status(200),
                        Behaviour::Status(503),
                        Behaviour::Status(200),
                    ]),
                    keep_alive,
                );
                let prober = AnyProber::reusing(runtime);
                let outcomes: Vec<_> = (0..3).map(|_| prober.probe(&engine.url()).0).collect();
                // The script advanced once per probe: the dropped request was never answered.
                assert_eq!(
                    outcomes,
                    [
                        ProbeResult::Healthy,
                        ProbeResult::Unhealthy {
                            status: 503,
                            error: "unexpected status 503".into()
                        },
                        ProbeResult::Healthy,
                    ],
                    "{runtime:?} {keep_alive:?}"
                );
                assert_eq!(engine.requests(), 3, "{runtime:?} {keep_alive:?}");
                assert_eq!(
                    engine.connections(),
                    3,
                    "{runtime:?} {keep_alive:?}: each later probe retried on a fresh connection"
                );
            }
        }
    }

    fn d14_connections_the_engine_closed_or_reset_while_idle_are_not_used(runtime) {
        for reset in [false, true] {
            {
                let engine = keeping(Behaviour::Status(200), KeepAlive::On);
                let prober = AnyProber::reusing(runtime);
                assert_eq!(prober.probe(&engine.url()), healthy());
                for round in 1..4 {
                    // The kept connection is idle in the engine once it has
                    // written the answer the probe returned with.
                    assert!(
                        wait_until(HANG_GUARD, || engine.idle() == 1),
                        "{runtime:?} reset={reset}: no idle connection"
                    );
                    assert_eq!(engine.drop_idle(reset), 1, "{runtime:?} reset={reset}");
                    assert_eq!(
                        prober.probe(&engine.url()),
                        healthy(),
                        "{runtime:?} reset={reset}"
                    );
                    assert_eq!(engine.connections(), round + 1, "{runtime:?} reset={reset}");
                }
                assert_eq!(engine.requests(), 4);
            }
        }
    }

    fn d14_a_hang_on_a_kept_connection_is_a_timeout_not_a_retry(runtime) {
        {
            let engine = keeping(
                Behaviour::Script(vec![Behaviour::Status(200), Behaviour::Hang]),
                KeepAlive::On,
            );
            let prober = AnyProber::reusing(runtime);
            assert_eq!(prober.probe(&engine.url()), healthy());
            let started = Instant::now();
            assert_eq!(
                prober.probe(&engine.url()),
                (
                    ProbeResult::Unhealthy {
                        status: 0,
                        error: "timeout".into()
                    },
                    ProbeClass::Timeout
                ),
                "{runtime:?}"
            );
            assert!(started.elapsed() < HANG_GUARD, "{runtime:?}");
            assert_eq!(engine.connections(), 1, "{runtime:?}: no retry after a timeout");
        }
    }

    fn d14_a_big_body_is_not_read_and_closes_the_connection(runtime) {
        {
            let engine = keeping(
                Behaviour::Script(vec![Behaviour::HugeBody, Behaviour::Status(200)]),
                KeepAlive::On,
            );
            let prober = AnyProber::reusing(runtime);
            assert_eq!(prober.probe(&engine.url()), healthy(), "{runtime:?}");
            assert_eq!(prober.probe(&engine.url()), healthy(), "{runtime:?}");
            assert_eq!(engine.connections(), 2, "{runtime:?}: the body closed the first");
            assert!(
                engine.bytes_sent() < HUGE_BODY_BYTES / 16,
                "{runtime:?}: {} bytes sent",
                engine.bytes_sent()
            );
        }
    }

    /// A hostile engine that answers ahead: its first answer on a
    /// connection carries a second `200 OK` nobody asked for, right
    /// behind it or a moment later, and every later request gets `503`.
    /// The stale `200` is never taken for the next probe's answer: the
    /// connection is not reused, and the next probe finds the 503, as
    /// without reuse; over plain HTTP and over TLS (where the extra answer
    /// is in the same record, or in a record of its own).
    fn d14_an_answer_sent_ahead_is_never_the_next_probes_answer(runtime) {
        let (_dir, trusting) = trusting_ca();
        let cases = [false, true].into_iter().flat_map(|tls| {
            [(false, false), (false, true), (true, false), (true, true)]
                .map(|(reuse, later)| (tls, reuse, later))
        });
        for (tls, reuse, later) in cases {
            let engine = RawEngine::answering_ahead(later, tls);
            let connections = if reuse { Connections::Keep } else { Connections::Fresh };
            let prober = AnyProber::new(runtime, connections, trusting.clone());
            // What followed the answer does not change it.
            assert_eq!(
                prober.probe(&engine.url),
                healthy(),
                "{runtime:?} tls={tls} reuse={reuse} later={later}"
            );
            engine.wait_for_the_first_answer();
            assert_eq!(
                prober.probe(&engine.url),
                (
                    ProbeResult::Unhealthy {
                        status: 503,
                        error: "unexpected status 503".into()
                    },
                    ProbeClass::BadStatus
                ),
                "{runtime:?} tls={tls} reuse={reuse} later={later}"
            );
        }
        // The same through the run's own fan-out (the async runtime's two
        // worker threads, as in production, whose reactor also runs while
        // the connection is idle, so there the stale answer was a race;
        // the single-threaded runtime above, as an embedder may drive
        // `AsyncProber`, lost it every time): the second tick's 503 fails
        // the game.
        let engine = RawEngine::answering_ahead(true, false);
        let mut worker = TestWorker::with_connections(
            runtime,
            test_config(1, 1),
            vec![RuntimeRecord::running("g1", "c1", engine.url.clone())],
            Connections::Keep,
        );
        assert!(worker.tick().1.is_empty(), "{runtime:?}: healthy first");
        engine.wait_for_the_first_answer();
        let (_, events) = worker.tick();
        assert_eq!(events.len(), 1, "{runtime:?}: {events:?}");
        assert!(
            matches!(
                events[0].details,
                healthprobe_core::EventDetails::ProbeFailed { last_status: 503, .. }
            ),
            "{runtime:?}: {events:?}"
        );
    }

    /// A body that comes slower than `DRAIN_WAIT` after the head: the
    /// outcome is the status, at once, and the connection is not kept.
    /// Reuse never makes a probe wait for a body it does not need (without
    /// reuse the body is never read), so a hostile engine cannot hold a
    /// probe slot for a whole probe timeout by trickling one.
    fn d14_a_slow_body_neither_holds_the_probe_nor_keeps_the_connection(runtime) {
        let engine = RawEngine::start(|stream| {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nok");
        });
        let timeout = Duration::from_secs(5);
        let prober = AnyProber::with(runtime, policy(Connections::Keep), TlsClient::system(), timeout);
        let started = Instant::now();
        assert_eq!(prober.probe(&engine.url), healthy(), "{runtime:?}");
        let took = started.elapsed();
        assert!(took < timeout / 2, "{runtime:?}: the probe waited {took:?} for the body");
        // Not kept: the next probe connects afresh, and finds that 503.
        assert_eq!(
            prober.probe(&engine.url).0,
            ProbeResult::Unhealthy {
                status: 503,
                error: "unexpected status 503".into()
            },
            "{runtime:?}"
        );
        assert_eq!(engine.connections(), 2, "{runtime:?}");
    }

    /// A status followed, in the same write, by a body that cannot be
    /// parsed: the outcome is the status, as the head decides it, on both
    /// runtimes and with or without reuse (the blocking prober never reads
    /// a body it does not need).
    fn d14_a_broken_body_behind_the_head_does_not_change_the_outcome(runtime) {
        for reuse in [false, true] {
            let engine = RawEngine::start(|stream| {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
            });
            let connections = if reuse { Connections::Keep } else { Connections::Fresh };
            let prober = AnyProber::new(runtime, connections, TlsClient::system());
            assert_eq!(prober.probe(&engine.url), healthy(), "{runtime:?} reuse={reuse}");
        }
    }

    /// More engines than the bound on kept connections: the connections
    /// kept first stay kept, and the other engines are probed on fresh
    /// ones, probe after probe, however the probes are ordered (a pool
    /// that closed its least recently used connection to make room would
    /// keep none of them in a sweep).
    fn i23_a_fleet_larger_than_the_bound_keeps_what_fits(runtime) {
        {
            let engines: Vec<_> = (0..3)
                .map(|_| keeping(Behaviour::Status(200), KeepAlive::On))
                .collect();
            let prober = AnyProber::with(
                runtime,
                ConnectionPolicy { max_idle: 2, ..policy(Connections::Keep) },
                TlsClient::system(),
                PROBE_TIMEOUT,
            );
            for _ in 0..3 {
                for engine in &engines {
                    assert_eq!(prober.probe(&engine.url()), healthy());
                }
            }
            let connections: Vec<_> = engines.iter().map(TestEngine::connections).collect();
            assert_eq!(connections, [1, 1, 3], "{runtime:?}");
        }
    }

    fn d14_https_connections_are_reused_and_retried_alike(runtime) {
        let (_dir, tls) = trusting_ca();
        for keep_alive in [KeepAlive::On, KeepAlive::CloseOnNext, KeepAlive::ResetOnNext] {
            {
                let config = ca()
                    .server_cert(&["127.0.0.1"], Validity::Current)
                    .server_config();
                let engine =
                    TestEngine::start_tls(Behaviour::Status(200), EngineTls::Serve(config)).unwrap();
                engine.set_keep_alive(keep_alive);
                let prober = AnyProber::new(runtime, Connections::Keep, tls.clone());
                for _ in 0..3 {
                    assert_eq!(
                        prober.probe(&engine.url()),
                        healthy(),
                        "{runtime:?} {keep_alive:?}"
                    );
                }
                let expected = if keep_alive == KeepAlive::On { 1 } else { 3 };
                assert_eq!(engine.connections(), expected, "{runtime:?} {keep_alive:?}");
                assert_eq!(engine.requests(), 3, "{runtime:?} {keep_alive:?}");
            }
        }
    }
}

/// One engine of the fleet the with/without comparison runs: what it
/// answers at each tick (set before the tick, so that a retried probe
/// meets the same engine, as it would in life), what it does with kept
/// connections, and what it does to idle ones after each tick
/// (`Some(reset)`: close them, or reset them).
struct Scripted {
    ticks: Vec<Behaviour>,
    keep_alive: KeepAlive,
    drop_idle: Option<bool>,
}

fn comparison_fleet() -> Vec<Scripted> {
    let flapping: Vec<_> = [200, 200, 500, 503, 500, 200, 200, 200, 500, 200, 200, 200]
        .into_iter()
        .map(Behaviour::Status)
        .collect();
    let hostile = vec![
        Behaviour::Status(200),
        Behaviour::Close,
        Behaviour::Garbage,
        Behaviour::Status(200),
        Behaviour::HugeBody,
        Behaviour::Status(503),
        Behaviour::Status(503),
        Behaviour::Redirect("http://127.0.0.1:1/healthz".into()),
        Behaviour::Status(200),
        Behaviour::HugeHeader,
        Behaviour::Trickle,
        Behaviour::Status(200),
    ];
    let engine = |ticks: &Vec<Behaviour>, keep_alive, drop_idle| Scripted {
        ticks: ticks.clone(),
        keep_alive,
        drop_idle,
    };
    vec![
        engine(&flapping, KeepAlive::On, None),
        engine(&flapping, KeepAlive::CloseOnNext, None),
        engine(&flapping, KeepAlive::ResetOnNext, None),
        engine(&flapping, KeepAlive::On, Some(false)),
        engine(&flapping, KeepAlive::On, Some(true)),
        engine(&flapping, KeepAlive::Off, None),
        engine(&hostile, KeepAlive::On, None),
        engine(&hostile, KeepAlive::ResetOnNext, None),
        engine(&hostile, KeepAlive::On, Some(true)),
    ]
}

/// The events of [`comparison_fleet`] over its ticks, tick by tick.
fn fleet_events(
    runtime: Runtime,
    connections: Connections,
) -> Vec<Vec<healthprobe_core::HealthEvent>> {
    let scripted = comparison_fleet();
    let fleet = Fleet::start(scripted.iter().map(|engine| engine.ticks[0].clone())).unwrap();
    for (engine, scripted) in fleet.engines().iter().zip(&scripted) {
        engine.set_keep_alive(scripted.keep_alive);
    }
    let mut worker =
        TestWorker::with_connections(runtime, test_config(2, 2), fleet.records(), connections);
    (0..scripted[0].ticks.len())
        .map(|tick| {
            for (engine, scripted) in fleet.engines().iter().zip(&scripted) {
                engine.set(scripted.ticks[tick].clone());
            }
            let (_, events) = worker.tick();
            for (engine, scripted) in fleet.engines().iter().zip(&scripted) {
                if let Some(reset) = scripted.drop_idle {
                    engine.drop_idle(reset);
                }
            }
            events
        })
        .collect()
}

both_runtimes! {
    /// Issue 14's contract: reuse changes how a probe travels, never what
    /// it finds. Engines that keep, close, reset or drop their connections,
    /// scripted healthy, failing and hostile, give the same events tick by
    /// tick with `--connections fresh` and `--connections keep`.
    fn d14_events_are_the_same_with_and_without_reuse(runtime) {
        let fresh = fleet_events(runtime, Connections::Fresh);
        let reused = fleet_events(runtime, Connections::Keep);
        assert!(
            fresh.iter().flatten().count() >= 8,
            "the scripts fail and recover: {fresh:?}"
        );
        assert_eq!(fresh, reused);
    }
}

/// `healthprobe run` over `records`: three ticks 10 ms apart on `runtime`,
/// with `extra` flags; it must succeed.
fn run_three_ticks(
    records: &std::path::Path,
    runtime: Runtime,
    extra: &[&str],
) -> healthprobe_tests::Finished {
    let mut args = vec![
        "run",
        "--records",
        records.to_str().unwrap(),
        "--ticks",
        "3",
        "--interval",
        "10ms",
        "--runtime",
        runtime.name(),
    ];
    args.extend_from_slice(extra);
    let finished = HealthprobeProcess::spawn(&args)
        .unwrap()
        .wait(Duration::from_secs(20))
        .unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
    finished
}

both_runtimes! {
    /// `healthprobe run --connections keep`: three ticks over a keep-alive
    /// `http://` engine use one connection, and fail and recover as without
    /// reuse; the default run opens one per tick for an `http://` engine.
    fn d14_run_reuse_connections_keeps_one_connection_per_engine(runtime) {
        for reuse in [false, true] {
            let engine = keeping(
                Behaviour::Script(vec![
                    Behaviour::Status(503),
                    Behaviour::Status(200),
                    Behaviour::Status(200),
                ]),
                KeepAlive::On,
            );
            let dir = ScratchDir::new("reuse-cli").unwrap();
            let records = dir.join("records.json");
            write_records_file(&records, &[RuntimeRecord::running("g0", "c0", engine.url())])
                .unwrap();
            let mut args = vec!["--failures-threshold", "1", "--recovery-threshold", "1"];
            if reuse {
                args.extend(["--connections", "keep"]);
            }
            let finished = run_three_ticks(&records, runtime, &args);
            let kinds: Vec<_> = finished
                .stdout
                .lines()
                .map(|line| {
                    let event: serde_json::Value = serde_json::from_str(line).unwrap();
                    event["event_type"].as_str().unwrap().to_owned()
                })
                .collect();
            assert_eq!(kinds, ["probe_failed", "probe_recovered"], "reuse={reuse}");
            assert_eq!(engine.requests(), 3, "reuse={reuse}");
            assert_eq!(engine.connections(), if reuse { 1 } else { 3 }, "reuse={reuse}");
        }
    }
}

both_runtimes! {
    /// An engine that goes away (stopped, its port closed) while its
    /// connection is kept: the kept connection is dropped or retried, and
    /// the probe finds what a fresh one finds — nothing listening.
    fn d14_an_engine_gone_while_its_connection_is_kept_is_refused_as_without_reuse(runtime) {
        let engine = keeping(Behaviour::Status(200), KeepAlive::On);
        let url = engine.url();
        let reusing = AnyProber::reusing(runtime);
        let fresh = AnyProber::new(runtime, Connections::Fresh, TlsClient::system());
        assert_eq!(reusing.probe(&url), healthy());
        engine.stop();
        let refused = (
            ProbeResult::Unhealthy {
                status: 0,
                error: "connection refused".into(),
            },
            ProbeClass::ConnectError,
        );
        assert_eq!(fresh.probe(&url), refused);
        assert_eq!(reusing.probe(&url), refused, "{runtime:?}");
    }

    /// A fleet larger than the open-file limit leaves connections for: the
    /// run keeps what fits, probes the rest afresh, and says so, once.
    fn i23_a_fleet_larger_than_the_open_file_limit_allows_is_warned_about_once(runtime) {
        let fleet = Fleet::start((0..8).map(|_| Behaviour::Status(200))).unwrap();
        for engine in fleet.engines() {
            engine.set_keep_alive(KeepAlive::On);
        }
        let dir = ScratchDir::new("reuse-small-limit").unwrap();
        let records = dir.join("records.json");
        fleet.write_records(&records).unwrap();
        // 70 open files: 64 for the process's own, 1 probe in flight, 5 kept.
        let mut command = std::process::Command::new("prlimit");
        command
            .arg("--nofile=70:70")
            .arg(healthprobe_tests::healthprobe_binary())
            .args(["run", "--records"])
            .arg(&records)
            .args(["--ticks", "3", "--interval", "10ms", "--runtime", runtime.name()])
            .args(["--connections", "keep", "--max-concurrency", "1"]);
        let finished = HealthprobeProcess::spawn_command(command)
            .unwrap()
            .wait(Duration::from_secs(20))
            .unwrap();
        assert!(finished.status.success(), "{}", finished.stderr);
        let warnings: Vec<_> = finished
            .stderr
            .lines()
            .filter(|line| line.contains("more engines than the open-file limit"))
            .collect();
        assert_eq!(warnings.len(), 1, "{}", finished.stderr);
        assert!(warnings[0].contains("kept_connections=5"), "{}", warnings[0]);
        let mut connections: Vec<_> = fleet.engines().iter().map(TestEngine::connections).collect();
        connections.sort_unstable();
        assert_eq!(connections, [1, 1, 1, 1, 1, 3, 3, 3], "{runtime:?}");
    }
}
