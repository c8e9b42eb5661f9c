//! Turning one policy's events into metrics: which outage each event belongs
//! to, and how late it came.

use crate::fleet::TickOutage;

/// One delay sample: in probes and in nanoseconds of virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delay {
    /// Probes from the outage's start (or end) up to and including the
    /// probe that caused the event.
    pub probes: u64,
    /// Virtual time from the outage's start (or end) to the event.
    pub ns: u64,
}

/// What one policy did over the engines simulated so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicyTally {
    /// Outage start → `probe_failed`, one per outage detected during it.
    pub detection: Vec<Delay>,
    /// Outage end → `probe_recovered`, one per detected outage whose
    /// recovery was published before the next outage began.
    pub recovery: Vec<Delay>,
    /// Outages that began while a failure was already published.
    pub already_failed: u64,
    /// Outages during which nothing was published.
    pub missed: u64,
    /// `probe_failed` while no outage was in progress.
    pub false_alarms: u64,
    /// Every event, both kinds.
    pub events: u64,
}

impl PolicyTally {
    /// Add another share of engines (engine order is kept by the caller).
    pub fn merge(&mut self, other: PolicyTally) {
        self.detection.extend(other.detection);
        self.recovery.extend(other.recovery);
        self.already_failed += other.already_failed;
        self.missed += other.missed;
        self.false_alarms += other.false_alarms;
        self.events += other.events;
    }
}

/// Where one engine is in its list of outages, under one policy.
///
/// Outages are visited in order through their boundaries (start, end, next
/// start, …), lazily: boundaries up to a probe are settled when an event
/// happens at that probe or when the engine's run ends. Between two events
/// `published` is constant, so that is exact.
///
/// A `probe_failed` belongs to an outage when one of the failed probes it
/// counted (its `consecutive_failures`) saw the outage: during the outage,
/// or just after it when the engine's first probes after it flake and
/// complete the streak (a late detection). Any other `probe_failed` is a
/// false alarm. An outage no `probe_failed` belongs to is missed.
#[derive(Debug, Clone, Default)]
pub(crate) struct EngineTracker {
    /// Whether this policy has a failure published for the engine.
    published: bool,
    /// 2·i: waiting for outage i to start; 2·i + 1: outage i is in progress.
    boundary: usize,
    /// Whether the outage in progress is already detected.
    detected: bool,
    /// The last outage, ended undetected: a streak still running may detect it late.
    undetected: Option<usize>,
    /// The outage whose recovery is awaited.
    recovering: Option<usize>,
}

impl EngineTracker {
    /// A `probe_failed` counting `streak` consecutive failures was published
    /// at probe `tick`.
    pub fn on_failed(
        &mut self,
        tick: u64,
        streak: u64,
        interval_ns: u64,
        outages: &[TickOutage],
        tally: &mut PolicyTally,
    ) {
        self.advance(tick, outages, tally);
        self.published = true;
        tally.events += 1;
        let first_failure = (tick + 1).saturating_sub(streak);
        let detects = match (self.in_progress(), self.undetected) {
            (Some(i), _) if !self.detected => {
                self.detected = true;
                Some(i)
            }
            (None, Some(i)) if outages.get(i).is_some_and(|o| first_failure < o.end_tick) => {
                // Late: the streak began inside the outage and ran on after it.
                self.undetected = None;
                self.recovering = Some(i);
                Some(i)
            }
            _ => None,
        };
        match detects.and_then(|i| outages.get(i)) {
            Some(outage) => tally.detection.push(Delay {
                probes: tick + 1 - outage.start_tick,
                ns: (tick * interval_ns).saturating_sub(outage.start_ns),
            }),
            None => {
                tally.false_alarms += 1;
                self.judge_undetected(tally);
            }
        }
    }

    /// A `probe_recovered` was published at probe `tick`.
    pub fn on_recovered(
        &mut self,
        tick: u64,
        interval_ns: u64,
        outages: &[TickOutage],
        tally: &mut PolicyTally,
    ) {
        self.advance(tick, outages, tally);
        self.published = false;
        tally.events += 1;
        self.judge_undetected(tally);
        if let Some(outage) = self.recovering.take().and_then(|i| outages.get(i)) {
            tally.recovery.push(Delay {
                probes: tick + 1 - outage.end_tick,
                ns: (tick * interval_ns).saturating_sub(outage.end_ns),
            });
        }
    }

    /// The engine's run ended after `probes` probes: settle every boundary.
    pub fn finish(&mut self, probes: u64, outages: &[TickOutage], tally: &mut PolicyTally) {
        self.advance(probes, outages, tally);
        self.judge_undetected(tally);
    }

    /// The index of the outage in progress, if any.
    fn in_progress(&self) -> Option<usize> {
        (self.boundary % 2 == 1).then_some(self.boundary / 2)
    }

    /// An outage that ended undetected and that no running streak can
    /// detect any more is missed.
    fn judge_undetected(&mut self, tally: &mut PolicyTally) {
        if self.undetected.take().is_some() {
            tally.missed += 1;
        }
    }

    /// Settle every outage boundary at or before probe `tick` (an outage
    /// starting at `tick` contains it; one ending at `tick` does not).
    fn advance(&mut self, tick: u64, outages: &[TickOutage], tally: &mut PolicyTally) {
        while let Some(outage) = outages.get(self.boundary / 2) {
            if self.boundary % 2 == 0 {
                if outage.start_tick > tick {
                    return;
                }
                // A new outage: the last one can no longer be detected, and
                // an unobserved recovery of it is lost.
                self.judge_undetected(tally);
                self.recovering = None;
                self.detected = self.published;
                if self.published {
                    tally.already_failed += 1;
                }
            } else {
                if outage.end_tick > tick {
                    return;
                }
                if !self.detected {
                    self.undetected = Some(self.boundary / 2);
                } else if self.published {
                    self.recovering = Some(self.boundary / 2);
                }
            }
            self.boundary += 1;
        }
    }
}
