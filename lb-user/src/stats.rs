//! Reading the pinned counters, from any process.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{IsTerminal as _, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result};
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use lb_common::{
    lb::{BackendInfo, FlowCounter, VipInfo, VipKey, BACKEND_ACTIVE, BACKEND_HEALTHY, FAMILY_V4},
    map_names, PacketCounter, Stat, TrafficClass, TRAFFIC_CLASS_COUNT,
};
use serde::Serialize;

use crate::{bpffs, privileges};

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

    /// Reads and sums the per-CPU counters from a traffic map.
    pub fn read(map: &PerCpuArray<&MapData, PacketCounter>) -> Result<TrafficCounters> {
        let mut out = TrafficCounters::default();
        for class in TrafficClass::ALL {
            let per_cpu = map.get(&class.index(), 0).with_context(|| format!("reading counter {}", class.name()))?;
            for value in per_cpu.iter() {
                out.0[class.index() as usize].add(value);
            }
        }
        Ok(out)
    }

    /// Reads the counters pinned for `iface` by a running `lb-user attach`.
    pub fn read_pinned(iface: &str) -> Result<TrafficCounters> {
        privileges::require_bpf_admin("lb-user stats")?;
        let path = bpffs::pin_dir(iface).join(map_names::TRAFFIC);
        if !Path::new(&path).exists() {
            anyhow::bail!(
                "no xdplb program is attached to {iface}: {} does not exist (start `lb-user attach --iface {iface}`)",
                path.display()
            );
        }
        let data = MapData::from_pin(&path).with_context(|| format!("opening pinned map {}", path.display()))?;
        let map = Map::PerCpuArray(data);
        let array = PerCpuArray::<&MapData, PacketCounter>::try_from(&map)
            .with_context(|| format!("{} is not xdplb's traffic map", path.display()))?;
        Self::read(&array)
    }

    /// A fixed-width table, one row per class.
    pub fn to_table(&self) -> String {
        let mut out = format!("{:<10} {:>14} {:>16}\n", "class", "packets", "bytes");
        for class in TrafficClass::ALL {
            let c = self.get(class);
            out.push_str(&format!("{:<10} {:>14} {:>16}\n", class.name(), c.packets, c.bytes));
        }
        out
    }

    /// `{"ipv4": {"packets": N, "bytes": N}, ...}`
    pub fn to_json(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct Row {
            packets: u64,
            bytes: u64,
        }
        let map: serde_json::Map<String, serde_json::Value> = TrafficClass::ALL
            .iter()
            .map(|c| {
                let v = self.get(*c);
                (c.name().to_owned(), serde_json::to_value(Row { packets: v.packets, bytes: v.bytes }).unwrap())
            })
            .collect();
        serde_json::Value::Object(map)
    }
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
}

fn open_pinned(iface: &str, name: &str) -> Result<Map> {
    let path = bpffs::pin_dir(iface).join(name);
    if !path.exists() {
        anyhow::bail!(
            "no xdplb program is attached to {iface}: {} does not exist (start `lb-user attach --iface {iface}`)",
            path.display()
        );
    }
    let data = MapData::from_pin(&path).with_context(|| format!("opening pinned map {}", path.display()))?;
    Map::from_map_data(data).with_context(|| format!("pinned map {} has an unexpected type", path.display()))
}

/// Every id's counter summed over CPUs.
fn sum_flow_counters(map: &Map, name: &str) -> Result<Vec<(u32, FlowCounter)>> {
    let array = PerCpuArray::<&MapData, FlowCounter>::try_from(map).with_context(|| format!("{name} has an unexpected type"))?;
    let mut out = Vec::new();
    for id in 0..array.len() {
        let mut total = FlowCounter::default();
        for v in array.get(&id, 0)?.iter() {
            total.packets = total.packets.wrapping_add(v.packets);
            total.bytes = total.bytes.wrapping_add(v.bytes);
            total.new_flows = total.new_flows.wrapping_add(v.new_flows);
        }
        out.push((id, total));
    }
    Ok(out)
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
    BackendMeta {
        label: backend_label(b),
        vip_id: u32::from(b.vip_id),
        active: b.flags & BACKEND_ACTIVE != 0,
        up: b.flags & BACKEND_HEALTHY != 0,
    }
}

impl Report {
    /// Reads every counter pinned for `iface`, and the VIP and backend
    /// entries that label them.
    pub fn read_pinned(iface: &str) -> Result<Report> {
        let traffic = TrafficCounters::read_pinned(iface)?;
        let stats_map = open_pinned(iface, map_names::STATS)?;
        let stats = PerCpuArray::<&MapData, PacketCounter>::try_from(&stats_map).context("STATS has an unexpected type")?;
        let mut actions = Vec::new();
        for stat in Stat::ALL {
            let mut total = PacketCounter::default();
            for v in stats.get(&stat.index(), 0)?.iter() {
                total.add(v);
            }
            actions.push((stat, total));
        }
        let vip_labels = read_vip_labels(iface)?;
        let backend_meta = read_backend_meta(iface)?;
        let vips = sum_flow_counters(&open_pinned(iface, map_names::VIP_STATS)?, map_names::VIP_STATS)?
            .into_iter()
            .filter(|(id, c)| c.packets != 0 || vip_labels.contains_key(id))
            .collect();
        let backends = sum_flow_counters(&open_pinned(iface, map_names::BACKEND_STATS)?, map_names::BACKEND_STATS)?
            .into_iter()
            .filter(|(id, c)| c.packets != 0 || backend_meta.get(id).is_some_and(|m| m.active))
            .collect();
        Ok(Report { traffic, actions, vips, backends, vip_labels, backend_meta })
    }

    pub fn action(&self, stat: Stat) -> PacketCounter {
        self.actions.iter().find(|(s, _)| *s == stat).map(|(_, c)| *c).unwrap_or_default()
    }

    /// The label of VIP `id`, if the VIPS map has it.
    pub fn vip_label(&self, id: u32) -> Option<&str> {
        self.vip_labels.get(&id).map(String::as_str)
    }

    /// The label of the VIP backend `id` serves, if known.
    pub fn backend_vip_label(&self, id: u32) -> Option<&str> {
        self.backend_meta.get(&id).and_then(|m| self.vip_label(m.vip_id))
    }

    pub fn to_table(&self) -> String {
        self.table(RateColumns::None)
    }

    fn table(&self, rates: RateColumns) -> String {
        let with = !matches!(rates, RateColumns::None);
        let r = |v: Option<f64>| -> String {
            match (with, v) {
                (false, _) => String::new(),
                (true, Some(v)) => format!(" {v:>12.1}"),
                (true, None) => format!(" {:>12}", "-"),
            }
        };
        let h = |name: &str| if with { format!(" {name:>12}") } else { String::new() };
        let rt = |f: &dyn Fn(&Rates) -> Option<Rate>| match &rates {
            RateColumns::Some(x) => f(x),
            _ => None,
        };

        let mut out = format!("{:<10} {:>14}{} {:>16}{}\n", "class", "packets", h("packets/s"), "bytes", h("bytes/s"));
        for class in TrafficClass::ALL {
            let c = self.traffic.get(class);
            let x = rt(&|x| x.traffic.iter().find(|(k, _)| *k == class).map(|(_, v)| *v));
            out.push_str(&format!(
                "{:<10} {:>14}{} {:>16}{}\n",
                class.name(),
                c.packets,
                r(x.map(|v| v.packets)),
                c.bytes,
                r(x.map(|v| v.bytes))
            ));
        }
        out.push_str(&format!("\n{:<22} {:>14}{} {:>16}{}\n", "action", "packets", h("packets/s"), "bytes", h("bytes/s")));
        for (stat, c) in &self.actions {
            let x = rt(&|x| x.actions.iter().find(|(k, _)| k == stat).map(|(_, v)| *v));
            out.push_str(&format!(
                "{:<22} {:>14}{} {:>16}{}\n",
                stat.name(),
                c.packets,
                r(x.map(|v| v.packets)),
                c.bytes,
                r(x.map(|v| v.bytes))
            ));
        }
        let flow_cols = |id: &str, c: Option<&FlowCounter>, x: Option<Rate>| -> String {
            match c {
                None => format!(
                    "{:<6} {:>12}{} {:>14}{} {:>10}{}",
                    id,
                    "packets",
                    h("packets/s"),
                    "bytes",
                    h("bytes/s"),
                    "new_flows",
                    h("flows/s")
                ),
                Some(c) => format!(
                    "{:<6} {:>12}{} {:>14}{} {:>10}{}",
                    id,
                    c.packets,
                    r(x.map(|v| v.packets)),
                    c.bytes,
                    r(x.map(|v| v.bytes)),
                    c.new_flows,
                    r(x.map(|v| v.new_flows))
                ),
            }
        };
        // Label columns as wide as the longest label.
        let vw = self.vip_labels.values().map(String::len).max().unwrap_or(0).max(3);
        let bw = self.backend_meta.values().map(|m| m.label.len()).max().unwrap_or(0).max(7);
        out.push_str(&format!("\n{:<vw$} {}\n", "vip", flow_cols("id", None, None)));
        for (id, c) in &self.vips {
            let x = rt(&|x| x.vips.iter().find(|(k, _)| k == id).map(|(_, v)| *v));
            out.push_str(&format!("{:<vw$} {}\n", self.vip_label(*id).unwrap_or("-"), flow_cols(&id.to_string(), Some(c), x)));
        }
        out.push_str(&format!("\n{:<bw$} {:<vw$} {:<7} {}\n", "backend", "vip", "health", flow_cols("id", None, None)));
        for (id, c) in &self.backends {
            let x = rt(&|x| x.backends.iter().find(|(k, _)| k == id).map(|(_, v)| *v));
            let meta = self.backend_meta.get(id);
            out.push_str(&format!(
                "{:<bw$} {:<vw$} {:<7} {}\n",
                meta.map(|m| m.label.as_str()).unwrap_or("-"),
                self.backend_vip_label(*id).unwrap_or("-"),
                meta.map(|m| m.health()).unwrap_or("-"),
                flow_cols(&id.to_string(), Some(c), x)
            ));
        }
        out
    }

    /// The `--json` output. Keys of earlier versions stay; rows gain `label`,
    /// backends `vip_id`, `vip` and `up` (null when unknown or removed).
    pub fn to_json(&self) -> serde_json::Value {
        let actions: serde_json::Map<String, serde_json::Value> = self
            .actions
            .iter()
            .map(|(s, c)| (s.name().to_owned(), serde_json::json!({"packets": c.packets, "bytes": c.bytes})))
            .collect();
        let vips: Vec<serde_json::Value> = self
            .vips
            .iter()
            .map(|(id, c)| {
                serde_json::json!({"id": id, "label": self.vip_label(*id), "packets": c.packets, "bytes": c.bytes, "new_flows": c.new_flows})
            })
            .collect();
        let backends: Vec<serde_json::Value> = self
            .backends
            .iter()
            .map(|(id, c)| {
                let meta = self.backend_meta.get(id);
                serde_json::json!({
                    "id": id,
                    "label": meta.map(|m| m.label.as_str()),
                    "vip_id": meta.map(|m| m.vip_id),
                    "vip": self.backend_vip_label(*id),
                    "up": meta.filter(|m| m.active).map(|m| m.up),
                    "packets": c.packets,
                    "bytes": c.bytes,
                    "new_flows": c.new_flows,
                })
            })
            .collect();
        serde_json::json!({
            "traffic": self.traffic.to_json(),
            "actions": actions,
            "vips": vips,
            "backends": backends,
        })
    }
}

/// Per-second rates of one counter row.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rate {
    pub packets: f64,
    pub bytes: f64,
    pub new_flows: f64,
}

/// `(now - before) / seconds`. A counter that went down was reset (the
/// program was attached anew): its whole current value counts as the
/// increase, as Prometheus' `rate()` does. Zero when no time passed.
pub fn per_second(now: u64, before: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    let delta = if now >= before { now - before } else { now };
    delta as f64 / seconds
}

/// Rates between two reads of the same interface.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rates {
    /// Seconds between the two reads.
    pub seconds: f64,
    pub traffic: Vec<(TrafficClass, Rate)>,
    pub actions: Vec<(Stat, Rate)>,
    /// For the rows of the later report.
    pub vips: Vec<(u32, Rate)>,
    pub backends: Vec<(u32, Rate)>,
}

impl Rates {
    /// Rates from `before` to `now`, `elapsed` apart. Rows missing from
    /// `before` count from zero.
    pub fn between(before: &Report, now: &Report, elapsed: Duration) -> Rates {
        let s = elapsed.as_secs_f64();
        let packet_rate = |n: PacketCounter, b: PacketCounter| Rate {
            packets: per_second(n.packets, b.packets, s),
            bytes: per_second(n.bytes, b.bytes, s),
            new_flows: 0.0,
        };
        let flow_rate = |n: &FlowCounter, b: FlowCounter| Rate {
            packets: per_second(n.packets, b.packets, s),
            bytes: per_second(n.bytes, b.bytes, s),
            new_flows: per_second(n.new_flows, b.new_flows, s),
        };
        let flows = |now: &[(u32, FlowCounter)], before: &[(u32, FlowCounter)]| -> Vec<(u32, Rate)> {
            let before: BTreeMap<u32, FlowCounter> = before.iter().copied().collect();
            now.iter().map(|(id, c)| (*id, flow_rate(c, before.get(id).copied().unwrap_or_default()))).collect()
        };
        Rates {
            seconds: s,
            traffic: TrafficClass::ALL.iter().map(|c| (*c, packet_rate(now.traffic.get(*c), before.traffic.get(*c)))).collect(),
            actions: now.actions.iter().map(|(stat, c)| (*stat, packet_rate(*c, before.action(*stat)))).collect(),
            vips: flows(&now.vips, &before.vips),
            backends: flows(&now.backends, &before.backends),
        }
    }

    /// Same shape as [`Report::to_json`], with per-second floats; `report`
    /// (the later read) supplies the labels.
    pub fn to_json(&self, report: &Report) -> serde_json::Value {
        let pb = |r: &Rate| serde_json::json!({"packets": r.packets, "bytes": r.bytes});
        let traffic: serde_json::Map<String, serde_json::Value> = self.traffic.iter().map(|(c, r)| (c.name().to_owned(), pb(r))).collect();
        let actions: serde_json::Map<String, serde_json::Value> = self.actions.iter().map(|(s, r)| (s.name().to_owned(), pb(r))).collect();
        let vips: Vec<serde_json::Value> = self
            .vips
            .iter()
            .map(|(id, r)| {
                serde_json::json!({"id": id, "label": report.vip_label(*id), "packets": r.packets, "bytes": r.bytes, "new_flows": r.new_flows})
            })
            .collect();
        let backends: Vec<serde_json::Value> = self
            .backends
            .iter()
            .map(|(id, r)| {
                serde_json::json!({
                    "id": id,
                    "label": report.backend_meta.get(id).map(|m| m.label.as_str()),
                    "vip": report.backend_vip_label(*id),
                    "packets": r.packets,
                    "bytes": r.bytes,
                    "new_flows": r.new_flows,
                })
            })
            .collect();
        serde_json::json!({"interval_s": self.seconds, "traffic": traffic, "actions": actions, "vips": vips, "backends": backends})
    }
}

/// Which rate columns a table has.
enum RateColumns<'a> {
    /// Plain totals (`lb-user stats`).
    None,
    /// Rate columns shown as `-` (the first frame of `--watch`).
    Pending,
    Some(&'a Rates),
}

/// One `--watch --json` line: `{"iface", "timestamp", "totals", "rates"}`.
pub fn watch_json_line(iface: &str, report: &Report, rates: &Rates, at: SystemTime) -> serde_json::Value {
    let ts = at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default();
    serde_json::json!({"iface": iface, "timestamp": ts, "totals": report.to_json(), "rates": rates.to_json(report)})
}

/// One `--watch` table frame: a header line, then the totals with rate
/// columns (`-` until there is a previous read).
pub fn watch_table(iface: &str, interval: Duration, report: &Report, rates: Option<&Rates>) -> String {
    let cols = match rates {
        Some(r) => RateColumns::Some(r),
        None => RateColumns::Pending,
    };
    let configured: BTreeSet<u32> = report.vip_labels.keys().copied().collect();
    let active = report.backend_meta.values().filter(|m| m.active).count();
    let up = report.backend_meta.values().filter(|m| m.active && m.up).count();
    format!(
        "xdplb on {iface}: {} VIPs, {up}/{active} backends up; every {:.1} s, Ctrl-C to stop\n\n{}",
        configured.len(),
        interval.as_secs_f64(),
        report.table(cols)
    )
}

/// Parses `--interval SECS`: a positive number of seconds, at least 0.1.
pub fn parse_interval(text: &str) -> std::result::Result<Duration, String> {
    let secs: f64 = text.trim().parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.1..=86_400.0).contains(&secs) {
        return Err(format!("{secs} s is out of range (0.1 to 86400)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `lb-user stats --watch`: reads the counters of `iface` every `interval`
/// and prints rates until killed (Ctrl-C). As a table, each frame redraws the
/// terminal (or follows a blank line when stdout is not a terminal) and the
/// first shows totals only; with `json`, one object per line (NDJSON), the
/// first after one interval so that every line has rates. Returns when
/// stdout is closed.
pub fn watch(iface: &str, interval: Duration, json: bool) -> Result<()> {
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    let mut out = stdout.lock();
    let mut before = Report::read_pinned(iface)?;
    let mut at = Instant::now();
    let frame = |out: &mut dyn Write, text: &str| -> std::io::Result<()> {
        if tty {
            out.write_all(b"\x1b[H\x1b[2J")?;
        }
        out.write_all(text.as_bytes())?;
        if !tty {
            out.write_all(b"\n")?;
        }
        out.flush()
    };
    if !json && frame(&mut out, &watch_table(iface, interval, &before, None)).is_err() {
        return Ok(());
    }
    loop {
        // Sleep to the next tick of a fixed schedule, so reads stay `interval` apart.
        let next = at + interval;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let now = Report::read_pinned(iface)?;
        let read_at = Instant::now();
        let rates = Rates::between(&before, &now, read_at - at);
        let written = if json {
            writeln!(out, "{}", watch_json_line(iface, &now, &rates, SystemTime::now())).and_then(|_| out.flush())
        } else {
            frame(&mut out, &watch_table(iface, interval, &now, Some(&rates)))
        };
        if written.is_err() {
            return Ok(()); // stdout closed (e.g. piped into `head`)
        }
        before = now;
        at = read_at;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn key(addr: &str, port: u16, protocol: u8) -> VipKey {
        let (addr, family) = crate::select::addr16(addr.parse().unwrap());
        VipKey { addr, port, protocol, family }
    }

    fn backend(addr: &str, port: u16, flags: u8, vip_id: u16) -> BackendInfo {
        let (addr, family) = crate::select::addr16(addr.parse().unwrap());
        BackendInfo { addr, port, family, flags, mac: [0; 6], vip_id }
    }

    /// A report as `read_pinned` builds it: VIP 0 (v4 TCP) with backends 0
    /// (up) and 1 (down), VIP 1 (v6 UDP) with backend 2 (up), and backend 3
    /// removed but with traffic.
    pub(crate) fn sample() -> Report {
        let mut r = Report::default();
        r.traffic.0[TrafficClass::Tcp.index() as usize] = PacketCounter { packets: 100, bytes: 6400 };
        r.actions = Stat::ALL.iter().map(|s| (*s, PacketCounter::default())).collect();
        r.actions[Stat::ForwardNat.index() as usize].1 = PacketCounter { packets: 60, bytes: 4000 };
        r.actions[Stat::DropNoBackend.index() as usize].1 = PacketCounter { packets: 3, bytes: 180 };
        r.vip_labels.insert(0, vip_label(&key("198.18.100.1", 80, 6)));
        r.vip_labels.insert(1, vip_label(&key("fd00::1", 53, 17)));
        for (id, b) in [
            (0, backend("198.18.1.11", 8080, BACKEND_ACTIVE | BACKEND_HEALTHY, 0)),
            (1, backend("198.18.1.12", 8080, BACKEND_ACTIVE, 0)),
            (2, backend("fd00::11", 53, BACKEND_ACTIVE | BACKEND_HEALTHY, 1)),
            (3, backend("198.18.1.13", 8080, 0, 0)),
        ] {
            r.backend_meta.insert(id, backend_meta(&b));
        }
        r.vips = vec![(0, FlowCounter { packets: 60, bytes: 4000, new_flows: 7 }), (1, FlowCounter::default())];
        r.backends = vec![
            (0, FlowCounter { packets: 40, bytes: 3000, new_flows: 5 }),
            (1, FlowCounter::default()),
            (2, FlowCounter::default()),
            (3, FlowCounter { packets: 20, bytes: 1000, new_flows: 2 }),
        ];
        r
    }

    #[test]
    fn intervals_are_positive_seconds() {
        assert_eq!(parse_interval("1"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("-1").is_err());
        assert!(parse_interval("soon").is_err());
    }

    #[test]
    fn labels_name_address_port_and_protocol() {
        assert_eq!(vip_label(&key("198.18.100.1", 80, 6)), "198.18.100.1:80/tcp");
        assert_eq!(vip_label(&key("fd00::1", 80, 17)), "[fd00::1]:80/udp");
        assert_eq!(vip_label(&key("10.0.0.1", 9, 132)), "10.0.0.1:9/132");
        assert_eq!(backend_label(&backend("198.18.1.11", 8080, 1, 0)), "198.18.1.11:8080");
        assert_eq!(backend_label(&backend("fd00:198:18:1::11", 8080, 1, 0)), "[fd00:198:18:1::11]:8080");
    }

    #[test]
    fn backend_health_comes_from_the_flags() {
        let r = sample();
        let health: Vec<_> = r.backend_meta.values().map(|m| m.health()).collect();
        assert_eq!(health, ["up", "down", "up", "removed"]);
        assert_eq!(r.backend_vip_label(2), Some("[fd00::1]:53/udp"));
    }

    #[test]
    fn rates_are_deltas_over_elapsed_time() {
        assert_eq!(per_second(150, 50, 2.0), 50.0);
        assert_eq!(per_second(50, 50, 1.0), 0.0);
        assert_eq!(per_second(10, 50, 2.0), 5.0, "a reset counts from zero");
        assert_eq!(per_second(10, 0, 0.0), 0.0);
        let before = sample();
        let mut now = sample();
        now.traffic.0[TrafficClass::Tcp.index() as usize] = PacketCounter { packets: 300, bytes: 12800 };
        now.vips[0].1 = FlowCounter { packets: 160, bytes: 5000, new_flows: 17 };
        now.backends.push((4, FlowCounter { packets: 8, bytes: 800, new_flows: 4 }));
        let rates = Rates::between(&before, &now, Duration::from_millis(500));
        assert_eq!(rates.seconds, 0.5);
        let tcp = rates.traffic.iter().find(|(c, _)| *c == TrafficClass::Tcp).unwrap().1;
        assert_eq!((tcp.packets, tcp.bytes), (400.0, 12800.0));
        assert_eq!(rates.vips[0].1, Rate { packets: 200.0, bytes: 2000.0, new_flows: 20.0 });
        assert_eq!(rates.vips[1].1, Rate::default());
        assert_eq!(rates.backends.last().unwrap(), &(4, Rate { packets: 16.0, bytes: 1600.0, new_flows: 8.0 }), "new rows count from zero");
        let json = watch_json_line("lc", &now, &rates, SystemTime::UNIX_EPOCH + Duration::from_secs(5));
        assert_eq!(json["timestamp"], 5.0);
        assert_eq!(json["totals"]["traffic"]["tcp"]["packets"], 300);
        assert_eq!(json["rates"]["traffic"]["tcp"]["packets"], 400.0);
        assert_eq!(json["rates"]["vips"][0]["label"], "198.18.100.1:80/tcp");
        assert_eq!(json["rates"]["vips"][0]["new_flows"], 20.0);
        assert_eq!(json["rates"]["interval_s"], 0.5);
    }

    #[test]
    fn json_keeps_the_old_keys_and_adds_labels_and_health() {
        let json = sample().to_json();
        assert_eq!(json["traffic"]["tcp"]["packets"], 100);
        assert_eq!(json["actions"]["forward_nat"]["bytes"], 4000);
        assert_eq!(json["vips"][0], serde_json::json!({"id": 0, "label": "198.18.100.1:80/tcp", "packets": 60, "bytes": 4000, "new_flows": 7}));
        assert_eq!(
            json["backends"][1],
            serde_json::json!({"id": 1, "label": "198.18.1.12:8080", "vip_id": 0, "vip": "198.18.100.1:80/tcp", "up": false, "packets": 0, "bytes": 0, "new_flows": 0})
        );
        assert_eq!(json["backends"][0]["up"], true);
        assert_eq!(json["backends"][3]["up"], serde_json::Value::Null, "removed");
    }

    #[test]
    fn tables_show_labels_health_and_rates() {
        let r = sample();
        let table = r.to_table();
        let line = |t: &str, needle: &str| t.lines().find(|l| l.starts_with(needle)).unwrap_or_else(|| panic!("no {needle} in\n{t}")).to_owned();
        let be = line(&table, "198.18.1.12:8080");
        assert!(be.contains("198.18.100.1:80/tcp") && be.contains(" down "), "{be}");
        assert!(line(&table, "198.18.1.13:8080").contains("removed"));
        assert!(!table.contains("/s"), "no rate columns without --watch:\n{table}");
        let first = watch_table("lc", Duration::from_secs(1), &r, None);
        assert!(first.starts_with("xdplb on lc: 2 VIPs, 2/3 backends up"), "{first}");
        assert!(line(&first, "198.18.100.1:80/tcp").trim_end().ends_with('-'), "{first}");
        let mut now = sample();
        now.vips[0].1.new_flows += 3;
        let rates = Rates::between(&r, &now, Duration::from_secs(1));
        let frame = watch_table("lc", Duration::from_secs(1), &now, Some(&rates));
        assert!(frame.contains("flows/s"), "{frame}");
        assert!(line(&frame, "198.18.100.1:80/tcp").trim_end().ends_with("3.0"), "{frame}");
    }
}
