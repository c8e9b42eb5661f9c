//! Connection reuse (`run --reuse-connections`): the bounded pool of idle
//! engine connections both probers keep between ticks, and the rules they
//! share.
//!
//! - One idle connection per engine (its scheme and authority); the pool
//!   holds at most [`ConnectionReuse::max_idle`] of them, and the least
//!   recently used one is closed first when a new one needs room.
//! - A connection goes back to the pool only when its response was cleanly
//!   reusable: a keep-alive response (no `Connection: close`, not
//!   HTTP/1.0 without keep-alive) whose body was read to its end within
//!   [`DRAIN_LIMIT`] bytes, [`DRAIN_WAIT`] and the probe timeout. Anything
//!   else — an error, a bigger, slower or unfinished body, a close — closes it.
//! - A probe over a reused connection that the engine had closed (end of
//!   stream or a reset before any response byte, see `closed_before_answer`)
//!   is retried once, on a fresh connection, inside what is left of the same
//!   probe timeout, as Go's transport retries an idempotent request. Any
//!   other failure is the probe's outcome.
//!
//! A reused connection does not exercise the engine's accept path (nor,
//! over TLS, its handshake and certificate): the README says when that
//! trade-off is worth it.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Largest response body read (and discarded) so that the connection can be
/// reused; a bigger one closes the connection instead. Health bodies are a
/// few bytes (`ok`).
pub const DRAIN_LIMIT: u64 = 4 * 1024;

/// Longest a probe waits, once its status is known, for the rest of the
/// body (up to [`DRAIN_LIMIT`]): a body slower than that closes the
/// connection instead of holding the probe (and its slot) until the probe
/// timeout. Health bodies come with the head.
pub const DRAIN_WAIT: Duration = Duration::from_millis(100);

/// How reused connections are kept (`run --reuse-connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionReuse {
    /// Most idle connections kept between ticks, all engines together.
    pub max_idle: usize,
}

impl ConnectionReuse {
    /// The default bound on idle connections: with the probes in flight
    /// (16 threads, 512 tasks) and the process's own files it stays inside
    /// the usual soft limit of 1,024 open files, which the CLI raises to
    /// the hard limit, as Go does, when reuse is on.
    pub const DEFAULT_MAX_IDLE: usize = 400;
}

impl Default for ConnectionReuse {
    fn default() -> Self {
        Self {
            max_idle: Self::DEFAULT_MAX_IDLE,
        }
    }
}

/// Whether an I/O error means the engine had closed the connection before
/// it sent any byte of an answer: end of stream, a reset, an abort, or a
/// broken pipe while the request was being sent. On a reused connection
/// such a failure is retried once on a fresh one.
pub(crate) fn closed_before_answer(err: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        err.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    )
}

/// The pool key of an engine: its scheme and authority, lowercased (the
/// pool is per engine address, not per URL).
pub(crate) fn pool_key(scheme: &str, authority: &str) -> String {
    let mut key = String::with_capacity(scheme.len() + 3 + authority.len());
    key.push_str(scheme);
    key.push_str("://");
    key.push_str(authority);
    key.make_ascii_lowercase();
    key
}

/// Idle connections by engine, bounded, least recently used evicted first.
///
/// Shared by every probe (a mutex around two maps: a take or a put is
/// `O(log n)`), so one engine's connection can be taken by whichever
/// probe thread or task probes it next.
#[derive(Debug)]
pub(crate) struct IdlePool<T> {
    inner: Mutex<Lru<T>>,
}

#[derive(Debug)]
struct Lru<T> {
    capacity: usize,
    /// Key → (its stamp in `order`, the idle connection).
    by_key: HashMap<String, (u64, T)>,
    /// Stamp → key, oldest first.
    order: BTreeMap<u64, String>,
    next_stamp: u64,
}

impl<T> IdlePool<T> {
    /// A pool holding at most `capacity` idle connections (0 keeps none).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Lru {
                capacity,
                by_key: HashMap::new(),
                order: BTreeMap::new(),
                next_stamp: 0,
            }),
        }
    }

    /// Take the idle connection of `key`, if there is one.
    pub(crate) fn take(&self, key: &str) -> Option<T> {
        let mut lru = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (stamp, value) = lru.by_key.remove(key)?;
        lru.order.remove(&stamp);
        Some(value)
    }

    /// Keep `value` as the idle connection of `key`. Returns what no longer
    /// fits — an older connection of the same key, or the least recently
    /// used ones — for the caller to close outside the lock.
    pub(crate) fn put(&self, key: String, value: T) -> Vec<T> {
        let mut lru = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut closed = Vec::new();
        if lru.capacity == 0 {
            closed.push(value);
            return closed;
        }
        let stamp = lru.next_stamp;
        lru.next_stamp += 1;
        if let Some((old_stamp, old)) = lru.by_key.remove(&key) {
            lru.order.remove(&old_stamp);
            closed.push(old);
        }
        while lru.by_key.len() >= lru.capacity {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            if let Some((_, value)) = lru.by_key.remove(&oldest) {
                closed.push(value);
            }
        }
        lru.order.insert(stamp, key.clone());
        lru.by_key.insert(key, (stamp, value));
        closed
    }

    /// The most idle connections it holds.
    #[cfg(feature = "async")]
    pub(crate) fn capacity(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .capacity
    }

    /// Idle connections held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_key
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_idle_connection_per_engine_the_newest_kept() {
        let pool = IdlePool::new(4);
        assert!(pool.put("a".into(), 1).is_empty());
        assert_eq!(pool.put("a".into(), 2), [1]);
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.take("a"), Some(2));
        assert_eq!(pool.take("a"), None);
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn the_least_recently_used_is_closed_first() {
        let pool = IdlePool::new(2);
        assert!(pool.put("a".into(), 1).is_empty());
        assert!(pool.put("b".into(), 2).is_empty());
        // "a" is used again: "b" is now the oldest.
        let a = pool.take("a").expect("a");
        assert!(pool.put("a".into(), a).is_empty());
        assert_eq!(pool.put("c".into(), 3), [2]);
        assert_eq!(pool.take("b"), None);
        assert_eq!(pool.take("a"), Some(1));
        assert_eq!(pool.take("c"), Some(3));
    }

    #[test]
    fn a_pool_of_zero_keeps_nothing() {
        let pool = IdlePool::new(0);
        assert_eq!(pool.put("a".into(), 1), [1]);
        assert_eq!(pool.take("a"), None);
    }

    #[test]
    fn keys_are_the_lowercased_scheme_and_authority() {
        assert_eq!(pool_key("HTTP", "Engine:80"), "http://engine:80");
        assert_ne!(
            pool_key("http", "127.0.0.1:1"),
            pool_key("https", "127.0.0.1:1")
        );
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
