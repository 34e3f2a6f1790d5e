//! DSR next hops that lb-user keeps resolved.
//!
//! The XDP program reaches a DSR backend without a configured `mac` through
//! `bpf_fib_lookup`, which succeeds only once the kernel has resolved the
//! next hop's neighbour entry — and the program cannot make it do so: a DSR
//! packet still names the VIP, so handing it to the kernel would deliver it
//! locally. So for every such backend lb-user
//! 1. asks the kernel for the route to the backend (interface, gateway),
//! 2. adds a *managed* neighbour entry for the next hop (the backend, or the
//!    gateway): the kernel resolves it and keeps probing it, so it stays
//!    resolved while no local traffic uses it (Linux ≥ 5.16),
//! 3. keeps the backend out of the tables until that entry is valid, and
//!    takes it out again when the entry fails.
//!
//! Routes and entries are looked at again every supervisor tick, so a route
//! change, a flushed entry or a backend that comes back is followed. Entries
//! lb-user added are removed when their backend leaves the config and on
//! detach; a crashed lb-user leaves them (and forwarding) in place. Backends
//! with a `mac`, and NAT backends (whose packets the kernel can forward and
//! resolve itself), are not gated.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::Result;

use crate::{
    config::{Config, Forwarding},
    health::HealthSnapshot,
    rtnl::{NextHop, Rtnl},
};

/// How long `lb-user attach` waits at startup for DSR next hops to resolve
/// before it builds the first tables without the unresolved ones.
pub const SETTLE: Duration = Duration::from_secs(1);
const SETTLE_POLL: Duration = Duration::from_millis(20);

/// Where a gated backend's next hop stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum HopState {
    /// No usable route: the reason, as logged.
    NoRoute(String),
    Resolving(NextHop),
    Resolved(NextHop),
}

/// The gated backends of the config in force and their next hops.
#[derive(Default)]
pub struct Neighbours {
    /// Opened on first need: configs without gated backends never touch
    /// netlink.
    rtnl: Option<Rtnl>,
    backends: BTreeMap<IpAddr, HopState>,
    /// Entries this lb-user added or converted to managed.
    added: BTreeSet<NextHop>,
}

/// Backend addresses that need a resolved neighbour: those of DSR VIPs
/// without a configured `mac`.
pub fn gated_backends(config: &Config) -> BTreeSet<IpAddr> {
    config.vips.iter().filter(|v| v.forwarding == Forwarding::Dsr).flat_map(|v| v.backends.iter()).filter(|b| b.mac.is_none()).map(|b| b.address).collect()
}

impl Neighbours {
    pub fn new() -> Neighbours {
        Neighbours::default()
    }

    /// Follows `config`: backends that left stop being gated (and their
    /// entries, if no other backend shares the next hop, are removed), new
    /// ones are looked up. Returns whether a backend's verdict changed.
    pub fn sync(&mut self, config: &Config) -> Result<bool> {
        let wanted = gated_backends(config);
        let before = self.backends.len();
        self.backends.retain(|addr, _| wanted.contains(addr));
        let mut changed = self.backends.len() != before;
        for addr in wanted {
            if let std::collections::btree_map::Entry::Vacant(e) = self.backends.entry(addr) {
                e.insert(HopState::NoRoute("not looked up yet".into()));
                changed = true;
            }
        }
        Ok(self.refresh()? || changed)
    }

    /// Looks at every gated backend's route and neighbour entry again,
    /// (re)adding managed entries where one is missing. Returns whether a
    /// backend became usable or unusable.
    pub fn refresh(&mut self) -> Result<bool> {
        if self.backends.is_empty() && self.added.is_empty() {
            return Ok(false);
        }
        let rtnl = match &mut self.rtnl {
            Some(r) => r,
            None => self.rtnl.insert(Rtnl::open()?),
        };
        let table = rtnl.neighbours()?;
        let mut changed = false;
        for (addr, state) in self.backends.iter_mut() {
            let next = match rtnl.route_to(*addr) {
                Err(err) => HopState::NoRoute(format!("{err:#}")),
                Ok(hop) => match table.iter().find(|n| n.hop == hop) {
                    Some(n) if n.managed && n.is_valid() => HopState::Resolved(hop),
                    Some(n) if n.managed => HopState::Resolving(hop),
                    // Missing, or not managed (learned by the kernel, or
                    // flushed and relearned): make it managed, keeping a
                    // valid entry valid.
                    found => match rtnl.add_managed(hop) {
                        Ok(()) => {
                            self.added.insert(hop);
                            if found.is_some_and(|n| n.is_valid()) {
                                HopState::Resolved(hop)
                            } else {
                                HopState::Resolving(hop)
                            }
                        }
                        Err(err) => HopState::NoRoute(format!("{err:#}")),
                    },
                },
            };
            if *state != next {
                log_change(*addr, &next);
                changed |= matches!(state, HopState::Resolved(_)) != matches!(next, HopState::Resolved(_));
                *state = next;
            }
        }
        // Entries no gated backend uses any more.
        let used: BTreeSet<NextHop> = self.backends.values().filter_map(hop_of).collect();
        for hop in self.added.clone().into_iter().filter(|h| !used.contains(h)) {
            match rtnl.delete(hop) {
                Ok(()) => log::info!("neighbour entry removed: {} on interface {} (no DSR backend uses it)", hop.neighbour, hop.ifindex),
                Err(err) => log::warn!("{err:#}"),
            }
            self.added.remove(&hop);
        }
        Ok(changed)
    }

    /// Startup: follows `config` and waits up to `limit` for the gated
    /// backends' next hops to resolve (a directly connected backend takes
    /// one ARP/ND round trip), so the first tables already hold them.
    /// Returns the verdicts the first tables are built from: all up but the
    /// gated backends still unresolved.
    pub fn settle(&mut self, config: &Config, limit: Duration) -> Result<HealthSnapshot> {
        let deadline = Instant::now() + limit;
        self.sync(config)?;
        while !self.all_resolved() && Instant::now() < deadline {
            std::thread::sleep(SETTLE_POLL);
            self.refresh()?;
        }
        Ok(self.gate(config, HealthSnapshot::all_up(config)))
    }

    fn all_resolved(&self) -> bool {
        self.backends.values().all(|s| matches!(s, HopState::Resolved(_)))
    }

    /// Whether the next hop of gated backend `addr` is resolved; backends
    /// that are not gated always are.
    pub fn is_resolved(&self, addr: IpAddr) -> bool {
        self.backends.get(&addr).is_none_or(|s| matches!(s, HopState::Resolved(_)))
    }

    /// `health` with the gated backends whose next hop is not resolved
    /// marked down: they stay out of the tables.
    pub fn gate(&self, config: &Config, mut health: HealthSnapshot) -> HealthSnapshot {
        for (vi, vip) in config.vips.iter().enumerate() {
            for (bi, b) in vip.backends.iter().enumerate() {
                if vip.forwarding == Forwarding::Dsr && b.mac.is_none() && !self.is_resolved(b.address) {
                    if let Some(up) = health.up.get_mut(vi).and_then(|v| v.get_mut(bi)) {
                        *up = false;
                    }
                }
            }
        }
        health
    }

    /// Removes the entries this lb-user added (on detach).
    pub fn release(&mut self) {
        self.backends.clear();
        if let Err(err) = self.refresh() {
            log::warn!("removing managed neighbour entries: {err:#}");
        }
    }
}

fn hop_of(state: &HopState) -> Option<NextHop> {
    match state {
        HopState::Resolving(h) | HopState::Resolved(h) => Some(*h),
        HopState::NoRoute(_) => None,
    }
}

fn log_change(addr: IpAddr, state: &HopState) {
    match state {
        HopState::Resolved(h) => log::info!("dsr next hop resolved backend={addr} neighbour={} ifindex={}", h.neighbour, h.ifindex),
        HopState::Resolving(h) => {
            log::warn!("dsr next hop unresolved, backend kept out of the tables backend={addr} neighbour={} ifindex={}", h.neighbour, h.ifindex)
        }
        HopState::NoRoute(why) => log::warn!("dsr next hop unknown, backend kept out of the tables backend={addr} reason={why:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let yaml = "interfaces: [{ name: lo }]\nmaglev: { size: 251 }\nvips:\n  \
            - { name: dsr, address: 198.18.100.1, port: 80, forwarding: dsr, backends: [{ address: 198.18.1.11, port: 80 }, { address: 198.18.1.12, port: 80, mac: \"02:00:00:00:00:12\" }] }\n  \
            - { name: nat, address: 198.18.100.2, port: 80, backends: [{ address: 198.18.1.13, port: 8080 }] }\n";
        Config::parse(yaml, "test.yaml").unwrap()
    }

    #[test]
    fn only_dsr_backends_without_a_mac_are_gated() {
        let c = config();
        assert_eq!(gated_backends(&c).into_iter().collect::<Vec<_>>(), ["198.18.1.11".parse::<IpAddr>().unwrap()]);
        let mut n = Neighbours::new();
        let hop = NextHop { ifindex: 2, neighbour: "198.18.1.11".parse().unwrap() };
        n.backends.insert(hop.neighbour, HopState::Resolving(hop));
        assert_eq!(n.gate(&c, HealthSnapshot::all_up(&c)).up, vec![vec![false, true], vec![true]], "unresolved: out; with a mac or NAT: untouched");
        n.backends.insert(hop.neighbour, HopState::Resolved(hop));
        assert_eq!(n.gate(&c, HealthSnapshot::all_up(&c)).up, vec![vec![true, true], vec![true]]);
        let down = HealthSnapshot { up: vec![vec![false, true], vec![true]] };
        assert_eq!(n.gate(&c, down.clone()), down, "a resolved next hop does not bring a down backend up");
    }
}
