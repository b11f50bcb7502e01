//! A fast hash for maps keyed by numbers the worker itself hands out or the host assigns:
//! node ids, handle ids, host (device, inode) pairs.
//!
//! The standard SipHash guards against keys chosen to collide, at a price: it was about a
//! tenth of a LOOKUP's CPU time in the worker's user space across the three or four such maps
//! a request touches (docs/performance.md). Few keys of these maps can be chosen by anyone
//! (node and handle ids are ours, inode numbers the host filesystem's); the exception is the
//! node and handle ids of a migration stream, which a hostile source could pick to collide in
//! a known hash and make the destination's load quadratic. So the hash still starts from a
//! per-process random seed (taken from the standard library's own random keys), and every step
//! of it is a bijection of 64-bit words mixed with multiplications: without the seed, which
//! ids share a bucket cannot be predicted.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

/// A `HashMap` for numeric keys (see the module docs for when it may be used).
pub type IdMap<K, V> = HashMap<K, V, IdBuildHasher>;

/// Creates an empty [`IdMap`].
pub fn id_map<K, V>() -> IdMap<K, V> {
    HashMap::with_hasher(IdBuildHasher::default())
}

/// Creates an empty [`IdMap`] with room for `n` entries.
pub fn id_map_with_capacity<K, V>(n: usize) -> IdMap<K, V> {
    HashMap::with_capacity_and_hasher(n, IdBuildHasher::default())
}

/// This process's seed, drawn once.
fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| RandomState::new().hash_one(0x6673_6a61_696c_u64))
}

/// Builds [`IdHasher`]s that start from this process's seed.
#[derive(Clone, Copy)]
pub struct IdBuildHasher {
    seed: u64,
}

impl Default for IdBuildHasher {
    fn default() -> Self {
        IdBuildHasher { seed: seed() }
    }
}

impl BuildHasher for IdBuildHasher {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.seed)
    }
}

/// Odd 64-bit constants of the SplitMix64 finaliser (public domain, Vigna).
const MIX_1: u64 = 0xbf58_476d_1ce4_e5b9;
const MIX_2: u64 = 0x94d0_49bb_1331_11eb;

/// The hasher of [`IdMap`]; only [`IdBuildHasher`] makes one.
#[derive(Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Each word is folded in with a multiply, so that (a, b) and (b, a) differ.
        self.0 = (self.0 ^ n).wrapping_mul(MIX_1).rotate_left(29);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        // The table uses the low bits for the bucket and the top 7 for its tag: mix every
        // input bit into both.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(MIX_1);
        z = (z ^ (z >> 27)).wrapping_mul(MIX_2);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn hash<T: std::hash::Hash>(v: T) -> u64 {
        IdBuildHasher::default().hash_one(v)
    }

    #[test]
    fn sequential_ids_spread_over_buckets_and_tags() {
        // 65,536 sequential ids: their low 12 bits (a 4096-bucket table) and top 7 bits must
        // each take many values, or the table degrades into long probe chains.
        let low: HashSet<u64> = (0..65_536u64).map(|i| hash(i) & 0xfff).collect();
        let top: HashSet<u64> = (0..65_536u64).map(|i| hash(i) >> 57).collect();
        assert!(low.len() > 4000, "{} of 4096 buckets used", low.len());
        assert_eq!(top.len(), 128);
    }

    #[test]
    fn another_seed_is_another_hash() {
        let a = IdBuildHasher { seed: 1 }.hash_one(42u64);
        let b = IdBuildHasher { seed: 2 }.hash_one(42u64);
        assert_ne!(a, b);
        assert_eq!(a, IdBuildHasher { seed: 1 }.hash_one(42u64));
    }

    #[test]
    fn word_order_matters_and_maps_work() {
        assert_ne!(hash((1u64, 2u64)), hash((2u64, 1u64)));
        let mut m: IdMap<(u64, u64), u32> = id_map();
        for i in 0..1000u64 {
            m.insert((7, i), i as u32);
        }
        assert_eq!(m.get(&(7, 999)), Some(&999));
        assert_eq!(m.len(), 1000);
    }
}
