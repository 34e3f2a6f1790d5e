//! `lb-user attach` after the program is attached: the loop that keeps the
//! maps in line with the config file and the health checks until a stop.
//!
//! It reacts to
//! - **health changes**: the tables are rebuilt from the new verdicts;
//! - **reloads** (SIGHUP, or the config file changed — in place or renamed
//!   into place, checked every [`WATCH_INTERVAL`]): the new config is
//!   applied all or nothing; backends that stay keep their health state (and
//!   their running check), new ones start up; a refused reload keeps the
//!   running config;
//! - **draining backends** (removed by a reload with `conntrack.drain_timeout`):
//!   removed when their last flow ends or the timeout passes;
//! - **DSR next hops**: backends follow their neighbour entries;
//! - **control API requests** ([`crate::api`], answered in `control.rs`):
//!   runtime changes ([`crate::overrides`]) on top of the file, kept until
//!   the file changes;
//! - **VIP announcement** (with `group:`, [`crate::announce`]): after every
//!   change of the tables, the hand-off routes follow the verdicts;
//! - **a vanished interface**: withdraw and detach;
//! - **stop** (SIGINT/SIGTERM): withdraw the VIPs, wait `group.grace` while
//!   still forwarding (the routers move the flows to the other nodes), then
//!   detach and remove the pins.
//!
//! Every change of the maps goes through one place, [`Supervisor::apply`]:
//! the file, with the API's changes, with the backends still draining out;
//! a backend gets new flows when its health check, its DSR next hop, and
//! not leaving nor drained all say so ([`Supervisor::verdicts`]).
//!
//! The binary and the tests run this same code ([`Supervisor::run`]); the
//! tests may drive a stand-in for the attachment ([`Tables`]).

mod control;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use lb_common::userspace::{
    signals::{Signal, Signals},
    watch::ConfigFile,
};
use tokio::{
    sync::{mpsc, oneshot},
    time::MissedTickBehavior,
};

use crate::{
    announce::{self, Announcer},
    api,
    attach::interface_index,
    config::Config,
    drain::{self, Drains},
    exporter,
    health::{HealthChecks, HealthSnapshot},
    neighbours::Neighbours,
    overrides::Overrides,
    stats::Report,
    Attachment,
};

/// How often the config file and the interfaces are looked at.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// How often the flows of draining backends are counted (a walk over the
/// whole conntrack table).
pub const DRAIN_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What the supervisor is asked to do.
#[derive(Debug)]
pub enum Command {
    /// Re-read the config file; the string names the trigger in the log.
    Reload(String),
    /// Detach and return.
    Stop(String),
    /// A control API request, and where its answer goes.
    Api(api::Request, oneshot::Sender<Result<api::Reply, api::ApiError>>),
}

/// What the supervisor drives: an [`Attachment`], or in tests a stand-in
/// that keeps what it is given.
pub trait Tables {
    /// The interfaces attached to (checked for disappearance every tick).
    fn ifaces(&self) -> &[String];
    /// The config in force (the effective one), if attached with a config.
    fn config(&self) -> Option<&Config>;
    /// See [`Attachment::reload`].
    fn reload(&mut self, config: &Config, health: &HealthSnapshot) -> Result<()>;
    /// See [`Attachment::set_health`].
    fn set_health(&mut self, health: &HealthSnapshot) -> Result<()>;
    /// See [`Attachment::live_flows`].
    fn live_flows(&mut self) -> Result<BTreeMap<(String, SocketAddr), u64>>;
    /// The VIP id and backend ids of every VIP of [`Tables::config`], in
    /// config order.
    fn ids(&self) -> Vec<(u32, Vec<u32>)>;
    /// The counters, summed over CPUs.
    fn counters(&self) -> Result<Report>;
    /// Detaches (removes the pins).
    fn detach(self) -> Result<()>;
}

impl Tables for Attachment {
    fn ifaces(&self) -> &[String] {
        Attachment::ifaces(self)
    }
    fn config(&self) -> Option<&Config> {
        Attachment::config(self)
    }
    fn reload(&mut self, config: &Config, health: &HealthSnapshot) -> Result<()> {
        Attachment::reload(self, config, health)
    }
    fn set_health(&mut self, health: &HealthSnapshot) -> Result<()> {
        Attachment::set_health(self, health)
    }
    fn live_flows(&mut self) -> Result<BTreeMap<(String, SocketAddr), u64>> {
        Attachment::live_flows(self)
    }
    fn ids(&self) -> Vec<(u32, Vec<u32>)> {
        Attachment::ids(self)
    }
    fn counters(&self) -> Result<Report> {
        Report::read_pinned(&self.ifaces()[0])
    }
    fn detach(self) -> Result<()> {
        Attachment::detach(self)
    }
}

/// Runs an [`Attachment`] (or other [`Tables`]) until told to stop.
pub struct Supervisor<T: Tables = Attachment> {
    attachment: T,
    /// The file reloads read, watched from before the attach read it.
    config_file: Option<ConfigFile>,
    health: HealthChecks,
    /// DSR next hops: gated backends stay out of the tables until resolved.
    neighbours: Neighbours,
    /// The config file as last applied; the attachment holds the effective
    /// config (this plus the draining backends).
    file: Option<Config>,
    /// Backends a reload (or the API) removed, keeping their flows for a while.
    drains: Drains,
    /// The control API's changes on top of `file`.
    overrides: Overrides,
    last_drain_check: Instant,
    /// Live flows of the draining and drained backends at the last count.
    flows: BTreeMap<(String, SocketAddr), u64>,
    _exporter: Option<exporter::ExporterHandle>,
    api: Option<api::ApiHandle>,
    /// With `group:`: the hand-off routes, and whether the last attempt to
    /// bring them in line failed (retried every tick).
    announcer: Option<Announcer>,
    announce_pending: bool,
}

impl<T: Tables> Supervisor<T> {
    /// Starts the health checks, the metrics endpoint and the control API
    /// (which sends its requests to `commands`, the sender of the channel
    /// [`Supervisor::run`] reads) of the attached config. Must run inside a
    /// tokio runtime. `neighbours` is what the first tables were gated by
    /// (see [`Neighbours::settle`]); `config_file` was made before the
    /// attached config was read from it.
    pub fn new(attachment: T, config_file: Option<ConfigFile>, neighbours: Neighbours, commands: mpsc::Sender<Command>) -> Result<Supervisor<T>> {
        let ifaces = attachment.ifaces().to_vec();
        // Prometheus: the BPF counters and health gauges, read from the pins
        // on every scrape.
        let exporter = match attachment.config().and_then(|c| c.metrics.as_ref()) {
            Some(metrics) => {
                let e = exporter::spawn(metrics.listen, ifaces[0].clone())?;
                log::info!("metrics on http://{}/metrics", e.local_addr());
                Some(e)
            }
            None => None,
        };
        // The control API: on the supervisor's runtime, changes through
        // `commands`.
        let api = match attachment.config().and_then(|c| c.api) {
            Some(a) => {
                let handle = api::spawn(a.listen, commands)?;
                log::info!("control API on http://{}/api/state", handle.local_addr());
                Some(handle)
            }
            None => None,
        };
        let mut health = HealthChecks::new();
        if let Some(c) = attachment.config() {
            health.sync(c);
        }
        let file = attachment.config().cloned();
        let announcer = match attachment.config().and_then(|c| c.group.as_ref()) {
            Some(g) => {
                for iface in &ifaces {
                    announce::remember(iface, g)?;
                }
                log::info!("group node={} hand-off table={} grace={}", g.node, g.table, lb_common::userspace::duration::show(g.grace));
                Some(Announcer::open(g)?)
            }
            None => None,
        };
        let mut supervisor = Supervisor {
            attachment,
            config_file,
            health,
            neighbours,
            file,
            drains: Drains::new(),
            overrides: Overrides::new(),
            last_drain_check: Instant::now(),
            flows: BTreeMap::new(),
            _exporter: exporter,
            api,
            announcer,
            announce_pending: false,
        };
        supervisor.announce();
        Ok(supervisor)
    }

    /// Brings the hand-off routes in line with the tables in force; a
    /// failure is logged and retried on the next tick.
    fn announce(&mut self) {
        let Some(config) = self.attachment.config() else { return };
        let verdicts = self.verdicts(config);
        let Some(announcer) = self.announcer.as_mut() else { return };
        self.announce_pending = match announcer.sync(config, &verdicts) {
            Ok(_) => false,
            Err(err) => {
                log::warn!("announcing VIPs in routing table {}: {err:#}", announcer.group().table);
                true
            }
        };
    }

    /// Withdraws every VIP (stop, detach); errors are logged: detaching
    /// goes on.
    fn withdraw(&mut self, why: &str) -> bool {
        let Some(announcer) = self.announcer.as_mut() else { return false };
        match announcer.withdraw_all(why) {
            Ok(_) => true,
            Err(err) => {
                log::error!("withdrawing VIPs from routing table {}: {err:#}", announcer.group().table);
                false
            }
        }
    }

    /// Where the control API listens (the real port when configured with
    /// port 0), if the config has one.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().map(api::ApiHandle::local_addr)
    }

    /// Runs until a [`Command::Stop`] (or every sender is dropped; the
    /// control API holds one while it runs) or an interface disappears,
    /// then detaches.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) -> Result<()> {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Reload(why)) => self.reload(&why),
                    Some(Command::Stop(why)) => {
                        if self.withdraw(&format!("stopping ({why})")) {
                            // The config in force: grace may change on reload.
                            let grace = self.attachment.config().and_then(|c| c.group.as_ref()).map(|g| g.grace).unwrap_or_default();
                            log::info!("stopping ({why}): VIPs withdrawn, detaching in {}", lb_common::userspace::duration::show(grace));
                            tokio::time::sleep(grace).await;
                        }
                        log::info!("stopping ({why}): detaching");
                        break;
                    }
                    Some(Command::Api(request, reply)) => {
                        let answer = self.api_request(request);
                        // A client that went away does not want the answer.
                        let _ = reply.send(answer);
                    }
                    None => break,
                },
                () = self.health.changed() => self.follow_health(),
                _ = tick.tick() => {
                    if let Some(gone) = self.attachment.ifaces().iter().find(|i| interface_index(i).is_err()) {
                        log::warn!("interface {gone} disappeared; detaching");
                        self.withdraw(&format!("interface {gone} disappeared"));
                        break;
                    }
                    if self.config_file.as_mut().is_some_and(ConfigFile::changed) {
                        self.reload("file changed");
                    }
                    match self.neighbours.refresh() {
                        Ok(true) => self.follow_health(),
                        Ok(false) => {}
                        Err(err) => log::warn!("checking DSR next hops: {err:#}"),
                    }
                    self.follow_drains();
                    if self.announce_pending {
                        self.announce();
                    }
                }
            }
        }
        if self.announcer.is_some() {
            // Ends here too when every command sender went away.
            self.withdraw("detaching");
            for iface in self.attachment.ifaces() {
                announce::forget(iface);
            }
        }
        drop(self.api);
        drop(self.health);
        self.neighbours.release();
        self.attachment.detach()
    }

    /// Which backends of `effective` may get new flows: up by their health
    /// check, next hop resolved (DSR), not leaving, not drained.
    fn verdicts(&self, effective: &Config) -> HealthSnapshot {
        self.verdicts_with(&self.drains, &self.overrides, effective)
    }

    /// [`Supervisor::verdicts`] with candidate drains and overrides.
    fn verdicts_with(&self, drains: &Drains, overrides: &Overrides, effective: &Config) -> HealthSnapshot {
        overrides.gate(effective, drains.gate(effective, self.neighbours.gate(effective, self.health.snapshot(effective))))
    }

    /// The one way the maps change (reloads, API changes, ended drains):
    /// `file` with `overrides` and the backends `drains` keeps, gated by
    /// [`Supervisor::verdicts_with`]. All or nothing: on error the running
    /// state stays (and the DSR next hops follow it again).
    fn apply(&mut self, file: Config, overrides: Overrides, drains: Drains) -> Result<()> {
        let base = overrides.apply(&file);
        let effective = drains.effective(&base);
        if let Err(err) = self.neighbours.sync(&effective) {
            log::warn!("checking DSR next hops: {err:#}");
        }
        // The backends as the checks see them now: those that stay keep
        // their verdicts, new ones start up.
        let health = self.verdicts_with(&drains, &overrides, &effective);
        if let Err(err) = self.attachment.reload(&effective, &health) {
            if let Some(running) = self.attachment.config().cloned() {
                if let Err(err) = self.neighbours.sync(&running) {
                    log::warn!("checking DSR next hops: {err:#}");
                }
            }
            return Err(err);
        }
        // Leaving backends need no check: they get no new flows anyway.
        self.health.sync(&base);
        self.file = Some(file);
        self.overrides = overrides;
        self.drains = drains;
        if let Some(g) = self.attachment.config().and_then(|c| c.group.clone()) {
            for iface in self.attachment.ifaces() {
                if let Err(err) = announce::remember(iface, &g) {
                    log::warn!("{err:#}");
                }
            }
        }
        self.announce();
        Ok(())
    }

    /// Counts the live flows of draining and drained backends (a conntrack
    /// walk, at most every [`DRAIN_CHECK_INTERVAL`]), ends the drains whose
    /// flows ended or whose timeout passed and removes those backends.
    fn follow_drains(&mut self) {
        if self.drains.is_empty() && !self.overrides.has_drained() {
            self.flows.clear();
            return;
        }
        if self.last_drain_check.elapsed() < DRAIN_CHECK_INTERVAL {
            return;
        }
        self.last_drain_check = Instant::now();
        let flows = match self.attachment.live_flows() {
            Ok(f) => Some(f),
            Err(err) => {
                log::warn!("counting the flows of draining backends: {err:#}");
                None
            }
        };
        self.flows = flows.clone().unwrap_or_default();
        let mut drains = self.drains.clone();
        let done = drains.expire(Instant::now(), &mut |vip, b| flows.as_ref().and_then(|f| f.get(&(vip.to_owned(), b.socket_addr())).copied()));
        if done.is_empty() {
            return;
        }
        let Some(file) = self.file.clone() else { return };
        // Logged once the maps say so: a reader of the log (or a test) may
        // look at the maps right away.
        match self.apply(file, self.overrides.clone(), drains) {
            Ok(_) => {
                for (vip, b, why) in &done {
                    let why = match why {
                        drain::Done::FlowsEnded => "its last flow ended",
                        drain::Done::Timeout => "drain_timeout passed",
                    };
                    log::info!("backend removed after draining vip={vip} backend={} reason={why:?}", b.socket_addr());
                }
            }
            Err(err) => log::error!("removing drained backends: {err:#}"),
        }
    }

    fn follow_health(&mut self) {
        let Some(config) = self.attachment.config() else { return };
        let snapshot = self.verdicts(config);
        match self.attachment.set_health(&snapshot) {
            Ok(()) => log::info!("tables rebuilt after a health or next-hop change"),
            Err(err) => log::error!("rebuilding tables after a health or next-hop change: {err:#}"),
        }
        self.announce();
    }

    fn reload(&mut self, why: &str) {
        let Some(file) = self.config_file.as_mut() else {
            log::warn!("reload ({why}) ignored: attached without --config");
            return;
        };
        file.rearm();
        let path = file.path().to_owned();
        match self.reload_from(&path) {
            Ok(discarded) => {
                if !discarded.is_empty() {
                    let list: Vec<String> = discarded.iter().map(ToString::to_string).collect();
                    log::info!("api: runtime changes discarded, the config file changed: {}", list.join("; "));
                }
                log::info!("reload applied ({why}): {}", path.display());
            }
            Err(err) => log::error!("reload refused ({why}), previous config stays in force: {err:#}"),
        }
    }

    /// Reads and applies the file; returns the API changes it discarded.
    fn reload_from(&mut self, path: &std::path::Path) -> Result<Vec<crate::overrides::Change>> {
        let new = Config::from_file(path)?;
        // The file wins once it says something new (crate::overrides).
        let mut overrides = self.overrides.clone();
        let discarded = self.file.as_ref().map(|old| overrides.follow_reload(old, &new)).unwrap_or_default();
        // Backends no longer listed drain (their flows stay) when
        // conntrack.drain_timeout is set.
        let mut drains = self.drains.clone();
        if let Some(old) = self.attachment.config() {
            drains.follow_reload(old, &overrides.apply(&new), Instant::now());
        }
        self.apply(new, overrides, drains)?;
        Ok(discarded)
    }
}

/// The binary's entry: SIGHUP reloads, SIGINT/SIGTERM stop. Blocks until
/// detached. `ready` runs once the signal handlers, the metrics endpoint and
/// the control API are in place: a stop signal from then on detaches (before,
/// it would kill the process and leave the program attached), and the file
/// is watched.
pub fn run_until_signalled(attachment: Attachment, config_file: Option<ConfigFile>, neighbours: Neighbours, ready: impl FnOnce()) -> Result<()> {
    // One worker: the checks and this loop are light, and a second thread
    // would only compete with the data path's softirqs.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().context("starting the supervisor's runtime")?;
    runtime.block_on(async move {
        let mut signals = Signals::new().context("installing the signal handlers")?;
        let (tx, rx) = mpsc::channel(16);
        let supervisor = Supervisor::new(attachment, config_file, neighbours, tx.clone())?;
        ready();
        let forward = tokio::spawn(async move {
            loop {
                let s = signals.recv().await;
                let cmd = match s {
                    Signal::Hangup => Command::Reload(s.name().into()),
                    _ => Command::Stop(s.name().into()),
                };
                if tx.send(cmd).await.is_err() {
                    return;
                }
            }
        });
        let result = supervisor.run(rx).await;
        forward.abort();
        result
    })
}
