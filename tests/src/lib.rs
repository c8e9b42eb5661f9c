//! Test fleet of engines on loopback and helpers for integration tests.
//!
//! - [`TestEngine`]: an HTTP/1.1 server on `127.0.0.1:0` whose
//!   [`Behaviour`] (a status, a hang, an abrupt close, a slowloris trickle,
//!   a 200 KB header, a 1 GiB body, garbage, a redirect, a per-request
//!   script) can be changed while it runs; it counts and records what it
//!   receives.
//! - [`Fleet`]: N engines sharing one [`HangGauge`], with the records that
//!   point at them ([`Fleet::records`], [`Fleet::write_records`]).
//! - [`EventFleet`]: N healthy engines on one small tokio runtime, keeping
//!   connections alive as event-loop servers do (the benches' fleets).
//! - [`TestWorker`]: a worker on in-memory adapters and a manual clock,
//!   and [`probe_failed`] / [`probe_recovered`] to spell the expected events.
//! - [`both_runtimes!`]: one test body, run once per [`Runtime`].
//! - [`healthprobe_binary`]: an up-to-date `healthprobe` for CLI tests, and
//!   [`HealthprobeProcess`]: one running, its output collected as it comes,
//!   signals (SIGINT, SIGTERM, SIGKILL), peak memory and a bounded wait.
//! - [`TestPostgres`]: a real PostgreSQL server of its own on loopback
//!   (initdb in a scratch directory; run as the `postgres` user when the
//!   tests run as root), with the `runtime_records` table, stopped and
//!   started again on the same port for outage tests.
//! - [`TestRedis`]: a real `redis-server` on loopback that can be stopped
//!   and restarted on the same port, and the [`StreamEntry`]s it holds.
//! - [`scrape_metrics`]: `GET /metrics` of a running `healthprobe`, parsed
//!   with a Prometheus text parser ([`ScrapedMetrics`]).
//! - [`servers`]: where PostgreSQL and `redis-server` are found (shared
//!   with `cargo xtask test`, which installs them when missing).
//! - [`wait_until`]: poll a condition with a deadline, the only way these
//!   tests wait for something to happen.
//! - [`dump_dom`]: the DOM headless Chromium builds from a page (the status page's test).
//! - [`missing_capability`]: a test that needs what this machine lacks fails
//!   saying what to install, unless `HEALTHPROBE_TEST_ALLOW_SKIP=1`.
//!
//! Every server binds 127.0.0.1 only and stops, freeing its port, on drop.
#![warn(missing_docs)]

mod binary;
mod browser;
mod capability;
mod engine;
mod event_fleet;
mod fleet;
mod postgres;
mod process;
mod proxy;
mod records;
mod redis;
mod scrape;
pub mod servers;
mod test_worker;
mod tls;

use std::time::{Duration, Instant};

pub use binary::{healthprobe_binary, try_healthprobe_binary};
pub use browser::dump_dom;
pub use capability::{ALLOW_SKIP_ENV, missing_capability};
pub use engine::{
    Behaviour, ENGINE_THREAD_STACK, EngineTls, Gate, HUGE_BODY_BYTES, HUGE_HEADER_BYTES, HangGauge,
    KeepAlive, MAX_REQUEST_HEAD, RECENT_REQUESTS, SeenRequest, TRICKLE_PACE, TestEngine,
};
pub use event_fleet::{EventFleet, serve_engine};
pub use fleet::{Fleet, FleetTls};
pub use healthprobe_shell::config::Runtime;
pub use healthprobe_shell::driver::ports::RuntimeRecord;
pub use postgres::TestPostgres;
pub use process::{Finished, HealthprobeProcess, SETTINGS_ENV};
pub use proxy::TcpRelay;
pub use records::{ScratchDir, write_atomically, write_records_file};
pub use redis::{StreamEntry, TestRedis};
pub use scrape::{OPENMETRICS, ScrapedMetrics, http_get, metrics_addr, scrape_metrics};
pub use test_worker::{
    START, TestWorker, at, by_game, expected_events, probe_failed, probe_recovered, script,
    test_config, with_id,
};
pub use tls::{CertifiedKey, TestCa, Validity, write_private};

/// A port free on 127.0.0.1 right now: nothing listens there until
/// something binds it (servers the tests start, or a refused endpoint).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port on 127.0.0.1")
}

/// A port on 127.0.0.1 that refuses every connection for as long as this
/// value lives: a socket is bound to it but never listens, so nothing else
/// can take the port meanwhile (a port merely found free may be given to
/// another server, here or in another test run on the machine, before the
/// probe: it then answers instead of refusing).
#[derive(Debug)]
pub struct RefusedPort {
    _socket: std::os::fd::OwnedFd,
    port: u16,
}

impl RefusedPort {
    /// Bind a fresh one. Panics if the socket cannot be made.
    #[allow(unsafe_code)]
    pub fn new() -> Self {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket calls on a descriptor this function owns,
        // with a zeroed `sockaddr_in` of the right size.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let socket = std::os::fd::OwnedFd::from_raw_fd(fd);
            let mut address: libc::sockaddr_in = std::mem::zeroed();
            address.sin_family = libc::AF_INET as libc::sa_family_t;
            address.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let mut length = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let bound = libc::bind(
                fd,
                std::ptr::addr_of!(address).cast::<libc::sockaddr>(),
                length,
            );
            assert_eq!(bound, 0, "bind: {}", std::io::Error::last_os_error());
            let named = libc::getsockname(
                fd,
                std::ptr::addr_of_mut!(address).cast::<libc::sockaddr>(),
                &mut length,
            );
            assert_eq!(named, 0, "getsockname: {}", std::io::Error::last_os_error());
            Self {
                _socket: socket,
                port: u16::from_be(address.sin_port),
            }
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT/`, an engine endpoint every probe of which is refused.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Default for RefusedPort {
    fn default() -> Self {
        Self::new()
    }
}

/// A bound on the wall time of one probe, tick or publish that only guards
/// against a hang: 15 s, ten times the slowest such step seen on the loaded
/// two-core machine (1.49 s at a load of 9: a tick of four waves of 300 ms
/// timeouts). Timing rules themselves are asserted on a virtual clock
/// (`tests/virtual_time.rs`) or by their mechanism: the timeout error, the
/// outcome, what the engines saw.
pub const HANG_GUARD: Duration = Duration::from_secs(15);

/// Poll `condition` every few milliseconds until it holds (true) or
/// `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Write each test once and run it for both runtimes.
///
/// ```text
/// both_runtimes! {
///     /// R1: only 200 is a success.
///     fn r1_only_status_200_is_a_success(runtime) {
///         let mut worker = TestWorker::with_runtime(runtime, test_config(1, 1), records);
///         // ...
///     }
/// }
/// ```
///
/// expands each `fn name(runtime) { body }` into `mod name` holding the body
/// as `fn case(runtime: Runtime)` and two tests, `name::threads` and
/// `name::async_`, so a failure names its runtime and
/// `cargo test async_` runs only the async variants. The module sees the
/// file's items through `use super::*`.
#[macro_export]
macro_rules! both_runtimes {
    ($( $(#[$meta:meta])* fn $name:ident($runtime:ident) $body:block )*) => {
        $(
            $(#[$meta])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                fn case($runtime: $crate::Runtime) $body

                #[test]
                fn threads() {
                    case($crate::Runtime::Threads);
                }

                #[test]
                fn async_() {
                    case($crate::Runtime::Async);
                }
            }
        )*
    };
}
