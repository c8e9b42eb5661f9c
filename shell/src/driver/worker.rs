//! The driver: performs the pure [`TickMachine`]'s actions through the ports.
//!
//! Every rule of a run — the start-up (restore, the journal cut back or
//! kept off, the first write), when a tick starts, what is probed, the
//! order of journal, fold, persist and publish, what stays pending, what a
//! refused publish does, when the run stops — is decided by
//! [`healthprobe_core::tick::TickMachine`], which does no I/O. The
//! [`Worker`] owns the ports and does only this:
//!
//! ```text
//! loop {
//!     match machine.poll_action() {
//!         LoadState          => machine.handle_loaded(now, state.load()),
//!         TruncateJournal(l) => machine.handle_truncated(now, journal.truncate(l)),
//!         List               => machine.handle_listing(now, store.list_running()),
//!         Probe(batch)       => fanout.probe_batch(batch, |probed| {
//!                                   machine.handle_outcome(now, probed…); pump() }),
//!                               machine.handle_probes_done(now),
//!         Journal(input)     => journal.record(&input) (on error: handle_journal_failed),
//!         FlushJournal       => machine.handle_flushed(now, journal.flush() → its length),
//!         Publish(event)     => machine.handle_published(now, publisher.publish(&event)),
//!         SyncPublisher      => machine.handle_synced(now, publisher.sync()),
//!         Persist{journal_len} => machine.handle_persisted(now, state.save(…, journal_len)),
//!         Interrupt          => shutdown.trigger(),
//!         TickDone(report)   => log, the status snapshot, hand it to the caller,
//!         Wait { until }     => clock.sleep_until(until), machine.start_tick(now),
//!         Stop(reason)       => return,
//!     }
//! }
//! ```
//!
//! Besides, it logs what happened (each delivery, each refusal, each
//! failed write, what the start-up restored), counts deliveries and probe
//! latencies on the [`Telemetry`] port (R12), and, with a status board
//! ([`Ports::with_status`]), records each shown game's outcome beside the
//! fold ([`StatusBook`]). The fan-outs (`crate::probing::fanout`) are the only
//! place probes run; the ports are only ever called from the thread that
//! drives the machine.

use std::sync::Arc;
use std::time::Duration;

use healthprobe_core::lease::ShardLease;
use healthprobe_core::tick::{
    Action, JournalAtStart, MachineConfig, Persisted, ProbeBatch, Published, Snapshot, TickMachine,
};
use healthprobe_core::{HealthEvent, HealthStates, Outgoing};
use tracing::{error, info, warn};

use crate::config::{ConfigError, Runtime, WorkerConfig};
use crate::driver::coordinator::Leases;
use crate::driver::ports::{
    Clock, HealthEventPublisher, JournalSink, ProbeFanout, Probed, PublishError, RuntimeRecord,
    RuntimeRecordStore, Saved, ShardStore, StateError, StateStore, Telemetry,
};
use crate::driver::shutdown::Shutdown;
use crate::probing::connections::{ConnectionPolicy, Connections};
#[cfg(feature = "async")]
use crate::probing::fanout::TaskFanout;
use crate::probing::fanout::ThreadFanout;
use crate::probing::probe::Prober;
#[cfg(feature = "async")]
use crate::probing::probe_async::AsyncProber;
use crate::status::{StatusBoard, StatusBook};
use crate::tls::TlsClient;
pub use healthprobe_core::tick::{
    ProbeClassCounts, Restored, RunReport, StopReason, TickReport, Undelivered,
};

/// The driver: runs a [`TickMachine`] over the ports.
pub struct Worker {
    config: WorkerConfig,
    fanout: Box<dyn ProbeFanout>,
    io: Io,
}

/// What a [`Worker`] performs the machine's actions through.
///
/// The record store, publisher, telemetry and clock are required; the
/// fan-out defaults to probing on threads (the system's trust store, no
/// connection reuse); a state store (D5) and a journal (D6) are optional.
pub struct Ports {
    store: Box<dyn RuntimeRecordStore>,
    publisher: Box<dyn HealthEventPublisher>,
    telemetry: Box<dyn Telemetry>,
    clock: Arc<dyn Clock>,
    fanout: Option<Box<dyn ProbeFanout>>,
    state: Option<Box<dyn StateStore>>,
    journal: Option<Box<dyn JournalSink>>,
    status: Option<Arc<StatusBoard>>,
    ha: Option<Ha>,
}

/// Failover: the lease view and where shards are kept.
#[derive(Debug)]
struct Ha {
    leases: Leases,
    shards: Box<dyn ShardStore>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports")
            .field("fanout", &self.fanout)
            .field("state", &self.state)
            .field("journal", &self.journal)
            .finish_non_exhaustive()
    }
}

impl Ports {
    /// Listing through `store`, publishing through `publisher`, counting
    /// deliveries on `telemetry`, reading time from `clock`.
    pub fn new(
        store: impl RuntimeRecordStore + 'static,
        publisher: impl HealthEventPublisher + 'static,
        telemetry: impl Telemetry + 'static,
        clock: impl Clock + 'static,
    ) -> Self {
        Self {
            store: Box::new(store),
            publisher: Box::new(publisher),
            telemetry: Box::new(telemetry),
            clock: Arc::new(clock),
            fanout: None,
            state: None,
            journal: None,
            status: None,
            ha: None,
        }
    }

    /// Show the run's status on `board` (`/status`, `/`): a snapshot of the
    /// machine's state at start and at the end of each tick.
    pub fn with_status(mut self, board: Arc<StatusBoard>) -> Self {
        self.status = Some(board);
        self
    }

    /// Probe through `fanout`: one of `crate::probing::fanout` ([`probe_fanout`]),
    /// or an embedder's or a simulation's own.
    pub fn with_fanout(mut self, fanout: Box<dyn ProbeFanout>) -> Self {
        self.fanout = Some(fanout);
        self
    }

    /// Keep the state and pending events in `state` across restarts (D5):
    /// restored at start, written back at once (the start is refused if
    /// that fails), then persisted before any event is published.
    pub fn with_state(mut self, state: impl StateStore + 'static) -> Self {
        self.state = Some(Box::new(state));
        self
    }

    /// Failover: act only on the shards `leases` holds, their state loaded
    /// from and written to `shards` under each lease's epoch, every publish
    /// fenced by it (FAILOVER.md; rules H1–H7 of the tick machine). Replaces
    /// a state store and a journal, which are then ignored.
    pub fn with_ha(mut self, leases: Leases, shards: Box<dyn ShardStore>) -> Self {
        self.ha = Some(Ha { leases, shards });
        self
    }

    /// Append every prune and outcome to `journal` (D6), flushed at the
    /// end of each tick; with a state store, reconciled with its snapshot at start.
    pub fn with_journal(mut self, journal: impl JournalSink + 'static) -> Self {
        self.journal = Some(Box::new(journal));
        self
    }
}

/// Why a [`Worker`] did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A setting is out of range, or the runtime cannot start (R11).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state store's snapshot could not be read, or the first write
    /// failed (D5); the store is left as it was.
    #[error(transparent)]
    State(#[from] StateError),
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
    ha: Option<Ha>,
    /// The status shown, when asked for.
    status: Option<StatusBook>,
    /// Whether the start-up is over (until then, a state store error is
    /// kept for the caller rather than logged).
    started: bool,
    /// The state store's error at start, returned if the machine refuses the start.
    state_error: Option<StateError>,
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
/// ([`crate::probing::connections`]) (for [`Ports::with_fanout`]; without one, a
/// worker probes on threads with [`TlsClient::system`] and the default
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
    /// A worker for `config` over `ports`, started: the config validated
    /// (R11), then the machine's start-up performed — with a state store,
    /// its snapshot restored, the journal cut back or kept off, and the
    /// snapshot written back (D5, D6).
    ///
    /// On an error nothing was probed, and the state store holds what it
    /// held (a journal longer than its snapshot recorded may be cut back).
    pub fn new(config: WorkerConfig, ports: Ports) -> Result<Self, StartError> {
        config.validate()?;
        let fanout = match ports.fanout {
            Some(fanout) => fanout,
            None => {
                let connections = ConnectionPolicy::new(
                    Connections::Auto,
                    config.interval,
                    config.max_concurrency,
                );
                probe_fanout(Runtime::Threads, &config, TlsClient::system(), connections)?
            }
        };
        let mut settings = MachineConfig::new(config.interval);
        settings.durable = ports.state.is_some();
        settings.journal = ports.journal.is_some();
        settings.tick_limit = config.tick_limit;
        settings.shard = config.shard;
        settings.fenced = ports.ha.as_ref().map(|ha| ha.leases.shards());
        let mut worker = Self {
            fanout,
            io: Io {
                machine: TickMachine::new(settings, config.policy()?),
                store: ports.store,
                publisher: ports.publisher,
                telemetry: ports.telemetry,
                clock: ports.clock,
                state: ports.state,
                journal: ports.journal,
                ha: ports.ha,
                status: None,
                started: false,
                state_error: None,
            },
            config,
        };
        if let Control::Stop(StopReason::StartRefused) = worker.io.pump(&Shutdown::new()) {
            let err = worker.io.state_error.take();
            return Err(err
                .expect("the machine refuses a start only after a failed load or write")
                .into());
        }
        worker.io.log_start();
        worker.io.status = ports.status.map(|board| {
            let runtime = worker.fanout.runtime();
            let now = worker.io.clock.now();
            StatusBook::new(board, &config, runtime, now, &worker.io.machine)
        });
        Ok(worker)
    }

    /// How this worker fans out its probes.
    pub(crate) fn runtime(&self) -> Runtime {
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
    pub fn pending(&self) -> Vec<HealthEvent> {
        self.io
            .machine
            .pending()
            .map(|out| out.event.clone())
            .collect()
    }

    /// How many events are pending (see [`Worker::pending`]).
    pub fn pending_len(&self) -> usize {
        self.io.machine.pending_len()
    }

    /// What becomes of the pending events if the run ends now (kept in the
    /// state store, or lost, and why).
    pub fn undelivered(&self) -> Undelivered {
        self.io.machine.undelivered()
    }

    /// One tick, for embedders and tests: publishes what is pending (D4),
    /// lists (R9: an error skips the tick), prunes (R8), probes each listed
    /// game once (D3, R10) and folds each outcome as it arrives, then
    /// persists and publishes as the machine says. Returns when every probe
    /// has finished; a stopped run ticks no more (an empty report).
    pub fn tick(&mut self) -> TickReport {
        self.drive_tick(&Shutdown::new()).0.unwrap_or_default()
    }

    /// Tick once per interval (R13) until `shutdown`, the configured tick
    /// limit, or a closed events output stops the run; `on_tick` sees each
    /// tick's report. [`RunReport::stopped`] says why it stopped.
    ///
    /// The first tick starts at once; a tick that overruns the interval
    /// logs a warning and the next starts right after it. Shutdown during a
    /// tick starts no new probe and waits for those in flight.
    pub fn run(&mut self, shutdown: &Shutdown, mut on_tick: impl FnMut(&TickReport)) -> RunReport {
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
        if shutdown.is_triggered() {
            self.io.machine.handle_shutdown();
        }
        loop {
            let (report, next) = self.drive_tick(shutdown);
            if let Some(report) = report {
                on_tick(&report);
            }
            match next {
                Next::Stop => break,
                Next::Wait(until) => {
                    if shutdown.is_triggered() || self.io.clock.sleep_until(until, shutdown) {
                        self.io.machine.handle_shutdown();
                    }
                }
            }
        }
        let run = self.io.machine.run_report();
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

    /// Drive one tick of the machine to its end; its report (none if the
    /// run stopped before it began) and what comes next.
    fn drive_tick(&mut self, shutdown: &Shutdown) -> (Option<TickReport>, Next) {
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
                            io.fold(batch.jobs().get(probed.job), probed);
                            // Journal lines and (without a state file)
                            // deliveries, between probes.
                            let control = io.pump(shutdown);
                            debug_assert!(matches!(control, Control::Idle), "{control:?}");
                        },
                    );
                    io.machine.handle_probes_done(io.clock.monotonic());
                }
                Control::TickDone(done) => {
                    log_tick(&done, self.config.interval);
                    if let Some(ha) = &io.ha {
                        ha.leases.progress();
                    }
                    if let Some(status) = &mut io.status {
                        status.tick_done(&io.machine, &done, io.clock.now());
                    }
                    report = Some(done);
                }
                Control::Wait(until) => return (report, Next::Wait(until)),
                // Or nothing asked and no tick running: the run is over.
                Control::Stop(_) | Control::Idle => return (report, Next::Stop),
            }
        }
    }
}

/// What follows a tick.
#[derive(Debug)]
enum Next {
    Wait(Duration),
    Stop,
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
    /// Fold one probe's result (of `record`, the job's): count it, hand it
    /// to the machine, and record it for the status.
    fn fold(&mut self, record: Option<&RuntimeRecord>, probed: Probed) {
        self.telemetry.record_probe(probed.class, probed.latency);
        let shown = match (&self.status, record) {
            (Some(status), Some(record)) => status
                .outcome(&record.game_id, &probed)
                .map(|outcome| (record, outcome)),
            _ => None,
        };
        self.machine.handle_outcome(
            self.clock.monotonic(),
            probed.job,
            probed.observed_at,
            probed.result,
            probed.class,
        );
        if let (Some(status), Some((record, outcome))) = (&mut self.status, shown) {
            status.record(record, outcome, self.machine.states());
        }
    }

    /// Perform the machine's actions until it waits for an outcome, or
    /// hands back something only the tick loop can do.
    fn pump(&mut self, shutdown: &Shutdown) -> Control {
        let clock = Arc::clone(&self.clock);
        let now = || clock.monotonic();
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::LoadState => {
                    let loaded = match &mut self.state {
                        Some(state) => state.load().map_err(|err| self.state_error = Some(err)),
                        None => Ok(None),
                    };
                    self.machine.handle_loaded(now(), loaded);
                }
                Action::TruncateJournal(len) => {
                    let result = match &mut self.journal {
                        Some(journal) => journal
                            .truncate(len)
                            .map_err(|err| journal_failed(journal.as_ref(), &err)),
                        None => Err(()),
                    };
                    self.machine.handle_truncated(now(), result);
                }
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
                            self.machine.handle_journal_failed(now());
                        }
                    }
                }
                Action::FlushJournal => {
                    let result = match &mut self.journal {
                        Some(journal) => journal
                            .flush()
                            .map(|()| journal.flushed_len())
                            .map_err(|err| journal_failed(journal.as_ref(), &err)),
                        None => Err(()),
                    };
                    self.machine.handle_flushed(now(), result);
                }
                Action::Publish(event) => {
                    let lease = self.machine.lease_of(&event.event.game_id);
                    let published = self.publish(&event, lease);
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
                Action::Persist { journal_len } => {
                    let persisted = self.persist(journal_len);
                    self.machine.handle_persisted(now(), persisted);
                }
                Action::Interrupt => shutdown.trigger(),
                Action::Lease => {
                    let view = self.ha().leases.view();
                    self.machine.handle_lease(now(), &view);
                }
                Action::Load(leases) => {
                    let loaded = self.load_shards(&leases);
                    self.machine.handle_loaded_shards(now(), loaded);
                }
                Action::Write(leases) => {
                    let snapshots = leases
                        .iter()
                        .map(|lease| (*lease, self.machine.shard_snapshot(lease.shard)))
                        .collect::<Vec<_>>();
                    let written = self.ha_mut().shards.write(&snapshots);
                    self.machine.handle_written(now(), &written);
                }
                Action::Release(leases) => self.ha().leases.release(leases),
                Action::TickDone(report) => return Control::TickDone(report),
                Action::Wait { until } => return Control::Wait(until),
                Action::Stop(reason) => return Control::Stop(reason),
            }
        }
        Control::Idle
    }

    /// Failover's ports (the machine asks for them only in HA mode).
    fn ha(&self) -> &Ha {
        self.ha
            .as_ref()
            .expect("HA actions come only with Ports::with_ha")
    }

    fn ha_mut(&mut self) -> &mut Ha {
        self.ha
            .as_mut()
            .expect("HA actions come only with Ports::with_ha")
    }

    /// Read these shards' snapshots; log what could not be read.
    fn load_shards(
        &mut self,
        leases: &[ShardLease],
    ) -> Vec<(ShardLease, Result<Option<Snapshot>, ()>)> {
        let loaded = self.ha_mut().shards.load(leases);
        // Raise the loaded shards' fences in the stream before anything of
        // them is published; on the first failure leave the rest to their
        // first publish (one bound spent, not one per shard).
        let mut raising = true;
        for (lease, snapshot) in &loaded {
            match snapshot {
                Ok(snapshot) => {
                    let (games, pending) = snapshot
                        .as_ref()
                        .map_or((0, 0), |s| (s.states.len(), s.pending.len()));
                    info!(
                        shard = lease.shard,
                        epoch = lease.epoch,
                        games,
                        pending,
                        "shard loaded"
                    );
                    if raising && let Err(err) = self.publisher.raise_fence(*lease) {
                        warn!(error = %err, "cannot raise the loaded shards' fences in the stream; their first publishes will");
                        raising = false;
                    }
                }
                Err(reason) => warn!(
                    shard = lease.shard,
                    epoch = lease.epoch,
                    %reason,
                    "cannot load the shard's state; tried again next tick"
                ),
            }
        }
        loaded
            .into_iter()
            .map(|(lease, snapshot)| (lease, snapshot.map_err(drop)))
            .collect()
    }

    /// Hand one event to the publisher (fenced by its shard's lease with
    /// failover); count and log the delivery (R12).
    fn publish(&mut self, outgoing: &Outgoing, lease: Option<ShardLease>) -> Published {
        let event = &outgoing.event;
        let result = match lease {
            Some(lease) => self.publisher.publish_fenced(outgoing, lease),
            None => self.publisher.publish(outgoing),
        };
        if let Err(err @ PublishError::Fenced { .. }) = &result {
            warn!(game_id = %event.game_id, error = %err, "publish fenced: the shard is another instance's now; dropping it");
            return Published::Fenced;
        }
        match result {
            Ok(()) => {
                let event_type = event.event_type();
                self.telemetry.record_event(event_type);
                info!(
                    event_id = %outgoing.id,
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

    /// Write the machine's snapshot, recording `journal_len`.
    fn persist(&mut self, journal_len: Option<u64>) -> Persisted {
        let Some(state) = &mut self.state else {
            return Persisted::Failed;
        };
        let pending: Vec<Outgoing> = self.machine.pending().cloned().collect();
        match state.save(self.machine.states(), &pending, journal_len) {
            Ok(Saved::Written) => Persisted::Written,
            Ok(Saved::Unchanged) => Persisted::Unchanged,
            Err(err) if !self.started => {
                self.state_error = Some(err);
                Persisted::Failed
            }
            Err(err) => {
                error!(
                    error = %err,
                    "cannot persist the state; events wait (pending) until a snapshot holding them is written, tried again every tick"
                );
                Persisted::Failed
            }
        }
    }

    /// Log what the start-up restored and did with the journal.
    fn log_start(&mut self) {
        self.started = true;
        let Some(restored) = self.machine.restored() else {
            return;
        };
        let state_file = self.state.as_ref().map(|state| state.name());
        let state_file = state_file.unwrap_or_default();
        if let Some(previous) = restored.replaced_policy {
            let configured = self.machine.states().policy();
            info!(
                state_file,
                snapshot_failures_threshold = previous.failures_threshold(),
                snapshot_recovery_threshold = previous.recovery_threshold(),
                failures_threshold = configured.failures_threshold(),
                recovery_threshold = configured.recovery_threshold(),
                "the configured policy replaces the snapshot's"
            );
        }
        if restored.existed {
            info!(
                state_file,
                games = restored.games,
                pending = restored.pending,
                "state restored"
            );
        } else {
            info!(state_file, "no state file yet; starting fresh");
        }
        let journal = self.journal.as_ref().map(|journal| journal.name());
        let journal = journal.unwrap_or_default();
        match restored.journal {
            JournalAtStart::CutBack { from, to } => info!(
                journal,
                dropped_bytes = from - to,
                "journal cut back to the restored snapshot: its last lines were of a tick the snapshot does not hold"
            ),
            JournalAtStart::Shorter { found, recorded } => warn!(
                journal,
                found,
                recorded,
                "the journal is shorter than the state file recorded (replaced or truncated?); appending to it as it is"
            ),
            JournalAtStart::KeptOff => error!(
                journal,
                "the restored state holds probes this journal lacks (it stopped in an earlier run, or that run had no journal): appending would leave a hole, so journaling stays off; move the journal aside to start a new one"
            ),
            JournalAtStart::NoJournal
            | JournalAtStart::Continued { .. }
            | JournalAtStart::Failed => {}
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

fn log_tick(report: &TickReport, interval: Duration) {
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
    if report.overran {
        warn!(
            duration_ms = duration_ms(report.duration),
            interval_ms = duration_ms(interval),
            "tick overran the interval; the next tick starts now"
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

    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::adapters::{CountingTelemetry, ManualClock, MemoryPublisher, MemoryStore};
    use crate::driver::ports::RuntimeRecord;
    use crate::durability::durable::StateFile;
    use crate::durability::journal_file::JournalFile;
    use crate::probing::probe::ProbeClass;
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
        rig_with(failures_threshold, |ports| ports).expect("valid config")
    }

    /// A rig whose ports are completed by `ports` (a state file, a journal).
    fn rig_with(
        failures_threshold: u32,
        ports: impl FnOnce(Ports) -> Ports,
    ) -> Result<Rig, StartError> {
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
            ports(Ports::new(
                store.clone(),
                publisher.clone(),
                telemetry.clone(),
                clock,
            )),
        )?;
        Ok(Rig {
            worker,
            store,
            publisher,
            telemetry,
            endpoint: refused_endpoint(),
        })
    }

    /// [`rig_with`] a state file at `path`.
    fn rig_with_state(failures_threshold: u32, path: &std::path::Path) -> Rig {
        rig_with(failures_threshold, |ports| {
            ports.with_state(StateFile::new(path))
        })
        .expect("the state file restores")
    }

    #[test]
    fn a_worker_and_its_handles_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send::<Worker>();
        assert_send_sync::<Shutdown>();
        assert_send_sync::<Prober>();
    }

    fn memory_ports() -> Ports {
        Ports::new(
            MemoryStore::new(),
            MemoryPublisher::new(),
            CountingTelemetry::new(),
            ManualClock::new(Timestamp::UNIX_EPOCH),
        )
    }

    #[test]
    fn the_async_runtime_is_refused_only_without_the_feature() {
        let config = WorkerConfig::default();
        let fanout = probe_fanout(
            Runtime::Async,
            &config,
            TlsClient::system(),
            ConnectionPolicy::fresh(),
        );
        let worker = fanout.map(|fanout| Worker::new(config, memory_ports().with_fanout(fanout)));
        if cfg!(feature = "async") {
            let worker = worker.expect("async built in").expect("valid config");
            assert_eq!(worker.runtime(), Runtime::Async);
        } else {
            let err = worker.expect_err("async not built in");
            assert_eq!(err, ConfigError::AsyncUnavailable);
        }
    }

    #[test]
    fn r11_new_rejects_an_invalid_config() {
        let config = WorkerConfig {
            max_concurrency: 0,
            ..WorkerConfig::default()
        };
        let err = Worker::new(config, memory_ports()).expect_err("zero concurrency");
        assert!(
            matches!(err, StartError::Config(ConfigError::ZeroMaxConcurrency)),
            "{err:?}"
        );
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
            let fanout = Box::new(ThreadFanout::new(Prober::new(
                Duration::from_secs(1),
                TlsClient::system(),
                ConnectionPolicy::fresh(),
            )));
            let err = Worker::new(config, memory_ports().with_fanout(fanout))
                .expect_err("an invalid config");
            assert!(
                matches!(&err, StartError::Config(got) if *got == expected),
                "{err:?}"
            );
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
        fn publish(&mut self, event: &Outgoing) -> Result<(), crate::driver::ports::PublishError> {
            let snapshot = StateFile::new(&self.path)
                .load()
                .expect("a valid state file")
                .expect("written before any publish");
            if !snapshot.pending.contains(event) {
                self.unpersisted
                    .lock()
                    .expect("test lock")
                    .push(event.event.clone());
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
        let ports = Ports::new(
            store.clone(),
            SnapshotFirst {
                inner: publisher.clone(),
                path: path.clone(),
                unpersisted: Arc::clone(&unpersisted),
            },
            CountingTelemetry::new(),
            ManualClock::new(Timestamp::from_second(1_800_000_000).expect("valid")),
        )
        .with_state(StateFile::new(&path));
        let mut worker = Worker::new(config, ports).expect("a fresh start");
        assert_eq!(worker.machine().restored().map(|r| r.existed), Some(false));
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
    fn d5_a_bad_state_file_refuses_the_start_and_is_left_as_it_was() {
        let dir = scratch("refuse");
        let path = dir.join("state.json");
        for text in ["", "{\"version\":1,", "{\"version\":9}"] {
            std::fs::write(&path, text).expect("seed");
            let started = rig_with(1, |ports| ports.with_state(StateFile::new(&path)));
            let Err(StartError::State(err)) = started else {
                panic!("a bad file must refuse the start");
            };
            assert!(err.is_bad_contents(), "{err}");
            assert!(err.to_string().starts_with(&path.display().to_string()));
            assert_eq!(std::fs::read_to_string(&path).expect("kept"), text);
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn d5_an_unwritable_state_file_refuses_the_start() {
        let dir = scratch("unwritable");
        let path = dir.join("missing-directory").join("state.json");
        let started = rig_with(1, |ports| ports.with_state(StateFile::new(&path)));
        let Err(StartError::State(err)) = started else {
            panic!("a state file that cannot be written must refuse the start");
        };
        assert!(!err.is_bad_contents(), "{err}");
        assert!(err.to_string().contains("missing-directory"), "{err}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn d5_restore_brings_back_counters_and_pending_under_the_configured_policy() {
        let dir = scratch("restore");
        let path = dir.join("state.json");
        let mut before = rig_with_state(3, &path);
        let endpoint = before.endpoint.clone();
        before
            .store
            .set(vec![RuntimeRecord::running("g1", "c1", &endpoint)]);
        before.publisher.fail(true);
        for _ in 0..3 {
            before.worker.tick();
        }
        assert_eq!(before.worker.pending().len(), 1);
        let pending = before.worker.pending().to_vec();
        drop(before);

        let mut after = rig_with_state(5, &path);
        after
            .store
            .set(vec![RuntimeRecord::running("g1", "c1", &endpoint)]);
        let restored = after.worker.machine().restored().expect("restored");
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
        let mut rig = rig_with_state(1, &path);
        let endpoint = rig.endpoint.clone();
        rig.store
            .set(vec![RuntimeRecord::running("g1", "c1", &endpoint)]);
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
        assert_eq!(
            rig.worker.undelivered(),
            Undelivered::LostLastWriteFailed(1),
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
        assert_eq!(rig.worker.undelivered(), Undelivered::Nothing);
        let snapshot = StateFile::new(&path)
            .load()
            .expect("valid")
            .expect("exists");
        assert_eq!(&snapshot.states, rig.worker.states());
        assert!(snapshot.pending.is_empty(), "the delivery is recorded");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    /// A journal file whose writes can be made to fail.
    #[derive(Debug)]
    struct FailingJournal {
        inner: JournalFile,
        fail: Arc<AtomicBool>,
    }

    impl JournalSink for FailingJournal {
        fn record(&mut self, input: &healthprobe_core::Input) -> std::io::Result<()> {
            if self.fail.load(Ordering::Relaxed) {
                return Err(std::io::Error::other("no space left on device"));
            }
            self.inner.record(input)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            if self.fail.load(Ordering::Relaxed) {
                return Err(std::io::Error::other("no space left on device"));
            }
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

    /// A rig with a state file and a journal, listing one game, `g1`, on an engine that refuses.
    fn rig_journaled(state: &std::path::Path, journal: impl JournalSink + 'static) -> Rig {
        let rig = rig_with(1, |ports| {
            ports
                .with_state(StateFile::new(state))
                .with_journal(journal)
        })
        .expect("the state file restores");
        rig.store
            .set(vec![RuntimeRecord::running("g1", "c1", &rig.endpoint)]);
        rig
    }

    fn open_journal(path: &std::path::Path) -> JournalFile {
        JournalFile::append(path).expect("open the journal")
    }

    #[test]
    fn d6_a_journal_that_stopped_stays_stopped_across_restarts() {
        // A journal fault, then ticks folded that the journal lacks, all
        // in snapshots; the next run must not append after that hole.
        let dir = scratch("journal-stays-stopped");
        let (state, journal) = (dir.join("state.json"), dir.join("journal.jsonl"));
        let fail = Arc::new(AtomicBool::new(false));
        let mut first = rig_journaled(
            &state,
            FailingJournal {
                inner: open_journal(&journal),
                fail: Arc::clone(&fail),
            },
        );
        first.worker.tick();
        fail.store(true, Ordering::Relaxed);
        assert!(first.worker.tick().journal_stopped);
        first.worker.tick();
        drop(first);
        let stopped = std::fs::read(&journal).expect("journal");
        assert_eq!(
            stopped.iter().filter(|&&b| b == b'\n').count(),
            2,
            "one tick"
        );

        let mut second = rig_journaled(&state, open_journal(&journal));
        assert!(!second.worker.machine().is_journaling());
        second.worker.tick();
        drop(second);
        assert_eq!(
            std::fs::read(&journal).expect("journal"),
            stopped,
            "nothing appended after the hole"
        );
        // And it stays so: the snapshots of the run without a journal
        // record no journal length either.
        let third = rig_journaled(&state, open_journal(&journal));
        assert!(!third.worker.machine().is_journaling());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn d6_a_new_journal_starts_after_a_stopped_one_is_moved_aside() {
        let dir = scratch("journal-moved-aside");
        let (state, journal) = (dir.join("state.json"), dir.join("journal.jsonl"));
        // A run with a state file and no journal: its snapshots record none.
        let mut first = rig_with_state(1, &state);
        first
            .store
            .set(vec![RuntimeRecord::running("g1", "c1", &first.endpoint)]);
        first.worker.tick();
        drop(first);
        // An old journal with lines: continuing it would leave a hole.
        std::fs::write(&journal, "{\"type\":\"prune\",\"running\":[]}\n").expect("old journal");
        let second = rig_journaled(&state, open_journal(&journal));
        assert!(!second.worker.machine().is_journaling());
        drop(second);
        // Moved aside: a new, empty journal starts with this run.
        std::fs::remove_file(&journal).expect("moved aside");
        let mut third = rig_journaled(&state, open_journal(&journal));
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
        let mut first = rig_journaled(&state, open_journal(&journal));
        first.worker.tick();
        drop(first);
        let committed = std::fs::read(&journal).expect("journal");
        assert!(!committed.is_empty());
        // A tick journaled (and flushed) whose snapshot never made it: a
        // crash between the two, or a failed snapshot write.
        let extra = "{\"type\":\"prune\",\"running\":[\"g1\"]}\n";
        std::fs::write(&journal, [committed.as_slice(), extra.as_bytes()].concat())
            .expect("append");
        let second = rig_journaled(&state, open_journal(&journal));
        assert_eq!(std::fs::read(&journal).expect("journal"), committed);
        assert_eq!(
            second.worker.machine().restored().map(|r| r.journal),
            Some(JournalAtStart::CutBack {
                from: (committed.len() + extra.len()) as u64,
                to: committed.len() as u64
            })
        );
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
            let ports = Ports::new(
                store,
                publisher.clone(),
                CountingTelemetry::new(),
                crate::driver::ports::SystemClock,
            );
            let mut worker = Worker::new(config, ports).expect("valid config");
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

    /// A store that triggers `shutdown` when it lists, as a signal during a tick would.
    struct ShutdownOnList {
        inner: MemoryStore,
        shutdown: Shutdown,
    }

    impl RuntimeRecordStore for ShutdownOnList {
        fn list_running(&mut self) -> Result<Vec<RuntimeRecord>, crate::driver::ports::ListError> {
            self.shutdown.trigger();
            self.inner.list_running()
        }
    }

    #[test]
    fn r13_a_shutdown_during_a_tick_starts_no_probe_and_stops_the_run_after_it() {
        let store =
            MemoryStore::with_records(vec![RuntimeRecord::running("g1", "c1", refused_endpoint())]);
        let shutdown = Shutdown::new();
        let ports = Ports::new(
            ShutdownOnList {
                inner: store,
                shutdown: shutdown.clone(),
            },
            MemoryPublisher::new(),
            CountingTelemetry::new(),
            ManualClock::new(Timestamp::UNIX_EPOCH),
        );
        let mut worker = Worker::new(WorkerConfig::default(), ports).expect("valid config");
        let mut ticks = Vec::new();
        let run = worker.run(&shutdown, |tick| ticks.push(tick.clone()));
        assert_eq!((run.ticks, run.stopped), (1, Some(StopReason::Shutdown)));
        assert!(ticks[0].interrupted);
        assert_eq!((ticks[0].games, ticks[0].probes), (1, 0));
        // Triggered before the run: no tick at all.
        let run = worker.run(&shutdown, |_| panic!("no tick"));
        assert_eq!(run.ticks, 1, "the run's totals so far");
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
