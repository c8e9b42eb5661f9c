//! Leases with fencing epochs on a real PostgreSQL (issue 25): the lease
//! machine (`core/src/lease.rs`) driven through the lease table's SQL
//! (`shell/sql/ha.sql`, `adapters::pg_leases`), the database's clock pinned
//! through `hp.now` and stepped with the machines' virtual time.

use std::time::Duration;

use healthprobe_core::Timestamp;
use healthprobe_core::lease::{LeaseAction, LeaseConfig, LeaseMachine, ShardLease};
use healthprobe_shell::adapters::pg_leases::{self, HaError, PgLeases};
use healthprobe_tests::TestPostgres;
use postgres::Client;

/// The test timings of FAILOVER.md: TTL 3 s, renew 0.5 s, self-fence 2 s.
fn lease_config(id: &str, shards: u32) -> LeaseConfig {
    let mut config = LeaseConfig::new(id, shards);
    config.ttl = Duration::from_secs(3);
    config.renew = Duration::from_millis(500);
    config.self_fence = Duration::from_secs(2);
    config
}

struct Instance {
    machine: LeaseMachine,
    leases: PgLeases,
    client: Client,
    alive: bool,
}

impl Instance {
    fn new(postgres: &TestPostgres, id: &str, shards: u32) -> Self {
        let config = lease_config(id, shards);
        let leases = PgLeases::new(id, config.ttl);
        let machine = LeaseMachine::new(config, Duration::ZERO).expect("valid timings");
        Self {
            machine,
            leases,
            client: postgres.client(),
            alive: true,
        }
    }

    fn active(&self, now: Duration) -> Vec<ShardLease> {
        self.machine.view(now).active
    }
}

/// Pin the database's clock on `client`'s connection to `now` after a fixed origin.
fn pin(client: &mut Client, now: Duration) {
    let origin = Timestamp::from_second(1_800_000_000).expect("a time");
    let at = origin.checked_add(now).expect("a time");
    client
        .batch_execute(&format!("SET hp.now = '{at}'"))
        .expect("pin hp.now");
}

/// Step the live instances every 100 ms from `from` to `until` (virtual
/// seconds); draining shards are released at once.
fn drive(instances: &mut [Instance], from: f64, until: f64) {
    let mut t = from;
    while t < until - 1e-9 {
        let now = Duration::from_secs_f64(t);
        for instance in instances.iter_mut().filter(|instance| instance.alive) {
            pin(&mut instance.client, now);
            while let Some(action) = instance.machine.poll_action(now) {
                match action {
                    LeaseAction::Heartbeat => {
                        let reply = instance
                            .leases
                            .heartbeat(&mut instance.client)
                            .map_err(|_| ());
                        instance.machine.handle_heartbeat(reply);
                    }
                    LeaseAction::Acquire { want } => {
                        let taken = instance
                            .leases
                            .acquire(&mut instance.client, want)
                            .map_err(|_| ());
                        instance.machine.handle_acquired(taken);
                    }
                    LeaseAction::Wait { .. } | LeaseAction::Stop => break,
                }
            }
            let draining = instance.machine.view(now).draining;
            if !draining.is_empty() {
                instance
                    .leases
                    .release(&mut instance.client, &draining)
                    .expect("release");
                instance.machine.handle_released(&draining);
            }
        }
        t += 0.1;
    }
}

fn counts(instances: &[Instance], at: f64) -> Vec<usize> {
    let now = Duration::from_secs_f64(at);
    instances
        .iter()
        .filter(|instance| instance.alive)
        .map(|instance| instance.active(now).len())
        .collect()
}

#[test]
fn ha_init_is_idempotent_and_refuses_another_shard_count() {
    let postgres = TestPostgres::start_fresh();
    let mut client = postgres.client();
    assert!(matches!(
        pg_leases::shard_count(&mut client),
        Err(HaError::NotInitialised)
    ));
    pg_leases::init(&mut client, 12).expect("init");
    pg_leases::init(&mut client, 12).expect("init again");
    assert_eq!(pg_leases::shard_count(&mut client).expect("count"), 12);
    let err = pg_leases::init(&mut client, 8).expect_err("another count");
    assert_eq!(
        err.to_string(),
        "the lease table has 12 shards, not 8: the shard count is fixed at `ha init`"
    );
    let rows = pg_leases::status(&mut client).expect("status");
    assert_eq!(rows.len(), 12);
    assert!(rows.iter().all(|row| row.owner.is_none() && row.epoch == 0));
}

#[test]
fn ha_three_instances_spread_12_shards_then_survivors_take_a_killed_ones() {
    let postgres = TestPostgres::start_fresh();
    pg_leases::init(&mut postgres.client(), 12).expect("init");
    let mut instances: Vec<Instance> = ["a", "b", "c"]
        .iter()
        .map(|id| Instance::new(&postgres, id, 12))
        .collect();
    drive(&mut instances, 0.0, 3.0);
    // Within a few heartbeats (renew 0.5 s) of the start.
    assert_eq!(counts(&instances, 3.0), vec![4, 4, 4]);
    let status = pg_leases::status(&mut postgres.client()).expect("status");
    let b_shards: Vec<u32> = instances[1]
        .active(Duration::from_secs(3))
        .iter()
        .map(|l| l.shard)
        .collect();
    for row in &status {
        assert!(row.owner.is_some(), "{row:?}");
    }
    // kill -9 of "b": nothing of it runs any more.
    instances[1].alive = false;
    // TTL + renew + 1 s after its last heartbeat (at most 3 s).
    drive(&mut instances, 3.0, 3.0 + 3.0 + 0.5 + 1.0);
    assert_eq!(counts(&instances, 7.5), vec![6, 6]);
    let after = pg_leases::status(&mut postgres.client()).expect("status");
    for shard in b_shards {
        let (before, now) = (&status[shard as usize], &after[shard as usize]);
        assert_eq!(
            now.epoch,
            before.epoch + 1,
            "shard {shard}: one takeover, one epoch"
        );
        assert_ne!(now.owner.as_deref(), Some("b"));
    }
}

#[test]
fn ha_a_paused_owner_self_fences_and_its_late_write_is_refused_by_the_database() {
    let postgres = TestPostgres::start_fresh();
    pg_leases::init(&mut postgres.client(), 2).expect("init");
    let mut a = vec![Instance::new(&postgres, "a", 2)];
    drive(&mut a, 0.0, 1.0);
    let held = a[0].active(Duration::from_secs(1));
    assert_eq!(held.len(), 2);
    let first = &mut a[0];
    let written = first
        .leases
        .write(&mut first.client, &[(held[0], "snapshot 1".to_owned())])
        .expect("write");
    assert_eq!(written, vec![held[0].shard]);
    // "a" is paused (SIGSTOP) at 1 s, its last heartbeat sent at 0.5 s: it
    // acts on nothing from 0.5 + 2 s (the self-fence), whatever happens in
    // the database.
    assert_eq!(a[0].active(Duration::from_secs_f64(2.4)).len(), 2);
    assert!(a[0].active(Duration::from_secs_f64(2.5)).is_empty());
    // "b" takes both once the leases expire (TTL 3 s after a's last renew).
    let mut b = vec![Instance::new(&postgres, "b", 2)];
    drive(&mut b, 1.0, 5.0);
    assert_eq!(b[0].active(Duration::from_secs(5)).len(), 2);
    // "a" wakes with a clock that says its lease is still good (its view
    // pinned where it paused): the database refuses its write anyway.
    pin(&mut a[0].client, Duration::from_secs(5));
    // Refused by the statement's check, or by the guard trigger behind it.
    let first = &mut a[0];
    match first
        .leases
        .write(&mut first.client, &[(held[0], "stale".to_owned())])
    {
        Ok(written) => assert!(written.is_empty(), "a stale owner wrote {written:?}"),
        Err(err) => assert!(err.to_string().contains("stale write"), "{err}"),
    }
    let snapshot: String = postgres
        .client()
        .query_one(
            "SELECT snapshot FROM hp_shard WHERE shard_id = $1",
            &[&i32::try_from(held[0].shard).expect("small")],
        )
        .expect("read")
        .get(0);
    assert_eq!(snapshot, "snapshot 1");
    // Its next heartbeat renews nothing: an expired lease is never renewed.
    a[0].machine.handle_tick_progress(Duration::from_secs(5));
    drive(&mut a, 5.0, 5.1);
    assert!(a[0].machine.held().is_empty());
}

#[test]
fn ha_the_guard_trigger_refuses_a_write_under_an_old_epoch_whatever_the_statement() {
    let postgres = TestPostgres::start_fresh();
    pg_leases::init(&mut postgres.client(), 1).expect("init");
    let mut a = vec![Instance::new(&postgres, "a", 1)];
    drive(&mut a, 0.0, 0.5);
    let held = a[0].active(Duration::from_millis(500));
    assert_eq!(held, vec![ShardLease { shard: 0, epoch: 1 }]);
    let mut client = postgres.client();
    // A write that names an old epoch, bypassing the fenced statement.
    let err = client
        .execute(
            "UPDATE hp_shard SET snapshot = 'x', written_epoch = 0 WHERE shard_id = 0",
            &[],
        )
        .expect_err("the trigger refuses it");
    let message = err.as_db_error().map(|db| db.message().to_owned());
    assert_eq!(
        message.as_deref(),
        Some("stale write to shard 0: epoch 0, current 1")
    );
    let err = client
        .execute("UPDATE hp_shard SET epoch = 0 WHERE shard_id = 0", &[])
        .expect_err("an epoch never goes back");
    let message = err.as_db_error().map(|db| db.message().to_owned());
    assert_eq!(message.as_deref(), Some("hp_shard 0: epoch goes back"));
}

#[test]
fn ha_an_expired_lease_is_never_renewed_its_owner_takes_it_again_under_a_new_epoch() {
    let postgres = TestPostgres::start_fresh();
    pg_leases::init(&mut postgres.client(), 1).expect("init");
    let mut a = vec![Instance::new(&postgres, "a", 1)];
    drive(&mut a, 0.0, 0.5);
    assert_eq!(
        a[0].active(Duration::from_millis(400)),
        vec![ShardLease { shard: 0, epoch: 1 }]
    );
    // Paused from 0.5 s to 4 s: its lease (renewed last at 0 s) ran out at
    // 3 s, and nobody took the shard meanwhile.
    a[0].machine.handle_tick_progress(Duration::from_secs(4));
    drive(&mut a, 4.0, 4.5);
    assert_eq!(
        a[0].active(Duration::from_millis(4500)),
        vec![ShardLease { shard: 0, epoch: 2 }],
        "one epoch is one unbroken chain of renewals"
    );
}
