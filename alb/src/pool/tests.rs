//! The pool's use of the shared selection: which backends it offers, what
//! it keys them by, retries, and when it rebuilds. The algorithms' own
//! properties are tested in lb-common; the distribution tests here check
//! them once more through the pool, as alb's balancer tests did.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::config::{BackendSpec, Dur};

const ALL: [Algorithm; 8] = [
    Algorithm::RoundRobin,
    Algorithm::WeightedRoundRobin,
    Algorithm::LeastConnections,
    Algorithm::IpHash,
    Algorithm::Random,
    Algorithm::P2c,
    Algorithm::Maglev,
    Algorithm::MaglevSrc,
];

/// Backends `b0, b1, …` at 198.18.1.11:8080, .12, …: ids that differ from
/// the addresses, so a test can tell which one the hashes use.
fn pool(algorithm: Algorithm, weights: &[u32]) -> Pool {
    let backends = weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| BackendSpec::Full { url: format!("http://198.18.1.{}:8080", 11 + i), weight, id: Some(format!("b{i}")) })
        .collect();
    let c = PoolConfig { name: "web".into(), algorithm, backends, health: HealthConfig::default(), matcher: MatchConfig::default() };
    Pool::from_config(&c, None).unwrap()
}

const LISTENER: &str = "198.18.0.1:443";

/// One client, a new source port per request.
fn local(k: usize) -> Flow {
    Flow::tcp(SocketAddr::from(([127, 0, 0, 1], 1024 + k as u16)), LISTENER.parse().unwrap())
}

/// A different client address per `k`.
fn spread(k: usize) -> Flow {
    let ip = IpAddr::from([10, (k >> 16) as u8, (k >> 8) as u8, k as u8]);
    Flow::tcp(SocketAddr::new(ip, 40000), LISTENER.parse().unwrap())
}

fn index(p: &Pool, b: &Arc<Backend>) -> usize {
    p.snapshot().iter().position(|x| Arc::ptr_eq(x, b)).unwrap()
}

fn pick(p: &Pool, f: Flow) -> Option<usize> {
    p.pick(&f, &[]).map(|b| index(p, &b))
}

fn counts(p: &Pool, n: usize, flow: impl Fn(usize) -> Flow) -> Vec<usize> {
    let mut v = vec![0; p.snapshot().len()];
    for k in 0..n {
        v[pick(p, flow(k)).unwrap()] += 1;
    }
    v
}

#[test]
fn round_robin_is_exact() {
    let p = pool(Algorithm::RoundRobin, &[1, 1, 1]);
    assert_eq!(counts(&p, 300, local), vec![100, 100, 100]);
    assert_eq!(pool(Algorithm::RoundRobin, &[]).pick(&local(0), &[]).map(|b| b.id.clone()), None);
}

#[test]
fn weighted_round_robin_is_exact_and_smooth() {
    let p = pool(Algorithm::WeightedRoundRobin, &[5, 1, 1]);
    let seq: Vec<usize> = (0..7).map(|k| pick(&p, local(k)).unwrap()).collect();
    assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
    assert_eq!(counts(&p, 700, local), vec![500, 100, 100]);
}

#[test]
fn least_connections_prefers_idle() {
    let p = pool(Algorithm::LeastConnections, &[1, 1, 1]);
    let b = p.snapshot();
    b[0].in_flight.store(5, Ordering::Relaxed);
    b[1].in_flight.store(1, Ordering::Relaxed);
    assert_eq!(counts(&p, 30, local), vec![0, 0, 30], "reads the live in-flight counters");
    b[2].in_flight.store(1, Ordering::Relaxed);
    assert_eq!(counts(&p, 30, local), vec![0, 15, 15], "ties rotate");
    // weight 4 with 3 in flight is lighter than weight 1 with 1 in flight.
    let w = pool(Algorithm::LeastConnections, &[4, 1]);
    w.snapshot()[0].in_flight.store(3, Ordering::Relaxed);
    w.snapshot()[1].in_flight.store(1, Ordering::Relaxed);
    assert_eq!(counts(&w, 10, local), vec![10, 0]);
}

#[test]
fn ip_hash_sticky_spread_and_minimal_remap() {
    let p = pool(Algorithm::IpHash, &[1, 1, 1, 1]);
    for k in 0..100 {
        let first = pick(&p, spread(k));
        let other_port = Flow { src: SocketAddr::new(spread(k).src.ip(), 1), ..spread(k) };
        assert!((0..5).all(|_| pick(&p, spread(k)) == first && pick(&p, other_port) == first), "sticky");
    }
    let v = counts(&p, 8000, spread);
    assert!(v.iter().all(|&n| (1600..=2400).contains(&n)), "{v:?}");
    // Draining backend 3 moves only its clients.
    let before: Vec<usize> = (0..2000).map(|k| pick(&p, spread(k)).unwrap()).collect();
    p.snapshot()[3].draining.store(true, Ordering::Relaxed);
    for (k, &was) in before.iter().enumerate() {
        let now = pick(&p, spread(k)).unwrap();
        if was != 3 {
            assert_eq!(now, was, "client {k} moved although its backend stayed");
        } else {
            assert_ne!(now, 3);
        }
    }
    let w = pool(Algorithm::IpHash, &[3, 1]);
    let v = counts(&w, 8000, spread);
    assert!((5600..=6400).contains(&v[0]), "weighted {v:?}");
}

#[test]
fn random_follows_weights() {
    let p = pool(Algorithm::Random, &[1, 1, 2]);
    let v = counts(&p, 8000, local);
    assert!((1700..=2300).contains(&v[0]) && (1700..=2300).contains(&v[1]), "{v:?}");
    assert!((3600..=4400).contains(&v[2]), "{v:?}");
}

#[test]
fn p2c_avoids_the_busiest_and_spreads_when_idle() {
    let p = pool(Algorithm::P2c, &[1, 1, 1]);
    let v = counts(&p, 3000, local);
    assert!(v.iter().all(|&n| (800..=1200).contains(&n)), "{v:?}");
    p.snapshot()[0].in_flight.store(10, Ordering::Relaxed);
    let v = counts(&p, 3000, local);
    assert_eq!(v[0], 0, "the busiest is never chosen over another: {v:?}");
    p.snapshot()[1].in_flight.store(5, Ordering::Relaxed);
    let v = counts(&p, 3000, local);
    // 2 wins every pair it is in (2/3 of pairs); 1 beats only 0.
    assert!(v[2] > 1800 && v[1] > 700 && v[0] == 0, "{v:?}");
}

#[test]
fn maglev_hashes_the_flow_and_maglev_src_the_client() {
    let p = pool(Algorithm::Maglev, &[1, 1, 1]);
    for k in 0..50 {
        assert_eq!(pick(&p, local(k)), pick(&p, local(k)), "one flow, one backend");
    }
    let v = counts(&p, 3000, local);
    assert!(v.iter().all(|&n| (800..=1200).contains(&n)), "one client's flows spread: {v:?}");
    let s = pool(Algorithm::MaglevSrc, &[1, 1, 1]);
    let v = counts(&s, 300, local);
    assert_eq!(v.iter().filter(|&&n| n > 0).count(), 1, "one client sticks: {v:?}");
    let v = counts(&s, 3000, spread);
    assert!(v.iter().all(|&n| (800..=1200).contains(&n)), "clients spread: {v:?}");
}

/// The hash algorithms place backends by address, exactly as a selection
/// that lb-user builds over the same `198.18.1.x:8080` backends: both tiers
/// send a flow (or a client) to the same backend. User-given ids play no
/// part.
#[test]
fn hashes_key_backends_by_address_as_lb_user_does() {
    for alg in [Algorithm::Maglev, Algorithm::MaglevSrc, Algorithm::IpHash] {
        let p = pool(alg, &[1, 2, 1, 1]);
        let lb_user: Vec<Candidate> = [1, 2, 1, 1].iter().enumerate().map(|(i, &w)| Candidate::new(i as u32, format!("198.18.1.{}:8080", 11 + i), w)).collect();
        let theirs = select::build(alg.select(), &lb_user, HashOptions::default()).unwrap();
        for k in 0..500 {
            let f = if k % 2 == 0 { local(k) } else { spread(k) };
            assert_eq!(pick(&p, f).map(|i| i as u32), theirs.pick(&f).next(), "{alg:?} flow {f:?}");
        }
    }
}

#[test]
fn unavailable_backends_are_skipped() {
    for alg in ALL {
        let p = pool(alg, &[1, 1, 1, 1]);
        let b = p.snapshot();
        b[1].draining.store(true, Ordering::Relaxed);
        let passive = PassiveConfig { enabled: true, failures: 1, cooldown: Dur(Duration::from_secs(60)) };
        assert!(b[2].record_failure(&passive), "ejected");
        b[3].set_healthy(false);
        for k in 0..50 {
            assert_eq!(pick(&p, spread(k)), Some(0), "{alg:?}");
        }
        b[0].draining.store(true, Ordering::Relaxed);
        assert!(p.pick(&local(0), &[]).is_none(), "{alg:?}: nothing available");
    }
}

#[test]
fn retries_never_repeat_a_backend() {
    for alg in ALL {
        let p = pool(alg, &[1, 3, 1, 2]);
        for k in 0..20 {
            let mut tried: Vec<Arc<Backend>> = Vec::new();
            while let Some(b) = p.pick(&spread(k), &tried) {
                assert!(!tried.iter().any(|t| Arc::ptr_eq(t, &b)), "{alg:?} repeated {}", b.id);
                tried.push(b);
            }
            assert_eq!(tried.len(), 4, "{alg:?}: every backend once, then none");
        }
    }
}

#[test]
fn selection_is_rebuilt_only_when_backends_or_availability_change() {
    let p = pool(Algorithm::RoundRobin, &[1, 1, 1]);
    let first = p.current();
    assert!(Arc::ptr_eq(&first, &p.current()), "nothing changed: same selection");
    // The cursor carries on from pick to pick (a rebuild would restart it).
    let seq: Vec<usize> = (0..4).map(|k| pick(&p, local(k)).unwrap()).collect();
    assert_eq!(seq, vec![0, 1, 2, 0]);
    assert!(Arc::ptr_eq(&first, &p.current()));
    // In-flight counts are read live, not a reason to rebuild.
    p.snapshot()[0].in_flight.fetch_add(1, Ordering::Relaxed);
    assert!(Arc::ptr_eq(&first, &p.current()));

    p.snapshot()[1].draining.store(true, Ordering::Relaxed);
    let drained = p.current();
    assert!(!Arc::ptr_eq(&first, &drained), "availability changed");
    assert!((0..6).all(|k| pick(&p, local(k)) != Some(1)));
    assert!(Arc::ptr_eq(&drained, &p.current()));

    let added = Arc::new(Backend::new("http://198.18.1.99:8080", 1, None).unwrap());
    p.backends.write().unwrap().push(added.clone());
    assert!(!Arc::ptr_eq(&drained, &p.current()), "backend list changed");
    assert!((0..6).any(|k| p.pick(&local(k), &[]).is_some_and(|b| Arc::ptr_eq(&b, &added))));
}

fn routed(pools: &[Arc<Pool>], host: Option<&str>, path: &str) -> String {
    route(pools, host, path).map(|p| p.name.clone()).unwrap_or_default()
}

#[test]
fn routing_by_host_and_path_takes_the_most_specific_pool() {
    let named = |name: &str, hosts: &[&str], prefix: Option<&str>| {
        let mut p = pool(Algorithm::RoundRobin, &[1]);
        p.name = name.into();
        p.matcher = MatchConfig { hosts: hosts.iter().map(|h| h.to_string()).collect(), path_prefix: prefix.map(str::to_string) };
        Arc::new(p)
    };
    let pools = vec![
        named("default", &[], None),
        named("api", &[], Some("/api/")),
        named("www", &["www.example.test"], None),
        named("www-api", &["www.example.test"], Some("/api/")),
        named("v6", &["::1"], None),
        named("v6-bracketed", &["[fd00:198:18::1]"], None),
    ];
    assert_eq!(routed(&pools, None, "/"), "default");
    assert_eq!(routed(&pools, Some("other.test"), "/api/x"), "api");
    assert_eq!(routed(&pools, Some("WWW.example.test:8443"), "/"), "www", "case and port do not matter");
    assert_eq!(routed(&pools, Some("www.example.test"), "/api/v1"), "www-api", "host and the longest prefix beat either alone");
    assert_eq!(routed(&pools, Some("www.example.test"), "/apix"), "www");
    // IPv6 literals: the port after the brackets is not part of the host.
    assert_eq!(routed(&pools, Some("[::1]:8443"), "/"), "v6");
    assert_eq!(routed(&pools, Some("[::1]"), "/"), "v6");
    assert_eq!(routed(&pools, Some("[fd00:198:18::1]:443"), "/"), "v6-bracketed");
    assert_eq!(routed(&pools, Some("[fd00:198:18::2]:443"), "/"), "default");
}

#[test]
fn host_names_lose_their_port_and_brackets() {
    for (authority, host) in [
        ("a.test", "a.test"),
        ("a.test:8443", "a.test"),
        ("[::1]:8443", "::1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("fd00::1", "fd00::1"),
        ("198.18.0.1:80", "198.18.0.1"),
    ] {
        assert_eq!(host_name(authority), host, "{authority}");
    }
}
