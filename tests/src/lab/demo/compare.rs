//! `cargo xtask run --compare`: the same client-simulator load (raw-TCP
//! kinds) through the XDP echo VIP and through `lb-user proxy` (same
//! backend simulators, same VIP config, listening on [`PROXY_ADDR`] in the
//! lb namespace), alternately in short rounds, each round also running the
//! load straight at one backend ([`Path::Direct`]) so the XDP path's cost
//! is the machine's CPU above it, measured in the same run, as `cargo xtask
//! bench` measures it (the one CPU accounting: [`crate::cpu`]). The
//! figures are in [`compare_figures`](super::compare_figures).

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path as FsPath,
    sync::mpsc::Receiver,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

pub use super::compare_figures::{Leg, Path, Round};
use super::{
    figures, sample,
    topology::{self, Topology},
    traffic::{ClientSim, Load},
};
use crate::{
    cpu,
    lab::{addr, chain::ECHO_PORT, config::LbConfig, config::Vip, Host},
    sys, workspace,
};

/// Where `lb-user proxy` listens (on the lb namespace's loopback).
pub const PROXY_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 100, 3)), ECHO_PORT);
/// The backend simulator the direct leg talks to.
pub const DIRECT_BACKEND: u8 = topology::ALBS + 1;
/// The default load: REQ/ACK loops and one-line short connections.
pub const DEFAULT_MIX: &str = "real=3,fire_and_forget=1";
/// Default rounds.
pub const DEFAULT_ROUNDS: u32 = 4;

/// What to compare.
#[derive(Clone, Debug)]
pub struct CompareSpec {
    pub prefix: String,
    /// The XDP and proxy legs together; the direct legs add half again.
    pub duration: Duration,
    pub rounds: u32,
    pub load: Load,
    pub attach_mode: Option<String>,
}

impl CompareSpec {
    pub fn new(duration: Duration) -> CompareSpec {
        let load = Load { rate: 100, mix: DEFAULT_MIX.to_owned(), ..Load::default() };
        CompareSpec { prefix: "xc".into(), duration, rounds: DEFAULT_ROUNDS, load, attach_mode: None }
    }

    /// One leg's length: the duration shared by the XDP and proxy legs of
    /// every round, at least one second.
    pub fn leg(&self) -> Duration {
        (self.duration / (2 * self.rounds.max(1))).max(Duration::from_secs(1))
    }
}

/// What the caller sees while it runs.
pub trait CompareObserver {
    fn started(&mut self, lab: &str, spec: &CompareSpec);
    fn leg(&mut self, leg: &Leg);
    fn round(&mut self, round: &Round);
}

/// What a comparison saw.
#[derive(Clone, Debug)]
pub struct CompareReport {
    pub lab: String,
    pub spec: CompareSpec,
    pub rounds: Vec<Round>,
    pub cpus: usize,
}

/// Brings up the demo's system plus `lb-user proxy`, runs the rounds (until
/// done or a message on `stop`), tears everything down.
pub fn run(spec: &CompareSpec, stop: &Receiver<()>, observer: &mut dyn CompareObserver) -> Result<CompareReport> {
    if spec.rounds == 0 {
        bail!("--compare needs at least one round");
    }
    let mut topo = Topology::up(&spec.prefix, spec.attach_mode.clone())?;
    let lab = topo.chain.lab.name().to_owned();
    let config = proxy_config(&topo)?;
    let proxy_pid = start_proxy(&mut topo, config.path())?;
    let direct = SocketAddr::new(addr::backend_v4(DIRECT_BACKEND).into(), ECHO_PORT);
    for (what, to) in [("lb-user proxy", PROXY_ADDR), ("the direct backend", direct)] {
        topo.chain.lab.wait_until(Host::Client, &format!("REQ/ACK echo through {what} {to}"), Duration::from_secs(20), move || {
            topology::echo_ping(to, Duration::from_secs(2)).map(|()| true)
        })?;
    }
    let lab_ns: Vec<u64> = [Host::Client, Host::Lb, Host::Switch]
        .into_iter()
        .chain((1..=topo.chain.lab.backend_count()).map(Host::Backend))
        .map(|h| cpu::netns_inode(&topo.chain.lab.ns(h)))
        .collect();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    observer.started(&lab, spec);
    let mut rounds = Vec::new();
    'rounds: for index in 1..=spec.rounds {
        // Alternate which balancer goes first, so a drift in the machine's
        // load does not always favour the same one.
        let order = if index % 2 == 1 { [Path::Direct, Path::Xdp, Path::Proxy] } else { [Path::Direct, Path::Proxy, Path::Xdp] };
        let mut round = Round { index, ..Round::default() };
        for path in order {
            let target = match path {
                Path::Direct => direct,
                Path::Xdp => crate::lab::chain::ECHO_VIP,
                Path::Proxy => PROXY_ADDR,
            };
            let Some(leg) = run_leg(&mut topo, spec, index, path, target, proxy_pid, &lab_ns, cpus, stop)? else { break 'rounds };
            observer.leg(&leg);
            match path {
                Path::Direct => round.direct = leg,
                Path::Xdp => round.xdp = leg,
                Path::Proxy => round.proxy = leg,
            }
        }
        observer.round(&round);
        rounds.push(round);
    }
    topo.chain.lab.check_children().context("a lab process died during the comparison")?;
    topo.chain.stop()?;
    drop(config);
    Ok(CompareReport { lab, spec: spec.clone(), rounds, cpus })
}

/// The echo VIP as lb-user attach has it (backends, health checks), for
/// `lb-user proxy` on [`PROXY_ADDR`].
fn proxy_config(topo: &Topology) -> Result<crate::lab::config::ConfigFile> {
    let vip =
        Vip::new("echo", PROXY_ADDR.ip(), PROXY_ADDR.port()).backends(Topology::backend_ids(), ECHO_PORT, false).health_check(&topology::check().lb_user_tcp());
    LbConfig::new(&topo.chain.lab).maglev(251, Some(7)).extra("proxy: { drain_timeout: 1s }").vip(vip).write()
}

fn start_proxy(topo: &mut Topology, config: &FsPath) -> Result<u32> {
    let lab = &mut topo.chain.lab;
    sys::ip(&["-n", &lab.ns(Host::Lb), "addr", "add", &format!("{}/32", PROXY_ADDR.ip()), "dev", "lo"])?;
    let lb_user = workspace::binary("lb-user")?;
    let args = ["RUST_LOG=warn".to_owned(), lb_user.display().to_string(), "proxy".into(), "--config".into(), config.display().to_string()];
    lab.spawn(Host::Lb, "lb-user-proxy", FsPath::new("/usr/bin/env"), &args)
}

/// One path for one leg: the client simulator against `target`, the CPU
/// around it, the backend counters before and after. `None`: stopped.
#[allow(clippy::too_many_arguments)]
fn run_leg(
    topo: &mut Topology,
    spec: &CompareSpec,
    round: u32,
    path: Path,
    target: SocketAddr,
    proxy_pid: u32,
    lab_ns: &[u64],
    cpus: usize,
    stop: &Receiver<()>,
) -> Result<Option<Leg>> {
    let leg_len = spec.leg();
    let load = Load { tcp_target: target, ..spec.load.clone() };
    let before = sample::take(&topo.chain.lab, Duration::ZERO)?;
    let procs0 = cpu::Processes::read();
    let machine0 = cpu::MachineCpu::read()?;
    let t0 = Instant::now();
    let mut client = ClientSim::start(topo, &load, leg_len)?;
    let deadline = t0 + leg_len + Duration::from_secs(10);
    let mut stopped = false;
    while !client.finished() && Instant::now() < deadline {
        if stop.recv_timeout(Duration::from_millis(50)).is_ok() {
            stopped = true;
            break;
        }
    }
    let report = client.finish(Duration::ZERO)?;
    let secs = t0.elapsed().as_secs_f64();
    let machine1 = cpu::MachineCpu::read()?;
    let procs1 = cpu::Processes::read();
    if stopped {
        return Ok(None);
    }
    let after = sample::take(&topo.chain.lab, Duration::ZERO)?;
    let us_tick = cpu::us_per_tick();
    let mut exclude = procs1.tree(std::process::id());
    exclude.extend(procs1.by_pid.iter().filter(|(p, (pp, _, _))| **p == 2 || *pp == 2).map(|(p, _)| *p));
    let foreign = procs1.foreign_ticks_since(&procs0, lab_ns, &exclude);
    let busy = machine1.delta(&machine0).busy;
    let mut by_backend = BTreeMap::new();
    for id in Topology::backend_ids() {
        let (Some(a), Some(b)) = (after.backend_counts(id), before.backend_counts(id)) else {
            bail!("backend simulator be{id} did not answer its stats around the {path} leg of round {round}");
        };
        by_backend.insert(id, (a.accepted.saturating_sub(b.accepted), a.echo_lines.saturating_sub(b.echo_lines)));
    }
    let kinds = figures::kinds(&report);
    let real = kinds.iter().find(|k| k.kind == "real").or(kinds.first());
    let mut failed = BTreeMap::new();
    for k in &kinds {
        for (reason, n) in k.failed.iter().filter(|(_, n)| **n > 0) {
            *failed.entry(reason.clone()).or_insert(0) += n;
        }
    }
    Ok(Some(Leg {
        round,
        path: Some(path),
        secs,
        // Each simulated client is one connection; the backends' accepted
        // counts also hold both balancers' TCP health checks.
        conns: kinds.iter().map(|k| k.started).sum(),
        requests: by_backend.values().map(|(_, r)| r).sum(),
        by_backend,
        failed,
        p50_ms: real.map_or(0.0, |k| k.p50_ms),
        p99_ms: real.map_or(0.0, |k| k.p99_ms),
        machine_us: busy.saturating_sub(foreign) as f64 * us_tick,
        foreign_pct: foreign as f64 * us_tick / (secs * 1e6 * cpus as f64) * 100.0,
        proxy_us: procs1.ticks_since(&procs0, &procs1.tree(proxy_pid)) as f64 * us_tick,
    }))
}
