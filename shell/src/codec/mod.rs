//! Codecs: journal lines (D6) and event lines (Go `encoding/json` escaping).

pub mod journal;
pub mod wire;
