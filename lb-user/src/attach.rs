//! Attaching the XDP program to an interface and pinning its maps.
//!
//! The program is attached through a BPF link owned by this process, so the
//! kernel detaches it when the process exits for any reason; the maps are
//! pinned under `/sys/fs/bpf/xdplb/<iface>/` so `lb-user stats` can read them
//! from another process.

use std::ffi::CString;

use anyhow::{bail, Context as _, Result};
use aya::{
    programs::{xdp::XdpLinkId, ProgramError, XdpMode},
    Ebpf,
};
use lb_common::map_names;

use crate::{
    bpffs,
    config::{Config, InterfaceRole},
    dataplane::Dataplane,
    desired::{Desired, IdBook},
    privileges,
    program::{self, LoadOptions},
};

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

/// A loaded program attached to one or more interfaces, with its maps pinned
/// under each interface's directory. Dropping it detaches the program and
/// removes the pins.
pub struct Attachment {
    ebpf: Ebpf,
    ifaces: Vec<String>,
    links: Vec<XdpLinkId>,
    /// Interfaces whose pin directory this attachment created. Only these
    /// are removed on cleanup: a failed attach must not remove the pins of
    /// the lb-user that already holds the interface.
    pinned: Vec<String>,
    /// The config in force and what it was turned into (None without a config).
    state: Option<Applied>,
}

/// The config in force, the map contents it produced and the id book.
struct Applied {
    config: Config,
    desired: Desired,
    ids: IdBook,
}

impl Attachment {
    /// Attaches the program without any VIPs: it classifies, counts and
    /// passes every frame.
    pub fn attach(iface: &str, mode: AttachMode) -> Result<Attachment> {
        Attachment::attach_all(&[iface.to_owned()], mode, &LoadOptions::default(), |_| Ok(()))
    }

    /// Loads the program sized for `config`, fills its maps and attaches it
    /// to every interface the config lists (backend-side ones first, so reply
    /// translation is in place before client traffic arrives).
    pub fn attach_config(config: &Config, mode: AttachMode) -> Result<Attachment> {
        let mut ids = IdBook::default();
        let desired = Desired::build(config, &mut ids, &|_, _| true)?;
        let mut ifaces: Vec<&crate::config::Interface> = config.interfaces.iter().collect();
        ifaces.sort_by_key(|i| i.role == InterfaceRole::Client);
        let names: Vec<String> = ifaces.iter().map(|i| i.name.clone()).collect();
        let mut attachment = Attachment::attach_all(&names, mode, &desired.load, |dp| desired.apply(None, config, dp))?;
        attachment.state = Some(Applied { config: config.clone(), desired, ids });
        Ok(attachment)
    }

    /// Applies a new config to the running program: VIPs, backends and the
    /// allowlist change; established flows to backends that stay keep going.
    /// On error the old config stays in force (nothing it needs was removed).
    pub fn reload(&mut self, config: &Config) -> Result<()> {
        let Some(state) = self.state.as_mut() else {
            bail!("this attachment was started without --config; nothing to reload");
        };
        let old_ifaces: std::collections::BTreeSet<&str> = state.config.interfaces.iter().map(|i| i.name.as_str()).collect();
        let new_ifaces: std::collections::BTreeSet<&str> = config.interfaces.iter().map(|i| i.name.as_str()).collect();
        if old_ifaces != new_ifaces {
            bail!("interfaces cannot change while attached (have {old_ifaces:?}, config asks {new_ifaces:?}); detach and attach again");
        }
        let mut ids = state.ids.clone();
        let desired = Desired::build(config, &mut ids, &|_, _| true)?;
        desired.apply(Some((&state.desired, &state.config)), config, &mut Dataplane::new(&mut self.ebpf))?;
        *state = Applied { config: config.clone(), desired, ids };
        Ok(())
    }

    fn attach_all(
        ifaces: &[String],
        mode: AttachMode,
        load: &LoadOptions,
        fill: impl FnOnce(&mut Dataplane) -> Result<()>,
    ) -> Result<Attachment> {
        privileges::require_bpf_admin("lb-user attach")?;
        let mut indexes = Vec::new();
        for iface in ifaces {
            indexes.push(interface_index(iface)?);
        }
        bpffs::ensure_mounted()?;
        let mut ebpf = program::load_with(load)?;
        {
            let mut dp = Dataplane::new(&mut ebpf);
            for index in &indexes {
                dp.add_tx_port(*index)?;
            }
            fill(&mut dp)?;
        }
        let mut attachment = Attachment { ebpf, ifaces: ifaces.to_vec(), links: Vec::new(), pinned: Vec::new(), state: None };
        for (iface, index) in ifaces.iter().zip(indexes) {
            let link = program::xdp_program(&mut attachment.ebpf)?
                .attach_to_if_index(index, mode.xdp_mode())
                .map_err(|err| attach_error(iface, mode, err))?;
            attachment.links.push(link);
        }
        attachment.pin_maps()?;
        log::info!("attached xdplb to {} (mode {mode:?}); maps pinned under {}", ifaces.join(", "), bpffs::PIN_ROOT);
        Ok(attachment)
    }

    fn pin_maps(&mut self) -> Result<()> {
        for iface in &self.ifaces {
            let dir = bpffs::pin_dir(iface);
            if dir.exists() {
                // We just attached, so no other lb-user holds this interface: these
                // pins were left by one that was killed before it could clean up.
                log::warn!("removing stale pins in {}", dir.display());
                bpffs::remove_pins(iface)?;
            }
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            self.pinned.push(iface.clone());
            for &name in map_names::PINNED {
                let map = self.ebpf.map(name).with_context(|| format!("eBPF object has no map {name}"))?;
                let path = dir.join(name);
                map.pin(&path).with_context(|| format!("pinning map {name} at {}", path.display()))?;
            }
        }
        Ok(())
    }

    /// The interfaces the program is attached to.
    pub fn ifaces(&self) -> &[String] {
        &self.ifaces
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
        let mut result = Ok(());
        for iface in self.pinned.drain(..) {
            if let Err(err) = bpffs::remove_pins(&iface) {
                result = Err(err);
            }
        }
        let links: Vec<XdpLinkId> = self.links.drain(..).collect();
        if !links.is_empty() {
            let program = program::xdp_program(&mut self.ebpf)?;
            for link in links {
                program.detach(link).context("detaching XDP")?;
            }
            log::info!("detached xdplb from {}", self.ifaces.join(", "));
        }
        result
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if let Err(err) = self.cleanup() {
            log::error!("cleaning up {}: {err:#}", self.ifaces.join(", "));
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
