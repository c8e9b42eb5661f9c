//! Deterministic simulation of the whole worker: the real driver
//! ([`Worker`]) and tick machine over a simulated world, with a virtual
//! clock, ports that fail on purpose, crashes at any port call, and
//! graceful shutdowns triggered from inside any port call.
//!
//! **The world moves on** (`simulation/scenario.rs`): each scenario, drawn
//! from a seed, scripts every engine over virtual time (healthy, a bad
//! status, refused, hanging for the whole probe timeout, flapping by hashed
//! time windows), the listings (games leave and come back, containers are
//! replaced, one game is listed twice with different container ids) and
//! the store's and broker's outages. Nothing is keyed by the worker's tick
//! count: a restart costs a delay drawn from the scenario, and the world
//! has moved on when the new process ticks.
//!
//! **The process starts as the CLI does**: one [`Worker::new`] over the
//! simulated ports, the tick machine's start-up performed through them —
//! the snapshot loaded (a read error or a crash refuses the start), the
//! journal measured and cut back or kept off, the snapshot written back
//! (a failed write refuses the start). Some scenarios change the
//! thresholds at a restart: the configured policy replaces the snapshot's.
//!
//! **The world keeps a log** (`simulation/world.rs`) of what it observed:
//! each listing, each probe started and folded, each publish call and its
//! fate, each sync, each snapshot committed, the journal's bytes, each
//! shutdown and crash, and per process life the deliveries its telemetry
//! counted.
//!
//! **A plain model computes the expectation** (`simulation/oracle.rs`) from
//! that log alone: the Go worker's hysteresis (`core/tests/support/go_model.rs`),
//! D3's first record, each engine's script at the instant its probe began,
//! folded over the lineage that survives (what the committed snapshots hold,
//! then the last life; without a state file, each life from nothing).
//!
//! Checked in every scenario:
//! - **delivery** (D4, D5): per game, the delivered stream with repeats
//!   removed equals the model's events, in order. A repeat is allowed only
//!   for an event whose delivery was in doubt (a publish that crashed or
//!   lost its reply, a failed sync, or a delivery not yet recorded by a
//!   snapshot when the process crashed), and never after a newer event of
//!   the game was acknowledged. Without a state file, a life that ended
//!   before delivering everything delivered a prefix of its events.
//!   Every publish, repeats included, carries the id the model gives the
//!   event (its streak's first failure, type, game). Nothing is published
//!   before a snapshot holding it (with its id) is written, nor while the
//!   last snapshot write has failed;
//! - **restarts** (D5): each restore holds the model's counters for the
//!   snapshot it restored, under the life's configured policy; after a
//!   graceful stop with the state saved, the next life restores exactly the
//!   state and pending events the last one stopped with; at a graceful
//!   stop, `undelivered` says the pending events are kept exactly when a
//!   state file's last write succeeded, lost otherwise;
//! - **ticks** (D3, R8, R9, R13): each tick probes every distinct listed
//!   game once, with its first record's container, and nothing unlisted; a
//!   tick cut short by a crash or a shutdown probes a subset; every probe
//!   started in a life that did not crash is folded; after a shutdown no
//!   probe starts and no new tick begins; a life's first tick starts at
//!   once, each next one an interval after the last one started, or at once
//!   after an overrun (no catch-up burst); the run stops only when asked or
//!   when its output is closed;
//! - **R10**: the simulated fan-out starts probes in the slots the worker
//!   gives it and the peak in flight never exceeds the scenario's cap;
//! - **R12**: per life, telemetry counted exactly the publish calls the
//!   world accepted, by event type;
//! - **D6**: the journal is the lineage's inputs without a hole: whole
//!   without a fault, a prefix after one (it stops, it never skips, across
//!   restarts too);
//! - at the end nothing is pending and the counters equal the model's.
//!
//! `HEALTHPROBE_SIM_SEED` (default 20261201) and `HEALTHPROBE_SIM_SCENARIOS`
//! (default 3,000) select the scenarios; a failure prints the seed, what
//! broke, the scenario, the last observations and the command that re-runs
//! it alone, which prints every observation.

#[allow(dead_code)] // Shared with the core's property tests and the fuzz targets, which use the rest.
#[path = "../../core/tests/support/go_model.rs"]
mod go_model;
#[path = "simulation/oracle.rs"]
mod oracle;
#[path = "simulation/scenario.rs"]
mod scenario;
#[path = "simulation/world.rs"]
mod world;

use std::io::{self, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};

use healthprobe_core::tick::{JournalAtStart, StopReason, Undelivered};
use healthprobe_core::{HealthEvent, HealthStates};
use healthprobe_shell::Shutdown;
use healthprobe_shell::config::WorkerConfig;
use healthprobe_shell::driver::worker::{Ports, Worker};

use oracle::Verdict;
use scenario::{INTERVAL, PROBE_TIMEOUT, Scenario};
use world::{
    End, PublishFate, Shared, SimClock, SimFanout, SimJournal, SimPublisher, SimState, SimStore,
    SimTelemetry, Stats, World,
};

const DEFAULT_SEED: u64 = 20_261_201;
const DEFAULT_SCENARIOS: u64 = 3_000;
/// A scenario whose process restarts more often than this never got through.
const MAX_LIVES: usize = 1_000;

/// What one scenario that passed did.
#[derive(Debug)]
struct Summary {
    stats: Stats,
    lives: usize,
    starts: Starts,
    verdict: Verdict,
}

/// What the tick machine's start-up did, counted over lives.
#[derive(Debug, Clone, Copy, Default)]
struct Starts {
    /// Lives with a journal that stayed off (D6: the snapshot holds folds it lacks).
    journal_kept_off: u64,
    /// Lives that cut the journal back to their snapshot's length (D6).
    journal_cut_back: u64,
    /// Lives whose configured policy replaced the snapshot's (D5).
    policy_replaced: u64,
}

impl Starts {
    fn add(&mut self, other: Self) {
        self.journal_kept_off += other.journal_kept_off;
        self.journal_cut_back += other.journal_cut_back;
        self.policy_replaced += other.policy_replaced;
    }
}

/// Run one scenario; `Err` says what broke, with the scenario and the last
/// observations before it (`whole_trace`: all of them).
fn run_scenario(seed: u64, whole_trace: bool) -> Result<Summary, String> {
    let scenario = Scenario::from_seed(seed);
    let shared = Shared::new(World::new(scenario.clone()));
    let result =
        catch_unwind(AssertUnwindSafe(|| simulate(&scenario, &shared))).unwrap_or_else(|panic| {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                .unwrap_or_default();
            Err(format!("panicked: {text}"))
        });
    result.map_err(|broken| {
        let world = shared.lock();
        let from = if whole_trace {
            0
        } else {
            world.log.len().saturating_sub(40)
        };
        let trace: Vec<String> = world.log[from..]
            .iter()
            .map(|entry| format!("  {entry}"))
            .collect();
        format!(
            "{broken}\n{}\nthe last observations:\n{}",
            scenario.summary(),
            trace.join("\n")
        )
    })
}

fn simulate(scenario: &Scenario, shared: &Shared) -> Result<Summary, String> {
    // What a graceful stop left with its state saved: the next restore must give it back.
    let mut stopped_with: Option<(HealthStates, Vec<HealthEvent>)> = None;
    let mut starts = Starts::default();
    for lives in 1..=MAX_LIVES {
        let shutdown = Shutdown::new();
        let policy = {
            let mut world = shared.lock();
            world.start_life(shutdown.clone());
            scenario.policy_at(world.mono)
        };
        let config = WorkerConfig {
            interval: INTERVAL,
            probe_timeout: PROBE_TIMEOUT,
            failures_threshold: policy.failures_threshold(),
            recovery_threshold: policy.recovery_threshold(),
            max_concurrency: scenario.max_concurrency,
            ..WorkerConfig::default()
        };
        let mut ports = Ports::new(
            SimStore(shared.clone()),
            SimPublisher(shared.clone()),
            SimTelemetry(shared.clone()),
            SimClock(shared.clone()),
        )
        .with_fanout(Box::new(SimFanout(shared.clone())));
        if scenario.journal {
            ports = ports.with_journal(SimJournal(shared.clone()));
        }
        if scenario.durable {
            ports = ports.with_state(SimState(shared.clone()));
        }
        let mut worker = match Worker::new(config, ports) {
            Ok(worker) => worker,
            Err(_) if scenario.durable => {
                // Died in it, its snapshot unreadable, or its first write
                // failed: the start is refused and the operator (or
                // systemd) starts it again.
                let mut world = shared.lock();
                let how = if world.alive() {
                    End::StartRefused
                } else {
                    End::Crashed
                };
                world.end_life(how);
                continue;
            }
            Err(err) => return Err(format!("the start was refused without a state file: {err}")),
        };
        if worker.states().policy() != policy {
            return Err(format!(
                "D5: the configured policy {policy:?} must replace the snapshot's, but the worker runs {:?}",
                worker.states().policy()
            ));
        }
        if scenario.durable {
            oracle::check_restored(&shared.lock(), worker.states())?;
            if let Some((mut states, pending)) = stopped_with.take() {
                // Under this life's policy (checked above); the counters carry over.
                states.set_policy(policy);
                if worker.states() != &states || worker.pending() != pending {
                    return Err(format!(
                        "D5: after a graceful stop with the state saved, the restart restored other state or pending events\n stopped with {states:?}, pending {pending:?}\n restored     {:?}, pending {:?}",
                        worker.states(),
                        worker.pending()
                    ));
                }
            }
        }
        if scenario.journal && !worker.machine().is_journaling() {
            starts.journal_kept_off += 1;
        }
        if let Some(restored) = worker.machine().restored() {
            starts.journal_cut_back +=
                u64::from(matches!(restored.journal, JournalAtStart::CutBack { .. }));
            starts.policy_replaced += u64::from(restored.replaced_policy.is_some());
        }
        let report = worker.run(&shutdown, |_| {
            shared.lock().tick_done();
        });
        let mut world = shared.lock();
        if !world.alive() {
            world.end_life(End::Crashed);
            continue;
        }
        let life = world.lives.len() - 1;
        let asked = world.lives[life].shutdown_entry.is_some();
        let closed = world
            .publishes
            .iter()
            .rev()
            .take_while(|call| call.life == life)
            .any(|call| call.fate == PublishFate::Closed);
        match report.stopped {
            Some(StopReason::Shutdown) if asked => {}
            Some(StopReason::OutputClosed) if closed => {}
            other => {
                return Err(format!(
                    "the run stopped ({other:?}) without a shutdown or a closed output"
                ));
            }
        }
        // The state file holds what the worker knows unless its last write failed.
        let saved = scenario.durable && !world.behind();
        let pending = worker.pending_len();
        let expected = match (pending, scenario.durable, saved) {
            (0, _, _) => Undelivered::Nothing,
            (_, false, _) => Undelivered::LostWithoutStateStore(pending),
            (_, true, false) => Undelivered::LostLastWriteFailed(pending),
            (_, true, true) => Undelivered::Kept(pending),
        };
        if worker.undelivered() != expected {
            return Err(format!(
                "D5: at exit the worker says its pending events are {:?}, but they are {expected:?} (the last snapshot write {})",
                worker.undelivered(),
                if world.behind() {
                    "failed"
                } else {
                    "succeeded"
                }
            ));
        }
        world.end_life(End::Stopped);
        if world.finished {
            if worker.pending_len() != 0 {
                return Err(format!(
                    "{} event(s) still pending after the drain: {:?}",
                    worker.pending_len(),
                    worker.pending()
                ));
            }
            let verdict = oracle::check(&world, worker.states())?;
            return Ok(Summary {
                stats: world.stats,
                lives,
                starts,
                verdict,
            });
        }
        stopped_with = saved.then(|| (worker.states().clone(), worker.pending()));
    }
    Err(format!(
        "the process restarted {MAX_LIVES} times without getting through"
    ))
}

/// Counts over all scenarios.
#[derive(Debug, Default)]
struct Totals {
    scenarios: u64,
    lives: u64,
    crashes: u64,
    shutdowns: u64,
    closed_outputs: u64,
    refused_starts: u64,
    faults: u64,
    journal_faults: u64,
    starts: Starts,
    probes: u64,
    batches: u64,
    capped_batches: u64,
    events: u64,
    lost_without_state: u64,
    held_by_failed_writes: u64,
    /// Per scenario with any: the seed and its repeats.
    repeats: Vec<(u64, Vec<String>)>,
}

impl Totals {
    fn add(&mut self, seed: u64, summary: Summary) {
        let Summary {
            stats,
            lives,
            starts,
            verdict,
        } = summary;
        self.scenarios += 1;
        self.lives += lives as u64;
        self.crashes += stats.crashes;
        self.shutdowns += stats.shutdowns;
        self.closed_outputs += stats.closed_outputs;
        self.refused_starts += stats.refused_starts;
        self.faults += stats.faults;
        self.journal_faults += stats.journal_faults;
        self.starts.add(starts);
        self.probes += stats.probes;
        self.batches += stats.batches;
        self.capped_batches += stats.capped_batches;
        self.events += verdict.events as u64;
        self.lost_without_state += verdict.lost_without_state as u64;
        self.held_by_failed_writes += stats.held_by_failed_writes;
        if !verdict.repeats.is_empty() {
            self.repeats.push((seed, verdict.repeats));
        }
    }

    fn merge(&mut self, other: Self) {
        self.scenarios += other.scenarios;
        self.lives += other.lives;
        self.crashes += other.crashes;
        self.shutdowns += other.shutdowns;
        self.closed_outputs += other.closed_outputs;
        self.refused_starts += other.refused_starts;
        self.faults += other.faults;
        self.journal_faults += other.journal_faults;
        self.starts.add(other.starts);
        self.probes += other.probes;
        self.batches += other.batches;
        self.capped_batches += other.capped_batches;
        self.events += other.events;
        self.lost_without_state += other.lost_without_state;
        self.held_by_failed_writes += other.held_by_failed_writes;
        self.repeats.extend(other.repeats);
    }
}

/// `total` counted over the scenarios of `by_seed`, and the first seeds with their counts.
fn by_seed(by_seed: &mut [(u64, Vec<String>)], detail: bool) -> String {
    by_seed.sort_by_key(|(seed, _)| *seed);
    let total: usize = by_seed.iter().map(|(_, items)| items.len()).sum();
    let seeds: Vec<String> = by_seed
        .iter()
        .take(if detail { usize::MAX } else { 8 })
        .map(|(seed, items)| {
            if detail {
                format!("seed {seed}: {}", items.join(", "))
            } else {
                format!("{seed} ×{}", items.len())
            }
        })
        .collect();
    format!(
        "{total} in {} scenario(s){}{}",
        by_seed.len(),
        if seeds.is_empty() { "" } else { ": " },
        seeds.join(if detail { "\n  " } else { ", " })
    )
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text}: expected a whole number")),
        Err(_) => default,
    }
}

#[test]
fn d3_d4_d5_d6_r8_to_r10_r12_r13_the_simulated_worker_keeps_the_rules_through_faults_crashes_and_restarts()
 {
    let base = env_u64("HEALTHPROBE_SIM_SEED", DEFAULT_SEED);
    let count = env_u64("HEALTHPROBE_SIM_SCENARIOS", DEFAULT_SCENARIOS);
    // Scenarios are independent: split them over the cores, report the
    // failure of the lowest seed (the same whatever the split).
    let threads = std::thread::available_parallelism().map_or(1, usize::from) as u64;
    let results: Vec<(Totals, Option<(u64, String)>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|part| {
                scope.spawn(move || {
                    let mut totals = Totals::default();
                    for index in (part..count).step_by(threads as usize) {
                        let seed = base.wrapping_add(index);
                        match run_scenario(seed, count == 1) {
                            Ok(summary) => totals.add(seed, summary),
                            Err(broken) => return (totals, Some((seed, broken))),
                        }
                    }
                    (totals, None)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a scenario thread"))
            .collect()
    });
    let mut totals = Totals::default();
    let mut failure: Option<(u64, String)> = None;
    for (part, failed) in results {
        totals.merge(part);
        if let Some((seed, broken)) = failed {
            if failure.as_ref().is_none_or(|(first, _)| seed < *first) {
                failure = Some((seed, broken));
            }
        }
    }
    if let Some((seed, broken)) = failure {
        panic!(
            "simulation scenario failed (seed {seed}): {broken}\nre-run it alone with: HEALTHPROBE_SIM_SEED={seed} HEALTHPROBE_SIM_SCENARIOS=1 cargo test -p healthprobe-tests --test simulation -- --nocapture"
        );
    }
    // Straight to stderr, past the test harness's capture: CI's log shows it.
    let detail = count == 1;
    let _ = writeln!(
        io::stderr(),
        "simulated {} scenarios (seeds {base}..{}): {} process lives, {} crashes, {} shutdowns, {} closed outputs, {} refused starts, {} faults, {} journal faults, {} lives with the journal kept off at start, {} journals cut back at start, {} lives whose configured policy replaced the snapshot's, {} probes in {} batches ({} at the cap), {} events, {} lost by lives without a state file, {} failed snapshot writes holding events back\nrepeats: {}",
        totals.scenarios,
        base.wrapping_add(count),
        totals.lives,
        totals.crashes,
        totals.shutdowns,
        totals.closed_outputs,
        totals.refused_starts,
        totals.faults,
        totals.journal_faults,
        totals.starts.journal_kept_off,
        totals.starts.journal_cut_back,
        totals.starts.policy_replaced,
        totals.probes,
        totals.batches,
        totals.capped_batches,
        totals.events,
        totals.lost_without_state,
        totals.held_by_failed_writes,
        by_seed(&mut totals.repeats, detail),
    );
    assert_eq!(totals.scenarios, count);
    if count >= 1_000 {
        // The scenarios must exercise what they claim to: about half what
        // the default seeds show, per thousand scenarios.
        let floor = |what: &str, got: u64, per_thousand: u64| {
            assert!(
                got * 1_000 >= count * per_thousand,
                "only {got} {what} in {count} scenarios (at least {per_thousand} per thousand expected)"
            );
        };
        floor("crashes", totals.crashes, 200);
        floor("graceful shutdowns", totals.shutdowns, 120);
        floor("journal faults", totals.journal_faults, 60);
        floor(
            "lives with the journal kept off",
            totals.starts.journal_kept_off,
            20,
        );
        floor("refused starts", totals.refused_starts, 450);
        floor(
            "journals cut back at start",
            totals.starts.journal_cut_back,
            15,
        );
        floor(
            "lives whose configured policy replaced the snapshot's",
            totals.starts.policy_replaced,
            30,
        );
        floor("batches at the cap", totals.capped_batches, 5_000);
        floor("events", totals.events, 4_000);
        floor(
            "repeats",
            totals.repeats.iter().map(|(_, r)| r.len() as u64).sum(),
            200,
        );
        floor(
            "failed snapshot writes holding events back",
            totals.held_by_failed_writes,
            20,
        );
    }
}
