//! The `conntrack` case: `lb-user attach` in a lab's lb namespace with
//! 1,024 backends (4 NAT VIPs × 256, the most the map ABI holds:
//! `MAX_BACKENDS`) and a conntrack map sized by `conntrack.max_flows` for
//! `--flows` (1,000,000) flows, which `examples/bench-conntrack` writes
//! into the pinned map with batch updates. Figures: startup time, fill
//! time, entries held, reload time with the full table (SIGHUP after a
//! config change that removes one backend from every VIP, so every Maglev
//! table is rebuilt; timed to lb-user's "reload applied" log line), a
//! restart that adopts the pinned maps, lb-user's RSS and the BPF maps'
//! kernel memory.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use xdplb_tests::{
    lab::{
        addr,
        config::{LbConfig, Vip},
        Host, Lab,
    },
    lbuser::{pin_dir, LbUser},
};

use super::{proc::Mem, say, Case, Ctx, Figure};

const CASE: Case = Case::Conntrack;
const VIPS: u8 = 4;
const BACKENDS_PER_VIP: u16 = 256;
/// Reloads measured (each removes one more backend from every VIP).
const RELOADS: u16 = 5;

/// The config with the first `removed` backends of every VIP left out.
/// Backends need not exist: without health checks they count as up.
fn config(lab: &Lab, max_flows: u32, removed: u16) -> LbConfig {
    let mut c = LbConfig::new(lab).extra(&format!("conntrack: {{ max_flows: {max_flows} }}"));
    for v in 1..=VIPS {
        let mut vip = Vip::new(&format!("ct{v}"), IpAddr::V4(Ipv4Addr::new(198, 18, 100, v)), 80);
        for p in removed..BACKENDS_PER_VIP {
            vip = vip.backend(SocketAddr::new(IpAddr::V4(addr::backend_v4(v)), 10_000 + p));
        }
        c = c.vip(vip);
    }
    c
}

/// Runs `examples/bench-conntrack args…` and parses its JSON line.
fn helper(ctx: &Ctx, args: &[&str]) -> Result<serde_json::Value> {
    let bin = ctx.bin("examples/bench-conntrack")?;
    let out = std::process::Command::new(&bin).args(args).output().with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!("bench-conntrack {args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).with_context(|| format!("parsing bench-conntrack output {text:?}"))
}

/// BPF map memory from `bench-conntrack maps`: (total, named map) in MiB.
fn map_mib(maps: &serde_json::Value, name: Option<&str>) -> f64 {
    let list = maps["maps"].as_array().map(Vec::as_slice).unwrap_or_default();
    let bytes: u64 = list.iter().filter(|m| name.is_none_or(|n| m["name"] == n)).map(|m| m["memlock"].as_u64().unwrap_or(0)).sum();
    bytes as f64 / (1024.0 * 1024.0)
}

fn entries(maps: &serde_json::Value) -> f64 {
    maps["conntrack_entries"].as_u64().unwrap_or(0) as f64
}

pub fn run(ctx: &Ctx) -> Result<Vec<Figure>> {
    let flows = ctx.args.flows;
    // The default conntrack.max_flows is 65,536; an operator expecting a
    // million flows raises it, with some room (2^20 for a million): an LRU
    // map may evict before it is completely full.
    let max_flows = (u64::from(flows) * 1_048_576).div_ceil(1_000_000).next_multiple_of(1024).clamp(1024, 16_777_216) as u32;
    let lab = Lab::up_unique("xr", 1)?;
    let (ns, iface) = (lab.ns(Host::Lb), lab.lb_client_iface());
    let pins = pin_dir(&iface).display().to_string();
    say(CASE, format!("lab {} up; lb-user attach with {} VIPs × {BACKENDS_PER_VIP} backends, conntrack.max_flows {max_flows}", lab.name(), VIPS));
    let file = config(&lab, max_flows, 0).write()?;
    let t0 = Instant::now();
    let lb = LbUser::attach_config(&ns, &iface, file.path())?;
    let startup = t0.elapsed();
    let pid = lb.pid().context("lb-user has no pid")?;
    let empty = helper(ctx, &["maps", &pins])?;
    say(CASE, format!("attached in {:.2} s; BPF maps {:.1} MiB; writing {flows} flows", startup.as_secs_f64(), map_mib(&empty, None)));
    let fill = helper(ctx, &["fill", &pins, &flows.to_string()])?;
    let fill_s = fill["seconds"].as_f64().unwrap_or(0.0);
    let full = helper(ctx, &["maps", &pins])?;
    say(CASE, format!("{} flows written in {fill_s:.2} s; the map holds {}", fill["written"], entries(&full)));

    let mut reloads = Vec::new();
    for k in 1..=RELOADS {
        super::check_stop()?;
        file.replace(&config(&lab, max_flows, k).yaml())?;
        let skip = lb.log_len();
        let t0 = Instant::now();
        lb.signal(libc::SIGHUP);
        // A reload the file watcher started first says "file changed": the
        // same work, so either line ends the measurement.
        let (_, at) = lb.wait_for_log_at("reload applied", skip, Duration::from_secs(60))?;
        reloads.push(at.duration_since(t0).as_secs_f64() * 1000.0);
    }
    let mut sorted = reloads.clone();
    sorted.sort_by(f64::total_cmp);
    say(CASE, format!("reloads with {} flows: {:?} ms", entries(&full), reloads.iter().map(|r| format!("{r:.1}")).collect::<Vec<_>>()));
    let mem = Mem::of(pid)?;
    let after = helper(ctx, &["maps", &pins])?;

    say(CASE, "restart: SIGKILL, then a new lb-user adopts the pinned maps");
    lb.kill9();
    let t0 = Instant::now();
    let lb = LbUser::attach_config(&ns, &iface, file.path())?;
    let restart = t0.elapsed();
    let adopted = helper(ctx, &["maps", &pins])?;
    let restarted_mem = Mem::of(lb.pid().context("lb-user has no pid")?)?;
    let status = lb.stop()?;
    if !status.success() {
        bail!("lb-user attach exited with {status}");
    }
    drop(lab);

    let nb = u32::from(VIPS) * u32::from(BACKENDS_PER_VIP);
    let f = |name: String, v: f64, unit: &'static str| Figure::new(CASE.id(), name, v, unit);
    Ok(vec![
        f(format!("lb-user attach (startup) with {nb} backends"), startup.as_secs_f64(), "s"),
        f("conntrack map capacity (conntrack.max_flows)".into(), f64::from(max_flows), "entries"),
        f(format!("time to write {flows} flows (batch updates)"), fill_s, "s"),
        f("conntrack entries after the fill".into(), entries(&full), "entries").at_least(f64::from(flows)),
        f(format!("reload with {} flows, p50 of {RELOADS} (every VIP's table rebuilt)", entries(&full)), sorted[sorted.len() / 2], "ms"),
        f(format!("reload with {} flows, max of {RELOADS}", entries(&full)), sorted[sorted.len() - 1], "ms"),
        f(format!("lb-user RSS with {nb} backends and a full conntrack"), mem.rss_mib(), "MiB"),
        f("BPF maps' kernel memory (memlock), all pinned maps".into(), map_mib(&after, None), "MiB"),
        f("CONNTRACK memlock, empty".into(), map_mib(&empty, Some("CONNTRACK")), "MiB"),
        f("CONNTRACK memlock, full".into(), map_mib(&full, Some("CONNTRACK")), "MiB"),
        f("REVERSE_NAT memlock".into(), map_mib(&after, Some("REVERSE_NAT")), "MiB"),
        f("MAGLEV memlock".into(), map_mib(&after, Some("MAGLEV")), "MiB"),
        f("restart adopting the pinned maps (SIGKILL, new lb-user attached)".into(), restart.as_secs_f64(), "s"),
        f("conntrack entries after the restart".into(), entries(&adopted), "entries").at_least(f64::from(flows)),
        f("lb-user RSS after the restart".into(), restarted_mem.rss_mib(), "MiB"),
    ])
}
