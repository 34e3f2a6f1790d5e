//! Sending a packet on: next hop from `bpf_fib_lookup`, DNAT and reverse NAT
//! rewrites with incremental checksums, XDP_TX or XDP_REDIRECT.

use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibParams, xdp_action, BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS},
    helpers::generated::bpf_fib_lookup,
    programs::XdpContext,
    EbpfContext,
};
use lb_common::{
    lb::{BackendInfo, NextHop, FAMILY_V4, NEXT_HOP_REFRESH_NS},
    Stat,
};

use crate::{
    csum,
    headers::*,
    maps::{BACKEND_HOPS, FIB_SCRATCH, TX_PORTS},
    mem,
    parse::{ptr_at, Packet},
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Where a rewritten packet goes next.
pub enum Egress {
    /// Sent by XDP (TX or REDIRECT); the stat says what kind of forward.
    Sent(u32),
    /// Rewritten, but the neighbour is unresolved: the kernel forwards it
    /// (and resolves ARP/NDP so later packets take the fast path).
    Kernel,
    NoRoute,
}

/// Sends the packet to its next hop towards `dst`: rewrites the Ethernet
/// addresses, decrements TTL / hop limit like any router, and picks XDP_TX or
/// XDP_REDIRECT. The next hop comes from `hop` while it is younger than
/// `NEXT_HOP_REFRESH_NS`; otherwise (or when `hop` holds none) from
/// `bpf_fib_lookup`, whose successful result is stored back into `hop`.
///
/// Inlined, like `rewrite` and `balance::choose`: as BPF-to-BPF calls the
/// three cost an established NAT packet 26 ns over IPv4 and 22 ns over
/// IPv6, a fifth of the program (docs/xdp.md, "Where an established NAT
/// forward's time goes"), and the verifier's 512-byte limit on the stack of
/// a call chain holds without them.
#[inline(always)]
pub fn route(ctx: &XdpContext, p: &Packet, dst: &[u8; 16], hop: &mut NextHop, now: u64) -> Egress {
    if hop.ifindex == 0 || now.saturating_sub(hop.looked_up_ns) >= NEXT_HOP_REFRESH_NS {
        let rc = fib_lookup(ctx, p, dst, hop, now);
        if rc == BPF_FIB_LKUP_RET_NO_NEIGH {
            return Egress::Kernel;
        }
        if rc != BPF_FIB_LKUP_RET_SUCCESS {
            return Egress::NoRoute;
        }
    }
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else { return Egress::NoRoute };
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        mem::copy_mac(&mut (*eth).dst, &hop.dmac);
        mem::copy_mac(&mut (*eth).src, &hop.smac);
    }
    decrement_ttl(ctx, p);
    if hop.ifindex == ctx.ingress_ifindex() as u32 {
        return Egress::Sent(xdp_action::XDP_TX);
    }
    match TX_PORTS.redirect(hop.ifindex, 0) {
        Ok(action) => Egress::Sent(action),
        Err(_) => Egress::NoRoute,
    }
}

/// Sends the packet towards backend `id`. In DSR mode a backend with a
/// configured MAC is on the segment the packet arrived on: the frame goes
/// back out of that interface (XDP_TX) with the backend's MAC as destination
/// and the old destination (this interface's own MAC) as source, no route or
/// neighbour lookup. Otherwise the next hop comes from [`route`].
#[inline(always)]
pub fn towards_backend(ctx: &XdpContext, p: &Packet, id: u32, backend: &BackendInfo, dsr: bool, now: u64) -> Egress {
    if dsr && mem::mac_is_set(&backend.mac) {
        let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else { return Egress::NoRoute };
        // SAFETY: bounds checked by ptr_at; source and destination are
        // distinct fields.
        unsafe {
            mem::copy_mac(&mut (*eth).src, &(*eth).dst);
            mem::copy_mac(&mut (*eth).dst, &backend.mac);
        }
        decrement_ttl(ctx, p);
        return Egress::Sent(xdp_action::XDP_TX);
    }
    let Some(hop) = backend_hop(id, &backend.addr, ctx.ingress_ifindex() as u32) else { return Egress::NoRoute };
    route(ctx, p, &backend.addr, hop, now)
}

/// This CPU's remembered next hop towards backend `id` at `addr`, for
/// packets arriving on `ingress`; emptied when the slot was remembered for
/// another address (a reused backend id) or another ingress interface.
#[inline(always)]
fn backend_hop(id: u32, addr: &[u8; 16], ingress: u32) -> Option<&'static mut NextHop> {
    let slot = BACKEND_HOPS.get_ptr_mut(id)?;
    // SAFETY: this CPU's slot from a successful lookup; XDP programs do not
    // preempt each other.
    let slot = unsafe { &mut *slot };
    if slot.ingress_ifindex != ingress || !mem::addr_eq(&slot.addr, addr) {
        mem::copy_addr(&mut slot.addr, addr);
        slot.ingress_ifindex = ingress;
        slot.hop.ifindex = 0;
    }
    Some(&mut slot.hop)
}

/// `bpf_fib_lookup` for `dst` from the packet's source on its ingress
/// interface; on success the result goes into `hop` (stamped `now`), on any
/// other outcome `hop` is emptied. Returns the lookup's return code.
#[inline(always)]
fn fib_lookup(ctx: &XdpContext, p: &Packet, dst: &[u8; 16], hop: &mut NextHop, now: u64) -> u32 {
    hop.ifindex = 0;
    let src = &p.key.src;
    // The 64-byte lookup parameters live in a per-CPU scratch map: on the
    // stack they would push the deepest call chain past 512 bytes.
    let Some(params) = FIB_SCRATCH.get_ptr_mut(0) else { return BPF_FIB_LKUP_RET_NOT_FWDED };
    // SAFETY: this CPU's slot, any bit pattern is a valid bpf_fib_lookup.
    let params = unsafe { &mut *params };
    // Every input field is written (no write_bytes: that would be a call to a
    // byte-at-a-time memset, see mem.rs); the outputs need no clearing. Ports
    // and tot_len stay 0 (no multipath hash input, no MTU check), tos /
    // flowinfo 0, and no flags, so tbid/mark are not read.
    params.family = if p.key.family == FAMILY_V4 { AF_INET } else { AF_INET6 };
    params.l4_protocol = p.key.protocol;
    params.sport = 0;
    params.dport = 0;
    params.__bindgen_anon_1.tot_len = 0;
    params.ifindex = ctx.ingress_ifindex() as u32;
    params.__bindgen_anon_2.flowinfo = 0;
    // The IPv4 address is the first word of the 16-byte form (the rest is
    // zero), which is also where the kernel reads ipv4_src / ipv4_dst.
    params.__bindgen_anon_3.ipv6_src = words(src);
    params.__bindgen_anon_4.ipv6_dst = words(dst);
    // SAFETY: ctx is the program context; params is a valid, sized struct.
    let rc = unsafe { bpf_fib_lookup(ctx.as_ptr(), params as *mut FibParams, core::mem::size_of::<FibParams>() as i32, 0) } as u32;
    if rc == BPF_FIB_LKUP_RET_SUCCESS {
        mem::copy_mac(&mut hop.smac, &params.smac);
        mem::copy_mac(&mut hop.dmac, &params.dmac);
        hop.looked_up_ns = now;
        hop.ifindex = params.ifindex;
    }
    rc
}

/// The address as four words; `a` is a 4-aligned field (see mem.rs).
#[inline(always)]
fn words(a: &[u8; 16]) -> [u32; 4] {
    let w = a.as_ptr() as *const u32;
    // SAFETY: 16 bytes, 4-aligned.
    unsafe { [w.read(), w.add(1).read(), w.add(2).read(), w.add(3).read()] }
}

#[inline(always)]
fn decrement_ttl(ctx: &XdpContext, p: &Packet) {
    if p.key.family == FAMILY_V4 {
        if let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, p.l3_off) {
            // SAFETY: bounds checked by ptr_at.
            unsafe {
                // TTL is the high byte of the 16-bit word it shares with protocol.
                let old = u16::from_be_bytes([(*ip).ttl, (*ip).protocol]);
                (*ip).ttl = (*ip).ttl.saturating_sub(1);
                let new = u16::from_be_bytes([(*ip).ttl, (*ip).protocol]);
                (*ip).check = csum::apply((*ip).check, csum::replace16(0, old, new));
            }
        }
    } else if let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, p.l3_off) {
        // SAFETY: bounds checked by ptr_at.
        unsafe { (*ip).hop_limit = (*ip).hop_limit.saturating_sub(1) };
    }
}

/// Rewrites the destination to `backend` (DNAT); the client address stays.
#[inline(always)]
pub fn dnat(ctx: &XdpContext, p: &mut Packet, backend: &BackendInfo) -> Option<()> {
    rewrite(ctx, p, false, &backend.addr, backend.port)?;
    mem::copy_addr(&mut p.key.dst, &backend.addr);
    p.key.dport = backend.port;
    Some(())
}

/// Rewrites the source back to the VIP (reverse NAT of a backend's reply).
#[inline(always)]
pub fn snat(ctx: &XdpContext, p: &mut Packet, vip_addr: &[u8; 16], vip_port: u16) -> Option<()> {
    rewrite(ctx, p, true, vip_addr, vip_port)?;
    mem::copy_addr(&mut p.key.src, vip_addr);
    p.key.sport = vip_port;
    Some(())
}

/// Replaces the source or destination address and port, fixing the IPv4
/// header checksum and the TCP/UDP checksum (whose pseudo-header covers the
/// addresses) incrementally, in memory order (csum.rs: halfword loads, no
/// byte swaps). Inlined (see `route`).
#[inline(always)]
fn rewrite(ctx: &XdpContext, p: &Packet, source: bool, addr: &[u8; 16], port: u16) -> Option<()> {
    let old_port = if source { p.key.sport } else { p.key.dport };
    // `addr` is a 4-aligned field of a map value (mem.rs); header fields lie
    // at even offsets (every header starts at one).
    let new = addr.as_ptr() as *const u16;
    let mut l4_acc;
    if p.key.family == FAMILY_V4 {
        let ip = ptr_at::<Ipv4Hdr>(ctx, p.l3_off)?;
        // SAFETY: bounds checked by ptr_at; alignment as said above.
        unsafe {
            let field = if source { &mut (*ip).src } else { &mut (*ip).dst };
            let acc = csum::swap_words::<2>(0, field.as_mut_ptr() as *mut u16, new);
            (*ip).check = csum::apply_ne((*ip).check, acc);
            l4_acc = acc;
        }
    } else {
        let ip = ptr_at::<Ipv6Hdr>(ctx, p.l3_off)?;
        // SAFETY: bounds checked by ptr_at; alignment as said above.
        unsafe {
            let field = if source { &mut (*ip).src } else { &mut (*ip).dst };
            l4_acc = csum::swap_words::<8>(0, field.as_mut_ptr() as *mut u16, new);
        }
    }
    // The ports as they lie in memory: network order.
    l4_acc = csum::replace16(l4_acc, old_port.to_be(), port.to_be());
    if p.key.protocol == IPPROTO_TCP {
        let tcp = ptr_at::<TcpHdr>(ctx, p.l4_off)?;
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            if source {
                (*tcp).sport = port.to_be()
            } else {
                (*tcp).dport = port.to_be()
            }
            (*tcp).check = csum::apply_ne((*tcp).check, l4_acc);
        }
    } else {
        let udp = ptr_at::<UdpHdr>(ctx, p.l4_off)?;
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            if source {
                (*udp).sport = port.to_be()
            } else {
                (*udp).dport = port.to_be()
            }
            (*udp).check = csum::apply_udp_ne((*udp).check, l4_acc);
        }
    }
    Some(())
}

/// The stat for a forward of the given kind that went out.
#[inline(always)]
pub fn sent_stat(nat: bool) -> Stat {
    if nat {
        Stat::ForwardNat
    } else {
        Stat::ForwardDsr
    }
}
