//! The worker's settings and their validation (R11).

use std::time::Duration;

use healthprobe_core::Policy;
use healthprobe_core::shard::Shard;

/// How often and how hard the worker probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Time between the starts of two ticks (R13).
    pub interval: Duration,
    /// Bound on one whole probe: resolve, connect, send, response headers (R10).
    pub probe_timeout: Duration,
    /// Consecutive failures that publish `probe_failed` (R4).
    pub failures_threshold: u32,
    /// Consecutive successes, after `probe_failed`, that publish `probe_recovered` (D1).
    pub recovery_threshold: u32,
    /// Most probes in flight at once (R10).
    pub max_concurrency: usize,
    /// Stop after this many ticks, run back to back (`--ticks N`); `None`
    /// ticks once per interval until shutdown.
    pub tick_limit: Option<u64>,
    /// The games this worker owns (`--shard I/N`); [`Shard::ALL`] by default.
    pub shard: Shard,
}

impl WorkerConfig {
    /// The reference worker's interval.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
    /// The reference worker's probe timeout.
    pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
    /// The reference worker's concurrency cap.
    pub const DEFAULT_MAX_CONCURRENCY: usize = 16;

    /// Check that every field is positive (R11); the error names the first
    /// bad one. The thresholds are the core's to check ([`Policy::new`]).
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.interval.is_zero() {
            return Err(ConfigError::ZeroInterval);
        }
        if self.probe_timeout.is_zero() {
            return Err(ConfigError::ZeroProbeTimeout);
        }
        self.policy()?;
        if self.max_concurrency == 0 {
            return Err(ConfigError::ZeroMaxConcurrency);
        }
        Ok(())
    }

    /// The hysteresis policy these settings give the core.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        Policy::new(self.failures_threshold, self.recovery_threshold).map_err(|err| match err {
            healthprobe_core::PolicyError::ZeroFailuresThreshold => {
                ConfigError::ZeroFailuresThreshold
            }
            healthprobe_core::PolicyError::ZeroRecoveryThreshold => {
                ConfigError::ZeroRecoveryThreshold
            }
        })
    }
}

impl Default for WorkerConfig {
    /// The reference worker's settings: 5 s, 2 s, 3 failures, 1 success,
    /// 16 probes; no tick limit, every game.
    fn default() -> Self {
        Self {
            interval: Self::DEFAULT_INTERVAL,
            probe_timeout: Self::DEFAULT_PROBE_TIMEOUT,
            failures_threshold: Policy::DEFAULT_FAILURES_THRESHOLD,
            recovery_threshold: Policy::DEFAULT_RECOVERY_THRESHOLD,
            max_concurrency: Self::DEFAULT_MAX_CONCURRENCY,
            tick_limit: None,
            shard: Shard::ALL,
        }
    }
}

/// How a tick fans its probes out; the state, the outbox, the state file
/// and the journal are the same for both (one owner, on the tick's thread).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Runtime {
    /// Blocking probes on threads.
    ///
    /// ureq on up to `max_concurrency` scoped threads, the tick's caller
    /// among them. The default: no runtime to start, and the reference's
    /// behaviour and cost profile.
    #[default]
    Threads,
    /// Probes as tokio tasks.
    ///
    /// On a runtime the worker owns, at most `max_concurrency` in flight; a
    /// hung engine holds a task, not a thread. Needs the `async` cargo
    /// feature (on by default).
    Async,
}

impl Runtime {
    /// The cap on probes in flight when none is configured: 16 for threads
    /// (the reference's), `Runtime::ASYNC_DEFAULT_MAX_CONCURRENCY` for async.
    pub fn default_max_concurrency(self) -> usize {
        match self {
            Self::Threads => WorkerConfig::DEFAULT_MAX_CONCURRENCY,
            Self::Async => Self::ASYNC_DEFAULT_MAX_CONCURRENCY,
        }
    }

    /// The async runtime's default cap: hung engines up to it cost a tick one
    /// probe timeout, and its sockets fit the common open-file soft limit of
    /// 1,024 (benches/README.md has the figures).
    pub(crate) const ASYNC_DEFAULT_MAX_CONCURRENCY: usize = 512;

    /// `threads` or `async`, as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Threads => "threads",
            Self::Async => "async",
        }
    }
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A setting is out of range; the message starts with the field's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `interval` was zero.
    #[error("interval must be positive, got 0s")]
    ZeroInterval,
    /// `probe_timeout` was zero.
    #[error("probe_timeout must be positive, got 0s")]
    ZeroProbeTimeout,
    /// `failures_threshold` was zero.
    #[error("failures_threshold must be positive, got 0")]
    ZeroFailuresThreshold,
    /// `recovery_threshold` was zero.
    #[error("recovery_threshold must be positive, got 0")]
    ZeroRecoveryThreshold,
    /// `max_concurrency` was zero.
    #[error("max_concurrency must be positive, got 0")]
    ZeroMaxConcurrency,
    /// [`Runtime::Async`] was asked of a build without the `async` feature.
    #[error("runtime async is not available: this build has no `async` feature")]
    AsyncUnavailable,
    /// The async runtime could not be started (threads or file descriptors exhausted).
    #[error("runtime async cannot start")]
    AsyncStart,
}

/// Parse a human duration (`500ms`, `2s`, `1m30s`, `1h 5m`); the error is a
/// one-line reason.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("expected a duration such as 500ms, 2s or 1m30s, got nothing".to_owned());
    }
    humantime::parse_duration(text)
        .map_err(|err| format!("{err} (expected a duration such as 500ms, 2s or 1m30s)"))
}

/// [`parse_duration`], refusing zero (R11): `--interval`, `--probe-timeout`.
#[cfg(feature = "cli")]
pub(crate) fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err("must be positive".to_owned()),
        duration => Ok(duration),
    }
}

/// A positive whole number (R11): the thresholds and `--max-concurrency`.
pub fn parse_positive<T>(text: &str) -> Result<T, String>
where
    T: std::str::FromStr<Err: std::fmt::Display> + Default + PartialEq,
{
    match text.parse::<T>() {
        Ok(n) if n == T::default() => Err("must be positive".to_owned()),
        Ok(n) => Ok(n),
        Err(err) => Err(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(change: impl FnOnce(&mut WorkerConfig), expected: Option<ConfigError>) {
        let mut config = WorkerConfig::default();
        change(&mut config);
        assert_eq!(config.validate().err(), expected);
    }

    #[test]
    fn defaults_are_the_reference_settings_and_valid() {
        let config = WorkerConfig::default();
        assert_eq!(config.interval, Duration::from_secs(5));
        assert_eq!(config.probe_timeout, Duration::from_secs(2));
        assert_eq!(config.failures_threshold, 3);
        assert_eq!(config.recovery_threshold, 1);
        assert_eq!(config.max_concurrency, 16);
        check(|_| {}, None);
    }

    #[test]
    fn r11_each_zero_field_is_named() {
        use ConfigError::*;
        check(|c| c.interval = Duration::ZERO, Some(ZeroInterval));
        check(|c| c.probe_timeout = Duration::ZERO, Some(ZeroProbeTimeout));
        check(|c| c.failures_threshold = 0, Some(ZeroFailuresThreshold));
        check(|c| c.recovery_threshold = 0, Some(ZeroRecoveryThreshold));
        check(|c| c.max_concurrency = 0, Some(ZeroMaxConcurrency));
    }

    #[test]
    fn r11_small_positive_values_are_valid() {
        check(
            |c| {
                c.interval = Duration::from_nanos(1);
                c.probe_timeout = Duration::from_nanos(1);
                c.failures_threshold = 1;
                c.recovery_threshold = 1;
                c.max_concurrency = 1;
            },
            None,
        );
    }

    #[test]
    fn policy_follows_the_thresholds() {
        let config = WorkerConfig {
            failures_threshold: 2,
            recovery_threshold: 4,
            ..WorkerConfig::default()
        };
        let policy = config.policy().expect("positive thresholds");
        assert_eq!(policy.failures_threshold(), 2);
        assert_eq!(policy.recovery_threshold(), 4);
    }

    #[test]
    fn durations_parse_in_human_units() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("2s", Duration::from_secs(2)),
            ("1m30s", Duration::from_secs(90)),
            ("1m 30s", Duration::from_secs(90)),
            (" 5s ", Duration::from_secs(5)),
            ("0s", Duration::ZERO),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn bad_durations_are_one_line_errors() {
        for text in ["", "5", "abc", "5 parsecs", "-1s", "1.5.5s"] {
            let err = parse_duration(text).expect_err(text);
            assert!(!err.contains('\n'), "{err}");
            assert!(err.contains("500ms"), "{err}");
        }
    }
}
