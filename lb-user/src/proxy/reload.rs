//! The proxy's control task: applies the config at start and on every
//! reload, follows the health checks, and runs the shutdown.
//!
//! A reload ([`Reloader`]: in-process, SIGHUP, or a change of the config
//! file) is applied all or nothing:
//!
//! 1. **Plan**: the new config must keep `metrics.listen` (the only setting
//!    that cannot change at runtime); every VIP socket that is new (by
//!    protocol and `address:port`) is bound, and every VIP's selection is
//!    built. Any error refuses the reload; what was bound is closed again.
//! 2. **Commit**: a VIP socket that stays keeps its listener and gets the new
//!    VIP state (backends, weights, algorithm, allowlist) for the connections
//!    it accepts from then on; new sockets get accept loops; sockets of
//!    removed VIPs stop accepting. Established connections keep the state
//!    they were accepted with, so they run on untouched, whatever changed.
//!    The per-IP limits change in place (the counts carry over). The health
//!    checks restart for the new backend set; a backend that stays (same VIP
//!    name, same `address:port`, checked before and after) keeps its up/down
//!    state, others start up.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::{anyhow, bail, Context as _, Result};
use tokio::{
    net::{TcpListener, UdpSocket},
    runtime::Handle,
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
    time::MissedTickBehavior,
};

use super::changes::{describe, one_line};
use super::{
    balancer::Balancer,
    metrics::Metrics,
    tcp::{accept_loop, bind},
    udp, Shared, Status, VipCell, VipState, BACKLOG,
};
use crate::{
    config::{Config, Protocol, Vip},
    health::{HealthChecks, HealthSnapshot},
};
use lb_common::userspace::{runtime::bind_reuseport, watch::ConfigFile};

/// Triggers reloads of a running proxy; cheap to clone. Every outcome is also
/// logged by the proxy (`reload applied (…)` / `reload refused (…)`) and
/// counted in `xdplb_proxy_reloads_total{result}`.
#[derive(Clone, Debug)]
pub struct Reloader {
    tx: mpsc::Sender<Request>,
}

pub(super) enum Source {
    Config(Box<Config>),
    File,
}

pub(super) struct Request {
    source: Source,
    trigger: String,
    reply: oneshot::Sender<Result<String>>,
}

impl Reloader {
    pub(super) fn new() -> (Reloader, mpsc::Receiver<Request>) {
        let (tx, rx) = mpsc::channel(8);
        (Reloader { tx }, rx)
    }

    /// Replaces the running config with `config`. `Ok` holds a one-line
    /// summary of the changes (`no change` when there is none); `Err` says why
    /// it was refused, and the running config stays in force.
    pub async fn reload(&self, config: Config) -> Result<String> {
        self.send(Source::Config(Box::new(config)), "api").await
    }

    /// Re-reads the proxy's config file ([`super::ProxyOptions::config_file`])
    /// and applies it as [`Reloader::reload`]. `trigger` names the cause in
    /// the log line (`SIGHUP`).
    pub async fn reload_file(&self, trigger: &str) -> Result<String> {
        self.send(Source::File, trigger).await
    }

    async fn send(&self, source: Source, trigger: &str) -> Result<String> {
        let (reply, rx) = oneshot::channel();
        let req = Request { source, trigger: trigger.to_owned(), reply };
        self.tx.send(req).await.map_err(|_| anyhow!("the proxy has stopped"))?;
        rx.await.map_err(|_| anyhow!("the proxy has stopped"))?
    }
}

/// Sockets handed in at start ([`super::ProxyOptions`]), by VIP name.
#[derive(Default)]
pub(super) struct Given {
    pub tcp: HashMap<String, std::net::TcpListener>,
    pub udp: HashMap<String, std::net::UdpSocket>,
}

enum NewSocket {
    /// One listener per worker runtime (one without `per_core`), each
    /// registered with its runtime, in the order of `Control::workers`.
    Tcp(Vec<TcpListener>),
    Udp(UdpSocket),
}

impl NewSocket {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            NewSocket::Tcp(l) => l[0].local_addr(),
            NewSocket::Udp(s) => s.local_addr(),
        }
    }
}

/// A VIP socket is identified by what it binds.
type Key = (Protocol, SocketAddr);

fn key(vip: &Vip) -> Key {
    (vip.protocol, vip.socket_addr())
}

/// One VIP's listening socket(s) and their loops (one per worker runtime
/// for a `per_core` TCP VIP).
struct Slot {
    cell: VipCell,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    udp: bool,
}

/// Everything checked and bound for a new config, not yet in force.
pub(super) struct Plan {
    config: Arc<Config>,
    /// Per VIP of `config`: bound address, selection.
    vips: Vec<(SocketAddr, Balancer)>,
    /// Sockets to open loops on, by VIP index.
    sockets: HashMap<usize, NewSocket>,
    /// Starting health, `[vip][backend]`.
    initial: HealthSnapshot,
}

pub(super) struct Control {
    shared: Arc<Shared>,
    metrics: Metrics,
    status: Arc<Status>,
    config: Arc<Config>,
    /// Whether a config has been committed (the first plan is the start).
    started: bool,
    slots: HashMap<Key, Slot>,
    /// Loops of removed VIPs (UDP ones run until their sessions end).
    retired: Vec<JoinHandle<()>>,
    /// The current generation's VIPs, in config order.
    vips: Vec<Arc<VipState>>,
    health: HealthChecks,
    /// What [`super::ProxyHandle::health`] sees, whatever the generation.
    health_pub: watch::Sender<HealthSnapshot>,
    config_file: Option<ConfigFile>,
    /// Helper tasks aborted at the end (metrics endpoint, limiter sweep).
    tasks: Vec<JoinHandle<()>>,
    /// `per_core`: the runtimes TCP VIPs accept on ([`super::ProxyOptions::workers`]);
    /// empty: the current one.
    workers: Vec<Handle>,
}

impl Control {
    pub(super) fn new(
        shared: Arc<Shared>,
        metrics: Metrics,
        status: Arc<Status>,
        config_file: Option<ConfigFile>,
        workers: Vec<Handle>,
        config: &Config,
    ) -> (Control, watch::Receiver<HealthSnapshot>) {
        let (health_pub, public) = watch::channel(HealthSnapshot::all_up(config));
        let control = Control {
            shared,
            metrics,
            status,
            config: Arc::new(config.clone()),
            started: false,
            slots: HashMap::new(),
            retired: Vec::new(),
            vips: Vec::new(),
            health: HealthChecks::new(),
            health_pub,
            config_file,
            tasks: Vec::new(),
            workers,
        };
        (control, public)
    }

    /// Keeps `task` until the proxy stops, then aborts it.
    pub(super) fn adopt(&mut self, task: JoinHandle<()>) {
        self.tasks.push(task);
    }

    /// Checks `config` against the running one, binds its new sockets and
    /// builds its selections. Nothing changes in the running proxy.
    pub(super) async fn plan(&self, config: Config, given: &mut Given) -> Result<Plan> {
        if self.started && config.metrics != self.config.metrics {
            let show = |m: &Option<crate::config::MetricsConfig>| m.map_or("none".to_owned(), |m| m.listen.to_string());
            bail!(
                "metrics.listen cannot change at runtime ({} -> {}); restart the proxy to move the metrics endpoint",
                show(&self.config.metrics),
                show(&config.metrics)
            );
        }
        if self.started && config.proxy.runtime != self.config.proxy.runtime {
            // Threads cannot be re-planned under open connections; said, not
            // silently dropped.
            log::warn!(
                "proxy.runtime is read at start only: keeping {} workers, scheduler {} (the file asks {}, {}); restart the proxy to change it",
                self.config.proxy.runtime.workers,
                self.config.proxy.runtime.scheduler.as_str(),
                config.proxy.runtime.workers,
                config.proxy.runtime.scheduler.as_str()
            );
        }
        // Backends that stay keep the state the checks give them now; new
        // ones start up (the checks are synced to this config on commit).
        let initial = self.health.snapshot(&config);
        let mut plan = Plan { config: Arc::new(config), vips: Vec::new(), sockets: HashMap::new(), initial };
        let config = plan.config.clone();
        for (index, vip) in config.vips.iter().enumerate() {
            let ids = plan.initial.up_backends(index);
            let addr = match self.slots.get(&key(vip)) {
                Some(slot) => super::current(&slot.cell).addr,
                None => {
                    let socket = open_socket(vip, given, &self.workers).await?;
                    let addr = socket.local_addr()?;
                    plan.sockets.insert(index, socket);
                    addr
                }
            };
            let balancer = Balancer::new(vip, config.maglev)?;
            balancer.update(&ids)?;
            plan.vips.push((addr, balancer));
        }
        Ok(plan)
    }

    /// Puts `plan` in force (cannot fail).
    pub(super) fn commit(&mut self, plan: Plan) {
        let Plan { config, vips, mut sockets, initial } = plan;
        let old_config = std::mem::replace(&mut self.config, config.clone());
        let mut keep = HashSet::new();
        let mut states = Vec::new();
        for (index, (addr, balancer)) in vips.into_iter().enumerate() {
            let vip = &config.vips[index];
            let state = Arc::new(VipState {
                name: vip.name.clone(),
                index,
                addr,
                backends: vip.backends.iter().map(|b| b.socket_addr()).collect(),
                balancer,
                metrics: self.metrics.vip(&config, index),
                config: config.clone(),
            });
            for (j, m) in state.metrics.backends.iter().enumerate() {
                m.up.set(i64::from(initial.is_up(index, j)));
            }
            keep.insert(key(vip));
            match sockets.remove(&index) {
                Some(socket) => {
                    log::info!("proxy listening vip={} address={addr} protocol={}", vip.name, vip.protocol);
                    let slot = self.spawn_slot(socket, state.clone());
                    self.slots.insert(key(vip), slot);
                }
                None => {
                    if let Some(slot) = self.slots.get(&key(vip)) {
                        *slot.cell.write().unwrap_or_else(|e| e.into_inner()) = state.clone();
                    }
                }
            }
            states.push(state);
        }
        let gone: Vec<Key> = self.slots.keys().filter(|k| !keep.contains(*k)).copied().collect();
        for k in gone {
            if let Some(slot) = self.slots.remove(&k) {
                let _ = slot.stop.send(true);
                self.retired.extend(slot.tasks);
            }
        }
        self.retired.retain(|t| !t.is_finished());
        self.vips = states;
        self.shared.limiter.set_limits(config.proxy.max_conns_per_ip, config.proxy.max_new_conns_per_minute);
        if self.started {
            self.metrics.forget(&old_config, &config);
        }
        // Checks of backends that stay keep running (and their state);
        // others stop or start.
        self.health.sync(&config);
        self.health_pub.send_replace(initial);
        *self.status.listening.write().unwrap_or_else(|e| e.into_inner()) = self.vips.iter().map(|v| (v.name.clone(), v.addr)).collect();
        *self.status.config.write().unwrap_or_else(|e| e.into_inner()) = Some(config);
        self.started = true;
    }

    fn spawn_slot(&self, socket: NewSocket, state: Arc<VipState>) -> Slot {
        let cell: VipCell = Arc::new(RwLock::new(state));
        let (stop, stop_rx) = watch::channel(false);
        let shared = self.shared.clone();
        let (tasks, udp) = match socket {
            // Each accept loop runs on the runtime its listener is registered
            // with (`per_core`), else on the current one, and so do the
            // connections it accepts.
            NewSocket::Tcp(listeners) => {
                let tasks = listeners
                    .into_iter()
                    .enumerate()
                    .map(|(i, l)| {
                        let accept = accept_loop(shared.clone(), cell.clone(), l, stop_rx.clone());
                        match self.workers.get(i) {
                            Some(h) => h.spawn(accept),
                            None => tokio::spawn(accept),
                        }
                    })
                    .collect();
                (tasks, false)
            }
            NewSocket::Udp(s) => {
                let kill = shared.kill.clone();
                (vec![tokio::spawn(udp::udp_loop(shared, cell.clone(), s, stop_rx, kill))], true)
            }
        };
        Slot { cell, stop, tasks, udp }
    }

    /// Rebuilds the selections and the `xdplb_proxy_backend_up` gauges after a
    /// health change, then publishes the snapshot.
    fn follow_health(&mut self) {
        let snap = self.health.snapshot(&self.config);
        for v in &self.vips {
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
        self.health_pub.send_replace(snap);
    }

    /// Applies `loaded` (or refuses it), logs and counts the outcome.
    async fn reload(&mut self, loaded: Result<Config>, source: &str, trigger: &str) -> Result<String> {
        let result = match loaded {
            Ok(config) => self.apply(config).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(summary) => {
                self.metrics.reloads_applied.inc();
                log::info!("reload applied ({trigger}): {source}: {summary}");
                Ok(summary)
            }
            Err(e) => {
                self.metrics.reloads_refused.inc();
                let why = one_line(&format!("{e:#}"));
                log::error!("reload refused ({trigger}), previous config stays in force: {why}");
                Err(anyhow!(why))
            }
        }
    }

    async fn apply(&mut self, config: Config) -> Result<String> {
        if config == *self.config {
            return Ok("no change".to_owned());
        }
        let summary = describe(&self.config, &config);
        let plan = self.plan(config, &mut Given::default()).await?;
        self.commit(plan);
        Ok(summary)
    }

    async fn reload_file(&mut self, trigger: &str) -> Result<String> {
        let Some(file) = self.config_file.as_mut() else {
            return self.reload(Err(anyhow!("the proxy was started without a config file")), "-", trigger).await;
        };
        file.rearm();
        let path = file.path().to_owned();
        let loaded = Config::from_file(&path).map_err(anyhow::Error::from);
        self.reload(loaded, &path.display().to_string(), trigger).await
    }

    async fn handle(&mut self, req: Request) {
        let result = match req.source {
            Source::Config(c) => self.reload(Ok(*c), "in-process config", &req.trigger).await,
            Source::File => self.reload_file(&req.trigger).await,
        };
        let _ = req.reply.send(result);
    }

    async fn poll_file(&mut self) {
        // A vanished file is reported once (the reload is refused); it is
        // read again when it comes back.
        if self.config_file.as_mut().is_some_and(ConfigFile::changed) {
            let _ = self.reload_file("file changed").await;
        }
    }

    /// Runs until `shutdown`, then drains and stops.
    pub(super) async fn run<F>(
        mut self,
        shutdown: F,
        mut requests: mpsc::Receiver<Request>,
        watch_interval: Option<Duration>,
        kill_tx: watch::Sender<bool>,
    ) -> Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tokio::pin!(shutdown);
        let watching = watch_interval.is_some() && self.config_file.is_some();
        let mut poll = tokio::time::interval(watch_interval.unwrap_or(Duration::from_secs(3600)));
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(req) = requests.recv() => self.handle(req).await,
                () = self.health.changed() => self.follow_health(),
                _ = poll.tick(), if watching => self.poll_file().await,
            }
        }
        drop(requests); // reloads from now on fail: the proxy has stopped
        self.shutdown(kill_tx).await;
        Ok(())
    }

    async fn shutdown(mut self, kill_tx: watch::Sender<bool>) {
        let open = self.shared.open.clone();
        let drain = self.config.proxy.drain_timeout;
        log::info!("proxy shutdown: stopped accepting; draining open={} drain_timeout={drain:?}", open.count.load(std::sync::atomic::Ordering::SeqCst));
        let (mut tcp, mut udp) = (Vec::new(), Vec::new());
        for (_, slot) in self.slots.drain() {
            let _ = slot.stop.send(true);
            if slot.udp {
                udp.extend(slot.tasks);
            } else {
                tcp.extend(slot.tasks);
            }
        }
        for t in tcp {
            let _ = t.await;
        }
        let left = open.drain(tokio::time::Instant::now() + drain).await;
        if left > 0 {
            log::info!("proxy shutdown: drain timeout over; closing open={left}");
            let _ = kill_tx.send(true);
            open.drain(tokio::time::Instant::now() + Duration::from_secs(5)).await;
        } else {
            log::info!("proxy shutdown: all connections finished");
            let _ = kill_tx.send(true);
        }
        for t in udp.into_iter().chain(self.retired.drain(..)) {
            let _ = t.await;
        }
        self.health = HealthChecks::new(); // stops the checks
        for t in &self.tasks {
            t.abort();
        }
        log::info!("proxy stopped");
    }
}

/// Binds `vip`'s socket, or takes the one given for it; a TCP VIP gets one
/// listener per runtime of `workers` (one when empty).
async fn open_socket(vip: &Vip, given: &mut Given, workers: &[Handle]) -> Result<NewSocket> {
    let cannot = || format!("VIP {}: cannot listen on {} {} (the address must be assigned to a local interface)", vip.name, vip.protocol, vip.socket_addr());
    Ok(match vip.protocol {
        Protocol::Udp => NewSocket::Udp(match given.udp.remove(&vip.name) {
            Some(s) => {
                s.set_nonblocking(true)?;
                UdpSocket::from_std(s).with_context(|| format!("using the socket given for VIP {}", vip.name))?
            }
            None => UdpSocket::bind(vip.socket_addr()).await.with_context(cannot)?,
        }),
        Protocol::Tcp => {
            let mut listeners: Vec<TcpListener> = Vec::with_capacity(workers.len().max(1));
            for i in 0..workers.len().max(1) {
                let _in_runtime = workers.get(i).map(Handle::enter);
                let l = match (listeners.first(), given.tcp.remove(&vip.name)) {
                    (None, Some(l)) => {
                        l.set_nonblocking(true)?;
                        TcpListener::from_std(l).with_context(|| format!("using the listener given for VIP {}", vip.name))?
                    }
                    (None, None) if workers.is_empty() => bind(vip.socket_addr()).with_context(cannot)?,
                    (None, None) => bind_reuseport(vip.socket_addr(), BACKLOG).with_context(cannot)?,
                    (Some(first), _) => {
                        let at = first.local_addr()?;
                        bind_reuseport(at, BACKLOG).with_context(|| {
                            format!(
                                "VIP {}: per_core runtime: cannot add a SO_REUSEPORT listener on {at} (a listener given for it must have SO_REUSEPORT)",
                                vip.name
                            )
                        })?
                    }
                };
                listeners.push(l);
            }
            NewSocket::Tcp(listeners)
        }
    })
}
