//! Hand-built frames for BPF_PROG_TEST_RUN fixtures, with an internet-checksum
//! routine written independently of the eBPF code so tests can check what the
//! program rewrites.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMP: u8 = 1;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// RFC 1071 one's-complement sum of `data`, folded, not inverted.
pub fn ones_complement_sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// The internet checksum of `data` (what goes into the header field).
pub fn checksum(data: &[u8]) -> u16 {
    !(ones_complement_sum(data, 0) as u16)
}

/// Ethernet header: dst, src, ethertype.
pub fn ethernet(ether_type: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(14);
    f.extend_from_slice(&LB_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&ether_type.to_be_bytes());
    f
}

/// An Ethernet header with one 802.1Q tag (VLAN `vid`) carrying `ether_type`.
pub fn ethernet_vlan(vid: u16, ether_type: u16) -> Vec<u8> {
    let mut f = ethernet(ETH_P_8021Q);
    f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    f.extend_from_slice(&ether_type.to_be_bytes());
    f
}

/// An IPv4 header (no options) with a correct header checksum.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload_len: usize) -> Vec<u8> {
    let total = (20 + payload_len) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, protocol, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h
}

/// An IPv6 fixed header.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload_len: usize) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload_len as u16).to_be_bytes());
    h.extend_from_slice(&[next_header, 64]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h
}

/// Pseudo-header sum for L4 checksums.
fn pseudo_sum(src: &[u8], dst: &[u8], protocol: u8, len: usize) -> u32 {
    let mut p = Vec::with_capacity(40);
    p.extend_from_slice(src);
    p.extend_from_slice(dst);
    if src.len() == 4 {
        p.extend_from_slice(&[0, protocol]);
        p.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        p.extend_from_slice(&(len as u32).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, protocol]);
    }
    ones_complement_sum(&p, 0)
}

/// L4 checksum of `segment` (its checksum field zeroed or not, as given).
pub fn l4_checksum(src: &[u8], dst: &[u8], protocol: u8, segment: &[u8]) -> u16 {
    !(ones_complement_sum(segment, pseudo_sum(src, dst, protocol, segment.len())) as u16)
}

/// A TCP header (20 bytes, no options) plus payload, checksummed for src/dst.
pub fn tcp(src: &[u8], dst: &[u8], sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(20 + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&1000u32.to_be_bytes());
    s.extend_from_slice(&0u32.to_be_bytes());
    s.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    s.extend_from_slice(payload);
    let sum = l4_checksum(src, dst, IPPROTO_TCP, &s);
    s[16..18].copy_from_slice(&sum.to_be_bytes());
    s
}

/// A UDP header plus payload, checksummed for src/dst.
pub fn udp(src: &[u8], dst: &[u8], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut s = Vec::with_capacity(len as usize);
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&len.to_be_bytes());
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(payload);
    let sum = l4_checksum(src, dst, IPPROTO_UDP, &s);
    s[6..8].copy_from_slice(&sum.to_be_bytes());
    s
}

/// Everything that varies between the frames the fixtures build.
#[derive(Clone, Debug)]
pub struct Spec<'a> {
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    pub src: std::net::IpAddr,
    pub dst: std::net::IpAddr,
    pub ttl: u8,
    pub protocol: u8,
    pub sport: u16,
    pub dport: u16,
    /// TCP flags (ignored for UDP).
    pub tcp_flags: u8,
    pub payload: &'a [u8],
}

impl<'a> Spec<'a> {
    /// A TCP SYN from `src` to `dst` between the default MACs, TTL 64.
    pub fn tcp(src: std::net::SocketAddr, dst: std::net::SocketAddr) -> Spec<'a> {
        Spec {
            eth_dst: LB_MAC,
            eth_src: CLIENT_MAC,
            src: src.ip(),
            dst: dst.ip(),
            ttl: 64,
            protocol: IPPROTO_TCP,
            sport: src.port(),
            dport: dst.port(),
            tcp_flags: 0x02,
            payload: b"",
        }
    }

    /// A UDP datagram from `src` to `dst`.
    pub fn udp(src: std::net::SocketAddr, dst: std::net::SocketAddr, payload: &'a [u8]) -> Spec<'a> {
        Spec { protocol: IPPROTO_UDP, tcp_flags: 0, payload, ..Spec::tcp(src, dst) }
    }

    /// The frame, with every checksum computed from scratch.
    pub fn build(&self) -> Vec<u8> {
        use std::net::IpAddr;
        let (src, dst): (Vec<u8>, Vec<u8>) = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => (s.octets().to_vec(), d.octets().to_vec()),
            (IpAddr::V6(s), IpAddr::V6(d)) => (s.octets().to_vec(), d.octets().to_vec()),
            _ => panic!("mixed address families in a fixture"),
        };
        let seg = if self.protocol == IPPROTO_TCP {
            tcp(&src, &dst, self.sport, self.dport, self.tcp_flags, self.payload)
        } else {
            udp(&src, &dst, self.sport, self.dport, self.payload)
        };
        let mut f = Vec::new();
        f.extend_from_slice(&self.eth_dst);
        f.extend_from_slice(&self.eth_src);
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&ETH_P_IPV4.to_be_bytes());
                let mut h = ipv4(s, d, self.protocol, seg.len());
                h[8] = self.ttl;
                h[10..12].copy_from_slice(&[0, 0]);
                let sum = checksum(&h);
                h[10..12].copy_from_slice(&sum.to_be_bytes());
                f.extend(h);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
                let mut h = ipv6(s, d, self.protocol, seg.len());
                h[7] = self.ttl;
                f.extend(h);
            }
            _ => unreachable!(),
        }
        f.extend(seg);
        f
    }
}

/// Checks every checksum of an Ethernet/IP/TCP-or-UDP frame with the
/// independent routine above; returns a description of the first bad one.
/// The L4 checksum covers the datagram the IP header declares (a UDP one
/// its UDP length), so Ethernet padding after it is not summed.
pub fn verify_checksums(frame: &[u8]) -> Result<(), String> {
    let ether_type = u16::from_be_bytes([frame[12], frame[13]]);
    let (l3, l4_off, l3_end, src, dst, protocol) = match ether_type {
        ETH_P_IPV4 => {
            let ihl = usize::from(frame[14] & 0x0f) * 4;
            if checksum(&frame[14..14 + ihl]) != 0 {
                return Err("bad IPv4 header checksum".into());
            }
            let end = 14 + usize::from(u16::from_be_bytes([frame[16], frame[17]]));
            (4, 14 + ihl, end, frame[26..30].to_vec(), frame[30..34].to_vec(), frame[23])
        }
        ETH_P_IPV6 => {
            // Walk hop-by-hop (0), routing (43) and destination-options (60) headers.
            let (mut next, mut off) = (frame[20], 54);
            while matches!(next, 0 | 43 | 60) {
                next = frame[off];
                off += (usize::from(frame[off + 1]) + 1) * 8;
            }
            let end = 54 + usize::from(u16::from_be_bytes([frame[18], frame[19]]));
            (6, off, end, frame[22..38].to_vec(), frame[38..54].to_vec(), next)
        }
        other => return Err(format!("not IP: ethertype {other:#06x}")),
    };
    if l3_end > frame.len() || l4_off > l3_end {
        return Err(format!("IP datagram ({l3_end} bytes with the Ethernet header) does not fit the {}-byte frame", frame.len()));
    }
    let seg = &frame[l4_off..l3_end];
    // ICMP (v4) sums the message alone, without a pseudo-header.
    if protocol == IPPROTO_ICMP && l3 == 4 {
        return if checksum(seg) == 0 { Ok(()) } else { Err("bad ICMP checksum".into()) };
    }
    if protocol == IPPROTO_UDP && l3 == 4 && seg[6..8] == [0, 0] {
        return Ok(());
    }
    // A UDP checksum covers the UDP length, which may end before the
    // datagram (the rest is trailing bytes, RFC 768).
    let udp_len = if protocol == IPPROTO_UDP && seg.len() >= 8 { usize::from(u16::from_be_bytes([seg[4], seg[5]])) } else { 0 };
    let seg = if (8..=seg.len()).contains(&udp_len) { &seg[..udp_len] } else { seg };
    if l4_checksum(&src, &dst, protocol, seg) != 0 {
        return Err(format!("bad L4 checksum (protocol {protocol})"));
    }
    Ok(())
}

/// A complete Ethernet/IPv4/TCP SYN frame.
pub fn ipv4_tcp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let seg = tcp(&src.octets(), &dst.octets(), sport, dport, 0x02, payload);
    let mut f = ethernet(ETH_P_IPV4);
    f.extend(ipv4(src, dst, IPPROTO_TCP, seg.len()));
    f.extend(seg);
    f
}

/// A complete Ethernet/IPv6/UDP frame.
pub fn ipv6_udp(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let seg = udp(&src.octets(), &dst.octets(), sport, dport, payload);
    let mut f = ethernet(ETH_P_IPV6);
    f.extend(ipv6(src, dst, IPPROTO_UDP, seg.len()));
    f.extend(seg);
    f
}

/// An ICMP "fragmentation needed" (IPv4) or "packet too big" (IPv6) from
/// `router` to `to`, quoting a TCP packet `quoted_src` → `quoted_dst`; every
/// checksum computed from scratch.
pub fn mtu_error(eth: (&[u8; 6], &[u8; 6]), router: IpAddr, to: IpAddr, ttl: u8, quoted_src: SocketAddr, quoted_dst: SocketAddr) -> Vec<u8> {
    mtu_error_about(eth, router, to, ttl, (quoted_src, quoted_dst, IPPROTO_TCP))
}

/// [`mtu_error`] quoting a `(source, destination, protocol)` TCP or UDP
/// packet: its IP header and the first 8 bytes of its TCP/UDP header, as
/// routers send them.
pub fn mtu_error_about(eth: (&[u8; 6], &[u8; 6]), router: IpAddr, to: IpAddr, ttl: u8, quoted: (SocketAddr, SocketAddr, u8)) -> Vec<u8> {
    let (quoted_src, quoted_dst, protocol) = quoted;
    // Ports, then the TCP sequence number or the UDP length and checksum.
    let (l4_len, rest) = if protocol == IPPROTO_UDP { (8, [0, 8, 0x12, 0x34]) } else { (20, 1000u32.to_be_bytes()) };
    let tcp8 = {
        let mut t = quoted_src.port().to_be_bytes().to_vec();
        t.extend_from_slice(&quoted_dst.port().to_be_bytes());
        t.extend_from_slice(&rest);
        t
    };
    let mut f = eth.0.to_vec();
    f.extend_from_slice(eth.1);
    match (router, to, quoted_src.ip(), quoted_dst.ip()) {
        (IpAddr::V4(r), IpAddr::V4(t), IpAddr::V4(qs), IpAddr::V4(qd)) => {
            let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0x78]; // MTU 1400
            icmp.extend(ipv4(qs, qd, protocol, l4_len));
            icmp.extend_from_slice(&tcp8);
            let sum = checksum(&icmp);
            icmp[2..4].copy_from_slice(&sum.to_be_bytes());
            f.extend_from_slice(&ETH_P_IPV4.to_be_bytes());
            let mut ip = ipv4(r, t, IPPROTO_ICMP, icmp.len());
            ip[8] = ttl;
            ip[10..12].copy_from_slice(&[0, 0]);
            let sum = checksum(&ip);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            f.extend(ip);
            f.extend(icmp);
        }
        (IpAddr::V6(r), IpAddr::V6(t), IpAddr::V6(qs), IpAddr::V6(qd)) => {
            let mut icmp = vec![2, 0, 0, 0, 0, 0, 0x05, 0x78];
            icmp.extend(ipv6(qs, qd, protocol, l4_len));
            icmp.extend_from_slice(&tcp8);
            let sum = l4_checksum(&r.octets(), &t.octets(), 58, &icmp);
            icmp[2..4].copy_from_slice(&sum.to_be_bytes());
            f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
            let mut ip = ipv6(r, t, 58, icmp.len());
            ip[7] = ttl;
            f.extend(ip);
            f.extend(icmp);
        }
        _ => panic!("mixed families"),
    }
    f
}

/// An ICMP echo request (IPv4) or ICMPv6 echo request from `from` to `to`.
pub fn echo_request(eth: (&[u8; 6], &[u8; 6]), from: IpAddr, to: IpAddr) -> Vec<u8> {
    let mut f = eth.0.to_vec();
    f.extend_from_slice(eth.1);
    match (from, to) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut icmp = vec![8, 0, 0, 0, 0, 1, 0, 1];
            let sum = checksum(&icmp);
            icmp[2..4].copy_from_slice(&sum.to_be_bytes());
            f.extend_from_slice(&ETH_P_IPV4.to_be_bytes());
            f.extend(ipv4(s, d, IPPROTO_ICMP, icmp.len()));
            f.extend(icmp);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut icmp = vec![128, 0, 0, 0, 0, 1, 0, 1];
            let sum = l4_checksum(&s.octets(), &d.octets(), 58, &icmp);
            icmp[2..4].copy_from_slice(&sum.to_be_bytes());
            f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
            f.extend(ipv6(s, d, 58, icmp.len()));
            f.extend(icmp);
        }
        _ => panic!("mixed families"),
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3 example: sum of these words is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(ones_complement_sum(&data, 0), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn built_headers_verify() {
        let (s, d) = (Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 1, 11));
        let f = ipv4_tcp(s, d, 40000, 8080, b"hi");
        // A correct header sums to zero (0xffff before inversion).
        assert_eq!(checksum(&f[14..34]), 0);
        assert_eq!(l4_checksum(&s.octets(), &d.octets(), IPPROTO_TCP, &f[34..]), 0);
        let (s6, d6) = ("fd00:198:18::2".parse().unwrap(), "fd00:198:18:1::11".parse().unwrap());
        let f6 = ipv6_udp(s6, d6, 40000, 8080, b"x");
        assert_eq!(f6.len(), 14 + 40 + 8 + 1);
        assert_eq!(l4_checksum(&s6.octets(), &d6.octets(), IPPROTO_UDP, &f6[54..]), 0);
    }
}
