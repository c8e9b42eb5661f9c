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

/// Run `command` once with its standard output captured and panic unless
/// it succeeds without a `probe_failed` event there (both `healthprobe run`
/// and the reference print their events on standard output): a bench of
/// a healthy fleet that is not all healthy (trust not handed over, an
/// engine not up) would time failures instead. Standard output is thrown
/// away again afterwards.
pub fn expect_all_healthy(command: &mut Command) {
    let output = command
        .stdout(Stdio::piped())
        .output()
        .expect("start the command");
    command.stdout(Stdio::null());
    assert!(output.status.success(), "{command:?}: {}", output.status);
    let events = String::from_utf8_lossy(&output.stdout);
    assert!(
        !events.contains("probe_failed"),
        "{command:?} found engines failing on a healthy fleet:\n{}",
        events.lines().take(3).collect::<Vec<_>>().join("\n")
    );
}

/// The median of `values` (sorts them).
pub fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}
