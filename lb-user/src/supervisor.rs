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
//! - **a vanished interface**: detach;
//! - **stop** (SIGINT/SIGTERM): detach and remove the pins.
//!
//! The binary and the tests run this same code ([`Supervisor::run`]).

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};
use lb_common::userspace::{
    signals::{Signal, Signals},
    watch::FileWatch,
};
use tokio::{sync::mpsc, time::MissedTickBehavior};

use crate::{attach::interface_index, config::Config, exporter, health::HealthChecks, neighbours::Neighbours, Attachment};

/// How often the config file and the interfaces are looked at.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

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
        Ok(Supervisor { attachment, config_path, watch, health, neighbours, _exporter: exporter })
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
                }
            }
        }
        drop(self.health);
        self.neighbours.release();
        self.attachment.detach()
    }

    fn follow_health(&mut self) {
        let Some(config) = self.attachment.config() else { return };
        let snapshot = self.neighbours.gate(config, self.health.snapshot(config));
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
        let result = Config::from_file(&path).map_err(anyhow::Error::from).and_then(|c| {
            // The new config's backends as the checks see them now: those
            // that stay keep their verdicts.
            if let Err(err) = self.neighbours.sync(&c) {
                log::warn!("checking DSR next hops: {err:#}");
            }
            let health = self.neighbours.gate(&c, self.health.snapshot(&c));
            self.attachment.reload(&c, &health).map(|()| c)
        });
        match result {
            Ok(c) => {
                self.health.sync(&c);
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
