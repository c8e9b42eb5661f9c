//! Failover across instances (issue 25), with real processes against a real
//! PostgreSQL (the lease table) and a real Redis (the fenced stream), under
//! the test timings of FAILOVER.md: interval 1 s, probe timeout 0.5 s,
//! TTL 3 s, renew 0.5 s, self-fence 2 s.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use healthprobe_core::RuntimeRecord;
use healthprobe_core::shard::shard_of;
use healthprobe_tests::{
    Behaviour, HealthprobeProcess, ScratchDir, TcpRelay, TestEngine, TestPostgres, TestRedis,
    metrics_addr, scrape_metrics, write_records_file,
};

const STREAM: &str = "probe-events";
const SHARDS: u32 = 12;

/// The lease table's owners with a running lease, by instance: shard counts.
fn owners(postgres: &TestPostgres) -> BTreeMap<String, usize> {
    let rows = postgres
        .client()
        .query(
            "SELECT owner FROM hp_shard WHERE owner IS NOT NULL AND expires_at > now()",
            &[],
        )
        .expect("read the lease table");
    let mut owners = BTreeMap::new();
    for row in rows {
        *owners.entry(row.get::<_, String>(0)).or_default() += 1;
    }
    owners
}

/// Poll every 50 ms until `condition` holds; the time it took, or `None` after `limit`.
fn until(limit: Duration, mut condition: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Counts per instance, sorted, for `ids`.
fn spread(postgres: &TestPostgres, ids: &[&str]) -> Vec<usize> {
    let owners = owners(postgres);
    let mut counts: Vec<usize> = ids
        .iter()
        .map(|id| owners.get(*id).copied().unwrap_or(0))
        .collect();
    counts.sort_unstable();
    counts
}

struct Cluster {
    postgres: TestPostgres,
    redis: TestRedis,
    dir: ScratchDir,
    engines: Vec<TestEngine>,
}

impl Cluster {
    /// `games` engines (`g00`…), the first `failing` answering 500; the lease table made.
    fn start(games: usize, failing: usize) -> Self {
        let postgres = TestPostgres::start_fresh();
        let redis = TestRedis::start();
        let dir = ScratchDir::new("ha-failover").expect("a temporary folder");
        let engines: Vec<TestEngine> = (0..games)
            .map(|index| {
                let status = if index < failing { 500 } else { 200 };
                TestEngine::start(Behaviour::Status(status)).expect("an engine")
            })
            .collect();
        let records: Vec<RuntimeRecord> = engines
            .iter()
            .enumerate()
            .map(|(index, engine)| {
                RuntimeRecord::running(format!("g{index:02}"), format!("c{index:02}"), engine.url())
            })
            .collect();
        write_records_file(&dir.join("records.json"), &records).expect("write the records");
        let cluster = Self {
            postgres,
            redis,
            dir,
            engines,
        };
        let init = cluster.ha_command(&["init", "--shards", &SHARDS.to_string()]);
        assert_eq!(init.0, Some(0), "ha init: {}", init.2);
        cluster
    }

    /// `healthprobe ha ARGS --ha URL`: exit code, stdout, stderr.
    fn ha_command(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let mut command = HealthprobeProcess::command();
        command
            .arg("ha")
            .args(args)
            .args(["--ha", &self.postgres.url()]);
        let output = command.output().expect("run healthprobe ha");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn instance(&self, id: &str, extra: &[&str]) -> HealthprobeProcess {
        self.instance_via(id, &self.postgres.url(), extra)
    }

    /// An instance that reaches the lease table at `ha` (a relay).
    fn instance_via(&self, id: &str, ha: &str, extra: &[&str]) -> HealthprobeProcess {
        let records = self.dir.join("records.json");
        let mut args = vec![
            "run",
            "--records",
            records.to_str().expect("UTF-8"),
            "--interval",
            "1s",
            "--probe-timeout",
            "500ms",
            "--failures-threshold",
            "3",
            "--recovery-threshold",
            "2",
            "--lease-ttl",
            "3s",
            "--lease-renew",
            "500ms",
            "--lease-self-fence",
            "2s",
            "--instance-id",
            id,
        ];
        args.extend_from_slice(extra);
        let events = self.redis.url(STREAM);
        let mut command = HealthprobeProcess::command();
        command.args(&args).args(["--events", &events, "--ha", ha]);
        HealthprobeProcess::spawn_command(command).expect("start an instance")
    }

    /// The stream's entries: (event_id, game_id, event_type, shard, epoch).
    fn stream(&self) -> Vec<(String, String, String, u32, u64)> {
        self.redis
            .entries(STREAM)
            .iter()
            .map(|entry| {
                let field = |name: &str| entry.get(name).unwrap_or_default().to_owned();
                (
                    field("event_id"),
                    field("game_id"),
                    field("event_type"),
                    field("shard").parse().expect("a shard field"),
                    field("epoch").parse().expect("an epoch field"),
                )
            })
            .collect()
    }

    /// Every failing game has its `probe_failed` in the stream.
    fn all_failed(&self, failing: usize) -> bool {
        let failed: HashSet<String> = self
            .stream()
            .into_iter()
            .filter(|entry| entry.2 == "probe_failed")
            .map(|entry| entry.1)
            .collect();
        failed.len() == failing
    }

    /// Wait (15 s at most) until `ids` hold `counts` shards (sorted).
    fn converge(&self, ids: &[&str], counts: &[usize]) {
        let converged = until(Duration::from_secs(15), || {
            spread(&self.postgres, ids) == counts
        });
        assert!(
            converged.is_some(),
            "never {counts:?}: {:?}",
            owners(&self.postgres)
        );
    }

    /// The leases `owner` holds: (shard, epoch).
    fn leases_of(&self, owner: &str) -> Vec<(i32, i64)> {
        let rows = self
            .postgres
            .client()
            .query(
                "SELECT shard_id, epoch FROM hp_shard WHERE owner = $1",
                &[&owner],
            )
            .expect("read the lease table");
        rows.iter().map(|row| (row.get(0), row.get(1))).collect()
    }

    /// The database's clock, in Unix seconds.
    fn db_now(&self) -> f64 {
        let row = self
            .postgres
            .client()
            .query_one("SELECT extract(epoch FROM now())::float8", &[]);
        row.expect("now").get(0)
    }

    /// Writes accepted after `since` (Unix seconds) under one of `leases`.
    fn writes_under(&self, leases: Vec<(i32, i64)>, since: f64) -> i64 {
        let (shards, epochs): (Vec<i32>, Vec<i64>) = leases.into_iter().unzip();
        let row = self.postgres.client().query_one(
            "SELECT count(*) FROM hp_audit a JOIN unnest($2::int[], $3::bigint[]) AS old(shard_id, epoch)
                ON a.shard_id = old.shard_id AND a.written_epoch = old.epoch
             WHERE extract(epoch FROM a.at)::float8 > $1",
            &[&since, &shards, &epochs],
        );
        row.expect("read the audit").get(0)
    }

    /// Each shard's epoch.
    fn epochs(&self) -> BTreeMap<i32, i64> {
        let rows = self
            .postgres
            .client()
            .query("SELECT shard_id, epoch FROM hp_shard", &[])
            .expect("read the lease table");
        rows.iter().map(|row| (row.get(0), row.get(1))).collect()
    }

    /// The games with a `probe_failed` in the stream, with how many each.
    fn failed_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for entry in self.stream() {
            if entry.2 == "probe_failed" {
                *counts.entry(entry.1).or_default() += 1;
            }
        }
        counts
    }

    /// Within 10 s the `failing` games' `probe_failed` are in the stream,
    /// and 2 s later still once each, in a clean stream.
    fn assert_each_failed_once(&self, failing: usize) {
        let failed = until(Duration::from_secs(10), || self.all_failed(failing));
        assert!(failed.is_some(), "{:?}", self.stream());
        std::thread::sleep(Duration::from_secs(2));
        assert!(
            self.failed_counts().values().all(|count| *count == 1),
            "a probe_failed repeated: {:?}",
            self.stream()
        );
        self.assert_stream_clean();
    }

    /// A relay to PostgreSQL the test can cut, and the `--ha` URL through it.
    fn relay(&self) -> (TcpRelay, String) {
        let relay = TcpRelay::start(([127, 0, 0, 1], self.postgres.port()).into());
        let url = format!("postgres://postgres@{}/postgres", relay.addr());
        (relay, url)
    }

    /// The stream holds each event id once, and per shard no entry under
    /// an epoch lower than one already in the stream (no stale publish).
    fn assert_stream_clean(&self) {
        let entries = self.stream();
        let mut ids = HashSet::new();
        let mut highest: HashMap<u32, u64> = HashMap::new();
        for (id, game, kind, shard, epoch) in &entries {
            assert!(
                ids.insert(id.clone()),
                "event {id} twice in the stream: {entries:?}"
            );
            let seen = highest.entry(*shard).or_default();
            assert!(
                *epoch >= *seen,
                "{kind} of {game} under epoch {epoch} after epoch {seen} of shard {shard}: a stale publish"
            );
            *seen = (*seen).max(*epoch);
        }
    }
}

#[test]
fn ha_cli_init_is_idempotent_status_shows_every_shard_and_bad_combinations_exit_2() {
    let cluster = Cluster::start(1, 0);
    let again = cluster.ha_command(&["init", "--shards", "12"]);
    assert_eq!(again.0, Some(0), "{}", again.2);
    let other = cluster.ha_command(&["init", "--shards", "8"]);
    assert_eq!(other.0, Some(2), "{}", other.2);
    assert!(
        other.2.contains("the lease table has 12 shards, not 8"),
        "{}",
        other.2
    );
    let (code, stdout, stderr) = cluster.ha_command(&["status", "--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON object per line"))
        .collect();
    assert_eq!(rows.len(), 12);
    for (index, row) in rows.iter().enumerate() {
        assert_eq!(row["shard"], index);
        assert_eq!(row["owner"], serde_json::Value::Null);
        assert_eq!(row["epoch"], 0);
    }
    let (code, table, _) = cluster.ha_command(&["status"]);
    assert_eq!(code, Some(0));
    assert!(table.starts_with("SHARD"), "{table}");
    assert_eq!(table.lines().count(), 13, "{table}");

    let records = cluster.dir.join("records.json");
    let records = records.to_str().expect("UTF-8");
    let ha = cluster.postgres.url();
    let redis = cluster.redis.url(STREAM);
    let state = cluster.dir.join("state.json");
    let refused: [(&[&str], &str); 4] = [
        (
            &[
                "--events",
                &redis,
                "--state",
                state.to_str().expect("UTF-8"),
            ],
            "--state",
        ),
        (&["--events", &redis, "--shard", "0/2"], "--shard"),
        (&["--events", "-"], "--events redis://"),
        (
            &["--events", &redis, "--lease-ttl", "2s"],
            "ttl > self-fence",
        ),
    ];
    for (extra, named) in refused {
        let mut command = HealthprobeProcess::command();
        command
            .args(["run", "--records", records, "--ticks", "1", "--ha", &ha])
            .args(extra);
        let output = command.output().expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(named), "{extra:?}: {stderr}");
    }
    assert!(
        owners(&cluster.postgres).is_empty(),
        "a refused run took no lease"
    );
    // A database where `ha init` never ran.
    cluster.postgres.execute("DROP TABLE hp_ha");
    let mut command = HealthprobeProcess::command();
    command.args([
        "run",
        "--records",
        records,
        "--ticks",
        "1",
        "--ha",
        &ha,
        "--events",
        &redis,
    ]);
    let output = command.output().expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("run `healthprobe ha init --shards S` first"),
        "{stderr}"
    );
}

#[test]
fn ha_three_instances_spread_12_shards_4_4_4_then_a_kill_9_leaves_6_6_and_nothing_twice() {
    let failing = 6;
    let cluster = Cluster::start(24, failing);
    let a = cluster.instance("a", &[]);
    let b = cluster.instance("b", &[]);
    let c = cluster.instance("c", &[]);
    let ids = ["a", "b", "c"];
    let converged = until(Duration::from_secs(15), || {
        spread(&cluster.postgres, &ids) == [4, 4, 4]
    });
    assert!(
        converged.is_some(),
        "never 4/4/4: {:?}\n{}",
        owners(&cluster.postgres),
        b.stderr()
    );
    assert!(
        until(Duration::from_secs(15), || cluster.all_failed(failing)).is_some(),
        "not every failing game's probe_failed reached the stream: {:?}",
        cluster.stream()
    );
    let before = cluster.stream().len();
    // b's games, and how often each engine was probed when b dies.
    let orphaned: Vec<usize> = cluster
        .leases_of("b")
        .iter()
        .flat_map(|(shard, _)| {
            (0..cluster.engines.len()).filter(move |game| {
                i64::from(shard_of(&format!("g{game:02}"), SHARDS)) == i64::from(*shard)
            })
        })
        .collect();
    let probes: Vec<usize> = orphaned
        .iter()
        .map(|&game| cluster.engines[game].requests())
        .collect();
    b.kill().expect("kill -9 b");
    // TTL + renew + 1 s (a margin of one more renew for this poll).
    let moved = until(Duration::from_secs(10), || {
        spread(&cluster.postgres, &["a", "c"]) == [6, 6]
    });
    let moved = moved.expect("the survivors never held 6/6");
    let probed = until(Duration::from_secs(10), || {
        orphaned
            .iter()
            .zip(&probes)
            .all(|(&game, &count)| cluster.engines[game].requests() > count)
    })
    .expect("b's games never probed again");
    eprintln!(
        "figure: 4/4/4 {converged:?} after the starts; kill -9 -> 6/6 in {moved:?}, \
         each of b's {} games probed again by {:?} after the kill",
        orphaned.len(),
        moved + probed
    );
    assert!(
        moved <= Duration::from_millis(4500 + 500),
        "took {moved:?} to move b's shards (TTL + renew + 1 s = 4.5 s)"
    );
    // Within one more interval (1 s), with the poll's margin.
    assert!(
        probed <= Duration::from_millis(1500),
        "b's games probed again {probed:?} after their shards moved"
    );
    // Every game probed again: the failing games stay failed, none recovers
    // or fails again (the counters moved with the shards), for 3 more ticks.
    std::thread::sleep(Duration::from_secs(3));
    let after = cluster.stream();
    assert_eq!(
        after.len(),
        before,
        "events after the takeover although no engine changed: {:?}",
        &after[before..]
    );
    // A failing game of b's heals: its probe_recovered comes once, from its new owner.
    cluster.engines[0].set(Behaviour::Status(200));
    assert!(
        until(Duration::from_secs(8), || {
            cluster
                .stream()
                .iter()
                .any(|entry| entry.1 == "g00" && entry.2 == "probe_recovered")
        })
        .is_some(),
        "g00 never recovered"
    );
    cluster.assert_stream_clean();
    a.terminate().expect("SIGTERM a");
    c.terminate().expect("SIGTERM c");
    let finished = a.wait(Duration::from_secs(5)).expect("a exits");
    assert!(finished.status.success(), "{}", finished.stderr);
    let finished = c.wait(Duration::from_secs(5)).expect("c exits");
    assert!(finished.status.success(), "{}", finished.stderr);
    assert!(
        owners(&cluster.postgres).is_empty(),
        "shards left held after SIGTERM"
    );
}

/// Game `game`'s consecutive failures in each snapshot of its shard written
/// under `epoch`, in write order.
fn counts_written(cluster: &Cluster, game: &str, epoch: i64) -> Vec<u64> {
    let shard = i32::try_from(shard_of(game, SHARDS)).expect("small");
    let rows = cluster
        .postgres
        .client()
        .query(
            "SELECT snapshot FROM hp_audit WHERE shard_id = $1 AND written_epoch = $2 ORDER BY at",
            &[&shard, &epoch],
        )
        .expect("read the audit");
    rows.iter()
        .map(|row| {
            let snapshot: serde_json::Value =
                serde_json::from_str(row.get(0)).expect("a snapshot is JSON");
            snapshot["states"]["games"][game]["consecutive_failures"]
                .as_u64()
                .unwrap_or(0)
        })
        .collect()
}

#[test]
fn ha_a_games_failure_count_continues_across_owners_after_a_kill_9() {
    let cluster = Cluster::start(12, 0);
    cluster.postgres.execute(AUDIT);
    let a = cluster.instance("a", &[]);
    let b = cluster.instance("b", &[]);
    cluster.converge(&["a", "b"], &[6, 6]);
    // A game of b's starts failing; b is killed once its row counts 2
    // failures (failures_threshold 3).
    let shard = i32::try_from(shard_of("g00", SHARDS)).expect("small");
    let owner: String = cluster
        .postgres
        .client()
        .query_one("SELECT owner FROM hp_shard WHERE shard_id = $1", &[&shard])
        .expect("g00's shard")
        .get(0);
    let (victim, survivor) = if owner == "a" { (a, b) } else { (b, a) };
    let old_epoch = cluster.epochs()[&shard];
    cluster.engines[0].set(Behaviour::Status(500));
    assert!(
        until(Duration::from_secs(10), || {
            counts_written(&cluster, "g00", old_epoch).last() == Some(&2)
        })
        .is_some(),
        "g00 never counted 2 failures"
    );
    victim.kill().expect("kill -9");
    assert!(
        until(Duration::from_secs(10), || cluster.epochs()[&shard]
            > old_epoch)
        .is_some(),
        "g00's shard never taken over"
    );
    let new_epoch = cluster.epochs()[&shard];
    assert!(
        until(Duration::from_secs(10), || cluster.all_failed(1)).is_some(),
        "g00's probe_failed never came"
    );
    let before = counts_written(&cluster, "g00", old_epoch);
    let after = counts_written(&cluster, "g00", new_epoch);
    let last_before = *before.last().expect("written before");
    // g00 keeps failing: its count never goes back, and goes on by one.
    assert!(
        !after.is_empty() && after.iter().all(|count| *count >= last_before),
        "the new owner counts on from the old owner's row ({last_before}): {before:?} then {after:?}"
    );
    assert!(
        after.contains(&(last_before + 1)),
        "{before:?} then {after:?}"
    );
    assert_eq!(cluster.failed_counts().get("g00"), Some(&1));
    drop(survivor);
}

#[test]
fn ha_sigterm_hands_every_shard_over_within_the_probe_timeout_plus_1s() {
    let cluster = Cluster::start(8, 2);
    let a = cluster.instance("a", &["--metrics-addr", "127.0.0.1:0"]);
    let b = cluster.instance("b", &["--runtime", "async"]);
    cluster.converge(&["a", "b"], &[6, 6]);
    assert!(until(Duration::from_secs(15), || cluster.all_failed(2)).is_some());
    b.terminate().expect("SIGTERM b");
    let moved = until(Duration::from_secs(10), || {
        owners(&cluster.postgres) == BTreeMap::from([("a".to_owned(), 12)])
    })
    .expect("a never held every shard");
    eprintln!("figure: SIGTERM -> every shard held by the survivor in {moved:?}");
    assert!(
        moved <= Duration::from_millis(1500),
        "took {moved:?} after SIGTERM (probe timeout + 1 s = 1.5 s)"
    );
    let finished = b.wait(Duration::from_secs(5)).expect("b exits");
    assert!(finished.status.success(), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("shards released"),
        "{}",
        finished.stderr
    );
    cluster.assert_stream_clean();
    // a's metrics: every shard active after the next tick, at least 12 acquired in all.
    let addr = metrics_addr(&a, Duration::from_secs(5));
    let active = until(Duration::from_secs(5), || {
        scrape_metrics(addr).value("healthprobe_ha_shards_active") == 12.0
    });
    let scrape = scrape_metrics(addr);
    assert!(active.is_some(), "{scrape:?}");
    assert!(scrape.value("healthprobe_ha_acquired_shards_total") >= 12.0);
    assert!(scrape.value("healthprobe_ha_renewals_total") > 0.0);
    assert_eq!(scrape.value("healthprobe_ha_fenced_writes_total"), 0.0);
    drop(a);
}

/// Records every snapshot write the database accepts, with its writer.
const AUDIT: &str = "
CREATE TABLE hp_audit (shard_id int, owner text, written_epoch bigint, snapshot text, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION hp_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.snapshot IS DISTINCT FROM OLD.snapshot OR NEW.written_epoch <> OLD.written_epoch THEN
    INSERT INTO hp_audit (shard_id, owner, written_epoch, snapshot)
         VALUES (NEW.shard_id, NEW.owner, NEW.written_epoch, NEW.snapshot);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER hp_audit AFTER UPDATE ON hp_shard FOR EACH ROW EXECUTE FUNCTION hp_audit();
";

#[test]
fn ha_an_owner_sigstopped_past_its_lease_writes_and_publishes_nothing_once_resumed() {
    let failing = 4;
    let cluster = Cluster::start(16, failing);
    cluster.postgres.execute(AUDIT);
    let a = cluster.instance("a", &[]);
    let b = cluster.instance("b", &[]);
    cluster.converge(&["a", "b"], &[6, 6]);
    assert!(until(Duration::from_secs(15), || cluster.all_failed(failing)).is_some());
    // b's leases when it stops: any write under one of them after the
    // takeover is a stale owner's (b may take shards again once resumed,
    // under new epochs).
    let held_by_b = cluster.leases_of("b");
    assert_eq!(held_by_b.len(), 6);
    signal(b.id(), "STOP");
    // a takes b's shards once their leases run out.
    let taken = until(Duration::from_secs(10), || {
        owners(&cluster.postgres) == BTreeMap::from([("a".to_owned(), 12)])
    });
    assert!(taken.is_some(), "a never took b's shards");
    let takeover = cluster.db_now();
    // Every engine changes while b sleeps: b wakes up with a tick's worth
    // of outcomes to fold, write and publish, all of them stale.
    for engine in &cluster.engines {
        engine.set(Behaviour::Status(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    signal(b.id(), "CONT");
    std::thread::sleep(Duration::from_secs(4));
    let stale = cluster.writes_under(held_by_b, takeover);
    assert_eq!(
        stale, 0,
        "writes under b's old leases accepted after the takeover"
    );
    let written_by_b: i64 = cluster
        .postgres
        .client()
        .query_one("SELECT count(*) FROM hp_audit WHERE owner = 'b'", &[])
        .expect("read the audit")
        .get(0);
    assert!(
        written_by_b > 0,
        "the audit saw none of b's writes: it checks nothing"
    );
    cluster.assert_stream_clean();
    let recovered = cluster
        .stream()
        .iter()
        .filter(|entry| entry.2 == "probe_recovered")
        .count();
    assert_eq!(
        recovered,
        failing,
        "each failing game recovers once: {:?}",
        cluster.stream()
    );
    drop((a, b));
}

#[test]
fn ha_postgres_down_shorter_than_the_lease_moves_nothing_and_a_longer_outage_keeps_every_counter() {
    let mut cluster = Cluster::start(12, 3);
    let a = cluster.instance("a", &[]);
    let b = cluster.instance("b", &[]);
    let ids = ["a", "b"];
    cluster.converge(&ids, &[6, 6]);
    assert!(until(Duration::from_secs(15), || cluster.all_failed(3)).is_some());
    let before = cluster.epochs();
    // Down for 1.5 s, less than TTL - renew: the same epochs afterwards.
    cluster.postgres.stop();
    std::thread::sleep(Duration::from_millis(1500));
    cluster.postgres.start();
    cluster.converge(&ids, &[6, 6]);
    assert_eq!(cluster.epochs(), before, "a short outage changed owners");
    // Two more games start failing, then the database is down for 5 s
    // (past every lease): each shard is taken again under a new epoch and
    // its counters are loaded, so each failing game's probe_failed comes
    // once, the old ones never again.
    cluster.engines[3].set(Behaviour::Status(500));
    cluster.engines[4].set(Behaviour::Status(500));
    std::thread::sleep(Duration::from_millis(1200));
    cluster.postgres.stop();
    std::thread::sleep(Duration::from_secs(5));
    cluster.postgres.start();
    cluster.converge(&ids, &[6, 6]);
    let after = cluster.epochs();
    assert!(
        before.iter().all(|(shard, epoch)| after[shard] > *epoch),
        "every lease ran out, so every shard is under a new epoch: {before:?} -> {after:?}"
    );
    cluster.assert_each_failed_once(5);
    drop((a, b));
}

#[test]
fn ha_an_instance_cut_off_from_postgres_self_fences_and_its_late_statements_are_refused() {
    let cluster = Cluster::start(12, 2);
    cluster.postgres.execute(AUDIT);
    let (relay, via_relay) = cluster.relay();
    let a = cluster.instance_via("a", &via_relay, &[]);
    let b = cluster.instance("b", &[]);
    cluster.converge(&["a", "b"], &[6, 6]);
    assert!(until(Duration::from_secs(15), || cluster.all_failed(2)).is_some());
    let held_by_a = cluster.leases_of("a");
    relay.cut();
    // Every game changes while a is cut off.
    for engine in &cluster.engines {
        engine.set(Behaviour::Status(500));
    }
    let taken = until(Duration::from_secs(10), || {
        owners(&cluster.postgres) == BTreeMap::from([("b".to_owned(), 12)])
    })
    .expect("b never took a's shards");
    assert!(taken <= Duration::from_millis(5000), "took {taken:?}");
    let takeover = cluster.db_now();
    std::thread::sleep(Duration::from_secs(2));
    relay.heal();
    cluster.converge(&["a", "b"], &[6, 6]);
    let stale = cluster.writes_under(held_by_a, takeover);
    assert_eq!(
        stale, 0,
        "writes under a's old leases accepted after the takeover"
    );
    cluster.assert_each_failed_once(12);
    drop((a, b));
}

/// A small seeded generator (SplitMix64): the chaos is replayable from its seed.
struct Chaos(u64);

impl Chaos {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        usize::try_from((z ^ (z >> 31)) % below as u64).expect("small")
    }
}

/// Kills, pauses past the lease, SIGTERMs, PostgreSQL restarts and one
/// instance cut off from PostgreSQL, while engines flip, for
/// `HEALTHPROBE_HA_CHAOS_SECONDS` (default 40) from `HEALTHPROBE_HA_CHAOS_SEED`.
/// Then, once quiet: every event ever committed in a shard row is in the
/// stream, none twice, each game's events alternate from `probe_failed`,
/// no publish under an epoch older than one already in the stream, the
/// last event of each game matches its engine, and the shards are balanced.
#[test]
fn ha_chaos_loses_nothing_committed_duplicates_nothing_and_keeps_each_games_order() {
    let seconds: u64 = std::env::var("HEALTHPROBE_HA_CHAOS_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(40);
    let seed: u64 = std::env::var("HEALTHPROBE_HA_CHAOS_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(20_261_208);
    eprintln!(
        "chaos: seed {seed}, {seconds} s (HEALTHPROBE_HA_CHAOS_SEED, HEALTHPROBE_HA_CHAOS_SECONDS)"
    );
    let mut chaos = Chaos(seed);
    let games = 24;
    let mut cluster = Cluster::start(games, 0);
    cluster.postgres.execute(AUDIT);
    let (relay, via_relay) = cluster.relay();
    let mut failing = vec![false; games];
    let mut next_id = 0;
    let mut start = |cluster: &Cluster, relayed: bool| {
        next_id += 1;
        let id = format!("i{next_id}");
        let ha = if relayed {
            via_relay.clone()
        } else {
            cluster.postgres.url()
        };
        (id.clone(), relayed, cluster.instance_via(&id, &ha, &[]))
    };
    let mut live = vec![
        start(&cluster, true),
        start(&cluster, false),
        start(&cluster, false),
    ];
    let began = Instant::now();
    let mut log = Vec::new();
    while began.elapsed() < Duration::from_secs(seconds) {
        for _ in 0..3 {
            let game = chaos.next(games);
            failing[game] = !failing[game];
            let status = if failing[game] { 500 } else { 200 };
            cluster.engines[game].set(Behaviour::Status(status));
        }
        // A supervisor restarts an instance that exited (one that could
        // not reach PostgreSQL at start exits 1).
        for slot in &mut live {
            if !slot.2.is_running() {
                let last = slot
                    .2
                    .stderr()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .to_owned();
                log.push(format!("{} exited ({last}); restarted", slot.0));
                *slot = start(&cluster, slot.1);
            }
        }
        let victim = chaos.next(live.len());
        match chaos.next(6) {
            0 => {
                let (id, relayed, process) = live.swap_remove(victim);
                process.kill().expect("kill -9");
                log.push(format!("kill -9 {id}"));
                live.push(start(&cluster, relayed));
            }
            1 => {
                let (id, relayed, process) = live.swap_remove(victim);
                // Its handler is installed once it started (before, SIGTERM kills, as for any process).
                let started = process.wait_for_stderr(Duration::from_secs(20), |text| {
                    text.contains("health probe worker started")
                });
                process.terminate().expect("SIGTERM");
                let finished = process
                    .wait(Duration::from_secs(10))
                    .expect("exits after SIGTERM");
                assert!(
                    finished.status.success() || !started,
                    "{id}: {}",
                    finished.stderr
                );
                log.push(format!("SIGTERM {id}"));
                live.push(start(&cluster, relayed));
            }
            2 => {
                let pid = live[victim].2.id();
                signal(pid, "STOP");
                std::thread::sleep(Duration::from_secs(4));
                signal(pid, "CONT");
                log.push(format!("SIGSTOP 4 s {}", live[victim].0));
            }
            3 => {
                let down = 1 + chaos.next(4);
                cluster.postgres.stop();
                std::thread::sleep(Duration::from_secs(down as u64));
                cluster.postgres.start();
                log.push(format!("PostgreSQL down {down} s"));
            }
            4 => {
                relay.cut();
                std::thread::sleep(Duration::from_secs(4));
                relay.heal();
                log.push("relayed instance cut off 4 s".to_owned());
            }
            _ => log.push("quiet".to_owned()),
        }
        std::thread::sleep(Duration::from_millis(1000 + 500 * chaos.next(4) as u64));
    }
    eprintln!("chaos: {}", log.join("; "));
    // Quiet: every committed event delivered, each game's last event its engine's state.
    let committed = |cluster: &Cluster| -> HashSet<String> {
        let rows = cluster
            .postgres
            .client()
            .query("SELECT snapshot FROM hp_audit WHERE snapshot <> ''", &[])
            .expect("read the audit");
        let mut ids = HashSet::new();
        for row in rows {
            let snapshot: serde_json::Value =
                serde_json::from_str(row.get(0)).expect("a snapshot is JSON");
            for pending in snapshot["pending"].as_array().expect("pending events") {
                ids.insert(pending["id"].as_str().expect("an id").to_owned());
            }
        }
        ids
    };
    let settled = until(Duration::from_secs(40), || {
        let stream = cluster.stream();
        let mut last: HashMap<&str, &str> = HashMap::new();
        for entry in &stream {
            last.insert(&entry.1, &entry.2);
        }
        let states_match = (0..games).all(|game| {
            let expected = if failing[game] {
                Some("probe_failed")
            } else {
                None
            };
            let seen = last.get(format!("g{game:02}").as_str()).copied();
            match expected {
                Some(kind) => seen == Some(kind),
                None => seen.is_none_or(|kind| kind == "probe_recovered"),
            }
        });
        let delivered: HashSet<String> = stream.iter().map(|entry| entry.0.clone()).collect();
        states_match && committed(&cluster).is_subset(&delivered)
    });
    let ids: Vec<&str> = live.iter().map(|(id, ..)| id.as_str()).collect();
    let balanced = until(Duration::from_secs(20), || {
        let counts = spread(&cluster.postgres, &ids);
        counts.iter().sum::<usize>() == SHARDS as usize && counts[counts.len() - 1] - counts[0] <= 1
    });
    let stream = cluster.stream();
    let delivered: HashSet<String> = stream.iter().map(|entry| entry.0.clone()).collect();
    let missing: Vec<String> = committed(&cluster)
        .difference(&delivered)
        .cloned()
        .collect();
    for id in &missing {
        let game = id.rsplit(':').next().expect("a game id");
        let shard = i32::try_from(shard_of(game, SHARDS)).expect("small");
        let rows = cluster
            .postgres
            .client()
            .query(
                "SELECT owner, written_epoch, at::text, position($2 in snapshot) > 0 FROM hp_audit WHERE shard_id = $1 ORDER BY at",
                &[&shard, &id.as_str()],
            )
            .expect("read the audit");
        eprintln!("missing {id} (shard {shard}): its shard's writes (owner, epoch, at, holds it):");
        for row in rows {
            let (owner, epoch, at, holds): (Option<String>, i64, String, bool) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            eprintln!("  {owner:?} {epoch} {at} {holds}");
        }
        eprintln!("  now: {:?}", cluster.epochs().get(&shard));
        let games: Vec<_> = stream.iter().filter(|entry| entry.1 == game).collect();
        eprintln!("  stream for {game}: {games:?}");
        for (name, _, process) in &live {
            let lines: Vec<String> = process
                .stderr()
                .lines()
                .filter(|line| {
                    line.contains(&format!("shard={shard}"))
                        || line.contains(game)
                        || line.contains("fenced")
                        || line.contains("released")
                        || line.contains("acquired")
                })
                .map(str::to_owned)
                .collect();
            eprintln!("--- {name} ---\n{}", lines.join("\n"));
        }
    }
    assert!(
        missing.is_empty(),
        "seed {seed}: committed events never published: {missing:?}\n{log:?}"
    );
    assert!(
        settled.is_some(),
        "seed {seed}: the stream never matched the engines: {stream:?}\n{log:?}"
    );
    cluster.assert_stream_clean();
    let mut next: HashMap<&str, &str> = HashMap::new();
    for (id, game, kind, ..) in &stream {
        let expected = next.get(game.as_str()).copied().unwrap_or("probe_failed");
        assert_eq!(
            kind, expected,
            "seed {seed}: {game}'s events out of order at {id}: {stream:?}"
        );
        next.insert(
            game,
            if kind == "probe_failed" {
                "probe_recovered"
            } else {
                "probe_failed"
            },
        );
    }
    assert!(
        balanced.is_some(),
        "seed {seed}: not balanced: {:?}",
        owners(&cluster.postgres)
    );
    eprintln!(
        "chaos: {} events in the stream, {} committed",
        stream.len(),
        committed(&cluster).len()
    );
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}
