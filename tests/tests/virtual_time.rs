//! The timing rules on a virtual clock: the real [`Worker`] and tick
//! machine over a scripted fan-out whose probes take virtual time, so
//! cadence, overruns, shutdown mid-tick and retry pacing are asserted
//! exactly, whatever the machine's load. (Loopback end-to-end tests per
//! runtime live in `worker_rules.rs`.)

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use healthprobe_core::tick::{ProbeBatch, ProbeClass, StopReason};
use healthprobe_core::{ProbeResult, RuntimeRecord, Timestamp};
use healthprobe_shell::Shutdown;
use healthprobe_shell::adapters::{CountingTelemetry, MemoryPublisher, MemoryStore};
use healthprobe_shell::config::{Runtime, WorkerConfig};
use healthprobe_shell::driver::ports::{Clock, ProbeFanout, Probed};
use healthprobe_shell::driver::worker::{Ports, TickReport, Worker};

const INTERVAL: Duration = Duration::from_secs(5);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Virtual time: moves only when a probe takes time or the driver sleeps.
#[derive(Debug, Clone, Default)]
struct VirtualClock {
    mono: Arc<Mutex<Duration>>,
    /// Every deadline the driver slept until (a wait of zero is not a sleep).
    sleeps: Arc<Mutex<Vec<Duration>>>,
}

impl VirtualClock {
    fn at(&self) -> Duration {
        *lock(&self.mono)
    }

    fn advance(&self, by: Duration) {
        *lock(&self.mono) += by;
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Timestamp {
        let seconds = i64::try_from(self.at().as_secs()).expect("small");
        Timestamp::from_second(1_800_000_000 + seconds).expect("valid")
    }

    fn monotonic(&self) -> Duration {
        self.at()
    }

    fn sleep_until(&self, deadline: Duration, shutdown: &Shutdown) -> bool {
        if shutdown.is_triggered() {
            return true;
        }
        let mut mono = lock(&self.mono);
        if deadline > *mono {
            lock(&self.sleeps).push(deadline);
        }
        *mono = (*mono).max(deadline);
        false
    }
}

/// Probes one at a time, each taking the next scripted latency (10 ms once
/// the script is used up) and failing with status 503.
#[derive(Debug)]
struct ScriptedFanout {
    clock: VirtualClock,
    latencies: VecDeque<Duration>,
    /// The virtual time each batch started at: the tick starts.
    starts: Arc<Mutex<Vec<Duration>>>,
    /// Triggered after this many probes (a signal arriving mid-tick).
    shutdown_after: Option<(usize, Shutdown)>,
    probes: usize,
}

impl ScriptedFanout {
    fn new(clock: &VirtualClock, latencies: &[Duration]) -> Self {
        Self {
            clock: clock.clone(),
            latencies: latencies.iter().copied().collect(),
            starts: Arc::default(),
            shutdown_after: None,
            probes: 0,
        }
    }
}

impl ProbeFanout for ScriptedFanout {
    fn runtime(&self) -> Runtime {
        Runtime::Threads
    }

    fn probe_batch(
        &mut self,
        batch: &ProbeBatch,
        _max_concurrency: usize,
        clock: &Arc<dyn Clock>,
        shutdown: &Shutdown,
        fold: &mut dyn FnMut(Probed),
    ) {
        lock(&self.starts).push(self.clock.at());
        for job in 0..batch.len() {
            if shutdown.is_triggered() {
                return;
            }
            let latency = self
                .latencies
                .pop_front()
                .unwrap_or(Duration::from_millis(10));
            self.clock.advance(latency);
            self.probes += 1;
            if let Some((after, signal)) = &self.shutdown_after {
                if self.probes == *after {
                    signal.trigger();
                }
            }
            let result = ProbeResult::Unhealthy {
                status: 503,
                error: "unexpected status 503".into(),
            };
            fold(Probed::new(job, clock.now(), result, ProbeClass::BadStatus));
        }
    }
}

struct Rig {
    worker: Worker,
    clock: VirtualClock,
    starts: Arc<Mutex<Vec<Duration>>>,
    store: MemoryStore,
    publisher: MemoryPublisher,
}

fn rig(games: usize, latencies: &[Duration], shutdown_after: Option<(usize, Shutdown)>) -> Rig {
    rig_limited(games, latencies, shutdown_after, None)
}

/// [`rig`] whose run stops after `tick_limit` ticks (`--ticks N`).
fn rig_limited(
    games: usize,
    latencies: &[Duration],
    shutdown_after: Option<(usize, Shutdown)>,
    tick_limit: Option<u64>,
) -> Rig {
    let clock = VirtualClock::default();
    let mut fanout = ScriptedFanout::new(&clock, latencies);
    fanout.shutdown_after = shutdown_after;
    let starts = Arc::clone(&fanout.starts);
    let store = MemoryStore::with_records(
        (0..games)
            .map(|i| RuntimeRecord::running(format!("g{i}"), format!("c{i}"), "sim://"))
            .collect(),
    );
    let publisher = MemoryPublisher::new();
    let config = WorkerConfig {
        interval: INTERVAL,
        probe_timeout: Duration::from_secs(2),
        failures_threshold: 1,
        recovery_threshold: 1,
        max_concurrency: 1,
        tick_limit,
        ..WorkerConfig::default()
    };
    let ports = Ports::new(
        store.clone(),
        publisher.clone(),
        CountingTelemetry::new(),
        clock.clone(),
    )
    .with_fanout(Box::new(fanout));
    let worker = Worker::new(config, ports).expect("valid config");
    Rig {
        worker,
        clock,
        starts,
        store,
        publisher,
    }
}

/// Run until `ticks` ticks have ended (a shutdown then, as a signal would).
fn run_ticks(
    rig: &mut Rig,
    ticks: usize,
) -> (
    Vec<TickReport>,
    healthprobe_shell::driver::worker::RunReport,
) {
    run_ticks_and(rig, ticks, |_| {})
}

/// [`run_ticks`], calling `after` with the number of ticks ended after each one.
fn run_ticks_and(
    rig: &mut Rig,
    ticks: usize,
    mut after: impl FnMut(usize),
) -> (
    Vec<TickReport>,
    healthprobe_shell::driver::worker::RunReport,
) {
    let shutdown = Shutdown::new();
    let mut reports = Vec::new();
    let run = rig.worker.run(&shutdown, |report| {
        reports.push(report.clone());
        after(reports.len());
        if reports.len() == ticks {
            shutdown.trigger();
        }
    });
    (reports, run)
}

fn secs(values: &[f64]) -> Vec<Duration> {
    values.iter().map(|&s| Duration::from_secs_f64(s)).collect()
}

#[test]
fn r13_ticks_start_once_per_interval_from_tick_start_to_tick_start() {
    let mut rig = rig(3, &[], None);
    let (reports, run) = run_ticks(&mut rig, 4);
    assert_eq!(*lock(&rig.starts), secs(&[0.0, 5.0, 10.0, 15.0]));
    assert_eq!((run.ticks, run.overruns), (4, 0));
    assert!(
        reports
            .iter()
            .all(|r| r.duration == Duration::from_millis(30))
    );
    assert_eq!(run.stopped, Some(StopReason::Shutdown));
}

#[test]
fn r13_an_overrun_starts_the_next_tick_at_once_with_no_catch_up_burst() {
    // The first probe takes 12 s: the first tick overruns a 5 s interval
    // more than twice; every later probe takes 10 ms.
    let mut rig = rig(1, &[Duration::from_secs(12)], None);
    let (reports, run) = run_ticks(&mut rig, 4);
    assert_eq!(*lock(&rig.starts), secs(&[0.0, 12.0, 17.0, 22.0]));
    assert!(reports[0].overran && !reports[1].overran);
    assert_eq!((run.ticks, run.overruns), (4, 1));
    // No sleep after the overrun; one per interval after that.
    assert_eq!(*lock(&rig.clock.sleeps), secs(&[17.0, 22.0]));
}

#[test]
fn r13_shutdown_mid_tick_starts_no_new_probe_and_returns_after_the_tick() {
    let signal = Shutdown::new();
    let mut rig = rig(4, &[Duration::from_millis(400)], Some((1, signal.clone())));
    let mut reports = Vec::new();
    let run = rig
        .worker
        .run(&signal, |report| reports.push(report.clone()));
    assert_eq!(run.ticks, 1);
    assert_eq!(run.stopped, Some(StopReason::Shutdown));
    assert!(reports[0].interrupted, "{reports:?}");
    assert_eq!((reports[0].probes, reports[0].games), (1, 4));
    // The probe in flight was folded and its event published before return.
    assert_eq!(rig.publisher.events().len(), 1);
    // No wait for the next interval: the run returned when the tick ended.
    assert_eq!(rig.clock.at(), Duration::from_millis(400));
    assert!(lock(&rig.clock.sleeps).is_empty());
}

#[test]
fn d4_a_refusing_publisher_is_called_once_per_tick_and_ticks_keep_their_pace() {
    let mut rig = rig(3, &[], None);
    rig.publisher.fail(true);
    // Accepted again after the fifth tick.
    let publisher = rig.publisher.clone();
    let (reports, _) = run_ticks_and(&mut rig, 6, |ended| publisher.fail(ended < 5));
    assert_eq!(rig.publisher.attempts(), 5 + 3, "one refused call per tick");
    assert!(reports[..5].iter().all(|r| r.publish_failures == 1));
    assert_eq!(reports[4].pending, 3);
    assert_eq!(
        *lock(&rig.starts),
        secs(&[0.0, 5.0, 10.0, 15.0, 20.0, 25.0])
    );
    // Everything pending goes out in one tick, oldest first: the first
    // tick emitted them in probe order (one probe in flight).
    assert_eq!((reports[5].published, reports[5].pending), (3, 0));
    let games: Vec<String> = rig
        .publisher
        .events()
        .into_iter()
        .map(|event| event.game_id)
        .collect();
    assert_eq!(games, ["g0", "g1", "g2"]);
}

#[test]
fn r9_with_a_tick_limit_a_skipped_tick_waits_its_interval_and_others_run_back_to_back() {
    let mut rig = rig_limited(1, &[], None, Some(5));
    rig.store.fail_next(3);
    let run = rig.worker.run(&Shutdown::new(), |_| {});
    assert_eq!((run.ticks, run.skipped_ticks), (5, 3));
    assert_eq!(run.stopped, Some(StopReason::TickLimit));
    // Three skipped ticks waited out 5 s each; the two that probed ran back to back.
    assert_eq!(*lock(&rig.clock.sleeps), secs(&[5.0, 10.0, 15.0]));
    assert_eq!(*lock(&rig.starts), secs(&[15.0, 15.01]));
}
