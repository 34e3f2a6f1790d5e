//! lb-user's view of the shared health checker
//! ([`lb_common::userspace::health`]): one check target per (VIP, backend)
//! of every VIP with a `health_check`, and the [`HealthSnapshot`] the table
//! builders and the proxy read.
//!
//! Targets are keyed `vip-name/address:port`. A reload syncs the checker
//! with the new config, so a backend that stays (same VIP name, same
//! address and port) keeps its up/down state and its running check; new
//! backends start up, as in HAProxy; backends of VIPs without a check are
//! always up. Each change is logged by the checker as one line:
//!
//! ```text
//! backend down vip=web backend=198.18.1.11:8080 reason="connect: Connection refused (os error 111)" failures=3
//! backend up vip=web backend=198.18.1.11:8080 successes=2
//! ```

use std::sync::Arc;

use lb_common::userspace::health::{HealthMap, HttpProbe, Probe, Scheduler, Target, TcpProbe};
use tokio::sync::watch;

use crate::config::{Backend, Config, HealthCheck, HealthCheckKind, Vip};

/// Health of every backend, indexed `[vip][backend]` in config order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthSnapshot {
    pub up: Vec<Vec<bool>>,
}

impl HealthSnapshot {
    /// Every backend of `config` up.
    pub fn all_up(config: &Config) -> HealthSnapshot {
        HealthSnapshot { up: config.vips.iter().map(|v| vec![true; v.backends.len()]).collect() }
    }

    /// Whether backend `backend` of VIP `vip` is up (`false` if out of range).
    pub fn is_up(&self, vip: usize, backend: usize) -> bool {
        self.up.get(vip).and_then(|b| b.get(backend)).copied().unwrap_or(false)
    }

    /// Indexes of the VIP's backends that are up, ascending.
    pub fn up_backends(&self, vip: usize) -> Vec<u32> {
        self.up.get(vip).map(|b| b.iter().enumerate().filter(|(_, &u)| u).map(|(i, _)| i as u32).collect()).unwrap_or_default()
    }
}

/// The checker key of a backend.
pub fn target_key(vip: &Vip, backend: &Backend) -> String {
    format!("{}/{}", vip.name, backend.socket_addr())
}

fn probe(check: &HealthCheck) -> Arc<dyn Probe> {
    match &check.kind {
        HealthCheckKind::Tcp => Arc::new(TcpProbe),
        HealthCheckKind::Http { path, expect_status } => Arc::new(HttpProbe::new(path.clone(), *expect_status)),
    }
}

/// The check targets of `config`.
pub fn targets(config: &Config) -> Vec<Target> {
    let mut out = Vec::new();
    for vip in &config.vips {
        let Some(check) = &vip.health_check else { continue };
        let probe = probe(check);
        for b in &vip.backends {
            out.push(Target {
                key: target_key(vip, b),
                label: format!("vip={} backend={}", vip.name, b.socket_addr()),
                addr: b.socket_addr(),
                probe: probe.clone(),
                interval: check.interval,
                timeout: check.timeout,
                rise: check.rise,
                fall: check.fall,
            });
        }
    }
    out
}

/// `config`'s backends as `map` judges them: up when unchecked, or checked
/// and not yet in the map (a new backend starts up).
pub fn snapshot(config: &Config, map: &HealthMap) -> HealthSnapshot {
    HealthSnapshot {
        up: config
            .vips
            .iter()
            .map(|v| v.backends.iter().map(|b| v.health_check.is_none() || map.get(&target_key(v, b)).copied().unwrap_or(true)).collect())
            .collect(),
    }
}

/// The running checks of one lb-user (attach or proxy). Dropping it stops
/// them.
pub struct HealthChecks {
    scheduler: Scheduler,
    rx: watch::Receiver<HealthMap>,
}

impl Default for HealthChecks {
    fn default() -> Self {
        HealthChecks::new()
    }
}

impl HealthChecks {
    /// No checks yet; [`HealthChecks::sync`] starts them.
    pub fn new() -> HealthChecks {
        let scheduler = Scheduler::new();
        let rx = scheduler.subscribe();
        HealthChecks { scheduler, rx }
    }

    /// Checks `config`'s backends from now on, keeping the state of those
    /// that stay. Must run inside a tokio runtime.
    pub fn sync(&mut self, config: &Config) {
        self.scheduler.sync(targets(config));
    }

    /// `config`'s backends as the checks judge them now. Called with a new
    /// config before [`HealthChecks::sync`], it gives the state the new
    /// config starts in.
    pub fn snapshot(&self, config: &Config) -> HealthSnapshot {
        snapshot(config, &self.rx.borrow())
    }

    /// Resolves when a backend's state changed since the last call.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            // The scheduler lives as long as `self`: never happens.
            std::future::pending::<()>().await;
        }
        self.rx.borrow_and_update();
    }

    /// Number of running checks (one per checked backend).
    pub fn task_count(&self) -> usize {
        self.scheduler.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(check: &str, port: u16) -> Config {
        Config::parse(&yaml_of(check, port), "test.yaml").unwrap()
    }

    #[test]
    fn targets_and_snapshot_follow_the_config() {
        let c = config("{ type: http, path: /health, expect_status: 204, interval: 1s, timeout: 500ms, rise: 2, fall: 3 }", 1);
        let t = targets(&c);
        assert_eq!(t.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(), ["web/127.0.0.1:1", "web/127.0.0.1:2"]);
        assert_eq!(t[0].label, "vip=web backend=127.0.0.1:1");
        assert_eq!(t[0].probe.describe(), HttpProbe::new("/health", 204).describe());
        assert_eq!((t[0].interval, t[0].timeout, t[0].rise, t[0].fall), (Duration::from_secs(1), Duration::from_millis(500), 2, 3));
        let map: HealthMap = [("web/127.0.0.1:2".to_owned(), false), ("nocheck/127.0.0.1:1".to_owned(), false)].into();
        let s = snapshot(&c, &map);
        assert_eq!(s.up, vec![vec![true, false], vec![true]], "unknown = up; unchecked VIPs always up");
        assert_eq!(s.up_backends(0), [0]);
        assert!(!s.is_up(5, 0));
    }

    #[tokio::test]
    async fn a_dead_backend_stays_down_when_the_config_is_reloaded() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = dead.local_addr().unwrap().port();
        drop(dead);
        let check = "{ type: tcp, interval: 100ms, timeout: 50ms, rise: 3, fall: 1 }";
        let c = config(check, port);
        let mut h = HealthChecks::new();
        h.sync(&c);
        assert_eq!(h.task_count(), 2);
        tokio::time::timeout(Duration::from_secs(3), async {
            while h.snapshot(&c).is_up(0, 0) {
                h.changed().await;
            }
        })
        .await
        .expect("the dead backend goes down");
        // The reloaded config adds a VIP; the dead backend stays.
        let reloaded = Config::parse(
            &format!(
                "{}  - name: more\n    address: 127.0.0.1\n    port: 82\n    backends: [{{ address: 127.0.0.1, port: 3 }}]\n    health_check: {check}\n",
                yaml_of(check, port)
            ),
            "test.yaml",
        )
        .unwrap();
        let start = h.snapshot(&reloaded);
        assert!(!start.is_up(0, 0), "down before the sync: the new config starts with it down");
        h.sync(&reloaded);
        assert!(!h.snapshot(&reloaded).is_up(0, 0), "still down after the sync");
        assert!(h.snapshot(&reloaded).is_up(2, 0), "a new backend starts up");
    }

    fn yaml_of(check: &str, port: u16) -> String {
        format!(
            "interfaces: [{{ name: lo }}]\nmaglev: {{ size: 251 }}\nvips:\n  - name: web\n    address: 127.0.0.1\n    port: 80\n    \
             backends: [{{ address: 127.0.0.1, port: {port} }}, {{ address: 127.0.0.1, port: 2 }}]\n    health_check: {check}\n  \
             - name: nocheck\n    address: 127.0.0.1\n    port: 81\n    backends: [{{ address: 127.0.0.1, port: 1 }}]\n"
        )
    }
}
