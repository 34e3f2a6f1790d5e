//! The reload part: `lb-user attach` in a lab's lb namespace with 1,024
//! backends (4 NAT VIPs × 256, the most a VIP holds; `--quick`: one VIP of
//! 64) and a Maglev size of the smallest prime ≥ 100 × 1,024. Each reload
//! rewrites the config file and sends SIGHUP at once (lb-user reloads on
//! either; the file watcher only on its next tick), and is timed from the
//! write to lb-user's first "reload applied" line, which it logs after the
//! new maps are written. Two kinds: one backend of the first VIP removed
//! or put back (putting it back reuses its id, which first deletes the
//! conntrack entries still naming it), and every backend's weight changed
//! (every VIP's Maglev table rebuilt and rewritten). Replacing every
//! backend by another at once cannot be done with 1,024: the removed ones
//! keep their ids until the new tables are in place. Then lb-user's RSS and
//! the kernel memory of the BPF maps it holds.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};
use xdplb_tests::{
    lab::{
        addr,
        config::{LbConfig, Vip},
        Host, Lab,
    },
    lbuser::LbUser,
};

use super::say;
use crate::bench::{pps::spread, reliability::proc::Mem};

/// The Maglev size for 1,024 backends (as in bench-scaling-xdp).
pub const MAGLEV_SIZE: u32 = 102_407;
/// How long one reload may take before the run fails.
const RELOAD_LIMIT: Duration = Duration::from_secs(60);

/// `vips` VIPs × `per_vip` backends of weight `weight` on ports
/// 10,000 + i, the first VIP's backend 0 left out when `drop_one`.
/// Backends need not exist: without health checks they count as up.
fn config(lab: &Lab, vips: u8, per_vip: u16, weight: u32, drop_one: bool) -> LbConfig {
    let mut c = LbConfig::new(lab).maglev(MAGLEV_SIZE, None);
    for v in 1..=vips {
        let mut vip = Vip::new(&format!("sc{v}"), IpAddr::V4(Ipv4Addr::new(198, 18, 100, v)), 80);
        for p in 0..per_vip {
            if !(drop_one && v == 1 && p == 0) {
                vip = vip.backend_weighted(SocketAddr::new(IpAddr::V4(addr::backend_v4(v)), 10_000 + p), weight);
            }
        }
        c = c.vip(vip);
    }
    c
}

/// Sum of `memlock:` over the BPF map fds of process `pid` (bytes).
fn map_memlock(pid: u32) -> Result<u64> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut total = 0;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(text) = std::fs::read_to_string(entry?.path()) else { continue };
        if !text.lines().any(|l| l.starts_with("map_type:")) {
            continue;
        }
        total += parse_memlock(&text).with_context(|| format!("no memlock in a map fd of {dir}"))?;
    }
    Ok(total)
}

fn parse_memlock(fdinfo: &str) -> Option<u64> {
    fdinfo.lines().find_map(|l| l.strip_prefix("memlock:")).and_then(|v| v.trim().parse().ok())
}

pub fn measure(quick: bool) -> Result<Value> {
    let (vips, per_vip, reps) = if quick { (1u8, 64u16, 2) } else { (4, 256, 5) };
    let backends = u32::from(vips) * u32::from(per_vip);
    let lab = Lab::up_unique("xq", 1)?;
    let (ns, iface) = (lab.ns(Host::Lb), lab.lb_client_iface());
    let file = config(&lab, vips, per_vip, 1, false).write()?;
    let t0 = Instant::now();
    let lb = LbUser::attach_config(&ns, &iface, file.path())?;
    let startup_s = t0.elapsed().as_secs_f64();
    let pid = lb.pid().context("lb-user has no pid")?;
    say("reload", format!("lb-user attached with {backends} backends (Maglev size {MAGLEV_SIZE}) in {startup_s:.2} s"));
    let reload = |yaml: String| -> Result<f64> {
        let skip = lb.log_len();
        let t0 = Instant::now();
        file.replace(&yaml)?;
        lb.signal(libc::SIGHUP);
        let (_, at, line) = lb.wait_for_any_log_at(&["reload applied", "reload refused"], skip, RELOAD_LIMIT)?;
        if line.contains("reload refused") {
            bail!("lb-user refused the reload: {line}");
        }
        // The SIGHUP reload always runs (after the watcher's, if that came
        // first): wait for it so the next timing starts from a quiet lb-user.
        let (_, _, line) = lb.wait_for_any_log_at(&["reload applied (SIGHUP)", "reload refused (SIGHUP)"], skip, RELOAD_LIMIT)?;
        if line.contains("reload refused") {
            bail!("lb-user refused the reload: {line}");
        }
        Ok(at.duration_since(t0).as_secs_f64() * 1000.0)
    };
    let (mut one, mut all) = (Vec::new(), Vec::new());
    let mut weight = 1;
    for rep in 0..reps {
        // Remove one backend, then put it back: two one-backend reloads.
        one.push(reload(config(&lab, vips, per_vip, weight, true).yaml())?);
        one.push(reload(config(&lab, vips, per_vip, weight, false).yaml())?);
        weight = if weight == 1 { 2 } else { 1 };
        all.push(reload(config(&lab, vips, per_vip, weight, false).yaml())?);
        say(
            "reload",
            format!("rep {}: one backend {:.1} / {:.1} ms, every weight changed {:.1} ms", rep + 1, one[one.len() - 2], one[one.len() - 1], all[all.len() - 1]),
        );
    }
    let mem = Mem::of(pid)?;
    let maps = map_memlock(pid)?;
    let status = lb.stop()?;
    if !status.success() {
        bail!("lb-user attach exited with {status}");
    }
    drop(lab);
    Ok(json!({
        "backends": backends, "vips": vips, "maglev_size": MAGLEV_SIZE, "startup_s": startup_s,
        "one_backend_ms": spread(&one), "reweight_all_ms": spread(&all),
        "lb_user_rss_mib": mem.rss_mib(), "lb_user_hwm_mib": mem.hwm_mib(), "bpf_map_mib": maps as f64 / (1024.0 * 1024.0),
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn memlock_is_read_from_a_map_fdinfo() {
        assert_eq!(super::parse_memlock("pos:\t0\nmap_type:\t1\nmemlock:\t8392704\n"), Some(8_392_704));
        assert_eq!(super::parse_memlock("pos:\t0\n"), None);
        assert!(lb_common::userspace::select::maglev::is_prime(super::MAGLEV_SIZE) && super::MAGLEV_SIZE >= 102_400);
    }
}
