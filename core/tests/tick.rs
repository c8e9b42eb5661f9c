//! The tick machine's rules, action by action, with no I/O at all.

use std::time::Duration;

use healthprobe_core::tick::{
    Action, MachineConfig, Persisted, ProbeClass, Published, StopReason, TickMachine,
};
use healthprobe_core::{HealthStates, Input, Policy, ProbeResult, RuntimeRecord, Timestamp};

const INTERVAL: Duration = Duration::from_secs(5);

fn machine(durable: bool, journal: bool) -> TickMachine {
    let mut config = MachineConfig::new(INTERVAL);
    config.durable = durable;
    config.journal = journal;
    TickMachine::new(
        config,
        HealthStates::new(Policy::new(1, 1).expect("valid")),
        Vec::new(),
    )
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
        Action::List => "list".into(),
        Action::Probe(batch) => format!("probe {}", batch.len()),
        Action::Journal(Input::Prune { .. }) => "journal prune".into(),
        Action::Journal(Input::Outcome(outcome)) => format!("journal {}", outcome.game_id),
        Action::FlushJournal => "flush".into(),
        Action::Publish(event) => format!("publish {}", event.game_id),
        Action::SyncPublisher => "sync".into(),
        Action::Persist => "persist".into(),
        Action::Interrupt => "interrupt".into(),
        Action::TickDone(_) => "done".into(),
        Action::Wait { until } => format!("wait {}", until.as_secs()),
        Action::Stop(reason) => format!("stop {reason:?}"),
    }
}

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
            Action::FlushJournal => machine.handle_flushed(now, Ok(())),
            Action::Publish(_) => machine.handle_published(now, publish),
            Action::SyncPublisher => machine.handle_synced(now, Ok(())),
            Action::Persist => machine.handle_persisted(now, persisted),
            Action::Journal(_) | Action::Interrupt | Action::TickDone(_) => {}
            Action::Wait { .. } | Action::Stop(_) => break,
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
            "persist",
            "publish g1",
            "publish g2",
            "sync",
            "persist",
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
            Action::Persist => {
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
    let mut limited = machine(false, false);
    limited.set_tick_limit(Some(2));
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
