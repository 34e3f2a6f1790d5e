//! Per-second rates from counter samples taken when a client asks (the
//! control API of lb-user, alb's admin API): the reset-aware difference,
//! and the window that keeps an earlier sample to compute rates from.
//!
//! A sample becomes the base once it is at least [`MIN_WINDOW`] old, so the
//! first request has no rates and clients polling faster than the window
//! (several dashboards, a script) still get rates over at least that long,
//! not the noise of a few milliseconds.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// The shortest span rates are computed over.
pub const MIN_WINDOW: Duration = Duration::from_millis(500);

/// `(now - before) / seconds`. A counter that went down was reset (the
/// program was attached anew, the process restarted): its whole current
/// value counts as the increase, as Prometheus' `rate()` does. Zero when no
/// time passed.
pub fn per_second(now: u64, before: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    let delta = if now >= before { now - before } else { now };
    delta as f64 / seconds
}

/// The samples of one kind that rates are computed from.
pub struct SampleWindow<T> {
    samples: Mutex<Samples<T>>,
}

struct Samples<T> {
    /// The sample rates are computed from.
    base: Option<(Instant, T)>,
    /// The newest kept sample; becomes the base once it is old enough.
    latest: Option<(Instant, T)>,
}

impl<T> Default for SampleWindow<T> {
    fn default() -> Self {
        SampleWindow { samples: Mutex::new(Samples { base: None, latest: None }) }
    }
}

impl<T: Clone> SampleWindow<T> {
    /// Keeps `now` (taken at `at`) for later requests and calls `f` with the
    /// base sample and the time from it to `at`; `None` until a sample at
    /// least [`MIN_WINDOW`] old exists.
    pub fn since_base<R>(&self, now: &T, at: Instant, f: impl FnOnce(&T, Duration) -> R) -> Option<R> {
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        match &s.latest {
            None => s.latest = Some((at, now.clone())),
            Some((t, _)) if at.saturating_duration_since(*t) >= MIN_WINDOW => {
                s.base = s.latest.take();
                s.latest = Some((at, now.clone()));
            }
            Some(_) => {}
        }
        let (t, before) = s.base.as_ref()?;
        Some(f(before, at.saturating_duration_since(*t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_counter_counts_from_zero() {
        assert_eq!(per_second(150, 100, 2.0), 25.0);
        assert_eq!(per_second(30, 100, 2.0), 15.0);
        assert_eq!(per_second(30, 10, 0.0), 0.0);
    }

    #[test]
    fn rates_span_at_least_the_window() {
        let w = SampleWindow::<u64>::default();
        let t0 = Instant::now();
        let rate = |now: u64, at: Instant| w.since_base(&now, at, |before, d| (per_second(now, *before, d.as_secs_f64()), d));
        assert_eq!(rate(0, t0), None, "no earlier sample");
        assert_eq!(rate(5, t0 + Duration::from_millis(100)), None, "too soon to be the base");
        assert_eq!(rate(100, t0 + Duration::from_secs(1)), Some((100.0, Duration::from_secs(1))));
        // A quick second poll: still over the whole span from t0.
        let (r, d) = rate(110, t0 + Duration::from_millis(1100)).unwrap();
        assert!((r - 100.0).abs() < 1e-9 && d == Duration::from_millis(1100), "{r} over {d:?}");
        // Half a second after the last kept sample (t0 + 1 s) it is the base.
        assert_eq!(rate(200, t0 + Duration::from_millis(1500)), Some((200.0, Duration::from_millis(500))));
    }
}
