//! The xdplb XDP program: an L4 load balancer.
//!
//! Per packet: parse → traffic counters → reverse NAT of backend replies
//! (sources filtered by `REPLY_SOURCES`) →
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
mod reverse;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::{
    lb::{FLOW_NEW, FLOW_TOUCHED, MODE_DSR},
    Counters, Stat, TrafficClass,
};

use crate::{
    forward::Egress,
    headers::IPPROTO_TCP,
    maps::SCRATCH,
    parse::{Packet, Parsed, Ports},
    reverse::{remember_reverse, reverse_nat, Verdict},
};

#[xdp]
pub fn xdplb(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let (Some(p), Some(c)) = (SCRATCH.get_ptr_mut(0), stats::slot()) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: this CPU's scratch slot; XDP programs do not preempt each other.
    let p = unsafe { &mut *p };
    let (action, stat) = match parse::parse(&ctx, p) {
        Parsed::NotIp => {
            stats::traffic(c, TrafficClass::OtherL3, len);
            (xdp_action::XDP_PASS, Stat::PassNotVip)
        }
        Parsed::Malformed => {
            stats::traffic(c, TrafficClass::Malformed, len);
            (xdp_action::XDP_PASS, Stat::PassMalformed)
        }
        Parsed::Ip => {
            stats::traffic(c, if p.key.family == lb_common::lb::FAMILY_V4 { TrafficClass::Ipv4 } else { TrafficClass::Ipv6 }, len);
            stats::traffic(c, l4_class(p.key.protocol), len);
            balance_packet(&ctx, p, c, len)
        }
    };
    stats::stat(c, stat, len);
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
fn balance_packet(ctx: &XdpContext, p: &mut Packet, c: &mut Counters, len: u64) -> (u32, Stat) {
    // Replies from backends of NAT flows come first: they are established
    // traffic and must not be subject to the client allowlist. Only a
    // packet from a backend's address:port can be one (docs/xdp.md,
    // "Per-packet cost").
    if p.ports == Ports::Present && reverse::may_be_reply(p) {
        let mut reply = Verdict { action: 0, stat: 0 };
        if reverse_nat(ctx, p, &mut reply) {
            return (reply.action, Stat::from_index(reply.stat));
        }
    }
    // A tracked flow first: its conntrack entry names its VIP's id, and
    // VIP_SLOTS gives that VIP with an array read, so an established packet
    // pays one hash lookup (CONNTRACK) instead of two; the entry goes on to
    // `choose`, which does not look it up again. Otherwise the VIP itself:
    // for a balanced port it also answers "is this a VIP address" (lb-user
    // writes an address marker with every VIP), and the marker is looked up
    // only when no VIP matches the port. A fragment skips the conntrack
    // lookup: it is dropped if it is a VIP's (docs/xdp.md, step 5).
    let tracked = if p.ports == Ports::Present && !p.fragment { balance::tracked(p) } else { None };
    let vip = match tracked.as_deref().and_then(|state| balance::vip_of_flow(p, state)) {
        Some(vip) => Some(vip),
        None if p.ports == Ports::Present => balance::lookup_vip(p),
        None => None,
    };
    let vip_address = vip.is_some() || balance::is_vip_address(p);
    let Some(cfg) = balance::config() else {
        return (xdp_action::XDP_PASS, Stat::PassNotVip);
    };
    // ICMP of the packet's own family only: ICMPv6 over IPv4 (or ICMPv4 over
    // IPv6) is no error message either stack would accept.
    let is_icmp = if p.key.family == lb_common::lb::FAMILY_V4 { p.key.protocol == headers::IPPROTO_ICMP } else { p.key.protocol == headers::IPPROTO_ICMPV6 };
    // ICMP MTU errors about a tracked flow skip the allowlist: the flow was
    // admitted already, and the router on the reply's path that sends them
    // is usually outside the client prefixes (path-MTU discovery). Errors
    // about untracked flows and all other ICMP still face the allowlist.
    if vip_address && is_icmp && !p.fragment {
        let mut verdict = icmp::IcmpVerdict { action: 0, stat: 0 };
        if icmp::handle(ctx, p, &mut verdict) {
            return (verdict.action, Stat::from_index(verdict.stat));
        }
    }
    if let Some(drop) = allowlist::check(p, &cfg, vip_address) {
        return (xdp_action::XDP_DROP, drop);
    }
    if !vip_address {
        return (xdp_action::XDP_PASS, Stat::PassNotVip);
    }
    if p.fragment {
        return (xdp_action::XDP_DROP, Stat::DropFragmentVip);
    }
    if is_icmp {
        // Echo requests and other ICMP to a VIP address (and MTU errors
        // about no tracked flow): the kernel's business.
        return (xdp_action::XDP_PASS, Stat::PassNotVip);
    }
    match p.ports {
        Ports::Truncated => return (xdp_action::XDP_DROP, Stat::DropMalformedVip),
        // ICMP and other protocols to a VIP address: the kernel's business.
        Ports::None => return (xdp_action::XDP_PASS, Stat::PassNotVip),
        Ports::Present => {}
    }
    let Some(vip) = vip else {
        // A VIP address, but not a port/protocol we balance.
        return (xdp_action::XDP_PASS, Stat::PassNotVip);
    };
    // One clock read per packet, shared by conntrack and reverse NAT.
    let now = balance::now_ns();
    let (backend_id, flow) = balance::choose(p, &vip, &cfg, now, tracked);
    let new_flow = flow & FLOW_NEW != 0;
    let Some(backend) = balance::active_backend(backend_id) else {
        return (xdp_action::XDP_DROP, Stat::DropNoBackend);
    };
    let nat = vip.mode != MODE_DSR;
    if nat {
        // Before the rewrite: the packet still names the VIP. Only when
        // conntrack was written (a new flow, the once-a-second timestamp
        // refresh, FIN/RST): the reverse entry needs the same updates at the
        // same moments, so an established packet in between skips this
        // REVERSE_NAT lookup (docs/xdp.md, "Per-packet cost").
        if flow & FLOW_TOUCHED != 0 {
            remember_reverse(p, backend, vip.vip_id, now, new_flow);
        }
        if forward::dnat(ctx, p, backend).is_none() {
            return (xdp_action::XDP_DROP, Stat::DropMalformedVip);
        }
    }
    let result = match forward::towards_backend(ctx, p, backend_id, backend, !nat, now) {
        Egress::Sent(action) => (action, forward::sent_stat(nat)),
        // DSR cannot hand the packet to the kernel: it is still addressed to the VIP.
        Egress::Kernel if nat => (xdp_action::XDP_PASS, Stat::PassKernelForward),
        Egress::Kernel | Egress::NoRoute => return (xdp_action::XDP_DROP, Stat::DropNoRoute),
    };
    stats::flow(c, vip.vip_id, backend_id, len, new_flow);
    result
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
