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
//! - **a vanished interface**: detach;
//! - **stop** (SIGINT/SIGTERM): detach and remove the pins.
//!
//! The binary and the tests run this same code ([`Supervisor::run`]).

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use lb_common::userspace::{
    signals::{Signal, Signals},
    watch::FileWatch,
};
use tokio::{sync::mpsc, time::MissedTickBehavior};

use crate::{
    attach::interface_index,
    config::Config,
    drain::{self, Drains},
    exporter,
    health::{HealthChecks, HealthSnapshot},
    neighbours::Neighbours,
    Attachment,
};

/// How often the config file and the interfaces are looked at.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// How often the flows of draining backends are counted (a walk over the
/// whole conntrack table).
pub const DRAIN_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What the supervisor is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Re-read the config file; the string names the trigger in the log.
    Reload(String),
    /// Detach and return.
    Stop(String),
}

/// Runs an [`Attachment`] until told to stop.
pub struct Supervisor {
    attachment: Attachment,
    config_path: Option<PathBuf>,
    watch: Option<FileWatch>,
    health: HealthChecks,
    /// DSR next hops: gated backends stay out of the tables until resolved.
    neighbours: Neighbours,
    /// The config file as last applied; the attachment holds the effective
    /// config (this plus the draining backends).
    file: Option<Config>,
    /// Backends a reload removed, keeping their flows for a while.
    drains: Drains,
    last_drain_check: Instant,
    _exporter: Option<exporter::ExporterHandle>,
}

impl Supervisor {
    /// Starts the health checks and the metrics endpoint of the attached
    /// config. Must run inside a tokio runtime.
    /// `neighbours` is what the first tables were gated by (see
    /// [`Neighbours::settle`]).
    pub fn new(attachment: Attachment, config_path: Option<PathBuf>, neighbours: Neighbours) -> Result<Supervisor> {
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
        let mut health = HealthChecks::new();
        if let Some(c) = attachment.config() {
            health.sync(c);
        }
        let watch = config_path.as_ref().map(|p| FileWatch::new([p]));
        let file = attachment.config().cloned();
        Ok(Supervisor {
            attachment,
            config_path,
            watch,
            health,
            neighbours,
            file,
            drains: Drains::new(),
            last_drain_check: Instant::now(),
            _exporter: exporter,
        })
    }

    /// Runs until a [`Command::Stop`] (or the sender is dropped) or an
    /// interface disappears, then detaches.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) -> Result<()> {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Reload(why)) => self.reload(&why),
                    Some(Command::Stop(why)) => {
                        log::info!("stopping ({why}): detaching");
                        break;
                    }
                    None => break,
                },
                () = self.health.changed() => self.follow_health(),
                _ = tick.tick() => {
                    if let Some(gone) = self.attachment.ifaces().iter().find(|i| interface_index(i).is_err()) {
                        log::warn!("interface {gone} disappeared; detaching");
                        break;
                    }
                    if self.watch.as_mut().is_some_and(FileWatch::changed) {
                        self.reload("file changed");
                    }
                    match self.neighbours.refresh() {
                        Ok(true) => self.follow_health(),
                        Ok(false) => {}
                        Err(err) => log::warn!("checking DSR next hops: {err:#}"),
                    }
                    self.follow_drains();
                }
            }
        }
        drop(self.health);
        self.neighbours.release();
        self.attachment.detach()
    }

    /// Which backends of `effective` may get new flows: up by their health
    /// check, next hop resolved (DSR), not draining.
    fn verdicts(&self, effective: &Config) -> HealthSnapshot {
        self.drains_then(&self.drains, effective)
    }

    /// Ends the drains whose flows ended or whose timeout passed (the
    /// conntrack walk runs at most every [`DRAIN_CHECK_INTERVAL`]) and
    /// removes those backends from the maps.
    fn follow_drains(&mut self) {
        if self.drains.is_empty() || self.last_drain_check.elapsed() < DRAIN_CHECK_INTERVAL {
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
        let done = self.drains.expire(Instant::now(), &mut |vip, b| flows.as_ref().and_then(|f| f.get(&(vip.to_owned(), b.socket_addr())).copied()));
        if done.is_empty() {
            return;
        }
        let Some(file) = self.file.clone() else { return };
        let effective = self.drains.effective(&file);
        let health = self.verdicts(&effective);
        // Logged once the maps say so: a reader of the log (or a test) may
        // look at the maps right away.
        match self.attachment.reload(&effective, &health) {
            Ok(()) => {
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
        if let Err(err) = self.neighbours.sync(&effective) {
            log::warn!("checking DSR next hops: {err:#}");
        }
    }

    /// [`Supervisor::verdicts`] with `drains` in place of the current ones
    /// (a reload's candidate).
    fn drains_then(&self, drains: &Drains, effective: &Config) -> HealthSnapshot {
        drains.gate(effective, self.neighbours.gate(effective, self.health.snapshot(effective)))
    }

    fn follow_health(&mut self) {
        let Some(config) = self.attachment.config() else { return };
        let snapshot = self.verdicts(config);
        match self.attachment.set_health(&snapshot) {
            Ok(()) => log::info!("tables rebuilt after a health or next-hop change"),
            Err(err) => log::error!("rebuilding tables after a health or next-hop change: {err:#}"),
        }
    }

    fn reload(&mut self, why: &str) {
        let Some(path) = self.config_path.clone() else {
            log::warn!("reload ({why}) ignored: attached without --config");
            return;
        };
        if let Some(w) = &mut self.watch {
            w.rearm();
        }
        let mut drains = self.drains.clone();
        let result = Config::from_file(&path).map_err(anyhow::Error::from).and_then(|c| {
            // Backends the file dropped drain (their flows stay) when
            // conntrack.drain_timeout is set.
            if let Some(old) = self.attachment.config() {
                drains.follow_reload(old, &c, Instant::now());
            }
            let effective = drains.effective(&c);
            if let Err(err) = self.neighbours.sync(&effective) {
                log::warn!("checking DSR next hops: {err:#}");
            }
            // The new config's backends as the checks see them now: those
            // that stay keep their verdicts.
            let health = self.drains_then(&drains, &effective);
            self.attachment.reload(&effective, &health).map(|()| c)
        });
        match result {
            Ok(c) => {
                self.health.sync(&c);
                self.file = Some(c);
                self.drains = drains;
                log::info!("reload applied ({why}): {}", path.display());
            }
            Err(err) => {
                // The next hops of the config that stays.
                if let Some(running) = self.attachment.config() {
                    if let Err(err) = self.neighbours.sync(&running.clone()) {
                        log::warn!("checking DSR next hops: {err:#}");
                    }
                }
                log::error!("reload refused ({why}), previous config stays in force: {err:#}");
            }
        }
    }
}

/// The binary's entry: SIGHUP reloads, SIGINT/SIGTERM stop. Blocks until
/// detached.
pub fn run_until_signalled(attachment: Attachment, config_path: Option<PathBuf>, neighbours: Neighbours) -> Result<()> {
    // One worker: the checks and this loop are light, and a second thread
    // would only compete with the data path's softirqs.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().context("starting the supervisor's runtime")?;
    runtime.block_on(async move {
        let mut signals = Signals::new().context("installing the signal handlers")?;
        let supervisor = Supervisor::new(attachment, config_path, neighbours)?;
        let (tx, rx) = mpsc::channel(4);
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
