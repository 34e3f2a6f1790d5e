//! Reading the pinned counters, from any process.

use std::path::Path;

use anyhow::{Context as _, Result};
use aya::maps::{Map, MapData, PerCpuArray};
use lb_common::{map_names, PacketCounter, TrafficClass, TRAFFIC_CLASS_COUNT};
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
