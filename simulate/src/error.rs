//! Everything that can go wrong in a simulation run.

use std::path::PathBuf;

/// Why a simulation could not run or its output could not be written.
///
/// Setting errors name the `healthprobe simulate` flag they come from.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// `engines` was 0.
    #[error("--engines must be at least 1")]
    NoEngines,
    /// The run is shorter than one probe interval.
    #[error("--days {days} is shorter than one --interval ({interval}): no probe would run")]
    NoProbes {
        /// The requested days.
        days: f64,
        /// The interval, as given.
        interval: String,
    },
    /// The run is longer than the simulator's virtual clock can count.
    #[error("the run must last at most {max_days} days of virtual time, got {days}")]
    RunTooLong {
        /// The requested length in days.
        days: f64,
        /// The longest run allowed, in days.
        max_days: u64,
    },
    /// The probe interval was zero or longer than the run can hold.
    #[error("--interval must be positive and at most {max_days} days, got {interval}")]
    BadInterval {
        /// The interval, as given.
        interval: String,
        /// The longest interval allowed, in days.
        max_days: u64,
    },
    /// A probability was outside `0..=1` or not a number.
    #[error("{flag} must be a probability between 0 and 1, got {value}")]
    BadProbability {
        /// The setting, named as its flag.
        flag: &'static str,
        /// The value given.
        value: f64,
    },
    /// The outage rate was negative or not a number.
    #[error("--outage-rate must be a non-negative number of outages per engine-day, got {0}")]
    BadOutageRate(f64),
    /// The outage rate would give an engine more outages than the simulator keeps.
    #[error(
        "--outage-rate × --days gives {per_engine} outages per engine; at most {max} are allowed"
    )]
    TooManyOutages {
        /// Expected outages per engine over the run.
        per_engine: f64,
        /// The most allowed.
        max: f64,
    },
    /// Outages were asked for with a mean length of zero.
    #[error("--outage-mean must be positive when --outage-rate is above 0")]
    ZeroOutageMean,
    /// A fixed outage does not end inside the run.
    #[error("outage {index} (start {start}, length {length}) does not end inside the run ({run})")]
    OutageOutsideRun {
        /// Position of the outage in the plan, from 0.
        index: usize,
        /// Its start, as a duration from the start of the run.
        start: String,
        /// Its length.
        length: String,
        /// The run's length.
        run: String,
    },
    /// Two fixed outages overlap.
    #[error("outages {first} and {second} overlap")]
    OverlappingOutages {
        /// The earlier outage, by position in the plan.
        first: usize,
        /// The later outage, by position in the plan.
        second: usize,
    },
    /// No policy to simulate.
    #[error(
        "no policy to simulate: --failures and --recoveries must each name at least one threshold"
    )]
    NoPolicies,
    /// Writing the table or the JSON failed.
    #[error("writing the report: {0}")]
    Output(#[source] std::io::Error),
    /// Encoding the JSON report failed.
    #[error("encoding the JSON report: {0}")]
    Json(#[from] serde_json::Error),
    /// Drawing the chart failed.
    #[error("drawing the plot: {0}")]
    Draw(String),
    /// Writing the chart's file failed.
    #[error("writing the plot {}: {source}", path.display())]
    PlotFile {
        /// The file named by `--plot`.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
}
