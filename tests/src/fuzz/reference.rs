//! The reference parser the fuzzer judges the program by: the `etherparse`
//! crate's strict slicing (`SlicedPacket::from_ethernet`), which shares no
//! code with lb-ebpf or with this crate's `packet` module, plus two RFC rules
//! it leaves to its caller:
//!
//! - a UDP length field of 0 is malformed (RFC 768: at least 8; etherparse
//!   reads 0 as "the rest of the slice", for jumbograms, which the program
//!   does not handle);
//! - an ICMP error's quote must hold a whole IP header of the outer
//!   header's family and at least the 4 bytes of TCP/UDP ports after it.
//!
//! Checksums are summed here with etherparse's `Sum16BitWords` over the
//! slices etherparse returns.

use std::net::IpAddr;

use etherparse::{checksum::Sum16BitWords, Ipv4HeaderSlice, Ipv6HeaderSlice, NetSlice, SlicedPacket, TransportSlice};

pub const ICMP: u8 = 1;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMPV6: u8 = 58;

/// The IP header of a well-formed packet, with frame offsets.
#[derive(Clone, Copy, Debug)]
pub struct Ip {
    pub v6: bool,
    pub off: usize,
    pub hdr_len: usize,
    pub src: IpAddr,
    pub dst: IpAddr,
}

impl Ip {
    /// Offset of the TTL (IPv4) or hop limit (IPv6).
    pub fn ttl_off(&self) -> usize {
        self.off + if self.v6 { 7 } else { 8 }
    }

    /// Offsets of the source and destination address fields, and their size.
    pub fn addr_offs(&self) -> (usize, usize, usize) {
        if self.v6 {
            (self.off + 8, self.off + 24, 16)
        } else {
            (self.off + 12, self.off + 16, 4)
        }
    }
}

/// A TCP or UDP header and the bytes its checksum covers.
#[derive(Clone, Copy, Debug)]
pub struct Transport {
    pub proto: u8,
    pub off: usize,
    /// Bytes the checksum covers (TCP: to the datagram's end; UDP: its length field).
    pub len: usize,
    pub sport: u16,
    pub dport: u16,
}

impl Transport {
    pub fn check_off(&self) -> usize {
        self.off + if self.proto == TCP { 16 } else { 6 }
    }
}

/// The IP header and ports quoted inside an ICMP error.
#[derive(Clone, Copy, Debug)]
pub struct Quote {
    pub ip: Ip,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

#[derive(Clone, Copy, Debug)]
pub struct Icmp {
    pub off: usize,
    /// The whole message (to the datagram's end): what its checksum covers.
    pub len: usize,
    pub kind: u8,
    pub code: u8,
    /// `None` when the quote is no IP header of the outer family with
    /// TCP/UDP ports after it.
    pub quote: Option<Quote>,
}

#[derive(Clone, Copy, Debug)]
pub enum L4 {
    Transport(Transport),
    Icmp(Icmp),
}

/// A well-formed, unfragmented IP packet carrying TCP, UDP or ICMP(v6).
#[derive(Clone, Copy, Debug)]
pub struct Packet {
    pub ip: Ip,
    pub l4: L4,
}

fn offset_in(frame: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - frame.as_ptr() as usize
}

/// Parses `frame`; `Err` says why it is not a well-formed TCP, UDP or ICMP
/// packet over IPv4 or IPv6.
pub fn parse(frame: &[u8]) -> Result<Packet, String> {
    let sliced = SlicedPacket::from_ethernet(frame).map_err(|e| format!("malformed: {e}"))?;
    let ip = match &sliced.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header();
            if v4.is_payload_fragmented() {
                return Err("an IPv4 fragment".into());
            }
            Ip { v6: false, off: offset_in(frame, h.slice()), hdr_len: h.slice().len(), src: h.source_addr().into(), dst: h.destination_addr().into() }
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header();
            if v6.is_payload_fragmented() {
                return Err("an IPv6 fragment".into());
            }
            Ip { v6: true, off: offset_in(frame, h.slice()), hdr_len: h.slice().len(), src: h.source_addr().into(), dst: h.destination_addr().into() }
        }
        Some(NetSlice::Arp(_)) => return Err("ARP".into()),
        None => return Err("not IP (or more VLAN tags than the reference walks)".into()),
    };
    let l4 = match &sliced.transport {
        Some(TransportSlice::Tcp(t)) => {
            L4::Transport(Transport { proto: TCP, off: offset_in(frame, t.slice()), len: t.slice().len(), sport: t.source_port(), dport: t.destination_port() })
        }
        Some(TransportSlice::Udp(u)) => {
            if u.length() == 0 {
                return Err("malformed: UDP length 0".into());
            }
            L4::Transport(Transport { proto: UDP, off: offset_in(frame, u.slice()), len: u.slice().len(), sport: u.source_port(), dport: u.destination_port() })
        }
        Some(TransportSlice::Icmpv4(i)) if !ip.v6 => L4::Icmp(Icmp {
            off: offset_in(frame, i.slice()),
            len: i.slice().len(),
            kind: i.type_u8(),
            code: i.code_u8(),
            quote: quote(frame, i.payload(), false),
        }),
        Some(TransportSlice::Icmpv6(i)) if ip.v6 => L4::Icmp(Icmp {
            off: offset_in(frame, i.slice()),
            len: i.slice().len(),
            kind: i.type_u8(),
            code: i.code_u8(),
            quote: quote(frame, i.payload(), true),
        }),
        Some(TransportSlice::Icmpv4(_) | TransportSlice::Icmpv6(_)) => return Err("ICMP of the other IP family".into()),
        Some(TransportSlice::Igmp(_)) => return Err("IGMP".into()),
        None => return Err("no TCP, UDP or ICMP header".into()),
    };
    Ok(Packet { ip, l4 })
}

/// The IP header and ports an ICMP error quotes.
fn quote(frame: &[u8], payload: &[u8], v6: bool) -> Option<Quote> {
    let (ip, proto) = if v6 {
        let h = Ipv6HeaderSlice::from_slice(payload).ok()?;
        let ip = Ip { v6, off: offset_in(frame, h.slice()), hdr_len: h.slice().len(), src: h.source_addr().into(), dst: h.destination_addr().into() };
        (ip, h.next_header().0)
    } else {
        let h = Ipv4HeaderSlice::from_slice(payload).ok()?;
        let ip = Ip { v6, off: offset_in(frame, h.slice()), hdr_len: h.slice().len(), src: h.source_addr().into(), dst: h.destination_addr().into() };
        (ip, h.protocol().0)
    };
    let ports = payload.get(ip.hdr_len..ip.hdr_len + 4)?;
    if proto != TCP && proto != UDP {
        return None;
    }
    Some(Quote { ip, proto, sport: u16::from_be_bytes([ports[0], ports[1]]), dport: u16::from_be_bytes([ports[2], ports[3]]) })
}

/// The state of one checksum field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sum {
    Valid,
    Invalid,
    /// A UDP/IPv4 checksum of zero: none was computed.
    Absent,
}

fn state(sum: Sum16BitWords) -> Sum {
    // Summed with the checksum field in place, a correct message folds to
    // 0xffff, whose complement is 0.
    if sum.ones_complement() == 0 {
        Sum::Valid
    } else {
        Sum::Invalid
    }
}

/// The header checksum of the IPv4 header `ip` (`None` for IPv6).
pub fn ip_header_sum(frame: &[u8], ip: &Ip) -> Option<Sum> {
    (!ip.v6).then(|| state(Sum16BitWords::new().add_slice(&frame[ip.off..ip.off + ip.hdr_len])))
}

fn pseudo(frame: &[u8], ip: &Ip, proto: u8, len: usize) -> Sum16BitWords {
    let (s, d, n) = ip.addr_offs();
    let sum = Sum16BitWords::new().add_slice(&frame[s..s + n]).add_slice(&frame[d..d + n]);
    if ip.v6 {
        sum.add_slice(&(len as u32).to_be_bytes()).add_slice(&[0, 0, 0, proto])
    } else {
        sum.add_2bytes([0, proto]).add_2bytes((len as u16).to_be_bytes())
    }
}

/// The TCP, UDP or ICMP checksum of `p`.
pub fn l4_sum(frame: &[u8], p: &Packet) -> Sum {
    match p.l4 {
        L4::Transport(t) => {
            let stored = &frame[t.check_off()..t.check_off() + 2];
            if t.proto == UDP && stored == [0, 0] {
                // "No checksum" exists over IPv4 only (RFC 8200 forbids it for IPv6).
                return if p.ip.v6 { Sum::Invalid } else { Sum::Absent };
            }
            state(pseudo(frame, &p.ip, t.proto, t.len).add_slice(&frame[t.off..t.off + t.len]))
        }
        L4::Icmp(i) => {
            let msg = &frame[i.off..i.off + i.len];
            if p.ip.v6 {
                state(pseudo(frame, &p.ip, ICMPV6, i.len).add_slice(msg))
            } else {
                state(Sum16BitWords::new().add_slice(msg))
            }
        }
    }
}
