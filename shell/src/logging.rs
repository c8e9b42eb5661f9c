//! Logs on standard error with `tracing`: readable text or JSON lines.

use std::io::{self, IsTerminal};

use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, fields at the top level.
    Json,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `RUST_LOG` is not a valid filter.
    #[error("RUST_LOG is not a valid log filter: {0}")]
    Filter(String),
    /// A global subscriber was already installed.
    #[error("logging is already set up: {0}")]
    AlreadySet(String),
}

/// Send `tracing` logs to standard error in `format`, filtered by `RUST_LOG`
/// or else by `default_filter` (for example `info`).
///
/// Call once, at the start of `main`.
pub fn init(format: LogFormat, default_filter: &str) -> Result<(), LoggingError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => {
            EnvFilter::try_new(&text).map_err(|err| LoggingError::Filter(err.to_string()))?
        }
        _ => EnvFilter::try_new(default_filter)
            .map_err(|err| LoggingError::Filter(err.to_string()))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_env_filter(filter);
    let result = match format {
        LogFormat::Text => builder
            .with_ansi(io::stderr().is_terminal())
            .with_target(false)
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    result.map_err(|err| LoggingError::AlreadySet(err.to_string()))
}
