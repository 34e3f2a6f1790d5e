//! Balancing algorithms. Each sees only the *available* backends of a pool
//! (health, ejection and drain are filtered out before) and returns an
//! index into that slice. Weights are honoured by every algorithm except
//! plain round_robin and least_connections' tie-breaking.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::Algorithm;
use crate::pool::Backend;

pub trait Balancer: Send + Sync {
    fn pick(&self, candidates: &[Arc<Backend>], client: IpAddr) -> Option<usize>;
}

pub fn new(a: Algorithm) -> Box<dyn Balancer> {
    match a {
        Algorithm::RoundRobin => Box::new(RoundRobin::default()),
        Algorithm::WeightedRoundRobin => Box::new(WeightedRoundRobin::default()),
        Algorithm::LeastConnections => Box::new(LeastConnections::default()),
        Algorithm::IpHash => Box::new(IpHash),
        Algorithm::Random => Box::new(Random),
        Algorithm::P2c => Box::new(P2c),
    }
}

#[derive(Default)]
pub struct RoundRobin(AtomicUsize);

impl Balancer for RoundRobin {
    fn pick(&self, c: &[Arc<Backend>], _: IpAddr) -> Option<usize> {
        (!c.is_empty()).then(|| self.0.fetch_add(1, Ordering::Relaxed) % c.len())
    }
}

/// nginx's smooth weighted round robin: weights 5,1,1 give a a b a c a a
/// rather than a a a a a b c, so no backend gets bursts.
#[derive(Default)]
pub struct WeightedRoundRobin(Mutex<HashMap<String, i64>>);

impl Balancer for WeightedRoundRobin {
    fn pick(&self, c: &[Arc<Backend>], _: IpAddr) -> Option<usize> {
        if c.is_empty() {
            return None;
        }
        let mut cur = self.0.lock().unwrap();
        // Forget removed backends so the map cannot grow without bound.
        cur.retain(|id, _| c.iter().any(|b| &b.id == id));
        let total: i64 = c.iter().map(|b| i64::from(b.weight)).sum();
        let mut best = 0;
        let mut best_w = i64::MIN;
        for (i, b) in c.iter().enumerate() {
            let w = cur.entry(b.id.clone()).or_insert(0);
            *w += i64::from(b.weight);
            if *w > best_w {
                best_w = *w;
                best = i;
            }
        }
        *cur.get_mut(&c[best].id).expect("inserted above") -= total;
        Some(best)
    }
}

/// Fewest in-flight requests relative to weight; ties rotate so an idle
/// pool still spreads load.
#[derive(Default)]
pub struct LeastConnections(AtomicUsize);

impl Balancer for LeastConnections {
    fn pick(&self, c: &[Arc<Backend>], _: IpAddr) -> Option<usize> {
        if c.is_empty() {
            return None;
        }
        let load = |b: &Backend| b.in_flight.load(Ordering::Relaxed) as u64;
        // in_flight/weight compared without division.
        let less = |x: usize, y: usize| {
            load(&c[x]) * u64::from(c[y].weight) < load(&c[y]) * u64::from(c[x].weight)
        };
        let mut best = vec![0];
        for i in 1..c.len() {
            if less(i, best[0]) {
                best.clear();
                best.push(i);
            } else if !less(best[0], i) {
                best.push(i);
            }
        }
        Some(best[self.0.fetch_add(1, Ordering::Relaxed) % best.len()])
    }
}

/// Rendezvous (highest-random-weight) hashing on the client IP: a client
/// sticks to one backend, and removing a backend only moves its own
/// clients. Weighted with the logarithmic HRW score.
pub struct IpHash;

fn hash_pair(ip: IpAddr, id: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ip.hash(&mut h);
    id.hash(&mut h);
    h.finish()
}

impl Balancer for IpHash {
    fn pick(&self, c: &[Arc<Backend>], client: IpAddr) -> Option<usize> {
        c.iter()
            .enumerate()
            .map(|(i, b)| {
                let u = (hash_pair(client, &b.id) >> 11) as f64 / (1u64 << 53) as f64;
                let score = -f64::from(b.weight) / u.max(f64::MIN_POSITIVE).ln();
                (i, score)
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
    }
}

/// Weighted random.
pub struct Random;

fn weighted_random(c: &[Arc<Backend>]) -> Option<usize> {
    let total: u64 = c.iter().map(|b| u64::from(b.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut r = fastrand::u64(0..total);
    for (i, b) in c.iter().enumerate() {
        if r < u64::from(b.weight) {
            return Some(i);
        }
        r -= u64::from(b.weight);
    }
    None
}

impl Balancer for Random {
    fn pick(&self, c: &[Arc<Backend>], _: IpAddr) -> Option<usize> {
        weighted_random(c)
    }
}

/// Power of two choices: two distinct random backends, the one with fewer
/// in-flight requests (per weight) wins. Nearly least-connections quality
/// without scanning, and no herd onto a single "least" backend.
pub struct P2c;

impl Balancer for P2c {
    fn pick(&self, c: &[Arc<Backend>], _: IpAddr) -> Option<usize> {
        match c.len() {
            0 => None,
            1 => Some(0),
            n => {
                let a = fastrand::usize(0..n);
                let mut b = fastrand::usize(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let l = |i: usize| {
                    c[i].in_flight.load(Ordering::Relaxed) as u64 * 1000 / u64::from(c[i].weight)
                };
                Some(if l(b) < l(a) { b } else { a })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(weights: &[u32]) -> Vec<Arc<Backend>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                Arc::new(Backend::new(&format!("http://127.0.0.1:{}", 1000 + i), *w, None).unwrap())
            })
            .collect()
    }

    fn counts(
        b: &dyn Balancer,
        c: &[Arc<Backend>],
        n: usize,
        ip: impl Fn(usize) -> IpAddr,
    ) -> Vec<usize> {
        let mut v = vec![0; c.len()];
        for k in 0..n {
            v[b.pick(c, ip(k)).unwrap()] += 1;
        }
        v
    }

    fn local(_: usize) -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    fn spread(k: usize) -> IpAddr {
        IpAddr::from([10, (k >> 16) as u8, (k >> 8) as u8, k as u8])
    }

    #[test]
    fn round_robin_is_exact() {
        let c = backends(&[1, 1, 1]);
        assert_eq!(
            counts(&RoundRobin::default(), &c, 300, local),
            vec![100, 100, 100]
        );
        assert_eq!(RoundRobin::default().pick(&[], local(0)), None);
    }

    #[test]
    fn weighted_round_robin_is_exact_and_smooth() {
        let c = backends(&[5, 1, 1]);
        let b = WeightedRoundRobin::default();
        let seq: Vec<usize> = (0..7).map(|_| b.pick(&c, local(0)).unwrap()).collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(counts(&b, &c, 700, local), vec![500, 100, 100]);
    }

    #[test]
    fn least_connections_prefers_idle() {
        let c = backends(&[1, 1, 1]);
        c[0].in_flight.store(5, Ordering::Relaxed);
        c[1].in_flight.store(1, Ordering::Relaxed);
        let v = counts(&LeastConnections::default(), &c, 30, local);
        assert_eq!(v, vec![0, 0, 30]);
        c[2].in_flight.store(1, Ordering::Relaxed);
        let v = counts(&LeastConnections::default(), &c, 30, local);
        assert_eq!(v, vec![0, 15, 15], "ties rotate");
        // weight 4 with 4 in flight ties with weight 1 with 1 in flight.
        let w = backends(&[4, 1]);
        w[0].in_flight.store(3, Ordering::Relaxed);
        w[1].in_flight.store(1, Ordering::Relaxed);
        assert_eq!(
            counts(&LeastConnections::default(), &w, 10, local),
            vec![10, 0]
        );
    }

    #[test]
    fn ip_hash_sticky_spread_and_minimal_remap() {
        let c = backends(&[1, 1, 1, 1]);
        let b = IpHash;
        for k in 0..100 {
            let first = b.pick(&c, spread(k));
            assert!((0..5).all(|_| b.pick(&c, spread(k)) == first), "sticky");
        }
        let v = counts(&b, &c, 8000, spread);
        assert!(v.iter().all(|&n| (1600..=2400).contains(&n)), "{v:?}");
        // Removing backend 3 moves only its clients.
        let fewer = c[..3].to_vec();
        for k in 0..2000 {
            let before = b.pick(&c, spread(k)).unwrap();
            if before != 3 {
                assert_eq!(b.pick(&fewer, spread(k)).unwrap(), before);
            }
        }
        let w = backends(&[3, 1]);
        let v = counts(&b, &w, 8000, spread);
        assert!((5600..=6400).contains(&v[0]), "weighted {v:?}");
    }

    #[test]
    fn random_follows_weights() {
        let c = backends(&[1, 1, 2]);
        let v = counts(&Random, &c, 8000, local);
        assert!(
            (1700..=2300).contains(&v[0]) && (1700..=2300).contains(&v[1]),
            "{v:?}"
        );
        assert!((3600..=4400).contains(&v[2]), "{v:?}");
    }

    #[test]
    fn p2c_avoids_the_busiest_and_spreads_when_idle() {
        let c = backends(&[1, 1, 1]);
        let v = counts(&P2c, &c, 3000, local);
        assert!(v.iter().all(|&n| (800..=1200).contains(&n)), "{v:?}");
        c[0].in_flight.store(10, Ordering::Relaxed);
        let v = counts(&P2c, &c, 3000, local);
        assert_eq!(v[0], 0, "the busiest is never chosen over another: {v:?}");
        c[1].in_flight.store(5, Ordering::Relaxed);
        let v = counts(&P2c, &c, 3000, local);
        // 2 wins every pair it is in (2/3 of pairs); 1 beats only 0.
        assert!(v[2] > 1800 && v[1] > 700 && v[0] == 0, "{v:?}");
    }
}
