//! What the backend simulator saw, for `GET /stats` and for tests in the
//! same process. Counters only grow, except `active`.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

/// Distinct paths kept in `requests`; the rest are counted under `OTHER`, so
/// a client walking random paths cannot grow the map without bound.
const MAX_PATHS: usize = 64;
const OTHER: &str = "(other)";

#[derive(Default)]
pub struct Stats {
    /// TCP connections accepted on the HTTP/raw and echo listeners (the
    /// control port is not counted).
    pub accepted: AtomicU64,
    /// Connections being served now.
    pub active: AtomicU64,
    /// Closed at once because `max_conns` were being served.
    pub refused: AtomicU64,
    /// Closed right after accept by the chaos percentage.
    pub chaos_closed: AtomicU64,
    /// Closed by the idle timeout.
    pub idle_closed: AtomicU64,
    /// `REQ <n>` lines answered `ACK <n>` (and `PING`s) on the echo port.
    pub echo_lines: AtomicU64,
    /// Echo lines answered `ERR`.
    pub echo_errors: AtomicU64,
    /// Bytes received on the HTTP/raw and echo connections, counted as
    /// they arrive (a client trickling a line shows here byte by byte).
    pub bytes_in: AtomicU64,
    /// HTTP responses by path (without the query) and status.
    requests: Mutex<BTreeMap<String, BTreeMap<u16, u64>>>,
    /// HTTP requests other than health checks by the client identity a TLS
    /// tier passed on (`x-client-identity`), [`NO_IDENTITY`] without one:
    /// how a lab shows that every request carried the verified identity.
    identities: Mutex<BTreeMap<String, u64>>,
}

/// The [`Stats::identities`] key of requests without an identity header.
pub const NO_IDENTITY: &str = "(none)";
/// The header a TLS tier passes the client identity in (alb's default).
pub const IDENTITY_HEADER: &str = "x-client-identity";

impl Stats {
    pub(super) fn record(&self, path: &str, status: u16) {
        let mut requests = self.requests.lock().unwrap();
        let key = if requests.contains_key(path) || requests.len() < MAX_PATHS { path } else { OTHER };
        // The lab's backends count every benchmark request: no allocation once a path is known.
        let by_status = match requests.get_mut(key) {
            Some(by_status) => by_status,
            None => requests.entry(key.to_owned()).or_default(),
        };
        *by_status.entry(status).or_default() += 1;
    }

    /// Counts one request by its identity header (bounded as paths are).
    pub(super) fn record_identity(&self, identity: Option<&str>) {
        let mut ids = self.identities.lock().unwrap();
        let id = identity.unwrap_or(NO_IDENTITY);
        let key = if ids.contains_key(id) || ids.len() < MAX_PATHS { id } else { OTHER };
        match ids.get_mut(key) {
            Some(n) => *n += 1,
            None => {
                ids.insert(key.to_owned(), 1);
            }
        }
    }

    /// Requests (health checks excluded) by client identity so far.
    pub fn identities(&self) -> BTreeMap<String, u64> {
        self.identities.lock().unwrap().clone()
    }

    /// HTTP responses with this path and status so far.
    pub fn requests(&self, path: &str, status: u16) -> u64 {
        self.requests.lock().unwrap().get(path).and_then(|s| s.get(&status)).copied().unwrap_or(0)
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection as active unless `max` (0: unlimited) are; the
    /// guard un-counts it when the connection ends.
    pub(super) fn admit(&self, max: usize) -> Option<ActiveGuard<'_>> {
        let max = if max == 0 { u64::MAX } else { max as u64 };
        self.active.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        Some(ActiveGuard(self))
    }

    pub fn to_json(&self) -> serde_json::Value {
        let requests: serde_json::Map<String, serde_json::Value> = self
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(|(path, by_status)| (path.clone(), by_status.iter().map(|(s, n)| (s.to_string(), serde_json::json!(n))).collect()))
            .collect();
        serde_json::json!({
            "connections": {
                "accepted": Stats::get(&self.accepted),
                "active": Stats::get(&self.active),
                "refused": Stats::get(&self.refused),
                "chaos_closed": Stats::get(&self.chaos_closed),
                "idle_closed": Stats::get(&self.idle_closed),
                "bytes_in": Stats::get(&self.bytes_in),
            },
            "requests": requests,
            "identities": self.identities(),
            "echo": {"lines": Stats::get(&self.echo_lines), "errors": Stats::get(&self.echo_errors)},
        })
    }
}

pub(super) struct ActiveGuard<'a>(&'a Stats);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_bounded_and_admission_respects_the_limit() {
        let stats = Stats::default();
        for i in 0..(MAX_PATHS + 10) {
            stats.record(&format!("/p{i}"), 200);
        }
        stats.record("/p0", 503);
        assert_eq!((stats.requests("/p0", 200), stats.requests("/p0", 503), stats.requests(OTHER, 200)), (1, 1, 10));
        let a = stats.admit(2).unwrap();
        let _b = stats.admit(2).unwrap();
        assert!(stats.admit(2).is_none());
        drop(a);
        assert!(stats.admit(2).is_some());
        assert!(stats.admit(0).is_some());
    }

    #[test]
    fn identities_are_counted_and_bounded() {
        let stats = Stats::default();
        stats.record_identity(Some("CN=a"));
        stats.record_identity(Some("CN=a"));
        stats.record_identity(None);
        assert_eq!(stats.identities(), BTreeMap::from([("CN=a".to_owned(), 2), (NO_IDENTITY.to_owned(), 1)]));
        for i in 0..(MAX_PATHS + 5) {
            stats.record_identity(Some(&format!("CN={i}")));
        }
        assert!(stats.identities().len() <= MAX_PATHS + 1);
        assert!(stats.identities()[OTHER] > 0);
    }
}
