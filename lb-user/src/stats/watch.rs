//! `lb-user stats --watch`: the loop that reads the counters every interval
//! and prints their rates (`rates`) as table frames or NDJSON lines.

use std::{
    collections::BTreeSet,
    io::{IsTerminal as _, Write},
    time::{Duration, Instant, SystemTime},
};

use anyhow::Result;
use serde_json::Value;

use super::{rates::Rates, render::RateColumns, Report};

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
