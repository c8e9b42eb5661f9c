//! Which connections probes keep between ticks (`run --connections`), and
//! the rules both probers share about them. A kept connection lives in the
//! stock client's own pool, one idle per engine; at most
//! [`ConnectionPolicy::max_idle`] are kept at once (`KeptBudget`), and one
//! made beyond that is used once and closed: an LRU pool would close each
//! just before its engine came round again, and keep none. A kept
//! connection the engine had closed is retried once on a fresh one, inside
//! the same probe timeout, as Go's transport retries an idempotent request.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Largest response body read (and discarded) to keep its connection.
pub(crate) const DRAIN_LIMIT: u64 = 4 * 1024;

/// Longest a probe waits, once its status is known, for the rest of the
/// body: a slower one closes the connection rather than hold the slot.
pub(crate) const DRAIN_WAIT: Duration = Duration::from_millis(100);

/// Files the process needs besides its probes' sockets: the state, journal
/// and lock files, logs, the metrics listener, a database connection, ...
const RESERVED_FILES: u64 = 64;

/// Which connections are kept between ticks (`run --connections`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Connections {
    /// Keep connections to `https://` engines, a fresh one per probe for
    /// `http://` engines: what the reference does.
    #[default]
    Auto,
    /// A fresh connection for every probe, closed after it.
    Fresh,
    /// Keep connections to every engine.
    Keep,
}

impl Connections {
    /// Whether a probe of an `https://` engine (or not) keeps its connection.
    pub(crate) fn keeps(self, https: bool) -> bool {
        match self {
            Self::Auto => https,
            Self::Fresh => false,
            Self::Keep => true,
        }
    }
}

/// How a prober treats connections: which it keeps, how many, how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionPolicy {
    /// Which connections are kept.
    pub connections: Connections,
    /// Most connections kept at once (idle or in use), all engines together.
    pub max_idle: usize,
    /// How long a kept connection may stay idle before it is closed.
    pub idle_timeout: Duration,
}

impl ConnectionPolicy {
    /// Go's `IdleConnTimeout`, and hyper-util's: the shortest idle timeout.
    const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

    /// `connections` for a worker ticking every `interval` with at most
    /// `max_concurrency` probes in flight: idle up to two intervals (at least
    /// 90 s), as many as the open-file soft limit leaves beside the probes
    /// in flight and the process's own files.
    pub fn new(connections: Connections, interval: Duration, max_concurrency: usize) -> Self {
        use rustix::process::{Resource, getrlimit};
        let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
        let room = soft.saturating_sub((max_concurrency as u64).saturating_add(RESERVED_FILES));
        Self {
            connections,
            max_idle: usize::try_from(room).unwrap_or(usize::MAX),
            idle_timeout: interval.saturating_mul(2).max(Self::MIN_IDLE_TIMEOUT),
        }
    }

    /// Every connection fresh.
    pub fn fresh() -> Self {
        Self {
            connections: Connections::Fresh,
            max_idle: 0,
            idle_timeout: Self::MIN_IDLE_TIMEOUT,
        }
    }
}

/// Counts the kept connections alive, idle or in use, against
/// [`ConnectionPolicy::max_idle`]; shared by every probe of a prober.
#[derive(Debug)]
pub(crate) struct KeptBudget {
    kept: AtomicUsize,
    max: usize,
    warned: AtomicBool,
}

impl KeptBudget {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        let (kept, warned) = (AtomicUsize::new(0), AtomicBool::new(false));
        Arc::new(Self { kept, max, warned })
    }

    /// A place for one more kept connection, if the bound leaves one (the
    /// first refusal is logged).
    pub(crate) fn admit(self: &Arc<Self>) -> Option<KeptPlace> {
        let room = |kept| (kept < self.max).then_some(kept + 1);
        if self
            .kept
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, room)
            .is_ok()
        {
            return Some(KeptPlace(Arc::clone(self)));
        }
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                kept_connections = self.max,
                "more engines than the open-file limit leaves connections for: {} connections \
                 are kept and the other engines are probed on fresh connections (raise the \
                 open-file hard limit, or shard the fleet with --shard)",
                self.max
            );
        }
        None
    }
}

/// A kept connection's place in its [`KeptBudget`], given back when dropped.
#[derive(Debug)]
pub(crate) struct KeptPlace(Arc<KeptBudget>);

impl Drop for KeptPlace {
    fn drop(&mut self) {
        self.0.kept.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether an I/O error means the engine had closed the connection before
/// any byte of an answer (retried once on a fresh connection).
pub(crate) fn closed_before_answer(err: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        err.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_keeps_https_connections_only() {
        assert!(Connections::Auto.keeps(true));
        assert!(!Connections::Auto.keeps(false));
        for https in [false, true] {
            assert!(!Connections::Fresh.keeps(https));
            assert!(Connections::Keep.keeps(https));
        }
    }

    #[test]
    fn the_budget_admits_up_to_its_bound_and_takes_places_back() {
        let budget = KeptBudget::new(2);
        let first = budget.admit().expect("room for one");
        let second = budget.admit().expect("room for two");
        assert!(budget.admit().is_none(), "full");
        drop(first);
        let third = budget.admit().expect("a place given back");
        assert!(budget.admit().is_none());
        drop((second, third));
        assert!(KeptBudget::new(0).admit().is_none());
    }

    #[test]
    fn idle_connections_outlive_two_intervals_and_go_s_timeout() {
        let policy = ConnectionPolicy::new(Connections::Keep, Duration::from_secs(5), 16);
        assert_eq!(policy.idle_timeout, Duration::from_secs(90));
        let slow = ConnectionPolicy::new(Connections::Keep, Duration::from_secs(60), 16);
        assert_eq!(slow.idle_timeout, Duration::from_secs(120));
    }

    #[test]
    fn only_an_early_close_is_retried() {
        use io::ErrorKind::*;
        for kind in [
            UnexpectedEof,
            ConnectionReset,
            ConnectionAborted,
            BrokenPipe,
        ] {
            assert!(closed_before_answer(&kind.into()), "{kind:?}");
        }
        for kind in [TimedOut, WouldBlock, ConnectionRefused, InvalidData, Other] {
            assert!(!closed_before_answer(&kind.into()), "{kind:?}");
        }
    }
}
