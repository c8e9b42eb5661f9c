//! The probe fan-outs: the two runtimes behind the [`ProbeFanout`] port.
//! Both take jobs suspects first ([`ProbeBatch::suspects_first`]) from a
//! shared index, at most `max_concurrency` in flight (R10), and fold a
//! panicking probe as a failure of class [`ProbeClass::Other`] (`probe
//! panicked: …`, logged): a bug in a prober never loses an outcome.
//!
//! [`ThreadFanout`] probes on scoped threads: the calling thread and up to
//! `max_concurrency - 1` helpers, which send their results over a channel;
//! the caller folds them between its own probes (probing on the caller
//! saves a thread wake-up per probe). [`TaskFanout`] (cargo feature
//! `async`) probes in worker tasks on a tokio runtime of its own and hands
//! the results to the caller's thread over a std channel, so the ports stay
//! synchronous and never run in async code: a hung engine holds a task and
//! a socket, not a thread, and a slow publisher or an fsync never blocks
//! the probes.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use healthprobe_core::tick::{ProbeBatch, ProbeClass};
use healthprobe_core::{ProbeResult, RuntimeRecord};
use tracing::{error, warn};

use crate::config::Runtime;
use crate::driver::ports::{Clock, ProbeFanout, Probed};
use crate::driver::shutdown::Shutdown;
use crate::probing::probe::Prober;
#[cfg(feature = "async")]
use crate::probing::probe_async::AsyncProber;

/// Worker threads of the async runtime: one. On two cores shared with
/// engines a second cost CPU and bought no wall time (benches/README.md).
#[cfg(feature = "async")]
const ASYNC_WORKER_THREADS: usize = 1;

/// How long the async driver gathers results before handing them to the
/// caller's thread, which is then woken about once a millisecond rather
/// than once a probe (benches/README.md); an outcome waits about this long.
#[cfg(feature = "async")]
const HAND_ON_WINDOW: Duration = Duration::from_millis(1);

/// Threads tokio may start for blocking work: name lookups only.
#[cfg(feature = "async")]
const ASYNC_BLOCKING_THREADS: usize = 8;

/// The outcome of `job`'s probe, begun at `started`; a panic's payload is
/// folded as a failure.
fn probed(
    job: usize,
    record: &RuntimeRecord,
    clock: &dyn Clock,
    started: Duration,
    outcome: Result<(ProbeResult, ProbeClass), Box<dyn Any + Send>>,
) -> Probed {
    let (result, class) = outcome.unwrap_or_else(|payload| {
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
        let error = format!("probe panicked: {message}");
        (
            ProbeResult::Unhealthy { status: 0, error },
            ProbeClass::Other,
        )
    });
    let latency = clock.monotonic().saturating_sub(started);
    Probed::new(job, clock.now(), result, class).with_latency(latency)
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
        Prober::probe(self, engine_endpoint)
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
        let next = AtomicUsize::new(0);
        let probe_next = || {
            if shutdown.is_triggered() {
                return None;
            }
            let job = *batch
                .suspects_first()
                .get(next.fetch_add(1, Ordering::Relaxed))?;
            let record = &batch.jobs()[job];
            let started = clock.monotonic();
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                self.prober.probe(&record.engine_endpoint)
            }));
            Some(probed(job, record, &**clock, started, outcome))
        };
        let (sender, receiver) = mpsc::channel::<Probed>();
        thread::scope(|scope| {
            for index in 1..max_concurrency.min(batch.len()) {
                let (sender, probe_next) = (sender.clone(), &probe_next);
                let spawn = thread::Builder::new()
                    .name(format!("probe-{index}"))
                    .spawn_scoped(scope, move || {
                        while let Some(probed) = probe_next() {
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
            while let Some(probed) = probe_next() {
                fold(probed);
                receiver.try_iter().for_each(&mut *fold);
            }
            receiver.iter().for_each(fold);
        });
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
        AsyncProber::probe(self, engine_endpoint)
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
        receiver.iter().flatten().for_each(fold);
    }
}

/// Probe every job of `batch` with `max_concurrency` worker tasks (one spawn
/// per worker and batch, not per probe), and hand the results on to the
/// caller, gathered for [`HAND_ON_WINDOW`] from the first one seen.
#[cfg(feature = "async")]
async fn drive_probe_tasks<P: AsyncProbe>(
    prober: P,
    batch: ProbeBatch,
    max_concurrency: usize,
    clock: Arc<dyn Clock>,
    shutdown: Shutdown,
    sender: mpsc::Sender<Vec<Probed>>,
) {
    use futures_util::FutureExt as _;
    let next = Arc::new(AtomicUsize::new(0));
    let (results, mut arrived) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    // At least one, as the threads fan-out always probes on the caller.
    for _ in 0..max_concurrency.max(1).min(batch.len()) {
        let (prober, batch, next, clock, shutdown, results) = (
            prober.clone(),
            batch.clone(),
            Arc::clone(&next),
            Arc::clone(&clock),
            shutdown.clone(),
            results.clone(),
        );
        tasks.spawn(async move {
            while !shutdown.is_triggered() {
                let Some(&job) = batch
                    .suspects_first()
                    .get(next.fetch_add(1, Ordering::Relaxed))
                else {
                    return;
                };
                let record = &batch.jobs()[job];
                let started = clock.monotonic();
                let outcome = AssertUnwindSafe(prober.probe(&record.engine_endpoint))
                    .catch_unwind()
                    .await;
                if results
                    .send(probed(job, record, &*clock, started, outcome))
                    .is_err()
                {
                    return;
                }
            }
        });
    }
    drop(results);
    let limit = batch.len().max(1);
    let mut ready = Vec::new();
    // 0 once every worker has ended (and dropped its sender).
    while arrived.recv_many(&mut ready, limit).await > 0 {
        let until = tokio::time::Instant::now() + HAND_ON_WINDOW;
        while let Ok(1..) =
            tokio::time::timeout_at(until, arrived.recv_many(&mut ready, limit)).await
        {}
        if sender.send(std::mem::take(&mut ready)).is_err() {
            break;
        }
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(err) = joined {
            error!(error = %err, "a probe worker task failed");
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
        batch_after(endpoints, None)
    }

    /// The batch of `endpoints`, in a tick after one where the probe of
    /// job `failed` (if any) failed.
    fn batch_after(endpoints: &[&str], failed: Option<usize>) -> ProbeBatch {
        use healthprobe_core::tick::Action;
        let mut machine = TickMachine::new(
            MachineConfig::new(Duration::from_secs(1)),
            Policy::default(),
        );
        let records: Vec<_> = endpoints
            .iter()
            .enumerate()
            .map(|(i, endpoint)| RuntimeRecord::running(format!("g{i}"), "c", *endpoint))
            .collect();
        let list = |machine: &mut TickMachine| {
            machine.start_tick(Duration::ZERO);
            assert_eq!(machine.poll_action(), Some(Action::List));
            machine.handle_listing(Duration::ZERO, Ok(records.clone()));
            match machine.poll_action() {
                Some(Action::Probe(batch)) => batch,
                other => panic!("{other:?}"),
            }
        };
        let Some(failed) = failed else {
            return list(&mut machine);
        };
        for job in 0..list(&mut machine).len() {
            let (result, class) = if job == failed {
                (ProbeResult::from_status(503), ProbeClass::BadStatus)
            } else {
                (ProbeResult::Healthy, ProbeClass::Ok)
            };
            machine.handle_outcome(Duration::ZERO, job, Timestamp::UNIX_EPOCH, result, class);
        }
        machine.handle_probes_done(Duration::ZERO);
        while !matches!(machine.poll_action(), Some(Action::Wait { .. }) | None) {}
        list(&mut machine)
    }

    /// Records the endpoints it probes, in order.
    #[derive(Debug, Default)]
    struct Records(std::sync::Mutex<Vec<String>>);

    impl BlockingProbe for Records {
        fn probe(&self, engine_endpoint: &str) -> (ProbeResult, ProbeClass) {
            self.0.lock().unwrap().push(engine_endpoint.to_owned());
            (ProbeResult::Healthy, ProbeClass::Ok)
        }
    }

    /// Both runtimes probe the games with a failure counted first (one at
    /// a time here, so the order is the order taken).
    #[test]
    fn a_game_with_a_failure_counted_is_probed_first_on_threads_as_on_tasks() {
        let endpoints = ["http://a/", "http://b/", "http://c/"];
        let batch = batch_after(&endpoints, Some(2));
        assert_eq!(&batch.suspects_first()[..], [2, 0, 1]);
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Timestamp::UNIX_EPOCH));
        let mut on_threads = ThreadFanout::new(Records::default());
        let mut jobs = Vec::new();
        on_threads.probe_batch(&batch, 1, &clock, &Shutdown::new(), &mut |probed| {
            jobs.push(probed.job);
        });
        assert_eq!(jobs, [2, 0, 1]);
        assert_eq!(
            *on_threads.prober.0.lock().unwrap(),
            ["http://c/", "http://a/", "http://b/"]
        );
        #[cfg(feature = "async")]
        {
            let mut on_tasks = TaskFanout::new(PanicsOnAsync("none")).expect("a runtime");
            let mut jobs = Vec::new();
            on_tasks.probe_batch(&batch, 1, &clock, &Shutdown::new(), &mut |probed| {
                jobs.push(probed.job);
            });
            assert_eq!(jobs, [2, 0, 1]);
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
