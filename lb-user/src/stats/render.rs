//! The `lb-user stats` table and `--json` output of a [`Report`], and the JSON
//! rows and rate columns `--watch` shares with it ([`Rates`]).

use lb_common::{lb::FlowCounter, PacketCounter, TrafficClass};
use serde_json::{Map, Value};

use super::{
    rates::{Rate, Rates},
    Report, TrafficCounters,
};

/// Which rate columns a table has.
pub(super) enum RateColumns<'a> {
    /// Plain totals (`lb-user stats`).
    None,
    /// Rate columns shown as `-` (the first frame of `--watch`).
    Pending,
    Some(&'a Rates),
}

/// `{"packets": N, "bytes": N}`: a traffic class's or action's totals or rates.
pub(super) fn packets_bytes<T: Into<Value>>(packets: T, bytes: T) -> Value {
    Value::Object(Map::from_iter([("packets".to_owned(), packets.into()), ("bytes".to_owned(), bytes.into())]))
}

/// The counts of a VIP or backend JSON row: totals or per-second rates.
pub(super) trait RowCounts {
    /// `{"packets", "bytes", "new_flows"}`.
    fn counts_json(&self) -> Map<String, Value>;
}

fn counts<T: Into<Value>>(packets: T, bytes: T, new_flows: T) -> Map<String, Value> {
    Map::from_iter([("packets".to_owned(), packets.into()), ("bytes".to_owned(), bytes.into()), ("new_flows".to_owned(), new_flows.into())])
}

impl RowCounts for FlowCounter {
    fn counts_json(&self) -> Map<String, Value> {
        counts(self.packets, self.bytes, self.new_flows)
    }
}

impl RowCounts for Rate {
    fn counts_json(&self) -> Map<String, Value> {
        counts(self.packets, self.bytes, self.new_flows)
    }
}

impl Report {
    /// The JSON row of VIP `id`: `id`, `label` (null when unknown) and `counts`.
    pub(super) fn vip_row(&self, id: u32, counts: &impl RowCounts) -> Value {
        let mut row = counts.counts_json();
        row.insert("id".to_owned(), id.into());
        row.insert("label".to_owned(), self.vip_label(id).into());
        Value::Object(row)
    }

    /// The JSON row of backend `id`: `id`, `label` and `vip` (null when
    /// unknown) and `counts`.
    pub(super) fn backend_row(&self, id: u32, counts: &impl RowCounts) -> Map<String, Value> {
        let mut row = counts.counts_json();
        row.insert("id".to_owned(), id.into());
        row.insert("label".to_owned(), self.backend_meta.get(&id).map(|m| m.label.as_str()).into());
        row.insert("vip".to_owned(), self.backend_vip_label(id).into());
        row
    }
}

impl TrafficCounters {
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
    pub fn to_json(&self) -> Value {
        let map: Map<String, Value> = TrafficClass::ALL
            .iter()
            .map(|c| {
                let v = self.get(*c);
                (c.name().to_owned(), packets_bytes(v.packets, v.bytes))
            })
            .collect();
        Value::Object(map)
    }
}

impl Report {
    pub fn to_table(&self) -> String {
        self.table(RateColumns::None)
    }

    pub(super) fn table(&self, rates: RateColumns) -> String {
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

        // A traffic-class or action row; `None`: the header.
        let packet_row = |width: usize, name: &str, c: Option<PacketCounter>, x: Option<Rate>| -> String {
            match c {
                None => format!("{name:<width$} {:>14}{} {:>16}{}\n", "packets", h("packets/s"), "bytes", h("bytes/s")),
                Some(c) => format!("{name:<width$} {:>14}{} {:>16}{}\n", c.packets, r(x.map(|v| v.packets)), c.bytes, r(x.map(|v| v.bytes))),
            }
        };
        let mut out = packet_row(10, "class", None, None);
        for class in TrafficClass::ALL {
            let x = rt(&|x| x.traffic.iter().find(|(k, _)| *k == class).map(|(_, v)| *v));
            out.push_str(&packet_row(10, class.name(), Some(self.traffic.get(class)), x));
        }
        out.push('\n');
        out.push_str(&packet_row(22, "action", None, None));
        for (stat, c) in &self.actions {
            let x = rt(&|x| x.actions.iter().find(|(k, _)| k == stat).map(|(_, v)| *v));
            out.push_str(&packet_row(22, stat.name(), Some(*c), x));
        }
        let flow_cols = |id: &str, c: Option<&FlowCounter>, x: Option<Rate>| -> String {
            match c {
                None => format!("{:<6} {:>12}{} {:>14}{} {:>10}{}", id, "packets", h("packets/s"), "bytes", h("bytes/s"), "new_flows", h("flows/s")),
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
        // `maglev`: the table fingerprint, equal on nodes with equal tables.
        out.push_str(&format!("\n{:<vw$} {:<8} {}\n", "vip", "maglev", flow_cols("id", None, None)));
        for (id, c) in &self.vips {
            let x = rt(&|x| x.vips.iter().find(|(k, _)| k == id).map(|(_, v)| *v));
            let fp = self.maglev_fingerprint(*id).unwrap_or_else(|| "-".into());
            out.push_str(&format!("{:<vw$} {fp:<8} {}\n", self.vip_label(*id).unwrap_or("-"), flow_cols(&id.to_string(), Some(c), x)));
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
    /// VIPs `maglev_fingerprint` (null when not a Maglev VIP), backends
    /// `vip_id`, `vip` and `up` (null when unknown or removed).
    pub fn to_json(&self) -> Value {
        let actions: Map<String, Value> = self.actions.iter().map(|(s, c)| (s.name().to_owned(), packets_bytes(c.packets, c.bytes))).collect();
        let vips: Vec<Value> = self
            .vips
            .iter()
            .map(|(id, c)| {
                let mut row = self.vip_row(*id, c);
                row["maglev_fingerprint"] = self.maglev_fingerprint(*id).into();
                row
            })
            .collect();
        let backends: Vec<Value> = self
            .backends
            .iter()
            .map(|(id, c)| {
                let meta = self.backend_meta.get(id);
                let mut row = self.backend_row(*id, c);
                row.insert("vip_id".to_owned(), meta.map(|m| m.vip_id).into());
                row.insert("up".to_owned(), meta.filter(|m| m.active).map(|m| m.up).into());
                Value::Object(row)
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

impl Rates {
    /// Same shape as [`Report::to_json`], with per-second floats; `report`
    /// (the later read) supplies the labels.
    pub fn to_json(&self, report: &Report) -> Value {
        let pb = |r: &Rate| packets_bytes(r.packets, r.bytes);
        let traffic: Map<String, Value> = self.traffic.iter().map(|(c, r)| (c.name().to_owned(), pb(r))).collect();
        let actions: Map<String, Value> = self.actions.iter().map(|(s, r)| (s.name().to_owned(), pb(r))).collect();
        let vips: Vec<Value> = self.vips.iter().map(|(id, r)| report.vip_row(*id, r)).collect();
        let backends: Vec<Value> = self.backends.iter().map(|(id, r)| Value::Object(report.backend_row(*id, r))).collect();
        serde_json::json!({"interval_s": self.seconds, "traffic": traffic, "actions": actions, "vips": vips, "backends": backends})
    }
}
