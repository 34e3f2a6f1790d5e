//! The network the fuzzer runs the program in: backends, VIPs of every kind
//! the program balances (NAT and DSR, TCP and UDP, IPv4 and IPv6, Maglev,
//! Maglev-by-source and round robin, a VIP port the allowlist refuses, a
//! VIP without backends) and a source allowlist, so that denied sources and
//! ports are exercised too. The maps are filled once, through lb-user's
//! `Dataplane`, and the oracle asks this description what is configured.

use std::net::{IpAddr, SocketAddr};

use anyhow::Result;
use ipnet::IpNet;
use lb_common::{
    hash,
    lb::{self, ALG_MAGLEV, ALG_MAGLEV_SRC, ALG_ROUND_ROBIN, MODE_DSR, MODE_NAT},
    userspace::allowlist::{Allowlist, Ports},
};
use lb_user::dataplane::{backend_info, vip_key};

use crate::{lab::addr, testrun::Harness};

/// Maglev table size (prime, small: the tables are written once per run).
pub const MAGLEV_SIZE: u32 = 251;
/// The Maglev hash seed of every VIP.
pub const HASH_SEED: u32 = 7;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

/// One configured VIP.
#[derive(Clone, Debug)]
pub struct Vip {
    pub id: u32,
    pub addr: SocketAddr,
    pub protocol: u8,
    pub mode: u8,
    pub algorithm: u8,
    /// Backend ids; empty for the VIP that has none.
    pub backends: Vec<u32>,
}

impl Vip {
    pub fn nat(&self) -> bool {
        self.mode != MODE_DSR
    }

    /// The Maglev table written for this VIP: the backends in turn.
    pub fn table(&self) -> Vec<u32> {
        if self.backends.is_empty() {
            return vec![lb::NO_BACKEND; MAGLEV_SIZE as usize];
        }
        (0..MAGLEV_SIZE as usize).map(|s| self.backends[s % self.backends.len()]).collect()
    }

    /// The backends a new flow `src` → this VIP may go to: exactly one for
    /// the Maglev algorithms (the slot its hash names), any for round robin.
    pub fn candidates(&self, src: SocketAddr) -> Vec<u32> {
        if self.backends.is_empty() || self.algorithm == ALG_ROUND_ROBIN {
            return self.backends.clone();
        }
        let (dst, proto) = (self.addr, self.protocol);
        let h = match (src.ip(), dst.ip()) {
            _ if self.algorithm == ALG_MAGLEV_SRC => {
                let (a, family) = lb_common::userspace::select::addr16(src.ip());
                hash::src_hash(&a, family, HASH_SEED)
            }
            (IpAddr::V4(s), IpAddr::V4(d)) => hash::flow_hash_v4(s.octets(), d.octets(), src.port(), dst.port(), proto, HASH_SEED),
            (IpAddr::V6(s), IpAddr::V6(d)) => hash::flow_hash_v6(&s.octets(), &d.octets(), src.port(), dst.port(), proto, HASH_SEED),
            _ => return Vec::new(),
        };
        vec![self.table()[(h % MAGLEV_SIZE) as usize]]
    }
}

/// Everything configured: backends by id, VIPs, allowlist.
#[derive(Clone, Debug)]
pub struct FuzzNet {
    /// `(id, address)`: ids 1, 2 are the lab's be1, be2 over IPv4; 11, 12 over IPv6.
    pub backends: Vec<(u32, SocketAddr)>,
    pub vips: Vec<Vip>,
    pub allow: Allowlist,
}

/// Backend port of every backend.
pub const BACKEND_PORT: u16 = 8080;

fn sa(text: &str) -> SocketAddr {
    text.parse().expect("a literal socket address")
}

impl FuzzNet {
    /// The one configuration every fuzz run uses (the lab has two backends).
    pub fn standard() -> FuzzNet {
        let backends = vec![
            (1, SocketAddr::new(addr::backend_v4(1).into(), BACKEND_PORT)),
            (2, SocketAddr::new(addr::backend_v4(2).into(), BACKEND_PORT)),
            (11, SocketAddr::new(addr::backend_v6(1).into(), BACKEND_PORT)),
            (12, SocketAddr::new(addr::backend_v6(2).into(), BACKEND_PORT)),
        ];
        let vip = |id, a: &str, protocol, mode, algorithm, backends: &[u32]| Vip { id, addr: sa(a), protocol, mode, algorithm, backends: backends.to_vec() };
        let (v4, v6) = (&[1, 2][..], &[11, 12][..]);
        let vips = vec![
            vip(0, "198.18.100.1:80", TCP, MODE_NAT, ALG_MAGLEV, v4),
            vip(1, "[fd00:198:18:100::1]:80", TCP, MODE_NAT, ALG_MAGLEV, v6),
            vip(2, "198.18.100.1:53", UDP, MODE_NAT, ALG_MAGLEV, v4),
            vip(3, "[fd00:198:18:100::1]:53", UDP, MODE_NAT, ALG_MAGLEV, v6),
            vip(4, "198.18.100.2:8080", TCP, MODE_DSR, ALG_MAGLEV, v4),
            vip(5, "[fd00:198:18:100::2]:8080", TCP, MODE_DSR, ALG_MAGLEV, v6),
            vip(6, "198.18.100.2:53", UDP, MODE_DSR, ALG_MAGLEV, v4),
            vip(7, "198.18.100.3:80", TCP, MODE_NAT, ALG_ROUND_ROBIN, v4),
            vip(8, "[fd00:198:18:100::3]:53", UDP, MODE_NAT, ALG_ROUND_ROBIN, v6),
            vip(9, "198.18.100.5:80", TCP, MODE_NAT, ALG_MAGLEV_SRC, v4),
            // A balanced port the allowlist does not admit: always refused by port.
            vip(10, "198.18.100.1:443", TCP, MODE_NAT, ALG_MAGLEV, v4),
            // No backend at all: new flows are dropped.
            vip(11, "198.18.100.4:80", TCP, MODE_NAT, ALG_MAGLEV, &[]),
        ];
        // The client segments are allowed; the rest of the lab range (the
        // backend segment, routers, anything a mutation makes up) is not.
        let sources: Vec<IpNet> = ["198.18.0.0/24", "fd00:198:18::/64"].iter().map(|s| s.parse().expect("a literal prefix")).collect();
        let allow = Allowlist { sources, ports: Ports::Only(vec![53, 80, 8080]) };
        FuzzNet { backends, vips, allow }
    }

    /// Writes backends, VIPs and the allowlist into the program's maps.
    pub fn apply(&self, xdp: &mut Harness) -> Result<()> {
        let mut dp = xdp.dataplane();
        for (id, b) in &self.backends {
            dp.set_backend(*id, &backend_info(b.ip(), b.port()))?;
        }
        for v in &self.vips {
            let info = lb::VipInfo { vip_id: v.id, algorithm: v.algorithm, mode: v.mode, hash_seed: HASH_SEED, ..Default::default() };
            dp.set_vip(&vip_key(v.addr.ip(), v.addr.port(), v.protocol), &info, &v.table(), &v.backends)?;
        }
        let ports = match &self.allow.ports {
            Ports::Any => None,
            Ports::Only(p) => Some(p.as_slice()),
        };
        dp.set_allowlist(&self.allow.sources, ports, false)
    }

    /// The VIP at `dst` for `protocol`.
    pub fn vip(&self, dst: SocketAddr, protocol: u8) -> Option<&Vip> {
        self.vips.iter().find(|v| v.addr == dst && v.protocol == protocol)
    }

    /// Whether `ip` is the address of any VIP.
    pub fn is_vip_address(&self, ip: IpAddr) -> bool {
        self.vips.iter().any(|v| v.addr.ip() == ip)
    }

    pub fn backend(&self, id: u32) -> Option<SocketAddr> {
        self.backends.iter().find(|(i, _)| *i == id).map(|(_, a)| *a)
    }

    /// The lab backend (1-based, as in `LabEnv::be_mac`) a backend id lives on.
    pub fn lab_host(id: u32) -> usize {
        (id % 10) as usize
    }
}
