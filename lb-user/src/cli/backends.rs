//! `lb-user backends …` and `lb-user health`: requests to the control API
//! and their answers as text (one line per backend) or JSON.

use std::net::SocketAddr;

use anyhow::Result;
use clap::Subcommand;
use hyper::Method;
use serde_json::{json, Value};

use super::ApiArgs;
use crate::api::{client, parse_backend};

#[derive(Subcommand, Debug)]
pub enum BackendsCommand {
    /// Every backend of every VIP: id, weight, health, drain state, live
    /// flows of draining ones, packets/s.
    List {
        /// Only this VIP's backends.
        #[arg(long, value_name = "NAME")]
        vip: Option<String>,
    },
    /// Add a backend to a VIP, checked by the config file's rules. Lasts
    /// until the config file changes.
    Add {
        /// The VIP's name.
        vip: String,
        /// address:port ([fd00::11]:8080 for IPv6).
        #[arg(value_parser = parse_backend)]
        backend: SocketAddr,
        /// 1..=100 (default 1).
        #[arg(long)]
        weight: Option<u32>,
        /// DSR next hop MAC, as in the file.
        #[arg(long)]
        mac: Option<String>,
    },
    /// Give a backend no new flows; its established flows carry on. Lasts
    /// until `undrain` or the config file changes.
    Drain {
        vip: String,
        #[arg(value_parser = parse_backend)]
        backend: SocketAddr,
    },
    /// Give a drained backend new flows again.
    Undrain {
        vip: String,
        #[arg(value_parser = parse_backend)]
        backend: SocketAddr,
    },
    /// Remove a backend: out of the tables at once, its flows kept until they
    /// end or conntrack.drain_timeout passes (0: cut at once).
    Remove {
        vip: String,
        #[arg(value_parser = parse_backend)]
        backend: SocketAddr,
    },
    /// Set a backend's weight (1..=100; Maglev VIPs only).
    Weight {
        vip: String,
        #[arg(value_parser = parse_backend)]
        backend: SocketAddr,
        weight: u32,
    },
}

/// Runs one `lb-user backends` command.
pub fn run(args: &ApiArgs, command: BackendsCommand) -> Result<()> {
    let change = |method: Method, vip: &str, backend: Option<SocketAddr>, body: Option<Value>| {
        client::call(args.api, method, &client::backends_path(vip, backend), body.as_ref())
    };
    let answer = match command {
        BackendsCommand::List { vip } => return list(args, vip.as_deref()),
        BackendsCommand::Add { vip, backend, weight, mac } => {
            let mut body = json!({"address": backend.ip().to_string(), "port": backend.port()});
            if let Some(w) = weight {
                body["weight"] = w.into();
            }
            if let Some(m) = mac {
                body["mac"] = m.into();
            }
            change(Method::POST, &vip, None, Some(body))?
        }
        BackendsCommand::Drain { vip, backend } => change(Method::PATCH, &vip, Some(backend), Some(json!({"drain": true})))?,
        BackendsCommand::Undrain { vip, backend } => change(Method::PATCH, &vip, Some(backend), Some(json!({"drain": false})))?,
        BackendsCommand::Remove { vip, backend } => change(Method::DELETE, &vip, Some(backend), None)?,
        BackendsCommand::Weight { vip, backend, weight } => change(Method::PATCH, &vip, Some(backend), Some(json!({"weight": weight})))?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("{}", changed_line(&answer));
    }
    Ok(())
}

/// `lb-user health`: one line per backend (health and drain state).
pub fn health(args: &ApiArgs) -> Result<()> {
    let rows = backend_rows(&client::call(args.api, Method::GET, "/api/state", None)?, None);
    if args.json {
        let keep = ["vip", "address", "health", "next_hop", "drain", "seconds_left", "live_flows", "in_tables"];
        let slim: Vec<Value> = rows.iter().map(|r| keep.iter().map(|k| (k.to_string(), r[*k].clone())).collect::<serde_json::Map<_, _>>().into()).collect();
        println!("{}", serde_json::to_string_pretty(&slim)?);
        return Ok(());
    }
    for r in &rows {
        println!("{}", health_line(r));
    }
    Ok(())
}

fn list(args: &ApiArgs, vip: Option<&str>) -> Result<()> {
    let state = client::call(args.api, Method::GET, "/api/state", None)?;
    if let Some(name) = vip {
        if !state["vips"].as_array().is_some_and(|v| v.iter().any(|v| v["name"] == name)) {
            anyhow::bail!("no vip named {name:?} (the vips are {})", names(&state));
        }
    }
    let rows = backend_rows(&state, vip);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", table(&rows));
    }
    Ok(())
}

fn names(state: &Value) -> String {
    let names: Vec<&str> = state["vips"].as_array().map(|v| v.iter().filter_map(|v| v["name"].as_str()).collect()).unwrap_or_default();
    names.join(", ")
}

/// Every backend of the state (of `vip` only, if given), each with its VIP's name.
pub fn backend_rows(state: &Value, vip: Option<&str>) -> Vec<Value> {
    let mut rows = Vec::new();
    for v in state["vips"].as_array().into_iter().flatten().filter(|v| vip.is_none_or(|n| v["name"] == n)) {
        for b in v["backends"].as_array().into_iter().flatten() {
            let mut row = b.clone();
            row["vip"] = v["name"].clone();
            rows.push(row);
        }
    }
    rows
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_f64().filter(|f| f.fract() != 0.0).map_or_else(|| n.to_string(), |f| format!("{f:.1}")),
        other => other.to_string(),
    }
}

/// The drain state with what is left of it: `draining (3 flows)`,
/// `leaving (25 s left, 1 flow)`.
fn drain_text(r: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(s) = r["seconds_left"].as_u64() {
        parts.push(format!("{s} s left"));
    }
    if let Some(n) = r["live_flows"].as_u64() {
        parts.push(format!("{n} flow{}", if n == 1 { "" } else { "s" }));
    }
    let state = text(&r["drain"]);
    if parts.is_empty() {
        state
    } else {
        format!("{state} ({})", parts.join(", "))
    }
}

/// `web 198.18.1.11:8080: up, active` (and `next hop unresolved`,
/// `not in the tables` where they apply).
pub fn health_line(r: &Value) -> String {
    let mut line = format!("{} {}: {}, {}", text(&r["vip"]), text(&r["address"]), text(&r["health"]), drain_text(r));
    if r["next_hop"] == "unresolved" {
        line.push_str(", next hop unresolved");
    }
    if r["in_tables"] == false && r["drain"] == "active" {
        line.push_str(", no new flows");
    }
    line
}

/// The `backends list` table.
pub fn table(rows: &[Value]) -> String {
    let header = ["VIP", "BACKEND", "ID", "WEIGHT", "HEALTH", "STATE", "NEW FLOWS", "FILE", "PACKETS/S"];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                text(&r["vip"]),
                text(&r["address"]),
                text(&r["id"]),
                text(&r["weight"]),
                text(&r["health"]),
                drain_text(r),
                if r["in_tables"] == true { "yes" } else { "no" }.to_owned(),
                if r["in_file"] == true { "yes" } else { "no (api)" }.to_owned(),
                r["rates"]["packets"].as_f64().map_or("-".to_owned(), |p| format!("{p:.1}")),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cols: &[String]| -> String {
        let padded: Vec<String> = cols.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&header.map(str::to_owned));
    for row in &cells {
        out.push_str(&line(row));
    }
    out
}

/// One line for the answer to a change: `web 198.18.1.13:8080: added
/// (weight 1, id 5); lasts until the config file changes`.
pub fn changed_line(answer: &Value) -> String {
    let b = &answer["backend"];
    let who = format!("{} {}", text(&answer["vip"]), text(&b["address"]));
    let what = match b["drain"].as_str() {
        Some("leaving") => format!("leaving: no new flows; removed when its last flow ends, in at most {} s", text(&b["seconds_left"])),
        Some("removed") => "removed (conntrack.drain_timeout is 0: its flows choose another backend)".to_owned(),
        Some("draining") => "draining: no new flows, established ones carry on".to_owned(),
        _ => format!("active, weight {}, id {}, health {}", text(&b["weight"]), text(&b["id"]), text(&b["health"])),
    };
    format!("{who}: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Value {
        json!({"vips": [{"name": "web", "backends": [
            {"id": 0, "address": "198.18.1.11:8080", "weight": 2, "health": "up", "drain": "active", "seconds_left": null, "live_flows": null, "in_tables": true, "in_file": true, "next_hop": null, "rates": {"packets": 12.25}},
            {"id": 1, "address": "198.18.1.12:8080", "weight": 1, "health": "unchecked", "drain": "leaving", "seconds_left": 25, "live_flows": 1, "in_tables": false, "in_file": false, "next_hop": null, "rates": null}
        ]}, {"name": "dns", "backends": [
            {"id": 2, "address": "[fd00::11]:53", "weight": 1, "health": "down", "drain": "draining", "seconds_left": null, "live_flows": 3, "in_tables": false, "in_file": true, "next_hop": "unresolved", "rates": null}
        ]}]})
    }

    #[test]
    fn health_is_one_line_per_backend() {
        let lines: Vec<String> = backend_rows(&state(), None).iter().map(health_line).collect();
        assert_eq!(
            lines,
            [
                "web 198.18.1.11:8080: up, active",
                "web 198.18.1.12:8080: unchecked, leaving (25 s left, 1 flow)",
                "dns [fd00::11]:53: down, draining (3 flows), next hop unresolved"
            ]
        );
        assert_eq!(backend_rows(&state(), Some("dns")).len(), 1);
    }

    #[test]
    fn the_list_table_lines_up() {
        let t = table(&backend_rows(&state(), None));
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("VIP  BACKEND           ID  WEIGHT  HEALTH     STATE"), "{t}");
        assert!(lines[1].ends_with("yes        yes       12.2") || lines[1].ends_with("yes        yes       12.3"), "{t}");
        assert!(lines[2].contains("leaving (25 s left, 1 flow)") && lines[2].contains("no (api)"), "{t}");
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn change_lines() {
        let a = |drain: &str| json!({"vip": "web", "backend": {"address": "198.18.1.13:8080", "drain": drain, "seconds_left": 30, "weight": 3, "id": 5, "health": "up"}});
        assert_eq!(changed_line(&a("active")), "web 198.18.1.13:8080: active, weight 3, id 5, health up");
        assert_eq!(changed_line(&a("draining")), "web 198.18.1.13:8080: draining: no new flows, established ones carry on");
        assert!(changed_line(&a("leaving")).ends_with("in at most 30 s"));
        assert!(changed_line(&a("removed")).contains("removed"));
    }
}
