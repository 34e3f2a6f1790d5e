//! `cargo xtask bench levers`: each lever of issue 15 measured A/B in one
//! run. In the bench's stage (lab, backends, peers), every variant of
//! [`table::ENTRIES`] runs as its own process on its own port; for each
//! lever the tier's keep-alive and new-connection cases run against the
//! "off" and the "on" variant, interleaved (the order alternates per
//! repetition), with the bench's CPU accounting (docs/benchmarks.md,
//! "Levers").
//!
//! - `table`: the levers; `variant`: building and starting the variants;
//!   `summary`: medians, per-repetition ratios, levers.json and levers.md.

pub mod summary;
pub mod table;
pub mod variant;

use std::{collections::HashMap, path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};

use self::{
    summary::Measured,
    table::{Entry, Tier, Variant},
    variant::{Bins, Running},
};
use super::{
    cases::{Case, Lb},
    load::{LoadResult, LoadSpec, Tool},
    report::Rep,
    stage::{self, Stage},
};
use crate::util;

/// Repetitions by default; `--quick` runs one.
pub const DEFAULT_REPS: u32 = 3;
/// Seconds per load run by default and with `--quick`.
pub const DEFAULT_SECONDS: u64 = 6;
pub const QUICK_SECONDS: u64 = 2;
/// The variants' ports: the first one, then one more per variant.
pub const FIRST_PORT: u16 = 9401;

/// `cargo xtask bench levers` options.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LeversArgs {
    /// Smoke test: one repetition of 2 s.
    #[arg(long)]
    pub quick: bool,
    /// Interleaved repetitions of every off/on pair (default 3; 1 with --quick).
    #[arg(long, value_name = "N")]
    pub reps: Option<u32>,
    /// Time per load run: a duration (`6s`) or whole seconds (default 6s; 2s with --quick).
    #[arg(long, value_name = "DURATION", value_parser = crate::whole_seconds)]
    pub duration: Option<u64>,
    /// Concurrent connections (wrk -c).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub conns: u32,
    /// Only levers whose name contains this (repeatable): allocator,
    /// runtime, copy, io_uring, build.
    #[arg(long, value_name = "TEXT")]
    pub only: Vec<String>,
    /// Adds the `build` lever: alb and lb-user from DIR (another build, e.g.
    /// an earlier commit's target/release) against this build's.
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,
    /// Output directory (default target/bench/levers-<timestamp>/).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// The CLI entry: setup, release builds (the normal one, the mimalloc
/// variant, the io_uring example), run, print where the report is.
pub fn levers(args: LeversArgs) -> Result<()> {
    util::require_root("bench levers")?;
    crate::setup::setup()?;
    crate::build(true)?;
    let mut bins = build_variants(&args.only, true, util::workspace_root().join("target/release"));
    bins.baseline = baseline_dir(args.baseline.as_deref());
    let (out, _) = run(&args, &bins)?;
    print!("{}", std::fs::read_to_string(out.join("levers.md"))?);
    println!("[bench levers] {}/levers.md, levers.json", out.display());
    Ok(())
}

/// The `--baseline` directory, checked: it must hold both tiers' binaries.
pub fn baseline_dir(dir: Option<&std::path::Path>) -> Result<PathBuf, String> {
    let Some(dir) = dir else { return Err("no --baseline DIR given".to_string()) };
    match ["alb", "lb-user"].iter().map(|b| dir.join(b)).find(|p| !p.is_file()) {
        Some(missing) => Err(format!("--baseline {}: {} not found", dir.display(), missing.display())),
        None => Ok(dir.to_path_buf()),
    }
}

/// Builds what the selected levers need; a failed build is kept as the
/// error of the levers that need it.
pub fn build_variants(only: &[String], release: bool, normal: PathBuf) -> Bins {
    let entries = table::select(only, false);
    let needs = |p: table::Program| entries.iter().any(|e| e.off.program == p || e.on.program == p);
    let not_needed = || Err("not selected".to_string());
    let mimalloc = if needs(table::Program::Mimalloc) {
        variant::build_mimalloc(release).map_err(|e| format!("building the mimalloc variant: {e:#}"))
    } else {
        not_needed()
    };
    let uring =
        if needs(table::Program::UringProxy) { variant::build_uring(release).map_err(|e| format!("building bench-uring-proxy: {e:#}")) } else { not_needed() };
    Bins { release: normal, mimalloc, uring, baseline: not_needed() }
}

/// Runs the levers `--only` selects with `bins`; writes levers.md and
/// levers.json. Returns the output directory and the JSON.
pub fn run(args: &LeversArgs, bins: &Bins) -> Result<(PathBuf, serde_json::Value)> {
    run_entries(args, bins, &table::select(&args.only, args.baseline.is_some()))
}

/// [`run`] with the entries given.
pub fn run_entries(args: &LeversArgs, bins: &Bins, entries: &[Entry]) -> Result<(PathBuf, serde_json::Value)> {
    if entries.is_empty() {
        anyhow::bail!("--only {:?} matches no lever (levers: allocator, runtime, copy, io_uring; build with --baseline DIR)", args.only);
    }
    let out = args.out.clone().unwrap_or_else(|| util::workspace_root().join("target/bench").join(format!("levers-{}", super::timestamp())));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let reps = if args.quick { 1 } else { args.reps.unwrap_or(DEFAULT_REPS).max(1) };
    let seconds = args.duration.unwrap_or(if args.quick { QUICK_SECONDS } else { DEFAULT_SECONDS });
    let mut stage = Stage::up(&out.join("work"), &bins.release, stage::DEFAULT_XDP_MODE)?;
    println!("[bench levers] {} lever entries × 2 cases × 2 sides × {reps} repetition(s), {seconds} s each; output {}", entries.len(), out.display());

    // Every distinct variant once, on its own port.
    let mut started: HashMap<(Tier, Variant), Result<Running, String>> = HashMap::new();
    let mut port = FIRST_PORT;
    for e in entries {
        for v in [e.off, e.on] {
            if started.contains_key(&(e.tier, v)) {
                continue;
            }
            let r = variant::start(&mut stage, bins, e.tier, &v, port).map_err(|err| format!("{} {}: {err:#}", e.tier.name(), v.label));
            match &r {
                Ok(run) => println!("[bench levers] {} {} up on {}", e.tier.name(), v.label, run.url),
                Err(err) => println!("[bench levers] {err}"),
            }
            started.insert((e.tier, v), r);
            port += 1;
        }
    }
    let mut results: Vec<Measured> = entries
        .iter()
        .flat_map(|e| [false, true].map(|new_conn| (e, new_conn)))
        .map(|(e, new_conn)| {
            let failure = [e.off, e.on].iter().find_map(|v| started[&(e.tier, *v)].as_ref().err().cloned());
            Measured { entry: *e, new_conn, off: Vec::new(), on: Vec::new(), failure }
        })
        .collect();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let runnable = results.iter().filter(|m| m.failure.is_none()).count() as u32 * 2 * reps;
    let mut n = 0;
    for rep in 0..reps {
        for m in results.iter_mut().filter(|m| m.failure.is_none()) {
            // Alternate which side goes first, so a drift over the run
            // does not always favour the same side.
            let order = if rep % 2 == 0 { [false, true] } else { [true, false] };
            for on in order {
                n += 1;
                let v = if on { m.entry.on } else { m.entry.off };
                let running = started[&(m.entry.tier, v)].as_ref().expect("only started variants are measured").clone();
                let r = measure(&mut stage, &m.entry, m.new_conn, &running, seconds, args.conns, cpus);
                println!(
                    "[levers {n}/{runnable}] rep {}/{reps} {:<10} {:<24} {:<18} {}",
                    rep + 1,
                    m.entry.lever,
                    m.case(),
                    v.label,
                    match &r.failure {
                        Some(f) => format!("FAILED: {f}"),
                        None => format!(
                            "{:>8.0} req/s  p99 {:>7.2} ms  LB {} µs/req  err {}",
                            r.load.rps,
                            r.load.p99_ms,
                            r.lb_us.map_or("—".into(), |x| format!("{x:.1}")),
                            r.load.errors
                        ),
                    }
                );
                if on {
                    m.on.push(r);
                } else {
                    m.off.push(r);
                }
            }
        }
    }
    drop(stage);
    let json = summary::json(&results, reps, seconds, args.conns);
    std::fs::write(out.join("levers.json"), serde_json::to_string_pretty(&json)? + "\n")?;
    std::fs::write(out.join("levers.md"), summary::markdown(&json))?;
    Ok((out, json))
}

/// One load run against a variant; a failed run is recorded, not fatal.
fn measure(stage: &mut Stage, e: &Entry, new_conn: bool, v: &Running, seconds: u64, conns: u32, cpus: usize) -> Rep {
    let lb = match e.tier {
        Tier::Alb => Lb::Alb,
        Tier::Proxy => Lb::Proxy,
    };
    let case = Case { lb, new_conn, mtls: false, tool: Tool::Wrk };
    let spec = LoadSpec { url: v.url.clone(), conns, duration: Duration::from_secs(seconds), new_conn, client_cert: None, pace_ms: None };
    let k6 = crate::setup::k6_path();
    let scripts = util::workspace_root().join("bench/k6");
    let r = stage.prepare(lb).and_then(|()| super::measure_process(stage, &case, &spec, &k6, &scripts, cpus, Some(v.pid)));
    r.unwrap_or_else(|err| Rep { load: LoadResult { errors: 1, ..Default::default() }, failure: Some(format!("{err:#}")), ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo xtask bench levers --quick` end to end with the test build on
    /// alb's runtime lever (a config-only lever: the allocator's variant is
    /// a second build of the workspace's dependencies, too slow for the
    /// test command), plus a variant whose config key the binary refuses:
    /// its lever fails with alb's message, the other is measured.
    #[test]
    fn quick_levers_measure_the_runtime_lever_of_both_tiers() {
        xdplb_tests::require_root!();
        let _bench = super::super::pps::tests::BENCH_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let bin_dir = xdplb_tests::workspace::bin_dir().unwrap();
        let only = vec!["runtime".to_string()];
        let bins = build_variants(&only, bin_dir.ends_with("release"), bin_dir);
        let out = std::env::temp_dir().join(format!("xdplb-levers-test-{}", std::process::id()));
        let args = LeversArgs { quick: true, conns: 16, only, out: Some(out.clone()), ..Default::default() };
        let mut entries: Vec<Entry> = table::select(&args.only, false);
        assert_eq!(entries.iter().map(|e| e.tier).collect::<Vec<_>>(), [Tier::Alb, Tier::Proxy]);
        let shared = entries[0].off;
        let bogus = Variant { label: "bogus", program: table::Program::Release, yaml: "no_such_key: 1" };
        entries.push(Entry { lever: "refused", tier: Tier::Alb, off: shared, on: bogus });
        let (_, json) = run_entries(&args, &bins, &entries).unwrap();
        let rows = json["levers"].as_array().unwrap();
        assert_eq!(rows.len(), 6, "runtime × (alb, proxy) × (keep-alive, new-conn), refused × 2: {json}");
        for r in rows.iter().filter(|r| r["lever"] == "refused") {
            assert!(r["failure"].as_str().unwrap().contains("no_such_key"), "alb's refusal is the lever's failure: {r}");
        }
        for r in rows.iter().filter(|r| r["lever"] == "runtime") {
            assert!(r["failure"].is_null(), "{r}");
            for side in ["off", "on"] {
                assert!(r[side]["rps"].as_f64().unwrap_or(0.0) > 0.0 && r[side]["errors"] == 0, "{r}");
                assert!(r[side]["lb_us_per_req"].as_f64().unwrap_or(0.0) > 0.0, "no LB CPU: {r}");
            }
            assert!(r["on_off"]["rps"]["median"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
        }
        let md = std::fs::read_to_string(out.join("levers.md")).unwrap();
        assert!(md.contains("| runtime | alb/new-conn | shared → per_core |"), "{md}");
        assert!(md.contains("| runtime | lb-user-proxy/keepalive | shared → per_core |"), "{md}");
        assert!(md.contains("| refused | alb/keepalive | shared → bogus | FAILED: alb bogus: "), "{md}");
        let _ = std::fs::remove_dir_all(&out);
    }
}
