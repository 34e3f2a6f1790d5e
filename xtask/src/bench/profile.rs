//! `cargo xtask bench profile`: where the balancers spend their CPU. Brings
//! up the bench's stage (the same lab, backends, peers and configs as
//! `cargo xtask bench`), runs each selected case once, and while the load
//! runs samples the case's balancer process with `perf record`; the stacks
//! go through inferno (perf collapse, then flame graph) into one SVG per
//! case (docs/benchmarks.md, "Flame graphs"). With `--pace MS` the load is
//! the main bench's paced one (each connection waits between a response and
//! its next request), the pattern of its "latency below saturation" runs.
//!
//! Stacks are unwound from DWARF call frame information (`--call-graph
//! dwarf`): the binaries are built without frame pointers (and HAProxy's
//! Debian build too), which frame-pointer unwinding needs. The release profile's `debug = 1` gives symbol names and line
//! tables; `perf script --no-inline` skips inline-frame resolution through
//! addr2line, which takes minutes per case and adds nothing a flame graph of
//! functions needs.

use std::{
    io::{BufReader, BufWriter},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use inferno::collapse::Collapse as _;

use super::{
    cases::{self, Case},
    cpu,
    load::{LoadSpec, Tool},
    stage::{self, Stage},
};
use crate::util;

/// The cases profiled by default: both userspace tiers and their HAProxy
/// counterparts, keep-alive and (for ours) a new connection per request.
pub const DEFAULT_CASES: [&str; 6] =
    ["alb/keepalive", "alb/new-conn", "lb-user-proxy/keepalive", "lb-user-proxy/new-conn", "haproxy-tls/keepalive", "haproxy-tcp/keepalive"];
/// Sampling frequency (Hz). With 64 KiB of stack per sample, one busy core
/// for 6 s is ~120 MB of perf data (removed once drawn).
pub const FREQUENCY: u32 = 299;
/// Bytes of user stack copied per sample for the DWARF unwinder: perf's
/// maximum. Tokio and hyper stacks are deep; with 16 KiB most of alb's
/// stacks (debug build) ended in `[unknown]` before reaching the thread's
/// start.
pub const STACK_BYTES: u32 = 65528;
/// Seconds of load per case (and of recording) by default, and with `--quick`.
pub const DEFAULT_SECONDS: u64 = 6;
pub const QUICK_SECONDS: u64 = 2;

/// `cargo xtask bench profile` options.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ProfileArgs {
    /// Smoke test: 2 s per case.
    #[arg(long)]
    pub quick: bool,
    /// Load and recording time per case: a duration (`6s`) or whole seconds
    /// (default 6s; 2s with --quick).
    #[arg(long, value_name = "DURATION", value_parser = crate::whole_seconds)]
    pub duration: Option<u64>,
    /// Concurrent connections (wrk -c).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub conns: u32,
    /// Paced load: each connection waits MS milliseconds after a response
    /// before its next request (as the bench's paced runs, which use 20);
    /// the SVGs are named `flamegraph-<case>-paced-<MS>ms.svg`.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub pace: Option<u32>,
    /// Only cases whose id contains this (repeatable), e.g. `alb`.
    #[arg(long, value_name = "TEXT")]
    pub only: Vec<String>,
    /// Output directory (default target/bench/profile-<timestamp>/).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

impl ProfileArgs {
    /// Load and recording time per case, s: `--duration`, else the default
    /// (shorter with `--quick`).
    fn seconds(&self) -> u64 {
        self.duration.unwrap_or(if self.quick { QUICK_SECONDS } else { DEFAULT_SECONDS })
    }
}

/// One case's flame graph.
#[derive(Debug, Clone)]
pub struct Profiled {
    pub id: String,
    pub svg: PathBuf,
    /// CPU time perf sampled in the balancer's process tree, ms (the
    /// collapsed stacks are weighted by the cpu-clock period, in ns).
    pub cpu_ms: f64,
    /// Share of the sampled CPU time whose stack was unwound to the
    /// thread's start (its outermost frame is known): a low figure means
    /// truncated stacks (see the module comment).
    pub unwound_pct: f64,
    pub rps: f64,
}

/// The CLI entry: setup, release build, run, print where the SVGs are.
pub fn profile(args: ProfileArgs) -> Result<()> {
    util::require_root("bench profile")?;
    crate::setup::setup()?;
    crate::build(true)?;
    let done = run(&args, &util::workspace_root().join("target/release"))?;
    println!("[bench profile] {} flame graph(s) in {}", done.len(), out_dir(&args).display());
    Ok(())
}

fn out_dir(args: &ProfileArgs) -> PathBuf {
    args.out.clone().unwrap_or_else(|| util::workspace_root().join("target/bench").join(format!("profile-{}", super::timestamp())))
}

/// The selected cases: [`DEFAULT_CASES`], narrowed by `--only`.
pub fn selected(only: &[String]) -> Result<Vec<Case>> {
    let cases: Vec<Case> = cases::all(Tool::Wrk)
        .into_iter()
        .filter(|c| DEFAULT_CASES.contains(&c.id().as_str()))
        .filter(|c| only.is_empty() || only.iter().any(|o| c.id().contains(o.as_str())))
        .collect();
    if cases.is_empty() {
        bail!("--only {only:?} matches none of the profiled cases {DEFAULT_CASES:?}");
    }
    Ok(cases)
}

/// `flamegraph-alb-keepalive.svg` for `alb/keepalive`, and
/// `flamegraph-alb-keepalive-paced-20ms.svg` for it paced at 20 ms.
pub fn svg_name(id: &str, pace_ms: Option<u32>) -> String {
    let paced = pace_ms.map_or(String::new(), |ms| format!("-paced-{ms}ms"));
    format!("flamegraph-{}{paced}.svg", id.replace('/', "-"))
}

/// Profiles the selected cases with the binaries in `bin_dir`; writes the
/// SVGs into the output directory (the perf data and the stage's work
/// directory are removed).
pub fn run(args: &ProfileArgs, bin_dir: &Path) -> Result<Vec<Profiled>> {
    let cases = selected(&args.only)?;
    Command::new("perf").arg("--version").output().context("perf not found: `cargo xtask setup` installs Debian's linux-perf")?;
    let out = out_dir(args);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let seconds = args.seconds();
    let work = out.join("work");
    let paced = args.pace.map_or(String::new(), |ms| format!(" paced at {ms} ms per connection"));
    println!(
        "[bench profile] {} case(s), {seconds} s each, {} connections{paced}, perf {FREQUENCY} Hz DWARF; output {}",
        cases.len(),
        args.conns,
        out.display()
    );
    let mut stage = Stage::up(&work, bin_dir, stage::DEFAULT_XDP_MODE)?;
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut done = Vec::new();
    let result = (|| -> Result<()> {
        for (i, case) in cases.iter().enumerate() {
            let p = profile_case(&mut stage, case, &out, args, cpus)?;
            println!(
                "[profile {}/{}] {:<26} {:>8.0} req/s  {:.0} ms CPU sampled, {:.0}% unwound → {}",
                i + 1,
                cases.len(),
                p.id,
                p.rps,
                p.cpu_ms,
                p.unwound_pct,
                p.svg.display()
            );
            done.push(p);
        }
        Ok(())
    })();
    drop(stage);
    let _ = std::fs::remove_dir_all(&work);
    result?;
    Ok(done)
}

/// `args` gives the load: its time, connections and pause.
fn profile_case(stage: &mut Stage, case: &Case, out: &Path, args: &ProfileArgs, cpus: usize) -> Result<Profiled> {
    let (seconds, conns, pace_ms) = (args.seconds(), args.conns, args.pace);
    stage.prepare(case.lb)?;
    let root = stage.lb_root(case.lb, case.mtls).with_context(|| format!("{}: no balancer process to profile", case.id()))?;
    let pids: Vec<String> = cpu::Processes::read().tree(root).iter().map(u32::to_string).collect();
    let slug = case.id().replace('/', "-");
    let data = stage.work.join(format!("perf-{slug}.data"));
    let log = stage.work.join(format!("perf-{slug}.log"));
    let log_file = std::fs::File::create(&log)?;
    // perf samples on-CPU time only, so the recording may start a little
    // before the load and end after it: the idle edges add no samples.
    let mut perf = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", &FREQUENCY.to_string(), "--call-graph", &format!("dwarf,{STACK_BYTES}"), "-p", &pids.join(",")])
        .arg("-o")
        .arg(&data)
        .args(["--", "sleep", &seconds.to_string()])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .context("starting perf record")?;
    let spec = LoadSpec { url: case.url(), conns, duration: Duration::from_secs(seconds), new_conn: case.new_conn, client_cert: None, pace_ms };
    let k6 = crate::setup::k6_path();
    let scripts = util::workspace_root().join("bench/k6");
    let measured = super::measure_process(stage, case, &spec, &k6, &scripts, cpus, Some(root));
    let deadline = Instant::now() + Duration::from_secs(seconds + 30);
    let status = loop {
        if let Some(s) = perf.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = perf.kill();
            let _ = perf.wait();
            let _ = std::fs::remove_file(&data);
            bail!("{}: perf record did not finish within {} s", case.id(), seconds + 30);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let rep = measured?;
    if !status.success() {
        let _ = std::fs::remove_file(&data);
        bail!("{}: perf record failed ({status}): {}", case.id(), std::fs::read_to_string(&log).unwrap_or_default().trim());
    }
    let svg = out.join(svg_name(&case.id(), pace_ms));
    let title = match pace_ms {
        Some(ms) => format!("{}, {conns} connections paced at {ms} ms", case.id()),
        None => case.id(),
    };
    let drawn = draw(&data, &svg, &title, rep.load.rps);
    let _ = std::fs::remove_file(&data);
    let _ = std::fs::remove_file(&log);
    let (cpu_ms, unwound_pct) = drawn?;
    Ok(Profiled { id: case.id(), svg, cpu_ms, unwound_pct, rps: rep.load.rps })
}

/// `perf script` of `data` → collapsed stacks → flame graph SVG. Returns
/// the CPU time sampled (ms) and the share of it with an unwound stack.
fn draw(data: &Path, svg: &Path, id: &str, rps: f64) -> Result<(f64, f64)> {
    let script = data.with_extension("script");
    let file = std::fs::File::create(&script)?;
    let status = Command::new("perf")
        .args(["script", "--no-inline", "-i"])
        .arg(data)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(Stdio::piped())
        .output()
        .context("running perf script")?;
    let collapsed = (|| -> Result<Vec<u8>> {
        if !status.status.success() {
            bail!("perf script failed ({}): {}", status.status, String::from_utf8_lossy(&status.stderr).trim());
        }
        let mut folded = Vec::new();
        let mut folder = inferno::collapse::perf::Folder::from(inferno::collapse::perf::Options::default());
        folder.collapse(BufReader::new(std::fs::File::open(&script)?), &mut folded).context("collapsing perf script output")?;
        Ok(folded)
    })();
    let _ = std::fs::remove_file(&script);
    let folded = String::from_utf8(collapsed?).context("collapsed stacks are not UTF-8")?;
    let (ns, unwound) = count(&folded);
    if ns == 0 {
        bail!("{id}: perf recorded no samples of the balancer");
    }
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = format!("{id}: xdplb bench profile");
    opts.subtitle = Some(format!("{rps:.0} req/s; {:.0} ms of CPU sampled at {FREQUENCY} Hz (perf cpu-clock, DWARF unwinding)", ns as f64 / 1e6));
    opts.count_name = "ns".into();
    let writer = BufWriter::new(std::fs::File::create(svg).with_context(|| format!("creating {}", svg.display()))?);
    inferno::flamegraph::from_lines(&mut opts, folded.lines(), writer).with_context(|| format!("drawing {}", svg.display()))?;
    Ok((ns as f64 / 1e6, unwound as f64 / ns as f64 * 100.0))
}

/// The total weight of collapsed stacks (`frame;frame;… count` lines),
/// and how much of it has a known outermost frame (below the command
/// name): a stack the unwinder gave up on starts with `[unknown]`.
pub fn count(folded: &str) -> (u64, u64) {
    let mut total = 0;
    let mut unwound = 0;
    for line in folded.lines() {
        let Some((stack, n)) = line.rsplit_once(' ') else { continue };
        let Ok(n) = n.parse::<u64>() else { continue };
        total += n;
        // The first frame is the thread's command name.
        if stack.split(';').nth(1).is_some_and(|f| f != "[unknown]") {
            unwound += n;
        }
    }
    (total, unwound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_names_and_counts() {
        let ids: Vec<String> = selected(&[]).unwrap().iter().map(Case::id).collect();
        assert_eq!(ids.len(), DEFAULT_CASES.len(), "every default case exists: {ids:?}");
        let alb: Vec<String> = selected(&["alb/".into()]).unwrap().iter().map(Case::id).collect();
        assert_eq!(alb, ["alb/keepalive", "alb/new-conn"]);
        assert!(selected(&["nginx".into()]).unwrap_err().to_string().contains("matches none"));
        assert_eq!(svg_name("lb-user-proxy/new-conn", None), "flamegraph-lb-user-proxy-new-conn.svg");
        assert_eq!(svg_name("alb/keepalive", Some(20)), "flamegraph-alb-keepalive-paced-20ms.svg");
        let folded = "alb;main;tokio::run;poll 7\nalb;[unknown] 2\nalb;[unknown];hyper::poll;write 1\n";
        assert_eq!(count(folded), (10, 7));
    }

    /// `--pace` takes whole milliseconds from 1 to 1000; absent, the load
    /// is not paced.
    #[test]
    fn pace_flag_is_checked() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: ProfileArgs,
        }
        use clap::Parser as _;
        assert_eq!(Cli::try_parse_from(["profile", "--pace", "20"]).unwrap().args.pace, Some(20));
        assert_eq!(Cli::try_parse_from(["profile"]).unwrap().args.pace, None);
        for bad in ["0", "1001", "x"] {
            let e = Cli::try_parse_from(["profile", "--pace", bad]).err().unwrap().to_string();
            assert!(e.contains("--pace"), "{bad}: {e}");
        }
    }

    /// `cargo xtask bench profile --quick --only alb/keepalive` end to end
    /// with the test build: an SVG of alb's own functions, nothing of perf's
    /// data left behind.
    #[test]
    fn quick_profile_draws_a_flame_graph() {
        xdplb_tests::require_root!();
        let _bench = super::super::pps::tests::BENCH_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let out = std::env::temp_dir().join(format!("xdplb-profile-test-{}", std::process::id()));
        let args = ProfileArgs { quick: true, conns: 16, only: vec!["alb/keepalive".into()], out: Some(out.clone()), ..Default::default() };
        let done = run(&args, &xdplb_tests::workspace::bin_dir().unwrap()).unwrap();
        assert_eq!(done.len(), 1);
        let p = &done[0];
        assert!(p.cpu_ms > 0.0 && p.rps > 0.0, "{p:?}");
        // Debug build: 38% of alb's CPU time had stacks unwound to a known
        // outermost frame with 64 KiB per sample (frames are large without
        // optimisation).
        assert!(p.unwound_pct > 10.0, "stacks were not unwound: {p:?}");
        let svg = std::fs::read_to_string(&p.svg).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("alb"), "not a flame graph of alb");
        assert!(svg.contains("tokio"), "no Tokio frames: the stacks are not unwound");
        let left: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(left, [svg_name("alb/keepalive", None)], "only the SVG stays");
        let _ = std::fs::remove_dir_all(&out);
    }
}
