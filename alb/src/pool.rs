//! Backends and pools: the shared, mutable view of where traffic may go.
//! A backend is *available* when its active health check says up, passive
//! ejection is not in force and it is not draining for removal. Which
//! available backend a request gets is decided by the shared selection
//! code (`lb_common::userspace::select`), the same lb-user uses.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use lb_common::userspace::select::{self, Candidate, Flow, HashOptions, Load, Selection};

use crate::config::{parse_backend_url, Algorithm, HealthConfig, MatchConfig, PassiveConfig, PoolConfig};

#[derive(Debug)]
pub struct Backend {
    /// Stable name used by the admin API and metrics (default: host:port).
    pub id: String,
    pub url: String,
    /// `host:port` to connect to.
    pub authority: String,
    pub weight: u32,
    /// Requests currently being proxied (least_connections, p2c, drain);
    /// shared with the selection, which reads it.
    pub in_flight: Load,
    healthy: AtomicBool,
    ejected_until: Mutex<Option<Instant>>,
    consecutive_failures: AtomicU32,
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
            in_flight: Load::default(),
            // Start up: traffic flows at once, and the first failed checks
            // (fall) or passive errors take a dead backend out.
            healthy: AtomicBool::new(true),
            ejected_until: Mutex::new(None),
            consecutive_failures: AtomicU32::new(0),
            draining: AtomicBool::new(false),
        })
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Sets the active-check state (from the health scheduler); true when
    /// it changed.
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

/// A selection and what it was built from: the backend list (by pointer)
/// and each backend's availability at the time. Picks use it as long as
/// both still match, so a stateful algorithm (round robin cursor, smooth
/// weights) keeps its state between requests.
struct Built {
    backends: Vec<Arc<Backend>>,
    available: Vec<bool>,
    /// `None` when the selection could not be built (logged once, then
    /// every pick finds nothing until the backends change).
    selection: Option<Box<dyn Selection>>,
}

impl Built {
    /// Whether `now` is still the list and availability this was built
    /// from. Allocates nothing: it runs on every request.
    fn matches(&self, now: &[Arc<Backend>]) -> bool {
        self.backends.len() == now.len() && self.backends.iter().zip(&self.available).zip(now).all(|((b, &up), n)| Arc::ptr_eq(b, n) && n.available() == up)
    }
}

pub struct Pool {
    pub name: String,
    pub algorithm: Algorithm,
    pub backends: RwLock<Vec<Arc<Backend>>>,
    pub health: HealthConfig,
    pub matcher: MatchConfig,
    built: RwLock<Option<Arc<Built>>>,
}

impl Pool {
    /// Builds a pool, reusing `previous` backends with the same id so a
    /// reload keeps health state and counters.
    pub fn from_config(c: &PoolConfig, previous: Option<&Pool>) -> Result<Pool, String> {
        let mut v = Vec::new();
        for b in &c.backends {
            let fresh = Backend::new(b.url(), b.weight(), b.id())?;
            let old =
                previous.and_then(|p| p.backends.read().unwrap().iter().find(|o| o.id == fresh.id && o.url == fresh.url && o.weight == fresh.weight).cloned());
            v.push(old.unwrap_or_else(|| Arc::new(fresh)));
        }
        Ok(Pool {
            name: c.name.clone(),
            algorithm: c.algorithm,
            backends: RwLock::new(v),
            health: c.health.clone(),
            matcher: c.matcher.clone(),
            built: RwLock::new(None),
        })
    }

    /// The backend for `flow` (client → listener): the selection's first
    /// choice that is not in `exclude` (backends already tried for this
    /// request). The selection's fallbacks are every other available
    /// backend, so retries never repeat one and end when all were tried.
    pub fn pick(&self, flow: &Flow, exclude: &[Arc<Backend>]) -> Option<Arc<Backend>> {
        let built = self.current();
        let picks = built.selection.as_ref()?.pick(flow);
        picks.map(|id| &built.backends[id as usize]).find(|b| !exclude.iter().any(|e| Arc::ptr_eq(e, b))).cloned()
    }

    /// The selection for the backends as they are now, rebuilt only when
    /// the list or some backend's availability changed since the last one.
    fn current(&self) -> Arc<Built> {
        let now = self.backends.read().unwrap();
        if let Some(b) = &*self.built.read().unwrap() {
            if b.matches(&now) {
                return b.clone();
            }
        }
        let mut slot = self.built.write().unwrap();
        // Another request may have rebuilt it while this one waited.
        if let Some(b) = &*slot {
            if b.matches(&now) {
                return b.clone();
            }
        }
        let built = Arc::new(self.build(&now));
        *slot = Some(built.clone());
        built
    }

    fn build(&self, backends: &[Arc<Backend>]) -> Built {
        let available: Vec<bool> = backends.iter().map(|b| b.available()).collect();
        // The key is the address, not the user-given id: lb-user places
        // backends by "198.18.1.11:8080", so both tiers hash alike.
        let candidates: Vec<Candidate> = backends
            .iter()
            .zip(&available)
            .enumerate()
            .map(|(i, (b, &up))| Candidate { id: i as u32, key: b.authority.clone(), weight: b.weight, healthy: up, load: b.in_flight.clone() })
            .collect();
        let selection = match select::build(self.algorithm.select(), &candidates, HashOptions::default()) {
            Ok(s) => Some(s),
            Err(e) => {
                log::error!("pool {}: cannot balance with {}: {e}; no backend until this is fixed", self.name, self.algorithm.select());
                None
            }
        };
        Built { backends: backends.to_vec(), available, selection }
    }

    pub fn snapshot(&self) -> Vec<Arc<Backend>> {
        self.backends.read().unwrap().clone()
    }

    /// How specifically this pool matches a request, `None` when it does
    /// not: (longest path prefix + 1, or 0 without one; whether a host
    /// matched). Compared as a tuple: a longer prefix wins, then a host.
    fn matches(&self, host: Option<&str>, path: &str) -> Option<(usize, bool)> {
        let by_host = !self.matcher.hosts.is_empty();
        if by_host {
            let h = host.map(|h| host_name(h).to_ascii_lowercase());
            if !self.matcher.hosts.iter().any(|m| Some(host_name(m).to_ascii_lowercase()) == h) {
                return None;
            }
        }
        match &self.matcher.path_prefix {
            Some(p) if path.starts_with(p.as_str()) => Some((p.len() + 1, by_host)),
            Some(_) => None,
            None => Some((0, by_host)),
        }
    }
}

/// The host of a `Host` header (or `match.hosts` entry) without its port
/// and brackets: `[::1]:8443` and `[::1]` → `::1`, `a.test:8443` → `a.test`.
/// A bare IPv6 address (`::1`, several colons) has no port to remove.
fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => authority,
    }
}

/// The pool for a request: the most specific match (longest path prefix,
/// then a host match beats none, then the earlier pool); the first pool when
/// nothing matches.
pub fn route<'a>(pools: &'a [Arc<Pool>], host: Option<&str>, path: &str) -> Option<&'a Arc<Pool>> {
    pools
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.matches(host, path).map(|s| (s, std::cmp::Reverse(i), p)))
        .max_by_key(|(s, i, _)| (*s, *i))
        .map(|(_, _, p)| p)
        .or_else(|| pools.first())
}

#[cfg(test)]
mod tests;
