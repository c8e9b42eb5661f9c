//! In-memory adapters: cloneable handles for library users and tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use healthprobe_core::{EventType, HealthEvent, Outgoing, Timestamp};

use crate::driver::ports::{
    Clock, HealthEventPublisher, ListError, PublishError, RuntimeRecord, RuntimeRecordStore,
    Telemetry,
};

/// Lock a mutex whose data stays valid even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A record store in memory; clones share the records.
///
/// Non-`running` records are ignored when listing, as in the records file.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<StoreInner>>,
}

#[derive(Debug, Default)]
struct StoreInner {
    records: Vec<RuntimeRecord>,
    fail_next: usize,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `records`.
    pub fn with_records(records: Vec<RuntimeRecord>) -> Self {
        let store = Self::new();
        store.set(records);
        store
    }

    /// Replace every record; the next listing sees them.
    pub fn set(&self, records: Vec<RuntimeRecord>) {
        lock(&self.inner).records = records;
    }

    /// Make the next `n` listings fail (R9).
    pub fn fail_next(&self, n: usize) {
        lock(&self.inner).fail_next = n;
    }
}

impl RuntimeRecordStore for MemoryStore {
    fn list_running(&mut self) -> Result<Vec<RuntimeRecord>, ListError> {
        let mut inner = lock(&self.inner);
        if inner.fail_next > 0 {
            inner.fail_next -= 1;
            return Err(ListError::Unavailable(
                "memory store: simulated listing failure".to_owned(),
            ));
        }
        Ok(inner
            .records
            .iter()
            .filter(|record| record.is_running())
            .cloned()
            .collect())
    }
}

/// A publisher that keeps events in memory; clones share them.
#[derive(Debug, Clone, Default)]
pub struct MemoryPublisher {
    inner: Arc<Mutex<PublisherInner>>,
}

#[derive(Debug, Default)]
struct PublisherInner {
    events: Vec<HealthEvent>,
    fail_next: usize,
    failing: bool,
    fail_every: u64,
    fail_every_from: u64,
    attempts: u64,
}

impl MemoryPublisher {
    /// A publisher with no event yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event delivered so far, in order.
    pub fn events(&self) -> Vec<HealthEvent> {
        lock(&self.inner).events.clone()
    }

    /// Every event delivered so far, leaving none.
    pub fn take_events(&self) -> Vec<HealthEvent> {
        std::mem::take(&mut lock(&self.inner).events)
    }

    /// Refuse every event until set back to `false`.
    pub fn fail(&self, failing: bool) {
        lock(&self.inner).failing = failing;
    }

    /// Refuse the next `n` events.
    pub fn fail_next(&self, n: usize) {
        lock(&self.inner).fail_next = n;
    }

    /// Refuse every `n`-th call from now on (the `n`-th, `2n`-th, ... after
    /// this one); `n` of 0 or 1 turns this off. `fail_every(2)` refuses every
    /// other call, starting with the second.
    pub fn fail_every(&self, n: u64) {
        let mut inner = lock(&self.inner);
        inner.fail_every = if n > 1 { n } else { 0 };
        inner.fail_every_from = inner.attempts;
    }

    /// Calls to `publish` so far, refused ones included.
    pub fn attempts(&self) -> u64 {
        lock(&self.inner).attempts
    }
}

impl HealthEventPublisher for MemoryPublisher {
    fn publish(&mut self, event: &Outgoing) -> Result<(), PublishError> {
        let mut inner = lock(&self.inner);
        inner.attempts += 1;
        let every = inner.fail_every > 1
            && (inner.attempts - inner.fail_every_from) % inner.fail_every == 0;
        if inner.failing || inner.fail_next > 0 || every {
            inner.fail_next = inner.fail_next.saturating_sub(1);
            return Err(PublishError::Unavailable(
                "memory publisher: simulated publish failure".to_owned(),
            ));
        }
        inner.events.push(event.event.clone());
        Ok(())
    }
}

/// Counts delivered events by type; clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct CountingTelemetry {
    counts: Arc<[AtomicU64; 2]>,
}

impl CountingTelemetry {
    /// Counts at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Delivered events of `event_type` so far.
    pub fn count(&self, event_type: EventType) -> u64 {
        self.counts[event_type as usize].load(Ordering::Relaxed)
    }

    /// Delivered events of both types so far.
    pub fn total(&self) -> u64 {
        self.count(EventType::ProbeFailed) + self.count(EventType::ProbeRecovered)
    }
}

impl Telemetry for CountingTelemetry {
    fn record_event(&mut self, event_type: EventType) {
        self.counts[event_type as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// A clock that moves only when told; clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<Timestamp>>,
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Set the time.
    pub fn set(&self, now: Timestamp) {
        *lock(&self.now) = now;
    }

    /// Move the time forward by `by` (saturating at the largest timestamp).
    pub fn advance(&self, by: Duration) {
        let mut now = lock(&self.now);
        *now = now.checked_add(by).unwrap_or(Timestamp::MAX);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *lock(&self.now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_lists_running_rows_and_fails_on_demand() {
        let store = MemoryStore::with_records(vec![
            RuntimeRecord::running("g1", "c1", "e1"),
            RuntimeRecord {
                status: "stopped".into(),
                ..RuntimeRecord::running("g2", "c2", "e2")
            },
        ]);
        let mut worker_side = store.clone();
        assert_eq!(worker_side.list_running().expect("listed").len(), 1);
        store.fail_next(2);
        assert!(worker_side.list_running().is_err());
        assert!(worker_side.list_running().is_err());
        assert!(worker_side.list_running().is_ok());
    }

    #[test]
    fn counting_telemetry_counts_by_type() {
        let telemetry = CountingTelemetry::new();
        let mut worker_side = telemetry.clone();
        worker_side.record_event(EventType::ProbeFailed);
        worker_side.record_event(EventType::ProbeFailed);
        worker_side.record_event(EventType::ProbeRecovered);
        assert_eq!(telemetry.count(EventType::ProbeFailed), 2);
        assert_eq!(telemetry.count(EventType::ProbeRecovered), 1);
        assert_eq!(telemetry.total(), 3);
    }

    #[test]
    fn manual_clock_moves_when_told() {
        let start = Timestamp::from_second(100).expect("valid");
        let clock = ManualClock::new(start);
        clock.advance(Duration::from_secs(5));
        assert_eq!(clock.now(), Timestamp::from_second(105).expect("valid"));
        clock.advance(Duration::MAX);
        assert_eq!(clock.now(), Timestamp::MAX);
    }
}
