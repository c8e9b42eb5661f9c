//! Which connections probes keep between ticks (`run --connections`), and
//! the rules both probers share about them.
//!
//! - [`Connections::Auto`] (the default) keeps connections to `https://`
//!   engines, as the reference does (Go speaks HTTP/2 to them and keeps the
//!   connection), and opens a fresh one, asking `Connection: close`, for
//!   every probe of an `http://` engine, as the reference does there.
//!   [`Connections::Fresh`] and [`Connections::Keep`] force either.
//! - A kept connection lives in the stock client's own pool (ureq's, or
//!   hyper-util's), at most one idle per engine, for [`ConnectionPolicy::idle_timeout`].
//! - At most [`ConnectionPolicy::max_idle`] connections are kept at once,
//!   idle or in use, all engines together (`KeptBudget`); its default is
//!   what the open-file limit leaves beside the probes in flight. A
//!   connection made while that many are kept is used once and closed:
//!   a fleet larger than the bound keeps the connections it has and probes
//!   the rest afresh, and the run says so once in the log. (A pool that
//!   evicted its least recently used connection instead would close each
//!   one just before its engine came round again, in a sweep, and keep
//!   none.)
//! - A kept connection goes back to the pool only after a keep-alive
//!   answer whose body was read to its end within `DRAIN_LIMIT` bytes and
//!   `DRAIN_WAIT`; any other answer closes it.
//! - A probe over a kept connection that the engine had closed (end of
//!   stream or a reset before any byte of an answer, `closed_before_answer`)
//!   goes again, once, on a fresh connection, inside what is left of the
//!   same probe timeout, as Go's transport retries an idempotent request.
//!   Any other failure is the probe's outcome.
//!
//! A kept connection does not exercise the engine's accept path (nor, over
//! TLS, its handshake and certificate): the README says when that
//! trade-off is worth it.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tracing::warn;

/// Largest response body read (and discarded) so that the connection can be
/// kept; a bigger one closes the connection instead. Health bodies are a
/// few bytes (`ok`).
pub(crate) const DRAIN_LIMIT: u64 = 4 * 1024;

/// Longest a probe waits, once its status is known, for the rest of the
/// body (up to [`DRAIN_LIMIT`]): a body slower than that closes the
/// connection instead of holding the probe (and its slot) until the probe
/// timeout. Health bodies come with the head.
pub(crate) const DRAIN_WAIT: Duration = Duration::from_millis(100);

/// Files the process needs besides its probes' sockets: the state, journal
/// and lock files, logs, the metrics listener, a database connection, ...
pub(crate) const RESERVED_FILES: u64 = 64;

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
    /// Whether a probe of an engine whose endpoint is `https://` (or not)
    /// keeps its connection.
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
    pub(crate) const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

    /// `connections` for a worker ticking every `interval` with at most
    /// `max_concurrency` probes in flight: kept connections stay idle up to
    /// two intervals (at least `Self::MIN_IDLE_TIMEOUT`), so every tick
    /// finds them and a game that left the fleet has its connection closed
    /// soon after; as many are kept as the open-file soft limit leaves
    /// beside the probes in flight and `RESERVED_FILES` (the CLI raises
    /// the soft limit to the hard one first).
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

    /// [`ConnectionPolicy::new`] with every connection fresh.
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
        Arc::new(Self {
            kept: AtomicUsize::new(0),
            max,
            warned: AtomicBool::new(false),
        })
    }

    /// A place for one more kept connection, if the bound leaves one: the
    /// connection may be kept while it holds the place. Without one the
    /// connection is used once and closed, and the first time that happens
    /// the run says so.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<KeptPlace> {
        let admitted = self
            .kept
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |kept| {
                (kept < self.max).then_some(kept + 1)
            })
            .is_ok();
        if admitted {
            return Some(KeptPlace(Arc::clone(self)));
        }
        if !self.warned.swap(true, Ordering::Relaxed) {
            warn!(
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
/// it sent any byte of an answer: end of stream, a reset, an abort, or a
/// broken pipe while the request was being sent. On a kept connection such
/// a failure is retried once on a fresh one.
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
