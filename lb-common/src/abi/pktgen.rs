//! The packet-rate bench's own XDP programs (`lb-ebpf/src/pktgen`): the
//! generator run through `BPF_PROG_TEST_RUN` and the counting sink. Not part
//! of the balancer's map ABI: only `cargo xtask bench pps` and
//! `bench-xdp-cost` load them (docs/benchmarks.md, "Packet rate").

/// Bytes of the header the generator writes per frame: Ethernet (14),
/// IPv4 without options (20), TCP without options (20).
pub const HEADER_LEN: usize = 54;
/// The same with an IPv6 fixed header (40) instead: the frame of an IPv6 flow.
pub const HEADER_LEN_V6: usize = 74;
/// Room for the longer header in [`GenConfig::header`] (a multiple of 8).
pub const HEADER_ROOM: usize = 80;
/// Source ports the generator cycles through per source address.
pub const PORTS_PER_ADDR: u64 = 64_512;
/// First source port (above the well-known range).
pub const FIRST_PORT: u16 = 1024;
/// Source addresses (last octet `FIRST_HOST ..`, of an IPv4 or IPv6
/// address) the generator cycles through.
pub const HOSTS: u64 = 240;
/// Last octet of the first source address.
pub const FIRST_HOST: u8 = 10;

/// Map names in the pktgen object.
pub const GEN_CONFIG: &str = "GEN_CONFIG";
pub const GEN_COUNT: &str = "GEN_COUNT";
pub const GEN_NEXT: &str = "GEN_NEXT";
pub const SINK_CONFIG: &str = "SINK_CONFIG";
pub const SINK_COUNTS: &str = "SINK_COUNTS";
/// Program names in the pktgen object.
pub const GENERATOR: &str = "pktgen";
pub const SINK: &str = "sink";
pub const PASS: &str = "pass";

/// What the packet-rate bench says (as error context) when the kernel
/// refuses `BPF_F_TEST_XDP_LIVE_FRAMES` with EPERM, also for the trivial
/// `PASS` program: the host's kernel, not the bench, is the cause, and its
/// tests skip the live measurement on such a host (docs/benchmarks.md,
/// "Kernel requirement").
pub const LIVE_FRAMES_REFUSED: &str = "this kernel refuses BPF_F_TEST_XDP_LIVE_FRAMES (EPERM), also for a trivial XDP_PASS program: the packet-rate bench needs live-frame test runs (docs/benchmarks.md, Kernel requirement)";

/// What the generator writes into every frame and returns.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GenConfig {
    /// Ethernet + IPv4 or IPv6 + TCP header of flow 0 with valid checksums
    /// (the source address's last octet `FIRST_HOST`, source port
    /// `FIRST_PORT`), zero-padded.
    pub header: [u8; HEADER_ROOM],
    /// Flows cycled through (frame `n` is flow `n % flows`); 0: every frame
    /// is a new flow (flow `n`), for SYNs of new connections.
    pub flows: u64,
    /// The verdict returned when no program is in `GEN_NEXT` slot 0.
    pub action: u32,
    /// `HEADER_LEN` (IPv4) or `HEADER_LEN_V6`: which header `header`
    /// holds, and the length of the test run's frame.
    pub header_len: u32,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig { header: [0; HEADER_ROOM], flows: 1, action: 0, header_len: HEADER_LEN as u32 }
    }
}

/// Source address last octet and source port of flow `k` (host order).
#[inline(always)]
pub fn flow_source(k: u64) -> (u8, u16) {
    let port = FIRST_PORT + (k % PORTS_PER_ADDR) as u16;
    let host = FIRST_HOST + ((k / PORTS_PER_ADDR) % HOSTS) as u8;
    (host, port)
}

/// Which frames the sink counts as delivered, and its verdict.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SinkConfig {
    /// Expected destination address (IPv4: the first 4 bytes) and TCP
    /// destination port (network byte order as in the packet).
    pub daddr: [u8; 16],
    pub dport: [u8; 2],
    /// 1: an IPv6 frame is expected, 0: IPv4.
    pub v6: u8,
    pub _pad: u8,
    /// XDP_DROP at the far end, XDP_PASS where the kernel must see the frame.
    pub action: u32,
}

/// The sink's per-CPU counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkCounts {
    /// Every frame seen.
    pub frames: u64,
    /// TCP frames of the expected family to `daddr:dport`.
    pub matched: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C) plain data with explicit padding; any bit pattern is valid.
    unsafe impl aya::Pod for super::GenConfig {}
    unsafe impl aya::Pod for super::SinkConfig {}
    unsafe impl aya::Pod for super::SinkCounts {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_walk_ports_then_addresses() {
        assert_eq!(flow_source(0), (FIRST_HOST, FIRST_PORT));
        assert_eq!(flow_source(PORTS_PER_ADDR - 1), (FIRST_HOST, 65535));
        assert_eq!(flow_source(PORTS_PER_ADDR), (FIRST_HOST + 1, FIRST_PORT));
        assert_eq!(flow_source(PORTS_PER_ADDR * HOSTS), (FIRST_HOST, FIRST_PORT));
        assert_eq!(core::mem::size_of::<GenConfig>(), 96);
        assert_eq!(core::mem::size_of::<SinkConfig>(), 24);
    }
}
