//! Mutations of seed frames. Structure-aware ones find the fields they edit
//! with [`Layout`], a lenient walk of the headers (it only aims mutations;
//! judging is the reference parser's job, `reference.rs`); blind ones flip,
//! set, cut, extend and splice bytes. After mutating, checksums are often
//! recomputed so that frames get past "bad checksum" and reach deeper
//! checks; sometimes they are left wrong on purpose.

use fastrand::Rng;

use super::seeds::{self, CLIENT_PORTS};
use crate::packet;

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const VLAN_TPIDS: [u16; 3] = [0x8100, 0x88a8, 0x9100];

/// Where the headers of a frame are, as far as they can be walked.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Offset of the ethertype field that names the IP header.
    pub ether_type: usize,
    pub l3: usize,
    pub v6: bool,
    /// Offset of the field naming the transport protocol (IPv4 protocol, or
    /// the last next-header field of the IPv6 chain).
    pub proto_field: usize,
    pub proto: u8,
    pub l4: usize,
    /// End of the datagram as the IP header declares it, clamped to the frame.
    pub end: usize,
}

/// Walks Ethernet, up to three VLAN tags, IPv4 or IPv6 with extension headers.
pub fn layout(f: &[u8]) -> Option<Layout> {
    let be16 = |o: usize| f.get(o..o + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let mut et = 12;
    for _ in 0..3 {
        if !VLAN_TPIDS.contains(&be16(et)?) {
            break;
        }
        et += 4;
    }
    let l3 = et + 2;
    match be16(et)? {
        ETH_IPV4 => {
            let ihl = usize::from(*f.get(l3)? & 0x0f) * 4;
            let total = usize::from(be16(l3 + 2)?);
            let proto = *f.get(l3 + 9)?;
            Some(Layout { ether_type: et, l3, v6: false, proto_field: l3 + 9, proto, l4: l3 + ihl.max(20), end: (l3 + total).min(f.len()) })
        }
        ETH_IPV6 => {
            let end = (l3 + 40 + usize::from(be16(l3 + 4)?)).min(f.len());
            let (mut field, mut off) = (l3 + 6, l3 + 40);
            for _ in 0..8 {
                let next = *f.get(field)?;
                let len = match next {
                    0 | 43 | 60 => (usize::from(*f.get(off + 1)?) + 1) * 8,
                    44 => 8,
                    51 => (usize::from(*f.get(off + 1)?) + 2) * 4,
                    _ => break,
                };
                field = off;
                off += len;
            }
            Some(Layout { ether_type: et, l3, v6: true, proto_field: field, proto: *f.get(field)?, l4: off, end })
        }
        _ => None,
    }
}

fn be(f: &mut [u8], off: usize, v: u16) {
    if let Some(b) = f.get_mut(off..off + 2) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}

/// An offset biased towards the headers, where the decisions are made.
fn offset(rng: &mut Rng, len: usize) -> usize {
    if rng.u8(0..10) < 7 {
        rng.usize(0..len.min(96))
    } else {
        rng.usize(0..len)
    }
}

const INTERESTING: [u8; 8] = [0x00, 0x01, 0x05, 0x0f, 0x40, 0x7f, 0x80, 0xff];

/// Applies 1 to 4 random mutations to `f`; `pool` gives splice partners.
pub fn mutate(rng: &mut Rng, f: &mut Vec<u8>, pool: &[seeds::Seed]) {
    for _ in 0..rng.usize(1..=4) {
        if f.is_empty() {
            *f = random_bytes(rng, 1..128);
        }
        match rng.u8(0..16) {
            0 | 1 => {
                for _ in 0..rng.usize(1..=4) {
                    let o = offset(rng, f.len());
                    f[o] ^= 1 << rng.u8(0..8);
                }
            }
            2 => {
                let o = offset(rng, f.len());
                f[o] = INTERESTING[rng.usize(..INTERESTING.len())];
            }
            3 => f.truncate(rng.usize(0..f.len())),
            4 => {
                let n = rng.usize(1..64);
                let zeros = rng.bool();
                f.extend(std::iter::repeat_with(|| if zeros { 0 } else { rng.u8(..) }).take(n));
            }
            5..=7 => length_field(rng, f),
            8 => ipv6_chain(rng, f),
            9 => vlan_stack(rng, f),
            10 => ipv4_options(rng, f),
            11 => retarget(rng, f),
            12 => protocol(rng, f),
            13 => {
                // Splice: this frame's start, another seed's end.
                let other = &pool[rng.usize(..pool.len())].frame;
                let (a, b) = (rng.usize(0..=f.len()), rng.usize(0..=other.len()));
                f.truncate(a);
                f.extend_from_slice(&other[b..]);
            }
            14 => {
                let o = offset(rng, f.len());
                let n = rng.usize(1..=16).min(f.len() - o);
                rng.fill(&mut f[o..o + n]);
            }
            _ => {
                // Ethertype: another protocol, or IP of the other family.
                let et = layout(f).map_or(12, |l| l.ether_type);
                let v = [ETH_IPV4, ETH_IPV6, 0x8100, 0x88a8, 0x0806, rng.u16(..)][rng.usize(..6)];
                be(f, et, v);
            }
        }
    }
}

/// Entirely random bytes of a random length.
pub fn random_frame(rng: &mut Rng) -> Vec<u8> {
    random_bytes(rng, 0..200)
}

fn random_bytes(rng: &mut Rng, len: std::ops::Range<usize>) -> Vec<u8> {
    let mut out = vec![0; rng.usize(len)];
    rng.fill(&mut out);
    out
}

/// A value near `exact` (the consistent one), or an extreme.
fn around(rng: &mut Rng, exact: usize) -> u16 {
    match rng.u8(0..6) {
        0 => 0,
        1 => u16::MAX,
        2 => rng.u16(..),
        _ => (exact as i64 + rng.i64(-24..=24)).clamp(0, 0xffff) as u16,
    }
}

/// Edits one length field: IPv4 IHL or total length, IPv6 payload length,
/// TCP data offset, UDP length.
fn length_field(rng: &mut Rng, f: &mut [u8]) {
    let Some(l) = layout(f) else { return };
    let datagram = f.len() - l.l3;
    match rng.u8(0..4) {
        0 if !l.v6 => {
            if let Some(b) = f.get_mut(l.l3) {
                *b = (*b & 0xf0) | rng.u8(0..16);
            }
        }
        1 if !l.v6 => be(f, l.l3 + 2, around(rng, datagram)),
        0 | 1 => be(f, l.l3 + 4, around(rng, datagram.saturating_sub(40))),
        2 if l.proto == packet::IPPROTO_TCP => {
            if let Some(b) = f.get_mut(l.l4 + 12) {
                *b = (*b & 0x0f) | (rng.u8(0..16) << 4);
            }
        }
        _ if l.proto == packet::IPPROTO_UDP => be(f, l.l4 + 4, around(rng, l.end.saturating_sub(l.l4))),
        _ => {}
    }
}

/// Replaces the IPv6 extension headers by a random chain of hop-by-hop,
/// routing, destination-options and fragment headers (sometimes out of the
/// required order, sometimes more than the program walks).
fn ipv6_chain(rng: &mut Rng, f: &mut Vec<u8>) {
    let Some(l) = layout(f) else { return };
    if !l.v6 || f.len() < l.l3 + 40 {
        return;
    }
    let transport = f.get(l.proto_field).copied().unwrap_or(6);
    let mut rest = f.split_off(l.l4.min(f.len()));
    f.truncate(l.l3 + 40);
    let mut field = l.l3 + 6;
    for _ in 0..rng.usize(0..=5) {
        let kind = [0, 43, 60, 44, 0, 60][rng.usize(..6)];
        f[field] = kind;
        field = f.len();
        if kind == 44 {
            // Mostly atomic fragments (offset 0, M clear), which carry ports.
            let off_flags: u16 = if rng.u8(0..4) == 0 { rng.u16(..) & 0xfff9 } else { 0 };
            f.extend_from_slice(&[0, 0]);
            f.extend_from_slice(&off_flags.to_be_bytes());
            f.extend_from_slice(&rng.u32(..).to_be_bytes());
        } else {
            let units = rng.u8(0..3);
            let mut h = vec![0, units];
            h.resize((usize::from(units) + 1) * 8, 0);
            if kind != 43 {
                h[2] = 1; // PadN over the rest
                h[3] = (h.len() - 4) as u8;
            }
            f.extend(h);
        }
    }
    f[field] = transport;
    f.append(&mut rest);
    let payload = (f.len() - l.l3 - 40) as u16;
    be(f, l.l3 + 4, payload);
}

/// Strips the VLAN tags and pushes 0, 1 or 2 new ones.
fn vlan_stack(rng: &mut Rng, f: &mut Vec<u8>) {
    if f.len() < 14 {
        return;
    }
    let mut et = 12;
    while et + 4 <= f.len() && VLAN_TPIDS.contains(&u16::from_be_bytes([f[et], f[et + 1]])) {
        et += 4;
    }
    f.drain(12..et);
    for _ in 0..rng.usize(0..=2) {
        let tpid = VLAN_TPIDS[rng.usize(..VLAN_TPIDS.len())];
        let tagged = seeds::vlan_tagged(f, tpid, rng.u16(..));
        *f = tagged;
    }
}

/// Inserts 1 to 10 words of IPv4 options (NOP, end-of-list or random bytes).
fn ipv4_options(rng: &mut Rng, f: &mut Vec<u8>) {
    let Some(l) = layout(f) else { return };
    if l.v6 || f.len() < l.l3 + 20 {
        return;
    }
    let ihl = usize::from(f[l.l3] & 0x0f);
    let words = rng.usize(1..=10).min(15usize.saturating_sub(ihl.max(5)));
    let at = (l.l3 + ihl.max(5) * 4).min(f.len());
    let kind = rng.u8(0..3);
    let opts: Vec<u8> = (0..words * 4).map(|_| [1, 0, rng.u8(..)][usize::from(kind)]).collect();
    f.splice(at..at, opts);
    f[l.l3] = (f[l.l3] & 0xf0) | (ihl.max(5) + words) as u8;
    let total = u16::from_be_bytes([f[l.l3 + 2], f[l.l3 + 3]]).wrapping_add((words * 4) as u16);
    be(f, l.l3 + 2, total);
}

/// Points the frame at another source, destination or port: allowed and
/// denied sources, VIP addresses, the seeds' client ports, VIP ports.
fn retarget(rng: &mut Rng, f: &mut [u8]) {
    let Some(l) = layout(f) else { return };
    let ip = match rng.u8(0..4) {
        0 => seeds::client(l.v6),
        1 => seeds::other_allowed(l.v6),
        2 => seeds::denied(l.v6),
        _ => {
            let v4 = ["198.18.100.1", "198.18.100.2", "198.18.100.3", "198.18.100.5", "198.18.1.11"];
            let v6 = ["fd00:198:18:100::1", "fd00:198:18:100::2", "fd00:198:18:100::3", "fd00:198:18:1::11"];
            let list: &[&str] = if l.v6 { &v6 } else { &v4 };
            list[rng.usize(..list.len())].parse().expect("a literal address")
        }
    };
    let octets = match ip {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    };
    let (src, dst) = if l.v6 { (l.l3 + 8, l.l3 + 24) } else { (l.l3 + 12, l.l3 + 16) };
    let n = octets.len();
    match rng.u8(0..4) {
        0 | 1 => {
            let at = if rng.bool() { src } else { dst };
            if let Some(b) = f.get_mut(at..at + n) {
                b.copy_from_slice(&octets);
            }
        }
        2 => be(f, l.l4, CLIENT_PORTS[rng.usize(..CLIENT_PORTS.len())]),
        _ => be(f, l.l4 + 2, [53, 80, 443, 8080, 22, rng.u16(..)][rng.usize(..6)]),
    }
    if l.proto == packet::IPPROTO_TCP && rng.bool() {
        // TCP flags too: SYN, ACK, FIN, RST in any mix (conntrack cares).
        if let Some(b) = f.get_mut(l.l4 + 13) {
            *b = rng.u8(..) & 0x1f;
        }
    }
}

/// Sets the transport protocol (or next header) to another value.
fn protocol(rng: &mut Rng, f: &mut [u8]) {
    let Some(l) = layout(f) else { return };
    let v = [6, 17, 1, 58, 0, 43, 44, 60, 51, 59, rng.u8(..)][rng.usize(..11)];
    if let Some(b) = f.get_mut(l.proto_field) {
        *b = v;
    }
}

/// Recomputes the IPv4 header checksum and the TCP/UDP/ICMP checksum over
/// what the IP header declares (when it lies inside the frame). A UDP/IPv4
/// checksum of zero ("none") is left alone.
pub fn fix_checksums(f: &mut [u8]) {
    let Some(l) = layout(f) else { return };
    if !l.v6 {
        seeds::fix_ipv4_header(f, l.l3);
    }
    if l.l4 > l.end || l.end > f.len() {
        return;
    }
    let (src, dst) = if l.v6 {
        (f[l.l3 + 8..l.l3 + 24].to_vec(), f[l.l3 + 24..l.l3 + 40].to_vec())
    } else {
        (f[l.l3 + 12..l.l3 + 16].to_vec(), f[l.l3 + 16..l.l3 + 20].to_vec())
    };
    let mut seg_end = l.end;
    let field = match l.proto {
        packet::IPPROTO_TCP => 16,
        packet::IPPROTO_UDP => {
            let ulen = f.get(l.l4 + 4..l.l4 + 6).map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
            if (8..=l.end - l.l4).contains(&ulen) {
                seg_end = l.l4 + ulen;
            }
            if !l.v6 && f.get(l.l4 + 6..l.l4 + 8) == Some(&[0, 0]) {
                return;
            }
            6
        }
        packet::IPPROTO_ICMP | 58 => 2,
        _ => return,
    };
    if l.l4 + field + 2 > seg_end {
        return;
    }
    f[l.l4 + field..l.l4 + field + 2].copy_from_slice(&[0, 0]);
    let seg = &f[l.l4..seg_end];
    let sum = if l.proto == packet::IPPROTO_ICMP { packet::checksum(seg) } else { packet::l4_checksum(&src, &dst, l.proto, seg) };
    // A computed zero goes out as 0xffff (same value in one's complement;
    // zero would mean "no checksum" for UDP).
    let sum = if sum == 0 && l.proto == packet::IPPROTO_UDP { 0xffff } else { sum };
    f[l.l4 + field..l.l4 + field + 2].copy_from_slice(&sum.to_be_bytes());
}
