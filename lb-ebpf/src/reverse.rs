//! Reverse NAT: the entry a NAT flow's first packets leave behind, and the
//! translation of the backend's replies back to the VIP with it.
//!
//! Both functions stay `#[inline(never)]`: each is its own BPF function, so
//! its stack frame does not add to the forward path's (the verifier limits
//! the combined stack of a call chain, not of the whole program).

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{
    lb::{reply_source_bit, BackendInfo, FlowKey, ReverseNat, TCP_CLOSING, TCP_FIN_BACKEND},
    Stat,
};

use crate::{
    balance,
    forward::{self, Egress},
    headers::IPPROTO_TCP,
    maps::{CONNTRACK, REPLY_SOURCES, REVERSE_NAT},
    mem,
    parse::Packet,
};

/// Records how to translate the backend's replies back to the VIP; `p` is
/// the client's packet before DNAT (destination still the VIP).
///
/// A new flow inserts its entry. An established flow updates the entry it
/// finds in place (LRU updates are expensive, lookups are not): the closing
/// state on FIN/RST, and the timestamp only once it is
/// `LAST_SEEN_REFRESH_NS` old (see `balance::stale`). A missing entry (evicted) or one of another VIP is
/// inserted again.
#[inline(never)]
pub fn remember_reverse(p: &Packet, backend: &BackendInfo, vip_id: u32, now: u64, new_flow: bool) {
    // The reply flow: backend → client.
    let key =
        FlowKey { src: backend.addr, dst: p.key.src, sport: backend.port, dport: p.key.sport, protocol: p.key.protocol, family: p.key.family, _pad: [0; 2] };
    let closing = p.closes_flow();
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

/// A backend's FIN or RST closes its side of the flow as the client's does
/// the other: both its entries are marked closing, the conntrack entry with
/// the backend's FIN bit (or the reset bit), so once the client's FIN is
/// there too a drain stops counting the flow when it goes quiet
/// (`Dataplane::live_flows`), and a SYN reusing the client's ports is
/// balanced afresh. Otherwise a backend that resets its connections
/// (killed, or refusing mid-stream) would leave them open until the idle
/// timeout, and a drain would wait that long. `reply` is the backend's packet before the
/// rewrite; its conntrack entry is the client → VIP flow the reverse entry
/// names, and only an entry of the same VIP is touched (a NAT collision
/// between VIPs sharing a backend leaves the other VIP's flow alone). Rare
/// (once or twice per connection), so a lookup here costs established
/// packets nothing; not inlined, to keep its key off `reverse_nat`'s stack.
#[inline(never)]
fn mark_closing(reply: &Packet, entry: &mut ReverseNat) {
    entry.tcp_state = TCP_CLOSING;
    let key = FlowKey {
        src: reply.key.dst,
        dst: entry.vip_addr,
        sport: reply.key.dport,
        dport: entry.vip_port,
        protocol: reply.key.protocol,
        family: reply.key.family,
        _pad: [0; 2],
    };
    if let Some(state) = CONNTRACK.get_ptr_mut(&key) {
        // SAFETY: pointer from a successful lookup; the entry is ours to update.
        let state = unsafe { &mut *state };
        if state.vip_id == entry.vip_id {
            state.tcp_state |= reply.closing_bits(TCP_FIN_BACKEND);
        }
    }
}

/// An action and a `Stat` index, as plain integers: this crosses a BPF
/// function call, and its BTF must stay simple (no Rust enums or Options).
#[repr(C)]
pub struct Verdict {
    pub action: u32,
    pub stat: u32,
}

/// Whether the packet's source may be a backend (its bit in `REPLY_SOURCES`
/// is set): only then can it be the reply of a NAT flow. A client's packet
/// skips the `REVERSE_NAT` lookup, a miss, that way; an inlined array read
/// and a one-word hash (four for IPv6) instead of an LRU hash lookup call.
#[inline(always)]
pub fn may_be_reply(p: &Packet) -> bool {
    let (word, mask) = reply_source_bit(&p.key.src, p.key.family, p.key.sport);
    REPLY_SOURCES.get(word).is_some_and(|bits| bits & mask != 0)
}

/// Reverse-translates a backend's reply of a tracked NAT flow; true (with
/// `out` filled) when the packet was one. Not inlined, so its stack frame
/// does not add to the forward path's.
#[inline(never)]
pub fn reverse_nat(ctx: &XdpContext, p: &mut Packet, out: &mut Verdict) -> bool {
    let Some(entry) = REVERSE_NAT.get_ptr_mut(&p.key) else { return false };
    // SAFETY: pointer from a successful lookup.
    let entry = unsafe { &mut *entry };
    let Some(cfg) = balance::config() else { return false };
    let now = balance::now_ns();
    let timeout_s = if p.key.protocol == IPPROTO_TCP { cfg.tcp_timeout_s } else { cfg.udp_timeout_s };
    if now.saturating_sub(entry.last_seen_ns) >= u64::from(timeout_s) * 1_000_000_000 {
        // Stale: a later direct connection may reuse these ports; leave it alone.
        let _ = REVERSE_NAT.remove(&p.key);
        return false;
    }
    if balance::stale(entry.last_seen_ns, now) {
        entry.last_seen_ns = now;
    }
    if p.closes_flow() {
        mark_closing(p, entry);
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
