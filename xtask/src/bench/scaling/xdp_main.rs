//! `bench-scaling-xdp`: the XDP half of `cargo xtask bench scaling` (an
//! example of xtask for the same reason as bench-pps: xtask itself builds
//! without the eBPF toolchain). Prints one JSON object of raw
//! per-repetition figures; xtask's `bench::scaling` summarises.
//!
//! Usage: `bench-scaling-xdp [--quick]`. Per point (a number of backends
//! and of conntrack entries) it loads the balancer in a fresh one-backend
//! lab's lb namespace, configures the backends, fills the CONNTRACK map from
//! userspace with that many established TCP flows (lb-common's FlowKey /
//! FlowState, batch updates) and times an established-flow NAT forward by
//! bench-pps's program-cost method: the pktgen generator as a
//! frame-restoring prologue tail-calling the balancer, plain test runs with
//! `repeat`, minus the prologue alone. The generator cycles over every
//! flow of the table (frame `n` is flow `n % entries`), so the lookups
//! spread over the whole map; `repeat` is at least the entry count.
//!
//! Backends: at most 256 per VIP (MAX_RR_BACKENDS, the config's limit), so
//! 1,024 backends are 4 VIPs × 256; the timed traffic goes to the first
//! VIP and its flows are spread over that VIP's backends. Every point uses
//! the same Maglev table size, the smallest prime ≥ 100 × 1,024.
//!
//! Proof that every timed packet was an established-flow hit: the NAT
//! forward counter grows by `repeat` per timing, and the conntrack map
//! holds exactly the prefilled entries afterwards (a miss would insert).

#[path = "../pktgen_run.rs"]
mod pktgen_run;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{bail, Context as _, Result};
use aya::maps::{HashMap, Map, MapData, ProgramArray};
use lb_common::{
    lb::{self, FlowKey, FlowState, MAX_RR_BACKENDS, TCP_OPEN},
    map_names,
    pktgen::{self, flow_source},
    userspace::select::maglev::{build_table, is_prime, MaglevBackend},
    Stat,
};
use lb_user::{
    dataplane::{backend_info, update_batch, vip_key},
    program::{self, LoadOptions},
};
use xdplb_tests::{
    lab::{addr, Host, Lab},
    netns,
    testrun::{Harness, XDP_PASS, XDP_REDIRECT},
};

use self::pktgen_run::{gen_config, generate, generated, load_xdp, pktgen_object, set_gen};

/// The largest backend count measured; the Maglev size is chosen for it.
const MAX_BACKENDS: u32 = 1024;
/// Entries per BPF_MAP_UPDATE_BATCH call.
const CHUNK: usize = 65_536;

/// The smallest prime ≥ 100 × `backends` (Maglev's rule of thumb for an
/// even spread).
fn maglev_size(backends: u32) -> u32 {
    (100 * backends..).find(|n| is_prime(*n)).expect("a prime exists")
}

struct Plan {
    reps: u32,
    backends: Vec<u32>,
    entries: Vec<u32>,
    /// Conntrack entries of the backends dimension, backends of the entries one.
    fixed_entries: u32,
    fixed_backends: u32,
    /// Least repetitions per timing (raised to the entry count).
    min_repeat: u32,
}

fn map_data<'a>(ebpf: &'a aya::Ebpf, name: &str) -> Result<&'a MapData> {
    match ebpf.map(name).with_context(|| format!("no map {name}"))? {
        Map::HashMap(m) | Map::LruHashMap(m) => Ok(m),
        _ => bail!("map {name} is not a hash map"),
    }
}

fn vip_addr(v: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 100, 1 + v as u8)), 80)
}

/// VIPs of at most 256 backends holding `backends` in all; backend ids
/// `0..backends`, all on backend host 1 (distinct ports). Returns VIP 0's
/// backend ids.
fn configure(xdp: &mut Harness, backends: u32, size: u32, lc_index: u32, lbe_index: u32) -> Result<Vec<u32>> {
    let per_vip = MAX_RR_BACKENDS.min(backends);
    let vips = backends.div_ceil(per_vip);
    let mut dp = xdp.dataplane();
    dp.add_tx_port(lc_index)?;
    dp.add_tx_port(lbe_index)?;
    let mut first = Vec::new();
    for v in 0..vips {
        let ids: Vec<u32> = (v * per_vip..((v + 1) * per_vip).min(backends)).collect();
        let mut table_in = Vec::new();
        for &id in &ids {
            let be = SocketAddr::new(IpAddr::V4(addr::backend_v4(1)), 10_000 + id as u16);
            let mut info = backend_info(be.ip(), be.port());
            info.vip_id = v as u16;
            dp.set_backend(id, &info)?;
            table_in.push(MaglevBackend { id, key: be.to_string(), weight: 1 });
        }
        let table = build_table(&table_in, size, 7).map_err(|e| anyhow::anyhow!("Maglev table: {e:?}"))?;
        let info = lb::VipInfo { vip_id: v, algorithm: lb::ALG_MAGLEV, mode: lb::MODE_NAT, hash_seed: 7, ..Default::default() };
        let vip = vip_addr(v);
        dp.set_vip(&vip_key(vip.ip(), vip.port(), 6), &info, &table, &ids)?;
        if v == 0 {
            first = ids;
        }
    }
    Ok(first)
}

/// Writes flows `0..entries` of the generator towards VIP 0 as established
/// flows spread over `ids`.
fn prefill(xdp: &Harness, entries: u32, ids: &[u32]) -> Result<()> {
    let map = map_data(xdp, map_names::CONNTRACK)?;
    let vip = vip_addr(0);
    let dst = vip_key(vip.ip(), 0, 6);
    let now = lb_user::dataplane::datapath_now_ns();
    let mut k = 0u32;
    while k < entries {
        let end = (k + CHUNK as u32).min(entries);
        let mut keys = Vec::with_capacity((end - k) as usize);
        let mut values = Vec::with_capacity((end - k) as usize);
        for i in k..end {
            let (host, port) = flow_source(u64::from(i));
            let src = vip_key(IpAddr::V4(Ipv4Addr::new(198, 18, 0, host)), 0, 6).addr;
            keys.push(FlowKey { src, dst: dst.addr, sport: port, dport: vip.port(), protocol: 6, family: dst.family, _pad: [0; 2] });
            let backend_id = ids[i as usize % ids.len()];
            values.push(FlowState { backend_id, vip_id: 0, last_seen_ns: now, tcp_state: TCP_OPEN, ..Default::default() });
        }
        update_batch(map, &keys, &values).with_context(|| format!("writing flows {k}..{end}"))?;
        k = end;
    }
    Ok(())
}

fn conntrack_entries(xdp: &Harness) -> Result<u64> {
    let map = match xdp.map(map_names::CONNTRACK).context("no CONNTRACK")? {
        m @ (Map::HashMap(_) | Map::LruHashMap(_)) => m,
        _ => bail!("CONNTRACK is not a hash map"),
    };
    let ct = HashMap::<&MapData, FlowKey, FlowState>::try_from(map)?;
    Ok(ct.keys().map_while(Result::ok).count() as u64)
}

/// The conntrack capacity for `entries` flows, with the room lb-user's
/// operators give an LRU map (`bench reliability`'s conntrack case does
/// the same): 2^20 for a million.
fn max_flows(entries: u32) -> u32 {
    (u64::from(entries) * 1_048_576).div_ceil(1_000_000).next_multiple_of(1024).clamp(65_536, 16_777_216) as u32
}

/// Timings of one point, `plan.reps` times.
fn point(lab: &Lab, backends: u32, entries: u32, plan: &Plan, size: u32) -> Result<Vec<serde_json::Value>> {
    let lb_ns = lab.ns(Host::Lb);
    let lc = lab.lb_client_iface();
    let lc_index = lab.ifindex(Host::Lb, &lc)?;
    let lbe_index = lab.ifindex(Host::Lb, &lab.lb_backend_iface())?;
    let (client_mac, lc_mac) = (lab.mac(Host::Client, &lab.client_iface())?, lab.mac(Host::Lb, &lc)?);
    let cap = max_flows(entries);
    let t0 = std::time::Instant::now();
    let (xdp, ids) = netns::run_in(&lb_ns, move || {
        let mut xdp = Harness::load_with(&LoadOptions { maglev_size: size, max_flows: cap, ..Default::default() })?;
        let ids = configure(&mut xdp, backends, size, lc_index, lbe_index)?;
        Ok((xdp, ids))
    })?;
    prefill(&xdp, entries, &ids)?;
    let mut xdp = xdp;
    let setup_s = t0.elapsed().as_secs_f64();
    let lb_fd = program::xdp_program(&mut xdp)?.fd()?.try_clone()?;
    let mut gen = pktgen_object(&lb_ns)?;
    let _ = load_xdp(&mut gen, pktgen::GENERATOR)?;
    set_gen(&mut gen, gen_config(lc_mac, client_mac, vip_addr(0), false, u64::from(entries), XDP_PASS)?)?;
    let repeat = plan.min_repeat.max(entries);
    let mut out = Vec::new();
    for rep in 0..plan.reps {
        let mut figures = serde_json::Map::new();
        for (name, next) in [("prologue", None), ("nat_forward", Some(&lb_fd))] {
            {
                let mut slots = ProgramArray::try_from(gen.map_mut(pktgen::GEN_NEXT).context("GEN_NEXT")?)?;
                match next {
                    Some(fd) => slots.set(0, fd, 0)?,
                    None => {
                        let _ = slots.clear_index(&0);
                    }
                }
            }
            let (before, g0) = (xdp.stat(Stat::ForwardNat).packets, generated(&gen)?);
            let (g, ns_per, verdict) = generate(&lb_ns, gen, lc_index, repeat, false)?;
            gen = g;
            if generated(&gen)? - g0 != u64::from(repeat) {
                bail!("{backends} backends, {entries} entries, {name}: the generator did not run {repeat} times");
            }
            let forwarded = xdp.stat(Stat::ForwardNat).packets - before;
            let want = if next.is_some() { XDP_REDIRECT } else { XDP_PASS };
            if verdict != want {
                bail!("{backends} backends, {entries} entries, {name}: verdict {verdict}, expected {want}");
            }
            if next.is_some() && forwarded != u64::from(repeat) {
                bail!("{backends} backends, {entries} entries: {forwarded} NAT forwards counted for {repeat} repetitions");
            }
            figures.insert(format!("{name}_ns"), serde_json::json!(ns_per));
        }
        figures.insert("rep".into(), serde_json::json!(rep));
        out.push(serde_json::Value::Object(figures));
    }
    let held = conntrack_entries(&xdp)?;
    if held != u64::from(entries) {
        bail!("{backends} backends: the conntrack map holds {held} entries after the timings, {entries} were written (a miss inserts, an eviction removes)");
    }
    for f in &mut out {
        let o = f.as_object_mut().expect("object");
        for (k, v) in [
            ("backends", serde_json::json!(backends)),
            ("entries", serde_json::json!(entries)),
            ("max_flows", serde_json::json!(cap)),
            ("repeat", serde_json::json!(repeat)),
            ("setup_s", serde_json::json!(setup_s)),
        ] {
            o.insert(k.into(), v);
        }
    }
    Ok(out)
}

fn main() -> Result<()> {
    let quick = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--quick") => true,
        Some(other) => bail!("unknown argument {other:?}; usage: bench-scaling-xdp [--quick]"),
    };
    let plan = if quick {
        Plan { reps: 2, backends: vec![1, 64], entries: vec![1_000, 100_000], fixed_entries: 1_000, fixed_backends: 64, min_repeat: 100_000 }
    } else {
        Plan { reps: 3, backends: vec![1, 64, 1024], entries: vec![1_000, 100_000, 1_000_000], fixed_entries: 1_000, fixed_backends: 64, min_repeat: 1_000_000 }
    };
    let size = maglev_size(MAX_BACKENDS);
    let lab = Lab::up_unique("xk", 1)?;
    let mut points = Vec::new();
    let mut run = |dimension: &str, backends: u32, entries: u32| -> Result<()> {
        let rows = point(&lab, backends, entries, &plan, size)?;
        let ns: Vec<String> =
            rows.iter().map(|r| format!("{:.0}", r["nat_forward_ns"].as_f64().unwrap_or(0.0) - r["prologue_ns"].as_f64().unwrap_or(0.0))).collect();
        eprintln!("[scaling xdp] {backends:>5} backends {entries:>8} conntrack entries: balancer {} ns/packet", ns.join(", "));
        for mut r in rows {
            r["dimension"] = serde_json::json!(dimension);
            points.push(r);
        }
        Ok(())
    };
    for &b in &plan.backends {
        run("backends", b, plan.fixed_entries)?;
    }
    for &e in &plan.entries {
        run("conntrack", plan.fixed_backends, e)?;
    }
    println!("{}", serde_json::json!({ "maglev_size": size, "reps": plan.reps, "rows": points }));
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn maglev_size_is_the_prime_above_a_hundred_per_backend() {
        assert_eq!(super::maglev_size(1024), 102_407);
        assert_eq!(super::max_flows(1_000_000), 1_048_576);
    }
}
