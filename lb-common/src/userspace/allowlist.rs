//! The one allowlist: which client sources and which destination ports may
//! reach a balancer. lb-user writes it into the XDP program's LPM tries and
//! checks it in `lb-user proxy`; alb checks it right after `accept()`.
//!
//! One rule set for every config that has an allowlist:
//! - A source entry is a network (`198.18.0.0/24`, `fd00:198:18::/64`) or a
//!   bare address, which means that one host (`/32` or `/128`).
//! - A network with host bits set (`198.18.0.1/24`) is an error that
//!   suggests the network (`198.18.0.0/24`): it is nearly always a typo, and
//!   silently widening or narrowing it would admit the wrong clients.
//! - An empty source list is an error. Allowing everyone is spelled out as
//!   `0.0.0.0/0` and `::/0` (or by having no allowlist at all), so a list
//!   emptied by mistake never opens the door.
//! - Ports are numbers 1..=65535; `"*"` in the list means any port (the
//!   seed's alb file writes `[80, 443, "*"]`); the other entries must still
//!   be valid ports, so a typo next to the `"*"` is caught. An empty port
//!   list is an error for the same reason as an empty source list.
//! - An IPv4 client seen as `::ffff:a.b.c.d` on a dual-stack socket is
//!   matched against the IPv4 networks.

use std::net::IpAddr;

use ipnet::IpNet;

/// One problem with an allowlist entry: `index` is the entry's position in
/// its list (`None`: the list as a whole), `message` says what is wrong and
/// how to write it instead. The caller adds the field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub index: Option<usize>,
    pub message: String,
}

impl Problem {
    fn whole(message: impl Into<String>) -> Problem {
        Problem { index: None, message: message.into() }
    }
    fn at(index: usize, message: impl Into<String>) -> Problem {
        Problem { index: Some(index), message: message.into() }
    }
}

/// Parses one source entry: a CIDR without host bits, or a bare address.
pub fn parse_source(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    if let Ok(addr) = t.parse::<IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    match t.parse::<IpNet>() {
        Err(_) => Err(format!("{text:?} is not an address or network; write e.g. \"198.18.0.0/24\", \"198.18.0.7\" or \"fd00:198:18::/64\"")),
        Ok(net) if net.trunc() != net => Err(format!("{text:?} has host bits set; did you mean \"{}\"?", net.trunc())),
        Ok(net) => Ok(net),
    }
}

/// Parses a source list (see the module rules); every problem is reported.
pub fn parse_sources(list: &[String]) -> Result<Vec<IpNet>, Vec<Problem>> {
    if list.is_empty() {
        return Err(vec![Problem::whole("is empty: list the allowed source networks, e.g. [\"198.18.0.0/24\"] (0.0.0.0/0 and ::/0 allow every source)")]);
    }
    let mut nets = Vec::new();
    let mut problems = Vec::new();
    for (i, text) in list.iter().enumerate() {
        match parse_source(text) {
            Ok(net) => nets.push(net),
            Err(m) => problems.push(Problem::at(i, m)),
        }
    }
    if problems.is_empty() {
        Ok(nets)
    } else {
        Err(problems)
    }
}

/// A port list entry as a config file holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortEntry<'a> {
    Number(i64),
    Text(&'a str),
}

/// Allowed destination ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ports {
    /// `["*"]`, or no port list at all.
    Any,
    /// Sorted, without duplicates, none zero.
    Only(Vec<u16>),
}

impl Ports {
    pub fn admits(&self, port: u16) -> bool {
        match self {
            Ports::Any => true,
            Ports::Only(ports) => ports.binary_search(&port).is_ok(),
        }
    }
}

/// Parses a port list (see the module rules); every problem is reported. A
/// numeric string (`"443"`) counts as the number.
pub fn parse_ports(list: &[PortEntry<'_>]) -> Result<Ports, Vec<Problem>> {
    if list.is_empty() {
        return Err(vec![Problem::whole("is empty; list ports like [80, 443], or [\"*\"] for any port")]);
    }
    let star = |p: &PortEntry<'_>| matches!(p, PortEntry::Text(t) if t.trim() == "*");
    let mut ports = Vec::new();
    let mut problems = Vec::new();
    for (i, p) in list.iter().enumerate() {
        if star(p) {
            continue;
        }
        let n = match p {
            PortEntry::Number(n) => Some(*n),
            PortEntry::Text(t) => t.trim().parse::<i64>().ok(),
        };
        match n {
            Some(n @ 1..=65535) => ports.push(n as u16),
            Some(n) => problems.push(Problem::at(i, format!("{n} is out of range for a port; allowed 1..=65535"))),
            None => problems.push(Problem::at(i, format!("{:?} is not a port; give a number 1..=65535, or \"*\" for any port", p_text(p)))),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if list.iter().any(star) {
        return Ok(Ports::Any);
    }
    ports.sort_unstable();
    ports.dedup();
    Ok(Ports::Only(ports))
}

fn p_text(p: &PortEntry<'_>) -> String {
    match p {
        PortEntry::Number(n) => n.to_string(),
        PortEntry::Text(t) => (*t).to_owned(),
    }
}

/// Why a client was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Denied {
    /// The source address is in none of the networks.
    Source,
    /// The destination port is not allowed.
    Port,
}

impl Denied {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Denied::Source => "source_ip",
            Denied::Port => "port",
        }
    }
}

/// Allowed sources and ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowlist {
    pub sources: Vec<IpNet>,
    pub ports: Ports,
}

impl Allowlist {
    /// Whether `src` may connect to port `dport`; the port is checked first
    /// (it is the cheaper test and the answer a port scan should get).
    pub fn check(&self, src: IpAddr, dport: u16) -> Result<(), Denied> {
        if !self.ports.admits(dport) {
            return Err(Denied::Port);
        }
        let src = src.to_canonical();
        if self.sources.iter().any(|net| net.contains(&src)) {
            Ok(())
        } else {
            Err(Denied::Source)
        }
    }

    pub fn admits(&self, src: IpAddr, dport: u16) -> bool {
        self.check(src, dport).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_follow_one_rule_set() {
        assert_eq!(parse_source("198.18.0.0/24"), Ok("198.18.0.0/24".parse().unwrap()));
        assert_eq!(parse_source(" 198.18.0.7 "), Ok("198.18.0.7/32".parse().unwrap()));
        assert_eq!(parse_source("fd00:198:18::1"), Ok("fd00:198:18::1/128".parse().unwrap()));
        let e = parse_source("198.18.0.1/24").unwrap_err();
        assert!(e.contains("host bits") && e.contains("\"198.18.0.0/24\""), "{e}");
        assert!(parse_source("fd00:198:18::1/64").unwrap_err().contains("fd00:198:18::/64"));
        for bad in ["", "198.18.0.0/33", "example.com", "198.18.0.0/", "10.0.0.0/8/8"] {
            assert!(parse_source(bad).is_err(), "{bad}");
        }
        let e = parse_sources(&[]).unwrap_err();
        assert_eq!(e[0].index, None);
        assert!(e[0].message.contains("0.0.0.0/0 and ::/0"), "{e:?}");
        let e = parse_sources(&["x".into(), "198.18.0.0/24".into(), "198.18.0.1/16".into()]).unwrap_err();
        assert_eq!(e.iter().map(|p| p.index).collect::<Vec<_>>(), [Some(0), Some(2)], "every problem, with its index");
    }

    #[test]
    fn ports_follow_one_rule_set() {
        use PortEntry::*;
        assert_eq!(parse_ports(&[Text("*")]), Ok(Ports::Any));
        assert_eq!(parse_ports(&[Number(443), Text("80"), Number(443)]), Ok(Ports::Only(vec![80, 443])));
        assert!(parse_ports(&[]).unwrap_err()[0].message.contains("is empty"));
        assert_eq!(parse_ports(&[Number(80), Number(443), Text("*")]), Ok(Ports::Any), "the seed's spelling");
        assert_eq!(parse_ports(&[Text("*"), Text("htp")]).unwrap_err()[0].index, Some(1), "typos beside \"*\" still count");
        let e = parse_ports(&[Number(0), Number(80), Text("http"), Number(70000)]).unwrap_err();
        assert_eq!(e.iter().map(|p| p.index).collect::<Vec<_>>(), [Some(0), Some(2), Some(3)]);
        assert!(e[1].message.contains("\"http\" is not a port"), "{e:?}");
    }

    #[test]
    fn checks_sources_ports_and_mapped_v4() {
        let a = Allowlist { sources: parse_sources(&["198.18.0.0/24".into(), "fd00:198:18::/64".into()]).unwrap(), ports: Ports::Only(vec![80, 8080]) };
        assert_eq!(a.check(ip("198.18.0.9"), 80), Ok(()));
        assert_eq!(a.check(ip("::ffff:198.18.0.9"), 8080), Ok(()));
        assert_eq!(a.check(ip("fd00:198:18::5"), 80), Ok(()));
        assert_eq!(a.check(ip("198.18.1.9"), 80), Err(Denied::Source));
        assert_eq!(a.check(ip("198.18.0.9"), 443), Err(Denied::Port));
        let any = Allowlist { ports: Ports::Any, ..a };
        assert!(any.admits(ip("198.18.0.9"), 443));
        assert_eq!(Denied::Source.as_str(), "source_ip");
    }
}
