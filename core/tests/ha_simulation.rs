//! A deterministic, seeded simulation of failover (issue 25 item 4,
//! FAILOVER.md section 4): 2–4 instances, each the real [`LeaseMachine`]
//! and [`TickMachine`] (HA mode) driven as the shell's lease and tick
//! threads drive them, against one lease table and one stream
//! (`support/ha_world.rs`), over a fleet whose probe outcomes flip.
//!
//! **Time.** The world steps 50 ms of the database's clock, the only judge
//! of expiry. Each instance reads its own monotonic clock (a random origin,
//! a rate of 0.9–1.1: within the TTL/self-fence tolerance of 1.5). Test
//! timings: TTL 3 s, renew 0.5 s, self-fence 2 s, interval 1 s, request
//! timeout 2 s. Every statement runs at the database when sent; its reply
//! comes 50–100 ms later unless a fault says otherwise.
//!
//! **Faults**, drawn from the seed during the first 60 s, then 30 s quiet:
//! - *kill -9*: the instance vanishes at once, mid-tick, its memory lost
//!   (what it sent has run); a fresh instance (a new id) may join later;
//! - *pause*: not stepped for TTL to TTL + 2 × self-fence while its clock
//!   runs (BOOTTIME); then it carries on with its stale memory and the
//!   replies that arrived meanwhile;
//! - *partition from the database*: each request is dropped or runs with
//!   its reply lost, answered as failed at the timeout; a reply in flight
//!   when it starts is lost;
//! - *flaky link*: replies take 0.5–1.9 s (under the timeout), and a
//!   third of the requests are dropped or run with their reply lost;
//! - *lost replies*, always: 3 % of statements run and never answer;
//! - *database restart*: every request fails at once and replies in flight
//!   are lost; committed rows survive (short outages and ones past the TTL);
//! - *Redis down*: publishes refused; 3 % of publish replies lost, 2 % of
//!   syncs failed, always;
//! - *SIGTERM*: `handle_shutdown` on both machines, the releases after the
//!   last write, then the instance leaves;
//! - *join* (at most 4 live; the quiet period starts with at least 2).
//!
//! **Checked at every step:**
//! - **S1** every write the table accepts its oracle (the log of grants,
//!   not the rows) says the writer holds under that epoch by the database's
//!   clock, and every write it refuses the oracle says it does not; every
//!   acquire takes a free or expired shard under epoch + 1, every renewal an
//!   unexpired lease of its owner; a committed lineage never goes back;
//! - **S2** every publish the stream accepts is not below an epoch it
//!   accepted or was raised to, comes from an instance granted that lease,
//!   and its event was committed in its shard's row before (H2, strict D5).
//!   Not "held by the database's clock": the stream's fence (FAILOVER.md
//!   2.6) refuses an old epoch only once the new owner has raised it, so an
//!   owner paused between its write and its publish gets a committed event
//!   through until then (counted as "accepted past the lease"; harmless:
//!   the new owner's copy has the same id, and E2 checks the order);
//! - **S3** self-fence: every lease a view shows active or draining is held
//!   by that instance under that epoch by the database's clock;
//! - **S4** every snapshot written is its lineage's fold: the Go model's
//!   counters over the outcomes folded and committed across owners, and
//!   pending exactly the lineage's events not yet in the stream, in order;
//! - **H1** a probed game's shard is active in the instance's last view and
//!   loaded; **L6** one lease request at a time.
//!
//! **Checked at the end** of the quiet period: **E1** every shard owned by
//! a live instance, max − min ≤ 1; **E2** per game, the stream holds
//! exactly the events of its shard's committed lineage, in order: nothing
//! committed lost, nothing invented, no id twice, types alternating and
//! episodes rising, and `probe_failed` exactly when the Go model counts F
//! failures across owners.
//!
//! `HEALTHPROBE_SIM_SEED` (default 20261208) and `HEALTHPROBE_SIM_SCENARIOS`
//! (default 500) pick the runs; a failure prints the seed, what broke and
//! the command that re-runs it alone, which prints its trace.

#[allow(dead_code)] // Shared with the property tests, which use the rest.
#[path = "support/go_model.rs"]
mod go_model;
#[path = "support/ha_world.rs"]
mod ha_world;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::time::Duration;

use healthprobe_core::lease::{LeaseAction, LeaseConfig, LeaseMachine, LeaseView, ShardLease};
use healthprobe_core::shard::shard_of;
use healthprobe_core::tick::{
    Action, MachineConfig, Persisted, ProbeBatch, ProbeClass, Published, Snapshot, TickMachine,
};
use healthprobe_core::{EventType, Policy, ProbeOutcome, ProbeResult, RuntimeRecord, Timestamp};
use proptest::prelude::RngExt;
use proptest::test_runner::{RngAlgorithm, TestRng};

use go_model::observed;
use ha_world::{Db, Lineage, Ms, Stream};

const DEFAULT_SEED: u64 = 20_261_208;
const DEFAULT_SCENARIOS: u64 = 500;

const STEP: Ms = 50;
const TTL: Ms = 3_000;
const RENEW: Ms = 500;
const SELF_FENCE: Ms = 2_000;
const INTERVAL: Ms = 1_000;
const TIMEOUT: Ms = 2_000;
const CHAOS: Ms = 60_000;
const QUIET: Ms = 30_000;
const MAX_LIVE: usize = 4;

fn ms(ms: Ms) -> Duration {
    Duration::from_millis(ms)
}

/// A fault, aimed at the `n % live`-th live instance where it names one.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill(usize),
    Pause(usize, Ms, PausePoint),
    Partition(usize, Ms),
    Flaky(usize, Ms),
    DbRestart(Ms),
    RedisDown(Ms),
    Sigterm(usize),
    Join,
}

/// Where a pause stops the instance (FAILOVER.md 4, test 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PausePoint {
    /// Wherever it is.
    Now,
    /// Its next write yielded, not yet sent.
    BeforeWrite,
    /// Its next write sent, before the answer.
    AfterWrite,
    /// Its next publish sent, before the answer.
    AfterPublish,
}

/// One game of the fleet: when it is listed, and when its probes fail.
#[derive(Debug)]
struct Game {
    id: String,
    /// Not listed during this window (R8 prunes it).
    away: Option<(Ms, Ms)>,
    /// Flips between healthy and failing, at these times, from `healthy_first`.
    flips: Vec<Ms>,
    healthy_first: bool,
}

impl Game {
    fn listed(&self, now: Ms) -> bool {
        self.away
            .is_none_or(|(from, until)| now < from || now >= until)
    }

    fn result(&self, now: Ms) -> ProbeResult {
        let flips = self.flips.partition_point(|&at| at <= now);
        if self.healthy_first == (flips % 2 == 0) {
            ProbeResult::Healthy
        } else {
            ProbeResult::Unhealthy {
                status: 503,
                error: "unexpected status 503".into(),
            }
        }
    }
}

#[derive(Debug)]
struct Scenario {
    shards: u32,
    policy: Policy,
    games: Vec<Game>,
    initial: usize,
    faults: Vec<(Ms, Fault)>,
}

impl Scenario {
    fn draw(rng: &mut TestRng) -> Self {
        let policy = Policy::new(rng.random_range(1..=4), rng.random_range(1..=2)).expect("valid");
        let games = (0..rng.random_range(6..=20))
            .map(|i| {
                let mut flips = Vec::new();
                let mut at = 0;
                // Steady for the last 20 s: every event emitted is delivered by the end.
                while at < CHAOS + QUIET - 20_000 {
                    at += rng.random_range(300..6_000);
                    flips.push(at);
                }
                let away = rng.random_bool(0.2).then(|| {
                    let from = rng.random_range(0..CHAOS);
                    (from, from + rng.random_range(2_000..10_000))
                });
                let healthy_first = rng.random_bool(0.5);
                Game {
                    id: format!("g{i}"),
                    away,
                    flips,
                    healthy_first,
                }
            })
            .collect();
        let mut faults: Vec<(Ms, Fault)> = (0..rng.random_range(3..=12))
            .map(|_| {
                let at = rng.random_range(2_000..CHAOS - 2_000) / STEP * STEP;
                let who = rng.random_range(0..MAX_LIVE);
                let fault = match rng.random_range(0..9) {
                    0 => Fault::Kill(who),
                    1 | 2 => {
                        let length = rng.random_range(SELF_FENCE..=TTL + 2 * SELF_FENCE);
                        let points = [
                            PausePoint::Now,
                            PausePoint::BeforeWrite,
                            PausePoint::AfterWrite,
                            PausePoint::AfterPublish,
                        ];
                        Fault::Pause(who, length, points[rng.random_range(0..points.len())])
                    }
                    3 => Fault::Partition(who, rng.random_range(1_000..8_000)),
                    4 => Fault::Flaky(who, rng.random_range(2_000..8_000)),
                    5 => Fault::DbRestart(rng.random_range(500..6_000)),
                    6 => Fault::RedisDown(rng.random_range(1_000..5_000)),
                    7 => Fault::Sigterm(who),
                    _ => Fault::Join,
                };
                (at, fault)
            })
            .collect();
        faults.sort_by_key(|(at, _)| *at);
        Self {
            shards: rng.random_range(3..=12),
            policy,
            games,
            initial: rng.random_range(2..=4),
            faults,
        }
    }
}

/// An instance's monotonic clock: its own origin and rate.
#[derive(Debug, Clone, Copy)]
struct Clock {
    born: Ms,
    origin: f64,
    rate: f64,
}

impl Clock {
    fn at(&self, now: Ms) -> Duration {
        Duration::from_secs_f64((self.origin + (now - self.born) as f64 * self.rate) / 1_000.0)
    }
}

/// A reply on its way to the lease thread.
#[derive(Debug)]
enum LeaseReply {
    Heartbeat(Option<healthprobe_core::lease::Heartbeat>),
    Acquired(Option<Vec<ShardLease>>),
    /// The driver's own request: the leases the tick side gave back,
    /// forgotten by the lease machine as it is sent (a heartbeat after it
    /// adopts any whose release failed).
    Released,
}

/// A shard's committed snapshot (`None`: never written) and its lineage.
type LoadedRow = (Option<Snapshot>, Lineage);

/// A failed run: its seed, what broke, its trace.
type Failure = (u64, String, Vec<String>);

/// A reply on its way to the tick thread.
#[derive(Debug)]
enum TickReply {
    /// Per shard, its row (`None`: lost, or the load failed).
    Loaded(Vec<(ShardLease, Option<LoadedRow>)>),
    Listing(Option<Vec<RuntimeRecord>>),
    /// Each shard's answer, with the snapshot sent (for the unchanged skip).
    Written(Vec<(ShardLease, Persisted, Snapshot)>),
    Published(Published, ShardLease),
    Probed(ProbeBatch),
}

#[derive(Debug)]
struct InFlight<T> {
    sent: Ms,
    due: Ms,
    /// Through the database: lost if it restarts, or a partition starts,
    /// before the reply arrives.
    via_db: bool,
    reply: T,
}

impl LeaseReply {
    fn lost(self) -> Self {
        match self {
            Self::Heartbeat(_) => Self::Heartbeat(None),
            Self::Acquired(_) => Self::Acquired(None),
            Self::Released => Self::Released,
        }
    }
}

impl TickReply {
    fn lost(self) -> Self {
        match self {
            Self::Loaded(loaded) => {
                Self::Loaded(loaded.into_iter().map(|(l, _)| (l, None)).collect())
            }
            Self::Listing(_) => Self::Listing(None),
            Self::Written(written) => Self::Written(
                written
                    .into_iter()
                    .map(|(l, p, s)| match p {
                        Persisted::Unchanged => (l, p, s),
                        _ => (l, Persisted::Failed, s),
                    })
                    .collect(),
            ),
            other => other,
        }
    }
}

/// One process: both machines, the driver's state, and its ghost lineages.
#[derive(Debug)]
struct Instance {
    id: String,
    clock: Clock,
    lease: LeaseMachine,
    tick: TickMachine,
    lease_req: Option<InFlight<LeaseReply>>,
    tick_req: Option<InFlight<TickReply>>,
    /// Leases the tick side gave back, for the lease thread to release.
    releases: Vec<ShardLease>,
    /// The tick machine waits for this local time.
    waiting: Option<Duration>,
    /// The last view given to the tick machine.
    view: LeaseView,
    /// Ghost: per shard loaded, the lineage of what memory holds.
    lineages: BTreeMap<u32, Lineage>,
    /// Leases a sink fenced: nothing of them may be yielded again (H3).
    fenced: BTreeSet<ShardLease>,
    /// The driver's unchanged skip: the last snapshot written per lease.
    written: BTreeMap<ShardLease, Snapshot>,
    paused_until: Ms,
    /// A pause waiting for its point.
    pause: Option<(PausePoint, Ms)>,
    /// The action a pause stopped before.
    stashed: Option<Action>,
    partitioned_until: Ms,
    partition_starts: Vec<Ms>,
    slow_until: Ms,
    sigterm: bool,
    stopping: bool,
    tick_stopped: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    instances: u64,
    faults: [u64; 8],
    fenced_writes: u64,
    fenced_publishes: u64,
    /// Publishes the stream accepted from an instance past its lease by
    /// the database's clock (before the new owner raised the fence).
    late_publishes: u64,
    later_epochs: u64,
    events: u64,
}

impl Stats {
    fn add(&mut self, other: &Self) {
        self.instances += other.instances;
        for (sum, n) in self.faults.iter_mut().zip(other.faults) {
            *sum += n;
        }
        self.fenced_writes += other.fenced_writes;
        self.fenced_publishes += other.fenced_publishes;
        self.late_publishes += other.late_publishes;
        self.later_epochs += other.later_epochs;
        self.events += other.events;
    }
}

struct World {
    rng: TestRng,
    scenario: Scenario,
    now: Ms,
    db: Db,
    stream: Stream,
    instances: Vec<Instance>,
    db_down_until: Ms,
    db_restarts: Vec<Ms>,
    redis_down_until: Ms,
    joined: usize,
    stats: Stats,
    /// With a single scenario: every step worth reading, printed on failure.
    trace: Option<Vec<String>>,
}

type Check = Result<(), String>;

impl World {
    fn new(seed: u64, detail: bool) -> Self {
        let mut bytes = [0; 32];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&seed.to_le_bytes());
        }
        let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
        let scenario = Scenario::draw(&mut rng);
        let db = Db::new(scenario.shards, TTL, scenario.policy);
        let mut world = Self {
            rng,
            db,
            stream: Stream::default(),
            instances: Vec::new(),
            now: 0,
            db_down_until: 0,
            db_restarts: Vec::new(),
            redis_down_until: 0,
            joined: 0,
            stats: Stats::default(),
            trace: detail.then(Vec::new),
            scenario,
        };
        for _ in 0..world.scenario.initial {
            world.join();
        }
        world
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            trace.push(format!("{:>6} ms  {}", self.now, what()));
        }
    }

    fn join(&mut self) {
        let id = format!("i{}", self.joined);
        self.joined += 1;
        self.stats.instances += 1;
        let clock = Clock {
            born: self.now,
            origin: self.rng.random_range(0.0..1e6),
            rate: self.rng.random_range(0.9..=1.1),
        };
        let mut config = LeaseConfig::new(id.clone(), self.scenario.shards);
        (config.ttl, config.renew, config.self_fence) = (ms(TTL), ms(RENEW), ms(SELF_FENCE));
        let lease = LeaseMachine::new(config, clock.at(self.now)).expect("valid timings");
        let mut machine = MachineConfig::new(ms(INTERVAL));
        machine.fenced = Some(self.scenario.shards);
        let mut tick = TickMachine::new(machine, self.scenario.policy);
        tick.start_tick(clock.at(self.now));
        self.note(|| format!("{id} joins (rate {:.3})", clock.rate));
        self.instances.push(Instance {
            id,
            clock,
            lease,
            tick,
            lease_req: None,
            tick_req: None,
            releases: Vec::new(),
            waiting: None,
            view: LeaseView::default(),
            lineages: BTreeMap::new(),
            written: BTreeMap::new(),
            fenced: BTreeSet::new(),
            paused_until: 0,
            pause: None,
            stashed: None,
            partitioned_until: 0,
            partition_starts: Vec::new(),
            slow_until: 0,
            sigterm: false,
            stopping: false,
            tick_stopped: false,
        });
    }

    fn fire(&mut self, fault: Fault) {
        let live = self.instances.len();
        let index = |who: usize| (live > 0).then(|| who % live);
        let now = self.now;
        let kind = match fault {
            Fault::Kill(who) => {
                let Some(i) = index(who) else { return };
                let gone = self.instances.remove(i);
                self.note(|| format!("fault: kill -9 {}", gone.id));
                0
            }
            Fault::Pause(who, length, point) => {
                let Some(i) = index(who) else { return };
                let instance = &mut self.instances[i];
                match point {
                    PausePoint::Now => {
                        instance.paused_until = instance.paused_until.max(now + length)
                    }
                    _ => instance.pause = Some((point, length)),
                }
                let id = instance.id.clone();
                self.note(|| format!("fault: pause {id} {point:?} for {length} ms"));
                1
            }
            Fault::Partition(who, length) => {
                let Some(i) = index(who) else { return };
                let instance = &mut self.instances[i];
                instance.partitioned_until = now + length;
                instance.partition_starts.push(now);
                let id = instance.id.clone();
                self.note(|| format!("fault: partition {id} from the database for {length} ms"));
                2
            }
            Fault::Flaky(who, length) => {
                let Some(i) = index(who) else { return };
                self.instances[i].slow_until = now + length;
                let id = self.instances[i].id.clone();
                self.note(|| format!("fault: flaky link to {id} for {length} ms"));
                3
            }
            Fault::DbRestart(length) => {
                self.db_down_until = now + length;
                self.db_restarts.push(now);
                self.note(|| format!("fault: database down for {length} ms"));
                4
            }
            Fault::RedisDown(length) => {
                self.redis_down_until = now + length;
                self.note(|| format!("fault: Redis down for {length} ms"));
                5
            }
            Fault::Sigterm(who) => {
                let Some(i) = index(who) else { return };
                self.instances[i].sigterm = true;
                let id = self.instances[i].id.clone();
                self.note(|| format!("fault: SIGTERM {id}"));
                6
            }
            Fault::Join => {
                if live >= MAX_LIVE {
                    return;
                }
                self.join();
                7
            }
        };
        self.stats.faults[kind] += 1;
    }

    /// Run one statement for instance `who`: the value and when its reply
    /// arrives, or `None` (failed, or lost: the statement may have run).
    fn db_call<T>(
        &mut self,
        who: usize,
        statement: impl FnOnce(&mut Db, Ms) -> Result<T, String>,
    ) -> Result<(Option<T>, Ms), String> {
        let now = self.now;
        if now < self.db_down_until {
            return Ok((None, now + STEP));
        }
        let instance = &self.instances[who];
        let (partitioned, slow) = (now < instance.partitioned_until, now < instance.slow_until);
        // A flaky link: a third of the requests never arrive.
        if partitioned || (slow && self.rng.random_bool(0.3)) {
            if self.rng.random_bool(0.5) {
                statement(&mut self.db, now)?;
            }
            return Ok((None, now + TIMEOUT));
        }
        let value = statement(&mut self.db, now)?;
        if self.rng.random_bool(0.03) {
            return Ok((None, now + TIMEOUT));
        }
        let delay = match slow {
            true => self.rng.random_range(500..1_900),
            false => self.rng.random_range(1..=2) * STEP,
        };
        Ok((Some(value), now + delay))
    }

    /// Whether a reply sent at `sent` through the database is lost by now.
    fn cut(&self, who: usize, sent: Ms) -> bool {
        let cut = |starts: &[Ms]| starts.iter().any(|&at| sent < at && at <= self.now);
        cut(&self.db_restarts) || cut(&self.instances[who].partition_starts)
    }

    fn step(&mut self) -> Check {
        let mut who = 0;
        while who < self.instances.len() {
            let instance = &mut self.instances[who];
            if self.now < instance.paused_until {
                who += 1;
                continue;
            }
            if instance.sigterm && !instance.stopping {
                instance.stopping = true;
                instance.tick.handle_shutdown();
                instance.lease.handle_shutdown();
            }
            self.step_lease(who)?;
            self.step_tick(who)?;
            let instance = &self.instances[who];
            if instance.tick_stopped && instance.releases.is_empty() && instance.lease_req.is_none()
            {
                let id = instance.id.clone();
                if self.now >= self.db_down_until && self.now >= instance.partitioned_until {
                    self.db.leave(&id);
                }
                self.note(|| format!("{id} stopped"));
                self.instances.remove(who);
                continue;
            }
            who += 1;
        }
        Ok(())
    }

    /// The lease thread: the answer due, then the next request (L6).
    fn step_lease(&mut self, who: usize) -> Check {
        let now = self.now;
        let local = self.instances[who].clock.at(now);
        if let Some(req) = self.instances[who].lease_req.take_if(|req| req.due <= now) {
            let reply = if self.cut(who, req.sent) {
                req.reply.lost()
            } else {
                req.reply
            };
            let id = &self.instances[who].id;
            if let Some(trace) = &mut self.trace {
                trace.push(format!("{now:>6} ms  {id} hears {reply:?}"));
            }
            let lease = &mut self.instances[who].lease;
            match reply {
                LeaseReply::Heartbeat(reply) => lease.handle_heartbeat(reply.ok_or(())),
                LeaseReply::Acquired(reply) => lease.handle_acquired(reply.ok_or(())),
                LeaseReply::Released => {}
            }
        }
        let instance = &mut self.instances[who];
        let id = instance.id.clone();
        match &instance.lease_req {
            Some(InFlight {
                reply: LeaseReply::Released,
                ..
            }) => return Ok(()),
            Some(_) => {
                // L6: nothing more while a request awaits its answer.
                return match instance.lease.poll_action(local) {
                    None => Ok(()),
                    Some(action) => Err(format!(
                        "L6: {id} asked for {action:?} with a request outstanding"
                    )),
                };
            }
            None => {}
        }
        let (reply, due) = if !instance.releases.is_empty() {
            let leases = std::mem::take(&mut instance.releases);
            instance.lease.handle_released(&leases);
            let (_, due) = self.db_call(who, |db, now| db.release(&id, &leases, now))?;
            (LeaseReply::Released, due)
        } else {
            match instance.lease.poll_action(local) {
                Some(LeaseAction::Heartbeat) => {
                    let (reply, due) = self.db_call(who, |db, now| db.heartbeat(&id, now))?;
                    (LeaseReply::Heartbeat(reply), due)
                }
                Some(LeaseAction::Acquire { want }) => {
                    let (reply, due) = self.db_call(who, |db, now| db.acquire(&id, want, now))?;
                    if let Some(taken) = &reply {
                        self.stats.later_epochs +=
                            taken.iter().filter(|l| l.epoch > 1).count() as u64;
                        self.note(|| format!("{id} acquired {taken:?}"));
                    }
                    (LeaseReply::Acquired(reply), due)
                }
                Some(LeaseAction::Wait { .. } | LeaseAction::Stop) | None => return Ok(()),
            }
        };
        self.instances[who].lease_req = Some(InFlight {
            sent: now,
            due,
            via_db: true,
            reply,
        });
        Ok(())
    }

    /// The tick thread: the answer due, then every action until one needs
    /// an answer (or the machine waits).
    fn step_tick(&mut self, who: usize) -> Check {
        let now = self.now;
        let local = self.instances[who].clock.at(now);
        if let Some(req) = self.instances[who].tick_req.take_if(|req| req.due <= now) {
            let lost = req.via_db && self.cut(who, req.sent);
            self.deliver(who, if lost { req.reply.lost() } else { req.reply })?;
        }
        let instance = &mut self.instances[who];
        if instance.tick_req.is_none() && instance.waiting.is_some_and(|until| local >= until) {
            instance.waiting = None;
            instance.tick.start_tick(local);
        }
        while self.instances[who].tick_req.is_none() && self.now >= self.instances[who].paused_until
        {
            let instance = &mut self.instances[who];
            let Some(action) = instance
                .stashed
                .take()
                .or_else(|| instance.tick.poll_action())
            else {
                break;
            };
            let point = match &action {
                Action::Write(_) => [PausePoint::BeforeWrite, PausePoint::AfterWrite],
                Action::Publish(_) => [PausePoint::AfterPublish; 2],
                _ => [PausePoint::Now; 2],
            };
            if let Some((at, length)) = instance.pause.take_if(|(at, _)| point.contains(at)) {
                instance.paused_until = now + length;
                let id = instance.id.clone();
                self.note(|| format!("{id} pauses {at:?} for {length} ms"));
                if at == PausePoint::BeforeWrite {
                    self.instances[who].stashed = Some(action);
                    break;
                }
            }
            self.perform(who, action)?;
        }
        Ok(())
    }

    fn perform(&mut self, who: usize, action: Action) -> Check {
        let now = self.now;
        let shards = self.scenario.shards;
        let local = self.instances[who].clock.at(now);
        let id = self.instances[who].id.clone();
        let touched = match &action {
            Action::Load(leases) | Action::Write(leases) => leases.clone(),
            Action::Publish(out) => self.instances[who]
                .tick
                .lease_of(&out.event.game_id)
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        if let Some(lease) = touched
            .iter()
            .find(|l| self.instances[who].fenced.contains(l))
        {
            return Err(format!(
                "H3: {id} yields {action:?} for {lease:?} after a sink fenced it"
            ));
        }
        let (reply, due, via_db) = match action {
            Action::Lease => {
                let view = self.instances[who].lease.view(local);
                self.self_fence(who, &view)?;
                let instance = &mut self.instances[who];
                instance.tick.handle_lease(local, &view);
                instance.view = view;
                return Ok(());
            }
            Action::Load(leases) => {
                let (loaded, due) = self.db_call(who, |db, _| {
                    Ok(leases
                        .iter()
                        .map(|&l| (l, db.load(&id, l)))
                        .collect::<Vec<_>>())
                })?;
                let loaded = loaded.unwrap_or_else(|| leases.iter().map(|&l| (l, None)).collect());
                (TickReply::Loaded(loaded), due, true)
            }
            Action::List => {
                let games = &self.scenario.games;
                let listing: Vec<RuntimeRecord> = games
                    .iter()
                    .filter(|game| game.listed(now))
                    .map(|game| {
                        RuntimeRecord::running(&game.id, format!("c-{}", game.id), "http://engine/")
                    })
                    .collect();
                let (listing, due) = self.db_call(who, |_, _| Ok(listing))?;
                (TickReply::Listing(listing), due, true)
            }
            Action::Probe(batch) => {
                let instance = &self.instances[who];
                for record in batch.jobs().iter() {
                    let shard = shard_of(&record.game_id, shards);
                    let active = instance.view.active.iter().any(|l| l.shard == shard);
                    if !active || !instance.lineages.contains_key(&shard) {
                        return Err(format!(
                            "H1: {id} probes {} of shard {shard}, not active in its view or never loaded",
                            record.game_id
                        ));
                    }
                }
                (TickReply::Probed(batch), now + STEP, false)
            }
            Action::Write(leases) => {
                let instance = &self.instances[who];
                let mut answers = Vec::new();
                let mut statement = Vec::new();
                for lease in leases {
                    let snapshot = instance.tick.shard_snapshot(lease.shard);
                    let Some(lineage) = instance.lineages.get(&lease.shard) else {
                        return Err(format!("{id} writes shard {} it never loaded", lease.shard));
                    };
                    memory_is_its_lineage(&self.stream, lineage, &snapshot)
                        .map_err(|broken| format!("S4: {id} writes {lease:?}: {broken}"))?;
                    if instance.written.get(&lease) == Some(&snapshot) {
                        answers.push((lease, Persisted::Unchanged, snapshot));
                    } else {
                        statement.push((lease, snapshot, lineage.clone()));
                    }
                }
                let (written, due) = self.db_call(who, |db, now| {
                    let mut written = Vec::new();
                    for (lease, snapshot, lineage) in statement {
                        let ok = db.write(&id, lease, snapshot.clone(), lineage, now)?;
                        let answer = if ok {
                            Persisted::Written
                        } else {
                            Persisted::Fenced
                        };
                        written.push((lease, answer, snapshot));
                    }
                    Ok(written)
                })?;
                self.note(|| {
                    format!(
                        "{id} writes: {written:?}",
                        written = written.as_ref().map(|w| w
                            .iter()
                            .map(|(l, p, _)| (l.shard, l.epoch, *p))
                            .collect::<Vec<_>>())
                    )
                });
                answers.extend(written.unwrap_or_default());
                (TickReply::Written(answers), due, true)
            }
            Action::Publish(out) => {
                let Some(fence) = self.instances[who].tick.lease_of(&out.event.game_id) else {
                    return Err(format!(
                        "{id} publishes {} of a shard it does not hold",
                        out.id
                    ));
                };
                let answer = if now < self.redis_down_until {
                    Published::Refused
                } else {
                    let answer = self.stream.publish(&out, fence, &id, &self.db)?;
                    let held = self.db.audit.holds(fence.shard, &id, fence.epoch, now);
                    if answer == Published::Accepted && !held {
                        self.stats.late_publishes += 1;
                    }
                    self.note(|| format!("{id} publishes {} under {fence:?}: {answer:?}", out.id));
                    match self.rng.random_bool(0.03) {
                        true => Published::Refused,
                        false => answer,
                    }
                };
                (TickReply::Published(answer, fence), now + STEP, false)
            }
            Action::SyncPublisher => {
                let synced = if self.rng.random_bool(0.02) {
                    Err(())
                } else {
                    Ok(())
                };
                self.instances[who].tick.handle_synced(local, synced);
                return Ok(());
            }
            Action::Release(leases) => {
                self.note(|| format!("{id} releases {leases:?}"));
                self.instances[who].releases.extend(leases);
                return Ok(());
            }
            Action::TickDone(report) => {
                self.stats.fenced_writes += report.fenced_writes as u64;
                self.stats.fenced_publishes += report.fenced_publishes as u64;
                self.instances[who].lease.handle_tick_progress(local);
                return Ok(());
            }
            Action::Wait { until } => {
                self.instances[who].waiting = Some(until);
                return Ok(());
            }
            Action::Stop(_) => {
                self.instances[who].tick_stopped = true;
                return Ok(());
            }
            other => return Err(format!("{id}: not an HA action: {other:?}")),
        };
        self.instances[who].tick_req = Some(InFlight {
            sent: now,
            due,
            via_db,
            reply,
        });
        Ok(())
    }

    fn deliver(&mut self, who: usize, reply: TickReply) -> Check {
        let now = self.now;
        let shards = self.scenario.shards;
        let redis_up = now >= self.redis_down_until;
        let instance = &mut self.instances[who];
        let local = instance.clock.at(now);
        match reply {
            TickReply::Loaded(loaded) => {
                let mut answers = Vec::new();
                for (lease, row) in loaded {
                    let Some((snapshot, lineage)) = row else {
                        answers.push((lease, Err(())));
                        continue;
                    };
                    instance.lineages.insert(lease.shard, lineage);
                    if redis_up {
                        self.stream.raise(lease);
                    }
                    answers.push((lease, Ok(snapshot)));
                }
                instance.tick.handle_loaded_shards(local, answers);
            }
            TickReply::Listing(listing) => {
                if let Some(records) = &listing {
                    let running: Vec<String> = records.iter().map(|r| r.game_id.clone()).collect();
                    for lineage in instance.lineages.values_mut() {
                        lineage.model.prune_states(&running);
                    }
                }
                instance.tick.handle_listing(local, listing.ok_or(()));
            }
            TickReply::Written(written) => {
                let mut answers = Vec::new();
                for (lease, answer, snapshot) in written {
                    match answer {
                        Persisted::Written => {
                            instance.written.insert(lease, snapshot);
                        }
                        Persisted::Unchanged => {}
                        Persisted::Failed => {
                            instance.written.remove(&lease);
                        }
                        Persisted::Fenced => {
                            instance.written.remove(&lease);
                            instance.fenced.insert(lease);
                        }
                    }
                    answers.push((lease, answer));
                }
                instance.tick.handle_written(local, &answers);
            }
            TickReply::Published(answer, fence) => {
                if answer == Published::Fenced {
                    instance.fenced.insert(fence);
                }
                instance.tick.handle_published(local, answer);
            }
            TickReply::Probed(batch) => {
                let observed_at =
                    Timestamp::from_millisecond(1_800_000_000_000 + now as i64).expect("valid");
                for (job, record) in batch.jobs().iter().enumerate() {
                    let game = self
                        .scenario
                        .games
                        .iter()
                        .find(|g| g.id == record.game_id)
                        .expect("a game");
                    let result = game.result(now);
                    let outcome = ProbeOutcome {
                        game_id: record.game_id.clone(),
                        container_id: record.current_container_id.clone(),
                        observed_at,
                        result: result.clone(),
                    };
                    let shard = shard_of(&record.game_id, shards);
                    let lineage = instance
                        .lineages
                        .get_mut(&shard)
                        .expect("checked at the probe");
                    if let Some(event) = lineage.model.probe_with_id(&outcome) {
                        lineage.events.push(event);
                    }
                    let class = match result.is_healthy() {
                        true => ProbeClass::Ok,
                        false => ProbeClass::BadStatus,
                    };
                    instance
                        .tick
                        .handle_outcome(local, job, observed_at, result, class);
                }
                instance.tick.handle_probes_done(local);
            }
        }
        Ok(())
    }

    /// S3: what a view lets the tick side act on is held by the database's clock.
    fn self_fence(&self, who: usize, view: &LeaseView) -> Check {
        let id = &self.instances[who].id;
        for lease in view.active.iter().chain(&view.draining) {
            if !self.db.audit.holds(lease.shard, id, lease.epoch, self.now) {
                return Err(format!(
                    "S3: {id}'s view shows {lease:?} to act on at {} ms, a lease it does not \
                     hold by the database's clock",
                    self.now
                ));
            }
        }
        Ok(())
    }

    /// E1 and E2, after the quiet period.
    fn check_end(&self) -> Check {
        let live: Vec<&str> = self.instances.iter().map(|i| i.id.as_str()).collect();
        let mut owned: BTreeMap<&str, usize> = live.iter().map(|id| (*id, 0)).collect();
        for (shard, row) in self.db.rows.iter().enumerate() {
            let owner = row.owner.as_deref().filter(|_| row.expires > self.now);
            match owner.and_then(|owner| owned.get_mut(owner)) {
                Some(count) => *count += 1,
                None => {
                    return Err(format!(
                        "E1: shard {shard} is not owned by a live instance ({:?}, live {live:?})",
                        row.owner
                    ));
                }
            }
        }
        let (min, max) = (owned.values().min(), owned.values().max());
        if max.zip(min).is_none_or(|(max, min)| max - min > 1) {
            return Err(format!("E1: unbalanced after the quiet period: {owned:?}"));
        }
        let mut seen = BTreeSet::new();
        for entry in &self.stream.entries {
            if !seen.insert(&entry.id) {
                return Err(format!("E2: {} twice in the stream", entry.id));
            }
        }
        for game in &self.scenario.games {
            let row = &self.db.rows[shard_of(&game.id, self.scenario.shards) as usize];
            let expected: Vec<(&str, _)> = row
                .lineage
                .events
                .iter()
                .filter(|(_, event)| event.game_id == game.id)
                .map(|(id, event)| (id.as_str(), event))
                .collect();
            let streamed: Vec<(&str, _)> = self
                .stream
                .entries
                .iter()
                .filter(|entry| entry.event.game_id == game.id)
                .map(|entry| (entry.id.as_str(), &entry.event))
                .collect();
            if streamed != expected {
                let ids = |events: &[(&str, _)]| {
                    events
                        .iter()
                        .map(|(id, _)| id.to_string())
                        .collect::<Vec<_>>()
                };
                return Err(format!(
                    "E2: {}'s stream is not its committed lineage's events (lost, invented or \
                     reordered, or counters not continued across owners):\n  stream   {:?}\n  lineage  {:?}",
                    game.id,
                    ids(&streamed),
                    ids(&expected)
                ));
            }
            // Order: each probe_recovered right after its episode's
            // probe_failed, each probe_failed of a newer episode (a prune
            // can end an episode without a recovery, R8).
            let episode = |id: &str| id.split(':').next().and_then(|ns| ns.parse::<i128>().ok());
            for (i, (id, event)) in streamed.iter().enumerate() {
                let before = i.checked_sub(1).map(|i| streamed[i]);
                let ordered = match (event.event_type(), before) {
                    (EventType::ProbeRecovered, Some((prior, failed))) => {
                        failed.event_type() == EventType::ProbeFailed
                            && episode(prior) == episode(id)
                    }
                    (EventType::ProbeRecovered, None) => false,
                    (EventType::ProbeFailed, prior) => {
                        prior.is_none_or(|(prior, _)| episode(prior) < episode(id))
                    }
                };
                if !ordered {
                    return Err(format!("E2: {}'s events out of order at {id}", game.id));
                }
            }
        }
        for row in &self.db.rows {
            if let Some(id) = row.committed.iter().find(|id| !self.stream.contains(id)) {
                return Err(format!(
                    "E2: {id} was committed and never reached the stream"
                ));
            }
        }
        Ok(())
    }
}

/// S4: a snapshot about to be written is exactly its lineage's fold.
fn memory_is_its_lineage(stream: &Stream, lineage: &Lineage, snapshot: &Snapshot) -> Check {
    if observed(&snapshot.states) != lineage.model.held() {
        return Err(format!(
            "its counters {:?} are not the Go model's over the outcomes folded and committed \
             across owners {:?}",
            observed(&snapshot.states),
            lineage.model.held()
        ));
    }
    let mut next = 0;
    for out in &snapshot.pending {
        let found = lineage.events[next..]
            .iter()
            .position(|(id, event)| id == out.id.as_str() && *event == out.event);
        match found {
            Some(at) => next += at + 1,
            None => {
                return Err(format!(
                    "pending {} is not of its lineage (invented, repeated or out of order)",
                    out.id
                ));
            }
        }
    }
    let pending: BTreeSet<&str> = snapshot.pending.iter().map(|out| out.id.as_str()).collect();
    match lineage
        .events
        .iter()
        .find(|(id, _)| !stream.contains(id) && !pending.contains(id.as_str()))
    {
        Some((id, _)) => Err(format!("{id} is neither in the stream nor pending: lost")),
        None => Ok(()),
    }
}

fn run_scenario(seed: u64, detail: bool) -> Result<Stats, (String, Vec<String>)> {
    let mut world = World::new(seed, detail);
    let faults = std::mem::take(&mut world.scenario.faults);
    let mut faults = faults.into_iter().peekable();
    let result = (|| {
        while world.now < CHAOS + QUIET {
            while let Some((_, fault)) = faults.next_if(|(at, _)| *at <= world.now) {
                world.fire(fault);
            }
            if world.now == CHAOS {
                // Quiet from here: no pause left waiting for its point.
                for instance in &mut world.instances {
                    instance.pause = None;
                }
                while world.instances.len() < 2 {
                    world.join();
                }
            }
            world.step()?;
            world.now += STEP;
        }
        world.check_end()
    })();
    let trace = world.trace.take().unwrap_or_default();
    world.stats.events = world.stream.entries.len() as u64;
    result
        .map(|()| world.stats)
        .map_err(|broken| (broken, trace))
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text}: expected a whole number")),
        Err(_) => default,
    }
}

#[test]
fn h1_h2_h3_h5_l1_l2_failover_keeps_every_event_and_lets_no_stale_owner_through() {
    let base = env_u64("HEALTHPROBE_SIM_SEED", DEFAULT_SEED);
    let count = env_u64("HEALTHPROBE_SIM_SCENARIOS", DEFAULT_SCENARIOS);
    let threads = std::thread::available_parallelism().map_or(1, usize::from) as u64;
    let results: Vec<(Stats, Option<Failure>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|part| {
                scope.spawn(move || {
                    let mut totals = Stats::default();
                    for index in (part..count).step_by(threads as usize) {
                        let seed = base.wrapping_add(index);
                        match run_scenario(seed, count == 1) {
                            Ok(stats) => totals.add(&stats),
                            Err((broken, trace)) => return (totals, Some((seed, broken, trace))),
                        }
                    }
                    (totals, None)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a scenario thread"))
            .collect()
    });
    let mut totals = Stats::default();
    let mut failure: Option<Failure> = None;
    for (part, failed) in results {
        totals.add(&part);
        if let Some(failed) = failed
            && failure.as_ref().is_none_or(|(first, ..)| failed.0 < *first)
        {
            failure = Some(failed);
        }
    }
    if let Some((seed, broken, trace)) = failure {
        // Every fault, then the trace's last 300 lines.
        let faults = trace.iter().filter(|line| line.contains("fault: "));
        let last = trace.iter().skip(trace.len().saturating_sub(300));
        let shown: Vec<&str> = faults.chain(last).map(String::as_str).collect();
        panic!(
            "HA simulation failed (seed {seed}): {broken}\n{}\n\n{broken}\nre-run it alone \
             with: HEALTHPROBE_SIM_SEED={seed} HEALTHPROBE_SIM_SCENARIOS=1 cargo test -p \
             healthprobe-core --test ha_simulation -- --nocapture",
            shown.join("\n")
        );
    }
    let [
        kills,
        pauses,
        partitions,
        flaky,
        restarts,
        redis,
        sigterms,
        joins,
    ] = totals.faults;
    let _ = writeln!(
        std::io::stderr(),
        "simulated {count} failover runs (seeds {base}..{}): {} instances; {kills} kills, \
         {pauses} pauses, {partitions} partitions, {flaky} flaky links, {restarts} database \
         restarts, {redis} Redis outages, {sigterms} SIGTERMs, {joins} joins; {} shards taken \
         under a later epoch, {} fenced writes, {} fenced publishes, {} publishes accepted \
         past the lease, {} events streamed",
        base.wrapping_add(count),
        totals.instances,
        totals.later_epochs,
        totals.fenced_writes,
        totals.fenced_publishes,
        totals.late_publishes,
        totals.events
    );
}
