//! The driver: pumps the pure [`TickMachine`] and performs its actions through the ports.
//!
//! Every rule of a run — when a tick starts, what is probed, the order of
//! journal, fold, persist and publish, what stays pending, what a refused
//! publish does, when the run stops — is decided by
//! [`healthprobe_core::tick::TickMachine`], which does no I/O. The
//! [`Worker`] owns the ports and does only this:
//!
//! ```text
//! loop {
//!     match machine.poll_action() {
//!         List            => machine.handle_listing(now, store.list_running()),
//!         Probe(batch)    => fanout.probe_batch(batch, |probed| {
//!                                machine.handle_outcome(now, probed…); pump() }),
//!                            machine.handle_probes_done(now),
//!         Journal(input)  => journal.record(&input) (on error: handle_journal_failed),
//!         FlushJournal    => machine.handle_flushed(now, journal.flush()),
//!         Publish(event)  => machine.handle_published(now, publisher.publish(&event)),
//!         SyncPublisher   => machine.handle_synced(now, publisher.sync()),
//!         Persist         => machine.handle_persisted(now, state.save(states, pending)),
//!         Interrupt       => shutdown.trigger(),
//!         TickDone(report)=> log, return it,
//!         Wait { until }  => clock.sleep_until(until), machine.start_tick(now),
//!         Stop(reason)    => return,
//!     }
//! }
//! ```
//!
//! Besides, it logs what happened (each delivery, each refusal, each
//! failed write) and counts deliveries on the [`Telemetry`] port (R12). The
//! fan-outs ([`crate::fanout`]) are the only place probes run; the ports
//! are only ever called from the thread that drives the machine.
//!
//! See the machine's docs for the rules themselves (D4 delivery, D5
//! persistence, D6 journal, R8–R13 ticks); the [`Worker`] methods below say
//! what each does for a caller.

use std::sync::Arc;
use std::time::Duration;

use healthprobe_core::tick::{
    Action, MachineConfig, Persisted, ProbeBatch, Published, TickMachine,
};
use healthprobe_core::{HealthEvent, HealthStates, Policy};
use tracing::{error, info, warn};

use crate::config::{ConfigError, Runtime, WorkerConfig};
use crate::connections::{ConnectionPolicy, Connections};
#[cfg(feature = "async")]
use crate::fanout::TaskFanout;
use crate::fanout::ThreadFanout;
use crate::ports::{
    Clock, HealthEventPublisher, JournalSink, ProbeFanout, RuntimeRecordStore, StateStore,
    Telemetry,
};
use crate::probe::Prober;
#[cfg(feature = "async")]
use crate::probe_async::AsyncProber;
pub use crate::shutdown::Shutdown;
use crate::tls::TlsClient;
pub use healthprobe_core::tick::{ProbeClassCounts, RunReport, StopReason, TickReport};

/// The driver: runs ticks of a [`TickMachine`] over the ports.
pub struct Worker {
    config: WorkerConfig,
    fanout: Box<dyn ProbeFanout>,
    io: Io,
}

/// The machine and the ports it drives (everything but the fan-out, so a
/// fan-out's fold callback can borrow it).
struct Io {
    machine: TickMachine,
    store: Box<dyn RuntimeRecordStore>,
    publisher: Box<dyn HealthEventPublisher>,
    telemetry: Box<dyn Telemetry>,
    clock: Arc<dyn Clock>,
    state: Option<Box<dyn StateStore>>,
    journal: Option<Box<dyn JournalSink>>,
    /// What the restored snapshot says of the journal: a journal set now
    /// or later is cut back to its length, or kept off.
    restored_journal: RestoredJournal,
    /// The last write of the state file failed: it holds an older snapshot.
    state_behind: bool,
}

/// What a restored snapshot says of the journal (D6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RestoredJournal {
    /// No snapshot was restored: nothing to reconcile.
    Fresh,
    /// The journal's first `len` bytes hold exactly the snapshot's folds.
    At(u64),
    /// The snapshot holds folds no journal recorded: its run's journal had
    /// stopped, or it had none. A journal that already has lines cannot go
    /// on without a hole; an empty one starts afresh.
    Unrecorded,
}

impl RestoredJournal {
    /// The length to record for a journal whose flushed length is
    /// `found`: `None` when it must stay off.
    fn kept_len(self, found: u64) -> Option<u64> {
        match self {
            Self::Fresh => Some(found),
            Self::At(len) => Some(found.min(len)),
            Self::Unrecorded => (found == 0).then_some(0),
        }
    }
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

/// Limits of one [`Worker::run_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunLimits {
    /// Stop after this many ticks (`--ticks N`): ticks then run back to
    /// back, except that a skipped tick waits out its interval.
    pub ticks: Option<u64>,
}

impl RunLimits {
    /// Run until shutdown.
    pub fn forever() -> Self {
        Self::default()
    }

    /// Run `ticks` ticks at most.
    pub fn ticks(ticks: u64) -> Self {
        Self { ticks: Some(ticks) }
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .field("runtime", &self.runtime())
            .field("states", self.io.machine.states())
            .field("pending", &self.io.machine.pending_len())
            .field("state", &self.io.state)
            .field("journal", &self.io.journal)
            .finish_non_exhaustive()
    }
}

/// The fan-out of `runtime` for `config`, its `https://` probes made with
/// `tls`, its connections kept or fresh as `connections` says
/// ([`crate::connections`]) (for [`Worker::with_fanout`];
/// [`Worker::with_runtime`] uses [`TlsClient::system`] and the default
/// policy).
pub fn probe_fanout(
    runtime: Runtime,
    config: &WorkerConfig,
    tls: TlsClient,
    connections: ConnectionPolicy,
) -> Result<Box<dyn ProbeFanout>, ConfigError> {
    match runtime {
        Runtime::Threads => Ok(Box::new(ThreadFanout::new(Prober::new(
            config.probe_timeout,
            tls,
            connections,
        )))),
        #[cfg(feature = "async")]
        Runtime::Async => TaskFanout::new(AsyncProber::new(config.probe_timeout, tls, connections))
            .map(|fanout| Box::new(fanout) as Box<dyn ProbeFanout>)
            .map_err(|err| {
                error!(error = %err, "cannot start the async runtime");
                ConfigError::AsyncStart
            }),
        #[cfg(not(feature = "async"))]
        Runtime::Async => Err(ConfigError::AsyncUnavailable),
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
    /// both. [`Runtime::Async`] starts the worker's tokio runtime now (one
    /// scheduler thread) and is refused with
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
        let connections =
            ConnectionPolicy::new(Connections::Auto, config.interval, config.max_concurrency);
        let fanout = probe_fanout(runtime, &config, TlsClient::system(), connections)?;
        Ok(Self::assemble(
            config, fanout, store, publisher, telemetry, clock,
        ))
    }

    /// A worker whose probes run through `fanout`: one of [`crate::fanout`],
    /// or an embedder's or a simulation's own.
    pub fn with_fanout(
        config: WorkerConfig,
        fanout: Box<dyn ProbeFanout>,
        store: impl RuntimeRecordStore + 'static,
        publisher: impl HealthEventPublisher + 'static,
        telemetry: impl Telemetry + 'static,
        clock: impl Clock + 'static,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::assemble(
            config, fanout, store, publisher, telemetry, clock,
        ))
    }

    /// The worker for a validated `config`.
    fn assemble(
        config: WorkerConfig,
        fanout: Box<dyn ProbeFanout>,
        store: impl RuntimeRecordStore + 'static,
        publisher: impl HealthEventPublisher + 'static,
        telemetry: impl Telemetry + 'static,
        clock: impl Clock + 'static,
    ) -> Self {
        let policy = config.policy().expect("a validated config has a policy");
        Self {
            config,
            fanout,
            io: Io {
                machine: TickMachine::new(
                    MachineConfig::new(config.interval),
                    HealthStates::new(policy),
                    Vec::new(),
                ),
                store: Box::new(store),
                publisher: Box::new(publisher),
                telemetry: Box::new(telemetry),
                clock: Arc::new(clock),
                state: None,
                journal: None,
                restored_journal: RestoredJournal::Fresh,
                state_behind: false,
            },
        }
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
        self.io.machine.states()
    }

    /// The tick machine this worker drives (read-only).
    pub fn machine(&self) -> &TickMachine {
        &self.io.machine
    }

    /// Events emitted but not yet recorded as delivered, oldest first: the
    /// order they will be published in (D4).
    ///
    /// Non-empty while the publisher refuses events, and, with a state
    /// file, during a tick (events wait for the tick's snapshot).
    pub fn pending(&self) -> Vec<HealthEvent> {
        self.io.machine.pending().cloned().collect()
    }

    /// How many events are pending (see [`Worker::pending`]).
    pub fn pending_len(&self) -> usize {
        self.io.machine.pending_len()
    }

    /// Whether a state file holds the latest snapshot, pending events
    /// included: false without one ([`Worker::restore`]), and while its
    /// last write has failed (it then holds an older snapshot).
    pub fn state_is_saved(&self) -> bool {
        self.io.state.is_some() && !self.io.state_behind
    }

    /// Make the state durable (D5): restore it from `store`, write it back at
    /// once, and from now on persist it after every tick and before
    /// publishing any event.
    ///
    /// A missing file is a fresh start. The snapshot's counters and pending
    /// events replace this worker's (call it before the first tick); the
    /// configured policy replaces the snapshot's. The immediate write checks
    /// that the file can be written at all, so an unwritable directory is an
    /// error now rather than a silent gap later. On any error the worker is
    /// unchanged and the file is left as it was.
    pub fn restore(
        &mut self,
        store: impl StateStore + 'static,
    ) -> Result<Restored, crate::durable::StateFileError> {
        let mut store = store;
        let configured = self.io.machine.states().policy();
        let (existed, mut states, pending, journal_len) = match store.load()? {
            Some(snapshot) => (
                true,
                snapshot.states,
                snapshot.pending,
                snapshot.journal_len,
            ),
            None => (false, HealthStates::new(configured), Vec::new(), None),
        };
        let replaced_policy = (states.policy() != configured).then(|| states.policy());
        states.set_policy(configured);
        let restored_journal = match (existed, journal_len) {
            (false, _) => RestoredJournal::Fresh,
            (true, Some(len)) => RestoredJournal::At(len),
            (true, None) => RestoredJournal::Unrecorded,
        };
        // With a journal already set, record the length it is about to be
        // cut back to, or none if it is about to stay off.
        let record_len = match &self.io.journal {
            Some(journal) => restored_journal.kept_len(journal.flushed_len()),
            None => journal_len,
        };
        store.save(&states, &pending, record_len)?;
        let restored = Restored {
            existed,
            games: states.len(),
            pending: pending.len(),
            replaced_policy,
        };
        let name = store.name();
        if let Some(previous) = replaced_policy {
            info!(
                state_file = %name,
                snapshot_failures_threshold = previous.failures_threshold(),
                snapshot_recovery_threshold = previous.recovery_threshold(),
                failures_threshold = configured.failures_threshold(),
                recovery_threshold = configured.recovery_threshold(),
                "the configured policy replaces the snapshot's"
            );
        }
        if existed {
            info!(
                state_file = %name,
                games = restored.games,
                pending = restored.pending,
                "state restored"
            );
        } else {
            info!(state_file = %name, "no state file yet; starting fresh");
        }
        self.io.machine.restore(states, pending);
        self.io.machine.set_durable(true);
        self.io.state = Some(Box::new(store));
        self.io.restored_journal = restored_journal;
        self.io.reconcile_journal();
        Ok(restored)
    }

    /// Append every prune and outcome to `journal` from now on (D6),
    /// flushed at the end of each tick.
    ///
    /// With a restored snapshot that recorded the journal's length, a longer
    /// journal is first cut back to it: its last lines belong to a tick the
    /// snapshot does not hold (flushed, then the process died or the
    /// snapshot write failed), which this run probes again, so the journal
    /// keeps replaying to the events delivered. A snapshot that recorded no
    /// length (taken after the journal had stopped, or by a run without
    /// one) holds folds no journal has: a journal that already has lines
    /// then stays off for this run (logged), since appending would leave a
    /// hole in it, and an empty one (the old one moved aside) starts afresh.
    ///
    /// Set it before [`Worker::restore`], as the CLI does: the restore's own
    /// write, which must succeed, then records the journal's length. Set
    /// after, the length is recorded by a write made here; if that write
    /// fails, journaling is turned off for the run (logged), since a crash
    /// before the next successful write could not cut the journal back.
    pub fn set_journal(&mut self, journal: impl JournalSink + 'static) {
        self.io.journal = Some(Box::new(journal));
        self.io.machine.set_journal(true);
        self.io.reconcile_journal();
        if self.io.state.is_some() {
            // Record the journal's length now, so a crash before the first
            // tick's snapshot still cuts back what that tick journals.
            if matches!(self.io.persist(), Persisted::Failed) {
                // Unrecorded, a crash before the next successful snapshot
                // would leave the lines journaled since in the journal while
                // the restored state does not hold them: replay would fold
                // those ticks twice (found by simulation seed 204122610).
                // Journal nothing rather than lines replay folds wrong.
                if let Some(journal) = self.io.journal.take() {
                    error!(
                        journal = %journal.name(),
                        "cannot record the journal's length in the state file; journaling off for this run"
                    );
                }
                self.io.machine.set_journal(false);
            }
        }
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
        if self.io.machine.is_stopped() {
            // A finished run (a tick limit, a closed output): tick on demand.
            self.io.machine.rearm();
        }
        let (report, _next) = self.drive_tick(shutdown);
        report
    }

    /// Tick once per interval until `shutdown` is triggered (R13).
    ///
    /// The first tick starts at once. A tick that overruns the interval logs
    /// a warning and the next one starts right after it: missed ticks are
    /// not caught up. Shutdown during a tick stops new probes and waits for
    /// those in flight, so it is honoured within one probe timeout.
    pub fn run(&mut self, shutdown: &Shutdown) -> RunReport {
        self.run_with(shutdown, RunLimits::forever(), |_| {})
    }

    /// [`Worker::run`], calling `on_tick` with each tick's report.
    pub fn run_observed(
        &mut self,
        shutdown: &Shutdown,
        on_tick: impl FnMut(&TickReport),
    ) -> RunReport {
        self.run_with(shutdown, RunLimits::forever(), on_tick)
    }

    /// Run until `shutdown`, the limits, or a closed events output stop it;
    /// `on_tick` sees each tick's report. [`RunReport::stopped`] says why it stopped.
    pub fn run_with(
        &mut self,
        shutdown: &Shutdown,
        limits: RunLimits,
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
        if self.io.machine.is_stopped() {
            self.io.machine.rearm();
        }
        let before = self.io.machine.run_report().ticks;
        self.io
            .machine
            .set_tick_limit(limits.ticks.map(|ticks| before + ticks));
        let mut run = RunReport::default();
        if limits.ticks == Some(0) {
            run.stopped = Some(StopReason::TickLimit);
        } else if shutdown.is_triggered() {
            run.stopped = Some(StopReason::Shutdown);
        }
        while run.stopped.is_none() {
            let (report, next) = self.drive_tick(shutdown);
            run.add(&report);
            on_tick(&report);
            if report.overran {
                warn!(
                    duration_ms = duration_ms(report.duration),
                    interval_ms = duration_ms(config.interval),
                    "tick overran the interval; the next tick starts now"
                );
            }
            match next {
                Next::Stop(reason) => run.stopped = Some(reason),
                Next::Wait(until) => {
                    if shutdown.is_triggered() || self.io.clock.sleep_until(until, shutdown) {
                        self.io.machine.handle_shutdown();
                        run.stopped = Some(StopReason::Shutdown);
                    }
                }
            }
        }
        self.io.machine.set_tick_limit(None);
        info!(
            ticks = run.ticks,
            events = run.events,
            published = run.published,
            pending = run.pending,
            stopped = ?run.stopped,
            "health probe worker stopped"
        );
        run
    }

    /// Drive one tick of the machine to its end; its report and what comes next.
    fn drive_tick(&mut self, shutdown: &Shutdown) -> (TickReport, Next) {
        let io = &mut self.io;
        io.machine.start_tick(io.clock.monotonic());
        let mut report = None;
        loop {
            match io.pump(shutdown) {
                Control::Probe(batch) => {
                    let clock = Arc::clone(&io.clock);
                    self.fanout.probe_batch(
                        &batch,
                        self.config.max_concurrency,
                        &clock,
                        shutdown,
                        &mut |probed| {
                            io.machine.handle_outcome(
                                io.clock.monotonic(),
                                probed.job,
                                probed.observed_at,
                                probed.result,
                                probed.class,
                            );
                            // Journal lines and (without a state file)
                            // deliveries, between probes.
                            let control = io.pump(shutdown);
                            debug_assert!(matches!(control, Control::Idle), "{control:?}");
                        },
                    );
                    io.machine.handle_probes_done(io.clock.monotonic());
                }
                Control::TickDone(done) => {
                    log_tick(&done);
                    report = Some(done);
                }
                Control::Wait(until) => return (report.unwrap_or_default(), Next::Wait(until)),
                Control::Stop(reason) => return (report.unwrap_or_default(), Next::Stop(reason)),
                Control::Idle => {
                    // Nothing is asked and no tick is running: the machine
                    // stopped before this tick could start.
                    let reason = io
                        .machine
                        .run_report()
                        .stopped
                        .unwrap_or(StopReason::Shutdown);
                    return (report.unwrap_or_default(), Next::Stop(reason));
                }
            }
        }
    }
}

/// What follows a tick.
#[derive(Debug)]
enum Next {
    Wait(Duration),
    Stop(StopReason),
}

/// What [`Io::pump`] hands back to the tick loop.
#[derive(Debug)]
enum Control {
    /// Nothing more to do until an outcome (or nothing at all).
    Idle,
    Probe(ProbeBatch),
    TickDone(TickReport),
    Wait(Duration),
    Stop(StopReason),
}

impl Io {
    /// Make the journal agree with the restored snapshot (D6): cut it back
    /// to the length the snapshot recorded, or turn it off when the
    /// snapshot holds folds it lacks and it already has lines.
    fn reconcile_journal(&mut self) {
        let Some(journal) = &mut self.journal else {
            return;
        };
        let len = match self.restored_journal {
            RestoredJournal::Fresh => return,
            RestoredJournal::At(len) => len,
            RestoredJournal::Unrecorded => {
                if journal.flushed_len() > 0 {
                    error!(
                        journal = %journal.name(),
                        "the restored state holds probes this journal lacks (it stopped in an earlier run, or that run had no journal): appending would leave a hole, so journaling stays off; move the journal aside to start a new one"
                    );
                    self.journal = None;
                    self.machine.set_journal(false);
                }
                return;
            }
        };
        let found = journal.flushed_len();
        if found > len {
            match journal.truncate(len) {
                Ok(()) => info!(
                    journal = %journal.name(),
                    dropped_bytes = found - len,
                    "journal cut back to the restored snapshot: its last lines were of a tick the snapshot does not hold"
                ),
                Err(err) => {
                    journal_failed(journal.as_ref(), &err);
                    self.journal = None;
                    self.machine.set_journal(false);
                }
            }
        } else if found < len {
            warn!(
                journal = %journal.name(),
                found,
                recorded = len,
                "the journal is shorter than the state file recorded (replaced or truncated?); appending to it as it is"
            );
        }
    }

    /// Perform the machine's actions until it waits for an outcome, or
    /// hands back something only the tick loop can do.
    fn pump(&mut self, shutdown: &Shutdown) -> Control {
        let clock = Arc::clone(&self.clock);
        let now = || clock.monotonic();
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::List => {
                    let listing = self.store.list_running().map_err(|err| {
                        warn!(error = %err, "cannot list running records; tick skipped");
                    });
                    self.machine.handle_listing(now(), listing);
                }
                Action::Probe(batch) => return Control::Probe(batch),
                Action::Journal(input) => {
                    if let Some(journal) = &mut self.journal {
                        if let Err(err) = journal.record(&input) {
                            journal_failed(journal.as_ref(), &err);
                            self.journal = None;
                            self.machine.handle_journal_failed(now());
                        }
                    }
                }
                Action::FlushJournal => {
                    let result = match &mut self.journal {
                        Some(journal) => journal.flush().map_err(|err| {
                            journal_failed(journal.as_ref(), &err);
                        }),
                        None => Err(()),
                    };
                    if result.is_err() {
                        self.journal = None;
                    }
                    self.machine.handle_flushed(now(), result);
                }
                Action::Publish(event) => {
                    let published = self.publish(&event);
                    self.machine.handle_published(now(), published);
                }
                Action::SyncPublisher => {
                    let result = self.publisher.sync().map_err(|err| {
                        error!(
                            error = %err,
                            "cannot make the delivered events durable; they stay pending and are published again next tick"
                        );
                    });
                    self.machine.handle_synced(now(), result);
                }
                Action::Persist => {
                    let persisted = self.persist();
                    self.machine.handle_persisted(now(), persisted);
                }
                Action::Interrupt => shutdown.trigger(),
                Action::TickDone(report) => return Control::TickDone(report),
                Action::Wait { until } => return Control::Wait(until),
                Action::Stop(reason) => return Control::Stop(reason),
            }
        }
        Control::Idle
    }

    /// Hand one event to the publisher; count and log the delivery (R12).
    fn publish(&mut self, event: &HealthEvent) -> Published {
        match self.publisher.publish(event) {
            Ok(()) => {
                let event_type = event.event_type();
                self.telemetry.record_event(event_type);
                info!(
                    game_id = %event.game_id,
                    container_id = %event.container_id,
                    event_type = %event_type,
                    "probe event published"
                );
                Published::Accepted
            }
            Err(err) => {
                let closed = err.is_permanent();
                error!(
                    game_id = %event.game_id,
                    container_id = %event.container_id,
                    event_type = %event.event_type(),
                    error = %err,
                    pending = self.machine.pending_len(),
                    "cannot publish probe event; it stays pending and is retried next tick, before newer events"
                );
                if closed {
                    error!(
                        error = %err,
                        "the events output cannot be written again (closed or unusable); stopping after the probes in flight"
                    );
                    Published::Closed
                } else {
                    Published::Refused
                }
            }
        }
    }

    /// Write the snapshot the machine holds.
    fn persist(&mut self) -> Persisted {
        let Some(state) = &mut self.state else {
            return Persisted::Unchanged;
        };
        let pending: Vec<HealthEvent> = self.machine.pending().cloned().collect();
        // Every line of the folds in this snapshot was flushed before it.
        let journal_len = self.journal.as_ref().map(|journal| journal.flushed_len());
        let saved = state.save(self.machine.states(), &pending, journal_len);
        self.state_behind = saved.is_err();
        match saved {
            Ok(crate::durable::Saved::Written) => Persisted::Written,
            Ok(crate::durable::Saved::Unchanged) => Persisted::Unchanged,
            Err(err) => {
                error!(
                    error = %err,
                    "cannot persist the state; events wait (pending) until a snapshot holding them is written, tried again every tick"
                );
                Persisted::Failed
            }
        }
    }
}

fn journal_failed(journal: &dyn JournalSink, err: &std::io::Error) {
    error!(
        journal = %journal.name(),
        error = %err,
        "cannot write the journal; journaling stops for the rest of the run"
    );
}

fn log_tick(report: &TickReport) {
    info!(
        games = report.games,
        probes = report.probes,
        failed_probes = report.failed_probes,
        events = report.events,
        published = report.published,
        pending = report.pending,
        duration_ms = duration_ms(report.duration),
        interrupted = report.interrupted,
        skipped = report.skipped,
        "tick finished"
    );
    if report.pending > 0 {
        warn!(
            pending = report.pending,
            "events wait for the publisher; they are retried in order next tick"
        );
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use healthprobe_core::{EventDetails, EventType, GameState as GameStateCounters};

    use std::sync::Mutex;

    use super::*;
    use crate::adapters::{CountingTelemetry, ManualClock, MemoryPublisher, MemoryStore};
    use crate::durable::StateFile;
    use crate::ports::RuntimeRecord;
    use crate::probe::ProbeClass;
    use healthprobe_core::Timestamp;

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
    fn r11_a_worker_on_its_own_fanout_rejects_an_invalid_config_too() {
        for (config, expected) in [
            (
                WorkerConfig {
                    max_concurrency: 0,
                    ..WorkerConfig::default()
                },
                ConfigError::ZeroMaxConcurrency,
            ),
            (
                WorkerConfig {
                    recovery_threshold: 0,
                    ..WorkerConfig::default()
                },
                ConfigError::ZeroRecoveryThreshold,
            ),
        ] {
            let err = Worker::with_fanout(
                config,
                Box::new(ThreadFanout::new(Prober::new(
                    Duration::from_secs(1),
                    TlsClient::system(),
                    ConnectionPolicy::fresh(),
                ))),
                MemoryStore::new(),
                MemoryPublisher::new(),
                CountingTelemetry::new(),
                ManualClock::new(Timestamp::UNIX_EPOCH),
            )
            .expect_err("an invalid config");
            assert_eq!(err, expected);
        }
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
            RuntimeRecord::running("g2", "c2", "ftp://127.0.0.1:1/"),
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
                (ProbeClass::Tls, 0),
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
        assert!(rig.worker.io.state.is_none());
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
    fn d5_while_snapshot_writes_fail_nothing_is_published_and_the_next_good_write_releases_it() {
        let dir = scratch("write-fails");
        let path = dir.join("state.json");
        let mut rig = rig(1);
        let endpoint = rig.endpoint.clone();
        rig.store
            .set(vec![RuntimeRecord::running("g1", "c1", &endpoint)]);
        assert!(!rig.worker.state_is_saved(), "no state file yet");
        rig.worker.restore(StateFile::new(&path)).expect("fresh");
        assert!(rig.worker.state_is_saved());
        std::fs::remove_dir_all(&dir).expect("the directory goes away");
        let report = rig.worker.tick();
        assert_eq!(
            (
                report.events,
                report.published,
                report.pending,
                report.snapshot_failures
            ),
            (1, 0, 1, 1),
            "the tick's write fails: its event waits"
        );
        assert!(rig.publisher.events().is_empty());
        assert!(
            !rig.worker.state_is_saved(),
            "the file no longer holds what the worker knows"
        );
        let report = rig.worker.tick();
        assert_eq!(
            (report.published, report.pending, report.snapshot_failures),
            (0, 1, 2),
            "still failing: the catch-up write and the tick's write, nothing published"
        );
        std::fs::create_dir_all(&dir).expect("the directory comes back");
        let report = rig.worker.tick();
        assert_eq!(
            (report.published, report.pending, report.snapshot_failures),
            (1, 0, 0),
            "the catch-up write succeeds and releases the event"
        );
        assert_eq!(rig.publisher.events().len(), 1);
        assert!(rig.worker.state_is_saved());
        let snapshot = StateFile::new(&path)
            .load()
            .expect("valid")
            .expect("exists");
        assert_eq!(&snapshot.states, rig.worker.states());
        assert!(snapshot.pending.is_empty(), "the delivery is recorded");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn d6_a_journal_set_after_restore_whose_length_cannot_be_recorded_is_turned_off() {
        // Seed 204122610 of the simulation: journal set after the restore,
        // the write recording its length failed, a tick journaled, a crash:
        // the restart could not cut the journal back, and replay folded
        // that tick twice.
        let dir = scratch("journal-unrecorded");
        let state_dir = dir.join("state");
        std::fs::create_dir_all(&state_dir).expect("state dir");
        let journal = dir.join("journal.jsonl");
        let mut rig = rig(1);
        let endpoint = rig.endpoint.clone();
        rig.store
            .set(vec![RuntimeRecord::running("g1", "c1", &endpoint)]);
        rig.worker
            .restore(StateFile::new(state_dir.join("state.json")))
            .expect("fresh");
        std::fs::remove_dir_all(&state_dir).expect("the state's directory goes away");
        rig.worker
            .set_journal(crate::journal_file::JournalFile::append(&journal).expect("open"));
        let report = rig.worker.tick();
        assert_eq!(
            (report.events, report.pending),
            (1, 1),
            "probing goes on; the event waits for the state file (D5)"
        );
        assert_eq!(
            std::fs::read(&journal).expect("journal"),
            b"",
            "nothing journaled that a restart could not cut back"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    /// A journal file whose writes can be made to fail.
    #[derive(Debug)]
    struct FailingJournal {
        inner: crate::journal_file::JournalFile,
        fail: Arc<std::sync::atomic::AtomicBool>,
    }

    impl FailingJournal {
        fn check(&self) -> std::io::Result<()> {
            if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(std::io::Error::other("no space left on device"));
            }
            Ok(())
        }
    }

    impl JournalSink for FailingJournal {
        fn record(&mut self, input: &healthprobe_core::Input) -> std::io::Result<()> {
            self.check()?;
            self.inner.record(input)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            self.check()?;
            self.inner.flush()
        }

        fn flushed_len(&self) -> u64 {
            self.inner.flushed_len()
        }

        fn truncate(&mut self, len: u64) -> std::io::Result<()> {
            self.inner.truncate(len)
        }

        fn name(&self) -> String {
            self.inner.name()
        }
    }

    /// A rig whose store lists one game, `g1`, on an engine that refuses.
    fn rig_listing_g1() -> Rig {
        let rig = rig(1);
        rig.store
            .set(vec![RuntimeRecord::running("g1", "c1", &rig.endpoint)]);
        rig
    }

    #[test]
    fn d6_a_journal_that_stopped_stays_stopped_across_restarts() {
        // A journal fault, then ticks folded that the journal lacks, all
        // in snapshots; the next run must not append after that hole.
        let dir = scratch("journal-stays-stopped");
        let (state, journal) = (dir.join("state.json"), dir.join("journal.jsonl"));
        for journal_first in [true, false] {
            let _ = std::fs::remove_file(&state);
            let _ = std::fs::remove_file(&journal);
            let mut first = rig_listing_g1();
            let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
            first.worker.set_journal(FailingJournal {
                inner: crate::journal_file::JournalFile::append(&journal).expect("open"),
                fail: Arc::clone(&fail),
            });
            first.worker.restore(StateFile::new(&state)).expect("fresh");
            first.worker.tick();
            fail.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(first.worker.tick().journal_stopped);
            first.worker.tick();
            drop(first);
            let stopped = std::fs::read(&journal).expect("journal");
            assert_eq!(
                stopped.iter().filter(|&&b| b == b'\n').count(),
                2,
                "one tick"
            );

            let mut second = rig_listing_g1();
            let open = || crate::journal_file::JournalFile::append(&journal).expect("open");
            if journal_first {
                second.worker.set_journal(open());
            }
            second
                .worker
                .restore(StateFile::new(&state))
                .expect("valid");
            if !journal_first {
                second.worker.set_journal(open());
            }
            assert!(!second.worker.machine().is_journaling(), "{journal_first}");
            second.worker.tick();
            drop(second);
            assert_eq!(
                std::fs::read(&journal).expect("journal"),
                stopped,
                "nothing appended after the hole (journal set first: {journal_first})"
            );
            // And it stays so: the snapshots of the run without a journal
            // record no journal length either.
            let mut third = rig(1);
            third.worker.set_journal(open());
            third.worker.restore(StateFile::new(&state)).expect("valid");
            assert!(!third.worker.machine().is_journaling());
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn d6_a_new_journal_starts_after_a_stopped_one_is_moved_aside() {
        let dir = scratch("journal-moved-aside");
        let (state, journal) = (dir.join("state.json"), dir.join("journal.jsonl"));
        // A run with a state file and no journal: its snapshots record none.
        let mut first = rig_listing_g1();
        first.worker.restore(StateFile::new(&state)).expect("fresh");
        first.worker.tick();
        drop(first);
        // An old journal with lines: continuing it would leave a hole.
        std::fs::write(&journal, "{\"type\":\"prune\",\"running\":[]}\n").expect("old journal");
        let mut second = rig(1);
        second
            .worker
            .set_journal(crate::journal_file::JournalFile::append(&journal).expect("open"));
        second
            .worker
            .restore(StateFile::new(&state))
            .expect("valid");
        assert!(!second.worker.machine().is_journaling());
        drop(second);
        // Moved aside: a new, empty journal starts with this run.
        std::fs::remove_file(&journal).expect("moved aside");
        let mut third = rig_listing_g1();
        third
            .worker
            .set_journal(crate::journal_file::JournalFile::append(&journal).expect("open"));
        third.worker.restore(StateFile::new(&state)).expect("valid");
        assert!(third.worker.machine().is_journaling());
        third.worker.tick();
        drop(third);
        let lines = std::fs::read_to_string(&journal).expect("journal");
        assert_eq!(lines.lines().count(), 2, "{lines}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn d5_d6_a_restore_cuts_the_journal_back_to_the_ticks_its_snapshot_holds() {
        let dir = scratch("journal-cut");
        let (state, journal) = (dir.join("state.json"), dir.join("journal.jsonl"));
        let mut first = rig(1);
        let endpoint = first.endpoint.clone();
        first
            .store
            .set(vec![RuntimeRecord::running("g1", "c1", &endpoint)]);
        first.worker.restore(StateFile::new(&state)).expect("fresh");
        first
            .worker
            .set_journal(crate::journal_file::JournalFile::append(&journal).expect("open"));
        first.worker.tick();
        drop(first);
        let committed = std::fs::read(&journal).expect("journal");
        assert!(!committed.is_empty());
        // A tick journaled (and flushed) whose snapshot never made it: a
        // crash between the two, or a failed snapshot write.
        let extra = "{\"type\":\"prune\",\"running\":[\"g1\"]}\n";
        std::fs::write(&journal, [committed.as_slice(), extra.as_bytes()].concat())
            .expect("append");
        let mut second = rig(1);
        second
            .worker
            .restore(StateFile::new(&state))
            .expect("valid");
        second
            .worker
            .set_journal(crate::journal_file::JournalFile::append(&journal).expect("open"));
        assert_eq!(std::fs::read(&journal).expect("journal"), committed);
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
        let jobs = healthprobe_core::tick::probe_jobs(records.to_vec());
        let jobs: Vec<(&str, &str)> = jobs
            .iter()
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
}
