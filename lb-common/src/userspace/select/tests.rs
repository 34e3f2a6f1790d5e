use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering;

use super::*;

fn flow(src: &str, dst: &str) -> Flow {
    Flow { src: src.parse().unwrap(), dst: dst.parse().unwrap(), protocol: 6 }
}

fn from_port(p: u16) -> Flow {
    flow(&format!("198.18.0.2:{p}"), "198.18.100.1:80")
}

fn from_client(k: usize) -> Flow {
    let ip = IpAddr::from([198, 18, (k >> 8) as u8, k as u8]);
    Flow { src: (ip, 40000).into(), dst: "198.18.100.1:80".parse().unwrap(), protocol: 6 }
}

fn cands(weights: &[u32]) -> Vec<Candidate> {
    weights.iter().enumerate().map(|(i, &w)| Candidate::new(i as u32, format!("198.18.1.{}:8080", 11 + i), w)).collect()
}

fn sel(a: Algorithm, weights: &[u32]) -> Box<dyn Selection> {
    build(a, &cands(weights), HashOptions { maglev_size: 65537, seed: 0 }).unwrap()
}

fn first(s: &dyn Selection, f: &Flow) -> u32 {
    s.pick(f).next().unwrap()
}

fn counts(s: &dyn Selection, n: usize, f: impl Fn(usize) -> Flow) -> Vec<usize> {
    let mut v = vec![0; s.ids().len()];
    for k in 0..n {
        v[first(s, &f(k)) as usize] += 1;
    }
    v
}

#[test]
fn every_algorithm_gives_each_healthy_candidate_once_first_choice_first() {
    for a in Algorithm::ALL {
        let mut c = cands(&[1, 2, 1, 1]);
        c[1].healthy = false;
        let s = build(a, &c, HashOptions::default()).unwrap();
        assert_eq!(s.algorithm(), a);
        assert_eq!(s.ids(), [0, 2, 3]);
        for p in 0..50 {
            let picks: Vec<u32> = s.pick(&from_port(p)).collect();
            let mut sorted = picks.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 2, 3], "{a}: {picks:?}");
            // Fallbacks follow the first choice in id order, wrapping.
            let at = s.ids().iter().position(|&i| i == picks[0]).unwrap();
            let want: Vec<u32> = (0..3).map(|k| s.ids()[(at + k) % 3]).collect();
            assert_eq!(picks, want, "{a}");
        }
        let none = build(a, &[], HashOptions::default()).unwrap();
        assert_eq!(none.pick(&from_port(1)).next(), None, "{a}: no candidate");
        let mut down = cands(&[1]);
        down[0].healthy = false;
        assert_eq!(build(a, &down, HashOptions::default()).unwrap().pick(&from_port(1)).count(), 0, "{a}");
    }
}

#[test]
fn duplicate_ids_and_bad_tables_are_refused() {
    let mut c = cands(&[1, 1]);
    c[1].id = 0;
    assert_eq!(build(Algorithm::RoundRobin, &c, HashOptions::default()).unwrap_err(), SelectError::DuplicateId(0));
    let err = build(Algorithm::Maglev, &cands(&[1]), HashOptions { maglev_size: 65536, seed: 0 }).unwrap_err();
    assert!(err.to_string().contains("65536"), "{err}");
}

#[test]
fn round_robin_is_exact_and_in_order() {
    let s = sel(Algorithm::RoundRobin, &[1, 5, 1]);
    let picks: Vec<u32> = (0..7).map(|p| first(&*s, &from_port(p))).collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0], "weights ignored");
}

#[test]
fn smooth_weighted_round_robin_is_exact_and_smooth() {
    let s = sel(Algorithm::WeightedRoundRobin, &[5, 1, 1]);
    let seq: Vec<u32> = (0..7).map(|p| first(&*s, &from_port(p))).collect();
    assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
    assert_eq!(counts(&*s, 700, |k| from_port(k as u16)), [500, 100, 100]);
}

#[test]
fn least_connections_prefers_idle_per_weight_and_rotates_ties() {
    let c = cands(&[1, 1, 1]);
    c[0].load.store(5, Ordering::Relaxed);
    c[1].load.store(1, Ordering::Relaxed);
    let s = build(Algorithm::LeastConnections, &c, HashOptions::default()).unwrap();
    assert_eq!(counts(&*s, 30, |k| from_port(k as u16)), [0, 0, 30]);
    c[2].load.store(1, Ordering::Relaxed); // live: the selection reads the shared counts
    assert_eq!(counts(&*s, 30, |k| from_port(k as u16)), [0, 15, 15], "ties rotate");
    let w = cands(&[4, 1]);
    w[0].load.store(3, Ordering::Relaxed);
    w[1].load.store(1, Ordering::Relaxed);
    let s = build(Algorithm::LeastConnections, &w, HashOptions::default()).unwrap();
    assert_eq!(counts(&*s, 10, |k| from_port(k as u16)), [10, 0], "3/4 beats 1/1");
}

#[test]
fn power_of_two_avoids_the_busiest_and_spreads_when_idle() {
    let c = cands(&[1, 1, 1]);
    let s = build(Algorithm::PowerOfTwo, &c, HashOptions::default()).unwrap();
    let v = counts(&*s, 3000, |k| from_port(k as u16));
    assert!(v.iter().all(|&n| (800..=1200).contains(&n)), "{v:?}");
    c[0].load.store(10, Ordering::Relaxed);
    let v = counts(&*s, 3000, |k| from_port(k as u16));
    assert_eq!(v[0], 0, "the busiest never wins a pair: {v:?}");
    c[1].load.store(5, Ordering::Relaxed);
    let v = counts(&*s, 3000, |k| from_port(k as u16));
    assert!(v[2] > 1800 && v[1] > 700 && v[0] == 0, "{v:?}");
}

#[test]
fn random_follows_weights() {
    let s = sel(Algorithm::Random, &[1, 1, 2]);
    let v = counts(&*s, 8000, |k| from_port(k as u16));
    assert!((1700..=2300).contains(&v[0]) && (1700..=2300).contains(&v[1]), "{v:?}");
    assert!((3600..=4400).contains(&v[2]), "{v:?}");
}

#[test]
fn source_hash_is_sticky_spread_weighted_and_moves_only_the_removed() {
    let s = sel(Algorithm::SourceHash, &[1, 1, 1, 1]);
    for k in 0..100 {
        let one = first(&*s, &from_client(k));
        let other_port = Flow { src: (from_client(k).src.ip(), 1234).into(), ..from_client(k) };
        assert_eq!(first(&*s, &other_port), one, "sticky per client, whatever the port");
    }
    let v = counts(&*s, 8000, from_client);
    assert!(v.iter().all(|&n| (1600..=2400).contains(&n)), "{v:?}");
    let fewer = sel(Algorithm::SourceHash, &[1, 1, 1]);
    for k in 0..2000 {
        let before = first(&*s, &from_client(k));
        if before != 3 {
            assert_eq!(first(&*fewer, &from_client(k)), before, "client {k} moved");
        }
    }
    let w = sel(Algorithm::SourceHash, &[3, 1]);
    let v = counts(&*w, 8000, from_client);
    assert!((5600..=6400).contains(&v[0]), "weighted {v:?}");
}

#[test]
fn source_hash_mapping_is_pinned() {
    // The stable hash is the point: a toolchain or crate update must not
    // move clients. If this fails, the mapping changed (a breaking change).
    let s = sel(Algorithm::SourceHash, &[1, 1, 1, 1]);
    let got: Vec<u32> = (0..12).map(|k| first(&*s, &from_client(k))).collect();
    assert_eq!(got, PINNED_SOURCE_HASH);
}

const PINNED_SOURCE_HASH: [u32; 12] = [3, 2, 2, 0, 3, 3, 3, 2, 3, 2, 0, 2];

#[test]
fn maglev_is_the_data_path_lookup() {
    let s = sel(Algorithm::Maglev, &[1, 1, 1]);
    let f = from_port(40000);
    let one = first(&*s, &f);
    assert!((0..10).all(|_| first(&*s, &f) == one));
    let f6 = flow("[fd00:198:18::2]:40000", "[fd00:198:18:100::1]:80");
    assert_eq!(first(&*s, &f6), first(&*s, &f6));
    let seen: HashSet<u32> = (40000..40100).map(|p| first(&*s, &from_port(p))).collect();
    assert_eq!(seen.len(), 3, "source ports of one client spread");
    // The index is exactly the kernel's hash over the table lb-user writes.
    let table =
        build_table(&cands(&[1, 1, 1]).iter().map(|c| MaglevBackend { id: c.id, key: c.key.clone(), weight: c.weight }).collect::<Vec<_>>(), 65537, 0).unwrap();
    let h = crate::hash::flow_hash_v4([198, 18, 0, 2], [198, 18, 100, 1], 40000, 80, 6, 0);
    assert_eq!(table[h as usize % table.len()], one);
    let mixed = flow("198.18.0.2:40000", "[fd00:198:18:100::1]:80");
    assert_eq!(s.pick(&mixed).next(), None, "mixed families never reach the data path");
}

#[test]
fn maglev_src_keeps_a_client_on_one_backend() {
    let s = build(Algorithm::MaglevSrc, &cands(&[1; 5]), HashOptions { maglev_size: 65537, seed: 11 }).unwrap();
    for client in ["198.18.0.2", "198.18.0.3", "[fd00:198:18::2]"] {
        let picks: HashSet<u32> = (40000..40200).map(|p| first(&*s, &flow(&format!("{client}:{p}"), "198.18.100.1:80"))).collect();
        assert_eq!(picks.len(), 1, "{client}");
    }
    let clients: HashMap<u32, usize> = (0..500).fold(HashMap::new(), |mut m, k| {
        *m.entry(first(&*s, &from_client(k))).or_insert(0) += 1;
        m
    });
    assert_eq!(clients.len(), 5);
    // A mapped IPv4 client (dual-stack socket) hashes as the IPv4 client.
    let v4 = flow("198.18.0.2:1", "198.18.100.1:80");
    let mapped = flow("[::ffff:198.18.0.2]:1", "198.18.100.1:80");
    assert_eq!(first(&*s, &v4), first(&*s, &mapped));
}

#[test]
fn weight_zero_is_never_picked() {
    for a in Algorithm::ALL {
        let s = build(a, &cands(&[0, 1]), HashOptions::default()).unwrap();
        assert_eq!(s.ids(), [1], "{a}");
    }
}
