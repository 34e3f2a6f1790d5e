//! Listeners, the per-connection pipeline (allowlist → TLS → HTTP), hot
//! reload (SIGHUP, file polling, [`Running::reload`]) and graceful
//! shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use lb_common::userspace::runtime::{Runtimes, Scheduler};
use lb_common::userspace::signals::{Signal, Signals};
use lb_common::userspace::watch::{ConfigFile, FileWatch};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::proxy::{self, ConnInfo};
use crate::state::State;
use crate::tls::{failure_reason, ClientIdentity};

/// Listen backlog of the `runtime`-built listeners: Tokio's own for
/// `TcpListener::bind`, so `shared` behaves as before.
const LISTEN_BACKLOG: u32 = 1024;

/// A running alb. Dropping it does not stop it; call [`Running::shutdown`].
pub struct Running {
    pub state: Arc<State>,
    listen: Vec<SocketAddr>,
    admin: Option<SocketAddr>,
    config_path: Option<PathBuf>,
    shutdown_tx: watch::Sender<bool>,
    conns: Arc<AtomicUsize>,
    reload_lock: Arc<Mutex<()>>,
}

impl Running {
    /// The bound listener addresses (real ports when the config said 0).
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.listen
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Re-reads the config file and applies it; on error the running
    /// configuration stays as it was. Listener and admin addresses are
    /// fixed at start.
    pub fn reload(&self) -> anyhow::Result<()> {
        let path = self.config_path.as_deref().ok_or_else(|| anyhow::anyhow!("started without a config file"))?;
        reload_from(&self.state, path, &self.reload_lock)
    }

    /// Stops accepting, asks every connection to finish its in-flight
    /// requests and close, and waits for that up to the drain timeout.
    /// Returns the number of connections still open at the deadline.
    pub async fn shutdown(self) -> usize {
        let drain = self.state.cfg().timeouts.drain.0;
        let _ = self.shutdown_tx.send(true);
        let deadline = Instant::now() + drain;
        while self.conns.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.conns.load(Ordering::Relaxed);
        if left > 0 {
            log::warn!("drain timeout: {left} connections still open");
        } else {
            log::info!("all connections drained");
        }
        // Writes out the access log's queue before the process ends.
        let log = self.state.access_log.write().unwrap().take();
        drop(log);
        left
    }

    /// A receiver that flips to true when shutdown starts.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }
}

fn reload_from(st: &State, path: &Path, lock: &Mutex<()>) -> anyhow::Result<()> {
    let _g = lock.lock().unwrap();
    let r = Config::load(path).map_err(anyhow::Error::from).and_then(|c| {
        let old = st.cfg();
        if c.listen_addrs().ok() != old.listen_addrs().ok() || c.admin.listen != old.admin.listen {
            log::warn!("reload: listener/admin address changes need a restart; keeping the old ones");
        }
        if c.runtime != old.runtime {
            log::warn!("reload: runtime changes need a restart; keeping the running threads");
        }
        st.apply(c)
    });
    match &r {
        Ok(()) => {
            st.metrics.reloads.with_label_values(&["ok"]).inc();
            log::info!("reloaded configuration from {}", path.display());
        }
        Err(e) => {
            st.metrics.reloads.with_label_values(&["error"]).inc();
            log::error!("reload refused, keeping the running configuration: {e:#}");
        }
    }
    r
}

/// Starts alb on the current runtime: binds listeners and the admin API,
/// spawns the health checker and (with a config path) the file watcher.
/// The config's `runtime` key is not applied (see [`start_on`]).
pub async fn start(cfg: Config, config_file: Option<ConfigFile>) -> anyhow::Result<Running> {
    start_on(cfg, config_file, None).await
}

/// [`start`], with the listeners' accept loops on `rts` (the binary's
/// runtimes, built from the config's `runtime` key): one listener on the
/// shared runtime, or one `SO_REUSEPORT` listener per `per_core` runtime,
/// each serving the connections it accepts on its own thread. Everything
/// else (health, admin, reload, access log) runs once, on the current
/// runtime.
pub async fn start_on(cfg: Config, config_file: Option<ConfigFile>, rts: Option<&Runtimes>) -> anyhow::Result<Running> {
    let addrs = cfg.listen_addrs()?;
    let admin_cfg = cfg.admin.clone();
    // Stamped before `State::new` reads them, as `config_file` was before
    // the config was read (lb_common::userspace::watch).
    let certs = FileWatch::new(if config_file.is_some() { cfg.watched_files() } else { Vec::new() });
    let st = State::new(cfg)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let conns = Arc::new(AtomicUsize::new(0));
    let mut listen = Vec::new();
    for a in addrs {
        let cannot = |e: std::io::Error| anyhow::anyhow!("cannot listen on {a}: {e}");
        let ls: Vec<(TcpListener, Handle)> = match rts {
            None => vec![(TcpListener::bind(a).await.map_err(cannot)?, Handle::current())],
            Some(r) => r.bind(a, LISTEN_BACKLOG).map_err(cannot)?.into_iter().zip(r.workers().iter().cloned()).collect(),
        };
        let bound = ls[0].0.local_addr()?;
        match rts {
            Some(r) if r.scheduler() == Scheduler::PerCore => log::info!("listening on {bound} ({} per_core runtimes, SO_REUSEPORT)", ls.len()),
            _ => log::info!("listening on {bound}"),
        }
        listen.push(bound);
        for (l, h) in ls {
            h.spawn(accept_loop(l, st.clone(), shutdown_rx.clone(), conns.clone()));
        }
    }
    let admin = if admin_cfg.enabled {
        let a: SocketAddr = admin_cfg.listen.parse()?;
        let l = TcpListener::bind(a).await.map_err(|e| anyhow::anyhow!("cannot listen on admin {a}: {e}"))?;
        let bound = l.local_addr()?;
        log::info!("admin API on http://{bound}");
        tokio::spawn(crate::admin::serve(l, st.clone(), shutdown_rx.clone()));
        Some(bound)
    } else {
        None
    };
    tokio::spawn(st.clone().follow_health(shutdown_rx.clone()));
    let reload_lock = Arc::new(Mutex::new(()));
    let config_path = config_file.as_ref().map(|f| f.path().to_owned());
    if let Some(f) = config_file {
        tokio::spawn(watch_files(st.clone(), f, certs, reload_lock.clone(), shutdown_rx.clone()));
    }
    Ok(Running { state: st, listen, admin, config_path, shutdown_tx, conns, reload_lock })
}

/// Polls the config file and every certificate/key/CA/CRL it names; a
/// change triggers a reload. Polling (not inotify) because certificate
/// tooling usually renames files into place, which inotify watches on the
/// old inode miss; the shared `FileWatch` compares inode and times, so it
/// sees such renames even when the new file keeps the old mtime.
async fn watch_files(st: Arc<State>, mut config: ConfigFile, mut certs: FileWatch, lock: Arc<Mutex<()>>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let every = st.cfg().reload.poll_interval.0;
        let sleep = if every.is_zero() { Duration::from_secs(1) } else { every };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.changed() => return,
        }
        if every.is_zero() {
            continue;
        }
        // `|`, not `||`: both take their new stamps, before the reload
        // reads the files.
        if config.changed() | certs.changed() {
            let _ = reload_from(&st, config.path(), &lock);
            // A reload can name other files. Those watched before keep the
            // stamps taken before the read; a newly named one is stamped
            // after it, so only a write to a new file in the instant between
            // its read and here goes unseen (until its next change).
            certs.retarget(st.cfg().watched_files());
        }
    }
}

async fn accept_loop(l: TcpListener, st: Arc<State>, mut shutdown: watch::Receiver<bool>, conns: Arc<AtomicUsize>) {
    loop {
        let (tcp, peer) = tokio::select! {
            r = l.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    log::error!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let local = tcp.local_addr().unwrap_or_else(|_| l.local_addr().expect("bound"));
        if let Err(d) = st.allowlist().check(peer.ip(), local.port()) {
            st.metrics.denied.with_label_values(&[d.as_str()]).inc();
            log::info!("connection from {peer} to {local} denied by allowlist ({})", d.as_str());
            drop(tcp);
            continue;
        }
        conns.fetch_add(1, Ordering::Relaxed);
        let (st, shutdown, conns) = (st.clone(), shutdown.clone(), conns.clone());
        tokio::spawn(async move {
            st.metrics.active_connections.inc();
            serve_conn(&st, tcp, peer, local, shutdown).await;
            st.metrics.active_connections.dec();
            conns.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn serve_conn(st: &Arc<State>, tcp: TcpStream, peer: SocketAddr, local: SocketAddr, mut shutdown: watch::Receiver<bool>) {
    let _ = tcp.set_nodelay(true);
    let clock = Arc::new(AtomicU64::new(0));
    let io = Activity::new(tcp, clock.clone());
    // Memory per connection (docs/reliability.md): each stage — handshake,
    // waiting for the first bytes, HTTP — runs in an allocation of its own
    // that lives only as long as the stage, and this task holds just the
    // pointer. An async fn keeps a slot for every value that may be live
    // across an await, temporaries of the statement included, so one future
    // for the whole connection was the largest stage plus leftovers: 10 KB
    // per idle connection. Each boxed future is therefore made in a
    // statement of its own, before the one that awaits it.
    let Some(tls) = st.tls() else {
        let wait = Box::pin(first_bytes(io.inner.readable(), st, &mut shutdown));
        if !wait.await {
            return;
        }
        return serve_http(st, TokioIo::new(io), ConnInfo::new(peer, local, false, None), clock, shutdown).await;
    };
    let hs = Box::pin(handshake(st, tls, io, peer));
    let Some((stream, identity)) = hs.await else { return };
    let wait = Box::pin(first_plaintext(stream, st, &mut shutdown));
    let Some(stream) = wait.await else { return };
    serve_http(st, TokioIo::new(stream), ConnInfo::new(peer, local, true, identity), clock, shutdown).await
}

type Tls = tokio_rustls::server::TlsStream<Activity<TcpStream>>;

/// Waits until `readable` (the client sent its first bytes) and says
/// whether to go on: false after `timeouts.idle` without a byte, on
/// shutdown, or when the client closed. Until then a connection holds no
/// HTTP state at all: hyper's connection and its read buffer are made only
/// once there is something to read, which keeps idle connections small.
async fn first_bytes<F, T>(readable: F, st: &State, shutdown: &mut watch::Receiver<bool>) -> bool
where
    F: Future<Output = std::io::Result<T>>,
{
    tokio::select! {
        r = readable => r.is_ok(),
        () = tokio::time::sleep(st.cfg().timeouts.idle.0) => false,
        _ = shutdown.changed() => false,
    }
}

/// [`first_bytes`] on a TLS stream's plaintext; returns the stream with
/// them buffered in rustls (nothing is consumed). Not an `async fn`: that
/// would keep the stream twice (the argument and its binding in the body),
/// where the `async move` block below holds it once.
#[allow(clippy::manual_async_fn)]
fn first_plaintext<'a>(mut stream: Tls, st: &'a State, shutdown: &'a mut watch::Receiver<bool>) -> impl Future<Output = Option<Tls>> + Send + 'a {
    async move {
        use tokio::io::AsyncBufRead as _;
        // An empty buffer is the client's close.
        let data = std::future::poll_fn(|cx| {
            Pin::new(&mut stream).poll_fill_buf(cx).map(|r| r.and_then(|b| if b.is_empty() { Err(std::io::ErrorKind::UnexpectedEof.into()) } else { Ok(()) }))
        });
        if !first_bytes(data, st, shutdown).await {
            return None;
        }
        Some(stream)
    }
}

/// The TLS handshake within the header-read budget; failures are logged
/// and counted. Returns the stream and the client certificate's subject.
async fn handshake(st: &State, tls: Arc<rustls::ServerConfig>, io: Activity<TcpStream>, peer: SocketAddr) -> Option<(Tls, Option<String>)> {
    // The handshake shares the header-read budget: a client trickling its
    // ClientHello is a slowloris too.
    // Fallible, and the timeout over a borrowed future: the socket is
    // closed only after the failure is counted, so a client that sees the
    // close also sees it in the metrics.
    let mut accept = std::pin::pin!(TlsAcceptor::from(tls).accept(io).into_fallible());
    let hs = tokio::time::timeout(st.cfg().timeouts.header_read.0, accept.as_mut()).await;
    let stream = match hs {
        Ok(Ok(s)) => s,
        Ok(Err((e, io))) => {
            let reason = failure_reason(&e);
            st.metrics.tls_failures.with_label_values(&[reason]).inc();
            log::warn!("TLS handshake from {peer} rejected: reason={reason} ({e})");
            drop(io);
            return None;
        }
        Err(_) => {
            st.metrics.tls_failures.with_label_values(&["timeout"]).inc();
            log::warn!("TLS handshake from {peer} rejected: reason=timeout");
            return None;
        }
    };
    let identity = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| ClientIdentity::from_der(c.as_ref())).map(|id| id.subject);
    if let Some(id) = &identity {
        log::debug!("client {peer} authenticated as {id}");
    }
    Some((stream, identity))
}

/// HTTP over `io` until the connection ends, the idle timeout or a
/// shutdown. Built synchronously and returned boxed: hyper's connection
/// (which holds `io`) lives in one allocation, the loop below in another,
/// and neither keeps a moved-from copy of the other (see [`serve_conn`]).
fn serve_http<I>(st: &Arc<State>, io: I, ci: ConnInfo, clock: Arc<AtomicU64>, mut shutdown: watch::Receiver<bool>) -> Pin<Box<dyn Future<Output = ()> + Send>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let cfg = st.cfg();
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1().timer(TokioTimer::new()).header_read_timeout(cfg.timeouts.header_read.0).max_buf_size(cfg.limits.max_header_bytes).keep_alive(true);
    b.http2().timer(TokioTimer::new()).max_header_list_size(u32::try_from(cfg.limits.max_header_bytes).unwrap_or(u32::MAX)).keep_alive_interval(None);
    let peer = ci.peer;
    let ci = Arc::new(ci);
    let st2 = st.clone();
    let svc = service_fn(move |req| {
        let (st, ci) = (st2.clone(), ci.clone());
        async move { Ok::<_, std::convert::Infallible>(proxy::handle(st, ci, req).await) }
    });
    let mut conn = Box::pin(b.serve_connection_with_upgrades(io, svc).into_owned());
    let idle = cfg.timeouts.idle.0;
    Box::pin(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval((idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5)));
        let mut closing = false;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        log::debug!("connection from {peer}: {e}");
                    }
                    return;
                }
                _ = tick.tick(), if !closing => {
                    let last = Duration::from_millis(clock.load(Ordering::Relaxed));
                    if start.elapsed().saturating_sub(last) >= idle {
                        // Graceful: an HTTP/1 response in progress still
                        // completes; HTTP/2 gets a GOAWAY.
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
                _ = shutdown.changed(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    })
}

/// Records the time of the last byte read or written (milliseconds since
/// the connection's start), for the idle timeout.
struct Activity<T> {
    inner: T,
    start: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Activity<T> {
    fn new(inner: T, last: Arc<AtomicU64>) -> Activity<T> {
        Activity { inner, start: Instant::now(), last }
    }
    fn touch(&self) {
        self.last.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Activity<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Activity<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, b);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    // Forwarded rather than left to the default (which writes only the
    // first buffer): rustls hands over every queued TLS record as one
    // vectored write, e.g. the whole server handshake flight, and this
    // keeps that one syscall instead of one per record.
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// For the binary: SIGHUP reloads, SIGINT/SIGTERM shut down gracefully.
/// `signals` is made before [`start_on`], so no signal in between takes its
/// default action (SIGHUP's is to kill).
pub async fn run_until_signal(r: Running, mut signals: Signals) -> anyhow::Result<()> {
    loop {
        match signals.recv().await {
            Signal::Hangup => {
                log::info!("SIGHUP: reloading");
                let _ = r.reload();
            }
            stop => {
                log::info!("{}: shutting down: no new connections, draining in-flight requests", stop.name());
                break;
            }
        }
    }
    r.shutdown().await;
    Ok(())
}
