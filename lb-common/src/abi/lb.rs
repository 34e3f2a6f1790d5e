//! Map keys and values of the balancer data path (VIPs, backends, Maglev
//! tables, conntrack, allowlist). Addresses are 16 bytes for both families:
//! IPv4 sits in the first 4 bytes, the rest zero, and `family` says which.
//! Ports are in host byte order in keys and values; the kernel side converts.

/// Address family tags used in keys and values.
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Most VIPs a program instance serves (VIP ids are `0..MAX_VIPS`).
pub const MAX_VIPS: u32 = 64;
/// Most backends over all VIPs (backend ids are `0..MAX_BACKENDS`).
pub const MAX_BACKENDS: u32 = 1024;
/// Most backends in one VIP's round-robin list.
pub const MAX_RR_BACKENDS: u32 = 256;
/// Default Maglev lookup-table size (a prime, as Maglev requires).
pub const DEFAULT_MAGLEV_SIZE: u32 = 65537;
/// Sentinel backend id: "no backend" (empty table slot).
pub const NO_BACKEND: u32 = u32::MAX;

/// Balancing algorithms.
pub const ALG_MAGLEV: u8 = 0;
pub const ALG_MAGLEV_SRC: u8 = 1;
pub const ALG_ROUND_ROBIN: u8 = 2;

/// Forwarding modes.
pub const MODE_NAT: u8 = 0;
pub const MODE_DSR: u8 = 1;

/// `(address, port, protocol)` of a virtual service.
///
/// Aligned to 4 (size unchanged) so the XDP program copies the address as
/// words; see the alignment note on [`FlowKey`].
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipKey {
    pub addr: [u8; 16],
    pub port: u16,
    pub protocol: u8,
    pub family: u8,
}

/// What the data path needs to know about a VIP.
///
/// Tables are double-buffered: `table` (0 or 1) selects the half of the
/// Maglev and round-robin arrays in use. Userspace fills the other half and
/// then rewrites this value in one map update, so the data path never sees a
/// half-written table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipInfo {
    pub vip_id: u32,
    pub algorithm: u8,
    pub mode: u8,
    pub table: u8,
    pub flags: u8,
    /// Healthy backends in the active round-robin list.
    pub rr_count: u32,
    /// Maglev seed mixed into the flow hash (same on every LB node).
    pub hash_seed: u32,
}

/// `VIP_SLOTS[vip_id]`: a VIP's key and info under its id, written by
/// lb-user next to its `VIPS` entry. An established flow's packet finds its
/// VIP here from the conntrack entry's `vip_id` (an array read) instead of
/// hashing the destination into `VIPS`; the key must match the packet's
/// destination, so a slot that was emptied (all zero: no family matches) or
/// taken by another VIP sends the packet to the `VIPS` lookup as before.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipSlot {
    pub key: VipKey,
    pub info: VipInfo,
}

/// `BackendInfo::flags`: the backend exists (a removed backend breaks its
/// flows; an unhealthy one only stops getting new flows, via the tables).
pub const BACKEND_ACTIVE: u8 = 1;
/// `BackendInfo::flags`: the backend takes new flows (its last health
/// verdict was "up" and it is not leaving). New flows follow the tables,
/// which hold only these; the flag itself is read for `lb-user stats` and
/// metrics, and by a SYN whose 5-tuple conntrack still ties to a backend
/// without it: that is a new connection reusing the ports, and it is
/// balanced afresh instead of being sent to a backend that is down.
pub const BACKEND_HEALTHY: u8 = 2;

/// A backend as the data path forwards to it. Aligned to 4 (size unchanged),
/// see [`FlowKey`].
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendInfo {
    pub addr: [u8; 16],
    pub port: u16,
    pub family: u8,
    pub flags: u8,
    /// Destination MAC for DSR mode (the backend on the LB's segment).
    pub mac: [u8; 6],
    /// The VIP this backend serves: lets a restarted lb-user rebuild its id
    /// assignments from the pinned maps.
    pub vip_id: u16,
}

/// Bits in the `REPLY_SOURCES` filter: a power of two, 64 per array entry
/// (2 KiB). With the 1,024 backends of `MAX_BACKENDS` at most 1 in 16 client
/// sources shares a bit with a backend.
pub const REPLY_SOURCE_BITS: u32 = 16384;

/// The `REPLY_SOURCES` entry and bit of a backend's address:port (`addr` in
/// the 16-byte layout, IPv4 in its first 4 bytes). lb-user sets the bit of
/// every backend it writes; the XDP program looks a packet up in
/// `REVERSE_NAT` only when the bit of its source is set, so a client's packet
/// skips that LRU miss unless its source shares a bit with a backend's.
#[inline(always)]
pub fn reply_source_bit(addr: &[u8; 16], family: u8, port: u16) -> (u32, u64) {
    let bit = crate::hash::src_hash(addr, family, u32::from(port)) & (REPLY_SOURCE_BITS - 1);
    (bit / 64, 1u64 << (bit % 64))
}

/// A flow as seen in one direction.
///
/// Aligned to 8 (the size, 40, is unchanged, so map layouts and pinned maps
/// stay compatible): the XDP program clears and copies keys as 64/32-bit
/// words. Byte-aligned copies would otherwise become calls to bpf-linker's
/// byte-at-a-time `memset`/`memmove` on every packet.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub protocol: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

/// Conntrack value for a client→VIP flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowState {
    pub backend_id: u32,
    pub vip_id: u32,
    /// The data path's clock (CLOCK_MONOTONIC_COARSE, ns) at the last packet.
    pub last_seen_ns: u64,
    /// TCP_* bits below; lets FIN/RST end an entry early.
    pub tcp_state: u8,
    pub _pad: [u8; 7],
}

/// Reverse-NAT value for a backend→client reply flow (NAT mode).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReverseNat {
    pub vip_addr: [u8; 16],
    pub vip_port: u16,
    pub family: u8,
    pub tcp_state: u8,
    pub vip_id: u32,
    pub last_seen_ns: u64,
    /// The next hop towards the client, remembered from `bpf_fib_lookup`.
    pub next_hop: NextHop,
}

/// A remembered `bpf_fib_lookup` result: the egress interface and the MAC
/// addresses to write. `ifindex` 0 means "none, look it up". The data path
/// looks it up again once it is `NEXT_HOP_REFRESH_NS` old (docs/xdp.md).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHop {
    /// The data path's clock (CLOCK_MONOTONIC_COARSE, ns) at the lookup.
    pub looked_up_ns: u64,
    pub ifindex: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
}

/// The next hop towards a backend as one CPU remembers it (`BACKEND_HOPS`),
/// valid for the backend address and ingress interface it was looked up for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendHop {
    pub addr: [u8; 16],
    pub ingress_ifindex: u32,
    pub _pad: u32,
    pub hop: NextHop,
}

/// How long the data path uses a remembered next hop before it asks
/// `bpf_fib_lookup` again (route or neighbour changes take effect within it).
pub const NEXT_HOP_REFRESH_NS: u64 = 1_000_000_000;

/// How old a conntrack / reverse-NAT `last_seen_ns` may get before a packet
/// rewrites it: timestamps are refreshed in place at most this often, so an
/// entry may count as idle up to this much before its idle timeout.
pub const LAST_SEEN_REFRESH_NS: u64 = 1_000_000_000;

/// What the conntrack step did with a packet's flow (a bit set the XDP
/// program passes between its functions; not stored in a map): a new entry
/// was inserted, or the entry was written (inserted, timestamp refreshed,
/// or marked closing). The flow's reverse-NAT entry is looked up and
/// updated only when `FLOW_TOUCHED` is set.
pub const FLOW_NEW: u32 = 1;
pub const FLOW_TOUCHED: u32 = 2;

/// TCP tracking state of a conntrack entry (`FlowState::tcp_state`), as
/// bits: none set is an open flow.
pub const TCP_OPEN: u8 = 0;
/// A FIN or RST was seen, from either side: a SYN on these ports is a new
/// connection. Alone (no other bit) it means closed as far as the program
/// sees: a DSR client's FIN (the backend's replies bypass the balancer),
/// or an entry written by a program from before the bits below.
pub const TCP_CLOSING: u8 = 1;
/// With `TCP_CLOSING`: the client's FIN was seen (NAT).
pub const TCP_FIN_CLIENT: u8 = 2;
/// With `TCP_CLOSING`: the backend's FIN was seen (a NAT reply).
pub const TCP_FIN_BACKEND: u8 = 4;
/// With `TCP_CLOSING`: a RST was seen, from either side.
pub const TCP_RESET: u8 = 8;

/// Whether a conntrack entry's TCP connection is over in both directions
/// as far as the program can tell: closing, and not half-closed (one FIN
/// bit without the other and without a reset), because after one FIN the
/// other direction may still carry data for as long as it likes.
pub const fn tcp_closed(tcp_state: u8) -> bool {
    let fins = tcp_state & (TCP_FIN_CLIENT | TCP_FIN_BACKEND);
    let half = tcp_state & TCP_RESET == 0 && (fins == TCP_FIN_CLIENT || fins == TCP_FIN_BACKEND);
    tcp_state & TCP_CLOSING != 0 && !half
}

/// Global settings (array map with one entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalConfig {
    /// 1 when an allowlist is configured.
    pub allowlist_enabled: u8,
    /// ALLOWLIST_SCOPE_*.
    pub allowlist_scope: u8,
    /// 1 when every destination port is allowed ("*").
    pub allow_any_port: u8,
    pub _pad: u8,
    /// Maglev table size in use (prime).
    pub maglev_size: u32,
    /// Idle timeouts for conntrack entries, in seconds.
    pub tcp_timeout_s: u32,
    pub udp_timeout_s: u32,
}

pub const ALLOWLIST_SCOPE_VIPS: u8 = 0;
pub const ALLOWLIST_SCOPE_ALL: u8 = 1;

/// Per-VIP and per-backend counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCounter {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

impl FlowCounter {
    /// Adds another counter (used when summing per-CPU values).
    pub fn add(&mut self, other: &FlowCounter) {
        self.packets = self.packets.wrapping_add(other.packets);
        self.bytes = self.bytes.wrapping_add(other.bytes);
        self.new_flows = self.new_flows.wrapping_add(other.new_flows);
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all repr(C), fields are integers/byte arrays, explicit padding,
    // every bit pattern valid.
    unsafe impl aya::Pod for super::VipKey {}
    unsafe impl aya::Pod for super::VipInfo {}
    unsafe impl aya::Pod for super::VipSlot {}
    unsafe impl aya::Pod for super::BackendInfo {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowState {}
    unsafe impl aya::Pod for super::ReverseNat {}
    unsafe impl aya::Pod for super::NextHop {}
    unsafe impl aya::Pod for super::BackendHop {}
    unsafe impl aya::Pod for super::GlobalConfig {}
    unsafe impl aya::Pod for super::FlowCounter {}
}

/// `addr` in the 16-byte layout of the map keys (IPv4 in the first 4 bytes),
/// with its family code. IPv4-mapped IPv6 addresses count as IPv4, as a
/// dual-stack socket reports IPv4 clients that way.
pub fn addr16(addr: core::net::IpAddr) -> ([u8; 16], u8) {
    match addr.to_canonical() {
        core::net::IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (b, FAMILY_V4)
        }
        core::net::IpAddr::V6(a) => (a.octets(), FAMILY_V6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<VipKey>(), 20);
        assert_eq!(size_of::<VipInfo>(), 16);
        assert_eq!(size_of::<VipSlot>(), 36);
        assert_eq!(size_of::<BackendInfo>(), 28);
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<FlowState>(), 24);
        assert_eq!(size_of::<ReverseNat>(), 56);
        assert_eq!(size_of::<NextHop>(), 24);
        assert_eq!(size_of::<BackendHop>(), 48);
        assert_eq!(size_of::<GlobalConfig>(), 16);
        assert_eq!(size_of::<FlowCounter>(), 24);
    }

    #[test]
    fn reply_source_bits_depend_on_address_port_and_family() {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[198, 18, 1, 11]);
        let (word, mask) = reply_source_bit(&a, FAMILY_V4, 8080);
        assert!(word < REPLY_SOURCE_BITS / 64 && mask.count_ones() == 1);
        assert_eq!(reply_source_bit(&a, FAMILY_V4, 8080), (word, mask), "stable");
        // Over many sources the bits spread: no more than a few share one.
        let mut sharing = [0u8; REPLY_SOURCE_BITS as usize];
        for host in 0..=255u8 {
            for port in [80u16, 8080, 40000] {
                a[3] = host;
                let (word, mask) = reply_source_bit(&a, FAMILY_V4, port);
                sharing[(word * 64 + mask.trailing_zeros()) as usize] += 1;
            }
        }
        let distinct = sharing.iter().filter(|n| **n > 0).count();
        assert!(distinct > 700 && sharing.iter().all(|n| *n <= 4), "{distinct} distinct bits of 768 sources");
        a[3] = 11;
        assert_ne!(reply_source_bit(&a, FAMILY_V4, 8080), reply_source_bit(&a, FAMILY_V4, 8081));
        assert_ne!(reply_source_bit(&a, FAMILY_V4, 8080), reply_source_bit(&a, FAMILY_V6, 8080));
    }
}
