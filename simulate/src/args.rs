//! `healthprobe simulate`: its flags and what it prints.

use std::fmt;
use std::io::Write;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use healthprobe_core::Policy;

use crate::fleet::{DAY_NS, MAX_RUN_DAYS};
use crate::{OutagePlan, Scenario, SimulateError, render_svg, simulate};

/// The largest threshold a range may name.
const MAX_THRESHOLD: u32 = 100;

/// Simulate a fleet in virtual time and compare hysteresis policies.
///
/// Every engine is probed once per `--interval`. Probes of an up engine
/// fail with probability `--flake`; outages arrive `--outage-rate` times per
/// engine-day and last `--outage-mean` on average (exponential); for
/// `--settle` after an outage, probes fail with probability `--settle-flake`.
/// Each policy `fN/rM` (N from `--failures`, M from `--recoveries`) sees the
/// same probes. The same `--seed` gives byte-identical output.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct SimulateArgs {
    /// Engines in the fleet.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub engines: u32,
    /// Days of virtual time to simulate (fractions allowed).
    #[arg(long, value_name = "D", default_value = "7", value_parser = parse_days)]
    pub days: f64,
    /// Virtual time between two probes of one engine.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Probability that a probe of an up engine fails (`0.01` or `1%`).
    #[arg(long, value_name = "P", default_value = "0.01", value_parser = parse_probability)]
    pub flake: f64,
    /// Mean outages per engine-day (Poisson arrivals).
    #[arg(long, value_name = "R", default_value = "1", value_parser = parse_rate)]
    pub outage_rate: f64,
    /// Mean outage length (exponential).
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    pub outage_mean: Duration,
    /// How long an engine stays shaky after an outage ends.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    pub settle: Duration,
    /// Probability that a probe fails while the engine settles.
    #[arg(long, value_name = "P", default_value = "0.2", value_parser = parse_probability)]
    pub settle_flake: f64,
    /// Failure thresholds to compare: `A..B` (inclusive) or `N`.
    #[arg(long, default_value = "1..6", value_name = "RANGE")]
    pub failures: ThresholdRange,
    /// Recovery thresholds to compare: `A..B` (inclusive) or `N`.
    #[arg(long, default_value = "1..3", value_name = "RANGE")]
    pub recoveries: ThresholdRange,
    /// Seed of every random draw.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Also draw detection delay against false alarms as an SVG chart.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Threads to simulate on [default: all cores]; the output does not depend on it.
    #[arg(long, value_name = "N")]
    pub threads: Option<NonZeroUsize>,
}

impl SimulateArgs {
    /// The scenario these settings describe.
    ///
    /// Fails when the run is too short for one probe or longer than the
    /// virtual clock can count.
    pub fn scenario(&self) -> Result<Scenario, SimulateError> {
        let interval_ns = self.interval.as_nanos();
        let run_ns = self.days * DAY_NS as f64;
        if !(self.days.is_finite() && self.days >= 0.0) || run_ns > (MAX_RUN_DAYS * DAY_NS) as f64 {
            return Err(SimulateError::RunTooLong {
                days: self.days,
                max_days: MAX_RUN_DAYS,
            });
        }
        if interval_ns == 0 || interval_ns > u128::from(MAX_RUN_DAYS * DAY_NS) {
            return Err(SimulateError::BadInterval {
                interval: humantime::format_duration(self.interval).to_string(),
                max_days: MAX_RUN_DAYS,
            });
        }
        // Both are below 2^62, so the quotient is exact enough and fits.
        let probes = (run_ns / interval_ns as f64).floor() as u64;
        if probes == 0 {
            return Err(SimulateError::NoProbes {
                days: self.days,
                interval: humantime::format_duration(self.interval).to_string(),
            });
        }
        Ok(Scenario {
            engines: self.engines,
            probes,
            interval: self.interval,
            flake: self.flake,
            outages: OutagePlan::Random {
                per_engine_day: self.outage_rate,
                mean_length: self.outage_mean,
            },
            settle: self.settle,
            settle_flake: self.settle_flake,
            seed: self.seed,
        })
    }

    /// Every policy `--failures` × `--recoveries`, failures threshold first.
    pub fn policies(&self) -> Result<Vec<Policy>, SimulateError> {
        let mut policies = Vec::new();
        for failures in self.failures.thresholds() {
            for recoveries in self.recoveries.thresholds() {
                // Both ranges start at 1 (checked when parsed); a zero cannot get here.
                if let Ok(policy) = Policy::new(failures, recoveries) {
                    policies.push(policy);
                }
            }
        }
        if policies.is_empty() {
            return Err(SimulateError::NoPolicies);
        }
        Ok(policies)
    }
}

/// Run `healthprobe simulate`: simulate, print the table (or JSON with
/// `--json`) to `out`, and write the chart when `--plot` is given.
///
/// The same settings give byte-identical output and chart. With `--plot`
/// and no `--json`, a last line names the chart's file.
pub fn run(args: &SimulateArgs, out: &mut impl Write) -> Result<(), SimulateError> {
    let scenario = args.scenario()?;
    let policies = args.policies()?;
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        NonZeroUsize::get,
    );
    let report = simulate(&scenario, &policies, threads)?;
    let text = if args.json {
        report.to_json()?
    } else {
        report.to_table()
    };
    out.write_all(text.as_bytes())
        .map_err(SimulateError::Output)?;
    if let Some(path) = &args.plot {
        let svg = render_svg(&report)?;
        std::fs::write(path, svg).map_err(|source| SimulateError::PlotFile {
            path: path.clone(),
            source,
        })?;
        if !args.json {
            writeln!(out, "Plot: {}", path.display()).map_err(SimulateError::Output)?;
        }
    }
    out.flush().map_err(SimulateError::Output)
}

/// An inclusive range of thresholds, each from 1 to 100: `2..5` or `3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThresholdRange {
    first: u32,
    last: u32,
}

impl ThresholdRange {
    /// `first..=last`; `None` unless `1 <= first <= last <= 100`.
    pub fn new(first: u32, last: u32) -> Option<Self> {
        (1 <= first && first <= last && last <= MAX_THRESHOLD).then_some(Self { first, last })
    }

    /// The smallest threshold.
    pub fn first(&self) -> u32 {
        self.first
    }

    /// The largest threshold.
    pub fn last(&self) -> u32 {
        self.last
    }

    /// Every threshold in the range, smallest first.
    pub fn thresholds(&self) -> std::ops::RangeInclusive<u32> {
        self.first..=self.last
    }
}

impl fmt::Display for ThresholdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}..{}", self.first, self.last)
        }
    }
}

impl FromStr for ThresholdRange {
    type Err = String;

    /// `A..B` or `A..=B` (both inclusive) or a single `N`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (first, last) = match text.split_once("..") {
            Some((first, last)) => (first, last.strip_prefix('=').unwrap_or(last)),
            None => (text, text),
        };
        let number = |part: &str| {
            part.trim().parse::<u32>().map_err(|_| {
                format!("expected a threshold `N` or a range `A..B` of whole numbers, got `{text}`")
            })
        };
        let (first, last) = (number(first)?, number(last)?);
        if first == 0 {
            return Err(format!("thresholds start at 1, got `{text}`"));
        }
        if first > last {
            return Err(format!(
                "`{text}` is empty: write the smaller threshold first"
            ));
        }
        if last > MAX_THRESHOLD {
            return Err(format!("thresholds go up to {MAX_THRESHOLD}, got `{text}`"));
        }
        Ok(Self { first, last })
    }
}

fn parse_days(text: &str) -> Result<f64, String> {
    let days: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("expected a number of days, got `{text}`"))?;
    if !(days.is_finite() && days > 0.0) {
        return Err(format!("must be a positive number of days, got `{text}`"));
    }
    if days > MAX_RUN_DAYS as f64 {
        return Err(format!("must be at most {MAX_RUN_DAYS} days, got `{text}`"));
    }
    Ok(days)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("expected a duration such as `5s` or `2m`, got `{text}`: {e}"))
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = parse_duration(text)?;
    if interval.is_zero() {
        return Err("must be positive".to_owned());
    }
    if interval.as_nanos() > u128::from(MAX_RUN_DAYS * DAY_NS) {
        return Err(format!("must be at most {MAX_RUN_DAYS} days, got `{text}`"));
    }
    Ok(interval)
}

fn parse_probability(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let (number, scale) = match text.strip_suffix('%') {
        Some(number) => (number, 100.0),
        None => (text, 1.0),
    };
    let p = number
        .trim()
        .parse::<f64>()
        .map(|p| p / scale)
        .map_err(|_| format!("expected a probability such as `0.01` or `1%`, got `{text}`"))?;
    if !(0.0..=1.0).contains(&p) {
        return Err(format!(
            "must be between 0 and 1 (0% and 100%), got `{text}`"
        ));
    }
    Ok(p)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("expected outages per engine-day such as `0.5`, got `{text}`"))?;
    if !(rate.is_finite() && rate >= 0.0) {
        return Err(format!(
            "must be zero or more outages per engine-day, got `{text}`"
        ));
    }
    Ok(rate)
}
