//! The xdplb XDP program.
//!
//! This first version classifies every frame (IPv4/IPv6/other, TCP/UDP/other),
//! counts packets and bytes per class in a per-CPU array and passes the frame on.
//! The data path is split by concern: `headers` holds wire layouts, `parse` the
//! bounds-checked access, `counters` the map updates.
#![no_std]
#![no_main]

mod counters;
mod headers;
mod parse;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};


#[xdp]
pub fn xdplb(ctx: XdpContext) -> u32 {
    let frame_len = (ctx.data_end() - ctx.data()) as u64;
    let class = parse::classify(&ctx);
    counters::count(class.l3, frame_len);
    if let Some(l4) = class.l4 {
        counters::count(l4, frame_len);
    }
    // Every frame is passed: this program only observes. A malformed frame is
    // counted and left to the kernel, which drops what it cannot use.
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
