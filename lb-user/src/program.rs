//! The embedded eBPF object and loading it into the kernel.

use anyhow::{bail, Context as _, Result};
use aya::{programs::Xdp, Ebpf};

/// The eBPF object built from lb-ebpf by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-ebpf"));

/// The raw ELF object, for tools that want to inspect it.
pub fn object() -> &'static [u8] {
    OBJECT
}

/// Loads the object and the XDP program into the kernel (not attached).
pub fn load() -> Result<Ebpf> {
    if OBJECT.is_empty() {
        bail!("this lb-user was built with AYA_BUILD_SKIP=1 and carries no eBPF object; rebuild it with `cargo xtask build`");
    }
    let mut ebpf = Ebpf::load(OBJECT).context("loading the eBPF object (maps)")?;
    xdp_program(&mut ebpf)?.load().context("loading the XDP program (verifier)")?;
    Ok(ebpf)
}

/// The XDP program inside a loaded object.
pub fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    let name = lb_common::PROGRAM_NAME;
    let program = ebpf.program_mut(name).with_context(|| format!("eBPF object has no program `{name}`"))?;
    program.try_into().with_context(|| format!("program `{name}` is not an XDP program"))
}
