//! The simulated world a worker runs in: its ports, their faults, the
//! process's crashes and graceful shutdowns, and a log of everything the
//! world observed.
//!
//! Time is virtual and never rewinds: probes take their latency, sleeps
//! move the clock to their deadline, a restart takes a delay drawn from the
//! scenario. A crash happens at a port call: what the process made durable
//! (a snapshot renamed in place, flushed journal bytes, events the output
//! holds) survives, nothing else does. The worker object keeps running
//! after it "died" until its run returns; every port then answers as a dead
//! process's would, and the world records nothing of it.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use healthprobe_core::Timestamp;
use healthprobe_core::tick::ProbeBatch;
use healthprobe_core::{
    EventType, HealthEvent, HealthStates, Input, Outgoing, Policy, ProbeResult, RuntimeRecord,
};
use healthprobe_shell::Shutdown;
use healthprobe_shell::codec::journal::write_input;
use healthprobe_shell::codec::snapshot::{encode_snapshot_with_journal, parse_snapshot};
use healthprobe_shell::config::Runtime;
use healthprobe_shell::driver::ports::{
    Clock, HealthEventPublisher, JournalSink, ListError, ProbeFanout, Probed, PublishError,
    RuntimeRecordStore, StateStore, Telemetry,
};
use healthprobe_shell::driver::ports::{Saved, Snapshot, StateError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::{Scenario, game_index, wall};

/// Ticks that must end after the faults stop before the run ends; the first
/// may have begun with faults, the others have none.
const DRAIN_TICKS: u32 = 4;
/// A crash or a shutdown comes at one of a life's first this-many port calls.
const CALLS_BEFORE_AN_END: u64 = 200;

/// An event's identity: events of one game have distinct `occurred_at`s.
pub type EventKey = (String, EventType, Timestamp);

pub fn key(event: &HealthEvent) -> EventKey {
    (event.game_id.clone(), event.event_type(), event.occurred_at)
}

/// One thing the world observed.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The process life it happened in.
    pub life: usize,
    /// Virtual time.
    pub at: Duration,
    pub what: What,
}

#[derive(Debug, Clone)]
pub enum What {
    LifeStarted {
        journal_bytes: usize,
    },
    /// A listing handed to the worker (its prune is folded).
    Listed {
        records: Vec<RuntimeRecord>,
    },
    ListFailed,
    BatchStarted {
        jobs: usize,
        max_concurrency: usize,
    },
    ProbeStarted {
        game_id: String,
        container_id: String,
    },
    /// A probe finished and its result was handed to the worker's fold.
    ProbeFolded {
        game_id: String,
        container_id: String,
        started: Duration,
        result: ProbeResult,
    },
    BatchEnded,
    /// A publish call; `id` indexes [`World::publishes`].
    Publish {
        id: usize,
        event: String,
        fate: PublishFate,
    },
    Synced {
        ok: bool,
        landed: usize,
    },
    Saved {
        committed: bool,
        pending: usize,
    },
    JournalFailed {
        during: &'static str,
    },
    JournalFlushed {
        bytes: usize,
    },
    JournalCutBack {
        bytes: usize,
    },
    LoadFailed,
    ShutdownTriggered {
        during: &'static str,
    },
    TickDone,
    Crashed {
        during: &'static str,
    },
    Ended {
        how: End,
    },
}

/// How a process life ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Crashed,
    /// Its restore failed (the state file could not be written): it never ran.
    StartRefused,
    /// Its run returned (a shutdown, or a closed output).
    Stopped,
}

/// What a publish call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishFate {
    Accepted,
    Refused,
    /// Delivered, but the reply was lost: the worker saw an error.
    ReplyLost,
    /// The output is closed for good (the run stops).
    Closed,
    /// The process died during the call (delivered or not).
    Died,
}

/// One publish call the world saw.
#[derive(Debug, Clone)]
pub struct PublishCall {
    pub life: usize,
    pub event: HealthEvent,
    /// The id it was published with.
    pub id: String,
    pub fate: PublishFate,
    /// Why a copy of this call may not be a repeat (`Err`): the event's
    /// delivery was not in doubt when the worker sent it again.
    pub repeat: Result<(), String>,
}

/// What the world knows of one event's deliveries.
#[derive(Debug, Clone, Default)]
pub struct Deliveries {
    /// Copies the output holds.
    pub copies: u32,
    /// The publisher accepted it in this life, and no failed sync has put it back since.
    accepted_life: Option<usize>,
    /// Its delivery was synced and then recorded by a snapshot (or, without
    /// a state file, synced): the worker knows it is delivered.
    recorded: bool,
}

/// A committed snapshot: the folds it holds are its life's first `inputs`
/// inputs on top of what that life restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    pub life: usize,
    pub inputs: usize,
}

/// One process life.
#[derive(Debug, Clone, Default)]
pub struct Life {
    /// The policy it was configured with.
    pub policy: Policy,
    /// The snapshot it restored (none without a state file, or none yet).
    pub base: Option<Commit>,
    /// Log indices of what it folded, in order: listings and probe results.
    pub inputs: Vec<usize>,
    /// Deliveries counted on its telemetry, and publish calls it had
    /// accepted, by event type (R12).
    pub telemetry: [u64; 2],
    pub accepted: [u64; 2],
    /// The journal's length when it started (after a torn tail was cut).
    pub journal_start: usize,
    /// Its inputs the journal held after its last successful flush.
    pub flushed_inputs: usize,
    /// Log index of the shutdown trigger, if one came.
    pub shutdown_entry: Option<usize>,
    pub end: Option<End>,
}

/// Counts over a scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub crashes: u64,
    pub shutdowns: u64,
    pub closed_outputs: u64,
    pub refused_starts: u64,
    pub faults: u64,
    pub journal_faults: u64,
    pub probes: u64,
    pub batches: u64,
    /// Batches with more jobs than the cap whose peak in flight reached it.
    pub capped_batches: u64,
    /// Failed snapshot writes with events pending (which D5 then holds back).
    pub held_by_failed_writes: u64,
}

/// Everything outside the simulated process.
#[derive(Debug)]
pub struct World {
    pub scenario: Scenario,
    rng: ChaCha8Rng,
    /// Virtual monotonic time.
    pub mono: Duration,
    pub log: Vec<Entry>,
    pub lives: Vec<Life>,
    alive: bool,
    calls: u64,
    crash_at: Option<u64>,
    shutdown_at: Option<u64>,
    shutdown: Shutdown,
    /// Durable: the state file's bytes, the snapshot they hold, its pending events.
    snapshot: Option<Vec<u8>>,
    pub commit: Option<Commit>,
    committed_pending: Vec<Outgoing>,
    /// A snapshot write failed and none has succeeded since.
    behind: bool,
    /// Durable: the journal's bytes; its length after the last good flush;
    /// the lines recorded since.
    pub journal: Vec<u8>,
    journal_flushed: u64,
    journal_buffer: Vec<u8>,
    /// Whether a fault stopped the journal, or a journal attached after a
    /// restore could not have its length recorded (it is then off).
    pub journal_interrupted: bool,
    /// Snapshot writes that failed (not counting a dead process's).
    pub failed_saves: u64,
    /// Publish calls the output accepted (or took despite an error) and not yet synced.
    unsynced: Vec<usize>,
    pub publishes: Vec<PublishCall>,
    pub deliveries: HashMap<EventKey, Deliveries>,
    /// Per game, the events in the order their first copies reached the output.
    pub first_delivered: HashMap<String, Vec<usize>>,
    /// Copies beyond an event's first, by publish call.
    pub repeats: Vec<usize>,
    synced_unrecorded: Vec<EventKey>,
    pub violations: Vec<String>,
    pub stats: Stats,
    drain_ticks: u32,
    pub finished: bool,
}

/// What a port call finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Alive,
    /// The process dies during this call.
    DiesNow,
    Dead,
}

impl World {
    pub fn new(scenario: Scenario) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(scenario.seed.wrapping_add(1)),
            scenario,
            mono: Duration::ZERO,
            log: Vec::new(),
            lives: Vec::new(),
            alive: false,
            calls: 0,
            crash_at: None,
            shutdown_at: None,
            shutdown: Shutdown::new(),
            snapshot: None,
            commit: None,
            committed_pending: Vec::new(),
            behind: false,
            journal: Vec::new(),
            journal_flushed: 0,
            journal_buffer: Vec::new(),
            journal_interrupted: false,
            failed_saves: 0,
            unsynced: Vec::new(),
            publishes: Vec::new(),
            deliveries: HashMap::new(),
            first_delivered: HashMap::new(),
            repeats: Vec::new(),
            synced_unrecorded: Vec::new(),
            violations: Vec::new(),
            stats: Stats::default(),
            drain_ticks: 0,
            finished: false,
        }
    }

    pub fn alive(&self) -> bool {
        self.alive
    }

    fn life(&self) -> usize {
        self.lives.len() - 1
    }

    fn current(&mut self) -> &mut Life {
        self.lives.last_mut().expect("a life")
    }

    fn record(&mut self, what: What) -> usize {
        let entry = Entry {
            life: self.lives.len().saturating_sub(1),
            at: self.mono,
            what,
        };
        self.log.push(entry);
        self.log.len() - 1
    }

    /// A rule broken, as found while the scenario runs.
    pub fn violate(&mut self, text: String) {
        let at = self.log.len();
        self.violations.push(format!(
            "{text} (life {}, {:?}, log #{at})",
            self.life(),
            self.mono
        ));
    }

    fn faults_on(&self) -> bool {
        self.mono < self.scenario.faults_end
    }

    /// Whether a fault strikes now, at the scenario's per-mille `rate` for this port.
    fn fault(&mut self, rate: fn(&Scenario) -> u32) -> bool {
        let rate = rate(&self.scenario);
        let strikes = self.faults_on() && rate > 0 && self.rng.random_range(0..1000) < rate;
        self.stats.faults += u64::from(strikes);
        strikes
    }

    /// A port call: the process may die in it, or be asked to shut down.
    pub fn call(&mut self, during: &'static str) -> Fate {
        if !self.alive {
            return Fate::Dead;
        }
        self.calls += 1;
        if self.faults_on() {
            if self.crash_at == Some(self.calls) {
                self.crash(during);
                return Fate::DiesNow;
            }
            if self.shutdown_at == Some(self.calls) {
                self.trigger_shutdown(during);
                self.stats.shutdowns += 1;
            }
        }
        Fate::Alive
    }

    fn trigger_shutdown(&mut self, during: &'static str) {
        if self.shutdown.is_triggered() {
            return;
        }
        self.shutdown.trigger();
        let entry = self.record(What::ShutdownTriggered { during });
        self.current().shutdown_entry = Some(entry);
    }

    fn crash(&mut self, during: &'static str) {
        self.alive = false;
        self.stats.crashes += 1;
        self.record(What::Crashed { during });
        // The process is gone: let the worker object wind down.
        self.shutdown.trigger();
    }

    /// A new process starts with `shutdown` as its stop signal.
    pub fn start_life(&mut self, shutdown: Shutdown) {
        self.alive = true;
        self.calls = 0;
        self.shutdown = shutdown;
        // What JournalFile::append does at open: cut a torn tail.
        let whole = self
            .journal
            .iter()
            .rposition(|&byte| byte == b'\n')
            .map_or(0, |last| last + 1);
        self.journal.truncate(whole);
        self.journal_flushed = whole as u64;
        self.journal_buffer.clear();
        let ends = |rng: &mut ChaCha8Rng, rate: u32| {
            (rng.random_range(0..1000) < rate).then(|| rng.random_range(1..=CALLS_BEFORE_AN_END))
        };
        self.crash_at = ends(&mut self.rng, self.scenario.crash);
        self.shutdown_at = ends(&mut self.rng, self.scenario.shutdown);
        let base = if self.scenario.durable {
            self.commit
        } else {
            None
        };
        self.lives.push(Life {
            policy: self.scenario.policy_at(self.mono),
            base,
            journal_start: whole,
            ..Life::default()
        });
        self.record(What::LifeStarted {
            journal_bytes: whole,
        });
    }

    /// The life ends (`how`); then the restart takes its delay.
    pub fn end_life(&mut self, how: End) {
        self.alive = false;
        self.record(What::Ended { how });
        self.behind = false;
        self.synced_unrecorded.clear();
        // A process that stopped must have synced what it saw accepted.
        let accepted: Vec<usize> = self
            .unsynced
            .iter()
            .copied()
            .filter(|&id| self.publishes[id].fate == PublishFate::Accepted)
            .collect();
        if how == End::Stopped && !accepted.is_empty() {
            self.violate(format!(
                "{} event(s) accepted but never synced when the process stopped: {}",
                accepted.len(),
                describe_calls(&self.publishes, &accepted)
            ));
        }
        // Written, never synced (a crash, or a lost reply the worker never
        // saw accepted): the output keeps some of it, in order.
        self.settle_unsynced();
        let life = self.current();
        let (telemetry, accepted) = (life.telemetry, life.accepted);
        if telemetry != accepted {
            self.violate(format!(
                "R12: telemetry counted {telemetry:?} deliveries (failed, recovered) in this life, the publisher accepted {accepted:?}"
            ));
        }
        match how {
            End::Crashed => {}
            End::StartRefused => self.stats.refused_starts += 1,
            End::Stopped => {}
        }
        let delay = self.scenario.max_restart_delay.as_millis() as u64;
        self.mono += Duration::from_millis(self.rng.random_range(0..=delay));
    }

    /// A tick ended (the worker's per-tick callback); after the drain, stop.
    pub fn tick_done(&mut self) {
        if !self.alive {
            return;
        }
        self.record(What::TickDone);
        if self.mono >= self.scenario.faults_end {
            self.drain_ticks += 1;
            if self.drain_ticks >= DRAIN_TICKS {
                self.finished = true;
                self.trigger_shutdown("the end of the run");
            }
        }
    }

    /// Whether the last snapshot write failed (the state file is behind).
    pub fn behind(&self) -> bool {
        self.behind
    }

    /// Of the copies written since the last sync, the output keeps the
    /// first few, or none, or all: it is append-only (a file, a stream), so
    /// a later copy never survives an earlier one.
    fn settle_unsynced(&mut self) -> usize {
        let ids = std::mem::take(&mut self.unsynced);
        let kept = self.rng.random_range(0..=ids.len());
        for &id in &ids[..kept] {
            self.land(id);
        }
        kept
    }

    /// One copy of publish call `id`'s event reaches the output.
    fn land(&mut self, id: usize) {
        let call = &self.publishes[id];
        let key = key(&call.event);
        let deliveries = self.deliveries.entry(key.clone()).or_default();
        deliveries.copies += 1;
        if deliveries.copies == 1 {
            self.first_delivered.entry(key.0).or_default().push(id);
            return;
        }
        self.repeats.push(id);
        if let Err(why) = &call.repeat {
            let text = format!(
                "{} delivered again, but {why}: only an event whose delivery was in doubt may repeat",
                describe(&call.event)
            );
            self.violate(text);
        }
    }

    /// Whether the worker may send `event` again now (it is not a repeat
    /// unless a copy of it is already out).
    fn may_repeat(&self, event: &HealthEvent) -> Result<(), String> {
        let life = Some(self.life());
        let known =
            |deliveries: &Deliveries| deliveries.recorded || deliveries.accepted_life == life;
        let wanted = key(event);
        let Some(deliveries) = self.deliveries.get(&wanted) else {
            return Ok(());
        };
        if deliveries.recorded {
            return Err("its delivery was synced and recorded".into());
        }
        if deliveries.accepted_life == life {
            return Err(
                "the publisher had accepted it in this life (and no sync failed since)".into(),
            );
        }
        let order = self
            .first_delivered
            .get(&event.game_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let newer = order
            .iter()
            .map(|&id| &self.publishes[id].event)
            .skip_while(|delivered| key(delivered) != wanted)
            .skip(1)
            .find(|newer| self.deliveries.get(&key(newer)).is_some_and(known));
        if let Some(newer) = newer {
            return Err(format!(
                "a newer event of the game ({}) was already acknowledged: never an old event after a newer one",
                describe(newer)
            ));
        }
        Ok(())
    }
}

/// An event in a line of a report.
pub fn describe(event: &HealthEvent) -> String {
    let kind = match event.event_type() {
        EventType::ProbeFailed => "failed",
        EventType::ProbeRecovered => "recovered",
    };
    format!(
        "{}/{}:{kind}@{}",
        event.game_id, event.container_id, event.occurred_at
    )
}

fn describe_calls(calls: &[PublishCall], ids: &[usize]) -> String {
    let parts: Vec<String> = ids.iter().map(|&id| describe(&calls[id].event)).collect();
    format!("[{}]", parts.join(", "))
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "life {} @{:>9.3}s ", self.life, self.at.as_secs_f64())?;
        match &self.what {
            What::LifeStarted { journal_bytes } => {
                write!(f, "-- process starts (journal {journal_bytes} bytes)")
            }
            What::Listed { records } => {
                let listed: Vec<String> = records
                    .iter()
                    .map(|r| format!("{}/{}", r.game_id, r.current_container_id))
                    .collect();
                write!(f, "listed [{}]", listed.join(" "))
            }
            What::ListFailed => write!(f, "listing failed"),
            What::BatchStarted {
                jobs,
                max_concurrency,
            } => write!(f, "batch of {jobs}, max_concurrency {max_concurrency}"),
            What::ProbeStarted {
                game_id,
                container_id,
            } => write!(f, "probe {game_id}/{container_id} starts"),
            What::ProbeFolded {
                game_id,
                container_id,
                result,
                ..
            } => write!(f, "probe {game_id}/{container_id} folded: {result:?}"),
            What::BatchEnded => write!(f, "batch ends"),
            What::Publish { id, event, fate } => write!(f, "publish #{id} {event}: {fate:?}"),
            What::Synced { ok, landed } => write!(f, "sync ok={ok}, {landed} landed"),
            What::Saved { committed, pending } => {
                write!(f, "save: committed={committed}, {pending} pending")
            }
            What::JournalFailed { during } => write!(f, "journal fault in {during}"),
            What::JournalFlushed { bytes } => write!(f, "journal flushed to {bytes} bytes"),
            What::JournalCutBack { bytes } => write!(f, "journal cut back to {bytes} bytes"),
            What::LoadFailed => write!(f, "state file unreadable"),
            What::ShutdownTriggered { during } => write!(f, "SHUTDOWN triggered during {during}"),
            What::TickDone => write!(f, "tick done"),
            What::Crashed { during } => write!(f, "CRASH during {during}"),
            What::Ended { how } => write!(f, "-- process ends: {how:?}"),
        }
    }
}

/// The world, shared by every simulated port.
#[derive(Debug, Clone)]
pub struct Shared(pub Arc<Mutex<World>>);

impl Shared {
    pub fn new(world: World) -> Self {
        Self(Arc::new(Mutex::new(world)))
    }

    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
pub struct SimStore(pub Shared);

impl RuntimeRecordStore for SimStore {
    fn list_running(&mut self) -> Result<Vec<RuntimeRecord>, ListError> {
        let mut world = self.0.lock();
        if world.call("list") != Fate::Alive {
            return Err(ListError::Unavailable("the process is dead".into()));
        }
        if world.scenario.store_down(world.mono) {
            world.record(What::ListFailed);
            return Err(ListError::Unavailable("simulated store down".into()));
        }
        let records = world.scenario.listing(world.mono);
        let entry = world.record(What::Listed {
            records: records.clone(),
        });
        world.current().inputs.push(entry);
        Ok(records)
    }
}

fn refused(text: &str) -> PublishError {
    PublishError::Unavailable(text.to_owned())
}

#[derive(Debug)]
pub struct SimPublisher(pub Shared);

impl HealthEventPublisher for SimPublisher {
    fn publish(&mut self, outgoing: &Outgoing) -> Result<(), PublishError> {
        let event = &outgoing.event;
        let mut world = self.0.lock();
        let fate = world.call("publish");
        if fate == Fate::Dead {
            return Err(refused("dead"));
        }
        // Even while the last write failed: only what the file on disk holds.
        // The id too: a restart sends the event again with the id it had.
        if world.scenario.durable && !world.committed_pending.contains(outgoing) {
            let text = format!(
                "D5: {} published before a snapshot holding it was written",
                describe(event)
            );
            world.violate(text);
        }
        let id = world.publishes.len();
        let call = PublishCall {
            life: world.life(),
            event: event.clone(),
            id: outgoing.id.to_string(),
            fate: PublishFate::Refused,
            repeat: world.may_repeat(event),
        };
        world.publishes.push(call);
        let (fate, result) = if fate == Fate::DiesNow {
            // The bytes went out before the process died, or not: settled
            // with the rest when the life ends.
            world.unsynced.push(id);
            (PublishFate::Died, Err(refused("dead")))
        } else if world.scenario.broker_down(world.mono) {
            (PublishFate::Refused, Err(refused("simulated broker down")))
        } else if world.fault(|scenario| scenario.publish_fault) {
            match world.rng.random_range(0..10) {
                0..=3 => (
                    PublishFate::Refused,
                    Err(refused("simulated broker refuses")),
                ),
                4..=5 => (
                    PublishFate::Refused,
                    Err(refused("simulated broker times out")),
                ),
                6..=8 => {
                    world.unsynced.push(id);
                    (PublishFate::ReplyLost, Err(refused("simulated reply lost")))
                }
                _ => {
                    world.stats.closed_outputs += 1;
                    let closed = PublishError::Write {
                        destination: "<sim>".into(),
                        source: io::Error::from(io::ErrorKind::BrokenPipe),
                    };
                    (PublishFate::Closed, Err(closed))
                }
            }
        } else {
            world.unsynced.push(id);
            world.current().accepted[slot(event.event_type())] += 1;
            let life = world.life();
            world
                .deliveries
                .entry(key(event))
                .or_default()
                .accepted_life = Some(life);
            (PublishFate::Accepted, Ok(()))
        };
        world.publishes[id].fate = fate;
        world.record(What::Publish {
            id,
            event: describe(event),
            fate,
        });
        result
    }

    fn sync(&mut self) -> Result<(), PublishError> {
        let mut world = self.0.lock();
        if world.call("sync") != Fate::Alive {
            return Err(refused("dead"));
        }
        let ids = world.unsynced.clone();
        let failed = world.fault(|scenario| scenario.sync_fault);
        // A failed sync may have made some of them durable, or none.
        let landed = if failed {
            world.settle_unsynced()
        } else {
            for &id in &ids {
                world.land(id);
            }
            world.unsynced.clear();
            ids.len()
        };
        let durable = world.scenario.durable;
        for &id in &ids {
            if world.publishes[id].fate != PublishFate::Accepted {
                continue;
            }
            let key = key(&world.publishes[id].event);
            let deliveries = world.deliveries.entry(key.clone()).or_default();
            if failed {
                // The worker puts it back: sending it again is expected.
                deliveries.accepted_life = None;
            } else if durable {
                world.synced_unrecorded.push(key);
            } else {
                deliveries.recorded = true;
            }
        }
        world.record(What::Synced {
            ok: !failed,
            landed,
        });
        if failed {
            return Err(refused("simulated fsync error"));
        }
        Ok(())
    }
}

fn slot(event_type: EventType) -> usize {
    match event_type {
        EventType::ProbeFailed => 0,
        EventType::ProbeRecovered => 1,
    }
}

/// Counts deliveries per process life (R12).
#[derive(Debug)]
pub struct SimTelemetry(pub Shared);

impl Telemetry for SimTelemetry {
    fn record_event(&mut self, event_type: EventType) {
        let mut world = self.0.lock();
        if world.alive {
            world.current().telemetry[slot(event_type)] += 1;
        }
    }
}

#[derive(Debug)]
pub struct SimState(pub Shared);

fn read_error(text: &str) -> StateError {
    StateError::Read {
        path: "<sim state>".into(),
        source: io::Error::other(text.to_owned()),
    }
}

fn write_error(text: &str) -> StateError {
    StateError::Write {
        path: "<sim state>".into(),
        temporary: "<sim state>.tmp".into(),
        source: io::Error::other(text.to_owned()),
    }
}

impl StateStore for SimState {
    fn load(&mut self) -> Result<Option<Snapshot>, StateError> {
        let mut world = self.0.lock();
        if world.call("load") != Fate::Alive {
            return Err(read_error("dead"));
        }
        if world.fault(|scenario| scenario.save_fault) {
            world.record(What::LoadFailed);
            return Err(read_error("simulated read error"));
        }
        world
            .snapshot
            .as_deref()
            .map(|bytes| parse_snapshot(bytes, "<sim state>"))
            .transpose()
    }

    fn save(
        &mut self,
        states: &HealthStates,
        pending: &[Outgoing],
        journal_len: Option<u64>,
    ) -> Result<Saved, StateError> {
        let mut world = self.0.lock();
        let fate = world.call("save");
        let applied = match fate {
            Fate::Dead => false,
            // The rename happened, or it did not: both are atomic.
            Fate::DiesNow => world.rng.random_bool(0.5),
            Fate::Alive => {
                !world.scenario.disk_full(world.mono)
                    && !world.fault(|scenario| scenario.save_fault)
            }
        };
        if !applied {
            world.record(What::Saved {
                committed: false,
                pending: pending.len(),
            });
            if fate == Fate::Alive {
                world.failed_saves += 1;
                world.behind = true;
                world.stats.held_by_failed_writes += u64::from(!pending.is_empty());
            }
            return Err(write_error("simulated write failure"));
        }
        let mut bytes = Vec::new();
        encode_snapshot_with_journal(&mut bytes, states, pending, journal_len);
        let saved = if world.snapshot.as_ref() == Some(&bytes) {
            Saved::Unchanged
        } else {
            Saved::Written
        };
        world.snapshot = Some(bytes);
        let life = world.life();
        let inputs = world.lives[life].inputs.len();
        world.commit = Some(Commit { life, inputs });
        world.committed_pending = pending.to_vec();
        world.behind = false;
        for key in std::mem::take(&mut world.synced_unrecorded) {
            world.deliveries.entry(key).or_default().recorded = true;
        }
        world.record(What::Saved {
            committed: true,
            pending: pending.len(),
        });
        if fate == Fate::DiesNow {
            return Err(write_error("dead"));
        }
        Ok(saved)
    }

    fn name(&self) -> String {
        "<sim state>".into()
    }
}

#[derive(Debug)]
pub struct SimJournal(pub Shared);

impl JournalSink for SimJournal {
    fn record(&mut self, input: &Input) -> io::Result<()> {
        let mut world = self.0.lock();
        if world.call("journal") != Fate::Alive {
            return Err(io::Error::other("dead"));
        }
        if world.fault(|scenario| scenario.journal_fault) {
            world.stats.journal_faults += 1;
            world.journal_interrupted = true;
            world.record(What::JournalFailed { during: "a write" });
            return Err(io::Error::other("simulated journal error"));
        }
        let mut line = Vec::new();
        write_input(&mut line, input)?;
        world.journal_buffer.extend(line);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut world = self.0.lock();
        let cut = match world.call("flush journal") {
            Fate::Dead => return Err(io::Error::other("dead")),
            Fate::DiesNow => true,
            // With nothing buffered (the start-up's flush, which measures
            // the journal) nothing is written, so nothing can fail.
            Fate::Alive if world.journal_buffer.is_empty() => false,
            Fate::Alive => {
                let cut = world.fault(|scenario| scenario.journal_fault);
                if cut {
                    world.stats.journal_faults += 1;
                    world.journal_interrupted = true;
                    world.record(What::JournalFailed { during: "a flush" });
                }
                cut
            }
        };
        let buffer = std::mem::take(&mut world.journal_buffer);
        if cut {
            // Cut short: a part of the buffer reached the file, maybe mid-line.
            let keep = world.rng.random_range(0..=buffer.len());
            world.journal.extend_from_slice(&buffer[..keep]);
            return Err(io::Error::other("simulated short write"));
        }
        world.journal.extend(buffer);
        world.journal_flushed = world.journal.len() as u64;
        let inputs = world.current().inputs.len();
        world.current().flushed_inputs = inputs;
        let bytes = world.journal.len();
        world.record(What::JournalFlushed { bytes });
        Ok(())
    }

    fn flushed_len(&self) -> u64 {
        self.0.lock().journal_flushed
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut world = self.0.lock();
        let fate = world.call("cut back journal");
        // Dying in it, the cut happened or it did not (set_len is atomic).
        let applied = match fate {
            Fate::Dead => false,
            Fate::DiesNow => world.rng.random_bool(0.5),
            Fate::Alive => true,
        };
        if applied {
            let len = usize::try_from(len).expect("a small journal");
            world.journal.truncate(len);
            world.record(What::JournalCutBack { bytes: len });
        }
        if fate != Fate::Alive {
            return Err(io::Error::other("dead"));
        }
        world.journal_flushed = len;
        world.journal_buffer.clear();
        Ok(())
    }

    fn name(&self) -> String {
        "<sim journal>".into()
    }
}

#[derive(Debug)]
pub struct SimClock(pub Shared);

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        wall(self.0.lock().mono)
    }

    fn monotonic(&self) -> Duration {
        self.0.lock().mono
    }

    fn sleep_until(&self, deadline: Duration, shutdown: &Shutdown) -> bool {
        let mut world = self.0.lock();
        if world.call("sleep") != Fate::Alive || shutdown.is_triggered() {
            return true;
        }
        world.mono = world.mono.max(deadline);
        false
    }
}

/// One probe in flight.
#[derive(Debug)]
struct InFlight {
    job: usize,
    started: Duration,
    finishes: Duration,
    result: ProbeResult,
    class: healthprobe_core::tick::ProbeClass,
}

/// Probes the scenario's engines in virtual time: starts a job whenever one
/// of `max_concurrency` slots is free (none once shutdown is triggered),
/// hands results over in the order they finish, and measures the peak in
/// flight (R10).
#[derive(Debug)]
pub struct SimFanout(pub Shared);

impl ProbeFanout for SimFanout {
    fn runtime(&self) -> Runtime {
        Runtime::Threads
    }

    fn probe_batch(
        &mut self,
        batch: &ProbeBatch,
        max_concurrency: usize,
        clock: &Arc<dyn Clock>,
        shutdown: &Shutdown,
        fold: &mut dyn FnMut(Probed),
    ) {
        {
            let mut world = self.0.lock();
            if !world.alive {
                return;
            }
            world.stats.batches += 1;
            world.record(What::BatchStarted {
                jobs: batch.len(),
                max_concurrency,
            });
        }
        let slots = max_concurrency.max(1);
        let mut order = batch.suspects_first().iter().copied();
        let mut in_flight: Vec<InFlight> = Vec::new();
        let mut peak = 0;
        loop {
            while in_flight.len() < slots && !shutdown.is_triggered() {
                let mut world = self.0.lock();
                let Some(job) = order.next() else { break };
                if world.call("probe") != Fate::Alive {
                    return;
                }
                if shutdown.is_triggered() {
                    // Asked during this very call: the probe does not start.
                    break;
                }
                let record = &batch.jobs()[job];
                let answer = match game_index(&record.game_id) {
                    Some(game) if game < world.scenario.games.len() => {
                        world.scenario.answer(game, world.mono)
                    }
                    _ => {
                        let text =
                            format!("the worker probed {record:?}, which the world never listed");
                        world.violate(text);
                        return;
                    }
                };
                world.record(What::ProbeStarted {
                    game_id: record.game_id.clone(),
                    container_id: record.current_container_id.clone(),
                });
                world.stats.probes += 1;
                in_flight.push(InFlight {
                    job,
                    started: world.mono,
                    finishes: world.mono + answer.latency,
                    result: answer.result,
                    class: answer.class,
                });
                peak = peak.max(in_flight.len());
                let cap = world.scenario.max_concurrency;
                if in_flight.len() > cap {
                    let text = format!(
                        "R10: {} probes in flight, more than max_concurrency {cap}",
                        in_flight.len()
                    );
                    world.violate(text);
                }
            }
            let Some(next) = (0..in_flight.len()).min_by_key(|&i| (in_flight[i].finishes, i))
            else {
                break;
            };
            let done = in_flight.remove(next);
            {
                let mut world = self.0.lock();
                if !world.alive {
                    return;
                }
                world.mono = world.mono.max(done.finishes);
                let record = &batch.jobs()[done.job];
                let entry = world.record(What::ProbeFolded {
                    game_id: record.game_id.clone(),
                    container_id: record.current_container_id.clone(),
                    started: done.started,
                    result: done.result.clone(),
                });
                world.current().inputs.push(entry);
            }
            fold(Probed::new(done.job, clock.now(), done.result, done.class));
        }
        let mut world = self.0.lock();
        if world.alive {
            let cap = world.scenario.max_concurrency;
            if batch.len() > cap && peak == cap {
                world.stats.capped_batches += 1;
            }
            world.record(What::BatchEnded);
        }
    }
}
