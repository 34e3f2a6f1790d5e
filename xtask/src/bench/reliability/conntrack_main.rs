//! `bench-conntrack`: the helper of `cargo xtask bench reliability --only
//! conntrack` (built as an example of xtask, like `bench-xdp-cost`, so that
//! xtask itself needs no eBPF toolchain). Works on the maps a running
//! `lb-user attach` pinned under DIR (`/sys/fs/bpf/xdplb/<iface>`):
//!
//! - `bench-conntrack fill DIR N`: writes N established TCP flows into the
//!   pinned CONNTRACK map with BPF_MAP_UPDATE_BATCH (lb-user's own batch
//!   writer), spread over every VIP in VIPS and each VIP's active backends
//!   in BACKENDS, as fresh entries (`last_seen` now). Prints
//!   `{"written": N, "seconds": S}`.
//! - `bench-conntrack maps DIR`: prints `{"conntrack_entries": N, "maps":
//!   [{"name", "max_entries", "memlock"}, …]}`: the entries CONNTRACK holds
//!   and each pinned map's kernel memory (`memlock` from the map fd's
//!   fdinfo, in bytes).
//!
//! Client addresses are lab addresses (198.19.0.0/16), so nothing here
//! names a host outside the lab.

use std::{collections::BTreeMap, path::Path, time::Instant};

use anyhow::{bail, Context as _, Result};
use aya::maps::{Array, HashMap, Map, MapData};
use lb_common::{
    lb::{BackendInfo, FlowKey, FlowState, VipInfo, VipKey, BACKEND_ACTIVE, TCP_OPEN},
    map_names,
};

/// Entries per BPF_MAP_UPDATE_BATCH call.
const CHUNK: usize = 65_536;
/// Client ports per client address.
const PORTS_PER_CLIENT: u32 = 50_000;

fn open(dir: &Path, name: &str) -> Result<MapData> {
    let path = dir.join(name);
    MapData::from_pin(&path).with_context(|| format!("opening the pinned map {} (is lb-user attached?)", path.display()))
}

/// The VIPs (address markers left out) with their active backend ids.
fn vips_and_backends(dir: &Path) -> Result<Vec<(VipKey, u32, Vec<u32>)>> {
    let vips = HashMap::<MapData, VipKey, VipInfo>::try_from(Map::from_map_data(open(dir, map_names::VIPS)?)?)?;
    let backends = Array::<MapData, BackendInfo>::try_from(Map::from_map_data(open(dir, map_names::BACKENDS)?)?)?;
    let mut by_vip: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for id in 0..backends.len() {
        let b = backends.get(&id, 0)?;
        if b.flags & BACKEND_ACTIVE != 0 {
            by_vip.entry(u32::from(b.vip_id)).or_default().push(id);
        }
    }
    let mut out = Vec::new();
    for entry in vips.iter() {
        let (key, info) = entry?;
        if key.port == 0 {
            continue;
        }
        let ids = by_vip.remove(&info.vip_id).unwrap_or_default();
        if !ids.is_empty() {
            out.push((key, info.vip_id, ids));
        }
    }
    if out.is_empty() {
        bail!("no VIP with an active backend in {}", dir.display());
    }
    out.sort_by_key(|(_, id, _)| *id);
    Ok(out)
}

fn fill(dir: &Path, n: u32) -> Result<serde_json::Value> {
    let vips = vips_and_backends(dir)?;
    let map = open(dir, map_names::CONNTRACK)?;
    let capacity = map.info()?.max_entries();
    if n > capacity {
        bail!("{n} flows do not fit the CONNTRACK map's {capacity} entries: raise conntrack.max_flows");
    }
    let now = lb_user::dataplane::datapath_now_ns();
    let started = Instant::now();
    let mut written = 0u32;
    while written < n {
        let count = (n - written).min(CHUNK as u32);
        let mut keys = Vec::with_capacity(count as usize);
        let mut values = Vec::with_capacity(count as usize);
        for i in written..written + count {
            let (vip, vip_id, ids) = &vips[i as usize % vips.len()];
            let client = i / PORTS_PER_CLIENT;
            let mut src = [0u8; 16];
            src[..4].copy_from_slice(&[198, 19, (client >> 8) as u8, client as u8]);
            keys.push(FlowKey {
                src,
                dst: vip.addr,
                sport: (1024 + i % PORTS_PER_CLIENT) as u16,
                dport: vip.port,
                protocol: vip.protocol,
                family: vip.family,
                _pad: [0; 2],
            });
            let backend_id = ids[(i as usize / vips.len()) % ids.len()];
            values.push(FlowState { backend_id, vip_id: *vip_id, last_seen_ns: now, tcp_state: TCP_OPEN, _pad: [0; 7] });
        }
        lb_user::dataplane::update_batch(&map, &keys, &values).with_context(|| format!("writing flows {written}..{}", written + count))?;
        written += count;
    }
    Ok(serde_json::json!({ "written": written, "seconds": started.elapsed().as_secs_f64() }))
}

/// `memlock:` of an open BPF fd, from /proc/self/fdinfo.
fn memlock(map: &MapData) -> Result<u64> {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    let path = format!("/proc/self/fdinfo/{}", map.fd().as_fd().as_raw_fd());
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = text.lines().find_map(|l| l.strip_prefix("memlock:")).with_context(|| format!("no memlock in {path}"))?;
    line.trim().parse().with_context(|| format!("memlock {line:?} in {path}"))
}

fn maps(dir: &Path) -> Result<serde_json::Value> {
    let mut out = Vec::new();
    let mut entries = None;
    for &name in map_names::PINNED {
        let map = open(dir, name)?;
        let info = map.info()?;
        out.push(serde_json::json!({ "name": name, "max_entries": info.max_entries(), "memlock": memlock(&map)? }));
        if name == map_names::CONNTRACK {
            let ct = HashMap::<MapData, FlowKey, FlowState>::try_from(Map::from_map_data(map)?)?;
            let mut n = 0u64;
            for key in ct.keys() {
                // A key evicted between two get_next_key calls ends the walk
                // early at worst; the count is a figure, not a check.
                if key.is_err() {
                    break;
                }
                n += 1;
            }
            entries = Some(n);
        }
    }
    Ok(serde_json::json!({ "conntrack_entries": entries, "maps": out }))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bench-conntrack fill DIR N | bench-conntrack maps DIR";
    let out = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["fill", dir, n] => fill(Path::new(dir), n.parse().with_context(|| format!("N {n:?}: not a number; {usage}"))?)?,
        ["maps", dir] => maps(Path::new(dir))?,
        _ => bail!("{usage}"),
    };
    println!("{out}");
    Ok(())
}
