//! The shared world of `core/tests/ha_simulation.rs`: the lease table (the
//! statements of `shell/src/adapters/pg_leases.rs`, on the database's own
//! clock), the Redis stream with its per-shard fence (FAILOVER.md 2.6), and
//! the oracles every acceptance of theirs is checked against.
//!
//! Each row also carries a ghost the real table does not have: the
//! [`Lineage`] of the snapshot committed in it, every outcome and prune
//! folded into it across owners, so the end of a run can say what the
//! stream must hold.

use std::collections::{BTreeMap, BTreeSet};

use healthprobe_core::lease::{Heartbeat, ShardLease};
use healthprobe_core::tick::{Published, Snapshot};
use healthprobe_core::{HealthEvent, Outgoing, Policy};

use crate::go_model::NaiveModel;

/// Time in milliseconds since the run began: the database's clock.
pub type Ms = u64;

/// What a shard's committed state is the fold of: the Go model run over
/// the outcomes and prunes its owners folded and committed, and every event
/// that fold emitted, with its id, in order.
#[derive(Debug, Clone)]
pub struct Lineage {
    pub model: NaiveModel,
    pub events: Vec<(String, HealthEvent)>,
}

impl Lineage {
    pub fn new(policy: Policy) -> Self {
        Self {
            model: NaiveModel::new(policy),
            events: Vec::new(),
        }
    }
}

/// One `hp_shard` row.
#[derive(Debug, Clone)]
pub struct Row {
    pub owner: Option<String>,
    pub epoch: u64,
    pub expires: Ms,
    pub written_epoch: u64,
    /// `None`: never written (`''`).
    pub snapshot: Option<Snapshot>,
    /// Ghost: the fold the committed snapshot is of.
    pub lineage: Lineage,
    /// Ghost: every event id a committed snapshot of this row held pending.
    pub committed: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Acquire,
    Renew,
    Release,
}

/// The independent oracle of the lease table: the log of every grant, and
/// who holds what judged from that log alone (never from the rows).
#[derive(Debug, Default)]
pub struct Audit {
    ttl: Ms,
    /// Per shard: (what, owner, epoch, when), in time order.
    grants: BTreeMap<u32, Vec<(Grant, String, u64, Ms)>>,
}

impl Audit {
    /// Whether `owner` holds `shard` under `epoch` at `now`: its last grant
    /// is an acquire or renewal of that lease less than a TTL ago.
    pub fn holds(&self, shard: u32, owner: &str, epoch: u64, now: Ms) -> bool {
        let last = self.grants.get(&shard).and_then(|grants| grants.last());
        last.is_some_and(|(grant, who, e, at)| {
            *grant != Grant::Release && who == owner && *e == epoch && at + self.ttl > now
        })
    }

    /// Whether `owner` was ever granted `shard` under `epoch`.
    pub fn granted(&self, shard: u32, owner: &str, epoch: u64) -> bool {
        self.grants.get(&shard).is_some_and(|grants| {
            grants
                .iter()
                .any(|(g, who, e, _)| *g == Grant::Acquire && who == owner && *e == epoch)
        })
    }

    fn record(
        &mut self,
        grant: Grant,
        shard: u32,
        owner: &str,
        epoch: u64,
        now: Ms,
    ) -> Result<(), String> {
        let grants = self.grants.entry(shard).or_default();
        let newest = grants.iter().map(|g| g.2).max().unwrap_or(0);
        let held = self_holds(grants, self.ttl, now);
        match grant {
            Grant::Acquire if held.is_some() || epoch != newest + 1 => {
                return Err(format!(
                    "S1: the table let {owner} acquire shard {shard} under epoch {epoch} at {now} ms \
                     (held by {held:?}, newest epoch {newest})"
                ));
            }
            Grant::Renew if held != Some((owner, epoch)) => {
                return Err(format!(
                    "S1: the table renewed shard {shard} for {owner} under epoch {epoch} at {now} ms, \
                     a lease it did not hold (held: {held:?})"
                ));
            }
            _ => {}
        }
        grants.push((grant, owner.to_owned(), epoch, now));
        Ok(())
    }
}

fn self_holds(grants: &[(Grant, String, u64, Ms)], ttl: Ms, now: Ms) -> Option<(&str, u64)> {
    let (grant, who, epoch, at) = grants.last()?;
    (*grant != Grant::Release && at + ttl > now).then_some((who.as_str(), *epoch))
}

/// The lease table: `hp_shard` and `hp_member`, TTL in the database's time.
#[derive(Debug)]
pub struct Db {
    pub rows: Vec<Row>,
    members: BTreeMap<String, Ms>,
    ttl: Ms,
    pub audit: Audit,
}

impl Db {
    pub fn new(shards: u32, ttl: Ms, policy: Policy) -> Self {
        let row = Row {
            owner: None,
            epoch: 0,
            expires: 0,
            written_epoch: 0,
            snapshot: None,
            lineage: Lineage::new(policy),
            committed: BTreeSet::new(),
        };
        Self {
            rows: vec![row; shards as usize],
            members: BTreeMap::new(),
            ttl,
            audit: Audit {
                ttl,
                ..Audit::default()
            },
        }
    }

    fn shards(&self) -> std::ops::Range<u32> {
        0..u32::try_from(self.rows.len()).expect("few shards")
    }

    /// Register `id` and renew every lease it holds that has not run out.
    pub fn heartbeat(&mut self, id: &str, now: Ms) -> Result<Heartbeat, String> {
        self.members.insert(id.to_owned(), now + self.ttl);
        let mut owned = Vec::new();
        for shard in self.shards() {
            let row = &mut self.rows[shard as usize];
            if row.owner.as_deref() == Some(id) && row.expires > now {
                row.expires = now + self.ttl;
                self.audit.record(Grant::Renew, shard, id, row.epoch, now)?;
                owned.push(ShardLease {
                    shard,
                    epoch: row.epoch,
                });
            }
        }
        let members = self.members.iter().filter(|(_, until)| **until > now);
        let orphans = self
            .rows
            .iter()
            .filter(|row| row.owner.is_none() || row.expires <= now);
        Ok(Heartbeat {
            owned,
            members: members.map(|(id, _)| id.clone()).collect(),
            orphans: u32::try_from(orphans.count()).expect("few shards"),
        })
    }

    /// Take up to `want` free or expired shards, own expired ones first,
    /// then free, then others', each under epoch + 1.
    pub fn acquire(&mut self, id: &str, want: u32, now: Ms) -> Result<Vec<ShardLease>, String> {
        let rank = |row: &Row| match row.owner.as_deref() {
            Some(owner) if owner == id => 0,
            None => 1,
            Some(_) => 2,
        };
        let mut pick: Vec<(u8, u32)> = self
            .shards()
            .filter(|&s| {
                self.rows[s as usize].owner.is_none() || self.rows[s as usize].expires <= now
            })
            .map(|s| (rank(&self.rows[s as usize]), s))
            .collect();
        pick.sort_unstable();
        pick.truncate(want as usize);
        let mut taken = Vec::new();
        for (_, shard) in pick {
            let row = &mut self.rows[shard as usize];
            row.owner = Some(id.to_owned());
            row.epoch += 1;
            row.expires = now + self.ttl;
            self.audit
                .record(Grant::Acquire, shard, id, row.epoch, now)?;
            taken.push(ShardLease {
                shard,
                epoch: row.epoch,
            });
        }
        taken.sort_unstable();
        Ok(taken)
    }

    /// Give back the leases `id` still holds under those epochs (expired or not).
    pub fn release(&mut self, id: &str, leases: &[ShardLease], now: Ms) -> Result<(), String> {
        for lease in leases {
            let row = &mut self.rows[lease.shard as usize];
            if row.owner.as_deref() == Some(id) && row.epoch == lease.epoch {
                row.owner = None;
                row.expires = now;
                self.audit
                    .record(Grant::Release, lease.shard, id, lease.epoch, now)?;
            }
        }
        Ok(())
    }

    /// Shutdown: leave the membership.
    pub fn leave(&mut self, id: &str) {
        self.members.remove(id);
    }

    /// Each shard's snapshot (and its lineage) where `id` owns it under that
    /// epoch; any other is lost (not loaded).
    pub fn load(&self, id: &str, lease: ShardLease) -> Option<(Option<Snapshot>, Lineage)> {
        let row = &self.rows[lease.shard as usize];
        (row.owner.as_deref() == Some(id) && row.epoch == lease.epoch)
            .then(|| (row.snapshot.clone(), row.lineage.clone()))
    }

    /// The fenced write of one shard: only where `id` owns it under that
    /// epoch and the lease has not run out by the database's clock. Whether
    /// it was written; `Err` when the table and its oracle disagree.
    pub fn write(
        &mut self,
        id: &str,
        lease: ShardLease,
        snapshot: Snapshot,
        lineage: Lineage,
        now: Ms,
    ) -> Result<bool, String> {
        let row = &mut self.rows[lease.shard as usize];
        let written =
            row.owner.as_deref() == Some(id) && row.epoch == lease.epoch && row.expires > now;
        let oracle = self.audit.holds(lease.shard, id, lease.epoch, now);
        if written != oracle {
            return Err(format!(
                "S1: the table {} a write of shard {} by {id} under epoch {} at {now} ms; \
                 its oracle says the lease is {}",
                if written { "accepted" } else { "refused" },
                lease.shard,
                lease.epoch,
                if oracle { "held" } else { "not held" }
            ));
        }
        if !written {
            return Ok(false);
        }
        let before = &row.lineage.events;
        if lineage.events.get(..before.len()) != Some(before.as_slice())
            || row.written_epoch > lease.epoch
        {
            return Err(format!(
                "S1: a write of shard {} by {id} under epoch {} does not continue the committed \
                 lineage (written epoch {}): committed state went back",
                lease.shard, lease.epoch, row.written_epoch
            ));
        }
        row.committed.extend(
            snapshot
                .pending
                .iter()
                .map(|out| out.id.as_str().to_owned()),
        );
        row.snapshot = Some(snapshot);
        row.lineage = lineage;
        row.written_epoch = lease.epoch;
        Ok(true)
    }
}

/// One stream entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub event: HealthEvent,
}

/// The Redis stream behind the fencing script (FAILOVER.md 2.6).
#[derive(Debug, Default)]
pub struct Stream {
    pub entries: Vec<Entry>,
    fences: BTreeMap<u32, u64>,
    ids: BTreeSet<String>,
    /// Oracle: every epoch the stream accepted or was raised to, per shard.
    seen: Vec<(u32, u64)>,
}

impl Stream {
    /// A new owner raises the shard's fence after loading it (best effort).
    pub fn raise(&mut self, lease: ShardLease) {
        let fence = self.fences.entry(lease.shard).or_default();
        *fence = (*fence).max(lease.epoch);
        self.seen.push((lease.shard, lease.epoch));
    }

    /// The script: a lower epoch than the fence is refused, a higher one
    /// raises it; an id already added is not added again (but accepted).
    /// Each acceptance is checked against the oracles: never below an epoch
    /// accepted before, only from an instance granted that lease, only an
    /// event committed in its shard's row before (H2, strict D5).
    pub fn publish(
        &mut self,
        out: &Outgoing,
        fence: ShardLease,
        instance: &str,
        db: &Db,
    ) -> Result<Published, String> {
        let current = self.fences.entry(fence.shard).or_default();
        if fence.epoch < *current {
            return Ok(Published::Fenced);
        }
        *current = fence.epoch;
        let id = out.id.as_str();
        let newest = self
            .seen
            .iter()
            .filter(|(s, _)| *s == fence.shard)
            .map(|(_, e)| *e)
            .max();
        if newest.is_some_and(|newest| fence.epoch < newest) {
            return Err(format!(
                "S2: the stream accepted {id} from {instance} under epoch {} of shard {}, below \
                 epoch {newest:?} it had seen",
                fence.epoch, fence.shard
            ));
        }
        if !db.audit.granted(fence.shard, instance, fence.epoch) {
            return Err(format!(
                "S2: the stream accepted {id} from {instance} under epoch {} of shard {}, a lease \
                 never granted to it",
                fence.epoch, fence.shard
            ));
        }
        if !db.rows[fence.shard as usize].committed.contains(id) {
            return Err(format!(
                "S2 (H2): {instance} published {id} (shard {}, epoch {}) before any committed \
                 snapshot of its shard held it",
                fence.shard, fence.epoch
            ));
        }
        self.seen.push((fence.shard, fence.epoch));
        if self.ids.insert(id.to_owned()) {
            self.entries.push(Entry {
                id: id.to_owned(),
                event: out.event.clone(),
            });
        }
        Ok(Published::Accepted)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}
