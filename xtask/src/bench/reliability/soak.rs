//! The `soak` case: the two-tier lab chain (client → XDP VIP → 2 albs →
//! 3 lab backends, `xdplb_tests::lab::chain`) at half of its peak request
//! rate for `--soak-duration`.
//!
//! 1. Peak: a short closed-loop ramp with wrk (3 s per step at 8, 16, 32
//!    and 64 connections, every step run: on a shared machine one slow step
//!    says little); the peak is the best error-free step.
//! 2. Half of it, paced: wrk's `delay()` hook waits between a response and
//!    the next request on each connection; up to six 3 s runs tune the
//!    pause until the achieved rate is within 5 % of the target, and every
//!    soak segment re-tunes it from the one before (the machine is shared).
//! 3. The soak: 10 s wrk segments back to back, each printing progress;
//!    RSS of every alb and of lb-user after the warm-up (the first fifth,
//!    at most 60 s) and at the end; health states of both tiers watched
//!    throughout (any transition is reported).
//!
//! Every request is a new connection (`Connection: close`): a new flow
//! through XDP's conntrack, a full TLS handshake and a new client
//! connection in alb, which is where per-connection state would leak. p50
//! is the median of the segments' p50s and p99 the worst segment's p99 (wrk
//! reports percentiles per run).

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use xdplb_tests::{
    lab::{
        alb_tier::{self, AlbTier},
        chain::{rss_kib, Chain, ChainSpec, TLS_VIP},
        config::Check,
        Host,
    },
    watch::Watch,
};

use super::{Ctx, Figure};
use crate::{
    bench::load::{self, LoadResult, LoadSpec, Tool},
    util,
};

const CASE: &str = "soak";
const RAMP: [u32; 4] = [8, 16, 32, 64];
const STEP: Duration = Duration::from_secs(3);
const SEGMENT: u64 = 10;
/// Each connection's cycle (pause + request) at the target rate.
const CYCLE_MS: f64 = 50.0;
const MAX_GROWTH_PCT: f64 = 5.0;
/// Share of the computed pause correction applied per run.
const DAMPING: f64 = 0.5;
/// Production-like checks: states last at least 2 s, sampled every 100 ms.
const CHECK: Check = Check { interval: Duration::from_secs(1), timeout: Duration::from_millis(500), rise: 2, fall: 3 };

/// Set by Ctrl-C: end after the current segment and report what was measured.
pub fn run(ctx: &Ctx) -> Result<Vec<Figure>> {
    let args = ctx.args;
    if which("wrk").is_none() {
        bail!("wrk not found on PATH: `cargo xtask setup` installs it");
    }
    let work = tempfile::Builder::new().prefix("xdplb-soak-").tempdir().context("creating the soak's work directory")?;
    let mut spec = ChainSpec::new("xs", 2, 3, CHECK);
    spec.attach_mode = Some(crate::bench::stage::DEFAULT_XDP_MODE.into());
    spec.alb_env.push("RUST_LOG=warn".into());
    println!("[soak] bringing up the chain: client -> XDP VIP {TLS_VIP} -> 2 albs -> 3 backends");
    let chain = Chain::up(&spec)?;
    let wrk = Wrk { ns: chain.lab.ns(Host::Client), url: format!("https://{TLS_VIP}/"), work: work.path().to_owned() };

    let peak = find_peak(&wrk)?;
    let target = peak.rps / 2.0;
    let conns = ((target * CYCLE_MS / 1000.0).round() as u32).clamp(4, 256);
    let mut pace = (CYCLE_MS - peak.p50_ms).max(1.0);
    println!("[soak] peak {:.0} req/s; target {target:.0} req/s with {conns} connections", peak.rps);
    for _ in 0..6 {
        let r = wrk.run(conns, Some(pace), STEP)?;
        println!("[soak]   pace {pace:.0} ms: {:.0} req/s", r.rps);
        let close = (r.rps / target - 1.0).abs() <= 0.05;
        pace = retune(pace, conns, target, r.rps);
        if close {
            break;
        }
    }

    let duration = Duration::from_secs(args.soak_duration);
    let warmup = (duration / 5).min(Duration::from_secs(60));
    let watch_for = duration + Duration::from_secs(300);
    let lb_watch = Watch::start(&chain.lab.ns(Host::Lb), Duration::from_millis(100), watch_for, Chain::lb_user_health);
    let alb_watches: Vec<Watch> = chain
        .tier
        .alb_ids()
        .map(|i| Watch::start(&chain.lab.ns(AlbTier::host(i)), Duration::from_millis(100), watch_for, || alb_tier::backend_health(alb_tier::ADMIN)))
        .collect();
    let mut procs: Vec<(String, u32)> = Vec::new();
    for i in chain.tier.alb_ids() {
        procs.push((AlbTier::label(i), chain.tier.pid(&chain.lab, i).with_context(|| format!("alb{i} is not running"))?));
    }
    procs.push(("lb-user".into(), chain.lb.pid().context("lb-user is not running")?));
    println!("[soak] {} s at {target:.0} req/s (warm-up {} s), progress every {SEGMENT} s", duration.as_secs(), warmup.as_secs());

    let started = Instant::now();
    let mut segments: Vec<LoadResult> = Vec::new();
    let mut warm_rss: Option<Vec<u64>> = None;
    let mut loads = Vec::new();
    // Planned segments (the last one shorter), so wrk's start-up time per
    // segment does not turn into a stub segment at the end.
    let mut planned = 0;
    while planned < duration.as_secs() && !super::stopped() {
        let len = (duration.as_secs() - planned).min(SEGMENT);
        planned += len;
        let r = wrk.run(conns, Some(pace), Duration::from_secs(len))?;
        pace = retune(pace, conns, target, r.rps);
        let rss: Vec<u64> = procs.iter().map(|(_, pid)| rss_kib(*pid)).collect::<Result<_>>()?;
        if warm_rss.is_none() && started.elapsed() >= warmup {
            warm_rss = Some(rss.clone());
        }
        loads.push(load_average()?);
        let shown: Vec<String> = procs.iter().zip(&rss).map(|((l, _), kib)| format!("{l} {:.1} MiB", *kib as f64 / 1024.0)).collect();
        println!(
            "[soak] {:>4}/{} s: {} requests ({:.0}/s), {} errors, p50 {:.2} ms, p99 {:.2} ms; RSS {}",
            started.elapsed().as_secs(),
            duration.as_secs(),
            r.requests,
            r.rps,
            r.errors,
            r.p50_ms,
            r.p99_ms,
            shown.join(", ")
        );
        segments.push(r);
    }
    let elapsed = started.elapsed();
    let end_rss: Vec<u64> = procs.iter().map(|(_, pid)| rss_kib(*pid)).collect::<Result<_>>()?;
    let transitions = lb_watch.stop()?.changes.len() + alb_watches.into_iter().map(|w| w.stop().map(|s| s.changes.len())).sum::<Result<usize>>()?;
    chain.stop()?;
    if super::stopped() {
        println!("[soak] stopped early after {} s (Ctrl-C)", elapsed.as_secs());
    }

    let mut figures = vec![
        fig(format!("peak rate (closed loop, {} connections)", peak.conns), peak.rps, "req/s", None),
        fig("target rate (half of peak)".into(), target, "req/s", None),
        fig("soak duration".into(), elapsed.as_secs_f64(), "s", None),
        fig("machine load average (1 min, mean of the segments)".into(), loads.iter().sum::<f64>() / loads.len().max(1) as f64, "", None),
    ];
    figures.extend(summarize(&segments, transitions));
    let warm = warm_rss.unwrap_or_else(|| end_rss.clone());
    for (((label, _), w), e) in procs.iter().zip(&warm).zip(&end_rss) {
        let growth = 100.0 * (*e as f64 - *w as f64) / (*w).max(1) as f64;
        figures.push(fig(format!("{label} RSS after warm-up"), *w as f64 / 1024.0, "MiB", None));
        figures.push(fig(format!("{label} RSS at the end"), *e as f64 / 1024.0, "MiB", None));
        figures.push(fig(format!("{label} RSS growth after warm-up"), growth, "%", Some((format!("<= {MAX_GROWTH_PCT} %"), growth <= MAX_GROWTH_PCT))));
    }
    Ok(figures)
}

/// Totals over the soak's segments.
fn summarize(segments: &[LoadResult], transitions: usize) -> Vec<Figure> {
    let requests: u64 = segments.iter().map(|s| s.requests).sum();
    let errors: u64 = segments.iter().map(|s| s.errors).sum();
    let seconds: f64 = segments.iter().map(|s| s.seconds).sum();
    let mut p50s: Vec<f64> = segments.iter().map(|s| s.p50_ms).collect();
    p50s.sort_by(f64::total_cmp);
    let p50 = p50s.get(p50s.len() / 2).copied().unwrap_or(0.0);
    let p99 = segments.iter().map(|s| s.p99_ms).fold(0.0, f64::max);
    vec![
        fig("requests".into(), requests as f64, "", None),
        fig("errors".into(), errors as f64, "", Some(("0".into(), errors == 0))),
        fig("achieved rate".into(), if seconds > 0.0 { requests as f64 / seconds } else { 0.0 }, "req/s", None),
        fig("p50 latency (median segment)".into(), p50, "ms", None),
        fig("p99 latency (worst segment)".into(), p99, "ms", None),
        fig("health transitions (lb-user and albs)".into(), transitions as f64, "", Some(("0".into(), transitions == 0))),
    ]
}

fn fig(name: String, value: f64, unit: &'static str, goal: Option<(String, bool)>) -> Figure {
    let (goal, met) = goal.map_or((None, None), |(g, m)| (Some(g), Some(m)));
    Figure { case: CASE, name, value, unit, goal, met }
}

/// The best error-free step of the closed-loop ramp, with its connections.
struct Peak {
    rps: f64,
    p50_ms: f64,
    conns: u32,
}

fn find_peak(wrk: &Wrk) -> Result<Peak> {
    let mut best: Option<Peak> = None;
    for conns in RAMP {
        let r = wrk.run(conns, None, STEP)?;
        println!("[soak] ramp: {conns} connections: {:.0} req/s, {} errors, p50 {:.2} ms", r.rps, r.errors, r.p50_ms);
        if r.errors == 0 && r.rps > best.as_ref().map_or(0.0, |b| b.rps) {
            best = Some(Peak { rps: r.rps, p50_ms: r.p50_ms, conns });
        }
        if super::stopped() {
            break;
        }
    }
    best.filter(|b| b.rps > 0.0).context("no ramp step ran without errors; see the lines above")
}

/// Moves the pause toward the one that brings `conns` connections from
/// `achieved` to `target` req/s (each connection's cycle is conns / rate
/// seconds), half way: on a shared machine a full step overshoots.
fn retune(pace: f64, conns: u32, target: f64, achieved: f64) -> f64 {
    if achieved <= 0.0 {
        return pace;
    }
    let want = 1000.0 * f64::from(conns) / target;
    let now = 1000.0 * f64::from(conns) / achieved;
    (pace + DAMPING * (want - now)).max(0.0)
}

/// wrk against the chain's HTTPS VIP from the client namespace.
struct Wrk {
    ns: String,
    url: String,
    work: PathBuf,
}

impl Wrk {
    fn run(&self, conns: u32, pace_ms: Option<f64>, duration: Duration) -> Result<LoadResult> {
        let spec = LoadSpec {
            url: self.url.clone(),
            conns,
            duration,
            new_conn: true,
            client_cert: None,
            pace_ms: pace_ms.map(|p| p.round() as u32).filter(|p| *p > 0),
        };
        let (k6, scripts) = (crate::setup::k6_path(), util::workspace_root().join("bench/k6"));
        load::start(Tool::Wrk, &self.ns, &spec, &k6, &scripts, &self.work)?.finish()
    }
}

/// The 1-minute load average: the soak shares the machine.
fn load_average() -> Result<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").context("reading /proc/loadavg")?;
    text.split_whitespace().next().and_then(|v| v.parse().ok()).with_context(|| format!("bad /proc/loadavg {text:?}"))
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| p.is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retune_moves_the_pause_toward_the_target() {
        // 10 connections at 100 req/s: 100 ms cycles; want 200 req/s: 50 ms,
        // so half of the 50 ms correction.
        assert_eq!(retune(80.0, 10, 200.0, 100.0), 55.0);
        assert_eq!(retune(10.0, 10, 50.0, 100.0), 60.0);
        assert_eq!(retune(5.0, 10, 1000.0, 10.0), 0.0);
        assert_eq!(retune(7.0, 10, 100.0, 0.0), 7.0);
    }

    #[test]
    fn summary_takes_the_median_p50_and_the_worst_p99() {
        let seg = |requests, errors, p50_ms, p99_ms| LoadResult { requests, seconds: 10.0, rps: requests as f64 / 10.0, p50_ms, p99_ms, errors };
        let f = summarize(&[seg(100, 0, 1.0, 5.0), seg(200, 1, 3.0, 9.0), seg(300, 0, 2.0, 4.0)], 0);
        let get = |name: &str| f.iter().find(|x| x.name.starts_with(name)).unwrap();
        assert_eq!(get("requests").value, 600.0);
        assert_eq!((get("errors").value, get("errors").met), (1.0, Some(false)));
        assert_eq!(get("achieved rate").value, 20.0);
        assert_eq!((get("p50").value, get("p99").value), (2.0, 9.0));
        assert_eq!(get("health transitions").met, Some(true));
    }
}
