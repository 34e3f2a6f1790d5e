//! Raw config → validated [`Config`]: every rule of `docs/config.md`.

use super::backends::{backend, backend_in_vip, capacity};
use super::limits::*;
use super::raw::*;
use super::*;
use lb_common::userspace::duration::{parse_duration, show};
use std::collections::HashMap;
use std::ops::RangeInclusive;

/// Collects field errors.
pub(super) struct Check {
    pub(super) errors: Vec<FieldError>,
}

impl Check {
    pub(super) fn new() -> Check {
        Check { errors: Vec::new() }
    }

    pub(super) fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError { path: path.into(), message: message.into() });
    }

    /// `value` as u32 within `range`, or an error naming both.
    pub(super) fn int(&mut self, path: &str, value: i64, range: RangeInclusive<u32>, what: &str) -> Option<u32> {
        match u32::try_from(value) {
            Ok(v) if range.contains(&v) => Some(v),
            _ => {
                self.err(path, format!("{value} is out of range; {what} must be {}..={}", range.start(), range.end()));
                None
            }
        }
    }

    pub(super) fn port(&mut self, path: &str, value: Option<i64>) -> Option<u16> {
        match value {
            None => {
                self.err(path, "missing; give a port number 1..=65535");
                None
            }
            Some(v) => self.int(path, v, 1..=65535, "a port").map(|p| p as u16),
        }
    }

    fn duration(&mut self, path: &str, raw: Option<&RawDuration>, default: Duration) -> Option<Duration> {
        match raw {
            None => Some(default),
            Some(RawDuration(text)) => match parse_duration(text) {
                Ok(d) => Some(d),
                Err(msg) => {
                    self.err(path, msg);
                    None
                }
            },
        }
    }

    pub(super) fn duration_in(&mut self, path: &str, raw: Option<&RawDuration>, default: Duration, range: RangeInclusive<Duration>) -> Option<Duration> {
        let d = self.duration(path, raw, default)?;
        if range.contains(&d) {
            Some(d)
        } else {
            let text = raw.map_or_else(|| show(d), |r| r.0.clone());
            self.err(path, format!("{text:?} is out of range; allowed {}..={}", show(*range.start()), show(*range.end())));
            None
        }
    }

    pub(super) fn ip(&mut self, path: &str, raw: Option<&String>, what: &str) -> Option<IpAddr> {
        let Some(text) = raw else {
            self.err(path, format!("missing; give the {what}'s IPv4 or IPv6 address"));
            return None;
        };
        match text.trim().parse::<IpAddr>() {
            Ok(a) if a.is_unspecified() || a.is_multicast() => {
                self.err(path, format!("{text:?} cannot be a {what} address (unspecified or multicast); give a unicast IPv4 or IPv6 address"));
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                self.err(path, format!("{text:?} is not an IP address; give an IPv4 (198.18.100.1) or IPv6 (fd00:198:18:100::1) address"));
                None
            }
        }
    }
}

pub(super) fn validate(raw: RawConfig) -> Result<Config, Vec<FieldError>> {
    let mut c = Check::new();

    let interfaces = interfaces(&mut c, raw.interfaces.as_deref());
    let attach_mode = match raw.attach_mode {
        None | Some(RawAttachMode::Auto) => AttachMode::Auto,
        Some(RawAttachMode::Native) => AttachMode::Native,
        Some(RawAttachMode::Skb) => AttachMode::Skb,
    };
    let maglev = maglev(&mut c, raw.maglev.as_ref());
    let conntrack = conntrack(&mut c, raw.conntrack.as_ref());
    let allowlist = raw.allowlist.as_ref().and_then(|a| allowlist(&mut c, a));
    let vips = vips(&mut c, raw.vips.as_deref());
    if let (Some(m), Some(vips)) = (&maglev, &vips) {
        capacity(&mut c, m, vips);
    }
    let metrics = raw.metrics.as_ref().and_then(|m| super::listen::metrics(&mut c, m));
    let api = raw.api.as_ref().and_then(|a| super::listen::api(&mut c, a));
    let proxy = proxy(&mut c, raw.proxy.as_ref());
    let group = raw.group.as_ref().and_then(|g| super::group::group(&mut c, g));

    match (interfaces, maglev, conntrack, vips, proxy) {
        (Some(interfaces), Some(maglev), Some(conntrack), Some(vips), Some(proxy)) if c.errors.is_empty() => {
            Ok(Config { interfaces, attach_mode, maglev, conntrack, allowlist, vips, metrics, api, proxy, group })
        }
        _ => {
            debug_assert!(!c.errors.is_empty());
            if c.errors.is_empty() {
                c.err(".", "invalid configuration");
            }
            Err(c.errors)
        }
    }
}

fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && !name.chars().any(|ch| ch == '/' || ch == ':' || ch.is_whitespace() || ch.is_control())
}

fn interfaces(c: &mut Check, raw: Option<&[RawInterface]>) -> Option<Vec<Interface>> {
    let raw = match raw {
        None | Some([]) => {
            c.err("interfaces", "needs at least one interface, e.g. `interfaces: [{ name: eth0, role: client }]`");
            return None;
        }
        Some(r) => r,
    };
    let before = c.errors.len();
    let mut out = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, r) in raw.iter().enumerate() {
        let path = format!("interfaces[{i}].name");
        let Some(name) = r.name.as_deref() else {
            c.err(path, "missing; give the interface name, e.g. eth0");
            continue;
        };
        if !valid_ifname(name) {
            c.err(path, format!("{name:?} is not a valid interface name (1..={IFNAME_MAX} characters, no '/', ':' or spaces)"));
            continue;
        }
        if let Some(first) = seen.insert(name, i) {
            c.err(path, format!("{name:?} is already listed as interfaces[{first}]; list each interface once"));
            continue;
        }
        out.push(Interface { name: name.to_owned(), role: r.role.unwrap_or_default() });
    }
    if c.errors.len() == before && !out.iter().any(|i| i.role == InterfaceRole::Client) {
        c.err("interfaces", "no interface has role client, so no VIP traffic would be balanced; set `role: client` on at least one");
    }
    (c.errors.len() == before).then_some(out)
}

fn maglev(c: &mut Check, raw: Option<&RawMaglev>) -> Option<MaglevConfig> {
    let d = MaglevConfig::default();
    let Some(raw) = raw else { return Some(d) };
    let size = match raw.size {
        None => Some(d.size),
        Some(v) => match c.int("maglev.size", v, MAGLEV_SIZE_MIN..=MAGLEV_SIZE_MAX, "the Maglev table size") {
            Some(s) if !lb_common::userspace::select::maglev::is_prime(s) => {
                c.err("maglev.size", format!("{s} is not a prime number; Maglev needs a prime size in {MAGLEV_SIZE_MIN}..={MAGLEV_SIZE_MAX}, e.g. 65537"));
                None
            }
            s => s,
        },
    };
    let seed = match raw.seed {
        None => Some(0),
        Some(v) => c.int("maglev.seed", v, 0..=u32::MAX, "the seed"),
    };
    Some(MaglevConfig { size: size?, seed: seed? })
}

fn conntrack(c: &mut Check, raw: Option<&RawConntrack>) -> Option<ConntrackConfig> {
    let d = ConntrackConfig::default();
    let Some(raw) = raw else { return Some(d) };
    let max_flows = match raw.max_flows {
        None => Some(d.max_flows),
        Some(v) => c.int("conntrack.max_flows", v, MAX_FLOWS_MIN..=MAX_FLOWS_MAX, "max_flows"),
    };
    let timeout = |c: &mut Check, path: &str, raw: Option<&RawDuration>, default: Duration| {
        let t = c.duration_in(path, raw, default, Duration::from_secs(1)..=CONNTRACK_TIMEOUT_MAX)?;
        if t.subsec_nanos() != 0 {
            c.err(path, format!("{:?} is not a whole number of seconds; conntrack timeouts are kept in seconds", raw.map_or("", |r| &r.0)));
            return None;
        }
        Some(t)
    };
    let tcp_timeout = timeout(c, "conntrack.tcp_timeout", raw.tcp_timeout.as_ref(), d.tcp_timeout);
    let udp_timeout = timeout(c, "conntrack.udp_timeout", raw.udp_timeout.as_ref(), d.udp_timeout);
    let drain_timeout = c.duration_in("conntrack.drain_timeout", raw.drain_timeout.as_ref(), d.drain_timeout, Duration::ZERO..=CONNTRACK_TIMEOUT_MAX);
    Some(ConntrackConfig { max_flows: max_flows?, tcp_timeout: tcp_timeout?, udp_timeout: udp_timeout?, drain_timeout: drain_timeout? })
}

fn allowlist(c: &mut Check, raw: &RawAllowlist) -> Option<Allowlist> {
    use lb_common::userspace::allowlist::{parse_ports, parse_sources, PortEntry, Problem};
    let mut report = |field: &str, problems: Vec<Problem>| {
        for p in problems {
            let path = p.index.map_or_else(|| field.to_owned(), |i| format!("{field}[{i}]"));
            c.err(path, p.message);
        }
    };
    let sources = match raw.cidrs.as_deref() {
        None => {
            report(
                "allowlist.cidrs",
                vec![Problem {
                    index: None,
                    message:
                        "needs at least one source network, e.g. [\"198.18.0.0/24\"] (use 0.0.0.0/0 and ::/0 to allow every source, or drop the allowlist)"
                            .into(),
                }],
            );
            None
        }
        Some(list) => parse_sources(list).map_err(|p| report("allowlist.cidrs", p)).ok(),
    };
    let ports = match raw.ports.as_deref() {
        None => Some(AllowedPorts::Any),
        Some(list) => {
            let entries: Vec<PortEntry<'_>> = list
                .iter()
                .map(|p| match p {
                    RawPort::Number(n) => PortEntry::Number(*n),
                    RawPort::Text(t) => PortEntry::Text(t),
                })
                .collect();
            parse_ports(&entries).map_err(|p| report("allowlist.ports", p)).ok()
        }
    };
    Some(Allowlist { rules: lb_common::userspace::allowlist::Allowlist { sources: sources?, ports: ports? }, scope: raw.scope.unwrap_or_default() })
}

fn valid_vip_name(name: &str) -> bool {
    (1..=VIP_NAME_MAX).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn vips(c: &mut Check, raw: Option<&[RawVip]>) -> Option<Vec<Vip>> {
    let raw = match raw {
        None | Some([]) => {
            c.err("vips", "needs at least one VIP (name, address, port, backends)");
            return None;
        }
        Some(r) => r,
    };
    let before = c.errors.len();
    if raw.len() > MAX_VIPS as usize {
        c.err("vips", format!("has {} VIPs; at most {MAX_VIPS} are supported", raw.len()));
    }
    let mut out = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut keys: HashMap<(IpAddr, u16, Protocol), usize> = HashMap::new();
    for (i, r) in raw.iter().enumerate() {
        let Some(v) = vip(c, i, r) else { continue };
        if let Some(first) = names.insert(v.name.clone(), i) {
            c.err(format!("vips[{i}].name"), format!("{:?} is already used by vips[{first}]; VIP names must be unique", v.name));
        }
        if let Some(first) = keys.insert((v.address, v.port, v.protocol), i) {
            c.err(
                format!("vips[{i}]"),
                format!(
                    "{}/{} is already served by vips[{first}] ({}); (address, port, protocol) must be unique",
                    v.socket_addr(),
                    v.protocol,
                    raw_name(&raw[first])
                ),
            );
        }
        out.push(v);
    }
    (c.errors.len() == before).then_some(out)
}

fn raw_name(v: &RawVip) -> &str {
    v.name.as_deref().unwrap_or("?")
}

fn vip(c: &mut Check, i: usize, r: &RawVip) -> Option<Vip> {
    let before = c.errors.len();
    let p = |field: &str| format!("vips[{i}].{field}");
    let name = match r.name.as_deref() {
        None => {
            c.err(p("name"), "missing; give a name of 1..=32 characters from a-z, 0-9, '_' and '-'");
            None
        }
        Some(n) if !valid_vip_name(n) => {
            c.err(p("name"), format!("{n:?} is not a valid name; use 1..=32 characters from a-z, 0-9, '_' and '-'"));
            None
        }
        Some(n) => Some(n.to_owned()),
    };
    let address = c.ip(&p("address"), r.address.as_ref(), "VIP");
    let port = c.port(&p("port"), r.port);
    let protocol = r.protocol.unwrap_or_default();
    let algorithm = r.algorithm.unwrap_or_default();
    let forwarding = r.forwarding.unwrap_or_default();
    let backends = match r.backends.as_deref() {
        None | Some([]) => {
            c.err(p("backends"), "needs at least one backend, e.g. [{ address: 198.18.1.11, port: 8080 }]");
            None
        }
        Some(list) => {
            let mut out = Vec::new();
            let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
            for (j, b) in list.iter().enumerate() {
                let bp = format!("vips[{i}].backends[{j}]");
                let Some(b) = backend(c, &bp, b, algorithm) else { continue };
                if let Some(first) = seen.insert(b.socket_addr(), j) {
                    c.err(bp.clone(), format!("{} is already listed as backends[{first}]; list each backend once", b.socket_addr()));
                }
                backend_in_vip(c, &bp, &b, address, port, forwarding);
                out.push(b);
            }
            Some(out)
        }
    };
    let health_check = r.health_check.as_ref().and_then(|h| health_check(c, i, h));
    if c.errors.len() != before {
        return None;
    }
    Some(Vip { name: name?, address: address?, port: port?, protocol, algorithm, forwarding, backends: backends?, health_check })
}

fn health_check(c: &mut Check, i: usize, r: &RawHealthCheck) -> Option<HealthCheck> {
    let before = c.errors.len();
    let p = |field: &str| format!("vips[{i}].health_check.{field}");
    let kind = match r.kind.unwrap_or(RawCheckType::Tcp) {
        RawCheckType::Tcp => {
            if let Some(path) = &r.path {
                c.err(p("path"), format!("{path:?} is only used by type: http; drop it or set type: http"));
            }
            if let Some(s) = r.expect_status {
                c.err(p("expect_status"), format!("{s} is only used by type: http; drop it or set type: http"));
            }
            Some(HealthCheckKind::Tcp)
        }
        RawCheckType::Http => {
            let path = r.path.clone().unwrap_or_else(|| "/".to_owned());
            let path_ok = path.starts_with('/') && !path.chars().any(|ch| ch.is_whitespace() || ch.is_control());
            if !path_ok {
                c.err(p("path"), format!("{path:?} is not a request path; it must start with '/' and contain no spaces, e.g. /health"));
            }
            let status = match r.expect_status {
                None => Some(200),
                Some(s) => c.int(&p("expect_status"), s, 100..=599, "an HTTP status"),
            };
            match (path_ok, status) {
                (true, Some(s)) => Some(HealthCheckKind::Http { path, expect_status: s as u16 }),
                _ => None,
            }
        }
    };
    let interval = c.duration_in(&p("interval"), r.interval.as_ref(), DEFAULT_CHECK_INTERVAL, CHECK_INTERVAL_MIN..=CHECK_INTERVAL_MAX);
    let timeout = c.duration(&p("timeout"), r.timeout.as_ref(), DEFAULT_CHECK_TIMEOUT);
    if let Some(t) = timeout {
        let text = r.timeout.as_ref().map_or_else(|| show(t), |r| r.0.clone());
        if t.is_zero() {
            c.err(p("timeout"), format!("{text:?} must be greater than zero"));
        } else if let Some(iv) = interval {
            if t >= iv {
                c.err(p("timeout"), format!("{text:?} must be less than the interval ({})", show(iv)));
            }
        }
    }
    let rise = match r.rise {
        None => Some(DEFAULT_RISE),
        Some(v) => c.int(&p("rise"), v, 1..=RISE_FALL_MAX, "rise"),
    };
    let fall = match r.fall {
        None => Some(DEFAULT_FALL),
        Some(v) => c.int(&p("fall"), v, 1..=RISE_FALL_MAX, "fall"),
    };
    if c.errors.len() != before {
        return None;
    }
    Some(HealthCheck { kind: kind?, interval: interval?, timeout: timeout?, rise: rise?, fall: fall? })
}

fn proxy(c: &mut Check, raw: Option<&RawProxy>) -> Option<ProxyConfig> {
    let d = ProxyConfig::default();
    let Some(raw) = raw else { return Some(d) };
    let max_conns_per_ip = match raw.max_conns_per_ip {
        None => Some(0),
        Some(v) => c.int("proxy.max_conns_per_ip", v, 0..=u32::MAX, "max_conns_per_ip (0 = unlimited)"),
    };
    let max_new = match raw.max_new_conns_per_minute {
        None => Some(0),
        Some(v) => c.int("proxy.max_new_conns_per_minute", v, 0..=u32::MAX, "max_new_conns_per_minute (0 = unlimited)"),
    };
    let drain_timeout = c.duration_in("proxy.drain_timeout", raw.drain_timeout.as_ref(), d.drain_timeout, Duration::ZERO..=DRAIN_TIMEOUT_MAX);
    let copy = raw.copy.unwrap_or_default();
    let runtime = raw.runtime.unwrap_or_default();
    Some(ProxyConfig { max_conns_per_ip: max_conns_per_ip?, max_new_conns_per_minute: max_new?, drain_timeout: drain_timeout?, copy, runtime })
}
