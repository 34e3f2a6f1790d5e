//! The demo's two-tier system, on [`Chain`]: two albs requiring mTLS (the
//! client's verified subject passed on as `X-Client-Identity`), each
//! balancing the same three backend simulators (`lab-backend` with its
//! REQ/ACK echo and control port); lb-user attached with the HTTPS VIP →
//! albs, the HTTP L4 VIP and the echo VIP → the backends.
//!
//! ```text
//!  client ── lb (XDP) ── bridge ─┬─ be1: alb1 :8443 ──┐  mTLS required
//!   198.18.100.2:443  → albs     ├─ be2: alb2 :8443 ──┤
//!   198.18.100.1:9000 → echo     ├─ be3: lab-backend ◄┤  :8080 http, :9000 echo,
//!   198.18.100.1:80   → http     ├─ be4: lab-backend ◄┤  :9001 control
//!                                └─ be5: lab-backend ◄┘
//! ```

use std::{
    net::{SocketAddr, TcpStream},
    ops::RangeInclusive,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    http,
    lab::{
        addr,
        alb_tier::AlbTier,
        chain::{Chain, ChainSpec, CONTROL_PORT, ECHO_VIP},
        config::Check,
        Host,
    },
};

/// alb instances (backend namespaces 1 and 2).
pub const ALBS: u8 = 2;
/// Backend simulators behind every alb and the L4 VIPs (namespaces 3..=5).
pub const BACKENDS: u8 = 3;
/// The common name of the client certificate the client simulator presents.
pub const CLIENT_CN: &str = "lab-client";

/// The health-check schedule of both tiers: short, so a 30 s demo shows a
/// backend leave and come back (removal within ~1.25 s, return within ~1.25 s).
pub fn check() -> Check {
    Check { interval: Duration::from_millis(500), timeout: Duration::from_millis(250), rise: 2, fall: 2 }
}

/// The running system.
pub struct Topology {
    pub chain: Chain,
}

impl Topology {
    /// Brings everything up and waits until the HTTPS, HTTP and echo VIPs
    /// answer from the client.
    pub fn up(prefix: &str, attach_mode: Option<String>) -> Result<Topology> {
        let mut spec = ChainSpec::new(prefix, ALBS, BACKENDS, check());
        spec.attach_mode = attach_mode;
        spec.mtls_client = Some(CLIENT_CN.to_owned());
        spec.simulators = true;
        let mut chain = Chain::up(&spec)?;
        chain.lab.wait_until(Host::Client, &format!("REQ/ACK echo through {ECHO_VIP}"), Duration::from_secs(20), || {
            echo_ping(ECHO_VIP, Duration::from_secs(2)).map(|()| true)
        })?;
        Ok(Topology { chain })
    }

    /// Backend namespaces holding a simulator.
    pub fn backend_ids() -> RangeInclusive<u8> {
        ALBS + 1..=ALBS + BACKENDS
    }

    /// alb ids (= their backend namespaces).
    pub fn alb_ids() -> RangeInclusive<u8> {
        1..=ALBS
    }

    /// Simulator `id`'s control endpoint (reachable from the lb namespace).
    pub fn control_addr(id: u8) -> SocketAddr {
        SocketAddr::new(addr::backend_v4(id).into(), CONTROL_PORT)
    }

    /// The name a lab address answers as: `albN` for an alb's, `beN` for a
    /// backend's (any port), else the address itself.
    pub fn host_name(address: &str) -> String {
        let address = address.trim_start_matches("http://");
        let ip = address.parse::<SocketAddr>().map(|a| a.ip()).or_else(|_| address.parse());
        for i in 1..=ALBS + BACKENDS {
            if ip.as_ref().is_ok_and(|ip| *ip == std::net::IpAddr::from(addr::backend_v4(i))) {
                return if i <= ALBS { format!("alb{i}") } else { format!("be{i}") };
            }
        }
        address.to_owned()
    }

    /// `POST path` with `body` to simulator `id`'s control endpoint.
    pub fn set_knob(&self, id: u8, path: &str, body: &str) -> Result<()> {
        let (addr, path_owned, body_owned) = (Topology::control_addr(id), path.to_owned(), body.to_owned());
        let r = crate::netns::run_in(&self.chain.lab.ns(Host::Lb), move || http::post_json(addr, &path_owned, &body_owned, Duration::from_secs(2)))?;
        if r.status != 200 {
            bail!("be{id} control {path} {body}: {} {}", r.status, r.body.trim());
        }
        Ok(())
    }

    pub fn kill_backend(&mut self, id: u8) -> Result<()> {
        self.chain.lab.stop_backend(id)
    }

    pub fn start_backend(&mut self, id: u8) -> Result<()> {
        self.chain.lab.start_backend(id)
    }

    pub fn kill_alb(&mut self, i: u8) -> Result<()> {
        self.chain.tier.kill9(&mut self.chain.lab, i)
    }

    pub fn start_alb(&mut self, i: u8) -> Result<()> {
        let Chain { tier, lab, .. } = &mut self.chain;
        tier.restart(lab, i)
    }

    /// The client certificate files and the identity alb passes on for them.
    pub fn client_identity(&self) -> Result<(std::path::PathBuf, std::path::PathBuf, String)> {
        let tier: &AlbTier = &self.chain.tier;
        let (cert, key) = tier.client_cert().context("the demo tier runs with mTLS")?;
        Ok((cert.to_owned(), key.to_owned(), tier.client_identity().context("the demo tier runs with mTLS")?))
    }
}

/// One `PING` → `PONG` on a new connection to a REQ/ACK echo.
pub fn echo_ping(to: SocketAddr, timeout: Duration) -> Result<()> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = TcpStream::connect_timeout(&to, timeout).with_context(|| format!("connecting to {to}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(b"PING\n")?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).with_context(|| format!("reading from {to}"))?;
    if line.trim_end() != "PONG" {
        bail!("{to} answered {line:?} to PING");
    }
    Ok(())
}
