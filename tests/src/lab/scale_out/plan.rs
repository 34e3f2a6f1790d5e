//! The scale-out lab's names and addresses, on top of the single-LB lab's
//! plan (`lab::addr`): LB node `i` sits on the backend segment at
//! 198.18.1.2i; the router is the single-LB lab's middle host (its
//! backend-side address 198.18.1.1 is every node's BGP neighbour and every
//! backend's next hop back to the client, so DSR replies pass the router).

use std::net::Ipv4Addr;

use crate::lab::addr;

/// Most LB nodes a scale-out lab has (node addresses 198.18.1.21–29).
pub const MAX_NODES: u8 = 9;
/// The router's AS; the nodes share [`NODE_AS`], so their paths are equal
/// and the router merges them into one multipath route.
pub const ROUTER_AS: u32 = 65000;
pub const NODE_AS: u32 = 65001;
/// The nodes' hand-off table (lb-user `group.table`, exported by BIRD).
pub const HANDOFF_TABLE: u32 = 100;

/// The router's address on the fabric segment.
pub fn router_v4() -> Ipv4Addr {
    addr::LB_BACKEND_V4
}

/// Fabric address of LB node `i` (1-based): 198.18.1.2i.
pub fn node_v4(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, 20 + i)
}

/// Node `i`'s only interface (its XDP program attaches there, one-armed).
pub fn node_iface(lab: &str, i: u8) -> String {
    format!("{lab}-n{i}")
}

/// The switch's port facing node `i` (the peer of [`node_iface`]).
pub fn switch_node_iface(lab: &str, i: u8) -> String {
    format!("{lab}-p{i}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_are_lab_addresses_apart_from_the_backends() {
        for i in 1..=MAX_NODES {
            assert!(addr::is_lab_address(node_v4(i).into()));
            assert!((1..=9).all(|b| addr::backend_v4(b) != node_v4(i)));
        }
        assert_eq!(node_v4(3).to_string(), "198.18.1.23");
        assert!(switch_node_iface(&"x".repeat(crate::lab::MAX_NAME_LEN), MAX_NODES).len() <= 15);
    }
}
