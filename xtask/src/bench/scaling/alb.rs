//! The alb part: alb (bench reliability's alb lab: one backend, release
//! build, default runtime) holding 1, 100 and 10,000 idle keep-alive TLS
//! connections (`--quick`: 1 and 100), opened by `tls-clients` processes of
//! at most 2,500 connections each (the open-files limit is per process),
//! while wrk sends keep-alive HTTPS requests through it with the bench's
//! usual 64 connections. Per level: req/s, p99, alb's CPU per request
//! (its /proc ticks over the run / requests) and alb's RSS. Levels grow in
//! place (the connections of one level stay open for the next).

use std::{path::Path, time::Duration};

use anyhow::{bail, Result};
use serde_json::{json, Value};
use xdplb_tests::lab::Host;

use super::say;
use crate::bench::{
    cpu,
    load::{self, LoadSpec, Tool},
    pps::spread,
    reliability::{alb_lab::AlbLab, clients, Case, Ctx, ReliabilityArgs},
};

/// New idle connections per second over all processes.
const OPEN_RATE: u32 = 2_000;
/// wrk's connections (the default of `cargo xtask bench --conns`).
const CONNS: u32 = 64;

/// Opens `n` more idle connections in new `tls-clients` processes and
/// waits until all of them are open.
fn open_more(al: &mut AlbLab, holders: &mut Vec<clients::Clients>, n: u32) -> Result<()> {
    let first = holders.len();
    let (more, rate) = al.open_idle(n, OPEN_RATE, "scaling-idle", first)?;
    holders.extend(more);
    let want = u64::from(n);
    let before: u64 = holders[..first].iter().map(|h| h.progress().open).sum();
    let limit = Duration::from_secs(u64::from(n / rate) + 60);
    crate::bench::reliability::poll("the idle connections to open", limit, Duration::from_millis(250), || {
        for h in holders.iter_mut() {
            h.check_running()?;
        }
        let t = clients::total(&holders[first..]);
        if t.failed > 0 {
            bail!("{} idle connections failed to open", t.failed);
        }
        Ok((t.open >= want && t.pending == 0).then_some(()))
    })?;
    let now: u64 = holders[..first].iter().map(|h| h.progress().open).sum();
    if now < before {
        bail!("{} earlier idle connections closed while more were opened", before - now);
    }
    Ok(())
}

pub fn measure(bin_dir: &Path, out: &Path, quick: bool) -> Result<Value> {
    let (levels, reps, secs): (&[u32], u32, u64) = if quick { (&[1, 100], 2, 2) } else { (&[1, 100, 10_000], 3, 5) };
    let top = *levels.last().expect("levels");
    let args =
        ReliabilityArgs { only: Vec::new(), soak_duration: 0, out: None, bin_dir: Some(bin_dir.to_path_buf()), idle_conns: top, slow_conns: 0, flows: 0 };
    let ctx = Ctx { args: &args, out: out.join("alb"), bin_dir: bin_dir.to_path_buf() };
    // alb must not close the idle connections while they are measured.
    let mut al = AlbLab::up(&ctx, Case::IdleTls, "timeouts: { idle: 30m }\n")?;
    let client_ns = al.lab.ns(Host::Client);
    let url = format!("https://{}/", al.addr);
    let k6 = crate::setup::k6_path();
    let scripts = crate::util::workspace_root().join("bench/k6");
    let us_tick = cpu::us_per_tick();
    let mut holders = Vec::new();
    let mut open = 0;
    let mut out_levels = Vec::new();
    for &level in levels {
        open_more(&mut al, &mut holders, level - open)?;
        open = level;
        let (mut rps, mut p99, mut lb_us, mut errors) = (Vec::new(), Vec::new(), Vec::new(), 0);
        for rep in 0..reps {
            let spec = LoadSpec { url: url.clone(), conns: CONNS, duration: Duration::from_secs(secs), new_conn: false, client_cert: None, pace_ms: None };
            let p0 = cpu::Processes::read();
            let running = load::start(Tool::Wrk, &client_ns, &spec, &k6, &scripts, &al.work)?;
            let r = running.finish()?;
            let p1 = cpu::Processes::read();
            if r.requests == 0 {
                bail!("{level} open connections: no request completed");
            }
            let us = p1.ticks_since(&p0, &[al.alb_pid]) as f64 * us_tick / r.requests as f64;
            say("alb", format!("{level:>6} open, rep {}: {:.0} req/s  p99 {:.2} ms  alb {us:.1} µs/request  err {}", rep + 1, r.rps, r.p99_ms, r.errors));
            rps.push(r.rps);
            p99.push(r.p99_ms);
            lb_us.push(us);
            errors += r.errors;
        }
        let held = clients::total(&holders);
        let mem = al.alb_mem()?;
        out_levels.push(json!({
            "open": level, "held": held.open, "conns": CONNS, "seconds": secs,
            "rps": spread(&rps), "p99_ms": spread(&p99), "lb_us": spread(&lb_us), "errors": errors, "alb_rss_mib": mem.rss_mib(),
        }));
    }
    for h in holders {
        h.finish(Duration::from_secs(20))?;
    }
    Ok(json!({ "levels": out_levels, "reps": reps }))
}
