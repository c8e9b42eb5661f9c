//! A [`Worker`] on in-memory adapters and a manual clock, with handles to
//! every one of them, and the events tests expect from it.

use std::collections::HashMap;
use std::time::Duration;

use healthprobe_core::{
    EventDetails, HealthEvent, Input, Outgoing, Policy, ProbeOutcome, ProbeResult, Timestamp,
    replay,
};
use healthprobe_shell::adapters::{CountingTelemetry, ManualClock, MemoryPublisher, MemoryStore};
use healthprobe_shell::config::{Runtime, WorkerConfig};
use healthprobe_shell::driver::ports::RuntimeRecord;
use healthprobe_shell::driver::worker::{Ports, TickReport, Worker, probe_fanout};
use healthprobe_shell::probing::connections::{ConnectionPolicy, Connections};
use healthprobe_shell::tls::TlsClient;

use crate::{Behaviour, Fleet};

/// The instant a [`TestWorker`]'s clock starts at: `2026-11-28T05:00:00Z`.
pub const START: &str = "2026-11-28T05:00:00Z";

/// Settings for tests: interval 100 ms, probe timeout 500 ms, the given
/// thresholds, at most 16 probes in flight.
pub fn test_config(failures_threshold: u32, recovery_threshold: u32) -> WorkerConfig {
    WorkerConfig {
        interval: Duration::from_millis(100),
        probe_timeout: Duration::from_millis(500),
        failures_threshold,
        recovery_threshold,
        max_concurrency: 16,
        ..WorkerConfig::default()
    }
}

/// A worker whose store, publisher, telemetry and clock the test holds too.
///
/// The clock reads [`START`] and moves only in [`TestWorker::tick`]: by 5 s
/// after each tick, so tick `n` (from 0) stamps its events `START + 5n s`.
#[derive(Debug)]
pub struct TestWorker {
    /// The worker under test.
    pub worker: Worker,
    /// Its record store: `set` the records it lists, or make listings fail.
    pub store: MemoryStore,
    /// Its publisher: the events it delivered, or refuse some.
    pub publisher: MemoryPublisher,
    /// Its telemetry: delivered events by type.
    pub telemetry: CountingTelemetry,
    /// Its clock.
    pub clock: ManualClock,
}

impl TestWorker {
    /// A worker on threads with `config` over `records`. Panics if `config` is invalid.
    pub fn new(config: WorkerConfig, records: Vec<RuntimeRecord>) -> Self {
        Self::with_runtime(Runtime::Threads, config, records)
    }

    /// A worker fanning out on `runtime`, with `config` over `records`,
    /// its connections as by default (`run --connections auto`). Panics if
    /// `config` is invalid or the runtime cannot start.
    pub fn with_runtime(
        runtime: Runtime,
        config: WorkerConfig,
        records: Vec<RuntimeRecord>,
    ) -> Self {
        Self::with_connections(runtime, config, records, Connections::Auto)
    }

    /// [`TestWorker::with_runtime`] keeping connections between ticks as
    /// `connections` says (`run --connections`).
    pub fn with_connections(
        runtime: Runtime,
        config: WorkerConfig,
        records: Vec<RuntimeRecord>,
        connections: Connections,
    ) -> Self {
        Self::build(runtime, config, records, connections, |ports| ports)
    }

    /// [`TestWorker::with_runtime`] whose ports are completed by `ports`
    /// (a journal, a state store). Panics if the worker does not start.
    pub fn with_ports(
        runtime: Runtime,
        config: WorkerConfig,
        records: Vec<RuntimeRecord>,
        ports: impl FnOnce(Ports) -> Ports,
    ) -> Self {
        Self::build(runtime, config, records, Connections::Auto, ports)
    }

    fn build(
        runtime: Runtime,
        config: WorkerConfig,
        records: Vec<RuntimeRecord>,
        connections: Connections,
        ports: impl FnOnce(Ports) -> Ports,
    ) -> Self {
        let store = MemoryStore::with_records(records);
        let publisher = MemoryPublisher::new();
        let telemetry = CountingTelemetry::new();
        let clock = ManualClock::new(at(0));
        let policy = ConnectionPolicy::new(connections, config.interval, config.max_concurrency);
        let fanout = probe_fanout(runtime, &config, TlsClient::system(), policy)
            .expect("a valid test config");
        let given = Ports::new(
            store.clone(),
            publisher.clone(),
            telemetry.clone(),
            clock.clone(),
        )
        .with_fanout(fanout);
        let worker = Worker::new(config, ports(given)).expect("a valid test config");
        Self {
            worker,
            store,
            publisher,
            telemetry,
            clock,
        }
    }

    /// One tick; the events it delivered, sorted by game id (the order of
    /// different games within one tick depends on which engine answers first).
    pub fn tick(&mut self) -> (TickReport, Vec<HealthEvent>) {
        let report = self.worker.tick();
        self.clock.advance(Duration::from_secs(5));
        let mut events = self.publisher.take_events();
        events.sort_by(|a, b| a.game_id.cmp(&b.game_id));
        (report, events)
    }

    /// The consecutive-failure counter of `game_id`, `None` when it holds no state.
    pub fn failures(&self, game_id: &str) -> Option<u64> {
        self.worker
            .states()
            .game(game_id)
            .map(|game| game.consecutive_failures())
    }
}

/// [`START`] plus `seconds`.
pub fn at(seconds: u64) -> Timestamp {
    let start: Timestamp = START.parse().expect("START is RFC 3339");
    start
        .checked_add(Duration::from_secs(seconds))
        .expect("a test instant in range")
}

/// The `probe_failed` event a test expects.
pub fn probe_failed(
    game_id: &str,
    container_id: &str,
    occurred_at: Timestamp,
    consecutive_failures: u64,
    last_status: u16,
    last_error: &str,
) -> HealthEvent {
    HealthEvent {
        game_id: game_id.to_owned(),
        container_id: container_id.to_owned(),
        occurred_at,
        details: EventDetails::ProbeFailed {
            consecutive_failures,
            last_status,
            last_error: last_error.to_owned(),
        },
    }
}

/// `event` as a worker hands it to a publisher, with an id of its own: its
/// episode is its `occurred_at`, so distinct test events get distinct ids.
pub fn with_id(event: HealthEvent) -> Outgoing {
    Outgoing::new(event.occurred_at, event)
}

/// The `probe_recovered` event a test expects.
pub fn probe_recovered(
    game_id: &str,
    container_id: &str,
    occurred_at: Timestamp,
    prior_failure_count: u64,
) -> HealthEvent {
    HealthEvent {
        game_id: game_id.to_owned(),
        container_id: container_id.to_owned(),
        occurred_at,
        details: EventDetails::ProbeRecovered {
            prior_failure_count,
        },
    }
}

/// An engine answering `statuses` in order, the last one forever.
pub fn script(statuses: &[u16]) -> Behaviour {
    Behaviour::Script(statuses.iter().map(|&s| Behaviour::Status(s)).collect())
}

/// The events the core emits for [`Fleet`] engine `index` answering
/// `statuses`, one probe per tick over `ticks` ticks, tick `n` observed at
/// `at(5n)` as a [`TestWorker`] stamps it.
pub fn expected_events(
    index: usize,
    statuses: &[u16],
    ticks: usize,
    policy: Policy,
) -> Vec<HealthEvent> {
    let inputs = (0..ticks).map(|tick| {
        let status = *statuses.get(tick).or(statuses.last()).expect("a script");
        Input::Outcome(ProbeOutcome {
            game_id: Fleet::game_id(index),
            container_id: Fleet::container_id(index),
            observed_at: at(5 * tick as u64),
            result: if status == 200 {
                ProbeResult::Healthy
            } else {
                ProbeResult::Unhealthy {
                    status,
                    error: format!("unexpected status {status}"),
                }
            },
        })
    });
    replay(policy, inputs).1
}

/// Each game's events, in the order given.
pub fn by_game(events: &[HealthEvent]) -> HashMap<String, Vec<HealthEvent>> {
    let mut games: HashMap<String, Vec<HealthEvent>> = HashMap::new();
    for event in events {
        games
            .entry(event.game_id.clone())
            .or_default()
            .push(event.clone());
    }
    games
}
