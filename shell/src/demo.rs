//! `healthprobe demo`: a small fleet of engines on loopback, probed every second.
//!
//! Each engine is a plain [`TcpListener`] on `127.0.0.1:0` served by one
//! thread, answering `GET /healthz` by a fixed script. The worker probes them
//! with `failures_threshold = 2`, so both event kinds show within seconds.
//! The hostile engines used by the integration tests live in `tests/`, not here.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use healthprobe_core::{EventType, HealthEvent};

use crate::adapters::{CountingTelemetry, JsonlPublisher, MemoryStore};
use crate::config::WorkerConfig;
use crate::ports::{HealthEventPublisher, PublishError, RuntimeRecord, SystemClock};
use crate::worker::{Ports, RunReport, Shutdown, TickReport, Worker};

/// The demo's settings: a tick per second, 500 ms timeout, 2 failures to publish.
pub fn demo_config() -> WorkerConfig {
    WorkerConfig {
        interval: Duration::from_secs(1),
        probe_timeout: Duration::from_millis(500),
        failures_threshold: 2,
        recovery_threshold: 1,
        max_concurrency: 16,
        ..WorkerConfig::default()
    }
}

/// How a demo engine answers its n-th request (n from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// Always 200.
    Healthy,
    /// 200 after a delay shorter than the probe timeout.
    Slow(Duration),
    /// Always this status.
    Failing(u16),
    /// `fail` requests answered 500, then `pass` answered 200, over and over.
    Flapping {
        /// Failures per cycle.
        fail: u32,
        /// Successes per cycle.
        pass: u32,
    },
    /// 500 for the first `failures` requests, then 200 for good.
    RecoversAfter {
        /// Requests answered 500 before the engine is healthy.
        failures: u32,
    },
    /// One 500 every `every` requests: noise the hysteresis filters out.
    Blip {
        /// The period of the failures.
        every: u32,
    },
    /// A 302 to another engine, which the prober does not follow (D2).
    Redirect,
    /// Accepts the connection and never answers: the probe times out.
    Hanging,
    /// Nothing listens: the connection is refused.
    Refused,
}

impl Script {
    /// The status of the `n`-th answer, or `None` for no answer at all.
    fn status(self, n: u32) -> Option<u16> {
        match self {
            Self::Healthy | Self::Slow(_) => Some(200),
            Self::Failing(status) => Some(status),
            Self::Flapping { fail, pass } => Some(if n % (fail + pass).max(1) < fail {
                500
            } else {
                200
            }),
            Self::RecoversAfter { failures } => Some(if n < failures { 500 } else { 200 }),
            Self::Blip { every } => Some(if n % every.max(1) == 0 { 500 } else { 200 }),
            Self::Redirect => Some(302),
            Self::Hanging | Self::Refused => None,
        }
    }
}

/// One running demo engine.
#[derive(Debug, Clone)]
pub struct DemoEngine {
    /// The game id it is probed as, for example `game-flapping`.
    pub game_id: String,
    /// What it does, in a few words.
    pub description: &'static str,
    /// Its script.
    pub script: Script,
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub endpoint: String,
}

/// The demo engines; dropping the fleet stops them and joins their threads.
#[derive(Debug)]
pub struct DemoFleet {
    engines: Vec<DemoEngine>,
    stop: Arc<AtomicBool>,
    servers: Vec<(SocketAddr, JoinHandle<()>)>,
}

impl DemoFleet {
    /// The nine demo engines, each on its own `127.0.0.1:0` port.
    pub fn start() -> io::Result<Self> {
        let plan: [(&str, &'static str, Script); 9] = [
            ("healthy", "always 200", Script::Healthy),
            (
                "slow",
                "200 after 150 ms",
                Script::Slow(Duration::from_millis(150)),
            ),
            ("failing", "always 503", Script::Failing(503)),
            (
                "flapping",
                "3 x 500, then 3 x 200, repeating",
                Script::Flapping { fail: 3, pass: 3 },
            ),
            (
                "recovering",
                "500 for 5 requests, then 200",
                Script::RecoversAfter { failures: 5 },
            ),
            (
                "blip",
                "one 500 in 4: filtered out",
                Script::Blip { every: 4 },
            ),
            ("redirect", "302 to the healthy engine", Script::Redirect),
            ("hanging", "never answers", Script::Hanging),
            ("refused", "nothing listening", Script::Refused),
        ];
        let mut fleet = Self {
            engines: Vec::with_capacity(plan.len()),
            stop: Arc::new(AtomicBool::new(false)),
            servers: Vec::new(),
        };
        let mut healthy_endpoint = String::new();
        for (name, description, script) in plan {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?;
            let endpoint = format!("http://{addr}");
            if script == Script::Refused {
                drop(listener); // The port is now closed: connections are refused.
            } else {
                let engine = EngineServer {
                    listener,
                    script,
                    location: format!("{healthy_endpoint}/healthz"),
                    stop: Arc::clone(&fleet.stop),
                };
                let thread = thread::Builder::new()
                    .name(format!("demo-{name}"))
                    .spawn(move || engine.serve())?;
                fleet.servers.push((addr, thread));
            }
            if script == Script::Healthy {
                healthy_endpoint.clone_from(&endpoint);
            }
            fleet.engines.push(DemoEngine {
                game_id: format!("game-{name}"),
                description,
                script,
                endpoint,
            });
        }
        Ok(fleet)
    }

    /// The engines, in start order.
    pub fn engines(&self) -> &[DemoEngine] {
        &self.engines
    }

    /// One `running` record per engine.
    pub fn records(&self) -> Vec<RuntimeRecord> {
        self.engines
            .iter()
            .map(|engine| {
                let container = engine.game_id.replacen("game-", "ctr-", 1);
                RuntimeRecord::running(&engine.game_id, container, &engine.endpoint)
            })
            .collect()
    }
}

impl Drop for DemoFleet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for (addr, thread) in self.servers.drain(..) {
            // Wake the blocking accept so the thread sees the stop flag.
            let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
            let _ = thread.join();
        }
    }
}

/// One engine's listener and script, served on its own thread.
struct EngineServer {
    listener: TcpListener,
    script: Script,
    location: String,
    stop: Arc<AtomicBool>,
}

impl EngineServer {
    /// Most connections a hanging engine holds open at once.
    const MAX_HELD: usize = 32;

    fn serve(self) {
        let mut requests: u32 = 0;
        let mut held = Vec::new();
        for stream in self.listener.incoming() {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(mut stream) = stream else { continue };
            if read_request_head(&mut stream).is_err() {
                continue;
            }
            let n = requests;
            requests = requests.wrapping_add(1);
            match self.script.status(n) {
                None => {
                    if held.len() >= Self::MAX_HELD {
                        held.remove(0);
                    }
                    held.push(stream);
                }
                Some(status) => {
                    if let Script::Slow(delay) = self.script {
                        thread::sleep(delay);
                    }
                    let _ = self.answer(&mut stream, status);
                }
            }
        }
    }

    fn answer(&self, stream: &mut TcpStream, status: u16) -> io::Result<()> {
        let (reason, body) = match status {
            200 => ("OK", "ok\n"),
            302 => ("Found", ""),
            503 => ("Service Unavailable", "unavailable\n"),
            _ => ("Internal Server Error", "error\n"),
        };
        let location = if status == 302 {
            format!("Location: {}\r\n", self.location)
        } else {
            String::new()
        };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\n{location}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes())?;
        stream.flush()
    }
}

/// Read up to the blank line that ends a request head (at most 8 KiB, 1 s).
fn read_request_head(stream: &mut TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while head.len() < 8 * 1024 {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..read]);
        if head.windows(4).any(|window| window == b"\r\n\r\n") {
            return Ok(());
        }
    }
    Err(io::ErrorKind::InvalidData.into())
}

/// What a demo run saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DemoSummary {
    /// The worker's run.
    pub run: RunReport,
    /// `probe_failed` events delivered.
    pub probe_failed: u64,
    /// `probe_recovered` events delivered.
    pub probe_recovered: u64,
}

/// Start the fleet and probe it until `shutdown`, or for `duration` if given.
///
/// Events go to `events` as JSON lines; one readable line per tick (and a
/// short introduction) goes to `report`.
pub fn run(
    duration: Option<Duration>,
    shutdown: &Shutdown,
    events: impl io::Write + Send + 'static,
    mut report: impl io::Write,
) -> io::Result<DemoSummary> {
    let fleet = DemoFleet::start()?;
    let config = demo_config();
    writeln!(
        report,
        "healthprobe demo: {} engines on 127.0.0.1, a probe every {:?}, timeout {:?}, probe_failed after {} failures",
        fleet.engines().len(),
        config.interval,
        config.probe_timeout,
        config.failures_threshold,
    )?;
    for engine in fleet.engines() {
        writeln!(
            report,
            "  {:<18} {:<26} {}",
            engine.game_id, engine.endpoint, engine.description
        )?;
    }
    writeln!(
        report,
        "events are JSON lines on stdout; Ctrl-C stops{}",
        duration.map_or(String::new(), |d| format!(
            " (or after {})",
            humantime::format_duration(d)
        ))
    )?;

    let seen = Arc::new(Mutex::new(Vec::new()));
    let publisher = RecordingPublisher {
        inner: JsonlPublisher::new(events, "<stdout>"),
        seen: Arc::clone(&seen),
    };
    let telemetry = CountingTelemetry::new();
    let store = MemoryStore::with_records(fleet.records());
    let ports = Ports::new(store, publisher, telemetry.clone(), SystemClock);
    let mut worker = Worker::new(config, ports).map_err(io::Error::other)?;

    let timer = duration.map(|duration| {
        let shutdown = shutdown.clone();
        thread::spawn(move || {
            if !shutdown.wait_timeout(duration) {
                shutdown.trigger();
            }
        })
    });
    let started = Instant::now();
    let mut tick = 0u64;
    let run = worker.run(shutdown, |tick_report| {
        tick += 1;
        let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(PoisonError::into_inner));
        let line = tick_line(tick, started.elapsed(), tick_report, &seen);
        let _ = writeln!(report, "{line}");
    });
    // Wake the timer if Ctrl-C came first, so it ends now.
    shutdown.trigger();
    if let Some(timer) = timer {
        let _ = timer.join();
    }
    drop(fleet);
    let summary = DemoSummary {
        run,
        probe_failed: telemetry.count(EventType::ProbeFailed),
        probe_recovered: telemetry.count(EventType::ProbeRecovered),
    };
    writeln!(
        report,
        "stopped after {} ticks: {} probe_failed, {} probe_recovered",
        summary.run.ticks, summary.probe_failed, summary.probe_recovered
    )?;
    Ok(summary)
}

/// `tick 3   +2.0s  9 probes, 5 failed  probe_failed game-failing, ...`
fn tick_line(
    tick: u64,
    since_start: Duration,
    report: &TickReport,
    events: &[(EventType, String)],
) -> String {
    let mut line = format!(
        "tick {tick:<3} +{:>5.1}s  {} probes, {} failed",
        since_start.as_secs_f64(),
        report.probes,
        report.failed_probes,
    );
    if report.skipped {
        line.push_str("  (skipped: listing failed)");
    }
    if events.is_empty() {
        line.push_str("  no events");
    } else {
        let described: Vec<String> = events
            .iter()
            .map(|(event_type, game_id)| format!("{event_type} {game_id}"))
            .collect();
        line.push_str("  ");
        line.push_str(&described.join(", "));
    }
    line
}

/// Publishes to the inner publisher and remembers what was delivered, for the tick line.
struct RecordingPublisher {
    inner: JsonlPublisher,
    seen: Arc<Mutex<Vec<(EventType, String)>>>,
}

impl HealthEventPublisher for RecordingPublisher {
    fn publish(&mut self, event: &HealthEvent) -> Result<(), PublishError> {
        self.inner.publish(event)?;
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((event.event_type(), event.game_id.clone()));
        Ok(())
    }

    fn sync(&mut self) -> Result<(), PublishError> {
        self.inner.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(script: Script, n: u32) -> Vec<Option<u16>> {
        (0..n).map(|i| script.status(i)).collect()
    }

    #[test]
    fn scripts_answer_in_their_pattern() {
        let s = Some;
        assert_eq!(
            statuses(Script::Flapping { fail: 2, pass: 1 }, 6),
            [s(500), s(500), s(200), s(500), s(500), s(200)]
        );
        assert_eq!(
            statuses(Script::RecoversAfter { failures: 2 }, 4),
            [s(500), s(500), s(200), s(200)]
        );
        assert_eq!(
            statuses(Script::Blip { every: 3 }, 4),
            [s(500), s(200), s(200), s(500)]
        );
        assert_eq!(statuses(Script::Hanging, 1), [None]);
        assert_eq!(statuses(Script::Flapping { fail: 0, pass: 0 }, 1), [s(200)]);
        assert_eq!(statuses(Script::Blip { every: 0 }, 1), [s(500)]);
    }
}
