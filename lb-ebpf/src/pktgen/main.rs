//! The packet-rate bench's XDP programs (docs/benchmarks.md, "Packet rate"),
//! a second object built alongside the balancer:
//!
//! - `pktgen`: run through `BPF_PROG_TEST_RUN`. Writes a whole Ethernet +
//!   IPv4 or IPv6 + TCP header from `GEN_CONFIG` into the frame, with the source
//!   address and port of the frame's flow (a per-CPU frame counter picks the
//!   flow) and incrementally fixed checksums, then tail-calls the program in
//!   `GEN_NEXT` slot 0 if there is one, else returns the configured verdict
//!   (XDP_TX in live-frame mode: the frame leaves on the ingress interface).
//!   The whole header is written every time because the kernel recycles
//!   live-frame pages without restoring their contents, and the balancer
//!   downstream rewrites them in place.
//! - `sink`: counts every frame and those addressed to the expected
//!   destination, and returns the configured verdict (XDP_DROP at the far
//!   end of the lab; XDP_PASS where the kernel must forward the frame).
//! - `pass`: a trivial XDP_PASS, the reference the program cost is compared with.
#![no_std]
#![no_main]

// The balancer's checksum arithmetic, shared (this object uses part of it).
#[path = "../csum.rs"]
#[allow(dead_code)]
mod csum;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, PerCpuArray, ProgramArray},
    programs::XdpContext,
};
use lb_common::pktgen::{flow_source, GenConfig, SinkConfig, SinkCounts, HEADER_LEN, HEADER_LEN_V6, HEADER_ROOM};

#[map(name = "GEN_CONFIG")]
static GEN_CONFIG: Array<GenConfig> = Array::with_max_entries(1, 0);

/// Frames generated on each CPU (also the flow counter).
#[map(name = "GEN_COUNT")]
static GEN_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Slot 0: the program that processes the fresh frame in the same run
/// (`bench-xdp-cost`), so `repeat` times one real packet each time.
#[map(name = "GEN_NEXT")]
static GEN_NEXT: ProgramArray = ProgramArray::with_max_entries(1, 0);

#[map(name = "SINK_CONFIG")]
static SINK_CONFIG: Array<SinkConfig> = Array::with_max_entries(1, 0);

#[map(name = "SINK_COUNTS")]
static SINK_COUNTS: PerCpuArray<SinkCounts> = PerCpuArray::with_max_entries(1, 0);

// Offsets in an IPv4 frame (no VLAN tag, no IP options).
const IP_CHECK: usize = 24;
const IP_SRC_LOW: usize = 28;
const IP_DST: usize = 30;
const IP_PROTO: usize = 23;
const ETH_TYPE: usize = 12;
const TCP_SPORT: usize = 34;
const TCP_DPORT: usize = 36;
const TCP_CHECK: usize = 50;
// And in an IPv6 frame (no extension headers).
const IP6_NEXT: usize = 20;
const IP6_SRC_LOW: usize = 36;
const IP6_DST: usize = 38;
const TCP6_SPORT: usize = 54;
const TCP6_DPORT: usize = 56;
const TCP6_CHECK: usize = 70;

#[xdp]
pub fn pktgen(ctx: XdpContext) -> u32 {
    let Some(cfg) = GEN_CONFIG.get(0) else { return xdp_action::XDP_ABORTED };
    let (start, end) = (ctx.data(), ctx.data_end());
    let v6 = cfg.header_len as usize == HEADER_LEN_V6;
    if start + HEADER_LEN > end {
        return xdp_action::XDP_ABORTED;
    }
    let Some(count) = GEN_COUNT.get_ptr_mut(0) else { return xdp_action::XDP_ABORTED };
    // SAFETY: this CPU's slot; XDP programs do not preempt each other.
    let n = unsafe {
        let n = *count;
        *count = n + 1;
        n
    };
    let k = if cfg.flows == 0 { n } else { n % cfg.flows };
    let (host, port) = flow_source(k);
    let h = &cfg.header;
    let frame = start as *mut u8;
    // SAFETY: each family's header length is in bounds: HEADER_LEN checked
    // above, HEADER_LEN_V6 here, each against a constant offset (the
    // verifier does not follow a bound chosen at run time).
    unsafe {
        if v6 {
            if start + HEADER_LEN_V6 > end {
                return xdp_action::XDP_ABORTED;
            }
            write_v6(frame, h, host, port);
        } else {
            write_v4(frame, h, host, port);
        }
        GEN_NEXT.tail_call(&ctx, 0);
    }
    cfg.action
}

/// Copies the header's first `words` 8-byte words (the map value is
/// 8-aligned; the frame may not be, hence unaligned stores).
///
/// # Safety
/// `frame` has `words * 8` writable bytes.
#[inline(always)]
unsafe fn copy_words(frame: *mut u8, h: &[u8; HEADER_ROOM], words: usize) {
    let src = h.as_ptr() as *const u64;
    let mut i = 0;
    while i < words {
        (frame.add(i * 8) as *mut u64).write_unaligned(src.add(i).read());
        i += 1;
    }
}

/// The IPv4 header of flow (`host`, `port`). The last octet of the source
/// address is the low byte of the 16-bit word at IP_SRC_LOW; the port is
/// one word. Both checksums cover the address (TCP through its
/// pseudo-header).
///
/// # Safety
/// `frame` has HEADER_LEN writable bytes.
#[inline(always)]
unsafe fn write_v4(frame: *mut u8, h: &[u8; HEADER_ROOM], host: u8, port: u16) {
    copy_words(frame, h, 6);
    (frame.add(48) as *mut u32).write_unaligned((h.as_ptr().add(48) as *const u32).read());
    (frame.add(52) as *mut u16).write_unaligned((h.as_ptr().add(52) as *const u16).read());
    let old_word = u16::from_be_bytes([h[IP_SRC_LOW], h[IP_SRC_LOW + 1]]);
    let new_word = u16::from_be_bytes([h[IP_SRC_LOW], host]);
    let old_port = u16::from_be_bytes([h[TCP_SPORT], h[TCP_SPORT + 1]]);
    *frame.add(IP_SRC_LOW + 1) = host;
    (frame.add(TCP_SPORT) as *mut u16).write_unaligned(port.to_be());
    let ip_acc = csum::replace16(0, old_word, new_word);
    let ip_check = u16::from_ne_bytes([h[IP_CHECK], h[IP_CHECK + 1]]);
    (frame.add(IP_CHECK) as *mut u16).write_unaligned(csum::apply(ip_check, ip_acc));
    let tcp_acc = csum::replace16(ip_acc, old_port, port);
    let tcp_check = u16::from_ne_bytes([h[TCP_CHECK], h[TCP_CHECK + 1]]);
    (frame.add(TCP_CHECK) as *mut u16).write_unaligned(csum::apply(tcp_check, tcp_acc));
}

/// The IPv6 header of flow (`host`, `port`): the same fields, without an
/// IP header checksum.
///
/// # Safety
/// `frame` has HEADER_LEN_V6 writable bytes.
#[inline(always)]
unsafe fn write_v6(frame: *mut u8, h: &[u8; HEADER_ROOM], host: u8, port: u16) {
    copy_words(frame, h, 9);
    (frame.add(72) as *mut u16).write_unaligned((h.as_ptr().add(72) as *const u16).read());
    let old_word = u16::from_be_bytes([h[IP6_SRC_LOW], h[IP6_SRC_LOW + 1]]);
    let new_word = u16::from_be_bytes([h[IP6_SRC_LOW], host]);
    let old_port = u16::from_be_bytes([h[TCP6_SPORT], h[TCP6_SPORT + 1]]);
    *frame.add(IP6_SRC_LOW + 1) = host;
    (frame.add(TCP6_SPORT) as *mut u16).write_unaligned(port.to_be());
    let acc = csum::replace16(csum::replace16(0, old_word, new_word), old_port, port);
    let tcp_check = u16::from_ne_bytes([h[TCP6_CHECK], h[TCP6_CHECK + 1]]);
    (frame.add(TCP6_CHECK) as *mut u16).write_unaligned(csum::apply(tcp_check, acc));
}

#[xdp]
pub fn sink(ctx: XdpContext) -> u32 {
    let Some(cfg) = SINK_CONFIG.get(0) else { return xdp_action::XDP_ABORTED };
    let Some(counts) = SINK_COUNTS.get_ptr_mut(0) else { return xdp_action::XDP_ABORTED };
    let (start, end) = (ctx.data(), ctx.data_end());
    let f = start as *const u8;
    let mut matched = false;
    // SAFETY: each family's header length is checked before its reads.
    unsafe {
        if cfg.v6 != 0 {
            if start + HEADER_LEN_V6 <= end {
                let want = cfg.daddr.as_ptr() as *const u64;
                matched = *f.add(ETH_TYPE) == 0x86
                    && *f.add(ETH_TYPE + 1) == 0xdd
                    && *f.add(IP6_NEXT) == 6
                    && (f.add(IP6_DST) as *const u64).read_unaligned() == want.read_unaligned()
                    && (f.add(IP6_DST + 8) as *const u64).read_unaligned() == want.add(1).read_unaligned()
                    && *f.add(TCP6_DPORT) == cfg.dport[0]
                    && *f.add(TCP6_DPORT + 1) == cfg.dport[1];
            }
        } else if start + HEADER_LEN <= end {
            matched = *f.add(ETH_TYPE) == 0x08
                && *f.add(ETH_TYPE + 1) == 0x00
                && *f.add(IP_PROTO) == 6
                && *f.add(IP_DST) == cfg.daddr[0]
                && *f.add(IP_DST + 1) == cfg.daddr[1]
                && *f.add(IP_DST + 2) == cfg.daddr[2]
                && *f.add(IP_DST + 3) == cfg.daddr[3]
                && *f.add(TCP_DPORT) == cfg.dport[0]
                && *f.add(TCP_DPORT + 1) == cfg.dport[1];
        }
    }
    // SAFETY: this CPU's slot.
    unsafe {
        (*counts).frames += 1;
        (*counts).matched += u64::from(matched);
    }
    cfg.action
}

#[xdp]
pub fn pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
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
