//! lb-user YAML configs for the lab: the lb's two interfaces, VIPs with the
//! lab's backends, and top-level extras, written to a temporary file that is
//! removed on drop.
//!
//! ```no_run
//! # use xdplb_tests::lab::{Lab, config::{LbConfig, Vip}};
//! # let lab = Lab::up_unique("xt", 3).unwrap();
//! let file = LbConfig::new(&lab)
//!     .maglev(251, Some(7))
//!     .vip(Vip::new("web", "198.18.100.1", 80).backends(1..=3, 8080, false))
//!     .write()
//!     .unwrap();
//! ```

use std::{
    fmt::{Display, Write as _},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{Context as _, Result};

use super::{addr, Lab};
use crate::sys;

/// A whole lb-user config.
#[derive(Clone, Debug)]
pub struct LbConfig {
    client_iface: String,
    /// None for a one-armed node (VIP traffic and backends on one link).
    backend_iface: Option<String>,
    /// Top-level blocks (`maglev`, `allowlist`, `metrics`, extras), each
    /// ending in a newline.
    top: Vec<String>,
    vips: Vec<Vip>,
}

/// One entry of `vips:`.
#[derive(Clone, Debug)]
pub struct Vip {
    name: String,
    address: String,
    port: u16,
    /// `(key, value)` lines such as `("forwarding", "dsr")`, in call order.
    keys: Vec<(&'static str, String)>,
    /// Lines under the VIP, indented, each ending in a newline.
    extra: String,
    /// Each with the `mac` to configure, if any.
    /// Address, `mac`, `weight` (lb-user's defaults when None).
    backends: Vec<(SocketAddr, Option<[u8; 6]>, Option<u32>)>,
}

impl LbConfig {
    /// The lab's lb: its client-side interface (where the program attaches)
    /// and its backend-side one.
    pub fn new(lab: &Lab) -> LbConfig {
        LbConfig::with_interfaces(&lab.lb_client_iface(), &lab.lb_backend_iface())
    }

    /// A config for any two interfaces (`client` and `backend` roles).
    pub fn with_interfaces(client: &str, backend: &str) -> LbConfig {
        LbConfig { client_iface: client.to_owned(), backend_iface: Some(backend.to_owned()), top: Vec::new(), vips: Vec::new() }
    }

    /// A one-armed config: VIP traffic arrives on `iface` and DSR sends it
    /// back out of it (a scale-out LB node on the fabric segment).
    pub fn one_armed(iface: &str) -> LbConfig {
        LbConfig { client_iface: iface.to_owned(), backend_iface: None, top: Vec::new(), vips: Vec::new() }
    }

    /// `maglev: { size, seed }` (no seed: lb-user's default).
    pub fn maglev(self, size: u32, seed: Option<u32>) -> LbConfig {
        let seed = seed.map(|s| format!(", seed: {s}")).unwrap_or_default();
        self.extra(&format!("maglev: {{ size: {size}{seed} }}"))
    }

    /// `allowlist:` of these client prefixes on these VIP ports.
    pub fn allowlist(self, cidrs: &[&str], ports: &[u16]) -> LbConfig {
        let cidrs: Vec<String> = cidrs.iter().map(|c| format!("{c:?}")).collect();
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        self.extra(&format!("allowlist:\n  cidrs: [{}]\n  ports: [{}]", cidrs.join(", "), ports.join(", ")))
    }

    /// `metrics: { listen }`: lb-user serves Prometheus metrics there.
    pub fn metrics(self, listen: SocketAddr) -> LbConfig {
        self.extra(&format!("metrics: {{ listen: \"{listen}\" }}"))
    }

    /// `api: { listen }`: lb-user serves its control API there (in the lb's
    /// namespace, so loopback addresses of different labs do not meet).
    pub fn api(self, listen: SocketAddr) -> LbConfig {
        self.extra(&format!("api: {{ listen: \"{listen}\" }}"))
    }

    /// Any other top-level YAML, as written.
    pub fn extra(mut self, yaml: &str) -> LbConfig {
        self.top.push(format!("{}\n", yaml.trim_end_matches('\n')));
        self
    }

    pub fn vip(mut self, vip: Vip) -> LbConfig {
        self.vips.push(vip);
        self
    }

    /// The config as YAML.
    pub fn yaml(&self) -> String {
        let mut out = format!("interfaces:\n  - {{ name: {}, role: client }}\n", self.client_iface);
        if let Some(backend) = &self.backend_iface {
            let _ = writeln!(out, "  - {{ name: {backend}, role: backend }}");
        }
        for block in &self.top {
            out.push_str(block);
        }
        if !self.vips.is_empty() {
            out.push_str("vips:\n");
            for vip in &self.vips {
                vip.write_yaml(&mut out);
            }
        }
        out
    }

    /// Writes the YAML to a fresh file in the system temp directory.
    pub fn write(&self) -> Result<ConfigFile> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!("xdplb-{}-{}-{}.yaml", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed), self.client_iface);
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, self.yaml()).with_context(|| format!("writing {}", path.display()))?;
        Ok(ConfigFile(path))
    }
}

impl Vip {
    /// A VIP without backends; `protocol`, `algorithm` and `forwarding` are
    /// lb-user's defaults (tcp, maglev, nat) until set.
    pub fn new(name: &str, address: impl Display, port: u16) -> Vip {
        Vip { name: name.to_owned(), address: address.to_string(), port, keys: Vec::new(), extra: String::new(), backends: Vec::new() }
    }

    /// `tcp` or `udp`.
    pub fn protocol(self, protocol: &str) -> Vip {
        self.key("protocol", protocol)
    }

    /// `maglev`, `maglev_src` or `round_robin`.
    pub fn algorithm(self, algorithm: &str) -> Vip {
        self.key("algorithm", algorithm)
    }

    /// `nat` or `dsr`.
    pub fn forwarding(self, forwarding: &str) -> Vip {
        self.key("forwarding", forwarding)
    }

    /// `health_check:` as a YAML flow mapping, e.g.
    /// `{ type: tcp, interval: 200ms, timeout: 100ms, rise: 1, fall: 1 }`.
    pub fn health_check(self, flow: &str) -> Vip {
        self.extra(&format!("health_check: {flow}"))
    }

    /// More keys of the VIP, as written at the VIP's indentation.
    pub fn extra(mut self, yaml: &str) -> Vip {
        for line in yaml.lines() {
            let _ = writeln!(self.extra, "    {line}");
        }
        self
    }

    /// Lab backends `ids` (1-based) on `port`, over IPv6 if `v6`.
    pub fn backends(mut self, ids: impl IntoIterator<Item = u8>, port: u16, v6: bool) -> Vip {
        for i in ids {
            let ip = if v6 { addr::backend_v6(i).into() } else { addr::backend_v4(i).into() };
            self.backends.push((SocketAddr::new(ip, port), None, None));
        }
        self
    }

    /// One backend at any address.
    pub fn backend(mut self, addr: SocketAddr) -> Vip {
        self.backends.push((addr, None, None));
        self
    }

    /// One backend at any address with a `weight`.
    pub fn backend_weighted(mut self, addr: SocketAddr, weight: u32) -> Vip {
        self.backends.push((addr, None, Some(weight)));
        self
    }

    /// One backend with a configured `mac` (DSR's next hop for it).
    pub fn backend_with_mac(mut self, addr: SocketAddr, mac: [u8; 6]) -> Vip {
        self.backends.push((addr, Some(mac), None));
        self
    }

    fn key(mut self, key: &'static str, value: &str) -> Vip {
        self.keys.push((key, value.to_owned()));
        self
    }

    fn write_yaml(&self, out: &mut String) {
        let _ = writeln!(out, "  - name: {}\n    address: \"{}\"\n    port: {}", self.name, self.address, self.port);
        for (key, value) in &self.keys {
            let _ = writeln!(out, "    {key}: {value}");
        }
        out.push_str(&self.extra);
        out.push_str("    backends:\n");
        for (b, mac, weight) in &self.backends {
            let mac = mac.map(|m| format!(", mac: \"{}\"", m.map(|x| format!("{x:02x}")).join(":"))).unwrap_or_default();
            let weight = weight.map(|w| format!(", weight: {w}")).unwrap_or_default();
            let _ = writeln!(out, "      - {{ address: \"{}\", port: {}{mac}{weight} }}", b.ip(), b.port());
        }
    }
}

/// Health-check timing, written the same way into lb-user's `health_check`
/// and alb's `health`, so both tiers of a lab check on one schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl Check {
    /// lb-user's TCP-connect check, as a YAML flow mapping for [`Vip::health_check`].
    pub fn lb_user_tcp(&self) -> String {
        format!("{{ type: tcp, {} }}", self.timing())
    }

    /// lb-user's HTTP check of `GET path` expecting 200.
    pub fn lb_user_http(&self, path: &str) -> String {
        format!("{{ type: http, path: {path}, expect_status: 200, {} }}", self.timing())
    }

    /// alb's `health:` section (`GET path` expecting 200), as a flow mapping.
    pub fn alb(&self, path: &str) -> String {
        format!("{{ enabled: true, path: {path}, expected_status: 200, {} }}", self.timing())
    }

    /// The longest a dead backend can stay in: `fall` failed checks, the
    /// last of which may take its whole timeout (a check that was already
    /// under way when the backend died still passes).
    pub fn removal_bound(&self) -> Duration {
        self.interval * self.fall + self.timeout
    }

    /// The longest a recovered backend can stay out: `rise` good checks,
    /// the first as much as an interval away.
    pub fn return_bound(&self) -> Duration {
        self.interval * self.rise + self.timeout
    }

    fn timing(&self) -> String {
        format!("interval: {}, timeout: {}, rise: {}, fall: {}", ms(self.interval), ms(self.timeout), self.rise, self.fall)
    }
}

/// A written config file, removed on drop.
#[derive(Debug)]
pub struct ConfigFile(PathBuf);

impl ConfigFile {
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Replaces the file's contents atomically, so a watching lb-user never
    /// reads it half-written.
    pub fn replace(&self, yaml: &str) -> Result<()> {
        sys::write_atomic(&self.0, yaml)
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
