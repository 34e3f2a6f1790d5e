//! The map ABI: `#[repr(C)]` plain data that the XDP program writes into
//! BPF maps and userspace reads back byte for byte, the flow hash both sides
//! must agree on, and the names under which maps are pinned. Everything here
//! is `no_std` and must stay so: `lb-ebpf` compiles it for the BPF target.

pub mod counters;
pub mod hash;
pub mod lb;
pub mod pktgen;

pub use counters::{Counters, PacketCounter, Stat, TrafficClass, STAT_COUNT, TRAFFIC_CLASS_COUNT};

/// Name of the XDP program function in the eBPF object.
pub const PROGRAM_NAME: &str = "xdplb";

/// Map names as they appear in the eBPF object and under the pin directory.
pub mod map_names {
    /// Per-CPU array with one [`crate::Counters`]: every counter of the program.
    pub const COUNTERS: &str = "COUNTERS";
    /// The four per-CPU counter maps that `COUNTERS` replaced. A restart
    /// that adopts the pins of an older lb-user removes these (docs/xdp.md).
    pub const RETIRED: &[&str] = &["TRAFFIC", "STATS", "VIP_STATS", "BACKEND_STATS"];
    /// Hash map [`crate::lb::VipKey`] → [`crate::lb::VipInfo`]; port-0/protocol-0
    /// entries mark VIP addresses.
    pub const VIPS: &str = "VIPS";
    /// Array of [`crate::lb::VipSlot`] indexed by VIP id: the VIP of an
    /// established flow, found from its conntrack entry.
    pub const VIP_SLOTS: &str = "VIP_SLOTS";
    /// Array of [`crate::lb::BackendInfo`] indexed by backend id.
    pub const BACKENDS: &str = "BACKENDS";
    /// Array of backend ids: `(vip_id * 2 + table) * maglev_size + slot`.
    pub const MAGLEV: &str = "MAGLEV";
    /// Array of backend ids: `(vip_id * 2 + table) * MAX_RR_BACKENDS + i`.
    pub const RR_LIST: &str = "RR_LIST";
    /// Per-CPU array of u32 round-robin cursors indexed by VIP id.
    pub const RR_CURSOR: &str = "RR_CURSOR";
    /// LRU hash [`crate::lb::FlowKey`] → [`crate::lb::FlowState`] (client → VIP).
    pub const CONNTRACK: &str = "CONNTRACK";
    /// LRU hash [`crate::lb::FlowKey`] → [`crate::lb::ReverseNat`] (backend → client).
    pub const REVERSE_NAT: &str = "REVERSE_NAT";
    /// LPM tries of allowed source prefixes (value unused).
    pub const ALLOW_V4: &str = "ALLOW_V4";
    pub const ALLOW_V6: &str = "ALLOW_V6";
    /// Hash set of allowed destination ports (u16 → u8).
    pub const ALLOW_PORTS: &str = "ALLOW_PORTS";
    /// Array of u64 bit words ([`crate::lb::reply_source_bit`]): a set bit
    /// means "a backend may have this source address:port", the filter in
    /// front of the `REVERSE_NAT` lookup. Bits are only ever set.
    pub const REPLY_SOURCES: &str = "REPLY_SOURCES";
    /// Array with one [`crate::lb::GlobalConfig`].
    pub const CONFIG: &str = "CONFIG";
    /// DevMapHash of egress interfaces for XDP_REDIRECT (ifindex → ifindex).
    pub const TX_PORTS: &str = "TX_PORTS";
    /// Per-CPU array of [`crate::lb::BackendHop`] indexed by backend id: the
    /// remembered next hop towards each backend. A cache: not pinned.
    pub const BACKEND_HOPS: &str = "BACKEND_HOPS";

    /// Every map lb-user pins, in pin order.
    pub const PINNED: &[&str] = &[
        COUNTERS,
        VIPS,
        VIP_SLOTS,
        BACKENDS,
        MAGLEV,
        RR_LIST,
        RR_CURSOR,
        CONNTRACK,
        REVERSE_NAT,
        REPLY_SOURCES,
        ALLOW_V4,
        ALLOW_V6,
        ALLOW_PORTS,
        CONFIG,
        TX_PORTS,
    ];
}
