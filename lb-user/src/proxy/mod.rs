//! `lb-user proxy`: the userspace L4 forwarder, the baseline the XDP path is
//! compared against (see `docs/proxy.md`).
//!
//! For every TCP VIP of the config it listens on the VIP's `address:port` and
//! forwards each accepted connection to a backend picked by the shared
//! selection code the XDP map builder and alb use
//! ([`lb_common::userspace::select`], see [`balancer`]), rebuilt whenever the
//! [`crate::health`] checks change a backend's state.
//!
//! At accept, in order: the allowlist, the per-client-IP concurrent limit and
//! the per-client-IP rate limit ([`limits`]); refused connections are reset
//! (RST) at once and counted by reason. Then a backend is picked and
//! connected (with [`ProxyOptions::connect_timeout`]); if that fails, the
//! selection's first fallback (the next up backend in config order) is tried
//! once. Data is copied both ways with
//! `TCP_NODELAY` on both sides. UDP VIPs are relayed per client session
//! (`udp.rs`).
//!
//! The config can be replaced while running ([`ProxyHandle::reload`],
//! [`ProxyHandle::reload_file`], a change of [`ProxyOptions::config_file`];
//! SIGHUP in the CLI): see `reload.rs`. Every connection keeps the VIP state
//! it was accepted with, so a reload never disturbs established connections.
//!
//! The library entry is [`Proxy::start`], used by the CLI ([`run_cli`]), the
//! tests and the benchmarks.

pub mod balancer;
mod changes;
mod cli;
pub mod limits;
pub mod metrics;
mod reload;
mod splice;
mod tcp;
mod udp;

pub use cli::run_cli;

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, RwLock,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use lb_common::userspace::watch::ConfigFile;
use prometheus::{IntGauge, Registry};
use tokio::{
    net::TcpListener,
    sync::{watch, Notify},
    task::JoinHandle,
};

use crate::{
    config::{Config, Protocol},
    health::HealthSnapshot,
};
use balancer::Balancer;
use limits::IpLimiter;
use metrics::{Metrics, VipMetrics};
pub use reload::Reloader;

/// Default time allowed for connecting to a backend.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How often `lb-user proxy` checks the config file for a change.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Listen backlog of the VIP sockets.
const BACKLOG: u32 = 1024;

/// How [`Proxy::start`] gets its sockets and timeouts.
#[derive(Debug)]
pub struct ProxyOptions {
    /// Already-bound listeners to use instead of binding, by VIP name (tests
    /// and benchmarks bind `127.0.0.1:0` first and write the port into the
    /// config, so there is no race for the port). Others are bound here. Only
    /// used at start: VIPs added by a reload are always bound by the proxy.
    pub listeners: HashMap<String, std::net::TcpListener>,
    /// Already-bound sockets for UDP VIPs, by VIP name, as `listeners`.
    pub udp_sockets: HashMap<String, std::net::UdpSocket>,
    /// An already-bound listener for the metrics endpoint, used instead of
    /// binding `config.metrics.listen`.
    pub metrics_listener: Option<std::net::TcpListener>,
    /// Time allowed for one backend connect.
    pub connect_timeout: Duration,
    /// The file the config came from, made before the config was read from
    /// it: [`ProxyHandle::reload_file`] (SIGHUP in the CLI) re-reads it, and
    /// with `watch_interval` it is watched.
    pub config_file: Option<ConfigFile>,
    /// Check `config_file` this often (modification time, size, inode) and
    /// reload when it changed. `None`: no watching.
    pub watch_interval: Option<Duration>,
    /// `per_core` (`proxy.runtime`): the runtimes that accept and carry TCP
    /// connections, one `SO_REUSEPORT` listener and accept loop per VIP on
    /// each ([`lb_common::userspace::runtime::Runtimes::workers`]; the
    /// first must be the one running [`Proxy::start`]). A listener given in
    /// `listeners` goes to the first; the others bind its address with
    /// `SO_REUSEPORT`, so it must have that option set. Empty: one listener
    /// per VIP on the runtime running [`Proxy::start`] (`shared`).
    pub workers: Vec<tokio::runtime::Handle>,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            listeners: HashMap::new(),
            udp_sockets: HashMap::new(),
            metrics_listener: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            config_file: None,
            watch_interval: None,
            workers: Vec::new(),
        }
    }
}

/// What the control task publishes for [`ProxyHandle`]: it changes on reload.
#[derive(Default)]
struct Status {
    listening: RwLock<Vec<(String, SocketAddr)>>,
    config: RwLock<Option<Arc<Config>>>,
}

/// A running proxy. Dropping it does not stop the proxy; resolve the shutdown
/// future given to [`Proxy::start`] and then [`ProxyHandle::wait`].
pub struct ProxyHandle {
    status: Arc<Status>,
    metrics_addr: Option<SocketAddr>,
    registry: Registry,
    health: watch::Receiver<HealthSnapshot>,
    reloader: Reloader,
    task: JoinHandle<Result<()>>,
}

impl ProxyHandle {
    /// `(VIP name, bound address)` of every VIP (TCP and UDP) of the running
    /// config, in config order.
    pub fn listening(&self) -> Vec<(String, SocketAddr)> {
        self.status.listening.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The bound address of VIP `name`.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listening().into_iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }

    /// The config in force (the last one applied).
    pub fn config(&self) -> Arc<Config> {
        self.status.config.read().unwrap_or_else(|e| e.into_inner()).clone().expect("set at start")
    }

    /// The metrics endpoint's address, when there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The proxy's metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The metrics in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        crate::metrics_endpoint::render(&self.registry)
    }

    /// The health checker's state, indexed like the running config (after a
    /// reload: like the new config).
    pub fn health(&self) -> watch::Receiver<HealthSnapshot> {
        self.health.clone()
    }

    /// A handle that triggers reloads from elsewhere (a signal task).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Replaces the running config with `config` (see [`Reloader::reload`]):
    /// `Ok` with a summary of the changes, or `Err` with why it was refused
    /// (the running config then stays in force).
    pub async fn reload(&self, config: Config) -> Result<String> {
        self.reloader.reload(config).await
    }

    /// Re-reads [`ProxyOptions::config_file`] and applies it, as
    /// [`ProxyHandle::reload`].
    pub async fn reload_file(&self) -> Result<String> {
        self.reloader.reload_file("request").await
    }

    /// Waits until the proxy has shut down (shutdown future resolved, drain
    /// done). Errors only if the proxy task panicked or failed.
    pub async fn wait(self) -> Result<()> {
        self.task.await.context("the proxy task failed")?
    }
}

/// Counts open connections and wakes the drain when they change.
#[derive(Default)]
struct Open {
    count: AtomicUsize,
    changed: Notify,
}

struct OpenGuard(Arc<Open>, IntGauge);

impl OpenGuard {
    fn new(open: &Arc<Open>, gauge: &IntGauge) -> OpenGuard {
        open.count.fetch_add(1, Ordering::SeqCst);
        gauge.inc();
        OpenGuard(open.clone(), gauge.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.1.dec();
        self.0.count.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

impl Open {
    /// Waits until no connection is open or `deadline`; returns the number
    /// still open.
    async fn drain(&self, deadline: tokio::time::Instant) -> usize {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let n = self.count.load(Ordering::SeqCst);
            if n == 0 {
                return 0;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => return self.count.load(Ordering::SeqCst),
            }
        }
    }
}

/// One VIP of one config generation: what its accept loop uses for new
/// connections, and what each connection keeps for its lifetime (so a reload
/// never changes an established connection).
struct VipState {
    name: String,
    /// Index in `config.vips` (and in the health snapshot).
    index: usize,
    /// The bound address.
    addr: SocketAddr,
    backends: Vec<SocketAddr>,
    balancer: Balancer,
    metrics: VipMetrics,
    /// The whole config of the generation (allowlist, UDP timeout).
    config: Arc<Config>,
}

/// The current [`VipState`] of one listening socket; swapped on reload.
type VipCell = Arc<RwLock<Arc<VipState>>>;

fn current(cell: &VipCell) -> Arc<VipState> {
    cell.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// What every generation shares.
struct Shared {
    limiter: Arc<IpLimiter>,
    open: Arc<Open>,
    connect_timeout: Duration,
    /// Set to `true` when open connections must be closed (drain over).
    kill: watch::Receiver<bool>,
}

/// The userspace forwarder.
pub struct Proxy;

impl Proxy {
    /// Binds every VIP (and the metrics endpoint), starts the health checks
    /// and the accept loops, and returns once everything listens. Reloads
    /// ([`ProxyHandle::reload`], [`ProxyHandle::reload_file`], changes of
    /// `options.config_file`) are applied by a control task. When `shutdown`
    /// resolves: stop accepting, let open connections finish for
    /// `proxy.drain_timeout`, close the rest, stop. Must run inside a Tokio
    /// runtime.
    pub async fn start<F>(config: Config, mut options: ProxyOptions, shutdown: F) -> Result<ProxyHandle>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        for (name, proto, what) in
            options.listeners.keys().map(|n| (n, Protocol::Tcp, "listener")).chain(options.udp_sockets.keys().map(|n| (n, Protocol::Udp, "UDP socket")))
        {
            if !config.vips.iter().any(|v| &v.name == name && v.protocol == proto) {
                bail!("a {what} was given for VIP {name:?}, which is not a {proto} VIP of the config");
            }
        }
        if let Some(api) = config.api {
            // The control API drives the XDP tables; saying so beats a
            // silently missing listener.
            log::warn!("api: the control API ({}) is served by lb-user attach only; lb-user proxy ignores it", api.listen);
        }
        let metrics = Metrics::new().context("creating the metrics")?;
        let metrics_listener = match (options.metrics_listener.take(), config.metrics) {
            (Some(l), _) => {
                l.set_nonblocking(true)?;
                Some(TcpListener::from_std(l)?)
            }
            (None, Some(m)) => Some(TcpListener::bind(m.listen).await.with_context(|| format!("metrics: cannot listen on {}", m.listen))?),
            (None, None) => None,
        };
        let metrics_addr = metrics_listener.as_ref().map(|l| l.local_addr()).transpose()?;

        let (kill_tx, kill) = watch::channel(false);
        let shared = Arc::new(Shared {
            limiter: IpLimiter::new(config.proxy.max_conns_per_ip, config.proxy.max_new_conns_per_minute),
            open: Arc::new(Open::default()),
            connect_timeout: options.connect_timeout,
            kill,
        });
        let status = Arc::new(Status::default());
        let mut given = reload::Given { tcp: std::mem::take(&mut options.listeners), udp: std::mem::take(&mut options.udp_sockets) };
        let (mut control, health) =
            reload::Control::new(shared.clone(), metrics.clone(), status.clone(), options.config_file.take(), std::mem::take(&mut options.workers), &config);
        let plan = control.plan(config, &mut given).await?;
        control.commit(plan);
        if let Some(a) = metrics_addr {
            log::info!("metrics endpoint listening address=http://{a}/metrics");
        }
        let registry = metrics.registry.clone();
        if let Some(l) = metrics_listener {
            control.adopt(tokio::spawn(crate::metrics_endpoint::serve(l, registry.clone())));
        }
        let limiter = shared.limiter.clone();
        control.adopt(tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_secs(30));
            loop {
                t.tick().await;
                limiter.sweep(Instant::now());
            }
        }));
        let (reloader, requests) = Reloader::new();
        let task = tokio::spawn(control.run(shutdown, requests, options.watch_interval, kill_tx));
        Ok(ProxyHandle { status, metrics_addr, registry, health, reloader, task })
    }
}
