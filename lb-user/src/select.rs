//! Backend selection for new flows, shared by map building and the userspace
//! forwarder (`lb-user proxy`). [`MaglevSelector`] hashes exactly as the XDP
//! program does (`lb_common::hash`), so for the same table and seed both pick
//! the same backend for a flow.

use lb_common::hash::{flow_hash_v4, flow_hash_v6, src_hash};
use lb_common::lb::{FAMILY_V4, FAMILY_V6, NO_BACKEND};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A flow as the balancer sees its first packet: client → VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// IP protocol number (6 = TCP, 17 = UDP).
    pub protocol: u8,
}

/// Picks a backend id for a new flow; `None` when there is no backend.
pub trait Selector: Send + Sync {
    fn pick(&self, flow: &Flow) -> Option<u32>;
}

/// `addr` in the 16-byte layout of the map keys (IPv4 in the first 4 bytes).
pub fn addr16(addr: IpAddr) -> ([u8; 16], u8) {
    match addr {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (b, FAMILY_V4)
        }
        IpAddr::V6(a) => (a.octets(), FAMILY_V6),
    }
}

/// The data path's hash of `flow`: the 5-tuple hash, or the source-address
/// hash when `source_only` (`maglev_src`). Ports are in host byte order.
/// `None` when source and destination families differ (or, for the 5-tuple,
/// an IPv4-mapped mix that the data path never sees).
pub fn flow_hash(flow: &Flow, seed: u32, source_only: bool) -> Option<u32> {
    if source_only {
        let (a, family) = addr16(flow.src.ip());
        return Some(src_hash(&a, family, seed));
    }
    let (sport, dport) = (flow.src.port(), flow.dst.port());
    match (flow.src.ip(), flow.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some(flow_hash_v4(s.octets(), d.octets(), sport, dport, flow.protocol, seed)),
        (IpAddr::V6(s), IpAddr::V6(d)) => Some(flow_hash_v6(&s.octets(), &d.octets(), sport, dport, flow.protocol, seed)),
        _ => None,
    }
}

/// Maglev lookup: `table[flow_hash % table.len()]`.
#[derive(Clone, Debug)]
pub struct MaglevSelector {
    /// A table from [`crate::maglev::build_table`].
    pub table: Vec<u32>,
    /// The seed the data path mixes into the flow hash.
    pub seed: u32,
    /// Hash the source address only (`maglev_src`: client affinity).
    pub source_only: bool,
}

impl MaglevSelector {
    pub fn new(table: Vec<u32>, seed: u32, source_only: bool) -> MaglevSelector {
        MaglevSelector { table, seed, source_only }
    }
}

impl Selector for MaglevSelector {
    fn pick(&self, flow: &Flow) -> Option<u32> {
        if self.table.is_empty() {
            return None;
        }
        let h = flow_hash(flow, self.seed, self.source_only)?;
        let id = self.table[h as usize % self.table.len()];
        (id != NO_BACKEND).then_some(id)
    }
}

/// Round robin over `ids` in order, shared by all callers (one cursor).
#[derive(Debug, Default)]
pub struct RoundRobinSelector {
    pub ids: Vec<u32>,
    pub cursor: AtomicUsize,
}

impl RoundRobinSelector {
    pub fn new(ids: Vec<u32>) -> RoundRobinSelector {
        RoundRobinSelector { ids, cursor: AtomicUsize::new(0) }
    }
}

impl Selector for RoundRobinSelector {
    fn pick(&self, _flow: &Flow) -> Option<u32> {
        if self.ids.is_empty() {
            return None;
        }
        let i = self.cursor.fetch_add(1, Ordering::Relaxed) % self.ids.len();
        Some(self.ids[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maglev::{build_table, MaglevBackend};
    use std::collections::HashSet;

    fn flow(src: &str, dst: &str) -> Flow {
        Flow { src: src.parse().unwrap(), dst: dst.parse().unwrap(), protocol: 6 }
    }

    fn table(n: u32) -> Vec<u32> {
        let b: Vec<_> = (0..n).map(|i| MaglevBackend { id: i, key: format!("198.18.1.{}:8080", 11 + i), weight: 1 }).collect();
        build_table(&b, 65537, 0).unwrap()
    }

    #[test]
    fn round_robin_cycles_in_order() {
        let rr = RoundRobinSelector::new(vec![7, 3, 9]);
        let f = flow("198.18.0.2:40000", "198.18.100.1:80");
        let picks: Vec<_> = (0..7).map(|_| rr.pick(&f).unwrap()).collect();
        assert_eq!(picks, [7, 3, 9, 7, 3, 9, 7]);
        assert_eq!(RoundRobinSelector::new(vec![]).pick(&f), None);
    }

    #[test]
    fn maglev_is_stable_per_flow_and_spreads_flows() {
        let sel = MaglevSelector::new(table(3), 0, false);
        let f = flow("198.18.0.2:40000", "198.18.100.1:80");
        let first = sel.pick(&f).unwrap();
        assert!((0..10).all(|_| sel.pick(&f) == Some(first)));
        let f6 = flow("[fd00:198:18::2]:40000", "[fd00:198:18:100::1]:80");
        assert_eq!(sel.pick(&f6), sel.pick(&f6));
        // Different source ports of one client spread over the backends.
        let seen: HashSet<_> = (40000..40100).map(|p| sel.pick(&flow(&format!("198.18.0.2:{p}"), "198.18.100.1:80")).unwrap()).collect();
        assert_eq!(seen.len(), 3);
        // The index is exactly the data path's hash.
        let h = flow_hash_v4([198, 18, 0, 2], [198, 18, 100, 1], 40000, 80, 6, 0);
        assert_eq!(Some(sel.table[h as usize % sel.table.len()]), sel.pick(&f));
    }

    #[test]
    fn maglev_src_keeps_a_client_on_one_backend() {
        let sel = MaglevSelector::new(table(5), 11, true);
        for client in ["198.18.0.2", "198.18.0.3", "[fd00:198:18::2]"] {
            let picks: HashSet<_> = (40000..40200)
                .map(|p| sel.pick(&flow(&format!("{client}:{p}"), "198.18.100.1:80")).unwrap())
                .collect();
            assert_eq!(picks.len(), 1, "{client}");
        }
        let clients: HashSet<_> = (2..100).map(|i| sel.pick(&flow(&format!("198.18.0.{i}:1234"), "198.18.100.1:80")).unwrap()).collect();
        assert_eq!(clients.len(), 5);
    }

    #[test]
    fn empty_tables_and_mixed_families_pick_nothing() {
        let f = flow("198.18.0.2:40000", "198.18.100.1:80");
        assert_eq!(MaglevSelector::new(vec![], 0, false).pick(&f), None);
        assert_eq!(MaglevSelector::new(build_table(&[], 251, 0).unwrap(), 0, false).pick(&f), None);
        let mixed = flow("198.18.0.2:40000", "[fd00:198:18:100::1]:80");
        assert_eq!(MaglevSelector::new(table(3), 0, false).pick(&mixed), None);
    }

    #[test]
    fn selectors_are_usable_as_trait_objects() {
        let sels: Vec<Box<dyn Selector>> = vec![Box::new(RoundRobinSelector::new(vec![1])), Box::new(MaglevSelector::new(table(1), 0, false))];
        let f = flow("198.18.0.2:40000", "198.18.100.1:80");
        let picks: Vec<_> = sels.iter().map(|s| s.pick(&f)).collect();
        assert_eq!(picks, [Some(1), Some(0)]);
    }
}
