//! `cargo xtask bench scaling`: how the cost grows with the work
//! (docs/benchmarks.md, "Scaling").
//!
//! - `xdp`: runs `examples/bench-scaling-xdp` (xdp_main.rs, which explains
//!   the method): the XDP program's cost per established-flow NAT forward
//!   with 1, 64 and 1,024 backends and 1k, 100k and 1M conntrack entries;
//! - `reload`: lb-user's reload time, RSS and BPF map memory with 1,024
//!   backends;
//! - `alb`: alb's CPU per keep-alive request, req/s, p99 and RSS while it
//!   holds 1, 100 and 10,000 idle TLS connections;
//! - `report`: scaling.md, scaling.json, scaling.svg.
//!
//! One failed part is reported as failed and does not cost the others.

mod alb;
mod reload;
mod report;
mod xdp;

use std::{path::PathBuf, time::Instant};

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

use crate::util;

/// `cargo xtask bench scaling` options.
#[derive(clap::Args, Debug, Clone)]
pub struct ScalingArgs {
    /// Smoke test: sizes capped (64 backends, 100k conntrack entries, 100
    /// connections), 2 repetitions, seconds not minutes.
    #[arg(long)]
    pub quick: bool,
    /// Output directory (default target/bench/scaling-<timestamp>/).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// A progress line.
pub fn say(part: &str, msg: impl AsRef<str>) {
    println!("[scaling {part}] {}", msg.as_ref());
}

/// The CLI entry: setup, release build of the workspace and the example, run, write.
pub fn scaling(args: ScalingArgs) -> Result<()> {
    util::require_root("bench scaling")?;
    crate::setup::setup()?;
    crate::build(true)?;
    println!("[bench] cargo build --release -p xtask --example bench-scaling-xdp");
    util::run_visible(util::cargo().args(["build", "--release", "-p", "xtask", "--example", "bench-scaling-xdp"]))?;
    let bin_dir = util::workspace_root().join("target/release");
    let out = args.out.unwrap_or_else(|| util::workspace_root().join("target/bench").join(format!("scaling-{}", super::timestamp())));
    let s = run(&bin_dir, &out, args.quick)?;
    print!("{}", report::markdown(&s));
    println!("[scaling] done in {:.0} s: {}/scaling.md, scaling.json, scaling.svg", s["wall_s"].as_f64().unwrap_or(0.0), out.display());
    Ok(())
}

/// A part's figures, or its error as `{"error": …}`.
fn part(name: &str, r: Result<Value>) -> Value {
    r.unwrap_or_else(|e| {
        say(name, format!("FAILED: {e:#}"));
        json!({ "error": format!("{e:#}") })
    })
}

/// Runs the three parts with the binaries in `bin_dir` and writes the
/// outputs into `out`; returns the summary (scaling.json).
pub fn run(bin_dir: &std::path::Path, out: &std::path::Path, quick: bool) -> Result<Value> {
    let t0 = Instant::now();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // The lab library starts lb-user and lab-backend from here too.
    std::env::set_var(xdplb_tests::workspace::BIN_DIR_ENV, bin_dir);
    let started = super::timestamp();
    say("xdp", "XDP program cost per established-flow NAT forward");
    let xdp = part("xdp", xdp::measure(bin_dir, quick));
    say("reload", "lb-user reload time and memory");
    let reload = part("reload", reload::measure(quick));
    say("alb", "alb per-request cost with open connections");
    let alb = part("alb", alb::measure(bin_dir, out, quick));
    let s = json!({
        "started": started, "quick": quick, "wall_s": t0.elapsed().as_secs_f64(),
        "xdp": xdp, "reload": reload, "alb": alb,
    });
    std::fs::write(out.join("scaling.json"), serde_json::to_string_pretty(&s)? + "\n")?;
    std::fs::write(out.join("scaling.md"), report::markdown(&s))?;
    std::fs::write(out.join("scaling.svg"), report::svg(&s))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::pps;

    /// `cargo xtask bench scaling --quick` end to end (library call): every
    /// part measured, every figure present and plausible, the outputs written.
    #[test]
    fn quick_scaling_has_every_figure() {
        xdplb_tests::require_root!();
        let _bench = pps::tests::BENCH_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let bin_dir = pps::tests::test_example_named("bench-scaling-xdp");
        let out = std::env::temp_dir().join(format!("xdplb-scaling-test-{}", std::process::id()));
        let s = run(&bin_dir, &out, true).unwrap();
        for p in ["xdp", "reload", "alb"] {
            assert!(s[p]["error"].is_null(), "{p}: {}", s[p]["error"]);
        }
        for dim in ["backends", "conntrack"] {
            let points = s["xdp"][dim].as_array().unwrap();
            assert_eq!(points.len(), 2, "{dim}: {points:?}");
            for p in points {
                let ns = p["ns"]["median"].as_f64().unwrap();
                assert!(ns > 5.0 && ns < 100_000.0, "{dim}: {p}");
            }
        }
        let r = &s["reload"];
        for k in ["one_backend_ms", "reweight_all_ms"] {
            let ms = r[k]["median"].as_f64().unwrap();
            assert!(ms > 0.0 && ms < 60_000.0, "{k}: {r}");
        }
        assert!(r["lb_user_rss_mib"].as_f64().unwrap() > 1.0 && r["bpf_map_mib"].as_f64().unwrap() > 0.1, "{r}");
        let alb = s["alb"]["levels"].as_array().unwrap();
        assert_eq!(alb.iter().map(|l| l["open"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 100]);
        for l in alb {
            assert!(l["rps"]["median"].as_f64().unwrap() > 0.0 && l["errors"] == 0, "{l}");
            assert!(l["lb_us"]["median"].as_f64().unwrap() > 0.0 && l["alb_rss_mib"].as_f64().unwrap() > 1.0, "{l}");
            assert!(l["held"].as_u64().unwrap() >= l["open"].as_u64().unwrap(), "{l}");
        }
        for f in ["scaling.md", "scaling.json", "scaling.svg"] {
            assert!(out.join(f).is_file(), "{f}");
        }
        assert!(std::fs::read_to_string(out.join("scaling.svg")).unwrap().contains("<polyline"));
        let _ = std::fs::remove_dir_all(&out);
    }
}
