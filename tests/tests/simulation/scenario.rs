//! A scenario drawn from a seed: what the world does over virtual time.
//!
//! Everything here is a pure function of the seed and the virtual time: an
//! engine's answer, a listing, a store or broker outage. Nothing depends on
//! the worker's tick count, so a worker that restarts finds the world where
//! it has moved on to, not where it left it.

use std::time::Duration;

use healthprobe_core::tick::ProbeClass;
use healthprobe_core::{Policy, ProbeResult, RuntimeRecord, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Time between tick starts.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// The whole-call bound of one probe; a hanging engine costs all of it.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The wall-clock second at virtual time zero.
const EPOCH_SECOND: i64 = 1_800_000_000;

/// The wall-clock instant at virtual time `at`.
pub fn wall(at: Duration) -> Timestamp {
    let second = EPOCH_SECOND + i64::try_from(at.as_secs()).expect("a short run");
    let nanos = i32::try_from(at.subsec_nanos()).expect("under a second");
    Timestamp::new(second, nanos).expect("a valid instant")
}

/// The id of game `game`.
pub fn game_id(game: usize) -> String {
    format!("g{game}")
}

/// The game index of a `gN` id, `None` for anything else.
pub fn game_index(game_id: &str) -> Option<usize> {
    game_id.strip_prefix('g')?.parse().ok()
}

/// What an engine does during one segment of its script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Healthy,
    /// Answers with this status (R1: anything but 200 fails).
    Status(u16),
    /// Refuses connections.
    Refused,
    /// Never answers: the probe costs the whole timeout.
    Hang,
    /// In each window of `window_ms`, fails (a bad status, a refusal or a
    /// hang, by the window's hash) with probability `percent`.
    Flapping {
        percent: u64,
        window_ms: u64,
    },
}

/// One game: its engine's script and its place in the listings.
#[derive(Debug, Clone)]
pub struct GameScript {
    /// `(from, mode)`, sorted by `from`; the first starts at zero, the last lasts forever.
    engine: Vec<(Duration, Mode)>,
    /// Intervals in which the game is not listed (it left, then came back).
    away: Vec<(Duration, Duration)>,
    /// The container id changes every `container_period` (a redeploy).
    container_period: Duration,
}

/// One engine's answer to a probe started at some instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub result: ProbeResult,
    pub class: ProbeClass,
    /// How long the probe takes (the whole timeout for a hang).
    pub latency: Duration,
}

/// A scenario drawn from a seed.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    pub policy: Policy,
    pub games: Vec<GameScript>,
    /// The game listed twice while listed, with a different container id in
    /// its second record (D3: the first record wins; which comes first changes over time).
    pub twin: Option<usize>,
    pub max_concurrency: usize,
    /// With a state file (D5).
    pub durable: bool,
    /// With a journal (D6).
    pub journal: bool,
    /// An operator changes the thresholds: lives that start at or after
    /// this instant are configured with this policy (D5: it replaces the
    /// snapshot's).
    pub reconfigured: Option<(Duration, Policy)>,
    /// Intervals in which the records store is down (R9).
    pub store_outages: Vec<(Duration, Duration)>,
    /// Intervals in which the broker refuses every event.
    pub broker_outages: Vec<(Duration, Duration)>,
    /// Intervals in which the state file's disk is full: every write fails.
    pub disk_full: Vec<(Duration, Duration)>,
    /// Per-mille chance of a fault at each call, by port.
    pub publish_fault: u32,
    pub sync_fault: u32,
    pub save_fault: u32,
    pub journal_fault: u32,
    /// Per-mille chance that a process life ends in a crash, and that it is
    /// shut down gracefully (each at a random port call).
    pub crash: u32,
    pub shutdown: u32,
    /// A restart takes up to this long (the world moves on meanwhile).
    pub max_restart_delay: Duration,
    /// Faults, crashes and shutdowns happen only before this instant; the
    /// run then drains (everything pending must go out).
    pub faults_end: Duration,
}

impl Scenario {
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let faults_end = Duration::from_secs(rng.random_range(20..=200));
        let horizon = faults_end + Duration::from_secs(60);
        let span = |rng: &mut ChaCha8Rng, before: Duration, longest: u64| {
            let from = Duration::from_millis(rng.random_range(0..before.as_millis() as u64));
            (
                from,
                from + Duration::from_millis(rng.random_range(1_000..=longest * 1_000)),
            )
        };
        let games = (0..rng.random_range(1..=8))
            .map(|_| {
                let mut engine = Vec::new();
                let mut from = Duration::ZERO;
                while from < horizon {
                    let mode = match rng.random_range(0..20) {
                        0..=7 => Mode::Healthy,
                        8..=10 => Mode::Status(if rng.random_bool(0.5) { 503 } else { 500 }),
                        11..=12 => Mode::Refused,
                        13..=14 => Mode::Hang,
                        _ => Mode::Flapping {
                            percent: rng.random_range(10..=90),
                            window_ms: rng.random_range(1_000..=20_000),
                        },
                    };
                    engine.push((from, mode));
                    from += Duration::from_millis(rng.random_range(3_000..=90_000));
                }
                let away = if rng.random_bool(0.4) {
                    (0..rng.random_range(1..=3))
                        .map(|_| span(&mut rng, horizon, 40))
                        .collect()
                } else {
                    Vec::new()
                };
                GameScript {
                    engine,
                    away,
                    container_period: Duration::from_secs(rng.random_range(15..=120)),
                }
            })
            .collect::<Vec<_>>();
        let twin =
            (games.len() >= 2 && rng.random_bool(0.7)).then(|| rng.random_range(0..games.len()));
        let durable = rng.random_bool(0.75);
        let journal = rng.random_bool(0.6);
        let outages = |rng: &mut ChaCha8Rng, longest: u64| -> Vec<(Duration, Duration)> {
            (0..rng.random_range(0..=2))
                .map(|_| span(rng, faults_end, longest))
                .collect()
        };
        let store_outages = outages(&mut rng, 30);
        let broker_outages = outages(&mut rng, 40);
        let disk_full = if durable && rng.random_bool(0.5) {
            outages(&mut rng, 60)
        } else {
            Vec::new()
        };
        let policy = |rng: &mut ChaCha8Rng| {
            Policy::new(rng.random_range(1..=4), rng.random_range(1..=3)).expect("valid")
        };
        let mut scenario = Self {
            seed,
            policy: policy(&mut rng),
            games,
            twin,
            max_concurrency: rng.random_range(1..=4),
            durable,
            journal,
            store_outages,
            broker_outages,
            disk_full,
            publish_fault: rng.random_range(0..250),
            sync_fault: rng.random_range(0..100),
            save_fault: rng.random_range(0..120),
            journal_fault: if rng.random_bool(0.3) {
                rng.random_range(5..=40)
            } else {
                0
            },
            crash: rng.random_range(0..800),
            shutdown: rng.random_range(0..500),
            max_restart_delay: Duration::from_secs([1, 10, 60][rng.random_range(0..3)]),
            faults_end,
            reconfigured: None,
        };
        if rng.random_bool(0.3) {
            let at = Duration::from_millis(rng.random_range(0..faults_end.as_millis() as u64));
            scenario.reconfigured = Some((at, policy(&mut rng)));
        }
        scenario
    }

    /// The policy a life that starts at `at` is configured with.
    pub fn policy_at(&self, at: Duration) -> Policy {
        match self.reconfigured {
            Some((from, policy)) if at >= from => policy,
            _ => self.policy,
        }
    }

    /// The running records at virtual time `at`.
    pub fn listing(&self, at: Duration) -> Vec<RuntimeRecord> {
        let mut records = Vec::new();
        for (game, script) in self.games.iter().enumerate() {
            if within(&script.away, at) {
                continue;
            }
            let deployment = at.as_millis() / script.container_period.as_millis();
            let record = |suffix: &str| {
                RuntimeRecord::running(
                    game_id(game),
                    format!("c{game}-{deployment}{suffix}"),
                    format!("sim://{}", game_id(game)),
                )
            };
            if self.twin == Some(game) {
                // The twin record comes first in some 10-second windows.
                if mix(&[self.seed, 1, at.as_secs() / 10]) % 2 == 0 {
                    records.insert(0, record("-twin"));
                    records.push(record(""));
                } else {
                    records.push(record(""));
                    records.push(record("-twin"));
                }
            } else {
                records.push(record(""));
            }
        }
        records
    }

    /// Whether the records store is down at `at` (outages are faults: they end with them).
    pub fn store_down(&self, at: Duration) -> bool {
        at < self.faults_end && within(&self.store_outages, at)
    }

    /// Whether the broker refuses everything at `at`.
    pub fn broker_down(&self, at: Duration) -> bool {
        at < self.faults_end && within(&self.broker_outages, at)
    }

    /// Whether the state file's disk is full at `at`.
    pub fn disk_full(&self, at: Duration) -> bool {
        at < self.faults_end && within(&self.disk_full, at)
    }

    /// What engine `game` answers to a probe started at `at`.
    pub fn answer(&self, game: usize, at: Duration) -> Answer {
        let script = &self.games[game].engine;
        let segment = script.partition_point(|(from, _)| *from <= at) - 1;
        let nanos = at.as_nanos() as u64;
        let latency =
            Duration::from_micros(1_000 + mix(&[self.seed, 2, game as u64, nanos]) % 49_000);
        let healthy = Answer {
            result: ProbeResult::Healthy,
            class: ProbeClass::Ok,
            latency,
        };
        let failing = |kind: u64, status: u16| match kind {
            0 => Answer {
                result: ProbeResult::Unhealthy {
                    status,
                    error: format!("unexpected status {status}"),
                },
                class: ProbeClass::BadStatus,
                latency,
            },
            1 => Answer {
                result: ProbeResult::Unhealthy {
                    status: 0,
                    error: "connection refused".into(),
                },
                class: ProbeClass::ConnectError,
                latency,
            },
            _ => Answer {
                result: ProbeResult::Unhealthy {
                    status: 0,
                    error: "timeout".into(),
                },
                class: ProbeClass::Timeout,
                latency: PROBE_TIMEOUT,
            },
        };
        match script[segment].1 {
            Mode::Healthy => healthy,
            Mode::Status(status) => failing(0, status),
            Mode::Refused => failing(1, 0),
            Mode::Hang => failing(2, 0),
            Mode::Flapping { percent, window_ms } => {
                let window = at.as_millis() as u64 / window_ms;
                let hash = mix(&[self.seed, 3, game as u64, window]);
                if hash % 100 < percent {
                    failing((hash >> 32) % 3, 503)
                } else {
                    healthy
                }
            }
        }
    }

    /// A short description for a failure report.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "seed {}: {} game(s), policy {}/{} (then {:?}), max_concurrency {}, state file {}, journal {}, twin {:?}, faults until {:?} (publish {}‰, sync {}‰, save {}‰, journal {}‰; per life: crash {}‰, shutdown {}‰; restarts up to {:?}), store down {:?}, broker down {:?}, disk full {:?}",
            self.seed,
            self.games.len(),
            self.policy.failures_threshold(),
            self.policy.recovery_threshold(),
            self.reconfigured,
            self.max_concurrency,
            self.durable,
            self.journal,
            self.twin.map(game_id),
            self.faults_end,
            self.publish_fault,
            self.sync_fault,
            self.save_fault,
            self.journal_fault,
            self.crash,
            self.shutdown,
            self.max_restart_delay,
            self.store_outages,
            self.broker_outages,
            self.disk_full,
        );
        for (game, script) in self.games.iter().enumerate() {
            text.push_str(&format!(
                "\n  {}: away {:?}, new container every {:?}, engine {:?}",
                game_id(game),
                script.away,
                script.container_period,
                script.engine
            ));
        }
        text
    }
}

fn within(spans: &[(Duration, Duration)], at: Duration) -> bool {
    spans
        .iter()
        .any(|(from, until)| (*from..*until).contains(&at))
}

/// A well-mixed hash of `words` (splitmix64 over each in turn).
fn mix(words: &[u64]) -> u64 {
    words.iter().fold(0x9e37_79b9_7f4a_7c15, |hash, &word| {
        let mut z = (hash ^ word).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}
