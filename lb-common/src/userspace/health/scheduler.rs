//! One task per health-check target, keyed so that state survives reloads.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle, time::MissedTickBehavior};

use super::{probe::check_within, Probe, Tracker};

/// Up (`true`) or down of every target, by key.
pub type HealthMap = BTreeMap<String, bool>;

/// One backend to check.
#[derive(Clone)]
pub struct Target {
    /// Stable identity across reloads (e.g. `web/198.18.1.11:8080`).
    pub key: String,
    /// How log lines name it, e.g. `vip=web backend=198.18.1.11:8080`.
    pub label: String,
    pub addr: SocketAddr,
    pub probe: Arc<dyn Probe>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

impl Target {
    /// Two targets with the same key and fingerprint are the same check.
    fn fingerprint(&self) -> String {
        format!("{} {} {:?} {:?} {} {}", self.addr, self.probe.describe(), self.interval, self.timeout, self.rise, self.fall)
    }
}

struct Running {
    fingerprint: String,
    task: JoinHandle<()>,
}

/// Runs the checks and publishes a [`HealthMap`] (a new value on every
/// change). Dropping it stops every check.
pub struct Scheduler {
    tx: Arc<watch::Sender<HealthMap>>,
    running: HashMap<String, Running>,
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler::new()
    }
}

impl Scheduler {
    pub fn new() -> Scheduler {
        Scheduler { tx: Arc::new(watch::channel(HealthMap::new()).0), running: HashMap::new() }
    }

    /// A receiver of the state; it sees every change from now on.
    pub fn subscribe(&self) -> watch::Receiver<HealthMap> {
        self.tx.subscribe()
    }

    /// The state now.
    pub fn state(&self) -> HealthMap {
        self.tx.borrow().clone()
    }

    /// Whether `key` is up; `None` for a key that is not checked.
    pub fn is_up(&self, key: &str) -> Option<bool> {
        self.tx.borrow().get(key).copied()
    }

    /// Number of running checks.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Makes `targets` the checked set, on the current tokio runtime (panics
    /// outside one). A target whose key and check stay unchanged keeps
    /// running untouched; one whose check changed restarts in its current
    /// state; a new one starts up; targets not listed stop and leave the map.
    pub fn sync(&mut self, targets: Vec<Target>) {
        let wanted: HashMap<&str, &Target> = targets.iter().map(|t| (t.key.as_str(), t)).collect();
        self.running.retain(|key, r| {
            let keep = wanted.contains_key(key.as_str());
            if !keep {
                r.task.abort();
            }
            keep
        });
        self.tx.send_if_modified(|m| {
            let before = m.len();
            m.retain(|k, _| wanted.contains_key(k.as_str()));
            m.len() != before
        });
        for t in &targets {
            let fingerprint = t.fingerprint();
            if self.running.get(&t.key).is_some_and(|r| r.fingerprint == fingerprint) {
                continue;
            }
            if let Some(old) = self.running.remove(&t.key) {
                old.task.abort();
            }
            let up = self.is_up(&t.key).unwrap_or(true);
            self.tx.send_if_modified(|m| m.insert(t.key.clone(), up) != Some(up));
            let task = tokio::spawn(run(t.clone(), up, self.tx.clone()));
            self.running.insert(t.key.clone(), Running { fingerprint, task });
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        for r in self.running.values() {
            r.task.abort();
        }
    }
}

async fn run(t: Target, up: bool, tx: Arc<watch::Sender<HealthMap>>) {
    let mut tracker = Tracker::starting(up, t.rise, t.fall);
    let mut ticks = tokio::time::interval(t.interval.max(Duration::from_millis(1)));
    // A slow check delays the next one rather than firing a burst after it.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let result = check_within(&*t.probe, t.addr, t.timeout).await;
        if let Err(reason) = &result {
            log::debug!("health check failed {} reason={reason:?}", t.label);
        }
        let (successes, failures) = (tracker.successes + 1, tracker.failures + 1);
        let Some(now_up) = tracker.record(result.is_ok()) else { continue };
        match result {
            Ok(()) => log::info!("backend up {} successes={successes}", t.label),
            Err(reason) => log::warn!("backend down {} reason={reason:?} failures={failures}", t.label),
        }
        tx.send_modify(|m| {
            m.insert(t.key.clone(), now_up);
        });
    }
}

#[cfg(test)]
mod tests;
