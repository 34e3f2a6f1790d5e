//! Every map of the program. Names match `lb_common::map_names`; lb-user
//! pins them under /sys/fs/bpf/xdplb/<iface>/. Sizes marked "set at load"
//! are overridden by lb-user from the config.

use crate::parse::Packet;
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, DevMapHash, HashMap, LpmTrie, LruHashMap, PerCpuArray},
};
use lb_common::{
    lb::{
        BackendHop, BackendInfo, FlowKey, FlowState, GlobalConfig, ReverseNat, VipInfo, VipKey, VipSlot, MAX_BACKENDS, MAX_RR_BACKENDS, MAX_VIPS,
        REPLY_SOURCE_BITS,
    },
    Counters,
};

/// Per-CPU scratch space for the parsed packet, kept off the 512-byte stack.
#[map(name = "SCRATCH")]
pub static SCRATCH: PerCpuArray<Packet> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch space for `bpf_fib_lookup` parameters.
#[map(name = "FIB_SCRATCH")]
pub static FIB_SCRATCH: PerCpuArray<aya_ebpf::bindings::bpf_fib_lookup> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU next hop towards each backend (a cache: not pinned).
#[map(name = "BACKEND_HOPS")]
pub static BACKEND_HOPS: PerCpuArray<BackendHop> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);

/// Every counter, one value per CPU: one lookup per frame (stats.rs).
#[map(name = "COUNTERS")]
pub static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "VIPS")]
pub static VIPS: HashMap<VipKey, VipInfo> = HashMap::with_max_entries(2 * MAX_VIPS, 0);

/// The VIP under each id, for established flows (`balance::vip_of_flow`).
#[map(name = "VIP_SLOTS")]
pub static VIP_SLOTS: Array<VipSlot> = Array::with_max_entries(MAX_VIPS, 0);

#[map(name = "BACKENDS")]
pub static BACKENDS: Array<BackendInfo> = Array::with_max_entries(MAX_BACKENDS, 0);

/// Set at load: MAX_VIPS * 2 * maglev_size.
#[map(name = "MAGLEV")]
pub static MAGLEV: Array<u32> = Array::with_max_entries(MAX_VIPS * 2 * lb_common::lb::DEFAULT_MAGLEV_SIZE, 0);

#[map(name = "RR_LIST")]
pub static RR_LIST: Array<u32> = Array::with_max_entries(MAX_VIPS * 2 * MAX_RR_BACKENDS, 0);

#[map(name = "RR_CURSOR")]
pub static RR_CURSOR: PerCpuArray<u32> = PerCpuArray::with_max_entries(MAX_VIPS, 0);

/// Set at load: conntrack.max_flows.
#[map(name = "CONNTRACK")]
pub static CONNTRACK: LruHashMap<FlowKey, FlowState> = LruHashMap::with_max_entries(65536, 0);

/// Set at load: conntrack.max_flows.
#[map(name = "REVERSE_NAT")]
pub static REVERSE_NAT: LruHashMap<FlowKey, ReverseNat> = LruHashMap::with_max_entries(65536, 0);

/// Bit words over backend address:port (`lb_common::lb::reply_source_bit`),
/// written by lb-user: the filter in front of the `REVERSE_NAT` lookup.
#[map(name = "REPLY_SOURCES")]
pub static REPLY_SOURCES: Array<u64> = Array::with_max_entries(REPLY_SOURCE_BITS / 64, 0);

#[map(name = "ALLOW_V4")]
pub static ALLOW_V4: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(4096, BPF_F_NO_PREALLOC);

#[map(name = "ALLOW_V6")]
pub static ALLOW_V6: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(4096, BPF_F_NO_PREALLOC);

#[map(name = "ALLOW_PORTS")]
pub static ALLOW_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(4096, 0);

#[map(name = "CONFIG")]
pub static CONFIG: Array<GlobalConfig> = Array::with_max_entries(1, 0);

#[map(name = "TX_PORTS")]
pub static TX_PORTS: DevMapHash = DevMapHash::with_max_entries(64, 0);
