//! One row of the runtime manager's records: the tick machine's input listing.

use serde::{Deserialize, Serialize};

/// One row of the runtime manager's records: a game and where its engine listens.
///
/// Serialized as in DESIGN.md's records format:
/// `{"game_id","current_container_id","engine_endpoint","status"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RuntimeRecord {
    /// The game's id; hysteresis state is kept per game.
    pub game_id: String,
    /// The container currently running the game's engine; events name it.
    pub current_container_id: String,
    /// The engine's base URL, for example `http://127.0.0.1:8080/` (R2 appends `/healthz`).
    pub engine_endpoint: String,
    /// The record's status; only `running` records are probed.
    pub status: String,
}

impl RuntimeRecord {
    /// The status of a record whose engine is probed.
    pub const RUNNING: &'static str = "running";

    /// A `running` record.
    pub fn running(
        game_id: impl Into<String>,
        current_container_id: impl Into<String>,
        engine_endpoint: impl Into<String>,
    ) -> Self {
        Self {
            game_id: game_id.into(),
            current_container_id: current_container_id.into(),
            engine_endpoint: engine_endpoint.into(),
            status: Self::RUNNING.to_owned(),
        }
    }

    /// Whether the record's status is `running`.
    pub fn is_running(&self) -> bool {
        self.status == Self::RUNNING
    }
}

/// The URL probed for an engine endpoint (R2): every trailing `/` trimmed,
/// then `/healthz`.
///
/// ```
/// use healthprobe_core::probe_url;
/// assert_eq!(probe_url("http://10.0.0.1:8080//"), "http://10.0.0.1:8080/healthz");
/// ```
pub fn probe_url(engine_endpoint: &str) -> String {
    const HEALTHZ_PATH: &str = "/healthz";
    let base = engine_endpoint.trim_end_matches('/');
    let mut url = String::with_capacity(base.len() + HEALTHZ_PATH.len());
    url.push_str(base);
    url.push_str(HEALTHZ_PATH);
    url
}
