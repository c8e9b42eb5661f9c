//! The worker: list, prune, probe in parallel, fold with the core, publish.
//!
//! # Threads
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
//!
//! # Tasks (`Runtime::Async`)
//!
//! With [`Runtime::Async`] (cargo feature `async`) only the fan-out
//! differs. The worker owns a small tokio runtime (two worker threads); per
//! tick, one driver task walks the jobs (games with a failure counted
//! first: they are the likeliest to hang, and their timeouts then overlap
//! the sweep of the rest; listing order otherwise), takes a slot of a
//! [`tokio::sync::Semaphore`] of `max_concurrency` permits for each (R10),
//! checks the shutdown signal, and spawns the probe as a task
//! ([`crate::probe_async::AsyncProber`], hyper). Each task stamps its
//! result with the clock and sends `(job, observed_at, result)` over the
//! same kind of std channel; the tick's caller blocks on it and folds each
//! result as it arrives, exactly as above. The ports (store, publisher,
//! telemetry, state file, journal) therefore stay synchronous and are only
//! ever called from the caller's thread, never from async code: no task
//! can block the runtime on a slow publisher or an fsync, and the state
//! has one owner whatever the runtime. The clock is the one port tasks
//! call (`Clock: Sync`, a quick read). A hung engine holds a task and a
//! socket, not a thread, so a tick costs about one probe timeout whatever
//! hangs, as long as the hung engines fit in `max_concurrency`.
//!
//! # Delivery (D4, D5)
//!
//! Every event the core emits goes into the worker's [`Outbox`] and leaves
//! it only when the publisher accepts it, oldest first: an event is never
//! dropped, and none overtakes an older pending one. The outbox is drained
//! at the start of every tick (skipped ticks included) and, without a state
//! file, as soon as each event is emitted. After a refusal the publisher is
//! left alone for the rest of the tick (one failed attempt per tick, however
//! many events wait); [`Worker::pending`] shows what waits.
//!
//! With a state file ([`Worker::restore`]) nothing is published before it
//! is persisted: the events of a tick wait in the outbox until the tick's
//! end, where the worker writes the snapshot (state and pending events),
//! drains the outbox, and writes the snapshot again if anything was
//! delivered. A crash can therefore publish an event twice (delivered, not
//! yet recorded as delivered) but never lose one. If a snapshot cannot be
//! written at run time, the worker logs an error and publishes anyway: the
//! start-up write proved the file writable, so this is a disk filling up or
//! going away, and holding every event back until it is fixed would turn a
//! durability problem into an outage of the events themselves. Until a
//! write succeeds again, a crash loses what happened since the last snapshot.
//!
//! # Journal (D6)
//!
//! With a journal ([`Worker::set_journal`]) every prune (the whole listing,
//! duplicates included) and every outcome is appended exactly as folded, in
//! fold order, and flushed at the end of each tick, so `healthprobe replay`
//! over it reproduces the events the worker emitted. A journal write error
//! is logged once and stops the journal for the rest of the run: a journal
//! with a hole would replay to different events without saying so.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use healthprobe_core::{
    HealthEvent, HealthStates, Input, Policy, ProbeOutcome, ProbeResult, Timestamp,
};
use tracing::{error, info, warn};

use crate::config::{ConfigError, Runtime, WorkerConfig};
use crate::durable::{Saved, StateFile, StateFileError};
use crate::journal_file::JournalFile;
use crate::outbox::Outbox;
use crate::ports::{Clock, HealthEventPublisher, RuntimeRecord, RuntimeRecordStore, Telemetry};
use crate::probe::{ProbeClass, Prober, classify};
#[cfg(feature = "async")]
use crate::probe_async::AsyncProber;

/// Stack size of a probe thread: it only runs ureq's blocking calls.
const PROBE_THREAD_STACK_BYTES: usize = 256 * 1024;

/// Worker threads of the async runtime's scheduler. Two, measured on two
/// cores: 10 ticks over 1,000 healthy engines took 25–30% less wall time
/// than with one (the probes' syscalls then use both cores), while a hung
/// engine costs a task either way.
#[cfg(feature = "async")]
const ASYNC_WORKER_THREADS: usize = 2;

/// Threads tokio may start for blocking work: name lookups only.
#[cfg(feature = "async")]
const ASYNC_BLOCKING_THREADS: usize = 8;

/// Runs ticks over a record store, a publisher, telemetry and a clock.
pub struct Worker {
    config: WorkerConfig,
    store: Box<dyn RuntimeRecordStore>,
    clock: Arc<dyn Clock>,
    fanout: Fanout,
    owner: StateOwner,
}

/// How probes run: the only part that differs between the runtimes.
#[derive(Debug)]
enum Fanout {
    /// Blocking probes on scoped threads.
    Threads(Prober),
    /// Probe tasks on the worker's tokio runtime.
    #[cfg(feature = "async")]
    Tasks {
        runtime: tokio::runtime::Runtime,
        prober: AsyncProber,
    },
}

impl Fanout {
    fn new(runtime: Runtime, config: &WorkerConfig) -> Result<Self, ConfigError> {
        match runtime {
            Runtime::Threads => Ok(Self::Threads(Prober::new(config.probe_timeout))),
            #[cfg(feature = "async")]
            Runtime::Async => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(ASYNC_WORKER_THREADS)
                    .max_blocking_threads(ASYNC_BLOCKING_THREADS)
                    .thread_name("probe-async")
                    .enable_io()
                    .enable_time()
                    .build()
                    .map_err(|err| {
                        error!(error = %err, "cannot start the async runtime");
                        ConfigError::AsyncStart
                    })?;
                Ok(Self::Tasks {
                    runtime,
                    prober: AsyncProber::new(config.probe_timeout),
                })
            }
            #[cfg(not(feature = "async"))]
            Runtime::Async => Err(ConfigError::AsyncUnavailable),
        }
    }

    fn runtime(&self) -> Runtime {
        match self {
            Self::Threads(_) => Runtime::Threads,
            #[cfg(feature = "async")]
            Self::Tasks { .. } => Runtime::Async,
        }
    }
}

/// The hysteresis state and where its events go: touched only by the tick's caller.
///
/// `prune`, `fold` and `deliver` are the single places where state is
/// pruned, outcomes are folded and events leave.
struct StateOwner {
    states: HealthStates,
    outbox: Outbox,
    publisher: Box<dyn HealthEventPublisher>,
    telemetry: Box<dyn Telemetry>,
    /// With a state file, events wait for the end of the tick's snapshot.
    state_file: Option<StateFile>,
    journal: Option<JournalFile>,
    /// The publisher refused an event this tick: leave it alone until the next.
    publisher_refused: bool,
}

/// What [`Worker::restore`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Restored {
    /// Whether the file existed (false: a fresh start).
    pub existed: bool,
    /// Games restored with counters.
    pub games: usize,
    /// Events restored as pending, published before any new one.
    pub pending: usize,
    /// The snapshot's policy when it differed from the configured one (which replaced it).
    pub replaced_policy: Option<Policy>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .field("runtime", &self.runtime())
            .field("states", &self.owner.states)
            .field("pending", &self.owner.outbox.len())
            .field("state_file", &self.owner.state_file)
            .field("journal", &self.owner.journal)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker with empty state and nothing pending, probing on threads
    /// ([`Runtime::Threads`]); the config is validated first (R11).
    ///
    /// Events are published as they are emitted; see [`Worker::restore`]
    /// for durable state and [`Worker::set_journal`] for an input journal.
    pub fn new(
        config: WorkerConfig,
        store: impl RuntimeRecordStore + 'static,
        publisher: impl HealthEventPublisher + 'static,
        telemetry: impl Telemetry + 'static,
        clock: impl Clock + 'static,
    ) -> Result<Self, ConfigError> {
        Self::with_runtime(config, Runtime::Threads, store, publisher, telemetry, clock)
    }

    /// [`Worker::new`] with the probes fanned out by `runtime`.
    ///
    /// Same state, events, outbox, state file and journal behaviour for
    /// both. [`Runtime::Async`] starts the worker's tokio runtime now (two
    /// scheduler threads) and is refused with
    /// [`ConfigError::AsyncUnavailable`] by a build without the `async`
    /// feature.
    pub fn with_runtime(
        config: WorkerConfig,
        runtime: Runtime,
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
            clock: Arc::new(clock),
            fanout: Fanout::new(runtime, &config)?,
            owner: StateOwner {
                states: HealthStates::new(policy),
                outbox: Outbox::new(),
                publisher: Box::new(publisher),
                telemetry: Box::new(telemetry),
                state_file: None,
                journal: None,
                publisher_refused: false,
            },
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// How this worker fans out its probes.
    pub fn runtime(&self) -> Runtime {
        self.fanout.runtime()
    }

    /// The hysteresis state: the games that have failed since they last recovered.
    pub fn states(&self) -> &HealthStates {
        &self.owner.states
    }

    /// Events emitted but not yet accepted by the publisher, oldest first:
    /// the order they will be published in (D4).
    ///
    /// Non-empty while the publisher refuses events, and, with a state
    /// file, during a tick (events wait for the tick's snapshot).
    pub fn pending(&self) -> &[HealthEvent] {
        self.owner.outbox.pending()
    }

    /// Make the state durable (D5): restore it from `file`, write it back at
    /// once, and from now on persist it after every tick and before
    /// publishing any event.
    ///
    /// A missing file is a fresh start. The snapshot's counters and pending
    /// events replace this worker's (call it before the first tick); the
    /// configured policy replaces the snapshot's. The immediate write checks
    /// that the file can be written at all, so an unwritable directory is an
    /// error now rather than a silent gap later. On any error the worker is
    /// unchanged and the file is left as it was.
    pub fn restore(&mut self, mut file: StateFile) -> Result<Restored, StateFileError> {
        let configured = self.owner.states.policy();
        let (existed, mut states, pending) = match file.load()? {
            Some(snapshot) => (true, snapshot.states, snapshot.pending),
            None => (false, HealthStates::new(configured), Vec::new()),
        };
        let replaced_policy = (states.policy() != configured).then(|| states.policy());
        states.set_policy(configured);
        file.save(&states, &pending)?;
        let restored = Restored {
            existed,
            games: states.len(),
            pending: pending.len(),
            replaced_policy,
        };
        let path = file.path().display().to_string();
        if let Some(previous) = replaced_policy {
            info!(
                state_file = %path,
                snapshot_failures_threshold = previous.failures_threshold(),
                snapshot_recovery_threshold = previous.recovery_threshold(),
                failures_threshold = configured.failures_threshold(),
                recovery_threshold = configured.recovery_threshold(),
                "the configured policy replaces the snapshot's"
            );
        }
        if existed {
            info!(
                state_file = %path,
                games = restored.games,
                pending = restored.pending,
                "state restored"
            );
        } else {
            info!(state_file = %path, "no state file yet; starting fresh");
        }
        self.owner.states = states;
        self.owner.outbox = Outbox::with_pending(pending);
        self.owner.state_file = Some(file);
        Ok(restored)
    }

    /// Append every prune and outcome to `journal` from now on (D6),
    /// flushed at the end of each tick.
    pub fn set_journal(&mut self, journal: JournalFile) {
        self.owner.journal = Some(journal);
    }

    /// One full pass, deterministic up to the engines' answers.
    ///
    /// Publishes the events still pending from earlier ticks (D4), lists the
    /// running records (a listing error logs a warning and skips the tick
    /// with the state untouched, R9), prunes the state of every game not
    /// listed (R8), probes each listed game once (D3: the first record of a
    /// game wins) with at most `max_concurrency` probes in flight (R10), and
    /// folds each outcome with the core as it arrives, publishing the events
    /// it causes (with a state file: at the end of the tick, after the
    /// snapshot). Returns when every probe has finished.
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
        self.owner.begin_tick(&mut report);
        let records = match self.store.list_running() {
            Ok(records) => records,
            Err(err) => {
                warn!(error = %err, "cannot list running records; tick skipped");
                report.skipped = true;
                self.owner.end_tick(&mut report);
                report.duration = started.elapsed();
                return report;
            }
        };
        // R8: prune against the whole listing, duplicates included.
        self.owner.prune(&records, &mut report);
        let jobs = probe_jobs(&records);
        report.records = records.len();
        report.games = jobs.len();
        self.probe_and_fold(&jobs, shutdown, &mut report);
        self.owner.end_tick(&mut report);
        report.duration = started.elapsed();
        info!(
            games = report.games,
            probes = report.probes,
            failed_probes = report.failed_probes,
            events = report.events,
            published = report.published,
            pending = report.pending,
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
            runtime = %self.runtime(),
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
            published = run.published,
            pending = run.pending,
            "health probe worker stopped"
        );
        run
    }

    /// Probe `jobs` with at most `max_concurrency` in flight; fold and publish here.
    fn probe_and_fold(
        &mut self,
        jobs: &[&RuntimeRecord],
        shutdown: &Shutdown,
        report: &mut TickReport,
    ) {
        if jobs.is_empty() {
            return;
        }
        match &self.fanout {
            Fanout::Threads(prober) => {
                probe_on_threads(
                    &self.config,
                    prober,
                    &*self.clock,
                    &mut self.owner,
                    jobs,
                    shutdown,
                    report,
                );
            }
            #[cfg(feature = "async")]
            Fanout::Tasks { runtime, prober } => {
                let (sender, receiver) = mpsc::channel::<Probed>();
                // Suspects first: a game with a failure counted is the
                // likeliest to hang again, and its timeout then overlaps
                // the sweep of the rest instead of trailing it. The order
                // of probes within a tick changes no event: each game is
                // probed once and every outcome carries its own time.
                let mut order: Vec<(usize, String)> = jobs
                    .iter()
                    .map(|record| record.engine_endpoint.clone())
                    .enumerate()
                    .collect();
                order.sort_by_key(|(job, _)| self.owner.states.game(&jobs[*job].game_id).is_none());
                runtime.spawn(drive_probe_tasks(
                    *prober,
                    order,
                    self.config.max_concurrency,
                    Arc::clone(&self.clock),
                    shutdown.clone(),
                    sender,
                ));
                // Every task holds a sender: the loop ends when the last probe has.
                for probed in receiver {
                    self.owner.fold(jobs[probed.job], probed, report);
                }
            }
        }
        report.interrupted = report.probes < jobs.len();
    }
}

/// Spawn one probe task per `(job, endpoint)`, in order, at most
/// `max_concurrency` in flight, none once `shutdown` is triggered; each
/// sends its result.
#[cfg(feature = "async")]
async fn drive_probe_tasks(
    prober: AsyncProber,
    endpoints: Vec<(usize, String)>,
    max_concurrency: usize,
    clock: Arc<dyn Clock>,
    shutdown: Shutdown,
    sender: mpsc::Sender<Probed>,
) {
    use tokio::sync::Semaphore;
    let permits = max_concurrency
        .min(endpoints.len())
        .min(Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(permits));
    for (job, endpoint) in endpoints {
        // The semaphore is never closed, so acquiring only waits.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        if shutdown.is_triggered() {
            break;
        }
        let sender = sender.clone();
        let clock = Arc::clone(&clock);
        tokio::spawn(async move {
            let result = prober.probe(&endpoint).await;
            let observed_at = clock.now();
            drop(slot);
            let _ = sender.send(Probed {
                job,
                observed_at,
                result,
            });
        });
    }
}

/// Probe `jobs` on up to `max_concurrency` threads, the caller among them;
/// fold and publish on the caller's.
fn probe_on_threads(
    config: &WorkerConfig,
    prober: &Prober,
    clock: &dyn Clock,
    owner: &mut StateOwner,
    jobs: &[&RuntimeRecord],
    shutdown: &Shutdown,
    report: &mut TickReport,
) {
    {
        let threads = config.max_concurrency.min(jobs.len());
        let next_job = AtomicUsize::new(0);
        let (sender, receiver) = mpsc::channel::<Probed>();
        let pool = ProbePool {
            jobs,
            next_job: &next_job,
            prober,
            clock,
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
                owner.fold(jobs[probed.job], probed, report);
                while let Ok(probed) = receiver.try_recv() {
                    owner.fold(jobs[probed.job], probed, report);
                }
            }
            for probed in receiver {
                owner.fold(jobs[probed.job], probed, report);
            }
        });
    }
}

impl StateOwner {
    /// Start of a tick: retry the publisher, then deliver what waits (D4).
    fn begin_tick(&mut self, report: &mut TickReport) {
        self.publisher_refused = false;
        if self.deliver(report) > 0 {
            // Record the deliveries now rather than at the tick's end, so a
            // crash during the probes does not publish them again.
            self.persist(report);
        }
    }

    /// End of a tick: flush the journal; with a state file, persist, then
    /// deliver what the snapshot holds, then persist the deliveries.
    fn end_tick(&mut self, report: &mut TickReport) {
        if let Some(journal) = &mut self.journal {
            if let Err(err) = journal.flush() {
                let path = journal.path().display().to_string();
                self.stop_journal(&path, &err, report);
            }
        }
        if self.state_file.is_some() {
            self.persist(report);
            if self.deliver(report) > 0 {
                self.persist(report);
            }
        }
        report.pending = self.outbox.len();
        report.tracked_games = self.states.len();
        if report.pending > 0 {
            warn!(
                pending = report.pending,
                "events wait for the publisher; they are retried in order next tick"
            );
        }
    }

    /// R8: forget every game not in the fresh listing (journaled first, D6).
    fn prune(&mut self, records: &[RuntimeRecord], report: &mut TickReport) {
        let running = records.iter().map(|record| record.game_id.as_str());
        if self.journal.is_none() {
            self.states.prune(running);
            return;
        }
        let input = Input::Prune {
            running: running.map(str::to_owned).collect(),
        };
        self.journal(&input, report);
        let event = self.states.apply_input(input);
        debug_assert!(event.is_none(), "a prune emits nothing");
    }

    /// Fold one outcome with the core (journaled first, D6); queue the event
    /// it causes and, without a state file, deliver it.
    fn fold(&mut self, record: &RuntimeRecord, probed: Probed, report: &mut TickReport) {
        report.probes += 1;
        if !probed.result.is_healthy() {
            report.failed_probes += 1;
        }
        report.probe_classes.add(classify(&probed.result));
        let input = Input::Outcome(ProbeOutcome {
            game_id: record.game_id.clone(),
            container_id: record.current_container_id.clone(),
            observed_at: probed.observed_at,
            result: probed.result,
        });
        self.journal(&input, report);
        if let Some(event) = self.states.apply_input(input) {
            report.events += 1;
            self.outbox.push(event);
            if self.state_file.is_none() {
                self.deliver(report);
            }
        }
    }

    /// Publish pending events oldest first, until one is refused; count and
    /// log each delivery. The one place events leave. Returns how many left.
    fn deliver(&mut self, report: &mut TickReport) -> usize {
        if self.publisher_refused || self.outbox.is_empty() {
            return 0;
        }
        let telemetry = &mut self.telemetry;
        let drained = self.outbox.drain(&mut *self.publisher, |event| {
            let event_type = event.event_type();
            telemetry.record_event(event_type);
            info!(
                game_id = %event.game_id,
                container_id = %event.container_id,
                event_type = %event_type,
                "probe event published"
            );
        });
        report.published += drained.delivered;
        if let Some(err) = drained.refused {
            self.publisher_refused = true;
            report.publish_failures += 1;
            if let Some(event) = self.outbox.pending().first() {
                error!(
                    game_id = %event.game_id,
                    container_id = %event.container_id,
                    event_type = %event.event_type(),
                    error = %err,
                    pending = self.outbox.len(),
                    "cannot publish probe event; it stays pending and is retried next tick, before newer events"
                );
            }
        }
        drained.delivered
    }

    /// Write the snapshot if there is a state file and it changed.
    fn persist(&mut self, report: &mut TickReport) {
        let Some(file) = &mut self.state_file else {
            return;
        };
        match file.save(&self.states, self.outbox.pending()) {
            Ok(Saved::Written) => report.snapshots_written += 1,
            Ok(Saved::Unchanged) => {}
            Err(err) => {
                report.snapshot_failures += 1;
                error!(
                    error = %err,
                    "cannot persist the state; events are published anyway, and a crash before the next successful write loses what happened since the last one"
                );
            }
        }
    }

    /// Append `input` to the journal, if there is one.
    fn journal(&mut self, input: &Input, report: &mut TickReport) {
        let Some(journal) = &mut self.journal else {
            return;
        };
        if let Err(err) = journal.record(input) {
            let path = journal.path().display().to_string();
            self.stop_journal(&path, &err, report);
        }
    }

    /// Log a journal error once and stop journaling (a journal with a hole
    /// would replay to different events).
    fn stop_journal(&mut self, path: &str, err: &std::io::Error, report: &mut TickReport) {
        error!(
            journal = %path,
            error = %err,
            "cannot write the journal; journaling stops for the rest of the run"
        );
        self.journal = None;
        report.journal_stopped = true;
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
    /// The folded probes by [`ProbeClass`] (they add up to `probes`).
    pub probe_classes: ProbeClassCounts,
    /// Events the core emitted this tick.
    pub events: usize,
    /// Events the publisher accepted this tick, older pending ones included.
    pub published: usize,
    /// Refused publish attempts this tick (each leaves its event pending; at
    /// most one per tick, as a refusal ends delivery until the next tick).
    pub publish_failures: usize,
    /// Events waiting for the publisher at the end of the tick (D4).
    pub pending: usize,
    /// Games holding hysteresis state at the end of the tick (D7: those with
    /// a failure counted or published).
    pub tracked_games: usize,
    /// Snapshots written this tick (D5; an unchanged snapshot is not rewritten).
    pub snapshots_written: usize,
    /// Snapshot writes that failed this tick (logged; events published anyway).
    pub snapshot_failures: usize,
    /// The journal failed this tick and stopped (D6).
    pub journal_stopped: bool,
    /// Wall time of the tick.
    pub duration: Duration,
    /// The listing failed, so nothing was pruned or probed (R9).
    pub skipped: bool,
    /// Shutdown stopped the tick before every game was probed.
    pub interrupted: bool,
}

/// Probes counted by [`ProbeClass`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeClassCounts {
    counts: [usize; ProbeClass::ALL.len()],
}

impl ProbeClassCounts {
    /// Count one probe of `class`.
    pub fn add(&mut self, class: ProbeClass) {
        self.counts[class as usize] += 1;
    }

    /// Probes of `class` counted.
    pub fn get(&self, class: ProbeClass) -> usize {
        self.counts[class as usize]
    }

    /// Probes of every class counted.
    pub fn total(&self) -> usize {
        self.counts.iter().sum()
    }

    /// Each class with its count, in [`ProbeClass::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (ProbeClass, usize)> + '_ {
        ProbeClass::ALL
            .into_iter()
            .map(|class| (class, self.get(class)))
    }
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
    /// Events delivered.
    pub published: u64,
    /// Refused publish attempts.
    pub publish_failures: u64,
    /// Events still waiting for the publisher after the last tick.
    pub pending: usize,
    /// Snapshot writes that failed.
    pub snapshot_failures: u64,
}

impl RunReport {
    /// Add one tick's counts; `pending` becomes the tick's.
    pub fn add(&mut self, tick: &TickReport) {
        self.ticks += 1;
        self.skipped_ticks += u64::from(tick.skipped);
        self.probes += tick.probes as u64;
        self.events += tick.events as u64;
        self.published += tick.published as u64;
        self.publish_failures += tick.publish_failures as u64;
        self.pending = tick.pending;
        self.snapshot_failures += tick.snapshot_failures as u64;
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

    use healthprobe_core::{EventDetails, EventType, GameState as GameStateCounters};

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
    fn the_async_runtime_is_refused_only_without_the_feature() {
        let worker = Worker::with_runtime(
            WorkerConfig::default(),
            Runtime::Async,
            MemoryStore::new(),
            MemoryPublisher::new(),
            CountingTelemetry::new(),
            ManualClock::new(Timestamp::UNIX_EPOCH),
        );
        if cfg!(feature = "async") {
            assert_eq!(worker.expect("async built in").runtime(), Runtime::Async);
        } else {
            let err = worker.expect_err("async not built in");
            assert_eq!(err, ConfigError::AsyncUnavailable);
            assert_eq!(err.field(), "runtime");
        }
        assert!(Runtime::Threads.is_available());
        assert_eq!(Runtime::Async.is_available(), cfg!(feature = "async"));
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
    fn the_report_counts_probes_by_class_and_the_games_tracked() {
        let mut rig = rig(1);
        let refused = rig.endpoint.clone();
        rig.store.set(vec![
            RuntimeRecord::running("g1", "c1", &refused),
            RuntimeRecord::running("g2", "c2", "https://127.0.0.1:1/"),
        ]);
        let report = rig.worker.tick();
        let mut expected = ProbeClassCounts::default();
        expected.add(ProbeClass::ConnectError);
        expected.add(ProbeClass::Other);
        assert_eq!(report.probe_classes, expected);
        assert_eq!(report.probe_classes.total(), report.probes);
        assert_eq!(
            report.probe_classes.iter().collect::<Vec<_>>(),
            [
                (ProbeClass::Ok, 0),
                (ProbeClass::BadStatus, 0),
                (ProbeClass::Timeout, 0),
                (ProbeClass::ConnectError, 1),
                (ProbeClass::Other, 1),
            ]
        );
        assert_eq!(report.tracked_games, 2);
        // A skipped tick probes nothing and still reports the state it keeps;
        // a game no longer listed is pruned and no longer tracked.
        rig.store.fail_next(1);
        let skipped = rig.worker.tick();
        assert_eq!(skipped.probe_classes, ProbeClassCounts::default());
        assert_eq!(skipped.tracked_games, 2);
        rig.store
            .set(vec![RuntimeRecord::running("g1", "c1", &refused)]);
        assert_eq!(rig.worker.tick().tracked_games, 1);
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
            (
                report.events,
                report.published,
                report.publish_failures,
                report.pending
            ),
            (1, 0, 1, 1)
        );
        assert_eq!(rig.telemetry.total(), 0);
        assert!(rig.publisher.events().is_empty());
        assert_eq!(rig.worker.pending().len(), 1);
    }

    #[test]
    fn d4_a_refused_event_stays_pending_and_is_published_first_next_tick() {
        let mut rig = rig(1);
        let endpoint = rig.endpoint.clone();
        rig.store.set(vec![
            RuntimeRecord::running("g1", "c1", &endpoint),
            RuntimeRecord::running("g2", "c2", &endpoint),
        ]);
        rig.publisher.fail(true);
        let first = rig.worker.tick();
        // One refused attempt, then the publisher is left alone for the tick.
        assert_eq!((first.events, first.publish_failures), (2, 1));
        assert_eq!(rig.publisher.attempts(), 1);
        let waiting = rig.worker.pending().to_vec();
        assert_eq!(waiting.len(), 2);
        rig.publisher.fail(false);
        rig.store.set(vec![]);
        let second = rig.worker.tick();
        assert_eq!((second.events, second.published, second.pending), (0, 2, 0));
        assert_eq!(rig.publisher.events(), waiting);
        assert_eq!(rig.telemetry.total(), 2);
    }

    #[test]
    fn d4_a_skipped_tick_still_delivers_what_waits() {
        let mut rig = rig(1);
        let endpoint = rig.endpoint.clone();
        rig.store
            .set(vec![RuntimeRecord::running("g1", "c1", &endpoint)]);
        rig.publisher.fail_next(1);
        rig.worker.tick();
        assert_eq!(rig.worker.pending().len(), 1);
        rig.store.fail_next(1);
        let skipped = rig.worker.tick();
        assert!(skipped.skipped);
        assert_eq!((skipped.published, skipped.pending), (1, 0));
    }

    /// Publishes into `inner` after checking the event is in the state file's pending list.
    struct SnapshotFirst {
        inner: MemoryPublisher,
        path: std::path::PathBuf,
        unpersisted: Arc<Mutex<Vec<HealthEvent>>>,
    }

    impl HealthEventPublisher for SnapshotFirst {
        fn publish(&mut self, event: &HealthEvent) -> Result<(), crate::ports::PublishError> {
            let snapshot = StateFile::new(&self.path)
                .load()
                .expect("a valid state file")
                .expect("written before any publish");
            if !snapshot.pending.contains(event) {
                self.unpersisted
                    .lock()
                    .expect("test lock")
                    .push(event.clone());
            }
            self.inner.publish(event)
        }
    }

    fn scratch(label: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("healthprobe-worker-{}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn d5_with_a_state_file_no_event_is_published_before_it_is_persisted() {
        let dir = scratch("persist-first");
        let path = dir.join("state.json");
        let store = MemoryStore::new();
        let endpoint = refused_endpoint();
        store.set(
            (0..5)
                .map(|i| RuntimeRecord::running(format!("g{i}"), format!("c{i}"), &endpoint))
                .collect(),
        );
        let publisher = MemoryPublisher::new();
        let unpersisted = Arc::new(Mutex::new(Vec::new()));
        let config = WorkerConfig {
            failures_threshold: 2,
            ..WorkerConfig::default()
        };
        let mut worker = Worker::new(
            config,
            store.clone(),
            SnapshotFirst {
                inner: publisher.clone(),
                path: path.clone(),
                unpersisted: Arc::clone(&unpersisted),
            },
            CountingTelemetry::new(),
            ManualClock::new(Timestamp::from_second(1_800_000_000).expect("valid")),
        )
        .expect("valid config");
        let restored = worker.restore(StateFile::new(&path)).expect("fresh start");
        assert!(!restored.existed);
        publisher.fail_every(2);
        let mut reports = Vec::new();
        for _ in 0..6 {
            reports.push(worker.tick());
        }
        assert_eq!(reports[1].events, 5);
        assert!(reports.iter().all(|r| r.snapshot_failures == 0));
        assert_eq!(publisher.events().len(), 5);
        assert!(worker.pending().is_empty());
        assert!(unpersisted.lock().expect("test lock").is_empty());
        // The last snapshot records every delivery.
        let snapshot = StateFile::new(&path)
            .load()
            .expect("valid")
            .expect("exists");
        assert!(snapshot.pending.is_empty());
        assert_eq!(&snapshot.states, worker.states());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn d5_restore_refuses_a_bad_file_and_leaves_worker_and_file_as_they_were() {
        let dir = scratch("refuse");
        let path = dir.join("state.json");
        let mut rig = rig(1);
        for text in ["", "{\"version\":1,", "{\"version\":9}"] {
            std::fs::write(&path, text).expect("seed");
            let err = rig
                .worker
                .restore(StateFile::new(&path))
                .expect_err("a bad file");
            assert!(err.is_bad_contents(), "{err}");
            assert!(err.to_string().starts_with(&path.display().to_string()));
            assert_eq!(std::fs::read_to_string(&path).expect("kept"), text);
        }
        assert!(rig.worker.states().is_empty());
        assert!(rig.worker.owner.state_file.is_none());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn d5_restore_brings_back_counters_and_pending_under_the_configured_policy() {
        let dir = scratch("restore");
        let path = dir.join("state.json");
        let mut before = rig(3);
        let endpoint = before.endpoint.clone();
        before
            .store
            .set(vec![RuntimeRecord::running("g1", "c1", &endpoint)]);
        before.worker.restore(StateFile::new(&path)).expect("fresh");
        before.publisher.fail(true);
        for _ in 0..3 {
            before.worker.tick();
        }
        assert_eq!(before.worker.pending().len(), 1);
        let pending = before.worker.pending().to_vec();
        drop(before);

        let mut after = rig(5);
        after
            .store
            .set(vec![RuntimeRecord::running("g1", "c1", &endpoint)]);
        let restored = after.worker.restore(StateFile::new(&path)).expect("valid");
        assert_eq!(
            (restored.existed, restored.games, restored.pending),
            (true, 1, 1)
        );
        assert_eq!(
            restored.replaced_policy,
            Some(healthprobe_core::Policy::new(3, 1).expect("valid"))
        );
        assert_eq!(after.worker.states().policy().failures_threshold(), 5);
        assert_eq!(after.worker.pending(), pending.as_slice());
        let report = after.worker.tick();
        assert_eq!((report.published, report.pending), (1, 0));
        assert_eq!(after.publisher.events(), pending);
        assert_eq!(
            after
                .worker
                .states()
                .game("g1")
                .map(GameStateCounters::consecutive_failures),
            Some(4)
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn d5_a_failing_snapshot_write_is_reported_and_events_are_published_anyway() {
        let dir = scratch("write-fails");
        let path = dir.join("state.json");
        let mut rig = rig(1);
        let endpoint = rig.endpoint.clone();
        rig.store
            .set(vec![RuntimeRecord::running("g1", "c1", &endpoint)]);
        rig.worker.restore(StateFile::new(&path)).expect("fresh");
        std::fs::remove_dir_all(&dir).expect("the directory goes away");
        let report = rig.worker.tick();
        assert_eq!(
            (report.events, report.published, report.snapshot_failures),
            (1, 1, 2),
            "the writes before and after delivery both fail"
        );
        assert_eq!(rig.publisher.events().len(), 1);
        std::fs::create_dir_all(&dir).expect("the directory comes back");
        let report = rig.worker.tick();
        assert_eq!((report.snapshots_written, report.snapshot_failures), (1, 0));
        let snapshot = StateFile::new(&path)
            .load()
            .expect("valid")
            .expect("exists");
        assert_eq!(&snapshot.states, rig.worker.states());
        std::fs::remove_dir_all(&dir).expect("clean up");
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
