//! Active health checks on the shared scheduler
//! (`lb_common::userspace::health`): one HTTP probe per backend of every
//! pool with checks enabled, keyed `pool/backend-id`, so a reload or an
//! admin change that keeps a backend keeps its state (a backend that was
//! down stays down instead of getting traffic again for `fall × interval`).
//!
//! [`sync`] hands the scheduler the current pools; it runs after every
//! change of the pools (start, reload, admin API). [`run`] follows the
//! published state into each `Backend`'s healthy flag and refreshes the
//! `alb_backend_healthy` gauges, which also reflect passive ejection and
//! draining. Passive ejection lives in `pool::Backend::record_failure`,
//! fed by `proxy`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use lb_common::userspace::health::{HealthMap, HttpProbe, Target};

use crate::pool::Pool;

/// The scheduler's key for a backend.
pub fn key(pool: &str, backend: &str) -> String {
    format!("{pool}/{backend}")
}

/// The checks the pools ask for. A backend whose address does not resolve
/// is left unchecked (and logged): it stays as it is, and passive health
/// takes it out if it cannot be reached.
pub fn targets(pools: &[Arc<Pool>]) -> Vec<Target> {
    let mut v = Vec::new();
    for p in pools.iter().filter(|p| p.health.enabled) {
        let h = &p.health;
        for b in p.snapshot() {
            let Some(addr) = resolve(&b.authority) else {
                log::warn!("health: pool={} backend={}: cannot resolve {}; not checked", p.name, b.id, b.authority);
                continue;
            };
            // Host is the backend's own authority, as requests to it carry.
            let probe = HttpProbe { host: Some(b.authority.clone()), ..HttpProbe::new(h.path.clone(), h.expected_status) };
            v.push(Target {
                key: key(&p.name, &b.id),
                label: format!("pool={} backend={}", p.name, b.id),
                addr,
                probe: Arc::new(probe),
                interval: h.interval.0,
                timeout: h.timeout.0,
                rise: h.rise,
                fall: h.fall,
            });
        }
    }
    v
}

fn resolve(authority: &str) -> Option<SocketAddr> {
    authority.to_socket_addrs().ok()?.next()
}

/// Sets each backend's healthy flag from `map`; a backend without an entry
/// (its pool has checks off) counts as up.
pub fn apply(pools: &[Arc<Pool>], map: &HealthMap) {
    for p in pools {
        for b in p.snapshot() {
            let up = map.get(&key(&p.name, &b.id)).copied().unwrap_or(true);
            b.set_healthy(up);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn pools(yaml: &str) -> Vec<Arc<Pool>> {
        let c = Config::parse(yaml).unwrap();
        c.all_pools().iter().map(|pc| Arc::new(Pool::from_config(pc, None).unwrap())).collect()
    }

    #[test]
    fn targets_keyed_by_pool_and_backend_id() {
        let p = pools(
            "protocol: http\nport: 1\n\
             health: {path: /healthz, expected_status: 204, interval: 1m30s, timeout: 2, rise: 4, fall: 5}\n\
             backend_servers: [http://127.0.0.1:8080, {url: \"http://127.0.0.1:8081\", id: b2}]\n\
             pools:\n  - {name: off, backends: [http://127.0.0.1:9000], health: {enabled: false}}\n",
        );
        let t = targets(&p);
        let keys: Vec<&str> = t.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["default/127.0.0.1:8080", "default/b2"], "pool `off` is not checked");
        assert_eq!(t[1].label, "pool=default backend=b2");
        assert_eq!(t[1].addr, "127.0.0.1:8081".parse().unwrap());
        assert_eq!((t[1].interval, t[1].timeout), (std::time::Duration::from_secs(90), std::time::Duration::from_secs(2)));
        assert_eq!((t[1].rise, t[1].fall), (4, 5));
        let d = t[1].probe.describe();
        assert!(d.contains("/healthz") && d.contains("204") && d.contains("127.0.0.1:8081"), "{d}");
    }

    #[test]
    fn apply_sets_flags_and_unchecked_backends_are_up() {
        let p = pools("protocol: http\nport: 1\nbackend_servers: [http://127.0.0.1:8080, http://127.0.0.1:8081]\n");
        let b = p[0].snapshot();
        let mut map = HealthMap::new();
        map.insert(key("default", &b[0].id), false);
        apply(&p, &map);
        assert!(!b[0].is_healthy() && b[1].is_healthy());
        apply(&p, &HealthMap::new());
        assert!(b[0].is_healthy(), "no longer checked: up");
    }
}
