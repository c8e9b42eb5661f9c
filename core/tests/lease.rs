//! The lease machine's rules (L1–L7, `core/src/lease.rs`), action by action,
//! and a small model of the lease table (FAILOVER.md's SQL) on which several
//! machines must converge.

use std::collections::BTreeMap;
use std::time::Duration;

use healthprobe_core::lease::{
    Heartbeat, LeaseAction, LeaseConfig, LeaseConfigError, LeaseMachine, LeaseView, ShardLease,
};

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

fn lease(shard: u32, epoch: u64) -> ShardLease {
    ShardLease { shard, epoch }
}

fn config(id: &str, shards: u32) -> LeaseConfig {
    LeaseConfig::new(id, shards)
}

fn machine(id: &str, shards: u32) -> LeaseMachine {
    LeaseMachine::new(config(id, shards), s(0.0)).expect("valid config")
}

fn members(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

fn beat(owned: &[ShardLease], ids: &[&str], orphans: u32) -> Result<Heartbeat, ()> {
    Ok(Heartbeat {
        owned: owned.to_vec(),
        members: members(ids),
        orphans,
    })
}

fn active(view: &LeaseView) -> Vec<u32> {
    view.active.iter().map(|lease| lease.shard).collect()
}

fn draining(view: &LeaseView) -> Vec<u32> {
    view.draining.iter().map(|lease| lease.shard).collect()
}

#[test]
fn l1_validity_runs_from_the_send_of_the_heartbeat_not_its_reply() {
    let mut m = machine("a", 4);
    assert_eq!(m.poll_action(s(0.0)), Some(LeaseAction::Heartbeat));
    // The reply comes 3 s late: the lease is still anchored at 0 s.
    m.handle_heartbeat(beat(&[lease(0, 1)], &["a", "b", "c", "d"], 0));
    assert_eq!(active(&m.view(s(9.999))), vec![0]);
    assert_eq!(active(&m.view(s(10.0))), Vec::<u32>::new());
    // Past its validity but not known lost: suspended (the tick machine's H4).
    assert_eq!(m.view(s(10.0)).suspended, vec![lease(0, 1)]);
    assert!(m.view(s(9.999)).suspended.is_empty());
}

#[test]
fn l1_an_acquired_lease_is_valid_from_the_acquires_send() {
    let mut m = machine("a", 2);
    assert_eq!(m.poll_action(s(0.0)), Some(LeaseAction::Heartbeat));
    m.handle_heartbeat(beat(&[], &["a"], 2));
    assert_eq!(
        m.poll_action(s(1.0)),
        Some(LeaseAction::Acquire { want: 2 })
    );
    m.handle_acquired(Ok(vec![lease(0, 4), lease(1, 9)]));
    assert_eq!(active(&m.view(s(10.9))), vec![0, 1]);
    assert!(m.view(s(11.0)).active.is_empty());
}

#[test]
fn l2_a_shard_missing_from_the_heartbeat_is_lost_at_once() {
    let mut m = machine("a", 2);
    m.poll_action(s(0.0));
    m.handle_heartbeat(beat(&[lease(0, 1), lease(1, 1)], &["a"], 0));
    assert_eq!(
        m.poll_action(s(1.0)),
        Some(LeaseAction::Wait { until: s(2.0) })
    );
    assert_eq!(m.poll_action(s(2.0)), Some(LeaseAction::Heartbeat));
    // Stolen while this instance was slow: the database no longer renews it.
    m.handle_heartbeat(beat(&[lease(0, 1)], &["a"], 0));
    assert_eq!(active(&m.view(s(2.5))), vec![0]);
    assert_eq!(m.held(), vec![lease(0, 1)]);
}

#[test]
fn l2_an_unknown_shard_or_epoch_in_the_heartbeat_is_a_new_lease() {
    let mut m = machine("a", 2);
    m.poll_action(s(0.0));
    m.handle_heartbeat(beat(&[], &["a"], 2));
    assert_eq!(
        m.poll_action(s(0.1)),
        Some(LeaseAction::Acquire { want: 2 })
    );
    // The acquire's reply was lost: nothing is known.
    m.handle_acquired(Err(()));
    assert!(m.view(s(0.2)).active.is_empty());
    m.poll_action(s(2.0));
    // The database took both: the heartbeat adopts them, epochs as it says.
    m.handle_heartbeat(beat(&[lease(0, 3), lease(1, 5)], &["a"], 0));
    assert_eq!(m.view(s(2.1)).active, vec![lease(0, 3), lease(1, 5)]);
    m.poll_action(s(4.0));
    // Shard 1 expired and was re-acquired under epoch 6 (an unbroken chain
    // of renewals is one epoch): the view shows the new epoch, to be loaded.
    m.handle_heartbeat(beat(&[lease(0, 3), lease(1, 6)], &["a"], 0));
    assert_eq!(m.view(s(4.1)).active, vec![lease(0, 3), lease(1, 6)]);
}

#[test]
fn l3_targets_split_the_shards_by_member_order() {
    for (me, expected) in [("a", 4), ("b", 3), ("c", 3)] {
        let mut m = machine(me, 10);
        m.poll_action(s(0.0));
        m.handle_heartbeat(beat(&[], &["c", "a", "b"], 10));
        assert_eq!(m.target(), expected, "{me}");
        assert_eq!(
            m.poll_action(s(0.1)),
            Some(LeaseAction::Acquire { want: expected }),
            "{me}"
        );
    }
}

#[test]
fn l3_above_target_the_highest_shards_drain_once_no_orphan_is_left() {
    let mut m = machine("a", 4);
    let all = [lease(0, 1), lease(1, 1), lease(2, 1), lease(3, 1)];
    m.poll_action(s(0.0));
    m.handle_heartbeat(beat(&all, &["a"], 0));
    assert_eq!(active(&m.view(s(0.5))), vec![0, 1, 2, 3]);
    // "b" joined while an orphan remains: it takes the orphan first.
    m.poll_action(s(2.0));
    m.handle_heartbeat(beat(&all, &["a", "b"], 1));
    assert_eq!(draining(&m.view(s(2.5))), Vec::<u32>::new());
    // No orphan left: the two highest drain; the rest stay active.
    m.poll_action(s(4.0));
    m.handle_heartbeat(beat(&all, &["a", "b"], 0));
    let view = m.view(s(4.5));
    assert_eq!((active(&view), draining(&view)), (vec![0, 1], vec![2, 3]));
    // The tick side wrote their last state and released them.
    m.handle_released(&[lease(2, 1), lease(3, 1)]);
    assert_eq!(m.held(), vec![lease(0, 1), lease(1, 1)]);
}

#[test]
fn l3_a_draining_shard_is_kept_again_when_a_member_leaves() {
    let mut m = machine("a", 4);
    let all = [lease(0, 1), lease(1, 1), lease(2, 1), lease(3, 1)];
    m.poll_action(s(0.0));
    m.handle_heartbeat(beat(&all, &["a", "b"], 0));
    assert_eq!(draining(&m.view(s(0.5))), vec![2, 3]);
    m.poll_action(s(2.0));
    m.handle_heartbeat(beat(&all, &["a"], 0));
    let view = m.view(s(2.5));
    assert_eq!((active(&view), draining(&view)), (vec![0, 1, 2, 3], vec![]));
    assert_eq!(
        m.poll_action(s(2.6)),
        Some(LeaseAction::Wait { until: s(4.0) })
    );
}

#[test]
fn l3_orphans_on_two_heartbeats_running_are_asked_for_at_target() {
    let mut m = machine("a", 4);
    let mine = [lease(0, 1), lease(1, 1)];
    m.poll_action(s(0.0));
    m.handle_heartbeat(beat(&mine, &["a", "b"], 1));
    assert_eq!(
        m.poll_action(s(0.1)),
        Some(LeaseAction::Wait { until: s(2.0) })
    );
    m.poll_action(s(2.0));
    m.handle_heartbeat(beat(&mine, &["a", "b"], 1));
    assert_eq!(
        m.poll_action(s(2.1)),
        Some(LeaseAction::Acquire { want: 1 })
    );
}

#[test]
fn l4_a_failed_heartbeat_forgets_nothing_and_extends_nothing() {
    let mut m = machine("a", 1);
    m.poll_action(s(0.0));
    m.handle_heartbeat(beat(&[lease(0, 1)], &["a"], 0));
    for at in [2.0, 4.0, 6.0, 8.0] {
        assert_eq!(m.poll_action(s(at)), Some(LeaseAction::Heartbeat));
        m.handle_heartbeat(Err(()));
        assert_eq!(m.held(), vec![lease(0, 1)], "{at}");
    }
    assert_eq!(active(&m.view(s(9.9))), vec![0]);
    // Self-fenced at 10 s, though still held until a heartbeat says otherwise.
    assert!(m.view(s(10.0)).active.is_empty());
    assert_eq!(m.poll_action(s(10.0)), Some(LeaseAction::Heartbeat));
    m.handle_heartbeat(beat(&[lease(0, 1)], &["a"], 0));
    assert_eq!(active(&m.view(s(19.9))), vec![0]);
}

#[test]
fn l5_stuck_ticks_stop_renewal_until_they_progress() {
    let mut config = config("a", 1);
    config.liveness_gate = Some(s(5.0));
    let mut m = LeaseMachine::new(config, s(0.0)).expect("valid");
    m.poll_action(s(0.0));
    m.handle_heartbeat(beat(&[lease(0, 1)], &["a"], 0));
    m.poll_action(s(2.0));
    m.handle_heartbeat(beat(&[lease(0, 1)], &["a"], 0));
    m.handle_tick_progress(s(3.0));
    m.poll_action(s(4.0));
    m.handle_heartbeat(beat(&[lease(0, 1)], &["a"], 0));
    assert_eq!(m.poll_action(s(6.0)), Some(LeaseAction::Heartbeat));
    m.handle_heartbeat(beat(&[lease(0, 1)], &["a"], 0));
    // 5 s since the last progress at 3 s: no renewal.
    assert_eq!(
        m.poll_action(s(8.0)),
        Some(LeaseAction::Wait { until: s(10.0) })
    );
    assert_eq!(
        m.poll_action(s(10.0)),
        Some(LeaseAction::Wait { until: s(12.0) })
    );
    m.handle_tick_progress(s(11.0));
    assert_eq!(m.poll_action(s(12.0)), Some(LeaseAction::Heartbeat));
}

#[test]
fn l6_one_request_at_a_time_then_a_wait_from_the_heartbeats_send() {
    let mut m = machine("a", 2);
    assert_eq!(m.poll_action(s(0.0)), Some(LeaseAction::Heartbeat));
    assert_eq!(m.poll_action(s(0.5)), None);
    assert_eq!(m.poll_action(s(5.0)), None);
    m.handle_heartbeat(beat(&[], &["a"], 2));
    assert_eq!(
        m.poll_action(s(5.1)),
        Some(LeaseAction::Acquire { want: 2 })
    );
    assert_eq!(m.poll_action(s(5.2)), None);
    // An answer to a request not sent changes nothing.
    m.handle_heartbeat(beat(&[lease(0, 1)], &["a"], 0));
    m.handle_acquired(Ok(vec![lease(0, 1)]));
    assert_eq!(m.view(s(5.3)).active, vec![lease(0, 1)]);
    // The next heartbeat was due 2 s after the last one's send, long ago.
    assert_eq!(m.poll_action(s(5.3)), Some(LeaseAction::Heartbeat));
}

#[test]
fn l7_after_shutdown_nothing_is_renewed_and_every_lease_drains() {
    let mut m = machine("a", 2);
    m.poll_action(s(0.0));
    m.handle_heartbeat(beat(&[lease(0, 1), lease(1, 1)], &["a"], 0));
    assert_eq!(m.poll_action(s(2.0)), Some(LeaseAction::Heartbeat));
    m.handle_shutdown();
    // The heartbeat in flight is answered first.
    assert_eq!(m.poll_action(s(2.1)), None);
    m.handle_heartbeat(beat(&[lease(0, 1), lease(1, 1)], &["a"], 0));
    assert_eq!(m.poll_action(s(2.2)), Some(LeaseAction::Stop));
    let view = m.view(s(2.3));
    assert_eq!((active(&view), draining(&view)), (vec![], vec![0, 1]));
}

#[test]
fn lease_config_refuses_timings_that_would_fence_a_healthy_owner() {
    let mut bad = config("a", 4);
    bad.self_fence = s(15.0);
    assert_eq!(bad.validate(), Err(LeaseConfigError::Timings));
    let mut bad = config("a", 4);
    bad.self_fence = s(2.5);
    assert_eq!(bad.validate(), Err(LeaseConfigError::Timings));
    assert_eq!(config("a", 0).validate(), Err(LeaseConfigError::NoShards));
    assert_eq!(config("", 4).validate(), Err(LeaseConfigError::InstanceId));
    assert_eq!(config("a", 4).validate(), Ok(()));
}

/// FAILOVER.md's lease table, on the database's clock (`now`).
#[derive(Debug, Default)]
struct Table {
    shards: BTreeMap<u32, (Option<String>, u64, Duration)>,
    members: BTreeMap<String, Duration>,
}

impl Table {
    fn new(count: u32) -> Self {
        let mut table = Self::default();
        for shard in 0..count {
            table.shards.insert(shard, (None, 0, Duration::ZERO));
        }
        table
    }

    fn heartbeat(&mut self, id: &str, now: Duration, ttl: Duration) -> Heartbeat {
        self.members.insert(id.to_owned(), now + ttl);
        let mut owned = Vec::new();
        let mut orphans = 0;
        for (&shard, (owner, epoch, expires)) in &mut self.shards {
            if owner.as_deref() == Some(id) && *expires > now {
                *expires = now + ttl;
                owned.push(lease(shard, *epoch));
            }
            if owner.is_none() || *expires <= now {
                orphans += 1;
            }
        }
        let members = self
            .members
            .iter()
            .filter(|(_, expires)| **expires > now)
            .map(|(id, _)| id.clone())
            .collect();
        Heartbeat {
            owned,
            members,
            orphans,
        }
    }

    fn acquire(&mut self, id: &str, want: u32, now: Duration, ttl: Duration) -> Vec<ShardLease> {
        let rank = |owner: &Option<String>| match owner.as_deref() {
            Some(owner) if owner == id => 0,
            None => 1,
            Some(_) => 2,
        };
        let mut pick: Vec<(u8, u32)> = self
            .shards
            .iter()
            .filter(|(_, (owner, _, expires))| owner.is_none() || *expires <= now)
            .map(|(&shard, (owner, _, _))| (rank(owner), shard))
            .collect();
        pick.sort_unstable();
        pick.truncate(want as usize);
        pick.into_iter()
            .map(|(_, shard)| {
                let row = self.shards.get_mut(&shard).expect("picked");
                *row = (Some(id.to_owned()), row.1 + 1, now + ttl);
                lease(shard, row.1)
            })
            .collect()
    }

    fn release(&mut self, id: &str, leases: &[ShardLease], now: Duration) {
        for released in leases {
            let row = self.shards.get_mut(&released.shard).expect("a shard");
            if row.0.as_deref() == Some(id) && row.1 == released.epoch {
                *row = (None, row.1, now);
            }
        }
    }
}

/// Step `machines` (those alive) on the table every 100 ms until `until`;
/// draining shards are released at once (the tick side's last write).
fn drive(table: &mut Table, machines: &mut [(LeaseMachine, bool)], from: f64, until: f64) {
    let mut now = from;
    while now < until {
        let at = s(now);
        for (machine, alive) in machines.iter_mut() {
            if !*alive {
                continue;
            }
            let id = machine.config().instance_id.clone();
            let ttl = machine.config().ttl;
            while let Some(action) = machine.poll_action(at) {
                match action {
                    LeaseAction::Heartbeat => {
                        let reply = table.heartbeat(&id, at, ttl);
                        machine.handle_heartbeat(Ok(reply));
                    }
                    LeaseAction::Acquire { want } => {
                        let taken = table.acquire(&id, want, at, ttl);
                        machine.handle_acquired(Ok(taken));
                    }
                    LeaseAction::Wait { .. } | LeaseAction::Stop => break,
                }
            }
            let drained = machine.view(at).draining;
            table.release(&id, &drained, at);
            machine.handle_released(&drained);
        }
        now += 0.1;
    }
}

fn counts(machines: &[(LeaseMachine, bool)], now: f64) -> Vec<usize> {
    machines
        .iter()
        .filter(|(_, alive)| *alive)
        .map(|(machine, _)| machine.view(s(now)).active.len())
        .collect()
}

#[test]
fn l3_three_instances_spread_12_shards_4_4_4_then_6_6_after_a_kill() {
    let mut table = Table::new(12);
    let mut machines: Vec<(LeaseMachine, bool)> = ["a", "b", "c"]
        .iter()
        .map(|id| (machine(id, 12), true))
        .collect();
    // "a" starts alone and takes everything; "b" and "c" join 1 s later.
    drive(&mut table, &mut machines[..1], 0.0, 1.0);
    assert_eq!(counts(&machines[..1], 1.0), vec![12]);
    // Within two heartbeats of the join (renew 2 s).
    drive(&mut table, &mut machines, 1.0, 5.0);
    assert_eq!(counts(&machines, 5.0), vec![4, 4, 4]);
    drive(&mut table, &mut machines, 5.0, 12.0);
    assert_eq!(counts(&machines, 12.0), vec![4, 4, 4]);
    // Every shard is held by exactly one member, under the table's epoch.
    let mut held: Vec<ShardLease> = machines
        .iter()
        .flat_map(|(m, _)| m.view(s(12.0)).active)
        .collect();
    held.sort_unstable();
    let table_view: Vec<ShardLease> = table
        .shards
        .iter()
        .map(|(&shard, row)| lease(shard, row.1))
        .collect();
    assert_eq!(held, table_view);
    // kill -9 of "b": its leases run out (TTL 15 s) and the survivors split
    // them within TTL + renew + 1 s.
    machines[1].1 = false;
    drive(&mut table, &mut machines, 12.0, 12.0 + 15.0 + 2.0 + 1.0);
    assert_eq!(counts(&machines, 30.0), vec![6, 6]);
}
