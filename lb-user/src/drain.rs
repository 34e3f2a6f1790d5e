//! Backends on their way out: a backend that a reload removed from the file
//! keeps its id and its `BACKEND_ACTIVE` slot, so flows already in conntrack
//! keep reaching it, but it is in no Maglev table or round-robin list, so it
//! gets no new flows. It is removed for good when its last live flow ends
//! (a conntrack entry counts while it is open and younger than its idle
//! timeout) or when `conntrack.drain_timeout` has passed, whichever comes
//! first. `drain_timeout: 0` removes at once: established flows then choose
//! a new backend (the behaviour before draining existed).
//!
//! The tables are built from the *effective* config: the file's config with
//! every leaving backend appended to its VIP (so it keeps its id), gated
//! down. A backend put back into the file while leaving stops leaving. A
//! VIP that leaves the file takes its backends with it at once: its address
//! is no longer served, so there are no flows to keep.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use crate::{
    config::{Backend, Config},
    health::HealthSnapshot,
};

/// One leaving backend.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Leaving {
    backend: Backend,
    deadline: Instant,
}

/// The leaving backends, by VIP name.
#[derive(Clone, Debug, Default)]
pub struct Drains {
    leaving: BTreeMap<String, Vec<Leaving>>,
}

/// Why a leaving backend was removed (for the log line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Done {
    FlowsEnded,
    Timeout,
}

impl Drains {
    pub fn new() -> Drains {
        Drains::default()
    }

    /// Follows a reload from the effective config `old` to the file's new
    /// config `new`: backends of VIPs that stay which `new` no longer lists
    /// start leaving (unless the drain timeout is 0); leaving backends that
    /// `new` lists again, or whose VIP is gone, stop leaving.
    pub fn follow_reload(&mut self, old: &Config, new: &Config, now: Instant) {
        let timeout = new.conntrack.drain_timeout;
        self.leaving.retain(|vip, list| {
            let Some(v) = new.vips.iter().find(|v| &v.name == vip) else { return false };
            list.retain(|l| !v.backends.iter().any(|b| b.socket_addr() == l.backend.socket_addr()));
            !list.is_empty()
        });
        if timeout.is_zero() {
            return;
        }
        for v in &new.vips {
            let Some(before) = old.vips.iter().find(|o| o.name == v.name) else { continue };
            for b in before.backends.iter().filter(|b| !v.backends.iter().any(|n| n.socket_addr() == b.socket_addr())) {
                let list = self.leaving.entry(v.name.clone()).or_default();
                if !list.iter().any(|l| l.backend.socket_addr() == b.socket_addr()) {
                    log::info!("backend draining vip={} backend={} timeout={}", v.name, b.socket_addr(), lb_common::userspace::duration::show(timeout));
                    list.push(Leaving { backend: b.clone(), deadline: now + timeout });
                }
            }
        }
    }

    /// The config the tables are built from: `file` with the leaving
    /// backends appended to their VIPs.
    pub fn effective(&self, file: &Config) -> Config {
        let mut c = file.clone();
        for v in &mut c.vips {
            if let Some(list) = self.leaving.get(&v.name) {
                v.backends.extend(list.iter().map(|l| l.backend.clone()));
            }
        }
        c
    }

    /// `health` (over the effective config) with every leaving backend down:
    /// it keeps its flows but gets no new ones.
    pub fn gate(&self, effective: &Config, mut health: HealthSnapshot) -> HealthSnapshot {
        for (vi, v) in effective.vips.iter().enumerate() {
            let Some(list) = self.leaving.get(&v.name) else { continue };
            for (bi, b) in v.backends.iter().enumerate() {
                if list.iter().any(|l| l.backend.socket_addr() == b.socket_addr()) {
                    if let Some(up) = health.up.get_mut(vi).and_then(|u| u.get_mut(bi)) {
                        *up = false;
                    }
                }
            }
        }
        health
    }

    pub fn is_empty(&self) -> bool {
        self.leaving.is_empty()
    }

    /// The leaving backends, as (VIP name, backend).
    pub fn backends(&self) -> Vec<(String, Backend)> {
        self.leaving.iter().flat_map(|(vip, list)| list.iter().map(|l| (vip.clone(), l.backend.clone()))).collect()
    }

    /// Ends the drains that are done: the deadline passed, or
    /// `live_flows(vip, backend)` says none is left (`None`: unknown, keep
    /// waiting). Returns the ended ones; the caller rebuilds the tables.
    pub fn expire(&mut self, now: Instant, live_flows: &mut dyn FnMut(&str, &Backend) -> Option<u64>) -> Vec<(String, Backend, Done)> {
        let mut done = Vec::new();
        for (vip, list) in &mut self.leaving {
            list.retain(|l| {
                let why = if now >= l.deadline {
                    Done::Timeout
                } else if live_flows(vip, &l.backend) == Some(0) {
                    Done::FlowsEnded
                } else {
                    return true;
                };
                done.push((vip.clone(), l.backend.clone(), why));
                false
            });
        }
        self.leaving.retain(|_, list| !list.is_empty());
        done
    }

    /// When leaving backend `backend` of `vip` is removed at the latest
    /// (`None`: not leaving).
    pub fn deadline(&self, vip: &str, backend: std::net::SocketAddr) -> Option<Instant> {
        self.leaving.get(vip)?.iter().find(|l| l.backend.socket_addr() == backend).map(|l| l.deadline)
    }

    /// Time until the earliest deadline (for tests and logs).
    pub fn next_deadline(&self, now: Instant) -> Option<Duration> {
        self.leaving.values().flatten().map(|l| l.deadline.saturating_duration_since(now)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(backends: &[u16], drain: &str) -> Config {
        let list: Vec<String> = backends.iter().map(|p| format!("{{ address: 198.18.1.11, port: {p} }}")).collect();
        Config::parse(
            &format!(
                "interfaces: [{{ name: lo }}]\nmaglev: {{ size: 251 }}\nconntrack: {{ drain_timeout: {drain} }}\nvips:\n  \
                 - {{ name: web, address: 198.18.100.1, port: 80, backends: [{}] }}\n",
                list.join(", ")
            ),
            "test.yaml",
        )
        .unwrap()
    }

    fn ports(c: &Config) -> Vec<u16> {
        c.vips[0].backends.iter().map(|b| b.port).collect()
    }

    #[test]
    fn a_removed_backend_leaves_gated_down_until_its_flows_end_or_the_timeout() {
        let (old, new) = (config(&[1, 2, 3], "30s"), config(&[1, 3], "30s"));
        let t0 = Instant::now();
        let mut d = Drains::new();
        d.follow_reload(&old, &new, t0);
        let eff = d.effective(&new);
        assert_eq!(ports(&eff), [1, 3, 2], "kept, after the file's backends");
        assert_eq!(d.gate(&eff, HealthSnapshot::all_up(&eff)).up, vec![vec![true, true, false]]);
        assert_eq!(d.next_deadline(t0), Some(Duration::from_secs(30)));
        // Flows left: stays; unknown: stays; none left: done.
        assert!(d.expire(t0, &mut |_, _| Some(4)).is_empty());
        assert!(d.expire(t0, &mut |_, _| None).is_empty());
        let done = d.expire(t0, &mut |vip, b| if vip == "web" && b.port == 2 { Some(0) } else { Some(9) });
        assert_eq!(done.iter().map(|(v, b, why)| (v.as_str(), b.port, *why)).collect::<Vec<_>>(), [("web", 2, Done::FlowsEnded)]);
        assert!(d.is_empty());
        // The timeout ends a drain whatever the flows.
        d.follow_reload(&old, &new, t0);
        let done = d.expire(t0 + Duration::from_secs(30), &mut |_, _| Some(9));
        assert_eq!(done.iter().map(|(_, b, why)| (b.port, *why)).collect::<Vec<_>>(), [(2, Done::Timeout)]);
    }

    #[test]
    fn zero_timeout_readding_and_vanished_vips_end_drains() {
        let mut d = Drains::new();
        let t0 = Instant::now();
        d.follow_reload(&config(&[1, 2], "0s"), &config(&[1], "0s"), t0);
        assert!(d.is_empty(), "drain_timeout 0 cuts at once");
        d.follow_reload(&config(&[1, 2], "30s"), &config(&[1], "30s"), t0);
        assert_eq!(d.backends().len(), 1);
        // Reloading the same file again keeps the drain (and its deadline).
        let eff = d.effective(&config(&[1], "30s"));
        d.follow_reload(&eff, &config(&[1], "30s"), t0 + Duration::from_secs(5));
        assert_eq!(d.next_deadline(t0), Some(Duration::from_secs(30)));
        // Back in the file: no longer leaving.
        d.follow_reload(&eff, &config(&[1, 2], "30s"), t0);
        assert!(d.is_empty());
        // Its VIP gone: gone too.
        d.follow_reload(&config(&[1, 2], "30s"), &config(&[1], "30s"), t0);
        let mut other = config(&[1], "30s");
        other.vips[0].name = "other".into();
        d.follow_reload(&d.effective(&config(&[1], "30s")), &other, t0);
        assert!(d.is_empty());
    }
}
