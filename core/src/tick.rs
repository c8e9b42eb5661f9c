//! The tick machine: every rule of a worker's run that is not hysteresis and
//! not I/O, as a sans-IO state machine (the quinn-proto shape).
//!
//! The core's [`HealthStates`] decides *what* a probe outcome means. The
//! [`TickMachine`] decides everything else a worker must get right: when a
//! tick starts, what to probe, the order of journal, fold, persist and
//! publish, what stays pending, what a refused publish does, and when the run
//! stops. It does no I/O, reads no clock and starts no thread (the same
//! `core/clippy.toml` applies): a driver feeds it what happened through
//! `handle_*` calls, with the time as an argument, and performs the
//! [`Action`]s it yields from [`TickMachine::poll_action`].
//!
//! ```text
//!  driver                                  machine
//!  ──────                                  ───────
//!  TickMachine::new(config, policy) ─────▶ [LoadState]          (with a state store)
//!  handle_loaded(snapshot)      ───────▶   [FlushJournal]       (with a journal)
//!  handle_flushed(Ok(len))      ───────▶   [TruncateJournal(l)], Persist
//!  handle_persisted(…)          ───────▶   (ready) | Stop(StartRefused)
//!  start_tick(now)              ───────▶   Publish(oldest pending)…, List
//!  handle_listing(records)      ───────▶   Journal(prune), Probe(batch)
//!  handle_outcome(job, …)  ×N   ───────▶   Journal(outcome), [Publish(event)]
//!  handle_probes_done(now)      ───────▶   FlushJournal, Persist, Publish…,
//!                                          SyncPublisher, Persist,
//!                                          TickDone(report), Wait(until) | Stop
//! ```
//!
//! Only one action that needs an answer is outstanding at a time: after a
//! [`Action::LoadState`], [`Action::List`], [`Action::FlushJournal`],
//! [`Action::TruncateJournal`], [`Action::Publish`],
//! [`Action::SyncPublisher`] or [`Action::Persist`],
//! `poll_action` yields nothing until the matching `handle_*` call. The
//! driver therefore performs the actions in the order they are yielded, which
//! is what makes the rules below hold whatever the ports do.
//!
//! # The rules the machine keeps
//!
//! - **Start-up (D5, D6)** With a state store, the machine first loads its
//!   snapshot (a load error refuses the start): its counters and pending
//!   events, under the configured policy (which replaces the snapshot's).
//!   With a journal too, it then reconciles the journal with the snapshot:
//!   a journal longer than the length the snapshot recorded is cut back to
//!   it (its last lines are of a tick the snapshot does not hold, which
//!   this run probes again); a snapshot that recorded no length (taken
//!   after the journal had stopped, or by a run without one) holds folds no
//!   journal has, so a journal that already has lines stays off (appending
//!   would leave a hole) and an empty one starts afresh. Then it writes the
//!   snapshot back at once, recording the journal's length: if that write
//!   fails the start is refused ([`StopReason::StartRefused`]), so an
//!   unwritable state store is an error at start, not a silent gap later.
//! - **D4** Every event goes into the outbox; it leaves only when the
//!   publisher accepts it, oldest first, so no event overtakes an older one.
//!   A refusal leaves the publisher alone until the next tick (one refused
//!   call per tick). A permanent refusal (a closed output) stops the run
//!   after the tick, the event still pending.
//! - **D5** With a state store, nothing is published before a snapshot that
//!   holds it is persisted, and nothing at all while the last write failed
//!   (the outbox waits; each tick writes again first); deliveries are synced by the publisher
//!   ([`Action::SyncPublisher`]) before a snapshot records them, and a failed
//!   sync puts the unsynced events back at the front of the outbox. A crash
//!   can repeat an event, never lose one. Each snapshot records the
//!   journal's length at its last flush ([`Action::Persist`]), none once
//!   the journal has stopped. At exit, [`TickMachine::undelivered`] says
//!   whether the events still pending are kept or lost.
//! - **D6** Every prune and outcome is journaled before any effect of its
//!   fold (a publish or a snapshot), and the journal is flushed before the
//!   tick's snapshot; a journal error stops the journal for the rest of the run.
//! - **R8, R9, D3** A listing keeps only this instance's shard's games
//!   ([`crate::shard`]), prunes every game not listed, then each listed
//!   game is probed once (the first record wins); a listing error skips the
//!   tick with the state untouched, pending events still delivered.
//! - **R13** One tick per interval, measured from tick start to tick start; a
//!   tick that overruns starts the next at once (no burst of catch-up
//!   ticks). With a tick limit ticks run back to back, but a skipped tick
//!   still waits out its interval. Shutdown stops after the tick in flight.
//!
//! # HA mode (failover, `MachineConfig::fenced`)
//!
//! The machine acts only on the shards its leases give it
//! ([`crate::lease`]; game → shard by [`crate::shard::shard_of`]), each
//! Active, Suspended or Draining per the last [`LeaseView`]. A tick asks
//! for the view ([`Action::Lease`]), loads the shards new to it
//! ([`Action::Load`]), then runs as above with one store write per step
//! ([`Action::Write`]: every held shard not Suspended, each fenced by its
//! epoch; the driver skips a shard whose bytes are unchanged), reads the
//! view again before the tick's write, and ends by releasing its drained
//! shards ([`Action::Release`]); a stop releases every shard. Games, outbox
//! and delivery rounds are the single instance's, shared by all shards: a
//! shard is a filter on them, not a second copy.
//!
//! - **H1** A game is probed only if its shard is Active at the listing.
//! - **H2** An event is published only once a write of its shard holding it
//!   returned written or unchanged, and only while the shard is Active
//!   (strict D5: a shard is behind from the ask of a write until its answer
//!   says so). Per shard the outbox stays oldest first.
//! - **H3** A fenced write or publish drops the shard: its games and pending
//!   events leave memory, and it is loaded again only under a newer epoch.
//! - **H4** Suspended (its validity ran out, not yet lost): no probe,
//!   publish or write, state kept; the same epoch in a later view resumes
//!   it (written before anything is published), another epoch or none drops it.
//! - **H5** A load replaces: only a shard not held is loaded (one seen under
//!   another epoch is dropped first), and only the snapshot's games and
//!   events of that shard are taken.
//! - **H6** R8 prunes against the whole listing, so a Suspended or Draining
//!   shard's game is pruned only when it is not running at all.
//! - **H7** A Draining shard is released at the end of the first tick whose
//!   write of it succeeded, and forgotten; shutdown releases every shard
//!   after the run's last write.
//!
//! Simpler than `FAILOVER.md` section 3: loads answer `Err(())` for lost
//! and failed alike (either way the shard is not held, and a shard still in
//! the view is loaded again next tick); the publish's fence comes from
//! [`TickMachine::lease_of`] rather than a field in every [`Outgoing`];
//! [`HealthStates`] gains only `retain`, `filtered` and `absorb`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::Timestamp;
use crate::lease::{LeaseView, ShardLease};
use crate::shard::{Shard, shard_of};
use crate::{
    HealthStates, Input, OutcomeRef, Outgoing, Policy, ProbeOutcome, ProbeResult, RuntimeRecord,
};

/// How a tick machine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MachineConfig {
    /// Time between tick starts (R13).
    pub interval: Duration,
    /// Whether a state store persists the state and pending events (D5):
    /// then nothing is published before it is persisted.
    pub durable: bool,
    /// Whether every prune and outcome is journaled (D6).
    pub journal: bool,
    /// Stop after this many ticks (`--ticks N`); `None` runs until shutdown.
    pub tick_limit: Option<u64>,
    /// The games this instance owns (`--shard I/N`): every listing is cut
    /// down to them before anything else.
    pub shard: Shard,
    /// HA mode (failover): the shard count `S`. The machine then acts only
    /// on the shards its leases give it (see the module docs, H1–H7); it
    /// implies `durable`, with no journal and no `shard`, and loads and
    /// writes per shard instead of [`Action::LoadState`] and
    /// [`Action::Persist`]. `None`: a single instance.
    pub fenced: Option<u32>,
}

impl MachineConfig {
    /// A machine ticking every `interval`, not durable, no journal, no
    /// limit, owning every game.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            durable: false,
            journal: false,
            tick_limit: None,
            shard: Shard::ALL,
            fenced: None,
        }
    }
}

/// What a state store holds (D5): the hysteresis state and the events not yet delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The policy and per-game counters.
    pub states: HealthStates,
    /// Events emitted but not yet recorded as delivered, oldest first, with
    /// their ids (a re-send after a restart keeps its id).
    pub pending: Vec<Outgoing>,
    /// The journal's length in bytes when this snapshot was taken (its last
    /// whole line folded into `states`), when the run was journaling.
    pub journal_len: Option<u64>,
}

/// What the start-up found and did (with a state store): for the driver's logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Restored {
    /// Whether a snapshot was found (false: a fresh start).
    pub existed: bool,
    /// Games restored with counters.
    pub games: usize,
    /// Events restored as pending, published before any new one.
    pub pending: usize,
    /// The snapshot's policy when it differed from the configured one (which replaced it).
    pub replaced_policy: Option<Policy>,
    /// What became of the journal.
    pub journal: JournalAtStart,
}

/// What the start-up did with the journal (D6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalAtStart {
    /// No journal.
    NoJournal,
    /// Appended to from its length, as found.
    Continued {
        /// Its length.
        len: u64,
    },
    /// Cut back to the length the snapshot recorded.
    CutBack {
        /// Its length as found.
        from: u64,
        /// Its length now.
        to: u64,
    },
    /// Shorter than the snapshot recorded (replaced or truncated by hand):
    /// appended to as it is.
    Shorter {
        /// Its length as found.
        found: u64,
        /// The length the snapshot recorded.
        recorded: u64,
    },
    /// Kept off: the snapshot holds folds this journal lacks (it stopped in
    /// an earlier run, or that run had none), and it already has lines.
    KeptOff,
    /// Its flush or cut-back failed: off for the run.
    Failed,
}

/// What becomes of the events still pending if the run ends now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undelivered {
    /// Nothing is pending.
    Nothing,
    /// Kept in the state store: the next run publishes them first.
    Kept(usize),
    /// Lost: there is no state store.
    LostWithoutStateStore(usize),
    /// Lost: the state store's last write failed, so it holds an older
    /// snapshot without them.
    LostLastWriteFailed(usize),
}

/// What kind of outcome a probe had, for metrics (`healthprobe_probes_total{result}`).
///
/// The prober that produced the outcome says which (it knows the error's
/// structure); the machine only counts them per tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeClass {
    /// Status 200.
    Ok,
    /// A response with any other status (R1).
    BadStatus,
    /// No response within the probe timeout.
    Timeout,
    /// No connection: refused, unreachable, the name not found or not resolved.
    ConnectError,
    /// An `https://` engine whose TLS failed: a certificate not trusted,
    /// expired or not valid for the endpoint's host, a handshake that timed
    /// out or was refused, an engine that does not speak TLS.
    Tls,
    /// Anything else: a reset or close mid-response, a malformed or
    /// oversized head, a bad endpoint URL, a probe that panicked.
    Other,
}

impl ProbeClass {
    /// Every class, in label order.
    pub const ALL: [Self; 6] = [
        Self::Ok,
        Self::BadStatus,
        Self::Timeout,
        Self::ConnectError,
        Self::Tls,
        Self::Other,
    ];

    /// The metric label value: `ok`, `bad_status`, `timeout`,
    /// `connect_error`, `tls_error`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::BadStatus => "bad_status",
            Self::Timeout => "timeout",
            Self::ConnectError => "connect_error",
            Self::Tls => "tls_error",
            Self::Other => "other",
        }
    }
}

impl std::fmt::Display for ProbeClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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

/// The games to probe in one tick: one record per game, the first listed (D3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeBatch {
    jobs: Arc<[RuntimeRecord]>,
    suspects_first: Arc<[usize]>,
}

impl ProbeBatch {
    /// The records to probe, in listing order; a job is an index into it.
    pub fn jobs(&self) -> &Arc<[RuntimeRecord]> {
        &self.jobs
    }

    /// Job indices with the games that have a failure counted first, listing
    /// order otherwise: a game that failed is the likeliest to hang, and its
    /// timeout then overlaps the sweep of the rest. (Within a tick the order
    /// changes no event: each game is probed once and each outcome carries
    /// its own time.)
    pub fn suspects_first(&self) -> &Arc<[usize]> {
        &self.suspects_first
    }

    /// How many jobs.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether there is nothing to probe.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read the state store's snapshot (at start, with a state store);
    /// answer with [`TickMachine::handle_loaded`].
    LoadState,
    /// Cut the journal back to `len` bytes (at start), dropping anything
    /// buffered; answer with [`TickMachine::handle_truncated`].
    TruncateJournal(u64),
    /// List the running records; answer with [`TickMachine::handle_listing`].
    List,
    /// Probe every job of the batch, at most `max_concurrency` in flight,
    /// none started after shutdown; answer each with
    /// [`TickMachine::handle_outcome`], then [`TickMachine::handle_probes_done`].
    Probe(ProbeBatch),
    /// Append this input to the journal. Needs no answer once written; a line
    /// that could not be written is answered with [`TickMachine::handle_journal_failed`].
    Journal(Input),
    /// Make the journal's lines reach the file; answer with
    /// [`TickMachine::handle_flushed`] and the journal's length after it.
    /// (At start, with nothing recorded yet, it only measures the journal.)
    FlushJournal,
    /// Publish this event (the oldest pending) with its id; answer with
    /// [`TickMachine::handle_published`]. HA: fenced by
    /// [`TickMachine::lease_of`] its game.
    Publish(Outgoing),
    /// Make every event accepted since the last sync durable; answer with
    /// [`TickMachine::handle_synced`].
    SyncPublisher,
    /// Write the snapshot ([`TickMachine::states`] and
    /// [`TickMachine::pending`]) recording `journal_len`; answer with
    /// [`TickMachine::handle_persisted`].
    Persist {
        /// The journal length the snapshot records: its length at the last
        /// flush, `None` without a journal or once it stopped.
        journal_len: Option<u64>,
    },
    /// HA: read the lease view; answer with [`TickMachine::handle_lease`].
    Lease,
    /// HA: read these shards' snapshots (under these epochs); answer with
    /// [`TickMachine::handle_loaded_shards`].
    Load(Vec<ShardLease>),
    /// HA: write each shard's [`TickMachine::shard_snapshot`], fenced by its
    /// epoch; answer with [`TickMachine::handle_written`].
    Write(Vec<ShardLease>),
    /// HA: give these leases back (their last write is done). Needs no answer.
    Release(Vec<ShardLease>),
    /// Start no new probe: the run is stopping (a closed output). Needs no answer.
    Interrupt,
    /// A tick ended; its report. Needs no answer.
    TickDone(TickReport),
    /// Start the next tick with [`TickMachine::start_tick`] once the
    /// monotonic time reaches `until` (at once if it already has). Needs no answer.
    Wait {
        /// Monotonic time of the next tick's start.
        until: Duration,
    },
    /// The run is over. Needs no answer.
    Stop(StopReason),
}

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Shutdown was asked for ([`TickMachine::handle_shutdown`]).
    Shutdown,
    /// The tick limit was reached.
    TickLimit,
    /// The publisher refused an event for good (a closed events output).
    OutputClosed,
    /// The start was refused: the snapshot could not be loaded, or the
    /// first write failed (before any tick).
    StartRefused,
}

/// How the publisher answered one [`Action::Publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Accepted: the event leaves the outbox.
    Accepted,
    /// Refused for now: retried next tick, before newer events.
    Refused,
    /// Refused for good (the output is closed): the run stops after this tick.
    Closed,
    /// HA: refused by the sink's fence (another instance holds the shard
    /// under a newer epoch): the shard is dropped (H3). A single instance
    /// takes it as [`Published::Refused`].
    Fenced,
}

/// How a snapshot write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persisted {
    /// Written (and durable).
    Written,
    /// Identical to the last snapshot written, so not rewritten.
    Unchanged,
    /// The write failed: nothing is published until a later write succeeds
    /// (retried at the next delivery round); the events stay pending.
    Failed,
    /// HA: refused by the lease table's fence (the shard is another's now):
    /// the shard is dropped (H3). A single instance takes it as [`Persisted::Failed`].
    Fenced,
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
    /// Failed publisher syncs this tick (their events were put back as pending).
    pub sync_failures: usize,
    /// Events waiting for the publisher at the end of the tick (D4).
    pub pending: usize,
    /// Games holding hysteresis state at the end of the tick (D7: those with
    /// a failure counted or published).
    pub tracked_games: usize,
    /// Snapshots written this tick (D5; an unchanged snapshot is not rewritten).
    pub snapshots_written: usize,
    /// Snapshot writes that failed this tick (logged; events wait until one succeeds).
    pub snapshot_failures: usize,
    /// The journal failed this tick and stopped (D6).
    pub journal_stopped: bool,
    /// Time from the tick's start to its end (monotonic).
    pub duration: Duration,
    /// The listing failed, so nothing was pruned or probed (R9).
    pub skipped: bool,
    /// Shutdown stopped the tick before every game was probed.
    pub interrupted: bool,
    /// The tick took longer than the interval; the next one starts at once (R13).
    pub overran: bool,
    /// HA: shards Active at the listing (probed).
    pub shards_active: usize,
    /// HA: shards Suspended at the end of the tick (H4).
    pub shards_suspended: usize,
    /// HA: shards loaded this tick (H5).
    pub shards_loaded: usize,
    /// HA: shards dropped this tick: lost, re-acquired under another epoch,
    /// or fenced (H3).
    pub shards_dropped: usize,
    /// HA: shard writes refused by the fence.
    pub fenced_writes: usize,
    /// HA: publishes refused by the fence.
    pub fenced_publishes: usize,
}

/// What a whole run did.
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
    /// Why the run stopped, once it has.
    pub stopped: Option<StopReason>,
}

impl RunReport {
    /// Add one tick's counts; `pending` becomes the tick's.
    pub fn add(&mut self, tick: &TickReport) {
        self.ticks += 1;
        self.skipped_ticks += u64::from(tick.skipped);
        self.overruns += u64::from(tick.overran);
        self.probes += tick.probes as u64;
        self.events += tick.events as u64;
        self.published += tick.published as u64;
        self.publish_failures += tick.publish_failures as u64;
        self.pending = tick.pending;
        self.snapshot_failures += tick.snapshot_failures as u64;
    }
}

/// Where the tick is. Each step either yields an action and waits for its
/// answer, or moves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Loading the snapshot, reconciling the journal, the first write.
    Starting,
    /// Between ticks: waiting for [`TickMachine::start_tick`].
    Idle,
    /// HA: the lease view, then the new shards' snapshots, were asked for.
    Leasing,
    /// Delivering what waits from earlier ticks (D4), then recording it.
    Begin(Delivery),
    /// The listing was asked for.
    Listing,
    /// Probes are in flight; without a state store, events are delivered as they come.
    Probing,
    /// The journal is being flushed.
    Flush,
    /// HA: the lease view is read again before the tick's write (a lease
    /// that ran out mid-tick suspends its shard before anything is written).
    Refresh,
    /// With a state store: persist what the tick did before anything of it is published.
    PersistTick,
    /// Delivering the tick's events, then recording the deliveries.
    End(Delivery),
    /// The run is over.
    Stopped,
}

/// The steps of one delivery round: with a state store whose last write
/// failed, write it again first; publish until refused or empty, sync what
/// was accepted, persist (with a state store) what was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    CatchingUp,
    Publishing,
    Syncing,
    Persisting,
    Done,
}

/// An action yielded whose answer has not come yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Load,
    Lease,
    LoadShards,
    Truncate,
    List,
    Flush,
    Publish,
    Sync,
    Persist,
}

/// What the restored snapshot says of the journal (D6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JournalBase {
    /// No snapshot was restored: nothing to reconcile.
    Fresh,
    /// The journal's first `len` bytes hold exactly the snapshot's folds.
    At(u64),
    /// The snapshot holds folds no journal recorded.
    Unrecorded,
}

/// A shard held in HA mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    lease: ShardLease,
    mode: Mode,
    /// Its last write was not answered written or unchanged (or skipped):
    /// none of its events is published until one is (H2).
    behind: bool,
}

/// What a held shard may do, from the last lease view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Probe, write, publish.
    Active,
    /// Its validity ran out: nothing but keeping its state (H4).
    Suspended,
    /// Written a last time, then released (H7).
    Draining,
}

/// The tick and delivery rules of a worker, with no I/O. See the module docs.
#[derive(Debug, Clone)]
pub struct TickMachine {
    config: MachineConfig,
    states: HealthStates,
    /// Events not yet accepted, oldest first (D4).
    outbox: VecDeque<Outgoing>,
    /// Events accepted since the last sync, oldest first.
    unsynced: Vec<Outgoing>,
    actions: VecDeque<Action>,
    awaiting: Option<Awaiting>,
    phase: Phase,
    /// This tick's jobs (the batch's records).
    jobs: Option<Arc<[RuntimeRecord]>>,
    probes_done: bool,
    /// The publisher refused this tick: leave it alone until the next.
    refused: bool,
    /// Deliveries in the current delivery round.
    delivered_in_round: usize,
    /// The outbox index of the event being published.
    publishing: usize,
    /// HA: the shards held, by shard.
    held: BTreeMap<u32, Held>,
    /// HA: per shard, the newest epoch a sink fenced: the shard is loaded
    /// again only under a newer one (H3).
    fenced: BTreeMap<u32, u64>,
    /// With a state store: its last write failed, so it may lack events the
    /// outbox holds. Nothing is published until a write succeeds (D5).
    behind: bool,
    journaling: bool,
    /// The journal's length at its last flush (or cut-back).
    journal_len: u64,
    /// What the restored snapshot says of the journal.
    base: JournalBase,
    /// What the start-up found and did.
    restored: Option<Restored>,
    report: TickReport,
    run: RunReport,
    tick_started: Duration,
    shutdown: bool,
    stop: Option<StopReason>,
}

impl TickMachine {
    /// A machine for `config`, its hysteresis under `policy`.
    ///
    /// Without a state store it is ready for [`TickMachine::start_tick`]
    /// at once, with no state and nothing pending. With one, it first
    /// yields its start-up actions ([`Action::LoadState`], then
    /// [`Action::FlushJournal`] and [`Action::TruncateJournal`] with a
    /// journal, then the first [`Action::Persist`]); ticks start once they
    /// are answered, and a refused start ends in
    /// [`Action::Stop`]`(`[`StopReason::StartRefused`]`)`.
    pub fn new(mut config: MachineConfig, policy: Policy) -> Self {
        if config.fenced.is_some() {
            config.durable = true;
            config.journal = false;
            config.shard = Shard::ALL;
        }
        let mut machine = Self {
            journaling: config.journal,
            config,
            states: HealthStates::new(policy),
            outbox: VecDeque::new(),
            unsynced: Vec::new(),
            actions: VecDeque::new(),
            awaiting: None,
            phase: Phase::Idle,
            jobs: None,
            probes_done: false,
            refused: false,
            delivered_in_round: 0,
            publishing: 0,
            held: BTreeMap::new(),
            fenced: BTreeMap::new(),
            behind: false,
            journal_len: 0,
            base: JournalBase::Fresh,
            restored: None,
            report: TickReport::default(),
            run: RunReport::default(),
            tick_started: Duration::ZERO,
            shutdown: false,
            stop: None,
        };
        if config.durable && config.fenced.is_none() {
            machine.phase = Phase::Starting;
            machine.ask(Action::LoadState, Awaiting::Load);
        }
        machine
    }

    /// The settings in force.
    pub fn config(&self) -> MachineConfig {
        self.config
    }

    /// The hysteresis state.
    pub fn states(&self) -> &HealthStates {
        &self.states
    }

    /// What the start-up restored and did with the journal; `None` without
    /// a state store, or before the snapshot is loaded.
    pub fn restored(&self) -> Option<Restored> {
        self.restored
    }

    /// What becomes of the events still pending if the run ends now: kept
    /// in the state store, or lost (no state store, or its last write failed).
    pub fn undelivered(&self) -> Undelivered {
        let pending = self.pending_len();
        if pending == 0 {
            Undelivered::Nothing
        } else if !self.config.durable {
            Undelivered::LostWithoutStateStore(pending)
        } else if self.behind || self.held.values().any(|held| held.behind) {
            Undelivered::LostLastWriteFailed(pending)
        } else {
            Undelivered::Kept(pending)
        }
    }

    /// Events emitted but not yet recorded as delivered, oldest first: the
    /// events accepted but not yet synced (published again if the sync
    /// fails or the process dies first), then the outbox. This is what a
    /// snapshot keeps as pending.
    pub fn pending(&self) -> impl Iterator<Item = &Outgoing> + Clone {
        self.unsynced.iter().chain(&self.outbox)
    }

    /// How many events are pending (see [`TickMachine::pending`]).
    pub fn pending_len(&self) -> usize {
        self.unsynced.len() + self.outbox.len()
    }

    /// Whether the journal is on (it stops for good on its first error).
    pub fn is_journaling(&self) -> bool {
        self.journaling
    }

    /// What the run did so far.
    pub fn run_report(&self) -> RunReport {
        self.run
    }

    /// Whether the run is over.
    pub fn is_stopped(&self) -> bool {
        self.phase == Phase::Stopped
    }

    /// The next action, if any is ready (none while an answer is awaited).
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The state store answered [`Action::LoadState`]: its snapshot, `None`
    /// when it has none yet (a fresh start).
    ///
    /// `Err(())`: it could not be read or parsed (the driver keeps why):
    /// the start is refused. Otherwise the snapshot's counters and pending
    /// events are the machine's, under the configured policy.
    pub fn handle_loaded(&mut self, now: Duration, loaded: Result<Option<Snapshot>, ()>) {
        if !self.answered(Awaiting::Load) {
            return;
        }
        let Ok(snapshot) = loaded else {
            self.stop_now(StopReason::StartRefused);
            return;
        };
        let configured = self.states.policy();
        let existed = snapshot.is_some();
        if let Some(snapshot) = snapshot {
            self.base = match snapshot.journal_len {
                Some(len) => JournalBase::At(len),
                None => JournalBase::Unrecorded,
            };
            self.states = snapshot.states;
            self.outbox = snapshot.pending.into();
        }
        let previous = self.states.policy();
        self.states.set_policy(configured);
        self.restored = Some(Restored {
            existed,
            games: self.states.len(),
            pending: self.outbox.len(),
            replaced_policy: (previous != configured).then_some(previous),
            journal: JournalAtStart::NoJournal,
        });
        if self.journaling {
            // Measure the journal before deciding what to do with it.
            self.ask(Action::FlushJournal, Awaiting::Flush);
        } else {
            self.persist();
        }
        self.advance(now);
    }

    /// The journal answered [`Action::TruncateJournal`]; `Err(())` turns it off.
    pub fn handle_truncated(&mut self, now: Duration, result: Result<(), ()>) {
        if !self.answered(Awaiting::Truncate) {
            return;
        }
        let JournalBase::At(len) = self.base else {
            return;
        };
        let journal = match result {
            Ok(()) => JournalAtStart::CutBack {
                from: self.journal_len,
                to: len,
            },
            Err(()) => {
                self.stop_journal();
                JournalAtStart::Failed
            }
        };
        self.journal_len = len;
        self.started_journal(journal);
        self.persist();
        self.advance(now);
    }

    /// Start a tick at monotonic time `now`. Ignored during a tick or after the
    /// stop; after [`TickMachine::handle_shutdown`] it stops the run instead.
    pub fn start_tick(&mut self, now: Duration) {
        if self.phase != Phase::Idle {
            return;
        }
        if self.shutdown {
            self.stop_now(StopReason::Shutdown);
            return;
        }
        if self.tick_limit_reached() {
            // `--ticks 0`: no tick at all.
            self.stop_now(StopReason::TickLimit);
            return;
        }
        self.tick_started = now;
        self.report = TickReport::default();
        self.refused = false;
        self.probes_done = false;
        self.jobs = None;
        if self.config.fenced.is_some() {
            self.phase = Phase::Leasing;
            self.ask(Action::Lease, Awaiting::Lease);
            return;
        }
        self.begin_round(Phase::Begin, Delivery::CatchingUp);
        self.advance(now);
    }

    /// HA: the lease view answered [`Action::Lease`].
    ///
    /// A held shard missing from it, or there under another epoch, is
    /// dropped (H3); one past its validity is Suspended (H4); at the tick's
    /// start, a shard new to it is loaded ([`Action::Load`]) and one new
    /// but draining is released at once (nothing of it is held).
    pub fn handle_lease(&mut self, now: Duration, view: &LeaseView) {
        if !self.answered(Awaiting::Lease) {
            return;
        }
        let modes = [
            (&view.active, Mode::Active),
            (&view.suspended, Mode::Suspended),
            (&view.draining, Mode::Draining),
        ];
        let in_view = |shard: u32| {
            modes.iter().find_map(|(leases, mode)| {
                let lease = leases.iter().find(|lease| lease.shard == shard)?;
                Some((lease.epoch, *mode))
            })
        };
        let mut gone = Vec::new();
        for (&shard, held) in &mut self.held {
            match in_view(shard) {
                Some((epoch, mode)) if epoch == held.lease.epoch => held.mode = mode,
                _ => gone.push(shard),
            }
        }
        for shard in gone {
            self.report.shards_dropped += 1;
            self.drop_shard(shard);
        }
        if self.phase == Phase::Refresh {
            self.phase = Phase::PersistTick;
            self.advance(now);
            return;
        }
        let new = |leases: &[ShardLease]| -> Vec<ShardLease> {
            let held = |lease: &&ShardLease| {
                let fenced = self.fenced.get(&lease.shard);
                !self.held.contains_key(&lease.shard) && fenced.is_none_or(|&e| lease.epoch > e)
            };
            leases.iter().filter(held).copied().collect()
        };
        let (load, release) = (new(&view.active), new(&view.draining));
        if !release.is_empty() {
            self.actions.push_back(Action::Release(release));
        }
        if load.is_empty() {
            self.begin_round(Phase::Begin, Delivery::CatchingUp);
            self.advance(now);
        } else {
            self.ask(Action::Load(load), Awaiting::LoadShards);
        }
    }

    /// HA: the lease table answered [`Action::Load`], one answer per shard.
    ///
    /// A snapshot (or `None`: nothing failing, nothing pending) replaces
    /// whatever was held of its shard (H5): its games and pending events
    /// of that shard are taken under the configured policy, and the shard
    /// is Active. `Err(())`: not loaded (lost, or the read failed); while
    /// the view still holds it, the next tick loads it again.
    pub fn handle_loaded_shards(
        &mut self,
        now: Duration,
        loaded: Vec<(ShardLease, Result<Option<Snapshot>, ()>)>,
    ) {
        if !self.answered(Awaiting::LoadShards) {
            return;
        }
        for (lease, snapshot) in loaded {
            // Only a shard not held is loaded (one held under another
            // epoch was dropped by the view's diff), never into one held (H5).
            let Ok(snapshot) = snapshot else { continue };
            if self.held.contains_key(&lease.shard) {
                continue;
            }
            let held = Held {
                lease,
                mode: Mode::Active,
                behind: false,
            };
            self.held.insert(lease.shard, held);
            self.report.shards_loaded += 1;
            if let Some(snapshot) = snapshot {
                let count = self.config.fenced.unwrap_or(1);
                let mine = |game_id: &str| shard_of(game_id, count) == lease.shard;
                self.states.absorb(snapshot.states.filtered(mine));
                let pending = snapshot.pending.into_iter();
                self.outbox
                    .extend(pending.filter(|out| mine(&out.event.game_id)));
            }
        }
        self.begin_round(Phase::Begin, Delivery::CatchingUp);
        self.advance(now);
    }

    /// HA: the snapshot of `shard` to write: its games and its pending
    /// events, oldest first.
    pub fn shard_snapshot(&self, shard: u32) -> Snapshot {
        let count = self.config.fenced.unwrap_or(1);
        let mine = |game_id: &str| shard_of(game_id, count) == shard;
        Snapshot {
            states: self.states.filtered(mine),
            pending: self
                .pending()
                .filter(|out| mine(&out.event.game_id))
                .cloned()
                .collect(),
            journal_len: None,
        }
    }

    /// HA: the lease a publish of `game_id`'s event is fenced with, while
    /// its shard is held.
    pub fn lease_of(&self, game_id: &str) -> Option<ShardLease> {
        let shard = shard_of(game_id, self.config.fenced?);
        self.held.get(&shard).map(|held| held.lease)
    }

    /// The records store answered [`Action::List`].
    ///
    /// `Err(())`: the listing failed (the driver logs why): the tick is
    /// skipped with the state untouched (R9).
    pub fn handle_listing(&mut self, now: Duration, listing: Result<Vec<RuntimeRecord>, ()>) {
        if !self.answered(Awaiting::List) {
            return;
        }
        let mut records = match listing {
            Ok(records) => records,
            Err(()) => {
                self.report.skipped = true;
                self.phase = Phase::Flush;
                self.advance(now);
                return;
            }
        };
        if self.config.shard != Shard::ALL {
            let shard = self.config.shard;
            records.retain(|record| shard.owns(&record.game_id));
        }
        self.report.records = records.len();
        // R8: prune against the whole listing, duplicates included; journaled first (D6).
        if self.journaling {
            let running = records.iter().map(|r| r.game_id.clone()).collect();
            self.actions
                .push_back(Action::Journal(Input::Prune { running }));
        }
        // H6: in HA mode too (only held shards' games are in memory), so a
        // Suspended shard's game is pruned only when it is not running.
        self.states
            .prune(records.iter().map(|record| record.game_id.as_str()));
        if self.config.fenced.is_some() {
            // H1: probe only the games of Active shards.
            records.retain(|record| self.mode_of(&record.game_id) == Some(Mode::Active));
            let active = self.held.values().filter(|h| h.mode == Mode::Active);
            self.report.shards_active = active.count();
        }
        let jobs = probe_jobs(records);
        self.report.games = jobs.len();
        self.phase = Phase::Probing;
        if jobs.is_empty() {
            self.probes_done = true;
        } else {
            let mut suspects_first: Vec<usize> = (0..jobs.len()).collect();
            suspects_first.sort_by_key(|&job| self.states.game(&jobs[job].game_id).is_none());
            let jobs: Arc<[RuntimeRecord]> = jobs.into();
            self.jobs = Some(Arc::clone(&jobs));
            self.actions.push_back(Action::Probe(ProbeBatch {
                jobs,
                suspects_first: suspects_first.into(),
            }));
        }
        self.advance(now);
    }

    /// One probe of the batch finished: fold its outcome (journaled first, D6).
    ///
    /// `job` indexes the batch's jobs; `observed_at` is when the probe
    /// finished. An outcome outside the probing of a tick, or of an unknown
    /// job, is ignored.
    pub fn handle_outcome(
        &mut self,
        now: Duration,
        job: usize,
        observed_at: Timestamp,
        result: ProbeResult,
        class: ProbeClass,
    ) {
        if self.phase != Phase::Probing || self.probes_done {
            return;
        }
        let Some(record) = self.jobs.as_ref().and_then(|jobs| jobs.get(job)) else {
            return;
        };
        self.report.probes += 1;
        if !result.is_healthy() {
            self.report.failed_probes += 1;
        }
        self.report.probe_classes.add(class);
        let event = if self.journaling {
            let outcome = ProbeOutcome {
                game_id: record.game_id.clone(),
                container_id: record.current_container_id.clone(),
                observed_at,
                result,
            };
            let event = self.states.apply(outcome.as_ref());
            // D6: the line goes out before any effect of the fold.
            self.actions
                .push_back(Action::Journal(Input::Outcome(outcome)));
            event
        } else {
            self.states.apply(OutcomeRef {
                game_id: &record.game_id,
                container_id: &record.current_container_id,
                observed_at,
                result: &result,
            })
        };
        if let Some(event) = event {
            self.report.events += 1;
            self.outbox.push_back(event);
        }
        self.advance(now);
    }

    /// Every probe of the batch has finished or was never started (shutdown).
    pub fn handle_probes_done(&mut self, now: Duration) {
        if self.phase != Phase::Probing || self.probes_done {
            return;
        }
        self.probes_done = true;
        self.report.interrupted = self.report.probes < self.report.games;
        self.advance(now);
    }

    /// An [`Action::Journal`] line could not be written: the journal stops
    /// for the rest of the run (a journal with a hole would replay to
    /// different events). A line needs no answer when it was written.
    pub fn handle_journal_failed(&mut self, now: Duration) {
        if !self.journaling {
            return;
        }
        self.stop_journal();
        if self.awaiting == Some(Awaiting::Flush) {
            // A flush yielded behind the failed line is void: a journal
            // that stopped is never flushed again (it may hold part of a line).
            self.actions
                .retain(|action| *action != Action::FlushJournal);
            self.awaiting = None;
            self.phase = Phase::PersistTick;
        }
        self.advance(now);
    }

    /// The journal answered [`Action::FlushJournal`] with its length after
    /// the flush (whole lines); `Err(())` stops the journal.
    ///
    /// At start, the length decides what becomes of the journal (D6): cut
    /// back to the restored snapshot's length ([`Action::TruncateJournal`]),
    /// kept off, or appended to as it is.
    pub fn handle_flushed(&mut self, now: Duration, result: Result<u64, ()>) {
        if !self.answered(Awaiting::Flush) {
            return;
        }
        match result {
            Ok(len) => self.journal_len = len,
            Err(()) => self.stop_journal(),
        }
        if self.phase != Phase::Starting {
            self.phase = Phase::PersistTick;
            self.advance(now);
            return;
        }
        let found = self.journal_len;
        let journal = match (self.journaling, self.base) {
            (false, _) => JournalAtStart::Failed,
            (true, JournalBase::At(len)) if found > len => {
                self.ask(Action::TruncateJournal(len), Awaiting::Truncate);
                return;
            }
            (true, JournalBase::At(recorded)) if found < recorded => {
                JournalAtStart::Shorter { found, recorded }
            }
            (true, JournalBase::Unrecorded) if found > 0 => {
                self.stop_journal();
                JournalAtStart::KeptOff
            }
            (true, _) => JournalAtStart::Continued { len: found },
        };
        self.started_journal(journal);
        self.persist();
        self.advance(now);
    }

    /// The publisher answered [`Action::Publish`].
    pub fn handle_published(&mut self, now: Duration, result: Published) {
        if !self.answered(Awaiting::Publish) {
            return;
        }
        match result {
            Published::Accepted => {
                if let Some(event) = self.outbox.remove(self.publishing) {
                    self.unsynced.push(event);
                }
                self.report.published += 1;
                self.delivered_in_round += 1;
            }
            Published::Fenced if self.config.fenced.is_some() => {
                self.report.fenced_publishes += 1;
                if let Some(lease) = self
                    .outbox
                    .get(self.publishing)
                    .and_then(|out| self.lease_of(&out.event.game_id))
                {
                    self.fence(lease);
                }
            }
            Published::Refused | Published::Fenced => {
                self.refused = true;
                self.report.publish_failures += 1;
            }
            Published::Closed => {
                self.refused = true;
                self.report.publish_failures += 1;
                if self.stop.is_none() {
                    self.stop = Some(StopReason::OutputClosed);
                    self.actions.push_back(Action::Interrupt);
                }
            }
        }
        self.advance(now);
    }

    /// The publisher answered [`Action::SyncPublisher`].
    ///
    /// `Err(())`: the events accepted since the last sync may not be
    /// durable: they go back to the front of the outbox, to be published
    /// again next tick (a repeat, never a loss).
    pub fn handle_synced(&mut self, now: Duration, result: Result<(), ()>) {
        if !self.answered(Awaiting::Sync) {
            return;
        }
        let unsynced = std::mem::take(&mut self.unsynced);
        if result.is_err() {
            self.report.sync_failures += 1;
            self.report.published = self.report.published.saturating_sub(unsynced.len());
            for event in unsynced.into_iter().rev() {
                self.outbox.push_front(event);
            }
            self.refused = true;
        }
        self.advance(now);
    }

    /// The state store answered [`Action::Persist`].
    pub fn handle_persisted(&mut self, now: Duration, result: Persisted) {
        if !self.answered(Awaiting::Persist) {
            return;
        }
        if self.phase == Phase::Starting {
            // The first write: the state store must be writable at all.
            if result == Persisted::Failed {
                self.stop_now(StopReason::StartRefused);
            } else {
                self.phase = Phase::Idle;
            }
            return;
        }
        match result {
            Persisted::Written => self.report.snapshots_written += 1,
            Persisted::Unchanged => {}
            Persisted::Failed | Persisted::Fenced => self.report.snapshot_failures += 1,
        }
        self.behind = matches!(result, Persisted::Failed | Persisted::Fenced);
        self.advance(now);
    }

    /// HA: the lease table answered [`Action::Write`], one answer per shard.
    ///
    /// Written or unchanged: the shard's events may be published (H2).
    /// Failed, or a shard asked for and not answered: they wait for a
    /// later write. Fenced: the shard is dropped (H3).
    pub fn handle_written(&mut self, now: Duration, written: &[(ShardLease, Persisted)]) {
        if !self.answered(Awaiting::Persist) {
            return;
        }
        for &(lease, result) in written {
            let Some(held) = self.held.get_mut(&lease.shard) else {
                continue;
            };
            if held.lease != lease {
                continue;
            }
            held.behind = matches!(result, Persisted::Failed | Persisted::Fenced);
            match result {
                Persisted::Written => self.report.snapshots_written += 1,
                Persisted::Unchanged => {}
                Persisted::Failed => self.report.snapshot_failures += 1,
                Persisted::Fenced => {
                    self.report.fenced_writes += 1;
                    self.fence(lease);
                }
            }
        }
        self.advance(now);
    }

    /// Shutdown was asked for: no tick starts after the one in flight.
    pub fn handle_shutdown(&mut self) {
        self.shutdown = true;
        if self.phase == Phase::Idle {
            self.stop_now(StopReason::Shutdown);
        }
    }

    /// HA: the mode of `game_id`'s shard, if it is held.
    fn mode_of(&self, game_id: &str) -> Option<Mode> {
        let shard = shard_of(game_id, self.config.fenced?);
        self.held.get(&shard).map(|held| held.mode)
    }

    /// HA: whether `game_id`'s events may be published: its shard Active
    /// and its last write answered written or unchanged (H2).
    fn publishable(&self, game_id: &str) -> bool {
        let Some(count) = self.config.fenced else {
            return true;
        };
        let held = self.held.get(&shard_of(game_id, count));
        held.is_some_and(|held| held.mode == Mode::Active && !held.behind)
    }

    /// HA: a sink refused `lease`: drop its shard and load it again only
    /// under a newer epoch (H3).
    fn fence(&mut self, lease: ShardLease) {
        self.fenced.insert(lease.shard, lease.epoch);
        self.report.shards_dropped += 1;
        self.drop_shard(lease.shard);
    }

    /// HA: `shard`'s games and pending events leave memory (its committed
    /// ones are in the lease table).
    fn drop_shard(&mut self, shard: u32) {
        let Some(count) = self.config.fenced else {
            return;
        };
        self.held.remove(&shard);
        let other = |game_id: &str| shard_of(game_id, count) != shard;
        self.states.retain(other);
        self.outbox.retain(|out| other(&out.event.game_id));
        self.unsynced.retain(|out| other(&out.event.game_id));
    }

    fn stop_journal(&mut self) {
        self.journaling = false;
        self.report.journal_stopped = true;
        self.actions
            .retain(|action| !matches!(action, Action::Journal(_)));
    }

    fn started_journal(&mut self, journal: JournalAtStart) {
        if let Some(restored) = &mut self.restored {
            restored.journal = journal;
        }
    }

    /// Ask for a snapshot write recording the journal's length at its last flush (D6).
    fn persist(&mut self) {
        let journal_len = self.journaling.then_some(self.journal_len);
        self.ask(Action::Persist { journal_len }, Awaiting::Persist);
    }

    /// Ask for the state store's write; false when there is nothing to write.
    ///
    /// HA: every held shard not Suspended (H4), each behind until its
    /// answer says written or unchanged; a Suspended one stays behind.
    fn write(&mut self) -> bool {
        if self.config.fenced.is_none() {
            self.persist();
            return true;
        }
        let mut leases = Vec::new();
        for held in self.held.values_mut() {
            held.behind = true;
            if held.mode != Mode::Suspended {
                leases.push(held.lease);
            }
        }
        if leases.is_empty() {
            return false;
        }
        self.ask(Action::Write(leases), Awaiting::Persist);
        true
    }

    /// Whether `what` was awaited (and is now answered); an answer nobody
    /// asked for is ignored.
    fn answered(&mut self, what: Awaiting) -> bool {
        if self.awaiting != Some(what) {
            return false;
        }
        self.awaiting = None;
        true
    }

    /// Yield `action` and wait for its answer.
    fn ask(&mut self, action: Action, awaiting: Awaiting) {
        self.actions.push_back(action);
        self.awaiting = Some(awaiting);
    }

    fn begin_round(&mut self, phase: fn(Delivery) -> Phase, first: Delivery) {
        self.delivered_in_round = 0;
        self.phase = phase(first);
    }

    /// Move through the tick until an answer is needed or the tick is over.
    fn advance(&mut self, now: Duration) {
        loop {
            if self.awaiting.is_some() {
                return;
            }
            match self.phase {
                Phase::Starting
                | Phase::Idle
                | Phase::Stopped
                | Phase::Leasing
                | Phase::Listing => return,
                Phase::Begin(step) => {
                    if self.delivery_round(step, Phase::Begin) {
                        return;
                    }
                    self.phase = Phase::Listing;
                    self.ask(Action::List, Awaiting::List);
                    return;
                }
                Phase::Probing => {
                    // Without a state store an event is published as soon as
                    // it is emitted (after its journal line, queued before it).
                    if !self.config.durable && !self.refused && !self.outbox.is_empty() {
                        self.publish(0);
                        return;
                    }
                    if !self.probes_done {
                        return;
                    }
                    self.jobs = None;
                    self.phase = Phase::Flush;
                }
                Phase::Flush => {
                    if self.journaling {
                        self.ask(Action::FlushJournal, Awaiting::Flush);
                        return;
                    }
                    self.phase = Phase::PersistTick;
                    if self.config.fenced.is_some() {
                        self.phase = Phase::Refresh;
                    }
                }
                Phase::Refresh => {
                    self.ask(Action::Lease, Awaiting::Lease);
                    return;
                }
                Phase::PersistTick => {
                    // The tick's own write just went first: no catching up.
                    self.begin_round(Phase::End, Delivery::Publishing);
                    // D5: the tick's state and events are on disk before
                    // any of them is published.
                    if self.config.durable && self.write() {
                        return;
                    }
                }
                Phase::End(step) => {
                    if self.delivery_round(step, Phase::End) {
                        return;
                    }
                    self.finish_tick(now);
                    return;
                }
            }
        }
    }

    /// One step of a delivery round; true while an answer is awaited.
    fn delivery_round(&mut self, step: Delivery, phase: fn(Delivery) -> Phase) -> bool {
        match step {
            Delivery::CatchingUp => {
                self.phase = phase(Delivery::Publishing);
                let behind = match self.config.fenced {
                    None => self.behind && !self.outbox.is_empty(),
                    Some(_) => self
                        .held
                        .values()
                        .any(|h| h.mode == Mode::Active && h.behind),
                };
                if self.config.durable && behind && self.write() {
                    return true;
                }
                self.delivery_round(Delivery::Publishing, phase)
            }
            Delivery::Publishing => {
                if let Some(index) = self.next_publishable() {
                    self.publish(index);
                    return true;
                }
                self.phase = phase(Delivery::Syncing);
                if !self.unsynced.is_empty() {
                    // Deliveries count only once durable: sync before recording them.
                    self.ask(Action::SyncPublisher, Awaiting::Sync);
                    return true;
                }
                self.delivery_round(Delivery::Syncing, phase)
            }
            Delivery::Syncing => {
                self.phase = phase(Delivery::Persisting);
                if self.config.durable && self.delivered_in_round > 0 {
                    // Record the deliveries now, so a crash later in the
                    // tick does not publish them again.
                    self.delivered_in_round = 0;
                    if self.write() {
                        return true;
                    }
                }
                self.delivery_round(Delivery::Persisting, phase)
            }
            Delivery::Persisting | Delivery::Done => {
                self.phase = phase(Delivery::Done);
                false
            }
        }
    }

    /// The outbox index of the next event to publish: the oldest, and in HA
    /// mode the oldest whose shard may publish (H2), which keeps each
    /// shard's order; none after a refusal this tick or while the state
    /// store is behind (D5).
    fn next_publishable(&self) -> Option<usize> {
        if self.refused || (self.config.durable && self.behind) {
            return None;
        }
        let mut outbox = self.outbox.iter();
        outbox.position(|out| self.publishable(&out.event.game_id))
    }

    fn publish(&mut self, index: usize) {
        if let Some(event) = self.outbox.get(index) {
            let event = event.clone();
            self.publishing = index;
            self.ask(Action::Publish(event), Awaiting::Publish);
        }
    }

    fn finish_tick(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.tick_started);
        self.report.duration = elapsed;
        self.report.pending = self.pending_len();
        self.report.tracked_games = self.states.len();
        self.report.overran = elapsed > self.config.interval;
        self.report.shards_suspended = self
            .held
            .values()
            .filter(|h| h.mode == Mode::Suspended)
            .count();
        // H7: a draining shard goes once a write of its last state succeeded.
        let last_written = |held: &Held| held.mode == Mode::Draining && !held.behind;
        self.release(last_written);
        self.run.add(&self.report);
        let skipped = self.report.skipped;
        self.phase = Phase::Idle;
        self.actions
            .push_back(Action::TickDone(std::mem::take(&mut self.report)));
        let reason = if let Some(reason) = self.stop {
            Some(reason)
        } else if self.shutdown {
            Some(StopReason::Shutdown)
        } else if self.tick_limit_reached() {
            Some(StopReason::TickLimit)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.stop_now(reason);
            return;
        }
        let until = match self.config.tick_limit {
            // `--ticks N`: back to back, but a skipped tick waits out its
            // interval (a store that is down must not burn the ticks at once).
            Some(_) if !skipped => now,
            _ if elapsed > self.config.interval => now,
            _ => self.tick_started + self.config.interval,
        };
        self.actions.push_back(Action::Wait { until });
    }

    fn tick_limit_reached(&self) -> bool {
        self.config
            .tick_limit
            .is_some_and(|limit| self.run.ticks >= limit)
    }

    /// HA: release (and forget) every held shard `which` accepts.
    fn release(&mut self, which: impl Fn(&Held) -> bool) {
        let held = self.held.values().filter(|held| which(held));
        let leases: Vec<ShardLease> = held.map(|held| held.lease).collect();
        if leases.is_empty() {
            return;
        }
        for lease in &leases {
            self.drop_shard(lease.shard);
        }
        self.actions.push_back(Action::Release(leases));
    }

    fn stop_now(&mut self, reason: StopReason) {
        // H7: the run's last write is done; shutdown gives every lease back.
        self.release(|_| true);
        self.phase = Phase::Stopped;
        self.run.stopped = Some(reason);
        self.actions.push_back(Action::Stop(reason));
    }
}

/// The records to probe this tick: one per game, the first listed (D3).
pub fn probe_jobs(records: Vec<RuntimeRecord>) -> Vec<RuntimeRecord> {
    let keep: Vec<bool> = {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        records
            .iter()
            .map(|record| seen.insert(record.game_id.as_str()))
            .collect()
    };
    records
        .into_iter()
        .zip(keep)
        .filter_map(|(record, keep)| keep.then_some(record))
        .collect()
}
