//! The pure core, reported per outcome (per tracked game for prune):
//!
//! - `core/step_healthy`, `core/step_mixed`: `step` over 1,000 games, one
//!   iteration = one period of 10 rounds (10,000 outcomes);
//! - `core/apply_healthy`, `core/apply_mixed`: the same workloads through
//!   `HealthStates::apply`, the in-place fold on a borrowed outcome, which
//!   copies ids only into an emitted event (the caller keeps and frees its
//!   outcomes, as the tick machine does with its records);
//! - `core/drop_outcomes_healthy`, `core/drop_outcomes_mixed`: freeing the
//!   same outcomes without the core, the floor under any `step` that takes
//!   owned outcomes (`step` minus this is the core's own share);
//! - `core/prune_100k`: `prune` of 100,000 tracked games to the 50,000 running.
//!
//! Outcomes are built by the `setup` of `iter_batched`, outside the timed
//! region; the timed region is the core consuming them: hashing and looking up
//! the game, updating its counters, building any event and its `Vec`, and
//! freeing what the outcome and the event owned (a caller that hands `step` an
//! owned outcome pays for that too). The step benches start from a warm state
//! (two whole periods folded) and carry it from one iteration to the next, so
//! every iteration is one more period of the same steady workload.
//!
//! `HEALTHPROBE_BENCH_TIME=cpu` measures CPU time instead of wall time (group
//! `core-cpu`), for a machine shared with other work; see `benches/README.md`.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::Measurement;
use criterion::{BatchSize, Criterion, SamplingMode, Throughput};
use healthprobe_benches::cpu_time::{BenchTime, CpuTime};
use healthprobe_benches::{PERIOD_ROUNDS, PruneWorkload, Workload};
use healthprobe_core::{ProbeOutcome, prune, step};

/// Periods folded before measuring, so the map has its steady capacity.
const WARM_PERIODS: u64 = 2;

fn step_benches<M: Measurement>(c: &mut Criterion<M>, time: BenchTime) {
    let mut group = c.benchmark_group(time.group("core"));
    group.sample_size(50);
    for (kind, workload) in [
        ("healthy", Workload::step_healthy()),
        ("mixed", Workload::step_mixed()),
    ] {
        group.throughput(Throughput::Elements(workload.outcomes_per_period()));

        let mut state = Some(workload.warm_state(WARM_PERIODS));
        let mut next_period = WARM_PERIODS;
        group.bench_function(format!("step_{kind}"), |b| {
            b.iter_batched(
                || {
                    // Untimed: the next period's outcomes, in order.
                    let first = next_period * PERIOD_ROUNDS;
                    next_period += 1;
                    workload.outcomes(first..first + PERIOD_ROUNDS)
                },
                |mut outcomes: Vec<ProbeOutcome>| {
                    let mut current = state
                        .take()
                        .expect("the state is put back after each period");
                    let mut events = 0;
                    for outcome in outcomes.drain(..) {
                        let (next, emitted) = step(current, outcome);
                        current = next;
                        events += emitted.len();
                    }
                    state = Some(current);
                    // The emptied vector is freed outside the timed region.
                    (outcomes, events)
                },
                BatchSize::LargeInput,
            );
        });

        // The in-place fold (`HealthStates::apply`), as a worker or a
        // simulator that keeps its ids calls it: the same transitions, with
        // the outcomes left to the caller (freed outside the timed region).
        let mut borrowed = workload.warm_state(WARM_PERIODS);
        let mut next_borrowed_period = WARM_PERIODS;
        group.bench_function(format!("apply_{kind}"), |b| {
            b.iter_batched(
                || {
                    let first = next_borrowed_period * PERIOD_ROUNDS;
                    next_borrowed_period += 1;
                    workload.outcomes(first..first + PERIOD_ROUNDS)
                },
                |outcomes: Vec<ProbeOutcome>| {
                    let mut events = 0;
                    for outcome in &outcomes {
                        events += usize::from(borrowed.apply(outcome.as_ref()).is_some());
                    }
                    (outcomes, events)
                },
                BatchSize::LargeInput,
            );
        });

        group.bench_function(format!("drop_outcomes_{kind}"), |b| {
            b.iter_batched(
                || workload.outcomes(0..PERIOD_ROUNDS),
                |mut outcomes: Vec<ProbeOutcome>| {
                    let mut bytes = 0;
                    for outcome in outcomes.drain(..) {
                        bytes += black_box(outcome).game_id.len();
                    }
                    (outcomes, bytes)
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

/// One iteration prunes a fresh copy of the 100,000-game state to the 50,000
/// running games; the copy is made, and the result dropped, outside the timing.
fn prune_bench<M: Measurement>(c: &mut Criterion<M>, time: BenchTime) {
    let workload = PruneWorkload::prune_100k();
    let mut group = c.benchmark_group(time.group("core"));
    group.sample_size(20);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(workload.state().len() as u64));
    group.bench_function("prune_100k", |b| {
        b.iter_batched(
            || workload.state().clone(),
            |state| prune(state, workload.running().iter().map(String::as_str)),
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn main() {
    let time = BenchTime::from_env();
    match time {
        BenchTime::Wall => run(Criterion::default(), time),
        BenchTime::Cpu => run(Criterion::default().with_measurement(CpuTime), time),
    }
}

fn run<M: Measurement + 'static>(criterion: Criterion<M>, time: BenchTime) {
    let mut criterion = criterion
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    step_benches(&mut criterion, time);
    prune_bench(&mut criterion, time);
    criterion.final_summary();
}
