//! `--shard I/N`: split one fleet between N workers with no coordination.
//!
//! Every worker reads the same records and keeps only the games whose
//! [`shard_of`] is its index, so N workers with indices `0..N` probe every
//! game exactly once between them, each game always by the same worker:
//! hysteresis needs one owner per game, and a game's state (its counters,
//! its state file, its journal) lives with that worker.
//!
//! The hash is fixed forever, because workers of different versions must
//! agree during a rolling upgrade: 64-bit FNV-1a over the game id's UTF-8
//! bytes, then MurmurHash3's `fmix64` finalizer (FNV-1a alone leaves its
//! low bits weak, and `% N` reads the low bits), then `% N`. A test pins
//! the values of a few ids. Changing N moves most games to another worker,
//! where they start with fresh counters, like a restart without a state file.

use std::fmt;
use std::str::FromStr;

use crate::ports::{ListError, RuntimeRecord, RuntimeRecordStore};

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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Not `I/N` with two non-negative integers.
    #[error("{0:?} is not I/N (for example 0/2)")]
    Syntax(String),
    /// `N` is zero.
    #[error("the shard count must be at least 1")]
    ZeroCount,
    /// `I` is not below `N`.
    #[error("shard index {index} must be below the shard count {count}")]
    IndexTooLarge {
        /// `I`.
        index: u32,
        /// `N`.
        count: u32,
    },
}

/// The shard of `count` that owns `game_id`: `fmix64(fnv1a64(game_id)) % count`.
///
/// `count` must be at least 1.
pub fn shard_of(game_id: &str, count: u32) -> u32 {
    debug_assert!(count > 0, "a shard count is at least 1");
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

/// A record store that lists only one shard's games.
///
/// Filters each listing by game id, so every record of a game (duplicates
/// included, D3) lands in the same shard, and the worker prunes (R8)
/// against its own shard's games only.
#[derive(Debug, Clone)]
pub struct Sharded<S> {
    inner: S,
    shard: Shard,
}

impl<S> Sharded<S> {
    /// `inner`'s records, restricted to `shard`.
    pub fn new(inner: S, shard: Shard) -> Self {
        Self { inner, shard }
    }

    /// The shard this store lists.
    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: RuntimeRecordStore> RuntimeRecordStore for Sharded<S> {
    fn list_running(&mut self) -> Result<Vec<RuntimeRecord>, ListError> {
        let mut records = self.inner.list_running()?;
        if self.shard != Shard::ALL {
            records.retain(|record| self.shard.owns(&record.game_id));
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::MemoryStore;

    #[test]
    fn the_hash_is_pinned_so_workers_of_every_version_agree() {
        // Changing these values reassigns games between running workers.
        // Computed by an independent Python transcription of the doc comment.
        assert_eq!(shard_hash(""), 0xefd0_1f60_ba99_2926);
        let pinned: Vec<u32> = ["g1", "g2", "game-0001", "game-0002", "ünïcödé"]
            .iter()
            .map(|id| shard_of(id, 7))
            .collect();
        assert_eq!(pinned, [0, 6, 5, 4, 2]);
    }

    #[test]
    fn shards_of_a_count_cover_every_game_exactly_once() {
        use std::collections::BTreeMap;

        // A generated fleet: sequential ids, UUID-like ids from a fixed
        // xorshift, and a few odd ones (empty, unicode, long).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut games: Vec<String> = (0..3_000).map(|n| format!("game-{n:04}")).collect();
        games.extend((0..3_000).map(|_| {
            let (a, b) = (next(), next());
            format!(
                "{:08x}-{:04x}-{:012x}",
                a >> 32,
                b >> 48,
                b & 0xffff_ffff_ffff
            )
        }));
        games.extend(["", "ünïcödé", "g", &"x".repeat(300)].map(str::to_owned));
        let records: Vec<RuntimeRecord> = games
            .iter()
            .map(|game| RuntimeRecord::running(game.clone(), format!("c-{game}"), "http://h/"))
            .collect();
        let store = MemoryStore::with_records(records.clone());

        for count in 1..=8u32 {
            // Each shard's listing, through the store wrapper the CLI uses.
            let mut owner: BTreeMap<String, u32> = BTreeMap::new();
            let mut sizes = Vec::new();
            for index in 0..count {
                let shard = Shard::new(index, count).expect("a valid shard");
                let listed = Sharded::new(store.clone(), shard)
                    .list_running()
                    .expect("the memory store lists");
                sizes.push(listed.len());
                for record in listed {
                    assert_eq!(
                        shard_of(&record.game_id, count),
                        index,
                        "{} listed by shard {index}/{count}",
                        record.game_id
                    );
                    assert!(shard.owns(&record.game_id));
                    let previous = owner.insert(record.game_id.clone(), index);
                    assert_eq!(
                        previous, None,
                        "{} listed by shards {previous:?} and {index} of {count}",
                        record.game_id
                    );
                }
            }
            // Every game of the fleet is in exactly one shard's listing.
            assert_eq!(owner.len(), games.len(), "{count} shards: games missing");
            assert_eq!(sizes.iter().sum::<usize>(), games.len());
            // And the shards are near-balanced (within 10% of even).
            let even = games.len() / count as usize;
            for size in &sizes {
                assert!(
                    size.abs_diff(even) * 10 <= even,
                    "{count} shards: sizes {sizes:?}"
                );
            }
        }
        // The listing kept every other field as the store had it.
        let all = Sharded::new(store, Shard::ALL)
            .list_running()
            .expect("lists");
        assert_eq!(all, records);
    }

    #[test]
    fn sequential_ids_spread_evenly() {
        for count in [2u32, 3, 4, 5, 8] {
            let mut sizes = vec![0u32; count as usize];
            for n in 0..20_000 {
                sizes[shard_of(&format!("game-{n}"), count) as usize] += 1;
            }
            let even = 20_000 / count;
            for size in &sizes {
                assert!(
                    size.abs_diff(even) * 100 < even * 5,
                    "{count} shards: sizes {sizes:?}"
                );
            }
        }
    }

    #[test]
    fn parses_i_of_n_and_rejects_what_is_not() {
        assert_eq!("1/2".parse::<Shard>(), Ok(Shard::new(1, 2).unwrap()));
        assert_eq!("0/1".parse::<Shard>(), Ok(Shard::ALL));
        assert_eq!("1/2".parse::<Shard>().unwrap().to_string(), "1/2");
        assert_eq!(
            "2/2".parse::<Shard>().unwrap_err().to_string(),
            "shard index 2 must be below the shard count 2"
        );
        assert_eq!(
            "0/0".parse::<Shard>().unwrap_err().to_string(),
            "the shard count must be at least 1"
        );
        for bad in ["", "1", "1/", "/2", "-1/2", "a/b", "1/2/3", " 1/2"] {
            assert_eq!(
                bad.parse::<Shard>(),
                Err(ShardError::Syntax(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn sharded_store_keeps_only_its_games_and_every_duplicate_of_them() {
        let records: Vec<RuntimeRecord> = (0..50)
            .flat_map(|n| {
                let game = format!("game-{n}");
                [
                    RuntimeRecord::running(&game, "c-first", "http://127.0.0.1:1"),
                    RuntimeRecord::running(&game, "c-second", "http://127.0.0.1:2"),
                ]
            })
            .collect();
        let store = MemoryStore::with_records(records.clone());
        let mut listed = Vec::new();
        for index in 0..3 {
            let mut sharded = Sharded::new(store.clone(), Shard::new(index, 3).unwrap());
            let part = sharded.list_running().unwrap();
            assert!(part.iter().all(|r| shard_of(&r.game_id, 3) == index));
            listed.extend(part);
        }
        listed.sort_by(|a, b| {
            (&a.game_id, &a.current_container_id).cmp(&(&b.game_id, &b.current_container_id))
        });
        let mut expected = records;
        expected.sort_by(|a, b| {
            (&a.game_id, &a.current_container_id).cmp(&(&b.game_id, &b.current_container_id))
        });
        assert_eq!(listed, expected);
    }

    #[test]
    fn a_listing_error_passes_through() {
        let store = MemoryStore::new();
        store.fail_next(1);
        let mut sharded = Sharded::new(store, Shard::new(0, 2).unwrap());
        assert!(matches!(
            sharded.list_running(),
            Err(ListError::Unavailable(message)) if message.contains("simulated listing failure")
        ));
    }
}
