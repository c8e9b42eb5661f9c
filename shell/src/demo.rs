//! `healthprobe demo`: a small fleet of engines on loopback, probed every
//! second. Part of the binary only (`mod demo` in `main.rs`).
//!
//! Each engine is a [`TcpListener`] on `127.0.0.1:0` served by one thread,
//! answering `GET /healthz` by a fixed script. The worker probes them with
//! `failures_threshold = 2`, so both event kinds show within seconds.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use healthprobe_core::{EventType, Outgoing, RuntimeRecord};
use healthprobe_shell::adapters::{CountingTelemetry, JsonlPublisher, MemoryStore};
use healthprobe_shell::driver::ports::{HealthEventPublisher, PublishError, SystemClock};
use healthprobe_shell::driver::worker::{Ports, Worker};
use healthprobe_shell::{Shutdown, WorkerConfig};

/// How a demo engine answers its n-th request (n from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Healthy,
    /// 200 after a delay shorter than the probe timeout.
    Slow(Duration),
    Failing(u16),
    /// `fail` answers 500, then `pass` answers 200, over and over.
    Flapping {
        fail: u32,
        pass: u32,
    },
    /// 500 for the first `failures` requests, then 200.
    RecoversAfter {
        failures: u32,
    },
    /// One 500 in `every` requests: noise the hysteresis filters out.
    Blip {
        every: u32,
    },
    /// A 302 to the healthy engine, which the prober does not follow (D2).
    Redirect,
    /// Accepts the connection and never answers: the probe times out.
    Hanging,
    /// Nothing listens: the connection is refused.
    Refused,
}

impl Script {
    /// The status of the `n`-th answer, or `None` for no answer at all.
    fn status(self, n: u32) -> Option<u16> {
        let fails = match self {
            Self::Healthy | Self::Slow(_) => false,
            Self::Failing(status) => return Some(status),
            Self::Flapping { fail, pass } => n % (fail + pass).max(1) < fail,
            Self::RecoversAfter { failures } => n < failures,
            Self::Blip { every } => n % every.max(1) == 0,
            Self::Redirect => return Some(302),
            Self::Hanging | Self::Refused => return None,
        };
        Some(if fails { 500 } else { 200 })
    }
}

const ENGINES: [(&str, &str, Script); 9] = [
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

/// The running engines; dropping it stops them and joins their threads.
struct Fleet {
    records: Vec<RuntimeRecord>,
    stop: Arc<AtomicBool>,
    servers: Vec<(SocketAddr, JoinHandle<()>)>,
}

impl Fleet {
    /// Start every engine of [`ENGINES`] and describe each on `report`.
    fn start(report: &mut impl Write) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (mut records, mut servers) = (Vec::new(), Vec::new());
        let mut healthy = String::new();
        for (name, description, script) in ENGINES {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?;
            let endpoint = format!("http://{addr}");
            if script == Script::Healthy {
                healthy = format!("{endpoint}/healthz");
            }
            // Refused: the listener is dropped, so the port is closed.
            if script != Script::Refused {
                let (location, stop) = (healthy.clone(), Arc::clone(&stop));
                let thread = thread::Builder::new()
                    .name(format!("demo-{name}"))
                    .spawn(move || serve(&listener, script, &location, &stop))?;
                servers.push((addr, thread));
            }
            let game_id = format!("game-{name}");
            writeln!(report, "  {game_id:<18} {endpoint:<26} {description}")?;
            records.push(RuntimeRecord::running(
                game_id,
                format!("ctr-{name}"),
                endpoint,
            ));
        }
        Ok(Self {
            records,
            stop,
            servers,
        })
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for (addr, thread) in self.servers.drain(..) {
            // Wake the blocking accept so the thread sees the stop flag.
            let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
            let _ = thread.join();
        }
    }
}

/// Answer each connection by `script`; a hanging engine holds at most 32.
fn serve(listener: &TcpListener, script: Script, location: &str, stop: &AtomicBool) {
    let mut held = Vec::new();
    let mut requests: u32 = 0;
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else { continue };
        if read_request_head(&mut stream).is_err() {
            continue;
        }
        let n = requests;
        requests = requests.wrapping_add(1);
        let Some(status) = script.status(n) else {
            if held.len() >= 32 {
                held.remove(0);
            }
            held.push(stream);
            continue;
        };
        if let Script::Slow(delay) = script {
            thread::sleep(delay);
        }
        let (reason, body, location) = match status {
            200 => ("OK", "ok\n", String::new()),
            302 => ("Found", "", format!("Location: {location}\r\n")),
            503 => ("Service Unavailable", "unavailable\n", String::new()),
            _ => ("Internal Server Error", "error\n", String::new()),
        };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\n{location}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes());
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

/// Start the fleet and probe it until `shutdown`, or for `duration` if given:
/// events as JSON lines on stdout, one readable line per tick on stderr.
pub(crate) fn run(duration: Option<Duration>, shutdown: &Shutdown) -> io::Result<()> {
    let mut report = io::stderr();
    let config = WorkerConfig {
        interval: Duration::from_secs(1),
        probe_timeout: Duration::from_millis(500),
        failures_threshold: 2,
        ..WorkerConfig::default()
    };
    writeln!(
        report,
        "healthprobe demo: {} engines on 127.0.0.1, a probe every {:?}, timeout {:?}, probe_failed after {} failures",
        ENGINES.len(),
        config.interval,
        config.probe_timeout,
        config.failures_threshold,
    )?;
    let fleet = Fleet::start(&mut report)?;
    let until = duration.map_or(String::new(), |d| {
        format!(" (or after {})", humantime::format_duration(d))
    });
    writeln!(
        report,
        "events are JSON lines on stdout; Ctrl-C stops{until}"
    )?;

    let seen = Arc::new(Mutex::new(Vec::new()));
    let publisher = Recording {
        inner: JsonlPublisher::new(io::stdout(), "<stdout>"),
        seen: Arc::clone(&seen),
    };
    let telemetry = CountingTelemetry::new();
    let store = MemoryStore::with_records(fleet.records.clone());
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
        let events = std::mem::take(&mut *seen.lock().unwrap_or_else(PoisonError::into_inner));
        let mut line = format!(
            "tick {tick:<3} +{:>5.1}s  {} probes, {} failed",
            started.elapsed().as_secs_f64(),
            tick_report.probes,
            tick_report.failed_probes,
        );
        if tick_report.skipped {
            line.push_str("  (skipped: listing failed)");
        }
        if events.is_empty() {
            line.push_str("  no events");
        } else {
            line.push_str("  ");
            line.push_str(&events.join(", "));
        }
        let _ = writeln!(report, "{line}");
    });
    // Wake the timer if Ctrl-C came first, so it ends now.
    shutdown.trigger();
    if let Some(timer) = timer {
        let _ = timer.join();
    }
    drop(fleet);
    writeln!(
        report,
        "stopped after {} ticks: {} probe_failed, {} probe_recovered",
        run.ticks,
        telemetry.count(EventType::ProbeFailed),
        telemetry.count(EventType::ProbeRecovered)
    )
}

/// Publishes to `inner` and remembers `probe_failed game-x` for the tick line.
struct Recording {
    inner: JsonlPublisher,
    seen: Arc<Mutex<Vec<String>>>,
}

impl HealthEventPublisher for Recording {
    fn publish(&mut self, event: &Outgoing) -> Result<(), PublishError> {
        self.inner.publish(event)?;
        let seen = format!("{} {}", event.event.event_type(), event.event.game_id);
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(seen);
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
