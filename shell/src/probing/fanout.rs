//! The probe fan-outs: the two runtimes behind the [`ProbeFanout`] port.
//!
//! # Threads ([`ThreadFanout`])
//!
//! Each batch starts `min(max_concurrency, jobs)` probers inside a
//! [`std::thread::scope`]: the calling thread and up to `max_concurrency - 1`
//! helper threads. They take the next job from a shared atomic index, so at
//! most `max_concurrency` probes are in flight (R10). Helpers only do I/O:
//! they send each result over a channel. The caller folds its own results
//! and, between its probes, the helpers' (a result waits at most one of the
//! caller's probes), then the rest as they arrive. (The caller probing too
//! saves a thread wake-up per probe.)
//!
//! # Tasks ([`TaskFanout`], cargo feature `async`)
//!
//! The fan-out owns a small tokio runtime (one worker thread). Per batch,
//! it starts `min(max_concurrency, jobs)` worker tasks (R10); each checks
//! the shutdown signal, takes the next job, suspects first
//! ([`ProbeBatch::suspects_first`]), from a shared atomic index, and
//! probes it. The results go back over a tokio channel to the batch's
//! driver task, which gathers them for a millisecond and hands them on in
//! batches over a std channel to the caller, which folds them. The ports
//! therefore stay synchronous and are only called from the caller's thread,
//! never from async code: no task can block the runtime on a slow publisher
//! or an fsync. A hung engine holds a task and a socket, not a thread.
//!
//! # A probe that panics
//!
//! Either fan-out turns a panicking probe into a failure outcome of class
//! [`ProbeClass::Other`] with `last_error` `probe panicked: …`, logged at
//! error level, so the game's outcome is folded and the tick's report stays
//! true (a panic is a bug in a prober, never a reason to lose an outcome).

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;

use healthprobe_core::tick::{ProbeBatch, ProbeClass};
use healthprobe_core::{ProbeResult, RuntimeRecord};
use tracing::{error, warn};

use crate::config::Runtime;
use crate::driver::ports::{Clock, ProbeFanout, Probed};
use crate::driver::shutdown::Shutdown;
use crate::probing::probe::Prober;
#[cfg(feature = "async")]
use crate::probing::probe_async::AsyncProber;

/// Worker threads of the async runtime's scheduler: one. A probe's task,
/// its connection and its timers then share a thread; on two cores shared
/// with engines, a second worker cost CPU and bought no wall time
/// (benches/README.md).
#[cfg(feature = "async")]
const ASYNC_WORKER_THREADS: usize = 1;

/// How long the async driver gathers results before handing them on to
/// the caller's thread, from the first one it sees: the caller is woken
/// about once a millisecond, not once a probe or two (0.89x the CPU at a 1 s
/// interval over 1,000 engines; benches/README.md). An outcome waits at
/// most about this long (tokio's timers tick in milliseconds) to be folded
/// and its event published.
#[cfg(feature = "async")]
const HAND_ON_WINDOW: std::time::Duration = std::time::Duration::from_millis(1);

/// Threads tokio may start for blocking work: name lookups only.
#[cfg(feature = "async")]
const ASYNC_BLOCKING_THREADS: usize = 8;

/// The failure a panicking probe is folded as.
pub(crate) fn panicked(
    record: &RuntimeRecord,
    payload: &(dyn Any + Send),
) -> (ProbeResult, ProbeClass) {
    let message = payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_owned());
    error!(
        game_id = %record.game_id,
        container_id = %record.current_container_id,
        panic = %message,
        "a probe panicked; folded as a failure"
    );
    (
        ProbeResult::Unhealthy {
            status: 0,
            error: format!("probe panicked: {message}"),
        },
        ProbeClass::Other,
    )
}

/// Blocking probes on scoped threads ([`Runtime::Threads`]).
#[derive(Debug, Clone)]
pub(crate) struct ThreadFanout<P = Prober> {
    prober: P,
}

/// A blocking probe: what [`ThreadFanout`] runs on its threads.
pub(crate) trait BlockingProbe: Send + Sync + std::fmt::Debug {
    /// Probe one engine endpoint; the result and its kind.
    fn probe(&self, engine_endpoint: &str) -> (ProbeResult, ProbeClass);
}

impl BlockingProbe for Prober {
    fn probe(&self, engine_endpoint: &str) -> (ProbeResult, ProbeClass) {
        self.probe_classified(engine_endpoint)
    }
}

impl<P: BlockingProbe> ThreadFanout<P> {
    /// Probe with `prober` on threads.
    pub(crate) fn new(prober: P) -> Self {
        Self { prober }
    }
}

impl<P: BlockingProbe> ProbeFanout for ThreadFanout<P> {
    fn runtime(&self) -> Runtime {
        Runtime::Threads
    }

    fn probe_batch(
        &mut self,
        batch: &ProbeBatch,
        max_concurrency: usize,
        clock: &Arc<dyn Clock>,
        shutdown: &Shutdown,
        fold: &mut dyn FnMut(Probed),
    ) {
        let jobs: &[RuntimeRecord] = batch.jobs();
        let threads = max_concurrency.min(jobs.len());
        let next_job = AtomicUsize::new(0);
        let (sender, receiver) = mpsc::channel::<Probed>();
        let pool = ProbePool {
            jobs,
            next_job: &next_job,
            prober: &self.prober,
            clock: &**clock,
            shutdown,
        };
        thread::scope(|scope| {
            for index in 1..threads {
                let sender = sender.clone();
                let pool = &pool;
                let spawn = thread::Builder::new()
                    .name(format!("probe-{index}"))
                    .spawn_scoped(scope, move || {
                        while let Some(probed) = pool.probe_next() {
                            if sender.send(probed).is_err() {
                                return;
                            }
                        }
                    });
                if let Err(err) = spawn {
                    warn!(error = %err, "cannot start a probe thread; probing with fewer");
                    break;
                }
            }
            drop(sender);
            while let Some(probed) = pool.probe_next() {
                fold(probed);
                while let Ok(probed) = receiver.try_recv() {
                    fold(probed);
                }
            }
            for probed in receiver {
                fold(probed);
            }
        });
    }
}

/// What the probe threads share for one batch; read-only but for the job counter.
struct ProbePool<'a, P> {
    jobs: &'a [RuntimeRecord],
    next_job: &'a AtomicUsize,
    prober: &'a P,
    clock: &'a dyn Clock,
    shutdown: &'a Shutdown,
}

impl<P: BlockingProbe> ProbePool<'_, P> {
    /// Take the next job and probe it; `None` when none is left or on shutdown.
    fn probe_next(&self) -> Option<Probed> {
        if self.shutdown.is_triggered() {
            return None;
        }
        let job = self.next_job.fetch_add(1, Ordering::Relaxed);
        let record = self.jobs.get(job)?;
        let started = self.clock.monotonic();
        let (result, class) = panic::catch_unwind(AssertUnwindSafe(|| {
            self.prober.probe(&record.engine_endpoint)
        }))
        .unwrap_or_else(|payload| panicked(record, &*payload));
        let latency = self.clock.monotonic().saturating_sub(started);
        let observed_at = self.clock.now();
        Some(Probed::new(job, observed_at, result, class).with_latency(latency))
    }
}

/// An async probe: what [`TaskFanout`] runs as tasks.
#[cfg(feature = "async")]
pub(crate) trait AsyncProbe: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// Probe one engine endpoint; the result and its kind.
    fn probe(
        &self,
        engine_endpoint: &str,
    ) -> impl std::future::Future<Output = (ProbeResult, ProbeClass)> + Send;
}

#[cfg(feature = "async")]
impl AsyncProbe for AsyncProber {
    fn probe(
        &self,
        engine_endpoint: &str,
    ) -> impl std::future::Future<Output = (ProbeResult, ProbeClass)> + Send {
        self.probe_classified(engine_endpoint)
    }
}

/// Probe tasks on the fan-out's own tokio runtime ([`Runtime::Async`]).
#[cfg(feature = "async")]
#[derive(Debug)]
pub(crate) struct TaskFanout<P = AsyncProber> {
    runtime: tokio::runtime::Runtime,
    prober: P,
}

#[cfg(feature = "async")]
impl<P: AsyncProbe> TaskFanout<P> {
    /// Start the runtime (one scheduler thread) for `prober`.
    pub(crate) fn new(prober: P) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(ASYNC_WORKER_THREADS)
            .max_blocking_threads(ASYNC_BLOCKING_THREADS)
            .thread_name("probe-async")
            .enable_io()
            .enable_time()
            .build()?;
        Ok(Self { runtime, prober })
    }
}

#[cfg(feature = "async")]
impl<P: AsyncProbe> ProbeFanout for TaskFanout<P> {
    fn runtime(&self) -> Runtime {
        Runtime::Async
    }

    fn probe_batch(
        &mut self,
        batch: &ProbeBatch,
        max_concurrency: usize,
        clock: &Arc<dyn Clock>,
        shutdown: &Shutdown,
        fold: &mut dyn FnMut(Probed),
    ) {
        let (sender, receiver) = mpsc::channel::<Vec<Probed>>();
        self.runtime.spawn(drive_probe_tasks(
            self.prober.clone(),
            batch.clone(),
            max_concurrency,
            Arc::clone(clock),
            shutdown.clone(),
            sender,
        ));
        // The driver task holds the sender until its last probe has sent.
        for results in receiver {
            for probed in results {
                fold(probed);
            }
        }
    }
}

/// Probe every job of `batch` with `max_concurrency` worker tasks (R10),
/// each taking the next job, suspects first, until none is left or
/// `shutdown` is triggered; send the results (a panicking probe's as a
/// failure) on to the caller as they come.
///
/// Workers rather than a task per job: one spawn per worker and batch, not
/// per probe, and no bookkeeping of which task holds which job (a panic is
/// caught around the probe itself, where the job is known). The workers'
/// results reach this task over a tokio channel. From the first result it
/// sees, it gathers for [`HAND_ON_WINDOW`] (or until every job's result is
/// in), then hands them on as one batch.
#[cfg(feature = "async")]
async fn drive_probe_tasks<P: AsyncProbe>(
    prober: P,
    batch: ProbeBatch,
    max_concurrency: usize,
    clock: Arc<dyn Clock>,
    shutdown: Shutdown,
    sender: mpsc::Sender<Vec<Probed>>,
) {
    let next = Arc::new(AtomicUsize::new(0));
    // At least one, as the threads fan-out always probes on the caller.
    let workers = max_concurrency.max(1).min(batch.len());
    let (results, mut arrived) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        tasks.spawn(probe_worker(
            prober.clone(),
            batch.clone(),
            Arc::clone(&next),
            Arc::clone(&clock),
            shutdown.clone(),
            results.clone(),
        ));
    }
    drop(results);
    let limit = batch.len().max(1);
    loop {
        let mut ready = Vec::new();
        // 0 once every worker has ended (and dropped its sender).
        if arrived.recv_many(&mut ready, limit).await == 0 {
            break;
        }
        // More for the window, unless every worker ends first.
        let until = tokio::time::Instant::now() + HAND_ON_WINDOW;
        while let Ok(1..) =
            tokio::time::timeout_at(until, arrived.recv_many(&mut ready, limit)).await
        {}
        if sender.send(ready).is_err() {
            break;
        }
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(err) = joined {
            // A probe's panic is caught in the worker: this is a bug of the
            // worker's own. The jobs it had not taken went to the others.
            error!(error = %err, "a probe worker task failed");
        }
    }
}

/// One worker of [`drive_probe_tasks`]: probe the next job until none is
/// left, `shutdown` is triggered or the results are no longer wanted.
#[cfg(feature = "async")]
async fn probe_worker<P: AsyncProbe>(
    prober: P,
    batch: ProbeBatch,
    next: Arc<AtomicUsize>,
    clock: Arc<dyn Clock>,
    shutdown: Shutdown,
    results: tokio::sync::mpsc::UnboundedSender<Probed>,
) {
    let jobs = batch.jobs();
    loop {
        if shutdown.is_triggered() {
            return;
        }
        let Some(&job) = batch
            .suspects_first()
            .get(next.fetch_add(1, Ordering::Relaxed))
        else {
            return;
        };
        let record = &jobs[job];
        let started = clock.monotonic();
        let probe = std::pin::pin!(async {
            let (result, class) = prober.probe(&record.engine_endpoint).await;
            (result, class, clock.now())
        });
        let (result, class, observed_at) = CatchUnwind(probe).await.unwrap_or_else(|payload| {
            let (result, class) = panicked(record, &*payload);
            (result, class, clock.now())
        });
        let latency = clock.monotonic().saturating_sub(started);
        if results
            .send(Probed::new(job, observed_at, result, class).with_latency(latency))
            .is_err()
        {
            return;
        }
    }
}

/// A future whose panic is caught: `Err` with the panic's payload.
#[cfg(feature = "async")]
struct CatchUnwind<F>(F);

#[cfg(feature = "async")]
impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = &mut self.0;
        match panic::catch_unwind(AssertUnwindSafe(|| std::pin::Pin::new(inner).poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(output)) => std::task::Poll::Ready(Ok(output)),
            Err(payload) => std::task::Poll::Ready(Err(payload)),
        }
    }
}

#[cfg(test)]
mod tests {
    use healthprobe_core::tick::{MachineConfig, TickMachine};
    use healthprobe_core::{Policy, Timestamp};

    use super::*;
    use crate::adapters::ManualClock;

    /// Panics for one endpoint, fails the rest.
    #[derive(Debug)]
    struct PanicsOn(&'static str);

    impl BlockingProbe for PanicsOn {
        fn probe(&self, engine_endpoint: &str) -> (ProbeResult, ProbeClass) {
            assert_ne!(engine_endpoint, self.0, "the prober has a bug");
            (ProbeResult::Healthy, ProbeClass::Ok)
        }
    }

    fn batch(endpoints: &[&str]) -> ProbeBatch {
        let mut machine = TickMachine::new(
            MachineConfig::new(std::time::Duration::from_secs(1)),
            Policy::default(),
        );
        machine.start_tick(std::time::Duration::ZERO);
        assert_eq!(
            machine.poll_action(),
            Some(healthprobe_core::tick::Action::List)
        );
        let records = endpoints
            .iter()
            .enumerate()
            .map(|(i, endpoint)| RuntimeRecord::running(format!("g{i}"), "c", *endpoint))
            .collect();
        machine.handle_listing(std::time::Duration::ZERO, Ok(records));
        match machine.poll_action() {
            Some(healthprobe_core::tick::Action::Probe(batch)) => batch,
            other => panic!("{other:?}"),
        }
    }

    /// Panics for one endpoint, healthy for the rest (async).
    #[cfg(feature = "async")]
    #[derive(Debug, Clone, Copy)]
    struct PanicsOnAsync(&'static str);

    #[cfg(feature = "async")]
    impl AsyncProbe for PanicsOnAsync {
        fn probe(
            &self,
            engine_endpoint: &str,
        ) -> impl std::future::Future<Output = (ProbeResult, ProbeClass)> + Send {
            let boom = engine_endpoint == self.0;
            async move {
                assert!(!boom, "the async prober has a bug");
                (ProbeResult::Healthy, ProbeClass::Ok)
            }
        }
    }

    /// Healthy, but the probe of `slow` waits (at most 10 s) until the
    /// caller has folded some other outcome.
    #[cfg(feature = "async")]
    #[derive(Debug, Clone)]
    struct WaitsForAFold {
        slow: &'static str,
        folded: Arc<tokio::sync::Notify>,
    }

    #[cfg(feature = "async")]
    impl AsyncProbe for WaitsForAFold {
        fn probe(
            &self,
            engine_endpoint: &str,
        ) -> impl std::future::Future<Output = (ProbeResult, ProbeClass)> + Send {
            let waits = (engine_endpoint == self.slow).then(|| Arc::clone(&self.folded));
            async move {
                let Some(folded) = waits else {
                    return (ProbeResult::Healthy, ProbeClass::Ok);
                };
                match tokio::time::timeout(std::time::Duration::from_secs(10), folded.notified())
                    .await
                {
                    Ok(()) => (ProbeResult::Healthy, ProbeClass::Ok),
                    Err(_) => (
                        ProbeResult::Unhealthy {
                            status: 0,
                            error: "no outcome was folded while this probe was in flight".into(),
                        },
                        ProbeClass::Timeout,
                    ),
                }
            }
        }
    }

    /// The driver gathers results for [`HAND_ON_WINDOW`] before handing them
    /// on, but a finished probe's outcome still reaches the caller while
    /// another probe is in flight, not when the batch ends.
    #[cfg(feature = "async")]
    #[test]
    fn an_outcome_is_folded_while_another_probe_is_still_in_flight_on_tasks() {
        let folded = Arc::new(tokio::sync::Notify::new());
        let mut fanout = TaskFanout::new(WaitsForAFold {
            slow: "http://slow/",
            folded: Arc::clone(&folded),
        })
        .expect("a runtime");
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Timestamp::UNIX_EPOCH));
        let mut results = Vec::new();
        fanout.probe_batch(
            &batch(&["http://slow/", "http://fast/"]),
            2,
            &clock,
            &Shutdown::new(),
            &mut |probed| {
                // Wakes the slow probe (a permit is kept if it is not waiting yet).
                folded.notify_one();
                results.push(probed);
            },
        );
        let jobs: Vec<(usize, &ProbeResult)> = results
            .iter()
            .map(|probed| (probed.job, &probed.result))
            .collect();
        assert_eq!(
            jobs,
            [(1, &ProbeResult::Healthy), (0, &ProbeResult::Healthy)],
            "the fast probe's outcome is folded first, while the slow one waits for it"
        );
    }

    fn check_panicked(results: Vec<Probed>, bug: &str) {
        assert_eq!(results.len(), 3);
        assert_eq!(results[1].class, ProbeClass::Other);
        match &results[1].result {
            ProbeResult::Unhealthy { status: 0, error } => {
                assert!(error.starts_with("probe panicked: "), "{error}");
                assert!(error.contains(bug), "{error}");
            }
            other => panic!("{other:?}"),
        }
        assert!(results[0].result.is_healthy() && results[2].result.is_healthy());
    }

    /// Every result of probing `endpoints` through `fanout` with a cap of
    /// `max_concurrency`, in job order.
    fn fold_all(
        fanout: &mut impl ProbeFanout,
        endpoints: &[&str],
        max_concurrency: usize,
    ) -> Vec<Probed> {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Timestamp::UNIX_EPOCH));
        let mut results = Vec::new();
        fanout.probe_batch(
            &batch(endpoints),
            max_concurrency,
            &clock,
            &Shutdown::new(),
            &mut |probed| results.push(probed),
        );
        results.sort_by_key(|probed| probed.job);
        results
    }

    const WITH_BOOM: [&str; 3] = ["http://a/", "http://boom/", "http://c/"];

    #[cfg(feature = "async")]
    #[test]
    fn a_panicking_probe_task_is_folded_as_a_failure() {
        let mut fanout = TaskFanout::new(PanicsOnAsync("http://boom/")).expect("a runtime");
        check_panicked(
            fold_all(&mut fanout, &WITH_BOOM, 2),
            "the async prober has a bug",
        );
    }

    #[cfg(feature = "async")]
    #[test]
    fn a_cap_of_zero_still_probes_every_job_on_tasks_as_on_threads() {
        let endpoints = ["http://a/", "http://b/", "http://c/"];
        let jobs =
            |results: Vec<Probed>| results.iter().map(|probed| probed.job).collect::<Vec<_>>();
        let mut on_tasks = TaskFanout::new(PanicsOnAsync("none")).expect("a runtime");
        assert_eq!(jobs(fold_all(&mut on_tasks, &endpoints, 0)), [0, 1, 2]);
        let mut on_threads = ThreadFanout::new(PanicsOn("none"));
        assert_eq!(jobs(fold_all(&mut on_threads, &endpoints, 0)), [0, 1, 2]);
    }

    #[test]
    fn a_panicking_probe_on_threads_is_folded_as_a_failure() {
        let mut fanout = ThreadFanout::new(PanicsOn("http://boom/"));
        check_panicked(fold_all(&mut fanout, &WITH_BOOM, 2), "the prober has a bug");
    }
}
