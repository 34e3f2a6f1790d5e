//! `lb-user proxy`: the userspace L4 forwarder, the baseline the XDP path is
//! compared against (see `docs/proxy.md`).
//!
//! For every TCP VIP of the config it listens on the VIP's `address:port` and
//! forwards each accepted connection to a backend picked by the same selection
//! code as the XDP map builder ([`balancer::build_selector`]: Maglev over the
//! healthy backends keyed by `Backend::key()`, or round robin), rebuilt
//! whenever the [`crate::health`] checker changes a backend's state.
//!
//! At accept, in order: the allowlist, the per-client-IP concurrent limit and
//! the per-client-IP rate limit ([`limits`]); refused connections are reset
//! (RST) at once and counted by reason. Then a backend is picked and
//! connected (with [`ProxyOptions::connect_timeout`]); if that fails, the next
//! up backend in config order is tried once. Data is copied both ways with
//! `TCP_NODELAY` on both sides. UDP VIPs are relayed per client session
//! (`udp.rs`).
//!
//! The library entry is [`Proxy::start`], used by the CLI ([`run_cli`]), the
//! tests and the benchmarks.

pub mod balancer;
pub mod limits;
pub mod metrics;
mod udp;

use std::{
    collections::HashMap,
    future::Future,
    io,
    net::SocketAddr,
    path::Path,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use prometheus::{IntCounter, IntGauge, Registry};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpSocket, TcpStream, UdpSocket},
    sync::{watch, Notify},
    task::JoinHandle,
};

use crate::{
    config::{Config, Protocol},
    health::{HealthChecker, HealthSnapshot},
    select::Flow,
};
use balancer::Balancer;
use limits::{IpLimiter, IpPermit, Reject};
use metrics::{Metrics, VipMetrics};

/// Default time allowed for connecting to a backend.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Listen backlog of the VIP sockets.
const BACKLOG: u32 = 1024;

/// How [`Proxy::start`] gets its sockets and timeouts.
#[derive(Debug)]
pub struct ProxyOptions {
    /// Already-bound listeners to use instead of binding, by VIP name (tests
    /// and benchmarks bind `127.0.0.1:0` first and write the port into the
    /// config, so there is no race for the port). Others are bound here.
    pub listeners: HashMap<String, std::net::TcpListener>,
    /// Already-bound sockets for UDP VIPs, by VIP name, as `listeners`.
    pub udp_sockets: HashMap<String, std::net::UdpSocket>,
    /// An already-bound listener for the metrics endpoint, used instead of
    /// binding `config.metrics.listen`.
    pub metrics_listener: Option<std::net::TcpListener>,
    /// Time allowed for one backend connect.
    pub connect_timeout: Duration,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions { listeners: HashMap::new(), udp_sockets: HashMap::new(), metrics_listener: None, connect_timeout: DEFAULT_CONNECT_TIMEOUT }
    }
}

/// A running proxy. Dropping it does not stop the proxy; resolve the shutdown
/// future given to [`Proxy::start`] and then [`ProxyHandle::wait`].
pub struct ProxyHandle {
    listening: Vec<(String, SocketAddr)>,
    metrics_addr: Option<SocketAddr>,
    registry: Registry,
    health: watch::Receiver<HealthSnapshot>,
    task: JoinHandle<Result<()>>,
}

impl ProxyHandle {
    /// `(VIP name, bound address)` of every VIP (TCP and UDP), in config order.
    pub fn listening(&self) -> &[(String, SocketAddr)] {
        &self.listening
    }

    /// The bound address of VIP `name`.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listening.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
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

    /// The health checker's state.
    pub fn health(&self) -> watch::Receiver<HealthSnapshot> {
        self.health.clone()
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

/// Everything one VIP's accept loop and connections share.
struct VipState {
    name: String,
    index: usize,
    addr: SocketAddr,
    backends: Vec<SocketAddr>,
    balancer: Balancer,
    metrics: VipMetrics,
}

struct Shared {
    config: Config,
    limiter: Arc<IpLimiter>,
    open: Arc<Open>,
    connect_timeout: Duration,
    /// Set to `true` when open connections must be closed (drain over).
    kill: watch::Receiver<bool>,
}

/// The userspace forwarder.
pub struct Proxy;

impl Proxy {
    /// Binds every TCP VIP (and the metrics endpoint), starts the health
    /// checks and the accept loops, and returns once everything listens. When
    /// `shutdown` resolves: stop accepting, let open connections finish for
    /// `config.proxy.drain_timeout`, close the rest, stop. Must run inside a
    /// Tokio runtime.
    pub async fn start<F>(config: Config, mut options: ProxyOptions, shutdown: F) -> Result<ProxyHandle>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let metrics = Metrics::new().context("creating the metrics")?;
        let mut listeners = Vec::new();
        let mut udp_sockets = Vec::new();
        let mut vips = Vec::new();
        let mut udp_vips = Vec::new();
        for (index, vip) in config.vips.iter().enumerate() {
            let state = |addr| -> Result<Arc<VipState>> {
                Ok(Arc::new(VipState {
                    name: vip.name.clone(),
                    index,
                    addr,
                    backends: vip.backends.iter().map(|b| b.socket_addr()).collect(),
                    balancer: Balancer::new(vip, config.maglev)?,
                    metrics: metrics.vip(&config, index),
                }))
            };
            if vip.protocol == Protocol::Udp {
                let socket = match options.udp_sockets.remove(&vip.name) {
                    Some(s) => {
                        s.set_nonblocking(true)?;
                        UdpSocket::from_std(s).with_context(|| format!("using the socket given for VIP {}", vip.name))?
                    }
                    None => UdpSocket::bind(vip.socket_addr()).await.with_context(|| {
                        format!("VIP {}: cannot listen on udp {} (the address must be assigned to a local interface)", vip.name, vip.socket_addr())
                    })?,
                };
                udp_vips.push(state(socket.local_addr()?)?);
                udp_sockets.push(socket);
                continue;
            }
            let listener = match options.listeners.remove(&vip.name) {
                Some(l) => {
                    l.set_nonblocking(true)?;
                    TcpListener::from_std(l).with_context(|| format!("using the listener given for VIP {}", vip.name))?
                }
                None => bind(vip.socket_addr()).with_context(|| {
                    format!(
                        "VIP {}: cannot listen on {} (the address must be assigned to a local interface)",
                        vip.name,
                        vip.socket_addr()
                    )
                })?,
            };
            vips.push(state(listener.local_addr()?)?);
            listeners.push(listener);
        }
        if let Some(name) = options.listeners.keys().next() {
            bail!("a listener was given for VIP {name:?}, which is not a TCP VIP of the config");
        }
        if let Some(name) = options.udp_sockets.keys().next() {
            bail!("a UDP socket was given for VIP {name:?}, which is not a UDP VIP of the config");
        }
        let metrics_listener = match (options.metrics_listener.take(), config.metrics) {
            (Some(l), _) => {
                l.set_nonblocking(true)?;
                Some(TcpListener::from_std(l)?)
            }
            (None, Some(m)) => Some(
                TcpListener::bind(m.listen).await.with_context(|| format!("metrics: cannot listen on {}", m.listen))?,
            ),
            (None, None) => None,
        };
        let metrics_addr = metrics_listener.as_ref().map(|l| l.local_addr()).transpose()?;

        let (health_handle, health) = HealthChecker::spawn(&config);
        let (kill_tx, kill) = watch::channel(false);
        let shared = Arc::new(Shared {
            limiter: IpLimiter::new(config.proxy.max_conns_per_ip, config.proxy.max_new_conns_per_minute),
            open: Arc::new(Open::default()),
            connect_timeout: options.connect_timeout,
            kill,
            config,
        });
        let mut all: Vec<_> = vips.iter().chain(&udp_vips).collect();
        all.sort_by_key(|v| v.index);
        let listening: Vec<_> = all.iter().map(|v| (v.name.clone(), v.addr)).collect();
        for v in &all {
            let proto = if udp_vips.iter().any(|u| u.index == v.index) { "udp" } else { "tcp" };
            log::info!("proxy listening vip={} address={} protocol={proto}", v.name, v.addr);
        }
        if let Some(a) = metrics_addr {
            log::info!("metrics endpoint listening address=http://{a}/metrics");
        }

        let registry = metrics.registry.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        let accept_tasks: Vec<_> =
            vips.iter().zip(listeners).map(|(v, l)| tokio::spawn(accept_loop(shared.clone(), v.clone(), l, stop_rx.clone()))).collect();
        let udp_tasks: Vec<_> = udp_vips
            .iter()
            .zip(udp_sockets)
            .map(|(v, s)| tokio::spawn(udp::udp_loop(shared.clone(), v.clone(), s, stop_rx.clone(), shared.kill.clone())))
            .collect();
        let health_task = tokio::spawn(follow_health(vips.iter().chain(&udp_vips).cloned().collect(), health.clone()));
        let metrics_task = metrics_listener.map(|l| tokio::spawn(metrics::serve(l, registry.clone())));
        let sweep_task = {
            let limiter = shared.limiter.clone();
            tokio::spawn(async move {
                let mut t = tokio::time::interval(Duration::from_secs(30));
                loop {
                    t.tick().await;
                    limiter.sweep(Instant::now());
                }
            })
        };

        let task = tokio::spawn(async move {
            shutdown.await;
            let drain = shared.config.proxy.drain_timeout;
            log::info!("proxy shutdown: stopped accepting; draining open={} drain_timeout={drain:?}", shared.open.count.load(Ordering::SeqCst));
            let _ = stop_tx.send(true);
            for t in accept_tasks {
                let _ = t.await;
            }
            let left = shared.open.drain(tokio::time::Instant::now() + drain).await;
            if left > 0 {
                log::info!("proxy shutdown: drain timeout over; closing open={left}");
                let _ = kill_tx.send(true);
                shared.open.drain(tokio::time::Instant::now() + Duration::from_secs(5)).await;
            } else {
                log::info!("proxy shutdown: all connections finished");
                let _ = kill_tx.send(true);
            }
            for t in udp_tasks {
                let _ = t.await;
            }
            drop(health_handle);
            health_task.abort();
            sweep_task.abort();
            if let Some(t) = metrics_task {
                t.abort();
            }
            log::info!("proxy stopped");
            Ok(())
        });
        Ok(ProxyHandle { listening, metrics_addr, registry, health, task })
    }
}

/// A listening socket with SO_REUSEADDR and a large backlog.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Rebuilds the selections and the `xdplb_backend_up` gauges on every
/// health change.
async fn follow_health(vips: Vec<Arc<VipState>>, mut health: watch::Receiver<HealthSnapshot>) {
    while health.changed().await.is_ok() {
        let snap = health.borrow_and_update().clone();
        for v in &vips {
            for (i, m) in v.metrics.backends.iter().enumerate() {
                m.up.set(i64::from(snap.is_up(v.index, i)));
            }
            let up = snap.up_backends(v.index);
            match v.balancer.update(&up) {
                Ok(true) => {
                    let names: Vec<String> = up.iter().map(|&i| v.backends[i as usize].to_string()).collect();
                    log::info!("vip={} selection rebuilt up={}/{} backends=[{}]", v.name, up.len(), v.backends.len(), names.join(","));
                }
                Ok(false) => {}
                Err(e) => log::error!("vip={} cannot rebuild the selection: {e:#}", v.name),
            }
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, vip: Arc<VipState>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log::warn!("vip={} accept failed: {e}", vip.name);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let admitted = if !limits::allowed(shared.config.allowlist.as_ref(), peer.ip(), vip.addr.port()) {
            Err(Reject::Allowlist)
        } else {
            shared.limiter.admit(peer.ip())
        };
        match admitted {
            Ok(permit) => {
                let guard = OpenGuard::new(&shared.open, &vip.metrics.active);
                tokio::spawn(connection(shared.clone(), vip.clone(), stream, peer, permit, guard));
            }
            Err(reason) => reject(&vip, stream, peer, reason),
        }
    }
    log::info!("vip={} stopped accepting", vip.name);
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
    let Some(first) = vip.balancer.pick(&flow) else {
        return reject(vip, client, peer, Reject::NoBackend);
    };
    let (id, backend) = match connect(shared, vip, first).await {
        Ok(s) => (first, s),
        Err(_) => match vip.balancer.fallback(first) {
            Some(next) => match connect(shared, vip, next).await {
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
/// drain are over.
pub fn run_cli(config_path: &Path) -> Result<()> {
    let config = Config::from_file(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the Tokio runtime")?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal()?;
        let handle = Proxy::start(config, ProxyOptions::default(), shutdown).await?;
        handle.wait().await
    })
}
