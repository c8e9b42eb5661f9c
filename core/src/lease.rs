//! The lease machine: which shards of the fleet this instance owns and may
//! act on, when it renews, what it takes and what it gives back — failover
//! across instances on leases with fencing epochs (`FAILOVER.md`). Sans-IO,
//! in the quinn-proto shape of [`crate::tick::TickMachine`]: the driver
//! performs each [`LeaseAction`] against the lease table (PostgreSQL) and
//! reports the answer; time enters as an argument (monotonic, since an
//! arbitrary origin).
//!
//! Safety never rests on this machine: every write and publish is fenced
//! by its sink against the shard's epoch. The machine decides liveness (who
//! takes what, and when) and the courtesy self-fence (stop acting before
//! the lease may have run out, so a fenced write is rare, not routine).
//!
//! # The rules
//!
//! - **L1** A lease is valid until `self_fence` after the *send* of the
//!   request that proved it (a heartbeat that renewed it, or the acquire that
//!   took it), never after its reply's arrival: the database's `now()` at
//!   renewal is no earlier than the send, so the lease outlives this bound.
//! - **L2** A heartbeat's reply is the truth about what this instance owns:
//!   a shard missing from it is lost (forgotten at once); a shard it did not
//!   know, or with another epoch, is a new lease (an acquire whose reply was
//!   lost, or a re-acquire), which the driver loads before acting on it.
//! - **L3** Balance: with the live members sorted by id and this instance at
//!   index `i` of `n`, its target is `S / n`, plus one if `i < S % n`. Below
//!   target it keeps its draining shards again and asks for the rest; above
//!   it, once no orphan is left for a member below its target to take, its
//!   highest shards drain (the driver writes their last state, then
//!   releases them). With no want
//!   but orphans (free or expired shards) seen on two heartbeats running,
//!   it asks for one: no shard is left behind by members that disagree.
//! - **L4** A failed heartbeat or acquire forgets nothing and extends
//!   nothing: validity only runs down until a heartbeat succeeds.
//! - **L5** Liveness gate: once no tick has made progress for
//!   `liveness_gate`, it stops renewing, so the leases expire and survivors
//!   take them; it renews again when ticks resume.
//! - **L6** One request outstanding at a time: a heartbeat every `renew`
//!   (from the send of the last), at most one acquire after it, then wait.
//! - **L7** After shutdown nothing is renewed or acquired; the driver
//!   releases what the tick side has written last, then stops.

use std::collections::BTreeMap;
use std::time::Duration;

/// One shard held under a lease: the fencing epoch goes up on every acquire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardLease {
    /// The shard, `0..shards`.
    pub shard: u32,
    /// Its epoch when this instance took it.
    pub epoch: u64,
}

/// How the lease machine runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseConfig {
    /// This process's id among the members (unique per process).
    pub instance_id: String,
    /// How many shards split the fleet, `S`.
    pub shards: u32,
    /// The lease's time to live, judged by the database's clock.
    pub ttl: Duration,
    /// Time between heartbeats.
    pub renew: Duration,
    /// How long after a heartbeat's send its leases are acted on (L1).
    pub self_fence: Duration,
    /// No tick progress for this long stops renewal (L5); `None` never does.
    pub liveness_gate: Option<Duration>,
}

/// Why a [`LeaseConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseConfigError {
    /// `shards` is 0.
    NoShards,
    /// The instance id is empty or longer than 128 bytes.
    InstanceId,
    /// Not `ttl > self_fence > 1.25 × renew`: a lease could run out before
    /// the self-fence stops acting on it, or one late heartbeat would fence.
    Timings,
}

impl std::fmt::Display for LeaseConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NoShards => "the shard count must be at least 1",
            Self::InstanceId => "the instance id must be 1 to 128 bytes",
            Self::Timings => {
                "lease timings must keep ttl > self-fence > 1.25 x renew (production: 15s, 10s, 2s)"
            }
        })
    }
}

impl std::error::Error for LeaseConfigError {}

impl LeaseConfig {
    /// Production timings: TTL 15 s, renew 2 s, self-fence 10 s, liveness
    /// gate off.
    pub fn new(instance_id: impl Into<String>, shards: u32) -> Self {
        Self {
            instance_id: instance_id.into(),
            shards,
            ttl: Duration::from_secs(15),
            renew: Duration::from_secs(2),
            self_fence: Duration::from_secs(10),
            liveness_gate: None,
        }
    }

    /// Check the settings (see [`LeaseConfigError`]).
    pub fn validate(&self) -> Result<(), LeaseConfigError> {
        if self.shards == 0 {
            return Err(LeaseConfigError::NoShards);
        }
        if self.instance_id.is_empty() || self.instance_id.len() > 128 {
            return Err(LeaseConfigError::InstanceId);
        }
        if self.ttl <= self.self_fence || self.self_fence <= self.renew + self.renew / 4 {
            return Err(LeaseConfigError::Timings);
        }
        Ok(())
    }
}

/// A heartbeat's answer: the leases it renewed (by owner, so the database's
/// truth), the live members, and how many shards are free or expired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heartbeat {
    /// Every shard the database says this instance holds, renewed.
    pub owned: Vec<ShardLease>,
    /// The ids of the live members, this one included.
    pub members: Vec<String>,
    /// Shards with no live owner.
    pub orphans: u32,
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAction {
    /// Register as a live member and renew every lease held; answer with
    /// [`LeaseMachine::handle_heartbeat`].
    Heartbeat,
    /// Take up to `want` free or expired shards (epoch + 1 each); answer
    /// with [`LeaseMachine::handle_acquired`].
    Acquire {
        /// How many at most.
        want: u32,
    },
    /// Nothing until `until` (a notification of a release may come sooner:
    /// [`LeaseMachine::handle_notified`]).
    Wait {
        /// Monotonic time of the next heartbeat.
        until: Duration,
    },
    /// Shut down: renew nothing more (L7).
    Stop,
}

/// What the tick side may act on now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseView {
    /// Shards to probe, write and publish for.
    pub active: Vec<ShardLease>,
    /// Shards to write a last time and release (L3): probe none of them.
    pub draining: Vec<ShardLease>,
    /// Shards held whose validity ran out (L1), not yet known lost: act on
    /// none of them until a heartbeat proves them again.
    pub suspended: Vec<ShardLease>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: u64,
    valid_until: Duration,
    draining: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Heartbeat,
    Acquire,
}

/// The lease decisions of one instance (see the module's rules).
#[derive(Debug)]
pub struct LeaseMachine {
    config: LeaseConfig,
    held: BTreeMap<u32, Held>,
    /// The request awaiting its answer, and when it was sent (L1, L6).
    outstanding: Option<(Request, Duration)>,
    /// How many shards to ask for after the heartbeat's answer.
    want: u32,
    /// This instance's index among the members last seen, and their count (L3).
    members_seen: (u32, u32),
    next_heartbeat: Duration,
    last_progress: Duration,
    orphan_streak: u32,
    shutdown: bool,
}

impl LeaseMachine {
    /// A machine for `config`, started at `now`: its first action is a heartbeat.
    pub fn new(config: LeaseConfig, now: Duration) -> Result<Self, LeaseConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            held: BTreeMap::new(),
            outstanding: None,
            want: 0,
            members_seen: (0, 1),
            next_heartbeat: now,
            last_progress: now,
            orphan_streak: 0,
            shutdown: false,
        })
    }

    /// The machine's settings.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// The next action at `now`, or `None` while a request awaits its answer
    /// (L6). A request's send time is `now` (L1): call this right before sending.
    pub fn poll_action(&mut self, now: Duration) -> Option<LeaseAction> {
        if self.shutdown {
            return (self.outstanding.is_none()).then_some(LeaseAction::Stop);
        }
        if self.outstanding.is_some() {
            return None;
        }
        if self.want > 0 {
            let want = std::mem::take(&mut self.want);
            self.outstanding = Some((Request::Acquire, now));
            return Some(LeaseAction::Acquire { want });
        }
        if now < self.next_heartbeat {
            return Some(LeaseAction::Wait {
                until: self.next_heartbeat,
            });
        }
        self.next_heartbeat = now + self.config.renew;
        if let Some(gate) = self.config.liveness_gate
            && now.saturating_sub(self.last_progress) >= gate
        {
            // L5: no renewal while ticks are stuck.
            return Some(LeaseAction::Wait {
                until: self.next_heartbeat,
            });
        }
        self.outstanding = Some((Request::Heartbeat, now));
        Some(LeaseAction::Heartbeat)
    }

    /// The heartbeat's answer (L2, L3, L4).
    pub fn handle_heartbeat(&mut self, result: Result<Heartbeat, ()>) {
        let Some(sent_at) = self.answered(Request::Heartbeat) else {
            return;
        };
        let Ok(reply) = result else {
            return;
        };
        let valid_until = sent_at + self.config.self_fence;
        let mut held = BTreeMap::new();
        for lease in reply.owned {
            if lease.shard >= self.config.shards {
                continue;
            }
            let draining = match self.held.get(&lease.shard) {
                Some(known) if known.epoch == lease.epoch => known.draining,
                _ => false,
            };
            held.insert(
                lease.shard,
                Held {
                    epoch: lease.epoch,
                    valid_until,
                    draining,
                },
            );
        }
        self.held = held;
        self.orphan_streak = if reply.orphans > 0 {
            self.orphan_streak.saturating_add(1)
        } else {
            0
        };
        self.balance(&reply.members, reply.orphans);
    }

    /// An acquire's answer: each shard taken is a new lease (L1, L4).
    pub fn handle_acquired(&mut self, result: Result<Vec<ShardLease>, ()>) {
        let Some(sent_at) = self.answered(Request::Acquire) else {
            return;
        };
        for lease in result.unwrap_or_default() {
            if lease.shard < self.config.shards {
                let held = Held {
                    epoch: lease.epoch,
                    valid_until: sent_at + self.config.self_fence,
                    draining: false,
                };
                self.held.insert(lease.shard, held);
            }
        }
    }

    /// The tick side released these leases after their last write (L3, L7).
    pub fn handle_released(&mut self, released: &[ShardLease]) {
        for lease in released {
            if self.held.get(&lease.shard).map(|held| held.epoch) == Some(lease.epoch) {
                self.held.remove(&lease.shard);
            }
        }
    }

    /// Another instance released shards: heartbeat (and maybe acquire) now.
    pub fn handle_notified(&mut self, now: Duration) {
        self.next_heartbeat = self.next_heartbeat.min(now);
    }

    /// A tick made progress at `now` (L5).
    pub fn handle_tick_progress(&mut self, now: Duration) {
        self.last_progress = self.last_progress.max(now);
    }

    /// Stop renewing and acquiring (L7).
    pub fn handle_shutdown(&mut self) {
        self.shutdown = true;
        self.want = 0;
    }

    /// What may be acted on at `now`: leases still valid (L1), split into
    /// active and draining, and those past their validity, in shard order.
    pub fn view(&self, now: Duration) -> LeaseView {
        let mut view = LeaseView::default();
        for (&shard, held) in &self.held {
            let lease = ShardLease {
                shard,
                epoch: held.epoch,
            };
            if held.valid_until <= now {
                view.suspended.push(lease);
            } else if held.draining || self.shutdown {
                view.draining.push(lease);
            } else {
                view.active.push(lease);
            }
        }
        view
    }

    /// Every lease held, valid or not: what shutdown releases.
    pub fn held(&self) -> Vec<ShardLease> {
        self.held
            .iter()
            .map(|(&shard, held)| ShardLease {
                shard,
                epoch: held.epoch,
            })
            .collect()
    }

    /// The send time of `request` if it is the one outstanding, now answered;
    /// an answer to anything else changes nothing.
    fn answered(&mut self, request: Request) -> Option<Duration> {
        match self.outstanding {
            Some((outstanding, sent_at)) if outstanding == request => {
                self.outstanding = None;
                Some(sent_at)
            }
            _ => None,
        }
    }

    /// This instance's share of the shards among the members it last saw (L3).
    pub fn target(&self) -> u32 {
        let (i, n) = self.members_seen;
        self.config.shards / n + u32::from(i < self.config.shards % n)
    }

    fn keeping(&self) -> u32 {
        let keeping = self.held.values().filter(|held| !held.draining).count();
        u32::try_from(keeping).unwrap_or(u32::MAX)
    }

    /// L3: below target, un-drain and ask for the rest; above it and with
    /// no orphan left for a member below its target to take, drain the
    /// highest shards.
    fn balance(&mut self, members: &[String], orphans: u32) {
        let mut sorted: Vec<&str> = members.iter().map(String::as_str).collect();
        if !sorted.contains(&self.config.instance_id.as_str()) {
            sorted.push(&self.config.instance_id);
        }
        sorted.sort_unstable();
        sorted.dedup();
        let n = u32::try_from(sorted.len()).unwrap_or(u32::MAX);
        let i = sorted
            .iter()
            .position(|id| *id == self.config.instance_id)
            .and_then(|i| u32::try_from(i).ok())
            .unwrap_or(0);
        self.members_seen = (i, n);
        let target = self.target();
        let mut keeping = self.keeping();
        // Below target: keep draining shards first (a member left).
        for held in self.held.values_mut() {
            if keeping >= target {
                break;
            }
            if held.draining {
                held.draining = false;
                keeping += 1;
            }
        }
        // Above target: the highest shards drain, once no orphan is left.
        for held in self.held.values_mut().rev() {
            if keeping <= target || orphans > 0 {
                break;
            }
            if !held.draining {
                held.draining = true;
                keeping -= 1;
            }
        }
        self.want = if keeping < target {
            target - keeping
        } else {
            u32::from(self.orphan_streak >= 2)
        };
    }
}
