//! Bounds-checked header access and parsing a frame into a [`Packet`].
//!
//! Rule for malformed frames (docs/xdp.md): a frame is `Malformed` when it is
//! cut short inside the Ethernet header, the VLAN tag, the IP header or an
//! IPv6 extension header; when an IPv4 header has a version other than 4, an
//! IHL below 5, or a total length shorter than its header or longer than the
//! frame; when an IPv6 header has a version other than 6, a payload length
//! longer than the frame, or extension headers that do not fit in the
//! payload length; or when more than `MAX_IPV6_EXT` extension headers
//! precede the transport header. Such frames carry no trustworthy
//! destination, so they are counted and passed to the kernel, which drops
//! what it cannot use.
//!
//! Everything after the IP header is read inside the datagram the IP header
//! declares (`Packet::l3_end`), not merely inside the frame: a frame may be
//! longer than its datagram (Ethernet padding of short packets), and bytes
//! past the datagram's end are no part of the packet. A TCP/UDP header that
//! does not end inside the datagram is `Ports::Truncated`, and so is one
//! whose own length field is inconsistent: a TCP data offset below 5 or
//! reaching past the datagram, a UDP length below 8 or past the datagram.

use aya_ebpf::programs::XdpContext;
use lb_common::lb::{FlowKey, FAMILY_V4, FAMILY_V6, TCP_CLOSING, TCP_RESET};

use crate::{headers::*, mem};

/// IPv6 extension headers walked before giving up (hop-by-hop, routing,
/// destination options and fragment are walked; others end the walk).
const MAX_IPV6_EXT: usize = 4;

/// Furthest offset any header is read at (Ethernet + VLAN + IPv6 and four
/// extension headers of at most 2 KiB each stay far below it).
const MAX_HEADER_OFFSET: usize = 16384;

/// What the balancer needs to know about an IP packet.
pub struct Packet {
    pub l3_off: usize,
    pub l4_off: usize,
    /// End of the IP datagram (frame offset) as its header declares it;
    /// never past the frame's end (that is malformed). Bounds every read
    /// after the IP header (`ptr_in`).
    pub l3_end: usize,
    /// Addresses, ports (host order; zero unless `ports` is `Present`),
    /// transport protocol (after IPv6 extension headers) and family. Kept as
    /// a conntrack key so lookups need no copy on the 512-byte BPF stack.
    pub key: FlowKey,
    /// Part of a fragmented datagram (first or later fragment).
    pub fragment: bool,
    pub ports: Ports,
    /// TCP flags (host order) when the protocol is TCP.
    pub tcp_flags: u16,
    /// Scratch key for the flow quoted inside an ICMP error.
    pub inner: FlowKey,
}

impl Packet {
    /// A TCP segment with FIN or RST: it closes its flow, whichever side
    /// sends it (conntrack and reverse-NAT entries are marked closing).
    #[inline(always)]
    pub fn closes_flow(&self) -> bool {
        self.key.protocol == IPPROTO_TCP && self.tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST) != 0
    }

    /// The conntrack `tcp_state` bits a segment that [`closes_flow`] adds,
    /// `fin` being the bit of its sender's FIN: `TCP_CLOSING` with
    /// `TCP_RESET` for a RST, with `fin` for a FIN (0 where the program sees
    /// only the client's side, DSR: the client's FIN then closes the entry).
    ///
    /// [`closes_flow`]: Packet::closes_flow
    #[inline(always)]
    pub fn closing_bits(&self, fin: u8) -> u8 {
        TCP_CLOSING | if self.tcp_flags & TCP_FLAG_RST != 0 { TCP_RESET } else { fin }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// Not TCP/UDP, or a fragment: no ports to read.
    None,
    Present,
    /// TCP/UDP whose header is cut short by the frame or the datagram's end,
    /// or whose TCP data offset / UDP length does not fit the datagram.
    Truncated,
}

pub enum Parsed {
    NotIp,
    Malformed,
    /// `Packet` was filled in.
    Ip,
}

/// Returns a pointer to a `T` at `offset`, or `None` if it would run past the
/// end of the frame. Every access goes through here so the verifier sees the check.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    // Offsets read back from the scratch map are unbounded scalars to the
    // verifier; this explicit bound lets it accept the pointer arithmetic.
    if offset > MAX_HEADER_OFFSET {
        return None;
    }
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// `ptr_at`, and the `T` must also end at or before `*end`, the end of the IP
/// datagram (`Packet::l3_end`): for everything after the IP header.
///
/// `end` is read with a volatile load. LLVM knows from the parser's check
/// that the datagram end lies inside the frame, so with a plain value it
/// proves the frame check in `ptr_at` redundant and drops it; the verifier,
/// which only trusts comparisons of packet pointers with `data_end`, then
/// rejects the access.
#[inline(always)]
pub fn ptr_in<T>(ctx: &XdpContext, offset: usize, end: &usize) -> Option<*mut T> {
    let ptr = ptr_at(ctx, offset)?;
    // SAFETY: `end` is a valid reference.
    if offset + core::mem::size_of::<T>() > unsafe { core::ptr::read_volatile(end) } {
        return None;
    }
    Some(ptr)
}

/// Parses the frame into `out`, which lives in a per-CPU scratch map rather
/// than on the 512-byte BPF stack.
#[inline(always)]
pub fn parse(ctx: &XdpContext, out: &mut Packet) -> Parsed {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return Parsed::Malformed;
    };
    // SAFETY: ptr_at checked the header lies inside the frame.
    let mut ether_type = u16::from_be(unsafe { (*eth).ether_type });
    let mut offset = core::mem::size_of::<EthHdr>();
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        let Some(vlan) = ptr_at::<VlanHdr>(ctx, offset) else {
            return Parsed::Malformed;
        };
        // SAFETY: bounds checked above.
        ether_type = u16::from_be(unsafe { (*vlan).ether_type });
        offset += core::mem::size_of::<VlanHdr>();
    }
    let parsed = match ether_type {
        ETH_P_IPV4 => parse_ipv4(ctx, offset, out),
        ETH_P_IPV6 => parse_ipv6(ctx, offset, out),
        _ => return Parsed::NotIp,
    };
    if parsed.is_none() {
        return Parsed::Malformed;
    }
    parse_ports(ctx, out);
    Parsed::Ip
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, offset: usize, p: &mut Packet) -> Option<()> {
    let ip = ptr_at::<Ipv4Hdr>(ctx, offset)?;
    // SAFETY: bounds checked by ptr_at.
    let (version_ihl, total_len, frag_off, protocol, src, dst) =
        unsafe { ((*ip).version_ihl, u16::from_be((*ip).total_len) as usize, u16::from_be((*ip).frag_off), (*ip).protocol, (*ip).src, (*ip).dst) };
    let header_len = ((version_ihl & 0x0f) as usize) * 4;
    if version_ihl >> 4 != 4 || header_len < core::mem::size_of::<Ipv4Hdr>() {
        return None;
    }
    let frame_left = ctx.data_end() - ctx.data() - offset;
    if total_len < header_len || total_len > frame_left {
        return None;
    }
    p.reset(offset, offset + header_len, offset + total_len, FAMILY_V4, protocol);
    mem::set_v4(&mut p.key.src, src);
    mem::set_v4(&mut p.key.dst, dst);
    // More-fragments flag or a non-zero offset.
    p.fragment = frag_off & 0x3fff != 0;
    Some(())
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, offset: usize, p: &mut Packet) -> Option<()> {
    let ip = ptr_at::<Ipv6Hdr>(ctx, offset)?;
    // SAFETY: bounds checked by ptr_at.
    let (first, mut next, payload_len) = unsafe { ((*ip).version_class_flow[0], (*ip).next_header, u16::from_be((*ip).payload_len) as usize) };
    if first >> 4 != 6 {
        return None;
    }
    let mut l4 = offset + core::mem::size_of::<Ipv6Hdr>();
    // A payload length of 0 (a jumbogram's) ends the datagram here: its
    // hop-by-hop header is then outside it, so the kernel gets it (malformed).
    let end = l4 + payload_len;
    if end > ctx.data_end() - ctx.data() {
        return None;
    }
    // Where `ptr_in` reads it; `reset` writes the same value again.
    p.l3_end = end;
    let mut fragment = false;
    for i in 0..MAX_IPV6_EXT {
        match next {
            // Hop-by-hop options may only come first, right after the fixed
            // header (RFC 8200 4.1); receivers reject them anywhere else.
            IPPROTO_HOPOPTS if i > 0 => return None,
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let ext = ptr_in::<Ipv6ExtHdr>(ctx, l4, &p.l3_end)?;
                // SAFETY: bounds checked by ptr_at.
                let (nh, len) = unsafe { ((*ext).next_header, (*ext).len) };
                next = nh;
                l4 += (len as usize + 1) * 8;
            }
            IPPROTO_FRAGMENT => {
                let frag = ptr_in::<Ipv6FragHdr>(ctx, l4, &p.l3_end)?;
                // SAFETY: bounds checked by ptr_at.
                let (nh, off_flags) = unsafe { ((*frag).next_header, u16::from_be((*frag).frag_off_flags)) };
                next = nh;
                // Offset (high 13 bits) or the M flag (bit 0), in any
                // fragment header of the chain (a later atomic one does not
                // undo an earlier real one).
                fragment |= off_flags & 0xfff9 != 0;
                l4 += core::mem::size_of::<Ipv6FragHdr>();
            }
            _ => break,
        }
    }
    // Too many extension headers, or the last one runs past the datagram.
    if matches!(next, IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_FRAGMENT) || l4 > end {
        return None;
    }
    p.reset(offset, l4, end, FAMILY_V6, next);
    // Straight from the packet as halfwords (mem.rs), not through a stack
    // copy that LLVM would turn into a memmove call.
    // SAFETY: bounds checked by ptr_at; the header starts at an even offset.
    unsafe {
        mem::copy_from_packet(&mut p.key.src, &raw const (*ip).src);
        mem::copy_from_packet(&mut p.key.dst, &raw const (*ip).dst);
    }
    p.fragment = fragment;
    Some(())
}

#[inline(always)]
fn parse_ports(ctx: &XdpContext, p: &mut Packet) {
    if p.fragment || !(p.key.protocol == IPPROTO_TCP || p.key.protocol == IPPROTO_UDP) {
        return;
    }
    if p.key.protocol == IPPROTO_TCP {
        let Some(tcp) = ptr_in::<TcpHdr>(ctx, p.l4_off, &p.l3_end) else {
            p.ports = Ports::Truncated;
            return;
        };
        // SAFETY: bounds checked by ptr_at.
        let off_flags = unsafe {
            p.key.sport = u16::from_be((*tcp).sport);
            p.key.dport = u16::from_be((*tcp).dport);
            u16::from_be((*tcp).off_flags)
        };
        p.tcp_flags = off_flags & 0x01ff;
        // The data offset must cover the fixed header and end inside the
        // datagram (options included), or the receiver drops the segment.
        let header_len = ((off_flags >> 12) as usize) * 4;
        if header_len < core::mem::size_of::<TcpHdr>() || p.l4_off + header_len > p.l3_end {
            p.ports = Ports::Truncated;
            return;
        }
    } else {
        let Some(udp) = ptr_in::<UdpHdr>(ctx, p.l4_off, &p.l3_end) else {
            p.ports = Ports::Truncated;
            return;
        };
        // SAFETY: bounds checked by ptr_at.
        let len = unsafe {
            p.key.sport = u16::from_be((*udp).sport);
            p.key.dport = u16::from_be((*udp).dport);
            u16::from_be((*udp).len) as usize
        };
        // The UDP length covers at least its header and ends inside the
        // datagram (it may end before it: the rest is trailing bytes). A
        // length of 0 (jumbograms) is not handled.
        if len < core::mem::size_of::<UdpHdr>() || p.l4_off + len > p.l3_end {
            p.ports = Ports::Truncated;
            return;
        }
    }
    p.ports = Ports::Present;
}

impl Packet {
    #[inline(always)]
    fn reset(&mut self, l3_off: usize, l4_off: usize, l3_end: usize, family: u8, protocol: u8) {
        self.l3_off = l3_off;
        self.l4_off = l4_off;
        self.l3_end = l3_end;
        mem::zero_key(&mut self.key);
        self.key.protocol = protocol;
        self.key.family = family;
        self.fragment = false;
        self.ports = Ports::None;
        self.tcp_flags = 0;
    }
}
