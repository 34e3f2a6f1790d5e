//! The whole two-tier chain in one value: a lab, an [`AlbTier`], and
//! `lb-user attach` in the lb namespace with two NAT VIPs —
//!
//! - the HTTPS VIP ([`TLS_VIP`]) → the albs on 8443 (TCP-connect checks),
//!   alb → the `lab-backend`s (alb's HTTP checks);
//! - the L4 VIP ([`L4_VIP`]) → the `lab-backend`s directly (HTTP checks);
//!
//! every check on the same [`Check`] schedule, and lb-user's Prometheus
//! endpoint at [`METRICS`] (in the lb namespace). Used by the fault tests
//! and `cargo xtask bench reliability --only soak`.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::{Context as _, Result};

use super::{
    addr,
    alb_tier::{AlbTier, TierSpec},
    config::{Check, ConfigFile, LbConfig, Vip},
    Host, Lab,
};
use crate::{http, lbuser::LbUser, metrics};

/// Clients reach the albs here (NAT to each alb's 8443).
pub const TLS_VIP: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 100, 2)), 443);
/// Clients reach the backends directly here (NAT to their 8080).
pub const L4_VIP: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 100, 1)), 80);
/// With [`ChainSpec::simulators`]: clients reach the backends' REQ/ACK echo
/// port directly here (NAT to their [`ECHO_PORT`], TCP-connect checks).
pub const ECHO_VIP: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 100, 1)), ECHO_PORT);
/// The backends' REQ/ACK echo port (docs/simulators.md), with [`ChainSpec::simulators`].
pub const ECHO_PORT: u16 = 9000;
/// The backends' control port (`GET /stats`, `POST /delay`, …), with [`ChainSpec::simulators`].
pub const CONTROL_PORT: u16 = 9001;
/// lb-user's metrics, on the lb's backend-side address.
pub const METRICS: SocketAddr = SocketAddr::new(IpAddr::V4(addr::LB_BACKEND_V4), 9189);

/// What to bring up.
#[derive(Clone, Debug)]
pub struct ChainSpec {
    /// Lab name prefix (a unique suffix is added).
    pub prefix: String,
    pub albs: u8,
    pub backends: u8,
    pub check: Check,
    /// lb-user's `attach_mode` (`None`: its default, auto).
    pub attach_mode: Option<String>,
    /// Extra environment for lb-user.
    pub lb_env: Vec<(String, String)>,
    /// `KEY=VALUE` environment for every alb.
    pub alb_env: Vec<String>,
    /// See [`TierSpec::admin_on_lab_address`].
    pub alb_admin_on_lab_address: bool,
    /// mTLS: the client certificate's common name (see [`TierSpec::mtls_client`]).
    pub mtls_client: Option<String>,
    /// Backends also run the simulator's REQ/ACK echo ([`ECHO_PORT`]) and
    /// control endpoint ([`CONTROL_PORT`]), and lb-user balances
    /// [`ECHO_VIP`] over the echo ports.
    pub simulators: bool,
}

impl ChainSpec {
    pub fn new(prefix: &str, albs: u8, backends: u8, check: Check) -> ChainSpec {
        ChainSpec {
            prefix: prefix.to_owned(),
            albs,
            backends,
            check,
            attach_mode: None,
            lb_env: Vec::new(),
            alb_env: Vec::new(),
            alb_admin_on_lab_address: false,
            mtls_client: None,
            simulators: false,
        }
    }
}

/// A running chain. Fields drop in order: lb-user detaches, the albs'
/// files go, then the lab (and every process in it).
pub struct Chain {
    pub lb: LbUser,
    pub tier: AlbTier,
    _config: ConfigFile,
    pub lab: Lab,
}

impl Chain {
    /// Lab, tier, config, attach; returns once every piece answers.
    pub fn up(spec: &ChainSpec) -> Result<Chain> {
        let mut lab = Lab::up_unique(&spec.prefix, spec.albs.saturating_add(spec.backends))?;
        if spec.simulators {
            let (echo, control) = (format!("0.0.0.0:{ECHO_PORT}"), format!("0.0.0.0:{CONTROL_PORT}"));
            lab.set_backend_args(&["--tcp-echo", &echo, "--control", &control]);
        }
        let mut tier_spec = TierSpec::new(spec.albs, spec.backends, spec.check);
        tier_spec.cert_ips.push(TLS_VIP.ip());
        tier_spec.env.clone_from(&spec.alb_env);
        tier_spec.admin_on_lab_address = spec.alb_admin_on_lab_address;
        tier_spec.mtls_client.clone_from(&spec.mtls_client);
        let tier = AlbTier::start(&mut lab, tier_spec)?;
        let mut config = LbConfig::new(&lab).maglev(251, Some(7)).metrics(METRICS);
        if let Some(mode) = &spec.attach_mode {
            config = config.extra(&format!("attach_mode: {mode}"));
        }
        let l4 = Vip::new("web", L4_VIP.ip(), L4_VIP.port())
            .backends(tier.backend_ids(), crate::backend::PORT, false)
            .health_check(&spec.check.lb_user_http("/health"));
        let mut config = config.vip(l4).vip(tier.vip("tls", TLS_VIP.ip(), TLS_VIP.port()));
        if spec.simulators {
            let echo = Vip::new("echo", ECHO_VIP.ip(), ECHO_VIP.port()).backends(tier.backend_ids(), ECHO_PORT, false).health_check(&spec.check.lb_user_tcp());
            config = config.vip(echo);
        }
        let config = config.write()?;
        let env: Vec<(&str, &str)> = spec.lb_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let lb = LbUser::attach_config_env(&lab.ns(Host::Lb), &lab.lb_client_iface(), config.path(), &env)?;
        let mut chain = Chain { lb, tier, _config: config, lab };
        // Both VIPs answer from the client before anything is measured.
        let tls = chain.tier.tls().clone();
        chain.lab.wait_until(Host::Client, &format!("https://{TLS_VIP}/ through XDP and alb"), Duration::from_secs(20), move || {
            http::get_tls(TLS_VIP, &tls, "/", Duration::from_secs(2)).map(|r| r.status == 200)
        })?;
        chain.lab.wait_until(Host::Client, &format!("http://{L4_VIP}/ through XDP"), Duration::from_secs(20), || {
            http::get(L4_VIP, "/", Duration::from_secs(2)).map(|r| r.status == 200)
        })?;
        Ok(chain)
    }

    /// Stops lb-user the way Ctrl-C does (it detaches and removes its pins;
    /// a failed exit is an error), then the albs and the lab.
    pub fn stop(self) -> Result<()> {
        let Chain { lb, tier, _config, mut lab } = self;
        lab.check_children()?;
        let status = lb.stop()?;
        drop(tier);
        drop(lab);
        if !status.success() {
            anyhow::bail!("lb-user attach exited with {status}");
        }
        Ok(())
    }

    /// lb-user's view of every backend of both VIPs, from its metrics
    /// (run it inside the lb namespace): `"<vip> <backend>"` → up.
    pub fn lb_user_health() -> Result<BTreeMap<String, bool>> {
        let samples = metrics::scrape(METRICS, Duration::from_secs(2))?;
        let mut out = BTreeMap::new();
        for (series, value) in samples.iter().filter(|(k, _)| k.starts_with("xdplb_backend_up{")) {
            let (vip, backend) = (metrics::label(series, "vip"), metrics::label(series, "backend"));
            let (Some(vip), Some(backend)) = (vip, backend) else { continue };
            out.insert(Chain::health_key(vip, backend), *value == 1.0);
        }
        Ok(out)
    }

    /// The key of [`Chain::lb_user_health`] for a backend of a VIP, both as
    /// lb-user labels them (`198.18.100.2:443/tcp`, `198.18.1.11:8443`).
    pub fn health_key(vip: &str, backend: &str) -> String {
        format!("{vip} {backend}")
    }

    /// The [`Chain::lb_user_health`] key of backend `id`'s echo port (behind [`ECHO_VIP`]).
    pub fn echo_key(id: u8) -> String {
        Chain::health_key(&format!("{ECHO_VIP}/tcp"), &SocketAddr::new(addr::backend_v4(id).into(), ECHO_PORT).to_string())
    }

    /// The [`Chain::lb_user_health`] key of alb `i`.
    pub fn alb_key(i: u8) -> String {
        Chain::health_key(&format!("{TLS_VIP}/tcp"), &AlbTier::addr(i).to_string())
    }

    /// One HTTPS request through the TLS VIP on a new connection; returns
    /// the answering backend's name (the caller runs it in the client namespace).
    pub fn tls_request(&self, timeout: Duration) -> impl Fn() -> Result<String> + Clone + Send + 'static {
        let tls = self.tier.tls().clone();
        move || ok_body(http::get_tls(TLS_VIP, &tls, "/", timeout)?)
    }

    /// One HTTP request through the L4 VIP on a new connection.
    pub fn l4_request(timeout: Duration) -> impl Fn() -> Result<String> + Clone + Send + 'static {
        move || ok_body(http::get(L4_VIP, "/", timeout)?)
    }
}

fn ok_body(r: http::Response) -> Result<String> {
    if r.status != 200 {
        anyhow::bail!("status {}: {}", r.status, r.body.trim());
    }
    Ok(r.body.trim().to_owned())
}

/// Resident memory of process `pid` in KiB (VmRSS of /proc/PID/status).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:")).with_context(|| format!("no VmRSS in {path}"))?;
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).with_context(|| format!("bad VmRSS line {line:?}"))
}
