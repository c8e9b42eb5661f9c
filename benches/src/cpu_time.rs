//! A criterion measurement of CPU time, for machines shared with other work.
//!
//! Wall time (criterion's default) counts the time the bench thread waits
//! while other processes hold the cores; on a 2-core machine shared with
//! compilers that inflates the figures two- or threefold and makes them
//! wobble from run to run. CPU time counts only the time the work ran.
//!
//! [`CpuTime`] is the calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`)
//! plus the CPU time of child processes that ended and were waited for in
//! between (`getrusage(RUSAGE_CHILDREN)`), so a bench that spawns a process
//! and waits for it is measured by the CPU the process used.
//!
//! Select it with `HEALTHPROBE_BENCH_TIME=cpu`; see [`BenchTime::from_env`].

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// How the benches measure time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchTime {
    /// Elapsed time, criterion's default: what a user waits for on an idle machine.
    Wall,
    /// CPU time of the bench thread and its waited-for children ([`CpuTime`]).
    Cpu,
}

impl BenchTime {
    /// The environment variable that selects the measurement: `wall` (default) or `cpu`.
    pub const VARIABLE: &str = "HEALTHPROBE_BENCH_TIME";

    /// `HEALTHPROBE_BENCH_TIME`: `cpu` selects [`BenchTime::Cpu`]; unset or
    /// `wall` selects [`BenchTime::Wall`]; anything else panics with a message
    /// (a bench run with a mistyped setting should not report the wrong clock).
    pub fn from_env() -> Self {
        match std::env::var(Self::VARIABLE).as_deref() {
            Err(_) | Ok("" | "wall") => Self::Wall,
            Ok("cpu") => Self::Cpu,
            Ok(other) => panic!("{}={other:?}: expected `wall` or `cpu`", Self::VARIABLE),
        }
    }

    /// The benchmark group name: `base` for wall time, `base-cpu` for CPU
    /// time, so the two never share criterion's saved baselines.
    pub fn group(self, base: &str) -> String {
        match self {
            Self::Wall => base.to_owned(),
            Self::Cpu => format!("{base}-cpu"),
        }
    }
}

/// CPU time of the calling thread plus that of waited-for child processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTime;

/// Formats like wall time: the values are durations too.
static DURATION_FORMAT: WallTime = WallTime;

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        now()
    }

    fn end(&self, start: Duration) -> Duration {
        now().saturating_sub(start)
    }

    fn add(&self, v1: &Duration, v2: &Duration) -> Duration {
        *v1 + *v2
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        DURATION_FORMAT.formatter()
    }
}

/// The thread's CPU time plus the children's, as one reading.
fn now() -> Duration {
    thread_cpu_time() + children_cpu_time()
}

#[allow(unsafe_code)]
fn thread_cpu_time() -> Duration {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid, writable timespec; the clock id is a constant
    // Linux supports, so the call only writes `time`.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    assert_eq!(result, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(
        u64::try_from(time.tv_sec).expect("CPU time is not negative"),
        u32::try_from(time.tv_nsec).expect("tv_nsec is below 10^9"),
    )
}

/// User + system time of the child processes that ended and were waited for.
#[allow(unsafe_code)]
pub fn children_cpu_time() -> Duration {
    // SAFETY: `rusage` is plain old data; all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage; RUSAGE_CHILDREN is a valid
    // `who`, so the call only writes `usage`.
    let result = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(result, 0, "getrusage(RUSAGE_CHILDREN) failed");
    let timeval = |t: libc::timeval| {
        Duration::new(
            u64::try_from(t.tv_sec).expect("CPU time is not negative"),
            u32::try_from(t.tv_usec).expect("tv_usec is below 10^6") * 1_000,
        )
    };
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use criterion::measurement::Measurement;

    use super::CpuTime;

    #[test]
    fn cpu_time_counts_work_and_waited_children() {
        let start = CpuTime.start();
        let mut x = 0_u64;
        for i in 0..5_000_000_u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let busy = CpuTime.end(start);
        assert!(!busy.is_zero(), "a busy loop uses CPU time");

        let start = CpuTime.start();
        let status = Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
            .status()
            .expect("sh runs");
        assert!(status.success());
        assert!(
            !CpuTime.end(start).is_zero(),
            "a waited-for child's CPU counts"
        );
    }
}
