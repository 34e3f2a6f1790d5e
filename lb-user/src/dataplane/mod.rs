//! Typed writes into the balancer's maps of a loaded program.
//!
//! Table updates are atomic from the data path's point of view: a VIP's
//! Maglev and round-robin tables are double-buffered; the inactive half is
//! written first and the VIP entry, which names the active half, is replaced
//! last in one map update.

mod batch;

use std::{collections::BTreeMap, net::IpAddr};

use anyhow::{bail, Context as _, Result};
use aya::{
    maps::{lpm_trie::Key, Array, DevMapHash, HashMap, LpmTrie, MapData},
    Ebpf,
};
use ipnet::IpNet;

use batch::write_slots;
pub use batch::{read_slots, update_batch};
use lb_common::userspace::select::{addr16, fingerprint, TableFingerprint};
use lb_common::{
    lb::{
        reply_source_bit, tcp_closed, BackendInfo, FlowKey, FlowState, GlobalConfig, VipInfo, VipKey, VipSlot, BACKEND_ACTIVE, BACKEND_HEALTHY, MAX_BACKENDS,
        MAX_RR_BACKENDS, MAX_VIPS, NO_BACKEND,
    },
    map_names as names,
};

/// The map key of a VIP.
pub fn vip_key(addr: IpAddr, port: u16, protocol: u8) -> VipKey {
    let (addr, family) = addr16(addr);
    VipKey { addr, port, protocol, family }
}

/// A backend entry for the BACKENDS array: existing and taking new flows
/// (`BACKEND_HEALTHY`); clear the flag for one that is down or leaving.
pub fn backend_info(addr: IpAddr, port: u16) -> BackendInfo {
    let (addr, family) = addr16(addr);
    BackendInfo { addr, port, family, flags: BACKEND_ACTIVE | BACKEND_HEALTHY, mac: [0; 6], vip_id: 0 }
}

/// The data path's clock in ns: CLOCK_MONOTONIC_COARSE, what the XDP
/// program reads with `bpf_ktime_get_coarse_ns` and stamps conntrack,
/// reverse-NAT entries and next hops with. Compare map timestamps with this:
/// the fine CLOCK_MONOTONIC runs up to a tick ahead of it.
pub fn datapath_now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer; CLOCK_MONOTONIC_COARSE exists on every
    // kernel this program loads on (2.6.32+).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Writer over the maps of one loaded program.
pub struct Dataplane<'a> {
    ebpf: &'a mut Ebpf,
}

fn map_mut<'e>(ebpf: &'e mut Ebpf, name: &str) -> Result<&'e mut aya::maps::Map> {
    ebpf.map_mut(name).with_context(|| format!("eBPF object has no map {name}"))
}

const IPPROTO_TCP: u8 = 6;

/// How long a closed TCP flow (both FINs, or a RST, seen; `lb::tcp_closed`)
/// still counts as live after its last packet: its last ACKs and
/// retransmits, instead of the idle timeout. A half-closed one (one FIN)
/// is open for drains: the other direction may carry data after any pause.
pub const CLOSING_GRACE_NS: u64 = 5_000_000_000;

/// Whether a conntrack entry is a live flow for drains at `now_ns`: younger
/// than its idle timeout, and for TCP not closed in both directions more
/// than [`CLOSING_GRACE_NS`] ago.
pub fn flow_is_live(state: &FlowState, tcp: bool, timeout_s: u32, now_ns: u64) -> bool {
    let idle = now_ns.saturating_sub(state.last_seen_ns);
    let fresh = idle < u64::from(timeout_s) * 1_000_000_000;
    fresh && !(tcp && tcp_closed(state.tcp_state) && idle >= CLOSING_GRACE_NS)
}

impl<'a> Dataplane<'a> {
    pub fn new(ebpf: &'a mut Ebpf) -> Dataplane<'a> {
        Dataplane { ebpf }
    }

    pub fn global(&mut self) -> Result<GlobalConfig> {
        let array = Array::<&MapData, GlobalConfig>::try_from(self.ebpf.map(names::CONFIG).context("no CONFIG map")?)?;
        Ok(array.get(&0, 0)?)
    }

    pub fn set_global(&mut self, cfg: &GlobalConfig) -> Result<()> {
        let mut array = Array::<&mut MapData, GlobalConfig>::try_from(map_mut(self.ebpf, names::CONFIG)?)?;
        array.set(0, cfg, 0).context("writing CONFIG")
    }

    /// Writes backend `id` (a removed backend is written with flags 0),
    /// after setting its bit in the reply-source filter: its replies must be
    /// looked up from its first flow on.
    pub fn set_backend(&mut self, id: u32, info: &BackendInfo) -> Result<()> {
        if id >= MAX_BACKENDS {
            bail!("backend id {id} out of range (max {MAX_BACKENDS})");
        }
        self.mark_reply_source(info)?;
        let mut array = Array::<&mut MapData, BackendInfo>::try_from(map_mut(self.ebpf, names::BACKENDS)?)?;
        array.set(id, info, 0).with_context(|| format!("writing backend {id}"))
    }

    /// Sets the `REPLY_SOURCES` bit of a backend's address:port. Bits are
    /// never cleared: a removed backend's replies of flows still open need
    /// it, and a stale bit costs only a `REVERSE_NAT` miss for the client
    /// sources that share it.
    fn mark_reply_source(&mut self, info: &BackendInfo) -> Result<()> {
        if info.family == 0 {
            return Ok(());
        }
        let (word, mask) = reply_source_bit(&info.addr, info.family, info.port);
        let mut array = Array::<&mut MapData, u64>::try_from(map_mut(self.ebpf, names::REPLY_SOURCES)?)?;
        let bits = array.get(&word, 0).context("reading REPLY_SOURCES")?;
        if bits & mask == 0 {
            array.set(word, bits | mask, 0).context("writing REPLY_SOURCES")?;
        }
        Ok(())
    }

    /// Sets the reply-source bit of every backend in `BACKENDS`: for pins
    /// adopted from an lb-user without `REPLY_SOURCES`, whose flows' replies
    /// would otherwise go untranslated until their backend is written again.
    pub fn mark_reply_sources_of_backends(&mut self) -> Result<()> {
        let backends: Vec<BackendInfo> = {
            let array = Array::<&MapData, BackendInfo>::try_from(self.ebpf.map(names::BACKENDS).context("no BACKENDS map")?)?;
            (0..MAX_BACKENDS).map(|id| array.get(&id, 0).with_context(|| format!("reading backend {id}"))).collect::<Result<_>>()?
        };
        backends.iter().try_for_each(|info| self.mark_reply_source(info))
    }

    /// Installs or updates a VIP with its Maglev table (`maglev_size` slots
    /// of backend ids) and round-robin list, flipping to the other table half.
    pub fn set_vip(&mut self, key: &VipKey, info: &VipInfo, maglev: &[u32], rr: &[u32]) -> Result<()> {
        self.write_vip(key, info, maglev, rr, None)
    }

    /// [`Dataplane::set_vip`], and before the flip reads the written half
    /// back and compares its fingerprint (through the BACKENDS entries, so
    /// slot → backend address as the data path will resolve it) with
    /// `expected`, computed from the config. On a mismatch the VIP is not
    /// flipped (the previous table stays live) and the error says so.
    pub fn set_vip_checked(&mut self, key: &VipKey, info: &VipInfo, maglev: &[u32], rr: &[u32], expected: TableFingerprint) -> Result<()> {
        self.write_vip(key, info, maglev, rr, Some(expected))
    }

    fn write_vip(&mut self, key: &VipKey, info: &VipInfo, maglev: &[u32], rr: &[u32], expected: Option<TableFingerprint>) -> Result<()> {
        let cfg = self.global()?;
        if info.vip_id >= MAX_VIPS {
            bail!("VIP id {} out of range (max {MAX_VIPS})", info.vip_id);
        }
        if maglev.len() != cfg.maglev_size as usize {
            bail!("Maglev table has {} slots, the program uses {}", maglev.len(), cfg.maglev_size);
        }
        if rr.len() > MAX_RR_BACKENDS as usize {
            bail!("{} round-robin backends, at most {MAX_RR_BACKENDS}", rr.len());
        }
        let current = {
            let vips = HashMap::<&MapData, VipKey, VipInfo>::try_from(self.ebpf.map(names::VIPS).context("no VIPS map")?)?;
            vips.get(key, 0).ok()
        };
        // Write the half the data path is not reading.
        let table = current.map_or(0, |c| 1 - (c.table & 1));
        let half = info.vip_id * 2 + u32::from(table);
        write_slots(map_mut(self.ebpf, names::MAGLEV)?, names::MAGLEV, half * cfg.maglev_size, maglev)?;
        write_slots(map_mut(self.ebpf, names::RR_LIST)?, names::RR_LIST, half * MAX_RR_BACKENDS, rr)?;
        if let Some(expected) = expected {
            let live = self.half_fingerprint(half, cfg.maglev_size)?;
            if live != expected {
                bail!(
                    "Maglev table check failed: the table read back from {} has fingerprint {live}, the one computed from the config {expected}; \
                     the VIP keeps its previous table",
                    names::MAGLEV
                );
            }
        }
        let mut vips = HashMap::<&mut MapData, VipKey, VipInfo>::try_from(map_mut(self.ebpf, names::VIPS)?)?;
        let active = VipInfo { table, rr_count: rr.len() as u32, ..*info };
        // The flip: one map update makes the new half live.
        vips.insert(key, active, 0).context("writing VIPS")?;
        let marker = VipKey { port: 0, protocol: 0, ..*key };
        vips.insert(marker, VipInfo { vip_id: info.vip_id, ..Default::default() }, 0).context("writing VIP address marker")?;
        // Established flows read the VIP from here: the same value, flipped
        // right after (until then they use the previous half, left intact).
        self.set_vip_slot(info.vip_id, &VipSlot { key: *key, info: active })
    }

    fn set_vip_slot(&mut self, id: u32, slot: &VipSlot) -> Result<()> {
        let mut slots = Array::<&mut MapData, VipSlot>::try_from(map_mut(self.ebpf, names::VIP_SLOTS)?)?;
        slots.set(id, slot, 0).with_context(|| format!("writing {} slot {id}", names::VIP_SLOTS))
    }

    /// The `VIP_SLOTS` entry of VIP id `id` (all zero when empty).
    pub fn vip_slot(&self, id: u32) -> Result<VipSlot> {
        let slots = Array::<&MapData, VipSlot>::try_from(self.ebpf.map(names::VIP_SLOTS).context("no VIP_SLOTS map")?)?;
        slots.get(&id, 0).with_context(|| format!("reading {} slot {id}", names::VIP_SLOTS))
    }

    /// Rewrites every `VIP_SLOTS` slot from `VIPS` (address markers skipped),
    /// emptying the slots of ids no VIP has: on adopted pins, which may come
    /// without `VIP_SLOTS` (an lb-user from before it: a fresh, empty map) or
    /// with one an older lb-user left unmaintained (a rollback and back:
    /// slots of VIPs removed meanwhile). `attach --iface` without a config
    /// writes no VIP, so the slots come from here. Idempotent.
    pub fn rebuild_vip_slots_from_vips(&mut self) -> Result<()> {
        let mut slots = vec![VipSlot::default(); MAX_VIPS as usize];
        for (key, info) in self.vips()? {
            if key.port != 0 && info.vip_id < MAX_VIPS {
                slots[info.vip_id as usize] = VipSlot { key, info };
            }
        }
        use aya::maps::IterableMap as _;
        let ids: Vec<u32> = (0..MAX_VIPS).collect();
        let array = Array::<&mut MapData, VipSlot>::try_from(map_mut(self.ebpf, names::VIP_SLOTS)?)?;
        update_batch(array.map(), &ids, &slots).with_context(|| format!("writing {}", names::VIP_SLOTS))
    }

    /// The fingerprint of table half `half` as the maps hold it, each id
    /// resolved through the BACKENDS map.
    fn half_fingerprint(&self, half: u32, size: u32) -> Result<TableFingerprint> {
        let backends = Array::<&MapData, BackendInfo>::try_from(self.ebpf.map(names::BACKENDS).context("no BACKENDS map")?)?;
        let maglev = self.ebpf.map(names::MAGLEV).context("no MAGLEV map")?;
        half_fingerprint(maglev, half, size, |id| backends.get(&id, 0).ok().filter(|b| *b != BackendInfo::default()).map(|b| crate::stats::backend_label(&b)))
    }

    /// Installs the allowlist: source prefixes, and ports (`None` = any port).
    pub fn set_allowlist(&mut self, cidrs: &[IpNet], ports: Option<&[u16]>, scope_all: bool) -> Result<()> {
        {
            let mut v4 = LpmTrie::<&mut MapData, [u8; 4], u8>::try_from(map_mut(self.ebpf, names::ALLOW_V4)?)?;
            for net in cidrs.iter().filter_map(|n| match n {
                IpNet::V4(v) => Some(v),
                _ => None,
            }) {
                v4.insert(&Key::new(u32::from(net.prefix_len()), net.network().octets()), 1, 0).with_context(|| format!("allowlist {net}"))?;
            }
        }
        {
            let mut v6 = LpmTrie::<&mut MapData, [u8; 16], u8>::try_from(map_mut(self.ebpf, names::ALLOW_V6)?)?;
            for net in cidrs.iter().filter_map(|n| match n {
                IpNet::V6(v) => Some(v),
                _ => None,
            }) {
                v6.insert(&Key::new(u32::from(net.prefix_len()), net.network().octets()), 1, 0).with_context(|| format!("allowlist {net}"))?;
            }
        }
        if let Some(ports) = ports {
            let mut set = HashMap::<&mut MapData, u16, u8>::try_from(map_mut(self.ebpf, names::ALLOW_PORTS)?)?;
            for port in ports {
                set.insert(port, 1, 0).with_context(|| format!("allowlist port {port}"))?;
            }
        }
        let mut cfg = self.global()?;
        cfg.allowlist_enabled = 1;
        cfg.allowlist_scope = u8::from(scope_all);
        cfg.allow_any_port = u8::from(ports.is_none());
        self.set_global(&cfg)
    }

    /// Removes a VIP; with `address_too`, also its address marker (when no
    /// other VIP uses the address).
    /// Its `VIP_SLOTS` slot is emptied first, unless another VIP has taken
    /// the id meanwhile (an apply writes new VIPs before it removes old ones).
    pub fn remove_vip(&mut self, key: &VipKey, address_too: bool) -> Result<()> {
        let id = {
            let vips = HashMap::<&MapData, VipKey, VipInfo>::try_from(self.ebpf.map(names::VIPS).context("no VIPS map")?)?;
            vips.get(key, 0).context("removing VIP: it is not in VIPS")?.vip_id
        };
        if id < MAX_VIPS && self.vip_slot(id)?.key == *key {
            self.set_vip_slot(id, &VipSlot::default())?;
        }
        let mut vips = HashMap::<&mut MapData, VipKey, VipInfo>::try_from(map_mut(self.ebpf, names::VIPS)?)?;
        vips.remove(key).context("removing VIP")?;
        if address_too {
            let _ = vips.remove(&VipKey { port: 0, protocol: 0, ..*key });
        }
        Ok(())
    }

    /// Turns the allowlist off (entries stay until removed).
    pub fn disable_allowlist(&mut self) -> Result<()> {
        let mut cfg = self.global()?;
        cfg.allowlist_enabled = 0;
        self.set_global(&cfg)
    }

    /// Deletes allowlist prefixes and ports (missing ones are ignored).
    pub fn remove_allowlist_entries(&mut self, cidrs: &[IpNet], ports: &[u16]) -> Result<()> {
        {
            let mut v4 = LpmTrie::<&mut MapData, [u8; 4], u8>::try_from(map_mut(self.ebpf, names::ALLOW_V4)?)?;
            for net in cidrs.iter().filter_map(|n| match n {
                IpNet::V4(v) => Some(v),
                _ => None,
            }) {
                let _ = v4.remove(&Key::new(u32::from(net.prefix_len()), net.network().octets()));
            }
        }
        {
            let mut v6 = LpmTrie::<&mut MapData, [u8; 16], u8>::try_from(map_mut(self.ebpf, names::ALLOW_V6)?)?;
            for net in cidrs.iter().filter_map(|n| match n {
                IpNet::V6(v) => Some(v),
                _ => None,
            }) {
                let _ = v6.remove(&Key::new(u32::from(net.prefix_len()), net.network().octets()));
            }
        }
        let mut set = HashMap::<&mut MapData, u16, u8>::try_from(map_mut(self.ebpf, names::ALLOW_PORTS)?)?;
        for port in ports {
            let _ = set.remove(port);
        }
        Ok(())
    }

    /// Every VIP entry (address markers included).
    pub fn vips(&self) -> Result<Vec<(VipKey, VipInfo)>> {
        let vips = HashMap::<&MapData, VipKey, VipInfo>::try_from(self.ebpf.map(names::VIPS).context("no VIPS map")?)?;
        Ok(vips.iter().collect::<Result<_, _>>()?)
    }

    /// Every backend slot ever written (all-zero slots skipped).
    pub fn backends(&self) -> Result<Vec<(u32, BackendInfo)>> {
        let array = Array::<&MapData, BackendInfo>::try_from(self.ebpf.map(names::BACKENDS).context("no BACKENDS map")?)?;
        let mut out = Vec::new();
        for id in 0..array.len() {
            let info = array.get(&id, 0)?;
            if info != BackendInfo::default() {
                out.push((id, info));
            }
        }
        Ok(out)
    }

    /// The allowlist prefixes and ports currently in the maps.
    pub fn allowlist_entries(&self) -> Result<(Vec<IpNet>, Vec<u16>)> {
        let mut nets = Vec::new();
        let v4 = LpmTrie::<&MapData, [u8; 4], u8>::try_from(self.ebpf.map(names::ALLOW_V4).context("no ALLOW_V4")?)?;
        for key in v4.keys() {
            let key = key?;
            nets.push(IpNet::new(std::net::Ipv4Addr::from(key.data()).into(), key.prefix_len() as u8)?);
        }
        let v6 = LpmTrie::<&MapData, [u8; 16], u8>::try_from(self.ebpf.map(names::ALLOW_V6).context("no ALLOW_V6")?)?;
        for key in v6.keys() {
            let key = key?;
            nets.push(IpNet::new(std::net::Ipv6Addr::from(key.data()).into(), key.prefix_len() as u8)?);
        }
        let ports = HashMap::<&MapData, u16, u8>::try_from(self.ebpf.map(names::ALLOW_PORTS).context("no ALLOW_PORTS")?)?;
        Ok((nets, ports.keys().collect::<Result<_, _>>()?))
    }

    /// Live conntrack entries per backend id ([`flow_is_live`]) at `now_ns`
    /// ([`datapath_now_ns`] time).
    /// Walks the whole table: one lookup per entry, so it is for occasional
    /// use (draining backends), not for every tick of a busy balancer.
    pub fn live_flows(&self, now_ns: u64) -> Result<BTreeMap<u32, u64>> {
        let global = Array::<&MapData, GlobalConfig>::try_from(self.ebpf.map(names::CONFIG).context("no CONFIG map")?)?.get(&0, 0)?;
        let conntrack = HashMap::<&MapData, FlowKey, FlowState>::try_from(self.ebpf.map(names::CONNTRACK).context("no CONNTRACK map")?)?;
        let mut out = BTreeMap::new();
        for entry in conntrack.iter() {
            // An entry evicted between listing and lookup is simply skipped.
            let Ok((key, state)) = entry else { continue };
            let tcp = key.protocol == IPPROTO_TCP;
            let timeout_s = if tcp { global.tcp_timeout_s } else { global.udp_timeout_s };
            if flow_is_live(&state, tcp, timeout_s, now_ns) {
                *out.entry(state.backend_id).or_insert(0) += 1;
            }
        }
        Ok(out)
    }

    /// Deletes the conntrack entries tracked to any of `ids` and returns how
    /// many went. Only for ids of removed backends (flags 0): the data path
    /// chooses again for such an entry at its next packet anyway, so deleting
    /// it changes nothing a flow sees, and afterwards no entry can name the
    /// id (no table holds it), which makes it safe to hand out again.
    pub fn forget_flows_of(&mut self, ids: &std::collections::BTreeSet<u32>) -> Result<u64> {
        let mut conntrack = HashMap::<&mut MapData, FlowKey, FlowState>::try_from(map_mut(self.ebpf, names::CONNTRACK)?)?;
        // Listed first, deleted after: deleting while walking would restart
        // the kernel's key iteration.
        let doomed: Vec<FlowKey> = conntrack.iter().filter_map(|e| e.ok()).filter(|(_, state)| ids.contains(&state.backend_id)).map(|(key, _)| key).collect();
        let mut removed = 0;
        for key in &doomed {
            match conntrack.remove(key) {
                Ok(()) => removed += 1,
                // Evicted by the LRU in the meantime.
                Err(aya::maps::MapError::SyscallError(aya::sys::SyscallError { io_error, .. })) if io_error.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).context("deleting a conntrack entry of a removed backend"),
            }
        }
        Ok(removed)
    }

    /// Lets XDP_REDIRECT send out of interface `ifindex`.
    pub fn add_tx_port(&mut self, ifindex: u32) -> Result<()> {
        let mut ports = DevMapHash::<&mut MapData>::try_from(map_mut(self.ebpf, names::TX_PORTS)?)?;
        ports.insert(ifindex, ifindex, None, 0).with_context(|| format!("TX_PORTS {ifindex}"))
    }
}

/// The fingerprint of half `half` (`vip_id * 2 + VipInfo::table`) of the
/// MAGLEV map `maglev` of a program with `size`-slot tables, read back in
/// one batch; `key_of` gives a backend id's `address:port`.
pub fn half_fingerprint(maglev: &aya::maps::Map, half: u32, size: u32, key_of: impl FnMut(u32) -> Option<String>) -> Result<TableFingerprint> {
    use aya::maps::IterableMap as _;
    let array = Array::<&MapData, u32>::try_from(maglev)?;
    let slots = read_slots(array.map(), half * size, size)?;
    fingerprint(&slots, key_of).with_context(|| format!("fingerprinting Maglev table half {half}"))
}

/// A Maglev-sized table with every slot empty.
pub fn empty_table(size: u32) -> Vec<u32> {
    vec![NO_BACKEND; size as usize]
}

#[cfg(test)]
mod tests {
    use lb_common::lb::{TCP_CLOSING, TCP_FIN_BACKEND, TCP_FIN_CLIENT, TCP_OPEN, TCP_RESET};

    use super::*;

    const S: u64 = 1_000_000_000;

    fn flow(last_seen_ns: u64, tcp_state: u8) -> FlowState {
        FlowState { last_seen_ns, tcp_state, ..Default::default() }
    }

    #[test]
    fn a_closed_flow_stops_counting_after_the_grace_and_open_or_half_closed_ones_at_their_idle_timeout() {
        let now = 1000 * S;
        let both = TCP_CLOSING | TCP_FIN_CLIENT | TCP_FIN_BACKEND;
        // Open, and half-closed (one FIN, either side): live until the idle
        // timeout, however long the pause.
        for state in [TCP_OPEN, TCP_CLOSING | TCP_FIN_CLIENT, TCP_CLOSING | TCP_FIN_BACKEND] {
            assert!(flow_is_live(&flow(now - 59 * S, state), true, 60, now), "state {state}");
            assert!(!flow_is_live(&flow(now - 60 * S, state), true, 60, now), "state {state}");
        }
        // Closed (both FINs, a reset after a FIN or alone, or the bare
        // closing bit of DSR and of older programs): live within the grace,
        // not after it.
        for state in [both, TCP_CLOSING | TCP_FIN_CLIENT | TCP_RESET, TCP_CLOSING | TCP_RESET, TCP_CLOSING] {
            assert!(flow_is_live(&flow(now - S, state), true, 60, now), "state {state}");
            assert!(flow_is_live(&flow(now - CLOSING_GRACE_NS + 1, state), true, 60, now), "state {state}");
            assert!(!flow_is_live(&flow(now - CLOSING_GRACE_NS, state), true, 60, now), "state {state}");
        }
        // The grace never outlasts the idle timeout.
        assert!(!flow_is_live(&flow(now - 2 * S, both), true, 2, now));
        // UDP has no closing state.
        assert!(flow_is_live(&flow(now - 10 * S, both), false, 30, now));
    }
}
