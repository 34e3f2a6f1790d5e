//! The embedded eBPF object and loading it into the kernel.

use anyhow::{bail, Context as _, Result};
use aya::{programs::Xdp, Ebpf, EbpfLoader};
use lb_common::{
    lb::{GlobalConfig, DEFAULT_MAGLEV_SIZE, MAX_VIPS},
    map_names,
};

/// The eBPF object built from lb-ebpf by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-ebpf"));

/// The raw ELF object, for tools that want to inspect it.
pub fn object() -> &'static [u8] {
    OBJECT
}

/// Sizes fixed when the program is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Maglev table size (prime); the MAGLEV map holds two halves per VIP.
    pub maglev_size: u32,
    /// Conntrack and reverse-NAT capacity (LRU).
    pub max_flows: u32,
    /// Idle timeouts written to the CONFIG map.
    pub tcp_timeout_s: u32,
    pub udp_timeout_s: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { maglev_size: DEFAULT_MAGLEV_SIZE, max_flows: 65536, tcp_timeout_s: 300, udp_timeout_s: 30 }
    }
}

/// Loads the object and the XDP program into the kernel (not attached) with
/// default sizes.
pub fn load() -> Result<Ebpf> {
    load_with(&LoadOptions::default())
}

/// Loads with the given sizes and writes the CONFIG map's sizes and timeouts.
pub fn load_with(opts: &LoadOptions) -> Result<Ebpf> {
    if OBJECT.is_empty() {
        bail!("this lb-user was built with AYA_BUILD_SKIP=1 and carries no eBPF object; rebuild it with `cargo xtask build`");
    }
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(map_names::MAGLEV, MAX_VIPS * 2 * opts.maglev_size)
        .map_max_entries(map_names::CONNTRACK, opts.max_flows)
        .map_max_entries(map_names::REVERSE_NAT, opts.max_flows)
        .load(OBJECT)
        .context("loading the eBPF object (maps)")?;
    xdp_program(&mut ebpf)?.load().context("loading the XDP program (verifier)")?;
    let cfg = GlobalConfig {
        maglev_size: opts.maglev_size,
        tcp_timeout_s: opts.tcp_timeout_s,
        udp_timeout_s: opts.udp_timeout_s,
        ..Default::default()
    };
    crate::dataplane::Dataplane::new(&mut ebpf).set_global(&cfg)?;
    Ok(ebpf)
}

/// The XDP program inside a loaded object.
pub fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    let name = lb_common::PROGRAM_NAME;
    let program = ebpf.program_mut(name).with_context(|| format!("eBPF object has no program `{name}`"))?;
    program.try_into().with_context(|| format!("program `{name}` is not an XDP program"))
}
