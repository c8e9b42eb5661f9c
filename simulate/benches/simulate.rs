//! Outcomes simulated per second.
//!
//! - `fleet/18_policies`: the whole simulator on one thread (generate each
//!   engine's probes once, fold them through 18 policies, tally the events);
//!   throughput counts outcomes folded (probes × policies).
//! - `fleet/1_policy`: the same fleet under one policy; throughput counts
//!   probes, so generation is a larger share.
//! - `apply/borrowed_ids`: the core's `HealthStates::apply` alone over a
//!   1%-flaky stream of one game (ids borrowed, copied only into an event).
//!
//! Run: `cargo bench -p healthprobe-simulate --bench simulate`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use healthprobe_core::{HealthStates, OutcomeRef, Policy, ProbeResult, Timestamp};
use healthprobe_simulate::{OutagePlan, Scenario, simulate};

fn scenario() -> Scenario {
    Scenario {
        engines: 20,
        probes: 17_280, // one day at 5 s
        interval: Duration::from_secs(5),
        flake: 0.01,
        outages: OutagePlan::Random {
            per_engine_day: 1.0,
            mean_length: Duration::from_secs(120),
        },
        settle: Duration::from_secs(60),
        settle_flake: 0.2,
        seed: 1,
    }
}

fn policies(failures: u32, recoveries: u32) -> Vec<Policy> {
    (1..=failures)
        .flat_map(|f| (1..=recoveries).filter_map(move |r| Policy::new(f, r).ok()))
        .collect()
}

fn fleet(c: &mut Criterion) {
    let scenario = scenario();
    let probes = u64::from(scenario.engines) * scenario.probes;
    let mut group = c.benchmark_group("fleet");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for (name, policies) in [
        ("18_policies", policies(6, 3)),
        ("1_policy", vec![Policy::default()]),
    ] {
        group.throughput(Throughput::Elements(probes * policies.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| simulate(black_box(&scenario), &policies, 1).map(|r| r.policies.len()));
        });
    }
    group.finish();
}

/// A 1%-flaky stream: every hundredth probe fails.
fn stream(len: u64) -> Vec<bool> {
    (0..len).map(|i| i % 100 == 99).collect()
}

fn apply(c: &mut Criterion) {
    let results = stream(100_000);
    let mut group = c.benchmark_group("apply");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(results.len() as u64));
    let failure = ProbeResult::Unhealthy {
        status: 503,
        error: String::new(),
    };
    group.bench_function("borrowed_ids", |b| {
        let mut state = HealthStates::new(Policy::default());
        b.iter(|| {
            let mut events = 0u32;
            for (i, &failed) in results.iter().enumerate() {
                let outcome = OutcomeRef {
                    game_id: "game-000042",
                    container_id: "container-7f3a9c",
                    observed_at: Timestamp::from_second(i as i64).unwrap_or(Timestamp::UNIX_EPOCH),
                    result: if failed {
                        &failure
                    } else {
                        &ProbeResult::Healthy
                    },
                };
                events += u32::from(state.apply(black_box(outcome)).is_some());
            }
            events
        });
    });
    group.finish();
}

criterion_group!(benches, fleet, apply);
criterion_main!(benches);
