//! `cargo xtask bench`: XDP vs userspace vs peers, and alb vs HAProxy/nginx,
//! in one run with one report (issue 7, docs/benchmarks.md).
//!
//! - `cases`: what is measured; `peers`: config templates; `stage`: lab,
//!   backends, peers and per-case kernel state; `load`: wrk/k6;
//!   `cpu` (in xdplb_tests): /proc accounting; `report`: markdown, JSON, SVG.
//! - This file: options, the interleaved measurement loop, the TestRun
//!   per-packet cost, writing the outputs.

pub mod cases;
pub mod levers;
pub mod load;
pub mod peers;
pub mod pps;
pub mod profile;
pub mod reliability;
pub mod report;
pub mod scaling;
pub mod stage;

/// CPU accounting lives in the lab library (the demo's `--compare` uses it too).
pub use xdplb_tests::cpu;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use xdplb_tests::lab::Host;

use self::{
    cases::Case,
    load::{LoadSpec, Tool},
    report::{CaseResult, Rep, Summary, XdpCost},
    stage::Stage,
};
use crate::util;

/// Default seconds per case (full run).
pub const DEFAULT_DURATION: u64 = 8;
/// Seconds per case with `--quick`.
pub const QUICK_DURATION: u64 = 2;
/// Repetitions of the full run.
pub const FULL_REPETITIONS: u32 = 3;
/// Processes outside the benchmark using more than this share of the
/// machine (all cores) make a repetition untrustworthy.
pub const FOREIGN_THRESHOLD_PCT: f64 = 5.0;

/// Set by Ctrl-C: stop after the current case and tear the lab down.
static STOP: AtomicBool = AtomicBool::new(false);

/// `cargo xtask bench` options.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub quick: bool,
    /// Seconds per case (default 8, quick 2).
    pub duration: Option<u64>,
    pub conns: u32,
    pub tool: Tool,
    /// Output directory (default target/bench/<timestamp>/).
    pub out: Option<PathBuf>,
    /// Where lb-user, alb and examples/bench-xdp-cost are (default: release build).
    pub bin_dir: Option<PathBuf>,
    /// Only cases whose id contains one of these (empty: all).
    pub only: Vec<String>,
    /// lb-user's `attach_mode` for the XDP cases (skb, native, auto).
    pub xdp_mode: String,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            quick: false,
            duration: None,
            conns: 64,
            tool: Tool::Wrk,
            out: None,
            bin_dir: None,
            only: Vec::new(),
            xdp_mode: stage::DEFAULT_XDP_MODE.into(),
        }
    }
}

/// The CLI entry: setup, release build, run, print where the report is.
pub fn bench(mut opts: BenchOptions) -> Result<()> {
    util::require_root("bench")?;
    crate::setup::setup()?;
    // Comparing two builds: --bin-dir names a directory holding lb-user,
    // alb and examples/bench-xdp-cost (e.g. a copy of an earlier
    // target/release); nothing is built then.
    if let Some(dir) = &opts.bin_dir {
        for bin in ["lb-user", "alb", "examples/bench-xdp-cost", "examples/bench-pps"] {
            if !dir.join(bin).is_file() {
                anyhow::bail!("--bin-dir {}: {bin} is missing (copy it from a target/release)", dir.display());
            }
        }
        println!("[bench] prebuilt binaries from {} (--bin-dir), no build", dir.display());
    } else {
        crate::build(true)?;
        println!("[bench] cargo build --release -p xtask --example bench-xdp-cost");
        util::run_visible(util::cargo().args(["build", "--release", "-p", "xtask", "--example", "bench-xdp-cost"]))?;
        pps::build_example()?;
        opts.bin_dir = Some(util::workspace_root().join("target/release"));
    }
    lb_common::userspace::signals::on_stop(|_| STOP.store(true, Ordering::SeqCst)).context("installing the SIGINT/SIGTERM handler")?;
    let summary = run(&opts)?;
    let errors: u64 = summary.cases.iter().map(|c| c.stats().errors).sum();
    if errors > 0 {
        println!("[bench] warning: {errors} request errors in total; see the report");
    }
    Ok(())
}

pub fn timestamp() -> String {
    let out = Command::new("date").arg("+%Y%m%d-%H%M%S").output().ok();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).filter(|s| !s.is_empty()).unwrap_or_else(|| "run".into())
}

/// Runs the benchmark with already built binaries and writes the report.
/// Returns the summary (also written to `<out>/results.json`).
pub fn run(opts: &BenchOptions) -> Result<Summary> {
    let t0 = Instant::now();
    let stamp = timestamp();
    // Absolute: the peers run with other working directories and are given
    // paths inside it (a relative --out made nginx look in out/out/work).
    let out = match &opts.out {
        Some(o) => std::path::absolute(o).with_context(|| format!("--out {}", o.display()))?,
        None => util::workspace_root().join("target/bench").join(&stamp),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let bin_dir = match &opts.bin_dir {
        Some(d) => d.clone(),
        None => xdplb_tests::workspace::bin_dir()?,
    };
    let duration = opts.duration.unwrap_or(if opts.quick { QUICK_DURATION } else { DEFAULT_DURATION });
    let reps = if opts.quick { 1 } else { FULL_REPETITIONS };
    let k6 = crate::setup::k6_path();
    if !k6.is_file() {
        bail!("{} not found: run `cargo xtask setup`", k6.display());
    }
    let scripts = util::workspace_root().join("bench/k6");
    let mut cases: Vec<Case> = cases::all(opts.tool);
    if !opts.only.is_empty() {
        cases.retain(|c| opts.only.iter().any(|o| c.id().contains(o.as_str())));
    }
    let total = cases.len() as u32 * reps;
    println!("[bench] {} cases × {reps} repetition(s), {duration} s each, {} connections; output {}", cases.len(), opts.conns, out.display());
    let mut stage = Stage::up(&out.join("work"), &bin_dir, &opts.xdp_mode)?;
    let tls = stage.tls_check()?;
    for (l, t) in &tls {
        println!("[bench] TLS {l}: {t}");
    }
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut results: Vec<CaseResult> = cases.iter().map(|c| CaseResult { case: c.clone(), reps: Vec::new() }).collect();
    let mut n = 0;
    for rep in 0..reps {
        for (ci, case) in cases.iter().enumerate() {
            n += 1;
            if STOP.load(Ordering::SeqCst) {
                bail!("interrupted: lab torn down, no report written");
            }
            stage.prepare(case.lb)?;
            let spec = LoadSpec {
                url: case.url(),
                conns: opts.conns,
                duration: Duration::from_secs(duration),
                new_conn: case.new_conn,
                client_cert: case.mtls.then(|| (stage.certs.client1_cert.clone(), stage.certs.client1_key.clone())),
                pace_ms: None,
            };
            // A flagged repetition is rerun once (not in quick mode: a smoke test).
            let attempts = if opts.quick { 1 } else { 2 };
            let mut r = None;
            for attempt in 0..attempts {
                // A failed load run is recorded (as an error) and the run goes
                // on: one broken case must not cost the whole report.
                let m = match measure(&mut stage, case, &spec, &k6, &scripts, cpus) {
                    Ok(m) => m,
                    Err(e) => {
                        println!("[bench {n}/{total}] rep {}/{reps} {} FAILED: {e:#}", rep + 1, case.id());
                        let load = load::LoadResult { errors: 1, ..Default::default() };
                        r = Some(Rep { load, failure: Some(format!("{e:#}")), ..Default::default() });
                        break;
                    }
                };
                let flagged = m.flagged;
                println!(
                    "[bench {n}/{total}] rep {}/{reps} {:<28} {:>9} req/s  p50 {:>6.2} ms  p99 {:>7.2} ms  err {:<4} machine {:>6.1} µs/req  LB {:>6} µs/req  foreign CPU {:.1}%{}",
                    rep + 1,
                    case.id(),
                    format!("{:.0}", m.load.rps),
                    m.load.p50_ms,
                    m.load.p99_ms,
                    m.load.errors,
                    m.machine_us,
                    m.lb_us.map_or("—".into(), |v| format!("{v:.1}")),
                    m.foreign_pct,
                    if flagged { if attempt + 1 < attempts { "  FLAGGED, rerunning" } else { "  FLAGGED" } } else { "" }
                );
                if let Some(a) = &m.xdp_actions {
                    let shown: Vec<String> = a.iter().map(|(k, v)| format!("{k} {v}")).collect();
                    println!("    XDP packets: {}", shown.join(", "));
                }
                r = Some(m);
                if !flagged {
                    break;
                }
            }
            results[ci].reps.push(r.expect("at least one attempt"));
        }
    }
    let paced = paced_latency(&mut stage, &results, duration, reps, cpus, &k6, &scripts)?;
    stage.reset()?;
    let (xdp_cost, xdp_cost_error) = match xdp_cost(&stage, &bin_dir, if opts.quick { 20_000 } else { 200_000 }) {
        Ok(x) => {
            println!("[bench] XDP TestRun: NAT forward {:.1} ns/packet, reverse NAT {:.1}, pass {:.1}", x.nat_forward_ns, x.reverse_nat_ns, x.pass_ns);
            (Some(x), None)
        }
        Err(e) => {
            println!("[bench] XDP TestRun not measured: {e:#}");
            (None, Some(format!("{e:#}")))
        }
    };
    drop(stage);
    // The packet rate in its own lab (bench-pps brings one up and down).
    let (pps, pps_error) = match pps::measure(&bin_dir, opts.quick) {
        Ok(v) => (Some(v), None),
        Err(e) => {
            println!("[bench] packet rate not measured: {e:#}");
            (None, Some(format!("{e:#}")))
        }
    };
    let summary = Summary {
        started: stamp,
        quick: opts.quick,
        duration_s: duration,
        conns: opts.conns,
        repetitions: reps,
        cpus,
        foreign_threshold_pct: FOREIGN_THRESHOLD_PCT,
        cases: results,
        xdp_cost,
        xdp_cost_error,
        pps,
        pps_error,
        tls,
        paced,
        wall_s: t0.elapsed().as_secs_f64(),
        xdp_attach_mode: opts.xdp_mode.clone(),
    };
    write_outputs(&out, &summary)?;
    println!("[bench] done in {:.0} s: {}/report.md, results.json, chart.svg", summary.wall_s, out.display());
    Ok(summary)
}

/// Writes report.md, results.json and chart.svg into `out`.
pub fn write_outputs(out: &Path, s: &Summary) -> Result<()> {
    std::fs::write(out.join("report.md"), report::markdown(s))?;
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(&report::json(s))? + "\n")?;
    std::fs::write(out.join("chart.svg"), report::svg(s))?;
    Ok(())
}

/// One load run with CPU accounting around it.
fn measure(stage: &mut Stage, case: &Case, spec: &LoadSpec, k6: &Path, scripts: &Path, cpus: usize) -> Result<Rep> {
    let root = stage.lb_root(case.lb, case.mtls);
    measure_process(stage, case, spec, k6, scripts, cpus, root)
}

/// [`measure`] with the LB's root pid given: `bench profile` and `bench
/// levers` run their own balancer processes beside the stage's.
pub(crate) fn measure_process(stage: &mut Stage, case: &Case, spec: &LoadSpec, k6: &Path, scripts: &Path, cpus: usize, lb_root: Option<u32>) -> Result<Rep> {
    let client_ns = stage.lab.ns(Host::Client);
    let lab_ns = stage.netns_inodes();
    // Let the previous case's connections finish closing.
    std::thread::sleep(Duration::from_millis(300));
    let xdp0 = if case.lb.is_xdp() { stage.xdp_actions() } else { None };
    let procs0 = cpu::Processes::read();
    let machine0 = cpu::MachineCpu::read()?;
    let started = Instant::now();
    let running = load::start(case.tool, &client_ns, spec, k6, scripts, &stage.work)?;
    let tool_pid = running.pid();
    // The tool's process tree, sampled while it runs (k6 via ip netns exec).
    std::thread::sleep(spec.duration.saturating_sub(Duration::from_millis(500)).max(Duration::from_millis(200)));
    let tool_tree = cpu::Processes::read().tree(tool_pid);
    let procs_mid = cpu::Processes::read();
    let result = running.finish();
    let wall = started.elapsed();
    let machine1 = cpu::MachineCpu::read()?;
    let procs1 = cpu::Processes::read();
    let load = result.with_context(|| format!("case {}", case.id()))?;
    let xdp_actions = xdp0.and_then(|before| {
        let after = stage.xdp_actions()?;
        Some(after.into_iter().map(|(k, v)| (k.clone(), v.saturating_sub(before.get(&k).copied().unwrap_or(0)))).filter(|(_, v)| *v > 0).collect())
    });
    if load.requests == 0 {
        bail!("case {}: no request completed", case.id());
    }
    let us_tick = cpu::us_per_tick();
    let reqs = load.requests as f64;
    let machine_us = machine1.delta(&machine0).busy as f64 * us_tick / reqs;
    let lb_us = lb_root.map(|root| procs1.ticks_since(&procs0, &procs0.tree(root)) as f64 * us_tick / reqs);
    let lb_user_mode_us = lb_root.map(|root| procs1.user_ticks_since(&procs0, &procs0.tree(root)) as f64 * us_tick / reqs);
    // The tool has exited by now: use the last sample taken while it ran.
    let tool_us = procs_mid.ticks_since(&procs0, &tool_tree) as f64 * us_tick / reqs;
    let own = Stage::own_pids(&procs1);
    let kernel: Vec<u32> = procs1.by_pid.iter().filter(|(p, (pp, _, _))| **p == 2 || *pp == 2).map(|(p, _)| *p).collect();
    let mut exclude = own;
    exclude.extend(kernel);
    let foreign = procs1.foreign_ticks_since(&procs0, &lab_ns, &exclude) as f64 * us_tick;
    let foreign_pct = foreign / (wall.as_secs_f64() * 1e6 * cpus as f64) * 100.0;
    Ok(Rep { load, machine_us, lb_us, lb_user_mode_us, tool_us, foreign_pct, flagged: foreign_pct > FOREIGN_THRESHOLD_PCT, xdp_actions, failure: None })
}

/// Wait between a response and the next request on each connection for the
/// paced runs; long against the latency, so the offered rate depends little on it.
const PACE_MS: u32 = 20;
/// Share of the peak the paced runs offer.
const PACED_SHARE: f64 = 0.7;
/// The same, in percent (for the report).
pub const PACED_SHARE_PCT: f64 = PACED_SHARE * 100.0;

/// Latency under the same offered load below saturation: alb and HAProxy
/// TLS keep-alive, each paced to 70% of the lower of their two peaks
/// measured above (so both run at ≤ 70% of their own peak). wrk with a
/// per-connection pause; the achieved rate is reported. `reps` repetitions,
/// alb and HAProxy alternating, so each p99 ratio compares neighbours.
fn paced_latency(stage: &mut Stage, results: &[CaseResult], duration: u64, reps: u32, cpus: usize, k6: &Path, scripts: &Path) -> Result<Vec<report::Paced>> {
    let peak = |lb| results.iter().find(|c| c.case.lb == lb && !c.case.mtls && !c.case.new_conn && c.case.tool == Tool::Wrk).map(|c| c.stats().rps);
    let (Some(a), Some(h)) = (peak(cases::Lb::Alb), peak(cases::Lb::HaproxyTls)) else { return Ok(Vec::new()) };
    let target = a.min(h) * PACED_SHARE;
    let lbs = [cases::Lb::Alb, cases::Lb::HaproxyTls];
    let case = |lb| Case { lb, new_conn: false, mtls: false, tool: Tool::Wrk };
    let spec = |lb, conns: u32, secs: u64| LoadSpec {
        url: case(lb).url(),
        conns,
        duration: Duration::from_secs(secs),
        new_conn: false,
        client_cert: None,
        pace_ms: Some(PACE_MS),
    };
    // Calibrate once per balancer: connections = rate × (pause + latency);
    // the latency is not known in advance, so a short first run measures
    // the rate one connection count gives and the real runs scale it.
    let first = ((target * f64::from(PACE_MS) / 1000.0).ceil() as u32).max(1);
    let mut conns = Vec::new();
    for lb in lbs {
        stage.prepare(lb)?;
        let calib = measure(stage, &case(lb), &spec(lb, first, duration.min(2)), k6, scripts, cpus)?;
        conns.push(if calib.load.rps > 0.0 { ((f64::from(first) * target / calib.load.rps).ceil() as u32).clamp(1, 4 * first) } else { first });
    }
    let mut out = Vec::new();
    for repetition in 0..reps {
        for (lb, conns) in lbs.into_iter().zip(conns.iter().copied()) {
            stage.prepare(lb)?;
            let m = measure(stage, &case(lb), &spec(lb, conns, duration), k6, scripts, cpus)?;
            println!(
                "[bench] paced rep {}/{reps} {:<12} target {:>6.0} req/s ({conns} conns, {PACE_MS} ms pause): achieved {:>6.0} req/s  p50 {:.2} ms  p99 {:.2} ms  err {}{}",
                repetition + 1,
                lb.name(),
                target,
                m.load.rps,
                m.load.p50_ms,
                m.load.p99_ms,
                m.load.errors,
                if m.flagged { "  FLAGGED" } else { "" }
            );
            out.push(report::Paced { lb: lb.name().into(), repetition, target_rps: target, conns, pace_ms: PACE_MS, rep: m });
        }
    }
    Ok(out)
}

/// Runs examples/bench-xdp-cost in the lab and parses its JSON line.
fn xdp_cost(stage: &Stage, bin_dir: &Path, repeat: u32) -> Result<XdpCost> {
    let bin = bin_dir.join("examples/bench-xdp-cost");
    if !bin.is_file() {
        bail!("{} not built (`cargo build --release -p xtask --example bench-xdp-cost`)", bin.display());
    }
    let out = Command::new(&bin).args(["--lab", stage.lab.name(), "--repeat", &repeat.to_string()]).output()?;
    if !out.status.success() {
        bail!("{} failed: {}", bin.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("bench-xdp-cost output")?;
    let f = |k: &str| v[k].as_f64().with_context(|| format!("no {k} in {v}"));
    // Verdicts: 4 = XDP_REDIRECT, 2 = XDP_PASS.
    if v["nat_forward_verdict"] != 4 || v["reverse_nat_verdict"] != 4 || v["pass_verdict"] != 2 {
        bail!("unexpected verdicts in {v}");
    }
    Ok(XdpCost { runs: u64::from(repeat), nat_forward_ns: f("nat_forward_ns")?, reverse_nat_ns: f("reverse_nat_ns")?, pass_ns: f("pass_ns")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo xtask bench --quick` end to end (library call, not cargo):
    /// every case has throughput and no errors, and the outputs exist.
    #[test]
    fn quick_bench_runs_every_case_without_errors() {
        xdplb_tests::require_root!();
        let _bench = pps::tests::BENCH_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let out = std::env::temp_dir().join(format!("xdplb-bench-test-{}", std::process::id()));
        let _ = pps::tests::test_example();
        let opts = BenchOptions { quick: true, conns: 16, out: Some(out.clone()), ..Default::default() };
        let summary = run(&opts).unwrap();
        let text = std::fs::read_to_string(out.join("results.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let listed: Vec<&str> = v["cases"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
        for case in cases::all(Tool::Wrk) {
            assert!(listed.contains(&case.id().as_str()), "{} missing from results.json", case.id());
        }
        for c in v["cases"].as_array().unwrap() {
            assert!(c["median"]["rps"].as_f64().unwrap() > 0.0, "no throughput: {c}");
            assert_eq!(c["errors"].as_u64(), Some(0), "errors: {c}");
        }
        // The XDP cases really went through the program.
        for (id, action) in [("xdp-nat/keepalive", "forward_nat"), ("xdp-dsr/keepalive", "forward_dsr")] {
            let c = v["cases"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap();
            let packets = c["repetitions"][0]["xdp_actions"][action].as_u64().unwrap_or(0);
            assert!(packets > 0, "{id}: no {action} packets: {c}");
        }
        let paced = v["paced"].as_array().unwrap();
        assert_eq!(paced.len(), 2, "alb and haproxy-tls paced runs");
        for p in paced {
            assert!(p["rps"].as_f64().unwrap() > 0.0 && p["errors"] == 0, "paced: {p}");
        }
        // cargo test builds the examples, so the TestRun figure is there.
        assert!(v["xdp_cost"]["nat_forward_ns"].as_f64().unwrap_or(0.0) > 0.0, "{}", v["xdp_cost_error"]);
        match v["pps_error"].as_str() {
            Some(e) if pps::tests::live_frames_refused(e) => xdplb_tests::privileged::skipped_for_host(
                concat!(module_path!(), "::quick_bench_runs_every_case_without_errors (its packet rate)"),
                lb_common::pktgen::LIVE_FRAMES_REFUSED,
            ),
            _ => assert!(v["pps"]["cases"].as_array().is_some_and(|c| !c.is_empty()), "{}", v["pps_error"]),
        }
        assert!(out.join("report.md").is_file() && out.join("chart.svg").is_file());
        assert_eq!(summary.cases.len(), listed.len());
        let _ = std::fs::remove_dir_all(&out);
    }
}
