//! The seed's "WAF": an allowlist of client source networks and listener
//! ports, checked right after `accept()` so a denied client never gets a
//! TLS handshake (no CPU spent on crypto for it).
//!
//! The rules are the shared ones of `lb_common::userspace::allowlist`, the
//! same as lb-user's: a bare IP is one host (/32 or /128), a network with
//! host bits set is an error that suggests the network, and an empty list
//! is an error (allowing everyone is `0.0.0.0/0` + `::/0`, or leaving the
//! key out). This module only reads `waf.allowedIPs` / `waf.allowedPorts`
//! and names the key and index in errors.

use ipnet::IpNet;
use lb_common::userspace::allowlist::{parse_ports, parse_sources, PortEntry, Ports, Problem as AllowProblem};

pub use lb_common::userspace::allowlist::{Allowlist, Denied};

use crate::config::{ConfigError, PortSpec, Problem, Waf};

/// Every source and every port: what a config without `waf` keys means.
pub fn allow_all() -> Allowlist {
    let any = |s: &str| s.parse::<IpNet>().expect("a constant network");
    Allowlist { sources: vec![any("0.0.0.0/0"), any("::/0")], ports: Ports::Any }
}

/// The allowlist `waf` describes; an absent key allows everything.
pub fn from_waf(waf: &Waf) -> Result<Allowlist, ConfigError> {
    check(waf).map_err(|problems| ConfigError::Invalid { file: "<config>".into(), problems })
}

/// [`from_waf`], or every problem of both lists, each naming
/// `key[index]` and the value.
pub(crate) fn check(waf: &Waf) -> Result<Allowlist, Vec<Problem>> {
    let mut list = allow_all();
    let mut problems = Vec::new();
    if let Some(ips) = &waf.allowed_ips {
        match parse_sources(ips) {
            Ok(s) => list.sources = s,
            Err(p) => problems.extend(named("waf.allowedIPs", &p, |i| ips[i].clone())),
        }
    }
    if let Some(ports) = &waf.allowed_ports {
        let text = |i: usize| match &ports[i] {
            PortSpec::Num(n) => n.to_string(),
            PortSpec::Str(s) => s.clone(),
        };
        let entries: Vec<PortEntry<'_>> = ports
            .iter()
            .map(|p| match p {
                PortSpec::Num(n) => PortEntry::Number(*n),
                PortSpec::Str(s) => PortEntry::Text(s),
            })
            .collect();
        match parse_ports(&entries) {
            Ok(p) => list.ports = p,
            Err(p) => problems.extend(named("waf.allowedPorts", &p, text)),
        }
    }
    if problems.is_empty() {
        Ok(list)
    } else {
        Err(problems)
    }
}

/// The shared parser's problems as config problems naming `key[index]`
/// and the value.
fn named<'a>(key: &'a str, problems: &'a [AllowProblem], text: impl Fn(usize) -> String + 'a) -> impl Iterator<Item = Problem> + 'a {
    problems.iter().map(move |p| {
        let (key, value) = match p.index {
            Some(i) => (format!("{key}[{i}]"), text(i)),
            None => (key.to_string(), "[]".to_string()),
        };
        Problem { key, value, reason: p.message.clone() }
    })
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::config::Config;

    fn waf(yaml: &str) -> Result<Allowlist, ConfigError> {
        let y = format!("protocol: http\nport: 1\nbackend_servers: [http://127.0.0.1:1]\n{yaml}");
        Config::parse(&y).and_then(|c| from_waf(&c.waf))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ips_and_ports() {
        let a = waf("waf: {allowedIPs: [10.0.0.0/8, 127.0.0.1], allowedPorts: [443]}").unwrap();
        assert_eq!(a.check(ip("10.1.2.3"), 443), Ok(()));
        assert_eq!(a.check(ip("127.0.0.1"), 443), Ok(()));
        assert_eq!(a.check(ip("::ffff:127.0.0.1"), 443), Ok(()), "mapped IPv4 matches the IPv4 rules");
        assert_eq!(a.check(ip("127.0.0.2"), 443), Err(Denied::Source), "a bare IP is one host");
        assert_eq!(a.check(ip("10.1.2.3"), 80), Err(Denied::Port));
        assert_eq!(Denied::Source.as_str(), "source_ip");
        let v6 = waf("waf: {allowedIPs: [\"fd00:198:18::1\"]}").unwrap();
        assert!(v6.admits(ip("fd00:198:18::1"), 1) && !v6.admits(ip("fd00:198:18::2"), 1), "/128");
    }

    #[test]
    fn absent_keys_allow_all_and_empty_lists_are_errors() {
        for yaml in ["", "waf: {}"] {
            let a = waf(yaml).unwrap();
            assert!(a.admits(ip("8.8.8.8"), 1) && a.admits(ip("2001:db8::1"), 65535), "{yaml:?}");
        }
        let e = waf("waf: {allowedIPs: []}").unwrap_err().to_string();
        assert!(e.contains("waf.allowedIPs: ") && e.contains("0.0.0.0/0 and ::/0"), "{e}");
        let e = waf("waf: {allowedPorts: []}").unwrap_err().to_string();
        assert!(e.contains("waf.allowedPorts: ") && e.contains("is empty"), "{e}");
        let open = waf("waf: {allowedIPs: [0.0.0.0/0, \"::/0\"], allowedPorts: [\"*\"]}").unwrap();
        assert!(open.admits(ip("2001:db8::1"), 9));
    }

    #[test]
    fn errors_name_key_index_and_value() {
        let e = waf("waf: {allowedIPs: [10.0.0.0/8, \"::1\", 192.168.1.1/24]}").unwrap_err().to_string();
        assert!(e.contains("waf.allowedIPs[2]: ") && e.contains("192.168.1.1/24"), "{e}");
        assert!(e.contains("did you mean \"192.168.1.0/24\""), "suggests the network: {e}");
        let e = waf("waf: {allowedIPs: [x, 10.0.0.0/99]}").unwrap_err().to_string();
        assert!(e.contains("2 problems:") && e.contains("waf.allowedIPs[0]: \"x\"") && e.contains("waf.allowedIPs[1]: \"10.0.0.0/99\""), "every entry: {e}");
        let e = waf("waf: {allowedPorts: [80, 70000]}").unwrap_err().to_string();
        assert!(e.contains("waf.allowedPorts[1]: ") && e.contains("70000") && e.contains("1..=65535"), "{e}");
        let e = waf("waf: {allowedPorts: [http]}").unwrap_err().to_string();
        assert!(e.contains("waf.allowedPorts[0]: ") && e.contains("\"http\""), "{e}");
    }

    #[test]
    fn seed_spelling_of_any_port() {
        let a = waf("waf: {allowedPorts: [80, 443, \"*\"]}").unwrap();
        assert_eq!(a.ports, Ports::Any);
        assert_eq!(waf("waf: {allowedPorts: [\"443\", 80, 443]}").unwrap().ports, Ports::Only(vec![80, 443]));
    }
}
