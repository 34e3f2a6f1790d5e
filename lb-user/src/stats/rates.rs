//! Per-second rates between two reads of the same interface's counters.
//! Plain arithmetic on [`Report`]s: `render` prints them, `watch` takes the
//! reads; neither owns them, so both depend on this module and not on each
//! other.

use std::{collections::BTreeMap, time::Duration};

pub use lb_common::userspace::rates::per_second;
use lb_common::{lb::FlowCounter, PacketCounter, Stat, TrafficClass};

use super::Report;

/// Per-second rates of one counter row.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rate {
    pub packets: f64,
    pub bytes: f64,
    pub new_flows: f64,
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
        let packet_rate =
            |n: PacketCounter, b: PacketCounter| Rate { packets: per_second(n.packets, b.packets, s), bytes: per_second(n.bytes, b.bytes, s), new_flows: 0.0 };
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
}
