//! The non-Maglev algorithms. Each is built from the eligible candidates
//! (healthy, weight > 0, ascending id; see `super::build`) and keeps only
//! what it needs of them.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Mutex,
};

use super::{addr16, Algorithm, Candidate, Flow, Picks, Selection};
use crate::hash::src_hash;

fn ids(c: &[Candidate]) -> Vec<u32> {
    c.iter().map(|c| c.id).collect()
}

/// Each candidate in turn (one shared cursor), weights ignored — the same
/// walk the XDP program makes over its round-robin list.
#[derive(Debug)]
pub struct RoundRobin {
    ring: Vec<u32>,
    cursor: AtomicUsize,
}

impl RoundRobin {
    pub fn new(c: &[Candidate]) -> RoundRobin {
        RoundRobin { ring: ids(c), cursor: AtomicUsize::new(0) }
    }
}

impl Selection for RoundRobin {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RoundRobin
    }
    fn pick(&self, _: &Flow) -> Picks<'_> {
        let n = self.ring.len();
        let start = (n > 0).then(|| self.cursor.fetch_add(1, Ordering::Relaxed) % n);
        Picks::from(&self.ring, start)
    }
    fn ids(&self) -> &[u32] {
        &self.ring
    }
}

/// nginx's smooth weighted round robin: weights 5,1,1 give a a b a c a a
/// rather than a a a a a b c, so no backend gets bursts.
#[derive(Debug)]
pub struct SmoothWeighted {
    ring: Vec<u32>,
    weights: Vec<i64>,
    current: Mutex<Vec<i64>>,
}

impl SmoothWeighted {
    pub fn new(c: &[Candidate]) -> SmoothWeighted {
        SmoothWeighted { ring: ids(c), weights: c.iter().map(|c| i64::from(c.weight)).collect(), current: Mutex::new(vec![0; c.len()]) }
    }
}

impl Selection for SmoothWeighted {
    fn algorithm(&self) -> Algorithm {
        Algorithm::WeightedRoundRobin
    }
    fn pick(&self, _: &Flow) -> Picks<'_> {
        if self.ring.is_empty() {
            return Picks::from(&self.ring, None);
        }
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let total: i64 = self.weights.iter().sum();
        let mut best = 0;
        for i in 0..cur.len() {
            cur[i] += self.weights[i];
            if cur[i] > cur[best] {
                best = i;
            }
        }
        cur[best] -= total;
        Picks::from(&self.ring, Some(best))
    }
    fn ids(&self) -> &[u32] {
        &self.ring
    }
}

/// `a` carries less load per weight than `b` (compared without division).
fn lighter(a: &Candidate, b: &Candidate) -> bool {
    a.load.get() * u64::from(b.weight) < b.load.get() * u64::from(a.weight)
}

/// Fewest in flight relative to weight; ties rotate so an idle pool still
/// spreads its load.
#[derive(Debug)]
pub struct LeastConnections {
    ring: Vec<u32>,
    candidates: Vec<Candidate>,
    ties: AtomicUsize,
}

impl LeastConnections {
    pub fn new(candidates: Vec<Candidate>) -> LeastConnections {
        LeastConnections { ring: ids(&candidates), candidates, ties: AtomicUsize::new(0) }
    }
}

impl Selection for LeastConnections {
    fn algorithm(&self) -> Algorithm {
        Algorithm::LeastConnections
    }
    fn pick(&self, _: &Flow) -> Picks<'_> {
        let c = &self.candidates;
        let mut best: Vec<usize> = Vec::new();
        for i in 0..c.len() {
            match best.first() {
                None => best.push(i),
                Some(&b) if lighter(&c[i], &c[b]) => {
                    best.clear();
                    best.push(i);
                }
                Some(&b) if !lighter(&c[b], &c[i]) => best.push(i),
                Some(_) => {}
            }
        }
        let start = (!best.is_empty()).then(|| best[self.ties.fetch_add(1, Ordering::Relaxed) % best.len()]);
        Picks::from(&self.ring, start)
    }
    fn ids(&self) -> &[u32] {
        &self.ring
    }
}

/// Power of two choices: two distinct random candidates, the one with less
/// load per weight wins. Nearly least-connections quality without a scan,
/// and no herd onto a single "least" backend.
#[derive(Debug)]
pub struct PowerOfTwo {
    ring: Vec<u32>,
    candidates: Vec<Candidate>,
}

impl PowerOfTwo {
    pub fn new(candidates: Vec<Candidate>) -> PowerOfTwo {
        PowerOfTwo { ring: ids(&candidates), candidates }
    }
}

impl Selection for PowerOfTwo {
    fn algorithm(&self) -> Algorithm {
        Algorithm::PowerOfTwo
    }
    fn pick(&self, _: &Flow) -> Picks<'_> {
        let n = self.candidates.len();
        let start = match n {
            0 => None,
            1 => Some(0),
            n => {
                let a = fastrand::usize(0..n);
                let mut b = fastrand::usize(0..n - 1);
                if b >= a {
                    b += 1;
                }
                Some(if lighter(&self.candidates[b], &self.candidates[a]) { b } else { a })
            }
        };
        Picks::from(&self.ring, start)
    }
    fn ids(&self) -> &[u32] {
        &self.ring
    }
}

/// Weighted random.
#[derive(Debug)]
pub struct Random {
    ring: Vec<u32>,
    weights: Vec<u64>,
    total: u64,
}

impl Random {
    pub fn new(c: &[Candidate]) -> Random {
        let weights: Vec<u64> = c.iter().map(|c| u64::from(c.weight)).collect();
        Random { ring: ids(c), total: weights.iter().sum(), weights }
    }
}

impl Selection for Random {
    fn algorithm(&self) -> Algorithm {
        Algorithm::Random
    }
    fn pick(&self, _: &Flow) -> Picks<'_> {
        if self.total == 0 {
            return Picks::from(&self.ring, None);
        }
        let mut r = fastrand::u64(0..self.total);
        let mut start = self.weights.len() - 1;
        for (i, &w) in self.weights.iter().enumerate() {
            if r < w {
                start = i;
                break;
            }
            r -= w;
        }
        Picks::from(&self.ring, Some(start))
    }
    fn ids(&self) -> &[u32] {
        &self.ring
    }
}

/// Rendezvous (highest random weight) hashing of the client address: a
/// client sticks to one backend, and removing a backend moves only its own
/// clients. Weighted with the logarithmic score `-w / ln(u)`.
///
/// `u` comes from [`crate::hash::src_hash`] of the client address, seeded
/// per backend with a hash of its key: a function fixed in this crate, so
/// the mapping survives toolchain updates (std's `DefaultHasher`, which
/// alb's `ip_hash` used before, may change between Rust releases).
#[derive(Debug)]
pub struct SourceHash {
    ring: Vec<u32>,
    /// Per candidate: (per-backend seed, weight).
    seeds: Vec<(u32, f64)>,
}

impl SourceHash {
    pub fn new(c: &[Candidate], seed: u32) -> SourceHash {
        let seeds = c.iter().map(|c| (key_seed(&c.key, seed), f64::from(c.weight))).collect();
        SourceHash { ring: ids(c), seeds }
    }
}

/// 32-bit FNV-1a of `key`, mixed with `seed`.
fn key_seed(key: &str, seed: u32) -> u32 {
    key.bytes().fold(0x811c_9dc5u32 ^ seed, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

impl Selection for SourceHash {
    fn algorithm(&self) -> Algorithm {
        Algorithm::SourceHash
    }
    fn pick(&self, flow: &Flow) -> Picks<'_> {
        let (addr, family) = addr16(flow.src.ip());
        let start = self
            .seeds
            .iter()
            .enumerate()
            .map(|(i, &(seed, weight))| {
                // (h + 0.5) / 2^32 lies strictly inside (0, 1): ln(u) < 0.
                let u = (f64::from(src_hash(&addr, family, seed)) + 0.5) / 4_294_967_296.0;
                (i, -weight / u.ln())
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i);
        Picks::from(&self.ring, start)
    }
    fn ids(&self) -> &[u32] {
        &self.ring
    }
}
