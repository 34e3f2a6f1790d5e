//! Backend selection, the one implementation every tier uses: the XDP map
//! builder (Maglev tables, round-robin lists), `lb-user proxy` and alb.
//!
//! In the style of pingora's `BackendSelection`: a [`Selection`] is built
//! from the candidate backends (id, stable key, weight, health, in-flight
//! count) whenever that set changes, and [`Selection::pick`] gives, for one
//! key (the flow), a first choice followed by fallbacks for retries. Only
//! healthy candidates are ever picked. Fallbacks are the other healthy
//! candidates in ascending id order after the first choice (wrapping), so a
//! retry is deterministic for a given first choice and never repeats one.
//!
//! The hash algorithms hash with [`crate::hash`], exactly as the XDP program
//! does: for the same backends, table size and seed, `lb-user proxy`, alb
//! and the kernel send a flow (or, for the source-based ones, a client) to
//! the same backend.

mod algorithms;
pub mod maglev;

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    ops::Deref,
    sync::{atomic::AtomicUsize, Arc},
};

use crate::{
    hash::{flow_hash_v4, flow_hash_v6, src_hash},
    lb::DEFAULT_MAGLEV_SIZE,
};

/// Re-exported for the selection's users: the map-key layout of an address.
pub use crate::lb::addr16;

pub use algorithms::{LeastConnections, PowerOfTwo, Random, RoundRobin, SmoothWeighted, SourceHash};
pub use maglev::{build_table, fingerprint, MaglevBackend, MaglevError, MaglevSelection, TableFingerprint};

/// A flow as the balancer sees its first packet or its accepted connection:
/// client → VIP (or listener).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// IP protocol number (6 = TCP, 17 = UDP).
    pub protocol: u8,
}

impl Flow {
    pub fn tcp(src: SocketAddr, dst: SocketAddr) -> Flow {
        Flow { src, dst, protocol: 6 }
    }
}

/// The data path's hash of `flow`: the 5-tuple hash, or the source-address
/// hash when `source_only` (`maglev_src`). Ports in host byte order. `None`
/// when source and destination families differ (the data path never sees
/// such a flow).
pub fn flow_hash(flow: &Flow, seed: u32, source_only: bool) -> Option<u32> {
    if source_only {
        let (a, family) = addr16(flow.src.ip());
        return Some(src_hash(&a, family, seed));
    }
    let (sport, dport) = (flow.src.port(), flow.dst.port());
    match (flow.src.ip().to_canonical(), flow.dst.ip().to_canonical()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some(flow_hash_v4(s.octets(), d.octets(), sport, dport, flow.protocol, seed)),
        (IpAddr::V6(s), IpAddr::V6(d)) => Some(flow_hash_v6(&s.octets(), &d.octets(), sport, dport, flow.protocol, seed)),
        _ => None,
    }
}

/// A backend's count of requests or connections in flight, shared between
/// the balancer that counts and the selection that reads it.
#[derive(Clone, Debug, Default)]
pub struct Load(Arc<AtomicUsize>);

impl Deref for Load {
    type Target = AtomicUsize;
    fn deref(&self) -> &AtomicUsize {
        &self.0
    }
}

impl Load {
    fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed) as u64
    }
}

/// One backend a selection may choose.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// What picks return; unique within one selection (a BPF backend id, an
    /// index into a pool).
    pub id: u32,
    /// Stable identity that places the backend in the hash algorithms, e.g.
    /// `"198.18.1.11:8080"`. Must not depend on ids or list order, so every
    /// node and every tier with the same backends agrees.
    pub key: String,
    /// Relative weight; 0 = never picked.
    pub weight: u32,
    /// Unhealthy candidates are left out when the selection is built.
    pub healthy: bool,
    /// In flight now (least connections, power of two choices).
    pub load: Load,
}

impl Candidate {
    pub fn new(id: u32, key: impl Into<String>, weight: u32) -> Candidate {
        Candidate { id, key: key.into(), weight, healthy: true, load: Load::default() }
    }
}

/// The algorithms, under the names the config files use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Maglev consistent hashing of the 5-tuple (the XDP default).
    Maglev,
    /// Maglev on the source address only: client affinity that survives
    /// backend changes with minimal disruption.
    MaglevSrc,
    /// Each healthy backend in turn, weights ignored.
    RoundRobin,
    /// nginx's smooth weighted round robin.
    WeightedRoundRobin,
    /// Fewest in flight relative to weight; ties rotate.
    LeastConnections,
    /// Two random candidates, the less loaded (per weight) wins.
    PowerOfTwo,
    /// Weighted random.
    Random,
    /// Rendezvous hashing of the client address on the stable flow hash
    /// (alb's `ip_hash`).
    SourceHash,
}

impl Algorithm {
    pub const ALL: [Algorithm; 8] = [
        Algorithm::Maglev,
        Algorithm::MaglevSrc,
        Algorithm::RoundRobin,
        Algorithm::WeightedRoundRobin,
        Algorithm::LeastConnections,
        Algorithm::PowerOfTwo,
        Algorithm::Random,
        Algorithm::SourceHash,
    ];

    /// The config name (`maglev_src`, `p2c`, …).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Maglev => "maglev",
            Algorithm::MaglevSrc => "maglev_src",
            Algorithm::RoundRobin => "round_robin",
            Algorithm::WeightedRoundRobin => "weighted_round_robin",
            Algorithm::LeastConnections => "least_connections",
            Algorithm::PowerOfTwo => "p2c",
            Algorithm::Random => "random",
            Algorithm::SourceHash => "ip_hash",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the hash algorithms mix in; the same on every node and tier that
/// must agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashOptions {
    /// Maglev table size (prime).
    pub maglev_size: u32,
    /// Seed of the flow hash and the Maglev permutations.
    pub seed: u32,
}

impl Default for HashOptions {
    fn default() -> Self {
        HashOptions { maglev_size: DEFAULT_MAGLEV_SIZE, seed: 0 }
    }
}

/// A first choice, then the fallbacks (see the module documentation).
#[derive(Clone, Debug)]
pub struct Picks<'a> {
    ring: &'a [u32],
    start: usize,
    taken: usize,
}

impl<'a> Picks<'a> {
    /// Picks starting at position `start` of `ring` (`None`: nothing).
    pub(crate) fn from(ring: &'a [u32], start: Option<usize>) -> Picks<'a> {
        match start {
            Some(start) if start < ring.len() => Picks { ring, start, taken: 0 },
            _ => Picks { ring, start: 0, taken: ring.len() },
        }
    }
}

impl Iterator for Picks<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.taken >= self.ring.len() {
            return None;
        }
        let id = self.ring[(self.start + self.taken) % self.ring.len()];
        self.taken += 1;
        Some(id)
    }
}

/// A built selection over one set of candidates.
pub trait Selection: Send + Sync + fmt::Debug {
    fn algorithm(&self) -> Algorithm;
    /// The first choice for `flow`, then fallbacks; empty when no candidate
    /// is healthy.
    fn pick(&self, flow: &Flow) -> Picks<'_>;
    /// The ids that can be picked, ascending.
    fn ids(&self) -> &[u32];
}

/// Why a selection could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error(transparent)]
    Maglev(#[from] MaglevError),
    #[error("backend id {0} appears more than once")]
    DuplicateId(u32),
}

/// The healthy candidates of non-zero weight, by ascending id.
fn eligible(candidates: &[Candidate]) -> Result<Vec<Candidate>, SelectError> {
    let mut v: Vec<Candidate> = candidates.iter().filter(|c| c.healthy && c.weight > 0).cloned().collect();
    v.sort_by_key(|c| c.id);
    if let Some(w) = v.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(SelectError::DuplicateId(w[0].id));
    }
    Ok(v)
}

/// Builds `algorithm` over `candidates`.
pub fn build(algorithm: Algorithm, candidates: &[Candidate], hash: HashOptions) -> Result<Box<dyn Selection>, SelectError> {
    let c = eligible(candidates)?;
    Ok(match algorithm {
        Algorithm::Maglev => Box::new(MaglevSelection::new(&c, hash, false)?),
        Algorithm::MaglevSrc => Box::new(MaglevSelection::new(&c, hash, true)?),
        Algorithm::RoundRobin => Box::new(RoundRobin::new(&c)),
        Algorithm::WeightedRoundRobin => Box::new(SmoothWeighted::new(&c)),
        Algorithm::LeastConnections => Box::new(LeastConnections::new(c)),
        Algorithm::PowerOfTwo => Box::new(PowerOfTwo::new(c)),
        Algorithm::Random => Box::new(Random::new(&c)),
        Algorithm::SourceHash => Box::new(SourceHash::new(&c, hash.seed)),
    })
}

#[cfg(test)]
mod tests;
