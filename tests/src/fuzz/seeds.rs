//! Seed frames: the kinds of frame the fixture tests use (tests/tests/it/
//! xdp_*.rs), built with `packet`'s builders for the fuzz network. They are
//! run once, in order, before fuzzing starts, so flows are established and
//! the replies and ICMP errors among them find state; afterwards mutations
//! start from a random seed.

use std::net::{IpAddr, SocketAddr};

use super::net::{FuzzNet, TCP};
use crate::{
    lab::addr,
    packet::{self, echo_request, mtu_error_about, Spec},
    testrun::lab::LabEnv,
};

/// Which of the lb's interfaces a frame arrives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// From the client segment (the lb's `lc`).
    Client,
    /// From the backend segment (the lb's `lbe`).
    Backend,
}

impl Side {
    pub fn ifindex(self, env: &LabEnv) -> u32 {
        match self {
            Side::Client => env.lc,
            Side::Backend => env.lbe,
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Backend,
            Side::Backend => Side::Client,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client side",
            Side::Backend => "backend side",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Seed {
    pub frame: Vec<u8>,
    pub side: Side,
}

/// Client ports the seeds use; mutations that pick a port pick among these
/// often, so mutated frames hit established flows.
pub const CLIENT_PORTS: [u16; 3] = [40000, 40001, 40002];

/// The lab client (allowed, has a neighbour entry, so replies to it are sent by XDP).
pub fn client(v6: bool) -> IpAddr {
    if v6 {
        addr::CLIENT_V6.into()
    } else {
        addr::CLIENT_V4.into()
    }
}

/// Allowed by the allowlist but without a neighbour: replies go to the kernel.
pub fn other_allowed(v6: bool) -> IpAddr {
    if v6 {
        "fd00:198:18::77".parse().unwrap()
    } else {
        "198.18.0.77".parse().unwrap()
    }
}

/// Outside the allowlist (and so are the routers sending ICMP errors).
pub fn denied(v6: bool) -> IpAddr {
    if v6 {
        "fd00:198:18:7::7".parse().unwrap()
    } else {
        "198.18.7.7".parse().unwrap()
    }
}

pub fn router(v6: bool) -> IpAddr {
    if v6 {
        "fd00:198:18::fe".parse().unwrap()
    } else {
        "198.18.0.254".parse().unwrap()
    }
}

/// Every seed, in the order they are first run.
pub fn all(net: &FuzzNet, env: &LabEnv) -> Vec<Seed> {
    let mut seeds = Vec::new();
    let inbound = |spec: Spec<'static>| Seed { frame: Spec { eth_dst: env.lc_mac, eth_src: env.client_mac, ..spec }.build(), side: Side::Client };
    let payload: &'static [u8] = b"GET / HTTP/1.1\r\n\r\n";
    for vip in &net.vips {
        let v6 = vip.addr.is_ipv6();
        for (src, port) in [(client(v6), CLIENT_PORTS[0]), (client(v6), CLIENT_PORTS[1]), (other_allowed(v6), CLIENT_PORTS[2]), (denied(v6), CLIENT_PORTS[0])] {
            let c = SocketAddr::new(src, port);
            if vip.protocol == TCP {
                for (flags, data) in [(0x02, &b""[..]), (0x10, payload), (0x18, payload), (0x11, &b""[..]), (0x04, &b""[..])] {
                    seeds.push(inbound(Spec { tcp_flags: flags, payload: data, ..Spec::tcp(c, vip.addr) }));
                }
            } else {
                seeds.push(inbound(Spec::udp(c, vip.addr, b"query")));
                if !v6 {
                    // No checksum (allowed over IPv4 only): must stay zero.
                    let mut s = inbound(Spec::udp(c, vip.addr, b"nosum"));
                    let l4 = s.frame.len() - 13;
                    s.frame[l4 + 6..l4 + 8].copy_from_slice(&[0, 0]);
                    seeds.push(s);
                }
            }
            // The backends' replies to the flows the client seeds open.
            for id in vip.candidates(c) {
                let Some(be) = net.backend(id) else { continue };
                let mac = env.be_mac[FuzzNet::lab_host(id) - 1];
                let reply = |spec: Spec<'static>| Seed { frame: Spec { eth_dst: env.lbe_mac, eth_src: mac, ..spec }.build(), side: Side::Backend };
                if vip.protocol == TCP {
                    seeds.push(reply(Spec { tcp_flags: 0x12, ..Spec::tcp(be, c) }));
                    seeds.push(reply(Spec { tcp_flags: 0x18, payload: b"HTTP/1.1 200 OK\r\n\r\n", ..Spec::tcp(be, c) }));
                } else {
                    seeds.push(reply(Spec::udp(be, c, b"answer")));
                }
            }
            // ICMP path-MTU errors about the flow, from a router outside the allowlist.
            let quoted = (vip.addr, c, vip.protocol);
            seeds.push(Seed { frame: mtu_error_about((&env.lc_mac, &env.client_mac), router(v6), vip.addr.ip(), 64, quoted), side: Side::Client });
        }
    }
    let (c4, c6) = (SocketAddr::new(client(false), CLIENT_PORTS[0]), SocketAddr::new(client(true), CLIENT_PORTS[0]));
    let (vip4, vip6) = (net.vips[0].addr, net.vips[1].addr);
    // Not VIP traffic: straight to a backend, and to a VIP address on a port nobody balances.
    let be1 = net.backend(1).expect("backend 1");
    seeds.push(inbound(Spec::tcp(c4, be1)));
    seeds.push(inbound(Spec::tcp(c4, SocketAddr::new(vip4.ip(), 22))));
    seeds.push(inbound(Spec::udp(c6, SocketAddr::new(vip6.ip(), 5353), b"x")));
    // ICMP echo to a VIP address, from inside and outside the allowlist.
    for v6 in [false, true] {
        let vip = if v6 { vip6 } else { vip4 };
        seeds.push(Seed { frame: echo_request((&env.lc_mac, &env.client_mac), client(v6), vip.ip()), side: Side::Client });
        seeds.push(Seed { frame: echo_request((&env.lc_mac, &env.client_mac), denied(v6), vip.ip()), side: Side::Client });
    }
    // Header variants the fixtures cover: a VLAN tag, IPv4 options, IPv6
    // extension headers, fragments.
    let syn4 = inbound(Spec::tcp(c4, vip4)).frame;
    let syn6 = inbound(Spec::tcp(c6, vip6)).frame;
    for f in [&syn4, &syn6] {
        seeds.push(Seed { frame: vlan_tagged(f, 0x8100, 42), side: Side::Client });
    }
    seeds.push(Seed { frame: with_ipv4_nop_options(&syn4, 2), side: Side::Client });
    seeds.push(Seed { frame: with_ipv6_exts(&syn6, &[(60, 0)]), side: Side::Client });
    seeds.push(Seed { frame: with_ipv6_exts(&syn6, &[(0, 0), (43, 1), (60, 0)]), side: Side::Client });
    let mut frag4 = syn4.clone();
    frag4[20] |= 0x20; // more fragments
    fix_ipv4_header(&mut frag4, 14);
    seeds.push(Seed { frame: frag4, side: Side::Client });
    seeds.push(Seed { frame: with_ipv6_fragment(&syn6, 185, false), side: Side::Client });
    // An atomic fragment (offset 0, no more fragments): not a fragment at all.
    seeds.push(Seed { frame: with_ipv6_fragment(&syn6, 0, false), side: Side::Client });
    // Not IP: an ARP request.
    let mut arp = packet::ethernet(packet::ETH_P_ARP);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&env.client_mac);
    arp.extend_from_slice(&addr::CLIENT_V4.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[198, 18, 100, 1]);
    seeds.push(Seed { frame: arp, side: Side::Client });
    seeds
}

/// `frame` with an 802.1Q/802.1ad tag (`tpid`, VLAN `vid`) after the MACs.
pub fn vlan_tagged(frame: &[u8], tpid: u16, vid: u16) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&tpid.to_be_bytes());
    out.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

/// Rewrites the IPv4 header checksum of the header at `l3`.
pub fn fix_ipv4_header(frame: &mut [u8], l3: usize) {
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    if ihl < 20 || frame.len() < l3 + ihl {
        return;
    }
    frame[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
    let sum = packet::checksum(&frame[l3..l3 + ihl]);
    frame[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
}

/// An untagged Ethernet/IPv4 frame with `words` 4-byte words of NOP options.
pub fn with_ipv4_nop_options(frame: &[u8], words: usize) -> Vec<u8> {
    let mut out = frame[..34].to_vec();
    out.extend(std::iter::repeat_n(1u8, words * 4));
    out.extend_from_slice(&frame[34..]);
    out[14] = 0x45 + words as u8;
    let total = u16::from_be_bytes([out[16], out[17]]) + (words * 4) as u16;
    out[16..18].copy_from_slice(&total.to_be_bytes());
    fix_ipv4_header(&mut out, 14);
    out
}

/// An untagged Ethernet/IPv6 frame with extension headers `(type, length
/// in 8-byte units minus one)` inserted after the fixed header, in order;
/// next-header chain and payload length fixed.
pub fn with_ipv6_exts(frame: &[u8], exts: &[(u8, u8)]) -> Vec<u8> {
    let mut out = frame[..54].to_vec();
    let mut next = frame[20];
    let mut chain = Vec::new();
    for &(kind, len) in exts.iter().rev() {
        let mut h = vec![next, len];
        h.resize((usize::from(len) + 1) * 8, 0);
        // A PadN option filling the rest keeps options headers well-formed.
        if kind != 43 && h.len() > 2 {
            h[2] = 1;
            h[3] = (h.len() - 4) as u8;
        }
        chain.splice(0..0, h);
        next = kind;
    }
    out[20] = next;
    out.extend(&chain);
    out.extend_from_slice(&frame[54..]);
    let len = u16::from_be_bytes([out[18], out[19]]) + chain.len() as u16;
    out[18..20].copy_from_slice(&len.to_be_bytes());
    out
}

/// An untagged Ethernet/IPv6 frame with a fragment header (offset in 8-byte
/// units, M flag) after the fixed header.
pub fn with_ipv6_fragment(frame: &[u8], offset: u16, more: bool) -> Vec<u8> {
    let mut out = frame[..54].to_vec();
    out.extend_from_slice(&[frame[20], 0]);
    out.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 1]);
    out.extend_from_slice(&frame[54..]);
    out[20] = 44;
    let len = u16::from_be_bytes([out[18], out[19]]) + 8;
    out[18..20].copy_from_slice(&len.to_be_bytes());
    out
}
