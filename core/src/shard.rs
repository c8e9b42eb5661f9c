//! Which instance owns a game (`--shard I/N`): split one fleet between N
//! workers with no coordination.
//!
//! Every worker reads the same records and keeps only the games whose
//! [`shard_of`] is its index, so N workers with indices `0..N` probe every
//! game exactly once between them, each game always by the same worker:
//! hysteresis needs one owner per game, and a game's state (its counters,
//! its state file, its journal) lives with that worker. The tick machine
//! applies it to each listing ([`crate::tick::MachineConfig::shard`]).
//!
//! The hash is fixed forever, because workers of different versions must
//! agree during a rolling upgrade: 64-bit FNV-1a over the game id's UTF-8
//! bytes, then MurmurHash3's `fmix64` finalizer (FNV-1a alone leaves its
//! low bits weak, and `% N` reads the low bits), then `% N`. A test pins
//! the values of a few ids. Changing N moves most games to another worker,
//! where they start with fresh counters, like a restart without a state file.

use std::fmt;
use std::str::FromStr;

/// One worker's part of the fleet: index `index` of `count` (`I/N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// The whole fleet (`0/1`): every game.
    pub const ALL: Self = Self { index: 0, count: 1 };

    /// Shard `index` of `count`; `count` ≥ 1 and `index` < `count`.
    pub fn new(index: u32, count: u32) -> Result<Self, ShardError> {
        if count == 0 {
            return Err(ShardError::ZeroCount);
        }
        if index >= count {
            return Err(ShardError::IndexTooLarge { index, count });
        }
        Ok(Self { index, count })
    }

    /// This shard's index, `I`.
    pub fn index(self) -> u32 {
        self.index
    }

    /// How many shards split the fleet, `N`.
    pub fn count(self) -> u32 {
        self.count
    }

    /// Whether `game_id` belongs to this shard.
    pub fn owns(self, game_id: &str) -> bool {
        shard_of(game_id, self.count) == self.index
    }
}

impl Default for Shard {
    fn default() -> Self {
        Self::ALL
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    /// `I/N`, for example `0/2` and `1/2`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| ShardError::Syntax(text.to_owned()))?;
        let parse = |part: &str| {
            part.parse::<u32>()
                .map_err(|_| ShardError::Syntax(text.to_owned()))
        };
        Self::new(parse(index)?, parse(count)?)
    }
}

/// Why a shard is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardError {
    /// Not `I/N` with two non-negative integers.
    Syntax(String),
    /// `N` is zero.
    ZeroCount,
    /// `I` is not below `N`.
    IndexTooLarge {
        /// `I`.
        index: u32,
        /// `N`.
        count: u32,
    },
}

impl fmt::Display for ShardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(text) => write!(f, "{text:?} is not I/N (for example 0/2)"),
            Self::ZeroCount => f.write_str("the shard count must be at least 1"),
            Self::IndexTooLarge { index, count } => write!(
                f,
                "shard index {index} must be below the shard count {count}"
            ),
        }
    }
}

impl std::error::Error for ShardError {}

/// The shard of `count` that owns `game_id`: `fmix64(fnv1a64(game_id)) % count`.
///
/// A `count` of 0 is taken as 1 (every game in shard 0).
pub fn shard_of(game_id: &str, count: u32) -> u32 {
    let reduced = shard_hash(game_id) % u64::from(count.max(1));
    u32::try_from(reduced).unwrap_or_default()
}

/// The stable 64-bit hash that assigns games to shards.
pub fn shard_hash(game_id: &str) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET;
    for byte in game_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    // MurmurHash3's fmix64: every input bit reaches the low bits.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    hash
}
