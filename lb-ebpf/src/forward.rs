//! Sending a packet on: next hop from `bpf_fib_lookup`, DNAT and reverse NAT
//! rewrites with incremental checksums, XDP_TX or XDP_REDIRECT.

use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibParams, xdp_action, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS},
    helpers::generated::bpf_fib_lookup,
    programs::XdpContext,
    EbpfContext,
};
use lb_common::{
    lb::{BackendInfo, FAMILY_V4},
    Stat,
};

use crate::{
    csum,
    headers::*,
    maps::{FIB_SCRATCH, TX_PORTS},
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

/// Looks up the next hop for `dst` (from the packet's source) and rewrites
/// the Ethernet addresses; decrements TTL / hop limit like any router. Not
/// inlined: the lookup parameters take 64 bytes of stack.
#[inline(never)]
pub fn route(ctx: &XdpContext, p: &Packet, dst: &[u8; 16]) -> Egress {
    let src = &p.key.src;
    // The 64-byte lookup parameters live in a per-CPU scratch map: on the
    // stack they would push the deepest call chain past 512 bytes.
    let Some(params) = FIB_SCRATCH.get_ptr_mut(0) else { return Egress::NoRoute };
    // SAFETY: this CPU's slot; all-zero is a valid bpf_fib_lookup.
    let params = unsafe {
        core::ptr::write_bytes(params, 0, 1);
        &mut *params
    };
    params.l4_protocol = p.key.protocol;
    params.ifindex = ctx.ingress_ifindex() as u32;
    if p.key.family == FAMILY_V4 {
        params.family = AF_INET;
        params.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes([src[0], src[1], src[2], src[3]]);
        params.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([dst[0], dst[1], dst[2], dst[3]]);
    } else {
        params.family = AF_INET6;
        params.__bindgen_anon_3.ipv6_src = words(src);
        params.__bindgen_anon_4.ipv6_dst = words(dst);
    }
    // SAFETY: ctx is the program context; params is a valid, sized struct.
    let rc = unsafe {
        bpf_fib_lookup(ctx.as_ptr(), params as *mut FibParams, core::mem::size_of::<FibParams>() as i32, 0)
    } as u32;
    if rc == BPF_FIB_LKUP_RET_NO_NEIGH {
        return Egress::Kernel;
    }
    if rc != BPF_FIB_LKUP_RET_SUCCESS {
        return Egress::NoRoute;
    }
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else { return Egress::NoRoute };
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        (*eth).dst = params.dmac;
        (*eth).src = params.smac;
    }
    decrement_ttl(ctx, p);
    if params.ifindex == ctx.ingress_ifindex() as u32 {
        return Egress::Sent(xdp_action::XDP_TX);
    }
    match TX_PORTS.redirect(params.ifindex, 0) {
        Ok(action) => Egress::Sent(action),
        Err(_) => Egress::NoRoute,
    }
}

#[inline(always)]
fn words(a: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ]
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
    p.key.dst = backend.addr;
    p.key.dport = backend.port;
    Some(())
}

/// Rewrites the source back to the VIP (reverse NAT of a backend's reply).
#[inline(always)]
pub fn snat(ctx: &XdpContext, p: &mut Packet, vip_addr: &[u8; 16], vip_port: u16) -> Option<()> {
    rewrite(ctx, p, true, vip_addr, vip_port)?;
    p.key.src = *vip_addr;
    p.key.sport = vip_port;
    Some(())
}

/// Replaces the source or destination address and port, fixing the IPv4
/// header checksum and the TCP/UDP checksum (whose pseudo-header covers the
/// addresses) incrementally. Not inlined: the unrolled checksum arithmetic
/// needs stack that must not add to its callers' frames.
#[inline(never)]
fn rewrite(ctx: &XdpContext, p: &Packet, source: bool, addr: &[u8; 16], port: u16) -> Option<()> {
    let old_port = if source { p.key.sport } else { p.key.dport };
    let mut l4_acc;
    if p.key.family == FAMILY_V4 {
        let ip = ptr_at::<Ipv4Hdr>(ctx, p.l3_off)?;
        let new = [addr[0], addr[1], addr[2], addr[3]];
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            let field = if source { &mut (*ip).src } else { &mut (*ip).dst };
            let old = *field;
            *field = new;
            let acc = csum::replace(0, &old, &new);
            (*ip).check = csum::apply((*ip).check, acc);
            l4_acc = acc;
        }
    } else {
        let ip = ptr_at::<Ipv6Hdr>(ctx, p.l3_off)?;
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            let field = if source { &mut (*ip).src } else { &mut (*ip).dst };
            let old = *field;
            *field = *addr;
            l4_acc = csum::replace(0, &old, addr);
        }
    }
    l4_acc = csum::replace16(l4_acc, old_port, port);
    if p.key.protocol == IPPROTO_TCP {
        let tcp = ptr_at::<TcpHdr>(ctx, p.l4_off)?;
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            if source { (*tcp).sport = port.to_be() } else { (*tcp).dport = port.to_be() }
            (*tcp).check = csum::apply((*tcp).check, l4_acc);
        }
    } else {
        let udp = ptr_at::<UdpHdr>(ctx, p.l4_off)?;
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            if source { (*udp).sport = port.to_be() } else { (*udp).dport = port.to_be() }
            (*udp).check = csum::apply_udp((*udp).check, l4_acc);
        }
    }
    Some(())
}

/// The stat for a forward of the given kind that went out.
#[inline(always)]
pub fn sent_stat(nat: bool) -> Stat {
    if nat { Stat::ForwardNat } else { Stat::ForwardDsr }
}
