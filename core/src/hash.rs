//! A fixed-seed hasher for game ids.
//!
//! The core must be deterministic (no randomness), so it cannot use the
//! standard library's randomly seeded `RandomState`; it must also be fast,
//! since a map lookup is most of the cost of `step`. This is the FxHash
//! algorithm used inside rustc (the `rustc-hash` crate, version 1), written
//! out here because the core depends on serde and one timestamp type only.
//! Game ids come from the runtime manager's own records, not from engines,
//! so hash flooding by an outsider is not a concern.

use std::hash::{BuildHasherDefault, Hasher};

/// `BuildHasher` for the per-game map.
pub(crate) type GameIdHash = BuildHasherDefault<GameIdHasher>;

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// FxHash state: one word, rotated, xored and multiplied per input word.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct GameIdHasher {
    hash: u64,
}

impl GameIdHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for GameIdHasher {
    #[inline]
    fn write(&mut self, mut bytes: &[u8]) {
        while let Some((chunk, rest)) = bytes.split_first_chunk::<8>() {
            self.add(u64::from_le_bytes(*chunk));
            bytes = rest;
        }
        if let Some((chunk, rest)) = bytes.split_first_chunk::<4>() {
            self.add(u64::from(u32::from_le_bytes(*chunk)));
            bytes = rest;
        }
        for &byte in bytes {
            self.add(u64::from(byte));
        }
    }

    #[inline]
    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::GameIdHash;

    #[test]
    fn same_id_same_hash_across_builders() {
        let a = GameIdHash::default().hash_one("game-42");
        let b = GameIdHash::default().hash_one("game-42");
        assert_eq!(a, b);
        assert_ne!(a, GameIdHash::default().hash_one("game-43"));
    }
}
