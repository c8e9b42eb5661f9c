//! Failover: the lease thread. It drives the pure
//! [`healthprobe_core::lease::LeaseMachine`] over a [`LeaseTable`] (its own
//! database connection): heartbeats every `renew`, acquires what the machine
//! wants, leaves the membership at exit. The tick side reads the machine's
//! view through [`Leases`] (no I/O, a lock held for microseconds) and
//! reports its progress and releases there; it writes and releases shards
//! through its own [`crate::driver::ports::ShardStore`], so a slow lease
//! statement never holds up a tick, nor a slow tick a renewal.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use healthprobe_core::lease::{
    LeaseAction, LeaseConfig, LeaseConfigError, LeaseMachine, LeaseView, ShardLease,
};
use prometheus_client::metrics::counter::Counter;
use tracing::{info, warn};

use crate::driver::ports::{Clock, LeaseTable};

/// The lease machine shared by the lease thread and the tick side.
#[derive(Clone)]
pub struct Leases(Arc<Shared>);

struct Shared {
    machine: Mutex<LeaseMachine>,
    /// Leases the tick side gave back, to release on the lease thread.
    releases: Mutex<Vec<ShardLease>>,
    /// Wakes the lease thread early (at shutdown).
    wake: Condvar,
    clock: Arc<dyn Clock>,
    counts: LeaseCounts,
}

/// What the lease thread did: counters the metrics expose.
#[derive(Debug, Default, Clone)]
#[non_exhaustive]
pub struct LeaseCounts {
    /// Heartbeats answered.
    pub renewals: Counter,
    /// Heartbeats that failed (the database down or slow).
    pub renewal_failures: Counter,
    /// Shards taken by an acquire (each a new epoch).
    pub acquired: Counter,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("config", self.lock().config())
            .finish_non_exhaustive()
    }
}

impl Leases {
    /// A lease machine for `config`, its time read from `clock`.
    pub fn new(config: LeaseConfig, clock: Arc<dyn Clock>) -> Result<Self, LeaseConfigError> {
        let machine = LeaseMachine::new(config, clock.monotonic())?;
        Ok(Self(Arc::new(Shared {
            machine: Mutex::new(machine),
            releases: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            clock,
            counts: LeaseCounts::default(),
        })))
    }

    /// The shard count.
    pub fn shards(&self) -> u32 {
        self.lock().config().shards
    }

    /// What the tick side may act on now (L1).
    pub fn view(&self) -> LeaseView {
        let now = self.0.clock.monotonic();
        self.lock().view(now)
    }

    /// The tick side gives these leases back (their last write is done):
    /// the lease thread releases them before its next request, and the
    /// machine forgets them as it sends the release, so no heartbeat's
    /// answer can bring them back.
    pub fn release(&self, leases: Vec<ShardLease>) {
        self.queued().extend(leases);
        let _machine = self.lock();
        self.0.wake.notify_all();
    }

    /// A tick finished (the liveness gate, L5).
    pub fn progress(&self) {
        let now = self.0.clock.monotonic();
        self.lock().handle_tick_progress(now);
    }

    /// The lease thread's counts.
    pub fn counts(&self) -> &LeaseCounts {
        &self.0.counts
    }

    /// Start the lease thread over `table`.
    pub fn spawn(&self, table: Box<dyn LeaseTable>) -> std::io::Result<Coordinator> {
        let leases = self.clone();
        let thread = std::thread::Builder::new()
            .name("healthprobe-leases".to_owned())
            .spawn(move || leases.drive(table))?;
        Ok(Coordinator {
            leases: self.clone(),
            thread: Some(thread),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LeaseMachine> {
        self.0
            .machine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The lease thread: perform the machine's actions until it stops.
    fn drive(&self, mut table: Box<dyn LeaseTable>) {
        loop {
            self.release_queued(table.as_mut());
            let mut machine = self.lock();
            let now = self.0.clock.monotonic();
            match machine.poll_action(now) {
                Some(LeaseAction::Heartbeat) => {
                    drop(machine);
                    let reply = table.heartbeat();
                    let counts = &self.0.counts;
                    match &reply {
                        Ok(_) => counts.renewals.inc(),
                        Err(reason) => {
                            warn!(%reason, "lease heartbeat failed; acting on held shards only until their self-fence");
                            counts.renewal_failures.inc()
                        }
                    };
                    self.lock().handle_heartbeat(reply.map_err(drop));
                }
                Some(LeaseAction::Acquire { want }) => {
                    drop(machine);
                    let taken = table.acquire(want);
                    match &taken {
                        Ok(taken) if !taken.is_empty() => {
                            info!(shards = %leases_text(taken), "shards acquired");
                            let count = u64::try_from(taken.len()).unwrap_or(u64::MAX);
                            self.0.counts.acquired.inc_by(count);
                        }
                        Ok(_) => {}
                        Err(reason) => warn!(%reason, "cannot acquire shards"),
                    }
                    self.lock().handle_acquired(taken.map_err(drop));
                }
                // A release queued meanwhile is sent first (woken by `release`).
                Some(LeaseAction::Wait { until }) if self.queued().is_empty() => {
                    let timeout = until.saturating_sub(now);
                    drop(self.0.wake.wait_timeout(machine, timeout));
                }
                Some(LeaseAction::Wait { .. }) => {}
                // Never with one request at a time on this thread.
                None => drop(self.0.wake.wait_timeout(machine, Duration::from_millis(10))),
                Some(LeaseAction::Stop) => {
                    // What the tick side gave back, then any lease taken
                    // after its last tick (never loaded, so nothing of it
                    // is lost): a survivor takes them at once.
                    self.queued().extend(machine.held());
                    drop(machine);
                    self.release_queued(table.as_mut());
                    if let Err(reason) = table.leave() {
                        warn!(%reason, "cannot leave the lease table's members; the entry expires with its TTL");
                    }
                    return;
                }
            }
        }
    }

    fn queued(&self) -> MutexGuard<'_, Vec<ShardLease>> {
        self.0
            .releases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Release what the tick side gave back, forgotten by the machine as
    /// the request goes (between two of its own requests).
    fn release_queued(&self, table: &mut dyn LeaseTable) {
        let mut releases = std::mem::take(&mut *self.queued());
        releases.sort_unstable();
        releases.dedup();
        if releases.is_empty() {
            return;
        }
        self.lock().handle_released(&releases);
        let shards = leases_text(&releases);
        match table.release(&releases) {
            Ok(()) => info!(%shards, "shards released"),
            Err(reason) => warn!(
                %shards,
                %reason,
                "cannot release shards; they pass to another instance when their lease runs out"
            ),
        }
    }
}

fn leases_text(leases: &[ShardLease]) -> String {
    let texts: Vec<String> = leases
        .iter()
        .map(|lease| format!("{}@{}", lease.shard, lease.epoch))
        .collect();
    texts.join(",")
}

/// The running lease thread; [`Coordinator::stop`] ends it.
#[derive(Debug)]
pub struct Coordinator {
    leases: Leases,
    thread: Option<JoinHandle<()>>,
}

impl Coordinator {
    /// Renew and acquire nothing more, leave the membership, and wait for
    /// the thread (after the tick side released its shards).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.leases.lock().handle_shutdown();
        self.leases.0.wake.notify_all();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            warn!("the lease thread panicked");
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.shutdown();
    }
}
