//! The tick machine's HA mode (failover), rules H1–H7, action by action,
//! against a lease table and a publisher modelled in memory.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use healthprobe_core::lease::{LeaseView, ShardLease};
use healthprobe_core::shard::shard_of;
use healthprobe_core::tick::{
    Action, MachineConfig, Persisted, ProbeClass, Published, Snapshot, TickMachine, TickReport,
};
use healthprobe_core::{HealthStates, Outgoing, Policy, ProbeResult, RuntimeRecord, Timestamp};

const SHARDS: u32 = 4;

fn lease(shard: u32, epoch: u64) -> ShardLease {
    ShardLease { shard, epoch }
}

fn view(active: &[ShardLease], suspended: &[ShardLease], draining: &[ShardLease]) -> LeaseView {
    LeaseView {
        active: active.to_vec(),
        suspended: suspended.to_vec(),
        draining: draining.to_vec(),
    }
}

/// The `k`-th game id (`g0`, `g1`, …) that falls in `shard`.
fn game(shard: u32, k: usize) -> String {
    (0..)
        .map(|i| format!("g{i}"))
        .filter(|id| shard_of(id, SHARDS) == shard)
        .nth(k)
        .expect("ids enough")
}

fn failure() -> ProbeResult {
    ProbeResult::Unhealthy {
        status: 503,
        error: "unexpected status 503".into(),
    }
}

/// One instance's tick machine in HA mode, with the lease table's rows
/// (the committed snapshots) and the stream in memory.
struct Ha {
    machine: TickMachine,
    /// The views the lease side shows, one per [`Action::Lease`]; the last repeats.
    views: VecDeque<LeaseView>,
    /// The running games.
    games: Vec<String>,
    /// Games whose probes succeed (the others fail).
    healthy: BTreeSet<String>,
    /// Each shard's committed snapshot.
    committed: BTreeMap<u32, Snapshot>,
    /// How writes of a shard are answered (written by default).
    writes: BTreeMap<u32, Persisted>,
    /// How publishes of a shard's events are answered (accepted by default).
    publishes: BTreeMap<u32, Published>,
    /// Shards whose load fails.
    load_fails: BTreeSet<u32>,
    /// Events published, with whether their shard's committed snapshot held them then.
    published: Vec<(Outgoing, bool)>,
    /// The last tick's report.
    report: TickReport,
    /// The lease side's view now: the tick's first, then (time having
    /// passed) its second once the probes are done, asked for or not.
    shown: LeaseView,
    /// Leases a sink fenced, or released: nothing of them may follow (H3, H7).
    gone: BTreeSet<ShardLease>,
    /// Of those, the released: the lease side forgets them.
    released: BTreeSet<ShardLease>,
    second: i64,
}

impl Ha {
    fn new(failures_threshold: u32, first: LeaseView) -> Self {
        let mut config = MachineConfig::new(Duration::from_secs(5));
        config.fenced = Some(SHARDS);
        let policy = Policy::new(failures_threshold, 1).expect("valid");
        Self {
            machine: TickMachine::new(config, policy),
            views: VecDeque::from([first]),
            games: Vec::new(),
            healthy: BTreeSet::new(),
            committed: BTreeMap::new(),
            writes: BTreeMap::new(),
            publishes: BTreeMap::new(),
            load_fails: BTreeSet::new(),
            published: Vec::new(),
            report: TickReport::default(),
            shown: LeaseView::default(),
            gone: BTreeSet::new(),
            released: BTreeSet::new(),
            second: 1_800_000_000,
        }
    }

    fn show(&mut self, views: impl IntoIterator<Item = LeaseView>) {
        self.views = views.into_iter().collect();
    }

    fn next_view(&mut self) -> LeaseView {
        if self.views.len() > 1 {
            self.views.pop_front().expect("a view")
        } else {
            self.views.front().cloned().expect("a view")
        }
    }

    /// Drive one tick (or the stop, after shutdown); the actions in order,
    /// named with the games and shards they touch.
    fn tick(&mut self) -> Vec<String> {
        let now = Duration::ZERO;
        self.second += 5;
        let at = Timestamp::from_second(self.second).expect("valid");
        let mut seen = Vec::new();
        self.machine.start_tick(now);
        self.shown = self.next_view();
        let mut later = false;
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Lease => {
                    if seen.iter().any(|a| a == "lease") && !later {
                        (self.shown, later) = (self.next_view(), true);
                    }
                    seen.push("lease".to_owned());
                    self.machine.handle_lease(now, &self.shown);
                }
                Action::Load(leases) => {
                    seen.push(format!("load {}", shards(&leases)));
                    for lease in &leases {
                        assert!(self.shown.active.contains(lease), "H5: loads what it holds");
                        assert!(!self.gone.contains(lease), "H3: a fenced lease again");
                    }
                    let loaded = leases
                        .iter()
                        .map(|lease| {
                            let snapshot = match self.load_fails.contains(&lease.shard) {
                                true => Err(()),
                                false => Ok(self.committed.get(&lease.shard).cloned()),
                            };
                            (*lease, snapshot)
                        })
                        .collect();
                    self.machine.handle_loaded_shards(now, loaded);
                }
                Action::List => {
                    seen.push("list".to_owned());
                    let records = self
                        .games
                        .iter()
                        .map(|id| {
                            RuntimeRecord::running(id.as_str(), format!("c-{id}"), "http://x/")
                        })
                        .collect();
                    self.machine.handle_listing(now, Ok(records));
                }
                Action::Probe(batch) => {
                    for (job, record) in batch.jobs().iter().enumerate() {
                        seen.push(format!("probe {}", record.game_id));
                        let shard = shard_of(&record.game_id, SHARDS);
                        let active = self.shown.active.iter().find(|l| l.shard == shard);
                        assert!(active.is_some_and(|l| !self.gone.contains(l)), "H1");
                        let result = match self.healthy.contains(&record.game_id) {
                            true => ProbeResult::Healthy,
                            false => failure(),
                        };
                        self.machine
                            .handle_outcome(now, job, at, result, ProbeClass::BadStatus);
                        assert_eq!(self.machine.poll_action(), None, "nothing during probes");
                    }
                    self.machine.handle_probes_done(now);
                    (self.shown, later) = (self.next_view(), true);
                }
                Action::Write(leases) => {
                    seen.push(format!("write {}", shards(&leases)));
                    for lease in &leases {
                        let shown = [&self.shown.active, &self.shown.draining];
                        assert!(shown.iter().any(|l| l.contains(lease)), "H4: {lease:?}");
                        assert!(!self.gone.contains(lease), "H3, H7: {lease:?}");
                    }
                    let answers: Vec<(ShardLease, Persisted)> = leases
                        .iter()
                        .map(|lease| {
                            let answer = self.writes.get(&lease.shard).copied();
                            let mut answer = answer.unwrap_or(Persisted::Written);
                            let snapshot = self.machine.shard_snapshot(lease.shard);
                            if answer == Persisted::Written {
                                if self.committed.get(&lease.shard) == Some(&snapshot) {
                                    answer = Persisted::Unchanged;
                                }
                                self.committed.insert(lease.shard, snapshot);
                            }
                            if answer == Persisted::Fenced {
                                self.gone.insert(*lease);
                            }
                            (*lease, answer)
                        })
                        .collect();
                    self.machine.handle_written(now, &answers);
                }
                Action::Publish(out) => {
                    seen.push(format!("publish {}", out.event.game_id));
                    let shard = shard_of(&out.event.game_id, SHARDS);
                    // The fence the driver sends with it: the shard's held lease.
                    let fence = self.machine.lease_of(&out.event.game_id).expect("held");
                    assert!(self.shown.active.contains(&fence), "H2: only while Active");
                    assert!(!self.gone.contains(&fence), "H3, H7");
                    let committed = self
                        .committed
                        .get(&shard)
                        .is_some_and(|snapshot| snapshot.pending.contains(&out));
                    let answer = self.publishes.get(&shard).copied();
                    let answer = answer.unwrap_or(Published::Accepted);
                    assert!(committed, "H2: published before committed: {out:?}");
                    if answer == Published::Accepted {
                        self.published.push((out, committed));
                    }
                    if answer == Published::Fenced {
                        self.gone.insert(fence);
                    }
                    self.machine.handle_published(now, answer);
                }
                Action::SyncPublisher => {
                    seen.push("sync".to_owned());
                    self.machine.handle_synced(now, Ok(()));
                }
                Action::Release(leases) => {
                    seen.push(format!("release {}", shards(&leases)));
                    self.gone.extend(leases.iter().copied());
                    self.released.extend(leases);
                }
                Action::TickDone(report) => {
                    seen.push("done".to_owned());
                    self.report = report;
                }
                Action::Wait { .. } => break,
                Action::Stop(reason) => {
                    seen.push(format!("stop {reason:?}"));
                    break;
                }
                other => panic!("not in HA mode: {other:?}"),
            }
        }
        seen
    }

    fn counted(&self, game_id: &str) -> u64 {
        let game = self.machine.states().game(game_id);
        game.map_or(0, |game| game.consecutive_failures())
    }

    fn pending_games(&self) -> Vec<String> {
        let pending = self.machine.pending();
        pending.map(|out| out.event.game_id.clone()).collect()
    }
}

fn shards(leases: &[ShardLease]) -> String {
    let shards: Vec<String> = leases.iter().map(|l| l.shard.to_string()).collect();
    shards.join(",")
}

/// Whether any action in `seen` names `game`.
fn touches(seen: &[String], game: &str) -> bool {
    seen.iter()
        .any(|action| action.split(' ').nth(1) == Some(game))
}

/// A machine holding shards 0–3 under epoch 1 (loaded from empty rows),
/// every game of `games` (one per shard) running.
fn holding_all(failures_threshold: u32) -> (Ha, Vec<String>) {
    let all: Vec<ShardLease> = (0..SHARDS).map(|shard| lease(shard, 1)).collect();
    let mut ha = Ha::new(failures_threshold, view(&all, &[], &[]));
    let games: Vec<String> = (0..SHARDS).map(|shard| game(shard, 0)).collect();
    ha.games = games.clone();
    let seen = ha.tick();
    assert_eq!(seen[..3], ["lease", "load 0,1,2,3", "list"]);
    (ha, games)
}

#[test]
fn h1_a_game_is_probed_only_if_its_shard_is_active_at_the_listing() {
    let (mut ha, games) = holding_all(3);
    let stranger = game(0, 1);
    ha.games.push(stranger.clone());
    // Shard 0 lost, 1 suspended, 2 draining, 3 active.
    ha.show([view(&[lease(3, 1)], &[lease(1, 1)], &[lease(2, 1)])]);
    let seen = ha.tick();
    let probed: Vec<&String> = seen.iter().filter(|a| a.starts_with("probe")).collect();
    assert_eq!(probed, [&format!("probe {}", games[3])]);
    assert!(!touches(&seen, &stranger), "a shard not held is not probed");
    assert_eq!(ha.counted(&games[3]), 2);
    assert_eq!(
        ha.counted(&games[1]),
        1,
        "suspended: not probed, state kept"
    );
    let report = &ha.report;
    assert_eq!((report.shards_active, report.shards_suspended), (1, 1));
    assert_eq!(report.shards_dropped, 1, "shard 0, lost");
}

#[test]
fn h2_an_event_is_published_only_after_a_write_of_its_shard_holding_it_succeeded() {
    let (mut ha, games) = holding_all(1);
    // Tick 1 published every shard's probe_failed, each after its write.
    assert_eq!(ha.published.len(), 4);
    assert!(ha.published.iter().all(|(_, committed)| *committed));
    ha.published.clear();

    // Shard 1's writes fail: its new event waits, the others go out.
    let new: Vec<String> = (0..SHARDS).map(|shard| game(shard, 1)).collect();
    ha.games.extend(new.iter().cloned());
    ha.writes.insert(1, Persisted::Failed);
    ha.tick();
    let out: Vec<&str> = ha
        .published
        .iter()
        .map(|(o, _)| o.event.game_id.as_str())
        .collect();
    assert_eq!(out, [new[0].as_str(), new[2].as_str(), new[3].as_str()]);
    assert!(ha.published.iter().all(|(_, committed)| *committed));
    assert_eq!(ha.pending_games(), [new[1].clone()]);

    // The next tick writes shard 1 first, then publishes its event.
    ha.writes.clear();
    ha.published.clear();
    let seen = ha.tick();
    assert_eq!(
        seen[..4],
        [
            "lease",
            "write 0,1,2,3",
            &format!("publish {}", new[1]),
            "sync"
        ]
    );
    assert!(ha.published.iter().all(|(_, committed)| *committed));
    assert_eq!(ha.counted(&games[1]), 3);
}

#[test]
fn h2_a_shard_suspended_mid_tick_is_not_written_and_its_new_event_not_published() {
    let (mut ha, _) = holding_all(1);
    let new = game(1, 1);
    ha.games.push(new.clone());
    let all: Vec<ShardLease> = (0..SHARDS).map(|shard| lease(shard, 1)).collect();
    let others: Vec<ShardLease> = [0, 2, 3].map(|shard| lease(shard, 1)).to_vec();
    // Active at the tick's start, past its validity at the refresh.
    ha.show([view(&all, &[], &[]), view(&others, &[lease(1, 1)], &[])]);
    let seen = ha.tick();
    assert!(touches(&seen, &new), "active at the listing: probed");
    assert!(seen.contains(&"write 0,2,3".to_owned()));
    assert!(!seen.contains(&format!("publish {new}")));
    assert_eq!(ha.pending_games(), [new.as_str()]);
    // Resumed under the same epoch: written first, then published.
    ha.show([view(&all, &[], &[])]);
    let seen = ha.tick();
    assert_eq!(
        seen[..3],
        ["lease", "write 0,1,2,3", &format!("publish {new}")]
    );
    assert!(ha.published.iter().all(|(_, committed)| *committed));
}

#[test]
fn h2_a_committed_event_waits_while_its_shard_is_suspended_or_draining() {
    let all: Vec<ShardLease> = (0..SHARDS).map(|shard| lease(shard, 1)).collect();
    let mut ha = Ha::new(1, view(&all, &[], &[]));
    let waiting = game(1, 0);
    ha.games = vec![waiting.clone()];
    ha.publishes.insert(1, Published::Refused);
    ha.tick();
    ha.publishes.clear();
    let committed = &ha.committed[&1].pending;
    assert_eq!(committed.len(), 1, "committed, not published");
    let others: Vec<ShardLease> = [0, 2, 3].map(|shard| lease(shard, 1)).to_vec();
    for view in [
        view(&others, &[lease(1, 1)], &[]),
        view(&others, &[], &[lease(1, 1)]),
    ] {
        ha.show([view]);
        let seen = ha.tick();
        assert!(!touches(&seen, &waiting), "{seen:?}");
    }
    assert!(ha.published.is_empty());
    assert_eq!(ha.committed[&1].pending.len(), 1, "left for the next owner");
}

#[test]
fn h3_a_fenced_write_drops_the_shard_until_it_is_reacquired_and_loaded() {
    let (mut ha, games) = holding_all(3);
    ha.writes.insert(2, Persisted::Fenced);
    ha.tick();
    assert_eq!(ha.counted(&games[2]), 0, "its games left memory");
    assert_eq!((ha.report.fenced_writes, ha.report.shards_dropped), (1, 1));
    assert_eq!(ha.machine.lease_of(&games[2]), None);
    ha.writes.clear();
    // The lease side still shows the old epoch: nothing of shard 2 again.
    for _ in 0..2 {
        let seen = ha.tick();
        assert!(!touches(&seen, &games[2]));
        assert!(
            seen.iter()
                .all(|a| !a.starts_with("write") || !a.contains('2'))
        );
        assert!(seen.iter().all(|a| !a.starts_with("load")));
    }
    // Re-acquired under epoch 2: loaded from what was committed.
    let all: Vec<ShardLease> = [lease(0, 1), lease(1, 1), lease(2, 2), lease(3, 1)].to_vec();
    ha.show([view(&all, &[], &[])]);
    let seen = ha.tick();
    assert_eq!(seen[..3], ["lease", "load 2", "list"]);
    assert_eq!(
        ha.counted(&games[2]),
        2,
        "1 committed before the fence, then 1"
    );
    assert_eq!(ha.report.shards_loaded, 1);
    assert_eq!(ha.machine.lease_of(&games[2]), Some(lease(2, 2)));
}

#[test]
fn h3_a_fenced_publish_drops_the_shard_and_its_pending_events() {
    let all: Vec<ShardLease> = (0..SHARDS).map(|shard| lease(shard, 1)).collect();
    let mut ha = Ha::new(1, view(&all, &[], &[]));
    ha.games = vec![game(1, 0), game(1, 1), game(3, 0)];
    ha.publishes.insert(1, Published::Fenced);
    let seen = ha.tick();
    let publishes: Vec<&String> = seen.iter().filter(|a| a.starts_with("publish")).collect();
    // One fenced attempt for shard 1, its second event never offered; shard 3 goes on.
    let first_of_1 = format!("publish {}", game(1, 0));
    let of_3 = format!("publish {}", game(3, 0));
    assert_eq!(publishes, [&first_of_1, &of_3]);
    assert!(ha.pending_games().is_empty());
    assert_eq!(ha.counted(&game(1, 1)), 0);
    assert_eq!((ha.report.fenced_publishes, ha.report.published), (1, 1));
    let seen = ha.tick();
    assert!(!touches(&seen, &game(1, 0)) && !touches(&seen, &game(1, 1)));
}

#[test]
fn h4_a_suspended_shard_is_left_alone_and_resumed_under_the_same_epoch() {
    let (mut ha, games) = holding_all(1);
    let new = game(1, 1);
    ha.games.push(new.clone());
    let others: Vec<ShardLease> = [0, 2, 3].map(|shard| lease(shard, 1)).to_vec();
    ha.show([view(&others, &[lease(1, 1)], &[])]);
    let seen = ha.tick();
    assert!(!touches(&seen, &new) && !touches(&seen, &games[1]));
    assert!(seen.contains(&"write 0,2,3".to_owned()), "{seen:?}");
    assert_eq!(ha.counted(&games[1]), 1, "state kept");
    // Same epoch again: probed, written and published again.
    let all: Vec<ShardLease> = (0..SHARDS).map(|shard| lease(shard, 1)).collect();
    ha.show([view(&all, &[], &[])]);
    let seen = ha.tick();
    assert!(touches(&seen, &new));
    assert!(seen.contains(&format!("publish {new}")));
    assert_eq!(ha.counted(&games[1]), 2);
}

#[test]
fn h4_a_suspended_shard_seen_next_under_another_epoch_is_dropped_and_loaded() {
    let (mut ha, games) = holding_all(3);
    ha.writes.insert(1, Persisted::Failed); // the second failure is never committed
    ha.tick();
    ha.writes.clear();
    assert_eq!(ha.counted(&games[1]), 2);
    let others: Vec<ShardLease> = [0, 2, 3].map(|shard| lease(shard, 1)).to_vec();
    ha.show([view(&others, &[lease(1, 1)], &[])]);
    ha.tick();
    let mut next = others.clone();
    next.insert(1, lease(1, 2));
    ha.show([view(&next, &[], &[])]);
    let seen = ha.tick();
    assert_eq!(seen[..2], ["lease", "load 1"]);
    assert_eq!(
        ha.counted(&games[1]),
        2,
        "the committed 1, then this tick's"
    );
}

#[test]
fn h5_a_load_replaces_the_shards_local_state_never_merges() {
    let (mut ha, games) = holding_all(3);
    let other = game(2, 1);
    ha.games.push(other.clone());
    ha.writes.insert(2, Persisted::Failed);
    ha.tick(); // games[2]: 2 counted, `other`: 1, neither committed
    ha.writes.clear();
    // Meanwhile another owner committed its own view of shard 2.
    let mut theirs = HealthStates::new(Policy::new(3, 1).expect("valid"));
    let at = Timestamp::from_second(1_700_000_000).expect("valid");
    for _ in 0..2 {
        let outcome = healthprobe_core::ProbeOutcome {
            game_id: other.clone(),
            container_id: format!("c-{other}"),
            observed_at: at,
            result: failure(),
        };
        theirs.apply(outcome.as_ref());
    }
    let snapshot = Snapshot {
        states: theirs,
        pending: Vec::new(),
        journal_len: None,
    };
    ha.committed.insert(2, snapshot);
    let all: Vec<ShardLease> = [lease(0, 1), lease(1, 1), lease(2, 2), lease(3, 1)].to_vec();
    ha.show([view(&all, &[], &[])]);
    let seen = ha.tick();
    assert_eq!(seen[..2], ["lease", "load 2"]);
    // Loaded, then one more failure each.
    assert_eq!(
        ha.counted(&games[2]),
        1,
        "not the local 2, which the snapshot lacks"
    );
    assert_eq!(
        ha.counted(&other),
        3,
        "theirs 2, not the local 1 (or 1 + 2)"
    );
}

#[test]
fn h6_a_suspended_shards_listed_games_are_not_pruned_as_unlisted() {
    let (mut ha, games) = holding_all(3);
    let others: Vec<ShardLease> = [0, 2, 3].map(|shard| lease(shard, 1)).to_vec();
    ha.show([view(&others, &[lease(1, 1)], &[])]);
    ha.games.retain(|id| id != &games[0]); // shard 0's game stopped
    ha.tick();
    assert_eq!(
        ha.counted(&games[0]),
        0,
        "R8: an active shard's game not listed"
    );
    assert_eq!(ha.counted(&games[1]), 1, "listed, though not probed: kept");
    ha.games.retain(|id| id != &games[1]);
    ha.tick();
    assert_eq!(ha.counted(&games[1]), 0, "R8: not running at all");
}

#[test]
fn h7_a_draining_shard_is_released_after_its_last_write_and_nothing_of_it_follows() {
    let (mut ha, games) = holding_all(3);
    let actives: Vec<ShardLease> = [0, 1, 3].map(|shard| lease(shard, 1)).to_vec();
    ha.show([view(&actives, &[], &[lease(2, 1)])]);
    ha.writes.insert(2, Persisted::Failed);
    let seen = ha.tick();
    assert!(
        !seen.iter().any(|a| a.starts_with("release")),
        "not before a write succeeded"
    );
    ha.writes.clear();
    let seen = ha.tick();
    let write = seen
        .iter()
        .position(|a| a == "write 0,1,2,3")
        .expect("its last write");
    let release = seen
        .iter()
        .position(|a| a == "release 2")
        .expect("released");
    assert!(write < release);
    assert_eq!(
        ha.committed[&2]
            .states
            .game(&games[2])
            .map(|g| g.consecutive_failures()),
        Some(1)
    );
    // The lease side forgot it: nothing of it again.
    ha.show([view(&actives, &[], &[])]);
    let seen = ha.tick();
    assert!(!touches(&seen, &games[2]));
    assert!(
        seen.iter()
            .all(|a| !a.starts_with("write") || !a.contains('2'))
    );
}

#[test]
fn h7_shutdown_releases_every_shard_after_the_last_write() {
    let (mut ha, _) = holding_all(3);
    ha.machine.handle_shutdown();
    let seen = ha.tick();
    assert_eq!(seen, ["release 0,1,2,3", "stop Shutdown"]);
}

/// One tick of a random script: per shard, how the lease side shows it at
/// the start and at the refresh, and how its load, writes and publishes go;
/// per game, whether its probe fails.
#[derive(Debug, Clone)]
struct Step {
    /// 0 absent, 1 active, 2 suspended, 3 draining; at the start.
    start: [u8; SHARDS as usize],
    /// Re-acquired (epoch + 1) before this tick.
    bump: [bool; SHARDS as usize],
    /// Demoted at the refresh: 0 no, 1 suspended, 2 lost.
    refresh: [u8; SHARDS as usize],
    writes: [u8; SHARDS as usize],
    publishes: [u8; SHARDS as usize],
    load_fails: [bool; SHARDS as usize],
    failing: [bool; 8],
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    let n = SHARDS as usize;
    let shards = |max: u8| proptest::collection::vec(0..max, n);
    (
        (
            shards(4),
            proptest::collection::vec(proptest::bool::weighted(0.15), n),
        ),
        (shards(3), shards(8), shards(8)),
        proptest::collection::vec(proptest::bool::weighted(0.2), n),
        proptest::collection::vec(any::<bool>(), 8),
    )
        .prop_map(
            |((start, bump), (refresh, writes, publishes), load_fails, failing)| Step {
                start: start.try_into().expect("n"),
                bump: bump.try_into().expect("n"),
                refresh: refresh.try_into().expect("n"),
                writes: writes.try_into().expect("n"),
                publishes: publishes.try_into().expect("n"),
                load_fails: load_fails.try_into().expect("n"),
                failing: failing.try_into().expect("8"),
            },
        )
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

    /// H1–H7 under any sequence of views and answers: the harness asserts
    /// at every action that nothing is probed, written or published for a
    /// shard it may not act on, nothing is published before a write holding
    /// it, and nothing of a fenced or released lease follows; at the end,
    /// every event the machine still holds is its shard's, held.
    #[test]
    fn h1_to_h7_hold_under_random_views_and_answers(
        threshold in 1u32..4,
        script in proptest::collection::vec(step(), 1..12),
        stop in proptest::bool::ANY,
    ) {
        let mut ha = Ha::new(threshold, LeaseView::default());
        ha.games = (0..SHARDS).flat_map(|shard| [game(shard, 0), game(shard, 1)]).collect();
        let mut epochs = [1u64; SHARDS as usize];
        for step in script {
            let mut start = LeaseView::default();
            let mut refresh = LeaseView::default();
            for shard in 0..SHARDS {
                let i = shard as usize;
                let mut l = lease(shard, epochs[i]);
                if step.bump[i] || ha.released.contains(&l) {
                    epochs[i] += 1;
                    l = lease(shard, epochs[i]);
                }
                let list = |view: &mut LeaseView, mode: u8| match mode {
                    1 => view.active.push(l),
                    2 => view.suspended.push(l),
                    3 => view.draining.push(l),
                    _ => {}
                };
                list(&mut start, step.start[i]);
                let later = match (step.start[i], step.refresh[i]) {
                    (0, _) | (_, 0) => step.start[i],
                    (_, 1) => 2,
                    _ => 0,
                };
                list(&mut refresh, later);
                // Out of 8: 5 written, 2 failed, 1 fenced; 6 accepted, 1 refused, 1 fenced.
                let write = match step.writes[i] {
                    0..5 => Persisted::Written,
                    5..7 => Persisted::Failed,
                    _ => Persisted::Fenced,
                };
                let publish = match step.publishes[i] {
                    0..6 => Published::Accepted,
                    6 => Published::Refused,
                    _ => Published::Fenced,
                };
                ha.writes.insert(shard, write);
                ha.publishes.insert(shard, publish);
                if step.load_fails[i] {
                    ha.load_fails.insert(shard);
                } else {
                    ha.load_fails.remove(&shard);
                }
            }
            ha.healthy = ha
                .games
                .iter()
                .zip(step.failing)
                .filter(|(_, failing)| !failing)
                .map(|(game, _)| game.clone())
                .collect();
            ha.show([start, refresh]);
            ha.tick();
            for out in ha.machine.pending() {
                proptest::prop_assert!(ha.machine.lease_of(&out.event.game_id).is_some());
            }
            for (game_id, _) in ha.machine.states().games() {
                proptest::prop_assert!(ha.machine.lease_of(game_id).is_some());
            }
        }
        if stop {
            ha.machine.handle_shutdown();
            let seen = ha.tick();
            proptest::prop_assert!(seen.last().is_some_and(|a| a == "stop Shutdown"));
            proptest::prop_assert!(ha.machine.states().is_empty(), "everything released");
        }
    }
}
