//! The seed's "WAF": an allowlist of client source networks and listener
//! ports, checked right after `accept()` so a denied client never gets a
//! TLS handshake (no CPU spent on crypto for it).

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::config::{parse_allowed_ips, parse_allowed_ports, Config, ConfigError};

/// Why a connection was refused (the `reason` label of
/// `alb_allowlist_denied_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    SourceIp,
    Port,
}

impl Denied {
    pub fn as_str(self) -> &'static str {
        match self {
            Denied::SourceIp => "source_ip",
            Denied::Port => "port",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    /// Empty: every source is allowed.
    nets: Vec<IpNet>,
    /// `None`: every listener port is allowed (`"*"`).
    ports: Option<Vec<u16>>,
}

impl Allowlist {
    pub fn from_config(cfg: &Config) -> Result<Allowlist, ConfigError> {
        Ok(Allowlist {
            nets: parse_allowed_ips(&cfg.waf.allowed_ips)?,
            ports: parse_allowed_ports(&cfg.waf.allowed_ports)?,
        })
    }

    /// `peer` is the client, `local` the listener address it reached.
    pub fn check(&self, peer: SocketAddr, local: SocketAddr) -> Result<(), Denied> {
        if let Some(ports) = &self.ports {
            if !ports.contains(&local.port()) {
                return Err(Denied::Port);
            }
        }
        if self.nets.is_empty() {
            return Ok(());
        }
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d;
        // match it against the IPv4 rules.
        let ip = match peer.ip() {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        if self.nets.iter().any(|n| n.contains(&ip)) {
            Ok(())
        } else {
            Err(Denied::SourceIp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(ips: &[&str], ports: &str) -> Allowlist {
        let y = format!(
            "protocol: http\nport: 1\nbackend_servers: [http://127.0.0.1:1]\nwaf:\n  allowedIPs: [{}]\n  allowedPorts: {ports}\n",
            ips.join(",")
        );
        Allowlist::from_config(&Config::parse(&y).unwrap()).unwrap()
    }

    #[test]
    fn ips_and_ports() {
        let a = list(&["10.0.0.0/8", "127.0.0.1"], "[443]");
        let l443: SocketAddr = "0.0.0.0:443".parse().unwrap();
        let l80: SocketAddr = "0.0.0.0:80".parse().unwrap();
        assert_eq!(a.check("10.1.2.3:5555".parse().unwrap(), l443), Ok(()));
        assert_eq!(a.check("127.0.0.1:5555".parse().unwrap(), l443), Ok(()));
        assert_eq!(
            a.check("[::ffff:127.0.0.1]:5555".parse().unwrap(), l443),
            Ok(())
        );
        assert_eq!(
            a.check("127.0.0.2:5555".parse().unwrap(), l443),
            Err(Denied::SourceIp)
        );
        assert_eq!(
            a.check("10.1.2.3:5555".parse().unwrap(), l80),
            Err(Denied::Port)
        );
        let star = list(&[], "[80, \"*\"]");
        assert_eq!(star.check("8.8.8.8:1".parse().unwrap(), l443), Ok(()));
    }
}
