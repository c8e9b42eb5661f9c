//! Whole-process runs for the benches that time `healthprobe run` and
//! `refrun` from outside (`tls`, `reuse`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `command` with no input, its output thrown away, and no inherited
/// `SSL_CERT_FILE` (a bench sets the trust it means).
pub fn quiet(mut command: Command) -> Command {
    command
        .env_remove("SSL_CERT_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Run `command` to the end: its wall time and its CPU time (user +
/// system, [`crate::cpu_time::children_cpu_time`]). Panics unless it succeeds.
pub fn run(command: &mut Command) -> (Duration, Duration) {
    let cpu_before = crate::cpu_time::children_cpu_time();
    let started = Instant::now();
    let status = command.status().expect("start the command");
    let wall = started.elapsed();
    assert!(status.success(), "{command:?}: {status}");
    (wall, crate::cpu_time::children_cpu_time() - cpu_before)
}

/// The median of `values` (sorts them).
pub fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}
