//! Per-client-IP request rate limit (token bucket). Timeouts and header
//! size limits are enforced where they apply: hyper's header-read timer and
//! buffer cap in `server`, backend timeouts in `upstream`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Above this many tracked clients, full buckets are forgotten (they carry
/// no state a fresh bucket would not have).
const MAX_TRACKED: usize = 100_000;

pub struct RateLimiter {
    rps: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// `rps == 0` disables limiting.
    pub fn new(rps: f64, burst: Option<f64>) -> RateLimiter {
        RateLimiter { rps, burst: burst.unwrap_or(rps * 2.0).max(1.0), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `ip`; false means "answer 429".
    pub fn allow(&self, ip: IpAddr) -> bool {
        if self.rps <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut m = self.buckets.lock().unwrap();
        if m.len() > MAX_TRACKED {
            let (rps, burst) = (self.rps, self.burst);
            m.retain(|_, (t, last)| *t + now.duration_since(*last).as_secs_f64() * rps < burst);
        }
        let (tokens, last) = m.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rps).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Retry budget: each request deposits `percent/100` tokens, and
/// `min_per_second` tokens trickle in regardless; a retry spends one.
/// Keeps retries from multiplying load when a whole pool is failing.
pub struct RetryBudget {
    ratio: f64,
    min_per_second: f64,
    state: Mutex<(f64, Instant)>,
}

impl RetryBudget {
    pub fn new(percent: f64, min_per_second: f64) -> RetryBudget {
        RetryBudget { ratio: percent / 100.0, min_per_second, state: Mutex::new((min_per_second.max(1.0), Instant::now())) }
    }

    fn cap(&self) -> f64 {
        (self.min_per_second * 10.0).max(100.0)
    }

    pub fn deposit(&self) {
        let mut s = self.state.lock().unwrap();
        s.0 = (s.0 + self.ratio).min(self.cap());
    }

    pub fn try_spend(&self) -> bool {
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * self.min_per_second).min(self.cap());
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_burst_then_deny() {
        let r = RateLimiter::new(1.0, Some(3.0));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!((0..3).all(|_| r.allow(ip)));
        assert!(!r.allow(ip));
        assert!(r.allow("10.0.0.2".parse().unwrap()), "other clients unaffected");
        assert!(RateLimiter::new(0.0, None).allow(ip));
    }

    #[test]
    fn retry_budget_is_bounded() {
        let b = RetryBudget::new(0.0, 0.0);
        assert!(b.try_spend(), "initial token");
        assert!(!b.try_spend());
        let b = RetryBudget::new(50.0, 0.0);
        b.try_spend();
        b.deposit();
        assert!(!b.try_spend());
        b.deposit();
        assert!(b.try_spend());
    }
}
