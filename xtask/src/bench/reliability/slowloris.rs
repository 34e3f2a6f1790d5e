//! The `slowloris` case: `--slow-conns` (1,000) TLS connections that send a
//! request head one byte per second and never finish it, reopened when alb
//! closes them, against alb with its default timeouts. Normal clients (wrk,
//! keep-alive, paced well below alb's peak) measure their request latency
//! first without and then with the slow connections, in the same run; the
//! goal is a p99 within 2× of the quiet one. Also: whether and after how
//! long alb closes the slow connections (its `timeouts.header_read`), and
//! new clients' handshake times meanwhile.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use xdplb_tests::lab::Host;

use super::{alb_lab::AlbLab, poll, say, Case, Ctx, Figure};
use crate::bench::load::{self, LoadResult, LoadSpec, Tool};

const CASE: Case = Case::Slowloris;
/// alb's default `timeouts.header_read` (docs/alb.md), which the case runs with.
const HEADER_READ_S: f64 = 10.0;
/// Each normal-load run: two header-read periods, so the slow connections
/// are cut and reopened while it runs.
const LOAD_SECONDS: u64 = 20;
/// wrk connections and the pause after each response (about 1,500 req/s).
const LOAD_CONNS: u32 = 16;
const LOAD_PACE_MS: u32 = 10;
/// New slow connections per second (also when reopening).
const SLOW_RATE: u32 = 250;
const PROBE_CONNS: u32 = 300;
const PROBE_RATE: u32 = 30;

fn normal_load(al: &AlbLab, label: &str) -> Result<LoadResult> {
    let spec = LoadSpec {
        url: format!("https://{}/", al.addr),
        conns: LOAD_CONNS,
        duration: Duration::from_secs(LOAD_SECONDS),
        new_conn: false,
        client_cert: None,
        pace_ms: Some(LOAD_PACE_MS),
    };
    // wrk needs neither k6 nor its scripts.
    let none = std::path::Path::new("/nonexistent");
    let r = load::start(Tool::Wrk, &al.lab.ns(Host::Client), &spec, none, none, &al.work)?.finish().with_context(|| format!("{label} load"))?;
    if r.requests == 0 {
        bail!("{label} load: no request completed");
    }
    say(CASE, format!("{label}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors", r.rps, r.p50_ms, r.p99_ms, r.errors));
    Ok(r)
}

pub fn run(ctx: &Ctx) -> Result<Vec<Figure>> {
    let n = ctx.args.slow_conns;
    let al = AlbLab::up(ctx, CASE, "")?;
    say(CASE, format!("normal load without slow connections: wrk {LOAD_CONNS} keep-alive connections, {LOAD_PACE_MS} ms pause, {LOAD_SECONDS} s"));
    let quiet = normal_load(&al, "quiet")?;
    let quiet_hs = al.handshake_probe("probe-quiet", PROBE_CONNS, PROBE_RATE)?;

    say(CASE, format!("opening {n} slow connections at {SLOW_RATE}/s (one byte per second, reopened when closed)"));
    let args: Vec<String> = [
        "--conns",
        &n.to_string(),
        "--rate",
        &SLOW_RATE.to_string(),
        "--then",
        "trickle",
        "--trickle-every",
        "1s",
        "--reopen",
        "--until-stdin-closes",
        "--duration",
        "30m",
    ]
    .map(String::from)
    .to_vec();
    let mut slow = al.clients("slowloris", &args)?;
    poll("the slow connections to open", Duration::from_secs(u64::from(n / SLOW_RATE) + 60), Duration::from_millis(250), || {
        slow.check_running()?;
        Ok((slow.progress().open >= u64::from(n)).then_some(()))
    })?;
    say(CASE, format!("{n} slow connections open; normal load again"));
    let busy = normal_load(&al, "with slowloris")?;
    let busy_hs = al.handshake_probe("probe-slowloris", PROBE_CONNS, PROBE_RATE)?;
    slow.check_running()?;
    let open_at_end = slow.progress().open;
    let s = slow.finish(Duration::from_secs(20))?;
    say(
        CASE,
        format!(
            "slow connections: {} handshakes, {} closed by alb after p50 {:.1} s / max {:.1} s, {} failed",
            s.progress.handshakes, s.progress.server_closed, s.server_close_s.p50, s.server_close_s.max, s.progress.failed
        ),
    );
    let ratio = if quiet.p99_ms > 0.0 { busy.p99_ms / quiet.p99_ms } else { f64::INFINITY };
    let nf = |name: &str| format!("{name} with {n} slowloris connections");
    Ok(vec![
        Figure::new(CASE.id(), "normal clients' request p99, quiet", quiet.p99_ms, "ms"),
        Figure::new(CASE.id(), nf("normal clients' request p99"), busy.p99_ms, "ms"),
        Figure::new(CASE.id(), "normal clients' p99, slowloris / quiet", ratio, "x").at_most(2.0),
        Figure::new(CASE.id(), "normal clients' request rate, quiet", quiet.rps, "req/s"),
        Figure::new(CASE.id(), nf("normal clients' request rate"), busy.rps, "req/s"),
        Figure::new(CASE.id(), "normal clients' errors (both runs)", (quiet.errors + busy.errors) as f64, "requests").at_most(0.0),
        Figure::new(CASE.id(), "new-client handshake p99, quiet", quiet_hs.handshake_ms.p99, "ms"),
        Figure::new(CASE.id(), nf("new-client handshake p99"), busy_hs.handshake_ms.p99, "ms"),
        Figure::new(CASE.id(), "slow connections open when the load ended", open_at_end as f64, "connections"),
        Figure::new(CASE.id(), "slow connections closed by alb", s.progress.server_closed as f64, "connections"),
        Figure::new(CASE.id(), format!("slow connection closed after, p50 (header_read {HEADER_READ_S} s)"), s.server_close_s.p50, "s"),
        Figure::new(CASE.id(), "slow connection closed after (max)", s.server_close_s.max, "s"),
    ])
}
