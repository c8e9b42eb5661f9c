//! Scraping `healthprobe run --metrics-addr`: an HTTP GET, and the
//! OpenMetrics text parsed with a Prometheus text parser (`prometheus-parse`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use prometheus_parse::{Scrape, Value};

use crate::HealthprobeProcess;

/// The `Content-Type` of a `/metrics` answer.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET http://addr{path}`: status, content type, body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent
        .get(format!("http://{addr}{path}"))
        .call()
        .unwrap_or_else(|err| panic!("GET {path}: {err}"));
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response
        .body_mut()
        .read_to_string()
        .unwrap_or_else(|err| panic!("GET {path} body: {err}"));
    (response.status().as_u16(), content_type, body)
}

/// One parsed scrape: each sample by `name{label="value"}` (labels sorted),
/// and the tick-duration histogram's buckets by upper bound.
#[derive(Debug)]
pub struct ScrapedMetrics {
    /// Each sample by `name{label="value",…}`, labels sorted.
    pub samples: HashMap<String, f64>,
    /// The tick-duration histogram's `(upper bound, cumulative count)` buckets.
    pub buckets: Vec<(f64, f64)>,
    /// The other histograms' buckets, by `name{label="value",…}`.
    pub histograms: HashMap<String, Vec<(f64, f64)>>,
}

impl ScrapedMetrics {
    /// The sample `key`; panics naming it when missing.
    pub fn value(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in {:#?}", self.samples))
    }

    /// The count of the bucket `le`; panics when missing.
    pub fn bucket(&self, le: f64) -> f64 {
        self.buckets
            .iter()
            .find(|(bound, _)| *bound == le)
            .unwrap_or_else(|| panic!("no bucket le={le} in {:?}", self.buckets))
            .1
    }
}

/// Scrape `/metrics` and parse it with `prometheus-parse`.
pub fn scrape_metrics(addr: SocketAddr) -> ScrapedMetrics {
    let (status, content_type, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, OPENMETRICS);
    assert!(body.ends_with("# EOF\n"), "not OpenMetrics text:\n{body}");
    let scrape = Scrape::parse(body.lines().map(|line| Ok(line.to_owned())))
        .unwrap_or_else(|err| panic!("unparsable scrape: {err}\n{body}"));
    let mut samples = HashMap::new();
    let mut buckets = Vec::new();
    let mut histograms = HashMap::new();
    for sample in scrape.samples {
        let mut labels: Vec<_> = sample
            .labels
            .iter()
            .map(|(name, value)| format!("{name}=\"{value}\""))
            .collect();
        labels.sort();
        let key = if labels.is_empty() {
            sample.metric.clone()
        } else {
            format!("{}{{{}}}", sample.metric, labels.join(","))
        };
        let value = match sample.value {
            Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value) => value,
            Value::Histogram(counts) => {
                let counts = counts
                    .iter()
                    .map(|count| (count.less_than, count.count))
                    .collect();
                if sample.metric == "healthprobe_tick_duration_seconds" {
                    buckets = counts;
                } else {
                    assert!(
                        histograms.insert(key.clone(), counts).is_none(),
                        "{key} twice"
                    );
                }
                continue;
            }
            Value::Summary(_) => panic!("unexpected summary {key}"),
        };
        assert!(samples.insert(key.clone(), value).is_none(), "{key} twice");
    }
    ScrapedMetrics {
        samples,
        buckets,
        histograms,
    }
}

/// The address `healthprobe` logged it serves metrics on.
pub fn metrics_addr(process: &HealthprobeProcess, patience: Duration) -> SocketAddr {
    const KEY: &str = "metrics_addr=";
    assert!(
        process.wait_for_stderr(patience, |text| text.contains(KEY)),
        "no metrics address logged:\n{}",
        process.stderr()
    );
    let stderr = process.stderr();
    let start = stderr
        .find(KEY)
        .map(|at| at + KEY.len())
        .unwrap_or_default();
    stderr[start..]
        .split_whitespace()
        .next()
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address after {KEY}:\n{stderr}"))
}
