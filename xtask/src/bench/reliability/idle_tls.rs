//! The `idle-tls` case: alb holding `--idle-conns` (10,000) idle TLS
//! connections — handshake completed, then nothing sent — opened by several
//! `tls-clients` processes (the open-files hard limit is per process).
//! Figures: alb's RSS before, with them and at its peak (goal ≤ 100 MiB),
//! the memory per connection, how many stayed open, and the handshake
//! latency of new clients with and without the idle connections (measured
//! in the same run, quiet first).

use std::time::Duration;

use anyhow::{bail, Result};

use super::{alb_lab::AlbLab, clients, poll, say, Case, Ctx, Figure};

const CASE: Case = Case::IdleTls;
/// New idle connections per second over all processes.
const OPEN_RATE: u32 = 1_000;
/// The handshake probe: new clients, each closed after its handshake.
const PROBE_CONNS: u32 = 500;
const PROBE_RATE: u32 = 50;
/// The goal from the reliability issue.
const RSS_GOAL_MIB: f64 = 100.0;

pub fn run(ctx: &Ctx) -> Result<Vec<Figure>> {
    let n = ctx.args.idle_conns;
    // alb must not close them while they are measured: its idle timeout
    // (60 s by default) well above the case's length.
    let mut al = AlbLab::up(ctx, CASE, "timeouts: { idle: 30m }\n")?;
    let base = al.alb_mem()?;
    say(CASE, format!("alb RSS {:.1} MiB; handshake probe without idle connections ({PROBE_CONNS} at {PROBE_RATE}/s)", base.rss_mib()));
    let quiet = al.handshake_probe("probe-quiet", PROBE_CONNS, PROBE_RATE)?;
    say(CASE, format!("quiet handshakes: p50 {:.2} ms, p99 {:.2} ms, {} failed", quiet.handshake_ms.p50, quiet.handshake_ms.p99, quiet.progress.failed));

    let (mut holders, rate) = al.open_idle(n, OPEN_RATE, "idle", 0)?;
    say(CASE, format!("opening {n} idle TLS connections from {} processes at {rate} per second", holders.len()));
    let limit = Duration::from_secs(u64::from(n / rate) + 60);
    let mut last_say = std::time::Instant::now();
    let opened = poll("the idle connections to open", limit, Duration::from_millis(250), || {
        for h in &mut holders {
            h.check_running()?;
        }
        let t = clients::total(&holders);
        if last_say.elapsed() > Duration::from_secs(2) {
            last_say = std::time::Instant::now();
            say(CASE, format!("{} open, {} in handshake, {} failed; alb RSS {:.1} MiB", t.open, t.pending, t.failed, al.alb_mem()?.rss_mib()));
        }
        Ok((t.open + t.failed >= u64::from(n) && t.pending == 0).then_some(t))
    })?;
    if opened.open == 0 {
        bail!("no idle connection opened ({} failed)", opened.failed);
    }
    // RSS settles once the last handshakes' buffers are freed: wait until
    // two reads a second apart agree within 1% (bounded).
    let mut prev = al.alb_mem()?;
    let loaded = poll("alb's RSS to settle", Duration::from_secs(15), Duration::from_secs(1), || {
        let now = al.alb_mem()?;
        let settled = (now.rss_kib as f64 - prev.rss_kib as f64).abs() <= prev.rss_kib as f64 * 0.01;
        prev = now;
        Ok(settled.then_some(now))
    })?;
    say(CASE, format!("{} open: alb RSS {:.1} MiB (peak {:.1}); handshake probe with them", opened.open, loaded.rss_mib(), loaded.hwm_mib()));
    let busy = al.handshake_probe("probe-idle", PROBE_CONNS, PROBE_RATE)?;
    say(
        CASE,
        format!("handshakes with idle connections: p50 {:.2} ms, p99 {:.2} ms, {} failed", busy.handshake_ms.p50, busy.handshake_ms.p99, busy.progress.failed),
    );
    let held = clients::total(&holders);
    let peak = al.alb_mem()?;
    let mut closed_by_alb = 0;
    for h in holders {
        closed_by_alb += h.finish(Duration::from_secs(20))?.progress.server_closed;
    }
    let per_conn_kib = (loaded.rss_kib as f64 - base.rss_kib as f64) / opened.open as f64;
    let nf = |name: &str| format!("{name} with {n} idle TLS connections");
    Ok(vec![
        Figure::new(CASE.id(), nf("alb RSS"), loaded.rss_mib(), "MiB").at_most(RSS_GOAL_MIB),
        Figure::new(CASE.id(), "alb RSS before them", base.rss_mib(), "MiB"),
        Figure::new(CASE.id(), "alb memory per idle connection", per_conn_kib, "KiB"),
        Figure::new(CASE.id(), "alb peak RSS (VmHWM) over the case", peak.hwm_mib(), "MiB"),
        Figure::new(CASE.id(), "idle connections open at the end", held.open as f64, "connections").at_least(f64::from(n)),
        Figure::new(CASE.id(), "idle connections that failed or that alb closed", (opened.failed + closed_by_alb) as f64, "connections").at_most(0.0),
        Figure::new(CASE.id(), "new-client handshake p50, no idle connections", quiet.handshake_ms.p50, "ms"),
        Figure::new(CASE.id(), "new-client handshake p99, no idle connections", quiet.handshake_ms.p99, "ms"),
        Figure::new(CASE.id(), nf("new-client handshake p50"), busy.handshake_ms.p50, "ms"),
        Figure::new(CASE.id(), nf("new-client handshake p99"), busy.handshake_ms.p99, "ms"),
        Figure::new(CASE.id(), "new-client handshake failures", (quiet.progress.failed + busy.progress.failed) as f64, "handshakes").at_most(0.0),
    ])
}
