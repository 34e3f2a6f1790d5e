//! `lb-user proxy --config FILE`, the command: the proxy until SIGINT or
//! SIGTERM and the drain are over; SIGHUP or a change of the file reloads.

use std::path::Path;

use anyhow::{Context as _, Result};
use lb_common::userspace::{
    runtime::{Runtimes, Scheduler},
    signals::{Signal, Signals},
    watch::ConfigFile,
};
use tokio::sync::oneshot;

use super::{Proxy, ProxyOptions, DEFAULT_WATCH_INTERVAL};
use crate::config::Config;

/// Runs the proxy of `config_path` until a stop signal and the drain are
/// over. The file is checked every [`DEFAULT_WATCH_INTERVAL`].
pub fn run_cli(config_path: &Path) -> Result<()> {
    // Watched from before the read: an edit while starting is not lost.
    let config_file = ConfigFile::new(config_path);
    let config = Config::from_file(config_path)?;
    let rt = config.proxy.runtime;
    let runtimes = Runtimes::start(&rt, "proxy").context("starting the proxy's Tokio runtimes (proxy.runtime)")?;
    let workers = match runtimes.scheduler() {
        Scheduler::PerCore => {
            log::info!("proxy runtime: {} per_core runtimes, a SO_REUSEPORT listener per TCP VIP on each", rt.workers);
            runtimes.workers().to_vec()
        }
        Scheduler::Shared => {
            log::info!("proxy runtime: one shared runtime with {} workers", rt.workers);
            Vec::new()
        }
    };
    runtimes.block_on(async move {
        // Installed before the proxy starts: SIGHUP's default action kills.
        let mut signals = Signals::new().context("installing the signal handlers")?;
        let (stop_tx, stop_rx) = oneshot::channel::<Signal>();
        let shutdown = async move {
            if let Ok(s) = stop_rx.await {
                log::info!("proxy shutdown: received {}", s.name());
            }
        };
        let options = ProxyOptions { config_file: Some(config_file), watch_interval: Some(DEFAULT_WATCH_INTERVAL), workers, ..ProxyOptions::default() };
        let handle = Proxy::start(config, options, shutdown).await?;
        let reloader = handle.reloader();
        let signal_task = tokio::spawn(async move {
            let mut stop_tx = Some(stop_tx);
            loop {
                let s = signals.recv().await;
                if s.is_stop() {
                    if let Some(tx) = stop_tx.take() {
                        let _ = tx.send(s);
                    }
                } else {
                    // The outcome is logged by the proxy.
                    let _ = reloader.reload_file(s.name()).await;
                }
            }
        });
        let r = handle.wait().await;
        signal_task.abort();
        r
    })
}
