//! The lease table in PostgreSQL (`shell/sql/ha.sql`, FAILOVER.md 2.2): the
//! statements behind the lease machine's actions
//! ([`healthprobe_core::lease`]) and the fenced snapshot write. Each is one
//! statement or one short transaction, rows locked in shard order; expiry is
//! judged by the database's clock (`hp_now()`) only.

use std::time::Duration;

use std::collections::HashMap;

use healthprobe_core::lease::{Heartbeat, ShardLease};
use healthprobe_core::tick::{Persisted, Snapshot};
use postgres::{Client, GenericClient};
use tracing::error;

use crate::adapters::PostgresRecords;
use crate::codec::snapshot::{encode_snapshot_with_journal, parse_snapshot};
use crate::driver::ports::{LeaseTable, ShardStore};

/// The schema, safe to run again.
pub const HA_SCHEMA: &str = include_str!("../../sql/ha.sql");

/// The lease protocol's version: members of another are not counted.
pub const PROTOCOL: i32 = 1;

/// A lease-table statement that failed, or a table that does not fit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HaError {
    /// The statement failed (the database down, a timeout, ...).
    #[error("lease table: {}", db_text(.0))]
    Db(#[from] postgres::Error),
    /// `ha init` was given another shard count than the table has.
    #[error(
        "the lease table has {found} shards, not {wanted}: the shard count is fixed at `ha init`"
    )]
    ShardCount {
        /// The table's.
        found: u32,
        /// The one asked for.
        wanted: u32,
    },
    /// `ha init` has not been run on this database.
    #[error("no lease table: run `healthprobe ha init --shards S` first")]
    NotInitialised,
}

/// The server's message when it sent one, else the client's error and its cause.
fn db_text(err: &postgres::Error) -> String {
    match (err.as_db_error(), std::error::Error::source(err)) {
        (Some(db), _) => db.message().to_owned(),
        (None, Some(cause)) => format!("{err}: {cause}"),
        (None, None) => err.to_string(),
    }
}

/// Create the schema (idempotent) with `shards` shards; a table made with
/// another count is refused, never resized.
pub fn init(client: &mut Client, shards: u32) -> Result<(), HaError> {
    client.batch_execute(HA_SCHEMA)?;
    let wanted = i32::try_from(shards).unwrap_or(i32::MAX);
    let mut tx = client.transaction()?;
    tx.execute(
        "INSERT INTO hp_ha (shard_count, protocol) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
        &[&wanted, &PROTOCOL],
    )?;
    let found: i32 = tx.query_one("SELECT shard_count FROM hp_ha", &[])?.get(0);
    if found != wanted {
        return Err(HaError::ShardCount {
            found: u32::try_from(found).unwrap_or_default(),
            wanted: shards,
        });
    }
    tx.execute(
        "INSERT INTO hp_shard (shard_id) SELECT generate_series(0, $1 - 1) ON CONFLICT DO NOTHING",
        &[&wanted],
    )?;
    tx.commit()?;
    Ok(())
}

/// The shard count `ha init` fixed.
pub fn shard_count(client: &mut impl GenericClient) -> Result<u32, HaError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('hp_ha') IS NOT NULL", &[])?
        .get(0);
    let row = if exists {
        client.query_opt("SELECT shard_count FROM hp_ha", &[])?
    } else {
        None
    };
    let count: i32 = row.ok_or(HaError::NotInitialised)?.get(0);
    Ok(u32::try_from(count).unwrap_or_default())
}

/// One shard as `ha status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardRow {
    /// The shard.
    pub shard: u32,
    /// Its owner while its lease runs (by the database's clock).
    pub owner: Option<String>,
    /// Its epoch.
    pub epoch: u64,
    /// Seconds since it was acquired, while owned.
    pub lease_age: Option<f64>,
    /// Seconds until its lease runs out, while owned.
    pub expires_in: Option<f64>,
}

/// Every shard, in order: owners, epochs and lease ages.
pub fn status(client: &mut impl GenericClient) -> Result<Vec<ShardRow>, HaError> {
    let rows = client.query(
        "SELECT shard_id, CASE WHEN expires_at > hp_now() THEN owner END, epoch,
                CASE WHEN expires_at > hp_now()
                     THEN extract(epoch FROM hp_now() - acquired_at)::float8 END,
                CASE WHEN expires_at > hp_now()
                     THEN extract(epoch FROM expires_at - hp_now())::float8 END
           FROM hp_shard ORDER BY shard_id",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|row| ShardRow {
            shard: shard_id(row),
            owner: row.get(1),
            epoch: u64::try_from(row.get::<_, i64>(2)).unwrap_or_default(),
            lease_age: row.get(3),
            expires_in: row.get(4),
        })
        .collect())
}

/// One instance's statements on the lease table, each run on the
/// connection it is given.
#[derive(Debug, Clone)]
pub struct PgLeases {
    instance_id: String,
    ttl_seconds: f64,
}

/// A row's first column, a shard id.
fn shard_id(row: &postgres::Row) -> u32 {
    u32::try_from(row.get::<_, i32>(0)).unwrap_or_default()
}

fn lease(shard: i32, epoch: i64) -> ShardLease {
    ShardLease {
        shard: u32::try_from(shard).unwrap_or_default(),
        epoch: u64::try_from(epoch).unwrap_or_default(),
    }
}

fn columns(leases: &[ShardLease]) -> (Vec<i32>, Vec<i64>) {
    leases
        .iter()
        .map(|lease| {
            (
                i32::try_from(lease.shard).unwrap_or(i32::MAX),
                i64::try_from(lease.epoch).unwrap_or(i64::MAX),
            )
        })
        .unzip()
}

impl PgLeases {
    /// Instance `instance_id`, its leases living `ttl`.
    pub fn new(instance_id: impl Into<String>, ttl: Duration) -> Self {
        Self {
            instance_id: instance_id.into(),
            ttl_seconds: ttl.as_secs_f64(),
        }
    }

    /// Register as a live member and renew every lease this instance holds
    /// and that has not run out: an expired lease is never renewed (any gap
    /// is a new acquire, epoch + 1). The answer is the database's truth.
    pub fn heartbeat(&self, client: &mut Client) -> Result<Heartbeat, HaError> {
        let id = self.instance_id.as_str();
        let ttl = self.ttl_seconds;
        let mut tx = client.transaction()?;
        tx.execute(
            "INSERT INTO hp_member (instance_id, protocol, expires_at)
             VALUES ($1, $2, hp_now() + make_interval(secs => $3))
             ON CONFLICT (instance_id) DO UPDATE SET expires_at = excluded.expires_at",
            &[&id, &PROTOCOL, &ttl],
        )?;
        let owned = tx.query(
            "WITH mine AS (SELECT shard_id FROM hp_shard WHERE owner = $1 AND expires_at > hp_now()
                            ORDER BY shard_id FOR UPDATE)
             UPDATE hp_shard s SET expires_at = hp_now() + make_interval(secs => $2)
               FROM mine WHERE s.shard_id = mine.shard_id
             RETURNING s.shard_id, s.epoch",
            &[&id, &ttl],
        )?;
        let members = tx.query(
            "SELECT instance_id FROM hp_member WHERE expires_at > hp_now() AND protocol = $1
              ORDER BY instance_id",
            &[&PROTOCOL],
        )?;
        let orphans: i64 = tx
            .query_one(
                "SELECT count(*) FROM hp_shard WHERE owner IS NULL OR expires_at <= hp_now()",
                &[],
            )?
            .get(0);
        tx.commit()?;
        let mut owned: Vec<ShardLease> = owned
            .iter()
            .map(|row| lease(row.get(0), row.get(1)))
            .collect();
        owned.sort_unstable();
        Ok(Heartbeat {
            owned,
            members: members.iter().map(|row| row.get(0)).collect(),
            orphans: u32::try_from(orphans).unwrap_or(u32::MAX),
        })
    }

    /// Take up to `want` shards whose lease ran out or that are free (this
    /// instance's own expired ones first, then free, then others'), each
    /// under epoch + 1.
    pub fn acquire(&self, client: &mut Client, want: u32) -> Result<Vec<ShardLease>, HaError> {
        let want = i64::from(want);
        let rows = client.query(
            "WITH pick AS (
               SELECT shard_id FROM hp_shard
                WHERE owner IS NULL OR expires_at <= hp_now()
                ORDER BY CASE WHEN owner = $1 THEN 0 WHEN owner IS NULL THEN 1 ELSE 2 END, shard_id
                LIMIT $2 FOR UPDATE SKIP LOCKED)
             UPDATE hp_shard s SET owner = $1, epoch = s.epoch + 1,
                    expires_at = hp_now() + make_interval(secs => $3), acquired_at = hp_now()
               FROM pick WHERE s.shard_id = pick.shard_id
             RETURNING s.shard_id, s.epoch",
            &[&self.instance_id, &want, &self.ttl_seconds],
        )?;
        let mut taken: Vec<ShardLease> = rows
            .iter()
            .map(|row| lease(row.get(0), row.get(1)))
            .collect();
        taken.sort_unstable();
        Ok(taken)
    }

    /// Give `leases` back (their epochs unchanged; the next acquire bumps
    /// them), those this instance still holds under them.
    pub fn release(&self, client: &mut Client, leases: &[ShardLease]) -> Result<(), HaError> {
        let (shards, epochs) = columns(leases);
        client.execute(
            "WITH r AS (SELECT s.shard_id FROM hp_shard s
                          JOIN unnest($2::int[], $3::bigint[]) AS x(shard_id, epoch)
                            ON s.shard_id = x.shard_id AND s.epoch = x.epoch
                         WHERE s.owner = $1 ORDER BY s.shard_id FOR UPDATE OF s)
             UPDATE hp_shard s SET owner = NULL, expires_at = hp_now()
               FROM r WHERE s.shard_id = r.shard_id",
            &[&self.instance_id, &shards, &epochs],
        )?;
        Ok(())
    }

    /// Write each shard's snapshot under its lease: only where this
    /// instance owns the shard under that epoch and the lease has not run
    /// out by the database's clock. The shards written; any other was fenced.
    pub fn write(
        &self,
        client: &mut Client,
        snapshots: &[(ShardLease, String)],
    ) -> Result<Vec<u32>, HaError> {
        let leases: Vec<ShardLease> = snapshots.iter().map(|(lease, _)| *lease).collect();
        let (shards, epochs) = columns(&leases);
        let texts: Vec<&str> = snapshots.iter().map(|(_, text)| text.as_str()).collect();
        let rows = client.query(
            "WITH w AS (
               SELECT s.shard_id, x.epoch, x.snapshot FROM hp_shard s
                 JOIN unnest($2::int[], $3::bigint[], $4::text[]) AS x(shard_id, epoch, snapshot)
                   ON s.shard_id = x.shard_id
                WHERE s.owner = $1 AND s.epoch = x.epoch AND s.expires_at > hp_now()
                ORDER BY s.shard_id FOR UPDATE OF s)
             UPDATE hp_shard s SET snapshot = w.snapshot, written_epoch = w.epoch, written_at = hp_now()
               FROM w WHERE s.shard_id = w.shard_id
             RETURNING s.shard_id",
            &[&self.instance_id, &shards, &epochs, &texts],
        )?;
        Ok(rows.iter().map(shard_id).collect())
    }

    /// The snapshots of `leases`' shards (`''` when none was written yet),
    /// read only where this instance owns the shard under that epoch and
    /// the lease has not run out; a shard missing from the answer is not held.
    pub fn load(
        &self,
        client: &mut Client,
        leases: &[ShardLease],
    ) -> Result<Vec<(u32, String)>, HaError> {
        let (shards, epochs) = columns(leases);
        let rows = client.query(
            "SELECT s.shard_id, s.snapshot FROM hp_shard s
               JOIN unnest($2::int[], $3::bigint[]) AS x(shard_id, epoch)
                 ON s.shard_id = x.shard_id AND s.epoch = x.epoch
              WHERE s.owner = $1 AND s.expires_at > hp_now()",
            &[&self.instance_id, &shards, &epochs],
        )?;
        Ok(rows.iter().map(|row| (shard_id(row), row.get(1))).collect())
    }

    /// Leave the membership (at shutdown, after the releases).
    pub fn leave(&self, client: &mut Client) -> Result<(), HaError> {
        client.execute(
            "DELETE FROM hp_member WHERE instance_id = $1",
            &[&self.instance_id],
        )?;
        Ok(())
    }
}

/// Failover's ports on PostgreSQL: the lease table (for the lease thread)
/// and the shards' snapshots (for the tick side), each instance of it on
/// its own connection, every request bounded by the connection's timeout.
#[derive(Debug)]
pub struct PgHa {
    db: PostgresRecords,
    leases: PgLeases,
    /// The last snapshot written per lease: an identical one is not rewritten.
    written: HashMap<ShardLease, String>,
}

impl PgHa {
    /// The statements of `leases` on `db`'s connection.
    pub fn new(db: PostgresRecords, leases: PgLeases) -> Self {
        Self {
            db,
            leases,
            written: HashMap::new(),
        }
    }

    fn request<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&PgLeases, &mut Client) -> Result<T, HaError> + Send + 'static,
    ) -> Result<T, String> {
        let leases = self.leases.clone();
        self.db
            .request(move |client| work(&leases, client).map_err(|err| err.to_string()))
    }
}

impl LeaseTable for PgHa {
    fn heartbeat(&mut self) -> Result<Heartbeat, String> {
        self.request(|leases, client| leases.heartbeat(client))
    }

    fn acquire(&mut self, want: u32) -> Result<Vec<ShardLease>, String> {
        self.request(move |leases, client| leases.acquire(client, want))
    }

    fn release(&mut self, released: &[ShardLease]) -> Result<(), String> {
        let asked = released.to_vec();
        self.request(move |leases, client| leases.release(client, &asked))
    }

    fn leave(&mut self) -> Result<(), String> {
        self.request(|leases, client| leases.leave(client))
    }
}

impl ShardStore for PgHa {
    fn load(
        &mut self,
        wanted: &[ShardLease],
    ) -> Vec<(ShardLease, Result<Option<Snapshot>, String>)> {
        let asked = wanted.to_vec();
        let rows = self.request(move |leases, client| leases.load(client, &asked));
        wanted
            .iter()
            .map(|&lease| {
                let snapshot = match &rows {
                    Err(reason) => Err(reason.clone()),
                    Ok(rows) => match rows.iter().find(|(shard, _)| *shard == lease.shard) {
                        None => Err(format!(
                            "shard {} is not held under epoch {} (taken by another instance, or its lease ran out)",
                            lease.shard, lease.epoch
                        )),
                        Some((_, text)) if text.is_empty() => Ok(None),
                        Some((shard, text)) => parse_snapshot(text.as_bytes(), &format!("hp_shard {shard}"))
                            .map(Some)
                            .map_err(|err| err.to_string()),
                    },
                };
                (lease, snapshot)
            })
            .collect()
    }

    fn write(&mut self, shards: &[(ShardLease, Snapshot)]) -> Vec<(ShardLease, Persisted)> {
        // Only the leases written now keep an entry (not a released, lost
        // or suspended shard's).
        self.written
            .retain(|lease, _| shards.iter().any(|(held, _)| held == lease));
        let mut answers = Vec::with_capacity(shards.len());
        let mut texts = Vec::new();
        for (lease, snapshot) in shards {
            let mut bytes = Vec::new();
            encode_snapshot_with_journal(&mut bytes, &snapshot.states, &snapshot.pending, None);
            let text = String::from_utf8(bytes).expect("JSON is UTF-8");
            if self.written.get(lease) == Some(&text) {
                answers.push((*lease, Persisted::Unchanged));
            } else {
                texts.push((*lease, text));
            }
        }
        if texts.is_empty() {
            return answers;
        }
        let leases: Vec<ShardLease> = texts.iter().map(|(lease, _)| *lease).collect();
        // The texts go to the request and come back with its answer.
        let written = self.request(move |statements, client| {
            let written = statements.write(client, &texts)?;
            Ok((written, texts))
        });
        match written {
            Ok((written, texts)) => {
                for (lease, text) in texts {
                    if written.contains(&lease.shard) {
                        answers.push((lease, Persisted::Written));
                        self.written.insert(lease, text);
                    } else {
                        answers.push((lease, Persisted::Fenced));
                        self.written.remove(&lease);
                    }
                }
            }
            Err(reason) => {
                error!(%reason, "cannot write the shards' state; their events wait until a write succeeds");
                for lease in leases {
                    answers.push((lease, Persisted::Failed));
                    self.written.remove(&lease);
                }
            }
        }
        answers
    }
}
