//! Admission at accept time: the allowlist and the per-client-IP limits.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use crate::config::Allowlist;

/// Why a connection was refused; the `reason` label of
/// `xdplb_proxy_rejected_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Source address or destination port not in the allowlist.
    Allowlist,
    /// The client IP already has `max_conns_per_ip` open connections.
    LimitConcurrent,
    /// The client IP opened `max_new_conns_per_minute` in the last minute.
    LimitRate,
    /// No backend of the VIP is up.
    NoBackend,
    /// Connecting to the chosen backend and to the fallback failed.
    ConnectFailed,
}

impl Reject {
    pub const ALL: [Reject; 5] = [Reject::Allowlist, Reject::LimitConcurrent, Reject::LimitRate, Reject::NoBackend, Reject::ConnectFailed];

    pub fn label(self) -> &'static str {
        match self {
            Reject::Allowlist => "allowlist",
            Reject::LimitConcurrent => "limit_concurrent",
            Reject::LimitRate => "limit_rate",
            Reject::NoBackend => "no_backend",
            Reject::ConnectFailed => "connect_failed",
        }
    }

    /// Index into [`Reject::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Whether a client at `src` may connect to a VIP on port `dport`. Every
/// connection the proxy accepts is VIP traffic, so the allowlist's `scope`
/// (`vips` or `all`) makes no difference here. `None` allows everything.
pub fn allowed(allowlist: Option<&Allowlist>, src: IpAddr, dport: u16) -> bool {
    allowlist.is_none_or(|allow| allow.rules.admits(src, dport))
}

/// Length of the rate-limit window.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct IpState {
    active: u32,
    /// Start of the current fixed window.
    window_start: Instant,
    /// Accepted connections in the current window.
    current: u32,
    /// Accepted connections in the previous window.
    previous: u32,
}

/// Per-client-IP limits, shared by all VIPs of a proxy.
///
/// - **Concurrent**: at most `max_conns` open connections per client IP.
/// - **Rate**: at most `max_per_minute` accepted connections per client IP in
///   any 60 s, as a *sliding window counter*: the count of the previous fixed
///   minute is weighted by how much of it still overlaps the last 60 s and
///   added to the current minute's count. It never allows more than the limit
///   in a fixed minute and smooths the burst a plain fixed window allows at
///   the boundary. Refused attempts do not count.
///
/// 0 means unlimited; with both 0 nothing is tracked. The limits can change
/// while connections are open ([`IpLimiter::set_limits`], on reload): the
/// counts carry over, but connections admitted while both limits were 0 were
/// not counted and never will be.
#[derive(Debug)]
pub struct IpLimiter {
    max_conns: AtomicU32,
    max_per_minute: AtomicU32,
    state: Mutex<HashMap<IpAddr, IpState>>,
}

/// An admitted connection's hold on its IP's concurrent count; released on
/// drop.
#[derive(Debug)]
pub struct IpPermit {
    limiter: Option<Arc<IpLimiter>>,
    ip: IpAddr,
}

impl Drop for IpPermit {
    fn drop(&mut self) {
        if let Some(l) = self.limiter.take() {
            l.release(self.ip);
        }
    }
}

impl IpLimiter {
    pub fn new(max_conns: u32, max_per_minute: u32) -> Arc<IpLimiter> {
        Arc::new(IpLimiter { max_conns: AtomicU32::new(max_conns), max_per_minute: AtomicU32::new(max_per_minute), state: Mutex::new(HashMap::new()) })
    }

    /// Changes the limits for connections admitted from now on.
    pub fn set_limits(&self, max_conns: u32, max_per_minute: u32) {
        self.max_conns.store(max_conns, Ordering::Relaxed);
        self.max_per_minute.store(max_per_minute, Ordering::Relaxed);
    }

    /// `(max_conns, max_per_minute)`.
    pub fn limits(&self) -> (u32, u32) {
        (self.max_conns.load(Ordering::Relaxed), self.max_per_minute.load(Ordering::Relaxed))
    }

    /// Admits a new connection from `ip` now.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<IpPermit, Reject> {
        self.admit_at(ip, Instant::now())
    }

    /// Admits a new connection from `ip` at `now`.
    pub fn admit_at(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<IpPermit, Reject> {
        let ip = ip.to_canonical();
        let (max_conns, max_per_minute) = self.limits();
        if max_conns == 0 && max_per_minute == 0 {
            return Ok(IpPermit { limiter: None, ip });
        }
        let mut map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = map.entry(ip).or_insert(IpState { active: 0, window_start: now, current: 0, previous: 0 });
        if max_conns != 0 && st.active >= max_conns {
            return Err(Reject::LimitConcurrent);
        }
        if max_per_minute != 0 {
            roll(st, now);
            let into = now.saturating_duration_since(st.window_start).as_secs_f64() / RATE_WINDOW.as_secs_f64();
            let estimate = f64::from(st.previous) * (1.0 - into).max(0.0) + f64::from(st.current);
            if estimate + 1.0 > f64::from(max_per_minute) + 1e-9 {
                return Err(Reject::LimitRate);
            }
            st.current += 1;
        }
        st.active += 1;
        Ok(IpPermit { limiter: Some(self.clone()), ip })
    }

    fn release(&self, ip: IpAddr) {
        let mut map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(st) = map.get_mut(&ip) {
            st.active = st.active.saturating_sub(1);
            if st.active == 0 && self.max_per_minute.load(Ordering::Relaxed) == 0 {
                map.remove(&ip);
            }
        }
    }

    /// Forgets IPs with no open connection whose windows have both expired.
    pub fn sweep(&self, now: Instant) {
        let mut map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, st| st.active > 0 || now.saturating_duration_since(st.window_start) < 2 * RATE_WINDOW);
    }

    /// Number of client IPs tracked.
    pub fn tracked(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn roll(st: &mut IpState, now: Instant) {
    let elapsed = now.saturating_duration_since(st.window_start);
    if elapsed >= 2 * RATE_WINDOW {
        st.previous = 0;
        st.current = 0;
        st.window_start = now;
    } else if elapsed >= RATE_WINDOW {
        st.previous = st.current;
        st.current = 0;
        st.window_start += RATE_WINDOW;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AllowlistScope;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn allowlist_checks_source_and_port() {
        use lb_common::userspace::allowlist::{Allowlist as Rules, Ports};
        let rules = Rules { sources: vec!["198.18.0.0/24".parse().unwrap(), "fd00:198:18::/64".parse().unwrap()], ports: Ports::Only(vec![80, 8080]) };
        let allow = Allowlist { rules: rules.clone(), scope: AllowlistScope::Vips };
        assert!(allowed(None, ip("1.2.3.4"), 1));
        assert!(allowed(Some(&allow), ip("198.18.0.9"), 80));
        assert!(allowed(Some(&allow), ip("::ffff:198.18.0.9"), 8080));
        assert!(allowed(Some(&allow), ip("fd00:198:18::5"), 80));
        assert!(!allowed(Some(&allow), ip("198.18.1.9"), 80));
        assert!(!allowed(Some(&allow), ip("198.18.0.9"), 443));
        let any = Allowlist { rules: Rules { ports: Ports::Any, ..rules }, ..allow };
        assert!(allowed(Some(&any), ip("198.18.0.9"), 443));
    }

    #[test]
    fn concurrent_limit_counts_open_permits() {
        let l = IpLimiter::new(2, 0);
        let a = l.admit(ip("10.0.0.1")).unwrap();
        let _b = l.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(l.admit(ip("10.0.0.1")).unwrap_err(), Reject::LimitConcurrent);
        let _c = l.admit(ip("10.0.0.2")).unwrap();
        drop(a);
        let _d = l.admit(ip("10.0.0.1")).unwrap();
        drop((_b, _c, _d));
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn rate_limit_is_a_sliding_window() {
        let l = IpLimiter::new(0, 4);
        let t0 = Instant::now();
        let c = ip("10.0.0.1");
        for _ in 0..4 {
            drop(l.admit_at(c, t0).unwrap());
        }
        assert_eq!(l.admit_at(c, t0).unwrap_err(), Reject::LimitRate);
        assert_eq!(l.admit_at(c, t0 + Duration::from_secs(59)).unwrap_err(), Reject::LimitRate);
        // 15 s into the next minute, 3/4 of the previous window still counts:
        // 4 × 0.75 = 3, so one more fits, not two.
        let t = t0 + Duration::from_secs(75);
        drop(l.admit_at(c, t).unwrap());
        assert_eq!(l.admit_at(c, t).unwrap_err(), Reject::LimitRate);
        // Two minutes of quiet reset everything.
        let t = t0 + Duration::from_secs(200);
        for _ in 0..4 {
            drop(l.admit_at(c, t).unwrap());
        }
        assert_eq!(l.admit_at(c, t).unwrap_err(), Reject::LimitRate);
        assert!(l.admit_at(ip("10.0.0.2"), t).is_ok());
        l.sweep(t + Duration::from_secs(121));
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn unlimited_tracks_nothing() {
        let l = IpLimiter::new(0, 0);
        let permits: Vec<_> = (0..100).map(|_| l.admit(ip("10.0.0.1")).unwrap()).collect();
        assert_eq!(l.tracked(), 0);
        drop(permits);
    }

    #[test]
    fn limits_change_with_counts_kept() {
        let l = IpLimiter::new(3, 0);
        let c = ip("10.0.0.1");
        let mut held: Vec<_> = (0..3).map(|_| l.admit(c).unwrap()).collect();
        assert_eq!(l.admit(c).unwrap_err(), Reject::LimitConcurrent);
        l.set_limits(2, 0);
        held.pop();
        assert_eq!(l.admit(c).unwrap_err(), Reject::LimitConcurrent, "2 still open, the new limit is 2");
        l.set_limits(4, 0);
        let _more: Vec<_> = (0..2).map(|_| l.admit(c).unwrap()).collect();
        assert_eq!(l.admit(c).unwrap_err(), Reject::LimitConcurrent);
        l.set_limits(0, 0);
        assert!(l.admit(c).is_ok());
        assert_eq!(l.limits(), (0, 0));
    }
}
