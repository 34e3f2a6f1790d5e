//! The client simulator (the `lab-client` binary, docs/simulators.md): the
//! L4-Proxy-LB seed's five raw-TCP client kinds against the backend
//! simulator's REQ/ACK echo, plus an `https` kind (HTTP/1.1 and h2 over
//! TLS, optionally with a client certificate) against alb, drawn from a
//! weighted mix at a spawn rate, bounded in time, in clients at once and
//! in clients in total, with per-kind results.
//!
//! - `kind.rs`: the kinds, the mix, integer ranges
//! - `results.rs`: the counters, percentiles and the report JSON
//! - `net.rs`: connect / read an answer / classify a failure
//! - `tcp.rs`: the raw-TCP kinds; `https.rs`: the https kind; `tls.rs`: the
//!   rustls client setup (shared with `tls-clients`)
//! - this file: the spawner.
//!
//! `kind` and `results` build without the `tls-clients` feature, so readers
//! of the report (xtask) need no TLS client.

pub mod kind;
pub mod results;

#[cfg(feature = "tls-clients")]
pub mod https;
#[cfg(feature = "tls-clients")]
mod net;
#[cfg(feature = "tls-clients")]
pub mod tcp;
#[cfg(feature = "tls-clients")]
pub mod tls;

#[cfg(feature = "tls-clients")]
pub use run::{run, Plan};

#[cfg(feature = "tls-clients")]
mod run {
    use std::{future::Future, sync::Arc, time::Duration};

    use anyhow::{bail, Result};
    use tokio::{task::JoinSet, time::Instant};

    use super::{
        https::{self, HttpsParams},
        kind::{Kind, Mix},
        results::{Recorder, Report},
        tcp::{self, TcpParams},
    };

    /// One run: which kinds, how fast, how long, how many.
    pub struct Plan {
        pub mix: Mix,
        /// New clients per second, at most (a launch slot is skipped while
        /// `max_concurrent` clients run).
        pub rate: f64,
        /// Clients are started for this long.
        pub duration: Duration,
        /// Clients running at once, at most.
        pub max_concurrent: usize,
        /// Clients started in all, at most; the run ends early once they have all ended.
        pub max_total: u64,
        /// After `duration`, clients still running get this long to end;
        /// then they are cut and counted as cancelled.
        pub grace: Duration,
        /// The raw-TCP kinds' target and behaviour (`None`: those kinds are off).
        pub tcp: Option<TcpParams>,
        /// The https kind's (`None`: it is off).
        pub https: Option<HttpsParams>,
    }

    impl Plan {
        /// The mix without the kinds whose target is missing; an error when nothing is left.
        pub fn effective_mix(&self) -> Result<Mix> {
            let mut mix = self.mix.clone();
            for kind in Kind::ALL {
                let has_target = if kind.is_raw_tcp() { self.tcp.is_some() } else { self.https.is_some() };
                if !has_target {
                    mix = mix.without(kind);
                }
            }
            if mix.kinds().is_empty() {
                bail!(
                    "no client kind is on: --mix {} gives weight only to kinds without a target (real, fire_and_forget, stream, idle, slow need --tcp-target; https needs --https-target)",
                    self.mix
                );
            }
            Ok(mix)
        }
    }

    /// Runs `plan` until its bounds (or until `stop` completes: stop
    /// starting clients, then the grace period), calling `tick` with the
    /// counters once a second; returns the final report.
    pub async fn run(plan: Plan, stop: impl Future<Output = ()>, mut tick: impl FnMut(&Report)) -> Result<Report> {
        if !(plan.rate.is_finite() && plan.rate > 0.0) {
            bail!("rate {}: must be a number of clients per second above 0", plan.rate);
        }
        let mix = plan.effective_mix()?;
        let kinds = mix.kinds();
        let recorder = Recorder::new(&kinds);
        let (tcp_params, https_params) = (plan.tcp.map(Arc::new), plan.https.map(Arc::new));
        let mut rng = fastrand::Rng::new();
        let mut tasks = JoinSet::new();
        let start = Instant::now();
        let deadline = start + plan.duration;
        let gap = Duration::from_secs_f64(1.0 / plan.rate);
        let mut next_launch = start;
        let mut launched = 0u64;
        let mut ticks = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop = std::pin::pin!(stop);
        let mut stopped = false;
        // Starting clients.
        while !stopped && Instant::now() < deadline && launched < plan.max_total {
            tokio::select! {
                () = tokio::time::sleep_until(next_launch) => {}
                Some(_) = tasks.join_next() => continue,
                _ = ticks.tick() => { tick(&recorder.report(false)); continue }
                () = tokio::time::sleep_until(deadline) => break,
                () = &mut stop => { stopped = true; continue }
            }
            let now = Instant::now();
            while next_launch <= now && launched < plan.max_total {
                next_launch += gap;
                if tasks.len() >= plan.max_concurrent {
                    continue;
                }
                let kind = mix.pick(&mut rng).expect("the effective mix has a kind");
                let client = recorder.start(kind);
                launched += 1;
                if kind.is_raw_tcp() {
                    let p = tcp_params.clone().expect("raw-TCP kinds are on only with a target");
                    tasks.spawn(async move { tcp::run(&p, client).await });
                } else {
                    let p = https_params.clone().expect("https is on only with a target");
                    tasks.spawn(async move { https::run(&p, client).await });
                }
            }
            // Behind by more than a slot (a slow tick): do not burst to catch up.
            next_launch = next_launch.max(now.checked_sub(gap).unwrap_or(now));
        }
        // Draining: the clients still running end by themselves or are cut.
        // (after --max-total, the clients may run until the end of --duration).
        let cut = if stopped { Instant::now() } else { deadline.max(Instant::now()) } + plan.grace;
        while !tasks.is_empty() {
            tokio::select! {
                _ = tasks.join_next() => {}
                _ = ticks.tick() => tick(&recorder.report(false)),
                () = tokio::time::sleep_until(cut) => break,
            }
        }
        // Aborted tasks drop their clients, which count themselves cancelled.
        tasks.shutdown().await;
        Ok(recorder.report(true))
    }
}
