//! Failover across instances, composed: `--ha`'s options, the lease table
//! and shard store opened from them (for [`crate::run()`]), and `healthprobe
//! ha init` / `ha status`. Without the `postgres` feature, `--ha` is
//! refused naming it.

#![cfg_attr(not(feature = "postgres"), allow(unused_imports))]

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use healthprobe_core::shard::Shard;
use tracing::info;

use crate::adapters::open::{OpenError, is_redis_url};
#[cfg(feature = "postgres")]
use crate::adapters::pg_leases::{self, ShardRow};
use crate::config::WorkerConfig;
use crate::driver::coordinator::Leases;
use crate::driver::ports::{LeaseTable, ShardStore, SystemClock};
use crate::run::{RunError, RunOptions};
use crate::tls::{TlsClient, TlsOptions};

/// Failover across instances: `healthprobe run --ha URL` and `healthprobe ha`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[non_exhaustive]
pub struct HaOptions {
    /// Failover across instances: coordinate with every instance given the
    /// same PostgreSQL URL (its lease table, made by `healthprobe ha init`).
    /// Each instance probes the games of the shards it holds a lease on,
    /// and the shards of one that dies pass to the others with their
    /// hysteresis state. Needs --events redis://… (which fences the
    /// publishes of an instance that lost its shards); --state, --journal
    /// and --shard are for single instances. `sslmode` as for --records.
    #[cfg_attr(
        feature = "cli",
        arg(
            long = "ha",
            env = "HEALTHPROBE_HA",
            hide_env_values = true,
            value_name = "URL"
        )
    )]
    pub url: Option<String>,
    /// With `--ha URL` without a password: the password is this file's first line.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "HEALTHPROBE_HA_PASSWORD_FILE", value_name = "FILE")
    )]
    pub ha_password_file: Option<PathBuf>,
    /// This instance's id among the instances, unique per process
    /// [default: HOSTNAME-PID].
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "HEALTHPROBE_INSTANCE_ID", value_name = "ID")
    )]
    pub instance_id: Option<String>,
    /// A lease's time to live, by the database's clock: an instance that
    /// dies loses its shards this long after its last renewal.
    #[cfg_attr(feature = "cli", arg(long, default_value = "15s", value_parser = crate::config::parse_positive_duration, value_name = "DURATION"))]
    pub lease_ttl: Duration,
    /// Time between lease renewals (heartbeats).
    #[cfg_attr(feature = "cli", arg(long, default_value = "2s", value_parser = crate::config::parse_positive_duration, value_name = "DURATION"))]
    pub lease_renew: Duration,
    /// Stop acting on a shard this long after the last renewal was sent
    /// (before its lease can have run out). Needs
    /// ttl > self-fence > 1.25 x renew.
    #[cfg_attr(feature = "cli", arg(long, default_value = "10s", value_parser = crate::config::parse_positive_duration, value_name = "DURATION"))]
    pub lease_self_fence: Duration,
}

impl Default for HaOptions {
    /// No failover; production lease timings (TTL 15 s, renew 2 s, self-fence 10 s).
    fn default() -> Self {
        Self {
            url: None,
            ha_password_file: None,
            instance_id: None,
            lease_ttl: Duration::from_secs(15),
            lease_renew: Duration::from_secs(2),
            lease_self_fence: Duration::from_secs(10),
        }
    }
}

/// Failover's ports: the lease machine, the lease thread's table and the
/// tick side's shard store, each table on its own connection.
pub(crate) type HaPorts = (Leases, Box<dyn LeaseTable>, Box<dyn ShardStore>);

/// Open `--ha`: check the flags that go with it, the lease timings and the
/// lease table (made by `ha init`).
#[cfg(feature = "postgres")]
pub(crate) fn open_ha(
    options: &RunOptions,
    config: &WorkerConfig,
    tls: &TlsClient,
) -> Result<HaPorts, RunError> {
    use crate::adapters::pg_leases::{PgHa, PgLeases};
    use healthprobe_core::lease::LeaseConfig;
    let bad =
        |message: &str| RunError::Open(OpenError::BadInput(format!("invalid setting: {message}")));
    if options.state.is_some() || options.journal.is_some() {
        return Err(bad(
            "--ha keeps the state in PostgreSQL: --state and --journal are for a single instance",
        ));
    }
    if options.shard != Shard::ALL {
        return Err(bad(
            "--ha splits the fleet by leases: --shard is for instances without --ha",
        ));
    }
    if !options.events.to_str().is_some_and(is_redis_url) {
        return Err(bad(
            "--ha needs --events redis://…: only a stream shared by every instance can refuse the publishes of one that lost its shards",
        ));
    }
    let ha = &options.ha;
    let mut lease_config = LeaseConfig::new(instance_id(ha.instance_id.as_deref()), 1);
    lease_config.ttl = ha.lease_ttl;
    lease_config.renew = ha.lease_renew;
    lease_config.self_fence = ha.lease_self_fence;
    lease_config.liveness_gate = Some(config.interval * 6);
    // Each statement is answered well before the self-fence.
    let timeout = (ha.lease_self_fence / 2).min(Duration::from_secs(3));
    // Once, at start, with the records' patience (a database under load).
    let mut db = open_ha_db(ha, tls, crate::adapters::PostgresRecords::DEFAULT_TIMEOUT)?;
    lease_config.shards = ha_request(&mut db, pg_leases::shard_count)?;
    let statements = PgLeases::new(lease_config.instance_id.clone(), lease_config.ttl);
    let (instance_id, shards) = (lease_config.instance_id.clone(), lease_config.shards);
    let leases = Leases::new(lease_config, Arc::new(SystemClock)).map_err(|err| {
        bad(&format!(
            "--lease-ttl, --lease-self-fence, --lease-renew: {err}"
        ))
    })?;
    let shard_store = PgHa::new(open_ha_db(ha, tls, timeout)?, statements.clone());
    info!(%instance_id, shards, "failover: coordinating through the lease table");
    Ok((
        leases,
        Box::new(PgHa::new(db, statements)),
        Box::new(shard_store),
    ))
}

#[cfg(not(feature = "postgres"))]
pub(crate) fn open_ha(
    _: &RunOptions,
    _: &WorkerConfig,
    _: &TlsClient,
) -> Result<HaPorts, RunError> {
    Err(RunError::Open(OpenError::BadInput(
        "--ha: failover needs the `postgres` feature, which this build of healthprobe-shell leaves out".to_owned(),
    )))
}

/// A bounded connection to `--ha`'s database.
#[cfg(feature = "postgres")]
fn open_ha_db(
    ha: &HaOptions,
    tls: &TlsClient,
    timeout: Duration,
) -> Result<crate::adapters::PostgresRecords, RunError> {
    let url = ha.url.as_deref().unwrap_or_default();
    crate::adapters::open::open_postgres_connection(
        "--ha",
        url,
        ha.ha_password_file.as_deref(),
        tls,
        timeout,
    )
    .map_err(RunError::Open)
}

/// `--instance-id`, or this host's name and this process's id.
#[cfg(feature = "postgres")]
fn instance_id(given: Option<&str>) -> String {
    if let Some(id) = given {
        return id.to_owned();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    let host = if host.is_empty() { "healthprobe" } else { host };
    format!("{host}-{}", std::process::id())
}

/// Run `work` on `--ha`'s database: a table that does not fit (not made,
/// another shard count) is bad input (exit 2), a database that does not
/// answer is not (exit 1).
#[cfg(feature = "postgres")]
fn ha_request<T: Send + 'static>(
    db: &mut crate::adapters::PostgresRecords,
    work: impl FnOnce(&mut postgres::Client) -> Result<T, pg_leases::HaError> + Send + 'static,
) -> Result<T, RunError> {
    let answer = db.request(move |client| match work(client) {
        Err(err @ pg_leases::HaError::Db(_)) => Err(err.to_string()),
        other => Ok(other.map_err(|err| err.to_string())),
    });
    match answer {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(reason)) => Err(RunError::Open(OpenError::BadInput(format!(
            "--ha: {reason}"
        )))),
        Err(reason) => Err(RunError::Open(OpenError::Unavailable(format!(
            "--ha: {reason}"
        )))),
    }
}

/// `healthprobe ha`: make the lease table, or show who holds which shard.
#[cfg(feature = "postgres")]
#[derive(Debug)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
#[non_exhaustive]
pub enum HaCommand {
    /// Make the lease table with S shards (safe to run again; the count is
    /// fixed once made). Every instance run with `--ha URL` shares them.
    Init {
        /// How many shards split the fleet: a few per instance you may run (1 to 1024).
        #[cfg_attr(feature = "cli", arg(long, value_parser = clap::value_parser!(u32).range(1..=1024), value_name = "S"))]
        shards: u32,
        /// The lease table's database.
        #[cfg_attr(feature = "cli", command(flatten))]
        ha: HaOptions,
        /// Its TLS trust.
        #[cfg_attr(feature = "cli", command(flatten))]
        tls: TlsOptions,
    },
    /// Print every shard's owner, epoch and lease age (seconds).
    Status {
        /// One JSON object per shard, one per line.
        #[cfg_attr(feature = "cli", arg(long))]
        json: bool,
        /// The lease table's database.
        #[cfg_attr(feature = "cli", command(flatten))]
        ha: HaOptions,
        /// Its TLS trust.
        #[cfg_attr(feature = "cli", command(flatten))]
        tls: TlsOptions,
    },
}

/// Run `command`, printing on standard output.
#[cfg(feature = "postgres")]
pub fn ha_command(command: &HaCommand) -> Result<(), RunError> {
    let (HaCommand::Init { ha, tls, .. } | HaCommand::Status { ha, tls, .. }) = command;
    if ha.url.is_none() {
        return Err(RunError::Open(OpenError::BadInput(
            "ha: give the lease table's database with --ha URL (or HEALTHPROBE_HA)".to_owned(),
        )));
    }
    let printed = match command {
        HaCommand::Init { shards, .. } => {
            ha_init(ha, tls, *shards)?;
            writeln!(io::stdout(), "lease table ready: {shards} shards")
        }
        HaCommand::Status { json, .. } => {
            print_status(&ha_status(ha, tls)?, *json, io::stdout().lock())
        }
    };
    printed.map_err(|err| {
        RunError::Open(OpenError::Unavailable(format!(
            "cannot write to standard output: {err}"
        )))
    })
}

/// `healthprobe ha init --shards S`: the lease table with `shards` shards
/// (idempotent; another count than the table's is refused).
#[cfg(feature = "postgres")]
fn ha_init(ha: &HaOptions, tls: &TlsOptions, shards: u32) -> Result<(), RunError> {
    let tls = TlsClient::new(tls)?;
    let mut db = open_ha_db(ha, &tls, Duration::from_secs(10))?;
    ha_request(&mut db, move |client| pg_leases::init(client, shards))
}

/// `healthprobe ha status`: every shard's owner, epoch and lease age.
#[cfg(feature = "postgres")]
fn ha_status(ha: &HaOptions, tls: &TlsOptions) -> Result<Vec<pg_leases::ShardRow>, RunError> {
    let tls = TlsClient::new(tls)?;
    let mut db = open_ha_db(ha, &tls, Duration::from_secs(10))?;
    ha_request(&mut db, pg_leases::status)
}

/// `ha status`'s output: a table, or one JSON object per shard and line.
#[cfg(feature = "postgres")]
fn print_status(rows: &[ShardRow], json: bool, mut out: impl Write) -> io::Result<()> {
    let seconds = |value: Option<f64>| value.map_or("-".to_owned(), |s| format!("{s:.1}"));
    if !json {
        writeln!(
            out,
            "{:>5}  {:<32}  {:>6}  {:>9}  {:>10}",
            "SHARD", "OWNER", "EPOCH", "LEASE AGE", "EXPIRES IN"
        )?;
    }
    for row in rows {
        if json {
            let line = serde_json::json!({
                "shard": row.shard,
                "owner": row.owner,
                "epoch": row.epoch,
                "lease_age_seconds": row.lease_age,
                "expires_in_seconds": row.expires_in,
            });
            writeln!(out, "{line}")?;
        } else {
            let owner = row.owner.as_deref().unwrap_or("-");
            let (age, left) = (seconds(row.lease_age), seconds(row.expires_in));
            writeln!(
                out,
                "{:>5}  {owner:<32}  {:>6}  {age:>9}  {left:>10}",
                row.shard, row.epoch
            )?;
        }
    }
    out.flush()
}
