//! The tick machine's rules, action by action, with no I/O at all.

use std::time::Duration;

use healthprobe_core::shard::Shard;
use healthprobe_core::tick::{
    Action, JournalAtStart, MachineConfig, Persisted, ProbeClass, Published, Snapshot, StopReason,
    TickMachine, Undelivered,
};
use healthprobe_core::{
    HealthStates, Input, Outgoing, Policy, ProbeOutcome, ProbeResult, RuntimeRecord, Timestamp,
};

const INTERVAL: Duration = Duration::from_secs(5);

fn config(durable: bool, journal: bool) -> MachineConfig {
    let mut config = MachineConfig::new(INTERVAL);
    config.durable = durable;
    config.journal = journal;
    config
}

fn policy(failures_threshold: u32) -> Policy {
    Policy::new(failures_threshold, 1).expect("valid")
}

/// A machine with failures threshold 1, started: with a state store, from
/// no snapshot and an empty journal, its first write succeeding.
fn machine(durable: bool, journal: bool) -> TickMachine {
    let mut machine = TickMachine::new(config(durable, journal), policy(1));
    if durable {
        let seen = start(&mut machine, Ok(None), 0, Persisted::Written);
        let expected: &[&str] = if journal {
            &["load", "flush", "persist journal 0"]
        } else {
            &["load", "persist"]
        };
        assert_eq!(seen, expected);
    }
    machine
}

/// Answer a machine's start-up actions: the snapshot `loaded`, a journal of
/// `journal_len` bytes (cut back as asked), the first write `persisted`;
/// the actions in order.
fn start(
    machine: &mut TickMachine,
    loaded: Result<Option<Snapshot>, ()>,
    journal_len: u64,
    persisted: Persisted,
) -> Vec<String> {
    let now = Duration::ZERO;
    let mut loaded = Some(loaded);
    let mut seen = Vec::new();
    while let Some(action) = machine.poll_action() {
        seen.push(name(&action));
        match action {
            Action::LoadState => {
                machine.handle_loaded(now, loaded.take().expect("loaded once"));
            }
            Action::FlushJournal => machine.handle_flushed(now, Ok(journal_len)),
            Action::TruncateJournal(_) => machine.handle_truncated(now, Ok(())),
            Action::Persist { .. } => machine.handle_persisted(now, persisted),
            Action::Stop(_) => {}
            other => panic!("at start: {other:?}"),
        }
    }
    seen
}

/// A snapshot of `g1` with one failure counted and its `probe_failed`
/// pending, under `policy`, recording `journal_len`.
fn snapshot(policy: Policy, journal_len: Option<u64>) -> Snapshot {
    let mut states = HealthStates::new(self::policy(1));
    let event = states.apply(
        ProbeOutcome {
            game_id: "g1".into(),
            container_id: "c-g1".into(),
            observed_at: Timestamp::from_second(1_700_000_000).expect("valid"),
            result: failure(),
        }
        .as_ref(),
    );
    states.set_policy(policy);
    Snapshot {
        states,
        pending: event.into_iter().collect(),
        journal_len,
    }
}

fn records(games: &[&str]) -> Vec<RuntimeRecord> {
    games
        .iter()
        .map(|game| RuntimeRecord::running(*game, format!("c-{game}"), "http://x/"))
        .collect()
}

fn failure() -> ProbeResult {
    ProbeResult::Unhealthy {
        status: 503,
        error: "unexpected status 503".into(),
    }
}

/// A short name for each action, to compare sequences.
fn name(action: &Action) -> String {
    match action {
        Action::LoadState => "load".into(),
        Action::TruncateJournal(len) => format!("truncate {len}"),
        Action::List => "list".into(),
        Action::Probe(batch) => format!("probe {}", batch.len()),
        Action::Journal(Input::Prune { .. }) => "journal prune".into(),
        Action::Journal(Input::Outcome(outcome)) => format!("journal {}", outcome.game_id),
        Action::FlushJournal => "flush".into(),
        Action::Publish(out) => format!("publish {}", out.event.game_id),
        Action::SyncPublisher => "sync".into(),
        Action::Persist { journal_len: None } => "persist".into(),
        Action::Persist {
            journal_len: Some(len),
        } => format!("persist journal {len}"),
        Action::Interrupt => "interrupt".into(),
        // HA mode (tested in ha_tick.rs), never yielded here.
        Action::Lease | Action::Load(_) | Action::Write(_) | Action::Release(_) => {
            format!("{action:?}")
        }
        Action::TickDone(_) => "done".into(),
        Action::Wait { until } => format!("wait {}", until.as_secs()),
        Action::Stop(reason) => format!("stop {reason:?}"),
    }
}

/// The journal's length after each flush of [`tick`].
const JOURNAL_AFTER_FLUSH: u64 = 1_000;

/// Drive one tick where every game fails and every port succeeds, except
/// as `publish` says; the actions in order.
fn tick(machine: &mut TickMachine, games: &[&str], publish: Published) -> Vec<String> {
    tick_with(machine, games, publish, Persisted::Written)
}

/// [`tick`], with every snapshot write answered by `persisted`.
fn tick_with(
    machine: &mut TickMachine,
    games: &[&str],
    publish: Published,
    persisted: Persisted,
) -> Vec<String> {
    let now = Duration::ZERO;
    let at = Timestamp::from_second(1_800_000_000).expect("valid");
    let mut seen = Vec::new();
    machine.start_tick(now);
    while let Some(action) = machine.poll_action() {
        seen.push(name(&action));
        match action {
            Action::List => machine.handle_listing(now, Ok(records(games))),
            Action::Probe(batch) => {
                for job in 0..batch.len() {
                    machine.handle_outcome(now, job, at, failure(), ProbeClass::BadStatus);
                    // What a driver does between outcomes.
                    while let Some(action) = machine.poll_action() {
                        seen.push(name(&action));
                        match action {
                            Action::Publish(_) => machine.handle_published(now, publish),
                            Action::Journal(_) | Action::Interrupt => {}
                            other => panic!("during probes: {other:?}"),
                        }
                    }
                }
                machine.handle_probes_done(now);
            }
            Action::FlushJournal => machine.handle_flushed(now, Ok(JOURNAL_AFTER_FLUSH)),
            Action::Publish(_) => machine.handle_published(now, publish),
            Action::SyncPublisher => machine.handle_synced(now, Ok(())),
            Action::Persist { .. } => machine.handle_persisted(now, persisted),
            Action::Journal(_) | Action::Interrupt | Action::TickDone(_) => {}
            Action::Wait { .. } | Action::Stop(_) => break,
            other @ (Action::LoadState
            | Action::TruncateJournal(_)
            | Action::Lease
            | Action::Load(_)
            | Action::Write(_)
            | Action::Release(_)) => {
                panic!("in a tick: {other:?}")
            }
        }
    }
    seen
}

#[test]
fn d6_without_a_state_store_each_event_goes_out_after_its_journal_line() {
    let mut machine = machine(false, true);
    let seen = tick(&mut machine, &["g1", "g2"], Published::Accepted);
    assert_eq!(
        seen,
        [
            "list",
            "journal prune",
            "probe 2",
            "journal g1",
            "publish g1",
            "journal g2",
            "publish g2",
            "flush",
            "sync",
            "done",
            "wait 5",
        ]
    );
}

#[test]
fn d5_with_a_state_store_nothing_is_published_before_the_tick_is_persisted() {
    let mut machine = machine(true, true);
    let seen = tick(&mut machine, &["g1", "g2"], Published::Accepted);
    assert_eq!(
        seen,
        [
            "list",
            "journal prune",
            "probe 2",
            "journal g1",
            "journal g2",
            "flush",
            "persist journal 1000",
            "publish g1",
            "publish g2",
            "sync",
            "persist journal 1000",
            "done",
            "wait 5",
        ]
    );
}

#[test]
fn d5_while_snapshot_writes_fail_nothing_is_published_and_each_tick_writes_again_first() {
    let mut machine = machine(true, false);
    let failing = Persisted::Failed;
    let seen = tick_with(&mut machine, &["g1", "g2"], Published::Accepted, failing);
    assert_eq!(seen, ["list", "probe 2", "persist", "done", "wait 5"]);
    assert_eq!(machine.pending_len(), 2, "both events wait");
    let seen = tick_with(&mut machine, &["g1", "g2"], Published::Accepted, failing);
    assert_eq!(
        seen,
        ["persist", "list", "probe 2", "persist", "done", "wait 5"],
        "the catch-up write fails too: still nothing published"
    );
    let seen = tick(&mut machine, &["g1", "g2"], Published::Accepted);
    assert_eq!(
        seen,
        [
            "persist",
            "publish g1",
            "publish g2",
            "sync",
            "persist",
            "list",
            "probe 2",
            "persist",
            "done",
            "wait 5",
        ],
        "a good write releases the events, oldest first"
    );
    assert_eq!(machine.pending_len(), 0);
}

#[test]
fn d4_a_refusal_ends_delivery_for_the_tick_and_the_next_tick_retries_first() {
    let mut machine = machine(true, false);
    let seen = tick(&mut machine, &["g1", "g2"], Published::Refused);
    assert_eq!(
        seen,
        ["list", "probe 2", "persist", "publish g1", "done", "wait 5"]
    );
    assert_eq!(machine.pending_len(), 2);
    // Next tick: the oldest pending first, before the listing.
    let seen = tick(&mut machine, &[], Published::Accepted);
    assert_eq!(
        seen,
        [
            "publish g1",
            "publish g2",
            "sync",
            "persist",
            "list",
            "persist",
            "done",
            "wait 5"
        ]
    );
    assert_eq!(machine.pending_len(), 0);
}

#[test]
fn d4_a_closed_output_interrupts_the_probes_and_stops_the_run_after_the_tick() {
    let mut machine = machine(false, false);
    let seen = tick(&mut machine, &["g1", "g2"], Published::Closed);
    assert_eq!(
        seen,
        [
            "list",
            "probe 2",
            "publish g1",
            "interrupt",
            "done",
            "stop OutputClosed"
        ]
    );
    assert_eq!(machine.run_report().stopped, Some(StopReason::OutputClosed));
    assert_eq!(machine.pending_len(), 2);
}

#[test]
fn d5_a_failed_sync_puts_the_events_back_in_front_to_be_published_again() {
    let mut machine = machine(true, false);
    let now = Duration::ZERO;
    let at = Timestamp::from_second(1_800_000_000).expect("valid");
    machine.start_tick(now);
    let mut published = Vec::new();
    while let Some(action) = machine.poll_action() {
        match action {
            Action::List => machine.handle_listing(now, Ok(records(&["g1"]))),
            Action::Probe(_) => {
                machine.handle_outcome(now, 0, at, failure(), ProbeClass::BadStatus);
                machine.handle_probes_done(now);
            }
            Action::Persist { .. } => {
                // The snapshot holds the event as pending until the sync succeeds.
                assert_eq!(machine.pending_len(), 1);
                machine.handle_persisted(now, Persisted::Written);
            }
            Action::Publish(event) => {
                published.push(event);
                machine.handle_published(now, Published::Accepted);
            }
            Action::SyncPublisher => machine.handle_synced(now, Err(())),
            Action::TickDone(report) => {
                assert_eq!((report.published, report.sync_failures), (0, 1));
                assert_eq!(report.pending, 1);
            }
            _ => break,
        }
    }
    assert_eq!(published.len(), 1);
    assert_eq!(machine.pending().next(), published.first());
}

#[test]
fn r9_a_listing_error_skips_the_tick_but_still_delivers_what_waits() {
    let mut machine = machine(false, false);
    tick(&mut machine, &["g1"], Published::Refused);
    let now = Duration::from_secs(5);
    machine.start_tick(now);
    assert_eq!(
        machine.poll_action().as_ref().map(name),
        Some("publish g1".into())
    );
    machine.handle_published(now, Published::Accepted);
    assert_eq!(machine.poll_action(), Some(Action::SyncPublisher));
    machine.handle_synced(now, Ok(()));
    assert_eq!(machine.poll_action(), Some(Action::List));
    machine.handle_listing(now, Err(()));
    match machine.poll_action() {
        Some(Action::TickDone(report)) => {
            assert!(report.skipped);
            assert_eq!((report.published, report.probes), (1, 0));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(machine.states().len(), 1, "state untouched");
}

#[test]
fn r13_shutdown_between_ticks_stops_at_once_and_a_tick_limit_stops_after_the_last() {
    let mut limited = {
        let mut config = config(false, false);
        config.tick_limit = Some(2);
        TickMachine::new(config, policy(1))
    };
    let first = tick(&mut limited, &[], Published::Accepted);
    assert_eq!(first.last().map(String::as_str), Some("wait 0"));
    let second = tick(&mut limited, &[], Published::Accepted);
    assert_eq!(second.last().map(String::as_str), Some("stop TickLimit"));

    let mut stopped = machine(false, false);
    tick(&mut stopped, &[], Published::Accepted);
    stopped.handle_shutdown();
    assert_eq!(
        stopped.poll_action(),
        Some(Action::Stop(StopReason::Shutdown))
    );
    stopped.start_tick(Duration::from_secs(5));
    assert_eq!(stopped.poll_action(), None, "no tick after the stop");
}

#[test]
fn d5_start_restores_the_snapshot_and_writes_it_back_before_the_first_tick() {
    let mut machine = TickMachine::new(config(true, false), policy(3));
    assert!(
        machine
            .poll_action()
            .is_some_and(|a| a == Action::LoadState)
    );
    machine.start_tick(Duration::ZERO);
    assert_eq!(machine.poll_action(), None, "no tick before the start-up");
    let restored = snapshot(policy(3), None);
    machine.handle_loaded(Duration::ZERO, Ok(Some(restored.clone())));
    assert_eq!(
        machine.poll_action(),
        Some(Action::Persist { journal_len: None }),
        "the restore writes the snapshot back at once"
    );
    assert_eq!(machine.states(), &restored.states);
    assert_eq!(
        machine.pending().cloned().collect::<Vec<_>>(),
        restored.pending
    );
    machine.handle_persisted(Duration::ZERO, Persisted::Unchanged);
    let info = machine.restored().expect("restored");
    assert_eq!(
        (info.existed, info.games, info.pending, info.replaced_policy),
        (true, 1, 1, None)
    );
    // The restored event goes out first, once a tick starts.
    let seen = tick(&mut machine, &["g1"], Published::Accepted);
    assert_eq!(seen[..3], ["publish g1", "sync", "persist"]);
}

#[test]
fn d5_the_configured_policy_replaces_the_snapshots() {
    let mut machine = TickMachine::new(config(true, false), policy(5));
    start(
        &mut machine,
        Ok(Some(snapshot(policy(3), None))),
        0,
        Persisted::Written,
    );
    assert_eq!(machine.states().policy(), policy(5));
    let info = machine.restored().expect("restored");
    assert_eq!(info.replaced_policy, Some(policy(3)));
    assert_eq!(
        machine
            .states()
            .game("g1")
            .map(|g| g.consecutive_failures()),
        Some(1),
        "the counters are the snapshot's"
    );

    let mut same = TickMachine::new(config(true, false), policy(3));
    start(
        &mut same,
        Ok(Some(snapshot(policy(3), None))),
        0,
        Persisted::Written,
    );
    assert_eq!(same.restored().expect("restored").replaced_policy, None);
}

#[test]
fn d5_a_fresh_start_without_a_snapshot_still_writes_one_first() {
    let mut machine = TickMachine::new(config(true, false), policy(1));
    let seen = start(&mut machine, Ok(None), 0, Persisted::Written);
    assert_eq!(seen, ["load", "persist"]);
    let info = machine.restored().expect("started");
    assert_eq!((info.existed, info.games, info.pending), (false, 0, 0));
    assert!(machine.states().is_empty());
}

#[test]
fn d5_a_snapshot_that_cannot_be_loaded_refuses_the_start() {
    let mut machine = TickMachine::new(config(true, true), policy(1));
    let seen = start(&mut machine, Err(()), 0, Persisted::Written);
    assert_eq!(
        seen,
        ["load", "stop StartRefused"],
        "nothing written, no journal touched"
    );
    assert_eq!(machine.run_report().stopped, Some(StopReason::StartRefused));
    machine.start_tick(Duration::ZERO);
    assert_eq!(machine.poll_action(), None, "no tick after a refused start");
}

#[test]
fn d5_a_failed_first_write_refuses_the_start() {
    let mut machine = TickMachine::new(config(true, false), policy(1));
    let seen = start(
        &mut machine,
        Ok(Some(snapshot(policy(1), None))),
        0,
        Persisted::Failed,
    );
    assert_eq!(seen, ["load", "persist", "stop StartRefused"]);
    machine.start_tick(Duration::ZERO);
    assert_eq!(machine.poll_action(), None, "no tick after a refused start");
}

#[test]
fn d6_a_restore_cuts_a_longer_journal_back_to_the_length_its_snapshot_recorded() {
    let mut machine = TickMachine::new(config(true, true), policy(1));
    let seen = start(
        &mut machine,
        Ok(Some(snapshot(policy(1), Some(100)))),
        150,
        Persisted::Written,
    );
    assert_eq!(
        seen,
        ["load", "flush", "truncate 100", "persist journal 100"],
        "cut back before the first write, which records the length cut back to"
    );
    assert_eq!(
        machine.restored().expect("restored").journal,
        JournalAtStart::CutBack { from: 150, to: 100 }
    );
    assert!(machine.is_journaling());
}

#[test]
fn d6_a_journal_that_cannot_be_cut_back_is_turned_off() {
    let mut machine = TickMachine::new(config(true, true), policy(1));
    let now = Duration::ZERO;
    assert_eq!(machine.poll_action(), Some(Action::LoadState));
    machine.handle_loaded(now, Ok(Some(snapshot(policy(1), Some(100)))));
    assert_eq!(machine.poll_action(), Some(Action::FlushJournal));
    machine.handle_flushed(now, Ok(150));
    assert_eq!(machine.poll_action(), Some(Action::TruncateJournal(100)));
    machine.handle_truncated(now, Err(()));
    assert_eq!(
        machine.poll_action(),
        Some(Action::Persist { journal_len: None }),
        "a journal that is off records no length"
    );
    machine.handle_persisted(now, Persisted::Written);
    assert!(!machine.is_journaling());
    assert_eq!(
        machine.restored().expect("restored").journal,
        JournalAtStart::Failed
    );
    let seen = tick(&mut machine, &["g2"], Published::Accepted);
    assert!(
        !seen
            .iter()
            .any(|a| a.starts_with("journal") || a == "flush"),
        "{seen:?}"
    );
}

#[test]
fn d6_a_journal_shorter_than_recorded_is_appended_to_as_it_is() {
    let mut machine = TickMachine::new(config(true, true), policy(1));
    let seen = start(
        &mut machine,
        Ok(Some(snapshot(policy(1), Some(100)))),
        40,
        Persisted::Written,
    );
    assert_eq!(seen, ["load", "flush", "persist journal 40"]);
    assert_eq!(
        machine.restored().expect("restored").journal,
        JournalAtStart::Shorter {
            found: 40,
            recorded: 100
        }
    );
    assert!(machine.is_journaling());
}

#[test]
fn d6_a_journal_that_stopped_stays_stopped_across_restarts() {
    // The snapshot recorded no journal length: taken after the journal had
    // stopped, or by a run without one. It holds folds the journal lacks.
    let mut machine = TickMachine::new(config(true, true), policy(1));
    let seen = start(
        &mut machine,
        Ok(Some(snapshot(policy(1), None))),
        10,
        Persisted::Written,
    );
    assert_eq!(seen, ["load", "flush", "persist"], "no length recorded");
    assert!(!machine.is_journaling(), "appending would leave a hole");
    assert_eq!(
        machine.restored().expect("restored").journal,
        JournalAtStart::KeptOff
    );
    let seen = tick(&mut machine, &["g1"], Published::Accepted);
    assert!(
        !seen
            .iter()
            .any(|a| a.starts_with("journal") || a == "flush"),
        "{seen:?}"
    );
    assert!(seen.iter().all(|a| a != "persist journal 1000"), "{seen:?}");

    // Moved aside: an empty journal starts afresh with this run.
    let mut fresh = TickMachine::new(config(true, true), policy(1));
    let seen = start(
        &mut fresh,
        Ok(Some(snapshot(policy(1), None))),
        0,
        Persisted::Written,
    );
    assert_eq!(seen, ["load", "flush", "persist journal 0"]);
    assert!(fresh.is_journaling());
    assert_eq!(
        fresh.restored().expect("restored").journal,
        JournalAtStart::Continued { len: 0 }
    );
}

#[test]
fn d6_without_a_snapshot_the_journal_goes_on_from_its_length() {
    let mut machine = TickMachine::new(config(true, true), policy(1));
    let seen = start(&mut machine, Ok(None), 42, Persisted::Written);
    assert_eq!(seen, ["load", "flush", "persist journal 42"]);
    assert!(machine.is_journaling());
}

#[test]
fn d6_a_journal_that_fails_at_start_is_off_and_recorded_as_none() {
    let mut machine = TickMachine::new(config(true, true), policy(1));
    let now = Duration::ZERO;
    assert_eq!(machine.poll_action(), Some(Action::LoadState));
    machine.handle_loaded(now, Ok(Some(snapshot(policy(1), Some(100)))));
    assert_eq!(machine.poll_action(), Some(Action::FlushJournal));
    machine.handle_flushed(now, Err(()));
    assert_eq!(
        machine.poll_action(),
        Some(Action::Persist { journal_len: None })
    );
    assert!(!machine.is_journaling());
}

#[test]
fn d6_each_snapshot_records_the_journal_length_at_its_last_flush_and_none_once_it_stopped() {
    let mut machine = machine(true, true);
    let seen = tick(&mut machine, &["g1"], Published::Accepted);
    assert!(
        seen.contains(&"persist journal 1000".to_owned()),
        "{seen:?}"
    );
    // A journal line that cannot be written stops the journal.
    let now = Duration::from_secs(5);
    machine.start_tick(now);
    assert_eq!(machine.poll_action(), Some(Action::List));
    machine.handle_listing(now, Ok(records(&["g1"])));
    assert!(matches!(machine.poll_action(), Some(Action::Journal(_))));
    machine.handle_journal_failed(now);
    assert!(!machine.is_journaling());
    assert!(matches!(machine.poll_action(), Some(Action::Probe(_))));
    machine.handle_probes_done(now);
    assert_eq!(
        machine.poll_action(),
        Some(Action::Persist { journal_len: None }),
        "no flush, and the snapshot records no length"
    );
}

#[test]
fn d5_undelivered_events_at_exit_are_kept_only_by_a_state_store_whose_last_write_succeeded() {
    let mut lost = machine(false, false);
    assert_eq!(lost.undelivered(), Undelivered::Nothing);
    tick(&mut lost, &["g1"], Published::Refused);
    assert_eq!(lost.undelivered(), Undelivered::LostWithoutStateStore(1));

    let mut durable = machine(true, false);
    tick(&mut durable, &["g1", "g2"], Published::Refused);
    assert_eq!(durable.undelivered(), Undelivered::Kept(2));
    tick_with(&mut durable, &["g3"], Published::Refused, Persisted::Failed);
    assert_eq!(
        durable.undelivered(),
        Undelivered::LostLastWriteFailed(3),
        "the state store holds an older snapshot"
    );
    tick(&mut durable, &["g3"], Published::Refused);
    assert_eq!(durable.undelivered(), Undelivered::Kept(3), "written again");
    tick(&mut durable, &["g3"], Published::Accepted);
    assert_eq!(durable.undelivered(), Undelivered::Nothing);
}

#[test]
fn shard_a_listing_is_cut_down_to_the_instances_games_before_the_prune_and_the_probes() {
    let games = ["g1", "g2", "game-0001", "game-0002"];
    let mut owned_by = Vec::new();
    for index in 0..2 {
        let mut config = config(false, true);
        config.shard = Shard::new(index, 2).expect("valid");
        let mut machine = TickMachine::new(config, policy(1));
        let now = Duration::ZERO;
        machine.start_tick(now);
        assert_eq!(machine.poll_action(), Some(Action::List));
        let mut listing = records(&games);
        listing.push(RuntimeRecord::running("g1", "c-again", "http://y/"));
        machine.handle_listing(now, Ok(listing));
        let Some(Action::Journal(Input::Prune { running })) = machine.poll_action() else {
            panic!("the prune is journaled first");
        };
        let Some(Action::Probe(batch)) = machine.poll_action() else {
            panic!("then the probes");
        };
        let probed: Vec<&str> = batch.jobs().iter().map(|r| r.game_id.as_str()).collect();
        let expected: Vec<&str> = games
            .iter()
            .copied()
            .filter(|game| config.shard.owns(game))
            .collect();
        assert_eq!(probed, expected, "shard {index}/2");
        assert!(running.iter().all(|game| config.shard.owns(game)));
        assert_eq!(
            running.len(),
            expected.len() + usize::from(expected.contains(&"g1")),
            "every record of an owned game stays, duplicates included"
        );
        owned_by.extend(probed.into_iter().map(str::to_owned));
    }
    owned_by.sort_unstable();
    let mut all: Vec<String> = games.iter().map(|g| (*g).to_owned()).collect();
    all.sort_unstable();
    assert_eq!(owned_by, all, "the two shards probe every game once");
}

#[test]
fn d5_a_restored_pending_event_keeps_its_place_ahead_of_new_ones_and_its_id() {
    let mut machine = TickMachine::new(config(true, false), policy(1));
    let restored = snapshot(policy(1), None);
    start(
        &mut machine,
        Ok(Some(restored.clone())),
        0,
        Persisted::Written,
    );
    let mut published: Vec<Outgoing> = Vec::new();
    let now = Duration::ZERO;
    let at = Timestamp::from_second(1_800_000_000).expect("valid");
    machine.start_tick(now);
    while let Some(action) = machine.poll_action() {
        match action {
            Action::Publish(event) => {
                let refuse = published.is_empty();
                published.push(event);
                let answer = if refuse {
                    Published::Refused
                } else {
                    Published::Accepted
                };
                machine.handle_published(now, answer);
            }
            Action::List => machine.handle_listing(now, Ok(records(&["g2"]))),
            Action::Probe(_) => {
                machine.handle_outcome(now, 0, at, failure(), ProbeClass::BadStatus);
                machine.handle_probes_done(now);
            }
            Action::SyncPublisher => machine.handle_synced(now, Ok(())),
            Action::Persist { .. } => machine.handle_persisted(now, Persisted::Written),
            Action::TickDone(_) => {}
            _ => break,
        }
    }
    assert_eq!(published.len(), 1, "refused, so nothing else this tick");
    let pending: Vec<&str> = machine.pending().map(|e| e.id.as_str()).collect();
    assert_eq!(
        pending,
        [
            "1700000000000000000:probe_failed:g1",
            "1800000000000000000:probe_failed:g2"
        ]
    );
    assert_eq!(published, restored.pending, "sent again with its id");
}

#[test]
fn d6_a_journal_line_that_fails_voids_the_flush_queued_behind_it() {
    // An empty listing: the prune's line and the flush are yielded together.
    let mut machine = machine(true, true);
    let now = Duration::ZERO;
    machine.start_tick(now);
    assert_eq!(machine.poll_action(), Some(Action::List));
    machine.handle_listing(now, Ok(Vec::new()));
    assert!(matches!(machine.poll_action(), Some(Action::Journal(_))));
    machine.handle_journal_failed(now);
    assert_eq!(
        machine.poll_action(),
        Some(Action::Persist { journal_len: None }),
        "no flush of a journal that stopped"
    );
    machine.handle_persisted(now, Persisted::Written);
    assert!(matches!(machine.poll_action(), Some(Action::TickDone(r)) if r.journal_stopped));
}
