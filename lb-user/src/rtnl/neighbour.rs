//! The rtnetlink requests of DSR next hops (`crate::neighbours`): which
//! interface and gateway the kernel routes a backend through, a managed
//! neighbour entry for that next hop, removing one, and the neighbour table.

use std::net::IpAddr;

use anyhow::{bail, Context as _, Result};
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST};
use netlink_packet_route::{
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourExtFlags, NeighbourMessage, NeighbourState},
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteType},
    RouteNetlinkMessage,
};

use super::{family, is_errno, Rtnl};

/// Where the kernel sends packets for an address: the egress interface and
/// the neighbour that must be resolved (the address itself on a directly
/// connected segment, else the route's gateway).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NextHop {
    pub ifindex: u32,
    pub neighbour: IpAddr,
}

/// One entry of the kernel's neighbour table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub hop: NextHop,
    pub state: NeighbourState,
    pub managed: bool,
}

impl Neighbour {
    /// Whether `bpf_fib_lookup` finds a link-layer address in this entry
    /// (the kernel's `NUD_VALID`).
    pub fn is_valid(&self) -> bool {
        matches!(
            self.state,
            NeighbourState::Reachable
                | NeighbourState::Stale
                | NeighbourState::Delay
                | NeighbourState::Probe
                | NeighbourState::Permanent
                | NeighbourState::Noarp
        )
    }
}

impl Rtnl {
    /// The route the kernel takes towards `addr` (`ip route get`).
    pub fn route_to(&mut self, addr: IpAddr) -> Result<NextHop> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(addr);
        msg.header.destination_prefix_length = if addr.is_ipv4() { 32 } else { 128 };
        msg.attributes.push(RouteAttribute::Destination(RouteAddress::from(addr)));
        let replies = self.request(RouteNetlinkMessage::GetRoute(msg), NLM_F_REQUEST).with_context(|| format!("looking up the route to {addr}"))?;
        let Some(RouteNetlinkMessage::NewRoute(route)) = replies.into_iter().next() else { bail!("no route to {addr}") };
        if route.header.kind != RouteType::Unicast {
            bail!("the route to {addr} is not a unicast route ({:?}); a backend must be reached over a network interface", route.header.kind);
        }
        let mut hop = NextHop { ifindex: 0, neighbour: addr };
        for attribute in &route.attributes {
            match attribute {
                RouteAttribute::Oif(i) => hop.ifindex = *i,
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => hop.neighbour = IpAddr::V4(*g),
                RouteAttribute::Gateway(RouteAddress::Inet6(g)) => hop.neighbour = IpAddr::V6(*g),
                _ => {}
            }
        }
        if hop.ifindex == 0 {
            bail!("the route to {addr} names no output interface");
        }
        Ok(hop)
    }

    /// Creates (or converts an existing entry into) a managed neighbour
    /// entry: the kernel resolves it and keeps it resolved by probing
    /// (`ip neigh replace ADDR dev DEV managed`, Linux ≥ 5.16).
    pub fn add_managed(&mut self, hop: NextHop) -> Result<()> {
        let mut msg = neighbour_message(hop);
        msg.attributes.push(NeighbourAttribute::ExtFlags(NeighbourExtFlags::Managed));
        self.request(RouteNetlinkMessage::NewNeighbour(msg), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE)
            .with_context(|| format!("adding a managed neighbour entry for {} on interface {}", hop.neighbour, hop.ifindex))?;
        Ok(())
    }

    /// Removes a neighbour entry; one that is already gone is not an error.
    pub fn delete(&mut self, hop: NextHop) -> Result<()> {
        match self.request(RouteNetlinkMessage::DelNeighbour(neighbour_message(hop)), NLM_F_REQUEST | NLM_F_ACK) {
            Ok(_) => Ok(()),
            Err(err) if is_errno(&err, libc::ENOENT) => Ok(()),
            Err(err) => Err(err.context(format!("removing the neighbour entry for {} on interface {}", hop.neighbour, hop.ifindex))),
        }
    }

    /// The IPv4 and IPv6 neighbour tables.
    pub fn neighbours(&mut self) -> Result<Vec<Neighbour>> {
        let replies =
            self.request(RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()), NLM_F_REQUEST | NLM_F_DUMP).context("reading the neighbour table")?;
        let mut out = Vec::new();
        for reply in replies {
            let RouteNetlinkMessage::NewNeighbour(n) = reply else { continue };
            let mut neighbour = None;
            let mut managed = false;
            for attribute in &n.attributes {
                match attribute {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => neighbour = Some(IpAddr::V4(*a)),
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => neighbour = Some(IpAddr::V6(*a)),
                    NeighbourAttribute::ExtFlags(f) => managed = f.contains(NeighbourExtFlags::Managed),
                    _ => {}
                }
            }
            if let Some(neighbour) = neighbour {
                out.push(Neighbour { hop: NextHop { ifindex: n.header.ifindex, neighbour }, state: n.header.state, managed });
            }
        }
        Ok(out)
    }
}

/// A neighbour message naming `hop` (state none: the kernel resolves it).
fn neighbour_message(hop: NextHop) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family(hop.neighbour);
    msg.header.ifindex = hop.ifindex;
    msg.header.state = NeighbourState::None;
    msg.attributes.push(NeighbourAttribute::Destination(match hop.neighbour {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }));
    msg
}
