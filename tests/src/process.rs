//! A running `healthprobe` process, for CLI end-to-end tests and benches:
//! its output collected as it comes, signals, memory, a bounded wait.

use std::io::{self, BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::binary::healthprobe_binary;
use crate::engine::lock;

/// The environment variables `healthprobe run` reads settings from; removed
/// from every child so that the caller's environment cannot change a test.
pub const SETTINGS_ENV: [&str; 17] = [
    "HEALTHPROBE_HA",
    "HEALTHPROBE_HA_PASSWORD_FILE",
    "HEALTHPROBE_INSTANCE_ID",
    "HEALTHPROBE_RECORDS",
    "HEALTHPROBE_RECORDS_PASSWORD_FILE",
    "HEALTHPROBE_EVENTS",
    "HEALTHPROBE_EVENTS_PASSWORD_FILE",
    "RTMANAGER_PROBE_INTERVAL",
    "RTMANAGER_PROBE_TIMEOUT",
    "RTMANAGER_PROBE_FAILURES_THRESHOLD",
    "RTMANAGER_PROBE_RECOVERY_THRESHOLD",
    "RTMANAGER_PROBE_MAX_CONCURRENCY",
    "HEALTHPROBE_CA_FILE",
    "HEALTHPROBE_TLS_CLIENT_CERT",
    "HEALTHPROBE_TLS_CLIENT_KEY",
    "HEALTHPROBE_REUSE_CONNECTIONS",
    "HEALTHPROBE_MAX_IDLE_CONNECTIONS",
];

/// A `healthprobe` child process. Killed on drop if still running.
#[derive(Debug)]
pub struct HealthprobeProcess {
    child: Child,
    stdout: Arc<Collected>,
    stderr: Arc<Collected>,
    readers: Vec<JoinHandle<()>>,
}

/// How a process ended, and everything it wrote.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to standard output (lossy UTF-8).
    pub stdout: String,
    /// Everything it wrote to standard error (lossy UTF-8).
    pub stderr: String,
}

#[derive(Debug, Default)]
struct Collected {
    text: Mutex<String>,
    changed: Condvar,
}

impl HealthprobeProcess {
    /// `healthprobe` with the settings environment removed and stdin closed.
    pub fn command() -> Command {
        let mut command = Command::new(healthprobe_binary());
        for name in SETTINGS_ENV {
            command.env_remove(name);
        }
        command.env_remove("RUST_LOG").stdin(Stdio::null());
        command
    }

    /// Start `healthprobe args...`.
    pub fn spawn(args: &[&str]) -> io::Result<Self> {
        let mut command = Self::command();
        command.args(args);
        Self::spawn_command(command)
    }

    /// Start `command` (from [`HealthprobeProcess::command`]) with its output collected.
    pub fn spawn_command(mut command: Command) -> io::Result<Self> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = Arc::new(Collected::default());
        let stderr = Arc::new(Collected::default());
        let mut readers = Vec::with_capacity(2);
        if let Some(pipe) = child.stdout.take() {
            readers.push(collect(pipe, Arc::clone(&stdout))?);
        }
        if let Some(pipe) = child.stderr.take() {
            readers.push(collect(pipe, Arc::clone(&stderr))?);
        }
        Ok(Self {
            child,
            stdout,
            stderr,
            readers,
        })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Standard output so far.
    pub fn stdout(&self) -> String {
        lock(&self.stdout.text).clone()
    }

    /// Standard error so far.
    pub fn stderr(&self) -> String {
        lock(&self.stderr.text).clone()
    }

    /// Wait until standard output satisfies `condition`; false on timeout.
    pub fn wait_for_stdout(&self, timeout: Duration, condition: impl FnMut(&str) -> bool) -> bool {
        self.stdout.wait_for(timeout, condition)
    }

    /// Wait until standard error satisfies `condition`; false on timeout.
    pub fn wait_for_stderr(&self, timeout: Duration, condition: impl FnMut(&str) -> bool) -> bool {
        self.stderr.wait_for(timeout, condition)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Send SIGINT, as Ctrl-C does.
    pub fn interrupt(&self) -> io::Result<()> {
        self.signal(libc::SIGINT)
    }

    /// Send SIGTERM.
    pub fn terminate(&self) -> io::Result<()> {
        self.signal(libc::SIGTERM)
    }

    /// Send SIGKILL: the process dies at once, whatever it was doing (a
    /// crash, as far as its files are concerned). Then [`HealthprobeProcess::wait`].
    pub fn kill(&self) -> io::Result<()> {
        self.signal(libc::SIGKILL)
    }

    fn signal(&self, signal: libc::c_int) -> io::Result<()> {
        signal_child(&self.child, signal)
    }

    /// Peak resident set size so far (`VmHWM`), in KiB; `None` once it exited.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_number("VmHWM:")
    }

    /// Resident set size now (`VmRSS`), in KiB; `None` once it exited.
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_number("VmRSS:")
    }

    /// A number field of `/proc/PID/status`, without its `kB`.
    fn status_number(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Wait for the process to exit, at most `timeout`; then all its output.
    /// On timeout the process is killed and the error carries its output.
    pub fn wait(mut self, timeout: Duration) -> Result<Finished, String> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(5));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    self.join_readers();
                    return Err(format!(
                        "still running after {timeout:?}; killed.\nstdout:\n{}\nstderr:\n{}",
                        self.stdout(),
                        self.stderr()
                    ));
                }
                Err(err) => return Err(format!("cannot wait: {err}")),
            }
        };
        self.join_readers();
        Ok(Finished {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        })
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for HealthprobeProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.join_readers();
    }
}

impl Collected {
    fn wait_for(&self, timeout: Duration, mut condition: impl FnMut(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut text = lock(&self.text);
        loop {
            if condition(&text) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            text = self
                .changed
                .wait_timeout(text, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Append each line of `pipe` to `into` as it arrives, until EOF.
fn collect(pipe: impl Read + Send + 'static, into: Arc<Collected>) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("healthprobe-output".to_owned())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        lock(&into.text).push_str(&String::from_utf8_lossy(&line));
                        into.changed.notify_all();
                    }
                }
            }
        })
}

/// Send `signal` to `child` (a test's own server or `healthprobe`).
#[allow(unsafe_code)]
pub(crate) fn signal_child(child: &Child, signal: libc::c_int) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours;
    // the pid is our own child's, not yet reaped (we hold its `Child`).
    let result = unsafe { libc::kill(pid, signal) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
