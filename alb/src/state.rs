//! Everything a connection or request needs, swappable as a whole on
//! reload: each request takes `Arc` snapshots, so a reload never changes
//! settings under a request in progress.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use lb_common::userspace::health::Scheduler;
use rustls::ServerConfig;
use tokio::sync::watch;

use crate::access_log::AccessLog;
use crate::allowlist::Allowlist;
use crate::config::Config;
use crate::health;
use crate::limits::{RateLimiter, RetryBudget};
use crate::metrics::Metrics;
use crate::pool::Pool;
use crate::upstream::Upstream;

pub struct State {
    pub cfg: RwLock<Arc<Config>>,
    pub tls: RwLock<Option<Arc<ServerConfig>>>,
    pub allowlist: RwLock<Arc<Allowlist>>,
    pub pools: RwLock<Arc<Vec<Arc<Pool>>>>,
    pub limiter: RwLock<Arc<RateLimiter>>,
    pub budget: RwLock<Arc<RetryBudget>>,
    pub upstream: Arc<Upstream>,
    pub metrics: Metrics,
    /// Active health checks of the pools' backends; see `crate::health`.
    pub health: Mutex<Scheduler>,
    /// The open access log, if the config has one (reopened on each reload,
    /// so a rotated file is followed).
    pub access_log: RwLock<Option<Arc<AccessLog>>>,
}

impl State {
    pub fn cfg(&self) -> Arc<Config> {
        self.cfg.read().unwrap().clone()
    }
    pub fn tls(&self) -> Option<Arc<ServerConfig>> {
        self.tls.read().unwrap().clone()
    }
    pub fn allowlist(&self) -> Arc<Allowlist> {
        self.allowlist.read().unwrap().clone()
    }
    pub fn pools(&self) -> Arc<Vec<Arc<Pool>>> {
        self.pools.read().unwrap().clone()
    }
    pub fn limiter(&self) -> Arc<RateLimiter> {
        self.limiter.read().unwrap().clone()
    }
    pub fn budget(&self) -> Arc<RetryBudget> {
        self.budget.read().unwrap().clone()
    }
    pub fn access_log(&self) -> Option<Arc<AccessLog>> {
        self.access_log.read().unwrap().clone()
    }

    /// Builds every derived part of `cfg`; fails without side effects, so
    /// a bad reload leaves the running state untouched.
    pub fn apply(&self, cfg: Config) -> anyhow::Result<()> {
        let tls = match cfg.protocol {
            crate::config::Protocol::Https => Some(crate::tls::server_config(&cfg)?),
            crate::config::Protocol::Http => None,
        };
        let allow = crate::allowlist::from_waf(&cfg.waf)?;
        let old_pools = self.pools();
        let mut pools = Vec::new();
        for pc in cfg.all_pools() {
            let prev = old_pools.iter().find(|p| p.name == pc.name);
            pools.push(Arc::new(Pool::from_config(&pc, prev.map(|p| &**p)).map_err(|e| anyhow::anyhow!("pool {}: {e}", pc.name))?));
        }
        // A backend object replaced by the reload (same id, new weight)
        // takes its predecessor's health state before it gets traffic.
        health::apply(&pools, &self.health.lock().unwrap().state());
        // Opened only where requests can run (not for `alb --check`, which
        // must not create files); a file that cannot be opened refuses the
        // config like any other problem.
        let access_log = match (&cfg.access_log, tokio::runtime::Handle::try_current()) {
            (Some(a), Ok(_)) => Some(Arc::new(AccessLog::open(a, self.metrics.access_log_dropped.clone())?)),
            _ => None,
        };
        let old = self.cfg();
        *self.tls.write().unwrap() = tls;
        *self.allowlist.write().unwrap() = Arc::new(allow);
        *self.pools.write().unwrap() = Arc::new(pools);
        // The old log (if no request still holds it) writes out its queue
        // and closes here.
        let old_log = std::mem::replace(&mut *self.access_log.write().unwrap(), access_log);
        drop(old_log);
        self.sync_health();
        if old.limits.rate_limit_rps != cfg.limits.rate_limit_rps || old.limits.rate_limit_burst != cfg.limits.rate_limit_burst {
            *self.limiter.write().unwrap() = Arc::new(RateLimiter::new(cfg.limits.rate_limit_rps, cfg.limits.rate_limit_burst));
        }
        *self.budget.write().unwrap() = Arc::new(RetryBudget::new(cfg.retries.budget_percent, cfg.retries.min_per_second));
        *self.cfg.write().unwrap() = Arc::new(cfg);
        Ok(())
    }

    pub fn new(cfg: Config) -> anyhow::Result<Arc<State>> {
        let st = State {
            tls: RwLock::new(None),
            allowlist: RwLock::new(Arc::new(crate::allowlist::allow_all())),
            pools: RwLock::new(Arc::new(Vec::new())),
            limiter: RwLock::new(Arc::new(RateLimiter::new(cfg.limits.rate_limit_rps, cfg.limits.rate_limit_burst))),
            budget: RwLock::new(Arc::new(RetryBudget::new(cfg.retries.budget_percent, cfg.retries.min_per_second))),
            upstream: Upstream::new(cfg.timeouts.idle.0),
            metrics: Metrics::new(),
            health: Mutex::new(Scheduler::new()),
            access_log: RwLock::new(None),
            cfg: RwLock::new(Arc::new(cfg.clone())),
        };
        st.apply(cfg)?;
        Ok(Arc::new(st))
    }
}

impl State {
    /// Makes the scheduler check the current pools and applies the state at
    /// once, so a backend object that a reload replaced (same id, new weight)
    /// takes over its predecessor's state before the next check. Without a
    /// tokio runtime (`alb --check`) there is nothing to run checks on, and
    /// nothing is started.
    pub fn sync_health(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let pools = self.pools();
        let mut scheduler = self.health.lock().unwrap();
        scheduler.sync(health::targets(&pools));
        health::apply(&pools, &scheduler.state());
    }

    /// Follows the scheduler's state into the backends, and refreshes the
    /// gauges every 100 ms (ejections end by time, not by an event). Stops
    /// every check on shutdown.
    pub async fn follow_health(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut states = self.health.lock().unwrap().subscribe();
        // A check may have changed a state between the first sync and now.
        health::apply(&self.pools(), &states.borrow_and_update().clone());
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                r = states.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let map = states.borrow_and_update().clone();
                    health::apply(&self.pools(), &map);
                }
                _ = tick.tick() => {
                    for p in self.pools().iter() {
                        for b in p.snapshot() {
                            self.metrics
                                .backend_healthy
                                .with_label_values(&[&p.name, &b.id])
                                .set(i64::from(b.available()));
                        }
                    }
                }
                _ = shutdown.changed() => {
                    *self.health.lock().unwrap() = Scheduler::new();
                    return;
                }
            }
        }
    }
}
