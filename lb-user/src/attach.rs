//! Attaching the XDP program to an interface and pinning its maps.
//!
//! The program is attached through a BPF link owned by this process, so the
//! kernel detaches it when the process exits for any reason; the maps are
//! pinned under `/sys/fs/bpf/xdplb/<iface>/` so `lb-user stats` can read them
//! from another process.

use std::{ffi::CString, path::PathBuf};

use anyhow::{bail, Context as _, Result};
use aya::{
    programs::{xdp::XdpLinkId, ProgramError, XdpMode},
    Ebpf,
};
use lb_common::map_names;

use crate::{bpffs, privileges, program};

/// How to attach: let the kernel pick (native when the driver supports it,
/// generic otherwise), force the driver's native mode, or force generic/skb mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    #[default]
    Auto,
    Native,
    Skb,
}

impl AttachMode {
    fn xdp_mode(self) -> XdpMode {
        match self {
            AttachMode::Auto => XdpMode::Default,
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Skb => XdpMode::Skb,
        }
    }
}

/// The interface index of `iface`, or an error naming it.
pub fn interface_index(iface: &str) -> Result<u32> {
    let c = CString::new(iface).with_context(|| format!("invalid interface name {iface:?}"))?;
    // SAFETY: valid C string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        bail!("interface {iface:?} not found in this network namespace (see `ip link`)");
    }
    Ok(index)
}

/// A loaded, attached program with pinned maps. Dropping it detaches the
/// program and removes the pins.
pub struct Attachment {
    ebpf: Ebpf,
    iface: String,
    link: Option<XdpLinkId>,
}

impl Attachment {
    /// Loads the program, attaches it to `iface` and pins the maps.
    pub fn attach(iface: &str, mode: AttachMode) -> Result<Attachment> {
        privileges::require_bpf_admin("lb-user attach")?;
        let if_index = interface_index(iface)?;
        bpffs::ensure_mounted()?;
        let mut ebpf = program::load()?;
        let link = program::xdp_program(&mut ebpf)?
            .attach_to_if_index(if_index, mode.xdp_mode())
            .map_err(|err| attach_error(iface, mode, err))?;
        let mut attachment = Attachment { ebpf, iface: iface.to_owned(), link: Some(link) };
        attachment.pin_maps()?;
        log::info!("attached xdplb to {iface} (mode {mode:?}); maps pinned under {}", bpffs::pin_dir(iface).display());
        Ok(attachment)
    }

    fn pin_maps(&mut self) -> Result<()> {
        let dir = bpffs::pin_dir(&self.iface);
        if dir.exists() {
            // We just attached, so no other lb-user holds this interface: these
            // pins were left by one that was killed before it could clean up.
            log::warn!("removing stale pins in {}", dir.display());
            bpffs::remove_pins(&self.iface)?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for &name in map_names::PINNED {
            let map = self.ebpf.map(name).with_context(|| format!("eBPF object has no map {name}"))?;
            let path = dir.join(name);
            map.pin(&path).with_context(|| format!("pinning map {name} at {}", path.display()))?;
        }
        Ok(())
    }

    /// The interface the program is attached to.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The pin directory of this attachment.
    pub fn pin_dir(&self) -> PathBuf {
        bpffs::pin_dir(&self.iface)
    }

    /// The loaded object, e.g. for reading maps directly in tests.
    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    /// Detaches the program and removes the pins, reporting failures.
    pub fn detach(mut self) -> Result<()> {
        self.cleanup()
    }

    fn cleanup(&mut self) -> Result<()> {
        let pins = bpffs::remove_pins(&self.iface);
        if let Some(link) = self.link.take() {
            program::xdp_program(&mut self.ebpf)?
                .detach(link)
                .with_context(|| format!("detaching XDP from {}", self.iface))?;
            log::info!("detached xdplb from {}", self.iface);
        }
        pins
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if let Err(err) = self.cleanup() {
            log::error!("cleaning up {}: {err:#}", self.iface);
        }
    }
}

fn attach_error(iface: &str, mode: AttachMode, err: ProgramError) -> anyhow::Error {
    let busy = match &err {
        ProgramError::SyscallError(e) => matches!(e.io_error.raw_os_error(), Some(libc::EBUSY) | Some(libc::EEXIST)),
        _ => false,
    };
    let context = if busy {
        format!("attaching XDP to {iface}: another XDP program is already attached (detach it first, e.g. `ip link set dev {iface} xdp off`)")
    } else if mode == AttachMode::Native && matches!(&err, ProgramError::SyscallError(e) if e.io_error.raw_os_error() == Some(libc::EOPNOTSUPP)) {
        format!("attaching XDP to {iface}: the driver has no native XDP support; use --mode skb or auto")
    } else {
        format!("attaching XDP to {iface} in mode {mode:?}")
    };
    anyhow::Error::new(err).context(context)
}
