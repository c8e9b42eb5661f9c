//! Many engines at once, and the runtime records that point at them.

use std::io;
use std::path::Path;
use std::sync::Arc;

use healthprobe_shell::driver::ports::RuntimeRecord;

use crate::engine::{Behaviour, EngineTls, HangGauge, TestEngine};
use crate::records::write_records_file;

/// N [`TestEngine`]s sharing one [`HangGauge`]; engine `i` belongs to game
/// [`Fleet::game_id`]`(i)` in container [`Fleet::container_id`]`(i)`.
///
/// Each engine costs one accept thread with a 64 KiB stack and one
/// listening socket: measured on two busy cores (`examples/fleet_scale.rs`),
/// 5,000 engines start in about 0.5 s and take about 19 KB of RSS each
/// (93 MB in all), and stop in about 0.5 s. Dropping the fleet signals every
/// engine before joining any, so a stop does not wait engine by engine.
/// The alternative, a few threads polling non-blocking listeners, would
/// save that memory but add polling latency to every probe of a bench.
#[derive(Debug)]
pub struct Fleet {
    engines: Vec<TestEngine>,
    /// Each engine's endpoint, without the trailing slash.
    urls: Vec<String>,
    gauge: Arc<HangGauge>,
}

/// How one engine of a [`Fleet::start_tls`] fleet is reached.
#[derive(Debug, Clone)]
pub enum FleetTls {
    /// Plain HTTP, `http://` endpoint.
    Plain,
    /// TLS as given, `https://` endpoint.
    Tls(EngineTls),
    /// A plain HTTP engine behind an `https://` endpoint (not TLS).
    PlainBehindHttps,
}

impl Fleet {
    /// One engine per behaviour, in order.
    pub fn start(behaviours: impl IntoIterator<Item = Behaviour>) -> io::Result<Self> {
        let gauge = HangGauge::new();
        let engines = behaviours
            .into_iter()
            .map(|behaviour| TestEngine::start_with_gauge(behaviour, Arc::clone(&gauge)))
            .collect::<io::Result<Vec<_>>>()?;
        let urls = engines.iter().map(TestEngine::url).collect();
        Ok(Self {
            engines,
            urls,
            gauge,
        })
    }

    /// One engine per `(behaviour, how it is reached)`, in order.
    pub fn start_tls(engines: impl IntoIterator<Item = (Behaviour, FleetTls)>) -> io::Result<Self> {
        let gauge = HangGauge::new();
        let mut started = Vec::new();
        let mut urls = Vec::new();
        for (behaviour, tls) in engines {
            let engine_gauge = Arc::clone(&gauge);
            let (engine, url) = match tls {
                FleetTls::Plain => {
                    let engine = TestEngine::start_with_gauge(behaviour, engine_gauge)?;
                    let url = engine.url();
                    (engine, url)
                }
                FleetTls::PlainBehindHttps => {
                    let engine = TestEngine::start_with_gauge(behaviour, engine_gauge)?;
                    let url = format!("https://{}", engine.addr());
                    (engine, url)
                }
                FleetTls::Tls(tls) => {
                    let engine = TestEngine::start_tls_with_gauge(behaviour, tls, engine_gauge)?;
                    let url = engine.url();
                    (engine, url)
                }
            };
            started.push(engine);
            urls.push(url);
        }
        Ok(Self {
            engines: started,
            urls,
            gauge,
        })
    }

    /// `count` engines with the same behaviour.
    pub fn uniform(count: usize, behaviour: Behaviour) -> io::Result<Self> {
        Self::start(std::iter::repeat_n(behaviour, count))
    }

    /// The game id of engine `index`: `g{index}`.
    pub fn game_id(index: usize) -> String {
        format!("g{index}")
    }

    /// The container id of engine `index`: `c{index}`.
    pub fn container_id(index: usize) -> String {
        format!("c{index}")
    }

    /// How many engines.
    pub fn len(&self) -> usize {
        self.engines.len()
    }

    /// Whether the fleet has no engine.
    pub fn is_empty(&self) -> bool {
        self.engines.is_empty()
    }

    /// Engine `index`. Panics if out of range.
    pub fn engine(&self, index: usize) -> &TestEngine {
        &self.engines[index]
    }

    /// Every engine, in order.
    pub fn engines(&self) -> &[TestEngine] {
        &self.engines
    }

    /// The gauge counting the hung connections of every engine.
    pub fn gauge(&self) -> &Arc<HangGauge> {
        &self.gauge
    }

    /// Requests received by all engines together.
    pub fn requests(&self) -> usize {
        self.engines.iter().map(TestEngine::requests).sum()
    }

    /// The record of engine `index`: game `g{index}`, container `c{index}`,
    /// endpoint `http://127.0.0.1:port/` (with the trailing slash the
    /// prober must trim, R2), status `running`.
    pub fn record(&self, index: usize) -> RuntimeRecord {
        RuntimeRecord::running(
            Self::game_id(index),
            Self::container_id(index),
            format!("{}/", self.urls[index]),
        )
    }

    /// The records of every engine, in order.
    pub fn records(&self) -> Vec<RuntimeRecord> {
        (0..self.engines.len())
            .map(|index| self.record(index))
            .collect()
    }

    /// Write [`Fleet::records`] to `path` as a records file (atomically).
    pub fn write_records(&self, path: &Path) -> io::Result<()> {
        write_records_file(path, &self.records())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for engine in &self.engines {
            engine.begin_stop();
        }
        for engine in &mut self.engines {
            engine.finish_stop();
        }
    }
}
