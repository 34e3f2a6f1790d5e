//! The XDP part: runs `examples/bench-scaling-xdp` and summarises its rows
//! into the balancer's own ns per packet (timing with the balancer minus
//! the prologue alone, per repetition) per point of each dimension.

use std::{path::Path, process::Command};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use crate::bench::pps::spread;

pub fn measure(bin_dir: &Path, quick: bool) -> Result<Value> {
    let bin = bin_dir.join("examples/bench-scaling-xdp");
    if !bin.is_file() {
        bail!("{} not built (`cargo build --release -p xtask --example bench-scaling-xdp`)", bin.display());
    }
    let mut cmd = Command::new(&bin);
    if quick {
        cmd.arg("--quick");
    }
    // Its progress lines (stderr) go straight to the terminal.
    let out = cmd.stderr(std::process::Stdio::inherit()).output().with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", bin.display(), out.status);
    }
    let raw: Value = serde_json::from_slice(&out.stdout).context("bench-scaling-xdp output")?;
    summarize(&raw)
}

/// Per dimension, per size (in the order measured): the net ns/packet.
pub fn summarize(raw: &Value) -> Result<Value> {
    let rows = raw["rows"].as_array().context("bench-scaling-xdp output has no rows")?;
    let f = |r: &Value, k: &str| r[k].as_f64().unwrap_or(0.0);
    let mut out = serde_json::Map::new();
    for (dim, size_key) in [("backends", "backends"), ("conntrack", "entries")] {
        let mut sizes: Vec<u64> = Vec::new();
        for r in rows.iter().filter(|r| r["dimension"] == dim) {
            let s = r[size_key].as_u64().unwrap_or(0);
            if !sizes.contains(&s) {
                sizes.push(s);
            }
        }
        if sizes.is_empty() {
            bail!("bench-scaling-xdp output has no {dim} rows");
        }
        let points: Vec<Value> = sizes
            .iter()
            .map(|&s| {
                let reps: Vec<&Value> = rows.iter().filter(|r| r["dimension"] == dim && r[size_key].as_u64() == Some(s)).collect();
                let net: Vec<f64> = reps.iter().map(|r| f(r, "nat_forward_ns") - f(r, "prologue_ns")).collect();
                let first = reps[0];
                json!({
                    "size": s, "backends": first["backends"], "entries": first["entries"], "max_flows": first["max_flows"],
                    "repeat": first["repeat"], "ns": spread(&net),
                    "with_prologue_ns": spread(&reps.iter().map(|r| f(r, "nat_forward_ns")).collect::<Vec<_>>()),
                    "prologue_ns": spread(&reps.iter().map(|r| f(r, "prologue_ns")).collect::<Vec<_>>()),
                })
            })
            .collect();
        out.insert(dim.into(), Value::Array(points));
    }
    out.insert("maglev_size".into(), raw["maglev_size"].clone());
    out.insert("reps".into(), raw["reps"].clone());
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_cost_is_taken_per_repetition_and_grouped_by_size() {
        let row =
            |dim: &str, b: u64, e: u64, nat: f64, pro: f64| json!({"dimension": dim, "backends": b, "entries": e, "nat_forward_ns": nat, "prologue_ns": pro});
        let raw = json!({"maglev_size": 102407, "reps": 2, "rows": [
            row("backends", 1, 1000, 300.0, 40.0), row("backends", 1, 1000, 320.0, 40.0),
            row("backends", 64, 1000, 340.0, 40.0), row("backends", 64, 1000, 340.0, 40.0),
            row("conntrack", 64, 1000, 340.0, 40.0), row("conntrack", 64, 100000, 1040.0, 40.0),
        ]});
        let s = summarize(&raw).unwrap();
        let b = s["backends"].as_array().unwrap();
        assert_eq!(b.iter().map(|p| p["size"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 64]);
        assert_eq!(b[0]["ns"]["min"], 260.0);
        assert_eq!(b[0]["ns"]["max"], 280.0);
        assert_eq!(s["conntrack"][1]["ns"]["median"], 1000.0);
        assert!(summarize(&json!({"rows": []})).is_err());
    }
}
