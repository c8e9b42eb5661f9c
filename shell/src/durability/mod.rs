//! Durability: the state file (D5) and the journal file (D6).

pub mod durable;
pub mod journal_file;
