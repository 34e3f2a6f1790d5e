//! From a validated config to the exact map contents the data path needs:
//! backend ids, VIP entries, Maglev tables and round-robin lists, and the
//! difference between two such states for a reload.
//!
//! Ids are stable across reloads: a VIP keeps its id while its (address,
//! port, protocol) stays, a backend keeps its id while it stays in its VIP, so
//! conntrack entries keep pointing at the right backend. Ids of removed
//! backends are retired: new backends get never-used ids first, and only
//! when those run out are the retired ones reclaimed, after deleting every
//! conntrack entry that still names them, so a stale flow can never land on
//! a newcomer.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use anyhow::{bail, Context as _, Result};
use ipnet::IpNet;
use lb_common::lb::{BackendInfo, VipInfo, VipKey, BACKEND_ACTIVE, BACKEND_HEALTHY, FAMILY_V4, MAX_BACKENDS, MAX_VIPS};
use lb_common::userspace::select::maglev::{self, MaglevBackend, TableFingerprint};

use crate::{
    config::{AllowedPorts, AllowlistScope, Config},
    dataplane::{backend_info, vip_key, Dataplane},
    program::LoadOptions,
};

/// Which id each VIP and backend has.
#[derive(Clone, Debug, Default)]
pub struct IdBook {
    vips: BTreeMap<VipKey, u32>,
    /// (vip id, address, port) → backend id.
    backends: BTreeMap<(u32, IpAddr, u16), u32>,
    retired_backends: BTreeSet<u32>,
}

impl IdBook {
    fn vip_id(&mut self, key: &VipKey) -> Result<u32> {
        if let Some(id) = self.vips.get(key) {
            return Ok(*id);
        }
        let used: BTreeSet<u32> = self.vips.values().copied().collect();
        let id = (0..MAX_VIPS).find(|i| !used.contains(i)).context("no free VIP id")?;
        self.vips.insert(*key, id);
        Ok(id)
    }

    fn backend_id(&mut self, vip_id: u32, addr: IpAddr, port: u16) -> Result<u32> {
        if let Some(id) = self.backends.get(&(vip_id, addr, port)) {
            return Ok(*id);
        }
        let used: BTreeSet<u32> = self.backends.values().copied().collect();
        let id = (0..MAX_BACKENDS)
            .find(|i| !used.contains(i) && !self.retired_backends.contains(i))
            .ok_or(IdsExhausted { in_use: used.len(), retired: self.retired_backends.len() })?;
        self.backends.insert((vip_id, addr, port), id);
        Ok(id)
    }

    /// Makes the retired backend ids free again: deletes the conntrack
    /// entries that still name one of them (flows that sent nothing since
    /// their backend was removed, see [`Dataplane::forget_flows_of`]).
    /// Returns (ids freed, conntrack entries deleted).
    pub fn reclaim(&mut self, dp: &mut Dataplane) -> Result<(usize, u64)> {
        let flows = dp.forget_flows_of(&self.retired_backends).context("reclaiming the ids of removed backends")?;
        let freed = self.retired_backends.len();
        self.retired_backends.clear();
        Ok((freed, flows))
    }

    /// Rebuilds the ids, and the map state they describe, from a running
    /// program's maps (after a restart): VIP entries give VIP ids, active
    /// backend slots give backend ids (`BackendInfo::vip_id` says whose),
    /// inactive slots stay retired.
    pub fn adopt(dp: &Dataplane, load: LoadOptions) -> Result<(IdBook, Desired)> {
        let mut ids = IdBook::default();
        let mut vips = Vec::new();
        for (key, info) in dp.vips()? {
            if key.port == 0 && key.protocol == 0 {
                continue; // address marker
            }
            ids.vips.insert(key, info.vip_id);
            vips.push(DesiredVip {
                name: format!("vip {}", info.vip_id),
                key,
                info,
                maglev: Vec::new(),
                fingerprint: None,
                round_robin: Vec::new(),
                backend_ids: Vec::new(),
            });
        }
        let mut backends = Vec::new();
        for (id, b) in dp.backends()? {
            if b.flags & BACKEND_ACTIVE == 0 {
                ids.retired_backends.insert(id);
                continue;
            }
            let addr: IpAddr = if b.family == FAMILY_V4 {
                std::net::Ipv4Addr::new(b.addr[0], b.addr[1], b.addr[2], b.addr[3]).into()
            } else {
                std::net::Ipv6Addr::from(b.addr).into()
            };
            ids.backends.insert((u32::from(b.vip_id), addr, b.port), id);
            backends.push((id, b));
        }
        Ok((ids, Desired { load, backends, vips }))
    }

    /// Forgets VIPs and backends not in `keep`, returning the retired backend ids.
    fn retain(&mut self, vips: &BTreeSet<VipKey>, backends: &BTreeSet<u32>) -> Vec<u32> {
        self.vips.retain(|k, _| vips.contains(k));
        let mut retired = Vec::new();
        self.backends.retain(|_, id| {
            let keep = backends.contains(id);
            if !keep {
                retired.push(*id);
            }
            keep
        });
        self.retired_backends.extend(&retired);
        retired
    }
}

/// Every backend id is in use or retired (removed, maybe still named by a
/// conntrack entry); [`Desired::build_reclaiming`] reclaims the retired ones.
#[derive(Debug)]
pub struct IdsExhausted {
    pub in_use: usize,
    pub retired: usize,
}

impl std::fmt::Display for IdsExhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no free backend id: {} of {MAX_BACKENDS} in use, {} retired; a config gets an id for every backend it keeps or adds while those it removes still hold theirs",
            self.in_use, self.retired
        )
    }
}

impl std::error::Error for IdsExhausted {}

/// One VIP's entry and tables.
#[derive(Clone, Debug)]
pub struct DesiredVip {
    pub name: String,
    pub key: VipKey,
    pub info: VipInfo,
    pub maglev: Vec<u32>,
    /// The fingerprint of `maglev` (slot → backend `address:port`), which
    /// [`Desired::apply`] checks against the table read back from the map;
    /// `None` for state adopted from a running program (not applied again).
    pub fingerprint: Option<TableFingerprint>,
    pub round_robin: Vec<u32>,
    /// Backend ids of this VIP, in config order.
    pub backend_ids: Vec<u32>,
}

/// Everything lb-user writes into the maps for a config.
#[derive(Clone, Debug)]
pub struct Desired {
    pub load: LoadOptions,
    pub backends: Vec<(u32, BackendInfo)>,
    pub vips: Vec<DesiredVip>,
}

/// The sizes a config fixes at load time.
pub fn load_options(config: &Config) -> LoadOptions {
    LoadOptions {
        maglev_size: config.maglev.size,
        max_flows: config.conntrack.max_flows,
        tcp_timeout_s: config.conntrack.tcp_timeout.as_secs() as u32,
        udp_timeout_s: config.conntrack.udp_timeout.as_secs() as u32,
    }
}

impl Desired {
    /// The desired state for `config`, with ids from (and recorded in) `ids`.
    /// `healthy(vip, backend)` says whether a backend may get new flows.
    pub fn build(config: &Config, ids: &mut IdBook, healthy: &dyn Fn(usize, usize) -> bool) -> Result<Desired> {
        let mut backends = Vec::new();
        let mut vips = Vec::new();
        for (vi, vip) in config.vips.iter().enumerate() {
            let key = vip_key(vip.address, vip.port, vip.protocol.number());
            let vip_id = ids.vip_id(&key)?;
            let mut backend_ids = Vec::new();
            let mut ring = Vec::new();
            let mut rr = Vec::new();
            for (bi, b) in vip.backends.iter().enumerate() {
                let id = ids.backend_id(vip_id, b.address, b.port)?;
                let mut info = backend_info(b.address, b.port);
                info.mac = b.mac.unwrap_or_default();
                info.vip_id = vip_id as u16;
                let up = healthy(vi, bi);
                if !up {
                    info.flags &= !BACKEND_HEALTHY;
                }
                backends.push((id, info));
                backend_ids.push(id);
                if up {
                    ring.push(MaglevBackend { id, key: b.key(), weight: b.weight });
                    rr.push(id);
                }
            }
            let maglev =
                maglev::build_table(&ring, config.maglev.size, config.maglev.seed).with_context(|| format!("building the Maglev table of VIP {}", vip.name))?;
            let keys: BTreeMap<u32, &str> = ring.iter().map(|b| (b.id, b.key.as_str())).collect();
            let fingerprint =
                maglev::fingerprint(&maglev, |id| keys.get(&id).copied()).with_context(|| format!("fingerprinting the Maglev table of VIP {}", vip.name))?;
            let info = VipInfo { vip_id, algorithm: vip.algorithm.code(), mode: vip.forwarding.code(), hash_seed: config.maglev.seed, ..Default::default() };
            vips.push(DesiredVip { name: vip.name.clone(), key, info, maglev, fingerprint: Some(fingerprint), round_robin: rr, backend_ids });
        }
        let keep_vips = vips.iter().map(|v| v.key).collect();
        let keep_backends = backends.iter().map(|(id, _)| *id).collect();
        ids.retain(&keep_vips, &keep_backends);
        Ok(Desired { load: load_options(config), backends, vips })
    }

    /// [`Desired::build`], but when the backend ids run out the retired ones
    /// are reclaimed ([`IdBook::reclaim`]) and the build tried again: a config
    /// may name up to `MAX_BACKENDS` backends however many were removed
    /// before. `ids` changes only on success (the reclaim's effect on the
    /// maps is harmless either way).
    pub fn build_reclaiming(config: &Config, ids: &mut IdBook, dp: &mut Dataplane, healthy: &dyn Fn(usize, usize) -> bool) -> Result<Desired> {
        let mut attempt = ids.clone();
        match Desired::build(config, &mut attempt, healthy) {
            Ok(desired) => {
                *ids = attempt;
                Ok(desired)
            }
            Err(e) if e.is::<IdsExhausted>() && !ids.retired_backends.is_empty() => {
                let mut attempt = ids.clone();
                let (freed, flows) = attempt.reclaim(dp)?;
                log::info!("backend ids ran out: reclaimed the {freed} retired by removed backends ({flows} stale conntrack entries deleted)");
                let desired = Desired::build(config, &mut attempt, healthy)?;
                *ids = attempt;
                Ok(desired)
            }
            Err(e) => Err(e),
        }
    }

    /// The desired state of a first attach: every backend healthy.
    pub fn from_config(config: &Config) -> Result<Desired> {
        Desired::build(config, &mut IdBook::default(), &|_, _| true)
    }

    /// Moves the maps from `old` (None on a fresh program) to `self`, in an
    /// order that keeps every intermediate state consistent for the data path:
    /// new backends before the tables that use them, tables flipped per VIP,
    /// removed backends and VIPs retired last.
    pub fn apply(&self, old: Option<&Desired>, config: &Config, dp: &mut Dataplane) -> Result<()> {
        if let Some(old) = old {
            if old.load != self.load {
                bail!(
                    "maglev.size and conntrack settings are fixed while attached (have {:?}, config asks {:?}); detach and attach again to change them",
                    old.load,
                    self.load
                );
            }
        }
        for (id, info) in &self.backends {
            dp.set_backend(*id, info)?;
        }
        for vip in &self.vips {
            let fingerprint =
                vip.fingerprint.with_context(|| format!("VIP {} has no table fingerprint (state read from a program is not applied)", vip.name))?;
            dp.set_vip_checked(&vip.key, &vip.info, &vip.maglev, &vip.round_robin, fingerprint).with_context(|| format!("installing VIP {}", vip.name))?;
        }
        if let Some(old) = old {
            let live: BTreeSet<u32> = self.backends.iter().map(|(id, _)| *id).collect();
            for (id, info) in &old.backends {
                if !live.contains(id) {
                    // Flags 0: flows tracked to it choose again (a removed backend breaks its flows).
                    dp.set_backend(*id, &BackendInfo { flags: 0, ..*info })?;
                }
            }
            let keys: BTreeSet<VipKey> = self.vips.iter().map(|v| v.key).collect();
            for vip in old.vips.iter().filter(|v| !keys.contains(&v.key)) {
                let address_still_used = self.vips.iter().any(|v| v.key.addr == vip.key.addr && v.key.family == vip.key.family);
                dp.remove_vip(&vip.key, !address_still_used)?;
            }
        }
        set_allowlist(config, dp)
    }
}

/// Installs the config's allowlist, then removes whatever else the maps hold
/// (left by the previous config, or by the lb-user before a restart): for a
/// moment the union is allowed, never less than either.
fn set_allowlist(config: &Config, dp: &mut Dataplane) -> Result<()> {
    let (cidrs, ports): (Vec<IpNet>, Option<Vec<u16>>) = match &config.allowlist {
        Some(allow) => {
            let ports = match &allow.rules.ports {
                AllowedPorts::Any => None,
                AllowedPorts::Only(p) => Some(p.clone()),
            };
            dp.set_allowlist(&allow.rules.sources, ports.as_deref(), allow.scope == AllowlistScope::All)?;
            (allow.rules.sources.clone(), ports)
        }
        None => {
            dp.disable_allowlist()?;
            (Vec::new(), Some(Vec::new()))
        }
    };
    let (have_nets, have_ports) = dp.allowlist_entries()?;
    let gone_nets: Vec<IpNet> = have_nets.into_iter().filter(|n| !cidrs.contains(n)).collect();
    let gone_ports: Vec<u16> = match &ports {
        Some(keep) => have_ports.into_iter().filter(|p| !keep.contains(p)).collect(),
        None => have_ports,
    };
    dp.remove_allowlist_entries(&gone_nets, &gone_ports)
}
