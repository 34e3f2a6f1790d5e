//! `lb-user stats --watch`: per-second rates between two reads, and the loop
//! that prints them as table frames or NDJSON lines.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{IsTerminal as _, Write},
    time::{Duration, Instant, SystemTime},
};

use anyhow::Result;
use lb_common::{lb::FlowCounter, PacketCounter, Stat, TrafficClass};
use serde_json::{Map, Value};

use super::{
    render::{packets_bytes, RateColumns},
    Report,
};

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
    pub fn to_json(&self, report: &Report) -> Value {
        let pb = |r: &Rate| packets_bytes(r.packets, r.bytes);
        let traffic: Map<String, Value> = self.traffic.iter().map(|(c, r)| (c.name().to_owned(), pb(r))).collect();
        let actions: Map<String, Value> = self.actions.iter().map(|(s, r)| (s.name().to_owned(), pb(r))).collect();
        let vips: Vec<Value> = self.vips.iter().map(|(id, r)| report.vip_row(*id, r)).collect();
        let backends: Vec<Value> = self.backends.iter().map(|(id, r)| Value::Object(report.backend_row(*id, r))).collect();
        serde_json::json!({"interval_s": self.seconds, "traffic": traffic, "actions": actions, "vips": vips, "backends": backends})
    }
}

/// One `--watch --json` line: `{"iface", "timestamp", "totals", "rates"}`.
pub fn watch_json_line(iface: &str, report: &Report, rates: &Rates, at: SystemTime) -> Value {
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
    // The shared grammar (`500ms`, `2s`), and bare seconds as flags take.
    let d = lb_common::userspace::duration::parse_duration_or_seconds(text)?;
    if !(Duration::from_millis(100)..=Duration::from_secs(86_400)).contains(&d) {
        return Err(format!("{text:?} is out of range (100ms to 1d)"));
    }
    Ok(d)
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
