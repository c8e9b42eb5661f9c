//! `probe`: the probers' adapters against their stock clients as they ship,
//! over the same engines in one run — the benchmark the performance budget
//! (ARCHITECTURE.md) asks of each adapter kept for speed.
//!
//! The engines are event-loop engines in this process
//! (`healthprobe_tests::EventFleet`: one small tokio runtime, keeping a
//! connection alive unless the client asks to close). One iteration probes
//! every engine of a fleet once, one probe after the other on the bench's
//! thread (wall time; a thread ureq starts counts in it):
//!
//! - `probe/fresh_http_prober` against `probe/fresh_http_ureq_as_shipped`:
//!   1,000 engines, a fresh connection each (`Connection: close`). The
//!   second is a ureq `Agent` configured alike but with ureq's own resolver,
//!   which starts a thread for every lookup bounded by a timeout, even of an
//!   IP address; the `Prober` resolves IP addresses in place.
//! - `probe/kept_http_prober` against `probe/kept_http_one_ureq_agent`: 300
//!   engines whose connections are kept (one warm-up sweep first). The second
//!   is one ureq `Agent` pooling all 300 (its pool compares its idle
//!   connections pairwise on every connect and return); the `Prober` spreads
//!   them over agents of a few each.
//! - `probe/fresh_http_async_prober` against
//!   `probe/fresh_http_async_hyper_util_client`: 1,000 engines, a fresh
//!   connection each, on a one-thread tokio runtime. The second is
//!   hyper-util's `Client` (the async prober's client for kept connections);
//!   the `AsyncProber` runs hyper's HTTP/1 client in the probe's own task
//!   for a fresh connection.
//!
//! After the benches, `probe summary:` lines give the medians' ratios
//! (adapter / stock). With `HEALTHPROBE_BENCH_TIME=cpu` the benches measure
//! the bench thread's CPU time instead (group `probe-cpu`): that is all of
//! an async probe's CPU (its runtime runs on the bench thread), but not the
//! threads ureq's resolver starts, so compare the threads prober by wall
//! time and the async prober by CPU time.
//!
//! ```sh
//! cargo bench -p healthprobe-benches --bench probe
//! HEALTHPROBE_BENCH_TIME=cpu cargo bench -p healthprobe-benches --bench probe -- async
//! ```

use std::time::Duration;

use criterion::measurement::Measurement;
use criterion::{Criterion, SamplingMode, Throughput};
use healthprobe_benches::cpu_time::{BenchTime, CpuTime};
use healthprobe_shell::probing::connections::{ConnectionPolicy, Connections};
use healthprobe_shell::probing::probe::Prober;
use healthprobe_shell::probing::probe_async::AsyncProber;
use healthprobe_shell::tls::TlsClient;
use healthprobe_tests::EventFleet;
use http_body_util::Empty;
use hyper::body::Bytes;

const FRESH_ENGINES: usize = 1000;
const KEPT_ENGINES: usize = 300;
const TIMEOUT: Duration = Duration::from_secs(2);

fn urls(fleet: &EventFleet) -> Vec<String> {
    fleet
        .records()
        .into_iter()
        .map(|record| format!("{}/healthz", record.engine_endpoint.trim_end_matches('/')))
        .collect()
}

fn policy(connections: Connections) -> ConnectionPolicy {
    ConnectionPolicy::new(connections, Duration::from_secs(5), 16)
}

/// A ureq agent as it ships but for the settings the prober also sets.
fn ureq_agent(max_idle: usize) -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .timeout_global(Some(TIMEOUT))
        .max_redirects(0)
        .http_status_as_error(false)
        .max_idle_connections(max_idle)
        .max_idle_connections_per_host(1)
        .build()
        .into()
}

fn healthy(status: u16) {
    assert_eq!(status, 200, "every engine is healthy");
}

fn main() {
    let time = BenchTime::from_env();
    match time {
        BenchTime::Wall => run(Criterion::default().configure_from_args(), time),
        BenchTime::Cpu => run(
            Criterion::default()
                .with_measurement(CpuTime)
                .configure_from_args(),
            time,
        ),
    }
}

fn run<M: Measurement + 'static>(mut criterion: Criterion<M>, time: BenchTime) {
    let fresh = EventFleet::start(FRESH_ENGINES, None).expect("engines");
    let kept = EventFleet::start(KEPT_ENGINES, None).expect("engines");
    let (fresh_urls, kept_urls) = (urls(&fresh), urls(&kept));
    let endpoints = |urls: &[String]| -> Vec<String> {
        urls.iter()
            .map(|url| url.trim_end_matches("/healthz").to_owned())
            .collect()
    };
    let (fresh_endpoints, kept_endpoints) = (endpoints(&fresh_urls), endpoints(&kept_urls));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");

    let group_name = time.group("probe");
    let mut group = criterion.benchmark_group(&group_name);
    group.sampling_mode(SamplingMode::Flat).sample_size(10);

    group.throughput(Throughput::Elements(FRESH_ENGINES as u64));
    let prober = Prober::new(TIMEOUT, TlsClient::system(), policy(Connections::Fresh));
    group.bench_function("fresh_http_prober", |b| {
        b.iter(|| {
            for endpoint in &fresh_endpoints {
                assert!(prober.probe(endpoint).0.is_healthy());
            }
        })
    });
    let agent = ureq_agent(0);
    group.bench_function("fresh_http_ureq_as_shipped", |b| {
        b.iter(|| {
            for url in &fresh_urls {
                let response = agent.get(url).header("connection", "close").call();
                healthy(response.expect("an answer").status().as_u16());
            }
        })
    });

    let prober = AsyncProber::new(TIMEOUT, TlsClient::system(), policy(Connections::Fresh));
    group.bench_function("fresh_http_async_prober", |b| {
        b.iter(|| {
            runtime.block_on(async {
                for endpoint in &fresh_endpoints {
                    assert!(prober.probe(endpoint).await.0.is_healthy());
                }
            })
        })
    });
    let client = runtime.block_on(async {
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Empty<Bytes>>()
    });
    group.bench_function("fresh_http_async_hyper_util_client", |b| {
        b.iter(|| {
            runtime.block_on(async {
                for url in &fresh_urls {
                    let request = hyper::Request::get(url.as_str())
                        .header(hyper::header::CONNECTION, "close")
                        .body(Empty::new())
                        .expect("a request");
                    healthy(
                        client
                            .request(request)
                            .await
                            .expect("an answer")
                            .status()
                            .as_u16(),
                    );
                }
            })
        })
    });

    group.throughput(Throughput::Elements(KEPT_ENGINES as u64));
    let prober = Prober::new(TIMEOUT, TlsClient::system(), policy(Connections::Keep));
    group.bench_function("kept_http_prober", |b| {
        b.iter(|| {
            for endpoint in &kept_endpoints {
                assert!(prober.probe(endpoint).0.is_healthy());
            }
        })
    });
    let agent = ureq_agent(KEPT_ENGINES);
    group.bench_function("kept_http_one_ureq_agent", |b| {
        b.iter(|| {
            for url in &kept_urls {
                let mut response = agent.get(url).call().expect("an answer");
                healthy(response.status().as_u16());
                response.body_mut().read_to_vec().expect("a body");
            }
        })
    });
    group.finish();
    criterion.final_summary();
    summary(&group_name);
}

/// The medians criterion saved, as ratios adapter / stock.
fn summary(group: &str) {
    let median = |name: &str| -> Option<f64> {
        let path = format!("target/criterion/{group}/{name}/new/estimates.json");
        let text = std::fs::read_to_string(&path)
            .or_else(|_| std::fs::read_to_string(format!("../{path}")))
            .ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        value["median"]["point_estimate"].as_f64()
    };
    for (ours, stock) in [
        ("fresh_http_prober", "fresh_http_ureq_as_shipped"),
        ("kept_http_prober", "kept_http_one_ureq_agent"),
        (
            "fresh_http_async_prober",
            "fresh_http_async_hyper_util_client",
        ),
    ] {
        match (median(ours), median(stock)) {
            (Some(a), Some(b)) => println!(
                "probe summary: {ours} {:.1} ms, {stock} {:.1} ms: {:.2}x",
                a / 1e6,
                b / 1e6,
                a / b
            ),
            _ => println!("probe summary: {ours} / {stock}: no estimates found"),
        }
    }
}
