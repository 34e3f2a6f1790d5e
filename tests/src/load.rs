//! Bounded request loops for lab tests: worker threads inside a namespace
//! send requests one after the other (each whatever the caller's closure
//! does, typically one new connection) until stopped, or until a request
//! count or a time limit is reached, and record every outcome with its
//! start time and latency.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

/// One request: when it started, how long it took, and what it returned
/// (the closure's value, e.g. the backend's name) or why it failed.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub started: Instant,
    pub latency: Duration,
    pub result: Result<String, String>,
}

/// Limits of a [`Load`]: it never sends more than `max_requests` nor runs
/// longer than `max_time`; each worker waits `pause` between requests.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub max_requests: usize,
    pub max_time: Duration,
    pub pause: Duration,
}

/// Running workers; see the module docs.
pub struct Load {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Outcome>>>,
    workers: Vec<JoinHandle<Result<()>>>,
}

impl Load {
    /// Starts `workers` threads in namespace `ns`, each calling `request`
    /// in a loop within `bounds`.
    pub fn start<F>(ns: &str, workers: usize, bounds: Bounds, request: F) -> Load
    where
        F: Fn() -> Result<String> + Clone + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + bounds.max_time;
        let workers = (0..workers)
            .map(|_| {
                let (ns, stop, log, sent, request) = (ns.to_owned(), stop.clone(), log.clone(), sent.clone(), request.clone());
                std::thread::spawn(move || {
                    crate::netns::run_in(&ns, move || {
                        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline && sent.fetch_add(1, Ordering::SeqCst) < bounds.max_requests {
                            let started = Instant::now();
                            let result = request().map_err(|e| format!("{e:#}"));
                            log.lock().unwrap().push(Outcome { started, latency: started.elapsed(), result });
                            std::thread::sleep(bounds.pause);
                        }
                        Ok(())
                    })
                })
            })
            .collect();
        Load { stop, log, workers }
    }

    /// Every outcome so far, in completion order.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (at most `limit`) until `n` requests that started at or after
    /// `since` have succeeded.
    pub fn wait_successes(&self, since: Instant, n: usize, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let ok = self.log.lock().unwrap().iter().filter(|o| o.started >= since && o.result.is_ok()).count();
            if ok >= n {
                return Ok(());
            }
            if Instant::now() > deadline || self.workers.iter().all(|w| w.is_finished()) {
                bail!("only {ok} of {n} requests succeeded within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the workers after their current request and returns every outcome.
    pub fn stop(self) -> Result<Vec<Outcome>> {
        self.stop.store(true, Ordering::SeqCst);
        self.finish()
    }

    /// Waits until the workers reach their bounds and returns every outcome.
    pub fn finish(self) -> Result<Vec<Outcome>> {
        for w in self.workers {
            w.join().map_err(|_| anyhow::anyhow!("a load worker panicked"))??;
        }
        let log = self.log.lock().unwrap().clone();
        Ok(log)
    }
}

/// Counts and latency percentiles of some outcomes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    pub requests: usize,
    pub failed: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// Summarises `outcomes` (latencies of all requests, failed ones included).
pub fn summary<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Summary {
    let outcomes: Vec<&Outcome> = outcomes.into_iter().collect();
    let mut lat: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
    lat.sort();
    let pick = |q: f64| if lat.is_empty() { Duration::ZERO } else { lat[((lat.len() - 1) as f64 * q).round() as usize] };
    Summary {
        requests: outcomes.len(),
        failed: outcomes.iter().filter(|o| o.result.is_err()).count(),
        p50: pick(0.50),
        p99: pick(0.99),
        max: lat.last().copied().unwrap_or_default(),
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} requests, {} failed, p50 {:?}, p99 {:?}, max {:?}", self.requests, self.failed, self.p50, self.p99, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(ms: u64, ok: bool) -> Outcome {
        Outcome { started: Instant::now(), latency: Duration::from_millis(ms), result: if ok { Ok("a".into()) } else { Err("x".into()) } }
    }

    #[test]
    fn summary_counts_and_ranks() {
        let all: Vec<Outcome> = (1..=100).map(|ms| outcome(ms, ms != 7)).collect();
        let s = summary(&all);
        assert_eq!((s.requests, s.failed), (100, 1));
        assert_eq!((s.p50, s.p99, s.max), (Duration::from_millis(51), Duration::from_millis(99), Duration::from_millis(100)));
        assert_eq!(summary(&[]), Summary::default());
    }
}
