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
pub mod limits;
pub mod metrics;
mod reload;
mod udp;

use std::{
    collections::HashMap,
    future::Future,
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, RwLock,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use prometheus::{IntCounter, IntGauge, Registry};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::{watch, Notify},
    task::JoinHandle,
};

use crate::{
    config::{Config, Protocol},
    health::HealthSnapshot,
};
use balancer::Balancer;
use lb_common::userspace::select::Flow;
use limits::{IpLimiter, IpPermit, Reject};
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
    /// The file the config came from: [`ProxyHandle::reload_file`] (SIGHUP in
    /// the CLI) re-reads it, and with `watch_interval` it is watched.
    pub config_file: Option<PathBuf>,
    /// Check `config_file` this often (modification time, size, inode) and
    /// reload when it changed. `None`: no watching.
    pub watch_interval: Option<Duration>,
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
        metrics::render(&self.registry)
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
        let (mut control, health) = reload::Control::new(shared.clone(), metrics.clone(), status.clone(), options.config_file.take(), &config);
        let plan = control.plan(config, &mut given).await?;
        control.commit(plan);
        if let Some(a) = metrics_addr {
            log::info!("metrics endpoint listening address=http://{a}/metrics");
        }
        let registry = metrics.registry.clone();
        if let Some(l) = metrics_listener {
            control.adopt(tokio::spawn(metrics::serve(l, registry.clone())));
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

/// A listening socket with SO_REUSEADDR and a large backlog.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Accepts on one VIP socket until `stop`; each connection is handled with
/// the VIP's state current at its accept.
async fn accept_loop(shared: Arc<Shared>, cell: VipCell, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log::warn!("vip={} accept failed: {e}", current(&cell).name);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let vip = current(&cell);
        let admitted =
            if !limits::allowed(vip.config.allowlist.as_ref(), peer.ip(), vip.addr.port()) { Err(Reject::Allowlist) } else { shared.limiter.admit(peer.ip()) };
        match admitted {
            Ok(permit) => {
                let guard = OpenGuard::new(&shared.open, &vip.metrics.active);
                tokio::spawn(connection(shared.clone(), vip, stream, peer, permit, guard));
            }
            Err(reason) => reject(&vip, stream, peer, reason),
        }
    }
    log::info!("vip={} stopped accepting address={}", current(&cell).name, current(&cell).addr);
}

/// Closes `stream` with a reset and counts it.
fn reject(vip: &VipState, stream: TcpStream, peer: SocketAddr, reason: Reject) {
    vip.metrics.rejected[reason.index()].inc();
    log::debug!("rejected vip={} client={peer} reason={}", vip.name, reason.label());
    let _ = stream.set_zero_linger();
}

async fn connection(shared: Arc<Shared>, vip: Arc<VipState>, client: TcpStream, peer: SocketAddr, permit: IpPermit, guard: OpenGuard) {
    let _permit = permit;
    let _guard = guard;
    let mut kill = shared.kill.clone();
    tokio::select! {
        _ = forward(&shared, &vip, client, peer) => {}
        _ = kill.wait_for(|k| *k) => log::debug!("vip={} client={peer}: closed at the end of the drain", vip.name),
    }
}

async fn connect(shared: &Shared, vip: &VipState, id: u32) -> io::Result<TcpStream> {
    let addr = vip.backends[id as usize];
    let r = match tokio::time::timeout(shared.connect_timeout, TcpStream::connect(addr)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, format!("connect timed out after {:?}", shared.connect_timeout))),
    };
    if let Err(e) = &r {
        vip.metrics.backends[id as usize].connect_errors.inc();
        log::warn!("backend connect failed vip={} backend={addr} error={e}", vip.name);
    }
    r
}

async fn forward(shared: &Shared, vip: &VipState, client: TcpStream, peer: SocketAddr) {
    let flow = Flow { src: peer, dst: vip.addr, protocol: Protocol::Tcp.number() };
    // The first choice, then one fallback if connecting to it fails.
    let picks = vip.balancer.picks(&flow, 2);
    let Some(&first) = picks.first() else {
        return reject(vip, client, peer, Reject::NoBackend);
    };
    let (id, backend) = match connect(shared, vip, first).await {
        Ok(s) => (first, s),
        Err(_) => match picks.get(1) {
            Some(&next) => match connect(shared, vip, next).await {
                Ok(s) => (next, s),
                Err(_) => return reject(vip, client, peer, Reject::ConnectFailed),
            },
            None => return reject(vip, client, peer, Reject::ConnectFailed),
        },
    };
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);
    let m = &vip.metrics.backends[id as usize];
    m.connections.inc();
    log::debug!("forwarding vip={} client={peer} backend={}", vip.name, vip.backends[id as usize]);
    let mut client = Counted { inner: client, read: m.bytes_to_backend.clone() };
    let mut backend = Counted { inner: backend, read: m.bytes_to_client.clone() };
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
        log::debug!("vip={} client={peer}: connection ended: {e}", vip.name);
    }
}

/// A stream that counts the bytes read from it.
struct Counted {
    inner: TcpStream,
    read: IntCounter,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.read.inc_by(n as u64);
        }
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Resolves on the first SIGINT or SIGTERM. The handlers are installed when
/// this is called, not when the future is first polled.
pub fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        log::info!("proxy shutdown: received {name}");
    })
}

/// `lb-user proxy --config FILE`: runs the proxy until SIGINT/SIGTERM and the
/// drain are over. SIGHUP, or a change of the file (checked every
/// [`DEFAULT_WATCH_INTERVAL`]), reloads it.
pub fn run_cli(config_path: &Path) -> Result<()> {
    let config = Config::from_file(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the Tokio runtime")?;
    runtime.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let shutdown = shutdown_signal()?;
        // Installed before the proxy starts: SIGHUP's default action kills.
        let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let options = ProxyOptions { config_file: Some(config_path.to_owned()), watch_interval: Some(DEFAULT_WATCH_INTERVAL), ..ProxyOptions::default() };
        let handle = Proxy::start(config, options, shutdown).await?;
        let reloader = handle.reloader();
        let hup_task = tokio::spawn(async move {
            while hup.recv().await.is_some() {
                // The outcome is logged by the proxy.
                let _ = reloader.reload_file("SIGHUP").await;
            }
        });
        let r = handle.wait().await;
        hup_task.abort();
        r
    })
}
