//! Prometheus metrics of a running worker, served as OpenMetrics text
//! (`healthprobe run --metrics-addr ADDR`, `GET /metrics`).
//!
//! [`Metrics`] holds the counters, gauges and the tick-duration histogram
//! (the official `prometheus-client` crate) and is fed from two places:
//!
//! - [`Metrics::observe_tick`], once per tick with its [`TickReport`]
//!   (from [`Worker::run`]'s callback, or after each
//!   [`Worker::tick`]): probes by [`ProbeClass`], refused publishes,
//!   pending events, tracked games, the tick's duration, overruns, skips.
//! - [`MetricsTelemetry`], the [`Telemetry`] the worker calls once per
//!   delivered event (R12), so `healthprobe_events_published_total` counts
//!   exactly the deliveries, and once per folded probe with its latency
//!   (`healthprobe_probe_duration_seconds{result}`).
//!
//! `MetricsServer` (cargo feature `metrics-server`) serves them, and the
//! run's status ([`crate::status`]), over HTTP until dropped.
//!
//! A scrape sees whole ticks: applying a tick's report (and the latencies
//! of its probes, held until then) and encoding a scrape hold the same
//! lock, so `healthprobe_ticks_total`, the per-tick counters and the
//! latency histogram always agree within one scrape.
//!
//! [`Worker::run`]: crate::driver::worker::Worker::run
//! [`Worker::tick`]: crate::driver::worker::Worker::tick

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use healthprobe_core::EventType;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;

use crate::driver::coordinator::LeaseCounts;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tracing::debug;

use crate::driver::ports::Telemetry;
use crate::driver::worker::TickReport;
use crate::probing::probe::ProbeClass;
#[cfg(feature = "metrics-server")]
pub use server::MetricsServer;

/// The `Content-Type` of a scrape: OpenMetrics text 1.0.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of `healthprobe_tick_duration_seconds`, in seconds: from a
/// healthy loopback tick (10 ms) to a minute of hung probes.
pub(crate) const TICK_DURATION_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Upper bounds of `healthprobe_probe_duration_seconds` below the probe
/// timeout, in seconds; the timeout itself is the last bound.
pub const PROBE_DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Probe latencies held for the end of the tick beyond this many are
/// observed at once (an embedder that never calls [`Metrics::observe_tick`]
/// must not grow them for ever).
const MAX_HELD_LATENCIES: usize = 1 << 20;

/// The event types, in label order (their declaration order).
const EVENT_TYPES: [EventType; 2] = [EventType::ProbeFailed, EventType::ProbeRecovered];

type Labels = [(&'static str, &'static str); 1];

/// The worker's metrics and their registry. Share it in an [`Arc`].
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Held while a tick is applied and while a scrape is encoded; holds
    /// this tick's probe latencies, observed with its report.
    whole_ticks: Mutex<Vec<(ProbeClass, f64)>>,
    interval: Duration,
    probes: [Counter; ProbeClass::ALL.len()],
    events_published: [Counter; EVENT_TYPES.len()],
    publish_failures: Counter,
    pending_events: Gauge,
    tracked_games: Gauge,
    tick_duration: Histogram,
    probe_duration: [Histogram; ProbeClass::ALL.len()],
    tick_overruns: Counter,
    ticks: Counter,
    ticks_skipped: Counter,
    ha_shards_active: Gauge,
    ha_shards_suspended: Gauge,
    ha_fenced_writes: Counter,
    ha_fenced_publishes: Counter,
}

impl Metrics {
    /// Every metric at zero (each label value present), for a worker ticking
    /// every `interval` (a longer tick counts as an overrun) whose probes
    /// are bounded by `probe_timeout` (the latency histogram's last bucket).
    pub fn new(interval: Duration, probe_timeout: Duration) -> Self {
        let mut registry = Registry::with_prefix("healthprobe");

        let probes = Family::<Labels, Counter>::default();
        registry.register(
            "probes",
            "Probes finished, by result: ok, bad_status, timeout, connect_error, tls_error, other",
            probes.clone(),
        );
        let probes = ProbeClass::ALL
            .map(|class| probes.get_or_create(&[("result", class.as_str())]).clone());

        let events = Family::<Labels, Counter>::default();
        registry.register(
            "events_published",
            "Events delivered to the publisher, by event_type",
            events.clone(),
        );
        let events_published = EVENT_TYPES.map(|event_type| {
            events
                .get_or_create(&[("event_type", event_type.as_str())])
                .clone()
        });

        let publish_failures = Counter::default();
        registry.register(
            "publish_failures",
            "Publish attempts the publisher refused (the event stays pending)",
            publish_failures.clone(),
        );
        let pending_events = Gauge::default();
        registry.register(
            "pending_events",
            "Events waiting for the publisher at the end of the last tick",
            pending_events.clone(),
        );
        let tracked_games = Gauge::default();
        registry.register(
            "tracked_games",
            "Games holding hysteresis state (a failure counted or published) after the last tick",
            tracked_games.clone(),
        );
        let tick_duration = Histogram::new(TICK_DURATION_BUCKETS);
        registry.register_with_unit(
            "tick_duration",
            "Wall time of each tick",
            Unit::Seconds,
            tick_duration.clone(),
        );
        let timeout = probe_timeout.as_secs_f64();
        let bounds: Vec<f64> = PROBE_DURATION_BUCKETS
            .into_iter()
            .filter(|bound| *bound < timeout)
            .chain([timeout])
            .collect();
        let probe_durations = Family::<Labels, Histogram, _>::new_with_constructor(move || {
            Histogram::new(bounds.iter().copied())
        });
        registry.register_with_unit(
            "probe_duration",
            "Time from a probe's start to its result, by result: ok, bad_status, timeout, connect_error, tls_error, other",
            Unit::Seconds,
            probe_durations.clone(),
        );
        let probe_duration = ProbeClass::ALL.map(|class| {
            probe_durations
                .get_or_create(&[("result", class.as_str())])
                .clone()
        });
        let tick_overruns = Counter::default();
        registry.register(
            "tick_overruns",
            "Ticks that took longer than the interval",
            tick_overruns.clone(),
        );
        let ticks = Counter::default();
        registry.register("ticks", "Ticks run, skipped ones included", ticks.clone());
        let ticks_skipped = Counter::default();
        registry.register(
            "ticks_skipped",
            "Ticks skipped because the running records could not be listed",
            ticks_skipped.clone(),
        );

        Self {
            registry,
            whole_ticks: Mutex::new(Vec::new()),
            interval,
            probes,
            events_published,
            publish_failures,
            pending_events,
            tracked_games,
            tick_duration,
            probe_duration,
            tick_overruns,
            ticks,
            ticks_skipped,
            ha_shards_active: Gauge::default(),
            ha_shards_suspended: Gauge::default(),
            ha_fenced_writes: Counter::default(),
            ha_fenced_publishes: Counter::default(),
        }
    }

    /// Failover's metrics too: the shards acted on, the fenced writes and
    /// publishes, and the lease thread's `counts`.
    pub fn with_ha(mut self, counts: &LeaseCounts) -> Self {
        let gauges = [
            (
                "ha_shards_active",
                "Shards this instance probes (held under a valid lease) at the end of the last tick",
                &self.ha_shards_active,
            ),
            (
                "ha_shards_suspended",
                "Shards held whose lease could not be proved in time (self-fenced: not probed, written or published)",
                &self.ha_shards_suspended,
            ),
        ];
        for (name, help, gauge) in gauges {
            self.registry.register(name, help, gauge.clone());
        }
        let counters = [
            (
                "ha_fenced_writes",
                "Shard state writes refused by the lease table (another instance holds the shard)",
                &self.ha_fenced_writes,
            ),
            (
                "ha_fenced_publishes",
                "Publishes refused by the stream's fence (another instance holds the shard)",
                &self.ha_fenced_publishes,
            ),
            ("ha_renewals", "Lease heartbeats answered", &counts.renewals),
            (
                "ha_renewal_failures",
                "Lease heartbeats that failed",
                &counts.renewal_failures,
            ),
            (
                "ha_acquired_shards",
                "Shards taken over (each under a new epoch)",
                &counts.acquired,
            ),
        ];
        for (name, help, counter) in counters {
            self.registry.register(name, help, counter.clone());
        }
        self
    }

    /// Apply one tick's report, and the latencies of its probes.
    pub fn observe_tick(&self, report: &TickReport) {
        // Held to the end: a scrape sees the whole tick or none of it.
        let mut held = self.lock();
        for (class, seconds) in held.drain(..) {
            self.probe_duration[class as usize].observe(seconds);
        }
        for (class, count) in report.probe_classes.iter() {
            self.probes[class as usize].inc_by(count as u64);
        }
        self.publish_failures.inc_by(report.publish_failures as u64);
        self.pending_events.set(report.pending as i64);
        self.tracked_games.set(report.tracked_games as i64);
        self.tick_duration.observe(report.duration.as_secs_f64());
        if report.duration > self.interval {
            self.tick_overruns.inc();
        }
        if report.skipped {
            self.ticks_skipped.inc();
        }
        self.ha_shards_active.set(report.shards_active as i64);
        self.ha_shards_suspended.set(report.shards_suspended as i64);
        self.ha_fenced_writes.inc_by(report.fenced_writes as u64);
        self.ha_fenced_publishes
            .inc_by(report.fenced_publishes as u64);
        self.ticks.inc();
    }

    /// Show what a restored state file holds before the first tick ends:
    /// its pending events and tracked games.
    pub fn observe_restored(&self, pending: usize, tracked_games: usize) {
        let _whole = self.lock();
        self.pending_events.set(pending as i64);
        self.tracked_games.set(tracked_games as i64);
    }

    /// Count one delivered event (what [`MetricsTelemetry`] calls).
    pub(crate) fn record_event(&self, event_type: EventType) {
        self.events_published[event_type as usize].inc();
    }

    /// Hold one probe's latency until its tick's report is applied (what
    /// [`MetricsTelemetry`] calls).
    pub fn record_probe(&self, class: ProbeClass, latency: Duration) {
        let mut held = self.lock();
        held.push((class, latency.as_secs_f64()));
        if held.len() >= MAX_HELD_LATENCIES {
            for (class, seconds) in held.drain(..) {
                self.probe_duration[class as usize].observe(seconds);
            }
        }
    }

    /// The OpenMetrics text of every metric, ending with `# EOF`.
    pub fn encode(&self) -> String {
        let _whole = self.lock();
        let mut text = String::with_capacity(4096);
        // Writing into a String cannot fail; an encoder error would leave a
        // partial text, which is still better than no answer.
        if let Err(err) = encode(&mut text, &self.registry) {
            debug!(error = %err, "cannot encode the metrics");
        }
        text
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(ProbeClass, f64)>> {
        // A holder that panicked left whole latencies, each pushed whole.
        self.whole_ticks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts each delivered event on [`Metrics`] (when there are metrics), then
/// on `inner`.
#[derive(Debug, Clone)]
pub struct MetricsTelemetry<T> {
    metrics: Option<Arc<Metrics>>,
    inner: T,
}

impl<T: Telemetry> MetricsTelemetry<T> {
    /// Count on `metrics`, if any, and on `inner`.
    pub fn new(metrics: Option<Arc<Metrics>>, inner: T) -> Self {
        Self { metrics, inner }
    }
}

impl<T: Telemetry> Telemetry for MetricsTelemetry<T> {
    fn record_event(&mut self, event_type: EventType) {
        if let Some(metrics) = &self.metrics {
            metrics.record_event(event_type);
        }
        self.inner.record_event(event_type);
    }

    fn record_probe(&mut self, class: ProbeClass, latency: Duration) {
        if let Some(metrics) = &self.metrics {
            metrics.record_probe(class, latency);
        }
        self.inner.record_probe(class, latency);
    }
}

#[cfg(feature = "metrics-server")]
mod server {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::io;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::thread::{self, JoinHandle};
    use std::time::Duration;

    use hyper::header::{
        ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue,
        X_CONTENT_TYPE_OPTIONS,
    };
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Method, Response, StatusCode, Uri};
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;
    use tokio::task::AbortHandle;
    use tracing::debug;

    use super::{Metrics, OPENMETRICS_CONTENT_TYPE};
    use crate::status::{StatusBoard, StatusQuery, page};

    /// Serves [`Metrics`] over HTTP until dropped.
    ///
    /// hyper's HTTP/1 server on a one-thread tokio runtime of its own, so
    /// idle or slow clients cost a socket each, never a thread:
    ///
    /// - at most [`MetricsServer::MAX_CONNECTIONS`] connections are open;
    ///   one more closes the oldest, so a fresh scrape always gets in;
    /// - each connection has [`MetricsServer::TIMEOUT`] to send its request
    ///   head (at most [`MetricsServer::MAX_HEAD`] bytes, else `431`), and
    ///   twice that in all, then it is closed;
    /// - one request per connection (`Connection: close`): `GET` (or
    ///   `HEAD`) `/metrics` is the scrape, another method there `405`, any
    ///   other path `404`, a request that is not HTTP `400`.
    #[derive(Debug)]
    pub struct MetricsServer {
        local_addr: SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        thread: Option<JoinHandle<()>>,
    }

    impl MetricsServer {
        /// Most connections open at once; one more closes the oldest.
        pub const MAX_CONNECTIONS: usize = 256;

        /// Bound on receiving a request head; twice this bounds a connection.
        pub const TIMEOUT: Duration = Duration::from_secs(5);

        /// Largest request head accepted (request line and headers); hyper's least.
        pub const MAX_HEAD: usize = 8 * 1024;

        /// Listen on `addr` (port 0 picks a free one) and serve `metrics`
        /// at `/metrics` and `status` at `/status` and `/`.
        ///
        /// Fails at once if the address cannot be bound (in use, not local,
        /// no permission) or the thread cannot start.
        pub fn start(
            addr: SocketAddr,
            metrics: Arc<Metrics>,
            status: Arc<StatusBoard>,
        ) -> io::Result<Self> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()?;
            let listener = runtime.block_on(TcpListener::bind(addr))?;
            let local_addr = listener.local_addr()?;
            let (stop, stopped) = oneshot::channel();
            let thread = thread::Builder::new()
                .name("metrics-http".to_owned())
                .spawn(move || {
                    runtime.block_on(async {
                        tokio::select! {
                            () = serve(listener, metrics, status) => {}
                            _ = stopped => {}
                        }
                    });
                    // Dropping the runtime closes every connection left.
                })?;
            Ok(Self {
                local_addr,
                stop: Some(stop),
                thread: Some(thread),
            })
        }

        /// The address it listens on.
        pub fn local_addr(&self) -> SocketAddr {
            self.local_addr
        }
    }

    impl Drop for MetricsServer {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// Accept connections for ever, each served on a task of its own.
    async fn serve(listener: TcpListener, metrics: Arc<Metrics>, status: Arc<StatusBoard>) {
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(MetricsServer::TIMEOUT)
            .max_buf_size(MetricsServer::MAX_HEAD)
            .keep_alive(false);
        let mut open: VecDeque<AbortHandle> = VecDeque::new();
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors, say: let some close first.
                    debug!(error = %err, "metrics server: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            open.retain(|task| !task.is_finished());
            if open.len() >= MetricsServer::MAX_CONNECTIONS {
                if let Some(oldest) = open.pop_front() {
                    oldest.abort();
                }
            }
            let metrics = Arc::clone(&metrics);
            let status = Arc::clone(&status);
            let service = service_fn(move |request| {
                let response = respond(&metrics, &status, request.method(), request.uri());
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http.serve_connection(TokioIo::new(stream), service);
            let task = tokio::spawn(async move {
                let bound = 2 * MetricsServer::TIMEOUT;
                if let Ok(Err(err)) = tokio::time::timeout(bound, connection).await {
                    debug!(error = %err, "metrics server: connection failed");
                }
            });
            open.push_back(task.abort_handle());
        }
    }

    /// The response to `method` on `uri`.
    fn respond(
        metrics: &Metrics,
        status: &StatusBoard,
        method: &Method,
        uri: &Uri,
    ) -> Response<String> {
        let path = uri.path();
        let known = ["/metrics", "/status", "/"].contains(&path);
        let (code, content_type, body) = match (method, path) {
            (&Method::GET | &Method::HEAD, "/metrics") => {
                (StatusCode::OK, OPENMETRICS_CONTENT_TYPE, metrics.encode())
            }
            (&Method::GET | &Method::HEAD, "/status") => match StatusQuery::parse(uri.query()) {
                Ok(query) => {
                    let snapshot = status.snapshot();
                    let body = match &snapshot {
                        Some(snapshot) => snapshot.to_json(&query),
                        None => "{\"run\":null}".to_owned(),
                    };
                    (StatusCode::OK, JSON, body)
                }
                Err(err) => (StatusCode::BAD_REQUEST, TEXT, format!("{err}\n")),
            },
            (&Method::GET | &Method::HEAD, "/") => {
                let snapshot = status.snapshot();
                (StatusCode::OK, HTML, page::render(snapshot.as_deref()))
            }
            _ if known => (
                StatusCode::METHOD_NOT_ALLOWED,
                TEXT,
                "method not allowed; use GET (nothing here changes the run)\n".to_owned(),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                TEXT,
                "not found; metrics are at /metrics, the status at /status and /\n".to_owned(),
            ),
        };
        let mut response = Response::new(body);
        *response.status_mut() = code;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if content_type == HTML {
            // No script, no asset from anywhere: even a text that escaped
            // escaping could not run.
            headers.insert(
                CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            );
        }
        if code == StatusCode::METHOD_NOT_ALLOWED {
            headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        response
    }

    const TEXT: &str = "text/plain; charset=utf-8";
    const JSON: &str = "application/json";
    const HTML: &str = "text/html; charset=utf-8";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::CountingTelemetry;

    /// The value of the sample line `name` (with its labels) in `text`.
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse().ok()).flatten()
        })
    }

    fn tick(probes: &[(ProbeClass, usize)], duration_ms: u64) -> TickReport {
        let mut report = TickReport::default();
        for &(class, count) in probes {
            for _ in 0..count {
                report.probe_classes.add(class);
            }
        }
        report.probes = report.probe_classes.total();
        report.duration = Duration::from_millis(duration_ms);
        report
    }

    #[test]
    fn every_metric_and_label_is_exposed_at_zero_from_the_start() {
        let text = Metrics::new(Duration::from_secs(5), Duration::from_secs(2)).encode();
        for class in [
            "ok",
            "bad_status",
            "timeout",
            "connect_error",
            "tls_error",
            "other",
        ] {
            let name = format!("healthprobe_probes_total{{result=\"{class}\"}}");
            assert_eq!(sample(&text, &name), Some(0.0), "{name} in\n{text}");
        }
        for event_type in ["probe_failed", "probe_recovered"] {
            let name = format!("healthprobe_events_published_total{{event_type=\"{event_type}\"}}");
            assert_eq!(sample(&text, &name), Some(0.0), "{name} in\n{text}");
        }
        for name in [
            "healthprobe_publish_failures_total",
            "healthprobe_pending_events",
            "healthprobe_tracked_games",
            "healthprobe_tick_duration_seconds_count",
            "healthprobe_tick_duration_seconds_sum",
            "healthprobe_tick_overruns_total",
            "healthprobe_ticks_total",
            "healthprobe_ticks_skipped_total",
        ] {
            assert_eq!(sample(&text, name), Some(0.0), "{name} in\n{text}");
        }
        for le in ["0.01", "0.25", "60.0", "+Inf"] {
            let name = format!("healthprobe_tick_duration_seconds_bucket{{le=\"{le}\"}}");
            assert_eq!(sample(&text, &name), Some(0.0), "{name} in\n{text}");
        }
        assert!(
            text.contains("# TYPE healthprobe_probes counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# UNIT healthprobe_tick_duration_seconds seconds\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn ticks_add_up_probes_and_set_the_gauges() {
        let metrics = Metrics::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut first = tick(&[(ProbeClass::Ok, 3), (ProbeClass::Timeout, 1)], 20);
        first.pending = 2;
        first.tracked_games = 1;
        first.publish_failures = 1;
        metrics.observe_tick(&first);
        let mut second = tick(&[(ProbeClass::Ok, 2), (ProbeClass::ConnectError, 2)], 150);
        second.tracked_games = 2;
        metrics.observe_tick(&second);
        let mut skipped = TickReport::default();
        skipped.skipped = true;
        skipped.tracked_games = 2;
        metrics.observe_tick(&skipped);

        let text = metrics.encode();
        let value = |name: &str| sample(&text, name).unwrap_or_else(|| panic!("{name}:\n{text}"));
        assert_eq!(value("healthprobe_probes_total{result=\"ok\"}"), 5.0);
        assert_eq!(value("healthprobe_probes_total{result=\"timeout\"}"), 1.0);
        assert_eq!(
            value("healthprobe_probes_total{result=\"connect_error\"}"),
            2.0
        );
        assert_eq!(
            value("healthprobe_probes_total{result=\"bad_status\"}"),
            0.0
        );
        assert_eq!(value("healthprobe_probes_total{result=\"other\"}"), 0.0);
        assert_eq!(value("healthprobe_publish_failures_total"), 1.0);
        // Gauges hold the last tick's values.
        assert_eq!(value("healthprobe_pending_events"), 0.0);
        assert_eq!(value("healthprobe_tracked_games"), 2.0);
        assert_eq!(value("healthprobe_ticks_total"), 3.0);
        assert_eq!(value("healthprobe_ticks_skipped_total"), 1.0);
        // Only the 150 ms tick is longer than the 100 ms interval.
        assert_eq!(value("healthprobe_tick_overruns_total"), 1.0);
        assert_eq!(value("healthprobe_tick_duration_seconds_count"), 3.0);
        assert_eq!(
            value("healthprobe_tick_duration_seconds_bucket{le=\"0.01\"}"),
            1.0
        );
        assert_eq!(
            value("healthprobe_tick_duration_seconds_bucket{le=\"0.025\"}"),
            2.0
        );
        assert_eq!(
            value("healthprobe_tick_duration_seconds_bucket{le=\"0.1\"}"),
            2.0
        );
        assert_eq!(
            value("healthprobe_tick_duration_seconds_bucket{le=\"0.25\"}"),
            3.0
        );
        assert!((value("healthprobe_tick_duration_seconds_sum") - 0.17).abs() < 1e-9);
    }

    #[test]
    fn d5_a_restored_state_shows_its_pending_events_before_the_first_tick() {
        let metrics = Metrics::new(Duration::from_secs(5), Duration::from_secs(2));
        metrics.observe_restored(3, 7);
        let text = metrics.encode();
        assert_eq!(sample(&text, "healthprobe_pending_events"), Some(3.0));
        assert_eq!(sample(&text, "healthprobe_tracked_games"), Some(7.0));
        assert_eq!(sample(&text, "healthprobe_ticks_total"), Some(0.0));
    }

    #[test]
    fn the_telemetry_counts_each_delivery_here_and_on_the_inner_telemetry() {
        let metrics = Arc::new(Metrics::new(Duration::from_secs(1), Duration::from_secs(2)));
        let inner = CountingTelemetry::new();
        let mut telemetry = MetricsTelemetry::new(Some(Arc::clone(&metrics)), inner.clone());
        telemetry.record_event(EventType::ProbeFailed);
        telemetry.record_event(EventType::ProbeFailed);
        telemetry.record_event(EventType::ProbeRecovered);
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                "healthprobe_events_published_total{event_type=\"probe_failed\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                "healthprobe_events_published_total{event_type=\"probe_recovered\"}"
            ),
            Some(1.0)
        );
        assert_eq!(inner.count(EventType::ProbeFailed), 2);
        assert_eq!(inner.count(EventType::ProbeRecovered), 1);

        let mut without = MetricsTelemetry::new(None, inner.clone());
        without.record_event(EventType::ProbeRecovered);
        assert_eq!(inner.count(EventType::ProbeRecovered), 2);
    }

    #[cfg(feature = "metrics-server")]
    mod server {
        use std::io::{Read, Write};
        use std::net::{SocketAddr, TcpListener, TcpStream};

        use super::*;

        /// One raw HTTP/1.0 exchange: the status code, the head and the body.
        fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
            let mut stream = TcpStream::connect(addr).expect("connect to the metrics server");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("read timeout");
            stream.write_all(request).expect("send");
            let mut response = String::new();
            stream.read_to_string(&mut response).expect("read");
            let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|code| code.parse().ok())
                .unwrap_or(0);
            (status, head.to_owned(), body.to_owned())
        }

        fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
            exchange(
                addr,
                format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes(),
            )
        }

        #[test]
        fn the_server_answers_metrics_404s_other_paths_and_survives_garbage() {
            let metrics = Arc::new(Metrics::new(Duration::from_secs(1), Duration::from_secs(2)));
            metrics.record_event(EventType::ProbeFailed);
            let server = MetricsServer::start(
                "127.0.0.1:0".parse().unwrap(),
                Arc::clone(&metrics),
                Arc::default(),
            )
            .expect("start the metrics server");
            let addr = server.local_addr();
            assert_ne!(addr.port(), 0);

            let (status, head, body) = get(addr, "/metrics");
            assert_eq!(status, 200, "{head}");
            assert!(
                head.lines().any(|line| line
                    .eq_ignore_ascii_case(&format!("content-type: {OPENMETRICS_CONTENT_TYPE}"))),
                "{head}"
            );
            assert_eq!(body, metrics.encode());
            assert!(
                body.contains(
                    "healthprobe_events_published_total{event_type=\"probe_failed\"} 1\n"
                )
            );
            assert_eq!(get(addr, "/metrics?x=1").0, 200);

            for path in [
                "/metric",
                "/metrics/",
                "/healthz",
                "/status/",
                "/index.html",
            ] {
                assert_eq!(get(addr, path).0, 404, "{path}");
            }
            for path in ["/metrics", "/status", "/"] {
                let request = format!("POST {path} HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
                let (status, head, _) = exchange(addr, request.as_bytes());
                assert_eq!(status, 405, "{path}: {head}");
            }

            // Garbage, a bare close and an over-long line: answered or dropped,
            // and the server still serves.
            for request in [
                &b"\x00\xff\x13 not http at all\r\n\r\n"[..],
                b"",
                &[b'A'; 70_000][..],
            ] {
                let mut stream = TcpStream::connect(addr).expect("connect");
                let _ = stream.write_all(request);
                drop(stream);
            }
            assert_eq!(get(addr, "/metrics").0, 200);
        }

        #[test]
        fn an_address_in_use_is_an_error_and_a_dropped_server_stops_listening() {
            let taken = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
            let addr = taken.local_addr().expect("local addr");
            let metrics = Arc::new(Metrics::new(Duration::from_secs(1), Duration::from_secs(2)));
            assert!(MetricsServer::start(addr, Arc::clone(&metrics), Arc::default()).is_err());
            drop(taken);

            let server =
                MetricsServer::start("127.0.0.1:0".parse().unwrap(), metrics, Arc::default())
                    .expect("start the metrics server");
            let addr = server.local_addr();
            assert_eq!(get(addr, "/metrics").0, 200);
            // The drop waits for the server's thread: nothing listens any more.
            drop(server);
            assert!(
                TcpStream::connect(addr).is_err(),
                "{addr} still accepts after the drop"
            );
        }
    }
}
