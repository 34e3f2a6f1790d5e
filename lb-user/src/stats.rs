//! Reading the pinned counters, from any process.

use std::path::Path;

use anyhow::{Context as _, Result};
use aya::maps::{Map, MapData, PerCpuArray};
use lb_common::{lb::FlowCounter, map_names, PacketCounter, Stat, TrafficClass, TRAFFIC_CLASS_COUNT};
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

/// Everything `lb-user stats` shows: traffic classes, actions, and per-VIP
/// and per-backend counters (only ids that saw traffic).
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub traffic: TrafficCounters,
    pub actions: Vec<(Stat, PacketCounter)>,
    pub vips: Vec<(u32, FlowCounter)>,
    pub backends: Vec<(u32, FlowCounter)>,
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
    Ok(Map::PerCpuArray(data))
}

fn sum_flow_counters(map: &Map, name: &str) -> Result<Vec<(u32, FlowCounter)>> {
    let array = PerCpuArray::<&MapData, FlowCounter>::try_from(map).with_context(|| format!("{name} has an unexpected type"))?;
    let mut out = Vec::new();
    for id in 0..array.len() {
        let mut total = FlowCounter::default();
        for v in array.get(&id, 0)?.iter() {
            total.packets += v.packets;
            total.bytes += v.bytes;
            total.new_flows += v.new_flows;
        }
        if total.packets != 0 {
            out.push((id, total));
        }
    }
    Ok(out)
}

impl Report {
    /// Reads every counter pinned for `iface`.
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
        let vips = sum_flow_counters(&open_pinned(iface, map_names::VIP_STATS)?, map_names::VIP_STATS)?;
        let backends = sum_flow_counters(&open_pinned(iface, map_names::BACKEND_STATS)?, map_names::BACKEND_STATS)?;
        Ok(Report { traffic, actions, vips, backends })
    }

    pub fn action(&self, stat: Stat) -> PacketCounter {
        self.actions.iter().find(|(s, _)| *s == stat).map(|(_, c)| *c).unwrap_or_default()
    }

    pub fn to_table(&self) -> String {
        let mut out = self.traffic.to_table();
        out.push_str(&format!("\n{:<22} {:>14} {:>16}\n", "action", "packets", "bytes"));
        for (stat, c) in &self.actions {
            out.push_str(&format!("{:<22} {:>14} {:>16}\n", stat.name(), c.packets, c.bytes));
        }
        for (title, rows) in [("vip", &self.vips), ("backend", &self.backends)] {
            out.push_str(&format!("\n{:<10} {:>14} {:>16} {:>12}\n", title, "packets", "bytes", "new_flows"));
            for (id, c) in rows.iter() {
                out.push_str(&format!("{:<10} {:>14} {:>16} {:>12}\n", id, c.packets, c.bytes, c.new_flows));
            }
        }
        out
    }

    pub fn to_json(&self) -> serde_json::Value {
        let rows = |rows: &Vec<(u32, FlowCounter)>| -> serde_json::Value {
            rows.iter()
                .map(|(id, c)| serde_json::json!({"id": id, "packets": c.packets, "bytes": c.bytes, "new_flows": c.new_flows}))
                .collect()
        };
        let actions: serde_json::Map<String, serde_json::Value> = self
            .actions
            .iter()
            .map(|(s, c)| (s.name().to_owned(), serde_json::json!({"packets": c.packets, "bytes": c.bytes})))
            .collect();
        serde_json::json!({
            "traffic": self.traffic.to_json(),
            "actions": actions,
            "vips": rows(&self.vips),
            "backends": rows(&self.backends),
        })
    }
}
