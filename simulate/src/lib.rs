//! Choose a healthprobe policy by simulating a fleet in virtual time.
//!
//! The core ([`healthprobe_core`]) is pure, so a whole fleet of engines can be
//! probed for days of virtual time in seconds of real time. This crate makes
//! seeded synthetic probe outcomes, folds every engine's outcomes through
//! [`HealthStates::apply`](healthprobe_core::HealthStates::apply) once per
//! candidate [`Policy`](healthprobe_core::Policy), and measures what an
//! operator trades: how late an outage is reported, how late its end is
//! reported, and how many `probe_failed` events fire while nothing is wrong.
//! `healthprobe simulate` ([`SimulateArgs`], [`run`]) prints the result as a
//! table or JSON and can draw the trade-off as an SVG chart.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use healthprobe_core::Policy;
//! use healthprobe_simulate::{Outage, OutagePlan, Scenario, simulate};
//!
//! // One engine, no flakes, one 50 s outage from the 21st probe (100 s).
//! let scenario = Scenario {
//!     engines: 1,
//!     probes: 100,
//!     interval: Duration::from_secs(5),
//!     flake: 0.0,
//!     outages: OutagePlan::Fixed(vec![Outage {
//!         start: Duration::from_secs(100),
//!         length: Duration::from_secs(50),
//!     }]),
//!     settle: Duration::ZERO,
//!     settle_flake: 0.0,
//!     seed: 1,
//! };
//! let report = simulate(&scenario, &[Policy::new(3, 2)?], 1)?;
//! let f3r2 = &report.policies[0];
//! assert_eq!(f3r2.policy, "f3/r2");
//! // The third failed probe publishes probe_failed, 10 s after the outage began;
//! assert_eq!(f3r2.detection.probes.map(|q| q.p50), Some(3));
//! assert_eq!(f3r2.detection.seconds.map(|q| q.p50), Some(10.0));
//! // the second good probe publishes probe_recovered, 5 s after it ended.
//! assert_eq!(f3r2.recovery.seconds.map(|q| q.max), Some(5.0));
//! assert_eq!((f3r2.false_alarms, f3r2.missed_outages), (0, 0));
//! print!("{}", report.to_table());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The model
//!
//! Every engine is probed once per `interval`, at virtual times
//! `0, interval, 2·interval, …` (ticks), for the whole run.
//!
//! - **Flakes.** While the engine is up, each probe fails independently with
//!   probability `flake` (a timeout under load, a restart of a sidecar, …).
//! - **Outages.** Outages arrive as a Poisson process: the up time between the
//!   end of one outage and the start of the next is exponential with mean
//!   `1 / outage_rate` engine-days. An outage's length is exponential with
//!   mean `outage_mean`. Both are continuous: an outage starts between two
//!   probes, and every probe whose time falls inside `[start, start + length)`
//!   fails. An outage shorter than the interval can fall between two probes
//!   and be seen by none (it is then missed by every policy).
//! - **Slow recovery.** For `settle` after an outage ends, the engine is up but
//!   shaky: each probe fails with probability `settle_flake` instead of
//!   `flake`. This is what `recovery_threshold` is for: with 1, the first
//!   good probe recovers and a few bad ones can raise a second alarm.
//!
//! Outages that would not end inside the run are not generated, so every
//! outage is judged. Each engine draws from its own two ChaCha8 streams of
//! the seed (one for outages, one for flakes), so an engine's history does
//! not depend on how many engines there are, on the flake rate (outages), or
//! on how many threads run the simulation: the same seed gives byte-identical
//! output.
//!
//! # The metrics (per policy)
//!
//! A `probe_failed` *belongs to* an outage when one of the failed probes it
//! counted (its `consecutive_failures`) saw the outage: usually it fires
//! during the outage; it can also fire just after a short outage, when the
//! first probes of the settling engine fail and complete the streak (a late
//! detection, not a false alarm).
//!
//! - **Detection delay**: from an outage's start to the `probe_failed` that
//!   belongs to it, in seconds of virtual time and in probes since the
//!   outage began (the publishing probe included: `failures_threshold` for a
//!   clean outage). Median and p95 are nearest-rank.
//! - **Recovery delay**: from an outage's end to the `probe_recovered` after
//!   it, in seconds and in probes since the outage ended
//!   (`recovery_threshold` for a clean end).
//! - **Missed outages**: outages no `probe_failed` belongs to and that did
//!   not begin while a failure was already published: an outage shorter than
//!   `failures_threshold` probes, or one that no probe saw.
//! - **False alarms**: `probe_failed` events that belong to no outage (flakes,
//!   and second alarms while an engine settles), per engine-day.
//! - **Events**: all `probe_failed` and `probe_recovered` events, per
//!   engine-day: what the consumers of the events have to handle.
//!
//! An outage that begins while a failure is still published (from flakes just
//! before it) counts as detected but gives no delay sample.
//!
//! # Speed
//!
//! Each engine's outcome stream is generated once (as a bitmap, with
//! geometric gaps between flakes rather than one random draw per probe) and
//! fed to every policy. Engines are independent in the core (its state is
//! per game), so each engine is folded on its own with empty game and
//! container ids, which cost no allocation when `apply` consumes them.
#![warn(missing_docs)]

mod args;
mod error;
mod fleet;
mod plot;
mod report;
mod tally;

pub use args::{SimulateArgs, ThresholdRange, run};
pub use error::SimulateError;
pub use fleet::{Outage, OutagePlan, Scenario, simulate};
pub use plot::render_svg;
pub use report::{
    DelayStats, OutageSummary, PolicyReport, Quantiles, Report, ScenarioSummary, policy_name,
};
