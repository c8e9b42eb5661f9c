//! Logs on standard error with `tracing`: readable text or JSON lines.
//! Part of the binary only (`mod logging` in `main.rs`): an embedder of the
//! library installs its own subscriber.

use std::io::{self, IsTerminal};

use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, fields at the top level.
    Json,
}

/// Send `tracing` logs to standard error in `format`, filtered by `RUST_LOG`
/// or else by `default_filter` (for example `info`). Call once.
pub(crate) fn init(format: LogFormat, default_filter: &str) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => text,
        _ => default_filter.to_owned(),
    };
    let filter = EnvFilter::try_new(filter)
        .map_err(|err| format!("RUST_LOG is not a valid log filter: {err}"))?;
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
    result.map_err(|err| format!("logging is already set up: {err}"))
}
