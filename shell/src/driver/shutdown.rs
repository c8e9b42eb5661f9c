//! [`Shutdown`]: the stop signal a driver, its fan-out and its clock share.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// A cloneable stop signal: trigger it from a signal handler or another thread.
///
/// Waiting is on a condition variable, so a triggered shutdown wakes waiters at once.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<ShutdownInner>,
}

#[derive(Debug, Default)]
struct ShutdownInner {
    triggered: Mutex<bool>,
    changed: Condvar,
}

impl Shutdown {
    /// A handle that is not triggered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask every holder of a clone to stop; waiters wake at once. Idempotent.
    pub fn trigger(&self) {
        let mut triggered = self.lock();
        *triggered = true;
        self.inner.changed.notify_all();
    }

    /// Whether [`Shutdown::trigger`] was called on any clone.
    pub fn is_triggered(&self) -> bool {
        *self.lock()
    }

    /// Wait until triggered or until `timeout` passes; whether it is triggered.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let triggered = self.lock();
        let (triggered, _) = self
            .inner
            .changed
            .wait_timeout_while(triggered, timeout, |triggered| !*triggered)
            .unwrap_or_else(PoisonError::into_inner);
        *triggered
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, bool> {
        // A bool cannot be left half-written: a poisoned lock is still valid.
        self.inner
            .triggered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;

    #[test]
    fn shutdown_wakes_a_waiter_and_stays_triggered() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.is_triggered());
        assert!(!shutdown.wait_timeout(Duration::from_millis(1)));
        let waiter = {
            let shutdown = shutdown.clone();
            thread::spawn(move || shutdown.wait_timeout(Duration::from_secs(3600)))
        };
        shutdown.trigger();
        assert!(waiter.join().expect("waiter thread"));
        assert!(shutdown.is_triggered());
        assert!(shutdown.wait_timeout(Duration::MAX));
    }
}
