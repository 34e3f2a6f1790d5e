//! Attaching the XDP program to an interface and pinning its maps.
//!
//! The program is attached through a BPF link owned by this process, so the
//! kernel detaches it when the process exits for any reason; the maps are
//! pinned under `/sys/fs/bpf/xdplb/<iface>/` so `lb-user stats` can read them
//! from another process.

use std::{collections::BTreeMap, ffi::CString, net::SocketAddr};

use anyhow::{bail, Context as _, Result};
use aya::{
    programs::{
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
        ProgramError, XdpMode,
    },
    Ebpf,
};
use lb_common::map_names;

use crate::{
    bpffs,
    config::{Config, InterfaceRole},
    dataplane::Dataplane,
    desired::{self, Desired, IdBook},
    health::HealthSnapshot,
    privileges,
    program::{self, LoadOptions},
};

pub use crate::config::AttachMode;

/// The aya mode for `mode`.
fn xdp_mode(mode: AttachMode) -> XdpMode {
    match mode {
        AttachMode::Auto => XdpMode::Default,
        AttachMode::Native => XdpMode::Driver,
        AttachMode::Skb => XdpMode::Skb,
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

/// A loaded program attached to one or more interfaces through pinned BPF
/// links, with its maps pinned under each interface's directory.
///
/// Stopping it (`detach`, or drop) removes the pins, which detaches the
/// program. If the process dies without that (even SIGKILL), the pinned links
/// keep the program attached and forwarding; the next `attach` adopts the
/// pinned maps (conntrack included) and links.
pub struct Attachment {
    ebpf: Ebpf,
    ifaces: Vec<String>,
    /// Our references to the pinned links (dropping them alone keeps the
    /// program attached; removing the pin files too detaches it).
    links: Vec<FdLink>,
    /// Interfaces whose pin directory this attachment owns. Only these are
    /// removed on cleanup: a refused attach must not touch another's pins.
    pinned: Vec<String>,
    _locks: Vec<bpffs::IfaceLock>,
    /// The config in force and what it was turned into (None without a config).
    state: Option<Applied>,
    adopted: bool,
}

/// The config in force, the map contents it produced, the id book and the
/// health verdicts the tables were built from.
struct Applied {
    config: Config,
    desired: Desired,
    ids: IdBook,
    health: HealthSnapshot,
}

impl Attachment {
    /// Attaches the program without any VIPs: it classifies, counts and
    /// passes every frame.
    pub fn attach(iface: &str, mode: AttachMode) -> Result<Attachment> {
        Attachment::attach_all(&[iface.to_owned()], mode, &LoadOptions::default(), |_, _| Ok(()))
    }

    /// Loads the program sized for `config`, fills its maps and attaches it
    /// to every interface the config lists (backend-side ones first, so reply
    /// translation is in place before client traffic arrives). If a previous
    /// lb-user left the program attached, its maps and links are adopted and
    /// brought to this config without disturbing established flows. `start`
    /// says which backends go into the first tables (all up, but for DSR
    /// backends whose next hop is not resolved yet, see
    /// [`crate::neighbours`]).
    pub fn attach_config(config: &Config, mode: AttachMode, start: &HealthSnapshot) -> Result<Attachment> {
        let mut ifaces: Vec<&crate::config::Interface> = config.interfaces.iter().collect();
        ifaces.sort_by_key(|i| i.role == InterfaceRole::Client);
        let names: Vec<String> = ifaces.iter().map(|i| i.name.clone()).collect();
        let load = desired::load_options(config);
        let mut applied = None;
        let mut attachment = Attachment::attach_all(&names, mode, &load, |dp, adopted| {
            let (mut ids, old) = if adopted { IdBook::adopt(dp, load).map(|(i, d)| (i, Some(d)))? } else { (IdBook::default(), None) };
            let desired = Desired::build_reclaiming(config, &mut ids, dp, &|v, b| start.is_up(v, b))?;
            desired.apply(old.as_ref(), config, dp)?;
            applied = Some(Applied { config: config.clone(), desired, ids, health: start.clone() });
            Ok(())
        })?;
        attachment.state = applied;
        Ok(attachment)
    }

    /// Applies a new config to the running program: VIPs, backends and the
    /// allowlist change; established flows to backends that stay keep going.
    /// `health` is the new config's backends as the checks judge them (see
    /// [`crate::health::HealthChecks::snapshot`]): a backend that stays keeps
    /// its state, so a reload never hands new flows to a dead backend. On
    /// error the old config stays in force (nothing it needs was removed).
    pub fn reload(&mut self, config: &Config, health: &HealthSnapshot) -> Result<()> {
        let Some(state) = self.state.as_mut() else {
            bail!("this attachment was started without --config; nothing to reload");
        };
        let old_ifaces: std::collections::BTreeSet<&str> = state.config.interfaces.iter().map(|i| i.name.as_str()).collect();
        let new_ifaces: std::collections::BTreeSet<&str> = config.interfaces.iter().map(|i| i.name.as_str()).collect();
        if old_ifaces != new_ifaces {
            bail!("interfaces cannot change while attached (have {old_ifaces:?}, config asks {new_ifaces:?}); detach and attach again");
        }
        // Neither can be applied to a running attachment: the exporter's
        // socket is bound once, and the XDP mode is fixed by the link. Saying
        // so beats accepting a reload that silently keeps the old value.
        if config.metrics != state.config.metrics {
            let show = |m: &Option<crate::config::MetricsConfig>| m.map_or("none".to_owned(), |m| m.listen.to_string());
            bail!(
                "metrics.listen cannot change while attached ({} -> {}); restart lb-user to move the metrics endpoint",
                show(&state.config.metrics),
                show(&config.metrics)
            );
        }
        if config.api != state.config.api {
            let show = |a: &Option<crate::config::ApiConfig>| a.map_or("none".to_owned(), |a| a.listen.to_string());
            bail!("api.listen cannot change while attached ({} -> {}); restart lb-user to move the control API", show(&state.config.api), show(&config.api));
        }
        // The announcer is bound to one table and node name; grace may change.
        let node_table = |c: &Config| c.group.as_ref().map(|g| (g.node.clone(), g.table));
        if node_table(config) != node_table(&state.config) {
            let show = |g: Option<(String, u32)>| g.map_or("none".to_owned(), |(n, t)| format!("node {n} table {t}"));
            bail!(
                "group.node and group.table cannot change while attached ({} -> {}); detach and attach again",
                show(node_table(&state.config)),
                show(node_table(config))
            );
        }
        if config.attach_mode != state.config.attach_mode {
            bail!("attach_mode cannot change while attached ({:?} -> {:?}); detach and attach again", state.config.attach_mode, config.attach_mode);
        }
        self.rebuild(config, health.clone())
    }

    /// Rebuilds every VIP's tables from new health verdicts: backends that
    /// went down stop getting new flows, flows already tracked to them stay
    /// (the backend still exists), backends that came up get new flows again.
    pub fn set_health(&mut self, health: &HealthSnapshot) -> Result<()> {
        let Some(state) = self.state.as_ref() else { return Ok(()) };
        if &state.health == health {
            return Ok(());
        }
        let config = state.config.clone();
        self.rebuild(&config, health.clone())
    }

    fn rebuild(&mut self, config: &Config, health: HealthSnapshot) -> Result<()> {
        let Some(state) = self.state.as_mut() else { bail!("no config attached") };
        let mut ids = state.ids.clone();
        let mut dp = Dataplane::new(&mut self.ebpf);
        let desired = Desired::build_reclaiming(config, &mut ids, &mut dp, &|v, b| health.is_up(v, b))?;
        desired.apply(Some(&state.desired), config, &mut dp)?;
        *state = Applied { config: config.clone(), desired, ids, health };
        Ok(())
    }

    /// Live conntrack flows (see [`Dataplane::live_flows`]) of every backend
    /// of the config in force, by (VIP name, backend address).
    pub fn live_flows(&mut self) -> Result<BTreeMap<(String, SocketAddr), u64>> {
        let Some(state) = self.state.as_ref() else { return Ok(BTreeMap::new()) };
        let by_id = Dataplane::new(&mut self.ebpf).live_flows(crate::dataplane::datapath_now_ns())?;
        let mut out = BTreeMap::new();
        // Desired VIPs and their backend ids are in config order.
        for (vip, desired) in state.config.vips.iter().zip(&state.desired.vips) {
            for (b, id) in vip.backends.iter().zip(&desired.backend_ids) {
                out.insert((vip.name.clone(), b.socket_addr()), by_id.get(id).copied().unwrap_or(0));
            }
        }
        Ok(out)
    }

    /// The VIP id and backend ids of every VIP of the config in force, in
    /// config order (empty without a config).
    pub fn ids(&self) -> Vec<(u32, Vec<u32>)> {
        let Some(state) = self.state.as_ref() else { return Vec::new() };
        state.desired.vips.iter().map(|v| (v.info.vip_id, v.backend_ids.clone())).collect()
    }

    /// The config in force, if attached with one.
    pub fn config(&self) -> Option<&Config> {
        self.state.as_ref().map(|s| &s.config)
    }

    fn attach_all(ifaces: &[String], mode: AttachMode, load: &LoadOptions, fill: impl FnOnce(&mut Dataplane, bool) -> Result<()>) -> Result<Attachment> {
        privileges::require_bpf_admin("lb-user attach")?;
        let mut indexes = Vec::new();
        for iface in ifaces {
            indexes.push(interface_index(iface)?);
        }
        bpffs::ensure_mounted()?;
        let mut locks = Vec::new();
        for iface in ifaces {
            locks.push(bpffs::lock_iface(iface)?);
        }
        // Maps live in the first interface's directory; the others get extra pins.
        let home = bpffs::pin_dir(&ifaces[0]);
        let existed = home.exists();
        std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
        let (ebpf, adopted) = match program::load_with(load, Some(&home)) {
            Ok(loaded) => loaded,
            Err(err) => {
                // Leave a previous lb-user's pins alone; remove only what we made.
                if !existed {
                    let _ = bpffs::remove_pins(&ifaces[0]);
                }
                return Err(err);
            }
        };
        // From here on, dropping `attachment` on an error cleans up.
        let mut attachment = Attachment {
            ebpf,
            ifaces: ifaces.to_vec(),
            links: Vec::new(),
            pinned: if adopted { Vec::new() } else { vec![ifaces[0].clone()] },
            _locks: locks,
            state: None,
            adopted,
        };
        {
            let mut dp = Dataplane::new(&mut attachment.ebpf);
            for index in &indexes {
                dp.add_tx_port(*index)?;
            }
            fill(&mut dp, adopted)?;
        }
        for (iface, index) in ifaces.iter().zip(indexes) {
            let link = attachment.link(iface, index, mode)?;
            attachment.links.push(link);
        }
        attachment.pin_extra()?;
        // Attached: from now on a stop removes every pin (also adopted ones).
        attachment.pinned = ifaces.to_vec();
        let how = if adopted { "adopted the running program and its state on" } else { "attached xdplb to" };
        log::info!("{how} {} (mode {mode:?}); pins under {}", ifaces.join(", "), bpffs::PIN_ROOT);
        Ok(attachment)
    }

    /// Attaches to `iface` through a pinned link, or, when a link is already
    /// pinned there, swaps this program into it atomically.
    fn link(&mut self, iface: &str, index: u32, mode: AttachMode) -> Result<FdLink> {
        let path = bpffs::pin_dir(iface).join(bpffs::LINK_PIN);
        let program = program::xdp_program(&mut self.ebpf)?;
        let id = if path.exists() {
            let pinned = PinnedLink::from_pin(&path).with_context(|| format!("opening pinned link {}", path.display()))?;
            let link = XdpLink::try_from(FdLink::from(pinned)).context("pinned link is not an XDP link")?;
            program.attach_to_link(link).with_context(|| format!("replacing the program on {iface}"))?
        } else {
            let id = program.attach_to_if_index(index, xdp_mode(mode)).map_err(|err| attach_error(iface, mode, err))?;
            let link =
                FdLink::try_from(program.take_link(id)?).with_context(|| format!("{iface}: the kernel attached XDP without a BPF link; cannot pin it"))?;
            std::fs::create_dir_all(bpffs::pin_dir(iface))?;
            let pinned = link.pin(&path).with_context(|| format!("pinning the link at {}", path.display()))?;
            if !self.pinned.iter().any(|i| i == iface) {
                self.pinned.push(iface.to_owned());
            }
            return Ok(FdLink::from(pinned));
        };
        FdLink::try_from(program.take_link(id)?).context("taking the link back")
    }

    /// Pins the maps under the other interfaces' directories too, so
    /// `lb-user stats --iface` works with any of them.
    fn pin_extra(&mut self) -> Result<()> {
        for iface in self.ifaces.iter().skip(1) {
            let dir = bpffs::pin_dir(iface);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            if !self.pinned.iter().any(|i| i == iface) {
                self.pinned.push(iface.clone());
            }
            crate::program::remove_retired_pins(&dir)?;
            for &name in map_names::PINNED {
                let path = dir.join(name);
                if path.exists() {
                    continue;
                }
                let map = self.ebpf.map(name).with_context(|| format!("eBPF object has no map {name}"))?;
                map.pin(&path).with_context(|| format!("pinning map {name} at {}", path.display()))?;
            }
        }
        Ok(())
    }

    /// The interfaces the program is attached to.
    pub fn ifaces(&self) -> &[String] {
        &self.ifaces
    }

    /// Whether this attach took over a program a previous lb-user left running.
    pub fn adopted(&self) -> bool {
        self.adopted
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
        if !self.links.is_empty() {
            // With the pins gone, these are the last references.
            self.links.clear();
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

/// Removes what an lb-user left attached to `iface` (pins of the link and the
/// maps), which detaches the program. A running lb-user holding the interface
/// is asked to stop (SIGTERM) first.
pub fn detach_pinned(iface: &str) -> Result<()> {
    privileges::require_bpf_admin("lb-user detach")?;
    let group = crate::announce::recall(iface)?;
    if let Some(pid) = bpffs::lock_holder(iface) {
        log::info!("asking lb-user pid {pid} to detach from {iface}");
        // SAFETY: plain kill(2).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        // A member of a group withdraws its VIPs and waits its grace first.
        let limit = std::time::Duration::from_secs(10) + group.map(|g| g.grace).unwrap_or_default();
        let deadline = std::time::Instant::now() + limit;
        while bpffs::lock_holder(iface).is_some() {
            if std::time::Instant::now() > deadline {
                bail!("lb-user pid {pid} did not stop within {}", lb_common::userspace::duration::show(limit));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    // A crashed member left its VIPs announced (as it left forwarding):
    // withdraw them before the program goes.
    if let Some(record) = crate::announce::recall(iface)? {
        let mut rtnl = crate::rtnl::Rtnl::open()?;
        for addr in rtnl.table_routes(record.table)? {
            rtnl.delete_table_route(record.table, addr)?;
            log::info!("vip withdrawn address={addr} table={} reason=\"lb-user detach\"", record.table);
        }
        crate::announce::forget(iface);
    }
    let dir = bpffs::pin_dir(iface);
    if !dir.exists() {
        bail!("nothing to detach: {} does not exist", dir.display());
    }
    bpffs::remove_pins(iface)?;
    log::info!("detached xdplb from {iface}");
    Ok(())
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
