//! Backends and pools: the shared, mutable view of where traffic may go.
//! A backend is *available* when its active health check says up, passive
//! ejection is not in force and it is not draining for removal.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::balancer::{self, Balancer};
use crate::config::{
    parse_backend_url, Algorithm, HealthConfig, MatchConfig, PassiveConfig, PoolConfig,
};

#[derive(Debug)]
pub struct Backend {
    /// Stable name used by the admin API and metrics (default: host:port).
    pub id: String,
    pub url: String,
    /// `host:port` to connect to.
    pub authority: String,
    pub weight: u32,
    /// Requests currently being proxied (least_connections, p2c, drain).
    pub in_flight: AtomicUsize,
    healthy: AtomicBool,
    ejected_until: Mutex<Option<Instant>>,
    consecutive_failures: AtomicU32,
    /// Active-check streaks, for rise/fall.
    pub(crate) streak_ok: AtomicU32,
    pub(crate) streak_fail: AtomicU32,
    pub draining: AtomicBool,
}

impl Backend {
    pub fn new(url: &str, weight: u32, id: Option<&str>) -> Result<Backend, String> {
        let authority = parse_backend_url(url)?;
        Ok(Backend {
            id: id.map(str::to_string).unwrap_or_else(|| authority.clone()),
            url: url.to_string(),
            authority,
            weight: weight.max(1),
            in_flight: AtomicUsize::new(0),
            // Start up: traffic flows at once, and the first failed checks
            // (fall) or passive errors take a dead backend out.
            healthy: AtomicBool::new(true),
            ejected_until: Mutex::new(None),
            consecutive_failures: AtomicU32::new(0),
            streak_ok: AtomicU32::new(0),
            streak_fail: AtomicU32::new(0),
            draining: AtomicBool::new(false),
        })
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(crate) fn set_healthy(&self, up: bool) -> bool {
        self.healthy.swap(up, Ordering::Relaxed) != up
    }

    pub fn is_ejected(&self) -> bool {
        matches!(*self.ejected_until.lock().unwrap(), Some(t) if t > Instant::now())
    }

    pub fn available(&self) -> bool {
        self.is_healthy() && !self.is_ejected() && !self.draining.load(Ordering::Relaxed)
    }

    pub fn record_success(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Counts a connect error or 5xx; returns true when this ejects it.
    pub fn record_failure(&self, p: &PassiveConfig) -> bool {
        if !p.enabled {
            return false;
        }
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= p.failures {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            *self.ejected_until.lock().unwrap() = Some(Instant::now() + p.cooldown.0);
            return true;
        }
        false
    }
}

pub struct Pool {
    pub name: String,
    pub algorithm: Algorithm,
    pub backends: RwLock<Vec<Arc<Backend>>>,
    pub balancer: Box<dyn Balancer>,
    pub health: HealthConfig,
    pub matcher: MatchConfig,
}

impl Pool {
    /// Builds a pool, reusing `previous` backends with the same id so a
    /// reload keeps health state and counters.
    pub fn from_config(c: &PoolConfig, previous: Option<&Pool>) -> Result<Pool, String> {
        let mut v = Vec::new();
        for b in &c.backends {
            let fresh = Backend::new(b.url(), b.weight(), b.id())?;
            let old = previous.and_then(|p| {
                p.backends
                    .read()
                    .unwrap()
                    .iter()
                    .find(|o| o.id == fresh.id && o.url == fresh.url && o.weight == fresh.weight)
                    .cloned()
            });
            v.push(old.unwrap_or_else(|| Arc::new(fresh)));
        }
        Ok(Pool {
            name: c.name.clone(),
            algorithm: c.algorithm,
            backends: RwLock::new(v),
            balancer: balancer::new(c.algorithm),
            health: c.health.clone(),
            matcher: c.matcher.clone(),
        })
    }

    /// Picks an available backend not in `exclude` (already tried).
    pub fn pick(&self, client: IpAddr, exclude: &[Arc<Backend>]) -> Option<Arc<Backend>> {
        let all = self.backends.read().unwrap();
        let cands: Vec<Arc<Backend>> = all
            .iter()
            .filter(|b| b.available() && !exclude.iter().any(|e| Arc::ptr_eq(e, b)))
            .cloned()
            .collect();
        drop(all);
        let i = self.balancer.pick(&cands, client)?;
        cands.get(i).cloned()
    }

    pub fn snapshot(&self) -> Vec<Arc<Backend>> {
        self.backends.read().unwrap().clone()
    }

    fn matches(&self, host: Option<&str>, path: &str) -> Option<usize> {
        if !self.matcher.hosts.is_empty() {
            let h = host.map(|h| h.split(':').next().unwrap_or(h).to_ascii_lowercase());
            if !self
                .matcher
                .hosts
                .iter()
                .any(|m| Some(m.to_ascii_lowercase()) == h)
            {
                return None;
            }
        }
        match &self.matcher.path_prefix {
            Some(p) if path.starts_with(p.as_str()) => Some(p.len() + 1),
            Some(_) => None,
            None => Some(usize::from(!self.matcher.hosts.is_empty())),
        }
    }
}

/// The pool for a request: the most specific match (longest path prefix,
/// host match beats none); the first pool when nothing matches.
pub fn route<'a>(pools: &'a [Arc<Pool>], host: Option<&str>, path: &str) -> Option<&'a Arc<Pool>> {
    pools
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.matches(host, path).map(|s| (s, std::cmp::Reverse(i), p)))
        .max_by_key(|(s, i, _)| (*s, *i))
        .map(|(_, _, p)| p)
        .or_else(|| pools.first())
}
