//! Delays and counts against cases computable by hand.

use std::time::Duration;

use healthprobe_core::Policy;
use healthprobe_simulate::{
    Outage, OutagePlan, PolicyReport, Quantiles, Report, Scenario, SimulateError, simulate,
};

const INTERVAL: Duration = Duration::from_secs(5);

fn policies(
    failures: std::ops::RangeInclusive<u32>,
    recoveries: std::ops::RangeInclusive<u32>,
) -> Vec<Policy> {
    failures
        .flat_map(|f| {
            recoveries
                .clone()
                .map(move |r| Policy::new(f, r).expect("thresholds >= 1"))
        })
        .collect()
}

/// A fleet with no flakes and the same fixed outages on every engine.
fn fixed(engines: u32, probes: u64, outages: Vec<Outage>) -> Scenario {
    Scenario {
        engines,
        probes,
        interval: INTERVAL,
        flake: 0.0,
        outages: OutagePlan::Fixed(outages),
        settle: Duration::ZERO,
        settle_flake: 0.0,
        seed: 7,
    }
}

/// An outage from probe `start` (in intervals, may be fractional) lasting `length` intervals.
fn outage(start: f64, length: f64) -> Outage {
    Outage {
        start: INTERVAL.mul_f64(start),
        length: INTERVAL.mul_f64(length),
    }
}

fn run(scenario: &Scenario, policies: &[Policy]) -> Report {
    simulate(scenario, policies, 1).expect("valid scenario")
}

/// Every sample of a delay is `probes` probes and `seconds` seconds.
fn assert_delay(
    name: &str,
    what: &str,
    samples: u64,
    stats: &healthprobe_simulate::DelayStats,
    probes: u64,
    seconds: f64,
) {
    assert_eq!(stats.samples, samples, "{name}: {what} samples");
    assert_eq!(
        stats.probes,
        Some(Quantiles {
            p50: probes,
            p95: probes,
            max: probes
        }),
        "{name}: {what} in probes"
    );
    let s = stats.seconds.expect("samples exist");
    for got in [s.p50, s.p95, s.max] {
        assert!(
            (got - seconds).abs() < 1e-9,
            "{name}: {what} {got} s, expected {seconds} s"
        );
    }
}

fn by_name<'a>(report: &'a Report, name: &str) -> &'a PolicyReport {
    report
        .policies
        .iter()
        .find(|p| p.policy == name)
        .unwrap_or_else(|| panic!("no policy {name}"))
}

#[test]
fn clean_outage_on_a_probe_detected_after_failures_threshold_probes() {
    // Probes 100..=109 fail, nothing else does.
    let engines = 3;
    let report = run(
        &fixed(engines, 400, vec![outage(100.0, 10.0)]),
        &policies(1..=6, 1..=3),
    );
    assert_eq!(report.outages.total, 3);
    assert_eq!(report.outages.unseen, 0);
    for p in &report.policies {
        let (f, r) = (p.failures_threshold, p.recovery_threshold);
        // The outage starts exactly at probe 100, so probe F-1 after it publishes.
        assert_delay(
            &p.policy,
            "detection",
            3,
            &p.detection,
            f.into(),
            f64::from(f - 1) * 5.0,
        );
        assert_delay(
            &p.policy,
            "recovery",
            3,
            &p.recovery,
            r.into(),
            f64::from(r - 1) * 5.0,
        );
        assert_eq!(p.missed_outages, 0, "{}", p.policy);
        assert_eq!(p.false_alarms, 0, "{}", p.policy);
        assert_eq!(p.events, 2 * u64::from(engines), "{}", p.policy);
    }
}

#[test]
fn outage_starting_between_probes_counts_seconds_from_its_start() {
    // [502.5 s, 552.5 s): probes 101..=110 fail (505 s .. 550 s).
    let report = run(
        &fixed(2, 400, vec![outage(100.5, 10.0)]),
        &policies(1..=4, 1..=2),
    );
    for p in &report.policies {
        let (f, r) = (p.failures_threshold, p.recovery_threshold);
        assert_delay(
            &p.policy,
            "detection",
            2,
            &p.detection,
            f.into(),
            (f64::from(f) - 0.5) * 5.0,
        );
        assert_delay(
            &p.policy,
            "recovery",
            2,
            &p.recovery,
            r.into(),
            (f64::from(r) - 0.5) * 5.0,
        );
    }
}

#[test]
fn outage_shorter_than_the_threshold_is_missed() {
    // Probes 100..=102 fail: seen by f1..f3, missed by f4 and above.
    let report = run(
        &fixed(4, 300, vec![outage(100.0, 3.0)]),
        &policies(1..=5, 1..=1),
    );
    for p in &report.policies {
        let seen = p.failures_threshold <= 3;
        assert_eq!(p.missed_outages, if seen { 0 } else { 4 }, "{}", p.policy);
        assert_eq!(
            p.detection.samples,
            if seen { 4 } else { 0 },
            "{}",
            p.policy
        );
        assert_eq!(p.false_alarms, 0, "{}", p.policy);
        assert_eq!(p.events, if seen { 8 } else { 0 }, "{}", p.policy);
    }
    let f5 = by_name(&report, "f5/r1");
    assert_eq!(f5.detection.probes, None);
    assert_eq!(f5.detection.seconds, None);
}

#[test]
fn outage_between_two_probes_is_seen_by_none() {
    // [502 s, 504 s) holds no probe (500 s and 505 s are outside).
    let report = run(
        &fixed(2, 300, vec![outage(100.4, 0.4)]),
        &policies(1..=2, 1..=1),
    );
    assert_eq!(report.outages.total, 2);
    assert_eq!(report.outages.unseen, 2);
    for p in &report.policies {
        assert_eq!(p.missed_outages, 2, "{}", p.policy);
        assert_eq!(p.events, 0, "{}", p.policy);
    }
}

#[test]
fn failures_while_settling_complete_a_late_detection_not_a_false_alarm() {
    // Probes 100, 101 are in the outage; 102, 103 settle and always fail.
    let mut scenario = fixed(1, 300, vec![outage(100.0, 2.0)]);
    scenario.settle = INTERVAL * 2;
    scenario.settle_flake = 1.0;
    let report = run(&scenario, &policies(1..=5, 1..=1));
    for f in 1..=4u32 {
        let p = by_name(&report, &format!("f{f}/r1"));
        assert_eq!(p.false_alarms, 0, "{}", p.policy);
        assert_eq!(p.missed_outages, 0, "{}", p.policy);
        assert_delay(
            &p.policy,
            "detection",
            1,
            &p.detection,
            f.into(),
            f64::from(f - 1) * 5.0,
        );
        // Recovered at probe 104, the first good one: 3 probes after the end (102).
        assert_delay(&p.policy, "recovery", 1, &p.recovery, 3, 10.0);
    }
    let f5 = by_name(&report, "f5/r1");
    assert_eq!((f5.missed_outages, f5.false_alarms, f5.events), (1, 0, 0));
}

#[test]
fn outage_beginning_while_failed_is_detected_without_a_delay_sample() {
    // Two outages with one good probe between them: 100..=109, 111..=120.
    let scenario = fixed(1, 300, vec![outage(100.0, 10.0), outage(111.0, 10.0)]);
    let report = run(&scenario, &policies(1..=1, 1..=2));
    // r1 recovers on the good probe 110, so the second outage is detected afresh.
    let r1 = by_name(&report, "f1/r1");
    assert_delay("f1/r1", "detection", 2, &r1.detection, 1, 0.0);
    assert_delay("f1/r1", "recovery", 2, &r1.recovery, 1, 0.0);
    assert_eq!((r1.detected_already_failed, r1.events), (0, 4));
    // r2 needs two good probes: still failed when the second outage begins.
    let r2 = by_name(&report, "f1/r2");
    assert_delay("f1/r2", "detection", 1, &r2.detection, 1, 0.0);
    assert_delay("f1/r2", "recovery", 1, &r2.recovery, 2, 5.0);
    assert_eq!((r2.detected_already_failed, r2.missed_outages), (1, 0));
    assert_eq!((r2.false_alarms, r2.events), (0, 2));
}

/// Flakes only (no outage), recovery threshold 1: a `probe_failed` fires once
/// per run of at least F consecutive failures. A run starts at a given probe
/// with probability (1 - P)·P^F (the probe before it is good, the F from it
/// fail), so over N engines × T probes the expected count is
/// N·T·(1 - P)·P^F, about N·T·P for F = 1 and N·T·P² for F = 2 when P is
/// small. Runs are rare and nearly independent, so the count is close to
/// Poisson: the seed-fixed result must lie within 4 standard deviations
/// (4·√expected; 1.3% for F = 1, 4.2% for F = 2, 13% for F = 3).
#[test]
fn flakes_give_false_alarms_at_the_rate_of_failure_runs() {
    let (engines, probes, p) = (20u32, 50_000u64, 0.1);
    let scenario = Scenario {
        engines,
        probes,
        interval: INTERVAL,
        flake: p,
        outages: OutagePlan::Random {
            per_engine_day: 0.0,
            mean_length: Duration::from_secs(120),
        },
        settle: Duration::from_secs(60),
        settle_flake: 0.5,
        seed: 11,
    };
    let report = run(&scenario, &policies(1..=3, 1..=1));
    let total = f64::from(engines) * probes as f64;
    for policy in &report.policies {
        let f = i32::try_from(policy.failures_threshold).expect("small");
        let expected = total * (1.0 - p) * p.powi(f);
        let got = policy.false_alarms as f64;
        let tolerance = 4.0 * expected.sqrt();
        assert!(
            (got - expected).abs() <= tolerance,
            "{}: {got} false alarms, expected {expected:.0} ± {tolerance:.0}",
            policy.policy
        );
        // Each alarm recovers (at most one still open per engine at the end).
        assert!(policy.events + u64::from(engines) >= 2 * policy.false_alarms);
        assert_eq!(policy.missed_outages, 0);
        assert_eq!(policy.detection.samples, 0);
    }
    // The rule of thumb for F = 1, engines × probes × P, is high by the factor
    // 1 / (1 - P) (11% here): a failure right after a failure raises no new alarm.
    let f1 = by_name(&report, "f1/r1").false_alarms as f64;
    assert!(
        (f1 / (total * p) - 1.0).abs() < 0.12,
        "f1/r1: {f1} vs {}",
        total * p
    );
}

#[test]
fn random_outages_are_all_judged() {
    // Each outage is either detected (with or without a delay sample) or missed.
    let scenario = Scenario {
        engines: 10,
        probes: 17_280,
        interval: INTERVAL,
        flake: 0.02,
        outages: OutagePlan::Random {
            per_engine_day: 5.0,
            mean_length: Duration::from_secs(60),
        },
        settle: Duration::from_secs(60),
        settle_flake: 0.3,
        seed: 3,
    };
    let report = run(&scenario, &policies(1..=4, 1..=3));
    assert!(report.outages.total > 20, "{:?}", report.outages);
    for p in &report.policies {
        assert_eq!(
            p.detection.samples + p.detected_already_failed + p.missed_outages,
            report.outages.total,
            "{}",
            p.policy
        );
        let max_probes = p.detection.probes.map(|q| q.max).unwrap_or(0);
        assert!(
            max_probes <= u64::from(p.failures_threshold),
            "{}",
            p.policy
        );
    }
}

#[test]
fn bad_scenarios_are_errors_not_panics() {
    let ok = fixed(1, 100, vec![]);
    let cases: Vec<(Scenario, Vec<Policy>, &str)> = vec![
        (
            Scenario {
                engines: 0,
                ..ok.clone()
            },
            policies(1..=1, 1..=1),
            "--engines",
        ),
        (
            Scenario {
                probes: 0,
                ..ok.clone()
            },
            policies(1..=1, 1..=1),
            "no probe",
        ),
        (
            Scenario {
                interval: Duration::ZERO,
                ..ok.clone()
            },
            policies(1..=1, 1..=1),
            "--interval",
        ),
        (
            Scenario {
                flake: 1.5,
                ..ok.clone()
            },
            policies(1..=1, 1..=1),
            "--flake",
        ),
        (
            Scenario {
                settle_flake: f64::NAN,
                ..ok.clone()
            },
            policies(1..=1, 1..=1),
            "--settle-flake",
        ),
        (
            Scenario {
                probes: u64::MAX,
                ..ok.clone()
            },
            policies(1..=1, 1..=1),
            "at most",
        ),
        (ok.clone(), vec![], "no policy"),
        (
            Scenario {
                outages: OutagePlan::Random {
                    per_engine_day: -1.0,
                    mean_length: INTERVAL,
                },
                ..ok.clone()
            },
            policies(1..=1, 1..=1),
            "--outage-rate",
        ),
        (
            Scenario {
                outages: OutagePlan::Random {
                    per_engine_day: 1.0,
                    mean_length: Duration::ZERO,
                },
                ..ok.clone()
            },
            policies(1..=1, 1..=1),
            "--outage-mean",
        ),
        (
            fixed(1, 100, vec![outage(95.0, 10.0)]),
            policies(1..=1, 1..=1),
            "inside the run",
        ),
        (
            fixed(1, 100, vec![outage(10.0, 10.0), outage(15.0, 1.0)]),
            policies(1..=1, 1..=1),
            "overlap",
        ),
    ];
    // Many threads for few engines, and engines near u32::MAX, are fine.
    let many = simulate(&ok, &policies(1..=1, 1..=1), usize::MAX).expect("threads clamp");
    assert_eq!(many.scenario.engines, 1);
    for (scenario, policies, needle) in cases {
        let error: SimulateError = simulate(&scenario, &policies, 1).expect_err(needle);
        assert!(
            error.to_string().contains(needle),
            "{error} should mention {needle}"
        );
    }
}
