//! Types shared by the xdplb XDP program (`lb-ebpf`) and its userspace (`lb-user`).
//!
//! Everything here is `#[repr(C)]` plain data: the kernel side writes it into BPF
//! maps and userspace reads it back byte for byte, so layouts must never depend on
//! the compiler. The `user` feature adds `aya::Pod` impls for the userspace side.
#![no_std]

pub mod counters;

pub use counters::{PacketCounter, TrafficClass, TRAFFIC_CLASS_COUNT};

/// Name of the XDP program function in the eBPF object.
pub const PROGRAM_NAME: &str = "xdplb";

/// Map names as they appear in the eBPF object and under the pin directory.
pub mod map_names {
    /// Per-CPU array of [`crate::PacketCounter`] indexed by [`crate::TrafficClass`].
    pub const TRAFFIC: &str = "TRAFFIC";
    /// Every map lb-user pins, in pin order.
    pub const PINNED: &[&str] = &[TRAFFIC];
}
