//! The worker: list, prune, probe in parallel, fold with the core, publish.
//!
//! Data flows one way. Each tick starts `min(max_concurrency, games)` probers
//! inside a [`std::thread::scope`]: the thread that called [`Worker::tick`]
//! and up to `max_concurrency - 1` helper threads. They take the next record
//! from a shared atomic index, so at most `max_concurrency` probes are in
//! flight (R10). Helpers only do I/O: they send each result over a channel.
//! The caller is the one owner of the hysteresis state: it folds its own
//! results and, between its probes, the helpers' results with the core, and
//! publishes the events they cause; once no record is left it folds the
//! rest as they arrive. There is no lock around the state. (The caller
//! probing too saves a thread wake-up per probe; a result waits at most one
//! of the caller's probes before it is folded.)

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use healthprobe_core::{HealthEvent, HealthStates, ProbeOutcome, ProbeResult, Timestamp};
use tracing::{error, info, warn};

use crate::config::{ConfigError, WorkerConfig};
use crate::ports::{Clock, HealthEventPublisher, RuntimeRecord, RuntimeRecordStore, Telemetry};
use crate::probe::Prober;

/// Stack size of a probe thread: it only runs ureq's blocking calls.
const PROBE_THREAD_STACK_BYTES: usize = 256 * 1024;

/// Runs ticks over a record store, a publisher, telemetry and a clock.
pub struct Worker {
    config: WorkerConfig,
    store: Box<dyn RuntimeRecordStore>,
    clock: Box<dyn Clock>,
    prober: Prober,
    owner: StateOwner,
}

/// The hysteresis state and where its events go: touched only by the tick's caller.
struct StateOwner {
    states: HealthStates,
    publisher: Box<dyn HealthEventPublisher>,
    telemetry: Box<dyn Telemetry>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .field("states", &self.owner.states)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker with empty state; the config is validated first (R11).
    pub fn new(
        config: WorkerConfig,
        store: impl RuntimeRecordStore + 'static,
        publisher: impl HealthEventPublisher + 'static,
        telemetry: impl Telemetry + 'static,
        clock: impl Clock + 'static,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let policy = config.policy()?;
        Ok(Self {
            config,
            store: Box::new(store),
            clock: Box::new(clock),
            prober: Prober::new(config.probe_timeout),
            owner: StateOwner {
                states: HealthStates::new(policy),
                publisher: Box::new(publisher),
                telemetry: Box::new(telemetry),
            },
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// The hysteresis state: the games that have failed since they last recovered.
    pub fn states(&self) -> &HealthStates {
        &self.owner.states
    }

    /// One full pass, deterministic up to the engines' answers.
    ///
    /// Lists the running records (a listing error logs a warning and skips
    /// the tick with the state untouched, R9), prunes the state of every game
    /// not listed (R8), probes each listed game once (D3: the first record of
    /// a game wins) with at most `max_concurrency` probes in flight (R10),
    /// and folds each outcome with the core as it arrives, publishing the
    /// events it causes. Returns when every probe has finished.
    pub fn tick(&mut self) -> TickReport {
        self.tick_until(&Shutdown::new())
    }

    /// [`Worker::tick`], but starting no new probe once `shutdown` is triggered.
    ///
    /// Probes already in flight finish (each within the probe timeout) and
    /// their outcomes are folded and published; the report says `interrupted`.
    pub fn tick_until(&mut self, shutdown: &Shutdown) -> TickReport {
        let started = Instant::now();
        let mut report = TickReport::default();
        let records = match self.store.list_running() {
            Ok(records) => records,
            Err(err) => {
                warn!(error = %err, "cannot list running records; tick skipped");
                report.skipped = true;
                report.duration = started.elapsed();
                return report;
            }
        };
        // R8: prune against the whole listing, duplicates included.
        self.owner.prune(&records);
        let jobs = probe_jobs(&records);
        report.records = records.len();
        report.games = jobs.len();
        self.probe_and_fold(&jobs, shutdown, &mut report);
        report.duration = started.elapsed();
        info!(
            games = report.games,
            probes = report.probes,
            failed_probes = report.failed_probes,
            events = report.events,
            duration_ms = duration_ms(report.duration),
            interrupted = report.interrupted,
            "tick finished"
        );
        report
    }

    /// Tick once per interval until `shutdown` is triggered (R13).
    ///
    /// The first tick starts at once. A tick that overruns the interval logs
    /// a warning and the next one starts right after it: missed ticks are
    /// not caught up. Shutdown during a tick stops new probes and waits for
    /// those in flight, so it is honoured within one probe timeout.
    pub fn run(&mut self, shutdown: &Shutdown) -> RunReport {
        self.run_observed(shutdown, |_| {})
    }

    /// [`Worker::run`], calling `on_tick` with each tick's report.
    pub fn run_observed(
        &mut self,
        shutdown: &Shutdown,
        mut on_tick: impl FnMut(&TickReport),
    ) -> RunReport {
        let config = self.config;
        info!(
            interval_ms = duration_ms(config.interval),
            probe_timeout_ms = duration_ms(config.probe_timeout),
            failures_threshold = config.failures_threshold,
            recovery_threshold = config.recovery_threshold,
            max_concurrency = config.max_concurrency,
            "health probe worker started"
        );
        let mut run = RunReport::default();
        while !shutdown.is_triggered() {
            let started = Instant::now();
            let report = self.tick_until(shutdown);
            run.add(&report);
            on_tick(&report);
            let elapsed = started.elapsed();
            if shutdown.is_triggered() {
                break;
            }
            if elapsed > config.interval {
                run.overruns += 1;
                warn!(
                    duration_ms = duration_ms(elapsed),
                    interval_ms = duration_ms(config.interval),
                    "tick overran the interval; the next tick starts now"
                );
                continue;
            }
            shutdown.wait_timeout(config.interval - elapsed);
        }
        info!(
            ticks = run.ticks,
            events = run.events,
            "health probe worker stopped"
        );
        run
    }

    /// Probe `jobs` on up to `max_concurrency` threads; fold and publish here.
    fn probe_and_fold(
        &mut self,
        jobs: &[&RuntimeRecord],
        shutdown: &Shutdown,
        report: &mut TickReport,
    ) {
        if jobs.is_empty() {
            return;
        }
        let threads = self.config.max_concurrency.min(jobs.len());
        let next_job = AtomicUsize::new(0);
        let (sender, receiver) = mpsc::channel::<Probed>();
        let pool = ProbePool {
            jobs,
            next_job: &next_job,
            prober: &self.prober,
            clock: &*self.clock,
            shutdown,
        };
        thread::scope(|scope| {
            // The caller is one of the probers: it folds its own outcomes and,
            // between its probes, whatever the helpers have sent.
            for index in 1..threads {
                let sender = sender.clone();
                let pool = &pool;
                let spawn = thread::Builder::new()
                    .name(format!("probe-{index}"))
                    .stack_size(PROBE_THREAD_STACK_BYTES)
                    .spawn_scoped(scope, move || {
                        while let Some(probed) = pool.probe_next() {
                            if sender.send(probed).is_err() {
                                return;
                            }
                        }
                    });
                if let Err(err) = spawn {
                    warn!(error = %err, "cannot start a probe thread; probing with fewer");
                    break;
                }
            }
            drop(sender);
            while let Some(probed) = pool.probe_next() {
                self.owner.fold(jobs[probed.job], probed, report);
                while let Ok(probed) = receiver.try_recv() {
                    self.owner.fold(jobs[probed.job], probed, report);
                }
            }
            for probed in receiver {
                self.owner.fold(jobs[probed.job], probed, report);
            }
        });
        report.interrupted = report.probes < jobs.len();
    }
}

impl StateOwner {
    /// R8: forget every game not in the fresh listing.
    fn prune(&mut self, records: &[RuntimeRecord]) {
        self.states
            .prune(records.iter().map(|record| record.game_id.as_str()));
    }

    /// Fold one outcome with the core and publish the event it causes.
    fn fold(&mut self, record: &RuntimeRecord, probed: Probed, report: &mut TickReport) {
        report.probes += 1;
        if !probed.result.is_healthy() {
            report.failed_probes += 1;
        }
        let outcome = ProbeOutcome {
            game_id: record.game_id.clone(),
            container_id: record.current_container_id.clone(),
            observed_at: probed.observed_at,
            result: probed.result,
        };
        if let Some(event) = self.states.apply(outcome) {
            report.events += 1;
            if self.deliver(&event) {
                report.published += 1;
            } else {
                report.publish_failures += 1;
            }
        }
    }

    /// Publish one event; count and log it if delivered. The one place events leave.
    fn deliver(&mut self, event: &HealthEvent) -> bool {
        let event_type = event.event_type();
        match self.publisher.publish(event) {
            Ok(()) => {
                self.telemetry.record_event(event_type);
                info!(
                    game_id = %event.game_id,
                    container_id = %event.container_id,
                    event_type = %event_type,
                    "probe event published"
                );
                true
            }
            Err(err) => {
                error!(
                    game_id = %event.game_id,
                    container_id = %event.container_id,
                    event_type = %event_type,
                    error = %err,
                    "cannot publish probe event; dropped"
                );
                false
            }
        }
    }
}

/// The records to probe this tick: one per game, the first listed (D3).
pub fn probe_jobs(records: &[RuntimeRecord]) -> Vec<&RuntimeRecord> {
    let mut seen = HashSet::with_capacity(records.len());
    records
        .iter()
        .filter(|record| seen.insert(record.game_id.as_str()))
        .collect()
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TickReport {
    /// Running records listed, duplicates included.
    pub records: usize,
    /// Distinct games listed (D3), each probed once unless interrupted.
    pub games: usize,
    /// Probes that finished and were folded.
    pub probes: usize,
    /// Of those, the unhealthy ones.
    pub failed_probes: usize,
    /// Events the core emitted.
    pub events: usize,
    /// Of those, the ones the publisher accepted.
    pub published: usize,
    /// Of those, the ones the publisher refused (logged and dropped).
    pub publish_failures: usize,
    /// Wall time of the tick.
    pub duration: Duration,
    /// The listing failed, so nothing was pruned or probed (R9).
    pub skipped: bool,
    /// Shutdown stopped the tick before every game was probed.
    pub interrupted: bool,
}

/// What a whole [`Worker::run`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunReport {
    /// Ticks started, skipped ones included.
    pub ticks: u64,
    /// Ticks skipped on a listing error (R9).
    pub skipped_ticks: u64,
    /// Ticks that took longer than the interval.
    pub overruns: u64,
    /// Probes folded.
    pub probes: u64,
    /// Events emitted.
    pub events: u64,
    /// Events the publisher refused.
    pub publish_failures: u64,
}

impl RunReport {
    /// Add one tick's counts.
    pub fn add(&mut self, tick: &TickReport) {
        self.ticks += 1;
        self.skipped_ticks += u64::from(tick.skipped);
        self.probes += tick.probes as u64;
        self.events += tick.events as u64;
        self.publish_failures += tick.publish_failures as u64;
    }
}

/// A cloneable stop signal: trigger it from a signal handler or another thread.
///
/// Waiting is on a condition variable, so a triggered shutdown wakes waiters at once.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<ShutdownInner>,
}

#[derive(Debug, Default)]
struct ShutdownInner {
    triggered: Mutex<bool>,
    changed: Condvar,
}

impl Shutdown {
    /// A handle that is not triggered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask every holder of a clone to stop; waiters wake at once. Idempotent.
    pub fn trigger(&self) {
        let mut triggered = self.lock();
        *triggered = true;
        self.inner.changed.notify_all();
    }

    /// Whether [`Shutdown::trigger`] was called on any clone.
    pub fn is_triggered(&self) -> bool {
        *self.lock()
    }

    /// Wait until triggered or until `timeout` passes; whether it is triggered.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let triggered = self.lock();
        let (triggered, _) = self
            .inner
            .changed
            .wait_timeout_while(triggered, timeout, |triggered| !*triggered)
            .unwrap_or_else(PoisonError::into_inner);
        *triggered
    }

    /// Wait until triggered.
    pub fn wait(&self) {
        let triggered = self.lock();
        let _triggered = self
            .inner
            .changed
            .wait_while(triggered, |triggered| !*triggered)
            .unwrap_or_else(PoisonError::into_inner);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, bool> {
        // A bool cannot be left half-written: a poisoned lock is still valid.
        self.inner
            .triggered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// One probe's result, sent from a probe thread to the owner.
struct Probed {
    job: usize,
    observed_at: Timestamp,
    result: ProbeResult,
}

/// What the probe threads share for one tick; read-only but for the job counter.
struct ProbePool<'a> {
    jobs: &'a [&'a RuntimeRecord],
    next_job: &'a AtomicUsize,
    prober: &'a Prober,
    clock: &'a dyn Clock,
    shutdown: &'a Shutdown,
}

impl ProbePool<'_> {
    /// Take the next job and probe it; `None` when none is left or on shutdown.
    fn probe_next(&self) -> Option<Probed> {
        if self.shutdown.is_triggered() {
            return None;
        }
        let job = self.next_job.fetch_add(1, Ordering::Relaxed);
        let record = self.jobs.get(job)?;
        let result = self.prober.probe(&record.engine_endpoint);
        let observed_at = self.clock.now();
        Some(Probed {
            job,
            observed_at,
            result,
        })
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use healthprobe_core::{EventDetails, EventType};

    use super::*;
    use crate::adapters::{CountingTelemetry, ManualClock, MemoryPublisher, MemoryStore};

    /// An endpoint on loopback where nothing listens: every probe is refused at once.
    fn refused_endpoint() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        drop(listener);
        format!("http://{addr}/")
    }

    struct Rig {
        worker: Worker,
        store: MemoryStore,
        publisher: MemoryPublisher,
        telemetry: CountingTelemetry,
        endpoint: String,
    }

    fn rig(failures_threshold: u32) -> Rig {
        let store = MemoryStore::new();
        let publisher = MemoryPublisher::new();
        let telemetry = CountingTelemetry::new();
        let config = WorkerConfig {
            failures_threshold,
            probe_timeout: Duration::from_secs(2),
            ..WorkerConfig::default()
        };
        let clock = ManualClock::new(Timestamp::from_second(1_800_000_000).expect("valid"));
        let worker = Worker::new(
            config,
            store.clone(),
            publisher.clone(),
            telemetry.clone(),
            clock,
        )
        .expect("valid config");
        Rig {
            worker,
            store,
            publisher,
            telemetry,
            endpoint: refused_endpoint(),
        }
    }

    #[test]
    fn a_worker_and_its_handles_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send::<Worker>();
        assert_send_sync::<Shutdown>();
        assert_send_sync::<Prober>();
    }

    #[test]
    fn r11_new_rejects_an_invalid_config() {
        let config = WorkerConfig {
            max_concurrency: 0,
            ..WorkerConfig::default()
        };
        let err = Worker::new(
            config,
            MemoryStore::new(),
            MemoryPublisher::new(),
            CountingTelemetry::new(),
            ManualClock::new(Timestamp::UNIX_EPOCH),
        )
        .expect_err("zero concurrency");
        assert_eq!(err, ConfigError::ZeroMaxConcurrency);
    }

    #[test]
    fn r4_r12_a_refused_engine_publishes_probe_failed_with_the_records_container() {
        let mut rig = rig(2);
        let endpoint = rig.endpoint.clone();
        rig.store.set(vec![
            RuntimeRecord::running("g1", "c1", &endpoint),
            RuntimeRecord::running("g1", "c1-dup", &endpoint),
        ]);
        let first = rig.worker.tick();
        assert_eq!(
            (
                first.records,
                first.games,
                first.probes,
                first.failed_probes,
                first.events
            ),
            (2, 1, 1, 1, 0)
        );
        let second = rig.worker.tick();
        assert_eq!((second.events, second.published), (1, 1));
        let events = rig.publisher.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].game_id, "g1");
        assert_eq!(events[0].container_id, "c1");
        assert_eq!(
            events[0].details,
            EventDetails::ProbeFailed {
                consecutive_failures: 2,
                last_status: 0,
                last_error: "connection refused".into(),
            }
        );
        assert_eq!(rig.telemetry.count(EventType::ProbeFailed), 1);
    }

    #[test]
    fn r9_a_listing_error_skips_the_tick_and_keeps_state() {
        let mut rig = rig(3);
        let endpoint = rig.endpoint.clone();
        rig.store
            .set(vec![RuntimeRecord::running("g1", "c1", &endpoint)]);
        rig.worker.tick();
        let before = rig.worker.states().clone();
        assert_eq!(before.len(), 1);
        rig.store.fail_next(1);
        let skipped = rig.worker.tick();
        assert!(skipped.skipped);
        assert_eq!((skipped.probes, skipped.games), (0, 0));
        assert_eq!(rig.worker.states(), &before);
    }

    #[test]
    fn r8_a_game_no_longer_listed_is_pruned() {
        let mut rig = rig(3);
        let endpoint = rig.endpoint.clone();
        rig.store
            .set(vec![RuntimeRecord::running("g1", "c1", &endpoint)]);
        rig.worker.tick();
        assert!(rig.worker.states().game("g1").is_some());
        rig.store.set(vec![]);
        let report = rig.worker.tick();
        assert_eq!(report.probes, 0);
        assert!(rig.worker.states().is_empty());
    }

    #[test]
    fn a_refused_publish_is_not_counted_by_telemetry() {
        let mut rig = rig(1);
        let endpoint = rig.endpoint.clone();
        rig.store
            .set(vec![RuntimeRecord::running("g1", "c1", &endpoint)]);
        rig.publisher.fail(true);
        let report = rig.worker.tick();
        assert_eq!(
            (report.events, report.published, report.publish_failures),
            (1, 0, 1)
        );
        assert_eq!(rig.telemetry.total(), 0);
        assert!(rig.publisher.events().is_empty());
    }

    #[test]
    fn r10_every_game_is_probed_once_whatever_the_concurrency() {
        for max_concurrency in [1, 3, 64] {
            let store = MemoryStore::new();
            let endpoint = refused_endpoint();
            store.set(
                (0..40)
                    .map(|i| RuntimeRecord::running(format!("g{i}"), format!("c{i}"), &endpoint))
                    .collect(),
            );
            let config = WorkerConfig {
                failures_threshold: 1,
                max_concurrency,
                ..WorkerConfig::default()
            };
            let publisher = MemoryPublisher::new();
            let mut worker = Worker::new(
                config,
                store,
                publisher.clone(),
                CountingTelemetry::new(),
                crate::ports::SystemClock,
            )
            .expect("valid config");
            let report = worker.tick();
            assert_eq!(
                (report.probes, report.events),
                (40, 40),
                "{max_concurrency}"
            );
            let mut games: Vec<String> =
                publisher.events().into_iter().map(|e| e.game_id).collect();
            games.sort();
            games.dedup();
            assert_eq!(games.len(), 40);
        }
    }

    #[test]
    fn a_triggered_shutdown_stops_the_run_and_interrupts_the_tick() {
        let mut rig = rig(3);
        let endpoint = rig.endpoint.clone();
        rig.store
            .set(vec![RuntimeRecord::running("g1", "c1", &endpoint)]);
        let shutdown = Shutdown::new();
        shutdown.trigger();
        let report = rig.worker.tick_until(&shutdown);
        assert!(report.interrupted);
        assert_eq!(report.probes, 0);
        let run = rig.worker.run(&shutdown);
        assert_eq!(run.ticks, 0);
    }

    fn record(game_id: &str, container_id: &str) -> RuntimeRecord {
        RuntimeRecord::running(game_id, container_id, "http://127.0.0.1:1")
    }

    fn check_jobs(records: &[RuntimeRecord], expected: &[(&str, &str)]) {
        let jobs: Vec<(&str, &str)> = probe_jobs(records)
            .into_iter()
            .map(|r| (r.game_id.as_str(), r.current_container_id.as_str()))
            .collect();
        assert_eq!(jobs, expected);
    }

    #[test]
    fn d3_a_game_listed_twice_is_probed_once_first_record_wins() {
        check_jobs(
            &[
                record("g1", "c1"),
                record("g2", "c2"),
                record("g1", "c1-new"),
                record("g3", "c3"),
                record("g2", "c2"),
            ],
            &[("g1", "c1"), ("g2", "c2"), ("g3", "c3")],
        );
    }

    #[test]
    fn d3_distinct_games_keep_listing_order() {
        check_jobs(
            &[record("b", "1"), record("a", "2")],
            &[("b", "1"), ("a", "2")],
        );
        check_jobs(&[], &[]);
    }

    #[test]
    fn shutdown_wakes_a_waiter_and_stays_triggered() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.is_triggered());
        assert!(!shutdown.wait_timeout(Duration::from_millis(1)));
        let waiter = {
            let shutdown = shutdown.clone();
            thread::spawn(move || shutdown.wait_timeout(Duration::from_secs(3600)))
        };
        shutdown.trigger();
        assert!(waiter.join().expect("waiter thread"));
        assert!(shutdown.is_triggered());
        assert!(shutdown.wait_timeout(Duration::MAX));
        shutdown.wait();
    }
}
