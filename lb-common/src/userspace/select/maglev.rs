//! Weighted Maglev lookup tables (Eisenbud et al., "Maglev: A Fast and
//! Reliable Software Network Load Balancer", NSDI 2016, §3.4).
//!
//! Each backend gets a permutation of the table's slots from two hashes of its
//! stable key (e.g. `"198.18.1.11:8080"`): `offset = h1 % M`,
//! `skip = h2 % (M - 1) + 1`, slot `j` of the permutation is
//! `(offset + j * skip) % M`. M is prime, so every permutation visits every
//! slot. Backends then take turns claiming their next preferred slot that is
//! still free, until the table is full.
//!
//! **Weights: weight-proportional turns** (the scheme Katran's Maglev V2
//! uses). Every round each backend adds its weight to a credit; a backend
//! takes a turn only when its credit reaches the largest weight `W`, and then
//! pays `W`. Backend `i` thus takes `w_i / W` turns per round on average, so
//! it ends with ≈ `w_i / Σw` of the slots, and with equal weights this is
//! exactly the paper's algorithm (one turn each per round). Weight 0 means no
//! slots at all.
//!
//! **Determinism.** The result depends only on the *set* of backends, the
//! size and the seed: backends are sorted by `(key, id)` before the turns
//! start, and the permutation hashes are fixed here and version-stable:
//!
//! ```text
//! h   = FNV-1a-64(seed as 4 little-endian bytes ‖ key bytes)
//! h1  = fmix64(h ^ 0x9e37_79b9_7f4a_7c15)   // offset
//! h2  = fmix64(h ^ 0xc2b2_ae3d_27d4_eb4f)   // skip
//! ```
//!
//! where `fmix64` is MurmurHash3's 64-bit finaliser. Several LB nodes with the
//! same backends, size and seed therefore build identical tables, and any
//! change to this hashing is a breaking change (a test pins a table).

use super::{flow_hash, Algorithm, Candidate, Flow, HashOptions, Picks, Selection};
use crate::{hash::WordDigest, lb::NO_BACKEND};

/// Largest table size accepted (the config allows 251..=1_000_003).
pub const MAX_TABLE_SIZE: u32 = 1_000_003;

/// One backend as Maglev sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaglevBackend {
    /// Value stored in the table slots (a backend id in the data path maps).
    pub id: u32,
    /// Stable identity that places the backend's permutation, e.g.
    /// `"198.18.1.11:8080"`. Must not depend on ids or list order.
    pub key: String,
    /// Relative weight; 0 = gets no slots.
    pub weight: u32,
}

/// Why a table could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MaglevError {
    #[error("Maglev table size {0} is not a prime number (Maglev needs a prime size, e.g. 65537)")]
    NotPrime(u32),
    #[error("Maglev table size {size} is larger than the maximum {max}")]
    TooLarge { size: u32, max: u32 },
    #[error("backend id {0:#x} is reserved (NO_BACKEND marks empty slots)")]
    ReservedId(u32),
    #[error("backend key {0:?} appears more than once; keys must be unique")]
    DuplicateKey(String),
    #[error("slot {slot} of the Maglev table holds backend id {id}, which names no backend")]
    UnknownId { slot: usize, id: u32 },
}

/// Whether `n` is prime (deterministic trial division by 6k±1; fine for table
/// sizes).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n < 4 {
        return true;
    }
    if n.is_multiple_of(2) || n.is_multiple_of(3) {
        return false;
    }
    let n = u64::from(n);
    let mut i = 5u64;
    while i * i <= n {
        if n.is_multiple_of(i) || n.is_multiple_of(i + 2) {
            return false;
        }
        i += 6;
    }
    true
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a over the concatenation of `parts`.
fn fnv1a64(parts: &[&[u8]]) -> u64 {
    parts.iter().flat_map(|p| p.iter()).fold(FNV_OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// `(offset, skip)` of a backend's permutation in a table of prime `size`.
fn offset_skip(key: &str, seed: u32, size: u32) -> (u64, u64) {
    let h = fnv1a64(&[&seed.to_le_bytes(), key.as_bytes()]);
    let m = u64::from(size);
    let offset = fmix64(h ^ 0x9e37_79b9_7f4a_7c15) % m;
    let skip = if m > 1 { fmix64(h ^ 0xc2b2_ae3d_27d4_eb4f) % (m - 1) + 1 } else { 1 };
    (offset, skip)
}

/// Builds a weighted Maglev table of `size` slots (prime, at most
/// [`MAX_TABLE_SIZE`]). Every slot holds a backend id; with no backend of
/// non-zero weight every slot is [`NO_BACKEND`]. The order of `backends` does
/// not matter.
pub fn build_table(backends: &[MaglevBackend], size: u32, seed: u32) -> Result<Vec<u32>, MaglevError> {
    if !is_prime(size) {
        return Err(MaglevError::NotPrime(size));
    }
    if size > MAX_TABLE_SIZE {
        return Err(MaglevError::TooLarge { size, max: MAX_TABLE_SIZE });
    }
    let mut sorted: Vec<&MaglevBackend> = backends.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key).then(a.id.cmp(&b.id)));
    for pair in sorted.windows(2) {
        if pair[0].key == pair[1].key {
            return Err(MaglevError::DuplicateKey(pair[0].key.clone()));
        }
    }
    if let Some(b) = sorted.iter().find(|b| b.id == NO_BACKEND) {
        return Err(MaglevError::ReservedId(b.id));
    }
    sorted.retain(|b| b.weight > 0);

    let mut table = vec![NO_BACKEND; size as usize];
    let Some(max_weight) = sorted.iter().map(|b| u64::from(b.weight)).max() else {
        return Ok(table);
    };

    struct Turn {
        id: u32,
        weight: u64,
        credit: u64,
        pos: u64,
        skip: u64,
    }
    let m = u64::from(size);
    let mut turns: Vec<Turn> = sorted
        .iter()
        .map(|b| {
            let (offset, skip) = offset_skip(&b.key, seed, size);
            Turn { id: b.id, weight: u64::from(b.weight), credit: 0, pos: offset, skip }
        })
        .collect();

    let mut filled = 0usize;
    loop {
        for t in &mut turns {
            t.credit += t.weight;
            if t.credit < max_weight {
                continue;
            }
            t.credit -= max_weight;
            // Next free slot in this backend's permutation. It visits every
            // slot, and at least one is free, so this ends.
            while table[t.pos as usize] != NO_BACKEND {
                t.pos = (t.pos + t.skip) % m;
            }
            table[t.pos as usize] = t.id;
            t.pos = (t.pos + t.skip) % m;
            filled += 1;
            if filled == table.len() {
                return Ok(table);
            }
        }
    }
}

/// A digest of a table's *contents*: which backend key each slot sends to,
/// slot by slot. It does not depend on the ids a node happened to give its
/// backends, so LB nodes with the same backends, size and seed show the same
/// fingerprint, and any difference in a slot (another seed, weight, size or
/// set of healthy backends) changes it. Shown as 8 hex digits.
///
/// ```text
/// key digest  = WordDigest(0x6d61_676c) over the key's bytes   (hash::WordDigest)
/// fingerprint = WordDigest(0) over one word per slot: 0 for an empty slot,
///               else the slot's key digest
/// ```
///
/// It is a checksum for comparing nodes (32 bits: one chance in 2^32 that two
/// different tables look equal), not a security measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TableFingerprint(pub u32);

impl std::fmt::Display for TableFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// The fingerprint of `table`, whose slots hold backend ids; `key_of(id)`
/// gives an id's stable key (`"198.18.1.11:8080"`), `None` for an id that
/// names no backend (an error: the table is inconsistent).
pub fn fingerprint<K: AsRef<str>>(table: &[u32], mut key_of: impl FnMut(u32) -> Option<K>) -> Result<TableFingerprint, MaglevError> {
    let mut keys: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    let mut d = WordDigest::new(0);
    for (slot, &id) in table.iter().enumerate() {
        if id == NO_BACKEND {
            d.push(0);
            continue;
        }
        let word = match keys.get(&id) {
            Some(w) => *w,
            None => {
                let key = key_of(id).ok_or(MaglevError::UnknownId { slot, id })?;
                let mut k = WordDigest::new(KEY_DIGEST_SEED);
                k.push_bytes(key.as_ref().as_bytes());
                *keys.entry(id).or_insert(k.finish())
            }
        };
        d.push(word);
    }
    Ok(TableFingerprint(d.finish()))
}

/// `"magl"`: keeps key digests apart from the table digest's words.
const KEY_DIGEST_SEED: u32 = 0x6d61_676c;

/// Maglev lookup as the XDP program does it: `table[flow_hash % size]`, on
/// the 5-tuple or (`maglev_src`) the source address.
#[derive(Clone, Debug)]
pub struct MaglevSelection {
    table: Vec<u32>,
    ring: Vec<u32>,
    seed: u32,
    source_only: bool,
}

impl MaglevSelection {
    /// Builds the table over `candidates` (already the eligible ones).
    pub fn new(candidates: &[Candidate], hash: HashOptions, source_only: bool) -> Result<MaglevSelection, MaglevError> {
        let ring: Vec<MaglevBackend> = candidates.iter().map(|c| MaglevBackend { id: c.id, key: c.key.clone(), weight: c.weight }).collect();
        let table = build_table(&ring, hash.maglev_size, hash.seed)?;
        Ok(MaglevSelection { table, ring: candidates.iter().map(|c| c.id).collect(), seed: hash.seed, source_only })
    }

    /// The lookup table, slot by slot (what lb-user writes into the map).
    pub fn table(&self) -> &[u32] {
        &self.table
    }
}

impl Selection for MaglevSelection {
    fn algorithm(&self) -> Algorithm {
        if self.source_only {
            Algorithm::MaglevSrc
        } else {
            Algorithm::Maglev
        }
    }
    fn pick(&self, flow: &Flow) -> Picks<'_> {
        let start = flow_hash(flow, self.seed, self.source_only)
            .map(|h| self.table[h as usize % self.table.len()])
            .filter(|&id| id != NO_BACKEND)
            .and_then(|id| self.ring.binary_search(&id).ok());
        Picks::from(&self.ring, start)
    }
    fn ids(&self) -> &[u32] {
        &self.ring
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const M: u32 = 65537;

    fn backends(weights: &[u32]) -> Vec<MaglevBackend> {
        weights.iter().enumerate().map(|(i, &w)| MaglevBackend { id: i as u32, key: format!("198.18.1.{}:8080", 11 + i), weight: w }).collect()
    }

    fn counts(table: &[u32]) -> HashMap<u32, usize> {
        let mut c = HashMap::new();
        for &id in table {
            *c.entry(id).or_insert(0) += 1;
        }
        c
    }

    #[test]
    fn primes() {
        let small: Vec<u32> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(small, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(251) && is_prime(65537) && is_prime(1_000_003) && is_prime(4_294_967_291));
        assert!(!is_prime(65536) && !is_prime(1_000_001) && !is_prime(25) && !is_prime(u32::MAX));
    }

    #[test]
    fn rejects_bad_sizes_ids_and_keys() {
        assert_eq!(build_table(&backends(&[1]), 65536, 0), Err(MaglevError::NotPrime(65536)));
        assert_eq!(build_table(&[], 0, 0), Err(MaglevError::NotPrime(0)));
        assert!(matches!(build_table(&[], 4_294_967_291, 0), Err(MaglevError::TooLarge { .. })));
        let reserved = [MaglevBackend { id: NO_BACKEND, key: "a".into(), weight: 1 }];
        assert_eq!(build_table(&reserved, 251, 0), Err(MaglevError::ReservedId(NO_BACKEND)));
        let mut dup = backends(&[1, 1]);
        dup[1].key = dup[0].key.clone();
        assert!(matches!(build_table(&dup, 251, 0), Err(MaglevError::DuplicateKey(_))));
        assert!(MaglevError::NotPrime(65536).to_string().contains("65536"));
    }

    #[test]
    fn empty_or_zero_weight_gives_no_backend_everywhere() {
        assert!(build_table(&[], 251, 0).unwrap().iter().all(|&s| s == NO_BACKEND));
        assert!(build_table(&backends(&[0, 0]), 251, 0).unwrap().iter().all(|&s| s == NO_BACKEND));
        let t = build_table(&backends(&[0, 1]), 251, 0).unwrap();
        assert!(t.iter().all(|&s| s == 1));
    }

    #[test]
    fn every_slot_is_filled() {
        for n in [1, 2, 3, 7, 10, 100] {
            let t = build_table(&backends(&vec![1; n]), M, 9).unwrap();
            assert_eq!(t.len(), M as usize);
            assert!(t.iter().all(|&s| (s as usize) < n), "{n} backends");
        }
        // More backends than slots still terminates with every slot filled.
        let t = build_table(&backends(&vec![1; 300]), 251, 0).unwrap();
        assert!(t.iter().all(|&s| s < 300));
    }

    #[test]
    fn equal_weights_share_within_one_percent() {
        for n in [3usize, 10, 64] {
            let t = build_table(&backends(&vec![1; n]), M, 0).unwrap();
            let c = counts(&t);
            let share = f64::from(M) / n as f64;
            for id in 0..n as u32 {
                let got = c[&id] as f64;
                assert!((got - share).abs() / share < 0.01, "{n} backends: id {id} has {got}, share {share}");
            }
        }
    }

    #[test]
    fn weights_are_proportional() {
        for weights in [[1u32, 2, 3], [3, 1, 2], [10, 20, 30]] {
            let t = build_table(&backends(&weights), M, 42).unwrap();
            let c = counts(&t);
            let total: u32 = weights.iter().sum();
            for (id, &w) in weights.iter().enumerate() {
                let share = f64::from(M) * f64::from(w) / f64::from(total);
                let got = c[&(id as u32)] as f64;
                assert!((got - share).abs() / share < 0.01, "{weights:?}: id {id} has {got}, share {share}");
            }
        }
        // Odd ratios too (7:1).
        let t = build_table(&backends(&[7, 1]), M, 0).unwrap();
        let c = counts(&t);
        let share1 = f64::from(M) / 8.0;
        assert!((c[&1] as f64 - share1).abs() / share1 < 0.01);
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let b = backends(&[1, 2, 3, 1, 1]);
        let a = build_table(&b, M, 7).unwrap();
        assert_eq!(a, build_table(&b, M, 7).unwrap());
        let other = build_table(&b, M, 8).unwrap();
        let differ = a.iter().zip(&other).filter(|(x, y)| x != y).count();
        assert!(differ > M as usize / 2, "only {differ} slots differ between seeds");
    }

    #[test]
    fn input_order_does_not_matter() {
        let b = backends(&[1, 2, 3, 1, 5, 1, 1]);
        let mut r = b.clone();
        r.reverse();
        let mut s = b.clone();
        s.swap(0, 4);
        s.swap(2, 6);
        let t = build_table(&b, M, 3).unwrap();
        assert_eq!(t, build_table(&r, M, 3).unwrap());
        assert_eq!(t, build_table(&s, M, 3).unwrap());
    }

    #[test]
    fn removing_a_backend_disrupts_little() {
        let all = backends(&[1; 10]);
        let before = build_table(&all, M, 0).unwrap();
        for removed in [0u32, 4, 9] {
            let rest: Vec<_> = all.iter().filter(|b| b.id != removed).cloned().collect();
            let after = build_table(&rest, M, 0).unwrap();
            let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
            let between_survivors = before.iter().zip(&after).filter(|(&a, &b)| a != b && a != removed).count();
            assert!(changed < 2 * M as usize / 10, "removing {removed}: {changed} slots changed");
            assert!(between_survivors < M as usize / 100, "removing {removed}: {between_survivors} moved between survivors");
            // Every slot of the removed backend moved.
            assert!(after.iter().all(|&s| s != removed));
        }
    }

    #[test]
    fn table_is_pinned_across_releases() {
        // LB nodes of different versions must build identical tables: if this
        // fails, the hashing or the turn order changed (a breaking change).
        let t = build_table(&backends(&[1, 1, 2]), 251, 0).unwrap();
        let head: Vec<u32> = t[..16].to_vec();
        assert_eq!(head, PINNED_HEAD);
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(&[b"foo", b"bar"]), 0x8594_4171_f739_67e8);
    }

    fn key_map(b: &[MaglevBackend]) -> HashMap<u32, String> {
        b.iter().map(|b| (b.id, b.key.clone())).collect()
    }

    fn fp(b: &[MaglevBackend], size: u32, seed: u32) -> TableFingerprint {
        let keys = key_map(b);
        fingerprint(&build_table(b, size, seed).unwrap(), |id| keys.get(&id)).unwrap()
    }

    #[test]
    fn fingerprint_follows_keys_not_ids_or_order() {
        let a = backends(&[1, 2, 1, 3]);
        // Another node: the same backends listed in another order, with
        // other ids (another history of adds and removes).
        let mut b: Vec<MaglevBackend> = a.iter().rev().cloned().collect();
        for (i, x) in b.iter_mut().enumerate() {
            x.id = 100 + i as u32 * 7;
        }
        assert_ne!(build_table(&a, 251, 5).unwrap(), build_table(&b, 251, 5).unwrap(), "ids differ, so the raw slots differ");
        assert_eq!(fp(&a, 251, 5), fp(&b, 251, 5));
        assert_eq!(fp(&a, M, 5), fp(&b, M, 5));
        assert_ne!(fp(&a, 251, 5), fp(&a, 251, 6), "another seed");
        let mut heavier = a.clone();
        heavier[0].weight = 2;
        assert_ne!(fp(&a, 251, 5), fp(&heavier, 251, 5), "another weight");
        assert_ne!(fp(&a, 251, 5), fp(&a[1..], 251, 5), "a backend fewer");
        assert_ne!(fp(&a, 251, 5), fp(&a, 257, 5), "another size");
        assert_eq!(fp(&[], 251, 5), fp(&backends(&[0]), 251, 5), "all slots empty either way");
        assert_eq!(fp(&a, 251, 5).to_string().len(), 8);
    }

    #[test]
    fn fingerprint_rejects_unknown_ids_and_is_pinned() {
        let a = backends(&[1, 1, 2]);
        let t = build_table(&a, 251, 0).unwrap();
        let keys = key_map(&a[..2]);
        assert!(matches!(fingerprint(&t, |id| keys.get(&id)), Err(MaglevError::UnknownId { id: 2, .. })));
        // Nodes of different versions must agree: a change here is breaking.
        assert_eq!(fp(&a, 251, 0).to_string(), PINNED_FINGERPRINT);
    }

    const PINNED_FINGERPRINT: &str = "39b5be73";

    const PINNED_HEAD: [u32; 16] = [1, 1, 0, 0, 2, 1, 2, 1, 0, 2, 2, 2, 1, 0, 1, 2];
}
