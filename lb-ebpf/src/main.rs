//! The xdplb XDP program: an L4 load balancer.
//!
//! Per packet: parse → traffic counters → reverse NAT of backend replies →
//! allowlist → VIP lookup → conntrack / Maglev or round-robin choice →
//! NAT or DSR forward. Modules are split by concern (see docs/xdp.md).
#![no_std]
#![no_main]

mod allowlist;
mod balance;
mod csum;
mod forward;
mod headers;
mod icmp;
mod maps;
mod mem;
mod parse;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::{
    lb::{BackendInfo, FlowKey, ReverseNat, MODE_DSR, TCP_CLOSING},
    Stat, TrafficClass,
};

use crate::{
    forward::Egress,
    headers::{IPPROTO_TCP, TCP_FLAG_FIN, TCP_FLAG_RST},
    maps::{REVERSE_NAT, SCRATCH},
    parse::{Packet, Parsed, Ports},
};

#[xdp]
pub fn xdplb(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let Some(p) = SCRATCH.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: this CPU's scratch slot; XDP programs do not preempt each other.
    let p = unsafe { &mut *p };
    let (action, stat) = match parse::parse(&ctx, p) {
        Parsed::NotIp => {
            stats::traffic(TrafficClass::OtherL3, len);
            (xdp_action::XDP_PASS, Stat::PassNotVip)
        }
        Parsed::Malformed => {
            stats::traffic(TrafficClass::Malformed, len);
            (xdp_action::XDP_PASS, Stat::PassMalformed)
        }
        Parsed::Ip => {
            stats::traffic(if p.key.family == lb_common::lb::FAMILY_V4 { TrafficClass::Ipv4 } else { TrafficClass::Ipv6 }, len);
            stats::traffic(l4_class(p.key.protocol), len);
            balance_packet(&ctx, p, len)
        }
    };
    stats::stat(stat, len);
    action
}

#[inline(always)]
fn l4_class(protocol: u8) -> TrafficClass {
    match protocol {
        IPPROTO_TCP => TrafficClass::Tcp,
        headers::IPPROTO_UDP => TrafficClass::Udp,
        _ => TrafficClass::OtherL4,
    }
}

#[inline(always)]
fn balance_packet(ctx: &XdpContext, p: &mut Packet, len: u64) -> (u32, Stat) {
    // Replies from backends of NAT flows come first: they are established
    // traffic and must not be subject to the client allowlist.
    if p.ports == Ports::Present {
        let mut reply = Verdict { action: 0, stat: 0 };
        if reverse_nat(ctx, p, &mut reply) {
            return (reply.action, Stat::from_index(reply.stat));
        }
    }
    let vip_address = balance::is_vip_address(p);
    let Some(cfg) = balance::config() else {
        return (xdp_action::XDP_PASS, Stat::PassNotVip);
    };
    if let Some(drop) = allowlist::check(p, &cfg, vip_address) {
        return (xdp_action::XDP_DROP, drop);
    }
    if !vip_address {
        return (xdp_action::XDP_PASS, Stat::PassNotVip);
    }
    if p.fragment {
        return (xdp_action::XDP_DROP, Stat::DropFragmentVip);
    }
    if p.key.protocol == headers::IPPROTO_ICMP || p.key.protocol == headers::IPPROTO_ICMPV6 {
        let mut verdict = icmp::IcmpVerdict { action: 0, stat: 0 };
        if icmp::handle(ctx, p, &mut verdict) {
            return (verdict.action, Stat::from_index(verdict.stat));
        }
        // Echo requests and other ICMP to a VIP address: the kernel's business.
        return (xdp_action::XDP_PASS, Stat::PassNotVip);
    }
    match p.ports {
        Ports::Truncated => return (xdp_action::XDP_DROP, Stat::DropMalformedVip),
        // ICMP and other protocols to a VIP address: the kernel's business.
        Ports::None => return (xdp_action::XDP_PASS, Stat::PassNotVip),
        Ports::Present => {}
    }
    let Some(vip) = balance::lookup_vip(p) else {
        // A VIP address, but not a port/protocol we balance.
        return (xdp_action::XDP_PASS, Stat::PassNotVip);
    };
    // One clock read per packet, shared by conntrack and reverse NAT.
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() };
    let mut new_flow = false;
    let backend_id = balance::choose(p, &vip, &cfg, now, &mut new_flow);
    let Some(backend) = balance::active_backend(backend_id) else {
        return (xdp_action::XDP_DROP, Stat::DropNoBackend);
    };
    let nat = vip.mode != MODE_DSR;
    if nat {
        // Before the rewrite: the packet still names the VIP.
        remember_reverse(p, backend, vip.vip_id, now, new_flow);
        if forward::dnat(ctx, p, backend).is_none() {
            return (xdp_action::XDP_DROP, Stat::DropMalformedVip);
        }
    }
    let Some(hop) = forward::backend_hop(backend_id, &backend.addr, ctx.ingress_ifindex() as u32) else {
        return (xdp_action::XDP_DROP, Stat::DropNoRoute);
    };
    let result = match forward::route(ctx, p, &backend.addr, hop, now) {
        Egress::Sent(action) => (action, forward::sent_stat(nat)),
        // DSR cannot hand the packet to the kernel: it is still addressed to the VIP.
        Egress::Kernel if nat => (xdp_action::XDP_PASS, Stat::PassKernelForward),
        Egress::Kernel | Egress::NoRoute => return (xdp_action::XDP_DROP, Stat::DropNoRoute),
    };
    stats::flow(vip.vip_id, backend_id, len, new_flow);
    result
}

/// Records how to translate the backend's replies back to the VIP; `p` is
/// the client's packet before DNAT (destination still the VIP).
///
/// A new flow inserts its entry. An established flow updates the entry it
/// finds in place (LRU updates are expensive, lookups are not): the closing
/// state on FIN/RST, and the timestamp only once it is
/// `LAST_SEEN_REFRESH_NS` old (see `balance::stale`). A missing entry (evicted) or one of another VIP is
/// inserted again.
#[inline(never)]
fn remember_reverse(p: &Packet, backend: &BackendInfo, vip_id: u32, now: u64, new_flow: bool) {
    // The reply flow: backend → client.
    let key = FlowKey {
        src: backend.addr,
        dst: p.key.src,
        sport: backend.port,
        dport: p.key.sport,
        protocol: p.key.protocol,
        family: p.key.family,
        _pad: [0; 2],
    };
    let closing = p.key.protocol == IPPROTO_TCP && p.tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST) != 0;
    if !new_flow {
        if let Some(entry) = REVERSE_NAT.get_ptr_mut(&key) {
            // SAFETY: pointer from a successful lookup; the entry is ours to update.
            let entry = unsafe { &mut *entry };
            if entry.vip_id == vip_id && entry.vip_port == p.key.dport && mem::addr_eq(&entry.vip_addr, &p.key.dst) {
                if closing {
                    entry.tcp_state = TCP_CLOSING;
                }
                if balance::stale(entry.last_seen_ns, now) {
                    entry.last_seen_ns = now;
                }
                return;
            }
        }
    }
    // Cleared word by word, then filled in: a struct literal would clear the
    // next hop's MACs with a call to a byte-loop memset (mem.rs). The next
    // hop stays empty (ifindex 0): the first reply looks it up.
    let mut value = core::mem::MaybeUninit::<ReverseNat>::uninit();
    let v = value.as_mut_ptr();
    // SAFETY: ReverseNat is 8-aligned, 56 bytes, valid all-zero; then plain
    // field writes. Inserted from where it was built (a move would be a copy
    // LLVM may turn back into a memset).
    let value: &ReverseNat = unsafe {
        mem::zero(v);
        (*v).vip_addr = p.key.dst;
        (*v).vip_port = p.key.dport;
        (*v).family = p.key.family;
        (*v).tcp_state = if closing { TCP_CLOSING } else { 0 };
        (*v).vip_id = vip_id;
        (*v).last_seen_ns = now;
        value.assume_init_ref()
    };
    let _ = REVERSE_NAT.insert(&key, value, 0);
}

/// An action and a `Stat` index, as plain integers: this crosses a BPF
/// function call, and its BTF must stay simple (no Rust enums or Options).
#[repr(C)]
struct Verdict {
    action: u32,
    stat: u32,
}

/// Reverse-translates a backend's reply of a tracked NAT flow; true (with
/// `out` filled) when the packet was one. Not inlined, so its stack frame
/// does not add to the forward path's.
#[inline(never)]
fn reverse_nat(ctx: &XdpContext, p: &mut Packet, out: &mut Verdict) -> bool {
    let Some(entry) = REVERSE_NAT.get_ptr_mut(&p.key) else { return false };
    // SAFETY: pointer from a successful lookup.
    let entry = unsafe { &mut *entry };
    let Some(cfg) = balance::config() else { return false };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() };
    let timeout_s = if p.key.protocol == IPPROTO_TCP { cfg.tcp_timeout_s } else { cfg.udp_timeout_s };
    if now.saturating_sub(entry.last_seen_ns) >= u64::from(timeout_s) * 1_000_000_000 {
        // Stale: a later direct connection may reuse these ports; leave it alone.
        let _ = REVERSE_NAT.remove(&p.key);
        return false;
    }
    if balance::stale(entry.last_seen_ns, now) {
        entry.last_seen_ns = now;
    }
    let vip_port = entry.vip_port;
    // The VIP address is read straight from the (8-aligned) map value.
    let (action, stat) = if forward::snat(ctx, p, &entry.vip_addr, vip_port).is_none() {
        (xdp_action::XDP_DROP, Stat::DropMalformedVip)
    } else {
        match forward::route(ctx, p, &p.key.dst, &mut entry.next_hop, now) {
            Egress::Sent(action) => (action, Stat::ReverseNat),
            Egress::Kernel => (xdp_action::XDP_PASS, Stat::PassKernelForward),
            Egress::NoRoute => (xdp_action::XDP_DROP, Stat::DropNoRoute),
        }
    };
    out.action = action;
    out.stat = stat as u32;
    true
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never executed.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
