//! The benchmark cases: which balancer, which address, keep-alive or a new
//! connection per request, TLS/mTLS, and which load tool. Also the lab
//! addressing the benchmark uses (VIPs and per-case backend ports).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::load::Tool;

/// Backends in the benchmark lab. One, so that `direct` (which can only
/// target one address) and the balanced cases have the same backend capacity.
pub const BACKENDS: u8 = 1;
/// Port of the TLS proxies' backends.
pub const TLS_BACKEND_PORT: u16 = 8090;
/// TLS proxies listen here (server certificate only) …
pub const TLS_PORT: u16 = 443;
/// … and here (client certificate required).
pub const MTLS_PORT: u16 = 8443;
/// The nftables table the nft case adds to the lb namespace (and removes).
pub const NFT_TABLE: &str = "xdplb_bench";

/// What sits between the client and the backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lb {
    Direct,
    XdpNat,
    XdpDsr,
    Proxy,
    Nft,
    HaproxyTcp,
    NginxStream,
    Alb,
    HaproxyTls,
    NginxTls,
}

pub const L4: [Lb; 7] = [Lb::Direct, Lb::XdpNat, Lb::XdpDsr, Lb::Proxy, Lb::Nft, Lb::HaproxyTcp, Lb::NginxStream];
pub const TLS: [Lb; 3] = [Lb::Alb, Lb::HaproxyTls, Lb::NginxTls];

impl Lb {
    pub fn name(self) -> &'static str {
        match self {
            Lb::Direct => "direct",
            Lb::XdpNat => "xdp-nat",
            Lb::XdpDsr => "xdp-dsr",
            Lb::Proxy => "lb-user-proxy",
            Lb::Nft => "nftables-dnat",
            Lb::HaproxyTcp => "haproxy-tcp",
            Lb::NginxStream => "nginx-stream",
            Lb::Alb => "alb",
            Lb::HaproxyTls => "haproxy-tls",
            Lb::NginxTls => "nginx-tls",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Lb::Direct => "client → backend, the lb namespace only routes (own backend port)",
            Lb::XdpNat => "lb-user attach: XDP NAT (DNAT + reverse NAT in XDP, XDP_REDIRECT)",
            Lb::XdpDsr => "lb-user attach: XDP DSR (MAC rewrite; backends hold the VIP on lo)",
            Lb::Proxy => "lb-user proxy: userspace L4 forwarder, 1 Tokio worker",
            Lb::Nft => "nftables DNAT in the lb namespace (kernel NAT with conntrack)",
            Lb::HaproxyTcp => "HAProxy mode tcp, nbthread 1",
            Lb::NginxStream => "nginx stream proxy, 1 worker",
            Lb::Alb => "alb (rustls, TLS 1.3, ECDSA P-256), 1 Tokio worker",
            Lb::HaproxyTls => "HAProxy mode http, ssl crt, TLS 1.3, nbthread 1",
            Lb::NginxTls => "nginx http ssl, TLS 1.3, 1 worker",
        }
    }

    pub fn is_tls(self) -> bool {
        TLS.contains(&self)
    }

    /// Load runs through the XDP program (its CPU is in softirq, not a process).
    pub fn is_xdp(self) -> bool {
        matches!(self, Lb::XdpNat | Lb::XdpDsr)
    }
}

/// The backend port a case's traffic arrives on: one per L4 case, so TIME_WAIT
/// and PAWS state of one case cannot touch another (design.md).
pub fn port(lb: Lb) -> u16 {
    match lb {
        Lb::Direct => 8081,
        Lb::XdpNat => 8082,
        Lb::XdpDsr => 8083,
        Lb::Proxy => 8084,
        Lb::Nft => 8085,
        Lb::HaproxyTcp => 8086,
        Lb::NginxStream => 8087,
        Lb::Alb | Lb::HaproxyTls | Lb::NginxTls => TLS_BACKEND_PORT,
    }
}

/// Every port the backends listen on.
pub fn backend_ports() -> Vec<u16> {
    let mut v: Vec<u16> = L4.iter().map(|l| port(*l)).collect();
    v.push(TLS_BACKEND_PORT);
    v
}

/// Backend `i`'s address on `port`.
pub fn backend(i: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(xdplb_tests::lab::addr::backend_v4(i)), port)
}

/// The address the client sends an L4 case's requests to.
pub fn vip(lb: Lb) -> SocketAddr {
    let ip = |last: u8| IpAddr::V4(Ipv4Addr::new(198, 18, 100, last));
    match lb {
        Lb::Direct => backend(1, port(Lb::Direct)),
        Lb::XdpNat => SocketAddr::new(ip(1), 80),
        // DSR cannot rewrite the port.
        Lb::XdpDsr => SocketAddr::new(ip(2), port(Lb::XdpDsr)),
        Lb::Proxy => SocketAddr::new(ip(3), 80),
        Lb::Nft => SocketAddr::new(ip(4), 80),
        Lb::HaproxyTcp => SocketAddr::new(ip(5), 80),
        Lb::NginxStream => SocketAddr::new(ip(6), 80),
        Lb::Alb | Lb::HaproxyTls | Lb::NginxTls => SocketAddr::new(tls_ip(lb), TLS_PORT),
    }
}

/// TLS proxies' addresses: in the demo server certificate's SANs.
pub fn tls_ip(lb: Lb) -> IpAddr {
    let last = match lb {
        Lb::HaproxyTls => 12,
        Lb::NginxTls => 13,
        _ => 11,
    };
    IpAddr::V4(Ipv4Addr::new(198, 18, 2, last))
}

/// One measured scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    pub lb: Lb,
    pub new_conn: bool,
    pub mtls: bool,
    pub tool: Tool,
}

impl Case {
    /// Stable identifier, e.g. `xdp-nat/keepalive`, `alb/mtls/new-conn`.
    pub fn id(&self) -> String {
        format!("{}{}/{}", self.lb.name(), if self.mtls { "/mtls" } else { "" }, if self.new_conn { "new-conn" } else { "keepalive" })
    }

    pub fn url(&self) -> String {
        if self.lb.is_tls() {
            let port = if self.mtls { MTLS_PORT } else { TLS_PORT };
            format!("https://{}:{port}/", tls_ip(self.lb))
        } else {
            format!("http://{}/", vip(self.lb))
        }
    }
}

/// All cases in run order (one repetition). `tool` is the user's choice for
/// cases wrk can drive; mTLS always needs k6 (client certificates).
pub fn all(tool: Tool) -> Vec<Case> {
    let mut out = Vec::new();
    for lb in L4 {
        for new_conn in [false, true] {
            out.push(Case { lb, new_conn, mtls: false, tool });
        }
    }
    for mtls in [false, true] {
        for lb in TLS {
            for new_conn in [false, true] {
                out.push(Case { lb, new_conn, mtls, tool: if mtls { Tool::K6 } else { tool } });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_is_unique_and_on_lab_addresses() {
        let cases = all(Tool::Wrk);
        assert_eq!(cases.len(), 7 * 2 + 3 * 2 * 2);
        let mut ids: Vec<String> = cases.iter().map(Case::id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), cases.len());
        for c in &cases {
            assert!(xdplb_tests::lab::addr::is_lab_address(vip(c.lb).ip()), "{}", c.id());
            assert_eq!(c.tool == Tool::K6, c.mtls, "{}", c.id());
        }
        let mut ports = backend_ports();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 8, "one backend port per L4 case plus TLS");
    }
}
