//! Synthetic fleets: what each engine's probes see, and the fold of those
//! outcomes through the core for every policy.

use std::time::Duration;

use healthprobe_core::{EventDetails, HealthStates, OutcomeRef, Policy, ProbeResult, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::SimulateError;
use crate::report::Report;
use crate::tally::{EngineTracker, PolicyTally};

/// Nanoseconds in a day of virtual time.
pub(crate) const DAY_NS: u64 = 86_400 * 1_000_000_000;

/// The longest run, in days: the virtual clock counts nanoseconds in a `u64`
/// and must stay inside what a [`Timestamp`] holds.
pub(crate) const MAX_RUN_DAYS: u64 = 36_525;

/// The most outages one engine may expect over the run (memory: each is
/// kept while its engine is simulated).
pub(crate) const MAX_OUTAGES_PER_ENGINE: f64 = 1_000_000.0;

/// Probes per chunk of the outcome bitmap, in 64-bit words: 1024 probes,
/// whose timestamps (16 KiB) stay in the L1 cache while every policy folds
/// the chunk.
const CHUNK_WORDS: usize = 16;

/// Probes per chunk.
const CHUNK_PROBES: usize = 64 * CHUNK_WORDS;

/// The HTTP status every simulated failure carries (the metrics ignore it).
const FAILED_STATUS: u16 = 503;

/// A synthetic fleet to simulate; see the crate docs for the model.
///
/// Every field is checked by [`simulate`]; nothing here can panic.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Engines in the fleet, each probed on its own.
    pub engines: u32,
    /// Probes per engine: the run lasts `probes × interval` of virtual time.
    pub probes: u64,
    /// Virtual time between two probes of one engine.
    pub interval: Duration,
    /// Probability that a probe of an up engine fails (`0..=1`).
    pub flake: f64,
    /// Where the outages come from.
    pub outages: OutagePlan,
    /// How long an engine stays shaky after an outage ends.
    pub settle: Duration,
    /// Probability that a probe fails while the engine settles (`0..=1`).
    pub settle_flake: f64,
    /// Seed of every random draw: the same seed gives the same run.
    pub seed: u64,
}

/// Where a scenario's outages come from.
#[derive(Debug, Clone, PartialEq)]
pub enum OutagePlan {
    /// Poisson arrivals and exponential lengths, drawn per engine.
    Random {
        /// Mean outages per engine-day of up time.
        per_engine_day: f64,
        /// Mean outage length.
        mean_length: Duration,
    },
    /// The same outages on every engine: for what-if runs and hand-checked tests.
    Fixed(Vec<Outage>),
}

/// One outage in virtual time: every probe in `[start, start + length)` fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// From the start of the run (the first probe is at 0).
    pub start: Duration,
    /// How long the engine is down.
    pub length: Duration,
}

impl Scenario {
    /// The run's length in days of virtual time.
    pub fn days(&self) -> f64 {
        self.probes as f64 * self.interval.as_secs_f64() / 86_400.0
    }

    /// Engines × days: the denominator of the per-engine-day rates.
    pub fn engine_days(&self) -> f64 {
        f64::from(self.engines) * self.days()
    }
}

/// Simulate `scenario` once and fold it through every policy in `policies`.
///
/// Engines are split into `threads` contiguous shares (at least one engine
/// each); the result does not depend on `threads`. Fails, naming the setting,
/// when the scenario is out of range or `policies` is empty.
pub fn simulate(
    scenario: &Scenario,
    policies: &[Policy],
    threads: usize,
) -> Result<Report, SimulateError> {
    let plan = Plan::new(scenario, policies)?;
    let engines = scenario.engines;
    let threads = u32::try_from(threads)
        .unwrap_or(u32::MAX)
        .clamp(1, engines.max(1));
    let share = u64::from(engines.div_ceil(threads));
    let bound = |t: u32| u32::try_from(u64::from(t) * share).map_or(engines, |e| e.min(engines));
    let ranges: Vec<(u32, u32)> = (0..threads)
        .map(|t| (bound(t), bound(t + 1)))
        .filter(|(first, end)| first < end)
        .collect();
    let shares: Vec<FleetTally> = if ranges.len() == 1 {
        ranges
            .iter()
            .map(|&(first, end)| plan.run_engines(first..end))
            .collect()
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = ranges
                .iter()
                .map(|&(first, end)| {
                    let plan = &plan;
                    scope.spawn(move || plan.run_engines(first..end))
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    };
    let mut total = FleetTally::new(policies.len());
    for share in shares {
        total.merge(share);
    }
    Ok(Report::new(scenario, policies, &total))
}

/// What the whole fleet (or one thread's share of it) produced.
#[derive(Debug, Clone, Default)]
pub(crate) struct FleetTally {
    /// One tally per policy, in the order of the policies.
    pub policies: Vec<PolicyTally>,
    /// Outages generated.
    pub outages: u64,
    /// Outages that fell between two probes and were seen by none.
    pub unseen_outages: u64,
}

impl FleetTally {
    fn new(policies: usize) -> Self {
        Self {
            policies: vec![PolicyTally::default(); policies],
            outages: 0,
            unseen_outages: 0,
        }
    }

    fn merge(&mut self, other: FleetTally) {
        for (mine, theirs) in self.policies.iter_mut().zip(other.policies) {
            mine.merge(theirs);
        }
        self.outages += other.outages;
        self.unseen_outages += other.unseen_outages;
    }
}

/// A checked scenario in integer virtual time (nanoseconds and ticks).
#[derive(Debug)]
struct Plan<'a> {
    scenario: &'a Scenario,
    policies: &'a [Policy],
    interval_ns: u64,
    settle_ns: u64,
    /// Probes per engine; the run ends at `probes × interval_ns`.
    probes: u64,
    /// `ln(1 - p)` for up and settling engines, for geometric gaps.
    ln_keep_up: f64,
    ln_keep_settling: f64,
    /// Fixed outages, sorted by start, or none.
    fixed: Option<Vec<(u64, u64)>>,
}

impl<'a> Plan<'a> {
    fn new(scenario: &'a Scenario, policies: &'a [Policy]) -> Result<Self, SimulateError> {
        if scenario.engines == 0 {
            return Err(SimulateError::NoEngines);
        }
        if policies.is_empty() {
            return Err(SimulateError::NoPolicies);
        }
        let max_run_ns = MAX_RUN_DAYS * DAY_NS;
        let interval_ns = u64::try_from(scenario.interval.as_nanos())
            .ok()
            .filter(|&ns| ns > 0 && ns <= max_run_ns)
            .ok_or_else(|| SimulateError::BadInterval {
                interval: humantime::format_duration(scenario.interval).to_string(),
                max_days: MAX_RUN_DAYS,
            })?;
        if scenario.probes == 0 {
            return Err(SimulateError::NoProbes {
                days: scenario.days(),
                interval: humantime::format_duration(scenario.interval).to_string(),
            });
        }
        let run_ns = scenario
            .probes
            .checked_mul(interval_ns)
            .filter(|&ns| ns <= max_run_ns)
            .ok_or(SimulateError::RunTooLong {
                days: scenario.days(),
                max_days: MAX_RUN_DAYS,
            })?;
        for (flag, value) in [
            ("--flake", scenario.flake),
            ("--settle-flake", scenario.settle_flake),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(SimulateError::BadProbability { flag, value });
            }
        }
        let fixed = match &scenario.outages {
            OutagePlan::Random {
                per_engine_day,
                mean_length,
            } => {
                if !(per_engine_day.is_finite() && *per_engine_day >= 0.0) {
                    return Err(SimulateError::BadOutageRate(*per_engine_day));
                }
                if *per_engine_day > 0.0 && mean_length.is_zero() {
                    return Err(SimulateError::ZeroOutageMean);
                }
                let per_engine = per_engine_day * scenario.days();
                if per_engine > MAX_OUTAGES_PER_ENGINE {
                    return Err(SimulateError::TooManyOutages {
                        per_engine,
                        max: MAX_OUTAGES_PER_ENGINE,
                    });
                }
                None
            }
            OutagePlan::Fixed(outages) => Some(fixed_outages(outages, run_ns)?),
        };
        Ok(Self {
            scenario,
            policies,
            interval_ns,
            settle_ns: saturating_nanos(scenario.settle),
            probes: scenario.probes,
            ln_keep_up: (-scenario.flake).ln_1p(),
            ln_keep_settling: (-scenario.settle_flake).ln_1p(),
            fixed,
        })
    }

    /// Simulate engines `engines` under every policy.
    fn run_engines(&self, engines: std::ops::Range<u32>) -> FleetTally {
        let mut tally = FleetTally::new(self.policies.len());
        let mut states: Vec<HealthStates> = self
            .policies
            .iter()
            .map(|&p| HealthStates::new(p))
            .collect();
        let mut trackers: Vec<EngineTracker> = vec![EngineTracker::default(); self.policies.len()];
        let mut words = [0u64; CHUNK_WORDS];
        let mut times = vec![Timestamp::UNIX_EPOCH; CHUNK_PROBES];
        for engine in engines {
            let history = self.history(engine);
            tally.outages += history.outages.len() as u64;
            tally.unseen_outages += history
                .outages
                .iter()
                .filter(|o| o.start_tick == o.end_tick)
                .count() as u64;
            let mut failures = FailureStream::new(self, &history.segments, engine);
            let mut first = 0;
            while first < self.probes {
                let end = self.probes.min(first.saturating_add(CHUNK_PROBES as u64));
                failures.fill(first, end, &mut words);
                for (tick, time) in (first..end).zip(times.iter_mut()) {
                    *time = observed_at(tick, self.interval_ns);
                }
                let fold = Fold {
                    interval_ns: self.interval_ns,
                    outages: &history.outages,
                    first,
                    failed: &words,
                    times: &times[..(end - first) as usize],
                };
                for ((state, tracker), policy_tally) in states
                    .iter_mut()
                    .zip(trackers.iter_mut())
                    .zip(tally.policies.iter_mut())
                {
                    fold.through(state, tracker, policy_tally);
                }
                first = end;
            }
            for ((state, tracker), policy_tally) in states
                .iter_mut()
                .zip(trackers.iter_mut())
                .zip(tally.policies.iter_mut())
            {
                tracker.finish(self.probes, &history.outages, policy_tally);
                *tracker = EngineTracker::default();
                // R8: the engine leaves the fleet; the next one starts clean.
                state.prune(std::iter::empty());
            }
        }
        tally
    }

    /// The outages of `engine` and the health segments they cut the run into.
    fn history(&self, engine: u32) -> EngineHistory {
        let run_ns = self.probes * self.interval_ns;
        let spans: Vec<(u64, u64)> = match &self.fixed {
            Some(fixed) => fixed.clone(),
            None => self.random_outages(engine, run_ns),
        };
        let outages: Vec<TickOutage> = spans
            .iter()
            .map(|&(start_ns, end_ns)| TickOutage {
                start_ns,
                end_ns,
                start_tick: start_ns.div_ceil(self.interval_ns),
                end_tick: end_ns.div_ceil(self.interval_ns),
            })
            .collect();
        let mut segments = Vec::with_capacity(3 * outages.len() + 1);
        let mut push = |end_tick: u64, health: Health| {
            let start = segments.last().map_or(0, |s: &Segment| s.end_tick);
            if end_tick > start {
                segments.push(Segment { end_tick, health });
            }
        };
        for (i, outage) in outages.iter().enumerate() {
            push(outage.start_tick, Health::Up);
            push(outage.end_tick, Health::Down);
            let settled = outage
                .end_ns
                .saturating_add(self.settle_ns)
                .div_ceil(self.interval_ns);
            let next = outages.get(i + 1).map_or(self.probes, |o| o.start_tick);
            push(settled.min(next).min(self.probes), Health::Settling);
        }
        push(self.probes, Health::Up);
        EngineHistory { outages, segments }
    }

    /// Poisson outages with exponential lengths for one engine, all ending
    /// inside the run.
    fn random_outages(&self, engine: u32, run_ns: u64) -> Vec<(u64, u64)> {
        let OutagePlan::Random {
            per_engine_day,
            mean_length,
        } = &self.scenario.outages
        else {
            return Vec::new();
        };
        if *per_engine_day <= 0.0 {
            return Vec::new();
        }
        let mut rng = engine_rng(self.scenario.seed, engine, Stream::Outages);
        let mean_gap_ns = DAY_NS as f64 / per_engine_day;
        if !mean_gap_ns.is_finite() {
            return Vec::new(); // a rate so small that no outage can come
        }
        let mean_length_ns = mean_length.as_nanos() as f64;
        let mut outages = Vec::new();
        let mut up_since = 0u64;
        loop {
            let start = up_since.saturating_add(exponential(&mut rng, mean_gap_ns));
            let end = start.saturating_add(exponential(&mut rng, mean_length_ns));
            if end > run_ns {
                return outages;
            }
            outages.push((start, end));
            // At least a nanosecond of progress, whatever the draws.
            up_since = end.max(up_since.saturating_add(1));
        }
    }
}

/// Which of an engine's two random streams.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Outages = 0,
    Flakes = 1,
}

/// The random stream of one engine: ChaCha8 seeded with the run's seed, one
/// stream number per engine and purpose.
fn engine_rng(seed: u64, engine: u32, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(u64::from(engine) * 2 + stream as u64);
    rng
}

/// An exponential draw with mean `mean_ns`, rounded to whole nanoseconds.
fn exponential(rng: &mut ChaCha8Rng, mean_ns: f64) -> u64 {
    let u: f64 = rng.random();
    // 1 - u is in (0, 1], so the logarithm is finite and <= 0.
    // `as` saturates: an absurd draw becomes u64::MAX and ends the run.
    (-(1.0 - u).ln() * mean_ns).round() as u64
}

/// Probes before the next failure when each fails with `1 - exp(ln_keep)`:
/// a geometric draw, `u64::MAX` for never.
fn geometric(rng: &mut ChaCha8Rng, ln_keep: f64) -> u64 {
    if ln_keep == 0.0 {
        return u64::MAX; // p = 0: never fails
    }
    if ln_keep == f64::NEG_INFINITY {
        return 0; // p = 1: always fails
    }
    let u: f64 = rng.random();
    ((1.0 - u).ln() / ln_keep).floor() as u64
}

fn saturating_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Check and sort fixed outages; `(start_ns, end_ns)` pairs.
fn fixed_outages(outages: &[Outage], run_ns: u64) -> Result<Vec<(u64, u64)>, SimulateError> {
    let mut spans = Vec::with_capacity(outages.len());
    for (index, outage) in outages.iter().enumerate() {
        let start = saturating_nanos(outage.start);
        let end = start.saturating_add(saturating_nanos(outage.length));
        if end > run_ns {
            return Err(SimulateError::OutageOutsideRun {
                index,
                start: humantime::format_duration(outage.start).to_string(),
                length: humantime::format_duration(outage.length).to_string(),
                run: humantime::format_duration(Duration::from_nanos(run_ns)).to_string(),
            });
        }
        spans.push((start, end, index));
    }
    spans.sort_unstable();
    for pair in spans.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(SimulateError::OverlappingOutages {
                first: pair[0].2.min(pair[1].2),
                second: pair[0].2.max(pair[1].2),
            });
        }
    }
    Ok(spans.into_iter().map(|(s, e, _)| (s, e)).collect())
}

/// One outage on the tick grid: probes `start_tick..end_tick` fall inside it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TickOutage {
    pub start_ns: u64,
    pub end_ns: u64,
    pub start_tick: u64,
    pub end_tick: u64,
}

/// How an engine is doing over a stretch of probes.
#[derive(Debug, Clone, Copy)]
enum Health {
    Up,
    Down,
    Settling,
}

/// A stretch of probes ending (exclusive) at `end_tick`, starting where the
/// previous one ended.
#[derive(Debug, Clone, Copy)]
struct Segment {
    end_tick: u64,
    health: Health,
}

#[derive(Debug)]
struct EngineHistory {
    outages: Vec<TickOutage>,
    segments: Vec<Segment>,
}

/// The failed probes of one engine, produced chunk by chunk as a bitmap.
///
/// Within a segment failures are a Bernoulli process, produced by jumping a
/// geometric number of probes to the next failure (memoryless, so restarting
/// the draw at a segment boundary is exact).
#[derive(Debug)]
struct FailureStream<'a> {
    segments: &'a [Segment],
    segment: usize,
    next_failure: u64,
    ln_keep_up: f64,
    ln_keep_settling: f64,
    rng: ChaCha8Rng,
}

impl<'a> FailureStream<'a> {
    fn new(plan: &Plan<'_>, segments: &'a [Segment], engine: u32) -> Self {
        let mut stream = Self {
            segments,
            segment: 0,
            next_failure: u64::MAX,
            ln_keep_up: plan.ln_keep_up,
            ln_keep_settling: plan.ln_keep_settling,
            rng: engine_rng(plan.scenario.seed, engine, Stream::Flakes),
        };
        stream.enter(0);
        stream
    }

    fn ln_keep(&self) -> f64 {
        match self.segments.get(self.segment).map(|s| s.health) {
            Some(Health::Up) => self.ln_keep_up,
            Some(Health::Settling) => self.ln_keep_settling,
            Some(Health::Down) => f64::NEG_INFINITY,
            None => 0.0,
        }
    }

    /// Start the current segment at `start`.
    fn enter(&mut self, start: u64) {
        let ln_keep = self.ln_keep();
        self.next_failure = match self.segments.get(self.segment).map(|s| s.health) {
            Some(Health::Down) | None => u64::MAX, // Down fills whole ranges.
            Some(_) => start.saturating_add(geometric(&mut self.rng, ln_keep)),
        };
    }

    /// Set bit `t - first` of `words` for every failed probe `t` in `first..end`.
    fn fill(&mut self, first: u64, end: u64, words: &mut [u64; CHUNK_WORDS]) {
        words.fill(0);
        let mut t = first;
        while t < end {
            let Some(segment) = self.segments.get(self.segment).copied() else {
                return;
            };
            let stop = segment.end_tick.min(end);
            if let Health::Down = segment.health {
                set_bits(words, t - first, stop - first);
            } else {
                let ln_keep = self.ln_keep();
                while self.next_failure < stop {
                    let bit = self.next_failure - first;
                    words[(bit / 64) as usize] |= 1 << (bit % 64);
                    self.next_failure = self
                        .next_failure
                        .saturating_add(1)
                        .saturating_add(geometric(&mut self.rng, ln_keep));
                }
            }
            t = stop;
            if t == segment.end_tick {
                self.segment += 1;
                self.enter(t);
            }
        }
    }
}

/// Set bits `from..to` of the bitmap.
fn set_bits(words: &mut [u64; CHUNK_WORDS], from: u64, to: u64) {
    for bit in from..to {
        words[(bit / 64) as usize] |= 1 << (bit % 64);
    }
}

/// A failed probe's result (its error text left empty: the tally reads only the counts).
const FAILED: ProbeResult = ProbeResult::Unhealthy {
    status: FAILED_STATUS,
    error: String::new(),
};

/// One chunk of one engine's outcomes, to fold through each policy's state.
#[derive(Debug, Clone, Copy)]
struct Fold<'a> {
    interval_ns: u64,
    outages: &'a [TickOutage],
    /// The chunk's first probe.
    first: u64,
    /// Bit `i` is set when probe `first + i` failed.
    failed: &'a [u64; CHUNK_WORDS],
    /// The virtual time of each probe of the chunk, shared by every policy.
    times: &'a [Timestamp],
}

impl Fold<'_> {
    /// Fold the chunk through one policy's state and tally its events.
    fn through(
        &self,
        state: &mut HealthStates,
        tracker: &mut EngineTracker,
        tally: &mut PolicyTally,
    ) {
        for (bit, &time) in self.times.iter().enumerate() {
            let tick = self.first + bit as u64;
            let failed = (self.failed[bit / 64] >> (bit % 64)) & 1 == 1;
            // Empty ids: the state holds one engine at a time, and an empty
            // id costs no allocation when an event copies it.
            let outcome = OutcomeRef {
                game_id: "",
                container_id: "",
                observed_at: time,
                result: if failed {
                    &FAILED
                } else {
                    &ProbeResult::Healthy
                },
            };
            if let Some(event) = state.apply(outcome).map(|out| out.event) {
                match event.details {
                    EventDetails::ProbeFailed {
                        consecutive_failures,
                        ..
                    } => {
                        tracker.on_failed(
                            tick,
                            consecutive_failures,
                            self.interval_ns,
                            self.outages,
                            tally,
                        );
                    }
                    EventDetails::ProbeRecovered { .. } => {
                        tracker.on_recovered(tick, self.interval_ns, self.outages, tally);
                    }
                }
            }
        }
    }
}

/// The virtual time of probe `tick`, from the Unix epoch.
fn observed_at(tick: u64, interval_ns: u64) -> Timestamp {
    let ns = tick * interval_ns;
    // Both parts are in range: the run is at most MAX_RUN_DAYS long
    // (checked in Plan::new), far inside what a Timestamp holds.
    let seconds = (ns / 1_000_000_000) as i64;
    let nanos = (ns % 1_000_000_000) as i32;
    Timestamp::new(seconds, nanos).unwrap_or(Timestamp::MAX)
}
