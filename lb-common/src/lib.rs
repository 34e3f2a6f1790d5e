//! Code shared by the xdplb XDP program (`lb-ebpf`), its control plane
//! (`lb-user`) and the TLS tier (`alb`), in three module trees:
//!
//! - [`abi`] (always, `no_std`): the `#[repr(C)]` map types, the flow hash
//!   and the map names. The kernel side writes these into BPF maps and
//!   userspace reads them back byte for byte, so layouts never depend on the
//!   compiler. The `user` feature adds `aya::Pod` impls for the userspace side.
//! - [`userspace`] (feature `userspace`, needs `std` and tokio): the logic
//!   both balancers run — backend selection (including the Maglev table
//!   builder that fills the BPF maps), health checking, the allowlist, the
//!   duration grammar, config-file watching and signal handling — written
//!   once so lb-user (maps and `lb-user proxy`) and alb behave the same.
//! - [`report`] (feature `report`, `std`, no dependencies): the one way
//!   lb-user, alb and certgen print the error they exit with, and their
//!   exit codes.
//!
//! One crate rather than two: the selection code hashes with
//! [`abi::hash`] exactly as the kernel does, and keeping both in one place
//! keeps the hash, the table layout and their users from drifting apart.
#![cfg_attr(not(any(feature = "userspace", feature = "report")), no_std)]

pub mod abi;
#[cfg(feature = "report")]
pub mod report;
#[cfg(feature = "userspace")]
pub mod userspace;

// The ABI modules at the crate root, where the kernel and lb-user name them.
pub use abi::{counters, hash, lb, map_names, pktgen, Counters, PacketCounter, Stat, TrafficClass, PROGRAM_NAME, STAT_COUNT, TRAFFIC_CLASS_COUNT};
