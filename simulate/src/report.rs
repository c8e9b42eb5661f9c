//! The result of a simulation: per-policy metrics, as a table or JSON.

use std::fmt::Write as _;

use healthprobe_core::Policy;
use serde::Serialize;

use crate::fleet::{FleetTally, OutagePlan, Scenario};
use crate::tally::{Delay, PolicyTally};

/// Everything a simulation measured; serializes as the `--json` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// What was simulated.
    pub scenario: ScenarioSummary,
    /// The outages generated, the same for every policy.
    pub outages: OutageSummary,
    /// One entry per policy, failures threshold first, then recovery threshold.
    pub policies: Vec<PolicyReport>,
}

/// The scenario's settings, in the units the table prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioSummary {
    /// Engines in the fleet.
    pub engines: u32,
    /// Days of virtual time.
    pub days: f64,
    /// Seconds between two probes of one engine.
    pub interval_s: f64,
    /// Probes per engine.
    pub probes_per_engine: u64,
    /// Probes over the whole fleet, folded once per policy.
    pub probes_per_policy: u64,
    /// Probability that a probe of an up engine fails.
    pub flake: f64,
    /// Mean outages per engine-day (random outages only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outage_rate_per_engine_day: Option<f64>,
    /// Mean outage length in seconds (random outages only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outage_mean_s: Option<f64>,
    /// Outages per engine (fixed outages only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed_outages_per_engine: Option<usize>,
    /// Seconds an engine stays shaky after an outage.
    pub settle_s: f64,
    /// Probability that a probe fails while an engine settles.
    pub settle_flake: f64,
    /// The seed of every random draw.
    pub seed: u64,
}

/// How many outages the fleet had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutageSummary {
    /// Outages over all engines.
    pub total: u64,
    /// Outages that fell between two probes: no policy can detect them.
    pub unseen: u64,
}

/// What one policy did over the whole fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyReport {
    /// `f{failures}/r{recoveries}`, as in the table and the plot.
    pub policy: String,
    /// Consecutive failures that publish `probe_failed`.
    pub failures_threshold: u32,
    /// Consecutive successes that publish `probe_recovered`.
    pub recovery_threshold: u32,
    /// Outage start → `probe_failed`.
    pub detection: DelayStats,
    /// Outage end → `probe_recovered`.
    pub recovery: DelayStats,
    /// Outages that began while a failure was already published (detected,
    /// but with no delay sample).
    pub detected_already_failed: u64,
    /// Outages during which no failure was published.
    pub missed_outages: u64,
    /// `probe_failed` events while no outage was in progress.
    pub false_alarms: u64,
    /// `false_alarms` per engine-day.
    pub false_alarms_per_engine_day: f64,
    /// Events of both kinds.
    pub events: u64,
    /// `events` per engine-day.
    pub events_per_engine_day: f64,
}

/// The distribution of one delay, in probes and in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DelayStats {
    /// How many delays were measured.
    pub samples: u64,
    /// Probes that saw the outage (or its end), the publishing one included.
    pub probes: Option<Quantiles<u64>>,
    /// Seconds of virtual time.
    pub seconds: Option<Quantiles<f64>>,
}

/// Nearest-rank median and 95th percentile, and the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quantiles<T> {
    /// The median (nearest rank).
    pub p50: T,
    /// The 95th percentile (nearest rank).
    pub p95: T,
    /// The largest sample.
    pub max: T,
}

/// The short name of a policy in tables and plots: `f3/r1`.
pub fn policy_name(policy: Policy) -> String {
    format!(
        "f{}/r{}",
        policy.failures_threshold(),
        policy.recovery_threshold()
    )
}

impl Report {
    pub(crate) fn new(scenario: &Scenario, policies: &[Policy], tally: &FleetTally) -> Self {
        let engine_days = scenario.engine_days();
        let per_engine_day = |count: u64| {
            if engine_days > 0.0 {
                count as f64 / engine_days
            } else {
                0.0
            }
        };
        let (rate, mean, fixed) = match &scenario.outages {
            OutagePlan::Random {
                per_engine_day,
                mean_length,
            } => (Some(*per_engine_day), Some(mean_length.as_secs_f64()), None),
            OutagePlan::Fixed(outages) => (None, None, Some(outages.len())),
        };
        Self {
            scenario: ScenarioSummary {
                engines: scenario.engines,
                days: scenario.days(),
                interval_s: scenario.interval.as_secs_f64(),
                probes_per_engine: scenario.probes,
                probes_per_policy: u64::from(scenario.engines).saturating_mul(scenario.probes),
                flake: scenario.flake,
                outage_rate_per_engine_day: rate,
                outage_mean_s: mean,
                fixed_outages_per_engine: fixed,
                settle_s: scenario.settle.as_secs_f64(),
                settle_flake: scenario.settle_flake,
                seed: scenario.seed,
            },
            outages: OutageSummary {
                total: tally.outages,
                unseen: tally.unseen_outages,
            },
            policies: policies
                .iter()
                .zip(&tally.policies)
                .map(|(&policy, t)| PolicyReport::new(policy, t, &per_engine_day))
                .collect(),
        }
    }

    /// The `--json` output: pretty-printed, keys in a fixed order, one
    /// trailing newline.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let mut json = serde_json::to_string_pretty(self)?;
        json.push('\n');
        Ok(json)
    }

    /// The table `healthprobe simulate` prints: a summary of the scenario,
    /// one aligned row per policy, and a legend.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        self.write_summary(&mut out);
        out.push('\n');
        write_rows(&mut out, &self.policies, self.outages.total);
        out.push('\n');
        out.push_str(LEGEND);
        out
    }

    fn write_summary(&self, out: &mut String) {
        let s = &self.scenario;
        let plural = |n: u64, one: &str, many: &str| {
            format!("{} {}", count(n), if n == 1 { one } else { many })
        };
        let _ = writeln!(
            out,
            "Simulated {} × {} day{}, a probe every {}: {} per policy, {}, seed {}.",
            plural(u64::from(s.engines), "engine", "engines"),
            number(s.days),
            if s.days == 1.0 { "" } else { "s" },
            duration(s.interval_s),
            plural(s.probes_per_policy, "probe", "probes"),
            plural(self.policies.len() as u64, "policy", "policies"),
            s.seed
        );
        let outages = match (
            s.outage_rate_per_engine_day,
            s.outage_mean_s,
            s.fixed_outages_per_engine,
        ) {
            (Some(rate), Some(mean), _) => format!(
                "{} outage{} per engine-day, mean length {} (exponential)",
                number(rate),
                if rate == 1.0 { "" } else { "s" },
                duration(mean)
            ),
            (_, _, Some(fixed)) => format!("{fixed} fixed outages per engine"),
            _ => "no outages".to_owned(),
        };
        let _ = writeln!(
            out,
            "Model: {} of probes flake; {}; for {} after an outage {} of probes fail.",
            percent(s.flake),
            outages,
            duration(s.settle_s),
            percent(s.settle_flake)
        );
        let _ = writeln!(
            out,
            "Outages: {} in all, {} seen by no probe (shorter than the gap between two probes).",
            count(self.outages.total),
            count(self.outages.unseen)
        );
    }
}

const LEGEND: &str = "\
Delays: seconds of virtual time (in brackets: probes from the outage's start, or end, up to
  the event); detection = outage start → probe_failed, recovery = outage end → probe_recovered.
False alarm: a probe_failed none of whose failed probes saw an outage (flakes, or an engine
  settling after an outage). Missed: an outage no probe_failed counted. Percentiles: nearest rank.
";

impl PolicyReport {
    fn new(policy: Policy, tally: &PolicyTally, per_engine_day: &impl Fn(u64) -> f64) -> Self {
        Self {
            policy: policy_name(policy),
            failures_threshold: policy.failures_threshold(),
            recovery_threshold: policy.recovery_threshold(),
            detection: DelayStats::new(&tally.detection),
            recovery: DelayStats::new(&tally.recovery),
            detected_already_failed: tally.already_failed,
            missed_outages: tally.missed,
            false_alarms: tally.false_alarms,
            false_alarms_per_engine_day: per_engine_day(tally.false_alarms),
            events: tally.events,
            events_per_engine_day: per_engine_day(tally.events),
        }
    }
}

impl DelayStats {
    fn new(delays: &[Delay]) -> Self {
        let mut probes: Vec<u64> = delays.iter().map(|d| d.probes).collect();
        let mut ns: Vec<u64> = delays.iter().map(|d| d.ns).collect();
        probes.sort_unstable();
        ns.sort_unstable();
        Self {
            samples: delays.len() as u64,
            probes: Quantiles::of_sorted(&probes),
            seconds: Quantiles::of_sorted(&ns).map(|q| Quantiles {
                p50: q.p50 as f64 / 1e9,
                p95: q.p95 as f64 / 1e9,
                max: q.max as f64 / 1e9,
            }),
        }
    }
}

impl<T: Copy> Quantiles<T> {
    /// Nearest-rank quantiles of sorted samples; `None` when there are none.
    fn of_sorted(sorted: &[T]) -> Option<Self> {
        let rank = |q: f64| {
            let index = (q * sorted.len() as f64).ceil() as usize;
            sorted.get(index.saturating_sub(1)).copied()
        };
        Some(Self {
            p50: rank(0.5)?,
            p95: rank(0.95)?,
            max: *sorted.last()?,
        })
    }
}

/// One column of the table.
struct Column {
    group: &'static str,
    header: &'static str,
    left: bool,
}

const COLUMNS: [Column; 10] = [
    Column {
        group: "",
        header: "policy",
        left: true,
    },
    Column {
        group: "detection delay",
        header: "p50",
        left: false,
    },
    Column {
        group: "detection delay",
        header: "p95",
        left: false,
    },
    Column {
        group: "detection delay",
        header: "max",
        left: false,
    },
    Column {
        group: "recovery delay",
        header: "p50",
        left: false,
    },
    Column {
        group: "recovery delay",
        header: "p95",
        left: false,
    },
    Column {
        group: "recovery delay",
        header: "max",
        left: false,
    },
    Column {
        group: "false alarms",
        header: "/engine-day",
        left: false,
    },
    Column {
        group: "missed",
        header: "outages",
        left: false,
    },
    Column {
        group: "events",
        header: "/engine-day",
        left: false,
    },
];

const GAP: &str = "  ";

fn write_rows(out: &mut String, policies: &[PolicyReport], outages: u64) {
    let rows: Vec<[String; 10]> = policies
        .iter()
        .map(|p| {
            let [d50, d95, dmax] = delay_cells(&p.detection);
            let [r50, r95, rmax] = delay_cells(&p.recovery);
            [
                p.policy.clone(),
                d50,
                d95,
                dmax,
                r50,
                r95,
                rmax,
                rate(p.false_alarms_per_engine_day),
                missed_cell(p.missed_outages, outages),
                rate(p.events_per_engine_day),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = COLUMNS.iter().map(|c| c.header.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    // Widen the last column of a group whose title is longer than its columns.
    let groups = column_groups();
    for group in &groups {
        let span = group_span(&widths, group);
        let need = COLUMNS[group.start].group.chars().count();
        if need > span {
            widths[group.end - 1] += need - span;
        }
    }

    // Group titles, centred over their columns, ruled when a group spans several.
    let mut line = String::new();
    for group in &groups {
        if group.start > 0 {
            line.push_str(GAP);
        }
        let title = COLUMNS[group.start].group;
        line.push_str(&centred(title, group_span(&widths, group), group.len() > 1));
    }
    out.push_str(line.trim_end());
    out.push('\n');

    let headers: Vec<String> = COLUMNS.iter().map(|c| c.header.to_owned()).collect();
    write_row(out, &headers, &widths);
    for row in &rows {
        write_row(out, row, &widths);
    }
}

fn write_row(out: &mut String, cells: &[String], widths: &[usize]) {
    let mut line = String::new();
    for (i, ((cell, width), column)) in cells.iter().zip(widths).zip(&COLUMNS).enumerate() {
        if i > 0 {
            line.push_str(GAP);
        }
        let pad = width.saturating_sub(cell.chars().count());
        if column.left {
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', pad));
        } else {
            line.extend(std::iter::repeat_n(' ', pad));
            line.push_str(cell);
        }
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

fn centred(title: &str, width: usize, ruled: bool) -> String {
    let len = title.chars().count();
    if title.is_empty() {
        return " ".repeat(width);
    }
    let spare = width.saturating_sub(len);
    if ruled && spare >= 4 {
        let left = (spare - 2) / 2;
        let right = spare - 2 - left;
        format!("{} {title} {}", "─".repeat(left), "─".repeat(right))
    } else {
        let left = spare / 2;
        format!("{}{title}{}", " ".repeat(left), " ".repeat(spare - left))
    }
}

fn delay_cells(stats: &DelayStats) -> [String; 3] {
    match (&stats.seconds, &stats.probes) {
        (Some(s), Some(p)) => [
            format!("{} ({})", seconds(s.p50), p.p50),
            format!("{} ({})", seconds(s.p95), p.p95),
            format!("{} ({})", seconds(s.max), p.max),
        ],
        _ => ["-".to_owned(), "-".to_owned(), "-".to_owned()],
    }
}

fn missed_cell(missed: u64, outages: u64) -> String {
    if outages == 0 {
        return missed.to_string();
    }
    let share = missed as f64 / outages as f64 * 100.0;
    format!("{missed} ({share:.1}%)")
}

/// A delay in seconds: one decimal below 1000 s.
pub(crate) fn seconds(s: f64) -> String {
    if s >= 1000.0 {
        format!("{s:.0}s")
    } else {
        format!("{s:.1}s")
    }
}

/// A setting's duration as humantime writes it, without spaces: `5s`, `1m30s`.
pub(crate) fn duration(s: f64) -> String {
    let duration = std::time::Duration::try_from_secs_f64(s).unwrap_or_default();
    humantime::format_duration(duration)
        .to_string()
        .replace(' ', "")
}

/// A rate with three significant digits, `0` for zero.
pub(crate) fn number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (2 - magnitude).clamp(0, 6) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        let trimmed = text.trim_end_matches('0').trim_end_matches('.');
        if trimmed.is_empty() || trimmed == "-" {
            "0".to_owned()
        } else {
            trimmed.to_owned()
        }
    } else {
        text
    }
}

/// A rate with three significant digits, trailing zeros kept so a column
/// reads evenly: `172`, `2.02`, `0.0700`; `0` for zero.
fn rate(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (2 - magnitude).clamp(0, 6) as usize;
    format!("{v:.decimals$}")
}

/// A count with thousands separators: `24,192,000`.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A probability as a percentage: `1%`, `0.5%`, `20%`.
fn percent(p: f64) -> String {
    format!("{}%", number(p * 100.0))
}

/// The runs of adjacent columns under one group title, in order.
fn column_groups() -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < COLUMNS.len() {
        let group = COLUMNS[start].group;
        let end = (start..COLUMNS.len())
            .find(|&i| COLUMNS[i].group != group)
            .unwrap_or(COLUMNS.len());
        groups.push(start..end);
        start = end;
    }
    groups
}

/// The width a group's title can use: its columns and the gaps between them.
fn group_span(widths: &[usize], group: &std::ops::Range<usize>) -> usize {
    widths[group.clone()].iter().sum::<usize>() + GAP.len() * (group.len() - 1)
}
