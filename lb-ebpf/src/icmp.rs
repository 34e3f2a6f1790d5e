//! ICMP errors about balanced flows: IPv4 "fragmentation needed" and ICMPv6
//! "packet too big" sent by a router on the path of a backend's reply reach
//! the VIP (the reply's source). The quoted header names the flow; the error
//! goes to that flow's backend so it can lower its path MTU. In NAT mode the
//! outer destination and the quoted source are translated to the backend.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{
    lb::{FAMILY_V4, MODE_DSR},
    Stat,
};

use crate::{
    balance, csum,
    forward::{self, Egress},
    headers::*,
    maps::CONNTRACK,
    mem,
    parse::{ptr_at, ptr_in, Packet},
};

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMPV6_PKT_TOOBIG: u8 = 2;

#[repr(C)]
struct IcmpHdr {
    kind: u8,
    code: u8,
    check: u16,
    rest: u32,
}

/// What happened to an ICMP message addressed to a VIP, as plain integers
/// (it crosses a BPF function call).
#[repr(C)]
pub struct IcmpVerdict {
    pub action: u32,
    pub stat: u32,
}

/// Handles an ICMP(v6) message to a VIP address; false when it is not a
/// path-MTU error about a tracked flow (then the kernel gets it).
#[inline(never)]
pub fn handle(ctx: &XdpContext, p: &mut Packet, out: &mut IcmpVerdict) -> bool {
    let v4 = p.key.family == FAMILY_V4;
    // The ICMP header and the quote must lie inside the outer datagram.
    let Some(icmp) = ptr_in::<IcmpHdr>(ctx, p.l4_off, &p.l3_end) else { return false };
    // SAFETY: bounds checked by ptr_at.
    let (kind, code) = unsafe { ((*icmp).kind, (*icmp).code) };
    let is_mtu_error = if v4 { kind == ICMP_DEST_UNREACH && code == ICMP_FRAG_NEEDED } else { kind == ICMPV6_PKT_TOOBIG };
    if !is_mtu_error {
        return false;
    }
    let inner = p.l4_off + core::mem::size_of::<IcmpHdr>();
    // The quoted packet is the backend's reply as it left the LB: VIP → client.
    // The quoted flow's key is built in the scratch map, not on the stack.
    mem::zero_key(&mut p.inner);
    p.inner.family = p.key.family;
    let flow = &mut p.inner;
    let inner_l4;
    if v4 {
        let Some(ip) = ptr_in::<Ipv4Hdr>(ctx, inner, &p.l3_end) else { return false };
        // SAFETY: bounds checked by ptr_at.
        let (vihl, proto, src, dst) = unsafe { ((*ip).version_ihl, (*ip).protocol, (*ip).src, (*ip).dst) };
        let ihl = ((vihl & 0x0f) as usize) * 4;
        // A quote that is no IPv4 header names no flow.
        if vihl >> 4 != 4 || ihl < 20 {
            return false;
        }
        inner_l4 = inner + ihl;
        flow.protocol = proto;
        mem::set_v4(&mut flow.dst, src);
        mem::set_v4(&mut flow.src, dst);
    } else {
        let Some(ip) = ptr_in::<Ipv6Hdr>(ctx, inner, &p.l3_end) else { return false };
        // SAFETY: bounds checked by ptr_at.
        if unsafe { (*ip).version_class_flow[0] } >> 4 != 6 {
            return false;
        }
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            flow.protocol = (*ip).next_header;
            core::ptr::copy_nonoverlapping((*ip).src.as_ptr(), flow.dst.as_mut_ptr(), 16);
            core::ptr::copy_nonoverlapping((*ip).dst.as_ptr(), flow.src.as_mut_ptr(), 16);
        }
        inner_l4 = inner + core::mem::size_of::<Ipv6Hdr>();
    }
    if flow.protocol != IPPROTO_TCP && flow.protocol != IPPROTO_UDP {
        return false;
    }
    let Some(ports) = ptr_in::<[u16; 2]>(ctx, inner_l4, &p.l3_end) else { return false };
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        flow.dport = u16::from_be((*ports)[0]);
        flow.sport = u16::from_be((*ports)[1]);
    }
    // SAFETY: map values are plain data.
    let Some(state) = (unsafe { CONNTRACK.get(&p.inner) }) else { return false };
    let Some(backend) = balance::active_backend(state.backend_id) else { return false };
    let Some(vip) = balance::vip_for(&p.inner.dst, p.inner.dport, p.inner.protocol, p.inner.family) else { return false };
    let vip_port = p.inner.dport;
    if vip.mode != MODE_DSR && translate(ctx, p, inner, inner_l4, &backend.addr, backend.port, vip_port).is_none() {
        out.action = xdp_action::XDP_DROP;
        out.stat = Stat::DropMalformedVip as u32;
        return true;
    }
    let now = balance::now_ns();
    let (action, stat) = match forward::towards_backend(ctx, p, state.backend_id, backend, vip.mode == MODE_DSR, now) {
        Egress::Sent(action) => (action, Stat::IcmpToBackend),
        Egress::Kernel if vip.mode != MODE_DSR => (xdp_action::XDP_PASS, Stat::PassKernelForward),
        Egress::Kernel | Egress::NoRoute => (xdp_action::XDP_DROP, Stat::DropNoRoute),
    };
    out.action = action;
    out.stat = stat as u32;
    true
}

/// NAT mode: outer destination VIP → backend; quoted source VIP:port →
/// backend:port; fixes the outer IPv4 checksum, the quoted IPv4 header
/// checksum and the ICMP checksum (ICMPv6's covers the outer addresses too).
#[inline(always)]
fn translate(ctx: &XdpContext, p: &mut Packet, inner: usize, inner_l4: usize, addr: &[u8; 16], port: u16, vip_port: u16) -> Option<()> {
    let icmp = ptr_at::<IcmpHdr>(ctx, p.l4_off)?;
    let ports = ptr_at::<[u16; 2]>(ctx, inner_l4)?;
    let mut icmp_acc = csum::replace16(0, vip_port, port);
    if p.key.family == FAMILY_V4 {
        let new = [addr[0], addr[1], addr[2], addr[3]];
        let outer = ptr_at::<Ipv4Hdr>(ctx, p.l3_off)?;
        let quoted = ptr_at::<Ipv4Hdr>(ctx, inner)?;
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            let old = (*outer).dst;
            (*outer).dst = new;
            (*outer).check = csum::apply((*outer).check, csum::replace(0, &old, &new));
            let old_src = (*quoted).src;
            (*quoted).src = new;
            let old_check = (*quoted).check;
            let addr_acc = csum::replace(0, &old_src, &new);
            (*quoted).check = csum::apply(old_check, addr_acc);
            icmp_acc = csum::replace(icmp_acc, &old_src, &new);
            icmp_acc = csum::replace16(icmp_acc, u16::from_be(old_check), u16::from_be((*quoted).check));
        }
    } else {
        let outer = ptr_at::<Ipv6Hdr>(ctx, p.l3_off)?;
        let quoted = ptr_at::<Ipv6Hdr>(ctx, inner)?;
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            let old = (*outer).dst;
            (*outer).dst = *addr;
            icmp_acc = csum::replace(icmp_acc, &old, addr);
            let old_src = (*quoted).src;
            (*quoted).src = *addr;
            icmp_acc = csum::replace(icmp_acc, &old_src, addr);
        }
    }
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        (*ports)[0] = port.to_be();
        (*icmp).check = csum::apply((*icmp).check, icmp_acc);
    }
    mem::copy_addr(&mut p.key.dst, addr);
    Some(())
}
