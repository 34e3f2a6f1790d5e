//! Reading the pinned counters, from any process: [`Report`] and
//! [`TrafficCounters`] here, per-second [`Rates`] between two reads in
//! `rates`, their table and JSON in `render`, and `lb-user stats --watch` in
//! `watch`.

mod rates;
mod render;
#[cfg(test)]
pub(crate) mod tests;
mod watch;

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use anyhow::{Context as _, Result};
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use lb_common::{
    lb::{BackendInfo, FlowCounter, GlobalConfig, VipInfo, VipKey, ALG_MAGLEV, ALG_MAGLEV_SRC, BACKEND_ACTIVE, BACKEND_HEALTHY, FAMILY_V4},
    map_names, Counters, PacketCounter, Stat, TrafficClass, TRAFFIC_CLASS_COUNT,
};

use lb_common::userspace::select::TableFingerprint;

use crate::{bpffs, dataplane::half_fingerprint, privileges};

pub use rates::{per_second, Rate, Rates};
pub use watch::{parse_interval, watch, watch_json_line, watch_table};

/// Counters summed over all CPUs, one per traffic class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficCounters(pub [PacketCounter; TRAFFIC_CLASS_COUNT as usize]);

impl TrafficCounters {
    pub fn get(&self, class: TrafficClass) -> PacketCounter {
        self.0[class.index() as usize]
    }

    /// `self - earlier`, per class (counters only grow while attached).
    pub fn delta(&self, earlier: &TrafficCounters) -> TrafficCounters {
        let mut out = TrafficCounters::default();
        for (i, slot) in out.0.iter_mut().enumerate() {
            slot.packets = self.0[i].packets.wrapping_sub(earlier.0[i].packets);
            slot.bytes = self.0[i].bytes.wrapping_sub(earlier.0[i].bytes);
        }
        out
    }

    /// The traffic classes of summed counters.
    pub fn from_counters(c: &Counters) -> TrafficCounters {
        TrafficCounters(c.traffic)
    }

    /// Reads the counters pinned for `iface` by a running `lb-user attach`.
    pub fn read_pinned(iface: &str) -> Result<TrafficCounters> {
        Ok(Self::from_counters(&*read_counters_pinned(iface)?))
    }
}

/// Reads the program's `COUNTERS` map and sums its per-CPU values.
pub fn read_counters(map: &PerCpuArray<&MapData, Counters>) -> Result<Box<Counters>> {
    let per_cpu = map.get(&0, 0).with_context(|| format!("reading {}", map_names::COUNTERS))?;
    let mut total = Box::new(Counters::ZERO);
    for value in per_cpu.iter() {
        total.add(value);
    }
    Ok(total)
}

/// Reads the counters pinned for `iface` by a running `lb-user attach`,
/// summed over CPUs.
pub fn read_counters_pinned(iface: &str) -> Result<Box<Counters>> {
    privileges::require_bpf_admin("lb-user stats")?;
    let map = open_pinned(iface, map_names::COUNTERS)?;
    let array = PerCpuArray::<&MapData, Counters>::try_from(&map)
        .with_context(|| format!("{} is not this lb-user's counter map (another version pinned it? `lb-user detach` and attach again)", map_names::COUNTERS))?;
    read_counters(&array)
}

/// The address in a map key or value (IPv4 in the first 4 bytes).
pub fn map_addr(addr: &[u8; 16], family: u8) -> IpAddr {
    if family == FAMILY_V4 {
        Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).into()
    } else {
        Ipv6Addr::from(*addr).into()
    }
}

/// `tcp`, `udp`, or the IP protocol number.
pub fn protocol_name(protocol: u8) -> String {
    match protocol {
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        n => n.to_string(),
    }
}

/// A VIP's label: `198.18.100.1:80/tcp`, `[fd00::1]:80/udp`.
pub fn vip_label(key: &VipKey) -> String {
    format!("{}/{}", SocketAddr::new(map_addr(&key.addr, key.family), key.port), protocol_name(key.protocol))
}

/// A backend's label: `198.18.1.11:8080`, `[fd00::11]:8080`.
pub fn backend_label(info: &BackendInfo) -> String {
    SocketAddr::new(map_addr(&info.addr, info.family), info.port).to_string()
}

/// What the BACKENDS map says about one backend id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendMeta {
    /// `198.18.1.11:8080`.
    pub label: String,
    /// The VIP it serves.
    pub vip_id: u32,
    /// The backend exists (`BACKEND_ACTIVE`); a removed one keeps its address.
    pub active: bool,
    /// The last health verdict was up (`BACKEND_HEALTHY`).
    pub up: bool,
}

impl BackendMeta {
    /// `up`, `down`, or `removed`.
    pub fn health(&self) -> &'static str {
        match (self.active, self.up) {
            (false, _) => "removed",
            (true, true) => "up",
            (true, false) => "down",
        }
    }
}

/// Everything `lb-user stats` shows: traffic classes, actions, per-VIP and
/// per-backend counters, and the VIPs' and backends' addresses and health
/// as the maps hold them (so any process can label the counters).
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub traffic: TrafficCounters,
    pub actions: Vec<(Stat, PacketCounter)>,
    /// VIP ids that are configured or saw traffic, ascending.
    pub vips: Vec<(u32, FlowCounter)>,
    /// Backend ids that are active or saw traffic, ascending.
    pub backends: Vec<(u32, FlowCounter)>,
    /// Configured VIPs (VIPS map, address markers skipped): id → label.
    pub vip_labels: BTreeMap<u32, String>,
    /// Every used BACKENDS slot (all-zero slots skipped): id → address and health.
    pub backend_meta: BTreeMap<u32, BackendMeta>,
    /// VIPs balanced by Maglev (`maglev`, `maglev_src`): id → fingerprint of
    /// the table the data path reads (the live half, slots resolved to
    /// backend addresses), equal on every node with the same table.
    pub maglev: BTreeMap<u32, TableFingerprint>,
}

fn open_pinned(iface: &str, name: &str) -> Result<Map> {
    let path = bpffs::pin_dir(iface).join(name);
    if !path.exists() {
        anyhow::bail!("no xdplb program is attached to {iface}: {} does not exist (start `lb-user attach --iface {iface}`)", path.display());
    }
    let data = MapData::from_pin(&path).with_context(|| format!("opening pinned map {}", path.display()))?;
    Map::from_map_data(data).with_context(|| format!("pinned map {} has an unexpected type", path.display()))
}

/// VIP labels from the VIPS map of `iface`.
fn read_vip_labels(iface: &str) -> Result<BTreeMap<u32, String>> {
    let map = open_pinned(iface, map_names::VIPS)?;
    let vips = HashMap::<&MapData, VipKey, VipInfo>::try_from(&map).context("VIPS has an unexpected type")?;
    let mut out = BTreeMap::new();
    for entry in vips.iter() {
        // An entry removed while iterating ends the walk early at worst.
        let Ok((key, info)) = entry else { break };
        if key.port == 0 && key.protocol == 0 {
            continue; // address marker
        }
        out.insert(info.vip_id, vip_label(&key));
    }
    Ok(out)
}

/// The fingerprint of each Maglev VIP's live table in the maps of `iface`.
fn read_fingerprints(iface: &str, backends: &BTreeMap<u32, BackendMeta>) -> Result<BTreeMap<u32, TableFingerprint>> {
    let config = open_pinned(iface, map_names::CONFIG)?;
    let size = Array::<&MapData, GlobalConfig>::try_from(&config).context("CONFIG has an unexpected type")?.get(&0, 0)?.maglev_size;
    let maglev = open_pinned(iface, map_names::MAGLEV)?;
    let vips_map = open_pinned(iface, map_names::VIPS)?;
    let vips = HashMap::<&MapData, VipKey, VipInfo>::try_from(&vips_map).context("VIPS has an unexpected type")?;
    let mut out = BTreeMap::new();
    for entry in vips.iter() {
        let Ok((key, info)) = entry else { break };
        if (key.port == 0 && key.protocol == 0) || !matches!(info.algorithm, ALG_MAGLEV | ALG_MAGLEV_SRC) {
            continue;
        }
        let half = info.vip_id * 2 + u32::from(info.table & 1);
        let fp = half_fingerprint(&maglev, half, size, |id| backends.get(&id).map(|m| m.label.clone())).with_context(|| format!("VIP {}", vip_label(&key)))?;
        out.insert(info.vip_id, fp);
    }
    Ok(out)
}

/// Used slots of the BACKENDS map of `iface`.
fn read_backend_meta(iface: &str) -> Result<BTreeMap<u32, BackendMeta>> {
    let map = open_pinned(iface, map_names::BACKENDS)?;
    let backends = Array::<&MapData, BackendInfo>::try_from(&map).context("BACKENDS has an unexpected type")?;
    let mut out = BTreeMap::new();
    for id in 0..backends.len() {
        let b = backends.get(&id, 0)?;
        if b == BackendInfo::default() {
            continue; // never used
        }
        out.insert(id, backend_meta(&b));
    }
    Ok(out)
}

/// The labels and health of one BACKENDS entry.
pub fn backend_meta(b: &BackendInfo) -> BackendMeta {
    BackendMeta { label: backend_label(b), vip_id: u32::from(b.vip_id), active: b.flags & BACKEND_ACTIVE != 0, up: b.flags & BACKEND_HEALTHY != 0 }
}

impl Report {
    /// Reads every counter pinned for `iface`, and the VIP and backend
    /// entries that label them.
    pub fn read_pinned(iface: &str) -> Result<Report> {
        let counters = read_counters_pinned(iface)?;
        let traffic = TrafficCounters::from_counters(&counters);
        let actions = Stat::ALL.iter().map(|&stat| (stat, counters.action(stat))).collect();
        let vip_labels = read_vip_labels(iface)?;
        let backend_meta = read_backend_meta(iface)?;
        let ids = |rows: &[FlowCounter]| rows.iter().enumerate().map(|(id, c)| (id as u32, *c)).collect::<Vec<_>>();
        let vips = ids(&counters.vips).into_iter().filter(|(id, c)| c.packets != 0 || vip_labels.contains_key(id)).collect();
        let backends = ids(&counters.backends).into_iter().filter(|(id, c)| c.packets != 0 || backend_meta.get(id).is_some_and(|m| m.active)).collect();
        let maglev = read_fingerprints(iface, &backend_meta)?;
        Ok(Report { traffic, actions, vips, backends, vip_labels, backend_meta, maglev })
    }

    pub fn action(&self, stat: Stat) -> PacketCounter {
        self.actions.iter().find(|(s, _)| *s == stat).map(|(_, c)| *c).unwrap_or_default()
    }

    /// The label of VIP `id`, if the VIPS map has it.
    pub fn vip_label(&self, id: u32) -> Option<&str> {
        self.vip_labels.get(&id).map(String::as_str)
    }

    /// The fingerprint of VIP `id`'s Maglev table (`None`: not a Maglev VIP).
    pub fn maglev_fingerprint(&self, id: u32) -> Option<String> {
        self.maglev.get(&id).map(ToString::to_string)
    }

    /// The label of the VIP backend `id` serves, if known.
    pub fn backend_vip_label(&self, id: u32) -> Option<&str> {
        self.backend_meta.get(&id).and_then(|m| self.vip_label(m.vip_id))
    }
}
