//! `--shard I/N`: the pinned hash that says which instance owns a game.

use std::collections::BTreeMap;

use healthprobe_core::shard::{Shard, ShardError, shard_hash, shard_of};

#[test]
fn shard_the_hash_is_pinned_so_workers_of_every_version_agree() {
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
fn shard_the_shards_of_a_count_own_every_game_exactly_once_near_evenly() {
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

    for count in 1..=8u32 {
        let mut owner: BTreeMap<&str, u32> = BTreeMap::new();
        let mut sizes = vec![0usize; count as usize];
        for index in 0..count {
            let shard = Shard::new(index, count).expect("a valid shard");
            for game in games.iter().filter(|game| shard.owns(game)) {
                assert_eq!(shard_of(game, count), index);
                let previous = owner.insert(game, index);
                assert_eq!(
                    previous, None,
                    "{game} owned by shards {previous:?} and {index} of {count}"
                );
                sizes[index as usize] += 1;
            }
        }
        // Every game of the fleet is owned by exactly one shard.
        assert_eq!(owner.len(), games.len(), "{count} shards: games missing");
        // And the shards are near-balanced (within 10% of even).
        let even = games.len() / count as usize;
        for size in &sizes {
            assert!(
                size.abs_diff(even) * 10 <= even,
                "{count} shards: sizes {sizes:?}"
            );
        }
    }
    assert!(games.iter().all(|game| Shard::ALL.owns(game)));
}

#[test]
fn shard_sequential_ids_spread_evenly() {
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
fn shard_parses_i_of_n_and_rejects_what_is_not_with_a_clear_error() {
    assert_eq!("1/2".parse::<Shard>(), Shard::new(1, 2));
    assert_eq!("0/1".parse::<Shard>(), Ok(Shard::ALL));
    assert_eq!(Shard::new(1, 2).expect("valid").to_string(), "1/2");
    assert_eq!(
        "2/2".parse::<Shard>().map_err(|err| err.to_string()),
        Err("shard index 2 must be below the shard count 2".to_owned())
    );
    assert_eq!(
        "0/0".parse::<Shard>().map_err(|err| err.to_string()),
        Err("the shard count must be at least 1".to_owned())
    );
    for bad in ["", "1", "1/", "/2", "-1/2", "a/b", "1/2/3", " 1/2"] {
        assert_eq!(
            bad.parse::<Shard>(),
            Err(ShardError::Syntax(bad.to_owned())),
            "{bad:?}"
        );
    }
    assert_eq!(
        ShardError::Syntax("1".into()).to_string(),
        "\"1\" is not I/N (for example 0/2)"
    );
}
