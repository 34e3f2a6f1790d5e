//! VIP lookup, conntrack and backend selection (Maglev or round robin).

use lb_common::{
    hash,
    lb::{
        BackendInfo, FlowState, GlobalConfig, VipInfo, VipKey, ALG_MAGLEV_SRC, ALG_ROUND_ROBIN, BACKEND_ACTIVE, BACKEND_HEALTHY, FAMILY_V4, FLOW_NEW,
        FLOW_TOUCHED, LAST_SEEN_REFRESH_NS, MAX_RR_BACKENDS, MODE_DSR, NO_BACKEND, TCP_CLOSING, TCP_FIN_CLIENT, TCP_OPEN,
    },
};

use crate::{
    headers::{IPPROTO_TCP, TCP_FLAG_ACK, TCP_FLAG_SYN},
    maps::{BACKENDS, CONFIG, CONNTRACK, MAGLEV, RR_CURSOR, RR_LIST, VIPS, VIP_SLOTS},
    mem,
    parse::Packet,
};

#[inline(always)]
pub fn config() -> Option<GlobalConfig> {
    CONFIG.get(0).copied()
}

/// The VIP for the packet's destination address, port and protocol.
#[inline(always)]
pub fn lookup_vip(p: &Packet) -> Option<VipInfo> {
    vip_for(&p.key.dst, p.key.dport, p.key.protocol, p.key.family)
}

/// The VIP at `addr:port` for `protocol`.
#[inline(always)]
pub fn vip_for(addr: &[u8; 16], port: u16, protocol: u8, family: u8) -> Option<VipInfo> {
    let key = VipKey { addr: *addr, port, protocol, family };
    // SAFETY: map values are plain data.
    unsafe { VIPS.get(&key) }.copied()
}

/// The packet's conntrack entry: looked up once, before the VIP, and shared
/// by [`vip_of_flow`] and [`choose`].
#[inline(always)]
pub fn tracked(p: &Packet) -> Option<&'static mut FlowState> {
    // SAFETY: a pointer from a successful lookup into a preallocated LRU
    // map: its memory stays valid for the program's run, and the entry is
    // ours to update.
    CONNTRACK.get_ptr_mut(&p.key).map(|state| unsafe { &mut *state })
}

/// The VIP of a tracked flow from `VIP_SLOTS` under its entry's VIP id, when
/// that slot still holds the packet's destination: an array read instead of
/// the `VIPS` hash lookup for every established packet. A removed VIP's
/// slot is emptied and a reused id's names another key, so then `None`, and
/// the caller looks the destination up in `VIPS` (docs/xdp.md, step 5).
#[inline(always)]
pub fn vip_of_flow(p: &Packet, state: &FlowState) -> Option<VipInfo> {
    let slot = VIP_SLOTS.get(state.vip_id)?;
    let (k, d) = (&slot.key, &p.key);
    (mem::addr_eq(&k.addr, &d.dst) && k.port == d.dport && k.protocol == d.protocol && k.family == d.family).then_some(slot.info)
}

/// Whether the destination address is a VIP address on any port/protocol.
#[inline(always)]
pub fn is_vip_address(p: &Packet) -> bool {
    let key = VipKey { addr: p.key.dst, port: 0, protocol: 0, family: p.key.family };
    // SAFETY: map values are plain data.
    unsafe { VIPS.get(&key) }.is_some()
}

/// The backend with id `id`, if it exists (has not been removed).
#[inline(always)]
pub fn active_backend(id: u32) -> Option<&'static BackendInfo> {
    let b = BACKENDS.get(id)?;
    (b.flags & BACKEND_ACTIVE != 0).then_some(b)
}

/// The data path's clock: CLOCK_MONOTONIC_COARSE, in ns. Every use is
/// measured in seconds (idle timeouts, the once-a-second refreshes of
/// timestamps and next hops), so the tick's resolution is plenty, and the
/// coarse read is a load where `bpf_ktime_get_ns` reads the clock source:
/// about 36 ns per packet in this project's VM (docs/xdp.md, "Per-packet
/// cost"). Userspace reads the same clock with
/// `lb_user::dataplane::datapath_now_ns`.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: bpf_ktime_get_coarse_ns has no preconditions.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_coarse_ns() }
}

/// Whether a conntrack / reverse-NAT timestamp is due for a refresh
/// (`LAST_SEEN_REFRESH_NS`, docs/xdp.md): timestamps are rewritten in place
/// at most once a second per entry, not on every packet.
#[inline(always)]
pub fn stale(last_seen_ns: u64, now: u64) -> bool {
    now.saturating_sub(last_seen_ns) >= LAST_SEEN_REFRESH_NS
}

/// Picks the backend id: the tracked one for an established flow (`tracked`,
/// the packet's conntrack entry if it has one), otherwise a fresh choice
/// recorded in conntrack. The flow bits are `FLOW_NEW` for a fresh choice
/// and `FLOW_TOUCHED` whenever the conntrack entry was written (new,
/// timestamp refreshed, or marked closing): the caller updates the flow's
/// reverse-NAT entry only then. `NO_BACKEND` when the VIP has none. `now` is
/// the packet's clock read (`now_ns`). Returns `(backend id, flow bits)`.
/// Inlined (see `forward::route`).
#[inline(always)]
pub fn choose(p: &Packet, vip: &VipInfo, cfg: &GlobalConfig, now: u64, tracked: Option<&mut FlowState>) -> (u32, u32) {
    let key = &p.key;
    let syn_only = p.key.protocol == IPPROTO_TCP && p.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN;
    let closing_flags = p.closes_flow();
    // The client's FIN half-closes a NAT flow (the backend's is seen on its
    // reply, reverse.rs); in DSR the replies bypass us, so it closes it.
    let closing = if closing_flags { p.closing_bits(if vip.mode == MODE_DSR { 0 } else { TCP_FIN_CLIENT }) } else { TCP_OPEN };
    if let Some(state) = tracked {
        let timeout_s = if p.key.protocol == IPPROTO_TCP { cfg.tcp_timeout_s } else { cfg.udp_timeout_s };
        let fresh = now.saturating_sub(state.last_seen_ns) < u64::from(timeout_s) * 1_000_000_000;
        // A SYN on a closing entry is a new connection reusing the ports.
        let reused = syn_only && state.tcp_state & TCP_CLOSING != 0;
        if fresh && !reused && state.vip_id == vip.vip_id {
            // A SYN tied to a backend that takes no new flows (down or
            // leaving) is a new connection on ports whose last flow there
            // ended without a FIN or RST from the client (the backend died
            // and reset it), or a retransmit to a backend that went down:
            // either way it is balanced afresh, not sent to be refused.
            if active_backend(state.backend_id).is_some_and(|b| !syn_only || b.flags & BACKEND_HEALTHY != 0) {
                let mut touched = closing_flags;
                if stale(state.last_seen_ns, now) {
                    state.last_seen_ns = now;
                    touched = true;
                }
                if closing_flags {
                    state.tcp_state |= closing;
                }
                let flow = if touched { FLOW_TOUCHED } else { 0 };
                return (state.backend_id, flow);
            }
        }
    }
    let Some(backend_id) = select(p, vip, cfg) else { return (NO_BACKEND, 0) };
    if active_backend(backend_id).is_none() {
        return (NO_BACKEND, 0);
    }
    // The value as its three 64-bit words (little-endian BPF): backend_id,
    // vip_id | last_seen_ns | tcp_state, zero padding. A struct literal would
    // clear the padding with a call to bpf-linker's byte-loop memset (mem.rs).
    let words: [u64; 3] = [u64::from(backend_id) | u64::from(vip.vip_id) << 32, now, u64::from(closing)];
    // SAFETY: FlowState is repr(C), 24 bytes, 8-aligned, every bit pattern valid.
    let state: FlowState = unsafe { core::mem::transmute(words) };
    // A full LRU evicts its oldest entry, so this only fails on memory pressure;
    // the flow then simply stays untracked and Maglev keeps it consistent.
    let _ = CONNTRACK.insert(key, &state, 0);
    (backend_id, FLOW_NEW | FLOW_TOUCHED)
}

#[inline(always)]
fn select(p: &Packet, vip: &VipInfo, cfg: &GlobalConfig) -> Option<u32> {
    let half = vip.vip_id * 2 + u32::from(vip.table & 1);
    let id = if vip.algorithm == ALG_ROUND_ROBIN {
        let count = vip.rr_count;
        if count == 0 || count > MAX_RR_BACKENDS {
            return None;
        }
        let cursor = RR_CURSOR.get_ptr_mut(vip.vip_id)?;
        // SAFETY: per-CPU slot from a successful lookup; only this CPU writes it.
        let turn = unsafe {
            let c = *cursor;
            *cursor = c.wrapping_add(1);
            c
        };
        *RR_LIST.get(half * MAX_RR_BACKENDS + turn % count)?
    } else {
        let size = cfg.maglev_size;
        if size == 0 {
            return None;
        }
        let h = if vip.algorithm == ALG_MAGLEV_SRC {
            hash::src_hash(&p.key.src, p.key.family, vip.hash_seed)
        } else if p.key.family == FAMILY_V4 {
            let (s, d) = ([p.key.src[0], p.key.src[1], p.key.src[2], p.key.src[3]], [p.key.dst[0], p.key.dst[1], p.key.dst[2], p.key.dst[3]]);
            hash::flow_hash_v4(s, d, p.key.sport, p.key.dport, p.key.protocol, vip.hash_seed)
        } else {
            hash::flow_hash_v6(&p.key.src, &p.key.dst, p.key.sport, p.key.dport, p.key.protocol, vip.hash_seed)
        };
        *MAGLEV.get(half * size + h % size)?
    };
    (id != NO_BACKEND).then_some(id)
}
